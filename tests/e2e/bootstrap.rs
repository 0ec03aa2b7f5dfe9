//! Issue 13: one `provision up` takes a fresh server to its final state. The inventory
//! names the final login (`user = "deploy"`) and a first-contact login (`bootstrap_user`):
//! the run is refused as `deploy`, connects as the bootstrap user, creates `deploy` with
//! the inventory's key, proves a NEW login as `deploy` with `sudo -n`, converges again as
//! `deploy` (turning root login off) — and the second run logs in as `deploy` directly and
//! changes nothing. A provider drop-in whose `AllowUsers` excludes the deploy user is
//! caught by that proof: the run fails naming the drop-in, the host stays reachable as
//! before. Every outcome is checked over plain SSH logins, not through the tool.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use crate::support;

use common::report::ResourceStatus;
use std::path::PathBuf;
use std::process::Stdio;

use lab::{HostSpec, LabHost};

fn inventory(dir: &std::path::Path, host: &LabHost, bootstrap_user: &str) -> PathBuf {
    let key = std::fs::read_to_string(host.identity_file.with_extension("pub")).unwrap();
    support::write_inventory(
        dir,
        host,
        &format!("user = \"deploy\"\nbootstrap_user = \"{bootstrap_user}\""),
        &format!(
            r#"[vars]
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
            key = key.trim(),
        ),
    )
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

    let up = support::up(&inv);
    assert_eq!(up.code(), 0, "{up}");
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

    let again = support::up(&inv);
    assert_eq!(again.code(), 0, "{again}");
    assert_eq!(
        again.changes(),
        0,
        "the second run changes nothing:\n{again}"
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
    let up = support::up(&inv);
    assert_eq!(up.code(), 1, "{up}");
    let error = up.error();
    assert!(
        error.contains("a new login as deploy was refused")
            && error.contains("/etc/ssh/sshd_config.d/60-provider.conf"),
        "the error names the drop-in: {error}"
    );
    // Reachable as before: root still logs in.
    let (root_ok, out) = login(&host, "root", "true");
    assert!(root_ok, "root must still log in: {out}");
}

/// Issue 13, whole: from a fresh server handed out with root, one `up` with an app under a
/// custom `app.path` and a certificate from a CA (Pebble, HTTP-01 on the host's port 80):
/// `check` first shows the placeholder and the certificate it would obtain; `up` ends with
/// root login refused, the deploy user logging in with sudo, the CA's certificate in the
/// app's `ssl/` where its nginx reads it (nginx's config test passes with it), the renewal
/// timer active; the second `up` changes nothing and asks the CA nothing.
///
/// The binary: the renewal timer `up` installs runs this very binary (its hash is what
/// the second run checks from the host's cache), and the certificate state is chosen by
/// `PROVISION_CERTS_STATE` in the process's environment.
#[test]
fn one_up_obtains_the_certificate_under_a_custom_app_path_and_schedules_its_renewal() {
    use certs::testing::{Pebble, PebbleOptions};
    if !support::lab_and_pebble() {
        return;
    }
    let host = lab::testing::fresh_host_of(HostSpec::root(lab::testing::test_os()));
    let pebble = Pebble::start(PebbleOptions {
        http_port: 80,
        default_ipv4: host.address.to_string(),
        ..PebbleOptions::default()
    })
    .expect("pebble");
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path(), &host, "root");
    let mut text = std::fs::read_to_string(&inv).unwrap();
    text.push_str(&format!(
        r#"
[vars.app]
name = "meeting"
template = "ai-meeting"
domain = "app.example.com"
path = "/srv/meeting"

[vars.certs]
ca = "{ca}"
ca_root = "{root}"
email = "ops@example.com"
domains = ["app.example.com"]
"#,
        ca = pebble.directory_url,
        root = pebble.api_root.display(),
    ));
    std::fs::write(&inv, text).unwrap();
    let state = dir.path().join("certs-state");
    let env = [("PROVISION_CERTS_STATE", state.to_str().unwrap())];
    let ssl = "/srv/meeting/ssl";

    // check: the placeholder and the certificate are shown; nothing asked of the CA.
    let check = support::provision(&inv, &["check"], &env);
    assert_eq!(check.code, 2, "{}", check.text);
    let resources = check.json["hosts"][0]["resources"].clone();
    let find = |id: &str| {
        resources
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["id"] == id).cloned())
            .unwrap_or_else(|| panic!("no {id} in {resources:#}"))
    };
    let cert = find("certificate:app.example.com");
    assert_eq!(cert["status"], "pending", "{cert:#}");
    assert!(
        cert["detail"].as_str().unwrap().contains("would obtain"),
        "{cert:#}"
    );
    assert_eq!(
        find(&format!("certs-placeholder:{ssl}"))["status"],
        "pending"
    );
    let stored = certs::StateDir::new(&state).load_certificate(&host.name, "app.example.com");
    assert!(stored.unwrap().is_none(), "check obtains nothing");

    let up = support::provision(&inv, &["up"], &env);
    assert_eq!(up.code, 0, "{}", up.text);

    // Checked over plain logins: the final state.
    let (root_ok, root_out) = login(&host, "root", "id -u");
    assert!(!root_ok, "root login must be refused now: {root_out}");
    let (ok, chain) = login(&host, "deploy", &format!("sudo -n cat {ssl}/fullchain.pem"));
    assert!(ok, "{chain}");
    let info = certs::CertInfo::from_pem(chain.as_bytes()).unwrap();
    assert_eq!(info.names, ["app.example.com"]);
    assert!(
        !info.is_self_signed(),
        "the CA's certificate, not the placeholder"
    );
    let (ok, key) = login(&host, "deploy", &format!("sudo -n cat {ssl}/privkey.pem"));
    assert!(ok, "{key}");
    let pair = certs::StoredCertificate {
        fullchain: chain.clone().into_bytes(),
        privkey: key.into_bytes(),
    };
    assert!(
        certs::key_matches(&pair).unwrap(),
        "key and certificate match"
    );
    let (ok, timer) = login(
        &host,
        "deploy",
        "systemctl is-enabled provision-certs-renew.timer; systemctl is-active provision-certs-renew.timer",
    );
    assert_eq!((ok, timer.as_str()), (true, "enabled\nactive\n"));

    // nginx's own config test, with the installed certificate in place of the container's
    // /etc/nginx/ssl/ (nginx installed for this check only, never started).
    let nginx = format!(
        "set -e; export DEBIAN_FRONTEND=noninteractive; \
         printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; \
         apt-get update -qq >/dev/null; apt-get install -y -qq --no-install-recommends nginx >/dev/null; \
         rm -f /usr/sbin/policy-rc.d; \
         sed 's#/etc/nginx/ssl/#{ssl}/#g' /srv/meeting/nginx/nginx.conf > /tmp/nginx-check.conf; \
         nginx -t -c /tmp/nginx-check.conf"
    );
    let (ok, out) = login(
        &host,
        "deploy",
        &format!("sudo -n sh -c {}", common::shell::quote(&nginx)),
    );
    assert!(ok && out.contains("test is successful"), "{out}");

    let again = support::provision(&inv, &["up"], &env);
    assert_eq!(again.code, 0, "{}", again.text);
    assert_eq!(
        again.changes(),
        0,
        "the second run changes nothing:\n{}",
        again.text
    );
    // A current certificate, its files and its timer are checked with everything else, in
    // the one fact round trip (the binary's digest from the host's cache, not rehashed).
    assert_eq!(again.json["hosts"][0]["round_trips"], 1, "{}", again.text);
    let (_, same) = login(&host, "deploy", &format!("sudo -n cat {ssl}/fullchain.pem"));
    assert_eq!(same, chain, "the certificate was not renewed");
    // Converged, and still the provider's sshd line that the drop-in overrides is named.
    let sshd = again.json["hosts"][0]["resources"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["id"] == "sshd").cloned())
        .unwrap_or_default();
    assert_eq!(sshd["status"], "ok", "{sshd:#}");
    let notes = sshd["notes"].to_string();
    assert!(
        notes.contains("/etc/ssh/sshd_config.d/50-cloud-init.conf:1: `PasswordAuthentication yes`"),
        "{sshd:#}"
    );
}

