//! Planner tests: inline SDL per case, inline snapshots of the plan.

use crate::testing::{
    planner, DATASET, DATASET_STITCHING, LOG, LOG_STITCHING, PIPELINE, PIPELINE_STITCHING,
};

const PRODUCTS: &str = r#"
extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key", "@shareable"])
type Query { topProducts(first: Int = 5): [Product] }
type Product @key(fields: "upc") { upc: String! name: String price: Int weight: Int }
"#;

const INVENTORY: &str = r#"
extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key", "@external", "@requires"])
type Product @key(fields: "upc") {
  upc: String!
  weight: Int @external
  price: Int @external
  inStock: Boolean
  shippingEstimate: Int @requires(fields: "price weight")
}
"#;

const REVIEWS: &str = r#"
extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key", "@external", "@provides"])
type Review @key(fields: "id") { id: ID! body: String author: User @provides(fields: "username") product: Product }
type User @key(fields: "id") { id: ID! username: String @external reviews: [Review] }
type Product @key(fields: "upc") { upc: String! reviews: [Review] }
"#;

const ACCOUNTS: &str = r#"
extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key", "@shareable"])
type Query { me: User users: [User] }
type User @key(fields: "id") { id: ID! name: String username: String @shareable }
"#;

/// The four subgraphs of the public gateway benchmark.
fn benchmark_subgraphs() -> crate::testing::Graph {
    planner!(
        products: federation(PRODUCTS),
        inventory: federation(INVENTORY),
        reviews: federation(REVIEWS),
        accounts: federation(ACCOUNTS),
    )
}

