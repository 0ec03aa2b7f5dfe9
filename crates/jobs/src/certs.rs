//! `provision certs …`: the `certs` crate's operations over the selected hosts.
//!
//! `issue`/`renew` run from this machine against each declaring host through the one
//! runner, or with `renew --local` on the host itself, which is what the timer installed by
//! `schedule` runs. `status` and `revoke` read this machine's state directory (no SSH).
//! `schedule` also converges the provision binary on the host and the host's own copy of
//! the certificate state ([`certs::host_copy`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use certs::LocalConfigError;
use certs::time::OffsetDateTime;
use certs::{
    CertStatus, CertificateDeclaration, CertsError, Outcome, RevocationReason, Settings, StateDir,
    StateError,
};
use certs::{HostStateCopy, InstalledBinary};
use common::Transport;
use common::engine::Mode;
use common::error::error_chain;
use common::inventory::HostSpec;
use common::report::{HostOutcome, HostReport, exit_code, mode_name, render_host};
use common::resource::Resource;
use common::run::{self, HostWork, Progress};
use common::transport::local::LocalTransport;
use serde::Serialize;

use crate::{ComposeError, JobError, Session};

/// Why a `certs` command could not start.
#[derive(Debug, thiserror::Error)]
pub enum CertsJobError {
    #[error("invalid certificate declaration(s) in {inventory}:\n  {}", problems.join("\n  "))]
    Declarations {
        inventory: String,
        problems: Vec<String>,
    },
    #[error(
        "none of the selected hosts declares a certificate in {0}; add a [vars.certs] section (domains, ca, email)"
    )]
    NoDeclarations(String),
    #[error(transparent)]
    LocalConfig(#[from] LocalConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Binary(#[from] certs::BinaryError),
}

// ---------------------------------------------------------------------------------------
// Declarations and settings
// ---------------------------------------------------------------------------------------

/// The selected hosts whose vars declare a certificate, with it. A relative `ca_root`
/// resolves against the inventory's directory, like the app's template directory.
pub fn declarations(
    session: &Session,
) -> Result<Vec<(HostSpec, CertificateDeclaration)>, JobError> {
    let hosts = session.hosts()?;
    let base = session.base_dir();
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for spec in hosts {
        match declaration_of(&spec, base.as_deref()) {
            Ok(Some(d)) => out.push((spec, d)),
            Ok(None) => {}
            Err(e) => problems.push(e.to_string()),
        }
    }
    if !problems.is_empty() {
        let inventory = session.inventory.display().to_string();
        return Err(CertsJobError::Declarations {
            inventory,
            problems,
        }
        .into());
    }
    Ok(out)
}

/// The certificate `spec`'s vars declare, if any; a relative `ca_root` resolved against
/// `base` (the inventory's directory).
pub(crate) fn declaration_of(
    spec: &HostSpec,
    base: Option<&Path>,
) -> Result<Option<CertificateDeclaration>, certs::DeclarationError> {
    let mut declared = certs::declaration_from_vars(&spec.name, &spec.vars)?;
    if let Some(d) = &mut declared
        && let (Some(root), Some(base)) = (&d.ca.root_pem, base)
        && root.is_relative()
    {
        d.ca.root_pem = Some(base.join(root));
    }
    Ok(declared)
}

/// Like [`declarations`], but having none is an error (there is nothing to do).
fn required_declarations(
    session: &Session,
) -> Result<Vec<(HostSpec, CertificateDeclaration)>, JobError> {
    let declared = declarations(session)?;
    if declared.is_empty() {
        let inventory = session.inventory.display().to_string();
        return Err(CertsJobError::NoDeclarations(inventory).into());
    }
    Ok(declared)
}

pub(crate) fn settings(session: &Session, mode: Mode) -> Settings {
    let mut settings = Settings::new(StateDir::from_env_or_default());
    settings.engine = session.options(mode).engine;
    settings
}

// ---------------------------------------------------------------------------------------
// issue / renew
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    Issue,
    Renew { force: bool },
}

/// What happened to one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertificateStatus {
    /// A new certificate was obtained and installed.
    Obtained,
    /// The certificate stayed; installing it changed the host.
    Installed,
    /// Nothing to do.
    Unchanged,
    /// Check mode: something would change.
    Pending,
    Failed,
}

