//! The gateway binary's commands: `compose` prints the composed schema and
//! `check` every problem, without serving.

use std::process::Command;

use e2e::federation;

fn gateway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gateway-under-test"))
}

#[tokio::test]
async fn compose_prints_the_composed_schema_and_check_says_ok() {
    let fed = federation::start(0).await;
    let ratings = federation::start_ratings().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    let mut entries = federation::mixed_entries(&fed, &ratings, false);
    // `User.pipelines` needs the pipeline subgraph: leave the stitched field out here.
    entries = entries.replace(federation::USER_PIPELINES, "");
    std::fs::write(
        &path,
        format!("[gateway]\nlisten = \"127.0.0.1:0\"\n\n{entries}"),
    )
    .expect("config");

    let path_arg = path.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        gateway()
            .args(["compose", "--config", &path_arg])
            .output()
            .expect("run gateway compose")
    })
    .await
    .expect("join");
    let sdl = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let product = sdl
        .split("type Product {")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .unwrap_or_else(|| panic!("no Product in:\n{sdl}"));
    for field in [
        "upc: String!",
        "name: String",
        "inStock: Boolean",
        "shippingEstimate: Int",
        "reviews: [Review]",
        "rating: Float",
        "shippingCost: Int",
    ] {
        assert!(
            product.contains(field),
            "{field} not in Product:\n{product}"
        );
    }
    for hidden in [
        "_entities",
        "_service",
        "_Any",
        "productByUpc",
        "@key",
        "INFO",
    ] {
        assert!(!sdl.contains(hidden), "{hidden} in:\n{sdl}");
    }

    let path_arg = path.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        gateway()
            .args(["check", &format!("--config={path_arg}")])
            .output()
            .expect("run gateway check")
    })
    .await
    .expect("join");
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("ok: 5 subgraphs compose into"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    ratings.stop().await;
    fed.service.stop().await;
}

#[tokio::test]
async fn check_reports_every_problem_with_its_code_and_place() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("products.graphql"),
        "extend schema @link(url: \"https://specs.apollo.dev/federation/v2.5\", import: [\"@key\"])\ntype Query { top: [Product] }\ntype Product @key(fields: \"sku\") { upc: String! price: Int }\n",
    )
    .expect("sdl");
    std::fs::write(
        dir.path().join("inventory.graphql"),
        "extend schema @link(url: \"https://specs.apollo.dev/federation/v2.5\", import: [\"@key\", \"@requires\"])\ntype Product @key(fields: \"upc\") { upc: String! price: Int estimate: Int @requires(fields: \"price\") }\n",
    )
    .expect("sdl");
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[[subgraphs]]\nname = \"products\"\nurl = \"http://127.0.0.1:9/graphql\"\ndialect = \"federation\"\nschema_file = \"products.graphql\"\n\n[[subgraphs]]\nname = \"inventory\"\nurl = \"http://127.0.0.1:9/graphql\"\ndialect = \"federation\"\nschema_file = \"inventory.graphql\"\n",
    )
    .expect("config");
    let path_arg = path.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        gateway()
            .args(["check", "-c", &path_arg])
            .env("RUST_BACKTRACE", "1")
            .output()
            .expect("run gateway check")
    })
    .await
    .expect("join");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "[KEY_INVALID_FIELDS]",
        "products.graphql:3:",
        "[REQUIRES_FIELDS_MISSING_EXTERNAL]",
        "inventory.graphql:2:",
        "[INVALID_FIELD_SHARING]",
        "`Product.price` is resolved by subgraphs",
    ] {
        assert!(err.contains(needle), "{needle} not in:\n{err}");
    }
    assert!(
        !err.contains("stack backtrace") && !err.contains("panicked"),
        "{err}"
    );
}

