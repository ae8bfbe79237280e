//! Paths into the response data and conversions of argument values.

use std::borrow::Borrow;

use super::tree::{prefetch_ahead, Alloc, Map, Value};
use crate::plan::{PathStep, TYPENAME_ALIAS};
use apollo_compiler::{
    ast::Value as AstValue,
    response::{JsonMap, JsonValue, ResponseDataPathSegment},
    Name,
};

/// One step of an absolute path in the response data. Its name is owned,
/// or borrowed (`&Name`) by a walk that only turns it into a client path
/// when an error needs one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PathSeg<N = Name> {
    Key(N),
    Index(usize),
}

pub type ResponsePath = Vec<PathSeg>;

pub fn to_error_path<N: Borrow<Name>>(path: &[PathSeg<N>]) -> Vec<ResponseDataPathSegment> {
    path.iter()
        .map(|s| match s {
            PathSeg::Key(k) => ResponseDataPathSegment::Field(k.borrow().clone()),
            PathSeg::Index(i) => ResponseDataPathSegment::ListIndex(*i),
        })
        .collect()
}

/// Merges a second answer for the same field into the first: objects key by
/// key, lists item by item (the first answer's length and order stand, so
/// paths already taken into it stay valid); a null on either side is null
/// (that half failed, and its error is reported).
pub(crate) fn merge<'h>(into: &mut Value<'h>, value: Value<'h>, alloc: &Alloc<'h>) {
    match (into, value) {
        (Value::Object(a), Value::Object(b)) => merge_map(a, b, alloc),
        (Value::Array(a), Value::Array(b)) => {
            for (x, y) in a.iter_mut().zip(b.iter_mut()) {
                merge(x, std::mem::take(y), alloc);
            }
        }
        (into, Value::Null) => *into = Value::Null,
        // Leaves (the same scalar twice) or a null first: the first answer stands.
        _ => {}
    }
}

/// Where each step's key was in the last object a walk read at that step
/// (`Map::find_hinted`): sibling objects hold their keys in the same places.
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

/// Where the parents a request answers are in the data: each one's steps
/// from the root (an entry's position in an object, an item's index in a
/// list), recorded by the walk that builds the request, so merging its
/// answer walks nothing and compares no key. A place stays valid while the
/// data grows: merging only appends entries and keeps every list's length.
/// A value replaced by null ends a place early, and that parent, gone, gets
/// nothing.
#[derive(Debug, Default)]
pub(crate) struct Places {
    /// Every place's steps, one after another.
    steps: Vec<u32>,
    /// Where each place's steps end in `steps`.
    ends: Vec<u32>,
}

impl Places {
    /// Room for `n` places of `depth` steps each before any regrowth.
    pub fn with_capacity(n: usize, depth: usize) -> Places {
        Places {
            steps: Vec::with_capacity(n * depth),
            ends: Vec::with_capacity(n),
        }
    }

    /// Room for `n` more places of `depth` steps each.
    fn reserve(&mut self, n: usize, depth: usize) {
        self.steps.reserve(n * depth);
        self.ends.reserve(n);
    }

    fn add(&mut self, steps: &[u32]) -> usize {
        self.steps.extend_from_slice(steps);
        self.ends.push(self.steps.len() as u32);
        self.ends.len() - 1
    }

    /// The steps of `place`; `None` for a place never recorded.
    fn steps(&self, place: usize) -> Option<&[u32]> {
        let end = *self.ends.get(place)? as usize;
        let start = match place.checked_sub(1) {
            Some(before) => *self.ends.get(before)? as usize,
            None => 0,
        };
        self.steps.get(start..end)
    }

    /// The parent object at `place`, if it is still there.
    pub fn object_mut<'v, 'h>(
        &self,
        data: &'v mut Value<'h>,
        place: usize,
    ) -> Option<&'v mut Map<'h>> {
        let mut v = data;
        for &at in self.steps(place)? {
            v = match v {
                Value::Object(m) => m.value_at_mut(at as usize)?,
                Value::Array(items) => items.get_mut(at as usize)?,
                _ => return None,
            };
        }
        v.as_object_mut()
    }

