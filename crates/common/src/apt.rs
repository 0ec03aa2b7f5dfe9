//! The one apt invocation: the options every `apt-get` of a run uses and the command
//! lines built from them (the engine's package install, Docker's repository refresh, the
//! `full` upgrade policy, the refresh after a mirror change).

use crate::shell::{Command, quote};

/// Wait up to ten minutes for the dpkg lock; on a config-file conflict keep the file on
/// the host (never prompt).
pub const OPTIONS: [&str; 6] = [
    "-o",
    "DPkg::Lock::Timeout=600",
    "-o",
    "Dpkg::Options::=--force-confdef",
    "-o",
    "Dpkg::Options::=--force-confold",
];

/// Shell that waits for cloud-init to finish (it runs apt itself on a first boot).
pub const WAIT_FOR_CLOUD_INIT: &str = "if command -v cloud-init >/dev/null 2>&1; then cloud-init status --wait >/dev/null 2>&1 || true; fi";

fn apt_get() -> Command {
    Command::new("apt-get").args(OPTIONS)
}

/// `apt-get … -q update`.
pub fn update() -> Command {
    apt_get().arg("-q").arg("update")
}

/// `apt-get … -y -q upgrade`.
pub fn upgrade() -> Command {
    apt_get().args(["-y", "-q", "upgrade"])
}

/// `apt-get … -y -q --no-install-recommends install -- PACKAGES`.
pub fn install<I, S>(packages: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    apt_get()
        .args(["-y", "-q", "--no-install-recommends", "install"])
        .operands(packages)
}

/// A file written before [`update_or_restore`], and how to put it back: `existed` files
/// return from the `<path>.provision-bak` the write kept, new files are removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restore {
    pub path: String,
    pub existed: bool,
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
         \x20 if [ $__rc -ne 0 ] && [ $__n -lt 300 ] && grep -q 'Could not get lock\\|Unable to lock' \"$__u\"; then __n=$((__n + 1)); sleep 2; continue; fi\n\
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
    fn every_invocation_waits_for_the_lock_and_keeps_config_files() {
        let opts = "-o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold";
        assert_eq!(update().to_string(), format!("apt-get {opts} -q update"));
        assert_eq!(
            upgrade().to_string(),
            format!("apt-get {opts} -y -q upgrade")
        );
        assert_eq!(
            install(["curl", "-x"]).to_string(),
            format!("apt-get {opts} -y -q --no-install-recommends install -- curl '-x'")
        );
    }
}
