//! UFW (default deny incoming, SSH allowed first and rate-limited, then 80, 443 and the
//! inventory's ports) applied commit-confirmed, and fail2ban with an sshd jail that
//! starts on Debian 12 (no /var/log/auth.log there: systemd backend) and on Ubuntu.
//!
//! UFW only adds rules: rules it finds besides ours are left alone (they are the
//! operator's). Docker-published ports bypass UFW (Docker writes its own iptables
//! chains): bind internal services to 127.0.0.1.
//!
//! **Test hook** (tests only): with `PROVISION_TEST_BREAK_FIREWALL=1` in the environment
//! when the resources are built, the SSH allow rule is left out, so enabling UFW locks
//! new logins out and the commit-confirmed apply must roll it back.

use common::facts::builtin::{PathKind, PathState};
use common::resources::Service;
use common::{Action, Fact, FactError, Facts, Plan, Probe, Resource};
use serde::Serialize;

use crate::facts::{SshdEffective, UfwStatus};
use crate::support::{DesiredFile, MANAGED, render};

pub const BREAK_FIREWALL_ENV: &str = "PROVISION_TEST_BREAK_FIREWALL";
/// Kernel settings UFW applies whenever it starts.
pub const UFW_SYSCTL_PATH: &str = "/etc/ufw/sysctl.conf";
pub const JAIL_PATH: &str = "/etc/fail2ban/jail.d/provision.local";
pub const AUTH_LOG: &str = "/var/log/auth.log";
/// UFW's state before this run's change, for the rollback.
pub const UFW_SAVED_STATE: &str = "/var/lib/provision/ufw-previous";

/// Saves UFW's rules and settings before the change.
const SAVE_STATE: &str = r#"d=/var/lib/provision/ufw-previous
rm -rf "$d"; mkdir -p "$d"; chmod 700 "$d"
for f in /etc/ufw/user.rules /etc/ufw/user6.rules /etc/ufw/ufw.conf /etc/default/ufw; do
  if [ -f "$f" ]; then cp -p "$f" "$d/$(echo "$f" | tr / _)"; fi
done
if ufw status | grep -q '^Status: active'; then echo active > "$d/state"; else echo inactive > "$d/state"; fi"#;

/// Restores access: back to the saved rules when UFW was active before, else off.
pub const ROLLBACK: &str = r#"PATH="$PATH:/usr/sbin:/sbin"; d=/var/lib/provision/ufw-previous
if [ "$(cat "$d/state" 2>/dev/null)" = active ]; then
  for f in /etc/ufw/user.rules /etc/ufw/user6.rules /etc/ufw/ufw.conf /etc/default/ufw; do
    s="$d/$(echo "$f" | tr / _)"; if [ -f "$s" ]; then cp -p "$s" "$f"; fi
  done
  ufw reload
else
  ufw --force disable
fi"#;

/// The UFW policy the inventory asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firewall {
    /// `hardening.ssh_port`: allowed besides the port(s) sshd listens on now.
    pub ssh_port: Option<u16>,
    /// Opened besides SSH, 80 and 443.
    pub allow_ports: Vec<u16>,
    /// Test hook: leave SSH out (see the module docs).
    pub break_for_test: bool,
    /// OS hardening logs martian packets; UFW's own sysctl file turns that off again on
    /// every start unless it is edited too.
    pub log_martians: bool,
}

/// The edit of UFW's sysctl file that keeps martian logging on.
const UFW_LOG_MARTIANS: &str = "if [ -f /etc/ufw/sysctl.conf ]; then sed -i 's|^\\(net/ipv4/conf/[a-z]*/log_martians\\)=0|\\1=1|' /etc/ufw/sysctl.conf; fi";

/// One rule the firewall must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedRule {
    pub port: u16,
    /// `limit` for SSH, `allow` otherwise.
    pub verb: &'static str,
    pub comment: &'static str,
}

impl Firewall {
    /// SSH first (the ports sshd listens on now, from `sshd -T`, and the inventory's),
    /// then 80, 443 and the inventory's ports.
    pub fn rules(&self, sshd_ports: &[u16]) -> Vec<WantedRule> {
        let mut rules: Vec<WantedRule> = Vec::new();
        let mut add = |port: u16, verb: &'static str, comment: &'static str| {
            if !rules.iter().any(|r| r.port == port) {
                rules.push(WantedRule {
                    port,
                    verb,
                    comment,
                });
            }
        };
        if !self.break_for_test {
            for &p in sshd_ports.iter().chain(self.ssh_port.iter()) {
                add(p, "limit", "provision: ssh");
            }
        }
        for p in [80, 443] {
            add(p, "allow", "provision: web");
        }
        for &p in &self.allow_ports {
            add(p, "allow", "provision: inventory");
        }
        rules
    }
}

