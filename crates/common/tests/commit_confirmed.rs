//! The commit-confirmed apply of access-guarding resources (arm a rollback timer on the
//! host, apply, prove a brand-new login, disarm), on a fake host whose rollback timer fires
//! like systemd's would: armed for its window and not disarmed, it restores the files and
//! logins work again. Time is tokio's paused clock, so the window passes instantly.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use common::PlanError;
use common::engine::{self, Options};
use common::facts::{Facts, Probe, ProbeOutput};
use common::report::{HostOutcome, ResourceStatus};
use common::resource::ResourceId;
use common::resources::File;
use common::testing::simulated_host;
use common::transport::fake::{Call, FakeTransport, output};
use common::transport::{ExecOutput, TransportError};
use common::{Plan, Resource, Transport};
use tokio::time::Instant;

/// `/etc/motd`, applied commit-confirmed (as sshd and firewall changes are).
struct Guarded(File);

impl Resource for Guarded {
    fn id(&self) -> ResourceId {
        self.0.id()
    }
    fn probes(&self) -> Vec<Probe> {
        self.0.probes()
    }
    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        self.0.plan(facts)
    }
    fn guards_access(&self) -> bool {
        true
    }
    fn rollback_script(&self) -> Option<String> {
        Some("systemctl reload ssh".into())
    }
}

fn resources() -> Vec<Box<dyn Resource>> {
    vec![Box::new(Guarded(File::new(
        "/etc/motd",
        "managed by provision\n",
    )))]
}

fn motd(converged: bool) -> BTreeMap<String, ProbeOutput> {
    let stdout = if converged {
        // base64("managed by provision\n")
        "regular file|644|root|root|21\nbWFuYWdlZCBieSBwcm92aXNpb24K\n"
    } else {
        "regular file|644|root|root|6\naGVsbG8K\n"
    };
    let probe = ProbeOutput {
        status: 0,
        stdout: stdout.into(),
        stderr: String::new(),
    };
    BTreeMap::from([("path:/etc/motd".to_string(), probe)])
}

#[derive(Debug, Default)]
struct Timer {
    /// When it was armed, and its window.
    armed: Option<(Instant, Duration)>,
    /// The command the timer runs when it fires.
    restore: String,
    disarmed: bool,
    fired: bool,
}

/// How the host behaves during the guarded apply.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Apply {
    /// Applies, and new logins keep working.
    KeepsAccess,
    /// Applies, and new logins fail until the rollback restored the files.
    CutsAccess,
    /// The connection drops while the script runs (it armed the timer, the output is lost).
    Disconnects,
    /// Applies; the first this many new logins are refused at connect time (the host's
    /// SSH rate limit), then they work.
    RefusesLogins(u32),
    /// Applies; new logins are refused until the rollback fired.
    RefusesUntilRolledBack,
}

struct TimerHost {
    inner: FakeTransport,
    apply: Apply,
    timer: Mutex<Timer>,
    /// When each new login was tried.
    logins: Mutex<Vec<Instant>>,
}

impl TimerHost {
    fn new(apply: Apply) -> Self {
        Self {
            inner: simulated_host("web1", motd(false), motd(true)),
            apply,
            timer: Mutex::new(Timer::default()),
            logins: Mutex::new(Vec::new()),
        }
    }

    /// Fire the timer when its window has passed and nobody disarmed it.
    fn tick(&self) {
        let mut t = self.timer.lock().unwrap();
        if let Some((at, window)) = t.armed
            && !t.disarmed
            && !t.fired
            && Instant::now() >= at + window
        {
            t.fired = true;
        }
    }

    fn fired(&self) -> bool {
        self.tick();
        self.timer.lock().unwrap().fired
    }

    fn calls(&self) -> Vec<Call> {
        self.inner.calls()
    }
}

fn window_of(script: &str) -> Duration {
    let after = script.split("--on-active=").nth(1).expect("a timer window");
    let secs: String = after.chars().take_while(char::is_ascii_digit).collect();
    Duration::from_secs(secs.parse().expect("seconds"))
}

#[async_trait]
impl Transport for TimerHost {
    fn host(&self) -> &str {
        self.inner.host()
    }

