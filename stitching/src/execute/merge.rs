//! A subgraph's answer -> the merged data: each call's value to its
//! targets (merged into entities, written at stitched fields), errors with
//! the client's paths and `extensions.service`.

use apollo_compiler::{
    response::{GraphQLError, JsonMap, JsonValue, ResponseDataPathSegment},
    Name,
};

use super::{
    error,
    fetch::{CallOut, KeyRef, Target},
    value::{self, to_error_path, PathSeg},
    FetchError, Request,
};
use crate::{
    plan::TYPENAME_ALIAS,
    schema::{Subgraph, SubgraphId},
};

/// Follows the path segments after the first (`a.b.c`: `b`, then `c`), through lists.
fn descend(v: JsonValue, names: &[Name]) -> JsonValue {
    let Some((first, rest)) = names.split_first() else {
        return v;
    };
    match v {
        JsonValue::Object(mut m) => {
            descend(m.remove(first.as_str()).unwrap_or(JsonValue::Null), rest)
        }
        JsonValue::Array(items) => {
            JsonValue::Array(items.into_iter().map(|i| descend(i, names)).collect())
        }
        other => other,
    }
}

/// The client paths of targets, worked out only when an error needs them.
struct Paths<'d> {
    req: &'d Request<'d>,
    data: &'d JsonValue,
    by_fetch: ahash::HashMap<usize, Vec<Vec<PathSeg>>>,
}

impl Paths<'_> {
    fn of(&mut self, t: &Target) -> Vec<PathSeg> {
        let (req, data) = (self.req, self.data);
        let parents = self.by_fetch.entry(t.fetch).or_insert_with(|| {
            let schema = &req.supergraph.schema;
            let is_a = |c: &str, r: &str| c == r || schema.is_subtype(c, r);
            value::parent_paths(data, &req.plan.fetches[t.fetch].path, &is_a)
        });
        let mut path = parents.get(t.parent).cloned().unwrap_or_default();
        if let Some(k) = &t.write {
            path.push(PathSeg::Key(k.clone()));
        }
        path
    }
}

/// Maps a response body onto the data.
pub(crate) fn merge_body(
    req: &Request<'_>,
    data: &mut JsonValue,
    errors: &mut Vec<GraphQLError>,
    subgraph: SubgraphId,
    calls: &[CallOut],
    body: JsonValue,
) {
    let sg = &req.supergraph.subgraphs[subgraph];
    let service = sg.name.as_str();
    let (mut remote_data, remote_errors) = match body {
        JsonValue::Object(mut m) => (m.remove("data"), m.remove("errors")),
        _ => {
            fail(
                req,
                data,
                errors,
                subgraph,
                calls,
                &FetchError::Malformed("not a JSON object".into()),
            );
            return;
        }
    };
    if let Some(JsonValue::Array(list)) = remote_errors {
        let mut paths = Paths {
            req,
            data,
            by_fetch: Default::default(),
        };
        for e in list {
            map_error(e, service, calls, &mut paths, errors);
        }
    }
    let mut deliveries = Vec::new();
    for call in calls {
        let answer = match &call.alias {
            Some(alias) => remote_data
                .as_mut()
                .and_then(|d| d.as_object_mut())
                .and_then(|m| m.remove(alias.as_str()))
                .unwrap_or(JsonValue::Null),
            None => match remote_data.as_mut() {
                Some(JsonValue::Object(m)) => {
                    // Root fields: the whole data, less the other calls' answers.
                    let mut own = JsonMap::new();
                    let keys: Vec<_> = m
                        .keys()
                        .filter(|k| !k.as_str().starts_with(super::fetch::CALL_PREFIX))
                        .cloned()
                        .collect();
                    for k in keys {
                        if let Some(v) = m.remove(k.as_str()) {
                            own.insert(k, v);
                        }
                    }
                    JsonValue::Object(own)
                }
                _ => JsonValue::Null,
            },
        };
        let mut answer = descend(answer, &call.descend);
        if sg.has_renames() {
            public_typenames(&mut answer, sg);
        }
        deliver(call, answer, &mut deliveries);
    }
    apply(req, data, deliveries);
}

/// A value for one parent: merged into it, or written under a key.
struct Delivery {
    fetch: usize,
    parent: usize,
    write: Option<Name>,
    value: JsonValue,
}

/// Hands the values to their parents: one walk per fetch path, in the
/// order the parents were found when the request was built.
fn apply(req: &Request<'_>, data: &mut JsonValue, mut deliveries: Vec<Delivery>) {
    deliveries.sort_by_key(|d| (d.fetch, d.parent));
    let schema = &req.supergraph.schema;
    let is_a = |c: &str, r: &str| c == r || schema.is_subtype(c, r);
    let mut rest = deliveries.into_iter().peekable();
    while let Some(first) = rest.peek() {
        let fetch = first.fetch;
        let mut group: Vec<Delivery> = Vec::new();
        while rest.peek().is_some_and(|d| d.fetch == fetch) {
            group.extend(rest.next());
        }
        let mut pending = group.into_iter().peekable();
        let steps = &req.plan.fetches[fetch].path;
        value::visit_parents_mut(data, steps, &is_a, &mut 0, &mut |ordinal, obj| {
            while pending.peek().is_some_and(|d| d.parent == ordinal) {
                if let Some(d) = pending.next() {
                    match &d.write {
                        Some(k) => value::write_key(obj, k, d.value),
                        None => value::merge_into(obj, d.value),
                    }
                }
            }
        });
    }
}

