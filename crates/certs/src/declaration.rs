//! Certificate declarations: what the inventory's `certs` section asks for, validated.
//!
//! Every problem names the inventory field (`certs.domains[1]`, `certs.challenge`, ...) and
//! says how to fix it, before anything is sent to a CA.

use std::path::PathBuf;

use common::inventory::{
    Ca, CertsVars, Challenge, DnsProvider, HostSpec, InventoryError, KeyAlgorithm, Vars,
};
use serde::{Deserialize, Serialize};

use common::values::{DomainError, DomainName};

/// Directory of Let's Encrypt's production CA.
pub(crate) const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Directory of Let's Encrypt's staging CA (untrusted certificates, generous rate limits).
pub(crate) const LETSENCRYPT_STAGING: &str =
    "https://acme-staging-v02.api.letsencrypt.org/directory";

/// Directory on the host served at `/.well-known/acme-challenge/` for HTTP-01. The app's
/// nginx template serves it (`location /.well-known/acme-challenge/ { root ACME_WEBROOT; }`),
/// and a container nginx mounts it read-only at the same path.
pub const ACME_WEBROOT: &str = common::ACME_WEBROOT;

/// The nginx `location` block the app templates include in their port-80 server so that
/// HTTP-01 works while nginx keeps running.
pub const NGINX_ACME_LOCATION: &str = "location ^~ /.well-known/acme-challenge/ {\n    root /var/www/acme;\n    default_type text/plain;\n    try_files $uri =404;\n}\n";

/// Default systemd `OnCalendar=` of the renewal timer (twice a day, as Let's Encrypt suggests).
pub(crate) const DEFAULT_SCHEDULE: &str = "*-*-* 03,15:00:00";

/// A certificate to obtain and keep installed on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateDeclaration {
    /// Inventory name of the host the certificate is installed on.
    pub host: String,
    /// Name in the state directory (a safe path component).
    pub name: String,
    /// Names on the certificate; the first is the subject.
    pub domains: Vec<DomainName>,
    pub challenge: ChallengeConfig,
    pub key_type: KeyType,
    pub ca: CaConfig,
    pub email: Option<String>,
    /// Requested ACME profile; ignored (with a warning) when the CA offers no profiles.
    pub profile: Option<String>,
    /// Directory on the host receiving `fullchain.pem` (0644) and `privkey.pem` (0600).
    pub ssl_dir: String,
    /// Shell run on the host after the certificate changed.
    pub reload: String,
    /// systemd `OnCalendar=` of the renewal timer.
    pub schedule: String,
}

/// How the CA checks control of the names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ChallengeConfig {
    /// A file under `webroot` on the host, fetched by the CA on `port`.
    Http01 { port: u16, webroot: String },
    /// A TXT record published through a DNS provider's API.
    Dns01(DnsProviderConfig),
    /// No CA: a self-signed certificate (CN=localhost plus the names), for dev and test.
    SelfSigned,
}

