//! Typed values of an inventory: the rule each kind of value follows. The inventory checks
//! every field against its rule when it loads (see `inventory::check`), so that a bad value
//! is a located error before any connection, never a word of a command or a line of a file.
//!
//! Each function returns `Err(rule)`: what the value breaks, phrased to follow
//! "`<field>`: ". One home per rule; the resources that use the values trust them and still
//! quote them ([`crate::shell`]).

/// A typed value written as a string: serde reads it through `parse` (its rule) and writes
/// its `Display` (`#[serde(try_from = "String", into = "String")]`).
macro_rules! string_value {
    ($t:ty) => {
        impl TryFrom<String> for $t {
            type Error = String;
            fn try_from(s: String) -> Result<$t, String> {
                <$t>::parse(&s)
            }
        }

        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.to_string()
            }
        }
    };
}
pub(crate) use string_value;

mod calendar;
mod domain;
mod openpgp;
mod url;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

pub(crate) use calendar::calendar;
pub use domain::{DomainError, DomainName};
pub use openpgp::armored_key_file;
pub(crate) use openpgp::openpgp_public_key;
pub(crate) use url::http_url;
pub use url::{ServiceUrl, url_host};

/// Debian policy §5.6.1: lowercase letters, digits, `+`, `-`, `.`; at least two characters,
/// starting with a letter or digit. An architecture qualifier (`libc6:amd64`) is allowed.
pub(crate) fn package_name(s: &str) -> Result<(), String> {
    let (name, arch) = match s.split_once(':') {
        Some((n, a)) => (n, Some(a)),
        None => (s, None),
    };
    let ok = name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
    let arch_ok = arch.is_none_or(|a| {
        !a.is_empty()
            && !a.starts_with('-')
            && a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    });
    if ok && arch_ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a Debian package name (lowercase letters, digits, `+`, `-` and `.`, at least two characters, starting with a letter or digit; optionally `:arch`)"
        ))
    }
}

/// The `useradd` default NAME_REGEX: `[a-z_][a-z0-9_-]*[$]?`, at most 32 characters. A
/// leading `-` is not allowed (it would be an option).
pub(crate) fn user_name(s: &str) -> Result<(), String> {
    let body = s.strip_suffix('$').unwrap_or(s);
    let ok = !body.is_empty()
        && s.len() <= 32
        && body.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && body
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a user or group name (useradd's rule: a lowercase letter or `_`, then lowercase letters, digits, `_` or `-`, at most 32 characters)"
        ))
    }
}

/// An owner or group of a file: a user or group name, or a numeric id.
pub fn owner(s: &str) -> Result<(), String> {
    if !s.is_empty() && s.len() <= 10 && s.chars().all(|c| c.is_ascii_digit()) {
        return Ok(());
    }
    user_name(s).map_err(|rule| format!("{rule}; or a numeric id"))
}

/// The deploy user: a user name, and not `root` (its keys would replace root's).
pub(crate) fn deploy_user_name(s: &str) -> Result<(), String> {
    user_name(s)?;
    if s == "root" {
        return Err(
            "the deploy user cannot be `root`: its authorized_keys and sudo rule would replace root's; name a separate account (e.g. `deploy`)".into(),
        );
    }
    Ok(())
}

/// RFC 1123 host name: dot-separated labels of letters, digits and `-` (not at either end
/// of a label), 1 to 63 characters each, at most 253 in all.
pub fn host_name(s: &str) -> Result<(), String> {
    let rule = || {
        format!(
            "{s:?} is not a host name (RFC 1123: labels of letters, digits and `-`, not starting or ending with `-`, 1-63 characters each, 253 in all)"
        )
    };
    if s.is_empty() || s.len() > 253 {
        return Err(rule());
    }
    for label in s.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(rule());
        }
    }
    Ok(())
}

