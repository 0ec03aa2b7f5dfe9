//! Self-signed certificates for dev and test (seeds/002 §5.2: CN=localhost, 365 days).

use rcgen::{CertificateParams, DistinguishedName, DnType};
use time::OffsetDateTime;

use crate::declaration::CertificateDeclaration;
use crate::state::StoredCertificate;

/// Validity of a self-signed certificate.
pub(crate) const SELF_SIGNED_DAYS: i64 = 365;

/// A self-signed certificate with CN=localhost and `localhost` plus the declared names as
/// subject alternative names, valid for [`SELF_SIGNED_DAYS`] from `now`.
pub(crate) fn self_signed(
    declaration: &CertificateDeclaration,
    now: OffsetDateTime,
) -> Result<StoredCertificate, rcgen::Error> {
    let key = declaration.key_type.generate()?;
    let mut names = vec!["localhost".to_string()];
    for d in &declaration.domains {
        if !names.iter().any(|n| n == d.as_str()) {
            names.push(d.as_str().to_string());
        }
    }
    let mut params = CertificateParams::new(names)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "localhost");
    params.distinguished_name = dn;
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(SELF_SIGNED_DAYS);
    let cert = params.self_signed(&key)?;
    Ok(StoredCertificate {
        fullchain: cert.pem().into_bytes(),
        privkey: key.serialize_pem().into_bytes(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::declaration::{CaConfig, ChallengeConfig, KeyType};
    use crate::info::CertInfo;
    use common::values::DomainName;

    pub(crate) fn declaration() -> CertificateDeclaration {
        CertificateDeclaration {
            host: "dev-1".into(),
            name: "dev.example".into(),
            domains: vec![DomainName::parse("dev.example").unwrap()],
            challenge: ChallengeConfig::SelfSigned,
            key_type: KeyType::EcdsaP256,
            ca: CaConfig::letsencrypt(),
            email: None,
            profile: None,
            ssl_dir: "/opt/app/ssl".into(),
            reload: "true".into(),
            schedule: crate::declaration::DEFAULT_SCHEDULE.into(),
        }
    }

    #[test]
    fn localhost_plus_names_for_a_year() {
        let now = time::macros::datetime!(2026-05-01 00:00 UTC);
        let cert = self_signed(&declaration(), now).unwrap();
        let info = CertInfo::from_pem(&cert.fullchain).unwrap();
        assert_eq!(info.names, ["localhost", "dev.example"]);
        assert_eq!(info.subject, "CN=localhost");
        assert!(info.is_self_signed());
        assert_eq!(info.not_after, now + time::Duration::days(365));
        assert!(crate::install::key_matches(&cert).unwrap());
        assert!(String::from_utf8_lossy(&cert.privkey).contains("PRIVATE KEY"));
    }

    #[test]
    fn rsa_keys_work_too() {
        let mut d = declaration();
        d.key_type = KeyType::Rsa2048;
        let cert = self_signed(&d, OffsetDateTime::now_utc()).unwrap();
        assert!(crate::install::key_matches(&cert).unwrap());
    }
}
