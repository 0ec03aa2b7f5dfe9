//! facts → plan → apply → verify, for one host.
//!
//! Round trips: one to gather every fact, one to apply every action (all packages in one
//! apt transaction, file payloads streamed on stdin), one to re-read the facts of what
//! changed. Changes that can cut access add an arm/confirm exchange around them.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::apt_lock;
use crate::facts::{self, FactError, Facts, Probe};
use crate::report::{HostOutcome, HostReport, ResourceReport, ResourceStatus};
use crate::resource::{Action, FileWrite, Plan, PlanError, Resource, ResourceId};
use crate::shell::{PUT_FUNCTION, quote};
use crate::transport::retry::{self, Backoff};
use crate::transport::{ExecOutput, Transport, TransportError};

pub use crate::mode::Mode;

#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    /// How long the host waits for a confirmation before it restores access-guarding files.
    pub rollback_window: Duration,
    /// Minutes after which the apt package lists are refreshed before an install.
    pub apt_lists_max_age_minutes: u32,
    /// How long a segment with apt work waits for held dpkg/apt locks (see
    /// [`crate::apt_lock`]) before the host fails naming the holders.
    pub apt_lock_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            mode: Mode::Apply,
            rollback_window: Duration::from_secs(60),
            apt_lists_max_age_minutes: 60,
            apt_lock_timeout: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum EngineError {
    #[error(transparent)]
    Fact(#[from] FactError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("step `{step}` failed on {host} (exit status {status})\n```\n{stderr}\n```")]
    Step {
        host: String,
        step: String,
        status: i32,
        stderr: String,
    },
    #[error(
        "apply on {host} ended without reporting every step (connection cut?)\n```\n{stderr}\n```"
    )]
    Incomplete { host: String, stderr: String },
    #[error(
        "the apt/dpkg locks on {host} are still held after {waited}: {holders}; nothing of this step ran (run again once they are free)"
    )]
    AptLocked {
        host: String,
        waited: String,
        holders: String,
    },
    #[error("{host} did not converge: {details}")]
    NotConverged { host: String, details: String },
    #[error(
        "a new SSH login to {host} failed after changing {what}; the host restores the previous configuration within {window_secs} s{after}"
    )]
    AccessLost {
        host: String,
        what: String,
        window_secs: u64,
        after: String,
    },
}

/// Time kept between the last retried proof login and the rollback timer firing.
const PROOF_MARGIN: Duration = Duration::from_secs(5);

/// Pause between logins while waiting for a rollback to restore access.
const ROLLBACK_POLL: Duration = Duration::from_secs(8);

/// Counts round trips on the way to the real transport.
struct Counting<'a> {
    inner: &'a dyn Transport,
    count: AtomicU32,
}

#[async_trait]
impl Transport for Counting<'_> {
    fn host(&self) -> &str {
        self.inner.host()
    }

    async fn run(&self, script: &str, stdin: &[u8]) -> Result<ExecOutput, TransportError> {
        self.count.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            host = self.inner.host(),
            bytes = script.len() + stdin.len(),
            "round trip"
        );
        self.inner.run(script, stdin).await
    }

    fn folds_probes(&self) -> bool {
        self.inner.folds_probes()
    }

    async fn verify_fresh_login(&self) -> Result<(), TransportError> {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.inner.verify_fresh_login().await
    }

    async fn verify_fresh_login_on(&self, port: u16) -> Result<(), TransportError> {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.inner.verify_fresh_login_on(port).await
    }
}

/// Every probe the resources need, deduplicated.
pub fn probes_of(resources: &[Box<dyn Resource>]) -> Result<Vec<Probe>, FactError> {
    facts::normalize(resources.iter().flat_map(|r| r.probes()).collect())
}

/// A resource's plan plus what the engine adds to it (triggered reloads).
struct Planned {
    plan: Plan,
    triggered: Vec<Action>,
}

impl Planned {
    fn actions(&self) -> impl Iterator<Item = &Action> {
        let own = match &self.plan {
            Plan::Change { actions, .. } => actions.as_slice(),
            _ => &[],
        };
        own.iter().chain(self.triggered.iter())
    }

    fn has_actions(&self) -> bool {
        self.actions().next().is_some()
    }

    /// The resource changes in this run (even if its package install moved elsewhere).
    fn changes(&self) -> bool {
        self.plan.is_change() || !self.triggered.is_empty()
    }
}

fn plan_all(resources: &[Box<dyn Resource>], facts: &Facts) -> Vec<Result<Planned, PlanError>> {
    let mut changed: BTreeSet<ResourceId> = BTreeSet::new();
    resources
        .iter()
        .map(|r| {
            let fires = r.watches().iter().any(|w| changed.contains(w));
            let plan = match fires {
                true => r.plan_when_triggered(facts)?,
                false => r.plan(facts)?,
            };
            if plan.is_change() {
                changed.insert(r.id());
            }
            let triggered = match fires {
                true => r.on_watched_change(facts)?,
                false => Vec::new(),
            };
            Ok(Planned { plan, triggered })
        })
        .collect()
}

/// Converge (or check) one host.
pub async fn converge(
    transport: &dyn Transport,
    resources: &[Box<dyn Resource>],
    options: &Options,
) -> HostReport {
    let started = Instant::now();
    let counting = Counting {
        inner: transport,
        count: AtomicU32::new(0),
    };
    let mut report = HostReport::new(transport.host());
    let mut held = HeldTimers::default();
    let mut result = converge_inner(&counting, resources, options, &mut report, &mut held).await;
    if let Err(e) = held.restore(&counting, &mut report).await
        && result.is_ok()
    {
        result = Err(e);
    }
    report.round_trips = counting.count.load(Ordering::Relaxed);
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(()) => {
            report.outcome = report.derive_outcome(options.mode);
        }
        Err(e) => {
            report.outcome = HostOutcome::Failed;
            report.error = Some(crate::error::error_chain(&e));
        }
    }
    report
}

