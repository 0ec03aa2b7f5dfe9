//! `up` and `check` on one host: the converge, then — for a host whose vars declare a
//! certificate — the certificate step over the same connection.
//!
//! The converge puts a self-signed placeholder in the app's `ssl/` when nothing is there
//! ([`certs::Placeholder`], so nginx starts at once). The certificate step then obtains
//! the real certificate when none valid is installed (or renews it when due; a later `up`
//! asks the CA nothing otherwise), installs it where the app's nginx reads it (reloading
//! only on change), and installs the renewal timer with what it runs: this binary and the
//! host's copy of the certificate state. `check` shows all of it and asks nothing of the
//! CA.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use certs::InstalledBinary;
use certs::{CertificateDeclaration, Settings};
use common::Transport;
use common::engine;
use common::inventory::HostSpec;
use common::report::{HostOutcome, HostReport, ResourceReport, ResourceStatus};
use common::resource::{Resource, ResourceId};
use common::run::{Converge, HostWork};

use crate::ComposeError;
use crate::certs::{CertificateRun, CertificateStatus, declaration_of, schedule_job};
use crate::reboot::RebootStep;

/// Why the certificate step has no binary for the renewal timer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NoBinary {
    /// Not read: no host needs it.
    #[error("no selected host declares a certificate")]
    NotNeeded,
    #[error(transparent)]
    Unreadable(#[from] certs::BinaryError),
}

/// What the certificate step needs besides the declaration.
pub(crate) struct CertificateStep {
    pub(crate) settings: Settings,
    /// Resolves a relative `ca_root`.
    pub(crate) base_dir: Option<PathBuf>,
    /// What the renewal timer runs (read only when a selected host declares a
    /// certificate), or why it could not be read.
    pub(crate) binary: Result<InstalledBinary, NoBinary>,
    pub(crate) schedule: certs::ScheduleOptions,
}

impl CertificateStep {
    pub(crate) fn new(settings: Settings, base_dir: Option<PathBuf>, hosts: &[HostSpec]) -> Self {
        let schedule = certs::ScheduleOptions::default();
        let declares = hosts
            .iter()
            .any(|h| matches!(declaration_of(h, base_dir.as_deref()), Ok(Some(_))));
        // A host that declares a certificate and gets no binary fails in its own step.
        let binary = match declares {
            true => InstalledBinary::current_executable(&schedule.binary).map_err(NoBinary::from),
            false => Err(NoBinary::NotNeeded),
        };
        Self {
            settings,
            base_dir,
            binary,
            schedule,
        }
    }

    /// When the stored certificate fits the declaration, is not due and nothing must be
    /// asked of the CA: the step's resources (its report line, the installed files, the
    /// timer), to converge with the host's others in their one fact round trip. `None`:
    /// the step runs after the converge.
    fn folded(&self, d: &CertificateDeclaration) -> Option<Vec<Box<dyn Resource>>> {
        let check = certs::renewal_check(d, &self.settings.state, self.settings.now()).ok()?;
        if check.decision.is_due() || check.needs_ari {
            return None;
        }
        let (stored, info) = (check.stored?, check.info?);
        if !certs::key_matches(&stored).unwrap_or(false) {
            return None; // the step reports it
        }
        let binary = self.binary.as_ref().ok()?;
        let schedule = schedule_job(d, &self.settings.state, Some(binary), &self.schedule).ok()?;
        let current = CertificateRun {
            reason: Some(check.decision.reason().to_string()),
            not_after: Some(certs::info::rfc3339(info.not_after)),
            days_left: Some(info.days_left(self.settings.now())),
            next_renewal: match &check.decision {
                certs::Decision::NotDue { at, .. } => Some(certs::info::rfc3339(*at)),
                certs::Decision::Due { .. } => None,
            },
            ..CertificateRun::new(d, CertificateStatus::Unchanged)
        };
        let line = certificate_report(&current);
        let mut out: Vec<Box<dyn Resource>> = vec![Box::new(CurrentCertificate {
            id: certificate_id(&current.name),
            detail: line.detail,
        })];
        out.extend(certs::install_resources(d, &stored));
        out.extend(schedule);
        Some(out)
    }

