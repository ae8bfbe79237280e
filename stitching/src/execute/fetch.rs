//! One wave's fetches to one subgraph -> one request, in stages:
//! `parents` (the objects each fetch serves, per its path and conditions),
//! `inputs` (what it reads from each: keys, requirements, arguments),
//! distinct inputs once, and the document: aliased root fields
//! (`_stitch_N`), renamed variables (`$aN_S_NAME`, `$rN`, client `$c_NAME`).

use std::{
    collections::hash_map::Entry,
    fmt::Write,
    hash::{BuildHasher, Hash, Hasher},
    sync::Arc,
};

use ahash::HashMap;
use apollo_compiler::{
    ast::OperationType,
    response::{JsonMap, JsonValue},
    Name,
};

use super::{
    tree::{Alloc, Map, Value},
    value::{ast_to_json, visit_parents, Places},
    BatchedOperation, FetchError, Request, SubgraphRequest, VariablesWriter, WriteJson,
};
use crate::{
    directives::path::{PathValue, Segment},
    plan::{
        selection::{operation_keyword, Renderer, CLIENT_VARIABLE_PREFIX},
        BoolOrVariable, Condition, FetchKind, FetchNode, InputField,
    },
    schema::{Call, ResolverKind, SubgraphId},
};

/// Alias prefix of the calls of a remote request.
pub const CALL_PREFIX: &str = "_stitch_";

/// Which item of a call's answer a target takes. Names and lists are
/// indices into the request's [`Routing`]: a batch has a target per parent,
/// and a target that owned them cost a count on a shared name (or a vector)
/// made and dropped per parent.
#[derive(Clone, Copy, Debug)]
pub(crate) enum KeyRef {
    /// The whole answer.
    Whole,
    /// The answer's item at this index (batches, `_entities`).
    One(u32),
    /// Items of `Routing::lists` (`NO_ITEM` for a null key item), in order:
    /// a list-valued key.
    Many { start: u32, len: u32 },
    /// The answer's value under `Routing::names[i]` (a root field).
    Key(u32),
}

/// A null item of a list-valued key (`KeyRef::Many`): no answer item.
pub(crate) const NO_ITEM: u32 = u32::MAX;

/// Where one call's answer goes: a parent of a fetch, named by its place
/// in the request's `Routing::places`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    pub parent: u32,
    pub key: KeyRef,
    /// Written under `Routing::names[i]` of the parent (a stitched field's
    /// value, a root field), or, `None`, merged into the parent (an entity).
    pub write: Option<u32>,
}

/// One root field of a remote request and where its answer goes.
#[derive(Debug)]
pub(crate) struct CallOut {
    /// `None`: the fetch's root fields themselves (client response keys).
    pub alias: Option<String>,
    /// The path segments after the first, to descend into the answer.
    pub descend: Vec<Name>,
    pub targets: Vec<Target>,
    /// Root keys under `@skip`/`@include`: the answer may leave them out.
    pub optional: Vec<Name>,
}

/// Where a request's answers go: its calls, and the places in the data of
/// the parents their targets name.
#[derive(Debug, Default)]
pub(crate) struct Routing {
    pub calls: Vec<CallOut>,
    pub places: Places,
    /// The response keys targets name (`Target::write`, `KeyRef::Key`).
    pub names: Vec<Name>,
    /// The items of list-valued keys (`KeyRef::Many`).
    pub lists: Vec<u32>,
}

impl Routing {
    /// The key `t` is written under; `None`: merged into its parent.
    pub fn write(&self, t: &Target) -> Option<&Name> {
        t.write.and_then(|i| self.names.get(i as usize))
    }

    /// The answer items of a list-valued key.
    pub fn items(&self, start: u32, len: u32) -> &[u32] {
        let start = start as usize;
        self.lists
            .get(start..start + len as usize)
            .unwrap_or_default()
    }
}

/// The parent objects a request's calls answer for (a root call: one).
fn batch_size(calls: &[CallOut]) -> usize {
    calls.iter().map(|c| c.targets.len().max(1)).sum()
}

/// The request for one subgraph in one wave, and how to read its answer.
pub struct Built {
    pub subgraph: SubgraphId,
    pub request: Option<SubgraphRequest>,
    pub(crate) routing: Routing,
    /// Variable batching: per request of the batch, the call alias of each
    /// variable set's answer (`None`: a plain document, answered whole).
    pub(crate) unbatch: Vec<Option<Vec<String>>>,
    /// Free entries each object of the answer gets when parsed: one when
    /// a later fetch writes into objects of this one's answer.
    pub(crate) room: usize,
}

pub(crate) fn condition_holds(c: &Condition, variables: &JsonMap) -> bool {
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
fn empty_answer<'h>(node: &FetchNode) -> Value<'h> {
    match node.field_type() {
        Some(ty) if ty.is_list() && ty.is_non_null() => Value::Array(Default::default()),
        _ => Value::Null,
    }
}

/// The values a fetch reads from one parent, by field name. `None` when a
/// value it needs is missing (a parent that failed, or a null key).
fn project<'h>(
    parent: &Map<'h>,
    inputs: &[InputField],
    allow_null: bool,
    alloc: &Alloc<'h>,
) -> Option<Map<'h>> {
    let mut out = Map::with_capacity(inputs.len(), alloc);
    for i in inputs {
        let v = parent.get(i.key.as_str())?;
        let v = if i.selection.is_empty() {
            if v.is_null() && !allow_null {
                return None;
            }
            v.clone_in(alloc)
        } else {
            project_value(v, &i.selection, allow_null, alloc)?
        };
        out.insert(alloc.alloc_str(&i.name), v, alloc);
    }
    Some(out)
}

fn project_value<'h>(
    v: &Value<'h>,
    inputs: &[InputField],
    allow_null: bool,
    alloc: &Alloc<'h>,
) -> Option<Value<'h>> {
    match v {
        Value::Object(m) => project(m, inputs, allow_null, alloc).map(Value::Object),
        Value::Array(items) => items
            .iter()
            .map(|i| project_value(i, inputs, allow_null, alloc))
            .collect::<Option<Vec<_>>>()
            .map(|items| Value::list(alloc, items)),
        Value::Null if allow_null => Some(Value::Null),
        _ => None,
    }
}

/// The value of `$fields:a.b` in a projection, lists walked.
fn field_value(repr: &Map<'_>, path: &[String]) -> Option<JsonValue> {
    fn walk(v: &Value<'_>, path: &[String]) -> JsonValue {
        let Some((first, rest)) = path.split_first() else {
            return v.to_json();
        };
        match v {
            Value::Object(m) => m
                .get(first.as_str())
                .map(|x| walk(x, rest))
                .unwrap_or(JsonValue::Null),
            Value::Array(items) => JsonValue::Array(items.iter().map(|i| walk(i, path)).collect()),
            _ => JsonValue::Null,
        }
    }
    let (first, rest) = path.split_first()?;
    Some(walk(repr.get(first.as_str())?, rest))
}

enum Resolved {
    Value(JsonValue),
    /// A `$arguments:`/`$variables:` reference with no value: leave the argument out.
    Absent,
    /// A `$fields:` reference that is null: the field is null, no call.
    NullKey,
}

/// What path values are resolved against.
struct ArgContext<'a, 'h> {
    repr: &'a Map<'h>,
    node: &'a FetchNode,
    variables: &'a JsonMap,
}

