//! Paths into the response data and conversions of argument values.

use super::tree::{Map, Value};
use crate::plan::{PathStep, TYPENAME_ALIAS};
use apollo_compiler::{
    ast::Value as AstValue,
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

/// Merges a second answer for the same field into the first: objects key by
/// key, lists item by item (the first answer's length and order stand, so
/// paths already taken into it stay valid); a null on either side is null
/// (that half failed, and its error is reported).
pub(crate) fn merge(into: &mut Value, value: Value) {
    match (into, value) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k.as_str()) {
                    Some(existing) => merge(existing, v),
                    None => a.push(k, v),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (x, y) in a.iter_mut().zip(b) {
                merge(x, y);
            }
        }
        (into, Value::Null) => *into = Value::Null,
        // Leaves (the same scalar twice) or a null first: the first answer stands.
        _ => {}
    }
}

/// Where each step's key was in the last object a walk read at that step
/// (`Map::get_hinted`): sibling objects hold their keys in the same places.
/// Indexed by the number of steps left, which names a step of one path.
struct Hints(Vec<usize>);

impl Hints {
    fn new(steps: &[PathStep]) -> Self {
        Hints(vec![0; steps.len() + 1])
    }

    fn at(&mut self, steps: &[PathStep]) -> &mut usize {
        &mut self.0[steps.len()]
    }
}

/// The client paths of a fetch's parents, by ordinal (the order of
/// `visit_parents`): only errors need them, so only errors walk for them.
pub fn parent_paths(
    data: &Value,
    steps: &[PathStep],
    is_a: &dyn Fn(&str, &str) -> bool,
) -> Vec<Vec<PathSeg>> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    visit::<true>(
        data,
        steps,
        is_a,
        &mut Hints::new(steps),
        &mut path,
        &mut |path, _| out.push(path.to_vec()),
    );
    out
}

/// Calls `f` with each parent object a fetch's path leads to from the data
/// root, in a fixed order (the ordinal a target names): lists walked,
/// type steps filtered by `_stitch_t`. With no steps, the root itself.
pub fn visit_parents<'v>(
    data: &'v Value,
    steps: &[PathStep],
    is_a: &dyn Fn(&str, &str) -> bool,
    f: &mut dyn FnMut(&'v Map),
) {
    let mut path = Vec::new();
    visit::<false>(
        data,
        steps,
        is_a,
        &mut Hints::new(steps),
        &mut path,
        &mut |_, m| f(m),
    );
}

/// The walk of `visit_parents`, with the client path of each parent when
/// `PATHS` (only errors need them).
fn visit<'v, const PATHS: bool>(
    v: &'v Value,
    steps: &[PathStep],
    is_a: &dyn Fn(&str, &str) -> bool,
    hints: &mut Hints,
    path: &mut Vec<PathSeg>,
    f: &mut dyn FnMut(&[PathSeg], &'v Map),
) {
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if PATHS {
                    path.push(PathSeg::Index(i));
                }
                visit::<PATHS>(item, steps, is_a, hints, path, f);
                if PATHS {
                    path.pop();
                }
            }
        }
        Value::Object(m) => match steps.split_first() {
            None => f(path, m),
            Some((PathStep::Type(t), rest)) => {
                let runtime = m
                    .get_hinted(TYPENAME_ALIAS, hints.at(steps))
                    .and_then(|v| v.as_str());
                if runtime.is_some_and(|r| is_a(t, r)) {
                    visit::<PATHS>(v, rest, is_a, hints, path, f);
                }
            }
            Some((PathStep::Key(k), rest)) => {
                if let Some(child) = m.get_hinted(k.as_str(), hints.at(steps)) {
                    if PATHS {
                        path.push(PathSeg::Key(k.clone()));
                    }
                    visit::<PATHS>(child, rest, is_a, hints, path, f);
                    if PATHS {
                        path.pop();
                    }
                }
            }
        },
        _ => {}
    }
}

