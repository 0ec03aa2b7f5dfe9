//! Small building blocks shared by the resource sets: whole-file planning from computed
//! content, guarded wrappers, file modes, absent files, key/value config files, triggers
//! and the template renderer.

use common::PlanError;
use common::facts::builtin::{PathKind, PathState};
use common::resource::ResourceId;
use common::resources::{File, owner_and_mode_change, plan_edit, set_owner_and_mode};
use common::shell::quote;
use common::{Action, Fact, Facts, Plan, Probe, Resource};
use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

/// Marker at the top of every file this crate renders.
pub(crate) const MANAGED: &str = "Managed by provision; local changes are overwritten.";

/// Render an embedded template: strict undefined, no auto-escaping, block tags trimmed,
/// trailing newline kept. Templates and contexts are fixed in code and covered by
/// snapshot tests, so a failure here is a bug in this crate.
pub fn render(name: &str, source: &str, context: impl Serialize) -> String {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .expect("default delimiters are valid"),
    );
    env.add_template(name, source)
        .unwrap_or_else(|e| panic!("embedded template {name} does not parse (bug): {e:#}"));
    env.get_template(name)
        .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&context))))
        .unwrap_or_else(|e| panic!("embedded template {name} failed to render (bug): {e:#}"))
}

/// Desired whole content of a file, planned by the one file planner
/// ([`File::changes`]): `DesiredFile::new(path, content, mode).changes(&current)`.
pub(crate) struct DesiredFile;

impl DesiredFile {
    /// A root-owned file with this content and mode. (A name kept for the callers in
    /// ssh.rs and firewall.rs; new code writes `File::new(path, content).mode(mode)`.)
    #[allow(clippy::new_ret_no_self)]
    pub(crate) fn new(path: &str, content: impl Into<Vec<u8>>, mode: u32) -> File {
        File::new(path, content).mode(mode)
    }
}

/// Collects the changes of a composite resource into one plan.
#[derive(Debug, Default)]
pub(crate) struct PlanBuilder {
    summaries: Vec<String>,
    actions: Vec<Action>,
}

impl PlanBuilder {
    pub(crate) fn add(&mut self, change: Option<(String, Action)>) {
        if let Some((summary, action)) = change {
            self.summaries.push(summary);
            self.actions.push(action);
        }
    }

    pub(crate) fn push(&mut self, summary: impl Into<String>, actions: Vec<Action>) {
        self.summaries.push(summary.into());
        self.actions.extend(actions);
    }

    /// Append steps that only make sense after the changes (validation, reload).
    pub(crate) fn then(&mut self, action: Action) {
        self.actions.push(action);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    pub(crate) fn build(self, noop_reason: impl Into<String>) -> Plan {
        if self.actions.is_empty() {
            Plan::noop(noop_reason)
        } else {
            Plan::change(self.summaries.join("; "), self.actions)
        }
    }
}

/// Wraps a resource whose change can cut SSH access: the engine applies it
/// commit-confirmed (rollback armed on the host, fresh login proven, then disarmed).
pub struct Guarded<R> {
    inner: R,
    rollback: Option<String>,
}

impl<R: Resource> Guarded<R> {
    pub fn new(inner: R, rollback: Option<&str>) -> Self {
        Self {
            inner,
            rollback: rollback.map(str::to_string),
        }
    }
}

impl<R: Resource> Resource for Guarded<R> {
    fn id(&self) -> ResourceId {
        self.inner.id()
    }
    fn probes(&self) -> Vec<Probe> {
        self.inner.probes()
    }
    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        self.inner.plan(facts)
    }
    fn notes(&self, facts: &Facts) -> Vec<String> {
        self.inner.notes(facts)
    }
    fn watches(&self) -> Vec<ResourceId> {
        self.inner.watches()
    }
    fn on_watched_change(&self, facts: &Facts) -> Result<Vec<Action>, PlanError> {
        self.inner.on_watched_change(facts)
    }
    fn plan_when_triggered(&self, facts: &Facts) -> Result<Plan, PlanError> {
        self.inner.plan_when_triggered(facts)
    }
    fn guards_access(&self) -> bool {
        true
    }
    fn rollback_script(&self) -> Option<String> {
        self.rollback.clone()
    }
}

/// Several resources planned as one (one report line, one guarded apply).
pub(crate) struct ResourceGroup {
    pub id: ResourceId,
    pub members: Vec<Box<dyn Resource>>,
}

impl Resource for ResourceGroup {
    fn id(&self) -> ResourceId {
        self.id.clone()
    }
    fn probes(&self) -> Vec<Probe> {
        self.members.iter().flat_map(|m| m.probes()).collect()
    }
    fn notes(&self, facts: &Facts) -> Vec<String> {
        self.members.iter().flat_map(|m| m.notes(facts)).collect()
    }
    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let mut builder = PlanBuilder::default();
        let mut reasons = Vec::new();
        for m in &self.members {
            match m.plan(facts)? {
                Plan::Change { summary, actions } => builder.push(summary, actions),
                Plan::Noop { reason } | Plan::NotApplicable { reason } => reasons.push(reason),
            }
        }
        Ok(builder.build(reasons.join("; ")))
    }
}

