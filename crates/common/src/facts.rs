//! Facts: read-only probes of a host's state.
//!
//! A fact is a shell snippet plus a pure parser of its output. All probes a host needs are
//! sent as ONE script (sections between unique delimiters) and parsed locally, so gathering
//! costs one round trip however many resources ask.

pub mod builtin;
pub mod fold;

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::transport::{ExecOutput, Transport, TransportError};

/// A probe to run on the host. Probes with the same key must be the same probe; it runs once.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Probe {
    pub key: ProbeKey,
    pub script: String,
}

/// What a probe reads, as the key its output is filed under. Built only by the
/// constructors below, one shape per kind of fact, so that two different facts cannot
/// share a key by accident: a host-wide fact is a bare name (`host`, `ufw`), a fact about
/// one subject is `kind:subject` (`path:/etc/motd`), a fact about a set of subjects is
/// `kind:` and the whole set, sorted (`sysctl:kernel.a,net.b`; never its size). A kind
/// names one shape only. The text is what `provision facts` prints and fixtures name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProbeKey(String);

impl ProbeKey {
    /// A fact of the host as a whole: one per name (no `:` in it).
    pub fn named(name: &'static str) -> Self {
        debug_assert!(
            !name.contains(':'),
            "a host-wide probe name has no `:`: {name}"
        );
        Self(name.to_string())
    }

    /// A fact about one subject of a kind (a path, a unit, a user, a port).
    pub fn about(kind: &'static str, subject: impl std::fmt::Display) -> Self {
        debug_assert!(!kind.contains(':'), "a probe kind has no `:`: {kind}");
        Self(format!("{kind}:{subject}"))
    }

    /// A fact about a set of subjects: the same set is the same key in any order, and two
    /// different sets are different keys (commas and backslashes in a subject are escaped).
    pub fn about_set<S: AsRef<str>>(kind: &'static str, subjects: &[S]) -> Self {
        debug_assert!(!kind.contains(':'), "a probe kind has no `:`: {kind}");
        let mut set: Vec<String> = subjects
            .iter()
            .map(|s| s.as_ref().replace('\\', "\\\\").replace(',', "\\,"))
            .collect();
        set.sort();
        set.dedup();
        Self(format!("{kind}:{}", set.join(",")))
    }

