//! `conversation` and `conversation-context`, each config half read from TOML and built with
//! [`Kind::build`], driven by the operators crate's kit: histories within their budget over
//! 200 exchanges with summaries journalled and reused, the hard bounds when the summary model
//! fails, keys that fail dead-lettered, a failing store a state failure, and option errors.

use std::sync::Arc;

use serde_json::{Value, json};

use kafclaw_agent::memory::conversation::history::History;
use kafclaw_agent::memory::conversation::keep::SummaryEntry;
use kafclaw_agent::memory::conversation::{AUDIT_PORT, ConversationConfig, ConversationContextConfig};
use kafclaw_agent::model::{ModelConfig, SharedModel};
use kafclaw_agent::resources::AgentResources;
use kafclaw_operators::api::asynchronous::AsyncOperator;
use kafclaw_operators::api::kind::Kind;
use kafclaw_operators::api::operator::Port;
use kafclaw_operators::api::resources::Resources;
use kafclaw_operators::testing::{Run, Tables, build_async, build_sync, record, run_async, run_sync};
use kafclaw_operators::{Record, StateAccess, SyncOperator};

fn run(op: &mut dyn AsyncOperator, state: &mut dyn StateAccess, inputs: impl IntoIterator<Item = Record>) -> Run {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    run_async(op, state, inputs, |work| rt.block_on(work))
}

fn config<T: serde::de::DeserializeOwned>(text: &str) -> T {
    toml::from_str(text).unwrap_or_else(|e| panic!("options {text:?}: {e}"))
}

/// Resources with model `summariser`: answering every prompt from a recording written to
/// `dir`, or (`recorded = None`) at an address where nothing listens, one attempt.
fn resources(dir: &std::path::Path, recorded: Option<&str>) -> (Resources, Arc<SharedModel>) {
    let mut options =
        "base_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\nmax_attempts = 1\ntimeout = \"2s\"\n".to_owned();
    if let Some(answer) = recorded {
        let path = dir.join("recorded.jsonl");
        std::fs::write(&path, json!({"prompt": "*", "answer": answer}).to_string() + "\n").unwrap();
        options.push_str(&format!("recorded = {:?}\n", path.to_str().unwrap()));
    }
    let model = SharedModel::new("summariser", config::<ModelConfig>(&options));
    let mut resources = Resources::default();
    resources.insert_model(model.clone());
    (resources, model)
}

const KEEPER: &str = r#"
model = "summariser"
max_tokens = 300
max_turns = 40
max_bytes = 4096
"#;

/// Exchange `i` of conversation `conv`, as it leaves the `llm` operator.
fn answered(conv: &str, i: usize) -> Record {
    let payload = json!({"description": format!("question {i}: what about invoice {i}?"), "answer": format!("answer {i}: it is paid")});
    record(&json!({"id": format!("{conv}-{i}"), "correlation_id": conv, "payload": payload}).to_string())
}

fn history(state: &Tables, conv: &str) -> History {
    serde_json::from_str(&state.text("history", conv.as_bytes()).unwrap()).unwrap()
}

/// Runs `n` exchanges of `conv` through the reader then the writer, as a topology does; the
/// context each request was given.
fn converse(
    reader: &mut dyn SyncOperator,
    writer: &mut dyn AsyncOperator,
    state: &mut Tables,
    conv: &str,
    n: usize,
) -> Vec<Value> {
    let mut given = Vec::new();
    for i in 0..n {
        let read = run_sync(reader, state, [answered(conv, i)]);
        assert!(read.failed.is_empty(), "{:?}", read.failed);
        let r = read.records(Port::DEFAULT)[0].clone();
        given.push(r.envelope.payload["conversation"].clone());
        let kept = run(writer, state, [r]);
        assert!(kept.failed.is_empty(), "{:?}", kept.failed);
        assert_eq!(kept.records(Port::DEFAULT).len(), 1, "the record goes on");
        assert!(kept.on(AUDIT_PORT).is_empty(), "nothing dropped: {:?}", kept.on(AUDIT_PORT));
    }
    given
}

