//! One application's desired state, assembled from the inventory vars and a template set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::Resource;
use common::inventory::Vars;
use common::resource::ResourceId;
use common::resources::{File, Service};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

use crate::AppError;
use crate::blueprint::{self, Blueprint, Check, OwnerSpec, common as common_templates};
use crate::checks;
use crate::env_file::EnvFile;
use crate::templates::Templates;
use crate::tree::{AppDirectory, Principal};
use common::resources::Trigger;

/// Where nginx serves ACME HTTP-01 challenge files from (the certs step writes them here).
pub(crate) const ACME_ROOT: &str = common::ACME_WEBROOT;

/// Options that do not come from the inventory.
#[derive(Debug, Clone, Default)]
pub struct AppOptions {
    /// Secrets to regenerate (`--rotate-secret KEY`); each must be a generated secret.
    pub rotate: Vec<String>,
    /// Seed of the secret generator, for reproducible output in tests. `None` (always, in
    /// production) draws from the operating system's CSPRNG.
    pub secret_seed: Option<u64>,
    /// Directory a relative `app.template_dir` is resolved against (the inventory's
    /// directory); the current directory when unset.
    pub base_dir: Option<PathBuf>,
    /// Run the vault commands of `app.env_commands` (when building the resources to plan
    /// and apply). Off, their values are not known: the app still builds (the inventory's
    /// checks), but the `.env` refuses to plan.
    pub run_env_commands: bool,
}

/// A rendered file of the app and where it goes.
#[derive(Debug, Clone)]
pub struct RenderedFile {
    /// Template it was rendered from.
    pub template: String,
    pub file: File,
}

/// Everything an app needs on a host, before it becomes a list of resources.
#[derive(Debug)]
pub struct App {
    pub name: String,
    /// The app directory, e.g. `/opt/ai-meeting`.
    pub dir: String,
    pub blueprint: &'static Blueprint,
    pub owner: String,
    pub group: String,
    pub directories: Vec<AppDirectory>,
    pub env: EnvFile,
    /// Files of the tree (compose, nginx, ...) and of the system (backup script, units).
    pub files: Vec<RenderedFile>,
    /// Ids of the unit file resources (a daemon-reload follows their change).
    pub unit_files: Vec<ResourceId>,
    pub services: Vec<Service>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

fn setting_id(
    settings: &serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<u32, AppError> {
    let value = settings.get(key).ok_or_else(|| AppError::Setting {
        key: key.into(),
        problem: "missing (the owner uid of a data directory)".into(),
    })?;
    value
        .as_u64()
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| AppError::Setting {
            key: key.into(),
            problem: format!("expected a uid (a non-negative integer), found {value}"),
        })
}

impl App {
    /// Build the app from `vars.app`; `Ok(None)` when the inventory has no app.
    pub fn from_vars(vars: &Vars, options: &AppOptions) -> Result<Option<App>, AppError> {
        let Some(a) = &vars.app else {
            if !options.rotate.is_empty() {
                return Err(AppError::NoApp);
            }
            return Ok(None);
        };
        let name = a.name.clone().ok_or(AppError::MissingName)?;
        if !valid_name(&name) {
            return Err(AppError::InvalidName(name));
        }
        let set = a.template.as_deref().unwrap_or(&name);
        let blueprint = blueprint::find(set).ok_or_else(|| AppError::UnknownSet {
            name: set.to_string(),
            known: blueprint::names(),
        })?;
        let layout = crate::AppLayout::of(a).ok_or(AppError::MissingName)?;
        let dir = layout.dir().to_string();
        if !dir.starts_with('/') || dir.contains(['\n', '\r']) {
            return Err(AppError::Path(dir));
        }
        let owner = a
            .owner
            .clone()
            .or_else(|| vars.deploy_user.as_ref().and_then(|d| d.name.clone()))
            .unwrap_or_else(|| "root".into());
        let group = a.group.clone().unwrap_or_else(|| owner.clone());
        let domain = a.domain.clone().unwrap_or_else(|| "localhost".into());
        let aliases = a.aliases.clone().unwrap_or_default();

        // Settings: the set's defaults, then the inventory's.
        let mut settings: toml::Table =
            toml::from_str(blueprint.settings).map_err(|source| AppError::BuiltinSettings {
                set: blueprint.name.to_string(),
                source,
            })?;
        for (k, v) in a.settings.clone().unwrap_or_default() {
            settings.insert(k, v);
        }
        let settings = match serde_json::to_value(&settings) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => unreachable!("a TOML table is a JSON object"),
        };

