//! What a run did, per resource and per host; serializable for `--format json`.

use serde::Serialize;

use crate::engine::Mode;
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
}

impl ResourceReport {
    /// `Pending` until applied; the engine marks applied resources `Changed`.
    pub fn from_plan(id: &str, plan: &Plan, triggered: &[Action]) -> Self {
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
        }
    }

    pub fn failed(id: &str, error: String) -> Self {
        Self {
            id: id.to_string(),
            status: ResourceStatus::Failed,
            detail: error,
            actions: Vec::new(),
            diffs: Vec::new(),
        }
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

#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub host: String,
    pub outcome: HostOutcome,
    pub resources: Vec<ResourceReport>,
    /// Script executions on the host (connection setup not included).
    pub round_trips: u32,
    pub elapsed_ms: u64,
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

/// An error and its causes on one line, each cause once (messages that already contain
/// their source's text are not repeated).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
