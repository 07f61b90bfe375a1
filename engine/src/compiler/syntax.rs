//! TOML syntax errors, reported with the rest of the file's problems: one per mistake.

use toml::de::Error;

use super::diagnostic::{Diagnostic, Diagnostics};
use super::source::SourceFile;

/// Reports the errors of a recoverable parse. A table defined twice is one error at its
/// second header (not one more per key it repeats).
pub fn report(file: &SourceFile, errors: Vec<Error>, diags: &mut Diagnostics) {
    // The lines of table headers already reported as defined twice.
    let mut repeated_headers: Vec<usize> = Vec::new();
    for e in errors {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim().to_owned();
        if message.starts_with("duplicate key") {
            let (line, _) = file.line_col(span.start);
            let text = file.line_text(line).trim_start();
            if text.starts_with('[') {
                repeated_headers.push(line);
                let name = text.trim_start_matches('[').split(']').next().unwrap_or("").trim();
                diags.push(Diagnostic::error(span, format!("table `[{name}]` is defined twice")));
                continue;
            }
            // A key of a table whose header was reported: the same mistake.
            if let Some(&header) = repeated_headers.last()
                && (header..line).all(|l| !file.line_text(l + 1).trim_start().starts_with('['))
            {
                continue;
            }
            let key = file.text.get(span.clone()).unwrap_or("").trim();
            diags.push(Diagnostic::error(span, format!("key `{key}` is defined twice")));
            continue;
        }
        diags.push(Diagnostic::error(span, format!("TOML syntax: {message}")));
    }
}
