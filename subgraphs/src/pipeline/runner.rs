//! Runs: create (validate, check datasets, store PENDING, queue), execute on
//! a bounded worker pool, cancel, delete, and recover after a crash.
//!
//! The store is the single source of truth for a run's status: every change
//! is a compare-and-set there, with its log lines in the same transaction,
//! then an event.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    events::{EventBus, PipelineEvent},
    log_shipper::{keyed_line, LogShipper},
    model::{now, PipelineInput, PipelineStatus, Run},
    nodes,
    outbox::{Level, LogLine},
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
    Success {
        started_at: crate::common::Timestamp,
    },
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
    /// Who may do what (see `common::rbac`).
    pub authorization: crate::common::rbac::Authorization,
}

impl Runner {
    pub fn new(
        store: Arc<dyn PipelineStore>,
        datasets: DatasetClient,
        logs: LogShipper,
        workers: usize,
        tasks: TaskTracker,
        shutdown: CancellationToken,
        authorization: crate::common::rbac::Authorization,
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
            authorization,
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
        let line = |run: &Run| {
            keyed_line(
                &run.id,
                Level::Error,
                None,
                "run failed: interrupted by restart (the pipeline service stopped while this run was PENDING or RUNNING); create it again to rerun".into(),
                format!("{}:interrupted", run.id),
            )
        };
        let failed = self
            .store
            .fail_live(INTERRUPTED_BY_RESTART.into(), now(), Box::new(line))
            .await?;
        for run in &failed {
            tracing::warn!(pipeline_id = %run.id, template = %run.name, "run interrupted by restart: marked FAILURE");
        }
        self.logs.wake();
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
        let created = self.logs.line(
            &run.id,
            Level::Info,
            None,
            format!(
                "run created from template {}; waiting for a worker",
                run.name
            ),
        );
        self.store.insert(run.clone(), vec![created]).await?;
        self.logs.wake();
        self.events.publish(PipelineEvent::current(&run));
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
        let line = self
            .logs
            .line(&id, Level::Info, None, "run cancelled by cancelPipeline");
        let to = self.transition(PipelineStatus::Cancelled, None, vec![line]);
        match self
            .move_to(&id, to, None, "cancelled by cancelPipeline".into())
            .await?
        {
            Moved::Done(run) => Ok(run),
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

    /// A status change now, with the log lines it writes.
    fn transition(
        &self,
        to: PipelineStatus,
        error: Option<String>,
        log: Vec<LogLine>,
    ) -> Transition {
        Transition {
            to,
            at: now(),
            error,
            log,
        }
    }

    /// Records a status change (and its log lines), then tells followers.
    async fn move_to(
        &self,
        id: &str,
        change: Transition,
        node: Option<&str>,
        message: String,
    ) -> ServiceResult<Moved> {
        let (to, at) = (change.to, change.at);
        let moved = self.store.transition(id.to_string(), change).await?;
        if let Moved::Done(_) = &moved {
            self.logs.wake();
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

    async fn node_event(&self, run: &Run, node: &str, message: String) {
        let line = self
            .logs
            .line(&run.id, Level::Info, Some(node), message.clone());
        match self.store.append_log(vec![line]).await {
            Ok(()) => self.logs.wake(),
            Err(e) => {
                tracing::error!(pipeline_id = %run.id, node, error = %e, %message, "cannot store a run log line")
            }
        }
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
        let line = self.logs.line(&run.id, Level::Info, None, message.clone());
        let to = self.transition(PipelineStatus::Running, None, vec![line]);
        let started_at = match self.move_to(&run.id, to, None, message).await {
            Ok(Moved::Done(started)) => started.started_at.unwrap_or_else(now),
            // Cancelled (or removed) while it waited: nothing to do.
            Ok(_) => return None,
            Err(e) => {
                return Some(Ending::Failure {
                    node: None,
                    error: format!("cannot record the start of the run: {e}"),
                })
            }
        };
        let Some(template) = template else {
            return Some(Ending::Failure {
                node: None,
                error: format!("template {} no longer exists", run.name),
            });
        };
        Some(self.execute(run, template, token, started_at).await)
    }

    /// Runs the nodes in order; intermediate values stay in memory.
    async fn execute(
        &self,
        run: &Run,
        template: &'static Template,
        token: &CancellationToken,
        started_at: crate::common::Timestamp,
    ) -> Ending {
        let mut values: HashMap<&'static str, String> = HashMap::new();
        for node in template.nodes {
            if token.is_cancelled() {
                return Ending::Stopped;
            }
            self.node_event(run, node.name, format!("node {} started", node.name))
                .await;
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
            )
            .await;
        }
        Ending::Success { started_at }
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

    /// Records how a run ended, with its last log lines. A refused move
    /// means someone else (a cancellation) already ended it, which is fine.
    async fn finish(&self, run: &Run, ending: Option<Ending>) {
        let Some(ending) = ending else { return };
        let at = now();
        let (to, error, node, log) = match ending {
            Ending::Success { started_at } => {
                let ms = (at.0 - started_at.0).num_milliseconds();
                let line = self.logs.line(
                    &run.id,
                    Level::Info,
                    None,
                    format!("run succeeded in {ms} ms"),
                );
                (PipelineStatus::Success, None, None, vec![line])
            }
            Ending::Failure { node, error } => {
                let mut log = Vec::new();
                if let Some(node) = node {
                    log.push(
                        self.logs
                            .line(&run.id, Level::Error, Some(node), error.clone()),
                    );
                }
                log.push(self.logs.line(
                    &run.id,
                    Level::Error,
                    None,
                    format!("run failed: {error}"),
                ));
                (PipelineStatus::Failure, Some(error), node, log)
            }
            // Cancelled by cancelPipeline: it records the status itself.
            Ending::Stopped if !self.shutdown.is_cancelled() => return,
            Ending::Stopped => {
                let error = "interrupted by shutdown: the pipeline service stopped while this run was PENDING or RUNNING; create it again to rerun".to_string();
                let line =
                    self.logs
                        .line(&run.id, Level::Error, None, format!("run failed: {error}"));
                (PipelineStatus::Failure, Some(error), None, vec![line])
            }
        };
        let message = error.clone().unwrap_or_else(|| "run succeeded".into());
        let change = Transition {
            to,
            at,
            error: error.clone(),
            log,
        };
        match self.move_to(&run.id, change, node, message).await {
            Ok(Moved::Done(_)) => {
                if let Some(error) = error {
                    tracing::warn!(pipeline_id = %run.id, %error, "run failed");
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(pipeline_id = %run.id, error = %e, "cannot record the end of a run");
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
