//! Typed vars: what the job configures on a host. Every layer (top-level, group, host) is
//! parsed into [`Vars`] with unknown keys rejected, so mistakes point at their line; the
//! layers are then merged (see the module docs of `inventory`).
//!
//! Each capability owns one section struct here; fields are optional so that any layer
//! can set any subset. Defaults are applied by the code that reads them.

use serde::{Deserialize, Serialize};

use crate::values::{FileMode, ServiceUrl};

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
    /// `never` (default) or `if-required`: reboot when `/var/run/reboot-required` says an
    /// update needs it — unattended-upgrades at the window's start, `up` at once (inside
    /// `reboot_window` when one is set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reboot: Option<RebootPolicy>,
    /// When reboots may happen, host local time: `HH:MM-HH:MM` (may pass midnight).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reboot_window: Option<String>,
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
    pub apt: Option<AptVars>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerVars>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<AppVars>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certs: Option<CertsVars>,
}

impl Vars {
    /// Vars as a TOML table, for merging; a value TOML cannot hold (a number above
    /// i64::MAX) is an error, never a panic (the checks at load bound every number first).
    pub(super) fn to_table(&self) -> Result<toml::Table, String> {
        toml::Table::try_from(self).map_err(|e| format!("the vars cannot be merged: {e}"))
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

/// Whether updates that need a reboot get one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RebootPolicy {
    /// Never reboot; `check` and `up` say when a reboot is required.
    #[default]
    Never,
    /// Reboot when `/var/run/reboot-required` exists (inside `reboot_window`, if set).
    IfRequired,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileVar {
    pub path: String,
    pub content: String,
    /// Octal, e.g. `"0640"` (default 0644).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<FileMode>,
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
    /// Home directory (default `/home/<name>`); `~/.ssh/authorized_keys` lives there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
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
    /// Fail the host instead of warning when it is below the minimum (`--strict`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
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
    /// The inventory is the firewall's truth (default true): UFW rules it does not ask
    /// for (an admin's `ufw allow 8080/tcp`) are drift and removed. False keeps them and
    /// only mentions them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firewall_exclusive: Option<bool>,
    /// Rate-limit new SSH connections with `ufw limit` (default true: the 6th new
    /// connection from one address within 30 s is refused); false allows SSH plainly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_rate_limit: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail2ban: Option<bool>,
    /// `AllowAgentForwarding` in sshd (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_agent_forwarding: Option<bool>,
    /// Manage sshd with a drop-in (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh: Option<bool>,
    /// OS hardening: sysctl, core dumps, login.defs, permissions, module blacklist
    /// (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<bool>,
    /// Addresses or networks fail2ban never bans (besides localhost), e.g. an office
    /// network or a bastion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail2ban_ignore_ips: Option<Vec<String>>,
}

/// The host's package archive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AptVars {
    /// A mirror of the host's distribution archive (`https://mirrors.example.edu.cn/ubuntu`):
    /// the URIs of the distribution's entries in its apt sources are replaced by it, suites
    /// and components kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<String>,
    /// Where the `-security` suites come from (default: the mirror on Ubuntu; on Debian the
    /// mirror's `debian-security` beside its `debian`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_mirror: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerVars {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `docker` (Docker's apt repository; the default on Ubuntu) or `distribution`
    /// (Debian/Ubuntu packages; the default on Debian).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<DockerSource>,
    /// json-file log rotation: size of one log file (default `10m`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_max_size: Option<String>,
    /// json-file log rotation: files kept per container (default 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_max_file: Option<u32>,
    /// Docker's apt repository or a mirror of it, and its signing key. Setting it configures
    /// the repository (and pins Docker's packages to it) whatever `source` says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<DockerRepositoryVars>,
    /// Registry mirrors the daemon pulls Docker Hub images through (`registry-mirrors` in
    /// daemon.json).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_mirrors: Option<Vec<String>>,
}

/// `docker.repository`: where Docker's apt repository is and how it is signed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerRepositoryVars {
    /// The repository's root, holding `linux/ubuntu` and `linux/debian` (a URL that already
    /// ends in `/linux/ubuntu` or `/linux/debian` is used as it is). Default: Docker's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Where the host downloads the signing key (default: `gpg` in the repository).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_url: Option<String>,
    /// The signing key itself, ASCII-armored (instead of `key_url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Where Docker comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DockerSource {
    /// Docker's apt repository (docker-ce, compose v2 plugin).
    Docker,
    /// The distribution's own packages (docker.io).
    Distribution,
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
    /// Where the tree lives (default `/opt/<name>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// User owning the tree, `.env` and compose file (default: the deploy user, else root).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Group of the tree (default: the owner's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Other names served, redirected to `domain` (e.g. `www.ai-meeting.com`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aliases: Option<Vec<String>>,
    /// `.env` values set from the inventory: replace the template's value of a key (a
    /// generated secret included) or add a key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<std::collections::BTreeMap<String, String>>,
    /// `.env` values taken, when the host's resources are built, from the standard output of
    /// a command on the controller (argv, no shell): `{ SMTP_PASSWORD = ["pass", "show",
    /// "smtp"] }`. Like a generated secret: never shown, logged, diffed or kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_commands: Option<std::collections::BTreeMap<String, Vec<String>>>,
    /// Enable at boot and start the app's own units (PM2); off by default because the
    /// application code is deployed separately.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_units: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<AppBackupVars>,
}

