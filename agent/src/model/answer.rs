//! The tolerant reader of chat-completion answers: liberal in what it accepts, strict in what
//! it passes on. Real OpenAI-compatible servers (vLLM, Ollama, llama.cpp, TGI, SGLang,
//! LiteLLM, OpenRouter, Azure, Mistral, Groq, DeepSeek, the Anthropic and Gemini endpoints…)
//! send shapes the OpenAI reference never does; the corpus of them is
//! `engine/tests/model_corpus/` (docs/models.md). Read here:
//!
//! - explicit `null` wherever a field is optional (`tool_calls`, `content`, `usage`, token
//!   counts, `role`, `id`, `type`);
//! - a value written two ways: tool-call `arguments` as a JSON string or a JSON object,
//!   `content` as a string or a list of parts (`[{"type": "text", "text": …}]`);
//! - errors inside a 200 body: a top-level `error` (object or text), a choice-level `error`,
//!   `finish_reason: "error"` — retryable or final by their code ([`retryable`]);
//! - answers with no usable text — no tool call and empty content, with `finish_reason`
//!   `length` or `content_filter`, or only `reasoning_content` — are errors, never a completed
//!   empty answer.
//!
//! A body that is not JSON, or JSON with neither `choices` nor `error`, is final: asking again
//! would bill the same unreadable answer again.

use serde_json::Value;

use super::protocol::{FunctionCall, ToolCall, Usage};

/// A chat answer as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    /// The text (parts joined); empty when the answer only calls tools.
    pub content: String,
    /// Tool calls, arguments as JSON text; an `id` the server left out is empty (the tool loop
    /// derives one, deterministically).
    pub tool_calls: Vec<ToolCall>,
    /// Token counts (0 where the server reports none).
    pub usage: Usage,
    /// The model the server names.
    pub model: Option<String>,
    /// Why generation stopped, as the server says.
    pub finish_reason: Option<String>,
}

/// Why an answer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// Asking again may help (the server said it was busy, rate limited, failing).
    Retry(String),
    /// Asking again would not (a malformed body, an error the server reported as final).
    Final(String),
    /// A well-formed answer with no usable text (a refusal, a cut or filtered answer, only
    /// reasoning): final too, and the `llm` operator's `no_answer` decides where it goes.
    NoAnswer(String),
}

/// Whether an error the server reported (its numeric `code`/`status`, or the words of its
/// `type`/`code`/`status`, or of the error itself when it is text) is worth asking again: 408, 429, 500, 502, 503, 504, 529, or a rate limit,
/// an overload, a server error, a timeout, an unavailable service.
pub fn retryable(error: &Value) -> bool {
    let numbers = ["code", "status", "status_code"].iter().filter_map(|k| match &error[*k] {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    });
    if numbers.into_iter().any(|n| matches!(n, 408 | 429 | 500 | 502 | 503 | 504 | 529)) {
        return true;
    }
    // The words of its type, code and status, or of the error itself when it is only text.
    let words = match error {
        Value::String(s) => s.clone(),
        _ => ["type", "code", "status"].iter().filter_map(|k| error[*k].as_str()).collect::<Vec<_>>().join(" "),
    };
    let words = words.to_ascii_lowercase();
    ["rate_limit", "rate limit", "overloaded", "server_error", "timeout", "unavailable", "resource_exhausted"]
        .iter()
        .any(|w| words.contains(w))
}

/// The message of a reported error (its `message`, else its text, else the whole value).
pub fn error_message(error: &Value) -> String {
    match error {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| o.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| error.to_string()),
        other => other.to_string(),
    }
}

fn reported(error: &Value, where_: &str) -> Unusable {
    let message = format!("the server reported an error {where_}: {}", error_message(error));
    if retryable(error) { Unusable::Retry(message) } else { Unusable::Final(message) }
}

/// A count that may be missing, null, a float or a string.
fn count(v: &Value) -> u64 {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)).unwrap_or(0),
        Value::String(s) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

/// `content` as a string, a list of parts, or null.
fn text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.as_str()),
                Value::Object(o) => o.get("text").and_then(Value::as_str),
                _ => None,
            })
            .collect(),
        _ => String::new(),
    }
}