/// Runs the dataset service binary on `config` with `env`; its exit status
/// and stderr, or `None` when it was still serving `/health` (then stopped).
async fn dataset_process(
    config: &std::path::Path,
    port: u16,
    env: &[(&str, &str)],
) -> Option<(i32, String)> {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_dataset-under-test"));
    cmd.args(["--config", &config.display().to_string()])
        .env_remove("STITCH_DEV")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn dataset");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            let out = child.wait_with_output().await.expect("output");
            return Some((
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        let health = reqwest::get(format!("http://127.0.0.1:{port}/health")).await;
        if health.is_ok_and(|r| r.status() == 200) {
            let _ = child.kill().await;
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the dataset service neither served nor exited");
}

#[tokio::test]
async fn secrets_come_from_the_environment_and_sample_ones_need_dev_mode() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = e2e::platform::free_port();
    let config = |secret: &str| {
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            format!("[services.dataset]\nlisten = \"127.0.0.1:{port}\"\ndatabase = \"d.sqlite\"\ndata_dir = \"d\"\nsigning_secret = \"{secret}\"\n"),
        )
        .expect("config");
        path
    };
    let from_env = config("${E2E_DATASET_SECRET}");
    let (code, err) = dataset_process(&from_env, port, &[])
        .await
        .expect("refused");
    assert_eq!(code, 1);
    assert!(
        err.contains("E2E_DATASET_SECRET") && err.contains("services.dataset.signing_secret"),
        "{err}"
    );
    assert!(!err.contains("backtrace"), "{err}");
    assert_eq!(
        dataset_process(&from_env, port, &[("E2E_DATASET_SECRET", "from-the-env")]).await,
        None,
        "starts with the secret from the environment"
    );
    let sample = config("change-me-in-production");
    let (code, err) = dataset_process(&sample, port, &[]).await.expect("refused");
    assert_eq!(code, 1);
    assert!(
        err.contains("sample value") && err.contains("STITCH_DEV"),
        "{err}"
    );
    assert_eq!(
        dataset_process(&sample, port, &[("STITCH_DEV", "1")]).await,
        None,
        "dev mode accepts the sample secret"
    );
}

#[tokio::test]
async fn gateway_config_values_come_from_the_environment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[gateway]\nlisten = \"127.0.0.1:0\"\n\n[[subgraphs]]\nname = \"a\"\nurl = \"${E2E_SUBGRAPH_URL}\"\nschema_file = \"a.graphql\"\n",
    )
    .expect("config");
    std::fs::write(dir.path().join("a.graphql"), "type Query { a: String }").expect("sdl");
    let run = |env: Option<&'static str>| {
        let path = path.display().to_string();
        tokio::task::spawn_blocking(move || {
            let mut cmd = gateway();
            cmd.args(["check", "--config", &path]);
            if let Some(url) = env {
                cmd.env("E2E_SUBGRAPH_URL", url);
            }
            cmd.output().expect("run gateway check")
        })
    };
    let out = run(None).await.expect("join");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("E2E_SUBGRAPH_URL") && err.contains("subgraphs.url"),
        "{err}"
    );
    let out = run(Some("http://127.0.0.1:9/graphql")).await.expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn request_ids_are_echoed_or_made_and_mark_every_log_line_of_the_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = e2e::platform::free_port();
    let dead = e2e::pipeline_support::dead_url().await;
    std::fs::write(dir.path().join("a.graphql"), "type Query { a: String }").expect("sdl");
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!("[gateway]\nlisten = \"127.0.0.1:{port}\"\n\n[[subgraphs]]\nname = \"a\"\nurl = \"{dead}\"\nschema_file = \"a.graphql\"\n[subgraphs.retry]\nmax_attempts = 1\n"),
    )
    .expect("config");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gateway-under-test"))
        .args(["--config", &path.display().to_string()])
        .env("LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn gateway");
    let url = format!("http://127.0.0.1:{port}");
    e2e::platform::wait_healthy(port, std::time::Duration::from_secs(20)).await;
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{url}/graphql"))
        .header("x-request-id", "e2e-req-42")
        .json(&serde_json::json!({"query": "{ a }"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.headers()["x-request-id"], "e2e-req-42");
    let made = client
        .get(format!("{url}/health"))
        .send()
        .await
        .expect("GET");
    let id = made.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert_eq!(id.len(), 32, "{id}");
    // The tests' fault hook exists only in the tests' in-process gateways:
    // the binary, built with the whole workspace, answers the operation.
    let fault = e2e::platform::FAULT_OPERATION;
    let resp = client
        .post(format!("{url}/graphql"))
        .json(&serde_json::json!({"query": format!("query {fault} {{ __typename }}"), "operationName": fault}))
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.expect("JSON");
    assert_eq!(body["data"]["__typename"], "Query", "{body}");
    let _ = child.kill().await;
    let out = child.wait_with_output().await.expect("output");
    let logs = String::from_utf8_lossy(&out.stderr);
    let failed: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("subgraph request failed"))
        .collect();
    assert!(!failed.is_empty(), "{logs}");
    for line in failed {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        assert_eq!(v["span"]["id"], "e2e-req-42", "{line}");
    }
}

