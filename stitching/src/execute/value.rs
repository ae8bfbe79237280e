//! Paths into the response data and conversions of argument values.

use crate::plan::{PathStep, TYPENAME_ALIAS};
use apollo_compiler::{
    ast::Value as AstValue,
    response::serde_json_bytes::map::Entry,
    response::{JsonMap, JsonValue, ResponseDataPathSegment},
    Name,
};

/// One step of an absolute path in the response data.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PathSeg {
    Key(Name),
    Index(usize),
}

pub type ResponsePath = Vec<PathSeg>;

pub fn to_error_path(path: &[PathSeg]) -> Vec<ResponseDataPathSegment> {
    path.iter()
        .map(|s| match s {
            PathSeg::Key(k) => ResponseDataPathSegment::Field(k.clone()),
            PathSeg::Index(i) => ResponseDataPathSegment::ListIndex(*i),
        })
        .collect()
}

pub fn get<'v>(mut v: &'v JsonValue, path: &[PathSeg]) -> Option<&'v JsonValue> {
    for seg in path {
        v = match (seg, v) {
            (PathSeg::Key(k), JsonValue::Object(m)) => m.get(k.as_str())?,
            (PathSeg::Index(i), JsonValue::Array(a)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(v)
}

pub fn get_mut<'v>(mut v: &'v mut JsonValue, path: &[PathSeg]) -> Option<&'v mut JsonValue> {
    for seg in path {
        v = match (seg, v) {
            (PathSeg::Key(k), JsonValue::Object(m)) => m.get_mut(k.as_str())?,
            (PathSeg::Index(i), JsonValue::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(v)
}

/// Sets the value at `path` (its parent must be an object) and returns it in
/// place, so the caller can look below it without walking from the root again.
/// A slot already written (the same response key delegated twice with
/// different selections, e.g. from two fragments) is merged into, not replaced.
pub fn write<'v>(
    data: &'v mut JsonValue,
    path: &[PathSeg],
    value: JsonValue,
) -> Option<&'v JsonValue> {
    let Some((PathSeg::Key(last), parent)) = path.split_last() else {
        return None;
    };
    match get_mut(data, parent) {
        Some(JsonValue::Object(m)) => {
            let slot = match m.entry(last.as_str()) {
                Entry::Occupied(o) => {
                    let slot = o.into_mut();
                    merge(slot, value);
                    slot
                }
                Entry::Vacant(v) => v.insert(value),
            };
            Some(&*slot)
        }
        _ => None,
    }
}

/// Merges a second answer for the same field into the first: objects key by
/// key, lists item by item (the first answer's length and order stand, so
/// paths already taken into it stay valid); a null on either side is null
/// (that half failed, and its error is reported).
pub(crate) fn merge(into: &mut JsonValue, value: JsonValue) {
    match (into, value) {
        (JsonValue::Object(a), JsonValue::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k.as_str()) {
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (JsonValue::Array(a), JsonValue::Array(b)) => {
            for (x, y) in a.iter_mut().zip(b) {
                merge(x, y);
            }
        }
        (into, JsonValue::Null) => *into = JsonValue::Null,
        // Leaves (the same scalar twice) or a null first: the first answer stands.
        _ => {}
    }
}

/// Absolute paths of the objects a fetch's path leads to from the data
/// root, lists walked; `is_a(condition, runtime)` filters type steps by the
/// objects' `_stitch_t`.
pub fn collect_parents(
    data: &JsonValue,
    steps: &[PathStep],
    is_a: &dyn Fn(&str, &str) -> bool,
    out: &mut Vec<Vec<PathSeg>>,
) {
    fn walk(
        v: &JsonValue,
        path: &mut Vec<PathSeg>,
        steps: &[PathStep],
        is_a: &dyn Fn(&str, &str) -> bool,
        out: &mut Vec<Vec<PathSeg>>,
    ) {
        match v {
            JsonValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(PathSeg::Index(i));
                    walk(item, path, steps, is_a, out);
                    path.pop();
                }
            }
            JsonValue::Object(m) => match steps.split_first() {
                None => out.push(path.clone()),
                Some((PathStep::Type(t), rest)) => {
                    let runtime = m.get(TYPENAME_ALIAS).and_then(|v| v.as_str());
                    if runtime.is_some_and(|r| is_a(t, r)) {
                        walk(v, path, rest, is_a, out);
                    }
                }
                Some((PathStep::Key(k), rest)) => {
                    if let Some(child) = m.get(k.as_str()) {
                        path.push(PathSeg::Key(k.clone()));
                        walk(child, path, rest, is_a, out);
                        path.pop();
                    }
                }
            },
            _ => {}
        }
    }
    walk(data, &mut Vec::new(), steps, is_a, out);
}

