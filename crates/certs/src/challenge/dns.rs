//! DNS-01: TXT records at `_acme-challenge.<name>` published through a provider's API.

use std::time::Duration;

use async_trait::async_trait;
use instant_acme::ChallengeType;
use serde_json::{Value, json};

use super::zones::{CreatedRecords, Zones, txt_is};
use super::{ChallengeError, ChallengeSolver, PendingChallenge};
use crate::http::{self, Hyper};

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("the DNS API token is missing: set the environment variable {env}")]
    MissingToken { env: String },
    #[error("{provider} needs {id} and {secret} {place}")]
    MissingCredentials {
        provider: &'static str,
        id: &'static str,
        secret: &'static str,
        place: String,
    },
    #[error("the DNS credentials file {path}: {problem}")]
    CredentialsFile { path: String, problem: String },
    #[error("cannot reach the DNS API: {0}")]
    Unreachable(String),
    #[error("{provider} refused to {what} (HTTP {status}): {message}")]
    Refused {
        provider: &'static str,
        what: String,
        status: u16,
        message: String,
    },
    #[error(
        "{provider}: no zone found for {name}; check that the token can read the zone, or set certs.dns_zone_id"
    )]
    NoZone {
        provider: &'static str,
        name: String,
    },
    #[error("the DNS API client could not be set up")]
    Tls(#[source] crate::http::TlsSetupError),
}

/// Publishes and removes TXT records. `name` is the full record name without a trailing dot
/// (`_acme-challenge.example.com`). Two values under one name (a name and its wildcard)
/// must both be published.
#[async_trait]
pub trait DnsProvider: Send + Sync {
    async fn set_txt(&self, name: &str, value: &str) -> Result<(), DnsError>;
    async fn clear_txt(&self, name: &str, value: &str) -> Result<(), DnsError>;
}

/// DNS-01 through a [`DnsProvider`], waiting `propagation` after publishing.
pub struct Dns01Solver {
    provider: Box<dyn DnsProvider>,
    propagation: Duration,
}

impl Dns01Solver {
    pub fn new(provider: Box<dyn DnsProvider>, propagation: Duration) -> Self {
        Self {
            provider,
            propagation,
        }
    }
}

fn record_name(c: &PendingChallenge) -> String {
    format!("_acme-challenge.{}", c.base_name())
}