#[tokio::test]
async fn the_services_take_help_version_and_their_config_and_address_from_the_environment() {
    let bin = env!("CARGO_BIN_EXE_dataset-under-test");
    let out = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .expect("--help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for want in [
        "--config <FILE>",
        "--listen <ADDR>",
        "DATASET_CONFIG",
        "DATASET_LISTEN",
    ] {
        assert!(help.contains(want), "{want} not in:\n{help}");
    }
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .expect("--version");
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));

    // The file says one port; DATASET_LISTEN wins; the file comes from DATASET_CONFIG.
    let dir = tempfile::tempdir().expect("temp dir");
    let free = e2e::platform::free_port;
    let (in_file, from_env) = (free(), free());
    let path = dir.path().join("service.toml");
    std::fs::write(
        &path,
        format!("[services.dataset]\nlisten = \"127.0.0.1:{in_file}\"\ndatabase = \"d.sqlite\"\ndata_dir = \"d\"\nsigning_secret = \"a-real-secret\"\n"),
    )
    .expect("config");
    let mut child = tokio::process::Command::new(bin)
        .env("DATASET_CONFIG", &path)
        .env("DATASET_LISTEN", format!("127.0.0.1:{from_env}"))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    e2e::platform::wait_healthy(from_env, std::time::Duration::from_secs(10)).await;
    let _ = child.kill().await;
}

/// Sends `signal` (`TERM`, `HUP`) to a child process.
fn signal(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().expect("a running child").to_string();
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[tokio::test]
async fn with_no_one_reading_its_output_a_process_still_answers_reloads_and_stops() {
    let dir = tempfile::tempdir().expect("temp dir");
    let free = e2e::platform::free_port;
    let (gw_port, ds_port) = (free(), free());
    std::fs::write(dir.path().join("a.graphql"), "type Query { a: String }").expect("sdl");
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!("[gateway]\nlisten = \"127.0.0.1:{gw_port}\"\nhot_reload = false\n\n[[subgraphs]]\nname = \"a\"\nurl = \"http://127.0.0.1:9/graphql\"\nschema_file = \"a.graphql\"\n[subgraphs.retry]\nmax_attempts = 1\n\n[services.dataset]\nlisten = \"127.0.0.1:{ds_port}\"\ndatabase = \"d.sqlite\"\ndata_dir = \"d\"\nsigning_secret = \"a-real-secret\"\n"),
    )
    .expect("config");
    let spawn = |bin: &str| {
        let mut child = tokio::process::Command::new(bin)
            .args(["--config", &path.display().to_string()])
            // Every request logs: each write meets the closed pipes.
            .env("RUST_LOG", "debug")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn");
        // The readers go away: stdout and stderr are pipes nobody reads.
        drop(child.stdout.take());
        drop(child.stderr.take());
        child
    };
    let mut gateway = spawn(env!("CARGO_BIN_EXE_gateway-under-test"));
    let mut dataset = spawn(env!("CARGO_BIN_EXE_dataset-under-test"));
    for port in [gw_port, ds_port] {
        e2e::platform::wait_healthy(port, std::time::Duration::from_secs(20)).await;
    }
    let client = reqwest::Client::new();
    for _ in 0..20 {
        // The subgraph is down: the gateway logs a warning for each request.
        let resp = client
            .post(format!("http://127.0.0.1:{gw_port}/graphql"))
            .json(&serde_json::json!({"query": "{ a }"}))
            .send()
            .await
            .expect("answered");
        assert_eq!(resp.status(), 200);
        let resp = client
            .post(format!("http://127.0.0.1:{ds_port}/graphql"))
            .json(&serde_json::json!({"query": "{ datasets { total } }"}))
            .send()
            .await
            .expect("answered");
        assert_eq!(resp.status(), 200);
    }
    signal(&gateway, "HUP");
    e2e::platform::eventually(std::time::Duration::from_secs(10), "a reload", || async {
        let page = e2e::platform::metrics_page(format!("127.0.0.1:{gw_port}").parse().ok()?).await;
        (e2e::platform::metric(&page, "gateway_schema_reloads_total{result=\"ok\"}") == 1)
            .then_some(())
    })
    .await;
    for child in [&mut gateway, &mut dataset] {
        signal(child, "TERM");
        let status = tokio::time::timeout(std::time::Duration::from_secs(15), child.wait())
            .await
            .expect("stopped on SIGTERM")
            .expect("status");
        assert!(status.success(), "{status}");
    }
}
