//! Two small resources `provision certs schedule` converges on a host besides the timer:
//! the provision binary (compared by sha256, since the file fact reads contents up to
//! 1 MiB only), and the host's own copy of a certificate's state, so that the timer starts
//! from the certificate already installed instead of ordering another one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::facts::{Fact, FactError, Facts, Probe, ProbeKey, ProbeOutput, require_success};
use common::resource::{Action, FileWrite, Plan, Resource, ResourceId};
use common::shell::quote;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::declaration::CertificateDeclaration;
use crate::info::CertInfo;
use crate::state::StateDir;
use common::PlanError;

/// Why the running provision binary could not be read to install it on a host.
#[derive(Debug, thiserror::Error)]
pub enum BinaryError {
    #[error("cannot find the running provision binary: {0}")]
    CurrentExe(std::io::Error),
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Why this machine's state of a certificate could not be copied for a host.
#[derive(Debug, thiserror::Error)]
pub enum HostCopyError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("the stored certificate in {} does not parse: {error}", dir.display())]
    Parse {
        dir: PathBuf,
        error: crate::info::CertParseError,
    },
    #[error("{0}")]
    Record(serde_json::Error),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A regular file's sha256, mode and owner, read on the host (any size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileDigest {
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileDigestValue {
    Absent,
    /// Something other than a regular file is there.
    NotAFile,
    File {
        sha256: String,
        mode: u32,
        owner: String,
        group: String,
    },
}

// Where [`FileDigest`] keeps the digests it computed (`/var/cache/provision/sha256`), by
// path (`/` as `%`), each with the file's size, mtime, ctime and inode: hashing a 40 MiB
// binary on every no-op run costs the host a second; any write or chmod moves its ctime,
// and the digest is computed again.

/// `$p`: the path. Prints the digest, then `mode owner group`; or `not-a-file`, `absent`.
const DIGEST_SCRIPT: &str = r#"c=${PROVISION_DIGEST_CACHE:-/var/cache/provision/sha256}
if [ -f "$p" ]; then
  st=$(stat -L -c '%s %Y %Z %i' -- "$p") || exit 1
  f=$c/$(printf %s "$p" | tr / %)
  d=
  if [ -r "$f" ] && read -r s1 s2 s3 s4 cd < "$f" && [ "$s1 $s2 $s3 $s4" = "$st" ]; then d=$cd; fi
  if [ -z "$d" ]; then
    d=$(sha256sum -- "$p" | cut -d' ' -f1) || exit 1
    # Kept only if the file did not change while it was hashed, nor within this second
    # (the times have whole seconds: a rewrite in the same second would look the same).
    set -- $st
    if [ "$(stat -L -c '%s %Y %Z %i' -- "$p")" = "$st" ] && [ "${PROVISION_DIGEST_NOW:-$(date +%s)}" -gt "$3" ]; then
      { mkdir -p "$c" && printf '%s %s\n' "$st" "$d" > "$f.$$" && mv -f "$f.$$" "$f"; } 2>/dev/null || rm -f "$f.$$"
    fi
  fi
  echo "$d"; stat -L -c '%a %U %G' -- "$p"
elif [ -e "$p" ] || [ -L "$p" ]; then echo not-a-file; else echo absent; fi"#;

impl Fact for FileDigest {
    type Value = FileDigestValue;

    fn probe(&self) -> Probe {
        Probe {
            key: ProbeKey::about("sha256", &self.path),
            script: format!("p={}\n{DIGEST_SCRIPT}", quote(&self.path)),
        }
    }

    fn parse(&self, output: &ProbeOutput) -> Result<FileDigestValue, FactError> {
        let key = self.probe().key.to_string();
        require_success(&key, output)?;
        let error = |what: &str, line: &str| FactError::Parse {
            key: key.clone(),
            what: what.into(),
            line: line.into(),
        };
        let mut lines = output.stdout.lines();
        let first = lines.next().unwrap_or_default().trim();
        match first {
            "absent" => return Ok(FileDigestValue::Absent),
            "not-a-file" => return Ok(FileDigestValue::NotAFile),
            _ => {}
        }
        if first.len() != 64 || !first.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(error("a sha256 digest", first));
        }
        let attrs = lines.next().unwrap_or_default();
        let mut words = attrs.split_whitespace();
        let (Some(mode), Some(owner), Some(group), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(error("`mode owner group`", attrs));
        };
        let mode = u32::from_str_radix(mode, 8).map_err(|_| error("an octal mode", attrs))?;
        Ok(FileDigestValue::File {
            sha256: first.to_ascii_lowercase(),
            mode,
            owner: owner.into(),
            group: group.into(),
        })
    }
}

