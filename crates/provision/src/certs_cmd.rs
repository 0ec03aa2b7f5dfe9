//! `provision certs ...`: wiring of the `certs` crate into the CLI.
//!
//! `issue`/`renew` run from this machine against each selected host over SSH (hosts in
//! parallel, at most `--forks`), or with `renew --local` on the host itself, which is what
//! the timer installed by `schedule` runs. `status` reads this machine's state directory.
//!
//! Two small resources live here because only `schedule` needs them: the provision binary
//! on the host (compared by sha256, since the file fact reads contents up to 1 MiB only),
//! and the host's own copy of a certificate's state, so that the timer starts from the
//! certificate already installed instead of ordering another one.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use certs::time::OffsetDateTime;
use certs::{CertInfo, CertificateDeclaration, CertsError, Outcome, Settings, StateDir};
use common::Transport;
use common::engine::Mode;
use common::facts::{Fact, FactError, Facts, Probe, ProbeOutput};
use common::inventory::HostSpec;
use common::report::{HostOutcome, HostReport, exit_code, exit_code_for};
use common::resource::{Action, FileWrite, Plan, Resource};
use common::shell::quote;
use common::transport::local::LocalTransport;
use common::transport::ssh::SshTransport;
use serde::Serialize;
use sha2::{Digest, Sha256};
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
        Some(InstalledBinary::current_executable(&options.binary)?)
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A regular file's sha256, mode and owner, read on the host (any size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileDigestValue {
    Absent,
    /// Something other than a regular file is there.
    NotAFile,
    File {
        sha256: String,
        mode: u32,
        owner: String,
        group: String,
    },
}

impl Fact for FileDigest {
    type Value = FileDigestValue;

    fn probe(&self) -> Probe {
        let p = quote(&self.path);
        Probe {
            key: format!("sha256:{}", self.path),
            script: format!(
                "if [ -f {p} ]; then sha256sum {p} | cut -d' ' -f1; stat -c '%a %U %G' {p}; \
                 elif [ -e {p} ] || [ -L {p} ]; then echo not-a-file; else echo absent; fi"
            ),
        }
    }

    fn parse(&self, output: &ProbeOutput) -> Result<FileDigestValue, FactError> {
        let key = self.probe().key;
        if output.status != 0 {
            return Err(FactError::ProbeFailed {
                key,
                status: output.status,
                stderr: output.stderr.clone(),
            });
        }
        let error = |what: &str, line: &str| FactError::Parse {
            key: key.clone(),
            what: what.into(),
            line: line.into(),
        };
        let mut lines = output.stdout.lines();
        let first = lines.next().unwrap_or_default().trim();
        match first {
            "absent" => return Ok(FileDigestValue::Absent),
            "not-a-file" => return Ok(FileDigestValue::NotAFile),
            _ => {}
        }
        if first.len() != 64 || !first.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(error("a sha256 digest", first));
        }
        let attrs = lines.next().unwrap_or_default();
        let mut words = attrs.split_whitespace();
        let (Some(mode), Some(owner), Some(group), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(error("`mode owner group`", attrs));
        };
        let mode = u32::from_str_radix(mode, 8).map_err(|_| error("an octal mode", attrs))?;
        Ok(FileDigestValue::File {
            sha256: first.to_ascii_lowercase(),
            mode,
            owner: owner.into(),
            group: group.into(),
        })
    }
}

/// The provision binary at a path on the host (0755 root:root), uploaded only when the
/// host's file is a different build.
#[derive(Clone)]
pub struct InstalledBinary {
    pub path: String,
    content: Arc<[u8]>,
    sha256: String,
}

