//! One subgraph's SDL, in whatever dialect it speaks, read into one shape:
//! its own schema (stripped of dialect directives, validated) and the flags
//! the dialect's directives put on its types and fields.
//!
//! Federation and Composite Schemas directives are read from the built (not
//! yet validated) schema, then removed, so a subgraph need not declare the
//! directives it uses, and `@link` renames (`@federation__key`, `as:`) work.

use std::collections::{HashMap, HashSet};

use apollo_compiler::{
    ast,
    schema::{ComponentName, ExtendedType},
    validation::Valid,
    Name, Node, Schema,
};

use super::{diagnostics, BuildError, BuildErrorKind as K, Dialect, SubgraphSpec};
use crate::directives::location;

/// A string argument of a directive and where it was written.
#[derive(Clone, Debug)]
pub(crate) struct Spanned {
    pub text: String,
    pub location: Option<String>,
}

/// What a dialect's directives say about one field of a subgraph.
#[derive(Clone, Debug, Default)]
pub(crate) struct FieldFlags {
    pub external: bool,
    pub shareable: bool,
    pub inaccessible: bool,
    pub internal: bool,
    pub override_from: Option<Spanned>,
    /// Federation `@requires(fields:)`.
    pub requires: Option<Spanned>,
    pub provides: Option<Spanned>,
    /// Composite `@require(field:)` per argument.
    pub require_args: Vec<(Name, Spanned)>,
    /// Composite `@lookup`: the arguments' `@is(field:)` maps, `None` where
    /// the argument maps to the field of its own name.
    pub lookup: Option<Vec<(Name, Option<Spanned>)>>,
    pub location: Option<String>,
}

/// `@key(fields:)` on a type.
#[derive(Clone, Debug)]
pub(crate) struct KeyDecl {
    pub type_name: Name,
    pub fields: Spanned,
    pub resolvable: bool,
}

/// `@authenticated` or `@requiresScopes` on a subgraph type or field.
pub(crate) struct AccessDecl {
    pub type_name: Name,
    pub field: Option<Name>,
    pub requirement: crate::authorization::Requirement,
}

/// A subgraph as its SDL describes it, before merging.
pub(crate) struct Source {
    /// Access rules, in the subgraph's names.
    pub access: Vec<AccessDecl>,
    pub schema: Valid<Schema>,
    /// `(type, field)` -> flags, subgraph names, only fields with any flag.
    pub flags: HashMap<(Name, Name), FieldFlags>,
    pub keys: Vec<KeyDecl>,
    /// Types whose every field is shareable (`@shareable` on the type).
    pub shareable_types: HashSet<Name>,
    /// `Type` or `Type.field` / `Type.value` / `Type.field(arg)` hidden by
    /// `@inaccessible` (in every subgraph, as the spec says).
    pub inaccessible: HashSet<String>,
    /// `Type` or `Type.field` that take no part in the public graph: config
    /// `hide`, `@internal`, and the dialect's own machinery (`_entities`).
    pub hidden: HashSet<String>,
}

impl Source {
    pub fn flags(&self, ty: &str, field: &str) -> Option<&FieldFlags> {
        let key = (Name::new(ty).ok()?, Name::new(field).ok()?);
        self.flags.get(&key)
    }
}

/// The canonical name of each dialect directive this subgraph may use,
/// keyed by the name it is written with.
fn directive_names(schema: &Schema, dialect: Dialect) -> HashMap<String, &'static str> {
    const FEDERATION: [&str; 14] = [
        "key",
        "external",
        "requires",
        "provides",
        "shareable",
        "inaccessible",
        "override",
        "extends",
        "tag",
        "interfaceObject",
        "composeDirective",
        "authenticated",
        "requiresScopes",
        "policy",
    ];
    const COMPOSITE: [&str; 13] = [
        "key",
        "external",
        "require",
        "provides",
        "shareable",
        "inaccessible",
        "override",
        "lookup",
        "is",
        "internal",
        "tag",
        "authenticated",
        "requiresScopes",
    ];
    let known: &[&'static str] = match dialect {
        Dialect::Federation => &FEDERATION,
        Dialect::Composite => &COMPOSITE,
        Dialect::Stitching => &["authenticated", "requiresScopes"],
    };
    let mut names: HashMap<String, &'static str> = HashMap::new();
    let mut linked = false;
    for link in schema.schema_definition.directives.get_all("link") {
        let url = link
            .specified_argument_by_name("url")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        if !url.contains("/federation/") && !url.contains("composite") {
            continue;
        }
        linked = true;
        link_names(link, url, known, &mut names);
    }
    // Federation 1 and plain source schemas write the directives bare; with
    // `@link`, a directive left out of `import` may still be used bare when
    // the subgraph defines it, and bare names never hurt.
    for k in known {
        if linked {
            names.entry((*k).to_owned()).or_insert(k);
        } else {
            names.insert((*k).to_owned(), k);
        }
    }
    names
}

