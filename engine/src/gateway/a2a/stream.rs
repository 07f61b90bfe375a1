//! A2A event streams (`SendStreamingMessage`, `SubscribeToTask`, and v0.3's `message/stream`,
//! `tasks/resubscribe`) as server-sent events: each event's data is a JSON-RPC response whose
//! result is the Task first, then `TaskStatusUpdateEvent`s and `TaskArtifactUpdateEvent`s as
//! the gateway's reader sees the task's status, deltas and answer; the stream ends after a
//! state that ends it (terminal, or input required: `final: true` in v0.3).
//!
//! From the group's records (docs/a2a-kafka.md): a `streaming` task status (`index`, `delta`)
//! → the status `working` (once), then an artifact update of `answer` carrying the delta
//! (`append` after the first); another task status → a status update; the final answer →
//! the rest of the answer not yet streamed as the last chunk (empty when the deltas carried it
//! all; the whole answer when the deltas streamed so far are not its beginning, e.g. they came
//! after it), then the final status, whose message is the answer.
//!
//! Each stream is a task reading the reader's broadcast; it ends when the task ends, or as
//! soon as the client is gone (its channel closes: a disconnected client is noticed at the
//! next event or keep-alive comment), so no subscription outlives its client.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

use super::wire::{self, Dialect, Snapshot, TaskState};
use crate::gateway::{Gateway, Identity};

/// Counts the open streams while it lives.
struct Open(Gateway);

impl Open {
    fn new(g: Gateway) -> Self {
        g.metrics.a2a_streams.inc();
        Self(g)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.metrics.a2a_streams.dec();
    }
}

/// What a stream has told its client.
struct Told {
    state: TaskState,
    streamed: String,
    next_index: u64,
    done: bool,
}

impl Told {
    /// The events that `record` (an answer of the task) adds to what the client knows.
    fn step(&mut self, record: &Value, now: Snapshot, d: Dialect) -> Vec<Value> {
        let mut out = Vec::new();
        if now.state.terminal() {
            // The final state (the answer; a cancel, whose later answers change nothing; a
            // failure), whatever record brought it: a delta read after its answer adds nothing.
            if let Some(answer) = now.answer.as_deref().filter(|_| now.state != TaskState::Canceled) {
                // The last chunk says so even when the deltas already carried the whole answer:
                // then it appends nothing (an empty text part), so a client that waits for
                // `lastChunk` knows the artifact is whole.
                match answer.strip_prefix(self.streamed.as_str()).filter(|_| !self.streamed.is_empty()) {
                    Some(rest) => out.push(now.artifact_event(rest, true, true, d)),
                    None => out.push(now.artifact_event(answer, false, true, d)),
                }
            }
            out.push(now.status_event(d));
            self.done = true;
            return out;
        }
        let p = &record["payload"];
        if record["type"] == "task_status" && p["status"] == "streaming" {
            let index = p["index"].as_u64().unwrap_or(self.next_index);
            let Some(delta) = p["delta"].as_str().filter(|_| index >= self.next_index) else { return out };
            if self.state != TaskState::Working {
                self.state = TaskState::Working;
                let mut working = now.clone();
                (working.state, working.status_text) = (TaskState::Working, None);
                out.push(working.status_event(d));
            }
            out.push(now.artifact_event(delta, !self.streamed.is_empty(), false, d));
            self.streamed.push_str(delta);
            self.next_index = index.saturating_add(1);
        } else if now.state != self.state || now.state.ends_stream() {
            self.state = now.state;
            out.push(now.status_event(d));
            self.done = now.state.ends_stream();
        }
        out
    }
}

fn event(rpc_id: &Value, result: Value) -> Result<Event, Infallible> {
    Ok(Event::default().data(wire::result(rpc_id, result).to_string()))
}

