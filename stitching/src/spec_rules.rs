//! The validation rules where apollo-compiler accepts what the
//! specification (and graphql-js, the reference) refuses, checked after its
//! validation: unique input field names, and variables used inside list
//! items and input object fields (`All Variable Usages Are Allowed` at every
//! position, not only at the argument itself).

use std::collections::HashSet;

use apollo_compiler::{
    ast::{Type, Value},
    executable::{Field, Selection, SelectionSet},
    response::GraphQLError,
    schema::{ExtendedType, InputValueDefinition},
    validation::Valid,
    ExecutableDocument, Name, Node, Schema,
};

use crate::execute::error;

const CODE: &str = "GRAPHQL_VALIDATION_FAILED";

/// Every violation in `document`, in document order.
pub(crate) fn check(
    schema: &Valid<Schema>,
    document: &Valid<ExecutableDocument>,
) -> Vec<GraphQLError> {
    let mut errors = Vec::new();
    for op in document.operations.iter() {
        let mut walk = Walk {
            schema,
            document,
            variables: &op.variables,
            seen_fragments: HashSet::new(),
            errors: &mut errors,
        };
        for v in &op.variables {
            if let Some(default) = &v.default_value {
                walk.unique_fields(default);
            }
        }
        walk.selection_set(&op.selection_set);
    }
    // Duplicate input fields in a fragment no operation uses still count.
    for fragment in document.fragments.values() {
        let mut walk = Walk {
            schema,
            document,
            variables: &[],
            seen_fragments: HashSet::new(),
            errors: &mut errors,
        };
        walk.fragment_values_only(&fragment.selection_set);
    }
    dedup(errors)
}

/// A fragment used by several operations reports its problem once.
fn dedup(errors: Vec<GraphQLError>) -> Vec<GraphQLError> {
    let mut seen = HashSet::new();
    errors
        .into_iter()
        .filter(|e| seen.insert(e.message.clone()))
        .collect()
}

struct Walk<'a> {
    schema: &'a Valid<Schema>,
    document: &'a Valid<ExecutableDocument>,
    variables: &'a [Node<apollo_compiler::ast::VariableDefinition>],
    seen_fragments: HashSet<Name>,
    errors: &'a mut Vec<GraphQLError>,
}

impl Walk<'_> {
    fn selection_set(&mut self, set: &SelectionSet) {
        for selection in &set.selections {
            match selection {
                Selection::Field(f) => {
                    self.field(f);
                    self.selection_set(&f.selection_set);
                }
                Selection::InlineFragment(i) => {
                    self.directives(&i.directives);
                    self.selection_set(&i.selection_set);
                }
                Selection::FragmentSpread(s) => {
                    self.directives(&s.directives);
                    if self.seen_fragments.insert(s.fragment_name.clone()) {
                        if let Some(fragment) = self.document.fragments.get(&s.fragment_name) {
                            self.selection_set(&fragment.selection_set);
                        }
                    }
                }
            }
        }
    }

    /// Only the unique-input-field rule, for fragments (no variables in scope).
    fn fragment_values_only(&mut self, set: &SelectionSet) {
        for selection in &set.selections {
            match selection {
                Selection::Field(f) => {
                    for a in &f.arguments {
                        self.unique_fields(&a.value);
                    }
                    self.fragment_values_only(&f.selection_set);
                }
                Selection::InlineFragment(i) => self.fragment_values_only(&i.selection_set),
                Selection::FragmentSpread(_) => {}
            }
        }
    }

    fn field(&mut self, f: &Field) {
        for a in &f.arguments {
            self.unique_fields(&a.value);
            if let Some(def) = f.definition.arguments.iter().find(|d| d.name == a.name) {
                self.usages(&a.value, &def.ty, def.default_value.is_some(), true);
            }
        }
        self.directives(&f.directives);
    }

    fn directives(&mut self, list: &apollo_compiler::executable::DirectiveList) {
        for d in list.iter() {
            let def = self.schema.directive_definitions.get(&d.name);
            for a in &d.arguments {
                self.unique_fields(&a.value);
                if let Some(def) =
                    def.and_then(|def| def.arguments.iter().find(|x| x.name == a.name))
                {
                    self.usages(&a.value, &def.ty, def.default_value.is_some(), true);
                }
            }
        }
    }

    /// `There can be only one input field named "x".`, at any depth.
    fn unique_fields(&mut self, value: &Value) {
        match value {
            Value::Object(fields) => {
                let mut names = HashSet::new();
                for (name, v) in fields {
                    if !names.insert(name) {
                        self.errors.push(error(
                            format!("There can be only one input field named \"{name}\"."),
                            CODE,
                        ));
                    }
                    self.unique_fields(v);
                }
            }
            Value::List(items) => items.iter().for_each(|v| self.unique_fields(v)),
            _ => {}
        }
    }

    /// Each variable in `value` against the type of its position
    /// (`location_default`: the position has a default value). The argument
    /// itself (`top`) apollo-compiler has checked already.
    fn usages(&mut self, value: &Value, location: &Type, location_default: bool, top: bool) {
        match value {
            Value::Variable(name) if !top => self.usage(name, location, location_default),
            Value::List(items) => {
                // A single value coerces to a list: its position is the item type.
                let item = if location.is_list() {
                    location.item_type()
                } else {
                    location
                };
                for v in items {
                    self.usages(v, item, false, false);
                }
            }
            Value::Object(fields) => {
                let Some(ExtendedType::InputObject(object)) =
                    self.schema.types.get(location.inner_named_type())
                else {
                    return;
                };
                for (name, v) in fields {
                    if let Some(def) = object.fields.get(name) {
                        let def: &InputValueDefinition = def;
                        self.usages(v, &def.ty, def.default_value.is_some(), false);
                    }
                }
            }
            _ => {}
        }
    }

    fn usage(&mut self, name: &Name, location: &Type, location_default: bool) {
        let Some(var) = self.variables.iter().find(|v| v.name == *name) else {
            return;
        };
        let var_default = var.default_value.as_ref().is_some_and(|d| !d.is_null());
        let allowed = if location.is_non_null() && !var.ty.is_non_null() {
            (var_default || location_default) && compatible(&var.ty, &location.clone().nullable())
        } else {
            compatible(&var.ty, location)
        };
        if !allowed {
            self.errors.push(error(
                format!(
                    "Variable \"${name}\" of type \"{}\" used in position expecting type \"{location}\".",
                    var.ty
                ),
                CODE,
            ));
        }
    }
}

