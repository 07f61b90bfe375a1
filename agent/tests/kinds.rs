//! The agent wing's kinds, each config half read from TOML as a topology writes it, built
//! with [`Kind::build`] (no topology compiled) and driven by the operators crate's kit
//! (`kafclaw_operators::testing`); asynchronous work runs on a small tokio runtime here
//! ([`run`]), since the kit has none.
//!
//! - `llm`, with a model answering from a recording (`topologies/agent/recorded.jsonl`, or a
//!   journal export written for the test): answers, the journal, budgets, traces, memories,
//!   audits;
//! - `embed`, with the built-in local embedder;
//! - `memory-index` and `memory-search`, sharing one index through [`Resources`]
//!   ([`Kind::provides`]).

use std::sync::Arc;

use serde_json::{Value, json};

use kafclaw_agent::llm::{
    AUDIT, AUDIT_PORT, LlmConfig, MEMORIES, MEMORIES_PORT, REFUSED, REFUSED_PORT, TRACES, TRACES_PORT,
};
use kafclaw_agent::memory::embed_op::EmbedConfig;
use kafclaw_agent::memory::{MemoryIndexConfig, MemorySearchConfig, SharedIndex};
use kafclaw_agent::model::embed::LocalEmbedder;
use kafclaw_agent::model::{ModelConfig, SharedModel};
use kafclaw_agent::resources::AgentResources;
use kafclaw_agent::tools::{CallContext, Tool, ToolFuture};
use kafclaw_operators::api::asynchronous::AsyncOperator;
use kafclaw_operators::api::kind::Kind;
use kafclaw_operators::api::operator::{Port, Ports};
use kafclaw_operators::api::resources::Resources;
use kafclaw_operators::envelope::EnvelopeType;
use kafclaw_operators::testing::{Run, Tables, build_async, build_sync, record, run_async, run_sync, table_names};
use kafclaw_operators::{NoState, Record, StateAccess, TableSpec};

/// Feeds `inputs` to `op`, running pending work to completion on a current-thread runtime.
fn run(op: &mut dyn AsyncOperator, state: &mut dyn StateAccess, inputs: impl IntoIterator<Item = Record>) -> Run {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    run_async(op, state, inputs, |work| rt.block_on(work))
}

fn config<T: serde::de::DeserializeOwned>(text: &str) -> T {
    toml::from_str(text).unwrap_or_else(|e| panic!("options {text:?}: {e}"))
}

fn errors(kind: &impl Kind, node: &str, resources: &Resources) -> Vec<String> {
    match kind.build(node, resources) {
        Ok(built) => panic!("`{node}` built {built:?} from bad options"),
        Err(e) => e.into_iter().map(|e| e.message).collect(),
    }
}

/// The recording the standard agent topology answers from when no model is live.
const RECORDED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../topologies/agent/recorded.jsonl");
/// Its answer to the prompt `hello` (79 tokens) and to anything else (0 tokens).
const HELLO: &str = "Hello! I am the acme support agent";
const CANNED: &str = "(recorded answer: no live model is configured";

/// Resources declaring the model `fast`, answering from the recording at `path`.
fn with_model(path: &str) -> (Resources, Arc<SharedModel>) {
    let options = format!(
        "base_url = \"http://127.0.0.1:9/v1\"\nmodel = \"gpt-4o-mini\"\nbase_url_env = \"KAFCLAW_KINDS_TEST_NO_SUCH_URL\"\nrecorded = {path:?}"
    );
    let model = SharedModel::new("fast", config::<ModelConfig>(&options));
    let mut resources = Resources::default();
    resources.insert_model(model.clone());
    (resources, model)
}

/// The state journal keys of the test records with these ids (the inputs' coordinates, not the
/// ids: `Record::journal_key`), in key order.
fn journal_keys<const N: usize>(ids: [&str; N]) -> Vec<String> {
    let mut keys: Vec<String> = ids.iter().map(|id| record(&json!({"id": id}).to_string()).journal_key(0)).collect();
    keys.sort();
    keys
}

fn ask(id: &str, sender: &str, description: &str) -> Record {
    record(&json!({"id": id, "sender_id": sender, "payload": {"description": description}}).to_string())
}

