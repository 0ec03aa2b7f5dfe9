//! Generating POSIX shell: values become single words, commands are data.
//!
//! A value from an inventory never becomes shell text by splicing: a [`Command`] is a
//! program and its arguments, each quoted by [`quote`] when the command is rendered, with
//! `--` before the operands of programs that take options, so a value starting with `-` is
//! an operand, never an option. Templates that embed values in a shell script get them
//! through [`quote`] too (the `shell` filter of the template environments).

use std::fmt;

/// Quote a string as one POSIX sh word.
///
/// Words made only of safe characters stay bare, except a leading `-` (quoted so that it
/// is visible in rendered commands; quoting does not stop a program from reading it as an
/// option: only `--` does, which [`Command`] adds).
pub fn quote(s: &str) -> String {
    if s.starts_with('-') {
        return single_quoted(s);
    }
    quote_word(s)
}

/// Bare when only safe characters (a leading `-` included), else single-quoted.
fn quote_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b))
    {
        return s.to_string();
    }
    single_quoted(s)
}

fn single_quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A command as data: program, options and operands, quoted only when rendered.
///
/// ```
/// # use common::shell::Command;
/// let c = Command::new("apt-get").arg("install").arg("-y").operands(["-oops", "curl"]);
/// assert_eq!(c.to_string(), "apt-get install -y -- '-oops' curl");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    program: String,
    args: Vec<String>,
    operands: Vec<String>,
}

impl Command {
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            operands: Vec::new(),
        }
    }

    /// An option, an option's value, or a positional word of a program that has no `--`
    /// (e.g. the script of `sh -c`).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// An operand: rendered after `--`, so it is never read as an option.
    pub fn operand(mut self, operand: impl Into<String>) -> Self {
        self.operands.push(operand.into());
        self
    }

    pub fn operands<I, S>(mut self, operands: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.operands.extend(operands.into_iter().map(Into::into));
        self
    }

    /// The argv the program receives (with the `--`), for running it without a shell.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = Vec::with_capacity(2 + self.args.len() + self.operands.len());
        argv.push(self.program.clone());
        argv.extend(self.args.iter().cloned());
        if !self.operands.is_empty() {
            argv.push("--".into());
            argv.extend(self.operands.iter().cloned());
        }
        argv
    }
}

impl fmt::Display for Command {
    /// Program and options as safe words (an option's leading `-` bare: the builder wrote
    /// it), then `--` and the operands through [`quote`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words: Vec<String> = Vec::with_capacity(2 + self.args.len() + self.operands.len());
        words.push(quote_word(&self.program));
        words.extend(self.args.iter().map(|w| quote_word(w)));
        if !self.operands.is_empty() {
            words.push("--".into());
            words.extend(self.operands.iter().map(|w| quote(w)));
        }
        f.write_str(&words.join(" "))
    }
}

/// A value that cannot be written into a systemd unit file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} cannot be written into a systemd unit: it contains a control character")]
pub struct UnitValueError {
    pub value: String,
}

/// A value of a unit setting that is not a command line (`WorkingDirectory=`, `User=`,
/// `StandardOutput=append:…`): `%` doubled so that systemd reads no specifier. Control
/// characters (a newline would start a new setting) are refused.
pub fn systemd_value(s: &str) -> Result<String, UnitValueError> {
    if s.chars().any(char::is_control) {
        return Err(UnitValueError { value: s.into() });
    }
    Ok(s.replace('%', "%%"))
}

/// One word of a unit's command line (`ExecStart=`): bare when it is only safe characters,
/// else double-quoted with `\` and `"` escaped; `%` doubled (no specifiers) and `$` doubled
/// (no environment expansion) either way.
pub fn systemd_word(s: &str) -> Result<String, UnitValueError> {
    systemd_quoted(s, true)
}

/// One `NAME=value` assignment of `Environment=`: like [`systemd_word`], but `$` stays as
/// it is (systemd expands no variables there).
pub fn systemd_assignment(s: &str) -> Result<String, UnitValueError> {
    systemd_quoted(s, false)
}