async fn converge_inner(
    transport: &Counting<'_>,
    resources: &[Box<dyn Resource>],
    options: &Options,
    report: &mut HostReport,
    held: &mut HeldTimers,
) -> Result<(), EngineError> {
    let probes = probes_of(resources)?;
    let facts = facts::gather(transport, &probes).await?;
    let planned = plan_all(resources, &facts);

    // Report every plan before touching anything; a failed fact fails the host.
    let mut first_error = None;
    for (resource, planned) in resources.iter().zip(&planned) {
        report.resources.push(match planned {
            Ok(p) => ResourceReport {
                notes: resource.notes(&facts),
                ..ResourceReport::from_plan(resource.id().as_str(), &p.plan, &p.triggered)
            },
            Err(e) => {
                first_error.get_or_insert_with(|| e.to_string());
                ResourceReport::failed(resource.id().as_str(), e.to_string())
            }
        });
    }
    if let Some(e) = first_error {
        return Err(EngineError::NotConverged {
            host: transport.host().to_string(),
            details: e,
        });
    }
    let mut planned: Vec<Planned> = planned.into_iter().map(|p| p.expect("checked")).collect();
    merge_package_installs(&mut planned);
    if options.mode == Mode::Check || !planned.iter().any(Planned::has_actions) {
        return Ok(());
    }

    // Apply in segments: ordinary steps together; consecutive access-guarding resources
    // together, commit-confirmed with one fresh-login proof. Resources are reported `Changed`
    // as soon as their segment is applied, so a later failure still shows what changed.
    let mut segment: Vec<(usize, &Planned)> = Vec::new();
    let mut guarded: Vec<(&dyn Resource, &Planned)> = Vec::new();
    let mut done = 0;
    for (i, (resource, p)) in resources.iter().zip(&planned).enumerate() {
        if !p.changes() {
            continue;
        }
        if resource.guards_access() && p.has_actions() {
            if !segment.is_empty() {
                apply_segment(transport, &segment, options, report, held).await?;
                segment.clear();
                mark_changed(report, &planned, done..i);
                done = i;
            }
            guarded.push((resource.as_ref(), p));
        } else {
            if !guarded.is_empty() {
                apply_guarded(transport, &guarded, options).await?;
                guarded.clear();
                mark_changed(report, &planned, done..i);
                done = i;
            }
            segment.push((i, p));
        }
    }
    apply_segment(transport, &segment, options, report, held).await?;
    if !guarded.is_empty() {
        apply_guarded(transport, &guarded, options).await?;
    }
    mark_changed(report, &planned, done..planned.len());

    // Verify: re-read the facts of what changed and plan again; each must now be a no-op
    // (a resource whose succeeded actions are its proof is not read again).
    let changed: Vec<&Box<dyn Resource>> = resources
        .iter()
        .zip(&planned)
        .filter(|(r, p)| p.plan.is_change() && !r.verified_by_apply())
        .map(|(r, _)| r)
        .collect();
    let verify_probes =
        facts::normalize(changed.iter().flat_map(|r| r.probes()).collect::<Vec<_>>())?;
    let fresh = facts::gather(transport, &verify_probes).await?;
    let mut not_converged = Vec::new();
    for r in changed {
        match r.plan(&fresh)? {
            Plan::Change { summary, .. } => not_converged.push(format!("{}: {summary}", r.id())),
            Plan::Noop { .. } | Plan::NotApplicable { .. } => {}
        }
    }
    if !not_converged.is_empty() {
        return Err(EngineError::NotConverged {
            host: transport.host().to_string(),
            details: format!("still pending after apply: {}", not_converged.join("; ")),
        });
    }
    Ok(())
}

/// A package set whose install moved into the run's one apt transaction has no actions
/// left of its own, but it changed all the same.
fn mark_changed(report: &mut HostReport, planned: &[Planned], range: std::ops::Range<usize>) {
    for i in range {
        if planned[i].changes() {
            report.resources[i].status = ResourceStatus::Changed;
        }
    }
}

/// The apt work of `actions`: every package to install, in order, and whether the
/// system upgrade is among them.
fn apt_work<'a>(actions: impl IntoIterator<Item = &'a Action>) -> (Vec<String>, bool) {
    let mut all: Vec<String> = Vec::new();
    let mut upgrade = false;
    for a in actions {
        let names = match a {
            Action::InstallPackages { names } => names,
            Action::UpgradePackages { install } => {
                upgrade = true;
                install
            }
            _ => continue,
        };
        for n in names {
            if !all.contains(n) {
                all.push(n.clone());
            }
        }
    }
    (all, upgrade)
}

/// The one apt action standing for all of a run's (or a script's) apt work.
fn merged_apt_action(packages: Vec<String>, upgrade: bool) -> Action {
    match upgrade {
        true => Action::UpgradePackages { install: packages },
        false => Action::InstallPackages { names: packages },
    }
}

/// One apt transaction per run: every package install, and the system upgrade, move
/// into the first of them, wherever it is (an access-guarded segment never has to wait
/// for apt).
fn merge_package_installs(planned: &mut [Planned]) {
    let (all, upgrade) = apt_work(planned.iter().flat_map(|p| p.actions()));
    let mut first = true;
    for p in planned.iter_mut() {
        if let Plan::Change { actions, .. } = &mut p.plan {
            let mut kept = Vec::with_capacity(actions.len());
            for a in actions.drain(..) {
                match a {
                    Action::InstallPackages { .. } | Action::UpgradePackages { .. } if first => {
                        first = false;
                        kept.push(merged_apt_action(all.clone(), upgrade));
                    }
                    Action::InstallPackages { .. } | Action::UpgradePackages { .. } => {}
                    other => kept.push(other),
                }
            }
            *actions = kept;
        }
    }
}

/// The script and stdin that run a list of actions in one round trip.
pub(crate) struct ApplyScript {
    pub script: String,
    pub stdin: Vec<u8>,
    /// Step descriptions, by index.
    pub steps: Vec<String>,
    marker: String,
}