fn resolve(pv: &PathValue, cx: &ArgContext<'_, '_>) -> Resolved {
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
            for item in items {
                match resolve(item, cx) {
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
                match resolve(v, cx) {
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
            let FetchKind::Field {
                arguments,
                definition,
                ..
            } = &cx.node.kind
            else {
                return Resolved::Absent;
            };
            let value = match arguments.iter().find(|a| a.name == name.as_str()) {
                Some(a) => ast_to_json(&a.value, cx.variables),
                None => definition
                    .arguments
                    .iter()
                    .find(|a| a.name == name.as_str())
                    .and_then(|d| d.default_value.as_ref())
                    .and_then(|d| ast_to_json(d, cx.variables)),
            };
            value.map(Resolved::Value).unwrap_or(Resolved::Absent)
        }
        PathValue::Variable(name) => cx
            .variables
            .get(name.as_str())
            .cloned()
            .map(Resolved::Value)
            .unwrap_or(Resolved::Absent),
        PathValue::Field(path) => match field_value(cx.repr, path) {
            None | Some(JsonValue::Null) => Resolved::NullKey,
            Some(v) => Resolved::Value(v),
        },
    }
}

/// Distinct JSON values in first-seen order, found again by hash (no
/// serialising to compare them).
#[derive(Default)]
struct Distinct<'h> {
    values: Vec<Value<'h>>,
    by_hash: HashMap<u64, Vec<usize>>,
    hasher: ahash::RandomState,
}

impl<'h> Distinct<'h> {
    /// The index of `v`, added if it is new.
    fn index(&mut self, v: Value<'h>) -> usize {
        let mut h = self.hasher.build_hasher();
        hash_value(&v, &mut h);
        let hash = h.finish();
        match self.find(hash, |x| *x == v) {
            Some(i) => i,
            None => self.add(hash, v),
        }
    }

    /// The index of the value with this hash that `same` accepts.
    fn find(&self, hash: u64, mut same: impl FnMut(&Value<'h>) -> bool) -> Option<usize> {
        let bucket = self.by_hash.get(&hash)?;
        bucket.iter().copied().find(|i| same(&self.values[*i]))
    }

    /// Adds a value not found under its hash.
    fn add(&mut self, hash: u64, v: Value<'h>) -> usize {
        self.values.push(v);
        let i = self.values.len() - 1;
        self.by_hash.entry(hash).or_default().push(i);
        i
    }
}

/// Whether representations can be compared with parents in place: input
/// names distinct at every level and none `__typename` (a projection keeps
/// the last of two same names, and `__typename` is added to it).
fn plain_inputs(inputs: &[InputField]) -> bool {
    inputs.iter().enumerate().all(|(n, i)| {
        i.name != "__typename"
            && !inputs[..n].iter().any(|j| j.name == i.name)
            && plain_inputs(&i.selection)
    })
}

/// `parent.get(key)`, first trying where `hint` says the previous parent
/// held it: sibling parents have one shape, so a scan of the keys becomes
/// one comparison.
fn input_of<'m, 'h>(
    parent: &'m Map<'h>,
    key: &str,
    hint: Option<&mut usize>,
) -> Option<&'m Value<'h>> {
    match hint {
        Some(hint) => parent.get_hinted(key, hint),
        None => parent.get(key),
    }
}

/// Hashes what `project(parent, inputs, false)` would hold, without
/// building it; `false` where that projection is `None`. `hints`: one per
/// input at this level (nested levels pass none).
fn hash_projection(
    parent: &Map<'_>,
    inputs: &[InputField],
    hints: &mut [usize],
    h: &mut impl Hasher,
) -> bool {
    fn value(v: &Value<'_>, inputs: &[InputField], h: &mut impl Hasher) -> bool {
        if inputs.is_empty() {
            hash_value(v, h);
            return !v.is_null();
        }
        match v {
            Value::Object(m) => hash_projection(m, inputs, &mut [], h),
            Value::Array(items) => {
                items.len().hash(h);
                items.iter().all(|i| value(i, inputs, h))
            }
            _ => false,
        }
    }
    let mut hints = hints.iter_mut();
    inputs.iter().all(|i| {
        i.name.as_str().hash(h);
        input_of(parent, i.key.as_str(), hints.next()).is_some_and(|v| value(v, &i.selection, h))
    })
}

/// Whether `project(parent, inputs, _)` would equal `repr` in the inputs'
/// names (`repr` came from a projection by the same inputs). `hints` as
/// for `hash_projection`.
fn same_projection(
    parent: &Map<'_>,
    inputs: &[InputField],
    hints: &mut [usize],
    repr: &Map<'_>,
) -> bool {
    fn value(v: &Value<'_>, inputs: &[InputField], r: &Value<'_>) -> bool {
        if inputs.is_empty() {
            return v == r;
        }
        match (v, r) {
            (Value::Object(m), Value::Object(rm)) => same_projection(m, inputs, &mut [], rm),
            (Value::Array(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| value(x, inputs, y))
            }
            _ => false,
        }
    }
    let mut hints = hints.iter_mut();
    inputs.iter().all(|i| {
        match (
            input_of(parent, i.key.as_str(), hints.next()),
            repr.get(i.name.as_str()),
        ) {
            (Some(v), Some(r)) => value(v, &i.selection, r),
            _ => false,
        }
    })
}

/// Hashes a JSON value by its content (object keys in order).
fn hash_value(v: &Value<'_>, h: &mut impl std::hash::Hasher) {
    use std::hash::Hash;
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, b).hash(h),
        // As equality sees numbers: by kind and value (no text to allocate).
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => (2u8, 0u8, u).hash(h),
            (None, Some(i), _) => (2u8, 1u8, i).hash(h),
            (None, None, f) => (2u8, 2u8, f.map(f64::to_bits)).hash(h),
        },
        Value::String(s) => (3u8, *s).hash(h),
        Value::Array(items) => {
            (4u8, items.len()).hash(h);
            items.iter().for_each(|i| hash_value(i, h));
        }
        Value::Object(m) => {
            (5u8, m.len()).hash(h);
            for (k, v) in m.iter() {
                k.hash(h);
                hash_value(v, h);
            }
        }
    }
}

/// A batch key or a call signature for deduplication.
#[derive(PartialEq, Eq, Hash)]
enum KeyText<'h> {
    Str(&'h str),
    Json(String),
}

fn key_text<'h>(k: &Value<'h>) -> KeyText<'h> {
    match k {
        // Keys are nearly always IDs: a string key is its own text.
        Value::String(s) => KeyText::Str(s),
        other => KeyText::Json(other.to_string()),
    }
}

/// One request's document under construction.
struct Doc<'r, 'a, 'h> {
    req: &'r Request<'a>,
    alloc: &'r Alloc<'h>,
    subgraph: SubgraphId,
    operation: Option<OperationType>,
    decls: String,
    variables: VariablesWriter,
    body: String,
    calls: Vec<CallOut>,
    declared: Vec<Name>,
    /// Identical calls (same call, arguments, selection) go out once.
    signatures: HashMap<String, usize>,
    /// Batched calls by call, selection and arguments.
    batches: HashMap<String, Batch<'h>>,
    /// `_entities` calls by type, selection and inputs.
    entity_calls: Vec<EntityCall<'h>>,
    /// Variable batching: lookups sent as one document each with a list of
    /// variable sets, and the call alias each set's answer belongs to.
    vsets: Vec<VariableBatch>,
    /// Stitched fields whose `$fields:` key is null: `(fetch, place)`,
    /// answered null (or `[]`) without a call.
    empties: Vec<(usize, usize)>,
    places: Places,
    /// `Routing::names` and `Routing::lists`, as the targets are made.
    names: Vec<Name>,
    lists: Vec<u32>,
    /// `Built::room`.
    room: usize,
}

struct VariableBatch {
    query: String,
    /// Client variables the document uses, in every set.
    client: Vec<Name>,
    sets: Vec<JsonValue>,
    aliases: Vec<String>,
    /// Each set's call in `Doc::calls`.
    call_of: Vec<usize>,
    /// Each set's index by its text (before client variables).
    index: HashMap<String, usize>,
}

