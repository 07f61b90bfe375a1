//! `read_skill`: the built-in tool an `llm` operator with `skills` offers (and only such a
//! one). `{"name": "refunds"}` gives the skill's instructions (the body of its `SKILL.md`,
//! front matter left out); `{"name": "refunds", "path": "references/policy.md"}` gives a file
//! of the skill's folder. Every read is one `openat2` beneath the skill's folder with
//! `RESOLVE_BENEATH` (the `fs_read` tool's kernel-checked reader, `tools/fs/beneath.rs`): `..`,
//! absolute paths and symlinks leading out of the folder are refused by the kernel. Regular
//! UTF-8 files only, at most [`MAX_FILE_BYTES`]; the result is then cut at the operator's
//! `max_tool_output_bytes` like any tool result. Nothing is executed: a script is read as
//! text, never run.
//!
//! Its results are journalled with the answer like every tool result, so a replay reads
//! nothing (and asks no model).

use std::path::PathBuf;

use serde_json::{Value, json};

use super::skills::{MAX_SKILL_BYTES, SKILL_FILE, Skill, split};
use crate::tools::fs::FsRead;
use crate::tools::{CallContext, Tool, ToolFuture, ToolOutput};

/// The tool's name, as the model sees it.
pub const READ_SKILL: &str = "read_skill";

/// Most bytes of a file of a skill `read_skill` returns (256 KiB).
pub const MAX_FILE_BYTES: u64 = 256 * 1024;

/// `read_skill`, over the skills of one operator.
#[derive(Debug)]
pub struct ReadSkill {
    /// Name and folder of each skill, in the order listed.
    skills: Vec<(String, PathBuf)>,
}

impl ReadSkill {
    /// The tool over `skills`.
    pub fn new(skills: &[Skill]) -> Self {
        Self { skills: skills.iter().map(|s| (s.name.clone(), s.folder.clone())).collect() }
    }

    /// The instructions of skill `name` (no `path`), or its file `path`.
    ///
    /// Errors (text for the model): an unknown skill; a path refused or not found (see
    /// `tools::fs`); a `SKILL.md` that lost its front matter since the start.
    pub fn read(&self, name: &str, path: Option<&str>) -> Result<String, String> {
        let Some((_, folder)) = self.skills.iter().find(|(n, _)| n == name) else {
            let known: Vec<&str> = self.skills.iter().map(|(n, _)| n.as_str()).collect();
            return Err(format!("no skill `{name}` here; the skills are: {}", known.join(", ")));
        };
        match path.filter(|p| !p.is_empty()) {
            None => {
                let text = FsRead::new(folder.clone(), MAX_SKILL_BYTES, None).read(SKILL_FILE)?;
                let (_, body) = split(&text).map_err(|p| format!("skill `{name}`: {SKILL_FILE}: {}", p.message))?;
                if body.trim().is_empty() {
                    Ok(format!("The skill `{name}` has no instructions beyond its description."))
                } else {
                    Ok(body)
                }
            }
            Some(p) => FsRead::new(folder.clone(), MAX_FILE_BYTES, None).read(p),
        }
    }
}

impl Tool for ReadSkill {
    fn description(&self) -> String {
        "Read a skill listed in <available_skills>: with `name` only, its instructions; with `name` and \
         `path`, a file of the skill (a path relative to the skill's folder, such as `references/policy.md`). \
         Text files only; nothing is run."
            .into()
    }

    fn parameters(&self) -> Value {
        let names: Vec<&str> = self.skills.iter().map(|(n, _)| n.as_str()).collect();
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "enum": names, "description": "The skill's name."},
                "path": {"type": "string", "description": "A file of the skill, relative to its folder; leave out for the instructions."}
            },
            "required": ["name"]
        })
    }

    fn side_effects(&self) -> bool {
        false
    }

    fn call(&self, args: Value, _: CallContext) -> ToolFuture {
        let result = match args["name"].as_str() {
            None => Err("argument `name` (a string) is missing".to_owned()),
            Some(name) => match &args["path"] {
                Value::Null => self.read(name, None),
                Value::String(p) => self.read(name, Some(p)),
                _ => Err("argument `path` must be a string".to_owned()),
            },
        };
        Box::pin(async move { result.map(ToolOutput::from) })
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::llm::skills::parse;

    fn skill(root: &Path) -> ReadSkill {
        let folder = root.join("refunds");
        std::fs::create_dir_all(folder.join("references")).unwrap();
        std::fs::write(
            folder.join(SKILL_FILE),
            "---\r\nname: refunds\r\ndescription: Refund rules.\r\n---\r\n\r\n# Refunds\r\nCheck the policy.\r\n",
        )
        .unwrap();
        std::fs::write(folder.join("references/policy.md"), "Refunds up to 50 EUR.").unwrap();
        std::fs::write(root.join("secret.txt"), "outside").unwrap();
        let text = std::fs::read_to_string(folder.join(SKILL_FILE)).unwrap();
        let (s, problems) = parse(&text, "refunds", &folder);
        assert_eq!(problems, vec![]);
        ReadSkill::new(&[s.unwrap()])
    }

    #[test]
    fn the_body_without_front_matter_and_files_beneath_the_folder() {
        let d = tempfile::tempdir().unwrap();
        let t = skill(d.path());
        assert_eq!(t.read("refunds", None).unwrap(), "# Refunds\nCheck the policy.\n");
        assert_eq!(t.read("refunds", Some("references/policy.md")).unwrap(), "Refunds up to 50 EUR.");
        assert!(t.read("billing", None).unwrap_err().contains("no skill `billing`"));
    }

    #[test]
    fn escapes_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let t = skill(d.path());
        let folder = d.path().join("refunds");
        std::os::unix::fs::symlink("../secret.txt", folder.join("up.md")).unwrap();
        std::os::unix::fs::symlink(d.path().join("secret.txt"), folder.join("abs.md")).unwrap();
        for (path, why) in [
            ("../secret.txt", "climbs out"),
            ("/etc/passwd", "absolute"),
            ("up.md", "resolves outside"),
            ("abs.md", "resolves outside"),
        ] {
            let e = t.read("refunds", Some(path)).unwrap_err();
            assert!(e.contains(why), "{path}: {e}");
        }
    }
}
