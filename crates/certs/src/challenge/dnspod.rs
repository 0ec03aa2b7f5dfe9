//! DNSPod through Tencent Cloud API 3.0 (service `dnspod`, version 2021-03-23): CreateRecord,
//! DescribeRecordList and DeleteRecord, each signed with TC3-HMAC-SHA256.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::credentials::{KeyNames, KeyPair};
use super::zones::{ApiError, CreatedRecords, Zones, found, relative, txt_is};
use super::{DnsError, DnsProvider, signing};
use crate::http::{self, Hyper};

const PROVIDER: &str = "DNSPod (Tencent Cloud)";
const SERVICE: &str = "dnspod";
const VERSION: &str = "2021-03-23";
/// The content type sent and signed (the client adds it to every request with a body).
const CONTENT_TYPE: &str = "application/json";

/// Where the key pair comes from.
pub(crate) const DNSPOD_KEYS: KeyNames = KeyNames {
    provider: PROVIDER,
    id: "TENCENTCLOUD_SECRET_ID",
    secret: "TENCENTCLOUD_SECRET_KEY",
};

/// DNSPod, with a Tencent Cloud API key (CAM) allowed to manage the zone's records.
pub struct DnspodDns {
    hyper: Hyper,
    api: String,
    host: String,
    keys: KeyPair,
    zones: Zones,
    records: CreatedRecords<u64>,
}

impl DnspodDns {
    /// `api` is the API base (the public endpoint, or a mock); `zone` the domain holding the
    /// records, looked up from the name when `None`.
    pub fn new(api: &str, keys: KeyPair, zone: Option<String>) -> Result<Self, DnsError> {
        let api = api.trim_end_matches('/').to_string();
        let host = api
            .split_once("://")
            .map_or(api.as_str(), |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        Ok(Self {
            hyper: http::client(None).map_err(DnsError::Tls)?,
            api,
            host,
            keys,
            zones: Zones::new(zone),
            records: CreatedRecords::default(),
        })
    }

    async fn call(
        &self,
        action: &str,
        body: Value,
        what: &str,
    ) -> Result<Result<Value, ApiError>, DnsError> {
        let payload = body.to_string().into_bytes();
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let authorization = signing::tc3_authorization(
            &signing::Tc3Request {
                host: &self.host,
                content_type: CONTENT_TYPE,
                action,
                payload: &payload,
                timestamp,
                service: SERVICE,
            },
            &self.keys.id,
            &self.keys.secret,
        );
        let url = format!("{}/", self.api);
        let rsp = http::send(
            &self.hyper,
            ::http::Method::POST,
            &url,
            &[
                ("host", self.host.clone()),
                ("x-tc-action", action.to_string()),
                ("x-tc-timestamp", timestamp.to_string()),
                ("x-tc-version", VERSION.to_string()),
                ("authorization", authorization),
            ],
            Some(payload),
        )
        .await
        .map_err(DnsError::Unreachable)?;
        let parsed: Value = serde_json::from_slice(&rsp.body).unwrap_or(Value::Null);
        let response = parsed.get("Response").cloned().unwrap_or(Value::Null);
        let error = response.get("Error");
        if rsp.status.is_success() && error.is_none() && !response.is_null() {
            return Ok(Ok(response));
        }
        let code = error
            .and_then(|e| e.get("Code"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let keys_refused =
            code.starts_with("AuthFailure") || code.starts_with("UnauthorizedOperation");
        Ok(Err(ApiError::new(
            PROVIDER,
            what,
            &rsp,
            code,
            error.and_then(|e| e.get("Message")).and_then(Value::as_str),
            keys_refused.then_some((&DNSPOD_KEYS, "the key may manage DNSPod records")),
        )))
    }

    /// The TXT records under `subdomain` of `zone` (none is not an error).
    async fn txt_records(
        &self,
        zone: &str,
        subdomain: &str,
        what: &str,
    ) -> Result<Result<Vec<Value>, ApiError>, DnsError> {
        let answer = self
            .call(
                "DescribeRecordList",
                json!({ "Domain": zone, "Subdomain": subdomain, "RecordType": "TXT" }),
                what,
            )
            .await?;
        Ok(match answer {
            Ok(r) => Ok(r
                .get("RecordList")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()),
            Err(e) if e.code == "ResourceNotFound.NoDataOfRecord" => Ok(Vec::new()),
            Err(e) => Err(e),
        })
    }

    /// The zone holding `name`: the configured one, else the longest suffix the account has.
    async fn zone_for(&self, name: &str) -> Result<String, DnsError> {
        let lookup = |candidate: String| async move {
            let rr = relative(name, &candidate);
            let what = format!("look up the domain {candidate}");
            let answer = self.txt_records(&candidate, &rr, &what).await?;
            found(candidate, answer, |code| {
                code.contains("DomainNotExist") || code.contains("NoDataOfDomain")
            })
        };
        self.zones.zone_for(PROVIDER, name, lookup).await
    }
}

#[async_trait]
impl DnsProvider for DnspodDns {
    async fn set_txt(&self, name: &str, value: &str) -> Result<(), DnsError> {
        let zone = self.zone_for(name).await?;
        let result = self
            .call(
                "CreateRecord",
                json!({
                    "Domain": zone,
                    "SubDomain": relative(name, &zone),
                    "RecordType": "TXT",
                    "RecordLine": "默认",
                    "Value": value,
                    "TTL": 600,
                    "Remark": "ACME challenge (provision); removed after validation",
                }),
                &format!("create the TXT record {name}"),
            )
            .await?
            .map_err(|e| e.refused)?;
        if let Some(id) = result.get("RecordId").and_then(Value::as_u64) {
            self.records.remember(name, value, id);
        }
        Ok(())
    }

    async fn clear_txt(&self, name: &str, value: &str) -> Result<(), DnsError> {
        let zone = self.zone_for(name).await?;
        let ids = match self.records.take(name, value) {
            Some(id) => vec![id],
            None => self
                .txt_records(
                    &zone,
                    &relative(name, &zone),
                    &format!("list the TXT records {name}"),
                )
                .await?
                .map_err(|e| e.refused)?
                .iter()
                .filter(|r| txt_is(r.get("Value").and_then(Value::as_str), value))
                .filter_map(|r| r.get("RecordId").and_then(Value::as_u64))
                .collect(),
        };
        for id in ids {
            self.call(
                "DeleteRecord",
                json!({ "Domain": zone, "RecordId": id }),
                &format!("delete the TXT record {name}"),
            )
            .await?
            .map_err(|e| e.refused)?;
        }
        Ok(())
    }
}
