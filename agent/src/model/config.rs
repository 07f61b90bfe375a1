//! Models: `[models.<name>]` in a topology, and the client that calls one (reqwest): retries
//! with exponential backoff and jitter, `Retry-After` honoured, adaptive concurrency.
//!
//! ```toml
//! [models.fast]
//! base_url = "https://api.openai.com/v1"     # or OpenRouter, vLLM, Ollama (http://127.0.0.1:11434/v1)
//! model = "gpt-4o-mini"
//! api_key_env = "OPENAI_API_KEY"
//! timeout = "60s"
//! max_concurrency = 64
//! ```

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::client::{ModelClient, ModelUsage, endpoint};
use super::limiter::Limiter;
use super::recording::Recording;
use kafclaw_operators::api::config::ConfigError;
use kafclaw_operators::api::config::{Errors, parse_duration_ms};
use kafclaw_operators::api::secrets::{self, Secret};

/// Config of one model endpoint (`Debug` redacts credentials in `base_url`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Base URL of the OpenAI-compatible API (the part before `/chat/completions` and
    /// `/embeddings`), e.g.
    /// `https://api.openai.com/v1`, `https://openrouter.ai/api/v1`, `http://127.0.0.1:11434/v1`.
    pub base_url: Spanned<String>,
    /// The model's name at the endpoint.
    pub model: String,
    /// Name of the environment variable holding the API key, sent as a bearer token. Without
    /// it, or with the variable unset (local servers such as Ollama), no `Authorization`
    /// header is sent (a warning says so when the variable is named but unset).
    #[serde(default)]
    pub api_key_env: Option<Spanned<String>>,
    /// Time limit of one HTTP attempt.
    #[serde(default = "default_timeout")]
    pub timeout: Spanned<String>,
    /// Most calls in flight per instance; lowered adaptively while the endpoint answers 429.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// Attempts per call (429s, 5xx, timeouts and malformed answers are retried) before the
    /// record is dead-lettered.
    #[serde(default = "default_attempts")]
    pub max_attempts: Spanned<u32>,
    /// Delay before the first retry; doubled per attempt, with full jitter.
    #[serde(default = "default_backoff")]
    pub backoff: Spanned<String>,
    /// Longest delay between attempts (also caps a `Retry-After`).
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Spanned<String>,
    /// Sampling temperature sent with every call.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Completion token cap sent with every call.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// The header the API key is sent in. Default: `Authorization: Bearer <key>`; a name here
    /// (Azure OpenAI: `"api-key"`) sends the key alone in that header. The key itself only
    /// ever comes from `api_key_env`.
    #[serde(default)]
    pub api_key_header: Option<String>,
    /// Headers sent with every call (OpenRouter's `HTTP-Referer`/`X-Title`, a gateway's
    /// routing header). Not for secrets: they are written in the topology.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Query parameters added to every call (Azure OpenAI: `{ "api-version" = "2024-10-21" }`).
    #[serde(default)]
    pub query: std::collections::BTreeMap<String, String>,
    /// Path of chat completions under `base_url` (default `chat/completions`).
    #[serde(default = "default_chat_path")]
    pub chat_path: String,
    /// Path of embeddings under `base_url` (default `embeddings`).
    #[serde(default = "default_embeddings_path")]
    pub embeddings_path: String,
    /// Models (by their names under `[models]`) called in order when this one's attempts run
    /// out on failures worth asking elsewhere (5xx, 429, timeouts, a server error reported in
    /// a 200); a final failure (a 4xx, an unusable answer) is not passed on. The journal keeps
    /// the answer of whichever model gave it, so a replay calls none of them.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// Largest HTTP answer body read from the endpoint, in bytes (default 8 MiB): a bigger one
    /// fails the call for good (not retried) after reading no more than this, so a broken or
    /// hostile endpoint cannot make the instance hold it whole.
    #[serde(default = "default_max_answer_bytes")]
    pub max_answer_bytes: u64,
    /// Tokens per minute this instance may use at the endpoint; calls wait for room before
    /// they are sent (estimated from the prompt, corrected by the reported usage).
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    /// Environment variable that, when set, replaces `base_url` (and, with `recorded`, turns
    /// live calls on), e.g. `KAFCLAW_MODEL_URL`.
    #[serde(default)]
    pub base_url_env: Option<String>,
    /// Environment variable that, when set, replaces `model`.
    #[serde(default)]
    pub model_env: Option<String>,
    /// A JSON Lines file of recorded answers, relative to the topology file, used when no live
    /// endpoint is configured (`base_url_env` unset). Two kinds of line: `{"prompt": …,
    /// "answer": …}` (`prompt` matches the user message or its first line, `"*"` any; every
    /// such answer says so: `usage.model` is `recorded:<model>`), and the lines of
    /// `kafclaw journal export` (`{"operator", "key", "entry"}`), which give each record the
    /// very answer (or vector) a previous run journalled for it, so the run's outputs are
    /// reproduced exactly; a record the export does not hold is dead-lettered.
    #[serde(default)]
    pub recorded: Option<String>,
}

