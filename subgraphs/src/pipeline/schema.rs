//! The GraphQL face of the service: types and resolvers. Resolvers only
//! convert; the work is in `runner`, `store` and `events`.

use crate::common::rbac::Allowed;
use std::sync::Arc;

use async_graphql::{Context, Object, Schema, SimpleObject, Subscription, ID};
use futures::Stream;

use super::{
    events::{self, PipelineEvent},
    model::{DatasetBinding, Parameter, PipelineFilter, PipelineInput, PipelineStatus, Run},
    runner::Runner,
    store::{ListFilter, ListQuery, PageKey},
    templates::{self, Template},
};
use crate::common::{check_limit, GqlResultExt, ServiceError, Tag, Timestamp};

pub type PipelineSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Largest page of `pipelines`.
pub const MAX_LIMIT: i32 = 1000;
/// Longest id list of `pipelinesByIds`: the gateway sends every key of a
/// response level in one call, which may exceed one page.
pub const MAX_IDS: usize = 10_000;
/// Entries of `filter.statuses` at most (there are five statuses).
const MAX_STATUSES: usize = 100;

/// A status filter without repeats; a list too long to be meant is refused
/// before it reaches the store (whose statements hold at most 32,766 values).
fn distinct_statuses(
    mut statuses: Vec<PipelineStatus>,
) -> crate::common::ServiceResult<Vec<PipelineStatus>> {
    if statuses.len() > MAX_STATUSES {
        return Err(ServiceError::bad_input(format!(
            "`filter.statuses` has {} entries; the maximum is {MAX_STATUSES} (list each status once)",
            statuses.len()
        )));
    }
    let mut seen = Vec::with_capacity(statuses.len());
    statuses.retain(|s| {
        let new = !seen.contains(s);
        seen.push(*s);
        new
    });
    Ok(statuses)
}

pub fn build(runner: Arc<Runner>) -> PipelineSchema {
    Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
        .data(runner.authorization.clone())
        .data(runner)
        .finish()
}

/// The schema's SDL, without a running service.
pub fn sdl() -> String {
    Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
        .finish()
        .sdl()
}

fn runner<'a>(ctx: &Context<'a>) -> &'a Arc<Runner> {
    ctx.data_unchecked::<Arc<Runner>>()
}

