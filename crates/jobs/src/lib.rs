//! What each `provision` command does, as a library: which resources a job applies to a
//! host ([`Job`]), and the multi-host runs of `up`/`check`/`harden` ([`converge`]),
//! `facts` ([`facts`]) and `certs …` ([`certs`]). Every one of them goes through the one
//! runner, [`common::run::for_each_host`], and gets its connections from the session's
//! [`Connector`] (SSH in the CLI, anything else in tests).
//!
//! The CLI parses arguments into a [`Session`], calls one function here and prints what
//! comes back.

#![deny(unreachable_pub)]

pub mod certs;
mod facts;
mod job;
pub mod lab;
mod reboot;
mod up;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::engine::Mode;
use common::inventory::{HostSpec, Inventory, InventoryError};
use common::report::HostReport;
use common::run::{self, Connector, Progress, RunOptions, SshConnector};
use common::transport::ssh::HostKeyPolicy;

pub use facts::{HostFacts, HostFactsError, facts, facts_exit_code, facts_json};
pub use job::{ComposeError, Job, Set};

/// Why a command could not start (a host failing is a report, not an error).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The inventory does not load: `file:line:col: message`, then the source snippet.
    #[error("{}", render_inventory_error(.0))]
    Inventory(Box<InventoryError>),
    #[error("{0}")]
    Select(String),
    #[error("no hosts selected in {}", .0.display())]
    NoHosts(PathBuf),
    /// A host's resources could not be composed (`facts` stops before connecting).
    #[error("{}", .0.message())]
    Compose(ComposeError),
    #[error(transparent)]
    Certs(#[from] certs::CertsJobError),
}

impl JobError {
    /// An inventory error as JSON: file, line, column, field, message and help.
    pub fn inventory_json(&self) -> Option<serde_json::Value> {
        let JobError::Inventory(i) = self else {
            return None;
        };
        Some(serde_json::json!({
            "kind": "inventory",
            "file": i.file,
            "line": i.line,
            "column": i.column,
            "field": i.field,
            "message": i.message,
            "help": i.help,
        }))
    }
}

fn render_inventory_error(e: &InventoryError) -> String {
    let mut out = String::new();
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor());
    match handler.render_report(&mut out, e) {
        Ok(()) => out,
        Err(_) => e.to_string(),
    }
}

/// What every command is run with: the inventory, which hosts, and how to reach them.
#[derive(Clone)]
pub struct Session {
    pub inventory: PathBuf,
    /// `--limit`: hosts or groups, comma-separated.
    pub limit: Option<String>,
    /// `--strict`: a host below its minimum hardware fails instead of warning.
    pub strict: bool,
    /// Forks, host key policy and engine options (the mode is set per command).
    pub run: RunOptions,
    /// The transport factory.
    pub connector: Arc<dyn Connector>,
}

impl Session {
    /// A session that reaches hosts over SSH; `accept_new_host_keys` trusts unknown keys on
    /// first use (a changed key is still refused).
    pub fn over_ssh(inventory: PathBuf, accept_new_host_keys: bool) -> Self {
        let host_key_policy = match accept_new_host_keys {
            true => HostKeyPolicy::AcceptNew,
            false => HostKeyPolicy::Strict,
        };
        Self {
            inventory,
            limit: None,
            strict: false,
            run: RunOptions {
                host_key_policy,
                ..RunOptions::default()
            },
            connector: Arc::new(SshConnector { host_key_policy }),
        }
    }

    /// The options of a run in `mode`.
    pub fn options(&self, mode: Mode) -> RunOptions {
        let mut options = self.run.clone();
        options.engine.mode = mode;
        options
    }

    /// The inventory's directory: relative paths in it resolve against this.
    pub fn base_dir(&self) -> Option<PathBuf> {
        self.inventory.parent().map(Path::to_path_buf)
    }

    /// The selected hosts of the inventory; none selected is an error.
    pub fn hosts(&self) -> Result<Vec<HostSpec>, JobError> {
        let inventory = load(&self.inventory)?;
        let hosts = inventory
            .select(self.limit.as_deref())
            .map_err(JobError::Select)?;
        if hosts.is_empty() {
            return Err(JobError::NoHosts(self.inventory.clone()));
        }
        Ok(hosts.into_iter().cloned().collect())
    }

    /// The job as this session's flags shape it (`--strict`, the inventory's directory).
    fn shape(&self, mut job: Job) -> Job {
        job.strict = self.strict;
        job.base_dir = self.base_dir();
        job
    }
}

