//! Apollo Federation subgraphs through the gateway: the public gateway
//! benchmark's four subgraphs and its fragment-heavy `TestQuery`.

use e2e::{
    federation::{self, expected_response, TEST_QUERY},
    platform::start_gateway,
};
use serde_json::json;
use subgraphs::federation::NAMES;

/// A gateway over the four subgraphs; `gateway` is the `[gateway]` body.
async fn gateway_over(
    fed: &subgraphs::federation::RunningFederation,
    gateway: &str,
    http2: bool,
) -> (gateway::RunningGateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\nhot_reload = false\n{gateway}\n\n{}",
            federation::entries(fed, http2)
        ),
    )
    .expect("write config");
    (start_gateway(&path).await.expect("gateway starts"), dir)
}

#[tokio::test]
async fn the_benchmark_test_query_returns_the_full_response_in_six_subgraph_requests() {
    let fed = federation::start(0).await;
    let (gateway, _dir) = gateway_over(&fed, "", false).await;
    let before: Vec<u64> = NAMES.iter().map(|n| fed.counters.get(n)).collect();
    let resp = e2e::client::gql(&gateway.url(), TEST_QUERY, json!({})).await;
    let after: Vec<u64> = NAMES.iter().map(|n| fed.counters.get(n)).collect();
    assert_eq!(resp, expected_response());
    let cost: Vec<String> = NAMES
        .iter()
        .zip(after.iter().zip(&before))
        .map(|(n, (a, b))| format!("{n}={}", a - b))
        .collect();
    // One request per subgraph per wave, and no wave calls a subgraph
    // that a later one calls anyway: the top products' inventory fields
    // wait for the reviewed products' (Hive Router sends 7).
    assert_eq!(
        cost.join(" "),
        "accounts=2 products=2 inventory=1 reviews=1",
        "TestQuery's subgraph requests"
    );
    gateway.stop().await;
    fed.service.stop().await;
}

#[tokio::test]
async fn the_test_query_over_h2c_subgraph_connections() {
    let fed = federation::start(0).await;
    let (gateway, _dir) = gateway_over(&fed, "", true).await;
    let resp = e2e::client::gql(&gateway.url(), TEST_QUERY, json!({})).await;
    assert_eq!(resp, expected_response());
    gateway.stop().await;
    fed.service.stop().await;
}

/// Requests from `n` clients at once, each with `auth` as its Authorization.
async fn concurrently(url: &str, query: &str, auths: &[String]) -> Vec<serde_json::Value> {
    let client = e2e::client::http();
    futures::future::join_all(auths.iter().map(|auth| {
        let client = client.clone();
        async move {
            client
                .post(url)
                .header("authorization", auth)
                .json(&json!({"query": query}))
                .send()
                .await
                .expect("request")
                .json::<serde_json::Value>()
                .await
                .expect("json")
        }
    }))
    .await
}

#[tokio::test]
async fn identical_subgraph_queries_in_flight_go_out_once() {
    // Slow subgraphs, so that concurrent requests overlap.
    let fed = federation::start(300).await;
    let (gateway, _dir) = gateway_over(&fed, "", false).await;
    let query = "{ topProducts { name } }";
    let same: Vec<String> = (0..8).map(|_| "Bearer same".to_string()).collect();
    let before = fed.counters.get("products");
    let answers = concurrently(&gateway.url(), query, &same).await;
    assert!(answers
        .iter()
        .all(|a| a["data"]["topProducts"][0]["name"] == "Table"));
    assert_eq!(
        fed.counters.get("products") - before,
        1,
        "one request for eight"
    );
    let page = e2e::platform::metrics_page(gateway.addr).await;
    assert_eq!(
        e2e::platform::metric(&page, "subgraph_dedup_hits_total{subgraph=\"products\"}"),
        7
    );
    // The propagated Authorization is part of the key: different users, different requests.
    let users: Vec<String> = (0..4).map(|i| format!("Bearer user-{i}")).collect();
    let before = fed.counters.get("products");
    concurrently(&gateway.url(), query, &users).await;
    assert_eq!(fed.counters.get("products") - before, 4);
    gateway.stop().await;

    // Off by config: every request goes out.
    let (gateway, _dir) = gateway_over(&fed, "dedupe_subgraph_requests = false", false).await;
    let before = fed.counters.get("products");
    concurrently(&gateway.url(), query, &same).await;
    assert_eq!(fed.counters.get("products") - before, 8);
    gateway.stop().await;
    fed.service.stop().await;
}

#[tokio::test]
async fn identical_client_requests_share_one_execution_when_configured() {
    let fed = federation::start(300).await;
    let (gateway, _dir) = gateway_over(&fed, "dedupe_client_requests = true", false).await;
    let same: Vec<String> = (0..6).map(|_| "Bearer same".to_string()).collect();
    let answers = concurrently(&gateway.url(), TEST_QUERY, &same).await;
    assert!(answers.iter().all(|a| *a == expected_response()));
    let page = e2e::platform::metrics_page(gateway.addr).await;
    assert_eq!(e2e::platform::metric(&page, "gateway_dedup_hits_total"), 5);
    gateway.stop().await;
    fed.service.stop().await;
}
