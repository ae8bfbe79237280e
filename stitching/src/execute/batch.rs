//! One level's delegations to one subgraph -> one request (aliased root
//! fields, renamed variables, identical delegations once), and the answer
//! mapped back onto the parents, errors included.

use std::{fmt::Write, sync::Arc};

use ahash::HashMap;

use apollo_compiler::{
    ast::OperationType,
    response::{GraphQLError, JsonMap, JsonValue, ResponseDataPathSegment},
    Name,
};

use super::{
    error,
    value::{self, ast_to_json, collect_objects_in, get, to_error_path, PathSeg},
    FetchError, Request, SubgraphRequest,
};
use crate::{
    directives::path::PathValue,
    plan::{BoolOrVariable, Condition, FetchNode, REQUIRE_PREFIX, TYPENAME_ALIAS},
    schema::{Subgraph, SubgraphId},
};

/// A delegated field waiting for its parent object at `parent`.
pub struct Pending {
    pub node: Arc<FetchNode>,
    pub parent: Vec<PathSeg>,
}

impl Pending {
    pub fn root(node: &Arc<FetchNode>) -> Self {
        Pending {
            node: node.clone(),
            parent: Vec::new(),
        }
    }
}

/// Where one call's answer goes.
pub(crate) struct Target {
    path: Vec<PathSeg>,
    key: KeyRef,
    /// The plan node this answer is for: its children run next. Identical
    /// delegations of different nodes (`a: f { x } b: f { x }`) share a call.
    node: Arc<FetchNode>,
}

enum KeyRef {
    /// Not batched: the whole answer.
    Whole,
    /// Batched with a scalar key: the answer's item at this index.
    One(usize),
    /// Batched with a list key: these items, in order (`None` for a null key item).
    Many(Vec<Option<usize>>),
}

/// One aliased root field of a remote request.
pub(crate) struct Call {
    alias: String,
    node: Arc<FetchNode>,
    targets: Vec<Target>,
}

pub struct Built {
    pub subgraph: SubgraphId,
    pub request: Option<SubgraphRequest>,
    pub(crate) calls: Vec<Call>,
}

fn condition_holds(c: &Condition, variables: &JsonMap) -> bool {
    let value = |b: &BoolOrVariable| match b {
        BoolOrVariable::Bool(b) => *b,
        BoolOrVariable::Variable(v) => variables
            .get(v.as_str())
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
    };
    match c {
        Condition::Skip(b) => !value(b),
        Condition::Include(b) => value(b),
    }
}

/// The answer of a field whose `$fields:` key is null: null, or `[]` for a non-null list.
fn empty_answer(node: &FetchNode) -> JsonValue {
    if node.is_list() && node.is_non_null() {
        JsonValue::Array(Vec::new())
    } else {
        JsonValue::Null
    }
}

enum Resolved {
    Value(JsonValue),
    /// A `$arguments:`/`$variables:` reference with no value: leave the argument out.
    Absent,
    /// A `$fields:` reference that is null: the field is null, no call.
    NullKey,
}