/// The provision binary at a path on the host (0755 root:root), uploaded only when the
/// host's file is a different build.
#[derive(Clone)]
pub struct InstalledBinary {
    pub path: String,
    content: Arc<[u8]>,
    sha256: String,
    /// The newest `GLIBC_2.N` symbol version the binary links against, if dynamic.
    needs_glibc: Option<GlibcVersion>,
}

/// A glibc version, `(2, 36)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct GlibcVersion(pub u32, pub u32);

impl std::fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// The newest `GLIBC_x.y` version string in an ELF binary's bytes (its symbol version
/// needs); `None` for a binary without any (static, musl).
pub(crate) fn glibc_needed(binary: &[u8]) -> Option<GlibcVersion> {
    const TAG: &[u8] = b"GLIBC_";
    let mut best = None;
    let mut i = 0;
    while let Some(pos) = binary[i..].windows(TAG.len()).position(|w| w == TAG) {
        let start = i + pos + TAG.len();
        let rest = &binary[start..binary.len().min(start + 12)];
        let text: String = rest
            .iter()
            .take_while(|b| b.is_ascii_digit() || **b == b'.')
            .map(|b| *b as char)
            .collect();
        let mut parts = text.split('.').map(|p| p.parse::<u32>());
        if let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) {
            let v = GlibcVersion(major, minor);
            if best.is_none_or(|b| v > b) {
                best = Some(v);
            }
        }
        i = start;
    }
    best
}

/// The host's glibc (`getconf GNU_LIBC_VERSION`: `glibc 2.31`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HostGlibc;

impl Fact for HostGlibc {
    type Value = Option<GlibcVersion>;

    fn probe(&self) -> Probe {
        Probe {
            key: ProbeKey::named("glibc-version"),
            script: "getconf GNU_LIBC_VERSION 2>/dev/null || true".into(),
        }
    }

    fn parse(&self, output: &ProbeOutput) -> Result<Option<GlibcVersion>, FactError> {
        let text = output.stdout.trim();
        if text.is_empty() {
            return Ok(None); // not glibc (e.g. musl): nothing to compare
        }
        let version = text.strip_prefix("glibc ").unwrap_or(text);
        let mut parts = version.split('.').map(|p| p.trim().parse::<u32>());
        match (parts.next(), parts.next()) {
            (Some(Ok(major)), Some(Ok(minor))) => Ok(Some(GlibcVersion(major, minor))),
            _ => Err(FactError::Parse {
                key: "glibc-version".into(),
                what: "`glibc <major>.<minor>`".into(),
                line: text.to_string(),
            }),
        }
    }
}

impl std::fmt::Debug for InstalledBinary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstalledBinary")
            .field("path", &self.path)
            .field("bytes", &self.content.len())
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl InstalledBinary {
    pub fn new(path: impl Into<String>, content: impl Into<Arc<[u8]>>) -> Self {
        let content: Arc<[u8]> = content.into();
        Self {
            path: path.into(),
            sha256: hex(&Sha256::digest(&content)),
            needs_glibc: glibc_needed(&content),
            content,
        }
    }

    /// The running executable, read here, to go to `path` on the host.
    pub fn current_executable(path: &str) -> Result<Self, BinaryError> {
        let exe = std::env::current_exe().map_err(BinaryError::CurrentExe)?;
        let content = std::fs::read(&exe).map_err(|error| BinaryError::Read {
            path: exe.clone(),
            error,
        })?;
        Ok(Self::new(path, content))
    }

    fn fact(&self) -> FileDigest {
        FileDigest {
            path: self.path.clone(),
        }
    }

    fn write(&self) -> Action {
        Action::WriteFile(FileWrite {
            path: self.path.clone(),
            content: self.content.to_vec(),
            mode: 0o755,
            owner: "root".into(),
            group: "root".into(),
            previous: None,
            sensitive: false,
            validate: None,
        })
    }
}

impl Resource for InstalledBinary {
    fn id(&self) -> ResourceId {
        ResourceId::of("binary", &self.path)
    }

