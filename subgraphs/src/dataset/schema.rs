//! The dataset subgraph's GraphQL schema: thin resolvers over [`DatasetService`].

use crate::common::rbac::Allowed;
use std::sync::Arc;

use async_graphql::{
    Context, ErrorExtensions, InputObject, Json, Object, Result, Schema, SimpleObject,
    Subscription, ID,
};
use futures::{Stream, StreamExt};

use super::{
    service::{DatasetDraft, DatasetService, FilterDraft},
    signing::Op,
    store::Dataset,
};
use crate::common::{GqlResultExt, Tag, TagInput, Timestamp};

pub type DatasetSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Builds the schema over a running service.
pub fn build(service: Arc<DatasetService>) -> DatasetSchema {
    Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
        .data(service.authorization.clone())
        .data(service)
        .finish()
}

/// The SDL of this subgraph (what the gateway stitches).
pub fn sdl() -> String {
    Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
        .finish()
        .sdl()
}

fn service<'a>(ctx: &Context<'a>) -> &'a Arc<DatasetService> {
    ctx.data_unchecked::<Arc<DatasetService>>()
}

/// A catalog entry: what a dataset is, how to read it, and who wrote it last.
#[Object]
impl Dataset {
    async fn id(&self) -> ID {
        ID(self.id.clone())
    }

    async fn name(&self) -> &str {
        &self.name
    }

    /// The dataset's kind, e.g. "text.TextDataset".
    async fn r#type(&self) -> &str {
        &self.r#type
    }

    /// Free-form settings of the dataset (any JSON, at most 64 KiB).
    async fn config(&self) -> Option<Json<serde_json::Value>> {
        self.config.clone().map(Json)
    }

    async fn tags(&self) -> &[Tag] {
        &self.tags
    }

    /// Size of the stored content in bytes; null until content was uploaded.
    async fn size_bytes(&self) -> Option<i64> {
        self.size_bytes
    }

    /// When the record or its content last changed.
    async fn updated_at(&self) -> Timestamp {
        self.updated_at
    }

    /// The pipeline run that last wrote this dataset, if any.
    async fn produced_by_pipeline_id(&self) -> Option<ID> {
        self.produced_by_pipeline_id.clone().map(ID)
    }
}

/// One page of datasets, newest first.
#[derive(SimpleObject)]
pub struct DatasetPage {
    pub items: Vec<Dataset>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
    /// How many datasets match the filter, over all pages.
    pub total: i64,
}

#[derive(InputObject)]
pub struct DatasetInput {
    /// 1 to 200 characters.
    pub name: String,
    /// 1 to 200 characters, e.g. "text.TextDataset".
    pub r#type: String,
    /// Any JSON, at most 64 KiB serialized.
    pub config: Option<Json<serde_json::Value>>,
    /// At most 50.
    pub tags: Option<Vec<TagInput>>,
}

/// Every given field must match.
#[derive(InputObject)]
pub struct DatasetFilter {
    /// Datasets whose name contains this text (substring, case-insensitive for ASCII letters).
    pub name: Option<String>,
    /// Datasets of exactly this type.
    pub r#type: Option<String>,
    /// Datasets carrying a tag with exactly this key and value.
    pub tag: Option<TagInput>,
}

pub struct QueryRoot;

#[Object(name = "Query")]
impl QueryRoot {
    /// The dataset with this id, or null if there is none.
    #[graphql(guard = "Allowed(\"read_dataset\")")]
    async fn dataset(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Dataset>> {
        service(ctx).get(&id).await.gql()
    }

    /// Datasets newest first (ties broken by id), `limit` 1 to 100 per page.
    #[graphql(guard = "Allowed(\"read_dataset\")")]
    async fn datasets(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 10)] limit: i32,
        cursor: Option<String>,
        filter: Option<DatasetFilter>,
    ) -> Result<DatasetPage> {
        let filter = filter
            .map(|f| FilterDraft {
                name: f.name,
                r#type: f.r#type,
                tag: f.tag,
            })
            .unwrap_or_default();
        let page = service(ctx)
            .list(limit, cursor.as_deref(), filter)
            .await
            .gql()?;
        Ok(DatasetPage {
            items: page.items,
            next_cursor: page.next_cursor,
            total: page.total,
        })
    }

    /// Batch lookup (at most 10,000 ids): the result has the order of `ids`, null for unknown ids.
    #[graphql(guard = "Allowed(\"read_dataset\")")]
    async fn datasets_by_ids(
        &self,
        ctx: &Context<'_>,
        ids: Vec<ID>,
    ) -> Result<Vec<Option<Dataset>>> {
        service(ctx)
            .get_many(ids.into_iter().map(|id| id.0).collect())
            .await
            .gql()
    }

    /// A URL to download the content with a plain HTTP GET, valid for
    /// `expiresInSec` seconds (1 to the configured maximum).
    #[graphql(guard = "Allowed(\"create_download_url\")")]
    async fn read_dataset_url(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(default = 3600)] expires_in_sec: i32,
    ) -> Result<String> {
        service(ctx)
            .signed_url(&id, Op::Read, expires_in_sec)
            .await
            .gql()
    }
}

