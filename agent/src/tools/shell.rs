//! `shell`: runs one allow-listed program with an argument vector. There is never a shell:
//! the program is executed directly, so `;`, `|`, `&&`, backticks, `$(…)` and redirections
//! would mean nothing — and are refused outright, with arguments that are absolute paths or
//! climb out with `..`. The working directory is the tool's root, the environment is scrubbed
//! to `PATH` and `LANG`, and a run past its time limit is killed.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use super::{CallContext, Tool, ToolFuture, ToolOutput};

/// Where allow-listed programs are looked up.
const PROGRAM_DIRS: [&str; 2] = ["/usr/bin", "/bin"];

/// Fragments that only mean something to a shell.
const SHELL_SYNTAX: [&str; 9] = [";", "|", "&", "`", "$(", ">", "<", "\n", "${"];

/// `shell`.
#[derive(Debug)]
pub struct Shell {
    allow: Vec<String>,
    root: PathBuf,
    timeout: Duration,
    description: Option<String>,
}

/// A run the tool allows: the program's path and its arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct Checked {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
}

impl Shell {
    /// A shell tool running `allow`ed programs in `root`.
    pub fn new(allow: Vec<String>, root: PathBuf, timeout: Duration, description: Option<String>) -> Self {
        Self { allow, root, timeout, description }
    }

    /// Checks an argument vector; the refusal says why.
    pub fn check(&self, argv: &[String]) -> Result<Checked, String> {
        let (program, args) = argv.split_first().ok_or("refused: empty argv")?;
        for a in argv {
            if let Some(bad) = SHELL_SYNTAX.iter().find(|s| a.contains(*s)) {
                return Err(format!("refused: `{a}` contains `{bad}`; this tool runs no shell"));
            }
        }
        if program.contains('/') || !self.allow.iter().any(|p| p == program) {
            return Err(format!("refused: `{program}` is not an allowed program ({})", self.allow.join(", ")));
        }
        for a in args {
            let p = std::path::Path::new(a);
            if p.is_absolute() {
                return Err(format!("refused: `{a}` is an absolute path; paths are relative to the tool's root"));
            }
            if a.split(['/', '=']).any(|part| part == "..") {
                return Err(format!("refused: `{a}` climbs out with `..`"));
            }
        }
        let program = PROGRAM_DIRS
            .iter()
            .map(|d| PathBuf::from(d).join(program))
            .find(|p| p.is_file())
            .ok_or_else(|| format!("`{program}` is allowed but not installed"))?;
        Ok(Checked { program, args: args.to_vec() })
    }

    /// Runs an argument vector; the program's output (stdout, then stderr) or why not.
    pub async fn run(&self, argv: Vec<String>) -> Result<String, String> {
        let checked = self.check(&argv)?;
        let mut cmd = tokio::process::Command::new(&checked.program);
        cmd.args(&checked.args)
            .current_dir(&self.root)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| format!("`{}`: {e}", argv[0]))?;
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| format!("`{}` ran past its {:?} limit and was killed", argv[0], self.timeout))?
            .map_err(|e| format!("`{}`: {e}", argv[0]))?;
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.stderr.is_empty() {
            text.push_str(&String::from_utf8_lossy(&output.stderr));
        }
        if output.status.success() {
            Ok(text)
        } else {
            Err(format!("`{}` failed ({}): {text}", argv[0], output.status))
        }
    }
}

impl Tool for Shell {
    fn description(&self) -> String {
        self.description
            .clone()
            .unwrap_or_else(|| format!("Run one of these programs with arguments: {}.", self.allow.join(", ")))
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"argv": {"type": "array", "items": {"type": "string"}}}, "required": ["argv"]})
    }
    fn side_effects(&self) -> bool {
        true
    }
    fn call(&self, args: Value, _: CallContext) -> ToolFuture {
        let argv: Option<Vec<String>> =
            args["argv"].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect());
        let me = Shell { allow: self.allow.clone(), root: self.root.clone(), timeout: self.timeout, description: None };
        Box::pin(async move {
            match argv {
                Some(argv) => me.run(argv).await.map(ToolOutput::from),
                None => Err("argument `argv` (a list of strings) is missing".into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(root: PathBuf) -> Shell {
        Shell::new(
            vec!["ls".into(), "echo".into(), "sleep".into(), "env".into()],
            root,
            Duration::from_millis(500),
            None,
        )
    }

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn refuses_shell_syntax() {
        let t = tool(PathBuf::from("/tmp"));
        for bad in [
            &["echo", "a;", "rm"][..],
            &["echo", "a", "|", "cat"],
            &["echo", "a", "&&", "ls"],
            &["echo", "`id`"],
            &["echo", "$(id)"],
            &["echo", "hi", ">", "out.txt"],
            &["echo", "<", "in.txt"],
            &["ls", "2>/dev/null"],
        ] {
            let e = t.check(&argv(bad)).unwrap_err();
            assert!(e.contains("refused") && e.contains("no shell"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn refuses_programs_not_allowed() {
        let t = tool(PathBuf::from("/tmp"));
        for bad in [&["rm", "x"][..], &["/bin/ls"], &["sh", "-c", "ls"], &["./ls"]] {
            let e = t.check(&argv(bad)).unwrap_err();
            assert!(e.contains("not an allowed program"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn refuses_paths_out_of_the_jail() {
        let t = tool(PathBuf::from("/tmp"));
        for bad in [&["ls", ".."][..], &["ls", "../etc"], &["ls", "a/../../b"], &["ls", "/etc"], &["ls", "--dir=../x"]]
        {
            let e = t.check(&argv(bad)).unwrap_err();
            assert!(e.contains("refused"), "{bad:?}: {e}");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn runs_in_the_root_with_a_scrubbed_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("here.txt"), "x").unwrap();
        // SAFETY: a test-only variable; the tool must not pass it on.
        unsafe { std::env::set_var("KAFCLAW_SECRET_FOR_TEST", "leak") };
        let t = tool(dir.path().to_path_buf());
        assert_eq!(t.run(argv(&["ls"])).await.unwrap(), "here.txt\n");
        let env = t.run(argv(&["env"])).await.unwrap();
        assert!(!env.contains("KAFCLAW_SECRET_FOR_TEST"), "{env}");
        assert!(env.contains("PATH=/usr/bin:/bin"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn kills_runs_past_their_time() {
        let t = tool(PathBuf::from("/tmp"));
        let started = std::time::Instant::now();
        let e = t.run(argv(&["sleep", "5"])).await.unwrap_err();
        assert!(e.contains("killed"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
