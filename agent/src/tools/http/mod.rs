//! `http`: calls a URL on an allow-listed host and port (GET or POST). A tool whose effect
//! class is not `none` (POST by default) sends an `Idempotency-Key` header that is stable for
//! one step of one input, so a replayed call is recognised by the other side; with
//! `effect = "reconcile"`, `reconcile_url` asks the other side whether a call happened
//! ([`Tool::reconcile`], docs/effects.md).
//!
//! What a call may reach (server-side request forgery is the threat: the model chooses the
//! URL, and a page or a redirect may try to steer it):
//!
//! - **Every hop is checked.** reqwest follows no redirect by itself; the tool follows at most
//!   `max_redirects`, and checks each `Location` as it checked the first URL (scheme, no
//!   credentials, host *and* port on `allow_hosts`, a literal address's class). A refused hop
//!   fails the call naming the refused location. 301/302/303 continue as GET without a body;
//!   307/308 repeat the method, body and `Idempotency-Key`.
//! - **Addresses are checked after resolution, and the connection goes to the checked
//!   address.** Names are resolved by [`resolve::PinnedResolver`], the client's only resolver,
//!   which returns only permitted addresses; reqwest connects to those (no second lookup, so a
//!   DNS answer that changes between check and connect — rebinding — cannot slip through).
//!   IP-literal hosts bypass resolvers, so the URL check judges them (after the URL parser's
//!   normalisation: `127.1`, `0x7f.1`, `2130706433`, `[::ffff:127.0.0.1]` are all 127.0.0.1).
//!   Loopback, private, link-local, unique-local, CGNAT, unspecified, broadcast, multicast,
//!   documentation and reserved ranges, cloud metadata endpoints and the IPv6 forms embedding
//!   such an IPv4 address (mapped, compatible, NAT64, 6to4) are refused unless
//!   `allow_addresses` names the address or a range holding it.
//! - **No proxy**: `HTTP_PROXY` and friends are ignored. No response decompression is enabled,
//!   so `max_bytes` bounds the bytes read from the network.
//! - **Bounded**: the body is read as a stream and cut at `max_bytes` (the result then ends
//!   saying it was truncated, and the connection is dropped); `timeout` bounds the whole call:
//!   connecting, every redirect and the body.

mod addr;
mod policy;
mod resolve;

use std::sync::Arc;
use std::time::Duration;

use reqwest::{StatusCode, Url, header};
use serde_json::{Value, json};

use super::effect::{Effect, ReconcileFuture, Reconciled};
use super::{CallContext, Tool, ToolFuture, ToolOutput, ToolResult};
use policy::Policy;

/// Default `max_bytes`: 1 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 20;
/// Default `max_redirects`.
pub const DEFAULT_MAX_REDIRECTS: u32 = 5;

pub(crate) fn default_max_bytes() -> u64 {
    DEFAULT_MAX_BYTES
}
pub(crate) fn default_max_redirects() -> u32 {
    DEFAULT_MAX_REDIRECTS
}

/// How an `http` tool is built (the `[tools.<name>]` table, see `ToolConfig::Http`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// `host` (default port of the scheme only), `host:port`, `[v6]:port`, `*.example.com`.
    pub allow_hosts: Vec<String>,
    /// Special addresses or CIDR ranges that may be reached (`127.0.0.1`, `10.0.0.0/8`).
    pub allow_addresses: Vec<String>,
    /// `GET` or `POST`.
    pub method: String,
    /// Time limit of a whole call.
    pub timeout: Duration,
    /// Most redirects followed.
    pub max_redirects: u32,
    /// Largest body handed back, in bytes.
    pub max_bytes: u64,
    /// What the model is told.
    pub description: Option<String>,
    /// The effect class (default: `none` for GET, `idempotent` for POST).
    pub effect: Option<Effect>,
    /// The status URL of a call, with `{idempotency_key}` (the `reconcile` class).
    pub reconcile_url: Option<String>,
}

/// The placeholder of `reconcile_url`.
const KEY_PLACEHOLDER: &str = "{idempotency_key}";

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            allow_hosts: Vec::new(),
            allow_addresses: Vec::new(),
            method: "GET".into(),
            timeout: Duration::from_secs(10),
            max_redirects: DEFAULT_MAX_REDIRECTS,
            max_bytes: DEFAULT_MAX_BYTES,
            description: None,
            effect: None,
            reconcile_url: None,
        }
    }
}

/// `http`.
#[derive(Debug)]
pub struct HttpTool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    policy: Arc<Policy>,
    /// `Err`: the tool could not be built (only through [`HttpTool::new`]); every call fails.
    client: Result<reqwest::Client, String>,
    post: bool,
    timeout: Duration,
    max_redirects: u32,
    max_bytes: usize,
    description: String,
    effect: Effect,
    reconcile_url: Option<String>,
}

