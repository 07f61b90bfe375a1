//! [`Spec`] → [`Resources`]: the link stage. What the nodes of a topology share is made once
//! here, from the spec as written:
//!
//! 1. the declared models (`[models]` → `SharedModel`, a `recorded` file resolved against the
//!    topology's folder);
//! 2. what each node offers the others
//!    ([`NodeConfig::provides`](super::registry::NodeConfig::provides): a `memory-index`'s
//!    vector index, an `admissions` set);
//! 3. the slots where a runtime installs the bus `delegate` tools publish on (one with peers)
//!    and the effect log of `at-most-once` and `reconcile` tools (docs/effects.md);
//! 4. the declared tools (`[tools]` → `Tool`), built with all of the above.
//!
//! Then each node's warnings ([`NodeConfig::lint`](super::registry::NodeConfig::lint)). Like
//! every stage, it reports all it finds and touches no network; the resources are handed to
//! every node's `check` and `build`.

use std::collections::BTreeSet;
use std::path::Path;

use kafclaw_agent::model::SharedModel;
use kafclaw_agent::resources::AgentResources;
use kafclaw_operators::api::kind::LintContext;
use kafclaw_operators::api::resources::Resources;

use super::diagnostic::{Diagnostic, Diagnostics};
use super::sections::Guarantee;
use super::source::SourceFile;
use super::spec::Spec;

/// Makes the resources of `spec` (whose file is `file`), reporting the errors of models and
/// tools and every node's warnings in `diags`.
pub fn link(file: &SourceFile, spec: &Spec, diags: &mut Diagnostics) -> Resources {
    let t = &spec.topology;
    let topology = if t.is_stand_in() { "kafclaw" } else { t.name.get_ref().as_str() };
    let mut resources = Resources::new(file.base_dir(), topology);
    link_models(spec, &mut resources, diags);
    for node in &spec.nodes {
        if let Some(config) = &node.config {
            config.provides(&node.name, &mut resources);
        }
    }
    resources.insert_bus_slot();
    resources.insert_effect_slot();
    kafclaw_agent::tools::approval::insert_slot(&mut resources);
    link_tools(file, spec, &mut resources, diags);
    lint(spec, &resources, diags);
    resources
}

/// Declares every model whose options could be read, reporting the errors of its options.
fn link_models(spec: &Spec, resources: &mut Resources, diags: &mut Diagnostics) {
    for (name, config) in &spec.models {
        let mut config = config.clone();
        // A recording is named relative to the topology file.
        if let Some(r) = &mut config.recorded
            && Path::new(r.as_str()).is_relative()
        {
            *r = resources.base_dir().join(&*r).display().to_string();
        }
        for e in config.check() {
            diags.push(Diagnostic::error(e.span, e.message).maybe_hint(e.hint));
        }
        resources.insert_model(SharedModel::new(name, config));
    }
}

/// Builds every declared tool. One whose options have errors (reported; those without a
/// place point at its name) is declared all the same, without a tool.
fn link_tools(file: &SourceFile, spec: &Spec, resources: &mut Resources, diags: &mut Diagnostics) {
    for (name, tool) in &spec.tools {
        let (line, _) = file.line_col(tool.name_span.start);
        let site = format!("{}:{line}", file.path.display());
        let built = match tool.config.as_ref().map(|c| c.build_at(name, &site, resources)) {
            Some(Ok(built)) => Some(built),
            Some(Err(errors)) => {
                for e in errors {
                    let span = if e.span == (0..0) { tool.name_span.clone() } else { e.span };
                    diags.push(Diagnostic::error(span, e.message));
                }
                None
            }
            None => None,
        };
        resources.insert_tool(name, built);
    }
}

/// Every node's warnings.
fn lint(spec: &Spec, resources: &Resources, diags: &mut Diagnostics) {
    let consumed: BTreeSet<String> = spec
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter().filter_map(|i| Some(format!("{}.{}", i.node, i.port.as_ref()?))))
        .collect();
    let t = &spec.topology;
    // A `[topology]` with errors (reported) states no guarantee.
    let exactly_once = !t.is_stand_in() && t.guarantee == Guarantee::ExactlyOnce;
    let cx = LintContext { consumed: &consumed, exactly_once, resources };
    for node in &spec.nodes {
        let Some(config) = &node.config else { continue };
        for w in config.lint(&node.name, &cx) {
            diags.push(Diagnostic::warning(w.span, w.message).maybe_hint(w.hint));
        }
    }
}
