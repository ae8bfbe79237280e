//! Stage 6 of composition: the model. For each (type, field), which
//! subgraphs resolve it and what they need first; for each entity type,
//! how each subgraph fetches one by key; each stitched field's call.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
};

use apollo_compiler::{
    ast::{self, OperationType},
    executable::FieldSet as ParsedFieldSet,
    schema::ExtendedType,
    validation::Valid,
    Name, Node, Schema,
};

use super::{
    check::check_delegation,
    fieldset::FieldSet,
    merge::{Stitching, ROOTS},
    model::{Call, EntityResolver, FieldModel, FieldSource, Model, ResolverKind, TypeModel},
    source::{FieldFlags, Source, Spanned},
    BuildError, BuildErrorKind as K, Dialect, Subgraph, SubgraphId,
};
use crate::directives::{
    path::{PathValue, Segment},
    selection_map::parse_map,
};

pub(crate) struct Inputs<'a> {
    pub full: &'a Schema,
    pub public: &'a Valid<Schema>,
    pub sources: &'a [Source],
    pub subgraphs: &'a [Subgraph],
    pub owners: &'a HashMap<Name, Vec<SubgraphId>>,
    pub stitching: &'a Stitching,
}

pub(crate) fn model(inp: &Inputs<'_>, errors: &mut Vec<BuildError>) -> Model {
    let mut model = Model::default();
    field_sources(inp, &mut model, errors);
    apply_overrides(inp, &mut model, errors);
    stitched_fields(inp, &mut model, errors);
    federation_keys(inp, &mut model, errors);
    composite_lookups(inp, &mut model, errors);
    stitching_entities(inp, &mut model, errors);
    model
}

fn fields_of(
    ty: &ExtendedType,
) -> Option<
    &apollo_compiler::collections::IndexMap<
        Name,
        apollo_compiler::schema::Component<ast::FieldDefinition>,
    >,
> {
    match ty {
        ExtendedType::Object(o) => Some(&o.fields),
        ExtendedType::Interface(i) => Some(&i.fields),
        _ => None,
    }
}

/// Every public object and interface field, with the subgraphs that define it.
fn field_sources(inp: &Inputs<'_>, model: &mut Model, errors: &mut Vec<BuildError>) {
    let empty = Vec::new();
    for (name, ty) in &inp.full.types {
        if ty.is_built_in() || name.starts_with("__") {
            continue;
        }
        let Some(fields) = fields_of(ty) else {
            continue;
        };
        let owners = inp.owners.get(name).unwrap_or(&empty).clone();
        let mut tm = TypeModel {
            owners: owners.clone(),
            ..Default::default()
        };
        for (fname, def) in fields {
            let mut fm = FieldModel {
                ty: def.ty.clone(),
                inaccessible: inp.public.type_field(name, fname).is_err(),
                sources: Vec::new(),
                delegation: None,
            };
            for &id in &owners {
                if let Some(s) = field_source(inp, id, name, fname, errors) {
                    fm.sources.push(s);
                }
            }
            tm.fields.insert(fname.clone(), fm);
        }
        model.types.insert(name.clone(), tm);
    }
}

/// Parses a field set string against a subgraph's type (its own names).
fn parse_fieldset(
    sg: &Subgraph,
    remote_type: &Name,
    text: &Spanned,
    what: &str,
    kind: K,
    errors: &mut Vec<BuildError>,
) -> Option<FieldSet> {
    let origin = text.location.clone().unwrap_or_else(|| sg.name.clone());
    match ParsedFieldSet::parse_and_validate(&sg.schema, remote_type.clone(), &text.text, &origin) {
        Ok(parsed) => match FieldSet::from_selection(&parsed.selection_set) {
            Ok(set) => Some(set),
            Err(e) => {
                errors.push(BuildError::new(
                    kind,
                    text.location.clone(),
                    format!(
                        "subgraph `{}`: {what}(fields: \"{}\") on `{remote_type}`: {e}",
                        sg.name, text.text
                    ),
                ));
                None
            }
        },
        Err(e) => {
            let detail: Vec<String> = super::diagnostics(&e.errors)
                .into_iter()
                .map(|(_, m)| m)
                .collect();
            errors.push(BuildError::new(
                kind,
                text.location.clone(),
                format!(
                    "subgraph `{}`: {what}(fields: \"{}\") on `{remote_type}`: {}",
                    sg.name,
                    text.text,
                    detail.join("; ")
                ),
            ));
            None
        }
    }
}

