//! `@schema(name:)` and `@delegate(path:, batch:)` read from stitching SDL.

pub mod path;
pub mod selection_map;

use apollo_compiler::{
    ast::{self, Definition},
    parser::{SourceMap, SourceSpan},
    schema::{Component, EnumType, ExtendedType, InputObjectType, ObjectType, ScalarType},
    Name, Node,
};

use crate::schema::{BuildError, BuildErrorKind as K, SubgraphId};
use path::Segment;

/// A field that stitching SDL adds to a public type.
#[derive(Clone, Debug)]
pub struct StitchedField {
    pub type_name: Name,
    /// The field as clients see it (stitching directives removed).
    pub definition: Node<ast::FieldDefinition>,
    pub subgraph: SubgraphId,
    pub path: Vec<Segment>,
    pub path_text: String,
    pub batch: bool,
    pub location: Option<String>,
}

/// `extend type T @delegate(path: "...")`: how the entry's subgraph (or
/// `@schema(name:)`'s) fetches an entity of `T` by the `$fields:` the path reads.
#[derive(Clone, Debug)]
pub struct StitchedEntity {
    pub type_name: Name,
    pub subgraph: SubgraphId,
    pub path: Vec<Segment>,
    pub path_text: String,
    pub batch: bool,
    pub location: Option<String>,
}

/// `@authenticated`/`@requiresScopes` in stitching SDL, on `Type` or
/// `Type.field` (public names).
#[derive(Clone, Debug)]
pub struct StitchedAccess {
    pub target: String,
    pub requirement: crate::authorization::Requirement,
    pub location: Option<String>,
}

/// What one stitching document contributes.
#[derive(Default)]
pub struct ReadDocument {
    pub fields: Vec<StitchedField>,
    pub access: Vec<StitchedAccess>,
    pub entities: Vec<StitchedEntity>,
    pub new_types: Vec<ExtendedType>,
    pub errors: Vec<BuildError>,
}

/// `file:line:column` of a span.
pub fn location(span: SourceSpan, sources: &SourceMap) -> Option<String> {
    let file = sources.get(&span.file_id())?;
    let lc = span.line_column(sources)?;
    Some(format!(
        "{}:{}:{}",
        file.path().display(),
        lc.line,
        lc.column
    ))
}

fn string_arg(d: &ast::Directive, name: &str) -> Option<Result<String, ()>> {
    d.arguments
        .iter()
        .find(|a| a.name == name)
        .map(|a| match a.value.as_ref() {
            ast::Value::String(s) => Ok(s.clone()),
            _ => Err(()),
        })
}

fn subgraph_arg(
    d: &ast::Directive,
    arg: &str,
    subgraph_names: &[&str],
) -> Option<Result<SubgraphId, String>> {
    match string_arg(d, arg)? {
        Ok(name) => Some(
            subgraph_names
                .iter()
                .position(|n| *n == name)
                .ok_or_else(|| {
                    format!(
                        "@{}({arg}: \"{name}\") names no configured subgraph; known: {}",
                        d.name,
                        subgraph_names.join(", ")
                    )
                }),
        ),
        Err(()) => Some(Err(format!("@{}({arg}:) must be a string", d.name))),
    }
}

