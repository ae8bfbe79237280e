//! Executor tests without a network: each wave's requests are built,
//! recorded and answered from a script, then merged.

use apollo_compiler::response::{serde_json_bytes::json, JsonMap, JsonValue};

use super::{
    fetch, merge,
    tree::{Arena, Value},
    Request,
};
use crate::{
    coerce_variables, prepare, schema::SubgraphId, testing::supergraph, Limits, Supergraph,
};

/// Runs `query` wave by wave; answers are taken in request order.
fn run(sg: &Supergraph, query: &str, variables: JsonValue, answers: &[JsonValue]) -> String {
    let prepared = prepare(sg, query, None, &Limits::default()).unwrap();
    let vars: JsonMap = match variables {
        JsonValue::Object(m) => m,
        _ => JsonMap::new(),
    };
    let vars = coerce_variables(sg, &prepared, &vars).unwrap();
    let req = Request {
        supergraph: sg,
        document: &prepared.document,
        operation: prepared.operation(),
        plan: &prepared.plan,
        variables: &vars,
        authorization: None,
    };
    let arena = Arena::new();
    let alloc = arena.get();
    let mut data = Value::Object(Default::default());
    let mut errors = Vec::new();
    let mut out = String::new();
    let mut answers = answers.iter();
    for (w, wave) in prepared.plan.waves.iter().enumerate() {
        let mut groups: Vec<(SubgraphId, Vec<usize>)> = Vec::new();
        for &id in wave {
            let s = prepared.plan.fetches[id].subgraph;
            match groups.iter_mut().find(|(g, _)| *g == s) {
                Some((_, v)) => v.push(id),
                None => groups.push((s, vec![id])),
            }
        }
        for (s, ids) in groups {
            let built = fetch::build(&req, &mut data, s, &ids, &alloc);
            let Some(request) = &built.request else {
                continue;
            };
            out.push_str(&format!(
                "wave {w} -> {}\n{}\n",
                sg.subgraphs[s].name,
                serde_json::to_string(request).unwrap()
            ));
            let answer = answers.next().cloned().unwrap_or(json!({"data": {}}));
            merge::merge_body(
                &req,
                &mut data,
                &mut errors,
                s,
                &built.routing,
                Value::from_json(&answer, &alloc),
                &alloc,
            );
        }
    }
    out.push_str(&format!(
        "data: {}\n",
        serde_json::to_string(&data).unwrap()
    ));
    if !errors.is_empty() {
        out.push_str(&format!(
            "errors: {}\n",
            serde_json::to_string(&errors).unwrap()
        ));
    }
    out
}

#[test]
fn defaults_go_along_and_identical_mutations_both_run() {
    let sg = supergraph();
    let out = run(
        &sg,
        "query($id: ID!, $hide: Boolean = false) { pipeline(id: $id) { id tags @skip(if: $hide) { key } } }",
        json!({"id": "1"}),
        &[],
    );
    assert!(out.contains("$c_hide: Boolean = false"), "{out}");
    let out = run(
        &sg,
        r#"mutation { a: cancelPipeline(id: "1") { id } b: cancelPipeline(id: "1") { id } }"#,
        json!({}),
        &[],
    );
    assert!(
        out.contains("a: cancelPipeline") && out.contains("b: cancelPipeline"),
        "{out}"
    );
}

