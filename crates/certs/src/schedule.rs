//! `provision certs schedule`: a systemd timer on the host that runs
//! `provision certs renew --local` (with a randomized delay), plus what it reads: the
//! declarations, the extra CA root and the environment with the DNS API token.
//!
//! Without systemd, the same is one cron line ([`cron_line`]).

use std::collections::BTreeMap;

use common::resource::{Resource, ResourceId};
use common::resources::{File, Service, Trigger};
use minijinja::{Environment, UndefinedBehavior, context};

use crate::declaration::{CertificateDeclaration, ChallengeConfig};

/// Where the host keeps what the timer needs.
pub const LOCAL_CONFIG_DIR: &str = "/etc/provision/certs";
/// State directory on the host itself.
pub(crate) const LOCAL_STATE_DIR: &str = "/var/lib/provision/certs";
/// The timer's unit name.
pub(crate) const TIMER_UNIT: &str = "provision-certs-renew.timer";
const SERVICE_PATH: &str = "/etc/systemd/system/provision-certs-renew.service";
const TIMER_PATH: &str = "/etc/systemd/system/provision-certs-renew.timer";

const SERVICE_TEMPLATE: &str = include_str!("templates/provision-certs-renew.service.j2");
const TIMER_TEMPLATE: &str = include_str!("templates/provision-certs-renew.timer.j2");

#[derive(Debug, Clone)]
pub struct ScheduleOptions {
    /// Path of the provision binary on the host.
    pub binary: String,
    /// `RandomizedDelaySec=` of the timer.
    pub randomized_delay: String,
    /// Secrets the renewal needs on the host (e.g. `CLOUDFLARE_API_TOKEN`), written 0600.
    pub environment: BTreeMap<String, String>,
}

