//! Skills as `SKILL.md`: the Agent Skills format (agentskills.io specification,
//! <https://agentskills.io/specification>), on an `llm` operator:
//!
//! ```toml
//! [operators.answer]
//! type = "llm"
//! model = "fast"
//! skills = ["skills/refunds", "skills/invoices"]   # folders, relative to the topology's
//! ```
//! Each folder holds a `SKILL.md`: YAML front matter between two `---` lines (`name`,
//! `description`; optionally `license`, `compatibility`, `metadata`, `allowed-tools`), then
//! Markdown instructions; optionally more files (`references/`, `assets/`, `scripts/`).
//!
//! Progressive disclosure, as the specification describes it: at start only each skill's
//! front matter is read, and only names and descriptions go into the system prompt (the
//! `<available_skills>` block of the specification's integration guide, without `location`:
//! kafclaw is a tool-based agent). The instructions and the files are read when the model asks,
//! through the built-in tool `read_skill` (`skills_tool.rs`). Scripts are never run.
//!
//! Validation follows the specification (and its reference validator, `skills-ref`): every
//! problem is a topology diagnostic at the `skills` entry, naming the `SKILL.md` and its line.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use toml::Spanned;

use kafclaw_operators::api::config::ConfigError;
use kafclaw_operators::connectors::{refuse_wide, strip_bom_str};

/// The file every skill folder holds.
pub const SKILL_FILE: &str = "SKILL.md";

/// Most bytes of a `SKILL.md` kafclaw reads (256 KiB); a bigger one is refused. The
/// specification recommends under 500 lines, detail moved into `references/`.
pub const MAX_SKILL_BYTES: u64 = 256 * 1024;

/// Most characters of `name` (specification: 1–64).
pub const MAX_NAME_CHARS: usize = 64;
/// Most characters of `description` (specification: 1–1024).
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Most characters of `compatibility` (specification: 1–500).
pub const MAX_COMPATIBILITY_CHARS: usize = 500;

/// The front-matter fields the specification defines; any other is warned about.
const FIELDS: [&str; 6] = ["name", "description", "license", "compatibility", "metadata", "allowed-tools"];

/// One skill, as its front matter describes it (the body is read only when asked for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skill {
    /// `name`: equal to the folder's name.
    pub name: String,
    /// `description`: what the skill does and when to use it.
    pub description: String,
    /// The skill's folder (the topology's folder joined with the `skills` entry).
    pub folder: PathBuf,
    /// `license`, if given.
    pub license: Option<String>,
    /// `compatibility`, if given.
    pub compatibility: Option<String>,
    /// `metadata`: string keys to string values.
    pub metadata: BTreeMap<String, String>,
    /// `allowed-tools` (a space-delimited string or a list, both accepted): parsed and kept,
    /// advisory only — the operator's `tools` are what the model may call.
    pub allowed_tools: Vec<String>,
}

/// A problem with one `SKILL.md`, at a line of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line of the `SKILL.md`.
    pub line: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<&'static str>,
    /// A warning (the skill is still used), not an error.
    pub warning: bool,
}

impl Problem {
    fn error(line: usize, message: impl Into<String>, hint: Option<&'static str>) -> Self {
        Self { line, message: message.into(), hint, warning: false }
    }

    fn warning(line: usize, message: impl Into<String>, hint: Option<&'static str>) -> Self {
        Self { line, message: message.into(), hint, warning: true }
    }
}

const FRONT_MATTER_HINT: Option<&str> =
    Some("a SKILL.md starts with `---`, then YAML with `name` and `description`, then `---`, then the instructions");

/// Largest front matter read, in bytes: `description` (1,024 characters), `compatibility`
/// (500) and a `metadata` map fit many times over; a larger one is refused before it is
/// parsed (libyaml's scanner takes quadratic time on deep nesting or many keys).
pub const MAX_FRONT_MATTER_BYTES: usize = 16 * 1024;

