//! `systemctl daemon-reload` after unit files of this run changed, before their services
//! are enabled or started.

use common::PlanError;
use common::facts::{Facts, Probe};
use common::{Action, Plan, Resource};

/// Reloads systemd's unit files when a watched unit file resource changed; placed after the
/// unit files and before the services in the resource list.
#[derive(Debug, Clone)]
pub struct DaemonReload {
    /// Names this reload (one per app).
    pub name: String,
    /// Ids of the unit file resources.
    pub unit_files: Vec<String>,
}

impl Resource for DaemonReload {
    fn id(&self) -> String {
        format!("systemd-daemon-reload:{}", self.name)
    }

    fn probes(&self) -> Vec<Probe> {
        Vec::new()
    }

    fn plan(&self, _facts: &Facts) -> Result<Plan, PlanError> {
        Ok(Plan::noop("runs only when a unit file changes"))
    }

    fn watches(&self) -> Vec<String> {
        self.unit_files.clone()
    }

    fn on_watched_change(&self) -> Vec<Action> {
        vec![Action::run(
            "systemctl daemon-reload",
            "systemctl daemon-reload",
        )]
    }
}
