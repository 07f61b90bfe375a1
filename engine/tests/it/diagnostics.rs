//! `kafclaw validate` reports every mistake of a topology in one run: a mistake in one
//! section does not hide the others, and none cascades into errors about what follows from
//! it (a node of unknown type is still a node; a typo of a key is not also a missing key).
//! Each diagnostic is at `path:line:col`, in the order of the file.

use std::process::Command;

/// One diagnostic's header line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Diag {
    line: usize,
    col: usize,
    severity: String,
    message: String,
}

/// Validates `text` and returns the diagnostics (checked to be well-formed, ordered by place
/// and the same on a second run) and the whole of stderr.
fn validate(text: &str) -> (Vec<Diag>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, text).unwrap();
    let run = || Command::new(env!("CARGO_BIN_EXE_kafclaw")).arg("validate").arg(&path).output().unwrap();
    let o = run();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    let prefix = format!("{}:", path.display());
    let mut diags = Vec::new();
    for l in err.lines().filter(|l| l.contains(": error: ") || l.contains(": warning: ")) {
        let rest = l.strip_prefix(&prefix).unwrap_or_else(|| panic!("not at path:line:col: {l}\n{err}"));
        let mut parts = rest.splitn(4, ':');
        let line = parts.next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no line: {l}"));
        let col = parts.next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no column: {l}"));
        let severity = parts.next().unwrap().trim().to_owned();
        let message = parts.next().unwrap().trim().to_owned();
        assert!(line >= 1 && col >= 1, "{l}");
        diags.push(Diag { line, col, severity, message });
    }
    let places: Vec<(usize, usize)> = diags.iter().map(|d| (d.line, d.col)).collect();
    let mut sorted = places.clone();
    sorted.sort();
    assert_eq!(places, sorted, "diagnostics are ordered by place:\n{err}");
    assert_eq!(String::from_utf8_lossy(&run().stderr), err, "the same on every run");
    let errors = diags.iter().filter(|d| d.severity == "error").count();
    if errors > 0 {
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(&format!(": {errors} error(s)")), "{err}");
    } else {
        assert_eq!(o.status.code(), Some(0), "{err}");
    }
    (diags, err)
}

/// Asserts exactly `expected` diagnostics: (line, col, start of the message).
fn expect(text: &str, expected: &[(usize, usize, &str)]) -> String {
    let (diags, err) = validate(text);
    assert_eq!(diags.len(), expected.len(), "expected {} diagnostics:\n{err}", expected.len());
    for (d, (line, col, message)) in diags.iter().zip(expected) {
        assert_eq!((d.line, d.col), (*line, *col), "`{}` at {line}:{col}:\n{err}", d.message);
        assert!(d.message.starts_with(message), "`{}` starts with `{message}`:\n{err}", d.message);
    }
    err
}

/// The issue's five mistakes: a typo in `[topology]`, an unknown operator type, a dangling
/// input, a CEL syntax error and a cycle. Five diagnostics, in one run.
#[test]
fn five_independent_mistakes_five_diagnostics() {
    let err = expect(
        r#"[topology]
nmae = "five"

[sources.requests]
type = "file"
path = "in.jsonl"

[operators.tickets]
type = "filter"
inputs = ["requests"]
where = 'type == "request" && && payload.x'

[operators.shape]
type = "mapp"
inputs = ["tickets"]

[operators.loop-a]
type = "filter"
inputs = ["loop-b", "shape"]
where = 'true'

[operators.loop-b]
type = "filter"
inputs = ["loop-a"]
where = 'true'

[sinks.out]
type = "stdout"
inputs = ["shape", "tickest", "loop-b"]
"#,
        &[
            (2, 1, "unknown field `nmae`"),
            (11, 31, "CEL syntax"),
            (14, 8, "unknown operator type `mapp`"),
            (19, 10, "cycle in `inputs`: loop-a → loop-b → loop-a"),
            (29, 20, "input `tickest` names no node"),
        ],
    );
    assert!(err.contains("did you mean `name`?"), "{err}");
    assert!(!err.contains("missing field"), "the typo is not also a missing `name`:\n{err}");
}

#[test]
fn a_key_typo_is_one_diagnostic() {
    let body = r#"
[sources.in]
type = "stdin"

[operators.keep]
type = "filter"
inputs = ["in"]
wehre = 'payload.n > 1'

[sinks.out]
type = "stdout"
inputs = ["keep"]
"#;
    let err = expect(
        &format!("[topology]\nnmae = \"x\"\n{body}"),
        &[(2, 1, "unknown field `nmae`"), (10, 1, "unknown field `wehre`")],
    );
    assert!(err.contains("did you mean `where`?"), "{err}");
    assert!(!err.contains("missing field"), "{err}");
}