/// A name nginx serves and a certificate can hold: [`DomainName`] rules (LDH labels,
/// 63/253, a wildcard only as the whole first label, IDNs in their `xn--` form); a single
/// label (`localhost`) is allowed here.
pub(crate) fn domain_name(s: &str) -> Result<(), String> {
    if s != s.trim() || s.ends_with('.') {
        return Err(format!(
            "{s:?} is not a domain name: no surrounding spaces or trailing dot"
        ));
    }
    match DomainName::parse(s) {
        Ok(_) | Err(DomainError::SingleLabel { .. }) => Ok(()),
        Err(e) => Err(format!("{s:?} is not a domain name: {e}")),
    }
}

/// A host's address: an IP address, a host name or an `~/.ssh/config` alias (letters,
/// digits, `.`, `_`, `-`, not starting with `-`).
pub fn address(s: &str) -> Result<(), String> {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let ok = !s.is_empty()
        && s.len() <= 253
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not an address: use an IP address, a host name or an ssh_config alias (letters, digits, `.`, `_`, `-`; not starting with `-`)"
        ))
    }
}

/// An absolute, normalised path: starts with `/`, no empty, `.` or `..` components, no
/// trailing `/`, no control characters. Spaces and other printable characters are fine.
pub(crate) fn absolute_path(s: &str) -> Result<(), String> {
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{s:?} contains the control character {c:?}; a path cannot"
        ));
    }
    if !s.starts_with('/') {
        return Err(format!("{s:?} is not an absolute path (start it with `/`)"));
    }
    if s == "/" {
        return Ok(());
    }
    if s[1..]
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!(
            "{s:?} is not a normalised path: no `.` or `..` components, doubled or trailing `/`"
        ));
    }
    Ok(())
}

/// A controller-side path (a key, a template directory): any path without control
/// characters, relative ones resolve against the inventory's directory.
pub(crate) fn local_path(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("the path is empty".into());
    }
    match s.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!(
            "{s:?} contains the control character {c:?}; a path cannot"
        )),
        None => Ok(()),
    }
}

/// A controller-side file ssh reads through `-o NAME=PATH` (known_hosts): ssh splits such
/// a value at whitespace into several files, so none is allowed (nor control characters).
pub(crate) fn ssh_option_path(s: &str) -> Result<(), String> {
    local_path(s)?;
    if s.chars().any(char::is_whitespace) {
        return Err(format!(
            "{s:?} contains a space: ssh reads `UserKnownHostsFile` as a list of files separated by spaces; use a path without spaces"
        ));
    }
    Ok(())
}

/// A port, 1-65535.
pub fn port(n: u16) -> Result<(), String> {
    if n == 0 {
        Err("port 0 is not a port: use 1-65535".into())
    } else {
        Ok(())
    }
}

/// A whole number within `min..=max` (also keeps numbers in what TOML can write back).
pub fn within(n: u64, min: u64, max: u64) -> Result<(), String> {
    if n < min || n > max {
        Err(format!("{n} is out of range: use {min} to {max}"))
    } else {
        Ok(())
    }
}

/// An IP address or a network in CIDR form (`192.0.2.0/24`, `2001:db8::/32`).
pub(crate) fn ip_or_network(s: &str) -> Result<(), String> {
    let rule = || {
        format!(
            "{s:?} is not an IP address or network (e.g. `203.0.113.7`, `192.0.2.0/24`, `2001:db8::/32`)"
        )
    };
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: std::net::IpAddr = addr.parse().map_err(|_| rule())?;
    if let Some(p) = prefix {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let ok = !p.is_empty()
            && p.chars().all(|c| c.is_ascii_digit())
            && p.len() <= 3
            && p.parse::<u32>().is_ok_and(|n| n <= max);
        if !ok {
            return Err(rule());
        }
    }
    Ok(())
}

/// A size such as `10m`: digits, then optionally `k`, `m` or `g` (Docker's log sizes).
pub fn size(s: &str) -> Result<(), String> {
    let digits = s.trim_end_matches(['k', 'm', 'g']);
    let ok = !digits.is_empty()
        && s.len() - digits.len() <= 1
        && digits.len() <= 12
        && digits.chars().all(|c| c.is_ascii_digit())
        && digits.parse::<u64>().is_ok_and(|n| n > 0);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a size: a positive whole number, optionally followed by `k`, `m` or `g` (e.g. `10m`)"
        ))
    }
}

