//! The merged data -> the client's response: only the fields the client
//! selected, in its order, under its aliases (so `$fields:` helpers vanish),
//! `__typename` answered, `@skip`/`@include` applied, and nulls propagated
//! as the specification says.

use ahash::HashMap;
use apollo_compiler::{
    ast::Type,
    executable::{Field, FragmentSpread, InlineFragment, Selection, SelectionSet},
    response::{GraphQLError, JsonMap, JsonValue},
    schema::ExtendedType,
    Name, Node,
};
use indexmap::IndexMap;
use smallvec::SmallVec;
use std::{
    cell::{Cell, OnceCell},
    rc::Rc,
};

use super::{
    error,
    tree::{prefetch_ahead, Map, Value},
    value::{to_error_path, PathSeg},
    Request,
};
use crate::plan::TYPENAME_ALIAS;

/// Appends the client's `data` as JSON to `out`: the response is written
/// straight from the merged data, with no intermediate tree; a propagated
/// null truncates what its object had written so far.
pub fn shape(req: &Request<'_>, data: &Value, errors: &mut Vec<GraphQLError>, out: &mut Vec<u8>) {
    let mut s = Shaper {
        req,
        errors,
        memo: HashMap::default(),
        scratch: IndexMap::new(),
    };
    let empty = Map::new();
    let obj = data.as_object().unwrap_or(&empty);
    let root = &req.operation.selection_set;
    let start = out.len();
    if s.selection(&[root], root.ty.as_str(), obj, &mut Vec::new(), out)
        .is_err()
    {
        out.truncate(start);
        out.extend_from_slice(b"null");
    }
}

/// The fields of a selection set for one runtime type, grouped by response key.
type Collected<'a> = Rc<Collection<'a>>;

/// A collected selection. Its allocations are few and fixed (a request
/// collects each of its selection sets once, and a collection per key made
/// a good part of the allocations of a whole execution).
struct Collection<'a> {
    groups: Vec<Grouped<'a>>,
    /// Every key's `{"key":` (the first) or `,"key":`, one after another
    /// (see `Grouped::prefix`), then `PREFIX_READ` zeros.
    prefixes: Vec<u8>,
}

/// Bytes read for each prefix: with the zeros that end
/// `Collection::prefixes`, a prefix this short or shorter is written as
/// one fixed-size copy and a truncation, inline. `extend_from_slice` of a
/// length known only at run time called `memcpy`, once per value written.
const PREFIX_READ: usize = 32;

impl Collection<'_> {
    #[inline(always)]
    fn put_prefix(&self, (start, end): (u32, u32), out: &mut Vec<u8>) {
        let (start, end) = (start as usize, end as usize);
        let chunk = self.prefixes.get(start..start + PREFIX_READ);
        match chunk.and_then(|c| <&[u8; PREFIX_READ]>::try_from(c).ok()) {
            Some(chunk) if end - start <= PREFIX_READ => {
                let mark = out.len();
                out.extend_from_slice(chunk);
                out.truncate(mark + (end - start));
            }
            _ => out.extend_from_slice(self.prefixes.get(start..end).unwrap_or_default()),
        }
    }
}

/// One response key of a collected selection, with its field's named type
/// looked up once per collection rather than once per value.
struct Grouped<'a> {
    key: &'a Name,
    /// Where `"key":`, written before each value, is in
    /// `Collection::prefixes`.
    prefix: (u32, u32),
    kind: Kind,
    /// A built-in scalar, not in a list: most values, written without a
    /// call of their own when they fit.
    scalar: bool,
    /// The first of `fields`, which decides the value's type: read for
    /// every value written, so kept apart from the `SmallVec`.
    field: &'a Node<Field>,
    /// Most keys are one field.
    fields: SmallVec<[&'a Node<Field>; 1]>,
    named: Option<&'a ExtendedType>,
    /// Where this key was in the last object read: objects of one shape
    /// hold their keys in the same places.
    hint: Cell<usize>,
    /// The collected selection of this field's objects, when their type is
    /// an object type (one runtime type): looked up once, not per object.
    objects: OnceCell<Collected<'a>>,
}

