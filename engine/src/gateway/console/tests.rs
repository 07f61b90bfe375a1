//! The console's rules over a real listener: what answers without a session, the login and
//! its cookie, the CSRF and origin checks, logout, and the members' JSON.

use std::sync::{Arc, Mutex};

use kafclaw_operators::api::record::{format_time_ms, now_ms};
use kafclaw_operators::envelope::{Envelope, EnvelopeType};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

use super::*;
use crate::gateway::Identity;

const TOKEN: &str = "console-test-token-7f3a";

/// Serves a console whose roster holds a member named with markup; returns its base URL.
async fn serve(secure_cookie: bool) -> String {
    serve_with(ConsoleSettings { secure_cookie, admins: vec![] }, None).await
}

/// The same with `settings`, its Tasks pages reading `timeline`.
async fn serve_with(settings: ConsoleSettings, timeline: Option<crate::timeline::Timeline>) -> String {
    let credentials =
        vec![Credential::new(TOKEN, Identity { name: "ops".into(), sender_id: "ops-console".into(), zone: None })];
    let mut roster = Roster::default();
    let payload = serde_json::json!({"action": "join", "identity": {
        "agent_id": "echo-py", "agent_name": "<img src=x onerror=alert(1)>", "capabilities": ["echo"],
        "zone_id": "eu", "role": "worker", "model": "m", "status": "active"}});
    roster.apply(&Envelope::new(EnvelopeType::Announce, "a", "echo-py", format_time_ms(now_ms()), payload));
    let console = Console::new(
        "g1",
        Arc::new(credentials),
        Arc::new(Mutex::new(roster)),
        Arc::new(vec!["approver-1".into()]),
        settings,
    )
    .with_tasks(Arc::new(vec!["echo".into()]), timeline.map(|t| Arc::new(ConsoleTimeline::reading(t))));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, console.router::<()>()).await });
    format!("http://{addr}")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Logs in; returns the cookie pair (`kafclaw_console=…`) and the Set-Cookie line.
