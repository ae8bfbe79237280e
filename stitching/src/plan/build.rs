//! The planner: walks the operation once and places every field on a
//! fetch. A field stays on the fetch that holds its parent when that
//! subgraph resolves it there; otherwise it goes to an entity fetch at the
//! same path (a subgraph that resolves it and can fetch the parent by a key
//! the plan can provide), or to its stitched call. A fetch's requirements
//! (keys, `@requires`, `$fields:`) are planned like client fields, and the
//! fetch runs in the wave after every fetch that provides them.

use std::collections::{BTreeSet, HashMap};

use apollo_compiler::{
    ast::{self, OperationType, Value},
    executable::{DirectiveList, Field, Operation, Selection as Sel, SelectionSet as ClientSet},
    schema::ExtendedType,
    validation::Valid,
    ExecutableDocument, Name, Node,
};

use super::{
    selection::{Argument, FieldSelection, FragmentSelection, Renderer, Selection, SelectionSet},
    BoolOrVariable, Condition, FetchKind, FetchNode, InputField, PathStep, PlanError, QueryPlan,
    REQUIRE_PREFIX, TYPENAME_ALIAS,
};
use crate::schema::{fieldset::FieldSet, Call, EntityResolver, FieldModel, SubgraphId, Supergraph};

type NodeId = usize;

/// A selection set being built; fields point at their children by id.
#[derive(Default)]
struct SelNode {
    items: Vec<Item>,
}

enum Item {
    Field {
        key: Name,
        name: Name,
        arguments: Vec<(Name, Argument)>,
        conditions: Vec<Condition>,
        child: Option<NodeId>,
    },
    Fragment {
        type_condition: Option<Name>,
        conditions: Vec<Condition>,
        child: NodeId,
    },
}

/// What a fetch under construction may be merged with.
#[derive(PartialEq)]
enum MergeKey {
    Root(SubgraphId),
    Entity(Vec<PathStep>, usize),
    Field(Vec<PathStep>, Name),
}

struct Builder {
    subgraph: SubgraphId,
    kind: FetchKind,
    path: Vec<PathStep>,
    conditions: Vec<Condition>,
    requires: Vec<InputField>,
    root: NodeId,
    deps: BTreeSet<usize>,
    merge: MergeKey,
    /// Mutation steps run one after another; fetches merge within a step.
    step: usize,
}

/// Where fields are being placed: objects of `ty` at `path`, held by fetch
/// `fetch` (from `subgraph`) in selection node `node`.
#[derive(Clone)]
struct Pos {
    fetch: Option<usize>,
    node: NodeId,
    subgraph: SubgraphId,
    path: Vec<PathStep>,
    ty: Name,
    /// What `@provides` lets the subgraph resolve here.
    provides: Option<FieldSet>,
    /// Requirements the fetch receives with each entity (entity fetch roots).
    satisfied: Option<FieldSet>,
    /// An entity fetch's root: a field still not resolvable here is an error,
    /// not another hop.
    entity_root: bool,
    conditions: Vec<Condition>,
}

impl Pos {
    /// The operation's root in `subgraph`, held by `fetch` (none for a
    /// stitched root field, whose call is its own fetch).
    fn root(fetch: Option<usize>, node: NodeId, subgraph: SubgraphId, ty: Name) -> Pos {
        Pos {
            fetch,
            node,
            subgraph,
            path: Vec::new(),
            ty,
            provides: None,
            satisfied: None,
            entity_root: false,
            conditions: Vec::new(),
        }
    }
}

/// A field to place: the client's, or one a requirement names.
struct FieldReq<'d> {
    key: Name,
    name: Name,
    arguments: &'d [Node<ast::Argument>],
    conditions: Vec<Condition>,
    sub: Option<&'d ClientSet>,
}

struct Planner<'a> {
    sg: &'a Supergraph,
    doc: &'a Valid<ExecutableDocument>,
    op: &'a Operation,
    nodes: Vec<SelNode>,
    fetches: Vec<Builder>,
    step: usize,
    has_introspection: bool,
    /// Fetches touched while planning requirements (innermost last).
    touched: Vec<BTreeSet<usize>>,
    /// Fragments already spread into a node under some conditions: spreading
    /// one again there adds nothing (the specification's CollectFields).
    spread: Vec<(Name, NodeId, Vec<Condition>)>,
    /// Per object position (its path's keys), the response keys in use and
    /// the field (and whether it has arguments) each holds: a required field
    /// keeps its own name unless that key holds something else there.
    keys: HashMap<Vec<Name>, HashMap<Name, (Name, bool)>>,
}

/// Plans operation `name` (or the only one) of a validated document.
pub fn plan(
    supergraph: &Supergraph,
    doc: &Valid<ExecutableDocument>,
    name: Option<&str>,
) -> Result<QueryPlan, PlanError> {
    let op = doc
        .operations
        .get(name)
        .map_err(|e| PlanError::UnknownOperation(e.message().to_string()))?;
    let mut p = Planner {
        sg: supergraph,
        doc,
        op,
        nodes: Vec::new(),
        fetches: Vec::new(),
        step: 0,
        has_introspection: false,
        touched: Vec::new(),
        spread: Vec::new(),
        keys: HashMap::new(),
    };
    p.plan_root()?;
    Ok(p.finish())
}