/// An `_entities` call collecting representations across the fetches of
/// a wave that ask the same of them (see `asks_the_same`).
struct EntityCall<'h> {
    /// The first fetch it serves: its type, selection and inputs.
    fetch: usize,
    /// Its place in `Doc::calls`, once it has a representation.
    call: Option<usize>,
    reps: Distinct<'h>,
    /// Where each input was in the last parent (see `input_of`).
    hints: Vec<usize>,
}

/// A batched call collecting its keys across the fetches of a wave.
struct Batch<'h> {
    call: usize,
    fetch: usize,
    keys: Vec<Value<'h>>,
    index: HashMap<KeyText<'h>, usize>,
}

impl<'r, 'a, 'h> Doc<'r, 'a, 'h> {
    /// `name`'s index in `Routing::names` (a request names a few keys).
    fn name(&mut self, name: &Name) -> u32 {
        let i = match self.names.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                self.names.push(name.clone());
                self.names.len() - 1
            }
        };
        i as u32
    }

    fn routing(self) -> Routing {
        Routing {
            calls: self.calls,
            places: self.places,
            names: self.names,
            lists: self.lists,
        }
    }

    fn next_alias(&self) -> String {
        format!("{CALL_PREFIX}{}", self.calls.len())
    }

    fn declare(&mut self, name: &str, ty: &str, value: &(impl WriteJson + ?Sized)) {
        let _ = write!(self.decls, "${name}: {ty}, ");
        self.variables.insert(name, value);
    }

    /// The client variables a fetch's selection uses, declared once.
    fn client_variables(&mut self, node: &FetchNode) {
        for (name, ty) in &node.variables {
            if self.declared.contains(name) {
                continue;
            }
            self.declared.push(name.clone());
            let _ = write!(self.decls, "${CLIENT_VARIABLE_PREFIX}{name}: {ty}, ");
            if let Some(v) = self.req.variables.get(name.as_str()) {
                self.variables
                    .insert(&format!("{CLIENT_VARIABLE_PREFIX}{name}"), v);
            }
        }
    }

    /// Writes `alias: a(x: $v) { b(y: $w) { <selection> } }` for a call.
    fn write_call(
        &mut self,
        alias: &str,
        path: &[Segment],
        args: &[Vec<(String, String)>],
        selection: &str,
    ) {
        let _ = write!(self.body, " {alias}: ");
        for (si, seg) in path.iter().enumerate() {
            self.body.push_str(&seg.name);
            if let Some(vars) = args.get(si).filter(|v| !v.is_empty()) {
                self.body.push('(');
                for (i, (name, var)) in vars.iter().enumerate() {
                    if i > 0 {
                        self.body.push_str(", ");
                    }
                    let _ = write!(self.body, "{name}: ${var}");
                }
                self.body.push(')');
            }
            if si + 1 < path.len() {
                self.body.push_str(" { ");
            }
        }
        if !selection.is_empty() {
            self.body.push(' ');
            self.body.push_str(selection);
        }
        for _ in 1..path.len() {
            self.body.push_str(" }");
        }
    }

    /// Declares one variable per argument of each segment.
    fn call_variables(
        &mut self,
        call: &Call,
        n: usize,
        seg_args: Vec<Vec<(String, impl WriteJson)>>,
    ) -> Vec<Vec<(String, String)>> {
        let mut out = Vec::with_capacity(seg_args.len());
        for (si, args) in seg_args.into_iter().enumerate() {
            let mut vars = Vec::with_capacity(args.len());
            for (name, v) in args {
                let var = format!("a{n}_{si}_{name}");
                let ty = call
                    .argument_types
                    .get(si)
                    .and_then(|m| m.get(&name))
                    .map(|s| s.as_str())
                    .unwrap_or("String")
                    .to_owned();
                self.declare(&var, &ty, &v);
                vars.push((name, var));
            }
            out.push(vars);
        }
        out
    }

    fn finish(mut self) -> Built {
        if self.calls.is_empty() {
            return Built {
                subgraph: self.subgraph,
                request: None,
                routing: Routing::default(),
                unbatch: Vec::new(),
                room: self.room,
            };
        }
        if !self.vsets.is_empty() {
            return self.finish_batched();
        }
        let operation = self.operation.unwrap_or(OperationType::Query);
        let query = self.document(operation);
        Built {
            subgraph: self.subgraph,
            request: Some(SubgraphRequest {
                operation,
                variables: std::mem::take(&mut self.variables).finish(query.len()),
                query,
                batch: Vec::new(),
                batch_size: batch_size(&self.calls),
            }),
            room: self.room,
            routing: self.routing(),
            unbatch: Vec::new(),
        }
    }

    /// `query($v: T, ...) { <calls> }`
    fn document(&self, operation: OperationType) -> String {
        let mut query = String::with_capacity(self.body.len() + self.decls.len() + 16);
        query.push_str(operation_keyword(operation));
        if !self.decls.is_empty() {
            query.push('(');
            query.push_str(self.decls.trim_end_matches([',', ' ']));
            query.push(')');
        }
        query.push_str(" {");
        query.push_str(&self.body);
        query.push_str(" }");
        query
    }

    /// Variable batching: each lookup is one document with its list of
    /// variable sets; whatever else the wave asks is one more plain request.
    fn finish_batched(mut self) -> Built {
        let mut batch = Vec::new();
        let mut unbatch = Vec::new();
        for v in std::mem::take(&mut self.vsets) {
            batch.push(BatchedOperation {
                query: v.query,
                variables: JsonValue::Array(v.sets),
            });
            unbatch.push(Some(v.aliases));
        }
        if !self.body.is_empty() {
            let query = self.document(self.operation.unwrap_or(OperationType::Query));
            batch.push(BatchedOperation {
                query,
                variables: JsonValue::Object(
                    std::mem::take(&mut self.variables).finish(0).to_map(),
                ),
            });
            unbatch.push(None);
        }
        Built {
            subgraph: self.subgraph,
            request: Some(SubgraphRequest {
                operation: OperationType::Query,
                query: String::new(),
                variables: Default::default(),
                batch,
                batch_size: batch_size(&self.calls),
            }),
            room: self.room,
            routing: self.routing(),
            unbatch,
        }
    }
}

/// Builds this wave's request to `subgraph` from its fetches. Stitched
/// fields whose `$fields:` key is null are written to `data` at once.
pub(crate) fn build<'h>(
    req: &Request<'_>,
    data: &mut Value<'h>,
    subgraph: SubgraphId,
    fetches: &[usize],
    alloc: &Alloc<'h>,
) -> Built {
    let (built, empties) = build_request(req, &*data, subgraph, fetches, alloc);
    answer_empties(req, data, &built.routing.places, empties, alloc);
    built
}

/// Room for one more entry in each object of the answer when a later
/// fetch depends on one of these: its parents are most likely objects of
/// this answer, and most parents take one field per fetch. The answers
/// nothing depends on (most of a response's objects: the leaves) get none.
fn answer_room(req: &Request<'_>, fetches: &[usize]) -> usize {
    let parents = req
        .plan
        .fetches
        .iter()
        .any(|later| later.depends_on.iter().any(|d| fetches.contains(d)));
    usize::from(parents)
}

/// The fields whose `$fields:` key is null get their answer at once: null,
/// or `[]` for a non-null list.
fn answer_empties<'h>(
    req: &Request<'_>,
    data: &mut Value<'h>,
    places: &Places,
    empties: Vec<(usize, usize)>,
    alloc: &Alloc<'h>,
) {
    for (fetch, place) in empties {
        let node = &req.plan.fetches[fetch];
        if let (FetchKind::Field { response_key, .. }, Some(obj)) =
            (&node.kind, places.object_mut(data, place))
        {
            let key = alloc.alloc_str(response_key);
            super::value::write_key(obj, key, empty_answer(node), alloc);
        }
    }
}

