//! UFW (default deny incoming, SSH allowed first and rate-limited, then 80, 443 and the
//! inventory's ports) applied commit-confirmed, and fail2ban with an sshd jail that
//! starts on Debian 12 (no /var/log/auth.log there: systemd backend) and on Ubuntu.
//!
//! The inventory is the truth: every UFW rule (IPv4 and IPv6) it does not ask for is
//! drift, named in the plan, and removed (after the wanted rules are in place, so SSH
//! stays open throughout). `hardening.firewall_exclusive = false` keeps such rules and
//! only mentions them in the no-op reason. fail2ban's own bans (UFW rules commented
//! `by Fail2Ban ...`) are its state, never drift. `hardening.ssh_rate_limit = false`
//! allows SSH instead of `ufw limit` (which refuses the 6th new connection from one
//! address within 30 s).
//!
//! Docker-published ports bypass UFW (Docker writes its own iptables chains): with
//! Docker on, `docker_user` makes them obey [`Firewall::rules`] too, in the
//! `DOCKER-USER` chain.
//!
//! **Test hook** (tests only): with `PROVISION_TEST_BREAK_FIREWALL=1` in the environment
//! when the resources are built, the SSH allow rule is left out, so enabling UFW locks
//! new logins out and the commit-confirmed apply must roll it back.

use common::facts::builtin::{PathKind, PathState};
use common::resource::ResourceId;
use common::resources::Service;
use common::shell::{Command, quote};
use common::{Action, Fact, Facts, Plan, Probe, Resource};
use serde::Serialize;

use crate::facts::{SshdEffective, UfwRule, UfwState, UfwValue};
use crate::support::{DesiredFile, MANAGED, render};
use common::PlanError;

pub(crate) const BREAK_FIREWALL_ENV: &str = "PROVISION_TEST_BREAK_FIREWALL";
/// Kernel settings UFW applies whenever it starts.
pub(crate) const UFW_SYSCTL_PATH: &str = "/etc/ufw/sysctl.conf";
pub(crate) const JAIL_PATH: &str = "/etc/fail2ban/jail.d/provision.local";
pub(crate) const AUTH_LOG: &str = "/var/log/auth.log";
/// UFW's state before this run's change, for the rollback.
pub const UFW_SAVED_STATE: &str = "/var/lib/provision/ufw-previous";

/// Saves UFW's rules and settings before the change.
const SAVE_STATE: &str = r#"PATH="$PATH:/usr/sbin:/sbin"; d=/var/lib/provision/ufw-previous
rm -rf "$d"; mkdir -p "$d"; chmod 700 "$d"
for f in /etc/ufw/user.rules /etc/ufw/user6.rules /etc/ufw/ufw.conf /etc/default/ufw; do
  if [ -f "$f" ]; then cp -p "$f" "$d/$(echo "$f" | tr / _)"; fi
done
if iptables -n -L ufw-user-input >/dev/null 2>&1; then echo active > "$d/state"; else echo inactive > "$d/state"; fi"#;

/// Restores access: back to the saved rules when UFW was active before, else off.
pub(crate) const ROLLBACK: &str = r#"PATH="$PATH:/usr/sbin:/sbin"; d=/var/lib/provision/ufw-previous
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
pub(crate) struct Firewall {
    /// `hardening.ssh_port`: allowed besides the port(s) sshd listens on now — or alone,
    /// when `sshd_managed`.
    pub ssh_port: Option<u16>,
    /// This run manages sshd too (`hardening.ssh`): with `ssh_port` set, sshd ends on that
    /// port alone, so it is the only SSH port to allow. The old one closes in the same
    /// commit-confirmed change (the proof logs in on the new port; the tool's open
    /// connection survives as ESTABLISHED), and a later run finds the rules as wanted.
    pub sshd_managed: bool,
    /// Opened besides SSH, 80 and 443.
    pub allow_ports: Vec<u16>,
    /// Test hook: leave SSH out (see the module docs).
    pub break_for_test: bool,
    /// OS hardening logs martian packets; UFW's own sysctl file turns that off again on
    /// every start unless it is edited too.
    pub log_martians: bool,
    /// `hardening.ssh_rate_limit` (default true): `ufw limit` for SSH, else `allow`.
    pub ssh_rate_limit: bool,
    /// `hardening.firewall_exclusive` (default true): remove rules the inventory does
    /// not ask for.
    pub exclusive: bool,
}

/// Comment prefix of the rules fail2ban's `ufw` ban action adds.
const FAIL2BAN_COMMENT: &str = "by Fail2Ban";

const SBIN_PATH: &str = "PATH=\"$PATH:/usr/sbin:/sbin\"";

/// The edit of UFW's sysctl file that keeps martian logging on.
const UFW_LOG_MARTIANS: &str = "if [ -f /etc/ufw/sysctl.conf ]; then sed -i 's|^\\(net/ipv4/conf/[a-z]*/log_martians\\)=0|\\1=1|' /etc/ufw/sysctl.conf; fi";

/// One rule the firewall must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WantedRule {
    pub port: u16,
    /// `limit` for SSH (unless `ssh_rate_limit = false`), `allow` otherwise.
    pub verb: &'static str,
    pub comment: &'static str,
}

impl WantedRule {
    /// `rule` is the one UFW keeps for this port (same port, protocol, addresses and
    /// direction; UFW replaces such a rule when the verb or logging differs).
    fn same_place(&self, rule: &UfwRule) -> bool {
        rule.is_plain_incoming() && rule.protocol == "tcp" && rule.dport == self.port.to_string()
    }

    fn satisfied_by(&self, rule: &UfwRule) -> bool {
        self.same_place(rule) && rule.action == self.verb && rule.log.is_none()
    }

    fn describe(&self) -> String {
        format!(
            "{}/tcp{}",
            self.port,
            if self.verb == "limit" { " (limit)" } else { "" }
        )
    }
}