fn resolve(pv: &PathValue, node: &FetchNode, parent: &JsonMap, variables: &JsonMap) -> Resolved {
    match pv {
        PathValue::Null => Resolved::Value(JsonValue::Null),
        PathValue::Bool(b) => Resolved::Value(JsonValue::Bool(*b)),
        PathValue::Int(i) => Resolved::Value(JsonValue::from(*i)),
        PathValue::Float(f) => Resolved::Value(
            serde_json::Number::from_f64(*f)
                .map(JsonValue::Number)
                .unwrap_or(JsonValue::Null),
        ),
        PathValue::String(s) | PathValue::Enum(s) => {
            Resolved::Value(JsonValue::String(s.as_str().into()))
        }
        PathValue::List(items) => {
            let mut out = Vec::with_capacity(items.len());
            for i in items {
                match resolve(i, node, parent, variables) {
                    Resolved::Value(v) => out.push(v),
                    Resolved::Absent => out.push(JsonValue::Null),
                    Resolved::NullKey => return Resolved::NullKey,
                }
            }
            Resolved::Value(JsonValue::Array(out))
        }
        PathValue::Object(fields) => {
            let mut m = JsonMap::new();
            for (k, v) in fields {
                match resolve(v, node, parent, variables) {
                    Resolved::Value(v) => {
                        m.insert(k.as_str(), v);
                    }
                    Resolved::Absent => {}
                    Resolved::NullKey => return Resolved::NullKey,
                }
            }
            Resolved::Value(JsonValue::Object(m))
        }
        PathValue::Argument(name) => {
            let given = node
                .field
                .arguments
                .iter()
                .find(|a| a.name == name.as_str());
            let value = match given {
                Some(a) => ast_to_json(&a.value, variables),
                None => node
                    .field
                    .definition
                    .arguments
                    .iter()
                    .find(|a| a.name == name.as_str())
                    .and_then(|d| d.default_value.as_ref())
                    .and_then(|d| ast_to_json(d, variables)),
            };
            value.map(Resolved::Value).unwrap_or(Resolved::Absent)
        }
        PathValue::Variable(name) => variables
            .get(name.as_str())
            .cloned()
            .map(Resolved::Value)
            .unwrap_or(Resolved::Absent),
        PathValue::Field(name) => match parent.get(require_key(node, name)) {
            None | Some(JsonValue::Null) => Resolved::NullKey,
            Some(v) => Resolved::Value(v.clone()),
        },
    }
}

/// A batch key for deduplication.
#[derive(PartialEq, Eq, Hash)]
enum KeyText {
    Str(apollo_compiler::response::serde_json_bytes::ByteString),
    Json(String),
}

/// The alias under which the parent object holds `$fields:NAME`.
fn require_key<'n>(node: &'n FetchNode, name: &str) -> &'n str {
    node.require_keys
        .iter()
        .find(|k| k.strip_prefix(REQUIRE_PREFIX) == Some(name))
        .map(|k| k.as_str())
        .unwrap_or("")
}

struct CallBuilder {
    call: Call,
    /// Per segment, the arguments sent as variables `(name, variable)`.
    args: Vec<Vec<(String, String)>>,
    /// Batched: the distinct keys, and their index by JSON text.
    keys: Vec<JsonValue>,
    key_index: HashMap<KeyText, usize>,
}

