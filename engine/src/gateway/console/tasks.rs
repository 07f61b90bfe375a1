//! The console's Tasks pages: the tasks the group was asked, found by correlation id, task id
//! or sender, and a task's causal chain across agents — its requests, the delegations they
//! caused, the answers, and the memory items used with who wrote them — from a timeline
//! (`crate::timeline`, the SQLite store `kafclaw timeline` and `kafclaw trace` use) that the
//! gateway keeps by following the group's topics.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Extension;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::session::ConsoleUser;
use super::{Console, pages, refuse};
use crate::kafka::ClientSettings;
use crate::timeline::{Timeline, describe};

/// How far back a temporary timeline starts.
pub const LOOKBACK: Duration = Duration::from_secs(3600);

/// Most tasks one search lists.
const LISTED: usize = 50;
/// Most entries of a chain shown.
pub const CHAIN_ENTRIES: usize = 2000;

/// The timeline the console reads, and the follower that keeps it.
pub struct ConsoleTimeline {
    reader: Mutex<Timeline>,
    /// The temporary directory of a timeline no `--timeline` named (removed at exit).
    _dir: Option<tempfile::TempDir>,
}

impl ConsoleTimeline {
    /// Opens the timeline at `path` (none: a new one in a temporary directory, removed when
    /// the gateway stops, filled from the last [`LOOKBACK`] only, as the gateway's view of
    /// answers is) and follows the topics of `group` into it on a thread until `stop`
    /// (`timeline_topics`, with the topics of `skills` and of every skill whose request topic
    /// exists now), resuming where the file's positions say; a Kafka error is logged and the
    /// follow retried.
    pub fn start(
        settings: &ClientSettings,
        group: &str,
        skills: &[String],
        path: Option<&Path>,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, String> {
        let mut skills = skills.to_vec();
        skills.extend(crate::kafka::group::skill_topics::skill_topics(settings, group)?);
        skills.sort();
        skills.dedup();
        let topics = crate::kafka::group::timeline_topics(group, &skills);
        let (dir, path) = match path {
            Some(p) => (None, p.to_path_buf()),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("kafclaw-gateway-timeline")
                    .tempdir()
                    .map_err(|e| format!("a temporary directory for the timeline: {e}"))?;
                let path = dir.path().join("timeline.db");
                (Some(dir), path)
            }
        };
        let mut writer = Timeline::open(&path).map_err(|e| e.to_string())?;
        let reader = Timeline::open(&path).map_err(|e| e.to_string())?;
        let settings = settings.clone();
        let since_ms = dir.as_ref().map(|_| kafclaw_operators::api::record::now_ms() - LOOKBACK.as_millis() as i64);
        std::thread::Builder::new()
            .name("kafclaw-gateway-timeline".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match crate::kafka::timeline_feed::follow(&settings, &topics, &mut writer, false, since_ms, &stop) {
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "the console's timeline stopped following; again in 5 s");
                            std::thread::sleep(Duration::from_secs(5));
                        }
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        tracing::info!(path = %path.display(), "the console's timeline follows the group");
        Ok(Self { reader: Mutex::new(reader), _dir: dir })
    }

    /// The causal chain of `correlation_id` as the timeline holds it now
    /// ([`Timeline::chain`]).
    pub fn chain(
        &self,
        correlation_id: &str,
    ) -> Result<Vec<crate::timeline::ChainEntry>, crate::timeline::TimelineError> {
        self.reader.lock().unwrap_or_else(|p| p.into_inner()).chain(correlation_id)
    }

    /// A timeline read in place (tests: one written beforehand).
    #[cfg(test)]
    pub(super) fn reading(timeline: Timeline) -> Self {
        Self { reader: Mutex::new(timeline), _dir: None }
    }
}

/// Runs `query` on the console's timeline off the async runtime; `503` when the gateway keeps
/// none, `500` when SQLite fails.
async fn on_timeline<T: Send + 'static>(
    console: &Console,
    query: impl FnOnce(&Timeline) -> Result<T, crate::timeline::TimelineError> + Send + 'static,
) -> Result<T, Response> {
    let Some(timeline) = console.timeline.clone() else {
        return Err(refuse(StatusCode::SERVICE_UNAVAILABLE, "this gateway keeps no timeline"));
    };
    let done = tokio::task::spawn_blocking(move || {
        let reader = timeline.reader.lock().unwrap_or_else(|p| p.into_inner());
        query(&reader)
    })
    .await;
    match done {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "the console's timeline");
            Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))
        }
        Err(e) => Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())),
    }
}

/// `GET /console/api/tasks` query.
#[derive(Debug, Deserialize)]
pub(super) struct Search {
    /// A correlation id, task id or sender id (empty: the newest tasks).
    #[serde(default)]
    q: String,
}

/// `GET /console/api/tasks?q=` → `{"tasks": [{"correlation_id", "sender_id", "timestamp",
/// "type", "description", "latest"}]}`, newest first, at most 50: the user's own tasks (those
/// its sender id asked), or anyone's for a console admin.
pub(super) async fn list(
    State(console): State<Console>,
    Extension(user): Extension<ConsoleUser>,
    Query(search): Query<Search>,
) -> Response {
    let asked_by = (!console.is_admin(&user)).then(|| user.identity.sender_id.clone());
    match on_timeline(&console, move |t| t.tasks(&search.q, asked_by.as_deref(), LISTED)).await {
        Ok(tasks) => Json(json!({ "tasks": tasks })).into_response(),
        Err(r) => r,
    }
}

/// `GET /console/api/tasks/{id}/chain` → `{"chain": [...]}`: the entries of `kafclaw trace
/// <id> --json` (streamed deltas left out; at most [`CHAIN_ENTRIES`]), each with `what`, the
/// line `kafclaw trace` prints for it, and `text`, what it says (asked, answered, …). Only a
/// task the user asked, unless it is a console admin: else `404`, as for no task.
pub(super) async fn chain(
    State(console): State<Console>,
    Extension(user): Extension<ConsoleUser>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let asked_by = (!console.is_admin(&user)).then(|| user.identity.sender_id.clone());
    let read = on_timeline(&console, move |t| {
        if let Some(me) = &asked_by
            && t.tasks(&id, Some(me), 1)?.is_empty()
        {
            return Ok(None);
        }
        let mut chain = t.chain(&id)?;
        chain.retain(|e| !(e.kind_of_envelope == "task_status" && e.payload["status"] == "streaming"));
        chain.truncate(CHAIN_ENTRIES);
        Ok(Some(chain))
    });
    match read.await {
        Ok(None) => refuse(StatusCode::NOT_FOUND, "no task of yours has this id"),
        Ok(Some(chain)) => {
            let entries: Vec<Value> = chain
                .iter()
                .map(|e| {
                    let mut v = serde_json::to_value(e).unwrap_or_default();
                    v["what"] = json!(describe(e));
                    v["text"] = json!(crate::timeline::describe_what(e));
                    v
                })
                .collect();
            Json(json!({ "chain": entries })).into_response()
        }
        Err(r) => r,
    }
}

/// `GET /console/tasks`: search, submit, the newest tasks.
pub(super) async fn tasks_page(State(console): State<Console>, Extension(user): Extension<ConsoleUser>) -> Response {
    pages::page(&console, &user, "tasks.html", "tasks", minijinja::context! { skills => &*console.skills })
}

/// `GET /console/tasks/{id}`: one task's status, answer, causal chain and spans.
pub(super) async fn task_page(
    State(console): State<Console>,
    Extension(user): Extension<ConsoleUser>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    pages::page(&console, &user, "task.html", "tasks", minijinja::context! { task_id => id })
}
