//! End to end on a lab host: `provision up` converges a fresh Debian 12 host over real SSH,
//! the result is checked independently over a separate SSH login, and an immediate
//! `provision check` reports zero changes within three round trips.
//!
//! Issue 11: hostile inventory values never run (refused at load, before any login), and a
//! path spelled like shell reaches the host literally.

use crate::support;
use common::report::{HostOutcome, ResourceStatus};
use lab::testing::remote;
use std::path::Path;
use std::process::Command;

/// A fresh host and an inventory for it written by `inventory` into a temporary
/// directory; `None` where lab tests are skipped.
fn host_with(
    inventory: fn(&lab::LabHost, &Path) -> std::path::PathBuf,
) -> Option<(
    lab::testing::LabGuard,
    tempfile::TempDir,
    std::path::PathBuf,
)> {
    if !lab::testing::skip_unless_lab() {
        return None;
    }
    let host = lab::testing::fresh_host();
    let dir = tempfile::tempdir().unwrap();
    let inventory = inventory(&host, dir.path());
    Some((host, dir, inventory))
}

/// An inventory for `host` (root login) with `vars` as its `[vars]` and hardening and
/// Docker off: the base system alone.
fn base_only_inventory(host: &lab::LabHost, dir: &Path, vars: &str) -> std::path::PathBuf {
    support::write_inventory(
        dir,
        host,
        "user = \"root\"",
        &format!(
            "[vars]\n{vars}\n\n[vars.hardening]\nenabled = false\n\n[vars.docker]\nenabled = false\n"
        ),
    )
}

fn inventory_for(host: &lab::LabHost, dir: &Path) -> std::path::PathBuf {
    base_only_inventory(
        host,
        dir,
        r#"timezone = "Asia/Shanghai"
packages = ["curl", "htop"]
files = [{ path = "/etc/provision-e2e/app.conf", content = "listen = 8080\n", mode = "0640", group = "adm" }]"#,
    )
}

#[test]
fn up_converges_then_check_is_a_noop_in_at_most_three_round_trips() {
    let Some((host, _dir, inventory)) = host_with(inventory_for) else {
        return;
    };

    // Before: none of it is there (so the checks below can fail).
    assert_eq!(
        remote(
            &host,
            "dpkg-query -W -f='${Status}' htop 2>/dev/null || echo absent"
        ),
        "absent"
    );

    let up = support::up(&inventory);
    assert_eq!(up.code(), 0, "up failed: {up}");
    assert_eq!(up.outcome(), HostOutcome::Changed, "{up}");
    assert!(up.host().round_trips <= 3, "{up}");

    // Independent checks over a separate login, not through the tool's facts.
    assert_eq!(
        remote(&host, "dpkg-query -W -f='${Status}\\n' curl htop"),
        "install ok installed\ninstall ok installed"
    );
    assert_eq!(
        remote(&host, "readlink /etc/localtime"),
        "/usr/share/zoneinfo/Asia/Shanghai"
    );
    assert_eq!(remote(&host, "cat /etc/timezone"), "Asia/Shanghai");
    assert_eq!(remote(&host, "date +%Z"), "CST");
    assert_eq!(
        remote(
            &host,
            "stat -c '%a %U %G' /etc/provision-e2e/app.conf; cat /etc/provision-e2e/app.conf"
        ),
        "640 root adm\nlisten = 8080"
    );
    assert_eq!(
        remote(
            &host,
            "ls -a /etc/provision-e2e | grep -c provision-tmp || true"
        ),
        "0",
        "no temporary files left behind"
    );

    // Second look: nothing to do, one round trip, exit 0.
    let check = support::check(&inventory);
    assert_eq!(check.code(), 0, "check after up must be clean: {check}");
    assert_eq!(check.outcome(), HostOutcome::Converged);
    assert_eq!(
        check.host().round_trips,
        1,
        "a no-op check is one round trip"
    );

    // Drift: change the file by hand; check reports it with a diff and exit 2, up restores it.
    remote(&host, "echo 'listen = 9090' > /etc/provision-e2e/app.conf");
    let check = support::check(&inventory);
    assert_eq!(check.code(), 2, "{check}");
    let pending = check.with_status(ResourceStatus::Pending);
    assert_eq!(pending.len(), 1, "{pending:#?}");
    assert_eq!(pending[0].id, "file:/etc/provision-e2e/app.conf");
    let diff = &pending[0].diffs[0];
    assert!(
        diff.contains("-listen = 9090") && diff.contains("+listen = 8080"),
        "{diff}"
    );
    assert_eq!(support::up(&inventory).code(), 0);
    assert_eq!(
        remote(&host, "cat /etc/provision-e2e/app.conf"),
        "listen = 8080"
    );
    assert_eq!(
        remote(&host, "cat /etc/provision-e2e/app.conf.provision-bak"),
        "listen = 9090",
        "the replaced file is kept as a backup"
    );
}

