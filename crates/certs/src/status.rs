//! `certs status`: per certificate — names, issuer, not-after, days left, next renewal and
//! the last error — from the state directory alone (no network).

use serde::Serialize;
use time::OffsetDateTime;

use crate::declaration::CertificateDeclaration;
use crate::info::CertInfo;
use crate::state::{StateDir, StateError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertStatus {
    pub host: String,
    pub name: String,
    /// Names on the current certificate (the declared names when there is none yet).
    pub names: Vec<String>,
    pub issuer: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    pub days_left: Option<i64>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_renewal: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_attempt: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    /// The CA asked not to retry before this.
    #[serde(with = "time::serde::rfc3339::option")]
    pub retry_not_before: Option<OffsetDateTime>,
    /// Declared names differ from the certificate's (a renewal will fix it).
    pub names_differ: bool,
}

/// Status of the declared certificates, or of every stored one when `declarations` is empty.
pub fn status(
    state: &StateDir,
    declarations: &[CertificateDeclaration],
    now: OffsetDateTime,
) -> Result<Vec<CertStatus>, StateError> {
    let keys: Vec<(String, String, Option<&CertificateDeclaration>)> = if declarations.is_empty() {
        state
            .list()?
            .into_iter()
            .map(|(h, n)| (h, n, None))
            .collect()
    } else {
        declarations
            .iter()
            .map(|d| (d.host.clone(), d.name.clone(), Some(d)))
            .collect()
    };
    let mut out = Vec::new();
    for (host, name, declaration) in keys {
        let record = state.load_record(&host, &name)?;
        let info = state
            .load_certificate(&host, &name)?
            .and_then(|c| CertInfo::from_pem(&c.fullchain).ok());
        let declared: Option<Vec<String>> =
            declaration.map(|d| d.domains.iter().map(|n| n.to_string()).collect());
        let names_differ = match (&info, &declared) {
            (Some(i), Some(d)) => !i.covers_exactly(d),
            _ => false,
        };
        out.push(CertStatus {
            names: info
                .as_ref()
                .map(|i| i.names.clone())
                .or(declared)
                .unwrap_or_default(),
            issuer: info.as_ref().map(|i| i.issuer.clone()),
            not_after: info.as_ref().map(|i| i.not_after),
            days_left: info.as_ref().map(|i| i.days_left(now)),
            next_renewal: record.next_renewal,
            last_attempt: record.last_attempt,
            last_error: record.last_error,
            retry_not_before: record.retry_not_before.filter(|t| *t > now),
            names_differ,
            host,
            name,
        });
    }
    Ok(out)
}

/// `3d 4h`, `2h 5m`, `40s`.
pub(crate) fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3_600, (s % 3_600) / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m {}s", s % 60),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// A plain-text table for terminals.
pub fn render_table(rows: &[CertStatus]) -> String {
    let date = |t: Option<OffsetDateTime>| {
        t.map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_else(|| "-".into())
    };
    let mut table = vec![[
        "HOST".to_string(),
        "CERTIFICATE".into(),
        "NAMES".into(),
        "ISSUER".into(),
        "NOT AFTER".into(),
        "DAYS LEFT".into(),
        "NEXT RENEWAL".into(),
        "LAST ERROR".into(),
    ]];
    for r in rows {
        table.push([
            r.host.clone(),
            r.name.clone(),
            r.names.join(",")
                + if r.names_differ {
                    " (declared names differ)"
                } else {
                    ""
                },
            r.issuer.clone().unwrap_or_else(|| "-".into()),
            date(r.not_after),
            r.days_left
                .map(|d| d.to_string())
                .unwrap_or_else(|| "-".into()),
            date(r.next_renewal),
            r.last_error
                .as_deref()
                .map(|e| e.lines().next().unwrap_or_default().to_string())
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| {
            table
                .iter()
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut s = String::new();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        s.push_str(line.join("  ").trim_end());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{CertRecord, StoredCertificate};
    use time::macros::datetime;

    #[test]
    fn status_reads_certificate_and_record() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path());
        let pem = crate::info::tests::issued_pem(
            &["example.com"],
            datetime!(2026-01-01 00:00 UTC),
            datetime!(2026-04-01 00:00 UTC),
        );
        state
            .save_certificate(
                "web-1",
                "example.com",
                &StoredCertificate {
                    fullchain: pem.into_bytes(),
                    privkey: b"k".to_vec(),
                },
            )
            .unwrap();
        state
            .save_record(
                "web-1",
                "example.com",
                &CertRecord {
                    next_renewal: Some(datetime!(2026-03-02 10:00 UTC)),
                    last_error: Some("the CA at https://x is rate limiting\nmore".into()),
                    retry_not_before: Some(datetime!(2026-02-01 00:00 UTC)),
                    ..Default::default()
                },
            )
            .unwrap();
        let now = datetime!(2026-03-01 00:00 UTC);
        let rows = status(&state, &[], now).unwrap();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.names, ["example.com"]);
        assert_eq!(r.issuer.as_deref(), Some("CN=Test CA"));
        assert_eq!(r.days_left, Some(31));
        assert_eq!(r.next_renewal, Some(datetime!(2026-03-02 10:00 UTC)));
        assert_eq!(r.retry_not_before, None, "past retry times are not shown");
        insta::assert_snapshot!(render_table(&rows), @r"
        HOST   CERTIFICATE  NAMES        ISSUER      NOT AFTER         DAYS LEFT  NEXT RENEWAL      LAST ERROR
        web-1  example.com  example.com  CN=Test CA  2026-04-01 00:00  31         2026-03-02 10:00  the CA at https://x is rate limiting
        ");
        let json = serde_json::to_value(r).unwrap();
        assert_eq!(json["not_after"], "2026-04-01T00:00:00Z");
    }

    #[test]
    fn declared_but_not_issued() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path());
        let d = crate::selfsigned::tests::declaration();
        let rows = status(&state, &[d], datetime!(2026-03-01 00:00 UTC)).unwrap();
        assert_eq!(rows[0].names, ["dev.example"]);
        assert_eq!(rows[0].issuer, None);
        assert_eq!(rows[0].days_left, None);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(40), "40s");
        assert_eq!(human_duration(125), "2m 5s");
        assert_eq!(human_duration(3 * 3600 + 120), "3h 2m");
        assert_eq!(human_duration(2 * 86_400 + 5 * 3600), "2d 5h");
    }
}
