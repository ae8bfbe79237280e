//! Dataset content through signed URLs over real HTTP: round trip, expiry,
//! tampering, wrong operation, size limit, and what the record says after.

use std::time::Duration;

use e2e::{
    client::{data, gql, http},
    stack::{Subgraphs, SubgraphsOptions, SIGNING_SECRET},
};
use serde_json::{json, Value};
use subgraphs::dataset::signing::{Op, UrlSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn create(url: &str) -> String {
    let resp = gql(
        url,
        "mutation { createDataset(dataset: { name: \"content\", type: \"bytes\" }) { id } }",
        json!({}),
    )
    .await;
    data(&resp)["createDataset"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn read_url(url: &str, id: &str, expires_in_sec: i64) -> String {
    let resp = gql(
        url,
        "query($id: ID!, $e: Int!) { readDatasetUrl(id: $id, expiresInSec: $e) }",
        json!({ "id": id, "e": expires_in_sec }),
    )
    .await;
    data(&resp)["readDatasetUrl"].as_str().unwrap().to_string()
}

async fn upload_url(url: &str, id: &str) -> String {
    let resp = gql(
        url,
        "mutation($id: ID!) { createDatasetUploadUrl(id: $id, expiresInSec: 60) }",
        json!({ "id": id }),
    )
    .await;
    data(&resp)["createDatasetUploadUrl"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn record(url: &str, id: &str) -> Value {
    let resp = gql(
        url,
        "query($id: ID!) { dataset(id: $id) { sizeBytes updatedAt } }",
        json!({ "id": id }),
    )
    .await;
    data(&resp)["dataset"].clone()
}

/// `(status, body as text)` of a request.
async fn send(req: reqwest::RequestBuilder) -> (u16, String) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

fn replace_param(url: &str, name: &str, value: &str) -> String {
    let (base, query) = url.split_once('?').unwrap();
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k == name => format!("{k}={value}"),
            _ => p.to_string(),
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

fn param<'a>(url: &'a str, name: &str) -> &'a str {
    url.split_once('?')
        .unwrap()
        .1
        .split('&')
        .find_map(|p| p.strip_prefix(&format!("{name}=")))
        .unwrap()
}

#[tokio::test]
async fn upload_then_download_gives_the_same_bytes() {
    let stack = Subgraphs::start_without_pipeline().await;
    let url = stack.dataset_url();
    let id = create(&url).await;
    let before = record(&url, &id).await;
    assert_eq!(before["sizeBytes"], Value::Null);

    // Never uploaded: 404.
    let (status, body) = send(http().get(read_url(&url, &id, 60).await)).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no content yet"), "{body}");

    // Every byte value, several read chunks long.
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let put_url = upload_url(&url, &id).await;
    let resp = http()
        .put(&put_url)
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer, json!({ "id": id, "sizeBytes": 200_000 }));

    let after = record(&url, &id).await;
    assert_eq!(after["sizeBytes"], 200_000);
    assert!(after["updatedAt"].as_str().unwrap() > before["updatedAt"].as_str().unwrap());

    let resp = http()
        .get(read_url(&url, &id, 60).await)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "200000");
    assert_eq!(resp.bytes().await.unwrap().to_vec(), content);

    // The same upload URL may replace the content until it expires.
    let resp = http().put(&put_url).body("short").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(record(&url, &id).await["sizeBytes"], 5);
    let (status, body) = send(http().get(read_url(&url, &id, 60).await)).await;
    assert_eq!((status, body.as_str()), (200, "short"));

    // An empty upload is content too.
    let resp = http().put(&put_url).body("").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(record(&url, &id).await["sizeBytes"], 0);
    let (status, body) = send(http().get(read_url(&url, &id, 60).await)).await;
    assert_eq!((status, body.as_str()), (200, ""));
    stack.stop().await;
}

#[tokio::test]
async fn expired_urls_are_refused() {
    let stack = Subgraphs::start_without_pipeline().await;
    let url = stack.dataset_url();
    let id = create(&url).await;
    let put = http()
        .put(upload_url(&url, &id).await)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);

    // Validly signed with the service's secret, but in the past.
    let signer = UrlSigner::new(SIGNING_SECRET, &stack.dataset_base_url());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let past = now - 10;
    let (status, body) = send(http().get(signer.url(&id, Op::Read, past))).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("expired"), "{body}");
    let (status, body) = send(http().put(signer.url(&id, Op::Write, past)).body("y")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("expired"), "{body}");
    // The same signer with a future expiry works: the crafted URLs are faithful.
    let (status, _) = send(http().get(signer.url(&id, Op::Read, past + 100))).await;
    assert_eq!(status, 200);

    // A real URL of 1 s stops working soon after.
    let short = read_url(&url, &id, 1).await;
    let (status, _) = send(http().get(&short)).await;
    assert_eq!(status, 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    loop {
        let (status, body) = send(http().get(&short)).await;
        if status == 403 {
            assert!(body.contains("expired"), "{body}");
            break;
        }
        assert_eq!(status, 200);
        assert!(
            tokio::time::Instant::now() < deadline,
            "URL still valid after its expiry"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stack.stop().await;
}

#[tokio::test]
async fn tampered_urls_are_refused() {
    let stack = Subgraphs::start_without_pipeline().await;
    let url = stack.dataset_url();
    let id = create(&url).await;
    let other = create(&url).await;
    for d in [&id, &other] {
        let put = http()
            .put(upload_url(&url, d).await)
            .body("secret")
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 200);
    }
    let good = read_url(&url, &id, 60).await;

    let sig = param(&good, "sig");
    let flipped = format!(
        "{}{}",
        &sig[..sig.len() - 1],
        if sig.ends_with('0') { '1' } else { '0' }
    );
    let expires: i64 = param(&good, "expires").parse().unwrap();
    let tampered = [
        replace_param(&good, "sig", &flipped),
        replace_param(&good, "sig", "not-hex"),
        replace_param(&good, "expires", &(expires + 3600).to_string()),
        replace_param(&good, "op", "write"),
        // Another existing dataset with this dataset's signature.
        good.replace(&id, &other),
        good.split_once("&sig=").unwrap().0.to_string(),
        good.split_once('?').unwrap().0.to_string(),
    ];
    for bad in tampered {
        let (status, body) = send(http().get(&bad)).await;
        assert_eq!(status, 403, "{bad}: {body}");
        assert!(!body.contains("secret"), "{body}");
        assert!(
            body.contains("signature") || body.contains("missing or malformed"),
            "{body}"
        );
    }
    let (status, body) = send(http().get(&good)).await;
    assert_eq!((status, body.as_str()), (200, "secret"));
    stack.stop().await;
}

#[tokio::test]
async fn urls_only_allow_their_operation() {
    let stack = Subgraphs::start_without_pipeline().await;
    let url = stack.dataset_url();
    let id = create(&url).await;
    let read = read_url(&url, &id, 60).await;
    let write = upload_url(&url, &id).await;

    let (status, body) = send(http().put(&read).body("overwrite")).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("signed for read but used for write"),
        "{body}"
    );
    let (status, body) = send(http().get(&write)).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("signed for write but used for read"),
        "{body}"
    );
    assert_eq!(record(&url, &id).await["sizeBytes"], Value::Null);
    stack.stop().await;
}

