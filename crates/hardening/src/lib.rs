//! Base system, hardening and Docker resource sets: what seeds/002 §3 and §11 and
//! seeds/001's security practices do by hand, as resources the engine plans and applies.
//!
//! * [`resources`]: everything `provision up` applies from this crate, in order: the
//!   preflight report, the distribution's mirror (`apt.mirror`), Docker's apt
//!   repository, daemon.json and fail2ban's jail (before any install), every package set
//!   (the engine merges them into one apt transaction), the base system, OS hardening,
//!   Docker, fail2ban, and last the changes that can cut access, each applied
//!   commit-confirmed: the deploy user's keys and sudo, UFW, sshd.
//! * [`drift_resources`]: the hardening subset alone, for `provision harden` and
//!   `provision harden --check` (a drift report).
//! * [`preflight`]: minimum hardware against the inventory (warnings, or an error when
//!   strict).
//!
//! Test hooks (never set them in production): `PROVISION_TEST_BREAK_SSH=1` and
//! `PROVISION_TEST_BREAK_FIREWALL=1`, read when the resources are built, make the sshd
//! and firewall changes lock every new login out, so that tests can prove the rollback.

#![deny(unreachable_pub)]

pub mod base;
pub mod docker;
pub mod docker_user;
pub mod facts;
pub mod firewall;
pub mod mirror;
pub mod os;
mod preflight;
pub mod reboot;
pub mod ssh;
pub mod support;

#[cfg(test)]
mod testing;

use common::Resource;
use common::inventory::{Origins, Vars};
use common::resource::ResourceId;
use common::resources::Packages;

pub use preflight::preflight;

/// Which parts of the sets the inventory turns on (defaults applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Selection {
    pub ssh: bool,
    pub firewall: bool,
    pub fail2ban: bool,
    pub os: bool,
    pub docker: bool,
}

impl Selection {
    pub(crate) fn from_vars(vars: &Vars) -> Selection {
        let h = vars.hardening.clone().unwrap_or_default();
        let on = h.enabled.unwrap_or(true);
        let part = |v: Option<bool>| on && v.unwrap_or(true);
        Selection {
            ssh: part(h.ssh),
            firewall: part(h.firewall),
            fail2ban: part(h.fail2ban),
            os: part(h.os),
            docker: vars.docker.as_ref().and_then(|d| d.enabled).unwrap_or(true),
        }
    }
}

