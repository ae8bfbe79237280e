//! Operation -> a typed plan: fetches at response paths, grouped in waves.
//!
//! A fetch is one subgraph call shape: the root fields of a subgraph, the
//! entities of a type at a path (Federation `_entities`, a Composite
//! `@lookup`, a stitching entity path), or a stitched field's call at a
//! path. Each wave runs after the ones before it; the executor sends each
//! subgraph one request per wave, whatever the number of fetches and
//! parents. Everything that does not depend on the data is decided here,
//! once per document and cached.

mod build;
pub mod selection;

use std::{fmt, sync::Arc};

use apollo_compiler::{
    ast::{self, OperationType},
    Name, Node,
};

pub use build::plan;
use selection::SelectionSet;

#[cfg(test)]
mod tests;

use crate::schema::{Call, EntityResolver, SubgraphId, Supergraph};

/// Alias prefix of fields fetched only because another fetch needs them.
pub const REQUIRE_PREFIX: &str = "_stitch_f_";
/// Alias of `__typename` fetched for objects of abstract types.
pub const TYPENAME_ALIAS: &str = "_stitch_t";

/// The plan of one operation of a document.
#[derive(Debug)]
pub struct QueryPlan {
    pub operation_type: OperationType,
    pub fetches: Vec<FetchNode>,
    /// Fetch ids per wave, in order. A mutation's root fields of one
    /// subgraph run (with everything below them) before the next ones.
    pub waves: Vec<Vec<usize>>,
    /// The operation asks for `__schema` or `__type`.
    pub has_introspection: bool,
}

/// `@skip(if:)`/`@include(if:)` on the way to a field.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Condition {
    Skip(BoolOrVariable),
    Include(BoolOrVariable),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BoolOrVariable {
    Bool(bool),
    Variable(Name),
}

/// One step from the data root towards a fetch's parent objects; lists on
/// the way are walked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PathStep {
    /// The value under this response key.
    Key(Name),
    /// Only objects whose runtime type is this one (or belongs to it).
    Type(Name),
}

/// A value the fetch reads from each parent: the data holds it under
/// `key`, the subgraph gets it as `name`.
#[derive(Clone, Debug, PartialEq)]
pub struct InputField {
    pub key: Name,
    pub name: Name,
    pub selection: Vec<InputField>,
}

#[derive(Debug)]
pub enum FetchKind {
    /// Root fields of the subgraph, answered into the data root.
    Root { operation: OperationType },
    /// The entities at the path, fetched by key; the answer is merged into each.
    Entity {
        resolver: Arc<EntityResolver>,
        /// The subgraph's name of the entity's type (`__typename` of representations).
        remote_type: Name,
    },
    /// A stitched field: the call's answer becomes the field's value.
    Field {
        call: Arc<Call>,
        response_key: Name,
        /// The client's arguments (`$arguments:`) and the field's definition (their defaults).
        arguments: Vec<Node<ast::Argument>>,
        definition: Node<ast::FieldDefinition>,
    },
}

/// One fetch of the plan.
#[derive(Debug)]
pub struct FetchNode {
    pub id: usize,
    pub subgraph: SubgraphId,
    pub kind: FetchKind,
    /// From the data root to the parent objects. Empty for root fetches.
    pub path: Vec<PathStep>,
    /// Skip the fetch unless these hold.
    pub conditions: Vec<Condition>,
    /// What it reads from each parent.
    pub requires: Vec<InputField>,
    /// Subgraph names; for entities, the fields of the entity type.
    pub selection: SelectionSet,
    /// `selection` rendered once (empty for leaves). Per-entity arguments
    /// show as `$require:NAME`; the executor renders those fetches itself.
    pub rendered: String,
    /// Client variables `rendered` uses: `(name, subgraph type [= default])`.
    pub variables: Vec<(Name, String)>,
    pub depends_on: Vec<usize>,
}

impl FetchNode {
    /// A stitched field of list type (a null `$fields:` key then yields `[]` when non-null).
    pub fn field_type(&self) -> Option<&ast::Type> {
        match &self.kind {
            FetchKind::Field { definition, .. } => Some(&definition.ty),
            _ => None,
        }
    }

    pub fn operation(&self) -> OperationType {
        match &self.kind {
            FetchKind::Root { operation } => *operation,
            FetchKind::Field { call, .. } => call.operation,
            FetchKind::Entity { .. } => OperationType::Query,
        }
    }
}

