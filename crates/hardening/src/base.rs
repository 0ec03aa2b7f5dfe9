//! Base system (seeds/002 §3.1 and §11.1): packages in the run's one apt transaction,
//! upgrade policy, time zone, host name, open-files limits, the deploy user, unattended
//! security upgrades and managed files.

use common::facts::builtin::{HostInfo, PathState};
use common::inventory::{FileVar, Origins, RebootPolicy, UpgradePolicy, Vars};
use common::resource::ResourceId;
use common::resources::{Directory, File, Line, Packages, Timezone, Trigger, User};
use common::shell::{Command, quote};
use common::values::FileMode;
use common::{Action, Fact, FactError, Facts, Plan, Probe, Resource};
use serde::Serialize;

use crate::facts::{HostnameState, MaxAge, PasswordMaxAge, PendingUpgrades};
use crate::support::{
    AbsentFile, DesiredFile, Guarded, InvalidVar, MANAGED, ResourceGroup, render,
};
use common::PlanError;

/// The seeds' tool set (seeds/002 §3.1), used when the inventory sets no `packages`.
pub(crate) const DEFAULT_PACKAGES: &[&str] = &["curl", "wget", "git", "vim", "htop", "net-tools"];

/// Open files, soft and hard (seeds/002 §3.1), when the inventory sets no `nofile`.
pub(crate) const DEFAULT_NOFILE: u64 = 65536;

/// Default deploy user name when the `deploy_user` section sets none.
pub(crate) const DEFAULT_DEPLOY_USER: &str = "deploy";

pub(crate) const NOFILE_LIMITS_PATH: &str = "/etc/security/limits.d/90-provision-nofile.conf";
pub(crate) const NOFILE_SYSTEMD_PATH: &str = "/etc/systemd/system.conf.d/90-provision-nofile.conf";
pub(crate) const AUTO_UPGRADES_PATH: &str = "/etc/apt/apt.conf.d/20auto-upgrades";
pub(crate) const UNATTENDED_UPGRADES_PATH: &str = "/etc/apt/apt.conf.d/50unattended-upgrades";

/// The deploy user as the inventory describes it, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeployUser {
    pub name: String,
    pub home: String,
    pub shell: String,
    /// `None`: the inventory does not manage the key list (left as it is).
    pub authorized_keys: Option<Vec<String>>,
    pub sudo: bool,
}

impl DeployUser {
    /// `None` when the inventory has no `deploy_user` section.
    pub(crate) fn from_vars(vars: &Vars) -> Option<DeployUser> {
        let d = vars.deploy_user.as_ref()?;
        let name = d.name.clone().unwrap_or_else(|| DEFAULT_DEPLOY_USER.into());
        let home = d.home.clone().unwrap_or_else(|| {
            if name == "root" {
                "/root".into()
            } else {
                format!("/home/{name}")
            }
        });
        Some(DeployUser {
            home,
            shell: d.shell.clone().unwrap_or_else(|| "/bin/bash".into()),
            authorized_keys: d.authorized_keys.clone(),
            sudo: d.sudo.unwrap_or(true),
            name,
        })
    }

    pub(crate) fn authorized_keys_path(&self) -> String {
        format!("{}/.ssh/authorized_keys", self.home)
    }

    /// sudo ignores drop-ins whose names contain a dot.
    pub(crate) fn sudoers_path(&self) -> String {
        format!(
            "/etc/sudoers.d/90-provision-{}",
            self.name.replace('.', "_")
        )
    }
}

pub(crate) fn upgrade_policy(vars: &Vars) -> UpgradePolicy {
    vars.upgrade.unwrap_or(UpgradePolicy::Security)
}

/// Packages the base set installs (merged into the run's one apt transaction).
pub fn packages(vars: &Vars) -> Vec<String> {
    let mut packages: Vec<String> = match &vars.packages {
        Some(p) => p.clone(),
        None => DEFAULT_PACKAGES.iter().map(|s| s.to_string()).collect(),
    };
    let mut add = |p: &str| {
        if !packages.iter().any(|x| x == p) {
            packages.push(p.to_string());
        }
    };
    if vars.timezone.is_some() {
        add("tzdata");
    }
    if upgrade_policy(vars) != UpgradePolicy::None {
        add("unattended-upgrades");
    }
    if DeployUser::from_vars(vars).is_some_and(|d| d.sudo) {
        add("sudo");
    }
    packages
}

