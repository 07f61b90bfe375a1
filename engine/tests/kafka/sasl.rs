//! SASL/SCRAM and TLS settings through to librdkafka, with `doctor` reporting each handshake.
//!
//! What the test broker (Tansu 0.6.0) can do, measured: with `--authentication` it requires
//! SASL and runs SCRAM-SHA-512 (it answers a SCRAM exchange for an unknown user with
//! `unknown-user`), but no user can be created then — `tansu user create` is refused as
//! unauthenticated and the in-memory store starts empty — so a successful SCRAM login cannot be
//! shown here. Its `--cert`/`--key` flags conflict with each other and the listener still
//! speaks plain Kafka, so there is no TLS listener either. The tests therefore drive the real
//! handshakes as far as this broker goes: a SCRAM exchange the broker refuses by its verdict,
//! a plain client refused by a SASL-only broker, SASL against a broker without it, TLS against
//! a plain port, and the misconfigurations refused before any connection.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::doctor::{assert_shape, check, doctor};
use crate::support::{TestDir, brokers, free_port, log_tail, tansu_binary, unique, wait_exit, write_topology};

/// A Tansu of the test's own that requires SASL (`--authentication`); killed when dropped.
struct SaslBroker {
    child: Child,
    addr: String,
}

impl SaslBroker {
    fn start(log: &Path) -> Self {
        let bin: PathBuf = tansu_binary().expect("the tansu binary (`scripts/broker install`)");
        let addr = format!("127.0.0.1:{}", free_port());
        let url = format!("tcp://{addr}");
        let out = std::fs::File::create(log).unwrap();
        let child = Command::new(bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/", "--authentication"])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(std::fs::read_to_string(log).unwrap_or_default().contains("ready in")
            && std::net::TcpStream::connect(&addr).is_ok())
        {
            assert!(Instant::now() < deadline, "broker not ready:\n{}", log_tail(log));
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, addr }
    }
}

