//! `provision lab ...`: wiring of the `lab` crate into the CLI.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::Instant;

use common::engine::Mode;
use jobs::lab::{DemoOutcome, DemoRun, down_text, status_text, up_text};

use crate::cli::{Global, LabCommand};
use crate::output;

pub(crate) async fn run(g: &Global, cmd: &LabCommand) -> anyhow::Result<i32> {
    let lab = lab::Lab::open_default()?;
    match cmd {
        LabCommand::Up { count, spec } => {
            ensure_tools()?;
            let started = Instant::now();
            let report = tokio::task::block_in_place(|| lab.up(*count, host_spec(spec)))?;
            let inventory = lab.inventory_path();
            print!("{}", up_text(&report, started.elapsed(), &inventory));
            Ok(0)
        }
        LabCommand::Images { os } => {
            ensure_tools()?;
            let wanted = jobs::lab::images_wanted(os);
            let images = tokio::task::block_in_place(|| lab.ensure_images(&wanted))?;
            print!("{}", jobs::lab::images_text(&images));
            Ok(0)
        }
        LabCommand::Down => {
            let removed = tokio::task::block_in_place(|| lab.down())?;
            print!("{}", down_text(&removed));
            Ok(0)
        }
        LabCommand::Status => {
            print!("{}", status_text(&lab.status()?));
            Ok(0)
        }
        LabCommand::Ssh { host, command } => {
            let status = lab.ssh_command(host)?.args(command).status()?;
            Ok(status.code().unwrap_or(1))
        }
        LabCommand::Demo { keep, spec } => demo(g, &lab, *keep, host_spec(spec)).await,
    }
}

fn host_spec(s: &crate::cli::LabSpec) -> lab::HostSpec {
    lab::HostSpec {
        os: s.os,
        login: s.login,
    }
}

/// One host, the full job, then a second run that must change nothing.
async fn demo(g: &Global, lab: &lab::Lab, keep: bool, spec: lab::HostSpec) -> anyhow::Result<i32> {
    ensure_tools()?;
    let started = Instant::now();
    let host = tokio::task::block_in_place(|| lab.create_host(spec))?;
    println!("{}", jobs::lab::host_ready_text(&host, started.elapsed()));
    let result = demo_runs(g, &host).await;
    if !keep {
        tokio::task::block_in_place(|| lab.destroy_host(&host.name))?;
        println!("lab host {} destroyed", host.name);
    }
    result
}

async fn demo_runs(g: &Global, host: &lab::LabHost) -> anyhow::Result<i32> {
    let show = |run: DemoRun, reports: &[_]| {
        println!("\n# {}", run.title());
        output::print_reports(reports, Mode::Apply, g.format);
    };
    let progress = || output::progress(g.format);
    let outcome = jobs::lab::demo(&crate::session(g), host, progress, show).await?;
    match &outcome {
        DemoOutcome::FirstFailed(_) => {}
        DemoOutcome::NotANoop { .. } => eprintln!("demo: {}", outcome.verdict()),
        DemoOutcome::Converged { .. } => println!("\ndemo: {}", outcome.verdict()),
    }
    Ok(outcome.exit_code())
}

/// Install the lab's missing Debian packages (saying so), or explain why not.
fn ensure_tools() -> anyhow::Result<()> {
    let installed = lab::Lab::ensure_tools()?;
    if !installed.is_empty() {
        println!("installed the lab's packages: {}", installed.join(" "));
    }
    Ok(())
}