impl HttpTool {
    /// A tool for `allow_hosts` with the defaults otherwise and no `allow_addresses`. An
    /// invalid entry makes every call fail (use [`HttpTool::with_options`] to see the error).
    pub fn new(allow_hosts: Vec<String>, method: String, timeout: Duration, description: Option<String>) -> Self {
        let options = HttpOptions { allow_hosts, method, timeout, description, ..HttpOptions::default() };
        Self::with_options(options.clone()).unwrap_or_else(|e| Self {
            inner: Arc::new(Inner {
                policy: Arc::new(Policy::default()),
                client: Err(e),
                post: options.method.eq_ignore_ascii_case("POST"),
                timeout,
                max_redirects: 0,
                max_bytes: 0,
                description: String::new(),
                effect: Effect::default_for(options.method.eq_ignore_ascii_case("POST"), true),
                reconcile_url: None,
            }),
        })
    }

    /// A tool built from `options`; the error names the entry or option at fault.
    pub fn with_options(options: HttpOptions) -> Result<Self, String> {
        let post = match options.method.to_ascii_uppercase().as_str() {
            "GET" => false,
            "POST" => true,
            m => return Err(format!("method `{m}`: GET or POST")),
        };
        if options.max_bytes == 0 {
            return Err("max_bytes must be at least 1".into());
        }
        let policy = Arc::new(Policy::new(&options.allow_hosts, &options.allow_addresses)?);
        if let Some(template) = &options.reconcile_url {
            if !template.contains(KEY_PLACEHOLDER) {
                return Err(format!(
                    "`reconcile_url` `{template}` has no `{KEY_PLACEHOLDER}` to put the call's key in"
                ));
            }
            let u = Url::parse(&template.replace(KEY_PLACEHOLDER, "k"))
                .map_err(|e| format!("`reconcile_url` `{template}`: {e}"))?;
            policy.check_url(&u).map_err(|e| format!("`reconcile_url` `{template}`: {e}"))?;
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(resolve::PinnedResolver { policy: policy.clone() }))
            .connect_timeout(options.timeout)
            .timeout(options.timeout)
            .build()
            .map_err(|e| format!("the HTTP client: {e}"))?;
        let verb = if post { "POST to" } else { "GET" };
        let description =
            options.description.unwrap_or_else(|| format!("{verb} a URL on {}.", options.allow_hosts.join(", ")));
        Ok(Self {
            inner: Arc::new(Inner {
                policy,
                client: Ok(client),
                post,
                timeout: options.timeout,
                max_redirects: options.max_redirects,
                max_bytes: usize::try_from(options.max_bytes).unwrap_or(usize::MAX),
                description,
                effect: options.effect.unwrap_or(Effect::default_for(post, true)),
                reconcile_url: options.reconcile_url,
            }),
        })
    }

    /// Checks a URL as the first hop is checked (scheme, credentials, host and port, a
    /// literal address); a name's addresses are checked when it is resolved.
    pub fn check(&self, url: &str) -> Result<Url, String> {
        self.inner.check(url)
    }
}

impl Inner {
    fn check(&self, url: &str) -> Result<Url, String> {
        let u = Url::parse(url).map_err(|e| format!("`{url}`: {e}"))?;
        self.policy.check_url(&u).map_err(|e| format!("refused: `{url}`: {e}"))?;
        Ok(u)
    }

    /// One call: hops until a non-redirect response, then its body up to `max_bytes`.
    async fn fetch(&self, start: String, body: String, key: String) -> ToolResult {
        let key = (self.effect != Effect::None).then_some(key);
        let (status, url, text) = self.exchange(start, self.post, body, key).await?;
        if status.is_success() { Ok(ToolOutput::from(text)) } else { Err(format!("`{url}`: HTTP {status}: {text}")) }
    }

