//! The web console that `kafclaw gateway` serves under `/console`: the agent group in a
//! browser. Server-rendered HTML ([`minijinja`], templates and script embedded in the binary;
//! no build step), and a small script that refreshes each page's live parts from the
//! console's JSON routes without a reload.
//!
//! | route | |
//! |---|---|
//! | `GET /console/login` | the login page (no session needed) |
//! | `POST /console/login` | form `token=<a gateway token>` → `303` to `/console/` with the session cookie; a wrong token: `401` and the page again; another origin: `403` |
//! | `POST /console/logout` | ends the session (CSRF token needed) → `204`, the cookie cleared |
//! | `GET /console/` | **Group**: the live members, their skills, zone, role, model and last heartbeat |
//! | `GET /console/api/members` | the same as JSON: `{"ttl_ms", "members": [{"agent_id", "agent_name", "summary", "skills", "zone", "role", "model", "status", "joined_at", "last_seen", "last_seen_ms"}]}` |
//! | `GET /console/topologies` | **Topologies**: each running topology's graph (as `kafclaw graph` draws it) with records in and out per second per operator, consumer lag, dead letters and model calls in flight, from its instances' statuses — [`TopologyFeed`] |
//! | `GET /console/api/topologies` | the same as JSON |
//! | `GET /console/tasks` | **Tasks**: submit a task (to the group or a `--skill`); the tasks, newest first, searched by correlation id, task id or sender |
//! | `GET /console/tasks/{id}` | a task: status and answer, its causal chain as a graph (a lane per agent) and a timeline, its trace spans |
//! | `GET /console/api/tasks?q=` | the tasks as JSON, from the gateway's timeline ([`ConsoleTimeline`]) |
//! | `POST /console/api/tasks` | `{"description", "skill"?}` → `202 {"task_id", "topic"}`: the handler of `POST /v1/tasks`, as the session's identity (CSRF token needed) |
//! | `GET /console/api/tasks/{id}/status`, `…/trace` | the handlers of `GET /v1/tasks/{id}` and `GET /v1/traces/{id}` |
//! | `GET /console/api/tasks/{id}/chain` | `{"chain": [...]}`: what `kafclaw trace <id> --json` prints, each entry with its line (`what`) |
//! | `GET /console/dead-letters` | **Dead letters**: the newest letters of the `--dead-letters` topics, by topic (topology) and reason, with the failed record and its error headers; resubmit one, as it was or corrected |
//! | `GET /console/api/dead-letters?topic=` | the same as JSON (any other topic: `404`) |
//! | `POST /console/api/dead-letters/resubmit` | `{"topic", "partition", "offset", "value"?}`: the record written back to the topic it came from, with an `audit` envelope, in one transaction (CSRF token needed) — [`dead_letters`] |
//! | `GET /console/approvals` | **Approvals**: the pending approval requests (tool, arguments, summary) with approve and reject; only for a user whose token's `sender_id` is an `--approver` |
//! | `GET /console/api/approvals` | the same as JSON (the handler of `GET /v1/approvals`: `403` for a non-approver) |
//! | `POST /console/api/approvals/{id}/approve`, `…/reject` | `{"reason"?}` → the decision, approver = the session's `sender_id`, audited as on `/v1` (CSRF token needed) |
//! | `GET /console/assets/console.js` | the pages' script |
//!
//! **Who sees what.** A user acts as its token's identity, as on `/v1`. The Tasks page lists
//! and draws only the tasks its own sender id asked, unless that sender id is a console admin
//! (`--console-admin`, repeatable), who sees every task; the Dead letters page is for admins
//! only (a letter holds a raw, unredacted record, and a resubmission writes with the gateway's
//! credentials); approvals need `--approver`. None named: no one is an admin (fails closed).
//!
//! **Who may look.** The browser logs in with one of the gateway's bearer tokens (the same
//! tokens and identities as the API, compared the same constant-time way); the console then
//! holds an opaque session id in an HttpOnly, `SameSite=Strict` cookie ([`session`]). Without
//! a session, a page redirects (`303`) to the login page and every other console route
//! answers `401`. A state-changing request needs the session's CSRF token in `X-CSRF-Token`
//! (else `403`) and, when the browser names an `Origin`, the console's own. Pages are sent
//! with a Content-Security-Policy that runs only the console's own script, `no-store`, and
//! `frame-ancestors 'none'`.
//!
//! What a member announces (names, skills, summaries) is written by any agent of the group,
//! so the script puts it in the page as text, never as markup, and the templates escape.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Redirect, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::gateway::{Credential, auth::identify};
use crate::kafka::group::gateway_feed::Roster;

