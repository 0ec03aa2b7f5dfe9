//! Typed vars: what the job configures on a host. Every layer (top-level, group, host) is
//! parsed into [`Vars`] with unknown keys rejected, so mistakes point at their line; the
//! layers are then merged (see the module docs of `inventory`).
//!
//! Each capability owns one section struct here; fields are optional so that any layer
//! can set any subset. Defaults are applied by the code that reads them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vars {
    /// e.g. `Asia/Shanghai` (seeds) or `Etc/UTC`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Static hostname to set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Packages of the base system, installed in the single apt transaction of the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packages: Option<Vec<String>>,
    /// Open-files limit (soft and hard) for all users and systemd services.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nofile: Option<u64>,
    /// `apt-get upgrade` policy: `none`, `security` (unattended-upgrades only) or `full`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradePolicy>,
    /// Files to manage verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<FileVar>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy_user: Option<DeployUserVars>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum: Option<MinimumHardware>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardening: Option<HardeningVars>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerVars>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<AppVars>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certs: Option<CertsVars>,
}

impl Vars {
    pub(super) fn to_table(&self) -> toml::Table {
        toml::Table::try_from(self).expect("vars serialize to a table")
    }

    pub(super) fn from_table(table: toml::Table) -> Result<Vars, String> {
        Vars::deserialize(toml::Value::Table(table)).map_err(|e| e.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradePolicy {
    None,
    Security,
    Full,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileVar {
    pub path: String,
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployUserVars {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Public keys (one `ssh-ed25519 AAAA... comment` line each).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorized_keys: Option<Vec<String>>,
    /// Passwordless sudo (default true: the deploy user is how the tool logs in later).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sudo: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinimumHardware {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_free_mib: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardeningVars {
    /// Master switch for the hardening set (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Extra TCP ports opened in UFW besides the SSH port, 80 and 443.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_ports: Option<Vec<u16>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permit_root_login: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_tcp_forwarding: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firewall: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail2ban: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerVars {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `docker` (Docker's apt repository) or `distribution` (Debian/Ubuntu packages).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppVars {
    /// Application name; the tree lives under `/opt/<name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Which seed template set renders the files (e.g. `ai-meeting`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// A directory of user templates that override the built-in ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Free-form values passed to templates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings: Option<toml::Table>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertsVars {
    /// ACME directory preset (`letsencrypt`, `letsencrypt-staging`) or URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domains: Option<Vec<String>>,
    /// `http-01`, `dns-01` or `self-signed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
}
