//! The red-team cases: every mistake reported once, with no cascades, whatever else is wrong
//! in the file (syntax errors, nodes with other errors, broken tools, bad expectations).

use std::process::Command;

use super::expect;

#[test]
fn missed_expressions_are_checked_beside_other_errors() {
    let err = expect(
        r#"[topology]
name = "x"
group = "acme"

[sources.in]
type = "stdin"

[operators.d]
type = "dedupe"
inputs = ["in"]
by = 'payload.k +'

[operators.w]
type = "window"
inputs = ["in"]
by = 'payload.k +'

[operators.a]
type = "aggregate"
inputs = ["in"]
by = 'sender_id'
value = 'payload.v +'
functions = ["median"]

[operators.l]
type = "llm"
inputs = ["in"]
prompt = "{{ payload.x "

[operators.m]
type = "map"
inputs = ["in"]
set = { "payload.a" = 1 }
render = { "payload.b" = "{{ oops " }

[sinks.s]
type = "stdout"
inputs = ["d", "w", "a", "l", "m"]
"#,
        &[
            (8, 12, "missing field `within`"),
            (11, 18, "CEL syntax"),
            (13, 12, "missing field `size`"),
            (16, 18, "CEL syntax"),
            (22, 21, "CEL syntax"),
            (23, 14, "unknown variant `median`"),
            (25, 12, "missing field `model`"),
            (28, 10, "template line 1"),
            (33, 23, "invalid type: integer `1`"),
            (34, 27, "template:"),
        ],
    );
    let _ = err;
}

#[test]
fn agent_role_and_heartbeat_both_reported() {
    let err = expect(
        r#"[topology]
name = "x"
group = "acme"

[agent]
role = "boss"
heartbeat = "often"

[sources.in]
type = "stdin"

[operators.j]
type = "filter"
inputs = ["in"]
where = 'payload.k +'
oops = 1

[sinks.k]
type = "stdout"
inputs = ["j"]
"#,
        &[
            (6, 8, "unknown agent role `boss`"),
            (7, 13, "`often` is not a duration"),
            (15, 21, "CEL syntax"),
            (16, 1, "unknown field `oops`"),
        ],
    );
    let _ = err;
}

