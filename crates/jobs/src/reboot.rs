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
use common::facts::{self, Fact, FactError};
use common::inventory::{HostSpec, RebootPolicy};
use common::report::{ResourceReport, ResourceStatus};
use common::run::{Connector, Progress};
use hardening::facts::{REBOOT_REQUIRED, RebootState, RebootStateValue};
use hardening::reboot::{Decision, RebootRequired, decide};

/// How long the host may take to answer SSH again after the reboot.
pub(crate) const COME_BACK_TIMEOUT: Duration = Duration::from_secs(300);
/// Pause between login attempts while it reboots.
const RETRY_EVERY: Duration = Duration::from_secs(2);
/// The id of the step's line in the host's report (only when it reboots or fails).
pub(crate) const ID: &str = "reboot";

/// Written to /run (a tmpfs) right before the reboot: gone after any real reboot, also in
/// containers (LXC, OpenVZ) whose boot id is the host kernel's and does not change.
const TOKEN_PATH: &str = "/run/provision-reboot-token";

/// The reboot step of every host of a run.
pub(crate) struct RebootStep {
    pub(crate) mode: Mode,
    pub(crate) connector: Arc<dyn Connector>,
    pub(crate) progress: Arc<dyn Progress>,
    pub(crate) timeout: Duration,
    /// One host reboots at a time (never a whole group at once), and none after a host
    /// whose reboot failed: `true` once one failed.
    pub(crate) one_at_a_time: Arc<tokio::sync::Mutex<bool>>,
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
        let rule = RebootRequired::of(&spec.vars);
        if self.mode == Mode::Check || rule.policy == RebootPolicy::Never {
            return None;
        }
        let state = match read_state(transport).await {
            Ok(s) => s,
            Err(e) => return Some(line(ResourceStatus::Failed, e.to_string())),
        };
        match decide(rule.policy, rule.window, &state) {
            Decision::Reboot(by) => {
                let mut failed_before = self.one_at_a_time.lock().await;
                if *failed_before {
                    return Some(line(
                        ResourceStatus::Failed,
                        format!(
                            "not rebooted ({by}): another host's reboot in this run failed, so no more hosts are rebooted"
                        ),
                    ));
                }
                let report = self.reboot(spec, transport, &state, &by).await;
                *failed_before = report.status == ResourceStatus::Failed;
                Some(report)
            }
            Decision::NotNow(why) => Some(ResourceReport {
                notes: vec![why],
                ..line(ResourceStatus::Ok, "not rebooting now".into())
            }),
            Decision::NotRequired => None,
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
        let token = format!("{:032x}", rand::random::<u128>());
        // --no-block: the command returns before the connection goes down with the host.
        let command =
            format!("printf '%s\\n' {token} > {TOKEN_PATH} && systemctl reboot --no-block");
        match transport.run(&command, b"").await {
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
            let left = self.timeout.saturating_sub(started.elapsed());
            let attempt = tokio::time::timeout(left, async {
                let again = self
                    .connector
                    .connect(spec)
                    .await
                    .map_err(|e| e.to_string())?;
                let state = read_state(&*again).await.map_err(|e| e.to_string());
                let _ = again.close().await;
                state
            });
            match attempt.await {
                Err(_) => last = "the last login attempt did not finish in time".into(),
                Ok(Err(e)) => last = e,
                Ok(Ok(s))
                    if s.boot_id == before.boot_id
                        && s.reboot_token.as_deref() == Some(token.as_str()) =>
                {
                    last = "the host still runs the boot before the reboot".into();
                }
                Ok(Ok(s)) if s.required_since.is_some() => {
                    return line(
                        ResourceStatus::Failed,
                        format!(
                            "rebooted ({by}), but {REBOOT_REQUIRED} is there again after {} s",
                            started.elapsed().as_secs()
                        ),
                    );
                }
                Ok(Ok(_)) => {
                    return line(
                        ResourceStatus::Changed,
                        format!(
                            "rebooted ({by}): SSH back after {} s, new boot, no reboot required",
                            started.elapsed().as_secs()
                        ),
                    );
                }
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

/// The reboot state could not be read (gathered, or parsed).
#[derive(Debug, thiserror::Error)]
#[error("reading the reboot state: {0}")]
struct ReadStateError(FactError);

async fn read_state(transport: &dyn Transport) -> Result<RebootStateValue, ReadStateError> {
    let probe = RebootState.probe();
    let gathered = facts::gather(transport, &[probe])
        .await
        .map_err(ReadStateError)?;
    gathered.read(&RebootState).map_err(ReadStateError)
}

fn line(status: ResourceStatus, detail: String) -> ResourceReport {
    ResourceReport::new(ID, status, detail)
}
