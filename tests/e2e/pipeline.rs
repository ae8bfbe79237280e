//! The pipeline subgraph over real HTTP against real dataset and log
//! subgraphs: every field and mutation with its error cases, pagination and
//! filters, batch lookup, and recovery of runs a crash left behind.

use std::time::Duration;

use e2e::{
    client::{data, error_codes, error_messages, gql, Next, Protocol, Subscription},
    pipeline_support::*,
    stack::Subgraphs,
};
use serde_json::{json, Value};
use subgraphs::{
    common::{Tag, Timestamp},
    pipeline::{
        model::{DatasetBinding, Parameter, PipelineStatus, Run},
        PipelineConfig,
    },
};

const WAIT: Duration = Duration::from_secs(20);

fn first_error(resp: &Value) -> (String, String) {
    let codes = error_codes(resp);
    let messages = error_messages(resp);
    assert!(!codes.is_empty(), "expected an error, got {resp}");
    (codes[0].clone(), messages[0].clone())
}

#[tokio::test]
async fn templates_are_listed_and_described() {
    let stack = Subgraphs::start().await;
    let url = stack.pipeline_url();
    let resp = gql(
        &url,
        "{ pipelineTemplates { name describe inputs outputs parameters { name value } nodes { name inputs outputs } } \
           one: pipelineTemplate(name: \"example01\") { name nodes { name } } \
           none: pipelineTemplate(name: \"nope\") { name } }",
        json!({}),
    )
    .await;
    let d = data(&resp);
    let templates = d["pipelineTemplates"].as_array().unwrap();
    let names: Vec<&str> = templates
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["example00", "example01"]);

    let ex00 = &templates[0];
    assert_eq!(ex00["inputs"], json!(["text_in"]));
    assert_eq!(ex00["outputs"], json!(["text_out"]));
    assert_eq!(
        ex00["parameters"],
        json!([{ "name": "duration", "value": "0" }, { "name": "example", "value": "hello" }])
    );
    assert_eq!(
        ex00["nodes"],
        json!([{ "name": "echo", "inputs": ["text_in"], "outputs": ["text_out"] }])
    );

    let ex01 = &templates[1];
    assert_eq!(ex01["parameters"], json!([]));
    assert_eq!(
        ex01["nodes"],
        json!([
            { "name": "uppercase", "inputs": ["text_in"], "outputs": ["uppercased"] },
            { "name": "reverse", "inputs": ["uppercased"], "outputs": ["reversed"] },
            { "name": "append_timestamp", "inputs": ["reversed"], "outputs": ["text_out"] },
        ])
    );
    let describe = ex01["describe"].as_str().unwrap();
    for part in [
        "inputs: text_in",
        "outputs: text_out",
        "execution order:",
        "1. uppercase",
        "2. reverse",
        "3. append_timestamp",
    ] {
        assert!(describe.contains(part), "{part} missing from:\n{describe}");
    }
    assert_eq!(
        d["one"],
        json!({ "name": "example01", "nodes": [{ "name": "uppercase" }, { "name": "reverse" }, { "name": "append_timestamp" }] })
    );
    assert!(d["none"].is_null());
    stack.stop().await;
}

