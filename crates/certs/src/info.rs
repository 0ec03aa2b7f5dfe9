//! What a certificate says about itself, parsed with x509-parser.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

/// RFC 3339 text of a time (`2026-01-01T00:00:00Z`).
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// The facts about a certificate that renewal and `certs status` need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertInfo {
    /// DNS names in the subjectAltName extension (the subject CN when there is none).
    pub names: Vec<String>,
    /// Issuer distinguished name, e.g. `CN=Pebble Intermediate CA 1a2b3c`.
    pub issuer: String,
    pub subject: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Serial number, lowercase hex without separators.
    pub serial: String,
    /// ARI certificate identifier (`base64url(AKI).base64url(serial)`), when the certificate
    /// has an Authority Key Identifier.
    pub ari_id: Option<String>,
    /// Certificates in the PEM (leaf plus intermediates).
    pub chain_length: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CertParseError {
    #[error("no PEM certificate found")]
    NoCertificate,
    #[error("the PEM data is malformed: {0}")]
    Pem(String),
    #[error("the certificate does not parse: {0}")]
    X509(String),
}

impl CertInfo {
    /// Parse the first certificate of a PEM chain (`fullchain.pem`).
    pub fn from_pem(pem: &[u8]) -> Result<CertInfo, CertParseError> {
        let mut blocks = Vec::new();
        for block in Pem::iter_from_buffer(pem) {
            let block = block.map_err(|e| CertParseError::Pem(e.to_string()))?;
            if block.label == "CERTIFICATE" {
                blocks.push(block);
            }
        }
        let first = blocks.first().ok_or(CertParseError::NoCertificate)?;
        let mut info = CertInfo::from_der(&first.contents)?;
        info.chain_length = blocks.len();
        Ok(info)
    }

    /// Parse one DER certificate.
    pub(crate) fn from_der(der: &[u8]) -> Result<CertInfo, CertParseError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| CertParseError::X509(e.to_string()))?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                if let GeneralName::DNSName(d) = n {
                    names.push(d.to_ascii_lowercase());
                }
            }
        }
        if names.is_empty()
            && let Some(cn) = cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
        {
            names.push(cn.to_ascii_lowercase());
        }
        let serial = cert
            .raw_serial()
            .iter()
            .skip_while(|b| **b == 0)
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        let der_cert = rustls::pki_types::CertificateDer::from(der.to_vec());
        let ari_id = instant_acme::CertificateIdentifier::try_from(&der_cert)
            .ok()
            .map(|id| id.to_string());
        Ok(CertInfo {
            names,
            issuer: cert.issuer().to_string(),
            subject: cert.subject().to_string(),
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            serial: if serial.is_empty() {
                "00".into()
            } else {
                serial
            },
            ari_id,
            chain_length: 1,
        })
    }

    /// Total validity period.
    pub fn lifetime(&self) -> time::Duration {
        self.not_after - self.not_before
    }

    /// Whole days until `not_after` (negative once expired).
    pub fn days_left(&self, now: OffsetDateTime) -> i64 {
        (self.not_after - now).whole_days()
    }

    pub fn is_self_signed(&self) -> bool {
        self.issuer == self.subject
    }

    /// Whether the certificate covers exactly these names (order does not matter).
    pub(crate) fn covers_exactly(&self, names: &[String]) -> bool {
        let mut a: Vec<&str> = self.names.iter().map(String::as_str).collect();
        let mut b: Vec<&str> = names.iter().map(String::as_str).collect();
        a.sort_unstable();
        a.dedup();
        b.sort_unstable();
        b.dedup();
        a == b
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, Issuer, KeyPair};
    use time::macros::datetime;

    /// A CA-issued test certificate with the given names and validity.
    pub(crate) fn issued_pem(
        names: &[&str],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> String {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "Test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut leaf =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        leaf.not_before = not_before;
        leaf.not_after = not_after;
        leaf.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x01, 0xab, 0xcd]));
        leaf.use_authority_key_identifier_extension = true;
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        format!("{}{}", cert.pem(), ca_cert.pem())
    }

    #[test]
    fn parses_names_dates_issuer_serial_and_chain() {
        let pem = issued_pem(
            &["example.com", "*.example.com"],
            datetime!(2026-01-01 00:00 UTC),
            datetime!(2026-04-01 00:00 UTC),
        );
        let info = CertInfo::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(info.names, ["example.com", "*.example.com"]);
        assert_eq!(info.issuer, "CN=Test CA");
        assert_eq!(info.not_before, datetime!(2026-01-01 00:00 UTC));
        assert_eq!(info.not_after, datetime!(2026-04-01 00:00 UTC));
        assert_eq!(info.serial, "01abcd");
        assert_eq!(info.chain_length, 2);
        assert!(!info.is_self_signed());
        let ari = info.ari_id.as_deref().expect("AKI present");
        assert!(ari.ends_with(".AavN"), "{ari}");
        assert_eq!(info.lifetime(), time::Duration::days(90));
        assert_eq!(info.days_left(datetime!(2026-03-01 00:00 UTC)), 31);
        assert!(info.covers_exactly(&["*.example.com".into(), "example.com".into()]));
        assert!(!info.covers_exactly(&["example.com".into()]));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(
            CertInfo::from_pem(b"hello"),
            Err(CertParseError::NoCertificate)
        ));
        let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            CertInfo::from_pem(bad.as_bytes()),
            Err(CertParseError::X509(_))
        ));
    }
}