/// The position a value is written at: its type, the response key it is
/// under, and the type whose field that is.
struct At<'s, 'a> {
    ty: &'s Type,
    grouped: &'s Grouped<'a>,
    parent_type: &'s str,
}

/// What a response key holds, worked out once per collection: the shaper
/// asks for every value it writes.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Typename,
    /// `__schema` or `__type`, already shaped by the introspection executor.
    Introspection,
    /// A leaf of a built-in scalar, whose values are checked.
    Scalar(Scalar),
    /// An object, an abstract type, an enum or a custom scalar.
    Other,
}

#[derive(Clone, Copy, PartialEq)]
enum Scalar {
    String,
    Boolean,
    Int,
    Float,
    Id,
}

impl Kind {
    fn of(field: &Field) -> Kind {
        match field.name.as_str() {
            "__typename" => return Kind::Typename,
            "__schema" | "__type" => return Kind::Introspection,
            _ => {}
        }
        match field.definition.ty.inner_named_type().as_str() {
            "String" => Kind::Scalar(Scalar::String),
            "Boolean" => Kind::Scalar(Scalar::Boolean),
            "Int" => Kind::Scalar(Scalar::Int),
            "Float" => Kind::Scalar(Scalar::Float),
            "ID" => Kind::Scalar(Scalar::Id),
            _ => Kind::Other,
        }
    }
}

struct Shaper<'r, 'a, 'e> {
    req: &'r Request<'a>,
    errors: &'e mut Vec<GraphQLError>,
    /// CollectFields per (selection set, runtime type): a list of N objects
    /// collects its item selection once, not N times.
    memo: HashMap<usize, Vec<(String, Collected<'a>)>>,
    /// What `collect` fills, kept between collections.
    scratch: IndexMap<&'a Name, SmallVec<[&'a Node<Field>; 1]>>,
}

fn included(directives: &apollo_compiler::executable::DirectiveList, vars: &JsonMap) -> bool {
    let flag = |name: &str| {
        directives
            .get(name)
            .and_then(|d| d.specified_argument_by_name("if"))
            .map(|v| match v.as_ref() {
                apollo_compiler::ast::Value::Boolean(b) => *b,
                apollo_compiler::ast::Value::Variable(n) => vars
                    .get(n.as_str())
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false),
                _ => false,
            })
    };
    flag("skip") != Some(true) && flag("include") != Some(false)
}

impl<'r, 'a, 'e> Shaper<'r, 'a, 'e> {
    fn applies(&self, condition: &str, runtime: &str) -> bool {
        condition == runtime || self.req.supergraph.schema.is_subtype(condition, runtime)
    }

    /// CollectFields of the specification: a fragment spread a second time
    /// in the same collection adds nothing (`visited`).
    fn collect(
        &self,
        sets: &[&'a SelectionSet],
        runtime: &str,
        visited: &mut Vec<&'a Name>,
        out: &mut IndexMap<&'a Name, SmallVec<[&'a Node<Field>; 1]>>,
    ) {
        let vars: &JsonMap = self.req.variables;
        for set in sets {
            for sel in &set.selections {
                match sel {
                    Selection::Field(f) => {
                        if included(&f.directives, vars) {
                            out.entry(f.response_key()).or_default().push(f);
                        }
                    }
                    Selection::InlineFragment(inline) => {
                        if self
                            .req
                            .authorization
                            .is_some_and(|a| a.fragment_removed::<InlineFragment>(inline))
                        {
                            continue;
                        }
                        if included(&inline.directives, vars)
                            && inline
                                .type_condition
                                .as_ref()
                                .is_none_or(|c| self.applies(c, runtime))
                        {
                            self.collect(&[&inline.selection_set], runtime, visited, out);
                        }
                    }
                    Selection::FragmentSpread(spread) => {
                        if !included(&spread.directives, vars)
                            || self
                                .req
                                .authorization
                                .is_some_and(|a| a.fragment_removed::<FragmentSpread>(spread))
                            || visited.contains(&&spread.fragment_name)
                        {
                            continue;
                        }
                        visited.push(&spread.fragment_name);
                        if let Some(fragment) =
                            self.req.document.fragments.get(&spread.fragment_name)
                        {
                            if self.applies(fragment.type_condition(), runtime) {
                                self.collect(&[&fragment.selection_set], runtime, visited, out);
                            }
                        }
                    }
                }
            }
        }
    }

