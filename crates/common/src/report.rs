//! What a run did, per resource and per host; serializable for `--format json`.

use serde::Serialize;

use crate::mode::Mode;
use crate::resource::{Action, Plan};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceStatus {
    /// Already as desired.
    Ok,
    /// Cannot apply here (e.g. container); not a failure.
    NotApplicable,
    /// Would change (check mode).
    Pending,
    /// Changed by this run.
    Changed,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResourceReport {
    pub id: String,
    pub status: ResourceStatus,
    /// The no-op reason, or the summary of the change.
    pub detail: String,
    /// Steps planned or run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    /// Unified diffs of file changes (sensitive files say so instead).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diffs: Vec<String>,
    /// What the operator should know that is not a change ([`crate::Resource::notes`]);
    /// shown whatever the status.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl ResourceReport {
    /// `Pending` until applied; the engine marks applied resources `Changed`.
    pub(crate) fn from_plan(id: &str, plan: &Plan, triggered: &[Action]) -> Self {
        let pending = ResourceStatus::Pending;
        let (status, detail, actions): (ResourceStatus, String, Vec<&Action>) = match plan {
            Plan::Noop { reason } if triggered.is_empty() => {
                (ResourceStatus::Ok, reason.clone(), Vec::new())
            }
            Plan::Noop { reason } => (
                pending,
                format!("{reason}; reload triggered by a watched change"),
                triggered.iter().collect(),
            ),
            Plan::NotApplicable { reason } => {
                (ResourceStatus::NotApplicable, reason.clone(), Vec::new())
            }
            Plan::Change { summary, actions } => (
                pending,
                summary.clone(),
                actions.iter().chain(triggered).collect(),
            ),
        };
        Self {
            id: id.to_string(),
            status,
            detail,
            diffs: actions.iter().filter_map(|a| diff_of(a)).collect(),
            actions: actions.iter().map(|a| a.describe()).collect(),
            notes: Vec::new(),
        }
    }

    /// A line with no actions, diffs or notes (a step's own, outside the engine's plans).
    pub fn new(id: &str, status: ResourceStatus, detail: String) -> Self {
        Self {
            id: id.to_string(),
            status,
            detail,
            actions: Vec::new(),
            diffs: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn failed(id: &str, error: String) -> Self {
        Self::new(id, ResourceStatus::Failed, error)
    }
}

/// Unified diff of a file write; secrets are never shown.
pub fn diff_of(action: &Action) -> Option<String> {
    let Action::WriteFile(w) = action else {
        return None;
    };
    if w.sensitive {
        return Some(format!(
            "--- {p}\n+++ {p}\n(sensitive content not shown)\n",
            p = w.path
        ));
    }
    let old = w.previous.as_deref().unwrap_or_default();
    match (std::str::from_utf8(old), std::str::from_utf8(&w.content)) {
        (Ok(old), Ok(new)) => {
            let old_header = if w.previous.is_some() {
                w.path.clone()
            } else {
                "/dev/null".to_string()
            };
            let diff = similar::TextDiff::from_lines(old, new)
                .unified_diff()
                .context_radius(3)
                .header(&old_header, &w.path)
                .to_string();
            (!diff.is_empty()).then_some(diff)
        }
        _ => Some(format!(
            "--- {p}\n+++ {p}\n(binary content, {} bytes)\n",
            w.content.len(),
            p = w.path
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostOutcome {
    /// Nothing to do.
    Converged,
    /// This run changed the host and verified the result.
    Changed,
    /// Check mode found changes to make.
    Pending,
    Failed,
}

impl HostOutcome {
    /// How the outcome reads in progress lines and the summary.
    pub fn word(self) -> &'static str {
        match self {
            HostOutcome::Converged => "ok (no changes)",
            HostOutcome::Changed => "changed",
            HostOutcome::Pending => "changes pending",
            HostOutcome::Failed => "FAILED",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub host: String,
    pub outcome: HostOutcome,
    pub resources: Vec<ResourceReport>,
    /// Script executions on the host (connection setup not included).
    pub round_trips: u32,
    pub elapsed_ms: u64,
    /// What the run waited for or took over on the host (held apt locks).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl HostReport {
    pub fn new(host: &str) -> Self {
        Self {
            host: host.to_string(),
            outcome: HostOutcome::Converged,
            resources: Vec::new(),
            round_trips: 0,
            elapsed_ms: 0,
            notes: Vec::new(),
            error: None,
        }
    }

    pub fn failed(host: &str, error: String) -> Self {
        Self {
            outcome: HostOutcome::Failed,
            error: Some(error),
            ..Self::new(host)
        }
    }

    pub fn count(&self, status: ResourceStatus) -> usize {
        self.resources.iter().filter(|r| r.status == status).count()
    }

    /// Add a later step's report on the same host (e.g. the certificate step after the
    /// converge): its resources follow, its failure fails the host.
    pub fn append(&mut self, later: HostReport, mode: Mode) {
        let failed = later.outcome == HostOutcome::Failed || self.outcome == HostOutcome::Failed;
        self.resources.extend(later.resources);
        self.notes.extend(later.notes);
        self.round_trips += later.round_trips;
        self.elapsed_ms += later.elapsed_ms;
        self.outcome = match failed {
            true => HostOutcome::Failed,
            false => self.derive_outcome(mode),
        };
        if let Some(error) = later.error {
            self.outcome = HostOutcome::Failed;
            self.error = Some(match self.error.take() {
                Some(first) => format!("{first}; {error}"),
                None => error,
            });
        }
    }

    pub(crate) fn derive_outcome(&self, mode: Mode) -> HostOutcome {
        if self.count(ResourceStatus::Failed) > 0 {
            HostOutcome::Failed
        } else if self.count(ResourceStatus::Changed) > 0 {
            HostOutcome::Changed
        } else if self.count(ResourceStatus::Pending) > 0 {
            match mode {
                Mode::Check => HostOutcome::Pending,
                Mode::Apply => HostOutcome::Failed,
            }
        } else {
            HostOutcome::Converged
        }
    }
}

/// Process exit codes, documented in the README.
pub mod exit_code {
    /// Every host converged (or check found nothing to do).
    pub const CONVERGED: i32 = 0;
    /// At least one host failed.
    pub const FAILED: i32 = 1;
    /// `check`: changes are pending on at least one host (and none failed).
    pub const PENDING: i32 = 2;
}

/// The process exit code for a set of host reports.
pub fn exit_code_for(reports: &[HostReport]) -> i32 {
    if reports.iter().any(|r| r.outcome == HostOutcome::Failed) {
        exit_code::FAILED
    } else if reports.iter().any(|r| r.outcome == HostOutcome::Pending) {
        exit_code::PENDING
    } else {
        exit_code::CONVERGED
    }
}

/// One host's changed, pending, failed or not-applicable resources (with diffs in check
/// mode), as text; empty when everything was already in place.
pub fn render_host(r: &HostReport, mode: Mode) -> String {
    use std::fmt::Write;
    let interesting: Vec<_> = r
        .resources
        .iter()
        .filter(|x| x.status != ResourceStatus::Ok || !x.notes.is_empty())
        .collect();
    let mut out = String::new();
    if interesting.is_empty() && r.error.is_none() && r.notes.is_empty() {
        return out;
    }
    let _ = writeln!(out, "== {}", r.host);
    for note in &r.notes {
        let _ = writeln!(out, "* {note}");
    }
    for res in interesting {
        let mark = match res.status {
            ResourceStatus::Ok => " ",
            ResourceStatus::NotApplicable => "-",
            ResourceStatus::Pending => "~",
            ResourceStatus::Changed => "+",
            ResourceStatus::Failed => "!",
        };
        let _ = writeln!(out, "{mark} {}: {}", res.id, res.detail);
        for note in &res.notes {
            let _ = writeln!(out, "    note: {note}");
        }
        if mode == Mode::Check {
            for d in &res.diffs {
                for line in d.lines() {
                    let _ = writeln!(out, "    {line}");
                }
            }
        }
    }
    if let Some(e) = &r.error {
        let _ = writeln!(out, "! error: {e}");
    }
    out
}

/// The table closing a run: one row a host, then how many failed.
pub(crate) fn render_summary(reports: &[HostReport]) -> String {
    use std::fmt::Write;
    let name_width = reports
        .iter()
        .map(|r| r.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<name_width$}  {:<16} {:>4} {:>8} {:>8} {:>4} {:>7} {:>12} {:>8}",
        "HOST", "OUTCOME", "OK", "CHANGED", "PENDING", "N/A", "FAILED", "ROUND TRIPS", "TIME"
    );
    for r in reports {
        let _ = writeln!(
            out,
            "{:<name_width$}  {:<16} {:>4} {:>8} {:>8} {:>4} {:>7} {:>12} {:>7.2}s",
            r.host,
            r.outcome.word(),
            r.count(ResourceStatus::Ok),
            r.count(ResourceStatus::Changed),
            r.count(ResourceStatus::Pending),
            r.count(ResourceStatus::NotApplicable),
            r.count(ResourceStatus::Failed),
            r.round_trips,
            r.elapsed_ms as f64 / 1000.0
        );
    }
    let failed = reports
        .iter()
        .filter(|r| r.outcome == HostOutcome::Failed)
        .count();
    let _ = writeln!(out, "{} host(s), {} failed", reports.len(), failed);
    out
}

/// A run as text: each host's changes, then the summary table.
pub fn render_reports(reports: &[HostReport], mode: Mode) -> String {
    let mut out: String = reports.iter().map(|r| render_host(r, mode)).collect();
    out.push_str(&render_summary(reports));
    out
}

/// A run as JSON: the mode, the exit code and every host's report.
pub fn reports_json(reports: &[HostReport], mode: Mode) -> serde_json::Value {
    serde_json::json!({
        "mode": mode_name(mode),
        "exit_code": exit_code_for(reports),
        "hosts": reports,
    })
}

/// The name of a mode in JSON output.
pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Check => "check",
        Mode::Apply => "apply",
    }
}
