//! Helpers for tests that need a real lab host.
//!
//! ```no_run
//! # fn main() {
//! if !lab::testing::skip_unless_lab() {
//!     return;
//! }
//! let host = lab::testing::fresh_host();
//! let out = host.ssh("hostname").unwrap();
//! assert!(out.status.success());
//! // the host is destroyed when `host` goes out of scope (also on panic)
//! # }
//! ```
#![allow(clippy::print_stderr)] // telling why a test is skipped is the point

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::host::NSPAWN_REBOOT_EXIT;
use crate::{HostSpec, Lab, LabError, LabHost, Os, sys};

/// Variable choosing the OS of test hosts.
pub const OS_VAR: &str = "PROVISION_LAB_OS";

/// The OS test hosts run: `PROVISION_LAB_OS` (e.g. `ubuntu-24.04`), else
/// the lab's default. Panics on an unknown value, listing the choices.
pub fn test_os() -> Os {
    match std::env::var(OS_VAR) {
        Ok(v) if !v.trim().is_empty() => v.parse().unwrap_or_else(|e| panic!("{OS_VAR}: {e}")),
        _ => Os::DEFAULT,
    }
}

/// The host most tests want: [`test_os`], logged in as root (what many VPS
/// providers hand out). Tests of the sudo-user path ask for
/// [`HostSpec::new`] explicitly.
pub fn default_spec() -> HostSpec {
    HostSpec::root(test_os())
}

/// Whether lab tests must run (CI, or `PROVISION_LAB_REQUIRED=1`): then a
/// missing prerequisite is a failure, not a skip.
pub fn lab_required() -> bool {
    let ci = std::env::var("CI")
        .is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"));
    let required = std::env::var("PROVISION_LAB_REQUIRED").is_ok_and(|v| v == "1");
    ci || required
}

/// True when lab tests can run here (root, tools installed). Otherwise
/// prints why on stderr and returns false, so plain `cargo test` on a
/// laptop skips them, except under CI or `PROVISION_LAB_REQUIRED=1`,
/// where it panics.
pub fn skip_unless_lab() -> bool {
    match Lab::ensure_tools() {
        Ok(_) => true,
        Err(e) if lab_required() => {
            panic!(
                "lab tests are required here (CI or PROVISION_LAB_REQUIRED=1) but cannot run: {e}"
            )
        }
        Err(e) => {
            eprintln!("skipping lab test: {e}");
            false
        }
    }
}

/// A lab host that is destroyed when dropped (also during a panic), and
/// booted again when the OS inside reboots: a watcher thread of the guard
/// polls the exit status of the host's nspawn (a child of this process) and,
/// on [`NSPAWN_REBOOT_EXIT`], boots the host again with
/// [`Lab::restart_host`]. Any other exit is left alone (a crash stays
/// visible). The watcher is stopped and joined before the host is destroyed.
///
/// The guard derefs to the host as created: name, address, login and keys
/// stay the same across reboots, its pids do not ([`LabGuard::current`]).
#[derive(Debug)]
pub struct LabGuard {
    lab: Lab,
    host: Option<LabHost>,
    watcher: Option<Watcher>,
}

/// What a guard's watcher has seen and done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchReport {
    /// Times it booted the host again after a reboot inside (also when the
    /// lab's login was refused afterwards: a host a run hardened).
    pub restarts: u32,
    /// Why it stopped watching before the guard was dropped: an exit of
    /// nspawn other than a reboot (left alone), or a failed boot.
    pub ended: Option<String>,
}

#[derive(Debug)]
struct Watcher {
    shared: Arc<Shared>,
    thread: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    report: Mutex<WatchReport>,
}

/// How often the watcher looks at the host's nspawn.
const WATCH_POLL: Duration = Duration::from_millis(150);

impl Watcher {
    fn start(lab: Lab, host: &LabHost) -> std::io::Result<Watcher> {
        let shared = Arc::new(Shared::default());
        let (name, nspawn_pid) = (host.name.clone(), host.nspawn_pid);
        let thread = std::thread::Builder::new()
            .name(format!("lab-watch-{name}"))
            .spawn({
                let shared = Arc::clone(&shared);
                move || watch(&lab, &name, nspawn_pid, &shared)
            })?;
        Ok(Watcher { shared, thread })
    }

    fn stop(self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.thread.thread().unpark();
        if self.thread.join().is_err() {
            eprintln!("the lab host watcher panicked");
        }
    }
}

fn watch(lab: &Lab, name: &str, mut nspawn_pid: u32, shared: &Shared) {
    let stopped = || shared.stop.load(Ordering::SeqCst);
    let end = |why: String| {
        tracing::warn!(host = name, "{why}");
        if let Ok(mut r) = shared.report.lock() {
            r.ended = Some(why);
        }
    };
    while !stopped() {
        std::thread::park_timeout(WATCH_POLL);
        let Some(status) = sys::exit_status(nspawn_pid) else {
            continue; // running (or not our child: nothing to learn)
        };
        if status.code() != Some(NSPAWN_REBOOT_EXIT) {
            return end(format!(
                "systemd-nspawn of {name} exited ({status}); not a reboot, left alone"
            ));
        }
        tracing::info!(
            host = name,
            "rebooted inside (nspawn {status}); booting it again"
        );
        // The stop flag is checked under the host's creation lock: once the
        // guard's teardown has it, no boot starts.
        let restarted = |shared: &Shared| {
            if let Ok(mut r) = shared.report.lock() {
                r.restarts += 1;
            }
        };
        match lab.restart_host_unless(name, &stopped) {
            Ok(Some(h)) => {
                nspawn_pid = h.nspawn_pid;
                restarted(shared);
            }
            Ok(None) => return, // stopping, or removed by someone else
            Err(LabError::StillRunning { .. }) => {
                // Booted again meanwhile by another caller: watch that one.
                match lab.host(name) {
                    Ok(h) => nspawn_pid = h.nspawn_pid,
                    Err(e) => return end(format!("{name} vanished: {e}")),
                }
            }
            Err(e @ LabError::NotReady { .. }) if !stopped() => match lab.host(name) {
                // Booted, but the lab's login is refused (a run hardened
                // it, or moved sshd): the host runs; keep watching it.
                Ok(h) => {
                    tracing::warn!(host = name, error = %e, "booted again; the lab's login is refused");
                    nspawn_pid = h.nspawn_pid;
                    restarted(shared);
                }
                Err(_) => return end(format!("booting {name} again failed: {e}")),
            },
            Err(_) if stopped() => return,
            Err(e) => return end(format!("booting {name} again failed: {e}")),
        }
    }
}