/// Why an operation cannot be planned. Validation and composition catch
/// nearly everything first, so these are rare.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    UnknownOperation(String),
    #[error("no subgraph serves `{type_name}.{field}` here: {reason}")]
    Unserved {
        type_name: String,
        field: String,
        reason: String,
    },
}

impl PlanError {
    pub fn code(&self) -> &'static str {
        match self {
            PlanError::UnknownOperation(_) => "OPERATION_RESOLUTION_FAILURE",
            PlanError::Unserved { .. } => "QUERY_PLANNING_FAILED",
        }
    }
}

impl fmt::Display for PathStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathStep::Key(k) => f.write_str(k),
            PathStep::Type(t) => write!(f, "|{t}"),
        }
    }
}

fn write_inputs(f: &mut fmt::Formatter<'_>, inputs: &[InputField]) -> fmt::Result {
    for (i, input) in inputs.iter().enumerate() {
        if i > 0 {
            f.write_str(" ")?;
        }
        if input.key != input.name {
            write!(f, "{}: ", input.key)?;
        }
        f.write_str(&input.name)?;
        if !input.selection.is_empty() {
            f.write_str(" { ")?;
            write_inputs(f, &input.selection)?;
            f.write_str(" }")?;
        }
    }
    Ok(())
}

fn write_conditions(f: &mut fmt::Formatter<'_>, conditions: &[Condition]) -> fmt::Result {
    for c in conditions {
        let (name, b) = match c {
            Condition::Skip(b) => ("skip", b),
            Condition::Include(b) => ("include", b),
        };
        match b {
            BoolOrVariable::Bool(v) => write!(f, " @{name}({v})")?,
            BoolOrVariable::Variable(v) => write!(f, " @{name}(${v})")?,
        }
    }
    Ok(())
}

impl QueryPlan {
    /// Renders the plan with subgraph names, for logs and snapshot tests:
    /// a `Sequence` of waves, each a `Parallel` of fetches.
    pub fn display<'a>(&'a self, supergraph: &'a Supergraph) -> impl fmt::Display + 'a {
        struct D<'a>(&'a QueryPlan, &'a Supergraph);
        impl fmt::Display for D<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let (plan, sg) = (self.0, self.1);
                writeln!(f, "{:?} {{", plan.operation_type)?;
                if plan.has_introspection {
                    writeln!(f, "  Introspection")?;
                }
                for wave in &plan.waves {
                    writeln!(f, "  Parallel {{")?;
                    for id in wave {
                        write_fetch(f, &plan.fetches[*id], sg)?;
                    }
                    writeln!(f, "  }}")?;
                }
                write!(f, "}}")
            }
        }
        D(self, supergraph)
    }
}

fn write_fetch(f: &mut fmt::Formatter<'_>, n: &FetchNode, sg: &Supergraph) -> fmt::Result {
    write!(f, "    #{} {}", n.id, sg.subgraphs[n.subgraph].name)?;
    if !n.path.is_empty() {
        let mut path = String::new();
        for (i, s) in n.path.iter().enumerate() {
            if i > 0 && matches!(s, PathStep::Key(_)) {
                path.push('.');
            }
            path.push_str(&s.to_string());
        }
        write!(f, " at {path}")?;
    }
    match &n.kind {
        FetchKind::Root { .. } => {}
        FetchKind::Entity {
            resolver,
            remote_type,
        } => match &resolver.kind {
            crate::schema::ResolverKind::Entities => write!(f, " _entities({remote_type})")?,
            crate::schema::ResolverKind::Call(call) => {
                let path: Vec<String> = call.path.iter().map(|s| s.to_string()).collect();
                write!(f, " lookup {}", path.join("."))?;
            }
        },
        FetchKind::Field {
            call, response_key, ..
        } => {
            let path: Vec<String> = call.path.iter().map(|s| s.to_string()).collect();
            write!(f, " {response_key} <- {}", path.join("."))?;
            if call.batch {
                f.write_str(" (batch)")?;
            }
        }
    }
    if !n.requires.is_empty() {
        f.write_str(" requires { ")?;
        write_inputs(f, &n.requires)?;
        f.write_str(" }")?;
    }
    write_conditions(f, &n.conditions)?;
    if !n.rendered.is_empty() {
        write!(f, " {}", n.rendered)?;
    }
    if !n.depends_on.is_empty() {
        let deps: Vec<String> = n.depends_on.iter().map(|d| format!("#{d}")).collect();
        write!(f, " after {}", deps.join(", "))?;
    }
    writeln!(f)
}