impl std::fmt::Debug for ModelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        secrets::register_url(self.base_url.get_ref());
        f.debug_struct("ModelConfig")
            .field("base_url", &secrets::redact(self.base_url.get_ref()))
            .field("model", &self.model)
            .field("api_key_env", &self.api_key_env.as_ref().map(|v| v.get_ref()))
            .field("timeout", self.timeout.get_ref())
            .field("max_concurrency", &self.max_concurrency)
            .field("max_attempts", self.max_attempts.get_ref())
            .field("backoff", self.backoff.get_ref())
            .field("max_backoff", self.max_backoff.get_ref())
            .field("temperature", &self.temperature)
            .field("max_tokens", &self.max_tokens)
            .field("tokens_per_minute", &self.tokens_per_minute)
            .field("base_url_env", &self.base_url_env)
            .field("model_env", &self.model_env)
            .field("recorded", &self.recorded)
            .finish()
    }
}

/// The error of an operator naming a model no `[models.<name>]` table declares.
pub fn undeclared_model(name: &Spanned<String>) -> ConfigError {
    ConfigError::at(name.span(), format!("model `{}` is not declared", name.get_ref()))
        .with_hint(Some(format!("add a [models.{}] table", name.get_ref())))
}

fn spanned(s: &str) -> Spanned<String> {
    Spanned::new(0..0, s.to_owned())
}
fn default_timeout() -> Spanned<String> {
    spanned("60s")
}
fn default_concurrency() -> usize {
    16
}
fn default_attempts() -> Spanned<u32> {
    Spanned::new(0..0, 4)
}
fn default_backoff() -> Spanned<String> {
    spanned("500ms")
}
fn default_max_backoff() -> Spanned<String> {
    spanned("30s")
}

impl ModelConfig {
    /// Checks the options (no network, no environment).
    pub fn check(&self) -> Vec<ConfigError> {
        match self.settings_without_key() {
            Ok(_) => Vec::new(),
            Err(e) => e,
        }
    }

    fn settings_without_key(&self) -> Result<(String, Duration, Duration, Duration), Vec<ConfigError>> {
        let mut errors = Errors::default();
        let url = errors.take_one(
            endpoint(self.base_url.get_ref(), "chat/completions")
                .map(|_| self.base_url.get_ref().clone())
                .map_err(|e| ConfigError::at(self.base_url.span(), e)),
        );
        if *self.max_attempts.get_ref() == 0 {
            errors.push(ConfigError::at(self.max_attempts.span(), "`max_attempts` must be at least 1"));
        }
        let ms = |v: &Spanned<String>, errors: &mut Errors| errors.take(parse_duration_ms(v));
        let timeout = ms(&self.timeout, &mut errors);
        let backoff = ms(&self.backoff, &mut errors);
        let max_backoff = ms(&self.max_backoff, &mut errors);
        errors.finish(|| {
            let d = |v: i64| Duration::from_millis(v as u64);
            Some((url?, d(timeout?), d(backoff?), d(max_backoff?)))
        })
    }

    /// Whether calls go to the recording (no live endpoint configured).
    pub fn is_recorded(&self) -> bool {
        self.recorded.is_some() && self.base_url_env.as_ref().is_none_or(|v| std::env::var_os(v).is_none())
    }

    /// Builds the client (reads the API key, and any URL and model overrides, from the
    /// environment now).
    ///
    /// Every secret read here (the key; credentials in the base URL, from the file or the
    /// environment) is registered with [`secrets`] before anything can print it, and the
    /// errors are redacted.
    pub fn client(&self, name: &str) -> Result<ModelClient, String> {
        self.client_unredacted(name).map_err(secrets::redact_string)
    }