pub(crate) fn conditions_of(directives: &DirectiveList) -> Vec<Condition> {
    let mut out = Vec::new();
    for d in directives.iter() {
        let wrap: fn(BoolOrVariable) -> Condition = match d.name.as_str() {
            "skip" => Condition::Skip,
            "include" => Condition::Include,
            _ => continue,
        };
        match d.specified_argument_by_name("if").map(|v| v.as_ref()) {
            Some(Value::Boolean(b)) => out.push(wrap(BoolOrVariable::Bool(*b))),
            Some(Value::Variable(v)) => out.push(wrap(BoolOrVariable::Variable(v.clone()))),
            _ => {}
        }
    }
    out
}

fn with(base: &[Condition], more: &[Condition]) -> Vec<Condition> {
    let mut v = base.to_vec();
    for c in more {
        if !v.contains(c) {
            v.push(c.clone());
        }
    }
    v
}

fn unserved(type_name: &Name, field: &Name, reason: impl Into<String>) -> PlanError {
    PlanError::Unserved {
        type_name: type_name.to_string(),
        field: field.to_string(),
        reason: reason.into(),
    }
}

impl<'a> Planner<'a> {
    fn new_node(&mut self) -> NodeId {
        self.nodes.push(SelNode::default());
        self.nodes.len() - 1
    }

    fn touch(&mut self, fetch: Option<usize>) {
        if let Some(f) = fetch {
            for set in &mut self.touched {
                set.insert(f);
            }
        }
    }

    fn is_composite(&self, ty: &Name) -> bool {
        matches!(
            self.sg.schema.types.get(ty),
            Some(ExtendedType::Object(_) | ExtendedType::Interface(_) | ExtendedType::Union(_))
        ) || self.sg.model.types.contains_key(ty)
    }

    fn ensure_typename(&mut self, node: NodeId) {
        let has = self.nodes[node]
            .items
            .iter()
            .any(|i| matches!(i, Item::Field { key, .. } if key == TYPENAME_ALIAS));
        if !has {
            self.nodes[node].items.insert(
                0,
                Item::Field {
                    key: Name::new_static_unchecked(TYPENAME_ALIAS),
                    name: Name::new_static_unchecked("__typename"),
                    arguments: Vec::new(),
                    conditions: Vec::new(),
                    child: None,
                },
            );
        }
    }

    /// Adds a field to a node (or finds the same one there) and returns its
    /// child node for composite fields.
    fn add_field(
        &mut self,
        node: NodeId,
        key: &Name,
        name: &Name,
        arguments: Vec<(Name, Argument)>,
        conditions: &[Condition],
        composite: bool,
    ) -> Option<NodeId> {
        let found = self.nodes[node].items.iter().position(|i| {
            matches!(i, Item::Field { key: k, name: n, arguments: a, conditions: c, .. }
                if k == key && n == name && *a == arguments && c == conditions)
        });
        let index = match found {
            Some(i) => i,
            None => {
                let child = composite.then(|| self.new_node());
                self.nodes[node].items.push(Item::Field {
                    key: key.clone(),
                    name: name.clone(),
                    arguments,
                    conditions: conditions.to_vec(),
                    child,
                });
                self.nodes[node].items.len() - 1
            }
        };
        match &self.nodes[node].items[index] {
            Item::Field { child, .. } => *child,
            Item::Fragment { .. } => None,
        }
    }

    fn add_fragment(
        &mut self,
        node: NodeId,
        type_condition: Option<Name>,
        conditions: &[Condition],
    ) -> NodeId {
        let found = self.nodes[node].items.iter().find_map(|i| match i {
            Item::Fragment {
                type_condition: t,
                conditions: c,
                child,
            } if *t == type_condition && c == conditions => Some(*child),
            _ => None,
        });
        if let Some(child) = found {
            return child;
        }
        let child = self.new_node();
        self.nodes[node].items.push(Item::Fragment {
            type_condition,
            conditions: conditions.to_vec(),
            child,
        });
        child
    }

    /// The response key for a required field at `pos`: its own name unless
    /// that key holds another field (or arguments) there.
    fn requirement_key(&mut self, pos: &Pos, name: &Name) -> Name {
        let keys = self.keys.entry(object_key(&pos.path)).or_default();
        match keys.get(name) {
            Some((field, args)) if field == name && !args => name.clone(),
            Some(_) => Name::new_unchecked(&format!("{REQUIRE_PREFIX}{name}")),
            None => {
                keys.insert(name.clone(), (name.clone(), false));
                name.clone()
            }
        }
    }

    // ---- the operation's root ------------------------------------------------