/// A directive whose field set is being checked: its name, its argument, and
/// the code of its problems.
type Checked<'a> = (&'a str, &'a Spanned, K);

/// Whether each top-level field of `set` is `@external` in the subgraph.
fn check_external(
    source: &Source,
    sg: &Subgraph,
    remote_type: &Name,
    set: &FieldSet,
    (what, text, kind): Checked<'_>,
    errors: &mut Vec<BuildError>,
) {
    if sg.dialect != Dialect::Federation {
        return;
    }
    for f in &set.fields {
        let external = source
            .flags(remote_type, &f.name)
            .is_some_and(|fl| fl.external);
        if !external {
            errors.push(BuildError::new(
                kind,
                text.location.clone(),
                format!(
                    "subgraph `{}`: {what}(fields: \"{}\") names `{remote_type}.{}`, which is not @external there; mark it @external (its value comes from another subgraph)",
                    sg.name, text.text, f.name
                ),
            ));
        }
    }
}

fn field_source(
    inp: &Inputs<'_>,
    id: SubgraphId,
    public_type: &Name,
    field: &Name,
    errors: &mut Vec<BuildError>,
) -> Option<FieldSource> {
    let sg = &inp.subgraphs[id];
    let source = &inp.sources[id];
    let remote_type = sg.remote_type(public_type);
    let def = sg.schema.type_field(remote_type, field).ok()?;
    if source.hidden.contains(&format!("{remote_type}.{field}")) {
        return None;
    }
    let default = FieldFlags::default();
    let flags = source.flags(remote_type, field).unwrap_or(&default);
    let key_field = source.keys.iter().any(|k| {
        k.type_name == *remote_type && key_names(&k.fields.text).contains(&field.as_str())
    });
    let mut out = FieldSource {
        subgraph: id,
        // An external key field is echoed back from the representation.
        external: flags.external && !key_field,
        requires: None,
        require_args: Vec::new(),
        provides: None,
    };
    if let Some(text) = &flags.requires {
        if let Some(set) = parse_fieldset(
            sg,
            remote_type,
            text,
            "@requires",
            K::RequireInvalidFields,
            errors,
        ) {
            check_external(
                source,
                sg,
                remote_type,
                &set,
                ("@requires", text, K::RequiresMissingExternal),
                errors,
            );
            out.requires = Some(Arc::new(set));
        }
    }
    if !flags.require_args.is_empty() {
        require_args(inp, sg, public_type, field, flags, &mut out, errors);
    }
    if let Some(text) = &flags.provides {
        let target = def.ty.inner_named_type();
        if let Some(set) = parse_fieldset(
            sg,
            target,
            text,
            "@provides",
            K::ProvidesInvalidFields,
            errors,
        ) {
            check_external(
                source,
                sg,
                target,
                &set,
                ("@provides", text, K::ProvidesMissingExternal),
                errors,
            );
            out.provides = Some(Arc::new(set));
        }
    }
    Some(out)
}

