//! Subgraph schemas (any dialect) + stitching SDL -> one public schema and
//! the model the planner reads, in named stages:
//!
//! 1. `read_sources`: each subgraph's SDL, its dialect directives, renames, hides;
//! 2. `read_stitching`: stitched fields, entity paths and new types;
//! 3. `merge_types`: every type of every subgraph into one definition;
//! 4. `add_stitched_fields`;
//! 5. `public_schema`: `@inaccessible` removed, unreachable types pruned, validated;
//! 6. `resolve::model`: field sources, entity resolvers, delegations;
//! 7. `satisfy::check`: sharing, externals, overrides, satisfiability.

use std::collections::{HashMap, HashSet, VecDeque};

use apollo_compiler::{
    ast::{self, OperationType, Type},
    collections::IndexMap,
    parser::SourceMap,
    schema::{Component, ComponentName, ComponentOrigin, ExtendedType},
    validation::Valid,
    Name, Node, Schema,
};

use super::{
    diagnostics, resolve, satisfy,
    source::{self, Source},
    BuildError, BuildErrorKind as K, BuildErrors, Dialect, Subgraph, SubgraphId, SubgraphSpec,
    Supergraph,
};
use crate::directives::{self, StitchedEntity, StitchedField};

pub(crate) const ROOTS: [(OperationType, &str); 3] = [
    (OperationType::Query, "Query"),
    (OperationType::Mutation, "Mutation"),
    (OperationType::Subscription, "Subscription"),
];

/// Builds the composed schema, reporting every problem at once.
pub fn build(specs: &[SubgraphSpec]) -> Result<Supergraph, BuildErrors> {
    let mut errors: Vec<BuildError> = Vec::new();
    let (sources, subgraphs) = read_sources(specs, &mut errors);
    let stitching = read_stitching(specs, &mut errors);
    let mut merged = merge_types(&sources, &subgraphs, &stitching, &mut errors);
    add_stitched_fields(&mut merged, &stitching, &mut errors);
    let full = merged.schema;
    let Some(schema) = public_schema(&full, &sources, &subgraphs, &mut errors) else {
        return Err(BuildErrors(errors));
    };
    let model = resolve::model(
        &resolve::Inputs {
            full: &full,
            public: &schema,
            sources: &sources,
            subgraphs: &subgraphs,
            owners: &merged.owners,
            stitching: &stitching,
        },
        &mut errors,
    );
    satisfy::check(
        &schema,
        &model,
        &sources,
        &subgraphs,
        &merged.conflicted,
        &mut errors,
    );
    let access = access_rules(&schema, &sources, &subgraphs, &stitching, &mut errors);
    if !errors.is_empty() {
        return Err(BuildErrors(errors));
    }
    let implementers = schema.implementers_map();
    Ok(Supergraph {
        schema,
        implementers,
        subgraphs,
        model,
        access,
    })
}

/// The access rules of every subgraph's SDL (in public names; a rule on
/// something hidden from the public graph has nothing to guard) and of
/// the stitching SDL (which must name a public type or field).
fn access_rules(
    schema: &Schema,
    sources: &[Source],
    subgraphs: &[Subgraph],
    stitching: &Stitching,
    errors: &mut Vec<BuildError>,
) -> crate::authorization::AccessRules {
    let mut rules = crate::authorization::AccessRules::default();
    for (source, sg) in sources.iter().zip(subgraphs) {
        for decl in &source.access {
            let ty = sg.public_type(&decl.type_name);
            let target = match &decl.field {
                Some(f) => format!("{ty}.{f}"),
                None => ty.to_owned(),
            };
            // Hidden or inaccessible: not public, nothing to guard.
            let _ = rules.add(schema, &target, decl.requirement.clone());
        }
    }
    for decl in &stitching.access {
        if let Err(message) = rules.add(schema, &decl.target, decl.requirement.clone()) {
            errors.push(BuildError::new(
                K::StitchingSdl,
                decl.location.clone(),
                message,
            ));
        }
    }
    rules
}

// ---- 1. sources -------------------------------------------------------------

fn read_sources(
    specs: &[SubgraphSpec],
    errors: &mut Vec<BuildError>,
) -> (Vec<Source>, Vec<Subgraph>) {
    let mut sources = Vec::new();
    let mut subgraphs = Vec::new();
    for spec in specs {
        let source = source::read(spec, errors);
        let (public_to_remote, remote_to_public) = renames(spec, &source.schema, errors);
        check_hides(spec, &source.schema, errors);
        subgraphs.push(Subgraph {
            name: spec.name.clone(),
            dialect: spec.dialect,
            schema: source.schema.clone(),
            public_to_remote,
            remote_to_public,
            variable_batching: spec.variable_batching,
        });
        sources.push(source);
    }
    (sources, subgraphs)
}

