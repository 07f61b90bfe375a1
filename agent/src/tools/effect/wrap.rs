//! [`Effected`]: a tool with its configured effect class, whose `at-most-once` and
//! `reconcile` calls go through the effect log (intent before, result after; a rerun of the
//! step looks the key up first).

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Effect, EffectLog, EffectRecord, EffectSlot, Outcome, Reconciled, input_of};
use crate::tools::{CallContext, CheckedFuture, FatalToolError, NamedTools, Tool, ToolFuture, ToolOutput, ToolResult};
use kafclaw_operators::api::record::now_ms;
use kafclaw_operators::api::secrets::redact_string;

/// How an intent without a result is resolved (`reconcile`).
#[derive(Debug, Clone)]
pub(crate) enum ReconcileBy {
    /// The tool's own action ([`Tool::reconcile`]: an `http` tool's `reconcile_url`).
    Own,
    /// A tool of the same MCP server, by its MCP name, called with `{"idempotency_key": …}`.
    Member(String),
}

/// A tool with its effect class and the topology's effect log.
#[derive(Debug)]
pub struct Effected {
    inner: Arc<dyn Tool>,
    /// The tool's name in the topology (`<name>.<tool>` for an MCP server's), in records.
    name: String,
    effect: Effect,
    reconcile: Option<ReconcileBy>,
    /// For an MCP member with `ReconcileBy::Member`: the member that answers.
    reconciler: Option<Arc<dyn Tool>>,
    slot: Arc<EffectSlot>,
}

impl Effected {
    /// `inner` named `name`, of class `effect`, logging in `slot`'s log.
    pub(crate) fn new(
        inner: Arc<dyn Tool>,
        name: &str,
        effect: Effect,
        reconcile: Option<ReconcileBy>,
        slot: Arc<EffectSlot>,
    ) -> Self {
        Self { inner, name: name.to_owned(), effect, reconcile, reconciler: None, slot }
    }
}

/// Why the call is not made: the log could not answer (the infrastructure's fault).
fn unavailable(tool: &str, key: &str, e: &str) -> FatalToolError {
    FatalToolError(format!(
        "infrastructure: the effect log could not record or look up call `{key}` of tool `{tool}` ({e}); the call was not made"
    ))
}

/// The result the model is handed for an intent whose outcome nobody knows, with its audit.
fn unknown(tool: &str, key: &str, effect: Effect, why: &str) -> ToolResult {
    let text = format!(
        "outcome unknown: tool `{tool}` ({effect}) was called for this step before (idempotency key `{key}`), \
         and the run stopped before its result was recorded{why}; it is not called again"
    );
    let audit = json!({
        "event_type": "tool_outcome_unknown",
        "details": {"tool": tool, "idempotency_key": key, "effect": effect.as_str(), "input": input_of(key), "reason": why.trim_start_matches("; ")},
    });
    Ok(ToolOutput { text, audits: vec![audit], ..ToolOutput::default() })
}

/// The arguments as logged: a configured secret in them redacted (the log is a topic or a
/// file, read by whoever may read those; a result is redacted before it goes anywhere too).
pub(super) fn redacted(args: &Value) -> Value {
    let text = args.to_string();
    let clean = redact_string(text.clone());
    if clean == text { args.clone() } else { serde_json::from_str(&clean).unwrap_or(Value::String(clean)) }
}

/// The result the model is handed for a step whose record names another call (a topology
/// changed between attempts, or a record made without a round record): neither that call's
/// result is handed over nor this call made, and the mismatch is audited.
fn mismatch(tool: &str, key: &str, effect: Effect, logged: &EffectRecord) -> ToolResult {
    let what = if logged.tool == tool {
        format!("tool `{tool}` with other arguments")
    } else {
        format!("tool `{}`", logged.tool)
    };
    let text = format!(
        "outcome unknown: this step (idempotency key `{key}`) was logged for {what} by an earlier run, \
         so tool `{tool}` ({effect}) is not called for it, and that call's result is not handed over"
    );
    let audit = json!({
        "event_type": "tool_step_mismatch",
        "details": {"tool": tool, "logged_tool": logged.tool, "idempotency_key": key, "effect": effect.as_str(),
                    "input": input_of(key), "reason": format!("the step was logged for {what}")},
    });
    Ok(ToolOutput { text, audits: vec![audit], ..ToolOutput::default() })
}

