//! The response data while a plan runs: subgraph answers parsed into it,
//! merged, then shaped into the client's answer.
//!
//! Everything lives in one arena per execution ([`Arena`]), dropped whole
//! when the execution ends. The profile said why: a vector allocated per
//! object, a count on the answer's buffer per string, and freeing all of it
//! one by one cost a fifth of an execution's instructions (the execute
//! bench) and about as much of the gateway's CPU under load. An answer
//! parsed here is a few bump allocations in a row, and no value has a
//! destructor (`NO_DROP` holds that).
//!
//! An answer's text is kept as it arrived ([`Answers`]) until the
//! execution ends, so strings and keys are slices of it. An object is its
//! entries in arrival order, searched in order (GraphQL objects are small,
//! and readers that visit many objects of one shape pass a hint); it grows
//! by moving its entries to a larger slice, so merging answers into it
//! stays a bump allocation too.
//!
//! Answers are parsed straight into the arena by [`super::parse`].

use std::fmt;

use apollo_compiler::response::{JsonMap, JsonValue};
use serde::{
    ser::{SerializeMap, SerializeSeq},
    Serialize, Serializer,
};
use serde_json::Number;

pub(crate) use super::parse::ParseError;

/// One execution's memory: every answer and value of its data. Shared by
/// reference across the execution's waves (it is `Sync`); each stage that
/// allocates takes an [`Alloc`] from it for as long as it runs.
pub(crate) type Arena = bumpalo_herd::Herd;

/// Allocates into an [`Arena`] for the arena's lifetime `'h`.
pub(crate) type Alloc<'h> = bumpalo_herd::Member<'h>;

/// An execution's arena, taken from those of finished executions when one
/// is spare and given back, emptied, when the execution ends (or is
/// dropped). A fresh arena grows by a dozen allocations of doubling size
/// (a `nested` execution fills about 120 KB), each new to the caches; a
/// spare keeps its largest block, last written by the execution that just
/// ended.
pub(crate) struct Spare(Arena);

/// Arenas kept for the next executions, the most recently used last.
static SPARES: std::sync::Mutex<Vec<Arena>> = std::sync::Mutex::new(Vec::new());

/// At most this many arenas are kept: under load, arenas go from one
/// execution to the next, and few wait here.
const SPARES_KEPT: usize = 8;

/// An arena left holding more than this (a large answer) is freed, not
/// kept, so that the spares hold at most 16 MiB when the gateway goes
/// idle. Blocks double, so an execution leaves one of at most twice what
/// it used (`nested` uses about 120 KB, `TestQuery` about 420 KB).
const SPARE_BYTES: usize = 2 << 20;

impl Spare {
    pub fn take() -> Spare {
        let spare = SPARES.lock().ok().and_then(|mut s| s.pop());
        Spare(spare.unwrap_or_default())
    }
}

impl std::ops::Deref for Spare {
    type Target = Arena;

    fn deref(&self) -> &Arena {
        &self.0
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        // An empty `Herd` in its place allocates nothing.
        let mut arena = std::mem::take(&mut self.0);
        arena.reset();
        if arena.get().as_bump().allocated_bytes() > SPARE_BYTES {
            return;
        }
        if let Ok(mut spares) = SPARES.lock() {
            if spares.len() < SPARES_KEPT {
                spares.push(arena);
            }
        }
    }
}

/// The subgraph answers of one execution, kept whole until it ends: its
/// strings and keys are slices of them. They were copied into the arena
/// (1% of the gateway's CPU under `nested`, and a third of the arena, read
/// and written again while cold); the answer's own buffer is read instead.
#[derive(Default)]
pub(crate) struct Answers(boxcar::Vec<bytes::Bytes>);

impl Answers {
    /// Keeps `body` for as long as the answers are, checked to be UTF-8.
    pub fn keep(&self, body: bytes::Bytes) -> Result<&str, ParseError> {
        let at = self.0.push(body);
        super::parse::utf8(&self.0[at])
    }