/// The binary: the error names the `--accept-new-host-keys` flag, and the flag is what
/// records the key.
#[test]
fn unknown_host_key_is_refused_with_its_fingerprint() {
    let Some((host, dir, inventory)) = host_with(inventory_for) else {
        return;
    };
    let empty_known_hosts = dir.path().join("known_hosts");
    std::fs::write(&empty_known_hosts, "").unwrap();
    let text = std::fs::read_to_string(&inventory).unwrap().replace(
        &host.known_hosts.display().to_string(),
        &empty_known_hosts.display().to_string(),
    );
    std::fs::write(&inventory, text).unwrap();

    let (code, report, _) = support::provision_report(&inventory, &["check"], &[]);
    assert_eq!(code, 1);
    let error = report["hosts"][0]["error"].as_str().unwrap();
    assert!(error.contains("host key"), "{error}");
    assert!(error.contains("SHA256:"), "fingerprint shown: {error}");
    assert!(error.contains("--accept-new-host-keys"), "{error}");

    // Trust on first use works and records the key.
    let (code, report, _) =
        support::provision_report(&inventory, &["--accept-new-host-keys", "check"], &[]);
    assert_ne!(code, 1, "{report:#}");
    assert!(
        std::fs::read_to_string(&empty_known_hosts)
            .unwrap()
            .contains("ssh-ed25519")
    );
}

/// Sessions sshd accepted on the host so far (every login is logged once, by `sshd` or,
/// from OpenSSH 9.8, `sshd-session`).
fn accepted_logins(host: &lab::LabHost) -> usize {
    remote(
        host,
        "journalctl -q -o cat -t sshd -t sshd-session 2>/dev/null | grep -c '^Accepted ' || true",
    )
    .parse()
    .unwrap_or_else(|e| panic!("login count: {e}"))
}

/// What the hostile values would have changed: users, sudo rules, host name, time zone.
fn host_state(host: &lab::LabHost) -> String {
    remote(
        host,
        "getent passwd | cut -d: -f1; ls -1 /etc/sudoers.d; hostname; readlink /etc/localtime; ls -1 /tmp",
    )
}

