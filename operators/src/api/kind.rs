//! The config half's contract: [`Kind`], implemented by every node kind's config struct
//! (`FilterConfig`, `KafkaSourceConfig`, the agent crate's `LlmConfig`, …). The engine's
//! registry keeps the closed list of kinds (`NodeConfig`, `KINDS`) and routes each question
//! through this trait with one macro, as RisingWave routes its `NodeBody` through
//! `ExecutorBuilder` (`src/stream/src/from_proto/mod.rs`).
//!
//! What a config half is asked, in the compiler's order:
//!
//! 1. [`Kind::provides`]: what it shares with the other nodes (link stage);
//! 2. [`Kind::lint`]: warnings about how it is wired (link stage);
//! 3. [`Kind::check`] and [`Kind::ports`]: its option errors and outputs (graph stage);
//! 4. [`Kind::tables`]: its state tables, known without building it (changelogs, journals);
//! 5. [`Kind::build`] and [`Kind::source_stage`]: its runtime half, once per task.

use std::collections::BTreeSet;

use crate::api::asynchronous::AsyncOperator;
use crate::api::config::ConfigError;
use crate::api::operator::{Cause, Ports, SyncOperator};
use crate::api::record::Record;
use crate::api::resources::Resources;
use crate::api::state::{StateAccess, TableSpec};

/// A node's runtime half.
pub enum Built {
    /// An operator of the synchronous tier, fused into its task.
    Sync(Box<dyn SyncOperator>),
    /// An operator of the asynchronous tier.
    Async(Box<dyn AsyncOperator>),
    /// A source or a sink: opened by the runtime (local files, standard streams, Kafka), not
    /// built here.
    Edge,
}

impl std::fmt::Debug for Built {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sync(_) => "Sync",
            Self::Async(_) => "Async",
            Self::Edge => "Edge",
        })
    }
}

/// What a source runs on each record it reads before the record enters its operators (the
/// Kafka source's `dedup`).
pub trait SourceStage: Send {
    /// Whether `record` goes on (`false`: dropped, counted as a duplicate).
    fn admit(&mut self, record: &Record, state: &mut dyn StateAccess) -> Result<bool, Cause>;
}

/// What [`Kind::lint`] may look at besides the node's own options.
#[derive(Debug, Clone, Copy)]
pub struct LintContext<'a> {
    /// Every named output some node reads, as `<node>.<port>`.
    pub consumed: &'a BTreeSet<String>,
    /// Whether the topology runs exactly-once (a crash may then repeat the calls of a
    /// transaction that did not commit).
    pub exactly_once: bool,
    /// The topology's shared resources.
    pub resources: &'a Resources,
}

impl LintContext<'_> {
    /// Whether some node reads output `port` of `node`.
    pub fn reads(&self, node: &str, port: &str) -> bool {
        self.consumed.contains(&format!("{node}.{port}"))
    }
}

/// The config half of a node kind: the options as written, and everything the compiler and
/// the runtime ask of them. `node` is always the node's name (tables are named after it).
pub trait Kind {
    /// The node's outputs. Default: one default output; sinks have none.
    fn ports(&self) -> Ports {
        Ports::single()
    }

    /// The state tables of node `node`, known without building it (their changelogs and
    /// journals are made before any task runs). The runtime half uses the same specs.
    fn tables(&self, node: &str) -> Vec<TableSpec> {
        let _ = node;
        Vec::new()
    }

    /// What node `node` offers the others (an index, a set), put in `resources` before any
    /// node is checked or built.
    fn provides(&self, node: &str, resources: &mut Resources) {
        let _ = (node, resources);
    }

    /// Every option error of node `node`, whose inputs are the nodes `inputs`: expressions,
    /// templates, durations, topic names, resources it names that are not there ("model `x`
    /// is not declared"). Pure: no network, no files. Default: the errors of
    /// [`build`](Kind::build).
    fn check(&self, node: &str, inputs: &[&str], resources: &Resources) -> Vec<ConfigError> {
        let _ = inputs;
        self.build(node, resources).err().unwrap_or_default()
    }

    /// Warnings about node `node`: options that are valid but probably not what was meant
    /// (a tool's memories that no node reads, …).
    fn lint(&self, node: &str, cx: &LintContext<'_>) -> Vec<ConfigError> {
        let _ = (node, cx);
        Vec::new()
    }

    /// Builds the runtime half of node `node` with the topology's shared `resources`.
    fn build(&self, node: &str, resources: &Resources) -> Result<Built, Vec<ConfigError>>;

    /// The stage source `node` runs on each record before its operators, if any.
    fn source_stage(&self, node: &str) -> Result<Option<Box<dyn SourceStage>>, Vec<ConfigError>> {
        let _ = node;
        Ok(None)
    }
}

/// The outputs of a sink: none.
pub fn no_ports() -> Ports {
    Ports { default: false, named: Vec::new() }
}
