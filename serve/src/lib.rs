//! The accept loop the gateway and the services share, so that no client
//! can hold their sockets: a cap on open connections (refused with a 503
//! that says why), a deadline for request headers, an inactivity limit for
//! request bodies, and an idle limit for connections with nothing in
//! flight. On stop, connections finish their requests within a grace
//! period, then close.

mod cors;
mod io;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde::Deserialize;
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    task::JoinHandle,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::ServiceExt;

pub use cors::CorsConfig;
pub use io::BodyStalled;
use io::{Activity, ActivityIo, TimeoutBody};

/// `[gateway.connections]` / `[services.*.connections]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// Connections open at once (WebSockets included); more are answered
    /// 503 and closed. Kept below the process's file-descriptor limit.
    pub max_connections: usize,
    /// Milliseconds a client has to send a request's headers, from its first byte.
    pub header_read_timeout_ms: u64,
    /// Milliseconds a request body may pause between two chunks.
    pub body_read_timeout_ms: u64,
    /// Milliseconds a connection may stay silent with no request in flight.
    pub idle_timeout_ms: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 10_000,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
        }
    }
}

/// Connection figures for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    pub open: AtomicU64,
    /// Refused at the cap.
    pub refused: AtomicU64,
    /// Closed for idling or for headers that came too slowly.
    pub timed_out: AtomicU64,
}

/// File descriptors kept free of connections: listeners, database files,
/// upstream connections.
const RESERVED_FDS: u64 = 256;

/// Raises the soft open-files limit to the hard one, so the connection cap,
/// not the default 1024, decides how many clients are served. The limit in
/// force, if it can be read.
pub fn raise_nofile_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

/// Where a server runs and how it stops.
pub struct Serving {
    pub shutdown: CancellationToken,
    /// Connection tasks join it; waiting on it waits for them.
    pub tasks: TaskTracker,
    /// Time connections get to finish their requests on stop (zero: closed at once).
    pub grace: Duration,
    pub stats: Arc<ConnectionStats>,
}

/// Serves `router` on `listener` until `serving.shutdown`; the accept loop's handle.
pub fn spawn(
    listener: TcpListener,
    router: Router,
    limits: &ConnectionLimits,
    serving: &Serving,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let addr = listener.local_addr()?;
    let fds = raise_nofile_limit().unwrap_or(1024);
    let cap = limits
        .max_connections
        .min(fds.saturating_sub(RESERVED_FDS).max(16) as usize)
        .max(1);
    if cap < limits.max_connections {
        tracing::warn!(
            max_connections = limits.max_connections,
            open_files = fds,
            cap,
            "max_connections is above what the open-files limit allows; capped"
        );
    }
    let conn = Arc::new(Conn {
        router,
        limits: limits.clone(),
        stats: serving.stats.clone(),
        grace: serving.grace,
    });
    let slots = Arc::new(Semaphore::new(cap));
    let handle = tokio::spawn(accept_loop(
        listener,
        conn,
        slots,
        serving.shutdown.clone(),
        serving.tasks.clone(),
    ));
    Ok((addr, handle))
}

async fn accept_loop(
    listener: TcpListener,
    conn: Arc<Conn>,
    slots: Arc<Semaphore>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of descriptors, most likely: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            conn.stats.refused.fetch_add(1, Relaxed);
            tasks.spawn(refuse(stream));
            continue;
        };
        let (conn, token) = (conn.clone(), shutdown.clone());
        tasks.spawn(async move { conn.serve(stream, permit, token).await });
    }
}

/// Answers a connection over the cap and closes it.
async fn refuse(mut stream: TcpStream) {
    const BODY: &str =
        "too many connections: this server is at its `max_connections`; retry later\n";
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// What every connection of one server shares.
struct Conn {
    router: Router,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    grace: Duration,
}

impl Conn {
    async fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        permit: tokio::sync::OwnedSemaphorePermit,
        shutdown: CancellationToken,
    ) {
        self.stats.open.fetch_add(1, Relaxed);
        let activity = Arc::new(Activity::default());
        let in_flight = Arc::new(AtomicUsize::new(0));
        // The socket holds the slot: an upgraded WebSocket keeps counting.
        let io = ActivityIo::new(stream, activity.clone(), permit, self.stats.clone());
        let service = self.service(in_flight.clone(), activity.clone());
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_millis(self.limits.header_read_timeout_ms));
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(connection);
        let idle = Duration::from_millis(self.limits.idle_timeout_ms);
        let tick = (idle / 4).clamp(Duration::from_millis(20), Duration::from_secs(5));
        let mut stopping: Option<Instant> = None;
        loop {
            tokio::select! {
                r = connection.as_mut() => {
                    if let Err(e) = r {
                        if e.to_string().contains("timeout") {
                            self.stats.timed_out.fetch_add(1, Relaxed);
                        }
                        tracing::debug!(error = %e, "connection closed with an error");
                    }
                    return;
                }
                _ = shutdown.cancelled(), if stopping.is_none() => {
                    if self.grace.is_zero() {
                        return;
                    }
                    connection.as_mut().graceful_shutdown();
                    stopping = Some(Instant::now() + self.grace);
                }
                _ = tokio::time::sleep(tick) => {
                    if stopping.is_some_and(|until| Instant::now() >= until) {
                        return;
                    }
                    let quiet = in_flight.load(Relaxed) == 0 && !activity.upgraded();
                    if quiet && activity.silent_for() >= idle {
                        self.stats.timed_out.fetch_add(1, Relaxed);
                        return;
                    }
                }
            }
        }
    }

    /// The router behind a request counter (the idle check skips busy
    /// connections) and a body that may not stall.
    fn service(
        &self,
        in_flight: Arc<AtomicUsize>,
        activity: Arc<Activity>,
    ) -> impl hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
        Response = axum::response::Response,
        Error = Infallible,
        Future = impl std::future::Future<Output = Result<axum::response::Response, Infallible>> + Send,
    > + Clone {
        let router = self.router.clone();
        let body_timeout = Duration::from_millis(self.limits.body_read_timeout_ms);
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let router = router.clone();
            let in_flight = in_flight.clone();
            if req.headers().contains_key(hyper::header::UPGRADE) {
                activity.mark_upgrade();
            }
            async move {
                in_flight.fetch_add(1, Relaxed);
                let _done = Done(&in_flight);
                let req = req.map(|b| axum::body::Body::new(TimeoutBody::new(b, body_timeout)));
                let resp = router.oneshot(req).await;
                Ok::<_, Infallible>(resp.unwrap_or_else(|e| match e {}))
            }
        })
    }
}

/// Counts a request out of flight when its handler returns (or is dropped).
struct Done<'a>(&'a AtomicUsize);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        let low = hard.min(512);
        rlimit::setrlimit(rlimit::Resource::NOFILE, low, hard).unwrap();
        let raised = super::raise_nofile_limit().unwrap();
        let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        assert_eq!((raised, soft), (hard, hard));
    }
}
