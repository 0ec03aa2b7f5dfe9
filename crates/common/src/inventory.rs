//! The inventory: TOML with connection defaults, groups, hosts and vars.
//!
//! Precedence of vars, lowest first: top-level `[vars]`, then the vars of every group the
//! host is in, then the host's own `[hosts.NAME.vars]`. Two groups of one host setting the
//! same var to different values is an error (there is no hidden ordering between groups);
//! set it on the host instead. Tables merge key by key; arrays and scalars replace.
//!
//! Unknown keys and wrong types are errors naming file:line:column and the field, and so
//! is every value that breaks its rule ([`crate::values`]): all are checked here, before
//! any connection.

pub mod check;
mod vars;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{Diagnostic, NamedSource, SourceSpan};
use serde::Deserialize;
use toml::Spanned;

pub use vars::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryFile {
    #[serde(default)]
    defaults: Connection,
    #[serde(default)]
    vars: Option<Vars>,
    #[serde(default)]
    groups: BTreeMap<Spanned<String>, GroupDef>,
    #[serde(default)]
    hosts: BTreeMap<Spanned<String>, HostDef>,
}

/// How to reach a host; unset fields fall back to the defaults, then to `~/.ssh/config`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    /// The login the host must end with (e.g. the deploy user).
    pub user: Option<String>,
    /// First-contact login (`root`, or an image's `ubuntu`/`debian`/`admin`), used when
    /// `user` is refused on a host not provisioned yet; the run creates `user` through it,
    /// proves a new login as `user` and carries on as `user`.
    pub bootstrap_user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    /// Seconds.
    pub connect_timeout: Option<u64>,
}

impl Connection {
    fn or(self, fallback: &Connection) -> Connection {
        Connection {
            user: self.user.or_else(|| fallback.user.clone()),
            bootstrap_user: self
                .bootstrap_user
                .or_else(|| fallback.bootstrap_user.clone()),
            port: self.port.or(fallback.port),
            identity_file: self
                .identity_file
                .or_else(|| fallback.identity_file.clone()),
            known_hosts: self.known_hosts.or_else(|| fallback.known_hosts.clone()),
            connect_timeout: self.connect_timeout.or(fallback.connect_timeout),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupDef {
    #[serde(default)]
    hosts: Vec<Spanned<String>>,
    #[serde(default)]
    vars: Option<Vars>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostDef {
    /// Address or `~/.ssh/config` alias; defaults to the host's name.
    address: Option<String>,
    #[serde(default)]
    groups: Vec<Spanned<String>>,
    user: Option<String>,
    bootstrap_user: Option<String>,
    port: Option<u16>,
    identity_file: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    connect_timeout: Option<u64>,
    #[serde(default)]
    vars: Option<Vars>,
}

impl HostDef {
    fn connection(&self) -> Connection {
        Connection {
            user: self.user.clone(),
            bootstrap_user: self.bootstrap_user.clone(),
            port: self.port,
            identity_file: self.identity_file.clone(),
            known_hosts: self.known_hosts.clone(),
            connect_timeout: self.connect_timeout,
        }
    }
}

/// A host ready to connect to and configure.
#[derive(Debug, Clone)]
pub struct HostSpec {
    pub name: String,
    pub address: String,
    pub connection: Connection,
    pub groups: Vec<String>,
    pub vars: Vars,
    /// Where each of `vars` is written in the inventory.
    pub origins: Origins,
}

/// Where a host's vars are written: locates checks made after the load (certificates,
/// the host's zoneinfo) at the inventory line that set the value.
#[derive(Clone, Default)]
pub struct Origins {
    source: Option<Arc<Source>>,
    layers: check::Layers,
}

struct Source {
    path: String,
    text: String,
    spans: check::Spans,
}

impl std::fmt::Debug for Origins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Origins").finish_non_exhaustive()
    }
}

impl Origins {
    /// An error about `field` (a path in the merged vars, e.g. `certs.domains[1]`), located
    /// where the inventory sets it (else at the start of the file).
    pub fn error(&self, field: &str, rule: impl Into<String>) -> InventoryError {
        let path = check::FieldPath::parse(field);
        let (file, text, span) = match &self.source {
            Some(s) => (
                s.path.as_str(),
                s.text.as_str(),
                self.layers.locate(&s.spans, &path),
            ),
            None => ("<inventory>", "", None),
        };
        InventoryError::at(file, text, span, rule.into()).with_field(field)
    }

    /// `file:line:column` where `field` is set, when it is.
    pub fn location(&self, field: &str) -> Option<String> {
        let s = self.source.as_ref()?;
        let span = self
            .layers
            .locate(&s.spans, &check::FieldPath::parse(field))?;
        let (line, column) = line_column(&s.text, span.start);
        Some(format!("{}:{line}:{column}", s.path))
    }
}

#[derive(Debug, Clone)]
pub struct Inventory {
    pub path: PathBuf,
    pub hosts: Vec<HostSpec>,
    pub groups: BTreeMap<String, Vec<String>>,
}

/// An inventory problem, located in its file.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{file}:{line}:{column}: {}{message}", field_prefix(.field))]
pub struct InventoryError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The field whose value breaks a rule (`hosts.web-1.vars.packages[0]`), when one does.
    pub field: Option<String>,
    /// What is wrong: the rule broken.
    pub message: String,
    #[source_code]
    src: NamedSource<String>,
    #[label("here")]
    span: Option<SourceSpan>,
    #[help]
    pub help: Option<String>,
}

impl InventoryError {
    fn at(path: &str, text: &str, span: Option<Range<usize>>, message: String) -> Self {
        let (line, column) = span
            .as_ref()
            .map(|s| line_column(text, s.start))
            .unwrap_or((1, 1));
        Self {
            file: path.to_string(),
            line,
            column,
            field: None,
            message,
            src: NamedSource::new(path, text.to_string()),
            span: span.map(|s| SourceSpan::from(s.start..s.end.max(s.start + 1))),
            help: None,
        }
    }

    fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    fn help(mut self: Box<Self>, help: impl Into<String>) -> Box<Self> {
        self.help = Some(help.into());
        self
    }
}

fn field_prefix(field: &Option<String>) -> String {
    field
        .as_ref()
        .map(|f| format!("`{f}`: "))
        .unwrap_or_default()
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |n| n + 1)..]
        .chars()
        .count()
        + 1;
    (line, column)
}

impl Inventory {
    pub fn load(path: &Path) -> Result<Inventory, Box<InventoryError>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Box::new(InventoryError::at(
                &path.display().to_string(),
                "",
                None,
                format!("cannot read the inventory: {e}"),
            ))
        })?;
        Self::parse(&path.display().to_string(), &text, path.parent())
    }

    /// Parse inventory text; `base` resolves relative key and known_hosts paths.
    pub fn parse(
        path: &str,
        text: &str,
        base: Option<&Path>,
    ) -> Result<Inventory, Box<InventoryError>> {
        let err = |span: Option<Range<usize>>, message: String| {
            Box::new(InventoryError::at(path, text, span, message))
        };
        let spans = check::Spans::of(text);
        let file: InventoryFile = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().replace('\n', " ");
            let field = e.span().and_then(|s| spans.field_at(&s));
            let error = InventoryError::at(path, text, e.span(), message);
            Box::new(match field {
                Some(f) => error.with_field(f.to_string()),
                None => error,
            })
        })?;

        // Every value against its rule, layer by layer, before anything is merged or used.
        let source = Arc::new(Source {
            path: path.to_string(),
            text: text.to_string(),
            spans,
        });
        let root = check::FieldPath::default;
        let broken = |prefix: check::FieldPath, b: check::Broken| {
            let field = check::FieldPath(prefix.0.into_iter().chain(b.field.0).collect());
            Box::new(
                InventoryError::at(path, text, source.spans.nearest(&field), b.rule)
                    .with_field(field.to_string()),
            )
        };
        check::connection(&file.defaults).map_err(|b| broken(root().key("defaults"), b))?;
        if let Some(v) = &file.vars {
            check::vars(v).map_err(|b| broken(root().key("vars"), b))?;
        }
        for (name, group) in &file.groups {
            if let Some(v) = &group.vars {
                check::vars(v)
                    .map_err(|b| broken(root().key("groups").key(name.get_ref()).key("vars"), b))?;
            }
        }
        for (name, def) in &file.hosts {
            check_name(name).map_err(|m| err(Some(name.span()), m))?;
            let at = root().key("hosts").key(name.get_ref());
            check::connection(&def.connection()).map_err(|b| broken(at.clone(), b))?;
            let address = def.address.as_deref().unwrap_or(name.get_ref());
            crate::values::address(address).map_err(|rule| {
                let field = if def.address.is_some() {
                    check::FieldPath::parse("address")
                } else {
                    check::FieldPath::default()
                };
                broken(at.clone(), check::Broken { field, rule })
            })?;
            if let Some(v) = &def.vars {
                check::vars(v).map_err(|b| broken(at.clone().key("vars"), b))?;
            }
        }
        let to_table = |v: &Vars, at: check::FieldPath| {
            v.to_table().map_err(|rule| {
                broken(
                    at,
                    check::Broken {
                        field: root(),
                        rule,
                    },
                )
            })
        };

        let mut membership: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let host_names: BTreeSet<&str> = file.hosts.keys().map(|k| k.get_ref().as_str()).collect();
        for (name, group) in &file.groups {
            check_name(name).map_err(|m| err(Some(name.span()), m))?;
            if host_names.contains(name.get_ref().as_str()) {
                return Err(err(
                    Some(name.span()),
                    format!("`{}` is both a group and a host", name.get_ref()),
                ));
            }
            for h in &group.hosts {
                if !host_names.contains(h.get_ref().as_str()) {
                    return Err(err(
                        Some(h.span()),
                        format!(
                            "group `{}` lists unknown host `{}`",
                            name.get_ref(),
                            h.get_ref()
                        ),
                    )
                    .help(format!("define it with a [hosts.{}] table", h.get_ref())));
                }
                membership
                    .entry(h.get_ref().clone())
                    .or_default()
                    .insert(name.get_ref().clone());
            }
        }
        let group_names: BTreeSet<&str> =
            file.groups.keys().map(|k| k.get_ref().as_str()).collect();

        let defaults = resolve_paths(file.defaults, base);
        let mut hosts = Vec::new();
        for (name, def) in &file.hosts {
            check_name(name).map_err(|m| err(Some(name.span()), m))?;
            let mut groups = membership.remove(name.get_ref()).unwrap_or_default();
            for g in &def.groups {
                if !group_names.contains(g.get_ref().as_str()) {
                    return Err(err(
                        Some(g.span()),
                        format!(
                            "host `{}` is in unknown group `{}`",
                            name.get_ref(),
                            g.get_ref()
                        ),
                    )
                    .help(format!("define it with a [groups.{}] table", g.get_ref())));
                }
                groups.insert(g.get_ref().clone());
            }
            // Merge vars: defaults < groups (must agree) < host.
            let mut merged = match &file.vars {
                Some(v) => to_table(v, root().key("vars"))?,
                None => toml::Table::new(),
            };
            let mut layers = vec![root().key("hosts").key(name.get_ref()).key("vars")];
            let mut from_groups = toml::Table::new();
            let mut owner: BTreeMap<String, String> = BTreeMap::new();
            for g in &groups {
                let def = file
                    .groups
                    .iter()
                    .find(|(k, _)| k.get_ref() == g)
                    .map(|(_, d)| d)
                    .expect("validated");
                layers.push(root().key("groups").key(g).key("vars"));
                if let Some(v) = &def.vars {
                    let table = to_table(v, root().key("groups").key(g).key("vars"))?;
                    merge_checked(&mut from_groups, &table, g, &mut owner, "").map_err(
                        |(key, other)| {
                            err(
                                Some(name.span()),
                                format!(
                                    "host `{}`: var `{key}` is set differently by groups `{other}` and `{g}`",
                                    name.get_ref()
                                ),
                            )
                            .help(format!(
                                "set `{key}` in [hosts.{}.vars] to decide",
                                name.get_ref()
                            ))
                        },
                    )?;
                }
            }
            merge(&mut merged, &from_groups);
            if let Some(v) = &def.vars {
                let table = to_table(v, root().key("hosts").key(name.get_ref()).key("vars"))?;
                merge(&mut merged, &table);
            }
            layers.push(root().key("vars"));
            let vars = Vars::from_table(merged)
                .map_err(|m| err(Some(name.span()), format!("host `{}`: {m}", name.get_ref())))?;
            let connection = resolve_paths(def.connection(), base).or(&defaults);
            hosts.push(HostSpec {
                name: name.get_ref().clone(),
                address: def
                    .address
                    .clone()
                    .unwrap_or_else(|| name.get_ref().clone()),
                connection,
                groups: groups.into_iter().collect(),
                vars,
                origins: Origins {
                    source: Some(source.clone()),
                    layers: check::Layers { prefixes: layers },
                },
            });
        }
        let groups = file
            .groups
            .keys()
            .map(|name| {
                let members = hosts
                    .iter()
                    .filter(|h| h.groups.contains(name.get_ref()))
                    .map(|h| h.name.clone())
                    .collect();
                (name.get_ref().clone(), members)
            })
            .collect();
        Ok(Inventory {
            path: PathBuf::from(path),
            hosts,
            groups,
        })
    }

    /// Hosts selected by `--limit` (comma-separated host or group names); all without one.
    pub fn select(&self, limit: Option<&str>) -> Result<Vec<&HostSpec>, String> {
        let Some(limit) = limit else {
            return Ok(self.hosts.iter().collect());
        };
        let mut wanted = BTreeSet::new();
        for item in limit.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Some(members) = self.groups.get(item) {
                wanted.extend(members.iter().cloned());
            } else if self.hosts.iter().any(|h| h.name == item) {
                wanted.insert(item.to_string());
            } else {
                return Err(format!(
                    "--limit: `{item}` is neither a host nor a group in {}",
                    self.path.display()
                ));
            }
        }
        Ok(self
            .hosts
            .iter()
            .filter(|h| wanted.contains(&h.name))
            .collect())
    }
}

