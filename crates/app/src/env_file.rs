//! The app's `.env`: generated secrets that are created once and kept forever.
//!
//! The `.env` template decides which keys are secrets: `KEY={{ secret("KEY", "hex", 32) }}`
//! declares one (kind and size), `{{ secret("KEY") }}` elsewhere refers to it, so composite
//! values such as `DATABASE_URL=postgresql://u:{{ secret("DB_PASSWORD") }}@postgres/db` are
//! derived from the same value the database gets. `KEY={{ keep("default") }}` marks a value
//! the operator fills in on the host (an SMTP password): it is kept once set.
//!
//! Planning, from the `.env` on the host (read as a fact):
//! - a secret keeps its value byte for byte, unless it is missing, empty, a `CHANGE_ME`
//!   placeholder, or listed in `rotate`; then it gets a freshly generated value;
//! - derived values are recomputed from the (kept or new) secrets, so they always agree;
//! - plain values follow the template and the inventory (`app.env` overrides any key);
//! - keys on the host that neither the template nor the inventory knows are kept, at the
//!   end of the file.
//!
//! Randomness is drawn when the resource is built (one candidate per declared secret, from
//! the RNG the caller passes: the OS CSPRNG in production, a seeded one in tests), never in
//! `plan`: planning stays a pure function of the facts, and the engine's verify pass (which
//! plans again after applying) sees a rotated key holding exactly the new candidate and
//! calls it done. Candidates for keys the host already has are simply never used.
//!
//! The file is written 0600 and marked sensitive: its content never appears in diffs,
//! plans, reports or `Debug` output; plan summaries name keys only.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use common::facts::builtin::{PathKind, PathState};
use common::resource::ResourceId;
use common::shell::quote;
use common::{Action, Fact, FactError, Facts, Plan, Probe, Resource};
use rand::CryptoRng;

use crate::AppError;
use common::PlanError;

/// A value on the host that is only a placeholder, never a real secret.
pub(crate) const PLACEHOLDER: &str = "CHANGE_ME";

/// Alphabet of a generated secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// Standard base64 with padding of `size` random bytes, like `openssl rand -base64
    /// size` (seeds/002 §4.4) on one line. Contains `+`, `/` and `=`: not for URLs.
    Base64,
    /// URL-safe base64 without padding of `size` random bytes.
    UrlSafe,
    /// Lowercase hex of `size` random bytes: safe in URLs, shell words and any config.
    Hex,
    /// `size` characters from `[A-Za-z0-9]`, uniformly (e.g. MinIO allows 40 at most).
    Alnum,
}

impl SecretKind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "base64" => SecretKind::Base64,
            "urlsafe" => SecretKind::UrlSafe,
            "hex" => SecretKind::Hex,
            "alnum" => SecretKind::Alnum,
            _ => return None,
        })
    }
}

/// How to generate one secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretSpec {
    pub kind: SecretKind,
    /// Random bytes (base64, urlsafe, hex) or characters (alnum).
    pub size: u32,
}

impl SecretSpec {
    /// A new value from a cryptographically secure generator.
    pub(crate) fn generate(&self, rng: &mut dyn CryptoRng) -> String {
        let size = self.size as usize;
        match self.kind {
            SecretKind::Alnum => {
                const ALPHABET: &[u8; 62] =
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
                let mut out = String::with_capacity(size);
                let mut byte = [0u8; 1];
                while out.len() < size {
                    rng.fill_bytes(&mut byte);
                    // 248 = 4 × 62: rejecting the rest keeps every character equally likely.
                    if byte[0] < 248 {
                        out.push(ALPHABET[(byte[0] % 62) as usize] as char);
                    }
                }
                out
            }
            kind => {
                let mut bytes = vec![0u8; size];
                rng.fill_bytes(&mut bytes);
                match kind {
                    SecretKind::Base64 => base64::engine::general_purpose::STANDARD.encode(&bytes),
                    SecretKind::UrlSafe => {
                        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes)
                    }
                    _ => bytes.iter().map(|b| format!("{b:02x}")).collect(),
                }
            }
        }
    }
}

/// Sentinels the template functions return; they cannot occur in rendered text otherwise.
const MARK: char = '\u{1}';

/// What the template functions recorded while the `.env` template rendered.
#[derive(Debug, Clone, Default)]
pub(crate) struct EnvRegistry {
    specs: BTreeMap<String, SecretSpec>,
    keeps: Vec<String>,
}

fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl EnvRegistry {
    /// `secret(KEY)` or `secret(KEY, kind, size)`.
    pub(crate) fn secret(
        &mut self,
        key: &str,
        kind: Option<&str>,
        size: Option<u32>,
    ) -> Result<String, String> {
        if !valid_key(key) {
            return Err(format!("secret(): `{key}` is not a valid variable name"));
        }
        match (kind, size) {
            (None, None) => {}
            (Some(kind), Some(size)) => {
                let kind = SecretKind::parse(kind).ok_or_else(|| {
                    format!(
                        "secret(\"{key}\"): unknown kind `{kind}` (base64, urlsafe, hex, alnum)"
                    )
                })?;
                if !(16..=1024).contains(&size) {
                    return Err(format!(
                        "secret(\"{key}\"): size {size} is outside 16..=1024"
                    ));
                }
                let spec = SecretSpec { kind, size };
                if let Some(old) = self.specs.insert(key.to_string(), spec)
                    && old != spec
                {
                    return Err(format!(
                        "secret(\"{key}\") is declared twice with different kinds or sizes"
                    ));
                }
            }
            _ => {
                return Err(format!(
                    "secret(\"{key}\", kind, size): give both kind and size, or neither to refer to it"
                ));
            }
        }
        Ok(format!("{MARK}secret:{key}{MARK}"))
    }

    /// `keep(default)`.
    pub(crate) fn keep(&mut self, default: String) -> String {
        self.keeps.push(default);
        format!("{MARK}keep:{}{MARK}", self.keeps.len() - 1)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Text(String),
    Secret(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum EnvValue {
    Plain(String),
    /// The line's own generated secret.
    Secret,
    /// Text and references to secrets.
    Derived(Vec<Segment>),
    /// Kept from the host once set; the default otherwise.
    Keep(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum EnvLine {
    /// Comment or blank line.
    Verbatim(String),
    Entry {
        key: String,
        value: EnvValue,
    },
}

/// The rendered `.env` template, with its secrets still symbolic.
#[derive(Clone)]
pub struct EnvTemplate {
    lines: Vec<EnvLine>,
    secrets: BTreeMap<String, SecretSpec>,
}

impl std::fmt::Debug for EnvTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvTemplate")
            .field("keys", &self.keys())
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl EnvTemplate {
    /// Parse rendered text; errors carry the rendered line number.
    pub(crate) fn parse(text: &str, registry: EnvRegistry) -> Result<Self, (usize, String)> {
        let mut lines = Vec::new();
        let mut own_lines: BTreeSet<String> = BTreeSet::new();
        let mut referenced: BTreeSet<String> = BTreeSet::new();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                if line.contains(MARK) {
                    return Err((n, "secret() or keep() in a comment".into()));
                }
                lines.push(EnvLine::Verbatim(line.to_string()));
                continue;
            }
            let Some((key, raw)) = line.split_once('=') else {
                return Err((n, format!("expected KEY=value, found {line:?}")));
            };
            if !valid_key(key) {
                return Err((n, format!("`{key}` is not a valid variable name")));
            }
            if !seen.insert(key.to_string()) {
                return Err((n, format!("`{key}` is set twice")));
            }
            let segments = split_segments(raw).map_err(|p| (n, p))?;
            let value = match segments.as_slice() {
                [] => EnvValue::Plain(String::new()),
                [Segment::Text(t)] if t.starts_with(&format!("{MARK}keep:")) => {
                    let index: usize = t
                        .trim_matches(MARK)
                        .trim_start_matches("keep:")
                        .parse()
                        .map_err(|_| (n, "malformed keep()".to_string()))?;
                    let default = registry.keeps[index].clone();
                    if default.contains(['\n', '\r']) {
                        return Err((n, format!("keep(): the default of `{key}` spans lines")));
                    }
                    EnvValue::Keep(default)
                }
                [Segment::Text(t)] => EnvValue::Plain(t.clone()),
                [Segment::Secret(s)] if s == key => {
                    own_lines.insert(key.to_string());
                    EnvValue::Secret
                }
                _ => {
                    if segments
                        .iter()
                        .any(|s| matches!(s, Segment::Text(t) if t.contains(MARK)))
                    {
                        return Err((n, "keep() must be the whole value".into()));
                    }
                    EnvValue::Derived(segments)
                }
            };
            if let EnvValue::Derived(segments) = &value {
                for s in segments {
                    if let Segment::Secret(k) = s {
                        referenced.insert(k.clone());
                    }
                }
            }
            lines.push(EnvLine::Entry {
                key: key.to_string(),
                value,
            });
        }
        for key in registry.specs.keys() {
            if !own_lines.contains(key) {
                return Err((
                    0,
                    format!(
                        "secret `{key}` has no line `{key}={{{{ secret(\"{key}\", ...) }}}}` of its own: a generated value must be stored to be kept"
                    ),
                ));
            }
        }
        for key in own_lines.iter().chain(&referenced) {
            if !registry.specs.contains_key(key) {
                return Err((
                    0,
                    format!(
                        "secret `{key}` is used but never declared with a kind and size, e.g. secret(\"{key}\", \"hex\", 32)"
                    ),
                ));
            }
        }
        Ok(Self {
            lines,
            secrets: registry.specs,
        })
    }

    /// Keys the template sets, in order.
    pub fn keys(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                EnvLine::Entry { key, .. } => Some(key.as_str()),
                EnvLine::Verbatim(_) => None,
            })
            .collect()
    }

    /// Keys of the generated secrets, with how they are generated.
    pub fn secrets(&self) -> &BTreeMap<String, SecretSpec> {
        &self.secrets
    }
}

fn split_segments(raw: &str) -> Result<Vec<Segment>, String> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(start) = rest.find(MARK) {
        let after = &rest[start + MARK.len_utf8()..];
        let end = after
            .find(MARK)
            .ok_or_else(|| "unterminated secret() or keep()".to_string())?;
        let token = &after[..end];
        if start > 0 {
            out.push(Segment::Text(rest[..start].to_string()));
        }
        match token.strip_prefix("secret:") {
            Some(key) => out.push(Segment::Secret(key.to_string())),
            // keep() stays a marked text segment; the caller checks it stands alone.
            None => out.push(Segment::Text(format!("{MARK}{token}{MARK}"))),
        }
        rest = &after[end + MARK.len_utf8()..];
    }
    if !rest.is_empty() {
        out.push(Segment::Text(rest.to_string()));
    }
    Ok(out)
}

