//! `kafclaw validate` on `skills`: every problem of a `SKILL.md` is a diagnostic at its entry in
//! the topology (`path:line:col`, the source line, a caret), naming the `SKILL.md` and its
//! line; all of them in one run, in the order of the file.

use std::path::Path;
use std::process::Command;

use super::{refunds_skill, topology, write};

/// One diagnostic's header line.
#[derive(Debug)]
struct Diag {
    line: usize,
    col: usize,
    severity: String,
    message: String,
}

/// Validates `t.toml` in `dir`: the diagnostics (checked to be ordered by place) and stderr.
fn validate(dir: &Path) -> (Vec<Diag>, String, Option<i32>) {
    let path = dir.join("t.toml");
    let o = Command::new(env!("CARGO_BIN_EXE_kafclaw")).arg("validate").arg(&path).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    let prefix = format!("{}:", path.display());
    let mut diags = Vec::new();
    for l in err.lines().filter(|l| l.contains(": error: ") || l.contains(": warning: ")) {
        let rest = l.strip_prefix(&prefix).unwrap_or_else(|| panic!("not at path:line:col: {l}\n{err}"));
        let mut parts = rest.splitn(4, ':');
        let line = parts.next().unwrap().parse().unwrap();
        let col = parts.next().unwrap().parse().unwrap();
        let severity = parts.next().unwrap().trim().to_owned();
        let message = parts.next().unwrap().trim().to_owned();
        diags.push(Diag { line, col, severity, message });
    }
    let places: Vec<(usize, usize)> = diags.iter().map(|d| (d.line, d.col)).collect();
    let mut sorted = places.clone();
    sorted.sort();
    assert_eq!(places, sorted, "ordered by place:\n{err}");
    (diags, err, o.status.code())
}

/// The cases: (folder, SKILL.md text or `None` for no file, severity, start of the message).
fn cases() -> Vec<(&'static str, Option<String>, &'static str, String)> {
    let long = "d".repeat(1025);
    vec![
        ("skills/missing-folder", None, "error", "skill `skills/missing-folder`: no such folder".into()),
        ("skills/no-skill-md", None, "error", "skills/no-skill-md/SKILL.md: no such file".into()),
        (
            "skills/no-front-matter",
            Some("# Refunds\n\nname: no-front-matter\n".into()),
            "error",
            "skills/no-front-matter/SKILL.md:1: no front matter".into(),
        ),
        (
            "skills/unterminated",
            Some("---\nname: unterminated\ndescription: x\n\n# Body\n".into()),
            "error",
            "skills/unterminated/SKILL.md:1: the front matter is not closed".into(),
        ),
        (
            "skills/bad-yaml",
            Some("---\nname: bad-yaml\ndescription: [one, two\nlicense: MIT\n---\nbody\n".into()),
            "error",
            "skills/bad-yaml/SKILL.md:4: invalid YAML in the front matter".into(),
        ),
        (
            "skills/no-name",
            Some("---\ndescription: Something.\n---\n".into()),
            "error",
            "skills/no-name/SKILL.md:1: the front matter has no `name`".into(),
        ),
        (
            "skills/no-description",
            Some("---\nname: no-description\n---\nbody\n".into()),
            "error",
            "skills/no-description/SKILL.md:1: the front matter has no `description`".into(),
        ),
        (
            "skills/mismatch",
            Some("---\ndescription: x\nname: other\n---\n".into()),
            "error",
            "skills/mismatch/SKILL.md:3: `name` is `other` but the folder is `mismatch`".into(),
        ),
        (
            "skills/Bad_Name",
            Some("---\nname: Bad_Name\ndescription: x\n---\n".into()),
            "error",
            "skills/Bad_Name/SKILL.md:2: `name` `Bad_Name` contains 'B'".into(),
        ),
        (
            "skills/two--hyphens",
            Some("---\nname: two--hyphens\ndescription: x\n---\n".into()),
            "error",
            "skills/two--hyphens/SKILL.md:2: `name` `two--hyphens` contains two hyphens in a row".into(),
        ),
        (
            "skills/long-description",
            Some(format!("---\nname: long-description\ndescription: {long}\n---\n")),
            "error",
            "skills/long-description/SKILL.md:3: `description` has 1025 characters, more than the 1024".into(),
        ),
        (
            "skills/unknown-field",
            Some("---\nname: unknown-field\ndescription: x\nversion: 2\n---\n".into()),
            "warning",
            "skills/unknown-field/SKILL.md:4: unknown front-matter field `version`".into(),
        ),
        ("skills/refunds", None, "", String::new()),
        (
            "more/refunds",
            Some("---\nname: refunds\ndescription: Another skill of the same name.\n---\n".into()),
            "error",
            "more/refunds/SKILL.md: skill name `refunds` is already the name of `skills/refunds`".into(),
        ),
        (
            "skills/too-big",
            Some(format!("---\nname: too-big\ndescription: x\n---\n{}", "x".repeat(300_000))),
            "error",
            "skills/too-big/SKILL.md: has 300037 bytes, more than the 262144 kafclaw reads".into(),
        ),
    ]
}