#[tokio::test]
async fn create_refuses_bad_input_and_stores_nothing() {
    let stack = Subgraphs::start().await;
    let url = stack.pipeline_url();
    let (text_in, text_out) = text_datasets(&stack.dataset_url(), Some("x")).await;
    let bindings = json!([
        { "name": "text_in", "datasetId": text_in },
        { "name": "text_out", "datasetId": text_out },
    ]);
    let long = |n: usize| "x".repeat(n);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "unknown template",
            json!({ "name": "example99", "dataCatalog": bindings }),
            "unknown template `example99`; the known templates are: example00, example01",
        ),
        (
            "unknown parameter",
            json!({ "name": "example00", "parameters": [{ "name": "speed", "value": "1" }], "dataCatalog": bindings }),
            "unknown parameter `speed` for template example00; its parameters are: duration, example",
        ),
        (
            "parameter of another template",
            json!({ "name": "example01", "parameters": [{ "name": "duration", "value": "1" }], "dataCatalog": bindings }),
            "it takes no parameters",
        ),
        (
            "negative duration",
            json!({ "name": "example00", "parameters": [{ "name": "duration", "value": "-1" }], "dataCatalog": bindings }),
            "parameter `duration` must be a number of seconds from 0 to 3600, got \"-1\"",
        ),
        (
            "duration not a number",
            json!({ "name": "example00", "parameters": [{ "name": "duration", "value": "soon" }], "dataCatalog": bindings }),
            "got \"soon\"",
        ),
        (
            "duration too long",
            json!({ "name": "example00", "parameters": [{ "name": "duration", "value": "3601" }], "dataCatalog": bindings }),
            "from 0 to 3600",
        ),
        (
            "duplicate parameter",
            json!({ "name": "example00", "parameters": [{ "name": "example", "value": "a" }, { "name": "example", "value": "b" }], "dataCatalog": bindings }),
            "parameter `example` is given twice",
        ),
        (
            "missing binding",
            json!({ "name": "example01", "dataCatalog": [{ "name": "text_in", "datasetId": text_in }] }),
            "dataCatalog does not bind `text_out` of template example01",
        ),
        (
            "unknown binding name",
            json!({ "name": "example01", "dataCatalog": [
                { "name": "text_in", "datasetId": text_in },
                { "name": "text_out", "datasetId": text_out },
                { "name": "text_extra", "datasetId": text_out },
            ] }),
            "`text_extra` is not an input or output of template example01; bind exactly: text_in, text_out",
        ),
        (
            "duplicate binding",
            json!({ "name": "example01", "dataCatalog": [
                { "name": "text_in", "datasetId": text_in },
                { "name": "text_in", "datasetId": text_out },
                { "name": "text_out", "datasetId": text_out },
            ] }),
            "`text_in` is bound twice in dataCatalog",
        ),
        (
            "unknown dataset id",
            json!({ "name": "example01", "dataCatalog": [
                { "name": "text_in", "datasetId": "no-such-dataset" },
                { "name": "text_out", "datasetId": text_out },
            ] }),
            "unknown dataset id `no-such-dataset` (bound to text_in)",
        ),
        (
            "over-long template name",
            json!({ "name": long(101), "dataCatalog": bindings }),
            "`name` is 101 characters long; the maximum is 100",
        ),
        (
            "over-long parameter value",
            json!({ "name": "example00", "parameters": [{ "name": "example", "value": long(1001) }], "dataCatalog": bindings }),
            "the maximum is 1000",
        ),
        (
            "over-long dataset id",
            json!({ "name": "example01", "dataCatalog": [
                { "name": "text_in", "datasetId": long(101) },
                { "name": "text_out", "datasetId": text_out },
            ] }),
            "datasetId` is 101 characters long",
        ),
        (
            "over-long tag value",
            json!({ "name": "example01", "dataCatalog": bindings, "tags": [{ "key": "k", "value": long(501) }] }),
            "`tag.value` is 501 characters long",
        ),
        (
            "empty tag key",
            json!({ "name": "example01", "dataCatalog": bindings, "tags": [{ "key": "", "value": "v" }] }),
            "`tag.key` must not be empty",
        ),
    ];
    for (what, input, expected) in cases {
        let resp = create_run_raw(&url, input).await;
        let (code, message) = first_error(&resp);
        assert_eq!(code, "BAD_USER_INPUT", "{what}: {message}");
        assert!(
            message.contains(expected),
            "{what}: expected `{expected}` in `{message}`"
        );
        assert!(resp["data"].is_null(), "{what}: {resp}");
    }
    let resp = gql(&url, "{ pipelines { total items { id } } }", json!({})).await;
    assert_eq!(data(&resp)["pipelines"], json!({ "total": 0, "items": [] }));
    stack.stop().await;
}

