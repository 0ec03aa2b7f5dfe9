//! Answering the CA's challenges: HTTP-01 on the target host, DNS-01 through a provider API.
//!
//! A solver gets every challenge of an order at once, so that putting the answers in place
//! costs one round trip to the host (or one API call per record), and takes them away again
//! afterwards — also when the order failed.

pub(crate) mod alidns;
pub(crate) mod credentials;
pub(crate) mod dns;
pub(crate) mod dnspod;
pub(crate) mod http01;
pub(crate) mod signing;
mod zones;

use async_trait::async_trait;
use instant_acme::ChallengeType;

pub(crate) use alidns::ALIDNS_KEYS;
pub use alidns::AlidnsDns;
pub(crate) use credentials::KeyNames;
pub use credentials::KeyPair;
pub(crate) use dns::ChalltestsrvDns;
pub use dns::{CloudflareDns, Dns01Solver, DnsError, DnsProvider};
pub(crate) use dnspod::DNSPOD_KEYS;
pub use dnspod::DnspodDns;
pub(crate) use http01::Http01Solver;
pub use http01::{PortListener, PortUse};

/// One challenge to answer.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingChallenge {
    /// The identifier as ordered (`*.example.com` for a wildcard).
    pub identifier: String,
    pub token: String,
    /// HTTP-01 response body.
    pub key_authorization: String,
    /// DNS-01 TXT value.
    pub dns_value: String,
}

impl std::fmt::Debug for PendingChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingChallenge")
            .field("identifier", &self.identifier)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl PendingChallenge {
    /// The name without a leading `*.`.
    pub(crate) fn base_name(&self) -> &str {
        self.identifier
            .strip_prefix("*.")
            .unwrap_or(&self.identifier)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChallengeError {
    #[error("could not prepare HTTP-01 answers on {host}")]
    Host {
        host: String,
        #[source]
        source: common::transport::TransportError,
    },
    #[error("reading who listens on port {port} of {host} failed")]
    Fact {
        host: String,
        port: u16,
        #[source]
        source: common::FactError,
    },
    #[error("HTTP-01 on {host}: {message}\n```\n{stderr}\n```")]
    Script {
        host: String,
        message: String,
        stderr: String,
    },
    #[error(
        "HTTP-01 on {host}: port {port} is served by {owner}, but {url} does not return the answer written to {webroot}; serve /.well-known/acme-challenge/ from {webroot} (the app's nginx template includes it; a container nginx needs `{webroot}:{webroot}:ro` mounted){got}"
    )]
    WebrootNotServed {
        host: String,
        port: u16,
        owner: String,
        url: String,
        webroot: String,
        got: String,
    },
    #[error("DNS-01: {0}")]
    Dns(#[from] DnsError),
}

/// Puts challenge answers in place and removes them.
#[async_trait]
pub trait ChallengeSolver: Send + Sync {
    fn challenge_type(&self) -> ChallengeType;

    /// Make every answer available to the CA.
    async fn deploy(&self, challenges: &[PendingChallenge]) -> Result<(), ChallengeError>;

    /// Remove what [`ChallengeSolver::deploy`] put in place (also after a failure).
    async fn cleanup(&self, challenges: &[PendingChallenge]) -> Result<(), ChallengeError>;
}
