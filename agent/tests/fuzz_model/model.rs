//! Target 5: the OpenAI-protocol answers of a model endpoint.

use super::harness::*;
use kafclaw_agent::model::protocol::{ChatResponse, EmbeddingResponse, Usage};
use kafclaw_agent::model::rate::TokenRate;

// 5. The OpenAI-protocol answers
// ---------------------------------------------------------------------------------------------

/// What the fake endpoint (engine/tests/fake_openai) and real ones answer.
pub(crate) fn chat_seeds() -> Vec<Vec<u8>> {
    let usage = json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15});
    [
        json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "fake-1",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "answer: hello"}, "finish_reason": "stop"}],
               "usage": usage}),
        json!({"model": "fake-1", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "read-notes", "arguments": "{\"path\": \"notes.txt\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "run", "arguments": "{\"argv\": [\"echo\", \"hi\"]}"}}
              ]}}], "usage": usage}),
        json!({"model": "fake-1", "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_m", "type": "function", "function": {"name": "memory", "arguments": "{\"action\":\"remember\",\"text\":\"x\"}"}}
              ]}}], "usage": usage}),
        // OpenAI's current shape, with fields kafclaw ignores.
        json!({"id": "chatcmpl-B9", "object": "chat.completion", "created": 1741570283, "model": "gpt-4o-2024-08-06",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok", "refusal": null, "annotations": []},
                            "logprobs": null, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
                         "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0}},
               "service_tier": "default", "system_fingerprint": "fp_fc9f1d7035"}),
        json!({"object": "list", "model": "fake-embed-1", "data": [
                {"object": "embedding", "index": 0, "embedding": [0.1, -0.2, 0.3]},
                {"object": "embedding", "index": 1, "embedding": [1e-40, 0.0, 3.4e38]}
              ], "usage": {"prompt_tokens": 4, "total_tokens": 4}}),
    ]
    .iter()
    .map(|v| v.to_string().into_bytes())
    .collect()
}

/// A well-formed answer whose values are generated: token counts up to `u64::MAX`, odd
/// indexes, tool calls with arbitrary argument text, vectors with extreme floats.
pub(crate) fn generated_answer() -> impl Strategy<Value = Vec<u8>> {
    let count = prop_oneof![
        Just(json!(u64::MAX)),
        Just(json!(u64::MAX / 2 + 1)),
        Just(json!(-1)),
        Just(json!(1.5)),
        Just(json!(null)),
        Just(json!("10")),
        (0u64..100_000).prop_map(|n| json!(n)),
    ];
    let usage = (count.clone(), count.clone(), count.clone())
        .prop_map(|(p, c, t)| json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": t}));
    let arguments = prop_oneof![
        Just("{}".to_owned()),
        Just(String::new()),
        Just("[".repeat(100_000)),
        Just(r#"{"a": 1e400}"#.to_owned()),
        "\\PC{0,40}",
    ];
    let call = ("\\PC{0,8}", "\\PC{0,12}", arguments).prop_map(
        |(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}),
    );
    let chat = (prop::collection::vec(call, 0..3), proptest::option::of("\\PC{0,40}"), usage.clone()).prop_map(
        |(calls, content, usage)| {
            json!({"model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "tool_calls": calls}, "finish_reason": "stop"}], "usage": usage})
        },
    );
    let number = prop_oneof![
        Just(json!(1e39)),
        Just(json!(-1e39)),
        Just(json!(5e-324)),
        Just(json!(0)),
        any::<f32>().prop_map(|f| json!(f))
    ];
    let index = prop_oneof![Just(json!(u64::MAX)), Just(json!(-1)), (0u64..4).prop_map(|n| json!(n))];
    let data = (prop::collection::vec(number, 0..4), index)
        .prop_map(|(v, i)| json!({"object": "embedding", "index": i, "embedding": v}));
    let embeddings = (prop::collection::vec(data, 0..3), usage).prop_map(|(d, u)| json!({"data": d, "usage": u}));
    prop_oneof![chat, embeddings].prop_map(|v| v.to_string().into_bytes())
}

/// Parses an answer as a chat and as an embeddings response and uses what parsed the way
/// the llm operator does: usage summed over the tool loop's rounds and into a budget, tool
/// arguments parsed, the token-rate bucket settled with the reported total.
pub(crate) fn check_answer(bytes: &[u8]) -> Result<(), String> {
    if let Ok(r) = serde_json::from_slice::<ChatResponse>(bytes) {
        let usage = r.usage.unwrap_or_default();
        let mut total = Usage::default();
        for _ in 0..3 {
            total += usage;
        }
        if total.total_tokens < usage.total_tokens {
            return Err(format!("usage summed over rounds went down: {total:?} < {usage:?}"));
        }
        for choice in &r.choices {
            for call in &choice.message.tool_calls {
                let _ = serde_json::from_str::<Value>(&call.function.arguments);
            }
        }
        let rate = TokenRate::new(1);
        rate.settle(1, usage.total_tokens);
        // Taking from the bucket computes the wait; it must be a duration, not a panic.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().map_err(|e| e.to_string())?;
        let _ = runtime.block_on(async { tokio::time::timeout(Duration::from_millis(1), rate.take(1)).await });
    }
    if let Ok(r) = serde_json::from_slice::<EmbeddingResponse>(bytes) {
        let mut data = r.data;
        data.sort_by_key(|d| d.index);
        let _ = data.iter().enumerate().any(|(i, d)| d.index != i || d.embedding.is_empty());
        let mut total = Usage::default();
        total += r.usage.unwrap_or_default();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
