//! Issue 13: one `provision up` takes a fresh server to its final state. The inventory
//! names the final login (`user = "deploy"`) and a first-contact login (`bootstrap_user`):
//! the run is refused as `deploy`, connects as the bootstrap user, creates `deploy` with
//! the inventory's key, proves a NEW login as `deploy` with `sudo -n`, converges again as
//! `deploy` (turning root login off) — and the second run logs in as `deploy` directly and
//! changes nothing. A provider drop-in whose `AllowUsers` excludes the deploy user is
//! caught by that proof: the run fails naming the drop-in, the host stays reachable as
//! before. Every outcome is checked over plain SSH logins, not through the tool.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod support;

use std::path::PathBuf;
use std::process::Stdio;

use lab::{HostSpec, LabHost};

fn inventory(dir: &std::path::Path, host: &LabHost, bootstrap_user: &str) -> PathBuf {
    let key = std::fs::read_to_string(host.identity_file.with_extension("pub")).unwrap();
    let text = format!(
        r#"[defaults]
user = "deploy"
bootstrap_user = "{bootstrap_user}"
identity_file = "{identity}"
known_hosts = "{known}"

[hosts.{name}]
address = "{address}"

[vars]
packages = []
upgrade = "none"

[vars.deploy_user]
name = "deploy"
authorized_keys = ["{key}"]

[vars.hardening]
fail2ban = false
os = false
ssh_rate_limit = false

[vars.docker]
enabled = false
"#,
        identity = host.identity_file.display(),
        known = host.known_hosts.display(),
        name = host.name,
        address = host.address,
        key = key.trim(),
    );
    let path = dir.join("inventory.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `script` over a plain login as `user`; its exit status and output.
fn login(host: &LabHost, user: &str, script: &str) -> (bool, String) {
    let out = host
        .ssh_command_as(user)
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .expect("ssh runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn one_up_to_the_final_state(spec: HostSpec) {
    if !lab::testing::skip_unless_lab() {
        return;
    }
    let host = lab::testing::fresh_host_of(spec);
    let first_contact = host.user.clone();
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path(), &host, &first_contact);
    // Before: no deploy user (so the checks below can fail).
    assert!(!login(&host, "deploy", "true").0);

    let up = support::provision(&inv, &["up"], &[]);
    assert_eq!(up.code, 0, "{}", up.text);
    let (ok, out) = login(&host, "deploy", "sudo -n id -u");
    assert!(ok && out.trim() == "0", "deploy logs in with sudo: {out}");
    let (_, sshd) = login(
        &host,
        "deploy",
        "sudo -n sh -c 'PATH=$PATH:/usr/sbin; sshd -T' | grep -i '^permitrootlogin'",
    );
    assert_eq!(
        sshd.trim(),
        "permitrootlogin no",
        "root login off in the same run"
    );
    let (root_ok, root_out) = login(&host, "root", "id -u");
    assert!(!root_ok, "root login must be refused now: {root_out}");

    let again = support::provision(&inv, &["up"], &[]);
    assert_eq!(again.code, 0, "{}", again.text);
    assert_eq!(
        again.changes(),
        0,
        "the second run changes nothing:\n{}",
        again.text
    );
}

#[test]
fn bootstrap_from_root_as_vps_providers_hand_it_out() {
    one_up_to_the_final_state(HostSpec::root(lab::testing::test_os()));
}

#[test]
fn bootstrap_from_the_images_sudo_user_as_cloud_images_hand_it_out() {
    one_up_to_the_final_state(HostSpec::new(lab::testing::test_os()));
}

#[test]
fn an_allowusers_drop_in_that_excludes_the_deploy_user_is_caught_never_a_lockout() {
    if !lab::testing::skip_unless_lab() {
        return;
    }
    let host = lab::testing::fresh_host_of(HostSpec::root(lab::testing::test_os()));
    let (ok, out) = login(
        &host,
        "root",
        "printf 'AllowUsers root\\n' > /etc/ssh/sshd_config.d/60-provider.conf && \
         systemctl try-restart ssh.service",
    );
    assert!(ok, "{out}");
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path(), &host, "root");
    let up = support::provision(&inv, &["up"], &[]);
    assert_eq!(up.code, 1, "{}", up.text);
    let error = up.json["hosts"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("a new login as deploy was refused")
            && error.contains("/etc/ssh/sshd_config.d/60-provider.conf"),
        "the error names the drop-in: {error}"
    );
    // Reachable as before: root still logs in.
    let (root_ok, out) = login(&host, "root", "true");
    assert!(root_ok, "root must still log in: {out}");
}
