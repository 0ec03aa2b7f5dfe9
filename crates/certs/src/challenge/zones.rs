//! What the DNS-01 providers share: the zone holding a record name (the configured one,
//! else the longest suffix the account has, remembered per name), the ids of the records
//! they created (so the cleanup deletes exactly those), and how an API refusal is kept.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;

use super::DnsError;
use super::credentials::KeyNames;
use crate::http::JsonResponse;

/// A refusal, with the API's error code to tell "not this domain" from the rest.
pub(super) struct ApiError {
    pub(super) code: String,
    pub(super) refused: DnsError,
}

impl ApiError {
    /// The refusal of `what` in `rsp`: the API's `message` and `code`, else the start of
    /// the body; when `keys_refused` (the code says the key pair was refused), a hint to
    /// check the key pair and that `allowed` (what the key must be allowed to do).
    pub(super) fn new(
        provider: &'static str,
        what: &str,
        rsp: &JsonResponse,
        code: String,
        message: Option<&str>,
        keys_refused: Option<(&KeyNames, &str)>,
    ) -> Self {
        let mut message = match message {
            Some(m) => format!("{m} (code {code})"),
            None => String::from_utf8_lossy(&rsp.body)
                .chars()
                .take(300)
                .collect(),
        };
        if let Some((keys, allowed)) = keys_refused {
            message.push_str(&format!(
                "; check {} and {}, and that {allowed}",
                keys.id, keys.secret
            ));
        }
        Self {
            code,
            refused: DnsError::Refused {
                provider,
                what: what.to_string(),
                status: rsp.status.as_u16(),
                message,
            },
        }
    }
}

/// A zone lookup's answer for `candidate`: the zone when the API found it, none when
/// `absent` says the code means "no such domain in this account", else the refusal.
pub(super) fn found<T>(
    candidate: String,
    answer: Result<T, ApiError>,
    absent: impl Fn(&str) -> bool,
) -> Result<Option<String>, DnsError> {
    match answer {
        Ok(_) => Ok(Some(candidate)),
        Err(e) if absent(&e.code) => Ok(None),
        Err(e) => Err(e.refused),
    }
}

/// The zone of each record name.
pub(super) struct Zones {
    configured: Option<String>,
    found: Mutex<BTreeMap<String, String>>,
}

impl Zones {
    /// `configured`: the zone (or zone id) the inventory names, used for every record.
    pub(super) fn new(configured: Option<String>) -> Self {
        Self {
            configured,
            found: Mutex::default(),
        }
    }

    /// The zone holding `name`: the configured one, else the first suffix of `name`
    /// (longest first) for which `lookup` finds one in the account.
    pub(super) async fn zone_for<F, Fut>(
        &self,
        provider: &'static str,
        name: &str,
        mut lookup: F,
    ) -> Result<String, DnsError>
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Result<Option<String>, DnsError>>,
    {
        if let Some(z) = &self.configured {
            return Ok(z.clone());
        }
        if let Some(z) = self.found.lock().expect("not poisoned").get(name) {
            return Ok(z.clone());
        }
        for candidate in zone_candidates(name) {
            if let Some(zone) = lookup(candidate).await? {
                self.found
                    .lock()
                    .expect("not poisoned")
                    .insert(name.to_string(), zone.clone());
                return Ok(zone);
            }
        }
        Err(DnsError::NoZone {
            provider,
            name: name.to_string(),
        })
    }
}

/// The ids of the TXT records this run created, by name and value.
pub(super) struct CreatedRecords<T>(Mutex<BTreeMap<(String, String), T>>);

impl<T> Default for CreatedRecords<T> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<T> CreatedRecords<T> {
    pub(super) fn remember(&self, name: &str, value: &str, id: T) {
        self.0
            .lock()
            .expect("not poisoned")
            .insert((name.to_string(), value.to_string()), id);
    }

    /// The id remembered for the record, forgotten now.
    pub(super) fn take(&self, name: &str, value: &str) -> Option<T> {
        self.0
            .lock()
            .expect("not poisoned")
            .remove(&(name.to_string(), value.to_string()))
    }
}

/// Whether a TXT record's value, as an API lists it (quoted or not), is `value`.
pub(super) fn txt_is(listed: Option<&str>, value: &str) -> bool {
    listed.is_some_and(|v| v.trim_matches('"') == value)
}

/// The suffixes of `name` that could be a zone, longest first (not `name`, not the TLD).
pub(super) fn zone_candidates(name: &str) -> Vec<String> {
    let labels: Vec<&str> = name.split('.').collect();
    (1..labels.len().saturating_sub(1))
        .map(|i| labels[i..].join("."))
        .collect()
}

/// `name` relative to `zone` (`_acme-challenge.sub` in `example.com`).
pub(super) fn relative(name: &str, zone: &str) -> String {
    name.strip_suffix(zone)
        .and_then(|r| r.strip_suffix('.'))
        .filter(|r| !r.is_empty())
        .unwrap_or("@")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_the_suffixes_longest_first_and_names_relative_to_them() {
        assert_eq!(
            zone_candidates("_acme-challenge.a.example.com"),
            ["a.example.com", "example.com"]
        );
        assert_eq!(
            relative("_acme-challenge.a.example.com", "example.com"),
            "_acme-challenge.a"
        );
        assert_eq!(relative("example.com", "example.com"), "@");
        assert!(txt_is(Some("\"v\""), "v") && txt_is(Some("v"), "v") && !txt_is(None, "v"));
    }

    #[tokio::test]
    async fn a_zone_found_once_is_remembered_and_a_configured_one_always_wins() {
        let zones = Zones::new(None);
        let asked = std::sync::atomic::AtomicUsize::new(0);
        let lookup = |candidate: String| {
            asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { Ok((candidate == "example.com").then_some(candidate)) }
        };
        let name = "_acme-challenge.a.example.com";
        assert_eq!(
            zones.zone_for("P", name, lookup).await.unwrap(),
            "example.com"
        );
        assert_eq!(
            zones.zone_for("P", name, lookup).await.unwrap(),
            "example.com"
        );
        assert_eq!(
            asked.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "a.example.com, example.com, then the memo"
        );
        let none = zones
            .zone_for("P", "_acme-challenge.other.org", |_| async { Ok(None) })
            .await;
        assert!(matches!(none, Err(DnsError::NoZone { provider: "P", .. })));
        let configured = Zones::new(Some("zone-id".into()));
        let never = |_| async { panic!("a configured zone is not looked up") };
        assert_eq!(
            configured.zone_for("P", name, never).await.unwrap(),
            "zone-id"
        );
    }
}