    /// Recorded output filed under this text ([`Facts::from_outputs`]): not for probes.
    fn recorded(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for ProbeKey {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ProbeKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for ProbeKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ProbeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for ProbeKey {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ProbeKey {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// What one probe printed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProbeOutput {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FactError {
    #[error("fact `{key}` was not gathered (engine bug: the resource did not declare it)")]
    Missing { key: String },
    #[error("fact `{key}` failed with exit status {status}\n```\n{stderr}\n```")]
    ProbeFailed {
        key: String,
        status: i32,
        stderr: String,
    },
    #[error("fact `{key}`: cannot parse {what}: {line:?}")]
    Parse {
        key: String,
        what: String,
        line: String,
    },
    #[error("two different probes share the key `{key}` (a bug in a resource's probes)")]
    KeyConflict { key: String },
    #[error("the facts script output is truncated or malformed near probe `{key}`")]
    Malformed { key: String },
    #[error("precondition failed: {what}")]
    Precondition { what: String },
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// A typed fact: a probe and a pure parser of its output.
pub trait Fact {
    type Value;
    fn probe(&self) -> Probe;
    fn parse(&self, output: &ProbeOutput) -> Result<Self::Value, FactError>;
}

/// Everything gathered from one host in one round trip.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    outputs: BTreeMap<ProbeKey, ProbeOutput>,
}

impl Facts {
    /// Recorded outputs, filed under their keys' text (fixtures, replays).
    pub fn from_outputs<K: AsRef<str>>(
        outputs: impl IntoIterator<Item = (K, ProbeOutput)>,
    ) -> Self {
        let outputs = outputs
            .into_iter()
            .map(|(k, v)| (ProbeKey::recorded(k.as_ref()), v))
            .collect();
        Self { outputs }
    }

    /// Parse a typed fact. A probe that was not gathered is an error, never "nothing to do".
    pub fn read<F: Fact>(&self, fact: &F) -> Result<F::Value, FactError> {
        let key = fact.probe().key;
        let output = self.outputs.get(&key).ok_or_else(|| FactError::Missing {
            key: key.to_string(),
        })?;
        fact.parse(output)
    }

    pub fn raw(&self, key: &str) -> Option<&ProbeOutput> {
        self.outputs.get(key)
    }

    /// Replace the outputs of the given probes with fresher ones (after a change).
    pub fn merge(&mut self, newer: Facts) {
        self.outputs.extend(newer.outputs);
    }

    pub fn len(&self) -> usize {
        self.outputs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ProbeKey, &ProbeOutput)> {
        self.outputs.iter()
    }
}

/// The delimiter is derived from the script so replays are deterministic and host output
/// cannot forge a section boundary by accident.
fn delimiter(probes: &[Probe]) -> String {
    let mut hash = Sha256::new();
    for p in probes {
        hash.update(p.key.as_bytes());
        hash.update([0]);
        hash.update(p.script.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("@@provision-{hex}")
}

/// Deduplicate and order probes. Probes share a key only when they are the same probe:
/// two different scripts under one key would hand one resource another's output, so that
/// is an error (a bug in a resource), never deduplicated silently.
pub fn normalize(mut probes: Vec<Probe>) -> Result<Vec<Probe>, FactError> {
    probes.sort();
    probes.dedup();
    if let Some(w) = probes.windows(2).find(|w| w[0].key == w[1].key) {
        return Err(FactError::KeyConflict {
            key: w[0].key.to_string(),
        });
    }
    Ok(probes)
}

/// Every gather runs in the C locale (tools print the same words on every host).
pub(crate) const LOCALE: &str = "export LC_ALL=C\n";

/// Build the single script that runs every probe. Probes run concurrently on the host (each
/// in its own subshell, stdin closed), so a gather takes as long as the slowest probe, not
/// the sum. Each subshell writes its section's start and the probe's stdout and stderr
/// into two files of a temporary directory; the script waits for each in turn, appends the
/// delimiters and the exit status, and one `cat` prints every section in order: beyond the
/// probes' own commands, the script starts one subshell per probe and no other process per
/// probe (the processes a no-op pays for on a small host).
pub(crate) fn batch_script(probes: &[Probe]) -> String {
    let d = delimiter(probes);
    let mut s = format!("{LOCALE}__d=$(mktemp -d) || exit 1\ntrap 'rm -rf \"$__d\"' EXIT\n");
    let mut sections = Vec::with_capacity(probes.len() * 2);
    for (i, p) in probes.iter().enumerate() {
        let key = crate::shell::quote(&p.key);
        s.push_str(&format!(
            "( exec >\"$__d/{i}.o\" 2>\"$__d/{i}.e\" </dev/null; printf '%s BEGIN %s\\n' '{d}' {key}; {script}\n) & __p{i}=$!\n",
            script = p.script
        ));
        sections.push(format!("\"$__d/{i}.o\" \"$__d/{i}.e\""));
    }
    for (i, p) in probes.iter().enumerate() {
        let key = crate::shell::quote(&p.key);
        s.push_str(&format!(
            "wait $__p{i}; __rc=$?; printf '\\n%s STDERR %s\\n' '{d}' {key} >>\"$__d/{i}.o\"; printf '\\n%s END %s %s\\n' '{d}' {key} $__rc >>\"$__d/{i}.e\"\n"
        ));
    }
    s.push_str(&format!("cat {}\n", sections.join(" ")));
    s
}

/// Parse the output of [`batch_script`]. Every probe must be present and complete.
pub(crate) fn parse_batch(probes: &[Probe], stdout: &str) -> Result<Facts, FactError> {
    let d = delimiter(probes);
    let mut outputs = BTreeMap::new();
    let mut rest = stdout;
    for p in probes {
        let malformed = || FactError::Malformed {
            key: p.key.to_string(),
        };
        let begin = format!("{d} BEGIN {}\n", p.key);
        let stderr_mark = format!("\n{d} STDERR {}\n", p.key);
        let end_mark = format!("\n{d} END {} ", p.key);
        let start = rest.find(&begin).ok_or_else(malformed)? + begin.len();
        let body = &rest[start..];
        let err_at = body.find(&stderr_mark).ok_or_else(malformed)?;
        let out = &body[..err_at];
        let after_err = &body[err_at + stderr_mark.len()..];
        let end_at = after_err.find(&end_mark).ok_or_else(malformed)?;
        let err = &after_err[..end_at];
        let tail = &after_err[end_at + end_mark.len()..];
        let (status, remainder) = tail.split_once('\n').unwrap_or((tail, ""));
        let status: i32 = status.trim().parse().map_err(|_| malformed())?;
        outputs.insert(
            p.key.clone(),
            ProbeOutput {
                status,
                stdout: out.to_string(),
                stderr: err.to_string(),
            },
        );
        rest = remainder;
    }
    Ok(Facts { outputs })
}

/// Gather `probes` from a host in one round trip.
pub async fn gather(transport: &dyn Transport, probes: &[Probe]) -> Result<Facts, FactError> {
    if probes.is_empty() {
        return Ok(Facts::default());
    }
    let wire = if transport.folds_probes() {
        fold::Wire::folded(probes)
    } else {
        fold::Wire::unfolded(probes)
    };
    let script = batch_script(&wire.probes);
    let out: ExecOutput = transport.run(&script, b"").await?;
    let stdout = out.stdout_lossy();
    let mut facts = parse_batch(&wire.probes, &stdout).map_err(|e| match e {
        FactError::Malformed { key } if !out.success() => FactError::ProbeFailed {
            key,
            status: out.status,
            stderr: out.stderr_lossy(),
        },
        other => other,
    })?;
    wire.unfold(&mut facts.outputs)?;
    Ok(facts)
}

/// A probe that exited non-zero is an error unless the fact says otherwise.
pub fn require_success(key: &str, output: &ProbeOutput) -> Result<(), FactError> {
    if output.status == 0 {
        Ok(())
    } else {
        Err(FactError::ProbeFailed {
            key: key.to_string(),
            status: output.status,
            stderr: output.stderr.trim_end().to_string(),
        })
    }
}

/// Render probe outputs the way the batch script prints them (for tests and fixtures).
pub fn render_batch_output(probes: &[Probe], outputs: &BTreeMap<String, ProbeOutput>) -> String {
    let d = delimiter(probes);
    let mut s = String::new();
    for p in probes {
        let o = outputs.get(p.key.as_str()).cloned().unwrap_or_default();
        s.push_str(&format!(
            "{d} BEGIN {k}\n{out}\n{d} STDERR {k}\n{err}\n{d} END {k} {st}\n",
            k = p.key,
            out = o.stdout,
            err = o.stderr,
            st = o.status
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probes() -> Vec<Probe> {
        normalize(vec![
            Probe {
                key: ProbeKey::named("b"),
                script: "echo two".into(),
            },
            Probe {
                key: ProbeKey::named("a"),
                script: "echo one".into(),
            },
            Probe {
                key: ProbeKey::named("a"),
                script: "echo one".into(),
            },
        ])
        .unwrap()
    }

    #[test]
    fn batch_round_trip_keeps_stdout_stderr_and_status() {
        let probes = probes();
        assert_eq!(probes.len(), 2, "duplicates removed");
        let mut outputs = BTreeMap::new();
        outputs.insert(
            "a".to_string(),
            ProbeOutput {
                status: 0,
                stdout: "one\nline two\n".into(),
                stderr: String::new(),
            },
        );
        outputs.insert(
            "b".to_string(),
            ProbeOutput {
                status: 3,
                stdout: "no newline".into(),
                stderr: "boom\n".into(),
            },
        );
        let text = render_batch_output(&probes, &outputs);
        let facts = parse_batch(&probes, &text).unwrap();
        assert_eq!(facts.raw("a"), outputs.get("a"));
        assert_eq!(facts.raw("b"), outputs.get("b"));
    }

    #[test]
    fn truncated_output_is_an_error_not_empty_facts() {
        let probes = probes();
        let text = render_batch_output(&probes, &BTreeMap::new());
        let cut = &text[..text.len() - 10];
        assert!(matches!(
            parse_batch(&probes, cut),
            Err(FactError::Malformed { key }) if key == "b"
        ));
    }

    /// Probes run concurrently: `a` (first in order) can only succeed if `b` runs while
    /// `a` is still waiting. Run one after the other, `a` gives up and fails.
    /// Regression: probes were deduplicated by key alone, so two facts whose keys collided
    /// (`sysctl:{number of keys}`) silently shared one script's output.
    #[test]
    fn probes_with_one_key_and_different_scripts_are_an_error_not_deduplicated() {
        let p = |script: &str| Probe {
            key: ProbeKey::about_set("sysctl", &["kernel.a", "net.b"]),
            script: script.into(),
        };
        let same = normalize(vec![p("echo a"), p("echo a")]).unwrap();
        assert_eq!(same.len(), 1, "the same probe twice runs once");
        let e = normalize(vec![p("echo a"), p("echo b")]).unwrap_err();
        assert!(
            matches!(&e, FactError::KeyConflict { key } if key == "sysctl:kernel.a,net.b"),
            "{e}"
        );
    }

    /// Each shape of key names one thing: a set in any order is one key, two sets of the
    /// same size are two, a comma inside a subject cannot pass for two subjects, and a
    /// host-wide name never equals a `kind:subject` key.
    #[test]
    fn probe_keys_of_different_facts_differ() {
        let set = ProbeKey::about_set("sysctl", &["net.b", "kernel.a", "net.b"]);
        assert_eq!(set, ProbeKey::about_set("sysctl", &["kernel.a", "net.b"]));
        assert_eq!(set.as_str(), "sysctl:kernel.a,net.b");
        assert_ne!(set, ProbeKey::about_set("sysctl", &["kernel.a", "net.c"]));
        assert_ne!(
            ProbeKey::about_set("sysctl", &["a,b"]),
            ProbeKey::about_set("sysctl", &["a", "b"])
        );
        assert_ne!(
            ProbeKey::about_set("sysctl", &["a\\", "b"]),
            ProbeKey::about_set("sysctl", &["a\\,b"])
        );
        assert_eq!(
            ProbeKey::about("path", "/etc/motd").as_str(),
            "path:/etc/motd"
        );
        assert_ne!(ProbeKey::about("unit", "ufw"), ProbeKey::named("ufw"));
    }

    #[test]
    fn probes_run_concurrently_on_the_host() {
        let dir = std::env::temp_dir().join(format!("provision-facts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let flag = dir.join("b-ran");
        let _ = std::fs::remove_file(&flag);
        let probes = normalize(vec![
            Probe {
                key: ProbeKey::named("a"),
                script: format!(
                    "i=0; while [ ! -e {f} ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; [ -e {f} ] && echo saw-b",
                    f = flag.display()
                ),
            },
            Probe {
                key: ProbeKey::named("b"),
                script: format!("touch {}", flag.display()),
            },
        ]).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(batch_script(&probes))
            .output()
            .unwrap();
        let facts = parse_batch(&probes, &String::from_utf8_lossy(&out.stdout)).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(facts.raw("a").unwrap().stdout, "saw-b\n");
        assert_eq!(facts.raw("a").unwrap().status, 0);
    }

    #[test]
    fn batch_script_runs_for_real_under_sh() {
        let probes = normalize(vec![
            Probe {
                key: ProbeKey::named("ok"),
                script: "echo hello; echo warn >&2".into(),
            },
            Probe {
                key: ProbeKey::named("fails"),
                script: "exit 7".into(),
            },
            Probe {
                key: ProbeKey::named("reads-stdin"),
                script: "cat; echo done".into(),
            },
        ])
        .unwrap();
        let script = batch_script(&probes);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        let facts = parse_batch(&probes, &String::from_utf8_lossy(&out.stdout)).unwrap();
        let ok = facts.raw("ok").unwrap();
        assert_eq!(
            (ok.status, ok.stdout.as_str(), ok.stderr.as_str()),
            (0, "hello\n", "warn\n")
        );
        assert_eq!(facts.raw("fails").unwrap().status, 7);
        assert_eq!(facts.raw("reads-stdin").unwrap().stdout, "done\n");
    }
}