    /// Reads the way to the parent at `place` and asks the cache for its
    /// entries, changing nothing: what a merge into it will read, on its
    /// way while other parents are reached.
    pub fn prefetch(&self, data: &Value<'_>, place: usize) {
        let Some(steps) = self.steps(place) else {
            return;
        };
        let mut v = data;
        for &at in steps {
            v = match v {
                Value::Object(m) => match m.entry_at(at as usize) {
                    Some((_, child)) => child,
                    None => return,
                },
                Value::Array(items) => match items.get(at as usize) {
                    Some(item) => item,
                    None => return,
                },
                _ => return,
            };
        }
        if let Value::Object(m) = v {
            m.prefetch();
        }
    }

    /// The client's path to the parent at `place` (for errors).
    pub fn client_path(&self, data: &Value<'_>, place: usize) -> ResponsePath {
        let mut path = Vec::new();
        let mut v = data;
        for &at in self.steps(place).unwrap_or_default() {
            v = match v {
                Value::Object(m) => match m.entry_at(at as usize) {
                    Some((k, child)) => {
                        path.extend(Name::new(k).ok().map(PathSeg::Key));
                        child
                    }
                    None => break,
                },
                Value::Array(items) => match items.get(at as usize) {
                    Some(item) => {
                        path.push(PathSeg::Index(at as usize));
                        item
                    }
                    None => break,
                },
                _ => break,
            };
        }
        path
    }
}

/// Calls `f` with each parent object a fetch's path leads to from the data
/// root, and its place, recorded in `places`: lists walked, type steps
/// filtered by `_stitch_t`. With no steps, the root itself.
pub fn visit_parents<'v, 'h>(
    data: &'v Value<'h>,
    steps: &[PathStep],
    is_a: &dyn Fn(&str, &str) -> bool,
    places: &mut Places,
    f: &mut dyn FnMut(usize, &'v Map<'h>),
) {
    let mut walk = Walk {
        is_a,
        hints: Hints::new(steps),
        // Room for a key and a list index per step (lists of lists grow it).
        at: Vec::with_capacity(2 * steps.len() + 1),
        places,
    };
    walk.visit(data, steps, f);
}

/// The state of one `visit_parents`.
struct Walk<'w> {
    is_a: &'w dyn Fn(&str, &str) -> bool,
    hints: Hints,
    /// The steps from the root to the value being visited.
    at: Vec<u32>,
    places: &'w mut Places,
}

impl Walk<'_> {
    fn visit<'v, 'h>(
        &mut self,
        v: &'v Value<'h>,
        steps: &[PathStep],
        f: &mut dyn FnMut(usize, &'v Map<'h>),
    ) {
        match v {
            Value::Array(items) => {
                if steps.is_empty() {
                    // Its items are parents: their places, sized at once.
                    self.places.reserve(items.len(), self.at.len() + 1);
                }
                for (i, item) in items.iter().enumerate() {
                    // Parents are only recorded here: what reads them asks
                    // for what it reads.
                    if !steps.is_empty() {
                        prefetch_ahead(|k| items.get(k).and_then(Value::as_object), i);
                    }
                    self.at.push(i as u32);
                    self.visit(item, steps, f);
                    self.at.pop();
                }
            }
            Value::Object(m) => match steps.split_first() {
                None => f(self.places.add(&self.at), m),
                Some((PathStep::Type(t), rest)) => {
                    let runtime = m
                        .find_hinted(TYPENAME_ALIAS, self.hints.at(steps))
                        .and_then(|(_, v)| v.as_str());
                    if runtime.is_some_and(|r| (self.is_a)(t, r)) {
                        self.visit(v, rest, f);
                    }
                }
                Some((PathStep::Key(k), rest)) => {
                    if let Some((at, child)) = m.find_hinted(k.as_str(), self.hints.at(steps)) {
                        self.at.push(at as u32);
                        self.visit(child, rest, f);
                        self.at.pop();
                    }
                }
            },
            _ => {}
        }
    }
}

