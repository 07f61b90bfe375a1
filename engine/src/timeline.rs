//! The timeline: a local SQLite database (rusqlite) of what a group did — requests,
//! responses, statuses, traces, audits, memory items — fed from the group's topics by
//! `kafclaw timeline follow`, and asked by `kafclaw trace <correlation id>`.
//!
//! Each record is inserted in the same SQLite transaction as the position it was read at, so
//! a stopped or killed follower resumes exactly where it was: no event twice, none lost.
//!
//! The causal chain of a task is one recursive query: its events (`correlation_id`), every
//! event caused by one of them (`causation_id` = its `id`: agent A's request → the request A
//! delegated to B → B's answer), and the memory items they used (`payload.memories[*].id`)
//! with who wrote them.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use kafclaw_operators::envelope::Envelope;

/// Timeline errors.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    /// SQLite failed.
    #[error("timeline {path}: {source}")]
    Sql {
        /// The database file.
        path: String,
        /// What SQLite said.
        source: rusqlite::Error,
    },
}

/// One open timeline database.
pub struct Timeline {
    conn: Connection,
    path: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    id TEXT, type TEXT NOT NULL, correlation_id TEXT NOT NULL, causation_id TEXT,
    sender_id TEXT NOT NULL, timestamp TEXT NOT NULL, payload TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (topic, partition, offset));
CREATE INDEX IF NOT EXISTS events_correlation ON events (correlation_id);
CREATE INDEX IF NOT EXISTS events_causation ON events (causation_id);
CREATE INDEX IF NOT EXISTS events_id ON events (id);
CREATE INDEX IF NOT EXISTS events_type_at ON events (type, at_ms);
CREATE TABLE IF NOT EXISTS positions (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next INTEGER NOT NULL,
    PRIMARY KEY (topic, partition));
";

/// The chain query: the task's events, what they caused (transitively), and the memory
/// items any of them used; in the order they reached Kafka (envelope timestamps are event
/// time: an answer carries its request's).
const CHAIN: &str = "
WITH RECURSIVE chain(rid, depth) AS (
    SELECT rowid, 0 FROM events WHERE correlation_id = ?1
    UNION
    SELECT e.rowid, c.depth + 1
    FROM chain c JOIN events p ON p.rowid = c.rid
    JOIN events e ON e.causation_id = p.id OR (e.correlation_id = p.correlation_id AND p.correlation_id <> ?1)
    WHERE c.depth < 32
),
used(item) AS (
    SELECT json_extract(m.value, '$.id')
    FROM chain c JOIN events e ON e.rowid = c.rid, json_each(e.payload, '$.memories') m
)
SELECT 'event' AS kind, MIN(c.depth), e.timestamp, e.type, e.sender_id, e.correlation_id, e.causation_id, e.id, e.payload, e.at_ms
FROM chain c JOIN events e ON e.rowid = c.rid GROUP BY e.rowid
UNION ALL
SELECT 'memory', NULL, e.timestamp, e.type, e.sender_id, e.correlation_id, e.causation_id, e.id, e.payload, e.at_ms
FROM events e WHERE e.type = 'memory' AND (e.id IN (SELECT item FROM used)
    OR json_extract(e.payload, '$.item_id') IN (SELECT item FROM used))
ORDER BY 10, 1
";

/// One entry of a chain.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChainEntry {
    /// `event` (part of the task's causal chain) or `memory` (an item the chain used).
    pub kind: String,
    /// Causal steps from the task's own events (events only).
    pub depth: Option<i64>,
    /// The envelope's timestamp.
    pub timestamp: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind_of_envelope: String,
    /// Who sent it.
    pub sender_id: String,
    /// Its conversation.
    pub correlation_id: String,
    /// The envelope it answers.
    pub causation_id: Option<String>,
    /// Its id.
    pub id: Option<String>,
    /// Its payload.
    pub payload: Value,
}