/// Root types get the public root names; `rename_types` the configured ones.
fn renames(
    spec: &SubgraphSpec,
    schema: &Schema,
    errors: &mut Vec<BuildError>,
) -> (HashMap<Name, Name>, HashMap<Name, Name>) {
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
    let public_to_remote = remote_to_public
        .iter()
        .map(|(r, p)| (p.clone(), r.clone()))
        .collect();
    (public_to_remote, remote_to_public)
}

fn check_hides(spec: &SubgraphSpec, schema: &Schema, errors: &mut Vec<BuildError>) {
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
    }
}

// ---- 2. stitching SDL ---------------------------------------------------------

/// What every stitching document contributes.
#[derive(Default)]
pub(crate) struct Stitching {
    pub fields: Vec<StitchedField>,
    pub entities: Vec<StitchedEntity>,
    /// New types, with the subgraph whose entry declared them.
    pub new_types: Vec<(SubgraphId, ExtendedType)>,
    pub access: Vec<directives::StitchedAccess>,
    pub sources: SourceMap,
}

fn read_stitching(specs: &[SubgraphSpec], errors: &mut Vec<BuildError>) -> Stitching {
    let mut out = Stitching::default();
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
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
            std::sync::Arc::make_mut(&mut out.sources)
                .extend(doc.sources.iter().map(|(k, v)| (*k, v.clone())));
            let read = directives::read_document(&doc, &spec.name, &names);
            errors.extend(read.errors);
            out.fields.extend(read.fields);
            out.access.extend(read.access);
            out.entities.extend(read.entities);
            out.new_types
                .extend(read.new_types.into_iter().map(|t| (id, t)));
        }
    }
    out
}

// ---- 3. types -------------------------------------------------------------------

pub(crate) struct Merged {
    pub schema: Schema,
    /// Public type -> the subgraphs that define it.
    pub owners: HashMap<Name, Vec<SubgraphId>>,
    /// Types whose definitions conflict (reported); later checks skip them.
    pub conflicted: HashSet<Name>,
}

/// One subgraph's definition of a public type.
struct Def<'a> {
    subgraph: SubgraphId,
    remote: &'a Name,
    ty: ExtendedType,
}

struct TypeMerge<'a> {
    sources: &'a [Source],
    subgraphs: &'a [Subgraph],
    errors: &'a mut Vec<BuildError>,
    /// Types some subgraph can fetch by key: their definitions may differ.
    entities: HashSet<Name>,
    /// Types whose definitions conflict: reported, merged as far as they go.
    conflicted: HashSet<Name>,
}

fn merge_types(
    sources: &[Source],
    subgraphs: &[Subgraph],
    stitching: &Stitching,
    errors: &mut Vec<BuildError>,
) -> Merged {
    let mut public = Schema::new();
    let defs = definitions(sources, subgraphs, &mut public);
    let entities = entity_types(sources, subgraphs, stitching);
    let mut m = TypeMerge {
        sources,
        subgraphs,
        errors,
        entities,
        conflicted: HashSet::new(),
    };
    let mut owners: HashMap<Name, Vec<SubgraphId>> = HashMap::new();
    for (name, list) in defs {
        owners.insert(name.clone(), list.iter().map(|d| d.subgraph).collect());
        let is_root = ROOTS
            .iter()
            .any(|(op, _)| public.root_operation(*op) == Some(&name));
        match m.merge(&name, &list, is_root) {
            Some(ty) => {
                public.types.insert(name, ty);
            }
            None => {
                m.conflicted.insert(name.clone());
                // Keep the first definition so the rest of the build reports
                // its own problems, not knock-on ones.
                public.types.insert(name, list[0].ty.clone());
            }
        }
    }
    for (id, ty) in &stitching.new_types {
        let name = ty.name().clone();
        if public.types.contains_key(&name) {
            m.errors.push(BuildError::new(
                K::StitchingSdl,
                ty.location().and_then(|l| directives::location(l, &stitching.sources)),
                format!("type `{name}` is already defined by a subgraph; use `extend type {name}` to add fields"),
            ));
            continue;
        }
        public.types.insert(name.clone(), ty.clone());
        owners.entry(name).or_default().push(*id);
    }
    Merged {
        schema: public,
        owners,
        conflicted: m.conflicted,
    }
}