    /// Asks the cache for the answers kept, as `prefetch_between` does for
    /// the arena, within what is left of the same budget once `asked`
    /// bytes of the arena were asked for: their strings and keys are read
    /// wherever values are.
    pub fn prefetch(&self, asked: usize) {
        let mut budget = WARM_BYTES.saturating_sub(asked);
        for (_, body) in self.0.iter() {
            budget -= prefetch_lines(body, body.len().min(budget));
        }
    }
}

/// A JSON value of the response data.
#[derive(Debug, Default)]
pub(crate) enum Value<'h> {
    #[default]
    Null,
    Bool(bool),
    Number(Number),
    String(&'h str),
    Array(&'h mut [Value<'h>]),
    Object(Map<'h>),
}

/// For a pass over objects at `i` (`object(k)` is the `k`th): asks for the
/// entries of the object two ahead and for what the next one's entries
/// point at, so that each object's cache misses are paid while earlier
/// ones are worked on.
pub(crate) fn prefetch_ahead<'a, 'h: 'a>(object: impl Fn(usize) -> Option<&'a Map<'h>>, i: usize) {
    if let Some(m) = object(i + 2) {
        m.prefetch();
    }
    if let Some(m) = object(i + 1) {
        m.prefetch_within();
    }
}

/// `a == b` for object keys, inline: keys are mostly shorter than 16
/// bytes, where a call to `memcmp` cost more than the comparison (it was
/// 3% of the gateway's CPU under `nested`, called from the shaper's and
/// the batch keys' lookups). Two overlapping words compare any length
/// from 8 to 16; longer keys go to `memcmp`.
#[inline(always)]
fn same_key(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word =
        |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or_default());
    let half =
        |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap_or_default());
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// A place in an execution's arena: the arena fills downward, so what was
/// allocated after a mark lies below it, up to a later mark.
pub(crate) fn mark<'h>(alloc: &Alloc<'h>) -> &'h u8 {
    alloc.alloc(0u8)
}

/// Asks the cache for every line allocated between two marks (`top` the
/// earlier), all at once and in address order, so that they come in
/// together rather than one miss at a time. A span larger than a spare
/// arena is not one block (one was started between the marks): nothing
/// is asked for then. Of a larger span than `WARM_BYTES`, only the most
/// recent part is asked for: more would push its own first lines out.
/// Returns how many bytes were asked for.
pub(crate) fn prefetch_between(top: &u8, bottom: &u8) -> usize {
    let (hi, lo) = (top as *const u8 as usize, bottom as *const u8 as usize);
    let Some(span) = hi.checked_sub(lo).filter(|&s| s <= SPARE_BYTES) else {
        return 0;
    };
    prefetch_lines(std::slice::from_ref(bottom), span.min(WARM_BYTES))
}

/// Asks the cache for the `len` bytes from `base` on, a line at a time
/// (`len` may run past `base`'s own length: a prefetch reads nothing).
/// Returns `len`.
fn prefetch_lines(base: &[u8], len: usize) -> usize {
    for offset in (0..len).step_by(64) {
        prefetch_index::prefetch_index(base, offset);
    }
    len
}

/// About a core's L2 cache on the machines this was measured on (1 MiB):
/// a `TestQuery` execution's arena fits, a `nested` one is a quarter.
const WARM_BYTES: usize = 1 << 20;

/// The arena never runs destructors: a value must not need one, or what
/// it owns would leak.
const NO_DROP: () = assert!(!std::mem::needs_drop::<Value<'static>>());

/// A JSON object: its entries in arrival order, in a slice of the arena
/// with room to grow. A key a subgraph sent twice is found at its first
/// place.
///
/// Three words, like a string or a list, so that a [`Value`] is three
/// words and an entry five, where they were four and six: the length is
/// 32 bits, and `Niche` leaves a byte the value's variant is told by
/// (the compiler stores the tag there). Values are most of an execution's
/// memory, read and written again after they left the caches.
#[derive(Default)]
pub(crate) struct Map<'h> {
    entries: &'h mut [(&'h str, Value<'h>)],
    /// The parser refuses an object of more entries than this holds, and
    /// merges add at most the entries of answers (bounded by the response
    /// size limit, each entry a few bytes of one).
    len: u32,
    _niche: Niche,
}

