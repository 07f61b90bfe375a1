//! A model endpoint cannot make the instance hold a huge answer: the client reads at most
//! `max_answer_bytes` and fails the call for good, whether the endpoint announces the size
//! (`Content-Length`) or streams it (chunked). Real HTTP servers on loopback, written raw so
//! that they stream lazily and count what they managed to send.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kafclaw_agent::model::config::ModelConfig;
use kafclaw_agent::model::protocol::Message;

/// 200 MB, the size of the answer reported.
const HUGE: u64 = 200 * 1024 * 1024;

/// Serves one request with a body of `HUGE` bytes, chunked or with its length announced;
/// returns the port and the bytes it sent.
fn huge_server(chunked: bool) -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = [0u8; 65536];
        let _ = conn.read(&mut request);
        let head = if chunked {
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_owned()
        } else {
            format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {HUGE}\r\n\r\n")
        };
        if conn.write_all(head.as_bytes()).is_err() {
            return;
        }
        let piece = vec![b'a'; 64 * 1024];
        let mut body_sent = 0u64;
        while body_sent < HUGE {
            let frame = if chunked {
                let mut f = format!("{:x}\r\n", piece.len()).into_bytes();
                f.extend_from_slice(&piece);
                f.extend_from_slice(b"\r\n");
                f
            } else {
                piece.clone()
            };
            if conn.write_all(&frame).is_err() {
                break;
            }
            body_sent += piece.len() as u64;
            counter.store(body_sent, Ordering::SeqCst);
        }
    });
    (port, sent)
}

async fn call(port: u16) -> String {
    let config: ModelConfig = toml::from_str(&format!(
        "base_url = \"http://127.0.0.1:{port}/v1\"\nmodel = \"m\"\nmax_attempts = 3\nmax_answer_bytes = 1048576\ntimeout = \"60s\""
    ))
    .unwrap();
    let client = config.client("m").unwrap();
    client.chat(vec![Message::text("user", "hi".into())], Vec::new()).await.unwrap_err().to_string()
}

#[tokio::test]
async fn a_streamed_answer_past_the_cap_fails_the_call_without_being_held() {
    let (port, sent) = huge_server(true);
    let e = call(port).await;
    assert!(e.contains("larger than max_answer_bytes") && e.contains("after 1 attempt(s)"), "not retried: {e}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let sent = sent.load(Ordering::SeqCst);
    assert!(sent < 64 * 1024 * 1024, "the client stopped reading early; the server sent {sent} bytes of {HUGE}");
    // The stated bound: the answer is never held whole (this process's peak resident memory).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    assert!(kb * 1024 < 128 << 20, "peak resident memory {kb} kB with a 200 MB answer");
}

#[tokio::test]
async fn an_announced_answer_past_the_cap_is_refused_before_its_body() {
    let (port, _) = huge_server(false);
    let e = call(port).await;
    assert!(e.contains("larger than max_answer_bytes"), "{e}");
}