    async fn run(&self, script: &str, stdin: &[u8]) -> Result<ExecOutput, TransportError> {
        self.tick();
        if script.contains("systemd-run") {
            {
                let mut t = self.timer.lock().unwrap();
                t.armed = Some((Instant::now(), window_of(script)));
                let cmd = script
                    .split("/bin/sh -c ")
                    .nth(1)
                    .expect("a restore command");
                t.restore = cmd.lines().next().unwrap_or_default().to_string();
            }
            let out = self.inner.run(script, stdin).await?;
            if self.apply == Apply::Disconnects {
                return Err(TransportError::Disconnected {
                    host: self.host().into(),
                    source: "connection reset by peer".into(),
                });
            }
            return Ok(out);
        }
        if script.starts_with("systemctl stop provision-rollback-") {
            self.timer.lock().unwrap().disarmed = true;
            self.inner.run(script, stdin).await?;
            return Ok(output(0, ""));
        }
        self.inner.run(script, stdin).await
    }

    async fn verify_fresh_login(&self) -> Result<(), TransportError> {
        let tried = {
            let mut logins = self.logins.lock().unwrap();
            logins.push(Instant::now());
            logins.len() as u32
        };
        let refused = match self.apply {
            Apply::RefusesLogins(n) => tried <= n,
            Apply::RefusesUntilRolledBack => !self.fired(),
            _ => false,
        };
        if refused {
            return Err(TransportError::Refused {
                host: self.host().into(),
                reason: "ssh: connect to host web1 port 22: Connection refused".into(),
                attempts: String::new(),
            });
        }
        if self.apply == Apply::CutsAccess && !self.fired() {
            return Err(TransportError::FreshLogin {
                host: self.host().into(),
                reason: "Connection refused".into(),
            });
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn proof_succeeds_then_the_rollback_timer_is_disarmed() {
    let host = TimerHost::new(Apply::KeepsAccess);
    let report = engine::converge(&host, &resources(), &Options::default()).await;
    assert_eq!(report.outcome, HostOutcome::Changed, "{report:#?}");
    assert_eq!(report.resources[0].status, ResourceStatus::Changed);

    let scripts: Vec<String> = host.calls().into_iter().map(|c| c.script).collect();
    let arm = scripts.iter().position(|s| s.contains("systemd-run"));
    let disarm = scripts
        .iter()
        .position(|s| s.starts_with("systemctl stop provision-rollback-"));
    assert!(arm < disarm, "armed, then disarmed: {scripts:#?}");
    let disarm = &scripts[disarm.expect("a disarm call")];
    assert!(
        disarm.contains("rm -f /etc/motd.provision-rollback"),
        "{disarm}"
    );
    assert!(
        !disarm.contains("mv -f"),
        "disarming restores nothing: {disarm}"
    );

    tokio::time::advance(Duration::from_secs(3600)).await;
    assert!(!host.fired(), "a disarmed timer never fires");
}

#[tokio::test(start_paused = true)]
async fn proof_fails_then_the_host_rolls_back_and_the_run_fails_saying_so() {
    let host = TimerHost::new(Apply::CutsAccess);
    let report = engine::converge(&host, &resources(), &Options::default()).await;
    assert_eq!(report.outcome, HostOutcome::Failed, "{report:#?}");
    let error = report.error.clone().unwrap_or_default();
    assert!(
        error.contains("a new SSH login to web1 failed after changing file:/etc/motd")
            && error.contains("rolled back: a new login works again"),
        "{error}"
    );
    assert!(host.fired(), "the armed timer restored the files");
    // The run ends only once the restore has ended, not at the first login that works.
    let calls = host.calls();
    let waited = calls
        .iter()
        .position(|c| {
            c.script
                .contains("systemctl show -p ActiveState --value provision-rollback-")
        })
        .expect("waits for the rollback unit to end");
    assert!(
        calls[..waited]
            .iter()
            .any(|c| c.script.contains("systemd-run")),
        "after arming"
    );
    let t = host.timer.lock().unwrap();
    assert!(!t.disarmed, "a failed proof never disarms");
    assert!(
        t.restore
            .contains("mv -f /etc/motd.provision-rollback /etc/motd")
            && t.restore.contains("systemctl reload ssh"),
        "the timer restores the snapshot, then reloads: {}",
        t.restore
    );
}

#[tokio::test(start_paused = true)]
async fn connection_lost_mid_apply_leaves_the_armed_rollback_to_fire() {
    let host = TimerHost::new(Apply::Disconnects);
    let report = engine::converge(&host, &resources(), &Options::default()).await;
    assert_eq!(report.outcome, HostOutcome::Failed, "{report:#?}");
    let error = report.error.clone().unwrap_or_default();
    assert!(error.contains("connection to web1 was lost"), "{error}");

    let scripts: Vec<String> = host.calls().into_iter().map(|c| c.script).collect();
    let apply = scripts
        .iter()
        .find(|s| s.contains("systemd-run"))
        .expect("the guarded apply");
    let armed = apply.find("systemd-run").unwrap();
    let first_step = apply.find("__provision_put /etc/motd").expect("the write");
    assert!(
        armed < first_step,
        "the timer is armed before the first step"
    );
    assert!(!scripts.iter().any(|s| s.starts_with("systemctl stop")));

    assert!(!host.fired(), "not before its window");
    tokio::time::advance(Options::default().rollback_window).await;
    assert!(host.fired(), "nobody disarmed it: the host rolls back");
}

#[tokio::test(start_paused = true)]
async fn a_refused_proof_is_retried_with_backoff_inside_the_window_then_confirmed() {
    let host = TimerHost::new(Apply::RefusesLogins(2));
    let started = Instant::now();
    let report = engine::converge(&host, &resources(), &Options::default()).await;
    assert_eq!(report.outcome, HostOutcome::Changed, "{report:#?}");
    let logins = host.logins.lock().unwrap().clone();
    assert_eq!(logins.len(), 3, "refused twice, then through");
    let pauses: Vec<Duration> = logins.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(pauses, [5, 10].map(Duration::from_secs));
    assert!(started.elapsed() < Options::default().rollback_window);
    let t = host.timer.lock().unwrap();
    assert!(
        t.disarmed && !t.fired,
        "confirmed before the window ran out"
    );
}

#[tokio::test(start_paused = true)]
async fn logins_refused_throughout_leave_the_rollback_to_fire_and_name_the_rate_limit() {
    let host = TimerHost::new(Apply::RefusesUntilRolledBack);
    let report = engine::converge(&host, &resources(), &Options::default()).await;
    assert_eq!(report.outcome, HostOutcome::Failed, "{report:#?}");
    let error = report.error.clone().unwrap_or_default();
    assert!(
        error.contains("rolled back: a new login works again")
            && error.contains("the new login was refused (4 attempts over 35 s)")
            && error.contains("SSH rate limit")
            && error.contains("hardening.ssh_rate_limit = false"),
        "{error}"
    );
    assert!(host.fired());
    assert!(!host.timer.lock().unwrap().disarmed);
    // While waiting for the rollback, logins stay spaced below UFW's limit (6 in 30 s).
    let logins = host.logins.lock().unwrap().clone();
    for (i, t) in logins.iter().enumerate() {
        let in_window = logins[i..]
            .iter()
            .take_while(|u| **u - *t < Duration::from_secs(30))
            .count();
        assert!(in_window < 6, "{in_window} logins within 30 s from #{i}");
    }
}

#[tokio::test(start_paused = true)]
async fn retried_proofs_never_outlast_a_short_rollback_window() {
    let host = TimerHost::new(Apply::RefusesLogins(2));
    let options = Options {
        rollback_window: Duration::from_secs(15),
        ..Options::default()
    };
    let report = engine::converge(&host, &resources(), &options).await;
    // 15 s window - 5 s margin: one 5 s pause fits, the 10 s one does not; the second
    // refusal sends the run into the rollback wait, which logs in again only once the
    // timer has fired.
    assert_eq!(report.outcome, HostOutcome::Failed, "{report:#?}");
    assert!(host.fired());
    let logins = host.logins.lock().unwrap().clone();
    assert_eq!(logins[1] - logins[0], Duration::from_secs(5));
    assert_eq!(logins.len(), 3);
    let armed = host.timer.lock().unwrap().armed.expect("armed").0;
    assert!(logins[2] > armed + Duration::from_secs(15), "{logins:?}");
    let error = report.error.unwrap_or_default();
    assert!(error.contains("refused (2 attempts over 5 s)"), "{error}");
}
