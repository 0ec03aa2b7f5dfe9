//! Docker engine (seeds/002 §3.2): enabled at boot, compose, deploy user in the `docker`
//! group (see `base`), `daemon.json` with log rotation.
//!
//! Source, chosen at plan time from the host's OS unless the inventory sets it:
//! * `docker` (default on Ubuntu): Docker's apt repository with a `signed-by` keyring,
//!   `docker-ce` and the compose v2 plugin (`docker compose`).
//! * `distribution` (default on Debian): the distribution's `docker.io`. Compose v2
//!   comes from `docker-compose-v2` on Ubuntu and from `docker-compose` (2.x, a CLI
//!   plugin) on Debian 13, where the `docker` command itself is in the separate
//!   `docker-cli` package. Debian 12's archive has NO compose v2: its `docker-compose`
//!   is compose v1 1.29 (Python, command `docker-compose`, end-of-life), which is what
//!   gets installed there, and every plan says so; use `source = "docker"` for
//!   `docker compose` v2.
//!
//! `apparmor` is installed alongside: the engine installs without recommends, and
//! dockerd refuses to start containers on AppArmor kernels without `apparmor_parser`.

use common::facts::builtin::{HostInfo, HostInfoValue, InstalledPackages, PathKind, PathState};
use common::inventory::{DockerSource, DockerVars};
use common::resources::{File, Service, file_id};
use common::shell::quote;
use common::{Action, Fact, FactError, Facts, Plan, Probe, Resource};

use crate::support::{DesiredFile, PlanBuilder};
use common::PlanError;

pub const KEYRING_PATH: &str = "/etc/apt/keyrings/docker.asc";
pub const SOURCES_PATH: &str = "/etc/apt/sources.list.d/docker.list";
pub const DAEMON_JSON_PATH: &str = "/etc/docker/daemon.json";

/// The source for this host: the inventory's, else Docker's repository on Ubuntu and the
/// distribution's packages elsewhere.
pub fn source_for(vars: &DockerVars, host: &HostInfoValue) -> DockerSource {
    vars.source.unwrap_or(if host.os_id == "ubuntu" {
        DockerSource::Docker
    } else {
        DockerSource::Distribution
    })
}

fn supported(host: &HostInfoValue) -> Result<(), FactError> {
    if matches!(host.os_id.as_str(), "debian" | "ubuntu") {
        Ok(())
    } else {
        Err(FactError::Parse {
            key: "host".into(),
            what: "a Debian or Ubuntu system (Docker packages)".into(),
            line: host.os_id.clone(),
        })
    }
}

/// Debian before 13: the distribution's compose is v1 only.
fn debian_before_13(host: &HostInfoValue) -> bool {
    host.os_id == "debian"
        && host
            .os_version
            .split('.')
            .next()
            .and_then(|v| v.parse::<u32>().ok())
            .is_some_and(|v| v < 13)
}

/// What `check` and `up` say where the distribution's compose is v1 only.
pub const COMPOSE_V1_ONLY: &str = "Debian 12's archive has only compose v1 (docker-compose 1.29, end-of-life; no `docker compose` v2); templates that need compose >= 2.20 will not run: set docker.source = \"docker\" (Docker's repository or a mirror of it)";

/// Packages for a source on a host.
pub fn packages_for(source: DockerSource, host: &HostInfoValue) -> Vec<&'static str> {
    match source {
        DockerSource::Docker => vec![
            "docker-ce",
            "docker-ce-cli",
            "containerd.io",
            "docker-buildx-plugin",
            "docker-compose-plugin",
            "apparmor",
        ],
        DockerSource::Distribution if host.os_id == "ubuntu" => {
            vec!["docker.io", "docker-compose-v2", "apparmor"]
        }
        // Debian 12: compose v1 (see the module docs).
        DockerSource::Distribution if debian_before_13(host) => {
            vec!["docker.io", "docker-compose", "apparmor"]
        }
        // Debian 13: the client is split out of docker.io; compose 2.x.
        DockerSource::Distribution => vec!["docker.io", "docker-cli", "docker-compose", "apparmor"],
    }
}