/// Builds this wave's request to `subgraph` from its fetches (reading the
/// data only), and which stitched fields answer empty without a call.
fn build_request<'h>(
    req: &Request<'_>,
    data: &Value<'h>,
    subgraph: SubgraphId,
    fetches: &[usize],
    alloc: &Alloc<'h>,
) -> (Built, Vec<(usize, usize)>) {
    let mut doc = Doc {
        req,
        alloc,
        subgraph,
        operation: None,
        // Sized for a few calls' declarations and fields: grown by doubling,
        // a request's text was a handful of allocations.
        decls: String::with_capacity(128),
        variables: VariablesWriter::default(),
        body: String::with_capacity(256),
        calls: Vec::new(),
        declared: Vec::new(),
        signatures: HashMap::default(),
        batches: HashMap::default(),
        entity_calls: Vec::new(),
        vsets: Vec::new(),
        empties: Vec::new(),
        places: Places::with_capacity(64, 4),
        names: Vec::new(),
        lists: Vec::new(),
        room: answer_room(req, fetches),
    };
    let variables: &JsonMap = req.variables;
    // The parents of each fetch in turn, in one buffer: batched fetches
    // serve lists of parents, and started at a list's size it seldom
    // regrows.
    let mut found = Vec::with_capacity(64);
    for &id in fetches {
        let node = &req.plan.fetches[id];
        if !node
            .conditions
            .iter()
            .all(|c| condition_holds(c, variables))
        {
            continue;
        }
        doc.operation.get_or_insert(node.operation());
        parents(req, data, node, &mut doc.places, &mut found);
        let parents = found.as_slice();
        match &node.kind {
            FetchKind::Root { .. } => root_fields(&mut doc, node, parents),
            FetchKind::Entity {
                resolver,
                remote_type,
            } => match &resolver.kind {
                ResolverKind::Entities => entities(&mut doc, node, remote_type, parents),
                ResolverKind::Call(call)
                    if !call.batch && req.supergraph.subgraphs[subgraph].variable_batching =>
                {
                    variable_sets(&mut doc, node, call, parents);
                }
                ResolverKind::Call(call) => calls(&mut doc, node, call, parents, true),
            },
            FetchKind::Field { call, .. } => calls(&mut doc, node, call, parents, false),
        }
    }
    finish_entities(&mut doc);
    finish_batches(&mut doc);
    let empties = std::mem::take(&mut doc.empties);
    (doc.finish(), empties)
}

/// The objects a fetch serves, each with its place, into `out`.
fn parents<'d, 'h>(
    req: &Request<'_>,
    data: &'d Value<'h>,
    node: &FetchNode,
    places: &mut Places,
    out: &mut Vec<(usize, &'d Map<'h>)>,
) {
    let schema = &req.supergraph.schema;
    out.clear();
    visit_parents(
        data,
        &node.path,
        &|condition, runtime| condition == runtime || schema.is_subtype(condition, runtime),
        places,
        &mut |place, obj| out.push((place, obj)),
    );
}

/// Root fields answer into the data's root, the one parent of their path.
fn root_fields(doc: &mut Doc<'_, '_, '_>, node: &FetchNode, parents: &[(usize, &Map<'_>)]) {
    let Some(&(root, _)) = parents.first() else {
        return;
    };
    doc.client_variables(node);
    // `{ a b { c } }`: its fields join the document's top level.
    let inner = node
        .rendered
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(&node.rendered);
    doc.body.push_str(inner.trim_end());
    let mut keys = Vec::new();
    let mut optional = Vec::new();
    top_keys(&node.selection, false, &mut keys, &mut optional);
    let targets = keys
        .iter()
        .map(|k| {
            let name = doc.name(k);
            Target {
                parent: root as u32,
                key: KeyRef::Key(name),
                write: Some(name),
            }
        })
        .collect();
    doc.calls.push(CallOut {
        alias: None,
        descend: Vec::new(),
        optional,
        targets,
    });
}

/// The response keys at the top of a selection (inside condition-only fragments too).
/// `optional`: the keys under a condition, which the answer may leave out.
fn top_keys(
    set: &crate::plan::selection::SelectionSet,
    conditional: bool,
    out: &mut Vec<Name>,
    optional: &mut Vec<Name>,
) {
    use crate::plan::selection::Selection;
    for item in &set.items {
        match item {
            Selection::Field(f) => {
                if !out.contains(&f.response_key) {
                    out.push(f.response_key.clone());
                }
                if (conditional || !f.conditions.is_empty()) && !optional.contains(&f.response_key)
                {
                    optional.push(f.response_key.clone());
                }
            }
            Selection::InlineFragment(i) => top_keys(
                &i.selection,
                conditional || !i.conditions.is_empty(),
                out,
                optional,
            ),
        }
    }
}