/// `AreTypesCompatible(variableType, locationType)` of the specification.
fn compatible(var: &Type, location: &Type) -> bool {
    if location.is_non_null() {
        return var.is_non_null()
            && compatible(&var.clone().nullable(), &location.clone().nullable());
    }
    if var.is_non_null() {
        return compatible(&var.clone().nullable(), location);
    }
    match (var.is_list(), location.is_list()) {
        (true, true) => compatible(var.item_type(), location.item_type()),
        (false, false) => var.inner_named_type() == location.inner_named_type(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(text: &str) -> Type {
        Type::parse(text, "t.graphql").unwrap()
    }

    fn violations(query: &str) -> Vec<String> {
        let schema = Schema::parse_and_validate(
            "enum S { A B } input F { s: [S!] name: String inner: F } type Query { q(f: F, n: String! = \"x\"): Int }",
            "s.graphql",
        )
        .unwrap();
        let doc = ExecutableDocument::parse_and_validate(&schema, query, "q.graphql").unwrap();
        check(&schema, &doc)
            .into_iter()
            .map(|e| e.message)
            .collect()
    }

    #[test]
    fn duplicate_input_fields_and_nested_variable_positions() {
        assert_eq!(
            violations("{ q(f: { inner: { name: \"a\", name: \"b\" } }) }"),
            ["There can be only one input field named \"name\"."]
        );
        assert_eq!(
            violations("query($s: S) { q(f: { s: [$s] }) }"),
            ["Variable \"$s\" of type \"S\" used in position expecting type \"S!\"."]
        );
        assert_eq!(
            violations("query($s: S!) { q(f: { s: $s }) }"),
            ["Variable \"$s\" of type \"S!\" used in position expecting type \"[S!]\"."]
        );
        assert!(violations("query($s: S!, $n: String) { q(f: { s: [$s], name: $n }) }").is_empty());
        // Through a fragment, once, though two operations use it.
        let twice = "query A($s: S) { ...Q } query B($s: S) { ...Q } fragment Q on Query { q(f: { s: [$s] }) }";
        assert_eq!(violations(twice).len(), 1);
    }

    #[test]
    fn types_are_compatible_as_the_specification_says() {
        for (var, location, ok) in [
            ("S", "S", true),
            ("S!", "S", true),
            ("S", "S!", false),
            ("[S!]", "[S]", true),
            ("[S]", "[S!]", false),
            ("S!", "[S!]", false),
            ("[S]", "S", false),
            ("T", "S", false),
            ("[S!]!", "[S!]", true),
        ] {
            assert_eq!(
                compatible(&ty(var), &ty(location)),
                ok,
                "{var} in {location}"
            );
        }
    }
}