#[tokio::test]
async fn create_with_the_dataset_subgraph_down_is_an_upstream_error() {
    let stack = Subgraphs::start_without_pipeline().await;
    let service = start_pipeline_with(PipelineConfig {
        listen: String::new(),
        database: stack.database("pipeline.sqlite"),
        lease_seconds: 10,
        workers: 1,
        dataset_url: dead_url().await,
        log_url: stack.log_url(),
        log_buffer: 100,
        http: Default::default(),
        service_token: Some(e2e::stack::SERVICE_TOKEN.into()),
        authorization: subgraphs::common::rbac::Authorization::allow_all(),
    })
    .await;
    let url = service.url();
    let resp = create_run_raw(
        &url,
        json!({ "name": "example01", "dataCatalog": [
            { "name": "text_in", "datasetId": "a" },
            { "name": "text_out", "datasetId": "b" },
        ] }),
    )
    .await;
    let (code, message) = first_error(&resp);
    assert_eq!(code, "UPSTREAM_ERROR");
    assert!(
        message.contains("cannot check the dataset ids with the dataset subgraph"),
        "{message}"
    );
    assert!(message.contains("nothing was stored"), "{message}");
    let resp = gql(&url, "{ pipelines { total } }", json!({})).await;
    assert_eq!(data(&resp)["pipelines"]["total"], 0);
    service.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn a_run_shows_every_field() {
    let stack = Subgraphs::start().await;
    let url = stack.pipeline_url();
    let (text_in, text_out) = text_datasets(&stack.dataset_url(), Some("abc")).await;
    let created = create_run(
        &url,
        "example00",
        &text_in,
        &text_out,
        json!([{ "name": "example", "value": "!" }]),
        json!([{ "key": "team", "value": "data" }]),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["status"], "PENDING");
    assert!(created["startedAt"].is_null());

    let run = wait_status(&url, &id, &["SUCCESS"], WAIT).await;
    assert_eq!(run["name"], "example00");
    assert_eq!(
        run["parameters"],
        json!([{ "name": "duration", "value": "0" }, { "name": "example", "value": "!" }])
    );
    assert_eq!(run["tags"], json!([{ "key": "team", "value": "data" }]));
    assert_eq!(
        run["dataCatalog"],
        json!([{ "name": "text_in", "datasetId": text_in }, { "name": "text_out", "datasetId": text_out }])
    );
    assert_eq!(run["datasetIds"], json!([text_in, text_out]));
    assert!(run["error"].is_null());
    let created_at = Timestamp::parse(run["createdAt"].as_str().unwrap()).unwrap();
    let started_at = Timestamp::parse(run["startedAt"].as_str().unwrap()).unwrap();
    let finished_at = Timestamp::parse(run["finishedAt"].as_str().unwrap()).unwrap();
    assert!(created_at <= started_at && started_at <= finished_at);
    assert!(run["createdAt"].as_str().unwrap().ends_with('Z'));
    let describe = run["describe"].as_str().unwrap();
    assert!(describe.contains("1. echo"), "{describe}");
    assert!(
        describe.contains(&format!("text_in = dataset {text_in}")),
        "{describe}"
    );
    assert!(describe.contains("example = \"!\""), "{describe}");

    assert_eq!(
        read_text(&stack.dataset_url(), &text_out).await,
        (200, "abc!".to_string())
    );
    let resp = gql(
        &stack.dataset_url(),
        "query($id: ID!) { dataset(id: $id) { producedByPipelineId } }",
        json!({ "id": text_out }),
    )
    .await;
    assert_eq!(data(&resp)["dataset"]["producedByPipelineId"], id);

    // the same dataset may be both input and output
    let same = create_run(
        &url,
        "example01",
        &text_out,
        &text_out,
        json!(null),
        json!(null),
    )
    .await;
    assert_eq!(same["datasetIds"], json!([text_out]));
    wait_status(&url, same["id"].as_str().unwrap(), &["SUCCESS"], WAIT).await;

    assert!(get_run(&url, "no-such-run").await.is_null());
    stack.stop().await;
}

#[tokio::test]
async fn pipelines_by_ids_keeps_order_with_nulls() {
    let stack = Subgraphs::start().await;
    let url = stack.pipeline_url();
    let (text_in, text_out) = text_datasets(&stack.dataset_url(), Some("abc")).await;
    let a = create_run(
        &url,
        "example01",
        &text_in,
        &text_out,
        json!(null),
        json!(null),
    )
    .await;
    let b = create_run(
        &url,
        "example01",
        &text_in,
        &text_out,
        json!(null),
        json!(null),
    )
    .await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let resp = gql(
        &url,
        "query($ids: [ID!]!) { pipelinesByIds(ids: $ids) { id name } }",
        json!({ "ids": [b, "unknown", a, b] }),
    )
    .await;
    assert_eq!(
        data(&resp)["pipelinesByIds"],
        json!([
            { "id": b, "name": "example01" },
            null,
            { "id": a, "name": "example01" },
            { "id": b, "name": "example01" },
        ])
    );
    let resp = gql(&url, "{ pipelinesByIds(ids: []) { id } }", json!({})).await;
    assert_eq!(data(&resp)["pipelinesByIds"], json!([]));
    for id in [a, b] {
        wait_status(&url, id, &["SUCCESS"], WAIT).await;
    }
    stack.stop().await;
}

#[tokio::test]
async fn pagination_and_filters_with_total() {
    let stack = Subgraphs::start().await;
    let url = stack.pipeline_url();
    let ds = stack.dataset_url();
    let (text_in, text_out) = text_datasets(&ds, Some("abc")).await;
    let (empty_in, _) = text_datasets(&ds, None).await;

    // 4 successes of example01 (tagged team=a), 2 failures of example00 (team=b), 1 success of example00
    let mut ids = Vec::new();
    for i in 0..7 {
        let (template, input, team) = match i {
            0..=3 => ("example01", text_in.as_str(), "a"),
            4 | 5 => ("example00", empty_in.as_str(), "b"),
            _ => ("example00", text_in.as_str(), "c"),
        };
        let run = create_run(
            &url,
            template,
            input,
            &text_out,
            json!(null),
            json!([{ "key": "team", "value": team }]),
        )
        .await;
        ids.push(run["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        wait_status(&url, id, &["SUCCESS", "FAILURE"], WAIT).await;
    }

    let page_query = "query($limit: Int!, $cursor: String, $filter: PipelineFilter) { \
        pipelines(limit: $limit, cursor: $cursor, filter: $filter) { items { id createdAt status name tags { key value } } nextCursor total } }";
    let all_pages = |filter: Value, limit: i64| {
        let url = url.clone();
        async move {
            let mut seen: Vec<Value> = Vec::new();
            let mut cursor = Value::Null;
            let mut totals = Vec::new();
            loop {
                let resp = gql(
                    &url,
                    page_query,
                    json!({ "limit": limit, "cursor": cursor, "filter": filter }),
                )
                .await;
                let page = data(&resp)["pipelines"].clone();
                totals.push(page["total"].as_i64().unwrap());
                let items = page["items"].as_array().unwrap().clone();
                assert!(items.len() as i64 <= limit);
                seen.extend(items);
                match &page["nextCursor"] {
                    Value::String(c) => cursor = json!(c),
                    _ => break,
                }
            }
            (seen, totals)
        }
    };

    let (all, totals) = all_pages(json!(null), 3).await;
    assert_eq!(totals, [7, 7, 7]);
    let mut got: Vec<&str> = all.iter().map(|r| r["id"].as_str().unwrap()).collect();
    // newest first: createdAt never increases along the pages, and every run shows once
    let stamps: Vec<Timestamp> = all
        .iter()
        .map(|r| Timestamp::parse(r["createdAt"].as_str().unwrap()).unwrap())
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] >= w[1]), "{stamps:?}");
    got.sort();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(got, want);
    // the same order whatever the page size
    let (one_page, _) = all_pages(json!(null), 1000).await;
    assert_eq!(one_page, all);

    let (runs, totals) = all_pages(json!({ "statuses": ["FAILURE"] }), 1).await;
    assert_eq!(totals, [2, 2]);
    assert!(runs
        .iter()
        .all(|r| r["status"] == "FAILURE" && r["name"] == "example00"));

    let (runs, totals) = all_pages(json!({ "name": "example01" }), 10).await;
    assert_eq!(totals, [4]);
    assert_eq!(runs.len(), 4);

    let (runs, totals) = all_pages(json!({ "tag": { "key": "team", "value": "c" } }), 10).await;
    assert_eq!(totals, [1]);
    assert_eq!(runs[0]["id"], ids[6]);

    let (runs, _) = all_pages(
        json!({ "name": "example00", "statuses": ["SUCCESS", "RUNNING"] }),
        10,
    )
    .await;
    assert_eq!(runs.len(), 1);
    let (runs, totals) = all_pages(json!({ "statuses": [] }), 10).await;
    assert_eq!((runs.len(), totals), (0, vec![0]));
    let (runs, totals) = all_pages(
        json!({ "name": "example00", "tag": { "key": "team", "value": "a" } }),
        10,
    )
    .await;
    assert_eq!((runs.len(), totals), (0, vec![0]));

    // the default limit is 10
    let resp = gql(
        &url,
        "{ pipelines { items { id } nextCursor total } }",
        json!({}),
    )
    .await;
    assert_eq!(
        data(&resp)["pipelines"]["items"].as_array().unwrap().len(),
        7
    );
    assert!(data(&resp)["pipelines"]["nextCursor"].is_null());

    for (args, expected) in [
        ("limit: 0", "`limit` must be between 1 and 1000, got 0"),
        (
            "limit: 1001",
            "`limit` must be between 1 and 1000, got 1001",
        ),
        (
            "cursor: \"not-a-cursor!\"",
            "is not a cursor this service issued",
        ),
        (
            "cursor: \"eW91IHNoYWxsIG5vdCBwYXNz\"",
            "is not a cursor this service issued",
        ),
        (
            "filter: { tag: { key: \"\", value: \"x\" } }",
            "`tag.key` must not be empty",
        ),
    ] {
        let resp = gql(
            &url,
            &format!("{{ pipelines({args}) {{ total }} }}"),
            json!({}),
        )
        .await;
        let (code, message) = first_error(&resp);
        assert_eq!(code, "BAD_USER_INPUT", "{args}");
        assert!(message.contains(expected), "{args}: {message}");
    }
    stack.stop().await;
}

