//! The response data while a plan runs: subgraph answers parsed into it,
//! merged, then shaped into the client's answer.
//!
//! Its own type rather than `serde_json_bytes::Value` because the profile
//! said so: a hash map per object cost a hash of every key when parsing
//! and again on every lookup, and a growing table per object. GraphQL
//! objects are small and their fields are read in the order they arrived,
//! so an object here is a vector of entries searched in order, with a hint
//! for readers that visit many objects of one shape. Strings share the
//! answer's buffer, as `serde_json_bytes` does.
//!
//! Keys are held inline (`compact_str`, up to 24 bytes), not as slices of
//! the answer: an entry is then 64 bytes instead of 72, comparing a key
//! reads only the entry, not the answer's buffer (both are cold when an
//! answer is merged into parents made a round trip earlier), and parsing
//! or dropping a key touches no shared reference count.
//!
//! Answers are parsed by `sonic-rs` through serde, not `serde_json`: its
//! scanning of strings and whitespace in wide words took a quarter off the
//! `nested` execution (the execute bench), with a bound on nesting (254
//! levels) and UTF-8 checked, and strings still borrowed.

use std::{borrow::Borrow, cell::RefCell, fmt, sync::OnceLock};

use compact_str::CompactString;

use apollo_compiler::response::{
    serde_json_bytes::{value::ByteStringSeed, ByteString},
    JsonMap, JsonValue,
};
use bytes::Bytes;
use serde::{
    de::{DeserializeSeed, MapAccess, SeqAccess, Visitor},
    ser::{SerializeMap, SerializeSeq},
    Serialize, Serializer,
};
use serde_json::Number;

/// An object's key: a GraphQL response name, or a custom scalar's key.
pub(crate) type Key = CompactString;

/// A JSON value of the response data.
#[derive(Clone, Debug, Default)]
pub(crate) enum Value {
    #[default]
    Null,
    Bool(bool),
    Number(Number),
    String(ByteString),
    Array(Vec<Value>),
    Object(Map),
}

/// A JSON object: its entries in arrival order. A key a subgraph sent twice
/// is found at its first place.
#[derive(Clone, Default)]
pub(crate) struct Map {
    entries: Vec<(Key, Value)>,
    /// Positions by key, made at the first lookup in a large object (a
    /// custom scalar's value can hold any number of keys), so no lookup
    /// costs more than a hash.
    index: OnceLock<Box<ahash::HashMap<Key, usize>>>,
}

/// Above this many entries, a lookup goes through `Map::index`.
const SCANNED: usize = 32;

impl Value {
    /// Parses a subgraph's answer; strings are slices of `bytes`.
    pub fn from_bytes(bytes: Bytes) -> Result<Value, sonic_rs::Error> {
        let mut de = sonic_rs::Deserializer::from_slice(&bytes);
        let scratch = Scratch::default();
        let value = Seed {
            bytes: &bytes,
            scratch: &scratch,
        }
        .deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        }
    }

    pub fn is_string(&self) -> bool {
        matches!(self, Value::String(_))
    }

    pub fn is_boolean(&self) -> bool {
        matches!(self, Value::Bool(_))
    }

    pub fn is_number(&self) -> bool {
        matches!(self, Value::Number(_))
    }

    pub fn is_i64(&self) -> bool {
        matches!(self, Value::Number(n) if n.is_i64())
    }

    pub fn is_u64(&self) -> bool {
        matches!(self, Value::Number(n) if n.is_u64())
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Map> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_object_mut(&mut self) -> Option<&mut Map> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    /// The same value as a `serde_json_bytes` value (for variables and
    /// errors, which leave the tree).
    pub fn to_json(&self) -> JsonValue {
        match self {
            Value::Null => JsonValue::Null,
            Value::Bool(b) => JsonValue::Bool(*b),
            Value::Number(n) => JsonValue::Number(n.clone()),
            Value::String(s) => JsonValue::String(s.clone()),
            Value::Array(items) => JsonValue::Array(items.iter().map(Value::to_json).collect()),
            Value::Object(m) => JsonValue::Object(m.to_json()),
        }
    }
}

impl From<JsonValue> for Value {
    fn from(v: JsonValue) -> Self {
        match v {
            JsonValue::Null => Value::Null,
            JsonValue::Bool(b) => Value::Bool(b),
            JsonValue::Number(n) => Value::Number(n),
            JsonValue::String(s) => Value::String(s),
            JsonValue::Array(items) => Value::Array(items.into_iter().map(Value::from).collect()),
            JsonValue::Object(m) => Value::Object(Map::from(m)),
        }
    }
}

/// JSON equality: objects equal whatever the order of their keys.
impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Number(a), Value::Number(b)) => a == b,
            (Value::String(a), Value::String(b)) => a == b,
            (Value::Array(a), Value::Array(b)) => a == b,
            (Value::Object(a), Value::Object(b)) => a == b,
            _ => false,
        }
    }
}