impl std::fmt::Debug for InstalledBinary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstalledBinary")
            .field("path", &self.path)
            .field("bytes", &self.content.len())
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl InstalledBinary {
    pub fn new(path: impl Into<String>, content: impl Into<Arc<[u8]>>) -> Self {
        let content = content.into();
        Self {
            path: path.into(),
            sha256: hex(&Sha256::digest(&content)),
            content,
        }
    }

    /// The running executable, read here, to go to `path` on the host.
    pub fn current_executable(path: &str) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()
            .map_err(|e| anyhow::anyhow!("cannot find the running provision binary: {e}"))?;
        let content = std::fs::read(&exe)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", exe.display()))?;
        Ok(Self::new(path, content))
    }

    fn fact(&self) -> FileDigest {
        FileDigest {
            path: self.path.clone(),
        }
    }

    fn write(&self) -> Action {
        Action::WriteFile(FileWrite {
            path: self.path.clone(),
            content: self.content.to_vec(),
            mode: 0o755,
            owner: "root".into(),
            group: "root".into(),
            previous: None,
            sensitive: false,
            validate: None,
        })
    }
}

impl Resource for InstalledBinary {
    fn id(&self) -> String {
        format!("binary:{}", self.path)
    }

    fn probes(&self) -> Vec<Probe> {
        vec![self.fact().probe()]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, FactError> {
        let short = &self.sha256[..12];
        let mib = self.content.len() as f64 / (1024.0 * 1024.0);
        match facts.read(&self.fact())? {
            FileDigestValue::Absent => Ok(Plan::change(
                format!(
                    "install provision ({mib:.1} MiB, sha256 {short}…) at {}",
                    self.path
                ),
                vec![self.write()],
            )),
            FileDigestValue::NotAFile => Err(FactError::Parse {
                key: self.fact().probe().key,
                what: "a regular file".into(),
                line: format!("{} is not a regular file", self.path),
            }),
            FileDigestValue::File { sha256, .. } if sha256 != self.sha256 => Ok(Plan::change(
                format!(
                    "replace {} (sha256 {}… → {short}…, {mib:.1} MiB)",
                    self.path,
                    &sha256[..12]
                ),
                vec![self.write()],
            )),
            FileDigestValue::File {
                mode, owner, group, ..
            } if mode != 0o755 || owner != "root" || group != "root" => Ok(Plan::change(
                format!(
                    "{}: set mode 755 owner root:root (was {mode:o} {owner}:{group})",
                    self.path
                ),
                vec![Action::run(
                    format!("chmod/chown {}", self.path),
                    format!("chown root:root {p}\nchmod 755 {p}", p = quote(&self.path)),
                )],
            )),
            FileDigestValue::File { .. } => Ok(Plan::noop(format!(
                "{} is this build (sha256 {short}…)",
                self.path
            ))),
        }
    }
}

/// What the host's copy of a certificate's state holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCopyValue {
    pub fullchain: Option<String>,
    pub privkey: bool,
    pub record: bool,
}

/// The host's copy of one certificate's state directory: which files exist, and the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCopy {
    pub dir: String,
}

const CHAIN_MARK: &str = "fullchain:";

impl Fact for StoredCopy {
    type Value = StoredCopyValue;

    fn probe(&self) -> Probe {
        let d = quote(&self.dir);
        Probe {
            key: format!("certs-state:{}", self.dir),
            script: format!(
                "for f in privkey.pem state.json; do if [ -f {d}/$f ]; then echo \"present $f\"; else echo \"absent $f\"; fi; done\n\
                 if [ -f {d}/fullchain.pem ]; then echo {CHAIN_MARK}; cat {d}/fullchain.pem; fi"
            ),
        }
    }