/// Build the apply script for `actions`, merging every package install (and the system
/// upgrade) into the first apt action.
pub(crate) fn build_apply_script(actions: &[&Action], options: &Options) -> ApplyScript {
    let (packages, upgrade) = apt_work(actions.iter().copied());
    let mut hash = Sha256::new();
    for a in actions {
        hash.update(a.describe().as_bytes());
    }
    let marker: String = format!(
        "@@provision-step-{}",
        hash.finalize()
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let mut script = format!(
        "export {env} LC_ALL=C\n\
         __provision_lists_age={}\n__log=$(mktemp) || exit 1\n__provision_apt_err=$(mktemp) || exit 1\n\
         trap 'rm -f \"$__log\" \"$__provision_apt_err\"' EXIT\n{PUT_FUNCTION}\n{apt}\n",
        options.apt_lists_max_age_minutes,
        env = crate::apt::ENVIRONMENT,
        apt = crate::apt::package_function(),
    );
    let mut stdin = Vec::new();
    let mut steps = Vec::new();
    let mut packages_done = false;
    let (units, last_enable) = enables(actions);
    let fused_reload = last_enable.and_then(|e| reload_before(actions, e));
    for (at, a) in actions.iter().enumerate() {
        let (body, reads_stdin) = match a {
            Action::EnableUnits { .. } if Some(at) != last_enable => continue,
            Action::EnableUnits { .. } => {
                let reload = fused_reload.is_some();
                steps.push(match reload {
                    true => format!("systemctl daemon-reload + enable {}", units.join(" ")),
                    false => format!("enable {}", units.join(" ")),
                });
                (enable_command(&units, reload), false)
            }
            Action::DaemonReload if Some(at) == fused_reload => continue,
            Action::DaemonReload => {
                steps.push(a.describe());
                ("systemctl daemon-reload".to_string(), false)
            }
            Action::InstallPackages { .. } | Action::UpgradePackages { .. } if packages_done => {
                continue;
            }
            Action::InstallPackages { .. } | Action::UpgradePackages { .. } => {
                packages_done = true;
                steps.push(merged_apt_action(packages.clone(), upgrade).describe());
                (crate::apt::package_call(upgrade, &packages), false)
            }
            Action::WriteFile(w) => {
                steps.push(format!("write {}", w.path));
                stdin.extend_from_slice(&w.content);
                (put_command(w), true)
            }
            Action::Run {
                description,
                script,
            } => {
                steps.push(description.clone());
                (script.clone(), false)
            }
        };
        let i = steps.len() - 1;
        let redirect = if reads_stdin { "" } else { " </dev/null" };
        script.push_str(&format!(
            "( set -e\n{body}\n) >\"$__log\" 2>&1{redirect}\n__rc=$?\n\
             if [ $__rc -ne 0 ]; then cat \"$__log\" >&2; printf '%s FAIL {i} %s\\n' '{marker}' $__rc; exit 1; fi\n\
             printf '%s OK {i}\\n' '{marker}'\n"
        ));
    }
    ApplyScript {
        script,
        stdin,
        steps,
        marker,
    }
}

/// Shell that enables those of `units` that are not enabled yet with one `systemctl
/// enable`. A unit planned on a fresh host is often enabled by the time this runs (its
/// package's own install did it), and each `systemctl enable` reloads the whole manager,
/// on Debian once more for each unit with a SysV script (`systemd-sysv-install`).
/// `systemctl is-enabled` reads the unit files on disk and succeeds for the states
/// [`crate::facts::builtin::UnitStateValue`] counts as enabled. `reload`: the step also
/// does the daemon-reload that came right before it, once, after the enables.
fn enable_command(units: &[String], reload: bool) -> String {
    let words: Vec<String> = units.iter().map(|u| quote(u)).collect();
    let enable = match reload {
        true => {
            "if [ $# -gt 0 ]; then systemctl enable --no-reload -- \"$@\"; fi\nsystemctl daemon-reload"
        }
        false => "if [ $# -gt 0 ]; then systemctl enable -- \"$@\"; fi",
    };
    format!(
        "set --\n\
         for __unit in {}; do systemctl is-enabled --quiet -- \"$__unit\" 2>/dev/null || set -- \"$@\" \"$__unit\"; done\n\
         {enable}",
        words.join(" ")
    )
}

/// The daemon-reload the enable step at `enable` can do: the action rendered right
/// before it (only skipped enables and merged apt actions between them), so nothing
/// between the two needs the reload first.
fn reload_before(actions: &[&Action], enable: usize) -> Option<usize> {
    let first_apt = actions.iter().position(|a| {
        matches!(
            a,
            Action::InstallPackages { .. } | Action::UpgradePackages { .. }
        )
    });
    for at in (0..enable).rev() {
        match actions[at] {
            Action::DaemonReload => return Some(at),
            Action::EnableUnits { .. } => {}
            Action::InstallPackages { .. } | Action::UpgradePackages { .. }
                if first_apt != Some(at) => {}
            _ => return None,
        }
    }
    None
}

/// Every unit the actions enable, each once in order, and where the last enable is.
fn enables(actions: &[&Action]) -> (Vec<String>, Option<usize>) {
    let mut units: Vec<String> = Vec::new();
    let mut last = None;
    for (at, a) in actions.iter().enumerate() {
        if let Action::EnableUnits { units: these } = a {
            last = Some(at);
            for u in these {
                if !units.contains(u) {
                    units.push(u.clone());
                }
            }
        }
    }
    (units, last)
}

fn put_command(w: &FileWrite) -> String {
    let mut cmd = format!(
        "mkdir -p -- \"$(dirname -- {p})\"\n__provision_put {p} {:o} {} {}",
        w.mode,
        quote(&format!("{}:{}", w.owner, w.group)),
        w.content.len(),
        p = quote(&w.path),
    );
    if let Some(v) = &w.validate {
        // Validate the new file in place of the old one; restore the old on failure. The
        // path is one more argument of the check, never substituted into its text.
        let check = v.clone().arg(w.path.clone());
        cmd.push_str(&format!(
            "\nif ! {check} >&2; then if [ -f {p}.provision-bak ] && [ -n {had} ]; then mv -f -- {p}.provision-bak {p}; else rm -f -- {p}; fi; echo {failed} >&2; exit 1; fi",
            p = quote(&w.path),
            had = if w.previous.is_some() { "yes" } else { "''" },
            failed = quote(&format!("validation failed: {} was refused, the old file is kept", w.path)),
        ));
    }
    cmd
}

impl ApplyScript {
    /// Which step failed (if any), from the markers in stdout.
    pub(crate) fn outcome(&self, host: &str, out: &ExecOutput) -> Result<(), EngineError> {
        let stdout = out.stdout_lossy();
        let mut ok = 0usize;
        for line in stdout.lines() {
            let Some(rest) = line.strip_prefix(&self.marker) else {
                continue;
            };
            let mut words = rest.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("OK"), Some(_), _) => ok += 1,
                (Some("FAIL"), Some(i), status) => {
                    let i: usize = i.parse().unwrap_or(0);
                    return Err(EngineError::Step {
                        host: host.to_string(),
                        step: self.steps.get(i).cloned().unwrap_or_default(),
                        status: status.and_then(|s| s.parse().ok()).unwrap_or(-1),
                        stderr: out.stderr_lossy().trim_end().to_string(),
                    });
                }
                _ => {}
            }
        }
        if ok == self.steps.len() && out.success() {
            Ok(())
        } else {
            Err(EngineError::Incomplete {
                host: host.to_string(),
                stderr: out.stderr_lossy().trim_end().to_string(),
            })
        }
    }
}

/// Whether an action takes the dpkg/apt locks.
fn uses_apt(action: &Action) -> bool {
    match action {
        Action::InstallPackages { .. } | Action::UpgradePackages { .. } => true,
        Action::Run { script, .. } => apt_lock::uses_apt(script),
        Action::WriteFile(_) | Action::EnableUnits { .. } | Action::DaemonReload => false,
    }
}

/// The apt timers a run held (stopped) after taking over from a lists-only job; started
/// again when the host's run ends, whatever its outcome.
#[derive(Debug, Default)]
struct HeldTimers {
    timers: Vec<String>,
}