/// The base packages alone (the run's first resource with packages: they are merged).
pub(crate) fn package_resources(vars: &Vars) -> Vec<Box<dyn Resource>> {
    vec![Box::new(Packages::new("base", packages(vars)))]
}

/// Everything of the base set after the packages, except the deploy user's access
/// files (see [`deploy_access`]), which are applied commit-confirmed at the end.
pub fn resources(vars: &Vars, docker_group: bool, origins: &Origins) -> Vec<Box<dyn Resource>> {
    let mut out: Vec<Box<dyn Resource>> = Vec::new();
    if upgrade_policy(vars) == UpgradePolicy::Full {
        out.push(Box::new(SystemUpgrade));
    }
    if let Some(name) = &vars.hostname {
        out.push(Box::new(Hostname { name: name.clone() }));
        out.push(Box::new(Line::new(
            "/etc/hosts",
            "127.0.1.1",
            &format!("127.0.1.1\t{name}"),
        )));
    }
    if let Some(zone) = &vars.timezone {
        out.push(Box::new(Timezone {
            zone: zone.clone(),
            origin: origins.location("timezone"),
        }));
    }
    let nofile = vars.nofile.unwrap_or(DEFAULT_NOFILE);
    out.push(Box::new(
        File::new(NOFILE_LIMITS_PATH, nofile_limits(nofile)).mode(0o644),
    ));
    out.push(Box::new(
        File::new(NOFILE_SYSTEMD_PATH, nofile_systemd(nofile)).mode(0o644),
    ));
    if let Some(user) = DeployUser::from_vars(vars) {
        let mut groups = Vec::new();
        if docker_group {
            groups.push("docker".to_string());
        }
        out.push(Box::new(User {
            name: user.name.clone(),
            shell: user.shell.clone(),
            groups,
        }));
        out.push(Box::new(NoPasswordExpiry {
            user: user.name.clone(),
        }));
        // Home directories private to their owner (useradd makes them 0755 before
        // login.defs' UMASK 027 applies).
        out.push(Box::new(Directory::new(
            user.home.clone(),
            0o750,
            &user.name,
            &user.name,
        )));
        if user.authorized_keys.is_some() {
            out.push(Box::new(Directory::new(
                format!("{}/.ssh", user.home),
                0o700,
                &user.name,
                &user.name,
            )));
        }
    }
    if upgrade_policy(vars) != UpgradePolicy::None {
        out.push(Box::new(
            File::new(AUTO_UPGRADES_PATH, AUTO_UPGRADES).mode(0o644),
        ));
        out.push(Box::new(UnattendedUpgrades::of(vars)));
    }
    out.extend(files(vars.files.as_deref().unwrap_or_default()));
    out
}

/// systemd reads manager settings (`DefaultLimit*`) only when it (re)executes.
pub(crate) fn systemd_reexec(watched: Vec<ResourceId>) -> Box<dyn Resource> {
    Box::new(Trigger::new(
        ResourceId::of("systemd", "daemon-reexec"),
        watched,
        vec![Action::run(
            "systemctl daemon-reexec",
            "systemctl daemon-reexec",
        )],
    ))
}

/// `visudo -c -f` + the file: sudo must accept a sudoers drop-in before it is kept.
pub(crate) fn visudo_check() -> Command {
    Command::new("visudo").args(["-c", "-f"])
}

/// A user name as one sudoers word naming exactly that user: every character but
/// `[A-Za-z0-9_.-]` is backslash-escaped, so a leading `%` (a group), `+` (a netgroup) or
/// `#` (a uid), and the list and alias syntax (`,` `:` `=` `!` `(` `)` spaces), are
/// literal characters of the name, never sudoers syntax. `None` for a name with spaces,
/// control or non-ASCII characters (a backslash-newline would continue the line).
/// Inventory names are checked against the useradd rule at load; this holds for any string.
pub(crate) fn sudoers_user(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len() * 2);
    for c in name.chars() {
        if !c.is_ascii_graphic() {
            return None;
        }
        if !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
            out.push('\\');
        }
        out.push(c);
    }
    (!out.is_empty()).then_some(out)
}