    fn root_fields(
        &mut self,
        set: &'a ClientSet,
        conditions: &[Condition],
        visited: &mut Vec<&'a Name>,
        out: &mut Vec<FieldReq<'a>>,
    ) {
        for sel in &set.selections {
            match sel {
                Sel::Field(f) => out.push(FieldReq {
                    key: f.response_key().clone(),
                    name: f.name.clone(),
                    arguments: &f.arguments,
                    conditions: with(conditions, &conditions_of(&f.directives)),
                    sub: Some(&f.selection_set).filter(|s| !s.selections.is_empty()),
                }),
                Sel::InlineFragment(i) => {
                    let c = with(conditions, &conditions_of(&i.directives));
                    self.root_fields(&i.selection_set, &c, visited, out);
                }
                Sel::FragmentSpread(s) => {
                    if s.directives.is_empty() && visited.contains(&&s.fragment_name) {
                        continue;
                    }
                    visited.push(&s.fragment_name);
                    if let Some(fragment) = self.doc.fragments.get(&s.fragment_name) {
                        let c = with(conditions, &conditions_of(&s.directives));
                        self.root_fields(&fragment.selection_set, &c, visited, out);
                    }
                }
            }
        }
    }

    fn plan_root(&mut self) -> Result<(), PlanError> {
        let root_ty = self.op.selection_set.ty.clone();
        let mut reqs = Vec::new();
        self.root_fields(&self.op.selection_set, &[], &mut Vec::new(), &mut reqs);
        let mut last_subgraph: Option<SubgraphId> = None;
        for req in reqs {
            match req.name.as_str() {
                "__typename" => continue,
                "__schema" | "__type" => {
                    self.has_introspection = true;
                    continue;
                }
                _ => {}
            }
            let fm = self
                .sg
                .model
                .field(&root_ty, &req.name)
                .ok_or_else(|| unserved(&root_ty, &req.name, "no subgraph defines it"))?;
            let subgraph = match &fm.delegation {
                Some(call) => call.subgraph,
                None => self
                    .root_source(fm)
                    .ok_or_else(|| unserved(&root_ty, &req.name, "no subgraph resolves it"))?,
            };
            if self.op.operation_type == OperationType::Mutation
                && last_subgraph.is_some_and(|s| s != subgraph)
            {
                self.step += 1;
            }
            last_subgraph = Some(subgraph);
            let fm = fm.clone();
            match &fm.delegation {
                Some(call) => {
                    let pos = Pos::root(None, usize::MAX, subgraph, root_ty.clone());
                    self.plan_delegated(&pos, &req, &fm, call.clone())?;
                }
                None => {
                    let fetch = self.root_fetch(subgraph);
                    let node = self.fetches[fetch].root;
                    let pos = Pos::root(Some(fetch), node, subgraph, root_ty.clone());
                    self.plan_local(&pos, &req, &fm)?;
                }
            }
        }
        Ok(())
    }

    /// The subgraph for a root field several subgraphs share: one already
    /// called in this step, else the first.
    fn root_source(&self, fm: &FieldModel) -> Option<SubgraphId> {
        fm.sources
            .iter()
            .find(|s| {
                self.fetches
                    .iter()
                    .any(|f| f.step == self.step && f.merge == MergeKey::Root(s.subgraph))
            })
            .or(fm.sources.first())
            .map(|s| s.subgraph)
    }

    fn root_fetch(&mut self, subgraph: SubgraphId) -> usize {
        if let Some(i) = self
            .fetches
            .iter()
            .position(|f| f.step == self.step && f.merge == MergeKey::Root(subgraph))
        {
            return i;
        }
        let root = self.new_node();
        self.fetches.push(Builder {
            subgraph,
            kind: FetchKind::Root {
                operation: self.op.operation_type,
            },
            path: Vec::new(),
            conditions: Vec::new(),
            requires: Vec::new(),
            root,
            deps: BTreeSet::new(),
            merge: MergeKey::Root(subgraph),
            step: self.step,
        });
        self.fetches.len() - 1
    }

    // ---- selection sets --------------------------------------------------------

    /// Whether `pos`'s subgraph resolves the field where it holds the parent.
    fn is_local(&self, pos: &Pos, fm: &FieldModel, name: &Name) -> bool {
        if fm.delegation.is_some() {
            return false;
        }
        let Some(src) = fm.source(pos.subgraph) else {
            return false;
        };
        let provided = pos
            .provides
            .as_ref()
            .is_some_and(|p| p.below(name).is_some());
        if src.external && !provided {
            return false;
        }
        match &src.requires {
            None => true,
            Some(r) => pos.satisfied.as_ref().is_some_and(|s| r.is_within(s)),
        }
    }

    fn field_is_local(&self, pos: &Pos, name: &Name) -> bool {
        name == "__typename"
            || self
                .sg
                .model
                .field(&pos.ty, name)
                .is_some_and(|fm| self.is_local(pos, fm, name))
    }

    /// Records the response keys a client set uses at a position, fragments included.
    fn note_keys(&mut self, pos: &Pos, set: &'a ClientSet, seen: &mut Vec<&'a Name>) {
        for sel in &set.selections {
            match sel {
                Sel::Field(f) => {
                    self.keys
                        .entry(object_key(&pos.path))
                        .or_default()
                        .entry(f.response_key().clone())
                        .or_insert_with(|| (f.name.clone(), !f.arguments.is_empty()));
                }
                Sel::InlineFragment(i) => self.note_keys(pos, &i.selection_set, seen),
                Sel::FragmentSpread(s) => {
                    if seen.contains(&&s.fragment_name) {
                        continue;
                    }
                    seen.push(&s.fragment_name);
                    if let Some(f) = self.doc.fragments.get(&s.fragment_name) {
                        self.note_keys(pos, &f.selection_set, seen);
                    }
                }
            }
        }
    }

