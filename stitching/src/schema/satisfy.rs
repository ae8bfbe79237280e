//! Stage 7 of composition: checks that need the whole model. Fields shared
//! without `@shareable`, `@external` fields nobody resolves, stitched
//! fields that require each other, and fields a client could select where
//! no plan can reach them (the spec's satisfiability).

use std::collections::{HashMap, HashSet, VecDeque};

use apollo_compiler::{schema::ExtendedType, validation::Valid, Name, Schema};

use super::{
    fieldset::FieldSet,
    merge::ROOTS,
    model::{FieldModel, Model},
    resolve::key_names,
    source::Source,
    BuildError, BuildErrorKind as K, Dialect, Subgraph, SubgraphId,
};

pub(crate) fn check(
    public: &Valid<Schema>,
    model: &Model,
    sources: &[Source],
    subgraphs: &[Subgraph],
    conflicted: &HashSet<Name>,
    errors: &mut Vec<BuildError>,
) {
    let roots: Vec<&Name> = ROOTS
        .iter()
        .filter_map(|(op, _)| public.root_operation(*op))
        .collect();
    sharing(model, sources, subgraphs, &roots, errors);
    externals(model, subgraphs, errors);
    cycles(model, errors);
    let producers = producers(model, sources, subgraphs);
    let reach = Reach { model };
    let mut names: Vec<&Name> = model.types.keys().collect();
    names.sort();
    for type_name in names {
        if roots.contains(&type_name) || conflicted.contains(type_name) {
            continue;
        }
        let tm = &model.types[type_name];
        for &s in &tm.owners {
            if !producers[s].contains(type_name) {
                continue;
            }
            let mut fields: Vec<(&Name, &FieldModel)> =
                tm.fields.iter().filter(|(_, f)| !f.inaccessible).collect();
            fields.sort_by_key(|(n, _)| *n);
            for (f, fm) in fields {
                if !reach.field(s, type_name, fm, 0) {
                    let at = fm
                        .sources
                        .first()
                        .and_then(|src| field_location(&subgraphs[src.subgraph], type_name, f));
                    errors.push(BuildError::new(
                        K::Unsatisfiable,
                        at,
                        unsatisfiable(model, subgraphs, s, type_name, f, fm),
                    ));
                }
            }
        }
    }
}

fn unsatisfiable(
    model: &Model,
    subgraphs: &[Subgraph],
    s: SubgraphId,
    type_name: &Name,
    field: &Name,
    fm: &FieldModel,
) -> String {
    let name = &subgraphs[s].name;
    let served: Vec<&str> = fm
        .sources
        .iter()
        .map(|src| subgraphs[src.subgraph].name.as_str())
        .collect();
    let keys: Vec<String> = model
        .resolvers(type_name)
        .iter()
        .map(|r| format!("{} by {{ {} }}", subgraphs[r.subgraph].name, r.key))
        .collect();
    format!(
        "`{type_name}.{field}` cannot be resolved for a `{type_name}` that subgraph `{name}` returns: {}; {}",
        if served.is_empty() {
            "no subgraph resolves it".to_owned()
        } else {
            format!("it is resolved by {} only", served.join(", "))
        },
        if keys.is_empty() {
            format!("and no subgraph can fetch a `{type_name}` by key (add a @key / @lookup / type-level @delegate)")
        } else {
            format!(
                "and `{name}` cannot give the key of any entity resolver ({}); add the key fields to `{name}`",
                keys.join(", ")
            )
        }
    )
}

/// `file:line:column` of a public type's field in a subgraph's SDL.
fn field_location(sg: &Subgraph, type_name: &Name, field: &Name) -> Option<String> {
    let def = sg
        .schema
        .type_field(sg.remote_type(type_name), field)
        .ok()?;
    crate::directives::location(def.location()?, &sg.schema.sources)
}

/// Whether a subgraph can resolve a field where it holds the parent, or
/// reach a subgraph that can.
struct Reach<'m> {
    model: &'m Model,
}

