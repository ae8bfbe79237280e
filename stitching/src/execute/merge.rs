//! A subgraph's answer -> the merged data: each call's value to its
//! targets (merged into entities, written at stitched fields), errors with
//! the client's paths and `extensions.service`.

use apollo_compiler::{
    response::{GraphQLError, JsonMap, JsonValue, ResponseDataPathSegment},
    Name,
};

use super::{
    error,
    fetch::{CallOut, KeyRef, Routing, Target, NO_ITEM},
    tree::{Alloc, Map, Value},
    value::{self, to_error_path, PathSeg, Places},
    FetchError, Request,
};
use crate::{
    plan::TYPENAME_ALIAS,
    schema::{Subgraph, SubgraphId},
};

/// Follows the path segments after the first (`a.b.c`: `b`, then `c`), through lists.
fn descend<'h>(v: Value<'h>, names: &[Name]) -> Value<'h> {
    let Some((first, rest)) = names.split_first() else {
        return v;
    };
    match v {
        Value::Object(mut m) => descend(m.take(first.as_str()).unwrap_or(Value::Null), rest),
        Value::Array(items) => {
            for item in items.iter_mut() {
                *item = descend(std::mem::take(item), names);
            }
            Value::Array(items)
        }
        other => other,
    }
}

/// The client paths of targets, worked out only when an error needs them.
struct Paths<'d, 'h> {
    data: &'d Value<'h>,
    routing: &'d Routing,
}

impl Paths<'_, '_> {
    fn of(&self, t: &Target) -> Vec<PathSeg> {
        let mut path = self
            .routing
            .places
            .client_path(self.data, t.parent as usize);
        if let Some(k) = self.routing.write(t) {
            path.push(PathSeg::Key(k.clone()));
        }
        path
    }
}

/// Maps a response body onto the data. A body that breaks the GraphQL
/// response format fails every place it answers, with the reason.
pub(crate) fn merge_body<'h>(
    req: &Request<'_>,
    data: &mut Value<'h>,
    errors: &mut Vec<GraphQLError>,
    subgraph: SubgraphId,
    routing: &Routing,
    body: Value<'h>,
    alloc: &Alloc<'h>,
) {
    let calls = &routing.calls;
    let sg = &req.supergraph.subgraphs[subgraph];
    let service = sg.name.as_str();
    let (remote_data, remote_errors) = match read_body(body) {
        Ok(parts) => parts,
        Err(why) => {
            fail(
                req,
                data,
                errors,
                subgraph,
                routing,
                &FetchError::Malformed(why),
            );
            return;
        }
    };
    let paths = Paths { data, routing };
    let had_errors = !remote_errors.is_empty();
    for e in remote_errors.iter_mut() {
        map_error(std::mem::take(e), service, calls, &paths, errors);
    }
    let mut remote_data = remote_data;
    let mut deliveries = Vec::with_capacity(calls.iter().map(|c| c.targets.len()).sum());
    for call in calls {
        let answer = match (&call.alias, remote_data.as_mut()) {
            (_, None) => Ok(Value::Null),
            (Some(alias), Some(m)) => m
                .take(alias.as_str())
                .ok_or_else(|| format!("`data` lacks `{alias}`, which was asked for")),
            // Root fields: the whole data, less the other calls' answers.
            (None, Some(m)) => root_answer(call, &routing.names, m, alloc),
        };
        let answer = match answer {
            Ok(a) => a,
            Err(why) => {
                fail_call(&paths, errors, service, call, &FetchError::Malformed(why));
                Value::Null
            }
        };
        let mut answer = descend(answer, &call.descend);
        if sg.has_renames() {
            public_typenames(&mut answer, sg, alloc);
        }
        if let Err(why) = check_shape(call, routing, &answer, had_errors) {
            fail_call(&paths, errors, service, call, &FetchError::Malformed(why));
        }
        deliver(call, routing, answer, &mut deliveries, alloc);
    }
    apply(data, &routing.places, deliveries, alloc);
}