/// A byte with one valid value: the other 255 are free for [`Value`]'s tag.
#[derive(Default)]
#[repr(u8)]
enum Niche {
    #[default]
    Zero = 0,
}

/// Values of three words (see [`Map`]). Every value of an answer is one
/// of these: their size is memory traffic (a `serde_json_bytes::Value`
/// is 96 bytes).
const _: () = assert!(std::mem::size_of::<Value<'static>>() == 24);

impl<'h> Value<'h> {
    /// Parses a subgraph's answer: strings and keys are slices of `text`.
    /// Each object gets `room` free entries: an answer whose objects later
    /// fetches write into (their parents) takes one, so that a field
    /// written there fills a free entry instead of moving the object's
    /// entries to a larger slice, in memory that has left the caches by
    /// then.
    pub fn parse(text: &'h str, alloc: &Alloc<'h>, room: usize) -> Result<Value<'h>, ParseError> {
        let () = NO_DROP;
        super::parse::parse(text, alloc, room)
    }

    /// A list of these values.
    pub fn list(alloc: &Alloc<'h>, items: impl IntoIterator<Item = Value<'h>>) -> Value<'h> {
        let mut items: Vec<Value<'h>> = items.into_iter().collect();
        Value::Array(alloc.alloc_slice_fill_iter(items.drain(..)))
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn as_str(&self) -> Option<&'h str> {
        match self {
            Value::String(s) => Some(s),
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

    pub fn as_object(&self) -> Option<&Map<'h>> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_object_mut(&mut self) -> Option<&mut Map<'h>> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    /// Appends this value as JSON text, as serde_json writes it, with
    /// less work around each leaf: strings that need no escaping are
    /// copied (inline: most values written are such strings), integers
    /// written with `itoa`.
    #[inline(always)]
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Value::String(s) if super::parse::is_plain(s.as_bytes()) => {
                out.reserve(s.len() + 2);
                out.push(b'"');
                out.extend_from_slice(s.as_bytes());
                out.push(b'"');
            }
            _ => self.write_other_json(out),
        }
    }

    #[inline(never)]
    fn write_other_json(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Number(n) if n.is_u64() || n.is_i64() => {
                let mut digits = itoa::Buffer::new();
                let text = match (n.as_u64(), n.as_i64()) {
                    (Some(u), _) => digits.format(u),
                    (None, Some(i)) => digits.format(i),
                    (None, None) => "null",
                };
                out.extend_from_slice(text.as_bytes());
            }
            Value::Array(items) => Value::list_json(items, out),
            Value::Object(m) => {
                out.push(b'{');
                for (i, (key, value)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    Value::String(key).write_json(out);
                    out.push(b':');
                    value.write_json(out);
                }
                out.push(b'}');
            }
            // Escaped strings and floats (rare here): serde_json writes
            // them, and writing into a Vec cannot fail.
            _ => {
                let _ = serde_json::to_writer(&mut *out, self);
            }
        }
    }

    /// Appends `items` as a JSON list.
    pub fn list_json(items: &[Value<'_>], out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            item.write_json(out);
        }
        out.push(b']');
    }

    /// A copy in the arena, for a value several parents take.
    /// A string (a batch key, most often) is copied inline; a list or an
    /// object is a call.
    #[inline]
    pub fn clone_in(&self, alloc: &Alloc<'h>) -> Value<'h> {
        match self {
            Value::String(s) => Value::String(s),
            _ => self.clone_deep(alloc),
        }
    }

    #[inline(never)]
    fn clone_deep(&self, alloc: &Alloc<'h>) -> Value<'h> {
        match self {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(*b),
            Value::Number(n) => Value::Number(n.clone()),
            Value::String(s) => Value::String(s),
            Value::Array(items) => {
                Value::Array(alloc.alloc_slice_fill_with(items.len(), |i| items[i].clone_in(alloc)))
            }
            Value::Object(m) => Value::Object(m.clone_in(alloc)),
        }
    }

    /// The same value as a `serde_json_bytes` value (for variables and
    /// errors, which leave the arena).
    pub fn to_json(&self) -> JsonValue {
        match self {
            Value::Null => JsonValue::Null,
            Value::Bool(b) => JsonValue::Bool(*b),
            Value::Number(n) => JsonValue::Number(n.clone()),
            Value::String(s) => JsonValue::String((*s).into()),
            Value::Array(items) => JsonValue::Array(items.iter().map(Value::to_json).collect()),
            Value::Object(m) => JsonValue::Object(m.to_json()),
        }
    }

    /// A `serde_json_bytes` value copied into the arena.
    pub fn from_json(v: &JsonValue, alloc: &Alloc<'h>) -> Value<'h> {
        match v {
            JsonValue::Null => Value::Null,
            JsonValue::Bool(b) => Value::Bool(*b),
            JsonValue::Number(n) => Value::Number(n.clone()),
            JsonValue::String(s) => Value::String(alloc.alloc_str(s.as_str())),
            JsonValue::Array(items) => Value::Array(
                alloc.alloc_slice_fill_with(items.len(), |i| Value::from_json(&items[i], alloc)),
            ),
            JsonValue::Object(m) => Value::Object(Map::from_json(m, alloc)),
        }
    }
}

/// JSON equality: objects equal whatever the order of their keys.
impl<'b> PartialEq<Value<'b>> for Value<'_> {
    fn eq(&self, other: &Value<'b>) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Number(a), Value::Number(b)) => a == b,
            (Value::String(a), Value::String(b)) => a == b,
            (Value::Array(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| x == y)
            }
            (Value::Object(a), Value::Object(b)) => a == b,
            _ => false,
        }
    }
}

