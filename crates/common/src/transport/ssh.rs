//! SSH through the system OpenSSH client with native multiplexing.
//!
//! The system `ssh` is used so `~/.ssh/config`, the agent and ProxyJump keep working. One
//! master connection per host (short control directory, idle ControlPersist, explicit
//! close); at most [`MAX_CHANNELS`] channels at once (sshd's MaxSessions is 10).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder, Stdio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use super::retry::{self, Backoff, ConnectFailure};
use super::{ExecOutput, MAX_SCRIPT_BYTES, Transport, TransportError};

/// Channels opened at once on one host's master connection.
pub(crate) const MAX_CHANNELS: usize = 8;

/// How long the first of two ports (the one the inventory moves sshd to) may take to answer.
const FIRST_PORT_TIMEOUT: Duration = Duration::from_secs(3);

/// Seconds an idle master connection survives if the tool dies without closing it.
const CONTROL_PERSIST_IDLE_SECS: usize = 60;

/// Sets `u` to the login shell's effective uid, read by a builtin from /proc (every run
/// starts with it, and `id` is a process), with `id -u` where /proc is not readable.
macro_rules! effective_uid {
    () => {
        r#"u=; while read -r k _ e _; do [ "$k" = Uid: ] && u=$e && break; done 2>/dev/null </proc/self/status; [ -n "$u" ] || u=$(id -u); "#
    };
}

/// Runs the script as root: in this shell when the login user is root (no second shell to
/// start and parse it: the script sees no positional parameters, as under `sh -c`), else
/// through `sudo -n`.
const ELEVATE: &str = concat!(
    effective_uid!(),
    r#"if [ "$u" = 0 ]; then __provision_script=$1; shift; unset u k e; eval "$__provision_script"; else exec sudo -n sh -c "$1"; fi"#
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostKeyPolicy {
    /// Unknown or changed keys are refused (the default).
    #[default]
    Strict,
    /// Trust a key on first use; a changed key is still refused.
    AcceptNew,
}

/// Where and how to connect; unset fields fall back to `~/.ssh/config` and ssh defaults.
#[derive(Debug, Clone, Default)]
pub struct SshTarget {
    /// Inventory name, used in messages.
    pub name: String,
    /// Address or `~/.ssh/config` alias.
    pub destination: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub host_key_policy: HostKeyPolicy,
    pub connect_timeout: Option<Duration>,
    /// Tried when `port` does not answer: the inventory's port while `port` is the one
    /// the inventory moves sshd to (`hardening.ssh_port`), which a fresh host does not
    /// listen on yet.
    pub fallback_port: Option<u16>,
}

impl SshTarget {
    /// Options of a fresh login probe (the master takes the same through the builder),
    /// on `port`.
    fn ssh_options_on(&self, port: Option<u16>) -> Vec<String> {
        let mut args = vec!["-o".into(), "BatchMode=yes".into()];
        args.push("-o".into());
        args.push(match self.host_key_policy {
            HostKeyPolicy::Strict => "StrictHostKeyChecking=yes".into(),
            HostKeyPolicy::AcceptNew => "StrictHostKeyChecking=accept-new".into(),
        });
        if let Some(t) = self.connect_timeout {
            args.push("-o".into());
            args.push(format!("ConnectTimeout={}", t.as_secs().max(1)));
        }
        if let Some(port) = port {
            args.push("-p".into());
            args.push(port.to_string());
        }
        if let Some(user) = &self.user {
            args.push("-l".into());
            args.push(user.clone());
        }
        if let Some(key) = &self.identity_file {
            args.extend(["-o".into(), "IdentitiesOnly=yes".into(), "-i".into()]);
            args.push(key.display().to_string());
        }
        if let Some(kh) = &self.known_hosts {
            args.push("-o".into());
            args.push(format!("UserKnownHostsFile={}", kh.display()));
        }
        args
    }
}

pub struct SshTransport {
    /// Its `port` is the one that answered.
    target: SshTarget,
    /// Set once a fresh login on a moved port succeeded: later proofs go there.
    proven_port: std::sync::Mutex<Option<u16>>,
    /// `None` once closed.
    session: std::sync::Mutex<Option<Arc<Session>>>,
    channels: Semaphore,
}

/// A short control directory per process (socket paths must stay under ~100 bytes):
/// `/tmp/provision-<uid>/<pid>`. Directories of processes that no longer exist (killed
/// runs) are removed; live ones, possibly in use by a parallel run, are left alone.
fn control_directory() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0);
    let top = PathBuf::from(format!("/tmp/provision-{uid}"));
    std::fs::create_dir_all(&top)?;
    std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o700))?;
    if let Ok(entries) = std::fs::read_dir(&top) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = top.join(std::process::id().to_string());
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

