//! A tool whose trust tier the topology sets (`tier = N` on `[tools.<name>]`): every call and
//! property goes to the tool it wraps, only [`Tool::tier`] differs.

use std::sync::Arc;

use serde_json::Value;

use super::{CallContext, CheckedFuture, NamedTools, Tool, ToolFuture};

/// A tool with a configured tier.
#[derive(Debug)]
pub(crate) struct Tiered {
    /// The tool.
    pub(crate) inner: Arc<dyn Tool>,
    /// Its configured tier.
    pub(crate) tier: u8,
}

impl Tool for Tiered {
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
    fn effect(&self) -> super::effect::Effect {
        self.inner.effect()
    }
    fn reconcile(&self, args: Value, cx: CallContext) -> Option<super::effect::ReconcileFuture> {
        self.inner.reconcile(args, cx)
    }
    fn remembers(&self) -> bool {
        self.inner.remembers()
    }
    fn tier(&self) -> u8 {
        self.tier
    }
    fn call(&self, args: Value, cx: CallContext) -> ToolFuture {
        self.inner.call(args, cx)
    }
    fn call_checked(&self, args: Value, cx: CallContext) -> CheckedFuture {
        self.inner.call_checked(args, cx)
    }
    fn open(&self) -> Result<(), String> {
        self.inner.open()
    }
    fn members(&self) -> Option<NamedTools> {
        self.inner.members()
    }
}