#[test]
fn llm_answers_from_the_recording_journals_each_answer_and_replays_it_without_a_call() {
    let c: LlmConfig = config("model = \"fast\"\nsystem = \"You help {{ sender_id }}.\"\nbudget_tokens = 1000");
    let ports = Ports { default: true, named: [REFUSED, TRACES, MEMORIES, AUDIT].map(String::from).to_vec() };
    assert_eq!(c.ports(), ports);
    for (name, port) in [(REFUSED, REFUSED_PORT), (TRACES, TRACES_PORT), (MEMORIES, MEMORIES_PORT), (AUDIT, AUDIT_PORT)]
    {
        assert_eq!(c.ports().port(Some(name)), Some(port), "{name}");
    }
    assert_eq!(c.tables("answer"), [TableSpec::journal("answer.journal"), TableSpec::kept("answer.budget")]);
    assert_eq!(config::<LlmConfig>("model = \"fast\"").tables("answer"), [TableSpec::journal("answer.journal")]);

    let (resources, model) = with_model(RECORDED);
    let mut op = build_async(&c, "answer", &resources);
    let mut state = Tables::default();
    let out = run(&mut *op, &mut state, [ask("r1", "alice", "hello"), ask("r2", "alice", "where is my refund?")]);
    assert!(out.failed.is_empty(), "{:?}", out.failed);
    assert_eq!(out.ports(), [TRACES_PORT, Port::DEFAULT, TRACES_PORT, Port::DEFAULT], "one span per model call");
    let answers = out.on(Port::DEFAULT);
    assert!(answers[0]["answer"].as_str().unwrap().starts_with(HELLO), "{}", answers[0]);
    assert!(answers[1]["answer"].as_str().unwrap().starts_with(CANNED), "{}", answers[1]);
    assert_eq!(answers[0]["description"], "hello", "the payload is kept");
    let usage = &answers[0]["usage"];
    assert_eq!((usage["total_tokens"].as_u64(), usage["model"].as_str()), (Some(79), Some("recorded:gpt-4o-mini")));
    for r in out.records(TRACES_PORT) {
        assert_eq!((r.envelope.kind, r.envelope.payload["span_type"].as_str()), (EnvelopeType::Trace, Some("llm")));
    }
    assert_eq!(state.keys_of("answer.journal"), journal_keys(["r1", "r2"]));
    assert_eq!(state.text("answer.budget", b"alice").as_deref(), Some("79"));
    assert_eq!(state.written(), table_names(&c.tables("answer")));
    assert_eq!(model.usage().map(|u| u.calls), Some(2));

    // A replay finds the answer in the journal: the same output, no call, nothing billed.
    let again = run(&mut *op, &mut state, [ask("r1", "alice", "hello")]);
    assert_eq!(again.on(Port::DEFAULT), [answers[0]]);
    assert_eq!(again.on(TRACES_PORT), [out.on(TRACES_PORT)[0]]);
    assert_eq!(model.usage().map(|u| u.calls), Some(2));
    assert_eq!(state.text("answer.budget", b"alice").as_deref(), Some("79"));
    assert_eq!(op.order_key(&ask("r3", "bob", "x")), "c", "one conversation at a time by default");
}

#[test]
fn llm_refuses_a_sender_over_budget_without_calling() {
    let c: LlmConfig = config("model = \"fast\"\nbudget_tokens = 50");
    let (resources, model) = with_model(RECORDED);
    let mut op = build_async(&c, "answer", &resources);
    let mut state = Tables::default();
    let inputs = [ask("r1", "alice", "hello"), ask("r2", "alice", "hello"), ask("r3", "bob", "hello")];
    let out = run(&mut *op, &mut state, inputs);
    assert!(out.failed.is_empty(), "{:?}", out.failed);
    assert_eq!(out.ports(), [TRACES_PORT, Port::DEFAULT, AUDIT_PORT, REFUSED_PORT, TRACES_PORT, Port::DEFAULT]);
    let refused = out.records(REFUSED_PORT)[0];
    assert_eq!(refused.envelope.kind, EnvelopeType::TaskStatus);
    assert_eq!(refused.envelope.payload["status"], "budget_exceeded");
    assert_eq!(refused.envelope.payload["summary"], "`alice` has used 79 of its 50 tokens; no model call was made");
    let audit = out.on(AUDIT_PORT)[0];
    assert_eq!(audit["event_type"], "budget_exceeded");
    assert_eq!(audit["details"], json!({"budget_key": "alice", "used": 79, "budget": 50, "sender_id": "alice"}));
    assert_eq!(model.usage().map(|u| u.calls), Some(2), "no call for the refused record");
    assert_eq!(state.keys_of("answer.journal"), journal_keys(["r1", "r3"]), "refusals are not journalled");
}

