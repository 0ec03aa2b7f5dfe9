//! `provision lab demo`: the full job on one lab host, then a second run that must change
//! nothing.

use std::sync::Arc;

use common::engine::Mode;
use common::inventory::Inventory;
use common::report::{HostOutcome, HostReport, ResourceStatus, exit_code_for};
use common::run::Progress;

use crate::{Job, JobError, Session, Set, converge_hosts};

/// Vars of the demo job (the seeds/002 host), appended to the lab's inventory.
const DEMO_VARS: &str = include_str!("demo-vars.toml");

/// Which of the two runs a report is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoRun {
    First,
    Second,
}

/// How the demo ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DemoOutcome {
    /// The first run failed (with this exit code); there was no second run.
    FirstFailed(i32),
    /// The second run changed something or did not converge.
    NotANoop { changes: usize },
    /// Both converged and the second run changed nothing.
    Converged { round_trips: u32 },
}

/// The inventory of one lab host with the demo vars.
pub fn inventory(host: &lab::LabHost) -> Result<Inventory, JobError> {
    let text = format!(
        "[defaults]\nuser = {:?}\nport = {}\nidentity_file = {:?}\nknown_hosts = {:?}\n\n\
         [hosts.{}]\naddress = \"{}\"\n\n{DEMO_VARS}",
        host.user,
        host.port,
        host.identity_file.display().to_string(),
        host.known_hosts.display().to_string(),
        host.name,
        host.address
    );
    Inventory::parse("<demo inventory>", &text, None).map_err(JobError::Inventory)
}

/// Both runs on `host`; `show` sees each run's reports as soon as it ends.
pub async fn demo(
    session: &Session,
    host: &lab::LabHost,
    progress: impl Fn() -> Arc<dyn Progress>,
    show: impl Fn(DemoRun, &[HostReport]),
) -> Result<DemoOutcome, JobError> {
    let hosts = inventory(host)?.hosts;
    let all = || Job::new(Set::All);
    let first = converge_hosts(session, hosts.clone(), Mode::Apply, all(), progress()).await;
    show(DemoRun::First, &first);
    if exit_code_for(&first) != 0 {
        return Ok(DemoOutcome::FirstFailed(exit_code_for(&first)));
    }
    let second = converge_hosts(session, hosts, Mode::Apply, all(), progress()).await;
    show(DemoRun::Second, &second);
    Ok(verdict(&second))
}

/// Whether a second run was the no-op it must be.
fn verdict(second: &[HostReport]) -> DemoOutcome {
    let changes: usize = second
        .iter()
        .map(|r| r.count(ResourceStatus::Changed))
        .sum();
    if second.iter().any(|r| r.outcome != HostOutcome::Converged) || changes > 0 {
        DemoOutcome::NotANoop { changes }
    } else {
        let round_trips = second.iter().map(|r| r.round_trips).sum();
        DemoOutcome::Converged { round_trips }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_run_that_changed_something_is_not_a_noop() {
        let mut changed = HostReport::new("lab1");
        changed.outcome = HostOutcome::Changed;
        assert_eq!(
            verdict(&[changed]),
            DemoOutcome::NotANoop { changes: 0 },
            "a host that changed fails the demo even with no changed resource counted"
        );
        let mut quiet = HostReport::new("lab1");
        quiet.round_trips = 3;
        assert_eq!(verdict(&[quiet]), DemoOutcome::Converged { round_trips: 3 });
    }
}