/// Composite `@require` arguments: each argument's value and the fields
/// of the parent it reads, added to the source's requirements.
fn require_args(
    inp: &Inputs<'_>,
    sg: &Subgraph,
    public_type: &Name,
    field: &Name,
    flags: &FieldFlags,
    out: &mut FieldSource,
    errors: &mut Vec<BuildError>,
) {
    let remote_type = sg.remote_type(public_type);
    let mut set = out.requires.as_deref().cloned().unwrap_or_default();
    for (arg, text) in &flags.require_args {
        match parse_map(&text.text) {
            Ok(alternatives) => {
                let value = alternatives.into_iter().next().unwrap_or(PathValue::Null);
                add_refs(&value, &mut set);
                out.require_args.push((arg.clone(), value));
            }
            Err(e) => errors.push(BuildError::new(
                K::RequireInvalidFields,
                text.location.clone(),
                format!(
                    "subgraph `{}`: `{remote_type}.{field}({arg}:)` @require(field: \"{}\"): {e}",
                    sg.name, text.text
                ),
            )),
        }
    }
    check_refs_exist(
        inp.full,
        public_type,
        &set,
        &format!("`{public_type}.{field}` @require"),
        text_loc(&flags.require_args),
        K::RequireInvalidFields,
        errors,
    );
    out.requires = Some(Arc::new(set));
}

fn text_loc(args: &[(Name, Spanned)]) -> Option<String> {
    args.first().and_then(|(_, s)| s.location.clone())
}

/// The top-level field names of a key's text (`"id owner { id }"`: id, owner).
pub(crate) fn key_names(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0;
    for word in text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
    {
        for part in split_braces(word) {
            match part {
                "{" => depth += 1,
                "}" => depth -= 1,
                name if depth == 0 => out.push(name),
                _ => {}
            }
        }
    }
    out
}

fn split_braces(word: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in word.char_indices() {
        if c == '{' || c == '}' {
            if start < i {
                out.push(&word[start..i]);
            }
            out.push(&word[i..i + 1]);
            start = i + 1;
        }
    }
    if start < word.len() {
        out.push(&word[start..]);
    }
    out
}

/// Adds the `$fields:` paths of a value to a field set.
pub(crate) fn add_refs(value: &PathValue, set: &mut FieldSet) {
    value.visit_refs(&mut |r| {
        if let PathValue::Field(p) = r {
            let names: Vec<Name> = p.iter().filter_map(|n| Name::new(n).ok()).collect();
            set.add_path(&names);
        }
    });
}

/// Each path of `set` names fields of the composed types.
fn check_refs_exist(
    full: &Schema,
    type_name: &Name,
    set: &FieldSet,
    what: &str,
    location: Option<String>,
    kind: K,
    errors: &mut Vec<BuildError>,
) -> bool {
    let mut ok = true;
    for path in set.leaf_paths() {
        let mut owner = type_name.clone();
        for n in &path {
            match full.type_field(&owner, n) {
                Ok(def) => owner = def.ty.inner_named_type().clone(),
                Err(_) => {
                    ok = false;
                    errors.push(BuildError::new(
                        kind,
                        location.clone(),
                        format!(
                            "{what} reads `{}`, but type `{owner}` has no field `{n}`",
                            path.iter()
                                .map(|n| n.as_str())
                                .collect::<Vec<_>>()
                                .join(".")
                        ),
                    ));
                    break;
                }
            }
        }
    }
    ok
}