impl HeldTimers {
    async fn restore(
        &mut self,
        transport: &Counting<'_>,
        report: &mut HostReport,
    ) -> Result<(), EngineError> {
        if self.timers.is_empty() {
            return Ok(());
        }
        let timers = std::mem::take(&mut self.timers);
        let out = transport
            .run(&apt_lock::restore_script(&timers), b"")
            .await
            .and_then(|o| {
                crate::transport::expect_success(transport.host(), "restoring the apt timers", o)
            });
        match out {
            Ok(_) => {
                report
                    .notes
                    .push(format!("apt timers restored: {}", timers.join(" ")));
                Ok(())
            }
            Err(e) => {
                tracing::warn!(host = transport.host(), error = %e, "could not restore the apt timers; the host's safety timer restores them within {} min", apt_lock::RESTORE_AFTER.as_secs() / 60);
                Err(e.into())
            }
        }
    }
}

async fn apply_segment(
    transport: &Counting<'_>,
    segment: &[(usize, &Planned)],
    options: &Options,
    report: &mut HostReport,
    held: &mut HeldTimers,
) -> Result<(), EngineError> {
    let actions: Vec<&Action> = segment.iter().flat_map(|(_, p)| p.actions()).collect();
    if actions.is_empty() {
        return Ok(());
    }
    let apply = build_apply_script(&actions, options);
    if !actions.iter().any(|a| uses_apt(a)) {
        let out = transport.run(&apply.script, &apply.stdin).await?;
        return apply.outcome(transport.host(), &out);
    }
    // apt work: the script changes nothing while a lock is held and names the holders.
    let script = format!("{}{}", apt_lock::prelude(), apply.script);
    let host = transport.host().to_string();
    let started = Instant::now();
    let mut first_seen: Option<String> = None;
    let mut took_over = false;
    loop {
        // How long the run waited is until the attempt that found the locks free began,
        // not until that attempt's apt work ended.
        let attempt = Instant::now();
        let out = transport.run(&script, &apply.stdin).await?;
        let stdout = out.stdout_lossy();
        let Some(rest) = stdout
            .strip_prefix(apt_lock::LOCKED_MARKER)
            .map(|r| r.trim_start_matches('\n'))
        else {
            if let Some(holders) = first_seen {
                report.notes.push(format!(
                    "waited {} for the apt/dpkg locks: {holders}",
                    apt_lock::human_duration(attempt.duration_since(started).as_secs())
                ));
            }
            return apply.outcome(&host, &out);
        };
        let mut state = apt_lock::LockState::parse(rest);
        let mut decision = apt_lock::decide(&state);
        if took_over && matches!(decision, apt_lock::Decision::TakeOver { .. }) {
            decision = apt_lock::Decision::Wait {
                reason: "it started again after this run stopped it".into(),
            };
        }
        if let apt_lock::Decision::TakeOver { unit } = &decision {
            took_over = true;
            let out = transport
                .run(&apt_lock::take_over_script(unit), b"")
                .await?;
            let out =
                crate::transport::expect_success(&host, "stopping a background apt job", out)?;
            match apt_lock::parse_take_over(&out.stdout_lossy()) {
                Ok(timers) => {
                    let note = format!(
                        "stopped {unit} ({}: only refreshing package lists or downloading); apt timers held for the run: {}",
                        state.describe(),
                        if timers.is_empty() {
                            "none active".to_string()
                        } else {
                            timers.join(" ")
                        }
                    );
                    tracing::warn!(%host, "{note}");
                    report.notes.push(note);
                    held.timers.extend(timers);
                    continue;
                }
                Err(busy) => {
                    state = busy;
                    decision = apt_lock::decide(&state);
                }
            }
        }
        match decision {
            apt_lock::Decision::Proceed => continue,
            apt_lock::Decision::TakeOver { .. } | apt_lock::Decision::Wait { .. } => {}
        }
        let holders = state.describe();
        let waited = started.elapsed();
        if waited >= options.apt_lock_timeout {
            return Err(EngineError::AptLocked {
                host,
                waited: apt_lock::human_duration(waited.as_secs()),
                holders,
            });
        }
        let reason = match &decision {
            apt_lock::Decision::Wait { reason } => reason.clone(),
            _ => String::new(),
        };
        tracing::warn!(
            %host,
            "waiting for the apt/dpkg locks ({} so far, at most {}): {holders}; {reason}",
            apt_lock::human_duration(waited.as_secs()),
            apt_lock::human_duration(options.apt_lock_timeout.as_secs())
        );
        first_seen.get_or_insert(holders);
        let poll = apt_lock::POLL.min(options.apt_lock_timeout.saturating_sub(waited));
        transport
            .run(&apt_lock::wait_script(poll.as_secs().max(1)), b"")
            .await?;
    }
}