/// The `.env` of a host, as `KEY → raw value` (last assignment wins, like compose and the
/// shell), plus the keys in order of first appearance.
#[derive(Debug, Default)]
struct HostEnv {
    values: BTreeMap<String, String>,
    order: Vec<String>,
}

impl HostEnv {
    fn parse(text: &str) -> Self {
        let mut env = HostEnv::default();
        for line in text.lines() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            let trimmed = line.trim_start();
            if trimmed.starts_with('#') {
                continue;
            }
            let trimmed = trimmed.strip_prefix("export ").unwrap_or(trimmed);
            let Some((key, raw)) = trimmed.split_once('=') else {
                continue;
            };
            let key = key.trim_end();
            if !valid_key(key) {
                continue;
            }
            if !env.values.contains_key(key) {
                env.order.push(key.to_string());
            }
            env.values.insert(key.to_string(), raw.to_string());
        }
        env
    }
}

/// A raw `.env` value without surrounding quotes (for use inside derived values).
fn unquote(raw: &str) -> &str {
    let t = raw.trim();
    for q in ['"', '\''] {
        if t.len() >= 2 && t.starts_with(q) && t.ends_with(q) {
            return &t[1..t.len() - 1];
        }
    }
    t
}

fn is_unset(raw: &str) -> bool {
    let v = unquote(raw);
    v.is_empty() || v.contains(PLACEHOLDER)
}

/// What planning decided for the file (key names only: safe to show).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvOutcome {
    /// The new file content (contains secrets: never print it).
    pub content: String,
    /// Secrets that get a new value because they were missing or placeholders.
    pub generated: Vec<String>,
    /// Secrets that get a new value because they were asked to rotate.
    pub rotated: Vec<String>,
    /// Secrets whose value on the host is kept.
    pub kept: Vec<String>,
    /// Keys of the host file kept although the template does not set them.
    pub foreign: Vec<String>,
}

impl EnvOutcome {
    fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.generated.is_empty() {
            parts.push(format!("generate {}", self.generated.join(", ")));
        }
        if !self.rotated.is_empty() {
            parts.push(format!("rotate {}", self.rotated.join(", ")));
        }
        if !self.kept.is_empty() {
            parts.push(format!("keep {} secrets", self.kept.len()));
        }
        if !self.foreign.is_empty() {
            parts.push(format!("keep {} keys set by hand", self.foreign.len()));
        }
        parts.join("; ")
    }
}

