//! Facts this crate reads besides the engine's builtin ones. Each is a POSIX sh snippet
//! plus a pure parser, tested against fixture outputs.

use std::collections::BTreeMap;

use common::facts::require_success;
use common::shell::quote;
use common::{Fact, FactError, Probe, ProbeOutput};

fn parse_error(key: &str, what: &str, line: &str) -> FactError {
    FactError::Parse {
        key: key.to_string(),
        what: what.to_string(),
        line: line.to_string(),
    }
}

/// sbin directories are not on every login's PATH (non-root logins elevated with sudo).
const SBIN_PATH: &str = "PATH=\"$PATH:/usr/sbin:/sbin\"";

/// The account this run logged in as (before elevation): `$SUDO_USER` when the engine
/// elevated with sudo, else the current user.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoginUser;

impl Fact for LoginUser {
    type Value = String;

    fn probe(&self) -> Probe {
        Probe {
            key: "login-user".into(),
            script: r#"printf '%s\n' "${SUDO_USER:-$(id -un)}""#.into(),
        }
    }

    fn parse(&self, output: &ProbeOutput) -> Result<String, FactError> {
        require_success("login-user", output)?;
        let user = output.stdout.trim();
        if user.is_empty() || user.contains(char::is_whitespace) {
            return Err(parse_error("login-user", "a user name", &output.stdout));
        }
        Ok(user.to_string())
    }
}

/// OpenSSH version, from `ssh -V` (client and server come from one source package).
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenSshVersion;

/// `(major, minor)`, e.g. `(9, 2)` for `OpenSSH_9.2p1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32);

impl Fact for OpenSshVersion {
    type Value = Version;

    fn probe(&self) -> Probe {
        Probe {
            key: "openssh-version".into(),
            script: format!("{SBIN_PATH}; ssh -V 2>&1 || sshd -V 2>&1"),
        }
    }

    fn parse(&self, output: &ProbeOutput) -> Result<Version, FactError> {
        let key = "openssh-version";
        require_success(key, output)?;
        let text = output.stdout.trim();
        let rest = text
            .find("OpenSSH_")
            .map(|i| &text[i + "OpenSSH_".len()..])
            .ok_or_else(|| parse_error(key, "OpenSSH_<version>", text))?;
        let mut numbers = rest
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u32>());
        match (numbers.next(), numbers.next()) {
            (Some(Ok(major)), Some(Ok(minor))) => Ok(Version(major, minor)),
            _ => Err(parse_error(key, "OpenSSH_<major>.<minor>", text)),
        }
    }
}

/// The effective sshd configuration: `sshd -T` (global section, all files included).
#[derive(Debug, Clone, Copy, Default)]
pub struct SshdEffective;

/// Lower-case keyword → values in the order printed (keywords like `hostkey` and `port`
/// repeat).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshdEffectiveValue {
    pub values: BTreeMap<String, Vec<String>>,
}