/// Issue 11: each class of value that used to cross from data into code (`$(…)`,
/// backticks, `;`, newlines, `%` specifiers, a leading `-`) is refused when the inventory
/// loads, at its line and field, before any connection: the marker its payload would
/// create exists neither on the host nor here, sshd saw no login from the tool, and the
/// host is unchanged. A valid run afterwards does log in (the login count can see it).
#[test]
fn issue_11_hostile_values_never_run_and_fail_before_connecting() {
    if !lab::testing::skip_unless_lab() {
        return;
    }
    let host = lab::testing::fresh_host();
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("/tmp/provision-issue11-{}", std::process::id());
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA ops@example";
    let inventory = |user: &str, address: &str, vars: &str| {
        format!(
            "[defaults]\nuser = {user:?}\nidentity_file = {:?}\nknown_hosts = {:?}\n\n\
             [hosts.{}]\naddress = {address:?}\n\n{vars}\n",
            host.identity_file.display().to_string(),
            host.known_hosts.display().to_string(),
            host.name,
        )
    };
    let address = host.address.to_string();
    let m = |class: &str| format!("{marker}-{class}");
    // (class, login user, address, vars, the field the error must name)
    let cases: Vec<(&str, String, String, String, &str)> = vec![
        (
            "dollar-paren",
            "root".into(),
            address.clone(),
            format!("[vars]\nhostname = \"h$(touch {})\"", m("dollar-paren")),
            "vars.hostname",
        ),
        (
            "backticks",
            "root".into(),
            address.clone(),
            format!("[vars.deploy_user]\nname = \"`touch {}`\"", m("backticks")),
            "vars.deploy_user.name",
        ),
        (
            "semicolon",
            "root".into(),
            address.clone(),
            format!("[vars]\ntimezone = \"UTC;touch {}\"", m("semicolon")),
            "vars.timezone",
        ),
        (
            "newline",
            "root".into(),
            address.clone(),
            format!(
                "[vars.deploy_user]\nauthorized_keys = [{:?}]",
                format!("{key}\ncommand=\"touch {}\" {key}", m("newline"))
            ),
            "vars.deploy_user.authorized_keys[0]",
        ),
        (
            "percent-validator",
            "root".into(),
            address.clone(),
            format!(
                "[vars.app]\nname = \"x\"\ntemplate = \"ai-meeting\"\npath = \"x%s'$(touch {})'\"",
                m("percent-validator")
            ),
            "vars.app.path",
        ),
        (
            "percent-sudoers",
            "root".into(),
            address.clone(),
            "[vars.deploy_user]\nname = \"%sudo\"".into(),
            "vars.deploy_user.name",
        ),
        (
            "percent-unit",
            "root".into(),
            address.clone(),
            format!(
                "[vars.app]\nname = \"x\"\ntemplate = \"ai-meeting\"\n[vars.app.backup]\nschedule = {:?}",
                format!("%h\nExecStartPre=/bin/touch {}", m("percent-unit"))
            ),
            "vars.app.backup.schedule",
        ),
        (
            "dash-package",
            "root".into(),
            address.clone(),
            format!(
                "[vars]\npackages = [\"curl\", \"-oDPkg::Pre-Invoke::=touch {}\"]",
                m("dash-package")
            ),
            "vars.packages[1]",
        ),
        (
            "dash-user",
            "root".into(),
            address.clone(),
            "[vars.deploy_user]\nname = \"-oops\"".into(),
            "vars.deploy_user.name",
        ),
        (
            "dash-address",
            "root".into(),
            format!("-oProxyCommand=touch {}", m("dash-address")),
            String::new(),
            "address",
        ),
        (
            "dash-login-user",
            format!("-oProxyCommand=touch {}", m("dash-login-user")),
            address.clone(),
            String::new(),
            "defaults.user",
        ),
    ];

    let before = host_state(&host);
    let logins_before = accepted_logins(&host);
    for (class, user, addr, vars, field) in &cases {
        let path = dir.path().join(format!("{class}.toml"));
        std::fs::write(&path, inventory(user, addr, vars)).unwrap();
        let up = jobs::Command::Up { rotate: Vec::new() };
        for command in [up, jobs::Command::Check] {
            // An error, not reports: no host was reached.
            let error = match support::Provision::new(&path).try_run(command.clone()) {
                Err(jobs::JobError::Inventory(error)) => error,
                Err(other) => panic!("{class} {command:?}: not an inventory error: {other}"),
                Ok(reports) => panic!("{class} {command:?} reached the hosts: {reports}"),
            };
            assert!(
                error.field.as_deref().is_some_and(|f| f.ends_with(field)),
                "{class}: expected field {field}: {error:?}"
            );
            assert!(error.line > 1, "{class}: {error:?}");
        }
    }
    let logins_after = accepted_logins(&host);
    assert!(
        logins_after <= logins_before + 1,
        "sshd accepted {} logins while only hostile inventories ran (1 is the count's own)",
        logins_after - logins_before
    );
    let markers = remote(&host, &format!("ls -1d {marker}-* 2>/dev/null || true"));
    assert_eq!(markers, "", "a payload ran on the host");
    for (class, ..) in &cases {
        assert!(
            !Path::new(&m(class)).exists(),
            "{class}: a payload ran here"
        );
    }
    assert_eq!(host_state(&host), before, "the host changed");
    assert!(
        !remote(&host, "ls -1 /etc/sudoers.d").contains("sudo"),
        "a sudoers rule for a group was written"
    );

    // The same inventory without the hostile value does log in: the count sees the tool.
    let valid = dir.path().join("valid.toml");
    std::fs::write(&valid, inventory("root", &address, "")).unwrap();
    let counted = accepted_logins(&host);
    let facts = support::Provision::new(&valid)
        .facts()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(jobs::facts_exit_code(&facts), 0, "{facts:#?}");
    assert!(
        accepted_logins(&host) >= counted + 2,
        "the valid run's login was not counted"
    );

    // A time zone with a valid name that the host's zoneinfo lacks: refused when the plan
    // is made on the host, naming the inventory line that set it.
    assert_eq!(
        remote(&host, "test -f /usr/share/zoneinfo/Etc/UTC && echo tzdata"),
        "tzdata"
    );
    let mars = dir.path().join("mars.toml");
    std::fs::write(
        &mars,
        inventory("root", &address, "[vars]\ntimezone = \"Mars/Olympus_Mons\""),
    )
    .unwrap();
    let check = support::check(&mars);
    assert_eq!(check.code(), 1, "{check}");
    let error = check.error();
    assert!(error.contains("`Mars/Olympus_Mons`"), "{error}");
    assert!(
        error.contains(&format!("set at {}:", mars.display())),
        "names the inventory line: {error}"
    );
}