    fn collected(&mut self, sets: &[&'a SelectionSet], type_name: &str) -> Collected<'a> {
        let key = sets[0] as *const SelectionSet as usize;
        if sets.len() == 1 {
            if let Some(hit) = self
                .memo
                .get(&key)
                .and_then(|v| v.iter().find(|(t, _)| t == type_name))
            {
                return hit.1.clone();
            }
        }
        let mut fields = std::mem::take(&mut self.scratch);
        self.collect(sets, type_name, &mut Vec::new(), &mut fields);
        let types = &self.req.supergraph.schema.types;
        let mut prefixes =
            Vec::with_capacity(fields.keys().map(|k| k.len() + 4).sum::<usize>() + PREFIX_READ);
        let groups = fields
            .drain(..)
            .map(|(key, fields)| {
                let start = prefixes.len() as u32;
                // The object's opening or the comma after the entry before.
                prefixes.push(if start == 0 { b'{' } else { b',' });
                // GraphQL names need no JSON escaping.
                for part in ["\"", key.as_str(), "\":"] {
                    prefixes.extend_from_slice(part.as_bytes());
                }
                Grouped {
                    key,
                    prefix: (start, prefixes.len() as u32),
                    field: fields[0],
                    kind: Kind::of(fields[0]),
                    scalar: matches!(Kind::of(fields[0]), Kind::Scalar(_))
                        && !fields[0].definition.ty.is_list(),
                    named: types.get(fields[0].definition.ty.inner_named_type()),
                    fields,
                    hint: Cell::new(0),
                    objects: OnceCell::new(),
                }
            })
            .collect();
        self.scratch = fields;
        prefixes.extend_from_slice(&[0; PREFIX_READ]);
        let collected: Collected<'a> = Rc::new(Collection { groups, prefixes });
        if sets.len() == 1 {
            self.memo
                .entry(key)
                .or_default()
                .push((type_name.to_owned(), collected.clone()));
        }
        collected
    }

    /// Writes the object for `sets` as JSON into `out`; `Err` when a non-null
    /// field is null (the caller then truncates what was written).
    fn selection(
        &mut self,
        sets: &[&'a SelectionSet],
        type_name: &str,
        obj: &Map,
        path: &mut Vec<PathSeg<&'a Name>>,
        out: &mut Vec<u8>,
    ) -> Result<(), ()> {
        let fields = self.collected(sets, type_name);
        self.fields(&fields, type_name, obj, path, out)
    }

    /// `selection`, its fields collected.
    fn fields(
        &mut self,
        fields: &Collection<'a>,
        type_name: &str,
        obj: &Map,
        path: &mut Vec<PathSeg<&'a Name>>,
        out: &mut Vec<u8>,
    ) -> Result<(), ()> {
        if fields.groups.is_empty() {
            out.push(b'{');
        }
        for grouped in &fields.groups {
            let (key, f) = (grouped.key, grouped.field);
            fields.put_prefix(grouped.prefix, out);
            if grouped.kind == Kind::Typename {
                write_str(out, type_name);
                continue;
            }
            if let Some(a) = self.req.authorization {
                // Out of the caller's reach: null (its error is already
                // there), and a non-null one nulls its parent.
                if grouped.fields.iter().all(|f| a.field_removed(f)) {
                    if f.definition.ty.is_non_null() {
                        return Err(());
                    }
                    out.extend_from_slice(b"null");
                    continue;
                }
            }
            let mut hint = grouped.hint.get();
            let raw = obj.get_hinted(key.as_str(), &mut hint);
            grouped.hint.set(hint);
            if let Some(v) = raw.filter(|v| grouped.scalar && !v.is_null()) {
                if misfit(grouped.kind, None, v).is_none() {
                    v.write_json(out);
                    continue;
                }
            }
            if grouped.kind == Kind::Introspection {
                // Already shaped by the introspection executor.
                raw.unwrap_or(&Value::Null).write_json(out);
                continue;
            }
            path.push(PathSeg::Key(key));
            let v = self.value(&f.definition.ty, grouped, type_name, raw, path, out);
            path.pop();
            v?;
        }
        out.push(b'}');
        Ok(())
    }

    fn null_error(&mut self, path: &[PathSeg<&Name>], parent_type: &str, field: &Name) {
        let p = to_error_path(path);
        // An error at this path, below it, or at a parent that failed
        // (an entity fetch) already says why the value is missing.
        let covered = self.errors.iter().any(|e| {
            let n = e.path.len().min(p.len());
            !e.path.is_empty() && e.path[..n] == p[..n]
        });
        if !covered {
            let mut e = error(
                format!("Cannot return null for non-nullable field {parent_type}.{field}"),
                "NON_NULL_VIOLATION",
            );
            e.path = p;
            self.errors.push(e);
        }
    }

    /// Writes one field value into `out`. A null in a non-null position is
    /// `Err`; a nullable position that receives a propagated null is
    /// truncated back and written as `null`.
    fn value(
        &mut self,
        ty: &Type,
        grouped: &Grouped<'a>,
        parent_type: &str,
        raw: Option<&Value>,
        path: &mut Vec<PathSeg<&'a Name>>,
        out: &mut Vec<u8>,
    ) -> Result<(), ()> {
        let at = At {
            ty,
            grouped,
            parent_type,
        };
        let raw = match raw {
            None | Some(Value::Null) => return self.null(&at, path, out),
            Some(v) => v,
        };
        let mark = out.len();
        let written = match ty {
            Type::List(inner) | Type::NonNullList(inner) => match raw {
                Value::Array(items) => self.list(&at, inner, items, path, out),
                _ => return self.misfit(&at, "a list", path, out),
            },
            Type::Named(name) | Type::NonNullNamed(name) => match grouped.named {
                Some(
                    composite @ (ExtendedType::Object(_)
                    | ExtendedType::Interface(_)
                    | ExtendedType::Union(_)),
                ) => match raw {
                    Value::Object(obj) => self.composite(&at, composite, name, obj, path, out),
                    _ => return self.misfit(&at, "an object", path, out),
                },
                leaf => {
                    if let Some(expected) = misfit(grouped.kind, leaf, raw) {
                        return self.misfit(&at, expected, path, out);
                    }
                    raw.write_json(out);
                    Ok(())
                }
            },
        };
        // A non-null part of it is null: the value is null.
        written.or_else(|()| null_back(out, mark, ty.is_non_null()))
    }

    /// Null where a value of `at` was expected: `null`, or an error if the
    /// position is non-null.
    fn null(
        &mut self,
        at: &At<'_, 'a>,
        path: &mut [PathSeg<&'a Name>],
        out: &mut Vec<u8>,
    ) -> Result<(), ()> {
        if at.ty.is_non_null() {
            self.null_error(path, at.parent_type, &at.grouped.field.name);
            Err(())
        } else {
            out.extend_from_slice(b"null");
            Ok(())
        }
    }

    /// A value that is not `expected`: an error at its path, then null.
    fn misfit(
        &mut self,
        at: &At<'_, 'a>,
        expected: &str,
        path: &mut [PathSeg<&'a Name>],
        out: &mut Vec<u8>,
    ) -> Result<(), ()> {
        self.invalid_value(path, at.parent_type, &at.grouped.field.name, expected);
        self.null(at, path, out)
    }

    /// A list's items; `Err` when a non-null item is null.
    #[inline]
    fn list(
        &mut self,
        at: &At<'_, 'a>,
        inner: &Type,
        items: &[Value],
        path: &mut Vec<PathSeg<&'a Name>>,
        out: &mut Vec<u8>,
    ) -> Result<(), ()> {
        let grouped = at.grouped;
        // Items of one object type (most lists): their fields are
        // written straight, without a call per item to find that out.
        let objects = match (inner, grouped.named, grouped.fields.as_slice()) {
            (
                Type::Named(name) | Type::NonNullNamed(name),
                Some(ExtendedType::Object(_)),
                [one],
            ) => Some((name, one)),
            _ => None,
        };
        out.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            prefetch_ahead(|k| items.get(k).and_then(Value::as_object), i);
            path.push(PathSeg::Index(i));
            let v = match (objects, item) {
                (Some((name, one)), Value::Object(obj)) => {
                    let fields = grouped
                        .objects
                        .get_or_init(|| self.collected(&[&one.selection_set], name));
                    let mark = out.len();
                    let written = self.fields(fields, name, obj, path, out);
                    written.or_else(|()| null_back(out, mark, inner.is_non_null()))
                }
                _ => self.value(inner, grouped, at.parent_type, Some(item), path, out),
            };
            path.pop();
            // A non-null item is null: the whole list is null.
            v?;
        }
        out.push(b']');
        Ok(())
    }

    /// An object, interface or union value: its selection for its runtime
    /// type.
    #[inline]
    fn composite(
        &mut self,
        at: &At<'_, 'a>,
        composite: &ExtendedType,
        name: &Name,
        obj: &Map,
        path: &mut Vec<PathSeg<&'a Name>>,
        out: &mut Vec<u8>,
    ) -> Result<(), ()> {
        // What its fields hold comes in while the first ones are written.
        obj.prefetch_within();
        // `_stitch_t` already holds the public name: merging renamed it by
        // the subgraph that answered.
        let runtime: &str = if !composite.is_object() {
            obj.get(TYPENAME_ALIAS)
                .and_then(|v| v.as_str())
                .unwrap_or(name.as_str())
        } else {
            name.as_str()
        };
        match at.grouped.fields.as_slice() {
            [one] if composite.is_object() => {
                let fields = at
                    .grouped
                    .objects
                    .get_or_init(|| self.collected(&[&one.selection_set], runtime));
                self.fields(fields, runtime, obj, path, out)
            }
            [one] => self.selection(&[&one.selection_set], runtime, obj, path, out),
            fs => {
                let sets: Vec<&SelectionSet> = fs.iter().map(|f| &f.selection_set).collect();
                self.selection(&sets, runtime, obj, path, out)
            }
        }
    }

    /// A subgraph value that does not fit its field's type: an error at its
    /// path, naming the subgraph that serves the field when one alone does.
    fn invalid_value(
        &mut self,
        path: &[PathSeg<&Name>],
        parent_type: &str,
        field: &Name,
        expected: &str,
    ) {
        let mut e = error(
            format!("a subgraph sent a value that is not {expected} for {parent_type}.{field}"),
            "SUBGRAPH_INVALID_VALUE",
        );
        e.path = to_error_path(path);
        let sg = self.req.supergraph;
        let served_by = sg.model.field(parent_type, field).and_then(|f| {
            match (&f.delegation, f.sources.as_slice()) {
                (Some(call), _) => Some(call.subgraph),
                (None, [one]) => Some(one.subgraph),
                _ => None,
            }
        });
        if let Some(id) = served_by {
            e.extensions.insert(
                "service",
                JsonValue::String(sg.subgraphs[id].name.as_str().into()),
            );
        }
        self.errors.push(e);
    }
}

/// A value whose non-null part was null: what it wrote since `mark` goes,
/// and it is `null`, or, non-null itself, passes the null to its parent.
fn null_back(out: &mut Vec<u8>, mark: usize, non_null: bool) -> Result<(), ()> {
    out.truncate(mark);
    if non_null {
        Err(())
    } else {
        out.extend_from_slice(b"null");
        Ok(())
    }
}

/// What a leaf value should have been, when it is not what its type allows
/// (custom scalars take any JSON).
fn misfit(kind: Kind, ty: Option<&ExtendedType>, v: &Value) -> Option<&'static str> {
    let (fits, expected) = match kind {
        Kind::Scalar(Scalar::String) => (v.is_string(), "a String"),
        Kind::Scalar(Scalar::Boolean) => (v.is_boolean(), "a Boolean"),
        Kind::Scalar(Scalar::Int) => (
            v.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
            "a 32-bit Int",
        ),
        Kind::Scalar(Scalar::Float) => (v.is_number(), "a Float"),
        Kind::Scalar(Scalar::Id) => (
            v.is_string() || v.is_i64() || v.is_u64(),
            "an ID (string or integer)",
        ),
        _ => match ty {
            Some(ExtendedType::Enum(e)) => (
                v.as_str().is_some_and(|s| e.values.contains_key(s)),
                "one of the enum's values",
            ),
            _ => (true, ""),
        },
    };
    (!fits).then_some(expected)
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use apollo_compiler::response::{serde_json_bytes::json, JsonMap};

    use super::*;
    use crate::{
        build, coerce_variables, prepare,
        testing::{spec, supergraph},
        Limits, Supergraph,
    };

    fn shaped(query: &str, data: JsonValue) -> (String, Vec<String>) {
        shaped_in(&supergraph(), query, data)
    }

    fn shaped_in(sg: &Supergraph, query: &str, data: JsonValue) -> (String, Vec<String>) {
        let prepared = prepare(sg, query, None, &Limits::default()).unwrap();
        let vars = coerce_variables(sg, &prepared, &JsonMap::new()).unwrap();
        let req = Request {
            supergraph: sg,
            document: &prepared.document,
            operation: prepared.operation(),
            plan: &prepared.plan,
            variables: &vars,
            authorization: None,
        };
        let mut errors = Vec::new();
        let arena = crate::execute::tree::Arena::new();
        let data = Value::from_json(&data, &arena.get());
        let mut out = Vec::new();
        shape(&req, &data, &mut errors, &mut out);
        let out = String::from_utf8(out).unwrap();
        let errors = errors
            .iter()
            .map(|e| format!("{} at {}", e.message, crate::execute::path_string(&e.path)))
            .collect();
        (out, errors)
    }

    #[test]
    fn leaf_strings_are_written_as_serde_json_writes_them() {
        let short = [
            "plain",
            "",
            "a\"b",
            "back\\slash",
            "tab\there",
            "nul\u{0}",
            "é 日本",
            "\u{2028}",
        ];
        // Long enough to be scanned eight bytes at a time, with the byte to
        // escape in every place of a word.
        let long = (0..20).flat_map(|at| {
            ["\"", "\\", "\n", "\u{1f}", "\u{7f}"].map(|c| {
                let mut s = "x".repeat(20);
                s.replace_range(at..=at, c);
                s
            })
        });
        for s in short.map(String::from).into_iter().chain(long) {
            let mut out = Vec::new();
            Value::String(&s).write_json(&mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&s).unwrap()
            );
        }
    }

    #[test]
    fn leaf_numbers_and_literals_are_written_as_serde_json_writes_them() {
        let arena = crate::execute::tree::Arena::new();
        let alloc = arena.get();
        let text = r#"[0,-0,1,-1,9223372036854775807,-9223372036854775808,18446744073709551615,1.5,-2.5e-3,1e300,true,false,null]"#;
        let Value::Array(items) = Value::parse(text, &alloc, 0).unwrap() else {
            unreachable!()
        };
        for v in items.iter() {
            let mut out = Vec::new();
            v.write_json(&mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(v).unwrap()
            );
        }
    }

    #[test]
    fn nulls_propagate_to_the_nearest_nullable_parent() {
        let (out, errors) = shaped(
            "{ pipeline(id: \"1\") { id tags { key } } pipelines { total } }",
            json!({
                "pipeline": {"id": "1", "tags": [{"key": "a"}, {"key": null}], "_stitch_f_x": 1},
                "pipelines": {"total": 3, "items": []}
            }),
        );
        assert_eq!(out, r#"{"pipeline":null,"pipelines":{"total":3}}"#);
        assert_eq!(
            errors,
            ["Cannot return null for non-nullable field Tag.key at pipeline.tags.1.key"]
        );
    }

    /// A field's prefix is copied as `PREFIX_READ` bytes and cut back:
    /// response keys of every length around that size (aliases) are
    /// written whole, in order, with nothing of the next key after them.
    #[test]
    fn response_keys_of_every_length_are_written_whole() {
        for len in 20..40 {
            let long: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            let query = format!("{{ pipelines {{ {long}: total x{long}: total t: total }} }}");
            let mut page = JsonMap::new();
            for key in [long.clone(), format!("x{long}"), "t".into()] {
                page.insert(key.as_str(), json!(3));
            }
            let (out, errors) = shaped(&query, json!({ "pipelines": page }));
            assert_eq!(
                out,
                format!(r#"{{"pipelines":{{"{long}":3,"x{long}":3,"t":3}}}}"#),
                "{len}"
            );
            assert!(errors.is_empty(), "{errors:?}");
        }
        let (out, _) = shaped("{ pipelines { __typename } }", json!({"pipelines": {}}));
        assert_eq!(out, r#"{"pipelines":{"__typename":"PipelinePage"}}"#);
    }

    /// Objects in a list of nullable items: one whose non-null field is
    /// null becomes null itself, and its siblings stand.
    #[test]
    fn a_nullable_list_item_takes_its_fields_null_and_its_siblings_stand() {
        let sdl = "type Query { things: [Thing] } type Thing { id: ID! name: String! }";
        let sg = build(&[spec("things", sdl, "")]).unwrap();
        let (out, errors) = shaped_in(
            &sg,
            "{ things { id name } }",
            json!({"things": [
                {"id": "1", "name": "a"},
                {"id": "2", "name": null},
                null,
                {"id": "4", "name": "d"}
            ]}),
        );
        assert_eq!(
            out,
            r#"{"things":[{"id":"1","name":"a"},null,null,{"id":"4","name":"d"}]}"#
        );
        assert_eq!(
            errors,
            ["Cannot return null for non-nullable field Thing.name at things.1.name"]
        );
    }

    #[test]
    fn a_null_reaching_the_root_nulls_data_and_helpers_never_show() {
        let (out, errors) = shaped("{ pipelines { total } }", json!({"pipelines": null}));
        assert_eq!(out, "null");
        assert_eq!(
            errors,
            ["Cannot return null for non-nullable field Query.pipelines at pipelines"]
        );
        let (out, _) = shaped(
            "{ a: pipeline(id: \"1\") { __typename n: name } }",
            json!({"a": {"n": "x\"y", "_stitch_f_id": "1", "_stitch_t": "Pipeline"}}),
        );
        assert_eq!(out, r#"{"a":{"__typename":"Pipeline","n":"x\"y"}}"#);
    }

    #[test]
    fn values_of_the_wrong_type_are_errors_at_their_path_not_passed_on() {
        let (out, errors) = shaped(
            "{ pipelines { total items { id name tags { key } } } }",
            json!({"pipelines": {"total": "three", "items": [
                {"id": {"x": 1}, "name": 7, "tags": "none"},
                {"id": 12, "name": "ok", "tags": [{"key": "k"}, 5]}
            ]}}),
        );
        assert_eq!(
            out, "null",
            "a non-null Int that is a string nulls its parents"
        );
        assert_eq!(errors[0], "a subgraph sent a value that is not a 32-bit Int for PipelinePage.total at pipelines.total");
        let (out, errors) = shaped(
            r#"{ a: pipeline(id: "1") { id name } b: pipeline(id: "2") { id tags { key } } }"#,
            json!({
                "a": {"id": 12, "name": 7},
                "b": {"id": "p2", "tags": [{"key": "k"}, 5]}
            }),
        );
        assert_eq!(out, r#"{"a":null,"b":null}"#);
        assert_eq!(
            errors,
            [
                "a subgraph sent a value that is not a String for Pipeline.name at a.name",
                "a subgraph sent a value that is not an object for Pipeline.tags at b.tags.1",
            ]
        );
    }
}
