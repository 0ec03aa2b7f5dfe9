use crate::facts::builtin::UnitState;
use crate::facts::{Fact, Facts, Probe};
use crate::resource::PlanError;
use crate::resource::{Action, Plan, Resource};
use crate::shell::quote;

/// A systemd unit: enabled at boot, running, and reloaded (or restarted) when a watched
/// resource changed in the same run.
#[derive(Debug, Clone)]
pub struct Service {
    pub unit: String,
    pub enabled: bool,
    pub running: bool,
    /// Resource ids whose change reloads this unit.
    pub reload_on: Vec<String>,
    /// Restart instead of reload when a watched resource changes.
    pub restart_on_change: bool,
}

impl Service {
    pub fn running(unit: &str) -> Self {
        Self {
            unit: unit.into(),
            enabled: true,
            running: true,
            reload_on: Vec::new(),
            restart_on_change: false,
        }
    }

    pub fn reload_on(mut self, ids: impl IntoIterator<Item = String>) -> Self {
        self.reload_on.extend(ids);
        self
    }

    pub fn restart_on_change(mut self) -> Self {
        self.restart_on_change = true;
        self
    }

    fn fact(&self) -> UnitState {
        UnitState {
            unit: self.unit.clone(),
        }
    }
}

impl Resource for Service {
    fn id(&self) -> String {
        format!("service:{}", self.unit)
    }

    fn probes(&self) -> Vec<Probe> {
        vec![self.fact().probe()]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let state = facts.read(&self.fact())?;
        let u = quote(&self.unit);
        let mut todo = Vec::new();
        let mut script = Vec::new();
        // A unit that does not exist yet is usually installed by an earlier step of this run.
        if self.enabled && !state.is_enabled() {
            todo.push("enable");
            script.push(format!("systemctl enable {u}"));
        }
        if !self.enabled && state.is_enabled() && state.unit_file_state != "static" {
            todo.push("disable");
            script.push(format!("systemctl disable {u}"));
        }
        if self.running && !state.is_active() {
            todo.push("start");
            script.push(format!("systemctl start {u}"));
        }
        if !self.running && state.is_active() {
            todo.push("stop");
            script.push(format!("systemctl stop {u}"));
        }
        if todo.is_empty() {
            return Ok(Plan::noop(format!(
                "{} is {} and {}",
                self.unit, state.active_state, state.unit_file_state
            )));
        }
        Ok(Plan::change(
            format!("{} {}", todo.join(" and "), self.unit),
            vec![Action::run(
                format!("{} {}", todo.join("+"), self.unit),
                script.join("\n"),
            )],
        ))
    }

    fn watches(&self) -> Vec<String> {
        self.reload_on.clone()
    }

    fn on_watched_change(&self) -> Vec<Action> {
        if !self.running {
            return Vec::new();
        }
        let verb = if self.restart_on_change {
            "restart"
        } else {
            "reload-or-restart"
        };
        vec![Action::run(
            format!("{verb} {}", self.unit),
            format!("systemctl {verb} {}", quote(&self.unit)),
        )]
    }
}
