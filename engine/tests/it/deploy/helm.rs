//! deploy/helm/kafclaw rendered by Helm itself (the Helm v4 Go SDK through `helm-python-sdk`:
//! a client-side dry-run install, as `helm template --api-versions …` does) with several values
//! sets; every manifest validated strictly against the Kubernetes 1.25 and newest schemas
//! (`kubernetes-validate`: unknown fields are errors), the ServiceMonitor against the
//! Prometheus Operator CRD's schema; and what the manifests say checked against kafclaw: the
//! pod name is the instance id, probes hit /healthz and /readyz of a token-guarded --http,
//! secrets come only by reference, the ConfigMap's topology passes `kafclaw validate`.

use std::process::Command;

use serde_json::{Value, json};

use super::{assert_topology_validates, both, deploy_python, repo, run, system_tool};

/// What `deploy/tests/helm_render.py` prints.
struct Rendered {
    docs: Vec<Value>,
    checked: Vec<String>,
    unchecked: Vec<String>,
}

impl Rendered {
    fn kinds(&self) -> Vec<&str> {
        let mut k: Vec<&str> = self.docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        k.sort();
        k
    }
    fn one(&self, kind: &str) -> &Value {
        let mut found = self.docs.iter().filter(|d| d["kind"] == kind);
        let d = found.next().unwrap_or_else(|| panic!("no {kind} in {:?}", self.kinds()));
        assert!(found.next().is_none(), "several {kind}");
        d
    }
    fn container(&self) -> &Value {
        &self.one("StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    }
    fn env(&self, name: &str) -> &Value {
        let env = self.container()["env"].as_array().unwrap();
        env.iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("no env {name}: {env:?}"))
    }
}

/// Renders the chart with `values` (and the extra API versions); `Err` carries the errors
/// (Helm's, or a manifest's schema violations).
fn render_result(values: Value, api_versions: &[&str]) -> Result<Rendered, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.json");
    std::fs::write(&file, values.to_string()).unwrap();
    let mut cmd = Command::new(deploy_python());
    cmd.arg(repo("deploy/tests/helm_render.py")).arg(repo("deploy/helm/kafclaw")).arg(&file);
    for a in api_versions {
        cmd.args(["--api-version", a]);
    }
    let o = run(&mut cmd);
    let out: Value = serde_json::from_slice(&o.stdout).map_err(|_| both(&o))?;
    if !o.status.success() {
        return Err(out["errors"].to_string());
    }
    let strings = |k: &str| out[k].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect();
    Ok(Rendered {
        docs: out["documents"].as_array().unwrap().clone(),
        checked: strings("checked"),
        unchecked: strings("unchecked"),
    })
}

fn render(values: Value, api_versions: &[&str]) -> Rendered {
    let r = render_result(values, api_versions).unwrap_or_else(|e| panic!("{e}"));
    // Every document has a schema and passed it, on the oldest and the newest Kubernetes.
    let validated = r.docs.iter().filter(|d| d["apiVersion"] != "monitoring.coreos.com/v1").count();
    assert_eq!(r.checked.len(), 2 * validated, "{:?}", r.checked);
    r
}