/// Arm a rollback on the host, apply a group of access-guarding resources, prove a NEW
/// login works, then disarm.
async fn apply_guarded(
    transport: &Counting<'_>,
    group: &[(&dyn Resource, &Planned)],
    options: &Options,
) -> Result<(), EngineError> {
    let host = transport.host().to_string();
    let actions: Vec<&Action> = group.iter().flat_map(|(_, p)| p.actions()).collect();
    let what = group
        .iter()
        .map(|(r, _)| r.id().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let reloads: Vec<String> = group
        .iter()
        .filter_map(|(r, _)| r.rollback_script())
        .collect();
    let reload = (!reloads.is_empty()).then(|| reloads.join("; "));
    let unit = format!("provision-rollback-{}", std::process::id());
    let window = options.rollback_window.as_secs().max(10);
    let paths = written_paths(&actions);
    let restore = rollback_commands(&paths, reload.as_deref());
    let arm = format!(
        "set -e\n{}systemctl stop {unit}.timer {unit}.service >/dev/null 2>&1 || true\n\
         systemctl reset-failed {unit}.service >/dev/null 2>&1 || true\n\
         systemd-run --quiet --unit={unit} --on-active={window}s --timer-property=AccuracySec=1s /bin/sh -c {}",
        snapshot_commands(&paths),
        quote(&restore)
    );
    let apply = build_apply_script(&actions, options);
    let script = format!(
        // Not in an `||` list: `set -e` inside the subshell must stay in force.
        "( {arm}\n) </dev/null\nif [ $? -ne 0 ]; then echo 'could not arm the rollback (snapshot or timer)' >&2; exit 1; fi\n{}",
        apply.script
    );
    let armed_at = tokio::time::Instant::now();
    let out = transport.run(&script, &apply.stdin).await?;
    if let Err(e) = apply.outcome(&host, &out) {
        // A step failed: disarm and restore the snapshots now.
        let _ = transport
            .run(&format!("systemctl stop {unit}.timer; {restore}"), b"")
            .await;
        return Err(e);
    }
    // A refused proof may be the host's SSH rate limit: back off and try again, as long
    // as the armed rollback leaves time (a proof that succeeds only after the rollback
    // fired would prove nothing). After an sshd port move the proof logs in on the new
    // port: the old one may be closed now, and a login there would prove nothing about
    // the next run.
    let access_port = group.iter().find_map(|(r, _)| r.access_port());
    let budget = Duration::from_secs(window).saturating_sub(armed_at.elapsed() + PROOF_MARGIN);
    let (proof, attempts) = retry::retry(
        &Backoff::default(),
        Some(budget),
        || match access_port {
            Some(port) => transport.verify_fresh_login_on(port),
            None => transport.verify_fresh_login(),
        },
        |e: &TransportError| matches!(e, TransportError::Refused { .. }),
        tokio::time::sleep,
    )
    .await;
    match proof {
        Ok(()) => {
            let discard: String = paths
                .iter()
                .map(|p| format!("rm -f {}.provision-rollback; ", quote(p)))
                .collect();
            let disarm = format!("systemctl stop {unit}.timer >/dev/null 2>&1; {discard}true");
            transport.run(&disarm, b"").await?;
            Ok(())
        }
        Err(login_error) => {
            tracing::warn!(%host, error = %login_error, "fresh login failed; waiting for the host to roll back");
            // Wait for the rollback timer to fire (a login that works before then proves
            // nothing: the change is still in place), then poll until a new login works.
            let fires_at = armed_at + Duration::from_secs(window);
            let deadline = fires_at + Duration::from_secs(60);
            tokio::time::sleep_until(fires_at + Duration::from_secs(1)).await;
            let refused = matches!(login_error, TransportError::Refused { .. });
            let mut after = loop {
                let last = match transport.verify_fresh_login().await {
                    Ok(()) => {
                        // A login can get through while the restore still runs (`ufw
                        // reload` lets everything in between its stop and its start):
                        // the rollback is done when its unit has ended.
                        let _ = transport.run(&wait_for_unit_end(&unit), b"").await;
                        break "; rolled back: a new login works again".to_string();
                    }
                    Err(e) => e.to_string(),
                };
                if tokio::time::Instant::now() >= deadline {
                    break format!("; after the window a new login still fails: {last}");
                }
                // Spaced so that these logins alone never trip UFW's `limit` (6 within 30 s).
                tokio::time::sleep(ROLLBACK_POLL).await;
            };
            if refused {
                after.push_str(&format!(
                    "; the new login was refused{}: {}",
                    attempts.describe(),
                    retry::RATE_LIMIT_HINT
                ));
            }
            Err(EngineError::AccessLost {
                host,
                what,
                window_secs: window,
                after,
            })
        }
    }
}

/// Shell that waits (at most 60 s) until the rollback unit `unit` is no longer running.
fn wait_for_unit_end(unit: &str) -> String {
    format!(
        "i=0; while [ $i -lt 600 ]; do case \"$(systemctl show -p ActiveState --value {unit}.service 2>/dev/null)\" in \
         active|activating|deactivating|reloading) sleep 0.1; i=$((i + 1)) ;; *) exit 0 ;; esac; done; exit 1"
    )
}

/// Paths of the files an action list writes.
fn written_paths<'a>(actions: &[&'a Action]) -> Vec<&'a str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::WriteFile(w) => Some(w.path.as_str()),
            _ => None,
        })
        .collect()
}

/// Shell run when the rollback is armed: a snapshot of every file the guarded change is
/// about to write (`PATH.provision-rollback`; none for files that do not exist yet). The
/// rollback restores these snapshots, never an older run's `.provision-bak`.
fn snapshot_commands(paths: &[&str]) -> String {
    paths
        .iter()
        .map(|p| {
            let p = quote(p);
            format!("if [ -e {p} ]; then cp -p {p} {p}.provision-rollback; else rm -f {p}.provision-rollback; fi\n")
        })
        .collect()
}

