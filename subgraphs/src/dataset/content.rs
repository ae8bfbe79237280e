//! Dataset content: one file per dataset under `data_dir`, named by the
//! dataset's UUID (never by anything a client chose), served and replaced
//! through signed URLs: `GET /content/{id}` and `PUT /content/{id}`.

use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

use axum::{
    body::Body,
    extract::{Path as UrlPath, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    service::DatasetService,
    signing::{Op, SignedParams},
    store::ContentStep,
};
use crate::common::ServiceResult;

const UPLOAD_SUFFIX: &str = ".upload";
const READ_CHUNK: usize = 64 * 1024;

/// The content directory.
pub struct ContentFiles {
    dir: PathBuf,
}

impl ContentFiles {
    /// Creates the directory and removes uploads a crash left half-written.
    pub fn open(dir: &Path) -> ServiceResult<ContentFiles> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(UPLOAD_SUFFIX) {
                tracing::warn!(file = %name, "removing an interrupted upload");
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(ContentFiles {
            dir: dir.to_path_buf(),
        })
    }

    /// The content file of `id`, or `None` if `id` is not a canonical UUID
    /// (so no client text ever becomes a path).
    pub fn path_of(&self, id: &str) -> Option<PathBuf> {
        let uuid = uuid::Uuid::parse_str(id).ok()?;
        let canonical = uuid.hyphenated().to_string();
        (canonical == id).then(|| self.dir.join(canonical))
    }

    /// A fresh temporary file name in the same directory (same file system,
    /// so the final rename is atomic).
    fn temp_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!(
            ".{id}.{}{UPLOAD_SUFFIX}",
            uuid::Uuid::new_v4().simple()
        ))
    }

    /// Removes a content file; a missing one is fine.
    pub fn remove(path: &Path) -> ServiceResult<()> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Makes a rename durable.
    fn sync_dir(&self) -> io::Result<()> {
        #[cfg(unix)]
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }
}

/// Deletes a temporary upload unless it was moved into place, including when
/// the request is dropped half-way (client gone).
struct TempUpload {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempUpload {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
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
    let Some(path) = service.files.path_of(&id) else {
        return unknown(&id);
    };
    match service.get(&id).await {
        Ok(Some(_)) => {}
        Ok(None) => return unknown(&id),
        Err(e) => return internal(e),
    }
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return plain(
                StatusCode::NOT_FOUND,
                format!(
                "dataset `{id}` has no content yet; upload it with a createDatasetUploadUrl URL"
            ),
            )
        }
        Err(e) => return internal(e),
    };
    let len = match file.metadata().await {
        Ok(m) => m.len(),
        Err(e) => return internal(e),
    };
    // Streams in chunks: content can be as large as max_upload_bytes.
    let stream = futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; READ_CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, io::Error>(Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
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
    let Some(final_path) = service.files.path_of(&id) else {
        return unknown(&id);
    };
    match service.get(&id).await {
        Ok(Some(_)) => {}
        Ok(None) => return unknown(&id),
        Err(e) => return internal(e),
    }

    let mut temp = TempUpload {
        path: service.files.temp_path(&id),
        armed: true,
    };
    let mut file = match tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp.path)
        .await
    {
        Ok(f) => f,
        Err(e) => return internal(e),
    };
    // Content-Length may be absent (chunked): count what really arrives.
    let mut size: u64 = 0;
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
        if let Err(e) = file.write_all(&chunk).await {
            return internal(e);
        }
    }
    if let Err(e) = async {
        file.flush().await?;
        file.sync_all().await
    }
    .await
    {
        return internal(e);
    }
    drop(file);

    let Ok(size_bytes) = i64::try_from(size) else {
        return too_large(max);
    };
    let temp_path = temp.path.clone();
    let service_for_publish = service.clone();
    let publish: ContentStep = Box::new(move || -> ServiceResult<()> {
        std::fs::rename(&temp_path, &final_path)?;
        service_for_publish.files.sync_dir()?;
        Ok(())
    });
    match service
        .store
        .record_upload(id.clone(), size_bytes, publish)
        .await
    {
        Ok(Some(dataset)) => {
            temp.armed = false;
            service.updates.publish(dataset.clone()).await;
            Json(serde_json::json!({ "id": dataset.id, "sizeBytes": dataset.size_bytes }))
                .into_response()
        }
        // Deleted while the body was arriving.
        Ok(None) => unknown(&id),
        Err(e) => internal(e),
    }
}
