//! `provision lab …`: the demo (the full job on one lab host, then a second run that must
//! change nothing) and the lab's reports as text.

use std::path::Path;
use std::sync::Arc;

use common::engine::Mode;
use common::inventory::Inventory;
use common::report::{HostOutcome, HostReport, ResourceStatus, exit_code_for};
use common::run::Progress;

use crate::{Job, JobError, Session, Set, converge_hosts};

/// `lab up`: one line per host (OS and login), the running hosts the lab's login no
/// longer works for (kept), then how long it took and where the inventory is.
pub fn up_text(report: &lab::UpReport, elapsed: std::time::Duration, inventory: &Path) -> String {
    let mut out: String = report
        .hosts
        .iter()
        .map(|h| {
            let restarted = match report.restarted.contains(&h.name) {
                true => "  (booted again from its disk: it had rebooted or stopped)",
                false => "",
            };
            format!(
                "{}  {}  {:<12}  {}@  ssh: provision lab ssh {}{restarted}\n",
                h.name, h.address, h.os, h.user, h.name
            )
        })
        .collect();
    for (name, why) in &report.unreachable {
        out.push_str(&format!(
            "{name}  kept: the lab's login is refused (hardened?); it stays in the inventory, \
             `provision lab down` removes it\n  {}\n",
            why.lines().next().unwrap_or_default()
        ));
    }
    out.push_str(&format!(
        "{} host(s) ready in {:.1}s; inventory: {}\n",
        report.hosts.len(),
        elapsed.as_secs_f64(),
        inventory.display()
    ));
    out
}

/// `lab images`: each image, built now (and how long it took) or cached.
pub fn images_text(images: &[lab::BaseImage]) -> String {
    images
        .iter()
        .map(|i| {
            let how = match i.build_time {
                Some(t) if i.freshly_built => format!("built in {:.0}s", t.as_secs_f64()),
                _ => "cached".to_string(),
            };
            format!("{:<12}  {how}  {}\n", i.os.name(), i.path.display())
        })
        .collect()
}

/// The OSes `lab images` builds: those asked for, or all of them.
pub fn images_wanted(asked: &[lab::Os]) -> Vec<lab::Os> {
    if asked.is_empty() {
        lab::Os::ALL.to_vec()
    } else {
        asked.to_vec()
    }
}

/// `lab demo`: the host it created.
pub fn host_ready_text(host: &lab::LabHost, elapsed: std::time::Duration) -> String {
    format!(
        "lab host {} ({}, login {}) at {} ready in {:.1}s",
        host.name,
        host.os,
        host.user,
        host.address,
        elapsed.as_secs_f64()
    )
}

/// `lab down`: what was removed.
pub fn down_text(r: &lab::DownReport) -> String {
    if r.is_empty() {
        return "nothing to tear down\n".into();
    }
    format!(
        "removed hosts: {}; stopped PIDs: {:?}; interfaces: {}; NAT rule removed: {}\n",
        r.hosts_removed.join(" "),
        r.processes_stopped,
        r.interfaces_removed.join(" "),
        r.nat_rule_removed
    )
}

/// `lab status`: one line per host.
pub fn status_text(hosts: &[lab::HostStatus]) -> String {
    if hosts.is_empty() {
        return "no lab hosts\n".into();
    }
    let dash = || "-".to_string();
    hosts
        .iter()
        .map(|h| {
            format!(
                "{:<8} {:<12} {:<12} {:<8} {:?} ssh:{} nspawn pid {}\n",
                h.name,
                h.address.map(|a| a.to_string()).unwrap_or_else(dash),
                h.spec.map(|s| s.os.to_string()).unwrap_or_else(dash),
                h.spec
                    .map(|s| s.login.user(s.os).to_string())
                    .unwrap_or_else(dash),
                h.state,
                if h.ssh_port_open { "open" } else { "closed" },
                h.nspawn_pid.map(|p| p.to_string()).unwrap_or_else(dash)
            )
        })
        .collect()
}

/// Vars of the demo job (the seeds/002 host), appended to the lab's inventory.
const DEMO_VARS: &str = include_str!("demo-vars.toml");

/// Which of the two runs a report is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoRun {
    First,
    Second,
}

impl DemoRun {
    /// The heading printed above the run's reports.
    pub fn title(self) -> &'static str {
        match self {
            DemoRun::First => "first run: provision up",
            DemoRun::Second => "second run: provision up (must change nothing)",
        }
    }
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

impl DemoOutcome {
    pub fn exit_code(&self) -> i32 {
        match self {
            DemoOutcome::FirstFailed(code) => *code,
            DemoOutcome::NotANoop { .. } => common::report::exit_code::FAILED,
            DemoOutcome::Converged { .. } => common::report::exit_code::CONVERGED,
        }
    }

    /// What the second run showed.
    pub fn verdict(&self) -> String {
        match self {
            DemoOutcome::FirstFailed(code) => format!("the first run failed (exit {code})"),
            DemoOutcome::NotANoop { changes } => {
                format!("the second run was not a no-op ({changes} change(s))")
            }
            DemoOutcome::Converged { round_trips } => {
                format!("converged; second run made 0 changes in {round_trips} round trip(s)")
            }
        }
    }
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