/// A time zone name as the zoneinfo database spells it (`Asia/Shanghai`, `Etc/UTC`,
/// `UTC`): components of letters, digits, `_`, `+` and `-`, none `.` or `..`. Whether the
/// host has it is checked on the host at plan time.
pub fn timezone(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.split('/').all(|c| {
            !c.is_empty()
                && c.starts_with(|c: char| c.is_ascii_alphabetic())
                && c.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a time zone name (like `Asia/Shanghai` or `Etc/UTC`: `/`-separated names of letters, digits, `_`, `+`, `-`)"
        ))
    }
}

/// A daily time window, `HH:MM-HH:MM` in the host's local time; it may pass midnight
/// (`23:30-01:00`). The start is inside, the end is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    /// Minutes after midnight.
    pub start: u16,
    pub end: u16,
}

impl TimeWindow {
    /// Contains no minute (what an unparsable window falls back to: fail closed).
    pub const NEVER: TimeWindow = TimeWindow { start: 0, end: 0 };

    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?} is not a time window: `HH:MM-HH:MM` in the host's local time, 24-hour clock (like `02:00-04:00`, or `23:30-01:00` across midnight)"
            )
        };
        let (start, end) = s.split_once('-').ok_or_else(bad)?;
        let (start, end) = (
            Self::minutes(start).ok_or_else(bad)?,
            Self::minutes(end).ok_or_else(bad)?,
        );
        if start == end {
            return Err(format!(
                "{s:?} is an empty time window (start and end are the same time)"
            ));
        }
        Ok(Self { start, end })
    }

    /// `HH:MM` → minutes after midnight.
    pub fn minutes(hhmm: &str) -> Option<u16> {
        let (h, m) = hhmm.split_once(':')?;
        let digits = |t: &str| t.len() == 2 && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(h) || !digits(m) {
            return None;
        }
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60).then_some(h * 60 + m)
    }

    /// Whether `minute` (after midnight) is inside the window.
    pub fn contains(&self, minute: u16) -> bool {
        if self.start == self.end {
            false
        } else if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }

    /// The start as `HH:MM`.
    pub fn start_hhmm(&self) -> String {
        format!("{:02}:{:02}", self.start / 60, self.start % 60)
    }
}

impl std::fmt::Display for TimeWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}-{:02}:{:02}",
            self.start_hhmm(),
            self.end / 60,
            self.end % 60
        )
    }
}

/// Key types OpenSSH accepts in `authorized_keys` today (DSA is disabled since 9.8).
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// An SSH public key line: `TYPE BASE64 [COMMENT]` on one line, a known type, base64 that
/// decodes to a key blob of that type. No `authorized_keys` options (`command=`, ...).
pub(crate) fn ssh_public_key(s: &str) -> Result<(), String> {
    let short: String = s.chars().take(40).collect();
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the key starting {short:?} contains {c:?}: one key per entry, on one line"
        ));
    }
    let mut words = s.split(' ').filter(|w| !w.is_empty());
    let (Some(kind), Some(data)) = (words.next(), words.next()) else {
        return Err(format!(
            "{short:?} is not an SSH public key: expected `TYPE BASE64 [COMMENT]`"
        ));
    };
    if !KEY_TYPES.contains(&kind) {
        return Err(format!(
            "{short:?} is not an SSH public key: key type {kind:?} is not one of {}",
            KEY_TYPES.join(", ")
        ));
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| format!("the {kind} key is not valid base64: {e}"))?;
    let declared = blob
        .get(..4)
        .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
        .and_then(|n| blob.get(4..4 + n));
    if declared != Some(kind.as_bytes()) {
        return Err(format!(
            "the {kind} key's data is not a {kind} key (its base64 decodes to another type or to garbage)"
        ));
    }
    if kind == "ssh-ed25519" && blob.len() != 4 + 11 + 4 + 32 {
        return Err("the ssh-ed25519 key's data has the wrong length".into());
    }
    Ok(())
}

