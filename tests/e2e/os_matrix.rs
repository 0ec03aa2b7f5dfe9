//! The OS matrix (issue 10): on a faithful fresh server of each OS — logged in as the
//! image's sudo user (`ubuntu`, `debian`), root refused, cloud-init's sshd drop-in — the
//! real binary converges the seeds/002 job, a second run changes nothing, sshd moves to
//! another port past a provider drop-in's own `Port` line and back (each move proven by a
//! login on the new port, later runs finding the host there), a deliberately broken sshd
//! change is rolled back by the host, and one certificate comes from Pebble over HTTP-01.
//!
//! Every outcome is checked over separate plain SSH logins, not through the tool.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use crate::support;

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use certs::testing::{Pebble, PebbleOptions, pebble_installed};
use lab::{HostSpec, LabHost, Os};
use support::Run;

/// The seeds/002 job, as `provision lab demo` runs it.
const JOB: &str = include_str!("../../crates/jobs/src/demo-vars.toml");

/// `script` as root over a plain login as `user` on `port`; panics with the output when
/// it fails.
fn on_host(host: &LabHost, user: &str, port: u16, script: &str) -> String {
    let out = host
        .ssh_command_to(user, port)
        .arg(format!(
            "sudo -n sh -c {}",
            common::shell::quote(&format!("PATH=$PATH:/usr/sbin:/sbin; {script}"))
        ))
        .stdin(Stdio::null())
        .output()
        .expect("ssh runs");
    assert!(
        out.status.success(),
        "`{script}` as {user} on port {port} of {} failed:\n{}{}",
        host.name,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn port_open(host: &LabHost, port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from((host.address, port)),
        Duration::from_secs(2),
    )
    .is_ok()
}

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    /// An inventory for `host`: login `port`, the job, `hardening` keys (TOML lines) and
    /// `extra` tables appended after the job.
    fn write(&self, host: &LabHost, port: u16, hardening: &str, extra: &str) -> PathBuf {
        // The deploy user gets the lab's key, so its login can be checked.
        let key = std::fs::read_to_string(host.identity_file.with_extension("pub")).unwrap();
        let job = JOB.replace(
            "[vars.deploy_user]\nname = \"deploy\"\n",
            &format!(
                "[vars.deploy_user]\nname = \"deploy\"\nauthorized_keys = [\"{}\"]\n",
                key.trim()
            ),
        );
        assert_ne!(job, JOB, "the job names its deploy user");
        // SSH is allowed, not rate-limited (`ufw limit` refuses the 6th new connection
        // within 30 s): this test logs in far more often than an operator does; the limit
        // has tests of its own (the hardening module).
        let job = format!("{job}\n[vars.hardening]\nssh_rate_limit = false\n{hardening}");
        support::write_inventory(
            self.dir.path(),
            host,
            &format!("user = \"{}\"\nport = {port}", host.user),
            &format!("{job}\n{extra}"),
        )
    }

    fn provision(&self, host: &LabHost, args: &[&str], env: &[(&str, &str)]) -> Run {
        print!("{}: ", host.os);
        let state = self.dir.path().join("certs-state");
        let state = state.to_string_lossy();
        let mut env = env.to_vec();
        env.push(("PROVISION_CERTS_STATE", &state));
        support::provision(&self.dir.path().join("inventory.toml"), args, &env)
    }
}

fn sshd_ports(host: &LabHost, user: &str, port: u16) -> Vec<String> {
    let t = on_host(host, user, port, "sshd -T");
    let mut ports: Vec<String> = t
        .lines()
        .filter_map(|l| l.strip_prefix("port "))
        .map(str::to_string)
        .collect();
    ports.sort();
    ports
}

