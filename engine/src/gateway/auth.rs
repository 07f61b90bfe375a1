//! The gateway's bearer tokens: where they come from ([`TokenSource`], [`credentials`]), who
//! holds each ([`Identity`]), and the check of a request's `Authorization: Bearer` header
//! ([`authorized`], and the middleware [`require_token`] that the guarded routes — and any
//! other HTTP server of kafclaw with the same rule — put in front of their handlers).

use std::path::{Path as FilePath, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

/// Who holds a token: what the gateway stamps on the tasks submitted with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's name (logs only; never the secret).
    pub name: String,
    /// The `sender_id` and `payload.requester_id` of its tasks.
    pub sender_id: String,
    /// The `zone` of its tasks (none: group-wide).
    pub zone: Option<String>,
}

/// A bearer token and the identity of its holder.
#[derive(Clone)]
pub struct Credential {
    token: Vec<u8>,
    /// The holder.
    pub identity: Identity,
}

impl Credential {
    /// `token` (trimmed) for `identity`; the token is registered as a secret, so no log line
    /// or error shows it.
    pub fn new(token: &str, identity: Identity) -> Self {
        kafclaw_operators::api::secrets::register(token.trim());
        Self { token: token.trim().as_bytes().to_vec(), identity }
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential").field("token", &"***").field("identity", &self.identity).finish()
    }
}

/// Where the gateway's tokens come from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// One token in the environment variable `var`, for `sender_id` in `zone`.
    Env {
        /// The variable.
        var: String,
        /// The identity's sender id.
        sender_id: String,
        /// The identity's zone.
        zone: Option<String>,
    },
    /// A tokens file: `name sender_id zone token` per line (`-`: no zone).
    File(PathBuf),
}

/// The tokens of `source`; an error names what is missing or wrong.
pub fn credentials(source: &TokenSource) -> Result<Vec<Credential>, String> {
    credentials_from(source, |var| std::env::var(var).ok())
}

fn credentials_from(source: &TokenSource, env: impl Fn(&str) -> Option<String>) -> Result<Vec<Credential>, String> {
    match source {
        TokenSource::Env { var, sender_id, zone } => {
            let token = match env(var) {
                Some(t) if !t.trim().is_empty() => t,
                _ => {
                    return Err(format!(
                        "no bearer token: set {var} or pass --tokens-file (the gateway has no unauthenticated mode)"
                    ));
                }
            };
            if sender_id.trim().is_empty() {
                return Err("--sender-id is empty".to_owned());
            }
            let zone = zone.as_deref().map(str::trim).filter(|z| !z.is_empty() && *z != "-").map(str::to_owned);
            Ok(vec![Credential::new(
                &token,
                Identity { name: var.clone(), sender_id: sender_id.trim().to_owned(), zone },
            )])
        }
        TokenSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("--tokens-file {}: {e}", path.display()))?;
            warn_if_readable_by_others(path);
            parse_tokens(&text).map_err(|e| format!("--tokens-file {}:{e}", path.display()))
        }
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &FilePath) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path)
        && m.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "the tokens file is readable by group or others (chmod 600)");
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &FilePath) {}

/// The lines of a tokens file: `name sender_id zone token`; `-` is no zone; blank lines and
/// `#` comments are skipped. An error starts with the line number.
pub fn parse_tokens(text: &str) -> Result<Vec<Credential>, String> {
    let mut out: Vec<Credential> = Vec::new();
    for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, sender_id, zone, token] = fields[..] else {
            return Err(format!(
                "{n}: expected `name sender_id zone token` (zone `-` for none), got {} field(s)",
                fields.len()
            ));
        };
        if out.iter().any(|c| c.identity.name == name) {
            return Err(format!("{n}: token name `{name}` appears twice"));
        }
        if out.iter().any(|c| bool::from(c.token.as_slice().ct_eq(token.as_bytes()))) {
            return Err(format!("{n}: token `{name}` is the same secret as an earlier line (tokens must be unique)"));
        }
        let zone = (zone != "-").then(|| zone.to_owned());
        out.push(Credential::new(token, Identity { name: name.to_owned(), sender_id: sender_id.to_owned(), zone }));
    }
    if out.is_empty() {
        return Err("0: no token (the gateway has no unauthenticated mode)".to_owned());
    }
    Ok(out)
}

/// The bearer token of `headers`, if any.
/// The scheme is case-insensitive (RFC 9110 §11.1: `bearer`, `BEARER` are `Bearer`).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let given = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = given.split_once(' ')?;
    scheme.eq_ignore_ascii_case("Bearer").then(|| token.trim().as_bytes())
}

/// The identity whose token the request carries. Every token is compared, in constant time,
/// and the match is selected without a branch, so the timing tells neither whether nor which
/// token matched (only, as usual, the lengths of the tokens).
pub(crate) fn authorized<'c>(headers: &HeaderMap, credentials: &'c [Credential]) -> Option<&'c Identity> {
    identify(bearer(headers)?, credentials)
}

