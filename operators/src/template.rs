//! Jinja-style templates (minijinja) over the envelope, compiled once, rendered per record.
//!
//! The context is the envelope's fields (`payload`, `correlation_id`, …) and `meta`, the same
//! names CEL expressions see. Numbers render as written: integers up to 128 bits and decimals
//! minijinja prints alike are numbers; the others (`1e+2`, `1.50`, integers wider than 128 bits,
//! `1e400`) render as their text and refuse arithmetic ([`crate::exact::json_to_jinja`]).

use std::sync::Arc;

use minijinja::Environment;
use serde_json::json;

use crate::record::Record;

/// A syntax error in a template, at a 1-based line inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// 1-based line inside the template.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// A compiled template.
#[derive(Debug, Clone)]
pub struct Template {
    env: Arc<Environment<'static>>,
}

const NAME: &str = "t";

/// The most operators (`.`, `|`, `-`, `+`, `==`, `not`, `and`, …) one tag may hold. minijinja
/// bounds the nesting of brackets and blocks, not chains: `a.a.a…`, `x | f | f…`, `- - -…`
/// and `1 + 1 + …` each make a tree as deep as they are long, which its parser and code
/// generator walk recursively (a few KiB of stack per level in a debug build), so a long
/// chain overflows the stack.
const MAX_TAG_OPERATORS: usize = 256;

/// The stack templates are compiled on: the nesting minijinja allows (150 levels) with chains
/// of [`MAX_TAG_OPERATORS`] inside, whatever the caller's stack.
const COMPILE_STACK: usize = 64 << 20;

