//! Runs: create (validate, check datasets, store PENDING, queue), execute on
//! a bounded worker pool, cancel, delete, and recover after a crash.
//!
//! The store is the single source of truth for a run's status: every change
//! is a compare-and-set there first, then an event and a log line.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    events::{EventBus, PipelineEvent},
    log_shipper::{Level, LogShipper},
    model::{now, PipelineInput, PipelineStatus, Run},
    nodes,
    peers::{DatasetClient, ReadError},
    store::{Deleted, Moved, PipelineStore, Transition},
    templates::{self, NodeSpec, Template},
    validate::validate,
};
use crate::common::{ServiceError, ServiceResult};

/// The error a run left PENDING or RUNNING by a crash gets on the next start.
pub const INTERRUPTED_BY_RESTART: &str = "interrupted by restart";

/// How a run ended, as the worker saw it.
enum Ending {
    Success,
    Failure {
        node: Option<&'static str>,
        error: String,
    },
    /// Its token was cancelled: by `cancelPipeline`, or by the service stopping.
    Stopped,
}

pub struct Runner {
    pub store: Arc<dyn PipelineStore>,
    pub events: EventBus,
    datasets: DatasetClient,
    logs: LogShipper,
    workers: Arc<Semaphore>,
    /// Where runs are spawned; a stopping service waits for them.
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Tokens of the runs this process has queued and not yet finished.
    live: Mutex<HashMap<String, CancellationToken>>,
}