#[tokio::test]
async fn cancel_and_delete_with_their_errors() {
    let stack = Subgraphs::start().await;
    let url = stack.pipeline_url();
    let (text_in, text_out) = text_datasets(&stack.dataset_url(), Some("abc")).await;
    let run = create_run(
        &url,
        "example00",
        &text_in,
        &text_out,
        json!([{ "name": "duration", "value": "60" }]),
        json!(null),
    )
    .await;
    let id = run["id"].as_str().unwrap();
    wait_status(&url, id, &["RUNNING"], WAIT).await;

    let delete =
        format!("mutation($id: ID!) {{ deletePipeline(id: $id) {{ {PIPELINE_FIELDS} }} }}");
    let cancel =
        format!("mutation($id: ID!) {{ cancelPipeline(id: $id) {{ {PIPELINE_FIELDS} }} }}");

    let resp = gql(&url, &delete, json!({ "id": id })).await;
    let (code, message) = first_error(&resp);
    assert_eq!(code, "CONFLICT");
    assert!(
        message.contains("is RUNNING; cancel it first with cancelPipeline"),
        "{message}"
    );

    let resp = gql(&url, &cancel, json!({ "id": id })).await;
    let cancelled = &data(&resp)["cancelPipeline"];
    assert_eq!(cancelled["status"], "CANCELLED");
    assert!(cancelled["finishedAt"].is_string());
    assert!(cancelled["error"].is_null());

    let resp = gql(&url, &cancel, json!({ "id": id })).await;
    let (code, message) = first_error(&resp);
    assert_eq!(code, "CONFLICT");
    assert!(
        message.contains("already finished with status CANCELLED"),
        "{message}"
    );

    let resp = gql(&url, &delete, json!({ "id": id })).await;
    assert_eq!(data(&resp)["deletePipeline"]["id"], id);
    assert_eq!(data(&resp)["deletePipeline"]["status"], "CANCELLED");
    assert!(get_run(&url, id).await.is_null());

    for op in [&delete, &cancel] {
        let resp = gql(&url, op, json!({ "id": id })).await;
        let (code, message) = first_error(&resp);
        assert_eq!(code, "NOT_FOUND");
        assert!(
            message.contains(&format!("no pipeline run with id `{id}`")),
            "{message}"
        );
    }

    // a finished run can be deleted; a finished run cannot be cancelled
    let done = create_run(
        &url,
        "example01",
        &text_in,
        &text_out,
        json!(null),
        json!(null),
    )
    .await;
    let done_id = done["id"].as_str().unwrap();
    wait_status(&url, done_id, &["SUCCESS"], WAIT).await;
    let resp = gql(&url, &cancel, json!({ "id": done_id })).await;
    let (code, message) = first_error(&resp);
    assert_eq!(code, "CONFLICT");
    assert!(
        message.contains("already finished with status SUCCESS"),
        "{message}"
    );
    let resp = gql(&url, &delete, json!({ "id": done_id })).await;
    assert_eq!(data(&resp)["deletePipeline"]["status"], "SUCCESS");
    stack.stop().await;
}