/// The names one `@link` gives the spec's directives: `@namespace__key`
/// for all, and each `import` under its own name or its `as:`.
fn link_names(
    link: &apollo_compiler::schema::Component<ast::Directive>,
    url: &str,
    known: &[&'static str],
    names: &mut HashMap<String, &'static str>,
) {
    let namespace = link
        .specified_argument_by_name("as")
        .and_then(|v| v.as_str())
        .unwrap_or(if url.contains("/federation/") {
            "federation"
        } else {
            "composite"
        })
        .to_owned();
    for k in known {
        names.insert(format!("{namespace}__{k}"), k);
    }
    let imports = link
        .specified_argument_by_name("import")
        .and_then(|v| v.as_list())
        .unwrap_or(&[]);
    for import in imports {
        let (from, to) = match import.as_ref() {
            ast::Value::String(s) => (s.as_str(), s.as_str()),
            ast::Value::Object(fields) => {
                let get = |k: &str| {
                    fields
                        .iter()
                        .find(|(n, _)| n == k)
                        .and_then(|(_, v)| v.as_str())
                };
                match (get("name"), get("as")) {
                    (Some(n), Some(a)) => (n, a),
                    (Some(n), None) => (n, n),
                    _ => continue,
                }
            }
            _ => continue,
        };
        let (Some(from), Some(to)) = (from.strip_prefix('@'), to.strip_prefix('@')) else {
            continue;
        };
        if let Some(k) = known.iter().find(|k| **k == from) {
            names.insert(to.to_owned(), k);
        }
    }
}

/// Types and fields a Federation subgraph serves for the router only.
const FEDERATION_MACHINERY: [&str; 12] = [
    "_Service",
    "_Any",
    "_Entity",
    "_FieldSet",
    "FieldSet",
    "link__Import",
    "link__Purpose",
    "federation__FieldSet",
    "federation__Scope",
    "federation__Policy",
    "federation__ContextFieldValue",
    "federation__Scope",
];
const COMPOSITE_MACHINERY: [&str; 2] = ["FieldSelectionMap", "FieldSelectionSet"];

struct Reader<'a> {
    spec: &'a SubgraphSpec,
    names: HashMap<String, &'static str>,
    sources: apollo_compiler::parser::SourceMap,
    errors: &'a mut Vec<BuildError>,
    out_flags: HashMap<(Name, Name), FieldFlags>,
    keys: Vec<KeyDecl>,
    shareable_types: HashSet<Name>,
    inaccessible: HashSet<String>,
    internal: HashSet<String>,
    access: Vec<AccessDecl>,
}