    /// Places a client selection set: fields the subgraph resolves here
    /// first (so requirements find them), then the others and fragments.
    fn plan_set(&mut self, pos: &Pos, set: &'a ClientSet) -> Result<(), PlanError> {
        self.note_keys(pos, set, &mut Vec::new());
        for sel in &set.selections {
            if let Sel::Field(f) = sel {
                if self.field_is_local(pos, &f.name) {
                    self.plan_field(pos, &client_req(f))?;
                }
            }
        }
        for sel in &set.selections {
            match sel {
                Sel::Field(f) => {
                    if !self.field_is_local(pos, &f.name) {
                        self.plan_field(pos, &client_req(f))?;
                    }
                }
                Sel::InlineFragment(i) => self.plan_fragment(
                    pos,
                    i.type_condition.as_ref(),
                    &i.directives,
                    &i.selection_set,
                )?,
                Sel::FragmentSpread(s) => {
                    let Some(fragment) = self.doc.fragments.get(&s.fragment_name) else {
                        continue;
                    };
                    let conds = with(&pos.conditions, &conditions_of(&s.directives));
                    let key = (s.fragment_name.clone(), pos.node, conds);
                    if s.directives.is_empty() && self.spread.contains(&key) {
                        continue;
                    }
                    self.spread.push(key);
                    self.plan_fragment(
                        pos,
                        Some(fragment.type_condition()),
                        &s.directives,
                        &fragment.selection_set,
                    )?;
                }
            }
        }
        Ok(())
    }

    fn plan_fragment(
        &mut self,
        pos: &Pos,
        type_condition: Option<&Name>,
        directives: &DirectiveList,
        set: &'a ClientSet,
    ) -> Result<(), PlanError> {
        let conds = conditions_of(directives);
        let schema = &self.sg.schema;
        let always = type_condition.is_none_or(|t| {
            *t == pos.ty || (!self.sg.is_abstract(&pos.ty) && schema.is_subtype(t, &pos.ty))
        });
        if always {
            if conds.is_empty() {
                return self.plan_set(pos, set);
            }
            let Some(fetch) = pos.fetch else {
                return self.plan_set(pos, set);
            };
            let child = self.add_fragment(pos.node, None, &conds);
            let inner = Pos {
                fetch: Some(fetch),
                node: child,
                conditions: with(&pos.conditions, &conds),
                ..pos.clone()
            };
            return self.plan_set(&inner, set);
        }
        let Some(tc) = type_condition else {
            return Ok(());
        };
        if !self.sg.is_abstract(&pos.ty) {
            // A fragment on a type this object is not: never applies.
            return Ok(());
        }
        let sub = &self.sg.subgraphs[pos.subgraph];
        if !sub.has_type(tc) {
            // The subgraph never returns objects of that type here.
            return Ok(());
        }
        let remote = sub.remote_type(tc).clone();
        let child = self.add_fragment(pos.node, Some(remote), &conds);
        let mut path = pos.path.clone();
        path.push(PathStep::Type(tc.clone()));
        let inner = Pos {
            node: child,
            path,
            ty: tc.clone(),
            provides: pos.provides.clone(),
            conditions: with(&pos.conditions, &conds),
            ..pos.clone()
        };
        // The object's `_stitch_t` is already selected where it starts.
        self.plan_set(&inner, set)
    }

    // ---- fields ------------------------------------------------------------------

    /// Places one field; returns the position of its children (composite fields).
    fn plan_field(&mut self, pos: &Pos, req: &FieldReq<'a>) -> Result<Option<Pos>, PlanError> {
        if req.name == "__typename" || req.name.starts_with("__") {
            // Answered from the runtime type the gateway already knows.
            return Ok(None);
        }
        let Some(fm) = self.sg.model.field(&pos.ty, &req.name) else {
            return Err(unserved(&pos.ty, &req.name, "the type has no such field"));
        };
        if let Some(call) = &fm.delegation {
            return self.plan_delegated(pos, req, fm, call.clone());
        }
        if self.is_local(pos, fm, &req.name) {
            return self.plan_local(pos, req, fm);
        }
        if self.sg.is_abstract(&pos.ty) {
            return self.plan_by_type(pos, req);
        }
        if pos.entity_root && fm.source(pos.subgraph).is_some() {
            return Err(unserved(
                &pos.ty,
                &req.name,
                format!(
                    "subgraph `{}` cannot resolve it even with its requirements",
                    self.sg.subgraphs[pos.subgraph].name
                ),
            ));
        }
        self.plan_entity(pos, req, fm)
    }