impl Resource for Firewall {
    fn id(&self) -> String {
        "firewall:ufw".into()
    }

    fn probes(&self) -> Vec<Probe> {
        vec![
            UfwStatus.probe(),
            SshdEffective.probe(),
            PathState::new(UFW_SYSCTL_PATH).probe(),
        ]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, FactError> {
        let ufw = facts.read(&UfwStatus)?;
        let sshd = facts.read(&SshdEffective)?;
        let rules = self.rules(&sshd.ports());
        let mut wrong = Vec::new();
        if !ufw.installed {
            wrong.push("ufw not installed yet".to_string());
        } else if !ufw.active {
            wrong.push("ufw inactive".to_string());
        } else {
            if ufw.default_incoming != "deny" {
                wrong.push(format!("incoming default {}", ufw.default_incoming));
            }
            if ufw.default_outgoing != "allow" {
                wrong.push(format!("outgoing default {}", ufw.default_outgoing));
            }
            for r in &rules {
                match ufw.admits(r.port) {
                    None => wrong.push(format!("{}/tcp not open", r.port)),
                    Some(found) if r.verb == "limit" && found.action != "LIMIT" => {
                        wrong.push(format!("{}/tcp not rate-limited", r.port))
                    }
                    Some(_) => {}
                }
            }
        }
        if self.log_martians {
            let sysctl = facts.read(&PathState::new(UFW_SYSCTL_PATH))?;
            let text = String::from_utf8_lossy(sysctl.content.as_deref().unwrap_or_default());
            if text
                .lines()
                .any(|l| l.starts_with("net/ipv4/conf/") && l.ends_with("/log_martians=0"))
            {
                wrong.push(format!("{UFW_SYSCTL_PATH} turns martian logging off"));
            }
        }
        let ports: Vec<String> = rules
            .iter()
            .map(|r| {
                format!(
                    "{}/tcp{}",
                    r.port,
                    if r.verb == "limit" { " (limit)" } else { "" }
                )
            })
            .collect();
        if wrong.is_empty() {
            return Ok(Plan::noop(format!(
                "ufw active, deny incoming, open: {}",
                ports.join(", ")
            )));
        }
        let mut script = vec!["PATH=\"$PATH:/usr/sbin:/sbin\"".to_string()];
        if self.log_martians {
            script.push(UFW_LOG_MARTIANS.to_string());
        }
        script.extend([
            "ufw default deny incoming".to_string(),
            "ufw default allow outgoing".to_string(),
        ]);
        for r in &rules {
            script.push(format!(
                "ufw {} {}/tcp comment '{}'",
                r.verb, r.port, r.comment
            ));
        }
        script.push("ufw --force enable".to_string());
        Ok(Plan::change(
            format!(
                "{} → open {} and enable",
                wrong.join(", "),
                ports.join(", ")
            ),
            vec![
                Action::run("save ufw state for the rollback", SAVE_STATE),
                Action::run("configure and enable ufw", script.join("\n")),
            ],
        ))
    }

    fn guards_access(&self) -> bool {
        true
    }

    fn rollback_script(&self) -> Option<String> {
        Some(ROLLBACK.into())
    }
}

/// fail2ban's jail file; the sshd backend is chosen from whether /var/log/auth.log exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail2banJail {
    /// Ports of the sshd jail's bans.
    pub ssh_port: Option<u16>,
    /// Ban through UFW when it is managed, else nftables.
    pub ufw: bool,
    pub ignore_ips: Vec<String>,
}

#[derive(Serialize)]
struct JailContext<'a> {
    managed: &'static str,
    backend: &'a str,
    banaction: &'a str,
    banaction_allports: &'a str,
    ignore_ips: String,
    port: String,
}

impl Fail2banJail {
    /// `systemd` when sshd does not log to a file (Debian 12 has no rsyslog), else `auto`.
    pub fn render(&self, auth_log_exists: bool) -> String {
        let mut ignore = vec!["127.0.0.1/8".to_string(), "::1".to_string()];
        ignore.extend(self.ignore_ips.iter().cloned());
        let (banaction, allports) = if self.ufw {
            ("ufw", "ufw")
        } else {
            ("nftables-multiport", "nftables-allports")
        };
        render(
            "provision.local",
            include_str!("templates/fail2ban-jail.local.j2"),
            JailContext {
                managed: MANAGED,
                backend: if auth_log_exists { "auto" } else { "systemd" },
                banaction,
                banaction_allports: allports,
                ignore_ips: ignore.join(" "),
                port: match self.ssh_port {
                    Some(p) => p.to_string(),
                    None => "ssh".into(),
                },
            },
        )
    }
}

impl Resource for Fail2banJail {
    fn id(&self) -> String {
        format!("file:{JAIL_PATH}")
    }