/// Writes `value` under `key`; a slot already written (the same response
/// key delegated twice with different selections) is merged into. The key
/// is in the arena already: a merge writes one key into many parents.
pub fn write_key<'h>(obj: &mut Map<'h>, key: &'h str, value: Value<'h>, alloc: &Alloc<'h>) {
    match obj.get_mut(key) {
        Some(slot) => merge(slot, value, alloc),
        None => obj.push(key, value, alloc),
    }
}

/// Merges an entity's answer into a parent object (a null answer adds nothing).
pub fn merge_into<'h>(obj: &mut Map<'h>, value: Value<'h>, alloc: &Alloc<'h>) {
    if let Value::Object(more) = value {
        merge_map(obj, more, alloc);
    }
}

/// Merges `more` into `into` key by key, growing `into` once. Keys are
/// looked up by scanning `into`, or, when both are large, through a table.
fn merge_map<'h>(into: &mut Map<'h>, more: Map<'h>, alloc: &Alloc<'h>) {
    into.reserve(more.len(), alloc);
    if into.len() > SCANNED && more.len() > SCANNED {
        let mut index = into.index();
        for (k, v) in more.drain() {
            match index.get(k) {
                Some(&at) => {
                    if let Some(slot) = into.value_at_mut(at) {
                        merge(slot, v, alloc);
                    }
                }
                None => {
                    index.insert(k, into.len());
                    into.push(k, v, alloc);
                }
            }
        }
        return;
    }
    for (k, v) in more.drain() {
        match into.get_mut(k) {
            Some(existing) => merge(existing, v, alloc),
            None => into.push(k, v, alloc),
        }
    }
}

