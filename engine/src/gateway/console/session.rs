//! The console's sessions: a browser logs in once with a gateway token and then holds an
//! opaque session id in an HttpOnly cookie, never the token itself. Every state-changing
//! request must also carry the session's CSRF token (a synchronizer token, OWASP's "CSRF
//! Prevention Cheat Sheet") in `X-CSRF-Token`, and, when the browser sends an `Origin`, come
//! from the console's own origin.
//!
//! Session ids and CSRF tokens are 256 random bits from the operating system (`getrandom`).
//! The store keeps only the SHA-256 of each session id (a memory dump or a timing probe of
//! the map learns nothing usable), and compares CSRF tokens in constant time. A session ends
//! after [`IDLE`] without a request, after [`MAX_AGE`] in all, or at logout; at most
//! [`MAX_SESSIONS`] are kept (the least recently used is dropped first).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::gateway::Identity;

/// The session cookie's name.
pub const COOKIE: &str = "kafclaw_console";
/// The header a state-changing request carries the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A session unused this long ends.
pub const IDLE: Duration = Duration::from_secs(8 * 3600);
/// A session ends this long after its login, used or not (the cookie's `Max-Age`).
pub const MAX_AGE: Duration = Duration::from_secs(12 * 3600);
/// Most sessions kept at once.
pub const MAX_SESSIONS: usize = 10_000;
/// Most sessions one token keeps at once (its least recently used goes first): one token
/// holder logging in in a loop cannot push everyone else's sessions out.
pub const MAX_SESSIONS_PER_TOKEN: usize = 64;

/// Who a logged-in request acts as: put in the request's extensions by the session check.
#[derive(Debug, Clone)]
pub struct ConsoleUser {
    /// The identity of the token the session was opened with.
    pub identity: Identity,
    /// The session's CSRF token (64 hex digits), for the pages to hand to their script.
    pub csrf: String,
}

struct Session {
    user: ConsoleUser,
    opened: Instant,
    used: Instant,
}

/// The open sessions, by the SHA-256 of their id.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<[u8; 32], Session>>,
}

/// 256 random bits as 64 hex digits.
fn secret() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// Opens a session for `identity`; returns its id (the cookie's value). Fails only when
    /// the operating system gives no random bytes.
    pub fn open(&self, identity: Identity, now: Instant) -> Result<String, getrandom::Error> {
        let id = secret()?;
        let user = ConsoleUser { identity, csrf: secret()? };
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|_, s| live(s, now));
        let name = &user.identity.name;
        while open.values().filter(|s| &s.user.identity.name == name).count() >= MAX_SESSIONS_PER_TOKEN {
            let oldest = open.iter().filter(|(_, s)| &s.user.identity.name == name).min_by_key(|(_, s)| s.used);
            let Some(k) = oldest.map(|(k, _)| *k) else { break };
            open.remove(&k);
        }
        while open.len() >= MAX_SESSIONS {
            let Some(oldest) = open.iter().min_by_key(|(_, s)| s.used).map(|(k, _)| *k) else { break };
            open.remove(&oldest);
        }
        open.insert(digest(&id), Session { user, opened: now, used: now });
        Ok(id)
    }

    /// The user of session `id`, if it is open at `now` (and marks it used).
    pub fn user(&self, id: &str, now: Instant) -> Option<ConsoleUser> {
        let key = digest(id);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let session = open.get_mut(&key)?;
        if !live(session, now) {
            open.remove(&key);
            return None;
        }
        session.used = now;
        Some(session.user.clone())
    }

    /// Ends session `id` (nothing when it is not open).
    pub fn close(&self, id: &str) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(&digest(id));
    }

    /// How many sessions are held (open or not yet swept).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn live(s: &Session, now: Instant) -> bool {
    now.saturating_duration_since(s.used) < IDLE && now.saturating_duration_since(s.opened) < MAX_AGE
}