impl LabGuard {
    fn new(lab: Lab, host: LabHost) -> LabGuard {
        let mut guard = LabGuard {
            lab,
            host: Some(host),
            watcher: None,
        };
        match Watcher::start(guard.lab.clone(), &guard) {
            Ok(w) => guard.watcher = Some(w),
            // The guard's drop destroys the host.
            Err(e) => panic!("starting the watcher of lab host {}: {e}", guard.name),
        }
        guard
    }

    /// The lab the host belongs to.
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The host as recorded now (its nspawn and init pids change when it is
    /// booted again); an error while it is not running.
    pub fn current(&self) -> Result<LabHost, LabError> {
        self.lab.host(&self.name)
    }

    /// What the watcher has seen and done so far.
    pub fn watch_report(&self) -> WatchReport {
        self.watcher
            .as_ref()
            .and_then(|w| w.shared.report.lock().ok().map(|r| r.clone()))
            .unwrap_or_default()
    }

    /// Destroy the host now, reporting errors instead of printing them.
    pub fn destroy(mut self) -> Result<(), LabError> {
        self.take_down()
    }

    /// Stop and join the watcher (it may be booting the host: that ends
    /// first, recorded), then destroy the host.
    fn take_down(&mut self) -> Result<(), LabError> {
        if let Some(w) = self.watcher.take() {
            w.stop();
        }
        match self.host.take() {
            Some(h) => self.lab.destroy_host(&h.name),
            None => Ok(()),
        }
    }
}

impl Deref for LabGuard {
    type Target = LabHost;
    fn deref(&self) -> &LabHost {
        self.host.as_ref().expect("LabGuard used after destroy")
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        let name = self
            .host
            .as_ref()
            .map(|h| h.name.clone())
            .unwrap_or_default();
        if let Err(e) = self.take_down() {
            eprintln!("could not destroy lab host {name}: {e}");
        }
    }
}

/// A new, reachable host of the default lab (`Lab::open_default`):
/// preflight, base image (built on first use), `create_host`. Panics with
/// the lab's error message on failure. The host is recorded as owned by this
/// process: `lab up` leaves it out, and if the process dies before the guard
/// runs (e.g. killed by a timeout) the next `fresh_host`, `up` or `down`
/// removes it.
pub fn fresh_host() -> LabGuard {
    fresh_host_of(default_spec())
}

/// Like [`fresh_host`], of the given OS and login.
pub fn fresh_host_of(spec: HostSpec) -> LabGuard {
    let lab = Lab::open_default().unwrap_or_else(|e| panic!("lab: {e}"));
    fresh_host_in_with(lab, spec)
}

/// Like [`fresh_host`], in the given lab.
pub fn fresh_host_in(lab: Lab) -> LabGuard {
    fresh_host_in_with(lab, default_spec())
}

/// Like [`fresh_host_of`], in the given lab.
pub fn fresh_host_in_with(lab: Lab, spec: HostSpec) -> LabGuard {
    if let Err(e) = Lab::preflight() {
        panic!("lab preflight failed: {e}");
    }
    if let Err(e) = lab.ensure_base_image(spec.os) {
        panic!("lab image of {}: {e}", spec.os);
    }
    // Hosts of earlier test processes that were killed before cleaning up.
    if let Err(e) = lab.reap_orphans() {
        eprintln!("could not remove orphaned lab test hosts: {e}");
    }
    match lab.create_host_with(spec, true) {
        Ok(host) => LabGuard::new(lab, host),
        Err(e) => panic!("creating a lab host failed: {e}"),
    }
}

/// Run `script` on the host over a separate plain login (never the tool's own connection)
/// and return its stdout; panics with both outputs when it fails. For independent checks.
pub fn remote_output(host: &LabHost, script: &str) -> String {
    let out = host.ssh(script).expect("ssh runs");
    assert!(
        out.status.success(),
        "`{script}` failed on {}\n--- stdout\n{}\n--- stderr\n{}",
        host.name,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`remote_output`], trimmed.
pub fn remote(host: &LabHost, script: &str) -> String {
    remote_output(host, script).trim().to_string()
}

/// A fresh host in a lab state directory of the test's own (`$state_var`, else
/// `default_state`), so a `provision lab down` elsewhere on the machine cannot take it away
/// mid-test. The base image cache (`PROVISION_LAB_CACHE`) and the machine-wide address
/// slots are shared.
pub fn fresh_host_in_own_dir(state_var: &str, default_state: &str) -> LabGuard {
    let state = std::env::var(state_var).unwrap_or_else(|_| default_state.into());
    let cache =
        std::env::var("PROVISION_LAB_CACHE").unwrap_or_else(|_| crate::DEFAULT_CACHE_DIR.into());
    fresh_host_in(Lab::with_dirs(state.into(), cache.into()))
}
