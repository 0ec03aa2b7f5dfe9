//! Resources: desired state plus a pure `plan(facts)`.
//!
//! A resource never does I/O. It names the probes it needs and, given their output, says
//! either why nothing needs doing or which actions would converge the host.

use std::fmt;

use crate::facts::{FactError, Facts, Probe};

/// The identity of a resource: what reports print and what watchers name
/// ([`Resource::watches`]). Built only by the constructor of its kind, so a watcher and the
/// resource it watches get the same id from the same code (a typo in a rebuilt id would
/// silently never fire); serialized as its text, `kind:name` or a bare name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ResourceId(String);

impl ResourceId {
    /// A [`crate::resources::File`] (or absent file) at `path`.
    pub fn file(path: &str) -> Self {
        Self::of("file", path)
    }

    /// A [`crate::resources::Directory`] at `path`.
    pub fn directory(path: &str) -> Self {
        Self::of("directory", path)
    }

    /// A [`crate::resources::Line`] of `path`, found by `matches`.
    pub fn line(path: &str, matches: &str) -> Self {
        Self(format!("line:{path}:{matches}"))
    }

    /// A managed [`crate::resources::Block`] `name` in `path`.
    pub fn block(path: &str, name: &str) -> Self {
        Self(format!("block:{path}:{name}"))
    }

    /// A systemd [`crate::resources::Service`] (any unit).
    pub fn service(unit: &str) -> Self {
        Self::of("service", unit)
    }

    /// A [`crate::resources::Packages`] set.
    pub fn packages(name: &str) -> Self {
        Self::of("packages", name)
    }

    /// A [`crate::resources::User`] account.
    pub fn user(name: &str) -> Self {
        Self::of("user", name)
    }

    /// Any other kind: `kind:name`, built only in the resource that owns it; a watcher of
    /// such a resource takes that resource's `id()` (a kind watched from afar gets a
    /// constructor of its own, as files and services have).
    pub fn of(kind: &str, name: impl fmt::Display) -> Self {
        Self(format!("{kind}:{name}"))
    }

    /// A resource of which a host has one (`sshd`, `timezone`).
    pub fn named(name: &str) -> Self {
        Self(name.to_string())
    }

    /// The kind: the text before the first `:` (all of a bare name).
    pub fn kind(&self) -> &str {
        self.0.split_once(':').map_or(&self.0, |(kind, _)| kind)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for ResourceId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ResourceId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

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
    /// `systemctl daemon-reload`. One right before a script's enable step is done by that
    /// step (enabling reloads the manager anyway): one reload, not two.
    DaemonReload,
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
            Action::DaemonReload => "systemctl daemon-reload".into(),
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
    fn id(&self) -> ResourceId;

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
    fn watches(&self) -> Vec<ResourceId> {
        Vec::new()
    }

    /// The steps a watched change adds after this resource's own, decided from the same
    /// facts as its plan (a restart can depend on whether the unit runs at plan time).
    fn on_watched_change(&self, _facts: &Facts) -> Result<Vec<Action>, PlanError> {
        Ok(Vec::new())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{Directory, File, Service, Trigger};

    /// A watch built with the file constructor names the file resource at that path: were
    /// `File::id` and `ResourceId::file` to disagree, the reload would silently never fire.
    #[test]
    fn a_watch_built_for_a_file_is_that_file_resources_id() {
        for path in ["/etc/docker/daemon.json", "/etc/systemd/system/app.service"] {
            let file = File::new(path, "x\n");
            let service = Service::running("docker.service").reload_on([ResourceId::file(path)]);
            assert_eq!(service.watches(), [file.id()]);
            let reload = Trigger::daemon_reload(
                ResourceId::of("systemd", "daemon-reload"),
                vec![ResourceId::file(path)],
            );
            assert_eq!(reload.watches(), [file.id()]);
            // The directory of the same path is another resource: no watch of the file
            // fires for it.
            assert_ne!(Directory::new(path, 0o755, "root", "root").id(), file.id());
        }
        assert_eq!(
            Service::running("ssh.service").id(),
            ResourceId::service("ssh.service")
        );
    }

    /// Reports, JSON and snapshots print the id as the text it always was.
    #[test]
    fn an_id_prints_and_serializes_as_its_text() {
        let id = ResourceId::file("/etc/motd");
        assert_eq!(id.to_string(), "file:/etc/motd");
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""file:/etc/motd""#);
        assert_eq!(id.kind(), "file");
        assert_eq!(ResourceId::named("sshd").kind(), "sshd");
        assert_eq!(
            ResourceId::line("/etc/login.defs", "^PASS_MAX_DAYS").as_str(),
            "line:/etc/login.defs:^PASS_MAX_DAYS"
        );
    }
}