/// The deploy user's key and sudo rights: applied commit-confirmed, because a wrong
/// key list or sudoers file can cut the tool's own access when it logs in as that user.
pub(crate) fn deploy_access(vars: &Vars) -> Option<Box<dyn Resource>> {
    let user = DeployUser::from_vars(vars)?;
    let mut members: Vec<Box<dyn Resource>> = Vec::new();
    if let Some(keys) = &user.authorized_keys {
        let mut text = keys.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        members.push(Box::new(
            File::new(user.authorized_keys_path(), text)
                .mode(0o600)
                .owned_by(&user.name, &user.name),
        ));
    }
    let sudoers = user.sudoers_path();
    if user.sudo {
        match sudoers_user(&user.name) {
            Some(word) => members.push(Box::new(
                File::new(
                    sudoers.clone(),
                    format!("# {MANAGED}\n{word} ALL=(ALL:ALL) NOPASSWD:ALL\n"),
                )
                .mode(0o440)
                .validate(visudo_check()),
            )),
            None => members.push(Box::new(InvalidVar {
                field: "deploy_user.name".into(),
                expected: "a user name of printable characters without spaces".into(),
                value: user.name.escape_debug().to_string(),
            })),
        }
    } else {
        members.push(Box::new(AbsentFile { path: sudoers }));
    }
    Some(Box::new(Guarded::new(
        ResourceGroup {
            id: ResourceId::of("deploy-access", &user.name),
            members,
        },
        None,
    )))
}

/// Inventory `files` (their modes are typed when the inventory loads; 0644 when unset).
pub fn files(files: &[FileVar]) -> Vec<Box<dyn Resource>> {
    files
        .iter()
        .map(|f| -> Box<dyn Resource> {
            Box::new(
                File::new(&f.path, f.content.clone())
                    .mode(f.mode.map_or(0o644, FileMode::bits))
                    .owned_by(
                        f.owner.as_deref().unwrap_or("root"),
                        f.group.as_deref().unwrap_or("root"),
                    ),
            )
        })
        .collect()
}

pub(crate) fn nofile_limits(n: u64) -> String {
    render(
        "limits-nofile.conf",
        include_str!("templates/limits-nofile.conf.j2"),
        NofileContext {
            managed: MANAGED,
            nofile: n,
        },
    )
}

pub(crate) fn nofile_systemd(n: u64) -> String {
    render(
        "system-nofile.conf",
        include_str!("templates/system-nofile.conf.j2"),
        NofileContext {
            managed: MANAGED,
            nofile: n,
        },
    )
}

#[derive(Serialize)]
struct NofileContext {
    managed: &'static str,
    nofile: u64,
}

pub(crate) const AUTO_UPGRADES: &str = "// Managed by provision; local changes are overwritten.\n\
APT::Periodic::Update-Package-Lists \"1\";\n\
APT::Periodic::Unattended-Upgrade \"1\";\n\
APT::Periodic::AutocleanInterval \"7\";\n";

/// The static host name (`/etc/hostname`) and the running one.
#[derive(Debug, Clone)]
pub(crate) struct Hostname {
    pub name: String,
}

impl Resource for Hostname {
    fn id(&self) -> ResourceId {
        ResourceId::named("hostname")
    }

    fn probes(&self) -> Vec<Probe> {
        vec![HostnameState.probe()]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let h = facts.read(&HostnameState)?;
        if h.configured == self.name && h.running == self.name {
            return Ok(Plan::noop(format!("host name is {}", self.name)));
        }
        let n = quote(&self.name);
        let set = Command::new("hostnamectl")
            .arg("set-hostname")
            .operand(self.name.clone());
        let fallback = Command::new("hostname").operand(self.name.clone());
        Ok(Plan::change(
            format!(
                "host name {} → {} (running: {})",
                h.configured, self.name, h.running
            ),
            vec![Action::run(
                format!("set host name {}", self.name),
                format!("printf '%s\\n' {n} > /etc/hostname\n{set} 2>/dev/null || {fallback}"),
            )],
        ))
    }
}

/// Accounts the tool logs in with must not be locked out by password aging: with
/// `PASS_MAX_DAYS` set, an expired (even unused) password makes PAM refuse key logins.
#[derive(Debug, Clone)]
pub(crate) struct NoPasswordExpiry {
    pub user: String,
}

