//! Application trees: what each seed document sets up by hand at the end, as resources.
//!
//! `[vars.app]` in the inventory names the app and its template set (one per seed:
//! `lulab-backend` 000, `backend2` 001, `ai-meeting` 002, `vue-node-pm2` 003,
//! `monitor-saas` 004). [`resources`] returns, in order:
//!
//! 1. The tree (seeds/002 §4.1), with owners and modes:
//!
//!    | path                     | owner                  | mode |
//!    |--------------------------|------------------------|------|
//!    | `/opt/<app>`             | app owner:group        | 0750 |
//!    | `nginx/`, `data/`        | app owner:group        | 0750 |
//!    | `ssl/`                   | root:app group         | 0750 |
//!    | `data/<service>/`        | the image's uid:uid    | 0700 |
//!    | `logs/`, `logs/app/`     | app owner:group        | 0755 |
//!    | `logs/nginx/`            | root:root              | 0755 |
//!    | `backups/`               | root:root              | 0700 |
//!    | `app/` (PM2 sets)        | app owner:group        | 0755 |
//!    | `/var/www/acme`          | root:root              | 0755 |
//!
//!    The app owner is `app.owner`, else the deploy user, else root: the deploy user runs
//!    `docker compose` and must read `.env`. Data directories belong to the uid the
//!    database image runs as (postgres alpine 70, postgres debian 999, redis 999, mongo
//!    999, minio 0; settings `*_uid`): the images' entrypoints re-own their data directory
//!    to that uid on start, so any other owner would be changed back and forth.
//! 2. `.env` ([`env_file`]): secrets generated once with a CSPRNG, kept byte for byte,
//!    rotated only on request; 0600, never shown.
//! 3. `docker-compose.yml` (checked with `docker compose config -q`), `nginx/nginx.conf`
//!    (checked with `nginx -t`, see [`checks`]), and per set `init-db.sql` or
//!    `ecosystem.config.js` plus a `<app>-pm2.service` unit. Internal ports are published
//!    on 127.0.0.1 only: Docker-published ports bypass UFW. nginx answers ACME HTTP-01
//!    challenges from `/var/www/acme` and redirects the rest of HTTP to HTTPS with the
//!    certificate in `ssl/{fullchain,privkey}.pem`.
//! 4. Backups: `/usr/local/sbin/<app>-backup` (pg_dump / mongodump / redis snapshot, gzip,
//!    retention by age), run by `<app>-backup.timer` on the seed's schedule, logging to
//!    `logs/backup.log`; a daemon-reload when unit files changed; the timer enabled.
//!
//! Templates are minijinja with strict undefined (a missing variable is an error naming
//! the template, line and variable); `app.template_dir` overrides any of them by name.

#![deny(unreachable_pub)]

pub mod app;
pub mod blueprint;
pub mod checks;
pub mod env_file;
pub mod layout;
pub mod templates;
pub mod tree;
pub mod vault;

use std::path::PathBuf;

use common::Resource;
use common::inventory::{HostSpec, InventoryError, Vars};

pub use app::{App, AppOptions};
pub use layout::AppLayout;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("app.name is not set: name the application (its tree lives in /opt/<name>)")]
    MissingName,
    #[error(
        "app.name `{0}` cannot name paths and systemd units: use lowercase letters, digits and `-`"
    )]
    InvalidName(String),
    #[error("app.path `{0}` must be an absolute path")]
    Path(String),
    #[error("app.backup.schedule `{0}` is not a systemd OnCalendar= expression")]
    Schedule(String),
    #[error("app.template `{name}` is not a built-in template set (known: {known})")]
    UnknownSet { name: String, known: String },
    #[error("cannot read the template directory {path} (app.template_dir)")]
    TemplateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read template {path}")]
    TemplateFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} overrides no template of set `{set}`; template files are named: {known}")]
    UnknownTemplateFile {
        path: PathBuf,
        set: String,
        known: String,
    },
    #[error("template `{template}` ({origin}){}: {problem}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Render {
        template: String,
        origin: String,
        line: Option<usize>,
        problem: String,
        #[source]
        source: minijinja::Error,
    },
    #[error("template `env` ({origin}){}: {problem}", if *line > 0 { format!(", rendered line {line}") } else { String::new() })]
    EnvTemplate {
        origin: String,
        line: usize,
        problem: String,
    },
    #[error("app.settings.{key}: {problem}")]
    Setting { key: String, problem: String },
    #[error("app.env.{key}: {problem}")]
    EnvVar { key: String, problem: String },
    /// A vault command of `app.env_commands` (the problem never holds its output).
    #[error("app.env_commands.{key}: {problem}")]
    EnvCommand { key: String, problem: String },
    #[error("cannot rotate `{key}`: {reason}")]
    Rotate { key: String, reason: String },
    #[error("--rotate-secret needs an app: the inventory has no [vars.app] for this host")]
    NoApp,
    #[error("the built-in settings of set `{set}` do not parse (a bug)")]
    BuiltinSettings {
        set: String,
        #[source]
        source: toml::de::Error,
    },
}