/// What the host's rules are, against the wanted ones.
#[derive(Debug, Default)]
struct RuleDiff {
    /// Wanted rules missing or with the wrong verb, described.
    wrong: Vec<String>,
    /// Rules nobody asked for, by command (IPv4 and IPv6 twins together), with the
    /// families they are in.
    foreign: Vec<(UfwRule, Vec<&'static str>)>,
    /// fail2ban's bans (kept).
    bans: usize,
}

impl RuleDiff {
    fn of(ufw: &UfwValue, wanted: &[WantedRule]) -> RuleDiff {
        let mut diff = RuleDiff::default();
        let families: &[bool] = if ufw.ipv6 { &[false, true] } else { &[false] };
        for w in wanted {
            let mut missing = Vec::new();
            let mut misverbed: Vec<&UfwRule> = Vec::new();
            for &v6 in families {
                let mut rules = ufw.effective_rules().filter(|r| r.v6 == v6);
                match rules.find(|r| w.same_place(r)) {
                    None => missing.push(v6),
                    Some(r) if !w.satisfied_by(r) => misverbed.push(r),
                    Some(_) => {}
                }
            }
            let family = |v6s: &[bool]| {
                if v6s.len() == families.len() {
                    String::new()
                } else if v6s[0] {
                    " (IPv6)".to_string()
                } else {
                    " (IPv4)".to_string()
                }
            };
            if !missing.is_empty() {
                diff.wrong
                    .push(format!("{}/tcp not open{}", w.port, family(&missing)));
            }
            if let Some(r) = misverbed.first() {
                let v6s: Vec<bool> = misverbed.iter().map(|r| r.v6).collect();
                let what = match (w.verb, r.action.as_str()) {
                    ("limit", "allow") => "not rate-limited".to_string(),
                    ("allow", "limit") => {
                        "rate-limited (hardening.ssh_rate_limit = false)".to_string()
                    }
                    _ => format!("is `{}`, not `{}`", r.display(), w.verb),
                };
                diff.wrong
                    .push(format!("{}/tcp {what}{}", w.port, family(&v6s)));
            }
        }
        for r in ufw.effective_rules() {
            if wanted.iter().any(|w| w.same_place(r)) {
                continue;
            }
            if r.comment.starts_with(FAIL2BAN_COMMENT) {
                diff.bans += 1;
                continue;
            }
            let family = if r.v6 { "IPv6" } else { "IPv4" };
            match diff
                .foreign
                .iter_mut()
                .find(|(f, _)| f.command() == r.command())
            {
                Some((_, fams)) => {
                    if !fams.contains(&family) {
                        fams.push(family)
                    }
                }
                None => diff.foreign.push((r.clone(), vec![family])),
            }
        }
        diff
    }

