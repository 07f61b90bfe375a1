//! CEL expressions over the envelope: compiled once, evaluated per record.
//!
//! The variables are the envelope's top-level fields (`type`, `correlation_id`, `sender_id`,
//! `timestamp`, `payload`, `id`, `v`, `trace_id`, `span_id`, `parent_span_id`,
//! `causation_id`, `zone`) plus `meta` (`source`, `location`, `partition`, `offset`). Only
//! the variables an expression references are bound for it.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use cel::{Context, Env, Program, Value as CelValue};
use serde_json::Value;
use toml::Spanned;

mod check;
mod fast;

use crate::api::config::ConfigError;
use crate::api::record::Record;
use crate::envelope::KNOWN_FIELDS;
use crate::lang::exact::{self, ExactNumber, Held, Spellings};

/// The variables an expression may reference: the envelope's fields and `meta`.
pub fn variables() -> impl Iterator<Item = &'static str> {
    KNOWN_FIELDS.into_iter().chain(["meta"])
}

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // The strings extension (lowerAscii, trim, split, …) is part of every CEL deployment
    // users know (Kubernetes, Envoy); failing to add it is a bug in this build.
    env.add_extension(cel::extensions::strings).expect("CEL strings extension");
    Arc::new(env)
});

/// A problem in an expression's source, at a character offset inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// 0-based character offset inside the expression.
    pub char_offset: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when we know.
    pub hint: Option<String>,
}

/// A compiled CEL expression.
#[derive(Debug, Clone)]
pub struct Expr {
    program: Arc<Program>,
    source: Arc<str>,
    vars: Vec<&'static str>,
    /// The payload fields the expression reads when it only reads `payload.<field>` (the
    /// other fields are not converted for it); `None` when it uses `payload` as a whole.
    payload_fields: Option<Vec<String>>,
    /// The native evaluator's tree, when the expression is within what it knows
    /// ([`fast`]); CEL answers whatever it does not.
    fast: Option<Arc<fast::Node>>,
    /// Whether [`Self::fast`] reads payload fields.
    fast_reads_payload: bool,
}

/// The direct sub-expressions of `expr`.
pub(crate) fn children(expr: &cel::parser::Expression) -> Vec<&cel::parser::Expression> {
    use cel::common::ast::{EntryExpr, Expr as E};
    fn entry(x: &cel::common::ast::IdedEntryExpr) -> Vec<&cel::parser::Expression> {
        match &x.expr {
            EntryExpr::StructField(f) => vec![&f.value],
            EntryExpr::MapEntry(m) => vec![&m.key, &m.value],
        }
    }
    match &expr.expr {
        E::Comprehension(c) => vec![&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result],
        E::Select(s) => vec![&s.operand],
        E::Call(c) => c.target.as_deref().into_iter().chain(&c.args).collect(),
        E::List(l) => l.elements.iter().collect(),
        E::Map(m) => m.entries.iter().flat_map(entry).collect(),
        E::Struct(s) => s.entries.iter().flat_map(entry).collect(),
        E::Ident(_) | E::Literal(_) | E::Unspecified => Vec::new(),
    }
}

/// The variables macros (`exists`, `all`, `map`, `filter`, …) bind inside `expr`.
fn macro_variables<'e>(expr: &'e cel::parser::Expression, out: &mut Vec<&'e str>) {
    if let cel::common::ast::Expr::Comprehension(c) = &expr.expr {
        out.extend([c.iter_var.as_str(), c.accu_var.as_str()]);
        out.extend(c.iter_var2.as_deref());
    }
    for c in children(expr) {
        macro_variables(c, out);
    }
}

/// The top-level payload fields `expr` selects, or `None` if it uses `payload` any other
/// way (indexed, passed to a function, compared whole, or shadowed by a macro variable).
fn payload_fields(expr: &cel::parser::Expression) -> Option<Vec<String>> {
    use cel::common::ast::Expr as E;
    fn walk(e: &cel::parser::Expression, out: &mut Vec<String>) -> bool {
        match &e.expr {
            E::Select(s) if matches!(&s.operand.expr, E::Ident(name) if name == "payload") => {
                out.push(s.field.clone());
                true
            }
            E::Ident(name) => name != "payload",
            E::Comprehension(c)
                if c.iter_var == "payload" || c.accu_var == "payload" || c.iter_var2.as_deref() == Some("payload") =>
            {
                false
            }
            _ => children(e).into_iter().all(|c| walk(c, out)),
        }
    }
    let mut out = Vec::new();
    walk(expr, &mut out).then(|| {
        out.sort_unstable();
        out.dedup();
        out
    })
}