#[test]
fn helm_chart_defaults_render_valid_manifests_that_fit_kafclaw() {
    let r = render(json!({}), &[]);
    assert_eq!(r.kinds(), ["ConfigMap", "PodDisruptionBudget", "Secret", "Service", "Service", "StatefulSet"]);
    assert!(r.unchecked.is_empty(), "{:?}", r.unchecked);
    let sts = r.one("StatefulSet");
    let pod = &sts["spec"]["template"]["spec"];
    let c = r.container();

    // The pod name is the instance id (and so, with the topology, the transactional id).
    assert_eq!(r.env("KAFCLAW_INSTANCE_ID")["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
    // run --http on all addresses, with the bearer token from the chart's Secret.
    let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args[..2], ["run", "/etc/kafclaw/roster.toml"]);
    assert_eq!(args[2..], ["--http", "0.0.0.0:9464"]);
    let token = &r.env("KAFCLAW_HTTP_TOKEN")["valueFrom"]["secretKeyRef"];
    let secret = r.one("Secret");
    assert_eq!(token["name"], secret["metadata"]["name"]);
    assert!(secret["data"][token["key"].as_str().unwrap()].as_str().is_some_and(|t| t.len() >= 40));
    // Probes on the health endpoints of that port.
    assert_eq!(c["ports"][0]["containerPort"], 9464);
    assert_eq!(c["livenessProbe"]["httpGet"], json!({"path": "/healthz", "port": "http"}));
    assert_eq!(c["readinessProbe"]["httpGet"], json!({"path": "/readyz", "port": "http"}));
    // Non-root, read-only root, no capabilities; state and /tmp are volumes.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    let mounts = c["volumeMounts"].as_array().unwrap();
    let mount = |name: &str| mounts.iter().find(|m| m["name"] == name).unwrap()["mountPath"].as_str().unwrap();
    assert_eq!(sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"], "state");
    assert!(r.env("KAFCLAW_STATE_DIR")["value"].as_str().unwrap().starts_with(mount("state")));
    assert_eq!(mount("tmp"), "/tmp");
    // The topology is the ConfigMap's, and it is a valid topology.
    assert_eq!(mount("topology"), "/etc/kafclaw");
    let cm = r.one("ConfigMap");
    assert_eq!(pod["volumes"][0]["configMap"]["name"], cm["metadata"]["name"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("roster.toml");
    std::fs::write(&file, cm["data"]["roster.toml"].as_str().unwrap()).unwrap();
    assert_topology_validates(&file);
    // The PodDisruptionBudget and the Services select exactly the StatefulSet's pods.
    let selector = &sts["spec"]["selector"]["matchLabels"];
    assert_eq!(&r.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"], selector);
    for s in r.docs.iter().filter(|d| d["kind"] == "Service") {
        assert_eq!(&s["spec"]["selector"], selector);
    }
    assert_eq!(sts["spec"]["serviceName"], format!("{}-headless", sts["metadata"]["name"].as_str().unwrap()));
    // No ServiceMonitor where the cluster lacks the Prometheus Operator.
    assert!(!r.kinds().contains(&"ServiceMonitor"));
}

#[test]
fn helm_chart_takes_sasl_and_model_secrets_by_reference() {
    let values = json!({
        "kafka": {
            "brokers": "broker-0:9093,broker-1:9093",
            "properties": {"ssl.ca.location": "/etc/kafka-ca/ca.crt", "enable.idempotence": true},
            "sasl": {"enabled": true, "username": "triage", "existingSecret": "kafka-triage", "passwordKey": "pw"}
        },
        "model": {"url": "https://models.example/v1", "apiKey": {"existingSecret": "openai", "key": "key", "env": "OPENAI_API_KEY"}},
        "secretEnv": [{"name": "SEARCH_TOKEN", "secretName": "search", "key": "token"}],
        "http": {"token": {"existingSecret": "kafclaw-http"}},
        "replicas": 3
    });
    let r = render(values, &[]);
    // No Secret is made: every secret is a reference to one that exists.
    assert!(!r.kinds().contains(&"Secret"), "{:?}", r.kinds());
    let secret_ref = |env: &str| r.env(env)["valueFrom"]["secretKeyRef"].clone();
    assert_eq!(secret_ref("KAFCLAW_KAFKA_SASL_PASSWORD"), json!({"name": "kafka-triage", "key": "pw"}));
    assert_eq!(secret_ref("OPENAI_API_KEY"), json!({"name": "openai", "key": "key"}));
    assert_eq!(secret_ref("SEARCH_TOKEN"), json!({"name": "search", "key": "token"}));
    assert_eq!(secret_ref("KAFCLAW_HTTP_TOKEN"), json!({"name": "kafclaw-http", "key": "token"}));
    assert_eq!(r.env("KAFCLAW_KAFKA_SASL_USERNAME")["value"], "triage");
    assert_eq!(r.env("KAFCLAW_KAFKA_SASL_MECHANISMS")["value"], "SCRAM-SHA-512");
    assert_eq!(r.env("KAFCLAW_KAFKA_SECURITY_PROTOCOL")["value"], "SASL_SSL");
    // librdkafka properties become the variables engine/src/kafka/settings.rs maps back.
    assert_eq!(r.env("KAFCLAW_KAFKA_SSL_CA_LOCATION")["value"], "/etc/kafka-ca/ca.crt");
    assert_eq!(r.env("KAFCLAW_KAFKA_ENABLE_IDEMPOTENCE")["value"], "true");
    assert_eq!(r.env("KAFCLAW_BROKERS")["value"], "broker-0:9093,broker-1:9093");
    assert_eq!(r.env("KAFCLAW_MODEL_URL")["value"], "https://models.example/v1");
    assert_eq!(r.one("StatefulSet")["spec"]["replicas"], 3);

    // SASL without a Secret to take the password from is refused at render time.
    let e = render_result(json!({"kafka": {"sasl": {"enabled": true, "username": "u"}}}), &[]).err().unwrap();
    assert!(e.contains("kafka.sasl.existingSecret is required"), "{e}");
    // A misspelt value is refused by the chart's values.schema.json, not silently ignored.
    let e = render_result(json!({"kafka": {"sasl": {"enable": true}}}), &[]).err().unwrap();
    assert!(e.contains("additional properties 'enable' not allowed"), "{e}");
}

#[test]
fn helm_chart_service_monitor_follows_the_prometheus_operator_crd() {
    let r = render(json!({}), &["monitoring.coreos.com/v1"]);
    let sm = r.one("ServiceMonitor");
    // kubernetes-validate has no schema for it; the CRD check below is the one that applies.
    assert!(r.unchecked.iter().all(|u| u.starts_with("ServiceMonitor/")), "{:?}", r.unchecked);
    let metrics = r
        .docs
        .iter()
        .find(|d| d["kind"] == "Service" && d["metadata"]["name"].as_str().unwrap().ends_with("-metrics"))
        .unwrap();
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&metrics["metadata"]["labels"][k], v, "the ServiceMonitor selects the metrics Service ({k})");
    }
    let endpoint = &sm["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], metrics["spec"]["ports"][0]["name"]);
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["authorization"]["credentials"]["name"], r.one("Secret")["metadata"]["name"]);

    // The Prometheus Operator CRD's schema (deploy/tests/crd-check).
    let checker = repo("deploy/tests/crd-check");
    assert!(checker.join("node_modules").exists(), "run scripts/test (it installs deploy/tests/crd-check)");
    let input = serde_json::to_vec(&[sm]).unwrap();
    let check = |input: Vec<u8>| {
        let mut child = Command::new(system_tool("node", "nodejs"))
            .arg(checker.join("check.mjs"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&input).unwrap();
        child.wait_with_output().unwrap()
    };
    let o = check(input);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).starts_with("ok ServiceMonitor/"), "{}", both(&o));
    // The check can fail: an interval the CRD's pattern refuses.
    let mut bad = sm.clone();
    bad["spec"]["endpoints"][0]["interval"] = json!("every minute");
    let o = check(serde_json::to_vec(&[bad]).unwrap());
    assert!(!o.status.success(), "{}", both(&o));

    // Without the capability the same values render no ServiceMonitor (checked above too).
    assert!(!render(json!({}), &[]).kinds().contains(&"ServiceMonitor"));
}
