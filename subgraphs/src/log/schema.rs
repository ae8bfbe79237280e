//! The log subgraph's GraphQL schema: thin resolvers over [`LogService`].

use crate::common::rbac::Allowed;
use std::sync::Arc;

use async_graphql::{Context, InputObject, Object, Result, Schema, SimpleObject, Subscription, ID};
use futures::{Stream, StreamExt};

use super::{
    service::{check_pipeline_id, EntryDraft, LogService},
    store::{LogLevel, LogLine},
    stream::log_stream,
};
use crate::common::{GqlResultExt, Timestamp};

pub type LogSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

pub fn build(service: Arc<LogService>) -> LogSchema {
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

fn service<'a>(ctx: &Context<'a>) -> &'a Arc<LogService> {
    ctx.data_unchecked::<Arc<LogService>>()
}

/// One line a pipeline run logged.
#[Object(name = "LogMessage")]
impl LogLine {
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }

    async fn pipeline_id(&self) -> ID {
        ID(self.pipeline_id.clone())
    }

    async fn level(&self) -> LogLevel {
        self.level
    }

    async fn message(&self) -> &str {
        &self.message
    }

    /// The pipeline node that logged the line, if any.
    async fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// When the line was logged (defaults to when it was ingested).
    async fn time(&self) -> Timestamp {
        self.time
    }
}

/// One page of a run's log, oldest first.
#[derive(SimpleObject)]
pub struct LogPage {
    pub items: Vec<LogLine>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(InputObject)]
pub struct LogEntryInput {
    /// The run the line belongs to (1 to 200 characters).
    pub pipeline_id: ID,
    pub level: LogLevel,
    /// At most 10,000 characters.
    pub message: String,
    /// At most 200 characters.
    pub node: Option<String>,
    /// Defaults to the time of ingestion.
    pub time: Option<Timestamp>,
    /// Optional idempotency key (at most 200 characters, unique across all
    /// runs): an entry whose key was already stored is skipped, so a retry
    /// after a lost response stores nothing twice.
    pub key: Option<String>,
}

pub struct QueryRoot;

#[Object(name = "Query")]
impl QueryRoot {
    /// The first page of each run's log (as `pipelineLogs` without a cursor),
    /// in the order of `pipelineIds`, in one read: at most 10,000 runs.
    #[graphql(guard = "Allowed(\"read_logs\")")]
    async fn pipeline_log_pages(
        &self,
        ctx: &Context<'_>,
        pipeline_ids: Vec<ID>,
        #[graphql(default = 100)] limit: i32,
        min_level: Option<LogLevel>,
    ) -> Result<Vec<LogPage>> {
        let ids: Vec<String> = pipeline_ids.into_iter().map(|id| id.0).collect();
        let pages = service(ctx)
            .first_pages(&ids, limit, min_level)
            .await
            .gql()?;
        Ok(pages
            .into_iter()
            .map(|p| LogPage {
                items: p.items,
                next_cursor: p.next_cursor,
            })
            .collect())
    }

    /// A run's log lines oldest first (by `time`, then by arrival), `limit` 1
    /// to 1000 per page, only lines at `minLevel` or above
    /// (DEBUG < INFO < WARNING < ERROR) when given.
    #[graphql(guard = "Allowed(\"read_logs\")")]
    async fn pipeline_logs(
        &self,
        ctx: &Context<'_>,
        pipeline_id: ID,
        #[graphql(default = 100)] limit: i32,
        cursor: Option<String>,
        min_level: Option<LogLevel>,
    ) -> Result<LogPage> {
        let page = service(ctx)
            .history(&pipeline_id, limit, cursor.as_deref(), min_level)
            .await
            .gql()?;
        Ok(LogPage {
            items: page.items,
            next_cursor: page.next_cursor,
        })
    }
}

pub struct MutationRoot;

#[Object(name = "Mutation")]
impl MutationRoot {
    /// Stores up to 1000 lines at once, all or nothing (one invalid entry
    /// rejects the call). Returns how many were stored: entries whose `key`
    /// was already stored are skipped and not counted.
    async fn ingest_logs(&self, ctx: &Context<'_>, entries: Vec<LogEntryInput>) -> Result<i32> {
        crate::common::require_service_token(
            ctx,
            service(ctx).service_token.as_deref(),
            "ingestLogs",
        )
        .gql()?;
        let drafts = entries
            .into_iter()
            .map(|e| EntryDraft {
                pipeline_id: e.pipeline_id.0,
                level: e.level,
                message: e.message,
                node: e.node,
                time: e.time,
                key: e.key,
            })
            .collect();
        let stored = service(ctx).ingest(drafts).await.gql()?;
        // At most MAX_ENTRIES, so it fits.
        Ok(i32::try_from(stored).unwrap_or(i32::MAX))
    }
}

pub struct SubscriptionRoot;

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// A run's log: first the lines already stored (oldest first), then each
    /// new line as it arrives, none dropped or repeated however slowly the
    /// subscriber reads. Only lines at `minLevel` or above when given.
    #[graphql(guard = "Allowed(\"read_logs\")")]
    async fn log_stream(
        &self,
        ctx: &Context<'_>,
        pipeline_id: ID,
        min_level: Option<LogLevel>,
    ) -> Result<impl Stream<Item = Result<LogLine>>> {
        check_pipeline_id("pipelineId", &pipeline_id).gql()?;
        Ok(log_stream(service(ctx).clone(), pipeline_id.0, min_level).map(|r| r.gql()))
    }
}

#[cfg(test)]
mod tests {
    use crate::dataset::schema::tests::compact;

    /// The stitching config is written against exactly these names.
    #[test]
    fn sdl_matches_the_agreed_schema() {
        let sdl = compact(&super::sdl());
        for expected in [
            "enum LogLevel { DEBUG INFO WARNING ERROR }",
            "type LogMessage { id: ID! pipelineId: ID! level: LogLevel! message: String! node: String time: DateTime! }",
            "type LogPage { items: [LogMessage!]! nextCursor: String }",
            "input LogEntryInput { pipelineId: ID! level: LogLevel! message: String! node: String time: DateTime key: String }",
            "type Query { pipelineLogPages(pipelineIds: [ID!]!, limit: Int! = 100, minLevel: LogLevel): [LogPage!]! pipelineLogs(pipelineId: ID!, limit: Int! = 100, cursor: String, minLevel: LogLevel): LogPage! }",
            "type Mutation { ingestLogs(entries: [LogEntryInput!]!): Int! }",
            "type Subscription { logStream(pipelineId: ID!, minLevel: LogLevel): LogMessage! }",
        ] {
            assert!(sdl.contains(expected), "missing `{expected}` in\n{sdl}");
        }
    }
}
