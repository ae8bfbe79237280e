//! What a client operation may ask for, measured before any subgraph is
//! called: size once fragments are expanded (fields, depth, aliases,
//! directives), and cost, which its variables decide (list sizes).

use std::collections::HashMap;

use apollo_compiler::{
    ast::{self, Value},
    executable::{Field, Selection, SelectionSet},
    response::{GraphQLError, JsonMap, JsonValue},
    ExecutableDocument, Name, Node,
};

use crate::execute::error;

/// Limits a client request must stay within. Each is named by its config
/// key in the error that refuses a request.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_depth: usize,
    pub max_aliases: usize,
    pub max_root_fields: usize,
    pub max_tokens: usize,
    /// Field selections once every fragment spread is expanded in place.
    pub max_fields: usize,
    /// Directive applications once every fragment spread is expanded.
    pub max_directives: usize,
    /// Most fields an operation may make the subgraphs resolve: each list
    /// counts its `first`/`last`/`limit` argument (or `default_list_size`)
    /// times its selection. 0: no cost limit.
    pub max_cost: u64,
    pub default_list_size: u64,
    /// Validation errors reported at most (graphql-js stops at 100).
    pub max_validation_errors: usize,
    pub introspection: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 15,
            max_aliases: 30,
            max_root_fields: 20,
            max_tokens: 15_000,
            max_fields: 10_000,
            max_directives: 50,
            max_cost: 1_000_000,
            default_list_size: 10,
            max_validation_errors: 100,
            introspection: true,
        }
    }
}

/// A refused request: which limit, its value and what the request had.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct LimitError {
    /// The config key of the limit (`max_depth`, `max_cost`, ...).
    pub limit: &'static str,
    pub max: u64,
    /// What the request measured (`None` when parsing stopped before knowing).
    pub actual: Option<u64>,
    pub message: String,
}

impl LimitError {
    pub(crate) fn new(limit: &'static str, max: u64, actual: Option<u64>, what: String) -> Self {
        LimitError {
            limit,
            max,
            actual,
            message: format!("{what}; this gateway allows at most {max} (`{limit}`)"),
        }
    }

    pub(crate) fn to_graphql_error(&self, code: &str) -> GraphQLError {
        let mut e = error(self.message.clone(), code);
        e.extensions.insert("limit", JsonValue::from(self.limit));
        e.extensions.insert("max", JsonValue::from(self.max));
        if let Some(actual) = self.actual {
            e.extensions.insert("actual", JsonValue::from(actual));
        }
        e
    }
}

/// Size of a selection set with every fragment spread expanded in place:
/// what planning and shaping walk.
#[derive(Clone, Copy, Default)]
pub(crate) struct Stats {
    /// Levels of fields: 1 for leaves only.
    pub depth: usize,
    pub aliases: usize,
    pub fields: usize,
    pub directives: usize,
}

impl Stats {
    fn add(&mut self, other: Stats, depth_offset: usize) {
        self.depth = self.depth.max(other.depth.saturating_add(depth_offset));
        self.aliases = self.aliases.saturating_add(other.aliases);
        self.fields = self.fields.saturating_add(other.fields);
        self.directives = self.directives.saturating_add(other.directives);
    }

    /// The first limit these figures break.
    pub fn check(&self, limits: &Limits) -> Result<(), LimitError> {
        let checks = [
            (
                "max_fields",
                self.fields,
                limits.max_fields,
                "fields once its fragments are expanded (spread each fragment once per selection set)",
            ),
            ("max_depth", self.depth, limits.max_depth, "levels deep"),
            ("max_aliases", self.aliases, limits.max_aliases, "aliases"),
            (
                "max_directives",
                self.directives,
                limits.max_directives,
                "directives once its fragments are expanded",
            ),
        ];
        for (limit, actual, max, what) in checks {
            if actual > max {
                return Err(LimitError::new(
                    limit,
                    max as u64,
                    Some(actual as u64),
                    format!("the operation has {actual} {what}"),
                ));
            }
        }
        Ok(())
    }
}

/// Measures the operation `name` selects in a parsed document, before any
/// schema work, so a hostile document is refused by the limit it breaks;
/// with the first alias that takes `reserved_prefix`.
pub(crate) fn measure(
    doc: &ast::Document,
    name: Option<&str>,
    reserved_prefix: &'static str,
) -> (Stats, Option<Name>) {
    let mut operations = doc.definitions.iter().filter_map(|d| match d {
        ast::Definition::OperationDefinition(op) => Some(op),
        _ => None,
    });
    let op = match name {
        Some(n) => operations.find(|op| op.name.as_deref() == Some(n)),
        None => operations.next(),
    };
    let Some(op) = op else {
        // Validation says what is wrong with the operation name.
        return (Stats::default(), None);
    };
    let mut counter = Counter {
        fragments: doc
            .definitions
            .iter()
            .filter_map(|d| match d {
                ast::Definition::FragmentDefinition(f) => Some((f.name.as_str(), f)),
                _ => None,
            })
            .collect(),
        reserved_prefix,
        reserved: None,
        measured: HashMap::new(),
        stack: Vec::new(),
    };
    let mut stats = counter.set(&op.selection_set);
    stats.directives = stats.directives.saturating_add(op.directives.len());
    (stats, counter.reserved)
}

