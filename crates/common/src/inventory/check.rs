//! Every value of an inventory checked against its rule ([`crate::values`]) when it loads,
//! and where each field is written (file offsets of the TOML document), so that a broken
//! rule is reported at `file:line:column` with the field's name.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use super::{Connection, Vars};
use crate::values;

/// One step of a field's path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Where a value sits in the document, e.g. `hosts.web-1.vars.packages[2]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldPath(pub Vec<Segment>);

impl FieldPath {
    /// Parse `app.backup.schedule` or `certs.domains[1]`.
    pub fn parse(s: &str) -> FieldPath {
        let mut out = Vec::new();
        for part in s.split('.').filter(|p| !p.is_empty()) {
            let (key, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if !key.is_empty() {
                out.push(Segment::Key(key.to_string()));
            }
            while let Some(end) = rest.find(']') {
                if let Ok(i) = rest[1..end].parse() {
                    out.push(Segment::Index(i));
                }
                rest = &rest[end + 1..];
            }
        }
        FieldPath(out)
    }

    pub fn key(mut self, key: &str) -> FieldPath {
        self.0.push(Segment::Key(key.to_string()));
        self
    }

    pub fn index(mut self, i: usize) -> FieldPath {
        self.0.push(Segment::Index(i));
        self
    }

    fn join(&self, other: &FieldPath) -> FieldPath {
        let mut v = self.0.clone();
        v.extend(other.0.iter().cloned());
        FieldPath(v)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Segment::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(k)?
                    } else {
                        write!(f, "{k:?}")?
                    }
                }
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Byte ranges of every key and value of a TOML document, by path.
#[derive(Debug, Default)]
pub(crate) struct Spans(BTreeMap<FieldPath, Range<usize>>);

impl Spans {
    pub(crate) fn of(text: &str) -> Spans {
        let mut spans = Spans::default();
        if let Ok(doc) = toml::de::DeTable::parse(text) {
            spans.table(&FieldPath::default(), doc.get_ref());
        }
        spans
    }

    fn table(&mut self, at: &FieldPath, t: &toml::de::DeTable<'_>) {
        for (k, v) in t {
            let path = at.clone().key(k.get_ref());
            self.value(&path, v, k.span());
        }
    }

    fn value(
        &mut self,
        at: &FieldPath,
        v: &toml::Spanned<toml::de::DeValue<'_>>,
        key_span: Range<usize>,
    ) {
        match v.get_ref() {
            toml::de::DeValue::Table(t) => {
                // A `[table]` header's value span covers little; point at the key.
                self.0.insert(at.clone(), key_span);
                self.table(at, t);
            }
            toml::de::DeValue::Array(items) => {
                self.0.insert(at.clone(), v.span());
                for (i, item) in items.iter().enumerate() {
                    let path = at.clone().index(i);
                    self.value(&path, item, item.span());
                }
            }
            _ => {
                self.0.insert(at.clone(), v.span());
            }
        }
    }

    /// The span of `path`, exactly.
    pub(crate) fn get(&self, path: &FieldPath) -> Option<Range<usize>> {
        self.0.get(path).cloned()
    }

    /// The span of `path`, else of its nearest written ancestor.
    pub(crate) fn nearest(&self, path: &FieldPath) -> Option<Range<usize>> {
        let mut p = path.0.clone();
        loop {
            if let Some(s) = self.0.get(&FieldPath(p.clone())) {
                return Some(s.clone());
            }
            p.pop()?;
        }
    }

    /// The value written exactly at `span` (the deepest one, when several are): the field
    /// a TOML or serde error is about (a typed value that does not parse).
    pub(crate) fn field_at(&self, span: &Range<usize>) -> Option<FieldPath> {
        self.0
            .iter()
            .filter(|(_, s)| *s == span)
            .max_by_key(|(p, _)| p.0.len())
            .map(|(p, _)| p.clone())
    }
}

/// The first rule a layer breaks: the field (relative to the layer) and the rule.
#[derive(Debug)]
pub struct Broken {
    pub field: FieldPath,
    pub rule: String,
}

/// Collects the first broken rule.
#[derive(Default)]
struct Checker {
    first: Option<Broken>,
}

impl Checker {
    fn check(&mut self, field: impl Into<FieldOrStr>, result: Result<(), String>) {
        if self.first.is_none()
            && let Err(rule) = result
        {
            self.first = Some(Broken {
                field: field.into().0,
                rule,
            });
        }
    }

    fn opt(&mut self, field: &str, value: Option<&str>, rule: fn(&str) -> Result<(), String>) {
        if let Some(v) = value {
            self.check(field, rule(v));
        }
    }

    fn each(
        &mut self,
        field: &str,
        values: Option<&[String]>,
        rule: fn(&str) -> Result<(), String>,
    ) {
        for (i, v) in values.unwrap_or_default().iter().enumerate() {
            self.check(FieldPath::parse(field).index(i), rule(v));
        }
    }