/// A fresh host (root login) in the state unattended-upgrades leaves after a kernel update
/// (see [`require_a_reboot`]), its boot id, and an [`inventory`] for it in `dir`.
fn a_host_that_requires_a_reboot() -> (lab::testing::LabGuard, String, tempfile::TempDir, PathBuf) {
    let host = lab::testing::fresh_host_of(HostSpec::root(lab::testing::test_os()));
    let boot = require_a_reboot(&host);
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path(), &host, "root");
    (host, boot, dir, inv)
}

/// A host in the state unattended-upgrades leaves after a kernel update: the flag file
/// and the packages behind it (both in /run, so a real reboot clears them).
fn require_a_reboot(host: &LabHost) -> String {
    let (ok, out) = login(
        host,
        "root",
        "echo '*** System restart required ***' > /var/run/reboot-required && \
         printf 'linux-image-lab\\nlibc6\\n' > /var/run/reboot-required.pkgs && \
         cat /proc/sys/kernel/random/boot_id",
    );
    assert!(ok, "{out}");
    out.trim().to_string()
}

/// The inventory of [`inventory`] with `reboot` lines added to its `[vars]`.
fn with_reboot(inv: &std::path::Path, lines: &str) {
    let text = std::fs::read_to_string(inv).unwrap();
    let text = text.replacen("[vars]\n", &format!("[vars]\n{lines}\n"), 1);
    std::fs::write(inv, text).unwrap();
}