fn check_name(name: &Spanned<String>) -> Result<(), String> {
    let n = name.get_ref();
    let ok = !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid name `{n}`: use letters, digits, `-`, `_` and `.`"
        ))
    }
}

fn resolve_paths(mut c: Connection, base: Option<&Path>) -> Connection {
    let resolve = |p: PathBuf| {
        let s = p.to_string_lossy();
        if let Some(rest) = s.strip_prefix("~/")
            && let Some(home) = std::env::var_os("HOME")
        {
            return PathBuf::from(home).join(rest);
        }
        match base {
            Some(b) if p.is_relative() => b.join(p),
            _ => p,
        }
    };
    c.identity_file = c.identity_file.map(resolve);
    c.known_hosts = c.known_hosts.map(resolve);
    c
}

/// Deep merge: tables key by key, everything else replaced.
fn merge(into: &mut toml::Table, from: &toml::Table) {
    for (k, v) in from {
        match (into.get_mut(k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Merge one group's vars, failing when another group set a leaf differently.
fn merge_checked(
    into: &mut toml::Table,
    from: &toml::Table,
    group: &str,
    owner: &mut BTreeMap<String, String>,
    prefix: &str,
) -> Result<(), (String, String)> {
    for (k, v) in from {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match (into.get_mut(k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => {
                merge_checked(a, b, group, owner, &key)?
            }
            (Some(existing), v) if existing != v => {
                let other = owner.get(&key).cloned().unwrap_or_default();
                return Err((key, other));
            }
            _ => {
                into.insert(k.clone(), v.clone());
                owner.insert(key, group.to_string());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
