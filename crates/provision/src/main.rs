//! `provision`: argument parsing and output wiring only. The work happens in the library
//! crates (`common` engine, `hardening`, `certs`, `app`, `lab`).

mod certs_cmd;
mod cli;
mod job;
mod lab_cmd;
mod output;

use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser};
use common::engine::Mode;
use common::inventory::{HostSpec, Inventory};
use common::report::{HostReport, exit_code_for};
use common::run::{self, RunOptions};
use common::transport::ssh::{HostKeyPolicy, SshTransport};

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    output::init_tracing(cli.global.verbose, cli.global.format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            output::error(&e);
            ExitCode::from(common::report::exit_code::FAILED as u8)
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let g = &cli.global;
    match &cli.command {
        Command::Up { rotate_secret } => {
            let mut job = job::Job::new(job::Set::All);
            job.rotate = rotate_secret.clone();
            converge(g, Mode::Apply, job).await
        }
        Command::Check => converge(g, Mode::Check, job::Job::new(job::Set::All)).await,
        Command::Harden { check } => {
            let mode = if *check { Mode::Check } else { Mode::Apply };
            converge(g, mode, job::Job::new(job::Set::Hardening)).await
        }
        Command::Facts => facts(g).await,
        Command::Lab(cmd) => lab_cmd::run(g, cmd).await,
        Command::Certs(cmd) => certs_cmd::run(g, cmd).await,
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "provision",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
    }
}

fn load_hosts(g: &cli::Global) -> anyhow::Result<Vec<HostSpec>> {
    let path = g.inventory_path();
    let inventory = Inventory::load(&path).map_err(|e| output::inventory_error(*e))?;
    let hosts = inventory
        .select(g.limit.as_deref())
        .map_err(anyhow::Error::msg)?;
    if hosts.is_empty() {
        anyhow::bail!("no hosts selected in {}", path.display());
    }
    Ok(hosts.into_iter().cloned().collect())
}

fn run_options(g: &cli::Global, mode: Mode) -> RunOptions {
    RunOptions {
        forks: g.forks,
        host_key_policy: if g.accept_new_host_keys {
            HostKeyPolicy::AcceptNew
        } else {
            HostKeyPolicy::Strict
        },
        engine: common::engine::Options {
            mode,
            rollback_window: std::time::Duration::from_secs(g.rollback_window),
            ..Default::default()
        },
    }
}

/// `up`, `check`, `harden`: converge (or check) every selected host.
pub(crate) async fn converge(
    g: &cli::Global,
    mode: Mode,
    mut job: job::Job,
) -> anyhow::Result<i32> {
    let hosts = load_hosts(g)?;
    job.strict = g.strict;
    job.base_dir = g.inventory_path().parent().map(|p| p.to_path_buf());
    let reports = converge_hosts(g, hosts, mode, job).await;
    output::print_reports(&reports, mode, g.format);
    Ok(exit_code_for(&reports))
}

pub(crate) async fn converge_hosts(
    g: &cli::Global,
    hosts: Vec<HostSpec>,
    mode: Mode,
    job: job::Job,
) -> Vec<HostReport> {
    let progress: Arc<dyn run::Progress> = output::progress(g.format, hosts.len());
    run::run_over_ssh(
        hosts,
        move |spec| job.resources(spec),
        &run_options(g, mode),
        progress,
    )
    .await
}

/// `facts`: what the job's probes read on each host, as JSON.
async fn facts(g: &cli::Global) -> anyhow::Result<i32> {
    let hosts = load_hosts(g)?;
    let options = run_options(g, Mode::Check);
    let mut all = serde_json::Map::new();
    let mut failed = false;
    for spec in hosts {
        let resources = job::Job::new(job::Set::All)
            .resources(&spec)
            .map_err(anyhow::Error::msg)?;
        let value =
            match SshTransport::connect(run::ssh_target(&spec, options.host_key_policy)).await {
                Err(e) => {
                    failed = true;
                    serde_json::json!({ "error": e.to_string() })
                }
                Ok(t) => {
                    let result = run::gather_facts(&t, &resources).await;
                    let _ = common::Transport::close(&t).await;
                    match result {
                        Ok(facts) => serde_json::Value::Object(
                            facts
                                .iter()
                                .map(|(k, v)| {
                                    (
                                        k.clone(),
                                        serde_json::json!({
                                            "status": v.status,
                                            "stdout": output::redact_probe(k, &v.stdout),
                                            "stderr": v.stderr,
                                        }),
                                    )
                                })
                                .collect(),
                        ),
                        Err(e) => {
                            failed = true;
                            serde_json::json!({ "error": e.to_string() })
                        }
                    }
                }
            };
        all.insert(spec.name.clone(), value);
    }
    output::print_json(&serde_json::Value::Object(all));
    Ok(if failed { 1 } else { 0 })
}
