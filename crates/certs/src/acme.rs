//! The ACME conversation (instant-acme): the account, orders, challenges, ARI, revocation.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, ExternalAccountKey, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy, RevocationReason, RevocationRequest,
};
use time::OffsetDateTime;

use crate::challenge::{ChallengeError, ChallengeSolver, PendingChallenge};
use crate::declaration::{CaConfig, CertificateDeclaration, ChallengeConfig, EabConfig};
use crate::http::{AcmeHttp, Observations, TlsSetupError};
use crate::info::rfc3339;
use crate::renewal::RenewalWindow;
use crate::state::{StateDir, StateError, StoredAccount, StoredCertificate};

/// How often and how long order state is polled.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(50))
    .backoff(1.5)
    .timeout(Duration::from_secs(120));

/// A challenge the CA could not validate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeFailure {
    pub identifier: String,
    pub challenge: String,
    /// Where the CA looked (HTTP-01 URL or DNS-01 record name).
    pub target: String,
    /// The CA's explanation, verbatim.
    pub detail: String,
}

fn join_failures(failures: &[ChallengeFailure]) -> String {
    failures
        .iter()
        .map(|f| {
            format!(
                "\n  - {} ({}): the CA checked {}: {}",
                f.identifier, f.challenge, f.target, f.detail
            )
        })
        .collect()
}

fn retry_text(at: &Option<OffsetDateTime>) -> String {
    match at {
        Some(t) => {
            let wait = (*t - OffsetDateTime::now_utc()).whole_seconds().max(0);
            format!(
                "retry after {} (in {})",
                rfc3339(*t),
                crate::status::human_duration(wait)
            )
        }
        None => "no Retry-After given; wait before retrying".into(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error(
        "cannot reach the CA at {url}: {reason}; is it running and is certs.ca right? Nothing was changed"
    )]
    Unreachable { url: String, reason: String },
    #[error("the CA at {url} is rate limiting (HTTP {status}){detail}; {}", retry_text(.retry_after))]
    RateLimited {
        url: String,
        status: u16,
        retry_after: Option<OffsetDateTime>,
        detail: String,
    },
    #[error("{what} was refused by the CA: {problem}{hint}")]
    Refused {
        what: String,
        problem: String,
        hint: String,
    },
    #[error("validation failed for {}:{}", .failures.iter().map(|f| f.identifier.as_str()).collect::<Vec<_>>().join(", "), join_failures(.failures))]
    ChallengeFailed { failures: Vec<ChallengeFailure> },
    #[error("the CA offers no {wanted} challenge for {identifier} (it offers {offered})")]
    NoChallenge {
        identifier: String,
        wanted: String,
        offered: String,
    },
    #[error(
        "{identifier}: the authorization is {status} at the CA; it cannot be validated again in this order"
    )]
    Authorization { identifier: String, status: String },
    #[error("the CA does not offer the profile {profile:?} (it offers: {offered})")]
    UnknownProfile { profile: String, offered: String },
    #[error("the order is {status} after validation")]
    OrderState { status: String },
    #[error("EAB key for {kid}: {problem}")]
    Eab { kid: String, problem: String },
    #[error("the HTTPS client for the CA could not be set up")]
    Tls(#[from] TlsSetupError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Challenge(Box<ChallengeError>),
    #[error("generating the {key_type} certificate key failed")]
    Key {
        key_type: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("{what} failed")]
    Client {
        what: String,
        #[source]
        source: Box<instant_acme::Error>,
    },
}

impl From<ChallengeError> for AcmeError {
    fn from(e: ChallengeError) -> Self {
        AcmeError::Challenge(Box::new(e))
    }
}