/// Database backups of the app: a systemd timer running a dump script.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppBackupVars {
    /// Default true when the template set has a database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// systemd `OnCalendar=` expression (default per seed, e.g. `*-*-* 02:00:00`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Dumps older than this many days are deleted (default per seed: 7 or 30).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
}

/// `certs.challenge`: how the CA validates the names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Challenge {
    #[serde(rename = "http-01", alias = "http")]
    Http01,
    #[serde(rename = "dns-01", alias = "dns")]
    Dns01,
    /// No CA: a self-signed certificate, for dev and test.
    #[serde(rename = "self-signed")]
    SelfSigned,
}

/// `certs.ca`: the ACME CA that issues the certificate, a preset or a directory URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Ca {
    /// `letsencrypt` (alias `letsencrypt-production`), the default.
    LetsEncrypt,
    /// `letsencrypt-staging`: untrusted certificates, generous rate limits.
    LetsEncryptStaging,
    /// Another CA's directory URL (Pebble, a private CA).
    Custom(ServiceUrl),
}

impl Ca {
    /// What the inventory spells: the preset's name or the URL.
    pub fn as_str(&self) -> &str {
        match self {
            Ca::LetsEncrypt => "letsencrypt",
            Ca::LetsEncryptStaging => "letsencrypt-staging",
            Ca::Custom(url) => url.as_str(),
        }
    }

    /// A preset's name, or a directory URL ([`ServiceUrl`]'s rule).
    pub fn parse(s: &str) -> Result<Ca, String> {
        match s {
            "letsencrypt" | "letsencrypt-production" => Ok(Ca::LetsEncrypt),
            "letsencrypt-staging" => Ok(Ca::LetsEncryptStaging),
            url if url.contains("://") => ServiceUrl::parse(url).map(Ca::Custom),
            other => Err(format!(
                "{other:?} is neither a preset (\"letsencrypt\", \"letsencrypt-staging\") nor a directory URL"
            )),
        }
    }
}

impl std::fmt::Display for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

crate::values::string_value!(Ca);

/// `certs.key_type`: the certificate key's algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyAlgorithm {
    #[serde(rename = "ecdsa-p256", alias = "ec-256", alias = "p256")]
    EcdsaP256,
    #[serde(rename = "ecdsa-p384", alias = "ec-384", alias = "p384")]
    EcdsaP384,
    #[serde(rename = "rsa-2048", alias = "rsa2048")]
    Rsa2048,
    #[serde(rename = "rsa-4096", alias = "rsa4096")]
    Rsa4096,
}

/// `certs.dns_provider`: whose API publishes the DNS-01 TXT records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DnsProvider {
    #[serde(rename = "cloudflare")]
    Cloudflare,
    /// Pebble's test DNS server.
    #[serde(rename = "challtestsrv", alias = "pebble-challtestsrv")]
    Challtestsrv,
    /// Alibaba Cloud DNS.
    #[serde(rename = "alidns", alias = "alibaba", alias = "aliyun")]
    Alidns,
    /// DNSPod, through Tencent Cloud API 3.0.
    #[serde(rename = "dnspod", alias = "tencentcloud", alias = "tencent")]
    Dnspod,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertsVars {
    /// ACME directory preset (`letsencrypt`, `letsencrypt-staging`) or URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<Ca>,
    /// Contact address for the ACME account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Names on the certificate; the first is the subject. Defaults to `app.domain`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domains: Option<Vec<String>>,
    /// `http-01`, `dns-01` or `self-signed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenge: Option<Challenge>,
    /// Name of the certificate in the state directory (default: the first domain).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `ecdsa-p256` (default), `ecdsa-p384`, `rsa-2048` or `rsa-4096`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_type: Option<KeyAlgorithm>,
    /// ACME profile (e.g. `classic`, `tlsserver`, `shortlived`), used when the CA offers it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// PEM file (on the controller) of an extra root trusted for the CA's HTTPS (e.g. Pebble).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_root: Option<String>,
    /// External account binding key id (CAs that require EAB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eab_kid: Option<String>,
    /// EAB HMAC key, base64url; `env:NAME` reads it from an environment variable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eab_hmac_key: Option<String>,
    /// DNS-01 provider: `cloudflare`, `alidns`, `dnspod` or `challtestsrv` (Pebble's test DNS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_provider: Option<DnsProvider>,
    /// Base URL of the DNS provider's API (default: the provider's public API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_api_url: Option<ServiceUrl>,
    /// Environment variable holding the DNS API token (default `CLOUDFLARE_API_TOKEN`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_api_token_env: Option<String>,
    /// Cloudflare zone id (for `alidns` and `dnspod`: the domain holding the records);
    /// looked up from the domain when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_zone_id: Option<String>,
    /// File on the controller (absolute path, mode 0600) of `NAME=value` lines holding the
    /// `alidns` / `dnspod` key pair, instead of the controller's environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_credentials_file: Option<String>,
    /// Seconds to wait after publishing TXT records before asking the CA to validate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_propagation_seconds: Option<u64>,
    /// Port the CA connects to for HTTP-01 (80; only test CAs use another).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_port: Option<u16>,
    /// Directory on the host served at `/.well-known/acme-challenge/` (default `/var/www/acme`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webroot: Option<String>,
    /// Where `fullchain.pem` and `privkey.pem` go on the host (default `/opt/<app>/ssl`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_dir: Option<String>,
    /// Shell run on the host when the certificate changed (default: reload nginx if running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reload: Option<String>,
    /// systemd `OnCalendar=` of the renewal timer (default `*-*-* 03,15:00:00`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}
