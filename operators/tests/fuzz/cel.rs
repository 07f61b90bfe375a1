//! Target 3: CEL, compile and evaluate.

use super::harness::*;

// ---------------------------------------------------------------------------------------------
// 3. CEL: compile and evaluate
// ---------------------------------------------------------------------------------------------

/// The expressions of the shipped topologies (and their tests).
pub(crate) const CEL_SEEDS: &[&str] = &[
    r#"type == "request" && has(payload.description) && payload.description != """#,
    "has(payload.priority) && payload.priority >= 4",
    "true",
    r#"type == "memory""#,
    "payload.rate.count <= 3",
    r#"{"sender_id": sender_id, "count": payload.rate.count}"#,
    r#"payload.description.lowerAscii().contains("invoice") || payload.description.lowerAscii().contains("refund")"#,
    r#"payload.description.lowerAscii().startsWith("find")"#,
    "sender_id",
    r#"payload.action == "leave""#,
    r#"type == "skill_request" || type == "request""#,
    r#"{"type": type, "from": sender_id}"#,
    "payload.tags.exists(t, t == 'a') && payload.a.b == 1",
    "size(payload) > 1",
    r#"payload["n"] == 1"#,
    "[1].exists(payload, payload == 1)",
    "meta.offset % 2 == 0 && meta.source != ''",
];

pub(crate) const CEL_LEAVES: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615u",
    "0u",
    "1.5",
    "1e308",
    "-0.0",
    "'abc'",
    "''",
    "'é😀'",
    r#""\u0000""#,
    "b'abc'",
    "true",
    "false",
    "null",
    "[]",
    "{}",
    "payload",
    "payload.n",
    "payload.s",
    "payload.list",
    "payload.map",
    "payload.min",
    "payload.big",
    "payload.fl",
    "payload.missing",
    "payload.description",
    "type",
    "sender_id",
    "timestamp",
    "meta",
    "meta.offset",
    "v",
    "zone",
    "id",
    "x",
    "duration('1s')",
    "timestamp('2026-01-01T00:00:00Z')",
];

pub(crate) const CEL_BINARY: &[&str] = &["+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=", "&&", "||", "in"];

/// Random CEL expression trees from a small grammar: operators, ternaries, `has()`, the
/// macros, the standard and string functions, indexing, literals of every kind.
pub(crate) fn cel_expr() -> impl Strategy<Value = String> {
    let leaf = select(CEL_LEAVES).prop_map(str::to_owned);
    leaf.prop_recursive(5, 48, 3, |inner| {
        let field = select(&["n", "s", "list", "map", "missing", "a", "k"][..]);
        prop_oneof![
            6 => (inner.clone(), select(CEL_BINARY), inner.clone()).prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            1 => inner.clone().prop_map(|a| format!("!{a}")),
            1 => inner.clone().prop_map(|a| format!("-{a}")),
            2 => (inner.clone(), inner.clone(), inner.clone()).prop_map(|(c, a, b)| format!("({c} ? {a} : {b})")),
            2 => (inner.clone(), field.clone()).prop_map(|(a, f)| format!("has({a}.{f})")),
            1 => field.clone().prop_map(|f| format!("has(payload.{f})")),
            2 => (inner.clone(), field).prop_map(|(a, f)| format!("{a}.{f}")),
            2 => (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}[{b}]")),
            3 => (inner.clone(), select(&["exists", "all", "exists_one", "map", "filter"][..]), inner.clone())
                .prop_map(|(a, m, b)| format!("{a}.{m}(x, {b})")),
            1 => (inner.clone(), inner.clone(), inner.clone()).prop_map(|(a, b, c)| format!("{a}.map(x, {b}, {c})")),
            3 => (select(&["size", "string", "int", "uint", "double", "bytes", "type", "dyn", "timestamp", "duration", "bool"][..]), inner.clone())
                .prop_map(|(f, a)| format!("{f}({a})")),
            3 => (
                inner.clone(),
                select(&["contains", "startsWith", "endsWith", "matches", "split", "indexOf", "lastIndexOf", "charAt", "substring", "join"][..]),
                inner.clone(),
            )
                .prop_map(|(a, f, b)| format!("{a}.{f}({b})")),
            1 => (inner.clone(), select(&["lowerAscii", "upperAscii", "trim", "size", "join", "getSeconds", "getFullYear"][..]))
                .prop_map(|(a, f)| format!("{a}.{f}()")),
            1 => (inner.clone(), inner.clone(), inner.clone()).prop_map(|(a, b, c)| format!("{a}.replace({b}, {c})")),
            2 => prop::collection::vec(inner.clone(), 0..4).prop_map(|xs| format!("[{}]", xs.join(", "))),
            1 => prop::collection::vec((inner.clone(), inner), 0..3)
                .prop_map(|kv| format!("{{{}}}", kv.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "))),
        ]
    })
}

/// Deep nesting of one construct (the parser's and evaluator's recursion).
pub(crate) fn cel_deep() -> impl Strategy<Value = String> {
    let n = select(&[10usize, 95, 96, 97, 200, 1000, 10_000, 100_000][..]);
    (select(&["(", "[", "!", "-", "{'a': ", "size(", "[1].map(x, ", "payload.n + "][..]), n).prop_map(|(open, n)| {
        let close = match open {
            "(" | "size(" | "[1].map(x, " => ")",
            "[" => "]",
            "{'a': " => "}",
            _ => "",
        };
        format!("{}1{}", open.repeat(n), close.repeat(n))
    })
}

/// Compiles; when it compiles, evaluates against every record (as a condition and as a
/// value).
pub(crate) fn check_cel(source: &str, records: &[Record]) -> Result<(), String> {
    match Expr::compile(source) {
        Err(errors) => {
            if errors.is_empty() {
                return Err("a failed compile returned no error".into());
            }
            let chars = source.chars().count();
            for e in &errors {
                if e.char_offset > chars {
                    return Err(format!("error offset {} past the end ({chars} chars): {}", e.char_offset, e.message));
                }
            }
        }
        Ok(expr) => {
            for r in records {
                let _ = expr.eval_bool(r);
                if let Ok(v) = expr.eval_json(r) {
                    let _ = serde_json::to_vec(&v).map_err(|e| e.to_string())?;
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