/// Every subgraph's definition of every public type, in subgraph order; the
/// public root types are named as they are found.
fn definitions<'s>(
    sources: &'s [Source],
    subgraphs: &'s [Subgraph],
    public: &mut Schema,
) -> IndexMap<Name, Vec<Def<'s>>> {
    let mut defs: IndexMap<Name, Vec<Def<'_>>> = IndexMap::default();
    for (id, (source, sg)) in sources.iter().zip(subgraphs).enumerate() {
        let root_kinds: HashMap<&Name, OperationType> = ROOTS
            .iter()
            .filter_map(|(op, _)| sg.schema.root_operation(*op).map(|n| (n, *op)))
            .collect();
        for (name, ty) in &sg.schema.types {
            if ty.is_built_in() || name.starts_with("__") || source.hidden.contains(name.as_str()) {
                continue;
            }
            let public_name = Name::new_unchecked(sg.public_type(name));
            if let Some(op) = root_kinds.get(name) {
                set_root(&mut public.schema_definition, *op, &public_name);
            }
            let renamed = rename_type(ty, &public_name, sg, source, name);
            defs.entry(public_name).or_default().push(Def {
                subgraph: id,
                remote: name,
                ty: renamed,
            });
        }
    }
    defs
}

/// Types some subgraph fetches by key (a `@key`, a `@lookup`, a type-level
/// `@delegate`): their definitions may differ between subgraphs.
fn entity_types(
    sources: &[Source],
    subgraphs: &[Subgraph],
    stitching: &Stitching,
) -> HashSet<Name> {
    let mut entities: HashSet<Name> = stitching
        .entities
        .iter()
        .map(|e| e.type_name.clone())
        .collect();
    for (source, sg) in sources.iter().zip(subgraphs) {
        for k in &source.keys {
            entities.insert(Name::new_unchecked(sg.public_type(&k.type_name)));
        }
        for ((t, fname), f) in &source.flags {
            if f.lookup.is_some() {
                if let Ok(field) = sg.schema.type_field(t, fname) {
                    entities.insert(Name::new_unchecked(
                        sg.public_type(field.ty.inner_named_type()),
                    ));
                }
            }
        }
    }
    entities
}

