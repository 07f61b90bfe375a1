//! A fake external service for the effect-class tests (docs/effects.md), in the test process:
//! it counts the POSTs it receives by path and `Idempotency-Key`, and serves the status of a
//! call by key (`GET /status/<path>/<key>`: 200 and the first POST's answer when a POST with
//! that key reached `/<path>`, 404 when none did; `/status/broken/<key>` always answers 500).
//!
//! A hook runs inside every POST after it is counted and before it is answered (the chaos
//! test kills the instance there: the effect happened, the answer and the commit did not).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};

/// Called with (path, key) inside a POST, after it is counted.
pub type Hook = Arc<dyn Fn(&str, &str) + Send + Sync>;

#[derive(Default)]
struct Shared {
    /// (path, key) → POSTs received.
    posts: Mutex<BTreeMap<(String, String), usize>>,
    /// Status GETs received, by their key.
    gets: Mutex<Vec<String>>,
    hook: Mutex<Option<Hook>>,
}

/// The running service (on its own thread and runtime, for the test's life).
#[derive(Clone)]
pub struct EffectService {
    shared: Arc<Shared>,
    pub port: u16,
}

impl EffectService {
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let state = shared.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let app = Router::new()
                    .route("/status/{path}/{key}", get(status))
                    .route("/{path}", post(effect))
                    .with_state(state);
                axum::serve(tokio::net::TcpListener::from_std(listener).unwrap(), app).await.unwrap();
            });
        });
        Self { shared, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    /// The hook every POST runs after it is counted.
    pub fn set_hook(&self, hook: Hook) {
        *self.shared.hook.lock().unwrap() = Some(hook);
    }

    /// (path, key) → POSTs received.
    pub fn posts(&self) -> BTreeMap<(String, String), usize> {
        self.shared.posts.lock().unwrap().clone()
    }

    /// POSTs received on `path`, over every key.
    pub fn total(&self, path: &str) -> usize {
        self.posts().iter().filter(|((p, _), _)| p == path).map(|(_, n)| n).sum()
    }

    /// The keys status GETs asked about.
    pub fn gets(&self) -> Vec<String> {
        self.shared.gets.lock().unwrap().clone()
    }
}

async fn effect(State(s): State<Arc<Shared>>, Path(path): Path<String>, headers: HeaderMap) -> (StatusCode, String) {
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let n = {
        let mut posts = s.posts.lock().unwrap();
        let n = posts.entry((path.clone(), key.clone())).or_default();
        *n += 1;
        *n
    };
    let hook = s.hook.lock().unwrap().clone();
    if let Some(hook) = hook {
        hook(&path, &key);
    }
    (StatusCode::OK, format!("{path} done (post {n} of this key)"))
}

async fn status(State(s): State<Arc<Shared>>, Path((path, key)): Path<(String, String)>) -> (StatusCode, String) {
    s.gets.lock().unwrap().push(key.clone());
    if path == "broken" {
        return (StatusCode::INTERNAL_SERVER_ERROR, "status store down".into());
    }
    match s.posts.lock().unwrap().get(&(path.clone(), key)) {
        Some(_) => (StatusCode::OK, format!("{path} done (post 1 of this key)")),
        None => (StatusCode::NOT_FOUND, "no such call".into()),
    }
}
