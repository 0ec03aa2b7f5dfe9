//! `provision certs` end to end: the real binary, Pebble on this machine and a lab host.
//!
//! `certs issue` obtains a certificate over HTTP-01 on the host's port 80 and installs it;
//! `certs status --format json` shows it from this machine's state; `certs renew` has
//! nothing to do; `certs schedule --install-binary` installs this binary and the renewal
//! timer (a second run changes nothing); then the timer's service runs once on the host —
//! `provision certs renew --local` from the host's own copy of the state — and succeeds
//! without asking the CA anything (nothing is due).
//!
//! Every outcome is checked over an independent SSH login.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use certs::testing::{Pebble, PebbleOptions};

use crate::support;
use lab::testing::remote_output as ssh;
use sha2::{Digest, Sha256};

/// The inventory and the controller's certificate state of one test.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new(host: &lab::LabHost, pebble: &Pebble) -> Self {
        let dir = tempfile::tempdir().unwrap();
        support::write_inventory(
            dir.path(),
            host,
            &support::own_login(host),
            &format!(
                r#"[hosts.{name}.vars.certs]
ca = "{ca}"
ca_root = "{root}"
email = "ops@example.com"
domains = ["app.example.com", "www.app.example.com"]
ssl_dir = "/opt/app/ssl"
reload = "echo reloaded >> /root/reloads"
"#,
                name = host.name,
                ca = pebble.directory_url,
                root = pebble.api_root.display(),
            ),
        );
        Workspace { dir }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `provision --inventory ... --format FORMAT ARGS` with this workspace's state directory.
    fn provision(&self, format: &str, args: &[&str]) -> Run {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_provision"))
            .arg("--inventory")
            .arg(self.dir.path().join("inventory.toml"))
            .args(["--format", format])
            .args(args)
            .env("PROVISION_CERTS_STATE", self.state())
            .env_remove("PROVISION_INVENTORY")
            .stdin(Stdio::null())
            .output()
            .expect("run provision");
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: started.elapsed(),
        };
        eprintln!(
            "provision {} → exit {} in {:.2?}",
            args.join(" "),
            run.code,
            run.elapsed
        );
        run
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{e}: stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }

    fn expect_code(&self, code: i32, pebble: &Pebble) -> &Self {
        assert_eq!(
            self.code,
            code,
            "stdout:\n{}\nstderr:\n{}\npebble log:\n{}",
            self.stdout,
            self.stderr,
            pebble.log()
        );
        self
    }
}

