//! A client operation from text to plan: parse (with token and depth
//! limits), validate against the public schema with every rule of the
//! specification, check request limits, plan. The result is what the
//! gateway caches by document hash and operation name.

use std::collections::HashMap;

use apollo_compiler::{
    executable::{Selection, SelectionSet},
    parser::Parser,
    request::coerce_variable_values,
    response::{GraphQLError, JsonMap},
    validation::Valid,
    ExecutableDocument,
};

use crate::{
    execute::error,
    plan::{self, PlanError, QueryPlan},
    schema::{diagnostics, Supergraph},
};

/// Aliases the planner gives its own fields start with this: a client
/// alias may not, so no client field can pass for one.
const RESERVED_PREFIX: &str = "_stitch_";

/// Limits a client request must stay within.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_depth: usize,
    pub max_aliases: usize,
    pub max_root_fields: usize,
    pub max_tokens: usize,
    /// Field selections once every fragment spread is expanded in place.
    pub max_fields: usize,
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
            introspection: true,
        }
    }
}

/// A parsed, validated and planned operation.
#[derive(Debug)]
pub struct PreparedOperation {
    pub document: Valid<ExecutableDocument>,
    pub operation_name: Option<String>,
    pub plan: QueryPlan,
}

impl PreparedOperation {
    pub fn operation(&self) -> &apollo_compiler::Node<apollo_compiler::executable::Operation> {
        // Planning already resolved this name against the document.
        match self.document.operations.get(self.operation_name.as_deref()) {
            Ok(op) => op,
            Err(_) => unreachable!("operation resolved during planning"),
        }
    }
}

/// Why a request was refused before any subgraph was called.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RequestError {
    #[error("the document does not parse")]
    Parse(Vec<GraphQLError>),
    #[error("the operation is invalid against the schema")]
    Validation(Vec<GraphQLError>),
    #[error("{0}")]
    Limit(String),
    #[error("introspection is disabled on this gateway")]
    IntrospectionDisabled,
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("{0}")]
    Variables(String),
    /// Not a GraphQL request at all (e.g. no `query`).
    #[error("{0}")]
    BadRequest(String),
    /// GraphQL over HTTP: GET must not change anything (HTTP 405).
    #[error("mutations are not allowed over GET: send them with POST")]
    MutationOverGet,
    /// A subscription sent as a plain HTTP request.
    #[error("subscriptions run over WebSocket: connect to this URL with the graphql-transport-ws subprotocol")]
    SubscriptionOverHttp,
}

impl RequestError {
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::Parse(_) => "GRAPHQL_PARSE_FAILED",
            RequestError::Validation(_) => "GRAPHQL_VALIDATION_FAILED",
            RequestError::Limit(_) => "REQUEST_LIMIT_EXCEEDED",
            RequestError::IntrospectionDisabled => "INTROSPECTION_DISABLED",
            RequestError::Plan(p) => p.code(),
            RequestError::Variables(_) => "BAD_USER_INPUT",
            RequestError::BadRequest(_) => "BAD_REQUEST",
            RequestError::MutationOverGet | RequestError::SubscriptionOverHttp => {
                "OPERATION_NOT_ALLOWED"
            }
        }
    }

    /// The errors of a response for this refusal, each with `extensions.code`.
    pub fn to_graphql_errors(&self) -> Vec<GraphQLError> {
        let code = self.code();
        match self {
            RequestError::Parse(list) | RequestError::Validation(list) => list
                .iter()
                .cloned()
                .map(|mut e| {
                    e.extensions.insert("code", code.into());
                    e
                })
                .collect(),
            other => vec![error(other.to_string(), code)],
        }
    }
}

fn to_errors(list: &apollo_compiler::validation::DiagnosticList) -> Vec<GraphQLError> {
    list.iter().map(|d| d.to_json()).collect()
}

