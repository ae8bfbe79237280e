//! A fetch's remote selection as data: fields (response key, subgraph field
//! name, arguments, `@skip`/`@include`), inline fragments (subgraph type
//! names), rendered to text once per plan.

use std::fmt::Write;

use apollo_compiler::{
    ast::{OperationType, Value},
    executable::Operation,
    Name, Node,
};

use super::{BoolOrVariable, Condition};
use crate::{directives::path::PathValue, schema::Subgraph};

/// A selection set in the subgraph's names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SelectionSet {
    pub items: Vec<Selection>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Selection {
    Field(FieldSelection),
    InlineFragment(FragmentSelection),
}

#[derive(Clone, Debug, PartialEq)]
pub struct FieldSelection {
    /// The key the answer holds it under (an alias when it differs from `name`).
    pub response_key: Name,
    pub name: Name,
    pub arguments: Vec<(Name, Argument)>,
    pub conditions: Vec<Condition>,
    /// `None` for leaves.
    pub selection: Option<SelectionSet>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FragmentSelection {
    /// The subgraph's name of the type, `None` for a fragment that only
    /// carries conditions.
    pub type_condition: Option<Name>,
    pub conditions: Vec<Condition>,
    pub selection: SelectionSet,
}

/// An argument value: the client's (literals, its variables), or one the
/// gateway fills per entity from the parent's data (Composite `@require`).
#[derive(Clone, Debug, PartialEq)]
pub enum Argument {
    Client(Node<Value>),
    Required(PathValue),
}

impl SelectionSet {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether some field reads a value per entity (`Argument::Required`).
    pub fn has_required_arguments(&self) -> bool {
        self.items.iter().any(|s| match s {
            Selection::Field(f) => {
                f.arguments
                    .iter()
                    .any(|(_, a)| matches!(a, Argument::Required(_)))
                    || f.selection
                        .as_ref()
                        .is_some_and(|s| s.has_required_arguments())
            }
            Selection::InlineFragment(i) => i.selection.has_required_arguments(),
        })
    }
}

/// Renders selections for one subgraph, recording the client variables
/// they use (declared later as `$c_NAME` with the subgraph's type names).
pub(crate) struct Renderer<'a> {
    pub subgraph: &'a Subgraph,
    pub operation: &'a Operation,
    pub variables: Vec<(Name, String)>,
}

/// The prefix of client variables in remote documents.
pub const CLIENT_VARIABLE_PREFIX: &str = "c_";

impl Renderer<'_> {
    /// `{ a b: c(x: 1) { d } }`; `required` names the variable of a
    /// per-entity argument (`None` while rendering the plan's text, which
    /// shows `$require:` placeholders).
    pub fn set(
        &mut self,
        set: &SelectionSet,
        required: &mut dyn FnMut(&Name, &PathValue) -> String,
        out: &mut String,
    ) {
        out.push('{');
        if set.items.is_empty() {
            // A selection set cannot be empty; everything here is fetched elsewhere.
            out.push_str(" __typename");
        }
        for item in &set.items {
            out.push(' ');
            match item {
                Selection::Field(f) => self.field(f, required, out),
                Selection::InlineFragment(i) => {
                    out.push_str("...");
                    if let Some(t) = &i.type_condition {
                        out.push_str(" on ");
                        out.push_str(t);
                    }
                    self.conditions(&i.conditions, out);
                    out.push(' ');
                    self.set(&i.selection, required, out);
                }
            }
        }
        out.push_str(" }");
    }

    fn field(
        &mut self,
        f: &FieldSelection,
        required: &mut dyn FnMut(&Name, &PathValue) -> String,
        out: &mut String,
    ) {
        if f.response_key != f.name {
            out.push_str(&f.response_key);
            out.push_str(": ");
        }
        out.push_str(&f.name);
        if !f.arguments.is_empty() {
            out.push('(');
            for (i, (name, value)) in f.arguments.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(name);
                out.push_str(": ");
                match value {
                    Argument::Client(v) => self.value(v, out),
                    Argument::Required(p) => {
                        out.push('$');
                        out.push_str(&required(name, p));
                    }
                }
            }
            out.push(')');
        }
        self.conditions(&f.conditions, out);
        if let Some(sel) = &f.selection {
            out.push(' ');
            self.set(sel, required, out);
        }
    }

    fn conditions(&mut self, conditions: &[Condition], out: &mut String) {
        for c in conditions {
            let (name, b) = match c {
                Condition::Skip(b) => ("skip", b),
                Condition::Include(b) => ("include", b),
            };
            out.push_str(" @");
            out.push_str(name);
            out.push_str("(if: ");
            match b {
                BoolOrVariable::Bool(v) => {
                    let _ = write!(out, "{v}");
                }
                BoolOrVariable::Variable(v) => self.variable(v, out),
            }
            out.push(')');
        }
    }

    fn variable(&mut self, v: &Name, out: &mut String) {
        out.push('$');
        out.push_str(CLIENT_VARIABLE_PREFIX);
        out.push_str(v);
        if self.variables.iter().any(|(n, _)| n == v) {
            return;
        }
        // The default goes along: a nullable variable with a default may
        // stand where a non-null value is expected.
        let ty = self
            .operation
            .variables
            .iter()
            .find(|d| d.name == *v)
            .map(|d| match &d.default_value {
                Some(default) => {
                    format!("{} = {default}", remote_type_string(&d.ty, self.subgraph))
                }
                None => remote_type_string(&d.ty, self.subgraph),
            })
            .unwrap_or_else(|| "String".into());
        self.variables.push((v.clone(), ty));
    }

    pub fn value(&mut self, value: &Value, out: &mut String) {
        match value {
            Value::Variable(v) => self.variable(v, out),
            Value::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    self.value(item, out);
                }
                out.push(']');
            }
            Value::Object(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(k);
                    out.push_str(": ");
                    self.value(v, out);
                }
                out.push('}');
            }
            other => {
                let _ = write!(out, "{other}");
            }
        }
    }
}

/// A client type written with the subgraph's type names.
pub fn remote_type_string(ty: &apollo_compiler::ast::Type, sg: &Subgraph) -> String {
    use apollo_compiler::ast::Type;
    match ty {
        Type::Named(n) => sg.remote_type(n).to_string(),
        Type::NonNullNamed(n) => format!("{}!", sg.remote_type(n)),
        Type::List(i) => format!("[{}]", remote_type_string(i, sg)),
        Type::NonNullList(i) => format!("[{}]!", remote_type_string(i, sg)),
    }
}

/// `query`, `mutation` or `subscription`.
pub fn operation_keyword(op: OperationType) -> &'static str {
    match op {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}
