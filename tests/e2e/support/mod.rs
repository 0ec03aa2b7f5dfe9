//! Helpers shared by the modules of the end-to-end test binary.
#![allow(dead_code)]
#![allow(clippy::print_stdout, clippy::print_stderr)] // a test run says how each `provision` run ended, or why it skipped

use std::path::{Path, PathBuf};
use std::time::Duration;

use lab::LabHost;

use common::transport::ssh::{HostKeyPolicy, SshTarget, SshTransport};

/// The SSH target of a lab host, logging in as `user` (host keys checked strictly).
pub fn target(host: &lab::LabHost, user: &str) -> SshTarget {
    SshTarget {
        name: host.name.clone(),
        destination: host.address.to_string(),
        user: Some(user.to_string()),
        port: Some(host.port),
        identity_file: Some(host.identity_file.clone()),
        known_hosts: Some(host.known_hosts.clone()),
        host_key_policy: HostKeyPolicy::Strict,
        connect_timeout: Some(Duration::from_secs(10)),
        fallback_port: None,
    }
}

/// A connection to a lab host as `user`; panics naming the host when it fails.
pub async fn connect_as(host: &lab::LabHost, user: &str) -> SshTransport {
    SshTransport::connect(target(host, user))
        .await
        .unwrap_or_else(|e| panic!("connect to {} as {user}: {e}", host.name))
}

/// A connection to a lab host as its default user.
pub async fn connect(host: &lab::LabHost) -> SshTransport {
    connect_as(host, &host.user).await
}

/// What a run of the `provision` binary printed (`--format json`) and how it exited.
pub struct Run {
    pub code: i32,
    /// Its JSON report (`Null` when stdout was not JSON).
    pub json: serde_json::Value,
    /// stdout and stderr, for assertion messages.
    pub text: String,
}

impl Run {
    /// Resources of the first host reported `changed` (`usize::MAX` without a report).
    pub fn changes(&self) -> usize {
        self.json["hosts"][0]["resources"]
            .as_array()
            .map(|rs| rs.iter().filter(|r| r["status"] == "changed").count())
            .unwrap_or(usize::MAX)
    }

    /// The resource `id` in the first host's report; panics showing the run's output.
    pub fn resource(&self, id: &str) -> &serde_json::Value {
        find_resource(&self.json, id)
            .unwrap_or_else(|| panic!("no resource {id} in the report\n{}", self.text))
    }
}

/// `provision --inventory INVENTORY --format json ARGS` with `env` added (stdin closed,
/// `PROVISION_INVENTORY` removed); prints how it exited and how long it took.
pub fn provision(inventory: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let started = std::time::Instant::now();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_provision"));
    cmd.arg("--inventory")
        .arg(inventory)
        .args(["--format", "json"])
        .args(args)
        .env_remove("PROVISION_INVENTORY")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run provision");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = out.status.code().unwrap_or(-1);
    println!(
        "provision {} → exit {code} in {:.1} s",
        args.join(" "),
        started.elapsed().as_secs_f64()
    );
    Run {
        code,
        json: serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null),
        text: format!("stdout:\n{stdout}\nstderr:\n{stderr}"),
    }
}

/// An inventory in `dir` (`inventory.toml`) that reaches `host` with the lab's key and
/// known_hosts: `defaults` are the other lines of `[defaults]` (`user = "root"`, a port…),
/// `rest` the tables after `[hosts.NAME]` (`[vars]`…; it starts with a table header).
pub fn write_inventory(dir: &Path, host: &LabHost, defaults: &str, rest: &str) -> PathBuf {
    let text = format!(
        "[defaults]\n{defaults}\nidentity_file = \"{key}\"\nknown_hosts = \"{known}\"\n\n\
         [hosts.{name}]\naddress = \"{address}\"\n\n{rest}",
        key = host.identity_file.display(),
        known = host.known_hosts.display(),
        name = host.name,
        address = host.address,
    );
    let path = dir.join("inventory.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The `[defaults]` lines of a login as the host's own user on its own port.
pub fn own_login(host: &LabHost) -> String {
    format!("user = \"{}\"\nport = {}", host.user, host.port)
}

/// A fresh host in the lab state directory of the test module `area`
/// (`PROVISION_<AREA>_LAB_DIR`, else `/var/lib/provision-lab-<area>-e2e`), so that a
/// `provision lab down` elsewhere on the machine does not take it away mid-test (the base
/// image cache and the machine-wide address slots are shared).
pub fn fresh_host_in_area_dir(area: &str) -> lab::testing::LabGuard {
    let var = format!(
        "PROVISION_{}_LAB_DIR",
        area.to_uppercase().replace('-', "_")
    );
    lab::testing::fresh_host_in_own_dir(&var, &format!("/var/lib/provision-lab-{area}-e2e"))
}

/// True when a test with lab hosts and Pebble can run here; otherwise says why and returns
/// false, except under CI or `PROVISION_LAB_REQUIRED=1`, where it panics.
pub fn lab_and_pebble() -> bool {
    if !lab::testing::skip_unless_lab() {
        return false;
    }
    if !certs::testing::pebble_installed() {
        assert!(
            !lab::testing::lab_required(),
            "pebble is required here but not installed"
        );
        eprintln!("skipping: pebble is not installed (apt-get install pebble)");
        return false;
    }
    true
}

/// How often the certificate's reload command ran on the host (it appends a line to
/// `/root/reloads`).
pub fn reload_count(host: &LabHost) -> usize {
    lab::testing::remote(host, "cat /root/reloads 2>/dev/null | wc -l")
        .parse()
        .unwrap()
}

/// The resource `id` in the first host's entry of a JSON report.
fn find_resource<'a>(report: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    report["hosts"][0]["resources"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["id"] == id))
}

/// The resource `id` in the first host's entry of a JSON report; panics showing the report.
pub fn resource<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    find_resource(report, id).unwrap_or_else(|| panic!("no {id} in {report:#}"))
}

/// [`provision`] whose stdout must be its JSON report (panics showing the output when it
/// is not): the exit code, the report, and stdout and stderr for assertion messages.
pub fn provision_report(
    inventory: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, serde_json::Value, String) {
    let run = provision(inventory, args, env);
    assert!(!run.json.is_null(), "no JSON report:\n{}", run.text);
    (run.code, run.json, run.text)
}

/// The first host's error in a JSON report (empty without one).
pub fn host_error(report: &serde_json::Value) -> &str {
    report["hosts"][0]["error"].as_str().unwrap_or_default()
}