/// Issue 15: `check` names a required reboot and the packages behind it; `reboot =
/// "never"` and a `reboot_window` the host's clock is outside of both mean no reboot —
/// the boot id is the same after `up`, and the note says why.
#[test]
fn a_required_reboot_is_reported_and_waits_for_its_window() {
    if !lab::testing::skip_unless_lab() {
        return;
    }
    let (host, boot, _dir, inv) = a_host_that_requires_a_reboot();

    let check = support::check(&inv);
    assert_eq!(check.code(), 2, "{check}");
    let flag = check.resource("reboot-required");
    let notes = support::notes(flag);
    assert!(
        notes.contains("required by libc6, linux-image-lab")
            && notes.contains("reboot = \"never\""),
        "{flag:#?}"
    );

    // if-required, but the host's clock is outside the window: no reboot now.
    let (_, hour) = login(&host, "root", "date +%H");
    let hour: u32 = hour.trim().parse().unwrap();
    let window = format!("{:02}:00-{:02}:00", (hour + 2) % 24, (hour + 3) % 24);
    // With unattended-upgrades (upgrade = "security"), which gets the window too.
    let text = std::fs::read_to_string(&inv).unwrap();
    std::fs::write(
        &inv,
        text.replace("upgrade = \"none\"", "upgrade = \"security\""),
    )
    .unwrap();
    with_reboot(
        &inv,
        &format!("reboot = \"if-required\"\nreboot_window = \"{window}\""),
    );
    let up = support::up(&inv);
    assert_eq!(up.code(), 0, "{up}");
    let flag = up.resource("reboot-required");
    assert!(
        support::notes(flag).contains(&format!("outside reboot_window {window}")),
        "{flag:#?}"
    );
    let (ok, after) = login(&host, "deploy", "cat /proc/sys/kernel/random/boot_id");
    assert!(ok, "{after}");
    assert_eq!(after.trim(), boot, "no reboot outside the window");
    let (_, uu) = login(
        &host,
        "deploy",
        "cat /etc/apt/apt.conf.d/50unattended-upgrades",
    );
    let start = &window[..5];
    assert!(
        uu.contains(&format!(
            "Unattended-Upgrade::Automatic-Reboot-Time \"{start}\";"
        )),
        "unattended-upgrades reboots at the window's start:\n{uu}"
    );
}