/// A vars value that cannot be used: planning fails with the field name, so the host
/// reports the mistake instead of silently applying a default.
#[derive(Debug, Clone)]
pub struct InvalidVar {
    /// e.g. `files[2].mode`.
    pub field: String,
    /// What a valid value looks like.
    pub expected: String,
    pub value: String,
}

impl Resource for InvalidVar {
    fn id(&self) -> ResourceId {
        ResourceId::of("vars", &self.field)
    }
    fn probes(&self) -> Vec<Probe> {
        Vec::new()
    }
    fn plan(&self, _facts: &Facts) -> Result<Plan, PlanError> {
        Err(PlanError::InvalidVar {
            field: self.field.clone(),
            expected: self.expected.clone(),
            value: self.value.clone(),
        })
    }
}

/// Mode and owner of an existing path (files and directories); an absent path is left
/// absent (nothing to restrict).
#[derive(Debug, Clone)]
pub struct PathMode {
    pub path: String,
    pub mode: u32,
    pub owner: String,
    pub group: String,
}

impl PathMode {
    pub(crate) fn new(path: &str, mode: u32, owner: &str, group: &str) -> Self {
        Self {
            path: path.into(),
            mode,
            owner: owner.into(),
            group: group.into(),
        }
    }
}

impl Resource for PathMode {
    fn id(&self) -> ResourceId {
        ResourceId::of("mode", &self.path)
    }
    fn probes(&self) -> Vec<Probe> {
        vec![PathState::new(&self.path).probe()]
    }
    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let current = facts.read(&PathState::new(&self.path))?;
        if current.kind == PathKind::Absent {
            return Ok(Plan::noop(format!(
                "{} is absent: nothing to restrict",
                self.path
            )));
        }
        let Some(summary) =
            owner_and_mode_change(&self.path, self.mode, &self.owner, &self.group, &current)
        else {
            return Ok(Plan::noop(format!(
                "{} is {:o} {}:{}",
                self.path, self.mode, self.owner, self.group
            )));
        };
        Ok(Plan::change(
            summary,
            vec![set_owner_and_mode(
                &self.path,
                &self.owner,
                &self.group,
                self.mode,
            )],
        ))
    }
}

/// A file that must not exist.
#[derive(Debug, Clone)]
pub(crate) struct AbsentFile {
    pub path: String,
}

impl Resource for AbsentFile {
    fn id(&self) -> ResourceId {
        ResourceId::file(&self.path)
    }
    fn probes(&self) -> Vec<Probe> {
        vec![PathState::new(&self.path).probe()]
    }
    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let current = facts.read(&PathState::new(&self.path))?;
        if current.kind == PathKind::Absent {
            return Ok(Plan::noop(format!("{} is absent", self.path)));
        }
        Ok(Plan::change(
            format!("remove {}", self.path),
            vec![Action::run(
                format!("remove {}", self.path),
                format!("rm -f {}", quote(&self.path)),
            )],
        ))
    }
}

/// `KEY<whitespace>VALUE` lines in a config file such as /etc/login.defs: the first
/// uncommented line of each key is replaced in place, later duplicates are dropped,
/// missing keys are appended. One resource per file, so one write per run (several
/// line edits of one file planned from the same facts would overwrite each other).
#[derive(Debug, Clone)]
pub(crate) struct KeyValueFile {
    pub path: String,
    pub entries: Vec<(String, String)>,
}

impl KeyValueFile {
    /// Pure: the new content.
    pub(crate) fn apply_to(&self, old: &str) -> String {
        let key_of = |line: &str| -> Option<String> {
            let t = line.trim_start();
            if t.starts_with('#') {
                return None;
            }
            t.split_whitespace().next().map(str::to_string)
        };
        let mut done = vec![false; self.entries.len()];
        let mut out: Vec<String> = Vec::new();
        for line in old.lines() {
            let found =
                key_of(line).and_then(|k| self.entries.iter().position(|(key, _)| *key == k));
            match found {
                Some(i) if !done[i] => {
                    let (k, v) = &self.entries[i];
                    out.push(format!("{k}\t{v}"));
                    done[i] = true;
                }
                Some(_) => {}
                None => out.push(line.to_string()),
            }
        }
        let missing: Vec<&(String, String)> = self
            .entries
            .iter()
            .zip(&done)
            .filter(|(_, d)| !**d)
            .map(|(e, _)| e)
            .collect();
        if !missing.is_empty() {
            out.push("# Added by provision (hardening).".to_string());
            for (k, v) in missing {
                out.push(format!("{k}\t{v}"));
            }
        }
        let mut s = out.join("\n");
        s.push('\n');
        s
    }
}

