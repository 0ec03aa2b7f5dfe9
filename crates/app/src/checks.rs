//! Checks run on the host against a rendered file before it replaces the old one
//! (`File::validate`): the file is in place, and the engine restores the old one when the
//! check fails.
//!
//! - Compose: `docker compose config -q` (or `docker-compose` v1) when installed; hosts
//!   without Docker skip the check and still get the file.
//! - nginx: the config is written for the nginx container, whose names do not exist on the
//!   host: upstreams are looked up at request time (`resolver` + variables, or 127.0.0.1
//!   with host networking), there is no `user` directive, and the only container path is
//!   `/etc/nginx/ssl/`. When nginx is installed on the host, a copy with that path pointing
//!   at the app's `ssl/` is checked with `nginx -t`; if no certificate is there yet (a fresh
//!   host, before the certs step), a throwaway self-signed pair is made with openssl for the
//!   check. Without nginx on the host the check is skipped: the container checks the file
//!   when it starts.
//!
//! The checks are commands as data: `sh -c SCRIPT NAME [VALUES]`, and the engine passes the
//! file's path as one more argument. Nothing is substituted into the scripts' text: values
//! (the ssl directory, the path) reach them as positional parameters.

use common::shell::Command;

/// The compose check, as a `File::validate` command (`$1`: the file).
pub(crate) fn compose_command() -> Command {
    let script = r#"f=$1
if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
  docker compose -f "$f" config -q
elif command -v docker-compose >/dev/null 2>&1; then
  docker-compose -f "$f" config -q
else
  echo "docker compose is not installed: $f not checked" >&2
fi"#;
    Command::new("sh").args(["-c", script, "compose-check"])
}

/// The nginx check script; `$1` is the app's certificate dir, `$2` the config file.
pub(crate) const NGINX_SCRIPT: &str = r#"ssl=$1; f=$2
if ! command -v nginx >/dev/null 2>&1; then
  echo "nginx is not installed on the host: $f not checked (the container checks it when it starts)" >&2
  exit 0
fi
t=$(mktemp -d) || exit 1
trap 'rm -rf "$t"' EXIT
if [ -f "$ssl/fullchain.pem" ] && [ -f "$ssl/privkey.pem" ]; then
  certs=$ssl
elif command -v openssl >/dev/null 2>&1; then
  openssl req -x509 -nodes -newkey rsa:2048 -days 1 -subj /CN=nginx-check -keyout "$t/privkey.pem" -out "$t/fullchain.pem" >/dev/null 2>&1 || exit 1
  certs=$t
  echo "no certificate in $ssl yet: checked with a throwaway one" >&2
else
  echo "no certificate in $ssl and no openssl: $f not checked" >&2
  exit 0
fi
sed "s#/etc/nginx/ssl/#$certs/#g" "$f" > "$t/nginx.conf"
nginx -t -q -c "$t/nginx.conf""#;

/// The nginx check, as a `File::validate` command.
pub fn nginx_command(ssl_dir: &str) -> Command {
    Command::new("sh").args(["-c", NGINX_SCRIPT, "nginx-check", ssl_dir])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run a check the way the engine renders it: the command, then the file's path.
    fn run(command: &Command, file: &std::path::Path) -> std::process::Output {
        let rendered = command.clone().arg(file.display().to_string()).to_string();
        std::process::Command::new("sh")
            .arg("-c")
            .arg(rendered)
            .output()
            .unwrap()
    }

    /// Issue 11: an app path with `%s`, `$(…)` or quotes is data for the checks.
    #[test]
    fn hostile_paths_reach_the_checks_as_data() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("marker");
        let m = marker.display();
        for name in [
            format!("a%s'$(touch {m})'"),
            format!("x'; touch {m}; '"),
            format!("`touch {m}`"),
            format!("-o$(touch {m})"),
        ] {
            let sub = dir.path().join(&name);
            std::fs::create_dir_all(&sub).unwrap();
            let conf = sub.join("nginx.conf");
            std::fs::write(&conf, "events {}\nhttp {}\n").unwrap();
            let ssl = sub.join("ssl").display().to_string();
            let out = run(&nginx_command(&ssl), &conf);
            let _ = run(&compose_command(), &conf);
            assert!(!marker.exists(), "{name}: {out:?}");
        }
    }

    #[test]
    fn checks_run_under_sh_and_skip_or_check_with_what_the_machine_has() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, "events {}\nhttp {}\n").unwrap();
        let out = run(
            &nginx_command(&dir.path().join("ssl").display().to_string()),
            &conf,
        );
        let has_nginx = std::process::Command::new("sh")
            .args(["-c", "command -v nginx"])
            .output()
            .unwrap()
            .status
            .success();
        if !has_nginx {
            assert!(out.status.success(), "{out:?}");
            assert!(String::from_utf8_lossy(&out.stderr).contains("not installed"));
        }
        let compose = dir.path().join("docker-compose.yml");
        std::fs::write(&compose, "services: {}\n").unwrap();
        let out = run(&compose_command(), &compose);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || !stderr.contains("not installed"),
            "{out:?}"
        );
    }
}
