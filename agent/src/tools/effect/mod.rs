//! Effect classes of tools (docs/effects.md): what a call may do outside kafclaw, and what a
//! run of the same step after a crash does about it.
//!
//! Every `[tools.<name>]` table takes `effect = "none" | "idempotent" | "at-most-once" |
//! "reconcile"`:
//!
//! - `none`: nothing outside changes; a rerun calls again.
//! - `idempotent`: the call carries the step's idempotency key (`Idempotency-Key`, MCP
//!   `_meta`) and the other side honours it; a rerun calls again with the same key.
//! - `at-most-once`: an **intent record** is made durable in the [`EffectLog`] before the
//!   call and a **result record** after it. A rerun of the step that finds the result hands
//!   it to the model without calling; one that finds the intent alone tells the model the
//!   outcome is unknown (and audits `tool_outcome_unknown`) and never calls again.
//! - `reconcile`: as `at-most-once`, but an intent without a result is resolved by the
//!   tool's reconcile action (an `http` GET of `reconcile_url`, an MCP `reconcile_tool`):
//!   done (its answer is the result), absent (the call is made now), or unknown.
//!
//! The idempotency key of a call is derived from the input's Kafka coordinates (or file and
//! line), the topology, the operator and the step (the round of the tool loop and the call's
//! index in the answer): [`step_prefix`] + `/<round>/<index>`. A rerun after a crash, which
//! reads the same input again, names the same steps with the same keys, whatever call ids a
//! model makes up.
//!
//! A model asked again may answer a round otherwise, so the `llm` tool loop journals its
//! decisions too: a **round record** (`<step>/<round>`, [`Rounds`]) holds each answer with keyed
//! calls before they run, and a rerun replays it instead of asking the model; a logged call
//! whose key holds another call's record is neither made nor handed that result.
//!
//! The log itself is the runtime's: a compacted Kafka topic (`<topology>.effects`, each record
//! in a small transaction of its own) in Kafka mode, an fsync'ed file in local mode
//! ([`FileEffectLog`]), installed in the topology's [`EffectSlot`].

mod config;
mod file;
mod round;
mod wrap;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use kafclaw_operators::api::record::Record;

pub use file::{FileEffectLog, MemoryEffectLog};
pub use round::{ROUND_TOOL, RoundAnswer, Rounds};
pub use wrap::Effected;

/// The effect class of a tool (`effect = "…"` on `[tools.<name>]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    /// Changes nothing outside kafclaw: a rerun calls again.
    None,
    /// Sends the step's idempotency key, which the other side honours: a rerun calls again
    /// with the same key.
    Idempotent,
    /// Logged before and after: a rerun never calls again; an intent without a result is an
    /// unknown outcome.
    AtMostOnce,
    /// Logged before and after; an intent without a result is resolved by the tool's
    /// reconcile action.
    Reconcile,
}

impl Effect {
    /// The default of a tool that says whether it has side effects and whether its calls
    /// carry a key the other side honours.
    pub fn default_for(side_effects: bool, idempotent: bool) -> Self {
        match (side_effects, idempotent) {
            (false, _) => Self::None,
            (true, true) => Self::Idempotent,
            (true, false) => Self::AtMostOnce,
        }
    }

    /// Whether calls are logged ([`EffectLog`]) before and after.
    pub fn logged(self) -> bool {
        matches!(self, Self::AtMostOnce | Self::Reconcile)
    }

    /// The class as written in a topology.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Idempotent => "idempotent",
            Self::AtMostOnce => "at-most-once",
            Self::Reconcile => "reconcile",
        }
    }
}

impl std::fmt::Display for Effect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One record of the effect log: an intent (no `outcome`) or a result (the intent's fields
/// and the outcome, so that a compacted log keeps everything under the key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectRecord {
    /// The call's idempotency key (the record's key).
    pub key: String,
    /// The tool, by its name in the topology (`<name>.<tool>` for an MCP server's).
    pub tool: String,
    /// The arguments the model gave.
    pub arguments: Value,
    /// The input step: the key without the round and index (topology, operator, input
    /// coordinates).
    pub input: String,
    /// When the intent was logged (ms since the epoch).
    pub at_ms: i64,
    /// The outcome, once the call returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

/// What a logged call returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Whether it succeeded (a failure's text went to the model as an error).
    pub ok: bool,
    /// The text the model was handed.
    pub text: String,
    /// When it returned (ms since the epoch).
    pub at_ms: i64,
}

/// A log operation in flight; `Err` says why the log could not answer (the infrastructure's
/// fault, never the record's).
pub type LogFuture<T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send>>;

/// Where intents and results are made durable (the runtime's: Kafka, a file).
pub trait EffectLog: Send + Sync + std::fmt::Debug {
    /// The last record logged under `key`, after catching up with everything made durable
    /// before the call (by any instance, any earlier run).
    fn lookup(&self, key: &str) -> LogFuture<Option<EffectRecord>>;
    /// The last record logged under `key` among those the log has read by now, without
    /// catching up first. Complete for what was made durable before an attempt began once a
    /// [`lookup`](Self::lookup) of that attempt returned: the `llm` tool loop pays one catch-up
    /// (a Kafka barrier) per call, and its later lookups read this way ([`in_attempt`]).
    /// Default: [`lookup`](Self::lookup) (a log that reads everything at once, a file or
    /// memory, has nothing to catch up with).
    fn lookup_synced(&self, key: &str) -> LogFuture<Option<EffectRecord>> {
        self.lookup(key)
    }
    /// Makes `record` durable; resolves once it is.
    fn append(&self, record: EffectRecord) -> LogFuture<()>;
}