/// Builds this level's request to `subgraph`. Fields that resolve without a
/// call (null `$fields:` keys) are written to `data` right away.
pub fn build(
    req: &Request<'_>,
    data: &mut JsonValue,
    _errors: &mut Vec<GraphQLError>,
    subgraph: SubgraphId,
    pendings: Vec<Pending>,
) -> Built {
    let variables: &JsonMap = req.variables;
    let mut builders: Vec<CallBuilder> = Vec::new();
    let mut dedup: HashMap<String, usize> = HashMap::default();
    let mut remote_vars = JsonMap::new();
    let mut decls = String::new();
    for p in pendings {
        let node = &p.node;
        let Some(JsonValue::Object(parent)) = get(data, &p.parent) else {
            continue;
        };
        if !node
            .conditions
            .iter()
            .all(|c| condition_holds(c, variables))
        {
            continue;
        }
        if let Some(guard) = &node.type_guard {
            let runtime = parent
                .get(TYPENAME_ALIAS)
                .and_then(|v| v.as_str())
                .unwrap_or("");
            // Already the public name (see `public_typenames`).
            if runtime != guard.as_str() {
                continue;
            }
        }
        let mut path = p.parent.clone();
        path.push(PathSeg::Key(node.response_key.clone()));
        let delegation = &node.delegation;

        if delegation.batch {
            let key_name = delegation
                .requires
                .first()
                .map(|n| n.as_str())
                .unwrap_or("");
            let key = parent.get(require_key(node, key_name)).cloned();
            let key = match key {
                None | Some(JsonValue::Null) => {
                    value::write(data, &path, empty_answer(node));
                    continue;
                }
                Some(k) => k,
            };
            // Same remote field and selection: one call, whatever the plan node.
            let same = |b: &CallBuilder| {
                let n = &b.call.node;
                n.delegation.batch
                    && n.selection == node.selection
                    && Arc::ptr_eq(&n.delegation, &node.delegation)
                    && n.field.arguments == node.field.arguments
            };
            let idx = match builders.iter().position(same) {
                Some(i) => i,
                None => {
                    builders.push(CallBuilder {
                        call: Call {
                            alias: format!("_{}", builders.len()),
                            node: node.clone(),
                            targets: Vec::new(),
                        },
                        args: Vec::new(),
                        keys: Vec::new(),
                        key_index: HashMap::default(),
                    });
                    builders.len() - 1
                }
            };
            let b = &mut builders[idx];
            let mut intern = |k: &JsonValue| -> usize {
                // Keys are nearly always IDs: a string key is its own
                // (refcounted) text, anything else its JSON.
                let text = match k {
                    JsonValue::String(s) => KeyText::Str(s.clone()),
                    other => KeyText::Json(other.to_string()),
                };
                if let Some(i) = b.key_index.get(&text) {
                    return *i;
                }
                b.keys.push(k.clone());
                b.key_index.insert(text, b.keys.len() - 1);
                b.keys.len() - 1
            };
            let key = match &key {
                JsonValue::Array(items) => KeyRef::Many(
                    items
                        .iter()
                        .map(|k| if k.is_null() { None } else { Some(intern(k)) })
                        .collect(),
                ),
                k => KeyRef::One(intern(k)),
            };
            b.call.targets.push(Target {
                path,
                key,
                node: node.clone(),
            });
            continue;
        }

        // Not batched: resolve every argument; identical calls are made once.
        let mut seg_args: Vec<Vec<(String, JsonValue)>> = Vec::with_capacity(delegation.path.len());
        let mut null_key = false;
        for seg in &delegation.path {
            let mut args = Vec::new();
            match &seg.arguments {
                None => {
                    for a in &node.field.arguments {
                        if let Some(v) = ast_to_json(&a.value, variables) {
                            args.push((a.name.to_string(), v));
                        }
                    }
                }
                Some(list) => {
                    for (name, pv) in list {
                        match resolve(pv, node, parent, variables) {
                            Resolved::Value(v) => args.push((name.clone(), v)),
                            Resolved::Absent => {}
                            Resolved::NullKey => null_key = true,
                        }
                    }
                }
            }
            seg_args.push(args);
        }
        if null_key {
            value::write(data, &path, empty_answer(node));
            continue;
        }
        // Identical delegations go out once: same remote path, arguments and
        // selection. Not mutations: two identical mutation fields are two effects.
        let mut signature = format!("{:p}|{}", Arc::as_ptr(&node.delegation), node.selection);
        for args in &seg_args {
            signature.push('|');
            for (k, v) in args {
                let _ = write!(signature, "{k}={v};");
            }
        }
        let dedupe = delegation.operation != OperationType::Mutation;
        if let Some(i) = dedup.get(&signature).filter(|_| dedupe) {
            builders[*i].call.targets.push(Target {
                path,
                key: KeyRef::Whole,
                node: node.clone(),
            });
            continue;
        }
        let call_index = builders.len();
        let mut args_vars = Vec::with_capacity(seg_args.len());
        for (si, args) in seg_args.into_iter().enumerate() {
            let mut vars = Vec::with_capacity(args.len());
            for (name, v) in args {
                let var = format!("a{call_index}_{si}_{name}");
                let ty = delegation
                    .argument_types
                    .get(si)
                    .and_then(|m| m.get(&name))
                    .map(|s| s.as_str())
                    .unwrap_or("String");
                let _ = write!(decls, "${var}: {ty}, ");
                remote_vars.insert(var.as_str(), v);
                vars.push((name, var));
            }
            args_vars.push(vars);
        }
        if dedupe {
            dedup.insert(signature, call_index);
        }
        builders.push(CallBuilder {
            call: Call {
                alias: format!("_{call_index}"),
                node: node.clone(),
                targets: vec![Target {
                    path,
                    key: KeyRef::Whole,
                    node: node.clone(),
                }],
            },
            args: args_vars,
            keys: Vec::new(),
            key_index: HashMap::default(),
        });
    }
    if builders.is_empty() {
        return Built {
            subgraph,
            request: None,
            calls: Vec::new(),
        };
    }

    // Batched calls: the key list goes into the single `$fields:` argument.
    for (ci, b) in builders.iter_mut().enumerate() {
        if !b.call.node.delegation.batch {
            continue;
        }
        let delegation = b.call.node.delegation.clone();
        let node = b.call.node.clone();
        let empty = JsonMap::new();
        let last = delegation.path.len() - 1;
        for (si, seg) in delegation.path.iter().enumerate() {
            let mut vars = Vec::new();
            for (name, pv) in seg.arguments.iter().flatten() {
                let v = if si == last && matches!(pv, PathValue::Field(_)) {
                    // Flattened: list keys were interned item by item.
                    JsonValue::Array(b.keys.clone())
                } else {
                    match resolve(pv, &node, &empty, variables) {
                        Resolved::Value(v) => v,
                        _ => continue,
                    }
                };
                let var = format!("a{ci}_{si}_{name}");
                let ty = delegation
                    .argument_types
                    .get(si)
                    .and_then(|m| m.get(name))
                    .map(|s| s.as_str())
                    .unwrap_or("String");
                let _ = write!(decls, "${var}: {ty}, ");
                remote_vars.insert(var.as_str(), v);
                vars.push((name.clone(), var));
            }
            b.args.push(vars);
        }
    }

    // Client variables the selections use, renamed `$c_NAME`.
    let mut declared: Vec<&Name> = Vec::new();
    for b in &builders {
        for (name, ty) in &b.call.node.variables {
            if declared.contains(&name) {
                continue;
            }
            declared.push(name);
            let _ = write!(decls, "$c_{name}: {ty}, ");
            if let Some(v) = variables.get(name.as_str()) {
                remote_vars.insert(format!("c_{name}").as_str(), v.clone());
            }
        }
    }

    let operation = builders[0].call.node.delegation.operation;
    let mut query = String::with_capacity(256);
    query.push_str(match operation {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    });
    if !decls.is_empty() {
        query.push('(');
        query.push_str(decls.trim_end_matches([',', ' ']));
        query.push(')');
    }
    query.push_str(" {");
    for b in &builders {
        let path = &b.call.node.delegation.path;
        query.push(' ');
        query.push_str(&b.call.alias);
        query.push_str(": ");
        for (si, seg) in path.iter().enumerate() {
            query.push_str(&seg.name);
            if let Some(vars) = b.args.get(si).filter(|v| !v.is_empty()) {
                query.push('(');
                for (i, (name, var)) in vars.iter().enumerate() {
                    if i > 0 {
                        query.push_str(", ");
                    }
                    let _ = write!(query, "{name}: ${var}");
                }
                query.push(')');
            }
            if si + 1 < path.len() {
                query.push_str(" { ");
            }
        }
        if !b.call.node.selection.is_empty() {
            query.push(' ');
            query.push_str(&b.call.node.selection);
        }
        for _ in 1..path.len() {
            query.push_str(" }");
        }
    }
    query.push_str(" }");
    Built {
        subgraph,
        request: Some(SubgraphRequest {
            operation,
            query,
            variables: remote_vars,
        }),
        calls: builders.into_iter().map(|b| b.call).collect(),
    }
}

