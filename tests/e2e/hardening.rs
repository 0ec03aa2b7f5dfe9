//! End to end on lab hosts (issue 4): a fresh host converged by `up` (through the library,
//! as the binary runs it), checked independently over separate SSH logins, converged
//! again with zero changes, drifted by hand, caught by `harden --check`, restored; root login
//! turned off once the deploy user's key login is proven; Lynis and ssh-audit measured.
//! Plus the lockout tests: a deliberately bad sshd or firewall change is rolled back by
//! the host itself and the run reports it.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::engine::{self, Mode, Options};
use common::inventory::Vars;
use common::report::{HostOutcome, HostReport, ResourceStatus};
use common::resource::Resource;
use common::transport::Transport;
use common::transport::ssh::SshTransport;

/// UFW's `limit` drops the 6th new SSH connection from one address within 30 s. The
/// test paces its own logins: at most 4 in any 31 s (the engine adds fresh logins).
fn pace(host: &lab::LabHost, weight: usize) {
    static LOGS: std::sync::Mutex<Vec<(String, Vec<Instant>)>> = std::sync::Mutex::new(Vec::new());
    let window = Duration::from_secs(31);
    let key = host.address.to_string();
    loop {
        let wait = {
            let mut logs = LOGS.lock().unwrap_or_else(|e| e.into_inner());
            if !logs.iter().any(|(k, _)| *k == key) {
                logs.push((key.clone(), Vec::new()));
            }
            let log = &mut logs.iter_mut().find(|(k, _)| *k == key).unwrap().1;
            log.retain(|t| t.elapsed() < window);
            if log.len() + weight <= 4 {
                for _ in 0..weight {
                    log.push(Instant::now());
                }
                return;
            }
            window.saturating_sub(log[0].elapsed())
        };
        std::thread::sleep(wait);
    }
}

async fn connect(host: &lab::LabHost, user: &str) -> SshTransport {
    // The master connection plus up to two fresh logins (firewall, sshd) of the engine.
    pace(host, 3);
    support::connect_as(host, user).await
}

fn options(mode: Mode) -> Options {
    Options {
        mode,
        rollback_window: Duration::from_secs(15),
        ..Options::default()
    }
}

/// `resources` converged on `host` as `user` by the engine: for a resource the inventory
/// cannot ask for (a deliberately broken sshd change).
async fn converge_resources(
    host: &lab::LabHost,
    user: &str,
    resources: &[Box<dyn Resource>],
    mode: Mode,
) -> HostReport {
    let transport = connect(host, user).await;
    let started = Instant::now();
    let report = engine::converge(&transport, resources, &options(mode)).await;
    let _ = transport.close().await;
    print_report(&format!("{mode:?} as {user}"), &report, started.elapsed());
    report
}

/// `command` with `inventory` through the library (as the binary runs it, with a 15 s
/// rollback window), paced like a login of the engine's: the host's report.
fn provision(host: &lab::LabHost, inventory: &Path, command: jobs::Command) -> HostReport {
    // The master connection plus up to two fresh logins (firewall, sshd) of the engine.
    pace(host, 3);
    let what = format!("{command:?}");
    let run = support::Provision::new(inventory)
        .rollback_window(15)
        .run(command);
    let report = run.host().clone();
    print_report(&what, &report, run.elapsed);
    report
}

fn print_report(what: &str, report: &HostReport, elapsed: Duration) {
    println!(
        "--- {what}: {:?} in {:.1} s, {} round trips{}",
        report.outcome,
        elapsed.as_secs_f64(),
        report.round_trips,
        report
            .error
            .as_deref()
            .map(|e| format!("\n    error: {e}"))
            .unwrap_or_default()
    );
    for r in &report.resources {
        if r.status != ResourceStatus::Ok {
            println!("    {:?} {}: {}", r.status, r.id, r.detail);
        }
    }
}

fn changed_ids(report: &HostReport, status: ResourceStatus) -> Vec<String> {
    report
        .resources
        .iter()
        .filter(|r| r.status == status)
        .map(|r| r.id.clone())
        .collect()
}

/// Run `script` over a plain, fresh ssh login as `user` (root through sudo otherwise).
fn ssh_as(host: &lab::LabHost, user: &str, script: &str) -> std::process::Output {
    pace(host, 1);
    let elevated = if user == "root" {
        script.to_string()
    } else {
        format!("sudo -n sh -c {}", common::shell::quote(script))
    };
    plain_ssh(host, user, &elevated)
}

/// `command` over a fresh ssh login as `user`, unpaced (see [`pace`]).
fn plain_ssh(host: &lab::LabHost, user: &str, command: &str) -> std::process::Output {
    host.ssh_command_as(user)
        .arg(command)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run ssh")
}