impl Timeline {
    /// Opens (creating) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, TimelineError> {
        let p = path.display().to_string();
        let sql = |source| TimelineError::Sql { path: p.clone(), source };
        let conn = Connection::open(path).map_err(sql)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;").map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        Ok(Self { conn, path: p })
    }

    fn err(&self, source: rusqlite::Error) -> TimelineError {
        TimelineError::Sql { path: self.path.clone(), source }
    }

    /// Where reading `topic`/`partition` resumes (`None`: from the beginning).
    pub fn position(&self, topic: &str, partition: i32) -> Result<Option<i64>, TimelineError> {
        self.conn
            .query_row(
                "SELECT next FROM positions WHERE topic = ?1 AND partition = ?2",
                params![topic, partition],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Records a batch of envelopes read at `(topic, partition, offset)` with their Kafka
    /// timestamps (ms), and the positions after them, in one transaction.
    pub fn record(&mut self, batch: &[(String, i32, i64, i64, Envelope)]) -> Result<(), TimelineError> {
        let path = self.path.clone();
        let sql = |source| TimelineError::Sql { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO events (topic, partition, offset, id, type, correlation_id, causation_id,
                     sender_id, timestamp, payload, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(sql)?;
            let mut position = tx
                .prepare_cached(
                    "INSERT INTO positions (topic, partition, next) VALUES (?1, ?2, ?3)
                     ON CONFLICT (topic, partition) DO UPDATE SET next = MAX(next, excluded.next)",
                )
                .map_err(sql)?;
            for (topic, partition, offset, at_ms, e) in batch {
                insert
                    .execute(params![
                        topic,
                        partition,
                        offset,
                        e.id,
                        e.kind.to_string(),
                        e.correlation_id,
                        e.causation_id,
                        e.sender_id,
                        e.timestamp,
                        e.payload.to_string(),
                        at_ms
                    ])
                    .map_err(sql)?;
                position.execute(params![topic, partition, offset + 1]).map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)
    }

    /// How many events the timeline holds.
    pub fn len(&self) -> Result<i64, TimelineError> {
        self.conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)).map_err(|e| self.err(e))
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> Result<bool, TimelineError> {
        self.len().map(|n| n == 0)
    }

    /// The causal chain of `correlation_id`, in time order (one query).
    pub fn chain(&self, correlation_id: &str) -> Result<Vec<ChainEntry>, TimelineError> {
        let mut q = self.conn.prepare(CHAIN).map_err(|e| self.err(e))?;
        let rows = q
            .query_map(params![correlation_id], |r| {
                let payload: String = r.get(8)?;
                Ok(ChainEntry {
                    kind: r.get(0)?,
                    depth: r.get(1)?,
                    timestamp: r.get(2)?,
                    kind_of_envelope: r.get(3)?,
                    sender_id: r.get(4)?,
                    correlation_id: r.get(5)?,
                    causation_id: r.get(6)?,
                    id: r.get(7)?,
                    payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }
}

/// The tasks query: requests that no other event caused (a task's first request, not a
/// delegation), newest first, each with the latest answer or status of its conversation;
/// `?1` = '' lists them all, else only those whose correlation id, `payload.task_id` or
/// sender is `?1`; and, when `?3` is not null, only those `?3` asked.
const TASKS: &str = "
SELECT e.correlation_id, e.sender_id, e.timestamp, e.type, COALESCE(json_extract(e.payload, '$.description'), ''),
    (SELECT a.type || ' ' || COALESCE(json_extract(a.payload, '$.status'), '')
        FROM events a WHERE a.correlation_id = e.correlation_id
            AND a.type IN ('response', 'skill_response', 'task_status')
        ORDER BY a.at_ms DESC, a.rowid DESC LIMIT 1)
FROM events e
WHERE e.type IN ('request', 'skill_request') AND e.causation_id IS NULL
    AND (?1 = '' OR e.correlation_id = ?1 OR e.sender_id = ?1 OR json_extract(e.payload, '$.task_id') = ?1)
    AND (?3 IS NULL OR e.sender_id = ?3)
ORDER BY e.at_ms DESC, e.rowid DESC LIMIT ?2
";

/// A task as the timeline knows it: its first request, and how it stands.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TaskSummary {
    /// The conversation (the task id of tasks submitted through the gateway).
    pub correlation_id: String,
    /// Who asked.
    pub sender_id: String,
    /// When (the request's timestamp).
    pub timestamp: String,
    /// `request` or `skill_request`.
    #[serde(rename = "type")]
    pub kind_of_envelope: String,
    /// What was asked (`payload.description`).
    pub description: String,
    /// The latest answer's type and status (`response completed`, `task_status failed`, …);
    /// none yet: `None`.
    pub latest: Option<String>,
}

impl Timeline {
    /// The newest `limit` tasks matching `query` (a correlation id, task id or sender; empty:
    /// any) that `asked_by` asked (none: anyone's), newest first (see `TASKS`).
    pub fn tasks(&self, query: &str, asked_by: Option<&str>, limit: usize) -> Result<Vec<TaskSummary>, TimelineError> {
        let mut q = self.conn.prepare(TASKS).map_err(|e| self.err(e))?;
        let rows = q
            .query_map(params![query.trim(), limit as i64, asked_by], |r| {
                Ok(TaskSummary {
                    correlation_id: r.get(0)?,
                    sender_id: r.get(1)?,
                    timestamp: r.get(2)?,
                    kind_of_envelope: r.get(3)?,
                    description: r.get(4)?,
                    latest: r.get::<_, Option<String>>(5)?.map(|s| s.trim().to_owned()),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }
}

/// What an entry of a chain says, for people: `asked: …`, `answered: … (using memory …)`,
/// `status …`, `wrote memory …`, `audit …`, `span …`.
pub fn describe_what(e: &ChainEntry) -> String {
    let p = &e.payload;
    let text = |k: &str| p[k].as_str().filter(|s| !s.is_empty());
    match e.kind_of_envelope.as_str() {
        "request" | "skill_request" => format!("asked: {}", text("description").unwrap_or("")),
        "response" | "skill_response" => {
            let used: Vec<&str> =
                p["memories"].as_array().into_iter().flatten().filter_map(|m| m["id"].as_str()).collect();
            let body = text("content").or(text("result")).or(text("answer")).unwrap_or("");
            if used.is_empty() {
                format!("answered: {body}")
            } else {
                format!("answered: {body} (using memory {})", used.join(", "))
            }
        }
        "task_status" => format!("status {}: {}", text("status").unwrap_or(""), text("summary").unwrap_or("")),
        "memory" => format!("wrote memory {}: {}", e.id.as_deref().unwrap_or(""), text("content").unwrap_or("")),
        "audit" => format!("audit {}", text("event_type").unwrap_or("")),
        "trace" => format!("span {}", text("title").unwrap_or("")),
        other => other.to_owned(),
    }
}

/// One line of a chain for people: who did what, and the memory items used.
pub fn describe(e: &ChainEntry) -> String {
    let what = describe_what(e);
    let indent = "  ".repeat(e.depth.unwrap_or(0).clamp(0, 8) as usize);
    let tag = if e.kind == "memory" { "memory" } else { e.kind_of_envelope.as_str() };
    format!("{} {indent}{} [{tag}] {what}", e.timestamp, e.sender_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafclaw_operators::envelope::EnvelopeType;
    use serde_json::json;

    fn env(kind: EnvelopeType, corr: &str, sender: &str, id: &str, cause: Option<&str>, t: &str, p: Value) -> Envelope {
        let mut e = Envelope::new(kind, corr, sender, format!("2026-11-24T10:00:0{t}Z"), p);
        e.id = Some(id.into());
        e.causation_id = cause.map(str::to_owned);
        e
    }

    #[test]
    fn a_three_agent_chain_from_one_query_and_positions_resume() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Timeline::open(&dir.path().join("t.db")).unwrap();
        let batch = vec![
            (
                "mem".into(),
                0,
                0,
                1,
                env(EnvelopeType::Memory, "m", "carol", "m1", None, "0", json!({"content": "Refunds need approval"})),
            ),
            (
                "req".into(),
                0,
                0,
                2,
                env(EnvelopeType::Request, "X", "alice", "a1", None, "1", json!({"description": "refund?"})),
            ),
            (
                "skill".into(),
                0,
                0,
                3,
                env(EnvelopeType::SkillRequest, "Y", "alice", "y1", Some("a1"), "2", json!({"description": "policy?"})),
            ),
            (
                "sresp".into(),
                0,
                0,
                4,
                env(
                    EnvelopeType::SkillResponse,
                    "Y",
                    "bob",
                    "y2",
                    Some("y1"),
                    "3",
                    json!({"content": "needs approval", "memories": [{"id": "m1"}]}),
                ),
            ),
            (
                "resp".into(),
                0,
                0,
                5,
                env(
                    EnvelopeType::Response,
                    "X",
                    "alice",
                    "a2",
                    Some("a1"),
                    "4",
                    json!({"content": "yes, with approval"}),
                ),
            ),
            (
                "req".into(),
                0,
                1,
                6,
                env(EnvelopeType::Request, "Z", "dave", "z1", None, "5", json!({"description": "unrelated"})),
            ),
        ];
        t.record(&batch).unwrap();
        t.record(&batch[..2]).unwrap();
        assert_eq!(t.len().unwrap(), 6, "a record read twice is kept once");
        assert_eq!(t.position("req", 0).unwrap(), Some(2));
        let chain = t.chain("X").unwrap();
        let who: Vec<(&str, &str)> =
            chain.iter().map(|e| (e.sender_id.as_str(), e.kind_of_envelope.as_str())).collect();
        assert_eq!(
            who,
            [
                ("carol", "memory"),
                ("alice", "request"),
                ("alice", "skill_request"),
                ("bob", "skill_response"),
                ("alice", "response")
            ]
        );
        assert_eq!(chain[0].kind, "memory");
        // The tasks: X and Z (Y is X's delegation), newest first; found by id or sender.
        let ids = |q: &str| -> Vec<(String, Option<String>)> {
            t.tasks(q, None, 10).unwrap().into_iter().map(|s| (s.correlation_id, s.latest)).collect()
        };
        assert_eq!(ids(""), [("Z".into(), None), ("X".into(), Some("response".into()))]);
        assert_eq!(ids("alice"), [("X".into(), Some("response".into()))]);
        assert_eq!(ids(" Z "), [("Z".into(), None)]);
        assert!(ids("Y").is_empty(), "a delegation is not a task of its own");
        assert_eq!(t.tasks("", None, 1).unwrap().len(), 1);
        assert_eq!(t.tasks("", Some("dave"), 10).unwrap().len(), 1, "only dave's");
        assert!(t.tasks("X", Some("dave"), 10).unwrap().is_empty(), "X is alice's");
        assert!(
            describe(&chain[3]).contains("bob [skill_response] answered: needs approval (using memory m1)"),
            "{}",
            describe(&chain[3])
        );
    }
}