    fn number(&mut self, field: &str, value: Option<u64>, min: u64, max: u64, why: &str) {
        if let Some(n) = value {
            self.check(
                field,
                values::within(n, min, max).map_err(|e| format!("{e}{why}")),
            );
        }
    }

    fn port(&mut self, field: &str, value: Option<u16>) {
        if let Some(p) = value {
            self.check(field, values::port(p));
        }
    }

    fn done(self) -> Result<(), Broken> {
        match self.first {
            Some(b) => Err(b),
            None => Ok(()),
        }
    }
}

struct FieldOrStr(FieldPath);

impl From<&str> for FieldOrStr {
    fn from(s: &str) -> Self {
        FieldOrStr(FieldPath::parse(s))
    }
}

impl From<FieldPath> for FieldOrStr {
    fn from(p: FieldPath) -> Self {
        FieldOrStr(p)
    }
}

/// Largest count of MiB a machine could report (1 EiB): keeps numbers in TOML's range.
const MAX_MIB: u64 = 1 << 40;

/// Check one layer of vars (top-level, a group's or a host's).
pub fn vars(v: &Vars) -> Result<(), Broken> {
    let mut c = Checker::default();
    c.opt("timezone", v.timezone.as_deref(), values::timezone);
    c.opt("reboot_window", v.reboot_window.as_deref(), |w| {
        values::TimeWindow::parse(w).map(|_| ())
    });
    c.opt("hostname", v.hostname.as_deref(), values::host_name);
    c.each("packages", v.packages.as_deref(), values::package_name);
    c.number(
        "nofile",
        v.nofile,
        1024,
        1 << 30,
        " (fewer than 1024 open files breaks services; the kernel allows at most 2^30)",
    );
    for (i, f) in v.files.iter().flatten().enumerate() {
        let at = |k: &str| FieldPath::default().key("files").index(i).key(k);
        c.check(at("path"), values::absolute_path(&f.path));
        if let Some(o) = &f.owner {
            c.check(at("owner"), values::owner(o));
        }
        if let Some(g) = &f.group {
            c.check(at("group"), values::owner(g));
        }
    }
    if let Some(d) = &v.deploy_user {
        c.opt(
            "deploy_user.name",
            d.name.as_deref(),
            values::deploy_user_name,
        );
        c.each(
            "deploy_user.authorized_keys",
            d.authorized_keys.as_deref(),
            values::ssh_public_key,
        );
        c.opt(
            "deploy_user.shell",
            d.shell.as_deref(),
            values::absolute_path,
        );
        c.opt("deploy_user.home", d.home.as_deref(), values::absolute_path);
    }
    if let Some(m) = &v.minimum {
        c.number("minimum.cpus", m.cpus.map(u64::from), 1, 65536, "");
        c.number("minimum.memory_mib", m.memory_mib, 1, MAX_MIB, "");
        c.number("minimum.disk_free_mib", m.disk_free_mib, 1, MAX_MIB, "");
    }
    if let Some(h) = &v.hardening {
        for (i, p) in h.allow_ports.iter().flatten().enumerate() {
            c.check(
                FieldPath::parse("hardening.allow_ports").index(i),
                values::port(*p),
            );
        }
        c.port("hardening.ssh_port", h.ssh_port);
        c.each(
            "hardening.fail2ban_ignore_ips",
            h.fail2ban_ignore_ips.as_deref(),
            values::ip_or_network,
        );
    }
    if let Some(a) = &v.apt {
        c.opt("apt.mirror", a.mirror.as_deref(), values::http_url);
        c.opt(
            "apt.security_mirror",
            a.security_mirror.as_deref(),
            values::http_url,
        );
    }
    if let Some(d) = &v.docker {
        c.opt(
            "docker.log_max_size",
            d.log_max_size.as_deref(),
            values::size,
        );
        if let Some(r) = &d.repository {
            c.opt("docker.repository.url", r.url.as_deref(), values::http_url);
            c.opt(
                "docker.repository.key_url",
                r.key_url.as_deref(),
                values::http_url,
            );
            c.opt(
                "docker.repository.key",
                r.key.as_deref(),
                values::openpgp_public_key,
            );
            if r.key.is_some() && r.key_url.is_some() {
                c.check(
                    "docker.repository.key",
                    Err("both `key` and `key_url` are set: give the key inline or where to download it, not both".into()),
                );
            }
        }
        c.each(
            "docker.registry_mirrors",
            d.registry_mirrors.as_deref(),
            values::http_url,
        );
        c.number(
            "docker.log_max_file",
            d.log_max_file.map(u64::from),
            1,
            1000,
            "",
        );
    }
    if let Some(a) = &v.app {
        c.opt("app.name", a.name.as_deref(), values::short_name);
        c.opt("app.template", a.template.as_deref(), values::short_name);
        c.opt(
            "app.template_dir",
            a.template_dir.as_deref(),
            values::local_path,
        );
        c.opt("app.domain", a.domain.as_deref(), values::domain_name);
        c.opt("app.path", a.path.as_deref(), values::absolute_path);
        c.opt("app.owner", a.owner.as_deref(), values::owner);
        c.opt("app.group", a.group.as_deref(), values::owner);
        c.each("app.aliases", a.aliases.as_deref(), values::domain_name);
        for (k, val) in a.env.iter().flatten() {
            let at = FieldPath::parse("app.env").key(k);
            c.check(at.clone(), values::env_name(k));
            c.check(at, values::one_line(val));
        }
        for (k, argv) in a.env_commands.iter().flatten() {
            let at = FieldPath::parse("app.env_commands").key(k);
            c.check(at.clone(), values::env_name(k));
            if a.env.as_ref().is_some_and(|env| env.contains_key(k)) {
                c.check(
                    at.clone(),
                    Err(format!(
                        "`{k}` is also set in app.env; take its value from one place"
                    )),
                );
            }
            match argv.first() {
                None => c.check(
                    at.clone(),
                    Err("the command is empty: give the program and its arguments, e.g. [\"pass\", \"show\", \"smtp\"]".into()),
                ),
                Some(program) => c.check(at.clone().index(0), values::program(program)),
            }
            for (i, arg) in argv.iter().enumerate().skip(1) {
                if arg.contains('\0') {
                    c.check(
                        at.clone().index(i),
                        Err("an argument cannot contain a NUL character".into()),
                    );
                }
            }
        }
        if let Some(settings) = &a.settings {
            settings_one_line(&mut c, &FieldPath::parse("app.settings"), settings);
        }
        if let Some(b) = &a.backup {
            c.opt(
                "app.backup.schedule",
                b.schedule.as_deref(),
                values::calendar,
            );
            c.number(
                "app.backup.retention_days",
                b.retention_days.map(u64::from),
                1,
                36500,
                "",
            );
        }
    }
    if let Some(cv) = &v.certs {
        c.opt("certs.email", cv.email.as_deref(), values::email);
        c.opt(
            "certs.webroot",
            cv.webroot.as_deref(),
            values::absolute_path,
        );
        c.opt(
            "certs.ssl_dir",
            cv.ssl_dir.as_deref(),
            values::absolute_path,
        );
        c.opt("certs.ca_root", cv.ca_root.as_deref(), values::local_path);
        c.opt("certs.schedule", cv.schedule.as_deref(), values::calendar);
        c.opt(
            "certs.dns_api_token_env",
            cv.dns_api_token_env.as_deref(),
            values::env_name,
        );
        c.opt(
            "certs.dns_credentials_file",
            cv.dns_credentials_file.as_deref(),
            values::absolute_path,
        );
        c.port("certs.http_port", cv.http_port);
        c.number(
            "certs.dns_propagation_seconds",
            cv.dns_propagation_seconds,
            0,
            3600,
            "",
        );
    }
    c.done()
}

/// Template settings are free-form, but each string is one line: a newline would start a
/// directive of its own in the nginx or compose file it is rendered into.
fn settings_one_line(c: &mut Checker, at: &FieldPath, t: &toml::Table) {
    for (k, v) in t {
        let path = at.clone().key(k);
        setting_value(c, &path, v);
    }
}

fn setting_value(c: &mut Checker, at: &FieldPath, v: &toml::Value) {
    match v {
        toml::Value::String(s) => c.check(at.clone(), values::one_line(s)),
        toml::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                setting_value(c, &at.clone().index(i), item);
            }
        }
        toml::Value::Table(t) => settings_one_line(c, at, t),
        _ => {}
    }
}