#[test]
fn identical_keys_go_out_once_and_batches_map_back_by_position() {
    let answers = [
        json!({"data": {"pipelines": {"items": [
            {"id": "p1", "datasetIds": ["d1", "d2"], "dataCatalog": [{"datasetId": "d1"}, {"datasetId": "d2"}]},
            {"id": "p2", "datasetIds": ["d2"], "dataCatalog": [{"datasetId": "d2"}, {"datasetId": null}]}
        ]}}}),
        json!({"data": {
            "_stitch_0": [{"name": "one", "producedByPipelineId": "p1"}, {"name": "two", "producedByPipelineId": null}],
            "_stitch_1": [{"id": "d1"}, {"id": "d2"}]
        }}),
        json!({"data": {"_stitch_0": [{"name": "run one"}]}}),
    ];
    insta::assert_snapshot!(run(
        &supergraph(),
        "{ pipelines(limit: 2) { items { id dataCatalog { dataset { name producedBy { name } } } datasets { id } } } }",
        json!({}),
        &answers
    ), @r#"
    wave 0 -> pipeline
    {"query":"query { pipelines(limit: 2) { items { id dataCatalog { datasetId } datasetIds } } }","variables":{}}
    wave 1 -> dataset
    {"query":"query($a0_0_ids: [ID!]!, $a1_0_ids: [ID!]!) { _stitch_0: datasetsByIds(ids: $a0_0_ids) { name producedByPipelineId } _stitch_1: datasetsByIds(ids: $a1_0_ids) { id } }","variables":{"a0_0_ids":["d1","d2"],"a1_0_ids":["d1","d2"]}}
    wave 2 -> pipeline
    {"query":"query($a0_0_ids: [ID!]!) { _stitch_0: pipelinesByIds(ids: $a0_0_ids) { name } }","variables":{"a0_0_ids":["p1"]}}
    data: {"pipelines":{"items":[{"dataCatalog":[{"datasetId":"d1","dataset":{"name":"one","producedByPipelineId":"p1","producedBy":{"name":"run one"}}},{"datasetId":"d2","dataset":{"name":"two","producedByPipelineId":null,"producedBy":null}}],"datasetIds":["d1","d2"],"id":"p1","datasets":[{"id":"d1"},{"id":"d2"}]},{"dataCatalog":[{"datasetId":"d2","dataset":{"name":"two","producedByPipelineId":null,"producedBy":null}},{"datasetId":null,"dataset":null}],"datasetIds":["d2"],"id":"p2","datasets":[{"id":"d2"}]}]}}
    "#);
}

#[test]
fn a_batched_field_with_no_key_among_its_parents_makes_no_call() {
    let query = "{ pipelines(limit: 2) { items { dataCatalog { dataset { name } } } } }";
    for first in [
        json!({"data": {"pipelines": {"items": [
            {"dataCatalog": [{"datasetId": null}]},
            {"dataCatalog": [{"datasetId": null}, {"datasetId": null}]}
        ]}}}),
        json!({"data": {"pipelines": {"items": []}}}),
    ] {
        let out = run(&supergraph(), query, json!({}), &[first]);
        assert!(!out.contains("wave 1"), "{out}");
        assert!(!out.contains("errors:"), "{out}");
    }
}

#[test]
fn calls_per_parent_with_renamed_variables_and_client_error_paths() {
    let answers = [
        json!({"data": {"pipelines": {"items": [{"id": "p1"}, {"id": "p2"}, {"id": "p1"}]}}}),
        json!({"data": {"_stitch_0": {"items": [{"message": "a"}]}, "_stitch_1": null},
               "errors": [{"message": "boom", "path": ["_stitch_1", "items"], "extensions": {"code": "X"}}]}),
    ];
    let g = crate::testing::Graph::new(vec![
        crate::testing::spec("pipeline", crate::testing::PIPELINE, ""),
        crate::testing::spec(
            "log",
            crate::testing::LOG,
            "extend type Pipeline { logs(limit: Int! = 100): LogPage! @delegate(path: \"pipelineLogs(pipelineId: $fields:id, limit: $arguments:limit)\") }",
        ),
    ]);
    insta::assert_snapshot!(run(
        &g.0,
        "query($n: Int!) { pipelines { items { id logs(limit: $n) { items { message } } } } }",
        json!({"n": 3}),
        &answers
    ), @r#"
    wave 0 -> pipeline
    {"query":"query { pipelines { items { id } } }","variables":{}}
    wave 1 -> log
    {"query":"query($a0_0_pipelineId: ID!, $a0_0_limit: Int!, $a1_0_pipelineId: ID!, $a1_0_limit: Int!) { _stitch_0: pipelineLogs(pipelineId: $a0_0_pipelineId, limit: $a0_0_limit) { items { message } } _stitch_1: pipelineLogs(pipelineId: $a1_0_pipelineId, limit: $a1_0_limit) { items { message } } }","variables":{"a0_0_pipelineId":"p1","a0_0_limit":3,"a1_0_pipelineId":"p2","a1_0_limit":3}}
    data: {"pipelines":{"items":[{"id":"p1","logs":{"items":[{"message":"a"}]}},{"id":"p2","logs":null},{"id":"p1","logs":{"items":[{"message":"a"}]}}]}}
    errors: [{"message":"boom","path":["pipelines","items",1,"logs","items"],"extensions":{"code":"X","service":"log","_stitch_subgraph_error":true}}]
    "#);
}

const PRODUCTS: &str = r#"
extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key"])
type Query { topProducts: [Product] }
type Product @key(fields: "upc") { upc: String! name: String }
"#;
const INVENTORY: &str = r#"
extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key"])
type Product @key(fields: "upc") { upc: String! inStock: Boolean }
"#;

#[test]
fn entities_go_out_once_per_representation_and_errors_reach_every_parent() {
    let g = crate::testing::Graph::new(vec![
        crate::testing::federation("products", PRODUCTS),
        crate::testing::federation("inventory", INVENTORY),
    ]);
    let answers = [
        json!({"data": {"topProducts": [{"upc": "1", "name": "a"}, {"upc": "2", "name": "b"}, {"upc": "1", "name": "a"}]}}),
        json!({"data": {"_stitch_0": [{"inStock": true}, null]},
               "errors": [{"message": "gone", "path": ["_stitch_0", 1, "inStock"]}]}),
    ];
    insta::assert_snapshot!(run(&g.0, "{ topProducts { name inStock } }", json!({}), &answers), @r#"
    wave 0 -> products
    {"query":"query { topProducts { name upc } }","variables":{}}
    wave 1 -> inventory
    {"query":"query($r0: [_Any!]!) { _stitch_0: _entities(representations: $r0) { ... on Product { inStock } } }","variables":{"r0":[{"upc":"1","__typename":"Product"},{"upc":"2","__typename":"Product"}]}}
    data: {"topProducts":[{"name":"a","upc":"1","inStock":true},{"name":"b","upc":"2"},{"name":"a","upc":"1","inStock":true}]}
    errors: [{"message":"gone","path":["topProducts",1,"inStock"],"extensions":{"service":"inventory","_stitch_subgraph_error":true}}]
    "#);
}

/// Products reached two ways, `topProducts` and `featured`: one product
/// is in both.
const PRODUCTS_TWICE: &str = r#"
extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key"])
type Query { topProducts: [Product] featured: Product }
type Product @key(fields: "upc") { upc: String! name: String }
"#;

fn products_twice_answer() -> JsonValue {
    json!({"data": {"topProducts": [{"upc": "1"}, {"upc": "2"}], "featured": {"upc": "1"}}})
}

#[test]
fn fetches_of_a_wave_asking_the_same_of_an_entity_share_one_call() {
    let g = crate::testing::Graph::new(vec![
        crate::testing::federation("products", PRODUCTS_TWICE),
        crate::testing::federation("inventory", INVENTORY),
    ]);
    let answers = [
        products_twice_answer(),
        json!({"data": {"_stitch_0": [null, {"inStock": false}]},
               "errors": [{"message": "gone", "path": ["_stitch_0", 0, "inStock"]}]}),
    ];
    insta::assert_snapshot!(run(&g.0, "{ topProducts { inStock } featured { inStock } }", json!({}), &answers), @r#"
    wave 0 -> products
    {"query":"query { topProducts { upc } featured { upc } }","variables":{}}
    wave 1 -> inventory
    {"query":"query($r0: [_Any!]!) { _stitch_0: _entities(representations: $r0) { ... on Product { inStock } } }","variables":{"r0":[{"upc":"1","__typename":"Product"},{"upc":"2","__typename":"Product"}]}}
    data: {"topProducts":[{"upc":"1"},{"upc":"2","inStock":false}],"featured":{"upc":"1"}}
    errors: [{"message":"gone","path":["topProducts",0,"inStock"],"extensions":{"service":"inventory","_stitch_subgraph_error":true}},{"message":"gone","path":["featured","inStock"],"extensions":{"service":"inventory","_stitch_subgraph_error":true}}]
    "#);
}

#[test]
fn lookups_of_a_wave_that_are_one_document_share_its_variable_sets() {
    let ratings = r#"
type Query { productByUpc(upc: String!): Product @lookup @internal }
type Product @key(fields: "upc") { upc: String! rating: Float }
"#;
    let mut ratings = crate::testing::composite("ratings", ratings);
    ratings.variable_batching = true;
    let g = crate::testing::Graph::new(vec![
        crate::testing::federation("products", PRODUCTS_TWICE),
        ratings,
    ]);
    let answers = [
        products_twice_answer(),
        json!({"data": {"_stitch_0": {"rating": 4.5}, "_stitch_1": {"rating": 3.0}}}),
    ];
    insta::assert_snapshot!(run(&g.0, "{ topProducts { rating } featured { rating } }", json!({}), &answers), @r#"
    wave 0 -> products
    {"query":"query { topProducts { upc } featured { upc } }","variables":{}}
    wave 1 -> ratings
    [{"query":"query($a0_upc: String!) { _b: productByUpc(upc: $a0_upc) { rating } }","variables":[{"a0_upc":"1"},{"a0_upc":"2"}]}]
    data: {"topProducts":[{"upc":"1","rating":4.5},{"upc":"2","rating":3.0}],"featured":{"upc":"1","rating":4.5}}
    "#);
}

#[test]
fn runtime_types_are_renamed_by_the_subgraph_that_answered() {
    use crate::testing::spec;
    let mut a = spec("a", "type Query { item: Item } type Item { x: Int }", "");
    a.rename_types = vec![("Item".into(), "AItem".into())];
    let b = spec(
        "b",
        "type Query { things: [Thing!]! } union Thing = Item | Other type Item { y: Int } type Other { z: Int }",
        "",
    );
    let sg = crate::build(&[a, b]).unwrap_or_else(|e| panic!("{e}"));
    let arena = Arena::new();
    let alloc = arena.get();
    let answer = json!([{"_stitch_t": "Item", "y": 1}, {"_stitch_t": "Other", "z": 2}]);
    let mut from_b = Value::from_json(&answer, &alloc);
    merge::public_typenames(&mut from_b, &sg.subgraphs[1], &alloc);
    assert_eq!(from_b.to_json(), answer, "b's Item is the public Item");
    let nested = json!({"_stitch_t": "Item", "nested": [{"_stitch_t": "Item"}]});
    let mut from_a = Value::from_json(&nested, &alloc);
    merge::public_typenames(&mut from_a, &sg.subgraphs[0], &alloc);
    assert_eq!(
        from_a.to_json(),
        json!({"_stitch_t": "AItem", "nested": [{"_stitch_t": "AItem"}]})
    );
}

#[test]
fn json_lines_of_a_batch_are_gathered_under_each_sets_call() {
    let built = fetch::Built {
        subgraph: 0,
        request: None,
        routing: Default::default(),
        unbatch: vec![Some(vec!["_stitch_0".into(), "_stitch_1".into()]), None],
        // Objects parsed with room read as without.
        room: 1,
    };
    let body = concat!(
        r#"{"requestIndex":0,"variableIndex":1,"data":{"_b":{"rating":2}}}"#,
        "\n",
        r#"{"requestIndex":1,"data":{"top":[1]}}"#,
        "\n",
        r#"{"requestIndex":0,"variableIndex":0,"data":{"_b":null},"errors":[{"message":"no","path":["_b"]}]}"#,
        "\n"
    );
    let arena = Arena::new();
    let v = fetch::parse_answer(&built, body, &arena.get()).unwrap();
    assert_eq!(
        v.to_json(),
        json!({
            "data": {"_stitch_1": {"rating": 2}, "top": [1], "_stitch_0": null},
            "errors": [{"message": "no", "path": ["_stitch_0"]}]
        })
    );
}

/// The errors of a run, as `code at path (service)` lines.
fn error_lines(out: &str) -> Vec<String> {
    let Some(errors) = out.lines().find_map(|l| l.strip_prefix("errors: ")) else {
        return Vec::new();
    };
    let errors: serde_json::Value = serde_json::from_str(errors).unwrap();
    errors
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let path: Vec<String> = e["path"]
                .as_array()
                .map(|p| {
                    p.iter()
                        .map(|s| s.to_string().trim_matches('"').to_string())
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "{} at {} ({})",
                e["extensions"]["code"].as_str().unwrap_or("-"),
                path.join("."),
                e["extensions"]["service"].as_str().unwrap_or("-")
            )
        })
        .collect()
}

const TWO_LEVELS: &str = "{ pipelines(limit: 2) { items { id datasets { id name } } } }";

fn first_wave() -> JsonValue {
    json!({"data": {"pipelines": {"items": [
        {"id": "p1", "datasetIds": ["d1"]}, {"id": "p2", "datasetIds": ["d2"]}
    ]}}})
}

#[test]
fn malformed_answers_are_errors_at_the_fields_they_served() {
    let sg = supergraph();
    let at_both = [
        "SUBGRAPH_MALFORMED_RESPONSE at pipelines.items.0.datasets (dataset)",
        "SUBGRAPH_MALFORMED_RESPONSE at pipelines.items.1.datasets (dataset)",
    ];
    for (what, answer) in [
        ("data null without errors", json!({"data": null})),
        ("empty object", json!({})),
        ("data without the call", json!({"data": {}})),
        (
            "errors not a list",
            json!({"data": {"_stitch_0": []}, "errors": "boom"}),
        ),
        ("data not an object", json!({"data": [1]})),
        (
            "a batch that is not a list",
            json!({"data": {"_stitch_0": {"id": "d1"}}}),
        ),
        (
            "a batch too short",
            json!({"data": {"_stitch_0": [{"id": "d1", "name": "one"}]}}),
        ),
        (
            "a batch null without errors",
            json!({"data": {"_stitch_0": null}}),
        ),
    ] {
        let out = run(&sg, TWO_LEVELS, json!({}), &[first_wave(), answer]);
        assert_eq!(error_lines(&out), at_both, "{what}:\n{out}");
    }
    // Root fields: a missing key is an error at that key, unless it was conditional.
    let out = run(
        &sg,
        "{ pipelines { total } }",
        json!({}),
        &[json!({"data": {}})],
    );
    assert_eq!(
        error_lines(&out),
        ["SUBGRAPH_MALFORMED_RESPONSE at pipelines (pipeline)"]
    );
    let out = run(
        &sg,
        "query($s: Boolean = true) { pipelines @skip(if: $s) { total } }",
        json!({}),
        &[json!({"data": {}})],
    );
    assert_eq!(error_lines(&out), Vec::<String>::new(), "{out}");
}

#[test]
fn null_data_with_errors_is_an_answer_not_a_malformed_one() {
    let out = run(
        &supergraph(),
        TWO_LEVELS,
        json!({}),
        &[
            first_wave(),
            json!({"data": null, "errors": [{"message": "db down", "path": ["_stitch_0"]}]}),
        ],
    );
    assert_eq!(
        error_lines(&out),
        [
            "- at pipelines.items.0.datasets (dataset)",
            "- at pipelines.items.1.datasets (dataset)"
        ]
    );
}

#[test]
fn a_pathless_error_of_a_nested_fetch_lands_on_the_fields_it_served() {
    let out = run(
        &supergraph(),
        TWO_LEVELS,
        json!({}),
        &[
            first_wave(),
            json!({"data": {"_stitch_0": null}, "errors": [{"message": "rate limited"}]}),
        ],
    );
    assert_eq!(
        error_lines(&out),
        [
            "- at pipelines.items.0.datasets (dataset)",
            "- at pipelines.items.1.datasets (dataset)"
        ]
    );
}
