//! Directories of the app tree, with owners given by name (`deploy`) or by number (`999`, the
//! uid a database image runs as, which usually has no name on the host).
//!
//! The generic `Directory` resource compares owner names (`stat -c %U`); a uid without a
//! passwd entry prints as `UNKNOWN` there and would never converge, so the tree has its own
//! fact that reads names and numbers.

use common::PlanError;
use common::facts::builtin::PathKind;
use common::facts::fold::StatKind;
use common::facts::{Fact, FactError, Facts, Probe, ProbeOutput, require_success};
use common::resource::ResourceId;
use common::shell::make_directory;
use common::{Action, Plan, Resource};

/// A user or group: by name, or by number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Name(String),
    Id(u32),
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Name(n) => f.write_str(n),
            Principal::Id(id) => write!(f, "{id}"),
        }
    }
}

impl Principal {
    fn matches(&self, name: &str, id: u32) -> bool {
        match self {
            Principal::Name(n) => n == name,
            Principal::Id(i) => *i == id,
        }
    }
}

/// Kind, mode and owners (names and numbers) of a path.
#[derive(Debug, Clone)]
pub(crate) struct Ownership {
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnershipValue {
    pub kind: PathKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// `UNKNOWN` when the uid has no name.
    pub user: String,
    pub group: String,
}

impl Fact for Ownership {
    type Value = OwnershipValue;

    fn probe(&self) -> Probe {
        StatKind::Ownership.probe(&self.path)
    }

    fn parse(&self, output: &ProbeOutput) -> Result<OwnershipValue, FactError> {
        let key = self.probe().key.to_string();
        require_success(&key, output)?;
        let line = output.stdout.lines().next().unwrap_or_default();
        let error = |what: &str| FactError::Parse {
            key: key.clone(),
            what: what.into(),
            line: line.to_string(),
        };
        if line == "absent" {
            return Ok(OwnershipValue {
                kind: PathKind::Absent,
                mode: 0,
                uid: 0,
                gid: 0,
                user: String::new(),
                group: String::new(),
            });
        }
        let fields: Vec<&str> = line.split('|').collect();
        let [kind, mode, uid, gid, user, group] = fields.as_slice() else {
            return Err(error("stat line"));
        };
        Ok(OwnershipValue {
            kind: PathKind::from_stat(kind),
            mode: u32::from_str_radix(mode, 8).map_err(|_| error("mode"))?,
            uid: uid.parse().map_err(|_| error("uid"))?,
            gid: gid.parse().map_err(|_| error("gid"))?,
            user: user.to_string(),
            group: group.to_string(),
        })
    }
}

/// A directory of the tree (parents are created by `mkdir -p`; their own resources, earlier
/// in the list, give them their modes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppDirectory {
    pub path: String,
    pub mode: u32,
    pub owner: Principal,
    pub group: Principal,
}

impl AppDirectory {
    fn fact(&self) -> Ownership {
        Ownership {
            path: self.path.clone(),
        }
    }
}

impl Resource for AppDirectory {
    fn id(&self) -> ResourceId {
        ResourceId::directory(&self.path)
    }