impl SshTransport {
    /// Open the master connection, retrying a refused or reset connection with the
    /// default [`Backoff`] (35 s in all, past UFW's 30 s rate-limit window).
    pub async fn connect(target: SshTarget) -> Result<Self, TransportError> {
        Self::connect_with(target, &Backoff::default()).await
    }

    /// [`SshTransport::connect`] with another backoff ([`Backoff::none`]: one attempt).
    ///
    /// With a `fallback_port` (the inventory moves sshd): one attempt on `target.port`,
    /// where a converged host listens, then the fallback with the backoff, saying which
    /// answered. A fresh host refuses the first port at once, so it costs no backoff.
    pub(crate) async fn connect_with(
        target: SshTarget,
        backoff: &Backoff,
    ) -> Result<Self, TransportError> {
        let Some(fallback) = target.fallback_port.filter(|p| Some(*p) != target.port) else {
            return Self::connect_once(target, backoff).await;
        };
        // A firewall drops (does not refuse) connections to a port it does not open, so
        // the first try gets a short timeout: a host that listens there answers at once.
        let first_try = SshTarget {
            connect_timeout: Some(
                target
                    .connect_timeout
                    .unwrap_or(FIRST_PORT_TIMEOUT)
                    .min(FIRST_PORT_TIMEOUT),
            ),
            ..target.clone()
        };
        let reason = match Self::connect_once(first_try, &Backoff::none()).await {
            Err(
                TransportError::Connect { reason, .. } | TransportError::Refused { reason, .. },
            ) => reason,
            other => return other,
        };
        let first = target.port.map(|p| p.to_string()).unwrap_or_default();
        let retry = SshTarget {
            port: Some(fallback),
            ..target
        };
        match Self::connect_once(retry, backoff).await {
            Ok(t) => {
                tracing::info!(
                    host = %t.target.name,
                    "reached on port {fallback} (the inventory's); port {first} (hardening.ssh_port) did not answer: {}",
                    reason.lines().next().unwrap_or_default()
                );
                Ok(t)
            }
            Err(TransportError::Connect {
                host,
                reason: second,
            }) => Err(TransportError::Connect {
                host,
                reason: format!(
                    "neither port {first} (hardening.ssh_port) nor port {fallback} (the inventory's) answered:\n  port {first}: {}\n  port {fallback}: {}",
                    reason.trim(),
                    second.trim()
                ),
            }),
            Err(e) => Err(e),
        }
    }

    /// The port this connection reached (`None`: ssh's default or `~/.ssh/config`).
    pub fn port(&self) -> Option<u16> {
        self.target.port
    }

