//! `@authenticated` and `@requiresScopes`: who may see which types and
//! fields. Rules come from subgraph SDL, stitching SDL and the gateway's
//! config; a caller's grants come from its token. Before planning, the
//! selections the caller may not see are removed from the operation (so
//! they cost no subgraph call); the shaper answers them as null, and each
//! gets an `UNAUTHORIZED_FIELD_OR_TYPE` error at its path.
//!
//! The result depends only on which rules the caller fails, so it is
//! computed once per document and set of failed rules, and cached with
//! the prepared operation.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::{Arc, Mutex},
};

use apollo_compiler::{
    ast,
    executable::{Field, Selection, SelectionSet},
    response::{GraphQLError, JsonValue, ResponseDataPathSegment},
    schema::ExtendedType,
    validation::Valid,
    ExecutableDocument, Name, Schema,
};

use crate::{
    operation::{PreparedOperation, RequestError},
    plan::{self, QueryPlan},
    schema::Supergraph,
};

/// The error code of a removed field or fragment.
pub const UNAUTHORIZED: &str = "UNAUTHORIZED_FIELD_OR_TYPE";

/// One condition a type or field sets on the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// Any verified token.
    Authenticated,
    /// A verified token holding every scope of at least one of these sets.
    Scopes(Vec<Vec<String>>),
}

impl Requirement {
    fn allows(&self, grants: &Grants) -> bool {
        match self {
            Requirement::Authenticated => grants.authenticated,
            Requirement::Scopes(sets) => {
                grants.authenticated
                    && sets
                        .iter()
                        .any(|set| set.iter().all(|s| grants.scopes.contains(s)))
            }
        }
    }

    /// Reads `@authenticated` or `@requiresScopes(scopes: [[...]])`; `None`
    /// for any other directive. A single list or string is taken as GraphQL
    /// input coercion takes it (`["a"]` is `[["a"]]`).
    pub(crate) fn read(canonical: &str, d: &ast::Directive) -> Option<Result<Requirement, String>> {
        match canonical {
            "authenticated" => Some(Ok(Requirement::Authenticated)),
            "requiresScopes" => Some(scopes_arg(d)),
            // Failing closed: a rule the gateway would not enforce is an error.
            "policy" => Some(Err(format!(
                "@{} is not enforced by this gateway; express the rule with @requiresScopes or @authenticated",
                d.name
            ))),
            _ => None,
        }
    }
}

fn scopes_arg(d: &ast::Directive) -> Result<Requirement, String> {
    let bad = || {
        format!(
            "@{} needs `scopes:` as a list of lists of scope strings, e.g. `scopes: [[\"read:pipelines\"], [\"admin\"]]`",
            d.name
        )
    };
    let value = d.specified_argument_by_name("scopes").ok_or_else(bad)?;
    let strings = |v: &ast::Value| -> Result<Vec<String>, String> {
        match v {
            ast::Value::String(s) => Ok(vec![s.clone()]),
            ast::Value::List(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned).ok_or_else(bad))
                .collect(),
            _ => Err(bad()),
        }
    };
    let sets = match value.as_ref() {
        ast::Value::List(items) if items.iter().all(|i| i.as_list().is_some()) => items
            .iter()
            .map(|i| strings(i))
            .collect::<Result<Vec<_>, _>>()?,
        other => vec![strings(other)?],
    };
    if sets.is_empty() {
        return Err(format!(
            "@{}(scopes: []) lets no caller through; list at least one set of scopes",
            d.name
        ));
    }
    Ok(Requirement::Scopes(sets))
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::Authenticated => f.write_str("an authenticated caller"),
            Requirement::Scopes(sets) => {
                let sets: Vec<String> = sets.iter().map(|s| format!("[{}]", s.join(" "))).collect();
                write!(f, "the scopes {}", sets.join(" or "))
            }
        }
    }
}

/// What a type or field is: the key of a rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    Type(Name),
    Field(Name, Name),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Type(t) => write!(f, "type `{t}`"),
            Target::Field(t, n) => write!(f, "`{t}.{n}`"),
        }
    }
}

/// Every rule of the composed schema, in public names.
#[derive(Debug, Default)]
pub struct AccessRules {
    /// Each target's requirements, all of which must hold.
    rules: Vec<(Target, Vec<Requirement>)>,
    /// type -> (its own rule, field -> rule): indices into `rules`.
    index: HashMap<Name, (Option<usize>, HashMap<Name, usize>)>,
}

