//! Target 4: templates, compile and render.

use super::harness::*;

// 4. Templates: compile and render
// ---------------------------------------------------------------------------------------------

/// The templates of the shipped topologies (and typical others).
pub(crate) const TEMPLATE_SEEDS: &[&str] = &[
    "{{ payload.description }}",
    "{{ payload.answer }}",
    "rate limited: {{ payload.rate.key }} sent {{ payload.rate.count }} requests in the minute from {{ payload.rate.start }}",
    "unknown sender {{ sender_id }}: not on the roster",
    "No skill in group acme handles: {{ payload.description }}",
    "Escalated P{{ payload.priority }}: {{ payload.description }}",
    "{{ payload.description }}\n\n{% if payload.content %}Context:\n{{ payload.content }}\n{% endif %}",
    "{% for x in payload.list %}{{ loop.index }}: {{ x }}\n{% else %}none{% endfor %}",
    "{{ payload | tojson }} at {{ meta.offset }} from {{ meta.source }}",
];

pub(crate) const TEMPLATE_EXPRS: &[&str] = &[
    "payload.n",
    "payload.s",
    "payload.list",
    "payload.map",
    "payload.min",
    "payload.big",
    "payload.fl",
    "payload.missing",
    "payload.missing.deeper",
    "payload.list[99]",
    "payload.list[-1]",
    "payload.s[::-1]",
    "payload.map.k",
    "payload['n']",
    "payload",
    "sender_id",
    "meta.offset",
    "x",
    "loop.index",
    "0",
    "-1",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "99999999999999999999",
    "1e308",
    "'é😀'",
    "none",
    "true",
    "[1, 2, 3]",
    "{'a': 1}",
    "range(5)",
];

/// Without `*`: a sequence repeated by a huge count is a known hang in minijinja (see
/// docs/fuzzing.md); `*` is generated with small counts only.
pub(crate) const TEMPLATE_BINARY: &[&str] =
    &["+", "-", "/", "//", "%", "**", "~", "==", "!=", "<", ">=", "and", "or", "in", "not in"];

pub(crate) const TEMPLATE_FILTERS: &[&str] = &[
    "length",
    "tojson",
    "upper",
    "lower",
    "title",
    "capitalize",
    "trim",
    "abs",
    "int",
    "float",
    "string",
    "list",
    "first",
    "last",
    "min",
    "max",
    "sum",
    "sort",
    "unique",
    "reverse",
    "items",
    "dictsort",
    "join(',')",
    "default('d')",
    "round(2)",
    "batch(2)",
    "slice(3)",
    "indent(2)",
    "replace('a', 'bb')",
    "attr('k')",
    "map(attribute='k')",
    "select",
    "reject('none')",
    "escape",
    "safe",
    "bool",
    "pprint",
    "urlencode",
    "split",
    "lines",
    "format(1)",
];

/// Template expressions: operators, filters, tests, calls.
pub(crate) fn template_expr() -> impl Strategy<Value = String> {
    select(TEMPLATE_EXPRS).prop_map(str::to_owned).prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            4 => (inner.clone(), select(TEMPLATE_BINARY), inner.clone()).prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            4 => (inner.clone(), select(TEMPLATE_FILTERS)).prop_map(|(a, f)| format!("({a} | {f})")),
            1 => (inner.clone(), select(&["0", "1", "3", "-1", "2.5", "'x'", "none"][..])).prop_map(|(a, n)| format!("({a} * {n})")),
            1 => inner.clone().prop_map(|a| format!("(not {a})")),
            1 => inner.clone().prop_map(|a| format!("(-{a})")),
            1 => (inner.clone(), select(&["defined", "none", "number", "string", "odd", "even", "iterable", "mapping"][..]))
                .prop_map(|(a, t)| format!("({a} is {t})")),
            1 => (inner.clone(), inner.clone(), inner.clone()).prop_map(|(a, c, b)| format!("({a} if {c} else {b})")),
            1 => (inner.clone(), inner).prop_map(|(a, b)| format!("{a}[{b}]")),
        ]
    })
}