/// The 1-based line of a tag (`{{ … }}`, `{% … %}`) with more than [`MAX_TAG_OPERATORS`]
/// operators (string literals skipped), if there is one.
fn tag_with_too_many_operators(source: &str) -> Option<usize> {
    let b = source.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let (mut i, mut count, mut in_tag) = (0, 0, false);
    while i < b.len() {
        let next = b.get(i + 1).copied();
        if !in_tag {
            in_tag = b[i] == b'{' && matches!(next, Some(b'{' | b'%'));
            i += if in_tag { 2 } else { 1 };
            count = 0;
            continue;
        }
        match b[i] {
            b'}' | b'%' if next == Some(b'}') => {
                in_tag = false;
                i += 2;
            }
            quote @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() && b[i] != quote {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'.' | b'|' | b'-' | b'+' | b'*' | b'/' | b'%' | b'~' | b'=' | b'!' | b'<' | b'>' | b'[' | b'(' => {
                count += 1;
                i += 1;
            }
            c if word(c) => {
                let start = i;
                while i < b.len() && word(b[i]) {
                    i += 1;
                }
                if matches!(&b[start..i], b"and" | b"or" | b"not" | b"in" | b"is" | b"if" | b"else") {
                    count += 1;
                }
            }
            _ => i += 1,
        }
        if count > MAX_TAG_OPERATORS {
            return Some(source[..i.min(source.len())].matches('\n').count() + 1);
        }
    }
    None
}

impl Template {
    /// Compiles `source`.
    pub fn compile(source: &str) -> Result<Self, TemplateError> {
        if let Some(line) = tag_with_too_many_operators(source) {
            return Err(TemplateError {
                line,
                message: format!("a tag with more than {MAX_TAG_OPERATORS} operators; split it (`{{% set x = … %}}`)"),
            });
        }
        let compile = || {
            let mut env = Environment::new();
            env.set_keep_trailing_newline(true);
            env.add_template_owned(NAME, source.to_owned()).map_err(|e| TemplateError {
                line: e.line().unwrap_or(1),
                message: e.detail().unwrap_or("syntax error").to_owned(),
            })?;
            Ok(Self { env: Arc::new(env) })
        };
        // A panic of minijinja's parser is an error too: one found by fuzzing is a `u16`
        // column overflow (debug builds) on a syntax error past column 65535.
        let failed = || TemplateError { line: 1, message: "the template parser failed on this template".into() };
        std::thread::scope(|scope| {
            match std::thread::Builder::new()
                .name("kafclaw-template-compile".into())
                .stack_size(COMPILE_STACK)
                .spawn_scoped(scope, compile)
            {
                Ok(handle) => handle.join().unwrap_or_else(|_| Err(failed())),
                // No thread to be had: compile here.
                Err(_) => std::panic::catch_unwind(compile).unwrap_or_else(|_| Err(failed())),
            }
        })
    }

    /// Renders against one record. Errors: minijinja's (an undefined function, arithmetic on
    /// a number it cannot hold, …) as text.
    pub fn render(&self, record: &Record) -> Result<String, String> {
        let mut ctx = record.envelope.to_json();
        let o = &record.origin;
        ctx["meta"] = json!({
            "source": &*o.source,
            "location": &*o.location,
            "partition": o.partition,
            "offset": o.offset,
        });
        let template = self.env.get_template(NAME).map_err(|e| e.to_string())?;
        // Not through serde: a serde_json number keeping its text serialises as a map.
        let ctx = crate::exact::json_to_jinja(&ctx);
        // A panic inside minijinja is this record's error, not the task's end: fuzzing found
        // `list * n` overflowing `len * n` for a huge `n` (a panic in a debug build).
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| template.render(ctx)))
            .map_err(|_| "template: the renderer failed on this record".to_owned())?
            .map_err(|e| format!("template: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Envelope, EnvelopeType};

    fn record(payload: &str) -> Record {
        Record::detached(Envelope::new(
            EnvelopeType::Request,
            "c",
            "s",
            "2026-11-24T00:00:00Z",
            serde_json::from_str::<serde_json::Value>(payload).unwrap(),
        ))
    }

    #[test]
    fn numbers_render_as_written() {
        let numbers = [
            "99999999999999999999",
            "-99999999999999999999",
            "18446744073709551616",
            "1234567890123456789012345",
            "123456789012345678901234567890123456789012",
            "0.1000000000000000055511151231257827",
            "123456789012345678901234567890.123456789",
            "1e+400",
            "1.0",
            "1e+2",
            "-0",
            "0.1",
            "1.50",
        ];
        for n in numbers {
            let r = record(&format!(r#"{{"n": {n}, "list": [{n}], "obj": {{"n": {n}}}}}"#));
            let t = Template::compile("{{ payload.n }} {{ payload.list[0] }} {{ payload.obj.n }}").unwrap();
            assert_eq!(t.render(&r).unwrap(), format!("{n} {n} {n}"), "{n}");
        }
    }

    #[test]
    fn numbers_minijinja_holds_compute_and_the_others_refuse() {
        let r = record(
            r#"{"big": 99999999999999999999, "d": 1.5, "wide": 123456789012345678901234567890123456789012, "wider": 123456789012345678901234567890123456789013}"#,
        );
        let t = |src: &str| Template::compile(src).unwrap().render(&r);
        assert_eq!(t("{{ payload.big + 1 }} {{ payload.d * 2 }}").unwrap(), "100000000000000000000 3.0");
        assert_eq!(t("{{ payload.wide == payload.wide }} {{ payload.wide == payload.wider }}").unwrap(), "True False");
        assert_eq!(t("{{ payload.wide < payload.wider }}").unwrap(), "True");
        assert!(t("{{ payload.wide + 1 }}").is_err());
    }

    /// Found by fuzzing (operators/tests/fuzz/): long chains in one tag (`- - -…`,
    /// `payload.a.a…`, `| abs | abs…`, `1 + 1 + …`) overflowed the stack of minijinja's
    /// parser (recursion it does not bound), a spawned thread's 2 MiB in a debug build.
    #[test]
    fn a_long_chain_in_a_tag_is_an_error_not_a_stack_overflow() {
        for (start, link, n) in [
            ("", "-", 5000),
            ("", "not ", 5000),
            ("payload", ".a", 100_000),
            ("1", " | abs", 10_000),
            ("1", " + 1", 10_000),
        ] {
            let source = format!("text ---- {{{{ {start}{} }}}}", link.repeat(n));
            let err = std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || Template::compile(&source).map(drop).unwrap_err())
                .unwrap()
                .join()
                .unwrap();
            assert!(err.message.contains("operators"), "{err:?}");
        }
        // Dashes in text and in strings are not operators; chains up to the limit are fine.
        let r = record("{}");
        let t = |src: &str| Template::compile(src).unwrap().render(&r).unwrap();
        let dashes = "-".repeat(500);
        assert_eq!(t(&format!("{dashes}{{{{ '{dashes}' | length }}}}")), format!("{dashes}500"));
        assert_eq!(t("{{ - - 1 }} {{ not not true }}"), "1 True");
        assert_eq!(t(&format!("{{{{ 0{} }}}}", " + 1".repeat(256))), "256");
    }

    /// Found by fuzzing: repeating a list by a count near `u64::MAX` overflowed inside
    /// minijinja (a panic in a debug build); it is the record's error now.
    #[test]
    fn repeating_a_list_by_a_huge_count_is_an_error_not_a_panic() {
        let r = record(r#"{"list": [1, 2, 3], "big": 18446744073709551615}"#);
        let t = Template::compile("{{ (payload.list * payload.big) | length }}").unwrap();
        if cfg!(debug_assertions) {
            assert!(t.render(&r).is_err());
        }
    }

    /// Found by fuzzing: a syntax error past column 65535 of a line made minijinja overflow
    /// its `u16` column (a panic in a debug build).
    #[test]
    fn a_syntax_error_on_a_very_long_line_is_an_error() {
        let source = format!("{{{{ '{}' }}}}{{{{ $ }}}}", "x".repeat(70_000));
        assert!(Template::compile(&source).is_err());
    }
}
