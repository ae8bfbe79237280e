//! A subgraph's schema from its introspection answer, as SDL the merge can parse.

use std::fmt::Write;

use serde_json::Value;

/// The query sent to each subgraph at start-up.
pub const INTROSPECTION_QUERY: &str = r#"query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}"#;

/// Converts the `data` of an introspection response into SDL.
pub fn sdl_from_introspection(data: &Value) -> Result<String, String> {
    let schema = data
        .get("__schema")
        .ok_or("the introspection answer has no `__schema`")?;
    let mut out = String::new();
    schema_definition(&mut out, schema)?;
    let types = schema
        .get("types")
        .and_then(Value::as_array)
        .ok_or("the introspection answer has no `types`")?;
    for t in types {
        let name = str_field(t, "name")?;
        if name.starts_with("__") || is_builtin_scalar(name) {
            continue;
        }
        description(&mut out, t, "");
        match str_field(t, "kind")? {
            "SCALAR" => {
                let _ = writeln!(out, "scalar {name}\n");
            }
            "OBJECT" => object_like(&mut out, "type", name, t)?,
            "INTERFACE" => object_like(&mut out, "interface", name, t)?,
            "UNION" => {
                let members = names(t, "possibleTypes");
                let _ = writeln!(out, "union {name} = {}\n", members.join(" | "));
            }
            "ENUM" => enum_type(&mut out, name, t)?,
            "INPUT_OBJECT" => input_object(&mut out, name, t)?,
            other => return Err(format!("type `{name}` has an unknown kind `{other}`")),
        }
    }
    Ok(out)
}

/// `schema { query: ... }` from the root types.
fn schema_definition(out: &mut String, schema: &Value) -> Result<(), String> {
    let root = |key: &str| {
        schema
            .get(key)
            .and_then(|t| t.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    out.push_str("schema {\n");
    let Some(q) = root("queryType") else {
        return Err("the introspection answer has no query type".into());
    };
    let _ = writeln!(out, "  query: {q}");
    if let Some(m) = root("mutationType") {
        let _ = writeln!(out, "  mutation: {m}");
    }
    if let Some(s) = root("subscriptionType") {
        let _ = writeln!(out, "  subscription: {s}");
    }
    out.push_str("}\n\n");
    Ok(())
}

/// The `name`s of the types listed under `key` (`interfaces`, `possibleTypes`).
fn names<'a>(t: &'a Value, key: &str) -> Vec<&'a str> {
    t.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|i| i.get("name")?.as_str()).collect())
        .unwrap_or_default()
}

/// `head { ... }`: each entry of list `key` of `t` on a line of its own,
/// after its description, as `line` writes it.
fn block(
    out: &mut String,
    head: &str,
    t: &Value,
    key: &str,
    mut line: impl FnMut(&mut String, &Value) -> Result<(), String>,
) -> Result<(), String> {
    let _ = writeln!(out, "{head} {{");
    for entry in t.get(key).and_then(Value::as_array).into_iter().flatten() {
        description(out, entry, "  ");
        out.push_str("  ");
        line(out, entry)?;
        out.push('\n');
    }
    out.push_str("}\n\n");
    Ok(())
}

/// An object or interface type (`kw`) with its fields and their arguments.
fn object_like(out: &mut String, kw: &str, name: &str, t: &Value) -> Result<(), String> {
    let mut head = format!("{kw} {name}");
    let interfaces = names(t, "interfaces");
    if !interfaces.is_empty() {
        let _ = write!(head, " implements {}", interfaces.join(" & "));
    }
    block(out, &head, t, "fields", |out, f| {
        out.push_str(str_field(f, "name")?);
        let args = f.get("args").and_then(Value::as_array);
        if let Some(args) = args.filter(|a| !a.is_empty()) {
            out.push('(');
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                input_value(out, a)?;
            }
            out.push(')');
        }
        let _ = write!(out, ": {}", type_ref(field(f, "type")?)?);
        deprecated(out, f);
        Ok(())
    })
}

fn enum_type(out: &mut String, name: &str, t: &Value) -> Result<(), String> {
    block(out, &format!("enum {name}"), t, "enumValues", |out, v| {
        out.push_str(str_field(v, "name")?);
        deprecated(out, v);
        Ok(())
    })
}