/// Splits a `SKILL.md` into its front matter (YAML, with CR of CRLF line ends removed) and
/// its body (the Markdown after the closing `---`, blank lines at its start removed). A
/// leading UTF-8 byte-order mark is skipped.
///
/// Errors: no `---` on line 1; no closing `---` line; front matter over
/// [`MAX_FRONT_MATTER_BYTES`].
pub fn split(text: &str) -> Result<(String, String), Problem> {
    let text = strip_bom_str(text);
    let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    if lines.first().map(|l| l.trim_end()) != Some("---") {
        return Err(Problem::error(1, "no front matter: the file does not start with a `---` line", FRONT_MATTER_HINT));
    }
    let Some(close) = lines.iter().skip(1).position(|l| l.trim_end() == "---").map(|i| i + 1) else {
        return Err(Problem::error(
            1,
            "the front matter is not closed: no `---` line after the one on line 1",
            FRONT_MATTER_HINT,
        ));
    };
    let yaml = lines[1..close].join("\n");
    if yaml.len() > MAX_FRONT_MATTER_BYTES {
        // Before YAML sees it: libyaml's scanner is quadratic in nesting and keys.
        return Err(Problem::error(
            1,
            format!(
                "the front matter has {} bytes, more than the {MAX_FRONT_MATTER_BYTES} kafclaw reads (the specification's fields fit in a few hundred)",
                yaml.len()
            ),
            FRONT_MATTER_HINT,
        ));
    }
    let body = lines[close + 1..].join("\n");
    Ok((yaml, body.trim_start_matches('\n').to_owned()))
}

/// The line of the `SKILL.md` where top-level key `key` is written (front matter starts on
/// line 2), or 1 (the opening `---`) when it is not found.
fn key_line(yaml: &str, key: &str) -> usize {
    yaml.lines()
        .position(|l| {
            let l = l.strip_prefix(['"', '\'']).unwrap_or(l);
            l.strip_prefix(key).is_some_and(|rest| {
                let rest = rest.strip_prefix(['"', '\'']).unwrap_or(rest);
                rest.trim_start().starts_with(':')
            })
        })
        .map_or(1, |i| i + 2)
}