    /// e.g. `` `allow 8080/tcp` (IPv4, IPv6) ``.
    fn foreign_list(&self) -> String {
        self.foreign
            .iter()
            .map(|(r, fams)| format!("`{}` ({})", r.display(), fams.join(", ")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The words of the `ufw` command that deletes `rule` (and its IPv6 twin when both
/// addresses are "any"). UFW's rule grammar has no `--`: the words are arguments.
fn delete_words(rule: &UfwRule) -> Vec<String> {
    let mut words = rule.command();
    let route = words.first().is_some_and(|a| a == "route");
    if route {
        words.remove(0);
    }
    let mut out = vec!["--force".to_string()];
    if route {
        out.push("route".into());
    }
    out.push("delete".into());
    out.extend(words);
    out
}

/// Exit status of [`UFW_BATCH`] when this UFW's front end is not the one it drives
/// (nothing was changed): the batch's commands then run one `ufw` each.
const UFW_BATCH_UNUSABLE: i32 = 75;

/// UFW commands in one Python process, through UFW's own front end: for each command
/// (the words of one `ufw` command line, the one JSON argument) exactly what
/// `/usr/sbin/ufw` does for one, `parse_command` then `UFWFrontend.do_action`, under
/// UFW's lock, stopping at the first that fails (exit 1, UFW's message and the
/// command). One interpreter start, one round of UFW's own checks and one probe of the
/// kernel's capabilities instead of one per command (each `ufw` costs 0.15-0.7 s on a
/// small host, by load). The words are data: they reach UFW's parser as argv does,
/// never as code. One exception to "exactly": `enable` of a firewall that is not loaded
/// yet starts it the way UFW's boot unit does (`ENABLED=yes`, `ufw-init start`), without
/// the front end's reload of the logging rules that start has just loaded (74 `iptables`
/// runs, 0.5 s; the rules in the kernel are the same, checked on the lab's hosts).
const UFW_BATCH: &str = r#"import json, shutil, sys
try:
    import gettext
    import ufw.common
    import ufw.frontend
    import ufw.util
    from ufw.common import UFWError
    from ufw.util import create_lock, release_lock
    ufw.frontend.parse_command
    ufw.frontend.UFWFrontend.do_action
except (ImportError, AttributeError) as e:
    sys.stderr.write("ufw front end not usable here (%s): one ufw per command\n" % e)
    sys.exit(75)
gettext.install(ufw.common.programName)


def start_unloaded(ui):
    """`enable` of a firewall that is not loaded, as UFW's boot unit starts it: ENABLED=yes
    and `ufw-init start`, without the front end's reload of the logging rules that
    start has just loaded (74 iptables runs). False: leave it to the front end."""
    b = getattr(ui, "backend", None)
    if not all(hasattr(b, a) for a in ("defaults", "loglevels", "files", "iptables", "set_default", "is_enabled")):
        return False
    if b.defaults.get("loglevel") not in b.loglevels or "init" not in b.files:
        return False
    if ufw.util.cmd([b.iptables, "-n", "-L", "ufw-user-input"])[0] == 0:
        return False
    was = "yes" if b.is_enabled() else "no"
    b.set_default(b.files["conf"], "ENABLED", "yes")
    rc, out = ufw.util.cmd([b.files["init"], "start"])
    if rc != 0:
        b.set_default(b.files["conf"], "ENABLED", was)
        raise UFWError("problem running ufw-init\n%s" % out)
    return True


commands = json.loads(sys.argv[1])
# UFW checks its own program's path (root-owned, not writable by others) as `ufw` would.
sys.argv = [shutil.which("ufw") or "/usr/sbin/ufw"]
ui = ufw.frontend.UFWFrontend(False)
lock = create_lock(lockfile="/run/ufw.lock", dryrun=False)
try:
    for words in commands:
        try:
            pr = ufw.frontend.parse_command(["ufw"] + list(words))
            if pr.action == "enable" and start_unloaded(ui):
                res = "Firewall is active and enabled on system startup"
            elif "rule" in pr.data:
                res = ui.do_action(pr.action, pr.data["rule"], pr.data["iptype"], pr.force)
            else:
                res = ui.do_action(pr.action, "", "", pr.force)
        except UFWError as e:
            sys.stderr.write("ERROR: %s\n" % e.value)
            res = None
        except SystemExit as e:
            res = None if e.code else ""
        if res is None:
            sys.stderr.write("failed: ufw %s\n" % " ".join(words))
            sys.exit(1)
        if res:
            print(res)
finally:
    release_lock(lock)
"#;

/// Shell that runs `commands` (each the words of one `ufw` command line) through
/// [`UFW_BATCH`], or one `ufw` per command where that front end is not usable. Python
/// runs from `/`: with `-c` it imports from the working directory first, which is the
/// login's home (a `json.py` there would run as root, or break every firewall apply).
fn ufw_batch(commands: &[Vec<String>]) -> String {
    let json = serde_json::to_string(commands).expect("a list of strings serializes");
    let one_by_one: Vec<String> = commands
        .iter()
        .map(|words| format!("  {}", Command::new("ufw").args(words.iter().cloned())))
        .collect();
    format!(
        "__rc=0\n\
         if command -v python3 >/dev/null 2>&1; then (cd / && exec python3 -c {program} {json}) || __rc=$?; else __rc={UFW_BATCH_UNUSABLE}; fi\n\
         if [ $__rc -eq {UFW_BATCH_UNUSABLE} ]; then\n{one_by_one}\nelif [ $__rc -ne 0 ]; then exit $__rc; fi",
        program = quote(UFW_BATCH),
        json = quote(&json),
        one_by_one = one_by_one.join("\n"),
    )
}

impl Firewall {
    /// SSH first (the ports sshd listens on now, from `sshd -T`, and the inventory's; only
    /// the inventory's when this run moves sshd there), then 80, 443 and the inventory's
    /// ports.
    pub(crate) fn rules(&self, sshd_ports: &[u16]) -> Vec<WantedRule> {
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
            let ssh_ports: Vec<u16> = match self.ssh_port {
                Some(port) if self.sshd_managed => vec![port],
                _ => sshd_ports.iter().copied().chain(self.ssh_port).collect(),
            };
            for p in ssh_ports {
                add(
                    p,
                    if self.ssh_rate_limit {
                        "limit"
                    } else {
                        "allow"
                    },
                    "provision: ssh",
                );
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
    fn id(&self) -> ResourceId {
        ResourceId::of("firewall", "ufw")
    }

    fn probes(&self) -> Vec<Probe> {
        vec![
            UfwState.probe(),
            SshdEffective.probe(),
            PathState::new(UFW_SYSCTL_PATH).probe(),
        ]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let ufw = facts.read(&UfwState)?;
        let sshd = facts.read(&SshdEffective)?;
        let rules = self.rules(&sshd.ports());
        let diff = RuleDiff::of(&ufw, &rules);
        let mut wrong = Vec::new();
        if !ufw.installed {
            wrong.push("ufw not installed yet".to_string());
        } else if !ufw.enabled {
            wrong.push("ufw inactive".to_string());
        } else if !ufw.loaded {
            wrong.push("ufw enabled but its rules are not loaded".to_string());
        }
        if ufw.installed {
            if ufw.default_incoming != "deny" {
                wrong.push(format!("incoming default {}", ufw.default_incoming));
            }
            if ufw.default_outgoing != "allow" {
                wrong.push(format!("outgoing default {}", ufw.default_outgoing));
            }
            wrong.extend(diff.wrong.iter().cloned());
        }
        let mut reload = false;
        if self.log_martians {
            let sysctl = facts.read(&PathState::new(UFW_SYSCTL_PATH))?;
            let text = String::from_utf8_lossy(sysctl.content.as_deref().unwrap_or_default());
            if text
                .lines()
                .any(|l| l.starts_with("net/ipv4/conf/") && l.ends_with("/log_martians=0"))
            {
                wrong.push(format!("{UFW_SYSCTL_PATH} turns martian logging off"));
                // UFW applies its sysctl file when it starts.
                reload = true;
            }
        }
        let remove = self.exclusive && !diff.foreign.is_empty();
        let ports: Vec<String> = rules.iter().map(WantedRule::describe).collect();
        let mut notes = String::new();
        if !diff.foreign.is_empty() && !self.exclusive {
            notes.push_str(&format!(
                "; kept (hardening.firewall_exclusive = false): {}",
                diff.foreign_list()
            ));
        }
        if diff.bans > 0 {
            notes.push_str(&format!("; {} fail2ban ban(s)", diff.bans));
        }
        if wrong.is_empty() && !remove {
            return Ok(Plan::noop(format!(
                "ufw active, deny incoming, open: {}{notes}",
                ports.join(", ")
            )));
        }
        // One batch of UFW commands, in this order: the defaults that differ, the wanted
        // rules (SSH first), then the deletions (a deleted rule never shares a wanted
        // rule's place, so SSH stays open throughout), then the enable.
        let mut script = vec![SBIN_PATH.to_string()];
        let mut commands: Vec<Vec<String>> = Vec::new();
        let mut causes = wrong.clone();
        let mut doing = Vec::new();
        // The step's description: each command group of the batch.
        let mut steps = Vec::new();
        if !wrong.is_empty() {
            if self.log_martians {
                script.push(UFW_LOG_MARTIANS.to_string());
            }
            for (direction, policy, now) in [
                ("incoming", "deny", &ufw.default_incoming),
                ("outgoing", "allow", &ufw.default_outgoing),
            ] {
                // While UFW runs, each default it sets restarts the whole firewall.
                if !ufw.installed || now != policy {
                    commands.push(vec!["default".into(), policy.into(), direction.into()]);
                }
            }
            for r in &rules {
                commands.push(vec![
                    r.verb.to_string(),
                    format!("{}/tcp", r.port),
                    "comment".into(),
                    r.comment.into(),
                ]);
            }
            doing.push(format!("open {}", ports.join(", ")));
            steps.push(format!("open {}", ports.join(", ")));
        }
        if remove {
            for (rule, families) in &diff.foreign {
                commands.push(delete_words(rule));
                steps.push(format!(
                    "delete unrequested ufw rule `{}` ({})",
                    rule.display(),
                    families.join(", ")
                ));
            }
            causes.push(format!("unrequested {}", diff.foreign_list()));
            doing.push("delete what the inventory does not ask for".to_string());
        }
        // Rule and default changes apply at once while UFW runs.
        if !ufw.active() || reload {
            commands.push(vec!["--force".into(), "enable".into()]);
            doing.push("enable".to_string());
            steps.push("enable".to_string());
        }
        let doing = match doing.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => String::new(),
        };
        script.push(ufw_batch(&commands));
        let actions = vec![
            Action::run("save ufw state for the rollback", SAVE_STATE),
            Action::run(format!("ufw: {}", steps.join("; ")), script.join("\n")),
        ];
        Ok(Plan::change(
            format!("{} → {doing}{notes}", causes.join(", ")),
            actions,
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
pub(crate) struct Fail2banJail {
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
    pub(crate) fn render(&self, auth_log_exists: bool) -> String {
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
    fn id(&self) -> ResourceId {
        ResourceId::file(JAIL_PATH)
    }

    fn probes(&self) -> Vec<Probe> {
        vec![
            PathState::new(JAIL_PATH).probe(),
            PathState::new(AUTH_LOG).probe(),
        ]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
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

/// fail2ban enabled and running, restarted when its jail changed while it ran (the jail
/// is written before fail2ban's package can start it: see `hardening::resources`).
pub(crate) fn fail2ban_service() -> Service {
    Service::running("fail2ban.service")
        .reload_on([ResourceId::file(JAIL_PATH)])
        .restart_on_change()
        .restart_only_if_running()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    const SSHD_T: &str = "port 22\npermitrootlogin without-password\n";

    fn fw() -> Firewall {
        Firewall {
            ssh_port: None,
            sshd_managed: false,
            allow_ports: vec![8443],
            break_for_test: false,
            log_martians: true,
            ssh_rate_limit: true,
            exclusive: true,
        }
    }

    const UFW_SYSCTL: &str = "net/ipv4/icmp_echo_ignore_broadcasts=1\nnet/ipv4/conf/all/log_martians=0\nnet/ipv4/conf/default/log_martians=0\n";

    /// user.rules and user6.rules captured on a lab host converged with `allow_ports =
    /// [8443]`, after an admin added: `ufw allow 8080/tcp`, `ufw allow from 10.0.0.0/8 to
    /// any port 5432 proto tcp`, `ufw allow OpenSSH`, `ufw deny out 25`, `ufw allow in on
    /// eth0 to any port 9000`, `ufw route allow in on eth0 out on eth1` and the IPv6-only
    /// `ufw allow proto udp from fe80::/10 to any port 546`.
    const USER_RULES: &str = include_str!("../tests/fixtures/ufw-user.rules-foreign");
    const USER6_RULES: &str = include_str!("../tests/fixtures/ufw-user6.rules-foreign");

    /// The same files with only the rules provision added (comment `provision: ...`).
    fn converged(text: &str) -> String {
        text.lines()
            .filter(|l| !l.starts_with("### tuple ###") || l.contains("comment=70726f766973696f6e"))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    fn ufw_facts(probe_output: &str, sysctl: Option<&str>) -> Facts {
        facts(&[
            ("ufw", ok(probe_output)),
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

    fn fixed_sysctl() -> String {
        UFW_SYSCTL.replace("=0", "=1")
    }

    fn converged_facts() -> Facts {
        ufw_facts(
            &ufw_probe_output(&converged(USER_RULES), &converged(USER6_RULES)),
            Some(&fixed_sysctl()),
        )
    }

    fn descriptions(actions: &[Action]) -> Vec<String> {
        actions.iter().map(Action::describe).collect()
    }

    /// The UFW commands of a plan's batch (the second step), as the one-by-one
    /// fallback spells them.
    fn ufw_commands(actions: &[Action]) -> Vec<String> {
        let s = &scripts(actions)[1];
        s.lines()
            .filter_map(|l| l.strip_prefix("  "))
            .filter(|l| l.starts_with("ufw "))
            .map(str::to_string)
            .collect()
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
        assert_eq!(
            descriptions(&actions),
            [
                "save ufw state for the rollback",
                "ufw: open 22/tcp (limit), 80/tcp, 443/tcp, 8443/tcp; enable",
            ]
        );
        let s = scripts(&actions);
        assert!(s[0].contains("ufw-previous"), "state saved first");
        insta::assert_snapshot!("ufw-script", s[1]);
        // Issue 14: one batch, SSH before anything opens, enabled last.
        assert_eq!(
            ufw_commands(&actions),
            [
                "ufw default deny incoming",
                "ufw default allow outgoing",
                "ufw limit 22/tcp comment 'provision: ssh'",
                "ufw allow 80/tcp comment 'provision: web'",
                "ufw allow 443/tcp comment 'provision: web'",
                "ufw allow 8443/tcp comment 'provision: inventory'",
                "ufw --force enable",
            ]
        );
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
        // Issue 10: when this run moves sshd there, the new port is the only SSH port;
        // keeping the old one made the run's own verification fail (sshd had left 22, so
        // `limit 22/tcp` became unrequested right after the move).
        let moving = Firewall {
            sshd_managed: true,
            ..r
        };
        assert_eq!(
            moving
                .rules(&[22])
                .iter()
                .map(|r| r.port)
                .collect::<Vec<_>>(),
            [2222, 80, 443, 8443]
        );
    }

    #[test]
    fn converged_host_is_a_noop_and_a_deleted_rule_is_drift_per_family() {
        let f = converged_facts();
        assert_eq!(
            plan_of(&fw(), &f).expect_noop(),
            "ufw active, deny incoming, open: 22/tcp (limit), 80/tcp, 443/tcp, 8443/tcp"
        );
        // The inventory no longer asks for 8443: now it is unrequested.
        let r = Firewall {
            allow_ports: vec![],
            ..fw()
        };
        let (summary, _) = plan_of(&r, &f).expect_change();
        assert_eq!(
            summary,
            "unrequested `allow 8443/tcp` (IPv4, IPv6) → delete what the inventory does not ask for"
        );
        // 8443 deleted by hand on IPv6 only.
        let v6_without: String = converged(USER6_RULES)
            .lines()
            .filter(|l| !l.contains(" 8443 "))
            .map(|l| format!("{l}\n"))
            .collect();
        let f = ufw_facts(
            &ufw_probe_output(&converged(USER_RULES), &v6_without),
            Some(&fixed_sysctl()),
        );
        let (summary, actions) = plan_of(&fw(), &f).expect_change();
        assert_eq!(
            summary,
            "8443/tcp not open (IPv6) → open 22/tcp (limit), 80/tcp, 443/tcp, 8443/tcp"
        );
        assert_eq!(
            descriptions(&actions),
            [
                "save ufw state for the rollback",
                "ufw: open 22/tcp (limit), 80/tcp, 443/tcp, 8443/tcp"
            ],
            "UFW is running: no re-enable"
        );
        // Nor the defaults it has: while UFW runs, each one restarts the firewall.
        assert!(
            !ufw_commands(&actions).iter().any(|c| c.contains("default")),
            "{actions:?}"
        );
    }

    #[test]
    fn ssh_allowed_instead_of_limited_is_drift_both_ways() {
        let allowed = |t: &str| {
            converged(t).replace("### tuple ### limit tcp 22", "### tuple ### allow tcp 22")
        };
        let f = ufw_facts(
            &ufw_probe_output(&allowed(USER_RULES), &allowed(USER6_RULES)),
            Some(&fixed_sysctl()),
        );
        let (summary, _) = plan_of(&fw(), &f).expect_change();
        assert!(
            summary.starts_with("22/tcp not rate-limited → "),
            "{summary}"
        );

        // `ssh_rate_limit = false`: the limit rule is replaced by an allow rule (UFW
        // updates a rule in place when only its verb differs).
        let unlimited = Firewall {
            ssh_rate_limit: false,
            ..fw()
        };
        assert_eq!(
            unlimited.rules(&[22])[0],
            WantedRule {
                port: 22,
                verb: "allow",
                comment: "provision: ssh"
            }
        );
        let (summary, actions) = plan_of(&unlimited, &converged_facts()).expect_change();
        assert_eq!(
            summary,
            "22/tcp rate-limited (hardening.ssh_rate_limit = false) → open 22/tcp, 80/tcp, 443/tcp, 8443/tcp"
        );
        let configure = ufw_commands(&actions);
        assert_eq!(
            configure[0], "ufw allow 22/tcp comment 'provision: ssh'",
            "{configure:?}"
        );
        assert!(
            !configure.iter().any(|c| c.contains("limit")),
            "{configure:?}"
        );
        assert_eq!(
            plan_of(&unlimited, &f).expect_noop(),
            "ufw active, deny incoming, open: 22/tcp, 80/tcp, 443/tcp, 8443/tcp"
        );
    }

    #[test]
    fn every_unrequested_rule_v4_and_v6_is_named_and_deleted_after_ssh_is_secured() {
        let f = ufw_facts(
            &ufw_probe_output(USER_RULES, USER6_RULES),
            Some(&fixed_sysctl()),
        );
        let (summary, actions) = plan_of(&fw(), &f).expect_change();
        assert_eq!(
            summary,
            "unrequested `allow 8080/tcp` (IPv4, IPv6), \
             `allow from 10.0.0.0/8 to any port 5432 proto tcp` (IPv4), \
             `allow OpenSSH` (IPv4, IPv6), `deny out 25` (IPv4, IPv6), \
             `allow in on eth0 to any port 9000` (IPv4, IPv6), \
             `route allow in on eth0 out on eth1` (IPv4, IPv6), \
             `allow from fe80::/10 to any port 546 proto udp` (IPv6) \
             → delete what the inventory does not ask for"
        );
        assert_eq!(actions.len(), 2, "{actions:?}");
        assert!(
            descriptions(&actions)[1].starts_with(
                "ufw: delete unrequested ufw rule `allow 8080/tcp` (IPv4, IPv6); \
                 delete unrequested ufw rule `allow from 10.0.0.0/8 to any port 5432 proto tcp` (IPv4); "
            ),
            "{actions:?}"
        );
        let deletes = ufw_commands(&actions);
        assert_eq!(
            deletes,
            [
                "ufw --force delete allow 8080/tcp",
                "ufw --force delete allow from 10.0.0.0/8 to any port 5432 proto tcp",
                "ufw --force delete allow OpenSSH",
                "ufw --force delete deny out 25",
                "ufw --force delete allow in on eth0 to any port 9000",
                "ufw --force route delete allow in on eth0 out on eth1",
                "ufw --force delete allow from fe80::/10 to any port 546 proto udp",
            ]
        );
        assert!(
            !deletes.iter().any(|d| d.contains("22/tcp")),
            "the SSH rule is never deleted"
        );

        // Drift and foreign rules together: wanted rules in first, then the deletions.
        let f = ufw_facts(
            &ufw_probe_output(USER_RULES, USER6_RULES)
                .replace("ENABLED=yes", "ENABLED=no")
                .replace("loaded=yes", "loaded=no"),
            Some(&fixed_sysctl()),
        );
        let (summary, actions) = plan_of(&fw(), &f).expect_change();
        assert!(
            summary.starts_with("ufw inactive, unrequested `allow 8080/tcp`"),
            "{summary}"
        );
        assert!(
            summary.contains(" → open 22/tcp (limit), 80/tcp, 443/tcp, 8443/tcp, delete what the inventory does not ask for and enable"),
            "{summary}"
        );
        let c = ufw_commands(&actions);
        let at = |prefix: &str| c.iter().position(|l| l.starts_with(prefix)).unwrap();
        assert!(at("ufw limit 22/tcp") < at("ufw --force delete"), "{c:?}");
        assert_eq!(
            c.last().unwrap(),
            "ufw --force enable",
            "enabled only once the foreign rules are gone"
        );
    }

    #[test]
    fn non_exclusive_mode_keeps_foreign_rules_and_mentions_them() {
        let r = Firewall {
            exclusive: false,
            ..fw()
        };
        let f = ufw_facts(
            &ufw_probe_output(USER_RULES, USER6_RULES),
            Some(&fixed_sysctl()),
        );
        let reason = plan_of(&r, &f).expect_noop();
        assert!(
            reason.starts_with(
                "ufw active, deny incoming, open: 22/tcp (limit), 80/tcp, 443/tcp, 8443/tcp; \
                 kept (hardening.firewall_exclusive = false): `allow 8080/tcp` (IPv4, IPv6), "
            ),
            "{reason}"
        );
        assert!(reason.contains("`allow from fe80::/10 to any port 546 proto udp` (IPv6)"));
        // A change for another reason still deletes nothing.
        let inactive =
            ufw_probe_output(USER_RULES, USER6_RULES).replace("ENABLED=yes", "ENABLED=no");
        let f = ufw_facts(&inactive, Some(&fixed_sysctl()));
        let (summary, actions) = plan_of(&r, &f).expect_change();
        assert!(
            summary.contains("; kept (hardening.firewall_exclusive = false): "),
            "{summary}"
        );
        assert!(
            !descriptions(&actions)
                .iter()
                .any(|d| d.starts_with("delete"))
        );
    }

    #[test]
    fn without_ipv6_user6_rules_are_not_read_and_fail2ban_bans_are_kept() {
        let v4 = converged(USER_RULES);
        let probe = ufw_probe_output(&v4, USER6_RULES).replace("IPV6=yes", "IPV6=no");
        let f = ufw_facts(&probe, Some(&fixed_sysctl()));
        assert!(plan_of(&fw(), &f).expect_noop().starts_with("ufw active"));

        let ban = "### tuple ### reject any any 0.0.0.0/0 any 203.0.113.9 in comment=6279204661696c3242616e206166746572203520617474656d70747320616761696e73742073736864\n";
        let f = ufw_facts(
            &ufw_probe_output(&format!("{ban}{v4}"), &converged(USER6_RULES)),
            Some(&fixed_sysctl()),
        );
        assert_eq!(
            plan_of(&fw(), &f).expect_noop(),
            "ufw active, deny incoming, open: 22/tcp (limit), 80/tcp, 443/tcp, 8443/tcp; 1 fail2ban ban(s)"
        );
    }

    #[test]
    fn inactive_ufw_is_enabled() {
        let probe = ufw_probe_output(&converged(USER_RULES), &converged(USER6_RULES))
            .replace("ENABLED=yes", "ENABLED=no")
            .replace("loaded=yes", "loaded=no");
        let f = ufw_facts(&probe, Some(UFW_SYSCTL));
        let (summary, _) = plan_of(&fw(), &f).expect_change();
        assert!(
            summary.starts_with("ufw inactive, /etc/ufw/sysctl.conf turns martian logging off → "),
            "{summary}"
        );
        // Enabled at boot but not loaded now (e.g. its start failed).
        let probe = ufw_probe_output(&converged(USER_RULES), &converged(USER6_RULES))
            .replace("loaded=yes", "loaded=no");
        let f = ufw_facts(&probe, Some(&fixed_sysctl()));
        let (summary, actions) = plan_of(&fw(), &f).expect_change();
        assert!(
            summary.starts_with("ufw enabled but its rules are not loaded → "),
            "{summary}"
        );
        assert_eq!(ufw_commands(&actions).last().unwrap(), "ufw --force enable");
    }

    #[test]
    fn ufw_would_turn_martian_logging_off_again() {
        let f = ufw_facts(
            &ufw_probe_output(&converged(USER_RULES), &converged(USER6_RULES)),
            Some(UFW_SYSCTL),
        );
        let (summary, actions) = plan_of(&fw(), &f).expect_change();
        assert!(
            summary.starts_with("/etc/ufw/sysctl.conf turns martian logging off → "),
            "{summary}"
        );
        assert!(scripts(&actions)[1].contains("log_martians"));
        assert_eq!(
            ufw_commands(&actions).last().unwrap(),
            "ufw --force enable",
            "UFW applies its sysctl file when it starts"
        );
        let without_os = Firewall {
            log_martians: false,
            ..fw()
        };
        assert!(
            plan_of(&without_os, &f)
                .expect_noop()
                .starts_with("ufw active")
        );
    }

    /// A fake UFW for [`run_batch`]: a Python package `ufw` whose front end records each
    /// command's words and its process id in `$RECORD` (and fails a command holding the
    /// word `fail`), and a `ufw` program that records its argv; `front_end: false` gives
    /// a package without `UFWFrontend`.
    fn fake_ufw(dir: &std::path::Path, front_end: bool) {
        fake_ufw_with(dir, front_end, None);
    }

    /// [`fake_ufw`] whose front end has a backend (`loaded`: whether its firewall is in
    /// the kernel), `ufw.conf` in `dir` and an `ufw-init` that records its argv.
    fn fake_ufw_with(dir: &std::path::Path, front_end: bool, loaded: Option<bool>) {
        let pkg = dir.join("py/ufw");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(pkg.join("__init__.py"), "").unwrap();
        std::fs::write(
            pkg.join("common.py"),
            "programName = 'ufw'\nclass UFWError(Exception):\n    def __init__(self, value):\n        self.value = value\n",
        )
        .unwrap();
        std::fs::write(
            pkg.join("util.py"),
            "import subprocess\n\
             def create_lock(lockfile=None, dryrun=False):\n    return None\n\
             def release_lock(lock):\n    pass\n\
             def cmd(argv):\n    p = subprocess.run(argv, capture_output=True, text=True)\n    return [p.returncode, p.stdout]\n",
        )
        .unwrap();
        let mut frontend = String::from(
            "import json, os\nfrom ufw.common import UFWError\n\
             class Parsed:\n    pass\n\
             last = []\n\
             def parse_command(argv):\n    last[:] = argv\n    p = Parsed()\n    p.action = 'enable' if argv[-1] == 'enable' else 'rule'\n    p.data = {}\n    p.force = '--force' in argv\n    return p\n",
        );
        if let Some(loaded) = loaded {
            let d = dir.display();
            std::fs::write(dir.join("ufw.conf"), "ENABLED=no\nLOGLEVEL=low\n").unwrap();
            for (tool, body) in [
                (
                    "ufw-init",
                    "printf 'ufw-init %s\\n' \"$*\" >> \"$RECORD\"".to_string(),
                ),
                ("iptables", format!("exit {}", if loaded { 0 } else { 1 })),
            ] {
                common::testing::write_program(&dir.join(tool), &body);
            }
            frontend.push_str(&format!(
                "class Backend:\n\
                 \x20   defaults = {{'loglevel': 'low'}}\n\
                 \x20   loglevels = {{'off': 0, 'low': 100}}\n\
                 \x20   files = {{'conf': '{d}/ufw.conf', 'init': '{d}/ufw-init'}}\n\
                 \x20   iptables = '{d}/iptables'\n\
                 \x20   def is_enabled(self):\n\
                 \x20       return 'ENABLED=yes' in open(self.files['conf']).read()\n\
                 \x20   def set_default(self, fn, opt, value):\n\
                 \x20       lines = [l for l in open(fn).read().splitlines() if not l.startswith(opt + '=')]\n\
                 \x20       open(fn, 'w').write('\\n'.join(lines + [opt + '=' + value]) + '\\n')\n"
            ));
        }
        if front_end {
            frontend.push_str(
                "class UFWFrontend:\n    def __init__(self, dryrun):\n        self.backend = globals().get('Backend', object)()\n\
                 \x20   def do_action(self, action, rule, iptype, force):\n\
                 \x20       with open(os.environ['RECORD'], 'a') as f:\n\
                 \x20           f.write('%d %s\\n' % (os.getpid(), json.dumps(last)))\n\
                 \x20       if 'fail' in last:\n\
                 \x20           raise UFWError('boom')\n\
                 \x20       return ''\n",
            );
        }
        std::fs::write(pkg.join("frontend.py"), frontend).unwrap();
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        common::testing::write_program(
            &bin.join("ufw"),
            "printf 'ufw' >> \"$RECORD\"; for a in \"$@\"; do printf ' [%s]' \"$a\" >> \"$RECORD\"; done; echo >> \"$RECORD\"",
        );
    }

    /// Runs [`ufw_batch`] of `commands` as a step body runs (`set -e`) against
    /// [`fake_ufw`]: whether it succeeded, its stderr and the record.
    fn run_batch(dir: &std::path::Path, commands: &[Vec<String>]) -> (bool, String, String) {
        let record = dir.join("record");
        let _ = std::fs::remove_file(&record);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("set -e\n{}", ufw_batch(commands)))
            .current_dir(dir)
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", dir.join("bin").display()),
            )
            .env("PYTHONPATH", dir.join("py"))
            .env("RECORD", &record)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            std::fs::read_to_string(&record).unwrap_or_default(),
        )
    }

    fn words(commands: &[&[&str]]) -> Vec<Vec<String>> {
        commands
            .iter()
            .map(|c| c.iter().map(|w| w.to_string()).collect())
            .collect()
    }

    /// Issue 14: the rule set goes through UFW's front end in one process (one
    /// interpreter start instead of one per rule), in order, each word reaching UFW's
    /// parser as it would from argv (quotes, `$(…)` and spaces stay data); the first
    /// command that fails stops the batch and fails the step, naming it.
    #[test]
    fn ufw_commands_run_in_one_process_in_order_and_stop_at_the_first_failure() {
        let dir = tempfile::tempdir().unwrap();
        fake_ufw(dir.path(), true);
        let hostile = "x'$(touch marker)\"; touch marker";
        let commands = words(&[
            &["default", "deny", "incoming"],
            &["limit", "22/tcp", "comment", "provision: ssh"],
            &["allow", "80/tcp", "comment", hostile],
            &["--force", "enable"],
        ]);
        let (ok, stderr, record) = run_batch(dir.path(), &commands);
        assert!(ok, "{stderr}");
        let lines: Vec<(&str, Vec<String>)> = record
            .lines()
            .map(|l| {
                let (pid, argv) = l.split_once(' ').unwrap();
                (pid, serde_json::from_str(argv).unwrap())
            })
            .collect();
        let argvs: Vec<Vec<String>> = lines.iter().map(|(_, a)| a[1..].to_vec()).collect();
        assert_eq!(argvs, commands, "{record}");
        assert!(lines.iter().all(|(_, a)| a[0] == "ufw"));
        assert!(
            lines.iter().all(|(pid, _)| *pid == lines[0].0),
            "one process: {record}"
        );
        assert!(!dir.path().join("marker").exists());

        let failing = words(&[&["allow", "80/tcp"], &["fail", "1"], &["allow", "443/tcp"]]);
        let (ok, stderr, record) = run_batch(dir.path(), &failing);
        assert!(!ok, "{record}");
        assert!(stderr.contains("ERROR: boom"), "{stderr}");
        assert!(stderr.contains("failed: ufw fail 1"), "{stderr}");
        assert_eq!(
            record.lines().count(),
            2,
            "stopped at the failure: {record}"
        );
    }

    /// Review of issue 14's batch: a module in the login's directory (the apply's working
    /// directory) is never imported by the batch running as root.
    #[test]
    fn the_batch_never_imports_from_the_working_directory() {
        let dir = tempfile::tempdir().unwrap();
        fake_ufw(dir.path(), true);
        for module in ["json", "shutil", "sys"] {
            std::fs::write(
                dir.path().join(format!("{module}.py")),
                "open('imported-from-cwd', 'w').close()\nraise SystemExit(42)\n",
            )
            .unwrap();
        }
        let commands = words(&[&["allow", "80/tcp"]]);
        let (ok, stderr, record) = run_batch(dir.path(), &commands);
        assert!(ok, "{stderr}");
        assert_eq!(record.lines().count(), 1, "{record}");
        assert!(!dir.path().join("imported-from-cwd").exists());
    }

    /// Issue 14: `enable` of a firewall not in the kernel yet is UFW's boot start
    /// (`ENABLED=yes`, `ufw-init start`), not the front end's enable; a loaded one is
    /// left to the front end.
    #[test]
    fn enabling_an_unloaded_firewall_is_ufw_init_start() {
        let commands = words(&[
            &["limit", "22/tcp", "comment", "provision: ssh"],
            &["--force", "enable"],
        ]);
        let dir = tempfile::tempdir().unwrap();
        fake_ufw_with(dir.path(), true, Some(false));
        let (ok, stderr, record) = run_batch(dir.path(), &commands);
        assert!(ok, "{stderr}");
        let lines: Vec<&str> = record.lines().collect();
        assert_eq!(lines.len(), 2, "{record}");
        assert!(lines[0].ends_with(r#"["ufw", "limit", "22/tcp", "comment", "provision: ssh"]"#));
        assert_eq!(lines[1], "ufw-init start");
        let conf = std::fs::read_to_string(dir.path().join("ufw.conf")).unwrap();
        assert!(conf.lines().any(|l| l == "ENABLED=yes"), "{conf}");

        let dir = tempfile::tempdir().unwrap();
        fake_ufw_with(dir.path(), true, Some(true));
        let (ok, stderr, record) = run_batch(dir.path(), &commands);
        assert!(ok, "{stderr}");
        assert!(!record.contains("ufw-init"), "{record}");
        assert!(
            record
                .lines()
                .nth(1)
                .unwrap()
                .ends_with(r#"["ufw", "--force", "enable"]"#)
        );
    }

    /// Where UFW's front end is not the one the batch drives, each command runs as one
    /// `ufw` of its own, in the same order, and a failing one still fails the step.
    #[test]
    fn without_a_usable_front_end_each_command_is_one_ufw() {
        let dir = tempfile::tempdir().unwrap();
        fake_ufw(dir.path(), false);
        let commands = words(&[
            &["limit", "22/tcp", "comment", "provision: ssh"],
            &["--force", "enable"],
        ]);
        let (ok, stderr, record) = run_batch(dir.path(), &commands);
        assert!(ok, "{stderr}");
        assert!(stderr.contains("one ufw per command"), "{stderr}");
        assert_eq!(
            record,
            "ufw [limit] [22/tcp] [comment] [provision: ssh]\nufw [--force] [enable]\n"
        );
        std::fs::write(dir.path().join("bin/ufw"), "#!/bin/sh\nexit 3\n").unwrap();
        let (ok, _, _) = run_batch(dir.path(), &commands);
        assert!(!ok, "a failing ufw fails the step");
    }

    #[test]
    fn test_hook_leaves_ssh_out() {
        let r = Firewall {
            break_for_test: true,
            ..fw()
        };
        let f = ufw_facts("loaded=no\nENABLED=no\n", None);
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
        let jail = Fail2banJail {
            ssh_port: None,
            ufw: true,
            ignore_ips: vec![],
        };
        assert_eq!(s.watches(), [jail.id()]);
        let unit = |state: &str| {
            Facts::from_outputs([(
                "unit:fail2ban.service",
                ok(&format!(
                    "LoadState=loaded\nActiveState={state}\nUnitFileState=enabled\n"
                )),
            )])
        };
        assert_eq!(
            scripts(&s.on_watched_change(&unit("active")).unwrap()),
            ["systemctl restart fail2ban.service"]
        );
        // Not running when the run planned (a fresh host: its package starts it with the
        // jail already written): no restart.
        assert!(s.on_watched_change(&unit("inactive")).unwrap().is_empty());
        assert_eq!(packages(true, true), ["ufw", "fail2ban", "python3-systemd"]);
        assert_eq!(
            packages(false, true),
            ["fail2ban", "python3-systemd", "nftables"]
        );
    }
}