#[test]
fn two_hundred_exchanges_stay_within_budget_and_a_rerun_reuses_every_summary() {
    let dir = tempfile::tempdir().unwrap();
    let (res, model) = resources(dir.path(), Some("they talked about invoices 0 to n; all are paid"));
    let keeper: ConversationConfig = config(KEEPER);
    let mut res = res;
    keeper.provides("history", &mut res);
    let reader: ConversationContextConfig = config(r#"conversation = "history""#);
    let mut state = Tables::default();
    let mut writer = build_async(&keeper, "history", &res);
    writer.open().unwrap();
    let mut read = build_sync(&reader, "context", &res);
    let given = converse(read.as_mut(), writer.as_mut(), &mut state, "c1", 200);

    for (i, g) in given.iter().enumerate() {
        let text = g.as_str().unwrap();
        assert!(text.len().div_ceil(4) <= 300, "request {i} was given {} bytes", text.len());
    }
    let h = history(&state, "c1");
    assert!(h.summary.is_some() && h.summarised > 0, "{h:?}");
    assert_eq!(h.dropped, 0);
    assert_eq!(h.summarised + h.turns.len() as u64, 400, "every turn summarised or kept");
    assert_eq!(h.turns.last().unwrap().content, "answer 199: it is paid", "the newest turns are verbatim");
    assert_eq!(h.turns[h.turns.len() - 2].content, "question 199: what about invoice 199?");
    assert!(h.text().len().div_ceil(4) <= 300 && h.turns.len() <= 40);
    assert!(state.text("history", b"c1").unwrap().len() <= 4096);
    let summaries = state.keys_of("history.journal");
    let calls = model.usage().unwrap().calls;
    assert_eq!(calls as usize, summaries.len(), "one journalled entry per summary call");
    assert!(calls >= 5, "summaries happened: {calls}");
    let entry: SummaryEntry =
        serde_json::from_str(&state.text("history.journal", summaries[0].as_bytes()).unwrap()).unwrap();
    assert!(entry.folded > 0 && entry.summary.is_some());

    // A rerun over the journals only (as `kafclaw replay` leaves them), against a model that
    // cannot answer: every summary comes from the journal, every request gets what it got.
    let (dead, dead_model) = resources(dir.path(), None);
    let mut dead = dead;
    keeper.provides("history", &mut dead);
    let mut again = Tables::default();
    for table in ["history.journal", "context.journal"] {
        for k in state.keys_of(table) {
            again.put(table, k.as_bytes(), state.text(table, k.as_bytes()).unwrap().as_bytes()).unwrap();
        }
    }
    let mut writer = build_async(&keeper, "history", &dead);
    let mut read = build_sync(&reader, "context", &dead);
    let replayed = converse(read.as_mut(), writer.as_mut(), &mut again, "c1", 200);
    assert_eq!(replayed, given);
    assert_eq!(history(&again, "c1"), h, "the same history rebuilt");
    assert_eq!(dead_model.usage().map_or(0, |u| u.calls + u.failures), 0, "no model call");
}

#[test]
fn a_failing_summary_is_audited_journalled_and_the_bounds_still_hold() {
    let dir = tempfile::tempdir().unwrap();
    let (mut res, _) = resources(dir.path(), None);
    let keeper: ConversationConfig = config(KEEPER);
    keeper.provides("history", &mut res);
    let mut writer = build_async(&keeper, "history", &res);
    let mut state = Tables::default();
    let out = run(writer.as_mut(), &mut state, (0..60).map(|i| answered("c2", i)));
    assert!(out.failed.is_empty(), "{:?}", out.failed);
    assert_eq!(out.records(Port::DEFAULT).len(), 60, "every answered record goes on");
    let audits = out.on(AUDIT_PORT);
    assert!(!audits.is_empty());
    assert!(audits.iter().all(|a| a["event_type"] == "conversation_summary_failed"), "{audits:?}");
    assert!(audits[0]["details"]["error"].as_str().unwrap().contains("summariser"), "{audits:?}");
    assert!(audits[0]["details"]["dropped"].as_u64().unwrap() > 0);
    let h = history(&state, "c2");
    assert!(h.summary.is_none() && h.dropped > 0 && h.text().len().div_ceil(4) <= 300, "{h:?}");
    assert_eq!(h.dropped + h.turns.len() as u64, 120);
    assert_eq!(state.keys_of("history.journal").len(), audits.len(), "each failure journalled");
}

#[test]
fn without_a_model_the_oldest_turns_are_dropped_and_audited() {
    let keeper: ConversationConfig = config("max_tokens = 100\nmax_turns = 6\nkeep_turns = 2");
    let mut res = Resources::default();
    keeper.provides("history", &mut res);
    let mut writer = build_async(&keeper, "history", &res);
    let mut state = Tables::default();
    let out = run(writer.as_mut(), &mut state, (0..10).map(|i| answered("c3", i)));
    assert_eq!(out.records(Port::DEFAULT).len(), 10);
    let audits = out.on(AUDIT_PORT);
    assert!(!audits.is_empty() && audits.iter().all(|a| a["event_type"] == "conversation_turns_dropped"));
    let h = history(&state, "c3");
    assert!(h.turns.len() <= 6 && h.dropped + h.turns.len() as u64 == 20, "{h:?}");
    assert_eq!(state.keys_of("history.journal").len(), 0, "no model, nothing journalled");
}

#[test]
fn keys_and_turns_that_fail_dead_letter_the_record() {
    let keeper: ConversationConfig = config("key = 'payload.conv.id'");
    let mut res = Resources::default();
    keeper.provides("history", &mut res);
    let mut writer = build_async(&keeper, "history", &res);
    let mut state = Tables::default();
    let no_conv = record(r#"{"payload":{"description":"q","answer":"a"}}"#);
    let null_conv = record(r#"{"payload":{"conv":{"id":null},"description":"q","answer":"a"}}"#);
    let no_answer = record(r#"{"payload":{"conv":{"id":"k"},"description":"q","answer":null}}"#);
    let good = record(r#"{"payload":{"conv":{"id":"k"},"description":"q","answer":"a"}}"#);
    let out = run(writer.as_mut(), &mut state, [no_conv, null_conv, no_answer, good]);
    let dead = out.dead_lettered();
    assert_eq!(dead.len(), 3, "{dead:?}");
    assert!(dead[0].contains("conversation key"), "{dead:?}");
    assert!(dead[1].contains("gave null"), "{dead:?}");
    assert!(dead[2].contains("no assistant turn"), "{dead:?}");
    assert_eq!(out.records(Port::DEFAULT).len(), 1);

    let reader: ConversationContextConfig = config("conversation = \"history\"\nformat = \"messages\"");
    let mut read = build_sync(&reader, "context", &res);
    let out = run_sync(
        read.as_mut(),
        &mut state,
        [record(r#"{"payload":{}}"#), record(r#"{"id":"x","payload":{"conv":{"id":"k"}}}"#)],
    );
    assert_eq!(out.dead_lettered().len(), 1, "{:?}", out.failed);
    assert_eq!(
        out.on(Port::DEFAULT)[0]["conversation"],
        json!([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
    );
}

#[test]
fn a_failing_store_is_a_state_failure_not_a_dead_letter() {
    let keeper: ConversationConfig = config("");
    let mut res = Resources::default();
    keeper.provides("history", &mut res);
    let mut writer = build_async(&keeper, "history", &res);
    let mut state = Tables::failing_on("history");
    let out = run(writer.as_mut(), &mut state, [answered("c4", 0)]);
    assert_eq!(out.state_failures().len(), 1);
    assert!(out.dead_lettered().is_empty());
    let reader: ConversationContextConfig = config(r#"conversation = "history""#);
    let mut read = build_sync(&reader, "context", &res);
    let out = run_sync(read.as_mut(), &mut state, [answered("c4", 1)]);
    assert_eq!(out.state_failures().len(), 1);
}

#[test]
fn bad_options_are_errors_at_their_field() {
    let text = "model = \"nope\"\nmax_tokens = 10\nmax_turns = 4\nkeep_turns = 4\nsummary_tokens = 2\nmax_bytes = 100\nsummary_prompt = \"{{ x\"";
    let keeper: ConversationConfig = config(text);
    let errors = match keeper.build("history", &Resources::default()) {
        Ok(b) => panic!("built {b:?}"),
        Err(e) => e,
    };
    let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    for want in [
        "model `nope`",
        "`max_tokens` is 10",
        "`max_bytes` is 100",
        "`keep_turns` is 4",
        "`summary_tokens` is 2",
        "template line 1",
    ] {
        assert!(messages.iter().any(|m| m.contains(want)), "{want}: {messages:?}");
    }
    for e in &errors {
        let field = &text[e.span.clone()];
        assert!(!field.is_empty(), "every error points at its value: {e:?}");
    }
    let reader: ConversationContextConfig = config(r#"conversation = "nothing""#);
    let errors = reader.build("context", &Resources::default()).err().unwrap();
    assert!(errors[0].message.contains("`nothing` is not a conversation operator"), "{errors:?}");
    assert!(toml::from_str::<ConversationConfig>("max_token = 5").is_err(), "unknown options are refused");
}

#[test]
fn an_exchange_stored_before_its_summary_came_is_not_appended_twice() {
    use kafclaw_operators::api::asynchronous::Started;
    let dir = tempfile::tempdir().unwrap();
    let (mut res, model) = resources(dir.path(), Some("short summary"));
    let keeper: ConversationConfig = config(KEEPER);
    keeper.provides("history", &mut res);
    let mut writer = build_async(&keeper, "history", &res);
    let mut state = Tables::default();
    // Up to the exchange whose summary is asked.
    let mut i = 0;
    loop {
        let r = answered("c5", i);
        match writer.start(&r, &mut state).unwrap() {
            Started::Ready(outcome) => {
                let mut emit = kafclaw_operators::Emit::default();
                writer.finish(r, outcome, &mut state, &mut emit).unwrap();
            }
            // The summary is out: the run crashes here (its work dropped), the exchange stored.
            Started::Pending(work) => {
                drop(work);
                break;
            }
        }
        i += 1;
    }
    let stored = history(&state, "c5");
    assert_eq!(
        stored.turns.last().unwrap().content,
        format!("answer {i}: it is paid"),
        "stored while the summary is out"
    );
    assert_eq!(stored.last_input.as_deref(), Some(format!("c5-{i}").as_str()));
    // The same input again: the summary is asked again, the exchange not appended again.
    let out = run(writer.as_mut(), &mut state, [answered("c5", i)]);
    assert!(out.failed.is_empty(), "{:?}", out.failed);
    let h = history(&state, "c5");
    assert_eq!(h.summarised + h.turns.len() as u64, 2 * (i as u64 + 1), "every turn once: {h:?}");
    assert_eq!(h.turns.iter().filter(|t| t.content == format!("answer {i}: it is paid")).count(), 1);
    assert_eq!(model.usage().unwrap().calls, 1, "the dropped work never called; the rerun did");
}

#[test]
fn a_summary_prompt_that_does_not_render_fails_the_summary_not_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (mut res, model) = resources(dir.path(), Some("never asked"));
    let keeper: ConversationConfig = config(&format!("{KEEPER}summary_prompt = \"{{{{ nope() }}}}\"\n"));
    keeper.provides("history", &mut res);
    let mut writer = build_async(&keeper, "history", &res);
    let mut state = Tables::default();
    let out = run(writer.as_mut(), &mut state, (0..30).map(|i| answered("c6", i)));
    assert!(out.failed.is_empty(), "{:?}", out.failed);
    assert_eq!(out.records(Port::DEFAULT).len(), 30);
    let audits = out.on(AUDIT_PORT);
    assert!(!audits.is_empty(), "the summary was due");
    assert!(audits[0]["details"]["error"].as_str().unwrap().contains("summary_prompt"), "{audits:?}");
    assert_eq!(model.usage().map_or(0, |u| u.calls), 0);
}