/// The result of `issue`/`renew` for one certificate (also the JSON output).
#[derive(Debug, Clone, Serialize)]
pub struct CertificateRun {
    pub host: String,
    pub name: String,
    pub status: CertificateStatus,
    /// Why it was (or would be, or was not) renewed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub names: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_renewal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub elapsed_ms: u64,
    /// The engine's report of installing the certificate on the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install: Option<HostReport>,
}

impl CertificateRun {
    pub(crate) fn new(declaration: &CertificateDeclaration, status: CertificateStatus) -> Self {
        Self {
            host: declaration.host.clone(),
            name: declaration.name.clone(),
            names: declaration.domains.iter().map(|d| d.to_string()).collect(),
            ..Self::empty(status)
        }
    }

    fn empty(status: CertificateStatus) -> Self {
        Self {
            host: String::new(),
            name: String::new(),
            status,
            reason: None,
            names: Vec::new(),
            not_after: None,
            days_left: None,
            next_renewal: None,
            error: None,
            elapsed_ms: 0,
            install: None,
        }
    }

    fn failed(declaration: &CertificateDeclaration, error: String) -> Self {
        Self {
            error: Some(error),
            ..Self::new(declaration, CertificateStatus::Failed)
        }
    }

    pub(crate) fn from_result(
        declaration: &CertificateDeclaration,
        result: Result<Outcome, CertsError>,
        now: OffsetDateTime,
    ) -> Self {
        match result {
            Ok(o) => {
                let status = if o.renewed {
                    CertificateStatus::Obtained
                } else if o.pending.is_some() || o.install.outcome == HostOutcome::Pending {
                    CertificateStatus::Pending
                } else if o.installed_changes() {
                    CertificateStatus::Installed
                } else {
                    CertificateStatus::Unchanged
                };
                Self {
                    reason: Some(o.reason.clone()),
                    names: o.info.names.clone(),
                    not_after: Some(certs::info::rfc3339(o.info.not_after)),
                    days_left: Some(o.info.days_left(now)),
                    next_renewal: o.next_renewal.map(certs::info::rfc3339),
                    install: Some(o.install),
                    ..Self::new(declaration, status)
                }
            }
            // Check mode with no certificate yet: pending, not a failure.
            Err(CertsError::WouldObtain { reason, .. }) => Self {
                reason: Some(format!("would obtain a certificate: {reason}")),
                ..Self::new(declaration, CertificateStatus::Pending)
            },
            Err(e) => Self::failed(declaration, error_chain(&e)),
        }
    }

    /// A host report for the progress display.
    fn progress_report(&self) -> HostReport {
        let mut report = match (&self.install, self.status) {
            (_, CertificateStatus::Failed) => {
                HostReport::failed(&self.host, self.error.clone().unwrap_or_default())
            }
            (_, CertificateStatus::Pending) => HostReport {
                outcome: HostOutcome::Pending,
                ..HostReport::new(&self.host)
            },
            (Some(install), _) => install.clone(),
            (None, _) => HostReport::new(&self.host),
        };
        report.elapsed_ms = self.elapsed_ms;
        report
    }

    /// One line of text: what happened, why, the expiry and the next renewal.
    pub fn line(&self) -> String {
        let what = match self.status {
            CertificateStatus::Obtained => "new certificate",
            CertificateStatus::Installed => "installed the current certificate",
            CertificateStatus::Unchanged => "up to date",
            CertificateStatus::Pending => "changes pending",
            CertificateStatus::Failed => "FAILED",
        };
        let mut line = format!("{}/{}: {what}", self.host, self.name);
        if let Some(reason) = &self.reason {
            line.push_str(&format!(" ({reason})"));
        }
        if let (Some(not_after), Some(days)) = (&self.not_after, self.days_left) {
            line.push_str(&format!("; expires {not_after} ({days} days left)"));
        }
        if let Some(next) = &self.next_renewal {
            line.push_str(&format!("; next renewal {next}"));
        }
        if let Some(e) = &self.error {
            line.push_str(&format!(": {e}"));
        }
        line
    }
}

/// The process exit code of a set of certificate runs.
pub fn runs_exit_code(runs: &[CertificateRun]) -> i32 {
    if runs.iter().any(|r| r.status == CertificateStatus::Failed) {
        exit_code::FAILED
    } else if runs.iter().any(|r| r.status == CertificateStatus::Pending) {
        exit_code::PENDING
    } else {
        exit_code::CONVERGED
    }
}

