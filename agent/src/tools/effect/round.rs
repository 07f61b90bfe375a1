//! Round records (docs/effects.md, "Round records"): the `llm` tool loop's journal of the
//! model's decisions. A model is not deterministic: asked again after a crash, it may answer a
//! round with other tools, in another order, with other arguments, and the key
//! `<step>/<round>/<index>` would then name another call than the one logged under it. So,
//! before the calls of a round run, the answer that asked for them is made durable under
//! `<step>/<round>`; a rerun of the step replays it instead of asking the model, and walks
//! the first attempt's path up to where it stopped (Temporal, Restate and DBOS journal each
//! step's decision the same way).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::wrap::redacted;
use super::{EffectLog, EffectRecord, Outcome};
use crate::model::protocol::ToolCall;
use kafclaw_operators::api::record::now_ms;

/// The `tool` of a round record (its key, `<step>/<round>`, is never a call's, which has one
/// part more).
pub const ROUND_TOOL: &str = "llm";

/// A model's answer as its round record keeps it (the record's `arguments`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundAnswer {
    /// The model that answered.
    pub model: String,
    /// The answer's text beside its calls (often empty).
    #[serde(default)]
    pub content: String,
    /// The calls, as the model made them: ids, names, arguments.
    pub tool_calls: Vec<ToolCall>,
}

/// The round records of one attempt of one `llm` call.
#[derive(Debug)]
pub struct Rounds {
    log: Arc<dyn EffectLog>,
    /// The input step ([`super::step_prefix`]); round `r`'s record is `<step>/<r>`.
    step: String,
    /// A lookup of this attempt returned: later ones read what the log has read.
    caught_up: bool,
}

impl Rounds {
    /// The round records of the attempt of `step` starting now, in `log`.
    pub fn new(log: Arc<dyn EffectLog>, step: &str) -> Self {
        Self { log, step: step.to_owned(), caught_up: false }
    }

    /// The key of round `round`'s record.
    pub fn key(&self, round: u32) -> String {
        format!("{}/{round}", self.step)
    }

    /// Whether the log was caught up during this attempt (its calls may then look up their
    /// keys without a catch-up of their own: [`super::in_attempt`]).
    pub fn caught_up(&self) -> bool {
        self.caught_up
    }

    /// The answer an earlier attempt recorded for `round`, if any: the first lookup of the
    /// attempt catches the log up, the later ones read what it has read.
    ///
    /// Errors: the log cannot answer (the infrastructure's fault), or the key holds something
    /// else than a round record with calls (the log's: a rerun cannot tell what the step did).
    pub async fn recorded(&mut self, round: u32) -> Result<Option<RoundAnswer>, String> {
        let key = self.key(round);
        let found = if self.caught_up { self.log.lookup_synced(&key) } else { self.log.lookup(&key) }.await?;
        self.caught_up = true;
        let Some(record) = found else { return Ok(None) };
        if record.tool != ROUND_TOOL {
            return Err(format!("`{key}` holds a record of tool `{}`, not a round record", record.tool));
        }
        match serde_json::from_value::<RoundAnswer>(record.arguments) {
            Ok(a) if !a.tool_calls.is_empty() => Ok(Some(a)),
            Ok(_) => Err(format!("the round record `{key}` holds no tool call")),
            Err(e) => Err(format!("the round record `{key}` is not a model's answer: {e}")),
        }
    }