/// The apt source line of Docker's repository for this host.
pub fn sources_line(host: &HostInfoValue) -> String {
    format!(
        "# Managed by provision; local changes are overwritten.\n\
         deb [arch={} signed-by={KEYRING_PATH}] https://download.docker.com/linux/{} {} stable\n",
        host.architecture, host.os_id, host.os_codename
    )
}

/// Docker's apt repository (source `docker`): keyring and source list, then an
/// `apt-get update` so the run's one apt transaction sees the packages. Must come before
/// every package resource.
#[derive(Debug, Clone)]
pub struct DockerRepository {
    pub vars: DockerVars,
}

impl Resource for DockerRepository {
    fn id(&self) -> String {
        "docker:repository".into()
    }

    fn probes(&self) -> Vec<Probe> {
        vec![
            HostInfo.probe(),
            PathState::new(KEYRING_PATH).probe(),
            PathState::new(SOURCES_PATH).probe(),
        ]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let host = facts.read(&HostInfo)?;
        supported(&host)?;
        if source_for(&self.vars, &host) == DockerSource::Distribution {
            return Ok(Plan::noop(format!(
                "Docker from {}'s own packages: no extra repository",
                host.os_id
            )));
        }
        let mut changes = PlanBuilder::default();
        let keyring = facts.read(&PathState::new(KEYRING_PATH))?;
        if keyring.kind == PathKind::Absent || keyring.size == 0 {
            let url = format!("https://download.docker.com/linux/{}/gpg", host.os_id);
            changes.push(
                format!("fetch Docker's signing key into {KEYRING_PATH}"),
                vec![Action::run(
                    "fetch Docker's apt signing key",
                    format!(
                        "install -d -m 0755 /etc/apt/keyrings\n\
                         if ! command -v curl >/dev/null 2>&1; then {}; fi\n\
                         curl -fsSL {} -o {KEYRING_PATH}.tmp\n\
                         grep -q 'BEGIN PGP PUBLIC KEY BLOCK' {KEYRING_PATH}.tmp\n\
                         chmod 0644 {KEYRING_PATH}.tmp\n\
                         mv -f {KEYRING_PATH}.tmp {KEYRING_PATH}",
                        common::apt::install(["curl", "ca-certificates"]),
                        quote(&url)
                    ),
                )],
            );
        }
        let sources = facts.read(&PathState::new(SOURCES_PATH))?;
        changes.add(DesiredFile::new(SOURCES_PATH, sources_line(&host), 0o644).changes(&sources)?);
        if changes.is_empty() {
            return Ok(Plan::noop(format!(
                "Docker's repository for {} {} configured",
                host.os_id, host.os_codename
            )));
        }
        changes.then(Action::run(
            "apt-get update (Docker's repository)",
            common::apt::update().to_string(),
        ));
        Ok(changes.build(""))
    }
}

/// Docker's packages for the host's source (merged into the run's apt transaction).
#[derive(Debug, Clone)]
pub struct DockerPackages {
    pub vars: DockerVars,
}

impl Resource for DockerPackages {
    fn id(&self) -> String {
        "packages:docker".into()
    }