fn test_hook(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

/// The sshd settings from the inventory (and the test hook from the environment).
pub fn ssh_settings(vars: &Vars) -> ssh::SshSettings {
    let h = vars.hardening.clone().unwrap_or_default();
    ssh::SshSettings {
        port: h.ssh_port,
        permit_root_login: h.permit_root_login,
        allow_tcp_forwarding: h.allow_tcp_forwarding.unwrap_or(false),
        allow_agent_forwarding: h.allow_agent_forwarding.unwrap_or(false),
        deploy_user_with_keys: base::DeployUser::from_vars(vars)
            .filter(|d| d.authorized_keys.as_ref().is_some_and(|k| !k.is_empty()))
            .map(|d| d.name),
        break_for_test: test_hook(ssh::BREAK_SSH_ENV),
    }
}

fn hardening_packages(sel: Selection) -> Option<Box<dyn Resource>> {
    let mut p = firewall::packages(sel.firewall, sel.fail2ban);
    if sel.os {
        p.extend(os::PACKAGES);
    }
    (!p.is_empty()).then(|| Box::new(Packages::new("hardening", p)) as Box<dyn Resource>)
}

/// OS hardening, fail2ban; `manager_watch` collects systemd manager drop-ins.
fn hardening_middle(sel: Selection, manager_watch: &mut Vec<ResourceId>) -> Vec<Box<dyn Resource>> {
    let mut out: Vec<Box<dyn Resource>> = Vec::new();
    if sel.os {
        out.extend(os::resources(sel.docker, manager_watch));
    }
    out
}

/// fail2ban's jail file. Placed before the first package set (like daemon.json): the
/// engine moves every install into the run's first apt action, whose fail2ban package
/// starts the server; written first, the jail is read by that start and needs no restart
/// after it. A server started before `python3-systemd` is configured exits (status 255,
/// the unit fails), and the service's own start after the apt step starts it.
fn fail2ban_jail(vars: &Vars, sel: Selection) -> Option<Box<dyn Resource>> {
    if !sel.fail2ban {
        return None;
    }
    let h = vars.hardening.clone().unwrap_or_default();
    Some(Box::new(firewall::Fail2banJail {
        ssh_port: h.ssh_port,
        ufw: sel.firewall,
        ignore_ips: h.fail2ban_ignore_ips.unwrap_or_default(),
    }))
}

/// fail2ban's service, after everything it reads is installed.
fn fail2ban_service(sel: Selection) -> Option<Box<dyn Resource>> {
    sel.fail2ban
        .then(|| Box::new(firewall::fail2ban_service()) as Box<dyn Resource>)
}

/// The UFW policy from the inventory (and the test hook from the environment).
pub(crate) fn firewall_settings(vars: &Vars) -> firewall::Firewall {
    let h = vars.hardening.clone().unwrap_or_default();
    firewall::Firewall {
        ssh_port: h.ssh_port,
        sshd_managed: Selection::from_vars(vars).ssh,
        allow_ports: h.allow_ports.unwrap_or_default(),
        break_for_test: test_hook(firewall::BREAK_FIREWALL_ENV),
        log_martians: Selection::from_vars(vars).os,
        ssh_rate_limit: h.ssh_rate_limit.unwrap_or(true),
        exclusive: h.firewall_exclusive.unwrap_or(true),
    }
}

/// UFW, Docker's `DOCKER-USER` chain (when Docker is on: published ports obey the same
/// rules), then sshd, all commit-confirmed (UFW first: a new SSH port is open before
/// sshd moves to it).
fn access_guarded(vars: &Vars, sel: Selection) -> Vec<Box<dyn Resource>> {
    let mut out: Vec<Box<dyn Resource>> = Vec::new();
    if sel.firewall {
        out.push(Box::new(firewall_settings(vars)));
        if sel.docker {
            out.push(Box::new(docker_user::DockerUserChain {
                firewall: firewall_settings(vars),
            }));
        }
    }
    if sel.ssh {
        out.push(Box::new(ssh::SshdConfig {
            settings: ssh_settings(vars),
        }));
    }
    out
}

/// Everything `provision up` applies to a host from this crate, in order.
pub fn resources(vars: &Vars) -> Vec<Box<dyn Resource>> {
    resources_at(vars, &Origins::default())
}

/// [`resources`], with where the inventory sets each var: checks made on the host (a
/// time zone missing from its zoneinfo) name the inventory line.
pub fn resources_at(vars: &Vars, origins: &Origins) -> Vec<Box<dyn Resource>> {
    let sel = Selection::from_vars(vars);
    let docker_vars = vars.docker.clone().unwrap_or_default();
    let mut out: Vec<Box<dyn Resource>> = Vec::new();
    if let Some(minimum) = &vars.minimum {
        out.push(Box::new(preflight::MinimumHardwareCheck {
            minimum: minimum.clone(),
        }));
    }
    if vars.apt.is_some() {
        out.push(Box::new(mirror::AptMirror {
            vars: vars.apt.clone().unwrap_or_default(),
        }));
    }
    if sel.docker {
        out.push(Box::new(docker::DockerRepository {
            vars: docker_vars.clone(),
        }));
        // Before the first package set: the engine moves every install and the upgrade
        // into the run's first apt action, whose Docker package starts dockerd; written
        // first, daemon.json is read by that start and needs no restart after it.
        out.push(Box::new(docker::daemon_config(&docker_vars)));
    }
    out.extend(fail2ban_jail(vars, sel));
    out.extend(base::package_resources(vars));
    out.extend(hardening_packages(sel));
    if sel.docker {
        out.push(Box::new(docker::DockerPackages {
            vars: docker_vars.clone(),
        }));
    }
    out.extend(base::resources(vars, sel.docker, origins));
    let mut manager_watch = vec![ResourceId::file(base::NOFILE_SYSTEMD_PATH)];
    out.extend(hardening_middle(sel, &mut manager_watch));
    out.push(base::systemd_reexec(manager_watch));
    if sel.docker {
        out.push(Box::new(docker::service()));
    }
    out.extend(fail2ban_service(sel));
    out.push(Box::new(reboot::RebootRequired::of(vars)));
    // Access-guarded changes last (commit-confirmed after everything else is in place).
    out.extend(base::deploy_access(vars));
    out.extend(access_guarded(vars, sel));
    out
}

/// The hardening subset (`provision harden`, `provision harden --check`): packages of
/// the firewall and fail2ban, OS hardening, fail2ban, UFW and sshd.
pub fn drift_resources(vars: &Vars) -> Vec<Box<dyn Resource>> {
    let sel = Selection::from_vars(vars);
    let mut out: Vec<Box<dyn Resource>> = Vec::new();
    out.extend(fail2ban_jail(vars, sel));
    out.extend(hardening_packages(sel));
    let mut manager_watch = Vec::new();
    out.extend(hardening_middle(sel, &mut manager_watch));
    if !manager_watch.is_empty() {
        out.push(base::systemd_reexec(manager_watch));
    }
    out.extend(fail2ban_service(sel));
    out.extend(access_guarded(vars, sel));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::inventory::{DeployUserVars, DockerVars, HardeningVars, MinimumHardware};

    fn ids(rs: &[Box<dyn Resource>]) -> Vec<String> {
        rs.iter().map(|r| r.id().to_string()).collect()
    }

    fn full_vars() -> Vars {
        Vars {
            timezone: Some("Asia/Shanghai".into()),
            hostname: Some("web-1".into()),
            deploy_user: Some(DeployUserVars {
                authorized_keys: Some(vec!["ssh-ed25519 AAAA deploy".into()]),
                ..DeployUserVars::default()
            }),
            minimum: Some(MinimumHardware::default()),
            ..Vars::default()
        }
    }

    #[test]
    fn up_order_packages_first_guarded_last() {
        let rs = resources(&full_vars());
        insta::assert_snapshot!("resources-up-order", ids(&rs).join("\n"));
        let guarded: Vec<String> = rs
            .iter()
            .filter(|r| r.guards_access())
            .map(|r| r.id().to_string())
            .collect();
        assert_eq!(
            guarded,
            [
                "deploy-access:deploy",
                "firewall:ufw",
                "firewall:docker-user",
                "sshd"
            ]
        );
        let ids = ids(&rs);
        let last_guarded_free = rs.iter().rposition(|r| !r.guards_access()).unwrap();
        let first_guarded = rs.iter().position(|r| r.guards_access()).unwrap();
        assert!(last_guarded_free < first_guarded, "{ids:?}");
        let repo = ids.iter().position(|i| i == "docker:repository").unwrap();
        let first_packages = ids.iter().position(|i| i.starts_with("packages:")).unwrap();
        assert!(repo < first_packages);
        let daemon_json = ids
            .iter()
            .position(|i| i == "file:/etc/docker/daemon.json")
            .unwrap();
        assert!(daemon_json < first_packages, "{ids:?}");
        // The files a package's own start reads come before the run's first apt action,
        // in `up` and in `harden` alike.
        for set in [ids.clone(), self::ids(&drift_resources(&full_vars()))] {
            let jail = set
                .iter()
                .position(|i| i == "file:/etc/fail2ban/jail.d/provision.local")
                .unwrap();
            let first_packages = set.iter().position(|i| i.starts_with("packages:")).unwrap();
            let service = set
                .iter()
                .position(|i| i == "service:fail2ban.service")
                .unwrap();
            assert!(jail < first_packages && first_packages < service, "{set:?}");
        }
    }

    /// The resources of `up` that install and start Docker, in their real order: Docker's
    /// repository, daemon.json, the base package set (the run's first apt action),
    /// Docker's packages and its service.
    fn docker_job() -> (Vars, Vec<Box<dyn Resource>>) {
        let vars = Vars {
            hardening: Some(HardeningVars {
                enabled: Some(false),
                ..HardeningVars::default()
            }),
            ..Vars::default()
        };
        let wanted = [
            "docker:repository",
            "file:/etc/docker/daemon.json",
            "packages:base",
            "packages:docker",
            "service:docker.service",
        ];
        let rs: Vec<Box<dyn Resource>> = resources(&vars)
            .into_iter()
            .filter(|r| wanted.contains(&r.id().as_str()))
            .collect();
        assert_eq!(rs.len(), wanted.len(), "{:?}", ids(&rs));
        (vars, rs)
    }

    /// A Debian 12 host's probe outputs: `installed` (every package of the job, or none),
    /// daemon.json's content (`None`: absent) and docker.service's state.
    fn docker_host(
        vars: &Vars,
        installed: bool,
        daemon_json: Option<&str>,
        docker: &str,
    ) -> std::collections::BTreeMap<String, common::ProbeOutput> {
        use crate::testing::*;
        let host =
            common::Fact::parse(&common::facts::builtin::HostInfo, &ok(HOST_DEBIAN12_NSPAWN))
                .unwrap();
        let mut dpkg = String::new();
        if installed {
            let source = docker::source_for(&DockerVars::default(), &host);
            for p in base::packages(vars)
                .iter()
                .map(String::as_str)
                .chain(docker::packages_for(source, &host))
            {
                dpkg.push_str(&format!("{p}\tii \t1.0\n"));
            }
        }
        let mut m = std::collections::BTreeMap::from([
            ("host".to_string(), ok(HOST_DEBIAN12_NSPAWN)),
            ("dpkg".to_string(), ok(&dpkg)),
            (
                "unit:docker.service".to_string(),
                ok(&format!("LoadState=loaded\n{docker}")),
            ),
        ]);
        for path in [
            "/etc/apt/keyrings/docker.asc",
            "/etc/apt/sources.list.d/docker.list",
            "/etc/apt/preferences.d/docker.pref",
        ] {
            m.insert(format!("path:{path}"), ok("absent\n"));
        }
        m.insert(
            "path:/etc/docker/daemon.json".to_string(),
            match daemon_json {
                Some(text) => file_state(text, 0o644, "root", "root"),
                None => ok("absent\n"),
            },
        );
        m
    }

    /// [`docker_job`] on a simulated host in `mode`: its report and the host.
    fn converge_docker_job(
        mode: common::engine::Mode,
        before: std::collections::BTreeMap<String, common::ProbeOutput>,
        after: std::collections::BTreeMap<String, common::ProbeOutput>,
    ) -> (
        common::report::HostReport,
        common::transport::fake::FakeTransport,
    ) {
        let (_, rs) = docker_job();
        let host = common::testing::simulated_host("web1", before, after);
        let options = common::engine::Options {
            mode,
            ..common::engine::Options::default()
        };
        let report = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(common::engine::converge(&host, &rs, &options));
        (report, host)
    }

    /// `up` of [`docker_job`] on a simulated host, which it changes: the apply script.
    fn apply_docker_job(
        before: std::collections::BTreeMap<String, common::ProbeOutput>,
        after: std::collections::BTreeMap<String, common::ProbeOutput>,
    ) -> String {
        let (report, host) = converge_docker_job(common::engine::Mode::Apply, before, after);
        assert_eq!(
            report.outcome,
            common::report::HostOutcome::Changed,
            "{report:#?}"
        );
        host.calls()
            .into_iter()
            .find(|c| c.script.contains("@@provision-step-"))
            .map(|c| c.script)
            .unwrap_or_else(|| panic!("no apply script: {report:#?}"))
    }

    /// Issue 14: on a fresh host dockerd is started once, by its package inside the run's
    /// one apt transaction, with daemon.json already in place: the write comes before
    /// the apt step, and no restart follows.
    #[test]
    fn a_fresh_host_gets_daemon_json_before_docker_is_installed_and_no_restart() {
        let (vars, _) = docker_job();
        let config = docker::daemon_json(&DockerVars::default());
        let fresh = docker_host(&vars, false, None, "ActiveState=inactive\nUnitFileState=\n");
        let done = docker_host(
            &vars,
            true,
            Some(&config),
            "ActiveState=active\nUnitFileState=enabled\n",
        );
        // check: daemon.json's write is listed before the first package set, and the
        // service plans its start, no restart.
        let (check, _) =
            converge_docker_job(common::engine::Mode::Check, fresh.clone(), done.clone());
        let listed: Vec<&str> = check.resources.iter().map(|r| r.id.as_str()).collect();
        let at = |id: &str| listed.iter().position(|i| *i == id).unwrap();
        assert!(
            at("file:/etc/docker/daemon.json") < at("packages:base"),
            "{listed:?}"
        );
        let service = &check.resources[at("service:docker.service")];
        assert_eq!(
            service.actions,
            ["enable docker.service", "start docker.service"]
        );
        let apply = apply_docker_job(fresh, done);
        let write = apply
            .find("__provision_put /etc/docker/daemon.json ")
            .expect("daemon.json is written");
        let apt = apply.find("\n__provision_apt install ").expect("apt step");
        assert!(write < apt, "daemon.json after the apt step:\n{apply}");
        assert_eq!(
            apply.matches("\n__provision_apt ").count(),
            1,
            "one apt transaction"
        );
        assert!(!apply.contains("restart docker.service"), "{apply}");
        // A unit its package did not start is started, after the apt step, once.
        let start = apply.find("systemctl start docker.service").unwrap();
        assert!(apt < start);
        assert_eq!(apply.matches("systemctl start docker.service").count(), 1);
    }

    /// A running dockerd reads a changed daemon.json only when restarted: one restart,
    /// after the write.
    #[test]
    fn a_changed_daemon_json_restarts_a_running_docker_once() {
        let (vars, _) = docker_job();
        let config = docker::daemon_json(&DockerVars::default());
        let active = "ActiveState=active\nUnitFileState=enabled\n";
        let before = docker_host(&vars, true, Some("{}\n"), active);
        let after = docker_host(&vars, true, Some(&config), active);
        let apply = apply_docker_job(before, after);
        let write = apply
            .find("__provision_put /etc/docker/daemon.json ")
            .unwrap();
        let restart = apply.find("systemctl restart docker.service").unwrap();
        assert!(write < restart, "{apply}");
        assert_eq!(apply.matches("systemctl restart docker.service").count(), 1);
        assert!(!apply.contains("systemctl start docker.service"), "{apply}");
        assert!(!apply.contains("__provision_apt "), "{apply}");
    }

    #[test]
    fn drift_set_is_the_hardening_subset() {
        let rs = drift_resources(&full_vars());
        insta::assert_snapshot!("resources-drift", ids(&rs).join("\n"));
        // Docker's DOCKER-USER chain is firewall, not Docker's installation.
        assert!(
            !ids(&rs)
                .iter()
                .any(|i| (i.contains("docker") && i != "firewall:docker-user") || i == "timezone")
        );
    }

    #[test]
    fn switches() {
        let off = Vars {
            hardening: Some(HardeningVars {
                enabled: Some(false),
                ..HardeningVars::default()
            }),
            docker: Some(DockerVars {
                enabled: Some(false),
                ..DockerVars::default()
            }),
            ..Vars::default()
        };
        assert!(drift_resources(&off).is_empty());
        let ids = ids(&resources(&off));
        assert_eq!(
            ids,
            [
                "packages:base",
                "file:/etc/security/limits.d/90-provision-nofile.conf",
                "file:/etc/systemd/system.conf.d/90-provision-nofile.conf",
                "file:/etc/apt/apt.conf.d/20auto-upgrades",
                "file:/etc/apt/apt.conf.d/50unattended-upgrades",
                "systemd:daemon-reexec",
                "reboot-required"
            ]
        );
        let no_fw = Vars {
            hardening: Some(HardeningVars {
                firewall: Some(false),
                ..HardeningVars::default()
            }),
            ..Vars::default()
        };
        assert!(
            !drift_resources(&no_fw)
                .iter()
                .any(|r| r.id().kind() == "firewall")
        );
        // Docker off: no DOCKER-USER chain to manage.
        let no_docker = Vars {
            docker: Some(DockerVars {
                enabled: Some(false),
                ..DockerVars::default()
            }),
            ..Vars::default()
        };
        let ids_no_docker: Vec<String> = resources(&no_docker)
            .iter()
            .map(|r| r.id().to_string())
            .collect();
        assert!(ids_no_docker.contains(&"firewall:ufw".to_string()));
        assert!(!ids_no_docker.contains(&"firewall:docker-user".to_string()));
    }

    #[test]
    fn firewall_is_exclusive_and_rate_limits_ssh_unless_told_otherwise() {
        let f = firewall_settings(&Vars::default());
        assert!(f.exclusive && f.ssh_rate_limit && f.log_martians);
        let relaxed = Vars {
            hardening: Some(HardeningVars {
                firewall_exclusive: Some(false),
                ssh_rate_limit: Some(false),
                os: Some(false),
                ..HardeningVars::default()
            }),
            ..Vars::default()
        };
        let f = firewall_settings(&relaxed);
        assert!(!f.exclusive && !f.ssh_rate_limit && !f.log_martians);
        assert_eq!(f.rules(&[22])[0].verb, "allow");
    }

    #[test]
    fn root_login_needs_deploy_keys() {
        assert_eq!(
            ssh_settings(&full_vars()).deploy_user_with_keys.as_deref(),
            Some("deploy")
        );
        let no_keys = Vars {
            deploy_user: Some(DeployUserVars::default()),
            ..Vars::default()
        };
        assert_eq!(ssh_settings(&no_keys).deploy_user_with_keys, None);
    }
}