impl<'b> PartialEq<Map<'b>> for Map<'_> {
    fn eq(&self, other: &Map<'b>) -> bool {
        self.len() == other.len()
            && self
                .iter()
                .all(|(k, v)| other.get(k).is_some_and(|o| v == o))
    }
}

impl<'h> Map<'h> {
    /// An object of the first `len` of these entries, as parsed; the
    /// rest is room to grow.
    pub(super) fn from_entries(entries: &'h mut [(&'h str, Value<'h>)], len: u32) -> Self {
        Map {
            entries,
            len,
            _niche: Niche::Zero,
        }
    }

    pub fn new() -> Self {
        Map::default()
    }

    pub fn with_capacity(n: usize, alloc: &Alloc<'h>) -> Self {
        let mut m = Map::new();
        m.reserve(n, alloc);
        m
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    fn live(&self) -> &[(&'h str, Value<'h>)] {
        &self.entries[..self.len as usize]
    }

    fn live_mut(&mut self) -> &mut [(&'h str, Value<'h>)] {
        &mut self.entries[..self.len as usize]
    }

    /// Asks the cache for this object's first and last entries without
    /// waiting for them: a prefetch is a hint, so unlike a read it never
    /// holds up the work after it while the lines come in.
    pub fn prefetch(&self) {
        let live = self.live();
        if let Some(last) = live.len().checked_sub(1) {
            prefetch_index::prefetch_index(live, 0);
            prefetch_index::prefetch_index(live, last);
        }
    }

    /// Asks for what this object's entries point at: each key's text,
    /// a string's text, the entries of an object, the first items of a
    /// list. Reading where they are reads the entries: call it once
    /// `prefetch` had time, or when the entries are about to be read.
    pub fn prefetch_within(&self) {
        for (key, value) in self.live() {
            prefetch_index::prefetch_index(key.as_bytes(), 0);
            match value {
                Value::String(s) => prefetch_index::prefetch_index(s.as_bytes(), 0),
                Value::Object(m) => m.prefetch(),
                Value::Array(items) => prefetch_index::prefetch_index(&**items, 0),
                _ => {}
            }
        }
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.live().iter().position(|(k, _)| same_key(k, key))
    }

    pub fn get(&self, key: &str) -> Option<&Value<'h>> {
        self.position(key).map(|at| &self.entries[at].1)
    }