/// One tool call, however written.
fn tool_call(v: &Value) -> Option<ToolCall> {
    let function = &v["function"];
    let name = function["name"].as_str()?.to_owned();
    let arguments = match &function["arguments"] {
        Value::String(s) if !s.trim().is_empty() => s.clone(),
        Value::Null | Value::String(_) => "{}".to_owned(),
        other => other.to_string(),
    };
    Some(ToolCall {
        id: v["id"].as_str().unwrap_or_default().to_owned(),
        kind: "function".to_owned(),
        function: FunctionCall { name, arguments },
    })
}

/// Reads a chat-completion body of a 200 answer.
///
/// Errors: [`Unusable::Retry`] for a reported error that is worth asking again;
/// [`Unusable::Final`] for everything else that is not an answer.
pub fn read(body: &[u8]) -> Result<Read, Unusable> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| Unusable::Final(format!("malformed answer: not JSON ({e})")))?;
    read_value(&v)
}

/// [`read`] of a body already parsed (a streamed answer's chunks folded into one).
fn read_value(v: &Value) -> Result<Read, Unusable> {
    if !v["error"].is_null() {
        return Err(reported(&v["error"], "in a 200 answer"));
    }
    let Some(choice) = v["choices"].as_array().and_then(|c| c.first()) else {
        return Err(Unusable::Final("malformed answer: no choices".into()));
    };
    if !choice["error"].is_null() {
        return Err(reported(&choice["error"], "in its choice"));
    }
    let finish_reason = choice["finish_reason"].as_str().map(str::to_owned);
    // Some servers stream-shape their non-streamed answers: `delta` instead of `message`.
    let message = if choice["message"].is_object() { &choice["message"] } else { &choice["delta"] };
    let content = text(&message["content"]);
    let tool_calls: Vec<ToolCall> =
        message["tool_calls"].as_array().map(|calls| calls.iter().filter_map(tool_call).collect()).unwrap_or_default();
    if finish_reason.as_deref() == Some("error") {
        // Proxies end an answer so when the provider behind them failed mid-way.
        return Err(Unusable::Retry("the server ended the answer with finish_reason \"error\"".into()));
    }
    if tool_calls.is_empty() && content.trim().is_empty() {
        let reasoning =
            !text(&message["reasoning_content"]).trim().is_empty() || !text(&message["reasoning"]).trim().is_empty();
        let refusal = message["refusal"].as_str().filter(|r| !r.trim().is_empty());
        let why = match finish_reason.as_deref() {
            _ if refusal.is_some() => format!("the model refused: {}", refusal.unwrap_or_default()),
            Some("length") if reasoning => "the answer was cut at the token limit while reasoning, before any text (finish_reason \"length\", reasoning_content)".to_owned(),
            Some("length") => "the answer was cut at the token limit before any text (finish_reason \"length\")".to_owned(),
            Some("content_filter") => "the server's content filter withheld the answer (finish_reason \"content_filter\")".to_owned(),
            _ if reasoning => "the answer holds only reasoning, no text (reasoning_content)".to_owned(),
            Some(other) => format!("the answer is empty (finish_reason \"{other}\")"),
            None => "the answer is empty".to_owned(),
        };
        return Err(Unusable::NoAnswer(why));
    }
    let u = &v["usage"];
    let usage = Usage {
        prompt_tokens: count(&u["prompt_tokens"]),
        completion_tokens: count(&u["completion_tokens"]),
        total_tokens: match count(&u["total_tokens"]) {
            0 => count(&u["prompt_tokens"]).saturating_add(count(&u["completion_tokens"])),
            n => n,
        },
    };
    Ok(Read { content, tool_calls, usage, model: v["model"].as_str().map(str::to_owned), finish_reason })
}

/// A streamed answer: the answer as [`read`] reads it, and the text deltas as they came.
#[derive(Debug, Clone, PartialEq)]
pub struct Streamed {
    /// The whole answer.
    pub read: Read,
    /// The content deltas, in order (their concatenation is `read.content`).
    pub deltas: Vec<String>,
}