    fn probes(&self) -> Vec<Probe> {
        vec![self.fact().probe(), HostGlibc.probe()]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        // A binary linked against a newer glibc than the host's does not start there
        // (built on Debian 12, glibc 2.36; Ubuntu 20.04 has 2.31): refuse before copying.
        if let Some(need) = self.needs_glibc
            && let Some(have) = facts.read(&HostGlibc)?
            && have < need
        {
            return Err(PlanError::Fact(FactError::Parse {
                key: "glibc-version".into(),
                what: format!(
                    "glibc {need} or newer: this provision binary needs it and would not start on the host (install a build made on the host's release, or a static one, with --install-binary)"
                ),
                line: format!("the host has glibc {have}"),
            }));
        }
        let short = &self.sha256[..12];
        let mib = self.content.len() as f64 / (1024.0 * 1024.0);
        match facts.read(&self.fact())? {
            FileDigestValue::Absent => Ok(Plan::change(
                format!(
                    "install provision ({mib:.1} MiB, sha256 {short}…) at {}",
                    self.path
                ),
                vec![self.write()],
            )),
            FileDigestValue::NotAFile => Err(FactError::Parse {
                key: self.fact().probe().key.to_string(),
                what: "a regular file".into(),
                line: format!("{} is not a regular file", self.path),
            }
            .into()),
            FileDigestValue::File { sha256, .. } if sha256 != self.sha256 => Ok(Plan::change(
                format!(
                    "replace {} (sha256 {}… → {short}…, {mib:.1} MiB)",
                    self.path,
                    &sha256[..12]
                ),
                vec![self.write()],
            )),
            FileDigestValue::File {
                mode, owner, group, ..
            } if mode != 0o755 || owner != "root" || group != "root" => Ok(Plan::change(
                format!(
                    "{}: set mode 755 owner root:root (was {mode:o} {owner}:{group})",
                    self.path
                ),
                vec![common::resources::set_owner_and_mode(
                    &self.path, "root", "root", 0o755,
                )],
            )),
            FileDigestValue::File { .. } => Ok(Plan::noop(format!(
                "{} is this build (sha256 {short}…)",
                self.path
            ))),
        }
    }
}

/// What the host's copy of a certificate's state holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredCopyValue {
    pub fullchain: Option<String>,
    pub privkey: bool,
    pub record: bool,
}

/// The host's copy of one certificate's state directory: which files exist, and the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredCopy {
    pub dir: String,
}

const CHAIN_MARK: &str = "fullchain:";

impl Fact for StoredCopy {
    type Value = StoredCopyValue;

    fn probe(&self) -> Probe {
        let d = quote(&self.dir);
        Probe {
            key: ProbeKey::about("certs-state", &self.dir),
            script: format!(
                "for f in privkey.pem state.json; do if [ -f {d}/$f ]; then echo \"present $f\"; else echo \"absent $f\"; fi; done\n\
                 if [ -f {d}/fullchain.pem ]; then echo {CHAIN_MARK}; cat {d}/fullchain.pem; fi"
            ),
        }
    }

    fn parse(&self, output: &ProbeOutput) -> Result<StoredCopyValue, FactError> {
        let key = self.probe().key.to_string();
        require_success(&key, output)?;
        let (head, chain) = match output.stdout.split_once(&format!("{CHAIN_MARK}\n")) {
            Some((head, chain)) => (head, Some(chain.to_string())),
            None => (output.stdout.as_str(), None),
        };
        let mut value = StoredCopyValue {
            fullchain: chain,
            privkey: false,
            record: false,
        };
        let mut seen = 0;
        for line in head.lines() {
            let present = match line.split_once(' ') {
                Some(("present", _)) => true,
                Some(("absent", _)) => false,
                _ => {
                    return Err(FactError::Parse {
                        key,
                        what: "`present|absent FILE`".into(),
                        line: line.into(),
                    });
                }
            };
            match line.rsplit(' ').next() {
                Some("privkey.pem") => value.privkey = present,
                Some("state.json") => value.record = present,
                _ => {
                    return Err(FactError::Parse {
                        key,
                        what: "a state file name".into(),
                        line: line.into(),
                    });
                }
            }
            seen += 1;
        }
        if seen != 2 {
            return Err(FactError::Malformed { key });
        }
        Ok(value)
    }
}