/// An e-mail address: `local@domain`, a dot-atom local part (RFC 5322 atext), a domain name
/// with at least two labels.
pub fn email(s: &str) -> Result<(), String> {
    let rule = || format!("{s:?} is not an e-mail address (`name@example.com`)");
    let (local, domain) = s.rsplit_once('@').ok_or_else(rule)?;
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(atext));
    if !local_ok
        || !domain.contains('.')
        || DomainName::parse(domain).is_err()
        || domain != domain.trim()
    {
        return Err(rule());
    }
    Ok(())
}

/// A short name used in paths and unit names (an app, a template, a certificate): letters,
/// digits, `-`, `_`, `.`, starting with a letter or digit, at most 64 characters.
pub(crate) fn short_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a name: letters, digits, `-`, `_` and `.`, starting with a letter or digit, at most 64 characters"
        ))
    }
}

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn env_name(s: &str) -> Result<(), String> {
    let ok = s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not an environment variable name (letters, digits and `_`, not starting with a digit)"
        ))
    }
}

/// The program of a command run on the controller (argv[0]): a name looked up in `PATH`
/// or a path; not empty, no control characters, not an option.
pub fn program(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err("the program name is empty".into());
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(format!("{s:?} contains the control character {c:?}"));
    }
    if s.starts_with('-') {
        return Err(format!(
            "{s:?} starts with `-`: the first word is the program"
        ));
    }
    Ok(())
}

/// A value of one line: no control characters (a newline would start another line of
/// the file it goes into).
pub(crate) fn one_line(s: &str) -> Result<(), String> {
    match s.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!("the value contains {c:?}; it must be one line")),
        None => Ok(()),
    }
}

/// An octal file mode as the inventory writes it: three or four octal digits, optionally
/// after a `0` (`"0640"`, `"640"`, `"4755"`); typed when the vars load, so nothing after
/// the load can meet a bad one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FileMode(u32);

impl FileMode {
    pub fn parse(s: &str) -> Result<FileMode, String> {
        let digits = s.strip_prefix('0').filter(|d| !d.is_empty()).unwrap_or(s);
        let ok =
            (3..=4).contains(&digits.len()) && digits.chars().all(|c| ('0'..='7').contains(&c));
        match ok.then(|| u32::from_str_radix(digits, 8).ok()).flatten() {
            Some(bits) => Ok(FileMode(bits)),
            None => Err(format!(
                "{s:?} is not a file mode: an octal mode such as \"0640\""
            )),
        }
    }

    /// The mode bits (`0o640`).
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl std::fmt::Display for FileMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

string_value!(FileMode);

#[cfg(test)]
mod tests {
    #[test]
    fn file_modes_are_three_or_four_octal_digits_and_round_trip() {
        for (text, bits) in [
            ("0640", 0o640),
            ("640", 0o640),
            ("4755", 0o4755),
            ("01777", 0o1777),
            ("0000", 0),
        ] {
            let mode = FileMode::parse(text).unwrap();
            assert_eq!(mode.bits(), bits, "{text}");
            assert_eq!(FileMode::parse(&String::from(mode)), Ok(mode), "{text}");
        }
        for bad in [
            "",
            "0",
            "64",
            "0o644",
            "0x44",
            "rw-r--r--",
            "0648",
            "12345",
            "-1",
            "999",
            " 640",
        ] {
            let rule = FileMode::parse(bad).expect_err(bad);
            assert!(rule.contains("not a file mode"), "{bad}: {rule}");
        }
    }