fn char_offset_of(source: &str, line: isize, col: isize) -> usize {
    // CEL positions are 1-based (line, column in characters).
    let line = line.max(1) as usize;
    let col = col.max(1) as usize;
    let mut offset = 0;
    for (i, text) in source.split('\n').enumerate() {
        if i + 1 == line {
            return offset + (col - 1).min(text.chars().count());
        }
        offset += text.chars().count() + 1;
    }
    source.chars().count()
}

/// Finds the first whole-word occurrence of `ident` (for pointing at an unknown variable).
fn find_ident(source: &str, ident: &str) -> usize {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut search = 0;
    while let Some(found) = source[search..].find(ident) {
        let start = search + found;
        let end = start + ident.len();
        let before_ok = source[..start].chars().next_back().is_none_or(|c| !is_word(c) && c != '.');
        let after_ok = source[end..].chars().next().is_none_or(|c| !is_word(c));
        if before_ok && after_ok {
            return source[..start].chars().count();
        }
        search = end;
    }
    0
}

/// JSON → CEL the way users of JSON expect: integers are `int` (`uint` only above
/// `i64::MAX`), other numbers `double`. (A serde conversion would make every non-negative
/// integer a `uint`, and `payload.n % 2` would then fail with no overload.) Numbers no CEL
/// type holds exactly are opaque or spelled (see [`crate::lang::exact`]); `notes` collects what
/// [`cel_to_json`] needs to write them back as they came.
pub fn json_to_cel(v: &Value, notes: &mut Spellings) -> CelValue {
    match v {
        Value::Null => CelValue::Null,
        Value::Bool(b) => CelValue::Bool(*b),
        Value::Number(n) => {
            let held = exact::classify(n);
            notes.note(n, held);
            match held {
                Held::Int(i) => CelValue::Int(i),
                Held::UInt(u) => CelValue::UInt(u),
                Held::Float(f) | Held::Spelled(f) => CelValue::Float(f),
                Held::Exact => CelValue::Opaque(Arc::new(ExactNumber(n.clone()))),
            }
        }
        Value::String(s) => CelValue::String(Arc::new(s.clone())),
        Value::Array(items) => CelValue::List(Arc::new(items.iter().map(|i| json_to_cel(i, notes)).collect())),
        Value::Object(map) => {
            let m: HashMap<&str, CelValue> = map.iter().map(|(k, v)| (k.as_str(), json_to_cel(v, notes))).collect();
            m.into()
        }
    }
}

/// CEL → JSON: a `double` is written with the spelling of the input number it equals (see
/// [`Spellings::number`]), an opaque number as it came; map keys in sorted order (CEL maps
/// have none, and outputs must not depend on hashing). Errors: a `double` that is infinite
/// or NaN, or a value JSON has no form for (a function).
pub fn cel_to_json(v: &CelValue, notes: &Spellings) -> Result<Value, String> {
    Ok(match v {
        CelValue::Float(f) => Value::Number(notes.number(*f)?),
        CelValue::List(items) => Value::Array(items.iter().map(|i| cel_to_json(i, notes)).collect::<Result<_, _>>()?),
        CelValue::Map(m) => {
            let mut entries: Vec<(String, &CelValue)> = m.map.iter().map(|(k, v)| (k.to_string(), v)).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut out = serde_json::Map::with_capacity(entries.len());
            for (k, v) in entries {
                out.insert(k, cel_to_json(v, notes)?);
            }
            Value::Object(out)
        }
        CelValue::Opaque(o) => match o.downcast_ref::<ExactNumber>() {
            Some(n) => Value::Number(n.0.clone()),
            None => v.json().map_err(|e| e.to_string())?,
        },
        other => other.json().map_err(|e| e.to_string())?,
    })
}

/// The longest expression compiled, in characters. The parser recurses once per operator of a
/// chain (`a + b + …`), so the length bounds its stack.
const MAX_SOURCE_CHARS: usize = 32 * 1024;

/// The deepest expression tree compiled. Evaluation recurses once per level on the thread of
/// the task that evaluates (2 MiB by default), where a chain of 90 `+` overflows in a debug
/// build; real expressions stay far below.
pub const MAX_DEPTH: usize = 48;