    fn probes(&self) -> Vec<Probe> {
        vec![self.fact().probe()]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let current = facts.read(&self.fact())?;
        let owners = format!("{}:{}", self.owner, self.group);
        let fix = Action::run(
            format!("directory {}", self.path),
            make_directory(
                &self.path,
                &self.owner.to_string(),
                &self.group.to_string(),
                self.mode,
            ),
        );
        match &current.kind {
            PathKind::Absent => Ok(Plan::change(
                format!("create {} ({owners} {:o})", self.path, self.mode),
                vec![fix],
            )),
            PathKind::Directory
                if current.mode == self.mode
                    && self.owner.matches(&current.user, current.uid)
                    && self.group.matches(&current.group, current.gid) =>
            {
                Ok(Plan::noop(format!(
                    "{} exists ({owners} {:o})",
                    self.path, self.mode
                )))
            }
            PathKind::Directory => Ok(Plan::change(
                format!(
                    "{}: {owners} {:o} (was {}:{} {:o})",
                    self.path, self.mode, current.user, current.group, current.mode
                ),
                vec![fix],
            )),
            other => Err(FactError::Parse {
                key: self.fact().probe().key.to_string(),
                what: "a directory".into(),
                line: other.name().to_string(),
            }
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(path: &str, stdout: &str) -> Facts {
        Facts::from_outputs([(
            Ownership { path: path.into() }.probe().key,
            ProbeOutput {
                status: 0,
                stdout: stdout.into(),
                stderr: String::new(),
            },
        )])
    }

    fn data_dir() -> AppDirectory {
        AppDirectory {
            path: "/opt/x/data/postgres".into(),
            mode: 0o700,
            owner: Principal::Id(999),
            group: Principal::Id(999),
        }
    }

    #[test]
    fn numeric_owner_without_a_name_converges() {
        let plan = data_dir()
            .plan(&facts(
                "/opt/x/data/postgres",
                "directory|700|999|999|UNKNOWN|UNKNOWN\n",
            ))
            .unwrap();
        assert_eq!(
            plan,
            Plan::noop("/opt/x/data/postgres exists (999:999 700)")
        );
    }

    #[test]
    fn numeric_owner_with_a_host_name_converges_too() {
        let plan = data_dir()
            .plan(&facts(
                "/opt/x/data/postgres",
                "directory|700|999|999|systemd-coredump|systemd-coredump\n",
            ))
            .unwrap();
        assert!(matches!(plan, Plan::Noop { .. }), "{plan:?}");
    }

    #[test]
    fn absent_directory_is_created_with_owner_and_mode() {
        let plan = data_dir()
            .plan(&facts("/opt/x/data/postgres", "absent\n"))
            .unwrap();
        let Plan::Change { actions, summary } = plan else {
            panic!()
        };
        assert_eq!(summary, "create /opt/x/data/postgres (999:999 700)");
        assert_eq!(
            actions,
            [Action::run(
                "directory /opt/x/data/postgres",
                "mkdir -p -- /opt/x/data/postgres\nchown -- 999:999 /opt/x/data/postgres\nchmod -- 700 /opt/x/data/postgres"
            )]
        );
    }

    #[test]
    fn wrong_owner_or_mode_is_fixed() {
        let d = AppDirectory {
            path: "/opt/x".into(),
            mode: 0o750,
            owner: Principal::Name("deploy".into()),
            group: Principal::Name("deploy".into()),
        };
        let plan = d
            .plan(&facts("/opt/x", "directory|755|0|0|root|root\n"))
            .unwrap();
        let Plan::Change { summary, .. } = plan else {
            panic!()
        };
        assert_eq!(summary, "/opt/x: deploy:deploy 750 (was root:root 755)");
    }

    #[test]
    fn a_file_in_the_way_or_a_failed_probe_is_an_error() {
        assert!(
            data_dir()
                .plan(&facts(
                    "/opt/x/data/postgres",
                    "regular file|644|0|0|root|root\n"
                ))
                .is_err()
        );
        let failed = Facts::from_outputs([(
            Ownership {
                path: "/opt/x/data/postgres".into(),
            }
            .probe()
            .key,
            common::testing::failed(1, "stat: boom"),
        )]);
        assert!(data_dir().plan(&failed).is_err());
        assert!(
            Ownership { path: "/x".into() }
                .parse(&ProbeOutput {
                    status: 0,
                    stdout: "directory|7x0|0|0|root|root\n".into(),
                    stderr: String::new()
                })
                .is_err()
        );
    }

    #[test]
    fn probe_runs_for_real() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o710)).unwrap();
        let fact = Ownership {
            path: dir.path().display().to_string(),
        };
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(fact.probe().script)
            .output()
            .unwrap();
        let v = fact
            .parse(&ProbeOutput {
                status: out.status.code().unwrap(),
                stdout: String::from_utf8_lossy(&out.stdout).into(),
                stderr: String::new(),
            })
            .unwrap();
        assert_eq!(v.kind, PathKind::Directory);
        assert_eq!(v.mode, 0o710);
        let missing = Ownership {
            path: dir.path().join("nope").display().to_string(),
        };
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(missing.probe().script)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "absent\n");
    }
}
