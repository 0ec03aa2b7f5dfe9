//! Resources: desired state plus a pure `plan(facts)`.
//!
//! A resource never does I/O. It names the probes it needs and, given their output, says
//! either why nothing needs doing or which actions would converge the host.

use crate::facts::{FactError, Facts, Probe};

/// Why a resource could not plan. A fact that could not be read is a [`FactError`]; a
/// value of the host's vars that cannot be used is not a fact problem and says so.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Fact(#[from] FactError),
    /// `vars.<field>` cannot be used: what a valid value looks like, and what was found.
    #[error("vars.{field}: expected {expected}, found {value:?}")]
    InvalidVar {
        field: String,
        expected: String,
        value: String,
    },
}

/// What a resource wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Already in the desired state.
    Noop { reason: String },
    /// Cannot apply on this host (e.g. kernel sysctls inside a container); not a failure.
    NotApplicable { reason: String },
    /// Actions that converge the host.
    Change {
        summary: String,
        actions: Vec<Action>,
    },
}

impl Plan {
    pub fn noop(reason: impl Into<String>) -> Self {
        Plan::Noop {
            reason: reason.into(),
        }
    }

    pub fn change(summary: impl Into<String>, actions: Vec<Action>) -> Self {
        Plan::Change {
            summary: summary.into(),
            actions,
        }
    }

    pub fn is_change(&self) -> bool {
        matches!(self, Plan::Change { .. })
    }
}

/// One step the applier runs on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Install packages; every install of a run is merged into one apt transaction.
    InstallPackages { names: Vec<String> },
    /// Upgrade every installed package (`apt-get upgrade`, no removals), after refreshing
    /// the package lists when they are older than the run's limit; the run's package
    /// installs (`install`) join it: one `apt-get update` at most, one apt transaction.
    UpgradePackages { install: Vec<String> },
    /// Write a file atomically (temp file, fsync, rename, backup of the old one).
    WriteFile(FileWrite),
    /// Run a shell snippet as root with `set -e`; stdin is closed.
    Run { description: String, script: String },
    /// Enable systemd units at boot. Every enable of one apply script is one `systemctl
    /// enable -- UNITS` (each `systemctl enable` reloads the whole manager), at the place
    /// of the script's last enable, so after every unit's file.
    EnableUnits { units: Vec<String> },
}

impl Action {
    pub fn run(description: impl Into<String>, script: impl Into<String>) -> Self {
        Action::Run {
            description: description.into(),
            script: script.into(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Action::InstallPackages { names } => format!("apt install {}", names.join(" ")),
            Action::UpgradePackages { install } if install.is_empty() => "apt upgrade".into(),
            Action::UpgradePackages { install } => {
                format!("apt upgrade + install {}", install.join(" "))
            }
            Action::WriteFile(w) => format!("write {}", w.path),
            Action::Run { description, .. } => description.clone(),
            Action::EnableUnits { units } => format!("enable {}", units.join(" ")),
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct FileWrite {
    pub path: String,
    pub content: Vec<u8>,
    pub mode: u32,
    pub owner: String,
    pub group: String,
    /// The content being replaced, when known: used for diffs and rollback.
    pub previous: Option<Vec<u8>>,
    /// Secrets: never shown in diffs, plans or logs.
    pub sensitive: bool,
    /// Command that must accept the new file before it replaces the old one; the file's
    /// path is passed as its last argument (e.g. `visudo -c -f` + path).
    pub validate: Option<crate::shell::Command>,
}

impl std::fmt::Debug for FileWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let content = if self.sensitive {
            "<sensitive>".to_string()
        } else {
            format!("{} bytes", self.content.len())
        };
        f.debug_struct("FileWrite")
            .field("path", &self.path)
            .field("content", &content)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("owner", &self.owner)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

/// A unit of desired state.
pub trait Resource: Send + Sync {
    /// Stable identifier, e.g. `file:/etc/ssh/sshd_config.d/00-provision.conf`.
    fn id(&self) -> String;

    /// The probes `plan` reads.
    fn probes(&self) -> Vec<Probe>;

    /// Decide, from facts alone, what to do. A failed fact is an error, never a no-op.
    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError>;

    /// What the operator should know that is not a change, from the same facts (e.g.
    /// another file setting a keyword this resource manages, whose value loses today).
    fn notes(&self, _facts: &Facts) -> Vec<String> {
        Vec::new()
    }

    /// Ids of resources whose change makes this one run [`Resource::on_watched_change`]
    /// (e.g. a service reloaded when its config file changed).
    fn watches(&self) -> Vec<String> {
        Vec::new()
    }

    fn on_watched_change(&self) -> Vec<Action> {
        Vec::new()
    }

    /// The plan when a watched resource changed in the same run (so that
    /// [`Resource::on_watched_change`] runs after it): [`Resource::plan`] unless the
    /// triggered steps make part of it redundant (a unit they restart needs no start).
    fn plan_when_triggered(&self, facts: &Facts) -> Result<Plan, PlanError> {
        self.plan(facts)
    }

    /// Changes that can cut the operator's access (sshd, firewall) are applied
    /// commit-confirmed: a rollback is armed on the host before, and disarmed only after a
    /// brand-new login succeeded.
    fn guards_access(&self) -> bool {
        false
    }

    /// Shell run by the armed rollback after files are restored (e.g. reload sshd).
    fn rollback_script(&self) -> Option<String> {
        None
    }

    /// The SSH port logins use once this access-guarding resource is applied (an sshd
    /// port move): the commit-confirmed proof login goes there. `None`: unchanged.
    fn access_port(&self) -> Option<u16> {
        None
    }

    /// Its actions succeeding proves its state, so the verify step after apply reads
    /// none of its facts again: only where reading them again could not tell anything
    /// new (the system upgrade: after `apt-get upgrade` succeeded, apt's simulated
    /// upgrade has nothing left to do, and simulating it costs seconds).
    fn verified_by_apply(&self) -> bool {
        false
    }
}