    /// One exchange (POST when `post`): its final status, URL and body. `key` goes along as
    /// `Idempotency-Key`, on every hop but those a 301/302/303 turned from a POST into a GET.
    async fn exchange(
        &self,
        start: String,
        post: bool,
        body: String,
        mut key: Option<String>,
    ) -> Result<(StatusCode, Url, String), String> {
        let client = self.client.as_ref().map_err(|e| format!("the http tool is misconfigured: {e}"))?;
        let mut url = self.check(&start)?;
        let mut post = post;
        let mut hops = 0;
        loop {
            let mut request = if post { client.post(url.clone()).body(body.clone()) } else { client.get(url.clone()) };
            if let Some(key) = &key {
                request = request.header("Idempotency-Key", key);
            }
            let resp = request.send().await.map_err(|e| describe(&url, &e, self.timeout))?;
            let status = resp.status();
            let location =
                resp.headers().get(header::LOCATION).map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned());
            if let (true, Some(location)) = (is_redirect(status), location) {
                let next = url.join(&location).map_err(|e| format!("refused: redirect to `{location}`: {e}"))?;
                if hops >= self.max_redirects {
                    return Err(format!(
                        "refused: more than {} redirects (max_redirects); `{url}` redirects to `{next}`",
                        self.max_redirects
                    ));
                }
                self.policy.check_url(&next).map_err(|e| format!("refused: redirect from `{url}` to `{next}`: {e}"))?;
                hops += 1;
                if matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND | StatusCode::SEE_OTHER) {
                    if post {
                        key = None;
                    }
                    post = false;
                }
                url = next;
                continue;
            }
            let (bytes, truncated) =
                read_capped(resp, self.max_bytes).await.map_err(|e| describe(&url, &e, self.timeout))?;
            return Ok((status, url, decode(bytes, truncated, self.max_bytes)));
        }
    }

    /// The reconcile action: a GET of `reconcile_url` with the key. 2xx: done (the body);
    /// 404: absent; anything else, or no answer: unknown.
    async fn reconcile(&self, template: &str, key: String) -> Reconciled {
        let url = template.replace(KEY_PLACEHOLDER, &encode(&key));
        match self.exchange(url.clone(), false, String::new(), Some(key)).await {
            Ok((status, _, body)) if status.is_success() => Reconciled::Done(body),
            Ok((StatusCode::NOT_FOUND, _, _)) => Reconciled::Absent,
            Ok((status, url, body)) => Reconciled::Unknown(format!("`{url}`: HTTP {status}: {body}")),
            Err(e) => Reconciled::Unknown(e),
        }
    }
}