    fn probes(&self) -> Vec<Probe> {
        vec![HostInfo.probe(), InstalledPackages.probe()]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let host = facts.read(&HostInfo)?;
        supported(&host)?;
        let source = source_for(&self.vars, &host);
        let installed = facts.read(&InstalledPackages)?;
        let wanted = packages_for(source, &host);
        let missing: Vec<String> = wanted
            .iter()
            .filter(|p| !installed.contains_key(**p))
            .map(|p| p.to_string())
            .collect();
        let from = match source {
            DockerSource::Docker => "Docker's repository",
            DockerSource::Distribution => "the distribution",
        };
        let warning = if source == DockerSource::Distribution && debian_before_13(&host) {
            format!("; {COMPOSE_V1_ONLY}")
        } else {
            String::new()
        };
        if missing.is_empty() {
            return Ok(Plan::noop(format!(
                "{} installed from {from}{warning}",
                wanted.join(" ")
            )));
        }
        Ok(Plan::change(
            format!("install {} from {from}{warning}", missing.join(" ")),
            vec![Action::InstallPackages { names: missing }],
        ))
    }
}

/// `daemon.json`: json-file logs rotated.
pub fn daemon_json(vars: &DockerVars) -> String {
    let size = vars.log_max_size.clone().unwrap_or_else(|| "10m".into());
    let files = vars.log_max_file.unwrap_or(3);
    let value = serde_json::json!({
        "log-driver": "json-file",
        "log-opts": { "max-size": size, "max-file": files.to_string() },
    });
    let mut text = serde_json::to_string_pretty(&value).expect("JSON value serializes");
    text.push('\n');
    text
}