    /// `get`, first trying the place `hint` names (where this key was in
    /// the previous object of the same shape), then remembering the place.
    #[inline(always)]
    pub fn get_hinted(&self, key: &str, hint: &mut usize) -> Option<&Value<'h>> {
        self.find_hinted(key, hint).map(|(_, v)| v)
    }

    /// `get_hinted`, with the entry's position. The hinted entry is tried
    /// inline (most lookups end there: the shaper, the walk to parents and
    /// the batch keys each make one per object); the scan is a call.
    #[inline(always)]
    pub fn find_hinted(&self, key: &str, hint: &mut usize) -> Option<(usize, &Value<'h>)> {
        if let Some((k, v)) = self.live().get(*hint) {
            if same_key(k, key) {
                return Some((*hint, v));
            }
        }
        self.find_scanned(key, hint)
    }

    #[inline(never)]
    fn find_scanned(&self, key: &str, hint: &mut usize) -> Option<(usize, &Value<'h>)> {
        let at = self.position(key)?;
        *hint = at;
        Some((at, &self.live().get(at)?.1))
    }

    /// The entry at a position `find_hinted` gave.
    pub fn entry_at(&self, at: usize) -> Option<(&'h str, &Value<'h>)> {
        self.live().get(at).map(|(k, v)| (*k, v))
    }

    /// The value at a position `find_hinted` gave, mutably.
    pub fn value_at_mut(&mut self, at: usize) -> Option<&mut Value<'h>> {
        self.live_mut().get_mut(at).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value<'h>> {
        let at = self.position(key)?;
        Some(&mut self.entries[at].1)
    }

    /// Sets `key`, replacing (in place) a value it had.
    pub fn insert(&mut self, key: &'h str, value: Value<'h>, alloc: &Alloc<'h>) {
        match self.position(key) {
            Some(at) => self.entries[at].1 = value,
            None => self.push(key, value, alloc),
        }
    }

    /// Room for `n` more entries, so merging an answer grows a parent once.
    pub fn reserve(&mut self, n: usize, alloc: &Alloc<'h>) {
        if self.len() + n > self.entries.len() {
            self.grow(n, alloc);
        }
    }

    /// Moves the entries to a slice with room for `n` more. The old slice
    /// stays in the arena until the execution ends.
    fn grow(&mut self, n: usize, alloc: &Alloc<'h>) {
        let old = std::mem::take(&mut self.entries);
        let mut live = old[..self.len as usize].iter_mut();
        self.entries = alloc.alloc_slice_fill_with(self.len as usize + n, |_| {
            live.next().map(std::mem::take).unwrap_or_default()
        });
    }

    /// Adds an entry known not to be there yet. A full map grows by half
    /// its length: most parents take one stitched field per wave, and room
    /// for four more was written out as nulls, in cache lines of fresh
    /// memory that under load cost a miss each.
    pub fn push(&mut self, key: &'h str, value: Value<'h>, alloc: &Alloc<'h>) {
        let len = self.len();
        if len == self.entries.len() {
            self.grow((len / 2).max(1), alloc);
        }
        self.entries[len] = (key, value);
        self.len += 1;
    }

    /// Takes the value of `key` out of a map being taken apart, leaving
    /// null in its place.
    pub fn take(&mut self, key: &str) -> Option<Value<'h>> {
        let at = self.position(key)?;
        Some(std::mem::take(&mut self.entries[at].1))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'h str, &Value<'h>)> {
        self.live().iter().map(|(k, v)| (*k, v))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&'h str, &mut Value<'h>)> {
        self.live_mut().iter_mut().map(|(k, v)| (*k, v))
    }

    /// Sets each of `more`'s keys, as `insert` does.
    pub fn extend(&mut self, more: Map<'h>, alloc: &Alloc<'h>) {
        self.reserve(more.len(), alloc);
        for (k, v) in more.drain() {
            self.insert(k, v, alloc);
        }
    }

    /// The entries, moved out of a map being taken apart.
    pub fn drain(self) -> impl Iterator<Item = (&'h str, Value<'h>)> {
        let len = self.len();
        self.entries[..len].iter_mut().map(std::mem::take)
    }

    /// Merging large objects: each key's position, first place first.
    pub fn index(&self) -> ahash::HashMap<&'h str, usize> {
        let mut index = ahash::HashMap::default();
        for (at, (k, _)) in self.live().iter().enumerate() {
            index.entry(*k).or_insert(at);
        }
        index
    }

    pub fn clone_in(&self, alloc: &Alloc<'h>) -> Map<'h> {
        let live = self.live();
        Map::from_entries(
            alloc.alloc_slice_fill_with(live.len(), |i| (live[i].0, live[i].1.clone_in(alloc))),
            self.len,
        )
    }

    pub fn to_json(&self) -> JsonMap {
        let mut m = JsonMap::with_capacity(self.len());
        for (k, v) in self.live() {
            m.insert(*k, v.to_json());
        }
        m
    }

    pub fn from_json(m: &JsonMap, alloc: &Alloc<'h>) -> Map<'h> {
        let mut out = Map::with_capacity(m.len(), alloc);
        for (k, v) in m {
            out.push(
                alloc.alloc_str(k.as_str()),
                Value::from_json(v, alloc),
                alloc,
            );
        }
        out
    }
}

impl fmt::Debug for Map<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Number(n) => n.serialize(s),
            Value::String(v) => s.serialize_str(v),
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items.iter() {
                    seq.serialize_element(i)?;
                }
                seq.end()
            }
            Value::Object(m) => m.serialize(s),
        }
    }
}

