//! `provision certs ...`: wiring of the `certs` crate into the CLI.
//!
//! `issue`/`renew` run from this machine against each selected host over SSH (hosts in
//! parallel, at most `--forks`), or with `renew --local` on the host itself, which is what
//! the timer installed by `schedule` runs. `status` reads this machine's state directory.
//!
//! `schedule` also converges the provision binary on the host and the host's own copy of
//! the certificate state ([`certs::host_copy`]).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use certs::host_copy::{HostStateCopy, InstalledBinary};
use certs::time::OffsetDateTime;
use certs::{CertificateDeclaration, CertsError, Outcome, Settings, StateDir};
use common::Transport;
use common::engine::Mode;
use common::inventory::HostSpec;
use common::report::{HostOutcome, HostReport, exit_code, exit_code_for};
use common::resource::Resource;
use common::transport::local::LocalTransport;
use common::transport::ssh::SshTransport;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::cli::{CertsCommand, Format, Global, RevokeReason};
use crate::output;

pub async fn run(g: &Global, cmd: &CertsCommand) -> anyhow::Result<i32> {
    let mode = |check: bool| if check { Mode::Check } else { Mode::Apply };
    match cmd {
        CertsCommand::Issue { check } => over_ssh(g, Trigger::Issue, mode(*check)).await,
        CertsCommand::Renew {
            force,
            check,
            local: false,
            ..
        } => over_ssh(g, Trigger::Renew { force: *force }, mode(*check)).await,
        CertsCommand::Renew {
            force,
            check,
            local: true,
            config_dir,
        } => renew_local(g, config_dir.as_deref(), *force, mode(*check)).await,
        CertsCommand::Status => status(g),
        CertsCommand::Revoke { reason } => revoke(g, *reason).await,
        CertsCommand::Schedule {
            install_binary,
            check,
        } => schedule(g, *install_binary, mode(*check)).await,
    }
}

// ---------------------------------------------------------------------------------------
// Declarations and settings
// ---------------------------------------------------------------------------------------

/// The selected hosts whose vars declare a certificate, with it. A relative `ca_root`
/// resolves against the inventory's directory, like the app's template directory.
fn declarations(g: &Global) -> anyhow::Result<Vec<(HostSpec, CertificateDeclaration)>> {
    let hosts = crate::load_hosts(g)?;
    let base = g.inventory_path().parent().map(Path::to_path_buf);
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for spec in hosts {
        match certs::declaration_from_vars(&spec.name, &spec.vars) {
            Ok(Some(mut d)) => {
                if let (Some(root), Some(base)) = (&d.ca.root_pem, &base)
                    && root.is_relative()
                {
                    d.ca.root_pem = Some(base.join(root));
                }
                out.push((spec, d));
            }
            Ok(None) => {}
            Err(e) => problems.push(e.to_string()),
        }
    }
    if !problems.is_empty() {
        anyhow::bail!(
            "invalid certificate declaration(s) in {}:\n  {}",
            g.inventory_path().display(),
            problems.join("\n  ")
        );
    }
    Ok(out)
}

/// Like [`declarations`], but having none is an error (there is nothing to do).
fn required_declarations(g: &Global) -> anyhow::Result<Vec<(HostSpec, CertificateDeclaration)>> {
    let declared = declarations(g)?;
    if declared.is_empty() {
        anyhow::bail!(
            "none of the selected hosts declares a certificate in {}; add a [vars.certs] section (domains, ca, email)",
            g.inventory_path().display()
        );
    }
    Ok(declared)
}

fn settings(g: &Global, mode: Mode) -> Settings {
    let mut settings = Settings::new(StateDir::from_env_or_default());
    settings.engine = crate::run_options(g, mode).engine;
    settings
}

// ---------------------------------------------------------------------------------------
// issue / renew
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Trigger {
    Issue,
    Renew { force: bool },
}

impl Trigger {
    async fn run(
        self,
        declaration: &CertificateDeclaration,
        transport: &dyn Transport,
        settings: &Settings,
    ) -> Result<Outcome, CertsError> {
        match self {
            Trigger::Issue => certs::issue(declaration, transport, settings).await,
            Trigger::Renew { force } => certs::renew(declaration, transport, settings, force).await,
        }
    }

    fn phase(self) -> &'static str {
        match self {
            Trigger::Issue => "issuing",
            Trigger::Renew { .. } => "renewing",
        }
    }
}

