//! The one seam between the engine and a host: run a script (files travel on its stdin,
//! written by the engine's put function; see `engine::build_apply_script`).
//!
//! Resources never see which transport is in use. Three implementations live here:
//! [`ssh::SshTransport`] (OpenSSH native multiplexing), [`local::LocalTransport`] (the tool
//! runs on the host it manages, e.g. from a renewal timer) and [`fake::FakeTransport`]
//! (records and replays calls for unit tests).

pub mod fake;
pub mod local;
pub mod retry;
pub mod ssh;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// What a remote script produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    /// Exit status; `-1` when the process was killed by a signal.
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.status == 0
    }

    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("could not connect to {host}: {reason}")]
    Connect { host: String, reason: String },
    /// Refused or reset at connect time, still after the retries (see [`retry`]).
    #[error("{host} refused the SSH connection{attempts}: {reason}\n{hint}", hint = retry::RATE_LIMIT_HINT)]
    Refused {
        host: String,
        reason: String,
        /// e.g. ` (4 attempts over 35 s)`.
        attempts: String,
    },
    #[error("host key of {host} is not trusted: {reason}")]
    HostKey { host: String, reason: String },
    #[error("connection to {host} was lost while running a command")]
    Disconnected {
        host: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("could not run a command on {host}")]
    Io {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} on {host} failed (exit status {status})\n```\n{stderr}\n```")]
    Remote {
        host: String,
        what: String,
        status: i32,
        stderr: String,
    },
    #[error(
        "script for {host} is {size} bytes, above the {limit}-byte argument limit; pass data on stdin"
    )]
    ScriptTooLarge {
        host: String,
        size: usize,
        limit: usize,
    },
    #[error("fresh SSH login to {host} failed: {reason}")]
    FreshLogin { host: String, reason: String },
    #[error("replay mismatch on {host}: {reason}")]
    Replay { host: String, reason: String },
}

/// Linux limits one argv string to 128 KiB (MAX_ARG_STRLEN); stay well below.
pub(crate) const MAX_SCRIPT_BYTES: usize = 100 * 1024;

/// Run shell on a host. Implementations must be cheap to share between tasks.
#[async_trait]
pub trait Transport: Send + Sync {
    /// A short human name for the host (the inventory name).
    fn host(&self) -> &str;

    /// The user this connection logged in as, when it logged in (SSH).
    fn login(&self) -> Option<&str> {
        None
    }

    /// Run `script` with `sh -c` as root (through `sudo -n` when the login user is not root),
    /// feeding `stdin` to it. One call is one round trip.
    async fn run(&self, script: &str, stdin: &[u8]) -> Result<ExecOutput, TransportError>;

    /// Whether a gather may fold the path probes into one command ([`crate::facts::fold`]):
    /// a host's shell answers any script; a fake that answers probe by probe says no.
    fn folds_probes(&self) -> bool {
        false
    }

    /// Prove that a brand-new login (not the existing multiplexed connection) still works.
    /// Used after changes that can cut access (sshd, firewall). Transports without a login
    /// (local, fake) succeed.
    async fn verify_fresh_login(&self) -> Result<(), TransportError> {
        Ok(())
    }

    /// Like [`Transport::verify_fresh_login`], to SSH port `port` (after an sshd port
    /// move). Once it succeeds, later fresh-login proofs of this connection use that port.
    async fn verify_fresh_login_on(&self, port: u16) -> Result<(), TransportError> {
        let _ = port;
        self.verify_fresh_login().await
    }

    /// Close the connection explicitly.
    async fn close(&self) -> Result<(), TransportError> {
        Ok(())
    }
}

/// Turn a non-zero exit into [`TransportError::Remote`] with the stderr verbatim.
pub(crate) fn expect_success(
    host: &str,
    what: &str,
    out: ExecOutput,
) -> Result<ExecOutput, TransportError> {
    if out.success() {
        Ok(out)
    } else {
        Err(TransportError::Remote {
            host: host.to_string(),
            what: what.to_string(),
            status: out.status,
            stderr: out.stderr_lossy().trim_end().to_string(),
        })
    }
}