impl Serialize for Map<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.live() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// JSON text, for keys and signatures that compare values by their text.
fn display_json(v: &impl Serialize, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let text = serde_json::to_string(v).map_err(|_| fmt::Error)?;
    f.write_str(&text)
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        display_json(self, f)
    }
}

impl fmt::Display for Map<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        display_json(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apollo_compiler::response::serde_json_bytes::json;

    fn parse<'h>(text: impl AsRef<[u8]>, alloc: &Alloc<'h>) -> Result<Value<'h>, ParseError> {
        let text = super::super::parse::utf8(text.as_ref())?;
        Value::parse(alloc.alloc_str(text), alloc, 0)
    }

    /// Every length class of `same_key`, against `==`: equal keys, and
    /// keys that differ in one byte anywhere or in length.
    #[test]
    fn same_key_agrees_with_str_equality() {
        for n in 0..40 {
            let a: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            assert!(same_key(&a, &a.clone()), "{a}");
            for at in 0..n {
                let mut b = a.clone().into_bytes();
                b[at] = b'_';
                let b = String::from_utf8(b).unwrap();
                assert_eq!(same_key(&a, &b), a == b, "{a} {b}");
            }
            assert!(!same_key(&a, &format!("{a}x")));
        }
    }

    /// The arena's writer writes what serde_json writes, objects,
    /// escapes and floats included (request variables are written by it).
    #[test]
    fn written_json_is_what_serde_json_writes() {
        let arena = Arena::new();
        let a = arena.get();
        let text = r#"{"a":[1,-2,3.5,"x\"y",null,true],"b":{"c":{},"d":[]},"e\n":"é","f":{"__typename":"T","id":"1","n":[{"k":18446744073709551615}]}}"#;
        let v = parse(text, &a).unwrap();
        let mut ours = Vec::new();
        v.write_json(&mut ours);
        assert_eq!(ours, serde_json::to_vec(&v).unwrap());
        assert_eq!(ours, serde_json::to_vec(&v.to_json()).unwrap());
    }

    #[test]
    fn parses_what_serde_json_bytes_parses() {
        let arena = Arena::new();
        let a = arena.get();
        let text = r#"{"a":[1,-2,3.5,"x\"y",null,true],"b":{"c":{},"d":[]},"e":"é"}"#;
        let ours = parse(text, &a).unwrap();
        let theirs = JsonValue::from_bytes(bytes::Bytes::from_static(text.as_bytes())).unwrap();
        assert_eq!(ours.to_json(), theirs);
        assert_eq!(ours, Value::from_json(&theirs, &a));
        assert_eq!(ours.to_string(), text);
    }

    /// A subgraph's answer is input: nesting deep enough to exhaust the
    /// stack, and bytes that are not UTF-8, are errors, not a crash.
    #[test]
    fn answers_nested_too_deep_or_not_utf8_are_errors() {
        let arena = Arena::new();
        let a = arena.get();
        assert!(parse("[".repeat(200_000), &a).is_err());
        assert!(parse(b"{\"a\":\"\xff\xfe\"}", &a).is_err());
        let text = br#"{"a":"x\ny\u00e9","n":1.5e3,"big":18446744073709551615,"neg":-3}"#;
        let v = parse(text, &a).unwrap();
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
        let arena = Arena::new();
        let a = arena.get();
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
            let ours = parse(text, &a);
            let theirs = JsonValue::from_bytes(bytes::Bytes::from(text)).unwrap();
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
            assert!(parse(text, &a).is_err(), "{text:?}");
            assert!(
                serde_json::from_str::<serde_json::Value>(text).is_err(),
                "{text:?}"
            );
        }
        // 254 levels of nesting, and not one more.
        for (levels, parses) in [(254, true), (255, false)] {
            let text = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
            assert_eq!(parse(text, &a).is_ok(), parses, "{levels} levels");
        }
    }

    /// Keys are slices of the answer, or copies when escaped; both read and
    /// compare as the text the subgraph sent.
    #[test]
    fn keys_short_long_and_escaped_parse_and_compare_as_sent() {
        let arena = Arena::new();
        let a = arena.get();
        let long = "aVeryLongResponseKeyPastTwentyFourBytes";
        let text = format!(r#"{{"id":1,"{long}":2,"q\"k\u00e9":3}}"#);
        let v = parse(text, &a).unwrap();
        let m = v.as_object().unwrap();
        assert_eq!(m.get("id").and_then(Value::as_u64), Some(1));
        assert_eq!(m.get(long).and_then(Value::as_u64), Some(2));
        assert_eq!(m.get("q\"ké").and_then(Value::as_u64), Some(3));
        let keys: Vec<&str> = m.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["id", long, "q\"ké"]);
        assert_eq!(
            m.to_json(),
            *json!({"id": 1, long: 2, "q\"ké": 3}).as_object().unwrap()
        );
    }

    #[test]
    fn trailing_text_is_an_error() {
        let arena = Arena::new();
        let a = arena.get();
        assert!(parse("{} x", &a).is_err());
        assert!(parse("{\"a\":", &a).is_err());
    }

    #[test]
    fn objects_are_equal_whatever_the_order_of_their_keys() {
        let arena = Arena::new();
        let a = arena.get();
        let x = Value::from_json(&json!({"x": 1, "y": [{"p": 1, "q": 2}]}), &a);
        let y = Value::from_json(&json!({"y": [{"q": 2, "p": 1}], "x": 1}), &a);
        assert_eq!(x, y);
        assert_ne!(x, Value::from_json(&json!({"x": 1}), &a));
    }

    #[test]
    fn insert_replaces_in_place_and_take_leaves_null() {
        let arena = Arena::new();
        let a = arena.get();
        let Value::Object(mut m) = Value::from_json(&json!({"a": 1, "b": 2, "c": 3}), &a) else {
            unreachable!()
        };
        m.insert("b", Value::Bool(true), &a);
        m.insert("d", Value::Null, &a);
        assert_eq!(m.take("a").and_then(|v| v.as_u64()), Some(1));
        assert_eq!(m.to_string(), r#"{"a":null,"b":true,"c":3,"d":null}"#);
        let mut hint = 0;
        assert_eq!(
            m.get_hinted("c", &mut hint).and_then(Value::as_u64),
            Some(3)
        );
        assert_eq!(hint, 2);
        assert_eq!(
            m.get_hinted("c", &mut hint).and_then(Value::as_u64),
            Some(3)
        );
        assert!(m.get_hinted("z", &mut hint).is_none());
        assert_eq!(hint, 2);
    }

    /// Growing moves the entries to a larger slice: every entry, its
    /// place and a copy made before stay as they were.
    #[test]
    fn objects_grow_keeping_their_entries_in_order() {
        let arena = Arena::new();
        let a = arena.get();
        let text = format!(
            "{{{}}}",
            (0..100)
                .map(|i| format!("\"k{i}\":{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let Value::Object(mut m) = parse(text, &a).unwrap() else {
            unreachable!()
        };
        let before = m.clone_in(&a);
        for i in 100..150 {
            let key = a.alloc_str(&format!("k{i}"));
            m.push(key, Value::Bool(true), &a);
        }
        assert_eq!(m.len(), 150);
        assert_eq!(m.get("k70").and_then(Value::as_u64), Some(70));
        assert_eq!(m.entry_at(120).map(|(k, _)| k), Some("k120"));
        assert_eq!(m.take("k3").and_then(|v| v.as_u64()), Some(3));
        assert!(m.get("k3").is_some_and(Value::is_null));
        assert_eq!(m.index().get("k149"), Some(&149));
        assert_eq!(before.len(), 100);
        assert_eq!(before.get("k3").and_then(Value::as_u64), Some(3));
    }

    /// An answer parsed with room reads as one parsed without, and a
    /// field written into its objects fills the room in place.
    #[test]
    fn an_object_parsed_with_room_takes_a_field_in_place() {
        let arena = super::Spare::take();
        let alloc = arena.get();
        let text = r#"{"items":[{"id":"p1","n":1},{"id":"p2","n":2}]}"#;
        let plain = parse(text, &alloc).expect("parses");
        let mut roomy = Value::parse(alloc.alloc_str(text), &alloc, 1).expect("parses");
        assert!(roomy == plain);
        assert_eq!(roomy.to_string(), plain.to_string());
        let Some(Value::Array(items)) = roomy.as_object_mut().and_then(|m| m.get_mut("items"))
        else {
            panic!("a list of items");
        };
        let Some(first) = items.first_mut().and_then(Value::as_object_mut) else {
            panic!("an object");
        };
        let before = first.entries.as_ptr();
        first.push("logs", Value::Bool(true), &alloc);
        assert_eq!(first.entries.as_ptr(), before, "written in place");
        assert_eq!(
            roomy.to_string(),
            r#"{"items":[{"id":"p1","n":1,"logs":true},{"id":"p2","n":2}]}"#
        );
    }

    /// `Execution::warm` asks for the span between two marks, which holds
    /// what was allocated in between only while an arena fills downward.
    #[test]
    fn marks_fall_as_the_arena_fills() {
        let arena = super::Spare::take();
        let alloc = arena.get();
        let top = super::mark(&alloc);
        let parsed =
            parse(r#"{"items":[{"message":"one"},{"message":"two"}]}"#, &alloc).expect("parses");
        let bottom = super::mark(&alloc);
        let (hi, lo) = (top as *const u8 as usize, bottom as *const u8 as usize);
        let items = match parsed.as_object().and_then(|m| m.get("items")) {
            Some(Value::Array(items)) => items.as_ptr() as usize,
            _ => panic!("a list of items"),
        };
        assert!(lo < items && items < hi, "{lo:#x} < {items:#x} < {hi:#x}");
        // Out of order, or too far apart to be one block: nothing to ask.
        super::prefetch_between(bottom, top);
    }

    /// An arena goes back to the spares emptied, and one left holding a
    /// huge answer is freed rather than kept (other tests share the spares,
    /// so this checks what any spare may hold).
    #[test]
    fn spare_arenas_come_back_empty_and_never_huge() {
        {
            let arena = super::Spare::take();
            let alloc = arena.get();
            alloc.alloc_slice_fill_default::<u8>(2 * super::SPARE_BYTES);
        }
        let arena = super::Spare::take();
        let bump = arena.get();
        assert!(bump.as_bump().allocated_bytes() <= super::SPARE_BYTES);
        // Emptied: the block it kept is free for the next execution.
        let (held, free) = (
            bump.as_bump().allocated_bytes(),
            bump.as_bump().chunk_capacity(),
        );
        assert!(free + 1024 >= held, "{free} of {held} bytes free");
    }
}