fn remote(host: &lab::LabHost, user: &str, script: &str) -> String {
    let out = ssh_as(host, user, script);
    assert!(
        out.status.success(),
        "`{script}` as {user} on {} failed ({}): {}",
        host.name,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sections `== name` of a combined check script's output.
fn sections(text: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut name = String::new();
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("== ") {
            name = n.trim().to_string();
            out.insert(name.clone(), String::new());
        } else if let Some(s) = out.get_mut(&name) {
            s.push_str(line);
            s.push('\n');
        }
    }
    out
}

fn public_key(host: &lab::LabHost) -> String {
    std::fs::read_to_string(host.identity_file.with_extension("pub"))
        .expect("lab public key")
        .trim()
        .to_string()
}

/// The inventory of the fresh-host test, logging in as `user` (written to `dir`).
fn hardened_inventory(dir: &Path, host: &lab::LabHost, user: &str) -> PathBuf {
    support::write_inventory(
        dir,
        host,
        &format!("user = \"{user}\""),
        &format!(
            r#"[vars]
timezone = "Asia/Shanghai"
hostname = "{name}-hardened"

[vars.deploy_user]
authorized_keys = ["{key}"]

[vars.hardening]
allow_ports = [8443]
# The controller logs in many times from the lab network during the test.
fail2ban_ignore_ips = ["10.77.0.0/16"]

# The lab reaches the distribution's archive, not Docker's repository (the default on
# Ubuntu).
[vars.docker]
source = "distribution"
"#,
            name = host.name,
            key = public_key(host),
        ),
    )
}

const CHECKS: &str = r#"PATH="$PATH:/usr/sbin:/sbin"
echo "== ufw"; ufw status verbose
echo "== fail2ban"; fail2ban-client status sshd
echo "== f2b-ignoreip"; fail2ban-client get sshd ignoreip
echo "== docker"; systemctl is-active docker; systemctl is-enabled docker
echo "== compose"; docker compose version 2>/dev/null || docker-compose version --short 2>&1 | sed 's/^/docker-compose (v1) /'
echo "== hard-nofile"; awk '/^Max open files/ {print $5}' /proc/1/limits
echo "== daemon.json"; cat /etc/docker/daemon.json
echo "== id"; id deploy
echo "== sshd"; sshd -T
echo "== manager"; systemctl show -p DefaultLimitNOFILE -p DefaultLimitCORE
echo "== timezone"; readlink /etc/localtime; date +%Z
echo "== hostname"; uname -n; cat /etc/hostname
echo "== apt"; apt-config dump | grep -E '^APT::Periodic::(Unattended-Upgrade|Update-Package-Lists) |Origins-Pattern|Allowed-Origins'
echo "== uu"; dpkg-query -W -f='${Status}\n' unattended-upgrades
echo "== sysctl"; sysctl -n net.ipv4.ip_forward net.ipv4.conf.all.rp_filter net.ipv4.conf.all.accept_redirects
echo "== modes"; stat -c '%n %a %U %G' /etc/shadow /etc/crontab /etc/cron.d /home/deploy/.ssh /home/deploy/.ssh/authorized_keys /etc/sudoers.d/90-provision-deploy
echo "== leftovers"; ls /etc/ssh/sshd_config.d/ | grep -v "^50-cloud-init.conf$"
"#;

fn sshd_value<'a>(sshd_t: &'a str, key: &str) -> Vec<&'a str> {
    sshd_t
        .lines()
        .filter_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
        .collect()
}