/// Follows the path segments after the first (`a.b.c`: `b`, then `c`), through lists.
fn descend(v: JsonValue, names: &[crate::directives::path::Segment]) -> JsonValue {
    let Some((first, rest)) = names.split_first() else {
        return v;
    };
    match v {
        JsonValue::Object(mut m) => descend(
            m.remove(first.name.as_str()).unwrap_or(JsonValue::Null),
            rest,
        ),
        JsonValue::Array(items) => {
            JsonValue::Array(items.into_iter().map(|i| descend(i, names)).collect())
        }
        other => other,
    }
}

/// Maps a response body onto the parents, and queues the next level.
pub fn merge_body(
    req: &Request<'_>,
    data: &mut JsonValue,
    errors: &mut Vec<GraphQLError>,
    subgraph: SubgraphId,
    calls: &[Call],
    body: JsonValue,
    next: &mut Vec<Pending>,
) {
    let sg = &req.supergraph.subgraphs[subgraph];
    let service = sg.name.as_str();
    let (mut remote_data, remote_errors) = match body {
        JsonValue::Object(mut m) => (m.remove("data"), m.remove("errors")),
        _ => {
            fail(
                req,
                errors,
                subgraph,
                calls,
                &FetchError::Malformed("not a JSON object".into()),
            );
            return;
        }
    };
    if let Some(JsonValue::Array(list)) = remote_errors {
        for e in list {
            map_error(e, service, calls, errors);
        }
    }
    for call in calls {
        let answer = remote_data
            .as_mut()
            .and_then(|d| d.as_object_mut())
            .and_then(|m| m.remove(call.alias.as_str()))
            .unwrap_or(JsonValue::Null);
        let mut answer = descend(answer, &call.node.delegation.path[1..]);
        if sg.has_renames() {
            public_typenames(&mut answer, sg);
        }
        let n = call.targets.len();
        let mut answer = Some(answer);
        for (i, t) in call.targets.iter().enumerate() {
            let value = match &t.key {
                // The last target takes the value; the others clone it.
                KeyRef::Whole if i + 1 == n => answer.take().unwrap_or(JsonValue::Null),
                KeyRef::Whole => answer.clone().unwrap_or(JsonValue::Null),
                KeyRef::One(k) => item(answer.as_ref(), *k),
                KeyRef::Many(ks) => JsonValue::Array(
                    ks.iter()
                        .map(|k| {
                            k.map(|k| item(answer.as_ref(), k))
                                .unwrap_or(JsonValue::Null)
                        })
                        .collect(),
                ),
            };
            let Some(written) = value::write(data, &t.path, value) else {
                continue;
            };
            for child in &t.node.children {
                let mut parents = Vec::new();
                collect_objects_in(written, &t.path, &child.parent_path, &mut parents);
                next.extend(parents.into_iter().map(|parent| Pending {
                    node: child.clone(),
                    parent,
                }));
            }
        }
    }
}