/// Parses, validates and plans `query`.
pub fn prepare(
    supergraph: &Supergraph,
    query: &str,
    operation_name: Option<&str>,
    limits: &Limits,
) -> Result<PreparedOperation, RequestError> {
    let document = Parser::new()
        .token_limit(limits.max_tokens)
        .recursion_limit(limits.max_depth.saturating_mul(4).max(64))
        .parse_executable(&supergraph.schema, query, "request.graphql")
        .map_err(|e| {
            let limit_hit = e
                .errors
                .iter()
                .any(|d| d.error.to_string().contains("limit"));
            let syntax = diagnostics(&e.errors)
                .iter()
                .any(|(_, m)| m.starts_with("syntax error"));
            if limit_hit {
                RequestError::Limit(format!(
                    "the document is larger than this gateway accepts (at most {} tokens)",
                    limits.max_tokens
                ))
            } else if syntax {
                RequestError::Parse(to_errors(&e.errors))
            } else {
                // Building the document against the schema already found
                // validation errors (unknown types, fields).
                RequestError::Validation(to_errors(&e.errors))
            }
        })?;
    let document = document.validate(&supergraph.schema).map_err(|e| {
        let errors = to_errors(&e.errors);
        let syntax = diagnostics(&e.errors)
            .iter()
            .any(|(_, m)| m.starts_with("syntax error"));
        if syntax {
            RequestError::Parse(errors)
        } else {
            RequestError::Validation(errors)
        }
    })?;
    let op = document.operations.get(operation_name).map_err(|e| {
        RequestError::Validation(vec![error(
            e.message().to_string(),
            "OPERATION_RESOLUTION_FAILURE",
        )])
    })?;

    let mut counter = Counter {
        doc: &document,
        reserved: None,
        fragments: HashMap::new(),
        stack: Vec::new(),
    };
    let stats = counter.set(&op.selection_set);
    if let Some(alias) = counter.reserved {
        return Err(RequestError::Validation(vec![error(
            format!("the alias `{alias}` starts with `{RESERVED_PREFIX}`, which this gateway keeps for its own fields; choose another alias"),
            "GRAPHQL_VALIDATION_FAILED",
        )]));
    }
    if stats.fields > limits.max_fields {
        return Err(RequestError::Limit(format!(
            "the operation selects {} fields once its fragments are expanded; this gateway allows at most {} (spread each fragment once per selection set)",
            stats.fields, limits.max_fields
        )));
    }
    if stats.depth > limits.max_depth {
        return Err(RequestError::Limit(format!(
            "the operation is {} levels deep; this gateway allows at most {}",
            stats.depth, limits.max_depth
        )));
    }
    if stats.aliases > limits.max_aliases {
        return Err(RequestError::Limit(format!(
            "the operation uses {} aliases; this gateway allows at most {}",
            stats.aliases, limits.max_aliases
        )));
    }
    let root_fields = op.root_fields(&document).count();
    if root_fields > limits.max_root_fields {
        return Err(RequestError::Limit(format!(
            "the operation selects {root_fields} root fields; this gateway allows at most {}",
            limits.max_root_fields
        )));
    }
    let plan = plan::plan(supergraph, &document, operation_name)?;
    if plan.has_introspection && !limits.introspection {
        return Err(RequestError::IntrospectionDisabled);
    }
    Ok(PreparedOperation {
        document,
        operation_name: operation_name.map(str::to_owned),
        plan,
    })
}

/// Coerces the request's variables for the prepared operation (defaults applied).
pub fn coerce_variables(
    supergraph: &Supergraph,
    prepared: &PreparedOperation,
    variables: &JsonMap,
) -> Result<Valid<JsonMap>, RequestError> {
    coerce_variable_values(&supergraph.schema, prepared.operation(), variables)
        .map_err(|e| RequestError::Variables(e.message().to_string()))
}