/// `data` (`None`: null, which errors explain) and `errors` of a body, or
/// why the body is not a GraphQL response.
type Body<'h> = (Option<Map<'h>>, &'h mut [Value<'h>]);

fn read_body(body: Value<'_>) -> Result<Body<'_>, String> {
    let Value::Object(mut m) = body else {
        return Err("not a JSON object".into());
    };
    let errors = match m.take("errors") {
        None | Some(Value::Null) => Default::default(),
        Some(Value::Array(list)) => list,
        Some(_) => return Err("`errors` is not a list".into()),
    };
    match m.take("data") {
        Some(Value::Object(d)) => Ok((Some(d), errors)),
        None | Some(Value::Null) if !errors.is_empty() => Ok((None, errors)),
        None => Err("it has neither `data` nor `errors`".into()),
        Some(Value::Null) => Err("`data` is null and there are no errors".into()),
        Some(_) => Err("`data` is not an object".into()),
    }
}

/// The root fields a call asked for, each under its key; a missing key is
/// an error (a field that failed is present as null).
fn root_answer<'h>(
    call: &CallOut,
    names: &[Name],
    m: &mut Map<'h>,
    alloc: &Alloc<'h>,
) -> Result<Value<'h>, String> {
    let mut own = Map::new();
    let mut missing = Vec::new();
    for t in &call.targets {
        if let Some(k) = match t.key {
            KeyRef::Key(k) => names.get(k as usize),
            _ => None,
        } {
            match m.take(k.as_str()) {
                Some(v) => {
                    own.insert(alloc.alloc_str(k), v, alloc);
                }
                None if call.optional.contains(k) => {}
                None => missing.push(format!("`{k}`")),
            }
        }
    }
    if missing.is_empty() {
        Ok(Value::Object(own))
    } else {
        Err(format!(
            "`data` lacks {}, which was asked for",
            missing.join(", ")
        ))
    }
}

/// A batched call (`_entities`, a list lookup) answers a list with one item
/// per key; null only with errors that say why.
fn check_shape(
    call: &CallOut,
    routing: &Routing,
    answer: &Value<'_>,
    had_errors: bool,
) -> Result<(), String> {
    let wanted = call
        .targets
        .iter()
        .filter_map(|t| match t.key {
            KeyRef::One(k) => Some(k),
            KeyRef::Many { start, len } => routing
                .items(start, len)
                .iter()
                .copied()
                .filter(|&k| k != NO_ITEM)
                .max(),
            _ => None,
        })
        .max()
        .map(|k| k as usize);
    let Some(last) = wanted else {
        return Ok(());
    };
    let name = call.alias.as_deref().unwrap_or("the answer");
    match answer {
        Value::Array(items) if items.len() > last => Ok(()),
        Value::Array(items) => Err(format!(
            "`{name}` has {} items for {} keys",
            items.len(),
            last + 1
        )),
        Value::Null if had_errors => Ok(()),
        Value::Null => Err(format!("`{name}` is null and there are no errors")),
        _ => Err(format!("`{name}` is not a list")),
    }
}

/// A value for one parent: merged into it, or written under a key.
struct Delivery<'c, 'h> {
    parent: u32,
    write: Option<&'c Name>,
    value: Value<'h>,
}