/// A recorded outcome, as the call returned it.
fn replayed(o: Outcome) -> ToolResult {
    if o.ok { Ok(ToolOutput::from(o.text)) } else { Err(o.text) }
}

impl Tool for Effected {
    fn description(&self) -> String {
        self.inner.description()
    }
    fn parameters(&self) -> Value {
        self.inner.parameters()
    }
    fn side_effects(&self) -> bool {
        self.inner.side_effects()
    }
    fn idempotent(&self) -> bool {
        self.inner.idempotent()
    }
    fn effect(&self) -> Effect {
        self.effect
    }
    fn remembers(&self) -> bool {
        self.inner.remembers()
    }
    fn tier(&self) -> u8 {
        self.inner.tier()
    }
    fn open(&self) -> Result<(), String> {
        self.inner.open()
    }
    fn reconcile(&self, args: Value, cx: CallContext) -> Option<super::ReconcileFuture> {
        match (&self.reconcile, &self.reconciler) {
            (Some(ReconcileBy::Own), _) => self.inner.reconcile(args, cx),
            (Some(ReconcileBy::Member(_)), Some(r)) => Some(reconcile_by_tool(r.clone(), cx)),
            _ => None,
        }
    }
    /// An MCP server's tools, each with the server's class; the reconcile tool found among
    /// them.
    fn members(&self) -> Option<NamedTools> {
        let members = self.inner.members()?;
        let reconciler = match &self.reconcile {
            Some(ReconcileBy::Member(m)) => members.iter().find(|(n, _)| n == m).map(|(_, t)| t.clone()),
            _ => None,
        };
        Some(
            members
                .into_iter()
                .map(|(member, tool)| {
                    let wrapped = Effected {
                        inner: tool,
                        name: format!("{}.{member}", self.name),
                        effect: self.effect,
                        reconcile: self.reconcile.clone(),
                        reconciler: reconciler.clone(),
                        slot: self.slot.clone(),
                    };
                    (member, Arc::new(wrapped) as Arc<dyn Tool>)
                })
                .collect(),
        )
    }
    fn call(&self, args: Value, cx: CallContext) -> ToolFuture {
        let checked = self.call_checked(args, cx);
        Box::pin(async move { checked.await.unwrap_or_else(|e| Err(e.0)) })
    }
    fn call_checked(&self, args: Value, cx: CallContext) -> CheckedFuture {
        if !self.effect.logged() {
            return self.inner.call_checked(args, cx);
        }
        // A call that was never valid uses up no step: refused before the log is touched.
        if let Some(why) = invalid_arguments(&self.inner.parameters(), &args) {
            let text = format!(
                "refused: the arguments of tool `{}` do not match its parameters: {why}; nothing was called",
                self.name
            );
            return Box::pin(std::future::ready(Ok(Err(text))));
        }
        let log = self.slot.get();
        let reconcile = match self.effect {
            Effect::Reconcile => self.reconcile(args.clone(), cx.clone()),
            _ => None,
        };
        let (inner, name, effect) = (self.inner.clone(), self.name.clone(), self.effect);
        Box::pin(async move {
            // Fails closed: a class that promises a log is never called without one.
            let Some(log) = log else {
                return Ok(Err(format!(
                    "refused: tool `{name}` is {effect}, and this runtime keeps no effect log to make that good"
                )));
            };
            logged_call(&*log, inner, &name, effect, reconcile, args, cx).await
        })
    }
}

/// Why `args` do not match the tool's parameters `schema` (its JSON Schema), or `None` when
/// they do. A schema that cannot be compiled (an MCP server's, say) checks nothing here: the
/// tool judges its arguments itself.
fn invalid_arguments(schema: &Value, args: &Value) -> Option<String> {
    let validator = jsonschema::validator_for(schema).ok()?;
    let e = validator.validate(args).err()?;
    let at = e.instance_path().to_string();
    Some(if at.is_empty() { e.to_string() } else { format!("at `{at}`: {e}") })
}