/// Federation: one `_entities` call with every distinct representation.
fn entities<'h>(
    doc: &mut Doc<'_, '_, 'h>,
    node: &FetchNode,
    remote_type: &Name,
    parents: &[(usize, &Map<'h>)],
) {
    let alloc = doc.alloc;
    let req = doc.req;
    let fetches = &req.plan.fetches;
    let shared = doc
        .entity_calls
        .iter()
        .position(|e| asks_the_same(&fetches[e.fetch], node));
    let mut call = match shared {
        Some(i) => doc.entity_calls.swap_remove(i),
        None => EntityCall {
            fetch: node.id,
            call: None,
            reps: Distinct::default(),
            hints: vec![0; node.requires.len()],
        },
    };
    let mut targets = Vec::with_capacity(parents.len());
    let typename: &'h str = alloc.alloc_str(remote_type);
    let in_place = plain_inputs(&node.requires);
    let reps = &mut call.reps;
    for &(place, parent) in parents {
        let i = if in_place {
            // Most parents repeat a representation: compared in place, one
            // is built only when it is new.
            let inputs = &node.requires;
            let hints = &mut call.hints;
            let mut h = reps.hasher.build_hasher();
            if !hash_projection(parent, inputs, hints, &mut h) {
                continue;
            }
            let hash = h.finish();
            let found = reps.find(hash, |r| {
                r.as_object()
                    .is_some_and(|r| same_projection(parent, inputs, hints, r))
            });
            found.unwrap_or_else(|| {
                let mut repr = project(parent, inputs, false, alloc).unwrap_or_default();
                repr.insert("__typename", Value::String(typename), alloc);
                reps.add(hash, Value::Object(repr))
            })
        } else {
            let Some(mut repr) = project(parent, &node.requires, false, alloc) else {
                continue;
            };
            repr.insert("__typename", Value::String(typename), alloc);
            reps.index(Value::Object(repr))
        };
        targets.push(Target {
            parent: place as u32,
            key: KeyRef::One(i as u32),
            write: None,
        });
    }
    if reps.values.is_empty() {
        return;
    }
    doc.client_variables(node);
    match call.call {
        Some(n) => doc.calls[n].targets.append(&mut targets),
        None => {
            call.call = Some(doc.calls.len());
            doc.calls.push(CallOut {
                alias: Some(doc.next_alias()),
                descend: Vec::new(),
                targets,
                optional: Vec::new(),
            });
        }
    }
    doc.entity_calls.push(call);
}

/// Whether two entity fetches of one request ask the same of the same
/// type from the same inputs: then one `_entities` call, with each
/// representation once, answers both.
fn asks_the_same(a: &FetchNode, b: &FetchNode) -> bool {
    matches!(
        (&a.kind, &b.kind),
        (FetchKind::Entity { remote_type: x, .. }, FetchKind::Entity { remote_type: y, .. }) if x == y
    ) && a.rendered == b.rendered
        && a.requires == b.requires
}

/// Writes each shared `_entities` call with its representations.
fn finish_entities(doc: &mut Doc<'_, '_, '_>) {
    let mut ready = std::mem::take(&mut doc.entity_calls);
    ready.sort_by_key(|e| e.call);
    let req = doc.req;
    for e in ready {
        let node = &req.plan.fetches[e.fetch];
        let (Some(n), FetchKind::Entity { remote_type, .. }) = (e.call, &node.kind) else {
            continue;
        };
        let var = format!("r{n}");
        doc.declare(&var, "[_Any!]!", e.reps.values.as_slice());
        let _ = write!(
            doc.body,
            " {CALL_PREFIX}{n}: _entities(representations: ${var}) {{ ... on {remote_type} {} }}",
            node.rendered
        );
    }
}

/// Each segment's arguments for one parent; `None` when a `$fields:` key
/// is null (the field is then null, or `[]`, without a call).
fn call_arguments(
    call: &Call,
    node: &FetchNode,
    cx: &ArgContext<'_, '_>,
) -> Option<Vec<Vec<(String, JsonValue)>>> {
    let mut seg_args = Vec::with_capacity(call.path.len());
    for (si, seg) in call.path.iter().enumerate() {
        let mut args = Vec::new();
        match &seg.arguments {
            // No parentheses on the last segment: the client's arguments pass through.
            None if si + 1 == call.path.len() => {
                if let FetchKind::Field { arguments, .. } = &node.kind {
                    for a in arguments {
                        if let Some(v) = ast_to_json(&a.value, cx.variables) {
                            args.push((a.name.to_string(), v));
                        }
                    }
                }
            }
            None => {}
            Some(list) => {
                for (name, pv) in list {
                    match resolve(pv, cx) {
                        Resolved::Value(v) => args.push((name.clone(), v)),
                        Resolved::Absent => {}
                        Resolved::NullKey => return None,
                    }
                }
            }
        }
        seg_args.push(args);
    }
    Some(seg_args)
}

/// What makes two calls identical: the call, its selection, its arguments
/// (and the entity, where fields take per-entity arguments).
fn call_signature(
    call: &Arc<Call>,
    node: &FetchNode,
    seg_args: &[Vec<(String, JsonValue)>],
    per_entity: Option<&Map<'_>>,
) -> String {
    let mut signature = format!("{:p}|{}", Arc::as_ptr(call), node.rendered);
    for args in seg_args {
        signature.push('|');
        for (k, v) in args {
            let _ = write!(signature, "{k}={v};");
        }
    }
    if let Some(repr) = per_entity {
        let _ = write!(signature, "|{repr}");
    }
    signature
}

/// Calls along a path: stitched fields (`merge == false`) and lookups of
/// entities (`merge == true`), batched or one per distinct input.
fn calls<'h>(
    doc: &mut Doc<'_, '_, 'h>,
    node: &FetchNode,
    call: &Arc<Call>,
    parents: &[(usize, &Map<'h>)],
    merge: bool,
) {
    let variables: &JsonMap = doc.req.variables;
    let empty = Map::new();
    let per_entity = node.selection.has_required_arguments();
    let write = match &node.kind {
        FetchKind::Field { response_key, .. } if !merge => Some(doc.name(response_key)),
        _ => None,
    };
    if call.batch {
        batch_keys(doc, node, call, parents, write);
        return;
    }
    for &(place, parent) in parents {
        let Some(repr) = project(parent, &node.requires, true, doc.alloc) else {
            continue;
        };
        let cx = ArgContext {
            repr: if node.requires.is_empty() {
                &empty
            } else {
                &repr
            },
            node,
            variables,
        };
        let target = Target {
            parent: place as u32,
            key: KeyRef::Whole,
            write,
        };
        let Some(seg_args) = call_arguments(call, node, &cx) else {
            if !merge {
                doc.empties.push((node.id, place));
            }
            continue;
        };
        let signature = call_signature(call, node, &seg_args, per_entity.then_some(&repr));
        // Not mutations: two identical mutation fields are two effects.
        let dedupe = call.operation != OperationType::Mutation;
        if let Some(i) = doc.signatures.get(&signature).filter(|_| dedupe) {
            doc.calls[*i].targets.push(target);
            continue;
        }
        doc.client_variables(node);
        let n = doc.calls.len();
        let alias = doc.next_alias();
        let vars = doc.call_variables(call, n, seg_args);
        let selection = if per_entity {
            render_per_entity(doc, node, n, &repr)
        } else {
            node.rendered.clone()
        };
        doc.write_call(&alias, &call.path, &vars, &selection);
        if dedupe {
            doc.signatures.insert(signature, n);
        }
        doc.calls.push(CallOut {
            alias: Some(alias),
            descend: descend_names(call),
            targets: vec![target],
            optional: Vec::new(),
        });
    }
}

fn descend_names(call: &Call) -> Vec<Name> {
    call.path[1..]
        .iter()
        .filter_map(|s| Name::new(&s.name).ok())
        .collect()
}

/// Renders a selection whose fields take per-entity arguments (Composite
/// `@require`), each in its own variable.
fn render_per_entity(
    doc: &mut Doc<'_, '_, '_>,
    node: &FetchNode,
    n: usize,
    repr: &Map<'_>,
) -> String {
    let mut renderer = Renderer {
        subgraph: &doc.req.supergraph.subgraphs[node.subgraph],
        operation: doc.req.operation,
        variables: Vec::new(),
    };
    let mut values: Vec<(String, JsonValue)> = Vec::new();
    let cx = ArgContext {
        repr,
        node,
        variables: doc.req.variables,
    };
    let mut out = String::new();
    renderer.set(
        &node.selection,
        &mut |name, pv| {
            let var = format!("q{n}_{name}");
            let value = match resolve(pv, &cx) {
                Resolved::Value(v) => v,
                _ => JsonValue::Null,
            };
            values.push((var.clone(), value));
            var
        },
        &mut out,
    );
    let types = required_argument_types(doc, node);
    for (var, value) in values {
        let name = var.split_once('_').map(|(_, n)| n).unwrap_or("");
        let ty = types
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| "String".into());
        doc.declare(&var, &ty, &value);
    }
    out
}

/// The subgraph's types of the per-entity arguments of a fetch's fields.
fn required_argument_types(doc: &Doc<'_, '_, '_>, node: &FetchNode) -> Vec<(String, String)> {
    let sg = &doc.req.supergraph.subgraphs[node.subgraph];
    let FetchKind::Entity { remote_type, .. } = &node.kind else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in &node.selection.items {
        if let crate::plan::selection::Selection::Field(f) = item {
            if let Ok(def) = sg.schema.type_field(remote_type, &f.name) {
                for a in &def.arguments {
                    out.push((a.name.to_string(), a.ty.to_string()));
                }
            }
        }
    }
    out
}

/// Adds each parent's key to the wave's batched call for this call,
/// selection and arguments (one call, whatever the fetch). A null key
/// writes the field as null (or `[]`) without a call. Keys are read from
/// the parents in place: no projection per parent.
fn batch_keys<'h>(
    doc: &mut Doc<'_, '_, 'h>,
    node: &FetchNode,
    call: &Arc<Call>,
    parents: &[(usize, &Map<'h>)],
    write: Option<u32>,
) {
    let alloc = doc.alloc;
    let mut reader = KeyReader::new(&node.requires, call.batch_key());
    let mut keyed: Vec<(usize, Value<'h>)> = Vec::with_capacity(parents.len());
    for (i, &(place, parent)) in parents.iter().enumerate() {
        // The entries only: a key reads one or two of them, and asking for
        // what every entry points at cost more than the misses it saved.
        if let Some((_, ahead)) = parents.get(i + 2) {
            ahead.prefetch();
        }
        if !reader.complete(parent) {
            continue;
        }
        match reader.key(parent, alloc) {
            None | Some(Value::Null) => {
                if write.is_some() {
                    doc.empties.push((node.id, place));
                }
            }
            Some(key) => keyed.push((place, key)),
        }
    }
    // No key at all: no call (not one with an empty list).
    if keyed.is_empty() {
        return;
    }
    let mut signature = format!("{:p}|{}", Arc::as_ptr(call), node.rendered);
    if let FetchKind::Field { arguments, .. } = &node.kind {
        for a in arguments {
            let _ = write!(signature, "|{}={}", a.name, a.value);
        }
    }
    let batch = doc.batches.entry(signature).or_insert_with(|| {
        let n = doc.calls.len();
        doc.calls.push(CallOut {
            alias: Some(format!("{CALL_PREFIX}{n}")),
            descend: descend_names(call),
            targets: Vec::new(),
            optional: Vec::new(),
        });
        Batch {
            call: n,
            fetch: node.id,
            keys: Vec::new(),
            index: HashMap::default(),
        }
    });
    let targets = &mut doc.calls[batch.call].targets;
    let lists = &mut doc.lists;
    // Sized once for this fetch's keys (most are distinct).
    targets.reserve(keyed.len());
    batch.keys.reserve(keyed.len());
    batch.index.reserve(keyed.len());
    // One hash and one probe per key: most keys are new, and a lookup
    // followed by an insert hashed and probed each of them twice.
    let mut intern = |k: &Value<'h>| -> u32 {
        match batch.index.entry(key_text(k)) {
            Entry::Occupied(at) => *at.get() as u32,
            Entry::Vacant(slot) => {
                batch.keys.push(k.clone_in(alloc));
                *slot.insert(batch.keys.len() - 1) as u32
            }
        }
    };
    // Read in place: moving each key out of `keyed` copied it through the
    // stack, with loads that stalled on the copy's stores (perf annotate).
    for (place, key) in &keyed {
        let key = match key {
            Value::Array(items) => {
                let start = lists.len() as u32;
                lists.extend(
                    items
                        .iter()
                        .map(|k| if k.is_null() { NO_ITEM } else { intern(k) }),
                );
                KeyRef::Many {
                    start,
                    len: items.len() as u32,
                }
            }
            k => KeyRef::One(intern(k)),
        };
        targets.push(Target {
            parent: *place as u32,
            key,
            write,
        });
    }
}

/// Reads a fetch's batch key from each of its parents in place, as
/// `project`'s projection of the parent would hold it. The input
/// the key path starts at is found once per fetch, and each input's place
/// in a parent is tried where it was in the previous parent: the parents
/// of a fetch come from one list and share their layout.
struct KeyReader<'p> {
    inputs: &'p [InputField],
    /// The input the key path starts at, and the rest of the path.
    first: Option<(usize, &'p [String])>,
    /// Per input, where it was in the previous parent.
    hints: Vec<usize>,
}

impl<'p> KeyReader<'p> {
    fn new(inputs: &'p [InputField], path: Option<&'p [String]>) -> Self {
        let first = path.and_then(|p| {
            let (first, rest) = p.split_first()?;
            let at = inputs.iter().rposition(|i| i.name == first.as_str())?;
            Some((at, rest))
        });
        KeyReader {
            inputs,
            first,
            hints: vec![0; inputs.len()],
        }
    }

    /// Whether a parent holds every value the fetch reads (null counts):
    /// what `project` checks, without building the projection.
    fn complete(&mut self, parent: &Map<'_>) -> bool {
        self.inputs
            .iter()
            .zip(&mut self.hints)
            .all(|(i, hint)| input_complete(i, parent.get_hinted(i.key.as_str(), hint)))
    }

    /// `field_value` of the parent's projection at the key path.
    fn key<'h>(&mut self, parent: &Map<'h>, alloc: &Alloc<'h>) -> Option<Value<'h>> {
        let (at, rest) = self.first?;
        let input = &self.inputs[at];
        let v = parent.get_hinted(input.key.as_str(), &mut self.hints[at])?;
        Some(walk_input(v, &input.selection, rest, alloc))
    }
}

/// Whether the value under an input's key holds all the input reads.
fn input_complete(input: &InputField, v: Option<&Value<'_>>) -> bool {
    v.is_some_and(|v| input.selection.is_empty() || complete_value(v, &input.selection))
}

fn complete_value(v: &Value<'_>, inputs: &[InputField]) -> bool {
    match v {
        Value::Object(m) => inputs
            .iter()
            .all(|i| input_complete(i, m.get(i.key.as_str()))),
        Value::Array(items) => items.iter().all(|i| complete_value(i, inputs)),
        Value::Null => true,
        _ => false,
    }
}

/// The value at `path` under `v`, read as its projection by `inputs`
/// would hold it (inputs by name, values under their keys).
fn walk_input<'h>(
    v: &Value<'h>,
    inputs: &[InputField],
    path: &[String],
    alloc: &Alloc<'h>,
) -> Value<'h> {
    let Some((first, rest)) = path.split_first() else {
        // A key that is an object is its projection (inputs by name).
        return if inputs.is_empty() {
            v.clone_in(alloc)
        } else {
            project_value(v, inputs, true, alloc).unwrap_or(Value::Null)
        };
    };
    match v {
        // A leaf input (a custom scalar) is taken whole, as it is.
        Value::Object(m) if inputs.is_empty() => m
            .get(first.as_str())
            .map(|x| walk_input(x, &[], rest, alloc))
            .unwrap_or(Value::Null),
        Value::Object(m) => inputs
            .iter()
            .rfind(|i| i.name == first.as_str())
            .and_then(|i| Some((m.get(i.key.as_str())?, i)))
            .map(|(x, i)| walk_input(x, &i.selection, rest, alloc))
            .unwrap_or(Value::Null),
        Value::Array(items) => Value::list(
            alloc,
            items.iter().map(|i| walk_input(i, inputs, path, alloc)),
        ),
        _ => Value::Null,
    }
}