/// Every validation error of the specification, one diagnostic each, at its entry; the
/// unknown field a warning; the valid skill none.
#[test]
fn each_skill_problem_is_a_diagnostic_at_its_entry_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    refunds_skill(dir.path());
    let cases = cases();
    for (folder, text, _, _) in &cases {
        match text {
            Some(t) => write(&dir.path().join(folder).join("SKILL.md"), t),
            None if *folder == "skills/no-skill-md" => std::fs::create_dir_all(dir.path().join(folder)).unwrap(),
            None => {}
        }
    }
    let entries: Vec<String> = cases.iter().map(|(f, ..)| format!("    \"{f}\",")).collect();
    let topo = topology(dir.path(), "http://127.0.0.1:9/v1", &format!("skills = [\n{}\n]", entries.join("\n")));
    let text = std::fs::read_to_string(&topo).unwrap();
    let first = text.lines().position(|l| l.starts_with("skills = [")).unwrap() + 2;

    let (diags, err, code) = validate(dir.path());
    let expected: Vec<(usize, &str, &str)> = cases
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.2.is_empty())
        .map(|(i, (_, _, severity, message))| (first + i, *severity, message.as_str()))
        .collect();
    assert_eq!(diags.len(), expected.len(), "{err}");
    for (d, (line, severity, message)) in diags.iter().zip(&expected) {
        assert_eq!((d.line, d.col, d.severity.as_str()), (*line, 5, *severity), "{}:\n{err}", d.message);
        assert!(d.message.starts_with(message), "`{}` starts with `{message}`:\n{err}", d.message);
    }
    let errors = expected.iter().filter(|e| e.1 == "error").count();
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&format!(": {errors} error(s)")), "{err}");
    // The source line with a caret under the entry, and the fix.
    assert!(err.contains("    \"skills/mismatch\",\n"), "{err}");
    assert!(err.contains("    ^"), "{err}");
    assert!(err.contains("requires `name` to equal the skill folder's name"), "{err}");
}

/// A SKILL.md saved with CRLF and a byte-order mark reports the same lines.
#[test]
fn lines_are_counted_the_same_with_crlf_and_a_byte_order_mark() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("skills/crlf/SKILL.md"),
        "\u{feff}---\r\ndescription: x\r\nlicense: MIT\r\nname: not-crlf\r\n---\r\n",
    );
    topology(dir.path(), "http://127.0.0.1:9/v1", r#"skills = ["skills/crlf"]"#);
    let (diags, err, _) = validate(dir.path());
    assert_eq!(diags.len(), 1, "{err}");
    assert!(diags[0].message.starts_with("skills/crlf/SKILL.md:4: `name` is `not-crlf`"), "{err}");
}

/// `read_skill` is the built-in tool's name: a `[tools]` entry listed under it is refused.
#[test]
fn a_tool_named_read_skill_is_refused_beside_skills() {
    let dir = tempfile::tempdir().unwrap();
    refunds_skill(dir.path());
    let topo = topology(dir.path(), "http://127.0.0.1:9/v1", "skills = [\"skills/refunds\"]\ntools = [\"read_skill\"]");
    let text = std::fs::read_to_string(&topo)
        .unwrap()
        .replace("[sources.requests]", "[tools.read_skill]\ntype = \"fs_read\"\nroot = \".\"\n\n[sources.requests]");
    std::fs::write(&topo, text).unwrap();
    let (diags, err, _) = validate(dir.path());
    assert_eq!(diags.len(), 1, "{err}");
    assert!(diags[0].message.starts_with("`read_skill` is the built-in tool of `skills`"), "{err}");
}
