//! Reboots when updates need them: whether one is due now (pure, shared by `check`'s
//! report here and `up`'s reboot step in `jobs`), and the `reboot-required` resource that
//! reports it from the one fact round trip.

use common::inventory::{RebootPolicy, Vars};
use common::resource::ResourceId;
use common::values::TimeWindow;
use common::{Fact, Facts, Plan, PlanError, Probe, Resource};

use crate::facts::{REBOOT_REQUIRED, RebootState, RebootStateValue};

/// What the facts and the inventory say about rebooting now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    NotRequired,
    /// Required, and not allowed now: why (a note).
    NotNow(String),
    /// Required and allowed: the reason shown (which packages).
    Reboot(String),
}

/// Pure: the decision for `state` under the host's `policy` and `window`.
pub fn decide(
    policy: RebootPolicy,
    window: Option<TimeWindow>,
    state: &RebootStateValue,
) -> Decision {
    if state.required_since.is_none() {
        return Decision::NotRequired;
    }
    let by = match state.packages.as_slice() {
        [] => format!("{REBOOT_REQUIRED} exists"),
        packages => format!("required by {}", packages.join(", ")),
    };
    match (policy, window) {
        (RebootPolicy::Never, _) => Decision::NotNow(format!(
            "a reboot is required ({by}); reboot = \"never\": reboot it yourself, or set reboot = \"if-required\""
        )),
        (RebootPolicy::IfRequired, Some(w)) if !w.contains(state.local_minute) => {
            Decision::NotNow(format!(
                "a reboot is required ({by}); not now: the host's time {:02}:{:02} is outside reboot_window {w}",
                state.local_minute / 60,
                state.local_minute % 60
            ))
        }
        (RebootPolicy::IfRequired, _) => Decision::Reboot(by),
    }
}

/// Reports whether the host waits for a reboot (a note naming the packages, and what `up`
/// does about it); never a change: `up`'s reboot step reboots.
#[derive(Debug, Clone)]
pub struct RebootRequired {
    pub policy: RebootPolicy,
    pub window: Option<TimeWindow>,
}

/// The host's `reboot_window`, typed (checked when the inventory loads; a value that
/// skipped those checks and does not parse allows no reboot, never every time).
pub fn window_of(vars: &Vars) -> Result<Option<TimeWindow>, String> {
    vars.reboot_window
        .as_deref()
        .map(TimeWindow::parse)
        .transpose()
}

impl RebootRequired {
    pub fn of(vars: &Vars) -> Self {
        Self {
            policy: vars.reboot.unwrap_or_default(),
            window: window_of(vars).unwrap_or(Some(TimeWindow::NEVER)),
        }
    }
}

impl Resource for RebootRequired {
    fn id(&self) -> ResourceId {
        ResourceId::named("reboot-required")
    }

    fn probes(&self) -> Vec<Probe> {
        vec![RebootState.probe()]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let state = facts.read(&RebootState)?;
        Ok(Plan::noop(match state.required_since {
            None => "no reboot required".to_string(),
            Some(_) => format!("{REBOOT_REQUIRED} exists"),
        }))
    }

    fn notes(&self, facts: &Facts) -> Vec<String> {
        let Ok(state) = facts.read(&RebootState) else {
            return Vec::new();
        };
        match decide(self.policy, self.window, &state) {
            Decision::NotRequired => Vec::new(),
            Decision::NotNow(why) => vec![why],
            Decision::Reboot(by) => vec![format!(
                "a reboot is required ({by}): `up` reboots the host at the end of its run (reboot = \"if-required\")"
            )],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(required: bool, packages: &[&str], minute: u16) -> RebootStateValue {
        RebootStateValue {
            required_since: required.then_some(1_764_547_200),
            packages: packages.iter().map(|p| p.to_string()).collect(),
            boot_id: "b1".into(),
            local_minute: minute,
            reboot_token: None,
        }
    }

    #[test]
    fn a_reboot_happens_only_when_required_allowed_and_inside_the_window() {
        let night = TimeWindow::parse("02:00-04:00").ok();
        let at_three = state(true, &["linux-image-amd64"], 180);
        assert_eq!(
            decide(RebootPolicy::IfRequired, night, &at_three),
            Decision::Reboot("required by linux-image-amd64".into())
        );
        assert_eq!(
            decide(RebootPolicy::IfRequired, None, &state(true, &[], 720)),
            Decision::Reboot(format!("{REBOOT_REQUIRED} exists"))
        );
        let Decision::NotNow(why) = decide(RebootPolicy::IfRequired, night, &state(true, &[], 720))
        else {
            panic!("noon is outside 02:00-04:00")
        };
        assert!(
            why.contains("12:00 is outside reboot_window 02:00-04:00"),
            "{why}"
        );
        let Decision::NotNow(why) = decide(RebootPolicy::Never, None, &at_three) else {
            panic!("never means never")
        };
        assert!(
            why.contains("linux-image-amd64") && why.contains("reboot = \"never\""),
            "{why}"
        );
        assert_eq!(
            decide(RebootPolicy::IfRequired, None, &state(false, &[], 180)),
            Decision::NotRequired
        );
        // A window that did not parse (the load refuses it) allows no reboot.
        assert!(matches!(
            decide(RebootPolicy::IfRequired, Some(TimeWindow::NEVER), &at_three),
            Decision::NotNow(_)
        ));
    }
}