/// Writes the batched calls once every fetch of the wave added its keys.
fn finish_batches(doc: &mut Doc<'_, '_, '_>) {
    let mut ready: Vec<Batch> = doc.batches.drain().map(|(_, b)| b).collect();
    ready.sort_by_key(|b| b.call);
    let variables: &JsonMap = doc.req.variables;
    let empty = Map::new();
    for b in ready {
        let node = &doc.req.plan.fetches[b.fetch];
        let call = match &node.kind {
            FetchKind::Field { call, .. } => call.clone(),
            FetchKind::Entity { resolver, .. } => match &resolver.kind {
                ResolverKind::Call(call) => call.clone(),
                ResolverKind::Entities => continue,
            },
            FetchKind::Root { .. } => continue,
        };
        doc.client_variables(node);
        let cx = ArgContext {
            repr: &empty,
            node,
            variables,
        };
        let last = call.path.len() - 1;
        let mut seg_args = Vec::with_capacity(call.path.len());
        for (si, seg) in call.path.iter().enumerate() {
            let mut args = Vec::new();
            for (name, pv) in seg.arguments.iter().flatten() {
                let v = if si == last && matches!(pv, PathValue::Field(_)) {
                    // List keys were interned item by item: the list is flat.
                    ArgValue::Keys(&b.keys)
                } else {
                    match resolve(pv, &cx) {
                        Resolved::Value(v) => ArgValue::Json(v),
                        _ => continue,
                    }
                };
                args.push((name.clone(), v));
            }
            seg_args.push(args);
        }
        // The keys' JSON, sized up front: hundreds of keys would grow the
        // buffer a dozen times, copying it each time. The selection's size
        // is the most of the document that the body adds after them.
        let keys: usize = b.keys.iter().map(key_json_len).sum();
        doc.variables.reserve(keys + node.rendered.len() + 256);
        let vars = doc.call_variables(&call, b.call, seg_args);
        let alias = format!("{CALL_PREFIX}{}", b.call);
        let selection = node.rendered.clone();
        doc.write_call(&alias, &call.path, &vars, &selection);
    }
}