fn sha256_file(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Start a unit without waiting, then poll until it is done; `(ActiveState, Result)`.
fn run_unit_once(host: &lab::LabHost, unit: &str, limit: Duration) -> (String, String) {
    ssh(host, &format!("systemctl start --no-block {unit}"));
    let deadline = Instant::now() + limit;
    loop {
        let show = ssh(
            host,
            &format!("systemctl show -p ActiveState,Result,ExecMainStatus {unit}"),
        );
        let field = |name: &str| {
            show.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .unwrap_or_default()
                .to_string()
        };
        let (active, result) = (field("ActiveState"), field("Result"));
        if matches!(active.as_str(), "inactive" | "failed") {
            return (active, result);
        }
        assert!(
            Instant::now() < deadline,
            "{unit} still {active} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn certs_help_lists_the_subcommands() {
    let out = Command::new(env!("CARGO_BIN_EXE_provision"))
        .args(["certs", "--help"])
        .output()
        .expect("run provision");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in ["issue", "renew", "status", "revoke", "schedule"] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{sub} "))),
            "{sub} missing from:\n{text}"
        );
    }
    let help = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_provision"))
            .args(args)
            .output()
            .expect("run provision");
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let renew = help(&["certs", "renew", "--help"]);
    for flag in ["--force", "--check", "--local", "--config-dir"] {
        assert!(renew.contains(flag), "{flag} missing from:\n{renew}");
    }
    assert!(help(&["certs", "schedule", "--help"]).contains("--install-binary"));
}

#[test]
fn config_dir_needs_local() {
    let out = Command::new(env!("CARGO_BIN_EXE_provision"))
        .args(["certs", "renew", "--config-dir", "/etc/provision/certs"])
        .output()
        .expect("run provision");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a usage error: {stderr}");
    assert!(stderr.contains("--local"), "{stderr}");
}

#[test]
fn issue_status_renew_schedule_then_the_timer_renews_locally() {
    if !support::lab_and_pebble() {
        return;
    }
    let total = Instant::now();
    let host = support::fresh_host_in_area_dir("certs-cli");
    let pebble = Pebble::start(PebbleOptions {
        http_port: 80,
        default_ipv4: host.address.to_string(),
        ..PebbleOptions::default()
    })
    .expect("pebble");
    let ws = Workspace::new(&host, &pebble);
    let ssl = "/opt/app/ssl";

    // --check: no certificate yet, so something would change (exit 2); nothing is written.
    let check = ws.provision("json", &["certs", "issue", "--check"]);
    check.expect_code(2, &pebble);
    assert_eq!(check.json()["certificates"][0]["status"], "pending");
    assert_eq!(
        ssh(&host, &format!("ls {ssl} 2>/dev/null | wc -l")).trim(),
        "0"
    );

    // issue: obtained over HTTP-01 on the host's port 80 and installed.
    let issue = ws.provision("json", &["certs", "issue"]);
    issue.expect_code(0, &pebble);
    let issued = &issue.json()["certificates"][0];
    assert_eq!(issued["status"], "obtained", "{issued:#}");
    assert_eq!(issued["host"], host.name.as_str());
    let chain = ssh(&host, &format!("cat {ssl}/fullchain.pem"));
    let info = certs::CertInfo::from_pem(chain.as_bytes()).unwrap();
    assert_eq!(info.names, ["app.example.com", "www.app.example.com"]);
    assert_eq!(issued["not_after"], certs::info::rfc3339(info.not_after));
    assert_eq!(
        ssh(
            &host,
            &format!("stat -c '%n %a' {ssl}/fullchain.pem {ssl}/privkey.pem")
        ),
        format!("{ssl}/fullchain.pem 644\n{ssl}/privkey.pem 600\n")
    );
    assert_eq!(support::reload_count(&host), 1);

    // status: from this machine's state only.
    let status = ws.provision("json", &["certs", "status"]);
    status.expect_code(0, &pebble);
    let rows = status.json()["certificates"].clone();
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows:#}");
    let row = &rows[0];
    assert_eq!(row["host"], host.name.as_str());
    assert_eq!(row["names"][0], "app.example.com");
    let days_left = row["days_left"].as_i64().expect("days_left is a number");
    assert!(days_left > 0, "{row:#}");
    assert!(row["last_error"].is_null(), "{row:#}");
    let table = ws.provision("text", &["certs", "status"]);
    table.expect_code(0, &pebble);
    assert!(
        table.stdout.starts_with("HOST") && table.stdout.contains("app.example.com"),
        "{}",
        table.stdout
    );

    // renew: not due, nothing changes, nothing reloads.
    let renew = ws.provision("json", &["certs", "renew"]);
    renew.expect_code(0, &pebble);
    let renewed = &renew.json()["certificates"][0];
    assert_eq!(renewed["status"], "unchanged", "{renewed:#}");
    assert_eq!(renewed["install"]["outcome"], "converged", "{renewed:#}");
    assert_eq!(support::reload_count(&host), 1);
    assert_eq!(
        ssh(&host, &format!("cat {ssl}/fullchain.pem")),
        chain,
        "same certificate"
    );

    let check = ws.provision("text", &["certs", "renew", "--check"]);
    check.expect_code(0, &pebble);
    assert!(
        check
            .stdout
            .starts_with(&format!("{}/app.example.com: up to date (", host.name)),
        "{}",
        check.stdout
    );
    eprintln!("{}", check.stdout);

    // schedule --install-binary: this binary, the state copy, the declarations and the timer.
    let schedule = ws.provision("json", &["certs", "schedule", "--install-binary"]);
    schedule.expect_code(0, &pebble);
    let report = schedule.json();
    assert_eq!(report["hosts"][0]["outcome"], "changed", "{report:#}");
    assert_eq!(
        ssh(&host, "systemctl is-enabled provision-certs-renew.timer").trim(),
        "enabled"
    );
    let version = ssh(&host, "/usr/local/bin/provision --version");
    assert!(version.starts_with("provision "), "{version}");
    let ours = sha256_file(Path::new(env!("CARGO_BIN_EXE_provision")));
    assert_eq!(
        ssh(&host, "sha256sum /usr/local/bin/provision | cut -d' ' -f1").trim(),
        ours
    );
    let host_state = format!(
        "/var/lib/provision/certs/certs/{}/app.example.com",
        host.name
    );
    assert_eq!(
        ssh(
            &host,
            &format!(
                "stat -c '%a' /var/lib/provision/certs {host_state} {host_state}/privkey.pem {host_state}/fullchain.pem"
            )
        ),
        "700\n700\n600\n644\n"
    );
    assert_eq!(
        ssh(&host, &format!("cat {host_state}/fullchain.pem")),
        chain
    );

    // Text mode shows the cron equivalent as a comment; a second run changes nothing
    // (the binary is the same build: not uploaded again).
    let again = ws.provision("text", &["certs", "schedule", "--install-binary"]);
    again.expect_code(0, &pebble);
    assert!(
        again
            .stdout
            .contains("certs renew --local --config-dir /etc/provision/certs"),
        "{}",
        again.stdout
    );
    assert!(
        again.stdout.contains("\n# 17 3,15 * * * root"),
        "{}",
        again.stdout
    );
    let again = ws.provision("json", &["certs", "schedule", "--install-binary"]);
    again.expect_code(0, &pebble);
    let report = again.json();
    assert_eq!(report["hosts"][0]["outcome"], "converged", "{report:#}");
    assert!(
        again.elapsed < Duration::from_secs(10),
        "a no-op schedule took {:?}",
        again.elapsed
    );

    // The timer's service, once, on the host: renew --local finds nothing due.
    let started = Instant::now();
    let (active, result) = run_unit_once(
        &host,
        "provision-certs-renew.service",
        Duration::from_secs(120),
    );
    let journal = ssh(
        &host,
        "journalctl -u provision-certs-renew.service --no-pager -o cat | tail -n 30",
    );
    eprintln!(
        "provision-certs-renew.service on the host: {active}/{result} in {:.2?}\n{journal}",
        started.elapsed()
    );
    assert_eq!(
        (active.as_str(), result.as_str()),
        ("inactive", "success"),
        "{journal}"
    );
    assert!(
        journal.contains(&format!("{}/app.example.com: up to date", host.name)),
        "{journal}"
    );
    assert_eq!(support::reload_count(&host), 1, "nothing was reloaded");
    assert_eq!(ssh(&host, &format!("cat {ssl}/fullchain.pem")), chain);
    eprintln!("certs CLI end to end: {:.1?}", total.elapsed());
}