/// Type-level `@delegate`: the type's entity resolver in one subgraph.
fn read_entity(
    type_name: &Name,
    directives: &ast::DirectiveList,
    owner: SubgraphId,
    subgraph_names: &[&str],
    sources: &SourceMap,
    out: &mut ReadDocument,
) {
    let Some(d) = directives.get("delegate") else {
        return;
    };
    let loc = d.location().and_then(|s| location(s, sources));
    let mut error = |message: String| {
        out.errors.push(BuildError::new(
            K::StitchingSdl,
            loc.clone(),
            format!("`extend type {type_name}`: {message}"),
        ))
    };
    let mut subgraph = owner;
    for arg in ["schema"] {
        if let Some(r) = directives
            .get(arg)
            .and_then(|s| subgraph_arg(s, "name", subgraph_names))
            .or_else(|| subgraph_arg(d, arg, subgraph_names))
        {
            match r {
                Ok(id) => subgraph = id,
                Err(m) => return error(m),
            }
        }
    }
    let path_text = match string_arg(d, "path") {
        Some(Ok(p)) => p,
        _ => return error("a type-level @delegate needs `path:`, e.g. @delegate(path: \"productsByIds(ids: $fields:id)\", batch: true)".into()),
    };
    let batch = matches!(
        d.arguments
            .iter()
            .find(|a| a.name == "batch")
            .map(|a| a.value.as_ref()),
        Some(ast::Value::Boolean(true))
    );
    match path::parse_path(&path_text) {
        Ok(path) => out.entities.push(StitchedEntity {
            type_name: type_name.clone(),
            subgraph,
            path,
            path_text,
            batch,
            location: loc,
        }),
        Err(e) => out.errors.push(BuildError::new(
            K::DelegatePath,
            loc,
            format!("`extend type {type_name}` @delegate(path: \"{path_text}\"): {e}"),
        )),
    }
}

/// Keeps the access directives of `target` (`Type` or `Type.field`);
/// whether it had any.
fn read_access(
    target: String,
    directives: &ast::DirectiveList,
    sources: &SourceMap,
    out: &mut ReadDocument,
) -> bool {
    let mut any = false;
    for d in directives.iter() {
        let Some(read) = crate::authorization::Requirement::read(d.name.as_str(), d) else {
            continue;
        };
        any = true;
        let location = d.location().and_then(|s| location(s, sources));
        match read {
            Ok(requirement) => out.access.push(StitchedAccess {
                target: target.clone(),
                requirement,
                location,
            }),
            Err(message) => out.errors.push(BuildError::new(
                K::DirectiveInvalid,
                location,
                format!("`{target}`: {message}"),
            )),
        }
    }
    any
}

/// Reads a stitching document of subgraph `owner` (fields default to it).
pub fn read_document(doc: &ast::Document, owner: &str, subgraph_names: &[&str]) -> ReadDocument {
    let mut reader = Reader {
        sources: &doc.sources,
        owner,
        owner_id: subgraph_names.iter().position(|n| *n == owner).unwrap_or(0),
        subgraph_names,
        out: ReadDocument::default(),
    };
    for def in &doc.definitions {
        reader.definition(def);
    }
    reader.out
}

/// One stitching document being read: what it contributes so far.
struct Reader<'d> {
    sources: &'d SourceMap,
    owner: &'d str,
    owner_id: SubgraphId,
    subgraph_names: &'d [&'d str],
    out: ReadDocument,
}

/// Where a field of stitching SDL comes from, as its directives say.
struct FieldSource {
    subgraph: SubgraphId,
    /// `@delegate`'s path, `batch:` and where it was written.
    delegate: Option<(String, bool, Option<SourceSpan>)>,
    /// Every directive was well formed.
    ok: bool,
}

