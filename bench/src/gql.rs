//! A small GraphQL-over-HTTP client for seeding and checks (not the load
//! loop, which avoids parsing answers).

use std::{collections::BTreeMap, time::Duration};

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// Every request carries the services' token (the gateway passes on only
/// the headers its config names, so it never reaches a subgraph through it).
pub fn client(pool: usize) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-service-token",
        reqwest::header::HeaderValue::from_static(crate::stack::SERVICE_TOKEN),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(pool)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()
        .context("cannot build the HTTP client")
}

/// Sends a ready body (as the load loop does) and returns the answer's
/// `data` (keys sorted by `Value`'s map) and its size in bytes.
pub async fn answer(
    client: &reqwest::Client,
    url: &str,
    body: &str,
) -> anyhow::Result<(Value, usize)> {
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .header("authorization", "Bearer bench-check")
        .body(body.to_string())
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let bytes = resp.bytes().await?;
    let v: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{url} answered something that is not JSON"))?;
    if let Some(errors) = v.get("errors") {
        bail!("{url} answered errors: {}", short(errors));
    }
    Ok((v.get("data").cloned().unwrap_or(Value::Null), bytes.len()))
}

/// Sends one operation; returns `data`, or fails on HTTP or GraphQL errors.
pub async fn query(
    client: &reqwest::Client,
    url: &str,
    query: &str,
    variables: Value,
) -> anyhow::Result<Value> {
    let resp = client
        .post(url)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .with_context(|| format!("POST {url}: the answer ({status}) is not JSON"))?;
    if let Some(errors) = body.get("errors").filter(|e| !e.is_null()) {
        let shown: String = errors.to_string().chars().take(600).collect();
        bail!("POST {url} answered errors: {shown}");
    }
    if !status.is_success() {
        bail!("POST {url} answered {status}");
    }
    body.get("data")
        .cloned()
        .with_context(|| format!("POST {url}: no `data` in the answer"))
}

/// The string at `pointer` (JSON pointer) of `v`.
pub fn str_at<'a>(v: &'a Value, pointer: &str) -> anyhow::Result<&'a str> {
    v.pointer(pointer)
        .and_then(|s| s.as_str())
        .with_context(|| format!("no string at {pointer} in {}", short(v)))
}

pub fn short(v: &Value) -> String {
    v.to_string().chars().take(300).collect()
}

/// `subgraph_requests_total{subgraph="..."}` from the gateway's `/metrics`.
pub async fn subgraph_requests(
    client: &reqwest::Client,
    metrics_url: &str,
) -> anyhow::Result<BTreeMap<String, u64>> {
    parse_subgraph_requests(&metrics(client, metrics_url).await?)
}

/// The `subgraph_requests_total` samples of a Prometheus text page.
pub fn parse_subgraph_requests(text: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("subgraph_requests_total{subgraph=\"") {
            if let Some((name, value)) = rest.split_once("\"}") {
                let n: u64 = value
                    .trim()
                    .parse()
                    .with_context(|| format!("bad metrics line `{line}`"))?;
                out.insert(name.to_string(), n);
            }
        }
    }
    Ok(out)
}

/// One unlabelled gauge or counter, e.g. `gateway_subscriptions_active`.
pub async fn metric(
    client: &reqwest::Client,
    metrics_url: &str,
    name: &str,
) -> anyhow::Result<Option<f64>> {
    let text = metrics(client, metrics_url).await?;
    Ok(text.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }))
}

async fn metrics(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let resp = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    if !resp.status().is_success() {
        bail!("GET {url} answered {}", resp.status());
    }
    resp.text().await.with_context(|| format!("GET {url}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_subgraph_request_counters_only() {
        let page = "# TYPE subgraph_requests_total counter\n\
            subgraph_requests_total{subgraph=\"pipeline\"} 12\n\
            subgraph_requests_total{subgraph=\"log\"} 3\n\
            subgraph_errors_total{subgraph=\"log\"} 1\n\
            subgraph_request_duration_seconds_count{subgraph=\"log\"} 3\n";
        let got = parse_subgraph_requests(page).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got["pipeline"], 12);
        assert_eq!(got["log"], 3);
    }

    #[test]
    fn a_garbled_counter_is_an_error() {
        assert!(parse_subgraph_requests("subgraph_requests_total{subgraph=\"x\"} many\n").is_err());
    }
}
