//! `http`: calls a URL on an allow-listed host (GET, or POST with an `Idempotency-Key` header
//! that is stable for one step of one input, so a replayed call is recognised by the other
//! side).

use std::time::Duration;

use serde_json::{Value, json};

use super::{CallContext, Tool, ToolFuture, ToolOutput};

/// `http`.
#[derive(Debug)]
pub struct HttpTool {
    allow_hosts: Vec<String>,
    method: String,
    client: reqwest::Client,
    description: Option<String>,
}

impl HttpTool {
    /// A tool for `allow_hosts`.
    pub fn new(allow_hosts: Vec<String>, method: String, timeout: Duration, description: Option<String>) -> Self {
        let client = reqwest::Client::builder().timeout(timeout).build().unwrap_or_default();
        Self { allow_hosts, method, client, description }
    }

    /// Checks a URL against the allow-list.
    pub fn check(&self, url: &str) -> Result<reqwest::Url, String> {
        let u = reqwest::Url::parse(url).map_err(|e| format!("`{url}`: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!("refused: `{url}`: only http and https"));
        }
        let host = u.host_str().unwrap_or_default();
        if !self.allow_hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return Err(format!("refused: host `{host}` is not allowed ({})", self.allow_hosts.join(", ")));
        }
        Ok(u)
    }
}

impl Tool for HttpTool {
    fn description(&self) -> String {
        self.description.clone().unwrap_or_else(|| format!("{} a URL on {}.", self.method, self.allow_hosts.join(", ")))
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"url": {"type": "string"}, "body": {"type": "string"}}, "required": ["url"]})
    }
    fn side_effects(&self) -> bool {
        self.method != "GET"
    }
    fn idempotent(&self) -> bool {
        true
    }
    fn call(&self, args: Value, cx: CallContext) -> ToolFuture {
        let url = args["url"].as_str().unwrap_or_default().to_owned();
        let checked = self.check(&url);
        let request = checked.map(|u| {
            if self.method == "POST" {
                self.client
                    .post(u)
                    .header("Idempotency-Key", cx.idempotency_key)
                    .body(args["body"].as_str().unwrap_or_default().to_owned())
            } else {
                self.client.get(u)
            }
        });
        Box::pin(async move {
            let resp = request?.send().await.map_err(|e| format!("`{url}`: {e}"))?;
            let status = resp.status();
            let text = resp.text().await.map_err(|e| format!("`{url}`: {e}"))?;
            if status.is_success() {
                Ok(ToolOutput::from(text))
            } else {
                Err(format!("`{url}`: HTTP {status}: {text}"))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_hosts_and_schemes() {
        let t = HttpTool::new(vec!["api.example.com".into()], "GET".into(), Duration::from_secs(1), None);
        assert!(t.check("https://api.example.com/v1/x").is_ok());
        assert!(t.check("https://evil.example.com/").unwrap_err().contains("not allowed"));
        assert!(t.check("file:///etc/passwd").unwrap_err().contains("only http"));
        assert!(t.check("https://api.example.com.evil.net/").unwrap_err().contains("not allowed"));
    }
}
