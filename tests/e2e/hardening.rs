//! Hostile requests against the real gateway: every refusal names the limit
//! that fired and costs no subgraph call; validation errors are capped; a
//! batch body is told apart.

use e2e::{
    client::{error_codes, http},
    platform::Platform,
};
use serde_json::{json, Value};

/// `extensions.limit` of each error.
fn limits(resp: &Value) -> Vec<String> {
    resp["errors"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            e.pointer("/extensions/limit")
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn every_limit_names_itself_and_refuses_before_any_subgraph_call() {
    let p = Platform::start_with(
        Default::default(),
        "max_cost = 2000\nmax_directives = 10\nmax_aliases = 100",
    )
    .await;
    // Nested far past the parser's depth: the depth limit, not a token count.
    let deep = format!(
        "{{ {} name {} }}",
        "pipelines { items { ".repeat(30),
        "} } ".repeat(30)
    );
    let resp = p.query(&deep, json!({})).await;
    assert_eq!(error_codes(&resp), ["REQUEST_LIMIT_EXCEEDED"], "{resp}");
    assert_eq!(limits(&resp), ["max_depth"]);
    assert!(resp.to_string().contains("`max_depth`"), "{resp}");

    let resp = p
        .query(
            &format!("{{ {} }}", "pipelineTemplates { name } ".repeat(4_000)),
            json!({}),
        )
        .await;
    assert_eq!(limits(&resp), ["max_tokens"], "{resp}");

    let resp = p
        .query(
            &format!(
                "{{ pipelineTemplates {{ {} }} }}",
                (0..11)
                    .map(|i| format!("n{i}: name @include(if: true)"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            json!({}),
        )
        .await;
    assert_eq!(limits(&resp), ["max_directives"], "{resp}");

    // Cost: the same document passes or not by its variables.
    let q = "query($n: Int) { pipelines(limit: $n) { items { id dataCatalog { dataset { name tags { key } } } } } }";
    let ok = p.query(q, json!({"n": 5})).await;
    assert_eq!(ok.get("errors"), None, "{ok}");
    let requests = p.subgraph_requests("pipeline").await;
    let resp = p.query(q, json!({"n": 1000})).await;
    assert_eq!(limits(&resp), ["max_cost"], "{resp}");
    let e = &resp["errors"][0];
    assert_eq!(e["extensions"]["max"], 2000);
    assert!(e["extensions"]["actual"].as_u64().unwrap() > 2000, "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("may resolve"),
        "{e}"
    );
    assert_eq!(
        p.subgraph_requests("pipeline").await,
        requests,
        "refused before any call"
    );
    p.stop().await;
}

#[tokio::test]
async fn validation_errors_are_capped_at_one_hundred() {
    let p = Platform::start().await;
    // A 15 KB document of unknown fields.
    let q = format!(
        "{{ {} }}",
        (0..2_000)
            .map(|i| format!("f{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let resp = http()
        .post(p.url())
        .json(&json!({"query": q}))
        .send()
        .await
        .expect("POST");
    let text = resp.text().await.expect("body");
    assert!(text.len() < 64 * 1024, "{} bytes", text.len());
    let resp: Value = serde_json::from_str(&text).expect("JSON");
    let errors = resp["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 101);
    assert!(errors[100]["message"]
        .as_str()
        .unwrap()
        .contains("too many validation errors: 2000 found"));
    p.stop().await;
}

#[tokio::test]
async fn a_json_array_body_is_told_batching_is_not_supported() {
    let p = Platform::start().await;
    let resp = http()
        .post(p.url())
        .header("content-type", "application/json")
        .body(r#" [{"query": "{ pipelineTemplates { name } }"}]"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(error_codes(&body), ["BATCHING_NOT_SUPPORTED"]);
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("not supported"));
    p.stop().await;
}
