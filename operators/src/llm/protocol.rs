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
}

/// Token counts of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Completion tokens.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Total tokens.
    #[serde(default)]
    pub total_tokens: u64,
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