/// `major.minor` of the first `N.N` in `text`.
fn version_in(text: &str) -> Option<(u32, u32)> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let mut parts = text[start..]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn the_matrix(os: Os) {
    if !lab::testing::skip_unless_lab() {
        return;
    }
    assert!(
        pebble_installed() || !lab::testing::lab_required(),
        "pebble is required here but not installed"
    );
    let total = Instant::now();
    let host = lab::testing::fresh_host_of(HostSpec::new(os));
    let user = host.user.clone();
    assert_eq!(user, os.default_user());
    let ws = Workspace {
        dir: tempfile::tempdir().unwrap(),
    };

    // 1. A fresh converge of the seeds/002 job from the image's sudo user.
    ws.write(&host, 22, "", "");
    let started = Instant::now();
    let up = ws.provision(&host, &["up"], &[]);
    let converge = started.elapsed();
    assert_eq!(up.code, 0, "{os}: first up\n{}", up.text);
    assert!(
        up.changes() > 10,
        "{os}: a fresh host needs work\n{}",
        up.text
    );
    let facts = on_host(
        &host,
        "deploy",
        22,
        "ufw status | head -1; sshd -T | grep -E '^(passwordauthentication|permitrootlogin) '; \
         readlink /etc/localtime; systemctl is-active docker fail2ban; test -d /opt/ai-meeting/data && echo app-tree",
    );
    assert!(facts.contains("Status: active"), "{os}: {facts}");
    assert!(
        facts.contains("passwordauthentication no"),
        "{os}: cloud-init's drop-in lost: {facts}"
    );
    // Keys only until a run logs in as the deploy user (the root-login rule of sshd).
    assert!(
        facts.contains("permitrootlogin without-password") || facts.contains("permitrootlogin no"),
        "{os}: {facts}"
    );
    assert!(
        facts.contains("/usr/share/zoneinfo/Asia/Shanghai"),
        "{os}: {facts}"
    );
    assert!(
        facts.contains("active\nactive"),
        "{os}: docker, fail2ban: {facts}"
    );
    assert!(facts.contains("app-tree"), "{os}: {facts}");
    let compose = on_host(
        &host,
        "deploy",
        22,
        "su deploy -s /bin/sh -c 'docker compose version --short' 2>&1 || true",
    );
    if os == Os::Debian12 {
        // Debian 12's archive has compose v1 only: `check` says so plainly.
        assert!(up.text.contains("only compose v1"), "{os}:\n{}", up.text);
    } else {
        let v = version_in(&compose);
        assert!(
            v.is_some_and(|v| v >= (2, 20)),
            "{os}: `docker compose version` as the deploy user: {compose}"
        );
    }

    // 2. The second run changes nothing.
    let started = Instant::now();
    let again = ws.provision(&host, &["up"], &[]);
    let noop = started.elapsed();
    assert_eq!(again.code, 0, "{os}: second up\n{}", again.text);
    assert_eq!(
        again.changes(),
        0,
        "{os}: second up changed something\n{}",
        again.text
    );

    // 3. A provider drop-in with its own `Port 22` (Port lines add up across files), and
    //    sshd moved to 2200: the proof login goes to 2200, and only 2200 is left.
    on_host(
        &host,
        "deploy",
        22,
        "printf 'Port 22\\nUseDNS no\\n' > /etc/ssh/sshd_config.d/60-provider.conf",
    );
    ws.write(&host, 22, "ssh_port = 2200\n", "");
    let moved = ws.provision(&host, &["--rollback-window", "20", "up"], &[]);
    assert_eq!(moved.code, 0, "{os}: move to 2200\n{}", moved.text);
    assert_eq!(sshd_ports(&host, "deploy", 2200), ["2200"], "{os}");
    assert!(!port_open(&host, 22), "{os}: port 22 still answers");
    let provider = on_host(
        &host,
        "deploy",
        2200,
        "cat /etc/ssh/sshd_config.d/60-provider.conf; echo ---; cat /etc/ssh/sshd_config.d/60-provider.conf.provision-bak",
    );
    assert!(
        provider.contains("# Port 22") && provider.ends_with("Port 22\nUseDNS no"),
        "{os}: {provider}"
    );
    // A later run with the same inventory (port 22) finds the host on 2200.
    let check = ws.provision(&host, &["check"], &[]);
    assert_eq!(check.code, 0, "{os}: check after the move\n{}", check.text);

    // 4. And back: the inventory now says 2200 (where it is), ssh_port 22.
    ws.write(&host, 2200, "ssh_port = 22\n", "");
    let back = ws.provision(&host, &["--rollback-window", "20", "up"], &[]);
    assert_eq!(back.code, 0, "{os}: move back to 22\n{}", back.text);
    assert_eq!(sshd_ports(&host, "deploy", 22), ["22"], "{os}");
    assert!(!port_open(&host, 2200), "{os}: port 2200 still answers");

    // 5. A broken sshd change: every new login refused; the host rolls it back itself.
    ws.write(&host, 22, "", "");
    let broken = ws.provision(
        &host,
        &["--rollback-window", "15", "up"],
        &[("PROVISION_TEST_BREAK_SSH", "1")],
    );
    assert_eq!(broken.code, 1, "{os}: broken sshd change\n{}", broken.text);
    let error = support::host_error(&broken.json);
    assert!(
        error.contains("rolled back: a new login works again"),
        "{os}: {error}"
    );
    let drop_in = on_host(
        &host,
        "deploy",
        22,
        "cat /etc/ssh/sshd_config.d/00-provision.conf",
    );
    assert!(!drop_in.contains("AllowUsers"), "{os}: {drop_in}");

    // 6. One certificate from Pebble over HTTP-01 on the host's port 80, by `up`.
    if pebble_installed() {
        let pebble = Pebble::start(PebbleOptions {
            http_port: 80,
            default_ipv4: host.address.to_string(),
            ..PebbleOptions::default()
        })
        .expect("pebble");
        ws.write(
            &host,
            22,
            "",
            &format!(
                "[vars.certs]\nca = \"{}\"\nca_root = \"{}\"\nemail = \"ops@example.com\"\n\
                 domains = [\"ai-meeting.test\"]\nssl_dir = \"/opt/ai-meeting/ssl\"\nreload = \"true\"\n",
                pebble.directory_url,
                pebble.api_root.display()
            ),
        );
        // `up` obtains it (issue 13): no `certs issue`, and the renewal timer with it.
        let up = ws.provision(&host, &["up"], &[]);
        assert_eq!(
            up.code,
            0,
            "{os}: up\n{}\npebble:\n{}",
            up.text,
            pebble.log()
        );
        let cert = up.json["hosts"][0]["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["id"] == "certificate:ai-meeting.test"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(cert["status"], "changed", "{os}: {cert:#}\n{}", up.text);
        let timer = on_host(
            &host,
            "deploy",
            22,
            "systemctl is-enabled provision-certs-renew.timer",
        );
        assert_eq!(timer.trim(), "enabled", "{os}");
        let chain = on_host(&host, "deploy", 22, "cat /opt/ai-meeting/ssl/fullchain.pem");
        let info = certs::CertInfo::from_pem(chain.as_bytes()).expect("a certificate chain");
        assert_eq!(info.names, ["ai-meeting.test"], "{os}");
    }
    println!(
        "{os}: fresh converge {:.1} s, no-op {:.1} s, whole matrix {:.0} s",
        converge.as_secs_f64(),
        noop.as_secs_f64(),
        total.elapsed().as_secs_f64()
    );
}

#[test]
fn matrix_ubuntu_24_04() {
    the_matrix(Os::Ubuntu2404);
}

#[test]
fn matrix_ubuntu_22_04() {
    the_matrix(Os::Ubuntu2204);
}

#[test]
fn matrix_debian_13() {
    the_matrix(Os::Debian13);
}

#[test]
fn matrix_debian_12() {
    the_matrix(Os::Debian12);
}
