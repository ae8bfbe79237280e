//! Operation -> fetch steps per subgraph and level.
//!
//! A plan is a tree of [`FetchNode`]s: the root fields of the operation, and
//! below each the delegated fields found in its selection. Everything that
//! does not depend on the data is decided here, once per document and cached:
//! the remote selection text (client aliases, renamed variables, fragments
//! inlined, `$fields:` requirements added), where children hang, and which
//! client variables each remote document must declare.

use std::{fmt, sync::Arc};

use apollo_compiler::{
    ast::{OperationType, Value},
    executable::{DirectiveList, Field, FragmentSpread, Operation, Selection, SelectionSet},
    validation::Valid,
    ExecutableDocument, Name, Node,
};

use crate::schema::{Delegation, Subgraph, SubgraphId, Supergraph};

/// Alias prefix of parent fields fetched only to feed `$fields:` references.
pub const REQUIRE_PREFIX: &str = "_stitch_f_";
/// Alias of `__typename` fetched for objects of abstract types.
pub const TYPENAME_ALIAS: &str = "_stitch_t";

/// The plan of one operation of a document.
#[derive(Debug)]
pub struct QueryPlan {
    pub operation_type: OperationType,
    /// Delegated root fields, in document order.
    pub root: Vec<Arc<FetchNode>>,
    /// The operation asks for `__schema` or `__type`.
    pub has_introspection: bool,
    /// Number of fetch nodes, for metrics and limits.
    pub node_count: usize,
}

/// `@skip(if:)`/`@include(if:)` on the way to a delegated field.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    Skip(BoolOrVariable),
    Include(BoolOrVariable),
}

#[derive(Clone, Debug, PartialEq)]
pub enum BoolOrVariable {
    Bool(bool),
    Variable(Name),
}

/// One delegated field: fetched from `delegation.subgraph` for every parent
/// object found at `parent_path` under the enclosing fetch's value.
#[derive(Debug)]
pub struct FetchNode {
    pub id: usize,
    pub delegation: Arc<Delegation>,
    pub parent_type: Name,
    /// The client's field: alias, arguments, definition.
    pub field: Node<Field>,
    pub response_key: Name,
    /// Response keys from the enclosing fetch's value to the parent object;
    /// lists on the way are walked. Empty for root fields.
    pub parent_path: Vec<Name>,
    /// The parent's runtime type must be this one (fields inside fragments on abstract types).
    pub type_guard: Option<Name>,
    pub conditions: Vec<Condition>,
    /// `_stitch_f_NAME` for each `$fields:` the delegation reads (no per-parent formatting).
    pub require_keys: Vec<String>,
    /// The remote selection set text (`{ ... }`), empty for leaf fields.
    pub selection: String,
    /// Client variables `selection` uses: `(name, remote type and default)`.
    pub variables: Vec<(Name, String)>,
    pub children: Vec<Arc<FetchNode>>,
}

impl FetchNode {
    pub fn subgraph(&self) -> SubgraphId {
        self.delegation.subgraph
    }

    /// The field's declared type is a list (a null `$fields:` key then yields `[]` when non-null).
    pub fn is_list(&self) -> bool {
        self.field.definition.ty.is_list()
    }

    pub fn is_non_null(&self) -> bool {
        self.field.definition.ty.is_non_null()
    }
}

/// Why an operation cannot be planned. Validation catches nearly everything
/// first, so these are rare.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    UnknownOperation(String),
    #[error("no subgraph serves `{type_name}.{field}`")]
    Unserved { type_name: String, field: String },
}

impl PlanError {
    pub fn code(&self) -> &'static str {
        match self {
            PlanError::UnknownOperation(_) => "OPERATION_RESOLUTION_FAILURE",
            PlanError::Unserved { .. } => "QUERY_PLANNING_FAILED",
        }
    }
}

