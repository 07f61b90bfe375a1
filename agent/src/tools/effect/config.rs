//! The config half of effect classes: `effect`, `reconcile_url` (http) and `reconcile_tool`
//! (mcp) as written in `[tools.<name>]`, checked, and the built tool wrapped in its class.

use std::sync::Arc;

use kafclaw_operators::api::config::ConfigError;
use kafclaw_operators::api::resources::Resources;

use super::wrap::ReconcileBy;
use super::{EFFECT_SLOT, Effect, EffectSlot, Effected};
use crate::tools::{Tool, ToolConfig};

impl ToolConfig {
    /// The kind, as `type = "…"` names it.
    fn kind(&self) -> &'static str {
        match self {
            Self::Shell { .. } => "shell",
            Self::FsRead { .. } => "fs_read",
            Self::FsWrite { .. } => "fs_write",
            Self::Http { .. } => "http",
            Self::Memory { .. } => "memory",
            Self::Delegate { .. } => "delegate",
            Self::Mcp(_) => "mcp",
        }
    }

    /// The class written in the table, and its reconcile action (with the option naming it).
    fn effect_written(&self) -> (Option<Effect>, Option<(ReconcileBy, &'static str)>) {
        match self {
            Self::Shell { effect, .. }
            | Self::FsRead { effect, .. }
            | Self::FsWrite { effect, .. }
            | Self::Memory { effect, .. }
            | Self::Delegate { effect, .. } => (*effect, None),
            Self::Http { effect, reconcile_url, .. } => {
                (*effect, reconcile_url.as_ref().map(|_| (ReconcileBy::Own, "reconcile_url")))
            }
            Self::Mcp(c) => {
                (c.effect, c.reconcile_tool.as_ref().map(|t| (ReconcileBy::Member(t.clone()), "reconcile_tool")))
            }
        }
    }

    /// `tool` (built from this table, named `name`) in its class: the one written, else the
    /// tool's default ([`Tool::effect`]), logging in the topology's effect slot.
    ///
    /// Errors: `effect = "reconcile"` on a tool with no reconcile action configured, or a
    /// reconcile action on a tool of another class, each naming the field.
    pub(crate) fn with_effect(
        &self,
        tool: Arc<dyn Tool>,
        name: &str,
        resources: &Resources,
    ) -> Result<Arc<dyn Tool>, Vec<ConfigError>> {
        let (written, action) = self.effect_written();
        let effect = written.unwrap_or_else(|| tool.effect());
        let kind = self.kind();
        let reconcile = match (effect, action) {
            (Effect::Reconcile, Some((by, _))) => Some(by),
            (Effect::Reconcile, None) => {
                let how = match kind {
                    "http" => "set `reconcile_url` (a status URL with `{idempotency_key}`)",
                    "mcp" => "set `reconcile_tool` (a tool of the same server)",
                    _ => "only `http` (`reconcile_url`) and `mcp` (`reconcile_tool`) tools have one",
                };
                return Err(vec![ConfigError::at(
                    0..0,
                    format!(
                        "tool `{name}`: `effect = \"reconcile\"` needs a reconcile action, and this {kind} tool has none: {how}"
                    ),
                )]);
            }
            (_, Some((_, option))) => {
                return Err(vec![ConfigError::at(
                    0..0,
                    format!(
                        "tool `{name}`: `{option}` is the reconcile action of `effect = \"reconcile\"`, but the tool's effect is `{effect}`"
                    ),
                )]);
            }
            (_, None) => None,
        };
        let slot = resources.get::<EffectSlot>(EFFECT_SLOT).unwrap_or_default();
        Ok(Arc::new(Effected::new(tool, name, effect, reconcile, slot)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(table: &str) -> Result<Arc<dyn Tool>, String> {
        let dir = std::env::temp_dir();
        let c: ToolConfig = toml::from_str(table).map_err(|e| e.to_string())?;
        c.build_at("t", "topo.toml:3", &Resources::new(&dir, "app"))
            .map_err(|es| es.into_iter().map(|e| e.message).collect::<Vec<_>>().join("; "))
    }

    #[test]
    fn each_kind_has_its_default_class_and_takes_an_override() {
        let effect = |t: &str| built(t).unwrap().effect();
        assert_eq!(effect("type = \"fs_read\"\nroot = \".\"\n"), Effect::None);
        assert_eq!(effect("type = \"fs_write\"\nroot = \".\"\n"), Effect::Idempotent);
        assert_eq!(effect("type = \"http\"\nallow_hosts = [\"a.example\"]\n"), Effect::None);
        assert_eq!(effect("type = \"http\"\nallow_hosts = [\"a.example\"]\nmethod = \"POST\"\n"), Effect::Idempotent);
        assert_eq!(
            effect("type = \"shell\"\nallow = [\"echo\"]\nroot = \".\"\nsandbox = \"none\"\n"),
            Effect::AtMostOnce
        );
        assert_eq!(effect("type = \"delegate\"\nrequest_topic = \"a\"\nreply_topic = \"b\"\n"), Effect::Idempotent);
        assert_eq!(
            effect("type = \"http\"\nallow_hosts = [\"a.example\"]\nmethod = \"POST\"\neffect = \"at-most-once\"\n"),
            Effect::AtMostOnce
        );
        assert_eq!(
            effect("type = \"shell\"\nallow = [\"echo\"]\nroot = \".\"\nsandbox = \"none\"\neffect = \"none\"\n"),
            Effect::None
        );
        let e = built("type = \"fs_read\"\nroot = \".\"\neffect = \"once\"\n").unwrap_err();
        assert!(e.contains("unknown variant `once`"), "{e}");
    }

    #[test]
    fn reconcile_needs_an_action_and_an_action_needs_reconcile() {
        let e =
            built("type = \"shell\"\nallow = [\"echo\"]\nroot = \".\"\nsandbox = \"none\"\neffect = \"reconcile\"\n")
                .unwrap_err();
        assert!(e.contains("`effect = \"reconcile\"` needs a reconcile action, and this shell tool has none"), "{e}");
        let e = built("type = \"http\"\nallow_hosts = [\"a.example\"]\nmethod = \"POST\"\neffect = \"reconcile\"\n")
            .unwrap_err();
        assert!(e.contains("set `reconcile_url`"), "{e}");
        let e = built(
            "type = \"http\"\nallow_hosts = [\"a.example\"]\nmethod = \"POST\"\nreconcile_url = \"https://a.example/p/{idempotency_key}\"\n",
        )
        .unwrap_err();
        assert!(e.contains("`reconcile_url` is the reconcile action of `effect = \"reconcile\"`, but the tool's effect is `idempotent`"), "{e}");
        let ok = built(
            "type = \"http\"\nallow_hosts = [\"a.example\"]\nmethod = \"POST\"\neffect = \"reconcile\"\nreconcile_url = \"https://a.example/p/{idempotency_key}\"\n",
        )
        .unwrap();
        assert_eq!(ok.effect(), Effect::Reconcile);
        let e = built(
            "type = \"http\"\nallow_hosts = [\"a.example\"]\neffect = \"reconcile\"\nreconcile_url = \"https://b.example/p/{idempotency_key}\"\n",
        )
        .unwrap_err();
        assert!(e.contains("reconcile_url") && e.contains("not allowed"), "{e}");
        let e = built(
            "type = \"http\"\nallow_hosts = [\"a.example\"]\neffect = \"reconcile\"\nreconcile_url = \"https://a.example/p\"\n",
        )
        .unwrap_err();
        assert!(e.contains("`{idempotency_key}`"), "{e}");
    }
}
