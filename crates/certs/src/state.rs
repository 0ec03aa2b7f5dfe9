//! The state directory: ACME accounts and, per host and certificate, the current
//! certificate, its key and a record of attempts.
//!
//! ```text
//! <root>/                                   0700
//!   accounts/<ca-host>-<hash>.json          0600  account key + URL, created once per CA
//!   certs/<host>/<name>/fullchain.pem       0644
//!   certs/<host>/<name>/privkey.pem         0600
//!   certs/<host>/<name>/state.json          0600  last attempt, last error, next renewal, ARI
//!   certs/<host>/<name>/.lock                     held while the certificate is worked on
//! ```
//!
//! Every write is atomic (temporary file in the same directory, fsync, rename) and created
//! with its final mode, so a secret is never readable by others, not even briefly.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::renewal::RenewalWindow;

/// Default state directory on the machine running provision.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/provision/certs";
/// Environment variable overriding the default state directory.
pub(crate) const STATE_DIR_ENV: &str = "PROVISION_CERTS_STATE";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid state JSON")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "another provision process is working on {path} (its lock is held); try again when it is done"
    )]
    Busy { path: PathBuf },
}

/// An account as stored: the credentials instant-acme restores from, plus what it is for.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredAccount {
    pub directory_url: String,
    pub email: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    pub credentials: instant_acme::AccountCredentials,
}

/// The current certificate and key of one host's certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredCertificate {
    pub fullchain: Vec<u8>,
    pub privkey: Vec<u8>,
}

impl std::fmt::Debug for StoredCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCertificate")
            .field("fullchain", &format_args!("{} bytes", self.fullchain.len()))
            .field("privkey", &"<sensitive>")
            .finish()
    }
}

/// The CA's renewal window as last fetched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AriRecord {
    /// The certificate (ARI id) the window is for.
    pub cert_id: String,
    pub window: RenewalWindow,
    #[serde(with = "time::serde::rfc3339")]
    pub fetched: OffsetDateTime,
    /// Do not ask again before this (the CA's Retry-After).
    #[serde(with = "time::serde::rfc3339")]
    pub next_check: OffsetDateTime,
}

/// What happened to a certificate, for `certs status` and the next renewal check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRecord {
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_attempt: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_success: Option<OffsetDateTime>,
    /// Why the last attempt failed; cleared by a success.
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub next_renewal: Option<OffsetDateTime>,
    /// The CA asked not to retry before this (Retry-After of a 429/503).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub retry_not_before: Option<OffsetDateTime>,
    #[serde(default)]
    pub ari: Option<AriRecord>,
    /// The CA the current certificate came from.
    #[serde(default)]
    pub directory_url: Option<String>,
    /// Whether the CA answered ARI requests (`None`: not asked yet).
    #[serde(default)]
    pub ari_offered: Option<bool>,
    /// When the current certificate was revoked (the next renewal replaces it).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub revoked: Option<OffsetDateTime>,
}