#[tokio::test]
async fn events_of_finished_and_unknown_runs() {
    let stack = Subgraphs::start().await;
    let url = stack.pipeline_url();
    let (text_in, text_out) = text_datasets(&stack.dataset_url(), Some("abc")).await;
    let run = create_run(
        &url,
        "example01",
        &text_in,
        &text_out,
        json!(null),
        json!(null),
    )
    .await;
    let id = run["id"].as_str().unwrap();
    wait_status(&url, id, &["SUCCESS"], WAIT).await;
    let query = "subscription($id: ID!) { pipelineEvents(id: $id) { pipelineId status node message timestamp } }";
    for protocol in Protocol::ALL {
        // a finished run: its status, then the subscription completes
        let mut sub = Subscription::start(
            &stack.pipeline_ws_url(),
            protocol,
            query,
            json!({ "id": id }),
        )
        .await;
        let ev = sub.next(WAIT).await.expect("one event");
        assert_eq!(ev["pipelineEvents"]["status"], "SUCCESS");
        assert_eq!(ev["pipelineEvents"]["pipelineId"], id);
        assert!(
            sub.next(WAIT).await.is_none(),
            "{protocol:?}: expected completion"
        );
        sub.stop().await;

        let mut sub = Subscription::start(
            &stack.pipeline_ws_url(),
            protocol,
            query,
            json!({ "id": "nope" }),
        )
        .await;
        match sub.next_message(WAIT).await {
            Next::Errors(payload) => {
                let message = payload["errors"][0]["message"].as_str().unwrap_or("");
                assert!(
                    message.contains("no pipeline run with id `nope`"),
                    "{payload}"
                );
                assert_eq!(payload["errors"][0]["extensions"]["code"], "NOT_FOUND");
            }
            Next::Error(payload) => {
                assert!(
                    payload
                        .to_string()
                        .contains("no pipeline run with id `nope`"),
                    "{payload}"
                )
            }
            other => panic!("{protocol:?}: expected an error, got {other:?}"),
        }
        sub.stop().await;
    }
    stack.stop().await;
}