/// `text` percent-encoded but for the URL-unreserved characters (a key holds `/`).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// Reads at most `cap` bytes of the body, chunk by chunk; `true` when more was left.
async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let hint = resp.content_length().unwrap_or(0).min(cap as u64).min(DEFAULT_MAX_BYTES);
    let mut buf = Vec::with_capacity(hint as usize);
    while let Some(chunk) = resp.chunk().await? {
        let room = cap - buf.len();
        if chunk.len() > room {
            buf.extend_from_slice(&chunk[..room]);
            return Ok((buf, true));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((buf, false))
}

/// The body as text (invalid UTF-8 replaced; a character cut by the cap dropped), with a last
/// line saying so when it was cut.
fn decode(mut bytes: Vec<u8>, truncated: bool, cap: usize) -> String {
    if truncated
        && let Err(e) = std::str::from_utf8(&bytes)
        && e.error_len().is_none()
    {
        bytes.truncate(e.valid_up_to());
    }
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if truncated {
        text.push_str(&format!("\n[kafclaw: the body was truncated at {cap} bytes (max_bytes)]"));
    }
    text
}

fn timed_out(url: &str, limit: Duration) -> String {
    format!("`{url}`: timed out after {limit:?} (the limit covers connecting, redirects and the body)")
}

/// A reqwest error with its causes (a refused resolution is the innermost one).
fn describe(url: &Url, e: &reqwest::Error, limit: Duration) -> String {
    if e.is_timeout() {
        return timed_out(url.as_str(), limit);
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// The `url` and `body` of a call, as the parameters schema says: both strings, `body`
/// optional (empty when absent or null). Anything else is refused before any request (a
/// `body` object or number is not silently sent as an empty body).
fn arguments(args: &Value) -> Result<(String, String), String> {
    let url = match &args["url"] {
        Value::String(u) => u.clone(),
        Value::Null => return Err("refused: the arguments have no `url` (a string); nothing was sent".into()),
        other => return Err(format!("refused: `url` must be a string, not {other}; nothing was sent")),
    };
    let body = match &args["body"] {
        Value::String(b) => b.clone(),
        Value::Null => String::new(),
        other => {
            return Err(format!(
                "refused: `body` must be a string (serialise JSON into it), not {other}; nothing was sent"
            ));
        }
    };
    Ok((url, body))
}

impl Tool for HttpTool {
    fn description(&self) -> String {
        self.inner.description.clone()
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"url": {"type": "string"}, "body": {"type": "string"}}, "required": ["url"]})
    }
    fn side_effects(&self) -> bool {
        self.inner.post
    }
    fn idempotent(&self) -> bool {
        true
    }
    fn effect(&self) -> Effect {
        self.inner.effect
    }
    fn reconcile(&self, _args: Value, cx: CallContext) -> Option<ReconcileFuture> {
        let template = self.inner.reconcile_url.clone()?;
        let inner = self.inner.clone();
        Some(Box::pin(async move {
            let limit = inner.timeout;
            tokio::time::timeout(limit, inner.reconcile(&template, cx.idempotency_key))
                .await
                .unwrap_or_else(|_| Reconciled::Unknown(timed_out(&template, limit)))
        }))
    }
    fn call(&self, args: Value, cx: CallContext) -> ToolFuture {
        let (url, body) = match arguments(&args) {
            Ok(parsed) => parsed,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let inner = self.inner.clone();
        Box::pin(async move {
            let limit = inner.timeout;
            match tokio::time::timeout(limit, inner.fetch(url.clone(), body, cx.idempotency_key)).await {
                Ok(result) => result,
                Err(_) => Err(timed_out(&url, limit)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::ToolConfig;

    #[test]
    fn only_allowed_hosts_and_schemes() {
        let t = HttpTool::new(vec!["api.example.com".into()], "GET".into(), Duration::from_secs(1), None);
        assert!(t.check("https://api.example.com/v1/x").is_ok());
        assert!(t.check("https://evil.example.com/").unwrap_err().contains("not allowed"));
        assert!(t.check("file:///etc/passwd").unwrap_err().contains("only http"));
        assert!(t.check("https://api.example.com.evil.net/").unwrap_err().contains("not allowed"));
        assert!(t.check("https://api.example.com:444/").unwrap_err().contains("not allowed"));
    }

    #[test]
    fn a_bad_entry_fails_the_build_or_every_call() {
        let bad = HttpOptions { allow_hosts: vec!["http://x/".into()], ..HttpOptions::default() };
        assert!(HttpTool::with_options(bad).unwrap_err().contains("allow_hosts entry"));
        let bad = HttpOptions { allow_addresses: vec!["nope".into()], ..HttpOptions::default() };
        assert!(HttpTool::with_options(bad).unwrap_err().contains("allow_addresses entry"));
        let bad = HttpOptions { max_bytes: 0, ..HttpOptions::default() };
        assert!(HttpTool::with_options(bad).is_err());
        let t = HttpTool::new(vec!["a b".into()], "GET".into(), Duration::from_secs(1), None);
        assert!(t.check("http://a/").is_err());
    }

    /// A server that counts the requests it gets.
    async fn counting_server() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
            }
        });
        (addr.to_string(), hits)
    }

    #[tokio::test]
    async fn a_body_that_is_not_a_string_is_refused_before_any_request() {
        let (addr, hits) = counting_server().await;
        let options = HttpOptions {
            allow_hosts: vec![addr.clone()],
            allow_addresses: vec!["127.0.0.1".into()],
            method: "POST".into(),
            ..HttpOptions::default()
        };
        let t = HttpTool::with_options(options).unwrap();
        let url = format!("http://{addr}/pay");
        for body in [json!({"amount": 3}), json!(3), json!([1]), json!(true)] {
            let e = t.call(json!({"url": url, "body": body}), "k".into()).await.unwrap_err();
            assert!(e.contains("`body` must be a string") && e.contains("nothing was sent"), "{e}");
        }
        let e = t.call(json!({"url": 7}), "k".into()).await.unwrap_err();
        assert!(e.contains("`url` must be a string"), "{e}");
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "no request was sent");
        let ok = t.call(json!({"url": url, "body": "{\"amount\": 3}"}), "k".into()).await.unwrap();
        assert_eq!(ok.text, "ok");
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1, "a string body is sent");
    }

    #[test]
    fn a_cut_body_says_so_and_keeps_whole_characters() {
        assert_eq!(decode(b"abc".to_vec(), false, 3), "abc");
        let cut = decode("aé".as_bytes()[..2].to_vec(), true, 2);
        assert_eq!(cut, "a\n[kafclaw: the body was truncated at 2 bytes (max_bytes)]");
    }

    #[test]
    fn the_config_has_the_new_fields_with_defaults_and_refuses_unknown_ones() {
        let c: ToolConfig = toml::from_str("type = \"http\"\nallow_hosts = [\"a.example\"]\n").unwrap();
        let ToolConfig::Http { allow_addresses, max_redirects, max_bytes, .. } = c else { panic!() };
        assert_eq!((allow_addresses.len(), max_redirects, max_bytes), (0, 5, 1 << 20));
        let c: ToolConfig = toml::from_str(
            "type = \"http\"\nallow_hosts = [\"localhost:8080\"]\nallow_addresses = [\"127.0.0.1\", \"10.0.0.0/8\"]\n\
             max_redirects = 0\nmax_bytes = 10\n",
        )
        .unwrap();
        assert!(c.build(&Default::default()).is_ok());
        let e =
            toml::from_str::<ToolConfig>("type = \"http\"\nallow_hosts = []\nallow_redirects = true\n").unwrap_err();
        assert!(e.to_string().contains("allow_redirects"), "{e}");
        let c: ToolConfig = toml::from_str("type = \"http\"\nallow_hosts = [\"*.com\"]\n").unwrap();
        let errors = c.build(&Default::default()).unwrap_err();
        assert!(errors[0].message.contains("wildcard"), "{:?}", errors[0].message);
    }
}
