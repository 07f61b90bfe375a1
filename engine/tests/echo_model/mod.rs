//! A model endpoint that echoes the request (for the secrets tests of both test binaries): a
//! plain HTTP/1.1 server on 127.0.0.1 that answers with the request's head, which carries
//! `authorization: Bearer <key>` (and `authorization: Basic …` for credentials in the base
//! URL). By the prompt: `echo400` → 400 with the head as text, `echo500` → 500 with the head in
//! a JSON error, anything else → a 200 chat answer whose content is the head. And
//! [`always_500`], an endpoint that is down (for the fallback tests).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use serde_json::json;

/// The API key the tests give the model (by environment variable).
pub const KEY: &str = "sk-e2e-Echoed-K3y-0123456789abcdef";
/// A tail of [`KEY`]: no part of the key may survive a cut either.
pub const KEY_TAIL: &str = "0123456789abcdef";
/// The password in the model's base URL.
pub const URL_PASSWORD: &str = "url-pw-e2e-4711";
/// The user in the model's base URL.
pub const URL_USER: &str = "modeluser";

/// Every form of a secret that must not appear anywhere.
pub fn forbidden() -> Vec<String> {
    let basic = base64(format!("{URL_USER}:{URL_PASSWORD}").as_bytes());
    vec![KEY.into(), KEY_TAIL.into(), URL_PASSWORD.into(), basic]
}

/// An HTTP server that answers with the request's head: 400 or 500 as text, or a 200 chat
/// answer whose content is the head (by the prompt: `echo400`, `echo500`, `echo200`).
pub fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = answer(conn);
            });
        }
    });
    addr
}

fn answer(conn: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body);
    let (status, content_type, text) = if body.contains("echo400") {
        ("400 Bad Request", "text/plain", format!("bad request; you sent:\n{head}"))
    } else if body.contains("echo500") {
        let error = json!({"error": {"message": "internal error", "request": head}});
        ("500 Internal Server Error", "application/json", error.to_string())
    } else {
        let answer = json!({
            "model": "echo-1",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": head}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        });
        ("200 OK", "application/json", answer.to_string())
    };
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    )?;
    conn.flush()
}

/// Standard base64 (what `Authorization: Basic` carries).
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    data.chunks(3)
        .flat_map(|c| {
            let n = c.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            (0..4).map(move |i| if i <= c.len() { A[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' })
        })
        .collect()
}

/// A model endpoint that is down: every request answered 500 (a JSON `server_error`), counted.
/// Returns its base URL and the counter.
pub fn always_500() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 65536];
            let _ = conn.read(&mut buf);
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let body = r#"{"error":{"message":"primary is down","type":"server_error"}}"#;
            let _ = write!(
                conn,
                "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, hits)
}
