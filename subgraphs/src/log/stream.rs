//! The `logStream` subscription: the lines already stored (in time order),
//! then every new line (in commit order), none dropped or repeated.
//!
//! The stream never holds lines in a channel: it remembers the last rowid it
//! delivered and reads the store after it, in batches, only when its
//! subscriber asks for more. Inserts only bump a `watch` of the last rowid to
//! wake waiting streams, so however slow a subscriber is, nothing is lost.

use std::{collections::VecDeque, sync::Arc};

use futures::Stream;
use tokio::sync::watch;

use super::{
    service::LogService,
    store::{LineQuery, LogCursor, LogLevel, LogLine},
};
use crate::common::ServiceResult;

/// Lines read from the store per batch.
const BATCH: usize = 256;

enum Phase {
    /// Replaying lines with rowid <= `up_to` (those stored when the stream began).
    History {
        up_to: i64,
        after: Option<LogCursor>,
    },
    /// Following new lines after rowid `after_id`.
    Live { after_id: i64 },
}

struct State {
    service: Arc<LogService>,
    wake: watch::Receiver<i64>,
    pipeline_id: String,
    min_level: Option<LogLevel>,
    phase: Option<Phase>,
    buffered: VecDeque<LogLine>,
}

impl State {
    fn query(&self) -> LineQuery {
        LineQuery {
            pipeline_id: self.pipeline_id.clone(),
            min_level: self.min_level,
            limit: BATCH,
        }
    }

    /// The next line, waiting for one if needed; `Err` ends the stream.
    async fn next_line(&mut self) -> ServiceResult<Option<LogLine>> {
        loop {
            if let Some(line) = self.buffered.pop_front() {
                return Ok(Some(line));
            }
            let phase = match self.phase.take() {
                Some(p) => p,
                None => {
                    // Subscribed before reading the last rowid: a line
                    // committed in between is either replayed or wakes us.
                    self.wake.borrow_and_update();
                    let up_to = self.service.store.last_id().await?;
                    Phase::History { up_to, after: None }
                }
            };
            match phase {
                Phase::History { up_to, after } => {
                    let lines = self
                        .service
                        .store
                        .history(self.query(), after, Some(up_to))
                        .await?;
                    self.phase = Some(match lines.last() {
                        Some(last) => Phase::History {
                            up_to,
                            after: Some(LogCursor::of(last)),
                        },
                        None => Phase::Live { after_id: up_to },
                    });
                    self.buffered.extend(lines);
                }
                Phase::Live { after_id } => {
                    // Mark the current value seen *before* reading, so an
                    // insert committed after the read still wakes us.
                    self.wake.borrow_and_update();
                    let lines = self.service.store.after_id(self.query(), after_id).await?;
                    match lines.last() {
                        Some(last) => {
                            self.phase = Some(Phase::Live { after_id: last.id });
                            self.buffered.extend(lines);
                        }
                        None => {
                            self.phase = Some(Phase::Live { after_id });
                            if self.wake.changed().await.is_err() {
                                // The service is gone.
                                return Ok(None);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Lines of `pipeline_id` at `min_level` or above: stored ones, then live ones.
/// A storage error is delivered once and ends the stream.
pub fn log_stream(
    service: Arc<LogService>,
    pipeline_id: String,
    min_level: Option<LogLevel>,
) -> impl Stream<Item = ServiceResult<LogLine>> + Send + 'static {
    let state = State {
        wake: service.last_id.subscribe(),
        service,
        pipeline_id,
        min_level,
        phase: None,
        buffered: VecDeque::new(),
    };
    futures::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        match state.next_line().await {
            Ok(Some(line)) => Some((Ok(line), Some(state))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;

    use super::*;
    use crate::{
        common::Timestamp,
        log::{service::EntryDraft, store::SqliteLogStore},
    };

    fn entry(p: &str, level: LogLevel, msg: String, time: Option<Timestamp>) -> EntryDraft {
        EntryDraft {
            pipeline_id: p.into(),
            level,
            message: msg,
            node: None,
            time,
            key: None,
        }
    }

    #[tokio::test]
    async fn replays_then_follows_without_loss_for_a_slow_reader() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteLogStore::open(&dir.path().join("l.sqlite")).unwrap();
        let service = Arc::new(LogService::new(
            Arc::new(store),
            Arc::new(crate::common::bus::LocalBus::new(16)),
            0,
            None,
        ));
        let old = Timestamp::parse("2020-01-01T00:00:00Z").unwrap();
        service
            .ingest(vec![
                entry(
                    "p",
                    LogLevel::Info,
                    "stored-late".into(),
                    Some(Timestamp::now()),
                ),
                entry("p", LogLevel::Info, "stored-early".into(), Some(old)),
                entry("p", LogLevel::Debug, "stored-debug".into(), Some(old)),
            ])
            .await
            .unwrap();
        let mut stream = Box::pin(log_stream(
            service.clone(),
            "p".into(),
            Some(LogLevel::Info),
        ));
        assert_eq!(
            stream.next().await.unwrap().unwrap().message,
            "stored-early"
        );

        // A burst far larger than one batch while the reader is paused.
        let writer = {
            let service = service.clone();
            tokio::spawn(async move {
                for chunk in 0..10 {
                    let lines = (0..100)
                        .map(|i| {
                            entry(
                                "p",
                                LogLevel::Info,
                                format!("live-{}", chunk * 100 + i),
                                None,
                            )
                        })
                        .chain([entry("q", LogLevel::Error, "elsewhere".into(), None)])
                        .collect();
                    service.ingest(lines).await.unwrap();
                }
            })
        };
        assert_eq!(stream.next().await.unwrap().unwrap().message, "stored-late");
        writer.await.unwrap();
        for i in 0..1000 {
            let line = tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(line.message, format!("live-{i}"));
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(100), stream.next())
                .await
                .is_err()
        );
    }
}