impl AcmeError {
    /// When the CA asked to retry (rate limits).
    pub fn retry_after(&self) -> Option<OffsetDateTime> {
        match self {
            AcmeError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// An ACME account at one CA, ready to order.
pub struct AcmeClient {
    account: Account,
    http: AcmeHttp,
    directory_url: String,
    /// Whether the account was created by this call (rather than loaded).
    pub created: bool,
}

impl AcmeClient {
    /// Load the stored account for this CA, or create (and store, 0600) a new one.
    pub async fn connect(
        ca: &CaConfig,
        email: Option<&str>,
        state: &StateDir,
    ) -> Result<AcmeClient, AcmeError> {
        let http = AcmeHttp::new(crate::http::client(ca.root_pem.as_deref())?);
        let builder = || Account::builder_with_http(Box::new(http.clone()));
        if let Some(stored) = state.load_account(&ca.directory_url)? {
            let account = builder()
                .from_credentials(stored.credentials)
                .await
                .map_err(|e| classify(&http, "loading the ACME account", e))?;
            return Ok(AcmeClient {
                account,
                http,
                directory_url: ca.directory_url.clone(),
                created: false,
            });
        }
        let eab = ca.eab.as_ref().map(eab_key).transpose()?;
        let contact = email.map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let (account, credentials) = builder()
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                ca.directory_url.clone(),
                eab.as_ref(),
            )
            .await
            .map_err(|e| classify(&http, "creating the ACME account", e))?;
        state.save_account(&StoredAccount {
            directory_url: ca.directory_url.clone(),
            email: email.map(String::from),
            created: OffsetDateTime::now_utc(),
            credentials,
        })?;
        tracing::info!(ca = %ca.directory_url, "created an ACME account");
        Ok(AcmeClient {
            account,
            http,
            directory_url: ca.directory_url.clone(),
            created: true,
        })
    }

    pub fn directory_url(&self) -> &str {
        &self.directory_url
    }

    /// Profiles the CA offers (name → description).
    pub fn profiles(&self) -> Vec<(String, String)> {
        self.account
            .profiles()
            .map(|p| (p.name.to_string(), p.description.to_string()))
            .collect()
    }

    /// The CA's suggested renewal window (ARI) for a certificate, and when to ask again.
    /// `None` when the CA does not offer ARI or the certificate has no ARI id.
    pub async fn renewal_window(
        &self,
        ari_id: Option<&str>,
    ) -> Result<Option<(RenewalWindow, Duration)>, AcmeError> {
        let Some(id) = ari_id else {
            return Ok(None);
        };
        let Some((aki, serial)) = id.split_once('.') else {
            return Ok(None);
        };
        let cert_id = instant_acme::CertificateIdentifier {
            authority_key_identifier: aki.into(),
            serial: serial.into(),
        };
        self.http.clear();
        match self.account.renewal_info(&cert_id).await {
            Ok((info, retry)) => Ok(Some((
                RenewalWindow {
                    start: info.suggested_window.start,
                    end: info.suggested_window.end,
                },
                retry,
            ))),
            Err(instant_acme::Error::Unsupported(_)) => Ok(None),
            Err(e) => Err(classify(&self.http, "fetching the renewal window (ARI)", e)),
        }
    }

    /// Run one order to the end: challenges, finalization, download. The key is new.
    pub async fn order(
        &self,
        declaration: &CertificateDeclaration,
        solver: &dyn ChallengeSolver,
        replaces: Option<&str>,
    ) -> Result<StoredCertificate, AcmeError> {
        self.http.clear();
        let identifiers: Vec<Identifier> = declaration
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.as_str().to_string()))
            .collect();
        let mut new_order = NewOrder::new(&identifiers);
        let profiles = self.profiles();
        if let Some(profile) = &declaration.profile {
            if profiles.is_empty() {
                tracing::warn!(profile = %profile, ca = %self.directory_url, "the CA offers no profiles; ordering its default");
            } else if profiles.iter().any(|(name, _)| name == profile) {
                new_order = new_order.profile(profile);
            } else {
                let mut offered: Vec<&str> = profiles.iter().map(|(n, _)| n.as_str()).collect();
                offered.sort_unstable();
                return Err(AcmeError::UnknownProfile {
                    profile: profile.clone(),
                    offered: offered.join(", "),
                });
            }
        }
        let replaces_id = replaces.and_then(|r| {
            let (aki, serial) = r.split_once('.')?;
            Some(instant_acme::CertificateIdentifier {
                authority_key_identifier: aki.to_string().into(),
                serial: serial.to_string().into(),
            })
        });
        if let Some(id) = replaces_id {
            new_order = new_order.replaces(id);
        }
        let mut order = match self.account.new_order(&new_order).await {
            Ok(o) => o,
            Err(instant_acme::Error::Unsupported(_)) => {
                // No ARI after all: order without `replaces`.
                let mut plain = NewOrder::new(&identifiers);
                if let Some(p) = declaration
                    .profile
                    .as_deref()
                    .filter(|_| !profiles.is_empty())
                {
                    plain = plain.profile(p);
                }
                self.account
                    .new_order(&plain)
                    .await
                    .map_err(|e| classify(&self.http, "creating the order", e))?
            }
            Err(e) => return Err(classify(&self.http, "creating the order", e)),
        };

        let wanted = solver.challenge_type();
        let wanted_label = challenge_label(&wanted);
        let mut pending: Vec<PendingChallenge> = Vec::new();
        {
            let mut authorizations = order.authorizations();
            while let Some(authz) = authorizations.next().await {
                let mut authz =
                    authz.map_err(|e| classify(&self.http, "fetching an authorization", e))?;
                let identifier = authz.identifier().to_string();
                match authz.status {
                    AuthorizationStatus::Pending => {}
                    AuthorizationStatus::Valid => continue,
                    other => {
                        return Err(AcmeError::Authorization {
                            identifier,
                            status: format!("{other:?}").to_lowercase(),
                        });
                    }
                }
                let offered = authz
                    .challenges
                    .iter()
                    .map(|c| challenge_label(&c.r#type))
                    .collect::<Vec<_>>()
                    .join(", ");
                let Some(challenge) = authz.challenge(wanted.clone()) else {
                    return Err(AcmeError::NoChallenge {
                        identifier,
                        wanted: wanted_label,
                        offered,
                    });
                };
                let key_authorization = challenge.key_authorization();
                pending.push(PendingChallenge {
                    identifier,
                    token: challenge.token.clone(),
                    key_authorization: key_authorization.as_str().to_string(),
                    dns_value: key_authorization.dns_value(),
                });
            }
        }

        if !pending.is_empty() {
            let validated = self
                .validate(&mut order, declaration, solver, &pending, &wanted)
                .await;
            let cleaned = solver.cleanup(&pending).await;
            validated?;
            if let Err(e) = cleaned {
                tracing::warn!(error = %e, "challenge cleanup failed");
            }
        }

        let key = declaration
            .key_type
            .generate()
            .map_err(|source| AcmeError::Key {
                key_type: declaration.key_type.label(),
                source,
            })?;
        let names: Vec<String> = declaration
            .domains
            .iter()
            .map(|d| d.as_str().to_string())
            .collect();
        let mut params = rcgen::CertificateParams::new(names).map_err(|source| AcmeError::Key {
            key_type: declaration.key_type.label(),
            source,
        })?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .map_err(|source| AcmeError::Key {
                key_type: declaration.key_type.label(),
                source,
            })?;
        order
            .finalize_csr(csr.der())
            .await
            .map_err(|e| classify(&self.http, "finalizing the order", e))?;
        let chain = order
            .poll_certificate(&POLL)
            .await
            .map_err(|e| classify(&self.http, "downloading the certificate", e))?;
        Ok(StoredCertificate {
            fullchain: chain.into_bytes(),
            privkey: key.serialize_pem().into_bytes(),
        })
    }

    async fn validate(
        &self,
        order: &mut instant_acme::Order,
        declaration: &CertificateDeclaration,
        solver: &dyn ChallengeSolver,
        pending: &[PendingChallenge],
        wanted: &ChallengeType,
    ) -> Result<(), AcmeError> {
        solver.deploy(pending).await?;
        {
            let mut authorizations = order.authorizations();
            while let Some(authz) = authorizations.next().await {
                let mut authz =
                    authz.map_err(|e| classify(&self.http, "fetching an authorization", e))?;
                if authz.status != AuthorizationStatus::Pending {
                    continue;
                }
                if let Some(mut challenge) = authz.challenge(wanted.clone()) {
                    challenge
                        .set_ready()
                        .await
                        .map_err(|e| classify(&self.http, "starting validation", e))?;
                }
            }
        }
        let status = match order.poll_ready(&POLL).await {
            Ok(s) => s,
            Err(instant_acme::Error::Api(problem)) => {
                let failures = self
                    .challenge_failures(order, declaration, pending, wanted)
                    .await;
                if failures.is_empty() {
                    return Err(AcmeError::Refused {
                        what: "validating the order".into(),
                        hint: hint(problem.r#type.as_deref()),
                        problem: problem.to_string(),
                    });
                }
                return Err(AcmeError::ChallengeFailed { failures });
            }
            Err(e) => return Err(classify(&self.http, "waiting for validation", e)),
        };
        match status {
            OrderStatus::Ready | OrderStatus::Valid | OrderStatus::Processing => Ok(()),
            other => {
                let failures = self
                    .challenge_failures(order, declaration, pending, wanted)
                    .await;
                if failures.is_empty() {
                    Err(AcmeError::OrderState {
                        status: format!("{other:?}").to_lowercase(),
                    })
                } else {
                    Err(AcmeError::ChallengeFailed { failures })
                }
            }
        }
    }

    /// Refresh every authorization and collect the CA's reasons.
    async fn challenge_failures(
        &self,
        order: &mut instant_acme::Order,
        declaration: &CertificateDeclaration,
        pending: &[PendingChallenge],
        wanted: &ChallengeType,
    ) -> Vec<ChallengeFailure> {
        let mut failures = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(Ok(mut authz)) = authorizations.next().await {
            let Ok(state) = authz.refresh().await else {
                continue;
            };
            let identifier = state.identifier().to_string();
            for c in state.challenges.iter().filter(|c| &c.r#type == wanted) {
                let Some(error) = &c.error else { continue };
                let target = match &declaration.challenge {
                    ChallengeConfig::Http01 { port, .. } => {
                        let token = pending
                            .iter()
                            .find(|p| p.identifier == identifier)
                            .map(|p| p.token.as_str())
                            .unwrap_or(c.token.as_str());
                        let port = if *port == 80 {
                            String::new()
                        } else {
                            format!(":{port}")
                        };
                        format!(
                            "http://{}{port}/.well-known/acme-challenge/{token}",
                            identifier.trim_start_matches("*.")
                        )
                    }
                    _ => format!(
                        "the TXT record _acme-challenge.{}",
                        identifier.trim_start_matches("*.")
                    ),
                };
                failures.push(ChallengeFailure {
                    identifier: identifier.clone(),
                    challenge: challenge_label(wanted),
                    target,
                    detail: error.detail.clone().unwrap_or_else(|| error.to_string()),
                });
            }
        }
        failures
    }

    /// Revoke a certificate (DER) with this account.
    pub async fn revoke(
        &self,
        der: &[u8],
        reason: Option<RevocationReason>,
    ) -> Result<(), AcmeError> {
        self.http.clear();
        let certificate = rustls::pki_types::CertificateDer::from(der.to_vec());
        self.account
            .revoke(&RevocationRequest {
                certificate: &certificate,
                reason,
            })
            .await
            .map_err(|e| classify(&self.http, "revoking the certificate", e))
    }
}

fn challenge_label(t: &ChallengeType) -> String {
    match t {
        ChallengeType::Http01 => "http-01".into(),
        ChallengeType::Dns01 => "dns-01".into(),
        ChallengeType::TlsAlpn01 => "tls-alpn-01".into(),
        ChallengeType::DeviceAttest01 => "device-attest-01".into(),
        ChallengeType::Unknown(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn eab_key(eab: &EabConfig) -> Result<ExternalAccountKey, AcmeError> {
    let err = |problem: String| AcmeError::Eab {
        kid: eab.kid.clone(),
        problem,
    };
    let encoded = match eab.hmac_key.strip_prefix("env:") {
        Some(var) => std::env::var(var)
            .map_err(|_| err(format!("the environment variable {var} is not set")))?,
        None => eab.hmac_key.clone(),
    };
    let encoded = encoded.trim().trim_end_matches('=');
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|e| err(format!("not base64url: {e}")))?;
    Ok(ExternalAccountKey::new(eab.kid.clone(), &key))
}

/// Turn an instant-acme error into one that says what happened, using what the HTTP layer
/// saw (rate limiting with its Retry-After, an unreachable CA).
fn classify(http: &AcmeHttp, what: &str, error: instant_acme::Error) -> AcmeError {
    let seen: Observations = http.observations();
    if let Some(t) = seen.throttled {
        let detail = match (&error, &t.detail) {
            (instant_acme::Error::Api(p), _) if p.detail.is_some() => {
                format!(": {}", p.detail.clone().unwrap_or_default())
            }
            (_, Some(d)) => format!(": {d}"),
            _ => String::new(),
        };
        return AcmeError::RateLimited {
            url: t.url,
            status: t.status,
            retry_after: t.retry_after.map(OffsetDateTime::from),
            detail,
        };
    }
    if let Some((url, reason)) = seen.unreachable {
        return AcmeError::Unreachable { url, reason };
    }
    match error {
        instant_acme::Error::Api(problem) => AcmeError::Refused {
            what: what.to_string(),
            hint: hint(problem.r#type.as_deref()),
            problem: problem.to_string(),
        },
        source => AcmeError::Client {
            what: what.to_string(),
            source: Box::new(source),
        },
    }
}

/// What to do about the common ACME problem types.
fn hint(problem_type: Option<&str>) -> String {
    let kind = problem_type
        .and_then(|t| t.strip_prefix("urn:ietf:params:acme:error:"))
        .unwrap_or_default();
    match kind {
        "externalAccountRequired" => {
            "; this CA requires external account binding: set certs.eab_kid and certs.eab_hmac_key (the CA's account page gives both)"
        }
        "accountDoesNotExist" => {
            "; the CA does not know the stored account (was the CA reset?): remove its file under <state>/accounts/ to create a new one"
        }
        "rejectedIdentifier" => "; the CA will not issue for one of the names",
        "caa" => "; a CAA DNS record forbids this CA for one of the names",
        "unsupportedContact" | "invalidContact" => "; check certs.email",
        "userActionRequired" => "; the CA needs you to act (e.g. accept new terms); see its message",
        _ => "",
    }
    .to_string()
}

/// How long until `at`, if it is in the future.
pub(crate) fn until(at: OffsetDateTime) -> Option<Duration> {
    let now = SystemTime::now();
    SystemTime::from(at).duration_since(now).ok()
}