/// What happened to one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum CertificateStatus {
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
struct CertificateRun {
    host: String,
    name: String,
    status: CertificateStatus,
    /// Why it was (or would be, or was not) renewed.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    names: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    days_left: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_renewal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    elapsed_ms: u64,
    /// The engine's report of installing the certificate on the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    install: Option<HostReport>,
}

impl CertificateRun {
    fn new(declaration: &CertificateDeclaration, status: CertificateStatus) -> Self {
        Self {
            host: declaration.host.clone(),
            name: declaration.name.clone(),
            status,
            reason: None,
            names: declaration.domains.iter().map(|d| d.to_string()).collect(),
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

    fn from_result(
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
                    not_after: Some(certs::state::rfc3339(o.info.not_after)),
                    days_left: Some(o.info.days_left(now)),
                    next_renewal: o.next_renewal.map(certs::state::rfc3339),
                    install: Some(o.install),
                    ..Self::new(declaration, status)
                }
            }
            // Check mode with no certificate yet: pending, not a failure.
            Err(CertsError::WouldObtain { reason, .. }) => Self {
                reason: Some(format!("would obtain a certificate: {reason}")),
                ..Self::new(declaration, CertificateStatus::Pending)
            },
            Err(e) => Self::failed(declaration, certs::error_chain(&e)),
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

    fn line(&self) -> String {
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

fn runs_exit_code(runs: &[CertificateRun]) -> i32 {
    if runs.iter().any(|r| r.status == CertificateStatus::Failed) {
        exit_code::FAILED
    } else if runs.iter().any(|r| r.status == CertificateStatus::Pending) {
        exit_code::PENDING
    } else {
        exit_code::CONVERGED
    }
}

fn print_runs(runs: &[CertificateRun], mode: Mode, format: Format) {
    if format == Format::Json {
        output::print_json(&serde_json::json!({
            "mode": match mode { Mode::Check => "check", Mode::Apply => "apply" },
            "exit_code": runs_exit_code(runs),
            "certificates": runs,
        }));
        return;
    }
    for r in runs {
        println!("{}", r.line());
        if let Some(install) = &r.install {
            output::print_host_changes(install, mode);
        }
    }
    let count = |s: CertificateStatus| runs.iter().filter(|r| r.status == s).count();
    println!(
        "{} certificate(s): {} new, {} installed, {} up to date, {} pending, {} failed",
        runs.len(),
        count(CertificateStatus::Obtained),
        count(CertificateStatus::Installed),
        count(CertificateStatus::Unchanged),
        count(CertificateStatus::Pending),
        count(CertificateStatus::Failed),
    );
}

/// `issue` and `renew` from this machine: every declaring host over SSH, `--forks` at once.
async fn over_ssh(g: &Global, trigger: Trigger, mode: Mode) -> anyhow::Result<i32> {
    let declared = required_declarations(g)?;
    let settings = settings(g, mode);
    let policy = crate::run_options(g, mode).host_key_policy;
    let progress = output::progress(g.format, declared.len());
    let limit = Arc::new(Semaphore::new(g.forks.max(1)));
    let mut tasks = Vec::new();
    for (spec, declaration) in declared {
        let (settings, progress, limit) = (settings.clone(), progress.clone(), limit.clone());
        let fallback = declaration.clone();
        let task = tokio::spawn(async move {
            let _permit = limit.acquire_owned().await.expect("semaphore never closed");
            let started = Instant::now();
            progress.started(&spec.name);
            progress.phase(&spec.name, "connecting");
            let mut run = match SshTransport::connect(common::run::ssh_target(&spec, policy)).await
            {
                Err(e) => CertificateRun::failed(&declaration, e.to_string()),
                Ok(transport) => {
                    progress.phase(&spec.name, trigger.phase());
                    let result = trigger.run(&declaration, &transport, &settings).await;
                    if let Err(e) = transport.close().await {
                        tracing::warn!(host = %spec.name, error = %e, "closing the connection");
                    }
                    CertificateRun::from_result(&declaration, result, settings.now())
                }
            };
            run.elapsed_ms = started.elapsed().as_millis() as u64;
            progress.finished(&run.progress_report());
            run
        });
        tasks.push((fallback, task));
    }
    let mut runs = Vec::new();
    for (declaration, task) in tasks {
        runs.push(task.await.unwrap_or_else(|e| {
            CertificateRun::failed(&declaration, format!("task panicked: {e}"))
        }));
    }
    print_runs(&runs, mode, g.format);
    Ok(runs_exit_code(&runs))
}

/// `renew --local`: on the host itself, from the declarations `schedule` installed.
async fn renew_local(
    g: &Global,
    config_dir: Option<&Path>,
    force: bool,
    mode: Mode,
) -> anyhow::Result<i32> {
    let dir = config_dir.unwrap_or(Path::new(certs::schedule::LOCAL_CONFIG_DIR));
    let declarations = certs::load_local_declarations(dir)?;
    if declarations.is_empty() && g.format == Format::Text {
        println!("no certificate declarations in {}", dir.display());
        return Ok(exit_code::CONVERGED);
    }
    let settings = settings(g, mode);
    let mut runs = Vec::new();
    for declaration in &declarations {
        let started = Instant::now();
        let transport = LocalTransport::new(declaration.host.clone());
        let result = certs::renew(declaration, &transport, &settings, force).await;
        let mut run = CertificateRun::from_result(declaration, result, settings.now());
        run.elapsed_ms = started.elapsed().as_millis() as u64;
        runs.push(run);
    }
    print_runs(&runs, mode, g.format);
    Ok(runs_exit_code(&runs))
}

// ---------------------------------------------------------------------------------------
// status / revoke
// ---------------------------------------------------------------------------------------

/// `status`: this machine's state directory only. With an inventory, its selected hosts'
/// declarations (declared but not yet issued ones too); without one, everything stored.
fn status(g: &Global) -> anyhow::Result<i32> {
    let state = StateDir::from_env_or_default();
    let now = OffsetDateTime::now_utc();
    let use_inventory = g.inventory.is_some() || g.inventory_path().exists();
    let rows = if use_inventory {
        let declared: Vec<CertificateDeclaration> =
            declarations(g)?.into_iter().map(|(_, d)| d).collect();
        if declared.is_empty() {
            Vec::new()
        } else {
            certs::status(&state, &declared, now)?
        }
    } else {
        let wanted: Option<Vec<&str>> = g.limit.as_deref().map(|l| l.split(',').collect());
        certs::status(&state, &[], now)?
            .into_iter()
            .filter(|r| wanted.as_ref().is_none_or(|w| w.contains(&r.host.as_str())))
            .collect()
    };
    if g.format == Format::Json {
        output::print_json(&serde_json::json!({
            "state_dir": state.root(),
            "certificates": rows,
        }));
    } else if rows.is_empty() {
        println!(
            "no certificates (state directory {})",
            state.root().display()
        );
    } else {
        print!("{}", certs::render_table(&rows));
    }
    Ok(exit_code::CONVERGED)
}

fn revocation_reason(r: RevokeReason) -> certs::RevocationReason {
    match r {
        RevokeReason::Unspecified => certs::RevocationReason::Unspecified,
        RevokeReason::KeyCompromise => certs::RevocationReason::KeyCompromise,
        RevokeReason::AffiliationChanged => certs::RevocationReason::AffiliationChanged,
        RevokeReason::Superseded => certs::RevocationReason::Superseded,
        RevokeReason::CessationOfOperation => certs::RevocationReason::CessationOfOperation,
    }
}

#[derive(Debug, Serialize)]
struct Revocation {
    host: String,
    name: String,
    revoked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `revoke`: at the CA, from this machine's state (no SSH).
async fn revoke(g: &Global, reason: Option<RevokeReason>) -> anyhow::Result<i32> {
    let declared = required_declarations(g)?;
    let settings = settings(g, Mode::Apply);
    let mut results = Vec::new();
    for (_, d) in &declared {
        let result = certs::revoke(d, &settings, reason.map(revocation_reason)).await;
        results.push(Revocation {
            host: d.host.clone(),
            name: d.name.clone(),
            revoked: result.is_ok(),
            error: result.err().map(|e| certs::error_chain(&e)),
        });
    }
    let code = if results.iter().all(|r| r.revoked) {
        exit_code::CONVERGED
    } else {
        exit_code::FAILED
    };
    if g.format == Format::Json {
        output::print_json(&serde_json::json!({ "exit_code": code, "certificates": results }));
    } else {
        for r in &results {
            match &r.error {
                None => println!(
                    "{}/{}: revoked; the next `provision certs renew` obtains a new certificate",
                    r.host, r.name
                ),
                Some(e) => println!("{}/{}: FAILED: {e}", r.host, r.name),
            }
        }
    }
    Ok(code)
}

// ---------------------------------------------------------------------------------------
// schedule
// ---------------------------------------------------------------------------------------

/// `schedule`: the renewal timer, what it reads, the host's copy of the certificate state
/// and (with --install-binary) this binary, converged on every declaring host.
async fn schedule(g: &Global, install_binary: bool, mode: Mode) -> anyhow::Result<i32> {
    let declared = required_declarations(g)?;
    let options = certs::ScheduleOptions::default();
    let binary = if install_binary {
        Some(InstalledBinary::current_executable(&options.binary).map_err(anyhow::Error::msg)?)
    } else {
        None
    };
    for (_, d) in &declared {
        if let certs::ChallengeConfig::Dns01(dns) = &d.challenge
            && let Some(var) = &dns.token_env
            && std::env::var_os(var).is_none()
        {
            eprintln!(
                "warning: {}: ${var} is not set here, so the host's renewal timer gets no DNS API token",
                d.host
            );
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
        let d = by_host
            .get(&spec.name)
            .ok_or_else(|| format!("{} declares no certificate", spec.name))?;
        schedule_job(d, &state, binary.as_ref(), &job_options)
    };
    let progress = output::progress(g.format, hosts.len());
    let reports =
        common::run::run_over_ssh(hosts, job, &crate::run_options(g, mode), progress).await;
    output::print_reports(&reports, mode, g.format);
    if g.format == Format::Text {
        println!(
            "# Without systemd, the same renewal as a cron entry (e.g. /etc/cron.d/provision-certs):\n# {}",
            certs::cron_line(&options)
        );
    }
    Ok(exit_code_for(&reports))
}

/// Everything `schedule` converges on one host, in order: the binary the timer runs, the
/// host's copy of the certificate state, then the certs crate's timer resources.
fn schedule_job(
    declaration: &CertificateDeclaration,
    state: &StateDir,
    binary: Option<&InstalledBinary>,
    options: &certs::ScheduleOptions,
) -> Result<Vec<Box<dyn Resource>>, String> {
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
    resources.extend(
        certs::schedule_resources(std::slice::from_ref(declaration), &options)
            .map_err(|e| certs::error_chain(&e))?,
    );
    Ok(resources)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn help(args: &[&str]) -> String {
        let e = crate::cli::Cli::try_parse_from(args).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
        e.render().to_string()
    }

    #[test]
    fn certs_help_lists_the_subcommands() {
        let text = help(&["provision", "certs", "--help"]);
        for sub in ["issue", "renew", "status", "revoke", "schedule"] {
            assert!(
                text.lines()
                    .any(|l| l.trim_start().starts_with(&format!("{sub} "))),
                "{sub} missing from:\n{text}"
            );
        }
        let renew = help(&["provision", "certs", "renew", "--help"]);
        for flag in ["--force", "--check", "--local", "--config-dir"] {
            assert!(renew.contains(flag), "{flag} missing from:\n{renew}");
        }
        assert!(help(&["provision", "certs", "schedule", "--help"]).contains("--install-binary"));
    }

    #[test]
    fn the_timer_command_line_parses() {
        // Exactly what the service unit runs (certs/src/templates/provision-certs-renew.service.j2).
        let unit = certs::schedule::service_unit(&certs::ScheduleOptions::default()).unwrap();
        let exec = unit
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .expect("ExecStart");
        let args: Vec<&str> = exec.split_whitespace().collect();
        assert_eq!(args[0], "/usr/local/bin/provision");
        let cli = crate::cli::Cli::try_parse_from(args).unwrap();
        match cli.command {
            crate::cli::Command::Certs(CertsCommand::Renew {
                local: true,
                force: false,
                check: false,
                config_dir: Some(dir),
            }) => assert_eq!(dir, Path::new(certs::schedule::LOCAL_CONFIG_DIR)),
            other => panic!("{other:?}"),
        }
        // The cron line runs the same command.
        let cron = certs::cron_line(&certs::ScheduleOptions::default());
        assert!(cron.contains(&exec.to_string()), "{cron}");
    }

    #[test]
    fn config_dir_needs_local() {
        let e = crate::cli::Cli::try_parse_from([
            "provision",
            "certs",
            "renew",
            "--config-dir",
            "/etc/provision/certs",
        ])
        .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

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

    /// A certificate for the test declaration issued at `at` (it expires 365 days later).
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