/// `@override(from: "a")` in subgraph b: only b resolves the field.
fn apply_overrides(inp: &Inputs<'_>, model: &mut Model, errors: &mut Vec<BuildError>) {
    let mut seen: HashMap<(Name, Name), SubgraphId> = HashMap::new();
    for (id, (source, sg)) in inp.sources.iter().zip(inp.subgraphs).enumerate() {
        for ((remote_type, field), flags) in &source.flags {
            let Some(from) = &flags.override_from else {
                continue;
            };
            let public_type = Name::new_unchecked(sg.public_type(remote_type));
            if from.text == sg.name {
                errors.push(BuildError::new(
                    K::OverrideFromSelf,
                    from.location.clone(),
                    format!(
                        "subgraph `{}`: `{remote_type}.{field}` @override(from: \"{}\") names the subgraph itself",
                        sg.name, from.text
                    ),
                ));
                continue;
            }
            let key = (public_type.clone(), field.clone());
            if let Some(other) = seen.insert(key, id) {
                errors.push(BuildError::new(
                    K::OverrideSourceHasOverride,
                    from.location.clone(),
                    format!(
                        "`{public_type}.{field}` is overridden by subgraphs `{}` and `{}`; one field has one owner",
                        inp.subgraphs[other].name, sg.name
                    ),
                ));
                continue;
            }
            let Some(from_id) = inp.subgraphs.iter().position(|s| s.name == from.text) else {
                // Overriding a subgraph that is not (or no longer) configured is a no-op.
                continue;
            };
            if let Some(fm) = model
                .types
                .get_mut(&public_type)
                .and_then(|t| t.fields.get_mut(field))
            {
                fm.sources.retain(|s| s.subgraph != from_id);
            }
        }
    }
    // A chain a -> b -> c is fine; a field overridden from a subgraph that
    // itself overrides it is a cycle.
    for ((t, f), by) in &seen {
        let by_name = &inp.subgraphs[*by].name;
        for (id, (source, sg)) in inp.sources.iter().zip(inp.subgraphs).enumerate() {
            if id == *by {
                continue;
            }
            let remote = sg.remote_type(t);
            if let Some(from) = source
                .flags(remote, f)
                .and_then(|fl| fl.override_from.as_ref())
            {
                if from.text == *by_name
                    && inp.sources[*by]
                        .flags(inp.subgraphs[*by].remote_type(t), f)
                        .and_then(|fl| fl.override_from.as_ref())
                        .is_some_and(|x| x.text == sg.name)
                {
                    errors.push(BuildError::new(
                        K::OverrideSourceHasOverride,
                        from.location.clone(),
                        format!(
                            "`{t}.{f}`: subgraphs `{}` and `{by_name}` override each other",
                            sg.name
                        ),
                    ));
                }
            }
        }
    }
}

/// Stitched fields (`@delegate`): their calls, checked against the subgraph.
fn stitched_fields(inp: &Inputs<'_>, model: &mut Model, errors: &mut Vec<BuildError>) {
    for field in &inp.stitching.fields {
        let Some(def) = inp
            .full
            .types
            .get(&field.type_name)
            .and_then(fields_of)
            .and_then(|f| f.get(&field.definition.name))
            .cloned()
        else {
            continue;
        };
        let mut call = Call {
            subgraph: field.subgraph,
            operation: ROOTS
                .iter()
                .find(|(op, _)| inp.full.root_operation(*op) == Some(&field.type_name))
                .map(|(op, _)| *op)
                .unwrap_or(OperationType::Query),
            path: field.path.clone(),
            argument_types: Vec::new(),
            batch: field.batch,
            requires: FieldSet::default(),
            origin: field.location.clone().unwrap_or_default(),
        };
        match check_delegation(inp.full, inp.subgraphs, &field.type_name, &def, &mut call) {
            Ok(()) => {
                if let Some(fm) = model
                    .types
                    .get_mut(&field.type_name)
                    .and_then(|t| t.fields.get_mut(&field.definition.name))
                {
                    fm.delegation = Some(Arc::new(call));
                }
            }
            Err(problems) => {
                for p in problems {
                    errors.push(BuildError::new(
                        K::DelegatePath,
                        field.location.clone(),
                        format!(
                            "`{}.{}` @delegate(path: \"{}\"): {p}",
                            field.type_name, field.definition.name, field.path_text
                        ),
                    ));
                }
            }
        }
    }
}