struct Planner<'a> {
    supergraph: &'a Supergraph,
    doc: &'a Valid<ExecutableDocument>,
    op: &'a Operation,
    next_id: usize,
    /// Fragments already spread into the selection set being rendered, with
    /// the type and conditions they were spread under: spreading one again
    /// there adds nothing (the specification's CollectFields), and skipping it
    /// keeps `...F ...F` chains from doubling the remote document per level.
    visited: Vec<(Name, Name, Vec<Condition>)>,
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
    let mut planner = Planner {
        supergraph,
        doc,
        op,
        next_id: 0,
        visited: Vec::new(),
    };
    let root_type = op.selection_set.ty.clone();
    let mut root = Vec::new();
    let mut has_introspection = false;
    planner.root_fields(
        &op.selection_set,
        &root_type,
        &mut Vec::new(),
        &mut root,
        &mut has_introspection,
    )?;
    Ok(QueryPlan {
        operation_type: op.operation_type,
        root,
        has_introspection,
        node_count: planner.next_id,
    })
}

fn conditions_of(directives: &DirectiveList) -> Vec<Condition> {
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

impl<'a> Planner<'a> {
    /// Whether `spread` adds anything to the selection set being rendered:
    /// `false` when the same fragment was already spread there under the same
    /// type and conditions. Spreads with their own directives always count.
    fn first_spread(
        &mut self,
        spread: &FragmentSpread,
        parent_type: &Name,
        conditions: &[Condition],
    ) -> bool {
        if !spread.directives.is_empty() {
            return true;
        }
        let key = (
            spread.fragment_name.clone(),
            parent_type.clone(),
            conditions.to_vec(),
        );
        if self.visited.contains(&key) {
            return false;
        }
        self.visited.push(key);
        true
    }

    fn root_fields(
        &mut self,
        set: &SelectionSet,
        root_type: &Name,
        conditions: &mut Vec<Condition>,
        out: &mut Vec<Arc<FetchNode>>,
        has_introspection: &mut bool,
    ) -> Result<(), PlanError> {
        for sel in &set.selections {
            match sel {
                Selection::Field(f) => match f.name.as_str() {
                    "__typename" => {}
                    "__schema" | "__type" => *has_introspection = true,
                    _ => {
                        let delegation = self
                            .supergraph
                            .delegation(root_type, &f.name)
                            .ok_or_else(|| PlanError::Unserved {
                                type_name: root_type.to_string(),
                                field: f.name.to_string(),
                            })?;
                        let mut conds = conditions.clone();
                        conds.extend(conditions_of(&f.directives));
                        let node = self.fetch_node(
                            root_type,
                            f,
                            delegation.clone(),
                            Vec::new(),
                            None,
                            conds,
                        );
                        out.push(node);
                    }
                },
                Selection::InlineFragment(_) | Selection::FragmentSpread(_) => {
                    let (directives, set) = match sel {
                        Selection::InlineFragment(inline) => {
                            (&inline.directives, &inline.selection_set)
                        }
                        Selection::FragmentSpread(spread) => {
                            let Some(fragment) = self.doc.fragments.get(&spread.fragment_name)
                            else {
                                continue;
                            };
                            if !self.first_spread(spread, root_type, conditions) {
                                continue;
                            }
                            (&spread.directives, &fragment.selection_set)
                        }
                        Selection::Field(_) => continue,
                    };
                    let n = conditions.len();
                    conditions.extend(conditions_of(directives));
                    self.root_fields(set, root_type, conditions, out, has_introspection)?;
                    conditions.truncate(n);
                }
            }
        }
        Ok(())
    }

    fn fetch_node(
        &mut self,
        parent_type: &Name,
        field: &Node<Field>,
        delegation: Arc<Delegation>,
        parent_path: Vec<Name>,
        type_guard: Option<Name>,
        conditions: Vec<Condition>,
    ) -> Arc<FetchNode> {
        let id = self.next_id;
        self.next_id += 1;
        let sg = &self.supergraph.subgraphs[delegation.subgraph];
        let mut children = Vec::new();
        let mut variables = Vec::new();
        let selection = if field.selection_set.selections.is_empty() {
            String::new()
        } else {
            let mut out = String::new();
            self.render_set(
                sg,
                &field.selection_set,
                &mut Vec::new(),
                &mut Vec::new(),
                &mut children,
                &mut variables,
                &mut out,
            );
            out
        };
        Arc::new(FetchNode {
            id,
            parent_type: parent_type.clone(),
            field: field.clone(),
            response_key: field.response_key().clone(),
            parent_path,
            type_guard,
            conditions,
            require_keys: delegation
                .requires
                .iter()
                .map(|r| format!("{REQUIRE_PREFIX}{r}"))
                .collect(),
            delegation,
            selection,
            variables,
            children,
        })
    }

    /// Renders `set` for subgraph `sg`; delegated fields become children.
    #[allow(clippy::too_many_arguments)]
    fn render_set(
        &mut self,
        sg: &Subgraph,
        set: &SelectionSet,
        path: &mut Vec<Name>,
        conditions: &mut Vec<Condition>,
        children: &mut Vec<Arc<FetchNode>>,
        variables: &mut Vec<(Name, String)>,
        out: &mut String,
    ) {
        out.push('{');
        let start = out.len();
        let parent_type = &set.ty;
        if self.supergraph.is_abstract(parent_type) {
            out.push(' ');
            out.push_str(TYPENAME_ALIAS);
            out.push_str(": __typename");
        }
        let mut required: Vec<Name> = Vec::new();
        let outer = std::mem::take(&mut self.visited);
        self.render_selections(
            sg,
            set,
            parent_type,
            None,
            path,
            conditions,
            children,
            variables,
            &mut required,
            out,
        );
        self.visited = outer;
        push_requirements(out, &required);
        if out.len() == start {
            // Everything here is delegated elsewhere; a selection set cannot be empty.
            out.push_str(" __typename");
        }
        out.push_str(" }");
    }

    #[allow(clippy::too_many_arguments)]
    fn render_selections(
        &mut self,
        sg: &Subgraph,
        set: &SelectionSet,
        parent_type: &Name,
        guard: Option<&Name>,
        path: &mut Vec<Name>,
        conditions: &mut Vec<Condition>,
        children: &mut Vec<Arc<FetchNode>>,
        variables: &mut Vec<(Name, String)>,
        required: &mut Vec<Name>,
        out: &mut String,
    ) {
        for sel in &set.selections {
            match sel {
                Selection::Field(f) => {
                    if f.name == "__typename" {
                        // Answered from the type the gateway already knows.
                        continue;
                    }
                    let owner_type = guard.unwrap_or(parent_type);
                    if let Some(d) = self.supergraph.delegation(owner_type, &f.name) {
                        let n = conditions.len();
                        conditions.extend(conditions_of(&f.directives));
                        let node = self.fetch_node(
                            owner_type,
                            f,
                            d.clone(),
                            path.clone(),
                            guard.cloned(),
                            conditions.clone(),
                        );
                        conditions.truncate(n);
                        for r in &d.requires {
                            if !required.contains(r) {
                                required.push(r.clone());
                            }
                        }
                        children.push(node);
                        continue;
                    }
                    out.push(' ');
                    if let Some(alias) = &f.alias {
                        out.push_str(alias);
                        out.push_str(": ");
                    }
                    out.push_str(&f.name);
                    if !f.arguments.is_empty() {
                        out.push('(');
                        for (i, a) in f.arguments.iter().enumerate() {
                            if i > 0 {
                                out.push_str(", ");
                            }
                            out.push_str(&a.name);
                            out.push_str(": ");
                            self.render_value(sg, &a.value, variables, out);
                        }
                        out.push(')');
                    }
                    self.render_directives(sg, &f.directives, variables, out);
                    if !f.selection_set.selections.is_empty() {
                        out.push(' ');
                        path.push(f.response_key().clone());
                        let n = conditions.len();
                        conditions.extend(conditions_of(&f.directives));
                        self.render_set(
                            sg,
                            &f.selection_set,
                            path,
                            conditions,
                            children,
                            variables,
                            out,
                        );
                        conditions.truncate(n);
                        path.pop();
                    }
                }
                Selection::InlineFragment(inline) => {
                    self.render_fragment(
                        sg,
                        inline.type_condition.as_ref(),
                        &inline.directives,
                        &inline.selection_set,
                        parent_type,
                        path,
                        conditions,
                        children,
                        variables,
                        out,
                    );
                }
                Selection::FragmentSpread(spread) => {
                    let Some(fragment) = self.doc.fragments.get(&spread.fragment_name) else {
                        continue;
                    };
                    if !self.first_spread(spread, parent_type, conditions) {
                        continue;
                    }
                    let cond = fragment.type_condition().clone();
                    self.render_fragment(
                        sg,
                        Some(&cond),
                        &spread.directives,
                        &fragment.selection_set,
                        parent_type,
                        path,
                        conditions,
                        children,
                        variables,
                        out,
                    );
                }
            }
        }
    }

    /// Fragments are inlined: a remote document carries no fragment definitions.
    #[allow(clippy::too_many_arguments)]
    fn render_fragment(
        &mut self,
        sg: &Subgraph,
        type_condition: Option<&Name>,
        directives: &DirectiveList,
        set: &SelectionSet,
        parent_type: &Name,
        path: &mut Vec<Name>,
        conditions: &mut Vec<Condition>,
        children: &mut Vec<Arc<FetchNode>>,
        variables: &mut Vec<(Name, String)>,
        out: &mut String,
    ) {
        let n = conditions.len();
        conditions.extend(conditions_of(directives));
        let same_type = type_condition.is_none_or(|t| t == parent_type);
        if same_type {
            // Same type: no condition needed, the fields join the parent's set.
            let mut inner = String::new();
            let mut required = Vec::new();
            self.render_selections(
                sg,
                set,
                parent_type,
                None,
                path,
                conditions,
                children,
                variables,
                &mut required,
                &mut inner,
            );
            if !inner.is_empty() || !required.is_empty() {
                out.push_str(" ...");
                self.render_directives(sg, directives, variables, out);
                out.push_str(" {");
                out.push_str(&inner);
                push_requirements(out, &required);
                out.push_str(" }");
            }
        } else if let Some(cond) = type_condition {
            let remote = sg.remote_type(cond);
            if sg.schema.types.contains_key(remote) {
                let mut inner = String::new();
                let mut required = Vec::new();
                self.render_selections(
                    sg,
                    set,
                    cond,
                    Some(cond),
                    path,
                    conditions,
                    children,
                    variables,
                    &mut required,
                    &mut inner,
                );
                out.push_str(" ... on ");
                out.push_str(remote);
                self.render_directives(sg, directives, variables, out);
                out.push_str(" {");
                out.push_str(&inner);
                push_requirements(out, &required);
                if inner.is_empty() && required.is_empty() {
                    out.push_str(" __typename");
                }
                out.push_str(" }");
            }
        }
        conditions.truncate(n);
    }

    fn render_directives(
        &mut self,
        sg: &Subgraph,
        directives: &DirectiveList,
        variables: &mut Vec<(Name, String)>,
        out: &mut String,
    ) {
        for d in directives.iter() {
            if !matches!(d.name.as_str(), "skip" | "include") {
                continue;
            }
            out.push_str(" @");
            out.push_str(&d.name);
            out.push('(');
            for (i, a) in d.arguments.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&a.name);
                out.push_str(": ");
                self.render_value(sg, &a.value, variables, out);
            }
            out.push(')');
        }
    }

    fn render_value(
        &mut self,
        sg: &Subgraph,
        value: &Value,
        variables: &mut Vec<(Name, String)>,
        out: &mut String,
    ) {
        match value {
            Value::Variable(v) => {
                out.push_str("$c_");
                out.push_str(v);
                if !variables.iter().any(|(n, _)| n == v) {
                    // The default goes along: a nullable variable with a
                    // default may stand where a non-null value is expected.
                    let ty = self
                        .op
                        .variables
                        .iter()
                        .find(|d| d.name == *v)
                        .map(|d| match &d.default_value {
                            Some(default) => {
                                format!("{} = {default}", remote_type_string(&d.ty, sg))
                            }
                            None => remote_type_string(&d.ty, sg),
                        })
                        .unwrap_or_else(|| "String".into());
                    variables.push((v.clone(), ty));
                }
            }
            Value::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    self.render_value(sg, item, variables, out);
                }
                out.push(']');
            }
            Value::Object(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(k);
                    out.push_str(": ");
                    self.render_value(sg, v, variables, out);
                }
                out.push('}');
            }
            other => {
                use std::fmt::Write;
                let _ = write!(out, "{other}");
            }
        }
    }
}