/// The same walk as `visit_parents`, mutably, with each parent's ordinal.
pub fn visit_parents_mut(
    data: &mut Value,
    steps: &[PathStep],
    is_a: &dyn Fn(&str, &str) -> bool,
    ordinal: &mut usize,
    f: &mut dyn FnMut(usize, &mut Map),
) {
    fn walk(
        v: &mut Value,
        steps: &[PathStep],
        is_a: &dyn Fn(&str, &str) -> bool,
        hints: &mut Hints,
        ordinal: &mut usize,
        f: &mut dyn FnMut(usize, &mut Map),
    ) {
        match v {
            Value::Array(items) => {
                for i in items.iter_mut() {
                    walk(i, steps, is_a, hints, ordinal, f);
                }
            }
            Value::Object(m) => match steps.split_first() {
                None => {
                    f(*ordinal, m);
                    *ordinal += 1;
                }
                Some((PathStep::Type(t), rest)) => {
                    let runtime = m
                        .get_hinted(TYPENAME_ALIAS, hints.at(steps))
                        .and_then(|v| v.as_str());
                    if runtime.is_some_and(|r| is_a(t, r)) {
                        walk(v, rest, is_a, hints, ordinal, f);
                    }
                }
                Some((PathStep::Key(k), rest)) => {
                    if let Some(child) = m.get_hinted_mut(k.as_str(), hints.at(steps)) {
                        walk(child, rest, is_a, hints, ordinal, f);
                    }
                }
            },
            _ => {}
        }
    }
    walk(data, steps, is_a, &mut Hints::new(steps), ordinal, f);
}

/// Writes `value` under `key`; a slot already written (the same response
/// key delegated twice with different selections) is merged into.
pub fn write_key(obj: &mut Map, key: &str, value: Value) {
    match obj.get_mut(key) {
        Some(slot) => merge(slot, value),
        None => obj.push(key.into(), value),
    }
}

/// Merges an entity's answer into a parent object (a null answer adds nothing).
pub fn merge_into(obj: &mut Map, value: Value) {
    if let Value::Object(more) = value {
        for (k, v) in more {
            match obj.get_mut(k.as_str()) {
                Some(existing) => merge(existing, v),
                None => obj.push(k, v),
            }
        }
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

    /// A tree value from JSON text written with `json!`.
    macro_rules! tree {
        ($($t:tt)+) => {
            Value::from(json!($($t)+))
        };
    }

    fn key(k: &str) -> PathSeg {
        PathSeg::Key(Name::new(k).unwrap())
    }

    #[test]
    fn collects_parents_through_lists_and_type_steps() {
        let data = tree!({"a": {"items": [
            {"b": {"x": 1, "_stitch_t": "X"}},
            {"b": null},
            {"b": [{"x": 2, "_stitch_t": "Y"}, {"x": 3, "_stitch_t": "X"}]}
        ]}});
        let steps = [
            PathStep::Key(Name::new("a").unwrap()),
            PathStep::Key(Name::new("items").unwrap()),
            PathStep::Key(Name::new("b").unwrap()),
        ];
        let out = parent_paths(&data, &steps, &|c, r| c == r);
        assert_eq!(out.len(), 3);
        let mut visited = 0;
        visit_parents(&data, &steps, &|c, r| c == r, &mut |_| visited += 1);
        assert_eq!(visited, 3);
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
        let out = parent_paths(&data, &typed, &|c, r| c == r);
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
    fn writes_and_merges_into_the_parents_a_walk_finds() {
        let mut data = tree!({"a": [{"x": 1}, {"x": 2}], "b": 3});
        let steps = [PathStep::Key(Name::new("a").unwrap())];
        let mut seen = Vec::new();
        visit_parents_mut(&mut data, &steps, &|c, r| c == r, &mut 0, &mut |i, obj| {
            seen.push(i);
            write_key(obj, "y", tree!(i));
            merge_into(obj, tree!({"z": true}));
            merge_into(obj, tree!(null));
        });
        assert_eq!(seen, [0, 1]);
        assert_eq!(
            data,
            tree!({"a": [{"x": 1, "y": 0, "z": true}, {"x": 2, "y": 1, "z": true}], "b": 3})
        );
    }

    #[test]
    fn a_second_answer_for_a_key_merges_into_the_first() {
        let mut data = Map::new();
        write_key(
            &mut data,
            "p",
            tree!({"id": "1", "l": [{"a": 1}, {"a": 2}], "o": null}),
        );
        write_key(
            &mut data,
            "p",
            tree!({"name": "n", "l": [{"b": 1}, {"b": 2}], "o": {"x": 1}}),
        );
        assert_eq!(
            Value::Object(data.clone()),
            tree!({"p": {"id": "1", "l": [{"a": 1, "b": 1}, {"a": 2, "b": 2}], "o": null, "name": "n"}})
        );
        write_key(&mut data, "p", tree!(null));
        assert_eq!(Value::Object(data), tree!({"p": null}));
    }
}
