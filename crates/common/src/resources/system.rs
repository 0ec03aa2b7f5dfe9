use crate::facts::builtin::{Account, TimezoneState};
use crate::facts::{Fact, FactError, Facts, Probe};
use crate::resource::PlanError;
use crate::resource::{Action, Plan, Resource, ResourceId};
use crate::shell::{Command, quote};

/// The system time zone (`/etc/localtime` and `/etc/timezone`).
#[derive(Debug, Clone)]
pub struct Timezone {
    pub zone: String,
    /// Where the inventory set it (`file:line:column`), named when the host lacks the zone.
    pub origin: Option<String>,
}

impl Timezone {
    fn fact(&self) -> TimezoneState {
        TimezoneState {
            wanted: self.zone.clone(),
        }
    }
}

impl Resource for Timezone {
    fn id(&self) -> ResourceId {
        ResourceId::named("timezone")
    }

    fn probes(&self) -> Vec<Probe> {
        vec![self.fact().probe()]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let tz = facts.read(&self.fact())?;
        if tz.current == self.zone {
            return Ok(Plan::noop(format!("time zone is {}", self.zone)));
        }
        if !tz.wanted_exists && tz.zoneinfo {
            return Err(FactError::Precondition {
                what: format!(
                    "time zone `{}` is not in the host's zoneinfo (/usr/share/zoneinfo){}; use a name `timedatectl list-timezones` shows",
                    self.zone,
                    self.origin
                        .as_ref()
                        .map(|o| format!(", set at {o}"))
                        .unwrap_or_default()
                ),
            }.into());
        }
        // tzdata may be installed by an earlier step of this run; the step checks again.
        let file = quote(&format!("/usr/share/zoneinfo/{}", self.zone));
        let unknown = quote(&format!(
            "unknown time zone {}: no /usr/share/zoneinfo/{} on the host (is tzdata installed?){}",
            self.zone,
            self.zone,
            self.origin
                .as_ref()
                .map(|o| format!("; set at {o}"))
                .unwrap_or_default()
        ));
        let link = Command::new("ln").arg("-sfn").operands([
            format!("/usr/share/zoneinfo/{}", self.zone),
            "/etc/localtime".into(),
        ]);
        Ok(Plan::change(
            format!("time zone {} → {}", tz.current, self.zone),
            vec![Action::run(
                format!("set time zone {}", self.zone),
                format!(
                    "[ -f {file} ] || {{ echo {unknown} >&2; exit 1; }}\n\
                     {link}\nprintf '%s\\n' {z} > /etc/timezone",
                    z = quote(&self.zone),
                ),
            )],
        ))
    }
}

/// A local user with supplementary groups and a login shell.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub shell: String,
    /// Supplementary groups the user must be in (others are left alone).
    pub groups: Vec<String>,
}

impl User {
    fn fact(&self) -> Account {
        Account {
            name: self.name.clone(),
        }
    }
}

impl Resource for User {
    fn id(&self) -> ResourceId {
        ResourceId::user(&self.name)
    }

    fn probes(&self) -> Vec<Probe> {
        vec![self.fact().probe()]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let account = facts.read(&self.fact())?;
        let missing_groups: Vec<&String> = self
            .groups
            .iter()
            .filter(|g| !account.groups.contains(g))
            .collect();
        // Groups may be created by packages installed earlier in the run (e.g. docker).
        let add_groups = |groups: &[&String]| {
            groups
                .iter()
                .map(|g| {
                    let getent = Command::new("getent").operands(["group", g.as_str()]);
                    let groupadd = Command::new("groupadd").arg("--system").operand(g.as_str());
                    let usermod = Command::new("usermod")
                        .args(["-a", "-G", g.as_str()])
                        .operand(self.name.as_str());
                    format!("{getent} >/dev/null || {groupadd}\n{usermod}")
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        if !account.exists {
            let useradd = Command::new("useradd")
                .args([
                    "--create-home",
                    "--user-group",
                    "--shell",
                    self.shell.as_str(),
                ])
                .operand(self.name.as_str());
            let script = format!(
                "{useradd}\n{}",
                add_groups(&self.groups.iter().collect::<Vec<_>>())
            );
            return Ok(Plan::change(
                format!("create user {}", self.name),
                vec![Action::run(format!("create user {}", self.name), script)],
            ));
        }
        let mut script = Vec::new();
        let mut what = Vec::new();
        if account.shell != self.shell {
            what.push(format!("shell {} → {}", account.shell, self.shell));
            script.push(
                Command::new("usermod")
                    .args(["--shell", self.shell.as_str()])
                    .operand(self.name.as_str())
                    .to_string(),
            );
        }
        if !missing_groups.is_empty() {
            what.push(format!(
                "add to {}",
                missing_groups
                    .iter()
                    .map(|g| g.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ));
            script.push(add_groups(&missing_groups));
        }
        if script.is_empty() {
            return Ok(Plan::noop(format!("user {} exists", self.name)));
        }
        Ok(Plan::change(
            format!("user {}: {}", self.name, what.join("; ")),
            vec![Action::run(
                format!("update user {}", self.name),
                script.join("\n"),
            )],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::ProbeOutput;

    fn timezone_facts(stdout: &str) -> Facts {
        Facts::from_outputs(std::collections::BTreeMap::from([(
            "timezone:Mars/Olympus_Mons".to_string(),
            ProbeOutput {
                status: 0,
                stdout: stdout.into(),
                stderr: String::new(),
            },
        )]))
    }

    /// Issue 11: a zone the host's zoneinfo lacks is a plan error naming the inventory line;
    /// without a zoneinfo database yet (tzdata comes in the same run) the step checks again.
    #[test]
    fn unknown_time_zone_fails_the_plan_at_its_inventory_line() {
        let tz = Timezone {
            zone: "Mars/Olympus_Mons".into(),
            origin: Some("inventory.toml:4:12".into()),
        };
        let err = tz
            .plan(&timezone_facts("current=Etc/UTC\nexists=0\nzoneinfo=1\n"))
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`Mars/Olympus_Mons`"), "{text}");
        assert!(text.contains("set at inventory.toml:4:12"), "{text}");
        let Plan::Change { actions, .. } = tz
            .plan(&timezone_facts("current=Etc/UTC\nexists=0\nzoneinfo=0\n"))
            .unwrap()
        else {
            panic!()
        };
        let [Action::Run { script, .. }] = actions.as_slice() else {
            panic!("{actions:?}")
        };
        assert!(script.contains("set at inventory.toml:4:12"), "{script}");
    }

    /// Issue 11, path 3: a user or group name starting with `-` is an operand of useradd,
    /// usermod and groupadd, after `--`.
    #[test]
    fn user_and_group_names_are_operands() {
        let user = User {
            name: "-oops".into(),
            shell: "/bin/bash".into(),
            groups: vec!["-G0".into()],
        };
        let facts = Facts::from_outputs(std::collections::BTreeMap::from([(
            "account:-oops".to_string(),
            ProbeOutput {
                status: 0,
                stdout: "absent\n".into(),
                stderr: String::new(),
            },
        )]));
        let Plan::Change { actions, .. } = user.plan(&facts).unwrap() else {
            panic!()
        };
        let [Action::Run { script, .. }] = actions.as_slice() else {
            panic!("{actions:?}")
        };
        assert_eq!(
            script,
            "useradd --create-home --user-group --shell /bin/bash -- '-oops'\n\
             getent -- group '-G0' >/dev/null || groupadd --system -- '-G0'\n\
             usermod -a -G -G0 -- '-oops'"
        );
    }
}