impl ChallengeConfig {
    pub fn label(&self) -> &'static str {
        match self {
            ChallengeConfig::Http01 { .. } => "http-01",
            ChallengeConfig::Dns01(_) => "dns-01",
            ChallengeConfig::SelfSigned => "self-signed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsProviderConfig {
    pub provider: DnsProviderKind,
    /// API base URL.
    pub api_url: String,
    /// Environment variable holding the API token (never the token itself).
    pub token_env: Option<String>,
    pub zone_id: Option<String>,
    /// File on the controller holding the provider's key pair (`alidns`, `dnspod`); the
    /// controller's environment when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
    pub propagation_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DnsProviderKind {
    Cloudflare,
    Challtestsrv,
    Alidns,
    Dnspod,
}

impl DnsProviderKind {
    /// Where the key pair of a provider that signs its requests comes from.
    pub(crate) fn key_names(self) -> Option<crate::challenge::KeyNames> {
        match self {
            DnsProviderKind::Alidns => Some(crate::challenge::ALIDNS_KEYS),
            DnsProviderKind::Dnspod => Some(crate::challenge::DNSPOD_KEYS),
            DnsProviderKind::Cloudflare | DnsProviderKind::Challtestsrv => None,
        }
    }
}

impl DnsProviderConfig {
    /// The key pair of `alidns` / `dnspod` (from the credentials file, else the environment).
    pub(crate) fn key_pair(
        &self,
    ) -> Result<Option<crate::challenge::KeyPair>, crate::challenge::DnsError> {
        self.provider
            .key_names()
            .map(|names| {
                crate::challenge::credentials::key_pair(names, self.credentials_file.as_deref())
            })
            .transpose()
    }
}

/// Default Cloudflare API base.
pub(crate) const CLOUDFLARE_API: &str = "https://api.cloudflare.com/client/v4";
/// Default pebble-challtestsrv management API.
pub(crate) const CHALLTESTSRV_API: &str = "http://127.0.0.1:8055";
/// Default Alibaba Cloud DNS API endpoint.
pub(crate) const ALIDNS_API: &str = "https://alidns.aliyuncs.com";
/// Default Tencent Cloud API endpoint of DNSPod.
pub(crate) const DNSPOD_API: &str = "https://dnspod.tencentcloudapi.com";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyType {
    EcdsaP256,
    EcdsaP384,
    Rsa2048,
    Rsa4096,
}

impl KeyType {
    pub fn label(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa4096 => "rsa-4096",
        }
    }

    /// Generate a private key of this type.
    pub fn generate(self) -> Result<rcgen::KeyPair, rcgen::Error> {
        match self {
            KeyType::EcdsaP256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyType::EcdsaP384 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            KeyType::Rsa2048 => {
                rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            }
            KeyType::Rsa4096 => {
                rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096)
            }
        }
    }
}

/// Which CA, and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaConfig {
    pub directory_url: String,
    /// Extra root trusted for the CA's HTTPS endpoint (Pebble, private CAs).
    pub root_pem: Option<PathBuf>,
    pub eab: Option<EabConfig>,
}

impl CaConfig {
    pub fn letsencrypt() -> Self {
        Self::url(LETSENCRYPT)
    }

    pub fn url(directory_url: &str) -> Self {
        CaConfig {
            directory_url: directory_url.to_string(),
            root_pem: None,
            eab: None,
        }
    }
}

/// External account binding; the HMAC key is resolved when the account is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EabConfig {
    pub kid: String,
    /// base64url key, or `env:NAME`.
    pub hmac_key: String,
}

/// A problem in the `certs` section of one host's vars.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{host}: {field}: {problem}")]
pub struct DeclarationError {
    pub host: String,
    /// The inventory field, e.g. `certs.domains[1]`.
    pub field: String,
    pub problem: String,
}

/// The default reload hook: reload nginx wherever it runs (systemd unit or the app's compose
/// service), and do nothing when it is not running yet.
pub fn default_reload(app: Option<&app::AppLayout>) -> String {
    let mut s = String::from(
        "if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx; then systemctl reload nginx; fi",
    );
    if let Some(app) = app {
        let compose = common::shell::quote(&app.compose_file());
        s.push_str(&format!(
            "\nif [ -f {compose} ] && command -v docker >/dev/null 2>&1 && [ -n \"$(docker compose -f {compose} ps -q --status running nginx 2>/dev/null)\" ]; then docker compose -f {compose} exec -T nginx nginx -s reload; fi"
        ));
    }
    s
}

/// Check the `certs` section of one host of a loaded inventory: the certificate it declares
/// is complete and consistent (names, challenge, CA, key pair of a signing DNS provider). A
/// problem is located at the inventory line that sets the field.
pub fn check(spec: &HostSpec) -> Result<(), Box<InventoryError>> {
    declaration_from_vars(&spec.name, &spec.vars)
        .map(drop)
        .map_err(|e| {
            let problem = format!("host `{}`: {}", spec.name, e.problem);
            Box::new(spec.origins.error(&e.field, problem))
        })
}

/// The certificate a host's vars declare; `None` when the host has no `certs` section.
pub fn declaration_from_vars(
    host: &str,
    vars: &Vars,
) -> Result<Option<CertificateDeclaration>, DeclarationError> {
    let Some(certs) = &vars.certs else {
        return Ok(None);
    };
    let app = app::AppLayout::from_vars(vars);
    let app_domain = vars.app.as_ref().and_then(|a| a.domain.clone());
    parse(host, certs, app.as_ref(), app_domain.as_deref()).map(Some)
}

