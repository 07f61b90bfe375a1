//! Diagnostics: every problem found in a topology, with its place in the file and a hint.

use std::fmt::Write as _;
use std::ops::Range;

use super::source::SourceFile;

/// Where placeholder values stand (far past any file): diagnostics there are dropped
/// ([`Diagnostics::push`]), as they are about values nobody wrote (see
/// [`super::collect::deserialize_partial`]).
pub const PLACEHOLDER: usize = usize::MAX / 4;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The topology cannot run.
    Error,
    /// The topology runs, but probably not as meant.
    Warning,
}

/// One problem, located in the topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Byte offset in the file the problem is at.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// An error at the start of `span`.
    pub fn error(span: Range<usize>, message: impl Into<String>) -> Self {
        Self { severity: Severity::Error, offset: span.start, message: message.into(), hint: None }
    }

    /// A warning at the start of `span`.
    pub fn warning(span: Range<usize>, message: impl Into<String>) -> Self {
        Self { severity: Severity::Warning, offset: span.start, message: message.into(), hint: None }
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a hint when there is one.
    pub fn maybe_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    /// `path:line:col: severity: message`, the source line with a caret, and the hint.
    pub fn render(&self, file: &SourceFile) -> String {
        let (line, col) = file.line_col(self.offset);
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut out = format!("{}:{line}:{col}: {sev}: {}\n", file.path.display(), self.message);
        let text = file.line_text(line);
        let _ = writeln!(out, "  {line:>4} | {text}");
        let _ = writeln!(out, "       | {}^", " ".repeat(col.saturating_sub(1)));
        if let Some(h) = &self.hint {
            let _ = writeln!(out, "       = hint: {h}");
        }
        out
    }
}

/// All diagnostics of one file.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    /// In the order found; [`Diagnostics::sorted`] orders them by place.
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Adds one, unless it is about a placeholder (a value nobody wrote, standing for one
    /// whose error was reported).
    pub fn push(&mut self, d: Diagnostic) {
        if d.offset >= PLACEHOLDER {
            return;
        }
        self.items.push(d);
    }

    /// Whether any is an error.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    /// The number of errors.
    pub fn error_count(&self) -> usize {
        self.items.iter().filter(|d| d.severity == Severity::Error).count()
    }

    /// By place in the file, duplicates removed.
    pub fn sorted(&self) -> Vec<Diagnostic> {
        let mut v = self.items.clone();
        v.sort_by(|a, b| (a.offset, a.severity, &a.message).cmp(&(b.offset, b.severity, &b.message)));
        v.dedup();
        v
    }

    /// Every diagnostic rendered, by place.
    pub fn render(&self, file: &SourceFile) -> String {
        self.sorted().iter().map(|d| d.render(file)).collect::<Vec<_>>().join("")
    }
}