impl TypeMerge<'_> {
    fn name(&self, id: SubgraphId) -> &str {
        &self.subgraphs[id].name
    }

    /// `file:line:column` of a definition in subgraph `id`'s SDL.
    fn at(
        &self,
        id: SubgraphId,
        span: Option<apollo_compiler::parser::SourceSpan>,
    ) -> Option<String> {
        span.and_then(|s| directives::location(s, &self.subgraphs[id].schema.sources))
    }

    fn stitching_only(&self, list: &[Def<'_>]) -> bool {
        list.iter()
            .all(|d| self.subgraphs[d.subgraph].dialect == Dialect::Stitching)
    }

    /// One definition for a public type, or `None` after reporting a conflict.
    fn merge(&mut self, name: &Name, list: &[Def<'_>], is_root: bool) -> Option<ExtendedType> {
        let first = &list[0];
        if let Some(other) = list.iter().find(|d| kind(&d.ty) != kind(&first.ty)) {
            self.errors.push(BuildError::new(
                K::TypeKindMismatch,
                self.at(other.subgraph, other.ty.location()),
                format!(
                    "`{name}` is {} in subgraph `{}` but {} in subgraph `{}`; a type has one kind everywhere (rename one with `rename_types`)",
                    kind(&first.ty),
                    self.name(first.subgraph),
                    kind(&other.ty),
                    self.name(other.subgraph)
                ),
            ));
            return None;
        }
        if is_root {
            return self.merge_root(name, list);
        }
        let same = list
            .iter()
            .all(|d| fingerprint(&d.ty) == fingerprint(&first.ty));
        if same {
            return Some(first.ty.clone());
        }
        if self.stitching_only(list) && !self.entities.contains(name) {
            let other = list
                .iter()
                .find(|d| fingerprint(&d.ty) != fingerprint(&first.ty))
                .unwrap_or(first);
            self.type_conflict(name, first, other);
            return None;
        }
        match &first.ty {
            ExtendedType::Object(_) | ExtendedType::Interface(_) => {
                self.merge_object_like(name, list)
            }
            ExtendedType::Union(u) => {
                let mut u = u.as_ref().clone();
                for d in &list[1..] {
                    if let ExtendedType::Union(x) = &d.ty {
                        u.members.extend(x.members.iter().cloned());
                    }
                }
                Some(ExtendedType::Union(Node::new(u)))
            }
            ExtendedType::Enum(e) => {
                let values = |t: &ExtendedType| -> Vec<Name> {
                    match t {
                        ExtendedType::Enum(e) => {
                            let mut v: Vec<Name> = e.values.keys().cloned().collect();
                            v.sort();
                            v
                        }
                        _ => Vec::new(),
                    }
                };
                let mine = values(&first.ty);
                if let Some(other) = list.iter().find(|d| values(&d.ty) != mine) {
                    self.errors.push(BuildError::new(
                        K::EnumValuesMismatch,
                        self.at(other.subgraph, other.ty.location()),
                        format!(
                            "enum `{name}` has values [{}] in subgraph `{}` but [{}] in subgraph `{}`; make them equal, or mark the extra values @inaccessible",
                            join(&mine),
                            self.name(first.subgraph),
                            join(&values(&other.ty)),
                            self.name(other.subgraph)
                        ),
                    ));
                    return None;
                }
                Some(ExtendedType::Enum(e.clone()))
            }
            ExtendedType::InputObject(_) => self.merge_input(name, list),
            ExtendedType::Scalar(_) => Some(first.ty.clone()),
        }
    }

    fn type_conflict(&mut self, name: &Name, first: &Def<'_>, other: &Def<'_>) {
        let (a, b) = (self.name(first.subgraph), self.name(other.subgraph));
        let message = format!(
            "type `{name}` is defined differently by subgraphs `{a}` and `{b}`:\n      {a}: {}\n      {b}: {}\n    make the definitions identical, rename one (`rename_types = {{ {} = \"{}{name}\" }}` in the `{b}` entry), or hide it",
            fingerprint(&first.ty),
            fingerprint(&other.ty),
            other.remote,
            capitalize(b),
        );
        let at = self.at(other.subgraph, other.ty.location());
        self.errors
            .push(BuildError::new(K::TypeConflict, at, message));
    }

    /// Root types: the union of fields; a field in two subgraphs must be
    /// shareable in both (and is a conflict if a stitching subgraph is one).
    fn merge_root(&mut self, name: &Name, list: &[Def<'_>]) -> Option<ExtendedType> {
        let mut target: Option<Node<apollo_compiler::schema::ObjectType>> = None;
        let mut owner: HashMap<Name, SubgraphId> = HashMap::new();
        for d in list {
            let ExtendedType::Object(obj) = &d.ty else {
                continue;
            };
            let t = target.get_or_insert_with(|| {
                let mut empty = obj.as_ref().clone();
                empty.fields.clear();
                empty.description = None;
                Node::new(empty)
            });
            for (fname, fdef) in &obj.fields {
                if let Some(first) = owner.get(fname) {
                    let stitching = [*first, d.subgraph]
                        .iter()
                        .any(|s| self.subgraphs[*s].dialect == Dialect::Stitching);
                    let shareable = name != "Subscription"
                        && [(*first, None), (d.subgraph, Some(d.remote))]
                            .iter()
                            .all(|(s, remote)| self.shareable(*s, remote.unwrap_or(name), fname));
                    if stitching {
                        self.errors.push(BuildError::new(
                            K::RootFieldConflict,
                            None,
                            format!(
                                "`{name}.{fname}` is defined by subgraphs `{}` and `{}`; hide one of them (`hide = [\"{}.{fname}\"]`)",
                                self.name(*first),
                                self.name(d.subgraph),
                                d.remote
                            ),
                        ));
                    } else if !shareable {
                        let at = self.at(d.subgraph, fdef.location());
                        self.sharing_error(name, fname, *first, d.subgraph, at);
                    }
                    continue;
                }
                owner.insert(fname.clone(), d.subgraph);
                t.make_mut().fields.insert(fname.clone(), fdef.clone());
            }
        }
        let t = target?;
        if t.fields.is_empty() {
            return None;
        }
        Some(ExtendedType::Object(t))
    }

    fn sharing_error(
        &mut self,
        type_name: &Name,
        field: &Name,
        a: SubgraphId,
        b: SubgraphId,
        at: Option<String>,
    ) {
        self.errors.push(BuildError::new(
            K::FieldSharing,
            at,
            format!(
                "`{type_name}.{field}` is resolved by subgraphs `{}` and `{}` but is not @shareable in both; mark it @shareable where it is defined, or @external (Federation) / @override it",
                self.name(a),
                self.name(b)
            ),
        ));
    }

    /// Whether subgraph `id` marks `remote_type.field` shareable (or its
    /// dialect shares fields freely: stitching, Federation 1).
    fn shareable(&self, id: SubgraphId, remote_type: &str, field: &str) -> bool {
        let source = &self.sources[id];
        if self.subgraphs[id].dialect == Dialect::Stitching {
            return true;
        }
        source.shareable_types.contains(remote_type)
            || source
                .flags(remote_type, field)
                .is_some_and(|f| f.shareable || f.external || f.override_from.is_some())
            || source.keys.iter().any(|k| {
                k.type_name == remote_type
                    && k.fields
                        .text
                        .split(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
                        .any(|w| w == field)
            })
    }

    /// Objects and interfaces: the union of fields, each field's type the
    /// least restrictive of its definitions, arguments in every definition.
    fn merge_object_like(&mut self, name: &Name, list: &[Def<'_>]) -> Option<ExtendedType> {
        let mut fields: IndexMap<Name, Vec<(SubgraphId, Component<ast::FieldDefinition>, bool)>> =
            IndexMap::default();
        let mut interfaces: Vec<ComponentName> = Vec::new();
        let mut description = None;
        for d in list {
            let (fs, imps, desc) = match &d.ty {
                ExtendedType::Object(o) => (&o.fields, &o.implements_interfaces, &o.description),
                ExtendedType::Interface(i) => (&i.fields, &i.implements_interfaces, &i.description),
                _ => continue,
            };
            if description.is_none() {
                description = desc.clone();
            }
            for i in imps {
                if !interfaces.contains(i) {
                    interfaces.push(i.clone());
                }
            }
            for (fname, fdef) in fs {
                let external = self.sources[d.subgraph]
                    .flags(d.remote, fname)
                    .is_some_and(|f| f.external);
                fields
                    .entry(fname.clone())
                    .or_default()
                    .push((d.subgraph, fdef.clone(), external));
            }
        }
        let mut ok = true;
        let mut merged: IndexMap<Name, Component<ast::FieldDefinition>> = IndexMap::default();
        for (fname, defs) in fields {
            let field = self.merge_field(name, &fname, &defs, &mut ok);
            merged.insert(fname, field);
        }
        if !ok {
            self.conflicted.insert(name.clone());
        }
        Some(match &list[0].ty {
            ExtendedType::Interface(i) => {
                let mut i = i.as_ref().clone();
                i.fields = merged;
                i.implements_interfaces = interfaces.into_iter().collect();
                i.description = description;
                ExtendedType::Interface(Node::new(i))
            }
            ExtendedType::Object(o) => {
                let mut o = o.as_ref().clone();
                o.fields = merged;
                o.implements_interfaces = interfaces.into_iter().collect();
                o.description = description;
                ExtendedType::Object(Node::new(o))
            }
            other => other.clone(),
        })
    }

    /// One field of `name` from its definitions (subgraph, field, external):
    /// the least restrictive type of the non-external ones, arguments in
    /// every one. A conflict is reported and clears `ok`.
    fn merge_field(
        &mut self,
        name: &Name,
        fname: &Name,
        defs: &[(SubgraphId, Component<ast::FieldDefinition>, bool)],
        ok: &mut bool,
    ) -> Component<ast::FieldDefinition> {
        // External definitions do not shape the public field.
        let base: Vec<&(SubgraphId, Component<ast::FieldDefinition>, bool)> =
            defs.iter().filter(|d| !d.2).collect();
        let base = if base.is_empty() {
            defs.iter().collect()
        } else {
            base
        };
        let mut field = base[0].1.clone();
        for other in &base[1..] {
            match least_restrictive(&field.ty, &other.1.ty) {
                Some(t) => field.make_mut().ty = t,
                None => {
                    *ok = false;
                    // The first definition's type stands, so the rest
                    // of the build still sees the field.
                    self.errors.push(BuildError::new(
                        K::OutputFieldTypes,
                        self.at(other.0, other.1.location()),
                        format!(
                            "`{name}.{fname}` is `{}` in subgraph `{}` but `{}` in subgraph `{}`; the types must differ at most in nullability",
                            base[0].1.ty,
                            self.name(base[0].0),
                            other.1.ty,
                            self.name(other.0)
                        ),
                    ));
                }
            }
            if !self.merge_arguments(name, fname, &mut field, other) {
                *ok = false;
            }
        }
        field
    }

    /// Arguments in every definition stay (non-null if any definition says
    /// so); one required somewhere but missing elsewhere is an error.
    fn merge_arguments(
        &mut self,
        type_name: &Name,
        field_name: &Name,
        field: &mut Component<ast::FieldDefinition>,
        other: &(SubgraphId, Component<ast::FieldDefinition>, bool),
    ) -> bool {
        let mut ok = true;
        let other_args = &other.1.arguments;
        let mine = field.arguments.clone();
        let mut kept = Vec::new();
        for a in &mine {
            match other_args.iter().find(|o| o.name == a.name) {
                Some(o) => {
                    if a.ty.inner_named_type() != o.ty.inner_named_type()
                        || list_depth(&a.ty) != list_depth(&o.ty)
                    {
                        ok = false;
                        self.errors.push(BuildError::new(
                            K::ArgumentTypes,
                            self.at(other.0, o.location()),
                            format!(
                                "argument `{}` of `{type_name}.{field_name}` is `{}` in one subgraph and `{}` in subgraph `{}`",
                                a.name, a.ty, o.ty, self.name(other.0)
                            ),
                        ));
                        continue;
                    }
                    let mut a = a.clone();
                    if o.ty.is_non_null() && !a.ty.is_non_null() {
                        a.make_mut().ty = Node::new(o.ty.as_ref().clone());
                    }
                    kept.push(a);
                }
                None if a.ty.is_non_null() && a.default_value.is_none() => {
                    ok = false;
                    self.errors.push(BuildError::new(
                        K::ArgumentTypes,
                        self.at(other.0, other.1.location()),
                        format!(
                            "`{type_name}.{field_name}` requires argument `{}`, which subgraph `{}` does not declare",
                            a.name,
                            self.name(other.0)
                        ),
                    ));
                }
                None => {}
            }
        }
        for o in other_args {
            if o.ty.is_non_null()
                && o.default_value.is_none()
                && !mine.iter().any(|a| a.name == o.name)
            {
                ok = false;
                self.errors.push(BuildError::new(
                    K::ArgumentTypes,
                    self.at(other.0, o.location()),
                    format!(
                        "`{type_name}.{field_name}` requires argument `{}` in subgraph `{}`, which other subgraphs do not declare",
                        o.name,
                        self.name(other.0)
                    ),
                ));
            }
        }
        field.make_mut().arguments = kept;
        ok
    }

    /// Input objects: the fields every definition has, each non-null if any
    /// definition says so; a required field missing somewhere is an error.
    fn merge_input(&mut self, name: &Name, list: &[Def<'_>]) -> Option<ExtendedType> {
        let ExtendedType::InputObject(first) = &list[0].ty else {
            return None;
        };
        let mut ok = true;
        let mut out = first.as_ref().clone();
        let all: Vec<&apollo_compiler::schema::InputObjectType> = list
            .iter()
            .filter_map(|d| match &d.ty {
                ExtendedType::InputObject(i) => Some(i.as_ref()),
                _ => None,
            })
            .collect();
        let mut names: Vec<Name> = Vec::new();
        for i in &all {
            for f in i.fields.keys() {
                if !names.contains(f) {
                    names.push(f.clone());
                }
            }
        }
        let mut fields = IndexMap::default();
        for fname in names {
            let defs: Vec<(usize, &Component<ast::InputValueDefinition>)> = all
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.fields.get(&fname).map(|f| (i, f)))
                .collect();
            if defs.len() < all.len() {
                if let Some((i, f)) = defs.iter().find(|(_, f)| f.ty.is_non_null()) {
                    ok = false;
                    let missing = (0..all.len())
                        .find(|j| !defs.iter().any(|(k, _)| k == j))
                        .unwrap_or(0);
                    self.errors.push(BuildError::new(
                        K::InputMissingRequired,
                        self.at(list[*i].subgraph, f.location()),
                        format!(
                            "input `{name}`: field `{fname}` is required in subgraph `{}` but missing in subgraph `{}`",
                            self.name(list[*i].subgraph),
                            self.name(list[missing].subgraph)
                        ),
                    ));
                }
                continue;
            }
            match self.merge_input_field(name, &fname, &defs, list) {
                Some(field) => {
                    fields.insert(fname, field);
                }
                None => ok = false,
            }
        }
        if !ok {
            // Reported; the first definition stands for the rest of the build.
            self.conflicted.insert(name.clone());
            return Some(list[0].ty.clone());
        }
        out.fields = fields;
        Some(ExtendedType::InputObject(Node::new(out)))
    }

    /// One input field in every definition: same type shape, equal defaults,
    /// non-null if any says so; `None` after reporting a conflict.
    fn merge_input_field(
        &mut self,
        name: &Name,
        fname: &Name,
        defs: &[(usize, &Component<ast::InputValueDefinition>)],
        list: &[Def<'_>],
    ) -> Option<Component<ast::InputValueDefinition>> {
        let mut ok = true;
        let mut field = defs[0].1.clone();
        for (i, other) in &defs[1..] {
            if field.ty.inner_named_type() != other.ty.inner_named_type()
                || list_depth(&field.ty) != list_depth(&other.ty)
            {
                ok = false;
                self.errors.push(BuildError::new(
                    K::InputFieldTypes,
                    self.at(list[*i].subgraph, other.location()),
                    format!(
                        "input `{name}`: field `{fname}` is `{}` in subgraph `{}` but `{}` in subgraph `{}`",
                        field.ty,
                        self.name(list[0].subgraph),
                        other.ty,
                        self.name(list[*i].subgraph)
                    ),
                ));
                continue;
            }
            if let (Some(a), Some(b)) = (&field.default_value, &other.default_value) {
                if a != b {
                    ok = false;
                    self.errors.push(BuildError::new(
                        K::InputDefaultMismatch,
                        self.at(list[*i].subgraph, other.location()),
                        format!(
                            "input `{name}`: field `{fname}` defaults to `{a}` in one subgraph and `{b}` in subgraph `{}`",
                            self.name(list[*i].subgraph)
                        ),
                    ));
                }
            }
            if other.ty.is_non_null() && !field.ty.is_non_null() {
                field.make_mut().ty = other.ty.clone();
            }
        }
        ok.then_some(field)
    }
}

fn join(names: &[Name]) -> String {
    names
        .iter()
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn kind(ty: &ExtendedType) -> &'static str {
    match ty {
        ExtendedType::Scalar(_) => "a scalar",
        ExtendedType::Object(_) => "an object type",
        ExtendedType::Interface(_) => "an interface",
        ExtendedType::Union(_) => "a union",
        ExtendedType::Enum(_) => "an enum",
        ExtendedType::InputObject(_) => "an input type",
    }
}

fn list_depth(ty: &Type) -> usize {
    match ty {
        Type::Named(_) | Type::NonNullNamed(_) => 0,
        Type::List(i) | Type::NonNullList(i) => 1 + list_depth(i),
    }
}

/// The output type both definitions fit: same named type and list shape,
/// nullable where either is.
fn least_restrictive(a: &Type, b: &Type) -> Option<Type> {
    match (a, b) {
        (Type::Named(x) | Type::NonNullNamed(x), Type::Named(y) | Type::NonNullNamed(y))
            if x == y =>
        {
            Some(if a.is_non_null() && b.is_non_null() {
                Type::NonNullNamed(x.clone())
            } else {
                Type::Named(x.clone())
            })
        }
        (Type::List(x) | Type::NonNullList(x), Type::List(y) | Type::NonNullList(y)) => {
            let inner = least_restrictive(x, y)?;
            Some(if a.is_non_null() && b.is_non_null() {
                Type::NonNullList(Box::new(inner))
            } else {
                Type::List(Box::new(inner))
            })
        }
        _ => None,
    }
}

// ---- 4. stitched fields --------------------------------------------------------------

fn add_stitched_fields(merged: &mut Merged, stitching: &Stitching, errors: &mut Vec<BuildError>) {
    for field in &stitching.fields {
        let Some(ty) = merged.schema.types.get_mut(&field.type_name) else {
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
        let mut component = Component::new(field.definition.as_ref().clone());
        component.origin = ComponentOrigin::Definition;
        fields.insert(field.definition.name.clone(), component);
    }
    for e in &stitching.entities {
        if !merged.schema.types.contains_key(&e.type_name) {
            errors.push(BuildError::new(
                K::StitchingSdl,
                e.location.clone(),
                format!(
                    "`extend type {}` @delegate: no subgraph defines a type `{}`",
                    e.type_name, e.type_name
                ),
            ));
        }
    }
}

// ---- 5. public schema ---------------------------------------------------------------

/// `@inaccessible` members (hidden wherever any subgraph marks them) are
/// removed, unreachable types pruned, and the result validated.
fn public_schema(
    full: &Schema,
    sources: &[Source],
    subgraphs: &[Subgraph],
    errors: &mut Vec<BuildError>,
) -> Option<Valid<Schema>> {
    let mut public = full.clone();
    let mut hidden: HashSet<String> = HashSet::new();
    for (source, sg) in sources.iter().zip(subgraphs) {
        for h in &source.inaccessible {
            let (t, rest) = match h.split_once('.') {
                Some((t, rest)) => (t, Some(rest)),
                None => (h.as_str(), None),
            };
            let t = sg.public_type(t);
            hidden.insert(match rest {
                Some(r) => format!("{t}.{r}"),
                None => t.to_owned(),
            });
        }
    }
    if !hidden.is_empty() {
        remove_inaccessible(&mut public, &hidden);
    }
    prune_unreachable(&mut public);
    match public.validate() {
        Ok(s) => Some(s),
        // Knock-on effects of problems already reported: go on, so every
        // other problem is found too (the build fails anyway).
        Err(e) if !errors.is_empty() => Some(Valid::assume_valid(e.partial)),
        Err(e) => {
            for (loc, msg) in diagnostics(&e.errors) {
                errors.push(BuildError::new(
                    K::PublicSchema,
                    loc,
                    format!("the composed schema is invalid: {msg}"),
                ));
            }
            None
        }
    }
}

fn remove_inaccessible(schema: &mut Schema, hidden: &HashSet<String>) {
    schema.types.retain(|n, _| !hidden.contains(n.as_str()));
    for (name, ty) in schema.types.iter_mut() {
        let is_hidden = |member: &str| hidden.contains(&format!("{name}.{member}"));
        match ty {
            ExtendedType::Object(o) => {
                let o = o.make_mut();
                o.fields.retain(|f, _| !is_hidden(f));
                for (fname, f) in o.fields.iter_mut() {
                    f.make_mut()
                        .arguments
                        .retain(|a| !hidden.contains(&format!("{name}.{fname}({})", a.name)));
                }
            }
            ExtendedType::Interface(i) => {
                let i = i.make_mut();
                i.fields.retain(|f, _| !is_hidden(f));
            }
            ExtendedType::Enum(e) => e.make_mut().values.retain(|v, _| !is_hidden(v)),
            ExtendedType::InputObject(i) => i.make_mut().fields.retain(|f, _| !is_hidden(f)),
            ExtendedType::Union(u) => u
                .make_mut()
                .members
                .retain(|m| !hidden.contains(m.as_str())),
            ExtendedType::Scalar(_) => {}
        }
    }
}

// ---- helpers ---------------------------------------------------------------------------------

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

/// A field of remote type `remote_name` as clients see it: public type
/// names, no subgraph directives, no `@require` arguments.
fn public_field(
    f: &Component<ast::FieldDefinition>,
    sg: &Subgraph,
    source: &Source,
    remote_name: &Name,
) -> Component<ast::FieldDefinition> {
    let mut f = f.clone();
    let m = f.make_mut();
    m.ty = map_type(&m.ty, sg);
    m.directives.0.retain(keep_directive);
    // `@require` arguments are the gateway's to fill: clients never see them.
    if let Some(flags) = source.flags(remote_name, &m.name) {
        m.arguments
            .retain(|a| !flags.require_args.iter().any(|(n, _)| *n == a.name));
    }
    for a in &mut m.arguments {
        let a = a.make_mut();
        a.ty = Node::new(map_type(&a.ty, sg));
        a.directives.0.retain(keep_directive);
    }
    // Fields from `extend type` (Federation subgraphs) print with the
    // type itself: the public schema has one definition per type.
    f.origin = ComponentOrigin::Definition;
    f
}

/// A subgraph type with public names, hidden fields removed and only
/// standard directives kept.
fn rename_type(
    ty: &ExtendedType,
    public_name: &Name,
    sg: &Subgraph,
    source: &Source,
    remote_name: &Name,
) -> ExtendedType {
    let hidden = |f: &Name| source.hidden.contains(&format!("{remote_name}.{f}"));
    let field = |f: &Component<ast::FieldDefinition>| public_field(f, sg, source, remote_name);
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
            for v in e.values.values_mut() {
                v.origin = ComponentOrigin::Definition;
            }
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
                    v.origin = ComponentOrigin::Definition;
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

pub(crate) fn prune_unreachable(schema: &mut Schema) {
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
        assert_eq!(sg.model.types["Tag"].owners, vec![0, 1]);
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
        assert_eq!(d.requires.to_string(), "datasetIds");
        assert_eq!(sg.subgraphs[d.subgraph].name, "dataset");
        assert_eq!(d.argument_types[0]["ids"], "[ID!]!");
        let root = sg.model.field("Query", "pipeline").unwrap();
        assert_eq!(root.sources[0].subgraph, 0);
        assert!(root.delegation.is_none());
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
