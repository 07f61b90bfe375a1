//! Records into and out of each operator (Kafka Streams' per-processor-node counts).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::compiler::PhysicalPlan;
use crate::compiler::registry::Role;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperatorLabel {
    operator: String,
}

/// The families `kafclaw_operator_records_in_total` and `…_out_total`.
#[derive(Debug, Default)]
pub struct OperatorFamilies {
    records_in: Family<OperatorLabel, Counter>,
    records_out: Family<OperatorLabel, Counter>,
}

impl OperatorFamilies {
    /// The counters of every operator of `plan`, by plan index, for its tasks to count with.
    pub fn counters(&self, plan: &PhysicalPlan) -> Arc<OperatorCounters> {
        let nodes = plan
            .nodes
            .iter()
            .map(|n| {
                (n.role == Role::Operator).then(|| {
                    let label = OperatorLabel { operator: n.name.to_string() };
                    (self.records_in.get_or_create_owned(&label), self.records_out.get_or_create_owned(&label))
                })
            })
            .collect();
        Arc::new(OperatorCounters { nodes })
    }

    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register("kafclaw_operator_records_in", "Records into an operator", self.records_in.clone());
        registry.register(
            "kafclaw_operator_records_out",
            "Records an operator forwarded downstream (emitted to a connected port)",
            self.records_out.clone(),
        );
    }
}

/// Per plan node: the operator's (in, out) counters; `None` for sources and sinks.
#[derive(Debug)]
pub struct OperatorCounters {
    nodes: Vec<Option<(Counter, Counter)>>,
}

impl OperatorCounters {
    /// A record entered the operator at plan index `node`.
    pub fn record_in(&self, node: usize) {
        if let Some(Some((c, _))) = self.nodes.get(node) {
            c.inc();
        }
    }

    /// The operator at plan index `node` forwarded `n` records downstream.
    pub fn records_out(&self, node: usize, n: usize) {
        if let Some(Some((_, c))) = self.nodes.get(node) {
            c.inc_by(n as u64);
        }
    }
}