tokio::task_local! {
    /// Whether the effect log was caught up during the attempt the running tool call belongs
    /// to (set by [`in_attempt`]).
    static CAUGHT_UP: bool;
}

/// Runs `call`, a tool call of an `llm` attempt, saying whether that attempt caught the
/// effect log up (a [`EffectLog::lookup`] that returned after the attempt began: its first
/// round record lookup, [`Rounds`]). A logged call made in such an attempt looks its key up
/// with [`EffectLog::lookup_synced`]; any other call catches up itself.
pub async fn in_attempt<F: Future>(caught_up: bool, call: F) -> F::Output {
    CAUGHT_UP.scope(caught_up, call).await
}

/// Whether the running call belongs to an attempt that caught the effect log up.
fn caught_up() -> bool {
    CAUGHT_UP.try_with(|c| *c).unwrap_or(false)
}

/// The name of the topology's [`EffectSlot`] in its resources.
pub const EFFECT_SLOT: &str = "effects";

/// Where the runtime puts its effect log; shared by every tool of a topology.
#[derive(Debug, Default)]
pub struct EffectSlot(OnceLock<Arc<dyn EffectLog>>);

impl EffectSlot {
    /// Installs the log (the first one wins).
    pub fn set(&self, log: Arc<dyn EffectLog>) {
        let _ = self.0.set(log);
    }

    /// The log, once a runtime installed one.
    pub fn get(&self) -> Option<Arc<dyn EffectLog>> {
        self.0.get().cloned()
    }
}

/// What a reconcile action learnt about a call that was logged but has no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// It happened; the text is its result.
    Done(String),
    /// It never happened: the call is made now.
    Absent,
    /// Nobody can tell; the text says why.
    Unknown(String),
}

/// A reconcile action in flight.
pub type ReconcileFuture = Pin<Box<dyn Future<Output = Reconciled> + Send>>;

/// The idempotency key prefix of the calls made for `record` by operator `operator` of
/// `topology`: `<topology>/<operator>/<topic>/<partition>/<offset>` (a call appends
/// `/<round>/<index>`). A location that is not a plain topic name (a local file's path) is
/// replaced by `f-` and a digest of it, so the key stays printable ASCII (an HTTP header).
pub fn step_prefix(topology: &str, operator: &str, record: &Record) -> String {
    let o = &record.origin;
    let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    let location = if plain(&o.location) {
        o.location.to_string()
    } else {
        use sha2::Digest;
        let d = sha2::Sha256::digest(o.location.as_bytes());
        format!("f-{}", d[..8].iter().map(|b| format!("{b:02x}")).collect::<String>())
    };
    format!("{topology}/{operator}/{location}/{}/{}", o.partition, o.offset)
}

/// The input step of a key made from [`step_prefix`]: the key without `/<round>/<index>`.
pub fn input_of(key: &str) -> &str {
    let mut parts = key.rsplitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(_), Some(rest)) => rest,
        _ => key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafclaw_operators::api::record::Origin;
    use kafclaw_operators::envelope::{Envelope, EnvelopeType};

    fn at(location: &str, partition: i32, offset: i64) -> Record {
        let e = Envelope::new(EnvelopeType::Request, "c", "s", "1970-01-01T00:00:00Z", Value::Null);
        let mut r = Record::detached(e);
        let o = Origin { location: location.into(), partition, offset, ..(*r.origin).clone() };
        r.origin = Arc::new(o);
        r
    }

    #[test]
    fn keys_name_the_input_coordinates_and_stay_printable() {
        let k = step_prefix("app", "answer", &at("orders.in", 2, 17));
        assert_eq!(k, "app/answer/orders.in/2/17");
        assert_eq!(input_of(&format!("{k}/0/1")), k);
        let local = step_prefix("app", "answer", &at("/tmp/in put/é.jsonl", 0, 3));
        assert!(local.starts_with("app/answer/f-") && local.ends_with("/0/3"), "{local}");
        assert!(local.bytes().all(|b| b.is_ascii_graphic()), "{local}");
        assert_ne!(local, step_prefix("app", "answer", &at("/tmp/other.jsonl", 0, 3)));
    }

    #[test]
    fn classes_read_as_written_and_default_from_the_tool() {
        let e: Effect = serde_json::from_value(Value::from("at-most-once")).unwrap();
        assert_eq!(e, Effect::AtMostOnce);
        assert!(serde_json::from_value::<Effect>(Value::from("at_most_once")).is_err());
        assert_eq!(Effect::default_for(false, false), Effect::None);
        assert_eq!(Effect::default_for(true, true), Effect::Idempotent);
        assert_eq!(Effect::default_for(true, false), Effect::AtMostOnce);
        assert!(Effect::Reconcile.logged() && !Effect::Idempotent.logged());
    }
}
