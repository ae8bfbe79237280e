//! Subgraph schemas + stitching SDL -> one validated public schema and the
//! metadata that says which subgraph serves each field.
//!
//! Every problem of a configuration is collected and reported at once
//! (`BuildErrors`), each naming the subgraph, type, field, file and line.

mod check;
pub mod introspection;
mod merge;

use std::{collections::HashMap, fmt, sync::Arc};

use apollo_compiler::{
    ast::OperationType,
    schema::{ExtendedType, Implementers},
    validation::Valid,
    Name, Schema,
};

use crate::directives::path::Segment;

pub use merge::build;

/// Index of a subgraph in `Supergraph::subgraphs`.
pub type SubgraphId = usize;

/// What the caller knows about one subgraph: its schema and how it is stitched in.
#[derive(Clone, Debug, Default)]
pub struct SubgraphSpec {
    pub name: String,
    /// The subgraph's own schema as SDL (from introspection or a file).
    pub schema_sdl: String,
    /// Where `schema_sdl` came from, for error messages (a file path, or "introspection of URL").
    pub schema_origin: String,
    /// Stitching SDL documents: `(origin, text)`.
    pub stitching: Vec<(String, String)>,
    /// `Type` or `Type.field` (the subgraph's own names) kept out of the public graph.
    pub hide: Vec<String>,
    /// The subgraph's type name -> the public name.
    pub rename_types: Vec<(String, String)>,
}

/// A subgraph as the planner and executor see it.
#[derive(Debug)]
pub struct Subgraph {
    pub name: String,
    pub schema: Valid<Schema>,
    /// public type name -> subgraph type name, only where they differ.
    pub public_to_remote: HashMap<Name, Name>,
    /// subgraph type name -> public type name, only where they differ.
    pub remote_to_public: HashMap<Name, Name>,
}

impl Subgraph {
    /// The subgraph's name for a public type.
    pub fn remote_type<'a>(&'a self, public: &'a Name) -> &'a Name {
        self.public_to_remote.get(public).unwrap_or(public)
    }

    /// Some of this subgraph's types have other public names.
    pub fn has_renames(&self) -> bool {
        !self.remote_to_public.is_empty()
    }

    /// The public name for a subgraph type.
    pub fn public_type<'a>(&'a self, remote: &'a str) -> &'a str {
        self.remote_to_public
            .get(remote)
            .map(|n| n.as_str())
            .unwrap_or(remote)
    }
}

/// How a delegated field is fetched: from which subgraph, along which path.
#[derive(Clone, Debug)]
pub struct Delegation {
    pub subgraph: SubgraphId,
    /// Query for nested fields; the root's own kind for root fields.
    pub operation: OperationType,
    pub path: Vec<Segment>,
    /// Per segment, the declared type of each remote argument (`name -> "[ID!]!"`),
    /// used to declare the variables that carry argument values.
    pub argument_types: Vec<HashMap<String, String>>,
    /// List-key batching: one call with every parent's key, mapped back by position.
    pub batch: bool,
    /// Names of parent fields the path reads with `$fields:`.
    pub requires: Vec<Name>,
    /// Where the directive was written (`file:line`), or the subgraph for root fields.
    pub origin: String,
}

/// The stitched schema: what clients see, plus where each field comes from.
/// Immutable once built; a config change builds a new one.
#[derive(Debug)]
pub struct Supergraph {
    pub schema: Valid<Schema>,
    pub implementers: apollo_compiler::collections::HashMap<Name, Implementers>,
    pub subgraphs: Vec<Subgraph>,
    /// `(type, field)` -> delegation, for root fields and stitched fields.
    pub delegations: HashMap<(Name, Name), Arc<Delegation>>,
    /// Public type -> the subgraphs that define it.
    pub type_owners: HashMap<Name, Vec<SubgraphId>>,
}

impl Supergraph {
    pub fn delegation(&self, type_name: &str, field: &str) -> Option<&Arc<Delegation>> {
        // A tuple key of `Name`s cannot be borrowed as `(&str, &str)`; building
        // the key is two cheap `Name` clones (interned or Arc-backed strings).
        let key = (Name::new(type_name).ok()?, Name::new(field).ok()?);
        self.delegations.get(&key)
    }

    pub fn subgraph_id(&self, name: &str) -> Option<SubgraphId> {
        self.subgraphs.iter().position(|s| s.name == name)
    }

    /// Whether a public type is an interface or union (needs `__typename` to resolve fragments).
    pub fn is_abstract(&self, type_name: &str) -> bool {
        matches!(
            self.schema.types.get(type_name),
            Some(ExtendedType::Interface(_) | ExtendedType::Union(_))
        )
    }

    /// The public SDL, e.g. for `printSchema`-style tooling and snapshot tests.
    pub fn sdl(&self) -> String {
        self.schema.to_string()
    }
}

/// One problem found while building the stitched schema.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", location.as_ref().map(|l| format!("{l}: ")).unwrap_or_default())]
pub struct BuildError {
    pub kind: BuildErrorKind,
    /// `file:line:column` where known.
    pub location: Option<String>,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildErrorKind {
    SubgraphSchema,
    TypeConflict,
    RootFieldConflict,
    UnknownHide,
    UnknownRename,
    StitchingSdl,
    DelegatePath,
    PublicSchema,
}

impl BuildError {
    pub fn code(&self) -> &'static str {
        match self.kind {
            BuildErrorKind::SubgraphSchema => "SUBGRAPH_SCHEMA_INVALID",
            BuildErrorKind::TypeConflict => "TYPE_CONFLICT",
            BuildErrorKind::RootFieldConflict => "ROOT_FIELD_CONFLICT",
            BuildErrorKind::UnknownHide => "UNKNOWN_HIDDEN_ELEMENT",
            BuildErrorKind::UnknownRename => "UNKNOWN_RENAMED_TYPE",
            BuildErrorKind::StitchingSdl => "STITCHING_SDL_INVALID",
            BuildErrorKind::DelegatePath => "DELEGATE_PATH_INVALID",
            BuildErrorKind::PublicSchema => "PUBLIC_SCHEMA_INVALID",
        }
    }

    pub(crate) fn new(
        kind: BuildErrorKind,
        location: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        BuildError {
            kind,
            location,
            message: message.into(),
        }
    }
}

/// Every problem of a configuration, reported together.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct BuildErrors(pub Vec<BuildError>);

impl fmt::Display for BuildErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "the stitched schema has {} problem{}:",
            self.0.len(),
            if self.0.len() == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  - [{}] {e}", e.code())?;
        }
        Ok(())
    }
}

/// Formats diagnostics of apollo-compiler as `file:line:col: message` lines.
pub fn diagnostics(
    list: &apollo_compiler::validation::DiagnosticList,
) -> Vec<(Option<String>, String)> {
    use apollo_compiler::diagnostic::ToCliReport;
    list.iter()
        .map(|d| {
            let loc = d.error.location().and_then(|span| {
                let file = d.sources.get(&span.file_id())?;
                let lc = span.line_column(d.sources)?;
                Some(format!(
                    "{}:{}:{}",
                    file.path().display(),
                    lc.line,
                    lc.column
                ))
            });
            (loc, d.error.to_string())
        })
        .collect()
}
