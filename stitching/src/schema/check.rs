//! Start-up checks of a `@delegate` path against the subgraph it calls:
//! each segment, each argument and its type, each `$fields:` against the
//! parent type, each `$arguments:` against the field.

use std::collections::HashMap;

use apollo_compiler::{
    ast::{FieldDefinition, Type},
    schema::ExtendedType,
    validation::Valid,
    Name, Schema,
};

use super::{Delegation, Subgraph, SubgraphId};
use crate::directives::path::PathValue;

struct Ctx<'a> {
    public: &'a Valid<Schema>,
    sg: &'a Subgraph,
    subgraphs: &'a [Subgraph],
    owners: &'a [SubgraphId],
    delegations: &'a HashMap<(Name, Name), Delegation>,
    type_name: &'a Name,
    field: &'a FieldDefinition,
    problems: Vec<String>,
    requires: Vec<Name>,
}

fn depth(ty: &Type) -> usize {
    match ty {
        Type::Named(_) | Type::NonNullNamed(_) => 0,
        Type::List(i) | Type::NonNullList(i) => 1 + depth(i),
    }
}

fn list_item(ty: &Type) -> Option<&Type> {
    match ty {
        Type::List(i) | Type::NonNullList(i) => Some(i),
        _ => None,
    }
}

fn same_named(a: &str, b: &str) -> bool {
    a == b || (matches!(a, "ID" | "String") && matches!(b, "ID" | "String"))
}

impl Ctx<'_> {
    fn remote_named<'n>(&'n self, ty: &'n Type) -> &'n str {
        self.sg.public_type(ty.inner_named_type())
    }

    /// Checks `value` where the subgraph expects `expected` (its own type names).
    fn check_value(&mut self, value: &PathValue, expected: &Type, at: &str) {
        let named = self.remote_named(expected).to_owned();
        let remote_ty = self.sg.schema.types.get(expected.inner_named_type());
        match value {
            PathValue::Null => {
                if expected.is_non_null() {
                    self.problems.push(format!(
                        "{at} is non-null (`{expected}`) but the path gives null"
                    ));
                }
            }
            PathValue::List(items) => match list_item(expected) {
                Some(inner) => {
                    let inner = inner.clone();
                    for (i, item) in items.iter().enumerate() {
                        self.check_value(item, &inner, &format!("{at}[{i}]"));
                    }
                }
                None => self
                    .problems
                    .push(format!("{at} expects `{expected}`, not a list")),
            },
            PathValue::Object(fields) => {
                let Some(ExtendedType::InputObject(input)) =
                    remote_ty.filter(|_| !expected.is_list())
                else {
                    self.problems
                        .push(format!("{at} expects `{expected}`, not an input object"));
                    return;
                };
                let input = input.clone();
                for (name, v) in fields {
                    match input.fields.get(name.as_str()) {
                        Some(def) => self.check_value(v, &def.ty.clone(), &format!("{at}.{name}")),
                        None => self.problems.push(format!(
                            "{at}: input `{}` has no field `{name}`",
                            input.name
                        )),
                    }
                }
                for (name, def) in &input.fields {
                    if def.ty.is_non_null()
                        && def.default_value.is_none()
                        && !fields.iter().any(|(n, _)| n == name.as_str())
                    {
                        self.problems.push(format!(
                            "{at}: required field `{name}` of input `{}` is missing",
                            input.name
                        ));
                    }
                }
            }
            PathValue::Argument(n) => {
                match self.field.arguments.iter().find(|a| a.name == n.as_str()) {
                    Some(arg) => {
                        let public_named = arg.ty.inner_named_type().as_str();
                        if !same_named(public_named, &named) || depth(&arg.ty) != depth(expected) {
                            self.problems.push(format!(
                                "{at} expects `{expected}` but `$arguments:{n}` is `{}`",
                                arg.ty
                            ));
                        }
                    }
                    None => self.problems.push(format!(
                        "`$arguments:{n}`: `{}.{}` has no argument `{n}`",
                        self.type_name, self.field.name
                    )),
                }
            }
            PathValue::Field(n) => self.check_field_ref(n, expected, &named, at),
            PathValue::Variable(_) => {}
            scalar => {
                let ok = match remote_ty {
                    Some(ExtendedType::Scalar(s)) => match s.name.as_str() {
                        "Int" => matches!(scalar, PathValue::Int(_)),
                        "Float" => matches!(scalar, PathValue::Int(_) | PathValue::Float(_)),
                        "String" => matches!(scalar, PathValue::String(_)),
                        "Boolean" => matches!(scalar, PathValue::Bool(_)),
                        "ID" => matches!(scalar, PathValue::Int(_) | PathValue::String(_)),
                        _ => !matches!(scalar, PathValue::Enum(_)),
                    },
                    Some(ExtendedType::Enum(e)) => match scalar {
                        PathValue::Enum(v) => {
                            if !e.values.contains_key(v.as_str()) {
                                self.problems
                                    .push(format!("{at}: enum `{}` has no value `{v}`", e.name));
                            }
                            true
                        }
                        _ => false,
                    },
                    _ => false,
                };
                if !ok {
                    self.problems
                        .push(format!("{at} expects `{expected}`, got `{scalar}`"));
                }
            }
        }
    }

    fn check_field_ref(&mut self, n: &str, expected: &Type, named: &str, at: &str) {
        if !self.requires.iter().any(|r| r == n) {
            if let Ok(name) = Name::new(n) {
                self.requires.push(name);
            }
        }
        let is_root = [
            apollo_compiler::ast::OperationType::Query,
            apollo_compiler::ast::OperationType::Mutation,
            apollo_compiler::ast::OperationType::Subscription,
        ]
        .iter()
        .any(|op| self.public.root_operation(*op) == Some(self.type_name));
        if is_root {
            self.problems.push(format!(
                "`$fields:{n}`: `{}` is a root type; root fields have no parent object to read fields from",
                self.type_name
            ));
            return;
        }
        let Ok(parent_field) = self.public.type_field(self.type_name, n) else {
            self.problems.push(format!(
                "`$fields:{n}`: type `{}` has no field `{n}`",
                self.type_name
            ));
            return;
        };
        if self
            .delegations
            .contains_key(&(self.type_name.clone(), parent_field.name.clone()))
        {
            self.problems.push(format!(
                "`$fields:{n}`: `{}.{n}` is itself stitched; read a field that the parent's own subgraph serves",
                self.type_name
            ));
            return;
        }
        let served = self.owners.iter().any(|id| {
            let sg = &self.subgraphs[*id];
            sg.schema
                .type_field(sg.remote_type(self.type_name), n)
                .is_ok()
        });
        if !served {
            self.problems.push(format!(
                "`$fields:{n}`: no subgraph that defines `{}` serves its field `{n}`",
                self.type_name
            ));
        }
        if !parent_field.arguments.is_empty()
            && parent_field
                .arguments
                .iter()
                .any(|a| a.ty.is_non_null() && a.default_value.is_none())
        {
            self.problems.push(format!(
                "`$fields:{n}`: `{}.{n}` takes required arguments",
                self.type_name
            ));
        }
        let public_named = parent_field.ty.inner_named_type().as_str().to_owned();
        let (have, want) = (depth(&parent_field.ty), depth(expected));
        // A scalar key may feed a list argument, and a list key is flattened into a batch.
        let item_depth_ok = have == want || have + 1 == want || have == want + 1;
        if !same_named(&public_named, named) || !item_depth_ok {
            self.problems.push(format!(
                "{at} expects `{expected}` but `$fields:{n}` is `{}`",
                parent_field.ty
            ));
        }
    }
}