#[test]
fn an_unknown_sink_type_with_other_mistakes() {
    expect(
        r#"[topology]
name = "t"

[sources.in]
type = "file"
path = "in.jsonl"

[operators.keep]
type = "filter"
inputs = ["in"]
where = 'payload.n >'

[operators.shape]
type = "map"
inputs = ["keep", "nowhere"]
set = { "payload.m" = 'payload.n + 1' }

[sinks.out]
type = "stdot"
inputs = ["shape"]
"#,
        &[(11, 21, "CEL syntax"), (15, 19, "input `nowhere` names no node"), (19, 8, "unknown sink type `stdot`")],
    );
}

/// An unknown source type still feeds the operators that read it: no "names no node", no
/// error about its options, its readers' own mistakes still found.
#[test]
fn an_unknown_source_type_feeding_an_operator() {
    let err = expect(
        r#"[topology]
name = "t"

[sources.in]
type = "fiel"
path = 42
colour = "blue"

[operators.keep]
type = "filter"
inputs = ["in"]
where = 'payload.n > 1'

[sinks.out]
type = "stdout"
inputs = ["keep.nope"]
"#,
        &[(5, 8, "unknown source type `fiel`"), (16, 11, "`keep` has no output named `nope`")],
    );
    assert!(err.contains("did you mean `file`?"), "{err}");
}

#[test]
fn two_typos_in_one_node() {
    expect(
        r#"[topology]
name = "t"

[sources.in]
type = "stdin"

[operators.per-key]
type = "count"
inputs = ["in"]
byy = 'payload.k'
intoo = "payload.count"

[sinks.out]
type = "stdout"
inputs = ["per-key"]
"#,
        &[(10, 1, "unknown field `byy`"), (11, 1, "unknown field `intoo`")],
    );
}

#[test]
fn a_typo_in_one_node_and_a_bad_value_type_in_another() {
    expect(
        r#"[topology]
name = "t"

[sources.in]
type = "stdin"

[operators.keep]
type = "filter"
inputs = ["in"]
wehre = 'payload.n > 1'

[operators.once]
type = "dedupe"
inputs = ["keep"]
within = 5

[sinks.out]
type = "stdout"
inputs = ["once"]
"#,
        &[(10, 1, "unknown field `wehre`"), (15, 10, "invalid type: integer `5`")],
    );
}

#[test]
fn a_template_syntax_error_and_a_cycle() {
    expect(
        r#"[topology]
name = "t"

[sources.in]
type = "stdin"

[operators.a]
type = "map"
inputs = ["in", "b"]
render = { "payload.text" = "Hello {{ payload.name " }

[operators.b]
type = "filter"
inputs = ["a"]
where = 'true'

[sinks.out]
type = "stdout"
inputs = ["b"]
"#,
        &[(9, 10, "cycle in `inputs`: a → b → a"), (10, 30, "template: unexpected end of input")],
    );
}

#[test]
fn an_unknown_type_inside_a_cycle() {
    expect(
        r#"[topology]
name = "t"

[sources.in]
type = "stdin"

[operators.a]
type = "filter"
inputs = ["in", "b"]
where = 'true'

[operators.b]
type = "fliter"
inputs = ["a"]
where = 'true'

[sinks.out]
type = "stdout"
inputs = ["b.yes"]
"#,
        &[(9, 10, "cycle in `inputs`: a → b → a"), (13, 8, "unknown operator type `fliter`")],
    );
}

/// A required key left out, with no typo of it anywhere, is reported — in `[topology]` and in
/// an operator, both in one run.
#[test]
fn a_missing_key_without_a_typo_is_reported() {
    expect(
        r#"[topology]
group = "g"

[sources.in]
type = "stdin"

[operators.keep]
type = "filter"
inputs = ["in"]

[sinks.out]
type = "stdout"
inputs = ["keep"]
"#,
        &[(1, 1, "missing field `name`"), (7, 12, "missing field `where`")],
    );
}

#[test]
fn an_operator_with_a_typo_and_a_missing_other_key() {
    let err = expect(
        r#"[topology]
name = "t"

[sources.in]
type = "stdin"

[operators.per-key]
type = "count"
inputs = ["in"]
intoo = "payload.count"

[sinks.out]
type = "stdout"
inputs = ["per-key"]
"#,
        &[(7, 12, "missing field `by`"), (10, 1, "unknown field `intoo`")],
    );
    assert!(!err.contains("missing field `into`"), "{err}");
}

/// Typos of `type` and `inputs` are read as what they stood for: one diagnostic each, and the
/// node is still checked (its unknown type, its wiring).
#[test]
fn typos_of_type_and_inputs() {
    let err = expect(
        r#"[topology]
name = "t"

[sources.in]
type = "stdin"

[operators.keep]
tpye = "filter"
inputs = ["in"]
where = 'payload.n > 1'

[operators.shape]
type = "map"
inptus = ["keep", "nowhere"]
set = { "payload.m" = 'payload.n + 1' }

[operators.odd]
tpye = "mapp"
inputs = ["shape"]

[sinks.out]
type = "stdout"
inputs = ["odd"]
"#,
        &[
            (8, 1, "unknown field `tpye`"),
            (14, 1, "unknown field `inptus`"),
            (14, 19, "input `nowhere` names no node"),
            (18, 1, "unknown field `tpye`"),
            (18, 8, "unknown operator type `mapp`"),
        ],
    );
    assert!(err.contains("did you mean `type`?") && err.contains("did you mean `inputs`?"), "{err}");
    assert!(!err.contains("has no `type`") && !err.contains("reads nothing"), "{err}");
}