/// A pipeline template: nodes run in the order listed.
pub struct PipelineTemplate(&'static Template);

#[Object]
impl PipelineTemplate {
    async fn name(&self) -> &str {
        self.0.name
    }

    /// What it does, its bindings, parameters and execution order, as text.
    async fn describe(&self) -> String {
        self.0.describe()
    }

    /// In execution order.
    async fn nodes(&self) -> Vec<PipelineNode> {
        self.0
            .nodes
            .iter()
            .map(|n| PipelineNode {
                name: n.name.into(),
                inputs: n.inputs.iter().map(|s| s.to_string()).collect(),
                outputs: n.outputs.iter().map(|s| s.to_string()).collect(),
            })
            .collect()
    }

    /// Dataset bindings it reads.
    async fn inputs(&self) -> Vec<&str> {
        self.0.inputs.to_vec()
    }

    /// Dataset bindings it writes.
    async fn outputs(&self) -> Vec<&str> {
        self.0.outputs.to_vec()
    }

    /// Its parameters with their default values.
    async fn parameters(&self) -> Vec<Parameter> {
        self.0
            .parameters
            .iter()
            .map(|p| Parameter {
                name: p.name.into(),
                value: p.default.into(),
            })
            .collect()
    }
}

/// One step of a template; inputs and outputs that are not template bindings pass in memory.
#[derive(SimpleObject)]
pub struct PipelineNode {
    name: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

/// A pipeline run.
pub struct Pipeline(pub Run);

#[Object]
impl Pipeline {
    async fn id(&self) -> ID {
        self.0.id.clone().into()
    }

    /// The template name.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// The template's description with this run's bindings and parameter values.
    async fn describe(&self) -> String {
        let run = &self.0;
        let mut out = match templates::find(&run.name) {
            Some(t) => t.describe(),
            None => format!("{}: this template no longer exists", run.name),
        };
        out.push_str(&format!("\nrun {}:", run.id));
        for b in &run.data_catalog {
            out.push_str(&format!(
                "\n  {} = dataset {}",
                b.name,
                b.dataset_id.as_str()
            ));
        }
        for p in &run.parameters {
            out.push_str(&format!("\n  {} = \"{}\"", p.name, p.value));
        }
        out
    }

    async fn status(&self) -> PipelineStatus {
        self.0.status
    }

    /// Every parameter of the template, defaults filled in.
    async fn parameters(&self) -> &[Parameter] {
        &self.0.parameters
    }

    async fn tags(&self) -> &[Tag] {
        &self.0.tags
    }

    /// Which dataset each template input and output is bound to.
    #[graphql(name = "dataCatalog")]
    async fn data_catalog(&self) -> &[DatasetBinding] {
        &self.0.data_catalog
    }

    /// The distinct dataset ids of `dataCatalog`.
    #[graphql(name = "datasetIds")]
    async fn dataset_ids(&self) -> Vec<ID> {
        self.0.dataset_ids().into_iter().map(ID::from).collect()
    }

    #[graphql(name = "createdAt")]
    async fn created_at(&self) -> Timestamp {
        self.0.created_at
    }

    /// When a worker started it.
    #[graphql(name = "startedAt")]
    async fn started_at(&self) -> Option<Timestamp> {
        self.0.started_at
    }

    /// When it reached SUCCESS, FAILURE or CANCELLED.
    #[graphql(name = "finishedAt")]
    async fn finished_at(&self) -> Option<Timestamp> {
        self.0.finished_at
    }

    /// Why it failed.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
}

/// A page of runs, newest first.
#[derive(SimpleObject)]
pub struct PipelinePage {
    items: Vec<Pipeline>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[graphql(name = "nextCursor")]
    next_cursor: Option<String>,
    /// Runs matching the filter, over all pages.
    total: i32,
}

pub struct QueryRoot;

#[Object(name = "Query")]
impl QueryRoot {
    #[graphql(name = "pipelineTemplates")]
    async fn pipeline_templates(&self) -> Vec<PipelineTemplate> {
        templates::TEMPLATES.iter().map(PipelineTemplate).collect()
    }

    /// Null for an unknown name.
    #[graphql(name = "pipelineTemplate")]
    async fn pipeline_template(&self, name: String) -> Option<PipelineTemplate> {
        templates::find(&name).map(PipelineTemplate)
    }

    /// Null for an unknown id.
    #[graphql(guard = "Allowed(\"read_pipeline\")")]
    async fn pipeline(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Pipeline>> {
        Ok(runner(ctx).store.get(id.0).await.gql()?.map(Pipeline))
    }

    /// Runs newest first (by `createdAt`, then `id`).
    #[graphql(guard = "Allowed(\"read_pipeline\")")]
    async fn pipelines(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 10)] limit: i32,
        cursor: Option<String>,
        filter: Option<PipelineFilter>,
    ) -> async_graphql::Result<PipelinePage> {
        let limit = check_limit(limit, MAX_LIMIT).gql()?;
        let after = cursor
            .as_deref()
            .map(PageKey::from_cursor)
            .transpose()
            .gql()?;
        let filter = filter.unwrap_or_default();
        let statuses = filter.statuses.map(distinct_statuses).transpose().gql()?;
        let query = ListQuery {
            limit,
            after,
            filter: ListFilter {
                statuses,
                name: filter.name,
                tag: filter.tag.map(|t| t.into_tag()).transpose().gql()?,
            },
        };
        let page = runner(ctx).store.list(query).await.gql()?;
        Ok(PipelinePage {
            items: page.items.into_iter().map(Pipeline).collect(),
            next_cursor: page.next.map(|k| k.to_cursor()),
            total: i32::try_from(page.total).unwrap_or(i32::MAX),
        })
    }

    /// One lookup for many ids: the same order as `ids`, null for unknown ones.
    #[graphql(name = "pipelinesByIds", guard = "Allowed(\"read_pipeline\")")]
    async fn pipelines_by_ids(
        &self,
        ctx: &Context<'_>,
        ids: Vec<ID>,
    ) -> async_graphql::Result<Vec<Option<Pipeline>>> {
        if ids.len() > MAX_IDS {
            return Err(ServiceError::bad_input(format!(
                "`ids` has {} entries; the maximum is {MAX_IDS}",
                ids.len()
            )))
            .gql();
        }
        let ids = ids.into_iter().map(|i| i.0).collect();
        Ok(runner(ctx)
            .store
            .get_many(ids)
            .await
            .gql()?
            .into_iter()
            .map(|r| r.map(Pipeline))
            .collect())
    }
}

pub struct MutationRoot;

#[Object(name = "Mutation")]
impl MutationRoot {
    /// Validates, stores the run as PENDING and queues it; follow it with `pipelineEvents`.
    #[graphql(name = "createPipeline", guard = "Allowed(\"create_pipeline\")")]
    async fn create_pipeline(
        &self,
        ctx: &Context<'_>,
        pipeline: PipelineInput,
    ) -> async_graphql::Result<Pipeline> {
        Ok(Pipeline(runner(ctx).create(pipeline).await.gql()?))
    }

    /// Stops a PENDING or RUNNING run: status CANCELLED.
    #[graphql(name = "cancelPipeline", guard = "Allowed(\"cancel_pipeline\")")]
    async fn cancel_pipeline(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Pipeline> {
        Ok(Pipeline(runner(ctx).cancel(id.0).await.gql()?))
    }

    /// Removes a finished run and returns it; a live run must be cancelled first.
    #[graphql(name = "deletePipeline", guard = "Allowed(\"delete_pipeline\")")]
    async fn delete_pipeline(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<Pipeline>> {
        Ok(Some(Pipeline(runner(ctx).delete(id.0).await.gql()?)))
    }
}

pub struct SubscriptionRoot;

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// The run's current status, then each status change and node start and
    /// finish; completes after SUCCESS, FAILURE or CANCELLED.
    #[graphql(name = "pipelineEvents", guard = "Allowed(\"read_pipeline\")")]
    async fn pipeline_events(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<impl Stream<Item = PipelineEvent>> {
        let runner = runner(ctx);
        events::follow(
            &runner.events,
            runner.store.clone(),
            id.0,
            runner.shutdown_token(),
        )
        .await
        .gql()
    }
}
