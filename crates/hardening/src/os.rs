//! OS hardening in the spirit of devsec's os_hardening role: kernel and network sysctls,
//! core dumps off, login.defs, permissions of sensitive files, unused filesystem and
//! device modules blacklisted.
//!
//! **Containers.** Kernel settings belong to the machine running the container: inside
//! nspawn/LXC/Docker most of `/proc/sys` is read-only, while the network namespace's own
//! settings (`net.ipv4.conf.*`, `net.ipv4.tcp_syncookies`, ...) usually stay writable.
//! The sysctl resource therefore manages only the keys the probe finds writable: the
//! drop-in lists those (and names the skipped ones in a comment), they are applied with
//! `sysctl -p`, and when nothing is writable the resource is not applicable. A file that
//! claimed settings the kernel does not have would make every drift check lie. Keys the
//! kernel does not know (e.g. Yama on some kernels) are skipped the same way.
//! The module blacklist is written everywhere: it is inert inside a container and takes
//! effect if the same system ever boots its own kernel.

use std::collections::BTreeMap;

use common::facts::builtin::{HostInfo, PathState};
use common::resource::ResourceId;
use common::resources::File;
use common::{Action, Fact, Facts, Plan, Probe, Resource};
use serde::Serialize;

use crate::facts::{SysctlEntry, SysctlState};
use crate::support::{DesiredFile, KeyValueFile, MANAGED, PathMode, render};
use common::PlanError;

pub(crate) const SYSCTL_PATH: &str = "/etc/sysctl.d/90-provision.conf";
pub(crate) const COREDUMP_LIMITS_PATH: &str = "/etc/security/limits.d/90-provision-coredump.conf";
pub(crate) const COREDUMP_SYSTEMD_PATH: &str = "/etc/systemd/coredump.conf.d/90-provision.conf";
pub(crate) const COREDUMP_MANAGER_PATH: &str =
    "/etc/systemd/system.conf.d/90-provision-coredump.conf";
pub(crate) const MODPROBE_PATH: &str = "/etc/modprobe.d/90-provision-blacklist.conf";
pub(crate) const LOGIN_DEFS_PATH: &str = "/etc/login.defs";
pub(crate) const PROFILE_PATH: &str = "/etc/profile.d/90-provision-hardening.sh";

/// Shown before console (`/etc/issue`) and network (`/etc/issue.net`) logins.
pub(crate) const LOGIN_BANNER: &str = "Authorized access only. This is a private system: all connections and \
activity are monitored, recorded and audited. Unauthorized access is prohibited and evidence of \
intrusion or misuse may be reported to law enforcement. By continuing you accept these terms.\n";

/// Login shells: no core dumps (matches the limits.d and systemd settings).
pub(crate) const PROFILE: &str = "# Managed by provision; local changes are overwritten.\n\
# No core dumps from login shells.\n\
ulimit -c 0\n";

/// Packages of the OS hardening set: password quality checks for `passwd` (pam_pwquality),
/// private per-user temporary directories for PAM sessions (pam_tmpdir), package file
/// verification (debsums) and change summaries before upgrades (apt-listchanges). None
/// runs anything on its own.
pub const PACKAGES: &[&str] = &[
    "libpam-pwquality",
    "libpam-tmpdir",
    "debsums",
    "apt-listchanges",
];