impl PartialEq for Map {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .entries
                .iter()
                .all(|(k, v)| other.get(k.as_str()) == Some(v))
    }
}

impl Map {
    pub fn new() -> Self {
        Map::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Map::from_entries(Vec::with_capacity(n))
    }

    fn from_entries(entries: Vec<(Key, Value)>) -> Self {
        Map {
            entries,
            index: OnceLock::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn position(&self, key: &str) -> Option<usize> {
        if self.entries.len() <= SCANNED {
            return self.entries.iter().position(|(k, _)| k.as_str() == key);
        }
        let index = self.index.get_or_init(|| {
            let mut index = ahash::HashMap::default();
            for (at, (k, _)) in self.entries.iter().enumerate() {
                index.entry(k.clone()).or_insert(at);
            }
            Box::new(index)
        });
        index.get(key).copied()
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.position(key).map(|at| &self.entries[at].1)
    }

    /// `get`, first trying the place `hint` names (where this key was in
    /// the previous object of the same shape), then remembering the place.
    pub fn get_hinted(&self, key: &str, hint: &mut usize) -> Option<&Value> {
        self.find_hinted(key, hint).map(|(_, v)| v)
    }

    /// `get_hinted`, with the entry's position.
    pub fn find_hinted(&self, key: &str, hint: &mut usize) -> Option<(usize, &Value)> {
        let at = self.hinted_position(key, hint)?;
        Some((at, &self.entries[at].1))
    }

    /// The entry at a position `find_hinted` gave.
    pub fn entry_at(&self, at: usize) -> Option<(&Key, &Value)> {
        self.entries.get(at).map(|(k, v)| (k, v))
    }

    /// The value at a position `find_hinted` gave, mutably.
    pub fn value_at_mut(&mut self, at: usize) -> Option<&mut Value> {
        self.entries.get_mut(at).map(|(_, v)| v)
    }

    fn hinted_position(&self, key: &str, hint: &mut usize) -> Option<usize> {
        if let Some((k, _)) = self.entries.get(*hint) {
            if k.as_str() == key {
                return Some(*hint);
            }
        }
        let at = self.position(key)?;
        *hint = at;
        Some(at)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        let at = self.position(key)?;
        Some(&mut self.entries[at].1)
    }

    /// Sets `key`, replacing (in place) a value it had.
    pub fn insert(&mut self, key: impl Into<Key> + Borrow<str>, value: Value) {
        match self.position(key.borrow()) {
            Some(at) => self.entries[at].1 = value,
            None => self.push(key.into(), value),
        }
    }

    /// Room for `n` more entries, so merging an answer grows a parent once.
    pub fn reserve(&mut self, n: usize) {
        if self.entries.len() + n > self.entries.capacity() {
            self.grow(n);
        }
    }

    /// Moves the entries to a new vector with room for `n` more: a new
    /// allocation and a copy, not `realloc`, which jemalloc makes look the
    /// old block's size up first. Growing parents as answers were merged
    /// into them cost a tenth of an execution's instructions that way.
    fn grow(&mut self, n: usize) {
        let mut grown = Vec::with_capacity(self.entries.len() + n);
        grown.append(&mut self.entries);
        self.entries = grown;
    }

    /// Adds an entry known not to be there yet.
    pub fn push(&mut self, key: Key, value: Value) {
        if let Some(index) = self.index.get_mut() {
            index.entry(key.clone()).or_insert(self.entries.len());
        }
        if self.entries.len() == self.entries.capacity() {
            self.grow(self.entries.len().max(4));
        }
        self.entries.push((key, value));
    }

    /// Takes the value of `key` out of a map being taken apart, leaving
    /// null in its place: nothing moves, so taking every key of a large
    /// answer (one per call of a request) costs one index, not one per key.
    pub fn take(&mut self, key: &str) -> Option<Value> {
        let at = self.position(key)?;
        Some(std::mem::take(&mut self.entries[at].1))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Key, &mut Value)> {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub fn to_json(&self) -> JsonMap {
        let mut m = JsonMap::with_capacity(self.len());
        for (k, v) in &self.entries {
            m.insert(ByteString::from(k.as_str()), v.to_json());
        }
        m
    }
}

impl From<JsonMap> for Map {
    fn from(m: JsonMap) -> Self {
        Map::from_entries(
            m.into_iter()
                .map(|(k, v)| (Key::from(k.as_str()), Value::from(v)))
                .collect(),
        )
    }
}

impl fmt::Debug for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, v)| (k.as_str(), v)))
            .finish()
    }
}