/// Usage errors are bad input (exit 1), not "changes pending" (2); `--format json` prints
/// an inventory error as JSON with its location. Offline: no lab needed.
#[test]
fn usage_errors_exit_1_and_inventory_errors_print_as_json() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_provision"))
            .args(args)
            .output()
            .expect("run provision")
    };
    for args in [
        &["--no-such-flag"][..],
        &["chek"],
        &["check", "extra"],
        &["--forks", "x", "check"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
    }
    assert_eq!(run(&["--help"]).status.code(), Some(0));
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory.toml");
    std::fs::write(
        &inventory,
        "[vars]\npackages = [\"curl\", \"-oDPkg::Pre-Invoke::=id\"]\n\n[hosts.web-1]\n",
    )
    .unwrap();
    let (code, report, _) = support::provision_report(&inventory, &["check"], &[]);
    assert_eq!(code, 1);
    assert_eq!(
        report["error"],
        serde_json::json!({
            "kind": "inventory",
            "file": inventory.display().to_string(),
            "line": 2,
            "column": 21,
            "field": "vars.packages[1]",
            "message": "\"-oDPkg::Pre-Invoke::=id\" is not a Debian package name (lowercase letters, digits, `+`, `-` and `.`, at least two characters, starting with a letter or digit; optionally `:arch`)",
            "help": null,
        })
    );
}

/// Issue 11: a path is data even when it is spelled like shell. `$(…)`, backticks, `;`,
/// quotes and `%s` are allowed in an absolute path (only `..`, doubled `/` and control
/// characters are not), so this one loads; it must reach the host as exactly that path,
/// written there, with no payload run, and a second run must see it converged.
#[test]
fn issue_11_a_path_spelled_like_shell_is_written_literally() {
    if !lab::testing::skip_unless_lab() {
        return;
    }
    let host = lab::testing::fresh_host();
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("/tmp/provision-issue11-literal-{}", std::process::id());
    let file = format!("/tmp/issue 11/%s'$(touch {marker})'`touch {marker}`;touch {marker}/x.conf");
    let inventory = base_only_inventory(
        &host,
        dir.path(),
        &format!(
            "packages = []\nupgrade = \"none\"\nfiles = [{{ path = {file:?}, content = \"a = 1\\n\", mode = \"0640\" }}]"
        ),
    );

    let up = support::up(&inventory);
    assert_eq!(up.code(), 0, "{up}");
    let quoted = common::shell::quote(&file);
    assert_eq!(
        remote(&host, &format!("stat -c '%a %U' {quoted} && cat {quoted}")),
        "640 root\na = 1"
    );
    assert_eq!(
        remote(&host, &format!("ls -1d {marker}* 2>/dev/null || true")),
        "",
        "a payload in the path ran"
    );
    let check = support::check(&inventory);
    assert_eq!(check.code(), 0, "nothing pending after up: {check}");
}

