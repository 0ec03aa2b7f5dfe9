//! First contact with a fresh server: the inventory names the login the host must end
//! with (`user`, e.g. `deploy`) and a first-contact login (`bootstrap_user`: `root`, or an
//! image's `ubuntu`/`debian`). When `user` is refused on a host that has not been
//! provisioned yet, the run connects as `bootstrap_user`, converges (creating `user` with
//! the inventory's keys), proves a NEW login as `user` with working `sudo -n`, and
//! converges again as `user` — which turns root login off (the sshd rule: only a run that
//! logged in as the deploy user does). Later runs log in as `user` directly.
//!
//! Before the bootstrap login, the key this tool logs in with (the identity file, else the
//! agent's keys and ssh's default key files) must be among the deploy user's
//! `authorized_keys`: otherwise the run would create a user it cannot log in as.

use std::path::{Path, PathBuf};

use crate::inventory::HostSpec;
use crate::transport::TransportError;

/// Whether a connect error means the login itself was refused (no such user, key not
/// accepted), as opposed to an unreachable host or a host-key problem.
pub(crate) fn login_refused(e: &TransportError) -> bool {
    match e {
        TransportError::Connect { reason, .. } => {
            reason.contains("Permission denied") || reason.contains("Too many authentication")
        }
        _ => false,
    }
}

/// The first-contact login to fall back to for `spec`, when it has one that differs from
/// its final login.
pub(crate) fn bootstrap_login(spec: &HostSpec) -> Option<&str> {
    let user = spec.connection.user.as_deref();
    spec.connection
        .bootstrap_user
        .as_deref()
        .filter(|b| Some(*b) != user)
}

/// The key blob (`<type> <base64>`, no comment) of an `authorized_keys`-style line.
fn key_blob(line: &str) -> Option<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| w.starts_with("ssh-") || w.starts_with("ecdsa-") || w.starts_with("sk-"))?;
    let blob = words.get(at + 1)?;
    Some(format!("{} {blob}", words[at]))
}

/// Public keys this tool's `ssh` would offer: the identity file's `.pub` when the inventory
/// names one; else the agent's keys and ssh's default key files.
pub(crate) fn local_login_keys(identity_file: Option<&Path>) -> Vec<String> {
    let read_pub = |p: &Path| -> Vec<String> {
        let mut pub_path = p.as_os_str().to_owned();
        pub_path.push(".pub");
        std::fs::read_to_string(PathBuf::from(pub_path))
            .map(|t| t.lines().filter_map(key_blob).collect())
            .unwrap_or_default()
    };
    if let Some(p) = identity_file {
        return read_pub(p);
    }
    let mut keys = Vec::new();
    if let Ok(out) = std::process::Command::new("ssh-add")
        .arg("-L")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        && out.status.success()
    {
        keys.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(key_blob),
        );
    }
    if let Some(home) = std::env::var_os("HOME") {
        for name in [
            "id_ed25519",
            "id_ecdsa",
            "id_rsa",
            "id_ed25519_sk",
            "id_ecdsa_sk",
        ] {
            keys.extend(read_pub(&Path::new(&home).join(".ssh").join(name)));
        }
    }
    keys
}

/// Before a bootstrap login: the final login must be the inventory's deploy user, and the
/// key this tool logs in with must be among its `authorized_keys`. `local_keys` are the
/// blobs of [`local_login_keys`].
pub(crate) fn check_deploy_keys(spec: &HostSpec, local_keys: &[String]) -> Result<(), String> {
    let user = spec.connection.user.as_deref().unwrap_or("(unset)");
    let Some(deploy) = spec.vars.deploy_user.as_ref() else {
        return Err(format!(
            "bootstrap_user is set, but the inventory has no [vars.deploy_user] to create `{user}` with"
        ));
    };
    let name = deploy.name.as_deref().unwrap_or("deploy");
    if name != user {
        return Err(format!(
            "bootstrap_user is set: `user` ({user}) must be the deploy user the run creates (vars.deploy_user.name = {name})"
        ));
    }
    if deploy.sudo == Some(false) {
        return Err(format!(
            "bootstrap_user is set, but vars.deploy_user.sudo = false: the run carries on as `{user}` and needs its `sudo -n`"
        ));
    }
    let authorized: Vec<String> = deploy
        .authorized_keys
        .iter()
        .flatten()
        .filter_map(|k| key_blob(k))
        .collect();
    if authorized.is_empty() {
        return Err(format!(
            "bootstrap_user is set, but vars.deploy_user.authorized_keys is empty: `{user}` could never log in"
        ));
    }
    if !local_keys.iter().any(|k| authorized.contains(k)) {
        let offered = match &spec.connection.identity_file {
            Some(p) => format!("the identity file {}", p.display()),
            None => "the agent's keys or ~/.ssh/id_*".to_string(),
        };
        return Err(format!(
            "none of the keys this tool logs in with ({offered}) is in vars.deploy_user.authorized_keys: after the bootstrap `{user}` would refuse this tool; add its public key there"
        ));
    }
    Ok(())
}

