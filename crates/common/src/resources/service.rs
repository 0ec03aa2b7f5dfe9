use crate::facts::builtin::UnitState;
use crate::facts::{Fact, Facts, Probe};
use crate::resource::PlanError;
use crate::resource::{Action, Plan, Resource, ResourceId};
use crate::shell::quote;

/// A systemd unit: enabled at boot, running, and reloaded (or restarted) when a watched
/// resource changed in the same run.
#[derive(Debug, Clone)]
pub struct Service {
    pub unit: String,
    pub enabled: bool,
    pub running: bool,
    /// Resource ids whose change reloads this unit.
    pub reload_on: Vec<ResourceId>,
    /// Restart instead of reload when a watched resource changes.
    pub restart_on_change: bool,
    /// A watched change restarts (or reloads) the unit only when it is running at plan
    /// time; see [`Service::restart_only_if_running`].
    pub restart_only_if_running: bool,
}

impl Service {
    pub fn running(unit: &str) -> Self {
        Self {
            unit: unit.into(),
            enabled: true,
            running: true,
            reload_on: Vec::new(),
            restart_on_change: false,
            restart_only_if_running: false,
        }
    }

    pub fn reload_on(mut self, ids: impl IntoIterator<Item = ResourceId>) -> Self {
        self.reload_on.extend(ids);
        self
    }

    pub fn restart_on_change(mut self) -> Self {
        self.restart_on_change = true;
        self
    }

    /// A watched change restarts the unit only when it is running (active, or still
    /// activating) at plan time. For a unit whose watched files are written before
    /// anything in this run can start it (its package install): a unit not active at
    /// plan time then starts with them, and a restart would be a second start. Without
    /// the restart the unit's own `systemctl start` stays in its plan, so a unit its
    /// package did not start is started once, after the files. Only for a unit whose
    /// package's own start either reads the files as they will stay or fails (fail2ban,
    /// started before `python3-systemd` is configured, exits and the unit fails: its own
    /// start after the apt step starts it).
    pub fn restart_only_if_running(mut self) -> Self {
        self.restart_only_if_running = true;
        self
    }

    fn fact(&self) -> UnitState {
        UnitState {
            unit: self.unit.clone(),
        }
    }

    /// Whether a watched change in this run (re)starts the unit: it is to run, and, with
    /// [`Service::restart_only_if_running`], it is running at plan time (active, or on
    /// its way: a unit still activating may have read the old files already).
    fn restarted_by_trigger(&self, facts: &Facts) -> Result<bool, PlanError> {
        if !self.running {
            return Ok(false);
        }
        if !self.restart_only_if_running {
            return Ok(true);
        }
        let state = facts.read(&self.fact())?;
        Ok(!matches!(
            state.active_state.as_str(),
            "inactive" | "failed"
        ))
    }
}

impl Service {
    /// The steps that bring the unit to its state; `started_by_trigger`: a triggered
    /// restart follows and starts it, so no start of its own.
    fn plan_units(&self, facts: &Facts, started_by_trigger: bool) -> Result<Plan, PlanError> {
        let state = facts.read(&self.fact())?;
        let u = quote(&self.unit);
        let mut todo = Vec::new();
        let mut script = Vec::new();
        let mut actions = Vec::new();
        // A unit that does not exist yet is usually installed by an earlier step of this
        // run. The engine enables every unit of an apply script at once.
        if self.enabled && !state.is_enabled() {
            todo.push("enable");
            actions.push(Action::EnableUnits {
                units: vec![self.unit.clone()],
            });
        }
        if !self.enabled && state.is_enabled() && state.unit_file_state != "static" {
            todo.push("disable");
            script.push(format!("systemctl disable {u}"));
        }
        if self.running && !state.is_active() {
            todo.push("start");
            if !started_by_trigger {
                script.push(format!("systemctl start {u}"));
            }
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
        let steps = todo
            .iter()
            .filter(|t| **t != "enable")
            .take(script.len())
            .copied()
            .collect::<Vec<_>>();
        if !script.is_empty() {
            actions.push(Action::run(
                format!("{} {}", steps.join("+"), self.unit),
                script.join("\n"),
            ));
        }
        Ok(Plan::change(
            format!("{} {}", todo.join(" and "), self.unit),
            actions,
        ))
    }
}

impl Resource for Service {
    fn id(&self) -> ResourceId {
        ResourceId::service(&self.unit)
    }

    fn probes(&self) -> Vec<Probe> {
        vec![self.fact().probe()]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        self.plan_units(facts, false)
    }

    /// A watched change restarts (or reloads-or-restarts) the unit right after this
    /// plan's steps, and either starts a unit that is not running: a start of its own
    /// would be a second (re)start moments after the first (fail2ban, stopped while
    /// still starting, then hangs in its stop for systemd's whole timeout). A unit the
    /// change does not restart ([`Service::restart_only_if_running`], not running at
    /// plan time) keeps its own start.
    fn plan_when_triggered(&self, facts: &Facts) -> Result<Plan, PlanError> {
        self.plan_units(facts, self.restarted_by_trigger(facts)?)
    }

    fn watches(&self) -> Vec<ResourceId> {
        self.reload_on.clone()
    }