fn stored_run(id: &str, status: PipelineStatus, text_in: &str, text_out: &str) -> Run {
    Run {
        id: id.into(),
        name: "example00".into(),
        status,
        parameters: vec![
            Parameter {
                name: "duration".into(),
                value: "0".into(),
            },
            Parameter {
                name: "example".into(),
                value: "hello".into(),
            },
        ],
        tags: vec![Tag {
            key: "origin".into(),
            value: "crash".into(),
        }],
        data_catalog: vec![
            DatasetBinding {
                name: "text_in".into(),
                dataset_id: text_in.into(),
            },
            DatasetBinding {
                name: "text_out".into(),
                dataset_id: text_out.into(),
            },
        ],
        created_at: subgraphs::pipeline::model::now(),
        started_at: (status == PipelineStatus::Running).then(subgraphs::pipeline::model::now),
        finished_at: None,
        error: None,
    }
}

#[tokio::test]
async fn runs_left_live_by_a_crash_fail_on_restart() {
    let stack = Subgraphs::start_without_pipeline().await;
    let (text_in, text_out) = text_datasets(&stack.dataset_url(), Some("abc")).await;
    let database = stack.database("crashed-pipeline.sqlite");
    {
        // what a crashed process leaves behind
        let store = e2e::storage::pipeline_store(&database).await;
        store
            .insert(
                stored_run(
                    "crashed-running",
                    PipelineStatus::Running,
                    &text_in,
                    &text_out,
                ),
                vec![],
            )
            .await
            .unwrap();
        store
            .insert(
                stored_run(
                    "crashed-pending",
                    PipelineStatus::Pending,
                    &text_in,
                    &text_out,
                ),
                vec![],
            )
            .await
            .unwrap();
        let mut done = stored_run(
            "finished-before",
            PipelineStatus::Success,
            &text_in,
            &text_out,
        );
        done.finished_at = Some(subgraphs::pipeline::model::now());
        store.insert(done, vec![]).await.unwrap();
    }
    let service = start_pipeline(&stack, &database, 1).await;
    let url = service.url();
    // Alone on its SQLite file, the service owns every run: a PENDING one
    // was its own queue and fails too. On Postgres the queue is shared and
    // outlives replicas: the PENDING run is still queued, and runs now.
    let failed: &[&str] = if e2e::storage::on_postgres() {
        wait_status(&url, "crashed-pending", &["SUCCESS"], WAIT).await;
        &["crashed-running"]
    } else {
        &["crashed-running", "crashed-pending"]
    };
    for id in failed.iter().copied() {
        let run = get_run(&url, id).await;
        assert_eq!(run["status"], "FAILURE", "{run}");
        assert_eq!(run["error"], "interrupted by restart");
        assert!(run["finishedAt"].is_string());
        let lines = wait_logs(&stack.log_url(), id, WAIT, |l| !l.is_empty()).await;
        let summary = log_summary(&lines);
        assert_eq!(summary.len(), 1, "{summary:?}");
        assert_eq!(summary[0].0, "ERROR");
        assert!(
            summary[0].2.contains("interrupted by restart"),
            "{summary:?}"
        );
    }
    assert_eq!(get_run(&url, "finished-before").await["status"], "SUCCESS");
    let resp = gql(
        &url,
        "{ pipelines(filter: { statuses: [PENDING, RUNNING] }) { total } }",
        json!({}),
    )
    .await;
    assert_eq!(data(&resp)["pipelines"]["total"], 0);
    service.stop().await;

    // A second restart changes nothing and logs nothing twice.
    let service = start_pipeline(&stack, &database, 1).await;
    assert_eq!(
        get_run(&service.url(), "crashed-running").await["error"],
        "interrupted by restart"
    );
    service.stop().await;
    assert_eq!(run_logs(&stack.log_url(), "crashed-running").await.len(), 1);
    stack.stop().await;
}