/// Checks one delegation and fills in its argument types and requirements.
pub(super) fn check_delegation(
    public: &Valid<Schema>,
    subgraphs: &[Subgraph],
    type_owners: &HashMap<Name, Vec<SubgraphId>>,
    delegations: &HashMap<(Name, Name), Delegation>,
    type_name: &Name,
    field: &FieldDefinition,
    d: &mut Delegation,
) -> Result<(), Vec<String>> {
    let sg = &subgraphs[d.subgraph];
    let no_owners = Vec::new();
    let mut ctx = Ctx {
        public,
        sg,
        subgraphs,
        owners: type_owners.get(type_name).unwrap_or(&no_owners),
        delegations,
        type_name,
        field,
        problems: Vec::new(),
        requires: Vec::new(),
    };
    let op_name = format!("{:?}", d.operation).to_lowercase();
    let Some(root) = sg.schema.root_operation(d.operation) else {
        return Err(vec![format!(
            "subgraph `{}` has no {op_name} type",
            sg.name
        )]);
    };
    let mut current: Name = root.clone();
    let mut last_ty: Option<Type> = None;
    let n = d.path.len();
    for (i, seg) in d.path.iter().enumerate() {
        let Ok(remote) = sg.schema.type_field(&current, &seg.name) else {
            let known: Vec<&str> = sg
                .schema
                .types
                .get(&current)
                .map(|t| match t {
                    ExtendedType::Object(o) => o.fields.keys().map(|k| k.as_str()).collect(),
                    ExtendedType::Interface(o) => o.fields.keys().map(|k| k.as_str()).collect(),
                    _ => Vec::new(),
                })
                .unwrap_or_default();
            ctx.problems.push(format!(
                "subgraph `{}` has no field `{current}.{}` (it has: {})",
                sg.name,
                seg.name,
                known.join(", ")
            ));
            return Err(ctx.problems);
        };
        d.argument_types.push(
            remote
                .arguments
                .iter()
                .map(|a| (a.name.to_string(), a.ty.to_string()))
                .collect(),
        );
        let is_last = i + 1 == n;
        match &seg.arguments {
            None if is_last => {
                for arg in &field.arguments {
                    if !remote.arguments.iter().any(|a| a.name == arg.name) {
                        ctx.problems.push(format!(
                            "argument `{}` would pass through to `{current}.{}`, which has no such argument; give the arguments in the path",
                            arg.name, seg.name
                        ));
                    }
                }
                for ra in &remote.arguments {
                    if ra.ty.is_non_null()
                        && ra.default_value.is_none()
                        && !field.arguments.iter().any(|a| a.name == ra.name)
                    {
                        ctx.problems.push(format!(
                            "`{current}.{}` requires argument `{}`, which the path does not give",
                            seg.name, ra.name
                        ));
                    }
                }
            }
            args => {
                let args = args.as_deref().unwrap_or(&[]);
                for (name, value) in args {
                    match remote.arguments.iter().find(|a| a.name == name.as_str()) {
                        Some(ra) => {
                            let at = format!("argument `{name}` of `{current}.{}`", seg.name);
                            if d.batch && is_last && matches!(value, PathValue::Field(_)) {
                                // The list argument receives every parent's key.
                                match list_item(&ra.ty) {
                                    Some(item) => {
                                        let item = item.clone();
                                        ctx.check_value(value, &item, &at);
                                    }
                                    None => ctx.problems.push(format!(
                                        "batch: true needs {at} to be a list, but it is `{}`",
                                        ra.ty
                                    )),
                                }
                            } else {
                                ctx.check_value(value, &ra.ty, &at);
                            }
                        }
                        None => ctx.problems.push(format!(
                            "`{current}.{}` has no argument `{name}` (it has: {})",
                            seg.name,
                            remote
                                .arguments
                                .iter()
                                .map(|a| a.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    }
                }
                for ra in &remote.arguments {
                    if ra.ty.is_non_null()
                        && ra.default_value.is_none()
                        && !args.iter().any(|(a, _)| a == ra.name.as_str())
                    {
                        ctx.problems.push(format!(
                            "`{current}.{}` requires argument `{}`, which the path does not give",
                            seg.name, ra.name
                        ));
                    }
                }
            }
        }
        current = remote.ty.inner_named_type().clone();
        last_ty = Some(remote.ty.clone());
    }
    if d.batch {
        let last = d.path.last().and_then(|s| s.arguments.as_ref());
        let direct = last
            .map(|args| {
                args.iter()
                    .filter(|(_, v)| matches!(v, PathValue::Field(_)))
                    .count()
            })
            .unwrap_or(0);
        let mut all_fields = 0;
        for seg in &d.path {
            for (_, v) in seg.arguments.iter().flatten() {
                v.visit_refs(&mut |r| {
                    if matches!(r, PathValue::Field(_)) {
                        all_fields += 1
                    }
                });
            }
        }
        if direct != 1 || all_fields != 1 {
            ctx.problems.push(
                "batch: true needs exactly one `$fields:` reference, standing as a whole list argument of the last segment, e.g. `datasetsByIds(ids: $fields:datasetId)`".into(),
            );
        }
    }
    if let Some(remote_ty) = last_ty {
        let remote_named = sg.public_type(remote_ty.inner_named_type());
        let public_named = field.ty.inner_named_type().as_str();
        if remote_named != public_named {
            ctx.problems.push(format!(
                "the path ends at a field of type `{remote_ty}`, but `{type_name}.{}` is `{}`",
                field.name, field.ty
            ));
        } else if !d.batch && depth(&remote_ty) != depth(&field.ty) {
            ctx.problems.push(format!(
                "the path ends at `{remote_ty}` but `{type_name}.{}` is `{}`: list depths differ",
                field.name, field.ty
            ));
        } else if d.batch && depth(&remote_ty) == 0 {
            ctx.problems.push(format!(
                "batch: true needs the path to end at a list (one result per key), but it ends at `{remote_ty}`"
            ));
        }
    }
    d.requires = ctx.requires;
    if ctx.problems.is_empty() {
        Ok(())
    } else {
        Err(ctx.problems)
    }
}
