//! The model call and its tool loop: ask, run the tools the model asks for, hand back the
//! results, ask again.

use std::sync::Arc;

use serde_json::Value;
use tracing::Instrument;

use kafclaw_operators::api::record::now_ms;
use kafclaw_operators::api::secrets::{redact, redact_string};
use kafclaw_operators::envelope::derive_span_id;
use std::time::Duration;

use super::journal::{JournalEntry, StepRecord};
use super::spans;
use super::structured::{self, Structured};
use crate::model::client::ChatOptions;
use crate::model::protocol::{FunctionSpec, Message, ToolSpec, Usage};
use crate::model::{CallError, ModelClient};
use crate::tools::effect::{self, Effect, EffectLog, RoundAnswer, Rounds};
use crate::tools::{CallContext, Tool};

/// What a model's answers may make the runtime do (the `llm` operator's limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ToolLimits {
    /// Rounds of tool calls (`max_tool_steps`).
    pub max_steps: u32,
    /// Tool calls run per answer (`max_tool_calls`).
    pub max_calls: u32,
    /// Bytes of one tool result handed to the model (`max_tool_output_bytes`).
    pub max_output_bytes: u64,
}

/// The models of one conversation, in order, and what asking them has cost.
struct Asker<'a> {
    clients: &'a [Arc<ModelClient>],
    /// The model that answers (a fallback once the ones before it ran out).
    current: usize,
    /// HTTP attempts, over every model.
    attempts: u32,
    /// Answers received (each model call that answered).
    calls: u32,
    /// The input's correlation id (`gen_ai.conversation.id` of the `chat` spans).
    conversation: &'a str,
}

impl Asker<'_> {
    /// Asks the current model, passing on to the next when its attempts run out on failures
    /// worth asking elsewhere; the answer's missing call ids derived; a trace step per
    /// model asked.
    async fn ask(
        &mut self,
        messages: &[Message],
        specs: &[ToolSpec],
        steps: &mut Vec<StepRecord>,
        key: &str,
        options: &ChatOptions,
    ) -> Result<crate::model::client::Answer, CallError> {
        let (mut answer, t0) = loop {
            let client = &self.clients[self.current];
            let t0 = now_ms();
            let span = spans::chat(client, self.conversation, messages);
            let asked = client.chat_with(messages.to_vec(), specs.to_vec(), options).instrument(span.clone()).await;
            match asked {
                Ok(answer) => {
                    spans::answered(&span, &answer);
                    break (answer, t0);
                }
                Err(e) => {
                    spans::failed(&span, &e);
                    self.attempts += e.attempts;
                    steps.push(StepRecord {
                        kind: "llm".into(),
                        name: client.name().to_owned(),
                        detail: short(&e.message),
                        ok: false,
                        started_ms: t0,
                        duration_ms: (now_ms() - t0).max(0) as u64,
                    });
                    if e.exhausted && self.current + 1 < self.clients.len() {
                        self.current += 1;
                        continue;
                    }
                    return Err(CallError { attempts: self.attempts, ..e });
                }
            }
        };
        self.attempts += answer.attempts;
        // A call id the server left out (llama.cpp, TGI) is derived from the input, the answer's
        // place in the conversation and the call's, so a replay names the same call.
        for (i, call) in answer.tool_calls.iter_mut().enumerate() {
            if call.id.is_empty() {
                call.id = format!("call_{}", derive_span_id(&format!("{key}/{}/{i}", self.calls)));
            }
        }
        self.calls += 1;
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
        Ok(answer)
    }

    /// The answer an earlier attempt recorded for `round` ([`Rounds`]), in place of asking:
    /// no model call, no tokens; a trace step saying so.
    fn replayed(
        &mut self,
        recorded: RoundAnswer,
        round: u32,
        steps: &mut Vec<StepRecord>,
    ) -> crate::model::client::Answer {
        // Counted as an answer: ids derived for later answers stay those of the first attempt.
        self.calls += 1;
        steps.push(StepRecord {
            kind: "llm".into(),
            name: recorded.model.clone(),
            detail: format!(
                "replayed from the effect log (round {round}): {} tool call(s); no model call",
                recorded.tool_calls.len()
            ),
            ok: true,
            started_ms: now_ms(),
            duration_ms: 0,
        });
        crate::model::client::Answer {
            content: recorded.content,
            tool_calls: recorded.tool_calls,
            usage: Usage::default(),
            model: recorded.model,
            finish_reason: Some("tool_calls".into()),
            attempts: 0,
            latency: Duration::ZERO,
            deltas: Vec::new(),
        }
    }
}

/// The `llm` call fails: the effect log could not record or look up a round (the
/// infrastructure's fault, or a log a rerun cannot read); no tool of the round was called.
fn round_failed(asker: &Asker<'_>, key: &str, e: &str) -> CallError {
    CallError {
        exhausted: false,
        no_answer: false,
        model: asker.clients[asker.current].name().to_owned(),
        attempts: asker.attempts,
        message: redact_string(format!(
            "infrastructure: the effect log could not record or look up round `{key}` ({e}); no tool of it was called"
        )),
    }
}

