//! Facts every resource set needs. Each is a snippet of POSIX sh and a pure parser;
//! parsers are tested against fixture outputs below.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;

use super::{Fact, FactError, Probe, ProbeKey, ProbeOutput, require_success};
use crate::shell::{Command, quote};

fn parse_error(key: &str, what: &str, line: &str) -> FactError {
    FactError::Parse {
        key: key.to_string(),
        what: what.to_string(),
        line: line.to_string(),
    }
}

/// Operating system, virtualization and size of the host.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostInfo;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct HostInfoValue {
    /// `ID` from os-release, e.g. `debian`, `ubuntu`.
    pub os_id: String,
    pub os_version: String,
    pub os_codename: String,
    /// `systemd-detect-virt` output: `none`, `kvm`, `systemd-nspawn`, `lxc`, ...
    pub virtualization: String,
    pub hostname: String,
    pub cpus: u32,
    pub memory_mib: u64,
    /// Free space on `/` in MiB.
    pub root_free_mib: u64,
    pub architecture: String,
}

impl HostInfoValue {
    /// Kernel settings are read-only inside containers (nspawn, LXC, Docker, OpenVZ).
    pub fn is_container(&self) -> bool {
        matches!(
            self.virtualization.as_str(),
            "systemd-nspawn"
                | "lxc"
                | "lxc-libvirt"
                | "docker"
                | "podman"
                | "openvz"
                | "wsl"
                | "container-other"
        )
    }
}

/// Where the host probe keeps what cannot change before the next boot: the boot id, the
/// virtualization and dpkg's architecture. `systemd-detect-virt` and `dpkg` were a fifth
/// of a no-op's probe time on the host; /run is emptied at boot, and the boot id is checked
/// as well, so a stale copy is never read.
const BOOT_CONSTANTS: &str = "/run/provision-host-facts";

/// The host probe, its boot constants kept in `cache`. Only builtins run when the cache is
/// warm, except `df`. `systemd-detect-virt` prints `none` and fails on bare metal, which is
/// not an error here. The online CPUs are sysfs's list (what `getconf` reads), counted by
/// the parser.
fn host_script(cache: &str) -> String {
    let cache = quote(cache);
    format!(
        r#". /etc/os-release
echo "os_id=$ID"; echo "os_version=$VERSION_ID"; echo "os_codename=${{VERSION_CODENAME:-}}"
read -r __b < /proc/sys/kernel/random/boot_id
if [ -r {cache} ] && {{ read -r __cb; read -r __virt; read -r __arch; }} < {cache} && [ "$__cb" = "$__b" ] && [ -n "$__virt" ] && [ -n "$__arch" ]; then :; else
  __virt=$(systemd-detect-virt 2>/dev/null); [ -n "$__virt" ] || __virt=none
  if __arch=$(dpkg --print-architecture 2>/dev/null) && [ -n "$__arch" ]; then
    {{ printf '%s\n%s\n%s\n' "$__b" "$__virt" "$__arch" > {cache}.$$ && mv -f -- {cache}.$$ {cache}; }} 2>/dev/null || rm -f -- {cache}.$$
  else __arch=$(uname -m); fi
fi
echo "virtualization=$__virt"
if [ -r /etc/hostname ] && read -r h < /etc/hostname; then echo "hostname=$h"; else echo "hostname=$(hostname)"; fi
if [ -r /sys/devices/system/cpu/online ] && read -r c < /sys/devices/system/cpu/online; then echo "cpus_online=$c"; else echo "cpus=$(getconf _NPROCESSORS_ONLN)"; fi
while read -r k v _; do if [ "$k" = MemTotal: ]; then echo "memory_kib=$v"; break; fi; done < /proc/meminfo
set -f; set -- $(df -Pk /); shift 10; echo "root_free_kib=$1"
echo "architecture=$__arch""#
    )
}