/// About how long a key is as a JSON list item (exact for a plain string).
fn key_json_len(key: &Value<'_>) -> usize {
    match key {
        Value::String(s) => s.len() + 3,
        _ => 24,
    }
}

/// A batched call's argument: JSON made for it, or the keys read from the
/// data, written out as they are.
enum ArgValue<'k, 'h> {
    Json(JsonValue),
    Keys(&'k [Value<'h>]),
}

impl WriteJson for ArgValue<'_, '_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            ArgValue::Json(v) => v.write_json(out),
            ArgValue::Keys(keys) => keys.write_json(out),
        }
    }
}

/// Representations and batch keys, written straight from the data.
impl WriteJson for [Value<'_>] {
    fn write_json(&self, out: &mut Vec<u8>) {
        Value::list_json(self, out);
    }
}

/// Variable batching: one document for a lookup, one variable set per
/// distinct input (the key, and per-entity arguments).
fn variable_sets<'h>(
    doc: &mut Doc<'_, '_, 'h>,
    node: &FetchNode,
    call: &Arc<Call>,
    parents: &[(usize, &Map<'h>)],
) {
    let (query, client) = lookup_document(doc, node, call);
    // Fetches of the wave whose lookup is the same document share it, and
    // each distinct set of variables goes out once.
    let b = match doc.vsets.iter().position(|v| v.query == query) {
        Some(b) => b,
        None => {
            doc.vsets.push(VariableBatch {
                query,
                client,
                sets: Vec::new(),
                aliases: Vec::new(),
                call_of: Vec::new(),
                index: HashMap::default(),
            });
            doc.vsets.len() - 1
        }
    };
    for &(place, parent) in parents {
        let Some(mut set) = variable_set(doc, node, call, parent) else {
            continue;
        };
        let text = JsonValue::Object(set.clone()).to_string();
        let batch = &mut doc.vsets[b];
        let n = match batch.index.get(&text) {
            Some(&i) => batch.call_of[i],
            None => {
                let n = doc.calls.len();
                let alias = format!("{CALL_PREFIX}{n}");
                doc.calls.push(CallOut {
                    alias: Some(alias.clone()),
                    descend: descend_names(call),
                    targets: Vec::new(),
                    optional: Vec::new(),
                });
                // Client variables the selection uses go into every set.
                for name in &batch.client {
                    if let Some(v) = doc.req.variables.get(name.as_str()) {
                        set.insert(
                            format!("{CLIENT_VARIABLE_PREFIX}{name}").as_str(),
                            v.clone(),
                        );
                    }
                }
                batch.index.insert(text, batch.sets.len());
                batch.sets.push(JsonValue::Object(set));
                batch.aliases.push(alias);
                batch.call_of.push(n);
                n
            }
        };
        doc.calls[n].targets.push(Target {
            parent: place as u32,
            key: KeyRef::Whole,
            write: None,
        });
    }
    if doc.vsets[b].sets.is_empty() {
        doc.vsets.remove(b);
    }
}

/// One parent's variables: the lookup's arguments (`a<segment>_<name>`) and
/// per-entity arguments of the selection (`q_<name>`); `None` for a null key.
fn variable_set<'h>(
    doc: &Doc<'_, '_, 'h>,
    node: &FetchNode,
    call: &Call,
    parent: &Map<'h>,
) -> Option<JsonMap> {
    let repr = project(parent, &node.requires, true, doc.alloc)?;
    let cx = ArgContext {
        repr: &repr,
        node,
        variables: doc.req.variables,
    };
    let mut set = JsonMap::new();
    for (si, seg) in call.path.iter().enumerate() {
        for (name, pv) in seg.arguments.iter().flatten() {
            match resolve(pv, &cx) {
                Resolved::Value(v) => {
                    set.insert(format!("a{si}_{name}").as_str(), v);
                }
                Resolved::Absent => {}
                Resolved::NullKey => return None,
            }
        }
    }
    let mut render = Renderer {
        subgraph: &doc.req.supergraph.subgraphs[node.subgraph],
        operation: doc.req.operation,
        variables: Vec::new(),
    };
    let mut unused = String::new();
    render.set(
        &node.selection,
        &mut |name, pv| {
            if let Resolved::Value(v) = resolve(pv, &cx) {
                set.insert(format!("q_{name}").as_str(), v);
            }
            format!("q_{name}")
        },
        &mut unused,
    );
    Some(set)
}

/// The lookup's document, `{ _b: lookup(...) { <selection> } }`, with its
/// variables typed as the subgraph declares them, and the client variables
/// it uses.
fn lookup_document(doc: &Doc<'_, '_, '_>, node: &FetchNode, call: &Call) -> (String, Vec<Name>) {
    let mut render = Renderer {
        subgraph: &doc.req.supergraph.subgraphs[node.subgraph],
        operation: doc.req.operation,
        variables: Vec::new(),
    };
    let mut selection = String::new();
    render.set(
        &node.selection,
        &mut |name, _| format!("q_{name}"),
        &mut selection,
    );
    let mut decls = String::new();
    for (si, seg) in call.path.iter().enumerate() {
        for (name, _) in seg.arguments.iter().flatten() {
            let ty = call
                .argument_types
                .get(si)
                .and_then(|m| m.get(name))
                .map(|s| s.as_str())
                .unwrap_or("String");
            let _ = write!(decls, "$a{si}_{name}: {ty}, ");
        }
    }
    for (name, ty) in required_argument_types(doc, node) {
        if selection.contains(&format!("$q_{name}")) {
            let _ = write!(decls, "$q_{name}: {ty}, ");
        }
    }
    for (name, ty) in &render.variables {
        let _ = write!(decls, "${CLIENT_VARIABLE_PREFIX}{name}: {ty}, ");
    }
    let mut query = String::from("query");
    if !decls.is_empty() {
        query.push('(');
        query.push_str(decls.trim_end_matches([',', ' ']));
        query.push(')');
    }
    query.push_str(" { _b: ");
    for (si, seg) in call.path.iter().enumerate() {
        query.push_str(&seg.name);
        if let Some(args) = seg.arguments.as_ref().filter(|a| !a.is_empty()) {
            query.push('(');
            for (i, (name, _)) in args.iter().enumerate() {
                if i > 0 {
                    query.push_str(", ");
                }
                let _ = write!(query, "{name}: $a{si}_{name}");
            }
            query.push(')');
        }
        query.push_str(if si + 1 < call.path.len() { " { " } else { " " });
    }
    query.push_str(&selection);
    for _ in 1..call.path.len() {
        query.push_str(" }");
    }
    query.push_str(" }");
    (
        query,
        render.variables.into_iter().map(|(n, _)| n).collect(),
    )
}