/// Merges an entity's answer into the object at `path` (not into a null:
/// that parent failed and its error is reported). A null answer adds
/// nothing: the fields it would have brought stay missing (null, with the
/// subgraph's error), the parent's own fields stay.
pub fn merge_at(data: &mut JsonValue, path: &[PathSeg], value: JsonValue) {
    if value.is_null() {
        return;
    }
    if let Some(slot @ JsonValue::Object(_)) = get_mut(data, path) {
        merge(slot, value);
    }
}

/// A client argument value with variables substituted; `None` when it is a
/// variable the client did not provide (the argument is then left out).
pub fn ast_to_json(value: &AstValue, variables: &JsonMap) -> Option<JsonValue> {
    Some(match value {
        AstValue::Null => JsonValue::Null,
        AstValue::Enum(e) => JsonValue::String(e.as_str().into()),
        AstValue::Variable(v) => return variables.get(v.as_str()).cloned(),
        AstValue::String(s) => JsonValue::String(s.as_str().into()),
        AstValue::Float(f) => f
            .try_to_f64()
            .ok()
            .and_then(|x| serde_json::Number::from_f64(x).map(JsonValue::Number))
            .unwrap_or(JsonValue::Null),
        AstValue::Int(i) => match i.try_to_i32() {
            Ok(n) => JsonValue::from(n as i64),
            Err(_) => i
                .as_str()
                .parse::<i64>()
                .map(JsonValue::from)
                .unwrap_or_else(|_| JsonValue::String(i.as_str().into())),
        },
        AstValue::Boolean(b) => JsonValue::Bool(*b),
        AstValue::List(items) => JsonValue::Array(
            items
                .iter()
                .map(|i| ast_to_json(i, variables).unwrap_or(JsonValue::Null))
                .collect(),
        ),
        AstValue::Object(fields) => {
            let mut m = JsonMap::new();
            for (k, v) in fields {
                if let Some(v) = ast_to_json(v, variables) {
                    m.insert(k.as_str(), v);
                }
            }
            JsonValue::Object(m)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use apollo_compiler::response::serde_json_bytes::json;

    fn key(k: &str) -> PathSeg {
        PathSeg::Key(Name::new(k).unwrap())
    }

    #[test]
    fn collects_parents_through_lists_and_type_steps() {
        let data = json!({"a": {"items": [
            {"b": {"x": 1, "_stitch_t": "X"}},
            {"b": null},
            {"b": [{"x": 2, "_stitch_t": "Y"}, {"x": 3, "_stitch_t": "X"}]}
        ]}});
        let steps = [
            PathStep::Key(Name::new("a").unwrap()),
            PathStep::Key(Name::new("items").unwrap()),
            PathStep::Key(Name::new("b").unwrap()),
        ];
        let mut out = Vec::new();
        collect_parents(&data, &steps, &|c, r| c == r, &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(
            out[1],
            vec![
                key("a"),
                key("items"),
                PathSeg::Index(2),
                key("b"),
                PathSeg::Index(0)
            ]
        );
        let mut typed = steps.to_vec();
        typed.push(PathStep::Type(Name::new("X").unwrap()));
        let mut out = Vec::new();
        collect_parents(&data, &typed, &|c, r| c == r, &mut out);
        assert_eq!(
            out,
            vec![
                vec![key("a"), key("items"), PathSeg::Index(0), key("b")],
                vec![
                    key("a"),
                    key("items"),
                    PathSeg::Index(2),
                    key("b"),
                    PathSeg::Index(1)
                ],
            ]
        );
    }

    #[test]
    fn writes_into_objects_only() {
        let mut data = json!({"a": [{"x": 1}]});
        write(
            &mut data,
            &[key("a"), PathSeg::Index(0), key("y")],
            json!(2),
        );
        write(&mut data, &[key("a"), key("nope"), key("y")], json!(3));
        assert_eq!(data, json!({"a": [{"x": 1, "y": 2}]}));
    }

    #[test]
    fn a_second_answer_for_a_key_merges_into_the_first() {
        let mut data = json!({});
        write(
            &mut data,
            &[key("p")],
            json!({"id": "1", "l": [{"a": 1}, {"a": 2}], "o": null}),
        );
        write(
            &mut data,
            &[key("p")],
            json!({"name": "n", "l": [{"b": 1}, {"b": 2}], "o": {"x": 1}}),
        );
        assert_eq!(
            data,
            json!({"p": {"id": "1", "l": [{"a": 1, "b": 1}, {"a": 2, "b": 2}], "o": null, "name": "n"}})
        );
        write(&mut data, &[key("p")], json!(null));
        assert_eq!(data, json!({"p": null}));
    }
}