async fn log_in(base: &str) -> (String, String) {
    let r = client().post(format!("{base}/console/login")).form(&[("token", TOKEN)]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/console/");
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    (set.split(';').next().unwrap().to_owned(), set)
}

fn csrf_of(page: &str) -> String {
    let at = page.find(r#"<meta name="csrf-token" content=""#).expect("the page carries its CSRF token") + 33;
    page[at..at + 64].to_owned()
}

#[tokio::test]
async fn without_a_session_pages_redirect_to_login_and_everything_else_is_401() {
    let base = serve(false).await;
    let http = client();
    for page in ["/console/", "/console"] {
        let r = http.get(format!("{base}{page}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{page}");
        assert!(r.headers()[LOCATION].to_str().unwrap().starts_with("/console"), "{page}");
    }
    let r = http.get(format!("{base}/console/approvals")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    for path in ["/console/api/members", "/console/assets/console.js"] {
        assert_eq!(
            http.get(format!("{base}{path}")).send().await.unwrap().status(),
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    let r = http.post(format!("{base}/console/logout")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A made-up or stale session id is no session.
    let r =
        http.get(format!("{base}/console/api/members")).header("cookie", format!("kafclaw_console={}", "0".repeat(64)));
    assert_eq!(r.send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    // The bearer token is for the API, not the console's routes.
    let r = http.get(format!("{base}/console/api/members")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let r = http.get(format!("{base}/console/login")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.text().await.unwrap().contains(r#"name="token""#));
}

#[tokio::test]
async fn a_wrong_token_or_another_origin_opens_no_session() {
    let base = serve(false).await;
    let http = client();
    for token in ["", "console-test-token-7f3", "console-test-token-7f3aa", "CONSOLE-TEST-TOKEN-7F3A"] {
        let r = http.post(format!("{base}/console/login")).form(&[("token", token)]).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{token:?}");
        assert!(r.headers().get(SET_COOKIE).is_none());
        assert!(r.text().await.unwrap().contains("not one of this gateway"));
    }
    let r = http
        .post(format!("{base}/console/login"))
        .header("origin", "http://evil.example")
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get(SET_COOKIE).is_none());
    // No form at all.
    let r = http.post(format!("{base}/console/login")).body("x").send().await.unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
}

#[tokio::test]
async fn a_session_reads_the_pages_and_needs_the_csrf_token_to_log_out() {
    let base = serve(false).await;
    let http = client();
    let (cookie, set) = log_in(&base).await;
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Secure"), "{set}");
    assert!(!set.contains(TOKEN), "the cookie holds a session id, not the token");

    let page = http.get(format!("{base}/console/")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(page.contains("g1") && page.contains("ops-console"), "{page}");
    let csrf = csrf_of(&page);

    let members: serde_json::Value = http
        .get(format!("{base}/console/api/members"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let m = &members["members"][0];
    assert_eq!(
        (m["agent_id"].as_str(), m["zone"].as_str(), m["role"].as_str()),
        (Some("echo-py"), Some("eu"), Some("worker"))
    );
    assert_eq!(m["skills"], serde_json::json!(["echo"]));
    assert_eq!(m["agent_name"], "<img src=x onerror=alert(1)>", "data, escaped by whoever shows it");
    assert_eq!(members["ttl_ms"], 120_000);
    let page = http.get(format!("{base}/console/approvals")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(page.contains("ops-console is not an approver") && !page.contains(r#"id="approvals""#), "{page}");
    let js = http.get(format!("{base}/console/assets/console.js")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(js.headers()["content-type"], "text/javascript; charset=utf-8");
    assert!(!js.text().await.unwrap().contains("innerHTML"), "member data goes in as text");

    let logout = |headers: HeaderMap| {
        let http = http.clone();
        let url = format!("{base}/console/logout");
        let cookie = cookie.clone();
        async move { http.post(url).header("cookie", cookie).headers(headers).send().await.unwrap() }
    };
    let mut h = HeaderMap::new();
    assert_eq!(logout(h.clone()).await.status(), StatusCode::FORBIDDEN, "no CSRF token");
    h.insert("x-csrf-token", "0".repeat(64).parse().unwrap());
    assert_eq!(logout(h.clone()).await.status(), StatusCode::FORBIDDEN, "a wrong CSRF token");
    h.insert("x-csrf-token", csrf.parse().unwrap());
    h.insert("origin", "http://evil.example".parse().unwrap());
    assert_eq!(logout(h.clone()).await.status(), StatusCode::FORBIDDEN, "another origin");
    h.remove("origin");
    let r = logout(h.clone()).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    let r = http.get(format!("{base}/console/api/members")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "the session ended at logout");
}

#[tokio::test]
async fn behind_https_the_cookie_is_secure() {
    let base = serve(true).await;
    let (_, set) = log_in(&base).await;
    assert!(set.contains("; Secure"), "{set}");
}

#[tokio::test]
async fn tasks_are_listed_and_a_chain_read_from_the_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let mut timeline = crate::timeline::Timeline::open(&dir.path().join("t.db")).unwrap();
    let env = |kind, corr: &str, sender: &str, id: &str, cause: Option<&str>, p: serde_json::Value| {
        let mut e = Envelope::new(kind, corr, sender, "2026-12-02T10:00:00Z", p);
        e.id = Some(id.into());
        e.causation_id = cause.map(str::to_owned);
        e
    };
    let batch = vec![
        (
            "r".into(),
            0,
            0,
            1,
            env(
                EnvelopeType::Request,
                "task-1",
                "ops",
                "task-1",
                None,
                serde_json::json!({"task_id": "task-1", "description": "refund?"}),
            ),
        ),
        (
            "s".into(),
            0,
            0,
            2,
            env(
                EnvelopeType::SkillRequest,
                "d-1",
                "agent-a",
                "d-1",
                Some("task-1"),
                serde_json::json!({"description": "policy?"}),
            ),
        ),
        (
            "t".into(),
            0,
            0,
            3,
            env(
                EnvelopeType::SkillResponse,
                "d-1",
                "agent-b",
                "d-2",
                Some("d-1"),
                serde_json::json!({"content": "<b>no</b>"}),
            ),
        ),
        (
            "u".into(),
            0,
            0,
            4,
            env(
                EnvelopeType::Response,
                "task-1",
                "agent-a",
                "a-1",
                Some("task-1"),
                serde_json::json!({"status": "completed", "content": "no"}),
            ),
        ),
    ];
    timeline.record(&batch).unwrap();
    // A console admin sees every task.
    let base =
        serve_with(ConsoleSettings { secure_cookie: false, admins: vec!["ops-console".into()] }, Some(timeline)).await;
    let (cookie, _) = log_in(&base).await;
    let http = client();
    let get = |path: String| {
        let (http, cookie) = (http.clone(), cookie.clone());
        async move { http.get(path).header("cookie", cookie).send().await.unwrap() }
    };
    let tasks: serde_json::Value = get(format!("{base}/console/api/tasks?q=ops")).await.json().await.unwrap();
    let t = &tasks["tasks"][0];
    assert_eq!(tasks["tasks"].as_array().unwrap().len(), 1, "{tasks}");
    assert_eq!((t["correlation_id"].as_str(), t["latest"].as_str()), (Some("task-1"), Some("response completed")));
    let none: serde_json::Value = get(format!("{base}/console/api/tasks?q=nobody")).await.json().await.unwrap();
    assert_eq!(none["tasks"], serde_json::json!([]));
    let chain: serde_json::Value = get(format!("{base}/console/api/tasks/task-1/chain")).await.json().await.unwrap();
    let who: Vec<&str> = chain["chain"].as_array().unwrap().iter().map(|e| e["sender_id"].as_str().unwrap()).collect();
    assert_eq!(who, ["ops", "agent-a", "agent-b", "agent-a"], "{chain}");
    assert!(chain["chain"][2]["what"].as_str().unwrap().contains("agent-b [skill_response] answered: <b>no</b>"));

    let page = get(format!("{base}/console/tasks")).await.text().await.unwrap();
    assert!(page.contains(r#"<option value="echo">skill echo</option>"#), "{page}");
    let page = get(format!("{base}/console/tasks/%3Cscript%3Ex")).await.text().await.unwrap();
    assert!(page.contains("&lt;script&gt;x") && !page.contains("<script>x"), "{page}");
    // Anyone else sees the tasks it asked only: not `ops`'s, by listing or by id.
    let dir2 = tempfile::tempdir().unwrap();
    let mut theirs = crate::timeline::Timeline::open(&dir2.path().join("t.db")).unwrap();
    theirs.record(&batch).unwrap();
    let mine = env(
        EnvelopeType::Request,
        "task-2",
        "ops-console",
        "task-2",
        None,
        serde_json::json!({"task_id": "task-2", "description": "mine"}),
    );
    theirs.record(&[("r".into(), 0, 9, 9, mine)]).unwrap();
    let plain = serve_with(ConsoleSettings::default(), Some(theirs)).await;
    let (cookie, _) = log_in(&plain).await;
    let listed: serde_json::Value = http
        .get(format!("{plain}/console/api/tasks"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> =
        listed["tasks"].as_array().unwrap().iter().map(|t| t["correlation_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["task-2"], "{listed}");
    let r = http.get(format!("{plain}/console/api/tasks/task-1/chain")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "another's task");
    let r = http.get(format!("{plain}/console/api/tasks/task-2/chain")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Without a timeline the Tasks routes say so.
    let bare = serve(false).await;
    let (cookie, _) = log_in(&bare).await;
    let r = http.get(format!("{bare}/console/api/tasks")).header("cookie", cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Not without a session.
    let r = client().get(format!("{base}/console/api/tasks/task-1/chain")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn dead_letters_are_read_only_from_the_gateways_topics() {
    let http = client();
    // Not a console admin: 403, and the page says why.
    let plain = serve(false).await;
    let (cookie, _) = log_in(&plain).await;
    let r = http
        .get(format!("{plain}/console/api/dead-letters?topic=a.dlq"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let page = http.get(format!("{plain}/console/dead-letters")).header("cookie", &cookie).send().await.unwrap();
    assert!(page.text().await.unwrap().contains("not a console admin"));
    let admin = || ConsoleSettings { secure_cookie: false, admins: vec!["ops-console".into()] };
    let base = serve_with(admin(), None).await;
    let (cookie, _) = log_in(&base).await;
    // No cluster behind this console: 503, after the session check.
    let r = http
        .get(format!("{base}/console/api/dead-letters?topic=a.dlq"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let r = client().get(format!("{base}/console/api/dead-letters?topic=a.dlq")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let page =
        http.get(format!("{base}/console/")).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    let csrf = csrf_of(&page);
    let resubmit = |body: &'static str, csrf: Option<String>| {
        let (http, cookie, url) = (http.clone(), cookie.clone(), format!("{base}/console/api/dead-letters/resubmit"));
        async move {
            let mut r = http.post(url).header("cookie", cookie).header("content-type", "application/json").body(body);
            if let Some(c) = csrf {
                r = r.header("x-csrf-token", c);
            }
            r.send().await.unwrap().status()
        }
    };
    let body = r#"{"topic":"a.dlq","partition":0,"offset":0}"#;
    assert_eq!(resubmit(body, None).await, StatusCode::FORBIDDEN, "no CSRF token");
    assert_eq!(resubmit(body, Some(csrf.clone())).await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        resubmit(r#"{"topic":"a.dlq","partition":0,"offset":0,"to":"x"}"#, Some(csrf)).await,
        StatusCode::BAD_REQUEST
    );

    // With a cluster, a topic the gateway was not given is not read: 404 before any call.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let credentials =
        vec![Credential::new(TOKEN, Identity { name: "ops".into(), sender_id: "ops-console".into(), zone: None })];
    let console = Console::new("g1", Arc::new(credentials), Arc::default(), Arc::default(), admin()).with_dead_letters(
        crate::kafka::ClientSettings::from_env(Some("127.0.0.1:1".into())),
        Arc::new(vec!["a.dlq".into()]),
    );
    tokio::spawn(async move { axum::serve(listener, console.router::<()>()).await });
    let base = format!("http://{addr}");
    let (cookie, _) = log_in(&base).await;
    for topic in ["__consumer_offsets", "group.g1.requests", "a.dlq2"] {
        let r = http
            .get(format!("{base}/console/api/dead-letters?topic={topic}"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{topic}");
    }
}