/// The number of CPUs in a sysfs CPU list such as `0-3,5,8-9`.
fn count_cpu_list(list: &str) -> Option<u32> {
    list.trim().split(',').try_fold(0u32, |n, part| {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        let (first, last) = (first.parse::<u32>().ok()?, last.parse::<u32>().ok()?);
        (first <= last).then(|| n + (last - first + 1))
    })
}

impl Fact for HostInfo {
    type Value = HostInfoValue;

    fn probe(&self) -> Probe {
        Probe {
            key: ProbeKey::named("host"),
            script: host_script(BOOT_CONSTANTS),
        }
    }

    fn parse(&self, output: &ProbeOutput) -> Result<HostInfoValue, FactError> {
        require_success("host", output)?;
        let mut v = HostInfoValue::default();
        for line in output.stdout.lines() {
            let (k, val) = line
                .split_once('=')
                .ok_or_else(|| parse_error("host", "key=value", line))?;
            let number = |s: &str| {
                s.trim()
                    .parse::<u64>()
                    .map_err(|_| parse_error("host", k, line))
            };
            match k {
                "os_id" => v.os_id = val.to_string(),
                "os_version" => v.os_version = val.to_string(),
                "os_codename" => v.os_codename = val.to_string(),
                "virtualization" => v.virtualization = val.trim().to_string(),
                "hostname" => v.hostname = val.trim().to_string(),
                "cpus" => v.cpus = number(val)? as u32,
                "cpus_online" => {
                    v.cpus = count_cpu_list(val).ok_or_else(|| parse_error("host", k, line))?
                }
                "memory_kib" => v.memory_mib = number(val)? / 1024,
                "root_free_kib" => v.root_free_mib = number(val)? / 1024,
                "architecture" => v.architecture = val.to_string(),
                _ => {}
            }
        }
        if v.os_id.is_empty() {
            return Err(parse_error("host", "os-release ID", &output.stdout));
        }
        Ok(v)
    }
}

/// Installed Debian packages (one probe shared by every package resource).
#[derive(Debug, Clone, Copy, Default)]
pub struct InstalledPackages;

impl Fact for InstalledPackages {
    /// Package name (without `:arch`) → version, for packages fully installed (selected
    /// to stay installed or held: `ii` and `hi`, without an error flag).
    type Value = BTreeMap<String, String>;

    fn probe(&self) -> Probe {
        Probe {
            key: ProbeKey::named("dpkg"),
            script: r"dpkg-query -W -f='${Package}\t${db:Status-Abbrev}\t${Version}\n'".into(),
        }
    }

    fn parse(&self, output: &ProbeOutput) -> Result<Self::Value, FactError> {
        dpkg_listing(output, |status| {
            matches!(
                status.as_bytes(),
                [b'i' | b'h', b'i', b' ', ..] | [b'i' | b'h', b'i']
            )
        })
    }
}

/// Packages whose files are on disk, from the same listing as [`InstalledPackages`]:
/// fully installed, held, or in the middle of an install or upgrade (unpacked,
/// half-configured, awaiting or pending triggers), whatever their selection. What a
/// program's version is read from while unattended-upgrades may be upgrading it.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnpackedPackages;

impl Fact for UnpackedPackages {
    /// Package name (without `:arch`) → the version dpkg lists for it.
    type Value = BTreeMap<String, String>;

    fn probe(&self) -> Probe {
        InstalledPackages.probe()
    }

    fn parse(&self, output: &ProbeOutput) -> Result<Self::Value, FactError> {
        dpkg_listing(output, |status| {
            matches!(
                status.as_bytes().get(1),
                Some(b'i' | b'U' | b'F' | b'W' | b't')
            )
        })
    }
}

/// The dpkg listing's packages whose `db:Status-Abbrev` (selection, state, error flag)
/// `keep` accepts.
fn dpkg_listing(
    output: &ProbeOutput,
    keep: impl Fn(&str) -> bool,
) -> Result<BTreeMap<String, String>, FactError> {
    require_success("dpkg", output)?;
    let mut packages = BTreeMap::new();
    for line in output.stdout.lines().filter(|l| !l.is_empty()) {
        let mut fields = line.split('\t');
        let (Some(name), Some(status), Some(version)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(parse_error("dpkg", "package line", line));
        };
        if keep(status) {
            let name = name.split(':').next().unwrap_or(name);
            packages.insert(name.to_string(), version.to_string());
        }
    }
    Ok(packages)
}