    fn probes(&self) -> Vec<Probe> {
        vec![
            PathState::new(JAIL_PATH).probe(),
            PathState::new(AUTH_LOG).probe(),
        ]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, FactError> {
        let auth_log = facts.read(&PathState::new(AUTH_LOG))?.kind != PathKind::Absent;
        let current = facts.read(&PathState::new(JAIL_PATH))?;
        let backend = if auth_log { "auto" } else { "systemd" };
        Ok(
            match DesiredFile::new(JAIL_PATH, self.render(auth_log), 0o644).changes(&current)? {
                None => Plan::noop(format!("sshd jail configured (backend {backend})")),
                Some((summary, action)) => Plan::change(
                    format!("{summary} (sshd jail, backend {backend})"),
                    vec![action],
                ),
            },
        )
    }
}

/// Packages of the firewall and fail2ban (python3-systemd: fail2ban's systemd backend;
/// nftables: its ban action when UFW is not managed).
pub fn packages(firewall: bool, fail2ban: bool) -> Vec<&'static str> {
    let mut p = Vec::new();
    if firewall {
        p.push("ufw");
    }
    if fail2ban {
        p.extend(["fail2ban", "python3-systemd"]);
        if !firewall {
            p.push("nftables");
        }
    }
    p
}

/// fail2ban enabled and running, restarted when its jail changed.
pub fn fail2ban_service() -> Service {
    Service::running("fail2ban.service")
        .reload_on([format!("file:{JAIL_PATH}")])
        .restart_on_change()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    const SSHD_T: &str = "port 22\npermitrootlogin without-password\n";

    fn fw() -> Firewall {
        Firewall {
            ssh_port: None,
            allow_ports: vec![8443],
            break_for_test: false,
            log_martians: true,
        }
    }

    const UFW_SYSCTL: &str = "net/ipv4/icmp_echo_ignore_broadcasts=1\nnet/ipv4/conf/all/log_martians=0\nnet/ipv4/conf/default/log_martians=0\n";

    fn ufw_facts(status: &str, sysctl: Option<&str>) -> Facts {
        facts(&[
            ("ufw", ok(status)),
            ("sshd-effective", ok(SSHD_T)),
            (
                "path:/etc/ufw/sysctl.conf",
                match sysctl {
                    Some(c) => file_state(c, 0o644, "root", "root"),
                    None => ok("absent\n"),
                },
            ),
        ])
    }

    #[test]
    fn fresh_host_without_ufw_gets_ssh_first_then_web_then_inventory_ports() {
        let f = ufw_facts("ufw: not installed\n", None);
        let r = fw();
        let (summary, actions) = plan_of(&r, &f).expect_change();
        assert_eq!(
            summary,
            "ufw not installed yet → open 22/tcp (limit), 80/tcp, 443/tcp, 8443/tcp and enable"
        );
        let s = scripts(&actions);
        assert!(s[0].contains("ufw-previous"), "state saved first");
        insta::assert_snapshot!("ufw-script", s[1]);
        let lines: Vec<&str> = s[1].lines().collect();
        let at = |prefix: &str| lines.iter().position(|l| l.starts_with(prefix)).unwrap();
        assert!(
            at("ufw limit 22/tcp") < at("ufw allow")
                && at("ufw limit 22/tcp") < at("ufw --force enable"),
            "SSH before anything opens or enables"
        );
        assert_eq!(*lines.last().unwrap(), "ufw --force enable");
        assert!(r.guards_access());
        assert!(r.rollback_script().unwrap().contains("ufw --force disable"));
    }

    #[test]
    fn the_ssh_port_in_use_and_the_inventory_port_are_both_allowed() {
        let r = Firewall {
            ssh_port: Some(2222),
            ..fw()
        };
        let rules = r.rules(&[22]);
        assert_eq!(
            rules.iter().map(|r| (r.port, r.verb)).collect::<Vec<_>>(),
            [
                (22, "limit"),
                (2222, "limit"),
                (80, "allow"),
                (443, "allow"),
                (8443, "allow")
            ]
        );
    }

    #[test]
    fn active_with_all_rules_is_a_noop_and_a_deleted_rule_is_drift() {
        let fixed = UFW_SYSCTL.replace("=0", "=1");
        let f = ufw_facts(
            include_str!("../tests/fixtures/ufw-status-active.txt"),
            Some(&fixed),
        );
        let r = Firewall {
            allow_ports: vec![],
            ..fw()
        };
        assert_eq!(
            plan_of(&r, &f).expect_noop(),
            "ufw active, deny incoming, open: 22/tcp (limit), 80/tcp, 443/tcp"
        );
        let (summary, _) = plan_of(&fw(), &f).expect_change();
        assert_eq!(
            summary,
            "8443/tcp not open → open 22/tcp (limit), 80/tcp, 443/tcp, 8443/tcp and enable"
        );
        let allowed_not_limited = include_str!("../tests/fixtures/ufw-status-active.txt").replace(
            "22/tcp                     LIMIT IN",
            "22/tcp                     ALLOW IN",
        );
        let f = ufw_facts(&allowed_not_limited, Some(&fixed));
        let (summary, _) = plan_of(&r, &f).expect_change();
        assert!(summary.starts_with("22/tcp not rate-limited"), "{summary}");
    }

    /// Captured from a lab host after converge.
    #[test]
    fn real_lab_host_after_converge_is_a_noop() {
        let fixed = UFW_SYSCTL.replace("=0", "=1");
        let f = ufw_facts(
            include_str!("../tests/fixtures/ufw-status-lab.txt"),
            Some(&fixed),
        );
        let r = Firewall {
            allow_ports: vec![],
            ..fw()
        };
        assert_eq!(
            plan_of(&r, &f).expect_noop(),
            "ufw active, deny incoming, open: 22/tcp (limit), 80/tcp, 443/tcp"
        );
    }

    #[test]
    fn inactive_ufw_is_enabled() {
        let f = ufw_facts("Status: inactive\n", Some(UFW_SYSCTL));
        let (summary, _) = plan_of(&fw(), &f).expect_change();
        assert!(
            summary.starts_with("ufw inactive, /etc/ufw/sysctl.conf turns martian logging off → "),
            "{summary}"
        );
    }

    #[test]
    fn ufw_would_turn_martian_logging_off_again() {
        let f = ufw_facts(
            include_str!("../tests/fixtures/ufw-status-active.txt"),
            Some(UFW_SYSCTL),
        );
        let r = Firewall {
            allow_ports: vec![],
            ..fw()
        };
        let (summary, actions) = plan_of(&r, &f).expect_change();
        assert!(
            summary.starts_with("/etc/ufw/sysctl.conf turns martian logging off → "),
            "{summary}"
        );
        assert!(scripts(&actions)[1].contains("log_martians"));
        let without_os = Firewall {
            log_martians: false,
            ..r
        };
        assert!(
            plan_of(&without_os, &f)
                .expect_noop()
                .starts_with("ufw active")
        );
    }

    #[test]
    fn test_hook_leaves_ssh_out() {
        let r = Firewall {
            break_for_test: true,
            ..fw()
        };
        let f = ufw_facts("Status: inactive\n", None);
        let (_, actions) = plan_of(&r, &f).expect_change();
        assert!(!scripts(&actions)[1].contains("22/tcp"));
    }

    #[test]
    fn fail2ban_backend_follows_auth_log() {
        let jail = Fail2banJail {
            ssh_port: None,
            ufw: true,
            ignore_ips: vec!["10.77.0.0/16".into()],
        };
        insta::assert_snapshot!("fail2ban-jail-debian12", jail.render(false));
        insta::assert_snapshot!("fail2ban-jail-ubuntu", jail.render(true));
        let no_ufw = Fail2banJail {
            ssh_port: Some(2222),
            ufw: false,
            ignore_ips: vec![],
        };
        insta::assert_snapshot!("fail2ban-jail-nftables-port", no_ufw.render(false));

        // Debian 12: no auth.log.
        let f = facts(&[
            ("path:/etc/fail2ban/jail.d/provision.local", ok("absent\n")),
            ("path:/var/log/auth.log", ok("absent\n")),
        ]);
        let (summary, actions) = plan_of(&jail, &f).expect_change();
        assert_eq!(
            summary,
            "create /etc/fail2ban/jail.d/provision.local (sshd jail, backend systemd)"
        );
        assert!(written(&actions, JAIL_PATH).contains("backend = systemd"));
        // Ubuntu: rsyslog writes auth.log.
        let f = facts(&[
            (
                "path:/etc/fail2ban/jail.d/provision.local",
                file_state(&jail.render(true), 0o644, "root", "root"),
            ),
            (
                "path:/var/log/auth.log",
                file_state("", 0o640, "syslog", "adm"),
            ),
        ]);
        assert_eq!(
            plan_of(&jail, &f).expect_noop(),
            "sshd jail configured (backend auto)"
        );
    }

    #[test]
    fn fail2ban_service_restarts_on_jail_change() {
        let s = fail2ban_service();
        assert_eq!(s.watches(), [format!("file:{JAIL_PATH}")]);
        assert_eq!(
            scripts(&s.on_watched_change()),
            ["systemctl restart fail2ban.service"]
        );
        assert_eq!(packages(true, true), ["ufw", "fail2ban", "python3-systemd"]);
        assert_eq!(
            packages(false, true),
            ["fail2ban", "python3-systemd", "nftables"]
        );
    }
}