#[test]
fn fresh_host_is_hardened_idempotent_drift_checked_and_measured() {
    if !lab::testing::skip_unless_lab() {
        return;
    }
    let host = support::fresh_host_in_area_dir("hardening");
    let dir = tempfile::tempdir().unwrap();
    let inventory = hardened_inventory(dir.path(), &host, "root");
    let up = || jobs::Command::Up { rotate: Vec::new() };
    println!("lab host {} at {}", host.name, host.address);

    // Fresh host as root: everything changes and verifies.
    let first = provision(&host, &inventory, up());
    assert_eq!(first.outcome, HostOutcome::Changed, "{:?}", first.error);
    let sysctl = first
        .resources
        .iter()
        .find(|r| r.id == "sysctl:/etc/sysctl.d/90-provision.conf")
        .unwrap();
    println!(
        "sysctl in the container: {:?} {}",
        sysctl.status, sysctl.detail
    );

    // Independent checks over one separate login (UFW rate-limits new SSH connections).
    let out = remote(&host, "root", CHECKS);
    let s = sections(&out);
    let ufw = &s["ufw"];
    assert!(ufw.contains("Status: active"), "{ufw}");
    assert!(
        ufw.contains("Default: deny (incoming), allow (outgoing)"),
        "{ufw}"
    );
    for rule in [
        "22/tcp                     LIMIT IN",
        "80/tcp                     ALLOW IN",
        "443/tcp                    ALLOW IN",
        "8443/tcp                   ALLOW IN",
    ] {
        assert!(ufw.contains(rule), "missing `{rule}` in\n{ufw}");
    }
    let f2b = &s["fail2ban"];
    assert!(f2b.contains("Status for the jail: sshd"), "{f2b}");
    assert!(
        f2b.contains("Journal matches") || f2b.contains("File list"),
        "{f2b}"
    );
    // The running server read the jail file (written before fail2ban's package started
    // it, with no restart after): the inventory's ignored network is in force.
    assert!(
        s["f2b-ignoreip"].contains("10.77.0.0/16"),
        "{}",
        s["f2b-ignoreip"]
    );
    assert_eq!(s["docker"], "active\nenabled\n");
    println!("compose: {}", s["compose"].trim());
    assert!(
        s["daemon.json"].contains("\"max-size\": \"10m\""),
        "{}",
        s["daemon.json"]
    );
    assert!(s["id"].contains("(docker)"), "{}", s["id"]);
    let sshd_t = &s["sshd"];
    for (key, want) in [
        ("permitrootlogin", "without-password"),
        ("passwordauthentication", "no"),
        ("kbdinteractiveauthentication", "no"),
        ("permitemptypasswords", "no"),
        ("maxauthtries", "3"),
        ("logingracetime", "30"),
        ("x11forwarding", "no"),
        ("allowtcpforwarding", "no"),
        ("allowagentforwarding", "no"),
    ] {
        assert_eq!(sshd_value(sshd_t, key), [want], "sshd -T {key}");
    }
    assert!(
        sshd_value(sshd_t, "kexalgorithms")[0].starts_with("sntrup761x25519-sha512@openssh.com,")
    );
    // ed25519 and RSA only (lab images have no RSA key; their ECDSA key goes unused).
    let hostkeys = sshd_value(sshd_t, "hostkey");
    assert!(
        hostkeys.contains(&"/etc/ssh/ssh_host_ed25519_key"),
        "{hostkeys:?}"
    );
    assert!(
        hostkeys
            .iter()
            .all(|k| k.ends_with("ed25519_key") || k.ends_with("rsa_key")),
        "{hostkeys:?}"
    );
    assert!(
        s["manager"].contains("DefaultLimitNOFILE=65536"),
        "{}",
        s["manager"]
    );
    assert!(
        s["manager"].contains("DefaultLimitCORE=0"),
        "{}",
        s["manager"]
    );
    assert_eq!(s["timezone"], "/usr/share/zoneinfo/Asia/Shanghai\nCST\n");
    let hostname = format!("{}-hardened", host.name);
    assert_eq!(s["hostname"], format!("{hostname}\n{hostname}\n"));
    assert!(
        s["apt"].contains("APT::Periodic::Unattended-Upgrade \"1\";"),
        "{}",
        s["apt"]
    );
    // Security updates from the distribution's own security archive.
    let security_origin = match host.os.family() {
        lab::Family::Debian => "label=Debian-Security",
        lab::Family::Ubuntu => "${distro_id}:${distro_codename}-security",
    };
    assert!(s["apt"].contains(security_origin), "{}", s["apt"]);
    assert_eq!(s["uu"], "install ok installed\n");
    println!(
        "sysctl ip_forward rp_filter accept_redirects: {:?}",
        s["sysctl"].lines().collect::<Vec<_>>()
    );
    assert_eq!(
        s["sysctl"], "1\n1\n0\n",
        "network namespace settings applied, forwarding kept for Docker"
    );
    assert_eq!(
        s["modes"],
        "/etc/shadow 640 root shadow\n/etc/crontab 600 root root\n/etc/cron.d 700 root root\n\
         /home/deploy/.ssh 700 deploy deploy\n/home/deploy/.ssh/authorized_keys 600 deploy deploy\n\
         /etc/sudoers.d/90-provision-deploy 440 root root\n"
    );
    assert_eq!(s["leftovers"], "00-provision.conf\n");
    // The deploy user's login session gets the nofile limit (pam_limits via sshd), up to
    // the hard limit the container itself got from the machine running it (nspawn drops
    // CAP_SYS_RESOURCE, so a container cannot raise it; this machine's is 20000).
    let ceiling: u64 = s["hard-nofile"].trim().parse().unwrap();
    println!("container nofile ceiling: {ceiling}");
    assert_eq!(
        remote(&host, "deploy", "ulimit -n").trim(),
        65536.min(ceiling).to_string()
    );

    // Second run: zero changes.
    let second = provision(&host, &inventory, up());
    assert_eq!(second.outcome, HostOutcome::Converged, "{:?}", second.error);
    assert_eq!(
        changed_ids(&second, ResourceStatus::Changed),
        Vec::<String>::new()
    );

    // Drift by hand → the check reports exactly that resource → harden restores it.
    remote(
        &host,
        "root",
        "sed -i 's/^MaxAuthTries 3$/MaxAuthTries 6/' /etc/ssh/sshd_config.d/00-provision.conf && systemctl restart ssh",
    );
    let check = provision(&host, &inventory, jobs::Command::Harden { check: true });
    assert_eq!(check.outcome, HostOutcome::Pending);
    assert_eq!(changed_ids(&check, ResourceStatus::Pending), ["sshd"]);
    let sshd_report = check.resources.iter().find(|r| r.id == "sshd").unwrap();
    let diff = sshd_report.diffs.join("\n");
    assert!(
        diff.contains("-MaxAuthTries 6") && diff.contains("+MaxAuthTries 3"),
        "{diff}"
    );
    println!("drift diff:\n{diff}");
    let restore = provision(&host, &inventory, jobs::Command::Harden { check: false });
    assert_eq!(restore.outcome, HostOutcome::Changed, "{:?}", restore.error);
    assert_eq!(changed_ids(&restore, ResourceStatus::Changed), ["sshd"]);
    let sshd_t = remote(&host, "root", "PATH=$PATH:/usr/sbin; sshd -T");
    assert_eq!(sshd_value(&sshd_t, "maxauthtries"), ["3"]);

    // Root login off once the deploy user's key login is proven: log in as deploy.
    let inventory = hardened_inventory(dir.path(), &host, "deploy");
    let as_deploy = provision(&host, &inventory, up());
    assert_eq!(
        as_deploy.outcome,
        HostOutcome::Changed,
        "{:?}",
        as_deploy.error
    );
    assert_eq!(changed_ids(&as_deploy, ResourceStatus::Changed), ["sshd"]);
    let sshd_t = remote(&host, "deploy", "PATH=$PATH:/usr/sbin; sshd -T");
    assert_eq!(sshd_value(&sshd_t, "permitrootlogin"), ["no"]);
    assert!(
        !ssh_as(&host, "root", "true").status.success(),
        "root login refused now"
    );
    let again = provision(&host, &inventory, up());
    assert_eq!(again.outcome, HostOutcome::Converged, "{:?}", again.error);

    // Lynis hardening index.
    let lynis = remote(
        &host,
        "deploy",
        "export DEBIAN_FRONTEND=noninteractive; o='-o DPkg::Lock::Timeout=600 -y -q'; \
         apt-get $o install lynis >/dev/null 2>&1 || { apt-get -q update >/dev/null && apt-get $o install lynis >/dev/null; }; \
         lynis audit system --quick --no-colors >/tmp/lynis.out 2>&1; \
         grep -E 'Hardening index' /tmp/lynis.out; grep -E '^(suggestion|warning)\\[\\]=' /var/log/lynis-report.dat",
    );
    let index: u32 = lynis
        .lines()
        .find_map(|l| {
            l.split("Hardening index :")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("no hardening index in:\n{lynis}"));
    println!("LYNIS HARDENING INDEX: {index}");
    for l in lynis
        .lines()
        .filter(|l| l.starts_with("suggestion") || l.starts_with("warning"))
    {
        println!("  lynis {l}");
    }

    // ssh-audit from this machine (several connections: start with an empty window).
    pace(&host, 4);
    match Command::new("ssh-audit")
        .arg("-n")
        .arg(host.address.to_string())
        .output()
    {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let failures: Vec<&str> = text.lines().filter(|l| l.contains("[fail]")).collect();
            let warnings: Vec<&str> = text.lines().filter(|l| l.contains("[warn]")).collect();
            println!(
                "SSH-AUDIT: exit {:?}, {} failure(s), {} warning(s)",
                out.status.code(),
                failures.len(),
                warnings.len()
            );
            for l in failures.iter().chain(&warnings) {
                println!("  {l}");
            }
            assert!(failures.is_empty(), "ssh-audit failures:\n{text}");
        }
        Err(e) => println!("SSH-AUDIT: not run ({e}); apt-get install -y ssh-audit"),
    }
    assert!(
        index >= 80,
        "Lynis hardening index {index} is below the issue's target of 80"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_sshd_change_is_rolled_back_by_the_host() {
    if !lab::testing::skip_unless_lab() {
        return;
    }
    let host = support::fresh_host_in_area_dir("hardening");
    let vars = Vars::default();
    let good: Vec<Box<dyn Resource>> = vec![Box::new(hardening::ssh::SshdConfig {
        settings: hardening::ssh_settings(&vars),
    })];
    let broken_settings = hardening::ssh::SshSettings {
        break_for_test: true,
        ..hardening::ssh_settings(&vars)
    };
    let broken: Vec<Box<dyn Resource>> = vec![Box::new(hardening::ssh::SshdConfig {
        settings: broken_settings,
    })];

    // 1. No drop-in yet: the rollback removes the new one.
    let started = Instant::now();
    let report = converge_resources(&host, "root", &broken, Mode::Apply).await;
    println!("rollback took {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(report.outcome, HostOutcome::Failed);
    let error = report.error.clone().unwrap();
    assert!(error.contains("a new SSH login"), "{error}");
    assert!(
        error.contains("rolled back: a new login works again"),
        "{error}"
    );
    // The tool's drop-in is gone again; what the image had (cloud-init's) is untouched.
    assert_eq!(
        remote(
            &host,
            "root",
            "ls /etc/ssh/sshd_config.d/ | grep -v '^50-cloud-init.conf$' || true"
        )
        .trim(),
        ""
    );

    // 2. A good drop-in in place: the rollback restores it.
    let report = converge_resources(&host, "root", &good, Mode::Apply).await;
    assert_eq!(report.outcome, HostOutcome::Changed, "{:?}", report.error);
    let good_text = remote(
        &host,
        "root",
        "cat /etc/ssh/sshd_config.d/00-provision.conf",
    );
    let report = converge_resources(&host, "root", &broken, Mode::Apply).await;
    assert_eq!(report.outcome, HostOutcome::Failed);
    assert!(report.error.unwrap().contains("rolled back"));
    assert_eq!(
        remote(
            &host,
            "root",
            "cat /etc/ssh/sshd_config.d/00-provision.conf"
        ),
        good_text
    );
    let report = converge_resources(&host, "root", &good, Mode::Check).await;
    assert_eq!(report.outcome, HostOutcome::Converged, "{:?}", report.error);
}

/// An inventory for `host` whose hardening set is the firewall alone (no sshd, fail2ban,
/// OS hardening or Docker), with `hardening` lines added to `[vars.hardening]`.
fn firewall_inventory(host: &lab::LabHost, hardening: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let inventory = support::write_inventory(
        dir.path(),
        host,
        "user = \"root\"",
        &format!(
            r#"[vars]
packages = []
upgrade = "none"

[vars.hardening]
ssh = false
fail2ban = false
os = false
{hardening}

[vars.docker]
enabled = false
"#
        ),
    );
    (dir, inventory)
}

/// A fresh host and its [`firewall_inventory`]; `None` where lab tests are skipped.
fn firewall_host(hardening: &str) -> Option<(lab::testing::LabGuard, tempfile::TempDir, PathBuf)> {
    if !lab::testing::skip_unless_lab() {
        return None;
    }
    let host = support::fresh_host_in_area_dir("hardening");
    let (dir, inventory) = firewall_inventory(&host, hardening);
    Some((host, dir, inventory))
}

const UFW_STATUS: &str = "PATH=$PATH:/usr/sbin; ufw status";

/// The broken run is the binary: the test hook is read from the process's environment
/// (`PROVISION_TEST_BREAK_FIREWALL`), which the tests of this one process must not share.
#[test]
fn bad_firewall_change_is_rolled_back_through_the_cli_test_hook() {
    let Some((host, _dir, inventory)) = firewall_host("") else {
        return;
    };
    let started = Instant::now();
    let (code, report, stderr) = support::provision_report(
        &inventory,
        &["--rollback-window", "15", "harden"],
        &[("PROVISION_TEST_BREAK_FIREWALL", "1")],
    );
    println!(
        "firewall rollback run took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(code, 1, "{report:#}\n{stderr}");
    let error = support::host_error(&report);
    assert!(error.contains("firewall:ufw"), "{error}");
    assert!(
        error.contains("rolled back: a new login works again"),
        "{error}"
    );
    // Reachable, UFW off again (it was off before).
    assert_eq!(
        remote(&host, "root", "PATH=$PATH:/usr/sbin; ufw status").trim(),
        "Status: inactive"
    );

    // Without the hook the same run converges and keeps SSH reachable.
    let harden = support::Provision::new(&inventory)
        .rollback_window(15)
        .harden(false);
    assert_eq!(harden.code(), 0, "{harden}");
    assert!(remote(&host, "root", "PATH=$PATH:/usr/sbin; ufw status").contains("Status: active"));
}

/// Issue 13: an admin opened a port by hand on a converged host; the inventory is the
/// truth. `harden --check` names the rule (exit 2), `harden` deletes it (IPv4 and IPv6)
/// while the SSH port stays open, and `firewall_exclusive = false` keeps such a rule,
/// only naming it. Every state is checked over plain ssh, not through the tool.
#[test]
fn hand_opened_port_is_reported_by_check_and_closed_by_harden() {
    let Some((host, _dir, inventory)) = firewall_host("allow_ports = [8443]") else {
        return;
    };
    let harden = |check: bool| {
        // The master connection and the commit-confirmed proof.
        pace(&host, 2);
        support::Provision::new(&inventory)
            .rollback_window(30)
            .harden(check)
    };
    let run = harden(false);
    assert_eq!(run.code(), 0, "{run}");

    remote(&host, "root", "PATH=$PATH:/usr/sbin; ufw allow 8080/tcp");
    let run = harden(true);
    assert_eq!(run.code(), 2, "changes pending: {run}");
    let fw = run.resource("firewall:ufw");
    assert_eq!(fw.status, ResourceStatus::Pending, "{fw:#?}");
    let detail = &fw.detail;
    assert!(
        detail.contains("unrequested `allow 8080/tcp` (IPv4, IPv6)"),
        "{detail}"
    );
    let actions = fw.actions.join("\n");
    assert!(
        actions.contains("delete unrequested ufw rule `allow 8080/tcp` (IPv4, IPv6)"),
        "{actions}"
    );
    let ufw = remote(&host, "root", UFW_STATUS);
    assert!(
        ufw.contains("8080/tcp ") && ufw.contains("8080/tcp (v6)"),
        "check changed nothing:\n{ufw}"
    );

    let run = harden(false);
    assert_eq!(run.code(), 0, "{run}");
    assert_eq!(run.resource("firewall:ufw").status, ResourceStatus::Changed);
    // A plain ssh login after the change: the SSH port stayed open.
    let ufw = remote(&host, "root", UFW_STATUS);
    assert!(ufw.contains("Status: active"), "{ufw}");
    assert!(
        !ufw.contains("8080"),
        "8080 closed on IPv4 and IPv6:\n{ufw}"
    );
    for rule in ["22/tcp ", "22/tcp (v6) ", "8443/tcp ", "8443/tcp (v6) "] {
        assert!(ufw.contains(rule), "`{rule}` kept:\n{ufw}");
    }
    assert!(ufw.contains("LIMIT"), "{ufw}");
    let run = harden(true);
    assert_eq!(run.code(), 0, "converged: {run}");

    // Not exclusive: a foreign rule is kept and named, not drift.
    let (_dir, relaxed) =
        firewall_inventory(&host, "allow_ports = [8443]\nfirewall_exclusive = false");
    remote(&host, "root", "PATH=$PATH:/usr/sbin; ufw allow 9090/tcp");
    pace(&host, 2);
    let run = support::Provision::new(&relaxed).harden(false);
    assert_eq!(run.code(), 0, "{run}");
    let fw = run.resource("firewall:ufw");
    assert_eq!(fw.status, ResourceStatus::Ok, "{fw:#?}");
    let detail = &fw.detail;
    assert!(
        detail
            .contains("kept (hardening.firewall_exclusive = false): `allow 9090/tcp` (IPv4, IPv6)"),
        "{detail}"
    );
    assert!(remote(&host, "root", UFW_STATUS).contains("9090/tcp"));
}

/// Issue 13: `ssh_rate_limit = false` allows the SSH port instead of `ufw limit`: a burst
/// of new connections (UFW's limit refuses the 6th within 30 s) all get through.
#[test]
fn ssh_rate_limit_off_allows_the_ssh_port_instead_of_limiting_it() {
    let Some((host, _dir, inventory)) = firewall_host("ssh_rate_limit = false") else {
        return;
    };
    pace(&host, 2);
    let run = support::Provision::new(&inventory).harden(false);
    assert_eq!(run.code(), 0, "{run}");
    let ufw = remote(
        &host,
        "root",
        "PATH=$PATH:/usr/sbin; ufw status; echo '== recent'; iptables -S ufw-user-input | grep -c -- '-m recent' || true",
    );
    let s = sections(&format!("== status\n{ufw}"));
    let status = &s["status"];
    let ssh_rules: Vec<&str> = status.lines().filter(|l| l.starts_with("22/tcp")).collect();
    assert_eq!(ssh_rules.len(), 2, "IPv4 and IPv6:\n{status}");
    for rule in &ssh_rules {
        assert!(
            rule.contains("ALLOW") && !rule.contains("LIMIT"),
            "{rule}\n{status}"
        );
    }
    assert_eq!(s["recent"].trim(), "0", "no rate-limit match in the kernel");
    // Eight new connections at once: UFW's limit would refuse the 6th.
    for i in 0..8 {
        let out = plain_ssh(&host, "root", "true");
        assert!(
            out.status.success(),
            "connection {} refused: {}",
            i + 1,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Whether an HTTP server answers on `address` from this machine (the lab's gateway
/// side): a TCP connect and a response line, each within 3 s. A firewall that drops the
/// SYN makes the connect time out.
fn http_answers(address: std::net::SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(3))
    else {
        return false;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    if stream.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}

/// On the host: both published ports answer HTTP through Docker's publishing (from the
/// host itself, which the chain does not filter), within 60 s: the containers serve.
const BOTH_SERVE_LOCALLY: &str = r#"for i in $(seq 1 300); do
  ok=0
  for p in 8081 5432; do
    if r=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$p && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && head -c 5 <&3" 2>/dev/null) && [ "$r" = HTTP/ ]; then ok=$((ok + 1)); fi
  done
  if [ "$ok" = 2 ]; then exit 0; fi
  sleep 0.2
done
echo 'the containers do not serve on 8081 and 5432' >&2; docker ps -a >&2; exit 1"#;

/// The packet count of the `-o docker0 -j DROP` rule in `iptables -S DOCKER-USER -v`.
fn docker0_drops(chain_with_counters: &str) -> u64 {
    chain_with_counters
        .lines()
        .find(|l| l.contains("-o docker0") && l.ends_with("-j DROP"))
        .and_then(|l| l.split(" -c ").nth(1))
        .and_then(|c| c.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counted docker0 drop rule in:\n{chain_with_counters}"))
}

/// Issue 15: Docker-published ports bypass UFW (moby/moby#4737). With Docker on, the
/// `DOCKER-USER` chain (IPv4 and IPv6) admits new connections from outside only on the
/// ports the inventory opens: from this machine a container published on an allowed
/// port answers, one published on 5432 does not, also after `systemctl restart docker`
/// and `ufw reload`. A rule deleted by hand is drift `check` names and `up` repairs.
/// Every state is checked over plain ssh (`iptables -S`, `ip6tables -S`).
#[test]
fn docker_published_ports_obey_the_inventorys_firewall_across_restarts() {
    if !lab::testing::skip_unless_lab() {
        return;
    }
    let guard = support::fresh_host_in_area_dir("hardening");
    let host: &lab::LabHost = &guard;
    let dir = tempfile::tempdir().unwrap();
    let inventory = support::write_inventory(
        dir.path(),
        host,
        "user = \"root\"",
        r#"[vars]
packages = []
upgrade = "none"

[vars.hardening]
ssh = false
allow_ports = [8081]
ssh_rate_limit = false
fail2ban_ignore_ips = ["10.77.0.0/16"]

[vars.docker]
source = "distribution"
"#,
    );
    let provision = support::Provision::new(&inventory).rollback_window(30);
    // `up` converges and the DOCKER-USER chain is among what it changed.
    let up_changes_docker_user = || {
        let up = provision.up();
        assert_eq!(up.code(), 0, "{up}");
        assert_eq!(
            up.resource("firewall:docker-user").status,
            ResourceStatus::Changed,
            "{up}"
        );
    };

    up_changes_docker_user();

    // An image from Debian's busybox-static, built offline on the host (it reaches the
    // distribution's archive, not Docker Hub), and two containers: one published on a port
    // the inventory opens (8081), one on a port it does not (5432).
    remote(
        host,
        "root",
        r#"set -e
export DEBIAN_FRONTEND=noninteractive
d=$(mktemp -d); cd "$d"
apt-get download busybox-static >/dev/null 2>&1 || { apt-get -q update >/dev/null; apt-get download busybox-static >/dev/null 2>&1; }
dpkg-deb -x busybox-static_*.deb x
b=; for p in x/bin/busybox x/usr/bin/busybox; do if [ -f "$p" ]; then b=$p; fi; done
[ -n "$b" ] || { echo 'no busybox in the package' >&2; exit 1; }
mkdir -p rootfs/bin rootfs/www; chmod 755 rootfs; install -m 0755 "$b" rootfs/bin/busybox
tar -C rootfs -c . | docker import - provision-e2e/busybox >/dev/null
for c in allowed:8081 denied:5432; do
  docker run -d --restart always --name "${c%:*}" -p "${c#*:}:8080" provision-e2e/busybox \
    /bin/busybox httpd -f -p 8080 -h /www >/dev/null
done"#,
    );
    let allowed = std::net::SocketAddr::from((host.address, 8081));
    let denied = std::net::SocketAddr::from((host.address, 5432));
    let chains = "PATH=$PATH:/usr/sbin:/sbin; iptables -w -S DOCKER-USER; echo '== v6'; ip6tables -w -S DOCKER-USER; echo '== after'; grep -c '^# BEGIN provision docker-user$' /etc/ufw/after.rules /etc/ufw/after6.rules";
    let expect_filtered = |when: &str| {
        remote(host, "root", BOTH_SERVE_LOCALLY);
        assert!(
            http_answers(allowed),
            "{when}: the allowed port 8081 does not answer"
        );
        assert!(
            !http_answers(denied),
            "{when}: 5432 answers from outside although the inventory does not open it"
        );
        let out = remote(host, "root", chains);
        let s = sections(&format!("== v4\n{out}"));
        for family in ["v4", "v6"] {
            let chain = &s[family];
            for rule in [
                "-A DOCKER-USER -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
                "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 8081 -j RETURN",
                "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 22 -j RETURN",
                "-A DOCKER-USER -o docker0 -j DROP",
            ] {
                assert!(
                    chain.contains(rule),
                    "{when}: {family} lacks `{rule}`:\n{chain}"
                );
            }
            assert!(!chain.contains("5432"), "{when}: {family}:\n{chain}");
        }
        assert_eq!(
            s["after"], "/etc/ufw/after.rules:1\n/etc/ufw/after6.rules:1\n",
            "{when}"
        );
    };
    expect_filtered("after up");
    let counted = remote(
        host,
        "root",
        "PATH=$PATH:/usr/sbin:/sbin; iptables -w -S DOCKER-USER -v",
    );
    assert!(
        docker0_drops(&counted) > 0,
        "the refused connection was the chain's drop:\n{counted}"
    );

    // The chain is the inventory's: converged, then a rule deleted by hand is drift.
    let check = provision.check();
    assert_eq!(check.code(), 0, "converged: {check}");
    remote(
        host,
        "root",
        "PATH=$PATH:/usr/sbin:/sbin; iptables -w -D DOCKER-USER -p tcp -m conntrack --ctorigdstport 8081 -j RETURN",
    );
    assert!(!http_answers(allowed), "8081 closed without its rule");
    let check = provision.check();
    assert_eq!(check.code(), 2, "drift pending: {check}");
    let entry = check.resource("firewall:docker-user");
    assert_eq!(entry.status, ResourceStatus::Pending, "{entry:#?}");
    let detail = &entry.detail;
    assert!(
        detail.contains(
            "DOCKER-USER (IPv4) lacks `-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 8081 -j RETURN`"
        ),
        "{detail}"
    );
    up_changes_docker_user();
    expect_filtered("after the repair");

    // Kept across restarts of Docker and of UFW.
    remote(host, "root", "systemctl restart docker");
    expect_filtered("after systemctl restart docker");
    remote(host, "root", "PATH=$PATH:/usr/sbin:/sbin; ufw reload");
    expect_filtered("after ufw reload");
    let check = provision.check();
    assert_eq!(
        check.code(),
        0,
        "still converged after both restarts: {check}"
    );

    // And across a reboot: UFW loads the block at boot, before docker.service starts
    // the containers again (the guard's watcher boots the host again).
    let _ = ssh_as(host, "root", "systemctl reboot");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let watched = guard.watch_report();
        if let Some(ended) = watched.ended {
            panic!("the host did not come back from its reboot: {ended}");
        }
        if watched.restarts >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no reboot seen within 180 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    expect_filtered("after a reboot");
    let check = provision.check();
    assert_eq!(check.code(), 0, "still converged after the reboot: {check}");
}

/// [`firewall_inventory`] with Docker on (the distribution's packages), `allow_ports`
/// as given and SSH allowed instead of rate-limited.
fn docker_firewall_inventory(
    host: &lab::LabHost,
    allow_ports: &str,
) -> (tempfile::TempDir, PathBuf) {
    let (dir, inventory) = firewall_inventory(
        host,
        &format!("allow_ports = {allow_ports}\nssh_rate_limit = false"),
    );
    let text = std::fs::read_to_string(&inventory).unwrap();
    let on = text.replace(
        "[vars.docker]\nenabled = false\n",
        "[vars.docker]\nsource = \"distribution\"\n",
    );
    assert_ne!(on, text, "firewall_inventory has a [vars.docker] table");
    std::fs::write(&inventory, on).unwrap();
    (dir, inventory)
}

/// Issue 15: the DOCKER-USER change is commit-confirmed with UFW's. A change that locks
/// new logins out (the firewall test hook) is rolled back by the host: after.rules,
/// after6.rules and both chains come back exactly as they were, and `check` with the
/// old inventory finds nothing to do. The broken run is the binary (the test hook is in
/// its environment).
#[test]
fn docker_user_change_is_rolled_back_with_the_firewall() {
    if !lab::testing::skip_unless_lab() {
        return;
    }
    let host = support::fresh_host_in_area_dir("hardening");
    let (_dir, before) = docker_firewall_inventory(&host, "[8081]");
    let up = support::Provision::new(&before).rollback_window(30).up();
    assert_eq!(up.code(), 0, "{up}");
    let state = "PATH=$PATH:/usr/sbin:/sbin; iptables -w -S DOCKER-USER; ip6tables -w -S DOCKER-USER; cat /etc/ufw/after.rules /etc/ufw/after6.rules";
    let converged = remote(&host, "root", state);
    assert!(
        converged.contains("--ctorigdstport 8081 -j RETURN"),
        "{converged}"
    );

    let (_dir2, after) = docker_firewall_inventory(&host, "[8082]");
    let (code, report, stderr) = support::provision_report(
        &after,
        &["--rollback-window", "15", "up"],
        &[("PROVISION_TEST_BREAK_FIREWALL", "1")],
    );
    assert_eq!(code, 1, "{report:#}\n{stderr}");
    let error = support::host_error(&report);
    assert!(
        error.contains("firewall:ufw, firewall:docker-user"),
        "one commit-confirmed change: {error}"
    );
    assert!(
        error.contains("rolled back: a new login works again"),
        "{error}"
    );
    assert_eq!(
        remote(&host, "root", state),
        converged,
        "files and chains as they were"
    );
    let check = support::check(&before);
    assert_eq!(check.code(), 0, "nothing to do: {check}");
}