#[test]
fn llm_fails_on_a_broken_store_and_dead_letters_what_it_cannot_answer() {
    let c: LlmConfig = config("model = \"fast\"\nbudget_tokens = 1000");
    let (resources, _) = with_model(RECORDED);
    let mut op = build_async(&c, "answer", &resources);
    for table in ["answer.journal", "answer.budget"] {
        let out = run(&mut *op, &mut Tables::failing_on(table), [ask("r1", "alice", "hello")]);
        assert!(out.emitted.is_empty() && out.dead_lettered().is_empty(), "{out:?}");
        assert_eq!(out.state_failures().len(), 1, "{table}");
        assert_eq!(out.state_failures()[0].table, table);
    }
    // An unreadable delegation depth fails the record before any call.
    let bad = record(r#"{"id":"r2","payload":{"description":"hello","delegation_depth":2.5}}"#);
    let mut state = Tables::default();
    let out = run(&mut *op, &mut state, [bad]);
    let dead = out.dead_lettered();
    assert_eq!(dead.len(), 1, "{:?}", out.failed);
    assert!(dead[0].contains("payload.delegation_depth"), "{dead:?}");
    assert!(out.state_failures().is_empty() && state.is_empty());

    // A recording without an answer for the prompt: the call fails for good.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hello-only.jsonl");
    std::fs::write(&path, "{\"prompt\": \"hello\", \"answer\": \"hi\"}\n").unwrap();
    let (resources, _) = with_model(path.to_str().unwrap());
    let mut op = build_async(&c, "answer", &resources);
    let out = run(&mut *op, &mut state, [ask("r3", "alice", "hello"), ask("r4", "alice", "bye")]);
    assert_eq!(out.on(Port::DEFAULT)[0]["answer"], "hi");
    let dead = out.dead_lettered();
    assert_eq!(dead.len(), 1, "{:?}", out.failed);
    assert!(dead[0].contains("no recorded answer for the prompt \"bye\""), "{dead:?}");
    assert_eq!(state.keys_of("answer.journal"), journal_keys(["r3"]));
}

/// A journal export holding `answer`'s entry for `r9`: one model step and two remembered items.
const EXPORT: &str = r#"{"operator": "answer", "key": "r9", "entry": {"content": "From the journal", "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}, "model": "m", "finish_reason": "stop", "attempts": 1, "latency_ms": 5, "steps": [{"kind": "llm", "name": "m", "detail": "d", "ok": true, "started_ms": 0, "duration_ms": 5}], "remembered": ["the sky is green", "refunds take 5 days"]}}"#;

#[test]
fn llm_reproduces_a_journal_export_with_its_traces_and_memories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.jsonl");
    std::fs::write(&path, format!("{EXPORT}\n")).unwrap();
    let (resources, _) = with_model(path.to_str().unwrap());
    let c: LlmConfig = config("model = \"fast\"");
    let mut op = build_async(&c, "answer", &resources);
    let mut state = Tables::default();
    let out = run(&mut *op, &mut state, [ask("r9", "alice", "anything"), ask("r10", "alice", "anything")]);
    assert_eq!(out.ports(), [TRACES_PORT, MEMORIES_PORT, MEMORIES_PORT, Port::DEFAULT]);
    assert_eq!(out.on(Port::DEFAULT)[0]["answer"], "From the journal");
    assert_eq!(out.on(Port::DEFAULT)[0]["usage"]["total_tokens"], 3);
    let memories: Vec<(&Value, &Value)> =
        out.on(MEMORIES_PORT).iter().map(|p| (&p["content"], &p["author_id"])).collect();
    assert_eq!(
        memories,
        [(&json!("the sky is green"), &json!("answer")), (&json!("refunds take 5 days"), &json!("answer"))]
    );
    assert_ne!(out.on(MEMORIES_PORT)[0]["item_id"], out.on(MEMORIES_PORT)[1]["item_id"]);
    assert!(out.records(MEMORIES_PORT).iter().all(|r| r.envelope.kind == EnvelopeType::Memory));
    let dead = out.dead_lettered();
    assert_eq!(dead.len(), 1, "{:?}", out.failed);
    assert!(dead[0].contains("it holds no journal entry of operator `answer` for `r10`"), "{dead:?}");
}