/// The host's own copy of a certificate's state (chain, key, record) in the state directory
/// `certs renew --local` uses, so that the timer starts from the certificate already
/// installed instead of ordering a new one. Written when the host has no copy or one that
/// expires earlier than this machine's; a newer one the host renewed itself is kept.
#[derive(Clone)]
pub struct HostStateCopy {
    /// The host's state directory.
    pub root: String,
    /// `<root>/certs/<host>/<name>`.
    pub dir: String,
    fullchain: Vec<u8>,
    privkey: Vec<u8>,
    record: Vec<u8>,
    not_after: OffsetDateTime,
}

impl std::fmt::Debug for HostStateCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostStateCopy")
            .field("dir", &self.dir)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl HostStateCopy {
    /// From this machine's state; `None` when no certificate was issued yet.
    pub fn from_state(
        declaration: &CertificateDeclaration,
        state: &StateDir,
    ) -> Result<Option<Self>, HostCopyError> {
        let (host, name) = (&declaration.host, &declaration.name);
        let Some(stored) = state.load_certificate(host, name)? else {
            return Ok(None);
        };
        let info = CertInfo::from_pem(&stored.fullchain).map_err(|error| HostCopyError::Parse {
            dir: state.cert_dir(host, name),
            error,
        })?;
        let record = state.load_record(host, name)?;
        let mut record = serde_json::to_vec_pretty(&record).map_err(HostCopyError::Record)?;
        record.push(b'\n');
        let root = crate::schedule::LOCAL_STATE_DIR;
        let dir = StateDir::new(root).cert_dir(host, name);
        Ok(Some(Self {
            root: root.into(),
            dir: dir.to_string_lossy().into_owned(),
            fullchain: stored.fullchain,
            privkey: stored.privkey,
            record,
            not_after: info.not_after,
        }))
    }

    fn fact(&self) -> StoredCopy {
        StoredCopy {
            dir: self.dir.clone(),
        }
    }

    fn write(&self, file: &str, content: &[u8], mode: u32, sensitive: bool) -> Action {
        Action::WriteFile(FileWrite {
            path: format!("{}/{file}", self.dir),
            content: content.to_vec(),
            mode,
            owner: "root".into(),
            group: "root".into(),
            previous: None,
            sensitive,
            validate: None,
        })
    }

    fn actions(&self) -> Vec<Action> {
        // Private directories from the state root down (as the state directory makes them).
        let mut dirs = vec![quote(&self.root)];
        let mut path = PathBuf::from(&self.root);
        if let Ok(rest) = Path::new(&self.dir).strip_prefix(&self.root) {
            for c in rest.components() {
                path.push(c);
                dirs.push(quote(&path.to_string_lossy()));
            }
        }
        vec![
            Action::run(
                format!("private directory {}", self.dir),
                format!(
                    "mkdir -p {}\nchmod 700 {}",
                    quote(&self.dir),
                    dirs.join(" ")
                ),
            ),
            self.write("privkey.pem", &self.privkey, 0o600, true),
            self.write("fullchain.pem", &self.fullchain, 0o644, false),
            self.write("state.json", &self.record, 0o600, false),
        ]
    }
}

impl Resource for HostStateCopy {
    fn id(&self) -> ResourceId {
        ResourceId::of("certs-state", &self.dir)
    }

