//! Failure modes and propagation through the gateway: a subgraph that is
//! slow, answers 5xx or garbage, is down at start-up (schema from an SDL
//! file); headers passed on as configured.

use std::time::Duration;

use async_graphql::{Context, EmptyMutation, EmptySubscription, Object, Schema};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::{extract::State, http::HeaderMap, routing::post, Router};
use e2e::{
    client::{data, http},
    platform::{start_gateway, subgraph_entries},
    stack::Subgraphs,
};
use serde_json::{json, Value};
use tokio::net::TcpListener;

struct Probe;

#[Object]
impl Probe {
    /// Answers after `ms` milliseconds.
    async fn slow(&self, ms: i32) -> Option<String> {
        tokio::time::sleep(Duration::from_millis(ms.max(0) as u64)).await;
        Some("late".into())
    }

    /// The headers this subgraph received.
    async fn whoami(&self, ctx: &Context<'_>) -> String {
        let h = ctx.data_unchecked::<HeaderMap>();
        let get = |k: &str| {
            h.get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string()
        };
        format!(
            "{}|{}|{}|{}",
            get("authorization"),
            get("x-forwarded-email"),
            get("x-gateway"),
            get("cookie")
        )
    }
}

type ProbeSchema = Schema<Probe, EmptyMutation, EmptySubscription>;

async fn graphql(
    State(schema): State<ProbeSchema>,
    headers: HeaderMap,
    req: GraphQLRequest,
) -> GraphQLResponse {
    schema.execute(req.into_inner().data(headers)).await.into()
}

/// A real GraphQL service on `/graphql`, and two broken endpoints beside it.
async fn probe() -> (String, tokio::task::JoinHandle<()>) {
    let schema = Schema::new(Probe, EmptyMutation, EmptySubscription);
    let app = Router::new()
        .route("/graphql", post(graphql))
        .route(
            "/status500",
            post(|| async {
                (
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "down for maintenance",
                )
            }),
        )
        .route(
            "/garbage",
            post(|| async { ([("content-type", "application/json")], "{\"data\": [1, 2") }),
        )
        .with_state(schema);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, handle)
}

#[tokio::test]
async fn timeouts_5xx_garbage_and_header_propagation() {
    let subgraphs = Subgraphs::start().await;
    let (base, probe_task) = probe().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.graphql"),
        "type Query { broken: String }",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("garbage.graphql"),
        "type Query { garbage: String }",
    )
    .unwrap();
    let config = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\n\n{}\
         [[subgraphs]]\nname = \"probe\"\nurl = \"{base}/graphql\"\ntimeout_ms = 300\npropagate_headers = [\"Authorization\", \"x-forwarded-email\"]\n[subgraphs.headers]\nx-gateway = \"stitch\"\n\n\
         [[subgraphs]]\nname = \"broken\"\nurl = \"{base}/status500\"\nschema_file = \"broken.graphql\"\n\n\
         [[subgraphs]]\nname = \"garbage\"\nurl = \"{base}/garbage\"\nschema_file = \"garbage.graphql\"\n",
        subgraph_entries(&subgraphs)
    );
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let gw = start_gateway(&path).await.unwrap_or_else(|e| panic!("{e}"));

    // Configured headers are propagated; others (cookie) are not.
    let resp: Value = http()
        .post(gw.url())
        .header("authorization", "Bearer abc")
        .header("x-forwarded-email", "a@example.com")
        .header("cookie", "secret=1")
        .json(&json!({"query": "{ whoami }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(data(&resp)["whoami"], "Bearer abc|a@example.com|stitch|-");

    let resp: Value = e2e::client::gql(
        &gw.url(),
        "{ slow(ms: 2000) broken garbage pipelineTemplates { name } }",
        json!({}),
    )
    .await;
    let d = &resp["data"];
    assert_eq!(
        d["pipelineTemplates"].as_array().unwrap().len(),
        2,
        "the rest still arrives: {resp}"
    );
    assert_eq!(d["slow"], Value::Null);
    assert_eq!(d["broken"], Value::Null);
    assert_eq!(d["garbage"], Value::Null);
    let by_path = |p: &str| {
        resp["errors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == json!([p]))
            .cloned()
            .unwrap_or_else(|| panic!("no error at {p}: {resp}"))
    };
    let e = by_path("slow");
    assert_eq!(e["extensions"]["code"], "SUBGRAPH_TIMEOUT");
    assert_eq!(e["extensions"]["service"], "probe");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("did not answer within 300ms"),
        "{e}"
    );
    assert_eq!(
        by_path("broken")["extensions"]["code"],
        "SUBGRAPH_HTTP_ERROR"
    );
    assert!(by_path("broken")["message"]
        .as_str()
        .unwrap()
        .contains("HTTP 500"));
    assert_eq!(
        by_path("garbage")["extensions"]["code"],
        "SUBGRAPH_MALFORMED_RESPONSE"
    );

    gw.stop().await;
    probe_task.abort();
    subgraphs.stop().await;
}

#[tokio::test]
async fn an_sdl_file_lets_the_gateway_start_while_a_subgraph_is_down() {
    let mut subgraphs = Subgraphs::start().await;
    // The log subgraph's own SDL, saved by introspection, then the service stops.
    let resp = e2e::client::gql(
        &subgraphs.log_url(),
        stitching::schema::introspection::INTROSPECTION_QUERY,
        json!({}),
    )
    .await;
    let sdl = stitching::schema::introspection::sdl_from_introspection(data(&resp)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("log.graphql"), sdl).unwrap();
    subgraphs.stop_log().await;

    let entries = subgraph_entries(&subgraphs);
    let log_entry = entries.find("name = \"log\"").unwrap();
    let entries = format!(
        "{}{}",
        &entries[..log_entry],
        entries[log_entry..].replacen("timeout_ms", "schema_file = \"log.graphql\"\ntimeout_ms", 1)
    );
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!("[gateway]\nlisten = \"127.0.0.1:0\"\nintrospection_attempts = 1\n\n{entries}"),
    )
    .unwrap();
    let gw = start_gateway(&path).await.unwrap_or_else(|e| panic!("{e}"));
    let resp = e2e::client::gql(&gw.url(), "{ pipelineTemplates { name } }", json!({})).await;
    assert_eq!(data(&resp)["pipelineTemplates"][0]["name"], "example00");
    let resp = e2e::client::gql(
        &gw.url(),
        "{ logs(pipelineId: \"x\") { items { message } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        resp["errors"][0]["extensions"]["code"], "SUBGRAPH_UNAVAILABLE",
        "{resp}"
    );

    // Once the log subgraph is back, its fields answer without a restart.
    subgraphs.start_log().await;
    let resp = e2e::client::gql(
        &gw.url(),
        "{ logs(pipelineId: \"x\") { items { message } } }",
        json!({}),
    )
    .await;
    assert_eq!(data(&resp)["logs"]["items"], json!([]));

    // Without the SDL file, the same outage is a clear start-up error.
    subgraphs.stop_log().await;
    let plain = dir.path().join("plain.toml");
    std::fs::write(
        &plain,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\nintrospection_attempts = 1\n\n{}",
            subgraph_entries(&subgraphs)
        ),
    )
    .unwrap();
    let err = match start_gateway(&plain).await {
        Ok(_) => panic!("must not start"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("subgraph `log`") && err.contains("schema_file"),
        "{err}"
    );
    gw.stop().await;
    subgraphs.stop().await;
}
