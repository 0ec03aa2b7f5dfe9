//! The one apt invocation: the options every `apt-get` of a run uses and the command
//! lines built from them (Docker's repository refresh, the refresh after a mirror change;
//! the engine's one apt step, install or upgrade + install, uses the same options).

use crate::facts::builtin::{PathKind, PathStateValue};
use crate::resource::Action;
use crate::shell::{Command, quote};

/// Wait up to ten minutes for the dpkg lock; on a config-file conflict keep the file on
/// the host (never prompt).
pub(crate) const OPTIONS: [&str; 6] = [
    "-o",
    "DPkg::Lock::Timeout=600",
    "-o",
    "Dpkg::Options::=--force-confdef",
    "-o",
    "Dpkg::Options::=--force-confold",
];

/// Shell that waits for cloud-init to finish (it runs apt itself on a first boot).
pub(crate) const WAIT_FOR_CLOUD_INIT: &str = "if command -v cloud-init >/dev/null 2>&1; then cloud-init status --wait >/dev/null 2>&1 || true; fi";

/// The environment of every apt run of the apply script: no prompt from debconf, and
/// needrestart restarts services instead of asking.
pub(crate) const ENVIRONMENT: &str = "DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a";

/// What apt prints (a grep basic regex) when another process holds a lock it needs; a
/// command that meets it tries again 2 s later, [`LOCK_RETRIES`] times at the most.
const LOCKED: &str = r"Could not get lock\|Unable to lock";
const LOCK_RETRIES: u32 = 300;

/// Shell function of the apply script, `__provision_apt install|upgrade PACKAGE…` (call it
/// through [`package_call`]): waits for cloud-init, refreshes the package lists when none
/// is younger than `$__provision_lists_age` minutes (its errors in `$__provision_apt_err`),
/// then in one transaction [`install`]s the packages, or with `upgrade` [`upgrade`]s every
/// package and installs these.
pub(crate) fn package_function() -> String {
    format!(
        r#"__provision_apt() {{
  {WAIT_FOR_CLOUD_INIT}
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages' -mmin -$__provision_lists_age 2>/dev/null | head -n1)" ]; then
    __i=0
    until {update} 2>"$__provision_apt_err"; do
      __i=$((__i + 1))
      if [ $__i -ge {LOCK_RETRIES} ] || ! grep -q '{LOCKED}' "$__provision_apt_err"; then cat "$__provision_apt_err" >&2; return 1; fi
      sleep 2
    done
  fi
  case $1 in
    install) shift; {install} -- "$@" ;;
    upgrade) shift; {upgrade} -- "$@" ;;
    *) echo "__provision_apt: install or upgrade, not $1" >&2; return 2 ;;
  esac
}}"#,
        update = update(),
        install = install(Vec::<String>::new()),
        upgrade = upgrade(Vec::<String>::new()),
    )
}

/// The apply script's one package step: [`package_function`] with `packages`, each
/// quoted; `upgrade`: every package upgraded in the same transaction.
pub(crate) fn package_call(upgrade: bool, packages: &[String]) -> String {
    let mut call = String::from(match upgrade {
        true => "__provision_apt upgrade",
        false => "__provision_apt install",
    });
    for p in packages {
        call.push(' ');
        call.push_str(&quote(p));
    }
    call
}

fn apt_get() -> Command {
    Command::new("apt-get").args(OPTIONS)
}

/// `apt-get … -q update`.
pub fn update() -> Command {
    apt_get().arg("-q").arg("update")
}

/// `apt-get … -y -q --no-install-recommends install -- PACKAGES`.
pub fn install<I, S>(packages: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    transaction("install", packages)
}

/// `apt-get … -y -q --no-install-recommends upgrade -- PACKAGES`: every package upgraded
/// (nothing removed) and PACKAGES installed, in one transaction.
pub(crate) fn upgrade<I, S>(packages: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    transaction("upgrade", packages)
}

/// `apt-get … -y -q --no-install-recommends VERB -- PACKAGES`.
fn transaction<I, S>(verb: &str, packages: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    apt_get()
        .args(["-y", "-q", "--no-install-recommends", verb])
        .operands(packages)
}

/// A file written before [`update_or_restore`], and how to put it back: `existed` files
/// return from the `<path>.provision-bak` the write kept, new files are removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restore {
    pub path: String,
    pub existed: bool,
}