        let backup_vars = a.backup.clone().unwrap_or_default();
        let backup_enabled = backup_vars
            .enabled
            .unwrap_or(!blueprint.databases.is_empty());
        let schedule = backup_vars
            .schedule
            .clone()
            .unwrap_or_else(|| blueprint.backup_schedule.to_string());
        if schedule.trim().is_empty() || schedule.contains(['\n', '\r']) {
            return Err(AppError::Schedule(schedule));
        }
        let retention_days = backup_vars
            .retention_days
            .unwrap_or(blueprint.backup_retention_days);
        let backup_script = format!("/usr/local/sbin/{name}-backup");

        let mut server_names = vec![domain.clone()];
        server_names.extend(aliases.iter().cloned());
        let context = json!({
            "app": {
                "name": name,
                "dir": dir,
                "domain": domain,
                "aliases": aliases,
                "server_names": server_names.join(" "),
                "owner": owner,
                "group": group,
                "set": blueprint.name,
            },
            "settings": settings,
            "timezone": vars.timezone.clone().unwrap_or_else(|| "UTC".into()),
            "acme_root": ACME_ROOT,
            "databases": blueprint.databases,
            "backup": {
                "enabled": backup_enabled,
                "schedule": schedule,
                "retention_days": retention_days,
                "dir": format!("{dir}/backups"),
                "log": format!("{dir}/logs/backup.log"),
                "script": backup_script,
                "config_files": blueprint.backup_config_files,
            },
        });

        // Templates: the set's, the common ones it uses, each overridable by the user.
        let mut builtin: Vec<(&str, &str)> = vec![("env", blueprint.env)];
        builtin.extend(blueprint.files.iter().map(|f| (f.template, f.source)));
        builtin.extend([
            ("backup.sh", common_templates::BACKUP_SCRIPT),
            ("backup.service", common_templates::BACKUP_SERVICE),
            ("backup.timer", common_templates::BACKUP_TIMER),
        ]);
        if blueprint.pm2 {
            builtin.push(("pm2.service", common_templates::PM2_SERVICE));
        }
        let template_dir = a.template_dir.as_ref().map(|d| {
            let d = Path::new(d);
            match &options.base_dir {
                Some(base) if d.is_relative() => base.join(d),
                _ => d.to_path_buf(),
            }
        });
        let templates = Templates::load(blueprint.name, &builtin, template_dir.as_deref())?;

        let principal = |spec: OwnerSpec| -> Result<(Principal, Principal), AppError> {
            Ok(match spec {
                OwnerSpec::App => (
                    Principal::Name(owner.clone()),
                    Principal::Name(group.clone()),
                ),
                OwnerSpec::Root => (
                    Principal::Name("root".into()),
                    Principal::Name("root".into()),
                ),
                OwnerSpec::RootWithAppGroup => (
                    Principal::Name("root".into()),
                    Principal::Name(group.clone()),
                ),
                OwnerSpec::Setting(key) => {
                    let id = setting_id(&settings, key)?;
                    (Principal::Id(id), Principal::Id(id))
                }
            })
        };
        let path_of = |relative: &str| layout.path(relative);

        let mut directories = Vec::new();
        for d in blueprint.directories {
            let (owner, group) = principal(d.owner)?;
            directories.push(AppDirectory {
                path: path_of(d.path),
                mode: d.mode,
                owner,
                group,
            });
        }
        if backup_enabled {
            directories.push(AppDirectory {
                path: path_of("backups"),
                mode: 0o700,
                owner: Principal::Name("root".into()),
                group: Principal::Name("root".into()),
            });
        }
        directories.push(AppDirectory {
            path: ACME_ROOT.into(),
            mode: 0o755,
            owner: Principal::Name("root".into()),
            group: Principal::Name("root".into()),
        });