impl Extend<(Key, Value)> for Map {
    fn extend<I: IntoIterator<Item = (Key, Value)>>(&mut self, entries: I) {
        for (k, v) in entries {
            self.insert(k, v);
        }
    }
}

impl IntoIterator for Map {
    type Item = (Key, Value);
    type IntoIter = std::vec::IntoIter<(Key, Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Number(n) => n.serialize(s),
            Value::String(v) => s.serialize_str(v.as_str()),
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(i)?;
                }
                seq.end()
            }
            Value::Object(m) => m.serialize(s),
        }
    }
}

impl Serialize for Map {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (k, v) in &self.entries {
            map.serialize_entry(k.as_str(), v)?;
        }
        map.end()
    }
}

/// JSON text, for keys and signatures that compare values by their text.
fn display_json(v: &impl Serialize, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let text = serde_json::to_string(v).map_err(|_| fmt::Error)?;
    f.write_str(&text)
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        display_json(self, f)
    }
}

impl fmt::Display for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        display_json(self, f)
    }
}

/// Parses an object's key into an inline `Key`.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, s: &str) -> Result<Key, E> {
        Ok(Key::from(s))
    }
}

/// Parses a value whose strings borrow from `bytes`.
#[derive(Clone, Copy)]
struct Seed<'b> {
    bytes: &'b Bytes,
    scratch: &'b Scratch,
}

