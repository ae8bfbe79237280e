//! A real browser (Debian's Chromium, headless) calls the gateway, and
//! uploads to a signed URL of the dataset service, from pages of other
//! origins: the allowed origin gets through after the preflight, any other
//! origin is blocked by the browser itself.

use std::{process::Command, sync::OnceLock, time::Duration};

use axum::{response::Html, routing::get, Router};
use e2e::{platform::Platform, stack::SubgraphsOptions};
use serde_json::Value;
use tokio::net::TcpListener;

/// Installs Chromium when missing (once per test process); its path.
fn chromium() -> &'static str {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/ensure-chromium.sh");
        let status = Command::new(script)
            .status()
            .expect("run scripts/ensure-chromium.sh");
        assert!(status.success(), "scripts/ensure-chromium.sh failed");
    });
    "chromium"
}

/// A page that POSTs a query to `gateway` with `Content-Type:
/// application/json` and `Authorization` (so the browser asks first) and
/// writes what came back, or the browser's error, into its body.
fn page(gateway: &str) -> String {
    format!(
        r#"<!doctype html><html><body>waiting<script>
fetch("{gateway}", {{
  method: "POST",
  headers: {{ "content-type": "application/json", "authorization": "Bearer browser" }},
  body: JSON.stringify({{ query: "{{ pipelineTemplates {{ name }} }}" }}),
}})
  .then(r => r.json().then(body => ({{ status: r.status, body }})))
  .catch(e => ({{ error: String(e) }}))
  .then(out => {{ document.body.textContent = JSON.stringify(out); }});
</script></body></html>"#
    )
}

/// A page that PUTs `text` to a signed upload URL of the dataset service
/// (a PUT: the browser asks first) and writes the status.
fn upload_page(upload_url: &str, text: &str) -> String {
    format!(
        r#"<!doctype html><html><body>waiting<script>
fetch("{upload_url}", {{ method: "PUT", headers: {{ "content-type": "text/plain" }}, body: "{text}" }})
  .then(r => ({{ status: r.status }}))
  .catch(e => ({{ error: String(e) }}))
  .then(out => {{ document.body.textContent = JSON.stringify(out); }});
</script></body></html>"#
    )
}