impl Default for ScheduleOptions {
    fn default() -> Self {
        Self {
            binary: "/usr/local/bin/provision".into(),
            randomized_delay: "1h".into(),
            environment: BTreeMap::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("rendering {template} failed")]
    Template {
        template: &'static str,
        #[source]
        source: minijinja::Error,
    },
    #[error("cannot read the CA root {path} to copy it to the host")]
    Root {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the declaration of {name} does not serialize")]
    Json {
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The environment variables a declaration's renewal reads, with their values here.
pub fn secret_environment(declarations: &[CertificateDeclaration]) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for d in declarations {
        if let ChallengeConfig::Dns01(dns) = &d.challenge
            && let Some(var) = &dns.token_env
            && let Ok(value) = std::env::var(var)
        {
            env.insert(var.clone(), value);
        }
        if let Some(eab) = &d.ca.eab
            && let Some(var) = eab.hmac_key.strip_prefix("env:")
            && let Ok(value) = std::env::var(var)
        {
            env.insert(var.to_string(), value);
        }
    }
    env
}

fn render(
    name: &'static str,
    source: &'static str,
    ctx: minijinja::Value,
) -> Result<String, ScheduleError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
        .map_err(|source| ScheduleError::Template {
            template: name,
            source,
        })?;
    env.set_syntax(syntax);
    env.add_template(name, source)
        .and_then(|_| env.get_template(name)?.render(ctx))
        .map_err(|source| ScheduleError::Template {
            template: name,
            source,
        })
}

/// The systemd service unit.
pub fn service_unit(options: &ScheduleOptions) -> Result<String, ScheduleError> {
    render(
        "provision-certs-renew.service",
        SERVICE_TEMPLATE,
        context! {
            binary => options.binary.clone(),
            config_dir => LOCAL_CONFIG_DIR,
            state_dir => LOCAL_STATE_DIR,
        },
    )
}

/// The systemd timer unit.
pub(crate) fn timer_unit(
    schedule: &str,
    options: &ScheduleOptions,
) -> Result<String, ScheduleError> {
    render(
        "provision-certs-renew.timer",
        TIMER_TEMPLATE,
        context! {
            schedule => schedule,
            randomized_delay => options.randomized_delay.clone(),
        },
    )
}

/// The equivalent `/etc/cron.d/provision-certs` line: twice a day, after a random delay of
/// up to an hour (`shuf`, since `%` has a meaning in crontabs).
pub fn cron_line(options: &ScheduleOptions) -> String {
    format!(
        "17 3,15 * * * root sleep $(shuf -i 0-3600 -n 1) && PROVISION_CERTS_STATE={LOCAL_STATE_DIR} {} certs renew --local --config-dir {LOCAL_CONFIG_DIR} >>/var/log/provision-certs.log 2>&1",
        options.binary
    )
}

/// Everything the renewal timer needs on the declarations' host.
pub fn schedule_resources(
    declarations: &[CertificateDeclaration],
    options: &ScheduleOptions,
) -> Result<Vec<Box<dyn Resource>>, ScheduleError> {
    let mut resources: Vec<Box<dyn Resource>> = Vec::new();
    let mut schedule = crate::declaration::DEFAULT_SCHEDULE.to_string();
    for d in declarations {
        let mut local = d.clone();
        if let Some(root) = &d.ca.root_pem {
            let pem = std::fs::read(root).map_err(|source| ScheduleError::Root {
                path: root.display().to_string(),
                source,
            })?;
            let path = format!("{LOCAL_CONFIG_DIR}/{}.root.pem", d.name);
            resources.push(Box::new(File::new(&path, pem).mode(0o644)));
            local.ca.root_pem = Some(path.into());
        }
        let mut json = serde_json::to_vec_pretty(&local).map_err(|source| ScheduleError::Json {
            name: d.name.clone(),
            source,
        })?;
        json.push(b'\n');
        resources.push(Box::new(
            File::new(format!("{LOCAL_CONFIG_DIR}/{}.json", d.name), json).mode(0o600),
        ));
        schedule = d.schedule.clone();
    }
    if !options.environment.is_empty() {
        let body: String = options
            .environment
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        resources.push(Box::new(
            File::new(format!("{LOCAL_CONFIG_DIR}/environment"), body)
                .mode(0o600)
                .sensitive(),
        ));
    }
    let service = File::new(SERVICE_PATH, service_unit(options)?).mode(0o644);
    let timer = File::new(TIMER_PATH, timer_unit(&schedule, options)?).mode(0o644);
    let reload = Trigger::daemon_reload(
        ResourceId::of("systemd", "daemon-reload"),
        vec![service.id(), timer.id()],
    );
    resources.push(Box::new(service));
    resources.push(Box::new(timer));
    resources.push(Box::new(reload));
    resources.push(Box::new(Service::running(TIMER_UNIT)));
    Ok(resources)
}

/// Errors reading the host-local declarations.
#[derive(Debug, thiserror::Error)]
pub enum LocalConfigError {
    #[error("cannot read {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a certificate declaration")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The declarations `certs schedule` installed (`<dir>/*.json`), for `renew --local`.
pub fn load_local_declarations(
    dir: &std::path::Path,
) -> Result<Vec<CertificateDeclaration>, LocalConfigError> {
    let io = |source| LocalConfigError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let text = std::fs::read(&p).map_err(|source| LocalConfigError::Io {
            path: p.display().to_string(),
            source,
        })?;
        out.push(
            serde_json::from_slice(&text).map_err(|source| LocalConfigError::Json {
                path: p.display().to_string(),
                source,
            })?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::{Action, Facts, Plan};

    #[test]
    fn units_render() {
        let options = ScheduleOptions::default();
        insta::assert_snapshot!("service", service_unit(&options).unwrap());
        insta::assert_snapshot!(
            "timer",
            timer_unit(crate::declaration::DEFAULT_SCHEDULE, &options).unwrap()
        );
        insta::assert_snapshot!("cron", cron_line(&options));
    }

    #[test]
    fn resources_install_config_units_and_enable_the_timer() {
        let d = crate::selfsigned::tests::declaration();
        let mut options = ScheduleOptions::default();
        options
            .environment
            .insert("CLOUDFLARE_API_TOKEN".into(), "secret".into());
        let r = schedule_resources(std::slice::from_ref(&d), &options).unwrap();
        let ids: Vec<String> = r.iter().map(|r| r.id().to_string()).collect();
        assert_eq!(
            ids,
            [
                "file:/etc/provision/certs/dev.example.json",
                "file:/etc/provision/certs/environment",
                "file:/etc/systemd/system/provision-certs-renew.service",
                "file:/etc/systemd/system/provision-certs-renew.timer",
                "systemd:daemon-reload",
                "service:provision-certs-renew.timer",
            ]
        );
        assert_eq!(r[4].watches(), [r[2].id(), r[3].id()]);
        assert_eq!(
            r[4].plan(&Facts::default()).unwrap(),
            Plan::noop("runs only when a unit file changes")
        );
        assert_eq!(
            r[4].on_watched_change(&Facts::default()).unwrap(),
            [Action::DaemonReload]
        );
    }

    #[test]
    fn local_declarations_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let d = crate::selfsigned::tests::declaration();
        std::fs::write(
            tmp.path().join("dev.example.json"),
            serde_json::to_vec(&d).unwrap(),
        )
        .unwrap();
        std::fs::write(tmp.path().join("environment"), "X=1\n").unwrap();
        assert_eq!(load_local_declarations(tmp.path()).unwrap(), [d]);
        std::fs::write(tmp.path().join("bad.json"), "{}").unwrap();
        let e = load_local_declarations(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("bad.json"), "{e}");
    }
}
