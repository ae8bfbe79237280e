//! A client operation from text to plan: parse (with token and depth
//! limits), validate against the public schema with every rule of the
//! specification, check request limits, plan. The result is what the
//! gateway caches by document hash and operation name.

use apollo_compiler::{
    parser::Parser,
    request::coerce_variable_values,
    response::{GraphQLError, JsonMap},
    validation::Valid,
    ExecutableDocument,
};

use crate::{
    execute::error,
    limits::{self, LimitError, Limits},
    plan::{self, PlanError, QueryPlan},
    schema::Supergraph,
};

/// Aliases the planner gives its own fields start with this: a client
/// alias may not, so no client field can pass for one.
const RESERVED_PREFIX: &str = "_stitch_";

/// A parsed, validated and planned operation.
#[derive(Debug)]
pub struct PreparedOperation {
    pub document: Valid<ExecutableDocument>,
    pub operation_name: Option<String>,
    pub plan: QueryPlan,
    /// The `@authenticated`/`@requiresScopes` rules it reaches.
    pub access: crate::authorization::OperationAccess,
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
    #[error(transparent)]
    Limit(LimitError),
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
    /// Everything the operation selects is out of the caller's reach, or
    /// some of it is and `[gateway.authorization] mode = "reject"`.
    #[error("the operation selects fields the caller is not authorized to see")]
    Unauthorized(Vec<GraphQLError>),
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
            RequestError::Unauthorized(_) => crate::authorization::UNAUTHORIZED,
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
            RequestError::Limit(l) => vec![l.to_graphql_error(code)],
            RequestError::Unauthorized(list) => list.clone(),
            other => vec![error(other.to_string(), code)],
        }
    }
}

/// The diagnostics as GraphQL errors, at most `max` of them and then one
/// that says the rest were left out (graphql-js stops at 100 too).
fn to_errors(list: &apollo_compiler::validation::DiagnosticList, max: usize) -> Vec<GraphQLError> {
    let mut out: Vec<GraphQLError> = list.iter().take(max).map(|d| d.to_json()).collect();
    if list.len() > max {
        out.push(error(
            format!(
                "too many validation errors: {} found, the first {max} reported (`max_validation_errors`)",
                list.len()
            ),
            "GRAPHQL_VALIDATION_FAILED",
        ));
    }
    out
}

/// Why a document did not parse: a limit (named), or its syntax errors.
fn parse_failure(
    errors: &apollo_compiler::validation::DiagnosticList,
    limits: &Limits,
    recursion: usize,
) -> RequestError {
    let messages: Vec<String> = errors.iter().map(|d| d.error.to_string()).collect();
    if messages.iter().any(|m| m.contains("token limit")) {
        RequestError::Limit(LimitError::new(
            "max_tokens",
            limits.max_tokens as u64,
            None,
            "the document has more lexical tokens than this gateway reads".into(),
        ))
    } else if messages.iter().any(|m| m.contains("recursion limit")) {
        RequestError::Limit(LimitError::new(
            "max_depth",
            limits.max_depth as u64,
            None,
            format!("the document nests selections or values more than {recursion} levels deep"),
        ))
    } else {
        RequestError::Parse(to_errors(errors, limits.max_validation_errors.max(1)))
    }
}

/// Parses, validates and plans `query`: limits first (on the syntax tree,
/// before any schema work), then validation, then the plan.
pub fn prepare(
    supergraph: &Supergraph,
    query: &str,
    operation_name: Option<&str>,
    limits: &Limits,
) -> Result<PreparedOperation, RequestError> {
    let max_errors = limits.max_validation_errors.max(1);
    let recursion = limits.max_depth.saturating_mul(4).max(64);
    // Spans of the stages (exported with the request's trace; free when
    // nothing exports them).
    let span = tracing::debug_span!("graphql.parse", graphql.document.length = query.len());
    let ast = span
        .in_scope(|| {
            Parser::new()
                .token_limit(limits.max_tokens)
                .recursion_limit(recursion)
                .parse_ast(query, "request.graphql")
        })
        .map_err(|e| parse_failure(&e.errors, limits, recursion))?;
    let (stats, reserved) = limits::measure(&ast, operation_name, RESERVED_PREFIX);
    if let Some(alias) = reserved {
        return Err(RequestError::Validation(vec![error(
            format!("the alias `{alias}` starts with `{RESERVED_PREFIX}`, which this gateway keeps for its own fields; choose another alias"),
            "GRAPHQL_VALIDATION_FAILED",
        )]));
    }
    stats.check(limits).map_err(RequestError::Limit)?;
    // Building first: an unknown field is reported as that, not also as
    // the empty selection it leaves behind.
    let invalid = |e: apollo_compiler::validation::WithErrors<ExecutableDocument>| {
        RequestError::Validation(to_errors(&e.errors, max_errors))
    };
    let validating = tracing::debug_span!("graphql.validate").entered();
    let document = ast
        .to_executable(&supergraph.schema)
        .map_err(invalid)?
        .validate(&supergraph.schema)
        .map_err(invalid)?;
    let mut stricter = crate::spec_rules::check(&supergraph.schema, &document);
    drop(validating);
    if !stricter.is_empty() {
        stricter.truncate(max_errors);
        return Err(RequestError::Validation(stricter));
    }
    let op = document.operations.get(operation_name).map_err(|e| {
        RequestError::Validation(vec![error(
            e.message().to_string(),
            "OPERATION_RESOLUTION_FAILURE",
        )])
    })?;
    let root_fields = op.root_fields(&document).count();
    if root_fields > limits.max_root_fields {
        return Err(RequestError::Limit(LimitError::new(
            "max_root_fields",
            limits.max_root_fields as u64,
            Some(root_fields as u64),
            format!("the operation selects {root_fields} root fields"),
        )));
    }
    let plan = tracing::debug_span!("graphql.plan", graphql.operation.name = operation_name)
        .in_scope(|| plan::plan(supergraph, &document, operation_name))?;
    if plan.has_introspection && !limits.introspection {
        return Err(RequestError::IntrospectionDisabled);
    }
    let access = crate::authorization::reached(supergraph, &document, op);
    Ok(PreparedOperation {
        document,
        operation_name: operation_name.map(str::to_owned),
        plan,
        access,
    })
}

