use crate::facts::builtin::{PathKind, PathState, PathStateValue};
use crate::facts::{Fact, FactError, Facts, Probe, ProbeKey};
use crate::resource::PlanError;
use crate::resource::{Action, FileWrite, Plan, Resource, ResourceId};
use crate::shell::{chown_chmod, make_directory};

/// A whole file: content, mode and owner.
#[derive(Clone)]
pub struct File {
    pub path: String,
    pub content: Vec<u8>,
    pub mode: u32,
    pub owner: String,
    pub group: String,
    /// Secrets: never shown in diffs or logs.
    pub sensitive: bool,
    /// Command that must accept the new file before it is kept; the file's path is passed
    /// as its last argument.
    pub validate: Option<crate::shell::Command>,
}

impl File {
    pub fn new(path: impl Into<String>, content: impl Into<Vec<u8>>) -> Self {
        Self {
            path: path.into(),
            content: content.into(),
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
            sensitive: false,
            validate: None,
        }
    }

    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    pub fn owned_by(mut self, owner: &str, group: &str) -> Self {
        self.owner = owner.into();
        self.group = group.into();
        self
    }

    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    pub fn validate(mut self, command: crate::shell::Command) -> Self {
        self.validate = Some(command);
        self
    }
}

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("File")
            .field("path", &self.path)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("sensitive", &self.sensitive)
            .finish_non_exhaustive()
    }
}

/// Plan a full-content file against its current state (File, Line, Block and every
/// composite resource that writes whole files).
pub(crate) fn plan_file(
    desired: &File,
    current: &PathStateValue,
    what: &str,
) -> Result<Plan, PlanError> {
    Ok(match desired.changes_as(current, what)? {
        None => Plan::noop(format!("{} is up to date", desired.path)),
        Some((summary, action)) => Plan::change(summary, vec![action]),
    })
}

impl File {
    /// The one file planner: `None` when the file is as desired, else a summary and the
    /// one action that fixes it (a write, or chmod/chown when only those differ). A file
    /// too large for the probe to read back is compared by size and SHA-256.
    pub fn changes(&self, current: &PathStateValue) -> Result<Option<(String, Action)>, FactError> {
        self.changes_as(current, "update")
    }

    fn changes_as(
        &self,
        current: &PathStateValue,
        what: &str,
    ) -> Result<Option<(String, Action)>, FactError> {
        let desired = self;
        match &current.kind {
            PathKind::Absent | PathKind::File => {}
            other => {
                return Err(FactError::Parse {
                    key: ProbeKey::about("path", &desired.path).to_string(),
                    what: "a regular file".into(),
                    line: format!("{other:?}"),
                });
            }
        }
        let content_ok = match (&current.content, &current.sha256) {
            (Some(content), _) => *content == desired.content,
            // Too large to read back: same size and hash.
            (None, Some(hash)) => {
                current.size == desired.content.len() as u64
                    && *hash == sha256_hex(&desired.content)
            }
            (None, None) => false,
        };
        let attrs_ok = current.mode == desired.mode
            && current.owner == desired.owner
            && current.group == desired.group;
        if content_ok && attrs_ok {
            return Ok(None);
        }
        if content_ok {
            return Ok(Some((
                format!(
                    "{}: set mode {:o} owner {}:{} (was {:o} {}:{})",
                    desired.path,
                    desired.mode,
                    desired.owner,
                    desired.group,
                    current.mode,
                    current.owner,
                    current.group
                ),
                set_owner_and_mode(&desired.path, &desired.owner, &desired.group, desired.mode),
            )));
        }
        let summary = if current.kind == PathKind::Absent {
            format!("create {}", desired.path)
        } else {
            format!("{what} {}", desired.path)
        };
        Ok(Some((
            summary,
            Action::WriteFile(FileWrite {
                path: desired.path.clone(),
                content: desired.content.clone(),
                mode: desired.mode,
                owner: desired.owner.clone(),
                group: desired.group.clone(),
                previous: current.content.clone(),
                sensitive: desired.sensitive,
                validate: desired.validate.clone(),
            }),
        )))
    }
}