/// A job whose `up` has apt work on a fresh host (htop is not in the images).
fn apt_job_inventory(host: &lab::LabHost, dir: &Path) -> std::path::PathBuf {
    base_only_inventory(host, dir, "packages = [\"htop\"]\nupgrade = \"none\"")
}

/// Makes the host's real `apt-daily.service` run `exec_start` (a runtime drop-in) after
/// the boot's own background apt runs finished, with both apt timers active, and starts
/// it; returns once `/run/provision-test/held` exists (the job holds its lock: the job
/// creates it from inside), with the unit's main PID.
fn start_apt_daily_holding(host: &lab::LabHost, setup: &str, exec_start: &str) -> String {
    remote(
        host,
        &format!(
            r#"set -e
mkdir -p /run/provision-test /run/systemd/system/apt-daily.service.d
rm -f /run/provision-test/held /run/provision-test/release
mkfifo /run/provision-test/release
{setup}
cat > /run/systemd/system/apt-daily.service.d/zz-provision-test.conf <<'UNIT'
[Service]
ExecStart=
ExecStart={exec_start}
UNIT
systemctl daemon-reload
busy() {{ systemctl show -p ActiveState --value apt-daily.service apt-daily-upgrade.service | grep -q -e activating -e '^active' -e deactivating; }}
# The boot's own background apt runs finish first (a condition, bounded).
i=0; while busy && [ ! -e /run/provision-test/held ]; do
  i=$((i+1)); [ $i -lt 1200 ] || {{ echo 'boot apt jobs still running' >&2; exit 1; }}; sleep 0.5; done
systemctl start apt-daily.timer apt-daily-upgrade.timer
systemctl start --no-block apt-daily.service
i=0; until [ -e /run/provision-test/held ]; do
  i=$((i+1)); [ $i -lt 600 ] || {{ systemctl status apt-daily.service >&2; exit 1; }}; sleep 0.1; done
systemctl show -p MainPID --value apt-daily.service"#
        ),
    )
}

/// `/run/provision-test/hook`: says it runs (inside the job's lock), then blocks until the
/// test writes to the release pipe.
const HOLD_HOOK: &str = "printf '#!/bin/sh\\ntouch /run/provision-test/held\\ncat /run/provision-test/release >/dev/null\\n' > /run/provision-test/hook\nchmod 755 /run/provision-test/hook";

/// Issue 14: a background apt-daily job that holds only the package lists lock (a real
/// `apt-get update`, held inside its lock by an update hook) is stopped, the run says so
/// naming the holder, installs, and starts the apt timers again afterwards.
///
/// The binary: the run says so on its stderr as well as in the report.
#[test]
fn issue_14_a_lists_only_apt_daily_job_is_taken_over_and_the_timers_restored() {
    let Some((host, _dir, inventory)) = host_with(apt_job_inventory) else {
        return;
    };
    // The hook runs inside `apt-get update` while it holds /var/lib/apt/lists/lock.
    let pid = start_apt_daily_holding(
        &host,
        HOLD_HOOK,
        "/usr/bin/apt-get -q -o APT::Update::Pre-Invoke::=/run/provision-test/hook update",
    );
    assert_eq!(remote(&host, &format!("cat /proc/{pid}/comm")), "apt-get");

    let (code, report, stderr) = support::provision_report(&inventory, &["up"], &[]);
    assert_eq!(code, 0, "up failed: {report:#}\n{stderr}");
    let h = &report["hosts"][0];
    let notes: Vec<&str> = h["notes"]
        .as_array()
        .unwrap_or_else(|| panic!("no notes: {h:#}"))
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    assert!(
        notes[0].starts_with(&format!(
            "stopped apt-daily.service (apt-get (PID {pid}, apt-daily.service: package lists refresh and download) holds the package lists lock"
        )),
        "{notes:#?}"
    );
    assert!(
        notes[0].ends_with("apt timers held for the run: apt-daily.timer apt-daily-upgrade.timer"),
        "{notes:#?}"
    );
    assert_eq!(
        notes.last().copied(),
        Some("apt timers restored: apt-daily.timer apt-daily-upgrade.timer")
    );
    assert!(stderr.contains("stopped apt-daily.service"), "{stderr}");
    // Independently: installed, the job gone, the timers running again, no safety timer left.
    assert_eq!(
        remote(&host, "dpkg-query -W -f='${Status}' htop"),
        "install ok installed"
    );
    assert_eq!(
        remote(
            &host,
            &format!("test -e /proc/{pid} && echo running || echo gone")
        ),
        "gone"
    );
    assert_eq!(
        remote(
            &host,
            "systemctl is-active apt-daily.timer apt-daily-upgrade.timer"
        ),
        "active\nactive"
    );
    assert_eq!(
        remote(
            &host,
            "systemctl list-units --all --plain --no-legend 'provision-apt-timers-*' | wc -l"
        ),
        "0"
    );
}

