//! librdkafka configuration: defaults, then the topology's `[kafka]` table, then
//! `KAFCLAW_KAFKA_*` environment variables (`KAFCLAW_KAFKA_SASL_PASSWORD` →
//! `sasl.password`). SASL/SCRAM, mTLS and OAUTHBEARER are plain librdkafka properties.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;

use kafclaw_operators::api::secrets;

use crate::compiler::sections::KafkaValue;

/// The default bootstrap servers when nothing else is configured.
pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

/// The merged client properties of one topology run (`Debug` shows them with secrets masked).
#[derive(Clone, Default)]
pub struct ClientSettings {
    props: BTreeMap<String, String>,
}

impl std::fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSettings").field("props", &self.redacted()).finish()
    }
}

/// Registers the secret values among `props` (passwords, keys, credentials in the broker
/// list) with the process's redaction ([`kafclaw_operators::api::secrets`]), so no error,
/// dead letter or log line carries them.
fn register_secrets(props: &BTreeMap<String, String>) {
    for (k, v) in props {
        if is_secret(k) {
            secrets::register(v);
        } else if k == "bootstrap.servers" || k.contains("url") {
            secrets::register_url(v);
        }
    }
}

/// Property names whose values are secrets: never logged.
fn is_secret(key: &str) -> bool {
    key.contains("password") || key.contains("secret") || key.ends_with(".key.pem") || key.contains("private")
}

impl ClientSettings {
    /// Merges defaults, the `[kafka]` table and the environment (`env` is usually
    /// `std::env::vars()`).
    pub fn new(table: &BTreeMap<String, KafkaValue>, env: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut props = BTreeMap::new();
        props.insert("bootstrap.servers".to_owned(), DEFAULT_BOOTSTRAP.to_owned());
        for (k, v) in table {
            props.insert(k.clone(), v.to_string());
        }
        for (k, v) in env {
            if let Some(rest) = k.strip_prefix("KAFCLAW_KAFKA_") {
                props.insert(rest.to_ascii_lowercase().replace('_', "."), v);
            }
        }
        register_secrets(&props);
        Self { props }
    }

    /// The settings of a command with no topology: defaults, the environment, and `--brokers`.
    pub fn from_env(brokers: Option<String>) -> Self {
        let mut s = Self::new(&BTreeMap::new(), std::env::vars());
        if let Some(b) = brokers {
            s.set("bootstrap.servers", b);
        }
        s
    }

    /// Sets one property (command-line overrides such as `--brokers`).
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        let value = value.into();
        register_secrets(&BTreeMap::from([(key.to_owned(), value.clone())]));
        self.props.insert(key.to_owned(), value);
    }

    /// One property.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.props.get(key).map(String::as_str)
    }

    /// The properties with secrets masked, for logs.
    pub fn redacted(&self) -> Vec<(String, String)> {
        self.props.iter().map(|(k, v)| (k.clone(), if is_secret(k) { "***".to_owned() } else { v.clone() })).collect()
    }

    /// A librdkafka config: `defaults` (which the user's properties override), the user's
    /// properties, then `forced` (the runtime's own settings, which the user cannot override:
    /// group id, transactional id, isolation level, …).
    pub fn client_config_with(&self, defaults: &[(&str, &str)], forced: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.props {
            c.set(k, v);
        }
        for (k, v) in forced {
            c.set(*k, *v);
        }
        c
    }

    /// A librdkafka config with just the user's properties and `forced`.
    pub fn client_config(&self, forced: &[(&str, &str)]) -> ClientConfig {
        self.client_config_with(&[], forced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_wins_and_secrets_are_masked() {
        let mut table = BTreeMap::new();
        table.insert("security.protocol".to_owned(), KafkaValue::String("SASL_SSL".into()));
        table.insert("session.timeout.ms".to_owned(), KafkaValue::Integer(6000));
        let env = vec![
            ("KAFCLAW_KAFKA_SASL_PASSWORD".to_owned(), "hunter2".to_owned()),
            ("KAFCLAW_KAFKA_BOOTSTRAP_SERVERS".to_owned(), "k:9093".to_owned()),
            ("OTHER".to_owned(), "x".to_owned()),
        ];
        let s = ClientSettings::new(&table, env);
        assert_eq!(s.get("bootstrap.servers"), Some("k:9093"));
        assert_eq!(s.get("session.timeout.ms"), Some("6000"));
        assert_eq!(s.get("sasl.password"), Some("hunter2"));
        let shown: BTreeMap<_, _> = s.redacted().into_iter().collect();
        assert_eq!(shown["sasl.password"], "***");
        assert_eq!(shown["security.protocol"], "SASL_SSL");
        assert!(!format!("{s:?}").contains("hunter2"), "Debug masks secrets: {s:?}");
        assert_eq!(secrets::redact("auth failed for hunter2"), "auth failed for [redacted]");
    }
}