impl Reach<'_> {
    /// A field set resolved locally by `s` on objects of `type_name`.
    fn local_set(&self, s: SubgraphId, type_name: &Name, set: &FieldSet) -> bool {
        set.fields.iter().all(|f| {
            let Some(fm) = self.model.field(type_name, &f.name) else {
                return false;
            };
            let local = fm
                .source(s)
                .is_some_and(|src| !src.external && src.requires.is_none());
            local
                && (f.selection.is_empty()
                    || self.local_set(s, fm.ty.inner_named_type(), &f.selection))
        })
    }

    fn set(&self, s: SubgraphId, type_name: &Name, set: &FieldSet, depth: usize) -> bool {
        set.fields.iter().all(|f| {
            let Some(fm) = self.model.field(type_name, &f.name) else {
                return false;
            };
            self.field(s, type_name, fm, depth)
                && (f.selection.is_empty() || {
                    // Below it the value comes from whichever subgraph served
                    // it; checking from `s` is the strict case.
                    let inner = fm.ty.inner_named_type();
                    fm.sources
                        .iter()
                        .any(|src| self.set(src.subgraph, inner, &f.selection, depth + 1))
                        || self.set(s, inner, &f.selection, depth + 1)
                })
        })
    }

    fn field(&self, s: SubgraphId, type_name: &Name, fm: &FieldModel, depth: usize) -> bool {
        if depth > 4 {
            return false;
        }
        if let Some(call) = &fm.delegation {
            return self.set(s, type_name, &call.requires, depth + 1);
        }
        if fm
            .source(s)
            .is_some_and(|src| !src.external && src.requires.is_none())
        {
            return true;
        }
        self.model.resolvers(type_name).iter().any(|r| {
            let Some(src) = fm.source(r.subgraph) else {
                return false;
            };
            if src.external {
                return false;
            }
            let key_ok = self.local_set(s, type_name, &r.key)
                || (r.subgraph != s && self.set(s, type_name, &r.key, depth + 1));
            let requires_ok = src
                .requires
                .as_ref()
                .is_none_or(|req| self.set(s, type_name, req, depth + 1));
            key_ok && requires_ok
        })
    }
}

/// Per subgraph, the public types it can return to the planner: reachable
/// through its fields from its public root fields, or from the fields of
/// the entities it resolves by key (an entity fetched by key merges into an
/// object another subgraph returned, so it does not count itself).
fn producers(model: &Model, sources: &[Source], subgraphs: &[Subgraph]) -> Vec<HashSet<Name>> {
    subgraphs
        .iter()
        .enumerate()
        .map(|(id, sg)| {
            let hidden = &sources[id].hidden;
            let mut queue: VecDeque<Name> = VecDeque::new();
            let push_fields = |t: &Name, queue: &mut VecDeque<Name>, all: bool| {
                let fields = match sg.schema.types.get(t) {
                    Some(ExtendedType::Object(o)) => o.fields.values().collect::<Vec<_>>(),
                    Some(ExtendedType::Interface(i)) => i.fields.values().collect(),
                    _ => Vec::new(),
                };
                for f in fields {
                    if all || !hidden.contains(&format!("{t}.{}", f.name)) {
                        queue.push_back(f.ty.inner_named_type().clone());
                    }
                }
            };
            for (op, _) in ROOTS {
                if let Some(r) = sg.schema.root_operation(op) {
                    push_fields(r, &mut queue, false);
                }
            }
            for r in &model.resolvers {
                if r.subgraph == id {
                    push_fields(sg.remote_type(&r.type_name), &mut queue, true);
                }
            }
            let mut seen: HashSet<Name> = HashSet::new();
            while let Some(t) = queue.pop_front() {
                if !seen.insert(t.clone()) {
                    continue;
                }
                match sg.schema.types.get(&t) {
                    Some(ExtendedType::Interface(_)) => {
                        for (n, ty) in &sg.schema.types {
                            if matches!(ty, ExtendedType::Object(_)) && sg.schema.is_subtype(&t, n)
                            {
                                queue.push_back(n.clone());
                            }
                        }
                    }
                    Some(ExtendedType::Union(u)) => {
                        queue.extend(u.members.iter().map(|m| m.name.clone()));
                    }
                    _ => {}
                }
                push_fields(&t, &mut queue, true);
            }
            seen.into_iter()
                .map(|n| Name::new_unchecked(sg.public_type(&n)))
                .collect()
        })
        .collect()
}

