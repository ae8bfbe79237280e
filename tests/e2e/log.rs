//! The log subgraph over real HTTP and WebSocket: ingestion and history
//! order, pagination, level filter, validation, idempotent keys, and the live
//! stream over both WebSocket protocols, including a slow reader of a burst.

use std::time::Duration;

use e2e::{
    client::{data, error_codes, error_messages, gql, Next, Protocol, Subscription},
    stack::Subgraphs,
};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);
const LINE_FIELDS: &str = "id pipelineId level message node time";

async fn ingest(url: &str, entries: Value) -> i64 {
    let resp = gql(
        url,
        "mutation($e: [LogEntryInput!]!) { ingestLogs(entries: $e) }",
        json!({ "e": entries }),
    )
    .await;
    data(&resp)["ingestLogs"].as_i64().unwrap()
}

async fn page(url: &str, vars: Value) -> Value {
    let resp = gql(
        url,
        &format!("query($p: ID!, $limit: Int! = 100, $cursor: String, $min: LogLevel) {{ pipelineLogs(pipelineId: $p, limit: $limit, cursor: $cursor, minLevel: $min) {{ items {{ {LINE_FIELDS} }} nextCursor }} }}"),
        vars,
    )
    .await;
    data(&resp)["pipelineLogs"].clone()
}

fn messages(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_string())
        .collect()
}

fn single_error(resp: &Value, code: &str) -> String {
    assert_eq!(error_codes(resp), [code], "{resp}");
    error_messages(resp).remove(0)
}

