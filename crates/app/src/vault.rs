//! `.env` values from the operator's vault: `app.env_commands = { KEY = ["pass", "show",
//! "smtp"] }` runs the command on the controller (as argv, never through a shell) when the
//! host's resources are built, and its standard output, without the trailing newline, is the
//! value.
//!
//! The value is a secret like a generated one: it only ever reaches the `.env` payload (the
//! file is sensitive: never in diffs, plans, reports or `Debug`), it is not logged and not
//! written anywhere on the controller. A command that cannot run or fails stops the host
//! before anything is applied; the error names the key and the exit status, never the
//! output. The vault's own messages (standard error) and prompts (standard input) go to
//! the operator's terminal, as if they had run the command themselves.

use std::process::{Command, Stdio};

use crate::AppError;

/// Run `argv` and return its output as a one-line value.
pub fn run(key: &str, argv: &[String]) -> Result<String, AppError> {
    let fail = |problem: String| AppError::EnvCommand {
        key: key.to_string(),
        problem,
    };
    let (program, args) = argv
        .split_first()
        .filter(|(p, _)| !p.trim().is_empty())
        .ok_or_else(|| fail("the command is empty".into()))?;
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| fail(format!("`{program}` could not be run: {e}")))?;
    if !output.status.success() {
        let status = match output.status.code() {
            Some(code) => format!("exit status {code}"),
            None => {
                #[cfg(unix)]
                {
                    use std::os::unix::process::ExitStatusExt;
                    match output.status.signal() {
                        Some(sig) => format!("signal {sig}"),
                        None => "no exit status".to_string(),
                    }
                }
                #[cfg(not(unix))]
                {
                    "no exit status".to_string()
                }
            }
        };
        return Err(fail(format!(
            "`{program}` failed with {status} (its output is not shown)"
        )));
    }
    // Not shown in any error below: it is (or holds) the secret.
    let value = String::from_utf8(output.stdout)
        .map_err(|_| fail(format!("`{program}` printed something that is not UTF-8")))?;
    let value = value.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(fail(format!("`{program}` printed nothing")));
    }
    if value.contains(['\n', '\r', '\0']) {
        return Err(fail(format!(
            "`{program}` printed more than one line; a .env value is one line (`pass show` prints the whole entry: keep the password alone in it)"
        )));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn the_output_without_its_trailing_newline_is_the_value() {
        assert_eq!(
            run("K", &sh("printf 'v a$l\\n'")).unwrap(),
            "v a$l",
            "argv: no shell around it, the output as printed"
        );
        assert_eq!(
            run("K", &["printf".into(), "%s".into(), "x;y".into()]).unwrap(),
            "x;y"
        );
    }

    #[test]
    fn a_failure_names_the_key_and_the_status_never_the_output() {
        let e = run("SMTP_PASSWORD", &sh("echo leaked-secret; exit 3"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "app.env_commands.SMTP_PASSWORD: `sh` failed with exit status 3 (its output is not shown)"
        );
        let e = run("K", &["/nonexistent/provision-vault".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("app.env_commands.K: `/nonexistent/provision-vault` could not be run"),
            "{e}"
        );
        for (script, problem) in [
            ("printf ''", "printed nothing"),
            ("printf 'leaked\\nsecond\\n'", "more than one line"),
        ] {
            let e = run("K", &sh(script)).unwrap_err().to_string();
            assert!(e.contains(problem), "{script}: {e}");
            assert!(!e.contains("leaked"), "{e}");
        }
        assert!(run("K", &[]).unwrap_err().to_string().contains("empty"));
    }
}
