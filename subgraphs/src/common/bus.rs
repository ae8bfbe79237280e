//! How a service tells every replica (itself included) that something
//! happened: in-process broadcast channels for one process, Postgres
//! `LISTEN/NOTIFY` for replicas sharing a database.
//!
//! A notice is a wake-up or a small event, never the only copy of data:
//! what it announces is in the store, and a subscriber that receives
//! [`Notice::Gap`] (a lost connection, a full buffer) re-reads the store.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use super::{storage::StoreFuture, ServiceError};

/// What a subscriber receives.
#[derive(Clone, Debug, PartialEq)]
pub enum Notice {
    Message(Arc<str>),
    /// Messages may have been lost here (how many, when known); re-read
    /// what you follow.
    Gap(Option<u64>),
}

/// Postgres refuses NOTIFY payloads from 8000 bytes on.
pub const MAX_PAYLOAD: usize = 7999;

/// Publishes on named topics; see the module docs.
pub trait Bus: Send + Sync + 'static {
    /// Sends `payload` (at most [`MAX_PAYLOAD`] bytes) to every subscriber
    /// of `topic` in every replica.
    fn publish(&self, topic: &'static str, payload: String) -> StoreFuture<'_, ()>;
    /// Notices on `topic` from now on.
    fn subscribe(&self, topic: &'static str) -> Subscription;
}

/// A subscriber's end: lagging behind the buffer reads as a [`Notice::Gap`].
pub struct Subscription(broadcast::Receiver<Notice>);

impl Subscription {
    /// The next notice; `None` once the bus is gone.
    pub async fn recv(&mut self) -> Option<Notice> {
        match self.0.recv().await {
            Ok(notice) => Some(notice),
            Err(RecvError::Lagged(missed)) => Some(Notice::Gap(Some(missed))),
            Err(RecvError::Closed) => None,
        }
    }
}

/// The local fan-out both buses use: one broadcast channel per topic.
struct Topics {
    capacity: usize,
    senders: Mutex<HashMap<String, broadcast::Sender<Notice>>>,
}

impl Topics {
    fn new(capacity: usize) -> Topics {
        Topics {
            capacity: capacity.max(1),
            senders: Mutex::new(HashMap::new()),
        }
    }

    fn sender(&self, topic: &str) -> broadcast::Sender<Notice> {
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        senders
            .entry(topic.to_string())
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .clone()
    }

    fn send(&self, topic: &str, notice: Notice) {
        // No subscriber is not an error.
        let _ = self.sender(topic).send(notice);
    }

    fn gap_everywhere(&self) {
        let senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        for tx in senders.values() {
            let _ = tx.send(Notice::Gap(None));
        }
    }

    fn subscribe(&self, topic: &str) -> Subscription {
        Subscription(self.sender(topic).subscribe())
    }
}

/// One process: broadcast channels.
pub struct LocalBus(Topics);

impl LocalBus {
    pub fn new(capacity: usize) -> LocalBus {
        LocalBus(Topics::new(capacity))
    }
}

impl Bus for LocalBus {
    fn publish(&self, topic: &'static str, payload: String) -> StoreFuture<'_, ()> {
        self.0.send(topic, Notice::Message(payload.into()));
        Box::pin(async { Ok(()) })
    }

    fn subscribe(&self, topic: &'static str) -> Subscription {
        self.0.subscribe(topic)
    }
}

/// Replicas: `NOTIFY` on channel `<namespace>_<topic>`, one `LISTEN`ing
/// connection per replica fanned out locally.
pub struct PostgresBus {
    pool: PgPool,
    namespace: &'static str,
    topics: Arc<Topics>,
}

impl PostgresBus {
    /// Starts listening on `topics` (all a service will ever subscribe to);
    /// the listener reconnects by itself and stops with `shutdown`.
    pub async fn start(
        pool: PgPool,
        namespace: &'static str,
        topics: &[&'static str],
        capacity: usize,
        shutdown: CancellationToken,
    ) -> Result<PostgresBus, ServiceError> {
        let local = Arc::new(Topics::new(capacity));
        let channels: Vec<String> = topics.iter().map(|t| channel(namespace, t)).collect();
        let mut listener = PgListener::connect_with(&pool).await?;
        listener
            .listen_all(channels.iter().map(String::as_str))
            .await?;
        let prefix = format!("{namespace}_");
        tokio::spawn(listen(listener, channels, prefix, local.clone(), shutdown));
        Ok(PostgresBus {
            pool,
            namespace,
            topics: local,
        })
    }
}

fn channel(namespace: &str, topic: &str) -> String {
    format!("{namespace}_{topic}")
}

/// Forwards notifications until `shutdown`. A dropped connection means
/// notifications were lost: the listener reconnects and listens again, and
/// only then tells every subscriber (a gap), so what they re-read covers
/// everything up to a point from which notifications flow again.
async fn listen(
    mut listener: PgListener,
    channels: Vec<String>,
    prefix: String,
    local: Arc<Topics>,
    shutdown: CancellationToken,
) {
    loop {
        let received = tokio::select! {
            r = listener.try_recv() => r,
            _ = shutdown.cancelled() => return,
        };
        match received {
            Ok(Some(n)) => {
                if let Some(topic) = n.channel().strip_prefix(&prefix) {
                    local.send(topic, Notice::Message(n.payload().into()));
                }
            }
            Ok(None) | Err(_) => {
                tracing::warn!("lost the bus connection to Postgres; reconnecting");
                if !relisten(&mut listener, &channels, &shutdown).await {
                    return;
                }
                local.gap_everywhere();
            }
        }
    }
}

/// Reconnects and LISTENs again, retrying every second; false on shutdown.
async fn relisten(
    listener: &mut PgListener,
    channels: &[String],
    shutdown: &CancellationToken,
) -> bool {
    loop {
        match listener
            .listen_all(channels.iter().map(String::as_str))
            .await
        {
            Ok(()) => return true,
            Err(e) => tracing::warn!(error = %e, "cannot listen on the bus yet; retrying in 1 s"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return false,
        }
    }
}

impl Bus for PostgresBus {
    fn publish(&self, topic: &'static str, payload: String) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if payload.len() > MAX_PAYLOAD {
                return Err(ServiceError::Storage(format!(
                    "a {} byte notice on `{topic}` is over the bus limit of {MAX_PAYLOAD}",
                    payload.len()
                )));
            }
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(channel(self.namespace, topic))
                .bind(payload)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
    }

    fn subscribe(&self, topic: &'static str) -> Subscription {
        self.topics.subscribe(topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_subscribers_get_their_topic_and_a_gap_when_they_lag() {
        let bus = LocalBus::new(2);
        let mut a = bus.subscribe("a");
        let mut b = bus.subscribe("b");
        bus.publish("a", "1".into()).await.unwrap();
        bus.publish("b", "x".into()).await.unwrap();
        assert_eq!(a.recv().await, Some(Notice::Message("1".into())));
        assert_eq!(b.recv().await, Some(Notice::Message("x".into())));
        for i in 0..3 {
            bus.publish("a", i.to_string()).await.unwrap();
        }
        assert_eq!(a.recv().await, Some(Notice::Gap(Some(1))));
        assert_eq!(a.recv().await, Some(Notice::Message("1".into())));
    }

    #[tokio::test]
    async fn postgres_notices_reach_every_replica_in_order() {
        let cluster = pgcluster::Cluster::start().unwrap();
        let url = cluster.create_database("bus").unwrap();
        let shutdown = CancellationToken::new();
        let mut replicas = Vec::new();
        for _ in 0..2 {
            let pool = PgPool::connect(&url).await.unwrap();
            let bus = PostgresBus::start(pool, "svc", &["t"], 16, shutdown.clone())
                .await
                .unwrap();
            replicas.push(bus);
        }
        let mut subs: Vec<_> = replicas.iter().map(|b| b.subscribe("t")).collect();
        for i in 0..3 {
            replicas[i % 2].publish("t", i.to_string()).await.unwrap();
        }
        for sub in &mut subs {
            for i in 0..3 {
                let got = tokio::time::timeout(Duration::from_secs(5), sub.recv())
                    .await
                    .unwrap();
                assert_eq!(got, Some(Notice::Message(i.to_string().into())));
            }
        }
        let too_big = "x".repeat(MAX_PAYLOAD + 1);
        assert!(replicas[0].publish("t", too_big).await.is_err());
        shutdown.cancel();
    }
}
