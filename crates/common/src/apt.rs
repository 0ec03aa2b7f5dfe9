//! The one apt invocation: the options every `apt-get` of a run uses and the command
//! lines built from them (the engine's package install, Docker's repository refresh, the
//! `full` upgrade policy).

use crate::shell::Command;

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

#[cfg(test)]
mod tests {
    use super::*;

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