#[tokio::test]
async fn stopping_the_service_fails_its_live_runs() {
    let stack = Subgraphs::start_without_pipeline().await;
    let (text_in, text_out) = text_datasets(&stack.dataset_url(), Some("abc")).await;
    let database = stack.database("stopped-pipeline.sqlite");
    let service = start_pipeline(&stack, &database, 1).await;
    let url = service.url();
    let slow = json!([{ "name": "duration", "value": "60" }]);
    let running = create_run(
        &url,
        "example00",
        &text_in,
        &text_out,
        slow.clone(),
        json!(null),
    )
    .await;
    let pending = create_run(&url, "example00", &text_in, &text_out, slow, json!(null)).await;
    let (running, pending) = (
        running["id"].as_str().unwrap(),
        pending["id"].as_str().unwrap(),
    );
    wait_status(&url, running, &["RUNNING"], WAIT).await;
    assert_eq!(get_run(&url, pending).await["status"], "PENDING");

    let started = std::time::Instant::now();
    service.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stop took {:?}",
        started.elapsed()
    );

    let service = start_pipeline(&stack, &database, 1).await;
    // Alone on SQLite, queued runs would wait for a process that is gone:
    // they fail too. On Postgres they stay queued for the other replicas
    // (here: the restarted one).
    let interrupted: &[&str] = if e2e::storage::on_postgres() {
        let queued = get_run(&service.url(), pending).await;
        assert!(
            ["PENDING", "RUNNING"].contains(&queued["status"].as_str().unwrap_or("")),
            "{queued}"
        );
        let resp = gql(
            &service.url(),
            "mutation($id: ID!) { cancelPipeline(id: $id) { status } }",
            json!({ "id": pending }),
        )
        .await;
        assert_eq!(data(&resp)["cancelPipeline"]["status"], "CANCELLED");
        &[running]
    } else {
        &[running, pending]
    };
    for id in interrupted.iter().copied() {
        let run = get_run(&service.url(), id).await;
        assert_eq!(run["status"], "FAILURE");
        assert!(
            run["error"]
                .as_str()
                .unwrap()
                .starts_with("interrupted by shutdown"),
            "{run}"
        );
        // the stopping service delivered the line saying so before it went away
        let lines = run_logs(&stack.log_url(), id).await;
        let last = log_summary(&lines).pop().unwrap();
        assert_eq!(last.0, "ERROR");
        assert!(
            last.2.starts_with("run failed: interrupted by shutdown"),
            "{last:?}"
        );
    }
    service.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn a_cancelled_pending_run_never_starts() {
    let (stack, url, a, b) = one_worker_two_slow_runs().await;
    let (a, b) = (a.as_str(), b.as_str());
    // a cancelled PENDING run never starts
    let resp = gql(
        &url,
        "mutation($id: ID!) { cancelPipeline(id: $id) { status startedAt } }",
        json!({ "id": b }),
    )
    .await;
    assert_eq!(
        data(&resp)["cancelPipeline"],
        json!({ "status": "CANCELLED", "startedAt": null })
    );
    let resp = gql(
        &url,
        "mutation($id: ID!) { cancelPipeline(id: $id) { status } }",
        json!({ "id": a }),
    )
    .await;
    assert_eq!(data(&resp)["cancelPipeline"]["status"], "CANCELLED");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(get_run(&url, b).await["startedAt"].is_null());
    stack.stop().await;
}