/// Refuses an operation whose cost, with these variables, is over
/// `max_cost`: list sizes come from `first`/`last`/`limit` arguments,
/// literal or variable, so the same document may pass or not.
pub fn check_cost(
    prepared: &PreparedOperation,
    variables: &JsonMap,
    limits: &Limits,
) -> Result<(), RequestError> {
    if limits.max_cost == 0 {
        return Ok(());
    }
    let op = prepared.operation();
    let cost = limits::cost(
        &prepared.document,
        &op.selection_set,
        variables,
        limits.default_list_size,
    );
    if cost > limits.max_cost {
        return Err(RequestError::Limit(LimitError::new(
            "max_cost",
            limits.max_cost,
            Some(cost),
            format!(
                "the operation may resolve {cost} fields (each list counted at its `first`/`last`/`limit` argument, or {} without one)",
                limits.default_list_size
            ),
        )));
    }
    Ok(())
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
            introspection: false,
            ..Limits::default()
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
        assert_eq!(
            err.to_graphql_errors()[0].extensions.get("limit"),
            Some(&"max_fields".into())
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

    fn limit_of(query: &str, limits: &Limits) -> String {
        match prepare(&supergraph(), query, None, limits) {
            Ok(_) => "OK".into(),
            Err(RequestError::Limit(l)) => l.limit.into(),
            Err(e) => e.code().into(),
        }
    }

    #[test]
    fn every_refusal_names_the_limit_that_fired() {
        let l = Limits::default();
        // Deeper than the parser goes: the depth limit, not a token count.
        let deep = format!("{{ {} b {} }}", "a { ".repeat(80), "} ".repeat(80));
        assert_eq!(limit_of(&deep, &l), "max_depth");
        let many = format!("{{ {} }}", "pipelines { total } ".repeat(8_000));
        assert_eq!(limit_of(&many, &l), "max_tokens");
        let directives = format!(
            "{{ pipelines {{ {} }} }}",
            "total @include(if: true) ".repeat(60)
        );
        assert_eq!(limit_of(&directives, &l), "max_directives");
        // Directives count through fragments, expanded.
        let q = "{ pipelines { ...P ...P ...P } } fragment P on PipelinePage { total @skip(if: false) items @skip(if: false) { id } }";
        let few = Limits {
            max_directives: 5,
            ..Limits::default()
        };
        assert_eq!(limit_of(q, &few), "max_directives");
    }

    #[test]
    fn validation_errors_are_capped() {
        let q = format!(
            "{{ {} }}",
            (0..300)
                .map(|i| format!("f{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let err = prepare(&supergraph(), &q, None, &Limits::default()).unwrap_err();
        let errors = err.to_graphql_errors();
        assert_eq!(errors.len(), 101);
        assert!(
            errors[100]
                .message
                .contains("too many validation errors: 300 found"),
            "{}",
            errors[100].message
        );
    }

    #[test]
    fn cost_counts_lists_by_their_arguments_and_variables() {
        let sg = supergraph();
        let l = Limits {
            max_cost: 1_000,
            ..Limits::default()
        };
        let cost = |q: &str, vars: &str| -> Result<(), String> {
            let p = prepare(&sg, q, None, &l).unwrap();
            let vars: JsonMap = serde_json::from_str(vars).unwrap();
            check_cost(&p, &vars, &l).map_err(|e| match e {
                RequestError::Limit(l) => format!("{} {}", l.limit, l.actual.unwrap_or(0)),
                other => other.to_string(),
            })
        };
        // pipelines(limit: 5): 1 + 5 items x (1 + id + 10 tags x (1 + key)).
        let q = "{ pipelines(limit: 5) { items { id tags { key } } } }";
        assert_eq!(cost(q, "{}"), Ok(()));
        let q = "query($n: Int) { pipelines(limit: $n) { items { id tags { key } } } }";
        assert_eq!(cost(q, r#"{"n": 40}"#), Ok(()));
        // 1 + 50 x (1 + 1 + 10 x 2) = 1101
        assert_eq!(cost(q, r#"{"n": 50}"#), Err("max_cost 1101".into()));
        // Introspection is the gateway's own work.
        assert_eq!(
            cost("{ __schema { types { fields { args { name } } } } }", "{}"),
            Ok(())
        );
    }
}