/// Shell that names the sshd lines restricting who may log in (for the message when the
/// deploy user's login is refused right after it was created).
pub(crate) const LOGIN_RESTRICTIONS: &str = "grep -H -n -i -E '^[[:space:]]*(AllowUsers|AllowGroups|DenyUsers|DenyGroups)[[:space:]]' /etc/ssh/sshd_config /etc/ssh/sshd_config.d/*.conf 2>/dev/null || true";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{Connection, DeployUserVars, Vars};

    fn spec(user: &str, bootstrap: Option<&str>, keys: &[&str]) -> HostSpec {
        HostSpec {
            name: "web-1".into(),
            address: "192.0.2.10".into(),
            connection: Connection {
                user: Some(user.into()),
                bootstrap_user: bootstrap.map(str::to_string),
                ..Connection::default()
            },
            groups: Vec::new(),
            vars: Vars {
                deploy_user: Some(DeployUserVars {
                    name: Some("deploy".into()),
                    authorized_keys: Some(keys.iter().map(|k| k.to_string()).collect()),
                    ..DeployUserVars::default()
                }),
                ..Vars::default()
            },
            origins: Default::default(),
        }
    }

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFm9 ops@laptop";

    #[test]
    fn bootstrap_only_when_it_differs_from_the_final_login() {
        assert_eq!(
            bootstrap_login(&spec("deploy", Some("root"), &[KEY])),
            Some("root")
        );
        assert_eq!(
            bootstrap_login(&spec("deploy", Some("deploy"), &[KEY])),
            None
        );
        assert_eq!(bootstrap_login(&spec("deploy", None, &[KEY])), None);
    }

    #[test]
    fn the_tools_own_key_must_be_among_the_deploy_users_keys() {
        let mine = vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFm9".to_string()];
        assert_eq!(
            check_deploy_keys(&spec("deploy", Some("root"), &[KEY]), &mine),
            Ok(())
        );
        // With options in front, as authorized_keys allows.
        let with_options = format!("from=\"10.0.0.0/8\" {KEY}");
        assert_eq!(
            check_deploy_keys(&spec("deploy", Some("root"), &[&with_options]), &mine),
            Ok(())
        );
        let other = vec!["ssh-ed25519 AAAAother".to_string()];
        let e = check_deploy_keys(&spec("deploy", Some("root"), &[KEY]), &other).unwrap_err();
        assert!(e.contains("vars.deploy_user.authorized_keys"), "{e}");
        let e = check_deploy_keys(&spec("admin", Some("root"), &[KEY]), &mine).unwrap_err();
        assert!(e.contains("vars.deploy_user.name = deploy"), "{e}");
        let e = check_deploy_keys(&spec("deploy", Some("root"), &[]), &mine).unwrap_err();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn refused_logins_are_told_from_unreachable_hosts() {
        let refused = TransportError::Connect {
            host: "h".into(),
            reason: "deploy@192.0.2.10: Permission denied (publickey).".into(),
        };
        assert!(login_refused(&refused));
        let down = TransportError::Connect {
            host: "h".into(),
            reason: "connect to host 192.0.2.10 port 22: Connection timed out".into(),
        };
        assert!(!login_refused(&down));
    }

    #[test]
    fn key_blobs_ignore_options_and_comments() {
        assert_eq!(
            key_blob("no-pty,command=\"x y\" ssh-rsa AAAAB3 comment here").as_deref(),
            Some("ssh-rsa AAAAB3")
        );
        assert_eq!(key_blob("# a comment"), None);
    }
}
