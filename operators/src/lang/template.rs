//! Jinja-style templates (minijinja) over the envelope, compiled once, rendered per record.
//!
//! The context is the envelope's fields (`payload`, `correlation_id`, …) and `meta`, the same
//! names CEL expressions see.
//!
//! Numbers are minijinja numbers, so comparisons and arithmetic go by value (`2.50 == 2.5`,
//! `1e2 == 100`, `-1e400 < 100`): integers up to 128 bits as integers, any other number as
//! its f64 (`1e400` is `inf`, `1e-400` is `0.0`; integers wider than 128 bits are rounded).
//! And `{{ x }}` renders a number as written: while a record renders, a side table maps each
//! number of the record (as minijinja holds it) to its text, and the formatter writes that
//! text for a number value that has one ([`Spelled`]): `2.50`, `1e+400`,
//! `0.1000000000000000055511151231257827` render unchanged. (So does a computed value equal
//! to one of them: `{{ x * 1 }}` of `2.50` renders `2.50`, the same number.) A number
//! rendered inside a list, or turned into a string (`~`, `| string`), is minijinja's.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use minijinja::value::Value as J;
use minijinja::{Environment, ErrorKind};
use serde_json::{Number, Value, json};

use crate::lang::exact::{self, integer_syntax};

use crate::api::record::Record;

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
            env.set_formatter(|out, state, value| match spelling(value)? {
                Some(text) => out.write_str(&text).map_err(|_| minijinja::Error::from(ErrorKind::WriteFailure)),
                None => minijinja::escape_formatter(out, state, value),
            });
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
        let mut table = HashMap::new();
        let ctx = json_to_jinja(&ctx, &mut table);
        let _table = SideTable::set(table);
        // A panic inside minijinja is this record's error, not the task's end: fuzzing found
        // `list * n` overflowing `len * n` for a huge `n` (a panic in a debug build).
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| template.render(ctx)))
            .map_err(|_| "template: the renderer failed on this record".to_owned())?
            .map_err(|e| format!("template: {e}"))
    }
}

/// A number as minijinja holds it: an integer, or an f64 (by its bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Held {
    Int(i128),
    Float(u64),
}

impl Held {
    fn of(value: &J) -> Option<Self> {
        if value.is_integer() {
            i128::try_from(value.clone()).ok().map(Self::Int)
        } else if value.is_number() {
            f64::try_from(value.clone()).ok().map(|f| Self::Float(f.to_bits()))
        } else {
            None
        }
    }
}

/// The texts of a record's numbers that minijinja holds as one [`Held`] number.
#[derive(Debug, Clone)]
enum Spelled {
    /// One text, written for it.
    One(Number),
    /// Several texts of one number (`2.5`, `2.50`): minijinja's text when it is that number,
    /// else the first.
    Alike(Number),
    /// Different numbers (`1e400` and `1e500` are both `inf`): writing it is an error.
    Different(Number, Number),
}

type Table = HashMap<Held, Spelled>;

thread_local! {
    /// The side table of the record rendering on this thread.
    static TABLE: RefCell<Table> = RefCell::new(HashMap::new());
}

/// Installs a render's side table; emptied when dropped (after the render, or a panic).
struct SideTable;

impl SideTable {
    fn set(table: Table) -> Self {
        TABLE.with(|t| *t.borrow_mut() = table);
        Self
    }
}

impl Drop for SideTable {
    fn drop(&mut self) {
        TABLE.with(|t| t.borrow_mut().clear());
    }
}

/// The text `{{ value }}` writes, if `value` is a number the record spells (see the module
/// docs). Errors: the record holds different numbers minijinja holds as this one.
fn spelling(value: &J) -> Result<Option<String>, minijinja::Error> {
    let Some(held) = Held::of(value) else { return Ok(None) };
    match TABLE.with(|t| t.borrow().get(&held).cloned()) {
        None => Ok(None),
        Some(Spelled::One(n)) if n.as_str() == value.to_string() => Ok(None),
        Some(Spelled::One(n)) => Ok(Some(n.as_str().to_owned())),
        Some(Spelled::Alike(n)) => {
            let default = value.to_string();
            let same = default.parse::<Number>().is_ok_and(|d| exact::numbers_equal(&d, &n));
            Ok((!same).then(|| n.as_str().to_owned()))
        }
        Some(Spelled::Different(a, b)) => Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "cannot tell which number to write: the record holds {} and {}, both {value} in a template",
                exact::short(&a),
                exact::short(&b)
            ),
        )),
    }
}

/// A JSON number as minijinja holds it: an integer up to 128 bits, else its f64.
fn jinja_number(text: &str) -> J {
    if integer_syntax(text) && text != "-0" {
        let int = text
            .parse::<i64>()
            .map(J::from)
            .or_else(|_| text.parse::<u64>().map(J::from))
            .or_else(|_| text.parse::<i128>().map(J::from))
            .or_else(|_| text.parse::<u128>().map(J::from));
        if let Ok(v) = int {
            return v;
        }
    }
    // Rust reads any JSON number as an f64: beyond the range as ±inf, below it as ±0.0.
    J::from(text.parse::<f64>().unwrap_or(f64::NAN))
}

