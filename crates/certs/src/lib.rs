//! TLS certificates for provisioned hosts: ACME issuance (instant-acme), renewal only when
//! due (ARI, else a third of the lifetime left, with jitter), installation into the app's
//! `ssl/` through the engine with a reload only on change, and a renewal timer.
//!
//! Replaces seeds/002 §5 (certbot --standalone, a copy into ssl/, a daily cron restarting
//! nginx): HTTP-01 works whether port 80 is free or served by nginx (never stopped), DNS-01
//! covers wildcards, failures keep the old certificate and are recorded, and Retry-After is
//! honored.
//!
//! Entry points for the CLI: [`check`] (the inventory's `certs` section, at load),
//! [`declaration_from_vars`], [`issue`], [`renew`], [`status`],
//! [`revoke`], [`schedule_resources`] (plus [`cron_line`]) and, on the host itself,
//! [`load_local_declarations`].

#![deny(unreachable_pub)]

mod acme;
mod challenge;
pub mod declaration;
mod host_copy;
mod http;
pub mod info;
mod install;
mod lifecycle;
mod renewal;
mod schedule;
mod selfsigned;
mod state;
mod status;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use acme::{AcmeClient, AcmeError, ChallengeFailure};
pub use challenge::{
    AlidnsDns, ChallengeError, ChallengeSolver, CloudflareDns, Dns01Solver, DnsError, DnsProvider,
    DnspodDns, KeyPair, PendingChallenge, PortListener, PortUse,
};
pub use declaration::{
    ACME_WEBROOT, CaConfig, CertificateDeclaration, ChallengeConfig, DeclarationError,
    DnsProviderConfig, DnsProviderKind, EabConfig, KeyType, NGINX_ACME_LOCATION, check,
    declaration_from_vars,
};
pub use host_copy::{BinaryError, HostCopyError, HostStateCopy, InstalledBinary};

pub use http::TlsSetupError;
pub use info::{CertInfo, CertParseError};
pub use install::{KeyCheckError, Placeholder, install_resources, key_matches};
pub use lifecycle::{
    Outcome, RenewalCheck, Settings, issue, renew, renewal_check, revoke, solver_for,
};
pub use renewal::{Decision, RenewalWindow};
pub use schedule::{
    LOCAL_CONFIG_DIR, LocalConfigError, ScheduleError, ScheduleOptions, cron_line,
    load_local_declarations, schedule_resources, secret_environment, service_unit,
};

pub use state::{
    AriRecord, CertLock, CertRecord, DEFAULT_STATE_DIR, StateDir, StateError, StoredCertificate,
};
pub use status::{CertStatus, render_table, status};

pub use instant_acme::RevocationReason;
/// The time crate, for callers setting [`Settings::now`].
pub use time;

/// Everything that can go wrong with a certificate.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error(transparent)]
    Declaration(#[from] DeclarationError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}")]
    Acme(#[from] AcmeError),
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error("installing the certificate on {host} failed: {details}")]
    Install { host: String, details: String },
    #[error(
        "{host}/{name}: the CA asked not to retry before {}; the current certificate stays in place (use --force to try anyway)",
        info::rfc3339(*.until)
    )]
    RetryLater {
        host: String,
        name: String,
        until: time::OffsetDateTime,
    },
    #[error("the stored certificate in {path} does not parse")]
    StoredCertificate {
        path: String,
        #[source]
        source: CertParseError,
    },
    #[error("the private key in {path} does not belong to its certificate; not installing it")]
    KeyMismatch { path: String },
    #[error(
        "{host}/{name}: would obtain a certificate ({reason}); check mode asks nothing of the CA"
    )]
    WouldObtain {
        host: String,
        name: String,
        reason: String,
    },
    #[error("{host}/{name}: there is no certificate to revoke")]
    NoCertificate { host: String, name: String },
    #[error("{name} is self-signed: there is no CA to revoke it at")]
    SelfSignedRevoke { name: String },
    #[error("generating the self-signed certificate {name} failed")]
    SelfSigned {
        name: String,
        #[source]
        source: rcgen::Error,
    },
}
