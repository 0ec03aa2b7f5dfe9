//! Facts this crate reads besides the engine's builtin ones. Each is a POSIX sh snippet
//! plus a pure parser, tested against fixture outputs.

use std::collections::BTreeMap;

use common::facts::{ProbeKey, require_success};
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
pub(crate) struct LoginUser;

impl Fact for LoginUser {
    type Value = String;

    fn probe(&self) -> Probe {
        Probe {
            key: ProbeKey::named("login-user"),
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

/// `(major, minor)`, e.g. `(9, 2)` for OpenSSH 9.2p1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32);

/// The package sshd comes from on every supported OS.
pub(crate) const OPENSSH_PACKAGE: &str = "openssh-server";

/// The OpenSSH version of the `openssh-server` package on disk, read from the dpkg
/// listing every gather already holds (`1:9.2p1-2+deb12u3` is 9.2; held, or in the middle
/// of an upgrade, too: [`common::facts::builtin::UnpackedPackages`]): the version of the
/// `sshd` binary on disk, the one that parses the config. Running `ssh -V` for it cost a
/// process that loads OpenSSL, the second slowest probe of a no-op.
pub(crate) fn openssh_version(installed: &BTreeMap<String, String>) -> Result<Version, FactError> {
    let key = "dpkg";
    let version = installed.get(OPENSSH_PACKAGE).ok_or_else(|| {
        parse_error(
            key,
            "an installed openssh-server package (the version of sshd comes from it)",
            "",
        )
    })?;
    let upstream = version.split_once(':').map_or(version.as_str(), |(_, v)| v);
    let mut numbers = upstream
        .split(|c: char| !c.is_ascii_digit())
        .map(|s| s.parse::<u32>());
    match (numbers.next(), numbers.next()) {
        (Some(Ok(major)), Some(Ok(minor)))
            if upstream.starts_with(|c: char| c.is_ascii_digit()) =>
        {
            Ok(Version(major, minor))
        }
        _ => Err(parse_error(
            key,
            "an openssh-server version <major>.<minor>p<n>",
            version,
        )),
    }
}

/// The sshd drop-ins other than the tool's own, with their content: `Port` and
/// `ListenAddress` in them ACCUMULATE across every included file instead of
/// first-match-wins (a provider's `Port 2222` keeps sshd on 2222 whatever the tool's
/// drop-in says), and any keyword the tool manages set in them is reported.
#[derive(Debug, Clone)]
pub(crate) struct SshdDropIns {
    /// The tool's own drop-in, left out.
    pub own: &'static str,
}

/// One drop-in of [`SshdDropIns`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DropIn {
    pub path: String,
    pub mode: u32,
    pub owner: String,
    pub group: String,
    pub content: Vec<u8>,
}

/// The keywords that accumulate, lower-case.
pub(crate) const ACCUMULATING_KEYWORDS: &[&str] = &["port", "listenaddress"];

/// The keyword a config line sets, lower-case (sshd keywords are case-insensitive;
/// `Port=2222` is accepted too); `None` for comments, blank and malformed lines.
pub(crate) fn keyword_of(line: &str) -> Option<String> {
    let t = line.trim_start();
    let keyword: String = t
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    let rest = &t[keyword.len()..];
    let sets = !keyword.is_empty()
        && keyword.starts_with(|c: char| c.is_ascii_alphabetic())
        && rest.starts_with(|c: char| c.is_whitespace() || c == '=');
    sets.then_some(keyword)
}

/// Whether a config line sets one of [`ACCUMULATING_KEYWORDS`].
pub(crate) fn sets_listen_keyword(line: &str) -> bool {
    keyword_of(line).is_some_and(|k| ACCUMULATING_KEYWORDS.contains(&k.as_str()))
}

impl Fact for SshdDropIns {
    type Value = Vec<DropIn>;

    fn probe(&self) -> Probe {
        Probe {
            key: ProbeKey::named("sshd-drop-ins"),
            script: format!(
                "for f in /etc/ssh/sshd_config.d/*.conf; do
                   [ -f \"$f\" ] && [ ! -L \"$f\" ] && [ \"$f\" != {own} ] || continue
                   printf '%s\\n' \"$f\"; stat -c '%a|%U|%G' \"$f\"; base64 -w0 \"$f\"; echo
done",
                own = quote(self.own)
            ),
        }
    }

    fn parse(&self, output: &ProbeOutput) -> Result<Vec<DropIn>, FactError> {
        use base64::Engine as _;
        let key = "sshd-drop-ins";
        require_success(key, output)?;
        let lines: Vec<&str> = output.stdout.lines().collect();
        let mut out = Vec::new();
        for chunk in lines.chunks(3) {
            let [path, stat, content] = chunk else {
                return Err(parse_error(
                    key,
                    "path, stat and content lines",
                    &output.stdout,
                ));
            };
            if !path.starts_with("/etc/ssh/sshd_config.d/") {
                return Err(parse_error(key, "a drop-in path", path));
            }
            let f: Vec<&str> = stat.split('|').collect();
            let [mode, owner, group] = f.as_slice() else {
                return Err(parse_error(key, "mode|owner|group", stat));
            };
            out.push(DropIn {
                path: path.to_string(),
                mode: u32::from_str_radix(mode, 8).map_err(|_| parse_error(key, "mode", stat))?,
                owner: owner.to_string(),
                group: group.to_string(),
                content: base64::engine::general_purpose::STANDARD
                    .decode(content.trim())
                    .map_err(|_| parse_error(key, "base64 content", content))?,
            });
        }
        Ok(out)
    }
}

/// The effective sshd configuration: `sshd -T` (global section, all files included).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SshdEffective;

/// Lower-case keyword → values in the order printed (keywords like `hostkey` and `port`
/// repeat).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SshdEffectiveValue {
    pub values: BTreeMap<String, Vec<String>>,
}

impl SshdEffectiveValue {
    pub(crate) fn first(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    pub(crate) fn all(&self, key: &str) -> &[String] {
        self.values.get(key).map(Vec::as_slice).unwrap_or_default()
    }

    /// The ports sshd listens on.
    pub(crate) fn ports(&self) -> Vec<u16> {
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
            key: ProbeKey::named("sshd-effective"),
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

/// UFW's configuration and rules, read from its own files (`/etc/ufw/ufw.conf`,
/// `/etc/default/ufw`, the `### tuple ###` lines of `/etc/ufw/user.rules` and
/// `user6.rules`) plus one `iptables -L` of its input chain: about 9 ms on a lab host,
/// against about 90 ms for the Python `ufw status verbose`, and every rule exactly as
/// UFW stores it, IPv4 and IPv6.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct UfwState;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UfwValue {
    pub installed: bool,
    /// `ENABLED=yes` in ufw.conf: started at boot.
    pub enabled: bool,
    /// Its chains are in the kernel now (what `ufw status` calls active).
    pub loaded: bool,
    /// `IPV6=yes`: UFW manages IPv6 too (and reads user6.rules).
    pub ipv6: bool,
    /// `deny`, `reject` or `allow` (from `DEFAULT_INPUT_POLICY`).
    pub default_incoming: String,
    pub default_outgoing: String,
    /// IPv4 rules first, then IPv6, each in UFW's order.
    pub rules: Vec<UfwRule>,
}

impl UfwValue {
    /// Enabled at boot and loaded now.
    pub(crate) fn active(&self) -> bool {
        self.enabled && self.loaded
    }

    /// The rules UFW applies: IPv6 ones only when it manages IPv6.
    pub(crate) fn effective_rules(&self) -> impl Iterator<Item = &UfwRule> {
        self.rules.iter().filter(|r| !r.v6 || self.ipv6)
    }
}

/// One UFW rule, the fields of its `### tuple ###` line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UfwRule {
    pub v6: bool,
    /// A `ufw route` (forwarding) rule.
    pub route: bool,
    /// `allow`, `deny`, `reject`, `limit`.
    pub action: String,
    /// `log` or `log-all`, when the rule logs.
    pub log: Option<String>,
    /// `tcp`, `udp`, `any`, ...
    pub protocol: String,
    /// e.g. `22`, `80,443`, `8000:8100`, `any`.
    pub dport: String,
    /// e.g. `0.0.0.0/0`, `::/0`, `10.0.0.1`.
    pub dst: String,
    pub sport: String,
    pub src: String,
    /// Application profile names (`OpenSSH`), empty when none.
    pub dapp: String,
    pub sapp: String,
    /// `in` or `out`.
    pub direction: String,
    pub interface_in: String,
    pub interface_out: String,
    /// The rule's comment, decoded (UFW stores it hex-encoded).
    pub comment: String,
}

fn is_anywhere(address: &str) -> bool {
    address == "0.0.0.0/0" || address == "::/0"
}

impl UfwRule {
    /// From anywhere, to anywhere, no interface, no application, not routed.
    pub(crate) fn is_plain_incoming(&self) -> bool {
        !self.route
            && self.direction == "in"
            && is_anywhere(&self.src)
            && is_anywhere(&self.dst)
            && self.sport == "any"
            && self.dapp.is_empty()
            && self.sapp.is_empty()
            && self.interface_in.is_empty()
            && self.interface_out.is_empty()
    }

    /// The arguments of the `ufw` command that adds this rule, without its comment (what
    /// `ufw show added` prints; `ufw delete` + these removes exactly this rule, and its
    /// IPv6 twin when both addresses are "anywhere"). Route rules start with `route`.
    pub(crate) fn command(&self) -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        if self.route {
            args.push("route".into());
        }
        args.push(self.action.clone());
        let short = is_anywhere(&self.dst)
            && is_anywhere(&self.src)
            && self.sport == "any"
            && self.sapp.is_empty()
            && self.interface_in.is_empty()
            && self.interface_out.is_empty()
            && self.dport != "any";
        if short {
            if self.direction == "out" {
                args.push("out".into());
            }
            args.extend(self.log.clone());
            if !self.dapp.is_empty() {
                args.push(self.dapp.clone());
            } else if self.protocol != "any" {
                args.push(format!("{}/{}", self.dport, self.protocol));
            } else {
                args.push(self.dport.clone());
            }
            return args;
        }
        if !self.interface_in.is_empty() {
            args.extend(["in".into(), "on".into(), self.interface_in.clone()]);
        }
        if !self.interface_out.is_empty() {
            args.extend(["out".into(), "on".into(), self.interface_out.clone()]);
        } else if self.direction == "out" {
            args.push("out".into());
        }
        args.extend(self.log.clone());
        let mut located = false;
        for (word, address, port, app) in [
            ("from", &self.src, &self.sport, &self.sapp),
            ("to", &self.dst, &self.dport, &self.dapp),
        ] {
            let address = if is_anywhere(address) {
                "any"
            } else {
                address.as_str()
            };
            if address != "any" || port != "any" || !app.is_empty() {
                located = true;
                args.extend([word.to_string(), address.to_string()]);
                if !app.is_empty() {
                    args.extend(["app".into(), app.clone()]);
                } else if port != "any" {
                    args.extend(["port".into(), port.clone()]);
                }
            }
        }
        if !located && self.interface_in.is_empty() && self.interface_out.is_empty() {
            args.extend(["to".into(), "any".into()]);
        }
        if self.protocol != "any" && self.dapp.is_empty() && self.sapp.is_empty() {
            args.extend(["proto".into(), self.protocol.clone()]);
        }
        args
    }

    /// The command as a human reads it, e.g. `allow 8080/tcp`.
    pub(crate) fn display(&self) -> String {
        self.command()
            .iter()
            .map(|a| quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Parse the part after `### tuple ###`.
    fn parse_tuple(tuple: &str, v6: bool) -> Option<UfwRule> {
        let (fields, comment) = match tuple.split_once(" comment=") {
            Some((f, hex)) => (f, decode_hex(hex.trim())?),
            None => (tuple, String::new()),
        };
        let words: Vec<&str> = fields.split_whitespace().collect();
        if !(6..=9).contains(&words.len()) {
            return None;
        }
        let (route, action) = match words[0].split_once(':') {
            Some(("route", a)) => (true, a),
            Some(_) => return None,
            None => (false, words[0]),
        };
        let (action, log) = match action.split_once('_') {
            Some((a, l)) => (a, Some(l.to_string())),
            None => (action, None),
        };
        let mut rule = UfwRule {
            v6,
            route,
            action: action.to_string(),
            log,
            protocol: words[1].to_string(),
            dport: words[2].to_string(),
            dst: words[3].to_string(),
            sport: words[4].to_string(),
            src: words[5].to_string(),
            direction: "in".into(),
            comment,
            ..UfwRule::default()
        };
        if words.len() >= 8 {
            let app = |w: &str| {
                if w == "-" {
                    String::new()
                } else {
                    w.replace("%20", " ")
                }
            };
            rule.dapp = app(words[6]);
            rule.sapp = app(words[7]);
        }
        // Old tuples (6 or 8 fields) have no direction: incoming.
        if words.len() == 7 || words.len() == 9 {
            let last = words[words.len() - 1];
            let (direction_part, out_part) = match last.split_once('!') {
                Some((a, b)) => (a, Some(b)),
                None => (last, None),
            };
            match direction_part.split_once('_') {
                Some((d, iface)) => {
                    rule.direction = d.to_string();
                    match d {
                        "in" => rule.interface_in = iface.to_string(),
                        "out" => rule.interface_out = iface.to_string(),
                        _ => return None,
                    }
                }
                None => rule.direction = direction_part.to_string(),
            }
            if let Some(out) = out_part {
                rule.interface_out = out.strip_prefix("out_")?.to_string();
            }
            if !matches!(rule.direction.as_str(), "in" | "out") {
                return None;
            }
        }
        Some(rule)
    }
}

fn decode_hex(hex: &str) -> Option<String> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    Some(String::from_utf8_lossy(&bytes?).into_owned())
}

fn policy_name(value: &str) -> String {
    match value {
        "DROP" => "deny".into(),
        "REJECT" => "reject".into(),
        "ACCEPT" => "allow".into(),
        other => other.to_ascii_lowercase(),
    }
}

/// The UFW probe, its files under `root` (`""` on a host; a directory in tests): whether
/// UFW's chains are loaded, its settings and the rule tuples of both rules files, read by
/// one `awk` (dash's `read` takes a system call per byte: the 6 KB of these files had cost
/// more than the process).
fn ufw_script(root: &str) -> String {
    let root = quote(root);
    format!(
        r####"{SBIN_PATH}
if ! command -v ufw >/dev/null 2>&1; then echo 'ufw: not installed'; exit 0; fi
if iptables -n -L ufw-user-input >/dev/null 2>&1; then echo loaded=yes; else echo loaded=no; fi
set --
for f in etc/ufw/ufw.conf:r etc/default/ufw:r etc/ufw/user.rules:f etc/ufw/user6.rules:f; do
  p={root}/${{f%:*}}
  case $f in *:r) [ -r "$p" ] ;; *) [ -f "$p" ] ;; esac && set -- "$@" "$p"
done
[ $# -eq 0 ] || awk '
  FILENAME ~ /\/user6?\.rules$/ {{
    if (index($0, "### tuple ###") == 1) print (FILENAME ~ /user6\.rules$/ ? "v6 " : "v4 ") $0
    next
  }}
  /^(ENABLED|IPV6|DEFAULT_INPUT_POLICY|DEFAULT_OUTPUT_POLICY)=/' "$@""####
    )
}

impl Fact for UfwState {
    type Value = UfwValue;

    fn probe(&self) -> Probe {
        Probe {
            key: ProbeKey::named("ufw"),
            script: ufw_script(""),
        }
    }

    fn parse(&self, output: &ProbeOutput) -> Result<UfwValue, FactError> {
        let key = "ufw";
        require_success(key, output)?;
        let mut v = UfwValue::default();
        let mut saw_loaded = false;
        for line in output.stdout.lines().filter(|l| !l.trim().is_empty()) {
            if line.trim() == "ufw: not installed" {
                return Ok(UfwValue::default());
            }
            if let Some(rest) = line
                .strip_prefix("v4 ### tuple ###")
                .map(|r| (r, false))
                .or_else(|| line.strip_prefix("v6 ### tuple ###").map(|r| (r, true)))
            {
                let (tuple, v6) = rest;
                v.rules.push(
                    UfwRule::parse_tuple(tuple.trim(), v6)
                        .ok_or_else(|| parse_error(key, "a UFW rule tuple", line))?,
                );
                continue;
            }
            let Some((name, value)) = line.split_once('=') else {
                return Err(parse_error(key, "key=value", line));
            };
            let value = value.trim().trim_matches('"');
            match name {
                "loaded" => {
                    saw_loaded = true;
                    v.loaded = value == "yes";
                }
                "ENABLED" => v.enabled = value == "yes",
                "IPV6" => v.ipv6 = value == "yes",
                "DEFAULT_INPUT_POLICY" => v.default_incoming = policy_name(value),
                "DEFAULT_OUTPUT_POLICY" => v.default_outgoing = policy_name(value),
                _ => return Err(parse_error(key, "a UFW setting", line)),
            }
        }
        if !saw_loaded {
            return Err(parse_error(key, "UFW state", &output.stdout));
        }
        v.installed = true;
        // IPv4 first, then IPv6, as UFW numbers them.
        v.rules.sort_by_key(|r| r.v6);
        Ok(v)
    }
}

/// The `DOCKER-USER` chain of the filter table as the kernel has it now, IPv4 and IPv6:
/// `iptables -S DOCKER-USER` and `ip6tables -S DOCKER-USER` (the rules exactly as
/// iptables prints them back, whichever backend, legacy or nftables, it uses).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DockerUserChains;

/// One family's `DOCKER-USER` chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChainState {
    /// No `iptables` (or `ip6tables`) command on the host.
    NoTool,
    /// The chain does not exist (Docker never started, UFW never loaded it).
    Absent,
    /// Its `-A` lines, in order (an empty chain has none).
    Rules(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DockerUserChainsValue {
    pub v4: ChainState,
    pub v6: ChainState,
}

impl Fact for DockerUserChains {
    type Value = DockerUserChainsValue;

    fn probe(&self) -> Probe {
        Probe {
            key: ProbeKey::named("docker-user-chains"),
            script: format!(
                r#"{SBIN_PATH}
for t in iptables:v4 ip6tables:v6; do
  c=${{t%:*}}; f=${{t#*:}}
  if ! command -v "$c" >/dev/null 2>&1; then echo "$f no-tool"; continue; fi
  if out=$("$c" -w -S DOCKER-USER 2>/dev/null); then
    while IFS= read -r l; do printf '%s rule %s\n' "$f" "$l"; done <<EOF
$out
EOF
  else echo "$f absent"; fi
done"#
            ),
        }
    }

    fn parse(&self, output: &ProbeOutput) -> Result<DockerUserChainsValue, FactError> {
        let key = "docker-user-chains";
        require_success(key, output)?;
        let mut v4: Option<ChainState> = None;
        let mut v6: Option<ChainState> = None;
        for line in output.stdout.lines().filter(|l| !l.trim().is_empty()) {
            let (family, rest) = line
                .split_once(' ')
                .ok_or_else(|| parse_error(key, "`v4|v6 ...`", line))?;
            let slot = match family {
                "v4" => &mut v4,
                "v6" => &mut v6,
                _ => return Err(parse_error(key, "`v4|v6 ...`", line)),
            };
            match rest {
                "no-tool" if slot.is_none() => *slot = Some(ChainState::NoTool),
                "absent" if slot.is_none() => *slot = Some(ChainState::Absent),
                "rule -N DOCKER-USER" if slot.is_none() => {
                    *slot = Some(ChainState::Rules(Vec::new()))
                }
                _ => match (rest.strip_prefix("rule "), slot.as_mut()) {
                    (Some(rule), Some(ChainState::Rules(rules)))
                        if rule.starts_with("-A DOCKER-USER ") =>
                    {
                        rules.push(rule.trim_end().to_string())
                    }
                    _ => {
                        return Err(parse_error(
                            key,
                            "`-N DOCKER-USER` then `-A DOCKER-USER` rules",
                            line,
                        ));
                    }
                },
            }
        }
        match (v4, v6) {
            (Some(v4), Some(v6)) => Ok(DockerUserChainsValue { v4, v6 }),
            _ => Err(parse_error(key, "the IPv4 and IPv6 chains", &output.stdout)),
        }
    }
}

/// Current values of kernel settings and whether they can be written here (inside
/// containers most of /proc/sys is read-only; the network namespace's part may not be).
#[derive(Debug, Clone)]
pub(crate) struct SysctlState {
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SysctlEntry {
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
        // The same set of keys in any order is one probe; two sets are two probes (the key
        // was once their size, and two sets of the same size shared it).
        let mut set = self.keys.clone();
        set.sort();
        set.dedup();
        let keys: Vec<String> = set.iter().map(|k| quote(k)).collect();
        Probe {
            key: ProbeKey::about_set("sysctl", &set),
            // Shell builtins only (no process per key): the dots of a key become the
            // slashes of its path, a value's tabs become spaces.
            script: format!(
                "set -f; for k in {}; do p=/proc/sys; IFS=.; for c in $k; do p=$p/$c; done; unset IFS; \
                 if [ -e \"$p\" ]; then w=0; [ -w \"$p\" ] && w=1; v=; read -r v < \"$p\" || true; set -- $v; \
                 printf '%s|%s|%s\\n' \"$k\" \"$w\" \"$*\"; \
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
pub(crate) struct PasswordMaxAge {
    pub user: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MaxAge {
    NoAccount,
    /// Empty field: passwords never expire.
    Unlimited,
    Days(u64),
}

impl Fact for PasswordMaxAge {
    type Value = MaxAge;

    fn probe(&self) -> Probe {
        let getent = common::shell::Command::new("getent").operands(["shadow", self.user.as_str()]);
        Probe {
            key: ProbeKey::about("password-max-age", &self.user),
            script: format!(
                "if e=$({getent}); then IFS=:; set -f; set -- $e; echo \"$5\"; else echo absent; fi"
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
pub(crate) struct HostnameState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostnameValue {
    pub configured: String,
    pub running: String,
}

impl Fact for HostnameState {
    type Value = HostnameValue;

    fn probe(&self) -> Probe {
        Probe {
            key: ProbeKey::named("hostname"),
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
///
/// apt's answer takes it half a second to seconds (it loads the whole cache and runs its
/// resolver): the probe keeps it in [`PENDING_UPGRADES_CACHE`], keyed on every file that
/// answer depends on (dpkg's status and journal, the package lists and their Release
/// files, sources, preferences, apt configuration: name, inode, size and mtime of each),
/// and asks apt again only when one of them changed — the same rule apt's own
/// `pkgcache.bin` follows (which `apt-get -s` also writes). The lists' age comes from the
/// same `stat` (a no-op pays one `stat`, one `sha256sum` and one `date`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PendingUpgrades;

/// Where the probe keeps apt's last answer (a cache: safe to delete).
pub(crate) const PENDING_UPGRADES_CACHE: &str = "/var/cache/provision/pending-upgrades";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingUpgradesValue {
    pub packages: Vec<String>,
    /// Minutes since the newest package list was fetched; `None` without lists.
    pub lists_age_minutes: Option<u64>,
}

/// The probe's script, with every path under `root` (`""` on a host; a directory in tests).
fn pending_upgrades_script(root: &str) -> String {
    format!(
        r#"__stat=$(stat -c '%n %i %s %y %Y' {root}/var/lib/dpkg/status {root}/var/lib/dpkg/updates/* {root}/var/lib/apt/lists/*_Packages {root}/var/lib/apt/lists/*Release {root}/var/lib/apt/extended_states {root}/etc/apt/sources.list {root}/etc/apt/sources.list.d/* {root}/etc/apt/preferences {root}/etc/apt/preferences.d/* {root}/etc/apt/apt.conf {root}/etc/apt/apt.conf.d/* 2>/dev/null)
__key=$(printf '%s\n' "$__stat" | sha256sum)
__cache={root}{cache}
if [ -f "$__cache" ] && {{ read -r __k; [ "$__k" = "key=$__key" ]; }} < "$__cache"; then
  {{ read -r __k; while read -r __l; do printf '%s\n' "$__l"; done; }} < "$__cache"
else
  __a=$(apt-get -s -o Debug::NoLocking=1 upgrade) || {{ printf '%s\n' "$__a" >&2; exit 1; }}
  __inst=$(printf '%s\n' "$__a" | sed -n 's/^Inst \([^ ]*\) .*/inst=\1/p')
  [ -z "$__inst" ] || printf '%s\n' "$__inst"
  if mkdir -p "${{__cache%/*}}" 2>/dev/null; then
    {{ printf 'key=%s\n' "$__key"; [ -z "$__inst" ] || printf '%s\n' "$__inst"; }} > "$__cache.$$" && mv -f "$__cache.$$" "$__cache" || rm -f "$__cache.$$"
  fi
fi
newest=
IFS='
'; set -f
for __l in $__stat; do
  case ${{__l%% *}} in {root}/var/lib/apt/lists/*_Packages) __t=${{__l##* }}; if [ -z "$newest" ] || [ "$__t" -gt "$newest" ]; then newest=$__t; fi;; esac
done
unset IFS; set +f
if [ -n "$newest" ]; then echo "lists_age_minutes=$(( ($(date +%s) - newest) / 60 ))"; else echo lists_age_minutes=none; fi"#,
        cache = PENDING_UPGRADES_CACHE,
    )
}

impl Fact for PendingUpgrades {
    type Value = PendingUpgradesValue;

    fn probe(&self) -> Probe {
        Probe {
            key: ProbeKey::named("apt-pending-upgrades"),
            script: pending_upgrades_script(""),
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

/// Whether the host waits for a reboot (`/var/run/reboot-required`, written by the
/// packages' hooks), which packages asked for it, the current boot's id and the host's
/// local time: what a reboot step decides from and proves a reboot with.
#[derive(Debug, Clone, Copy, Default)]
pub struct RebootState;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RebootStateValue {
    /// Since when (Unix seconds) a reboot is required; `None`: not required.
    pub required_since: Option<u64>,
    /// The packages behind it (`reboot-required.pkgs`), sorted, each once.
    pub packages: Vec<String>,
    pub boot_id: String,
    /// The host's local time, minutes after midnight.
    pub local_minute: u16,
    /// What a reboot step wrote to `/run/provision-reboot-token` (tmpfs) before rebooting.
    pub reboot_token: Option<String>,
}

pub const REBOOT_REQUIRED: &str = "/var/run/reboot-required";

impl Fact for RebootState {
    type Value = RebootStateValue;

    fn probe(&self) -> Probe {
        Probe {
            key: ProbeKey::named("reboot-state"),
            script: r#"if [ -e /var/run/reboot-required ]; then
  stat -c 'required %Y' /var/run/reboot-required
  if [ -r /var/run/reboot-required.pkgs ]; then sort -u /var/run/reboot-required.pkgs | sed 's/^/package /'; fi
else echo none; fi
read -r b < /proc/sys/kernel/random/boot_id; printf 'boot %s\n' "$b"
if [ -r /run/provision-reboot-token ] && read -r t < /run/provision-reboot-token; then printf 'token %s\n' "$t"; fi
date '+time %H:%M'"#
                .into(),
        }
    }

    fn parse(&self, output: &ProbeOutput) -> Result<RebootStateValue, FactError> {
        let key = "reboot-state";
        require_success(key, output)?;
        let mut v = RebootStateValue::default();
        let mut time = None;
        for line in output.stdout.lines() {
            let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
            match word {
                "none" => {}
                "required" => {
                    v.required_since = Some(
                        rest.trim()
                            .parse()
                            .map_err(|_| parse_error(key, "a modification time", line))?,
                    )
                }
                "package" if !rest.trim().is_empty() => v.packages.push(rest.trim().to_string()),
                "package" => {}
                "boot" => v.boot_id = rest.trim().to_string(),
                "token" => v.reboot_token = Some(rest.trim().to_string()),
                "time" => time = common::values::TimeWindow::minutes(rest.trim()),
                _ => return Err(parse_error(key, "required/package/boot/time lines", line)),
            }
        }
        if v.boot_id.is_empty() {
            return Err(parse_error(key, "the boot id", &output.stdout));
        }
        v.local_minute =
            time.ok_or_else(|| parse_error(key, "the local time (HH:MM)", &output.stdout))?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reboot_state_reads_the_flag_its_packages_the_boot_and_the_time() {
        let out = |stdout: &str| ProbeOutput {
            stdout: stdout.into(),
            stderr: String::new(),
            status: 0,
        };
        let v = RebootState
            .parse(&out("required 1764547200\npackage linux-image-amd64\npackage libc6\nboot 4f1c\ntoken t1\ntime 02:15\n"))
            .unwrap();
        assert_eq!(v.required_since, Some(1_764_547_200));
        assert_eq!(v.packages, ["linux-image-amd64", "libc6"]);
        assert_eq!((v.boot_id.as_str(), v.local_minute), ("4f1c", 135));
        assert_eq!(v.reboot_token.as_deref(), Some("t1"));
        let none = RebootState
            .parse(&out("none\nboot b\ntime 23:59\n"))
            .unwrap();
        assert_eq!((none.required_since, none.local_minute), (None, 1439));
        assert!(
            RebootState.parse(&out("none\ntime 01:00\n")).is_err(),
            "no boot id"
        );
        assert!(
            RebootState.parse(&out("none\nboot b\n")).is_err(),
            "no time"
        );
        assert!(
            RebootState
                .parse(&out("garbage\nboot b\ntime 01:00\n"))
                .is_err()
        );
    }

    use super::*;

    use crate::testing::ok;

    #[test]
    fn login_user() {
        assert_eq!(LoginUser.parse(&ok("deploy\n")).unwrap(), "deploy");
        assert!(LoginUser.parse(&ok("\n")).is_err());
    }

    #[test]
    fn openssh_versions_from_the_package() {
        let v = |s: &str| {
            openssh_version(&BTreeMap::from([(
                OPENSSH_PACKAGE.to_string(),
                s.to_string(),
            )]))
        };
        assert_eq!(v("1:9.2p1-2+deb12u3").unwrap(), Version(9, 2));
        assert_eq!(v("1:8.9p1-3ubuntu0.10").unwrap(), Version(8, 9));
        assert_eq!(v("1:9.6p1-3ubuntu13.5").unwrap(), Version(9, 6));
        assert_eq!(v("1:10.0p1-7").unwrap(), Version(10, 0));
        assert_eq!(v("9.2p1-2").unwrap(), Version(9, 2), "no epoch");
        assert!(v("1:p1-2").is_err());
        assert!(v("1:9").is_err());
        assert!(v("").is_err());
        let none = openssh_version(&BTreeMap::from([(
            "openssh-client".to_string(),
            "1:9.2p1-2".to_string(),
        )]));
        assert!(none.unwrap_err().to_string().contains("openssh-server"));
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
        let failed =
            crate::testing::failed(255, "Missing privilege separation directory: /run/sshd\n");
        assert!(matches!(
            SshdEffective.parse(&failed),
            Err(FactError::ProbeFailed { status: 255, .. })
        ));
    }

    #[test]
    fn ufw_state_from_its_files() {
        assert_eq!(
            UfwState.parse(&ok("ufw: not installed\n")).unwrap(),
            UfwValue::default()
        );
        let inactive = UfwState
            .parse(&ok(
                "loaded=no\nENABLED=no\nIPV6=yes\nDEFAULT_INPUT_POLICY=\"DROP\"\n",
            ))
            .unwrap();
        assert!(inactive.installed && !inactive.active() && inactive.rules.is_empty());
        let v = UfwState
            .parse(&ok(&crate::testing::ufw_probe_output(
                include_str!("../tests/fixtures/ufw-user.rules-foreign"),
                include_str!("../tests/fixtures/ufw-user6.rules-foreign"),
            )))
            .unwrap();
        assert!(v.active() && v.ipv6);
        assert_eq!(
            (v.default_incoming.as_str(), v.default_outgoing.as_str()),
            ("deny", "allow")
        );
        let shown: Vec<String> = v
            .rules
            .iter()
            .map(|r| format!("{} {}", if r.v6 { "v6" } else { "v4" }, r.display()))
            .collect();
        assert_eq!(
            shown,
            [
                "v4 limit 22/tcp",
                "v4 allow 80/tcp",
                "v4 allow 443/tcp",
                "v4 allow 8443/tcp",
                "v4 allow 8080/tcp",
                "v4 allow from 10.0.0.0/8 to any port 5432 proto tcp",
                "v4 allow OpenSSH",
                "v4 deny out 25",
                "v4 allow in on eth0 to any port 9000",
                "v4 route allow in on eth0 out on eth1",
                "v6 limit 22/tcp",
                "v6 allow 80/tcp",
                "v6 allow 443/tcp",
                "v6 allow 8443/tcp",
                "v6 allow 8080/tcp",
                "v6 allow OpenSSH",
                "v6 deny out 25",
                "v6 allow in on eth0 to any port 9000",
                "v6 route allow in on eth0 out on eth1",
                "v6 allow from fe80::/10 to any port 546 proto udp",
            ]
        );
        assert_eq!(v.rules[0].comment, "provision: ssh");
        assert_eq!(v.rules[19].comment, "dhcp v6");
        assert!(v.rules[0].is_plain_incoming() && !v.rules[5].is_plain_incoming());
        assert!(UfwState.parse(&ok("garbage\n")).is_err());
        assert!(
            UfwState
                .parse(&ok("loaded=yes\nv4 ### tuple ### allow tcp\n"))
                .is_err(),
            "a short tuple is an error, not a missing rule"
        );
    }

    #[test]
    fn ufw_tuples_with_logging_apps_with_spaces_and_old_formats() {
        let rule = |t: &str| UfwRule::parse_tuple(t, false).unwrap();
        let r = rule("allow_log-all tcp 22 0.0.0.0/0 any 0.0.0.0/0 in");
        assert_eq!(
            (r.action.as_str(), r.log.as_deref()),
            ("allow", Some("log-all"))
        );
        assert_eq!(r.display(), "allow log-all 22/tcp");
        let r = rule("allow tcp 80,443 0.0.0.0/0 any 0.0.0.0/0 Apache%20Full - in");
        assert_eq!(r.command(), ["allow", "Apache Full"]);
        assert_eq!(r.display(), "allow 'Apache Full'");
        let r = rule("deny any any 0.0.0.0/0 any 0.0.0.0/0 in");
        assert_eq!(r.display(), "deny to any");
        let r = rule("allow tcp 22 0.0.0.0/0 any 0.0.0.0/0");
        assert_eq!(
            (r.direction.as_str(), r.display()),
            ("in", "allow 22/tcp".into())
        );
        let r = rule("reject any any 0.0.0.0/0 any 203.0.113.9 in comment=6279204661696c3242616e");
        assert_eq!(r.display(), "reject from 203.0.113.9");
        assert_eq!(r.comment, "by Fail2Ban");
        assert!(
            UfwRule::parse_tuple("allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 sideways", false).is_none()
        );
        assert!(
            UfwRule::parse_tuple("allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment=zz", false)
                .is_none()
        );
    }

    #[test]
    fn docker_user_chains_per_family() {
        let v = DockerUserChains
            .parse(&ok(
                "v4 rule -N DOCKER-USER\nv4 rule -A DOCKER-USER -j RETURN\nv6 absent\n",
            ))
            .unwrap();
        assert_eq!(
            v.v4,
            ChainState::Rules(vec!["-A DOCKER-USER -j RETURN".into()])
        );
        assert_eq!(v.v6, ChainState::Absent);
        let v = DockerUserChains
            .parse(&ok("v4 no-tool\nv6 rule -N DOCKER-USER\n"))
            .unwrap();
        assert_eq!(
            (v.v4, v.v6),
            (ChainState::NoTool, ChainState::Rules(vec![]))
        );
        for bad in [
            "v4 absent\n",
            "v4 rule -A DOCKER-USER -j RETURN\nv6 absent\n",
            "v4 rule -N DOCKER-USER\nv4 rule -A FORWARD -j DROP\nv6 absent\n",
            "v5 absent\nv4 absent\nv6 absent\n",
            "v4 absent\nv4 absent\nv6 absent\n",
        ] {
            assert!(DockerUserChains.parse(&ok(bad)).is_err(), "{bad}");
        }
    }

    /// Regression: the key was `sysctl:{number of keys}`, so two sysctl facts of the same
    /// size collided and the engine ran only one of them.
    #[test]
    fn sysctl_facts_of_the_same_size_have_different_keys() {
        let a = SysctlState {
            keys: vec!["net.ipv4.ip_forward".into()],
        };
        let b = SysctlState {
            keys: vec!["kernel.kptr_restrict".into()],
        };
        assert_ne!(a.probe().key, b.probe().key);
        let both = common::facts::normalize(vec![a.probe(), b.probe()]).unwrap();
        assert_eq!(both.len(), 2);
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

    /// The probe's `awk` prints exactly what its shell loops printed (kept here as the
    /// reference): settings from the two config files, tuples from the two rules files,
    /// nothing else, a last line without a newline included, missing files skipped.
    #[test]
    fn ufw_probe_reads_its_files_like_the_shell_loops_it_replaced() {
        let reference = |root: &str| {
            format!(
                r#"for f in {root}/etc/ufw/ufw.conf {root}/etc/default/ufw; do
  [ -r "$f" ] || continue
  while IFS= read -r l || [ -n "$l" ]; do
    case $l in ENABLED=*|IPV6=*|DEFAULT_INPUT_POLICY=*|DEFAULT_OUTPUT_POLICY=*) printf '%s\n' "$l";; esac
  done < "$f"
done
for f in user.rules:v4 user6.rules:v6; do
  [ -f "{root}/etc/ufw/${{f%:*}}" ] || continue
  while IFS= read -r l || [ -n "$l" ]; do
    case $l in '### tuple ###'*) printf '%s %s\n' "${{f#*:}}" "$l";; esac
  done < "{root}/etc/ufw/${{f%:*}}"
done"#
            )
        };
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let bin = root.join("bin");
        for d in ["etc/ufw", "etc/default", "bin"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for (name, body) in [("ufw", "exit 0"), ("iptables", "exit 1")] {
            common::testing::write_program(&bin.join(name), body);
        }
        let run = |script: &str| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        let root_text = root.display().to_string();
        let same = |what: &str| {
            let ours = run(&ufw_script(&root_text));
            let theirs = run(&format!("echo 'loaded=no'\n{}", reference(&root_text)));
            assert_eq!(ours, theirs, "{what}");
            ours
        };
        assert_eq!(same("no files"), "loaded=no\n");
        std::fs::write(
            root.join("etc/ufw/ufw.conf"),
            "# comment\nENABLED=yes\nLOGLEVEL=low\n### tuple ### not a rules file\n",
        )
        .unwrap();
        std::fs::write(
            root.join("etc/default/ufw"),
            "IPV6=yes\n DEFAULT_INPUT_POLICY=\"ACCEPT\"\nDEFAULT_INPUT_POLICY=\"DROP\"\nDEFAULT_OUTPUT_POLICY=\"ACCEPT\"",
        )
        .unwrap();
        std::fs::write(
            root.join("etc/ufw/user.rules"),
            include_str!("../tests/fixtures/ufw-user.rules-foreign"),
        )
        .unwrap();
        let v4 = same("config files and IPv4 rules");
        assert!(v4.contains("v4 ### tuple ###"), "{v4}");
        std::fs::write(
            root.join("etc/ufw/user6.rules"),
            format!(
                "ENABLED=no\n{}### tuple ### allow tcp 443 ::/0 any ::/0 in\\ back\\slash",
                include_str!("../tests/fixtures/ufw-user6.rules-foreign")
            ),
        )
        .unwrap();
        let both = same("both rules files, the last line without a newline");
        assert!(both.contains("v6 ### tuple ### allow tcp 443 ::/0 any ::/0 in\\ back\\slash"));
        assert!(!both.contains("ENABLED=no"), "{both}");
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

    /// Issue 14: apt's answer is computed once and reused while nothing it depends on
    /// changed; a change of dpkg's status (an install) or of the lists asks apt again.
    #[test]
    fn pending_upgrades_are_asked_of_apt_again_only_when_its_inputs_change() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for d in ["var/lib/dpkg", "var/lib/apt/lists", "etc/apt", "bin"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::write(r.join("var/lib/dpkg/status"), "Package: a\n").unwrap();
        std::fs::write(r.join("var/lib/apt/lists/x_Packages"), "Package: a\n").unwrap();
        // A fake apt-get that counts its runs and offers one upgrade.
        let apt = r.join("bin/apt-get");
        common::testing::write_program(
            &apt,
            &format!(
                "echo run >> {}/apt-runs\necho 'Inst openssl [3.0.1] (3.0.2 stable)'\necho 'Conf openssl (3.0.2 stable)'",
                r.display()
            ),
        );
        let script = pending_upgrades_script(&r.display().to_string());
        let run = || {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .env("PATH", format!("{}:/usr/bin:/bin", r.join("bin").display()))
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            let value = PendingUpgrades
                .parse(&ok(&String::from_utf8(out.stdout).unwrap()))
                .unwrap();
            let runs = std::fs::read_to_string(r.join("apt-runs")).unwrap_or_default();
            (value, runs.lines().count())
        };
        let probe = || {
            let (value, runs) = run();
            (value.packages, runs)
        };
        assert_eq!(probe(), (vec!["openssl".to_string()], 1));
        assert_eq!(
            probe(),
            (vec!["openssl".to_string()], 1),
            "answered from the cache"
        );
        // The lists' age is the newest list's, in whole minutes.
        let lists = r.join("var/lib/apt/lists");
        let set_age = |name: &str, minutes: u64| {
            let then =
                std::time::SystemTime::now() - std::time::Duration::from_secs(minutes * 60 + 30);
            std::fs::File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(lists.join(name))
                .unwrap()
                .set_modified(then)
                .unwrap();
        };
        set_age("old_Packages", 300);
        set_age("x_Packages", 120);
        assert_eq!(run().0.lists_age_minutes, Some(120));
        assert_eq!(run().1, 2, "a new list asked apt again");
        std::fs::remove_file(lists.join("old_Packages")).unwrap();
        assert_eq!(probe().1, 3, "a list went away");
        std::fs::write(r.join("var/lib/dpkg/status"), "Package: a\nPackage: b\n").unwrap();
        assert_eq!(
            probe(),
            (vec!["openssl".to_string()], 4),
            "dpkg status changed"
        );
        assert_eq!(probe().1, 4);
        std::fs::write(r.join("var/lib/apt/lists/y_Packages"), "").unwrap();
        assert_eq!(probe().1, 5, "the lists changed");
        // A failing apt is an error, and nothing is cached from it.
        common::testing::write_program(&apt, "echo 'E: broken' >&2\nexit 100");
        std::fs::write(r.join("var/lib/dpkg/status"), "").unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("PATH", format!("{}:/usr/bin:/bin", r.join("bin").display()))
            .output()
            .unwrap();
        assert!(!out.status.success());
    }
}
