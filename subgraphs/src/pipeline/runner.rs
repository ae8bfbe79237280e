//! Runs: create (validate, check datasets, store PENDING), execute on a
//! bounded worker pool, cancel, delete, and recover after a crash.
//!
//! The store is the single source of truth for a run's status: every change
//! is a compare-and-set there, with its log lines in the same transaction,
//! then an event. PENDING runs are a queue in the store: each replica's
//! dispatcher claims the oldest one whenever one of its workers is free,
//! and holds it with a lease it renews until the run ends (see `Queue`).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    events::{EventBus, PipelineEvent},
    log_shipper::{keyed_line, LogShipper},
    model::{now, PipelineInput, PipelineStatus, Run},
    nodes,
    outbox::{Level, LogLine},
    peers::{DatasetClient, ReadError},
    store::{Deleted, Moved, Orphans, PipelineStore, Transition},
    templates::{self, NodeSpec, Template},
    validate::validate,
};
use crate::common::{
    bus::{Bus, Notice},
    ServiceError, ServiceResult,
};

/// The error a run left PENDING or RUNNING by a crash gets on the next start.
pub const INTERRUPTED_BY_RESTART: &str = "interrupted by restart";
/// The error a run gets when the replica running it stopped renewing its lease.
pub const INTERRUPTED_LEASE_LOST: &str =
    "interrupted: the pipeline replica running it stopped (its lease expired)";
/// The error of a run a stopping service interrupted.
pub const INTERRUPTED_BY_SHUTDOWN: &str = "interrupted by shutdown";
/// Bus topic: a run was queued (wakes every replica's dispatcher).
pub const QUEUED_TOPIC: &str = "queued";
/// Bus topic: a run was cancelled (its holder stops it).
pub const CANCEL_TOPIC: &str = "cancel";

/// How this replica shares the run queue.
#[derive(Clone, Copy, Debug)]
pub struct Queue {
    /// Other replicas use the same store (Postgres): recovery touches only
    /// runs whose lease expired, and a stopping replica leaves queued runs
    /// to the others. Without (SQLite), this process owns every run.
    pub shared: bool,
    /// How long a claim holds without renewal; renewed every third of it.
    pub lease: Duration,
}

impl Queue {
    /// How often an idle dispatcher looks for runs another replica queued
    /// (in case it missed the announcement).
    fn poll(&self) -> Option<Duration> {
        self.shared.then_some(Duration::from_secs(1))
    }
}

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
    bus: Arc<dyn Bus>,
    queue: Queue,
    /// Wakes the dispatcher: a run was queued.
    queued: Notify,
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

/// What a [`Runner`] works with.
pub struct Parts {
    pub store: Arc<dyn PipelineStore>,
    pub bus: Arc<dyn Bus>,
    pub queue: Queue,
    pub datasets: DatasetClient,
    pub logs: LogShipper,
    pub workers: usize,
    pub tasks: TaskTracker,
    pub shutdown: CancellationToken,
    pub authorization: crate::common::rbac::Authorization,
}

