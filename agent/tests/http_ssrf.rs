//! The `http` tool against real HTTP servers on loopback: redirects re-checked hop by hop,
//! special addresses refused after resolution unless named, bodies and time capped.
//!
//! Loopback is special, so every call meant to succeed names it in `allow_addresses`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kafclaw_agent::tools::Tool;
use kafclaw_agent::tools::http::{HttpOptions, HttpTool};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a test server answers.
#[derive(Clone)]
enum Reply {
    /// 200 with this body.
    Text(&'static str),
    /// This status with a `Location`.
    Redirect(u16, String),
    /// 302 to `/<n+1>` for a request to `/<n>`, forever.
    Chain,
    /// 200 with a body of this many bytes, generated as it is sent.
    Huge(u64),
    /// 200 promising 1000 bytes, then one byte every 100 ms.
    Drip,
    /// 200 with `<method> <idempotency-key> <body>` of the request.
    Echo,
}

/// A server on `bind` answering every request with `reply`; counts requests and body bytes sent.
struct Server {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    sent: Arc<AtomicU64>,
}

async fn serve(bind: &str, reply: Reply) -> Option<Server> {
    let listener = TcpListener::bind(bind).await.ok()?;
    let addr = listener.local_addr().unwrap();
    let (hits, sent) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicU64::new(0)));
    let (h, s) = (hits.clone(), sent.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(answer(stream, reply.clone(), s.clone()));
        }
    });
    Some(Server { addr, hits, sent })
}