/// Reads a streamed chat answer: server-sent events (`data: {chunk}` lines, `data: [DONE]`),
/// each chunk's `choices[0].delta` adding content, reasoning and tool-call pieces (by their
/// `index`); `finish_reason`, `usage` and `model` from whichever chunk carries them. The
/// chunks are folded into one answer and judged as [`read`] judges a whole one. A server
/// that ignored `stream` and sent one JSON answer is read as such (one delta).
///
/// Errors: as [`read`]; an error event in the stream is classified like an error in a 200.
pub fn read_stream(body: &[u8]) -> Result<Streamed, Unusable> {
    let events_text = String::from_utf8_lossy(body);
    if events_text.trim_start().starts_with('{') {
        let read = read(body)?;
        let deltas = if read.content.is_empty() { Vec::new() } else { vec![read.content.clone()] };
        return Ok(Streamed { read, deltas });
    }
    let mut deltas = Vec::new();
    let (mut reasoning, mut refusal) = (String::new(), String::new());
    let mut calls: Vec<Value> = Vec::new();
    let (mut finish_reason, mut usage, mut model) = (Value::Null, Value::Null, Value::Null);
    let mut events = 0;
    for line in events_text.lines() {
        let Some(data) = line.strip_prefix("data:").map(str::trim) else { continue };
        if data == "[DONE]" {
            break;
        }
        events += 1;
        let chunk: Value = serde_json::from_str(data)
            .map_err(|e| Unusable::Final(format!("malformed stream: a chunk is not JSON ({e})")))?;
        if !chunk["error"].is_null() {
            return Err(reported(&chunk["error"], "in the stream"));
        }
        if !chunk["model"].is_null() {
            model = chunk["model"].clone();
        }
        if chunk["usage"].is_object() {
            usage = chunk["usage"].clone();
        }
        let Some(choice) = chunk["choices"].as_array().and_then(|c| c.first()) else { continue };
        if !choice["error"].is_null() {
            return Err(reported(&choice["error"], "in the stream"));
        }
        if !choice["finish_reason"].is_null() {
            finish_reason = choice["finish_reason"].clone();
        }
        let delta = if choice["delta"].is_object() { &choice["delta"] } else { &choice["message"] };
        let piece = text(&delta["content"]);
        if !piece.is_empty() {
            deltas.push(piece);
        }
        reasoning.push_str(&text(&delta["reasoning_content"]));
        refusal.push_str(&text(&delta["refusal"]));
        for (position, tc) in delta["tool_calls"].as_array().into_iter().flatten().enumerate() {
            let index = tc["index"].as_u64().map_or(position, |i| i as usize);
            if calls.len() <= index {
                calls.resize(index + 1, serde_json::json!({"function": {"name": null, "arguments": ""}}));
            }
            let call = &mut calls[index];
            if let Some(id) = tc["id"].as_str() {
                call["id"] = Value::String(id.to_owned());
            }
            if let Some(name) = tc["function"]["name"].as_str() {
                call["function"]["name"] = Value::String(name.to_owned());
            }
            let piece = match &tc["function"]["arguments"] {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            let so_far = call["function"]["arguments"].as_str().unwrap_or_default().to_owned();
            call["function"]["arguments"] = Value::String(so_far + &piece);
        }
    }
    if events == 0 {
        return Err(Unusable::Final("malformed stream: no data events".into()));
    }
    let whole = serde_json::json!({
        "model": model,
        "usage": usage,
        "choices": [{
            "finish_reason": finish_reason,
            "message": {
                "content": deltas.concat(),
                "tool_calls": calls,
                "reasoning_content": reasoning,
                "refusal": if refusal.is_empty() { Value::Null } else { Value::String(refusal) },
            }
        }]
    });
    let read = read_value(&whole)?;
    Ok(Streamed { read, deltas })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_folds_into_one_answer_with_its_deltas() {
        let body = concat!(
            "data: {\"model\":\"m\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n",
            ": keep-alive\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n",
            "data: [DONE]\n\n"
        );
        let s = read_stream(body.as_bytes()).unwrap();
        assert_eq!(s.deltas, ["Hel", "lo"]);
        assert_eq!((s.read.content.as_str(), s.read.finish_reason.as_deref()), ("Hello", Some("stop")));
        assert_eq!(s.read.usage.total_tokens, 5);
        let tools = concat!(
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"function\":{\"name\":\"t\",\"arguments\":\"{\\\"pa\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"th\\\":1}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: [DONE]\n"
        );
        let s = read_stream(tools.as_bytes()).unwrap();
        assert_eq!(s.read.tool_calls[0].function.arguments, r#"{"path":1}"#);
        assert_eq!(s.read.tool_calls[0].id, "c1");
        let err = "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"overloaded_error\"}}\n\n";
        assert!(matches!(read_stream(err.as_bytes()), Err(Unusable::Retry(_))));
        assert!(matches!(read_stream(b"event: ping\n\n"), Err(Unusable::Final(_))));
    }

    fn ok(body: &str) -> Read {
        read(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e:?}"))
    }

    #[test]
    fn the_reported_shapes_read() {
        let r = ok(
            r#"{"choices":[{"message":{"role":"assistant","content":"hi","tool_calls":null},"finish_reason":"stop"}]}"#,
        );
        assert_eq!((r.content.as_str(), r.tool_calls.len(), r.finish_reason.as_deref()), ("hi", 0, Some("stop")));
        let r = ok(
            r#"{"choices":[{"message":{"content":null,"tool_calls":[{"function":{"name":"t","arguments":{"path":"a"}}}]}}]}"#,
        );
        assert_eq!(r.tool_calls[0].function.arguments, r#"{"path":"a"}"#);
        assert_eq!(r.tool_calls[0].id, "", "derived later by the tool loop");
    }

    #[test]
    fn nulls_parts_and_odd_counts_read() {
        let r = ok(
            r#"{"model":null,"usage":{"prompt_tokens":null,"completion_tokens":2.0,"total_tokens":null},"choices":[{"message":{"role":null,"content":[{"type":"text","text":"a"},{"type":"image_url"},{"type":"text","text":"b"}]}}]}"#,
        );
        assert_eq!(r.content, "ab");
        assert_eq!(r.usage, Usage { prompt_tokens: 0, completion_tokens: 2, total_tokens: 2 });
        let r = ok(
            r#"{"usage":null,"choices":[{"message":{"tool_calls":[{"id":null,"type":null,"function":{"name":"t","arguments":""}}]}}]}"#,
        );
        assert_eq!(r.tool_calls[0].function.arguments, "{}");
    }

    #[test]
    fn errors_in_a_200_are_classified() {
        let retry = [
            r#"{"error":{"message":"busy","code":429}}"#,
            r#"{"error":{"message":"x","type":"server_error"}}"#,
            r#"{"error":"upstream timeout"}"#,
            r#"{"choices":[{"error":{"message":"provider down","code":502},"message":{"content":""}}]}"#,
            r#"{"error":{"message":"o","status":"RESOURCE_EXHAUSTED"}}"#,
            r#"{"choices":[{"message":{"content":"x"},"finish_reason":"error"}]}"#,
        ];
        for body in retry {
            assert!(matches!(read(body.as_bytes()), Err(Unusable::Retry(_))), "{body}");
        }
        let fail = [
            r#"{"error":{"message":"bad key","code":401}}"#,
            r#"{"error":{"message":"no such model","type":"invalid_request_error"}}"#,
            r#"not json"#,
            r#"{"choices":[]}"#,
            r#"{"object":"chat.completion"}"#,
        ];
        for body in fail {
            assert!(matches!(read(body.as_bytes()), Err(Unusable::Final(_))), "{body}");
        }
        let Err(Unusable::Final(m)) = read(br#"{"error":{"message":"bad key","code":401}}"#) else { unreachable!() };
        assert!(m.contains("bad key"), "{m}");
    }

    #[test]
    fn no_usable_text_is_never_an_answer() {
        for (body, says) in [
            (r#"{"choices":[{"message":{"content":""},"finish_reason":"length"}]}"#, "length"),
            (r#"{"choices":[{"message":{"content":null},"finish_reason":"content_filter"}]}"#, "content_filter"),
            (
                r#"{"choices":[{"message":{"content":"","reasoning_content":"thinking"},"finish_reason":"stop"}]}"#,
                "reasoning",
            ),
            (r#"{"choices":[{"message":{"content":"  "}}]}"#, "empty"),
            (
                r#"{"choices":[{"message":{"content":null,"refusal":"I can't help"},"finish_reason":"stop"}]}"#,
                "refused: I can't help",
            ),
            (
                r#"{"choices":[{"message":{"content":"","reasoning_content":"hmm"},"finish_reason":"length"}]}"#,
                "while reasoning",
            ),
        ] {
            match read(body.as_bytes()) {
                Err(Unusable::NoAnswer(m)) => assert!(m.contains(says), "{body}: {m}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        let r = ok(r#"{"choices":[{"message":{"content":"partial"},"finish_reason":"length"}]}"#);
        assert_eq!((r.content.as_str(), r.finish_reason.as_deref()), ("partial", Some("length")));
    }
}