/// JSON → minijinja, noting in `table` the text of each number held as an f64 (integers,
/// written plainly, render as written anyway).
fn json_to_jinja(v: &Value, table: &mut Table) -> J {
    match v {
        Value::Null => J::from(()),
        Value::Bool(b) => J::from(*b),
        Value::String(s) => J::from(s.as_str()),
        Value::Number(n) => {
            let value = jinja_number(n.as_str());
            if let Some(held) = Held::of(&value).filter(|_| !value.is_integer()) {
                table
                    .entry(held)
                    .and_modify(|s| {
                        let next = match &*s {
                            Spelled::One(m) | Spelled::Alike(m) if !exact::numbers_equal(m, n) => {
                                Spelled::Different(m.clone(), n.clone())
                            }
                            Spelled::One(m) if m != n => Spelled::Alike(m.clone()),
                            other => other.clone(),
                        };
                        *s = next;
                    })
                    .or_insert_with(|| Spelled::One(n.clone()));
            }
            value
        }
        Value::Array(items) => J::from(items.iter().map(|i| json_to_jinja(i, table)).collect::<Vec<_>>()),
        Value::Object(map) => J::from_iter(map.iter().map(|(k, v)| (k.as_str(), json_to_jinja(v, table)))),
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

    /// Was `numbers_minijinja_holds_compute_and_the_others_refuse`: numbers wider than 128
    /// bits were opaque (compared only with each other, no arithmetic); they are f64s now, so
    /// they compute and order by value, rounded (two 42-digit integers one apart are equal
    /// in a template), and `{{ }}` refuses to write a number two of them round to.
    #[test]
    fn numbers_compute_and_compare_by_value() {
        let r = record(
            r#"{"big": 99999999999999999999, "d": 1.5, "wide": 123456789012345678901234567890123456789012, "wider": 123456789012345678901234567890123456789013}"#,
        );
        let t = |src: &str| Template::compile(src).unwrap().render(&r);
        assert_eq!(t("{{ payload.big + 1 }} {{ payload.d * 2 }}").unwrap(), "100000000000000000000 3.0");
        assert_eq!(t("{{ payload.wide > 1e41 }} {{ payload.wide < 1e42 }}").unwrap(), "True True");
        assert_eq!(t("{{ payload.wide == payload.wide }} {{ payload.wide < payload.wider }}").unwrap(), "True False");
        let e = t("{{ payload.wide }}").unwrap_err();
        assert!(e.contains("cannot tell") && e.contains("123456789012345678901234567890123456789012"), "{e}");
        let alone = record(r#"{"wide": 123456789012345678901234567890123456789012}"#);
        let t = Template::compile("{{ payload.wide }} {{ payload.wide + 0 }}").unwrap();
        assert_eq!(
            t.render(&alone).unwrap(),
            "123456789012345678901234567890123456789012 123456789012345678901234567890123456789012"
        );
    }

    /// Red-team case 8: numbers f64 does not write as written were strings in templates,
    /// so `2.50 > 100` held and `2.50 == 2.5` did not.
    #[test]
    fn comparisons_go_by_value_and_numbers_still_render_as_written() {
        let t = Template::compile(
            "{% if payload.amount > 100 %}big{% else %}small{% endif %} {{ payload.amount == 2.5 }} {{ payload.amount }}",
        )
        .unwrap();
        for (amount, want) in [
            ("2.5", "small True 2.5"),
            ("2.50", "small True 2.50"),
            ("1E2", "small False 1e+2"),
            ("1e-400", "small False 1e-400"),
            ("-1e400", "small False -1e+400"),
            ("1e400", "big False 1e+400"),
            ("0.1000000000000000055511151231257827", "small False 0.1000000000000000055511151231257827"),
            ("99999999999999999999", "big False 99999999999999999999"),
            ("100.000001", "big False 100.000001"),
            ("-0", "small False -0"),
        ] {
            assert_eq!(t.render(&record(&format!(r#"{{"amount": {amount}}}"#))).unwrap(), want, "{amount}");
        }
        let r = record(r#"{"a": 1e2, "b": 100, "c": 2.50, "d": 2.5, "e": 1.0, "f": 1}"#);
        let t = |src: &str| Template::compile(src).unwrap().render(&r).unwrap();
        assert_eq!(t("{{ payload.a == payload.b }} {{ payload.a == 100 }} {{ 1e2 == 100 }}"), "True True True");
        assert_eq!(
            t("{{ payload.c == payload.d }} {{ payload.e == payload.f }} {{ payload.c < payload.a }}"),
            "True True True"
        );
        assert_eq!(t("{{ payload.a + 1 }} {{ payload.c * 2 }} {{ [payload.c, payload.a] | max }}"), "101.0 5.0 1e+2");
        // Two spellings of one number: minijinja's, which is that number.
        assert_eq!(t("{{ payload.c }} {{ payload.d }}"), "2.5 2.5");
        // A record's side table is its own: the next record's numbers render as its own.
        let t = Template::compile("{{ payload.x }}").unwrap();
        assert_eq!(t.render(&record(r#"{"x": 2.50}"#)).unwrap(), "2.50");
        assert_eq!(t.render(&record(r#"{"x": 2.5}"#)).unwrap(), "2.5");
        let e = t.render(&record(r#"{"x": 1e400, "y": 1e500}"#)).unwrap_err();
        assert!(e.contains("cannot tell"), "{e}");
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