    #[test]
    fn time_windows_parse_strictly_and_may_pass_midnight() {
        let night = TimeWindow::parse("02:00-04:00").unwrap();
        assert_eq!((night.start, night.end), (120, 240));
        assert!(night.contains(120) && night.contains(239) && !night.contains(240));
        assert_eq!(night.to_string(), "02:00-04:00");
        let across = TimeWindow::parse("23:30-01:00").unwrap();
        assert!(across.contains(23 * 60 + 45) && across.contains(30) && !across.contains(60));
        assert_eq!(across.start_hhmm(), "23:30");
        for bad in [
            "",
            "2-4",
            "02:00",
            "24:00-01:00",
            "02:60-03:00",
            "2:00-4:00",
            "02:00-02:00",
            "02:00 - 04:00",
        ] {
            assert!(TimeWindow::parse(bad).is_err(), "{bad:?}");
        }
    }

    use super::*;

    type Rule = fn(&str) -> Result<(), String>;

    #[test]
    fn each_rule_accepts_the_usual_and_refuses_the_hostile() {
        let cases: &[(Rule, &[&str], &[&str])] = &[
            (
                package_name,
                &["curl", "net-tools", "g++", "libc6:amd64", "python3.11"],
                &[
                    "-oDPkg::Pre-Invoke=x",
                    "a",
                    "Curl",
                    "curl;id",
                    "curl $(id)",
                    "",
                    ".x",
                ],
            ),
            (
                user_name,
                &["deploy", "_svc", "web-1", "build$"],
                &["%sudo", "-oops", "Root", "a b", "", "1abc", "a:b", "x\ny"],
            ),
            (
                host_name,
                &["web-1", "web-1.example.com", "a"],
                &["bad_host!name$(id)", "-x", "x-", "a..b", ""],
            ),
            (
                domain_name,
                &[
                    "example.com",
                    "*.example.com",
                    "localhost",
                    "xn--bcher-kva.example",
                ],
                &[
                    "x.com; include /etc/passwd; #",
                    "a.*.com",
                    "bücher.example",
                    "-a.com",
                    "a.com.",
                ],
            ),
            (
                absolute_path,
                &["/opt/my app", "/", "/opt/a-b/c.d"],
                &[
                    "relative/x",
                    "/opt/../etc",
                    "/opt//x",
                    "/opt/x/",
                    "/opt/x\n",
                    "/opt/./x",
                ],
            ),
            (
                ip_or_network,
                &["10.0.0.1", "10.0.0.0/8", "2001:db8::/32"],
                &["not-an-ip", "10.0.0.0/33", "1.2.3.4/", "x/8"],
            ),
            (
                size,
                &["10m", "100k", "1g", "512"],
                &["ten megs", "10mb", "0", "m", "-1m"],
            ),
            (
                timezone,
                &[
                    "Asia/Shanghai",
                    "Etc/UTC",
                    "UTC",
                    "America/Argentina/Buenos_Aires",
                    "Etc/GMT+8",
                ],
                &[
                    "../../etc/passwd",
                    "Asia/../x",
                    "/etc/passwd",
                    "a b",
                    "$(id)",
                    "",
                ],
            ),
            (
                email,
                &["ops@example.com", "a.b+c@x.example.org"],
                &["ops", "@x.com", "a@localhost", "a b@x.com", "a@x.com\n"],
            ),
            (
                address,
                &["10.77.0.2", "::1", "web-1.example.com", "lab_1"],
                &["-oProxyCommand=x", "a b", ""],
            ),
        ];
        for (rule, good, bad) in cases {
            for g in *good {
                assert_eq!(rule(g), Ok(()), "{g:?}");
            }
            for b in *bad {
                assert!(rule(b).is_err(), "{b:?} accepted");
            }
        }
        assert!(deploy_user_name("root").is_err());
        assert!(port(0).is_err());
    }

    #[test]
    fn ssh_keys_are_one_line_a_known_type_and_valid_base64() {
        let good = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA ops@example";
        assert_eq!(ssh_public_key(good), Ok(()));
        for bad in [
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA ops\nssh-ed25519 AAAA evil",
            "ssh-ed25519 not*base64",
            "ssh-dss AAAAB3NzaC1kc3M=",
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "command=\"id\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "ssh-ed25519",
        ] {
            assert!(ssh_public_key(bad).is_err(), "{bad:?}");
        }
    }
}