impl Reader<'_> {
    /// Keeps `@authenticated`/`@requiresScopes` on `type_name` (or its `field`).
    fn access(
        &mut self,
        canonical: &str,
        d: &Node<ast::Directive>,
        type_name: &Name,
        field: Option<&Name>,
    ) {
        match crate::authorization::Requirement::read(canonical, d) {
            Some(Ok(requirement)) => self.access.push(AccessDecl {
                type_name: type_name.clone(),
                field: field.cloned(),
                requirement,
            }),
            Some(Err(message)) => {
                let at = field.map_or(type_name.to_string(), |f| format!("{type_name}.{f}"));
                self.errors.push(BuildError::new(
                    K::DirectiveInvalid,
                    self.loc(d.location()),
                    format!("subgraph `{}`: `{at}`: {message}", self.spec.name),
                ));
            }
            None => {}
        }
    }

    fn canonical(&self, name: &str) -> Option<&'static str> {
        self.names.get(name).copied()
    }

    fn loc(&self, node: Option<apollo_compiler::parser::SourceSpan>) -> Option<String> {
        node.and_then(|s| location(s, &self.sources))
    }

    fn string_arg(&mut self, d: &Node<ast::Directive>, arg: &str, what: &str) -> Option<Spanned> {
        let location = self.loc(d.location());
        match d.specified_argument_by_name(arg).map(|v| v.as_ref()) {
            Some(ast::Value::String(s)) => Some(Spanned {
                text: s.clone(),
                location,
            }),
            _ => {
                self.errors.push(BuildError::new(
                    K::DirectiveInvalid,
                    location,
                    format!(
                        "subgraph `{}`: {what} needs a string `{arg}:` argument",
                        self.spec.name
                    ),
                ));
                None
            }
        }
    }

    /// A `@lookup` field's arguments, each with its `@is(field:)` map.
    fn lookup_arguments(&self, field: &ast::FieldDefinition) -> Vec<(Name, Option<Spanned>)> {
        field
            .arguments
            .iter()
            .map(|arg| {
                let is = arg
                    .directives
                    .iter()
                    .find(|d| self.names.get(d.name.as_str()) == Some(&"is"));
                let map = is.and_then(|d| {
                    let location = d.location().and_then(|s| location(s, &self.sources));
                    match d.specified_argument_by_name("field").map(|v| v.as_ref()) {
                        Some(ast::Value::String(s)) => Some(Spanned {
                            text: s.clone(),
                            location,
                        }),
                        _ => None,
                    }
                });
                (arg.name.clone(), map)
            })
            .collect()
    }

    fn read_field(
        &mut self,
        type_name: &Name,
        field: &ast::FieldDefinition,
        span: Option<apollo_compiler::parser::SourceSpan>,
    ) {
        let mut flags = FieldFlags {
            location: self.loc(span),
            ..Default::default()
        };
        let mut any = false;
        for d in field.directives.iter() {
            let Some(c) = self.canonical(&d.name) else {
                continue;
            };
            if matches!(c, "authenticated" | "requiresScopes" | "policy") {
                self.access(c, d, type_name, Some(&field.name));
                continue;
            }
            any = true;
            match c {
                "external" => flags.external = true,
                "shareable" => flags.shareable = true,
                "inaccessible" => flags.inaccessible = true,
                "internal" => flags.internal = true,
                "override" => flags.override_from = self.string_arg(d, "from", "@override"),
                "requires" => flags.requires = self.string_arg(d, "fields", "@requires"),
                "provides" => flags.provides = self.string_arg(d, "fields", "@provides"),
                "lookup" => flags.lookup = Some(Vec::new()),
                _ => {}
            }
        }
        for arg in &field.arguments {
            for d in arg.directives.iter() {
                match self.canonical(&d.name) {
                    Some("require") => {
                        any = true;
                        if let Some(s) = self.string_arg(d, "field", "@require") {
                            flags.require_args.push((arg.name.clone(), s));
                        }
                    }
                    Some("inaccessible") => {
                        self.inaccessible
                            .insert(format!("{type_name}.{}({})", field.name, arg.name));
                    }
                    _ => {}
                }
            }
        }
        if let Some(lookup) = flags.lookup.as_mut() {
            *lookup = self.lookup_arguments(field);
        }
        if flags.inaccessible {
            self.inaccessible
                .insert(format!("{type_name}.{}", field.name));
        }
        if flags.internal {
            self.internal.insert(format!("{type_name}.{}", field.name));
        }
        if any {
            self.out_flags
                .insert((type_name.clone(), field.name.clone()), flags);
        }
    }

    /// Reads `@key`, `@shareable`, `@inaccessible`, `@internal` and field
    /// directives of every type.
    fn read_types(&mut self, schema: &Schema) {
        for (name, ty) in &schema.types {
            if ty.is_built_in() {
                continue;
            }
            let directives = ty.directives();
            for d in directives.iter() {
                match self.canonical(&d.name) {
                    Some("key") => {
                        let Some(fields) = self.string_arg(d, "fields", "@key") else {
                            continue;
                        };
                        let resolvable = !matches!(
                            d.specified_argument_by_name("resolvable")
                                .map(|v| v.as_ref()),
                            Some(ast::Value::Boolean(false))
                        );
                        self.keys.push(KeyDecl {
                            type_name: name.clone(),
                            fields,
                            resolvable,
                        });
                    }
                    Some("shareable") => {
                        self.shareable_types.insert(name.clone());
                    }
                    Some("inaccessible") => {
                        self.inaccessible.insert(name.to_string());
                    }
                    Some("internal") => {
                        self.internal.insert(name.to_string());
                    }
                    Some(c @ ("authenticated" | "requiresScopes" | "policy")) => {
                        self.access(c, d, name, None)
                    }
                    _ => {}
                }
            }
            match ty {
                ExtendedType::Object(o) => {
                    for f in o.fields.values() {
                        self.read_field(name, f, f.location());
                    }
                }
                ExtendedType::Interface(i) => {
                    for f in i.fields.values() {
                        self.read_field(name, f, f.location());
                    }
                }
                ExtendedType::Enum(e) => {
                    for v in e.values.values() {
                        if self.has_ast(&v.directives, "inaccessible") {
                            self.inaccessible.insert(format!("{name}.{}", v.value));
                        }
                    }
                }
                ExtendedType::InputObject(i) => {
                    for f in i.fields.values() {
                        if self.has_ast(&f.directives, "inaccessible") {
                            self.inaccessible.insert(format!("{name}.{}", f.name));
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn has_ast(&self, directives: &ast::DirectiveList, canonical: &str) -> bool {
        directives
            .iter()
            .any(|d| self.canonical(&d.name) == Some(canonical))
    }
}

fn keep_directive(name: &str) -> bool {
    matches!(name, "deprecated" | "specifiedBy")
}

fn strip_field(f: &mut apollo_compiler::schema::Component<ast::FieldDefinition>) {
    let f = f.make_mut();
    f.directives.0.retain(|d| keep_directive(&d.name));
    for a in &mut f.arguments {
        a.make_mut()
            .directives
            .0
            .retain(|d| keep_directive(&d.name));
    }
}

/// Removes every directive application but the standard ones, and every
/// directive definition that is not built in.
fn strip_directives(schema: &mut Schema) {
    schema.directive_definitions.retain(|_, d| {
        matches!(
            d.name.as_str(),
            "skip" | "include" | "deprecated" | "specifiedBy" | "oneOf"
        )
    });
    schema
        .schema_definition
        .make_mut()
        .directives
        .0
        .retain(|d| keep_directive(&d.name));
    let strip_ast = |list: &mut ast::DirectiveList| list.0.retain(|d| keep_directive(&d.name));
    for ty in schema.types.values_mut() {
        if ty.is_built_in() {
            continue;
        }
        match ty {
            ExtendedType::Object(o) => {
                let o = o.make_mut();
                o.directives.0.retain(|d| keep_directive(&d.name));
                o.fields.values_mut().for_each(strip_field);
            }
            ExtendedType::Interface(o) => {
                let o = o.make_mut();
                o.directives.0.retain(|d| keep_directive(&d.name));
                o.fields.values_mut().for_each(strip_field);
            }
            ExtendedType::Union(u) => u
                .make_mut()
                .directives
                .0
                .retain(|d| keep_directive(&d.name)),
            ExtendedType::Enum(e) => {
                let e = e.make_mut();
                e.directives.0.retain(|d| keep_directive(&d.name));
                for v in e.values.values_mut() {
                    strip_ast(&mut v.make_mut().directives);
                }
            }
            ExtendedType::InputObject(i) => {
                let i = i.make_mut();
                i.directives.0.retain(|d| keep_directive(&d.name));
                for f in i.fields.values_mut() {
                    strip_ast(&mut f.make_mut().directives);
                }
            }
            ExtendedType::Scalar(s) => s
                .make_mut()
                .directives
                .0
                .retain(|d| keep_directive(&d.name)),
        }
    }
}

/// Federation's router-only fields and types are removed: the gateway
/// speaks `_entities` itself, and clients never see them.
fn remove_machinery(schema: &mut Schema, dialect: Dialect) {
    let types: &[&str] = match dialect {
        Dialect::Federation => &FEDERATION_MACHINERY,
        Dialect::Composite => &COMPOSITE_MACHINERY,
        Dialect::Stitching => &[],
    };
    if dialect == Dialect::Federation {
        if let Some(q) = schema.schema_definition.query.clone() {
            if let Some(ExtendedType::Object(o)) = schema.types.get_mut(q.as_str()) {
                let o = o.make_mut();
                o.fields.shift_remove("_service");
                o.fields.shift_remove("_entities");
            }
        }
    }
    schema
        .types
        .retain(|name, _| !types.contains(&name.as_str()));
}

/// Reads one subgraph's SDL. Problems go to `errors`; what could be read is
/// returned so the other problems are found too.
pub(crate) fn read(spec: &SubgraphSpec, errors: &mut Vec<BuildError>) -> Source {
    let built = Schema::builder()
        .adopt_orphan_extensions()
        .parse(spec.schema_sdl.as_str(), &spec.schema_origin)
        .build();
    let mut schema = match built {
        Ok(s) => s,
        Err(e) => {
            report(spec, &e.errors, errors);
            e.partial
        }
    };
    let mut reader = Reader {
        spec,
        names: directive_names(&schema, spec.dialect),
        sources: schema.sources.clone(),
        errors,
        out_flags: HashMap::new(),
        keys: Vec::new(),
        shareable_types: HashSet::new(),
        inaccessible: HashSet::new(),
        internal: HashSet::new(),
        access: Vec::new(),
    };
    reader.read_types(&schema);
    let Reader {
        out_flags,
        keys,
        shareable_types,
        inaccessible,
        internal,
        access,
        ..
    } = reader;
    let mut hidden: HashSet<String> = spec.hide.iter().cloned().collect();
    hidden.extend(internal);
    if spec.dialect != Dialect::Stitching || !access.is_empty() {
        strip_directives(&mut schema);
    }
    if spec.dialect != Dialect::Stitching {
        remove_machinery(&mut schema, spec.dialect);
        ensure_query(&mut schema, &mut hidden);
    }
    let schema = match schema.validate() {
        Ok(s) => s,
        Err(e) => {
            report(spec, &e.errors, errors);
            // Keep going with what parsed, so the other problems are reported too.
            match e.partial.validate() {
                Ok(s) => s,
                Err(_) => Valid::assume_valid(Schema::new()),
            }
        }
    };
    Source {
        access,
        schema,
        flags: out_flags,
        keys,
        shareable_types,
        inaccessible,
        hidden,
    }
}

/// The hidden field of the query type a subgraph without root fields gets:
/// a schema needs a query type with a field to be valid.
const PLACEHOLDER: &str = "_stitch_placeholder";

/// Gives a subgraph that only extends entities (its `_entities` and
/// `_service` removed) a query type, hidden from the public graph.
fn ensure_query(schema: &mut Schema, hidden: &mut HashSet<String>) {
    let name = schema
        .schema_definition
        .query
        .as_ref()
        .map(|n| n.name.clone())
        .unwrap_or_else(|| Name::new_static_unchecked("Query"));
    let ty = schema.types.entry(name.clone()).or_insert_with(|| {
        ExtendedType::Object(Node::new(apollo_compiler::schema::ObjectType {
            description: None,
            name: name.clone(),
            implements_interfaces: Default::default(),
            directives: Default::default(),
            fields: Default::default(),
        }))
    });
    if let ExtendedType::Object(o) = ty {
        if o.fields.is_empty() {
            let field = ast::FieldDefinition {
                description: None,
                name: Name::new_static_unchecked(PLACEHOLDER),
                arguments: Vec::new(),
                ty: ast::Type::Named(Name::new_static_unchecked("Boolean")),
                directives: Default::default(),
            };
            o.make_mut().fields.insert(
                field.name.clone(),
                apollo_compiler::schema::Component::new(field),
            );
            hidden.insert(format!("{name}.{PLACEHOLDER}"));
        }
    }
    if schema.schema_definition.query.is_none() {
        schema.schema_definition.make_mut().query = Some(ComponentName::from(name));
    }
}

fn report(
    spec: &SubgraphSpec,
    list: &apollo_compiler::validation::DiagnosticList,
    errors: &mut Vec<BuildError>,
) {
    for (loc, msg) in diagnostics(list) {
        errors.push(BuildError::new(
            K::SubgraphSchema,
            loc,
            format!("subgraph `{}`: its schema is invalid: {msg}", spec.name),
        ));
    }
}