/// The model call and its tool loop: ask, run the tools it asks for (at most
/// `limits.max_calls` per answer), hand back the results (each cut at
/// `limits.max_output_bytes`), ask again; at most `limits.max_steps` rounds of tools.
///
/// `clients` is the model and its fallbacks, in order: when a model's attempts run out on
/// failures worth asking elsewhere ([`CallError::exhausted`]), the next one is asked, and the
/// one that answers carries the rest of the conversation. Each failed model is a trace step.
///
/// With `effects` (the topology's effect log) and a tool of a logged class offered, each
/// round is journalled there ([`Rounds`], docs/effects.md): an answer asking for a call
/// with an idempotency key (any class but `none`) is made durable before its calls run, and a
/// rerun of the step replays the recorded answers instead of asking the model, so every key
/// names the same call in every attempt.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn call_with_tools(
    clients: &[Arc<ModelClient>],
    mut messages: Vec<Message>,
    tools: &[(String, Arc<dyn Tool>)],
    limits: ToolLimits,
    structured: Option<&Structured>,
    stream: bool,
    base: &CallContext,
    effects: Option<Arc<dyn EffectLog>>,
) -> Result<JournalEntry, CallError> {
    let options = ChatOptions { response_format: structured.and_then(|s| s.request.clone()), stream };
    let max_steps = limits.max_steps;
    let mut audits = Vec::new();
    let key = &base.idempotency_key;
    // A tool standing for others (an MCP server) is offered as its members, `<name>.<tool>`,
    // each under a valid function name (`tools::mcp::names`); calls are matched by that name.
    let tools = &crate::tools::expand(tools);
    let wire = crate::tools::mcp::names::wire_names(tools.iter().map(|(n, _)| n.as_str()));
    let specs: Vec<ToolSpec> = tools
        .iter()
        .zip(&wire)
        .map(|((_, t), name)| ToolSpec {
            kind: "function",
            function: FunctionSpec { name: name.clone(), description: t.description(), parameters: t.parameters() },
        })
        .collect();
    let started = std::time::Instant::now();
    let mut usage = Usage::default();
    let mut steps = Vec::new();
    let mut remembered = Vec::new();
    let mut asker = Asker { clients, current: 0, attempts: 0, calls: 0, conversation: &base.conversation_id };
    let mut rounds =
        effects.filter(|_| tools.iter().any(|(_, t)| t.effect().logged())).map(|log| Rounds::new(log, key));
    for round in 0..=max_steps {
        let recorded = match &mut rounds {
            Some(r) => r.recorded(round).await.map_err(|e| round_failed(&asker, &r.key(round), &e))?,
            None => None,
        };
        let replayed = recorded.is_some();
        let mut answer = match recorded {
            Some(recorded) => asker.replayed(recorded, round, &mut steps),
            None => asker.ask(&messages, &specs, &mut steps, key, &options).await?,
        };
        usage += answer.usage;
        if answer.tool_calls.is_empty()
            && let Some(s) = structured
        {
            // The final answer must match the schema: asked again with the error until it does.
            let mut invalid = 0;
            while let Err((pointer, message)) = s.check(&answer.content) {
                invalid += 1;
                let t0 = now_ms();
                steps.push(StepRecord {
                    kind: "schema".into(),
                    name: "response_format".into(),
                    detail: short(&format!("{pointer} {message}")),
                    ok: false,
                    started_ms: t0,
                    duration_ms: 0,
                });
                if invalid >= s.max_invalid {
                    let at = if pointer.is_empty() { String::new() } else { format!(" at `{pointer}`") };
                    return Err(CallError {
                        model: clients[asker.current].name().to_owned(),
                        attempts: asker.attempts,
                        message: format!(
                            "the answer does not match the JSON schema{at}: {message} (after {invalid} answer(s))"
                        ),
                        exhausted: false,
                        no_answer: false,
                    });
                }
                messages.push(Message::text("assistant", answer.content.clone()));
                messages.push(Message::text("user", structured::retry_prompt(&pointer, &message)));
                answer = asker.ask(&messages, &specs, &mut steps, key, &options).await?;
                usage += answer.usage;
            }
        }
        let attempts = asker.attempts;
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
                audits,
                deltas: answer.deltas,
                input: None,
            });
        }
        if round == max_steps {
            break;
        }
        // The decision is durable before any of its calls runs (and before their intents): a
        // rerun replays it, and each key names the same call again.
        let keyed = |c: &crate::model::protocol::ToolCall| {
            wire.iter().position(|w| *w == c.function.name).is_some_and(|i| tools[i].1.effect() != Effect::None)
        };
        if let Some(r) = &rounds
            && !replayed
            && answer.tool_calls.iter().take(limits.max_calls as usize).any(keyed)
        {
            let decision = RoundAnswer {
                model: answer.model.clone(),
                content: answer.content.clone(),
                tool_calls: answer.tool_calls.clone(),
            };
            r.record(round, &decision).await.map_err(|e| round_failed(&asker, &r.key(round), &e))?;
        }
        let caught_up = rounds.as_ref().is_some_and(Rounds::caught_up);
        messages.push(Message {
            role: "assistant".into(),
            content: (!answer.content.is_empty()).then_some(answer.content.clone()),
            tool_calls: answer.tool_calls.clone(),
            tool_call_id: None,
        });
        let asked = answer.tool_calls.len();
        if asked > limits.max_calls as usize {
            audits.push(serde_json::json!({
                "event_type": "tool_calls_refused",
                "details": {"round": round, "asked": asked, "ran": limits.max_calls, "max_tool_calls": limits.max_calls},
            }));
        }
        for (i, call) in answer.tool_calls.iter().enumerate() {
            let t0 = now_ms();
            let wire_name = &call.function.name;
            let found = wire.iter().position(|w| w == wire_name);
            let name = found.map_or(wire_name, |i| &tools[i].0);
            let span = spans::execute_tool(name, &call.id, &base.conversation_id, &call.function.arguments);
            let result = match found.map(|i| &tools[i]) {
                _ if i >= limits.max_calls as usize => Err(format!(
                    "refused: this answer asked for {asked} tool calls; at most {} run per answer (max_tool_calls)",
                    limits.max_calls
                )),
                None => Err(format!("no tool `{wire_name}` here")),
                Some((_, tool)) => match serde_json::from_str::<Value>(if call.function.arguments.is_empty() {
                    "{}"
                } else {
                    &call.function.arguments
                }) {
                    Ok(args) => {
                        // The step (round, place in the answer), not the model's call id: a
                        // rerun after a crash, asking the model again, gets new call ids.
                        let cx = CallContext { idempotency_key: format!("{key}/{round}/{i}"), ..base.clone() };
                        // Made in the span, so a tool's own spans (`invoke_agent`) are its children.
                        let call = span.in_scope(|| tool.call_checked(args, cx)).instrument(span.clone());
                        match effect::in_attempt(caught_up, call).await {
                            Ok(result) => result,
                            // A failure the tool says the model cannot recover from: the
                            // whole call fails (the record is dead-lettered).
                            Err(fatal) => {
                                let message = redact_string(format!("tool `{name}`: {fatal}"));
                                let took = Duration::from_millis((now_ms() - t0).max(0) as u64);
                                crate::model::metrics::record_tool(name, Some("failed"), took);
                                spans::tool_done(&span, false, &message);
                                return Err(CallError {
                                    exhausted: false,
                                    no_answer: false,
                                    model: clients[asker.current].name().to_owned(),
                                    attempts: asker.attempts,
                                    message,
                                });
                            }
                        }
                    }
                    Err(e) => Err(format!("arguments are not JSON: {e}")),
                },
            };
            // A tool's result goes to the model, the journal, the trace and (remembered) the
            // outputs: a configured secret in it (a shell tool printing the environment, an
            // HTTP error echoing a header) is redacted here, before it goes anywhere.
            if let Err(reason) = &result
                && reason.starts_with("refused")
                && i < limits.max_calls as usize
            {
                // A tool's own refusal (a sandbox check, a limit): a policy decision.
                audits.push(serde_json::json!({
                    "event_type": "tool_call_refused",
                    "details": {"round": round, "tool": name, "reason": short(reason)},
                }));
            }
            let error_type = match &result {
                Ok(_) => None,
                Err(e) if e.starts_with("refused") => Some("refused"),
                Err(e) if e.starts_with("no tool") => Some("unknown_tool"),
                Err(e) if e.starts_with("arguments are not JSON") => Some("invalid_arguments"),
                Err(_) => Some("failed"),
            };
            crate::model::metrics::record_tool(name, error_type, Duration::from_millis((now_ms() - t0).max(0) as u64));
            let (ok, text) = match result {
                Ok(t) => {
                    remembered.extend(t.remember.into_iter().map(redact_string));
                    audits.extend(t.audits);
                    (true, redact_string(t.text))
                }
                Err(e) => (false, redact_string(format!("error: {e}"))),
            };
            let text = cut(text, limits.max_output_bytes);
            spans::tool_done(&span, ok, &text);
            drop(span);
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
        exhausted: false,
        no_answer: false,
        model: clients[asker.current].name().to_owned(),
        attempts: asker.attempts,
        message: format!("the model still asked for tools after {max_steps} round(s) (max_tool_steps)"),
    })
}

#[cfg(test)]
#[path = "effect_rounds_tests.rs"]
mod effect_rounds_tests;

/// `text` cut to at most `max` bytes (at a character boundary), with a line saying so.
fn cut(mut text: String, max: u64) -> String {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let total = text.len();
    text.truncate(end);
    text.push_str(&format!("\n[kafclaw: the tool's result was cut at {end} of {total} bytes (max_tool_output_bytes)]"));
    text
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
