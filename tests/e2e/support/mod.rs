//! Helpers shared by the modules of the end-to-end test binary.
#![allow(dead_code)]
#![allow(clippy::print_stdout, clippy::print_stderr)] // a test run says how each `provision` run ended, or why it skipped

use std::path::{Path, PathBuf};
use std::time::Duration;

use lab::LabHost;

use common::engine::Mode;
use common::report::{HostOutcome, HostReport, ResourceReport, ResourceStatus};
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
/// `PROVISION_INVENTORY` removed); prints how it exited and how long it took. For tests
/// of the CLI itself; the others use [`Provision`].
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

// ---------------------------------------------------------------------------------------
// Through the library: what the binary calls, for tests that do not test the CLI itself
// ---------------------------------------------------------------------------------------

/// A converging command run through the library exactly as the binary runs it: the
/// session the binary builds from its flags (SSH, host keys checked strictly), then
/// [`jobs::run`], the one function behind `up`, `check` and `harden`.
pub struct Provision {
    pub session: jobs::Session,
}

impl Provision {
    /// The binary's defaults for `--inventory INVENTORY`.
    pub fn new(inventory: &Path) -> Self {
        Self {
            session: jobs::Session::over_ssh(inventory.to_path_buf(), false),
        }
    }

    /// `--rollback-window SECS`.
    pub fn rollback_window(mut self, secs: u64) -> Self {
        self.session.run.engine.rollback_window = Duration::from_secs(secs);
        self
    }

    /// `command`; the inventory not loading (or selecting nothing) is the error.
    pub fn try_run(&self, command: jobs::Command) -> Result<Reports, jobs::JobError> {
        // `up` installs the renewal timer with the running executable, which here is this
        // test binary: a host that declares a certificate is a test of the binary.
        if let Ok(declared) = jobs::certs::declarations(&self.session) {
            assert!(
                declared.is_empty(),
                "{}: a host declares a certificate; run the binary (support::provision)",
                self.session.inventory.display()
            );
        }
        let started = std::time::Instant::now();
        let quiet = std::sync::Arc::new(common::run::Quiet);
        let result = block_on(jobs::run(&self.session, &command, quiet));
        let elapsed = started.elapsed();
        let ended = match &result {
            Ok(reports) => format!("exit {}", common::report::exit_code_for(reports)),
            Err(e) => format!("error: {e}"),
        };
        println!("{command:?} → {ended} in {:.1} s", elapsed.as_secs_f64());
        result.map(|hosts| Reports {
            hosts,
            mode: command.mode(),
            elapsed,
        })
    }

    /// `command`, whose inventory must load; panics with the error otherwise.
    pub fn run(&self, command: jobs::Command) -> Reports {
        self.try_run(command)
            .unwrap_or_else(|e| panic!("{}: {e}", self.session.inventory.display()))
    }

    pub fn up(&self) -> Reports {
        self.run(jobs::Command::Up { rotate: Vec::new() })
    }

    pub fn check(&self) -> Reports {
        self.run(jobs::Command::Check)
    }

    /// `harden`, or `harden --check`.
    pub fn harden(&self, check: bool) -> Reports {
        self.run(jobs::Command::Harden { check })
    }

    /// `facts`: what the probes read on each host.
    pub fn facts(&self) -> Result<Vec<jobs::HostFacts>, jobs::JobError> {
        block_on(jobs::facts(&self.session))
    }
}

/// [`Provision::up`] with the binary's defaults.
pub fn up(inventory: &Path) -> Reports {
    Provision::new(inventory).up()
}

/// [`Provision::check`] with the binary's defaults.
pub fn check(inventory: &Path) -> Reports {
    Provision::new(inventory).check()
}

/// `future` on a runtime of its own (the binary's: multi-threaded).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

/// The typed reports of a run through the library, in inventory order.
pub struct Reports {
    pub hosts: Vec<HostReport>,
    pub mode: Mode,
    /// How long the whole run took.
    pub elapsed: Duration,
}

impl Reports {
    /// The binary's exit code for these reports (0 converged, 1 failed, 2 pending).
    pub fn code(&self) -> i32 {
        common::report::exit_code_for(&self.hosts)
    }

    /// The first host's report; panics when there is none.
    pub fn host(&self) -> &HostReport {
        self.hosts
            .first()
            .unwrap_or_else(|| panic!("no host in the run"))
    }

    /// The report of host `name`; panics showing the run when there is none.
    pub fn of(&self, name: &str) -> &HostReport {
        self.hosts
            .iter()
            .find(|h| h.host == name)
            .unwrap_or_else(|| panic!("no report for {name}:\n{self}"))
    }

    pub fn outcome(&self) -> HostOutcome {
        self.host().outcome
    }

    /// Resources of the first host this run changed.
    pub fn changes(&self) -> usize {
        self.host().count(ResourceStatus::Changed)
    }

    /// The first host's resources with `status`.
    pub fn with_status(&self, status: ResourceStatus) -> Vec<&ResourceReport> {
        let resources = self.host().resources.iter();
        resources.filter(|r| r.status == status).collect()
    }

    /// The resource `id` in the first host's report, if it has one.
    pub fn find(&self, id: &str) -> Option<&ResourceReport> {
        self.host().resources.iter().find(|r| r.id == id)
    }

    /// The resource `id` in the first host's report; panics showing the run.
    pub fn resource(&self, id: &str) -> &ResourceReport {
        self.find(id)
            .unwrap_or_else(|| panic!("no resource {id} in the report\n{self}"))
    }

    /// The first host's error (empty without one).
    pub fn error(&self) -> &str {
        self.host().error.as_deref().unwrap_or_default()
    }
}

/// The reports as the binary prints them with `--format json`, for assertion messages.
impl std::fmt::Display for Reports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let json = common::report::reports_json(&self.hosts, self.mode);
        write!(f, "{json:#}")
    }
}

/// A resource's notes on one line each, for `contains` checks.
pub fn notes(resource: &ResourceReport) -> String {
    resource.notes.join("\n")
}