/// The text of a file about to be edited in place (empty when it does not exist). A file
/// larger than the probe reads back (1 MiB) is an error: editing it blind would replace
/// the whole file with only the managed lines.
pub fn editable_text(path: &str, current: &PathStateValue) -> Result<String, FactError> {
    if current.kind == PathKind::File && current.content.is_none() {
        return Err(FactError::Parse {
            key: ProbeKey::about("path", path).to_string(),
            what: "a file small enough to edit in place (at most 1 MiB)".into(),
            line: format!("{} bytes", current.size),
        });
    }
    let content = current.content.as_deref().unwrap_or_default();
    Ok(String::from_utf8_lossy(content).into_owned())
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Edit part of a file in place: its mode and owner are kept (new files get `new_mode`);
/// `what` names the change in the summary (`set line in`).
pub fn plan_edit(
    facts: &Facts,
    path: &str,
    new_mode: u32,
    what: &str,
    edit: impl FnOnce(&str) -> String,
) -> Result<Plan, PlanError> {
    let current = facts.read(&PathState::new(path))?;
    let new = edit(&editable_text(path, &current)?);
    let desired = if current.kind == PathKind::Absent {
        File::new(path, new).mode(new_mode)
    } else {
        File::new(path, new)
            .mode(current.mode)
            .owned_by(&current.owner, &current.group)
    };
    plan_file(&desired, &current, what)
}

/// The action that gives `path` its owner and mode (the file is not rewritten).
pub fn set_owner_and_mode(path: &str, owner: &str, group: &str, mode: u32) -> Action {
    Action::run(
        format!("chmod/chown {path}"),
        chown_chmod(path, owner, group, mode),
    )
}

/// `PATH: mode 750 deploy:deploy (was 755 root:root)`, or `None` when `current` already
/// has this mode and owner.
pub fn owner_and_mode_change(
    path: &str,
    mode: u32,
    owner: &str,
    group: &str,
    current: &PathStateValue,
) -> Option<String> {
    if current.mode == mode && current.owner == owner && current.group == group {
        return None;
    }
    Some(format!(
        "{path}: mode {mode:o} {owner}:{group} (was {:o} {}:{})",
        current.mode, current.owner, current.group
    ))
}

impl Resource for File {
    fn id(&self) -> ResourceId {
        ResourceId::file(&self.path)
    }

    fn probes(&self) -> Vec<Probe> {
        vec![PathState::new(&self.path).probe()]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let current = facts.read(&PathState::new(&self.path))?;
        plan_file(self, &current, "update")
    }
}

/// A directory with mode and owner (parents created as needed).
#[derive(Debug, Clone)]
pub struct Directory {
    pub path: String,
    pub mode: u32,
    pub owner: String,
    pub group: String,
}

impl Directory {
    pub fn new(path: impl Into<String>, mode: u32, owner: &str, group: &str) -> Self {
        Self {
            path: path.into(),
            mode,
            owner: owner.into(),
            group: group.into(),
        }
    }
}

impl Resource for Directory {
    fn id(&self) -> ResourceId {
        ResourceId::directory(&self.path)
    }

    fn probes(&self) -> Vec<Probe> {
        vec![PathState::new(&self.path).probe()]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let current = facts.read(&PathState::new(&self.path))?;
        let fix = Action::run(
            format!("directory {}", self.path),
            make_directory(&self.path, &self.owner, &self.group, self.mode),
        );
        match current.kind {
            PathKind::Absent => Ok(Plan::change(format!("create {}", self.path), vec![fix])),
            PathKind::Directory => Ok(
                match owner_and_mode_change(
                    &self.path,
                    self.mode,
                    &self.owner,
                    &self.group,
                    &current,
                ) {
                    None => Plan::noop(format!("{} exists", self.path)),
                    Some(summary) => Plan::change(summary, vec![fix]),
                },
            ),
            other => Err(FactError::Parse {
                key: ProbeKey::about("path", &self.path).to_string(),
                what: "a directory".into(),
                line: format!("{other:?}"),
            }
            .into()),
        }
    }
}

/// One line in a config file: replaces the first line matching `matches` (a prefix), or is
/// appended. The rest of the file is left as it is.
#[derive(Debug, Clone)]
pub struct Line {
    pub path: String,
    pub line: String,
    /// Lines starting with this (after leading whitespace) are the line to replace.
    pub matches: String,
    pub mode: u32,
}

impl Line {
    pub fn new(path: &str, matches: &str, line: &str) -> Self {
        Self {
            path: path.into(),
            line: line.into(),
            matches: matches.into(),
            mode: 0o644,
        }
    }

    /// Pure: the new file content.
    pub fn apply_to(&self, old: &str) -> String {
        let mut out = Vec::new();
        let mut done = false;
        for l in old.lines() {
            if !done && l.trim_start().starts_with(&self.matches) {
                out.push(self.line.as_str());
                done = true;
            } else if done && l.trim_start().starts_with(&self.matches) {
                // Later duplicates would override ours in most config formats: drop them.
                continue;
            } else {
                out.push(l);
            }
        }
        if !done {
            out.push(self.line.as_str());
        }
        let mut s = out.join("\n");
        s.push('\n');
        s
    }
}

impl Resource for Line {
    fn id(&self) -> ResourceId {
        ResourceId::line(&self.path, &self.matches)
    }

    fn probes(&self) -> Vec<Probe> {
        vec![PathState::new(&self.path).probe()]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        plan_edit(facts, &self.path, self.mode, "set line in", |old| {
            self.apply_to(old)
        })
    }
}

/// A block between marker comments, owned by this tool; the rest of the file is kept.
#[derive(Debug, Clone)]
pub struct Block {
    pub path: String,
    /// Distinguishes several blocks in one file.
    pub name: String,
    pub block: String,
    pub mode: u32,
}

impl Block {
    pub fn new(path: &str, name: &str, block: &str) -> Self {
        Self {
            path: path.into(),
            name: name.into(),
            block: block.into(),
            mode: 0o644,
        }
    }

    fn markers(&self) -> (String, String) {
        (
            format!("# BEGIN provision {}", self.name),
            format!("# END provision {}", self.name),
        )
    }

    /// Pure: the new file content.
    pub fn apply_to(&self, old: &str) -> String {
        let (begin, end) = self.markers();
        let mut body = self.block.trim_end_matches('\n').to_string();
        body = format!("{begin}\n{body}\n{end}\n");
        if let (Some(b), Some(e)) = (old.find(&begin), old.find(&end))
            && b < e
        {
            let after = &old[e + end.len()..];
            let after = after.strip_prefix('\n').unwrap_or(after);
            return format!("{}{body}{after}", &old[..b]);
        }
        let mut s = old.to_string();
        if !s.is_empty() && !s.ends_with('\n') {
            s.push('\n');
        }
        s.push_str(&body);
        s
    }
}

impl Resource for Block {
    fn id(&self) -> ResourceId {
        ResourceId::block(&self.path, &self.name)
    }

    fn probes(&self) -> Vec<Probe> {
        vec![PathState::new(&self.path).probe()]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        plan_edit(facts, &self.path, self.mode, "set block in", |old| {
            self.apply_to(old)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::facts::ProbeOutput;

    fn facts_with(path: &str, stdout: String) -> Facts {
        Facts::from_outputs(BTreeMap::from([(
            format!("path:{path}"),
            ProbeOutput {
                status: 0,
                stdout,
                stderr: String::new(),
            },
        )]))
    }

    /// Files above MAX_CONTENT come back as size and hash: the same content is a no-op
    /// (it used to be rewritten on every run and never verified as converged).
    #[test]
    fn large_file_is_compared_by_size_and_hash() {
        let content = vec![b'x'; 2 * 1024 * 1024];
        let file = File::new("/srv/big", content.clone());
        let same = facts_with(
            "/srv/big",
            format!(
                "regular file|644|root|root|{}\nsha256:{}\n",
                content.len(),
                sha256_hex(&content)
            ),
        );
        match file.plan(&same).unwrap() {
            Plan::Noop { reason } => assert_eq!(reason, "/srv/big is up to date"),
            other => panic!("{other:?}"),
        }
        let other = facts_with(
            "/srv/big",
            format!(
                "regular file|644|root|root|{}\nsha256:{}\n",
                content.len(),
                sha256_hex(b"something else")
            ),
        );
        match file.plan(&other).unwrap() {
            Plan::Change { summary, actions } => {
                assert_eq!(summary, "update /srv/big");
                assert!(matches!(&actions[..], [Action::WriteFile(w)] if w.content == content));
            }
            other => panic!("{other:?}"),
        }
    }

    /// A line or block edit of a file too large to read must fail, never replace the file
    /// with just the managed part.
    #[test]
    fn editing_a_file_too_large_to_read_is_an_error() {
        let big = facts_with(
            "/var/log/big.conf",
            format!(
                "regular file|644|root|root|{}\nsha256:{}\n",
                3 << 20,
                "ab".repeat(32)
            ),
        );
        let line = Line::new("/var/log/big.conf", "key", "key = 1");
        let block = Block::new("/var/log/big.conf", "managed", "a = 1");
        for plan in [line.plan(&big), block.plan(&big)] {
            let e = plan.unwrap_err().to_string();
            assert!(e.contains("small enough to edit in place"), "{e}");
        }
    }

    #[test]
    fn line_replaces_the_first_match_and_drops_later_duplicates() {
        let line = Line::new("/etc/x.conf", "MaxAuthTries", "MaxAuthTries 3");
        assert_eq!(
            line.apply_to("# c\nMaxAuthTries 6\nX yes\n  MaxAuthTries 9\n"),
            "# c\nMaxAuthTries 3\nX yes\n"
        );
        assert_eq!(line.apply_to("X yes"), "X yes\nMaxAuthTries 3\n");
    }

    #[test]
    fn block_is_replaced_between_its_markers_and_the_rest_kept() {
        let block = Block::new("/etc/x.conf", "limits", "a 1\nb 2\n");
        let once = block.apply_to("head\n");
        assert_eq!(
            once,
            "head\n# BEGIN provision limits\na 1\nb 2\n# END provision limits\n"
        );
        let changed = Block::new("/etc/x.conf", "limits", "c 3").apply_to(&format!("{once}tail\n"));
        assert_eq!(
            changed,
            "head\n# BEGIN provision limits\nc 3\n# END provision limits\ntail\n"
        );
        assert_eq!(block.apply_to(&once), once, "idempotent");
    }
}