/// Held while one certificate is being renewed or installed; released on drop.
#[derive(Debug)]
pub struct CertLock {
    _file: File,
}

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `$PROVISION_CERTS_STATE`, else [`DEFAULT_STATE_DIR`].
    pub fn from_env_or_default() -> Self {
        match std::env::var_os(STATE_DIR_ENV) {
            Some(p) if !p.is_empty() => Self::new(PathBuf::from(p)),
            _ => Self::new(DEFAULT_STATE_DIR),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the account for a CA directory lives.
    pub(crate) fn account_path(&self, directory_url: &str) -> PathBuf {
        let host = directory_url
            .split("://")
            .nth(1)
            .unwrap_or(directory_url)
            .split('/')
            .next()
            .unwrap_or_default();
        let host: String = host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let hash = Sha256::digest(directory_url.as_bytes());
        let short: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
        self.root
            .join("accounts")
            .join(format!("{host}-{short}.json"))
    }

    pub(crate) fn cert_dir(&self, host: &str, name: &str) -> PathBuf {
        self.root.join("certs").join(safe(host)).join(safe(name))
    }

    pub(crate) fn load_account(
        &self,
        directory_url: &str,
    ) -> Result<Option<StoredAccount>, StateError> {
        read_json(&self.account_path(directory_url))
    }

    pub(crate) fn save_account(&self, account: &StoredAccount) -> Result<(), StateError> {
        let path = self.account_path(&account.directory_url);
        write_json(&self.root, &path, account, 0o600)
    }

    pub fn load_certificate(
        &self,
        host: &str,
        name: &str,
    ) -> Result<Option<StoredCertificate>, StateError> {
        let dir = self.cert_dir(host, name);
        let (Some(fullchain), Some(privkey)) = (
            read_optional(&dir.join("fullchain.pem"))?,
            read_optional(&dir.join("privkey.pem"))?,
        ) else {
            return Ok(None);
        };
        Ok(Some(StoredCertificate { fullchain, privkey }))
    }

    /// Store a new certificate (key, then chain). Installing checks that the chain matches
    /// the key, so a crash between the two renames cannot install a mismatched pair.
    pub(crate) fn save_certificate(
        &self,
        host: &str,
        name: &str,
        cert: &StoredCertificate,
    ) -> Result<(), StateError> {
        let dir = self.cert_dir(host, name);
        write_atomic(&self.root, &dir.join("privkey.pem"), &cert.privkey, 0o600)?;
        write_atomic(
            &self.root,
            &dir.join("fullchain.pem"),
            &cert.fullchain,
            0o644,
        )
    }

    pub fn load_record(&self, host: &str, name: &str) -> Result<CertRecord, StateError> {
        Ok(read_json(&self.cert_dir(host, name).join("state.json"))?.unwrap_or_default())
    }

    pub(crate) fn save_record(
        &self,
        host: &str,
        name: &str,
        record: &CertRecord,
    ) -> Result<(), StateError> {
        write_json(
            &self.root,
            &self.cert_dir(host, name).join("state.json"),
            record,
            0o600,
        )
    }

    /// Take the certificate's lock without waiting.
    pub fn lock(&self, host: &str, name: &str) -> Result<CertLock, StateError> {
        let dir = self.cert_dir(host, name);
        create_dirs(&self.root, &dir)?;
        let path = dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| StateError::Io {
                what: "open",
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(CertLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StateError::Busy { path }),
            Err(std::fs::TryLockError::Error(source)) => Err(StateError::Io {
                what: "lock",
                path,
                source,
            }),
        }
    }

    /// Every (host, certificate name) with stored state.
    pub fn list(&self) -> Result<Vec<(String, String)>, StateError> {
        let mut out = Vec::new();
        let certs = self.root.join("certs");
        for host in read_dir_names(&certs)? {
            for name in read_dir_names(&certs.join(&host))? {
                out.push((host.clone(), name));
            }
        }
        out.sort();
        Ok(out)
    }
}

fn safe(component: &str) -> String {
    let s: String = component
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("_{s}")
    } else {
        s
    }
}

fn read_dir_names(dir: &Path) -> Result<Vec<String>, StateError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StateError::Io {
                what: "list",
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut names = Vec::new();
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir())
            && let Some(n) = entry.file_name().to_str()
        {
            names.push(n.to_string());
        }
    }
    Ok(names)
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StateError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Io {
            what: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    match read_optional(path)? {
        None => Ok(None),
        Some(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StateError::Json {
                    path: path.to_path_buf(),
                    source,
                })
        }
    }
}

fn write_json<T: Serialize>(
    root: &Path,
    path: &Path,
    value: &T,
    mode: u32,
) -> Result<(), StateError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| StateError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    bytes.push(b'\n');
    write_atomic(root, path, &bytes, mode)
}

