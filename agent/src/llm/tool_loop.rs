//! The model call and its tool loop: ask, run the tools the model asks for, hand back the
//! results, ask again.

use std::sync::Arc;

use serde_json::Value;

use kafclaw_operators::api::record::now_ms;
use kafclaw_operators::api::secrets::{redact, redact_string};

use super::journal::{JournalEntry, StepRecord};
use crate::model::protocol::{FunctionSpec, Message, ToolSpec, Usage};
use crate::model::{CallError, ModelClient};
use crate::tools::{CallContext, Tool};

/// The model call and its tool loop: ask, run the tools it asks for, hand back the results,
/// ask again; at most `max_steps` rounds of tools.
pub(crate) async fn call_with_tools(
    client: &ModelClient,
    mut messages: Vec<Message>,
    tools: &[(String, Arc<dyn Tool>)],
    max_steps: u32,
    base: &CallContext,
) -> Result<JournalEntry, CallError> {
    let key = &base.idempotency_key;
    let specs: Vec<ToolSpec> = tools
        .iter()
        .map(|(name, t)| ToolSpec {
            kind: "function",
            function: FunctionSpec { name: name.clone(), description: t.description(), parameters: t.parameters() },
        })
        .collect();
    let started = std::time::Instant::now();
    let mut usage = Usage::default();
    let mut steps = Vec::new();
    let mut remembered = Vec::new();
    let mut attempts = 0;
    for round in 0..=max_steps {
        let t0 = now_ms();
        let answer = client.chat(messages.clone(), specs.clone()).await.inspect_err(|e| {
            steps.push(StepRecord {
                kind: "llm".into(),
                name: client.name().to_owned(),
                detail: short(&e.message),
                ok: false,
                started_ms: t0,
                duration_ms: (now_ms() - t0).max(0) as u64,
            });
        })?;
        usage += answer.usage;
        attempts += answer.attempts;
        steps.push(StepRecord {
            kind: "llm".into(),
            name: answer.model.clone(),
            detail: format!(
                "{} prompt + {} completion tokens; {} tool call(s)",
                answer.usage.prompt_tokens,
                answer.usage.completion_tokens,
                answer.tool_calls.len()
            ),
            ok: true,
            started_ms: t0,
            duration_ms: answer.latency.as_millis() as u64,
        });
        if answer.tool_calls.is_empty() {
            return Ok(JournalEntry {
                content: answer.content,
                usage,
                model: answer.model,
                finish_reason: answer.finish_reason,
                attempts,
                latency_ms: started.elapsed().as_millis() as u64,
                steps,
                remembered,
            });
        }
        if round == max_steps {
            break;
        }
        messages.push(Message {
            role: "assistant".into(),
            content: (!answer.content.is_empty()).then_some(answer.content.clone()),
            tool_calls: answer.tool_calls.clone(),
            tool_call_id: None,
        });
        for call in &answer.tool_calls {
            let t0 = now_ms();
            let name = &call.function.name;
            let result = match tools.iter().find(|(n, _)| n == name) {
                None => Err(format!("no tool `{name}` here")),
                Some((_, tool)) => match serde_json::from_str::<Value>(if call.function.arguments.is_empty() {
                    "{}"
                } else {
                    &call.function.arguments
                }) {
                    Ok(args) => {
                        let cx = CallContext { idempotency_key: format!("{key}/{round}/{}", call.id), ..base.clone() };
                        tool.call(args, cx).await
                    }
                    Err(e) => Err(format!("arguments are not JSON: {e}")),
                },
            };
            // A tool's result goes to the model, the journal, the trace and (remembered) the
            // outputs: a configured secret in it (a shell tool printing the environment, an
            // HTTP error echoing a header) is redacted here, before it goes anywhere.
            let (ok, text) = match result {
                Ok(t) => {
                    remembered.extend(t.remember.into_iter().map(redact_string));
                    (true, redact_string(t.text))
                }
                Err(e) => (false, redact_string(format!("error: {e}"))),
            };
            steps.push(StepRecord {
                kind: "tool".into(),
                name: name.clone(),
                detail: short(&format!("{} -> {text}", call.function.arguments)),
                ok,
                started_ms: t0,
                duration_ms: (now_ms() - t0).max(0) as u64,
            });
            messages.push(Message {
                role: "tool".into(),
                content: Some(text),
                tool_calls: Vec::new(),
                tool_call_id: Some(call.id.clone()),
            });
        }
    }
    Err(CallError {
        model: client.name().to_owned(),
        attempts,
        message: format!("the model still asked for tools after {max_steps} round(s) (max_tool_steps)"),
    })
}

/// Cuts text for a trace span (redacted first, so no part of a secret is left at the cut).
pub(crate) fn short(text: &str) -> String {
    let text = &*redact(text);
    if text.len() <= 300 {
        return text.to_owned();
    }
    let mut end = 300;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
