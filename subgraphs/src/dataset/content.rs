//! Dataset content: one object per dataset, keyed by the dataset's UUID
//! (never by anything a client chose), in a directory (`data_dir`) or any
//! object store (`content_url`, e.g. S3), served and replaced through signed
//! URLs: `GET /content/{id}` and `PUT /content/{id}`.
//!
//! An upload replaces the object in one put (a local file is written aside
//! and renamed; an S3 PUT is atomic): readers see the old content or the
//! new, never a part. Replicas share content by sharing the store.

use std::{path::Path, sync::Arc};

use axum::{
    body::Body,
    extract::{Path as UrlPath, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::{path::Path as Key, ObjectStore, ObjectStoreExt, PutPayload};

use super::{
    service::DatasetService,
    signing::{Op, SignedParams},
    store::ContentStep,
};
use crate::common::{ServiceError, ServiceResult};

/// Where the content objects are.
pub struct ContentStore {
    store: Arc<dyn ObjectStore>,
}

impl ContentStore {
    /// `content_url` (`s3://bucket/prefix`, `file:///dir`, ...; options such
    /// as credentials and an S3-compatible endpoint from the `AWS_*`
    /// environment variables), else the directory `data_dir`.
    pub fn open(
        data_dir: Option<&Path>,
        content_url: Option<&str>,
        content_options: &std::collections::BTreeMap<String, String>,
    ) -> ServiceResult<ContentStore> {
        let store: Arc<dyn ObjectStore> = match (content_url, data_dir) {
            (Some(url), _) => {
                let parsed = url::Url::parse(url).map_err(|e| {
                    ServiceError::bad_input(format!(
                        "[services.dataset] content_url = \"{url}\" is not a URL ({e}); write e.g. s3://bucket/prefix"
                    ))
                })?;
                let mut options: std::collections::BTreeMap<String, String> = std::env::vars()
                    .filter(|(k, _)| k.starts_with("AWS_"))
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect();
                options.extend(content_options.clone());
                let (store, prefix) = object_store::parse_url_opts(&parsed, options).map_err(|e| {
                    ServiceError::bad_input(format!(
                        "[services.dataset] content_url = \"{url}\": {e}"
                    ))
                })?;
                Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
            }
            (None, Some(dir)) => {
                std::fs::create_dir_all(dir)?;
                Arc::new(
                    object_store::local::LocalFileSystem::new_with_prefix(dir)
                        .map_err(|e| ServiceError::Storage(format!("data_dir {}: {e}", dir.display())))?,
                )
            }
            (None, None) => {
                return Err(ServiceError::bad_input(
                    "[services.dataset] needs `data_dir` (a directory) or `content_url` (an object store) for dataset content",
                ))
            }
        };
        Ok(ContentStore { store })
    }

    /// The object of `id`, or `None` if `id` is not a canonical UUID.
    pub fn key_of(&self, id: &str) -> Option<Key> {
        let uuid = uuid::Uuid::parse_str(id).ok()?;
        let canonical = uuid.hyphenated().to_string();
        (canonical == id).then(|| Key::from(canonical))
    }

    /// A step that replaces `key`'s content (run inside the record's
    /// transaction, on a blocking thread).
    pub fn put_step(&self, key: Key, payload: PutPayload) -> ContentStep {
        let store = self.store.clone();
        Box::new(move || {
            tokio::runtime::Handle::current()
                .block_on(store.put(&key, payload))
                .map(|_| ())
                .map_err(|e| ServiceError::Storage(format!("cannot store content {key}: {e}")))
        })
    }

    /// A step that removes `key`'s content; no content is fine.
    pub fn remove_step(&self, key: Option<Key>) -> ContentStep {
        let store = self.store.clone();
        Box::new(move || {
            let Some(key) = key else { return Ok(()) };
            match tokio::runtime::Handle::current().block_on(store.delete(&key)) {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(ServiceError::Storage(format!(
                    "cannot remove content {key}: {e}"
                ))),
            }
        })
    }
}

/// `GET` and `PUT /content/{id}`.
pub fn routes(service: Arc<DatasetService>, cors: &serve::CorsConfig) -> Router {
    let routes = Router::new()
        .route("/content/{id}", get(read_content).put(write_content))
        .with_state(service);
    match cors.layer(&[]) {
        Some(layer) => routes.layer(layer),
        None => routes,
    }
}

fn plain(status: StatusCode, text: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text.into(),
    )
        .into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "content request failed");
    plain(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error while handling dataset content",
    )
}

