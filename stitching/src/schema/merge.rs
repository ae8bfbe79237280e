//! Merging subgraph schemas and stitching SDL into the public schema.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
};

use apollo_compiler::{
    ast::{self, OperationType, Type},
    parser::SourceMap,
    schema::{Component, ComponentName, ComponentOrigin, ExtendedType},
    Name, Node, Schema,
};

use super::{
    check::check_delegation, diagnostics, BuildError, BuildErrorKind as K, BuildErrors, Delegation,
    Subgraph, SubgraphId, SubgraphSpec, Supergraph,
};
use crate::directives::{self, StitchedField};

const ROOTS: [(OperationType, &str); 3] = [
    (OperationType::Query, "Query"),
    (OperationType::Mutation, "Mutation"),
    (OperationType::Subscription, "Subscription"),
];

/// Builds the stitched schema, reporting every problem at once.
pub fn build(specs: &[SubgraphSpec]) -> Result<Supergraph, BuildErrors> {
    let mut errors: Vec<BuildError> = Vec::new();
    let mut subgraphs: Vec<Subgraph> = Vec::new();
    let mut hidden: Vec<HashSet<String>> = Vec::new();

    // 1. Each subgraph's own schema, and its type renames.
    for spec in specs {
        let schema = match Schema::parse_and_validate(spec.schema_sdl.as_str(), &spec.schema_origin)
        {
            Ok(s) => s,
            Err(e) => {
                for (loc, msg) in diagnostics(&e.errors) {
                    errors.push(BuildError::new(
                        K::SubgraphSchema,
                        loc,
                        format!("subgraph `{}`: its schema is invalid: {msg}", spec.name),
                    ));
                }
                // Keep going with what parsed, so the other problems are reported too.
                match e.partial.validate() {
                    Ok(s) => s,
                    Err(_) => apollo_compiler::validation::Valid::assume_valid(Schema::new()),
                }
            }
        };
        let mut public_to_remote = HashMap::new();
        let mut remote_to_public = HashMap::new();
        for (op, public) in ROOTS {
            if let Some(remote) = schema.root_operation(op) {
                if remote != public {
                    remote_to_public.insert(remote.clone(), Name::new_static_unchecked(public));
                }
            }
        }
        for (remote, public) in &spec.rename_types {
            let (Ok(r), Ok(p)) = (Name::new(remote), Name::new(public)) else {
                errors.push(BuildError::new(
                    K::UnknownRename,
                    None,
                    format!("subgraph `{}`: `{remote}` -> `{public}` is not a valid rename: both must be GraphQL names", spec.name),
                ));
                continue;
            };
            if !schema.types.contains_key(&r) {
                errors.push(BuildError::new(
                    K::UnknownRename,
                    None,
                    format!(
                        "subgraph `{}` has no type `{remote}` to rename; check `rename_types`",
                        spec.name
                    ),
                ));
                continue;
            }
            remote_to_public.insert(r, p);
        }
        for (r, p) in &remote_to_public {
            public_to_remote.insert(p.clone(), r.clone());
        }
        let mut hide = HashSet::new();
        for h in &spec.hide {
            let exists = match h.split_once('.') {
                Some((t, f)) => schema
                    .types
                    .get(t)
                    .is_some_and(|ty| type_fields(ty).contains(&f)),
                None => schema.types.contains_key(h.as_str()),
            };
            if !exists {
                errors.push(BuildError::new(
                    K::UnknownHide,
                    None,
                    format!(
                        "subgraph `{}` has no `{h}` to hide; `hide` takes `Type` or `Type.field` as the subgraph names them",
                        spec.name
                    ),
                ));
            }
            hide.insert(h.clone());
        }
        hidden.push(hide);
        subgraphs.push(Subgraph {
            name: spec.name.clone(),
            schema,
            public_to_remote,
            remote_to_public,
        });
    }

    // 2. Merge the types.
    let mut public = Schema::new();
    let mut type_owners: HashMap<Name, Vec<SubgraphId>> = HashMap::new();
    let mut delegations: HashMap<(Name, Name), Delegation> = HashMap::new();
    let mut root_field_owner: HashMap<(Name, Name), SubgraphId> = HashMap::new();
    for (id, sg) in subgraphs.iter().enumerate() {
        let root_kinds: HashMap<&Name, OperationType> = ROOTS
            .iter()
            .filter_map(|(op, _)| sg.schema.root_operation(*op).map(|n| (n, *op)))
            .collect();
        for (name, ty) in &sg.schema.types {
            if ty.is_built_in() || name.starts_with("__") || hidden[id].contains(name.as_str()) {
                continue;
            }
            let public_name = Name::new_unchecked(sg.public_type(name));
            let renamed = rename_type(ty, &public_name, sg, &hidden[id], name);
            if let Some(op) = root_kinds.get(name) {
                // Root types: union of fields; a field name in two subgraphs is a conflict.
                let ExtendedType::Object(obj) = &renamed else {
                    continue;
                };
                if obj.fields.is_empty() {
                    continue;
                }
                let entry = public.types.entry(public_name.clone()).or_insert_with(|| {
                    let mut empty = obj.as_ref().clone();
                    empty.fields.clear();
                    empty.description = None;
                    ExtendedType::Object(Node::new(empty))
                });
                let ExtendedType::Object(target) = entry else {
                    continue;
                };
                set_root(&mut public.schema_definition, *op, &public_name);
                for (fname, fdef) in &obj.fields {
                    let key = (public_name.clone(), fname.clone());
                    if let Some(other) = root_field_owner.get(&key) {
                        errors.push(BuildError::new(
                            K::RootFieldConflict,
                            None,
                            format!(
                                "`{public_name}.{fname}` is defined by subgraphs `{}` and `{}`; hide one of them (`hide = [\"{}.{fname}\"]`)",
                                subgraphs[*other].name, sg.name, name
                            ),
                        ));
                        continue;
                    }
                    root_field_owner.insert(key.clone(), id);
                    target.make_mut().fields.insert(fname.clone(), fdef.clone());
                    delegations.insert(
                        key,
                        Delegation {
                            subgraph: id,
                            operation: *op,
                            path: vec![crate::directives::path::Segment {
                                name: fname.to_string(),
                                arguments: None,
                            }],
                            argument_types: Vec::new(),
                            batch: false,
                            requires: Vec::new(),
                            origin: format!("subgraph `{}`", sg.name),
                        },
                    );
                }
                continue;
            }
            match public.types.get(&public_name) {
                None => {
                    public.types.insert(public_name.clone(), renamed);
                    type_owners.entry(public_name).or_default().push(id);
                }
                Some(existing) => {
                    if fingerprint(existing) == fingerprint(&renamed) {
                        type_owners.entry(public_name).or_default().push(id);
                    } else {
                        let first = type_owners
                            .get(&public_name)
                            .and_then(|o| o.first())
                            .map(|i| subgraphs[*i].name.as_str())
                            .unwrap_or("?");
                        errors.push(BuildError::new(
                            K::TypeConflict,
                            None,
                            format!(
                                "type `{public_name}` is defined differently by subgraphs `{first}` and `{}`:\n      {first}: {}\n      {}: {}\n    make the definitions identical, rename one (`rename_types = {{ {name} = \"{}{public_name}\" }}` in the `{}` entry), or hide it",
                                sg.name,
                                fingerprint(existing),
                                sg.name,
                                fingerprint(&renamed),
                                capitalize(&sg.name),
                                sg.name,
                            ),
                        ));
                    }
                }
            }
        }
    }

    // 3. Stitching SDL: new fields with @delegate/@schema, and any new types.
    let mut sources: SourceMap = public.sources.clone();
    let mut stitched: Vec<(StitchedField, String)> = Vec::new();
    for (id, spec) in specs.iter().enumerate() {
        for (origin, text) in &spec.stitching {
            let doc = match ast::Document::parse(text.as_str(), origin) {
                Ok(d) => d,
                Err(e) => {
                    for (loc, msg) in diagnostics(&e.errors) {
                        errors.push(BuildError::new(
                            K::StitchingSdl,
                            loc,
                            format!("subgraph `{}`: {msg}", spec.name),
                        ));
                    }
                    continue;
                }
            };
            Arc::make_mut(&mut sources).extend(doc.sources.iter().map(|(k, v)| (*k, v.clone())));
            let read = directives::read_document(
                &doc,
                &spec.name,
                &specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            );
            errors.extend(read.errors);
            for def in read.new_types {
                let name = def.name().clone();
                if public.types.contains_key(&name) {
                    errors.push(BuildError::new(
                        K::StitchingSdl,
                        def.location().and_then(|l| directives::location(l, &sources)),
                        format!("type `{name}` is already defined by a subgraph; use `extend type {name}` to add fields"),
                    ));
                    continue;
                }
                public.types.insert(name.clone(), def);
                type_owners.entry(name).or_default().push(id);
            }
            for field in read.fields {
                stitched.push((field, spec.name.clone()));
            }
        }
    }
    for (field, _) in &stitched {
        let Some(ty) = public.types.get_mut(&field.type_name) else {
            errors.push(BuildError::new(
                K::StitchingSdl,
                field.location.clone(),
                format!(
                    "`extend type {}`: no subgraph defines a type `{}` (is it hidden or renamed?)",
                    field.type_name, field.type_name
                ),
            ));
            continue;
        };
        let fields = match ty {
            ExtendedType::Object(o) => &mut o.make_mut().fields,
            ExtendedType::Interface(i) => &mut i.make_mut().fields,
            _ => {
                errors.push(BuildError::new(
                    K::StitchingSdl,
                    field.location.clone(),
                    format!(
                        "`{}` is not an object type; only object types take stitched fields",
                        field.type_name
                    ),
                ));
                continue;
            }
        };
        if fields.contains_key(&field.definition.name) {
            errors.push(BuildError::new(
                K::StitchingSdl,
                field.location.clone(),
                format!(
                    "`{}.{}` is already defined by a subgraph; hide it there or give the stitched field another name",
                    field.type_name, field.definition.name
                ),
            ));
            continue;
        }
        fields.insert(
            field.definition.name.clone(),
            Component::new(field.definition.as_ref().clone()).to_owned_origin(),
        );
    }

    // 4. Types nobody can reach (e.g. inputs of hidden fields) are not shown.
    prune_unreachable(&mut public);
    public.sources = sources;

    let schema = match public.validate() {
        Ok(s) => s,
        Err(e) => {
            for (loc, msg) in diagnostics(&e.errors) {
                errors.push(BuildError::new(
                    K::PublicSchema,
                    loc,
                    format!("the stitched schema is invalid: {msg}"),
                ));
            }
            return Err(BuildErrors(errors));
        }
    };

    // 5. Check every delegation path against the subgraph it goes to.
    for (field, _) in stitched {
        let Some(def) = schema.types.get(&field.type_name).and_then(|t| match t {
            ExtendedType::Object(o) => o.fields.get(&field.definition.name).cloned(),
            _ => None,
        }) else {
            continue;
        };
        let mut delegation = Delegation {
            subgraph: field.subgraph,
            operation: ROOTS
                .iter()
                .find(|(op, _)| schema.root_operation(*op) == Some(&field.type_name))
                .map(|(op, _)| *op)
                .unwrap_or(OperationType::Query),
            path: field.path.clone(),
            argument_types: Vec::new(),
            batch: field.batch,
            requires: Vec::new(),
            origin: field.location.clone().unwrap_or_default(),
        };
        match check_delegation(
            &schema,
            &subgraphs,
            &type_owners,
            &delegations,
            &field.type_name,
            &def,
            &mut delegation,
        ) {
            Ok(()) => {
                delegations.insert(
                    (field.type_name.clone(), field.definition.name.clone()),
                    delegation,
                );
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
    // Root fields pass the client's arguments through: record their remote types.
    for ((t, f), d) in delegations.iter_mut() {
        if d.argument_types.is_empty() {
            let sg = &subgraphs[d.subgraph];
            let remote_root = sg.schema.root_operation(d.operation);
            if let Some(def) = remote_root.and_then(|r| sg.schema.type_field(r, f).ok()) {
                d.argument_types = vec![def
                    .arguments
                    .iter()
                    .map(|a| (a.name.to_string(), a.ty.to_string()))
                    .collect()];
            } else if !t.is_empty() {
                d.argument_types = vec![HashMap::new()];
            }
        }
    }

    if !errors.is_empty() {
        return Err(BuildErrors(errors));
    }
    let implementers = schema.implementers_map();
    Ok(Supergraph {
        schema,
        implementers,
        subgraphs,
        delegations: delegations
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v)))
            .collect(),
        type_owners,
    })
}