    fn on_watched_change(&self, facts: &Facts) -> Result<Vec<Action>, PlanError> {
        if !self.restarted_by_trigger(facts)? {
            return Ok(Vec::new());
        }
        let verb = if self.restart_on_change {
            "restart"
        } else {
            "reload-or-restart"
        };
        Ok(vec![Action::run(
            format!("{verb} {}", self.unit),
            format!("systemctl {verb} {}", quote(&self.unit)),
        )])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ok;
    use std::collections::BTreeMap;

    fn facts(state: &str) -> Facts {
        unit_facts("fail2ban.service", &format!("LoadState=loaded\n{state}"))
    }

    fn unit_facts(unit: &str, output: &str) -> Facts {
        Facts::from_outputs(BTreeMap::from([(format!("unit:{unit}"), ok(output))]))
    }

    fn scripts(plan: &Plan) -> Vec<String> {
        match plan {
            Plan::Change { actions, .. } => actions
                .iter()
                .map(|a| match a {
                    Action::Run { script, .. } => script.clone(),
                    other => other.describe(),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Issue 14: a unit that a watched change restarts in the same run is started by that
    /// restart, not a moment before it as well.
    #[test]
    fn a_triggered_restart_starts_the_unit_without_a_start_of_its_own() {
        let s = Service::running("fail2ban.service")
            .reload_on([ResourceId::file("/etc/fail2ban/jail.d/provision.local")])
            .restart_on_change();
        let fresh = facts("ActiveState=inactive\nUnitFileState=disabled\n");
        assert_eq!(
            scripts(&s.plan(&fresh).unwrap()),
            [
                "enable fail2ban.service",
                "systemctl start fail2ban.service"
            ]
        );
        let triggered = s.plan_when_triggered(&fresh).unwrap();
        assert!(triggered.is_change());
        assert_eq!(scripts(&triggered), ["enable fail2ban.service"]);
        assert_eq!(
            scripts(&Plan::change("", s.on_watched_change(&fresh).unwrap())),
            ["systemctl restart fail2ban.service"]
        );
        // Failed after its package's own start (enabled): nothing of its own; the restart
        // starts it, and the plan still says so.
        let failed = s
            .plan_when_triggered(&facts("ActiveState=failed\nUnitFileState=enabled\n"))
            .unwrap();
        let Plan::Change { summary, actions } = &failed else {
            panic!("{failed:?}")
        };
        assert_eq!(summary, "start fail2ban.service");
        assert!(actions.is_empty(), "{actions:?}");
        // A unit that is not to run is stopped whatever triggers.
        let stopped = Service {
            running: false,
            ..s.clone()
        };
        let active = facts("ActiveState=active\nUnitFileState=enabled\n");
        assert_eq!(
            scripts(&stopped.plan_when_triggered(&active).unwrap()),
            ["systemctl stop fail2ban.service"]
        );
    }

    /// Issue 14: docker.service reads a daemon.json written before its package install;
    /// a unit not running at plan time starts with it, once: by its package, or by its
    /// own start (kept), never by a restart on top.
    #[test]
    fn restart_only_if_running_restarts_an_active_unit_and_starts_an_inactive_one_once() {
        let s = Service::running("docker.service")
            .reload_on([ResourceId::file("/etc/docker/daemon.json")])
            .restart_on_change()
            .restart_only_if_running();
        // Not installed yet (its package is installed by this run), or installed and
        // stopped: no restart, its own start stays.
        for state in [
            "LoadState=not-found\nActiveState=inactive\nUnitFileState=\n",
            "LoadState=loaded\nActiveState=inactive\nUnitFileState=enabled\n",
            "LoadState=loaded\nActiveState=failed\nUnitFileState=enabled\n",
        ] {
            let f = unit_facts("docker.service", state);
            assert!(s.on_watched_change(&f).unwrap().is_empty(), "{state}");
            let triggered = s.plan_when_triggered(&f).unwrap();
            assert_eq!(triggered, s.plan(&f).unwrap(), "{state}");
            let starts = scripts(&triggered)
                .iter()
                .filter(|s| s.contains("systemctl start docker.service"))
                .count();
            assert_eq!(starts, 1, "{state}: {triggered:?}");
        }
        // Active at plan time: the change restarts it, once, and nothing else starts it.
        let active = unit_facts(
            "docker.service",
            "LoadState=loaded\nActiveState=active\nUnitFileState=enabled\n",
        );
        assert_eq!(
            scripts(&Plan::change("", s.on_watched_change(&active).unwrap())),
            ["systemctl restart docker.service"]
        );
        assert!(!s.plan_when_triggered(&active).unwrap().is_change());
        // Still starting at plan time: it may have read the old file, so it restarts
        // (and the restart is its start).
        let activating = unit_facts(
            "docker.service",
            "LoadState=loaded\nActiveState=activating\nUnitFileState=enabled\n",
        );
        assert_eq!(
            scripts(&Plan::change("", s.on_watched_change(&activating).unwrap())),
            ["systemctl restart docker.service"]
        );
        assert!(scripts(&s.plan_when_triggered(&activating).unwrap()).is_empty());
        // A unit whose state cannot be read fails the plan, never drops the restart.
        assert!(s.on_watched_change(&Facts::default()).is_err());
        // Without the option an inactive unit is still started by the restart alone.
        let plain = Service {
            restart_only_if_running: false,
            ..s.clone()
        };
        let fresh = unit_facts(
            "docker.service",
            "LoadState=not-found\nActiveState=inactive\nUnitFileState=\n",
        );
        assert_eq!(
            scripts(&Plan::change("", plain.on_watched_change(&fresh).unwrap())),
            ["systemctl restart docker.service"]
        );
        assert_eq!(
            scripts(&plain.plan_when_triggered(&fresh).unwrap()),
            ["enable docker.service"]
        );
    }
}