/// The protocol of a logged call (see the module): look up, then resolve or log the intent,
/// call, log the result.
async fn logged_call(
    log: &dyn EffectLog,
    inner: Arc<dyn Tool>,
    name: &str,
    effect: Effect,
    reconcile: Option<super::ReconcileFuture>,
    args: Value,
    cx: CallContext,
) -> Result<ToolResult, FatalToolError> {
    let key = cx.idempotency_key.clone();
    // In an `llm` attempt that caught the log up already, what it has read is complete.
    let found = if super::caught_up() { log.lookup_synced(&key) } else { log.lookup(&key) };
    let found = found.await.map_err(|e| unavailable(name, &key, &e))?;
    let logged_args = redacted(&args);
    let intent = match found {
        // Never handed to, nor made for, another call than the one logged.
        Some(other) if other.tool != name || other.arguments != logged_args => {
            return Ok(mismatch(name, &key, effect, &other));
        }
        Some(EffectRecord { outcome: Some(o), .. }) => return Ok(replayed(o)),
        Some(intent) => match (effect, reconcile) {
            (Effect::Reconcile, Some(reconcile)) => match reconcile.await {
                Reconciled::Done(text) => {
                    let outcome = Outcome { ok: true, text: redact_string(text.clone()), at_ms: now_ms() };
                    let record = EffectRecord { outcome: Some(outcome), ..intent };
                    if let Err(e) = log.append(record).await {
                        tracing::warn!(tool = name, key, error = %e, "effect log: the reconciled result was not recorded");
                    }
                    return Ok(Ok(ToolOutput::from(text)));
                }
                // Never happened: made now, under the intent already logged.
                Reconciled::Absent => intent,
                Reconciled::Unknown(why) => return Ok(unknown(name, &key, effect, &format!("; reconciling: {why}"))),
            },
            _ => return Ok(unknown(name, &key, effect, "")),
        },
        None => {
            let intent = EffectRecord {
                key: key.clone(),
                tool: name.to_owned(),
                arguments: logged_args,
                input: input_of(&key).to_owned(),
                at_ms: now_ms(),
                outcome: None,
            };
            log.append(intent.clone()).await.map_err(|e| unavailable(name, &key, &e))?;
            intent
        }
    };
    let result = inner.call_checked(args, cx).await?;
    let outcome = match &result {
        Ok(o) => Outcome { ok: true, text: redact_string(o.text.clone()), at_ms: now_ms() },
        Err(e) => Outcome { ok: false, text: redact_string(e.clone()), at_ms: now_ms() },
    };
    // Not recorded (the log failed after the call): a rerun finds the intent alone and
    // treats the outcome as unknown, which is true.
    if let Err(e) = log.append(EffectRecord { outcome: Some(outcome), ..intent }).await {
        tracing::warn!(tool = name, key, error = %e, "effect log: a result was not recorded");
    }
    Ok(result)
}

