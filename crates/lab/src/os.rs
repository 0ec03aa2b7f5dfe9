//! The operating systems a lab host can run, and what makes each image a
//! faithful fresh server of that OS.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A distribution release the lab can boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Os {
    /// Ubuntu 24.04 LTS (noble): socket-activated sshd, deb822 sources.
    #[serde(rename = "ubuntu-24.04")]
    Ubuntu2404,
    /// Ubuntu 22.04 LTS (jammy): classic sshd, one-line sources.
    #[serde(rename = "ubuntu-22.04")]
    Ubuntu2204,
    /// Debian 13 (trixie): OpenSSH 10, nftables-backed iptables.
    #[serde(rename = "debian-13")]
    Debian13,
    /// Debian 12 (bookworm).
    #[serde(rename = "debian-12")]
    Debian12,
}

/// Which archive an OS comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Debian's archive, signed with the machine's `debian-archive-keyring`.
    Debian,
    /// Ubuntu's archive, signed with the key shipped in this crate.
    Ubuntu,
}

/// An `--os` value that is not one of [`Os::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown OS `{given}`; choose one of: {}", Os::choices())]
pub struct UnknownOs {
    /// What was given.
    pub given: String,
}

impl Os {
    /// Every OS the lab supports, primary target first.
    pub const ALL: [Os; 4] = [Os::Ubuntu2404, Os::Ubuntu2204, Os::Debian13, Os::Debian12];

    /// The lab's default OS.
    pub const DEFAULT: Os = Os::Debian12;

    /// `ubuntu-24.04`, `debian-12`, ...
    pub fn name(self) -> &'static str {
        match self {
            Os::Ubuntu2404 => "ubuntu-24.04",
            Os::Ubuntu2204 => "ubuntu-22.04",
            Os::Debian13 => "debian-13",
            Os::Debian12 => "debian-12",
        }
    }

    /// The choices, comma separated (for errors and help).
    pub fn choices() -> String {
        Os::ALL.map(Os::name).join(", ")
    }

    /// The archive family.
    pub fn family(self) -> Family {
        match self {
            Os::Ubuntu2404 | Os::Ubuntu2204 => Family::Ubuntu,
            Os::Debian13 | Os::Debian12 => Family::Debian,
        }
    }

    /// The release's code name, which is also its apt suite.
    pub fn suite(self) -> &'static str {
        match self {
            Os::Ubuntu2404 => "noble",
            Os::Ubuntu2204 => "jammy",
            Os::Debian13 => "trixie",
            Os::Debian12 => "bookworm",
        }
    }

    /// The debootstrap script that knows how to install the release.
    /// Debian 12's debootstrap has no `noble` script; its `gutsy` script
    /// serves every modern Ubuntu release.
    pub(crate) fn debootstrap_script(self) -> &'static str {
        match self.family() {
            Family::Ubuntu => "gutsy",
            Family::Debian => self.suite(),
        }
    }

    /// Archive components the image uses (Ubuntu's Docker, fail2ban and
    /// compose live in `universe`).
    pub fn components(self) -> &'static [&'static str] {
        match self.family() {
            Family::Ubuntu => &["main", "universe"],
            Family::Debian => &["main"],
        }
    }

    /// The sudo login user a provider's image comes with.
    pub fn default_user(self) -> &'static str {
        match self.family() {
            Family::Ubuntu => "ubuntu",
            Family::Debian => "debian",
        }
    }

    /// Whether sshd is socket-activated (`ssh.socket`) out of the box.
    pub fn socket_activated_ssh(self) -> bool {
        self == Os::Ubuntu2404
    }

    /// Whether apt sources are deb822 files (else one-line `sources.list`).
    pub fn deb822_sources(self) -> bool {
        !matches!(self, Os::Ubuntu2204)
    }

    /// Packages on top of `--variant=minbase`: an ssh-reachable systemd host
    /// that apt, ufw (iptables, python3) and Docker (iptables, kmod, procps,
    /// ca-certificates, curl, gnupg) can be installed on, plus what the
    /// provider's image of this OS ships and tools trip over.
    pub fn packages(self) -> Vec<&'static str> {
        let mut p = vec![
            "systemd",
            "systemd-sysv",
            "dbus",
            "libpam-systemd",
            "openssh-server",
            "iproute2",
            "netbase",
            "sudo",
            "python3",
            "ca-certificates",
            "cron",
            "procps",
            "iptables",
            "kmod",
            "curl",
            "gnupg",
            "less",
        ];
        if self.family() == Family::Ubuntu {
            // Ubuntu server images ship these: needrestart's prompt hangs
            // unattended apt, ufw is there but inactive, and
            // unattended-upgrades with the apt-daily timers can hold the
            // dpkg lock right after boot.
            p.extend([
                "ubuntu-keyring",
                "needrestart",
                "ufw",
                "unattended-upgrades",
            ]);
        }
        p
    }

    /// The image's main archive key ring, as given to debootstrap and named
    /// by `Signed-By` inside the image.
    pub(crate) fn keyring_in_image(self) -> &'static str {
        match self.family() {
            Family::Ubuntu => "/usr/share/keyrings/ubuntu-archive-keyring.gpg",
            Family::Debian => "/usr/share/keyrings/debian-archive-keyring.gpg",
        }
    }
}