/// Issue 14: a job inside dpkg — a real `dpkg -i` whose maintainer script blocks, run by
/// apt-daily.service itself — is waited for and never interrupted: the run names it while
/// it waits, the dpkg process is still there, and once it finishes the run installs.
///
/// The binary: the waiting message is read from its stderr while it runs.
#[test]
fn issue_14_a_job_inside_dpkg_is_waited_for_and_never_interrupted() {
    let Some((host, _dir, inventory)) = host_with(apt_job_inventory) else {
        return;
    };
    let pid = start_apt_daily_holding(
        &host,
        &format!(
            r#"{HOLD_HOOK}
mkdir -p /tmp/blocker/DEBIAN
printf 'Package: provision-test-blocker\nVersion: 1\nArchitecture: all\nMaintainer: test <test@example.com>\nDescription: blocks in preinst\n' > /tmp/blocker/DEBIAN/control
cp /run/provision-test/hook /tmp/blocker/DEBIAN/preinst
dpkg-deb -b /tmp/blocker /tmp/blocker.deb >/dev/null"#
        ),
        "/usr/bin/dpkg -i /tmp/blocker.deb",
    );
    assert_eq!(remote(&host, &format!("cat /proc/{pid}/comm")), "dpkg");

    let mut child = Command::new(env!("CARGO_BIN_EXE_provision"))
        .arg("--inventory")
        .arg(&inventory)
        .args(["--format", "json", "up"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, waiting) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines.send(line);
        }
    });
    // The run says who it waits for while it waits (the event the test waits on).
    let line = loop {
        let line = waiting
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("a waiting message within 2 min");
        if line.contains("waiting for the apt/dpkg locks") {
            break line;
        }
    };
    assert!(
        line.contains(&format!("dpkg (PID {pid}, apt-daily.service")),
        "{line}"
    );
    // Never interrupted: the same dpkg is still running inside its unit.
    assert_eq!(remote(&host, &format!("cat /proc/{pid}/comm")), "dpkg");
    assert_eq!(
        remote(
            &host,
            "systemctl show -p ActiveState --value apt-daily.service"
        ),
        "activating"
    );
    remote(&host, "echo done > /run/provision-test/release");
    let out = child.wait_with_output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    let h = &report["hosts"][0];
    let note = h["notes"][0].as_str().unwrap_or_default();
    assert!(
        note.starts_with("waited ")
            && note.contains(&format!("dpkg (PID {pid}, apt-daily.service")),
        "{h:#}"
    );
    // dpkg finished its own work, and the run's install went through after it.
    assert_eq!(
        remote(
            &host,
            "dpkg-query -W -f='${Status}\\n' provision-test-blocker htop"
        ),
        "install ok installed\ninstall ok installed"
    );
}

