//! When to renew: the CA's ARI window (RFC 9773) when it offers one, else once less than a
//! third of the lifetime is left; either way at a random point inside the window so that
//! many hosts do not renew in the same minute.

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::info::CertInfo;

/// A period in which the certificate should be renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalWindow {
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
}

/// The outcome of a renewal check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Due { reason: String },
    NotDue { at: OffsetDateTime, reason: String },
}

impl Decision {
    pub fn is_due(&self) -> bool {
        matches!(self, Decision::Due { .. })
    }

    pub fn reason(&self) -> &str {
        match self {
            Decision::Due { reason } | Decision::NotDue { reason, .. } => reason,
        }
    }

    /// When the next renewal is planned (`None`: now).
    pub fn next_renewal(&self) -> Option<OffsetDateTime> {
        match self {
            Decision::Due { .. } => None,
            Decision::NotDue { at, .. } => Some(*at),
        }
    }
}

/// The window used without ARI: from two thirds to three quarters of the lifetime.
pub(crate) fn default_window(cert: &CertInfo) -> RenewalWindow {
    let lifetime = cert.lifetime();
    RenewalWindow {
        start: cert.not_before + lifetime * 2 / 3,
        end: cert.not_before + lifetime * 3 / 4,
    }
}

/// Decide whether `cert` is due for renewal at `now`.
///
/// Inside the window the renewal point is drawn from `rng`; pass [`rng_for`] of the
/// certificate so that every check of the same certificate picks the same point.
pub(crate) fn renewal_due(
    cert: &CertInfo,
    ari: Option<RenewalWindow>,
    now: OffsetDateTime,
    rng: &mut impl Rng,
) -> Decision {
    if now >= cert.not_after {
        return Decision::Due {
            reason: format!("expired at {}", crate::info::rfc3339(cert.not_after)),
        };
    }
    let (window, source) = match ari {
        Some(w) if w.end >= w.start => (w, "the CA's renewal window (ARI)"),
        Some(w) => (
            RenewalWindow {
                start: w.start,
                end: w.start,
            },
            "the CA's renewal window (ARI)",
        ),
        None => (default_window(cert), "the last third of the lifetime"),
    };
    let span = (window.end - window.start).whole_seconds().max(0);
    let offset = if span == 0 {
        0
    } else {
        rng.random_range(0..=span)
    };
    let at = window.start + time::Duration::seconds(offset);
    let described = format!(
        "{source} runs from {} to {}",
        crate::info::rfc3339(window.start),
        crate::info::rfc3339(window.end)
    );
    if now >= at {
        Decision::Due {
            reason: format!(
                "{described}; renewal point {} has passed",
                crate::info::rfc3339(at)
            ),
        }
    } else {
        Decision::NotDue {
            at,
            reason: format!("{described}; renewing at {}", crate::info::rfc3339(at)),
        }
    }
}

/// A random generator seeded by the certificate's serial and names: the same certificate
/// always gets the same point in its window, different certificates get different points.
pub(crate) fn rng_for(cert: &CertInfo) -> rand::rngs::StdRng {
    let mut hash = Sha256::new();
    hash.update(cert.serial.as_bytes());
    for n in &cert.names {
        hash.update([0]);
        hash.update(n.as_bytes());
    }
    rand::rngs::StdRng::from_seed(hash.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn cert(not_before: OffsetDateTime, days: i64) -> CertInfo {
        CertInfo {
            names: vec!["example.com".into()],
            issuer: "CN=Test CA".into(),
            subject: "CN=example.com".into(),
            not_before,
            not_after: not_before + time::Duration::days(days),
            serial: "01".into(),
            ari_id: None,
            chain_length: 2,
        }
    }

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    const START: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

    #[test]
    fn fresh_certificate_is_not_due_and_says_when() {
        let c = cert(START, 90);
        let d = renewal_due(&c, None, START + time::Duration::days(10), &mut rng());
        let Decision::NotDue { at, reason } = &d else {
            panic!("{d:?}")
        };
        assert!(*at >= START + time::Duration::days(60), "{at}");
        assert!(
            *at <= START + time::Duration::hours(90 * 24 * 3 / 4),
            "{at}"
        );
        assert!(reason.contains("last third"), "{reason}");
        assert_eq!(d.next_renewal(), Some(*at));
    }

    #[test]
    fn one_third_left_is_due_by_the_end_of_the_window() {
        let c = cert(START, 90);
        // Day 59: before the window.
        assert!(!renewal_due(&c, None, START + time::Duration::days(59), &mut rng()).is_due());
        // Day 68 (past 3/4 = day 67.5): due whatever the jitter.
        for seed in 0..20 {
            let mut r = rand::rngs::StdRng::seed_from_u64(seed);
            assert!(renewal_due(&c, None, START + time::Duration::days(68), &mut r).is_due());
        }
        // Expired.
        let d = renewal_due(&c, None, START + time::Duration::days(91), &mut rng());
        assert!(d.reason().contains("expired"), "{d:?}");
    }

    #[test]
    fn jitter_spreads_inside_the_window() {
        let c = cert(START, 90);
        let window = default_window(&c);
        let points: std::collections::BTreeSet<OffsetDateTime> = (0..50)
            .map(|s| {
                let mut r = rand::rngs::StdRng::seed_from_u64(s);
                renewal_due(&c, None, START, &mut r).next_renewal().unwrap()
            })
            .collect();
        assert!(points.len() > 40, "points are spread: {}", points.len());
        assert!(
            points
                .iter()
                .all(|p| *p >= window.start && *p <= window.end)
        );
    }

    #[test]
    fn ari_window_overrides_the_lifetime_rule() {
        let c = cert(START, 90);
        // The CA asks for early renewal (e.g. a revocation): window already open.
        let early = RenewalWindow {
            start: START + time::Duration::days(5),
            end: START + time::Duration::days(6),
        };
        let d = renewal_due(&c, Some(early), START + time::Duration::days(7), &mut rng());
        assert!(d.is_due(), "{d:?}");
        assert!(d.reason().contains("ARI"), "{d:?}");
        // A window later than two thirds is honored too.
        let late = RenewalWindow {
            start: START + time::Duration::days(80),
            end: START + time::Duration::days(82),
        };
        let d = renewal_due(&c, Some(late), START + time::Duration::days(70), &mut rng());
        let at = d.next_renewal().expect("not due yet");
        assert!(at >= late.start && at <= late.end, "{at}");
    }

    #[test]
    fn same_certificate_same_point() {
        let c = cert(START, 90);
        let a = renewal_due(&c, None, START, &mut rng_for(&c)).next_renewal();
        let b = renewal_due(&c, None, START, &mut rng_for(&c)).next_renewal();
        assert_eq!(a, b);
        let mut other = c.clone();
        other.serial = "02".into();
        let o = renewal_due(&other, None, START, &mut rng_for(&other)).next_renewal();
        assert_ne!(a, o);
    }
}