impl Runner {
    pub fn new(
        store: Arc<dyn PipelineStore>,
        datasets: DatasetClient,
        logs: LogShipper,
        workers: usize,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Arc<Runner> {
        Arc::new(Runner {
            store,
            events: EventBus::default(),
            datasets,
            logs,
            workers: Arc::new(Semaphore::new(workers)),
            tasks,
            shutdown,
            live: Mutex::new(HashMap::new()),
        })
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        // Every use is a single insert/remove: a poisoned map is still consistent.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start-up: runs a previous process left PENDING or RUNNING never finish
    /// now, so they fail, visibly, instead of staying stuck.
    pub async fn recover(&self) -> ServiceResult<usize> {
        let failed = self
            .store
            .fail_live(INTERRUPTED_BY_RESTART.into(), now())
            .await?;
        for run in &failed {
            tracing::warn!(pipeline_id = %run.id, template = %run.name, "run interrupted by restart: marked FAILURE");
            self.logs.log_keyed(
                &run.id,
                Level::Error,
                "run failed: interrupted by restart (the pipeline service stopped while this run was PENDING or RUNNING); create it again to rerun",
                format!("{}:interrupted", run.id),
            );
        }
        Ok(failed.len())
    }

    /// `createPipeline`: nothing is stored unless every check passes.
    pub async fn create(self: &Arc<Self>, input: PipelineInput) -> ServiceResult<Run> {
        let valid = validate(input)?;
        let ids: Vec<String> = {
            let mut ids: Vec<String> = Vec::new();
            for b in &valid.data_catalog {
                if !ids.iter().any(|i| i == b.dataset_id.as_str()) {
                    ids.push(b.dataset_id.to_string());
                }
            }
            ids
        };
        let unknown = self.datasets.unknown_ids(&ids).await.map_err(|e| {
            ServiceError::Upstream(format!(
                "cannot check the dataset ids with the dataset subgraph at {}: {e}; nothing was stored, try again once it is reachable",
                self.datasets.url()
            ))
        })?;
        if !unknown.is_empty() {
            let named: Vec<String> = valid
                .data_catalog
                .iter()
                .filter(|b| unknown.iter().any(|u| u == b.dataset_id.as_str()))
                .map(|b| format!("`{}` (bound to {})", b.dataset_id.as_str(), b.name))
                .collect();
            return Err(ServiceError::bad_input(format!(
                "unknown dataset id {}: the dataset subgraph has no such dataset; create it with createDataset, or bind an existing id",
                named.join(", ")
            )));
        }

        let run = Run::pending(valid, now());
        self.store.insert(run.clone()).await?;
        self.events.publish(PipelineEvent::current(&run));
        self.logs.log(
            &run.id,
            Level::Info,
            None,
            format!(
                "run created from template {}; waiting for a worker",
                run.name
            ),
        );
        let token = self.shutdown.child_token();
        self.live().insert(run.id.clone(), token.clone());
        let runner = self.clone();
        let queued = run.clone();
        self.tasks
            .spawn(async move { runner.drive(queued, token).await });
        Ok(run)
    }

    /// `cancelPipeline`: stops a PENDING or RUNNING run.
    pub async fn cancel(&self, id: String) -> ServiceResult<Run> {
        let run =
            self.store.get(id.clone()).await?.ok_or_else(|| {
                ServiceError::not_found(format!("no pipeline run with id `{id}`"))
            })?;
        if run.status.is_terminal() {
            return Err(finished_conflict(&run));
        }
        // Stop the work first, then record the cancellation: the worker, seeing
        // its token cancelled while the service still runs, leaves the status to us.
        if let Some(token) = self.live().remove(&id) {
            token.cancel();
        }
        match self
            .move_to(
                &id,
                PipelineStatus::Cancelled,
                None,
                None,
                "cancelled by cancelPipeline".into(),
            )
            .await?
        {
            Moved::Done(run) => {
                self.logs
                    .log(&id, Level::Info, None, "run cancelled by cancelPipeline");
                Ok(run)
            }
            Moved::Refused(run) => Err(finished_conflict(&run)),
            Moved::Missing => Err(ServiceError::not_found(format!(
                "no pipeline run with id `{id}`"
            ))),
        }
    }

    /// `deletePipeline`: removes a finished run and returns it.
    pub async fn delete(&self, id: String) -> ServiceResult<Run> {
        match self.store.delete_finished(id.clone()).await? {
            Deleted::Done(run) => Ok(run),
            Deleted::Live(run) => Err(ServiceError::Conflict(format!(
                "pipeline run `{id}` is {}; cancel it first with cancelPipeline(id: \"{id}\"), then delete it",
                run.status
            ))),
            Deleted::Missing => Err(ServiceError::not_found(format!("no pipeline run with id `{id}`"))),
        }
    }

    /// Records a status change, then tells followers.
    async fn move_to(
        &self,
        id: &str,
        to: PipelineStatus,
        error: Option<String>,
        node: Option<&str>,
        message: String,
    ) -> ServiceResult<Moved> {
        let at = now();
        let moved = self
            .store
            .transition(id.to_string(), Transition { to, at, error })
            .await?;
        if let Moved::Done(_) = &moved {
            self.events.publish(PipelineEvent {
                pipeline_id: id.into(),
                status: to,
                node: node.map(String::from),
                message: Some(message),
                timestamp: at,
            });
        }
        Ok(moved)
    }

    fn node_event(&self, run: &Run, node: &str, message: String) {
        self.logs
            .log(&run.id, Level::Info, Some(node), message.clone());
        self.events.publish(PipelineEvent {
            pipeline_id: run.id.clone().into(),
            status: PipelineStatus::Running,
            node: Some(node.to_string()),
            message: Some(message),
            timestamp: now(),
        });
    }

    /// One queued run, from waiting for a worker to its final status.
    async fn drive(self: Arc<Self>, run: Run, token: CancellationToken) {
        let id = run.id.clone();
        let ending = tokio::select! {
            permit = self.workers.clone().acquire_owned() => match permit {
                Ok(permit) => {
                    let ending = self.start_and_execute(&run, &token).await;
                    self.finish(&run, ending).await;
                    drop(permit);
                    None
                }
                Err(_) => Some(Ending::Failure { node: None, error: "the worker pool is closed".into() }),
            },
            _ = token.cancelled() => Some(Ending::Stopped),
        };
        self.finish(&run, ending).await;
        self.live().remove(&id);
    }

    async fn start_and_execute(&self, run: &Run, token: &CancellationToken) -> Option<Ending> {
        if token.is_cancelled() {
            return Some(Ending::Stopped);
        }
        let template = templates::find(&run.name);
        let message = format!("run started: template {}", run.name);
        match self
            .move_to(
                &run.id,
                PipelineStatus::Running,
                None,
                None,
                message.clone(),
            )
            .await
        {
            Ok(Moved::Done(_)) => {}
            // Cancelled (or removed) while it waited: nothing to do.
            Ok(_) => return None,
            Err(e) => {
                return Some(Ending::Failure {
                    node: None,
                    error: format!("cannot record the start of the run: {e}"),
                })
            }
        }
        self.logs.log(&run.id, Level::Info, None, message);
        let Some(template) = template else {
            return Some(Ending::Failure {
                node: None,
                error: format!("template {} no longer exists", run.name),
            });
        };
        Some(self.execute(run, template, token).await)
    }

    /// Runs the nodes in order; intermediate values stay in memory.
    async fn execute(
        &self,
        run: &Run,
        template: &'static Template,
        token: &CancellationToken,
    ) -> Ending {
        let mut values: HashMap<&'static str, String> = HashMap::new();
        for node in template.nodes {
            if token.is_cancelled() {
                return Ending::Stopped;
            }
            self.node_event(run, node.name, format!("node {} started", node.name));
            let started = Instant::now();
            match token
                .run_until_cancelled(self.run_node(run, template, node, &mut values))
                .await
            {
                None => return Ending::Stopped,
                Some(Err(error)) => {
                    return Ending::Failure {
                        node: Some(node.name),
                        error: format!("node {} failed: {error}", node.name),
                    }
                }
                Some(Ok(())) => {}
            }
            self.node_event(
                run,
                node.name,
                format!(
                    "node {} finished in {} ms",
                    node.name,
                    started.elapsed().as_millis()
                ),
            );
        }
        Ending::Success
    }

    async fn run_node(
        &self,
        run: &Run,
        template: &'static Template,
        node: &'static NodeSpec,
        values: &mut HashMap<&'static str, String>,
    ) -> Result<(), String> {
        let mut inputs = Vec::with_capacity(node.inputs.len());
        for name in node.inputs {
            if let Some(v) = values.get(name) {
                inputs.push(v.clone());
                continue;
            }
            let dataset = run
                .dataset_of(name)
                .ok_or_else(|| format!("input `{name}` is not bound to a dataset"))?;
            let text = self.datasets.read_text(dataset).await.map_err(|e| match e {
                ReadError::NoContent => format!(
                    "input `{name}` (dataset {dataset}) has no content yet; upload it through createDatasetUploadUrl, then create the run again"
                ),
                ReadError::Failed(m) => format!("cannot read input `{name}` (dataset {dataset}): {m}"),
            })?;
            values.insert(name, text.clone());
            inputs.push(text);
        }
        let outputs = nodes::apply(node.op, inputs, |p| run.parameter(p).map(String::from)).await?;
        if outputs.len() != node.outputs.len() {
            return Err(format!(
                "produced {} outputs instead of {}",
                outputs.len(),
                node.outputs.len()
            ));
        }
        for (name, text) in node.outputs.iter().zip(outputs) {
            if template.outputs.contains(name) {
                let dataset = run
                    .dataset_of(name)
                    .ok_or_else(|| format!("output `{name}` is not bound to a dataset"))?;
                self.datasets
                    .write_text(dataset, &text)
                    .await
                    .map_err(|m| {
                        format!("cannot write output `{name}` (dataset {dataset}): {m}")
                    })?;
                self.datasets
                    .record_producer(dataset, &run.id)
                    .await
                    .map_err(|m| format!("wrote output `{name}` (dataset {dataset}) but cannot record this run as its producer: {m}"))?;
            }
            values.insert(name, text);
        }
        Ok(())
    }

    /// Records how a run ended. A refused move means someone else (a
    /// cancellation) already ended it, which is fine.
    async fn finish(&self, run: &Run, ending: Option<Ending>) {
        let Some(ending) = ending else { return };
        let (to, error, node) = match ending {
            Ending::Success => (PipelineStatus::Success, None, None),
            Ending::Failure { node, error } => (PipelineStatus::Failure, Some(error), node),
            // Cancelled by cancelPipeline: it records the status itself.
            Ending::Stopped if !self.shutdown.is_cancelled() => return,
            Ending::Stopped => (
                PipelineStatus::Failure,
                Some("interrupted by shutdown: the pipeline service stopped while this run was PENDING or RUNNING; create it again to rerun".to_string()),
                None,
            ),
        };
        let message = error.clone().unwrap_or_else(|| "run succeeded".into());
        let ended = match self
            .move_to(&run.id, to, error.clone(), node, message)
            .await
        {
            Ok(Moved::Done(ended)) => ended,
            Ok(_) => return,
            Err(e) => {
                tracing::error!(pipeline_id = %run.id, error = %e, "cannot record the end of a run");
                return;
            }
        };
        match error {
            None => {
                let ms = match (ended.started_at, ended.finished_at) {
                    (Some(s), Some(f)) => (f.0 - s.0).num_milliseconds(),
                    _ => 0,
                };
                self.logs.log(
                    &run.id,
                    Level::Info,
                    None,
                    format!("run succeeded in {ms} ms"),
                );
            }
            Some(error) => {
                if let Some(node) = node {
                    self.logs
                        .log(&run.id, Level::Error, Some(node), error.clone());
                }
                self.logs
                    .log(&run.id, Level::Error, None, format!("run failed: {error}"));
                tracing::warn!(pipeline_id = %run.id, %error, "run failed");
            }
        }
    }
}

fn finished_conflict(run: &Run) -> ServiceError {
    ServiceError::Conflict(format!(
        "pipeline run `{}` already finished with status {}; only PENDING or RUNNING runs can be cancelled",
        run.id, run.status
    ))
}