/// Reconciles through a tool of the same MCP server: called with `{"idempotency_key": …}`,
/// it answers `{"found": true, "result": …}` (done; the result is handed to the model) or
/// `{"found": false}` (never happened); anything else, or an error, is an unknown outcome.
fn reconcile_by_tool(tool: Arc<dyn Tool>, cx: CallContext) -> super::ReconcileFuture {
    let args = json!({"idempotency_key": cx.idempotency_key});
    Box::pin(async move {
        let answer = match tool.call_checked(args, cx).await {
            Ok(Ok(o)) => o.text,
            Ok(Err(e)) | Err(FatalToolError(e)) => {
                return Reconciled::Unknown(format!("the reconcile tool failed: {e}"));
            }
        };
        match serde_json::from_str::<Value>(&answer) {
            Ok(v) if v["found"] == true => Reconciled::Done(match &v["result"] {
                Value::String(s) => s.clone(),
                Value::Null => answer,
                other => other.to_string(),
            }),
            Ok(v) if v["found"] == false => Reconciled::Absent,
            _ => Reconciled::Unknown(format!(
                "the reconcile tool answered neither {{\"found\": true, …}} nor {{\"found\": false}}: {answer}"
            )),
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::super::MemoryEffectLog;
    use super::*;

    /// A tool with side effects that counts its calls; its reconcile answers as told.
    #[derive(Debug)]
    struct Counting {
        calls: AtomicUsize,
        reconciled: Option<Reconciled>,
    }
    impl Tool for Counting {
        fn description(&self) -> String {
            "counts".into()
        }
        fn parameters(&self) -> Value {
            json!({"type": "object"})
        }
        fn side_effects(&self) -> bool {
            true
        }
        fn call(&self, _: Value, cx: CallContext) -> ToolFuture {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(std::future::ready(Ok(ToolOutput::from(format!("call {n} with {}", cx.idempotency_key)))))
        }
        fn reconcile(&self, _: Value, _: CallContext) -> Option<super::super::ReconcileFuture> {
            self.reconciled.clone().map(|r| Box::pin(std::future::ready(r)) as super::super::ReconcileFuture)
        }
    }

    fn setup(effect: Effect, reconciled: Option<Reconciled>) -> (Arc<Counting>, Effected, Arc<MemoryEffectLog>) {
        let tool = Arc::new(Counting { calls: AtomicUsize::new(0), reconciled });
        let log = Arc::new(MemoryEffectLog::default());
        let slot = Arc::new(EffectSlot::default());
        slot.set(log.clone());
        let by = (effect == Effect::Reconcile).then_some(ReconcileBy::Own);
        (tool.clone(), Effected::new(tool, "pay", effect, by, slot), log)
    }

    /// What a crash between the call and the commit leaves: the intent alone.
    async fn crashed_before(log: &MemoryEffectLog, key: &str) {
        crashed_before_of(log, key, "pay").await;
    }

    async fn crashed_before_of(log: &MemoryEffectLog, key: &str, tool: &str) {
        let intent = EffectRecord {
            key: key.into(),
            tool: tool.into(),
            arguments: json!({}),
            input: input_of(key).into(),
            at_ms: 0,
            outcome: None,
        };
        log.append(intent).await.unwrap();
    }

    #[tokio::test]
    async fn a_rerun_gets_the_recorded_result_without_calling() {
        for effect in [Effect::AtMostOnce, Effect::Reconcile] {
            let (tool, t, _) = setup(effect, Some(Reconciled::Absent));
            let first = t.call(json!({}), "a/l/in/0/5/0/0".into()).await.unwrap();
            let again = t.call(json!({}), "a/l/in/0/5/0/0".into()).await.unwrap();
            assert_eq!((first.text.as_str(), again.text.as_str()), ("call 1 with a/l/in/0/5/0/0", first.text.as_str()));
            assert_eq!(tool.calls.load(Ordering::SeqCst), 1, "{effect}");
            t.call(json!({}), "a/l/in/0/5/0/1".into()).await.unwrap();
            assert_eq!(tool.calls.load(Ordering::SeqCst), 2, "another step is another call");
        }
    }

    #[tokio::test]
    async fn an_intent_without_a_result_is_unknown_for_at_most_once() {
        let (tool, t, log) = setup(Effect::AtMostOnce, None);
        crashed_before(&log, "a/l/in/0/5/1/0").await;
        let r = t.call(json!({}), "a/l/in/0/5/1/0".into()).await.unwrap();
        assert!(r.text.starts_with("outcome unknown: tool `pay` (at-most-once)"), "{}", r.text);
        assert!(r.text.contains("`a/l/in/0/5/1/0`"), "{}", r.text);
        assert_eq!(r.audits[0]["event_type"], "tool_outcome_unknown");
        assert_eq!(r.audits[0]["details"]["input"], "a/l/in/0/5");
        assert_eq!(tool.calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn reconcile_resolves_an_intent_without_a_result() {
        let (tool, t, log) = setup(Effect::Reconcile, Some(Reconciled::Done("paid earlier".into())));
        crashed_before(&log, "k/0/0").await;
        assert_eq!(t.call(json!({}), "k/0/0".into()).await.unwrap().text, "paid earlier");
        assert_eq!(log.lookup("k/0/0").await.unwrap().unwrap().outcome.unwrap().text, "paid earlier", "recorded");
        assert_eq!(tool.calls.load(Ordering::SeqCst), 0);

        let (tool, t, log) = setup(Effect::Reconcile, Some(Reconciled::Absent));
        crashed_before(&log, "k/0/0").await;
        assert_eq!(t.call(json!({}), "k/0/0".into()).await.unwrap().text, "call 1 with k/0/0", "made now");
        assert_eq!(tool.calls.load(Ordering::SeqCst), 1);

        let (tool, t, log) = setup(Effect::Reconcile, Some(Reconciled::Unknown("HTTP 500".into())));
        crashed_before(&log, "k/0/0").await;
        let r = t.call(json!({}), "k/0/0".into()).await.unwrap();
        assert!(r.text.starts_with("outcome unknown") && r.text.contains("reconciling: HTTP 500"), "{}", r.text);
        assert_eq!(r.audits.len(), 1);
        assert_eq!(tool.calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn without_a_log_a_logged_class_is_refused_and_others_call() {
        let tool = Arc::new(Counting { calls: AtomicUsize::new(0), reconciled: None });
        let empty = Arc::new(EffectSlot::default());
        let t = Effected::new(tool.clone(), "pay", Effect::AtMostOnce, None, empty.clone());
        let e = t.call(json!({}), "k".into()).await.unwrap_err();
        assert!(e.contains("keeps no effect log"), "{e}");
        let t = Effected::new(tool.clone(), "pay", Effect::Idempotent, None, empty);
        t.call(json!({}), "k".into()).await.unwrap();
        t.call(json!({}), "k".into()).await.unwrap();
        assert_eq!(tool.calls.load(Ordering::SeqCst), 2, "idempotent calls are made again");
    }

    #[tokio::test]
    async fn arguments_off_the_schema_are_refused_before_the_log() {
        #[derive(Debug)]
        struct Typed(Arc<Counting>);
        impl Tool for Typed {
            fn description(&self) -> String {
                "typed".into()
            }
            fn parameters(&self) -> Value {
                json!({"type": "object", "properties": {"body": {"type": "string"}}, "required": ["url"]})
            }
            fn side_effects(&self) -> bool {
                true
            }
            fn call(&self, args: Value, cx: CallContext) -> ToolFuture {
                self.0.call(args, cx)
            }
        }
        let counting = Arc::new(Counting { calls: AtomicUsize::new(0), reconciled: None });
        let log = Arc::new(MemoryEffectLog::default());
        let slot = Arc::new(EffectSlot::default());
        slot.set(log.clone());
        let t = Effected::new(Arc::new(Typed(counting.clone())), "post", Effect::AtMostOnce, None, slot);
        let e = t.call(json!({"url": "u", "body": {"a": 1}}), "k/0/0".into()).await.unwrap_err();
        assert!(e.contains("do not match its parameters") && e.contains("/body"), "{e}");
        assert!(t.call(json!({}), "k/0/0".into()).await.unwrap_err().contains("url"));
        assert_eq!(counting.calls.load(Ordering::SeqCst), 0);
        assert_eq!(log.lookup("k/0/0").await.unwrap(), None, "the step is not used up");
        let ok = t.call(json!({"url": "u", "body": "{}"}), "k/0/0".into()).await.unwrap();
        assert_eq!(ok.text, "call 1 with k/0/0", "the same step is made once the arguments are right");
    }

    /// An MCP server's status tool, answering as told.
    #[derive(Debug)]
    struct Status(&'static str);
    impl Tool for Status {
        fn description(&self) -> String {
            "status".into()
        }
        fn parameters(&self) -> Value {
            json!({"type": "object"})
        }
        fn side_effects(&self) -> bool {
            false
        }
        fn call(&self, args: Value, _: CallContext) -> ToolFuture {
            let text = self.0.replace("KEY", args["idempotency_key"].as_str().unwrap_or("?"));
            Box::pin(std::future::ready(Ok(ToolOutput::from(text))))
        }
    }

    /// An MCP server standing for `pay` and `status`.
    #[derive(Debug)]
    struct Server(Arc<Counting>, &'static str);
    impl Tool for Server {
        fn description(&self) -> String {
            "server".into()
        }
        fn parameters(&self) -> Value {
            json!({"type": "object"})
        }
        fn side_effects(&self) -> bool {
            true
        }
        fn call(&self, _: Value, _: CallContext) -> ToolFuture {
            Box::pin(std::future::ready(Err("a server".into())))
        }
        fn members(&self) -> Option<NamedTools> {
            Some(vec![("pay".into(), self.0.clone() as Arc<dyn Tool>), ("status".into(), Arc::new(Status(self.1)))])
        }
    }

    #[tokio::test]
    async fn an_mcp_reconcile_tool_is_asked_with_the_key() {
        let cases = [
            (r#"{"found": true, "result": "paid KEY"}"#, "paid k/0/0", 0),
            (r#"{"found": false}"#, "call 1 with k/0/0", 1),
            ("no idea", "outcome unknown", 0),
        ];
        for (answer, expected, calls) in cases {
            let pay = Arc::new(Counting { calls: AtomicUsize::new(0), reconciled: None });
            let log = Arc::new(MemoryEffectLog::default());
            let slot = Arc::new(EffectSlot::default());
            slot.set(log.clone());
            let by = Some(ReconcileBy::Member("status".into()));
            let server = Effected::new(Arc::new(Server(pay.clone(), answer)), "srv", Effect::Reconcile, by, slot);
            let members = server.members().unwrap();
            let (name, tool) = &members[0];
            assert_eq!((name.as_str(), tool.effect()), ("pay", Effect::Reconcile));
            crashed_before_of(&log, "k/0/0", "srv.pay").await;
            let r = tool.call(json!({}), "k/0/0".into()).await.unwrap();
            assert!(r.text.starts_with(expected), "{answer}: {}", r.text);
            assert_eq!(pay.calls.load(Ordering::SeqCst), calls, "{answer}");
        }
    }

    #[tokio::test]
    async fn a_step_logged_for_another_call_is_neither_handed_over_nor_made() {
        for effect in [Effect::AtMostOnce, Effect::Reconcile] {
            let (tool, t, log) = setup(effect, Some(Reconciled::Absent));
            // Another tool's result, and this tool's intent with other arguments.
            let done = Outcome { ok: true, text: "shipped".into(), at_ms: 1 };
            crashed_before_of(&log, "k/0/0", "ship").await;
            let shipped = EffectRecord { outcome: Some(done), ..log.lookup("k/0/0").await.unwrap().unwrap() };
            log.append(shipped).await.unwrap();
            crashed_before(&log, "k/0/1").await;
            let r = t.call(json!({"amount": 3}), "k/0/0".into()).await.unwrap();
            assert!(
                r.text.starts_with("outcome unknown: this step (idempotency key `k/0/0`) was logged for tool `ship`"),
                "{}",
                r.text
            );
            assert!(!r.text.contains("shipped"), "{}", r.text);
            assert_eq!(r.audits[0]["event_type"], "tool_step_mismatch");
            assert_eq!(r.audits[0]["details"]["logged_tool"], "ship");
            let r = t.call(json!({"amount": 3}), "k/0/1".into()).await.unwrap();
            assert!(r.text.contains("was logged for tool `pay` with other arguments"), "{}", r.text);
            assert_eq!(tool.calls.load(Ordering::SeqCst), 0, "{effect}: never made");
            // The same call as logged is still resolved as before.
            let r = t.call(json!({}), "k/0/1".into()).await.unwrap();
            let made = if effect == Effect::Reconcile { 1 } else { 0 };
            assert_eq!(tool.calls.load(Ordering::SeqCst), made, "{effect}: {}", r.text);
        }
    }
}