    fn plan_local(
        &mut self,
        pos: &Pos,
        req: &FieldReq<'a>,
        fm: &FieldModel,
    ) -> Result<Option<Pos>, PlanError> {
        let src = fm.source(pos.subgraph);
        let mut arguments: Vec<(Name, Argument)> = req
            .arguments
            .iter()
            .map(|a| (a.name.clone(), Argument::Client(a.value.clone())))
            .collect();
        if let Some(src) = src {
            for (name, value) in &src.require_args {
                arguments.push((name.clone(), Argument::Required(value.clone())));
            }
        }
        let inner = fm.ty.inner_named_type().clone();
        let composite = self.is_composite(&inner);
        let child = self.add_field(
            pos.node,
            &req.key,
            &req.name,
            arguments,
            &req.conditions,
            composite,
        );
        self.touch(pos.fetch);
        let Some(child) = child else {
            return Ok(None);
        };
        let mut provides = pos
            .provides
            .as_ref()
            .and_then(|p| p.below(&req.name))
            .cloned();
        if let Some(p) = src.and_then(|s| s.provides.as_ref()) {
            provides.get_or_insert_with(FieldSet::default).merge(p);
        }
        let mut path = pos.path.clone();
        path.push(PathStep::Key(req.key.clone()));
        let child_pos = Pos {
            fetch: pos.fetch,
            node: child,
            subgraph: pos.subgraph,
            path,
            ty: inner.clone(),
            provides,
            satisfied: None,
            entity_root: false,
            conditions: with(&pos.conditions, &req.conditions),
        };
        if self.sg.is_abstract(&inner) {
            self.ensure_typename(child);
        }
        if let Some(set) = req.sub {
            self.plan_set(&child_pos, set)?;
        }
        Ok(Some(child_pos))
    }

    /// A field of an abstract type the subgraph does not resolve on the
    /// abstract type itself: placed per object type it may return.
    fn plan_by_type(&mut self, pos: &Pos, req: &FieldReq<'a>) -> Result<Option<Pos>, PlanError> {
        let sub = &self.sg.subgraphs[pos.subgraph];
        let remote_abstract = sub.remote_type(&pos.ty).clone();
        let mut types: Vec<Name> = self
            .sg
            .schema
            .types
            .iter()
            .filter(|(n, t)| {
                matches!(t, ExtendedType::Object(_))
                    && self.sg.schema.is_subtype(&pos.ty, n)
                    && sub.has_type(n)
                    && sub.schema.is_subtype(&remote_abstract, sub.remote_type(n))
            })
            .map(|(n, _)| n.clone())
            .collect();
        types.sort();
        for t in types {
            if self.sg.model.field(&t, &req.name).is_none() {
                continue;
            }
            let remote = self.sg.subgraphs[pos.subgraph].remote_type(&t).clone();
            let child = self.add_fragment(pos.node, Some(remote), &[]);
            let mut path = pos.path.clone();
            path.push(PathStep::Type(t.clone()));
            let inner = Pos {
                node: child,
                path,
                ty: t,
                ..pos.clone()
            };
            self.plan_field(&inner, req)?;
        }
        Ok(None)
    }

    /// The best entity resolver for a field the position's subgraph cannot
    /// resolve: one whose fetch is already planned here, then one whose key
    /// the position's subgraph gives at once.
    fn choose_resolver(
        &self,
        pos: &Pos,
        fm: &FieldModel,
    ) -> Option<std::sync::Arc<EntityResolver>> {
        let resolvers = self.sg.model.resolvers(&pos.ty);
        resolvers
            .iter()
            .filter(|r| fm.source(r.subgraph).is_some_and(|s| !s.external))
            .max_by_key(|r| {
                let planned = self.fetches.iter().any(|f| {
                    f.step == self.step && f.merge == MergeKey::Entity(pos.path.clone(), r.id)
                });
                let local_key = self.key_is_local(pos, &r.key);
                let requires = fm.source(r.subgraph).is_some_and(|s| s.requires.is_some());
                (
                    u8::from(planned) * 4 + u8::from(local_key) * 2 + u8::from(!requires),
                    // Stable among equals: the first declared wins.
                    std::cmp::Reverse(r.id),
                )
            })
            .cloned()
    }

    fn key_is_local(&self, pos: &Pos, key: &FieldSet) -> bool {
        key.fields.iter().all(|f| {
            self.sg.model.field(&pos.ty, &f.name).is_some_and(|fm| {
                self.is_local(pos, fm, &f.name)
                    && (f.selection.is_empty() || {
                        let inner = Pos {
                            ty: fm.ty.inner_named_type().clone(),
                            provides: pos
                                .provides
                                .as_ref()
                                .and_then(|p| p.below(&f.name))
                                .cloned(),
                            satisfied: None,
                            ..pos.clone()
                        };
                        self.key_is_local(&inner, &f.selection)
                    })
            })
        })
    }