#[tokio::test]
async fn history_is_in_time_order_with_every_field() {
    let stack = Subgraphs::start_without_pipeline().await;
    let url = stack.log_url();
    let stored = ingest(
        &url,
        json!([
            { "pipelineId": "run-1", "level": "INFO", "message": "third", "node": "reverse", "time": "2020-01-01T10:00:02Z" },
            { "pipelineId": "run-1", "level": "DEBUG", "message": "first", "time": "2020-01-01T10:00:00Z" },
            { "pipelineId": "run-1", "level": "ERROR", "message": "second-a", "time": "2020-01-01T10:00:01Z" },
            { "pipelineId": "run-1", "level": "WARNING", "message": "second-b", "time": "2020-01-01T10:00:01Z" },
            { "pipelineId": "run-2", "level": "INFO", "message": "other run", "time": "2020-01-01T09:00:00Z" },
        ]),
    )
    .await;
    assert_eq!(stored, 5);
    // Without a time: now, so after the lines above.
    assert_eq!(
        ingest(
            &url,
            json!([{ "pipelineId": "run-1", "level": "INFO", "message": "now" }])
        )
        .await,
        1
    );

    let p = page(&url, json!({ "p": "run-1" })).await;
    assert_eq!(
        messages(&p),
        ["first", "second-a", "second-b", "third", "now"]
    );
    assert_eq!(p["nextCursor"], Value::Null);
    let third = &p["items"][3];
    assert_eq!(third["pipelineId"], "run-1");
    assert_eq!(third["level"], "INFO");
    assert_eq!(third["node"], "reverse");
    assert_eq!(third["time"], "2020-01-01T10:00:02.000Z");
    assert_eq!(p["items"][0]["node"], Value::Null);
    let ids: Vec<&str> = p["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique.len(), 5);
    let now = p["items"][4]["time"].as_str().unwrap();
    assert!(
        now > "2020-01-01T10:00:02.000Z" && now.ends_with('Z'),
        "{now}"
    );

    assert_eq!(
        messages(&page(&url, json!({ "p": "run-2" })).await),
        ["other run"]
    );
    let empty = page(&url, json!({ "p": "run-3" })).await;
    assert_eq!(
        (empty["items"].clone(), empty["nextCursor"].clone()),
        (json!([]), Value::Null)
    );
    stack.stop().await;
}

#[tokio::test]
async fn pages_and_min_level() {
    let stack = Subgraphs::start_without_pipeline().await;
    let url = stack.log_url();
    let levels = ["DEBUG", "INFO", "WARNING", "ERROR"];
    let entries: Vec<Value> = (0..25)
        .map(
            |i| json!({ "pipelineId": "p", "level": levels[i % 4], "message": format!("m{i:02}") }),
        )
        .collect();
    assert_eq!(ingest(&url, json!(entries)).await, 25);

    let mut seen = Vec::new();
    let mut cursor = Value::Null;
    let mut pages = 0;
    loop {
        let p = page(&url, json!({ "p": "p", "limit": 10, "cursor": cursor })).await;
        pages += 1;
        seen.extend(messages(&p));
        if p["nextCursor"].is_null() {
            break;
        }
        cursor = p["nextCursor"].clone();
    }
    let expected: Vec<String> = (0..25).map(|i| format!("m{i:02}")).collect();
    assert_eq!((seen, pages), (expected, 3));
    // An exactly full last page ends the walk without an empty page.
    let p = page(&url, json!({ "p": "p", "limit": 25 })).await;
    assert_eq!(p["nextCursor"], Value::Null);

    let warn = page(&url, json!({ "p": "p", "min": "WARNING" })).await;
    let expected: Vec<String> = (0..25)
        .filter(|i| i % 4 >= 2)
        .map(|i| format!("m{i:02}"))
        .collect();
    assert_eq!(messages(&warn), expected);
    let err_page1 = page(&url, json!({ "p": "p", "min": "ERROR", "limit": 3 })).await;
    assert_eq!(messages(&err_page1), ["m03", "m07", "m11"]);
    let err_page2 = page(
        &url,
        json!({ "p": "p", "min": "ERROR", "limit": 3, "cursor": err_page1["nextCursor"] }),
    )
    .await;
    assert_eq!(messages(&err_page2), ["m15", "m19", "m23"]);
    assert_eq!(err_page2["nextCursor"], Value::Null);
    let debug = page(&url, json!({ "p": "p", "min": "DEBUG" })).await;
    assert_eq!(messages(&debug).len(), 25);

    let q = "query($limit: Int!, $cursor: String) { pipelineLogs(pipelineId: \"p\", limit: $limit, cursor: $cursor) { nextCursor } }";
    for limit in [0, -3, 1001] {
        let resp = gql(&url, q, json!({ "limit": limit })).await;
        assert!(single_error(&resp, "BAD_USER_INPUT").contains("between 1 and 1000"));
    }
    let resp = gql(&url, q, json!({ "limit": 1000 })).await;
    data(&resp);
    for cursor in ["nope!", "bm9wZQ"] {
        let resp = gql(&url, q, json!({ "limit": 5, "cursor": cursor })).await;
        assert!(single_error(&resp, "BAD_USER_INPUT").contains("nextCursor"));
    }
    let resp = gql(
        &url,
        "{ pipelineLogs(pipelineId: \"\") { nextCursor } }",
        json!({}),
    )
    .await;
    single_error(&resp, "BAD_USER_INPUT");
    stack.stop().await;
}

#[tokio::test]
async fn invalid_batches_store_nothing() {
    let stack = Subgraphs::start_without_pipeline().await;
    let url = stack.log_url();
    let good = json!({ "pipelineId": "p", "level": "INFO", "message": "fine" });
    let cases = [
        (
            json!({ "pipelineId": "p", "level": "INFO", "message": "x".repeat(10_001) }),
            "`entries[1].message` is 10001 characters long; the maximum is 10000",
        ),
        (
            json!({ "pipelineId": "p", "level": "INFO", "message": "m", "node": "n".repeat(201) }),
            "`entries[1].node` is 201 characters long",
        ),
        (
            json!({ "pipelineId": "", "level": "INFO", "message": "m" }),
            "`entries[1].pipelineId` must not be empty",
        ),
        (
            json!({ "pipelineId": "p".repeat(201), "level": "INFO", "message": "m" }),
            "`entries[1].pipelineId` is 201 characters long",
        ),
        (
            json!({ "pipelineId": "p", "level": "INFO", "message": "m", "key": "" }),
            "`entries[1].key` must not be empty",
        ),
    ];
    for (bad, expected) in cases {
        let resp = gql(
            &url,
            "mutation($e: [LogEntryInput!]!) { ingestLogs(entries: $e) }",
            json!({ "e": [good, bad] }),
        )
        .await;
        let message = single_error(&resp, "BAD_USER_INPUT");
        assert!(
            message.contains(expected),
            "{message:?} should contain {expected:?}"
        );
    }
    let too_many: Vec<Value> = (0..1001).map(|_| good.clone()).collect();
    let resp = gql(
        &url,
        "mutation($e: [LogEntryInput!]!) { ingestLogs(entries: $e) }",
        json!({ "e": too_many }),
    )
    .await;
    assert!(single_error(&resp, "BAD_USER_INPUT").contains("at most 1000"));
    // Bad enum and time values are refused by GraphQL validation.
    let resp = gql(
        &url,
        "mutation { ingestLogs(entries: [{ pipelineId: \"p\", level: LOUD, message: \"m\" }]) }",
        json!({}),
    )
    .await;
    assert!(!error_codes(&resp).is_empty());
    let resp = gql(&url, "mutation { ingestLogs(entries: [{ pipelineId: \"p\", level: INFO, message: \"m\", time: \"yesterday\" }]) }", json!({})).await;
    assert!(error_messages(&resp)[0].contains("RFC 3339"), "{resp}");

    assert_eq!(
        messages(&page(&url, json!({ "p": "p" })).await),
        Vec::<String>::new()
    );
    assert_eq!(ingest(&url, json!([])).await, 0);
    let thousand: Vec<Value> = (0..1000).map(|_| good.clone()).collect();
    assert_eq!(ingest(&url, json!(thousand)).await, 1000);
    stack.stop().await;
}

#[tokio::test]
async fn entries_with_a_stored_key_are_skipped() {
    let stack = Subgraphs::start_without_pipeline().await;
    let url = stack.log_url();
    let line = |key: &str, msg: &str| json!({ "pipelineId": "p", "level": "INFO", "message": msg, "key": key });
    assert_eq!(
        ingest(&url, json!([line("a", "one"), line("b", "two")])).await,
        2
    );
    // A retry of the same batch after a lost response stores nothing.
    assert_eq!(
        ingest(&url, json!([line("a", "one"), line("b", "two")])).await,
        0
    );
    // Partly new: only the new ones count; a key repeated in one batch is stored once.
    assert_eq!(
        ingest(
            &url,
            json!([
                line("b", "two"),
                line("c", "three"),
                line("c", "three again")
            ])
        )
        .await,
        1
    );
    // Lines without keys are never deduplicated.
    let plain = json!({ "pipelineId": "p", "level": "INFO", "message": "no key" });
    assert_eq!(ingest(&url, json!([plain, plain])).await, 2);
    assert_eq!(
        messages(&page(&url, json!({ "p": "p" })).await),
        ["one", "two", "three", "no key", "no key"]
    );
    stack.stop().await;
}

const STREAM: &str = "subscription($p: ID!, $min: LogLevel) { logStream(pipelineId: $p, minLevel: $min) { id pipelineId level message node time } }";

fn stream_message(event: &Value) -> String {
    event["logStream"]["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn stream_replays_stored_lines_then_follows_live_ones() {
    for protocol in Protocol::ALL {
        let stack = Subgraphs::start_without_pipeline().await;
        let url = stack.log_url();
        ingest(
            &url,
            json!([
                { "pipelineId": "p", "level": "INFO", "message": "stored-2", "time": "2020-01-01T00:00:02Z" },
                { "pipelineId": "p", "level": "DEBUG", "message": "stored-debug", "time": "2020-01-01T00:00:01Z" },
                { "pipelineId": "p", "level": "WARNING", "message": "stored-1", "time": "2020-01-01T00:00:01Z" },
                { "pipelineId": "q", "level": "ERROR", "message": "other run" },
            ]),
        )
        .await;
        let mut all =
            Subscription::start(&stack.log_ws_url(), protocol, STREAM, json!({ "p": "p" })).await;
        let mut info = Subscription::start(
            &stack.log_ws_url(),
            protocol,
            STREAM,
            json!({ "p": "p", "min": "INFO" }),
        )
        .await;
        let first: Vec<String> = all.take(3, WAIT).await.iter().map(stream_message).collect();
        assert_eq!(
            first,
            ["stored-debug", "stored-1", "stored-2"],
            "{protocol:?}"
        );
        let first: Vec<String> = info
            .take(2, WAIT)
            .await
            .iter()
            .map(stream_message)
            .collect();
        assert_eq!(first, ["stored-1", "stored-2"], "{protocol:?}");

        ingest(
            &url,
            json!([
                { "pipelineId": "p", "level": "DEBUG", "message": "live-debug", "node": "echo" },
                { "pipelineId": "q", "level": "ERROR", "message": "other run again" },
                { "pipelineId": "p", "level": "ERROR", "message": "live-error" },
            ]),
        )
        .await;
        let live = all.take(2, WAIT).await;
        assert_eq!(
            live.iter().map(stream_message).collect::<Vec<_>>(),
            ["live-debug", "live-error"]
        );
        assert_eq!(live[0]["logStream"]["node"], "echo");
        assert_eq!(live[0]["logStream"]["pipelineId"], "p");
        assert_eq!(
            stream_message(&info.next(WAIT).await.unwrap()),
            "live-error"
        );
        all.assert_silent(Duration::from_millis(200)).await;
        info.assert_silent(Duration::from_millis(50)).await;

        // An invalid pipeline id is an error, not a silent stream.
        let mut bad =
            Subscription::start(&stack.log_ws_url(), protocol, STREAM, json!({ "p": "" })).await;
        match bad.next_message(WAIT).await {
            Next::Error(e) | Next::Errors(e) => {
                assert!(e.to_string().contains("must not be empty"), "{e}")
            }
            other => panic!("expected an error, got {other:?}"),
        }
        all.stop().await;
        info.stop().await;
        bad.stop().await;
        stack.stop().await;
    }
}

#[tokio::test]
async fn a_slow_subscriber_gets_a_burst_complete_and_in_order() {
    let stack = Subgraphs::start_without_pipeline().await;
    let url = stack.log_url();
    ingest(
        &url,
        json!([{ "pipelineId": "p", "level": "INFO", "message": "line-0000" }]),
    )
    .await;
    let mut sub = Subscription::start(
        &stack.log_ws_url(),
        Protocol::GraphqlTransportWs,
        STREAM,
        json!({ "p": "p" }),
    )
    .await;
    assert_eq!(stream_message(&sub.next(WAIT).await.unwrap()), "line-0000");

    // 2,000 more lines in batches, interleaved with another run's, while the
    // subscriber reads nothing.
    for batch in 0..8 {
        let entries: Vec<Value> = (0..250)
            .flat_map(|i| {
                let n = 1 + batch * 250 + i;
                [
                    json!({ "pipelineId": "p", "level": "INFO", "message": format!("line-{n:04}") }),
                    json!({ "pipelineId": "noise", "level": "INFO", "message": "x" }),
                ]
            })
            .collect();
        assert_eq!(ingest(&url, json!(entries)).await, 500);
    }
    // Then reads slowly: a pause every 100 lines.
    for n in 1..=2000 {
        let event = sub
            .next(WAIT)
            .await
            .unwrap_or_else(|| panic!("stream ended at {n}"));
        assert_eq!(stream_message(&event), format!("line-{n:04}"));
        if n % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    sub.assert_silent(Duration::from_millis(200)).await;
    sub.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn the_log_survives_a_restart_on_the_same_port() {
    let mut stack = Subgraphs::start_without_pipeline().await;
    let url = stack.log_url();
    ingest(
        &url,
        json!([{ "pipelineId": "p", "level": "INFO", "message": "before", "key": "k1" }]),
    )
    .await;
    stack.stop_log().await;
    let down = e2e::client::http()
        .post(&url)
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await;
    assert!(
        down.is_err(),
        "the log subgraph still answers after stop_log"
    );
    stack.start_log().await;
    assert_eq!(stack.log_url(), url);
    assert_eq!(
        ingest(
            &url,
            json!([{ "pipelineId": "p", "level": "INFO", "message": "before", "key": "k1" }])
        )
        .await,
        0
    );
    ingest(
        &url,
        json!([{ "pipelineId": "p", "level": "INFO", "message": "after" }]),
    )
    .await;
    assert_eq!(
        messages(&page(&url, json!({ "p": "p" })).await),
        ["before", "after"]
    );
    stack.stop().await;
}

#[tokio::test]
async fn first_pages_of_many_runs_in_one_call() {
    let stack = Subgraphs::start_without_pipeline().await;
    let url = stack.log_url();
    let entries: Vec<Value> = [
        ("a", "INFO", "a1"),
        ("b", "ERROR", "b1"),
        ("a", "DEBUG", "a2"),
        ("a", "ERROR", "a3"),
        ("a", "INFO", "a4"),
    ]
    .iter()
    .map(|(p, level, message)| json!({ "pipelineId": p, "level": level, "message": message }))
    .collect();
    let resp = gql(
        &url,
        "mutation($e: [LogEntryInput!]!) { ingestLogs(entries: $e) }",
        json!({ "e": entries }),
    )
    .await;
    assert_eq!(data(&resp)["ingestLogs"], 5);

    let q = "query($ids: [ID!]!, $min: LogLevel) { pipelineLogPages(pipelineIds: $ids, limit: 2, minLevel: $min) { items { message } nextCursor } }";
    let resp = gql(
        &url,
        q,
        json!({ "ids": ["a", "none", "b", "a"], "min": "INFO" }),
    )
    .await;
    let pages = data(&resp)["pipelineLogPages"].as_array().unwrap().clone();
    let messages = |p: &Value| -> Vec<String> {
        p["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["message"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        pages.len(),
        4,
        "one page per id, in order, repeats included"
    );
    assert_eq!(messages(&pages[0]), ["a1", "a3"]);
    assert_eq!(messages(&pages[1]), Vec::<String>::new());
    assert_eq!(pages[1]["nextCursor"], Value::Null);
    assert_eq!(messages(&pages[2]), ["b1"]);
    assert_eq!(pages[2]["nextCursor"], Value::Null);
    assert_eq!(pages[3], pages[0]);
    // The cursor continues with `pipelineLogs`, as a history page's would.
    let resp = gql(
        &url,
        "query($c: String) { pipelineLogs(pipelineId: \"a\", limit: 2, minLevel: INFO, cursor: $c) { items { message } nextCursor } }",
        json!({ "c": pages[0]["nextCursor"] }),
    )
    .await;
    assert_eq!(messages(&data(&resp)["pipelineLogs"]), ["a4"]);

    let resp = gql(
        &url,
        "{ pipelineLogPages(pipelineIds: [\"a\"], limit: 0) { nextCursor } }",
        json!({}),
    )
    .await;
    assert_eq!(error_codes(&resp), ["BAD_USER_INPUT"]);
    let resp = gql(
        &url,
        "{ pipelineLogPages(pipelineIds: [\"\"]) { nextCursor } }",
        json!({}),
    )
    .await;
    assert_eq!(error_codes(&resp), ["BAD_USER_INPUT"]);
    stack.stop().await;
}