/// ` _stitch_f_NAME: NAME` for each parent field a `$fields:` reference reads.
fn push_requirements(out: &mut String, required: &[Name]) {
    for r in required {
        out.push(' ');
        out.push_str(REQUIRE_PREFIX);
        out.push_str(r);
        out.push_str(": ");
        out.push_str(r);
    }
}

/// A client type written with the subgraph's type names.
pub fn remote_type_string(ty: &apollo_compiler::ast::Type, sg: &Subgraph) -> String {
    use apollo_compiler::ast::Type;
    match ty {
        Type::Named(n) => sg.remote_type(n).to_string(),
        Type::NonNullNamed(n) => format!("{}!", sg.remote_type(n)),
        Type::List(i) => format!("[{}]", remote_type_string(i, sg)),
        Type::NonNullList(i) => format!("[{}]!", remote_type_string(i, sg)),
    }
}

impl QueryPlan {
    /// Renders the plan with subgraph names, for logs and snapshot tests.
    pub fn display<'a>(&'a self, supergraph: &'a Supergraph) -> impl fmt::Display + 'a {
        struct D<'a>(&'a QueryPlan, &'a Supergraph);
        impl fmt::Display for D<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                writeln!(f, "{:?} {{", self.0.operation_type)?;
                for n in &self.0.root {
                    write_node(f, n, self.1, 1)?;
                }
                if self.0.has_introspection {
                    writeln!(f, "  Introspection")?;
                }
                write!(f, "}}")
            }
        }
        D(self, supergraph)
    }
}

