//! The GenAI trace spans of the tool loop: `chat {model}` per model call and
//! `execute_tool {tool}` per tool call (OpenTelemetry semantic conventions for generative AI;
//! see [`crate::telemetry`]). Message content goes in only when
//! [`capture_content`](crate::telemetry::capture_content) is on, redacted.

use serde_json::{Value, json};
use tracing::Span;
use tracing::field::Empty;

use kafclaw_operators::api::secrets::redact_string;

use crate::model::client::Answer;
use crate::model::protocol::Message;
use crate::model::{CallError, ModelClient};
use crate::telemetry::{PROVIDER, TARGET, capture_content};

/// The span of one call of `client`, for the conversation `conversation` (the input's
/// correlation id), with the request's messages when content is captured.
pub(super) fn chat(client: &ModelClient, conversation: &str, messages: &[Message]) -> Span {
    let model = client.model();
    let span = tracing::info_span!(
        target: TARGET,
        "chat",
        otel.name = %format!("chat {model}"),
        otel.kind = "client",
        otel.status_code = Empty,
        otel.status_description = Empty,
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = PROVIDER,
        gen_ai.request.model = model,
        gen_ai.conversation.id = conversation,
        kafclaw.model = client.name(),
        gen_ai.response.model = Empty,
        gen_ai.response.finish_reasons = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        "error.type" = Empty,
        gen_ai.input.messages = Empty,
        gen_ai.output.messages = Empty,
    );
    if !span.is_disabled() && capture_content() {
        span.record("gen_ai.input.messages", redact_string(input_messages(messages).to_string()));
    }
    span
}

/// Records an answer on its `chat` span: response model, finish reason, token usage, and the
/// output message when content is captured.
pub(super) fn answered(span: &Span, answer: &Answer) {
    if span.is_disabled() {
        return;
    }
    span.record("gen_ai.response.model", answer.model.as_str());
    if let Some(reason) = &answer.finish_reason {
        span.record("gen_ai.response.finish_reasons", reason.as_str());
    }
    span.record("gen_ai.usage.input_tokens", answer.usage.prompt_tokens);
    span.record("gen_ai.usage.output_tokens", answer.usage.completion_tokens);
    if capture_content() {
        let mut parts = Vec::new();
        if !answer.content.is_empty() {
            parts.push(json!({"type": "text", "content": answer.content}));
        }
        parts.extend(answer.tool_calls.iter().map(tool_call_part));
        let out = json!([{
            "role": "assistant",
            "parts": parts,
            "finish_reason": answer.finish_reason.as_deref().unwrap_or("stop"),
        }]);
        span.record("gen_ai.output.messages", redact_string(out.to_string()));
    }
}

/// Records a failed call on its span (status error, `error.type`, the redacted message).
pub(super) fn failed(span: &Span, error: &CallError) {
    let kind = if error.no_answer { "no_answer" } else { "call_failed" };
    span.record("otel.status_code", "error");
    span.record("otel.status_description", error.message.as_str());
    span.record("error.type", kind);
}

/// The span of one tool call (`call_id` as the model named it), with its arguments when
/// content is captured.
pub(super) fn execute_tool(name: &str, call_id: &str, conversation: &str, arguments: &str) -> Span {
    let span = tracing::info_span!(
        target: TARGET,
        "execute_tool",
        otel.name = %format!("execute_tool {name}"),
        otel.kind = "internal",
        otel.status_code = Empty,
        otel.status_description = Empty,
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = name,
        "gen_ai.tool.type" = "function",
        gen_ai.tool.call.id = call_id,
        gen_ai.conversation.id = conversation,
        "error.type" = Empty,
        gen_ai.tool.call.arguments = Empty,
        gen_ai.tool.call.result = Empty,
    );
    if !span.is_disabled() && capture_content() {
        span.record("gen_ai.tool.call.arguments", redact_string(arguments.to_owned()).as_str());
    }
    span
}

/// Records a tool's result (already redacted and cut) on its span: an error status when it
/// failed; the text when content is captured.
pub(super) fn tool_done(span: &Span, ok: bool, text: &str) {
    if span.is_disabled() {
        return;
    }
    if !ok {
        span.record("otel.status_code", "error");
        span.record("error.type", "tool_error");
    }
    if capture_content() {
        span.record("gen_ai.tool.call.result", text);
    }
}

/// A tool call as a message part of the conventions' JSON schema.
fn tool_call_part(call: &crate::model::protocol::ToolCall) -> Value {
    json!({"type": "tool_call", "id": call.id, "name": call.function.name, "arguments": call.function.arguments})
}

/// The request's messages in the conventions' JSON schema (`gen_ai.input.messages`): one
/// object per message, `role` and `parts` (text, tool calls, tool call responses).
fn input_messages(messages: &[Message]) -> Value {
    Value::Array(
        messages
            .iter()
            .map(|m| {
                let mut parts = Vec::new();
                match (&m.tool_call_id, &m.content) {
                    (Some(id), content) => parts.push(
                        json!({"type": "tool_call_response", "id": id, "response": content.as_deref().unwrap_or("")}),
                    ),
                    (None, Some(text)) => parts.push(json!({"type": "text", "content": text})),
                    (None, None) => {}
                }
                parts.extend(m.tool_calls.iter().map(tool_call_part));
                json!({"role": m.role, "parts": parts})
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_follow_the_conventions_schema() {
        let mut call = Message::text("assistant", String::new());
        call.content = None;
        call.tool_calls = vec![crate::model::protocol::ToolCall {
            id: "c1".into(),
            kind: "function".into(),
            function: crate::model::protocol::FunctionCall { name: "ls".into(), arguments: "{}".into() },
        }];
        let reply = Message {
            role: "tool".into(),
            content: Some("a.txt".into()),
            tool_calls: vec![],
            tool_call_id: Some("c1".into()),
        };
        let v = input_messages(&[Message::text("user", "hi".into()), call, reply]);
        assert_eq!(
            v,
            json!([
                {"role": "user", "parts": [{"type": "text", "content": "hi"}]},
                {"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "ls", "arguments": "{}"}]},
                {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "a.txt"}]},
            ])
        );
    }
}
