//! `provision certs ...`: arguments to [`jobs::certs`], and what comes back printed.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;

use certs::LOCAL_CONFIG_DIR;
use common::engine::Mode;
use common::report::{exit_code, exit_code_for};
use jobs::certs::{self as job, CertificateRun, Trigger};

use crate::cli::{CertsCommand, Format, Global};
use crate::output::{self, emit};

pub(crate) async fn run(g: &Global, cmd: &CertsCommand) -> anyhow::Result<i32> {
    let session = crate::session(g);
    match cmd {
        CertsCommand::Issue { check } => obtain(g, Trigger::Issue, Mode::check_if(*check)).await,
        CertsCommand::Renew {
            force,
            check,
            local: false,
            ..
        } => obtain(g, Trigger::Renew { force: *force }, Mode::check_if(*check)).await,
        CertsCommand::Renew {
            force,
            check,
            local: true,
            config_dir,
        } => {
            let dir = config_dir.as_deref().unwrap_or(Path::new(LOCAL_CONFIG_DIR));
            let runs = job::renew_local(&session, dir, *force, Mode::check_if(*check)).await?;
            if runs.is_empty() && g.format == Format::Text {
                println!("no certificate declarations in {}", dir.display());
                return Ok(exit_code::CONVERGED);
            }
            Ok(print_runs(&runs, Mode::check_if(*check), g.format))
        }
        CertsCommand::Status => {
            let use_inventory = g.inventory.is_some() || g.inventory_path().exists();
            let (state, rows) = job::status(&session, use_inventory)?;
            let json = || serde_json::json!({ "state_dir": state.root(), "certificates": rows });
            emit(g.format, json, || job::status_text(&state, &rows));
            Ok(exit_code::CONVERGED)
        }
        CertsCommand::Revoke { reason } => {
            let reason = reason.as_deref().and_then(job::revocation_reason);
            let results = job::revoke(&session, reason).await?;
            let code = job::revocations_exit_code(&results);
            let json = || serde_json::json!({ "exit_code": code, "certificates": results });
            emit(g.format, json, || job::revocations_text(&results));
            Ok(code)
        }
        CertsCommand::Schedule {
            install_binary,
            check,
        } => {
            let (progress, mode) = (output::progress(g.format), Mode::check_if(*check));
            let done = job::schedule(&session, *install_binary, mode, progress).await?;
            done.warnings.iter().for_each(|w| eprintln!("warning: {w}"));
            output::print_reports(&done.reports, mode, g.format);
            if g.format == Format::Text {
                print!("{}", done.cron_note());
            }
            Ok(exit_code_for(&done.reports))
        }
    }
}

/// `issue` and `renew` from this machine, over SSH.
async fn obtain(g: &Global, trigger: Trigger, mode: Mode) -> anyhow::Result<i32> {
    let progress = output::progress(g.format);
    let runs = job::obtain(&crate::session(g), trigger, mode, progress).await?;
    Ok(print_runs(&runs, mode, g.format))
}

/// Print the runs; their exit code.
fn print_runs(runs: &[CertificateRun], mode: Mode, format: Format) -> i32 {
    let json = || job::runs_json(runs, mode);
    emit(format, json, || job::runs_text(runs, mode));
    job::runs_exit_code(runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_timer_command_line_parses() {
        // Exactly what the service unit runs (certs/src/templates/provision-certs-renew.service.j2).
        let unit = certs::service_unit(&certs::ScheduleOptions::default()).unwrap();
        let exec = unit
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .expect("ExecStart");
        let args: Vec<&str> = exec.split_whitespace().collect();
        assert_eq!(args[0], "/usr/local/bin/provision");
        let cli = crate::cli::Cli::try_parse_from(args).unwrap();
        match cli.command {
            crate::cli::Command::Certs(CertsCommand::Renew {
                local: true,
                force: false,
                check: false,
                config_dir: Some(dir),
            }) => assert_eq!(dir, Path::new(certs::LOCAL_CONFIG_DIR)),
            other => panic!("{other:?}"),
        }
        // The cron line runs the same command.
        let cron = certs::cron_line(&certs::ScheduleOptions::default());
        assert!(cron.contains(&exec.to_string()), "{cron}");
    }
}