impl Runner {
    pub fn new(parts: Parts) -> Arc<Runner> {
        let Parts {
            store,
            bus,
            queue,
            datasets,
            logs,
            workers,
            tasks,
            shutdown,
            authorization,
        } = parts;
        Arc::new(Runner {
            store,
            events: EventBus::new(bus.clone()),
            bus,
            queue,
            queued: Notify::new(),
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

    /// Start-up: runs a previous process left PENDING or RUNNING (alone on
    /// the store), or a dead replica left RUNNING (shared), never finish
    /// now, so they fail, visibly, instead of staying stuck.
    pub async fn recover(&self) -> ServiceResult<usize> {
        let orphans = if self.queue.shared {
            Orphans::LeaseExpired
        } else {
            Orphans::All
        };
        self.fail_orphans(orphans, INTERRUPTED_BY_RESTART, "interrupted by restart (the pipeline service stopped while this run was PENDING or RUNNING)")
            .await
    }

    /// Fails `orphans` with `error`, logging `why` for each, and tells followers.
    async fn fail_orphans(&self, orphans: Orphans, error: &str, why: &str) -> ServiceResult<usize> {
        let why = why.to_string();
        let line = move |run: &Run| {
            keyed_line(
                &run.id,
                Level::Error,
                None,
                format!("run failed: {why}; create it again to rerun"),
                format!("{}:interrupted", run.id),
            )
        };
        let failed = self
            .store
            .recover(orphans, error.into(), now(), Box::new(line))
            .await?;
        for run in &failed {
            tracing::warn!(pipeline_id = %run.id, template = %run.name, %error, "run interrupted: marked FAILURE");
            self.events.publish(PipelineEvent::current(run)).await;
        }
        self.logs.wake();
        Ok(failed.len())
    }

    /// Starts the background work of this replica on `tasks`: the
    /// dispatcher, and (shared queue) the lease keeper and the listener for
    /// other replicas' announcements.
    pub fn spawn(self: &Arc<Self>) {
        let runner = self.clone();
        self.tasks.spawn(async move { runner.dispatch().await });
        if self.queue.shared {
            let runner = self.clone();
            self.tasks.spawn(async move { runner.keep_leases().await });
            let runner = self.clone();
            self.tasks.spawn(async move { runner.listen().await });
        }
    }

    /// Claims queued runs while workers are free; each claimed run runs on
    /// its own task with the worker's permit.
    async fn dispatch(self: Arc<Self>) {
        loop {
            let permit = tokio::select! {
                // A worker freed by the shutdown itself must not claim a run.
                biased;
                _ = self.shutdown.cancelled() => return,
                p = self.workers.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            match self.store.claim(self.queue.lease).await {
                Ok(Some(run)) => self.start(run, permit),
                Ok(None) => {
                    drop(permit);
                    let poll = self.queue.poll().unwrap_or(Duration::MAX);
                    tokio::select! {
                        _ = self.queued.notified() => {}
                        _ = tokio::time::sleep(poll) => {}
                        _ = self.shutdown.cancelled() => return,
                    }
                }
                Err(e) => {
                    drop(permit);
                    tracing::error!(error = %e, "cannot claim a queued run; retrying in 1 s");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = self.shutdown.cancelled() => return,
                    }
                }
            }
        }
    }

    fn start(self: &Arc<Self>, run: Run, permit: OwnedSemaphorePermit) {
        let token = self.shutdown.child_token();
        self.live().insert(run.id.clone(), token.clone());
        let runner = self.clone();
        self.tasks.spawn(async move {
            let id = run.id.clone();
            let ending = runner.start_and_execute(&run, &token).await;
            runner.finish(&run, ending).await;
            drop(permit);
            runner.live().remove(&id);
        });
    }

    /// Renews this replica's leases; stops runs it no longer holds
    /// (cancelled elsewhere, or taken back after a stall); fails runs whose
    /// holder died.
    async fn keep_leases(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.queue.lease / 3);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.shutdown.cancelled() => return,
            }
            // Only runs claimed before the renewal can be missing from it.
            let before: Vec<(String, CancellationToken)> = self
                .live()
                .iter()
                .map(|(id, token)| (id.clone(), token.clone()))
                .collect();
            let ids = before.iter().map(|(id, _)| id.clone()).collect();
            match self.store.renew(self.queue.lease, ids).await {
                Ok(held) => {
                    let held: HashSet<String> = held.into_iter().collect();
                    for (id, token) in before {
                        if !held.contains(&id) {
                            token.cancel();
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot renew run leases"),
            }
            if let Err(e) = self
                .fail_orphans(
                    Orphans::LeaseExpired,
                    INTERRUPTED_LEASE_LOST,
                    "interrupted: the pipeline replica running it stopped (its lease expired)",
                )
                .await
            {
                tracing::error!(error = %e, "cannot recover runs of stopped replicas");
            }
        }
    }

    /// Other replicas' announcements: queued runs wake the dispatcher, a
    /// cancellation stops the run here if it runs here.
    async fn listen(self: Arc<Self>) {
        let mut queued = self.bus.subscribe(QUEUED_TOPIC);
        let mut cancelled = self.bus.subscribe(CANCEL_TOPIC);
        loop {
            tokio::select! {
                notice = queued.recv() => match notice {
                    Some(_) => self.queued.notify_one(),
                    None => return,
                },
                notice = cancelled.recv() => match notice {
                    Some(Notice::Message(id)) => {
                        if let Some(token) = self.live().remove(id.as_ref()) {
                            token.cancel();
                        }
                    }
                    // Missed cancellations are found by the next renewal.
                    Some(Notice::Gap(_)) => {}
                    None => return,
                },
                _ = self.shutdown.cancelled() => return,
            }
        }
    }

    /// Stopping, alone on the store: runs still queued would wait for a
    /// process that is going away, so they fail, visibly.
    pub async fn fail_queued_on_stop(&self) {
        if self.queue.shared {
            return;
        }
        if let Err(e) = self
            .fail_orphans(
                Orphans::All,
                INTERRUPTED_BY_SHUTDOWN,
                "interrupted by shutdown: the pipeline service stopped while this run was PENDING or RUNNING",
            )
            .await
        {
            tracing::error!(error = %e, "cannot fail the runs still queued at shutdown");
        }
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
        self.events.publish(PipelineEvent::current(&run)).await;
        self.queued.notify_one();
        if self.queue.shared {
            if let Err(e) = self.bus.publish(QUEUED_TOPIC, run.id.clone()).await {
                // Idle replicas still find it on their next poll.
                tracing::warn!(error = %e, "could not announce a queued run");
            }
        }
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
        let here = self.live().remove(&id);
        if let Some(token) = &here {
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
            Moved::Done(run) => {
                if here.is_none() && self.queue.shared {
                    // It may run on another replica: tell its holder.
                    if let Err(e) = self.bus.publish(CANCEL_TOPIC, id.clone()).await {
                        tracing::warn!(error = %e, pipeline_id = %id, "could not announce a cancellation; its holder stops the run at its next lease renewal");
                    }
                }
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
            self.events
                .publish(PipelineEvent {
                    pipeline_id: id.into(),
                    status: to,
                    node: node.map(String::from),
                    message: Some(message),
                    timestamp: at,
                })
                .await;
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
        self.events
            .publish(PipelineEvent {
                pipeline_id: run.id.clone().into(),
                status: PipelineStatus::Running,
                node: Some(node.to_string()),
                message: Some(message),
                timestamp: now(),
            })
            .await;
    }

    async fn start_and_execute(&self, run: &Run, token: &CancellationToken) -> Option<Ending> {
        // Stopped before it started (the process is stopping as it claimed
        // the run): it is still PENDING, and stays queued. Other replicas
        // take it once this one's lease lapses; alone on SQLite, the stop
        // fails what is queued.
        if token.is_cancelled() {
            return None;
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
                let error = format!("{INTERRUPTED_BY_SHUTDOWN}: the pipeline service stopped while this run was PENDING or RUNNING; create it again to rerun");
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