impl Drop for SaslBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SCRAM: [(&str, &str); 4] = [
    ("KAFCLAW_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
    ("KAFCLAW_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
    ("KAFCLAW_KAFKA_SASL_USERNAME", "kafclaw"),
    ("KAFCLAW_KAFKA_SASL_PASSWORD", "s3cret-pw"),
];

fn json_doctor(brokers: &str, env: &[(&str, &str)]) -> (Option<i32>, Value, String) {
    let (code, out, err) = doctor(&["--json", "--no-probe", "--brokers", brokers], env);
    let doc: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    assert_shape(&doc);
    (code, doc, out)
}

#[test]
fn scram_reaches_a_broker_that_requires_sasl_and_its_verdict_is_reported() {
    let dir = TestDir::new();
    let broker = SaslBroker::start(&dir.path().join("broker.log"));

    let (code, doc, out) = json_doctor(&broker.addr, &SCRAM);
    assert_eq!(code, Some(1));
    assert_eq!(check(&doc, "settings.security", None)["verdict"], "ok");
    let sasl = check(&doc, "connectivity.sasl", None);
    assert_eq!(sasl["verdict"], "fail", "{sasl:#}");
    let reason = sasl["reason"].as_str().unwrap();
    assert!(reason.contains("SCRAM-SHA-512 as `kafclaw`") && reason.contains("unknown-user"), "{reason}");
    assert!(!out.contains("s3cret-pw"), "the password never shows: {out}");

    // A plain client: the broker hangs up; doctor says what that suggests.
    let (_, doc, _) = json_doctor(&broker.addr, &[]);
    let md = check(&doc, "connectivity.metadata", None);
    assert_eq!(md["verdict"], "fail");
    assert!(md["advice"].as_str().unwrap_or_default().contains("require SASL"), "{md:#}");

    // `kafclaw run` hands the same settings to librdkafka: its start fails on the SCRAM verdict.
    let input = unique("sasl-in");
    let path = write_topology(
        dir.path(),
        "sasl-app",
        &format!(
            "[topology]\nname = \"{}\"\n\n[sources.in]\ntype = \"kafka\"\ntopic = \"{input}\"\n\n\
             [sinks.out]\ntype = \"kafka\"\ninputs = [\"in\"]\ntopic = \"{input}-out\"\n",
            unique("sasl-app")
        ),
    );
    let log = dir.path().join("run.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kafclaw"))
        .args(["run", path.to_str().unwrap(), "--instance-id", "a", "--brokers", &broker.addr])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .envs(SCRAM)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let code = wait_exit(&mut child, Duration::from_secs(120));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(matches!(code, Some(c) if c != 0), "run must fail: {code:?}\n{text}");
    // The settings it used (password masked), and the failed connection they led to.
    assert!(
        text.contains(r#"("sasl.mechanism", "SCRAM-SHA-512")"#) && text.contains(r#"("sasl.password", "***")"#),
        "{text}"
    );
    assert!(text.contains("Broker transport failure"), "{}", log_tail(&log));
    assert!(!text.contains("s3cret-pw"), "the password never shows in the log");
}

#[test]
fn sasl_against_a_broker_without_it_is_a_failed_handshake() {
    let (code, doc, _) = json_doctor(&brokers(), &SCRAM);
    assert_eq!(code, Some(1));
    let sasl = check(&doc, "connectivity.sasl", None);
    assert_eq!(sasl["verdict"], "fail", "{sasl:#}");
    assert!(sasl["reason"].as_str().unwrap().contains("mechanism handshake failed"), "{sasl:#}");
    assert!(!sasl["advice"].is_null());
}

#[test]
fn tls_to_a_plain_port_is_a_failed_tls_handshake() {
    let (code, doc, _) = json_doctor(&brokers(), &[("KAFCLAW_KAFKA_SECURITY_PROTOCOL", "SSL")]);
    assert_eq!(code, Some(1));
    let tls = check(&doc, "connectivity.tls", None);
    assert_eq!(tls["verdict"], "fail", "{tls:#}");
    assert!(tls["reason"].as_str().unwrap().contains("SSL_HANDSHAKE"), "{tls:#}");
    assert_eq!(check(&doc, "connectivity.tcp", None)["verdict"], "ok", "TCP itself connects");
}

#[test]
fn misconfigurations_are_refused_before_connecting() {
    // SASL_SSL with no mechanism: librdkafka would fall back to GSSAPI, absent from this build.
    let (code, doc, _) = json_doctor(&brokers(), &[("KAFCLAW_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")]);
    assert_eq!(code, Some(1));
    let s = check(&doc, "settings.security", None);
    assert_eq!(s["verdict"], "fail");
    assert!(s["reason"].as_str().unwrap().contains("without sasl.mechanism"), "{s:#}");
    let md = check(&doc, "connectivity.metadata", None);
    assert!(md["reason"].as_str().unwrap().contains("GSSAPI"), "librdkafka's own refusal: {md:#}");
    assert_eq!(check(&doc, "connectivity.sasl", None)["verdict"], "unknown");

    // SCRAM without a password, and TLS settings under PLAINTEXT.
    let (_, doc, _) = json_doctor(
        &brokers(),
        &[
            ("KAFCLAW_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFCLAW_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256"),
            ("KAFCLAW_KAFKA_SASL_USERNAME", "u"),
        ],
    );
    let failed: Vec<&str> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["id"] == "settings.security" && c["verdict"] == "fail")
        .map(|c| c["reason"].as_str().unwrap())
        .collect();
    assert!(failed.iter().any(|r| r.contains("needs sasl.password")), "{failed:?}");
    let (code, doc, _) = json_doctor(&brokers(), &[("KAFCLAW_KAFKA_SSL_CA_LOCATION", "/nowhere/ca.pem")]);
    let s = check(&doc, "settings.security", None);
    assert_eq!((s["verdict"].as_str(), code), (Some("warn"), Some(0)), "{s:#}");
}
