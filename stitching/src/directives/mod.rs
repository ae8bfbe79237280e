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
    let mut out = ReadDocument::default();
    let loc = |span: Option<SourceSpan>| span.and_then(|s| location(s, &doc.sources));
    let owner_id = subgraph_names.iter().position(|n| *n == owner).unwrap_or(0);
    for def in &doc.definitions {
        let (type_name, fields, is_new) = match def {
            Definition::ObjectTypeExtension(e) => {
                read_access(e.name.to_string(), &e.directives, &doc.sources, &mut out);
                read_entity(
                    &e.name,
                    &e.directives,
                    owner_id,
                    subgraph_names,
                    &doc.sources,
                    &mut out,
                );
                (e.name.clone(), &e.fields, false)
            }
            Definition::ObjectTypeDefinition(d) => {
                read_access(d.name.to_string(), &d.directives, &doc.sources, &mut out);
                (d.name.clone(), &d.fields, true)
            }
            Definition::ScalarTypeDefinition(d) => {
                out.new_types
                    .push(ExtendedType::Scalar(Node::new(ScalarType {
                        description: d.description.clone(),
                        name: d.name.clone(),
                        directives: Default::default(),
                    })));
                continue;
            }
            Definition::EnumTypeDefinition(d) => {
                out.new_types.push(ExtendedType::Enum(Node::new(EnumType {
                    description: d.description.clone(),
                    name: d.name.clone(),
                    directives: Default::default(),
                    values: d
                        .values
                        .iter()
                        .map(|v| (v.value.clone(), Component::new(v.as_ref().clone())))
                        .collect(),
                })));
                continue;
            }
            Definition::InputObjectTypeDefinition(d) => {
                out.new_types
                    .push(ExtendedType::InputObject(Node::new(InputObjectType {
                        description: d.description.clone(),
                        name: d.name.clone(),
                        directives: Default::default(),
                        fields: d
                            .fields
                            .iter()
                            .map(|f| (f.name.clone(), Component::new(f.as_ref().clone())))
                            .collect(),
                    })));
                continue;
            }
            other => {
                out.errors.push(BuildError::new(
                    K::StitchingSdl,
                    loc(other.location()),
                    format!(
                        "subgraph `{owner}`: stitching SDL may hold `extend type`, `type`, `enum`, `input` and `scalar` definitions, not this one"
                    ),
                ));
                continue;
            }
        };
        let mut local_fields = Vec::new();
        for field in fields {
            let guarded = read_access(
                format!("{type_name}.{}", field.name),
                &field.directives,
                &doc.sources,
                &mut out,
            );
            let mut subgraph = owner_id;
            let mut delegate: Option<(String, bool, Option<SourceSpan>)> = None;
            let mut ok = true;
            for d in field.directives.iter() {
                match d.name.as_str() {
                    "schema" => match string_arg(d, "name") {
                        Some(Ok(name)) => match subgraph_names.iter().position(|n| *n == name) {
                            Some(id) => subgraph = id,
                            None => {
                                ok = false;
                                out.errors.push(BuildError::new(
                                    K::StitchingSdl,
                                    loc(d.location()),
                                    format!(
                                        "`{type_name}.{}`: @schema(name: \"{name}\") names no configured subgraph; known: {}",
                                        field.name,
                                        subgraph_names.join(", ")
                                    ),
                                ));
                            }
                        },
                        _ => {
                            ok = false;
                            out.errors.push(BuildError::new(
                                K::StitchingSdl,
                                loc(d.location()),
                                format!(
                                    "`{type_name}.{}`: @schema needs `name: \"SUBGRAPH\"`",
                                    field.name
                                ),
                            ));
                        }
                    },
                    "delegate" => {
                        let path = match string_arg(d, "path") {
                            Some(Ok(p)) => p,
                            None => field.name.to_string(),
                            Some(Err(())) => {
                                ok = false;
                                out.errors.push(BuildError::new(
                                    K::StitchingSdl,
                                    loc(d.location()),
                                    format!(
                                        "`{type_name}.{}`: @delegate(path:) must be a string",
                                        field.name
                                    ),
                                ));
                                continue;
                            }
                        };
                        let batch = d
                            .arguments
                            .iter()
                            .find(|a| a.name == "batch")
                            .map(|a| a.value.as_ref().clone());
                        let batch = match batch {
                            None => false,
                            Some(ast::Value::Boolean(b)) => b,
                            Some(_) => {
                                ok = false;
                                out.errors.push(BuildError::new(
                                    K::StitchingSdl,
                                    loc(d.location()),
                                    format!(
                                        "`{type_name}.{}`: @delegate(batch:) must be true or false",
                                        field.name
                                    ),
                                ));
                                false
                            }
                        };
                        if let Some(a) = d
                            .arguments
                            .iter()
                            .find(|a| !matches!(a.name.as_str(), "path" | "batch" | "schema"))
                        {
                            ok = false;
                            out.errors.push(BuildError::new(
                                K::StitchingSdl,
                                loc(a.location()),
                                format!("`{type_name}.{}`: @delegate has no argument `{}`; it takes `path` and `batch`", field.name, a.name),
                            ));
                        }
                        if let Some(Ok(name)) = string_arg(d, "schema") {
                            match subgraph_names.iter().position(|n| *n == name) {
                                Some(id) => subgraph = id,
                                None => {
                                    ok = false;
                                    out.errors.push(BuildError::new(
                                        K::StitchingSdl,
                                        loc(d.location()),
                                        format!("`{type_name}.{}`: @delegate(schema: \"{name}\") names no configured subgraph", field.name),
                                    ));
                                }
                            }
                        }
                        delegate = Some((path, batch, d.location()));
                    }
                    _ => {}
                }
            }
            let mut definition = field.as_ref().clone();
            definition.directives.0.retain(|d| {
                !matches!(
                    d.name.as_str(),
                    "schema" | "delegate" | "authenticated" | "requiresScopes"
                )
            });
            let definition = match field.location() {
                Some(span) => Node::new_parsed(definition, span),
                None => Node::new(definition),
            };
            match delegate {
                Some((path_text, batch, span)) => match path::parse_path(&path_text) {
                    Ok(p) if ok => out.fields.push(StitchedField {
                        type_name: type_name.clone(),
                        definition,
                        subgraph,
                        path: p,
                        path_text,
                        batch,
                        location: loc(span).or_else(|| loc(field.location())),
                    }),
                    Ok(_) => {}
                    Err(e) => out.errors.push(BuildError::new(
                        K::DelegatePath,
                        loc(span),
                        format!("`{type_name}.{}` @delegate(path: \"{path_text}\"): {e}", field.name),
                    )),
                },
                None if is_new => local_fields.push(definition),
                // Only access rules for a field the subgraphs already serve.
                None if guarded => {}
                None => out.errors.push(BuildError::new(
                    K::StitchingSdl,
                    loc(field.location()),
                    format!(
                        "`{type_name}.{}` is added without @delegate: say where it comes from, e.g. @delegate(path: \"someField(id: $fields:id)\")",
                        field.name
                    ),
                )),
            }
        }
        if is_new {
            let Definition::ObjectTypeDefinition(d) = def else {
                continue;
            };
            out.new_types
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
    }
    out
}