impl fmt::Display for Os {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Os {
    type Err = UnknownOs;
    fn from_str(s: &str) -> Result<Os, UnknownOs> {
        let want = s.trim().to_ascii_lowercase();
        Os::ALL
            .into_iter()
            .find(|os| {
                os.name() == want
                    || os.suite() == want
                    || os.name().replace('-', "") == want.replace('-', "")
            })
            .ok_or_else(|| UnknownOs {
                given: s.to_string(),
            })
    }
}

/// How the lab's key logs in to a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Login {
    /// As the image's sudo user (`ubuntu`, `debian`); root is refused the
    /// way cloud-init refuses it. What cloud images hand out.
    #[default]
    DefaultUser,
    /// As root (Hetzner, Aliyun and many VPS providers hand out root).
    Root,
}

impl Login {
    /// The user name the lab's key logs in as on `os`.
    pub fn user(self, os: Os) -> &'static str {
        match self {
            Login::DefaultUser => os.default_user(),
            Login::Root => "root",
        }
    }
}

impl FromStr for Login {
    type Err = String;
    fn from_str(s: &str) -> Result<Login, String> {
        match s {
            "root" => Ok(Login::Root),
            "default" | "default-user" | "ubuntu" | "debian" => Ok(Login::DefaultUser),
            other => Err(format!(
                "unknown login `{other}`; choose `default` (the image's sudo user) or `root`"
            )),
        }
    }
}

/// What kind of host to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSpec {
    /// Its OS.
    pub os: Os,
    /// How the lab key logs in.
    pub login: Login,
}

impl HostSpec {
    /// A host of `os` reached as the image's sudo user.
    pub fn new(os: Os) -> HostSpec {
        HostSpec {
            os,
            login: Login::DefaultUser,
        }
    }

    /// The same, reached as root.
    pub fn root(os: Os) -> HostSpec {
        HostSpec {
            os,
            login: Login::Root,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for os in Os::ALL {
            assert_eq!(os.name().parse::<Os>(), Ok(os));
            assert_eq!(os.suite().parse::<Os>(), Ok(os));
            let json = serde_json::to_string(&os).unwrap();
            assert_eq!(json, format!("\"{}\"", os.name()));
        }
        assert_eq!("Ubuntu-24.04".parse::<Os>(), Ok(Os::Ubuntu2404));
    }

    #[test]
    fn unknown_os_lists_the_choices() {
        let e = "centos-7".parse::<Os>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown OS `centos-7`; choose one of: ubuntu-24.04, ubuntu-22.04, debian-13, debian-12"
        );
    }

    #[test]
    fn per_os_traits() {
        assert_eq!(Os::Ubuntu2404.debootstrap_script(), "gutsy");
        assert_eq!(Os::Debian13.debootstrap_script(), "trixie");
        assert!(Os::Ubuntu2404.socket_activated_ssh());
        assert!(!Os::Ubuntu2204.socket_activated_ssh());
        assert!(!Os::Ubuntu2204.deb822_sources());
        assert!(Os::Ubuntu2204.packages().contains(&"needrestart"));
        assert!(!Os::Debian12.packages().contains(&"needrestart"));
        assert_eq!(Login::DefaultUser.user(Os::Debian13), "debian");
        assert_eq!(Login::Root.user(Os::Ubuntu2404), "root");
    }
}