/// Entries and items of the objects and lists being parsed, as stacks: each
/// is moved into a vector of its exact size when complete (one allocation,
/// where growing one would reallocate as it fills).
#[derive(Default)]
struct Scratch {
    entries: RefCell<Vec<(Key, Value)>>,
    items: RefCell<Vec<Value>>,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.into()))
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, s: &'de str) -> Result<Value, E> {
        // A slice of the answer's buffer, as `serde_json_bytes` makes it.
        ByteStringSeed::new(self.bytes)
            .visit_borrowed_str(s)
            .map(Value::String)
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s.into()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let start = self.scratch.items.borrow().len();
        while let Some(item) = seq.next_element_seed(self)? {
            self.scratch.items.borrow_mut().push(item);
        }
        let items = self.scratch.items.borrow_mut().drain(start..).collect();
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let start = self.scratch.entries.borrow().len();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value = map.next_value_seed(self)?;
            self.scratch.entries.borrow_mut().push((key, value));
        }
        let entries = self.scratch.entries.borrow_mut().drain(start..).collect();
        Ok(Value::Object(Map::from_entries(entries)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apollo_compiler::response::serde_json_bytes::json;

    #[test]
    fn parses_what_serde_json_bytes_parses() {
        let text = r#"{"a":[1,-2,3.5,"x\"y",null,true],"b":{"c":{},"d":[]},"e":"é"}"#;
        let ours = Value::from_bytes(Bytes::from_static(text.as_bytes())).unwrap();
        let theirs = JsonValue::from_bytes(Bytes::from_static(text.as_bytes())).unwrap();
        assert_eq!(ours.to_json(), theirs);
        assert_eq!(ours, Value::from(theirs));
        assert_eq!(ours.to_string(), text);
    }

    /// A subgraph's answer is input: nesting deep enough to exhaust the
    /// stack, and bytes that are not UTF-8, are errors, not a crash.
    #[test]
    fn answers_nested_too_deep_or_not_utf8_are_errors() {
        let deep = "[".repeat(200_000);
        assert!(Value::from_bytes(Bytes::from(deep)).is_err());
        let bad = Bytes::from_static(b"{\"a\":\"\xff\xfe\"}");
        assert!(Value::from_bytes(bad).is_err());
        let text = br#"{"a":"x\ny\u00e9","n":1.5e3,"big":18446744073709551615,"neg":-3}"#;
        let v = Value::from_bytes(Bytes::from_static(text)).unwrap();
        assert_eq!(
            v.to_string(),
            r#"{"a":"x\nyé","n":1500.0,"big":18446744073709551615,"neg":-3}"#
        );
    }

    /// Every shape of JSON a subgraph may send reads as `serde_json` reads
    /// it (`-0`, integers past 64 bits, exponents, whitespace), and every
    /// broken one is an error.
    #[test]
    fn answers_read_as_serde_json_reads_them_and_broken_ones_are_errors() {
        let valid = [
            " { \"a\" : [ 1 , 2 ] , \"b\" : { } , \"c\" : [ ] } ",
            "[]",
            "{}",
            "null",
            "\"\\u00e9\\n\\\"\"",
            "[-0, 0, 1.0, -1.5e-3, 2E2, 9223372036854775807, -9223372036854775808]",
            "[18446744073709551616, 100000000000000000000000]",
            "[true, false, null, {\"x\": [[[{}]]]}]",
        ];
        for text in valid {
            let ours = Value::from_bytes(Bytes::from(text));
            let theirs = JsonValue::from_bytes(Bytes::from(text)).unwrap();
            assert_eq!(ours.map(|v| v.to_json()).ok(), Some(theirs), "{text}");
        }
        let broken = [
            "",
            "{",
            "[1,",
            "[1 2]",
            "{\"a\" 1}",
            "{\"a\":1,}",
            "[1,]",
            "{1:2}",
            "tru",
            "nul",
            "01",
            "1.",
            "-",
            "1e400",
            "\"open",
            "{} {}",
            "[\"\t\"]",
        ];
        for text in broken {
            assert!(Value::from_bytes(Bytes::from(text)).is_err(), "{text:?}");
            assert!(
                serde_json::from_str::<serde_json::Value>(text).is_err(),
                "{text:?}"
            );
        }
        // 254 levels of nesting (`sonic-rs`'s bound), and not one more.
        for (levels, parses) in [(254, true), (255, false)] {
            let text = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
            let parsed = Value::from_bytes(Bytes::from(text)).is_ok();
            assert_eq!(parsed, parses, "{levels} levels");
        }
    }

    /// Keys are held inline up to 24 bytes and on the heap past that; both,
    /// and escaped ones, read and compare as the text the subgraph sent.
    #[test]
    fn keys_short_long_and_escaped_parse_and_compare_as_sent() {
        let long = "aVeryLongResponseKeyPastTwentyFourBytes";
        let text = format!(r#"{{"id":1,"{long}":2,"q\"k\u00e9":3}}"#);
        let v = Value::from_bytes(Bytes::from(text)).unwrap();
        let m = v.as_object().unwrap();
        assert_eq!(m.get("id"), Some(&Value::from(json!(1))));
        assert_eq!(m.get(long), Some(&Value::from(json!(2))));
        assert_eq!(m.get("q\"ké"), Some(&Value::from(json!(3))));
        let keys: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["id", long, "q\"ké"]);
        assert_eq!(
            m.to_json(),
            *json!({"id": 1, long: 2, "q\"ké": 3}).as_object().unwrap()
        );
    }

    #[test]
    fn trailing_text_is_an_error() {
        assert!(Value::from_bytes(Bytes::from_static(b"{} x")).is_err());
        assert!(Value::from_bytes(Bytes::from_static(b"{\"a\":")).is_err());
    }

    #[test]
    fn objects_are_equal_whatever_the_order_of_their_keys() {
        let a = Value::from(json!({"x": 1, "y": [{"p": 1, "q": 2}]}));
        let b = Value::from(json!({"y": [{"q": 2, "p": 1}], "x": 1}));
        assert_eq!(a, b);
        assert_ne!(a, Value::from(json!({"x": 1})));
    }

    #[test]
    fn insert_replaces_in_place_and_take_leaves_null() {
        let Value::Object(mut m) = Value::from(json!({"a": 1, "b": 2, "c": 3})) else {
            unreachable!()
        };
        m.insert("b", Value::Bool(true));
        m.insert("d", Value::Null);
        assert_eq!(m.take("a"), Some(Value::from(json!(1))));
        assert_eq!(
            Value::Object(m.clone()).to_string(),
            r#"{"a":null,"b":true,"c":3,"d":null}"#
        );
        let mut hint = 0;
        assert_eq!(m.get_hinted("c", &mut hint), Some(&Value::from(json!(3))));
        assert_eq!(hint, 2);
        assert_eq!(m.get_hinted("c", &mut hint), Some(&Value::from(json!(3))));
        assert_eq!(m.get_hinted("z", &mut hint), None);
        assert_eq!(hint, 2);
    }

    /// Every object and value of an answer is one of these: their size is
    /// memory traffic (a `serde_json_bytes::Value` is 96 bytes).
    #[test]
    fn values_stay_small() {
        assert!(std::mem::size_of::<Value>() <= 48);
    }

    #[test]
    fn a_large_object_is_read_through_its_index() {
        let text = format!(
            "{{{}}}",
            (0..100)
                .map(|i| format!("\"k{i}\":{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let Value::Object(mut m) = Value::from_bytes(Bytes::from(text)).unwrap() else {
            unreachable!()
        };
        assert_eq!(m.get("k70").and_then(Value::as_u64), Some(70));
        m.push("k100".into(), Value::Bool(true));
        assert_eq!(m.get("k100"), Some(&Value::Bool(true)));
        assert_eq!(m.take("k3").and_then(|v| v.as_u64()), Some(3));
        assert_eq!(m.get("k3"), Some(&Value::Null));
        assert_eq!(m.get("k99").and_then(Value::as_u64), Some(99));
        m.insert("k99", Value::Null);
        assert_eq!(m.get("k99"), Some(&Value::Null));
        assert_eq!(m.len(), 101);
    }
}