fn write_node(
    f: &mut fmt::Formatter<'_>,
    n: &FetchNode,
    sg: &Supergraph,
    depth: usize,
) -> fmt::Result {
    let indent = "  ".repeat(depth);
    let path: Vec<String> = n.delegation.path.iter().map(|s| s.to_string()).collect();
    write!(
        f,
        "{indent}{}Fetch({}) {}.{} <- {}",
        if n.parent_path.is_empty() {
            String::new()
        } else {
            format!(
                "[{}] ",
                n.parent_path
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(".")
            )
        },
        sg.subgraphs[n.subgraph()].name,
        n.parent_type,
        n.field.name,
        path.join("."),
    )?;
    if n.delegation.batch {
        f.write_str(" (batch)")?;
    }
    if let Some(g) = &n.type_guard {
        write!(f, " (on {g})")?;
    }
    if !n.conditions.is_empty() {
        write!(f, " (if {:?})", n.conditions)?;
    }
    if !n.selection.is_empty() {
        write!(f, " {}", n.selection)?;
    }
    writeln!(f)?;
    for c in &n.children {
        write_node(f, c, sg, depth + 1)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{prepare, testing::supergraph, Limits};

    fn plan_of(query: &str) -> String {
        let sg = supergraph();
        let p = prepare(&sg, query, None, &Limits::default())
            .unwrap_or_else(|e| panic!("{e}: {:?}", e.to_graphql_errors()));
        let text = p.plan.display(&sg).to_string();
        text
    }

    #[test]
    fn nested_delegations_become_levels_with_requirements() {
        insta::assert_snapshot!(
            "nested",
            plan_of(
                "{ pipelines(limit: 50) { items { id dataCatalog { dataset { name producedBy { name } } } datasets { id } logs(limit: 2) { items { message pipeline { status } } } } } }"
            )
        );
    }

    #[test]
    fn fragments_are_inlined_and_variables_renamed() {
        insta::assert_snapshot!(
            "fragments",
            plan_of(
                "query($id: ID!, $skip: Boolean!) { a: pipeline(id: $id) { ...P tags @skip(if: $skip) { key } } logs(pipelineId: $id) { items { message } } } fragment P on Pipeline { status ... on Pipeline { datasets { name } } }"
            )
        );
    }

    #[test]
    fn mutations_and_introspection() {
        insta::assert_snapshot!(
            "mutation",
            plan_of("mutation { cancelPipeline(id: \"1\") { id } deleteDataset(id: \"2\") { id producedBy { id } } }")
        );
        insta::assert_snapshot!(
            "introspection",
            plan_of("{ __schema { queryType { name } } __typename }")
        );
    }
}
