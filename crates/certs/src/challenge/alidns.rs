//! Alibaba Cloud DNS (the `alidns` RPC API, version 2015-01-09): AddDomainRecord,
//! DescribeDomainRecords and DeleteDomainRecord, each signed with HMAC-SHA1.

use async_trait::async_trait;
use serde_json::Value;

use super::credentials::{KeyNames, KeyPair};
use super::zones::{ApiError, CreatedRecords, Zones, found, relative, txt_is};
use super::{DnsError, DnsProvider, signing};
use crate::http::{self, Hyper};

const PROVIDER: &str = "Alibaba Cloud DNS";
const VERSION: &str = "2015-01-09";

/// Where the key pair comes from.
pub(crate) const ALIDNS_KEYS: KeyNames = KeyNames {
    provider: PROVIDER,
    id: "ALIBABA_CLOUD_ACCESS_KEY_ID",
    secret: "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
};

/// Alibaba Cloud DNS, with a RAM AccessKey allowed to manage the zone's records.
pub struct AlidnsDns {
    hyper: Hyper,
    api: String,
    keys: KeyPair,
    /// Record name → zone (the domain as Alibaba Cloud DNS knows it).
    zones: Zones,
    records: CreatedRecords<String>,
}

impl AlidnsDns {
    /// `api` is the API base (the public endpoint, or a mock); `zone` the domain holding the
    /// records, looked up from the name when `None`.
    pub fn new(api: &str, keys: KeyPair, zone: Option<String>) -> Result<Self, DnsError> {
        Ok(Self {
            hyper: http::client(None).map_err(DnsError::Tls)?,
            api: api.trim_end_matches('/').to_string(),
            keys,
            zones: Zones::new(zone),
            records: CreatedRecords::default(),
        })
    }

    async fn call(
        &self,
        action: &str,
        params: &[(&str, String)],
        what: &str,
    ) -> Result<Result<Value, ApiError>, DnsError> {
        let timestamp = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .unwrap_or_default();
        let nonce = format!("{:032x}", rand::random::<u128>());
        let query = signing::alibaba_signed_query(
            action,
            VERSION,
            params,
            &self.keys.id,
            &self.keys.secret,
            &timestamp,
            &nonce,
        );
        let url = format!("{}/?{query}", self.api);
        let rsp = http::send(&self.hyper, ::http::Method::GET, &url, &[], None)
            .await
            .map_err(|e| DnsError::Unreachable(e.replace(&query, "…")))?;
        let parsed: Value = serde_json::from_slice(&rsp.body).unwrap_or(Value::Null);
        let code = parsed.get("Code").and_then(Value::as_str);
        if rsp.status.is_success() && code.is_none() {
            return Ok(Ok(parsed));
        }
        let code = code.unwrap_or_default().to_string();
        let keys_refused = code.contains("Signature")
            || code.contains("AccessKey")
            || code.starts_with("Forbidden");
        Ok(Err(ApiError::new(
            PROVIDER,
            what,
            &rsp,
            code,
            parsed.get("Message").and_then(Value::as_str),
            keys_refused.then_some((&ALIDNS_KEYS, "the RAM user may manage DNS records")),
        )))
    }

    /// The zone holding `name`: the configured one, else the longest suffix the account has.
    async fn zone_for(&self, name: &str) -> Result<String, DnsError> {
        let lookup = |candidate: String| async move {
            let params = [("DomainName", candidate.clone()), ("PageSize", "1".into())];
            let what = format!("look up the domain {candidate}");
            let answer = self.call("DescribeDomainRecords", &params, &what).await?;
            found(candidate, answer, |code| {
                code.starts_with("InvalidDomainName") || code.contains("NotExist")
            })
        };
        self.zones.zone_for(PROVIDER, name, lookup).await
    }
}

#[async_trait]
impl DnsProvider for AlidnsDns {
    async fn set_txt(&self, name: &str, value: &str) -> Result<(), DnsError> {
        let zone = self.zone_for(name).await?;
        let result = self
            .call(
                "AddDomainRecord",
                &[
                    ("DomainName", zone.clone()),
                    ("RR", relative(name, &zone)),
                    ("Type", "TXT".into()),
                    ("Value", value.to_string()),
                    ("TTL", "600".into()),
                ],
                &format!("create the TXT record {name}"),
            )
            .await?
            .map_err(|e| e.refused)?;
        if let Some(id) = result.get("RecordId").and_then(Value::as_str) {
            self.records.remember(name, value, id.to_string());
        }
        Ok(())
    }

    async fn clear_txt(&self, name: &str, value: &str) -> Result<(), DnsError> {
        let zone = self.zone_for(name).await?;
        let rr = relative(name, &zone);
        let ids = match self.records.take(name, value) {
            Some(id) => vec![id],
            None => {
                let result = self
                    .call(
                        "DescribeDomainRecords",
                        &[
                            ("DomainName", zone.clone()),
                            ("RRKeyWord", rr.clone()),
                            ("Type", "TXT".into()),
                        ],
                        &format!("list the TXT records {name}"),
                    )
                    .await?
                    .map_err(|e| e.refused)?;
                result
                    .pointer("/DomainRecords/Record")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|r| r.get("RR").and_then(Value::as_str) == Some(rr.as_str()))
                    .filter(|r| txt_is(r.get("Value").and_then(Value::as_str), value))
                    .filter_map(|r| r.get("RecordId").and_then(Value::as_str).map(String::from))
                    .collect()
            }
        };
        for id in ids {
            self.call(
                "DeleteDomainRecord",
                &[("RecordId", id)],
                &format!("delete the TXT record {name}"),
            )
            .await?
            .map_err(|e| e.refused)?;
        }
        Ok(())
    }
}