pub struct MutationRoot;

#[Object(name = "Mutation")]
impl MutationRoot {
    #[graphql(guard = "Allowed(\"create_dataset\")")]
    async fn create_dataset(&self, ctx: &Context<'_>, dataset: DatasetInput) -> Result<Dataset> {
        service(ctx)
            .create(DatasetDraft {
                name: dataset.name,
                r#type: dataset.r#type,
                config: dataset.config.map(|j| j.0),
                tags: dataset.tags.unwrap_or_default(),
            })
            .await
            .gql()
    }

    /// A URL to replace the content with a plain HTTP PUT of the bytes, valid
    /// for `expiresInSec` seconds (1 to the configured maximum).
    #[graphql(guard = "Allowed(\"create_upload_url\")")]
    async fn create_dataset_upload_url(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(default = 3600)] expires_in_sec: i32,
    ) -> Result<String> {
        service(ctx)
            .signed_url(&id, Op::Write, expires_in_sec)
            .await
            .gql()
    }

    /// Deletes the record and its content; returns the deleted dataset. Unknown id: NOT_FOUND.
    #[graphql(guard = "Allowed(\"delete_dataset\")")]
    async fn delete_dataset(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Dataset>> {
        service(ctx).delete(&id).await.gql().map(Some)
    }

    /// Records that pipeline run `pipelineId` wrote this dataset.
    async fn record_dataset_producer(
        &self,
        ctx: &Context<'_>,
        id: ID,
        pipeline_id: ID,
    ) -> Result<Dataset> {
        let service = service(ctx);
        crate::common::require_service_token(
            ctx,
            service.service_token.as_deref(),
            "recordDatasetProducer",
        )
        .gql()?;
        service.record_producer(&id, &pipeline_id).await.gql()
    }
}

pub struct SubscriptionRoot;

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Each dataset as it is after being created, uploaded to or attributed
    /// to a run, and as it was when deleted; `id` null follows all datasets.
    /// A subscriber that falls too far behind gets an error event
    /// (`SUBSCRIBER_LAGGED`) saying how many updates it missed.
    #[graphql(guard = "Allowed(\"read_dataset\")")]
    async fn dataset_updated(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
    ) -> impl Stream<Item = Result<Dataset>> {
        service(ctx)
            .updates
            .subscribe(id.map(|i| i.0))
            .map(|item| item.map_err(|lagged| lagged.extend()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    /// The SDL without descriptions, one definition per line, fields joined by spaces.
    pub fn compact(sdl: &str) -> String {
        let mut out = String::new();
        let mut in_description = false;
        for line in sdl.lines().map(str::trim) {
            if line == "\"\"\"" {
                in_description = !in_description;
                continue;
            }
            if in_description || line.is_empty() || (line.starts_with('"') && line.ends_with('"')) {
                continue;
            }
            out.push_str(line);
            out.push(if line == "}" { '\n' } else { ' ' });
        }
        out
    }

    /// The stitching config is written against exactly these names.
    #[test]
    fn sdl_matches_the_agreed_schema() {
        let sdl = compact(&super::sdl());
        for expected in [
            "type Dataset { id: ID! name: String! type: String! config: JSON tags: [Tag!]! sizeBytes: Int updatedAt: DateTime! producedByPipelineId: ID }",
            "type DatasetPage { items: [Dataset!]! nextCursor: String total: Int! }",
            "input DatasetInput { name: String! type: String! config: JSON tags: [TagInput!] }",
            "input DatasetFilter { name: String type: String tag: TagInput }",
            "type Tag { key: String! value: String! }",
            "input TagInput { key: String! value: String! }",
            "type Query { dataset(id: ID!): Dataset datasets(limit: Int! = 10, cursor: String, filter: DatasetFilter): DatasetPage! datasetsByIds(ids: [ID!]!): [Dataset]! readDatasetUrl(id: ID!, expiresInSec: Int! = 3600): String! }",
            "type Mutation { createDataset(dataset: DatasetInput!): Dataset! createDatasetUploadUrl(id: ID!, expiresInSec: Int! = 3600): String! deleteDataset(id: ID!): Dataset recordDatasetProducer(id: ID!, pipelineId: ID!): Dataset! }",
            "type Subscription { datasetUpdated(id: ID): Dataset! }",
        ] {
            assert!(sdl.contains(expected), "missing `{expected}` in\n{sdl}");
        }
    }
}