/// Check connection settings (`[defaults]` or a host's own).
pub fn connection(conn: &Connection) -> Result<(), Broken> {
    let mut c = Checker::default();
    c.opt("user", conn.user.as_deref(), values::user_name);
    c.opt(
        "bootstrap_user",
        conn.bootstrap_user.as_deref(),
        values::user_name,
    );
    c.port("port", conn.port);
    if let Some(p) = &conn.identity_file {
        c.check("identity_file", values::local_path(&p.to_string_lossy()));
    }
    if let Some(p) = &conn.known_hosts {
        c.check("known_hosts", values::ssh_option_path(&p.to_string_lossy()));
    }
    c.number(
        "connect_timeout",
        conn.connect_timeout,
        1,
        3600,
        " seconds (0 would never connect)",
    );
    c.done()
}

/// Where a host's merged vars came from: the layers, highest precedence first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layers {
    pub(super) prefixes: Vec<FieldPath>,
}

impl Layers {
    /// The span of `field` (a path in the merged vars) in the layer that set it, or of its
    /// nearest written ancestor.
    pub(crate) fn locate(&self, spans: &Spans, field: &FieldPath) -> Option<Range<usize>> {
        let mut f = field.0.clone();
        loop {
            for prefix in &self.prefixes {
                if let Some(s) = spans.get(&prefix.join(&FieldPath(f.clone()))) {
                    return Some(s);
                }
            }
            f.pop()?;
        }
    }
}