impl AccessRules {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Adds `requirement` to `Type` or `Type.field` of the public schema.
    pub fn add(
        &mut self,
        schema: &Schema,
        target: &str,
        requirement: Requirement,
    ) -> Result<(), String> {
        let target = parse_target(schema, target)?;
        self.insert(target, requirement);
        Ok(())
    }

    pub(crate) fn insert(&mut self, target: Target, requirement: Requirement) {
        let (ty, field) = match &target {
            Target::Type(t) => (t.clone(), None),
            Target::Field(t, f) => (t.clone(), Some(f.clone())),
        };
        let entry = self.index.entry(ty).or_default();
        let existing = match &field {
            None => entry.0,
            Some(f) => entry.1.get(f).copied(),
        };
        if let Some(id) = existing {
            if !self.rules[id].1.contains(&requirement) {
                self.rules[id].1.push(requirement);
            }
            return;
        }
        let id = self.rules.len();
        match field {
            None => entry.0 = Some(id),
            Some(f) => {
                entry.1.insert(f, id);
            }
        }
        self.rules.push((target, vec![requirement]));
    }

    fn type_rule(&self, ty: &str) -> Option<usize> {
        self.index.get(ty).and_then(|(own, _)| *own)
    }

    fn field_rule(&self, ty: &str, field: &str) -> Option<usize> {
        self.index
            .get(ty)
            .and_then(|(_, fields)| fields.get(field).copied())
    }

    fn allows(&self, id: usize, grants: &Grants) -> bool {
        self.rules[id].1.iter().all(|r| r.allows(grants))
    }

    fn describe(&self, id: usize) -> String {
        let (target, requirements) = &self.rules[id];
        let needs: Vec<String> = requirements.iter().map(|r| r.to_string()).collect();
        format!("not authorized: {target} requires {}", needs.join(" and "))
    }
}

fn parse_target(schema: &Schema, target: &str) -> Result<Target, String> {
    let (ty, field) = match target.split_once('.') {
        Some((t, f)) => (t, Some(f)),
        None => (target, None),
    };
    if ty.starts_with("__") {
        return Err(format!(
            "`{target}`: introspection types cannot carry rules; turn introspection off with `[gateway] introspection = false`"
        ));
    }
    let Some(def) = schema.types.get(ty) else {
        return Err(format!(
            "`{target}`: the public schema has no type `{ty}`; write `Type` or `Type.field` with public names"
        ));
    };
    let name = |s: &str| Name::new(s).map_err(|e| format!("`{target}`: {e}"));
    let Some(field) = field else {
        return Ok(Target::Type(name(ty)?));
    };
    let has = match def {
        ExtendedType::Object(o) => o.fields.contains_key(field),
        ExtendedType::Interface(i) => i.fields.contains_key(field),
        _ => false,
    };
    if !has {
        return Err(format!(
            "`{target}`: type `{ty}` has no field `{field}` in the public schema"
        ));
    }
    Ok(Target::Field(name(ty)?, name(field)?))
}

/// What the caller holds: whether it sent a verified token, and its scopes.
#[derive(Clone, Debug, Default)]
pub struct Grants {
    pub authenticated: bool,
    pub scopes: HashSet<String>,
}

/// How an operation that reaches something the caller may not see runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnauthorizedMode {
    /// Without those fields: null, with an error each.
    #[default]
    Filter,
    /// Not at all: the request is refused with the errors.
    Reject,
}

/// The rules an operation reaches, found once when it is prepared, and
/// its filtered forms by the rules a caller fails.
#[derive(Debug, Default)]
pub struct OperationAccess {
    rules: Vec<usize>,
    filtered: Mutex<HashMap<Vec<usize>, Arc<Filtered>>>,
}

/// Filtered forms kept per prepared operation; few distinct sets of failed
/// rules occur in practice, and the cache starts over past this.
const MAX_FILTERED: usize = 32;

/// An operation without what the caller may not see.
#[derive(Debug)]
pub struct Filtered {
    pub plan: QueryPlan,
    /// Fields answered as null (denied, or left with nothing to select).
    removed_fields: HashSet<usize>,
    /// Fragments dropped because their type is denied.
    removed_fragments: HashSet<usize>,
    /// One per removed field or fragment and path, before any other error.
    pub(crate) errors: Vec<GraphQLError>,
}

impl Filtered {
    pub(crate) fn field_removed(&self, f: &Field) -> bool {
        self.removed_fields.contains(&addr(f))
    }