/// A bad name or an `inputs` on a source is one error; the node is still there for others.
#[test]
fn a_node_with_a_bad_name_is_still_a_node() {
    expect(
        r#"[topology]
name = "t"

[sources."in put"]
type = "stdin"
inputs = ["x"]

[sinks.out]
type = "stdout"
inputs = ["in put"]
"#,
        &[(4, 10, "`in put` is not a valid node name"), (6, 1, "a source has no `inputs`")],
    );
}

/// A stdin → stdout topology named `t` whose `[topology]` also holds `lines` (from line 3).
fn stdin_to_stdout(lines: &str) -> String {
    format!(
        "[topology]\nname = \"t\"\n{lines}\n\n[sources.in]\ntype = \"stdin\"\n\n[sinks.out]\ntype = \"stdout\"\ninputs = [\"in\"]\n"
    )
}

#[test]
fn topology_numbers_are_reported_at_their_place() {
    expect(&stdin_to_stdout("partitions = 0"), &[(3, 14, "`topology.partitions` must be at least 1")]);
}

/// A commit interval of 0 is reported at its value (the default depends on the guarantee).
#[test]
fn a_zero_commit_interval_is_reported_at_its_place() {
    expect(
        &stdin_to_stdout("guarantee = \"at-least-once\"\ncommit_interval_ms = 0"),
        &[(4, 22, "`topology.commit_interval_ms` must be at least 1")],
    );
}

/// Stream threads are 1 to 256, reported at the value (the `--threads` flag has the same range).
#[test]
fn topology_threads_are_reported_at_their_place() {
    for (value, col) in [("0", 11), ("257", 11)] {
        expect(&stdin_to_stdout(&format!("threads = {value}")), &[(3, col, "`topology.threads` must be 1 to 256")]);
    }
}

/// A memory index's vector options are checked at their place: `rescore` needs i8 vectors (an
/// f32 index has nothing to re-rank by), `ef_search` at least 1; i8 with `rescore` passes.
#[test]
fn memory_index_vector_options_are_reported_at_their_place() {
    let topology = |options: &str| {
        format!(
            r#"[topology]
name = "t"

[sources.in]
type = "stdin"

[operators.remember]
type = "memory-index"
inputs = ["in"]
{options}

[sinks.out]
type = "stdout"
inputs = ["remember"]
"#
        )
    };
    expect(&topology("rescore = true"), &[(10, 11, "`rescore` = true re-ranks an i8 index")]);
    expect(
        &topology("quantization = \"f32\"\nef_search = 0\nrescore = true"),
        &[(11, 13, "`ef_search` = 0"), (12, 11, "`rescore` = true re-ranks an i8 index")],
    );
    expect(&topology("quantization = \"i8\"\nrescore = true\nef_search = 96"), &[]);
}

/// The retentions of the effect log and the approvals channel are durations, checked at their
/// place; a valid one passes.
#[test]
fn topology_retentions_are_durations() {
    let err = expect(
        r#"[topology]
name = "t"
effects_retention = "soon"
approvals_retention = "0s"

[sources.in]
type = "stdin"

[sinks.out]
type = "stdout"
inputs = ["in"]
"#,
        &[
            (3, 21, "`topology.effects_retention`: `soon` is not a duration"),
            (4, 23, "`topology.approvals_retention`: `0s` is zero"),
        ],
    );
    assert!(err.contains("7days"), "the hint names a duration:\n{err}");
    expect(
        "[topology]\nname = \"t\"\neffects_retention = \"36h\"\napprovals_retention = \"30days\"\n\n\
         [sources.in]\ntype = \"stdin\"\n\n[sinks.out]\ntype = \"stdout\"\ninputs = [\"in\"]\n",
        &[],
    );
}

/// A topology saved "UTF-8 with BOM" validates, and its diagnostics count columns from the
/// first real character.
#[test]
fn a_topology_with_a_byte_order_mark() {
    let good = "\u{feff}[topology]\r\nname = \"t\"\r\n\r\n[sources.in]\r\ntype = \"stdin\"\r\n\r\n[sinks.out]\r\ntype = \"stdout\"\r\ninputs = [\"in\"]\r\n";
    expect(good, &[]);
    expect(
        &good.replace("[topology]", "[topolgy]"),
        // Read as `[topology]`: one diagnostic, not also a missing section.
        &[(1, 2, "unknown section `topolgy`")],
    );
    expect(&good.replace("name = \"t\"", "nmae = \"t\""), &[(2, 1, "unknown field `nmae`")]);
}

mod redteam;