/// Counts each fragment once and reuses its figures at every spread, so a
/// document whose fragments spread each other twice per level (`fragment F0
/// { ...F1 ...F1 }`, 2^N expanded fields) costs linear time to measure, and
/// the exponential figure it yields is what refuses it.
struct Counter<'d> {
    fragments: HashMap<&'d str, &'d Node<ast::FragmentDefinition>>,
    reserved_prefix: &'static str,
    reserved: Option<Name>,
    measured: HashMap<&'d str, Stats>,
    /// Fragments being counted (validation rejects cycles; this guards anyway).
    stack: Vec<&'d str>,
}

impl<'d> Counter<'d> {
    fn set(&mut self, set: &'d [ast::Selection]) -> Stats {
        let mut stats = Stats::default();
        for sel in set {
            match sel {
                ast::Selection::Field(f) => {
                    stats.fields = stats.fields.saturating_add(1);
                    stats.directives = stats.directives.saturating_add(f.directives.len());
                    if let Some(alias) = &f.alias {
                        stats.aliases = stats.aliases.saturating_add(1);
                        if alias.starts_with(self.reserved_prefix) && self.reserved.is_none() {
                            self.reserved = Some(alias.clone());
                        }
                    }
                    stats.depth = stats.depth.max(1);
                    if !f.selection_set.is_empty() {
                        let below = self.set(&f.selection_set);
                        stats.add(below, 1);
                    }
                }
                ast::Selection::InlineFragment(i) => {
                    stats.directives = stats.directives.saturating_add(i.directives.len());
                    let inner = self.set(&i.selection_set);
                    stats.add(inner, 0);
                }
                ast::Selection::FragmentSpread(s) => {
                    stats.directives = stats.directives.saturating_add(s.directives.len());
                    let inner = self.fragment(s.fragment_name.as_str());
                    stats.add(inner, 0);
                }
            }
        }
        stats
    }

    fn fragment(&mut self, name: &'d str) -> Stats {
        if let Some(s) = self.measured.get(name) {
            return *s;
        }
        if self.stack.contains(&name) {
            return Stats::default();
        }
        let Some(f) = self.fragments.get(name).copied() else {
            return Stats::default();
        };
        self.stack.push(name);
        let mut stats = self.set(&f.selection_set);
        stats.directives = stats.directives.saturating_add(f.directives.len());
        self.stack.pop();
        self.measured.insert(name, stats);
        stats
    }
}

/// Arguments that size the lists a field returns, directly or (on a page
/// object such as `pipelines(limit:) { items }`) just below it.
const SLICING_ARGUMENTS: [&str; 3] = ["first", "last", "limit"];

/// The most fields an operation can make the subgraphs resolve, with its
/// variables: a list field multiplies its selection by its size.
/// Introspection is answered by the gateway and costs nothing here.
pub(crate) fn cost(
    doc: &ExecutableDocument,
    set: &SelectionSet,
    variables: &JsonMap,
    default_list_size: u64,
) -> u64 {
    let mut c = Cost {
        doc,
        variables,
        default_list_size,
        fragments: HashMap::new(),
    };
    c.set(set, None)
}

struct Cost<'d, 'v> {
    doc: &'d ExecutableDocument,
    variables: &'v JsonMap,
    default_list_size: u64,
    /// Fragment costs by (name, size handed down from the parent).
    fragments: HashMap<(Name, Option<u64>), u64>,
}

impl Cost<'_, '_> {
    fn set(&mut self, set: &SelectionSet, inherited: Option<u64>) -> u64 {
        let mut total = 0u64;
        for sel in &set.selections {
            let c = match sel {
                Selection::Field(f) => self.field(f, inherited),
                Selection::InlineFragment(i) => self.set(&i.selection_set, inherited),
                Selection::FragmentSpread(s) => {
                    let key = (s.fragment_name.clone(), inherited);
                    match self.fragments.get(&key) {
                        Some(c) => *c,
                        None => {
                            // Marked first: a cycle (which validation refuses) costs 0.
                            self.fragments.insert(key.clone(), 0);
                            let c = match self.doc.fragments.get(&s.fragment_name) {
                                Some(f) => self.set(&f.selection_set, inherited),
                                None => 0,
                            };
                            self.fragments.insert(key, c);
                            c
                        }
                    }
                }
            };
            total = total.saturating_add(c);
        }
        total
    }

    fn field(&mut self, f: &Node<Field>, inherited: Option<u64>) -> u64 {
        if f.name.starts_with("__") {
            return 0;
        }
        let own = self.slice(f);
        let below_size = if f.definition.ty.is_list() { None } else { own };
        let size = if f.definition.ty.is_list() {
            own.or(inherited).unwrap_or(self.default_list_size)
        } else {
            1
        };
        let inner = self.set(&f.selection_set, below_size);
        size.saturating_mul(inner.saturating_add(1))
    }

    /// The value of the field's slicing argument, if it has one.
    fn slice(&self, f: &Field) -> Option<u64> {
        f.arguments
            .iter()
            .find(|a| SLICING_ARGUMENTS.contains(&a.name.as_str()))
            .and_then(|a| match a.value.as_ref() {
                Value::Int(i) => i.try_to_i32().ok().map(|n| n.max(0) as u64),
                Value::Variable(v) => self
                    .variables
                    .get(v.as_str())
                    .and_then(|v| v.as_i64())
                    .map(|n| n.max(0) as u64),
                _ => None,
            })
    }
}
