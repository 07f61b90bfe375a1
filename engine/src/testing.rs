//! `kafclaw test`: runs the `[[tests]]` of a topology through the same tasks the runtimes use,
//! in memory, and reports each failure with a readable diff.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafclaw_operators::RawRecord;
use serde_json::Value;
use similar::TextDiff;

use crate::compiler::Compiled;
use crate::compiler::tests_section::TestSpec;
use crate::runtime::executor::Executor;
use crate::runtime::task::{BuildError, Task, TaskOutput};

/// The result of one test.
#[derive(Debug, Clone)]
pub struct TestResult {
    /// Test name.
    pub name: String,
    /// `None` when it passed; the report otherwise.
    pub failure: Option<String>,
}

/// Whether `actual` has every field of `expected` with the same value (objects recursively;
/// arrays and scalars exactly, numbers as numbers: `1.0` matches `1`, and two 25-digit ids
/// that differ do not match; see `kafclaw_operators::lang::exact::json_eq`).
pub fn subset_matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            e.iter().all(|(k, ev)| a.get(k).is_some_and(|av| subset_matches(ev, av)))
        }
        (e, a) => kafclaw_operators::lang::exact::json_eq(e, a),
    }
}

/// `actual` cut down to the fields `expected` names, so a diff shows only what is compared.
fn project(expected: &Value, actual: &Value) -> Value {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            Value::Object(e.iter().filter_map(|(k, ev)| a.get(k).map(|av| (k.clone(), project(ev, av)))).collect())
        }
        (_, a) => a.clone(),
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("JSON values print") + "\n"
}

fn run_one(c: &Compiled, test: &TestSpec) -> Result<Option<String>, BuildError> {
    let plan = Arc::new(c.plan.clone());
    let mut tasks: Vec<Task> =
        plan.subtopologies.iter().map(|s| Task::new(plan.clone(), s, 0)).collect::<Result<_, _>>()?;
    let sub_of = |node: usize| {
        plan.subtopologies.iter().position(|s| s.nodes.contains(&node)).expect("every node is in a sub-topology")
    };
    let mut out = TaskOutput::default();
    let mut store = crate::runtime::memory_store();
    let executor: Executor<usize> =
        Executor::new().map_err(|e| BuildError { operator: "executor".into(), message: e.to_string() })?;
    let mut offsets: BTreeMap<usize, i64> = BTreeMap::new();
    for input in &test.inputs {
        let source = plan.index(input.source.get_ref()).expect("test sources are checked at compile time");
        let bytes = match (&input.envelope, &input.raw) {
            (Some(env), _) => serde_json::to_vec(env.get_ref()).expect("JSON values encode"),
            (_, Some(raw)) => raw.get_ref().as_bytes().to_vec(),
            _ => unreachable!("checked at compile time"),
        };
        let offset = offsets.entry(source).or_default();
        let location: Arc<str> = format!("test:{}", plan.nodes[source].name).into();
        let raw = RawRecord { bytes, partition: 0, offset: *offset, line: Some(*offset as u64 + 1) };
        *offset += 1;
        let sub = sub_of(source);
        tasks[sub].process_raw(source, &location, raw.view(), &mut store, &mut out);
        // Asynchronous work (model calls) runs to completion before the next input, so tests
        // see outputs in input order.
        for work in out.spawned.drain(..) {
            executor.spawn(sub, work);
        }
        while tasks.iter().any(|t| t.in_flight() > 0) {
            let Some(done) = executor.next_within(std::time::Duration::from_secs(300)) else { break };
            tasks[done.task].complete(done.ticket, done.outcome, &mut store, &mut out);
            for work in out.spawned.drain(..) {
                executor.spawn(done.task, work);
            }
        }
    }

    let mut actual: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for o in &out.records {
        actual.entry(plan.nodes[o.sink].name.to_string()).or_default().push(o.envelope.to_json());
    }
    let mut expected: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for o in &test.outputs {
        expected.entry(o.sink.get_ref().clone()).or_default().push(o.envelope.get_ref().clone());
    }

    let mut report = String::new();
    for (sink, exp) in &expected {
        let act = actual.get(sink).cloned().unwrap_or_default();
        let ok = exp.len() == act.len() && exp.iter().zip(&act).all(|(e, a)| subset_matches(e, a));
        if ok {
            continue;
        }
        let shown: Vec<Value> =
            act.iter().enumerate().map(|(i, a)| exp.get(i).map_or_else(|| a.clone(), |e| project(e, a))).collect();
        let (e, a) = (pretty(&Value::Array(exp.clone())), pretty(&Value::Array(shown)));
        report.push_str(&format!(
            "  sink `{sink}`: expected {} record(s), got {} (fields not expected are not shown)\n",
            exp.len(),
            act.len()
        ));
        let diff = TextDiff::from_lines(&e, &a);
        report.push_str(&format!("{}", diff.unified_diff().context_radius(3).header("expected", "actual")));
    }
    if out.dead_letters.len() != test.dead_letters {
        report.push_str(&format!("  dead letters: expected {}, got {}\n", test.dead_letters, out.dead_letters.len()));
        for d in &out.dead_letters {
            report.push_str(&format!(
                "    - {} ({}): {}\n",
                d.stage,
                d.line.map_or(String::new(), |l| format!("input {l}")),
                d.error
            ));
        }
    }
    Ok((!report.is_empty()).then_some(report))
}

/// Runs every test of a compiled topology.
pub fn run_tests(c: &Compiled) -> Result<Vec<TestResult>, BuildError> {
    c.spec.tests.iter().map(|t| Ok(TestResult { name: t.name.get_ref().clone(), failure: run_one(c, t)? })).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn numbers_match_as_numbers_exactly() {
        let actual =
            json(r#"{"payload": {"id": 1234567890123456789012345, "n": 1.0, "m": 1e2, "list": [1, 2.50]}, "x": 1}"#);
        assert!(subset_matches(&json(r#"{"payload": {"id": 1234567890123456789012345, "n": 1, "m": 100}}"#), &actual));
        assert!(subset_matches(&json(r#"{"payload": {"list": [1.0, 2.5]}}"#), &actual));
        assert!(!subset_matches(&json(r#"{"payload": {"id": 1234567890123456789012346}}"#), &actual));
        assert!(!subset_matches(&json(r#"{"payload": {"list": [1]}}"#), &actual));
        assert!(!subset_matches(&json(r#"{"payload": {"n": 1.0000000000000000001}}"#), &actual));
    }
}