impl Reader<'_> {
    fn loc(&self, span: Option<SourceSpan>) -> Option<String> {
        span.and_then(|s| location(s, self.sources))
    }

    fn error(&mut self, kind: K, span: Option<SourceSpan>, message: String) {
        let at = self.loc(span);
        self.out.errors.push(BuildError::new(kind, at, message));
    }

    /// One definition: an extended or new object type's fields, or a new
    /// scalar, enum or input type as it is.
    fn definition(&mut self, def: &Definition) {
        match def {
            Definition::ObjectTypeExtension(e) => {
                read_access(
                    e.name.to_string(),
                    &e.directives,
                    self.sources,
                    &mut self.out,
                );
                read_entity(
                    &e.name,
                    &e.directives,
                    self.owner_id,
                    self.subgraph_names,
                    self.sources,
                    &mut self.out,
                );
                self.fields(&e.name, &e.fields, false);
            }
            Definition::ObjectTypeDefinition(d) => {
                read_access(
                    d.name.to_string(),
                    &d.directives,
                    self.sources,
                    &mut self.out,
                );
                let local_fields = self.fields(&d.name, &d.fields, true);
                self.out
                    .new_types
                    .push(ExtendedType::Object(Node::new(ObjectType {
                        description: d.description.clone(),
                        name: d.name.clone(),
                        implements_interfaces: Default::default(),
                        directives: Default::default(),
                        fields: local_fields
                            .into_iter()
                            .map(|f| (f.name.clone(), Component::new(f.as_ref().clone())))
                            .collect(),
                    })));
            }
            other => {
                if let Some(ty) = new_type(other) {
                    self.out.new_types.push(ty);
                } else {
                    let owner = self.owner;
                    self.error(
                        K::StitchingSdl,
                        other.location(),
                        format!(
                            "subgraph `{owner}`: stitching SDL may hold `extend type`, `type`, `enum`, `input` and `scalar` definitions, not this one"
                        ),
                    );
                }
            }
        }
    }

    /// The fields of type `type_name`: delegated ones are kept as stitched
    /// fields; the others are returned, the fields of a new type (`is_new`).
    fn fields(
        &mut self,
        type_name: &Name,
        fields: &[Node<ast::FieldDefinition>],
        is_new: bool,
    ) -> Vec<Node<ast::FieldDefinition>> {
        let mut local_fields = Vec::new();
        for field in fields {
            let guarded = read_access(
                format!("{type_name}.{}", field.name),
                &field.directives,
                self.sources,
                &mut self.out,
            );
            let source = self.field_source(type_name, field);
            let definition = public_definition(field);
            match source.delegate {
                Some((path_text, batch, span)) => match path::parse_path(&path_text) {
                    Ok(p) if source.ok => {
                        let location = self.loc(span).or_else(|| self.loc(field.location()));
                        self.out.fields.push(StitchedField {
                            type_name: type_name.clone(),
                            definition,
                            subgraph: source.subgraph,
                            path: p,
                            path_text,
                            batch,
                            location,
                        })
                    }
                    Ok(_) => {}
                    Err(e) => self.error(
                        K::DelegatePath,
                        span,
                        format!("`{type_name}.{}` @delegate(path: \"{path_text}\"): {e}", field.name),
                    ),
                },
                None if is_new => local_fields.push(definition),
                // Only access rules for a field the subgraphs already serve.
                None if guarded => {}
                None => self.error(
                    K::StitchingSdl,
                    field.location(),
                    format!(
                        "`{type_name}.{}` is added without @delegate: say where it comes from, e.g. @delegate(path: \"someField(id: $fields:id)\")",
                        field.name
                    ),
                ),
            }
        }
        local_fields
    }

    /// A field's `@schema` and `@delegate`, every mistake in them reported.
    fn field_source(&mut self, type_name: &Name, field: &ast::FieldDefinition) -> FieldSource {
        let mut source = FieldSource {
            subgraph: self.owner_id,
            delegate: None,
            ok: true,
        };
        for d in field.directives.iter() {
            match d.name.as_str() {
                "schema" => self.schema_directive(type_name, field, d, &mut source),
                "delegate" => self.delegate_directive(type_name, field, d, &mut source),
                _ => {}
            }
        }
        source
    }

    fn schema_directive(
        &mut self,
        type_name: &Name,
        field: &ast::FieldDefinition,
        d: &Node<ast::Directive>,
        source: &mut FieldSource,
    ) {
        match string_arg(d, "name") {
            Some(Ok(name)) => match self.subgraph_names.iter().position(|n| *n == name) {
                Some(id) => source.subgraph = id,
                None => {
                    source.ok = false;
                    let known = self.subgraph_names.join(", ");
                    self.error(
                        K::StitchingSdl,
                        d.location(),
                        format!(
                            "`{type_name}.{}`: @schema(name: \"{name}\") names no configured subgraph; known: {known}",
                            field.name
                        ),
                    );
                }
            },
            _ => {
                source.ok = false;
                self.error(
                    K::StitchingSdl,
                    d.location(),
                    format!(
                        "`{type_name}.{}`: @schema needs `name: \"SUBGRAPH\"`",
                        field.name
                    ),
                );
            }
        }
    }

    fn delegate_directive(
        &mut self,
        type_name: &Name,
        field: &ast::FieldDefinition,
        d: &Node<ast::Directive>,
        source: &mut FieldSource,
    ) {
        let field_name = &field.name;
        let path = match string_arg(d, "path") {
            Some(Ok(p)) => p,
            None => field_name.to_string(),
            Some(Err(())) => {
                source.ok = false;
                return self.error(
                    K::StitchingSdl,
                    d.location(),
                    format!("`{type_name}.{field_name}`: @delegate(path:) must be a string"),
                );
            }
        };
        let batch = match d
            .arguments
            .iter()
            .find(|a| a.name == "batch")
            .map(|a| a.value.as_ref())
        {
            None => false,
            Some(ast::Value::Boolean(b)) => *b,
            Some(_) => {
                source.ok = false;
                self.error(
                    K::StitchingSdl,
                    d.location(),
                    format!("`{type_name}.{field_name}`: @delegate(batch:) must be true or false"),
                );
                false
            }
        };
        if let Some(a) = d
            .arguments
            .iter()
            .find(|a| !matches!(a.name.as_str(), "path" | "batch" | "schema"))
        {
            source.ok = false;
            self.error(
                K::StitchingSdl,
                a.location(),
                format!("`{type_name}.{field_name}`: @delegate has no argument `{}`; it takes `path` and `batch`", a.name),
            );
        }
        if let Some(Ok(name)) = string_arg(d, "schema") {
            match self.subgraph_names.iter().position(|n| *n == name) {
                Some(id) => source.subgraph = id,
                None => {
                    source.ok = false;
                    self.error(
                        K::StitchingSdl,
                        d.location(),
                        format!("`{type_name}.{field_name}`: @delegate(schema: \"{name}\") names no configured subgraph"),
                    );
                }
            }
        }
        source.delegate = Some((path, batch, d.location()));
    }
}