/// The parser's stack: the generated ANTLR parser uses a lot of it per level of nesting
/// (`((…))` 60 deep overflows 8 MiB in a debug build; the parser allows 96).
const PARSE_STACK: usize = 64 << 20;

/// The depth of an expression tree (without recursion: the tree may be deep).
fn tree_depth(expr: &cel::parser::Expression) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(expr, 1)];
    while let Some((e, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        stack.extend(children(e).into_iter().map(|c| (c, depth + 1)));
    }
    deepest
}

/// Parses `source` on a thread with a stack big enough for the deepest nesting the parser
/// allows, and refuses trees too deep to evaluate on a task's stack.
fn parse(source: &str) -> Result<Program, Vec<ExprError>> {
    let error = |message: String| vec![ExprError { char_offset: 0, message, hint: None }];
    let chars = source.chars().count();
    if chars > MAX_SOURCE_CHARS {
        return Err(error(format!(
            "the expression is {chars} characters long; at most {MAX_SOURCE_CHARS} are allowed"
        )));
    }
    let parse = || -> Result<Program, Vec<ExprError>> {
        // The CEL parser is generated code; treat a panic inside it as a syntax error rather
        // than taking the whole validation down.
        let parsed = std::panic::catch_unwind(|| ENV.compile(source))
            .map_err(|_| error("the CEL parser failed on this expression".into()))?;
        let program = parsed.map_err(|errs| {
            errs.errors
                .iter()
                .map(|e| {
                    let msg = e.msg.trim_start_matches("Syntax error: ");
                    // ANTLR lists every token it would accept; keep the message short and put
                    // the list in the hint.
                    let (message, hint) = match msg.split_once(" expecting ") {
                        Some((m, expected)) => (format!("CEL syntax: {m}"), Some(format!("expected {expected}"))),
                        None => (format!("CEL syntax: {msg}"), None),
                    };
                    ExprError { char_offset: char_offset_of(source, e.pos.0, e.pos.1), message, hint }
                })
                .collect::<Vec<_>>()
        })?;
        let depth = tree_depth(program.expression());
        if depth > MAX_DEPTH {
            // Dropped here, on the big stack: dropping a deep tree recurses too.
            return Err(error(format!(
                "the expression nests {depth} levels deep; at most {MAX_DEPTH} are allowed (split it, or use `in [...]` for long alternatives)"
            )));
        }
        Ok(program)
    };
    std::thread::scope(|scope| {
        match std::thread::Builder::new()
            .name("kafclaw-cel-parse".into())
            .stack_size(PARSE_STACK)
            .spawn_scoped(scope, parse)
        {
            Ok(handle) => {
                handle.join().unwrap_or_else(|_| Err(error("the CEL parser failed on this expression".into())))
            }
            // No thread to be had: parse here.
            Err(_) => parse(),
        }
    })
}

