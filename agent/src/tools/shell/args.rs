//! The `shell` tool's argument checks: the first, explainable refusal. They read every
//! argument the way a program's option parser would (`--opt=value`, `-xVALUE`, clustered
//! short options, GNU's unambiguous long-option prefixes) and refuse:
//!
//! - shell syntax (`;`, `|`, `&`, backticks, `$(`, `${`, redirections, newlines): there is
//!   no shell, so these could only be a misunderstanding or an attack;
//! - paths out of the root: an absolute path, `~`, or a `..` component, in the argument or
//!   in the value of an option;
//! - per program, the options that run other programs or evaluate code ([`DENIED`]).
//!
//! They are not the guarantee: the kernel sandbox (`crate::sandbox`) is. A program's own
//! language (a `sed` script, an `awk` program) is not parsed beyond the words listed here
//! (`system` in an awk program); GNU `sed` and `gawk` run with `--sandbox`, which disables
//! their `e`/`r`/`w` commands and `system()` ([`forced_options`]).

/// Fragments that only mean something to a shell.
const SHELL_SYNTAX: [&str; 10] = [";", "|", "&", "`", "$(", ">", "<", "\n", "${", "\r"];

/// Options (and `find` primaries, and words of a program's language) that run other
/// programs, load code or hand the program a script from a file, by program. Long options
/// match exactly, with `=value`, or as a GNU abbreviation; one-letter options match anywhere
/// in a cluster (`-uo` holds `-o`); words match anywhere in an argument.
pub const DENIED: &[(&str, &[&str])] = &[
    ("find", &["-exec", "-execdir", "-ok", "-okdir", "-fprint", "-fprint0", "-fprintf", "-fls"]),
    ("awk", &["-f", "--file", "-E", "--exec", "-i", "--include", "-l", "--load", "word:system"]),
    ("gawk", &["-f", "--file", "-E", "--exec", "-i", "--include", "-l", "--load", "word:system"]),
    ("mawk", &["-f", "--file", "word:system"]),
    ("nawk", &["-f", "--file", "word:system"]),
    ("sort", &["--compress-program"]),
    (
        "tar",
        &[
            "--to-command",
            "--use-compress-program",
            "-I",
            "--checkpoint-action",
            "--info-script",
            "--new-volume-script",
            "-F",
            "--rsh-command",
            "--rmt-command",
            "--transform",
            "--xform",
            "-P",
            "--absolute-names",
        ],
    ),
    (
        "git",
        &[
            "-c",
            "--config-env",
            "--exec-path",
            "--upload-pack",
            "--receive-pack",
            "--exec",
            "--ext-diff",
            "--open-files-in-pager",
            "-O",
            "--template",
        ],
    ),
    ("env", &["-S", "--split-string"]),
    ("xargs", &["-a", "--arg-file"]),
    ("rsync", &["-e", "--rsh", "--rsync-path"]),
    ("zip", &["-TT", "--unzip-command"]),
    ("less", &["-k", "--lesskey-file"]),
];

/// Environment variables that make the dynamic loader, the C library or a language runtime
/// load code (`LD_PRELOAD`, `GCONV_PATH`, …); `env NAME=value` may not set them.
const LOADER_VARIABLES: &[&str] = &[
    "LD_*",
    "GCONV_PATH",
    "GETCONF_DIR",
    "LOCPATH",
    "NLSPATH",
    "MALLOC_*",
    "PYTHON*",
    "PERL*",
    "RUBY*",
    "NODE_*",
    "BASH_ENV",
    "ENV",
];

/// Options kafclaw adds in front of a program's own: GNU `sed` and `gawk` with
/// `--sandbox` (no `e`, `r`, `w` commands; no `system()`, no redirections).
pub fn forced_options(program: &str) -> &'static [&'static str] {
    match program {
        "sed" | "gawk" => &["--sandbox"],
        _ => &[],
    }
}

/// Checks `args` for `program`; the refusal says why, in words a model can act on.
pub fn check(program: &str, args: &[String]) -> Result<(), String> {
    for a in std::iter::once(program).chain(args.iter().map(String::as_str)) {
        if let Some(bad) = SHELL_SYNTAX.iter().find(|s| a.contains(*s)) {
            return Err(format!(
                "refused: `{}` contains `{}`; this tool runs no shell",
                a.escape_debug(),
                bad.escape_debug()
            ));
        }
        if a.contains('\0') {
            return Err("refused: an argument contains a NUL byte".into());
        }
    }
    let denied = DENIED.iter().find(|(p, _)| *p == program).map_or(&[][..], |(_, d)| *d);
    // tar's first argument is an option cluster even without a dash (`tar cIf id a.tar`).
    let args: Vec<String> = match args.split_first() {
        Some((first, rest)) if program == "tar" && !first.starts_with('-') => {
            std::iter::once(format!("-{first}")).chain(rest.iter().cloned()).collect()
        }
        _ => args.to_vec(),
    };
    if program == "env" {
        for a in args.iter().take_while(|a| a.contains('=') || a.starts_with('-')) {
            let name = a.split_once('=').map_or("", |(n, _)| n);
            if LOADER_VARIABLES
                .iter()
                .any(|v| name == *v || (v.ends_with('*') && name.starts_with(v.trim_end_matches('*'))))
            {
                return Err(format!(
                    "refused: `{a}` sets `{name}`, which makes programs load code; this tool does not allow it"
                ));
            }
        }
    }
    let mut options_ended = false;
    for a in &args {
        for value in values(a, options_ended) {
            path_ok(a, value)?;
        }
        if a == "--" {
            options_ended = true;
            continue;
        }
        if let Some(d) = denied.iter().find(|d| matches(d, a, options_ended)) {
            let shown = d.strip_prefix("word:").unwrap_or(d);
            return Err(format!(
                "refused: `{shown}` in `{a}` makes `{program}` run other programs or load code; this tool does not allow it"
            ));
        }
    }
    Ok(())
}

