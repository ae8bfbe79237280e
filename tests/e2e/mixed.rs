//! Three dialects in one gateway: the stitching pipeline platform, the four
//! Federation subgraphs of the benchmark and a Composite Schemas subgraph,
//! added to a running gateway by editing its config alone.

use std::time::Duration;

use e2e::{
    client::data,
    federation::{self, mixed_entries},
    pipeline_support::finished_run,
    platform::{eventually, metric, Platform},
};
use serde_json::{json, Value};
use subgraphs::{
    federation::{inventory::shipping_estimate, products::PRODUCTS},
    ratings::{pipeline_rating, shipping_cost, PRODUCT_RATINGS},
};

const MIXED: &str = r#"{
  me { name pipelines { total items { id name status rating } } }
  topProducts(first: 3) { name rating shippingCost shippingEstimate reviews { author { username } } }
}"#;

async fn requests(p: &Platform) -> Vec<(String, u64)> {
    let page = p.metrics().await;
    [
        "pipeline",
        "dataset",
        "log",
        "accounts",
        "products",
        "inventory",
        "reviews",
        "ratings",
    ]
    .iter()
    .map(|s| {
        let n = metric(
            &page,
            &format!("subgraph_requests_total{{subgraph=\"{s}\"}}"),
        );
        (s.to_string(), n)
    })
    .collect()
}

fn delta(after: &[(String, u64)], before: &[(String, u64)]) -> Vec<String> {
    after
        .iter()
        .zip(before)
        .filter(|(a, b)| a.1 != b.1)
        .map(|(a, b)| format!("{}={}", a.0, a.1 - b.1))
        .collect()
}

/// Requests the ratings subgraph answered as batches.
async fn batched(ratings: &subgraphs::common::RunningService) -> u64 {
    let page = e2e::platform::metrics_page(ratings.addr).await;
    metric(&page, "ratings_requests_total{mode=\"batched\"}")
}

fn check_mixed(resp: &Value, run: &str) {
    let d = data(resp);
    assert_eq!(d["me"]["name"], "Uri Goldshtein", "{resp}");
    assert_eq!(d["me"]["pipelines"]["total"], 1);
    assert_eq!(
        d["me"]["pipelines"]["items"][0],
        json!({"id": run, "name": "example01", "status": "SUCCESS", "rating": pipeline_rating(run)})
    );
    let top = d["topProducts"].as_array().expect("topProducts");
    assert_eq!(top.len(), 3);
    for (p, row) in top.iter().zip(PRODUCTS) {
        let rating = PRODUCT_RATINGS.iter().find(|r| r.0 == row.0).map(|r| r.1);
        assert_eq!(p["name"], row.1);
        assert_eq!(p["rating"], json!(rating));
        assert_eq!(p["shippingCost"], shipping_cost(row.3 as i32));
        assert_eq!(
            p["shippingEstimate"],
            json!(shipping_estimate(Some(row.2), Some(row.3)))
        );
        for r in p["reviews"].as_array().expect("reviews") {
            assert_eq!(r["author"]["username"], "urigo");
        }
    }
    assert!(resp.get("errors").is_none(), "{resp}");
}

#[tokio::test]
async fn three_dialects_in_one_graph_added_by_config_alone() {
    let p = Platform::start().await;
    let owner = json!([{"key": "owner", "value": "urigo"}]);
    let (run, _, _) = finished_run(&p.url(), &p.subgraphs.dataset_url(), owner).await;
    let fed = federation::start(0).await;
    let ratings = federation::start_ratings().await;

    // Hot add: the running gateway picks up the new entries from its config file.
    let config = p.config_path();
    let base = std::fs::read_to_string(&config).expect("config");
    for batching in [true, false] {
        std::fs::write(
            &config,
            format!("{base}\n{}", mixed_entries(&fed, &ratings, batching)),
        )
        .expect("write config");
        let resp = eventually(Duration::from_secs(15), "the mixed schema", || async {
            let r = p.query(MIXED, json!({})).await;
            let ready = r.get("data").is_some_and(|d| !d.is_null())
                && p.gateway
                    .state
                    .engine()
                    .config
                    .config
                    .subgraphs
                    .iter()
                    .any(|s| s.name == "ratings" && s.variable_batching == batching);
            ready.then_some(r)
        })
        .await;
        check_mixed(&resp, &run);

        // Per wave one request per subgraph, every subgraph once: the
        // products' ratings wait a wave for the ratings of the runs the
        // stitched field found, and both lookups go in one request.
        let before = requests(&p).await;
        let batched_before = batched(&ratings).await;
        let resp = p.query(MIXED, json!({})).await;
        check_mixed(&resp, &run);
        let cost = delta(&requests(&p).await, &before);
        // Lookups went out as variable sets exactly when the config says so.
        assert_eq!(
            batched(&ratings).await - batched_before,
            if batching { 1 } else { 0 }
        );
        println!(
            "mixed query (variable batching {batching}): {}",
            cost.join(" ")
        );
        assert_eq!(
            cost,
            [
                "pipeline=1",
                "accounts=1",
                "products=1",
                "inventory=1",
                "reviews=1",
                "ratings=1"
            ],
            "variable batching {batching}"
        );
    }
    // Federation machinery never reaches the public graph.
    let sdl = p.gateway.state.engine().supergraph.sdl();
    for hidden in [
        "_service",
        "_entities",
        "_Any",
        "_Entity",
        "productByUpc",
        "pipelineById",
    ] {
        assert!(!sdl.contains(hidden), "{hidden} in the public graph");
    }
    p.stop().await;
    ratings.stop().await;
    fed.service.stop().await;
}