/// Kernel settings, with why each is set. `docker` keeps IPv4 forwarding on (Docker's
/// bridge networking needs it; devsec#213) and leaves IPv6 forwarding alone.
pub(crate) fn sysctl_settings(docker: bool) -> Vec<(&'static str, &'static str)> {
    let mut s = vec![
        // Network: no routing tricks, spoofing or redirects.
        ("net.ipv4.ip_forward", if docker { "1" } else { "0" }),
        ("net.ipv4.conf.all.rp_filter", "1"),
        ("net.ipv4.conf.default.rp_filter", "1"),
        ("net.ipv4.conf.all.accept_source_route", "0"),
        ("net.ipv4.conf.default.accept_source_route", "0"),
        ("net.ipv6.conf.all.accept_source_route", "0"),
        ("net.ipv6.conf.default.accept_source_route", "0"),
        ("net.ipv4.conf.all.accept_redirects", "0"),
        ("net.ipv4.conf.default.accept_redirects", "0"),
        ("net.ipv4.conf.all.secure_redirects", "0"),
        ("net.ipv4.conf.default.secure_redirects", "0"),
        ("net.ipv6.conf.all.accept_redirects", "0"),
        ("net.ipv6.conf.default.accept_redirects", "0"),
        ("net.ipv4.conf.all.send_redirects", "0"),
        ("net.ipv4.conf.default.send_redirects", "0"),
        ("net.ipv4.conf.all.log_martians", "1"),
        ("net.ipv4.conf.default.log_martians", "1"),
        ("net.ipv4.icmp_echo_ignore_broadcasts", "1"),
        ("net.ipv4.icmp_ignore_bogus_error_responses", "1"),
        ("net.ipv4.tcp_syncookies", "1"),
        ("net.ipv4.tcp_rfc1337", "1"),
        ("net.core.bpf_jit_harden", "2"),
        // Kernel: hide addresses and logs, full ASLR, no magic keys.
        ("kernel.kptr_restrict", "2"),
        ("kernel.dmesg_restrict", "1"),
        ("kernel.randomize_va_space", "2"),
        ("kernel.sysrq", "0"),
        ("kernel.core_uses_pid", "1"),
        ("kernel.yama.ptrace_scope", "1"),
        ("kernel.perf_event_paranoid", "3"),
        ("kernel.unprivileged_bpf_disabled", "1"),
        ("dev.tty.ldisc_autoload", "0"),
        // Files: no core dumps of setuid programs, safe links in sticky directories.
        ("fs.suid_dumpable", "0"),
        ("fs.protected_hardlinks", "1"),
        ("fs.protected_symlinks", "1"),
        ("fs.protected_fifos", "2"),
        ("fs.protected_regular", "2"),
    ];
    if !docker {
        s.insert(1, ("net.ipv6.conf.all.forwarding", "0"));
    }
    s
}

/// The sysctl drop-in, managing only what this host lets it.
#[derive(Debug, Clone)]
pub(crate) struct Sysctl {
    pub docker: bool,
}

#[derive(Serialize)]
struct SysctlContext<'a> {
    managed: &'static str,
    settings: Vec<(&'a str, &'a str)>,
    skipped: Vec<String>,
    virtualization: &'a str,
}

impl Sysctl {
    fn fact(&self) -> SysctlState {
        SysctlState {
            keys: sysctl_settings(self.docker)
                .iter()
                .map(|(k, _)| k.to_string())
                .collect(),
        }
    }

    /// The drop-in for the settings this host can take, and what was skipped (and why).
    pub(crate) fn render(
        &self,
        state: &BTreeMap<String, SysctlEntry>,
        virtualization: &str,
    ) -> (String, Vec<(&'static str, &'static str)>, Vec<String>) {
        let mut managed = Vec::new();
        let mut skipped = Vec::new();
        for (k, v) in sysctl_settings(self.docker) {
            match state.get(k) {
                Some(SysctlEntry::Present { writable: true, .. }) => managed.push((k, v)),
                Some(SysctlEntry::Present {
                    writable: false, ..
                }) => skipped.push(format!("{k} (read-only here)")),
                Some(SysctlEntry::Missing) | None => {
                    skipped.push(format!("{k} (not in this kernel)"))
                }
            }
        }
        let text = render(
            "90-provision.conf",
            include_str!("templates/sysctl.conf.j2"),
            SysctlContext {
                managed: MANAGED,
                settings: managed.clone(),
                skipped: skipped.clone(),
                virtualization,
            },
        );
        (text, managed, skipped)
    }
}

impl Resource for Sysctl {
    fn id(&self) -> ResourceId {
        ResourceId::of("sysctl", SYSCTL_PATH)
    }

    fn probes(&self) -> Vec<Probe> {
        vec![
            HostInfo.probe(),
            self.fact().probe(),
            PathState::new(SYSCTL_PATH).probe(),
        ]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let host = facts.read(&HostInfo)?;
        let state = facts.read(&self.fact())?;
        let (text, managed, skipped) = self.render(&state, &host.virtualization);
        let skipped_note = if skipped.is_empty() {
            String::new()
        } else {
            format!("; {} not applicable here", skipped.len())
        };
        if managed.is_empty() {
            return Ok(Plan::NotApplicable {
                reason: format!(
                    "no kernel setting is writable in this {} (they belong to the machine running it)",
                    if host.is_container() {
                        "container"
                    } else {
                        "system"
                    }
                ),
            });
        }
        let current = facts.read(&PathState::new(SYSCTL_PATH))?;
        let file = DesiredFile::new(SYSCTL_PATH, text, 0o644).changes(&current)?;
        let differing: Vec<String> = managed
            .iter()
            .filter_map(|(k, v)| match state.get(*k) {
                Some(SysctlEntry::Present { value, .. }) if value != v => {
                    Some(format!("{k} = {value} (want {v})"))
                }
                _ => None,
            })
            .collect();
        if file.is_none() && differing.is_empty() {
            return Ok(Plan::noop(format!(
                "{} kernel settings applied{skipped_note}",
                managed.len()
            )));
        }
        let mut summary = Vec::new();
        let mut actions = Vec::new();
        if let Some((s, a)) = file {
            summary.push(s);
            actions.push(a);
        }
        if !differing.is_empty() {
            summary.push(format!("running kernel differs: {}", differing.join(", ")));
        }
        actions.push(Action::run(
            format!("sysctl -p {SYSCTL_PATH}"),
            format!("sysctl -q -p {SYSCTL_PATH}"),
        ));
        Ok(Plan::change(
            format!("{}{skipped_note}", summary.join("; ")),
            actions,
        ))
    }
}

