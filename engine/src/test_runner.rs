//! `kafclaw test`: runs the `[[tests]]` of a topology through the same tasks and the same
//! [`Driver`] the runtimes use, in memory, and reports each failure with a readable diff.
//! Asynchronous work (model calls) runs to completion after each input, so a test sees its
//! outputs in input order. A state failure stops the test and fails it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafclaw_operators::RawRecord;
use serde_json::Value;
use similar::TextDiff;

use crate::compiler::tests_section::TestSpec;
use crate::compiler::{Compiled, PhysicalPlan};
use crate::runtime::driver::{Driver, MAX_IN_FLIGHT, Patience, Tasks};
use crate::runtime::task::{BuildError, StateFailure, Task, TaskOutput};
use crate::runtime::{TaskStore, memory_store};

/// How long a test waits for the next outcome of its asynchronous work before it compares
/// what it has.
const PATIENCE: Duration = Duration::from_secs(300);

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

/// A test's tasks, one per sub-topology (its work names it by index), on one store.
struct TestTasks {
    tasks: Vec<Task>,
    store: TaskStore,
}

impl Tasks<usize> for TestTasks {
    type Error = StateFailure;

    fn task(&mut self, sub: &usize) -> Option<(&mut Task, &mut TaskStore)> {
        Some((&mut self.tasks[*sub], &mut self.store))
    }

    fn in_flight(&self) -> usize {
        self.tasks.iter().map(Task::in_flight).sum()
    }

    /// Outputs stay buffered for the comparison; a state failure stops the test.
    fn deliver(&mut self, _: &usize, out: &mut TaskOutput) -> Result<(), StateFailure> {
        out.state_failure.take().map_or(Ok(()), Err)
    }
}

/// Feeds the test's inputs, each run to completion (asynchronous work included) before the
/// next.
fn feed_inputs(
    plan: &PhysicalPlan,
    test: &TestSpec,
    driver: &mut Driver<usize>,
    tasks: &mut TestTasks,
) -> Result<(), StateFailure> {
    let sub_of = |node: usize| {
        plan.subtopologies.iter().position(|s| s.nodes.contains(&node)).expect("every node is in a sub-topology")
    };
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
        driver.feed(tasks, sub_of(source), source, &location, raw.view())?;
        // Work that never finishes leaves its outputs missing, which the comparison reports.
        driver.drain(Patience::Idle(PATIENCE), tasks)?;
    }
    Ok(())
}

fn run_one(c: &Compiled, test: &TestSpec) -> Result<Option<String>, BuildError> {
    run_on(c, test, memory_store())
}