    async fn connect_once(target: SshTarget, backoff: &Backoff) -> Result<Self, TransportError> {
        let connect_error = |reason: String| TransportError::Connect {
            host: target.name.clone(),
            reason,
        };
        // The master connection's ssh gets the destination after its options without `--`
        // (the openssh crate builds that command line), so a destination that ssh could read
        // as an option, or that is not one word, is refused before anything runs. Our own ssh
        // and ssh-keyscan command lines put `--` before it as well.
        if !destination_is_one_word(&target.destination) {
            return Err(connect_error(format!(
                "refusing destination {:?}: it must be a host name, an address or an ssh_config alias, not start with `-` or contain spaces or control characters",
                target.destination
            )));
        }
        let dir =
            control_directory().map_err(|e| connect_error(format!("control directory: {e}")))?;
        let mut builder = SessionBuilder::default();
        builder
            .control_directory(&dir)
            .clean_history_control_directory(false)
            .control_persist(ControlPersist::IdleFor(
                CONTROL_PERSIST_IDLE_SECS.try_into().expect("non-zero"),
            ))
            .known_hosts_check(match target.host_key_policy {
                HostKeyPolicy::Strict => KnownHosts::Strict,
                HostKeyPolicy::AcceptNew => KnownHosts::Add,
            })
            .server_alive_interval(Duration::from_secs(15));
        if let Some(t) = target.connect_timeout {
            builder.connect_timeout(t);
        }
        if let Some(user) = &target.user {
            builder.user(user.clone());
        }
        if let Some(port) = target.port {
            builder.port(port);
        }
        if let Some(key) = &target.identity_file {
            builder.keyfile(key);
        }
        if let Some(kh) = &target.known_hosts {
            builder.user_known_hosts_file(kh);
        }
        // Refused or reset at connect time (the host's SSH rate limit, sshd's
        // MaxStartups): a bounded backoff, then an error that names the likely cause.
        let (result, attempts) = retry::retry(
            backoff,
            None,
            || async {
                builder
                    .connect_mux(&target.destination)
                    .await
                    .map_err(|e| crate::error::error_chain(&e))
            },
            |text: &String| ConnectFailure::of(text).is_transient(),
            tokio::time::sleep,
        )
        .await;
        let session = match result {
            Ok(s) => s,
            Err(text) if ConnectFailure::of(&text).is_transient() => {
                return Err(TransportError::Refused {
                    host: target.name.clone(),
                    reason: text.trim().to_string(),
                    attempts: attempts.describe(),
                });
            }
            Err(text) => return Err(classify_connect_error(&target, &text).await),
        };
        Ok(Self {
            target,
            proven_port: std::sync::Mutex::new(None),
            session: std::sync::Mutex::new(Some(Arc::new(session))),
            channels: Semaphore::new(MAX_CHANNELS),
        })
    }

    pub fn target(&self) -> &SshTarget {
        &self.target
    }
}

/// Host-key problems get the fingerprint the server presented, so the operator can compare.
async fn classify_connect_error(target: &SshTarget, text: &str) -> TransportError {
    let key_problem = text.contains("Host key verification failed")
        || text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || text.contains("host key is known")
        || text.contains("Host key for");
    if !key_problem {
        return TransportError::Connect {
            host: target.name.clone(),
            reason: text.trim().to_string(),
        };
    }
    let changed = text.contains("CHANGED") || text.contains("has changed");
    let fingerprint = scan_fingerprint(target)
        .await
        .unwrap_or_else(|| "unavailable (ssh-keyscan failed)".into());
    let reason = if changed {
        format!(
            "the key it presented differs from the one in known_hosts (possible man-in-the-middle, or the host was rebuilt); presented: {fingerprint}. If the change is expected, remove the old entry with `ssh-keygen -R {}`",
            target.destination
        )
    } else {
        format!(
            "no known_hosts entry for {}; presented: {fingerprint}. Verify it out of band, then rerun with --accept-new-host-keys",
            target.destination
        )
    };
    TransportError::HostKey {
        host: target.name.clone(),
        reason,
    }
}

/// A destination ssh reads as a destination: non-empty, no leading `-`, no whitespace or
/// control characters.
pub(crate) fn destination_is_one_word(destination: &str) -> bool {
    !destination.is_empty()
        && !destination.starts_with('-')
        && !destination
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
}