/// Hands the values to their parents, at the places where building the
/// request found them.
fn apply<'h>(
    data: &mut Value<'h>,
    places: &Places,
    deliveries: Vec<Delivery<'_, 'h>>,
    alloc: &Alloc<'h>,
) {
    // The parents were last read before the request went out, and other
    // requests ran since: walking to each just before merging into it waits
    // for its cache misses one parent after another. Walked all at once
    // first, the walks are independent, and their misses overlap.
    for d in &deliveries {
        places.prefetch(data, d.parent as usize);
    }
    // The key written into each parent, copied into the arena once.
    let mut key: Option<(&Name, &'h str)> = None;
    for d in deliveries {
        let Some(obj) = places.object_mut(data, d.parent as usize) else {
            continue;
        };
        match d.write {
            Some(name) => {
                let text = match key {
                    Some((last, text)) if std::ptr::eq(last, name) => text,
                    _ => {
                        let text: &'h str = alloc.alloc_str(name);
                        key = Some((name, text));
                        text
                    }
                };
                value::write_key(obj, text, d.value, alloc)
            }
            None => value::merge_into(obj, d.value, alloc),
        }
    }
}

/// Hands each target its part of a call's answer, moving values out and
/// cloning only a part several targets share (deduplicated inputs).
fn deliver<'c, 'h>(
    call: &CallOut,
    routing: &'c Routing,
    answer: Value<'h>,
    out: &mut Vec<Delivery<'c, 'h>>,
    alloc: &Alloc<'h>,
) {
    let n = call.targets.len();
    let mut answer = Some(answer);
    // Items of a listed answer, and how many targets still want each.
    let mut items: &mut [Value<'h>] = Default::default();
    let mut wanted: Vec<u32> = Vec::new();
    if call
        .targets
        .iter()
        .any(|t| matches!(t.key, KeyRef::One(_) | KeyRef::Many { .. }))
    {
        if let Some(Value::Array(list)) = answer.take() {
            items = list;
        }
        wanted = vec![0; items.len()];
        for t in &call.targets {
            match t.key {
                KeyRef::One(k) => {
                    if let Some(w) = wanted.get_mut(k as usize) {
                        *w += 1;
                    }
                }
                KeyRef::Many { start, len } => {
                    for &k in routing.items(start, len) {
                        if let Some(w) = wanted.get_mut(k as usize) {
                            *w += 1;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let mut take = |k: u32| -> Value<'h> {
        let k = k as usize;
        match (items.get_mut(k), wanted.get_mut(k)) {
            (Some(v), Some(w)) => {
                *w = w.saturating_sub(1);
                if *w == 0 {
                    std::mem::take(v)
                } else {
                    v.clone_in(alloc)
                }
            }
            _ => Value::Null,
        }
    };
    for (i, t) in call.targets.iter().enumerate() {
        let value = match t.key {
            // The last target takes the value; the others clone it.
            KeyRef::Whole if i + 1 == n => answer.take().unwrap_or(Value::Null),
            KeyRef::Whole => answer.as_ref().map_or(Value::Null, |a| a.clone_in(alloc)),
            KeyRef::One(k) => take(k),
            KeyRef::Key(k) => match (answer.as_mut(), routing.names.get(k as usize)) {
                (Some(Value::Object(m)), Some(k)) => m.take(k.as_str()).unwrap_or(Value::Null),
                _ => Value::Null,
            },
            KeyRef::Many { start, len } => {
                let ks = routing.items(start, len);
                Value::Array(alloc.alloc_slice_fill_with(ks.len(), |i| match ks[i] {
                    NO_ITEM => Value::Null,
                    k => take(k),
                }))
            }
        };
        out.push(Delivery {
            parent: t.parent,
            write: routing.write(t),
            value,
        });
    }
}

/// Runtime types (`_stitch_t`) renamed to their public names by the subgraph
/// that answered: another subgraph may use the same name for another type.
pub(crate) fn public_typenames<'h>(v: &mut Value<'h>, sg: &Subgraph, alloc: &Alloc<'h>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                match v {
                    Value::String(t) if k == TYPENAME_ALIAS => {
                        let public = sg.public_type(t);
                        if public != *t {
                            *t = alloc.alloc_str(public);
                        }
                    }
                    _ => public_typenames(v, sg, alloc),
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| public_typenames(i, sg, alloc)),
        _ => {}
    }
}

fn segments(path: &[Value<'_>]) -> Vec<ResponseDataPathSegment> {
    path.iter()
        .filter_map(|v| match v {
            Value::String(s) => Name::new(s).ok().map(ResponseDataPathSegment::Field),
            Value::Number(n) => n
                .as_u64()
                .map(|i| ResponseDataPathSegment::ListIndex(i as usize)),
            _ => None,
        })
        .collect()
}

/// A remote error, its path rewritten to the client's, `extensions.service` added.
fn map_error(
    e: Value<'_>,
    service: &str,
    calls: &[CallOut],
    paths: &Paths<'_, '_>,
    out: &mut Vec<GraphQLError>,
) {
    let Value::Object(mut m) = e else { return };
    let message = m
        .take("message")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "subgraph error".into());
    let mut extensions = match m.take("extensions") {
        Some(Value::Object(x)) => x.to_json(),
        _ => JsonMap::new(),
    };
    extensions.insert("service", JsonValue::String(service.into()));
    extensions.insert(super::internal::SUBGRAPH_ERROR, JsonValue::Bool(true));
    let remote_path: &[Value<'_>] = match m.take("path") {
        Some(Value::Array(p)) => p,
        _ => &[],
    };
    let make = |path: Vec<ResponseDataPathSegment>| GraphQLError {
        message: message.clone(),
        locations: Vec::new(),
        path,
        extensions: extensions.clone(),
    };
    let alias = remote_path.first().and_then(|v| v.as_str());
    let Some(call) = alias.and_then(|a| calls.iter().find(|c| c.alias.as_deref() == Some(a)))
    else {
        if calls.iter().any(|c| c.alias.is_none()) {
            // Root fields answer under the client's own keys.
            out.push(make(segments(remote_path)));
        } else {
            // No path into this nested fetch: the error belongs to every
            // field the fetch served, not to the request as a whole.
            let mut seen = Vec::new();
            for t in calls.iter().flat_map(|c| &c.targets) {
                let p = to_error_path(&paths.of(t));
                if !seen.contains(&p) {
                    seen.push(p.clone());
                    out.push(make(p));
                }
            }
        }
        return;
    };
    let rest = segments(&remote_path[(1 + call.descend.len()).min(remote_path.len())..]);
    for t in &call.targets {
        let base = to_error_path(&paths.of(t));
        match t.key {
            KeyRef::Whole | KeyRef::Key(_) => {
                out.push(make(base.into_iter().chain(rest.iter().cloned()).collect()))
            }
            _ if rest.is_empty() => out.push(make(base)),
            KeyRef::One(k) => {
                if let Some(ResponseDataPathSegment::ListIndex(i)) = rest.first() {
                    if *i == k as usize {
                        out.push(make(
                            base.into_iter().chain(rest[1..].iter().cloned()).collect(),
                        ));
                    }
                }
            }
            KeyRef::Many { start, len } => {
                if let Some(ResponseDataPathSegment::ListIndex(i)) = rest.first() {
                    for (pos, &k) in paths.routing.items(start, len).iter().enumerate() {
                        if k != NO_ITEM && k as usize == *i {
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

/// A failed request: every place it would have answered gets an error.
pub(crate) fn fail(
    req: &Request<'_>,
    data: &Value<'_>,
    errors: &mut Vec<GraphQLError>,
    subgraph: SubgraphId,
    routing: &Routing,
    e: &FetchError,
) {
    let service = req.supergraph.subgraphs[subgraph].name.as_str();
    let paths = Paths { data, routing };
    for call in &routing.calls {
        fail_call(&paths, errors, service, call, e);
    }
}

/// An error at each place `call` would have answered (once per path and service).
fn fail_call(
    paths: &Paths<'_, '_>,
    errors: &mut Vec<GraphQLError>,
    service: &str,
    call: &CallOut,
    e: &FetchError,
) {
    for t in &call.targets {
        let path = to_error_path(&paths.of(t));
        if errors.iter().any(|x| {
            x.path == path && x.extensions.get("service").and_then(|s| s.as_str()) == Some(service)
        }) {
            continue;
        }
        let mut err = error(
            format!("subgraph `{service}` {}", e.client_message()),
            e.code(),
        );
        err.extensions
            .insert("service", JsonValue::String(service.into()));
        if let Some(detail) = e.detail() {
            err.extensions
                .insert(super::internal::DETAIL, JsonValue::String(detail.into()));
        }
        err.path = path;
        errors.push(err);
    }
}
