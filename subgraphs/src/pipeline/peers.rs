//! The peer subgraphs as the pipeline service sees them: a small
//! GraphQL-over-HTTP client, and the dataset subgraph's operations that runs
//! use (check ids, read and write content through signed URLs, record the producer).

use std::time::Duration;

use serde_json::{json, Value};

/// Why a call to a peer failed.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// No usable answer (refused, timed out, not GraphQL): worth retrying.
    Transport(String),
    /// The peer answered with GraphQL errors; `code` is the first error's `extensions.code`.
    Graphql {
        message: String,
        code: Option<String>,
    },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Transport(m) => f.write_str(m),
            CallError::Graphql {
                message,
                code: Some(code),
            } => write!(f, "{message} ({code})"),
            CallError::Graphql {
                message,
                code: None,
            } => f.write_str(message),
        }
    }
}

/// A GraphQL endpoint of another subgraph.
#[derive(Clone)]
pub struct GraphqlClient {
    pub url: String,
    http: reqwest::Client,
}

impl GraphqlClient {
    pub fn new(url: String, http: reqwest::Client) -> Self {
        GraphqlClient { url, http }
    }

    /// Sends one operation; returns `data` when there are no errors.
    pub async fn call(&self, query: &str, variables: Value) -> Result<Value, CallError> {
        let resp = self
            .http
            .post(&self.url)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .map_err(|e| {
                CallError::Transport(format!("cannot reach {}: {}", self.url, error_chain(&e)))
            })?;
        let status = resp.status();
        let body: Value = match resp.json().await {
            Ok(v) => v,
            Err(e) => {
                return Err(CallError::Transport(format!(
                    "{} answered HTTP {status} without a GraphQL response: {}",
                    self.url,
                    error_chain(&e)
                )))
            }
        };
        if let Some(first) = body
            .get("errors")
            .and_then(|e| e.as_array())
            .and_then(|e| e.first())
        {
            return Err(CallError::Graphql {
                message: first
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("error without a message")
                    .to_string(),
                code: first
                    .pointer("/extensions/code")
                    .and_then(Value::as_str)
                    .map(String::from),
            });
        }
        match body.get("data") {
            Some(d) if !d.is_null() => Ok(d.clone()),
            _ => Err(CallError::Transport(format!(
                "{} answered HTTP {status} without data",
                self.url
            ))),
        }
    }
}

/// reqwest's top-level message hides the cause ("error sending request"); the chain names it.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The HTTP client every peer call of the service shares; it carries the
/// service token, when there is one.
pub fn http_client(service_token: Option<&str>) -> Result<reqwest::Client, String> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = service_token {
        let value = reqwest::header::HeaderValue::from_str(token)
            .map_err(|_| "`service_token` is not a valid header value".to_string())?;
        headers.insert(crate::common::SERVICE_TOKEN_HEADER, value);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e)))
}

/// Why reading a run's input failed.
#[derive(Debug, PartialEq)]
pub enum ReadError {
    /// The dataset exists but nothing was uploaded to it (the content URL answered 404).
    NoContent,
    Failed(String),
}

/// The dataset subgraph's operations that runs need.
#[derive(Clone)]
pub struct DatasetClient {
    gql: GraphqlClient,
    http: reqwest::Client,
}

impl DatasetClient {
    pub fn new(url: String, http: reqwest::Client) -> Self {
        DatasetClient {
            gql: GraphqlClient::new(url, http.clone()),
            http,
        }
    }

    pub fn url(&self) -> &str {
        &self.gql.url
    }

    /// Which of `ids` the dataset subgraph does not know, in one call.
    pub async fn unknown_ids(&self, ids: &[String]) -> Result<Vec<String>, CallError> {
        let data = self
            .gql
            .call(
                "query($ids: [ID!]!) { datasetsByIds(ids: $ids) { id } }",
                json!({ "ids": ids }),
            )
            .await?;
        let found = data
            .get("datasetsByIds")
            .and_then(Value::as_array)
            .filter(|a| a.len() == ids.len())
            .ok_or_else(|| {
                CallError::Transport(format!(
                    "{} answered datasetsByIds with {} instead of one entry per id",
                    self.gql.url, data
                ))
            })?;
        Ok(ids
            .iter()
            .zip(found)
            .filter(|(_, d)| d.is_null())
            .map(|(id, _)| id.clone())
            .collect())
    }

    /// The text content of a dataset, through a short-lived signed URL.
    pub async fn read_text(&self, id: &str) -> Result<String, ReadError> {
        let data = self
            .gql
            .call(
                "query($id: ID!) { readDatasetUrl(id: $id, expiresInSec: 300) }",
                json!({ "id": id }),
            )
            .await
            .map_err(|e| ReadError::Failed(format!("readDatasetUrl failed: {e}")))?;
        let url = data
            .get("readDatasetUrl")
            .and_then(Value::as_str)
            .ok_or_else(|| ReadError::Failed("readDatasetUrl returned no URL".into()))?;
        let resp = self.http.get(url).send().await.map_err(|e| {
            ReadError::Failed(format!("cannot download the content: {}", error_chain(&e)))
        })?;
        match resp.status() {
            s if s.is_success() => {}
            reqwest::StatusCode::NOT_FOUND => return Err(ReadError::NoContent),
            s => {
                return Err(ReadError::Failed(format!(
                    "the content URL answered HTTP {s}"
                )))
            }
        }
        let bytes = resp.bytes().await.map_err(|e| {
            ReadError::Failed(format!("cannot download the content: {}", error_chain(&e)))
        })?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| ReadError::Failed("the content is not UTF-8 text".into()))
    }

    /// Replaces a dataset's content, through a short-lived signed URL.
    pub async fn write_text(&self, id: &str, text: &str) -> Result<(), String> {
        let data = self
            .gql
            .call(
                "mutation($id: ID!) { createDatasetUploadUrl(id: $id, expiresInSec: 300) }",
                json!({ "id": id }),
            )
            .await
            .map_err(|e| format!("createDatasetUploadUrl failed: {e}"))?;
        let url = data
            .get("createDatasetUploadUrl")
            .and_then(Value::as_str)
            .ok_or("createDatasetUploadUrl returned no URL")?;
        let resp = self
            .http
            .put(url)
            .body(text.to_string())
            .send()
            .await
            .map_err(|e| format!("cannot upload the content: {}", error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(format!("the upload URL answered HTTP {}", resp.status()));
        }
        Ok(())
    }

    /// Records on the dataset that this run wrote it.
    pub async fn record_producer(&self, id: &str, pipeline_id: &str) -> Result<(), String> {
        self.gql
            .call(
                "mutation($id: ID!, $p: ID!) { recordDatasetProducer(id: $id, pipelineId: $p) { id } }",
                json!({ "id": id, "p": pipeline_id }),
            )
            .await
            .map(|_| ())
            .map_err(|e| format!("recordDatasetProducer failed: {e}"))
    }
}
