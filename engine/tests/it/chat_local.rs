//! `kafclaw chat --local` through a pseudo-terminal (pexpect: `engine/tests/chat/drive.py`):
//! the built-in standard agent, made live by KAFCLAW_MODEL_URL pointing at the fake
//! OpenAI-compatible server, answers a request typed at the prompt after a call of its
//! `memory` tool, which the session shows; the up arrow brings the request back; `/trace`
//! prints the run's spans; Ctrl-D ends the session with exit 0. No Kafka.

use std::process::Command;

use crate::fake_openai::FakeOpenAi;

#[test]
fn chat_with_the_local_agent_shows_its_tool_call_and_answer() {
    let server = FakeOpenAi::start();
    let python = std::env::var("KAFCLAW_INTEROP_PYTHON").unwrap_or_else(|_| "python3".into());
    let drive = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/chat/drive.py");
    let out = Command::new(python)
        .arg(drive)
        .arg(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["chat", "--local", "--sender-id", "ops"])
        .env("KAFCLAW_MODEL_URL", server.base_url())
        .env("KAFCLAW_MODEL", "fake-1")
        .env_remove("KAFCLAW_API_KEY")
        .env("KAFCLAW_CHAT_TASK", "memory-tool remember: refunds over 50 EUR need a manager")
        .env("KAFCLAW_CHAT_SENT", "")
        .env("KAFCLAW_CHAT_TOOL", "⚙ tool memory")
        .env("KAFCLAW_CHAT_ANSWER", "agent: done: ")
        .env("KAFCLAW_CHAT_CHAIN", "· llm fake-1,⚙ tool memory")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let session = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{session}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(server.counters.calls() >= 2, "a tool call, then the answer: {session}");
}