async fn scan_fingerprint(target: &SshTarget) -> Option<String> {
    let mut scan = tokio::process::Command::new("ssh-keyscan");
    scan.args(["-T", "5", "-t", "ed25519,ecdsa,rsa"]);
    if let Some(port) = target.port {
        scan.args(["-p", &port.to_string()]);
    }
    let out = scan
        .arg("--")
        .arg(&target.destination)
        .output()
        .await
        .ok()?;
    let mut keygen = tokio::process::Command::new("ssh-keygen")
        .args(["-l", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    keygen.stdin.take()?.write_all(&out.stdout).await.ok()?;
    let fp = keygen.wait_with_output().await.ok()?;
    let text = String::from_utf8_lossy(&fp.stdout)
        .trim()
        .replace('\n', "; ");
    (!text.is_empty()).then_some(text)
}

#[async_trait]
impl Transport for SshTransport {
    fn host(&self) -> &str {
        &self.target.name
    }

    fn login(&self) -> Option<&str> {
        self.target.user.as_deref()
    }

    fn folds_probes(&self) -> bool {
        true
    }

    async fn run(&self, script: &str, stdin: &[u8]) -> Result<ExecOutput, TransportError> {
        if script.len() > MAX_SCRIPT_BYTES {
            return Err(TransportError::ScriptTooLarge {
                host: self.target.name.clone(),
                size: script.len(),
                limit: MAX_SCRIPT_BYTES,
            });
        }
        let _permit = self
            .channels
            .acquire()
            .await
            .expect("semaphore never closed");
        let io_error = |source: std::io::Error| TransportError::Io {
            host: self.target.name.clone(),
            source,
        };
        let lost = |e: openssh::Error| TransportError::Disconnected {
            host: self.target.name.clone(),
            source: Box::new(e),
        };
        let session = self
            .session
            .lock()
            .expect("not poisoned")
            .clone()
            .ok_or_else(|| TransportError::Connect {
                host: self.target.name.clone(),
                reason: "the connection was already closed".into(),
            })?;
        let mut child = Session::to_command(session, "sh")
            .arg("-c")
            .arg(ELEVATE)
            .arg("provision")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .await
            .map_err(lost)?;
        let mut input = child.stdin().take().expect("piped stdin");
        let mut out = child.stdout().take().expect("piped stdout");
        let mut err = child.stderr().take().expect("piped stderr");
        let feed = async {
            let r = input.write_all(stdin).await;
            drop(input);
            r
        };
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let (fed, read_out, read_err) = tokio::join!(
            feed,
            out.read_to_end(&mut stdout),
            err.read_to_end(&mut stderr)
        );
        read_out.map_err(io_error)?;
        read_err.map_err(io_error)?;
        let status = child.wait().await.map_err(lost)?;
        // A script may exit without reading all of its stdin; that is only an error when the
        // script itself failed, which its status reports.
        if let Err(e) = fed
            && status.success()
        {
            return Err(io_error(e));
        }
        Ok(ExecOutput {
            status: status.code().unwrap_or(-1),
            stdout,
            stderr,
        })
    }

    async fn verify_fresh_login(&self) -> Result<(), TransportError> {
        let port = (*self.proven_port.lock().expect("not poisoned")).or(self.target.port);
        self.fresh_login(port).await
    }

    async fn verify_fresh_login_on(&self, port: u16) -> Result<(), TransportError> {
        self.fresh_login(Some(port)).await?;
        *self.proven_port.lock().expect("not poisoned") = Some(port);
        Ok(())
    }

    async fn close(&self) -> Result<(), TransportError> {
        let Some(session) = self.session.lock().expect("not poisoned").take() else {
            return Ok(());
        };
        // Every command has finished, so this is the last reference: ask the master to exit
        // over the mux protocol (no extra ssh process).
        match Arc::try_unwrap(session) {
            Ok(session) => session
                .close()
                .await
                .map_err(|e| TransportError::Disconnected {
                    host: self.target.name.clone(),
                    source: Box::new(e),
                }),
            // Still shared (a command in flight elsewhere): dropping our reference is all we
            // can do; the idle ControlPersist ends the master.
            Err(_) => Ok(()),
        }
    }
}

impl SshTransport {
    /// A brand-new login (no control master) on `port` that must be able to become root.
    async fn fresh_login(&self, port: Option<u16>) -> Result<(), TransportError> {
        let out = tokio::process::Command::new("ssh")
            .args(["-o", "ControlPath=none", "-o", "ControlMaster=no"])
            .args(self.target.ssh_options_on(port))
            .arg("--")
            .arg(&self.target.destination)
            .arg(ELEVATE_PROBE)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|source| TransportError::Io {
                host: self.target.name.clone(),
                source,
            })?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() && out.stdout.starts_with(b"provision-login-ok") {
            Ok(())
        } else if out.status.code() == Some(255) && ConnectFailure::of(&stderr).is_transient() {
            // Refused at connect time: the caller decides whether to try again (it knows
            // how long the host's rollback timer leaves).
            Err(TransportError::Refused {
                host: self.target.name.clone(),
                reason: stderr.trim_end().to_string(),
                attempts: String::new(),
            })
        } else {
            Err(TransportError::FreshLogin {
                host: self.target.name.clone(),
                reason: format!(
                    "exit {}\n```\n{}\n```",
                    out.status.code().unwrap_or(-1),
                    String::from_utf8_lossy(&out.stderr).trim_end()
                ),
            })
        }
    }
}

/// A fresh login must also be able to become root, or the host is not manageable.
const ELEVATE_PROBE: &str = concat!(
    effective_uid!(),
    r#"if [ "$u" = 0 ] || sudo -n true; then echo provision-login-ok; else exit 1; fi"#
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_uid_is_read_like_id_u() {
        let sh = |script: &str| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        let uid = sh(concat!(effective_uid!(), r#"printf '%s\n' "$u""#));
        assert_eq!(uid, sh("id -u"));
        assert!(!uid.trim().is_empty());
        if uid.trim() == "0" {
            assert_eq!(
                sh(&format!("sh -c '{ELEVATE}' provision 'echo as-root'")),
                "as-root\n"
            );
            // As under `sh -c SCRIPT`: no positional parameters, the script's own status.
            assert_eq!(
                sh(&format!(
                    "sh -c '{ELEVATE}' provision 'echo \"$#\"; (exit 3)'; echo \"rc=$?\""
                )),
                "0\nrc=3\n"
            );
        }
    }

    /// Issue 11: a destination starting with `-` never reaches ssh as an option.
    #[tokio::test]
    async fn a_destination_that_looks_like_an_option_is_refused_before_ssh_runs() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("marker");
        for destination in [
            format!("-oProxyCommand=touch {}", marker.display()),
            format!("-oProxyCommand=touch${{IFS}}{}", marker.display()),
            "host name".to_string(),
            "host\nname".to_string(),
            String::new(),
        ] {
            let target = SshTarget {
                name: "h".into(),
                destination: destination.clone(),
                user: None,
                port: None,
                identity_file: None,
                known_hosts: None,
                host_key_policy: HostKeyPolicy::Strict,
                connect_timeout: Some(Duration::from_secs(1)),
                fallback_port: None,
            };
            match SshTransport::connect(target).await {
                Err(TransportError::Connect { reason, .. }) => {
                    assert!(reason.contains("refusing destination"), "{reason}")
                }
                Err(e) => panic!("{destination:?}: {e}"),
                Ok(_) => panic!("{destination:?} connected"),
            }
            assert!(!marker.exists(), "{destination:?} ran");
        }
        assert!(destination_is_one_word("10.77.0.2"));
        assert!(destination_is_one_word("web-1.example.com"));
    }
}