impl Resource for KeyValueFile {
    fn id(&self) -> ResourceId {
        ResourceId::of("keys", &self.path)
    }
    fn probes(&self) -> Vec<Probe> {
        vec![PathState::new(&self.path).probe()]
    }
    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let keys: Vec<&str> = self.entries.iter().map(|(k, _)| k.as_str()).collect();
        Ok(
            match plan_edit(facts, &self.path, 0o644, "update", |old| self.apply_to(old))? {
                Plan::Noop { .. } => Plan::noop(format!("{} sets {}", self.path, keys.join(", "))),
                other => other,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_file_replaces_in_place_drops_duplicates_appends_missing() {
        let kv = KeyValueFile {
            path: "/etc/login.defs".into(),
            entries: vec![
                ("PASS_MAX_DAYS".into(), "365".into()),
                ("UMASK".into(), "027".into()),
                ("LOGIN_TIMEOUT".into(), "60".into()),
            ],
        };
        let old = "# comment PASS_MAX_DAYS\n#PASS_MAX_DAYS 1\nPASS_MAX_DAYS\t99999\nUMASK\t\t022\nUMASK 077\nOTHER x\n";
        let new = kv.apply_to(old);
        assert_eq!(
            new,
            "# comment PASS_MAX_DAYS\n#PASS_MAX_DAYS 1\nPASS_MAX_DAYS\t365\nUMASK\t027\nOTHER x\n# Added by provision (hardening).\nLOGIN_TIMEOUT\t60\n"
        );
        assert_eq!(kv.apply_to(&new), new, "idempotent");
    }

    /// Regression: KeyValueFile planned from an empty text when the file was larger than
    /// the probe reads back (1 MiB), so `harden` would have replaced, say, a large
    /// /etc/login.defs with only the managed keys. Now it is an error, like Line and Block.
    #[test]
    fn key_value_file_edit_of_a_file_larger_than_1_mib_is_an_error_not_a_replacement() {
        let kv = KeyValueFile {
            path: "/etc/login.defs".into(),
            entries: vec![("UMASK".into(), "027".into())],
        };
        let big = crate::testing::facts(&[(
            "path:/etc/login.defs",
            crate::testing::ok(&format!(
                "regular file|644|root|root|{}\nsha256:{}\n",
                2 << 20,
                "ab".repeat(32)
            )),
        )]);
        let e = kv.plan(&big).unwrap_err().to_string();
        assert!(e.contains("small enough to edit in place"), "{e}");
        let small = crate::testing::facts(&[(
            "path:/etc/login.defs",
            crate::testing::file_state("UMASK 022\n", 0o640, "root", "shadow"),
        )]);
        let (summary, actions) = crate::testing::PlanExt::expect_change(kv.plan(&small).unwrap());
        assert_eq!(summary, "update /etc/login.defs");
        match &actions[..] {
            [Action::WriteFile(w)] => {
                assert_eq!(w.content, b"UMASK\t027\n");
                assert_eq!((w.mode, w.group.as_str()), (0o640, "shadow"), "kept");
            }
            other => panic!("{other:?}"),
        }
    }

    /// Regression: the sshd main-config edit (`Include` first) planned from an empty text
    /// when /etc/ssh/sshd_config was larger than the probe reads back (1 MiB), replacing
    /// the whole file with the Include line alone. Now the plan fails and names the file.
    #[test]
    fn sshd_main_config_edit_of_a_file_larger_than_1_mib_is_an_error_not_a_replacement() {
        use crate::testing::{facts, file_state, ok};
        let sshd = crate::ssh::SshdConfig {
            settings: crate::ssh_settings(&common::inventory::Vars::default()),
        };
        let key = file_state("key", 0o600, "root", "root");
        let host = facts(&[
            ("dpkg", ok("openssh-server\tii \t1:9.2p1-2+deb12u3\n")),
            ("login-user", ok("root\n")),
            (
                "sshd-effective",
                ok(include_str!("../tests/fixtures/sshd-T-debian12-fresh.txt")),
            ),
            (
                "path:/etc/ssh/sshd_config.d/00-provision.conf",
                ok("absent\n"),
            ),
            (
                "path:/etc/ssh/sshd_config",
                ok(&format!(
                    "regular file|644|root|root|{}\nsha256:{}\n",
                    3 << 20,
                    "cd".repeat(32)
                )),
            ),
            (
                "path:/etc/systemd/system/ssh.socket.d/provision-port.conf",
                ok("absent\n"),
            ),
            (
                "unit:ssh.socket",
                ok("LoadState=loaded\nActiveState=inactive\nUnitFileState=disabled\n"),
            ),
            ("path:/etc/ssh/ssh_host_ed25519_key", key.clone()),
            ("path:/etc/ssh/ssh_host_rsa_key", key),
        ]);
        let e = sshd.plan(&host).unwrap_err().to_string();
        assert!(
            e.contains("path:/etc/ssh/sshd_config") && e.contains("small enough to edit in place"),
            "{e}"
        );
    }
}