async fn answer(mut stream: TcpStream, reply: Reply, sent: Arc<AtomicU64>) {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let Ok(n) = stream.read(&mut buf).await else { return };
        if n == 0 {
            return;
        }
        request.extend_from_slice(&buf[..n]);
        if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&request[..head_end]).into_owned();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned())
        })
    };
    let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while request.len() < head_end + length {
        let Ok(n) = stream.read(&mut buf).await else { return };
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let mut line = head.lines().next().unwrap_or_default().split(' ');
    let (method, path) = (line.next().unwrap_or_default().to_owned(), line.next().unwrap_or_default().to_owned());
    let ok =
        |body: &str| format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    let redirect = |status: u16, to: &str| {
        format!("HTTP/1.1 {status} Moved\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    };
    let text = match reply {
        Reply::Text(body) => ok(body),
        Reply::Redirect(status, to) => redirect(status, &to),
        Reply::Chain => {
            let n: u32 = path.trim_start_matches('/').parse().unwrap_or(0);
            redirect(302, &format!("/{}", n + 1))
        }
        Reply::Echo => {
            let body = String::from_utf8_lossy(&request[head_end..]).into_owned();
            ok(&format!("{method} {} {body}", header("idempotency-key").unwrap_or_default()))
        }
        Reply::Huge(total) => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n");
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b'x'; 64 * 1024];
            let mut left = total;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                if stream.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
                sent.fetch_add(n as u64, Ordering::SeqCst);
                left -= n as u64;
            }
            return;
        }
        Reply::Drip => {
            let head = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for _ in 0..1000 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if stream.write_all(b"x").await.is_err() {
                    return;
                }
            }
            return;
        }
    };
    let _ = stream.write_all(text.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn tool(hosts: &[String], addresses: &[&str], tune: impl FnOnce(&mut HttpOptions)) -> HttpTool {
    let mut options = HttpOptions {
        allow_hosts: hosts.to_vec(),
        allow_addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
        timeout: Duration::from_secs(5),
        ..HttpOptions::default()
    };
    tune(&mut options);
    HttpTool::with_options(options).unwrap()
}

async fn get(tool: &HttpTool, url: &str) -> Result<String, String> {
    tool.call(json!({ "url": url }), "in-1/0/call_1".into()).await.map(|o| o.text)
}

#[tokio::test]
async fn a_redirect_to_a_host_not_on_the_list_is_refused_naming_it() {
    let secret = serve("127.0.0.2:0", Reply::Text("secret")).await.unwrap();
    let to = format!("http://127.0.0.2:{}/secret", secret.addr.port());
    let front = serve("127.0.0.1:0", Reply::Redirect(302, to.clone())).await.unwrap();
    // Loopback is opened wholesale: the host list alone must refuse the hop.
    let t = tool(&[front.addr.to_string()], &["127.0.0.0/8"], |_| {});
    let e = get(&t, &format!("http://{}/", front.addr)).await.unwrap_err();
    assert!(
        e.starts_with("refused: redirect from") && e.contains(&format!("to `{to}`")) && e.contains("not allowed"),
        "{e}"
    );
    assert_eq!(secret.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_redirect_to_another_port_of_an_allowed_host_is_refused() {
    let secret = serve("127.0.0.1:0", Reply::Text("secret")).await.unwrap();
    let front =
        serve("127.0.0.1:0", Reply::Redirect(307, format!("//127.0.0.1:{}/x", secret.addr.port()))).await.unwrap();
    let t = tool(&[front.addr.to_string()], &["127.0.0.1"], |_| {});
    let e = get(&t, &format!("http://{}/", front.addr)).await.unwrap_err();
    assert!(e.contains(&format!("port {} is not allowed", secret.addr.port())), "{e}");
    assert_eq!(secret.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_redirect_to_an_address_not_named_is_refused_though_the_host_is_listed() {
    let secret = serve("127.0.0.2:0", Reply::Text("secret")).await.unwrap();
    let to = format!("http://127.0.0.2:{}/secret", secret.addr.port());
    let front = serve("127.0.0.1:0", Reply::Redirect(301, to.clone())).await.unwrap();
    let t = tool(&[front.addr.to_string(), secret.addr.to_string()], &["127.0.0.1"], |_| {});
    let e = get(&t, &format!("http://{}/", front.addr)).await.unwrap_err();
    assert!(e.contains(&to) && e.contains("127.0.0.2 is loopback"), "{e}");
    assert_eq!(secret.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_redirect_to_file_is_refused() {
    let front = serve("127.0.0.1:0", Reply::Redirect(302, "file:///etc/passwd".into())).await.unwrap();
    let t = tool(&[front.addr.to_string()], &["127.0.0.1"], |_| {});
    let e = get(&t, &format!("http://{}/", front.addr)).await.unwrap_err();
    assert!(e.contains("`file:///etc/passwd`") && e.contains("only http and https"), "{e}");
}

#[tokio::test]
async fn allowed_redirects_are_followed_and_post_keeps_its_key_on_307_only() {
    let echo = serve("127.0.0.1:0", Reply::Echo).await.unwrap();
    let hosts = |front: SocketAddr| vec![front.to_string(), echo.addr.to_string()];
    let to = format!("http://{}/echo", echo.addr);
    for (status, expect) in [(307, "POST in-1/0/call_1 hello"), (308, "POST in-1/0/call_1 hello"), (303, "GET  ")] {
        let front = serve("127.0.0.1:0", Reply::Redirect(status, to.clone())).await.unwrap();
        let t = tool(&hosts(front.addr), &["127.0.0.1"], |o| o.method = "POST".into());
        let out = t.call(json!({"url": format!("http://{}/", front.addr), "body": "hello"}), "in-1/0/call_1".into());
        assert_eq!(out.await.unwrap().text, expect, "{status}");
    }
}

#[tokio::test]
async fn a_redirect_chain_longer_than_the_bound_is_refused() {
    let chain = serve("127.0.0.1:0", Reply::Chain).await.unwrap();
    let t = tool(&[chain.addr.to_string()], &["127.0.0.1"], |o| o.max_redirects = 3);
    let e = get(&t, &format!("http://{}/0", chain.addr)).await.unwrap_err();
    assert!(e.contains("more than 3 redirects") && e.contains("/3` redirects to `") && e.contains("/4`"), "{e}");
    assert_eq!(chain.hits.load(Ordering::SeqCst), 4);
    let none = tool(&[chain.addr.to_string()], &["127.0.0.1"], |o| o.max_redirects = 0);
    assert!(get(&none, &format!("http://{}/0", chain.addr)).await.unwrap_err().contains("more than 0 redirects"));
}

#[tokio::test]
async fn localhost_on_the_list_does_not_open_other_local_ports() {
    let other = serve("127.0.0.1:0", Reply::Text("internal")).await.unwrap();
    let t = tool(&["localhost".into()], &["127.0.0.1", "::1"], |_| {});
    let e = get(&t, &format!("http://localhost:{}/", other.addr.port())).await.unwrap_err();
    assert!(e.contains(&format!("host `localhost` port {} is not allowed", other.addr.port())), "{e}");
    let e = get(&t, &format!("http://127.0.0.1:{}/", other.addr.port())).await.unwrap_err();
    assert!(e.contains("not allowed"), "{e}");
    assert_eq!(other.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_unless_named() {
    let s = serve("127.0.0.1:0", Reply::Text("local")).await.unwrap();
    let port = s.addr.port();
    let hosts = [format!("localhost:{port}")];
    for url in [format!("http://localhost:{port}/"), format!("http://LocalHost:{port}/")] {
        let e = get(&tool(&hosts, &[], |_| {}), &url).await.unwrap_err();
        assert!(
            e.contains("refused: `localhost` resolves to") && e.contains("is loopback; only allow_addresses"),
            "{e}"
        );
    }
    // The URL parser keeps a trailing dot; the host list ignores it, the resolver judges the
    // name's addresses (where `localhost.` resolves at all: not every resolver has it).
    let e = get(&tool(&hosts, &[], |_| {}), &format!("http://localhost.:{port}/")).await.unwrap_err();
    if tokio::net::lookup_host(("localhost.", 0)).await.is_ok() {
        assert!(e.contains("refused: `localhost.` resolves to") && e.contains("loopback"), "{e}");
    }
    assert_eq!(s.hits.load(Ordering::SeqCst), 0);
    let named = tool(&hosts, &["127.0.0.1"], |_| {});
    assert_eq!(get(&named, &format!("http://localhost:{port}/")).await.unwrap(), "local");
}

#[tokio::test]
async fn ip_literal_forms_are_normalised_then_checked() {
    let s = serve("127.0.0.1:0", Reply::Text("local")).await.unwrap();
    let port = s.addr.port();
    let forms = ["127.1", "0x7f.1", "0x7f000001", "2130706433", "017700000001", "127.0.0.1."];
    let listed = tool(&[format!("127.0.0.1:{port}")], &[], |_| {});
    for form in forms {
        let e = get(&listed, &format!("http://{form}:{port}/")).await.unwrap_err();
        assert!(e.contains("127.0.0.1 is loopback"), "{form}: {e}");
    }
    let mapped = tool(&[format!("[::ffff:7f00:1]:{port}")], &[], |_| {});
    let e = get(&mapped, &format!("http://[::ffff:127.0.0.1]:{port}/")).await.unwrap_err();
    assert!(e.contains("IPv4-mapped 127.0.0.1, loopback"), "{e}");
    assert_eq!(s.hits.load(Ordering::SeqCst), 0);
    let named = tool(&[format!("127.0.0.1:{port}")], &["127.0.0.1"], |_| {});
    for form in forms {
        assert_eq!(get(&named, &format!("http://{form}:{port}/")).await.unwrap(), "local", "{form}");
    }
    let t = tool(&[format!("127.0.0.1:{port}")], &["127.0.0.1"], |_| {});
    assert!(get(&t, &format!("http://u:p@127.0.0.1:{port}/")).await.unwrap_err().contains("credentials"));
}

#[tokio::test]
async fn ipv6_loopback_is_refused_unless_named() {
    let Some(s) = serve("[::1]:0", Reply::Text("six")).await else {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    };
    let hosts = [format!("[::1]:{}", s.addr.port())];
    let url = format!("http://[0:0::1]:{}/", s.addr.port());
    let e = get(&tool(&hosts, &["127.0.0.0/8"], |_| {}), &url).await.unwrap_err();
    assert!(e.contains("::1 is loopback"), "{e}");
    assert_eq!(s.hits.load(Ordering::SeqCst), 0);
    assert_eq!(get(&tool(&hosts, &["::1"], |_| {}), &url).await.unwrap(), "six");
}

#[tokio::test]
async fn a_160_mib_body_is_cut_at_max_bytes() {
    const TOTAL: u64 = 160 << 20;
    let s = serve("127.0.0.1:0", Reply::Huge(TOTAL)).await.unwrap();
    let t = tool(&[s.addr.to_string()], &["127.0.0.1"], |_| {});
    let text = get(&t, &format!("http://{}/", s.addr)).await.unwrap();
    let body = text.split('\n').next().unwrap();
    assert_eq!(body.len(), 1 << 20);
    assert!(
        text.len() < (1 << 20) + 100 && text.ends_with("truncated at 1048576 bytes (max_bytes)]"),
        "{}",
        &text[1 << 20..]
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = s.sent.load(Ordering::SeqCst);
    assert!(sent < 32 << 20, "the server sent {sent} bytes: the rest was not read, the connection was dropped");
    // The stated bound: the body is never held whole (this process's peak resident memory).
    let peak = peak_rss_bytes();
    assert!(peak < 128 << 20, "peak resident memory {peak} bytes with a 160 MiB body");
    let small = tool(&[s.addr.to_string()], &["127.0.0.1"], |o| o.max_bytes = 10);
    assert!(
        get(&small, &format!("http://{}/", s.addr))
            .await
            .unwrap()
            .starts_with("xxxxxxxxxx\n[kafclaw: the body was truncated at 10 bytes")
    );
}

/// This process's peak resident memory (`VmHWM` of /proc/self/status), in bytes.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap().trim().trim_end_matches(" kB").trim();
    kb.parse::<u64>().unwrap() * 1024
}

#[tokio::test]
async fn a_slow_drip_body_past_the_timeout_fails() {
    let s = serve("127.0.0.1:0", Reply::Drip).await.unwrap();
    let t = tool(&[s.addr.to_string()], &["127.0.0.1"], |o| o.timeout = Duration::from_secs(1));
    let start = Instant::now();
    let e = get(&t, &format!("http://{}/", s.addr)).await.unwrap_err();
    assert!(e.contains("timed out after 1s") && e.contains("the body"), "{e}");
    // The drip would last 100 s; the whole-call timeout ends it (bound loose for loaded machines).
    assert!(start.elapsed() < Duration::from_secs(30), "{:?}", start.elapsed());
}
