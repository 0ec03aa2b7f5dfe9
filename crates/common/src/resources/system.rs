use crate::facts::builtin::{Account, TimezoneState};
use crate::facts::{Fact, FactError, Facts, Probe};
use crate::resource::{Action, Plan, Resource};
use crate::shell::quote;

/// The system time zone (`/etc/localtime` and `/etc/timezone`).
#[derive(Debug, Clone)]
pub struct Timezone {
    pub zone: String,
}

impl Timezone {
    fn fact(&self) -> TimezoneState {
        TimezoneState {
            wanted: self.zone.clone(),
        }
    }
}

impl Resource for Timezone {
    fn id(&self) -> String {
        "timezone".into()
    }

    fn probes(&self) -> Vec<Probe> {
        vec![self.fact().probe()]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, FactError> {
        let tz = facts.read(&self.fact())?;
        if tz.current == self.zone {
            return Ok(Plan::noop(format!("time zone is {}", self.zone)));
        }
        // tzdata may be installed by an earlier step of this run; the step checks again.
        let z = quote(&self.zone);
        Ok(Plan::change(
            format!("time zone {} → {}", tz.current, self.zone),
            vec![Action::run(
                format!("set time zone {}", self.zone),
                format!(
                    "[ -f /usr/share/zoneinfo/{z} ] || {{ echo 'unknown time zone {}: no /usr/share/zoneinfo/{} (is tzdata installed?)' >&2; exit 1; }}\n\
                     ln -sfn /usr/share/zoneinfo/{z} /etc/localtime\necho {z} > /etc/timezone",
                    self.zone.replace('\'', ""),
                    self.zone.replace('\'', "")
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
    fn id(&self) -> String {
        format!("user:{}", self.name)
    }

    fn probes(&self) -> Vec<Probe> {
        vec![self.fact().probe()]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, FactError> {
        let account = facts.read(&self.fact())?;
        let n = quote(&self.name);
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
                    let g = quote(g);
                    format!(
                        "getent group {g} >/dev/null || groupadd --system {g}\nusermod -aG {g} {n}"
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        if !account.exists {
            let script = format!(
                "useradd --create-home --user-group --shell {} {n}\n{}",
                quote(&self.shell),
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
            script.push(format!("usermod --shell {} {n}", quote(&self.shell)));
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
