//! The transactional outbox of run log lines.
//!
//! A line is written in the same SQLite transaction as the run change it
//! describes, so a run can never be RUNNING without its "run started" line
//! on disk, even if the process is killed the next instant. `log_shipper`
//! delivers the lines in order and deletes them once the log subgraph took
//! them; what a crash or a stop leaves behind is shipped by the next process.
//!
//! The outbox keeps the newest `capacity` lines plus the batch in flight.
//! Older ones are dropped and counted per run; the count goes out first, as a
//! WARNING line in that run's log.

use rusqlite::Connection;
use serde::Serialize;

use crate::common::ServiceResult;

/// Schema version 2 of the pipeline store: the outbox tables.
pub const SCHEMA_V2: &str = "
CREATE TABLE log_outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline_id TEXT NOT NULL,
    level       TEXT NOT NULL,
    node        TEXT,
    message     TEXT NOT NULL,
    time        TEXT NOT NULL,  -- when it happened, not when it is delivered
    key         TEXT NOT NULL,  -- idempotency key: a retried batch stores nothing twice
    in_flight   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE log_dropped (
    pipeline_id TEXT PRIMARY KEY,
    count       INTEGER NOT NULL,
    last_time   TEXT NOT NULL,
    key         TEXT NOT NULL
);
";

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Info,
    Warning,
    Error,
}

impl Level {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
        }
    }

    pub(super) fn parse(text: &str) -> Level {
        match text {
            "WARNING" => Level::Warning,
            "ERROR" => Level::Error,
            _ => Level::Info,
        }
    }
}

/// One `LogEntryInput` of the log subgraph.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    pub pipeline_id: String,
    pub level: Level,
    pub message: String,
    pub node: Option<String>,
    /// When it happened, not when it was delivered.
    pub time: String,
    pub key: String,
}

/// The lines of one delivery; `ack` removes them once the log subgraph took them.
#[derive(Debug, Default)]
pub struct Batch {
    pub lines: Vec<LogLine>,
    /// Overflow warnings at the front of `lines`: (run, dropped lines
    /// reported, the warning's key).
    pub(super) warnings: Vec<(String, i64, String)>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// The text of an overflow warning.
pub(super) fn dropped_message(count: i64, capacity: usize) -> String {
    format!(
        "{count} log line(s) of this run were dropped: the log subgraph was unreachable and the pipeline service's outbox (log_buffer = {capacity}) was full"
    )
}

/// Adds lines (inside the caller's transaction), then drops the oldest
/// beyond `capacity`.
pub fn append(conn: &Connection, lines: &[LogLine], capacity: usize) -> ServiceResult<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO log_outbox (pipeline_id, level, node, message, time, key) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for l in lines {
        insert.execute(rusqlite::params![
            l.pipeline_id,
            l.level.as_str(),
            l.node,
            l.message,
            l.time,
            l.key
        ])?;
    }
    trim(conn, capacity)
}

