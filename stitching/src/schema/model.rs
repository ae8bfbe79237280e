//! The supergraph model: for each public (type, field), the subgraphs that
//! resolve it; for each entity type, how each subgraph fetches one by key.
//! All three dialects compile into this, and the planner reads only this.

use std::{collections::HashMap, sync::Arc};

use apollo_compiler::{ast::OperationType, Name};

use super::{fieldset::FieldSet, SubgraphId};
use crate::directives::path::{PathValue, Segment};

/// A remote call along a path of root fields, with arguments that may read
/// the parent object (`$fields:`), the client's field (`$arguments:`) or
/// its variables (`$variables:`). Stitching `@delegate`, Composite
/// `@lookup` and stitching entity paths are all calls.
#[derive(Clone, Debug)]
pub struct Call {
    pub subgraph: SubgraphId,
    /// Query for nested fields; the root's own kind for root fields.
    pub operation: OperationType,
    pub path: Vec<Segment>,
    /// Per segment, the declared type of each remote argument (`name -> "[ID!]!"`),
    /// used to declare the variables that carry argument values.
    pub argument_types: Vec<HashMap<String, String>>,
    /// List-key batching: one call with every parent's key, mapped back by position.
    pub batch: bool,
    /// The parent fields `$fields:` references read.
    pub requires: FieldSet,
    /// Where the call was declared (`file:line`), or the subgraph for root fields.
    pub origin: String,
}

impl Call {
    /// The value of the single `$fields:` reference of a batched call: the key list.
    pub fn batch_key(&self) -> Option<&[String]> {
        self.path
            .last()?
            .arguments
            .as_ref()?
            .iter()
            .find_map(|(_, v)| match v {
                PathValue::Field(p) => Some(p.as_slice()),
                _ => None,
            })
    }
}

/// How one subgraph fetches an entity of a type, given its key.
#[derive(Debug)]
pub struct EntityResolver {
    /// Index in `Model::resolvers`: plans key their fetches by it.
    pub id: usize,
    pub subgraph: SubgraphId,
    /// The public type.
    pub type_name: Name,
    /// The fields of the parent the call reads.
    pub key: FieldSet,
    pub kind: ResolverKind,
}

#[derive(Debug)]
pub enum ResolverKind {
    /// Federation: `_entities(representations:)` with `__typename` and the key.
    Entities,
    /// A lookup field (Composite `@lookup`, stitching type `@delegate`): the
    /// call's answer is the entity.
    Call(Arc<Call>),
}

/// One subgraph's way to resolve a field where it holds the parent.
#[derive(Clone, Debug)]
pub struct FieldSource {
    pub subgraph: SubgraphId,
    /// Federation `@external`: resolvable only where a parent field
    /// `@provides` it (or as a key the subgraph echoes).
    pub external: bool,
    /// Fields of the parent the subgraph needs first (Federation `@requires`,
    /// Composite `@require`): the field can then only be fetched by key.
    pub requires: Option<Arc<FieldSet>>,
    /// Composite `@require`: argument name -> the value built from `requires`.
    pub require_args: Vec<(Name, PathValue)>,
    /// `@provides(fields:)`: what the subgraph also resolves below this field.
    pub provides: Option<Arc<FieldSet>>,
}

/// What the model knows about one public field (or one hidden by
/// `@inaccessible`, which keys and requirements may still read).
#[derive(Clone, Debug)]
pub struct FieldModel {
    /// Its type, public names.
    pub ty: apollo_compiler::ast::Type,
    /// Not in the public graph: only the planner may select it.
    pub inaccessible: bool,
    pub sources: Vec<FieldSource>,
    /// A stitched field (`@delegate`): its value comes from this call.
    pub delegation: Option<Arc<Call>>,
}

impl FieldModel {
    pub fn source(&self, subgraph: SubgraphId) -> Option<&FieldSource> {
        self.sources.iter().find(|s| s.subgraph == subgraph)
    }
}

/// What the model knows about one public object or interface type.
#[derive(Debug, Default)]
pub struct TypeModel {
    pub fields: HashMap<Name, FieldModel>,
    /// The subgraphs that define the type (and may return objects of it).
    pub owners: Vec<SubgraphId>,
    pub resolvers: Vec<Arc<EntityResolver>>,
}

/// Every type's model.
#[derive(Debug, Default)]
pub struct Model {
    pub types: HashMap<Name, TypeModel>,
    pub resolvers: Vec<Arc<EntityResolver>>,
}

impl Model {
    pub fn field(&self, type_name: &str, field: &str) -> Option<&FieldModel> {
        self.types.get(type_name)?.fields.get(field)
    }

    pub fn resolvers(&self, type_name: &str) -> &[Arc<EntityResolver>] {
        self.types
            .get(type_name)
            .map(|t| t.resolvers.as_slice())
            .unwrap_or(&[])
    }
}