    fn client_unredacted(&self, name: &str) -> Result<ModelClient, String> {
        secrets::register_url(self.base_url.get_ref());
        let (mut base, timeout, backoff, max_backoff) =
            self.settings_without_key().map_err(|e| e.into_iter().map(|e| e.message).collect::<Vec<_>>().join("; "))?;
        if let Some(Ok(b)) = self.base_url_env.as_ref().map(std::env::var) {
            secrets::register_url(&b);
            base = b;
        }
        let with_query = |mut url: reqwest::Url| {
            if !self.query.is_empty() {
                url.query_pairs_mut().extend_pairs(self.query.iter());
            }
            url
        };
        let chat_url = endpoint(&base, self.chat_path.trim_start_matches('/'))
            .map(with_query)
            .map_err(|e| format!("model `{name}`: {base}: {e}"))?;
        let embeddings_url = endpoint(&base, self.embeddings_path.trim_start_matches('/'))
            .map(with_query)
            .map_err(|e| format!("model `{name}`: {base}: {e}"))?;
        let model = match self.model_env.as_ref().map(std::env::var) {
            Some(Ok(m)) => m,
            _ => self.model.clone(),
        };
        let recorded = if self.is_recorded() {
            let path = self.recorded.as_deref().unwrap_or_default();
            let text = std::fs::read_to_string(path).map_err(|e| format!("model `{name}`: recording {path}: {e}"))?;
            let recording = Recording::parse(path, &text).map_err(|e| format!("model `{name}`: {e}"))?;
            tracing::warn!(
                model = name,
                recording = path,
                answers = recording.answers.len(),
                journal_entries = recording.journal.len(),
                "no live model configured: answers come from a recording"
            );
            Some(recording)
        } else {
            None
        };
        let api_key = match &self.api_key_env {
            _ if recorded.is_some() => None,
            None => None,
            Some(var) => match std::env::var(var.get_ref()) {
                Ok(key) => Some(Secret::new(key)),
                Err(_) => {
                    tracing::warn!(
                        model = name,
                        variable = var.get_ref().as_str(),
                        "API key variable unset: calling without authorization"
                    );
                    None
                }
            },
        };
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &self.headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| format!("model `{name}`: header `{k}`: {e}"))?;
            let value =
                reqwest::header::HeaderValue::from_str(v).map_err(|e| format!("model `{name}`: header `{k}`: {e}"))?;
            headers.insert(name, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| format!("model `{name}`: {e}"))?;
        Ok(ModelClient {
            name: name.to_owned(),
            model,
            recorded,
            usage: ModelUsage::default(),
            rate: self.tokens_per_minute.map(super::rate::TokenRate::new),
            chat_url,
            embeddings_url,
            api_key,
            http,
            limiter: Limiter::new(self.max_concurrency),
            max_attempts: (*self.max_attempts.get_ref()).max(1),
            backoff,
            max_backoff,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            max_answer_bytes: self.max_answer_bytes,
            api_key_header: self.api_key_header.clone(),
        })
    }
}

fn default_chat_path() -> String {
    "chat/completions".to_owned()
}

fn default_embeddings_path() -> String {
    "embeddings".to_owned()
}

/// 8 MiB: far above any chat completion or embedding batch a model returns.
fn default_max_answer_bytes() -> u64 {
    8 << 20
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SharedModel;

    #[test]
    fn debug_of_config_client_and_shared_model_never_shows_a_secret() {
        // SAFETY: a variable of this test alone, set before anything reads it.
        unsafe { std::env::set_var("KAFCLAW_TEST_DEBUG_MODEL_KEY", "sk-debug-model-key-98765") };
        let config: ModelConfig = toml::from_str(
            r#"
base_url = "https://someone:url-pass-4242@models.example/v1"
model = "m"
api_key_env = "KAFCLAW_TEST_DEBUG_MODEL_KEY"
"#,
        )
        .unwrap();
        let shared = SharedModel::new("m", config.clone());
        let client = shared.client().unwrap();
        let shown = [format!("{config:?}"), format!("{client:?}"), format!("{shared:?}"), format!("{:#?}", client)];
        for text in &shown {
            assert!(!text.contains("sk-debug-model-key-98765"), "{text}");
            assert!(!text.contains("url-pass-4242"), "{text}");
        }
        assert!(shown[1].contains("[redacted]"), "{}", shown[1]);
        assert_eq!(client.api_key.as_ref().map(|k| k.expose()), Some("sk-debug-model-key-98765"));
        // registered when read: any text carrying them is redacted from now on
        assert_eq!(
            secrets::redact("Bearer sk-debug-model-key-98765 / url-pass-4242"),
            "Bearer [redacted] / [redacted]"
        );
    }
}