fn push_resolver(
    model: &mut Model,
    id: SubgraphId,
    type_name: Name,
    key: FieldSet,
    kind: ResolverKind,
) {
    let resolver = Arc::new(EntityResolver {
        id: model.resolvers.len(),
        subgraph: id,
        type_name: type_name.clone(),
        key,
        kind,
    });
    model.resolvers.push(resolver.clone());
    if let Some(t) = model.types.get_mut(&type_name) {
        t.resolvers.push(resolver);
    }
}

/// Federation `@key`s: `_entities` resolvers (unless `resolvable: false`).
fn federation_keys(inp: &Inputs<'_>, model: &mut Model, errors: &mut Vec<BuildError>) {
    for (id, (source, sg)) in inp.sources.iter().zip(inp.subgraphs).enumerate() {
        for key in &source.keys {
            let Some(set) = parse_fieldset(
                sg,
                &key.type_name,
                &key.fields,
                "@key",
                K::KeyInvalidFields,
                errors,
            ) else {
                continue;
            };
            check_key_types(sg, &key.type_name, &set, &key.fields, errors);
            let public = Name::new_unchecked(sg.public_type(&key.type_name));
            let is_object = matches!(
                sg.schema.types.get(&key.type_name),
                Some(ExtendedType::Object(_))
            );
            if !key.resolvable || !is_object {
                continue;
            }
            if sg.dialect == Dialect::Federation {
                push_resolver(model, id, public, set, ResolverKind::Entities);
            }
        }
    }
}

/// Key fields must be scalars, enums or objects (not lists, interfaces, unions).
fn check_key_types(
    sg: &Subgraph,
    type_name: &Name,
    set: &FieldSet,
    text: &Spanned,
    errors: &mut Vec<BuildError>,
) {
    for f in &set.fields {
        let Ok(def) = sg.schema.type_field(type_name, &f.name) else {
            continue;
        };
        let bad = def.ty.is_list()
            || matches!(
                sg.schema.types.get(def.ty.inner_named_type()),
                Some(ExtendedType::Interface(_) | ExtendedType::Union(_))
            );
        if bad {
            errors.push(BuildError::new(
                K::KeyInvalidType,
                text.location.clone(),
                format!(
                    "subgraph `{}`: @key(fields: \"{}\") on `{type_name}`: `{}` is `{}`; key fields cannot be lists, interfaces or unions",
                    sg.name, text.text, f.name, def.ty
                ),
            ));
        } else if !f.selection.is_empty() {
            check_key_types(sg, def.ty.inner_named_type(), &f.selection, text, errors);
        }
    }
}

/// The argument-free fields from the query root to `target`, if any.
fn path_to(schema: &Schema, target: &Name) -> Option<Vec<Name>> {
    let root = schema.root_operation(OperationType::Query)?;
    if root == target {
        return Some(Vec::new());
    }
    let mut queue = VecDeque::from([(root.clone(), Vec::<Name>::new())]);
    let mut seen = HashSet::from([root.clone()]);
    while let Some((ty, path)) = queue.pop_front() {
        let Some(fields) = schema.types.get(&ty).and_then(fields_of) else {
            continue;
        };
        for (n, f) in fields {
            if !f.arguments.is_empty() || f.ty.is_list() {
                continue;
            }
            let next = f.ty.inner_named_type();
            let mut p = path.clone();
            p.push(n.clone());
            if next == target {
                return Some(p);
            }
            if seen.insert(next.clone()) {
                queue.push_back((next.clone(), p));
            }
        }
    }
    None
}

/// Composite `@lookup` fields: one resolver per entity type it returns and
/// per `@is` alternative.
fn composite_lookups(inp: &Inputs<'_>, model: &mut Model, errors: &mut Vec<BuildError>) {
    for (id, (source, sg)) in inp.sources.iter().zip(inp.subgraphs).enumerate() {
        for ((parent, field), flags) in &source.flags {
            if flags.lookup.is_none() {
                continue;
            }
            let lookup = Lookup {
                inp,
                id,
                sg,
                parent,
                field,
                flags,
                at: format!("subgraph `{}`: @lookup `{parent}.{field}`", sg.name),
            };
            lookup.resolvers(model, errors);
        }
    }
}