#[async_trait]
impl ChallengeSolver for Dns01Solver {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::Dns01
    }

    async fn deploy(&self, challenges: &[PendingChallenge]) -> Result<(), ChallengeError> {
        for c in challenges {
            self.provider.set_txt(&record_name(c), &c.dns_value).await?;
        }
        if !challenges.is_empty() && !self.propagation.is_zero() {
            tokio::time::sleep(self.propagation).await;
        }
        Ok(())
    }

    async fn cleanup(&self, challenges: &[PendingChallenge]) -> Result<(), ChallengeError> {
        let mut first_error = None;
        for c in challenges {
            if let Err(e) = self.provider.clear_txt(&record_name(c), &c.dns_value).await {
                tracing::warn!(record = %record_name(c), error = %e, "could not remove a DNS-01 record");
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

/// Cloudflare's v4 API (token with Zone:DNS:Edit on the zone).
pub struct CloudflareDns {
    hyper: Hyper,
    api: String,
    token: String,
    /// Record name → zone id.
    zones: Zones,
    records: CreatedRecords<String>,
}

const CLOUDFLARE: &str = "Cloudflare";

impl CloudflareDns {
    /// `api` is the API base (`https://api.cloudflare.com/client/v4`, or a mock).
    pub fn new(api: &str, token: String, zone_id: Option<String>) -> Result<Self, DnsError> {
        Ok(Self {
            hyper: http::client(None).map_err(DnsError::Tls)?,
            api: api.trim_end_matches('/').to_string(),
            token,
            zones: Zones::new(zone_id),
            records: CreatedRecords::default(),
        })
    }

    /// Read the token from the environment variable `env`.
    pub fn from_env(api: &str, env: &str, zone_id: Option<String>) -> Result<Self, DnsError> {
        let token = std::env::var(env)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| DnsError::MissingToken { env: env.into() })?;
        Self::new(api, token.trim().to_string(), zone_id)
    }

    async fn call(
        &self,
        method: ::http::Method,
        path: &str,
        body: Option<Value>,
        what: &str,
    ) -> Result<Value, DnsError> {
        let url = format!("{}{path}", self.api);
        let rsp = http::send(
            &self.hyper,
            method,
            &url,
            &[("authorization", format!("Bearer {}", self.token))],
            body.map(|b| b.to_string().into_bytes()),
        )
        .await
        .map_err(DnsError::Unreachable)?;
        let parsed: Value = serde_json::from_slice(&rsp.body).unwrap_or(Value::Null);
        let success = parsed.get("success").and_then(Value::as_bool) == Some(true);
        if !rsp.status.is_success() || !success {
            let mut message: Vec<String> = parsed
                .get("errors")
                .and_then(Value::as_array)
                .map(|errors| {
                    errors
                        .iter()
                        .map(|e| {
                            format!(
                                "{} (code {})",
                                e.get("message").and_then(Value::as_str).unwrap_or("?"),
                                e.get("code").map(Value::to_string).unwrap_or_default()
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            if message.is_empty() {
                message.push(
                    String::from_utf8_lossy(&rsp.body)
                        .chars()
                        .take(300)
                        .collect(),
                );
            }
            if rsp.status == ::http::StatusCode::FORBIDDEN
                || rsp.status == ::http::StatusCode::UNAUTHORIZED
            {
                message.push("the token needs the Zone:DNS:Edit permission on this zone".into());
            }
            return Err(DnsError::Refused {
                provider: CLOUDFLARE,
                what: what.to_string(),
                status: rsp.status.as_u16(),
                message: message.join("; "),
            });
        }
        Ok(parsed.get("result").cloned().unwrap_or(Value::Null))
    }

    /// The zone holding `name`: the configured id, else the longest suffix Cloudflare knows.
    async fn zone_for(&self, name: &str) -> Result<String, DnsError> {
        let lookup = |candidate: String| async move {
            let path = format!("/zones?name={candidate}");
            let what = format!("look up the zone {candidate}");
            let result = self.call(::http::Method::GET, &path, None, &what).await?;
            Ok(result
                .as_array()
                .and_then(|zones| zones.first())
                .and_then(|z| z.get("id"))
                .and_then(Value::as_str)
                .map(str::to_string))
        };
        self.zones.zone_for(CLOUDFLARE, name, lookup).await
    }
}

#[async_trait]
impl DnsProvider for CloudflareDns {
    async fn set_txt(&self, name: &str, value: &str) -> Result<(), DnsError> {
        let zone = self.zone_for(name).await?;
        let result = self
            .call(
                ::http::Method::POST,
                &format!("/zones/{zone}/dns_records"),
                Some(json!({
                    "type": "TXT",
                    "name": name,
                    "content": value,
                    "ttl": 60,
                    "comment": "ACME challenge (provision); removed after validation",
                })),
                &format!("create the TXT record {name}"),
            )
            .await?;
        if let Some(id) = result.get("id").and_then(Value::as_str) {
            self.records.remember(name, value, id.to_string());
        }
        Ok(())
    }

    async fn clear_txt(&self, name: &str, value: &str) -> Result<(), DnsError> {
        let zone = self.zone_for(name).await?;
        let ids = match self.records.take(name, value) {
            Some(id) => vec![id],
            None => {
                let result = self
                    .call(
                        ::http::Method::GET,
                        &format!("/zones/{zone}/dns_records?type=TXT&name={name}"),
                        None,
                        &format!("list the TXT records {name}"),
                    )
                    .await?;
                result
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|r| txt_is(r.get("content").and_then(Value::as_str), value))
                    .filter_map(|r| r.get("id").and_then(Value::as_str).map(String::from))
                    .collect()
            }
        };
        for id in ids {
            self.call(
                ::http::Method::DELETE,
                &format!("/zones/{zone}/dns_records/{id}"),
                None,
                &format!("delete the TXT record {name}"),
            )
            .await?;
        }
        Ok(())
    }
}

/// Pebble's `pebble-challtestsrv` mock DNS, through its management API (`:8055`).
pub(crate) struct ChalltestsrvDns {
    hyper: Hyper,
    api: String,
}

impl ChalltestsrvDns {
    pub(crate) fn new(api: &str) -> Result<Self, DnsError> {
        Ok(Self {
            hyper: http::client(None).map_err(DnsError::Tls)?,
            api: api.trim_end_matches('/').to_string(),
        })
    }

    async fn post(&self, path: &str, body: Value, what: &str) -> Result<(), DnsError> {
        let url = format!("{}{path}", self.api);
        let rsp = http::send(
            &self.hyper,
            ::http::Method::POST,
            &url,
            &[],
            Some(body.to_string().into_bytes()),
        )
        .await
        .map_err(DnsError::Unreachable)?;
        if !rsp.status.is_success() {
            return Err(DnsError::Refused {
                provider: "pebble-challtestsrv",
                what: what.to_string(),
                status: rsp.status.as_u16(),
                message: String::from_utf8_lossy(&rsp.body).trim().to_string(),
            });
        }
        Ok(())
    }

    /// Answer A queries for `host` with `addresses` (used to point test names at a host).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) async fn add_a(&self, host: &str, addresses: &[String]) -> Result<(), DnsError> {
        self.post(
            "/add-a",
            json!({ "host": format!("{host}."), "addresses": addresses }),
            &format!("add an A record for {host}"),
        )
        .await
    }
}

#[async_trait]
impl DnsProvider for ChalltestsrvDns {
    async fn set_txt(&self, name: &str, value: &str) -> Result<(), DnsError> {
        self.post(
            "/set-txt",
            json!({ "host": format!("{name}."), "value": value }),
            &format!("set the TXT record {name}"),
        )
        .await
    }

    async fn clear_txt(&self, name: &str, _value: &str) -> Result<(), DnsError> {
        self.post(
            "/clear-txt",
            json!({ "host": format!("{name}.") }),
            &format!("clear the TXT record {name}"),
        )
        .await
    }
}
