//! The OpenAI-compatible chat-completions wire format (`POST /v1/chat/completions`): the
//! fields kafclaw sends and reads. Unknown response fields are ignored, so OpenAI, OpenRouter,
//! vLLM, Ollama and LiteLLM all fit.

use serde::{Deserialize, Serialize};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Text content (`null` on an assistant message that only calls tools).
    #[serde(default)]
    pub content: Option<String>,
    /// Tools the assistant calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// On a `tool` message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A message with text.
    pub fn text(role: &str, content: String) -> Self {
        Self { role: role.into(), content: Some(content), tool_calls: Vec::new(), tool_call_id: None }
    }
}

/// A tool call the model asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id, echoed by the tool message that answers it.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type", default = "function")]
    pub kind: String,
    /// What to call.
    pub function: FunctionCall,
}

fn function() -> String {
    "function".into()
}

/// The function and its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// Tool name.
    pub name: String,
    /// Arguments as JSON text.
    #[serde(default)]
    pub arguments: String,
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The function.
    pub function: FunctionSpec,
}

/// A function offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionSpec {
    /// Name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its arguments.
    pub parameters: serde_json::Value,
}

/// A request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatRequest {
    /// Model name at the endpoint.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Sampling temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Completion token cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Tools the model may call.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolSpec>,
    /// The answer's required shape (`{"type": "json_schema", …}`), when the operator has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<serde_json::Value>,
    /// Server-sent events instead of one answer.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// With `stream`: `{"include_usage": true}`, so the last chunk reports the tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<serde_json::Value>,
}

/// Token counts of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Total tokens.
    pub total_tokens: u64,
}

impl std::ops::AddAssign for Usage {
    /// Saturating: the counts come from the endpoint, which may report anything up to
    /// `u64::MAX` (an overflow would panic in a debug build and wrap a budget in release).
    fn add_assign(&mut self, o: Self) {
        self.prompt_tokens = self.prompt_tokens.saturating_add(o.prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(o.completion_tokens);
        self.total_tokens = self.total_tokens.saturating_add(o.total_tokens);
    }
}

/// One choice of a response.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Choice {
    /// The answer.
    pub message: Message,
    /// Why generation stopped.
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// A response.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ChatResponse {
    /// The model that answered (as the endpoint names it).
    #[serde(default)]
    pub model: Option<String>,
    /// Choices; kafclaw reads the first.
    pub choices: Vec<Choice>,
    /// Token counts, when the endpoint reports them.
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// An embeddings request (`/v1/embeddings`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingRequest {
    /// Model name at the endpoint.
    pub model: String,
    /// The texts, embedded in one call.
    pub input: Vec<String>,
}

/// One vector of an embeddings response.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EmbeddingData {
    /// The vector.
    pub embedding: Vec<f32>,
    /// Which input it embeds.
    #[serde(default)]
    pub index: usize,
}

/// An embeddings response.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EmbeddingResponse {
    /// One vector per input.
    pub data: Vec<EmbeddingData>,
    /// The model that answered.
    #[serde(default)]
    pub model: Option<String>,
    /// Token counts, when the endpoint reports them.
    #[serde(default)]
    pub usage: Option<Usage>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (operators/tests/fuzz/): an answer reporting `u64::MAX` tokens,
    /// summed over two rounds of the tool loop, overflowed.
    #[test]
    fn usage_reported_as_u64_max_sums_without_overflow() {
        let answer: ChatResponse = serde_json::from_str(
            r#"{"choices":[{"message":{"role":"assistant","content":"x"}}],"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":1,"total_tokens":18446744073709551615}}"#,
        )
        .unwrap();
        let mut total = Usage::default();
        total += answer.usage.unwrap();
        total += answer.usage.unwrap();
        assert_eq!(total, Usage { prompt_tokens: u64::MAX, completion_tokens: 2, total_tokens: u64::MAX });
    }
}
