//! The fused task: fan-out order, route modes, operator failures dead-lettered with the
//! record as it entered the failing operator, and deterministic stamping of outputs.

use std::sync::Arc;

use kafclaw_engine::compiler::{SourceFile, compile_source};
use kafclaw_engine::runtime::{Task, TaskOutput};
use kafclaw_operators::RawRecord;

const TOPOLOGY: &str = r#"
[topology]
name = "rt"

[sources.in]
type = "stdin"

[operators.fan]
type = "route"
inputs = ["in"]
mode = "all"
routes = [
  { name = "big", when = 'payload.n > 10' },
  { name = "even", when = 'payload.n % 2 == 0' },
]

[operators.strict]
type = "filter"
inputs = ["fan.even"]
where = 'payload.flag'

[operators.label]
type = "map"
inputs = ["fan.big", "fan.unmatched"]
set = { "payload.label" = 'payload.n > 10 ? "big" : "small"' }

[sinks.a]
type = "stdout"
inputs = ["label"]

[sinks.b]
type = "stdout"
inputs = ["strict"]
"#;

fn line(n: i64, flag: Option<bool>) -> Vec<u8> {
    let flag = flag.map(|f| format!(r#","flag":{f}"#)).unwrap_or_default();
    format!(r#"{{"type":"request","correlation_id":"c{n}","sender_id":"s","timestamp":"2026-01-01T00:00:00Z","payload":{{"n":{n}{flag}}},"id":"in-{n}","span_id":"00f067aa0ba902b7"}}"#).into_bytes()
}

fn run(lines: Vec<Vec<u8>>) -> (TaskOutput, Arc<kafclaw_engine::compiler::PhysicalPlan>) {
    let c = compile_source(SourceFile::new("rt.toml", TOPOLOGY.into())).unwrap_or_else(|f| panic!("{f}"));
    let plan = Arc::new(c.plan.clone());
    let mut task = Task::new(plan.clone(), &plan.subtopologies[0], 0).unwrap();
    let source = plan.index("in").unwrap();
    let location: Arc<str> = "mem".into();
    let mut out = TaskOutput::default();
    let mut store = kafclaw_engine::runtime::memory_store();
    for (i, bytes) in lines.into_iter().enumerate() {
        task.process_raw(
            source,
            &location,
            RawRecord { bytes, partition: 0, offset: i as i64, line: Some(i as u64 + 1) }.view(),
            &mut store,
            &mut out,
        );
    }
    (out, plan)
}

#[test]
fn route_all_fans_out_and_failures_are_dead_lettered() {
    // 12: big and even (flag true → b); 3: unmatched → a; 4: even, no flag → filter fails.
    let (out, plan) = run(vec![line(12, Some(true)), line(3, None), line(4, None)]);
    let names: Vec<(String, String)> =
        out.records.iter().map(|o| (plan.nodes[o.sink].name.to_string(), o.envelope.correlation_id.clone())).collect();
    assert_eq!(
        names,
        vec![("a".into(), "c12".into()), ("b".into(), "c12".into()), ("a".into(), "c3".into())],
        "outputs follow route order, then input order"
    );
    assert_eq!(out.records[0].envelope.payload["label"], "big");
    assert_eq!(out.records[2].envelope.payload["label"], "small");

    assert_eq!(out.dead_letters.len(), 1);
    let d = &out.dead_letters[0];
    assert_eq!(d.stage, "operator:strict");
    assert_eq!((d.line, d.offset), (Some(3), 2));
    assert!(d.error.contains("flag"), "{}", d.error);
    // The dead letter holds the envelope as it entered the failing operator.
    let raw: serde_json::Value = serde_json::from_slice(&d.raw).unwrap();
    assert_eq!(raw["correlation_id"], "c4");
}

#[test]
fn outputs_are_stamped_deterministically() {
    let (a, _) = run(vec![line(12, Some(true))]);
    let (b, _) = run(vec![line(12, Some(true))]);
    let ids: Vec<_> = a.records.iter().map(|o| o.envelope.id.clone().unwrap()).collect();
    assert_eq!(ids, b.records.iter().map(|o| o.envelope.id.clone().unwrap()).collect::<Vec<_>>());
    assert_ne!(ids[0], ids[1], "different sinks give different ids");
    for e in a.records.iter().map(|o| &o.envelope) {
        assert_eq!(e.v, Some(1));
        assert_eq!(e.causation_id.as_deref(), Some("in-12"));
        assert_eq!(e.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(e.trace_id.as_ref().unwrap().len(), 32);
        assert_ne!(e.span_id.as_deref(), Some("00f067aa0ba902b7"));
    }
}