/// Issue 15: `reboot = "if-required"` without a window: `up` reboots the host at the end of
/// its run, waits for SSH and proves the new boot (the lab boots the container again, as a
/// provider's hypervisor does); the second `up` has nothing to reboot and changes nothing.
#[test]
fn up_reboots_a_host_that_requires_it_and_proves_the_new_boot() {
    if !lab::testing::skip_unless_lab() {
        return;
    }
    let (host, boot, _dir, inv) = a_host_that_requires_a_reboot();
    with_reboot(&inv, "reboot = \"if-required\"");

    let check = support::check(&inv);
    let flag = check.resource("reboot-required");
    assert!(
        support::notes(flag).contains("`up` reboots the host at the end of its run"),
        "{flag:#?}"
    );

    let up = support::up(&inv);
    assert_eq!(up.code(), 0, "{up}");
    let reboot = up.resource("reboot");
    assert_eq!(reboot.status, ResourceStatus::Changed, "{reboot:#?}");
    let detail = &reboot.detail;
    assert!(
        detail.starts_with("rebooted (required by libc6, linux-image-lab): SSH back after"),
        "{detail}"
    );
    let (ok, after) = login(
        &host,
        "deploy",
        "cat /proc/sys/kernel/random/boot_id; test ! -e /var/run/reboot-required && echo cleared",
    );
    assert!(ok, "{after}");
    let mut lines = after.lines();
    assert_ne!(lines.next(), Some(boot.as_str()), "a new boot");
    assert_eq!(lines.next(), Some("cleared"));

    let again = support::up(&inv);
    assert_eq!(again.code(), 0, "{again}");
    assert_eq!(again.changes(), 0, "{again}");
    assert!(again.find("reboot").is_none(), "nothing to reboot: {again}");
}

/// Issue 15: `.env` values from the operator's vault (`app.env_commands`, argv on this
/// machine, no shell): the value reaches the host's `.env` and nothing else — not the
/// run's text or JSON output, not a file on this machine; a second run changes nothing.
///
/// The binary: what it prints (text and JSON, stdout and stderr) is what must not hold
/// the value.
#[test]
fn a_vault_value_reaches_the_hosts_env_and_nothing_else() {
    use std::os::unix::fs::PermissionsExt;
    if !lab::testing::skip_unless_lab() {
        return;
    }
    let host = lab::testing::fresh_host_of(HostSpec::root(lab::testing::test_os()));
    let dir = tempfile::tempdir().unwrap();
    let secret = "vault-4f9c2e81b7d3";
    let vault = dir.path().join("vault");
    std::fs::write(
        &vault,
        format!("#!/bin/sh\n[ \"$1\" = smtp ] || exit 3\necho {secret}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&vault, std::fs::Permissions::from_mode(0o700)).unwrap();
    let inv = inventory(dir.path(), &host, "root");
    let mut text = std::fs::read_to_string(&inv).unwrap();
    text.push_str(&format!(
        "\n[vars.app]\nname = \"meeting\"\ntemplate = \"ai-meeting\"\ndomain = \"app.example.com\"\n\
         [vars.app.env_commands]\nSMTP_PASSWORD = [{:?}, \"smtp\"]\n",
        vault.display().to_string()
    ));
    std::fs::write(&inv, text).unwrap();

    let up = support::provision(&inv, &["up"], &[]);
    assert_eq!(up.code, 0, "{}", up.text);
    assert!(
        !up.text.contains(secret),
        "the value was printed:\n{}",
        up.text
    );
    let (ok, env) = login(&host, "deploy", "sudo -n cat /opt/meeting/.env");
    assert!(ok, "{env}");
    assert!(
        env.lines().any(|l| l == format!("SMTP_PASSWORD={secret}")),
        "{env}"
    );
    let check = support::provision(&inv, &["check"], &[]);
    assert_eq!(check.code, 0, "{}", check.text);
    assert!(!check.text.contains(secret), "{}", check.text);
    let again = support::provision(&inv, &["up"], &[]);
    assert_eq!(again.changes(), 0, "{}", again.text);
    // Nothing on this machine keeps it, but the vault itself.
    for entry in walk(dir.path()) {
        if entry != vault {
            let bytes = std::fs::read(&entry).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(secret),
                "{} holds the value",
                entry.display()
            );
        }
    }
}

/// Every file below `dir`.
fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