impl Expr {
    /// Compiles `source`; every syntax error and every unknown variable is reported.
    pub fn compile(source: &str) -> Result<Self, Vec<ExprError>> {
        if source.trim().is_empty() {
            return Err(vec![ExprError { char_offset: 0, message: "empty expression".into(), hint: None }]);
        }
        let program = parse(source)?;
        let mut errors = check::regex_errors(source, program.expression());
        let mut vars = Vec::new();
        let mut bound = Vec::new();
        macro_variables(program.expression(), &mut bound);
        for name in program.references().variables() {
            match variables().find(|v| *v == name) {
                // A macro's own variable (`exists(t, …)`) is not one of ours.
                None if bound.contains(&name) => {}
                Some(v) => vars.push(v),
                None => errors.push(ExprError {
                    char_offset: find_ident(source, name),
                    message: format!("unknown variable `{name}`"),
                    hint: Some({
                        let all: Vec<&str> = variables().collect();
                        match crate::lang::suggest::did_you_mean(name, &all) {
                            Some(c) => format!("did you mean `{c}`? variables: {}", all.join(", ")),
                            None => format!("variables: {}", all.join(", ")),
                        }
                    }),
                }),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        vars.sort_unstable();
        vars.dedup();
        let payload_fields = payload_fields(program.expression());
        let fast = payload_fields.as_deref().and_then(|f| fast::Node::compile(program.expression(), f));
        let fast_reads_payload = fast.as_ref().is_some_and(fast::Node::reads_payload);
        Ok(Self {
            program: Arc::new(program),
            source: source.into(),
            vars,
            payload_fields,
            fast: fast.map(Arc::new),
            fast_reads_payload,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    fn bind(&self, ctx: &mut Context<'_, '_>, record: &Record, notes: &mut Spellings) {
        let env = &record.envelope;
        let opt = |v: &Option<String>| v.clone().map(CelValue::from).unwrap_or(CelValue::Null);
        for var in &self.vars {
            let value: CelValue = match *var {
                "type" => env.kind.as_str().into(),
                "correlation_id" => env.correlation_id.as_str().into(),
                "sender_id" => env.sender_id.as_str().into(),
                "timestamp" => env.timestamp.as_str().into(),
                "payload" => match &self.payload_fields {
                    // Only the fields read are converted (from the payload's text when it is
                    // untouched); an absent one stays absent, so `has()` and missing-field
                    // errors are as with the whole payload.
                    Some(fields) if env.payload.is_json_object() => {
                        env.payload.fields(fields, |v| json_to_cel(v, notes)).into()
                    }
                    _ => json_to_cel(&env.payload, notes),
                },
                "id" => opt(&env.id),
                "v" => env.v.map(|v| CelValue::Int(i64::from(v))).unwrap_or(CelValue::Null),
                "trace_id" => opt(&env.trace_id),
                "span_id" => opt(&env.span_id),
                "parent_span_id" => opt(&env.parent_span_id),
                "causation_id" => opt(&env.causation_id),
                "zone" => opt(&env.zone),
                "meta" => {
                    let o = &record.origin;
                    let mut m: HashMap<&str, CelValue> = HashMap::with_capacity(4);
                    m.insert("source", (*o.source).into());
                    m.insert("location", (*o.location).into());
                    m.insert("partition", CelValue::Int(i64::from(o.partition)));
                    m.insert("offset", CelValue::Int(o.offset));
                    m.into()
                }
                other => unreachable!("variable `{other}` is checked at compile time"),
            };
            ctx.add_variable_from_value(*var, value);
        }
    }

    /// Evaluates; the spellings of the numbers bound come back with the value. A failure
    /// on a record holding a number CEL cannot compute with says so.
    fn eval(&self, record: &Record) -> Result<(CelValue, Spellings), String> {
        let mut ctx = Context::with_env(ENV.clone());
        let mut notes = Spellings::default();
        self.bind(&mut ctx, record, &mut notes);
        match self.program.execute(&ctx) {
            Ok(v) => Ok((v, notes)),
            Err(e) => Err(match notes.exact() {
                None => format!("`{}`: {e}", self.source),
                Some(n) => format!(
                    "`{}`: {e} (the input holds {}, beyond what CEL's int, uint and double hold \
                     exactly: it can be passed on unchanged or compared with ==, not computed with)",
                    self.source,
                    exact::short(n)
                ),
            }),
        }
    }

    /// The native evaluator's answer, `None` when CEL is to answer.
    fn fast_bool(&self, record: &Record) -> Option<bool> {
        let node = self.fast.as_deref()?;
        let fields = match (&self.payload_fields, self.fast_reads_payload) {
            (Some(names), true) => fast::read_fields(record, names)?,
            _ => Vec::new(),
        };
        match node.eval(record, &fields)? {
            fast::Val::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// Evaluates to a boolean; any other result is an error.
    pub fn eval_bool(&self, record: &Record) -> Result<bool, String> {
        if let Some(b) = self.fast_bool(record) {
            return Ok(b);
        }
        match self.eval(record)?.0 {
            CelValue::Bool(b) => Ok(b),
            other => Err(format!("`{}` gave {other:?}, not a bool", self.source)),
        }
    }

    /// Evaluates to a JSON value; input numbers handed back unchanged keep their text (see
    /// [`cel_to_json`] for what is refused).
    pub fn eval_json(&self, record: &Record) -> Result<Value, String> {
        let (value, notes) = self.eval(record)?;
        cel_to_json(&value, &notes).map_err(|e| format!("`{}`: result is not JSON: {e}", self.source))
    }
}

/// Compiles a CEL expression held in a config value, turning its errors into config errors.
pub fn compile_expr(value: &Spanned<String>) -> Result<Expr, Vec<ConfigError>> {
    Expr::compile(value.get_ref()).map_err(|errs| {
        errs.into_iter()
            .map(|e| ConfigError::inside(value.span(), e.char_offset, e.message).with_hint(e.hint))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_inside_the_expression() {
        let errs = Expr::compile("a == && b").unwrap_err();
        assert_eq!(errs[0].char_offset, 5);
        let errs = Expr::compile("type == 1 &&\n  payloa.x").unwrap_err();
        assert_eq!(errs[0].message, "unknown variable `payloa`");
        assert_eq!(errs[0].char_offset, 15);
        assert!(errs[0].hint.as_deref().unwrap().contains("`payload`"));
    }

    #[test]
    fn json_numbers_are_ints_unless_they_cannot_be() {
        let cel = |v| json_to_cel(&v, &mut Spellings::default());
        assert_eq!(cel(serde_json::json!(12)), CelValue::Int(12));
        assert_eq!(cel(serde_json::json!(u64::MAX)), CelValue::UInt(u64::MAX));
        assert_eq!(cel(serde_json::json!(1.5)), CelValue::Float(1.5));
    }

    #[test]
    fn only_selected_payload_fields_are_converted_unless_payload_is_used_whole() {
        let fields = |src: &str| Expr::compile(src).unwrap().payload_fields;
        assert_eq!(fields("payload.n % 2 == 0 && has(payload.x)"), Some(vec!["n".into(), "x".into()]));
        assert_eq!(
            fields("payload.tags.exists(t, t == 'a') && payload.a.b == 1"),
            Some(vec!["a".into(), "tags".into()])
        );
        assert_eq!(fields(r#"type == "request""#), Some(vec![]));
        assert_eq!(fields("size(payload) > 1"), None);
        assert_eq!(fields(r#"payload["n"] == 1"#), None);
        assert_eq!(fields("[1].exists(payload, payload == 1)"), None);
        assert_eq!(fields("payload == {}"), None);
    }

    #[test]
    fn a_projected_payload_evaluates_as_the_whole_one() {
        let record = Record::detached(crate::Envelope::new(
            crate::EnvelopeType::Request,
            "c",
            "s",
            "2026-11-24T00:00:00Z",
            serde_json::json!({"n": 4, "tags": ["a"], "nested": {"b": 1}, "other": "x"}),
        ));
        for (src, want) in [
            ("payload.n % 2 == 0", Ok(true)),
            ("has(payload.missing)", Ok(false)),
            ("has(payload.n) && payload.nested.b == 1", Ok(true)),
            ("'a' in payload.tags", Ok(true)),
            ("size(payload) == 4", Ok(true)),
        ] {
            assert_eq!(Expr::compile(src).unwrap().eval_bool(&record), want, "{src}");
        }
        let err = Expr::compile("payload.missing == 1").unwrap().eval_bool(&record).unwrap_err();
        assert!(err.contains("missing"), "{err}");
    }

    /// Found by fuzzing (operators/tests/fuzz/): `((…1))` 20 deep overflowed a 2 MiB
    /// stack in the parser (debug build), and a chain of 90 `+` overflowed it when evaluated.
    #[test]
    fn deep_expressions_are_errors_not_stack_overflows() {
        let record = Record::detached(crate::Envelope::new(
            crate::EnvelopeType::Request,
            "c",
            "s",
            "2026-11-24T00:00:00Z",
            serde_json::json!({"n": 1}),
        ));
        let run = |src: String| {
            let record = record.clone();
            std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || Expr::compile(&src).map(|e| e.eval_json(&record)))
                .unwrap()
                .join()
                .unwrap()
        };
        for (open, close) in [("(", ")"), ("[", "]"), ("size(", ")"), ("[1].map(x, ", ")")] {
            for n in [20, 60, 96, 1000, 100_000] {
                // Compiles or not, evaluates or not: it returns.
                let _ = run(format!("{}1{}", open.repeat(n), close.repeat(n)));
            }
        }
        assert_eq!(run(format!("{}1{}", "(".repeat(60), ")".repeat(60))).unwrap(), Ok(serde_json::json!(1)));
        let err = run(format!("1{}", " + payload.n".repeat(1000))).unwrap_err();
        assert!(err[0].message.contains("levels deep"), "{err:?}");
        let err = run("1 + ".repeat(20_000) + "1").unwrap_err();
        assert!(err[0].message.contains("characters long"), "{err:?}");
        assert_eq!(run(format!("0{}", " + 1".repeat(40))).unwrap(), Ok(serde_json::json!(40)));
    }

    #[test]
    fn empty_is_an_error() {
        assert!(Expr::compile("  ").is_err());
    }
}