/// The `.env` file resource.
pub struct EnvFile {
    pub path: String,
    pub owner: String,
    pub group: String,
    template: EnvTemplate,
    /// `app.env` from the inventory.
    overrides: BTreeMap<String, String>,
    rotate: BTreeSet<String>,
    /// One freshly generated candidate per declared secret (see the module docs).
    candidates: BTreeMap<String, String>,
    /// Keys of `app.env_commands` whose command was not run: the file cannot be planned.
    pending: Vec<String>,
}

impl std::fmt::Debug for EnvFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvFile")
            .field("path", &self.path)
            .field("owner", &self.owner)
            .field("group", &self.group)
            .field("secrets", &self.template.secrets.keys().collect::<Vec<_>>())
            .field("overrides", &self.overrides.keys().collect::<Vec<_>>())
            .field("rotate", &self.rotate)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

/// The file mode of `.env`.
pub const MODE: u32 = 0o600;

impl EnvFile {
    pub fn new(
        path: impl Into<String>,
        template: EnvTemplate,
        overrides: BTreeMap<String, String>,
        rotate: &[String],
        rng: &mut dyn CryptoRng,
    ) -> Result<Self, AppError> {
        for (key, value) in &overrides {
            if !valid_key(key) {
                return Err(AppError::EnvVar {
                    key: key.clone(),
                    problem: "not a valid variable name".into(),
                });
            }
            if value.contains(['\n', '\r']) {
                return Err(AppError::EnvVar {
                    key: key.clone(),
                    problem: "values cannot span lines".into(),
                });
            }
        }
        let secrets: Vec<&String> = template.secrets.keys().collect();
        for key in rotate {
            let reason = if !template.secrets.contains_key(key) {
                Some(format!(
                    "it is not a generated secret of this .env; secrets: {}",
                    secrets
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            } else if overrides.contains_key(key) {
                Some(format!(
                    "its value is set in the inventory (app.env.{key}); change it there"
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(AppError::Rotate {
                    key: key.clone(),
                    reason,
                });
            }
        }
        let candidates = template
            .secrets
            .iter()
            .map(|(k, spec)| (k.clone(), spec.generate(rng)))
            .collect();
        Ok(Self {
            path: path.into(),
            owner: "root".into(),
            group: "root".into(),
            template,
            overrides,
            rotate: rotate.iter().cloned().collect(),
            candidates,
            pending: Vec::new(),
        })
    }

    pub fn owned_by(mut self, owner: &str, group: &str) -> Self {
        self.owner = owner.into();
        self.group = group.into();
        self
    }

    /// Keys whose values come from vault commands that were not run (see
    /// [`crate::AppOptions::run_env_commands`]); planning refuses them.
    pub fn pending(mut self, keys: Vec<String>) -> Self {
        self.pending = keys;
        self
    }

    pub fn template(&self) -> &EnvTemplate {
        &self.template
    }

    /// Pure: the file to write given the host's current `.env` (None: there is none).
    pub fn outcome(&self, existing: Option<&str>) -> EnvOutcome {
        let host = existing.map(HostEnv::parse).unwrap_or_default();
        let mut out = EnvOutcome::default();

        // Raw value of every secret: from the inventory, kept, or a new candidate.
        let mut resolved: BTreeMap<&str, String> = BTreeMap::new();
        for key in self.template.secrets.keys() {
            let candidate = &self.candidates[key];
            let value = if let Some(v) = self.overrides.get(key) {
                v.clone()
            } else {
                match host.values.get(key) {
                    Some(raw) if is_unset(raw) => {
                        out.generated.push(key.clone());
                        candidate.clone()
                    }
                    // Rotated already (this is the verify pass, or a re-run of the same plan).
                    Some(raw) if self.rotate.contains(key) && unquote(raw) == candidate => {
                        out.rotated.push(key.clone());
                        raw.clone()
                    }
                    Some(_) if self.rotate.contains(key) => {
                        out.rotated.push(key.clone());
                        candidate.clone()
                    }
                    Some(raw) => {
                        out.kept.push(key.clone());
                        raw.clone()
                    }
                    None => {
                        out.generated.push(key.clone());
                        candidate.clone()
                    }
                }
            };
            resolved.insert(key, value);
        }

        let mut text = String::new();
        let mut written: BTreeSet<&str> = BTreeSet::new();
        for line in &self.template.lines {
            match line {
                EnvLine::Verbatim(l) => text.push_str(l),
                EnvLine::Entry { key, value } => {
                    written.insert(key);
                    let v = match (self.overrides.get(key), value) {
                        (Some(o), _) => o.clone(),
                        (None, EnvValue::Plain(p)) => p.clone(),
                        (None, EnvValue::Secret) => resolved[key.as_str()].clone(),
                        (None, EnvValue::Derived(segments)) => segments
                            .iter()
                            .map(|s| match s {
                                Segment::Text(t) => t.as_str(),
                                Segment::Secret(k) => unquote(&resolved[k.as_str()]),
                            })
                            .collect(),
                        (None, EnvValue::Keep(default)) => host
                            .values
                            .get(key)
                            .filter(|raw| !unquote(raw).is_empty())
                            .cloned()
                            .unwrap_or_else(|| default.clone()),
                    };
                    text.push_str(key);
                    text.push('=');
                    text.push_str(&v);
                }
            }
            text.push('\n');
        }
        let extra: Vec<(&String, &String)> = self
            .overrides
            .iter()
            .filter(|(k, _)| !written.contains(k.as_str()))
            .collect();
        if !extra.is_empty() {
            text.push_str("\n# Set in the inventory (app.env)\n");
            for (k, v) in extra {
                written.insert(k);
                text.push_str(&format!("{k}={v}\n"));
            }
        }
        let foreign: Vec<&String> = host
            .order
            .iter()
            .filter(|k| !written.contains(k.as_str()))
            .collect();
        if !foreign.is_empty() {
            text.push_str("\n# Kept from the existing file (not in the template)\n");
            for k in foreign {
                text.push_str(&format!("{k}={}\n", host.values[k]));
                out.foreign.push(k.clone());
            }
        }
        out.content = text;
        out
    }

    fn fact(&self) -> PathState {
        PathState::new(&self.path)
    }
}

impl Resource for EnvFile {
    fn id(&self) -> ResourceId {
        ResourceId::of("env", &self.path)
    }

    fn probes(&self) -> Vec<Probe> {
        vec![self.fact().probe()]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        if let Some(key) = self.pending.first() {
            return Err(PlanError::InvalidVar {
                field: format!("app.env_commands.{key}"),
                expected: "the output of the command (it was not run for this plan)".into(),
                value: String::new(),
            });
        }
        let current = facts.read(&self.fact())?;
        let key = self.fact().probe().key.to_string();
        let existing = match (&current.kind, &current.content) {
            (PathKind::Absent, _) => None,
            (PathKind::File, Some(bytes)) => Some(String::from_utf8(bytes.clone()).map_err(
                |_| FactError::Parse {
                    key: key.clone(),
                    what: "a UTF-8 .env file (refusing to rewrite it)".into(),
                    line: format!("{} bytes", bytes.len()),
                },
            )?),
            (PathKind::File, None) => {
                return Err(FactError::Parse {
                    key,
                    what: "a .env small enough to read (secrets in it must be kept)".into(),
                    line: format!("{} bytes", current.size),
                }
                .into());
            }
            (other, _) => {
                return Err(FactError::Parse {
                    key,
                    what: "a regular file".into(),
                    line: format!("{other:?}"),
                }
                .into());
            }
        };
        let outcome = self.outcome(existing.as_deref());
        let summary = outcome.summary();
        let desired = common::resources::File::new(&self.path, outcome.content)
            .mode(MODE)
            .owned_by(&self.owner, &self.group)
            .sensitive();
        let Some((change, action)) = desired.changes(&current)? else {
            return Ok(Plan::noop(format!(
                "{} is up to date ({summary})",
                self.path
            )));
        };
        if !matches!(action, Action::WriteFile(_)) {
            // Only the mode or owner differ: fixed in place, the file is not rewritten.
            return Ok(Plan::change(change, vec![action]));
        }
        Ok(Plan::change(
            format!("{change} ({summary})"),
            vec![
                action,
                // The writer keeps the replaced file as a backup with its old mode: it holds
                // the old secrets, so it gets the same protection.
                Action::run(format!("protect the backup of {}", self.path), {
                    let backup = format!("{}.provision-bak", self.path);
                    format!(
                        "if [ -f {} ]; then\n{}\nfi",
                        quote(&backup),
                        common::shell::chown_chmod(&backup, &self.owner, &self.group, MODE)
                    )
                }),
            ],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::facts::ProbeOutput;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const TEMPLATE: &str = "# header\nAPP=web\nDB_PASSWORD={{ secret(\"DB_PASSWORD\", \"hex\", 32) }}\nDATABASE_URL=postgresql://u:{{ secret(\"DB_PASSWORD\") }}@db/x\nJWT_SECRET={{ secret(\"JWT_SECRET\", \"base64\", 64) }}\nSMTP_PASSWORD={{ keep(\"change-me-later\") }}\n";

    fn template(text: &str) -> EnvTemplate {
        let t = crate::templates::Templates::load("test", &[("env", text)], None).unwrap();
        t.render_env("env", &serde_json::json!({})).unwrap()
    }

    fn env_file(text: &str, rotate: &[&str], seed: u64) -> EnvFile {
        let rotate: Vec<String> = rotate.iter().map(|s| s.to_string()).collect();
        EnvFile::new(
            "/opt/x/.env",
            template(text),
            BTreeMap::new(),
            &rotate,
            &mut StdRng::seed_from_u64(seed),
        )
        .unwrap()
        .owned_by("deploy", "deploy")
    }

    fn values(text: &str) -> BTreeMap<String, String> {
        HostEnv::parse(text).values
    }

    fn facts_with(path: &str, state: Option<(&str, u32, &str)>) -> Facts {
        let p = PathState::new(path);
        let stdout = match state {
            None => "absent\n".to_string(),
            Some((content, mode, owner)) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(content);
                format!(
                    "regular file|{mode:o}|{owner}|{owner}|{}\n{b64}\n",
                    content.len()
                )
            }
        };
        Facts::from_outputs([(
            p.probe().key,
            ProbeOutput {
                status: 0,
                stdout,
                stderr: String::new(),
            },
        )])
    }

    #[test]
    fn generated_secrets_have_the_declared_shape() {
        let mut rng = StdRng::seed_from_u64(1);
        let b64 = SecretSpec {
            kind: SecretKind::Base64,
            size: 32,
        }
        .generate(&mut rng);
        assert_eq!(b64.len(), 44, "openssl rand -base64 32 is 44 characters");
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&b64)
                .unwrap()
                .len(),
            32
        );
        let b64_64 = SecretSpec {
            kind: SecretKind::Base64,
            size: 64,
        }
        .generate(&mut rng);
        assert_eq!(b64_64.len(), 88);
        let hex = SecretSpec {
            kind: SecretKind::Hex,
            size: 32,
        }
        .generate(&mut rng);
        assert!(hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()));
        let url = SecretSpec {
            kind: SecretKind::UrlSafe,
            size: 32,
        }
        .generate(&mut rng);
        assert!(
            url.len() == 43
                && url
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        let alnum = SecretSpec {
            kind: SecretKind::Alnum,
            size: 32,
        }
        .generate(&mut rng);
        assert!(alnum.len() == 32 && alnum.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(
            SecretSpec {
                kind: SecretKind::Hex,
                size: 32
            }
            .generate(&mut rng),
            hex
        );
    }

    #[test]
    fn fresh_file_generates_every_secret_and_derives_composites() {
        let f = env_file(TEMPLATE, &[], 7);
        let o = f.outcome(None);
        assert_eq!(o.generated, ["DB_PASSWORD", "JWT_SECRET"]);
        let v = values(&o.content);
        assert_eq!(v["APP"], "web");
        assert_eq!(v["DB_PASSWORD"].len(), 64);
        assert_eq!(
            v["DATABASE_URL"],
            format!("postgresql://u:{}@db/x", v["DB_PASSWORD"])
        );
        assert_eq!(v["SMTP_PASSWORD"], "change-me-later");
        assert!(o.content.starts_with("# header\nAPP=web\n"));
        assert!(!o.content.contains(MARK));
    }

    #[test]
    fn replan_with_existing_env_keeps_every_secret_byte_identical() {
        let first = env_file(TEMPLATE, &[], 1).outcome(None).content;
        // A different generator (a later run) must not change anything.
        let second = env_file(TEMPLATE, &[], 2).outcome(Some(&first));
        assert_eq!(second.content, first);
        assert_eq!(second.kept, ["DB_PASSWORD", "JWT_SECRET"]);
        assert!(second.generated.is_empty() && second.rotated.is_empty());
    }

    #[test]
    fn a_new_key_in_the_template_keeps_the_old_values() {
        let first = env_file(TEMPLATE, &[], 1).outcome(None).content;
        let bigger = format!(
            "{TEMPLATE}REDIS_PASSWORD={{{{ secret(\"REDIS_PASSWORD\", \"hex\", 32) }}}}\nNEW_PLAIN=1\n"
        );
        let second = env_file(&bigger, &[], 2).outcome(Some(&first));
        let (old, new) = (values(&first), values(&second.content));
        for k in ["DB_PASSWORD", "DATABASE_URL", "JWT_SECRET", "SMTP_PASSWORD"] {
            assert_eq!(old[k], new[k], "{k} kept");
        }
        assert_eq!(second.generated, ["REDIS_PASSWORD"]);
        assert_eq!(new["REDIS_PASSWORD"].len(), 64);
        assert_eq!(new["NEW_PLAIN"], "1");
    }

    #[test]
    fn rotate_changes_only_that_key_and_what_derives_from_it() {
        let first = env_file(TEMPLATE, &[], 1).outcome(None).content;
        let f = env_file(TEMPLATE, &["DB_PASSWORD"], 2);
        let rotated = f.outcome(Some(&first));
        assert_eq!(rotated.rotated, ["DB_PASSWORD"]);
        let (old, new) = (values(&first), values(&rotated.content));
        assert_ne!(old["DB_PASSWORD"], new["DB_PASSWORD"]);
        assert_eq!(
            new["DATABASE_URL"],
            format!("postgresql://u:{}@db/x", new["DB_PASSWORD"])
        );
        for k in ["APP", "JWT_SECRET", "SMTP_PASSWORD"] {
            assert_eq!(old[k], new[k], "{k} unchanged");
        }
        // The verify pass plans again from the written file: nothing more to do.
        assert_eq!(f.outcome(Some(&rotated.content)).content, rotated.content);
    }

    #[test]
    fn placeholders_and_empty_values_are_generated_other_values_kept() {
        let host = "APP=old\nDB_PASSWORD=CHANGE_ME_DB_PASSWORD\nJWT_SECRET=\nSMTP_PASSWORD=real-one\nDATABASE_URL=postgresql://u:CHANGE_ME_DB_PASSWORD@db/x\n";
        let o = env_file(TEMPLATE, &[], 3).outcome(Some(host));
        assert_eq!(o.generated, ["DB_PASSWORD", "JWT_SECRET"]);
        let v = values(&o.content);
        assert!(!o.content.contains(PLACEHOLDER));
        assert_eq!(v["APP"], "web", "plain values follow the template");
        assert_eq!(
            v["SMTP_PASSWORD"], "real-one",
            "keep() keeps the operator's value"
        );
    }

    #[test]
    fn hand_added_keys_are_kept_at_the_end_and_stay_stable() {
        let first = env_file(TEMPLATE, &[], 1).outcome(None).content;
        let edited = format!("{first}MY_FLAG=\"on\"\n");
        let o = env_file(TEMPLATE, &[], 2).outcome(Some(&edited));
        assert_eq!(o.foreign, ["MY_FLAG"]);
        assert!(o.content.ends_with("MY_FLAG=\"on\"\n"));
        let again = env_file(TEMPLATE, &[], 3).outcome(Some(&o.content));
        assert_eq!(again.content, o.content);
    }

    #[test]
    fn quoted_existing_secret_is_kept_raw_and_unquoted_in_derived_values() {
        let host = "DB_PASSWORD=\"abc\"\nJWT_SECRET=j\n";
        let o = env_file(TEMPLATE, &[], 1).outcome(Some(host));
        let v = values(&o.content);
        assert_eq!(v["DB_PASSWORD"], "\"abc\"");
        assert_eq!(v["DATABASE_URL"], "postgresql://u:abc@db/x");
    }

    #[test]
    fn inventory_values_override_template_and_add_keys() {
        let overrides: BTreeMap<String, String> = [
            ("DB_PASSWORD".to_string(), "from-inventory".to_string()),
            ("EXTRA".to_string(), "1".to_string()),
        ]
        .into();
        let f = EnvFile::new(
            "/opt/x/.env",
            template(TEMPLATE),
            overrides,
            &[],
            &mut StdRng::seed_from_u64(1),
        )
        .unwrap();
        let v = values(&f.outcome(None).content);
        assert_eq!(v["DB_PASSWORD"], "from-inventory");
        assert_eq!(v["DATABASE_URL"], "postgresql://u:from-inventory@db/x");
        assert_eq!(v["EXTRA"], "1");
    }

    #[test]
    fn rotating_an_unknown_or_inventory_key_is_an_error() {
        let e = EnvFile::new(
            "/x/.env",
            template(TEMPLATE),
            BTreeMap::new(),
            &["DATABASE_URL".into()],
            &mut StdRng::seed_from_u64(1),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("DATABASE_URL") && e.contains("DB_PASSWORD, JWT_SECRET"),
            "{e}"
        );
        let e = EnvFile::new(
            "/x/.env",
            template(TEMPLATE),
            [("JWT_SECRET".to_string(), "x".to_string())].into(),
            &["JWT_SECRET".into()],
            &mut StdRng::seed_from_u64(1),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("app.env.JWT_SECRET"), "{e}");
    }

    #[test]
    fn template_mistakes_are_reported() {
        let render = |text: &str| {
            crate::templates::Templates::load("test", &[("env", text)], None)
                .unwrap()
                .render_env("env", &serde_json::json!({}))
                .unwrap_err()
                .to_string()
        };
        let e = render("URL=x{{ secret(\"A\") }}\n");
        assert!(e.contains("never declared"), "{e}");
        let e = render("URL=x{{ secret(\"A\", \"hex\", 32) }}\n");
        assert!(e.contains("no line `A="), "{e}");
        let e = render("A={{ secret(\"A\", \"rot13\", 32) }}\n");
        assert!(
            e.contains("unknown kind `rot13`") && e.contains("line 1"),
            "{e}"
        );
        let e = render("ok=1\nnot a line\n");
        assert!(e.contains("line 2") && e.contains("KEY=value"), "{e}");
        let e = render("A=1\nA=2\n");
        assert!(e.contains("set twice"), "{e}");
    }

    #[test]
    fn plan_creates_the_file_sensitive_0600() {
        let f = env_file(TEMPLATE, &[], 1);
        let plan = f.plan(&facts_with("/opt/x/.env", None)).unwrap();
        let Plan::Change { summary, actions } = &plan else {
            panic!("{plan:?}")
        };
        assert_eq!(
            summary,
            "create /opt/x/.env (generate DB_PASSWORD, JWT_SECRET)"
        );
        let Action::WriteFile(w) = &actions[0] else {
            panic!("{actions:?}")
        };
        assert!(w.sensitive);
        assert_eq!(
            (w.mode, w.owner.as_str(), w.group.as_str()),
            (0o600, "deploy", "deploy")
        );
        assert!(
            matches!(&actions[1], Action::Run { script, .. } if script.contains(".env.provision-bak"))
        );
    }

    #[test]
    fn plan_is_a_noop_when_the_file_is_current() {
        let f = env_file(TEMPLATE, &[], 1);
        let content = f.outcome(None).content;
        let plan = f
            .plan(&facts_with(
                "/opt/x/.env",
                Some((&content, 0o600, "deploy")),
            ))
            .unwrap();
        assert_eq!(
            plan,
            Plan::noop("/opt/x/.env is up to date (keep 2 secrets)")
        );
    }

    #[test]
    fn plan_fixes_mode_without_rewriting() {
        let f = env_file(TEMPLATE, &[], 1);
        let content = f.outcome(None).content;
        let plan = f
            .plan(&facts_with(
                "/opt/x/.env",
                Some((&content, 0o644, "deploy")),
            ))
            .unwrap();
        let Plan::Change { actions, .. } = &plan else {
            panic!("{plan:?}")
        };
        assert_eq!(actions.len(), 1);
        assert!(
            matches!(&actions[0], Action::Run { script, .. } if script.contains("chmod -- 600 /opt/x/.env"))
        );
    }

    #[test]
    fn unreadable_existing_file_is_an_error_not_a_rewrite() {
        let f = env_file(TEMPLATE, &[], 1);
        let p = PathState::new("/opt/x/.env");
        let too_big = Facts::from_outputs([(
            p.probe().key,
            ProbeOutput {
                status: 0,
                stdout: "regular file|600|deploy|deploy|2000000\n".into(),
                stderr: String::new(),
            },
        )]);
        assert!(f.plan(&too_big).is_err());
        let failed = Facts::from_outputs([(
            p.probe().key,
            common::testing::failed(1, "stat: permission denied"),
        )]);
        assert!(f.plan(&failed).is_err());
    }
}
