//! One test module per folder of operator kinds (`stream`, `keyed`, `group`, `connectors`):
//! each kind's config half read from TOML as a topology writes it, built with
//! [`Kind::build`] (no topology compiled), and its runtime half driven by the kit
//! (`kafclaw_operators::testing`): records in, records per port out, the state tables it
//! writes, a store failure (`Cause::State`, never a dead letter) and a bad record
//! (`Cause::Record`, a dead letter).

mod approve;
mod connectors;
mod group;
mod keyed;
mod schedule;
mod stream;

use serde::de::DeserializeOwned;
use serde_json::Value;

use kafclaw_operators::api::kind::Kind;
use kafclaw_operators::api::operator::Port;
use kafclaw_operators::api::resources::Resources;
use kafclaw_operators::testing::{Run, Tables, build_sync, record, run_sync, table_names};
use kafclaw_operators::{Record, SyncOperator};

/// A config half as a topology writes its options (the table without `type` and `inputs`).
pub fn config<T: DeserializeOwned>(toml_text: &str) -> T {
    toml::from_str(toml_text).unwrap_or_else(|e| panic!("options {toml_text:?}: {e}"))
}

/// The error of options a config half refuses (`deny_unknown_fields`, bad values).
pub fn refused<T: DeserializeOwned + std::fmt::Debug>(toml_text: &str) -> String {
    toml::from_str::<T>(toml_text).expect_err(toml_text).to_string()
}

/// The synchronous operator of node `node`, with no shared resources.
pub fn sync(kind: &impl Kind, node: &str) -> Box<dyn SyncOperator> {
    build_sync(kind, node, &Resources::default())
}

/// The messages of every build error of `kind` (panics when it builds).
pub fn build_errors(kind: &impl Kind, node: &str) -> Vec<String> {
    match kind.build(node, &Resources::default()) {
        Ok(built) => panic!("node `{node}` built {built:?} from bad options"),
        Err(errors) => errors.into_iter().map(|e| e.message).collect(),
    }
}

/// The port called `name` of `kind` (panics when it has none).
pub fn port(kind: &impl Kind, name: &str) -> Port {
    kind.ports().port(Some(name)).unwrap_or_else(|| panic!("no output `{name}`"))
}

/// A record with `payload`, from `sender`, at `time` (`hh:mm:ss` on 2026-11-01), with `id`.
pub fn at(time: &str, sender: &str, id: &str, payload: Value) -> Record {
    let mut v = serde_json::json!({
        "sender_id": sender,
        "timestamp": format!("2026-11-01T{time}Z"),
        "payload": payload,
    });
    if !id.is_empty() {
        v["id"] = id.into();
    }
    record(&v.to_string())
}

/// What a stateful operator does when its store fails: every record fails with
/// `Cause::State` naming `table`, none is dead-lettered, nothing is emitted.
pub fn assert_store_failure(op: &mut dyn SyncOperator, table: &str, inputs: Vec<Record>) -> Run {
    let n = inputs.len();
    let mut state = Tables::failing_on(table);
    let run = run_sync(op, &mut state, inputs);
    assert!(run.emitted.is_empty(), "{:?}", run.emitted);
    assert!(run.dead_lettered().is_empty(), "{:?}", run.dead_lettered());
    let failures = run.state_failures();
    assert_eq!(failures.len(), n, "{:?}", run.failed);
    assert!(failures.iter().all(|e| e.table == table), "{failures:?}");
    run
}

/// That the tables written are exactly the ones the config half declares for `node`.
pub fn assert_writes_its_tables(kind: &impl Kind, node: &str, state: &Tables) {
    assert_eq!(state.written(), table_names(&kind.tables(node)), "tables written by `{node}`");
    assert!(state.held().is_subset(&state.written()));
}

/// Every kind of the engine's registry (`KINDS` in `engine/src/compiler/registry.rs`), by
/// section and name. The agent wing's (`llm`, `embed`, `memory-index`, `memory-search`) are
/// tested in `agent/tests/kinds.rs`, `conversation` and `conversation-context` in
/// `agent/tests/conversation.rs`, the others in this target's modules.
const COVERED: &[(&str, &str)] = &[
    ("Source", "file"),
    ("Source", "stdin"),
    ("Source", "kafka"),
    ("Source", "schedule"),
    ("Operator", "filter"),
    ("Operator", "map"),
    ("Operator", "route"),
    ("Operator", "count"),
    ("Operator", "aggregate"),
    ("Operator", "dedupe"),
    ("Operator", "window"),
    ("Operator", "join"),
    ("Operator", "llm"),
    ("Operator", "onboard"),
    ("Operator", "admissions"),
    ("Operator", "guard"),
    ("Operator", "approve"),
    ("Operator", "roster"),
    ("Operator", "embed"),
    ("Operator", "memory-index"),
    ("Operator", "memory-search"),
    ("Operator", "conversation"),
    ("Operator", "conversation-context"),
    ("Sink", "file"),
    ("Sink", "stdout"),
    ("Sink", "kafka"),
];

/// A kind added to the registry fails this test until it has its tests here (or in the agent
/// crate's) and a line in [`COVERED`]. Reads the registry's source, as `tests/layers.rs` reads
/// the workspace's, so the engine need not be built.
#[test]
fn every_kind_of_the_registry_is_covered() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../engine/src/compiler/registry.rs");
    let source = std::fs::read_to_string(path).expect("the engine's registry");
    let listed: Vec<(String, String)> = source
        .split("kind!(")
        .skip(1)
        .filter_map(|call| {
            let role = call.trim_start().strip_prefix("Role::")?.split(',').next()?.trim().to_owned();
            let name = call.split('"').nth(1)?.to_owned();
            Some((role, name))
        })
        .collect();
    let covered: Vec<(String, String)> = COVERED.iter().map(|(r, n)| (r.to_string(), n.to_string())).collect();
    assert_eq!(listed, covered, "the registry's kinds, in order, against those tested");
}