impl AppError {
    /// The inventory field the error is about (where the inventory is wrong).
    pub fn field(&self) -> String {
        match self {
            AppError::MissingName | AppError::InvalidName(_) => "app.name".into(),
            AppError::Path(_) => "app.path".into(),
            AppError::Schedule(_) => "app.backup.schedule".into(),
            AppError::UnknownSet { .. } => "app.template".into(),
            AppError::TemplateDir { .. }
            | AppError::TemplateFile { .. }
            | AppError::UnknownTemplateFile { .. }
            | AppError::EnvTemplate { .. } => "app.template_dir".into(),
            AppError::Render { .. } => "app.settings".into(),
            AppError::Setting { key, .. } => format!("app.settings.{key}"),
            AppError::EnvVar { key, .. } => format!("app.env.{key}"),
            AppError::EnvCommand { key, .. } => format!("app.env_commands.{key}"),
            AppError::Rotate { .. } | AppError::NoApp | AppError::BuiltinSettings { .. } => {
                "app".into()
            }
        }
    }
}

/// Check the `app` section of one host of a loaded inventory: the app builds from the
/// host's vars, its templates rendering with the host's settings (values that cannot be
/// written into its files as data are refused here). A problem is located at the
/// inventory line that sets the field.
pub fn check(spec: &HostSpec, options: &AppOptions) -> Result<(), Box<InventoryError>> {
    App::from_vars(&spec.vars, options).map(drop).map_err(|e| {
        let problem = format!("host `{}`: {}", spec.name, common::error::error_chain(&e));
        Box::new(spec.origins.error(&e.field(), problem))
    })
}

/// The resources that set up the app of `vars` (none when the inventory has no app).
pub fn resources(vars: &Vars, options: &AppOptions) -> Result<Vec<Box<dyn Resource>>, AppError> {
    Ok(App::from_vars(vars, options)?
        .map(App::into_resources)
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use common::inventory::Inventory;

    use super::*;

    /// A value only the app can judge (the template set) is refused by [`check`] at the
    /// inventory's file, line and column, naming the field.
    #[test]
    fn check_locates_an_app_problem_at_its_line_and_field() {
        let text = "[hosts.web-1]\naddress = \"10.0.0.1\"\n[hosts.web-1.vars.app]\nname = \"shop\"\ntemplate = \"no-such-set\"\n";
        let inventory = Inventory::parse("inv.toml", text, None).unwrap();
        let e = check(&inventory.hosts[0], &AppOptions::default()).unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.line, e.column, e.field.as_deref()),
            ("inv.toml", 5, 12, Some("app.template"))
        );
        assert!(e.message.starts_with("host `web-1`: "), "{}", e.message);
        assert!(e.message.contains("no-such-set"), "{}", e.message);
        assert!(
            e.to_string().starts_with("inv.toml:5:12: `app.template`: "),
            "{e}"
        );
    }

    #[test]
    fn check_passes_a_host_without_an_app() {
        let inventory = Inventory::parse("inv.toml", "[hosts.web-1]\n", None).unwrap();
        check(&inventory.hosts[0], &AppOptions::default()).unwrap();
    }
}
