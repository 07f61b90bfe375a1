//! The agent wing's share of a topology's [`Resources`], typed: declared models, declared
//! tools and the bus slot `delegate` tools publish on. The engine's link stage puts them in;
//! `llm`, `embed` and the runtimes take them out. (The map itself is type-erased and lives in
//! `kafclaw-operators`, which cannot name these types.)
//!
//! This module sits on top of the wing, beside [`crate::llm`]: it names the model and the
//! tools, and nothing below it uses it.

use std::sync::Arc;

use kafclaw_operators::api::resources::Resources;

use crate::model::SharedModel;
use crate::tools::Tool;
use crate::tools::delegate::{BUS_SLOT, BusSlot};
use crate::tools::effect::{EFFECT_SLOT, EffectSlot};

/// A `[tools.<name>]` table as linked: its tool, or `None` when the table had errors
/// (reported where they were found). Either way the name is declared, so an operator that
/// lists it is not also told it is missing.
#[derive(Debug)]
pub struct DeclaredTool(pub Option<Arc<dyn Tool>>);

/// Typed accessors for the agent wing's resources.
pub trait AgentResources {
    /// The model declared as `[models.<name>]`.
    fn model(&self, name: &str) -> Option<Arc<SharedModel>>;
    /// Every declared model, by name.
    fn models(&self) -> Vec<Arc<SharedModel>>;
    /// Declares a model (under its own name).
    fn insert_model(&mut self, model: Arc<SharedModel>);
    /// The tool declared as `[tools.<name>]`: `None` when there is no such table, `Some(None)`
    /// when it had errors.
    fn declared_tool(&self, name: &str) -> Option<Option<Arc<dyn Tool>>>;
    /// Declares tool `name`: built, or `None` when its table had errors.
    fn insert_tool(&mut self, name: &str, tool: Option<Arc<dyn Tool>>);
    /// Makes the empty slot `delegate` tools are built with (before the tools are built).
    fn insert_bus_slot(&mut self);
    /// Where a runtime with peers (Kafka) installs the bus `delegate` tools use.
    fn bus(&self) -> Option<Arc<BusSlot>>;
    /// Makes the empty slot of the effect log (before the tools are built).
    fn insert_effect_slot(&mut self);
    /// Where a runtime installs the effect log of `at-most-once` and `reconcile` tools.
    fn effects(&self) -> Option<Arc<EffectSlot>>;
    /// Whether a declared tool logs its calls (its class is `at-most-once` or `reconcile`):
    /// the runtime then starts an effect log.
    fn logs_effects(&self) -> bool;
}

impl AgentResources for Resources {
    fn model(&self, name: &str) -> Option<Arc<SharedModel>> {
        self.get::<SharedModel>(name)
    }

    fn models(&self) -> Vec<Arc<SharedModel>> {
        self.all::<SharedModel>().into_iter().map(|(_, m)| m).collect()
    }

    fn insert_model(&mut self, model: Arc<SharedModel>) {
        self.insert(model.name.clone(), model);
    }

    fn declared_tool(&self, name: &str) -> Option<Option<Arc<dyn Tool>>> {
        self.get::<DeclaredTool>(name).map(|t| t.0.clone())
    }

    fn insert_tool(&mut self, name: &str, tool: Option<Arc<dyn Tool>>) {
        self.insert(name, Arc::new(DeclaredTool(tool)));
    }

    fn insert_bus_slot(&mut self) {
        self.insert(BUS_SLOT, Arc::new(BusSlot::default()));
    }

    fn bus(&self) -> Option<Arc<BusSlot>> {
        self.get::<BusSlot>(BUS_SLOT)
    }

    fn insert_effect_slot(&mut self) {
        self.insert(EFFECT_SLOT, Arc::new(EffectSlot::default()));
    }

    fn effects(&self) -> Option<Arc<EffectSlot>> {
        self.get::<EffectSlot>(EFFECT_SLOT)
    }

    fn logs_effects(&self) -> bool {
        self.all::<DeclaredTool>().iter().any(|(_, t)| t.0.as_ref().is_some_and(|t| t.effect().logged()))
    }
}
