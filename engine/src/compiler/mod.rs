//! The topology compiler: TOML (with spans) → [`spec::Spec`] (as written) → [`Resources`]
//! (linked: [`link`]) → [`graph::LogicalGraph`] (as wired) → [`plan::PhysicalPlan`] (as run).
//! Every stage collects all the problems it finds; nothing stops at the first. Touches no
//! network.

pub mod agent;
pub mod collect;
pub mod diagnostic;
pub mod graph;
pub mod link;
mod node;
pub mod plan;
pub mod registry;
pub mod sections;
pub mod source;
pub mod spec;
mod syntax;
pub mod tests_section;

use std::path::Path;
use std::sync::Arc;

use kafclaw_operators::Envelope;
pub use kafclaw_operators::api::resources::Resources;

pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use graph::LogicalGraph;
pub use plan::PhysicalPlan;
pub use registry::Role;
pub use source::SourceFile;
pub use spec::Spec;

/// A topology that compiled: its spec, graph and plan, and any warnings.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The file.
    pub file: SourceFile,
    /// As written.
    pub spec: Spec,
    /// As wired.
    pub graph: LogicalGraph,
    /// As run.
    pub plan: PhysicalPlan,
    /// What its nodes share: declared models and tools, indexes, the bus slot (the agent
    /// crate's `AgentResources` reads them typed). The plan carries the same.
    pub resources: Arc<Resources>,
    /// Warnings (no errors: those stop compilation).
    pub diagnostics: Diagnostics,
}

/// A topology that did not compile, with every problem found.
#[derive(Debug, Clone)]
pub struct Failed {
    /// The file.
    pub file: SourceFile,
    /// Errors and warnings.
    pub diagnostics: Diagnostics,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.diagnostics.render(&self.file))
    }
}

fn check_tests(spec: &Spec, diags: &mut Diagnostics) {
    let role_of = |name: &str| spec.nodes.iter().find(|n| n.name == name).map(|n| n.role);
    let mut names: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for test in &spec.tests {
        if let Some(first) = names.insert(test.name.get_ref(), test.name.span().start) {
            diags.push(Diagnostic::error(test.name.span(), format!("test `{}` is defined twice", test.name.get_ref())));
            names.insert(test.name.get_ref(), first);
        }
        if test.inputs.is_empty() {
            diags.push(Diagnostic::error(test.name.span(), format!("test `{}` has no inputs", test.name.get_ref())));
        }
        for input in &test.inputs {
            if role_of(input.source.get_ref()) != Some(Role::Source) {
                diags.push(Diagnostic::error(
                    input.source.span(),
                    format!("test input names `{}`, which is not a source", input.source.get_ref()),
                ));
            }
            match (&input.envelope, &input.raw) {
                (Some(env), None) => {
                    if let Err(e) = Envelope::from_json(env.get_ref()) {
                        diags.push(Diagnostic::error(env.span(), format!("test input is not a valid envelope: {e}")));
                    }
                }
                (None, Some(_)) => {}
                _ => diags.push(Diagnostic::error(
                    input.source.span(),
                    "a test input has exactly one of `envelope` or `raw`",
                )),
            }
        }
        for output in &test.outputs {
            if role_of(output.sink.get_ref()) != Some(Role::Sink) {
                diags.push(Diagnostic::error(
                    output.sink.span(),
                    format!("test output names `{}`, which is not a sink", output.sink.get_ref()),
                ));
            }
            if !output.envelope.get_ref().is_object() {
                diags.push(Diagnostic::error(output.envelope.span(), "an expected envelope must be a table"));
            }
        }
    }
}

/// Compiles topology text (the path is only used in diagnostics and for relative paths).
pub fn compile_source(file: SourceFile) -> Result<Compiled, Failed> {
    let mut diags = Diagnostics::default();
    let Some(spec) = spec::parse(&file, &mut diags) else {
        return Err(Failed { file, diagnostics: diags });
    };
    let resources = Arc::new(link::link(&file, &spec, &mut diags));
    check_tests(&spec, &mut diags);
    let graph = graph::build(&file, &spec, &resources, &mut diags);
    match graph {
        Some(graph) if !diags.has_errors() => {
            let t = &spec.topology;
            let plan = plan::plan(
                &graph,
                t.name.get_ref(),
                t.group.as_ref().map(|g| g.get_ref().clone()),
                t.guarantee,
                spec.dead_letter.clone(),
                resources.clone(),
            );
            Ok(Compiled { file, spec, graph, plan, resources, diagnostics: diags })
        }
        _ => Err(Failed { file, diagnostics: diags }),
    }
}

/// Reads and compiles a topology file.
pub fn compile_file(path: &Path) -> Result<Compiled, CompileError> {
    let file = SourceFile::read(path).map_err(|e| CompileError::Read(path.display().to_string(), e))?;
    compile_source(file).map_err(|f| CompileError::Invalid(Box::new(f)))
}

/// Why a topology file did not compile.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The file could not be read.
    #[error("{0}: {1}")]
    Read(String, std::io::Error),
    /// The file has errors.
    #[error("{0}")]
    Invalid(Box<Failed>),
}