/// Type, mode, owner and (for regular files up to 1 MiB) content of a path.
#[derive(Debug, Clone)]
pub struct PathState {
    pub path: String,
}

impl PathState {
    pub fn new(path: impl Into<String>) -> Self {
        Self { path: path.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathKind {
    Absent,
    File,
    Directory,
    Symlink,
    Other(String),
}

impl PathKind {
    /// From `stat -c %F`.
    pub fn from_stat(text: &str) -> PathKind {
        match text {
            "regular file" | "regular empty file" => PathKind::File,
            "directory" => PathKind::Directory,
            "symbolic link" => PathKind::Symlink,
            other => PathKind::Other(other.to_string()),
        }
    }

    /// As `stat` names it (`absent` when nothing is there).
    pub fn name(&self) -> &str {
        match self {
            PathKind::Absent => "absent",
            PathKind::File => "regular file",
            PathKind::Directory => "directory",
            PathKind::Symlink => "symbolic link",
            PathKind::Other(other) => other,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStateValue {
    pub kind: PathKind,
    pub mode: u32,
    pub owner: String,
    pub group: String,
    pub size: u64,
    /// Content of regular files up to [`MAX_CONTENT`] bytes.
    pub content: Option<Vec<u8>>,
    /// SHA-256 (lowercase hex) of regular files larger than [`MAX_CONTENT`], whose content
    /// is not read.
    pub sha256: Option<String>,
}

/// Files larger than this are compared by size and SHA-256 instead of content (managed files
/// are config-sized).
pub(crate) const MAX_CONTENT: u64 = 1024 * 1024;

impl Fact for PathState {
    type Value = PathStateValue;

    fn probe(&self) -> Probe {
        super::fold::StatKind::PathState.probe(&self.path)
    }

    fn parse(&self, output: &ProbeOutput) -> Result<PathStateValue, FactError> {
        let key = self.probe().key;
        require_success(&key, output)?;
        let mut lines = output.stdout.lines();
        let first = lines.next().unwrap_or_default();
        if first == "absent" {
            return Ok(PathStateValue {
                kind: PathKind::Absent,
                mode: 0,
                owner: String::new(),
                group: String::new(),
                size: 0,
                content: None,
                sha256: None,
            });
        }
        let f: Vec<&str> = first.split('|').collect();
        let [kind, mode, owner, group, size] = f.as_slice() else {
            return Err(parse_error(&key, "stat line", first));
        };
        let kind = PathKind::from_stat(kind);
        let mode = u32::from_str_radix(mode, 8).map_err(|_| parse_error(&key, "mode", first))?;
        let size = size.parse().map_err(|_| parse_error(&key, "size", first))?;
        let (content, sha256) = match lines.next() {
            Some(line) if kind == PathKind::File => match line.trim().strip_prefix("sha256:") {
                Some(hex)
                    if hex.len() == 64
                        && hex
                            .bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
                {
                    (None, Some(hex.to_string()))
                }
                Some(_) => return Err(parse_error(&key, "sha256 line", line)),
                None => (
                    Some(
                        base64::engine::general_purpose::STANDARD
                            .decode(line.trim())
                            .map_err(|_| parse_error(&key, "base64 content", line))?,
                    ),
                    None,
                ),
            },
            _ => (None, None),
        };
        Ok(PathStateValue {
            kind,
            mode,
            owner: owner.to_string(),
            group: group.to_string(),
            size,
            content,
            sha256,
        })
    }
}

/// State of a systemd unit.
#[derive(Debug, Clone)]
pub struct UnitState {
    pub unit: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnitStateValue {
    /// `loaded`, `not-found`, `masked`...
    pub load_state: String,
    /// `active`, `inactive`, `failed`, `activating`...
    pub active_state: String,
    /// `enabled`, `disabled`, `static`, `masked`, `generated`, `indirect`...
    pub unit_file_state: String,
}

impl UnitStateValue {
    pub fn exists(&self) -> bool {
        self.load_state == "loaded"
    }
    pub fn is_active(&self) -> bool {
        self.active_state == "active"
    }
    pub(crate) fn is_enabled(&self) -> bool {
        matches!(
            self.unit_file_state.as_str(),
            "enabled" | "enabled-runtime" | "static" | "generated" | "alias" | "indirect"
        )
    }
}

impl Fact for UnitState {
    type Value = UnitStateValue;

    fn probe(&self) -> Probe {
        super::fold::unit_probe(&self.unit)
    }

    fn parse(&self, output: &ProbeOutput) -> Result<UnitStateValue, FactError> {
        let key = self.probe().key;
        require_success(&key, output)?;
        let mut v = UnitStateValue::default();
        for line in output.stdout.lines() {
            match line.split_once('=') {
                Some(("LoadState", s)) => v.load_state = s.to_string(),
                Some(("ActiveState", s)) => v.active_state = s.to_string(),
                Some(("UnitFileState", s)) => v.unit_file_state = s.to_string(),
                _ => {}
            }
        }
        if v.load_state.is_empty() {
            return Err(parse_error(&key, "LoadState", &output.stdout));
        }
        Ok(v)
    }
}

/// The configured time zone (`/etc/localtime` link target) and whether a zone exists.
#[derive(Debug, Clone)]
pub(crate) struct TimezoneState {
    /// The zone the resource wants, checked for existence in the same probe.
    pub wanted: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TimezoneValue {
    pub current: String,
    pub wanted_exists: bool,
    /// The host has a zoneinfo database (tzdata): a missing zone is then a wrong name,
    /// not a package still to install.
    pub zoneinfo: bool,
}

impl Fact for TimezoneState {
    type Value = TimezoneValue;

    fn probe(&self) -> Probe {
        let file = quote(&format!("/usr/share/zoneinfo/{}", self.wanted));
        Probe {
            key: ProbeKey::about("timezone", &self.wanted),
            script: format!(
                "t=$(readlink /etc/localtime 2>/dev/null); echo \"current=${{t#*/zoneinfo/}}\"; \
                 if [ -f {file} ]; then echo exists=1; else echo exists=0; fi; \
                 if [ -f /usr/share/zoneinfo/Etc/UTC ]; then echo zoneinfo=1; else echo zoneinfo=0; fi"
            ),
        }
    }

    fn parse(&self, output: &ProbeOutput) -> Result<TimezoneValue, FactError> {
        let key = self.probe().key;
        require_success(&key, output)?;
        let mut current = None;
        let mut exists = None;
        let mut zoneinfo = false;
        for line in output.stdout.lines() {
            match line.split_once('=') {
                Some(("current", c)) => current = Some(c.to_string()),
                Some(("exists", e)) => exists = Some(e == "1"),
                Some(("zoneinfo", z)) => zoneinfo = z == "1",
                _ => return Err(parse_error(&key, "timezone line", line)),
            }
        }
        match (current, exists) {
            (Some(current), Some(wanted_exists)) => Ok(TimezoneValue {
                current,
                wanted_exists,
                zoneinfo,
            }),
            _ => Err(parse_error(&key, "timezone output", &output.stdout)),
        }
    }
}

/// A local user account.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountValue {
    pub exists: bool,
    pub home: String,
    pub shell: String,
    pub groups: Vec<String>,
}

impl Fact for Account {
    type Value = AccountValue;

    fn probe(&self) -> Probe {
        let getent = Command::new("getent").operands(["passwd", self.name.as_str()]);
        let id = Command::new("id").arg("-nG").operand(self.name.as_str());
        Probe {
            key: ProbeKey::about("account", &self.name),
            script: format!("if e=$({getent}); then echo \"$e\"; {id}; else echo absent; fi"),
        }
    }

    fn parse(&self, output: &ProbeOutput) -> Result<AccountValue, FactError> {
        let key = self.probe().key;
        require_success(&key, output)?;
        let mut lines = output.stdout.lines();
        let first = lines.next().unwrap_or_default();
        if first == "absent" {
            return Ok(AccountValue {
                exists: false,
                home: String::new(),
                shell: String::new(),
                groups: Vec::new(),
            });
        }
        let fields: Vec<&str> = first.split(':').collect();
        if fields.len() != 7 {
            return Err(parse_error(&key, "passwd entry", first));
        }
        let groups = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        Ok(AccountValue {
            exists: true,
            home: fields[5].to_string(),
            shell: fields[6].to_string(),
            groups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::ok;

    #[test]
    fn host_info_from_debian_nspawn() {
        let v = HostInfo
            .parse(&ok(include_str!(
                "../../tests/fixtures/facts/host-debian12-nspawn.txt"
            )))
            .unwrap();
        assert_eq!(v.os_id, "debian");
        assert_eq!(v.os_version, "12");
        assert_eq!(v.os_codename, "bookworm");
        assert!(v.is_container());
        assert_eq!((v.cpus, v.memory_mib, v.root_free_mib), (2, 24041, 81234));
    }

    #[test]
    fn host_info_from_ubuntu_vm() {
        let v = HostInfo
            .parse(&ok(include_str!(
                "../../tests/fixtures/facts/host-ubuntu2404-kvm.txt"
            )))
            .unwrap();
        assert_eq!(
            (v.os_id.as_str(), v.os_version.as_str()),
            ("ubuntu", "24.04")
        );
        assert!(!v.is_container());
    }

    #[test]
    fn host_info_rejects_garbage() {
        assert!(HostInfo.parse(&ok("no equals sign\n")).is_err());
        assert!(HostInfo.parse(&ok("cpus=two\nos_id=debian\n")).is_err());
    }

    #[test]
    fn cpu_lists_are_counted_range_by_range() {
        assert_eq!(count_cpu_list("0\n"), Some(1));
        assert_eq!(count_cpu_list("0-1"), Some(2));
        assert_eq!(count_cpu_list("0-3,5,8-9"), Some(7));
        assert_eq!(count_cpu_list(""), None);
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list("0-x"), None);
        let v = HostInfo
            .parse(&ok("os_id=debian\ncpus_online=0-1,4\n"))
            .unwrap();
        assert_eq!(v.cpus, 3);
        assert!(
            HostInfo
                .parse(&ok("os_id=debian\ncpus_online=a\n"))
                .is_err()
        );
    }

    /// Runs the host probe with `cache` for its boot constants and a `systemd-detect-virt`
    /// and `dpkg` that print `virt` and `arch` (and fail like the real `systemd-detect-virt`
    /// on bare metal when `virt` is `none`).
    fn run_host_probe(
        dir: &std::path::Path,
        cache: &std::path::Path,
        virt: &str,
        arch: &str,
    ) -> HostInfoValue {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let status = if virt == "none" { 1 } else { 0 };
        crate::testing::write_program(
            &bin.join("systemd-detect-virt"),
            &format!("echo {virt}; exit {status}"),
        );
        crate::testing::write_program(
            &bin.join("dpkg"),
            &match arch {
                "fails" => "exit 2".to_string(),
                arch => format!("echo {arch}"),
            },
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(host_script(cache.to_str().unwrap()))
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        HostInfo
            .parse(&ok(&String::from_utf8(out.stdout).unwrap()))
            .unwrap()
    }

    /// Regression: `systemd-detect-virt` prints `none` and exits 1 on bare metal, and the
    /// probe's `|| echo none` made that two lines, the second no `key=value`: the host
    /// fact failed on every bare-metal server.
    #[test]
    fn a_bare_metal_host_reads_as_virtualization_none() {
        let dir = tempfile::tempdir().unwrap();
        let v = run_host_probe(dir.path(), &dir.path().join("cache"), "none", "amd64");
        assert_eq!(v.virtualization, "none");
        assert!(!v.is_container());
        assert_eq!(v.architecture, "amd64");
    }

    #[test]
    fn boot_constants_are_read_once_per_boot() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("host-facts");
        let first = run_host_probe(dir.path(), &cache, "kvm", "arm64");
        assert_eq!(
            (first.virtualization.as_str(), first.architecture.as_str()),
            ("kvm", "arm64")
        );
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        assert_eq!(
            std::fs::read_to_string(&cache).unwrap(),
            format!("{boot}kvm\narm64\n")
        );
        let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
        assert_eq!(Some(first.cpus), count_cpu_list(&online));
        let getconf = std::process::Command::new("getconf")
            .arg("_NPROCESSORS_ONLN")
            .output()
            .unwrap();
        assert_eq!(
            first.cpus.to_string(),
            String::from_utf8(getconf.stdout).unwrap().trim(),
            "what getconf counts"
        );

        // Warm: the programs are not run again this boot.
        let warm = run_host_probe(dir.path(), &cache, "qemu-changed", "i386");
        assert_eq!(
            (warm.virtualization.as_str(), warm.architecture.as_str()),
            ("kvm", "arm64")
        );

        // Another boot's copy, or a torn one, is never read.
        std::fs::write(&cache, "another-boot\nlxc\namd64\n").unwrap();
        let rebooted = run_host_probe(dir.path(), &cache, "xen", "amd64");
        assert_eq!(rebooted.virtualization, "xen");
        std::fs::write(&cache, boot.trim_end()).unwrap();
        let torn = run_host_probe(dir.path(), &cache, "vmware", "amd64");
        assert_eq!(torn.virtualization, "vmware");

        // Without dpkg's answer the kernel's machine name stands in, for this run only.
        std::fs::remove_file(&cache).unwrap();
        let no_dpkg = run_host_probe(dir.path(), &cache, "kvm", "fails");
        let machine = std::process::Command::new("uname")
            .arg("-m")
            .output()
            .unwrap();
        assert_eq!(
            no_dpkg.architecture,
            String::from_utf8(machine.stdout).unwrap().trim()
        );
        assert!(!cache.exists(), "nothing kept from a failed dpkg");
    }

    #[test]
    fn dpkg_lists_only_fully_installed_packages() {
        let v = InstalledPackages
            .parse(&ok(include_str!(
                "../../tests/fixtures/facts/dpkg-query.txt"
            )))
            .unwrap();
        assert_eq!(
            v.get("curl").map(String::as_str),
            Some("7.88.1-10+deb12u12")
        );
        assert!(v.contains_key("libc6"), "arch suffix stripped");
        assert!(
            !v.contains_key("vim"),
            "rc (removed, config kept) is not installed"
        );
        assert!(!v.contains_key("htop"), "half-installed is not installed");
    }

    /// Review of issue 14's change: a held package (`apt-mark hold`: `hi`) is installed;
    /// the version of one being upgraded (unpacked, half-configured) is still known.
    #[test]
    fn held_packages_are_installed_and_an_upgrading_one_has_a_version() {
        let listing = ok("openssh-server\thi \t1:10.0p1-7+deb13u4\n\
             docker.io\tiU \t26.1.5+dfsg1-9\n\
             fail2ban\tiF \t1.1.0-7\n\
             vim\trc \t2:9.1.1230-2\n\
             htop\tiH \t3.4.1-4\n\
             curl\tii \t8.14.1-2\n\
             broken\tiiR\t1.0\n");
        let installed = InstalledPackages.parse(&listing).unwrap();
        assert_eq!(
            installed.keys().collect::<Vec<_>>(),
            ["curl", "openssh-server"],
            "fully installed, held included"
        );
        let unpacked = UnpackedPackages.parse(&listing).unwrap();
        assert_eq!(
            unpacked.keys().collect::<Vec<_>>(),
            ["broken", "curl", "docker.io", "fail2ban", "openssh-server"]
        );
        assert_eq!(
            UnpackedPackages.probe(),
            InstalledPackages.probe(),
            "one probe"
        );
    }

    #[test]
    fn failed_probe_is_an_error_never_an_empty_list() {
        let failed = crate::testing::failed(127, "dpkg-query: not found\n");
        assert!(matches!(
            InstalledPackages.parse(&failed),
            Err(FactError::ProbeFailed { status: 127, .. })
        ));
    }

    #[test]
    fn path_state_file_with_content() {
        let v = PathState::new("/etc/motd")
            .parse(&ok("regular file|644|root|root|6\naGVsbG8K\n"))
            .unwrap();
        assert_eq!(v.kind, PathKind::File);
        assert_eq!((v.mode, v.owner.as_str()), (0o644, "root"));
        assert_eq!(v.content.as_deref(), Some(&b"hello\n"[..]));
    }

    #[test]
    fn path_state_large_file_has_a_hash_instead_of_content() {
        let hash = "a".repeat(64);
        let v = PathState::new("/srv/big")
            .parse(&ok(&format!(
                "regular file|644|root|root|2000000\nsha256:{hash}\n"
            )))
            .unwrap();
        assert_eq!(v.kind, PathKind::File);
        assert_eq!(v.content, None);
        assert_eq!(v.sha256.as_deref(), Some(hash.as_str()));
        let p = PathState::new("/srv/big");
        assert!(
            p.parse(&ok("regular file|644|root|root|2000000\nsha256:xyz\n"))
                .is_err()
        );
        assert!(p.probe().script.contains("sha256sum"));
    }

    #[test]
    fn path_state_absent_directory_and_empty_file() {
        let p = PathState::new("/x");
        assert_eq!(p.parse(&ok("absent\n")).unwrap().kind, PathKind::Absent);
        let d = p.parse(&ok("directory|750|deploy|docker|4096\n")).unwrap();
        assert_eq!(
            (d.kind, d.mode, d.group.as_str()),
            (PathKind::Directory, 0o750, "docker")
        );
        let e = p
            .parse(&ok("regular empty file|600|root|root|0\n\n"))
            .unwrap();
        assert_eq!(e.content.as_deref(), Some(&b""[..]));
        assert!(p.parse(&ok("regular file|6x4|root|root|1\n")).is_err());
    }

    #[test]
    fn unit_state_parses_systemctl_show() {
        let v = UnitState {
            unit: "ssh.service".into(),
        }
        .parse(&ok(
            "LoadState=loaded\nActiveState=active\nUnitFileState=enabled\n",
        ))
        .unwrap();
        assert!(v.exists() && v.is_active() && v.is_enabled());
        let missing = UnitState {
            unit: "nope.service".into(),
        }
        .parse(&ok(
            "LoadState=not-found\nActiveState=inactive\nUnitFileState=\n",
        ))
        .unwrap();
        assert!(!missing.exists());
    }

    #[test]
    fn timezone_and_account() {
        let tz = TimezoneState {
            wanted: "Asia/Shanghai".into(),
        }
        .parse(&ok("current=Etc/UTC\nexists=1\n"))
        .unwrap();
        assert_eq!(tz.current, "Etc/UTC");
        assert!(tz.wanted_exists);
        let a = Account {
            name: "deploy".into(),
        }
        .parse(&ok(
            "deploy:x:1000:1000::/home/deploy:/bin/bash\ndeploy sudo docker\n",
        ))
        .unwrap();
        assert_eq!(a.groups, ["deploy", "sudo", "docker"]);
        assert_eq!(a.home, "/home/deploy");
        assert!(
            !Account { name: "x".into() }
                .parse(&ok("absent\n"))
                .unwrap()
                .exists
        );
    }
}