    pub(crate) fn fragment_removed<T>(&self, f: &T) -> bool {
        self.removed_fragments.contains(&addr(f))
    }
}

fn addr<T>(node: &T) -> usize {
    node as *const T as usize
}

fn selection_addr(s: &Selection) -> usize {
    match s {
        Selection::Field(f) => addr::<Field>(f),
        Selection::FragmentSpread(f) => addr::<apollo_compiler::executable::FragmentSpread>(f),
        Selection::InlineFragment(f) => addr::<apollo_compiler::executable::InlineFragment>(f),
    }
}

/// The rules `document`'s operation reaches (empty, and free, when the
/// schema has none).
pub(crate) fn reached(
    supergraph: &Supergraph,
    document: &Valid<ExecutableDocument>,
    operation: &apollo_compiler::executable::Operation,
) -> OperationAccess {
    if supergraph.access.is_empty() {
        return OperationAccess::default();
    }
    let mut walk = Walk::new(supergraph, document, &[]);
    walk.collect_rules(&operation.selection_set);
    let mut rules = walk.reached;
    rules.sort_unstable();
    rules.dedup();
    OperationAccess {
        rules,
        filtered: Mutex::new(HashMap::new()),
    }
}

/// The operation as `grants` may run it: `None` when nothing is denied.
pub fn authorize(
    supergraph: &Supergraph,
    prepared: &PreparedOperation,
    grants: &Grants,
    mode: UnauthorizedMode,
) -> Result<Option<Arc<Filtered>>, RequestError> {
    let access = &prepared.access;
    let denied: Vec<usize> = access
        .rules
        .iter()
        .copied()
        .filter(|id| !supergraph.access.allows(*id, grants))
        .collect();
    if denied.is_empty() {
        return Ok(None);
    }
    let cached = access
        .filtered
        .lock()
        .ok()
        .and_then(|m| m.get(&denied).cloned());
    let filtered = match cached {
        Some(f) => f,
        None => {
            let f = Arc::new(filter(supergraph, prepared, &denied)?);
            if let Ok(mut m) = access.filtered.lock() {
                if m.len() >= MAX_FILTERED {
                    m.clear();
                }
                m.insert(denied, f.clone());
            }
            f
        }
    };
    if mode == UnauthorizedMode::Reject {
        return Err(RequestError::Unauthorized(filtered.errors.clone()));
    }
    Ok(Some(filtered))
}

/// Removes what the `denied` rules cover, plans what is left.
fn filter(
    supergraph: &Supergraph,
    prepared: &PreparedOperation,
    denied: &[usize],
) -> Result<Filtered, RequestError> {
    let document = &prepared.document;
    let operation = prepared.operation();
    let mut walk = Walk::new(supergraph, document, denied);
    let anything_left = walk.mark(&operation.selection_set);
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    walk.report(
        &operation.selection_set,
        &mut Vec::new(),
        &mut seen,
        &mut errors,
    );
    if !anything_left {
        return Err(RequestError::Unauthorized(errors));
    }
    let mut drop: HashSet<usize> = walk.denied_by.keys().copied().collect();
    drop.extend(walk.emptied.iter().copied());
    let mut doc: ExecutableDocument = (**document).clone();
    if let Ok(op) = doc.operations.get_mut(prepared.operation_name.as_deref()) {
        prune(&mut op.selection_set, &drop);
    }
    for fragment in doc.fragments.values_mut() {
        prune(&mut fragment.make_mut().selection_set, &drop);
    }
    doc.fragments
        .retain(|_, f| !f.selection_set.selections.is_empty());
    // Only selections went, and never a whole selection set.
    let doc = Valid::assume_valid(doc);
    let plan = plan::plan(supergraph, &doc, prepared.operation_name.as_deref())?;
    let mut removed_fields = HashSet::new();
    let mut removed_fragments = HashSet::new();
    for (a, kind) in &walk.denied_by {
        if kind.1 {
            removed_fields.insert(*a);
        } else {
            removed_fragments.insert(*a);
        }
    }
    removed_fields.extend(walk.emptied_fields.iter().copied());
    Ok(Filtered {
        plan,
        removed_fields,
        removed_fragments,
        errors,
    })
}

fn prune(set: &mut SelectionSet, drop: &HashSet<usize>) {
    set.selections
        .retain(|s| !drop.contains(&selection_addr(s)));
    for s in &mut set.selections {
        match s {
            Selection::Field(f) if !f.selection_set.selections.is_empty() => {
                prune(&mut f.make_mut().selection_set, drop)
            }
            Selection::InlineFragment(i) => prune(&mut i.make_mut().selection_set, drop),
            _ => {}
        }
    }
}