/// The Docker set after its packages: daemon.json and the service (restarted when
/// daemon.json changed).
pub fn resources(vars: &DockerVars) -> Vec<Box<dyn Resource>> {
    vec![
        Box::new(File::new(DAEMON_JSON_PATH, daemon_json(vars)).mode(0o644)),
        Box::new(
            Service::running("docker.service")
                .reload_on([file_id(DAEMON_JSON_PATH)])
                .restart_on_change(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    fn host(text: &str) -> HostInfoValue {
        HostInfo.parse(&ok(text)).unwrap()
    }

    #[test]
    fn default_source_per_os() {
        let v = DockerVars::default();
        assert_eq!(
            source_for(&v, &host(HOST_DEBIAN12_NSPAWN)),
            DockerSource::Distribution
        );
        assert_eq!(
            source_for(&v, &host(HOST_UBUNTU2204_KVM)),
            DockerSource::Docker
        );
        let forced = DockerVars {
            source: Some(DockerSource::Distribution),
            ..DockerVars::default()
        };
        assert_eq!(
            source_for(&forced, &host(HOST_UBUNTU2404_KVM)),
            DockerSource::Distribution
        );
        assert_eq!(
            packages_for(DockerSource::Distribution, &host(HOST_UBUNTU2404_KVM)),
            ["docker.io", "docker-compose-v2", "apparmor"]
        );
        assert_eq!(
            packages_for(DockerSource::Distribution, &host(HOST_DEBIAN12_NSPAWN)),
            ["docker.io", "docker-compose", "apparmor"]
        );
    }

    #[test]
    fn ubuntu_gets_dockers_repository_with_signed_by() {
        let r = DockerRepository {
            vars: DockerVars::default(),
        };
        let f = facts(&[
            ("host", ok(HOST_UBUNTU2404_KVM)),
            ("path:/etc/apt/keyrings/docker.asc", ok("absent\n")),
            ("path:/etc/apt/sources.list.d/docker.list", ok("absent\n")),
        ]);
        let (summary, actions) = plan_of(&r, &f).expect_change();
        assert_eq!(
            summary,
            "fetch Docker's signing key into /etc/apt/keyrings/docker.asc; create /etc/apt/sources.list.d/docker.list"
        );
        let s = scripts(&actions);
        assert!(s[0].contains("curl -fsSL https://download.docker.com/linux/ubuntu/gpg"));
        assert_eq!(s.last().unwrap(), &common::apt::update().to_string());
        insta::assert_snapshot!("docker-list-ubuntu2404", written(&actions, SOURCES_PATH));

        let f = facts(&[
            ("host", ok(HOST_UBUNTU2204_KVM)),
            (
                "path:/etc/apt/keyrings/docker.asc",
                file_state(
                    "-----BEGIN PGP PUBLIC KEY BLOCK-----",
                    0o644,
                    "root",
                    "root",
                ),
            ),
            (
                "path:/etc/apt/sources.list.d/docker.list",
                file_state(
                    &sources_line(&host(HOST_UBUNTU2204_KVM)),
                    0o644,
                    "root",
                    "root",
                ),
            ),
        ]);
        assert_eq!(
            plan_of(&r, &f).expect_noop(),
            "Docker's repository for ubuntu jammy configured"
        );
    }

    #[test]
    fn debian_defaults_to_distribution_packages() {
        let r = DockerRepository {
            vars: DockerVars::default(),
        };
        let f = facts(&[
            ("host", ok(HOST_DEBIAN12_NSPAWN)),
            ("path:/etc/apt/keyrings/docker.asc", ok("absent\n")),
            ("path:/etc/apt/sources.list.d/docker.list", ok("absent\n")),
        ]);
        assert_eq!(
            plan_of(&r, &f).expect_noop(),
            "Docker from debian's own packages: no extra repository"
        );
        let p = DockerPackages {
            vars: DockerVars::default(),
        };
        let f = facts(&[
            ("host", ok(HOST_DEBIAN12_NSPAWN)),
            ("dpkg", ok("docker.io\tii \t20.10.24+dfsg1-1+deb12u1+b6\n")),
        ]);
        let (summary, actions) = plan_of(&p, &f).expect_change();
        assert_eq!(
            summary,
            format!("install docker-compose apparmor from the distribution; {COMPOSE_V1_ONLY}")
        );
        assert_eq!(
            actions,
            [Action::InstallPackages {
                names: vec!["docker-compose".into(), "apparmor".into()]
            }]
        );
        // Debian with Docker's repository (arm64 host).
        let forced = DockerRepository {
            vars: DockerVars {
                source: Some(DockerSource::Docker),
                ..DockerVars::default()
            },
        };
        let f = facts(&[
            ("host", ok(HOST_DEBIAN12_KVM)),
            ("path:/etc/apt/keyrings/docker.asc", ok("absent\n")),
            ("path:/etc/apt/sources.list.d/docker.list", ok("absent\n")),
        ]);
        let (_, actions) = plan_of(&forced, &f).expect_change();
        insta::assert_snapshot!(
            "docker-list-debian12-arm64",
            written(&actions, SOURCES_PATH)
        );
    }

    /// Issue 10: on Debian 13 `docker.io` alone gives a daemon and no `docker` command.
    #[test]
    fn debian13_gets_the_split_cli_and_compose_v2() {
        let trixie = host(&HOST_DEBIAN12_NSPAWN.replace("os_version=12", "os_version=13"));
        assert_eq!(trixie.os_version, "13");
        assert_eq!(
            packages_for(DockerSource::Distribution, &trixie),
            ["docker.io", "docker-cli", "docker-compose", "apparmor"]
        );
        let p = DockerPackages {
            vars: DockerVars::default(),
        };
        let f = facts(&[
            (
                "host",
                ok(&HOST_DEBIAN12_NSPAWN.replace("os_version=12", "os_version=13")),
            ),
            ("dpkg", ok("docker.io\tii \t26.1.5+dfsg1-9+deb13u1+b1\n")),
        ]);
        let (summary, _) = plan_of(&p, &f).expect_change();
        assert_eq!(
            summary,
            "install docker-cli docker-compose apparmor from the distribution"
        );
    }

    #[test]
    fn daemon_json_rotates_logs_and_restarts_docker() {
        insta::assert_snapshot!("daemon.json", daemon_json(&DockerVars::default()));
        let rs = resources(&DockerVars::default());
        assert_eq!(rs[1].watches(), [format!("file:{DAEMON_JSON_PATH}")]);
        assert_eq!(
            scripts(&rs[1].on_watched_change()),
            ["systemctl restart docker.service"]
        );
    }
}