fn systemd_quoted(s: &str, double_dollar: bool) -> Result<String, UnitValueError> {
    if s.chars().any(char::is_control) {
        return Err(UnitValueError { value: s.into() });
    }
    let mut escaped = s.replace('%', "%%");
    if double_dollar {
        escaped = escaped.replace('$', "$$");
    }
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@+,".contains(&b))
    {
        return Ok(escaped);
    }
    Ok(format!(
        "\"{}\"",
        escaped.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// `chown OWNER:GROUP` then `chmod MODE` of `path`, as two command lines.
pub fn chown_chmod(path: &str, owner: &str, group: &str, mode: u32) -> String {
    format!(
        "{}\n{}",
        Command::new("chown").operands([format!("{owner}:{group}"), path.to_string()]),
        Command::new("chmod").operands([format!("{mode:o}"), path.to_string()])
    )
}

/// `mkdir -p` of `path` (parents as needed), then its owner and mode.
pub fn make_directory(path: &str, owner: &str, group: &str, mode: u32) -> String {
    format!(
        "{}\n{}",
        Command::new("mkdir").arg("-p").operand(path),
        chown_chmod(path, owner, group, mode)
    )
}

/// Shell function that writes a file atomically from the next `len` bytes of stdin.
///
/// `__provision_put PATH MODE OWNER[:GROUP] LEN`: temp file beside the target, exact length
/// check (a cut connection leaves no half-written file), fsync, backup of the old file as
/// `PATH.provision-bak`, rename over the target. A backup that cannot be written completely
/// (disk full) is removed, never left truncated: a rollback copies it over the target.
pub(crate) const PUT_FUNCTION: &str = r#"__provision_put() {
  __p=$1; __d=$(dirname -- "$__p")
  __t=$(mktemp -- "$__d/.provision-tmp.XXXXXX") || return 1
  head -c "$4" > "$__t" || { rm -f -- "$__t"; return 1; }
  __n=$(wc -c < "$__t")
  if [ "$__n" -ne "$4" ]; then rm -f -- "$__t"; echo "short write to $__p: $__n of $4 bytes" >&2; return 1; fi
  chmod -- "$2" "$__t" && chown -- "$3" "$__t" || { rm -f -- "$__t"; return 1; }
  sync -- "$__t" 2>/dev/null || sync
  if [ -f "$__p" ]; then cp -p -- "$__p" "$__p.provision-bak" || { rm -f -- "$__t" "$__p.provision-bak"; return 1; }; fi
  mv -f -- "$__t" "$__p" || { rm -f -- "$__t"; return 1; }
}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_values_have_no_specifiers_or_new_settings() {
        assert_eq!(systemd_value("/opt/a b/%h").unwrap(), "/opt/a b/%%h");
        assert!(systemd_value("/opt/x\nExecStartPre=/bin/sh").is_err());
        assert_eq!(
            systemd_word("/usr/local/sbin/x-backup").unwrap(),
            "/usr/local/sbin/x-backup"
        );
        assert_eq!(
            systemd_word("/opt/a b/$HOME%i").unwrap(),
            "\"/opt/a b/$$HOME%%i\""
        );
        assert_eq!(systemd_word(r#"a"b\c"#).unwrap(), r#""a\"b\\c""#);
        assert_eq!(systemd_assignment("P=/a b/$x").unwrap(), "\"P=/a b/$x\"");
    }

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(quote("-oops"), "'-oops'");
        assert_eq!(quote("--"), "'--'");
        assert_eq!(quote("/etc/ssh/sshd_config"), "/etc/ssh/sshd_config");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("$(reboot)"), "'$(reboot)'");
    }

    /// `sh -c` prints each word of `words` (already shell text) NUL-terminated.
    fn words_through_sh(words: &str) -> Vec<String> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("for a in {words}; do printf '%s\\0' \"$a\"; done"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let mut v: Vec<String> = text.split('\0').map(str::to_string).collect();
        v.pop();
        v
    }

    use proptest::prelude::*;

    proptest! {
        /// Issue 11: any string (sh arguments cannot hold NUL) is exactly one word, itself.
        #[test]
        fn quote_round_trips_through_sh(s in "[^\\x00]*") {
            prop_assert_eq!(words_through_sh(&quote(&s)), vec![s]);
        }

        /// Any text, including the shell's own syntax and leading dashes.
        #[test]
        fn quote_round_trips_shell_syntax(s in proptest::collection::vec(
            prop_oneof![
                Just("$(".to_string()), Just("`".to_string()),
                Just("'".to_string()), Just("\"".to_string()),
                Just("\\".to_string()), Just(";".to_string()),
                Just("\n".to_string()), Just("-".to_string()),
                Just("%s".to_string()), Just("*".to_string()),
                Just(" ".to_string()), Just("~".to_string()),
                "[a-z]{0,3}".prop_map(|s: String| s),
            ],
            0..12,
        ).prop_map(|v| v.concat())) {
            prop_assert_eq!(words_through_sh(&quote(&s)), vec![s]);
        }

        /// A rendered command's argv is the builder's, `--` before the operands.
        #[test]
        fn command_argv_round_trips(
            args in proptest::collection::vec("-[a-z]{1,3}", 0..3),
            operands in proptest::collection::vec("[^\\x00]*", 1..4),
        ) {
            let c = Command::new("x").args(args.clone()).operands(operands.clone());
            let rendered = c.to_string();
            let words = words_through_sh(&rendered);
            prop_assert_eq!(&words, &c.argv());
            let mut want = vec!["x".to_string()];
            want.extend(args);
            want.push("--".into());
            want.extend(operands);
            prop_assert_eq!(words, want);
        }
    }
}