/// PUT with `Transfer-Encoding: chunked` (no Content-Length) over a raw socket.
async fn put_chunked(addr: &str, path_and_query: &str, chunks: &[Vec<u8>]) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in chunks {
        // The server may answer 413 and close before reading everything.
        if stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .is_err()
            || stream.write_all(chunk).await.is_err()
            || stream.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"))
}

#[tokio::test]
async fn uploads_over_the_limit_are_refused_and_leave_nothing() {
    let stack = Subgraphs::start_with(SubgraphsOptions {
        max_upload_bytes: 1024,
        with_pipeline: false,
        ..Default::default()
    })
    .await;
    let url = stack.dataset_url();
    let id = create(&url).await;
    let put_url = upload_url(&url, &id).await;

    // Declared too large by Content-Length.
    let (status, body) = send(http().put(&put_url).body(vec![7u8; 1025])).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("1024"), "{body}");

    // Not declared: counted while streaming.
    let path_and_query = put_url.strip_prefix(&stack.dataset_base_url()).unwrap();
    let addr = stack
        .dataset_base_url()
        .strip_prefix("http://")
        .unwrap()
        .to_string();
    let chunks: Vec<Vec<u8>> = (0..5).map(|_| vec![1u8; 300]).collect();
    assert_eq!(put_chunked(&addr, path_and_query, &chunks).await, 413);
    assert_eq!(record(&url, &id).await["sizeBytes"], Value::Null);

    // At the limit exactly: fine, chunked too.
    let chunks: Vec<Vec<u8>> = (0..4).map(|_| vec![2u8; 256]).collect();
    assert_eq!(put_chunked(&addr, path_and_query, &chunks).await, 200);
    assert_eq!(record(&url, &id).await["sizeBytes"], 1024);
    let (status, _) = send(http().put(&put_url).body(vec![3u8; 1025])).await;
    assert_eq!(status, 413);
    // A refused upload leaves the previous content in place.
    let resp = http()
        .get(read_url(&url, &id, 60).await)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.bytes().await.unwrap().to_vec(), vec![2u8; 1024]);

    // No temporary files are left behind.
    let names: Vec<String> = std::fs::read_dir(stack.dir().join("datasets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [id]);
    stack.stop().await;
}

#[tokio::test]
async fn urls_of_deleted_datasets_give_404() {
    let stack = Subgraphs::start_without_pipeline().await;
    let url = stack.dataset_url();
    let id = create(&url).await;
    let read = read_url(&url, &id, 60).await;
    let write = upload_url(&url, &id).await;
    let resp = gql(
        &url,
        "mutation($id: ID!) { deleteDataset(id: $id) { id } }",
        json!({ "id": id }),
    )
    .await;
    data(&resp);
    let (status, body) = send(http().get(&read)).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = send(http().put(&write).body("late")).await;
    assert_eq!(status, 404, "{body}");
    assert!(std::fs::read_dir(stack.dir().join("datasets"))
        .unwrap()
        .next()
        .is_none());
    stack.stop().await;
}

#[tokio::test]
async fn a_page_on_an_allowed_origin_may_upload_to_a_signed_url() {
    let stack = Subgraphs::start_with(SubgraphsOptions {
        dataset_cors: serve::CorsConfig {
            allow_origin_regex: vec!["^http://localhost(:[0-9]+)?$".into()],
            allow_methods: vec!["GET".into(), "PUT".into()],
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let url = stack.dataset_url();
    let id = e2e::pipeline_support::create_dataset(&url, "upload").await;
    let resp = e2e::client::gql(
        &url,
        "mutation($id: ID!) { createDatasetUploadUrl(id: $id) }",
        json!({ "id": id }),
    )
    .await;
    let upload = resp["data"]["createDatasetUploadUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let preflight = |origin: &'static str| {
        http()
            .request(reqwest::Method::OPTIONS, &upload)
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
            .send()
    };
    let ok = preflight("http://localhost:5173").await.unwrap();
    assert!(ok.status().is_success(), "{}", ok.status());
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    assert!(ok.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("PUT"));
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    // The upload itself, from that origin, carries the header too.
    let put = http()
        .put(&upload)
        .header("origin", "http://localhost:5173")
        .body("from a page")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    assert_eq!(
        put.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    stack.stop().await;
}
