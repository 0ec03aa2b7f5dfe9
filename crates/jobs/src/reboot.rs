//! The reboot step of `up`: after everything else, a host whose updates need a reboot
//! (`/var/run/reboot-required`) is rebooted when the inventory says `reboot =
//! "if-required"` and the host's local time is inside `reboot_window` (any time without
//! one). The run then waits, bounded and saying how long, for SSH to come back, and proves
//! the reboot: a new boot id, and no reboot required any more. What `check` shows comes
//! from [`hardening::reboot::RebootRequired`], in the one fact round trip.

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Transport;
use common::engine::Mode;
use common::facts::{self, Fact};
use common::inventory::{HostSpec, RebootPolicy};
use common::report::{ResourceReport, ResourceStatus};
use common::run::{Connector, Progress};
use common::values::TimeWindow;
use hardening::facts::{REBOOT_REQUIRED, RebootState, RebootStateValue};
use hardening::reboot::{Decision, decide};

/// How long the host may take to answer SSH again after the reboot.
pub(crate) const COME_BACK_TIMEOUT: Duration = Duration::from_secs(300);
/// Pause between login attempts while it reboots.
const RETRY_EVERY: Duration = Duration::from_secs(2);
/// The id of the step's line in the host's report (only when it reboots or fails).
pub(crate) const ID: &str = "reboot";

/// The reboot step of one host.
pub(crate) struct RebootStep {
    pub(crate) mode: Mode,
    pub(crate) connector: Arc<dyn Connector>,
    pub(crate) progress: Arc<dyn Progress>,
    pub(crate) timeout: Duration,
}

impl RebootStep {
    /// Only for `up` with `reboot = "if-required"`: the step's line in the host's report
    /// when it rebooted (or failed to); `transport` is unusable after a reboot. The state
    /// is read again here: this run's upgrades may have asked for the reboot.
    pub(crate) async fn run(
        &self,
        spec: &HostSpec,
        transport: &dyn Transport,
    ) -> Option<ResourceReport> {
        if self.mode == Mode::Check || spec.vars.reboot.unwrap_or_default() == RebootPolicy::Never {
            return None;
        }
        let state = match read_state(transport).await {
            Ok(s) => s,
            Err(e) => return Some(line(ResourceStatus::Failed, e)),
        };
        let policy = spec.vars.reboot.unwrap_or_default();
        let window = spec
            .vars
            .reboot_window
            .as_deref()
            .and_then(|w| TimeWindow::parse(w).ok());
        match decide(policy, window, &state) {
            Decision::Reboot(by) => Some(self.reboot(spec, transport, &state, &by).await),
            Decision::NotRequired | Decision::NotNow(_) => None,
        }
    }

    async fn reboot(
        &self,
        spec: &HostSpec,
        transport: &dyn Transport,
        before: &RebootStateValue,
        by: &str,
    ) -> ResourceReport {
        let started = Instant::now();
        // --no-block: the command returns before the connection goes down with the host.
        match transport.run("systemctl reboot --no-block", b"").await {
            Ok(out) if out.status == 0 => {}
            Ok(out) => {
                return line(
                    ResourceStatus::Failed,
                    format!(
                        "`systemctl reboot` failed ({}): {}",
                        out.status,
                        out.stderr_lossy().trim()
                    ),
                );
            }
            // The connection may go down before the command's status comes back.
            Err(e) => tracing::debug!(host = %spec.name, error = %e, "reboot command"),
        }
        let mut last = String::from("no login attempt yet");
        while started.elapsed() < self.timeout {
            self.progress.phase(
                &spec.name,
                &format!(
                    "rebooting: waiting for SSH ({} s of at most {} s)",
                    started.elapsed().as_secs(),
                    self.timeout.as_secs()
                ),
            );
            match self.connector.connect(spec).await {
                Ok(again) => {
                    let state = read_state(&*again).await;
                    let _ = again.close().await;
                    match state {
                        Ok(s) if s.boot_id == before.boot_id => {
                            last = "the host still runs the boot before the reboot".into();
                        }
                        Ok(s) if s.required_since.is_some() => {
                            return line(
                                ResourceStatus::Failed,
                                format!(
                                    "rebooted ({by}), but {REBOOT_REQUIRED} is there again after {} s",
                                    started.elapsed().as_secs()
                                ),
                            );
                        }
                        Ok(_) => {
                            return line(
                                ResourceStatus::Changed,
                                format!(
                                    "rebooted ({by}): SSH back after {} s, new boot, no reboot required",
                                    started.elapsed().as_secs()
                                ),
                            );
                        }
                        Err(e) => last = e,
                    }
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
        line(
            ResourceStatus::Failed,
            format!(
                "rebooted ({by}), but the host did not answer SSH within {} s; last: {last}",
                self.timeout.as_secs()
            ),
        )
    }
}

async fn read_state(transport: &dyn Transport) -> Result<RebootStateValue, String> {
    let probe = RebootState.probe();
    let gathered = facts::gather(transport, &[probe])
        .await
        .map_err(|e| format!("reading the reboot state: {e}"))?;
    gathered
        .read(&RebootState)
        .map_err(|e| format!("reading the reboot state: {e}"))
}

fn line(status: ResourceStatus, detail: String) -> ResourceReport {
    ResourceReport {
        id: ID.into(),
        status,
        detail,
        actions: Vec::new(),
        diffs: Vec::new(),
        notes: Vec::new(),
    }
}