/// One `@lookup` field being turned into entity resolvers.
struct Lookup<'a> {
    inp: &'a Inputs<'a>,
    id: SubgraphId,
    sg: &'a Subgraph,
    parent: &'a Name,
    field: &'a Name,
    flags: &'a FieldFlags,
    /// How errors name it.
    at: String,
}

impl Lookup<'_> {
    fn error(&self, kind: K, location: Option<String>, message: String) -> BuildError {
        BuildError::new(
            kind,
            location.or_else(|| self.flags.location.clone()),
            format!("{}{message}", self.at),
        )
    }

    fn resolvers(&self, model: &mut Model, errors: &mut Vec<BuildError>) {
        let Ok(def) = self.sg.schema.type_field(self.parent, self.field) else {
            return;
        };
        if def.ty.is_list() {
            let message = format!(" returns a list (`{}`); a lookup returns one entity (the gateway batches the calls)", def.ty);
            return errors.push(self.error(K::LookupReturnsList, None, message));
        }
        let Some(per_arg) = self.arguments(errors) else {
            return;
        };
        let Some(prefix) = path_to(&self.sg.schema, self.parent) else {
            let message =
                " cannot be reached from the query type through fields without arguments".into();
            return errors.push(self.error(K::LookupWithoutArguments, None, message));
        };
        let argument_types: HashMap<String, String> = def
            .arguments
            .iter()
            .map(|a| (a.name.to_string(), a.ty.to_string()))
            .collect();
        let mut types = vec![HashMap::new(); prefix.len()];
        types.push(argument_types);
        let entity_types = self.entity_types(def.ty.inner_named_type());
        // Alternatives of an argument with several; the others take their first.
        let n_alts = per_arg.iter().map(|(_, a)| a.len()).max().unwrap_or(1);
        for alt in 0..n_alts {
            let arguments: Vec<(String, PathValue)> = per_arg
                .iter()
                .map(|(n, alts)| {
                    let v = alts.get(alt).or(alts.first()).cloned();
                    (n.to_string(), v.unwrap_or(PathValue::Null))
                })
                .collect();
            let mut key = FieldSet::default();
            for (_, v) in &arguments {
                add_refs(v, &mut key);
            }
            let call = self.call(&prefix, arguments, types.clone(), key.clone());
            for remote in &entity_types {
                let public = Name::new_unchecked(self.sg.public_type(remote));
                let location = self.flags.location.clone();
                if check_refs_exist(
                    self.inp.full,
                    &public,
                    &key,
                    &self.at,
                    location,
                    K::IsInvalidFields,
                    errors,
                ) {
                    push_resolver(
                        model,
                        self.id,
                        public,
                        key.clone(),
                        ResolverKind::Call(call.clone()),
                    );
                }
            }
        }
    }

    /// The query that calls this lookup with `arguments`: through `prefix`
    /// (fields without arguments from the query type), then the lookup.
    fn call(
        &self,
        prefix: &[Name],
        arguments: Vec<(String, PathValue)>,
        argument_types: Vec<HashMap<String, String>>,
        requires: FieldSet,
    ) -> Arc<Call> {
        let mut path: Vec<Segment> = prefix
            .iter()
            .map(|n| Segment {
                name: n.to_string(),
                arguments: Some(Vec::new()),
            })
            .collect();
        path.push(Segment {
            name: self.field.to_string(),
            arguments: Some(arguments),
        });
        Arc::new(Call {
            subgraph: self.id,
            operation: OperationType::Query,
            path,
            argument_types,
            batch: false,
            requires,
            origin: self
                .flags
                .location
                .clone()
                .unwrap_or_else(|| self.at.clone()),
        })
    }

    /// Each argument's map (its `@is`, or the field of its own name) and
    /// the map's alternatives (`{ id } | { sku }`); `None` after errors.
    fn arguments(&self, errors: &mut Vec<BuildError>) -> Option<Vec<(Name, Vec<PathValue>)>> {
        let args = self.flags.lookup.as_deref().unwrap_or(&[]);
        if args.is_empty() {
            let message = " has no arguments; its arguments are the entity's key".into();
            errors.push(self.error(K::LookupWithoutArguments, None, message));
            return None;
        }
        let mut per_arg = Vec::new();
        let mut ok = true;
        for (arg, map) in args {
            let parsed = match map {
                Some(m) => parse_map(&m.text).map_err(|e| (m.location.clone(), e.to_string())),
                None => Ok(vec![PathValue::Field(vec![arg.to_string()])]),
            };
            match parsed {
                Ok(alts) => per_arg.push((arg.clone(), alts)),
                Err((loc, e)) => {
                    ok = false;
                    errors.push(self.error(
                        K::IsInvalidFields,
                        loc,
                        format!(": @is on argument `{arg}`: {e}"),
                    ));
                }
            }
        }
        ok.then_some(per_arg)
    }

    /// The object types a lookup returning `remote` may return.
    fn entity_types(&self, remote: &Name) -> Vec<Name> {
        let schema = &self.sg.schema;
        match schema.types.get(remote) {
            Some(ExtendedType::Object(_)) => vec![remote.clone()],
            Some(ExtendedType::Interface(_) | ExtendedType::Union(_)) => schema
                .types
                .iter()
                .filter(|(n, t)| {
                    matches!(t, ExtendedType::Object(_)) && schema.is_subtype(remote, n)
                })
                .map(|(n, _)| n.clone())
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Stitching `extend type T @delegate(path:)`: entity resolvers by path.
fn stitching_entities(inp: &Inputs<'_>, model: &mut Model, errors: &mut Vec<BuildError>) {
    for e in &inp.stitching.entities {
        if !inp.full.types.contains_key(&e.type_name) {
            continue;
        }
        let ty = if e.batch {
            ast::Type::NonNullList(Box::new(ast::Type::Named(e.type_name.clone())))
        } else {
            ast::Type::Named(e.type_name.clone())
        };
        let def = ast::FieldDefinition {
            description: None,
            name: Name::new_static_unchecked("_entity"),
            arguments: Vec::new(),
            ty,
            directives: Default::default(),
        };
        let mut call = Call {
            subgraph: e.subgraph,
            operation: OperationType::Query,
            path: e.path.clone(),
            argument_types: Vec::new(),
            batch: e.batch,
            requires: FieldSet::default(),
            origin: e.location.clone().unwrap_or_default(),
        };
        match check_delegation(inp.full, inp.subgraphs, &e.type_name, &Node::new(def), &mut call) {
            Ok(()) if call.requires.is_empty() => errors.push(BuildError::new(
                K::DelegatePath,
                e.location.clone(),
                format!("`extend type {}` @delegate(path: \"{}\"): an entity path reads the entity's key with `$fields:`", e.type_name, e.path_text),
            )),
            Ok(()) => {
                let key = call.requires.clone();
                push_resolver(model, e.subgraph, e.type_name.clone(), key, ResolverKind::Call(Arc::new(call)));
            }
            Err(problems) => {
                for p in problems {
                    errors.push(BuildError::new(
                        K::DelegatePath,
                        e.location.clone(),
                        format!("`extend type {}` @delegate(path: \"{}\"): {p}", e.type_name, e.path_text),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::key_names;

    #[test]
    fn key_names_are_the_top_level_fields() {
        assert_eq!(key_names("id"), ["id"]);
        assert_eq!(
            key_names("id owner { id name } sku"),
            ["id", "owner", "sku"]
        );
        assert_eq!(key_names("a{b{c}}d"), ["a", "d"]);
    }
}