/// Why `name` breaks the specification's rule (1–64 lowercase letters, digits and hyphens;
/// no hyphen at either end, no two in a row), if it does. Letters are Unicode lowercase ones,
/// as the reference validator allows.
pub fn name_problem(name: &str) -> Option<String> {
    let chars = name.chars().count();
    if chars == 0 {
        return Some("`name` is empty".into());
    }
    if chars > MAX_NAME_CHARS {
        return Some(format!("`name` has {chars} characters, more than the {MAX_NAME_CHARS} allowed"));
    }
    if let Some(c) = name.chars().find(|c| !(*c == '-' || c.is_numeric() || (c.is_alphabetic() && !c.is_uppercase()))) {
        return Some(format!("`name` `{name}` contains {c:?}: only lowercase letters, digits and hyphens are allowed"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some(format!("`name` `{name}` starts or ends with a hyphen"));
    }
    if name.contains("--") {
        return Some(format!("`name` `{name}` contains two hyphens in a row"));
    }
    None
}

/// A YAML error's text without its ` at line N column M` (lines of the front matter alone,
/// not of the file: the diagnostic gives the file's line).
fn without_place(text: &str) -> String {
    let Some(at) = text.find(" at line ") else { return text.to_owned() };
    let rest = &text[at + " at line ".len()..];
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.strip_prefix(" column ").map_or(rest, |r| r.trim_start_matches(|c: char| c.is_ascii_digit()));
    format!("{}{}", &text[..at], without_place(rest))
}

/// A scalar as text (numbers and booleans written without quotes), or `None`.
fn scalar(v: &yaml_serde::Value) -> Option<String> {
    match v {
        yaml_serde::Value::String(s) => Some(s.clone()),
        yaml_serde::Value::Number(n) => Some(n.to_string()),
        yaml_serde::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Parses and checks a `SKILL.md`'s text for the folder named `folder_name` at `folder`:
/// the skill (when no error was found) and every problem, errors and warnings.
pub fn parse(text: &str, folder_name: &str, folder: &Path) -> (Option<Skill>, Vec<Problem>) {
    let (yaml, _) = match split(text) {
        Ok(parts) => parts,
        Err(p) => return (None, vec![p]),
    };
    let value: yaml_serde::Value = match yaml_serde::from_str(&yaml) {
        Ok(v) => v,
        Err(e) => {
            let line = e.location().map_or(1, |l| l.line() + 1);
            let message = without_place(&e.to_string());
            return (None, vec![Problem::error(line, format!("invalid YAML in the front matter: {message}"), None)]);
        }
    };
    let map = match value {
        yaml_serde::Value::Mapping(m) => m,
        yaml_serde::Value::Null => {
            return (None, vec![Problem::error(1, "the front matter is empty", FRONT_MATTER_HINT)]);
        }
        _ => return (None, vec![Problem::error(2, "the front matter is not a YAML mapping", FRONT_MATTER_HINT)]),
    };
    let mut problems = Vec::new();
    let mut text_field = |key: &str, max: usize| -> Option<String> {
        let line = key_line(&yaml, key);
        match map.get(key)? {
            yaml_serde::Value::String(s) if s.trim().is_empty() => {
                problems.push(Problem::error(line, format!("`{key}` is empty"), None));
                None
            }
            yaml_serde::Value::String(s) if s.chars().count() > max => {
                let n = s.chars().count();
                problems.push(Problem::error(
                    line,
                    format!("`{key}` has {n} characters, more than the {max} the specification allows"),
                    None,
                ));
                None
            }
            yaml_serde::Value::String(s) => Some(s.clone()),
            _ => {
                problems.push(Problem::error(line, format!("`{key}` must be a string"), None));
                None
            }
        }
    };
    let name = text_field("name", usize::MAX);
    let description = text_field("description", MAX_DESCRIPTION_CHARS);
    let license = text_field("license", usize::MAX);
    let compatibility = text_field("compatibility", MAX_COMPATIBILITY_CHARS);
    for (key, present) in [("name", name.is_some()), ("description", description.is_some())] {
        if !present && !map.contains_key(key) {
            problems.push(Problem::error(
                1,
                format!("the front matter has no `{key}` (required)"),
                Some("the specification requires `name` and `description`"),
            ));
        }
    }
    if let Some(n) = &name {
        let line = key_line(&yaml, "name");
        if let Some(m) = name_problem(n) {
            problems.push(Problem::error(
                line,
                m,
                Some("1–64 lowercase letters, digits and single hyphens, e.g. `refund-policy`"),
            ));
        } else if n != folder_name {
            problems.push(Problem::error(
                line,
                format!("`name` is `{n}` but the folder is `{folder_name}`"),
                Some("the specification requires `name` to equal the skill folder's name: rename one"),
            ));
        }
    }
    let mut metadata = BTreeMap::new();
    match map.get("metadata") {
        None | Some(yaml_serde::Value::Null) => {}
        Some(yaml_serde::Value::Mapping(m)) => {
            for (k, v) in m {
                let key = scalar(k).unwrap_or_default();
                match (v, scalar(v)) {
                    (yaml_serde::Value::String(_), Some(s)) => {
                        metadata.insert(key, s);
                    }
                    (_, Some(s)) => {
                        problems.push(Problem::warning(
                            key_line(&yaml, "metadata"),
                            format!("`metadata.{key}` is not a string (the specification maps strings to strings); read as \"{s}\""),
                            Some("quote the value"),
                        ));
                        metadata.insert(key, s);
                    }
                    (_, None) => problems.push(Problem::error(
                        key_line(&yaml, "metadata"),
                        format!("`metadata.{key}` must be a string"),
                        None,
                    )),
                }
            }
        }
        Some(_) => problems.push(Problem::error(
            key_line(&yaml, "metadata"),
            "`metadata` must be a mapping of strings to strings",
            None,
        )),
    }
    let allowed_tools = match map.get("allowed-tools") {
        None | Some(yaml_serde::Value::Null) => Vec::new(),
        Some(yaml_serde::Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(yaml_serde::Value::Sequence(items)) if items.iter().all(|i| matches!(i, yaml_serde::Value::String(_))) => {
            items.iter().filter_map(scalar).collect()
        }
        Some(_) => {
            problems.push(Problem::error(
                key_line(&yaml, "allowed-tools"),
                "`allowed-tools` must be a space-delimited string or a list of strings",
                None,
            ));
            Vec::new()
        }
    };
    for (k, _) in &map {
        let key = scalar(k).unwrap_or_else(|| format!("{k:?}"));
        if !FIELDS.contains(&key.as_str()) {
            problems.push(Problem::warning(
                key_line(&yaml, &key),
                format!("unknown front-matter field `{key}` (ignored)"),
                Some("the specification defines name, description, license, compatibility, metadata and allowed-tools; put other properties under `metadata`"),
            ));
        }
    }
    problems.sort_by_key(|p| p.line);
    let skill = match (name, description) {
        (Some(name), Some(description)) if problems.iter().all(|p| p.warning) => Some(Skill {
            name,
            description,
            folder: folder.to_path_buf(),
            license,
            compatibility,
            metadata,
            allowed_tools,
        }),
        _ => None,
    };
    (skill, problems)
}

/// Reads a `SKILL.md` as the topology is compiled (the administrator's file): at most
/// [`MAX_SKILL_BYTES`], UTF-8 (a leading byte-order mark skipped, a UTF-16/32 one refused).
fn read_skill_file(path: &Path) -> Result<String, String> {
    // Non-blocking open: a FIFO (or a device) named SKILL.md must be refused below, not
    // wait for a writer forever; the flag has no effect on a regular file's reads.
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(target_os = "linux")]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "no such file; a skill folder holds a SKILL.md".to_owned(),
        _ => e.to_string(),
    })?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_SKILL_BYTES {
        return Err(format!(
            "has {} bytes, more than the {MAX_SKILL_BYTES} kafclaw reads of a SKILL.md (the specification recommends under 500 lines: move detail into references/)",
            meta.len()
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_SKILL_BYTES + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_SKILL_BYTES {
        return Err(format!("has more than the {MAX_SKILL_BYTES} bytes kafclaw reads of a SKILL.md"));
    }
    refuse_wide(&bytes).map_err(|e| e.to_string())?;
    let text = String::from_utf8(bytes).map_err(|e| format!("is not UTF-8 (byte {})", e.utf8_error().valid_up_to()))?;
    Ok(strip_bom_str(&text).to_owned())
}

/// The skills of an `llm` operator's `skills` entries, and the diagnostics about them (each at
/// its entry in the topology).
#[derive(Debug, Default)]
pub struct Loaded {
    /// The skills without errors, in the order listed.
    pub skills: Vec<Skill>,
    /// Errors: each entry's folder or `SKILL.md` at fault.
    pub errors: Vec<ConfigError>,
    /// Warnings: fields the specification does not define, metadata that is not a string.
    pub warnings: Vec<ConfigError>,
}

/// Loads the skills `entries` name (folders relative to `base`, the topology's folder):
/// each `SKILL.md`'s front matter, checked; names unique across the entries.
pub fn load(entries: &[Spanned<String>], base: &Path) -> Loaded {
    let mut loaded = Loaded::default();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for entry in entries {
        let written = entry.get_ref();
        let folder = base.join(written);
        let shown = Path::new(written).join(SKILL_FILE).display().to_string();
        let at = |message: String, hint: Option<&str>| {
            ConfigError::at(entry.span(), message).with_hint(hint.map(str::to_owned))
        };
        if !folder.is_dir() {
            let what = if folder.exists() { "is not a folder" } else { "no such folder" };
            loaded.errors.push(at(
                format!("skill `{written}`: {what}"),
                Some("`skills` lists folders, relative to the topology's folder, each holding a SKILL.md"),
            ));
            continue;
        }
        let folder_name = match Path::new(written).file_name() {
            Some(n)
                if Path::new(written)
                    .components()
                    .next_back()
                    .is_some_and(|c| matches!(c, std::path::Component::Normal(_))) =>
            {
                n.to_string_lossy().into_owned()
            }
            _ => std::fs::canonicalize(&folder)
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default(),
        };
        let text = match read_skill_file(&folder.join(SKILL_FILE)) {
            Ok(t) => t,
            Err(m) => {
                loaded.errors.push(at(format!("{shown}: {m}"), None));
                continue;
            }
        };
        let (skill, problems) = parse(&text, &folder_name, &folder);
        for p in problems {
            let e = at(format!("{shown}:{}: {}", p.line, p.message), p.hint);
            if p.warning { loaded.warnings.push(e) } else { loaded.errors.push(e) }
        }
        let Some(skill) = skill else { continue };
        if let Some(first) = names.get(&skill.name) {
            loaded.errors.push(at(
                format!("{shown}: skill name `{}` is already the name of `{first}`", skill.name),
                Some("each skill of an operator needs its own name"),
            ));
            continue;
        }
        names.insert(skill.name.clone(), written.clone());
        loaded.skills.push(skill);
    }
    loaded
}

/// `text` with `&`, `<` and `>` escaped, for the XML-like catalog.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The system-prompt section listing `skills`: how to use them, then the specification's
/// `<available_skills>` block of names and descriptions (no `location`: the model reads a
/// skill through `read_skill`, not a file system).
pub fn catalog(skills: &[Skill]) -> String {
    let mut s = String::from(
        "You have skills: instructions for particular tasks. When a task matches a skill's description, \
         call the `read_skill` tool with the skill's `name` to read its instructions before you act; \
         when they point to a file of the skill (such as `references/policy.md`), call `read_skill` \
         with `name` and that `path`. Scripts of a skill are not run here.\n\n<available_skills>\n",
    );
    for k in skills {
        s.push_str(&format!(
            "  <skill>\n    <name>{}</name>\n    <description>{}</description>\n  </skill>\n",
            escape(&k.name),
            escape(k.description.trim())
        ));
    }
    s.push_str("</available_skills>");
    s
}

/// The system prompt with the skills catalog after it (or the catalog alone).
pub fn with_catalog(system: Option<String>, catalog: Option<&str>) -> Option<String> {
    match (system, catalog) {
        (Some(s), Some(c)) => Some(format!("{s}\n\n{c}")),
        (s, None) => s,
        (None, Some(c)) => Some(c.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str, folder: &str) -> Vec<(usize, String, bool)> {
        parse(text, folder, Path::new("/s")).1.into_iter().map(|p| (p.line, p.message, p.warning)).collect()
    }

    #[test]
    fn names_follow_the_specification() {
        for ok in ["pdf-processing", "a", "data-analysis-2", "café", &"a".repeat(64)] {
            assert_eq!(name_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("PDF-Processing", "contains 'P'"),
            ("-pdf", "starts or ends"),
            ("pdf-", "starts or ends"),
            ("pdf--processing", "two hyphens"),
            ("pdf_processing", "contains '_'"),
            ("pdf processing", "contains ' '"),
            (&"a".repeat(65), "65 characters"),
        ] {
            assert!(name_problem(bad).is_some_and(|m| m.contains(why)), "{bad}: {:?}", name_problem(bad));
        }
    }

    #[test]
    fn front_matter_with_crlf_a_mark_and_block_scalars() {
        let text = "\u{feff}---\r\nname: r\r\ndescription: >\r\n  one\r\n  two\r\nmetadata:\r\n  v: 1.0\r\nallowed-tools: [Read, Grep]\r\n---\r\nbody\r\n";
        let (skill, p) = parse(text, "r", Path::new("/s/r"));
        let skill = skill.unwrap();
        assert_eq!(skill.description, "one two\n");
        assert_eq!(skill.metadata.get("v").map(String::as_str), Some("1.0"));
        assert_eq!(skill.allowed_tools, ["Read", "Grep"]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].warning && p[0].line == 6 && p[0].message.contains("metadata.v"), "{p:?}");
        assert_eq!(split(text).unwrap().1, "body\n");
    }

    #[test]
    fn problems_name_the_line() {
        assert_eq!(problems("---\nname: x\n", "x")[0].0, 1);
        assert_eq!(problems("", "x")[0].1, "no front matter: the file does not start with a `---` line");
        let p = problems("---\nname: x\ndescription: d\nauthor: me\n---\n", "x");
        assert_eq!(p, vec![(4, "unknown front-matter field `author` (ignored)".to_owned(), true)]);
        let p = problems("---\nname: x\ndescription: d\nlicense: [1]\n---\n", "x");
        assert_eq!(p, vec![(4, "`license` must be a string".to_owned(), false)]);
        let p = problems("---\nname: x\ndescription: \"open\n---\n", "x");
        assert!(p[0].1.starts_with("invalid YAML") && !p[0].1.contains(" at line "), "{p:?}");
        assert_eq!(problems("---\n---\n", "x")[0].1, "the front matter is empty");
        assert_eq!(problems("---\n- a\n---\n", "x")[0].1, "the front matter is not a YAML mapping");
        // Deep nesting is refused by size before YAML parses it (quadratic in libyaml).
        let deep =
            format!("---\nname: x\ndescription: d\nmetadata: {}{}\n---\n", "[".repeat(20_000), "]".repeat(20_000));
        assert!(problems(&deep, "x")[0].1.contains("more than the 16384 kafclaw reads"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_fifo_named_skill_md_is_refused_without_waiting() {
        let dir = std::env::temp_dir().join(format!("kafclaw-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("SKILL.md");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_eq!(read_skill_file(&fifo).unwrap_err(), "not a regular file");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_catalog_escapes_and_follows_the_system_prompt() {
        let s = Skill {
            name: "r".into(),
            description: "a < b & c".into(),
            folder: PathBuf::new(),
            license: None,
            compatibility: None,
            metadata: BTreeMap::new(),
            allowed_tools: Vec::new(),
        };
        let c = catalog(&[s]);
        assert!(c.contains("<description>a &lt; b &amp; c</description>"), "{c}");
        assert_eq!(with_catalog(Some("sys".into()), Some("cat")), Some("sys\n\ncat".into()));
        assert_eq!(with_catalog(None, Some("cat")), Some("cat".into()));
        assert_eq!(with_catalog(Some("sys".into()), None), Some("sys".into()));
    }
}
