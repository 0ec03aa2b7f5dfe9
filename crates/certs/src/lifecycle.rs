//! Issue, renew, revoke: the state directory, the CA and the host put together.
//!
//! A renewal only happens when due; a failure is recorded (`certs status` shows it) and the
//! certificate in place stays there. Installing goes through the engine, so an unchanged
//! certificate costs one round trip to read the files and never reloads anything.

use std::time::Duration;

use common::engine::{self, Mode, Options};
use common::report::{HostOutcome, HostReport};
use common::transport::Transport;
use time::OffsetDateTime;

use crate::CertsError;
use crate::acme::{AcmeClient, AcmeError};
use crate::challenge::credentials::key_pair;
use crate::challenge::{
    ALIDNS_KEYS, AlidnsDns, ChallengeSolver, ChalltestsrvDns, CloudflareDns, DNSPOD_KEYS,
    Dns01Solver, DnsProvider, DnspodDns, Http01Solver,
};
use crate::declaration::{CertificateDeclaration, ChallengeConfig, DnsProviderKind};
use crate::info::CertInfo;
use crate::info::rfc3339;
use crate::install::install_resources;
use crate::renewal::{Decision, RenewalWindow, renewal_due, rng_for};
use crate::state::{AriRecord, CertRecord, StateDir, StoredCertificate};

/// How `issue`/`renew` run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub state: StateDir,
    /// Engine options for installing (check mode shows the change and writes nothing).
    pub engine: Options,
    /// A Retry-After up to this long is waited out; longer ones fail with the time.
    pub max_wait: Duration,
    /// The current time; tests set it to force expiry.
    pub now: Option<OffsetDateTime>,
}

impl Settings {
    pub fn new(state: StateDir) -> Self {
        Self {
            state,
            engine: Options::default(),
            max_wait: Duration::from_secs(30),
            now: None,
        }
    }

    pub fn now(&self) -> OffsetDateTime {
        self.now.unwrap_or_else(OffsetDateTime::now_utc)
    }
}

/// What `issue`/`renew` did for one certificate.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub host: String,
    pub name: String,
    /// A new certificate was obtained.
    pub renewed: bool,
    /// Why it was (or was not) renewed.
    pub reason: String,
    /// Check mode: why a new certificate would be obtained (nothing was asked of the CA).
    pub pending: Option<String>,
    /// The certificate now current.
    pub info: CertInfo,
    pub next_renewal: Option<OffsetDateTime>,
    /// The engine's report of installing it on the host.
    pub install: HostReport,
}

impl Outcome {
    /// Whether installing changed anything on the host (and so ran the reload hook).
    pub fn installed_changes(&self) -> bool {
        matches!(self.install.outcome, HostOutcome::Changed)
    }
}

/// What the stored certificate means for the declaration, before dates are considered.
enum Current {
    /// A new certificate is needed, whatever the dates say.
    Replace(String),
    /// The certificate fits the declaration; dates decide.
    Fits(CertInfo),
}

fn assess(
    declaration: &CertificateDeclaration,
    stored: Option<&StoredCertificate>,
    record: &CertRecord,
) -> Current {
    let Some(stored) = stored else {
        return Current::Replace("there is no certificate yet".into());
    };
    let info = match CertInfo::from_pem(&stored.fullchain) {
        Ok(i) => i,
        Err(e) => return Current::Replace(format!("the stored certificate does not parse ({e})")),
    };
    let declared: Vec<String> = declaration.domains.iter().map(|d| d.to_string()).collect();
    let self_signed = matches!(declaration.challenge, ChallengeConfig::SelfSigned);
    let mut expected = declared.clone();
    if self_signed && !expected.iter().any(|n| n == "localhost") {
        expected.insert(0, "localhost".into());
    }
    if !info.covers_exactly(&expected) {
        return Current::Replace(format!(
            "the names changed: the certificate has {}, the inventory declares {}",
            info.names.join(", "),
            declared.join(", ")
        ));
    }
    if self_signed != info.is_self_signed() {
        return Current::Replace(if self_signed {
            "the inventory now asks for a self-signed certificate".into()
        } else {
            "the current certificate is self-signed; the inventory asks for a CA".into()
        });
    }
    if !self_signed
        && record
            .directory_url
            .as_deref()
            .is_some_and(|u| u != declaration.ca.directory_url)
    {
        return Current::Replace(format!(
            "the CA changed to {}",
            declaration.ca.directory_url
        ));
    }
    if let Some(revoked) = record.revoked {
        return Current::Replace(format!("it was revoked at {}", rfc3339(revoked)));
    }
    Current::Fits(info)
}

