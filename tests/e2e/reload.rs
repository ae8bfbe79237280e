//! A fourth subgraph added by editing config.toml while the gateway runs,
//! then a broken config that leaves the last good schema serving.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema, SimpleObject, ID};
use e2e::{
    client::data,
    pipeline_support::{create_run, text_datasets},
    platform::{eventually, metric, Platform},
};
use serde_json::json;
use subgraphs::common::{graphql_router, spawn_service};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

#[derive(SimpleObject, Clone)]
struct User {
    id: ID,
    name: String,
}

struct Query {
    calls: Arc<AtomicUsize>,
}

#[Object]
impl Query {
    async fn user(&self, id: ID) -> Option<User> {
        Some(User {
            name: format!("user-{}", id.as_str()),
            id,
        })
    }

    async fn watchers(&self, pipeline_id: ID) -> Vec<User> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        vec![User {
            id: ID(format!("w-{}", pipeline_id.as_str())),
            name: format!("watcher of {}", pipeline_id.as_str()),
        }]
    }
}

#[tokio::test]
async fn issue_4_a_subgraph_added_by_config_alone() {
    let p = Platform::start().await;
    let (input, output) = text_datasets(&p.subgraphs.dataset_url(), None).await;
    for _ in 0..3 {
        create_run(
            &p.subgraphs.pipeline_url(),
            "example00",
            &input,
            &output,
            json!([]),
            json!([]),
        )
        .await;
    }

    // The users service, written for this test, on an ephemeral port.
    let calls = Arc::new(AtomicUsize::new(0));
    let schema = Schema::build(
        Query {
            calls: calls.clone(),
        },
        EmptyMutation,
        EmptySubscription,
    )
    .finish();
    let token = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let users = spawn_service(
        listener,
        graphql_router(schema, token.clone()),
        token,
        TaskTracker::new(),
    )
    .unwrap();

    let config = p.config_path();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "[[subgraphs]]\nname = \"users\"\nurl = \"{}\"\nstitching = \"\"\"\nextend type Pipeline {{\n  watchers: [User!]! @delegate(path: \"watchers(pipelineId: $fields:id)\")\n}}\n\"\"\"\nhide = [\"Query.watchers\"]\n",
        users.url()
    ));
    std::fs::write(&config, &text).unwrap();

    let q = "{ pipelines { items { id watchers { name } } } }";
    let resp = eventually(Duration::from_secs(10), "the reloaded schema", || async {
        let r = p.query(q, json!({})).await;
        let ok = r.get("data").is_some_and(|d| !d.is_null());
        ok.then_some(r)
    })
    .await;
    let items = data(&resp)["pipelines"]["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(items.len(), 3);
    for it in &items {
        assert_eq!(
            it["watchers"][0]["name"],
            format!("watcher of {}", it["id"].as_str().unwrap())
        );
    }
    // One request to users for the whole list (three aliased fields in it).
    let before = metric(
        &p.metrics().await,
        "subgraph_requests_total{subgraph=\"users\"}",
    );
    calls.store(0, Ordering::SeqCst);
    let resp = p.query(q, json!({})).await;
    assert_eq!(
        data(&resp)["pipelines"]["items"].as_array().unwrap().len(),
        3
    );
    let after = metric(
        &p.metrics().await,
        "subgraph_requests_total{subgraph=\"users\"}",
    );
    assert_eq!(after - before, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // The same parents asked twice in one level: each delegation goes out once.
    calls.store(0, Ordering::SeqCst);
    let twice = "{ a: pipelines { items { watchers { name } } } b: pipelines { items { watchers { name } } } }";
    let resp = p.query(twice, json!({})).await;
    assert_eq!(data(&resp)["b"]["items"][2]["watchers"][0]["name"], data(&resp)["a"]["items"][2]["watchers"][0]["name"]);
    assert_eq!(calls.load(Ordering::SeqCst), 3, "6 parents, 3 distinct delegations");
    let resp = p.query("{ user(id: \"7\") { name } }", json!({})).await;
    assert_eq!(data(&resp)["user"]["name"], "user-7");

    // A broken config: the gateway keeps the last good schema and says why.
    std::fs::write(
        &config,
        format!("{text}\n[[subgraphs]]\nname = \"broken\"\nurl = 12\n"),
    )
    .unwrap();
    eventually(Duration::from_secs(10), "the failed reload", || async {
        let m = p.metrics().await;
        (metric(&m, "gateway_schema_reloads_total{result=\"failed\"}") >= 1).then_some(())
    })
    .await;
    let resp = p.query(q, json!({})).await;
    assert_eq!(
        data(&resp)["pipelines"]["items"].as_array().unwrap().len(),
        3
    );
    let err = p.gateway.reload().await.unwrap_err().to_string();
    assert!(err.contains("config.toml") && err.contains("url"), "{err}");

    users.stop().await;
    p.stop().await;
}