    fn plan_entity(
        &mut self,
        pos: &Pos,
        req: &FieldReq<'a>,
        fm: &FieldModel,
    ) -> Result<Option<Pos>, PlanError> {
        let Some(r) = self.choose_resolver(pos, fm) else {
            let sub = &self.sg.subgraphs[pos.subgraph].name;
            return Err(unserved(
                &pos.ty,
                &req.name,
                format!("subgraph `{sub}` does not resolve it and no subgraph that does can fetch a `{}` by key", pos.ty),
            ));
        };
        let mut needs = r.key.clone();
        if let Some(src) = fm.source(r.subgraph) {
            if let Some(req_set) = &src.requires {
                needs.merge(req_set);
            }
        }
        let (inputs, deps) = self.plan_requirements(pos, &needs)?;
        let fetch = self.entity_fetch(pos, &r, inputs, deps, &req.conditions);
        let satisfied = inputs_to_fieldset(&self.fetches[fetch].requires);
        let inner = Pos {
            fetch: Some(fetch),
            node: self.fetches[fetch].root,
            subgraph: r.subgraph,
            path: pos.path.clone(),
            ty: pos.ty.clone(),
            provides: None,
            satisfied: Some(satisfied),
            entity_root: true,
            conditions: with(&pos.conditions, &req.conditions),
        };
        self.plan_field(&inner, req)
    }

    /// Finds the entity fetch for this path and resolver, or starts one.
    fn entity_fetch(
        &mut self,
        pos: &Pos,
        r: &std::sync::Arc<EntityResolver>,
        inputs: Vec<InputField>,
        mut deps: BTreeSet<usize>,
        conditions: &[Condition],
    ) -> usize {
        deps.extend(pos.fetch);
        let conds = with(&pos.conditions, conditions);
        let key = MergeKey::Entity(pos.path.clone(), r.id);
        let existing = self
            .fetches
            .iter()
            .position(|f| f.step == self.step && f.merge == key);
        if let Some(i) = existing {
            let cyclic = deps.iter().any(|d| *d == i || self.reaches(*d, i));
            if !cyclic {
                let b = &mut self.fetches[i];
                merge_inputs(&mut b.requires, inputs);
                b.deps.extend(deps);
                b.conditions.retain(|c| conds.contains(c));
                return i;
            }
        }
        let root = self.new_node();
        let remote_type = self.sg.subgraphs[r.subgraph].remote_type(&pos.ty).clone();
        self.fetches.push(Builder {
            subgraph: r.subgraph,
            kind: FetchKind::Entity {
                resolver: r.clone(),
                remote_type,
            },
            path: pos.path.clone(),
            conditions: conds,
            requires: inputs,
            root,
            deps,
            merge: key,
            step: self.step,
        });
        self.fetches.len() - 1
    }

    /// Whether fetch `from` depends (transitively) on fetch `to`.
    fn reaches(&self, from: usize, to: usize) -> bool {
        let mut stack = vec![from];
        let mut seen = BTreeSet::new();
        while let Some(f) = stack.pop() {
            if !seen.insert(f) {
                continue;
            }
            for d in &self.fetches[f].deps {
                if *d == to {
                    return true;
                }
                stack.push(*d);
            }
        }
        false
    }

    /// Plans the fields a fetch needs from its parents at `pos`; returns
    /// where the data holds them and the fetches that provide them.
    fn plan_requirements(
        &mut self,
        pos: &Pos,
        needs: &FieldSet,
    ) -> Result<(Vec<InputField>, BTreeSet<usize>), PlanError> {
        self.touched.push(BTreeSet::new());
        let inputs = self.require_fields(pos, needs);
        let touched = self.touched.pop().unwrap_or_default();
        Ok((inputs?, touched))
    }

    fn require_fields(&mut self, pos: &Pos, set: &FieldSet) -> Result<Vec<InputField>, PlanError> {
        let mut out = Vec::new();
        for f in &set.fields {
            let key = if pos.fetch.is_some() {
                self.requirement_key(pos, &f.name)
            } else {
                f.name.clone()
            };
            let req = FieldReq {
                key: key.clone(),
                name: f.name.clone(),
                arguments: &[],
                conditions: Vec::new(),
                sub: None,
            };
            let child = self.plan_field(pos, &req)?;
            let selection = match child {
                Some(c) if !f.selection.is_empty() => self.require_fields(&c, &f.selection)?,
                _ => Vec::new(),
            };
            out.push(InputField {
                key,
                name: f.name.clone(),
                selection,
            });
        }
        Ok(out)
    }

    /// The fetch of stitched field `req` at `pos` in this step: the one
    /// already planned for the same call and arguments there (it now waits
    /// for `deps` too), or a new one.
    fn delegated_fetch(
        &mut self,
        pos: &Pos,
        req: &FieldReq<'a>,
        call: &std::sync::Arc<Call>,
        inputs: Vec<InputField>,
        deps: BTreeSet<usize>,
        conds: &[Condition],
    ) -> Result<usize, PlanError> {
        let definition = self
            .sg
            .schema
            .type_field(&pos.ty, &req.name)
            .map(|d| d.node.clone())
            .map_err(|_| unserved(&pos.ty, &req.name, "the stitched field is not public"))?;
        let key = MergeKey::Field(pos.path.clone(), req.key.clone());
        let same_args: Vec<Node<ast::Argument>> = req.arguments.to_vec();
        let existing = self.fetches.iter().position(|f| {
            f.step == self.step
                && f.merge == key
                && matches!(&f.kind, FetchKind::Field { call: c, arguments, .. }
                    if std::sync::Arc::ptr_eq(c, call) && *arguments == same_args)
        });
        if let Some(i) = existing {
            let b = &mut self.fetches[i];
            b.deps.extend(deps);
            b.conditions.retain(|c| conds.contains(c));
            return Ok(i);
        }
        let root = self.new_node();
        self.fetches.push(Builder {
            subgraph: call.subgraph,
            kind: FetchKind::Field {
                call: call.clone(),
                response_key: req.key.clone(),
                arguments: same_args,
                definition,
            },
            path: pos.path.clone(),
            conditions: conds.to_vec(),
            requires: inputs,
            root,
            deps,
            merge: key,
            step: self.step,
        });
        Ok(self.fetches.len() - 1)
    }