    /// Obtain or renew when due, install, schedule; reported as one more resource
    /// (`certificate:NAME`) followed by what installing and scheduling converged.
    async fn run(
        &self,
        declaration: &CertificateDeclaration,
        transport: &dyn Transport,
        report: &mut HostReport,
    ) {
        let mode = self.settings.engine.mode;
        let result = certs::renew(declaration, transport, &self.settings, false).await;
        let mut run = CertificateRun::from_result(declaration, result, self.settings.now());
        let install = run.install.take();
        report.resources.push(certificate_report(&run));
        if let Some(install) = install {
            report.append(install, mode);
        }
        if run.status == CertificateStatus::Failed {
            report.outcome = HostOutcome::Failed;
            report.error = Some(format!(
                "certificate {}: {}; whatever was in {} stays there (a placeholder on a new host)",
                declaration.name,
                run.error.unwrap_or_default(),
                declaration.ssl_dir
            ));
            return;
        }
        let binary = match &self.binary {
            Ok(binary) => binary,
            Err(e) => {
                let e = format!("the renewal timer runs this provision binary on the host: {e}");
                report.append(HostReport::failed(&declaration.host, e), mode);
                return;
            }
        };
        match schedule_job(
            declaration,
            &self.settings.state,
            Some(binary),
            &self.schedule,
        ) {
            Ok(resources) => {
                let scheduled =
                    engine::converge(transport, &resources, &self.settings.engine).await;
                report.append(scheduled, mode);
            }
            Err(e) => report.append(HostReport::failed(&declaration.host, e.message()), mode),
        }
    }
}

/// The report line of a certificate that is current (no probe, never a change).
struct CurrentCertificate {
    id: ResourceId,
    detail: String,
}

impl Resource for CurrentCertificate {
    fn id(&self) -> ResourceId {
        self.id.clone()
    }

    fn probes(&self) -> Vec<common::Probe> {
        Vec::new()
    }

    fn plan(&self, _: &common::Facts) -> Result<common::Plan, common::PlanError> {
        Ok(common::Plan::noop(self.detail.clone()))
    }
}

/// The certificate's own line in the host's report.
fn certificate_report(run: &CertificateRun) -> ResourceReport {
    let status = match run.status {
        CertificateStatus::Obtained | CertificateStatus::Installed => ResourceStatus::Changed,
        CertificateStatus::Unchanged => ResourceStatus::Ok,
        CertificateStatus::Pending => ResourceStatus::Pending,
        CertificateStatus::Failed => ResourceStatus::Failed,
    };
    let line = run.line();
    let detail = line
        .strip_prefix(&format!("{}/{}: ", run.host, run.name))
        .unwrap_or(&line)
        .to_string();
    ResourceReport::new(certificate_id(&run.name).as_str(), status, detail)
}

/// The id of a certificate's line: one for the step's report and a current certificate's.
fn certificate_id(name: &str) -> ResourceId {
    ResourceId::of("certificate", name)
}

/// `up`/`check` on one host: [`Converge`], then the certificate step where one is declared,
/// then the reboot step (`harden` has neither).
pub(crate) struct Up<J> {
    pub(crate) converge: Converge<J>,
    pub(crate) certificates: Option<CertificateStep>,
    pub(crate) reboot: Option<RebootStep>,
}

#[async_trait]
impl<J> HostWork for Up<J>
where
    J: Fn(&HostSpec) -> Result<Vec<Box<dyn Resource>>, String> + Send + Sync + 'static,
{
    type Ready = (Vec<Box<dyn Resource>>, Option<CertificateDeclaration>);
    type Output = HostReport;

    fn phase(&self) -> &'static str {
        self.converge.phase()
    }

    fn prepare(&self, spec: &HostSpec) -> Result<Self::Ready, String> {
        let mut resources = self.converge.prepare(spec)?;
        let declaration = match &self.certificates {
            Some(step) => match declaration_of(spec, step.base_dir.as_deref())
                .map_err(|e| ComposeError::from(e).message())?
            {
                Some(d) => match step.folded(&d) {
                    Some(current) => {
                        // The current certificate is installed with them: no placeholder.
                        resources.retain(|r| r.id().kind() != certs::Placeholder::KIND);
                        resources.extend(current);
                        None
                    }
                    None => Some(d),
                },
                None => None,
            },
            None => None,
        };
        Ok((resources, declaration))
    }

    async fn run(
        &self,
        spec: &HostSpec,
        (resources, declaration): Self::Ready,
        transport: &dyn Transport,
    ) -> HostReport {
        let started = std::time::Instant::now();
        let mut report = self.converge.run(spec, resources, transport).await;
        let converged_ms = report.elapsed_ms;
        if let (Some(declaration), Some(step)) = (declaration, &self.certificates)
            && report.outcome != HostOutcome::Failed
        {
            step.run(&declaration, transport, &mut report).await;
        }
        if let Some(step) = &self.reboot
            && report.outcome != HostOutcome::Failed
            && let Some(line) = step.run(spec, transport).await
        {
            let error =
                (line.status == ResourceStatus::Failed).then(|| format!("reboot: {}", line.detail));
            let rebooted = HostReport {
                resources: vec![line],
                error,
                ..HostReport::new(&spec.name)
            };
            report.append(rebooted, step.mode);
        }
        report.elapsed_ms = converged_ms.max(started.elapsed().as_millis() as u64);
        report
    }

    fn failed(&self, spec: &HostSpec, error: String) -> HostReport {
        self.converge.failed(spec, error)
    }

    fn finish(&self, report: &mut HostReport, elapsed: Duration) -> HostReport {
        self.converge.finish(report, elapsed)
    }
}
