//! Subgraph schemas + stitching SDL -> one validated public schema and the
//! metadata that says which subgraph serves each field.
//!
//! Every problem of a configuration is collected and reported at once
//! (`BuildErrors`), each naming the subgraph, type, field, file and line.

mod check;
pub mod fieldset;
pub mod introspection;
mod merge;
pub mod model;
mod resolve;
mod satisfy;
mod source;

use std::{collections::HashMap, fmt};

use apollo_compiler::{
    schema::{ExtendedType, Implementers},
    validation::Valid,
    Name, Schema,
};

pub use merge::build;
pub use model::{Call, EntityResolver, FieldModel, FieldSource, Model, ResolverKind, TypeModel};

/// Index of a subgraph in `Supergraph::subgraphs`.
pub type SubgraphId = usize;

/// Which directives a subgraph's schema speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dialect {
    /// `@schema`/`@delegate` in the gateway's stitching SDL.
    #[default]
    Stitching,
    /// Apollo Federation v1/v2 subgraphs (`@key`, `_entities`).
    Federation,
    /// GraphQL Composite Schemas source schemas (`@lookup`, `@is`, `@require`).
    Composite,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Stitching => "stitching",
            Dialect::Federation => "federation",
            Dialect::Composite => "composite",
        }
    }
}

/// What the caller knows about one subgraph: its schema and how it is stitched in.
#[derive(Clone, Debug, Default)]
pub struct SubgraphSpec {
    pub name: String,
    pub dialect: Dialect,
    /// The subgraph's own schema as SDL (from introspection, `_service { sdl }`, or a file).
    pub schema_sdl: String,
    /// Where `schema_sdl` came from, for error messages (a file path, or "introspection of URL").
    pub schema_origin: String,
    /// Stitching SDL documents: `(origin, text)`.
    pub stitching: Vec<(String, String)>,
    /// `Type` or `Type.field` (the subgraph's own names) kept out of the public graph.
    pub hide: Vec<String>,
    /// The subgraph's type name -> the public name.
    pub rename_types: Vec<(String, String)>,
    /// The subgraph takes one operation with a list of variable sets and
    /// answers JSON lines (the draft variable batching of GraphQL over HTTP).
    pub variable_batching: bool,
}

/// A subgraph as the planner and executor see it.
#[derive(Debug)]
pub struct Subgraph {
    pub name: String,
    pub dialect: Dialect,
    /// Its schema without dialect directives.
    pub schema: Valid<Schema>,
    /// public type name -> subgraph type name, only where they differ.
    pub public_to_remote: HashMap<Name, Name>,
    /// subgraph type name -> public type name, only where they differ.
    pub remote_to_public: HashMap<Name, Name>,
    pub variable_batching: bool,
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

    /// Whether the subgraph knows a public type (under its own name).
    pub fn has_type(&self, public: &Name) -> bool {
        self.schema.types.contains_key(self.remote_type(public))
    }
}

/// The composed schema: what clients see, plus where each field comes from.
/// Immutable once built; a config change builds a new one.
#[derive(Debug)]
pub struct Supergraph {
    pub schema: Valid<Schema>,
    pub implementers: apollo_compiler::collections::HashMap<Name, Implementers>,
    pub subgraphs: Vec<Subgraph>,
    pub model: Model,
    /// `@authenticated`/`@requiresScopes` rules, in public names.
    pub access: crate::authorization::AccessRules,
}

impl Supergraph {
    /// The stitched field `type.field`, if it is one.
    pub fn delegation(&self, type_name: &str, field: &str) -> Option<&std::sync::Arc<Call>> {
        self.model.field(type_name, field)?.delegation.as_ref()
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

    /// The public SDL, e.g. for `gateway compose` and snapshot tests.
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

/// The kind of a composition problem. Codes are the Composite Schemas
/// spec's where it names one.
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
    DirectiveInvalid,
    TypeKindMismatch,
    EnumValuesMismatch,
    OutputFieldTypes,
    InputFieldTypes,
    ArgumentTypes,
    InputMissingRequired,
    InputDefaultMismatch,
    FieldSharing,
    ExternalMissingOnBase,
    ExternalTypeMismatch,
    KeyInvalidFields,
    KeyInvalidType,
    RequiresMissingExternal,
    RequireInvalidFields,
    ProvidesMissingExternal,
    ProvidesInvalidFields,
    OverrideFromSelf,
    OverrideSourceHasOverride,
    LookupReturnsList,
    LookupWithoutArguments,
    IsInvalidFields,
    Unsatisfiable,
    Cycle,
}

impl BuildError {
    pub fn code(&self) -> &'static str {
        use BuildErrorKind as K;
        match self.kind {
            K::SubgraphSchema => "SUBGRAPH_SCHEMA_INVALID",
            K::TypeConflict => "TYPE_CONFLICT",
            K::RootFieldConflict => "ROOT_FIELD_CONFLICT",
            K::UnknownHide => "UNKNOWN_HIDDEN_ELEMENT",
            K::UnknownRename => "UNKNOWN_RENAMED_TYPE",
            K::StitchingSdl => "STITCHING_SDL_INVALID",
            K::DelegatePath => "DELEGATE_PATH_INVALID",
            K::PublicSchema => "PUBLIC_SCHEMA_INVALID",
            K::DirectiveInvalid => "INVALID_DIRECTIVE_ARGUMENT",
            K::TypeKindMismatch => "TYPE_KIND_MISMATCH",
            K::EnumValuesMismatch => "ENUM_VALUES_MISMATCH",
            K::OutputFieldTypes => "OUTPUT_FIELD_TYPES_NOT_MERGEABLE",
            K::InputFieldTypes => "INPUT_FIELD_TYPES_NOT_MERGEABLE",
            K::ArgumentTypes => "FIELD_ARGUMENT_TYPES_NOT_MERGEABLE",
            K::InputMissingRequired => "INPUT_WITH_MISSING_REQUIRED_FIELDS",
            K::InputDefaultMismatch => "INPUT_FIELD_DEFAULT_MISMATCH",
            K::FieldSharing => "INVALID_FIELD_SHARING",
            K::ExternalMissingOnBase => "EXTERNAL_MISSING_ON_BASE",
            K::ExternalTypeMismatch => "EXTERNAL_TYPE_MISMATCH",
            K::KeyInvalidFields => "KEY_INVALID_FIELDS",
            K::KeyInvalidType => "KEY_FIELDS_SELECT_INVALID_TYPE",
            K::RequiresMissingExternal => "REQUIRES_FIELDS_MISSING_EXTERNAL",
            K::RequireInvalidFields => "REQUIRE_INVALID_FIELDS",
            K::ProvidesMissingExternal => "PROVIDES_FIELDS_MISSING_EXTERNAL",
            K::ProvidesInvalidFields => "PROVIDES_INVALID_FIELDS",
            K::OverrideFromSelf => "OVERRIDE_FROM_SELF",
            K::OverrideSourceHasOverride => "OVERRIDE_SOURCE_HAS_OVERRIDE",
            K::LookupReturnsList => "LOOKUP_RETURNS_LIST",
            K::LookupWithoutArguments => "LOOKUP_MUST_HAVE_ARGUMENTS",
            K::IsInvalidFields => "IS_INVALID_FIELDS",
            K::Unsatisfiable => "UNSATISFIABLE_QUERY_PATH",
            K::Cycle => "REQUIREMENT_CYCLE",
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