/// Drops the lines older than the newest `capacity` (never the batch in
/// flight: it may yet be delivered) and counts them per run.
fn trim(conn: &Connection, capacity: usize) -> ServiceResult<()> {
    let dropped: Vec<(String, String)> = {
        let mut stmt = conn.prepare_cached(
            "DELETE FROM log_outbox WHERE in_flight = 0 AND seq <= (SELECT MAX(seq) FROM log_outbox) - ?1 RETURNING pipeline_id, time",
        )?;
        let rows = stmt.query_map([capacity as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut per_run: Vec<(String, i64, String)> = Vec::new();
    for (pipeline_id, time) in dropped {
        match per_run.iter_mut().find(|(p, ..)| *p == pipeline_id) {
            Some((_, count, last)) => {
                *count += 1;
                if time > *last {
                    *last = time;
                }
            }
            None => per_run.push((pipeline_id, 1, time)),
        }
    }
    for (pipeline_id, count, last_time) in per_run {
        // A new key per change: the warning's text changes with the count.
        let key = format!("{pipeline_id}:dropped:{}", uuid::Uuid::new_v4().simple());
        let total: i64 = conn.query_row(
            "INSERT INTO log_dropped (pipeline_id, count, last_time, key) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (pipeline_id) DO UPDATE SET count = count + excluded.count,
                 last_time = MAX(last_time, excluded.last_time), key = excluded.key
             RETURNING count",
            rusqlite::params![pipeline_id, count, last_time, key],
            |r| r.get(0),
        )?;
        if total == count {
            tracing::warn!(
                %pipeline_id,
                capacity,
                "log outbox full while the log subgraph is unreachable: dropping this run's oldest log lines (raise log_buffer to keep more)"
            );
        }
    }
    Ok(())
}

/// A delivery failed: its lines are ordinary queued lines again (and may be
/// dropped by overflow).
pub fn release(conn: &Connection, capacity: usize) -> ServiceResult<()> {
    conn.execute(
        "UPDATE log_outbox SET in_flight = 0 WHERE in_flight = 1",
        [],
    )?;
    trim(conn, capacity)
}

/// The next delivery: overflow warnings, then up to `max` lines in order.
/// Takes back a batch a previous process left in flight.
pub fn take(conn: &Connection, max: usize, capacity: usize) -> ServiceResult<Batch> {
    release(conn, capacity)?;
    let mut batch = Batch::default();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT pipeline_id, count, last_time, key FROM log_dropped ORDER BY last_time, pipeline_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        for row in rows {
            let (pipeline_id, count, time, key) = row?;
            batch.lines.push(LogLine {
                message: dropped_message(count, capacity),
                pipeline_id: pipeline_id.clone(),
                level: Level::Warning,
                node: None,
                time,
                key: key.clone(),
            });
            batch.warnings.push((pipeline_id, count, key));
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT seq, pipeline_id, level, node, message, time, key FROM log_outbox ORDER BY seq LIMIT ?1",
    )?;
    let rows = stmt.query_map([max as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            LogLine {
                pipeline_id: r.get(1)?,
                level: Level::parse(&r.get::<_, String>(2)?),
                node: r.get(3)?,
                message: r.get(4)?,
                time: r.get(5)?,
                key: r.get(6)?,
            },
        ))
    })?;
    let mut last = None;
    for row in rows {
        let (seq, line) = row?;
        last = Some(seq);
        batch.lines.push(line);
    }
    if let Some(last) = last {
        conn.execute(
            "UPDATE log_outbox SET in_flight = 1 WHERE seq <= ?1",
            [last],
        )?;
    }
    Ok(batch)
}

/// The log subgraph took `batch`: it leaves the outbox.
pub fn ack(conn: &Connection, batch: &Batch) -> ServiceResult<()> {
    conn.execute("DELETE FROM log_outbox WHERE in_flight = 1", [])?;
    for (pipeline_id, count, _) in &batch.warnings {
        conn.execute(
            "UPDATE log_dropped SET count = count - ?2 WHERE pipeline_id = ?1",
            rusqlite::params![pipeline_id, count],
        )?;
    }
    conn.execute("DELETE FROM log_dropped WHERE count <= 0", [])?;
    Ok(())
}

/// Lines waiting for delivery.
pub fn len(conn: &Connection) -> ServiceResult<usize> {
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM log_outbox", [], |r| r.get(0))?;
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA_V2).unwrap();
        conn
    }

    fn line(p: &str, n: u64) -> LogLine {
        LogLine {
            pipeline_id: p.into(),
            level: Level::Info,
            message: format!("m{n}"),
            node: None,
            time: format!("t{n:02}"),
            key: format!("{p}:{n}"),
        }
    }

    fn push(conn: &Connection, cap: usize, p: &str, ns: std::ops::RangeInclusive<u64>) {
        let lines: Vec<LogLine> = ns.map(|n| line(p, n)).collect();
        append(conn, &lines, cap).unwrap();
    }

    fn messages(b: &Batch) -> Vec<&str> {
        b.lines.iter().map(|l| l.message.as_str()).collect()
    }

    #[test]
    fn batches_keep_order_until_acknowledged() {
        let conn = db();
        push(&conn, 10, "a", 1..=5);
        let b = take(&conn, 3, 10).unwrap();
        assert_eq!(messages(&b), ["m1", "m2", "m3"]);
        // not acknowledged (delivery failed): the same lines come again
        let b = take(&conn, 3, 10).unwrap();
        assert_eq!(messages(&b), ["m1", "m2", "m3"]);
        ack(&conn, &b).unwrap();
        assert_eq!(len(&conn).unwrap(), 2);
        let b = take(&conn, 3, 10).unwrap();
        assert_eq!(messages(&b), ["m4", "m5"]);
        ack(&conn, &b).unwrap();
        assert!(take(&conn, 3, 10).unwrap().is_empty());
    }

    #[test]
    fn overflow_drops_the_oldest_and_warns_once_per_run() {
        let conn = db();
        push(&conn, 3, "a", 1..=1);
        push(&conn, 3, "b", 2..=2);
        push(&conn, 3, "a", 3..=5);
        assert_eq!(len(&conn).unwrap(), 3);
        let b = take(&conn, 10, 3).unwrap();
        let got: Vec<(&str, Level, &str)> = b
            .lines
            .iter()
            .map(|l| (l.pipeline_id.as_str(), l.level, l.message.as_str()))
            .collect();
        assert_eq!(
            got[2..],
            [
                ("a", Level::Info, "m3"),
                ("a", Level::Info, "m4"),
                ("a", Level::Info, "m5")
            ]
        );
        assert_eq!((got[0].0, got[0].1), ("a", Level::Warning));
        assert!(
            got[0]
                .2
                .starts_with("1 log line(s) of this run were dropped"),
            "{}",
            got[0].2
        );
        assert_eq!(b.lines[0].time, "t01");
        assert_eq!((got[1].0, got[1].1), ("b", Level::Warning));
        // a failed delivery keeps the warnings; a new drop is added to its run's count
        release(&conn, 3).unwrap();
        push(&conn, 3, "a", 6..=6);
        let b = take(&conn, 10, 3).unwrap();
        assert_eq!(b.lines.len(), 5);
        assert!(
            b.lines[1].message.starts_with("2 log line(s)"),
            "{:?}",
            b.lines
        );
        ack(&conn, &b).unwrap();
        assert!(take(&conn, 10, 3).unwrap().is_empty());
    }

    #[test]
    fn the_batch_in_flight_is_never_dropped() {
        let conn = db();
        push(&conn, 2, "a", 1..=2);
        let b = take(&conn, 10, 2).unwrap();
        // while it is in flight, two more lines arrive: the outbox holds four
        push(&conn, 2, "a", 3..=4);
        assert_eq!(len(&conn).unwrap(), 4);
        ack(&conn, &b).unwrap();
        assert_eq!(messages(&take(&conn, 10, 2).unwrap()), ["m3", "m4"]);

        // the same, but the delivery fails: now the oldest two go
        let conn = db();
        push(&conn, 2, "a", 1..=2);
        let _failed = take(&conn, 10, 2).unwrap();
        push(&conn, 2, "a", 3..=4);
        release(&conn, 2).unwrap();
        let b = take(&conn, 10, 2).unwrap();
        assert!(b.lines[0].message.starts_with("2 log line(s)"));
        assert_eq!(messages(&b)[1..], ["m3", "m4"]);
    }

    #[test]
    fn lines_serialize_as_log_entry_input() {
        let v = serde_json::to_value(line("p", 1)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"pipelineId": "p", "level": "INFO", "message": "m1", "node": null, "time": "t01", "key": "p:1"})
        );
    }
}
