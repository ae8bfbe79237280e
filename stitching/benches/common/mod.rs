//! The benchmarks' subgraphs and queries: the federation benchmark's four
//! subgraphs with its `TestQuery`, and our three stitched subgraphs with the
//! `nested` query.
// Each bench binary uses its own part of this module.
#![allow(dead_code)]

use stitching::{schema::Dialect, SubgraphSpec};

const LINK: &str = r#"extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key", "@shareable", "@external", "@provides", "@requires"])"#;

pub fn federation() -> Vec<SubgraphSpec> {
    let sdl = [
        ("accounts", "type Query { me: User user(id: ID!): User users: [User] } type User @key(fields: \"id\") { id: ID! name: String username: String @shareable birthday: Int }"),
        ("products", "type Query { topProducts(first: Int = 5): [Product] } type Product @key(fields: \"upc\") { upc: String! name: String price: Int weight: Int }"),
        ("inventory", "type Product @key(fields: \"upc\") { upc: String! @external weight: Int @external price: Int @external inStock: Boolean shippingEstimate: Int @requires(fields: \"price weight\") }"),
        ("reviews", "type Product @key(fields: \"upc\") { upc: String! @external reviews: [Review] } type Review @key(fields: \"id\") { id: ID! body: String product: Product author: User @provides(fields: \"username\") } type User @key(fields: \"id\") { id: ID! @external username: String @external reviews: [Review] }"),
    ];
    sdl.iter()
        .map(|(name, body)| SubgraphSpec {
            name: name.to_string(),
            dialect: Dialect::Federation,
            schema_sdl: format!("{LINK}\n{body}"),
            schema_origin: format!("{name}.graphql"),
            ..Default::default()
        })
        .collect()
}

pub const TEST_QUERY: &str = "fragment User on User { id username name } fragment Review on Review { id body } fragment Product on Product { inStock name price shippingEstimate upc weight } query TestQuery { users { ...User reviews { ...Review product { ...Product reviews { ...Review author { ...User reviews { ...Review product { ...Product } } } } } } } topProducts { ...Product reviews { ...Review author { ...User reviews { ...Review product { ...Product } } } } } }";

pub fn stitched() -> Vec<SubgraphSpec> {
    let spec = |name: &str, sdl: &str, stitching: &str| SubgraphSpec {
        name: name.into(),
        schema_sdl: sdl.into(),
        schema_origin: format!("{name}.graphql"),
        stitching: vec![(format!("{name}-stitching.graphql"), stitching.into())],
        ..Default::default()
    };
    let mut pipeline = spec(
        "pipeline",
        "type Pipeline { id: ID! name: String! datasetIds: [ID!]! dataCatalog: [DatasetBinding!]! } type DatasetBinding { name: String! datasetId: ID! } type PipelinePage { items: [Pipeline!]! total: Int! } type Query { pipelines(limit: Int! = 10): PipelinePage! pipelinesByIds(ids: [ID!]!): [Pipeline]! }",
        "extend type Dataset { producedBy: Pipeline @delegate(path: \"pipelinesByIds(ids: $fields:producedByPipelineId)\", batch: true) }",
    );
    pipeline.hide = vec!["Query.pipelinesByIds".into()];
    let mut dataset = spec(
        "dataset",
        "type Dataset { id: ID! name: String! producedByPipelineId: ID } type Query { dataset(id: ID!): Dataset datasetsByIds(ids: [ID!]!): [Dataset]! }",
        "extend type DatasetBinding { dataset: Dataset @delegate(path: \"datasetsByIds(ids: $fields:datasetId)\", batch: true) }",
    );
    dataset.hide = vec!["Query.datasetsByIds".into()];
    let mut log = spec(
        "log",
        "type LogMessage { id: ID! message: String! } type LogPage { items: [LogMessage!]! } type Query { pipelineLogPages(pipelineIds: [ID!]!, limit: Int! = 100): [LogPage!]! }",
        "extend type Pipeline { logs(limit: Int! = 100): LogPage! @delegate(path: \"pipelineLogPages(pipelineIds: $fields:id, limit: $arguments:limit)\", batch: true) }",
    );
    log.hide = vec!["Query.pipelineLogPages".into()];
    vec![pipeline, dataset, log]
}

pub const NESTED: &str = "{ pipelines(limit: 100) { items { id dataCatalog { dataset { name producedBy { name } } } logs(limit: 5) { items { message } } } } }";