/// The closing line of `issue`/`renew`: how many certificates ended how.
pub(crate) fn runs_summary(runs: &[CertificateRun]) -> String {
    let count = |s: CertificateStatus| runs.iter().filter(|r| r.status == s).count();
    format!(
        "{} certificate(s): {} new, {} installed, {} up to date, {} pending, {} failed",
        runs.len(),
        count(CertificateStatus::Obtained),
        count(CertificateStatus::Installed),
        count(CertificateStatus::Unchanged),
        count(CertificateStatus::Pending),
        count(CertificateStatus::Failed),
    )
}

/// `issue`/`renew` as text: a line per certificate, the changes of its install, a summary.
pub fn runs_text(runs: &[CertificateRun], mode: Mode) -> String {
    let mut out = String::new();
    for r in runs {
        out.push_str(&r.line());
        out.push('\n');
        if let Some(install) = &r.install {
            out.push_str(&render_host(install, mode));
        }
    }
    out.push_str(&runs_summary(runs));
    out.push('\n');
    out
}

/// `issue`/`renew` as JSON.
pub fn runs_json(runs: &[CertificateRun], mode: Mode) -> serde_json::Value {
    serde_json::json!({
        "mode": mode_name(mode),
        "exit_code": runs_exit_code(runs),
        "certificates": runs,
    })
}

/// `issue` or `renew` of one host's certificate, for the runner.
struct Obtain {
    trigger: Trigger,
    settings: Settings,
    by_host: BTreeMap<String, CertificateDeclaration>,
}

#[async_trait]
impl HostWork for Obtain {
    type Ready = CertificateDeclaration;
    type Output = CertificateRun;

    fn phase(&self) -> &'static str {
        match self.trigger {
            Trigger::Issue => "issuing",
            Trigger::Renew { .. } => "renewing",
        }
    }

    fn prepare(&self, spec: &HostSpec) -> Result<CertificateDeclaration, String> {
        self.by_host.get(&spec.name).cloned().ok_or_else(|| {
            ComposeError::NoDeclaration {
                host: spec.name.clone(),
            }
            .message()
        })
    }

    async fn run(
        &self,
        _: &HostSpec,
        d: CertificateDeclaration,
        transport: &dyn Transport,
    ) -> Self::Output {
        let settings = &self.settings;
        let result = match self.trigger {
            Trigger::Issue => certs::issue(&d, transport, settings).await,
            Trigger::Renew { force } => certs::renew(&d, transport, settings, force).await,
        };
        CertificateRun::from_result(&d, result, settings.now())
    }

    fn failed(&self, spec: &HostSpec, error: String) -> CertificateRun {
        match self.by_host.get(&spec.name) {
            Some(d) => CertificateRun::failed(d, error),
            // Only declaring hosts are run, so this is a host the runner never had.
            None => CertificateRun {
                host: spec.name.clone(),
                error: Some(error),
                ..CertificateRun::empty(CertificateStatus::Failed)
            },
        }
    }

    fn finish(&self, run: &mut CertificateRun, elapsed: Duration) -> HostReport {
        run.elapsed_ms = elapsed.as_millis() as u64;
        run.progress_report()
    }
}

/// `issue` and `renew` from this machine: every declaring host, `--forks` at once.
pub async fn obtain(
    session: &Session,
    trigger: Trigger,
    mode: Mode,
    progress: Arc<dyn Progress>,
) -> Result<Vec<CertificateRun>, JobError> {
    let declared = required_declarations(session)?;
    let hosts: Vec<HostSpec> = declared.iter().map(|(spec, _)| spec.clone()).collect();
    let work = Obtain {
        trigger,
        settings: settings(session, mode),
        by_host: declared
            .into_iter()
            .map(|(spec, d)| (spec.name, d))
            .collect(),
    };
    let forks = session.run.forks;
    let connector = session.connector.clone();
    Ok(run::for_each_host(hosts, forks, connector, progress, Arc::new(work)).await)
}

/// `renew --local`: on the host itself, from the declarations `schedule` installed in `dir`.
pub async fn renew_local(
    session: &Session,
    dir: &Path,
    force: bool,
    mode: Mode,
) -> Result<Vec<CertificateRun>, JobError> {
    let declarations = certs::load_local_declarations(dir).map_err(CertsJobError::from)?;
    let settings = settings(session, mode);
    let mut runs = Vec::new();
    for declaration in &declarations {
        let started = Instant::now();
        let transport = LocalTransport::new(declaration.host.clone());
        let result = certs::renew(declaration, &transport, &settings, force).await;
        let mut run = CertificateRun::from_result(declaration, result, settings.now());
        run.elapsed_ms = started.elapsed().as_millis() as u64;
        runs.push(run);
    }
    Ok(runs)
}