#[test]
fn a_broken_tool_is_reported_once_at_its_value() {
    let err = expect(
        r#"[topology]
name = "x"
group = "acme"

[tools.t]
type = "shell"
allow = "ls"

[models.m]
base_url = "http://x"
model = "m"

[sources.in]
type = "stdin"

[operators.j]
type = "join"
inputs = ["in", "in2"]
table = "in2"
key = 'payload.k +'

[sources.in2]
type = "stdin"

[operators.f]
type = "filter"
inputs = ["in"]
where = 'payload.k +'
tll = "5s"

[operators.c]
type = "count"
inputs = ["in"]
by = 'payload.k +'
ttl = "5 parsecs"

[operators.l]
type = "llm"
inputs = ["in"]
model = "m"
tools = ["t"]

[sinks.k]
type = "stdout"
inputs = ["j", "f", "c", "l"]
"#,
        &[
            (7, 9, r#"invalid type: string "ls", expected a sequence"#),
            (16, 12, "missing field `into`"),
            (20, 19, "CEL syntax"),
            (28, 21, "CEL syntax"),
            (29, 1, "unknown field `tll`"),
            (34, 18, "CEL syntax"),
            (35, 7, "`5 parsecs` is not a duration"),
        ],
    );
    assert!(!err.contains("is not declared"), "{err}");
    let _ = err;
}

#[test]
fn syntax_errors_do_not_hide_the_rest() {
    let err = expect(
        r#"[topology]
name = "x"
group = "acme"
partitons = 3

[sources.in]
type = "stdin"

[operators.f]
type = "filter"
inputs = ["in"]
where = 'true' oops

[operators.g]
type = "filtr"
inputs = ["f"]

[sinks.out]
type = "stdout"
inputs = ["g", "ghost"]
"#,
        &[
            (4, 1, "unknown field `partitons`"),
            (12, 16, "TOML syntax"),
            (15, 8, "unknown operator type `filtr`"),
            (20, 16, "input `ghost` names no node"),
        ],
    );
    let _ = err;
}

#[test]
fn duplicate_keys_and_tables_are_one_error_each() {
    let err = expect(
        r#"[topology]
name = "x"
group = "acme"
name = "y"

[sources.in]
type = "stdin"

[sources.in]
type = "stdin"

[operators.g]
type = "filtr"
inputs = ["in"]

[sinks.out]
type = "stdout"
inputs = ["g", "ghost"]
"#,
        &[
            (4, 1, "key `name` is defined twice"),
            (9, 10, "table `[sources.in]` is defined twice"),
            (13, 8, "unknown operator type `filtr`"),
            (18, 16, "input `ghost` names no node"),
        ],
    );
    let _ = err;
}

#[test]
fn a_deep_expression_is_one_plain_error() {
    let err = expect(
        r#"[topology]
name = "x"
group = "acme"
[sources.in]
type = "stdin"
[operators.f]
type = "filter"
inputs = ["in"]
where = '((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((true))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))'
[sinks.out]
type = "stdout"
inputs = ["f"]
"#,
        &[(9, 106, "CEL syntax: the expression nests too deeply")],
    );
    assert!(!err.contains("ConditionalAndContextAll") && !err.contains("OtherError"), "{err}");
    let _ = err;
}

#[test]
fn bad_characters_are_one_error_per_expression() {
    let err = expect(
        r#"[topology]
name = "x"
group="a"
[sources.in]
type="stdin"
[operators.f]
type="filter"
inputs=["in"]
where = "ééé == )"
[sinks.o]
type="stdout"
inputs=["f"]
"#,
        &[(9, 10, "CEL syntax: token recognition error at: 'é'")],
    );
    assert!(!err.contains("ConditionalAndContextAll") && !err.contains("OtherError"), "{err}");
    let _ = err;
}

#[test]
fn a_carriage_return_alone_is_a_line_break() {
    let err = expect(
        "[topology]\rname = \"x\"\rgroup = \"acme\"\rbogus = 1\r\r[sources.in]\rtype = \"stdin\"\r\r[sinks.out]\rtype = \"stdout\"\rinputs = [\"in\"]\r",
        &[(4, 1, "unknown field `bogus`")],
    );
    let _ = err;
}

#[test]
fn an_invalid_constant_regex_is_reported() {
    let err = expect(
        r#"[topology]
name = "re"
group = "acme"
[sources.in]
type = "stdin"
[operators.f]
type = "filter"
inputs = ["in"]
where = 'payload.a.matches("(")'
[sinks.out]
type = "stdout"
inputs = ["f"]
"#,
        &[(9, 28, "`(` is not a valid regular expression: unclosed group")],
    );
    let _ = err;
}

#[test]
fn expectations_are_checked_and_test_names_unique() {
    let err = expect(
        r#"[topology]
name = "tt"
group = "acme"
[sources.in]
type = "stdin"
[sinks.out]
type = "stdout"
inputs = ["in"]
[[tests]]
name = "a"
inputs = [ { source = "in", envelope = { type = "request", correlation_id = "t", sender_id = "s", timestamp = "2026-11-01T09:00:00Z", payload = {} } } ]
outputs = [ { sink = "out", envelope = { type = "requets", zone = 5, timestamp = "yesterday" } } ]

[[tests]]
name = "a"
inputs = [ { source = "in", envelope = { type = "request", correlation_id = "t", sender_id = "s", timestamp = "2026-11-01T09:00:00Z", payload = {} } } ]
outputs = [ { sink = "out", envelope = { type = "request" } } ]

"#,
        &[
            (12, 49, "unknown envelope type `requets`"),
            (12, 67, "the expected envelope can never match: field `zone`"),
            (12, 82, "the expected envelope can never match: field `timestamp`"),
            (15, 8, "test `a` is defined twice"),
        ],
    );
    assert!(err.contains("did you mean `request`?"), "{err}");
    let _ = err;
}

#[test]
fn a_string_of_inputs_is_one_error_and_read_as_a_list() {
    expect(
        r#"[topology]
name = "x"

[sources.in]
type = "stdin"

[operators.g]
type = "filter"
inputs = ["in"]
where = 'true'

[sinks.out]
type = "stdout"
inputs = "g"
"#,
        &[(14, 10, "`inputs` must be a list of node names")],
    );
}

#[test]
fn the_red_team_cascade_file_has_one_error_per_mistake() {
    let err = expect(
        r#"[topology]
name = "bad name!"
group = "acme"

[sources.in]
type = "stdin"

[operators.a]
type = "filter"
inputs = ["b"]
where = 'true'

[operators.b]
type = "filter"
inputs = ["a"]
where = 'true'

[operators.r]
type = "route"
inputs = ["in"]
routes = [{ name = "x", when = 'true' }, { name = "x", when = 'false' }]

[operators.in]
type = "filter"
inputs = ["r.x"]
where = 'true'

[operators.g]
type = "guard"
inputs = ["r.unmatchd"]
agent = "me"
max_delegation_depth = "two"
admitted = "a"

[operators.l]
type = "llm"
inputs = ["r.x"]
model = "nope"
tools = ["hammer"]

[operators.dd]
type = "dedupe"
inputs = ["r.x"]
within = "5 parsecs"

[sinks.out]
type = "stdout"
inputs = "g"

[sinks.out3]
type = "stdout"
inputs = ["l", "dd", "a"]

[dead_letter]
type = "stdrr"

[[tests]]
name = "t"
inputs = [ { source = "nosuch", envelope = { type = "request" } } ]
outputs = [ { sink = "nosink", envelope = { type = "bogus-type" } } ]
"#,
        &[
            (2, 8, "`bad name!` is not a valid topology name"),
            (10, 10, "cycle in `inputs`: a → b → a"),
            (21, 51, "route `x` is defined twice"),
            (23, 12, "`in` is already defined (line 5)"),
            (30, 11, "`r` has no output named `unmatchd`"),
            (32, 24, "invalid type: string \"two\", expected u32"),
            (33, 12, "`a` is not an admissions operator"),
            (38, 9, "model `nope` is not declared"),
            (39, 10, "tool `hammer` is not declared"),
            (44, 10, "`5 parsecs` is not a duration"),
            (48, 10, "`inputs` must be a list of node names"),
            (55, 8, "unknown variant `stdrr`"),
            (59, 23, "test input names `nosuch`"),
            (59, 44, "test input is not a valid envelope"),
            (60, 22, "test output names `nosink`"),
            (60, 52, "unknown envelope type `bogus-type`"),
        ],
    );
    assert!(!err.contains("is not used") && !err.contains("fed by nothing"), "{err}");
}

#[test]
fn a_section_typo_is_read_as_the_section() {
    let err = expect(
        "[topologyy]\nname = \"x\"\n[sources.in]\ntype = \"stdin\"\n[sinks.out]\ntype = \"stdout\"\ninputs = [\"in\"]\n",
        &[(1, 2, "unknown section `topologyy`")],
    );
    assert!(err.contains("did you mean `topology`?") && !err.contains("missing `[topology]`"), "{err}");
}

/// The red-team's fragment: the typo, plus the two sections it really lacks.
#[test]
fn a_section_typo_alone() {
    expect(
        "\u{feff}[topologyy]\nname = \"x\"\n",
        &[
            (1, 1, "the topology has no sink"),
            (1, 1, "the topology has no source"),
            (1, 2, "unknown section `topologyy`"),
        ],
    );
}

#[test]
fn a_missing_field_inside_a_node_with_other_errors_hides_nothing() {
    expect(
        r#"[topology]
name = "x"
[sources.in]
type = "stdin"
[operators.c]
type = "count"
inputs = ["in"]
by = 'payload.k +'
ttl = 5
[operators.r]
type = "route"
inputs = ["in"]
routes = [{ name = "a", when = 'payload.x ==' }, { nmae = "b", when = 'zz' }]
[sinks.out]
type = "stdout"
inputs = ["c", "r.a"]
"#,
        &[
            (8, 18, "CEL syntax"),
            (9, 7, "invalid type: integer `5`"),
            (13, 45, "CEL syntax"),
            (13, 52, "unknown field `nmae`"),
            (13, 72, "unknown variable `zz`"),
        ],
    );
}

#[test]
fn regexes_are_checked_wherever_they_are() {
    expect(
        r#"[topology]
name = "x"
[sources.in]
type = "stdin"
[operators.m]
type = "map"
inputs = ["in"]
set = { "payload.a" = 'payload.t.matches("ok")', "payload.b" = 'matches(payload.t, "[z")' }
[operators.f]
type = "filter"
inputs = ["m"]
where = 'payload.t.matches(payload.re) && payload.t.matches("a{2,1}")'
[sinks.out]
type = "stdout"
inputs = ["f"]
"#,
        &[(8, 84, "`[z` is not a valid regular expression"), (12, 61, "`a{2,1}` is not a valid regular expression")],
    );
}

fn kafclaw_test(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_kafclaw")).arg("test").arg(&path).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
}

const EXACT: &str = r#"[topology]
name = "tt"
[sources.in]
type = "stdin"
[operators.m]
type = "map"
inputs = ["in"]
render = { "payload.text" = '{{ payload.n }}' }
[sinks.out]
type = "stdout"
inputs = ["m"]
[[tests]]
name = "t"
inputs = [ { source = "in", envelope = { type = "request", correlation_id = "t", sender_id = "s", timestamp = "2026-11-01T09:00:00Z", payload = { n = N } } } ]
outputs = [ { sink = "out", envelope = { payload = { n = E, text = "T" } } } ]
"#;

#[test]
fn test_numbers_keep_the_text_written() {
    for (n, e, t, pass) in [
        ("1.0000000000000001", "1.0000000000000001", "1.0000000000000001", true),
        ("9007199254740993.0", "9007199254740993.0", "9007199254740993.0", true),
        ("99999999999999999999", "99999999999999999999", "99999999999999999999", true),
        ("1", "1.0000000000000001", "1", false),
        ("0.1", "0.1000000000000000055511151231257827", "0.1", false),
        ("9007199254740992", "9007199254740993.0", "9007199254740992", false),
        ("0x10", "16", "16", true),
    ] {
        let text = EXACT
            .replace("= N", &format!("= {n}"))
            .replace("= E", &format!("= {e}"))
            .replace("\"T\"", &format!("\"{t}\""));
        let (ok, out) = kafclaw_test(&text);
        assert_eq!(ok, pass, "{n} against {e}:\n{out}");
    }
}