/// The answer as one `{data, errors}`: a plain body as it is; JSON lines of
/// a batched request gathered under each variable set's call alias.
pub(crate) fn parse_answer<'h>(
    built: &Built,
    text: &'h str,
    alloc: &Alloc<'h>,
) -> Result<Value<'h>, FetchError> {
    if built.unbatch.is_empty() {
        return Value::parse(text, alloc, built.room)
            .map_err(|e| FetchError::Malformed(e.to_string()));
    }
    let mut data = Map::new();
    let mut errors: Vec<Value<'h>> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Value::Object(mut m) = Value::parse(line, alloc, built.room)
            .map_err(|e| FetchError::Malformed(format!("a JSON line: {e}")))?
        else {
            return Err(FetchError::Malformed(
                "a JSON line that is not an object".into(),
            ));
        };
        let request = m.get("requestIndex").and_then(|v| v.as_u64()).unwrap_or(0) as usize;
        let variable = m.get("variableIndex").and_then(|v| v.as_u64());
        let Some(plan) = built.unbatch.get(request) else {
            continue;
        };
        let line_data = m.take("data");
        let line_errors: &mut [Value<'h>] = match m.take("errors") {
            Some(Value::Array(list)) => list,
            _ => Default::default(),
        };
        match plan {
            None => {
                if let Some(Value::Object(d)) = line_data {
                    data.extend(d, alloc);
                }
                errors.extend(line_errors.iter_mut().map(std::mem::take));
            }
            Some(aliases) => {
                // A line without `variableIndex` answers every set.
                let targets: Vec<&String> = match variable {
                    Some(i) => aliases.get(i as usize).into_iter().collect(),
                    None => aliases.iter().collect(),
                };
                for alias in targets {
                    let value = line_data
                        .as_ref()
                        .and_then(|d| d.as_object()?.get("_b"))
                        .map_or(Value::Null, |v| v.clone_in(alloc));
                    let alias: &'h str = alloc.alloc_str(alias);
                    data.insert(alias, value, alloc);
                    for e in line_errors.iter() {
                        let mut e = e.clone_in(alloc);
                        if let Some(Value::Array(p)) =
                            e.as_object_mut().and_then(|o| o.get_mut("path"))
                        {
                            if p.first().and_then(|v| v.as_str()) == Some("_b") {
                                p[0] = Value::String(alias);
                            }
                        }
                        errors.push(e);
                    }
                }
            }
        }
    }
    let mut out = Map::new();
    out.insert("data", Value::Object(data), alloc);
    if !errors.is_empty() {
        out.insert("errors", Value::list(alloc, errors), alloc);
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use apollo_compiler::response::serde_json_bytes::json;

    use crate::execute::tree::Arena;

    fn tree<'h>(v: JsonValue, alloc: &Alloc<'h>) -> Value<'h> {
        Value::from_json(&v, alloc)
    }

    fn input(key: &str, name: &str, selection: Vec<InputField>) -> InputField {
        InputField {
            key: Name::new(key).unwrap(),
            name: Name::new(name).unwrap(),
            selection,
        }
    }

    /// Representations are deduplicated in place: two parents share one
    /// exactly when their projections are equal, and a parent whose
    /// projection fails (a missing or null input) has none.
    #[test]
    fn representations_compared_in_place_match_their_projections() {
        let inputs = vec![
            input("_k_upc", "upc", vec![]),
            input("dims", "dims", vec![input("_k_w", "weight", vec![])]),
        ];
        assert!(plain_inputs(&inputs));
        assert!(!plain_inputs(&[
            input("a", "x", vec![]),
            input("b", "x", vec![])
        ]));
        let arena = Arena::new();
        let alloc = &arena.get();
        let parents = [
            tree(
                json!({"_k_upc": "1", "dims": {"_k_w": 2}, "name": "a"}),
                alloc,
            ),
            tree(
                json!({"name": "b", "dims": {"_k_w": 2, "other": 0}, "_k_upc": "1"}),
                alloc,
            ),
            tree(json!({"_k_upc": "1", "dims": {"_k_w": 3}}), alloc),
            tree(json!({"_k_upc": "1", "dims": [{"_k_w": 2}]}), alloc),
            tree(json!({"_k_upc": 1, "dims": {"_k_w": 2}}), alloc),
            tree(json!({"_k_upc": 1.0, "dims": {"_k_w": 2}}), alloc),
            tree(json!({"_k_upc": -1, "dims": {"_k_w": 2}}), alloc),
            tree(json!({"dims": {"_k_w": -1}, "_k_upc": -1}), alloc),
            tree(json!({"_k_upc": null, "dims": {"_k_w": 2}}), alloc),
            tree(json!({"_k_upc": "1", "dims": null}), alloc),
            tree(json!({"_k_upc": "1"}), alloc),
        ];
        let hasher = ahash::RandomState::new();
        // Shared across parents of different shapes, as a fetch shares them.
        let mut hints = [0; 2];
        let views: Vec<Option<(u64, &Map)>> = parents
            .iter()
            .map(|p| {
                let p = p.as_object().unwrap();
                let mut h = hasher.build_hasher();
                let complete = hash_projection(p, &inputs, &mut hints, &mut h);
                assert_eq!(
                    complete,
                    project(p, &inputs, false, alloc).is_some(),
                    "{p:?}"
                );
                complete.then(|| (h.finish(), p))
            })
            .collect();
        for (a, va) in views.iter().enumerate() {
            for (b, vb) in views.iter().enumerate() {
                let (Some((ha, pa)), Some((hb, pb))) = (va, vb) else {
                    continue;
                };
                let equal =
                    project(pa, &inputs, false, alloc) == project(pb, &inputs, false, alloc);
                let repr = project(pb, &inputs, false, alloc).unwrap();
                assert_eq!(
                    same_projection(pa, &inputs, &mut hints, &repr),
                    equal,
                    "{a} vs {b}"
                );
                if equal {
                    assert_eq!(ha, hb, "{a} vs {b}");
                }
            }
        }
    }

    /// The batch path reads keys from parents in place; it must read what
    /// the projection would have held, aliases, lists and nulls included.
    #[test]
    fn batch_keys_read_in_place_match_the_projection() {
        let inputs = vec![
            input("_k_id", "id", vec![]),
            input(
                "owner",
                "owner",
                vec![
                    input("_k_ids", "ids", vec![]),
                    input("meta", "meta", vec![]),
                ],
            ),
        ];
        let arena = Arena::new();
        let a = &arena.get();
        let parents = [
            tree(
                json!({"_k_id": "a", "owner": {"_k_ids": ["x", null], "meta": {"m": 1}}}),
                a,
            ),
            tree(
                json!({"_k_id": null, "owner": [{"_k_ids": "y", "meta": null}, null]}),
                a,
            ),
            tree(json!({"_k_id": "b", "owner": null}), a),
            tree(json!({"_k_id": "c"}), a),
            tree(json!({"_k_id": "d", "owner": {"_k_ids": "z"}}), a),
            tree(json!({"_k_id": "e", "owner": 3}), a),
            tree(
                json!({"owner": {"meta": {"m": 2}, "_k_ids": "w"}, "_k_id": "f"}),
                a,
            ),
        ];
        let paths: [&[&str]; 5] = [
            &["id"],
            &["owner", "ids"],
            &["owner", "meta", "m"],
            &["owner"],
            &["missing"],
        ];
        for path in paths {
            let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
            // One reader over all the parents, as for a fetch: the places
            // it remembers from one parent must not mislead it in the next.
            let mut reader = KeyReader::new(&inputs, Some(&path));
            for parent in &parents {
                let parent = parent.as_object().unwrap();
                let projected = project(parent, &inputs, true, a);
                assert_eq!(reader.complete(parent), projected.is_some(), "{parent:?}");
                let Some(repr) = projected else { continue };
                assert_eq!(
                    reader.key(parent, a).map(|v| v.to_json()),
                    field_value(&repr, &path),
                    "{parent:?} at {path:?}"
                );
            }
        }
    }
}