/// The offline part of a renewal check: decide from the stored certificate, the record and
/// the cached ARI window. `Ok(None)` means the CA's ARI window must be (re)fetched first.
pub fn renewal_check(
    declaration: &CertificateDeclaration,
    state: &StateDir,
    now: OffsetDateTime,
) -> Result<RenewalCheck, CertsError> {
    let stored = state.load_certificate(&declaration.host, &declaration.name)?;
    let record = state.load_record(&declaration.host, &declaration.name)?;
    let info = match assess(declaration, stored.as_ref(), &record) {
        Current::Replace(reason) => {
            return Ok(RenewalCheck {
                decision: Decision::Due { reason },
                info: None,
                needs_ari: false,
                record,
                stored,
            });
        }
        Current::Fits(info) => info,
    };
    let acme = !matches!(declaration.challenge, ChallengeConfig::SelfSigned);
    let cached = record
        .ari
        .as_ref()
        .filter(|a| Some(a.cert_id.as_str()) == info.ari_id.as_deref() && now < a.next_check);
    let needs_ari =
        acme && info.ari_id.is_some() && cached.is_none() && record.ari_offered != Some(false);
    let window = cached.map(|a| a.window);
    let decision = renewal_due(&info, window, now, &mut rng_for(&info));
    Ok(RenewalCheck {
        decision,
        info: Some(info),
        needs_ari,
        record,
        stored,
    })
}

/// The result of [`renewal_check`].
#[derive(Debug, Clone)]
pub struct RenewalCheck {
    pub decision: Decision,
    pub info: Option<CertInfo>,
    /// The cached ARI window is missing or stale and the CA may offer one.
    pub needs_ari: bool,
    pub record: CertRecord,
    pub stored: Option<StoredCertificate>,
}

/// Obtain a certificate when there is none or the declaration changed, then install it.
pub async fn issue(
    declaration: &CertificateDeclaration,
    transport: &dyn Transport,
    settings: &Settings,
) -> Result<Outcome, CertsError> {
    run(declaration, transport, settings, Trigger::Issue).await
}

/// Renew when due (or always with `force`), then make sure the current certificate is
/// installed. A second call right after does nothing.
pub async fn renew(
    declaration: &CertificateDeclaration,
    transport: &dyn Transport,
    settings: &Settings,
    force: bool,
) -> Result<Outcome, CertsError> {
    let trigger = if force {
        Trigger::Force
    } else {
        Trigger::WhenDue
    };
    run(declaration, transport, settings, trigger).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Issue,
    WhenDue,
    Force,
}