pub(crate) const COREDUMP_LIMITS: &str = "# Managed by provision; local changes are overwritten.\n\
# No core dumps: they can hold secrets from memory.\n\
*\thard\tcore\t0\n\
*\tsoft\tcore\t0\n";

pub(crate) const COREDUMP_SYSTEMD: &str = "# Managed by provision; local changes are overwritten.\n\
[Coredump]\n\
Storage=none\n\
ProcessSizeMax=0\n";

pub(crate) const COREDUMP_MANAGER: &str = "# Managed by provision; local changes are overwritten.\n\
# No core dumps from services (applied by `systemctl daemon-reexec`).\n\
[Manager]\n\
DefaultLimitCORE=0\n";

/// Password policy defaults for new accounts and the login umask. UMASK 027 makes files
/// that users create in login sessions unreadable to others (home directories 0750);
/// the engine sets explicit modes on everything it writes, so managed files are not
/// affected. Password aging only applies to accounts created afterwards; the deploy
/// user is exempted (see `base::NoPasswordExpiry`).
pub(crate) fn login_defs() -> KeyValueFile {
    KeyValueFile {
        path: LOGIN_DEFS_PATH.into(),
        entries: [
            ("PASS_MAX_DAYS", "365"),
            ("PASS_MIN_DAYS", "1"),
            ("PASS_WARN_AGE", "14"),
            ("UMASK", "027"),
            ("LOGIN_RETRIES", "5"),
            ("LOGIN_TIMEOUT", "60"),
            ("ENCRYPT_METHOD", "SHA512"),
            ("SHA_CRYPT_MIN_ROUNDS", "5000"),
            ("SHA_CRYPT_MAX_ROUNDS", "50000"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    }
}

/// Modules of filesystems and devices a server does not use: not loadable on demand.
pub(crate) const BLACKLISTED_MODULES: &[(&str, &str)] = &[
    ("cramfs", "filesystem"),
    ("freevxfs", "filesystem"),
    ("jffs2", "filesystem"),
    ("hfs", "filesystem"),
    ("hfsplus", "filesystem"),
    ("udf", "filesystem"),
    ("usb-storage", "device"),
    ("firewire-core", "device"),
    ("dccp", "network protocol"),
    ("sctp", "network protocol"),
    ("rds", "network protocol"),
    ("tipc", "network protocol"),
];

#[derive(Serialize)]
struct ModprobeContext {
    managed: &'static str,
    modules: Vec<(&'static str, &'static str)>,
}

pub(crate) fn modprobe_blacklist() -> String {
    render(
        "90-provision-blacklist.conf",
        include_str!("templates/modprobe-blacklist.conf.j2"),
        ModprobeContext {
            managed: MANAGED,
            modules: BLACKLISTED_MODULES.to_vec(),
        },
    )
}

/// Sensitive files and cron directories: owner and mode (absent paths are left absent).
pub fn permissions() -> Vec<PathMode> {
    let mut p = vec![
        PathMode::new("/etc/passwd", 0o644, "root", "root"),
        PathMode::new("/etc/group", 0o644, "root", "root"),
        PathMode::new("/etc/shadow", 0o640, "root", "shadow"),
        PathMode::new("/etc/gshadow", 0o640, "root", "shadow"),
        PathMode::new("/etc/crontab", 0o600, "root", "root"),
        PathMode::new("/etc/ssh/sshd_config", 0o600, "root", "root"),
        PathMode::new("/etc/sudoers.d", 0o750, "root", "root"),
    ];
    for d in [
        "/etc/cron.d",
        "/etc/cron.hourly",
        "/etc/cron.daily",
        "/etc/cron.weekly",
        "/etc/cron.monthly",
    ] {
        p.push(PathMode::new(d, 0o700, "root", "root"));
    }
    p
}

/// The OS hardening set, in apply order. `manager_watch` collects the ids of systemd
/// manager drop-ins (they need `daemon-reexec`).
pub fn resources(docker: bool, manager_watch: &mut Vec<ResourceId>) -> Vec<Box<dyn Resource>> {
    let mut out: Vec<Box<dyn Resource>> = vec![Box::new(Sysctl { docker })];
    out.push(Box::new(File::new(COREDUMP_LIMITS_PATH, COREDUMP_LIMITS)));
    out.push(Box::new(File::new(COREDUMP_SYSTEMD_PATH, COREDUMP_SYSTEMD)));
    out.push(Box::new(File::new(COREDUMP_MANAGER_PATH, COREDUMP_MANAGER)));
    manager_watch.push(ResourceId::file(COREDUMP_MANAGER_PATH));
    out.push(Box::new(login_defs()));
    for p in permissions() {
        out.push(Box::new(p));
    }
    out.push(Box::new(File::new(MODPROBE_PATH, modprobe_blacklist())));
    out.push(Box::new(File::new(PROFILE_PATH, PROFILE)));
    out.push(Box::new(File::new("/etc/issue", LOGIN_BANNER)));
    out.push(Box::new(File::new("/etc/issue.net", LOGIN_BANNER)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    /// The sysctl probe's output: every key present with `value`, writable or not
    /// (network keys writable in containers with their own network namespace).
    fn sysctl_output(docker: bool, container: bool, value: impl Fn(&str) -> String) -> String {
        let mut s = String::new();
        for (k, _) in sysctl_settings(docker) {
            if k == "kernel.yama.ptrace_scope" && container {
                s.push_str(&format!("{k}|missing\n"));
                continue;
            }
            let writable = !container || (k.starts_with("net.") && k != "net.core.bpf_jit_harden");
            s.push_str(&format!("{k}|{}|{}\n", u8::from(writable), value(k)));
        }
        s
    }

    fn fresh_value(k: &str) -> String {
        match k {
            "net.ipv4.conf.all.rp_filter" => "2".into(),
            "kernel.kptr_restrict" => "0".into(),
            _ => "0".into(),
        }
    }

    fn sysctl_facts(
        host: &str,
        docker: bool,
        container: bool,
        current: Option<&str>,
        value: impl Fn(&str) -> String,
    ) -> Facts {
        let key = Sysctl { docker }.fact().probe().key;
        facts(&[
            ("host", ok(host)),
            (&key, ok(&sysctl_output(docker, container, value))),
            (
                "path:/etc/sysctl.d/90-provision.conf",
                match current {
                    Some(c) => file_state(c, 0o644, "root", "root"),
                    None => ok("absent\n"),
                },
            ),
        ])
    }

    #[test]
    fn vm_gets_every_setting_and_docker_keeps_forwarding() {
        let r = Sysctl { docker: true };
        let f = sysctl_facts(HOST_UBUNTU2404_KVM, true, false, None, fresh_value);
        let (summary, actions) = plan_of(&r, &f).expect_change();
        assert!(summary.starts_with("create /etc/sysctl.d/90-provision.conf; running kernel differs: net.ipv4.ip_forward = 0 (want 1)"), "{summary}");
        let text = written(&actions, SYSCTL_PATH);
        assert!(text.contains("\nnet.ipv4.ip_forward = 1\n"));
        assert!(!text.contains("net.ipv6.conf.all.forwarding"));
        insta::assert_snapshot!("sysctl-vm-docker", text);
        assert_eq!(
            scripts(&actions),
            ["sysctl -q -p /etc/sysctl.d/90-provision.conf"]
        );

        let no_docker = sysctl_settings(false);
        assert!(no_docker.contains(&("net.ipv4.ip_forward", "0")));
        assert!(no_docker.contains(&("net.ipv6.conf.all.forwarding", "0")));
    }

    #[test]
    fn container_manages_only_its_network_namespace() {
        let r = Sysctl { docker: true };
        let f = sysctl_facts(HOST_DEBIAN12_NSPAWN, true, true, None, fresh_value);
        let (summary, actions) = plan_of(&r, &f).expect_change();
        assert!(summary.ends_with("; 15 not applicable here"), "{summary}");
        let text = written(&actions, SYSCTL_PATH);
        assert!(
            !text.contains("\nkernel.kptr_restrict = 2"),
            "read-only in nspawn"
        );
        assert!(text.contains("\nnet.ipv4.conf.all.rp_filter = 1\n"));
        insta::assert_snapshot!("sysctl-nspawn-docker", text);

        // Once applied: a no-op that still says what was skipped.
        let f = sysctl_facts(HOST_DEBIAN12_NSPAWN, true, true, Some(&text), |k| {
            sysctl_settings(true)
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
                .unwrap()
        });
        assert_eq!(
            plan_of(&r, &f).expect_noop(),
            "21 kernel settings applied; 15 not applicable here"
        );
    }

    #[test]
    fn container_without_writable_settings_is_not_applicable() {
        let r = Sysctl { docker: false };
        let key = r.fact().probe().key;
        let all_read_only: String = sysctl_settings(false)
            .iter()
            .map(|(k, _)| format!("{k}|0|0\n"))
            .collect();
        let f = facts(&[
            ("host", ok(HOST_DEBIAN12_NSPAWN)),
            (&key, ok(&all_read_only)),
            ("path:/etc/sysctl.d/90-provision.conf", ok("absent\n")),
        ]);
        assert_eq!(
            plan_of(&r, &f).expect_not_applicable(),
            "no kernel setting is writable in this container (they belong to the machine running it)"
        );
    }

    #[test]
    fn running_value_drift_reapplies_without_rewriting() {
        let r = Sysctl { docker: false };
        let want = |k: &str| {
            sysctl_settings(false)
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
                .unwrap()
        };
        let probe = sysctl_facts(HOST_DEBIAN12_KVM, false, false, None, want);
        let state = probe.read(&r.fact()).unwrap();
        let (text, _, _) = r.render(&state, "kvm");
        let f = sysctl_facts(HOST_DEBIAN12_KVM, false, false, Some(&text), |k| {
            if k == "kernel.dmesg_restrict" {
                "0".into()
            } else {
                want(k)
            }
        });
        let (summary, actions) = plan_of(&r, &f).expect_change();
        assert_eq!(
            summary,
            "running kernel differs: kernel.dmesg_restrict = 0 (want 1)"
        );
        assert_eq!(actions.len(), 1);
    }

    #[test]
    fn rendered_os_files() {
        insta::assert_snapshot!("modprobe-blacklist", modprobe_blacklist());
        insta::assert_snapshot!("coredump-limits", COREDUMP_LIMITS);
        insta::assert_snapshot!("coredump-systemd", COREDUMP_SYSTEMD);
        insta::assert_snapshot!("coredump-manager", COREDUMP_MANAGER);
        insta::assert_snapshot!("profile", PROFILE);
        insta::assert_snapshot!("login-banner", LOGIN_BANNER);
        let debian = include_str!("../tests/fixtures/login.defs-debian12");
        insta::assert_snapshot!("login.defs-debian12", login_defs().apply_to(debian));
    }

    #[test]
    fn login_defs_plan_keeps_mode_and_owner() {
        let debian = include_str!("../tests/fixtures/login.defs-debian12");
        let r = login_defs();
        let f = facts(&[(
            "path:/etc/login.defs",
            file_state(debian, 0o644, "root", "root"),
        )]);
        let (summary, actions) = plan_of(&r, &f).expect_change();
        assert_eq!(summary, "update /etc/login.defs");
        let common::Action::WriteFile(w) = &actions[0] else {
            panic!()
        };
        assert_eq!((w.mode, w.owner.as_str()), (0o644, "root"));
        let f = facts(&[(
            "path:/etc/login.defs",
            file_state(&r.apply_to(debian), 0o644, "root", "root"),
        )]);
        assert!(
            plan_of(&r, &f)
                .expect_noop()
                .starts_with("/etc/login.defs sets PASS_MAX_DAYS")
        );
    }

    #[test]
    fn permissions_are_fixed_and_absent_paths_left_alone() {
        let crontab = PathMode::new("/etc/crontab", 0o600, "root", "root");
        let f = facts(&[("path:/etc/crontab", file_state("x", 0o644, "root", "root"))]);
        let (summary, actions) = plan_of(&crontab, &f).expect_change();
        assert_eq!(
            summary,
            "/etc/crontab: mode 600 root:root (was 644 root:root)"
        );
        assert_eq!(
            scripts(&actions),
            ["chown -- root:root /etc/crontab\nchmod -- 600 /etc/crontab"]
        );
        let f = facts(&[("path:/etc/crontab", ok("absent\n"))]);
        assert_eq!(
            plan_of(&crontab, &f).expect_noop(),
            "/etc/crontab is absent: nothing to restrict"
        );
        let cron_d = PathMode::new("/etc/cron.d", 0o700, "root", "root");
        let f = facts(&[("path:/etc/cron.d", ok("directory|700|root|root|4096\n"))]);
        assert_eq!(
            plan_of(&cron_d, &f).expect_noop(),
            "/etc/cron.d is 700 root:root"
        );
    }
}