        let mut rng = match options.secret_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let commands = a.env_commands.clone().unwrap_or_default();
        if let Some(key) = options.rotate.iter().find(|k| commands.contains_key(*k)) {
            return Err(AppError::Rotate {
                key: key.clone(),
                reason: format!(
                    "its value comes from the vault (app.env_commands.{key}); change it there"
                ),
            });
        }
        let mut overrides = a.env.clone().unwrap_or_default();
        let mut pending = Vec::new();
        for (key, argv) in &commands {
            if options.run_env_commands {
                overrides.insert(key.clone(), crate::vault::run(key, argv)?);
            } else {
                pending.push(key.clone());
            }
        }
        let env = EnvFile::new(
            path_of(".env"),
            templates.render_env("env", &context)?,
            overrides,
            &options.rotate,
            &mut rng,
        )?
        .owned_by(&owner, &group)
        .pending(pending);

        let mut files = Vec::new();
        for f in blueprint.files {
            let (o, g) = principal(f.owner)?;
            let mut file = File::new(path_of(f.path), templates.render(f.template, &context)?)
                .mode(f.mode)
                .owned_by(&o.to_string(), &g.to_string());
            match f.check {
                Some(Check::Compose) => file = file.validate(checks::compose_command()),
                Some(Check::Nginx) => file = file.validate(checks::nginx_command(&path_of("ssl"))),
                None => {}
            }
            files.push(RenderedFile {
                template: f.template.into(),
                file,
            });
        }

        let mut unit_files = Vec::new();
        let mut services = Vec::new();
        let mut unit = |template: &str, unit_name: &str, files: &mut Vec<RenderedFile>| {
            let file = File::new(
                format!("/etc/systemd/system/{unit_name}"),
                templates.render(template, &context)?,
            );
            unit_files.push(file.id());
            let id = file.id();
            files.push(RenderedFile {
                template: template.into(),
                file,
            });
            Ok::<ResourceId, AppError>(id)
        };
        if blueprint.pm2 {
            let unit_id = unit("pm2.service", &format!("{name}-pm2.service"), &mut files)?;
            if a.enable_units.unwrap_or(false) {
                let watched = [
                    unit_id,
                    ResourceId::file(&path_of("ecosystem.config.js")),
                    env.id(),
                ];
                services.push(Service::running(&format!("{name}-pm2.service")).reload_on(watched));
            }
        }
        if backup_enabled {
            files.push(RenderedFile {
                template: "backup.sh".into(),
                file: File::new(&backup_script, templates.render("backup.sh", &context)?)
                    .mode(0o700),
            });
            unit(
                "backup.service",
                &format!("{name}-backup.service"),
                &mut files,
            )?;
            let timer_id = unit("backup.timer", &format!("{name}-backup.timer"), &mut files)?;
            services.push(Service::running(&format!("{name}-backup.timer")).reload_on([timer_id]));
        }

        Ok(Some(App {
            name,
            dir,
            blueprint,
            owner,
            group,
            directories,
            env,
            files,
            unit_files,
            services,
        }))
    }

    /// Every file this app renders, by destination path, with the `.env` as it would be
    /// written on a host that has none (its secrets come from the generator).
    pub fn rendered(&self) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = self
            .files
            .iter()
            .map(|f| {
                (
                    f.file.path.clone(),
                    String::from_utf8_lossy(&f.file.content).into_owned(),
                )
            })
            .collect();
        out.insert(self.env.path.clone(), self.env.outcome(None).content);
        out
    }

    /// The resources, in the order they must be applied: the tree, `.env` (before the
    /// compose file, whose check reads it), the files, a daemon-reload, the services.
    pub fn into_resources(self) -> Vec<Box<dyn Resource>> {
        let mut out: Vec<Box<dyn Resource>> = Vec::new();
        for d in self.directories {
            out.push(Box::new(d));
        }
        out.push(Box::new(self.env));
        for f in self.files {
            out.push(Box::new(f.file));
        }
        if !self.unit_files.is_empty() {
            out.push(Box::new(Trigger::daemon_reload(
                ResourceId::of("systemd-daemon-reload", &self.name),
                self.unit_files,
            )));
        }
        for s in self.services {
            out.push(Box::new(s));
        }
        out
    }
}