async fn run(
    declaration: &CertificateDeclaration,
    transport: &dyn Transport,
    settings: &Settings,
    trigger: Trigger,
) -> Result<Outcome, CertsError> {
    let (host, name) = (&declaration.host, &declaration.name);
    let state = &settings.state;
    let _lock = state.lock(host, name)?;
    let now = settings.now();
    let check = renewal_check(declaration, state, now)?;
    let mut record = check.record.clone();
    let mut client: Option<AcmeClient> = None;

    let mut decision = check.decision.clone();
    if trigger == Trigger::WhenDue
        && check.needs_ari
        && !decision.is_due()
        && settings.engine.mode == Mode::Apply
    {
        let info = check
            .info
            .as_ref()
            .expect("needs_ari implies a certificate");
        match refresh_ari(declaration, settings, info, &mut record, &mut client).await {
            Ok(Some(window)) => {
                decision = renewal_due(info, Some(window), now, &mut rng_for(info));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(host = %host, certificate = %name, error = %e, "could not fetch the ARI window; using the lifetime rule");
            }
        }
    }

    let obtain = match trigger {
        Trigger::Force => Some("renewal forced".to_string()),
        Trigger::Issue if check.info.is_none() => Some(decision.reason().to_string()),
        Trigger::Issue if check.info.as_ref().is_some_and(|i| i.not_after <= now) => {
            Some(decision.reason().to_string())
        }
        Trigger::Issue => None,
        Trigger::WhenDue if decision.is_due() => Some(decision.reason().to_string()),
        Trigger::WhenDue => None,
    };

    let checking = settings.engine.mode == Mode::Check;
    let mut pending = None;
    let (certificate, renewed, reason) = match obtain {
        Some(reason) if checking => match check.stored.clone() {
            // Check mode: no CA, no state written; show the current install's drift.
            Some(c) => {
                pending = Some(reason.clone());
                (
                    c,
                    false,
                    format!("would obtain a new certificate: {reason}"),
                )
            }
            None => {
                return Err(CertsError::WouldObtain {
                    host: host.clone(),
                    name: name.clone(),
                    reason,
                });
            }
        },
        Some(reason) => {
            if let Some(until) = record.retry_not_before.filter(|t| *t > now)
                && trigger != Trigger::Force
            {
                return Err(CertsError::RetryLater {
                    host: host.clone(),
                    name: name.clone(),
                    until,
                });
            }
            record.last_attempt = Some(now);
            let replaces = check.info.as_ref().and_then(|i| i.ari_id.clone());
            match obtain_certificate(
                declaration,
                transport,
                settings,
                &mut client,
                replaces.as_deref(),
            )
            .await
            {
                Ok(c) => {
                    state.save_certificate(host, name, &c)?;
                    record.last_success = Some(now);
                    record.last_error = None;
                    record.retry_not_before = None;
                    record.revoked = None;
                    record.ari = None;
                    record.directory_url = match declaration.challenge {
                        ChallengeConfig::SelfSigned => None,
                        _ => Some(declaration.ca.directory_url.clone()),
                    };
                    (c, true, reason)
                }
                Err(e) => {
                    record.last_error = Some(common::error::error_chain(&e));
                    if let CertsError::Acme(a) = &e {
                        record.retry_not_before = a.retry_after();
                    }
                    state.save_record(host, name, &record)?;
                    return Err(e);
                }
            }
        }
        None => match check.stored.clone() {
            Some(c) => (c, false, decision.reason().to_string()),
            None => unreachable!("no certificate is always a reason to obtain one"),
        },
    };

    if !crate::install::key_matches(&certificate).unwrap_or(false) {
        let e = CertsError::KeyMismatch {
            path: state.cert_dir(host, name).display().to_string(),
        };
        if !checking {
            record.last_error = Some(e.to_string());
            state.save_record(host, name, &record)?;
        }
        return Err(e);
    }
    let info = CertInfo::from_pem(&certificate.fullchain).map_err(|source| {
        CertsError::StoredCertificate {
            path: state.cert_dir(host, name).display().to_string(),
            source,
        }
    })?;
    if renewed && client.is_some() {
        // The CA is at hand: learn its renewal window (or that it has none) now, so that
        // the next checks need no network.
        if let Err(e) = refresh_ari(declaration, settings, &info, &mut record, &mut client).await {
            tracing::warn!(host = %host, certificate = %name, error = %e, "could not fetch the ARI window");
        }
    }
    let next = renewal_due(
        &info,
        record
            .ari
            .as_ref()
            .filter(|a| Some(a.cert_id.as_str()) == info.ari_id.as_deref())
            .map(|a| a.window),
        now,
        &mut rng_for(&info),
    );
    record.next_renewal = next.next_renewal();

    let report = engine::converge(
        transport,
        &install_resources(declaration, &certificate),
        &settings.engine,
    )
    .await;
    if let Some(error) = &report.error {
        let e = CertsError::Install {
            host: host.clone(),
            details: error.clone(),
        };
        if !checking {
            record.last_error = Some(e.to_string());
            state.save_record(host, name, &record)?;
        }
        return Err(e);
    }
    if !checking {
        state.save_record(host, name, &record)?;
    }
    Ok(Outcome {
        host: host.clone(),
        name: name.clone(),
        pending,
        renewed,
        reason,
        info,
        next_renewal: record.next_renewal,
        install: report,
    })
}

async fn connect<'c>(
    declaration: &CertificateDeclaration,
    settings: &Settings,
    client: &'c mut Option<AcmeClient>,
) -> Result<&'c AcmeClient, AcmeError> {
    if client.is_none() {
        *client = Some(
            AcmeClient::connect(
                &declaration.ca,
                declaration.email.as_deref(),
                &settings.state,
            )
            .await?,
        );
    }
    Ok(client.as_ref().expect("just connected"))
}

async fn refresh_ari(
    declaration: &CertificateDeclaration,
    settings: &Settings,
    info: &CertInfo,
    record: &mut CertRecord,
    client: &mut Option<AcmeClient>,
) -> Result<Option<RenewalWindow>, AcmeError> {
    let client = connect(declaration, settings, client).await?;
    let now = settings.now();
    match client.renewal_window(info.ari_id.as_deref()).await? {
        Some((window, retry)) => {
            let retry = retry.clamp(Duration::from_secs(3600), Duration::from_secs(86_400));
            record.ari_offered = Some(true);
            record.ari = Some(AriRecord {
                cert_id: info.ari_id.clone().unwrap_or_default(),
                window,
                fetched: now,
                next_check: now + retry,
            });
            Ok(Some(window))
        }
        None => {
            record.ari_offered = Some(false);
            Ok(None)
        }
    }
}