    /// Makes `answer` durable as round `round`'s record (a configured secret in it redacted,
    /// as in every record); resolves once it is.
    pub async fn record(&self, round: u32, answer: &RoundAnswer) -> Result<(), String> {
        let arguments = serde_json::to_value(answer).map_err(|e| e.to_string())?;
        let names: Vec<&str> = answer.tool_calls.iter().map(|c| c.function.name.as_str()).collect();
        let at_ms = now_ms();
        let record = EffectRecord {
            key: self.key(round),
            tool: ROUND_TOOL.to_owned(),
            arguments: redacted(&arguments),
            input: self.step.clone(),
            at_ms,
            // Complete when made: a round record is never an intent waiting for its result.
            outcome: Some(Outcome { ok: true, text: format!("round {round}: {}", names.join(", ")), at_ms }),
        };
        self.log.append(record).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::MemoryEffectLog;
    use super::*;
    use crate::model::protocol::FunctionCall;

    /// A memory log counting lookups that catch up and lookups that do not.
    #[derive(Debug, Default)]
    struct Counting {
        inner: MemoryEffectLog,
        lookups: std::sync::atomic::AtomicUsize,
        synced: std::sync::atomic::AtomicUsize,
    }
    impl EffectLog for Counting {
        fn lookup(&self, key: &str) -> super::super::LogFuture<Option<EffectRecord>> {
            self.lookups.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.lookup(key)
        }
        fn lookup_synced(&self, key: &str) -> super::super::LogFuture<Option<EffectRecord>> {
            self.synced.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.lookup(key)
        }
        fn append(&self, record: EffectRecord) -> super::super::LogFuture<()> {
            self.inner.append(record)
        }
    }

    fn answer(calls: &[(&str, &str)]) -> RoundAnswer {
        let tool_calls = calls
            .iter()
            .enumerate()
            .map(|(i, (name, args))| ToolCall {
                id: format!("call_{i}"),
                kind: "function".into(),
                function: FunctionCall { name: (*name).into(), arguments: (*args).into() },
            })
            .collect();
        RoundAnswer { model: "m".into(), content: String::new(), tool_calls }
    }

    #[tokio::test]
    async fn a_round_record_is_found_by_the_next_attempt_after_one_catch_up() {
        let log = Arc::new(Counting::default());
        let first = Rounds::new(log.clone(), "app/llm/in/0/7");
        first.record(0, &answer(&[("pay", r#"{"amount":3}"#), ("ship", "{}")])).await.unwrap();
        first.record(1, &answer(&[("mail", "{}")])).await.unwrap();

        let mut rerun = Rounds::new(log.clone(), "app/llm/in/0/7");
        assert!(!rerun.caught_up());
        assert_eq!(rerun.recorded(0).await.unwrap(), Some(answer(&[("pay", r#"{"amount":3}"#), ("ship", "{}")])));
        assert!(rerun.caught_up());
        assert_eq!(rerun.recorded(1).await.unwrap(), Some(answer(&[("mail", "{}")])));
        assert_eq!(rerun.recorded(2).await.unwrap(), None);
        let counted = |c: &std::sync::atomic::AtomicUsize| c.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!((counted(&log.lookups), counted(&log.synced)), (1, 2), "one catch-up per attempt");
        let stored = log.inner.lookup("app/llm/in/0/7/0").await.unwrap().unwrap();
        assert_eq!((stored.tool.as_str(), stored.input.as_str()), (ROUND_TOOL, "app/llm/in/0/7"));
        assert!(stored.outcome.is_some_and(|o| o.ok && o.text == "round 0: pay, ship"));
    }

    #[tokio::test]
    async fn a_key_holding_something_else_is_an_error_not_a_fresh_round() {
        let log = Arc::new(MemoryEffectLog::default());
        let intent = EffectRecord {
            key: "s/0".into(),
            tool: "pay".into(),
            arguments: json!({}),
            input: "s".into(),
            at_ms: 0,
            outcome: None,
        };
        log.append(intent.clone()).await.unwrap();
        let e = Rounds::new(log.clone(), "s").recorded(0).await.unwrap_err();
        assert!(e.contains("holds a record of tool `pay`, not a round record"), "{e}");
        log.append(EffectRecord { key: "s/1".into(), tool: ROUND_TOOL.into(), ..intent }).await.unwrap();
        let e = Rounds::new(log, "s").recorded(1).await.unwrap_err();
        assert!(e.contains("is not a model's answer"), "{e}");
    }
}
