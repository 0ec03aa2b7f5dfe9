//! Domain names as a CA accepts them: validated and normalized before any request is made.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A DNS name for a certificate: lowercase ASCII, optionally a wildcard (`*.example.com`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DomainName(String);

/// Why a name is not a valid certificate name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("the name is empty")]
    Empty,
    #[error("the name is {length} characters long; at most 253 are allowed")]
    TooLong { length: usize },
    #[error("label `{label}` is {length} characters long; at most 63 are allowed")]
    LabelTooLong { label: String, length: usize },
    #[error("it has an empty label (two dots in a row, or a leading dot)")]
    EmptyLabel,
    #[error("label `{label}` starts or ends with a hyphen")]
    Hyphen { label: String },
    #[error("label `{label}` contains `{character}`; only a-z, 0-9 and `-` are allowed")]
    Character { label: String, character: char },
    #[error(
        "it contains non-ASCII characters; write the internationalized name in its ASCII (punycode) form, e.g. `xn--bcher-kva.example` for `bücher.example`"
    )]
    NonAscii,
    #[error(
        "a wildcard is only allowed as the whole leftmost label, once (`*.example.com`), not `{name}`"
    )]
    Wildcard { name: String },
    #[error("`{name}` is a single label; a publicly trusted certificate needs a full domain name")]
    SingleLabel { name: String },
    #[error("`{name}` looks like an IP address; IP identifiers are not supported, use a DNS name")]
    IpAddress { name: String },
}

impl DomainName {
    /// Validate and normalize: surrounding whitespace and one trailing dot are dropped,
    /// uppercase ASCII is lowercased (DNS names are case-insensitive).
    pub fn parse(input: &str) -> Result<DomainName, DomainError> {
        let trimmed = input.trim();
        let trimmed = trimmed.strip_suffix('.').unwrap_or(trimmed);
        if trimmed.is_empty() {
            return Err(DomainError::Empty);
        }
        if !trimmed.is_ascii() {
            return Err(DomainError::NonAscii);
        }
        let name = trimmed.to_ascii_lowercase();
        if name.len() > 253 {
            return Err(DomainError::TooLong { length: name.len() });
        }
        if name.parse::<std::net::IpAddr>().is_ok() {
            return Err(DomainError::IpAddress { name });
        }
        let (wildcard, base) = match name.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, name.as_str()),
        };
        if base.contains('*') || (!wildcard && name.starts_with('*')) {
            return Err(DomainError::Wildcard { name });
        }
        let labels: Vec<&str> = base.split('.').collect();
        for label in &labels {
            if label.is_empty() {
                return Err(DomainError::EmptyLabel);
            }
            if label.len() > 63 {
                return Err(DomainError::LabelTooLong {
                    label: label.to_string(),
                    length: label.len(),
                });
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
            {
                return Err(DomainError::Character {
                    label: label.to_string(),
                    character: c,
                });
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(DomainError::Hyphen {
                    label: label.to_string(),
                });
            }
        }
        if labels.len() < 2 {
            return Err(DomainError::SingleLabel { name });
        }
        if labels
            .last()
            .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(DomainError::IpAddress { name });
        }
        Ok(DomainName(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }

    /// The name without a leading `*.`: what the CA authorizes and where DNS-01 records go.
    pub fn base(&self) -> &str {
        self.0.strip_prefix("*.").unwrap_or(&self.0)
    }

    /// The DNS-01 record name, `_acme-challenge.<base>`.
    pub fn dns01_record(&self) -> String {
        format!("_acme-challenge.{}", self.base())
    }

    /// A name safe as a single path component (`*.example.com` → `wildcard.example.com`).
    pub fn file_stem(&self) -> String {
        match self.0.strip_prefix("*.") {
            Some(rest) => format!("wildcard.{rest}"),
            None => self.0.clone(),
        }
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for DomainName {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        DomainName::parse(&s)
    }
}

impl From<DomainName> for String {
    fn from(d: DomainName) -> String {
        d.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalizes_ordinary_names() {
        assert_eq!(
            DomainName::parse("Example.COM").unwrap().as_str(),
            "example.com"
        );
        assert_eq!(
            DomainName::parse(" www.example.com. ").unwrap().as_str(),
            "www.example.com"
        );
        assert_eq!(
            DomainName::parse("xn--bcher-kva.example").unwrap().as_str(),
            "xn--bcher-kva.example"
        );
        assert_eq!(
            DomainName::parse("a-b.c0.io").unwrap().as_str(),
            "a-b.c0.io"
        );
        let w = DomainName::parse("*.Example.com").unwrap();
        assert!(w.is_wildcard());
        assert_eq!(w.base(), "example.com");
        assert_eq!(w.dns01_record(), "_acme-challenge.example.com");
        assert_eq!(w.file_stem(), "wildcard.example.com");
    }

    #[test]
    fn rejects_bad_names_with_the_reason() {
        let cases: &[(&str, DomainError)] = &[
            ("", DomainError::Empty),
            ("-a.com", DomainError::Hyphen { label: "-a".into() }),
            ("a-.com", DomainError::Hyphen { label: "a-".into() }),
            ("a..b", DomainError::EmptyLabel),
            (".a.com", DomainError::EmptyLabel),
            (
                "*.*.x",
                DomainError::Wildcard {
                    name: "*.*.x".into(),
                },
            ),
            (
                "a*.example.com",
                DomainError::Wildcard {
                    name: "a*.example.com".into(),
                },
            ),
            (
                "*example.com",
                DomainError::Wildcard {
                    name: "*example.com".into(),
                },
            ),
            (
                "www.*.example.com",
                DomainError::Wildcard {
                    name: "www.*.example.com".into(),
                },
            ),
            ("bücher.example", DomainError::NonAscii),
            (
                "a_b.example.com",
                DomainError::Character {
                    label: "a_b".into(),
                    character: '_',
                },
            ),
            (
                "localhost",
                DomainError::SingleLabel {
                    name: "localhost".into(),
                },
            ),
            (
                "10.0.0.1",
                DomainError::IpAddress {
                    name: "10.0.0.1".into(),
                },
            ),
            ("::1", DomainError::IpAddress { name: "::1".into() }),
        ];
        for (input, expected) in cases {
            assert_eq!(
                DomainName::parse(input).as_ref(),
                Err(expected),
                "input {input:?}"
            );
        }
        let long_label = format!("{}.com", "a".repeat(64));
        assert!(matches!(
            DomainName::parse(&long_label),
            Err(DomainError::LabelTooLong { length: 64, .. })
        ));
        let long_name = format!("{}.com", vec!["a".repeat(60); 5].join("."));
        assert!(matches!(
            DomainName::parse(&long_name),
            Err(DomainError::TooLong { .. })
        ));
    }

    #[test]
    fn messages_explain_the_fix() {
        let e = DomainName::parse("bücher.example").unwrap_err().to_string();
        assert!(e.contains("punycode"), "{e}");
        let e = DomainName::parse("*.*.x").unwrap_err().to_string();
        assert!(e.contains("leftmost label"), "{e}");
    }
}