    /// A stitched field: its call's fetch at the parent's path, after the
    /// fetches that provide its `$fields:`.
    fn plan_delegated(
        &mut self,
        pos: &Pos,
        req: &FieldReq<'a>,
        fm: &FieldModel,
        call: std::sync::Arc<Call>,
    ) -> Result<Option<Pos>, PlanError> {
        let (inputs, mut deps) = if call.requires.is_empty() {
            (Vec::new(), BTreeSet::new())
        } else {
            self.plan_requirements(pos, &call.requires)?
        };
        deps.extend(pos.fetch);
        let conds = with(&pos.conditions, &req.conditions);
        let fetch = self.delegated_fetch(pos, req, &call, inputs, deps, &conds)?;
        self.touch(Some(fetch));
        let inner = fm.ty.inner_named_type().clone();
        if !self.is_composite(&inner) {
            return Ok(None);
        }
        let mut path = pos.path.clone();
        path.push(PathStep::Key(req.key.clone()));
        let child = Pos {
            fetch: Some(fetch),
            node: self.fetches[fetch].root,
            subgraph: call.subgraph,
            path,
            ty: inner.clone(),
            provides: None,
            satisfied: None,
            entity_root: false,
            conditions: conds,
        };
        if self.sg.is_abstract(&inner) {
            self.ensure_typename(child.node);
        }
        if let Some(set) = req.sub {
            self.plan_set(&child, set)?;
        }
        Ok(Some(child))
    }

    // ---- the result ----------------------------------------------------------------

    fn selection(&self, node: NodeId) -> SelectionSet {
        let items = self.nodes[node]
            .items
            .iter()
            .map(|i| match i {
                Item::Field {
                    key,
                    name,
                    arguments,
                    conditions,
                    child,
                } => Selection::Field(FieldSelection {
                    response_key: key.clone(),
                    name: name.clone(),
                    arguments: arguments.clone(),
                    conditions: conditions.clone(),
                    selection: child.map(|c| self.selection(c)),
                }),
                Item::Fragment {
                    type_condition,
                    conditions,
                    child,
                } => Selection::InlineFragment(FragmentSelection {
                    type_condition: type_condition.clone(),
                    conditions: conditions.clone(),
                    selection: self.selection(*child),
                }),
            })
            .collect();
        SelectionSet { items }
    }

    fn finish(self) -> QueryPlan {
        let mut fetches = Vec::with_capacity(self.fetches.len());
        for (id, b) in self.fetches.iter().enumerate() {
            let selection = self.selection(b.root);
            let mut renderer = Renderer {
                subgraph: &self.sg.subgraphs[b.subgraph],
                operation: self.op,
                variables: Vec::new(),
            };
            let leaf = matches!(&b.kind, FetchKind::Field { definition, .. }
                if !self.is_composite(definition.ty.inner_named_type()));
            let mut rendered = String::new();
            if !leaf {
                renderer.set(
                    &selection,
                    &mut |name, _| format!("require_{name}"),
                    &mut rendered,
                );
            }
            fetches.push(FetchNode {
                id,
                subgraph: b.subgraph,
                kind: clone_kind(&b.kind),
                path: b.path.clone(),
                conditions: b.conditions.clone(),
                requires: b.requires.clone(),
                selection,
                rendered,
                variables: renderer.variables,
                depends_on: b.deps.iter().copied().collect(),
            });
        }
        let waves = waves(&self.fetches);
        QueryPlan {
            operation_type: self.op.operation_type,
            fetches,
            waves,
            has_introspection: self.has_introspection,
        }
    }
}

fn clone_kind(kind: &FetchKind) -> FetchKind {
    match kind {
        FetchKind::Root { operation } => FetchKind::Root {
            operation: *operation,
        },
        FetchKind::Entity {
            resolver,
            remote_type,
        } => FetchKind::Entity {
            resolver: resolver.clone(),
            remote_type: remote_type.clone(),
        },
        FetchKind::Field {
            call,
            response_key,
            arguments,
            definition,
        } => FetchKind::Field {
            call: call.clone(),
            response_key: response_key.clone(),
            arguments: arguments.clone(),
            definition: definition.clone(),
        },
    }
}