/// Streams task `id` of `who` to the client: the task as it stands, then its events, from
/// `events` (subscribed before the task was read or published, so nothing is missed).
pub(crate) fn open(
    g: Gateway,
    who: Identity,
    id: String,
    rpc_id: Value,
    d: Dialect,
    mut events: broadcast::Receiver<Arc<Value>>,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(64);
    let open = Open::new(g.clone());
    tokio::spawn(async move {
        let _open = open;
        let Some(first) = g.snapshot(&id, &who) else { return };
        let mut told = Told { state: first.state, streamed: String::new(), next_index: 0, done: false };
        if tx.send(event(&rpc_id, first.task_result(d, None))).await.is_err() {
            return;
        }
        while !told.done {
            let record = tokio::select! {
                () = tx.closed() => break,
                r = events.recv() => r,
            };
            let record = match record {
                Ok(r) if r["correlation_id"] != id.as_str() => continue,
                Ok(r) => r,
                // Too slow a client: catch up from the view.
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(task_id = %id, missed = n, "A2A stream lagged");
                    Arc::new(Value::Null)
                }
                Err(broadcast::error::RecvError::Closed) => break,
            };
            let Some(now) = g.snapshot(&id, &who) else { break };
            for e in told.step(&record, now, d) {
                if tx.send(event(&rpc_id, e)).await.is_err() {
                    return;
                }
            }
        }
        tracing::debug!(task_id = %id, finished = told.done, "A2A stream closed");
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::gateway::a2a::wire::Msg;

    fn snap(state: TaskState, answer: Option<&str>) -> Snapshot {
        Snapshot {
            id: "t".into(),
            context_id: "c".into(),
            state,
            status_text: answer.map(Into::into),
            answer: answer.map(Into::into),
            history: vec![Msg { id: "m".into(), agent: false, text: "q".into() }],
            timestamp: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    fn delta(i: u64, d: &str) -> Value {
        json!({"type": "task_status", "correlation_id": "t", "payload": {"status": "streaming", "index": i, "delta": d}})
    }

    #[test]
    fn deltas_then_the_answer_make_working_chunks_and_the_rest() {
        let mut told = Told { state: TaskState::Submitted, streamed: String::new(), next_index: 0, done: false };
        let e = told.step(&delta(0, "po"), snap(TaskState::Working, None), Dialect::V1);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0]["statusUpdate"]["status"]["state"], "TASK_STATE_WORKING");
        assert_eq!(e[1]["artifactUpdate"]["append"], false);
        assert!(told.step(&delta(0, "po"), snap(TaskState::Working, None), Dialect::V1).is_empty(), "a repeat");
        let e = told.step(&delta(1, "n"), snap(TaskState::Working, None), Dialect::V1);
        assert_eq!((e.len(), &e[0]["artifactUpdate"]["append"]), (1, &json!(true)));
        let answer = json!({"type": "skill_response", "correlation_id": "t", "payload": {"content": "pong"}});
        let e = told.step(&answer, snap(TaskState::Completed, Some("pong")), Dialect::V03);
        assert_eq!(e[0]["artifact"]["parts"][0]["text"], "g");
        assert_eq!((&e[0]["append"], &e[0]["lastChunk"]), (&json!(true), &json!(true)));
        assert_eq!((&e[1]["status"]["state"], &e[1]["final"]), (&json!("completed"), &json!(true)));
        assert!(told.done);
    }

    #[test]
    fn deltas_that_carried_the_whole_answer_still_end_with_a_last_chunk() {
        let mut told = Told { state: TaskState::Submitted, streamed: String::new(), next_index: 0, done: false };
        told.step(&delta(0, "po"), snap(TaskState::Working, None), Dialect::V1);
        told.step(&delta(1, "ng"), snap(TaskState::Working, None), Dialect::V1);
        let answer = json!({"type": "skill_response", "correlation_id": "t", "payload": {"content": "pong"}});
        for d in [Dialect::V1, Dialect::V03] {
            let mut t = Told { state: told.state, streamed: told.streamed.clone(), next_index: 2, done: false };
            let e = t.step(&answer, snap(TaskState::Completed, Some("pong")), d);
            assert_eq!(e.len(), 2, "{e:?}");
            let chunk = if d == Dialect::V1 { &e[0]["artifactUpdate"] } else { &e[0] };
            assert_eq!((&chunk["append"], &chunk["lastChunk"]), (&json!(true), &json!(true)), "{e:?}");
            assert_eq!(chunk["artifact"]["parts"][0]["text"], "", "nothing appended twice");
            assert!(t.done);
        }
    }

    #[test]
    fn an_answer_before_its_deltas_is_sent_whole() {
        let mut told = Told { state: TaskState::Submitted, streamed: String::new(), next_index: 0, done: false };
        let answer = json!({"type": "skill_response", "correlation_id": "t", "payload": {"content": "pong"}});
        let e = told.step(&answer, snap(TaskState::Completed, Some("pong")), Dialect::V1);
        assert_eq!(e[0]["artifactUpdate"]["artifact"]["parts"][0]["text"], "pong");
        assert_eq!(e[0]["artifactUpdate"]["append"], false);
        assert_eq!(e[1]["statusUpdate"]["status"]["state"], "TASK_STATE_COMPLETED");
    }
}