/// A field resolved by several Federation / Composite subgraphs must be
/// `@shareable` (or a key, external, or overridden) in each.
fn sharing(
    model: &Model,
    sources: &[Source],
    subgraphs: &[Subgraph],
    roots: &[&Name],
    errors: &mut Vec<BuildError>,
) {
    let provided = provided_fields(model);
    let mut types: Vec<&Name> = model.types.keys().collect();
    types.sort();
    for t in types {
        if roots.contains(&t) {
            continue;
        }
        let tm = &model.types[t];
        let mut fields: Vec<(&Name, &FieldModel)> = tm.fields.iter().collect();
        fields.sort_by_key(|(n, _)| *n);
        for (f, fm) in fields {
            // An external field a subgraph `@provides` is resolved there too.
            let resolving: Vec<SubgraphId> = fm
                .sources
                .iter()
                .filter(|s| !s.external || provided.contains(&(s.subgraph, t.clone(), f.clone())))
                .map(|s| s.subgraph)
                .collect();
            if resolving.len() < 2 {
                continue;
            }
            let unshared: Vec<SubgraphId> = resolving
                .iter()
                .copied()
                .filter(|&s| {
                    let sg = &subgraphs[s];
                    // A stitching subgraph shares freely; an external field
                    // is the provider's to mark, not its own.
                    let external = fm.source(s).is_some_and(|src| src.external);
                    if sg.dialect == Dialect::Stitching || external {
                        return false;
                    }
                    let source = &sources[s];
                    let remote = sg.remote_type(t);
                    let shared = source.shareable_types.contains(remote)
                        || source
                            .flags(remote, f)
                            .is_some_and(|fl| fl.shareable || fl.override_from.is_some())
                        || source.keys.iter().any(|k| {
                            k.type_name == *remote
                                && key_names(&k.fields.text).contains(&f.as_str())
                        })
                        || model
                            .resolvers(t)
                            .iter()
                            .any(|r| r.subgraph == s && r.key.below(f).is_some());
                    !shared
                })
                .collect();
            if let Some(&bad) = unshared.first() {
                let other = resolving.iter().copied().find(|&s| s != bad).unwrap_or(bad);
                errors.push(BuildError::new(
                    K::FieldSharing,
                    field_location(&subgraphs[bad], t, f),
                    format!(
                        "`{t}.{f}` is resolved by subgraphs `{}` and `{}` but is not @shareable in `{}`; mark it @shareable in every subgraph that resolves it, or @external / @override it",
                        subgraphs[bad].name, subgraphs[other].name, subgraphs[bad].name
                    ),
                ));
            }
        }
    }
}

