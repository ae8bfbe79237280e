//! The dataset subgraph over real HTTP and WebSocket: every field and
//! mutation with its error cases, pagination with filters and `total`,
//! batch lookup, deletion of content, and the `datasetUpdated` subscription.

use std::time::Duration;

use e2e::{
    client::{data, error_codes, error_messages, gql, http, Next, Protocol, Subscription},
    stack::Subgraphs,
};
use serde_json::{json, Value};

const DATASET_FIELDS: &str =
    "id name type config tags { key value } sizeBytes updatedAt producedByPipelineId";
const WAIT: Duration = Duration::from_secs(5);

async fn create(url: &str, input: Value) -> Value {
    let resp = gql(
        url,
        &format!(
            "mutation($d: DatasetInput!) {{ createDataset(dataset: $d) {{ {DATASET_FIELDS} }} }}"
        ),
        json!({ "d": input }),
    )
    .await;
    data(&resp)["createDataset"].clone()
}

async fn create_named(url: &str, name: &str, ty: &str, tags: Value) -> String {
    create(url, json!({ "name": name, "type": ty, "tags": tags })).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn single_error(resp: &Value, code: &str) -> String {
    assert_eq!(error_codes(resp), [code], "{resp}");
    error_messages(resp).remove(0)
}

async fn upload(url: &str, id: &str, body: &'static [u8]) {
    let resp = gql(
        url,
        "mutation($id: ID!) { createDatasetUploadUrl(id: $id) }",
        json!({ "id": id }),
    )
    .await;
    let put_url = data(&resp)["createDatasetUploadUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let put = http().put(&put_url).body(body).send().await.unwrap();
    assert_eq!(put.status(), 200, "{}", put.text().await.unwrap());
}

#[tokio::test]
async fn create_and_read_every_field() {
    let stack = Subgraphs::start_without_pipeline().await;
    let url = stack.dataset_url();
    let config =
        json!({ "path": "in.txt", "options": { "encoding": "utf-8", "n": [1, 2.5, null, true] } });
    let created = create(
        &url,
        json!({
            "name": "raw text",
            "type": "text.TextDataset",
            "config": config,
            "tags": [{ "key": "team", "value": "nlp" }, { "key": "stage", "value": "raw" }],
        }),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["name"], "raw text");
    assert_eq!(created["type"], "text.TextDataset");
    assert_eq!(created["config"], config);
    assert_eq!(
        created["tags"],
        json!([{ "key": "team", "value": "nlp" }, { "key": "stage", "value": "raw" }])
    );
    assert_eq!(created["sizeBytes"], Value::Null);
    assert_eq!(created["producedByPipelineId"], Value::Null);
    let updated_at = created["updatedAt"].as_str().unwrap();
    assert!(
        updated_at.ends_with('Z') && updated_at.contains('T'),
        "{updated_at}"
    );

    let resp = gql(
        &url,
        &format!("query($id: ID!) {{ dataset(id: $id) {{ {DATASET_FIELDS} }} missing: dataset(id: \"00000000-0000-4000-8000-000000000000\") {{ id }} garbage: dataset(id: \"../etc/passwd\") {{ id }} }}"),
        json!({ "id": id }),
    )
    .await;
    let d = data(&resp);
    assert_eq!(d["dataset"], created);
    assert_eq!(d["missing"], Value::Null);
    assert_eq!(d["garbage"], Value::Null);

    // Without config and tags; explicit null config is "no config".
    let bare = create(&url, json!({ "name": "bare", "type": "t", "config": null })).await;
    assert_eq!(bare["config"], Value::Null);
    assert_eq!(bare["tags"], json!([]));

    let resp = gql(
        &url,
        "mutation($id: ID!) { recordDatasetProducer(id: $id, pipelineId: \"run-42\") { id producedByPipelineId updatedAt } }",
        json!({ "id": id }),
    )
    .await;
    let recorded = &data(&resp)["recordDatasetProducer"];
    assert_eq!(recorded["producedByPipelineId"], "run-42");
    assert!(recorded["updatedAt"].as_str().unwrap() >= updated_at);
    stack.stop().await;
}

#[tokio::test]
async fn invalid_input_is_rejected_and_nothing_stored() {
    let stack = Subgraphs::start_without_pipeline().await;
    let url = stack.dataset_url();
    let mutation = "mutation($d: DatasetInput!) { createDataset(dataset: $d) { id } }";
    let long = "x".repeat(201);
    let big_config = json!({ "blob": "y".repeat(64 * 1024) });
    let many_tags: Vec<Value> = (0..51)
        .map(|i| json!({ "key": format!("k{i}"), "value": "v" }))
        .collect();
    let cases = [
        (
            json!({ "name": "", "type": "t" }),
            "`dataset.name` must not be empty",
        ),
        (
            json!({ "name": "n", "type": "   " }),
            "`dataset.type` must not be empty",
        ),
        (
            json!({ "name": long, "type": "t" }),
            "`dataset.name` is 201 characters long; the maximum is 200",
        ),
        (
            json!({ "name": "n", "type": long }),
            "`dataset.type` is 201 characters long",
        ),
        (
            json!({ "name": "n", "type": "t", "config": big_config }),
            "the maximum is 65536 bytes",
        ),
        (
            json!({ "name": "n", "type": "t", "tags": many_tags }),
            "at most 50 tags",
        ),
        (
            json!({ "name": "n", "type": "t", "tags": [{ "key": "", "value": "v" }] }),
            "`tag.key` must not be empty",
        ),
    ];
    for (input, expected) in cases {
        let resp = gql(&url, mutation, json!({ "d": input })).await;
        let message = single_error(&resp, "BAD_USER_INPUT");
        assert!(
            message.contains(expected),
            "{message:?} should contain {expected:?}"
        );
        assert_eq!(resp["data"], Value::Null, "{resp}");
    }
    // A config just under the limit is fine.
    let fits = json!({ "blob": "y".repeat(64 * 1024 - 20) });
    create(&url, json!({ "name": "n", "type": "t", "config": fits })).await;
    let resp = gql(&url, "{ datasets { total } }", json!({})).await;
    assert_eq!(data(&resp)["datasets"]["total"], 1);
    stack.stop().await;
}

#[tokio::test]
async fn pages_are_newest_first_with_filters_and_total() {
    let stack = Subgraphs::start_without_pipeline().await;
    let url = stack.dataset_url();
    let mut ids = Vec::new();
    for i in 0..7 {
        let team = if i % 2 == 0 { "a" } else { "b" };
        let ty = if i < 5 {
            "text.TextDataset"
        } else {
            "csv.CSVDataset"
        };
        ids.push(
            create_named(
                &url,
                &format!("Sales_{i}"),
                ty,
                json!([{ "key": "team", "value": team }]),
            )
            .await,
        );
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();

    let query = "query($limit: Int!, $cursor: String, $filter: DatasetFilter) { datasets(limit: $limit, cursor: $cursor, filter: $filter) { items { id name } nextCursor total } }";
    let walk = |filter: Value, limit: i64| {
        let url = url.clone();
        async move {
            let mut seen = Vec::new();
            let mut cursor = Value::Null;
            let mut pages = 0;
            loop {
                let resp = gql(
                    &url,
                    query,
                    json!({ "limit": limit, "cursor": cursor, "filter": filter }),
                )
                .await;
                let page = data(&resp)["datasets"].clone();
                pages += 1;
                for item in page["items"].as_array().unwrap() {
                    seen.push(item["id"].as_str().unwrap().to_string());
                }
                let total = page["total"].as_i64().unwrap();
                if page["nextCursor"].is_null() {
                    return (seen, total, pages);
                }
                cursor = page["nextCursor"].clone();
            }
        }
    };

    let (all, total, pages) = walk(Value::Null, 3).await;
    assert_eq!((all.clone(), total, pages), (newest_first.clone(), 7, 3));
    let (all_one_page, _, pages) = walk(Value::Null, 10).await;
    assert_eq!((all_one_page, pages), (newest_first.clone(), 1));
    // Exactly one full page: no cursor pointing at an empty page.
    let (_, _, pages) = walk(Value::Null, 7).await;
    assert_eq!(pages, 1);

    let (texts, total, _) = walk(json!({ "type": "text.TextDataset" }), 2).await;
    assert_eq!(total, 5);
    assert_eq!(texts, ids[..5].iter().rev().cloned().collect::<Vec<_>>());

    let (team_b, total, _) = walk(json!({ "tag": { "key": "team", "value": "b" } }), 2).await;
    assert_eq!(total, 3);
    assert_eq!(team_b, [ids[5].clone(), ids[3].clone(), ids[1].clone()]);

    // Name: substring, case-insensitive.
    let (by_name, total, _) = walk(json!({ "name": "sales_3" }), 5).await;
    assert_eq!((by_name, total), (vec![ids[3].clone()], 1));
    let (by_part, total, _) = walk(json!({ "name": "LES" }), 5).await;
    assert_eq!((by_part, total), (newest_first.clone(), 7));

    let (combined, total, _) = walk(
        json!({ "type": "csv.CSVDataset", "tag": { "key": "team", "value": "a" }, "name": "sales" }),
        5,
    )
    .await;
    assert_eq!((combined, total), (vec![ids[6].clone()], 1));
    let (none, total, pages) = walk(json!({ "type": "nope" }), 5).await;
    assert_eq!((none.len(), total, pages), (0, 0, 1));

    // Default limit is 10.
    let resp = gql(&url, "{ datasets { items { id } } }", json!({})).await;
    assert_eq!(
        data(&resp)["datasets"]["items"].as_array().unwrap().len(),
        7
    );

    for limit in [0, -1, 101] {
        let resp = gql(&url, query, json!({ "limit": limit })).await;
        let message = single_error(&resp, "BAD_USER_INPUT");
        assert!(message.contains("between 1 and 100"), "{message}");
    }
    for cursor in ["garbage!", "bm9wZQ", ""] {
        let resp = gql(&url, query, json!({ "limit": 3, "cursor": cursor })).await;
        let message = single_error(&resp, "BAD_USER_INPUT");
        assert!(message.contains("nextCursor"), "{message}");
    }
    let resp = gql(
        &url,
        query,
        json!({ "limit": 3, "filter": { "name": "n".repeat(201) } }),
    )
    .await;
    single_error(&resp, "BAD_USER_INPUT");
    stack.stop().await;
}

#[tokio::test]
async fn datasets_by_ids_keeps_order_and_gives_null_for_unknown() {
    let stack = Subgraphs::start_without_pipeline().await;
    let url = stack.dataset_url();
    let a = create_named(&url, "a", "t", json!([])).await;
    let b = create_named(&url, "b", "t", json!([])).await;
    let unknown = "00000000-0000-4000-8000-000000000000";
    let resp = gql(
        &url,
        "query($ids: [ID!]!) { datasetsByIds(ids: $ids) { id name } }",
        json!({ "ids": [b, unknown, a, "not-a-uuid", b] }),
    )
    .await;
    assert_eq!(
        data(&resp)["datasetsByIds"],
        json!([
            { "id": b, "name": "b" },
            null,
            { "id": a, "name": "a" },
            null,
            { "id": b, "name": "b" },
        ])
    );
    let resp = gql(&url, "{ datasetsByIds(ids: []) { id } }", json!({})).await;
    assert_eq!(data(&resp)["datasetsByIds"], json!([]));
    let too_many: Vec<String> = (0..10_001).map(|i| i.to_string()).collect();
    let resp = gql(
        &url,
        "query($ids: [ID!]!) { datasetsByIds(ids: $ids) { id } }",
        json!({ "ids": too_many }),
    )
    .await;
    assert!(single_error(&resp, "BAD_USER_INPUT").contains("at most 10000"));
    stack.stop().await;
}

#[tokio::test]
async fn delete_removes_record_and_content() {
    let stack = Subgraphs::start_without_pipeline().await;
    let url = stack.dataset_url();
    let id = create_named(&url, "doomed", "t", json!([])).await;
    let keep = create_named(&url, "kept", "t", json!([])).await;
    upload(&url, &id, b"some content").await;
    upload(&url, &keep, b"other content").await;
    let content_file = stack.dir().join("datasets").join(&id);
    assert!(content_file.exists());
    let resp = gql(
        &url,
        "query($id: ID!) { readDatasetUrl(id: $id) }",
        json!({ "id": id }),
    )
    .await;
    let read_url = data(&resp)["readDatasetUrl"].as_str().unwrap().to_string();

    let resp = gql(
        &url,
        "mutation($id: ID!) { deleteDataset(id: $id) { id name sizeBytes } }",
        json!({ "id": id }),
    )
    .await;
    assert_eq!(
        data(&resp)["deleteDataset"],
        json!({ "id": id, "name": "doomed", "sizeBytes": 12 })
    );
    assert!(!content_file.exists(), "content file should be gone");
    let resp = gql(
        &url,
        "query($id: ID!) { dataset(id: $id) { id } datasets { total } }",
        json!({ "id": id }),
    )
    .await;
    assert_eq!(data(&resp)["dataset"], Value::Null);
    assert_eq!(data(&resp)["datasets"]["total"], 1);
    let get = http().get(&read_url).send().await.unwrap();
    assert_eq!(get.status(), 404);

    let resp = gql(
        &url,
        "mutation($id: ID!) { deleteDataset(id: $id) { id } }",
        json!({ "id": id }),
    )
    .await;
    assert!(single_error(&resp, "NOT_FOUND").contains(&id));
    let resp = gql(
        &url,
        "mutation { deleteDataset(id: \"nope\") { id } }",
        json!({}),
    )
    .await;
    single_error(&resp, "NOT_FOUND");
    assert!(stack.dir().join("datasets").join(&keep).exists());
    stack.stop().await;
}

#[tokio::test]
async fn record_producer_and_signed_url_errors() {
    let stack = Subgraphs::start_without_pipeline().await;
    let url = stack.dataset_url();
    let id = create_named(&url, "d", "t", json!([])).await;
    let unknown = "00000000-0000-4000-8000-000000000000";

    let resp = gql(
        &url,
        "mutation($id: ID!) { recordDatasetProducer(id: $id, pipelineId: \"p\") { id } }",
        json!({ "id": unknown }),
    )
    .await;
    single_error(&resp, "NOT_FOUND");
    let resp = gql(
        &url,
        "mutation($id: ID!) { recordDatasetProducer(id: $id, pipelineId: \"\") { id } }",
        json!({ "id": id }),
    )
    .await;
    assert!(single_error(&resp, "BAD_USER_INPUT").contains("pipelineId"));

    for (op, field) in [
        ("query", "readDatasetUrl"),
        ("mutation", "createDatasetUploadUrl"),
    ] {
        let q = format!("{op}($id: ID!, $e: Int!) {{ {field}(id: $id, expiresInSec: $e) }}");
        for bad in [0, -5, 86_401] {
            let resp = gql(&url, &q, json!({ "id": id, "e": bad })).await;
            let message = single_error(&resp, "BAD_USER_INPUT");
            assert!(message.contains("between 1 and 86400"), "{message}");
        }
        let resp = gql(&url, &q, json!({ "id": unknown, "e": 60 })).await;
        single_error(&resp, "NOT_FOUND");
        let resp = gql(&url, &q, json!({ "id": id, "e": 86_400 })).await;
        let signed = data(&resp)[field].as_str().unwrap();
        assert!(
            signed.starts_with(&format!("{}/content/{id}?op=", stack.dataset_base_url())),
            "{signed}"
        );
        // The default (3600 s) works too.
        let resp = gql(
            &url,
            &format!("{op}($id: ID!) {{ {field}(id: $id) }}"),
            json!({ "id": id }),
        )
        .await;
        data(&resp);
    }
    stack.stop().await;
}

#[tokio::test]
async fn subscription_sees_create_upload_producer_and_delete() {
    let stack = Subgraphs::start_without_pipeline().await;
    let url = stack.dataset_url();
    let query = "subscription($id: ID) { datasetUpdated(id: $id) { id name sizeBytes producedByPipelineId } }";
    let mut all = Subscription::start(
        &stack.dataset_ws_url(),
        Protocol::GraphqlTransportWs,
        query,
        json!({}),
    )
    .await;
    // No event arrives before the subscription is registered; the first
    // create may race it, so create a warm-up dataset until one is seen.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        create_named(&url, "warm-up", "t", json!([])).await;
        match all.next_message(Duration::from_millis(200)).await {
            Next::Data(d) => {
                assert_eq!(d["datasetUpdated"]["name"], "warm-up");
                break;
            }
            Next::Timeout if tokio::time::Instant::now() < deadline => {}
            other => panic!("no subscription event: {other:?}"),
        }
    }
    // Drain possible extra warm-up events.
    while let Next::Data(_) = all.next_message(Duration::from_millis(100)).await {}

    let id = create_named(&url, "watched", "t", json!([])).await;
    let created = all.next(WAIT).await.unwrap();
    assert_eq!(
        created["datasetUpdated"],
        json!({ "id": id, "name": "watched", "sizeBytes": null, "producedByPipelineId": null })
    );

    let mut one = Subscription::start(
        &stack.dataset_ws_url(),
        Protocol::GraphqlWs,
        query,
        json!({ "id": id }),
    )
    .await;
    // Registered once it sees an update of its dataset.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let resp = gql(
            &url,
            "mutation($id: ID!) { recordDatasetProducer(id: $id, pipelineId: \"warm-up\") { id } }",
            json!({ "id": id }),
        )
        .await;
        data(&resp);
        match one.next_message(Duration::from_millis(200)).await {
            Next::Data(d) => {
                assert_eq!(d["datasetUpdated"]["id"], id);
                break;
            }
            Next::Timeout if tokio::time::Instant::now() < deadline => {}
            other => panic!("no subscription event: {other:?}"),
        }
    }
    while let Next::Data(_) = one.next_message(Duration::from_millis(100)).await {}
    while let Next::Data(_) = all.next_message(Duration::from_millis(100)).await {}

    // The filtered subscription does not see other datasets.
    create_named(&url, "other", "t", json!([])).await;
    assert_eq!(
        all.next(WAIT).await.unwrap()["datasetUpdated"]["name"],
        "other"
    );

    upload(&url, &id, b"hello").await;
    for sub in [&mut all, &mut one] {
        let uploaded = sub.next(WAIT).await.unwrap();
        assert_eq!(uploaded["datasetUpdated"]["id"], id);
        assert_eq!(uploaded["datasetUpdated"]["sizeBytes"], 5);
    }
    let resp = gql(
        &url,
        "mutation($id: ID!) { recordDatasetProducer(id: $id, pipelineId: \"run-1\") { id } }",
        json!({ "id": id }),
    )
    .await;
    data(&resp);
    for sub in [&mut all, &mut one] {
        let produced = sub.next(WAIT).await.unwrap();
        assert_eq!(produced["datasetUpdated"]["producedByPipelineId"], "run-1");
    }
    let resp = gql(
        &url,
        "mutation($id: ID!) { deleteDataset(id: $id) { id } }",
        json!({ "id": id }),
    )
    .await;
    data(&resp);
    for sub in [&mut all, &mut one] {
        let deleted = sub.next(WAIT).await.unwrap();
        assert_eq!(deleted["datasetUpdated"]["id"], id);
    }
    one.assert_silent(Duration::from_millis(200)).await;
    all.stop().await;
    one.stop().await;
    stack.stop().await;
}
