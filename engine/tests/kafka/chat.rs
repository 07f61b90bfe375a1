//! `kafclaw chat` through a pseudo-terminal (pexpect: `engine/tests/chat/drive.py`) against a
//! real group on the test broker: agent A (its model delegates through the `ask-billing` tool)
//! and agent B (the billing skill). A request typed at the prompt is answered; its tool call
//! is shown before the answer; the up arrow brings the request back; `/trace` prints the
//! chain across both agents and the memory item used; Ctrl-D ends the session with exit 0.

use std::process::Command;

use crate::fake_openai::FakeOpenAi;
use crate::support::*;
use crate::timeline::delegating_agents;

#[test]
fn chat_answers_a_request_and_shows_its_tool_call() {
    let server = FakeOpenAi::start();
    let dir = TestDir::new();
    let group = unique("chat").replace('.', "-");
    let (a_app, _a, _b) = delegating_agents(dir.path(), &group, &server);
    let python = std::env::var("KAFCLAW_INTEROP_PYTHON").unwrap_or_else(|_| "python3".into());
    let drive = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/chat/drive.py");
    let out = Command::new(python)
        .arg(drive)
        .arg(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["chat", "--group", &group, "--sender-id", "ops", "--brokers", &brokers(), "--partitions", "2"])
        .env("KAFCLAW_CHAT_TASK", "delegate ask-billing: refunds over 50 EUR")
        .env("KAFCLAW_CHAT_TOOL", "⚙ tool ask-billing")
        .env("KAFCLAW_CHAT_ANSWER", "agent-a: done: answer: refunds over 50 EUR")
        // In the chain's order: the memory item used comes first (it was written first).
        .env(
            "KAFCLAW_CHAT_CHAIN",
            format!(
                "agent-c [memory] wrote memory mem-c1,ops [request] asked: delegate ask-billing,{a_app} [request] asked: refunds over 50 EUR,agent-b [skill_response] answered,agent-a [response] answered"
            ),
        )
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let session = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{session}\n{}\nA:\n{}\nB:\n{}",
        String::from_utf8_lossy(&out.stderr),
        log_tail(&dir.path().join("a.log")),
        log_tail(&dir.path().join("b.log"))
    );
}