/// Shell that puts every snapshot back (or removes files that did not exist when the
/// rollback was armed), then runs the resource's reload.
fn rollback_commands(paths: &[&str], reload: Option<&str>) -> String {
    let mut s: String = paths
        .iter()
        .map(|p| {
            let p = quote(p);
            format!("if [ -e {p}.provision-rollback ]; then mv -f {p}.provision-rollback {p}; else rm -f {p}; fi; ")
        })
        .collect();
    if let Some(r) = reload {
        s.push_str(r);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shell::Command;

    /// The `systemctl` calls (each its words) of `apply` run locally where the units in
    /// `enabled` (one per line) are enabled already.
    fn systemctl_calls(
        apply: &ApplyScript,
        dir: &std::path::Path,
        enabled: &str,
    ) -> Vec<Vec<String>> {
        std::fs::write(dir.join("enabled"), enabled).unwrap();
        let _ = std::fs::remove_file(dir.join("record"));
        let (out, record) = run_locally(apply, dir);
        assert!(out.status.success(), "{out:?}");
        record
            .split("\n\n")
            .filter(|c| c.starts_with("systemctl"))
            .map(|c| c.lines().skip(1).map(str::to_string).collect())
            .collect()
    }

    /// Run an apply script locally with fake `apt-get`, `visudo` and `chown` that record
    /// their argv (one word per line) in `$RECORD`.
    fn run_locally(apply: &ApplyScript, dir: &std::path::Path) -> (std::process::Output, String) {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for tool in ["apt-get", "visudo", "chown", "systemctl"] {
            let path = bin.join(tool);
            // `systemctl is-enabled --quiet -- UNIT`: enabled when UNIT is a line of
            // `enabled` beside the record.
            let query = match tool {
                "systemctl" => {
                    "if [ \"$1\" = is-enabled ]; then grep -qxF -- \"$4\" \"$(dirname \"$RECORD\")/enabled\" 2>/dev/null; exit; fi\n"
                }
                _ => "",
            };
            crate::testing::write_program(
                &path,
                &format!(
                    "{query}{{ echo {tool}; for a in \"$@\"; do printf '%s\\n' \"$a\"; done; echo; }} >> \"$RECORD\""
                ),
            );
        }
        let record = dir.join("record");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&apply.script)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("RECORD", &record)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(&apply.stdin)?;
                child.wait_with_output()
            })
            .unwrap();
        (out, std::fs::read_to_string(record).unwrap_or_default())
    }

    /// Issue 11, path 1: a package name starting with `-o` is an operand of apt-get, after
    /// `--`, never an option (a `DPkg::Pre-Invoke` hook would run as root).
    #[test]
    fn package_names_reach_apt_get_after_the_end_of_options() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("marker");
        let hostile = format!("-oDPkg::Pre-Invoke::=touch {}", marker.display());
        let install = Action::InstallPackages {
            names: vec![hostile.clone(), "curl".into()],
        };
        let apply = build_apply_script(&[&install], &Options::default());
        let (out, record) = run_locally(&apply, dir.path());
        assert!(out.status.success(), "{out:?}");
        let install_call = record
            .split("\n\n")
            .find(|call| call.lines().any(|l| l == "install"))
            .unwrap_or_else(|| panic!("no apt-get install in {record}"));
        let words: Vec<&str> = install_call.lines().collect();
        let end = words
            .iter()
            .position(|w| *w == "--")
            .expect("`--` before the packages");
        assert_eq!(&words[end + 1..], [hostile.as_str(), "curl"]);
        assert!(!marker.exists());
    }

    /// Issue 14: the system upgrade and every install of a script are one apt
    /// transaction (`apt-get upgrade -- PACKAGES`) after one `apt-get update`, at the
    /// place of the first apt action.
    #[test]
    fn the_upgrade_and_the_installs_are_one_transaction_after_one_update() {
        let dir = tempfile::tempdir().unwrap();
        let htop = Action::InstallPackages {
            names: vec!["htop".into()],
        };
        let upgrade = Action::UpgradePackages { install: vec![] };
        let curl = Action::InstallPackages {
            names: vec!["curl".into(), "htop".into()],
        };
        let stale = Options {
            apt_lists_max_age_minutes: 0,
            ..Options::default()
        };
        let apply = build_apply_script(&[&htop, &upgrade, &curl], &stale);
        assert_eq!(apply.steps, ["apt upgrade + install htop curl"]);
        let (out, record) = run_locally(&apply, dir.path());
        assert!(out.status.success(), "{out:?}");
        let calls: Vec<Vec<&str>> = record
            .split("\n\n")
            .filter(|c| !c.is_empty())
            .map(|c| c.lines().collect())
            .collect();
        let verbs: Vec<&str> = calls
            .iter()
            .filter_map(|c| {
                c.iter()
                    .find(|w| ["update", "upgrade", "install"].contains(w))
            })
            .copied()
            .collect();
        assert_eq!(verbs, ["update", "upgrade"], "{record}");
        assert_eq!(calls[1][calls[1].len() - 3..], ["--", "htop", "curl"]);
        // Alone, the upgrade is the same step with nothing to install.
        let alone = build_apply_script(&[&upgrade], &Options::default());
        assert_eq!(alone.steps, ["apt upgrade"]);
        assert!(alone.script.contains("\n__provision_apt upgrade\n"));
    }

    /// Issue 14: every unit enabled in one apply script is one `systemctl enable --
    /// UNITS` (one manager reload, not one per unit), run where the script's last enable
    /// was: after every unit's file is written; a unit enabled by then (by its package's
    /// install) is left out, and with none left there is no `systemctl enable`.
    #[test]
    fn the_units_of_a_script_are_enabled_by_one_systemctl_after_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let owner = std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap();
        let owner = String::from_utf8_lossy(&owner.stdout).trim().to_string();
        let unit_file = dir.path().join("backup.timer").display().to_string();
        let enable = |u: &str| Action::EnableUnits {
            units: vec![u.to_string()],
        };
        let docker = enable("docker.service");
        let start_docker = Action::run("start docker.service", "systemctl start docker.service");
        let write = Action::WriteFile(FileWrite {
            path: unit_file.clone(),
            content: b"[Timer]\n".to_vec(),
            mode: 0o644,
            owner: owner.clone(),
            group: owner,
            previous: None,
            sensitive: false,
            validate: None,
        });
        let timer = enable("-backup.timer");
        let again = enable("docker.service");
        let apply = build_apply_script(
            &[&docker, &start_docker, &write, &timer, &again],
            &Options::default(),
        );
        assert_eq!(
            apply.steps,
            [
                "start docker.service".to_string(),
                format!("write {unit_file}"),
                "enable docker.service -backup.timer".to_string(),
            ]
        );
        let systemctl = |enabled: &str| systemctl_calls(&apply, dir.path(), enabled);
        assert_eq!(
            systemctl(""),
            [
                vec!["start", "docker.service"],
                vec!["enable", "--", "docker.service", "-backup.timer"],
            ]
        );
        assert_eq!(
            systemctl("docker.service\n"),
            [
                vec!["start", "docker.service"],
                vec!["enable", "--", "-backup.timer"],
            ]
        );
        assert_eq!(
            systemctl("docker.service\n-backup.timer\n"),
            [vec!["start", "docker.service"]]
        );
    }

    /// Issue 14: a daemon-reload right before the enable step (an app's unit files, then
    /// their timer enabled) is done by that step: `systemctl enable --no-reload` of what
    /// is not enabled, then one reload, also when nothing was left to enable. A reload
    /// with another step between it and the enable stays where it is.
    #[test]
    fn a_daemon_reload_right_before_the_enable_step_is_done_by_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let timer = Action::EnableUnits {
            units: vec!["app-backup.timer".into()],
        };
        let start = Action::run("start app-backup.timer", "systemctl start app-backup.timer");
        let apply = build_apply_script(
            &[&Action::DaemonReload, &timer, &start],
            &Options::default(),
        );
        assert_eq!(
            apply.steps,
            [
                "systemctl daemon-reload + enable app-backup.timer",
                "start app-backup.timer"
            ]
        );
        let systemctl = |enabled: &str| {
            let calls = systemctl_calls(&apply, dir.path(), enabled);
            calls.into_iter().map(|c| c.join(" ")).collect::<Vec<_>>()
        };
        assert_eq!(
            systemctl(""),
            [
                "enable --no-reload -- app-backup.timer",
                "daemon-reload",
                "start app-backup.timer"
            ]
        );
        assert_eq!(
            systemctl("app-backup.timer\n"),
            ["daemon-reload", "start app-backup.timer"]
        );
        // A step between them may need the reload: both stay.
        let restart = Action::run("restart x", "systemctl restart x.service");
        let apart = build_apply_script(
            &[&Action::DaemonReload, &restart, &timer],
            &Options::default(),
        );
        assert_eq!(
            apart.steps,
            [
                "systemctl daemon-reload",
                "restart x",
                "enable app-backup.timer"
            ]
        );
    }

    /// A resource whose plan always asks for the upgrade; `proven`: its succeeded apply
    /// is its proof ([`Resource::verified_by_apply`]).
    struct AlwaysUpgrade {
        proven: bool,
    }

    impl Resource for AlwaysUpgrade {
        fn id(&self) -> ResourceId {
            ResourceId::of("apt", "upgrade")
        }

        fn probes(&self) -> Vec<Probe> {
            vec![Probe {
                key: crate::facts::ProbeKey::named("pending"),
                script: "echo simulating-the-upgrade".into(),
            }]
        }

        fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
            facts.raw("pending").ok_or_else(|| FactError::Missing {
                key: "pending".into(),
            })?;
            Ok(Plan::change(
                "upgrade 1 package(s)",
                vec![Action::UpgradePackages { install: vec![] }],
            ))
        }

        fn verified_by_apply(&self) -> bool {
            self.proven
        }
    }

    /// Issue 14: the verify step reads nothing again of a resource its apply proved (the
    /// system upgrade: no second simulation of it), and still re-reads and re-plans the
    /// others, failing the host when one is still pending.
    #[tokio::test]
    async fn the_verify_step_skips_what_the_apply_proved_and_still_checks_the_rest() {
        use crate::testing::{ok, simulated_host};
        let state = |curl: bool| {
            let dpkg = if curl { "curl\tii \t8.5.0\n" } else { "" };
            std::collections::BTreeMap::from([
                ("dpkg".to_string(), ok(dpkg)),
                ("pending".to_string(), ok("inst=libc6\n")),
            ])
        };
        let job = |proven: bool| -> Vec<Box<dyn Resource>> {
            vec![
                Box::new(AlwaysUpgrade { proven }),
                Box::new(crate::resources::Packages::new("base", ["curl"])),
            ]
        };
        let host = simulated_host("web-1", state(false), state(true));
        let report = converge(&host, &job(true), &Options::default()).await;
        assert_eq!(report.outcome, HostOutcome::Changed, "{report:?}");
        let calls = host.calls();
        let simulations = calls
            .iter()
            .filter(|c| c.script.contains("simulating-the-upgrade"))
            .count();
        assert_eq!(simulations, 1, "only the first gather simulates");
        let verify = &calls.last().unwrap().script;
        assert!(verify.contains("dpkg-query"), "the rest is read again");
        assert_eq!(report.round_trips, 3, "gather, apply, verify");

        // Not proven by its apply: read again, still pending, the host fails.
        let host = simulated_host("web-1", state(false), state(true));
        let report = converge(&host, &job(false), &Options::default()).await;
        assert_eq!(report.outcome, HostOutcome::Failed);
        assert!(
            report
                .error
                .unwrap_or_default()
                .contains("still pending after apply: apt:upgrade"),
        );
        // Nor is a resource the apply did not prove skipped: curl missing after apply.
        let host = simulated_host("web-1", state(false), state(false));
        let report = converge(&host, &job(true), &Options::default()).await;
        assert_eq!(report.outcome, HostOutcome::Failed, "{report:?}");
    }

    /// Across a run's resources the first apt action carries all of the apt work.
    #[test]
    fn the_runs_apt_work_moves_into_its_first_apt_action() {
        let planned = |actions: Vec<Action>| Planned {
            plan: Plan::change("x", actions),
            triggered: Vec::new(),
        };
        let mut run = vec![
            planned(vec![Action::run("a", "true")]),
            planned(vec![Action::InstallPackages {
                names: vec!["htop".into()],
            }]),
            planned(vec![Action::UpgradePackages { install: vec![] }]),
            planned(vec![
                Action::run("b", "true"),
                Action::InstallPackages {
                    names: vec!["curl".into()],
                },
            ]),
        ];
        merge_package_installs(&mut run);
        let described: Vec<Vec<String>> = run
            .iter()
            .map(|p| p.actions().map(Action::describe).collect())
            .collect();
        assert_eq!(
            described,
            [
                vec!["a".to_string()],
                vec!["apt upgrade + install htop curl".to_string()],
                vec![],
                vec!["b".to_string()],
            ]
        );
    }

    /// Issue 11, path 2: the validator gets the file's path as one more argument; nothing
    /// is substituted into its text, so `%s` and `$(…)` in the path stay data.
    #[test]
    fn the_validator_gets_the_path_as_an_argument_not_as_text() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("marker");
        let target_dir = dir.path().join(format!(
            "a b%s'$(touch {m})';touch {m}",
            m = marker.display()
        ));
        std::fs::create_dir_all(&target_dir).unwrap();
        let path = target_dir.join("sudoers").display().to_string();
        let owner = std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap();
        let owner = String::from_utf8_lossy(&owner.stdout).trim().to_string();
        let write = Action::WriteFile(FileWrite {
            path: path.clone(),
            content: b"x\n".to_vec(),
            mode: 0o440,
            owner: owner.clone(),
            group: owner,
            previous: None,
            sensitive: false,
            validate: Some(Command::new("visudo").args(["-c", "-f"])),
        });
        let apply = build_apply_script(&[&write], &Options::default());
        let (out, record) = run_locally(&apply, dir.path());
        assert!(out.status.success(), "{out:?}\n{}", apply.script);
        let visudo: Vec<&str> = record
            .split("\n\n")
            .find(|c| c.starts_with("visudo"))
            .unwrap_or_else(|| panic!("{record}"))
            .lines()
            .collect();
        assert_eq!(visudo, ["visudo", "-c", "-f", path.as_str()]);
        assert!(!marker.exists());
        assert_eq!(std::fs::read(&path).unwrap(), b"x\n");
    }

    /// A host where `curl` is missing until the install step runs, and the first apply
    /// finds the locks held by `holders` (the output of the holders probe).
    fn locked_host(
        holders: &'static str,
        take_over: &'static str,
    ) -> crate::transport::fake::FakeTransport {
        locked_host_applying_for(holders, take_over, Duration::ZERO)
    }

    /// [`locked_host`] whose apt work, once the locks are free, takes `apply_takes`.
    fn locked_host_applying_for(
        holders: &'static str,
        take_over: &'static str,
        apply_takes: Duration,
    ) -> crate::transport::fake::FakeTransport {
        use crate::transport::fake::{FakeTransport, output};
        let install = Action::InstallPackages {
            names: vec!["curl".into()],
        };
        let marker = build_apply_script(&[&install], &Options::default()).marker;
        let probes = vec![crate::facts::Fact::probe(
            &crate::facts::builtin::InstalledPackages,
        )];
        let applied = std::sync::atomic::AtomicBool::new(false);
        let locked_once = std::sync::atomic::AtomicBool::new(false);
        FakeTransport::responding("web-1", move |call| {
            let s = &call.script;
            if s.contains("dpkg-query -W") {
                let installed = applied.load(Ordering::SeqCst);
                let dpkg = if installed { "curl\tii \t8.5.0\n" } else { "" };
                let outputs = [(
                    "dpkg".to_string(),
                    crate::facts::ProbeOutput {
                        status: 0,
                        stdout: dpkg.into(),
                        stderr: String::new(),
                    },
                )]
                .into();
                output(0, crate::facts::render_batch_output(&probes, &outputs))
            } else if s.contains(apt_lock::LOCKED_MARKER) && s.contains("__provision_apt install") {
                if !locked_once.swap(true, Ordering::SeqCst) {
                    output(0, format!("{}\n{holders}", apt_lock::LOCKED_MARKER))
                } else {
                    std::thread::sleep(apply_takes);
                    applied.store(true, Ordering::SeqCst);
                    output(0, format!("{marker} OK 0\n"))
                }
            } else if s.contains("systemctl stop apt-daily.service") {
                output(0, take_over)
            } else if s.contains("while __holders=")
                || s.contains("systemctl start apt-daily.timer")
            {
                output(0, "") // the wait (free now), the restore
            } else {
                output(1, format!("unexpected script:\n{s}"))
            }
        })
    }

    /// Converges `curl` on a [`locked_host`]: the report, which must say changed, and the
    /// scripts the host got.
    async fn converge_locked(
        holders: &'static str,
        take_over: &'static str,
        options: &Options,
    ) -> (HostReport, Vec<String>) {
        let host = locked_host(holders, take_over);
        let report = converge(&host, &curl(), options).await;
        assert_eq!(
            report.outcome,
            crate::report::HostOutcome::Changed,
            "{report:?}"
        );
        (report, host.calls().into_iter().map(|c| c.script).collect())
    }

    fn curl() -> Vec<Box<dyn Resource>> {
        vec![Box::new(crate::resources::Packages::new("base", ["curl"]))]
    }

    /// Issue 14: a background apt-daily job that only refreshes the package lists is
    /// stopped, the apt timers are held for the run and started again after it.
    #[tokio::test]
    async fn issue_14_a_lists_only_apt_daily_job_is_taken_over_and_the_timers_restored() {
        let (report, scripts) = converge_locked(
            "holder pid=812 age=65 lock=/var/lib/apt/lists/lock unit_cgroup=/system.slice/apt-daily.service comm=apt-get cmd=apt-get -qq update\n",
            "held apt-daily.timer apt-daily-upgrade.timer\n",
            &Options::default(),
        )
        .await;
        let at = |needle: &str| scripts.iter().position(|s| s.contains(needle));
        let take_over = at("systemctl stop apt-daily.service").expect("taken over");
        let restore =
            at("systemctl start apt-daily.timer apt-daily-upgrade.timer").expect("restored");
        assert_eq!(restore, scripts.len() - 1, "restored last");
        let applies: Vec<usize> = (0..scripts.len())
            .filter(|&i| scripts[i].contains("__provision_apt install curl"))
            .collect();
        assert_eq!(applies.len(), 2, "refused while locked, then run");
        assert!(applies[0] < take_over && take_over < applies[1]);
        assert!(
            !scripts.iter().any(|s| s.contains("while __holders=")),
            "no wait"
        );
        assert_eq!(report.notes.len(), 2, "{:?}", report.notes);
        assert!(
            report.notes[0]
                .starts_with("stopped apt-daily.service (apt-get (PID 812, apt-daily.service"),
            "{}",
            report.notes[0]
        );
        assert!(
            report.notes[0]
                .ends_with("apt timers held for the run: apt-daily.timer apt-daily-upgrade.timer")
        );
        assert_eq!(
            report.notes[1],
            "apt timers restored: apt-daily.timer apt-daily-upgrade.timer"
        );
    }

    /// Issue 14: a job inside dpkg (unattended-upgrades) is waited for, never stopped.
    #[tokio::test]
    async fn issue_14_a_job_inside_dpkg_is_waited_for_never_stopped() {
        let (report, scripts) = converge_locked(
            "holder pid=700 age=130 lock=/var/lib/dpkg/lock-frontend unit_cgroup=/system.slice/apt-daily-upgrade.service comm=unattended-upgr cmd=/usr/bin/python3 /usr/bin/unattended-upgrade\ndpkg pid=731\n",
            "unexpected",
            &Options::default(),
        )
        .await;
        assert!(
            !scripts.iter().any(|s| s.contains("systemctl stop")),
            "never stopped"
        );
        assert_eq!(
            scripts
                .iter()
                .filter(|s| s.contains("while __holders="))
                .count(),
            1
        );
        assert_eq!(report.notes.len(), 1, "{:?}", report.notes);
        assert!(
            report.notes[0].contains("unattended-upgr (PID 700, apt-daily-upgrade.service: unattended-upgrades) holds the dpkg frontend lock, running 2 min 10 s; dpkg is running (PID 731)"),
            "{}",
            report.notes[0]
        );
    }

    /// Issue 14: the wait a note reports ends when the locks were found free, not when
    /// the apt work after it ended (a first boot's note said "waited 51 s" for a wait of
    /// two seconds before a 49-second transaction).
    #[tokio::test]
    async fn issue_14_the_reported_wait_excludes_the_apt_work_after_it() {
        let host = locked_host_applying_for(
            "holder pid=700 age=5 lock=/var/lib/dpkg/lock unit_cgroup=/system.slice/cloud-final.service comm=apt-get cmd=apt-get install -y x\n",
            "unexpected",
            Duration::from_millis(1100),
        );
        let report = converge(&host, &curl(), &Options::default()).await;
        assert_eq!(
            report.outcome,
            crate::report::HostOutcome::Changed,
            "{report:?}"
        );
        assert_eq!(report.notes.len(), 1, "{:?}", report.notes);
        assert!(
            report.notes[0].starts_with("waited 0 s for the apt/dpkg locks: apt-get (PID 700"),
            "{}",
            report.notes[0]
        );
    }

    /// Issue 14: the wait is bounded; past it the host fails naming the holder, and the
    /// step never ran.
    #[tokio::test]
    async fn issue_14_the_wait_is_bounded_and_names_the_holder() {
        let host = locked_host(
            "holder pid=700 age=5 lock=/var/lib/dpkg/lock unit_cgroup=/system.slice/cloud-final.service comm=apt-get cmd=apt-get install -y x\n",
            "unexpected",
        );
        let options = Options {
            apt_lock_timeout: Duration::ZERO,
            ..Options::default()
        };
        let report = converge(&host, &curl(), &options).await;
        assert_eq!(report.outcome, crate::report::HostOutcome::Failed);
        let error = report.error.unwrap_or_default();
        assert!(
            error.contains("still held after 0 s: apt-get (PID 700, cloud-final.service: cloud-init) holds the dpkg lock"),
            "{error}"
        );
        assert_eq!(
            host.calls()
                .iter()
                .filter(|c| c.script.contains("__provision_apt install"))
                .count(),
            1
        );
    }
}
