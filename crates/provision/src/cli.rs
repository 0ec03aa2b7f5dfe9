//! Command-line arguments.

use std::path::PathBuf;

use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Provision and harden Ubuntu/Debian servers over SSH: base system, hardening, Docker,
/// TLS certificates and the application tree.
///
/// Exit codes: 0 converged (or nothing to change), 1 a host failed or bad input,
/// 2 `check`/`harden --check` found pending changes.
#[derive(Debug, Parser)]
#[command(name = "provision", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct Global {
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
    /// Fail hosts below the inventory's `minimum` hardware instead of warning.
    #[arg(long, global = true)]
    pub strict: bool,
    /// More logs (-v: engine steps and round trips, -vv: everything).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Global {
    pub(crate) fn inventory_path(&self) -> PathBuf {
        self.inventory
            .clone()
            .unwrap_or_else(|| PathBuf::from("inventory.toml"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
    /// Disposable local Ubuntu and Debian hosts (systemd-nspawn) for trying an inventory. Needs root.
    #[command(subcommand)]
    Lab(LabCommand),
    /// TLS certificates: issue, renew when due, status, revoke, and the renewal timer.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum LabCommand {
    /// Create (or reuse) N hosts of an OS and write an inventory for them (and every
    /// other running host of the lab). Never destroys a running host.
    Up {
        #[arg(default_value_t = 1)]
        count: usize,
        #[command(flatten)]
        spec: LabSpec,
    },
    /// Build (or find cached) the images of these OSes, in parallel (default: all four).
    Images {
        #[arg(value_parser = |s: &str| s.parse::<lab::Os>().map_err(|e| e.to_string()))]
        os: Vec<lab::Os>,
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
        #[command(flatten)]
        spec: LabSpec,
    },
}

/// What kind of lab host.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LabSpec {
    /// OS of the hosts: ubuntu-24.04, ubuntu-22.04, debian-13 or debian-12.
    #[arg(long, default_value_t = lab::Os::DEFAULT, value_parser = |s: &str| s.parse::<lab::Os>().map_err(|e| e.to_string()))]
    pub(crate) os: lab::Os,
    /// Login the lab key works for: `default` (the image's sudo user, `ubuntu` or
    /// `debian`, root refused as cloud images do) or `root` (as many VPS providers).
    #[arg(long, default_value = "default", value_parser = |s: &str| s.parse::<lab::Login>())]
    pub(crate) login: lab::Login,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CertsCommand {
    /// Obtain and install the certificate of every selected host whose vars declare one
    /// (`[vars.certs]`) when there is none yet, it expired or the declaration changed.
    /// With --check: exit 2 when something would change.
    Issue {
        /// Show what would happen; ask nothing of the CA and change nothing.
        #[arg(long)]
        check: bool,
    },
    /// Renew the certificates that are due (ARI window, else a third of the lifetime left)
    /// and make sure the current ones are installed; nothing due means nothing changes.
    Renew {
        /// Renew even when not due.
        #[arg(long)]
        force: bool,
        /// Show what would happen; ask nothing of the CA and change nothing.
        #[arg(long)]
        check: bool,
        /// Run on the host itself (the renewal timer): declarations from --config-dir, the
        /// state in $PROVISION_CERTS_STATE (default /var/lib/provision/certs), no SSH.
        #[arg(long)]
        local: bool,
        /// Directory of the declarations `certs schedule` installed.
        #[arg(long, value_name = "DIR", requires = "local")]
        config_dir: Option<PathBuf>,
    },
    /// Names, issuer, expiry, days left, next renewal and last error of each certificate,
    /// from this machine's state directory (no SSH, no CA).
    Status,
    /// Revoke the current certificate of each selected host at its CA; the next `renew`
    /// obtains a new one.
    Revoke {
        /// Reason given to the CA.
        #[arg(long, value_parser = PossibleValuesParser::new(jobs::certs::REVOCATION_REASONS))]
        reason: Option<String>,
    },
    /// Install the renewal timer on each selected host (systemd; runs
    /// `provision certs renew --local` twice a day) with the declarations it reads.
    Schedule {
        /// Upload this provision binary to /usr/local/bin/provision on the host (skipped
        /// when the host already has the same build).
        #[arg(long)]
        install_binary: bool,
        /// Show what would change; change nothing. Exit 2 when changes are pending.
        #[arg(long)]
        check: bool,
    },
}
