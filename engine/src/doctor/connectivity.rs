//! Settings and connectivity: the SASL/TLS settings' coherence, DNS and TCP for every
//! bootstrap server, then the TLS and SASL handshakes and the metadata answer, as librdkafka
//! saw them with the runtime's settings.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::report::{Check, Verdict};
use crate::kafka::ClientSettings;
use crate::kafka::inspect::cluster::{ClusterInfo, Handshake, REFUSED};

/// How long one TCP connect may take.
const TCP_TIMEOUT: Duration = Duration::from_secs(5);

/// The `host:port` entries of `bootstrap.servers` (a `proto://` prefix dropped, port 9092
/// added when missing).
pub fn bootstrap_entries(servers: &str) -> Vec<String> {
    servers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.rsplit_once("://").map_or(s, |(_, rest)| rest))
        .map(|s| {
            let has_port = match s.strip_prefix('[') {
                Some(v6) => v6.contains("]:"),
                None => s.contains(':'),
            };
            if has_port { s.to_owned() } else { format!("{s}:9092") }
        })
        .collect()
}

/// `settings.security`: the SASL and TLS settings' problems (see
/// [`ClientSettings::security_problems`]).
pub fn settings_checks(settings: &ClientSettings) -> Vec<Check> {
    let protocol = settings.security_protocol();
    let problems = settings.security_problems();
    if problems.is_empty() {
        let mut reason = format!("security.protocol = {protocol}");
        if let Some(m) = settings.sasl_mechanism() {
            reason.push_str(&format!(", sasl.mechanism = {m}"));
        }
        return vec![Check::new("settings.security", protocol.clone(), Verdict::Ok, reason)];
    }
    problems
        .into_iter()
        .map(|p| {
            let verdict = if p.fatal { Verdict::Fail } else { Verdict::Warn };
            Check::new("settings.security", protocol.clone(), verdict, p.message)
        })
        .collect()
}

/// `connectivity.dns` and `connectivity.tcp` for every bootstrap server.
pub fn network_checks(settings: &ClientSettings) -> Vec<Check> {
    let mut out = Vec::new();
    for entry in bootstrap_entries(settings.get("bootstrap.servers").unwrap_or_default()) {
        let addrs: Vec<SocketAddr> = match entry.to_socket_addrs() {
            Ok(a) => a.collect(),
            Err(e) => {
                out.push(Check::new("connectivity.dns", &entry, Verdict::Fail, format!("does not resolve: {e}")));
                continue;
            }
        };
        let shown: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
        out.push(
            Check::new("connectivity.dns", &entry, Verdict::Ok, format!("resolves to {}", shown.join(", ")))
                .fact("addresses", shown),
        );
        for addr in addrs {
            let started = std::time::Instant::now();
            out.push(match TcpStream::connect_timeout(&addr, TCP_TIMEOUT) {
                Ok(_) => {
                    let ms = started.elapsed().as_secs_f64() * 1000.0;
                    Check::new("connectivity.tcp", addr.to_string(), Verdict::Ok, format!("connected in {ms:.1} ms"))
                        .fact("connect_ms", (ms * 10.0).round() / 10.0)
                }
                Err(e) => {
                    Check::new("connectivity.tcp", addr.to_string(), Verdict::Fail, format!("cannot connect: {e}"))
                        .advice("check the address, the port and the firewalls between here and the broker")
                }
            });
        }
    }
    out
}

/// What failed in a handshake, from librdkafka's reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Tls,
    Sasl,
    Other,
}

fn classify(reasons: &[String]) -> Failure {
    let any = |needles: &[&str]| reasons.iter().any(|r| needles.iter().any(|n| r.contains(n)));
    if any(&["SASL", "Authentication", "authentication", "ERR__AUTHENTICATION"]) {
        Failure::Sasl
    } else if any(&["SSL", "TLS", "certificate"]) {
        Failure::Tls
    } else {
        Failure::Other
    }
}