/// One pass over an operation against the rules.
struct Walk<'a> {
    supergraph: &'a Supergraph,
    document: &'a ExecutableDocument,
    denied: &'a [usize],
    /// Rules the operation reaches (`collect_rules`).
    reached: Vec<usize>,
    /// Removed selection -> (the denied rule, whether it is a field).
    denied_by: HashMap<usize, (usize, bool)>,
    /// Selections left with nothing to select, removed too.
    emptied: HashSet<usize>,
    emptied_fields: HashSet<usize>,
    /// Fragment name -> whether anything of it is left.
    fragments: HashMap<Name, bool>,
}

impl<'a> Walk<'a> {
    fn new(
        supergraph: &'a Supergraph,
        document: &'a ExecutableDocument,
        denied: &'a [usize],
    ) -> Self {
        Walk {
            supergraph,
            document,
            denied,
            reached: Vec::new(),
            denied_by: HashMap::new(),
            emptied: HashSet::new(),
            emptied_fields: HashSet::new(),
            fragments: HashMap::new(),
        }
    }

    /// The object types a value of `ty` may be.
    fn possible(&self, ty: &Name) -> Vec<&'a Name> {
        let schema = &self.supergraph.schema;
        match schema.types.get(ty) {
            Some(ExtendedType::Union(u)) => u.members.iter().map(|m| &m.name).collect(),
            Some(ExtendedType::Interface(_)) => self
                .supergraph
                .implementers
                .get(ty)
                .map(|i| i.objects.iter().collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// The interfaces an object or interface type implements (a valid
    /// schema lists the transitive ones too).
    fn interfaces(&self, ty: &Name) -> Vec<&'a Name> {
        match self.supergraph.schema.types.get(ty) {
            Some(ExtendedType::Object(o)) => {
                o.implements_interfaces.iter().map(|i| &i.name).collect()
            }
            Some(ExtendedType::Interface(i)) => {
                i.implements_interfaces.iter().map(|i| &i.name).collect()
            }
            _ => Vec::new(),
        }
    }

    /// The rules a field selected on `scope` must pass: its own, its
    /// type's, those its interfaces set on it, and for an abstract scope
    /// those of every possible object (an object's fields are guarded
    /// however they are reached).
    fn field_rules(&self, scope: &Name, field: &Field) -> Vec<usize> {
        let rules = &self.supergraph.access;
        let mut out = Vec::new();
        let mut push = |id: Option<usize>| {
            if let Some(id) = id {
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        };
        for ty in self.type_rules(scope) {
            push(Some(ty));
        }
        push(rules.field_rule(scope, &field.name));
        for i in self.interfaces(scope) {
            push(rules.field_rule(i, &field.name));
        }
        for ty in self.type_rules(field.definition.ty.inner_named_type()) {
            push(Some(ty));
        }
        for object in self.possible(scope) {
            for ty in self.type_rules(object) {
                push(Some(ty));
            }
            push(rules.field_rule(object, &field.name));
            for i in self.interfaces(object) {
                push(rules.field_rule(i, &field.name));
            }
        }
        out
    }

    /// A type's rule and those of the interfaces it implements: what
    /// guards an interface guards its objects, however they are reached.
    fn type_rules(&self, ty: &Name) -> Vec<usize> {
        let rules = &self.supergraph.access;
        std::iter::once(ty)
            .chain(self.interfaces(ty))
            .filter_map(|t| rules.type_rule(t))
            .collect()
    }

    fn first_denied(&self, rules: &[usize]) -> Option<usize> {
        rules.iter().copied().find(|r| self.denied.contains(r))
    }

    fn collect_rules(&mut self, set: &'a SelectionSet) {
        for sel in &set.selections {
            match sel {
                Selection::Field(f) => {
                    if !f.name.starts_with("__") {
                        let rules = self.field_rules(&set.ty, f);
                        self.reached.extend(rules);
                    }
                    self.collect_rules(&f.selection_set);
                }
                Selection::InlineFragment(i) => {
                    if let Some(t) = &i.type_condition {
                        let rules = self.type_rules(t);
                        self.reached.extend(rules);
                    }
                    self.collect_rules(&i.selection_set);
                }
                Selection::FragmentSpread(s) => {
                    if self
                        .fragments
                        .insert(s.fragment_name.clone(), true)
                        .is_some()
                    {
                        continue;
                    }
                    if let Some(fragment) = self.document.fragments.get(&s.fragment_name) {
                        let rules = self.type_rules(fragment.type_condition());
                        self.reached.extend(rules);
                        self.collect_rules(&fragment.selection_set);
                    }
                }
            }
        }
    }

    /// Marks what goes; whether anything of `set` is left.
    fn mark(&mut self, set: &'a SelectionSet) -> bool {
        let mut left = false;
        for sel in &set.selections {
            let a = selection_addr(sel);
            match sel {
                Selection::Field(f) => {
                    if f.name.starts_with("__") {
                        left = true;
                        continue;
                    }
                    let rules = self.field_rules(&set.ty, f);
                    if let Some(id) = self.first_denied(&rules) {
                        self.denied_by.insert(a, (id, true));
                    } else if !f.selection_set.selections.is_empty() && !self.mark(&f.selection_set)
                    {
                        self.emptied.insert(a);
                        self.emptied_fields.insert(a);
                    } else {
                        left = true;
                    }
                }
                Selection::InlineFragment(i) => {
                    let rules = i
                        .type_condition
                        .as_ref()
                        .map(|t| self.type_rules(t))
                        .unwrap_or_default();
                    if let Some(id) = self.first_denied(&rules) {
                        self.denied_by.insert(a, (id, false));
                    } else if !self.mark(&i.selection_set) {
                        self.emptied.insert(a);
                    } else {
                        left = true;
                    }
                }
                Selection::FragmentSpread(s) => {
                    let Some(fragment) = self.document.fragments.get(&s.fragment_name) else {
                        continue;
                    };
                    let rules = self.type_rules(fragment.type_condition());
                    if let Some(id) = self.first_denied(&rules) {
                        self.denied_by.insert(a, (id, false));
                        continue;
                    }
                    let kept = match self.fragments.get(&s.fragment_name) {
                        Some(k) => *k,
                        None => {
                            let k = self.mark(&fragment.selection_set);
                            self.fragments.insert(s.fragment_name.clone(), k);
                            k
                        }
                    };
                    if kept {
                        left = true;
                    } else {
                        self.emptied.insert(a);
                    }
                }
            }
        }
        left
    }

    /// One error per removed selection and response path.
    fn report(
        &self,
        set: &'a SelectionSet,
        path: &mut Vec<ResponseDataPathSegment>,
        seen: &mut HashSet<(Vec<ResponseDataPathSegment>, usize)>,
        out: &mut Vec<GraphQLError>,
    ) {
        for sel in &set.selections {
            let a = selection_addr(sel);
            let is_field = matches!(sel, Selection::Field(_));
            if is_field {
                if let Selection::Field(f) = sel {
                    path.push(ResponseDataPathSegment::Field(f.response_key().clone()));
                }
            }
            if let Some((id, _)) = self.denied_by.get(&a) {
                if seen.insert((path.clone(), *id)) {
                    out.push(self.error(*id, sel, path));
                }
            } else {
                match sel {
                    Selection::Field(f) => self.report(&f.selection_set, path, seen, out),
                    Selection::InlineFragment(i) => self.report(&i.selection_set, path, seen, out),
                    Selection::FragmentSpread(s) => {
                        if let Some(fragment) = self.document.fragments.get(&s.fragment_name) {
                            self.report(&fragment.selection_set, path, seen, out);
                        }
                    }
                }
            }
            if is_field {
                path.pop();
            }
        }
    }

    fn error(&self, id: usize, sel: &Selection, path: &[ResponseDataPathSegment]) -> GraphQLError {
        let rules = &self.supergraph.access;
        let message = match sel {
            Selection::Field(_) => rules.describe(id),
            _ => format!("{}; the fragment on it was left out", rules.describe(id)),
        };
        let location = match sel {
            Selection::Field(f) => f.location(),
            Selection::FragmentSpread(s) => s.location(),
            Selection::InlineFragment(i) => i.location(),
        };
        let mut e = GraphQLError::new(message, location, &self.document.sources);
        e.path = path.to_vec();
        e.extensions
            .insert("code", JsonValue::String(UNAUTHORIZED.into()));
        e
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use apollo_compiler::response::JsonMap;
    use bytes::Bytes;
    use futures::future::BoxFuture;

    use super::*;
    use crate::{
        execute::{self, FetchError, SubgraphRequest, Transport},
        prepare,
        schema::{build, Dialect, SubgraphId, SubgraphSpec},
        Limits,
    };

    const SHOP: &str = r#"
extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key", "@authenticated", "@requiresScopes"])
type Query {
  me: User @authenticated
  users: [User!]!
  search: [Result!]!
  node(id: ID!): Node
}
type Subscription { userChanged: User! }
interface Node { id: ID! }
type User implements Node @key(fields: "id") {
  id: ID!
  name: String!
  email: String @requiresScopes(scopes: [["read:email"], ["admin"]])
  ssn: String! @requiresScopes(scopes: "admin")
}
type Invoice implements Node @authenticated { id: ID! total: Int! }
union Result = User | Invoice
"#;

    fn shop_spec() -> SubgraphSpec {
        SubgraphSpec {
            name: "shop".into(),
            dialect: Dialect::Federation,
            schema_sdl: SHOP.into(),
            schema_origin: "shop.graphql".into(),
            ..Default::default()
        }
    }

    /// The shop subgraph with its SDL changed.
    fn shop_with(sdl: String) -> Supergraph {
        match build(&[SubgraphSpec {
            schema_sdl: sdl,
            ..shop_spec()
        }]) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn shop() -> Supergraph {
        match build(&[shop_spec()]) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn grants(scopes: &[&str]) -> Grants {
        Grants {
            authenticated: true,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Answers every subgraph request with `answer`, keeping the queries.
    struct Scripted {
        answer: String,
        sent: Mutex<Vec<String>>,
    }

    impl Transport for Scripted {
        fn fetch<'a>(
            &'a self,
            _: SubgraphId,
            request: SubgraphRequest,
        ) -> BoxFuture<'a, Result<Bytes, FetchError>> {
            if let Ok(mut sent) = self.sent.lock() {
                sent.push(request.query);
            }
            Box::pin(async move { Ok(Bytes::from(self.answer.clone())) })
        }
    }

    /// The subgraph queries sent, and the response as JSON.
    fn run(sg: &Supergraph, query: &str, grants: &Grants, answer: &str) -> (Vec<String>, String) {
        let prepared = prepare(sg, query, None, &Limits::default()).unwrap();
        let filtered = match authorize(sg, &prepared, grants, UnauthorizedMode::Filter) {
            Ok(f) => f,
            Err(e) => {
                let errors = serde_json::to_string(&e.to_graphql_errors()).unwrap();
                return (Vec::new(), format!("refused: {errors}"));
            }
        };
        let vars = crate::coerce_variables(sg, &prepared, &JsonMap::new()).unwrap();
        let req = execute::Request {
            supergraph: sg,
            document: &prepared.document,
            operation: prepared.operation(),
            plan: filtered.as_ref().map_or(&prepared.plan, |f| &f.plan),
            variables: &vars,
            authorization: filtered.as_deref(),
        };
        let transport = Scripted {
            answer: answer.into(),
            sent: Mutex::new(Vec::new()),
        };
        let response = futures::executor::block_on(execute::execute(&req, &transport));
        let sent = transport.sent.into_inner().unwrap();
        (sent, serde_json::to_string(&response).unwrap())
    }

    #[test]
    fn rules_are_read_from_subgraph_and_stitching_sdl_in_public_names() {
        let sg = shop();
        let mut rules: Vec<String> = (0..sg.access.rules.len())
            .map(|id| sg.access.describe(id))
            .collect();
        rules.sort();
        insta::assert_snapshot!(rules.join("\n"), @r"
        not authorized: `Query.me` requires an authenticated caller
        not authorized: `User.email` requires the scopes [read:email] or [admin]
        not authorized: `User.ssn` requires the scopes [admin]
        not authorized: type `Invoice` requires an authenticated caller
        ");

        let mut specs = crate::testing::specs();
        specs[1].stitching.push((
            "access.graphql".into(),
            r#"extend type Dataset @authenticated { name: String! @requiresScopes(scopes: [["datasets"]]) }
               extend type Pipeline { datasets: [Dataset!]! @requiresScopes(scopes: [["datasets"]]) }"#
                .into(),
        ));
        let sg = build(&specs).unwrap();
        let mut rules: Vec<String> = (0..sg.access.rules.len())
            .map(|id| sg.access.describe(id))
            .collect();
        rules.sort();
        insta::assert_snapshot!(rules.join("\n"), @r"
        not authorized: `Dataset.name` requires the scopes [datasets]
        not authorized: `Pipeline.datasets` requires the scopes [datasets]
        not authorized: type `Dataset` requires an authenticated caller
        ");

        specs[1].stitching.push((
            "bad.graphql".into(),
            r#"extend type Dataset { nope: String @authenticated }
               extend type Pipeline @requiresScopes(scopes: 3)"#
                .into(),
        ));
        let e = build(&specs).unwrap_err().to_string();
        assert!(e.contains("type `Dataset` has no field `nope`"), "{e}");
        assert!(
            e.contains("@requiresScopes needs `scopes:` as a list of lists"),
            "{e}"
        );
        let policy = SubgraphSpec {
            schema_sdl: SHOP.replace("@authenticated {", "@policy(policies: [[\"p\"]]) {"),
            ..shop_spec()
        };
        let e = build(&[policy]).unwrap_err().to_string();
        assert!(
            e.contains("`Invoice`: @policy is not enforced by this gateway"),
            "{e}"
        );
    }

    #[test]
    fn denied_fields_are_not_fetched_and_answer_null_with_an_error_at_their_path() {
        let sg = shop();
        let query = "{ users { id name email } }";
        let answer = r#"{"data":{"users":[{"id":"1","name":"Ada"},{"id":"2","name":"Bob"}]}}"#;
        let (sent, response) = run(&sg, query, &grants(&[]), answer);
        insta::assert_snapshot!(format!("{sent:?}\n{response}"), @r#"
        ["query { users { id name } }"]
        {"data":{"users":[{"id":"1","name":"Ada","email":null},{"id":"2","name":"Bob","email":null}]},"errors":[{"message":"not authorized: `User.email` requires the scopes [read:email] or [admin]","locations":[{"line":1,"column":19}],"path":["users","email"],"extensions":{"code":"UNAUTHORIZED_FIELD_OR_TYPE"}}]}
        "#);
        // Either scope set will do; the whole query goes out.
        let (sent, response) = run(&sg, query, &grants(&["admin"]), answer);
        assert_eq!(sent, ["query { users { id name email } }"]);
        assert!(!response.contains("errors"), "{response}");
    }

    #[test]
    fn a_denied_non_null_field_nulls_its_nearest_nullable_parent_without_a_second_error() {
        let sg = shop();
        let answer = r#"{"data":{"me":{"name":"Ada"},"search":[]}}"#;
        let (sent, response) = run(
            &sg,
            "{ me { name ssn } search { __typename } }",
            &grants(&["read:email"]),
            answer,
        );
        insta::assert_snapshot!(format!("{sent:?}\n{response}"), @r#"
        ["query { me { name } search { _stitch_t: __typename } }"]
        {"data":{"me":null,"search":[]},"errors":[{"message":"not authorized: `User.ssn` requires the scopes [admin]","locations":[{"line":1,"column":13}],"path":["me","ssn"],"extensions":{"code":"UNAUTHORIZED_FIELD_OR_TYPE"}}]}
        "#);
    }

    #[test]
    fn fragments_interfaces_and_unions_are_filtered_by_the_types_they_reach() {
        let sg = shop();
        let query = r#"
          { search { ...U ... on Invoice { total } }
            again: users { ...U }
            node(id: "1") { ... on User { name } } }
          fragment U on User { name email }"#;
        let answer = r#"{"data":{"search":[{"_stitch_t":"User","name":"Ada"},{"_stitch_t":"Invoice"}],"again":[{"name":"Bob"}],"node":{"_stitch_t":"User","name":"Ada"}}}"#;
        let (sent, response) = run(&sg, query, &Grants::default(), answer);
        insta::assert_snapshot!(format!("{sent:?}\n{response}"), @r#"
        ["query { search { _stitch_t: __typename ... on User { name } } again: users { name } node(id: \"1\") { _stitch_t: __typename ... on User { name } } }"]
        {"data":{"search":[{"name":"Ada","email":null},{}],"again":[{"name":"Bob","email":null}],"node":{"name":"Ada"}},"errors":[{"message":"not authorized: `User.email` requires the scopes [read:email] or [admin]","locations":[{"line":5,"column":37}],"path":["search","email"],"extensions":{"code":"UNAUTHORIZED_FIELD_OR_TYPE"}},{"message":"not authorized: type `Invoice` requires an authenticated caller; the fragment on it was left out","locations":[{"line":2,"column":27}],"path":["search"],"extensions":{"code":"UNAUTHORIZED_FIELD_OR_TYPE"}},{"message":"not authorized: `User.email` requires the scopes [read:email] or [admin]","locations":[{"line":5,"column":37}],"path":["again","email"],"extensions":{"code":"UNAUTHORIZED_FIELD_OR_TYPE"}}]}
        "#);
        // A field of an interface is guarded by every type that may answer it.
        let (sent, response) = run(&sg, r#"{ node(id: "1") { id } }"#, &Grants::default(), "{}");
        assert!(sent.is_empty());
        assert!(response.starts_with("refused: "), "{response}");
        assert!(
            response.contains("type `Invoice` requires an authenticated caller"),
            "{response}"
        );
        assert!(response.contains(r#""path":["node","id"]"#), "{response}");
    }

    #[test]
    fn what_an_interface_guards_its_objects_keep_however_they_are_reached() {
        let sdl = SHOP
            .replace(
                "interface Node { id: ID! }",
                "interface Node @requiresScopes(scopes: \"nodes\") { id: ID! }",
            )
            .replace(
                "type Invoice implements Node @authenticated { id: ID! total: Int! }",
                "type Invoice implements Node { id: ID! total: Int! }",
            );
        let sg = shop_with(sdl);
        // `users` returns `User`, a `Node`: guarded by the interface's rule.
        let (sent, response) = run(
            &sg,
            "{ users { id } search { ... on Invoice { total } } }",
            &grants(&[]),
            "{}",
        );
        assert!(sent.is_empty(), "{sent:?}");
        assert!(
            response.contains("type `Node` requires the scopes [nodes]"),
            "{response}"
        );
        let (sent, _) = run(
            &sg,
            "{ users { id } }",
            &grants(&["nodes"]),
            r#"{"data":{"users":[]}}"#,
        );
        assert_eq!(sent, ["query { users { id } }"]);
        // An interface field's rule holds on the objects' field too.
        let sdl = SHOP.replace(
            "interface Node { id: ID! }",
            "interface Node { id: ID! @authenticated }",
        );
        let sg = shop_with(sdl);
        let (_, response) = run(
            &sg,
            "{ users { id name } }",
            &Grants::default(),
            r#"{"data":{"users":[{"name":"Ada"}]}}"#,
        );
        assert!(
            response.contains("`Node.id` requires an authenticated caller"),
            "{response}"
        );
        assert!(response.contains(r#""path":["users","id"]"#), "{response}");
    }

    #[test]
    fn a_rule_another_interface_sets_holds_when_the_object_is_reached_through_this_one() {
        let sdl = SHOP.replace(
            "type User implements Node @key(fields: \"id\") {",
            "interface Private { id: ID! @authenticated }\ntype User implements Node & Private @key(fields: \"id\") {",
        );
        let sg = shop_with(sdl);
        let (sent, response) = run(&sg, r#"{ node(id: "1") { id } }"#, &Grants::default(), "{}");
        assert!(sent.is_empty(), "{sent:?}");
        assert!(
            response.contains("`Private.id` requires an authenticated caller"),
            "{response}"
        );
        let mut rules = AccessRules::default();
        let e = rules
            .add(&sg.schema, "__Schema", Requirement::Authenticated)
            .unwrap_err();
        assert!(e.contains("introspection types cannot carry rules"), "{e}");
    }

    #[test]
    fn an_operation_with_nothing_left_is_refused_and_reject_mode_refuses_any_denial() {
        let sg = shop();
        let prepared = prepare(
            &sg,
            "subscription { userChanged { ssn } }",
            None,
            &Limits::default(),
        )
        .unwrap();
        let refused =
            authorize(&sg, &prepared, &grants(&[]), UnauthorizedMode::Filter).unwrap_err();
        assert_eq!(refused.code(), UNAUTHORIZED);
        let ok = authorize(
            &sg,
            &prepared,
            &grants(&["admin"]),
            UnauthorizedMode::Filter,
        )
        .unwrap();
        assert!(ok.is_none());

        let prepared = prepare(&sg, "{ users { name email } }", None, &Limits::default()).unwrap();
        let filtered = authorize(&sg, &prepared, &grants(&[]), UnauthorizedMode::Filter).unwrap();
        assert!(filtered.is_some());
        // The same failed rules reuse the same filtered plan.
        let again =
            authorize(&sg, &prepared, &Grants::default(), UnauthorizedMode::Filter).unwrap();
        assert!(again.is_some_and(|a| filtered.is_some_and(|f| Arc::ptr_eq(&a, &f))));
        let rejected =
            authorize(&sg, &prepared, &grants(&[]), UnauthorizedMode::Reject).unwrap_err();
        assert_eq!(rejected.to_graphql_errors().len(), 1);
    }
}