/// The value of the session cookie among the request's `Cookie` headers (RFC 6265 §5.4:
/// `name=value` pairs separated by `; `), if any.
pub fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value that gives the browser session `id`: HttpOnly (no script reads
/// it), `SameSite=Strict` (no other site's page sends it), scoped to `/console`, and
/// `Secure` when the console is served over HTTPS (`secure`).
pub fn set_cookie(id: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let max_age = MAX_AGE.as_secs();
    // The id is hex: always a valid header value.
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .expect("hex is a valid header value")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{secure}"))
        .expect("a valid header value")
}

/// Whether `headers` carry `user`'s CSRF token (compared in constant time).
pub fn csrf_ok(headers: &HeaderMap, user: &ConsoleUser) -> bool {
    headers.get(CSRF_HEADER).is_some_and(|v| bool::from(v.as_bytes().ct_eq(user.csrf.as_bytes())))
}

/// Whether the request comes from the console's own origin as far as the browser says: no
/// `Origin` header (not a cross-origin browser request), or one whose host is the `Host` the
/// request was sent to (`Origin: null`, sent by sandboxed and privacy-sensitive contexts, is
/// not the console's).
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let (Ok(origin), Some(host)) = (origin.to_str(), headers.get(header::HOST).and_then(|h| h.to_str().ok())) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https") && rest.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> Identity {
        Identity { name: "ops".into(), sender_id: "ops-console".into(), zone: None }
    }

    #[test]
    fn a_session_is_found_by_its_id_only_and_ends_idle_old_or_closed() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let id = sessions.open(who(), t0).unwrap();
        assert_eq!(id.len(), 64);
        let user = sessions.user(&id, t0).unwrap();
        assert_eq!(user.identity, who());
        assert_eq!(user.csrf.len(), 64);
        assert_ne!(user.csrf, id);
        assert!(sessions.user(&id[..63], t0).is_none());
        assert!(sessions.user(&format!("{id}0"), t0).is_none());
        // Used within IDLE it stays; unused for IDLE it ends.
        let later = t0 + IDLE - Duration::from_secs(1);
        assert!(sessions.user(&id, later).is_some());
        assert!(sessions.user(&id, later + IDLE).is_none());
        // Kept in use, it still ends at MAX_AGE.
        let id = sessions.open(who(), t0).unwrap();
        let mut t = t0;
        while t < t0 + MAX_AGE - Duration::from_secs(3600) {
            t += Duration::from_secs(3600);
            assert!(sessions.user(&id, t).is_some());
        }
        assert!(sessions.user(&id, t0 + MAX_AGE).is_none());
        let id = sessions.open(who(), t0).unwrap();
        sessions.close(&id);
        assert!(sessions.user(&id, t0).is_none());
    }

    #[test]
    fn one_token_keeps_a_bounded_number_of_sessions() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let other = Identity { name: "partner".into(), sender_id: "p".into(), zone: None };
        let theirs = sessions.open(other, t0).unwrap();
        let first = sessions.open(who(), t0).unwrap();
        for i in 0..MAX_SESSIONS_PER_TOKEN {
            sessions.open(who(), t0 + Duration::from_millis(1 + i as u64)).unwrap();
        }
        assert_eq!(sessions.len(), MAX_SESSIONS_PER_TOKEN + 1);
        assert!(sessions.user(&first, t0 + Duration::from_secs(1)).is_none(), "its oldest went");
        assert!(sessions.user(&theirs, t0 + Duration::from_secs(1)).is_some(), "another token's stays");
    }

    #[test]
    fn the_store_is_bounded_and_drops_the_least_recently_used() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let n = |i: usize| Identity { name: format!("t{i}"), sender_id: "s".into(), zone: None };
        let first = sessions.open(n(0), t0).unwrap();
        let second = sessions.open(n(1), t0 + Duration::from_millis(1)).unwrap();
        assert!(sessions.user(&first, t0 + Duration::from_millis(2)).is_some());
        for i in 0..MAX_SESSIONS - 1 {
            sessions.open(n(i + 2), t0 + Duration::from_millis(3 + i as u64)).unwrap();
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(sessions.user(&second, t0 + Duration::from_secs(60)).is_none(), "least recently used");
        assert!(sessions.user(&first, t0 + Duration::from_secs(60)).is_some());
    }

    #[test]
    fn the_cookie_is_read_among_others_and_set_http_only_and_strict() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; kafclaw_console_x=2".parse().unwrap());
        assert_eq!(session_id(&h), None, "a longer name is another cookie");
        h.append(header::COOKIE, "b=3;kafclaw_console=abc ; c=4".parse().unwrap());
        assert_eq!(session_id(&h), Some("abc"));
        h.insert(header::COOKIE, "kafclaw_console=".parse().unwrap());
        assert_eq!(session_id(&h), None);
        let c = set_cookie("abc", false);
        let c = c.to_str().unwrap();
        for attr in ["kafclaw_console=abc", "Path=/console", "HttpOnly", "SameSite=Strict", "Max-Age=43200"] {
            assert!(c.contains(attr), "{c}");
        }
        assert!(!c.contains("Secure"));
        assert!(set_cookie("abc", true).to_str().unwrap().ends_with("; Secure"));
        assert!(clear_cookie(false).to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn origins_and_csrf_tokens_are_checked_whole() {
        let user = ConsoleUser { identity: who(), csrf: "ab".repeat(32) };
        let mut h = HeaderMap::new();
        assert!(!csrf_ok(&h, &user));
        h.insert(CSRF_HEADER, "ab".repeat(31).parse().unwrap());
        assert!(!csrf_ok(&h, &user));
        h.insert(CSRF_HEADER, "ab".repeat(32).parse().unwrap());
        assert!(csrf_ok(&h, &user));

        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8470".parse().unwrap());
        assert!(same_origin(&h), "no Origin: not a cross-origin browser request");
        for (origin, ok) in [
            ("http://127.0.0.1:8470", true),
            ("https://127.0.0.1:8470", true),
            ("http://127.0.0.1:8471", false),
            ("http://evil.example", false),
            ("http://127.0.0.1:8470.evil.example", false),
            ("null", false),
            ("file://127.0.0.1:8470", false),
        ] {
            h.insert(header::ORIGIN, origin.parse().unwrap());
            assert_eq!(same_origin(&h), ok, "{origin}");
        }
        h.remove(header::HOST);
        assert!(!same_origin(&h), "an Origin and no Host");
    }
}