// ---------------------------------------------------------------------------------------
// status / revoke
// ---------------------------------------------------------------------------------------

/// `status`: this machine's state directory only. With `use_inventory`, the selected
/// hosts' declarations (declared but not yet issued ones too); without, everything stored
/// (of the `--limit` hosts).
pub fn status(
    session: &Session,
    use_inventory: bool,
) -> Result<(StateDir, Vec<CertStatus>), JobError> {
    let state = StateDir::from_env_or_default();
    let now = OffsetDateTime::now_utc();
    let rows = if use_inventory {
        let declared: Vec<CertificateDeclaration> =
            declarations(session)?.into_iter().map(|(_, d)| d).collect();
        if declared.is_empty() {
            Vec::new()
        } else {
            certs::status(&state, &declared, now).map_err(CertsJobError::from)?
        }
    } else {
        let wanted: Option<Vec<&str>> = session.limit.as_deref().map(|l| l.split(',').collect());
        certs::status(&state, &[], now)
            .map_err(CertsJobError::from)?
            .into_iter()
            .filter(|r| wanted.as_ref().is_none_or(|w| w.contains(&r.host.as_str())))
            .collect()
    };
    Ok((state, rows))
}

/// Revocation reasons a subscriber may give (RFC 5280 codes 0, 1, 3, 4, 5), by name.
pub const REVOCATION_REASONS: [&str; 5] = [
    "unspecified",
    "key-compromise",
    "affiliation-changed",
    "superseded",
    "cessation-of-operation",
];

/// The reason named `name` (one of [`REVOCATION_REASONS`]).
pub fn revocation_reason(name: &str) -> Option<RevocationReason> {
    Some(match name {
        "unspecified" => RevocationReason::Unspecified,
        "key-compromise" => RevocationReason::KeyCompromise,
        "affiliation-changed" => RevocationReason::AffiliationChanged,
        "superseded" => RevocationReason::Superseded,
        "cessation-of-operation" => RevocationReason::CessationOfOperation,
        _ => return None,
    })
}