/// Issue 14: with `upgrade = "full"` the upgrade and the run's installs are one apt
/// transaction after one `apt-get update` (counted by an update hook on the host), and
/// nothing is left to upgrade afterwards.
#[test]
fn issue_14_full_upgrade_and_installs_are_one_transaction_after_one_update() {
    if !lab::testing::skip_unless_lab() {
        return;
    }
    let host = lab::testing::fresh_host();
    let dir = tempfile::tempdir().unwrap();
    let inventory = apt_job_inventory(&host, dir.path());
    let text = std::fs::read_to_string(&inventory).unwrap();
    std::fs::write(
        &inventory,
        text.replace("upgrade = \"none\"", "upgrade = \"full\""),
    )
    .unwrap();
    // Lists two days old (the upgrade is due whatever the image's lists offer), an update
    // hook that counts every `apt-get update`, and where the apt history stands now.
    let before = remote(
        &host,
        r#"set -e
touch -d '2 days ago' /var/lib/apt/lists/*_Packages 2>/dev/null || true
echo 'APT::Update::Pre-Invoke { "echo update >> /run/provision-test-updates"; };' > /etc/apt/apt.conf.d/00provision-test-count
rm -f /run/provision-test-updates
stat -c %s /var/log/apt/history.log 2>/dev/null || echo 0"#,
    );
    let up = support::up(&inventory);
    assert_eq!(up.code(), 0, "up failed: {up}");
    let upgrade = up.resource("apt:upgrade");
    assert_eq!(upgrade.status, ResourceStatus::Changed, "{upgrade:#?}");
    assert_eq!(
        remote(&host, "wc -l < /run/provision-test-updates"),
        "1",
        "one apt-get update"
    );
    let history = remote(
        &host,
        &format!("tail -c +$(( {before} + 1 )) /var/log/apt/history.log | grep '^Commandline:'"),
    );
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 1, "one apt transaction: {history}");
    assert!(
        lines[0].contains(" upgrade -- htop"),
        "the upgrade and the install together: {history}"
    );
    assert_eq!(
        remote(&host, "dpkg-query -W -f='${Status}' htop"),
        "install ok installed"
    );
    assert_eq!(
        remote(&host, "apt-get -s upgrade | grep -c '^Inst ' || true"),
        "0",
        "nothing left to upgrade"
    );
}

/// Issue 14: a gather folds its path probes into one `stat` and its unit probes into one
/// `systemctl show`; on a real host (this OS's coreutils and systemd) every folded probe
/// reads exactly what it prints when it runs alone.
#[test]
fn a_folded_gather_reads_on_a_real_host_what_each_probe_alone_prints() {
    use common::facts::builtin::{PathState, UnitState};
    use common::facts::{Fact, fold::StatKind};
    use common::transport::Transport;

    if !lab::testing::skip_unless_lab() {
        return;
    }
    let host = lab::testing::fresh_host();
    remote(
        &host,
        "mkdir -p '/srv/fold/a dir' && printf 'x=1' > '/srv/fold/no newline' && : > /srv/fold/empty \
         && head -c 1048577 /dev/zero > /srv/fold/big && ln -sf /etc/hostname /srv/fold/link \
         && ln -sf /nowhere /srv/fold/dangling && chown 12345:adm '/srv/fold/a dir' && echo ok",
    );
    let paths = [
        "/etc/hostname",
        "/etc/ssh/sshd_config",
        "/etc/passwd",
        "/etc",
        "/etc/localtime",
        "/srv/fold/a dir",
        "/srv/fold/no newline",
        "/srv/fold/empty",
        "/srv/fold/big",
        "/srv/fold/link",
        "/srv/fold/dangling",
        "/srv/fold/missing",
    ];
    let units = [
        "ssh.service",
        "systemd-journald.service",
        "nothing-here.service",
        "apt-daily.timer",
    ];
    let mut probes: Vec<_> = paths
        .iter()
        .flat_map(|p| [PathState::new(*p).probe(), StatKind::Ownership.probe(p)])
        .chain(units.iter().map(|u| {
            UnitState {
                unit: u.to_string(),
            }
            .probe()
        }))
        .collect();
    probes = common::facts::normalize(probes).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let transport = crate::support::connect(&host).await;
        assert!(transport.folds_probes());
        let facts = common::facts::gather(&transport, &probes).await.unwrap();
        for p in &probes {
            let alone = common::testing::run_alone(&transport, p).await.unwrap();
            assert_eq!(facts.raw(&p.key), Some(&alone), "{}", p.key);
        }
        let big = facts.read(&PathState::new("/srv/fold/big")).unwrap();
        assert!(big.content.is_none() && big.sha256.is_some(), "{big:?}");
        let sshd = facts
            .read(&UnitState {
                unit: "ssh.service".into(),
            })
            .unwrap();
        assert_eq!(sshd.load_state, "loaded");
    });
}