/// A self-signed certificate, or one from the CA (waiting out a short Retry-After).
async fn obtain_certificate(
    declaration: &CertificateDeclaration,
    transport: &dyn Transport,
    settings: &Settings,
    client: &mut Option<AcmeClient>,
    replaces: Option<&str>,
) -> Result<StoredCertificate, CertsError> {
    if matches!(declaration.challenge, ChallengeConfig::SelfSigned) {
        return crate::selfsigned::self_signed(declaration, settings.now()).map_err(|source| {
            CertsError::SelfSigned {
                name: declaration.name.clone(),
                source,
            }
        });
    }
    let Some(solver) = solver_for(declaration, transport)? else {
        unreachable!("only self-signed declarations have no solver");
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = async {
            let c = connect(declaration, settings, client).await?;
            c.order(declaration, solver.as_ref(), replaces).await
        }
        .await;
        match result {
            Err(AcmeError::RateLimited {
                retry_after: Some(at),
                ..
            }) if attempt < 3 && crate::acme::until(at).is_some_and(|d| d <= settings.max_wait) => {
                let wait = crate::acme::until(at).unwrap_or_default();
                tracing::info!(
                    seconds = wait.as_secs_f32(),
                    "the CA asked to wait; waiting"
                );
                tokio::time::sleep(wait).await;
            }
            other => return other.map_err(CertsError::Acme),
        }
    }
}

/// The challenge solver a declaration asks for (`None` for self-signed certificates).
pub fn solver_for<'t>(
    declaration: &CertificateDeclaration,
    transport: &'t dyn Transport,
) -> Result<Option<Box<dyn ChallengeSolver + 't>>, CertsError> {
    match &declaration.challenge {
        ChallengeConfig::Http01 { port, webroot } => {
            Ok(Some(Box::new(Http01Solver::new(transport, *port, webroot))))
        }
        ChallengeConfig::Dns01(dns) => {
            let provider: Box<dyn DnsProvider> = match dns.provider {
                DnsProviderKind::Cloudflare => Box::new(CloudflareDns::from_env(
                    &dns.api_url,
                    dns.token_env.as_deref().unwrap_or("CLOUDFLARE_API_TOKEN"),
                    dns.zone_id.clone(),
                )?),
                DnsProviderKind::Challtestsrv => Box::new(ChalltestsrvDns::new(&dns.api_url)?),
                DnsProviderKind::Alidns => Box::new(AlidnsDns::new(
                    &dns.api_url,
                    key_pair(ALIDNS_KEYS, dns.credentials_file.as_deref())?,
                    dns.zone_id.clone(),
                )?),
                DnsProviderKind::Dnspod => Box::new(DnspodDns::new(
                    &dns.api_url,
                    key_pair(DNSPOD_KEYS, dns.credentials_file.as_deref())?,
                    dns.zone_id.clone(),
                )?),
            };
            Ok(Some(Box::new(Dns01Solver::new(
                provider,
                Duration::from_secs(dns.propagation_seconds),
            ))))
        }
        ChallengeConfig::SelfSigned => Ok(None),
    }
}

/// Revoke the current certificate at its CA; the next `renew` obtains a new one.
pub async fn revoke(
    declaration: &CertificateDeclaration,
    settings: &Settings,
    reason: Option<instant_acme::RevocationReason>,
) -> Result<(), CertsError> {
    let (host, name) = (&declaration.host, &declaration.name);
    let state = &settings.state;
    let _lock = state.lock(host, name)?;
    let stored = state
        .load_certificate(host, name)?
        .ok_or_else(|| CertsError::NoCertificate {
            host: host.clone(),
            name: name.clone(),
        })?;
    let der = first_der(&stored.fullchain).ok_or_else(|| CertsError::StoredCertificate {
        path: state.cert_dir(host, name).display().to_string(),
        source: crate::info::CertParseError::NoCertificate,
    })?;
    if matches!(declaration.challenge, ChallengeConfig::SelfSigned) {
        return Err(CertsError::SelfSignedRevoke { name: name.clone() });
    }
    let client = AcmeClient::connect(&declaration.ca, declaration.email.as_deref(), state).await?;
    client.revoke(&der, reason).await?;
    let mut record = state.load_record(host, name)?;
    record.revoked = Some(settings.now());
    record.next_renewal = None;
    state.save_record(host, name, &record)?;
    Ok(())
}

fn first_der(pem: &[u8]) -> Option<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(pem)
        .flatten()
        .find(|b| b.label == "CERTIFICATE")
        .map(|b| b.contents)
}