#[test]
fn an_entity_over_three_subgraphs() {
    let g = benchmark_subgraphs();
    insta::assert_snapshot!(g.plan("{ topProducts { name inStock reviews { body } } }"), @"
    Query {
      Parallel {
        #0 products { topProducts { name upc } }
      }
      Parallel {
        #1 inventory at topProducts _entities(Product) requires { upc } { inStock } after #0
        #2 reviews at topProducts _entities(Product) requires { upc } { reviews { body } } after #0
      }
    }
    ");
}

#[test]
fn requires_are_fetched_first_from_a_sibling_subgraph() {
    let g = planner!(
        products: federation(PRODUCTS),
        inventory: federation(INVENTORY),
    );
    insta::assert_snapshot!(g.plan("{ topProducts { name shippingEstimate inStock } }"), @"
    Query {
      Parallel {
        #0 products { topProducts { name upc price weight } }
      }
      Parallel {
        #1 inventory at topProducts _entities(Product) requires { upc price weight } { shippingEstimate inStock } after #0
      }
    }
    ");
}

#[test]
fn provides_short_cuts_an_entity_fetch() {
    let g = planner!(
        products: federation(PRODUCTS),
        reviews: federation(REVIEWS),
        accounts: federation(ACCOUNTS),
    );
    // `username` comes with the review's author; `name` needs accounts.
    insta::assert_snapshot!(g.plan("{ topProducts { reviews { author { username } } } }"), @"
    Query {
      Parallel {
        #0 products { topProducts { upc } }
      }
      Parallel {
        #1 reviews at topProducts _entities(Product) requires { upc } { reviews { author { username } } } after #0
      }
    }
    ");
    insta::assert_snapshot!(g.plan("{ topProducts { reviews { author { username name } } } }"), @"
    Query {
      Parallel {
        #0 products { topProducts { upc } }
      }
      Parallel {
        #1 reviews at topProducts _entities(Product) requires { upc } { reviews { author { username id } } } after #0
      }
      Parallel {
        #2 accounts at topProducts.reviews.author _entities(User) requires { id } { name } after #1
      }
    }
    ");
}

#[test]
fn a_shareable_field_stays_on_the_fetch_that_holds_its_parent() {
    let catalog = r#"
extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key", "@shareable"])
type Query { product(upc: String!): Product }
type Product @key(fields: "upc") { upc: String! name: String @shareable }
"#;
    let search = r#"
extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key", "@shareable"])
type Query { search: [Product] }
type Product @key(fields: "upc") { upc: String! name: String @shareable rank: Int }
"#;
    let g = planner!(catalog: federation(catalog), search: federation(search));
    insta::assert_snapshot!(g.plan("{ search { name rank } product(upc: \"1\") { name rank } }"), @r#"
    Query {
      Parallel {
        #1 catalog { product(upc: "1") { name upc } }
      }
      Parallel {
        #0 search { search { name rank } }
        #2 search at product _entities(Product) requires { upc } { rank } after #1
      }
    }
    "#);
}

#[test]
fn a_fetch_waits_for_a_later_wave_that_calls_its_subgraph_anyway() {
    let g = benchmark_subgraphs();
    insta::assert_snapshot!(g.plan("{ topProducts { inStock reviews { product { name inStock } } } }"), @"
    Query {
      Parallel {
        #0 products { topProducts { upc } }
      }
      Parallel {
        #2 reviews at topProducts _entities(Product) requires { upc } { reviews { product { upc } } } after #0
      }
      Parallel {
        #1 inventory at topProducts _entities(Product) requires { upc } { inStock } after #0
        #3 products at topProducts.reviews.product _entities(Product) requires { upc } { name } after #2
        #4 inventory at topProducts.reviews.product _entities(Product) requires { upc } { inStock } after #2
      }
    }
    ");
}

#[test]
fn override_moves_a_field_to_the_overriding_subgraph() {
    let products = r#"
extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key", "@override"])
type Query { topProducts: [Product] }
type Product @key(fields: "upc") { upc: String! inStock: Boolean @override(from: "inventory") }
"#;
    let inventory = r#"
extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key"])
type Product @key(fields: "upc") { upc: String! inStock: Boolean warehouse: String }
"#;
    let g = planner!(products: federation(products), inventory: federation(inventory));
    insta::assert_snapshot!(g.plan("{ topProducts { inStock warehouse } }"), @"
    Query {
      Parallel {
        #0 products { topProducts { inStock upc } }
      }
      Parallel {
        #1 inventory at topProducts _entities(Product) requires { upc } { warehouse } after #0
      }
    }
    ");
}

#[test]
fn interfaces_and_unions_across_subgraphs() {
    let media = r#"
extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key"])
type Query { media: [Media] search: [Result] }
interface Media { id: ID! title: String }
type Book implements Media @key(fields: "id") { id: ID! title: String pages: Int }
type Movie implements Media @key(fields: "id") { id: ID! title: String }
type Author { name: String }
union Result = Book | Movie | Author
"#;
    let ratings = r#"
extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key"])
type Book @key(fields: "id") { id: ID! stars: Int }
type Movie @key(fields: "id") { id: ID! stars: Int }
"#;
    let g = planner!(media: federation(media), ratings: federation(ratings));
    insta::assert_snapshot!(g.plan("{ media { title ... on Book { pages stars } ... on Movie { stars } } }"), @"
    Query {
      Parallel {
        #0 media { media { _stitch_t: __typename title ... on Book { pages id } ... on Movie { id } } }
      }
      Parallel {
        #1 ratings at media|Book _entities(Book) requires { id } { stars } after #0
        #2 ratings at media|Movie _entities(Movie) requires { id } { stars } after #0
      }
    }
    ");
    insta::assert_snapshot!(g.plan("{ search { __typename ... on Media { title } ... on Book { stars } ... on Author { name } } }"), @"
    Query {
      Parallel {
        #0 media { search { _stitch_t: __typename ... on Media { title } ... on Book { id } ... on Author { name } } }
      }
      Parallel {
        #1 ratings at search|Book _entities(Book) requires { id } { stars } after #0
      }
    }
    ");
}

#[test]
fn a_nested_fields_path_is_fetched_from_whichever_subgraph_serves_it() {
    let runs = r#"
type Query { run(id: ID!): Run }
type Run { id: ID! owner: Owner }
type Owner { id: ID! }
"#;
    let users = r#"
type Query { user(id: ID!): User }
type User { id: ID! name: String }
"#;
    let stitch = r#"
extend type Run {
  ownerUser: User @delegate(path: "user(id: $fields:owner.id)")
}
"#;
    let g = planner!(runs: stitching(runs, ""), users: stitching(users, stitch));
    insta::assert_snapshot!(g.plan("{ run(id: \"1\") { id ownerUser { name } } }"), @r#"
    Query {
      Parallel {
        #0 runs { run(id: "1") { id owner { id } } }
      }
      Parallel {
        #1 users at run ownerUser <- user(id: $fields:owner.id) requires { owner { id } } { name } after #0
      }
    }
    "#);
}

#[test]
fn stitched_fields_become_waves_with_their_requirements() {
    let g = planner!(
        pipeline: stitching(PIPELINE, PIPELINE_STITCHING),
        dataset: stitching(DATASET, DATASET_STITCHING),
        log: stitching(LOG, LOG_STITCHING),
    );
    insta::assert_snapshot!(g.plan(
        "{ pipelines(limit: 50) { items { id dataCatalog { dataset { name producedBy { name } } } datasets { id } logs(limit: 2) { items { message pipeline { status } } } } } }"
    ), @"
    Query {
      Parallel {
        #0 pipeline { pipelines(limit: 50) { items { id dataCatalog { datasetId } datasetIds } } }
      }
      Parallel {
        #1 dataset at pipelines.items.dataCatalog dataset <- datasetsByIds(ids: $fields:datasetId) (batch) requires { datasetId } { name producedByPipelineId } after #0
        #3 dataset at pipelines.items datasets <- datasetsByIds(ids: $fields:datasetIds) (batch) requires { datasetIds } { id } after #0
        #4 log at pipelines.items logs <- pipelineLogs(pipelineId: $fields:id, limit: $arguments:limit) requires { id } { items { message pipelineId } } after #0
      }
      Parallel {
        #2 pipeline at pipelines.items.dataCatalog.dataset producedBy <- pipelinesByIds(ids: $fields:producedByPipelineId) (batch) requires { producedByPipelineId } { name } after #1
        #5 pipeline at pipelines.items.logs.items pipeline <- pipeline(id: $fields:pipelineId) requires { pipelineId } { status } after #4
      }
    }
    ");
}

#[test]
fn fragments_are_inlined_and_variables_renamed() {
    let g = planner!(
        pipeline: stitching(PIPELINE, PIPELINE_STITCHING),
        dataset: stitching(DATASET, DATASET_STITCHING),
        log: stitching(LOG, LOG_STITCHING),
    );
    insta::assert_snapshot!(g.plan(
        "query($id: ID!, $skip: Boolean!) { a: pipeline(id: $id) { ...P tags @skip(if: $skip) { key } } logs(pipelineId: $id) { items { message } } } fragment P on Pipeline { status ... on Pipeline { datasets { name } } }"
    ), @"
    Query {
      Parallel {
        #0 pipeline { a: pipeline(id: $c_id) { tags @skip(if: $c_skip) { key } status datasetIds } }
        #2 log logs <- pipelineLogs(pipelineId: $arguments:pipelineId, limit: $arguments:limit, minLevel: $arguments:minLevel) { items { message } }
      }
      Parallel {
        #1 dataset at a datasets <- datasetsByIds(ids: $fields:datasetIds) (batch) requires { datasetIds } { name } after #0
      }
    }
    ");
}

#[test]
fn mutations_run_in_order_and_introspection_is_local() {
    let g = planner!(
        pipeline: stitching(PIPELINE, PIPELINE_STITCHING),
        dataset: stitching(DATASET, DATASET_STITCHING),
        log: stitching(LOG, LOG_STITCHING),
    );
    insta::assert_snapshot!(g.plan(
        "mutation { a: cancelPipeline(id: \"1\") { id } deleteDataset(id: \"2\") { id producedBy { id } } b: cancelPipeline(id: \"3\") { id } }"
    ), @r#"
    Mutation {
      Parallel {
        #0 pipeline { a: cancelPipeline(id: "1") { id } }
      }
      Parallel {
        #1 dataset { deleteDataset(id: "2") { id producedByPipelineId } }
      }
      Parallel {
        #2 pipeline at deleteDataset producedBy <- pipelinesByIds(ids: $fields:producedByPipelineId) (batch) requires { producedByPipelineId } { id } after #1
      }
      Parallel {
        #3 pipeline { b: cancelPipeline(id: "3") { id } }
      }
    }
    "#);
    insta::assert_snapshot!(g.plan("{ __schema { queryType { name } } __typename }"), @"
    Query {
      Introspection
    }
    ");
}

const RATINGS: &str = r#"
type Query {
  productByUpc(upc: String!): Product @lookup @internal
}
type Product @key(fields: "upc") {
  upc: String!
  rating: Float
  deliveryEstimate(zip: String!, weight: Int @require(field: "weight")): Int
}
"#;

#[test]
fn composite_lookups_and_requirements() {
    let g = planner!(
        products: federation(PRODUCTS),
        ratings: composite(RATINGS),
    );
    insta::assert_snapshot!(g.plan(
        "{ topProducts { name rating deliveryEstimate(zip: \"10115\") } }"
    ), @r#"
    Query {
      Parallel {
        #0 products { topProducts { name upc weight } }
      }
      Parallel {
        #1 ratings at topProducts lookup productByUpc(upc: $fields:upc) requires { upc weight } { rating deliveryEstimate(zip: "10115", weight: $require_weight) } after #0
      }
    }
    "#);
}

#[test]
fn three_dialects_in_one_graph() {
    let runs = r#"
type Query { runsByOwner(owner: String!): [Run!]! }
type Run { id: ID! status: String }
"#;
    let stitch = r#"
extend type User {
  runs: [Run!]! @delegate(path: "runsByOwner(owner: $fields:username)")
}
"#;
    let g = planner!(
        products: federation(PRODUCTS),
        reviews: federation(REVIEWS),
        accounts: federation(ACCOUNTS),
        ratings: composite(RATINGS),
        runs: stitching(runs, stitch),
    );
    insta::assert_snapshot!(g.plan(
        "{ me { name runs { status } reviews { product { name rating } } } }"
    ), @"
    Query {
      Parallel {
        #0 accounts { me { name username id } }
      }
      Parallel {
        #1 runs at me runs <- runsByOwner(owner: $fields:username) requires { username } { status } after #0
        #2 reviews at me _entities(User) requires { id } { reviews { product { upc } } } after #0
      }
      Parallel {
        #3 products at me.reviews.product _entities(Product) requires { upc } { name } after #2
        #4 ratings at me.reviews.product lookup productByUpc(upc: $fields:upc) requires { upc } { rating } after #2
      }
    }
    ");
}

#[test]
fn compound_several_and_unresolvable_keys() {
    // `orders` knows a customer by a compound key; `crm` resolves customers
    // by `id` or by `email` (inaccessible to clients, still a key);
    // `billing` only references them (`resolvable: false`).
    let orders = r#"
extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key", "@shareable"])
type Query { orders: [Order] }
type Order { id: ID! customer: Customer invoice: Invoice }
type Customer @key(fields: "region { code } number") { region: Region! number: Int! }
type Region @shareable { code: String! }
type Invoice @key(fields: "id", resolvable: false) { id: ID! }
"#;
    let crm = r#"
extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key", "@inaccessible", "@shareable"])
type Customer @key(fields: "region { code } number") @key(fields: "email") {
  region: Region! number: Int! email: String! @inaccessible name: String
}
type Region @shareable { code: String! }
"#;
    let billing = r#"
extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key"])
type Invoice @key(fields: "id") { id: ID! total: Int }
"#;
    let g =
        planner!(orders: federation(orders), crm: federation(crm), billing: federation(billing));
    assert!(!g.0.sdl().contains("email"), "inaccessible: {}", g.0.sdl());
    insta::assert_snapshot!(g.plan("{ orders { customer { name } invoice { total } } }"), @"
    Query {
      Parallel {
        #0 orders { orders { customer { region { code } number } invoice { id } } }
      }
      Parallel {
        #1 crm at orders.customer _entities(Customer) requires { region { code } number } { name } after #0
        #2 billing at orders.invoice _entities(Invoice) requires { id } { total } after #0
      }
    }
    ");
}

#[test]
fn a_lookup_with_key_alternatives_takes_the_key_the_parent_has() {
    let catalog = r#"
type Query { bySku: [Item] }
type Item @key(fields: "sku") { sku: String! }
"#;
    let stock = r#"
type Query { item(by: ItemBy! @is(field: "{ id } | { sku }")): Item @lookup @internal }
input ItemBy @oneOf { id: ID sku: String }
type Item @key(fields: "id") @key(fields: "sku") { id: ID sku: String! @shareable count: Int }
"#;
    let g = planner!(catalog: composite(catalog), stock: composite(stock));
    insta::assert_snapshot!(g.plan("{ bySku { sku count } }"), @"
    Query {
      Parallel {
        #0 catalog { bySku { sku } }
      }
      Parallel {
        #1 stock at bySku lookup item(by: {sku: $fields:sku}) requires { sku } { count } after #0
      }
    }
    ");
}