impl Resource for NoPasswordExpiry {
    fn id(&self) -> ResourceId {
        ResourceId::of("password-expiry", &self.user)
    }

    fn probes(&self) -> Vec<Probe> {
        vec![
            PasswordMaxAge {
                user: self.user.clone(),
            }
            .probe(),
        ]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let age = facts.read(&PasswordMaxAge {
            user: self.user.clone(),
        })?;
        let fix = || {
            vec![Action::run(
                format!("chage --maxdays -1 {}", self.user),
                Command::new("chage")
                    .args(["--maxdays", "-1"])
                    .operand(self.user.clone())
                    .to_string(),
            )]
        };
        match age {
            MaxAge::Unlimited => Ok(Plan::noop(format!(
                "{}'s password never expires",
                self.user
            ))),
            MaxAge::Days(d) if d >= 99999 => Ok(Plan::noop(format!(
                "{}'s password never expires",
                self.user
            ))),
            // Created earlier in this run.
            MaxAge::NoAccount => Ok(Plan::change(
                format!("{}: no password expiry", self.user),
                fix(),
            )),
            MaxAge::Days(d) => Ok(Plan::change(
                format!("{}: password expiry after {d} days → never", self.user),
                fix(),
            )),
        }
    }
}

/// unattended-upgrades limited to security updates, with the origins of the host's
/// distribution (read from HostInfo at plan time), and its own reboot when the inventory
/// says `reboot = "if-required"`.
#[derive(Debug, Clone, Default)]
pub(crate) struct UnattendedUpgrades {
    /// `Automatic-Reboot-Time` (`HH:MM`, or `now`) when it may reboot; `None`: never.
    pub reboot_time: Option<String>,
}

impl UnattendedUpgrades {
    /// From `reboot` and `reboot_window` (checked at load): at the window's start, or right
    /// after the run without a window.
    pub(crate) fn of(vars: &Vars) -> Self {
        let reboot_time = match vars.reboot.unwrap_or_default() {
            RebootPolicy::Never => None,
            RebootPolicy::IfRequired => match crate::reboot::window_of(vars) {
                Ok(Some(w)) => Some(w.start_hhmm()),
                Ok(None) => Some("now".to_string()),
                Err(_) => None, // fail closed (the load refuses such a window)
            },
        };
        Self { reboot_time }
    }
}

#[derive(Serialize)]
struct OriginsContext<'a> {
    managed: &'static str,
    os: &'static str,
    reboot_time: Option<&'a str>,
}

/// The rendered `50unattended-upgrades` for `os_id`, or `None` for other systems.
pub(crate) fn unattended_upgrades_config(os_id: &str, reboot_time: Option<&str>) -> Option<String> {
    let os = match os_id {
        "debian" => "debian",
        "ubuntu" => "ubuntu",
        _ => return None,
    };
    Some(render(
        "50unattended-upgrades",
        include_str!("templates/50unattended-upgrades.j2"),
        OriginsContext {
            managed: MANAGED,
            os,
            reboot_time,
        },
    ))
}

impl Resource for UnattendedUpgrades {
    fn id(&self) -> ResourceId {
        ResourceId::file(UNATTENDED_UPGRADES_PATH)
    }

    fn probes(&self) -> Vec<Probe> {
        vec![
            HostInfo.probe(),
            PathState::new(UNATTENDED_UPGRADES_PATH).probe(),
        ]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let host = facts.read(&HostInfo)?;
        let reboot_time = self.reboot_time.as_deref();
        let content = unattended_upgrades_config(&host.os_id, reboot_time).ok_or_else(|| {
            FactError::Parse {
                key: "host".into(),
                what: "a Debian or Ubuntu system (unattended-upgrades origins)".into(),
                line: host.os_id.clone(),
            }
        })?;
        let current = facts.read(&PathState::new(UNATTENDED_UPGRADES_PATH))?;
        Ok(
            match DesiredFile::new(UNATTENDED_UPGRADES_PATH, content, 0o644).changes(&current)? {
                None => Plan::noop(format!("{} security origins configured", host.os_id)),
                Some((summary, action)) => Plan::change(summary, vec![action]),
            },
        )
    }
}

/// `apt-get upgrade` on every run (policy `full`), in the run's one apt transaction with
/// its package installs (lists refreshed first when older than the engine's limit). Never
/// idempotent: it changes whenever the package lists offer upgrades. The plan says what the current
/// lists offer and how old they are; lists older than a day count as pending.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SystemUpgrade;

