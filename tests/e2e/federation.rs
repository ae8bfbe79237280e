//! Apollo Federation subgraphs through the gateway: the public gateway
//! benchmark's four subgraphs and its fragment-heavy `TestQuery`.

use e2e::{
    federation::{self, expected_response, TEST_QUERY},
    platform::start_gateway,
};
use serde_json::json;
use subgraphs::federation::NAMES;

#[tokio::test]
async fn the_benchmark_test_query_returns_the_full_response() {
    let fed = federation::start(0).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\nhot_reload = false\n\n{}",
            federation::entries(&fed)
        ),
    )
    .expect("write config");
    let gateway = start_gateway(&path).await.expect("gateway starts");
    let before: Vec<u64> = NAMES.iter().map(|n| fed.counters.get(n)).collect();
    let resp = e2e::client::gql(&gateway.url(), TEST_QUERY, json!({})).await;
    let after: Vec<u64> = NAMES.iter().map(|n| fed.counters.get(n)).collect();
    assert_eq!(resp, expected_response());
    let cost: Vec<String> = NAMES
        .iter()
        .zip(after.iter().zip(&before))
        .map(|(n, (a, b))| format!("{n}={}", a - b))
        .collect();
    println!("TestQuery cost in subgraph requests: {}", cost.join(" "));
    gateway.stop().await;
    fed.service.stop().await;
}