    fn parse(&self, output: &ProbeOutput) -> Result<StoredCopyValue, FactError> {
        let key = self.probe().key;
        if output.status != 0 {
            return Err(FactError::ProbeFailed {
                key,
                status: output.status,
                stderr: output.stderr.clone(),
            });
        }
        let (head, chain) = match output.stdout.split_once(&format!("{CHAIN_MARK}\n")) {
            Some((head, chain)) => (head, Some(chain.to_string())),
            None => (output.stdout.as_str(), None),
        };
        let mut value = StoredCopyValue {
            fullchain: chain,
            privkey: false,
            record: false,
        };
        let mut seen = 0;
        for line in head.lines() {
            let present = match line.split_once(' ') {
                Some(("present", _)) => true,
                Some(("absent", _)) => false,
                _ => {
                    return Err(FactError::Parse {
                        key,
                        what: "`present|absent FILE`".into(),
                        line: line.into(),
                    });
                }
            };
            match line.rsplit(' ').next() {
                Some("privkey.pem") => value.privkey = present,
                Some("state.json") => value.record = present,
                _ => {
                    return Err(FactError::Parse {
                        key,
                        what: "a state file name".into(),
                        line: line.into(),
                    });
                }
            }
            seen += 1;
        }
        if seen != 2 {
            return Err(FactError::Malformed { key });
        }
        Ok(value)
    }
}

/// The host's own copy of a certificate's state (chain, key, record) in the state directory
/// `certs renew --local` uses, so that the timer starts from the certificate already
/// installed instead of ordering a new one. Written when the host has no copy or one that
/// expires earlier than this machine's; a newer one the host renewed itself is kept.
#[derive(Clone)]
pub struct HostStateCopy {
    /// The host's state directory.
    pub root: String,
    /// `<root>/certs/<host>/<name>`.
    pub dir: String,
    fullchain: Vec<u8>,
    privkey: Vec<u8>,
    record: Vec<u8>,
    not_after: OffsetDateTime,
}

impl std::fmt::Debug for HostStateCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostStateCopy")
            .field("dir", &self.dir)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl HostStateCopy {
    /// From this machine's state; `None` when no certificate was issued yet.
    pub fn from_state(
        declaration: &CertificateDeclaration,
        state: &StateDir,
    ) -> Result<Option<Self>, String> {
        let (host, name) = (&declaration.host, &declaration.name);
        let Some(stored) = state
            .load_certificate(host, name)
            .map_err(|e| certs::error_chain(&e))?
        else {
            return Ok(None);
        };
        let info = CertInfo::from_pem(&stored.fullchain).map_err(|e| {
            format!(
                "the stored certificate in {} does not parse: {e}",
                state.cert_dir(host, name).display()
            )
        })?;
        let record = state
            .load_record(host, name)
            .map_err(|e| certs::error_chain(&e))?;
        let mut record = serde_json::to_vec_pretty(&record).map_err(|e| e.to_string())?;
        record.push(b'\n');
        let root = certs::schedule::LOCAL_STATE_DIR;
        let dir = StateDir::new(root).cert_dir(host, name);
        Ok(Some(Self {
            root: root.into(),
            dir: dir.to_string_lossy().into_owned(),
            fullchain: stored.fullchain,
            privkey: stored.privkey,
            record,
            not_after: info.not_after,
        }))
    }

    fn fact(&self) -> StoredCopy {
        StoredCopy {
            dir: self.dir.clone(),
        }
    }

    fn write(&self, file: &str, content: &[u8], mode: u32, sensitive: bool) -> Action {
        Action::WriteFile(FileWrite {
            path: format!("{}/{file}", self.dir),
            content: content.to_vec(),
            mode,
            owner: "root".into(),
            group: "root".into(),
            previous: None,
            sensitive,
            validate: None,
        })
    }

    fn actions(&self) -> Vec<Action> {
        // Private directories from the state root down (as the state directory makes them).
        let mut dirs = vec![quote(&self.root)];
        let mut path = PathBuf::from(&self.root);
        if let Ok(rest) = Path::new(&self.dir).strip_prefix(&self.root) {
            for c in rest.components() {
                path.push(c);
                dirs.push(quote(&path.to_string_lossy()));
            }
        }
        vec![
            Action::run(
                format!("private directory {}", self.dir),
                format!(
                    "mkdir -p {}\nchmod 700 {}",
                    quote(&self.dir),
                    dirs.join(" ")
                ),
            ),
            self.write("privkey.pem", &self.privkey, 0o600, true),
            self.write("fullchain.pem", &self.fullchain, 0o644, false),
            self.write("state.json", &self.record, 0o600, false),
        ]
    }
}

