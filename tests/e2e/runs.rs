//! Pipeline runs end to end over real sockets: content uploaded through a
//! signed URL, a run followed over WebSocket, its output read back, its log
//! read from the log subgraph; failures, cancellation, a log subgraph outage
//! and the worker pool bound.

use std::time::{Duration, Instant};

use e2e::{
    client::{data, gql, Protocol, Subscription},
    pipeline_support::*,
    stack::{Subgraphs, SubgraphsOptions},
};
use serde_json::{json, Value};
use subgraphs::common::Timestamp;

const WAIT: Duration = Duration::from_secs(20);
const EVENTS: &str =
    "subscription($id: ID!) { pipelineEvents(id: $id) { pipelineId status node message timestamp } }";

/// Collects a subscription's events until it completes.
async fn all_events(sub: &mut Subscription) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(ev) = sub.next(WAIT).await {
        out.push(ev["pipelineEvents"].clone());
    }
    out
}

/// `(status, node, message)` of each event.
fn event_summary(events: &[Value]) -> Vec<(String, Option<String>, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["status"].as_str().unwrap().to_string(),
                e["node"].as_str().map(String::from),
                e["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

async fn cancel(url: &str, id: &str) -> Value {
    let resp = gql(
        url,
        "mutation($id: ID!) { cancelPipeline(id: $id) { status finishedAt } }",
        json!({ "id": id }),
    )
    .await;
    data(&resp)["cancelPipeline"].clone()
}

/// A run of example00 that keeps the only worker busy for a minute.
async fn occupy_worker(stack: &Subgraphs) -> String {
    let (text_in, text_out) = text_datasets(&stack.dataset_url(), Some("x")).await;
    let run = create_run(
        &stack.pipeline_url(),
        "example00",
        &text_in,
        &text_out,
        json!([{ "name": "duration", "value": "60" }]),
        json!(null),
    )
    .await;
    let id = run["id"].as_str().unwrap().to_string();
    wait_status(&stack.pipeline_url(), &id, &["RUNNING"], WAIT).await;
    id
}

#[tokio::test]
async fn example01_runs_end_to_end() {
    let stack = Subgraphs::start_with(SubgraphsOptions {
        workers: 1,
        ..Default::default()
    })
    .await;
    let url = stack.pipeline_url();
    let ds = stack.dataset_url();

    let text_in = create_dataset(&ds, "greeting").await;
    upload_text(&ds, &text_in, "hello world").await;
    let text_out = create_dataset(&ds, "shout").await;

    // Keep the run PENDING until both followers are subscribed, so they see every event.
    let blocker = occupy_worker(&stack).await;
    let run = create_run(
        &url,
        "example01",
        &text_in,
        &text_out,
        json!(null),
        json!([{ "key": "case", "value": "e2e" }]),
    )
    .await;
    let id = run["id"].as_str().unwrap().to_string();
    assert_eq!(run["status"], "PENDING");

    let mut subs = Vec::new();
    for protocol in Protocol::ALL {
        let mut sub = Subscription::start(
            &stack.pipeline_ws_url(),
            protocol,
            EVENTS,
            json!({ "id": id }),
        )
        .await;
        let first = sub.next(WAIT).await.expect("current status");
        assert_eq!(first["pipelineEvents"]["status"], "PENDING");
        assert_eq!(first["pipelineEvents"]["pipelineId"], id);
        subs.push(sub);
    }
    cancel(&url, &blocker).await;

    for mut sub in subs {
        let events = event_summary(&all_events(&mut sub).await);
        let shape: Vec<(&str, Option<&str>)> = events
            .iter()
            .map(|(s, n, _)| (s.as_str(), n.as_deref()))
            .collect();
        assert_eq!(
            shape,
            [
                ("RUNNING", None),
                ("RUNNING", Some("uppercase")),
                ("RUNNING", Some("uppercase")),
                ("RUNNING", Some("reverse")),
                ("RUNNING", Some("reverse")),
                ("RUNNING", Some("append_timestamp")),
                ("RUNNING", Some("append_timestamp")),
                ("SUCCESS", None),
            ],
            "{events:#?}"
        );
        assert_eq!(events[1].2, "node uppercase started");
        assert!(
            events[2].2.starts_with("node uppercase finished in "),
            "{events:?}"
        );
        sub.stop().await;
    }

    let run = get_run(&url, &id).await;
    assert_eq!(run["status"], "SUCCESS");
    let (status, text) = read_text(&ds, &text_out).await;
    assert_eq!(status, 200);
    let (body, stamp) = text
        .rsplit_once(' ')
        .unwrap_or_else(|| panic!("no timestamp in {text:?}"));
    assert_eq!(body, "DLROW OLLEH");
    let stamp = Timestamp::parse(stamp).unwrap();
    let started = Timestamp::parse(run["startedAt"].as_str().unwrap()).unwrap();
    let finished = Timestamp::parse(run["finishedAt"].as_str().unwrap()).unwrap();
    assert!(
        started <= stamp && stamp <= finished,
        "{started:?} {stamp:?} {finished:?}"
    );
    // the input is untouched
    assert_eq!(
        read_text(&ds, &text_in).await,
        (200, "hello world".to_string())
    );

    let lines = wait_logs(&stack.log_url(), &id, WAIT, |l| l.len() >= 9).await;
    assert_example01_log(&lines, &id);
    stack.stop().await;
}

#[tokio::test]
async fn a_run_without_input_content_fails_with_an_error_log() {
    let stack = Subgraphs::start().await;
    let url = stack.pipeline_url();
    let (text_in, text_out) = text_datasets(&stack.dataset_url(), None).await;
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
    let run = wait_status(&url, id, &["FAILURE", "SUCCESS"], WAIT).await;
    assert_eq!(run["status"], "FAILURE");
    let error = run["error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "node uppercase failed: input `text_in` (dataset {text_in}) has no content yet"
        )),
        "{error}"
    );
    assert!(run["finishedAt"].is_string());
    assert_eq!(read_text(&stack.dataset_url(), &text_out).await.0, 404);

    let lines = wait_logs(&stack.log_url(), id, WAIT, |l| {
        l.iter().filter(|l| l["level"] == "ERROR").count() >= 2
    })
    .await;
    let summary = log_summary(&lines);
    let errors: Vec<_> = summary
        .iter()
        .filter(|(level, ..)| level == "ERROR")
        .collect();
    assert_eq!(errors[0].1.as_deref(), Some("uppercase"), "{summary:#?}");
    assert!(errors[0].2.contains("has no content yet"), "{summary:#?}");
    assert_eq!(errors[1].1, None);
    assert!(
        errors[1].2.starts_with("run failed: node uppercase failed"),
        "{summary:#?}"
    );
    assert_eq!(
        summary.last().unwrap(),
        errors[1],
        "the failure is the last line"
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_long_run_is_cancelled_quickly() {
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
    let id = run["id"].as_str().unwrap().to_string();
    let mut sub = Subscription::start(
        &stack.pipeline_ws_url(),
        Protocol::GraphqlTransportWs,
        EVENTS,
        json!({ "id": id }),
    )
    .await;
    // wait until it runs (the echo node starts right away and waits)
    loop {
        let ev = sub.next(WAIT).await.expect("events before cancel");
        if ev["pipelineEvents"]["status"] == "RUNNING" {
            break;
        }
    }
    let started = Instant::now();
    let cancelled = cancel(&url, &id).await;
    assert_eq!(cancelled["status"], "CANCELLED");
    let events = event_summary(&all_events(&mut sub).await);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        events.last().map(|e| e.0.as_str()),
        Some("CANCELLED"),
        "{events:?}"
    );
    sub.stop().await;

    let run = get_run(&url, &id).await;
    assert_eq!(run["status"], "CANCELLED");
    // the wait was interrupted: nothing was written
    assert_eq!(read_text(&stack.dataset_url(), &text_out).await.0, 404);
    let lines = wait_logs(&stack.log_url(), &id, WAIT, |l| {
        l.last()
            .is_some_and(|l| l["message"] == "run cancelled by cancelPipeline")
    })
    .await;
    assert!(lines.iter().all(|l| l["level"] == "INFO"));
    // The worker stays quiet after the cancellation: nothing is logged
    // after that line. (A line written before it may still arrive: on
    // shared storage the outbox ships in batches, and the history is in
    // time order.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = run_logs(&stack.log_url(), &id).await;
    assert!(later.len() >= lines.len(), "{later:?}");
    assert_eq!(
        later.last().map(|l| &l["message"]),
        Some(&json!("run cancelled by cancelPipeline")),
        "{later:?}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn logs_survive_a_log_subgraph_outage() {
    let mut stack = Subgraphs::start().await;
    let url = stack.pipeline_url();
    let (text_in, text_out) = text_datasets(&stack.dataset_url(), Some("hello")).await;
    stack.stop_log().await;
    let run = create_run(
        &url,
        "example01",
        &text_in,
        &text_out,
        json!(null),
        json!(null),
    )
    .await;
    let id = run["id"].as_str().unwrap().to_string();
    wait_status(&url, &id, &["SUCCESS"], WAIT).await;
    stack.start_log().await;
    let lines = wait_logs(&stack.log_url(), &id, WAIT, |l| l.len() >= 9).await;
    assert_example01_log(&lines, &id);
    // once: nothing more arrives
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(run_logs(&stack.log_url(), &id).await.len(), 9);
    stack.stop().await;
}

#[tokio::test]
async fn log_buffer_overflow_drops_the_oldest_and_says_so() {
    let mut stack = Subgraphs::start_with(SubgraphsOptions {
        log_buffer: 4,
        ..Default::default()
    })
    .await;
    let url = stack.pipeline_url();
    let (text_in, text_out) = text_datasets(&stack.dataset_url(), Some("hello")).await;
    stack.stop_log().await;
    let run = create_run(
        &url,
        "example01",
        &text_in,
        &text_out,
        json!(null),
        json!(null),
    )
    .await;
    let id = run["id"].as_str().unwrap().to_string();
    wait_status(&url, &id, &["SUCCESS"], WAIT).await;
    stack.start_log().await;
    let lines = wait_logs(&stack.log_url(), &id, WAIT, |l| {
        l.iter().any(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("run succeeded"))
        })
    })
    .await;
    let summary = log_summary(&lines);
    let (warnings, kept): (Vec<_>, Vec<_>) =
        summary.iter().partition(|(level, ..)| level == "WARNING");
    // 9 lines, 4 kept: 5 dropped, reported in one or more WARNING lines
    let dropped: u64 = warnings
        .iter()
        .map(|(_, _, m)| {
            assert!(m.contains("were dropped"), "{m}");
            m.split(' ').next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(dropped, 5, "{summary:#?}");
    let kept: Vec<&str> = kept.iter().map(|(_, _, m)| m.as_str()).collect();
    assert_eq!(kept.len(), 4, "{summary:#?}");
    assert!(kept[0].starts_with("node reverse finished in "), "{kept:?}");
    assert!(kept[3].starts_with("run succeeded"), "{kept:?}");
    stack.stop().await;
}

#[tokio::test]
async fn the_worker_pool_bounds_concurrent_runs() {
    let (stack, url, first, second) = one_worker_two_slow_runs().await;
    let (first, second) = (first.as_str(), second.as_str());
    for _ in 0..5 {
        assert_eq!(get_run(&url, second).await["status"], "PENDING");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resp = gql(
        &url,
        "{ pipelines(filter: { statuses: [RUNNING] }) { total } }",
        json!({}),
    )
    .await;
    assert_eq!(data(&resp)["pipelines"]["total"], 1);
    // the freed worker takes the next run
    cancel(&url, first).await;
    let run = wait_status(&url, second, &["RUNNING"], WAIT).await;
    assert!(run["startedAt"].is_string());
    cancel(&url, second).await;
    stack.stop().await;
}