/// Runtime types (`_stitch_t`) renamed to their public names by the subgraph
/// that answered: another subgraph may use the same name for another type.
fn public_typenames(v: &mut JsonValue, sg: &Subgraph) {
    match v {
        JsonValue::Object(m) => {
            for (k, v) in m.iter_mut() {
                match v {
                    JsonValue::String(t) if k.as_str() == TYPENAME_ALIAS => {
                        let public = sg.public_type(t.as_str());
                        if public != t.as_str() {
                            *t = public.to_owned().into();
                        }
                    }
                    _ => public_typenames(v, sg),
                }
            }
        }
        JsonValue::Array(items) => items.iter_mut().for_each(|i| public_typenames(i, sg)),
        _ => {}
    }
}

fn item(list: Option<&JsonValue>, i: usize) -> JsonValue {
    match list {
        Some(JsonValue::Array(items)) => items.get(i).cloned().unwrap_or(JsonValue::Null),
        _ => JsonValue::Null,
    }
}

/// A remote error, its path rewritten to the client's, `extensions.service` added.
fn map_error(e: JsonValue, service: &str, calls: &[Call], out: &mut Vec<GraphQLError>) {
    let JsonValue::Object(mut m) = e else { return };
    let message = m
        .remove("message")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "subgraph error".into());
    let mut extensions = match m.remove("extensions") {
        Some(JsonValue::Object(x)) => x,
        _ => JsonMap::new(),
    };
    extensions.insert("service", JsonValue::String(service.into()));
    let remote_path: Vec<JsonValue> = match m.remove("path") {
        Some(JsonValue::Array(p)) => p,
        _ => Vec::new(),
    };
    let make = |path: Vec<ResponseDataPathSegment>| GraphQLError {
        message: message.clone(),
        locations: Vec::new(),
        path,
        extensions: extensions.clone(),
    };
    let alias = remote_path.first().and_then(|v| v.as_str());
    let Some(call) = alias.and_then(|a| calls.iter().find(|c| c.alias == a)) else {
        out.push(make(Vec::new()));
        return;
    };
    let skip = call.node.delegation.path.len();
    let rest: Vec<ResponseDataPathSegment> = remote_path
        .iter()
        .skip(skip)
        .filter_map(|v| match v {
            JsonValue::String(s) => Name::new(s.as_str())
                .ok()
                .map(ResponseDataPathSegment::Field),
            JsonValue::Number(n) => n
                .as_u64()
                .map(|i| ResponseDataPathSegment::ListIndex(i as usize)),
            _ => None,
        })
        .collect();
    for t in &call.targets {
        let base = to_error_path(&t.path);
        match &t.key {
            KeyRef::Whole => out.push(make(base.into_iter().chain(rest.iter().cloned()).collect())),
            _ if rest.is_empty() => out.push(make(base)),
            KeyRef::One(k) => {
                if let Some(ResponseDataPathSegment::ListIndex(i)) = rest.first() {
                    if i == k {
                        out.push(make(
                            base.into_iter().chain(rest[1..].iter().cloned()).collect(),
                        ));
                    }
                }
            }
            KeyRef::Many(ks) => {
                if let Some(ResponseDataPathSegment::ListIndex(i)) = rest.first() {
                    for (pos, k) in ks.iter().enumerate() {
                        if *k == Some(*i) {
                            let mut p = base.clone();
                            p.push(ResponseDataPathSegment::ListIndex(pos));
                            p.extend(rest[1..].iter().cloned());
                            out.push(make(p));
                        }
                    }
                }
            }
        }
    }
}