mod dead_letters;
mod members;
mod pages;
pub mod session;
mod tasks;
mod topologies;

pub use self::tasks::ConsoleTimeline;
pub use self::topologies::TopologyFeed;

use self::session::{ConsoleUser, Sessions};

/// The console's settings (`kafclaw gateway` flags).
#[derive(Debug, Clone, Default)]
pub struct ConsoleSettings {
    /// Mark the session cookie `Secure` (the console is reached over HTTPS, e.g. behind a
    /// TLS-terminating proxy): `--console-secure-cookie`.
    pub secure_cookie: bool,
    /// The sender ids whose users see every task and the dead letters: `--console-admin`.
    pub admins: Vec<String>,
}

/// What the console's routes share.
#[derive(Clone)]
pub struct Console {
    group: Arc<str>,
    credentials: Arc<Vec<Credential>>,
    sessions: Arc<Sessions>,
    roster: Arc<Mutex<Roster>>,
    /// The sender ids that may list and decide approvals (`--approver`).
    approvers: Arc<Vec<String>>,
    /// The skills tasks may be submitted to (`--skill`).
    skills: Arc<Vec<String>>,
    /// The timeline the Tasks pages read (none: they answer 503).
    timeline: Option<Arc<ConsoleTimeline>>,
    /// The cluster the Dead letters page reads and writes (none: it answers 503).
    kafka: Option<crate::kafka::ClientSettings>,
    /// The dead-letter topics the Dead letters page shows (`--dead-letters`).
    dead_letter_topics: Arc<Vec<String>>,
    /// At most this many Kafka reads of the Dead letters page at once.
    kafka_reads: Arc<tokio::sync::Semaphore>,
    /// The instances' statuses the Topologies page shows (none: it shows none).
    topologies: Option<Arc<TopologyFeed>>,
    settings: Arc<ConsoleSettings>,
}

impl Console {
    /// A console for `group`, whose users log in with `credentials`, showing the members of
    /// `roster`; the users whose sender id is one of `approvers` may decide approvals.
    pub fn new(
        group: &str,
        credentials: Arc<Vec<Credential>>,
        roster: Arc<Mutex<Roster>>,
        approvers: Arc<Vec<String>>,
        settings: ConsoleSettings,
    ) -> Self {
        Self {
            group: group.into(),
            credentials,
            sessions: Arc::default(),
            roster,
            approvers,
            skills: Arc::default(),
            timeline: None,
            kafka: None,
            dead_letter_topics: Arc::default(),
            kafka_reads: Arc::new(tokio::sync::Semaphore::new(2)),
            topologies: None,
            settings: Arc::new(settings),
        }
    }

    /// Whether `user` is a console admin (`--console-admin`).
    fn is_admin(&self, user: &ConsoleUser) -> bool {
        self.settings.admins.contains(&user.identity.sender_id)
    }

    /// The same console, showing the topologies `feed` follows.
    pub fn with_topologies(mut self, feed: Option<Arc<TopologyFeed>>) -> Self {
        self.topologies = feed;
        self
    }

    /// The same console, showing the dead letters of `topics` on the cluster of `kafka`.
    pub fn with_dead_letters(mut self, kafka: crate::kafka::ClientSettings, topics: Arc<Vec<String>>) -> Self {
        self.kafka = Some(kafka);
        self.dead_letter_topics = topics;
        self
    }

    /// The same console, offering tasks to the group and `skills`, and reading tasks' chains
    /// from `timeline`.
    pub fn with_tasks(mut self, skills: Arc<Vec<String>>, timeline: Option<Arc<ConsoleTimeline>>) -> Self {
        self.skills = skills;
        self.timeline = timeline;
        self
    }