/// What `revoke` did for one certificate.
#[derive(Debug, Serialize)]
pub struct Revocation {
    pub host: String,
    pub name: String,
    pub revoked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Revocation {
    /// One line of text: revoked, or why not.
    pub fn line(&self) -> String {
        match &self.error {
            None => format!(
                "{}/{}: revoked; the next `provision certs renew` obtains a new certificate",
                self.host, self.name
            ),
            Some(e) => format!("{}/{}: FAILED: {e}", self.host, self.name),
        }
    }
}

/// `revoke` as text: a line per certificate.
pub fn revocations_text(results: &[Revocation]) -> String {
    results.iter().map(|r| r.line() + "\n").collect()
}

/// Converged when every certificate was revoked, else failed.
pub fn revocations_exit_code(results: &[Revocation]) -> i32 {
    if results.iter().all(|r| r.revoked) {
        exit_code::CONVERGED
    } else {
        exit_code::FAILED
    }
}

/// `revoke`: at the CA, from this machine's state (no SSH).
pub async fn revoke(
    session: &Session,
    reason: Option<RevocationReason>,
) -> Result<Vec<Revocation>, JobError> {
    let declared = required_declarations(session)?;
    let settings = settings(session, Mode::Apply);
    let mut results = Vec::new();
    for (_, d) in &declared {
        let result = certs::revoke(d, &settings, reason.clone()).await;
        results.push(Revocation {
            host: d.host.clone(),
            name: d.name.clone(),
            revoked: result.is_ok(),
            error: result.err().map(|e| error_chain(&e)),
        });
    }
    Ok(results)
}

// ---------------------------------------------------------------------------------------
// schedule
// ---------------------------------------------------------------------------------------

/// `status` as text: the table, or where no certificate was found.
pub fn status_text(state: &StateDir, rows: &[CertStatus]) -> String {
    if rows.is_empty() {
        format!(
            "no certificates (state directory {})\n",
            state.root().display()
        )
    } else {
        certs::render_table(rows)
    }
}

/// What `schedule` did.
#[derive(Debug)]
pub struct Scheduled {
    /// Problems worth saying that do not stop the run (a DNS token not set here).
    pub warnings: Vec<String>,
    pub reports: Vec<HostReport>,
    /// The same renewal as a cron entry, for hosts without systemd.
    pub cron_line: String,
}

impl Scheduled {
    /// The closing note of the text output: the same renewal for hosts without systemd.
    pub fn cron_note(&self) -> String {
        format!(
            "# Without systemd, the same renewal as a cron entry (e.g. /etc/cron.d/provision-certs):\n# {}\n",
            self.cron_line
        )
    }
}

/// `schedule`: the renewal timer, what it reads, the host's copy of the certificate state
/// and (with `install_binary`) this binary, converged on every declaring host.
pub async fn schedule(
    session: &Session,
    install_binary: bool,
    mode: Mode,
    progress: Arc<dyn Progress>,
) -> Result<Scheduled, JobError> {
    let declared = required_declarations(session)?;
    let options = certs::ScheduleOptions::default();
    let binary = if install_binary {
        let b =
            InstalledBinary::current_executable(&options.binary).map_err(CertsJobError::Binary)?;
        Some(b)
    } else {
        None
    };
    let mut warnings = Vec::new();
    for (_, d) in &declared {
        if let certs::ChallengeConfig::Dns01(dns) = &d.challenge
            && let Some(var) = &dns.token_env
            && std::env::var_os(var).is_none()
        {
            warnings.push(format!(
                "{}: ${var} is not set here, so the host's renewal timer gets no DNS API token",
                d.host
            ));
        }
    }
    let state = StateDir::from_env_or_default();
    let by_host: BTreeMap<String, CertificateDeclaration> = declared
        .iter()
        .map(|(spec, d)| (spec.name.clone(), d.clone()))
        .collect();
    let hosts: Vec<HostSpec> = declared.into_iter().map(|(spec, _)| spec).collect();
    let job_options = options.clone();
    let job = move |spec: &HostSpec| -> Result<Vec<Box<dyn Resource>>, String> {
        let Some(d) = by_host.get(&spec.name) else {
            let host = spec.name.clone();
            return Err(ComposeError::NoDeclaration { host }.message());
        };
        schedule_job(d, &state, binary.as_ref(), &job_options).map_err(|e| e.message())
    };
    let options_run = session.options(mode);
    let connector = session.connector.clone();
    let reports = run::converge_all(hosts, job, &options_run, connector, progress).await;
    Ok(Scheduled {
        warnings,
        reports,
        cron_line: certs::cron_line(&options),
    })
}

/// Everything `schedule` converges on one host, in order: the binary the timer runs, the
/// host's copy of the certificate state, then the certs crate's timer resources.
pub(crate) fn schedule_job(
    declaration: &CertificateDeclaration,
    state: &StateDir,
    binary: Option<&InstalledBinary>,
    options: &certs::ScheduleOptions,
) -> Result<Vec<Box<dyn Resource>>, ComposeError> {
    let mut resources: Vec<Box<dyn Resource>> = Vec::new();
    if let Some(b) = binary {
        resources.push(Box::new(b.clone()));
    }
    if let Some(copy) = HostStateCopy::from_state(declaration, state)? {
        resources.push(Box::new(copy));
    }
    let options = certs::ScheduleOptions {
        environment: certs::secret_environment(std::slice::from_ref(declaration)),
        ..options.clone()
    };
    resources.extend(certs::schedule_resources(
        std::slice::from_ref(declaration),
        &options,
    )?);
    Ok(resources)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_declaration() -> CertificateDeclaration {
        certs::testing::declaration(
            "web-1",
            &["example.com"],
            certs::CaConfig::url("https://ca.example/dir"),
            certs::ChallengeConfig::SelfSigned,
            "/opt/app/ssl",
            "true",
        )
    }

    #[test]
    fn every_revocation_reason_name_maps_to_a_reason() {
        for name in REVOCATION_REASONS {
            assert!(revocation_reason(name).is_some(), "{name}");
        }
        assert!(revocation_reason("privilege-withdrawn").is_none());
    }

    #[test]
    fn would_obtain_in_check_mode_is_pending() {
        let d = test_declaration();
        let run = CertificateRun::from_result(
            &d,
            Err(CertsError::WouldObtain {
                host: "web-1".into(),
                name: "example.com".into(),
                reason: "there is no certificate yet".into(),
            }),
            OffsetDateTime::now_utc(),
        );
        assert_eq!(run.status, CertificateStatus::Pending);
        assert_eq!(
            runs_exit_code(std::slice::from_ref(&run)),
            exit_code::PENDING
        );
        let failed = CertificateRun::failed(&d, "boom".into());
        assert_eq!(runs_exit_code(&[run, failed]), exit_code::FAILED);
    }
}