/// Lists older than this make the upgrade pending even when they offer nothing.
pub(crate) const STALE_LISTS_MINUTES: u64 = 24 * 60;

impl Resource for SystemUpgrade {
    fn id(&self) -> ResourceId {
        ResourceId::of("apt", "upgrade")
    }

    fn probes(&self) -> Vec<Probe> {
        vec![PendingUpgrades.probe()]
    }

    /// Its one action is the run's apt transaction (`apt-get upgrade`): once that
    /// succeeded, a second simulation of the upgrade has nothing to find.
    fn verified_by_apply(&self) -> bool {
        true
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let pending = facts.read(&PendingUpgrades)?;
        let stale = match pending.lists_age_minutes {
            None => true,
            Some(m) => m > STALE_LISTS_MINUTES,
        };
        let age = match pending.lists_age_minutes {
            None => "no package lists yet".to_string(),
            Some(m) => format!("package lists {m} min old"),
        };
        if pending.packages.is_empty() && !stale {
            return Ok(Plan::noop(format!("no upgrades pending ({age})")));
        }
        let summary = if pending.packages.is_empty() {
            format!("refresh package lists and upgrade ({age})")
        } else {
            format!(
                "upgrade {} package(s) ({age}, refreshed first when stale): {}",
                pending.packages.len(),
                pending.packages.join(" ")
            )
        };
        // The engine's apt step: the lists refreshed when older than the run's limit (an
        // hour), then one transaction with the run's package installs.
        Ok(Plan::change(
            summary,
            vec![Action::UpgradePackages {
                install: Vec::new(),
            }],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use common::inventory::DeployUserVars;

    #[test]
    fn rendered_limits() {
        insta::assert_snapshot!("limits-nofile", nofile_limits(65536));
        insta::assert_snapshot!("system-nofile", nofile_systemd(65536));
        insta::assert_snapshot!("20auto-upgrades", AUTO_UPGRADES);
    }

    #[test]
    fn unattended_upgrades_origins_per_distribution() {
        insta::assert_snapshot!(
            "50unattended-upgrades-debian",
            unattended_upgrades_config("debian", None).unwrap()
        );
        insta::assert_snapshot!(
            "50unattended-upgrades-ubuntu",
            unattended_upgrades_config("ubuntu", None).unwrap()
        );
        assert!(unattended_upgrades_config("centos", None).is_none());
        // reboot = "if-required": its own reboot at the window's start.
        let vars = |reboot, window: Option<&str>| Vars {
            reboot,
            reboot_window: window.map(str::to_string),
            ..Vars::default()
        };
        let at = UnattendedUpgrades::of(&vars(Some(RebootPolicy::IfRequired), Some("02:30-04:00")));
        assert_eq!(at.reboot_time.as_deref(), Some("02:30"));
        let text = unattended_upgrades_config("debian", at.reboot_time.as_deref()).unwrap();
        assert!(
            text.contains("Unattended-Upgrade::Automatic-Reboot \"true\";\nUnattended-Upgrade::Automatic-Reboot-Time \"02:30\";"),
            "{text}"
        );
        let now = UnattendedUpgrades::of(&vars(Some(RebootPolicy::IfRequired), None));
        assert_eq!(now.reboot_time.as_deref(), Some("now"));
        assert_eq!(
            UnattendedUpgrades::of(&vars(None, Some("02:00-03:00"))).reboot_time,
            None
        );
    }

    #[test]
    fn unattended_upgrades_plan_picks_origins_from_host_info() {
        let r = UnattendedUpgrades::default();
        let deb = facts(&[
            ("host", ok(crate::testing::HOST_DEBIAN12_NSPAWN)),
            (
                "path:/etc/apt/apt.conf.d/50unattended-upgrades",
                ok("absent\n"),
            ),
        ]);
        let (summary, actions) = plan_of(&r, &deb).expect_change();
        assert_eq!(summary, "create /etc/apt/apt.conf.d/50unattended-upgrades");
        let Action::WriteFile(w) = &actions[0] else {
            panic!("{actions:?}")
        };
        assert!(String::from_utf8_lossy(&w.content).contains("Debian-Security"));

        let content = unattended_upgrades_config("ubuntu", None).unwrap();
        let ubu = facts(&[
            ("host", ok(crate::testing::HOST_UBUNTU2404_KVM)),
            (
                "path:/etc/apt/apt.conf.d/50unattended-upgrades",
                crate::testing::file_state(&content, 0o644, "root", "root"),
            ),
        ]);
        assert_eq!(
            plan_of(&r, &ubu).expect_noop(),
            "ubuntu security origins configured"
        );

        let other = facts(&[
            ("host", ok("os_id=centos\n")),
            (
                "path:/etc/apt/apt.conf.d/50unattended-upgrades",
                ok("absent\n"),
            ),
        ]);
        assert!(r.plan(&other).is_err(), "unsupported OS is an error");
    }

    /// A file's mode is typed at load (a bad one never reaches planning): the resources
    /// carry it, and the default is 0644.
    #[test]
    fn inventory_files_carry_their_typed_mode() {
        let file = |path: &str, content: &str, mode: Option<&str>| FileVar {
            path: path.into(),
            content: content.into(),
            mode: mode.map(|m| FileMode::parse(m).unwrap()),
            owner: None,
            group: None,
        };
        let vars = Vars {
            files: Some(vec![
                file("/etc/a", "a", Some("0640")),
                file("/etc/b", "b", None),
            ]),
            ..Vars::default()
        };
        let rs = files(vars.files.as_deref().unwrap());
        assert_eq!(rs[0].id(), "file:/etc/a");
        assert_eq!(rs[1].id(), "file:/etc/b");
        // Both exist with their content, as 0644: only the one with mode 0640 changes.
        let existing = |path: &str, b64: &str| {
            facts(&[(
                &*format!("path:{path}"),
                ok(&format!("regular file|644|root|root|1\n{b64}\n")),
            )])
        };
        let (summary, _) = plan_of(&*rs[0], &existing("/etc/a", "YQ==")).expect_change();
        assert!(summary.contains("set mode 640"), "{summary}");
        plan_of(&*rs[1], &existing("/etc/b", "Yg==")).expect_noop();
    }

    #[test]
    fn hostname_plan() {
        let r = Hostname {
            name: "web-1".into(),
        };
        let same = facts(&[("hostname", ok("configured=web-1\nrunning=web-1\n"))]);
        assert_eq!(plan_of(&r, &same).expect_noop(), "host name is web-1");
        let differs = facts(&[("hostname", ok("configured=web-1\nrunning=localhost\n"))]);
        let (summary, actions) = plan_of(&r, &differs).expect_change();
        assert_eq!(summary, "host name web-1 → web-1 (running: localhost)");
        assert_eq!(actions.len(), 1);
    }

    #[test]
    fn password_expiry_is_lifted_for_the_deploy_user() {
        let r = NoPasswordExpiry {
            user: "deploy".into(),
        };
        let key = "password-max-age:deploy";
        assert_eq!(
            plan_of(&r, &facts(&[(key, ok("\n"))])).expect_noop(),
            "deploy's password never expires"
        );
        assert_eq!(
            plan_of(&r, &facts(&[(key, ok("99999\n"))])).expect_noop(),
            "deploy's password never expires"
        );
        let (summary, _) = plan_of(&r, &facts(&[(key, ok("365\n"))])).expect_change();
        assert_eq!(summary, "deploy: password expiry after 365 days → never");
        let (summary, _) = plan_of(&r, &facts(&[(key, ok("absent\n"))])).expect_change();
        assert_eq!(summary, "deploy: no password expiry");
    }

    #[test]
    fn upgrade_policy_full_is_honest_about_pending_work() {
        let r = SystemUpgrade;
        let key = "apt-pending-upgrades";
        assert_eq!(
            plan_of(&r, &facts(&[(key, ok("lists_age_minutes=30\n"))])).expect_noop(),
            "no upgrades pending (package lists 30 min old)"
        );
        let (summary, _) = plan_of(
            &r,
            &facts(&[(key, ok("inst=openssl\nlists_age_minutes=30\n"))]),
        )
        .expect_change();
        assert_eq!(
            summary,
            "upgrade 1 package(s) (package lists 30 min old, refreshed first when stale): openssl"
        );
        let (summary, _) =
            plan_of(&r, &facts(&[(key, ok("lists_age_minutes=5000\n"))])).expect_change();
        assert_eq!(
            summary,
            "refresh package lists and upgrade (package lists 5000 min old)"
        );
    }

    /// Issue 11, path 3: a user name is one sudoers word naming that user, whatever it is
    /// (`%sudo` would otherwise grant the whole group passwordless root).
    #[test]
    fn sudoers_names_exactly_the_user() {
        assert_eq!(sudoers_user("deploy").as_deref(), Some("deploy"));
        assert_eq!(sudoers_user("%sudo").as_deref(), Some("\\%sudo"));
        assert_eq!(sudoers_user("#0").as_deref(), Some("\\#0"));
        assert_eq!(sudoers_user("+admins").as_deref(), Some("\\+admins"));
        assert_eq!(
            sudoers_user("a,b:c=d!e(f)").as_deref(),
            Some("a\\,b\\:c\\=d\\!e\\(f\\)")
        );
        assert_eq!(sudoers_user("a\nALL ALL=(ALL) ALL"), None);
        assert_eq!(sudoers_user("a b"), None);
        assert_eq!(sudoers_user(""), None);
        let vars = Vars {
            deploy_user: Some(DeployUserVars {
                name: Some("%sudo".into()),
                ..DeployUserVars::default()
            }),
            ..Vars::default()
        };
        let r = deploy_access(&vars).unwrap();
        let f = facts(&[("path:/etc/sudoers.d/90-provision-%sudo", ok("absent\n"))]);
        let (_, actions) = plan_of(r.as_ref(), &f).expect_change();
        let [Action::WriteFile(sudoers)] = actions.as_slice() else {
            panic!("{actions:?}")
        };
        let text = String::from_utf8_lossy(&sudoers.content);
        assert!(
            text.lines()
                .any(|l| l == "\\%sudo ALL=(ALL:ALL) NOPASSWD:ALL"),
            "{text}"
        );
        assert!(!text.lines().any(|l| l.starts_with('%')), "{text}");
    }

    #[test]
    fn deploy_access_is_guarded_and_validates_sudoers() {
        let vars = Vars {
            deploy_user: Some(DeployUserVars {
                authorized_keys: Some(vec!["ssh-ed25519 AAAAC3Nza deploy@laptop".into()]),
                ..DeployUserVars::default()
            }),
            ..Vars::default()
        };
        let r = deploy_access(&vars).unwrap();
        assert!(r.guards_access());
        assert_eq!(r.id(), "deploy-access:deploy");
        let f = facts(&[
            ("path:/home/deploy/.ssh/authorized_keys", ok("absent\n")),
            ("path:/etc/sudoers.d/90-provision-deploy", ok("absent\n")),
        ]);
        let (summary, actions) = plan_of(r.as_ref(), &f).expect_change();
        assert_eq!(
            summary,
            "create /home/deploy/.ssh/authorized_keys; create /etc/sudoers.d/90-provision-deploy"
        );
        let [Action::WriteFile(keys), Action::WriteFile(sudoers)] = actions.as_slice() else {
            panic!("{actions:?}")
        };
        assert_eq!(
            (keys.mode, keys.owner.as_str(), keys.group.as_str()),
            (0o600, "deploy", "deploy")
        );
        assert_eq!(keys.content, b"ssh-ed25519 AAAAC3Nza deploy@laptop\n");
        assert_eq!(sudoers.mode, 0o440);
        assert_eq!(
            sudoers.validate.as_ref().map(|c| c.to_string()).as_deref(),
            Some("visudo -c -f")
        );
        insta::assert_snapshot!("sudoers-deploy", String::from_utf8_lossy(&sudoers.content));
    }

    #[test]
    fn base_packages_follow_the_vars() {
        let vars = Vars {
            timezone: Some("Asia/Shanghai".into()),
            deploy_user: Some(DeployUserVars::default()),
            ..Vars::default()
        };
        assert_eq!(
            packages(&vars),
            [
                "curl",
                "wget",
                "git",
                "vim",
                "htop",
                "net-tools",
                "tzdata",
                "unattended-upgrades",
                "sudo"
            ]
        );
        let none = Vars {
            packages: Some(vec![]),
            upgrade: Some(UpgradePolicy::None),
            ..Vars::default()
        };
        assert!(packages(&none).is_empty());
    }
}