fn unknown(id: &str) -> Response {
    plain(StatusCode::NOT_FOUND, format!("no dataset has id `{id}`"))
}

/// Signature, then operation, then expiry: the common gate of both routes.
/// `Some(403 response)` when the request is refused.
fn refused(
    service: &DatasetService,
    id: &str,
    params: &SignedParams,
    used: Op,
) -> Option<Response> {
    let now = chrono::Utc::now().timestamp();
    service
        .signer
        .verify(id, params, used, now)
        .err()
        .map(|refusal| plain(StatusCode::FORBIDDEN, refusal.to_string()))
}

async fn read_content(
    State(service): State<Arc<DatasetService>>,
    UrlPath(id): UrlPath<String>,
    Query(params): Query<SignedParams>,
) -> Response {
    if let Some(refusal) = refused(&service, &id, &params, Op::Read) {
        return refusal;
    }
    let Some(key) = service.content.key_of(&id) else {
        return unknown(&id);
    };
    match service.get(&id).await {
        Ok(Some(_)) => {}
        Ok(None) => return unknown(&id),
        Err(e) => return internal(e),
    }
    let object = match service.content.store.get(&key).await {
        Ok(o) => o,
        Err(object_store::Error::NotFound { .. }) => {
            return plain(
                StatusCode::NOT_FOUND,
                format!(
                "dataset `{id}` has no content yet; upload it with a createDatasetUploadUrl URL"
            ),
            )
        }
        Err(e) => return internal(e),
    };
    let len = object.meta.size;
    // Streams in chunks: content can be as large as max_upload_bytes.
    let stream = object
        .into_stream()
        .map_err(|e| std::io::Error::other(e.to_string()));
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

fn too_large(max: u64) -> Response {
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the upload is larger than {max} bytes, the maximum this service accepts"),
    )
}

async fn write_content(
    State(service): State<Arc<DatasetService>>,
    UrlPath(id): UrlPath<String>,
    Query(params): Query<SignedParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(refusal) = refused(&service, &id, &params, Op::Write) {
        return refusal;
    }
    let max = service.max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return too_large(max);
    }
    let Some(key) = service.content.key_of(&id) else {
        return unknown(&id);
    };
    match service.get(&id).await {
        Ok(Some(_)) => {}
        Ok(None) => return unknown(&id),
        Err(e) => return internal(e),
    }
    // Held until stored (at most max_upload_bytes), then put in one piece.
    // Content-Length may be absent (chunked): count what really arrives.
    let mut size: u64 = 0;
    let mut parts: Vec<Bytes> = Vec::new();
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    format!("the upload was interrupted: {e}; nothing was stored"),
                )
            }
        };
        size += chunk.len() as u64;
        if size > max {
            return too_large(max);
        }
        parts.push(chunk);
    }
    let Ok(size_bytes) = i64::try_from(size) else {
        return too_large(max);
    };
    let publish = service
        .content
        .put_step(key, parts.into_iter().collect::<PutPayload>());
    match service
        .store
        .record_upload(id.clone(), size_bytes, publish)
        .await
    {
        Ok(Some(dataset)) => {
            service.updates.publish(dataset.clone()).await;
            Json(serde_json::json!({ "id": dataset.id, "sizeBytes": dataset.size_bytes }))
                .into_response()
        }
        // Deleted while the body was arriving.
        Ok(None) => unknown(&id),
        Err(e) => internal(e),
    }
}