/// Create `dir` and its parents, private (0700) from `root` down.
fn create_dirs(root: &Path, dir: &Path) -> Result<(), StateError> {
    if dir.is_dir() {
        return Ok(());
    }
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| StateError::Io { what, path, source }
    };
    fs::create_dir_all(dir).map_err(io("create", dir))?;
    for p in dir.ancestors().take_while(|p| p.starts_with(root)) {
        fs::set_permissions(p, fs::Permissions::from_mode(0o700)).map_err(io("chmod", p))?;
    }
    Ok(())
}

/// Write a file atomically with its final mode from the start; parent directories are
/// created private up from `root`.
fn write_atomic(root: &Path, path: &Path, content: &[u8], mode: u32) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_dirs(root, dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let io = |what, p: &Path| {
        let p = p.to_path_buf();
        move |source| StateError::Io {
            what,
            path: p,
            source,
        }
    };
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    // The umask may have narrowed the mode; set it exactly.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io("chmod", &tmp))?;
    f.write_all(content).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("sync", &tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io("replace", path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn layout_modes_and_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path().join("state"));
        let cert = StoredCertificate {
            fullchain: b"CHAIN".to_vec(),
            privkey: b"KEY".to_vec(),
        };
        assert_eq!(
            state.load_certificate("web-1", "example.com").unwrap(),
            None
        );
        state
            .save_certificate("web-1", "example.com", &cert)
            .unwrap();
        let dir = state.cert_dir("web-1", "example.com");
        assert_eq!(dir, tmp.path().join("state/certs/web-1/example.com"));
        assert_eq!(mode(&dir.join("privkey.pem")), 0o600);
        assert_eq!(mode(&dir.join("fullchain.pem")), 0o644);
        assert_eq!(mode(&tmp.path().join("state")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(
            state.load_certificate("web-1", "example.com").unwrap(),
            Some(cert)
        );

        let record = CertRecord {
            last_error: Some("boom".into()),
            next_renewal: Some(time::macros::datetime!(2026-03-01 12:00 UTC)),
            ..Default::default()
        };
        state.save_record("web-1", "example.com", &record).unwrap();
        assert_eq!(mode(&dir.join("state.json")), 0o600);
        assert_eq!(state.load_record("web-1", "example.com").unwrap(), record);
        let text = fs::read_to_string(dir.join("state.json")).unwrap();
        assert!(
            text.contains("\"next_renewal\": \"2026-03-01T12:00:00Z\""),
            "{text}"
        );
        assert_eq!(
            state.list().unwrap(),
            [("web-1".to_string(), "example.com".to_string())]
        );
        // No temporary files are left behind.
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn account_paths_are_per_directory_url() {
        let state = StateDir::new("/s");
        let a = state.account_path("https://acme-v02.api.letsencrypt.org/directory");
        let b = state.account_path("https://acme-staging-v02.api.letsencrypt.org/directory");
        let c = state.account_path("https://127.0.0.1:14000/dir");
        assert!(
            a.to_string_lossy()
                .starts_with("/s/accounts/acme-v02.api.letsencrypt.org-"),
            "{a:?}"
        );
        assert_ne!(a, b);
        assert!(c.to_string_lossy().contains("127.0.0.1_14000-"), "{c:?}");
        assert_eq!(
            state.cert_dir("../x", "*.a"),
            PathBuf::from("/s/certs/_.._x/_.a")
        );
    }

    #[test]
    fn lock_is_exclusive() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path());
        let held = state.lock("h", "n").unwrap();
        assert!(matches!(state.lock("h", "n"), Err(StateError::Busy { .. })));
        drop(held);
        state.lock("h", "n").unwrap();
    }

    #[test]
    fn corrupt_state_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path());
        let dir = state.cert_dir("h", "n");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("state.json"), "{").unwrap();
        let e = state.load_record("h", "n").unwrap_err();
        assert!(e.to_string().contains("state.json"), "{e}");
    }
}