/// `connectivity.tls`, `connectivity.sasl` and `connectivity.metadata` from the handshake.
pub fn handshake_checks(settings: &ClientSettings, servers: &str, h: &Handshake) -> Vec<Check> {
    let protocol = settings.security_protocol();
    let mechanism = settings.sasl_mechanism().unwrap_or_else(|| "GSSAPI (librdkafka's default)".into());
    let user = settings.get("sasl.username").unwrap_or("?").to_owned();
    // The first two reasons: librdkafka repeats a failure as a log line and a global error.
    let why = || match h.reasons.len() {
        0 => "librdkafka gave no reason".to_owned(),
        _ => h.reasons.iter().take(2).cloned().collect::<Vec<_>>().join("; "),
    };
    let not_used = |what: &str| format!("not used (security.protocol = {protocol}{what})");
    match &h.result {
        Ok(info) => vec![
            if settings.uses_tls() {
                Check::new("connectivity.tls", servers, Verdict::Ok, "TLS handshake succeeded")
            } else {
                Check::new("connectivity.tls", servers, Verdict::Ok, not_used(""))
            },
            if settings.uses_sasl() {
                Check::new(
                    "connectivity.sasl",
                    servers,
                    Verdict::Ok,
                    format!("authenticated as `{user}` with {mechanism}"),
                )
            } else {
                Check::new("connectivity.sasl", servers, Verdict::Ok, not_used(""))
            },
            metadata_ok(servers, info),
        ],
        Err(e) if e.starts_with(REFUSED) => {
            let not_tried = "not attempted: librdkafka refused the settings (see connectivity.metadata)";
            vec![
                Check::new("connectivity.tls", servers, Verdict::Unknown, not_tried),
                Check::new("connectivity.sasl", servers, Verdict::Unknown, not_tried),
                Check::new("connectivity.metadata", servers, Verdict::Fail, e.clone())
                    .advice("fix the `[kafka]` properties (or KAFCLAW_KAFKA_*) named in the error")
                    .fact("reasons", h.reasons.clone()),
            ]
        }
        Err(e) => {
            let failure = classify(&h.reasons);
            let tls = match (settings.uses_tls(), failure) {
                (true, Failure::Tls) => Check::new("connectivity.tls", servers, Verdict::Fail, format!("TLS handshake failed: {}", why()))
                    .advice("check ssl.ca.location (the broker's CA), the host name in its certificate, and that the port speaks TLS"),
                (true, Failure::Sasl) => Check::new("connectivity.tls", servers, Verdict::Ok, "TLS handshake succeeded (SASL failed after it)"),
                (true, Failure::Other) => Check::new("connectivity.tls", servers, Verdict::Unknown, format!("no TLS handshake result: {}", why())),
                (false, Failure::Tls) => Check::new("connectivity.tls", servers, Verdict::Fail, format!("security.protocol = {protocol}, but the broker answered with TLS: {}", why()))
                    .advice("the listener speaks TLS: set security.protocol = SSL (or SASL_SSL) and ssl.ca.location"),
                (false, _) => Check::new("connectivity.tls", servers, Verdict::Ok, not_used("")),
            };
            let sasl = match (settings.uses_sasl(), failure) {
                (true, Failure::Sasl) => Check::new("connectivity.sasl", servers, Verdict::Fail, format!("SASL handshake failed ({mechanism} as `{user}`): {}", why()))
                    .advice("check sasl.mechanism, sasl.username and sasl.password, and that the listener expects SASL"),
                (true, Failure::Tls) => Check::new("connectivity.sasl", servers, Verdict::Unknown, "not reached: the TLS handshake failed"),
                (true, Failure::Other) => Check::new("connectivity.sasl", servers, Verdict::Unknown, format!("no SASL handshake result: {}", why())),
                (false, Failure::Sasl) => Check::new("connectivity.sasl", servers, Verdict::Fail, format!("security.protocol = {protocol}, but the broker requires SASL: {}", why()))
                    .advice("set security.protocol = SASL_SSL (or SASL_PLAINTEXT), sasl.mechanism, sasl.username and sasl.password"),
                (false, _) => Check::new("connectivity.sasl", servers, Verdict::Ok, not_used("")),
            };
            let first = h.reasons.first().map_or(String::new(), |r| format!("; {r}"));
            let mut metadata =
                Check::new("connectivity.metadata", servers, Verdict::Fail, format!("no metadata: {e}{first}"))
                    .fact("reasons", h.reasons.clone());
            // A broker that requires SASL closes a plain connection without saying why.
            if failure == Failure::Other
                && h.reasons.iter().any(|r| r.contains("Disconnected") && r.contains("state UP"))
            {
                metadata = metadata.advice(
                    "the broker closed the connection as soon as it opened: does the listener require SASL or TLS?",
                );
            }
            vec![tls, sasl, metadata]
        }
    }
}

fn metadata_ok(servers: &str, info: &ClusterInfo) -> Check {
    let brokers: Vec<String> = info.brokers.iter().map(|(id, addr)| format!("{id}@{addr}")).collect();
    Check::new(
        "connectivity.metadata",
        servers,
        Verdict::Ok,
        format!("{} broker(s) ({}), {} topic(s)", brokers.len(), brokers.join(", "), info.topics.len()),
    )
    .fact("brokers", brokers)
    .fact("topics", info.topics.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_entries_get_a_port_and_lose_their_scheme() {
        assert_eq!(
            bootstrap_entries(" k1:9093, SASL_SSL://k2 ,[::1]:9094,[::1]"),
            ["k1:9093", "k2:9092", "[::1]:9094", "[::1]:9092"]
        );
    }

    #[test]
    fn librdkafka_reasons_are_classified() {
        let r = |s: &str| vec![s.to_owned()];
        assert_eq!(classify(&r("SASL authentication error: Authentication failed")), Failure::Sasl);
        assert_eq!(classify(&r("SSL handshake failed: wrong version number")), Failure::Tls);
        assert_eq!(classify(&r("Connect to ipv4#127.0.0.1:1 failed: Connection refused")), Failure::Other);
    }
}
