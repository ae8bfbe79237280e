//! The merged data -> the client's response: only the fields the client
//! selected, in its order, under its aliases (so `$fields:` helpers vanish),
//! `__typename` answered, `@skip`/`@include` applied, and nulls propagated
//! as the specification says.

use apollo_compiler::{
    ast::Type,
    executable::{Field, Selection, SelectionSet},
    response::{GraphQLError, JsonMap, JsonValue},
    schema::ExtendedType,
    Name, Node,
};
use indexmap::IndexMap;
use std::{collections::HashMap, rc::Rc};

use super::{error, value::to_error_path, PathSeg, Request};
use crate::plan::TYPENAME_ALIAS;

pub fn shape(req: &Request<'_>, data: &JsonValue, errors: &mut Vec<GraphQLError>) -> JsonValue {
    let mut s = Shaper {
        req,
        errors,
        memo: HashMap::new(),
    };
    let empty = JsonMap::new();
    let obj = data.as_object().unwrap_or(&empty);
    let root = &req.operation.selection_set;
    match s.selection(&[root], root.ty.as_str(), obj, &mut Vec::new()) {
        Ok(m) => JsonValue::Object(m),
        Err(()) => JsonValue::Null,
    }
}

/// The fields of a selection set for one runtime type, grouped by response key.
type Collected<'a> = Rc<Vec<(&'a Name, Vec<&'a Node<Field>>)>>;

struct Shaper<'r, 'a, 'e> {
    req: &'r Request<'a>,
    errors: &'e mut Vec<GraphQLError>,
    /// CollectFields per (selection set, runtime type): a list of N objects
    /// collects its item selection once, not N times.
    memo: HashMap<usize, Vec<(String, Collected<'a>)>>,
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

    fn collect(
        &self,
        sets: &[&'a SelectionSet],
        runtime: &str,
        out: &mut IndexMap<&'a Name, Vec<&'a Node<Field>>>,
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
                        if included(&inline.directives, vars)
                            && inline
                                .type_condition
                                .as_ref()
                                .is_none_or(|c| self.applies(c, runtime))
                        {
                            self.collect(&[&inline.selection_set], runtime, out);
                        }
                    }
                    Selection::FragmentSpread(spread) => {
                        if !included(&spread.directives, vars) {
                            continue;
                        }
                        if let Some(fragment) =
                            self.req.document.fragments.get(&spread.fragment_name)
                        {
                            if self.applies(fragment.type_condition(), runtime) {
                                self.collect(&[&fragment.selection_set], runtime, out);
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
        let mut fields = IndexMap::new();
        self.collect(sets, type_name, &mut fields);
        let collected: Collected<'a> = Rc::new(fields.into_iter().collect());
        if sets.len() == 1 {
            self.memo
                .entry(key)
                .or_default()
                .push((type_name.to_owned(), collected.clone()));
        }
        collected
    }

    fn selection(
        &mut self,
        sets: &[&'a SelectionSet],
        type_name: &str,
        obj: &JsonMap,
        path: &mut Vec<PathSeg>,
    ) -> Result<JsonMap, ()> {
        let fields = self.collected(sets, type_name);
        let mut out = JsonMap::with_capacity(fields.len());
        for (key, fs) in fields.iter() {
            let (key, fs) = (*key, fs.as_slice());
            let f = fs[0];
            if f.name == "__typename" {
                out.insert(key.as_str(), JsonValue::String(type_name.into()));
                continue;
            }
            let raw = obj.get(key.as_str());
            if matches!(f.name.as_str(), "__schema" | "__type") {
                // Already shaped by the introspection executor.
                out.insert(key.as_str(), raw.cloned().unwrap_or(JsonValue::Null));
                continue;
            }
            path.push(PathSeg::Key(key.clone()));
            let v = self.value(&f.definition.ty, type_name, fs, raw, path);
            path.pop();
            out.insert(key.as_str(), v?);
        }
        Ok(out)
    }

    fn null_error(&mut self, path: &[PathSeg], parent_type: &str, field: &Name) {
        let p = to_error_path(path);
        let covered = self
            .errors
            .iter()
            .any(|e| e.path.len() >= p.len() && e.path[..p.len()] == p[..]);
        if !covered {
            let mut e = error(
                format!("Cannot return null for non-nullable field {parent_type}.{field}"),
                "NON_NULL_VIOLATION",
            );
            e.path = p;
            self.errors.push(e);
        }
    }

    fn value(
        &mut self,
        ty: &Type,
        parent_type: &str,
        fs: &[&'a Node<Field>],
        raw: Option<&JsonValue>,
        path: &mut Vec<PathSeg>,
    ) -> Result<JsonValue, ()> {
        let null = |this: &mut Self, path: &mut Vec<PathSeg>| {
            if ty.is_non_null() {
                this.null_error(path, parent_type, &fs[0].name);
                Err(())
            } else {
                Ok(JsonValue::Null)
            }
        };
        let raw = match raw {
            None | Some(JsonValue::Null) => return null(self, path),
            Some(v) => v,
        };
        match ty {
            Type::List(inner) | Type::NonNullList(inner) => {
                let JsonValue::Array(items) = raw else {
                    let mut e = error(
                        format!("expected a list for {parent_type}.{}, the subgraph sent something else", fs[0].name),
                        "SUBGRAPH_INVALID_VALUE",
                    );
                    e.path = to_error_path(path);
                    self.errors.push(e);
                    return null(self, path);
                };
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    path.push(PathSeg::Index(i));
                    let v = self.value(inner, parent_type, fs, Some(item), path);
                    path.pop();
                    match v {
                        Ok(v) => out.push(v),
                        // A non-null item is null: the whole list is null.
                        Err(()) => {
                            return if ty.is_non_null() {
                                Err(())
                            } else {
                                Ok(JsonValue::Null)
                            }
                        }
                    }
                }
                Ok(JsonValue::Array(out))
            }
            Type::Named(name) | Type::NonNullNamed(name) => {
                match self.req.supergraph.schema.types.get(name) {
                    Some(
                        ExtendedType::Object(_)
                        | ExtendedType::Interface(_)
                        | ExtendedType::Union(_),
                    ) => {
                        let JsonValue::Object(obj) = raw else {
                            return null(self, path);
                        };
                        let runtime: String = if self.req.supergraph.is_abstract(name) {
                            let remote = obj
                                .get(TYPENAME_ALIAS)
                                .and_then(|v| v.as_str())
                                .unwrap_or(name.as_str());
                            self.req
                                .supergraph
                                .subgraphs
                                .iter()
                                .map(|s| s.public_type(remote))
                                .find(|p| *p != remote)
                                .unwrap_or(remote)
                                .to_owned()
                        } else {
                            name.to_string()
                        };
                        let sets: Vec<&SelectionSet> =
                            fs.iter().map(|f| &f.selection_set).collect();
                        match self.selection(&sets, &runtime, obj, path) {
                            Ok(m) => Ok(JsonValue::Object(m)),
                            Err(()) => {
                                if ty.is_non_null() {
                                    Err(())
                                } else {
                                    Ok(JsonValue::Null)
                                }
                            }
                        }
                    }
                    _ => Ok(raw.clone()),
                }
            }
        }
    }
}