impl Resource for HostStateCopy {
    fn id(&self) -> String {
        format!("certs-state:{}", self.dir)
    }

    fn probes(&self) -> Vec<Probe> {
        vec![self.fact().probe()]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, FactError> {
        let current = facts.read(&self.fact())?;
        let expires = certs::state::rfc3339(self.not_after);
        let copy = |why: String| {
            Plan::change(
                format!("copy the certificate state to {} ({why})", self.dir),
                self.actions(),
            )
        };
        let Some(chain) = current.fullchain else {
            return Ok(copy("the host has none".into()));
        };
        if !current.privkey || !current.record {
            return Ok(copy("the host's copy is incomplete".into()));
        }
        if chain.as_bytes() == self.fullchain.as_slice() {
            return Ok(Plan::noop(format!(
                "the host has this certificate's state (expires {expires})"
            )));
        }
        match CertInfo::from_pem(chain.as_bytes()) {
            Err(_) => Ok(copy("the host's copy does not parse".into())),
            Ok(theirs) if theirs.not_after < self.not_after => Ok(copy(format!(
                "the host's copy expires earlier, {}",
                certs::state::rfc3339(theirs.not_after)
            ))),
            Ok(theirs) => Ok(Plan::noop(format!(
                "the host renewed on its own (expires {}); keeping its copy",
                certs::state::rfc3339(theirs.not_after)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::collections::BTreeMap;

    fn ok(stdout: &str) -> ProbeOutput {
        ProbeOutput {
            status: 0,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    fn facts_with(probe: Probe, stdout: &str) -> Facts {
        Facts::from_outputs(BTreeMap::from([(probe.key, ok(stdout))]))
    }

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

    #[test]
    fn file_digest_parses() {
        let f = FileDigest {
            path: "/usr/local/bin/provision".into(),
        };
        let sum = "a".repeat(64);
        assert_eq!(
            f.parse(&ok(&format!("{sum}\n755 root root\n"))).unwrap(),
            FileDigestValue::File {
                sha256: sum.clone(),
                mode: 0o755,
                owner: "root".into(),
                group: "root".into()
            }
        );
        assert_eq!(f.parse(&ok("absent\n")).unwrap(), FileDigestValue::Absent);
        assert_eq!(
            f.parse(&ok("not-a-file\n")).unwrap(),
            FileDigestValue::NotAFile
        );
        assert!(f.parse(&ok("sha256sum: missing\n")).is_err());
        assert!(f.parse(&ok(&format!("{sum}\n755 root\n"))).is_err());
        assert!(
            f.parse(&ProbeOutput {
                status: 1,
                stdout: String::new(),
                stderr: "boom".into()
            })
            .is_err()
        );
    }

    fn binary() -> InstalledBinary {
        InstalledBinary::new("/usr/local/bin/provision", b"\x7fELF build 1".to_vec())
    }

    fn plan_binary(stdout: &str) -> Result<Plan, FactError> {
        let b = binary();
        b.plan(&facts_with(b.fact().probe(), stdout))
    }

    #[test]
    fn binary_is_uploaded_when_absent() {
        let Plan::Change { actions, summary } = plan_binary("absent\n").unwrap() else {
            panic!("expected a change");
        };
        assert!(summary.starts_with("install provision"), "{summary}");
        let [Action::WriteFile(w)] = actions.as_slice() else {
            panic!("{actions:?}");
        };
        assert_eq!(
            (w.path.as_str(), w.mode, w.owner.as_str()),
            ("/usr/local/bin/provision", 0o755, "root")
        );
        assert_eq!(w.content, b"\x7fELF build 1");
    }

    #[test]
    fn binary_of_the_same_build_is_kept() {
        let sum = binary().sha256.clone();
        assert_eq!(
            plan_binary(&format!("{sum}\n755 root root\n")).unwrap(),
            Plan::noop(format!(
                "/usr/local/bin/provision is this build (sha256 {}…)",
                &sum[..12]
            ))
        );
    }

    #[test]
    fn binary_of_another_build_is_replaced() {
        let other = "0".repeat(64);
        let Plan::Change { actions, summary } =
            plan_binary(&format!("{other}\n755 root root\n")).unwrap()
        else {
            panic!("expected a change");
        };
        assert!(summary.starts_with("replace /usr/local/bin/provision"));
        assert!(matches!(actions.as_slice(), [Action::WriteFile(_)]));
    }

    #[test]
    fn binary_with_wrong_mode_is_fixed_in_place() {
        let sum = binary().sha256.clone();
        let plan = plan_binary(&format!("{sum}\n700 deploy deploy\n")).unwrap();
        assert_eq!(
            plan,
            Plan::change(
                "/usr/local/bin/provision: set mode 755 owner root:root (was 700 deploy:deploy)",
                vec![Action::run(
                    "chmod/chown /usr/local/bin/provision",
                    "chown root:root /usr/local/bin/provision\nchmod 755 /usr/local/bin/provision"
                )]
            )
        );
    }

    #[test]
    fn binary_path_taken_by_a_directory_fails() {
        assert!(plan_binary("not-a-file\n").is_err());
    }

    #[test]
    fn stored_copy_parses() {
        let f = StoredCopy {
            dir: "/var/lib/provision/certs/certs/web-1/example.com".into(),
        };
        assert_eq!(
            f.parse(&ok("absent privkey.pem\nabsent state.json\n"))
                .unwrap(),
            StoredCopyValue {
                fullchain: None,
                privkey: false,
                record: false
            }
        );
        assert_eq!(
            f.parse(&ok(
                "present privkey.pem\npresent state.json\nfullchain:\n-----BEGIN CERTIFICATE-----\nx\n"
            ))
            .unwrap(),
            StoredCopyValue {
                fullchain: Some("-----BEGIN CERTIFICATE-----\nx\n".into()),
                privkey: true,
                record: true
            }
        );
        assert!(f.parse(&ok("present privkey.pem\n")).is_err());
        assert!(
            f.parse(&ok("maybe privkey.pem\nabsent state.json\n"))
                .is_err()
        );
    }

    fn at(rfc3339: &str) -> OffsetDateTime {
        OffsetDateTime::parse(
            rfc3339,
            &certs::time::format_description::well_known::Rfc3339,
        )
        .unwrap()
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
    fn certificate_issued_at(at: OffsetDateTime) -> certs::StoredCertificate {
        certs::self_signed(&test_declaration(), at).unwrap()
    }

    fn chain(c: &certs::StoredCertificate) -> String {
        String::from_utf8(c.fullchain.clone()).unwrap()
    }

    /// A state directory with one certificate issued at 2029-01-01 (expires 2030-01-01).
    fn issued(tmp: &Path) -> (CertificateDeclaration, StateDir, String) {
        let state = StateDir::new(tmp);
        let d = test_declaration();
        let cert = certificate_issued_at(at("2029-01-01T00:00:00Z"));
        state.save_certificate("web-1", &d.name, &cert).unwrap();
        (d, state, chain(&cert))
    }

    fn plan_copy(copy: &HostStateCopy, stdout: &str) -> Plan {
        copy.plan(&facts_with(copy.fact().probe(), stdout)).unwrap()
    }

    #[test]
    fn state_copy_goes_to_a_host_without_one() {
        let tmp = tempfile::tempdir().unwrap();
        let (d, state, pem) = issued(tmp.path());
        let copy = HostStateCopy::from_state(&d, &state).unwrap().unwrap();
        assert_eq!(copy.dir, "/var/lib/provision/certs/certs/web-1/example.com");
        let Plan::Change { summary, actions } =
            plan_copy(&copy, "absent privkey.pem\nabsent state.json\n")
        else {
            panic!("expected a change");
        };
        assert!(summary.ends_with("(the host has none)"), "{summary}");
        let Action::Run { script, .. } = &actions[0] else {
            panic!("{actions:?}");
        };
        assert_eq!(
            script,
            "mkdir -p /var/lib/provision/certs/certs/web-1/example.com\nchmod 700 /var/lib/provision/certs /var/lib/provision/certs/certs /var/lib/provision/certs/certs/web-1 /var/lib/provision/certs/certs/web-1/example.com"
        );
        let writes: Vec<(&str, u32, bool)> = actions[1..]
            .iter()
            .map(|a| match a {
                Action::WriteFile(w) => (w.path.as_str(), w.mode, w.sensitive),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            writes,
            [
                (
                    "/var/lib/provision/certs/certs/web-1/example.com/privkey.pem",
                    0o600,
                    true
                ),
                (
                    "/var/lib/provision/certs/certs/web-1/example.com/fullchain.pem",
                    0o644,
                    false
                ),
                (
                    "/var/lib/provision/certs/certs/web-1/example.com/state.json",
                    0o600,
                    false
                ),
            ]
        );
        let Action::WriteFile(chain) = &actions[2] else {
            unreachable!()
        };
        assert_eq!(chain.content, pem.as_bytes());
    }

    #[test]
    fn state_copy_is_kept_when_the_host_has_it_or_a_newer_one() {
        let tmp = tempfile::tempdir().unwrap();
        let (d, state, pem) = issued(tmp.path());
        let copy = HostStateCopy::from_state(&d, &state).unwrap().unwrap();
        let host =
            |chain: &str| format!("present privkey.pem\npresent state.json\nfullchain:\n{chain}");
        assert_eq!(
            plan_copy(&copy, &host(&pem)),
            Plan::noop("the host has this certificate's state (expires 2030-01-01T00:00:00Z)")
        );
        let newer = chain(&certificate_issued_at(at("2029-03-01T00:00:00Z")));
        assert_eq!(
            plan_copy(&copy, &host(&newer)),
            Plan::noop(
                "the host renewed on its own (expires 2030-03-01T00:00:00Z); keeping its copy"
            )
        );
        let older = chain(&certificate_issued_at(at("2028-10-01T00:00:00Z")));
        let Plan::Change { summary, .. } = plan_copy(&copy, &host(&older)) else {
            panic!("an older copy is replaced");
        };
        assert!(
            summary.ends_with("expires earlier, 2029-10-01T00:00:00Z)"),
            "{summary}"
        );
        let Plan::Change { summary, .. } = plan_copy(&copy, &host("garbage\n")) else {
            panic!("a broken copy is replaced");
        };
        assert!(summary.ends_with("(the host's copy does not parse)"));
        let Plan::Change { summary, .. } = plan_copy(
            &copy,
            &format!("absent privkey.pem\npresent state.json\nfullchain:\n{pem}"),
        ) else {
            panic!("an incomplete copy is replaced");
        };
        assert!(summary.ends_with("(the host's copy is incomplete)"));
    }

    #[test]
    fn no_state_copy_before_the_first_issue() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path());
        let d = test_declaration();
        assert!(HostStateCopy::from_state(&d, &state).unwrap().is_none());
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
        assert_eq!(runs_exit_code(&[run.clone()]), exit_code::PENDING);
        let failed = CertificateRun::failed(&d, "boom".into());
        assert_eq!(runs_exit_code(&[run, failed]), exit_code::FAILED);
    }
}