/// Template bodies: text, output, `for` (nested, `loop.index`, recursive loops), `if`,
/// `set`, `with`, `filter` blocks, whitespace control, comments, raw blocks, and macros that
/// call themselves.
pub(crate) fn template_body() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        select(&["text", "é😀", "\r\n", "\0", "{{ '{{' }}", "", " "][..]).prop_map(str::to_owned),
        template_expr().prop_map(|e| format!("{{{{ {e} }}}}")),
        template_expr().prop_map(|e| format!("{{{{- {e} -}}}}")),
        Just("{# comment #}".to_owned()),
        Just("{% raw %}{{ not parsed }}{% endraw %}".to_owned()),
    ];
    leaf.prop_recursive(4, 32, 3, |inner| {
        prop_oneof![
            3 => prop::collection::vec(inner.clone(), 1..4).prop_map(|xs| xs.concat()),
            3 => (template_expr(), inner.clone(), inner.clone())
                .prop_map(|(e, a, b)| format!("{{% for x in {e} %}}{a}{{% else %}}{b}{{% endfor %}}")),
            2 => (template_expr(), inner.clone(), inner.clone())
                .prop_map(|(c, a, b)| format!("{{% if {c} %}}{a}{{% else %}}{b}{{% endif %}}")),
            1 => (template_expr(), inner.clone()).prop_map(|(e, a)| format!("{{% set x = {e} %}}{a}")),
            1 => (template_expr(), inner.clone()).prop_map(|(e, a)| format!("{{% with x = {e} %}}{a}{{% endwith %}}")),
            1 => inner.clone().prop_map(|a| format!("{{% filter upper %}}{a}{{% endfilter %}}")),
            1 => inner.prop_map(|a| {
                format!("{{% for x in payload.list recursive %}}{a}{{% if x is iterable and x is not string %}}{{{{ loop(x) }}}}{{% endif %}}{{% endfor %}}")
            }),
        ]
    })
}

/// Self-calling macros (the recursion limit) and deep nesting of syntax.
pub(crate) fn template_deep() -> impl Strategy<Value = String> {
    let n = select(&[10usize, 100, 149, 150, 151, 499, 500, 501, 5000, 100_000][..]);
    prop_oneof![
        n.clone().prop_map(|n| {
            format!("{{% macro m(k) %}}{{% if k > 0 %}}{{{{ m(k - 1) }}}}{{% endif %}}{{% endmacro %}}{{{{ m({n}) }}}}")
        }),
        n.clone().prop_map(|n| "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}".repeat(n.min(3))),
        n.clone().prop_map(|n| format!("{{{{ {}1{} }}}}", "(".repeat(n), ")".repeat(n))),
        n.clone().prop_map(|n| format!("{{{{ {}1{} }}}}", "[".repeat(n), "]".repeat(n))),
        n.clone().prop_map(|n| format!("{{{{ {}1 }}}}", "-".repeat(n))),
        n.clone().prop_map(|n| format!("{{{{ {}true }}}}", "not ".repeat(n))),
        n.clone().prop_map(|n| format!("{{{{ payload{} }}}}", ".a".repeat(n))),
        n.clone().prop_map(|n| format!("{{{{ 1{} }}}}", " | abs".repeat(n))),
        n.clone().prop_map(|n| "{% if true %}".repeat(n) + &"{% endif %}".repeat(n)),
        n.prop_map(|n| "{% for x in [1] %}".repeat(n.min(200)) + "{{ x }}" + &"{% endfor %}".repeat(n.min(200))),
    ]
}

/// Compiles; when it compiles, renders against every record.
pub(crate) fn check_template(source: &str, records: &[Record]) -> Result<(), String> {
    match Template::compile(source) {
        Err(e) => {
            let lines = source.split('\n').count();
            if e.line == 0 || e.line > lines + 1 {
                return Err(format!("error line {} outside the template's {lines} line(s): {}", e.line, e.message));
            }
        }
        Ok(t) => {
            for r in records {
                let _ = t.render(r);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
