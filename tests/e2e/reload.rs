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
use subgraphs::common::{graphql_router, spawn_service, RunningService};
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

/// The users service on `listener`, and its count of `watchers` calls.
fn users_service(listener: TcpListener) -> (RunningService, Arc<AtomicUsize>) {
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
    let service = spawn_service(
        listener,
        graphql_router(schema, token.clone(), 1 << 20),
        token,
        TaskTracker::new(),
        &Default::default(),
    )
    .expect("start the users service");
    (service, calls)
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
    let (users, calls) = users_service(TcpListener::bind("127.0.0.1:0").await.unwrap());

    let config = p.config_path();
    let original = std::fs::read_to_string(&config).unwrap();
    let mut text = original.clone();
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
    assert_eq!(
        data(&resp)["b"]["items"][2]["watchers"][0]["name"],
        data(&resp)["a"]["items"][2]["watchers"][0]["name"]
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "6 parents, 3 distinct delegations"
    );
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

    // Back to a good config whose stitching lives in a file: editing only that
    // SDL file reloads too (here: the field gets another name).
    let sdl = p.config_dir.path().join("users.graphql");
    std::fs::write(&sdl, "extend type Pipeline { watchers: [User!]! @delegate(path: \"watchers(pipelineId: $fields:id)\") }").unwrap();
    let with_file = text.replace(
        "stitching = \"\"\"\nextend type Pipeline {\n  watchers: [User!]! @delegate(path: \"watchers(pipelineId: $fields:id)\")\n}\n\"\"\"",
        &format!("stitching_files = [\"{}\"]", sdl.display()),
    );
    assert_ne!(with_file, text);
    std::fs::write(&config, &with_file).unwrap();
    eventually(
        Duration::from_secs(10),
        "the config with a stitching file",
        || async {
            let m = p.metrics().await;
            (metric(&m, "gateway_schema_reloads_total{result=\"ok\"}") >= 2).then_some(())
        },
    )
    .await;
    std::fs::write(&sdl, "extend type Pipeline { followers: [User!]! @delegate(path: \"watchers(pipelineId: $fields:id)\") }").unwrap();
    let resp = eventually(Duration::from_secs(10), "the edited SDL file", || async {
        let r = p
            .query("{ pipelines { items { followers { name } } } }", json!({}))
            .await;
        let ok = r.get("data").is_some_and(|d| !d.is_null());
        ok.then_some(r)
    })
    .await;
    assert_eq!(
        data(&resp)["pipelines"]["items"].as_array().unwrap().len(),
        3
    );

    // The config names a new SDL file that is broken: that reload fails, and
    // fixing only the new file (the config untouched) reloads.
    let sdl2 = p.config_dir.path().join("fans.graphql");
    let fans = |path: &str| {
        format!("extend type Pipeline {{ fans: [User!]! @delegate(path: \"{path}(pipelineId: $fields:id)\") }}")
    };
    std::fs::write(&sdl2, fans("nope")).unwrap();
    let failed = |m: &str| metric(m, "gateway_schema_reloads_total{result=\"failed\"}");
    let failed_before = failed(&p.metrics().await);
    let two_files = with_file.replace(
        &format!("stitching_files = [\"{}\"]", sdl.display()),
        &format!(
            "stitching_files = [\"{}\", \"{}\"]",
            sdl.display(),
            sdl2.display()
        ),
    );
    assert_ne!(two_files, with_file);
    std::fs::write(&config, &two_files).unwrap();
    eventually(Duration::from_secs(10), "the failed reload", || async {
        (failed(&p.metrics().await) > failed_before).then_some(())
    })
    .await;
    std::fs::write(&sdl2, fans("watchers")).unwrap();
    let resp = eventually(
        Duration::from_secs(10),
        "the fixed new SDL file",
        || async {
            let r = p
                .query("{ pipelines { items { fans { name } } } }", json!({}))
                .await;
            r.get("data").is_some_and(|d| !d.is_null()).then_some(r)
        },
    )
    .await;
    assert_eq!(
        data(&resp)["pipelines"]["items"].as_array().unwrap().len(),
        3
    );

    // The subgraph removed from the config leaves `/metrics` with it.
    assert!(p.metrics().await.contains("subgraph=\"users\""));
    std::fs::write(&config, &original).unwrap();
    eventually(
        Duration::from_secs(10),
        "users gone from /metrics",
        || async { (!p.metrics().await.contains("subgraph=\"users\"")).then_some(()) },
    )
    .await;

    users.stop().await;
    p.stop().await;
}

