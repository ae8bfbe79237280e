//! Start-up checks of a `@delegate` path against the subgraph it calls:
//! each segment, each argument and its type, each `$fields:` against the
//! parent type, each `$arguments:` against the field.

use apollo_compiler::{
    ast::{FieldDefinition, Type},
    schema::ExtendedType,
    Name, Schema,
};

use super::{fieldset::FieldSet, merge::ROOTS, Call, Subgraph};
use crate::directives::path::PathValue;

struct Ctx<'a> {
    /// The composed schema, `@inaccessible` fields included: a `$fields:`
    /// may read a field clients cannot see.
    full: &'a Schema,
    sg: &'a Subgraph,
    type_name: &'a Name,
    field: &'a FieldDefinition,
    problems: Vec<String>,
    requires: FieldSet,
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

    /// An input object literal: each field it gives exists and fits, and
    /// none of the required ones is missing.
    fn check_input_object(
        &mut self,
        fields: &[(String, PathValue)],
        input: &apollo_compiler::schema::InputObjectType,
        at: &str,
    ) {
        for (name, v) in fields {
            match input.fields.get(name.as_str()) {
                Some(def) => self.check_value(v, &def.ty, &format!("{at}.{name}")),
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

    /// `$arguments:n`: the field has argument `n`, of the expected type.
    fn check_argument_ref(&mut self, n: &str, expected: &Type, named: &str, at: &str) {
        match self.field.arguments.iter().find(|a| a.name == n) {
            Some(arg) => {
                let public_named = arg.ty.inner_named_type().as_str();
                if !same_named(public_named, named) || depth(&arg.ty) != depth(expected) {
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

    /// A literal scalar or enum value against the expected scalar or enum.
    fn check_scalar(
        &mut self,
        scalar: &PathValue,
        remote_ty: Option<&ExtendedType>,
        expected: &Type,
        at: &str,
    ) {
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

    /// Checks `value` where the subgraph expects `expected` (its own type names).
    fn check_value(&mut self, value: &PathValue, expected: &Type, at: &str) {
        let named = self.remote_named(expected).to_owned();
        let sg = self.sg;
        let remote_ty = sg.schema.types.get(expected.inner_named_type());
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
                    for (i, item) in items.iter().enumerate() {
                        self.check_value(item, inner, &format!("{at}[{i}]"));
                    }
                }
                None => self
                    .problems
                    .push(format!("{at} expects `{expected}`, not a list")),
            },
            PathValue::Object(fields) => match remote_ty.filter(|_| !expected.is_list()) {
                Some(ExtendedType::InputObject(input)) => {
                    self.check_input_object(fields, input, at)
                }
                _ => self
                    .problems
                    .push(format!("{at} expects `{expected}`, not an input object")),
            },
            PathValue::Argument(n) => self.check_argument_ref(n, expected, &named, at),
            PathValue::Field(n) => {
                let n = n.clone();
                self.check_field_ref(&n, expected, &named, at)
            }
            PathValue::Variable(_) => {}
            scalar => self.check_scalar(scalar, remote_ty, expected, at),
        }
    }

    /// `$fields:a.b.c`: each name a field of the type before it (lists
    /// walked); the leaf's type fits where the value goes.
    fn check_field_ref(&mut self, path: &[String], expected: &Type, named: &str, at: &str) {
        let shown = path.join(".");
        let is_root = ROOTS
            .iter()
            .any(|(op, _)| self.full.root_operation(*op) == Some(self.type_name));
        if is_root {
            self.problems.push(format!(
                "`$fields:{shown}`: `{}` is a root type; root fields have no parent object to read fields from",
                self.type_name
            ));
            return;
        }
        let mut owner = self.type_name.clone();
        let mut have = 0;
        let mut leaf: Option<Type> = None;
        let mut names = Vec::with_capacity(path.len());
        for (i, n) in path.iter().enumerate() {
            let Ok(def) = self.full.type_field(&owner, n) else {
                self.problems.push(format!(
                    "`$fields:{shown}`: type `{owner}` has no field `{n}`"
                ));
                return;
            };
            if def
                .arguments
                .iter()
                .any(|a| a.ty.is_non_null() && a.default_value.is_none())
            {
                self.problems.push(format!(
                    "`$fields:{shown}`: `{owner}.{n}` takes required arguments"
                ));
            }
            have += depth(&def.ty);
            let ty = def.ty.clone();
            if let Ok(name) = Name::new(n) {
                names.push(name);
            }
            let is_leaf = i + 1 == path.len();
            let composite = matches!(
                self.full.types.get(ty.inner_named_type()),
                Some(ExtendedType::Object(_) | ExtendedType::Interface(_) | ExtendedType::Union(_))
            );
            if is_leaf && composite {
                self.problems.push(format!(
                    "`$fields:{shown}` ends at `{owner}.{n}` of type `{ty}`; name a scalar below it, e.g. `$fields:{shown}.id`"
                ));
                return;
            }
            owner = ty.inner_named_type().clone();
            leaf = Some(ty);
        }
        self.requires.add_path(&names);
        let Some(leaf) = leaf else { return };
        let public_named = leaf.inner_named_type().as_str().to_owned();
        let want = depth(expected);
        // A scalar key may feed a list argument, and a list key is flattened into a batch.
        let item_depth_ok = have == want || have + 1 == want || have == want + 1;
        if !same_named(&public_named, named) || !item_depth_ok {
            let shape = if have > 0 {
                format!("a list of `{leaf}`")
            } else {
                format!("`{leaf}`")
            };
            self.problems.push(format!(
                "{at} expects `{expected}` but `$fields:{shown}` is {shape}"
            ));
        }
    }
}

/// Checks one call (a stitched field's, or a stitching entity path) and
/// fills in its argument types and requirements.
pub(super) fn check_delegation(
    full: &Schema,
    subgraphs: &[Subgraph],
    type_name: &Name,
    field: &FieldDefinition,
    d: &mut Call,
) -> Result<(), Vec<String>> {
    let sg = &subgraphs[d.subgraph];
    let mut ctx = Ctx {
        full,
        sg,
        type_name,
        field,
        problems: Vec::new(),
        requires: FieldSet::default(),
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
            ctx.no_such_field(&current, &seg.name);
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
        let at = format!("{current}.{}", seg.name);
        match &seg.arguments {
            None if is_last => ctx.check_passed_through(&at, remote),
            args => {
                let args = args.as_deref().unwrap_or(&[]);
                ctx.check_path_arguments(&at, remote, args, d.batch && is_last);
            }
        }
        current = remote.ty.inner_named_type().clone();
        last_ty = Some(remote.ty.clone());
    }
    if d.batch {
        ctx.check_batch_reference(d);
    }
    if let Some(remote_ty) = last_ty {
        ctx.check_result(&remote_ty, d.batch);
    }
    d.requires = ctx.requires;
    if ctx.problems.is_empty() {
        Ok(())
    } else {
        Err(ctx.problems)
    }
}

/// The stages of `check_delegation`, each adding what it finds to `problems`.
impl Ctx<'_> {
    /// A segment names no field of `current`: say which fields it has.
    fn no_such_field(&mut self, current: &Name, name: &str) {
        let known: Vec<&str> = self
            .sg
            .schema
            .types
            .get(current)
            .map(|t| match t {
                ExtendedType::Object(o) => o.fields.keys().map(|k| k.as_str()).collect(),
                ExtendedType::Interface(o) => o.fields.keys().map(|k| k.as_str()).collect(),
                _ => Vec::new(),
            })
            .unwrap_or_default();
        self.problems.push(format!(
            "subgraph `{}` has no field `{current}.{name}` (it has: {})",
            self.sg.name,
            known.join(", ")
        ));
    }

    /// A last segment without arguments: the field's own arguments pass
    /// through to remote field `at`, so it must take each of them.
    fn check_passed_through(&mut self, at: &str, remote: &FieldDefinition) {
        let field = self.field;
        for arg in &field.arguments {
            if !remote.arguments.iter().any(|a| a.name == arg.name) {
                self.problems.push(format!(
                    "argument `{}` would pass through to `{at}`, which has no such argument; give the arguments in the path",
                    arg.name
                ));
            }
        }
        self.check_required(at, remote, |name| {
            field.arguments.iter().any(|a| a.name == name)
        });
    }

    /// The arguments a segment gives remote field `at`: each one it has,
    /// of its type; with `batch_list`, the `$fields:` one is its list.
    fn check_path_arguments(
        &mut self,
        at: &str,
        remote: &FieldDefinition,
        args: &[(String, PathValue)],
        batch_list: bool,
    ) {
        for (name, value) in args {
            let Some(ra) = remote.arguments.iter().find(|a| a.name == name.as_str()) else {
                self.problems.push(format!(
                    "`{at}` has no argument `{name}` (it has: {})",
                    remote
                        .arguments
                        .iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                continue;
            };
            let at = format!("argument `{name}` of `{at}`");
            if batch_list && matches!(value, PathValue::Field(_)) {
                // The list argument receives every parent's key.
                match list_item(&ra.ty) {
                    Some(item) => self.check_value(value, item, &at),
                    None => self.problems.push(format!(
                        "batch: true needs {at} to be a list, but it is `{}`",
                        ra.ty
                    )),
                }
            } else {
                self.check_value(value, &ra.ty, &at);
            }
        }
        self.check_required(at, remote, |name| {
            args.iter().any(|(a, _)| a.as_str() == name)
        });
    }

    /// Every non-null argument of remote field `at` without a default is
    /// `given`.
    fn check_required(&mut self, at: &str, remote: &FieldDefinition, given: impl Fn(&str) -> bool) {
        for ra in &remote.arguments {
            if ra.ty.is_non_null() && ra.default_value.is_none() && !given(ra.name.as_str()) {
                self.problems.push(format!(
                    "`{at}` requires argument `{}`, which the path does not give",
                    ra.name
                ));
            }
        }
    }

    /// A batched path has one `$fields:` reference, a whole list argument
    /// of its last segment: it is where the parents' keys go.
    fn check_batch_reference(&mut self, d: &Call) {
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
            self.problems.push(
                "batch: true needs exactly one `$fields:` reference, standing as a whole list argument of the last segment, e.g. `datasetsByIds(ids: $fields:datasetId)`".into(),
            );
        }
    }

    /// The path ends at the field's type, one item per key when batched.
    fn check_result(&mut self, remote_ty: &Type, batch: bool) {
        let (type_name, field) = (self.type_name, self.field);
        let remote_named = self.sg.public_type(remote_ty.inner_named_type());
        let public_named = field.ty.inner_named_type().as_str();
        if remote_named != public_named {
            self.problems.push(format!(
                "the path ends at a field of type `{remote_ty}`, but `{type_name}.{}` is `{}`",
                field.name, field.ty
            ));
        } else if !batch && depth(remote_ty) != depth(&field.ty) {
            self.problems.push(format!(
                "the path ends at `{remote_ty}` but `{type_name}.{}` is `{}`: list depths differ",
                field.name, field.ty
            ));
        } else if batch && depth(remote_ty) == 0 {
            self.problems.push(format!(
                "batch: true needs the path to end at a list (one result per key), but it ends at `{remote_ty}`"
            ));
        }
    }
}
