//! `provision certs ...`: arguments to [`jobs::certs`], and what comes back printed.
#![allow(clippy::print_stdout)]

use std::path::Path;

use common::engine::Mode;
use common::report::{exit_code, exit_code_for, mode_name, render_host};
use jobs::certs::{self as job, CertificateRun, Trigger};

use crate::cli::{CertsCommand, Format, Global, RevokeReason};
use crate::output;

pub async fn run(g: &Global, cmd: &CertsCommand) -> anyhow::Result<i32> {
    let mode = |check: bool| if check { Mode::Check } else { Mode::Apply };
    let session = crate::session(g);
    match cmd {
        CertsCommand::Issue { check } => obtain(g, Trigger::Issue, mode(*check)).await,
        CertsCommand::Renew {
            force,
            check,
            local: false,
            ..
        } => obtain(g, Trigger::Renew { force: *force }, mode(*check)).await,
        CertsCommand::Renew {
            force,
            check,
            local: true,
            config_dir,
        } => {
            let dir = config_dir.as_deref();
            let dir = dir.unwrap_or(Path::new(certs::schedule::LOCAL_CONFIG_DIR));
            let runs = job::renew_local(&session, dir, *force, mode(*check)).await?;
            if runs.is_empty() && g.format == Format::Text {
                println!("no certificate declarations in {}", dir.display());
                return Ok(exit_code::CONVERGED);
            }
            print_runs(&runs, mode(*check), g.format);
            Ok(job::runs_exit_code(&runs))
        }
        CertsCommand::Status => status(g),
        CertsCommand::Revoke { reason } => revoke(g, *reason).await,
        CertsCommand::Schedule {
            install_binary,
            check,
        } => {
            let progress = output::progress(g.format);
            let done = job::schedule(&session, *install_binary, mode(*check), progress).await?;
            for w in &done.warnings {
                output::warning(w);
            }
            output::print_reports(&done.reports, mode(*check), g.format);
            if g.format == Format::Text {
                println!(
                    "# Without systemd, the same renewal as a cron entry (e.g. /etc/cron.d/provision-certs):\n# {}",
                    done.cron_line
                );
            }
            Ok(exit_code_for(&done.reports))
        }
    }
}

/// `issue` and `renew` from this machine, over SSH.
async fn obtain(g: &Global, trigger: Trigger, mode: Mode) -> anyhow::Result<i32> {
    let progress = output::progress(g.format);
    let runs = job::obtain(&crate::session(g), trigger, mode, progress).await?;
    print_runs(&runs, mode, g.format);
    Ok(job::runs_exit_code(&runs))
}

fn print_runs(runs: &[CertificateRun], mode: Mode, format: Format) {
    if format == Format::Json {
        output::print_json(&serde_json::json!({
            "mode": mode_name(mode),
            "exit_code": job::runs_exit_code(runs),
            "certificates": runs,
        }));
        return;
    }
    for r in runs {
        println!("{}", r.line());
        if let Some(install) = &r.install {
            print!("{}", render_host(install, mode));
        }
    }
    println!("{}", job::runs_summary(runs));
}

/// `status`: with an inventory, its selected hosts' declarations; without, all stored.
fn status(g: &Global) -> anyhow::Result<i32> {
    let use_inventory = g.inventory.is_some() || g.inventory_path().exists();
    let (state, rows) = job::status(&crate::session(g), use_inventory)?;
    if g.format == Format::Json {
        output::print_json(&serde_json::json!({
            "state_dir": state.root(),
            "certificates": rows,
        }));
    } else if rows.is_empty() {
        let dir = state.root().display();
        println!("no certificates (state directory {dir})");
    } else {
        print!("{}", certs::render_table(&rows));
    }
    Ok(exit_code::CONVERGED)
}

fn revocation_reason(r: RevokeReason) -> certs::RevocationReason {
    match r {
        RevokeReason::Unspecified => certs::RevocationReason::Unspecified,
        RevokeReason::KeyCompromise => certs::RevocationReason::KeyCompromise,
        RevokeReason::AffiliationChanged => certs::RevocationReason::AffiliationChanged,
        RevokeReason::Superseded => certs::RevocationReason::Superseded,
        RevokeReason::CessationOfOperation => certs::RevocationReason::CessationOfOperation,
    }
}

/// `revoke`: at the CA, from this machine's state (no SSH).
async fn revoke(g: &Global, reason: Option<RevokeReason>) -> anyhow::Result<i32> {
    let reason = reason.map(revocation_reason);
    let results = job::revoke(&crate::session(g), reason).await?;
    let code = if results.iter().all(|r| r.revoked) {
        exit_code::CONVERGED
    } else {
        exit_code::FAILED
    };
    if g.format == Format::Json {
        output::print_json(&serde_json::json!({ "exit_code": code, "certificates": results }));
        return Ok(code);
    }
    for r in &results {
        println!("{}", r.line());
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_timer_command_line_parses() {
        // Exactly what the service unit runs (certs/src/templates/provision-certs-renew.service.j2).
        let unit = certs::schedule::service_unit(&certs::ScheduleOptions::default()).unwrap();
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
            }) => assert_eq!(dir, Path::new(certs::schedule::LOCAL_CONFIG_DIR)),
            other => panic!("{other:?}"),
        }
        // The cron line runs the same command.
        let cron = certs::cron_line(&certs::ScheduleOptions::default());
        assert!(cron.contains(&exec.to_string()), "{cron}");
    }

    #[test]
    fn config_dir_needs_local() {
        let e = crate::cli::Cli::try_parse_from([
            "provision",
            "certs",
            "renew",
            "--config-dir",
            "/etc/provision/certs",
        ])
        .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }
}
