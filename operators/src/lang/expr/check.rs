//! Checks of a compiled CEL expression that the parser does not make: the constant regular
//! expressions given to `matches` are compiled (with the `regex` crate, as CEL does at run
//! time), so an invalid one is an error when the topology is validated, not a dead letter
//! for every record.

use cel::common::ast::{Expr as E, LiteralValue};
use cel::parser::Expression;

use super::{ExprError, children};

/// Where in `source` (in characters) the string literal holding `pattern` is written: the
/// first literal spelling it (any quote, raw or not) after the `from`-th character, else the
/// `matches` it is given to.
fn locate(source: &str, pattern: &str, from: usize) -> usize {
    let start = source.char_indices().nth(from).map_or(source.len(), |(i, _)| i);
    let rest = &source[start..];
    let found = ["\"", "'", "r\"", "r'", "R\"", "R'"]
        .iter()
        .filter_map(|q| {
            let close = q.trim_start_matches(['r', 'R']);
            rest.find(&format!("{q}{pattern}{close}"))
        })
        .min()
        .or_else(|| rest.find("matches"));
    found.map_or(from, |i| from + rest[..i].chars().count())
}

/// The errors of the constant patterns `matches` is given in `expr` (written as `source`).
pub fn regex_errors(source: &str, expr: &Expression) -> Vec<ExprError> {
    let mut errors = Vec::new();
    let mut stack = vec![expr];
    let mut calls = Vec::new();
    while let Some(e) = stack.pop() {
        if let E::Call(c) = &e.expr
            && c.func_name == "matches"
            && let Some(pattern) = c.args.last()
            && let E::Literal(LiteralValue::String(s)) = &pattern.expr
        {
            calls.push(s.inner().to_owned());
        }
        stack.extend(children(e));
    }
    for pattern in calls {
        if let Err(e) = regex::Regex::new(&pattern) {
            let at = locate(source, &pattern, 0);
            let detail = e.to_string();
            let reason = detail.lines().rev().find(|l| l.starts_with("error: ")).map_or(detail.as_str(), |l| &l[7..]);
            errors.push(ExprError {
                char_offset: at,
                message: format!("`{pattern}` is not a valid regular expression: {reason}"),
                hint: Some(
                    "`matches` takes RE2 syntax (the Rust `regex` crate); escape a literal `(` as `\\\\(`".into(),
                ),
            });
        }
    }
    errors
}
