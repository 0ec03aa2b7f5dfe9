//! `provision lab ...`: wiring of the `lab` crate into the CLI.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::Instant;

use common::engine::Mode;
use common::inventory::Inventory;
use common::report::{HostOutcome, ResourceStatus, exit_code_for};

use crate::cli::{Global, LabCommand};
use crate::{job, output};

/// Vars of the demo job (the seeds/002 host), appended to the lab's inventory.
const DEMO_VARS: &str = include_str!("demo-vars.toml");

pub async fn run(g: &Global, cmd: &LabCommand) -> anyhow::Result<i32> {
    let lab = lab::Lab::open_default()?;
    match cmd {
        LabCommand::Up { count } => {
            ensure_tools()?;
            let started = Instant::now();
            let hosts = tokio::task::block_in_place(|| lab.up(*count))?;
            for h in &hosts {
                println!(
                    "{}  {}  ssh: provision lab ssh {}",
                    h.name, h.address, h.name
                );
            }
            println!(
                "{} host(s) ready in {:.1}s; inventory: {}",
                hosts.len(),
                started.elapsed().as_secs_f64(),
                lab.inventory_path().display()
            );
            Ok(0)
        }
        LabCommand::Down => {
            let r = tokio::task::block_in_place(|| lab.down())?;
            if r.is_empty() {
                println!("nothing to tear down");
            } else {
                println!(
                    "removed hosts: {}; stopped PIDs: {:?}; interfaces: {}; NAT rule removed: {}",
                    r.hosts_removed.join(" "),
                    r.processes_stopped,
                    r.interfaces_removed.join(" "),
                    r.nat_rule_removed
                );
            }
            Ok(0)
        }
        LabCommand::Status => {
            let hosts = lab.status()?;
            if hosts.is_empty() {
                println!("no lab hosts");
            }
            for h in hosts {
                println!(
                    "{:<8} {:<12} {:?} ssh:{} nspawn pid {}",
                    h.name,
                    h.address
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| "-".into()),
                    h.state,
                    if h.ssh_port_open { "open" } else { "closed" },
                    h.nspawn_pid
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "-".into())
                );
            }
            Ok(0)
        }
        LabCommand::Ssh { host, command } => {
            let mut ssh = lab.ssh_command(host)?;
            ssh.args(command);
            let status = ssh.status()?;
            Ok(status.code().unwrap_or(1))
        }
        LabCommand::Demo { keep } => demo(g, &lab, *keep).await,
    }
}

/// One host, the full job, then a second run that must change nothing.
async fn demo(g: &Global, lab: &lab::Lab, keep: bool) -> anyhow::Result<i32> {
    ensure_tools()?;
    let started = Instant::now();
    let host = tokio::task::block_in_place(|| lab.create_host())?;
    println!(
        "lab host {} at {} ready in {:.1}s",
        host.name,
        host.address,
        started.elapsed().as_secs_f64()
    );
    let result = demo_runs(g, lab, &host).await;
    if !keep {
        tokio::task::block_in_place(|| lab.destroy_host(&host.name))?;
        println!("lab host {} destroyed", host.name);
    }
    result
}

async fn demo_runs(g: &Global, lab: &lab::Lab, host: &lab::LabHost) -> anyhow::Result<i32> {
    let _ = lab;
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
    let inventory = Inventory::parse("<demo inventory>", &text, None)
        .map_err(|e| output::inventory_error(*e))?;
    let hosts = inventory.hosts.clone();

    println!("\n# first run: provision up");
    let first =
        crate::converge_hosts(g, hosts.clone(), Mode::Apply, job::Job::new(job::Set::All)).await;
    output::print_reports(&first, Mode::Apply, g.format);
    if exit_code_for(&first) != 0 {
        return Ok(exit_code_for(&first));
    }
    println!("\n# second run: provision up (must change nothing)");
    let second = crate::converge_hosts(g, hosts, Mode::Apply, job::Job::new(job::Set::All)).await;
    output::print_reports(&second, Mode::Apply, g.format);
    let changed: usize = second
        .iter()
        .map(|r| r.count(ResourceStatus::Changed))
        .sum();
    if second.iter().any(|r| r.outcome != HostOutcome::Converged) || changed > 0 {
        eprintln!("demo: the second run was not a no-op ({changed} change(s))");
        return Ok(1);
    }
    println!(
        "\ndemo: converged; second run made 0 changes in {} round trip(s)",
        second.iter().map(|r| r.round_trips).sum::<u32>()
    );
    Ok(0)
}

/// Install the lab's missing Debian packages (saying so), or explain why not.
fn ensure_tools() -> anyhow::Result<()> {
    let installed = lab::Lab::ensure_tools()?;
    if !installed.is_empty() {
        println!("installed the lab's packages: {}", installed.join(" "));
    }
    Ok(())
}
