//! `provision`: argument parsing and output wiring only. The work happens in the library
//! crates: [`jobs`] (what each command does, over the one runner), and below it `common`
//! (engine), `hardening`, `certs`, `app`, `lab`.

#![deny(unreachable_pub)]

mod certs_cmd;
mod cli;
mod lab_cmd;
mod output;

use std::process::ExitCode;

use clap::CommandFactory;
use clap::Parser as _;
use common::report::exit_code::FAILED;
use common::report::exit_code_for;
use jobs::Session;

use cli::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    // A usage error is bad input like any other: exit 1 (2 means "changes pending").
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            let code = if e.use_stderr() { FAILED } else { 0 };
            return ExitCode::from(code as u8);
        }
    };
    let format = cli.global.format;
    output::init_tracing(cli.global.verbose);
    match dispatch(cli).await {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            output::error(&e, format);
            ExitCode::from(FAILED as u8)
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let g = &cli.global;
    match &cli.command {
        Command::Up { rotate_secret } => {
            let rotate = rotate_secret.clone();
            converge(g, jobs::Command::Up { rotate }).await
        }
        Command::Check => converge(g, jobs::Command::Check).await,
        Command::Harden { check } => converge(g, jobs::Command::Harden { check: *check }).await,
        Command::Facts => {
            let all = jobs::facts(&session(g)).await?;
            output::print_json(&jobs::facts_json(&all));
            Ok(jobs::facts_exit_code(&all))
        }
        Command::Lab(cmd) => lab_cmd::run(g, cmd).await,
        Command::Certs(cmd) => certs_cmd::run(g, cmd).await,
        Command::Completions { shell } => {
            let (cmd, out) = (&mut Cli::command(), &mut std::io::stdout());
            clap_complete::generate(*shell, cmd, "provision", out);
            Ok(0)
        }
    }
}

/// The session every command runs with: the flags, and SSH as the transport.
pub(crate) fn session(g: &cli::Global) -> Session {
    let mut session = Session::over_ssh(g.inventory_path(), g.accept_new_host_keys);
    session.limit = g.limit.clone();
    session.strict = g.strict;
    session.run.forks = g.forks;
    session.run.engine.rollback_window = std::time::Duration::from_secs(g.rollback_window);
    session
}

/// `up`, `check`, `harden`: converge (or check) every selected host.
async fn converge(g: &cli::Global, command: jobs::Command) -> anyhow::Result<i32> {
    let progress = output::progress(g.format);
    let reports = jobs::run(&session(g), &command, progress).await?;
    output::print_reports(&reports, command.mode(), g.format);
    Ok(exit_code_for(&reports))
}
