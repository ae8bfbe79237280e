//! The dataset service's operations, shared by the GraphQL resolvers and the
//! content routes: validation, storage, content files and change events.

use serde_json::Value;

use super::{
    content::ContentStore,
    signing::{Op, UrlSigner},
    store::{Dataset, DatasetStore, Filter, NewDataset, Page, PageKey},
    updates::Updates,
};
use crate::common::{check_len, check_limit, ServiceError, ServiceResult, Tag, TagInput};

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_TYPE_CHARS: usize = 200;
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;
pub const MAX_TAGS: usize = 50;
pub const MAX_PAGE: i32 = 100;
/// The gateway sends every key of a response level in one call (1,000 parents
/// with two bindings each are 2,000 keys): the same bound as `pipelinesByIds`.
pub const MAX_BATCH_IDS: usize = 10_000;
pub const MAX_PIPELINE_ID_CHARS: usize = 200;
/// Updates kept for slow `datasetUpdated` subscribers before they lag.
pub const UPDATE_BUFFER: usize = 1024;

/// Everything a request needs; shared behind an `Arc`.
pub struct DatasetService {
    pub store: std::sync::Arc<dyn DatasetStore>,
    pub content: ContentStore,
    pub signer: UrlSigner,
    pub updates: Updates,
    pub max_expires_in_sec: i64,
    pub max_upload_bytes: u64,
    /// What `recordDatasetProducer` callers must send (`x-service-token`).
    pub service_token: Option<String>,
    /// Who may do what (see `common::rbac`).
    pub authorization: crate::common::rbac::Authorization,
}

/// A dataset as the client sent it, before validation.
pub struct DatasetDraft {
    pub name: String,
    pub r#type: String,
    pub config: Option<Value>,
    pub tags: Vec<TagInput>,
}

/// A listing filter as the client sent it.
#[derive(Default)]
pub struct FilterDraft {
    pub name: Option<String>,
    pub r#type: Option<String>,
    pub tag: Option<TagInput>,
}

fn check_required(field: &str, value: &str, max: usize) -> ServiceResult<()> {
    if value.trim().is_empty() {
        return Err(ServiceError::bad_input(format!(
            "`{field}` must not be empty"
        )));
    }
    check_len(field, value, max)
}

fn check_tags(tags: Vec<TagInput>) -> ServiceResult<Vec<Tag>> {
    if tags.len() > MAX_TAGS {
        return Err(ServiceError::bad_input(format!(
            "a dataset has at most {MAX_TAGS} tags, got {}",
            tags.len()
        )));
    }
    tags.into_iter().map(TagInput::into_tag).collect()
}

impl DatasetService {
    pub async fn create(&self, draft: DatasetDraft) -> ServiceResult<Dataset> {
        check_required("dataset.name", &draft.name, MAX_NAME_CHARS)?;
        check_required("dataset.type", &draft.r#type, MAX_TYPE_CHARS)?;
        // JSON null is "no config", the same as leaving the field out.
        let config = draft.config.filter(|c| !c.is_null());
        if let Some(c) = &config {
            let size = serde_json::to_vec(c)
                .map_err(|e| {
                    ServiceError::bad_input(format!("`dataset.config` cannot be serialized: {e}"))
                })?
                .len();
            if size > MAX_CONFIG_BYTES {
                return Err(ServiceError::bad_input(format!(
                    "`dataset.config` is {size} bytes as JSON; the maximum is {MAX_CONFIG_BYTES} bytes (64 KiB): store large content through createDatasetUploadUrl instead"
                )));
            }
        }
        let tags = check_tags(draft.tags)?;
        let dataset = self
            .store
            .create(NewDataset {
                name: draft.name,
                r#type: draft.r#type,
                config,
                tags,
            })
            .await?;
        self.updates.publish(dataset.clone()).await;
        Ok(dataset)
    }

    pub async fn get(&self, id: &str) -> ServiceResult<Option<Dataset>> {
        self.store.get(id.to_string()).await
    }

    pub async fn get_many(&self, ids: Vec<String>) -> ServiceResult<Vec<Option<Dataset>>> {
        if ids.len() > MAX_BATCH_IDS {
            return Err(ServiceError::bad_input(format!(
                "`ids` holds {} ids; at most {MAX_BATCH_IDS} per call",
                ids.len()
            )));
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.store.get_many(ids).await
    }

    pub async fn list(
        &self,
        limit: i32,
        cursor: Option<&str>,
        filter: FilterDraft,
    ) -> ServiceResult<Page> {
        let limit = check_limit(limit, MAX_PAGE)?;
        let after = cursor.map(PageKey::decode).transpose()?;
        if let Some(name) = &filter.name {
            check_len("filter.name", name, MAX_NAME_CHARS)?;
        }
        if let Some(t) = &filter.r#type {
            check_len("filter.type", t, MAX_TYPE_CHARS)?;
        }
        let filter = Filter {
            name: filter.name,
            r#type: filter.r#type,
            tag: filter.tag.map(TagInput::into_tag).transpose()?,
        };
        self.store.list(limit, after, filter).await
    }

    /// Deletes the record and its content file; unknown id is `NOT_FOUND`.
    pub async fn delete(&self, id: &str) -> ServiceResult<Dataset> {
        let remove = self.content.remove_step(self.content.key_of(id));
        let dataset = self
            .store
            .delete(id.to_string(), remove)
            .await?
            .ok_or_else(|| not_found(id))?;
        self.updates.publish(dataset.clone()).await;
        Ok(dataset)
    }

    pub async fn record_producer(&self, id: &str, pipeline_id: &str) -> ServiceResult<Dataset> {
        check_required("pipelineId", pipeline_id, MAX_PIPELINE_ID_CHARS)?;
        let dataset = self
            .store
            .set_producer(id.to_string(), pipeline_id.to_string())
            .await?
            .ok_or_else(|| not_found(id))?;
        self.updates.publish(dataset.clone()).await;
        Ok(dataset)
    }

    /// A signed URL for `op` on an existing dataset, valid for `expires_in_sec`.
    pub async fn signed_url(&self, id: &str, op: Op, expires_in_sec: i32) -> ServiceResult<String> {
        let max = self.max_expires_in_sec;
        if expires_in_sec < 1 || i64::from(expires_in_sec) > max {
            return Err(ServiceError::bad_input(format!(
                "`expiresInSec` must be between 1 and {max} (the configured maximum), got {expires_in_sec}"
            )));
        }
        if self.get(id).await?.is_none() {
            return Err(not_found(id));
        }
        let expires = chrono::Utc::now().timestamp() + i64::from(expires_in_sec);
        Ok(self.signer.url(id, op, expires))
    }
}

pub fn not_found(id: &str) -> ServiceError {
    ServiceError::not_found(format!("no dataset has id `{id}`"))
}