impl SshdEffectiveValue {
    pub fn first(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    pub fn all(&self, key: &str) -> &[String] {
        self.values.get(key).map(Vec::as_slice).unwrap_or_default()
    }

    /// The ports sshd listens on.
    pub fn ports(&self) -> Vec<u16> {
        self.all("port")
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Fact for SshdEffective {
    type Value = SshdEffectiveValue;

    fn probe(&self) -> Probe {
        Probe {
            key: "sshd-effective".into(),
            // `sshd -T` refuses to run without its privilege-separation directory, which
            // is missing on socket-activated hosts until the first connection.
            script: format!("{SBIN_PATH}; [ -d /run/sshd ] || mkdir -p -m 0755 /run/sshd; sshd -T"),
        }
    }

    fn parse(&self, output: &ProbeOutput) -> Result<SshdEffectiveValue, FactError> {
        let key = "sshd-effective";
        require_success(key, output)?;
        let mut v = SshdEffectiveValue::default();
        for line in output.stdout.lines().filter(|l| !l.trim().is_empty()) {
            let (k, val) = line.split_once(' ').unwrap_or((line, ""));
            v.values
                .entry(k.to_ascii_lowercase())
                .or_default()
                .push(val.trim().to_string());
        }
        if v.first("port").is_none() {
            return Err(parse_error(
                key,
                "sshd -T output with a port",
                &output.stdout,
            ));
        }
        Ok(v)
    }
}

/// `ufw status verbose`.
#[derive(Debug, Clone, Copy, Default)]
pub struct UfwStatus;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UfwValue {
    pub installed: bool,
    pub active: bool,
    /// e.g. `deny` (only shown while active).
    pub default_incoming: String,
    pub default_outgoing: String,
    pub rules: Vec<UfwRule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UfwRule {
    /// e.g. `22/tcp`, `80`, `OpenSSH`.
    pub to: String,
    /// `ALLOW`, `LIMIT`, `DENY`, `REJECT`.
    pub action: String,
    /// `IN`, `OUT`, `FWD` (verbose output).
    pub direction: String,
    pub from: String,
    pub v6: bool,
}

impl UfwValue {
    /// A rule admits new incoming TCP connections to `port` from anywhere (IPv4).
    pub fn admits(&self, port: u16) -> Option<&UfwRule> {
        let wanted = [format!("{port}/tcp"), port.to_string()];
        self.rules.iter().find(|r| {
            !r.v6
                && wanted.contains(&r.to)
                && matches!(r.action.as_str(), "ALLOW" | "LIMIT")
                && r.direction == "IN"
                && r.from == "Anywhere"
        })
    }
}

impl Fact for UfwStatus {
    type Value = UfwValue;

    fn probe(&self) -> Probe {
        Probe {
            key: "ufw".into(),
            script: format!(
                "{SBIN_PATH}; if command -v ufw >/dev/null 2>&1; then ufw status verbose; else echo 'ufw: not installed'; fi"
            ),
        }
    }

    fn parse(&self, output: &ProbeOutput) -> Result<UfwValue, FactError> {
        let key = "ufw";
        require_success(key, output)?;
        let mut v = UfwValue::default();
        let mut in_rules = false;
        let mut saw_status = false;
        for line in output.stdout.lines() {
            let t = line.trim();
            if t == "ufw: not installed" {
                return Ok(UfwValue::default());
            }
            if let Some(s) = t.strip_prefix("Status:") {
                v.installed = true;
                saw_status = true;
                v.active = s.trim() == "active";
                continue;
            }
            if let Some(d) = t.strip_prefix("Default:") {
                // "deny (incoming), allow (outgoing), disabled (routed)"
                for part in d.split(',') {
                    let mut words = part.split_whitespace();
                    match (words.next(), words.next()) {
                        (Some(policy), Some("(incoming)")) => {
                            v.default_incoming = policy.to_string()
                        }
                        (Some(policy), Some("(outgoing)")) => {
                            v.default_outgoing = policy.to_string()
                        }
                        _ => {}
                    }
                }
                continue;
            }
            if t.starts_with("--") {
                in_rules = true;
                continue;
            }
            if !in_rules || t.is_empty() {
                continue;
            }
            v.rules
                .push(parse_ufw_rule(t).ok_or_else(|| parse_error(key, "rule", line))?);
        }
        if !saw_status {
            return Err(parse_error(key, "Status line", &output.stdout));
        }
        Ok(v)
    }
}

fn parse_ufw_rule(line: &str) -> Option<UfwRule> {
    let line = line.split(" # ").next().unwrap_or(line).trim_end();
    let words: Vec<&str> = line.split_whitespace().collect();
    let action_at = words
        .iter()
        .position(|w| matches!(*w, "ALLOW" | "DENY" | "REJECT" | "LIMIT"))?;
    if action_at == 0 {
        return None;
    }
    let to_words = &words[..action_at];
    let v6 = to_words.last() == Some(&"(v6)");
    let to = to_words
        .iter()
        .filter(|w| **w != "(v6)")
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let mut rest = &words[action_at + 1..];
    let direction = match rest.first() {
        Some(&d @ ("IN" | "OUT" | "FWD")) => {
            rest = &rest[1..];
            d.to_string()
        }
        _ => "IN".to_string(),
    };
    let from = rest
        .iter()
        .filter(|w| **w != "(v6)")
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    Some(UfwRule {
        to,
        action: words[action_at].to_string(),
        direction,
        from,
        v6,
    })
}

/// Current values of kernel settings and whether they can be written here (inside
/// containers most of /proc/sys is read-only; the network namespace's part may not be).
#[derive(Debug, Clone)]
pub struct SysctlState {
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SysctlEntry {
    /// The kernel has no such setting.
    Missing,
    Present {
        value: String,
        writable: bool,
    },
}

impl Fact for SysctlState {
    type Value = BTreeMap<String, SysctlEntry>;

    fn probe(&self) -> Probe {
        let keys: Vec<String> = self.keys.iter().map(|k| quote(k)).collect();
        Probe {
            key: format!("sysctl:{}", self.keys.len()),
            script: format!(
                "for k in {}; do p=/proc/sys/$(printf %s \"$k\" | tr . /); \
                 if [ -e \"$p\" ]; then w=0; [ -w \"$p\" ] && w=1; printf '%s|%s|%s\\n' \"$k\" \"$w\" \"$(tr '\\t' ' ' < \"$p\")\"; \
                 else printf '%s|missing\\n' \"$k\"; fi; done",
                keys.join(" ")
            ),
        }
    }

    fn parse(&self, output: &ProbeOutput) -> Result<Self::Value, FactError> {
        let key = self.probe().key;
        require_success(&key, output)?;
        let mut values = BTreeMap::new();
        for line in output.stdout.lines().filter(|l| !l.is_empty()) {
            let mut parts = line.splitn(3, '|');
            let entry = match (parts.next(), parts.next(), parts.next()) {
                (Some(k), Some("missing"), None) => (k, SysctlEntry::Missing),
                (Some(k), Some(w @ ("0" | "1")), Some(value)) => (
                    k,
                    SysctlEntry::Present {
                        value: value.trim().to_string(),
                        writable: w == "1",
                    },
                ),
                _ => return Err(parse_error(&key, "key|writable|value", line)),
            };
            values.insert(entry.0.to_string(), entry.1);
        }
        for k in &self.keys {
            if !values.contains_key(k) {
                return Err(parse_error(&key, "every requested key", k));
            }
        }
        Ok(values)
    }
}

/// Password aging of one account: the maximum password age field of its shadow entry
/// (never the hash).
#[derive(Debug, Clone)]
pub struct PasswordMaxAge {
    pub user: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaxAge {
    NoAccount,
    /// Empty field: passwords never expire.
    Unlimited,
    Days(u64),
}

impl Fact for PasswordMaxAge {
    type Value = MaxAge;

    fn probe(&self) -> Probe {
        let u = quote(&self.user);
        Probe {
            key: format!("password-max-age:{}", self.user),
            script: format!(
                "if e=$(getent shadow {u}); then printf '%s\\n' \"$e\" | cut -d: -f5; else echo absent; fi"
            ),
        }
    }

    fn parse(&self, output: &ProbeOutput) -> Result<MaxAge, FactError> {
        let key = self.probe().key;
        require_success(&key, output)?;
        match output.stdout.trim() {
            "absent" => Ok(MaxAge::NoAccount),
            "" => Ok(MaxAge::Unlimited),
            n => n
                .parse()
                .map(MaxAge::Days)
                .map_err(|_| parse_error(&key, "days", n)),
        }
    }
}

/// Static (`/etc/hostname`) and running host name.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostnameState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostnameValue {
    pub configured: String,
    pub running: String,
}

impl Fact for HostnameState {
    type Value = HostnameValue;

    fn probe(&self) -> Probe {
        Probe {
            key: "hostname".into(),
            script: r#"printf 'configured=%s\nrunning=%s\n' "$(cat /etc/hostname 2>/dev/null)" "$(uname -n)""#
                .into(),
        }
    }

    fn parse(&self, output: &ProbeOutput) -> Result<HostnameValue, FactError> {
        require_success("hostname", output)?;
        let mut configured = None;
        let mut running = None;
        for line in output.stdout.lines() {
            match line.split_once('=') {
                Some(("configured", v)) => configured = Some(v.trim().to_string()),
                Some(("running", v)) => running = Some(v.trim().to_string()),
                _ => return Err(parse_error("hostname", "key=value", line)),
            }
        }
        match (configured, running) {
            (Some(configured), Some(running)) => Ok(HostnameValue {
                configured,
                running,
            }),
            _ => Err(parse_error("hostname", "hostname output", &output.stdout)),
        }
    }
}

/// Pending upgrades per `apt-get -s upgrade` with the package lists as they are, and how
/// old those lists are.
#[derive(Debug, Clone, Copy, Default)]
pub struct PendingUpgrades;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpgradesValue {
    pub packages: Vec<String>,
    /// Minutes since the newest package list was fetched; `None` without lists.
    pub lists_age_minutes: Option<u64>,
}

impl Fact for PendingUpgrades {
    type Value = PendingUpgradesValue;

    fn probe(&self) -> Probe {
        Probe {
            key: "apt-pending-upgrades".into(),
            script: r#"apt-get -s -o Debug::NoLocking=1 upgrade | sed -n 's/^Inst \([^ ]*\) .*/inst=\1/p'
newest=$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages' -printf '%T@\n' 2>/dev/null | sort -n | tail -n1)
now=$(date +%s)
if [ -n "$newest" ]; then echo "lists_age_minutes=$(( (now - ${newest%.*}) / 60 ))"; else echo lists_age_minutes=none; fi"#
                .into(),
        }
    }

    fn parse(&self, output: &ProbeOutput) -> Result<PendingUpgradesValue, FactError> {
        let key = "apt-pending-upgrades";
        require_success(key, output)?;
        let mut packages = Vec::new();
        let mut age = None;
        for line in output.stdout.lines().filter(|l| !l.is_empty()) {
            match line.split_once('=') {
                Some(("inst", p)) => packages.push(p.to_string()),
                Some(("lists_age_minutes", "none")) => age = Some(None),
                Some(("lists_age_minutes", m)) => {
                    age = Some(Some(
                        m.parse().map_err(|_| parse_error(key, "minutes", line))?,
                    ))
                }
                _ => return Err(parse_error(key, "inst=/lists_age_minutes=", line)),
            }
        }
        let lists_age_minutes = age.ok_or_else(|| parse_error(key, "lists age", &output.stdout))?;
        Ok(PendingUpgradesValue {
            packages,
            lists_age_minutes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn ok(stdout: &str) -> ProbeOutput {
        ProbeOutput {
            status: 0,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    #[test]
    fn login_user() {
        assert_eq!(LoginUser.parse(&ok("deploy\n")).unwrap(), "deploy");
        assert!(LoginUser.parse(&ok("\n")).is_err());
    }

    #[test]
    fn openssh_versions() {
        let v = |s: &str| OpenSshVersion.parse(&ok(s)).unwrap();
        assert_eq!(
            v("OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024\n"),
            Version(9, 2)
        );
        assert_eq!(
            v("OpenSSH_8.9p1 Ubuntu-3ubuntu0.10, OpenSSL 3.0.2 15 Mar 2022\n"),
            Version(8, 9)
        );
        assert_eq!(
            v("OpenSSH_9.6p1 Ubuntu-3ubuntu13.5, OpenSSL 3.0.13\n"),
            Version(9, 6)
        );
        assert_eq!(
            v("OpenSSH_8.2p1 Ubuntu-4ubuntu0.11, OpenSSL 1.1.1f\n"),
            Version(8, 2)
        );
        assert!(OpenSshVersion.parse(&ok("dropbear v2022.83\n")).is_err());
    }

    #[test]
    fn sshd_effective_from_fresh_debian12() {
        let v = SshdEffective
            .parse(&ok(include_str!(
                "../tests/fixtures/sshd-T-debian12-fresh.txt"
            )))
            .unwrap();
        assert_eq!(v.ports(), [22]);
        assert_eq!(v.first("passwordauthentication"), Some("yes"));
        assert_eq!(v.first("permitrootlogin"), Some("without-password"));
        assert_eq!(v.all("hostkey").len(), 3);
        let failed = ProbeOutput {
            status: 255,
            stdout: String::new(),
            stderr: "Missing privilege separation directory: /run/sshd\n".into(),
        };
        assert!(matches!(
            SshdEffective.parse(&failed),
            Err(FactError::ProbeFailed { status: 255, .. })
        ));
    }

    #[test]
    fn ufw_status_inactive_active_and_absent() {
        assert_eq!(
            UfwStatus.parse(&ok("ufw: not installed\n")).unwrap(),
            UfwValue::default()
        );
        let inactive = UfwStatus.parse(&ok("Status: inactive\n")).unwrap();
        assert!(inactive.installed && !inactive.active && inactive.rules.is_empty());
        let v = UfwStatus
            .parse(&ok(include_str!("../tests/fixtures/ufw-status-active.txt")))
            .unwrap();
        assert!(v.active);
        assert_eq!(
            (v.default_incoming.as_str(), v.default_outgoing.as_str()),
            ("deny", "allow")
        );
        assert_eq!(v.admits(22).unwrap().action, "LIMIT");
        assert_eq!(v.admits(443).unwrap().action, "ALLOW");
        assert!(v.admits(8080).is_none(), "only allowed from one network");
        assert!(v.admits(25).is_none(), "denied");
        assert!(v.rules.iter().any(|r| r.v6 && r.to == "80/tcp"));
        assert!(v.rules.iter().any(|r| r.to == "OpenSSH"));
        assert!(UfwStatus.parse(&ok("garbage\n")).is_err());
    }

    #[test]
    fn sysctl_state_in_a_container() {
        let f = SysctlState {
            keys: vec![
                "kernel.kptr_restrict".into(),
                "net.ipv4.conf.all.rp_filter".into(),
                "kernel.yama.ptrace_scope".into(),
            ],
        };
        let v = f
            .parse(&ok(
                "kernel.kptr_restrict|0|0\nnet.ipv4.conf.all.rp_filter|1|2\nkernel.yama.ptrace_scope|missing\n",
            ))
            .unwrap();
        assert_eq!(
            v["kernel.kptr_restrict"],
            SysctlEntry::Present {
                value: "0".into(),
                writable: false
            }
        );
        assert_eq!(v["kernel.yama.ptrace_scope"], SysctlEntry::Missing);
        assert!(
            f.parse(&ok("kernel.kptr_restrict|0|0\n")).is_err(),
            "keys missing"
        );
    }

    #[test]
    fn password_max_age() {
        let f = PasswordMaxAge {
            user: "deploy".into(),
        };
        assert_eq!(f.parse(&ok("absent\n")).unwrap(), MaxAge::NoAccount);
        assert_eq!(f.parse(&ok("\n")).unwrap(), MaxAge::Unlimited);
        assert_eq!(f.parse(&ok("99999\n")).unwrap(), MaxAge::Days(99999));
        assert!(f.parse(&ok("x\n")).is_err());
    }

    #[test]
    fn hostname_and_pending_upgrades() {
        let h = HostnameState
            .parse(&ok("configured=lab1\nrunning=lab1\n"))
            .unwrap();
        assert_eq!(h.configured, "lab1");
        let p = PendingUpgrades
            .parse(&ok("inst=libc6\ninst=openssl\nlists_age_minutes=12\n"))
            .unwrap();
        assert_eq!(p.packages, ["libc6", "openssl"]);
        assert_eq!(p.lists_age_minutes, Some(12));
        let none = PendingUpgrades
            .parse(&ok("lists_age_minutes=none\n"))
            .unwrap();
        assert_eq!(none.lists_age_minutes, None);
        assert!(PendingUpgrades.parse(&ok("")).is_err());
    }
}