/// The parts of `arg` a program may read as a path: the whole argument, the value of
/// `--opt=value`, the value glued to a short option (`-o/tmp/x`), and `key=value` operands
/// (`dd of=/x`).
fn values(arg: &str, options_ended: bool) -> Vec<&str> {
    let mut v = vec![arg];
    if let Some((_, value)) = arg.split_once('=') {
        v.push(value);
    }
    if !options_ended && arg.len() > 2 && arg.starts_with('-') && !arg.starts_with("--") {
        // Any suffix after a run of option letters may be an attached value.
        for (i, c) in arg.char_indices().skip(1) {
            if !c.is_ascii_alphanumeric() {
                v.push(&arg[i..]);
                break;
            }
        }
    }
    v
}

/// Refuses a value that names a path out of the root.
fn path_ok(arg: &str, value: &str) -> Result<(), String> {
    if value.starts_with('/') {
        return Err(format!("refused: `{arg}` names an absolute path; paths are relative to the tool's root"));
    }
    if value.starts_with('~') {
        return Err(format!("refused: `{arg}` names a home folder; paths are relative to the tool's root"));
    }
    if value.split(['/', '=', ':', ',']).any(|part| part == "..") {
        return Err(format!("refused: `{arg}` climbs out with `..`"));
    }
    Ok(())
}

/// Whether `arg` holds the denied option `d`.
fn matches(d: &str, arg: &str, options_ended: bool) -> bool {
    if let Some(word) = d.strip_prefix("word:") {
        // Words of a program's own language, wherever they stand.
        return arg.contains(word);
    }
    if d.starts_with("--") {
        let name = arg.split_once('=').map_or(arg, |(n, _)| n);
        // GNU getopt_long takes any unambiguous prefix of at least one letter.
        return !options_ended && name.len() > 2 && d.starts_with(name) && name.starts_with("--");
    }
    if d.starts_with('-') && d.len() > 2 {
        // Multi-letter single-dash words (`find -exec`, `zip -TT`) are primaries, not options.
        return arg == d;
    }
    let letter = d.trim_start_matches('-');
    !options_ended
        && arg.starts_with('-')
        && !arg.starts_with("--")
        && arg[1..].chars().take_while(char::is_ascii_alphanumeric).any(|c| letter.starts_with(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_reported_argument_vectors_are_refused() {
        for (program, args) in [
            ("find", &[".", "-exec", "touch", "x", "{}", "+"][..]),
            ("sort", &["--output=/tmp/x", "data.txt"]),
            ("sort", &["--out=/tmp/x", "data.txt"]),
            ("sort", &["-o/tmp/x", "data.txt"]),
            ("sort", &["-uo", "/tmp/x", "data.txt"]),
            ("awk", &["BEGIN { system(\"id\") }"]),
            ("tar", &["-cf", "a.tar", "--to-command=id", "x"]),
            ("tar", &["-cf", "a.tar", "--to-c=id", "x"]),
            ("tar", &["-Iid", "-cf", "a.tar", "x"]),
            ("git", &["-c", "core.pager=id", "log"]),
            ("env", &["-S", "ls x"]),
            ("dd", &["if=/etc/passwd", "of=out"]),
            ("cat", &["~root/.ssh/id_rsa"]),
            ("ls", &["--dir=../x"]),
            ("ls", &["a/../../b"]),
            ("xargs", &["-a", "cmds", "ls"]),
            ("env", &["LD_PRELOAD=./notes.txt", "sed", "q", "notes.txt"]),
            ("env", &["-i", "GCONV_PATH=.", "iconv"]),
            ("tar", &["cIf", "id", "a.tar", "x"]),
            ("tar", &["cFf", "id", "b.tar", "x"]),
            ("tar", &["-xf", "q.tar", "--transform=s,^lib64,/lib64,"]),
        ] {
            let e = check(program, &argv(args)).unwrap_err();
            assert!(e.starts_with("refused"), "{program} {args:?}: {e}");
        }
    }

    #[test]
    fn ordinary_use_passes() {
        for (program, args) in [
            ("sed", &["-n", "s/a/b/p", "data.txt"][..]),
            ("sort", &["-u", "-k2", "data.txt"]),
            ("find", &[".", "-name", "*.txt", "-type", "f"]),
            ("grep", &["-rn", "needle", "."]),
            ("git", &["log", "--oneline", "-n", "5"]),
            ("awk", &["{ print $1 }", "data.txt"]),
            ("tar", &["-tf", "a.tar"]),
            ("wc", &["-l", "notes/today.md"]),
        ] {
            check(program, &argv(args)).unwrap_or_else(|e| panic!("{program} {args:?}: {e}"));
        }
    }

    #[test]
    fn shell_syntax_and_nul_are_refused_in_every_argument() {
        for bad in ["a;b", "a|b", "a&b", "`id`", "$(id)", "${x}", ">x", "<x", "a\nb", "a\rb"] {
            assert!(check("echo", &argv(&[bad])).unwrap_err().contains("no shell"), "{bad:?}");
        }
        assert!(check("echo", &argv(&["a\0b"])).unwrap_err().contains("NUL"));
    }

    #[test]
    fn after_the_end_of_options_letters_are_operands() {
        check("sort", &argv(&["--", "-o"])).unwrap();
        assert!(check("sort", &argv(&["--", "/etc/passwd"])).is_err(), "paths are still paths");
    }
}