/// Above this many keys on both sides (a custom scalar's value can hold
/// any number), a merge looks keys up in a table: no merge is quadratic.
const SCANNED: usize = 32;

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

    use crate::execute::tree::Arena;

    /// A tree value from JSON text written with `json!`, in the arena `$a`.
    macro_rules! tree {
        ($a:expr, $($t:tt)+) => {
            Value::from_json(&json!($($t)+), $a)
        };
    }

    fn key(k: &str) -> PathSeg {
        PathSeg::Key(Name::new(k).unwrap())
    }

    /// The client paths of the parents a walk finds, and their places.
    fn parent_paths(data: &Value<'_>, steps: &[PathStep]) -> (Vec<ResponsePath>, Places) {
        let mut places = Places::default();
        let mut found = Vec::new();
        visit_parents(data, steps, &|c, r| c == r, &mut places, &mut |place, _| {
            found.push(place)
        });
        let paths = found
            .into_iter()
            .map(|place| places.client_path(data, place))
            .collect();
        (paths, places)
    }

    #[test]
    fn collects_parents_through_lists_and_type_steps() {
        let arena = Arena::new();
        let a = &arena.get();
        let data = tree!(a, {"a": {"items": [
            {"b": {"x": 1, "_stitch_t": "X"}},
            {"b": null},
            {"b": [{"x": 2, "_stitch_t": "Y"}, {"x": 3, "_stitch_t": "X"}]}
        ]}});
        let steps = [
            PathStep::Key(Name::new("a").unwrap()),
            PathStep::Key(Name::new("items").unwrap()),
            PathStep::Key(Name::new("b").unwrap()),
        ];
        let (out, _) = parent_paths(&data, &steps);
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
        let (out, _) = parent_paths(&data, &typed);
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
    fn writes_and_merges_into_the_parents_a_walk_found() {
        let arena = Arena::new();
        let a = &arena.get();
        let mut data = tree!(a, {"a": [{"x": 1}, {"x": 2}], "b": 3});
        let steps = [PathStep::Key(Name::new("a").unwrap())];
        let (_, places) = parent_paths(&data, &steps);
        for place in 0..2 {
            let obj = places.object_mut(&mut data, place).unwrap();
            write_key(obj, "y", tree!(a, place), a);
            merge_into(obj, tree!(a, {"z": true}), a);
            merge_into(obj, tree!(a, null), a);
        }
        assert!(places.object_mut(&mut data, 2).is_none());
        assert_eq!(
            data,
            tree!(a, {"a": [{"x": 1, "y": 0, "z": true}, {"x": 2, "y": 1, "z": true}], "b": 3})
        );
    }

    /// Merging appends and keeps lists' lengths, so a place found before
    /// stays valid; a parent replaced by null is gone and gets nothing.
    #[test]
    fn places_outlive_merges_into_the_data() {
        let arena = Arena::new();
        let a = &arena.get();
        let mut data = tree!(a, {"a": {"p": 1}, "l": [{"q": {"r": 1}}, {"q": {"r": 2}}]});
        let steps = [
            PathStep::Key(Name::new("l").unwrap()),
            PathStep::Key(Name::new("q").unwrap()),
        ];
        let (_, places) = parent_paths(&data, &steps);
        let Value::Object(root) = &mut data else {
            unreachable!()
        };
        merge_into(
            root,
            tree!(a, {"b": 2, "a": {"n": 0}, "l": [{"m": 1, "q": null}, {"m": 2}]}),
            a,
        );
        assert!(places.object_mut(&mut data, 0).is_none());
        merge_into(
            places.object_mut(&mut data, 1).unwrap(),
            tree!(a, {"s": 3}),
            a,
        );
        assert_eq!(
            places.client_path(&data, 1),
            vec![key("l"), PathSeg::Index(1), key("q")]
        );
        assert_eq!(
            data,
            tree!(a, {"a": {"p": 1, "n": 0}, "l": [{"q": null, "m": 1}, {"q": {"r": 2, "s": 3}, "m": 2}], "b": 2})
        );
    }

    #[test]
    fn a_second_answer_for_a_key_merges_into_the_first() {
        let arena = Arena::new();
        let a = &arena.get();
        let mut data = Map::new();
        write_key(
            &mut data,
            "p",
            tree!(a, {"id": "1", "l": [{"a": 1}, {"a": 2}], "o": null}),
            a,
        );
        write_key(
            &mut data,
            "p",
            tree!(a, {"name": "n", "l": [{"b": 1}, {"b": 2}], "o": {"x": 1}}),
            a,
        );
        assert_eq!(
            Value::Object(data.clone_in(a)),
            tree!(a, {"p": {"id": "1", "l": [{"a": 1, "b": 1}, {"a": 2, "b": 2}], "o": null, "name": "n"}})
        );
        write_key(&mut data, "p", tree!(a, null), a);
        assert_eq!(Value::Object(data), tree!(a, {"p": null}));
    }

    /// Large objects merge through a table: the same result as a scan,
    /// a key both sides hold merged, the first answer's order kept.
    #[test]
    fn large_objects_merge_as_small_ones_do() {
        let arena = Arena::new();
        let a = &arena.get();
        let object = |from: usize, to: usize| {
            let m: JsonMap = (from..to)
                .map(|i| (format!("k{i}").into(), json!({ format!("v{from}"): i })))
                .collect();
            Value::from_json(&JsonValue::Object(m), a)
        };
        let mut data = object(0, 100);
        merge(&mut data, object(50, 150), a);
        let m = data.as_object().unwrap();
        assert_eq!(m.len(), 150);
        assert_eq!(m.entry_at(120).map(|(k, _)| k), Some("k120"));
        assert_eq!(
            m.get("k70").map(Value::to_json),
            Some(json!({"v0": 70, "v50": 70}))
        );
        assert_eq!(m.get("k10").map(Value::to_json), Some(json!({"v0": 10})));
        assert_eq!(m.get("k140").map(Value::to_json), Some(json!({"v50": 140})));
    }
}