/// Size of a selection set with every fragment spread expanded in place:
/// what planning and shaping walk.
#[derive(Clone, Copy, Default)]
struct Stats {
    /// Levels of fields: 1 for leaves only.
    depth: usize,
    aliases: usize,
    fields: usize,
}

impl Stats {
    fn add(&mut self, other: Stats, depth_offset: usize) {
        self.depth = self.depth.max(other.depth.saturating_add(depth_offset));
        self.aliases = self.aliases.saturating_add(other.aliases);
        self.fields = self.fields.saturating_add(other.fields);
    }
}

/// Counts each fragment once and reuses its figures at every spread, so a
/// document whose fragments spread each other twice per level (`fragment F0
/// { ...F1 ...F1 }`, 2^N expanded fields) costs linear time to measure, and
/// the exponential figure it yields is what refuses it.
struct Counter<'d> {
    doc: &'d ExecutableDocument,
    /// The first alias that takes the gateway's reserved prefix.
    reserved: Option<apollo_compiler::Name>,
    fragments: HashMap<&'d str, Stats>,
    /// Fragments being counted (validation rejects cycles; this guards anyway).
    stack: Vec<&'d str>,
}

impl<'d> Counter<'d> {
    fn set(&mut self, set: &'d SelectionSet) -> Stats {
        let mut stats = Stats::default();
        for sel in &set.selections {
            match sel {
                Selection::Field(f) => {
                    stats.fields = stats.fields.saturating_add(1);
                    if let Some(alias) = &f.alias {
                        stats.aliases = stats.aliases.saturating_add(1);
                        if alias.starts_with(RESERVED_PREFIX) && self.reserved.is_none() {
                            self.reserved = Some(alias.clone());
                        }
                    }
                    stats.depth = stats.depth.max(1);
                    if !f.selection_set.selections.is_empty() {
                        let below = self.set(&f.selection_set);
                        stats.add(below, 1);
                    }
                }
                Selection::InlineFragment(i) => {
                    let inner = self.set(&i.selection_set);
                    stats.add(inner, 0);
                }
                Selection::FragmentSpread(s) => {
                    let inner = self.fragment(s.fragment_name.as_str());
                    stats.add(inner, 0);
                }
            }
        }
        stats
    }