fn input_object(out: &mut String, name: &str, t: &Value) -> Result<(), String> {
    block(out, &format!("input {name}"), t, "inputFields", input_value)
}

fn is_builtin_scalar(name: &str) -> bool {
    matches!(name, "String" | "Int" | "Float" | "Boolean" | "ID")
}

fn field<'a>(v: &'a Value, key: &str) -> Result<&'a Value, String> {
    v.get(key).ok_or_else(|| format!("missing `{key}` in {v}"))
}

fn str_field<'a>(v: &'a Value, key: &str) -> Result<&'a str, String> {
    field(v, key)?
        .as_str()
        .ok_or_else(|| format!("`{key}` is not a string in {v}"))
}

fn description(out: &mut String, v: &Value, indent: &str) {
    if let Some(d) = v.get("description").and_then(Value::as_str) {
        if !d.is_empty() {
            // A JSON string literal is a valid GraphQL string literal.
            let _ = writeln!(out, "{indent}{}", Value::String(d.to_owned()));
        }
    }
}

fn deprecated(out: &mut String, v: &Value) {
    if v.get("isDeprecated").and_then(Value::as_bool) == Some(true) {
        match v.get("deprecationReason").and_then(Value::as_str) {
            Some(r) => {
                let _ = write!(out, " @deprecated(reason: {})", Value::String(r.to_owned()));
            }
            None => out.push_str(" @deprecated"),
        }
    }
}

fn input_value(out: &mut String, v: &Value) -> Result<(), String> {
    let _ = write!(
        out,
        "{}: {}",
        str_field(v, "name")?,
        type_ref(field(v, "type")?)?
    );
    if let Some(d) = v.get("defaultValue").and_then(Value::as_str) {
        let _ = write!(out, " = {d}");
    }
    Ok(())
}

fn type_ref(t: &Value) -> Result<String, String> {
    match str_field(t, "kind")? {
        "NON_NULL" => Ok(format!("{}!", type_ref(field(t, "ofType")?)?)),
        "LIST" => Ok(format!("[{}]", type_ref(field(t, "ofType")?)?)),
        _ => Ok(str_field(t, "name")?.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_types_args_defaults_and_descriptions() {
        let data = serde_json::json!({"__schema": {
        "queryType": {"name": "QueryRoot"}, "mutationType": null, "subscriptionType": null,
        "types": [
            {"kind": "OBJECT", "name": "QueryRoot", "description": "Root \"q\"", "interfaces": [],
             "fields": [{"name": "items", "description": null, "isDeprecated": false,
                "args": [{"name": "limit", "description": null, "defaultValue": "10",
                          "type": {"kind": "NON_NULL", "name": null, "ofType": {"kind": "SCALAR", "name": "Int", "ofType": null}}},
                         {"name": "level", "description": null, "defaultValue": null,
                          "type": {"kind": "ENUM", "name": "Level", "ofType": null}}],
                "type": {"kind": "NON_NULL", "name": null, "ofType": {"kind": "LIST", "name": null, "ofType": {"kind": "SCALAR", "name": "String", "ofType": null}}}}]},
            {"kind": "ENUM", "name": "Level", "description": null,
             "enumValues": [{"name": "A", "isDeprecated": false}, {"name": "B", "isDeprecated": true, "deprecationReason": "old"}]},
            {"kind": "INPUT_OBJECT", "name": "In", "inputFields": [{"name": "x", "type": {"kind": "SCALAR", "name": "ID", "ofType": null}, "defaultValue": null}]},
            {"kind": "SCALAR", "name": "String"},
            {"kind": "OBJECT", "name": "__Type", "fields": []}
        ]}});
        let sdl = sdl_from_introspection(&data).unwrap();
        assert_eq!(
            sdl,
            "schema {\n  query: QueryRoot\n}\n\n\"Root \\\"q\\\"\"\ntype QueryRoot {\n  items(limit: Int! = 10, level: Level): [String]!\n}\n\nenum Level {\n  A\n  B @deprecated(reason: \"old\")\n}\n\ninput In {\n  x: ID\n}\n\n"
        );
        apollo_compiler::Schema::parse_and_validate(sdl, "x.graphql").unwrap();
    }

    #[test]
    fn rejects_answers_without_schema() {
        assert!(sdl_from_introspection(&serde_json::json!({})).is_err());
    }
}
