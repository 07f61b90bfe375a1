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

use crate::envelope::KNOWN_FIELDS;
use crate::record::Record;

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
/// integer a `uint`, and `payload.n % 2` would then fail with no overload.)
pub fn json_to_cel(v: &Value) -> CelValue {
    match v {
        Value::Null => CelValue::Null,
        Value::Bool(b) => CelValue::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => CelValue::Int(i),
            (None, Some(u)) => CelValue::UInt(u),
            _ => CelValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => CelValue::String(Arc::new(s.clone())),
        Value::Array(items) => CelValue::List(Arc::new(items.iter().map(json_to_cel).collect())),
        Value::Object(map) => {
            let m: HashMap<&str, CelValue> = map.iter().map(|(k, v)| (k.as_str(), json_to_cel(v))).collect();
            m.into()
        }
    }
}

impl Expr {
    /// Compiles `source`; every syntax error and every unknown variable is reported.
    pub fn compile(source: &str) -> Result<Self, Vec<ExprError>> {
        if source.trim().is_empty() {
            return Err(vec![ExprError { char_offset: 0, message: "empty expression".into(), hint: None }]);
        }
        // The CEL parser is generated code; treat a panic inside it as a syntax error rather
        // than taking the whole validation down.
        let parsed = std::panic::catch_unwind(|| ENV.compile(source)).map_err(|_| {
            vec![ExprError { char_offset: 0, message: "the CEL parser failed on this expression".into(), hint: None }]
        })?;
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
        let mut errors = Vec::new();
        let mut vars = Vec::new();
        for name in program.references().variables() {
            match variables().find(|v| *v == name) {
                Some(v) => vars.push(v),
                None => errors.push(ExprError {
                    char_offset: find_ident(source, name),
                    message: format!("unknown variable `{name}`"),
                    hint: Some({
                        let all: Vec<&str> = variables().collect();
                        match crate::suggest::did_you_mean(name, &all) {
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
        Ok(Self { program: Arc::new(program), source: source.into(), vars })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    fn bind(&self, ctx: &mut Context<'_, '_>, record: &Record) {
        let env = &record.envelope;
        let opt = |v: &Option<String>| v.clone().map(CelValue::from).unwrap_or(CelValue::Null);
        for var in &self.vars {
            let value: CelValue = match *var {
                "type" => env.kind.as_str().into(),
                "correlation_id" => env.correlation_id.as_str().into(),
                "sender_id" => env.sender_id.as_str().into(),
                "timestamp" => env.timestamp.as_str().into(),
                "payload" => json_to_cel(&env.payload),
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

    fn eval(&self, record: &Record) -> Result<CelValue, String> {
        let mut ctx = Context::with_env(ENV.clone());
        self.bind(&mut ctx, record);
        self.program.execute(&ctx).map_err(|e| format!("`{}`: {e}", self.source))
    }

    /// Evaluates to a boolean; any other result is an error.
    pub fn eval_bool(&self, record: &Record) -> Result<bool, String> {
        match self.eval(record)? {
            CelValue::Bool(b) => Ok(b),
            other => Err(format!("`{}` gave {other:?}, not a bool", self.source)),
        }
    }

    /// Evaluates to a JSON value.
    pub fn eval_json(&self, record: &Record) -> Result<Value, String> {
        let value = self.eval(record)?;
        value.json().map_err(|e| format!("`{}`: result is not JSON: {e}", self.source))
    }
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
        assert_eq!(json_to_cel(&serde_json::json!(12)), CelValue::Int(12));
        assert_eq!(json_to_cel(&serde_json::json!(u64::MAX)), CelValue::UInt(u64::MAX));
        assert_eq!(json_to_cel(&serde_json::json!(1.5)), CelValue::Float(1.5));
    }

    #[test]
    fn empty_is_an_error() {
        assert!(Expr::compile("  ").is_err());
    }
}
