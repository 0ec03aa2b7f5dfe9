//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Provision and harden Ubuntu/Debian servers over SSH: base system, hardening, Docker,
/// TLS certificates and the application tree.
///
/// Exit codes: 0 converged (or nothing to change), 1 a host failed or bad input,
/// 2 `check`/`harden --check` found pending changes.
#[derive(Debug, Parser)]
#[command(name = "provision", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Inventory file (TOML). Default: $PROVISION_INVENTORY, else ./inventory.toml.
    #[arg(short, long, global = true, env = "PROVISION_INVENTORY")]
    pub inventory: Option<PathBuf>,
    /// Only these hosts or groups (comma-separated).
    #[arg(short, long, global = true)]
    pub limit: Option<String>,
    /// Hosts handled in parallel.
    #[arg(long, global = true, default_value_t = 10)]
    pub forks: usize,
    /// Output: text (progress on a TTY, plain lines when piped) or json.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Trust unknown host keys on first use (a changed key is still refused).
    #[arg(long, global = true)]
    pub accept_new_host_keys: bool,
    /// Seconds a host waits for a new login to be proven after an sshd or firewall change
    /// before it restores the previous configuration.
    #[arg(long, global = true, default_value_t = 60)]
    pub rollback_window: u64,
    /// More logs (-v: engine steps and round trips, -vv: everything).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Global {
    pub fn inventory_path(&self) -> PathBuf {
        self.inventory
            .clone()
            .unwrap_or_else(|| PathBuf::from("inventory.toml"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Converge every selected host (base, hardening, Docker, app).
    Up {
        /// Regenerate this generated secret of the app's .env (repeatable). Secrets are
        /// otherwise generated once and never changed.
        #[arg(long = "rotate-secret", value_name = "KEY")]
        rotate_secret: Vec<String>,
    },
    /// Show what `up` would change, with diffs; changes nothing. Exit 2 when changes are pending.
    Check,
    /// Only the hardening set; with --check, a drift report (exit 2 on drift).
    Harden {
        #[arg(long)]
        check: bool,
    },
    /// Print what the job's probes read on each host, as JSON.
    Facts,
    /// Disposable local Debian hosts (systemd-nspawn) for trying an inventory. Needs root.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Create (or reuse) N hosts and write an inventory for them.
    Up {
        #[arg(default_value_t = 1)]
        count: usize,
    },
    /// Destroy every lab host and what the lab set up.
    Down,
    /// List lab hosts.
    Status,
    /// Open a shell on lab host N (or run a command there).
    Ssh {
        host: String,
        #[arg(trailing_var_arg = true)]
        command: Vec<String>,
    },
    /// One lab host, `provision up` on it, then a second run that must change nothing.
    Demo {
        /// Keep the host afterwards (default: destroy it).
        #[arg(long)]
        keep: bool,
    },
}
