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
        ConsoleSettings { secure_cookie },
    );
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