/// Runs one test on `store`.
fn run_on(c: &Compiled, test: &TestSpec, store: TaskStore) -> Result<Option<String>, BuildError> {
    let plan = Arc::new(c.plan.clone());
    // A test keeps nothing between runs: its effect log is in memory (docs/effects.md).
    if let Some(slot) = kafclaw_agent::resources::AgentResources::effects(&*c.resources) {
        slot.set(Arc::new(kafclaw_agent::tools::effect::MemoryEffectLog::default()));
    }
    let tasks = plan.subtopologies.iter().map(|s| Task::new(plan.clone(), s, 0)).collect::<Result<_, _>>()?;
    let mut tasks = TestTasks { tasks, store };
    let mut driver: Driver<usize> =
        Driver::new(MAX_IN_FLIGHT).map_err(|e| BuildError { operator: "executor".into(), message: e.to_string() })?;
    if let Err(failure) = feed_inputs(&plan, test, &mut driver, &mut tasks) {
        // The store is at fault, not the topology: what was output is not compared.
        return Ok(Some(format!("  a state table failed (the test stops here): {failure}\n")));
    }
    let out = driver.output();

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

/// Runs every test of a compiled topology, each on its own: fresh state stores and fresh
/// linked resources (a memory index, a model's recorded answers), so no test sees what
/// another one left, whatever their order. The first test uses `c` as compiled; each other
/// one a new compilation of the same source.
pub fn run_tests(c: &Compiled) -> Result<Vec<TestResult>, BuildError> {
    let mut results = Vec::with_capacity(c.spec.tests.len());
    for (i, t) in c.spec.tests.iter().enumerate() {
        let fresh;
        let compiled = if i == 0 {
            c
        } else {
            fresh = crate::compiler::compile_source(c.file.clone()).map_err(|f| BuildError {
                operator: "topology".into(),
                message: format!(
                    "recompiling for test `{}`: {} error(s)",
                    t.name.get_ref(),
                    f.diagnostics.error_count()
                ),
            })?;
            &fresh
        };
        results.push(TestResult { name: t.name.get_ref().clone(), failure: run_one(compiled, t)? });
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use kafclaw_state::{Batch, Entry, Epoch, MemoryStore, PartitionStats, StateError, StateStore};

    use super::*;
    use crate::compiler::{SourceFile, compile_source};

    const SUMS: &str = r#"
[topology]
name = "sums"

[sources.in]
type = "file"
path = "in.jsonl"

[operators.running]
type = "aggregate"
inputs = ["in"]
by = 'sender_id'
value = 'payload.n'
functions = ["sum"]
into = "payload.total"

[sinks.out]
type = "file"
inputs = ["running"]
path = "out.jsonl"

[[tests]]
name = "a running sum"
inputs = [
  { source = "in", envelope = { type = "trace", correlation_id = "c1", sender_id = "a", timestamp = "2026-11-01T09:00:10Z", payload = { n = 1 } } },
  { source = "in", envelope = { type = "trace", correlation_id = "c2", sender_id = "a", timestamp = "2026-11-01T09:00:10Z", payload = { n = 2 } } },
]
outputs = [
  { sink = "out", envelope = { correlation_id = "c1", payload = { total = { sum = 1 } } } },
  { sink = "out", envelope = { correlation_id = "c2", payload = { total = { sum = 3 } } } },
]
"#;

    /// A store whose reads fail, as a broken disk's would.
    struct FailingReads(MemoryStore);

    impl StateStore for FailingReads {
        fn open_table(&mut self, table: &str) -> Result<(), StateError> {
            self.0.open_table(table)
        }
        fn get(&self, _: &str, _: u32, _: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
            Err(StateError::Rocks { path: "test".into(), message: "the disk is gone".into() })
        }
        fn put(&mut self, table: &str, partition: u32, key: &[u8], value: &[u8]) -> Result<(), StateError> {
            self.0.put(table, partition, key, value)
        }
        fn delete(&mut self, table: &str, partition: u32, key: &[u8]) -> Result<(), StateError> {
            self.0.delete(table, partition, key)
        }
        fn scan_range(&self, t: &str, p: u32, start: &[u8], end: Option<&[u8]>) -> Result<Vec<Entry>, StateError> {
            self.0.scan_range(t, p, start, end)
        }
        fn table_stats(&self, table: &str) -> Result<Vec<PartitionStats>, StateError> {
            self.0.table_stats(table)
        }
        fn drop_partition(&mut self, table: &str, partition: u32) -> Result<(), StateError> {
            self.0.drop_partition(table, partition)
        }
        fn clear_table(&mut self, table: &str) -> Result<(), StateError> {
            self.0.clear_table(table)
        }
        fn apply(&mut self, batch: &Batch) -> Result<(), StateError> {
            self.0.apply(batch)
        }
        fn checkpoint(&self, table: &str, partition: u32) -> Result<Option<i64>, StateError> {
            self.0.checkpoint(table, partition)
        }
        fn tables(&self) -> Vec<String> {
            self.0.tables()
        }
    }

    #[test]
    fn a_state_failure_fails_the_test() {
        let c = compile_source(SourceFile::new("sums.toml", SUMS.to_owned())).expect("compiles");
        let test = &c.spec.tests[0];
        assert_eq!(run_one(&c, test).unwrap(), None, "passes on a sound store");
        let broken = Epoch::new(Box::new(FailingReads(MemoryStore::new())) as Box<dyn StateStore>);
        let report = run_on(&c, test, broken).unwrap().expect("fails on a broken store");
        assert!(report.contains("a state table failed") && report.contains("the disk is gone"), "{report}");
    }

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