/// A tool with side effects (tier 2), never called: recorded answers ask for no tool.
#[derive(Debug)]
struct Launcher;

impl Tool for Launcher {
    fn description(&self) -> String {
        "launches things".into()
    }
    fn parameters(&self) -> Value {
        json!({"type": "object"})
    }
    fn side_effects(&self) -> bool {
        true
    }
    fn call(&self, _: Value, _: CallContext) -> ToolFuture {
        Box::pin(async { Err("never called".to_owned()) })
    }
}

#[test]
fn llm_withholds_tools_above_their_tier_from_external_senders_and_audits_it() {
    let (mut resources, _) = with_model(RECORDED);
    let c: LlmConfig = config("model = \"fast\"\ntools = [\"launch\"]\ninternal_senders = [\"ops-*\"]");
    assert_eq!(errors(&c, "answer", &resources), ["tool `launch` is not declared"]);
    resources.insert_tool("launch", Some(Arc::new(Launcher)));
    let mut op = build_async(&c, "answer", &resources);
    let out = run(&mut *op, &mut Tables::default(), [ask("r1", "ops-1", "hello"), ask("r2", "customer", "hello")]);
    assert!(out.failed.is_empty(), "{:?}", out.failed);
    assert_eq!(out.ports(), [TRACES_PORT, Port::DEFAULT, TRACES_PORT, AUDIT_PORT, Port::DEFAULT]);
    let audit = out.on(AUDIT_PORT)[0];
    assert_eq!(audit["event_type"], "tools_withheld");
    assert_eq!(audit["details"]["withheld"], json!(["launch"]));
    assert_eq!(audit["details"]["sender_id"], "customer");
    assert!(out.on(Port::DEFAULT)[1]["answer"].as_str().unwrap().starts_with(HELLO), "answered all the same");
    let unknown: LlmConfig = config("model = \"slow\"\nprompt = \"{{ payload.x \"");
    assert_eq!(errors(&unknown, "answer", &resources).len(), 2, "the template and the model");
    assert!(toml::from_str::<LlmConfig>("model = \"fast\"\nbudget = 5").is_err());
}

fn item(id: &str, content: Value) -> Record {
    record(&json!({"id": id, "type": "memory", "sender_id": "alice", "payload": {"content": content}}).to_string())
}