/// A failed request: every field it would have answered gets an error.
pub fn fail(
    req: &Request<'_>,
    errors: &mut Vec<GraphQLError>,
    subgraph: SubgraphId,
    calls: &[Call],
    e: &FetchError,
) {
    let service = req.supergraph.subgraphs[subgraph].name.as_str();
    for call in calls {
        for t in &call.targets {
            let mut err = error(format!("subgraph `{service}` {e}"), e.code());
            err.extensions
                .insert("service", JsonValue::String(service.into()));
            err.path = to_error_path(&t.path);
            errors.push(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use apollo_compiler::response::{serde_json_bytes::json, JsonMap, JsonValue};

    use super::*;
    use crate::{coerce_variables, execute::Request, prepare, testing::supergraph, Limits};

    /// Runs the levels of `query` without a network: each level's request is
    /// built, recorded, and answered with `answer(level)`.
    fn documents(query: &str, variables: JsonValue, answers: &[JsonValue]) -> String {
        let sg = supergraph();
        let prepared = prepare(&sg, query, None, &Limits::default()).unwrap();
        let vars: JsonMap = match variables {
            JsonValue::Object(m) => m,
            _ => JsonMap::new(),
        };
        let vars = coerce_variables(&sg, &prepared, &vars).unwrap();
        let req = Request {
            supergraph: &sg,
            document: &prepared.document,
            operation: prepared.operation(),
            plan: &prepared.plan,
            variables: &vars,
        };
        let mut data = JsonValue::Object(JsonMap::new());
        let mut errors = Vec::new();
        let mut frontier: Vec<Pending> = prepared.plan.root.iter().map(Pending::root).collect();
        let mut out = String::new();
        let mut level = 0;
        while !frontier.is_empty() {
            let mut groups: Vec<(SubgraphId, Vec<Pending>)> = Vec::new();
            for p in frontier.drain(..) {
                let s = p.node.subgraph();
                match groups.iter_mut().find(|(g, _)| *g == s) {
                    Some((_, v)) => v.push(p),
                    None => groups.push((s, vec![p])),
                }
            }
            let mut next = Vec::new();
            for (s, pendings) in groups {
                let mut built = build(&req, &mut data, &mut errors, s, pendings);
                let Some(request) = built.request.take() else {
                    continue;
                };
                out.push_str(&format!(
                    "level {level} -> {}\n{}\n{}\n",
                    sg.subgraphs[s].name,
                    request.query,
                    serde_json::to_string(&request.variables).unwrap()
                ));
                let answer = answers.get(level).cloned().unwrap_or(json!({"data": {}}));
                merge_body(
                    &req,
                    &mut data,
                    &mut errors,
                    s,
                    &built.calls,
                    answer,
                    &mut next,
                );
            }
            frontier = next;
            level += 1;
        }
        out.push_str(&format!(
            "data: {}\n",
            serde_json::to_string(&data).unwrap()
        ));
        if !errors.is_empty() {
            out.push_str(&format!(
                "errors: {}\n",
                serde_json::to_string(&errors).unwrap()
            ));
        }
        out
    }

    #[test]
    fn runtime_types_are_renamed_by_the_subgraph_that_answered() {
        use crate::testing::spec;
        let mut a = spec("a", "type Query { item: Item } type Item { x: Int }", "");
        a.rename_types = vec![("Item".into(), "AItem".into())];
        let b = spec(
            "b",
            "type Query { things: [Thing!]! } union Thing = Item | Other type Item { y: Int } type Other { z: Int }",
            "",
        );
        let sg = crate::build(&[a, b]).unwrap_or_else(|e| panic!("{e}"));
        let answer = json!([{"_stitch_t": "Item", "y": 1}, {"_stitch_t": "Other", "z": 2}]);
        let mut from_b = answer.clone();
        public_typenames(&mut from_b, &sg.subgraphs[1]);
        assert_eq!(from_b, answer, "b's Item is the public Item");
        let mut from_a = json!({"_stitch_t": "Item", "nested": [{"_stitch_t": "Item"}]});
        public_typenames(&mut from_a, &sg.subgraphs[0]);
        assert_eq!(
            from_a,
            json!({"_stitch_t": "AItem", "nested": [{"_stitch_t": "AItem"}]})
        );
    }

    #[test]
    fn defaults_go_along_and_identical_mutations_both_run() {
        let out = documents(
            "query($id: ID!, $hide: Boolean = false) { pipeline(id: $id) { id tags @skip(if: $hide) { key } } }",
            json!({"id": "1"}),
            &[],
        );
        assert!(out.contains("$c_hide: Boolean = false"), "{out}");
        let out = documents(
            r#"mutation { a: cancelPipeline(id: "1") { id } b: cancelPipeline(id: "1") { id } }"#,
            json!({}),
            &[],
        );
        assert!(
            out.contains("_0: cancelPipeline") && out.contains("_1: cancelPipeline"),
            "{out}"
        );
    }

    #[test]
    fn identical_delegations_go_out_once_and_batches_dedupe_keys() {
        let answers = [
            json!({"data": {"_0": {"items": [
                {"id": "p1", "_stitch_f_datasetIds": ["d1", "d2"], "dataCatalog": [{"_stitch_f_datasetId": "d1"}, {"_stitch_f_datasetId": "d2"}]},
                {"id": "p2", "_stitch_f_datasetIds": ["d2"], "dataCatalog": [{"_stitch_f_datasetId": "d2"}, {"_stitch_f_datasetId": null}]}
            ]}}}),
            json!({"data": {
                "_0": [{"name": "one", "_stitch_f_producedByPipelineId": "p1"}, {"name": "two", "_stitch_f_producedByPipelineId": null}],
                "_1": [{"id": "d1"}, {"id": "d2"}]
            }}),
            json!({"data": {"_0": [{"name": "run one"}]}}),
        ];
        insta::assert_snapshot!(
            "batched_levels",
            documents(
                "{ pipelines(limit: 2) { items { id dataCatalog { dataset { name producedBy { name } } } datasets { id } } } }",
                json!({}),
                &answers
            )
        );
    }

    #[test]
    fn aliased_calls_per_parent_with_renamed_variables_and_error_paths() {
        let answers = [
            json!({"data": {"_0": {"items": [{"id": "p1", "_stitch_f_id": "p1"}, {"id": "p2", "_stitch_f_id": "p2"}, {"id": "p1", "_stitch_f_id": "p1"}]}}}),
            json!({"data": {"_0": {"items": [{"message": "a"}]}, "_1": null},
                   "errors": [{"message": "boom", "path": ["_1", "items"], "extensions": {"code": "X"}}]}),
        ];
        insta::assert_snapshot!(
            "aliased_levels",
            documents(
                "query($n: Int!) { pipelines { items { id logs(limit: $n) { items { message } } } } }",
                json!({"n": 3}),
                &answers
            )
        );
    }
}