/// The identity whose token is `given`, compared with every token in constant time as
/// [`authorized`] does (the console's login form uses it too).
pub(crate) fn identify<'c>(given: &[u8], credentials: &'c [Credential]) -> Option<&'c Identity> {
    let mut found = Choice::from(0);
    let mut index = 0u64;
    for (i, c) in credentials.iter().enumerate() {
        let eq = given.ct_eq(&c.token);
        index.conditional_assign(&(i as u64), eq);
        found |= eq;
    }
    bool::from(found).then(|| &credentials[index as usize].identity)
}

/// The middleware of every guarded route: a request whose bearer token matches one of
/// `credentials` goes on with the token's [`Identity`] in its extensions; any other gets `401`
/// with `WWW-Authenticate: Bearer` and `{"error"}`. Use it with
/// `axum::middleware::from_fn_with_state(credentials, require_token)`.
pub(crate) async fn require_token(
    State(credentials): State<Arc<Vec<Credential>>>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(who) = authorized(request.headers(), &credentials).cloned() {
        request.extensions_mut().insert(who);
        next.run(request).await
    } else {
        // Read what the client sent (up to 1 MiB) before answering: a connection closed with
        // data unread is reset, and a client still sending may lose the 401 to the reset.
        let _ = axum::body::to_bytes(request.into_body(), 1 << 20).await;
        (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Bearer")],
            Json(json!({"error": "a valid bearer token is required"})),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(name: &str, sender: &str, zone: Option<&str>) -> Identity {
        Identity { name: name.into(), sender_id: sender.into(), zone: zone.map(Into::into) }
    }

    fn with(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        h
    }

    #[test]
    fn tokens_are_checked_whole() {
        let creds = [Credential::new("s3cret", who("a", "gateway", None))];
        assert!(authorized(&HeaderMap::new(), &creds).is_none());
        assert_eq!(authorized(&with("s3cret"), &creds).map(|i| i.name.as_str()), Some("a"));
        assert!(authorized(&with("s3cre"), &creds).is_none());
        assert!(authorized(&with("s3crett"), &creds).is_none());
        let mut h = HeaderMap::new();
        h.insert("authorization", "Basic s3cret".parse().unwrap());
        assert!(authorized(&h, &creds).is_none());
        for scheme in ["bearer", "BEARER"] {
            h.insert("authorization", format!("{scheme} s3cret").parse().unwrap());
            assert!(authorized(&h, &creds).is_some(), "{scheme}");
        }
        h.insert("authorization", "Bearers3cret".parse().unwrap());
        assert!(authorized(&h, &creds).is_none());
    }

    #[test]
    fn a_token_is_a_secret_no_text_shows() {
        let _ = Credential::new(" gw-token-for-redaction-test ", who("a", "a", None));
        let text = kafclaw_operators::api::secrets::redact("Authorization: Bearer gw-token-for-redaction-test");
        assert_eq!(text, "Authorization: Bearer [redacted]");
    }

    #[test]
    fn each_token_selects_its_own_identity() {
        let creds = parse_tokens(
            "# name sender_id zone token\n\nops  ops-console  -  tok-ops-1\npartner partner-acme external tok-partner-2\n",
        )
        .unwrap();
        assert_eq!(authorized(&with("tok-ops-1"), &creds), Some(&who("ops", "ops-console", None)));
        assert_eq!(authorized(&with("tok-partner-2"), &creds), Some(&who("partner", "partner-acme", Some("external"))));
        assert!(authorized(&with("tok-partner-"), &creds).is_none());
        assert!(authorized(&with(""), &creds).is_none());
        assert!(!format!("{creds:?}").contains("tok-ops-1"), "Debug hides the secrets");
    }

    #[test]
    fn tokens_files_with_mistakes_are_refused_by_line() {
        let err = |t: &str| parse_tokens(t).map(|_| ()).unwrap_err();
        assert!(err("a b c\n").starts_with("1: expected `name sender_id zone token`"), "{}", err("a b c"));
        assert!(err("a s - t1\na s2 - t2\n").contains("2: token name `a` appears twice"));
        assert!(err("a s - t1\n# c\nb s2 - t1\n").contains("3: token `b` is the same secret"));
        assert!(err("# only comments\n").contains("no token"));
    }

    #[test]
    fn the_env_token_has_the_default_identity() {
        let source = |zone: Option<&str>| TokenSource::Env {
            var: "KAFCLAW_GATEWAY_TOKEN".into(),
            sender_id: "gateway".into(),
            zone: zone.map(Into::into),
        };
        let e = credentials_from(&source(None), |_| None).unwrap_err();
        assert!(e.contains("no bearer token: set KAFCLAW_GATEWAY_TOKEN"), "{e}");
        let e = credentials_from(&source(None), |_| Some("  ".into())).unwrap_err();
        assert!(e.contains("no bearer token"), "{e}");
        let env = |_: &str| Some(" tok \n".to_owned());
        let c = credentials_from(&source(Some("-")), env).unwrap();
        assert_eq!(authorized(&with("tok"), &c), Some(&who("KAFCLAW_GATEWAY_TOKEN", "gateway", None)));
        let c = credentials_from(&source(Some("external")), env).unwrap();
        assert_eq!(c[0].identity.zone.as_deref(), Some("external"));
    }
}