    fn fragment(&mut self, name: &'d str) -> Stats {
        if let Some(s) = self.fragments.get(name) {
            return *s;
        }
        if self.stack.contains(&name) {
            return Stats::default();
        }
        let Some(f) = self.doc.fragments.get(name) else {
            return Stats::default();
        };
        self.stack.push(name);
        let stats = self.set(&f.selection_set);
        self.stack.pop();
        self.fragments.insert(name, stats);
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::supergraph;

    fn code(query: &str, limits: &Limits) -> &'static str {
        match prepare(&supergraph(), query, None, limits) {
            Ok(_) => "OK",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn parse_validation_and_limit_errors_are_told_apart() {
        let l = Limits::default();
        assert_eq!(code("{ pipelines { total ", &l), "GRAPHQL_PARSE_FAILED");
        assert_eq!(code("{ nope }", &l), "GRAPHQL_VALIDATION_FAILED");
        assert_eq!(code("{ pipeline { id } }", &l), "GRAPHQL_VALIDATION_FAILED");
        assert_eq!(
            code(
                "query A { pipelines { total } } query A { pipelines { total } }",
                &l
            ),
            "GRAPHQL_VALIDATION_FAILED"
        );
        assert_eq!(code("{ pipelines { total } }", &l), "OK");
        let tight = Limits {
            max_depth: 2,
            max_aliases: 1,
            max_root_fields: 1,
            max_tokens: 20,
            max_fields: 10_000,
            introspection: false,
        };
        assert_eq!(
            code("{ pipelines { items { tags { key } } } }", &tight),
            "REQUEST_LIMIT_EXCEEDED"
        );
        assert_eq!(
            code("{ a: pipelines { total } b: pipelines { total } }", &tight),
            "REQUEST_LIMIT_EXCEEDED"
        );
        assert_eq!(
            code(
                "{ pipelines { total } logs(pipelineId: \"1\") { nextCursor } }",
                &tight
            ),
            "REQUEST_LIMIT_EXCEEDED"
        );
        assert_eq!(
            code(
                &format!("{{ {} }}", "pipelines { total } ".repeat(10)),
                &tight
            ),
            "REQUEST_LIMIT_EXCEEDED"
        );
        let closed = Limits {
            introspection: false,
            ..Limits::default()
        };
        assert_eq!(
            code("{ __schema { queryType { name } } }", &closed),
            "INTROSPECTION_DISABLED"
        );
        assert_eq!(code("{ __typename pipelines { total } }", &closed), "OK");
    }

    #[test]
    fn fragments_spreading_each_other_twice_are_measured_expanded() {
        // 2^40 fields once expanded, in a few hundred tokens: refused at once.
        let mut bomb = String::from("{ pipelines { items { ...F0 } } }");
        for i in 0..40 {
            bomb.push_str(&format!(
                " fragment F{i} on Pipeline {{ ...F{} ...F{} }}",
                i + 1,
                i + 1
            ));
        }
        bomb.push_str(" fragment F40 on Pipeline { id }");
        let started = std::time::Instant::now();
        let err = prepare(&supergraph(), &bomb, None, &Limits::default()).unwrap_err();
        assert_eq!(err.code(), "REQUEST_LIMIT_EXCEEDED");
        assert!(
            err.to_string()
                .contains("fields once its fragments are expanded"),
            "{err}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Depth and aliases count through fragments too.
        let deep = Limits {
            max_depth: 3,
            ..Limits::default()
        };
        let q = "{ pipelines { ...P } } fragment P on PipelinePage { items { tags { key } } }";
        assert_eq!(code(q, &deep), "REQUEST_LIMIT_EXCEEDED");
        let few = Limits {
            max_aliases: 2,
            ..Limits::default()
        };
        let q = "{ pipelines { ...P ...Q } } fragment P on PipelinePage { a: total b: total } fragment Q on PipelinePage { ...P }";
        assert_eq!(code(q, &few), "REQUEST_LIMIT_EXCEEDED");
        assert_eq!(
            code(
                "{ pipelines { ...P } } fragment P on PipelinePage { a: total b: total }",
                &few
            ),
            "OK"
        );
    }

    #[test]
    fn the_planners_aliases_cannot_be_forged() {
        let l = Limits::default();
        for q in [
            "{ pipeline(id: \"1\") { _stitch_t: name } }",
            "{ _stitch_0: pipelines { total } }",
            "{ pipelines { ...F } } fragment F on PipelinePage { _stitch_f_x: total }",
        ] {
            let err = prepare(&supergraph(), q, None, &l).unwrap_err();
            assert_eq!(err.code(), "GRAPHQL_VALIDATION_FAILED", "{q}");
            assert!(
                err.to_graphql_errors()[0].message.contains("`_stitch_`"),
                "{q}"
            );
        }
        assert_eq!(code("{ stitch: pipelines { total } }", &l), "OK");
    }

    #[test]
    fn variables_are_coerced_with_defaults() {
        let sg = supergraph();
        let p = prepare(
            &sg,
            "query($n: Int = 5) { pipelines(limit: $n) { total } }",
            None,
            &Limits::default(),
        )
        .unwrap();
        let v = coerce_variables(&sg, &p, &JsonMap::new()).unwrap();
        assert_eq!(v.get("n").and_then(|n| n.as_i64()), Some(5));
        let bad: JsonMap = serde_json::from_str(r#"{"n": "x"}"#).unwrap();
        assert_eq!(
            coerce_variables(&sg, &p, &bad).unwrap_err().code(),
            "BAD_USER_INPUT"
        );
    }
}
