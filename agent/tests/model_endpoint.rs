//! Endpoint variants a real deployment needs (Azure OpenAI above all): the key in an `api-key`
//! header instead of `Authorization: Bearer`, an `api-version` query, a custom path, extra
//! headers. A raw loopback server records exactly what arrived.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use kafclaw_agent::model::config::ModelConfig;
use kafclaw_agent::model::protocol::Message;

/// Answers one request with a chat answer; returns the port and the request's head.
fn recording_server() -> (u16, Arc<Mutex<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(String::new()));
    let s = Arc::clone(&seen);
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 65536];
        let n = conn.read(&mut buf).unwrap();
        *s.lock().unwrap() = String::from_utf8_lossy(&buf[..n]).into_owned();
        let body = r#"{"choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#;
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    });
    (port, seen)
}

#[tokio::test]
async fn azure_style_endpoints_get_the_key_header_query_path_and_extra_headers() {
    let (port, seen) = recording_server();
    // SAFETY: a variable of this test only.
    unsafe { std::env::set_var("KAFCLAW_TEST_AZURE_KEY", "azure-key-0123456789") };
    let config: ModelConfig = toml::from_str(&format!(
        r#"base_url = "http://127.0.0.1:{port}/openai/deployments/gpt-4o"
model = "gpt-4o"
api_key_env = "KAFCLAW_TEST_AZURE_KEY"
api_key_header = "api-key"
query = {{ "api-version" = "2024-10-21" }}
headers = {{ "X-Title" = "kafclaw" }}
chat_path = "/chat/completions"
max_attempts = 1
"#
    ))
    .unwrap();
    let client = config.client("azure").unwrap();
    let answer = client.chat(vec![Message::text("user", "hello".into())], Vec::new()).await.unwrap();
    assert_eq!(answer.content, "hi");
    let head = seen.lock().unwrap().clone();
    let head_lower = head.to_ascii_lowercase();
    assert!(
        head.starts_with("POST /openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21 HTTP/1.1"),
        "{head}"
    );
    assert!(head_lower.contains("api-key: azure-key-0123456789"), "{head}");
    assert!(!head_lower.contains("authorization:"), "no bearer beside the api-key: {head}");
    assert!(head_lower.contains("x-title: kafclaw"), "{head}");
    // The key never shows in the client's Debug.
    assert!(!format!("{client:?}").contains("azure-key-0123456789"));
}

/// Answers `500` for the first `failures` requests, then a chat answer.
fn flaky_server(failures: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = vec![0u8; 65536];
            let _ = conn.read(&mut buf);
            let (status, body) = if i < failures {
                ("500 Internal Server Error", r#"{"error":{"message":"boom"}}"#)
            } else {
                ("200 OK", r#"{"choices":[{"message":{"content":"hi"},"finish_reason":"stop"}]}"#)
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[tokio::test]
async fn the_client_counts_retries_by_reason_exhausted_calls_and_time() {
    let port = flaky_server(3);
    let config: ModelConfig = toml::from_str(&format!(
        "base_url = \"http://127.0.0.1:{port}/v1\"\nmodel = \"m\"\nmax_attempts = 2\nbackoff = \"1ms\"\nmax_backoff = \"2ms\""
    ))
    .unwrap();
    let client = config.client("m").unwrap();
    let chat = || client.chat(vec![Message::text("user", "hello".into())], Vec::new());
    let e = chat().await.unwrap_err();
    assert!(e.exhausted, "two 500s: the attempts ran out on retryable failures");
    assert_eq!(chat().await.unwrap().content, "hi", "a 500, then the answer");
    let u = client.usage();
    assert_eq!((u.calls, u.failures, u.attempts, u.exhausted), (1, 1, 4, 1), "{u:?}");
    assert_eq!(u.retried_server_errors, 3, "{u:?}");
    assert_eq!((u.retried_timeouts, u.retried_connections, u.retried_reported_errors), (0, 0, 0), "{u:?}");
    assert_eq!(u.first_chunks, 1, "the one successful attempt's first chunk was timed: {u:?}");
}