fn parse(
    host: &str,
    v: &CertsVars,
    app: Option<&app::AppLayout>,
    app_domain: Option<&str>,
) -> Result<CertificateDeclaration, DeclarationError> {
    let err = |field: &str, problem: String| DeclarationError {
        host: host.to_string(),
        field: field.to_string(),
        problem,
    };

    // Names.
    let (field, raw): (&str, Vec<String>) = match (&v.domains, app_domain) {
        (Some(d), _) => ("certs.domains", d.clone()),
        (None, Some(d)) => ("app.domain", vec![d.to_string()]),
        (None, None) => {
            return Err(err(
                "certs.domains",
                "no names: set certs.domains (or app.domain)".into(),
            ));
        }
    };
    if raw.is_empty() {
        return Err(err(
            field,
            "the list is empty; name at least one domain".into(),
        ));
    }
    let mut domains: Vec<DomainName> = Vec::new();
    for (i, d) in raw.iter().enumerate() {
        let f = if field == "app.domain" {
            field.to_string()
        } else {
            format!("{field}[{i}]")
        };
        let name = DomainName::parse(d).map_err(|e: DomainError| err(&f, format!("{d:?}: {e}")))?;
        if !domains.contains(&name) {
            domains.push(name);
        }
    }

    // Challenge.
    let challenge = match v.challenge.unwrap_or(Challenge::Http01) {
        Challenge::Http01 => {
            if let Some((i, w)) = domains.iter().enumerate().find(|(_, d)| d.is_wildcard()) {
                return Err(err(
                    &format!("{field}[{i}]"),
                    format!(
                        "{:?}: a wildcard can only be validated over DNS-01; set certs.challenge = \"dns-01\" and certs.dns_provider",
                        w.as_str()
                    ),
                ));
            }
            let webroot = v.webroot.clone().unwrap_or_else(|| ACME_WEBROOT.into());
            if !webroot.starts_with('/') {
                return Err(err(
                    "certs.webroot",
                    format!("{webroot:?} is not an absolute path"),
                ));
            }
            ChallengeConfig::Http01 {
                port: v.http_port.unwrap_or(80),
                webroot,
            }
        }
        Challenge::Dns01 => {
            let provider = match v.dns_provider {
                Some(DnsProvider::Cloudflare) => DnsProviderKind::Cloudflare,
                Some(DnsProvider::Challtestsrv) => DnsProviderKind::Challtestsrv,
                Some(DnsProvider::Alidns) => DnsProviderKind::Alidns,
                Some(DnsProvider::Dnspod) => DnsProviderKind::Dnspod,
                None => {
                    return Err(err(
                        "certs.dns_provider",
                        "dns-01 needs a provider: set certs.dns_provider = \"cloudflare\", \"alidns\" or \"dnspod\" (or \"challtestsrv\" for Pebble)".into(),
                    ));
                }
            };
            let api_url = match &v.dns_api_url {
                Some(u) => u.as_str().trim_end_matches('/').to_string(),
                None => match provider {
                    DnsProviderKind::Cloudflare => CLOUDFLARE_API.into(),
                    DnsProviderKind::Challtestsrv => CHALLTESTSRV_API.into(),
                    DnsProviderKind::Alidns => ALIDNS_API.into(),
                    DnsProviderKind::Dnspod => DNSPOD_API.into(),
                },
            };
            let token_env = match provider {
                DnsProviderKind::Cloudflare => Some(
                    v.dns_api_token_env
                        .clone()
                        .unwrap_or_else(|| "CLOUDFLARE_API_TOKEN".into()),
                ),
                DnsProviderKind::Challtestsrv
                | DnsProviderKind::Alidns
                | DnsProviderKind::Dnspod => None,
            };
            let config = DnsProviderConfig {
                provider,
                api_url,
                token_env,
                zone_id: v.dns_zone_id.clone(),
                credentials_file: v.dns_credentials_file.as_ref().map(PathBuf::from),
                propagation_seconds: v.dns_propagation_seconds.unwrap_or(match provider {
                    DnsProviderKind::Cloudflare => 10,
                    DnsProviderKind::Alidns | DnsProviderKind::Dnspod => 30,
                    DnsProviderKind::Challtestsrv => 0,
                }),
            };
            if v.dns_credentials_file.is_some() && provider.key_names().is_none() {
                return Err(err(
                    "certs.dns_credentials_file",
                    "only the alidns and dnspod providers read a credentials file".into(),
                ));
            }
            // The key pair must be there before anything is sent anywhere (it is read again,
            // and never kept, when the records are published).
            if let Err(e) = config.key_pair() {
                let field = match &config.credentials_file {
                    Some(_) => "certs.dns_credentials_file",
                    None => "certs.dns_provider",
                };
                return Err(err(field, e.to_string()));
            }
            ChallengeConfig::Dns01(config)
        }
        Challenge::SelfSigned => ChallengeConfig::SelfSigned,
    };

    let key_type = match v.key_type.unwrap_or(KeyAlgorithm::EcdsaP256) {
        KeyAlgorithm::EcdsaP256 => KeyType::EcdsaP256,
        KeyAlgorithm::EcdsaP384 => KeyType::EcdsaP384,
        KeyAlgorithm::Rsa2048 => KeyType::Rsa2048,
        KeyAlgorithm::Rsa4096 => KeyType::Rsa4096,
    };

    let directory_url = match v.ca.as_ref().unwrap_or(&Ca::LetsEncrypt) {
        Ca::LetsEncrypt => LETSENCRYPT.to_string(),
        Ca::LetsEncryptStaging => LETSENCRYPT_STAGING.to_string(),
        Ca::Custom(url) => url.to_string(),
    };
    let eab = match (&v.eab_kid, &v.eab_hmac_key) {
        (Some(kid), Some(key)) => Some(EabConfig {
            kid: kid.clone(),
            hmac_key: key.clone(),
        }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(err(
                "certs.eab_hmac_key",
                "certs.eab_kid is set but the HMAC key is not".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(err(
                "certs.eab_kid",
                "certs.eab_hmac_key is set but the key id is not".into(),
            ));
        }
    };
    if let Some(email) = &v.email
        && let Err(rule) = common::values::email(email)
    {
        return Err(err("certs.email", rule));
    }
    if let Some(p) = &v.profile
        && (p.is_empty()
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        return Err(err("certs.profile", format!("{p:?} is not a profile name")));
    }

    let name = match &v.name {
        Some(n) => {
            if n.is_empty()
                || n.starts_with('.')
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            {
                return Err(err(
                    "certs.name",
                    format!("{n:?}: use letters, digits, `.`, `-` and `_` only"),
                ));
            }
            n.clone()
        }
        None => domains[0].file_stem(),
    };
    let ssl_dir = match (&v.ssl_dir, app) {
        (Some(d), _) => d.clone(),
        (None, Some(app)) => app.ssl_dir(),
        (None, None) => format!("/etc/ssl/provision/{name}"),
    };
    if !ssl_dir.starts_with('/') {
        return Err(err(
            "certs.ssl_dir",
            format!("{ssl_dir:?} is not an absolute path"),
        ));
    }
    let schedule = v
        .schedule
        .clone()
        .unwrap_or_else(|| DEFAULT_SCHEDULE.into());
    if schedule.trim().is_empty() || schedule.contains('\n') {
        return Err(err(
            "certs.schedule",
            format!("{schedule:?} is not an OnCalendar= expression"),
        ));
    }

    Ok(CertificateDeclaration {
        host: host.to_string(),
        name,
        domains,
        challenge,
        key_type,
        ca: CaConfig {
            directory_url,
            root_pem: v.ca_root.as_ref().map(PathBuf::from),
            eab,
        },
        email: v.email.clone(),
        profile: v.profile.clone(),
        ssl_dir,
        reload: v.reload.clone().unwrap_or_else(|| default_reload(app)),
        schedule,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(toml_text: &str) -> Vars {
        toml::from_str(toml_text).expect("test vars parse")
    }

    fn declare(toml_text: &str) -> Result<Option<CertificateDeclaration>, DeclarationError> {
        declaration_from_vars("web-1", &vars(toml_text))
    }

    fn problem(toml_text: &str) -> (String, String) {
        let e = declare(toml_text).expect_err("should be rejected");
        (e.field, e.problem)
    }

    #[test]
    fn no_section_means_no_certificate() {
        assert_eq!(declare("timezone = \"Etc/UTC\"").unwrap(), None);
    }

    /// Regression: the certificate defaults derived the app directory as `/opt/<name>`
    /// while the app tree honoured `app.path`, so with `path` set the certificate went to a
    /// directory nginx never reads and the reload looked for the wrong compose file.
    #[test]
    fn certs_honour_app_path_for_ssl_dir_and_the_reload() {
        let d = declare(
            r#"
            [app]
            name = "ai-meeting"
            path = "/srv/meeting/"
            domain = "ai-meeting.com"
            [certs]
            email = "ops@ai-meeting.com"
            "#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.ssl_dir, "/srv/meeting/ssl");
        assert!(
            d.reload
                .contains("docker compose -f /srv/meeting/docker-compose.yml exec -T nginx"),
            "{}",
            d.reload
        );
        assert!(!d.reload.contains("/opt/"), "{}", d.reload);
    }

    #[test]
    fn defaults_for_an_app_host() {
        let d = declare(
            r#"
            [app]
            name = "ai-meeting"
            domain = "AI-Meeting.com"
            [certs]
            email = "ops@ai-meeting.com"
            "#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.name, "ai-meeting.com");
        assert_eq!(d.domains, [DomainName::parse("ai-meeting.com").unwrap()]);
        assert_eq!(
            d.challenge,
            ChallengeConfig::Http01 {
                port: 80,
                webroot: ACME_WEBROOT.into()
            }
        );
        assert_eq!(d.key_type, KeyType::EcdsaP256);
        assert_eq!(d.ca, CaConfig::letsencrypt());
        assert_eq!(d.ssl_dir, "/opt/ai-meeting/ssl");
        assert!(d.reload.contains("systemctl reload nginx"), "{}", d.reload);
        assert!(
            d.reload.contains(
                "docker compose -f /opt/ai-meeting/docker-compose.yml exec -T nginx nginx -s reload"
            ),
            "{}",
            d.reload
        );
        assert_eq!(d.schedule, DEFAULT_SCHEDULE);
    }

    #[test]
    fn full_dns01_declaration() {
        let d = declare(
            r#"
            [certs]
            ca = "https://127.0.0.1:14000/dir"
            ca_root = "/tmp/pebble.minica.pem"
            domains = ["*.Example.com", "example.com", "example.com"]
            challenge = "dns-01"
            dns_provider = "cloudflare"
            dns_api_url = "http://127.0.0.1:9999/client/v4/"
            key_type = "rsa-2048"
            profile = "shortlived"
            eab_kid = "kid-1"
            eab_hmac_key = "env:EAB_KEY"
            ssl_dir = "/etc/nginx/ssl"
            reload = "systemctl reload nginx"
            "#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.name, "wildcard.example.com");
        assert_eq!(d.domains.len(), 2, "duplicates removed");
        let ChallengeConfig::Dns01(dns) = &d.challenge else {
            panic!("dns-01 expected")
        };
        assert_eq!(dns.provider, DnsProviderKind::Cloudflare);
        assert_eq!(dns.api_url, "http://127.0.0.1:9999/client/v4");
        assert_eq!(dns.token_env.as_deref(), Some("CLOUDFLARE_API_TOKEN"));
        assert_eq!(d.key_type, KeyType::Rsa2048);
        assert_eq!(d.ca.root_pem, Some(PathBuf::from("/tmp/pebble.minica.pem")));
        assert_eq!(d.ca.eab.as_ref().unwrap().kid, "kid-1");
        assert_eq!(d.profile.as_deref(), Some("shortlived"));
    }

    #[test]
    fn presets_resolve_to_directory_urls() {
        let staging = declare("[certs]\ndomains=[\"a.example\"]\nca=\"letsencrypt-staging\"")
            .unwrap()
            .unwrap();
        assert_eq!(staging.ca.directory_url, LETSENCRYPT_STAGING);
    }

    #[test]
    fn bad_names_point_at_the_field() {
        let (f, p) = problem("[certs]\ndomains = [\"ok.example\", \"-a.com\"]");
        assert_eq!(f, "certs.domains[1]");
        assert!(p.contains("\"-a.com\"") && p.contains("hyphen"), "{p}");
        let (f, p) = problem("[certs]\ndomains = [\"a..b\"]");
        assert_eq!(f, "certs.domains[0]");
        assert!(p.contains("empty label"), "{p}");
        let (f, p) = problem(
            "[certs]\ndomains = [\"*.*.x\"]\nchallenge = \"dns-01\"\ndns_provider = \"challtestsrv\"",
        );
        assert_eq!(f, "certs.domains[0]");
        assert!(p.contains("wildcard"), "{p}");
        let (f, p) = problem("[certs]\ndomains = [\"bücher.example\"]");
        assert_eq!(f, "certs.domains[0]");
        assert!(p.contains("punycode"), "{p}");
        let (f, _) = problem("[certs]\ndomains = []");
        assert_eq!(f, "certs.domains");
        let (f, p) = problem("[app]\ndomain = \"-x.com\"\n[certs]\n");
        assert_eq!(f, "app.domain");
        assert!(p.contains("hyphen"), "{p}");
        let (f, _) = problem("[certs]\nemail = \"ops@example.com\"");
        assert_eq!(f, "certs.domains");
    }

    #[test]
    fn wildcard_needs_dns01() {
        let (f, p) = problem("[certs]\ndomains = [\"example.com\", \"*.example.com\"]");
        assert_eq!(f, "certs.domains[1]");
        assert!(p.contains("DNS-01") && p.contains("certs.challenge"), "{p}");
        let (f, _) = problem("[certs]\ndomains = [\"*.example.com\"]\nchallenge = \"dns-01\"");
        assert_eq!(f, "certs.dns_provider");
    }

    #[test]
    fn other_fields_are_checked() {
        let cases = [
            ("eab_kid = \"x\"", "certs.eab_hmac_key"),
            ("email = \"not-an-address\"", "certs.email"),
            ("name = \"../etc\"", "certs.name"),
            ("ssl_dir = \"relative/ssl\"", "certs.ssl_dir"),
            ("webroot = \"www\"", "certs.webroot"),
            ("profile = \"two words\"", "certs.profile"),
        ];
        for (extra, field) in cases {
            let (f, p) = problem(&format!("[certs]\ndomains = [\"a.example\"]\n{extra}"));
            assert_eq!(f, field, "{extra}: {p}");
        }
    }

    /// Challenge, key type, DNS provider and CA are typed: an unknown one does not even
    /// load (the inventory loader locates it), and the aliases still do.
    #[test]
    fn closed_sets_are_enums_checked_when_the_vars_load() {
        let cases: [(&str, &[&str]); 5] = [
            (
                "challenge = \"tls-alpn-01\"",
                &["`http-01`", "`dns-01`", "`self-signed`"],
            ),
            (
                "key_type = \"dsa\"",
                &["`ecdsa-p256`", "`ecdsa-p384`", "`rsa-2048`", "`rsa-4096`"],
            ),
            (
                "dns_provider = \"route53\"",
                &["`cloudflare`", "`challtestsrv`", "`alidns`", "`dnspod`"],
            ),
            (
                "ca = \"zerossl\"",
                &["neither a preset", "letsencrypt-staging"],
            ),
            ("ca = \"http://acme.example.com/dir\"", &["plain HTTP"]),
        ];
        for (extra, allowed) in cases {
            let text = format!("[certs]\ndomains = [\"a.example\"]\n{extra}");
            let e = toml::from_str::<Vars>(&text).unwrap_err().to_string();
            assert!(allowed.iter().all(|a| e.contains(a)), "{extra}: {e}");
        }
        let d = declare(
            "[certs]\ndomains = [\"a.example\"]\nchallenge = \"dns\"\ndns_provider = \"pebble-challtestsrv\"\nkey_type = \"p384\"",
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.key_type, KeyType::EcdsaP384);
        assert!(
            matches!(&d.challenge, ChallengeConfig::Dns01(c) if c.provider == DnsProviderKind::Challtestsrv)
        );
    }

    /// `alidns` and `dnspod` sign with a key pair: from a file only its owner can read, or
    /// the controller's environment; without one the declaration does not load.
    #[test]
    fn signing_providers_need_their_key_pair_at_load() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("dns.env");
        std::fs::write(
            &file,
            "TENCENTCLOUD_SECRET_ID=AKIDx\nTENCENTCLOUD_SECRET_KEY=k\nALIBABA_CLOUD_ACCESS_KEY_ID=LTAIx\nALIBABA_CLOUD_ACCESS_KEY_SECRET=s\n",
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        for (provider, api) in [("alidns", ALIDNS_API), ("dnspod", DNSPOD_API)] {
            let text = format!(
                "[certs]\ndomains = [\"*.example.com\"]\nchallenge = \"dns-01\"\ndns_provider = \"{provider}\"\ndns_credentials_file = {:?}",
                file.display().to_string()
            );
            let d = declare(&text).unwrap().unwrap();
            let ChallengeConfig::Dns01(dns) = &d.challenge else {
                panic!("{provider}: {d:?}")
            };
            assert_eq!(dns.api_url, api);
            assert_eq!(dns.credentials_file.as_deref(), Some(file.as_path()));
            assert!(dns.key_pair().unwrap().is_some());
            // Nothing secret is kept in the declaration (it is stored on the host).
            let stored = serde_json::to_string(&d).unwrap();
            assert!(
                !stored.contains("AKIDx") && !stored.contains("LTAIx"),
                "{stored}"
            );
        }
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (f, p) = problem(&format!(
            "[certs]\ndomains = [\"a.example\"]\nchallenge = \"dns-01\"\ndns_provider = \"alidns\"\ndns_credentials_file = {:?}",
            file.display().to_string()
        ));
        assert_eq!(f, "certs.dns_credentials_file");
        assert!(p.contains("0644") && p.contains("chmod 600"), "{p}");
        // Without a file, the environment; the test process does not set these.
        if std::env::var_os("TENCENTCLOUD_SECRET_ID").is_none() {
            let (f, p) = problem(
                "[certs]\ndomains = [\"a.example\"]\nchallenge = \"dns-01\"\ndns_provider = \"tencentcloud\"",
            );
            assert_eq!(f, "certs.dns_provider");
            assert!(
                p.contains("TENCENTCLOUD_SECRET_ID") && p.contains("TENCENTCLOUD_SECRET_KEY"),
                "{p}"
            );
        }
        let (f, _) = problem(
            "[certs]\ndomains = [\"a.example\"]\nchallenge = \"dns-01\"\ndns_provider = \"cloudflare\"\ndns_credentials_file = \"/x\"",
        );
        assert_eq!(f, "certs.dns_credentials_file");
    }

    /// What only the certificate declaration can judge (a wildcard without DNS-01) is
    /// refused by [`check`] at the inventory's file, line and column, naming the field.
    #[test]
    fn check_locates_a_certs_problem_at_its_line_and_field() {
        let text = "[hosts.web-1]\naddress = \"10.0.0.1\"\n[hosts.web-1.vars.certs]\nemail = \"ops@example.com\"\ndomains = [\"example.com\", \"*.example.com\"]\n";
        let inventory = common::inventory::Inventory::parse("inv.toml", text, None).unwrap();
        let e = check(&inventory.hosts[0]).unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.line, e.column, e.field.as_deref()),
            ("inv.toml", 5, 27, Some("certs.domains[1]"))
        );
        assert!(e.message.starts_with("host `web-1`: "), "{}", e.message);
        assert!(e.message.contains("DNS-01"), "{}", e.message);
        let plain =
            common::inventory::Inventory::parse("inv.toml", "[hosts.web-1]\n", None).unwrap();
        check(&plain.hosts[0]).unwrap();
    }

    #[test]
    fn error_message_names_host_and_field() {
        let e = declare("[certs]\ndomains = [\"a..b\"]").unwrap_err();
        assert_eq!(
            e.to_string(),
            "web-1: certs.domains[0]: \"a..b\": it has an empty label (two dots in a row, or a leading dot)"
        );
    }
}