    fn probes(&self) -> Vec<Probe> {
        vec![self.fact().probe()]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let current = facts.read(&self.fact())?;
        let expires = crate::info::rfc3339(self.not_after);
        let copy = |why: String| {
            Plan::change(
                format!("copy the certificate state to {} ({why})", self.dir),
                self.actions(),
            )
        };
        let Some(chain) = current.fullchain else {
            return Ok(copy("the host has none".into()));
        };
        if !current.privkey || !current.record {
            return Ok(copy("the host's copy is incomplete".into()));
        }
        if chain.as_bytes() == self.fullchain.as_slice() {
            return Ok(Plan::noop(format!(
                "the host has this certificate's state (expires {expires})"
            )));
        }
        match CertInfo::from_pem(chain.as_bytes()) {
            Err(_) => Ok(copy("the host's copy does not parse".into())),
            Ok(theirs) if theirs.not_after < self.not_after => Ok(copy(format!(
                "the host's copy expires earlier, {}",
                crate::info::rfc3339(theirs.not_after)
            ))),
            Ok(theirs) => Ok(Plan::noop(format!(
                "the host renewed on its own (expires {}); keeping its copy",
                crate::info::rfc3339(theirs.not_after)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    /// A no-op run must not hash a 40 MiB binary every time: the digest is kept with the
    /// file's size, mtime, ctime and inode, used while they match, computed again once the
    /// file is written.
    #[test]
    fn the_digest_probe_reuses_its_cached_digest_until_the_file_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("provision");
        std::fs::write(&file, b"build one").unwrap();
        let cache = tmp.path().join("cache");
        let fact = FileDigest {
            path: file.display().to_string(),
        };
        let probe = || {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(fact.probe().script)
                .env("PROVISION_DIGEST_CACHE", &cache)
                // "Now" a minute on: the file was not written within this second.
                .env(
                    "PROVISION_DIGEST_NOW",
                    (std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs()
                        + 60)
                        .to_string(),
                )
                .output()
                .unwrap();
            let output = ProbeOutput {
                status: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            };
            match fact.parse(&output).unwrap() {
                FileDigestValue::File { sha256, .. } => sha256,
                other => panic!("{other:?}"),
            }
        };
        let sha = |b: &[u8]| format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(b));
        assert_eq!(probe(), sha(b"build one"));
        let entry = std::fs::read_dir(&cache)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        // A planted digest under the same stat is believed: the cache is what was read.
        let line = std::fs::read_to_string(&entry).unwrap();
        let planted = line.replace(&sha(b"build one"), &"a".repeat(64));
        std::fs::write(&entry, planted).unwrap();
        assert_eq!(probe(), "a".repeat(64));
        // Writing the file moves its ctime (and size): computed again.
        std::fs::write(&file, b"build two!").unwrap();
        assert_eq!(probe(), sha(b"build two!"));
    }

    use super::*;
    use common::testing::ok;
    use std::collections::BTreeMap;

    fn facts_with(probe: Probe, stdout: &str) -> Facts {
        Facts::from_outputs(BTreeMap::from([(probe.key.to_string(), ok(stdout))]))
    }

    #[test]
    fn file_digest_parses() {
        let f = FileDigest {
            path: "/usr/local/bin/provision".into(),
        };
        let sum = "a".repeat(64);
        assert_eq!(
            f.parse(&ok(&format!("{sum}\n755 root root\n"))).unwrap(),
            FileDigestValue::File {
                sha256: sum.clone(),
                mode: 0o755,
                owner: "root".into(),
                group: "root".into()
            }
        );
        assert_eq!(f.parse(&ok("absent\n")).unwrap(), FileDigestValue::Absent);
        assert_eq!(
            f.parse(&ok("not-a-file\n")).unwrap(),
            FileDigestValue::NotAFile
        );
        assert!(f.parse(&ok("sha256sum: missing\n")).is_err());
        assert!(f.parse(&ok(&format!("{sum}\n755 root\n"))).is_err());
        assert!(f.parse(&common::testing::failed(1, "boom")).is_err());
    }

    fn binary() -> InstalledBinary {
        InstalledBinary::new("/usr/local/bin/provision", b"\x7fELF build 1".to_vec())
    }

    fn plan_binary(stdout: &str) -> Result<Plan, PlanError> {
        let b = binary();
        b.plan(&facts_with(b.fact().probe(), stdout))
    }

    /// Issue 10: the binary built on Debian 12 (glibc 2.36) was copied to Ubuntu 20.04
    /// (glibc 2.31), where it cannot start.
    #[test]
    fn a_binary_needing_a_newer_glibc_than_the_hosts_is_refused_before_copying() {
        let elf = b"\x7fELF\0GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_2.17\0GLIBC_PRIVATE\0".to_vec();
        assert_eq!(glibc_needed(&elf), Some(GlibcVersion(2, 34)));
        assert_eq!(glibc_needed(b"static musl binary"), None);
        let b = InstalledBinary::new("/usr/local/bin/provision", elf);
        let facts = |glibc: &str| {
            Facts::from_outputs(BTreeMap::from([
                (b.fact().probe().key.to_string(), ok("absent\n")),
                (HostGlibc.probe().key.to_string(), ok(glibc)),
            ]))
        };
        let e = b.plan(&facts("glibc 2.31\n")).unwrap_err().to_string();
        assert!(
            e.contains("glibc 2.34 or newer") && e.contains("the host has glibc 2.31"),
            "{e}"
        );
        assert!(b.plan(&facts("glibc 2.35\n")).unwrap().is_change());
        // Not glibc at all (no getconf answer): nothing to compare.
        assert!(b.plan(&facts("")).unwrap().is_change());
        // The running test binary itself is a glibc binary on this machine.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(glibc_needed(&me).is_some_and(|v| v >= GlibcVersion(2, 2)));
    }

    #[test]
    fn binary_is_uploaded_when_absent() {
        let Plan::Change { actions, summary } = plan_binary("absent\n").unwrap() else {
            panic!("expected a change");
        };
        assert!(summary.starts_with("install provision"), "{summary}");
        let [Action::WriteFile(w)] = actions.as_slice() else {
            panic!("{actions:?}");
        };
        assert_eq!(
            (w.path.as_str(), w.mode, w.owner.as_str()),
            ("/usr/local/bin/provision", 0o755, "root")
        );
        assert_eq!(w.content, b"\x7fELF build 1");
    }

    #[test]
    fn binary_of_the_same_build_is_kept() {
        let sum = binary().sha256.clone();
        assert_eq!(
            plan_binary(&format!("{sum}\n755 root root\n")).unwrap(),
            Plan::noop(format!(
                "/usr/local/bin/provision is this build (sha256 {}…)",
                &sum[..12]
            ))
        );
    }

    #[test]
    fn binary_of_another_build_is_replaced() {
        let other = "0".repeat(64);
        let Plan::Change { actions, summary } =
            plan_binary(&format!("{other}\n755 root root\n")).unwrap()
        else {
            panic!("expected a change");
        };
        assert!(summary.starts_with("replace /usr/local/bin/provision"));
        assert!(matches!(actions.as_slice(), [Action::WriteFile(_)]));
    }

    #[test]
    fn binary_with_wrong_mode_is_fixed_in_place() {
        let sum = binary().sha256.clone();
        let plan = plan_binary(&format!("{sum}\n700 deploy deploy\n")).unwrap();
        assert_eq!(
            plan,
            Plan::change(
                "/usr/local/bin/provision: set mode 755 owner root:root (was 700 deploy:deploy)",
                vec![Action::run(
                    "chmod/chown /usr/local/bin/provision",
                    "chown -- root:root /usr/local/bin/provision\nchmod -- 755 /usr/local/bin/provision"
                )]
            )
        );
    }

    #[test]
    fn binary_path_taken_by_a_directory_fails() {
        assert!(plan_binary("not-a-file\n").is_err());
    }

    #[test]
    fn stored_copy_parses() {
        let f = StoredCopy {
            dir: "/var/lib/provision/certs/certs/web-1/example.com".into(),
        };
        assert_eq!(
            f.parse(&ok("absent privkey.pem\nabsent state.json\n"))
                .unwrap(),
            StoredCopyValue {
                fullchain: None,
                privkey: false,
                record: false
            }
        );
        assert_eq!(
            f.parse(&ok(
                "present privkey.pem\npresent state.json\nfullchain:\n-----BEGIN CERTIFICATE-----\nx\n"
            ))
            .unwrap(),
            StoredCopyValue {
                fullchain: Some("-----BEGIN CERTIFICATE-----\nx\n".into()),
                privkey: true,
                record: true
            }
        );
        assert!(f.parse(&ok("present privkey.pem\n")).is_err());
        assert!(
            f.parse(&ok("maybe privkey.pem\nabsent state.json\n"))
                .is_err()
        );
    }

    fn at(rfc3339: &str) -> OffsetDateTime {
        OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).unwrap()
    }

    fn test_declaration() -> CertificateDeclaration {
        crate::testing::declaration(
            "web-1",
            &["example.com"],
            crate::CaConfig::url("https://ca.example/dir"),
            crate::ChallengeConfig::SelfSigned,
            "/opt/app/ssl",
            "true",
        )
    }

    /// A certificate for the test declaration issued at `at` (it expires 365 days later).
    fn certificate_issued_at(at: OffsetDateTime) -> crate::StoredCertificate {
        crate::selfsigned::self_signed(&test_declaration(), at).unwrap()
    }

    fn chain(c: &crate::StoredCertificate) -> String {
        String::from_utf8(c.fullchain.clone()).unwrap()
    }

    /// A state directory with one certificate issued at 2029-01-01 (expires 2030-01-01).
    fn issued(tmp: &Path) -> (CertificateDeclaration, StateDir, String) {
        let state = StateDir::new(tmp);
        let d = test_declaration();
        let cert = certificate_issued_at(at("2029-01-01T00:00:00Z"));
        state.save_certificate("web-1", &d.name, &cert).unwrap();
        (d, state, chain(&cert))
    }

    fn plan_copy(copy: &HostStateCopy, stdout: &str) -> Plan {
        copy.plan(&facts_with(copy.fact().probe(), stdout)).unwrap()
    }

    #[test]
    fn state_copy_goes_to_a_host_without_one() {
        let tmp = tempfile::tempdir().unwrap();
        let (d, state, pem) = issued(tmp.path());
        let copy = HostStateCopy::from_state(&d, &state).unwrap().unwrap();
        assert_eq!(copy.dir, "/var/lib/provision/certs/certs/web-1/example.com");
        let Plan::Change { summary, actions } =
            plan_copy(&copy, "absent privkey.pem\nabsent state.json\n")
        else {
            panic!("expected a change");
        };
        assert!(summary.ends_with("(the host has none)"), "{summary}");
        let Action::Run { script, .. } = &actions[0] else {
            panic!("{actions:?}");
        };
        assert_eq!(
            script,
            "mkdir -p /var/lib/provision/certs/certs/web-1/example.com\nchmod 700 /var/lib/provision/certs /var/lib/provision/certs/certs /var/lib/provision/certs/certs/web-1 /var/lib/provision/certs/certs/web-1/example.com"
        );
        let writes: Vec<(&str, u32, bool)> = actions[1..]
            .iter()
            .map(|a| match a {
                Action::WriteFile(w) => (w.path.as_str(), w.mode, w.sensitive),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            writes,
            [
                (
                    "/var/lib/provision/certs/certs/web-1/example.com/privkey.pem",
                    0o600,
                    true
                ),
                (
                    "/var/lib/provision/certs/certs/web-1/example.com/fullchain.pem",
                    0o644,
                    false
                ),
                (
                    "/var/lib/provision/certs/certs/web-1/example.com/state.json",
                    0o600,
                    false
                ),
            ]
        );
        let Action::WriteFile(chain) = &actions[2] else {
            unreachable!()
        };
        assert_eq!(chain.content, pem.as_bytes());
    }

    #[test]
    fn state_copy_is_kept_when_the_host_has_it_or_a_newer_one() {
        let tmp = tempfile::tempdir().unwrap();
        let (d, state, pem) = issued(tmp.path());
        let copy = HostStateCopy::from_state(&d, &state).unwrap().unwrap();
        let host =
            |chain: &str| format!("present privkey.pem\npresent state.json\nfullchain:\n{chain}");
        assert_eq!(
            plan_copy(&copy, &host(&pem)),
            Plan::noop("the host has this certificate's state (expires 2030-01-01T00:00:00Z)")
        );
        let newer = chain(&certificate_issued_at(at("2029-03-01T00:00:00Z")));
        assert_eq!(
            plan_copy(&copy, &host(&newer)),
            Plan::noop(
                "the host renewed on its own (expires 2030-03-01T00:00:00Z); keeping its copy"
            )
        );
        let older = chain(&certificate_issued_at(at("2028-10-01T00:00:00Z")));
        let Plan::Change { summary, .. } = plan_copy(&copy, &host(&older)) else {
            panic!("an older copy is replaced");
        };
        assert!(
            summary.ends_with("expires earlier, 2029-10-01T00:00:00Z)"),
            "{summary}"
        );
        let Plan::Change { summary, .. } = plan_copy(&copy, &host("garbage\n")) else {
            panic!("a broken copy is replaced");
        };
        assert!(summary.ends_with("(the host's copy does not parse)"));
        let Plan::Change { summary, .. } = plan_copy(
            &copy,
            &format!("absent privkey.pem\npresent state.json\nfullchain:\n{pem}"),
        ) else {
            panic!("an incomplete copy is replaced");
        };
        assert!(summary.ends_with("(the host's copy is incomplete)"));
    }

    #[test]
    fn no_state_copy_before_the_first_issue() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path());
        let d = test_declaration();
        assert!(HostStateCopy::from_state(&d, &state).unwrap().is_none());
    }
}