/// The gateway's process entry (`gateway::cli::run`, what `gateway` runs),
/// built by cargo with this test binary.
/// A config entry for a subgraph that is not up yet: the reload fails, is
/// retried with backoff, and takes effect once the subgraph answers.
#[tokio::test]
async fn a_subgraph_added_before_it_is_up_is_picked_up_when_it_comes_up() {
    let p = Platform::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let config = p.config_path();
    let original = std::fs::read_to_string(&config).unwrap();
    let mut text = original.clone();
    text.push_str(&format!(
        "[[subgraphs]]\nname = \"users\"\nurl = \"http://127.0.0.1:{port}/graphql\"\nhide = [\"Query.watchers\"]\n"
    ));
    std::fs::write(&config, &text).unwrap();
    eventually(Duration::from_secs(10), "the failed reload", || async {
        let m = p.metrics().await;
        (metric(&m, "gateway_schema_reloads_total{result=\"failed\"}") >= 1).then_some(())
    })
    .await;
    let resp = p.query("{ user(id: \"1\") { name } }", json!({})).await;
    assert!(resp["errors"].is_array(), "not served yet: {resp}");

    let (users, _) = users_service(TcpListener::bind(("127.0.0.1", port)).await.unwrap());
    let resp = eventually(Duration::from_secs(20), "the retried reload", || async {
        let r = p.query("{ user(id: \"1\") { name } }", json!({})).await;
        r.get("data").is_some_and(|d| !d.is_null()).then_some(r)
    })
    .await;
    assert_eq!(data(&resp)["user"]["name"], "user-1");
    users.stop().await;
    p.stop().await;
}

fn gateway_binary() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_gateway-under-test"))
}

#[tokio::test]
async fn issue_4_sighup_reloads_the_gateway_process() {
    use std::io::BufRead;

    let subgraphs = e2e::stack::Subgraphs::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let base = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nhot_reload = false\nworker_threads = 1\n\n{}",
        e2e::platform::subgraph_entries(&subgraphs)
    );
    std::fs::write(&config, &base).unwrap();
    let mut child = std::process::Command::new(gateway_binary())
        .arg("--config")
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the gateway binary");
    let stdout = child.stdout.take().unwrap();
    let url = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        lines
            .find_map(|l| {
                l.ok()?
                    .split_whitespace()
                    .find(|w| w.starts_with("http://"))
                    .map(str::to_owned)
            })
            .expect("the gateway prints its URL")
    })
    .await
    .unwrap();

    let calls = Arc::new(AtomicUsize::new(0));
    let schema = Schema::build(Query { calls }, EmptyMutation, EmptySubscription).finish();
    let token = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let users = spawn_service(
        listener,
        graphql_router(schema, token.clone(), 1 << 20),
        token,
        TaskTracker::new(),
        &Default::default(),
    )
    .unwrap();
    std::fs::write(
        &config,
        format!(
            "{base}[[subgraphs]]\nname = \"users\"\nurl = \"{}\"\n",
            users.url()
        ),
    )
    .unwrap();

    // hot_reload is off: nothing changes until SIGHUP.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = e2e::client::gql(&url, "{ user(id: \"1\") { name } }", json!({})).await;
    assert_eq!(
        before["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "{before}"
    );
    let status = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let resp = eventually(Duration::from_secs(10), "the reload on SIGHUP", || async {
        let r = e2e::client::gql(&url, "{ user(id: \"1\") { name } }", json!({})).await;
        let ok = r.get("data").is_some_and(|d| !d.is_null());
        ok.then_some(r)
    })
    .await;
    assert_eq!(data(&resp)["user"]["name"], "user-1");

    // SIGTERM stops it cleanly.
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    users.stop().await;
    subgraphs.stop().await;
}