/// `(subgraph, type, field)` for each field a `@provides` names: top level
/// of the providing field's type (nested ones are rare and not counted).
fn provided_fields(model: &Model) -> HashSet<(SubgraphId, Name, Name)> {
    let mut out = HashSet::new();
    for tm in model.types.values() {
        for fm in tm.fields.values() {
            for src in &fm.sources {
                if let Some(p) = &src.provides {
                    for f in &p.fields {
                        out.insert((
                            src.subgraph,
                            fm.ty.inner_named_type().clone(),
                            f.name.clone(),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// An `@external` field must be resolved by some other subgraph.
fn externals(model: &Model, subgraphs: &[Subgraph], errors: &mut Vec<BuildError>) {
    let mut types: Vec<&Name> = model.types.keys().collect();
    types.sort();
    for t in types {
        let mut fields: Vec<(&Name, &FieldModel)> = model.types[t].fields.iter().collect();
        fields.sort_by_key(|(n, _)| *n);
        for (f, fm) in fields {
            if fm.delegation.is_some() || fm.sources.is_empty() {
                continue;
            }
            if fm.sources.iter().all(|s| s.external) {
                let names: Vec<&str> = fm
                    .sources
                    .iter()
                    .map(|s| subgraphs[s.subgraph].name.as_str())
                    .collect();
                let at = field_location(&subgraphs[fm.sources[0].subgraph], t, f);
                errors.push(BuildError::new(
                    K::ExternalMissingOnBase,
                    at,
                    format!(
                        "`{t}.{f}` is @external in {} but no subgraph resolves it; define it without @external in the subgraph that owns it",
                        names.join(", ")
                    ),
                ));
            }
        }
    }
}

/// Stitched fields whose `$fields:` read each other can never be planned.
fn cycles(model: &Model, errors: &mut Vec<BuildError>) {
    let mut edges: HashMap<(Name, Name), Vec<(Name, Name)>> = HashMap::new();
    for (t, tm) in &model.types {
        for (f, fm) in &tm.fields {
            if let Some(call) = &fm.delegation {
                let reads: Vec<(Name, Name)> = call
                    .requires
                    .fields
                    .iter()
                    .map(|r| (t.clone(), r.name.clone()))
                    .collect();
                edges.insert((t.clone(), f.clone()), reads);
            }
        }
    }
    let mut reported: HashSet<(Name, Name)> = HashSet::new();
    let mut starts: Vec<&(Name, Name)> = edges.keys().collect();
    starts.sort();
    for start in starts {
        let mut stack = vec![start.clone()];
        let mut seen = HashSet::new();
        while let Some(node) = stack.pop() {
            for next in edges.get(&node).into_iter().flatten() {
                if next == start {
                    if reported.insert(start.clone()) {
                        let origin = model
                            .field(&start.0, &start.1)
                            .and_then(|f| f.delegation.as_ref())
                            .map(|c| c.origin.clone());
                        errors.push(BuildError::new(
                            K::Cycle,
                            origin,
                            format!(
                                "`{}.{}` @delegate reads `$fields:` that need `{}.{}` itself; break the cycle",
                                start.0, start.1, start.0, start.1
                            ),
                        ));
                    }
                } else if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{build_err, composite, federation};

    const LINK: &str = r#"extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key", "@external", "@requires", "@shareable", "@provides"])"#;

    #[test]
    fn every_composition_problem_is_reported_at_once_with_code_and_place() {
        let a = format!(
            r#"{LINK}
type Query {{ products: [Product] }}
type Product @key(fields: "upc nope") {{
  upc: String!
  name: String
  price: Int
  size: Size
  weight: Int
}}
enum Size {{ S M L }}
input Filter {{ min: Int! }}
type Box {{ label: String }}
"#
        );
        let b = format!(
            r#"{LINK}
type Query {{ box(filter: Filter): Box }}
type Product @key(fields: "upc") {{
  upc: String!
  name: String
  price: String
  estimate: Int @requires(fields: "weight")
  weight: Int
}}
enum Size {{ S M }}
input Filter {{ max: Int! }}
type Box {{ label: String orphan: Review }}
type Review {{ id: ID! }}
"#
        );
        let c = r#"
type Query { reviewById(id: ID!): [Review] @lookup }
type Review { id: ID! stars: Int }
"#;
        let errors = build_err(&[federation("a", &a), federation("b", &b), composite("c", c)]);
        let text = errors.to_string();
        let has = |code: &str, needle: &str| {
            assert!(
                errors
                    .0
                    .iter()
                    .any(|e| e.code() == code && e.to_string().contains(needle)),
                "no {code} with `{needle}` in:\n{text}"
            )
        };
        has("KEY_INVALID_FIELDS", "a.graphql:3:");
        has("KEY_INVALID_FIELDS", "nope");
        has(
            "OUTPUT_FIELD_TYPES_NOT_MERGEABLE",
            "`Product.price` is `Int` in subgraph `a` but `String` in subgraph `b`",
        );
        has("ENUM_VALUES_MISMATCH", "enum `Size`");
        has("INPUT_WITH_MISSING_REQUIRED_FIELDS", "input `Filter`");
        has("REQUIRES_FIELDS_MISSING_EXTERNAL", "b.graphql:");
        has(
            "REQUIRES_FIELDS_MISSING_EXTERNAL",
            "`Product.weight`, which is not @external",
        );
        has(
            "INVALID_FIELD_SHARING",
            "`Product.name` is resolved by subgraphs",
        );
        has("LOOKUP_RETURNS_LIST", "c.graphql:2:");
        assert!(errors.0.len() >= 9, "{text}");
    }

    #[test]
    fn a_field_no_plan_can_reach_is_unsatisfiable() {
        let a = format!(
            r#"{LINK}
type Query {{ users: [User] }}
type User {{ id: ID! @shareable name: String }}
"#
        );
        let b = format!(
            r#"{LINK}
type Query {{ me: User }}
type User @key(fields: "id") {{ id: ID! @shareable email: String }}
"#
        );
        let errors = build_err(&[federation("a", &a), federation("b", &b)]);
        let text = errors.to_string();
        // `b`'s users reach `name` nowhere: `a` has no key to fetch them by.
        // (`a`'s users reach `email` through `b`'s key.)
        assert_eq!(errors.0.len(), 1, "{text}");
        assert!(
            errors.0[0].code() == "UNSATISFIABLE_QUERY_PATH"
                && text.contains(
                    "`User.name` cannot be resolved for a `User` that subgraph `b` returns"
                ),
            "{text}"
        );
    }
}

#[cfg(test)]
mod provides_tests {
    use crate::testing::{build_err, federation};

    #[test]
    fn a_provided_field_must_be_shareable_where_it_is_owned() {
        let accounts = r#"
extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key"])
type Query { me: User }
type User @key(fields: "id") { id: ID! username: String }
"#;
        let reviews = r#"
extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key", "@external", "@provides"])
type Query { reviews: [Review] }
type Review { body: String author: User @provides(fields: "username") }
type User @key(fields: "id") { id: ID! username: String @external }
"#;
        let errors = build_err(&[
            federation("accounts", accounts),
            federation("reviews", reviews),
        ]);
        assert!(
            errors.0.iter().any(|e| e.code() == "INVALID_FIELD_SHARING"
                && e.to_string()
                    .contains("`User.username` is resolved by subgraphs `accounts` and `reviews`")),
            "{errors}"
        );
    }
}