#[test]
fn embed_puts_the_local_embedders_vector_on_each_record_and_journals_it() {
    let c: EmbedConfig = config("text = 'payload.content'\ninto = \"payload.embedding\"");
    assert_eq!(c.ports(), Ports::single());
    assert_eq!(c.tables("vectors"), [TableSpec::journal("vectors.journal")]);
    let mut op = build_async(&c, "vectors", &Resources::default());
    assert_eq!(op.order_key(&item("m1", json!("x"))), "m1", "each record on its own");
    let mut state = Tables::default();
    let text = "Refund policy: invoices over 50 EUR need approval";
    let out = run(&mut *op, &mut state, [item("m1", json!(text)), item("m2", json!(7))]);
    assert_eq!(out.ports(), [Port::DEFAULT]);
    let vector: Vec<f32> =
        out.on(Port::DEFAULT)[0]["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    assert_eq!(vector, LocalEmbedder::default().embed(text));
    assert_eq!(out.on(Port::DEFAULT)[0]["content"], text);
    assert_eq!(out.dead_lettered(), ["`payload.content` gave 7, not text"]);
    assert_eq!(state.keys_of("vectors.journal"), journal_keys(["m1"]));
    let stored: Value =
        serde_json::from_str(&state.text("vectors.journal", journal_keys(["m1"])[0].as_bytes()).unwrap()).unwrap();
    assert_eq!((stored["model"].as_str(), stored["tokens"].as_u64()), (Some("local"), Some(0)));
    assert_eq!(stored["input"], "m1", "the entry names its input, for a journal export");
    assert_eq!(state.written(), table_names(&c.tables("vectors")));

    // The journal answers a replay, even with a changed text.
    let again = run(&mut *op, &mut state, [item("m1", json!("something else entirely"))]);
    assert_eq!(again.on(Port::DEFAULT)[0]["embedding"], out.on(Port::DEFAULT)[0]["embedding"]);

    let broken = run(&mut *op, &mut Tables::failing_on("vectors.journal"), [item("m3", json!(text))]);
    assert!(broken.emitted.is_empty() && broken.dead_lettered().is_empty(), "{broken:?}");
    assert_eq!(broken.state_failures().len(), 1);
    let remote: EmbedConfig = config("model = \"embedder\"");
    assert_eq!(errors(&remote, "vectors", &Resources::default()), ["model `embedder` is not declared"]);
}

const FACTS: [(&str, &str); 3] = [
    ("m1", "Refund policy: invoices over 50 EUR need approval"),
    ("m2", "The office cat is called Miso"),
    ("m3", "Escalations go to the on-call lead"),
];

/// Resources where `remember` provides its index, and the index.
fn with_index() -> (Resources, Arc<SharedIndex>) {
    let mut resources = Resources::default();
    config::<MemoryIndexConfig>("").provides("remember", &mut resources);
    let shared = resources.get::<SharedIndex>("remember").expect("provided under the node's name");
    (resources, shared)
}

fn query(description: Value) -> Record {
    record(&json!({"id": "q", "payload": {"description": description}}).to_string())
}

#[test]
fn memory_search_finds_what_memory_index_indexed_through_the_shared_index() {
    let index: MemoryIndexConfig = config("text = 'payload.content'");
    let search: MemorySearchConfig = config("index = \"remember\"\nk = 2\nquery = 'payload.description'");
    assert_eq!((index.ports(), search.ports()), (Ports::single(), Ports::single()));
    assert_eq!(index.tables("remember"), [TableSpec::kept("remember.items")]);
    assert!(search.tables("recall").is_empty());
    assert_eq!(errors(&search, "recall", &Resources::default()), ["`remember` is not a memory-index operator"]);

    let (resources, shared) = with_index();
    let mut indexer = build_sync(&index, "remember", &resources);
    let mut searcher = build_sync(&search, "recall", &resources);
    let empty = run_sync(&mut *searcher, &mut NoState, [query(json!("refund policy"))]);
    assert_eq!(empty.on(Port::DEFAULT)[0]["memories"], json!([]), "nothing indexed yet");

    let mut state = Tables::default();
    let indexed = run_sync(&mut *indexer, &mut state, FACTS.map(|(id, text)| item(id, json!(text))));
    assert_eq!(indexed.on(Port::DEFAULT).len(), 3, "items pass on: {:?}", indexed.failed);
    assert_eq!(shared.len(), 3);
    assert_eq!(state.keys_of("remember.items"), ["m1", "m2", "m3"]);
    assert_eq!(state.written(), table_names(&index.tables("remember")));

    // Stateless: any state access would fail the record.
    let found = run_sync(&mut *searcher, &mut NoState, [query(json!("what is the refund policy for invoices?"))]);
    assert!(found.failed.is_empty(), "{:?}", found.failed);
    let hits = found.on(Port::DEFAULT)[0]["memories"].as_array().unwrap().clone();
    assert_eq!(hits.len(), 2);
    assert_eq!((hits[0]["id"].as_str(), hits[0]["text"].as_str()), (Some("m1"), Some(FACTS[0].1)));
    assert_eq!(hits[0]["sender_id"], "alice");
    assert!(hits[0]["score"].as_f64() > hits[1]["score"].as_f64(), "{hits:?}");

    let bad = run_sync(&mut *searcher, &mut NoState, [query(json!(5)), record(r#"{"payload":{}}"#)]);
    assert!(bad.emitted.is_empty());
    let dead = bad.dead_lettered();
    assert_eq!(dead.len(), 2, "{:?}", bad.failed);
    assert_eq!(dead[0], "`payload.description` gave 5, not text");
}

#[test]
fn memory_index_replaces_by_id_reloads_its_table_and_refuses_bad_items() {
    let index: MemoryIndexConfig = config("");
    let (resources, shared) = with_index();
    let mut indexer = build_sync(&index, "remember", &resources);
    let mut state = Tables::default();
    let run1 = run_sync(&mut *indexer, &mut state, [item("m1", json!("first")), item("m1", json!("second"))]);
    assert_eq!(run1.on(Port::DEFAULT).len(), 2);
    assert_eq!((shared.len(), state.len("remember.items")), (1, 1), "the same id replaces");
    let stored: Value = serde_json::from_str(&state.text("remember.items", b"m1").unwrap()).unwrap();
    assert_eq!(stored["text"], "second");

    // A new instance (restore, replay) rebuilds its index from the table on its first record.
    let (resources, restored) = with_index();
    let mut indexer = build_sync(&index, "remember", &resources);
    let bad = run_sync(&mut *indexer, &mut state, [item("m2", json!(["not", "text"]))]);
    assert_eq!(bad.dead_lettered(), [r#"`payload.content` gave ["not","text"], not text"#]);
    assert_eq!(restored.len(), 1, "loaded before the bad record failed");
    run_sync(&mut *indexer, &mut state, [item("m3", json!("third"))]);
    assert_eq!(restored.len(), 2);

    let broken = run_sync(
        &mut *build_sync(&index, "remember", &resources),
        &mut Tables::failing_on("remember.items"),
        [item("m4", json!("fourth"))],
    );
    assert!(broken.emitted.is_empty() && broken.dead_lettered().is_empty(), "{broken:?}");
    assert_eq!(broken.state_failures()[0].table, "remember.items");
}

#[test]
fn memory_kinds_take_vectors_from_an_upstream_embed_of_one_dimension() {
    let embed: EmbedConfig = config("");
    let index: MemoryIndexConfig = config("vector = 'payload.embedding'");
    let search: MemorySearchConfig = config("index = \"remember\"\nvector = 'payload.embedding'\nk = 1");
    let (resources, shared) = with_index();
    let mut embedder = build_async(&embed, "vectors", &resources);
    let mut indexer = build_sync(&index, "remember", &resources);
    let mut searcher = build_sync(&search, "recall", &resources);
    let mut state = Tables::default();
    let embedded = run(&mut *embedder, &mut state, FACTS.map(|(id, text)| item(id, json!(text))));
    let vectors: Vec<Record> = embedded.records(Port::DEFAULT).into_iter().cloned().collect();
    let indexed = run_sync(&mut *indexer, &mut state, vectors);
    assert_eq!((indexed.on(Port::DEFAULT).len(), shared.len()), (3, 3), "{:?}", indexed.failed);
    let stored: Value = serde_json::from_str(&state.text("remember.items", b"m3").unwrap()).unwrap();
    assert_eq!(stored["vector"].as_array().map(Vec::len), Some(384), "the vector is kept with the item");

    let asked = record(r#"{"id":"q","type":"memory","payload":{"content":"who handles escalations?"}}"#);
    let asked = run(&mut *embedder, &mut state, [asked]).records(Port::DEFAULT)[0].clone();
    let found = run_sync(&mut *searcher, &mut NoState, [asked]);
    assert_eq!(found.on(Port::DEFAULT)[0]["memories"][0]["id"], "m3");

    let short = record(r#"{"id":"m9","payload":{"content":"x","embedding":[1,0,0]}}"#);
    let refused = run_sync(&mut *indexer, &mut state, [short]);
    let dead = refused.dead_lettered();
    assert_eq!(dead.len(), 1, "{:?}", refused.failed);
    assert!(dead[0].contains("holds vectors of 384 dimensions, this one has 3"), "{dead:?}");
}

/// Found while writing these tests: `memory-index` keys an item by its record's *input* key
/// (`Record::input_key`, the id of the envelope the task read), not by the memory's
/// `payload.item_id`. Every item an `llm` call remembers carries its request's origin, so
/// where `<llm>.memories` feeds a `memory-index` in the same topology (`topologies/agent.toml`:
/// `remember` reads `think.memories`), each remembered item replaces the one before it: two
/// items in, one indexed (`remember.items` holds only `r9`).
#[test]
fn every_item_an_llm_call_remembers_is_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.jsonl");
    std::fs::write(&path, format!("{EXPORT}\n")).unwrap();
    let (mut resources, _) = with_model(path.to_str().unwrap());
    let index: MemoryIndexConfig = config("");
    index.provides("remember", &mut resources);
    let shared = resources.get::<SharedIndex>("remember").unwrap();
    let mut llm = build_async(&config::<LlmConfig>("model = \"fast\""), "answer", &resources);
    let mut state = Tables::default();
    let out = run(&mut *llm, &mut state, [ask("r9", "alice", "anything")]);
    let memories: Vec<Record> = out.records(MEMORIES_PORT).into_iter().cloned().collect();
    assert_eq!(memories.len(), 2);
    let mut indexer = build_sync(&index, "remember", &resources);
    let indexed = run_sync(&mut *indexer, &mut state, memories);
    assert_eq!(indexed.on(Port::DEFAULT).len(), 2, "{:?}", indexed.failed);
    assert_eq!((shared.len(), state.len("remember.items")), (2, 2), "items: {:?}", state.keys_of("remember.items"));
}
