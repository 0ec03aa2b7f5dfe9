//! API key pairs of the DNS providers that sign their requests (Alibaba Cloud, Tencent
//! Cloud): from the controller's environment, or from a file only its owner can read. Never
//! from the inventory.

use std::path::Path;

use super::DnsError;

/// An access key id and its secret. `Debug` shows the id only.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPair {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The environment variables (or the names in a credentials file) holding a key pair.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyNames {
    pub provider: &'static str,
    pub id: &'static str,
    pub secret: &'static str,
}

/// Read the pair from `file` when given (lines `NAME=value`; `#` comments; the file must not
/// be readable by group or others), else from the environment.
pub(crate) fn key_pair(names: KeyNames, file: Option<&Path>) -> Result<KeyPair, DnsError> {
    let (id, secret) = match file {
        Some(path) => {
            let entries = read_file(path)?;
            let get = |name: &str| {
                entries
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            (get(names.id), get(names.secret))
        }
        None => {
            let get = |name: &str| std::env::var(name).ok();
            (get(names.id), get(names.secret))
        }
    };
    let clean = |v: Option<String>| v.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    match (clean(id), clean(secret)) {
        (Some(id), Some(secret)) => Ok(KeyPair { id, secret }),
        _ => Err(DnsError::MissingCredentials {
            provider: names.provider,
            id: names.id,
            secret: names.secret,
            place: match file {
                Some(p) => format!("in {}", p.display()),
                None => "in the controller's environment (or set certs.dns_credentials_file)"
                    .to_string(),
            },
        }),
    }
}

fn read_file(path: &Path) -> Result<Vec<(String, String)>, DnsError> {
    let shown = path.display().to_string();
    let problem = |problem: String| DnsError::CredentialsFile {
        path: shown.clone(),
        problem,
    };
    let meta = std::fs::metadata(path).map_err(|e| problem(format!("cannot read it: {e}")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(problem(format!(
                "its mode is {mode:04o}; a file of secrets must be readable by its owner only (chmod 600)"
            )));
        }
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| problem(format!("cannot read it: {e}")))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            // The line is not shown: it may be a secret pasted without its name.
            return Err(problem(format!("line {} is not NAME=value", i + 1)));
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        out.push((k.trim().to_string(), v.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: KeyNames = KeyNames {
        provider: "Test DNS",
        id: "PROVISION_TEST_SURELY_UNSET_ID",
        secret: "PROVISION_TEST_SURELY_UNSET_SECRET",
    };

    fn write(dir: &Path, text: &str, mode: u32) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("dns.env");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn a_private_file_gives_the_pair() {
        let tmp = tempfile::tempdir().unwrap();
        let p = write(
            tmp.path(),
            "# keys\nexport PROVISION_TEST_SURELY_UNSET_ID=LTAIid\nPROVISION_TEST_SURELY_UNSET_SECRET=\"s3cret\"\n",
            0o600,
        );
        let pair = key_pair(NAMES, Some(&p)).unwrap();
        assert_eq!(pair.id, "LTAIid");
        assert_eq!(pair.secret, "s3cret");
        assert!(!format!("{pair:?}").contains("s3cret"));
    }

    #[test]
    fn a_file_others_can_read_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let p = write(
            tmp.path(),
            "PROVISION_TEST_SURELY_UNSET_ID=a\nPROVISION_TEST_SURELY_UNSET_SECRET=b\n",
            0o640,
        );
        let e = key_pair(NAMES, Some(&p)).unwrap_err().to_string();
        assert!(e.contains("0640") && e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn missing_names_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let p = write(tmp.path(), "PROVISION_TEST_SURELY_UNSET_ID=a\n", 0o600);
        let e = key_pair(NAMES, Some(&p)).unwrap_err().to_string();
        assert!(e.contains("PROVISION_TEST_SURELY_UNSET_SECRET"), "{e}");
        let e = key_pair(NAMES, None).unwrap_err().to_string();
        assert!(
            e.contains("PROVISION_TEST_SURELY_UNSET_ID") && e.contains("environment"),
            "{e}"
        );
    }
}