impl Restore {
    /// How to put back the file `action` writes, `current` its state now (`None` for an
    /// action that writes no file: a chmod, a command).
    pub fn of(action: &Action, current: &PathStateValue) -> Option<Self> {
        match action {
            Action::WriteFile(w) => Some(Self {
                path: w.path.clone(),
                existed: current.kind != PathKind::Absent,
            }),
            _ => None,
        }
    }
}

/// Shell: `apt-get update` after new apt sources (a mirror, a repository). It waits for
/// cloud-init and for the lists lock; it fails when apt fails or reports a failed fetch
/// from one of `urls` (apt only warns about an unreachable source and exits 0), and then
/// puts the `restore` files back, so that the host's apt works as before the run, and
/// says so naming `what` and the URLs. Nothing after this step runs (the apply script
/// stops at a failed step).
pub fn update_or_restore(what: &str, urls: &[String], restore: &[Restore]) -> String {
    let mut put_back = String::new();
    for r in restore {
        let p = quote(&r.path);
        if r.existed {
            put_back.push_str(&format!(
                "  if [ -f {bak} ]; then mv -f -- {bak} {p}; fi\n",
                bak = quote(&format!("{}.provision-bak", r.path))
            ));
        } else {
            put_back.push_str(&format!("  rm -f -- {p}\n"));
        }
    }
    let paths: Vec<&str> = restore.iter().map(|r| r.path.as_str()).collect();
    let message = format!(
        "apt-get update failed with {what} ({}): {} put back as they were; nothing else was changed",
        urls.join(", "),
        paths.join(", ")
    );
    let patterns: String = urls.iter().map(|u| format!(" -e {}", quote(u))).collect();
    format!(
        "{wait}\n__u=$(mktemp) || exit 1\n__n=0\n\
         while :; do\n\
         \x20 __rc=0\n\
         \x20 {update} >\"$__u\" 2>&1 || __rc=$?\n\
         \x20 if [ $__rc -ne 0 ] && [ $__n -lt {LOCK_RETRIES} ] && grep -q '{LOCKED}' \"$__u\"; then __n=$((__n + 1)); sleep 2; continue; fi\n\
         \x20 break\n\
         done\n\
         if [ $__rc -ne 0 ] || grep -E '^(W|E):' \"$__u\" | grep -qF{patterns}; then\n\
         \x20 cat \"$__u\" >&2; rm -f \"$__u\"\n\
         {put_back}\
         \x20 echo {message} >&2\n\
         \x20 exit 1\n\
         fi\n\
         rm -f \"$__u\"",
        wait = WAIT_FOR_CLOUD_INIT,
        update = update(),
        message = quote(&message),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_refresh_puts_the_sources_back_and_names_the_mirror() {
        let script = update_or_restore(
            "the mirror (apt.mirror)",
            &["http://10.77.3.1:9/ubuntu".to_string()],
            &[
                Restore {
                    path: "/etc/apt/sources.list.d/ubuntu.sources".into(),
                    existed: true,
                },
                Restore {
                    path: "/etc/apt/preferences.d/x y".into(),
                    existed: false,
                },
            ],
        );
        insta::assert_snapshot!("update-or-restore", script);
    }

    #[test]
    fn the_apply_scripts_package_function_runs_the_one_update_and_install_command_line() {
        let f = package_function();
        let opts = OPTIONS.join(" ");
        assert!(
            f.contains(&format!("until apt-get {opts} -q update 2>")),
            "{f}"
        );
        assert!(
            f.contains(&format!(
                "apt-get {opts} -y -q --no-install-recommends install -- \"$@\""
            )),
            "{f}"
        );
        assert!(
            f.contains(&format!(
                "apt-get {opts} -y -q --no-install-recommends upgrade -- \"$@\""
            )),
            "{f}"
        );
        assert!(f.contains(WAIT_FOR_CLOUD_INIT), "{f}");
        assert_eq!(
            package_call(false, &["curl".into(), "-x".into()]),
            "__provision_apt install curl '-x'"
        );
        assert_eq!(package_call(true, &[]), "__provision_apt upgrade");
    }

    #[test]
    fn every_invocation_waits_for_the_lock_and_keeps_config_files() {
        let opts = "-o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold";
        assert_eq!(update().to_string(), format!("apt-get {opts} -q update"));
        assert_eq!(
            install(["curl", "-x"]).to_string(),
            format!("apt-get {opts} -y -q --no-install-recommends install -- curl '-x'")
        );
        assert_eq!(
            upgrade(["curl"]).to_string(),
            format!("apt-get {opts} -y -q --no-install-recommends upgrade -- curl")
        );
    }
}