    /// The console's routes, under `/console`, for a router of any state.
    pub fn router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let guarded = Router::new()
            .route("/console/", get(pages::group))
            .route("/console/approvals", get(pages::approvals))
            .route("/console/tasks", get(tasks::tasks_page))
            .route("/console/tasks/{id}", get(tasks::task_page))
            .route("/console/api/tasks", get(tasks::list))
            .route("/console/api/tasks/{id}/chain", get(tasks::chain))
            .route("/console/topologies", get(topologies::page))
            .route("/console/api/topologies", get(topologies::list))
            .route("/console/dead-letters", get(dead_letters::page))
            .route("/console/api/dead-letters", get(dead_letters::list))
            .route("/console/api/dead-letters/resubmit", post(dead_letters::resubmit))
            .route("/console/api/members", get(members::members))
            .route("/console/assets/console.js", get(pages::script))
            .route("/console/logout", post(logout))
            .route_layer(axum::middleware::from_fn_with_state(self.clone(), require_session));
        Router::new()
            .route("/console/login", get(pages::login).post(login))
            .route("/console", get(|| async { Redirect::to("/console/") }))
            .merge(guarded)
            .layer(axum::middleware::from_fn(security_headers))
            .with_state(self)
    }
}

/// The headers of every console answer: only the console's own script runs, nothing frames
/// it, nothing is cached, nothing is sniffed, no referrer leaves for another origin
/// (`same-origin`, not `no-referrer`: under `no-referrer` a browser sends `Origin: null` with
/// the console's own form posts, which the origin check must refuse).
pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; \
             img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn refuse(code: StatusCode, message: &str) -> Response {
    (code, Json(json!({ "error": message }))).into_response()
}

/// The middleware of every console route but login: a request with an open session goes on
/// as its [`ConsoleUser`] (and its token's [`Identity`](crate::gateway::Identity), for the
/// handlers the console shares with `/v1`); without one, a page (`GET` of a route outside `/console/api/` and
/// `/console/assets/`) is redirected to the login page and anything else answers `401`. A
/// request that changes state also needs the CSRF token and the console's origin (`403`).
pub(crate) async fn require_session(State(console): State<Console>, mut request: Request, next: Next) -> Response {
    let user = session::session_id(request.headers()).and_then(|id| console.sessions.user(id, Instant::now()));
    let Some(user) = user else {
        let path = request.uri().path();
        let page = !path.starts_with("/console/api/") && !path.starts_with("/console/assets/");
        return if request.method() == Method::GET && page {
            Redirect::to("/console/login").into_response()
        } else {
            refuse(StatusCode::UNAUTHORIZED, "log in to the console first")
        };
    };
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        if !session::same_origin(request.headers()) {
            return refuse(StatusCode::FORBIDDEN, "a request from another origin");
        }
        if !session::csrf_ok(request.headers(), &user) {
            return refuse(StatusCode::FORBIDDEN, "a missing or wrong CSRF token (X-CSRF-Token)");
        }
    }
    request.extensions_mut().insert(user.identity.clone());
    request.extensions_mut().insert(user);
    next.run(request).await
}

/// The login form's fields.
#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

/// `POST /console/login`: a token of the gateway opens a session.
async fn login(State(console): State<Console>, headers: HeaderMap, form: axum::extract::Form<LoginForm>) -> Response {
    // Login CSRF: another site's page must not log a browser in under the attacker's token.
    if !session::same_origin(&headers) {
        return refuse(StatusCode::FORBIDDEN, "a login from another origin");
    }
    let Some(identity) = identify(form.token.trim().as_bytes(), &console.credentials).cloned() else {
        tracing::warn!("console login with a wrong token");
        return (StatusCode::UNAUTHORIZED, pages::login_page(Some("That token is not one of this gateway's.")))
            .into_response();
    };
    let id = match console.sessions.open(identity.clone(), Instant::now()) {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "no random bytes for a console session");
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "no session could be opened");
        }
    };
    tracing::info!(token = %identity.name, sender_id = %identity.sender_id, "console login");
    let mut response = Redirect::to("/console/").into_response();
    response.headers_mut().insert(header::SET_COOKIE, session::set_cookie(&id, console.settings.secure_cookie));
    response
}

/// `POST /console/logout`: ends the session.
async fn logout(State(console): State<Console>, headers: HeaderMap) -> Response {
    if let Some(id) = session::session_id(&headers) {
        console.sessions.close(id);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, session::clear_cookie(console.settings.secure_cookie));
    response
}

#[cfg(test)]
mod tests;