/// Each step's fetches by wave, steps one after another: a fetch runs one
/// wave after the latest fetch it needs, or later where that saves a
/// subgraph request (see [`share_requests`]).
fn waves(fetches: &[Builder]) -> Vec<Vec<usize>> {
    let mut waves = earliest_waves(fetches);
    share_requests(fetches, &mut waves);
    waves.retain(|w| !w.is_empty());
    waves
}

/// Each step's fetches by wave (one more than the latest fetch each needs).
fn earliest_waves(fetches: &[Builder]) -> Vec<Vec<usize>> {
    fn level(
        i: usize,
        fetches: &[Builder],
        memo: &mut HashMap<usize, usize>,
        depth: usize,
    ) -> usize {
        if let Some(l) = memo.get(&i) {
            return *l;
        }
        let l = if depth > fetches.len() {
            0
        } else {
            fetches[i]
                .deps
                .iter()
                .map(|d| level(*d, fetches, memo, depth + 1) + 1)
                .max()
                .unwrap_or(0)
        };
        memo.insert(i, l);
        l
    }
    let mut memo = HashMap::new();
    let steps = fetches.iter().map(|f| f.step).max().map_or(0, |s| s + 1);
    let mut out: Vec<Vec<usize>> = Vec::new();
    for step in 0..steps {
        let mut by_level: Vec<Vec<usize>> = Vec::new();
        for (i, f) in fetches.iter().enumerate() {
            if f.step != step {
                continue;
            }
            let l = level(i, fetches, &mut memo, 0);
            if by_level.len() <= l {
                by_level.resize(l + 1, Vec::new());
            }
            by_level[l].push(i);
        }
        out.extend(by_level.into_iter().filter(|w| !w.is_empty()));
    }
    out
}

/// Moves a fetch to a later wave of its step when that wave calls the same
/// subgraph anyway and nothing that needs the fetch runs before it: the
/// executor sends each subgraph one request per wave, so the fetch then
/// costs no request of its own, and the number of waves does not change.
/// (Federation's `TestQuery`: the inventory fields of the top products join
/// those of the reviewed products, 6 requests instead of 7.)
fn share_requests(fetches: &[Builder], waves: &mut [Vec<usize>]) {
    let mut wave_of = vec![0; fetches.len()];
    // A step's waves are consecutive; a fetch never leaves its step's.
    let mut last_of_step: HashMap<usize, usize> = HashMap::new();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); fetches.len()];
    for (w, wave) in waves.iter().enumerate() {
        for &i in wave {
            wave_of[i] = w;
            last_of_step.insert(fetches[i].step, w);
            for &d in &fetches[i].deps {
                dependents[d].push(i);
            }
        }
    }
    // Latest waves first, so a fetch's dependents are where they stay.
    for w in (0..waves.len()).rev() {
        for i in waves[w].clone() {
            let subgraph = fetches[i].subgraph;
            let shares = |wave: &[usize]| {
                wave.iter()
                    .any(|&j| j != i && fetches[j].subgraph == subgraph && is_query(&fetches[j]))
            };
            if !is_query(&fetches[i]) || shares(&waves[w]) {
                continue;
            }
            let latest = dependents[i]
                .iter()
                .map(|&d| wave_of[d] - 1)
                .min()
                .unwrap_or_else(|| last_of_step.get(&fetches[i].step).copied().unwrap_or(w));
            if let Some(to) = (w + 1..=latest).find(|&to| shares(&waves[to])) {
                waves[w].retain(|&j| j != i);
                waves[to].push(i);
                waves[to].sort_unstable();
                wave_of[i] = to;
            }
        }
    }
}

/// A fetch that can share a request with others: a mutation's or a
/// subscription's root fields must stay a document of their own.
fn is_query(fetch: &Builder) -> bool {
    !matches!(fetch.kind, FetchKind::Root { operation } if operation != OperationType::Query)
}

/// An object position's identity: its path's response keys (type steps
/// narrow, they do not change the object).
fn object_key(path: &[PathStep]) -> Vec<Name> {
    path.iter()
        .filter_map(|s| match s {
            PathStep::Key(k) => Some(k.clone()),
            PathStep::Type(_) => None,
        })
        .collect()
}

fn client_req(f: &Node<Field>) -> FieldReq<'_> {
    FieldReq {
        key: f.response_key().clone(),
        name: f.name.clone(),
        arguments: &f.arguments,
        conditions: conditions_of(&f.directives),
        sub: Some(&f.selection_set).filter(|s| !s.selections.is_empty()),
    }
}

fn merge_inputs(into: &mut Vec<InputField>, more: Vec<InputField>) {
    for m in more {
        match into.iter_mut().find(|i| i.key == m.key && i.name == m.name) {
            Some(i) => merge_inputs(&mut i.selection, m.selection),
            None => into.push(m),
        }
    }
}

fn inputs_to_fieldset(inputs: &[InputField]) -> FieldSet {
    let mut set = FieldSet::default();
    for i in inputs {
        let below = inputs_to_fieldset(&i.selection);
        set.merge(&FieldSet {
            fields: vec![crate::schema::fieldset::FieldSetField {
                name: i.name.clone(),
                selection: below,
            }],
        });
    }
    set
}