trait OwnedOrigin {
    fn to_owned_origin(self) -> Self;
}

impl<T> OwnedOrigin for Component<T> {
    fn to_owned_origin(mut self) -> Self {
        self.origin = ComponentOrigin::Definition;
        self
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn set_root(
    def: &mut Node<apollo_compiler::schema::SchemaDefinition>,
    op: OperationType,
    name: &Name,
) {
    let d = def.make_mut();
    let slot = match op {
        OperationType::Query => &mut d.query,
        OperationType::Mutation => &mut d.mutation,
        OperationType::Subscription => &mut d.subscription,
    };
    if slot.is_none() {
        *slot = Some(ComponentName::from(name.clone()));
    }
}

fn type_fields(ty: &ExtendedType) -> Vec<&str> {
    match ty {
        ExtendedType::Object(o) => o.fields.keys().map(|k| k.as_str()).collect(),
        ExtendedType::Interface(i) => i.fields.keys().map(|k| k.as_str()).collect(),
        ExtendedType::InputObject(i) => i.fields.keys().map(|k| k.as_str()).collect(),
        ExtendedType::Enum(e) => e.values.keys().map(|k| k.as_str()).collect(),
        _ => Vec::new(),
    }
}

/// Maps every named type inside `ty` to its public name.
pub(crate) fn map_type(ty: &Type, sg: &Subgraph) -> Type {
    match ty {
        Type::Named(n) => Type::Named(Name::new_unchecked(sg.public_type(n))),
        Type::NonNullNamed(n) => Type::NonNullNamed(Name::new_unchecked(sg.public_type(n))),
        Type::List(inner) => Type::List(Box::new(map_type(inner, sg))),
        Type::NonNullList(inner) => Type::NonNullList(Box::new(map_type(inner, sg))),
    }
}

fn keep_directive(d: &Node<ast::Directive>) -> bool {
    matches!(d.name.as_str(), "deprecated" | "specifiedBy")
}

/// A subgraph type with public names, hidden fields removed and only
/// standard directives kept.
fn rename_type(
    ty: &ExtendedType,
    public_name: &Name,
    sg: &Subgraph,
    hide: &HashSet<String>,
    remote_name: &Name,
) -> ExtendedType {
    let hidden = |f: &Name| hide.contains(&format!("{remote_name}.{f}"));
    let field = |f: &Component<ast::FieldDefinition>| -> Component<ast::FieldDefinition> {
        let mut f = f.clone();
        let m = f.make_mut();
        m.ty = map_type(&m.ty, sg);
        m.directives.0.retain(keep_directive);
        for a in &mut m.arguments {
            let a = a.make_mut();
            a.ty = Node::new(map_type(&a.ty, sg));
            a.directives.0.retain(keep_directive);
        }
        f
    };
    let names = |set: &apollo_compiler::collections::IndexSet<ComponentName>| {
        set.iter()
            .map(|n| ComponentName::from(Name::new_unchecked(sg.public_type(n))))
            .collect()
    };
    // Objects and interfaces have the same shape; one macro keeps them in step.
    macro_rules! object_like {
        ($o:expr) => {{
            let mut o = $o.as_ref().clone();
            o.name = public_name.clone();
            o.directives.0.clear();
            o.fields = o
                .fields
                .iter()
                .filter(|(k, _)| !hidden(k))
                .map(|(k, v)| (k.clone(), field(v)))
                .collect();
            o.implements_interfaces = names(&o.implements_interfaces);
            o
        }};
    }
    match ty {
        ExtendedType::Object(o) => ExtendedType::Object(Node::new(object_like!(o))),
        ExtendedType::Interface(o) => ExtendedType::Interface(Node::new(object_like!(o))),
        ExtendedType::Union(u) => {
            let mut u = u.as_ref().clone();
            u.name = public_name.clone();
            u.directives.0.clear();
            u.members = names(&u.members);
            ExtendedType::Union(Node::new(u))
        }
        ExtendedType::Enum(e) => {
            let mut e = e.as_ref().clone();
            e.name = public_name.clone();
            e.directives.0.clear();
            e.values.retain(|k, _| !hidden(k));
            ExtendedType::Enum(Node::new(e))
        }
        ExtendedType::InputObject(i) => {
            let mut i = i.as_ref().clone();
            i.name = public_name.clone();
            i.directives.0.clear();
            i.fields = i
                .fields
                .iter()
                .filter(|(k, _)| !hidden(k))
                .map(|(k, v)| {
                    let mut v = v.clone();
                    let m = v.make_mut();
                    m.ty = Node::new(map_type(&m.ty, sg));
                    m.directives.0.retain(keep_directive);
                    (k.clone(), v)
                })
                .collect();
            ExtendedType::InputObject(Node::new(i))
        }
        ExtendedType::Scalar(s) => {
            let mut s = s.as_ref().clone();
            s.name = public_name.clone();
            s.directives
                .0
                .retain(|d| matches!(d.name.as_str(), "specifiedBy"));
            ExtendedType::Scalar(Node::new(s))
        }
    }
}

/// A definition's shape without descriptions and with members sorted: two
/// subgraphs' definitions merge when their fingerprints are equal.
fn fingerprint(ty: &ExtendedType) -> String {
    fn ty_args(args: &[Node<ast::InputValueDefinition>]) -> String {
        let mut v: Vec<String> = args
            .iter()
            .map(|a| {
                format!(
                    "{}: {}{}",
                    a.name,
                    a.ty,
                    a.default_value
                        .as_ref()
                        .map(|d| format!(" = {d}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        v.sort();
        if v.is_empty() {
            String::new()
        } else {
            format!("({})", v.join(", "))
        }
    }
    fn fields<'f>(defs: impl Iterator<Item = &'f Component<ast::FieldDefinition>>) -> String {
        let mut f: Vec<String> = defs
            .map(|f| format!("{}{}: {}", f.name, ty_args(&f.arguments), f.ty))
            .collect();
        f.sort();
        f.join(" ")
    }
    match ty {
        ExtendedType::Scalar(s) => format!("scalar {}", s.name),
        ExtendedType::Object(o) => format!("type {} {{ {} }}", o.name, fields(o.fields.values())),
        ExtendedType::Interface(o) => {
            format!("interface {} {{ {} }}", o.name, fields(o.fields.values()))
        }
        ExtendedType::Union(u) => {
            let mut m: Vec<&str> = u.members.iter().map(|m| m.as_str()).collect();
            m.sort();
            format!("union {} = {}", u.name, m.join(" | "))
        }
        ExtendedType::Enum(e) => {
            let mut v: Vec<&str> = e.values.keys().map(|k| k.as_str()).collect();
            v.sort();
            format!("enum {} {{ {} }}", e.name, v.join(" "))
        }
        ExtendedType::InputObject(i) => {
            let mut f: Vec<String> = i
                .fields
                .values()
                .map(|f| {
                    format!(
                        "{}: {}{}",
                        f.name,
                        f.ty,
                        f.default_value
                            .as_ref()
                            .map(|d| format!(" = {d}"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            f.sort();
            format!("input {} {{ {} }}", i.name, f.join(" "))
        }
    }
}

fn prune_unreachable(schema: &mut Schema) {
    let mut seen: HashSet<Name> = HashSet::new();
    let mut queue: VecDeque<Name> = VecDeque::new();
    for (op, _) in ROOTS {
        if let Some(r) = schema.root_operation(op) {
            queue.push_back(r.clone());
        }
    }
    let implementers = schema.implementers_map();
    while let Some(name) = queue.pop_front() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Some(ty) = schema.types.get(&name) else {
            continue;
        };
        let mut push = |n: &Name| {
            if !seen.contains(n) {
                queue.push_back(n.clone());
            }
        };
        match ty {
            ExtendedType::Object(o) => {
                for f in o.fields.values() {
                    push(f.ty.inner_named_type());
                    f.arguments
                        .iter()
                        .for_each(|a| push(a.ty.inner_named_type()));
                }
                o.implements_interfaces.iter().for_each(|i| push(i));
            }
            ExtendedType::Interface(o) => {
                for f in o.fields.values() {
                    push(f.ty.inner_named_type());
                    f.arguments
                        .iter()
                        .for_each(|a| push(a.ty.inner_named_type()));
                }
                o.implements_interfaces.iter().for_each(|i| push(i));
                if let Some(imp) = implementers.get(&name) {
                    imp.objects.iter().for_each(&mut push);
                    imp.interfaces.iter().for_each(&mut push);
                }
            }
            ExtendedType::Union(u) => u.members.iter().for_each(|m| push(m)),
            ExtendedType::InputObject(i) => i
                .fields
                .values()
                .for_each(|f| push(f.ty.inner_named_type())),
            ExtendedType::Scalar(_) | ExtendedType::Enum(_) => {}
        }
    }
    schema
        .types
        .retain(|name, ty| ty.is_built_in() || name.starts_with("__") || seen.contains(name));
}

#[cfg(test)]
mod tests {
    use crate::testing::{build_err, spec, supergraph, DATASET, PIPELINE};

    #[test]
    fn merges_identical_types_renames_roots_hides_and_prunes() {
        let sg = supergraph();
        let sdl = sg.sdl();
        // Tag and DateTime come from two subgraphs and merge into one.
        assert_eq!(sdl.matches("type Tag {").count(), 1);
        assert_eq!(sdl.matches("scalar DateTime").count(), 1);
        assert_eq!(sg.type_owners["Tag"], vec![0, 1]);
        // QueryRoot/MutationRoot become Query/Mutation; hidden fields are gone.
        assert!(sdl.contains("type Query {"), "{sdl}");
        assert!(
            !sdl.contains("QueryRoot")
                && !sdl.contains("pipelinesByIds")
                && !sdl.contains("datasetsByIds")
        );
        assert!(!sdl.contains("pipelineLogs"), "{sdl}");
        // Stitched fields are there, without their directives.
        assert!(sdl.contains("producedBy: Pipeline") && sdl.contains("datasets: [Dataset!]!"));
        assert!(!sdl.contains("@delegate") && !sdl.contains("@schema"));
        let d = sg.delegation("Pipeline", "datasets").unwrap();
        assert!(d.batch);
        assert_eq!(d.requires, ["datasetIds"]);
        assert_eq!(sg.subgraphs[d.subgraph].name, "dataset");
        assert_eq!(d.argument_types[0]["ids"], "[ID!]!");
        let root = sg.delegation("Query", "pipeline").unwrap();
        assert_eq!(root.path[0].to_string(), "pipeline");
        assert_eq!(root.argument_types[0]["id"], "ID!");
    }

    #[test]
    fn conflicting_types_name_the_type_and_both_subgraphs() {
        let other = DATASET.replace(
            "type Tag { key: String! value: String! }",
            "type Tag { key: String! value: Int! }",
        );
        let errors = build_err(&[spec("pipeline", PIPELINE, ""), spec("dataset", &other, "")]);
        let text = errors.to_string();
        assert_eq!(errors.0.len(), 1, "{text}");
        assert_eq!(errors.0[0].code(), "TYPE_CONFLICT");
        assert!(
            text.contains(
                "type `Tag` is defined differently by subgraphs `pipeline` and `dataset`"
            ),
            "{text}"
        );
        assert!(
            text.contains("value: Int!") && text.contains("value: String!"),
            "{text}"
        );
        assert!(text.contains("rename_types"), "{text}");
    }

    #[test]
    fn a_rename_or_a_hide_resolves_a_conflict() {
        let other = DATASET.replace(
            "type Tag { key: String! value: String! }",
            "type Tag { key: String! value: Int! }",
        );
        let mut d = spec("dataset", &other, "");
        d.rename_types = vec![("Tag".into(), "DatasetTag".into())];
        let sg =
            crate::build(&[spec("pipeline", PIPELINE, ""), d]).unwrap_or_else(|e| panic!("{e}"));
        let sdl = sg.sdl();
        assert!(
            sdl.contains("type DatasetTag {") && sdl.contains("tags: [DatasetTag!]!"),
            "{sdl}"
        );
        assert_eq!(
            sg.subgraphs[1].remote_type(&apollo_compiler::Name::new("DatasetTag").unwrap()),
            "Tag"
        );

        let mut d = spec("dataset", &other.replace("tags: [Tag!]! ", ""), "");
        d.hide = vec!["Tag".into()];
        crate::build(&[spec("pipeline", PIPELINE, ""), d]).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn root_field_conflicts_and_unknown_hides_are_reported_together() {
        let twin = "type Query { pipeline(id: ID!): String }";
        let mut t = spec("twin", twin, "");
        t.hide = vec!["Query.nope".into(), "Nope".into()];
        t.rename_types = vec![("Missing".into(), "X".into())];
        let errors = build_err(&[spec("pipeline", PIPELINE, ""), t]);
        let codes: Vec<&str> = errors.0.iter().map(|e| e.code()).collect();
        assert_eq!(
            codes,
            [
                "UNKNOWN_RENAMED_TYPE",
                "UNKNOWN_HIDDEN_ELEMENT",
                "UNKNOWN_HIDDEN_ELEMENT",
                "ROOT_FIELD_CONFLICT"
            ],
            "{errors}"
        );
        assert!(errors
            .to_string()
            .contains("`Query.pipeline` is defined by subgraphs `pipeline` and `twin`"));
    }

    #[test]
    fn every_bad_path_is_reported_at_once_with_file_and_line() {
        let stitching = r#"extend type Pipeline {
  a: Dataset @delegate(path: "datasetz(id: $fields:id)")
  b: Dataset @delegate(path: "dataset(id: $fields:nope)")
  c: Dataset @delegate(path: "dataset(id: $arguments:x, extra: 1)")
  d: Dataset @delegate(path: "dataset(id: $fields:id")
  e: [Dataset]! @delegate(path: "dataset(id: $fields:id)", batch: true)
  f: Dataset @delegate(path: "dataset")
  g: Dataset
}
extend type Nope { x: Int @delegate(path: "dataset(id: 1)") }
"#;
        let errors = build_err(&[
            spec("pipeline", PIPELINE, ""),
            spec("dataset", DATASET, stitching),
        ]);
        let lines: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
        let has = |needle: &str| {
            assert!(
                lines.iter().any(|l| l.contains(needle)),
                "{needle} not in:\n{}",
                lines.join("\n")
            )
        };
        has("dataset-stitching.graphql:2:");
        has("subgraph `dataset` has no field `Query.datasetz` (it has: dataset, datasetsByIds)");
        has("dataset-stitching.graphql:3:");
        has("`$fields:nope`: type `Pipeline` has no field `nope`");
        has("`$arguments:x`: `Pipeline.c` has no argument `x`");
        has("`Query.dataset` has no argument `extra`");
        has("dataset-stitching.graphql:5:");
        has("expected `)`");
        has("batch: true needs argument `id` of `Query.dataset` to be a list");
        has("`Query.dataset` requires argument `id`, which the path does not give");
        has("`Pipeline.g` is added without @delegate");
        has("no subgraph defines a type `Nope`");
    }

    #[test]
    fn a_broken_subgraph_schema_is_reported_with_its_origin() {
        let errors = build_err(&[spec("pipeline", "type Query { a: Missing }", "")]);
        let text = errors.to_string();
        assert!(
            text.contains("pipeline.graphql:1:") && text.contains("subgraph `pipeline`"),
            "{text}"
        );
    }
}
