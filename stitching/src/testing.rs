//! Inline subgraph SDL for unit tests: small versions of the real services.

use crate::schema::{build, BuildErrors, SubgraphSpec, Supergraph};

pub const PIPELINE: &str = r#"
scalar DateTime
type Tag { key: String! value: String! }
enum PipelineStatus { PENDING RUNNING SUCCESS FAILURE CANCELLED }
type Pipeline { id: ID! name: String! status: PipelineStatus! tags: [Tag!]! dataCatalog: [DatasetBinding!]! datasetIds: [ID!]! createdAt: DateTime! }
type DatasetBinding { name: String! datasetId: ID! }
type PipelinePage { items: [Pipeline!]! nextCursor: String total: Int! }
type QueryRoot {
  pipeline(id: ID!): Pipeline
  pipelines(limit: Int! = 10, cursor: String): PipelinePage!
  pipelinesByIds(ids: [ID!]!): [Pipeline]!
}
type MutationRoot { cancelPipeline(id: ID!): Pipeline! }
schema { query: QueryRoot mutation: MutationRoot }
"#;

pub const DATASET: &str = r#"
scalar DateTime
type Tag { key: String! value: String! }
type Dataset { id: ID! name: String! tags: [Tag!]! producedByPipelineId: ID updatedAt: DateTime! }
type Query {
  dataset(id: ID!): Dataset
  datasetsByIds(ids: [ID!]!): [Dataset]!
}
type Mutation { deleteDataset(id: ID!): Dataset }
"#;

pub const LOG: &str = r#"
scalar DateTime
enum LogLevel { DEBUG INFO WARNING ERROR }
type LogMessage { id: ID! pipelineId: ID! level: LogLevel! message: String! time: DateTime! }
type LogPage { items: [LogMessage!]! nextCursor: String }
type Query { pipelineLogs(pipelineId: ID!, limit: Int! = 100, cursor: String, minLevel: LogLevel): LogPage! }
"#;

pub const PIPELINE_STITCHING: &str = r#"
extend type Dataset {
  producedBy: Pipeline @delegate(path: "pipelinesByIds(ids: $fields:producedByPipelineId)", batch: true)
}
extend type LogMessage {
  pipeline: Pipeline @delegate(path: "pipeline(id: $fields:pipelineId)")
}
"#;

pub const DATASET_STITCHING: &str = r#"
extend type Pipeline {
  datasets: [Dataset!]! @delegate(path: "datasetsByIds(ids: $fields:datasetIds)", batch: true)
}
extend type DatasetBinding {
  dataset: Dataset @delegate(path: "datasetsByIds(ids: $fields:datasetId)", batch: true)
}
"#;

pub const LOG_STITCHING: &str = r#"
extend type Query {
  logs(pipelineId: ID!, limit: Int! = 100, minLevel: LogLevel): LogPage!
    @delegate(path: "pipelineLogs(pipelineId: $arguments:pipelineId, limit: $arguments:limit, minLevel: $arguments:minLevel)")
}
extend type Pipeline {
  logs(limit: Int! = 100): LogPage! @delegate(path: "pipelineLogs(pipelineId: $fields:id, limit: $arguments:limit)")
}
"#;

pub fn spec(name: &str, sdl: &str, stitching: &str) -> SubgraphSpec {
    SubgraphSpec {
        name: name.into(),
        schema_sdl: sdl.into(),
        schema_origin: format!("{name}.graphql"),
        stitching: if stitching.is_empty() {
            Vec::new()
        } else {
            vec![(format!("{name}-stitching.graphql"), stitching.into())]
        },
        ..Default::default()
    }
}

pub fn specs() -> Vec<SubgraphSpec> {
    let mut p = spec("pipeline", PIPELINE, PIPELINE_STITCHING);
    p.hide = vec!["QueryRoot.pipelinesByIds".into()];
    let mut d = spec("dataset", DATASET, DATASET_STITCHING);
    d.hide = vec!["Query.datasetsByIds".into()];
    let mut l = spec("log", LOG, LOG_STITCHING);
    l.hide = vec!["Query.pipelineLogs".into()];
    vec![p, d, l]
}

pub fn supergraph() -> Supergraph {
    match build(&specs()) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

pub fn build_err(specs: &[SubgraphSpec]) -> BuildErrors {
    match build(specs) {
        Ok(_) => panic!("expected build errors"),
        Err(e) => e,
    }
}

/// A stitching subgraph: its schema and the stitching SDL of its entry.
pub fn stitching(name: &str, sdl: &str, stitching: &str) -> SubgraphSpec {
    spec(name, sdl, stitching)
}

/// A Federation subgraph from its SDL (`@link` optional).
pub fn federation(name: &str, sdl: &str) -> SubgraphSpec {
    SubgraphSpec {
        dialect: crate::schema::Dialect::Federation,
        ..spec(name, sdl, "")
    }
}

/// A Composite Schemas source schema.
pub fn composite(name: &str, sdl: &str) -> SubgraphSpec {
    SubgraphSpec {
        dialect: crate::schema::Dialect::Composite,
        ..spec(name, sdl, "")
    }
}

/// A composed graph for planner tests.
pub struct Graph(pub Supergraph);

impl Graph {
    pub fn new(specs: Vec<SubgraphSpec>) -> Graph {
        match build(&specs) {
            Ok(s) => Graph(s),
            Err(e) => panic!("{e}"),
        }
    }

    /// The plan of `query`, as `Display` prints it.
    pub fn plan(&self, query: &str) -> String {
        match crate::prepare(&self.0, query, None, &crate::Limits::default()) {
            Ok(p) => p.plan.display(&self.0).to_string(),
            Err(e) => panic!("{e}: {:?}", e.to_graphql_errors()),
        }
    }
}

/// `planner!(a: federation(SDL), b: stitching(SDL, STITCHING))`: a graph
/// of subgraphs named after the keys, for `.plan(query)`.
macro_rules! planner {
    ($($name:ident: $dialect:ident($($arg:expr),+ $(,)?)),+ $(,)?) => {
        $crate::testing::Graph::new(vec![
            $($crate::testing::$dialect(stringify!($name), $($arg),+)),+
        ])
    };
}
pub(crate) use planner;