/// Hands each target its part of a call's answer, moving values out and
/// cloning only a part several targets share (deduplicated inputs).
fn deliver(call: &CallOut, answer: JsonValue, out: &mut Vec<Delivery>) {
    let n = call.targets.len();
    let mut answer = Some(answer);
    // Items of a listed answer, and how many targets still want each.
    let mut items: Vec<JsonValue> = Vec::new();
    let mut wanted: Vec<u32> = Vec::new();
    if call
        .targets
        .iter()
        .any(|t| matches!(t.key, KeyRef::One(_) | KeyRef::Many(_)))
    {
        if let Some(JsonValue::Array(list)) = answer.take() {
            items = list;
        }
        wanted = vec![0; items.len()];
        for t in &call.targets {
            match &t.key {
                KeyRef::One(k) => {
                    if let Some(w) = wanted.get_mut(*k) {
                        *w += 1;
                    }
                }
                KeyRef::Many(ks) => {
                    for k in ks.iter().flatten() {
                        if let Some(w) = wanted.get_mut(*k) {
                            *w += 1;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let mut take = |k: usize| -> JsonValue {
        match (items.get_mut(k), wanted.get_mut(k)) {
            (Some(v), Some(w)) => {
                *w = w.saturating_sub(1);
                if *w == 0 {
                    std::mem::take(v)
                } else {
                    v.clone()
                }
            }
            _ => JsonValue::Null,
        }
    };
    for (i, t) in call.targets.iter().enumerate() {
        let value = match &t.key {
            // The last target takes the value; the others clone it.
            KeyRef::Whole if i + 1 == n => answer.take().unwrap_or(JsonValue::Null),
            KeyRef::Whole => answer.clone().unwrap_or(JsonValue::Null),
            KeyRef::One(k) => take(*k),
            KeyRef::Key(k) => match answer.as_mut() {
                Some(JsonValue::Object(m)) => m.remove(k.as_str()).unwrap_or(JsonValue::Null),
                _ => JsonValue::Null,
            },
            KeyRef::Many(ks) => JsonValue::Array(
                ks.iter()
                    .map(|k| k.map(&mut take).unwrap_or(JsonValue::Null))
                    .collect(),
            ),
        };
        out.push(Delivery {
            fetch: t.fetch,
            parent: t.parent,
            write: t.write.clone(),
            value,
        });
    }
}

/// Runtime types (`_stitch_t`) renamed to their public names by the subgraph
/// that answered: another subgraph may use the same name for another type.
pub(crate) fn public_typenames(v: &mut JsonValue, sg: &Subgraph) {
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

fn segments(path: &[JsonValue]) -> Vec<ResponseDataPathSegment> {
    path.iter()
        .filter_map(|v| match v {
            JsonValue::String(s) => Name::new(s.as_str())
                .ok()
                .map(ResponseDataPathSegment::Field),
            JsonValue::Number(n) => n
                .as_u64()
                .map(|i| ResponseDataPathSegment::ListIndex(i as usize)),
            _ => None,
        })
        .collect()
}

/// A remote error, its path rewritten to the client's, `extensions.service` added.
fn map_error(
    e: JsonValue,
    service: &str,
    calls: &[CallOut],
    paths: &mut Paths<'_>,
    out: &mut Vec<GraphQLError>,
) {
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
    let Some(call) = alias.and_then(|a| calls.iter().find(|c| c.alias.as_deref() == Some(a)))
    else {
        // Root fields answer under the client's own keys.
        let is_root = calls.iter().any(|c| c.alias.is_none());
        out.push(make(if is_root {
            segments(&remote_path)
        } else {
            Vec::new()
        }));
        return;
    };
    let rest = segments(&remote_path[(1 + call.descend.len()).min(remote_path.len())..]);
    for t in &call.targets {
        let base = to_error_path(&paths.of(t));
        match &t.key {
            KeyRef::Whole | KeyRef::Key(_) => {
                out.push(make(base.into_iter().chain(rest.iter().cloned()).collect()))
            }
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

/// A failed request: every place it would have answered gets an error.
pub(crate) fn fail(
    req: &Request<'_>,
    data: &JsonValue,
    errors: &mut Vec<GraphQLError>,
    subgraph: SubgraphId,
    calls: &[CallOut],
    e: &FetchError,
) {
    let service = req.supergraph.subgraphs[subgraph].name.as_str();
    let mut push = |path: Vec<PathSeg>| {
        let path = to_error_path(&path);
        if errors.iter().any(|x| {
            x.path == path && x.extensions.get("service").and_then(|s| s.as_str()) == Some(service)
        }) {
            return;
        }
        let mut err = error(format!("subgraph `{service}` {e}"), e.code());
        err.extensions
            .insert("service", JsonValue::String(service.into()));
        err.path = path;
        errors.push(err);
    };
    let mut paths = Paths {
        req,
        data,
        by_fetch: Default::default(),
    };
    for call in calls {
        for t in &call.targets {
            push(paths.of(t));
        }
    }
}