/// A field as clients see it: stitching and access directives removed.
fn public_definition(field: &Node<ast::FieldDefinition>) -> Node<ast::FieldDefinition> {
    let mut definition = field.as_ref().clone();
    definition.directives.0.retain(|d| {
        !matches!(
            d.name.as_str(),
            "schema" | "delegate" | "authenticated" | "requiresScopes"
        )
    });
    match field.location() {
        Some(span) => Node::new_parsed(definition, span),
        None => Node::new(definition),
    }
}

/// A scalar, enum or input type that stitching SDL adds, as it is.
fn new_type(def: &Definition) -> Option<ExtendedType> {
    Some(match def {
        Definition::ScalarTypeDefinition(d) => ExtendedType::Scalar(Node::new(ScalarType {
            description: d.description.clone(),
            name: d.name.clone(),
            directives: Default::default(),
        })),
        Definition::EnumTypeDefinition(d) => ExtendedType::Enum(Node::new(EnumType {
            description: d.description.clone(),
            name: d.name.clone(),
            directives: Default::default(),
            values: d
                .values
                .iter()
                .map(|v| (v.value.clone(), Component::new(v.as_ref().clone())))
                .collect(),
        })),
        Definition::InputObjectTypeDefinition(d) => {
            ExtendedType::InputObject(Node::new(InputObjectType {
                description: d.description.clone(),
                name: d.name.clone(),
                directives: Default::default(),
                fields: d
                    .fields
                    .iter()
                    .map(|f| (f.name.clone(), Component::new(f.as_ref().clone())))
                    .collect(),
            }))
        }
        _ => return None,
    })
}
