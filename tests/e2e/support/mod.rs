//! Helpers shared by the modules of the end-to-end test binary.
#![allow(dead_code)]
#![allow(clippy::print_stdout)] // a test run says how each `provision` run ended

use std::time::Duration;

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
