//! The input a tool call is made for ([`CallContext`]): its idempotency key (see
//! [`super::effect`] for how it is derived) and what a tool may need of the input.

use kafclaw_operators::api::record::Record;
use kafclaw_operators::envelope::wire::{self, WireError};

/// The input a tool call is made for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallContext {
    /// Stable for one step of one input, whatever the model's call ids:
    /// `<topology>/<operator>/<topic>/<partition>/<offset>/<round>/<index>`
    /// ([`super::effect::step_prefix`] and the call's place in the tool loop).
    pub idempotency_key: String,
    /// The input envelope's id, when it has one.
    pub input_id: Option<String>,
    /// The task the input belongs to (`payload.task_id`, else its correlation id).
    pub task_id: String,
    /// The input's `payload.delegation_depth` (0 when absent).
    pub delegation_depth: u32,
    /// The input's zone.
    pub zone: Option<String>,
    /// The input's correlation id: the `gen_ai.conversation.id` of the calls' trace spans.
    pub conversation_id: String,
}

impl CallContext {
    /// The context of the calls made for `record`, keyed by `idempotency_key` (a tool call
    /// appends its round and index). `payload.task_id` and `payload.delegation_depth` are
    /// read by the rule of [`kafclaw_operators::envelope::wire`]: absent, they are the correlation id and
    /// 0.
    ///
    /// Errors: a [`WireError`] naming the field when either is present but unreadable (a
    /// depth of `2.5` or `true`, a task id that is not a string); the record is not processed
    /// with a context it does not state.
    pub fn for_input(record: &Record, idempotency_key: String) -> Result<Self, WireError> {
        let e = &record.envelope;
        Ok(Self {
            idempotency_key,
            input_id: record.origin.input_id.clone(),
            task_id: wire::string_field(&e.payload, "task_id")?.unwrap_or(&e.correlation_id).to_owned(),
            delegation_depth: wire::delegation_depth(&e.payload)?.unwrap_or(0),
            zone: e.zone.clone(),
            conversation_id: e.correlation_id.clone(),
        })
    }
}

impl From<&str> for CallContext {
    /// A context of nothing but an idempotency key (tests, direct calls).
    fn from(key: &str) -> Self {
        Self { idempotency_key: key.to_owned(), ..Self::default() }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use kafclaw_operators::envelope::{Envelope, EnvelopeType};
    use serde_json::Value;

    fn context(payload: Value) -> Result<CallContext, String> {
        let mut e = Envelope::new(EnvelopeType::Request, "corr", "alice", "1970-01-01T00:00:00Z", payload);
        e.zone = Some("finance".into());
        CallContext::for_input(&Record::detached(e), "k".into()).map_err(|e| e.to_string())
    }

    #[test]
    fn a_call_context_states_the_input_or_is_refused() {
        let cx = context(json!({"task_id": "t-1", "delegation_depth": "3"})).unwrap();
        assert_eq!((cx.task_id.as_str(), cx.delegation_depth, cx.zone.as_deref()), ("t-1", 3, Some("finance")));
        let cx = context(json!({"task_id": "", "delegation_depth": 3.0})).unwrap();
        assert_eq!((cx.task_id.as_str(), cx.delegation_depth), ("corr", 3));
        let cx = context(Value::Null).unwrap();
        assert_eq!((cx.task_id.as_str(), cx.delegation_depth), ("corr", 0));
        assert_eq!(
            context(json!({"delegation_depth": 2.5})).unwrap_err(),
            "`payload.delegation_depth`: expected a whole number ≥ 0, got 2.5"
        );
        for depth in [json!(-1), json!(true), json!(null), json!("abc"), json!(4_294_967_296_u64)] {
            assert!(context(json!({ "delegation_depth": depth })).unwrap_err().contains("payload.delegation_depth"));
        }
        assert!(context(json!({"task_id": 7})).unwrap_err().starts_with("`payload.task_id`: expected a string"));
    }
}
