//! Skills as `SKILL.md` on Kafka: what `read_skill` read is part of the answer's journal entry,
//! so `kafclaw replay --from earliest` asks no model and reads no skill file — the skill's
//! files changed after the first run do not change the replay's outputs, which equal the first
//! run's envelope by envelope.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::fake_openai::FakeOpenAi;
use crate::support::*;

#[test]
fn a_replay_reads_no_skill_and_asks_no_model() {
    const N: usize = 6;
    let server = FakeOpenAi::start();
    let dir = TestDir::new();
    let (app, input, output) = (unique("skmd-app"), unique("skmd-in"), unique("skmd-out"));
    create_topic(&input, 2);
    let skill = dir.path().join("skills/refunds");
    std::fs::create_dir_all(skill.join("references")).unwrap();
    let write_skill = |body: &str, policy: &str| {
        let md = format!("---\nname: refunds\ndescription: Refund rules.\n---\n{body}\n");
        std::fs::write(skill.join("SKILL.md"), md).unwrap();
        std::fs::write(skill.join("references/policy.md"), policy).unwrap();
    };
    write_skill("FIRST-BODY", "FIRST-POLICY");
    let topo = write_topology(
        dir.path(),
        &app,
        &format!(
            r#"
[topology]
name = "{app}"
partitions = 2

[models.fake]
base_url = "{}"
model = "fake-1"

[sources.requests]
type = "kafka"
topic = "{input}"

[operators.answer]
type = "llm"
inputs = ["requests"]
model = "fake"
prompt = "{{{{ payload.description }}}}"
skills = ["skills/refunds"]

[sinks.answers]
type = "kafka"
inputs = ["answer"]
topic = "{output}"
"#,
            server.base_url()
        ),
    );
    let script = r#"script [[\"read_skill\", {\"name\": \"refunds\"}], [\"read_skill\", {\"name\": \"refunds\", \"path\": \"references/policy.md\"}]]"#;
    produce(
        &input,
        (0..N).map(|i| {
            let key = format!("conv-{i}");
            let v = format!(
                r#"{{"type":"request","correlation_id":"{key}","sender_id":"s","timestamp":"2026-11-24T10:00:00Z","id":"q-{i}","payload":{{"task_id":"q-{i}","description":"{script}"}}}}"#
            );
            (key, v)
        }),
    );
    let log = dir.path().join("run.log");
    let mut a = spawn_instance(&topo, "a", &log);
    stop_once_committed(&mut a, &app, &input, 2, N as i64, &log, Duration::from_secs(120));
    let first = consume_all(&output, N, Duration::from_secs(60));
    assert_eq!(first.len(), N);
    for g in &first {
        assert_eq!(g.value["payload"]["answer"], "done: FIRST-BODY\n | FIRST-POLICY", "{}", g.value);
    }
    assert_eq!(server.counters.calls(), 3 * N, "three model calls per request");

    // The skill's files change; a replay must not see them.
    write_skill("SECOND-BODY", "SECOND-POLICY");
    let (code, stderr) = run_replay(&topo, "earliest", "a", &dir.path().join("state"));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains(&format!("replayed {N} record(s)")), "{stderr}");
    assert_eq!(server.counters.calls(), 3 * N, "the replay made no model call (and so no read)");

    let all = consume_all(&output, 2 * N, Duration::from_secs(60));
    assert_eq!(all.len(), 2 * N);
    let by_id = |records: &[&Got]| -> BTreeMap<String, serde_json::Value> {
        records.iter().map(|g| (g.value["id"].as_str().unwrap().to_owned(), g.value.clone())).collect()
    };
    let first_at: std::collections::HashSet<(i32, i64)> = first.iter().map(|g| (g.partition, g.offset)).collect();
    let (old, new): (Vec<&Got>, Vec<&Got>) = all.iter().partition(|g| first_at.contains(&(g.partition, g.offset)));
    assert_eq!(by_id(&old), by_id(&new), "the replay's outputs equal the first run's, skill text included");
    assert!(!new.iter().any(|g| g.value.to_string().contains("SECOND")), "nothing was read again");
}
