//! Steps that run only because something else changed in the same run.

use crate::facts::{Facts, Probe};
use crate::resource::{Action, Plan, PlanError, Resource, ResourceId};

/// Runs `actions` when a resource it watches changed in this run, and nothing otherwise:
/// `systemctl daemon-reload` after unit files, `daemon-reexec` after manager settings, a
/// certificate's reload hook after its files. The one watch-only resource.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub id: ResourceId,
    /// Ids of the watched resources.
    pub watches: Vec<ResourceId>,
    pub actions: Vec<Action>,
    /// The plan's reason: it never changes anything by itself.
    pub reason: String,
}

impl Trigger {
    pub fn new(id: ResourceId, watches: Vec<ResourceId>, actions: Vec<Action>) -> Self {
        Self {
            id,
            watches,
            actions,
            reason: "runs only when a watched file changes".into(),
        }
    }

    /// `systemctl daemon-reload` after one of `unit_files` (resource ids) changed: placed
    /// after the unit files and before their services are enabled or started.
    pub fn daemon_reload(id: ResourceId, unit_files: Vec<ResourceId>) -> Self {
        Self::new(id, unit_files, vec![Action::DaemonReload])
            .because("runs only when a unit file changes")
    }

    /// Says why it is a no-op in terms of what it watches.
    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }
}

impl Resource for Trigger {
    fn id(&self) -> ResourceId {
        self.id.clone()
    }

    fn probes(&self) -> Vec<Probe> {
        Vec::new()
    }

    fn plan(&self, _facts: &Facts) -> Result<Plan, PlanError> {
        Ok(Plan::noop(self.reason.clone()))
    }

    fn watches(&self) -> Vec<ResourceId> {
        self.watches.clone()
    }

    fn on_watched_change(&self, _facts: &Facts) -> Result<Vec<Action>, PlanError> {
        Ok(self.actions.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_reload_plans_nothing_and_reloads_after_a_watched_unit_file() {
        let t = Trigger::daemon_reload(
            ResourceId::of("systemd", "daemon-reload"),
            vec![ResourceId::file("/etc/x.service")],
        );
        assert_eq!(
            t.plan(&Facts::default()).unwrap(),
            Plan::noop("runs only when a unit file changes")
        );
        assert!(t.probes().is_empty());
        assert_eq!(t.watches(), ["file:/etc/x.service"]);
        assert_eq!(
            t.on_watched_change(&Facts::default()).unwrap(),
            [Action::DaemonReload]
        );
    }
}