/// Load an inventory with every check: the values' rules (in `Inventory::load`), then each
/// domain's own section, host by host: the app ([`app::check`]: its templates render with
/// the host's settings) and the certificate ([`::certs::check`]), so that `check` and `up`
/// refuse what `certs …` refuses, at the line that sets it.
pub fn load(path: &Path) -> Result<Inventory, JobError> {
    let inventory = Inventory::load(path).map_err(JobError::Inventory)?;
    let options = app::AppOptions {
        base_dir: path.parent().map(Path::to_path_buf),
        ..app::AppOptions::default()
    };
    for spec in &inventory.hosts {
        app::check(spec, &options).map_err(JobError::Inventory)?;
        ::certs::check(spec).map_err(JobError::Inventory)?;
    }
    Ok(inventory)
}

/// A converging command as the CLI spells it: `up [--rotate-secret KEY]…`, `check`,
/// `harden [--check]`. What it converges ([`Command::job`]) and how ([`Command::mode`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Up { rotate: Vec<String> },
    Check,
    Harden { check: bool },
}

impl Command {
    pub fn mode(&self) -> Mode {
        match self {
            Command::Up { .. } => Mode::Apply,
            Command::Check => Mode::Check,
            Command::Harden { check } => Mode::check_if(*check),
        }
    }

    pub fn job(&self) -> Job {
        match self {
            Command::Up { rotate } => Job::new(Set::All).rotating(rotate),
            Command::Check => Job::new(Set::All),
            Command::Harden { .. } => Job::new(Set::Hardening),
        }
    }
}

/// `command` on every selected host: [`converge`] with its mode and job.
pub async fn run(
    session: &Session,
    command: &Command,
    progress: Arc<dyn Progress>,
) -> Result<Vec<HostReport>, JobError> {
    converge(session, command.mode(), command.job(), progress).await
}

/// `up`, `check`, `harden`: converge (or check) every selected host.
pub(crate) async fn converge(
    session: &Session,
    mode: Mode,
    job: Job,
    progress: Arc<dyn Progress>,
) -> Result<Vec<HostReport>, JobError> {
    let hosts = session.hosts()?;
    Ok(converge_hosts(session, hosts, mode, session.shape(job), progress).await)
}

/// Converge `job` on `hosts` (not read from the session's inventory, e.g. the lab demo's).
pub(crate) async fn converge_hosts(
    session: &Session,
    hosts: Vec<HostSpec>,
    mode: Mode,
    job: Job,
    progress: Arc<dyn Progress>,
) -> Vec<HostReport> {
    let options = session.options(mode);
    let certificates = (job.set == Set::All).then(|| {
        up::CertificateStep::new(certs::settings(session, mode), session.base_dir(), &hosts)
    });
    let reboot = (job.set == Set::All).then(|| reboot::RebootStep {
        mode,
        connector: session.connector.clone(),
        progress: progress.clone(),
        timeout: reboot::COME_BACK_TIMEOUT,
        one_at_a_time: Arc::default(),
    });
    let converge = run::Converge {
        resources: move |spec: &HostSpec| job.resources(spec).map_err(|e| e.message()),
        engine: options.engine.clone(),
        connector: session.connector.clone(),
    };
    let work = up::Up {
        converge,
        certificates,
        reboot,
    };
    let connector = session.connector.clone();
    run::for_each_host(hosts, options.forks, connector, progress, Arc::new(work)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CLI's converging commands: `up` applies everything (with its rotations),
    /// `check` only looks, `harden` is the hardening set, applied or (`--check`) checked.
    #[test]
    fn each_converging_command_has_its_mode_and_set() {
        let rotate = vec!["SECRET_KEY".to_string()];
        let up = Command::Up {
            rotate: rotate.clone(),
        };
        let cases = [
            (up, Mode::Apply, Set::All, rotate),
            (Command::Check, Mode::Check, Set::All, vec![]),
            (
                Command::Harden { check: false },
                Mode::Apply,
                Set::Hardening,
                vec![],
            ),
            (
                Command::Harden { check: true },
                Mode::Check,
                Set::Hardening,
                vec![],
            ),
        ];
        for (command, mode, set, rotate) in cases {
            assert_eq!(command.mode(), mode, "{command:?}");
            let job = command.job();
            assert_eq!((job.set, job.rotate), (set, rotate), "{command:?}");
        }
    }
}
