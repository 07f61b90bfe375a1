//! [`LogicalGraph`] → [`PhysicalPlan`]: nodes in topological order, the downstream nodes of
//! every output port, and sub-topologies (connected components). The runtime runs one task
//! per (sub-topology, input partition); the synchronous operators of a task are fused: a
//! record goes from source to sinks by plain calls, without queues.

use std::sync::Arc;

use kafclaw_operators::Ports;
use kafclaw_operators::api::resources::Resources;

use super::graph::LogicalGraph;
use super::registry::{NodeConfig, Role};
use super::sections::{DeadLetterSection, Guarantee};

/// One node of the plan.
#[derive(Debug, Clone)]
pub struct PlanNode {
    /// Node name.
    pub name: Arc<str>,
    /// Section it was declared in.
    pub role: Role,
    /// Its `type`.
    pub kind: &'static str,
    /// Its options.
    pub config: Arc<NodeConfig>,
    /// Its outputs.
    pub ports: Ports,
    /// For each output port, the plan indexes of the nodes it feeds.
    pub downstream: Vec<Vec<usize>>,
}

/// Nodes connected to each other; they share tasks (and must be co-partitioned on Kafka).
#[derive(Debug, Clone)]
pub struct SubTopology {
    /// Position in [`PhysicalPlan::subtopologies`].
    pub id: usize,
    /// Its sources (plan indexes).
    pub sources: Vec<usize>,
    /// All its nodes, in topological order (plan indexes).
    pub nodes: Vec<usize>,
}

/// What the runtime executes.
#[derive(Debug, Clone)]
pub struct PhysicalPlan {
    /// Application id.
    pub name: String,
    /// Agent group.
    pub group: Option<String>,
    /// Delivery guarantee.
    pub guarantee: Guarantee,
    /// Nodes in topological order.
    pub nodes: Vec<PlanNode>,
    /// Connected components.
    pub subtopologies: Vec<SubTopology>,
    /// Where dead letters go.
    pub dead_letter: DeadLetterSection,
    /// What the nodes share (see [`super::link`]): the tasks build their operators with it.
    pub resources: Arc<Resources>,
}

impl PhysicalPlan {
    /// Whether sub-topology `sub` reads a global Kafka source (it then runs on every instance,
    /// over every partition, into memory).
    pub fn is_global(&self, sub: usize) -> bool {
        self.subtopologies[sub]
            .sources
            .iter()
            .any(|&s| matches!(&*self.nodes[s].config, NodeConfig::KafkaSource(c) if c.global))
    }

    /// The sub-topology of node `node`.
    pub fn sub_of(&self, node: usize) -> usize {
        self.subtopologies.iter().position(|s| s.nodes.contains(&node)).unwrap_or(0)
    }

    /// Index of a node by name.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| &*n.name == name)
    }
}

/// A node's config as planned into topology `topology`: a schedule learns its topic.
fn bind(mut config: NodeConfig, topology: &str, node: &str) -> NodeConfig {
    if let NodeConfig::Schedule(c) = &mut config {
        c.bind(topology, node);
    }
    config
}

/// Plans a validated graph.
pub fn plan(
    graph: &LogicalGraph,
    name: &str,
    group: Option<String>,
    guarantee: Guarantee,
    dead_letter: DeadLetterSection,
    resources: Arc<Resources>,
) -> PhysicalPlan {
    let n = graph.nodes.len();
    // Kahn's algorithm, ties broken by file order so plans are stable.
    let mut indegree = vec![0usize; n];
    for e in &graph.edges {
        indegree[e.to] += 1;
    }
    let mut order = Vec::with_capacity(n);
    let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    while let Some(v) = (!ready.is_empty()).then(|| ready.remove(0)) {
        order.push(v);
        for e in graph.edges.iter().filter(|e| e.from == v) {
            indegree[e.to] -= 1;
            if indegree[e.to] == 0 {
                let pos = ready.partition_point(|&r| r < e.to);
                ready.insert(pos, e.to);
            }
        }
    }
    let mut position = vec![0; n];
    for (p, &v) in order.iter().enumerate() {
        position[v] = p;
    }
    let nodes: Vec<PlanNode> = order
        .iter()
        .map(|&v| {
            let spec = &graph.nodes[v];
            let ports = graph.ports[v].clone().expect("a planned graph has every node's ports");
            let mut downstream = vec![Vec::new(); ports.count()];
            for e in graph.edges.iter().filter(|e| e.from == v) {
                downstream[e.port].push(position[e.to]);
            }
            PlanNode {
                name: spec.name.as_str().into(),
                role: spec.role,
                kind: spec.kind.expect("a planned graph has every node's type"),
                config: Arc::new(bind(spec.config().clone(), name, &spec.name)),
                ports,
                downstream,
            }
        })
        .collect();

    // Connected components over undirected edges (union-find).
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], x: usize) -> usize {
        let mut r = x;
        while p[r] != r {
            r = p[r];
        }
        p[x] = r;
        r
    }
    for e in &graph.edges {
        let (a, b) = (find(&mut parent, position[e.from]), find(&mut parent, position[e.to]));
        if a != b {
            parent[a.max(b)] = a.min(b);
        }
    }
    let mut subtopologies: Vec<SubTopology> = Vec::new();
    let mut root_of: Vec<Option<usize>> = vec![None; n];
    for (i, node) in nodes.iter().enumerate() {
        let root = find(&mut parent, i);
        let id = *root_of[root].get_or_insert_with(|| {
            subtopologies.push(SubTopology { id: subtopologies.len(), sources: Vec::new(), nodes: Vec::new() });
            subtopologies.len() - 1
        });
        subtopologies[id].nodes.push(i);
        if node.role == Role::Source {
            subtopologies[id].sources.push(i);
        }
    }
    PhysicalPlan { name: name.to_owned(), group, guarantee, nodes, subtopologies, dead_letter, resources }
}
