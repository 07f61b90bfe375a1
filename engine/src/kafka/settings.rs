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

    /// `security.protocol` upper-cased (librdkafka's default `PLAINTEXT` when unset).
    pub fn security_protocol(&self) -> String {
        self.get("security.protocol").unwrap_or("PLAINTEXT").trim().to_ascii_uppercase()
    }

    /// Whether the connections are TLS (`SSL`, `SASL_SSL`).
    pub fn uses_tls(&self) -> bool {
        self.security_protocol().ends_with("SSL")
    }

    /// Whether the connections authenticate with SASL (`SASL_PLAINTEXT`, `SASL_SSL`).
    pub fn uses_sasl(&self) -> bool {
        self.security_protocol().starts_with("SASL_")
    }

    /// The SASL mechanism (`sasl.mechanism`, or its librdkafka alias `sasl.mechanisms`),
    /// upper-cased, when set.
    pub fn sasl_mechanism(&self) -> Option<String> {
        self.get("sasl.mechanism").or_else(|| self.get("sasl.mechanisms")).map(|m| m.trim().to_ascii_uppercase())
    }

    /// The SASL and TLS misconfigurations librdkafka either accepts silently or reports
    /// obscurely (it falls back to GSSAPI, which this build does not include, when a SASL
    /// protocol has no mechanism): errors make every connection fail, warnings are settings
    /// that are ignored or unsafe. Empty when the settings are coherent.
    pub fn security_problems(&self) -> Vec<SecurityProblem> {
        let mut out = Vec::new();
        let protocol = self.security_protocol();
        let error = |m: String| SecurityProblem { fatal: true, message: m };
        let warning = |m: String| SecurityProblem { fatal: false, message: m };
        if !SECURITY_PROTOCOLS.contains(&protocol.as_str()) {
            out.push(error(format!(
                "security.protocol = `{protocol}` is not one of {}",
                SECURITY_PROTOCOLS.join(", ")
            )));
            return out;
        }
        let set = |prefix: &str| -> Vec<&str> {
            self.props.keys().filter(|k| k.starts_with(prefix)).map(String::as_str).collect()
        };
        if self.uses_sasl() {
            match self.sasl_mechanism() {
                None => out.push(error(format!(
                    "security.protocol = {protocol} without sasl.mechanism: librdkafka would use GSSAPI \
                     (Kerberos), which this build does not include; set sasl.mechanism to one of {}",
                    SASL_MECHANISMS.join(", ")
                ))),
                Some(m) if !SASL_MECHANISMS.contains(&m.as_str()) => {
                    out.push(error(format!("sasl.mechanism = `{m}` is not one of {}", SASL_MECHANISMS.join(", "))))
                }
                Some(m) if m != "OAUTHBEARER" => {
                    for key in ["sasl.username", "sasl.password"] {
                        if self.get(key).is_none_or(str::is_empty) {
                            out.push(error(format!("sasl.mechanism = {m} needs {key}")));
                        }
                    }
                    if m == "PLAIN" && !self.uses_tls() {
                        out.push(warning(
                            "sasl.mechanism = PLAIN over SASL_PLAINTEXT sends the password in clear text; \
                             use SASL_SSL or SCRAM"
                                .to_owned(),
                        ));
                    }
                }
                Some(_) => {}
            }
        } else {
            let sasl = set("sasl.");
            if !sasl.is_empty() {
                out.push(warning(format!("{} set but security.protocol = {protocol}: ignored", sasl.join(", "))));
            }
        }
        if !self.uses_tls() {
            let ssl = set("ssl.");
            if !ssl.is_empty() {
                out.push(warning(format!("{} set but security.protocol = {protocol}: ignored", ssl.join(", "))));
            }
        } else if self.get("enable.ssl.certificate.verification").is_some_and(|v| v.eq_ignore_ascii_case("false")) {
            out.push(warning(
                "enable.ssl.certificate.verification = false: the broker's certificate is not checked".into(),
            ));
        }
        out
    }
}

/// The values librdkafka accepts for `security.protocol`.
pub const SECURITY_PROTOCOLS: [&str; 4] = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

/// The SASL mechanisms this build of librdkafka has (GSSAPI needs libsasl2, not linked).
pub const SASL_MECHANISMS: [&str; 4] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];

/// One problem [`ClientSettings::security_problems`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityProblem {
    /// `true`: no connection can succeed; `false`: a setting is ignored or unsafe.
    pub fatal: bool,
    /// What is wrong, naming the properties.
    pub message: String,
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

    fn settings(props: &[(&str, &str)]) -> ClientSettings {
        let mut s = ClientSettings::new(&BTreeMap::new(), Vec::new());
        for (k, v) in props {
            s.set(k, *v);
        }
        s
    }

    fn problems(props: &[(&str, &str)]) -> Vec<(bool, String)> {
        settings(props).security_problems().into_iter().map(|p| (p.fatal, p.message)).collect()
    }

    #[test]
    fn coherent_security_settings_have_no_problems() {
        assert!(problems(&[]).is_empty());
        let scram = [
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "kafclaw"),
            ("sasl.password", "pw"),
            ("ssl.ca.location", "/etc/ca.pem"),
        ];
        assert!(problems(&scram).is_empty(), "{:?}", problems(&scram));
        let s = settings(&scram);
        assert!(s.uses_tls() && s.uses_sasl());
        assert_eq!(s.sasl_mechanism().as_deref(), Some("SCRAM-SHA-512"));
    }

    #[test]
    fn sasl_without_a_mechanism_or_credentials_is_an_error() {
        let p = problems(&[("security.protocol", "SASL_SSL")]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].0 && p[0].1.contains("without sasl.mechanism") && p[0].1.contains("GSSAPI"), "{p:?}");
        let p = problems(&[("security.protocol", "SASL_PLAINTEXT"), ("sasl.mechanism", "SCRAM-SHA-256")]);
        assert_eq!(p.iter().filter(|(fatal, _)| *fatal).count(), 2, "username and password: {p:?}");
        let p = problems(&[("security.protocol", "SASL_PLAINTEXT"), ("sasl.mechanism", "GSSAPI")]);
        assert!(p[0].0 && p[0].1.contains("not one of"), "{p:?}");
        let p = problems(&[("security.protocol", "TLS")]);
        assert!(p[0].0 && p[0].1.contains("security.protocol"), "{p:?}");
    }

    #[test]
    fn ignored_and_unsafe_settings_are_warnings() {
        let p = problems(&[("sasl.username", "u"), ("ssl.ca.location", "/ca.pem")]);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p.iter().all(|(fatal, m)| !fatal && m.contains("PLAINTEXT: ignored")), "{p:?}");
        let p = problems(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "u"),
            ("sasl.password", "p"),
        ]);
        assert!(matches!(&p[..], [(false, m)] if m.contains("clear text")), "{p:?}");
        let p = problems(&[("security.protocol", "SSL"), ("enable.ssl.certificate.verification", "false")]);
        assert!(matches!(&p[..], [(false, m)] if m.contains("not checked")), "{p:?}");
    }
}