/// Serves the query page on `/` and the upload page on `/upload`.
fn serve_page(listener: TcpListener, html: String, upload: String) -> tokio::task::JoinHandle<()> {
    let app = Router::new()
        .route("/", get(move || async move { Html(html) }))
        .route("/upload", get(move || async move { Html(upload) }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

/// Opens `url` in headless Chromium and reads the JSON the page wrote.
async fn open_in_browser(url: String) -> Value {
    let browser = chromium();
    let profile = tempfile::tempdir().expect("profile dir");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            // Its scratch directories go with the profile, not into /tmp.
            .env("TMPDIR", profile.path())
            // Virtual time stands still while a fetch is pending.
            .args(["--virtual-time-budget=10000", "--dump-dom", &url])
            .output()
            .expect("run chromium")
    })
    .await
    .expect("chromium task");
    let dom = String::from_utf8_lossy(&out.stdout);
    let body = dom
        .split_once("<body>")
        .and_then(|(_, rest)| rest.split_once("</body>"))
        .map(|(text, _)| {
            text.trim()
                .replace("&amp;", "&")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
        })
        .unwrap_or_default();
    serde_json::from_str(&body).unwrap_or_else(|e| {
        panic!(
            "the page wrote no JSON ({e}): {body}\nchromium stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test]
async fn a_browser_on_an_allowed_origin_reads_the_answer_and_another_origin_is_blocked() {
    let allowed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let other = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin = |l: &TcpListener| format!("http://{}", l.local_addr().expect("addr"));
    let (allowed_origin, other_origin) = (origin(&allowed), origin(&other));
    let platform = Platform::start_with(
        SubgraphsOptions {
            dataset_cors: serve::CorsConfig {
                allow_origins: vec![allowed_origin.clone()],
                allow_methods: vec!["GET".into(), "PUT".into()],
                ..Default::default()
            },
            ..Default::default()
        },
        &format!("[gateway.cors]\nallow_origins = [\"{allowed_origin}\"]\n"),
    )
    .await;
    let gateway = platform.gateway.url();
    let dataset_url = platform.subgraphs.dataset_url();
    let mut uploads = Vec::new();
    for name in ["from-allowed", "from-other"] {
        let id = e2e::pipeline_support::create_dataset(&dataset_url, name).await;
        let resp = e2e::client::gql(
            &dataset_url,
            "mutation($id: ID!) { createDatasetUploadUrl(id: $id) }",
            serde_json::json!({ "id": id }),
        )
        .await;
        let url = e2e::client::data(&resp)["createDatasetUploadUrl"]
            .as_str()
            .expect("upload URL")
            .to_string();
        uploads.push((id, url));
    }
    let pages = [
        serve_page(
            allowed,
            page(&gateway),
            upload_page(&uploads[0].1, "hello from a browser"),
        ),
        serve_page(
            other,
            page(&gateway),
            upload_page(&uploads[1].1, "should not land"),
        ),
    ];

    let got = tokio::time::timeout(
        Duration::from_secs(60),
        open_in_browser(allowed_origin.clone()),
    )
    .await
    .expect("chromium finished");
    assert_eq!(got["status"], 200, "{got}");
    let names = got["body"]["data"]["pipelineTemplates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(names.len(), 2, "{got}");

    let got = tokio::time::timeout(
        Duration::from_secs(60),
        open_in_browser(other_origin.clone()),
    )
    .await
    .expect("chromium finished");
    assert!(
        got["error"]
            .as_str()
            .is_some_and(|e| e.contains("Failed to fetch")),
        "another origin must be blocked by the browser: {got}"
    );

    // Browser uploads to a signed URL: the allowed origin's lands; the
    // other's preflight is refused, so its PUT is never sent.
    let got = open_in_browser(format!("{allowed_origin}/upload")).await;
    assert!(
        got["status"]
            .as_u64()
            .is_some_and(|s| (200..300).contains(&s)),
        "{got}"
    );
    let (status, text) = e2e::pipeline_support::read_text(&dataset_url, &uploads[0].0).await;
    assert_eq!((status, text.as_str()), (200, "hello from a browser"));
    let got = open_in_browser(format!("{other_origin}/upload")).await;
    assert!(
        got["error"]
            .as_str()
            .is_some_and(|e| e.contains("Failed to fetch")),
        "{got}"
    );
    assert_eq!(
        e2e::pipeline_support::read_text(&dataset_url, &uploads[1].0)
            .await
            .0,
        404
    );
    for p in pages {
        p.abort();
    }
    platform.stop().await;
}

/// A ChromeDriver process and one headless Chromium session, spoken to over
/// the W3C WebDriver protocol.
struct Driver {
    base: String,
    session: String,
    http: reqwest::Client,
    process: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Driver {
    async fn start() -> Driver {
        chromium();
        let port = e2e::platform::free_port();
        let profile = tempfile::tempdir().expect("profile dir");
        let process = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            // Chromium's scratch directories go with the profile, not
            // into /tmp, where a killed browser left them behind.
            .env("TMPDIR", profile.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let caps = serde_json::json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                format!("--user-data-dir={}", profile.path().display())
            ] }
        } } });
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let session = loop {
            if let Ok(r) = http
                .post(format!("{base}/session"))
                .json(&caps)
                .send()
                .await
            {
                let v: Value = r.json().await.expect("session JSON");
                match v["value"]["sessionId"].as_str() {
                    Some(id) => break id.to_string(),
                    None => panic!("no WebDriver session: {v}"),
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        Driver {
            base,
            session,
            http,
            process,
            _profile: profile,
        }
    }

    async fn go(&self, url: &str) {
        self.http
            .post(format!("{}/session/{}/url", self.base, self.session))
            .json(&serde_json::json!({ "url": url }))
            .send()
            .await
            .expect("navigate");
    }

    /// Runs `script` in the page; what it returns.
    async fn run(&self, script: &str) -> Value {
        let v: Value = self
            .http
            .post(format!(
                "{}/session/{}/execute/sync",
                self.base, self.session
            ))
            .json(&serde_json::json!({ "script": script, "args": [] }))
            .send()
            .await
            .expect("execute")
            .json()
            .await
            .expect("execute JSON");
        v["value"].clone()
    }

    /// Polls `script` until it returns a string containing `want`.
    async fn wait_for(&self, script: &str, want: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.run(script).await;
            if let Some(text) = got.as_str().filter(|t| t.contains(want)) {
                return text.to_string();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the page never showed `{want}`; last: {got}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Types `query` into GraphiQL's editor, runs it, and waits until the
    /// result pane shows `want`.
    async fn graphiql(&self, query: &str, want: &str) -> String {
        let set = format!(
            "document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue({}); return true;",
            serde_json::to_string(query).expect("JSON string")
        );
        self.run(&set).await;
        // GraphiQL parses the editor's text after a short pause in typing.
        tokio::time::sleep(Duration::from_millis(700)).await;
        self.run("document.querySelector('.graphiql-execute-button').click(); return true;")
            .await;
        self.wait_for(
            "const r = document.querySelector('.result-window .CodeMirror'); return r ? r.CodeMirror.getValue() : '';",
            want,
        )
        .await
    }

    /// A Chrome DevTools command through ChromeDriver.
    async fn cdp(&self, cmd: &str, params: Value) {
        let resp = self
            .http
            .post(format!(
                "{}/session/{}/goog/cdp/execute",
                self.base, self.session
            ))
            .json(&serde_json::json!({ "cmd": cmd, "params": params }))
            .send()
            .await
            .expect("cdp command");
        assert!(resp.status().is_success(), "{cmd}: {}", resp.status());
    }

    async fn stop(mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
        let _ = self.process.kill().await;
    }
}

#[tokio::test]
async fn graphiql_is_served_by_the_gateway_and_runs_a_query_and_a_subscription() {
    let platform = Platform::start().await;
    let base = platform
        .gateway
        .url()
        .trim_end_matches("/graphql")
        .to_string();
    let driver = Driver::start().await;
    // `/` leads to GraphiQL; every asset comes from the gateway itself.
    driver.go(&format!("{base}/")).await;
    driver
        .wait_for(
            "return document.querySelector('.graphiql-execute-button') ? 'ready' : document.body.innerText;",
            "ready",
        )
        .await;
    let sources = driver
        .run("return Array.from(document.querySelectorAll('script[src], link[href]')).map(e => e.src || e.href).join(' ');")
        .await;
    let sources = sources.as_str().unwrap_or("");
    assert!(
        sources.split(' ').all(|s| s.starts_with(&base)),
        "assets from elsewhere: {sources}"
    );

    // A stitched query.
    let shown = driver
        .graphiql("{ pipelineTemplates { name } }", "example01")
        .await;
    assert!(shown.contains("example00"), "{shown}");

    // A subscription over WebSocket, followed to its end.
    let (text_in, text_out) =
        e2e::pipeline_support::text_datasets(&platform.subgraphs.dataset_url(), Some("hi")).await;
    let run = e2e::pipeline_support::create_run(
        &platform.subgraphs.pipeline_url(),
        "example00",
        &text_in,
        &text_out,
        serde_json::json!([{ "name": "duration", "value": "1" }]),
        serde_json::json!(null),
    )
    .await;
    let id = run["id"].as_str().expect("run id");
    let shown = driver
        .graphiql(
            &format!("subscription Follow {{ pipelineEvents(id: \"{id}\") {{ status }} }}"),
            "SUCCESS",
        )
        .await;
    assert!(shown.contains("pipelineEvents"), "{shown}");

    // A script that cannot load: the page says so instead of "Loading…".
    driver.cdp("Network.enable", serde_json::json!({})).await;
    driver
        .cdp(
            "Network.setBlockedURLs",
            serde_json::json!({ "urls": ["*graphiql.min.js"] }),
        )
        .await;
    driver.go(&format!("{base}/graphql")).await;
    let shown = driver
        .wait_for("return document.body.innerText;", "could not load GraphiQL")
        .await;
    assert!(!shown.contains("Loading"), "{shown}");
    driver.stop().await;
    platform.stop().await;
}
