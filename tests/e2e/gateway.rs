//! The gateway over real subgraphs: the contract, every stitched field,
//! batching read from the metrics, partial results, GraphQL over HTTP.

use apollo_compiler::{schema::ExtendedType, Schema};
use e2e::{
    client::{data, error_codes, gql, http},
    pipeline_support::upload_text,
    platform::Platform,
};
use serde_json::{json, Value};

const CONTRACT: &str = include_str!("../../contract/public.graphql");

/// A completed `example01` run over the platform; returns (run id, text_in id, text_out id).
async fn finished_run(p: &Platform) -> (String, String, String) {
    let tags = json!([{"key": "team", "value": "a"}]);
    e2e::pipeline_support::finished_run(&p.url(), &p.subgraphs.dataset_url(), tags).await
}

fn describe(schema: &Schema, name: &str) -> String {
    let Some(ty) = schema.types.get(name) else {
        return "missing".into();
    };
    let args = |args: &[apollo_compiler::Node<apollo_compiler::ast::InputValueDefinition>]| {
        let mut v: Vec<String> = args
            .iter()
            .map(|a| {
                format!(
                    "{}: {}{}",
                    a.name,
                    a.ty,
                    a.default_value
                        .as_ref()
                        .map(|d| format!(" = {d}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        v.sort();
        v.join(", ")
    };
    let mut lines: Vec<String> = match ty {
        ExtendedType::Object(o) => o
            .fields
            .values()
            .map(|f| format!("{}({}): {}", f.name, args(&f.arguments), f.ty))
            .collect(),
        ExtendedType::InputObject(i) => i
            .fields
            .values()
            .map(|f| {
                format!(
                    "{}: {}{}",
                    f.name,
                    f.ty,
                    f.default_value
                        .as_ref()
                        .map(|d| format!(" = {d}"))
                        .unwrap_or_default()
                )
            })
            .collect(),
        ExtendedType::Enum(e) => e.values.keys().map(|k| k.to_string()).collect(),
        ExtendedType::Scalar(_) => vec!["scalar".into()],
        other => vec![format!("{other:?}")],
    };
    lines.sort();
    lines.join("\n")
}

#[tokio::test]
async fn introspection_equals_the_contract_type_by_type() {
    let p = Platform::start().await;
    let resp = p
        .query(
            stitching::schema::introspection::INTROSPECTION_QUERY,
            json!({}),
        )
        .await;
    let sdl = stitching::schema::introspection::sdl_from_introspection(&data(&resp).clone())
        .expect("sdl");
    let served = Schema::parse_and_validate(sdl, "gateway.graphql").expect("valid served schema");
    let contract = Schema::parse_and_validate(CONTRACT, "public.graphql").expect("valid contract");
    let user_types = |s: &Schema| -> Vec<String> {
        let mut v: Vec<String> = s
            .types
            .iter()
            .filter(|(_, t)| !t.is_built_in())
            .map(|(n, _)| n.to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(user_types(&served), user_types(&contract), "the same types");
    for name in user_types(&contract) {
        assert_eq!(
            describe(&served, &name),
            describe(&contract, &name),
            "type {name}"
        );
    }
    p.stop().await;
}

#[tokio::test]
async fn every_stitched_field_resolves_and_helpers_stay_hidden() {
    let p = Platform::start().await;
    let (run, input, output) = finished_run(&p).await;
    let q = r#"query($id: ID!, $out: ID!) {
      pipeline(id: $id) {
        id status
        datasets { id name }
        dataCatalog { name dataset { id producedBy { id status } } }
        logs(limit: 3) { items { level message pipeline { id name } } nextCursor }
      }
      logs(pipelineId: $id, limit: 2) { items { message } }
      dataset(id: $out) { name producedBy { id tags { key value } } }
    }"#;
    let resp = p.query(q, json!({"id": run, "out": output})).await;
    let d = data(&resp);
    let pipeline = &d["pipeline"];
    assert_eq!(
        pipeline["datasets"],
        json!([{"id": input, "name": "text_in"}, {"id": output, "name": "text_out"}])
    );
    // `datasetIds`, `datasetId`, `pipelineId`, `producedByPipelineId` were not selected: fetched, then removed.
    let text = resp.to_string();
    assert!(
        !text.contains("_stitch_")
            && !text.contains("datasetIds")
            && !text.contains("producedByPipelineId"),
        "{text}"
    );
    let catalog = pipeline["dataCatalog"].as_array().unwrap();
    assert_eq!(catalog[0]["name"], "text_in");
    // text_in was never written by a run: null `$fields:` -> null without a call.
    assert_eq!(
        catalog[0]["dataset"],
        json!({"id": input, "producedBy": null})
    );
    assert_eq!(
        catalog[1]["dataset"]["producedBy"],
        json!({"id": run, "status": "SUCCESS"})
    );
    let logs = pipeline["logs"]["items"].as_array().unwrap();
    assert_eq!(logs.len(), 3);
    assert!(logs
        .iter()
        .all(|l| l["pipeline"] == json!({"id": run, "name": "example01"})));
    assert!(pipeline["logs"]["nextCursor"].is_string());
    assert_eq!(d["logs"]["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        d["dataset"]["producedBy"],
        json!({"id": run, "tags": [{"key": "team", "value": "a"}]})
    );
    p.stop().await;
}

#[tokio::test]
async fn fragments_aliases_defaults_directives_and_typename_cross_subgraphs() {
    let p = Platform::start().await;
    let (run, _, _) = finished_run(&p).await;
    let q = r#"query Q($id: ID!, $withLogs: Boolean = true, $skipSets: Boolean!) {
      __typename
      run: pipeline(id: $id) {
        __typename
        ...RunFields
        ... on Pipeline { sets: datasets @skip(if: $skipSets) { __typename ident: id } }
        l: logs(limit: 1) @include(if: $withLogs) { items { ... on LogMessage { __typename pipeline { ...Name } } } }
      }
    }
    fragment RunFields on Pipeline { status dataCatalog { dataset { ...Name2 } } }
    fragment Name on Pipeline { name }
    fragment Name2 on Dataset { name }"#;
    let resp = p.query(q, json!({"id": run, "skipSets": true})).await;
    let d = data(&resp);
    assert_eq!(d["__typename"], "Query");
    let r = &d["run"];
    assert_eq!(r["__typename"], "Pipeline");
    assert!(r.get("sets").is_none(), "skipped: {r}");
    assert_eq!(r["dataCatalog"][1]["dataset"]["name"], "text_out");
    assert_eq!(
        r["l"]["items"][0],
        json!({"__typename": "LogMessage", "pipeline": {"name": "example01"}})
    );
    // The client's field order (serde_json::Value sorts keys, so read the raw body).
    let raw = http()
        .post(p.url())
        .json(&json!({"query": q, "variables": {"id": run, "skipSets": true}}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = |k: &str| {
        raw.find(&format!("\"{k}\":"))
            .unwrap_or_else(|| panic!("{k} in {raw}"))
    };
    assert!(
        at("run") < at("status") && at("status") < at("dataCatalog") && at("dataCatalog") < at("l"),
        "{raw}"
    );

    let resp = p
        .query(q, json!({"id": run, "skipSets": false, "withLogs": false}))
        .await;
    let r = &data(&resp)["run"];
    assert!(r.get("l").is_none());
    assert_eq!(r["sets"][0]["__typename"], "Dataset");
    assert!(r["sets"][0]["ident"].is_string());
    p.stop().await;
}

#[tokio::test]
async fn requests_per_subgraph_do_not_grow_with_the_number_of_parents() {
    let p = Platform::start().await;
    let q = "{ pipelines(limit: 50) { items { id dataCatalog { dataset { name producedBy { name } } } datasets { id } logs(limit: 2) { items { message pipeline { status } } } } } }";
    let mut counts = Vec::new();
    for runs in [1usize, 4] {
        while counts.len() < runs {
            finished_run(&p).await;
            counts.push(());
        }
        let before: Vec<u64> = futures::future::join_all(
            ["pipeline", "dataset", "log"].map(|s| p.subgraph_requests(s)),
        )
        .await;
        let resp = p.query(q, json!({})).await;
        assert_eq!(
            data(&resp)["pipelines"]["items"].as_array().unwrap().len(),
            runs
        );
        let after: Vec<u64> = futures::future::join_all(
            ["pipeline", "dataset", "log"].map(|s| p.subgraph_requests(s)),
        )
        .await;
        let delta: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        // pipeline: the root level and the level of producedBy + logs.pipeline;
        // dataset: one level (datasets and dataCatalog.dataset together); log: one.
        assert_eq!(delta, vec![2, 1, 1], "with {runs} runs");
    }
    p.stop().await;
}

#[tokio::test]
async fn a_down_subgraph_nulls_only_its_fields() {
    let mut p = Platform::start().await;
    let (run, _, _) = finished_run(&p).await;
    p.subgraphs.stop_log().await;
    let q = r#"query($id: ID!) {
      pipelines { items { id status } total }
      p: pipeline(id: $id) { id logs(limit: 2) { items { message } } }
    }"#;
    let resp = p.query(q, json!({"id": run})).await;
    let d = &resp["data"];
    assert_eq!(d["pipelines"]["total"], 1, "{resp}");
    assert_eq!(d["pipelines"]["items"][0]["id"], run.as_str());
    // `logs` is non-null: its null propagates to the nullable `pipeline` field.
    assert_eq!(d["p"], Value::Null);
    let errors = resp["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{resp}");
    assert_eq!(errors[0]["path"], json!(["p", "logs"]));
    assert_eq!(errors[0]["extensions"]["code"], "SUBGRAPH_UNAVAILABLE");
    assert_eq!(errors[0]["extensions"]["service"], "log");
    p.subgraphs.start_log().await;
    p.stop().await;
}

#[tokio::test]
async fn remote_errors_keep_extensions_and_get_client_paths() {
    let p = Platform::start().await;
    let resp = p
        .query(
            "{ first: pipelines(limit: 0) { total } d: dataset(id: \"nope\") { id } }",
            json!({}),
        )
        .await;
    let errors = resp["errors"].as_array().expect("errors");
    let e = errors
        .iter()
        .find(|e| e["path"] == json!(["first"]))
        .unwrap_or_else(|| panic!("{resp}"));
    assert_eq!(e["extensions"]["code"], "BAD_USER_INPUT");
    assert_eq!(e["extensions"]["service"], "pipeline");
    assert_eq!(resp["data"], Value::Null, "pipelines is non-null: {resp}");
    p.stop().await;
}

#[tokio::test]
async fn invalid_operations_call_no_subgraph() {
    let p = Platform::start().await;
    let before = p.metrics().await;
    for q in [
        "{ pipelines { items { nope } } }",
        "{ pipeline { id } }",
        "query($x: String) { pipelines(limit: $x) { total } }",
        "{ pipelines(limit: 1) { total ",
    ] {
        let resp = p.query(q, json!({})).await;
        assert!(resp.get("data").is_none(), "{q}: {resp}");
        let codes = error_codes(&resp);
        assert!(
            codes
                .iter()
                .all(|c| c == "GRAPHQL_VALIDATION_FAILED" || c == "GRAPHQL_PARSE_FAILED"),
            "{q}: {codes:?}"
        );
    }
    let after = p.metrics().await;
    for s in ["pipeline", "dataset", "log"] {
        let sample = format!("subgraph_requests_total{{subgraph=\"{s}\"}}");
        assert_eq!(
            e2e::platform::metric(&before, &sample),
            e2e::platform::metric(&after, &sample),
            "{s}"
        );
    }
    p.stop().await;
}

#[tokio::test]
async fn graphql_over_http() {
    let p = Platform::start().await;
    let c = http();
    let url = p.url();
    // GET for queries, with variables (and a header no cross-site form sends).
    let r = c
        .get(&url)
        .header("apollo-require-preflight", "true")
        .query(&[
            (
                "query",
                "query($n: String!) { pipelineTemplate(name: $n) { name } }",
            ),
            ("variables", "{\"n\": \"example00\"}"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["data"]["pipelineTemplate"]["name"],
        "example00"
    );
    // Without it, a GET is what a cross-site page could make a browser send.
    let r = c
        .get(&url)
        .query(&[("query", "{ pipelineTemplates { name } }")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "CSRF_PREVENTION",
        "{body}"
    );
    let r = c
        .get(&url)
        .header("x-apollo-operation-name", "T")
        .query(&[("query", "query T { pipelineTemplates { name } }")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A mutation over GET is refused.
    let r = c
        .get(&url)
        .header("apollo-require-preflight", "true")
        .query(&[("query", "mutation { deletePipeline(id: \"x\") { id } }")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    // A subscription over HTTP: refused with a pointer to WebSocket (not a 405:
    // no method would do).
    let sub = json!({"query": "subscription { pipelineEvents(id: \"x\") { status } }"});
    let r = c
        .post(&url)
        .header("accept", "application/graphql-response+json")
        .json(&sub)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(error_codes(&body), ["OPERATION_NOT_ALLOWED"], "{body}");
    assert!(body.to_string().contains("WebSocket"), "{body}");
    // graphql-response+json: 400 for validation errors; application/json: 200.
    let bad = json!({"query": "{ nope }"});
    let r = c
        .post(&url)
        .header("accept", "application/graphql-response+json")
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.headers()["content-type"],
        "application/graphql-response+json"
    );
    let r = c
        .post(&url)
        .header("accept", "application/json")
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    // Bad JSON, wrong content type, too large.
    let r = c
        .post(&url)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not a GraphQL request"));
    // Media types match exactly: `application/jsonfoo` is not JSON.
    for ctype in [
        "text/plain",
        "application/jsonfoo",
        "application/json-patch+json",
    ] {
        let r = c
            .post(&url)
            .header("content-type", ctype)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415, "{ctype}");
    }
    let r = c
        .post(&url)
        .header("content-type", "Application/JSON; charset=utf-8")
        .body(r#"{"query": "{ pipelineTemplates { name } }"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let big = json!({"query": format!("{{ pipelineTemplates {{ name }} }} #{}", "x".repeat(3 * 1024 * 1024))});
    let r = c.post(&url).json(&big).send().await.unwrap();
    assert_eq!(r.status(), 413);
    // GraphiQL for a browser, health, metrics.
    let r = c
        .get(&url)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("GraphiQL"));
    let r = c
        .get(format!("http://{}/health", p.gateway.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");
    assert!(p
        .metrics()
        .await
        .contains("subgraph_request_duration_seconds_bucket"));
    p.stop().await;
}

#[tokio::test]
async fn request_limits_and_disabled_introspection() {
    let p = Platform::start_with(
        Default::default(),
        "max_depth = 3\nmax_aliases = 2\nintrospection = false",
    )
    .await;
    let deep = p
        .query(
            "{ pipelines { items { dataCatalog { dataset { name } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_codes(&deep), ["REQUEST_LIMIT_EXCEEDED"], "{deep}");
    assert!(deep.to_string().contains("at most 3"));
    let aliases = p.query("{ a: pipelineTemplates { name } b: pipelineTemplates { name } c: pipelineTemplates { name } }", json!({})).await;
    assert_eq!(
        error_codes(&aliases),
        ["REQUEST_LIMIT_EXCEEDED"],
        "{aliases}"
    );
    let intro = p
        .query("{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(error_codes(&intro), ["INTROSPECTION_DISABLED"], "{intro}");
    // Fragments spreading each other twice per level: 2^40 fields expanded,
    // a few hundred bytes of document, refused before any work.
    let mut bomb = String::from("{ pipelineTemplates { ...F0 } }");
    for i in 0..40 {
        bomb.push_str(&format!(
            " fragment F{i} on PipelineTemplate {{ ...F{n} ...F{n} }}",
            n = i + 1
        ));
    }
    bomb.push_str(" fragment F40 on PipelineTemplate { name }");
    let resp = p.query(&bomb, json!({})).await;
    assert_eq!(error_codes(&resp), ["REQUEST_LIMIT_EXCEEDED"], "{resp}");
    assert_eq!(p.subgraph_requests("pipeline").await, 0);
    p.stop().await;
}

/// What fragment colocation (Relay, Apollo Client) sends: one field selected
/// by several fragments with different subfields gets all of them, even when
/// each selection is a separate delegation; a fragment spread twice is
/// fetched once.
#[tokio::test]
async fn one_field_selected_by_several_fragments_gets_every_subfield() {
    let p = Platform::start().await;
    let (run, _, _) = finished_run(&p).await;
    let q = r#"query($id: ID!) { ...A ...B ...A }
      fragment A on Query { pipeline(id: $id) { id status datasets { id } } }
      fragment B on Query { pipeline(id: $id) { name datasets { name } logs(limit: 1) { items { level } } logs(limit: 1) { items { message } } } }"#;
    let resp = p.query(q, json!({ "id": run })).await;
    assert!(resp.get("errors").is_none(), "{resp}");
    let r = &data(&resp)["pipeline"];
    assert_eq!(r["id"], run.as_str());
    assert_eq!(r["status"], "SUCCESS");
    assert_eq!(r["name"], "example01");
    let sets = r["datasets"].as_array().expect("datasets");
    assert_eq!(sets.len(), 2, "{r}");
    for d in sets {
        assert!(d["id"].is_string() && d["name"].is_string(), "{r}");
    }
    let line = &r["logs"]["items"][0];
    assert!(
        line["level"].is_string() && line["message"].is_string(),
        "{r}"
    );
    p.stop().await;
}

/// A variable with a default may stand where a non-null value is expected
/// (`@skip(if: Boolean!)`); the subgraph must see the default too.
#[tokio::test]
async fn defaulted_variables_reach_the_subgraph_with_their_default() {
    let p = Platform::start().await;
    let (run, _, _) = finished_run(&p).await;
    let q = r#"query($id: ID!, $hide: Boolean = false) { pipeline(id: $id) { id tags @skip(if: $hide) { key value } } }"#;
    let resp = p.query(q, json!({ "id": run })).await;
    assert!(resp.get("errors").is_none(), "{resp}");
    assert_eq!(
        data(&resp)["pipeline"]["tags"],
        json!([{ "key": "team", "value": "a" }])
    );
    let resp = p.query(q, json!({ "id": run, "hide": true })).await;
    assert!(data(&resp)["pipeline"].get("tags").is_none(), "{resp}");
    p.stop().await;
}

#[tokio::test]
async fn mutations_through_the_gateway_run_in_order() {
    let p = Platform::start().await;
    let q = r#"mutation { a: createDataset(dataset: {name: "a", type: "t"}) { id name } b: createDataset(dataset: {name: "b", type: "t"}) { id name } }"#;
    let resp = p.query(q, json!({})).await;
    let d = data(&resp);
    assert_eq!(d["a"]["name"], "a");
    assert_eq!(d["b"]["name"], "b");
    // Two identical mutation fields are two effects, not one deduplicated call.
    let twice = r#"mutation { a: createDataset(dataset: {name: "same", type: "t"}) { id } b: createDataset(dataset: {name: "same", type: "t"}) { id } }"#;
    let resp = p.query(twice, json!({})).await;
    let d = data(&resp);
    assert!(d["a"]["id"].is_string(), "{resp}");
    assert_ne!(d["a"]["id"], d["b"]["id"], "{resp}");
    let id = d["b"]["id"].as_str().unwrap();
    upload_text(&p.url(), id, "via gateway").await;
    let resp = gql(
        &p.url(),
        "query($id: ID!) { dataset(id: $id) { sizeBytes } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(data(&resp)["dataset"]["sizeBytes"], 11);
    p.stop().await;
}

#[tokio::test]
async fn bad_stitching_is_a_start_up_error_naming_file_and_line() {
    let subgraphs = e2e::stack::Subgraphs::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.graphql");
    std::fs::write(
        &bad,
        "extend type Pipeline {\n  owner: Dataset @delegate(path: \"datasetz(id: $fields:nope)\")\n}\n",
    )
    .unwrap();
    let entries = e2e::platform::subgraph_entries(&subgraphs).replacen(
        "stitching_files = [",
        &format!("stitching_files = [\"{}\", ", bad.display()),
        1,
    );
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!("[gateway]\nlisten = \"127.0.0.1:0\"\n\n{entries}"),
    )
    .unwrap();
    let err = match e2e::platform::start_gateway(&path).await {
        Ok(_) => panic!("the gateway must refuse a bad stitching SDL"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&format!("{}:2:", bad.display())), "{err}");
    assert!(
        err.contains("subgraph `pipeline` has no field `Query.datasetz`"),
        "{err}"
    );
    subgraphs.stop().await;
}

#[tokio::test]
async fn plans_are_cached_by_document_and_dropped_with_the_schema() {
    let p = Platform::start().await;
    let q = "query A { pipelines { total } } query B { pipelineTemplates { name } }";
    let engine = p.gateway.state.engine();
    let a1 = engine.prepare(q, Some("A")).unwrap();
    let a2 = engine.prepare(q, Some("A")).unwrap();
    let b = engine.prepare(q, Some("B")).unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&a1, &a2),
        "same document and operation: one plan"
    );
    assert!(
        !std::sync::Arc::ptr_eq(&a1, &b),
        "another operation: another plan"
    );
    assert_eq!(engine.plan_cache_usage(), (2, 2));
    // A large document weighs by its size (one per 4 KiB).
    let big = format!(
        "{{ pipelineTemplate(name: \"{}\") {{ name }} }}",
        "x".repeat(40 * 1024)
    );
    engine.prepare(&big, None).unwrap();
    assert_eq!(engine.plan_cache_usage(), (3, 2 + 11));
    p.gateway.reload().await.unwrap();
    let fresh = p.gateway.state.engine();
    assert!(
        !std::sync::Arc::ptr_eq(&engine, &fresh),
        "a reload swaps the engine"
    );
    let a3 = fresh.prepare(q, Some("A")).unwrap();
    assert!(
        !std::sync::Arc::ptr_eq(&a1, &a3),
        "the new schema plans anew"
    );
    // Requests still run on the old engine they hold.
    let resp = gql(&p.url(), q, json!({})).await;
    assert!(
        resp["errors"].is_array(),
        "two operations and no name: {resp}"
    );
    p.stop().await;
}

#[tokio::test]
async fn identical_mutations_in_flight_all_run() {
    // Both kinds of deduplication on: still every mutation is its own effect.
    let p = Platform::start_with(Default::default(), "dedupe_client_requests = true").await;
    let q =
        r#"mutation { createDataset(dataset: {name: "same", type: "text.TextDataset"}) { id } }"#;
    let answers = futures::future::join_all((0..5).map(|_| p.query(q, json!({})))).await;
    let mut ids: Vec<String> = answers
        .iter()
        .map(|a| {
            data(a)["createDataset"]["id"]
                .as_str()
                .expect("id")
                .to_string()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5);
    p.stop().await;
}

#[tokio::test]
async fn cors_answers_preflights_for_allowed_origins_only() {
    let p = Platform::start_with(
        Default::default(),
        "[gateway.cors]\nallow_origins = [\"https://app.example.com\"]\nallow_origin_regex = [\"^http://localhost(:[0-9]+)?$\"]\nallow_credentials = true",
    )
    .await;
    let c = http();
    let preflight = |origin: &'static str| {
        c.request(reqwest::Method::OPTIONS, p.url())
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    for origin in ["http://localhost:5173", "https://app.example.com"] {
        let r = preflight(origin).await.unwrap();
        assert!(r.status().is_success(), "{origin}: {}", r.status());
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], origin);
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert!(h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST"));
        assert!(h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("content-type"));
        assert_eq!(h["access-control-max-age"], "600");
    }
    let r = preflight("https://evil.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // The actual request carries the header too, and exposes the request id.
    let r = c
        .post(p.url())
        .header("origin", "http://localhost:3000")
        .json(&json!({"query": "{ pipelineTemplates { name } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    assert!(r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .contains("x-request-id"));
    p.stop().await;

    // Off by default: no CORS header at all.
    let p = Platform::start().await;
    let r = c
        .request(reqwest::Method::OPTIONS, p.url())
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    p.stop().await;
}

#[tokio::test]
async fn automatic_persisted_queries_by_hash_then_text_then_hash_alone() {
    use sha2::{Digest, Sha256};
    let p = Platform::start().await;
    let c = http();
    let query = "{ pipelineTemplates { name } }";
    let hash = hex::encode(Sha256::digest(query.as_bytes()));
    let ext = json!({"persistedQuery": {"version": 1, "sha256Hash": hash}});
    let post = |body: Value| c.post(p.url()).json(&body).send();
    let url = p.url();
    let ask = |body: Value| {
        let (c, url) = (&c, &url);
        async move { e2e::client::post_json(c, url, &body).await }
    };

    // An unknown hash: 200 with PERSISTED_QUERY_NOT_FOUND, as clients expect.
    let r = post(json!({"extensions": ext})).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "PERSISTED_QUERY_NOT_FOUND"
    );
    assert_eq!(body["errors"][0]["message"], "PersistedQueryNotFound");
    // A text that does not match its hash is refused and not kept.
    let r = post(json!({"query": "{ pipelines { total } }", "extensions": ext}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "PERSISTED_QUERY_HASH_MISMATCH"
    );
    // The text with its hash runs and is kept; then the hash alone runs it,
    // over POST and over GET.
    let with_text: Value = ask(json!({"query": query, "extensions": ext})).await;
    let templates = data(&with_text)["pipelineTemplates"].clone();
    assert!(templates.as_array().is_some_and(|t| !t.is_empty()));
    let by_hash: Value = ask(json!({"extensions": ext})).await;
    assert_eq!(data(&by_hash)["pipelineTemplates"], templates);
    let r = c
        .get(p.url())
        .header("apollo-require-preflight", "true")
        .query(&[("extensions", ext.to_string())])
        .send()
        .await
        .unwrap();
    let by_get: Value = r.json().await.unwrap();
    assert_eq!(data(&by_get)["pipelineTemplates"], templates);
    p.stop().await;
}

#[tokio::test]
async fn trusted_documents_from_manifests_and_a_safelist() {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let templates = "query Templates { pipelineTemplates { name } }";
    let hash = hex::encode(Sha256::digest(templates.as_bytes()));
    let apollo = dir.path().join("apollo.json");
    std::fs::write(
        &apollo,
        json!({"format": "apollo-persisted-query-manifest", "version": 1, "operations": [
            {"id": hash, "name": "Templates", "type": "query", "body": templates}
        ]})
        .to_string(),
    )
    .unwrap();
    let relay = dir.path().join("relay.json");
    std::fs::write(
        &relay,
        json!({"relay-total": "{ pipelines { total } }"}).to_string(),
    )
    .unwrap();
    let p = Platform::start_with(
        Default::default(),
        &format!(
            "[gateway.trusted_documents]\nmanifests = [\"{}\", \"{}\"]\nsafelist = true",
            apollo.display(),
            relay.display()
        ),
    )
    .await;
    let c = http();
    let post = |body: Value| c.post(p.url()).json(&body).send();
    let url = p.url();
    let ask = |body: Value| {
        let (c, url) = (&c, &url);
        async move { e2e::client::post_json(c, url, &body).await }
    };
    let code = |v: &Value| {
        v["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };

    // By hash (Apollo Client's persisted queries), by documentId (Relay), by exact text.
    let ext = json!({"persistedQuery": {"version": 1, "sha256Hash": hash}});
    let by_hash: Value = ask(json!({"extensions": ext})).await;
    assert!(data(&by_hash)["pipelineTemplates"].is_array(), "{by_hash}");
    let by_id: Value = ask(json!({"documentId": "relay-total"})).await;
    assert!(data(&by_id)["pipelines"]["total"].is_number(), "{by_id}");
    let by_text: Value = ask(json!({"query": templates})).await;
    assert!(data(&by_text)["pipelineTemplates"].is_array());
    // Anything else is refused, registration through APQ included.
    let other = "{ pipelines { items { id } } }";
    let r = post(json!({"query": other})).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        code(&r.json().await.unwrap()),
        "PERSISTED_QUERY_NOT_IN_LIST"
    );
    let other_hash = hex::encode(Sha256::digest(other.as_bytes()));
    let r: Value = ask(json!({"query": other, "extensions": {"persistedQuery": {"version": 1, "sha256Hash": other_hash}}})).await;
    assert_eq!(code(&r), "PERSISTED_QUERY_NOT_IN_LIST");
    let r: Value = ask(json!({"documentId": "nope"})).await;
    assert_eq!(code(&r), "PERSISTED_QUERY_NOT_IN_LIST");
    // Introspection runs (allow_introspection), so tools still see the schema.
    let intro: Value = ask(json!({"query": "{ __schema { queryType { name } } }"})).await;
    assert_eq!(data(&intro)["__schema"]["queryType"]["name"], "Query");
    // Over WebSocket the same rules hold.
    let mut ws =
        e2e::ws_support::WsClient::ready(&p.ws_url(), e2e::client::Protocol::GraphqlTransportWs)
            .await;
    ws.send(json!({"id": "t", "type": "subscribe", "payload": {"documentId": "relay-total"}}))
        .await;
    let m = ws.recv_op(std::time::Duration::from_secs(5)).await;
    assert!(
        m["payload"]["data"]["pipelines"]["total"].is_number(),
        "{m}"
    );
    ws.send(json!({"id": "o", "type": "subscribe", "payload": {"query": other}}))
        .await;
    let m = loop {
        let m = ws.recv_op(std::time::Duration::from_secs(5)).await;
        if m["id"] == "o" {
            break m;
        }
    };
    assert_eq!(m["type"], "error", "{m}");
    assert_eq!(
        m["payload"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_IN_LIST",
        "{m}"
    );
    ws.close().await;
    // A manifest edited on disk is reloaded with the config.
    std::fs::write(
        &relay,
        json!({"relay-total": "{ pipelines { total } }", "relay-items": other}).to_string(),
    )
    .unwrap();
    e2e::platform::eventually(
        std::time::Duration::from_secs(10),
        "the new trusted document",
        || async {
            let r: Value = post(json!({"documentId": "relay-items"}))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            r.get("errors").is_none().then_some(())
        },
    )
    .await;
    p.stop().await;
}

/// Runs tests/clients/apollo-persisted.mjs with `args`: its JSON lines.
async fn apollo_persisted(args: &[&str]) -> Vec<Value> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = std::process::Command::new(root.join("scripts/ensure-node-clients.sh"))
        .status()
        .expect("run scripts/ensure-node-clients.sh");
    assert!(status.success(), "scripts/ensure-node-clients.sh failed");
    let out = tokio::process::Command::new("node")
        .arg(root.join("tests/clients/apollo-persisted.mjs"))
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run node");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn sent_hash_only(lines: &[Value]) -> Vec<bool> {
    lines
        .iter()
        .filter_map(|l| l["sent"]["hashOnly"].as_bool())
        .collect()
}

#[tokio::test]
async fn apollo_clients_persisted_queries_link_registers_then_sends_the_hash_only() {
    let p = Platform::start().await;
    let query = "{ pipelineTemplates { name } }";
    // Twice, each with a fresh cache: the first asks with the hash, is told
    // PERSISTED_QUERY_NOT_FOUND and sends the text; the second sends only the hash.
    let lines = apollo_persisted(&["run", &p.url(), query, "2"]).await;
    assert_eq!(sent_hash_only(&lines), [true, false, true], "{lines:#?}");
    let results: Vec<&Value> = lines.iter().filter_map(|l| l.get("result")).collect();
    assert_eq!(results.len(), 2, "{lines:#?}");
    for r in results {
        assert_eq!(
            r["data"]["pipelineTemplates"].as_array().map(Vec::len),
            Some(2),
            "{r}"
        );
    }
    p.stop().await;
}

#[tokio::test]
async fn apollo_client_runs_a_safelisted_document_by_its_hash_and_nothing_else() {
    let known = "query Templates { pipelineTemplates { name } }";
    let printed = apollo_persisted(&["hash", known]).await;
    let (body, hash) = (
        printed[0]["body"].as_str().expect("body"),
        printed[0]["hash"].as_str().expect("hash"),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = dir.path().join("persisted-query-manifest.json");
    std::fs::write(
        &manifest,
        json!({"format": "apollo-persisted-query-manifest", "version": 1, "operations": [
            {"id": hash, "name": "Templates", "type": "query", "body": body}
        ]})
        .to_string(),
    )
    .expect("manifest");
    let p = Platform::start_with(
        Default::default(),
        &format!(
            "[gateway.trusted_documents]\nmanifests = [\"{}\"]\nsafelist = true\nallow_introspection = false",
            manifest.display()
        ),
    )
    .await;
    let lines = apollo_persisted(&["run", &p.url(), known, "1"]).await;
    assert_eq!(sent_hash_only(&lines), [true], "{lines:#?}");
    let result = lines
        .iter()
        .find_map(|l| l.get("result"))
        .unwrap_or_else(|| panic!("no result: {lines:#?}"));
    assert_eq!(
        result["data"]["pipelineTemplates"].as_array().map(Vec::len),
        Some(2),
        "{lines:#?}"
    );
    // A document not in the manifest: Apollo Client sends its text after the
    // hash, and the safelist refuses it.
    let lines = apollo_persisted(&["run", &p.url(), "{ pipelines { total } }", "1"]).await;
    let text = serde_json::to_string(&lines).expect("json");
    assert!(
        text.contains("PERSISTED_QUERY_NOT_IN_LIST") || text.contains("not in"),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["result"]["data"]["pipelines"].is_null()),
        "{lines:#?}"
    );
    p.stop().await;
}

/// `promtool check metrics` over `page`: its complaints (empty: none).
async fn promtool_complaints(page: String) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = std::process::Command::new(root.join("scripts/ensure-promtool.sh"))
        .status()
        .expect("run scripts/ensure-promtool.sh");
    assert!(status.success(), "scripts/ensure-promtool.sh failed");
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    let mut stdin = child.stdin.take().expect("stdin");
    tokio::io::AsyncWriteExt::write_all(&mut stdin, page.as_bytes())
        .await
        .expect("write the page");
    drop(stdin);
    let out = child.wait_with_output().await.expect("promtool output");
    let mut complaints = String::from_utf8_lossy(&out.stdout).to_string();
    complaints.push_str(&String::from_utf8_lossy(&out.stderr));
    if !out.status.success() && complaints.trim().is_empty() {
        complaints = format!("promtool exited with {}", out.status);
    }
    complaints.trim().to_string()
}

#[tokio::test]
async fn the_metrics_pages_pass_promtool() {
    let p = Platform::start().await;
    // Traffic first, so every labelled series has samples.
    let resp = gql(
        &p.url(),
        "{ pipelines { items { id dataCatalog { dataset { name } } logs { items { message } } } } }",
        json!({}),
    )
    .await;
    assert!(resp.get("errors").is_none(), "{resp}");
    // Once more (from the plan cache), and one refused.
    gql(&p.url(), "{ pipelines { total } }", json!({})).await;
    gql(&p.url(), "{ pipelines { total } }", json!({})).await;
    gql(&p.url(), "{ nope }", json!({})).await;
    let page = p.metrics().await;
    for (sample, at_least) in [
        (
            "gateway_requests_total{operation=\"query\",status=\"ok\"}",
            3,
        ),
        (
            "gateway_requests_total{operation=\"unknown\",status=\"refused\"}",
            1,
        ),
        (
            "gateway_request_duration_seconds_count{operation=\"query\"}",
            3,
        ),
        ("gateway_plan_cache_hits_total", 1),
        ("gateway_plan_cache_misses_total", 3),
        ("gateway_plan_cache_entries", 2),
        ("subgraph_requests_total{subgraph=\"pipeline\"}", 3),
        ("process_resident_memory_bytes", 1),
        ("process_cpu_seconds_total", 0),
        ("process_open_fds", 1),
        ("gateway_websockets_open", 0),
        (
            &format!(
                "gateway_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            ),
            1,
        ),
    ] {
        assert!(
            page.lines().any(|l| l.starts_with(sample))
                && e2e::platform::metric(&page, sample) >= at_least,
            "{sample} >= {at_least} in {page}"
        );
    }
    let gateway = promtool_complaints(page).await;
    assert!(gateway.is_empty(), "the gateway's /metrics: {gateway}");
    let dataset = p
        .subgraphs
        .dataset_url()
        .trim_start_matches("http://")
        .trim_end_matches("/graphql")
        .parse()
        .expect("address");
    let page = e2e::platform::metrics_page(dataset).await;
    for sample in [
        "graphql_requests_received_total",
        "graphql_request_duration_seconds_count",
        "process_resident_memory_bytes",
    ] {
        assert!(
            e2e::platform::metric(&page, sample) >= 1,
            "{sample} in {page}"
        );
    }
    assert!(page.contains("service_build_info{version="), "{page}");
    let service = promtool_complaints(page).await;
    assert!(service.is_empty(), "a service's /metrics: {service}");
    p.stop().await;
}
