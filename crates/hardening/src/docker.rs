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

use common::apt::Restore;
use common::facts::builtin::{
    HostInfo, HostInfoValue, InstalledPackages, PathKind, PathState, PathStateValue,
};
use common::inventory::{DockerSource, DockerVars};
use common::resource::ResourceId;
use common::resources::{File, Service};
use common::shell::quote;
use common::{Action, Fact, FactError, Facts, Plan, Probe, Resource};

use crate::support::{DesiredFile, PlanBuilder};
use common::PlanError;

pub(crate) const KEYRING_PATH: &str = "/etc/apt/keyrings/docker.asc";
pub(crate) const SOURCES_PATH: &str = "/etc/apt/sources.list.d/docker.list";
pub(crate) const PIN_PATH: &str = "/etc/apt/preferences.d/docker.pref";
pub(crate) const DAEMON_JSON_PATH: &str = "/etc/docker/daemon.json";

/// The source for this host: the inventory's, else Docker's repository on Ubuntu and the
/// distribution's packages elsewhere.
pub(crate) fn source_for(vars: &DockerVars, host: &HostInfoValue) -> DockerSource {
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
pub(crate) const COMPOSE_V1_ONLY: &str = "Debian 12's archive has only compose v1 (docker-compose 1.29, end-of-life; no `docker compose` v2); templates that need compose >= 2.20 will not run: set docker.source = \"docker\" (Docker's repository or a mirror of it)";

/// Packages for a source on a host.
pub(crate) fn packages_for(source: DockerSource, host: &HostInfoValue) -> Vec<&'static str> {
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

/// Docker's own apt repository: the default of `docker.repository.url`.
pub(crate) const DEFAULT_REPOSITORY: &str = "https://download.docker.com";

/// Docker's packages, held to its repository by [`PIN_PATH`] (apt_preferences(5) globs).
pub(crate) const PINNED_PACKAGES: &str =
    "docker-ce* containerd.io docker-buildx-plugin docker-compose-plugin";

/// Where Docker's repository is for a host, and its signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// The directory holding `dists/` (`…/linux/ubuntu`), without a trailing `/`.
    pub url: String,
    pub key: RepositoryKey,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositoryKey {
    /// The armored key as the keyring file holds it (`docker.repository.key`).
    Inline(String),
    /// Downloaded by the host (`docker.repository.key_url`, else `gpg` in the repository).
    Url(String),
}

/// The repository for this host: `None` when Docker comes from the distribution and the
/// inventory sets no `docker.repository`.
pub(crate) fn repository_for(
    vars: &DockerVars,
    host: &HostInfoValue,
) -> Result<Option<Repository>, PlanError> {
    if vars.repository.is_none() && source_for(vars, host) == DockerSource::Distribution {
        return Ok(None);
    }
    let r = vars.repository.clone().unwrap_or_default();
    let root = r
        .url
        .as_deref()
        .unwrap_or(DEFAULT_REPOSITORY)
        .trim_end_matches('/')
        .to_string();
    let url = if root.ends_with("/linux/ubuntu") || root.ends_with("/linux/debian") {
        root
    } else {
        format!("{root}/linux/{}", host.os_id)
    };
    let key = match (r.key, r.key_url) {
        (Some(_), Some(_)) => {
            return Err(PlanError::InvalidVar {
                field: "docker.repository.key".into(),
                expected: "either `key` or `key_url` (the layers of the inventory set both)".into(),
                value: "both".into(),
            });
        }
        (Some(key), None) => RepositoryKey::Inline(common::values::armored_key_file(&key)),
        (None, Some(key_url)) => RepositoryKey::Url(key_url),
        (None, None) => RepositoryKey::Url(format!("{url}/gpg")),
    };
    Ok(Some(Repository { url, key }))
}

/// The apt source of Docker's repository for this host (the key's origin in a comment:
/// a new `key_url` changes the file, and the key is fetched again).
pub(crate) fn sources_line(repo: &Repository, host: &HostInfoValue) -> String {
    let key = match &repo.key {
        RepositoryKey::Inline(_) => "docker.repository.key (inline)".to_string(),
        RepositoryKey::Url(url) => url.clone(),
    };
    format!(
        "# Managed by provision; local changes are overwritten.\n\
         # Signing key: {key}\n\
         deb [arch={} signed-by={KEYRING_PATH}] {} {} stable\n",
        host.architecture, repo.url, host.os_codename
    )
}

/// The pin that makes Docker's packages come from its repository (priority 900: above
/// every other source at 500, without downgrading an installed newer version).
pub(crate) fn pin_file(repo: &Repository) -> String {
    format!(
        "# Managed by provision; local changes are overwritten.\n\
         # Docker's packages come from its repository ({}), whatever else offers them.\n\
         Package: {PINNED_PACKAGES}\n\
         Pin: origin \"{}\"\n\
         Pin-Priority: 900\n",
        repo.url,
        common::values::url_host(&repo.url)
    )
}

/// The host downloads the signing key (`key_url`); the previous key is kept as
/// `.provision-bak` until the refresh succeeded.
fn fetch_key(url: &str) -> Action {
    let tmp = format!("{KEYRING_PATH}.tmp");
    Action::run(
        "fetch Docker's apt signing key",
        format!(
            "install -d -m 0755 /etc/apt/keyrings\n\
             if ! command -v curl >/dev/null 2>&1; then {install}; fi\n\
             if ! curl -fsSL -o {tmp} -- {url}; then rm -f -- {tmp}; echo {failed} >&2; exit 1; fi\n\
             if ! grep -q 'BEGIN PGP PUBLIC KEY BLOCK' {tmp}; then rm -f -- {tmp}; echo {not_armored} >&2; exit 1; fi\n\
             chmod 0644 {tmp}\n\
             if [ -f {KEYRING_PATH} ]; then cp -p -- {KEYRING_PATH} {KEYRING_PATH}.provision-bak; fi\n\
             mv -f -- {tmp} {KEYRING_PATH}",
            install = common::apt::install(["curl", "ca-certificates"]),
            url = quote(url),
            tmp = quote(&tmp),
            failed = quote(&format!(
                "cannot download Docker's signing key from {url} (docker.repository.key_url); nothing was changed"
            )),
            not_armored = quote(&format!(
                "{url} did not return an armored OpenPGP public key (docker.repository.key_url); nothing was changed"
            )),
        ),
    )
}

/// A file change of the repository, and how to put the file back if the refresh fails.
fn add(
    changes: &mut PlanBuilder,
    restore: &mut Vec<Restore>,
    current: &PathStateValue,
    change: Option<(String, Action)>,
) {
    if let Some((summary, action)) = change {
        restore.extend(Restore::of(&action, current));
        changes.push(summary, vec![action]);
    }
}

/// Docker's apt repository (source `docker`, or `docker.repository` set): keyring, source
/// list and pin, then an `apt-get update` so the run's one apt transaction sees the
/// packages; if the repository does not answer, the files are put back and the run stops
/// there. Must come before every package resource.
#[derive(Debug, Clone)]
pub(crate) struct DockerRepository {
    pub vars: DockerVars,
}

impl Resource for DockerRepository {
    fn id(&self) -> ResourceId {
        ResourceId::of("docker", "repository")
    }

    fn probes(&self) -> Vec<Probe> {
        vec![
            HostInfo.probe(),
            PathState::new(KEYRING_PATH).probe(),
            PathState::new(SOURCES_PATH).probe(),
            PathState::new(PIN_PATH).probe(),
        ]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let host = facts.read(&HostInfo)?;
        supported(&host)?;
        let Some(repo) = repository_for(&self.vars, &host)? else {
            return Ok(Plan::noop(format!(
                "Docker from {}'s own packages: no extra repository",
                host.os_id
            )));
        };
        let mut changes = PlanBuilder::default();
        let mut restore = Vec::new();
        let keyring = facts.read(&PathState::new(KEYRING_PATH))?;
        let sources = facts.read(&PathState::new(SOURCES_PATH))?;
        let sources_change =
            DesiredFile::new(SOURCES_PATH, sources_line(&repo, &host), 0o644).changes(&sources)?;
        match &repo.key {
            RepositoryKey::Inline(key) => {
                let change =
                    DesiredFile::new(KEYRING_PATH, key.clone(), 0o644).changes(&keyring)?;
                add(&mut changes, &mut restore, &keyring, change);
            }
            RepositoryKey::Url(url) => {
                if keyring.kind == PathKind::Absent || keyring.size == 0 || sources_change.is_some()
                {
                    changes.push(
                        format!("fetch Docker's signing key into {KEYRING_PATH}"),
                        vec![fetch_key(url)],
                    );
                    restore.push(Restore {
                        path: KEYRING_PATH.into(),
                        existed: keyring.kind != PathKind::Absent,
                    });
                }
            }
        }
        add(&mut changes, &mut restore, &sources, sources_change);
        let pin = facts.read(&PathState::new(PIN_PATH))?;
        let pin_change = DesiredFile::new(PIN_PATH, pin_file(&repo), 0o644).changes(&pin)?;
        add(&mut changes, &mut restore, &pin, pin_change);
        if changes.is_empty() {
            return Ok(Plan::noop(format!(
                "Docker's repository {} for {} {} configured, its packages pinned to it",
                repo.url, host.os_id, host.os_codename
            )));
        }
        changes.then(Action::run(
            "apt-get update (Docker's repository)",
            common::apt::update_or_restore(
                "the Docker repository (docker.repository)",
                std::slice::from_ref(&repo.url),
                &restore,
            ),
        ));
        Ok(changes.build(""))
    }
}

/// Docker's packages for the host's source (merged into the run's apt transaction).
#[derive(Debug, Clone)]
pub(crate) struct DockerPackages {
    pub vars: DockerVars,
}

impl Resource for DockerPackages {
    fn id(&self) -> ResourceId {
        ResourceId::packages("docker")
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

/// `daemon.json`: json-file logs rotated; the registry mirrors when the inventory has some.
pub(crate) fn daemon_json(vars: &DockerVars) -> String {
    let size = vars.log_max_size.clone().unwrap_or_else(|| "10m".into());
    let files = vars.log_max_file.unwrap_or(3);
    let mut value = serde_json::json!({
        "log-driver": "json-file",
        "log-opts": { "max-size": size, "max-file": files.to_string() },
    });
    if let Some(mirrors) = vars.registry_mirrors.as_ref().filter(|m| !m.is_empty()) {
        value["registry-mirrors"] = serde_json::json!(mirrors);
    }
    let mut text = serde_json::to_string_pretty(&value).expect("JSON value serializes");
    text.push('\n');
    text
}

/// daemon.json, placed before the run's first package install (see
/// [`crate::resources_at`]): the daemon its package starts reads it from the start.
pub fn daemon_config(vars: &DockerVars) -> File {
    File::new(DAEMON_JSON_PATH, daemon_json(vars)).mode(0o644)
}

/// docker.service after its packages: enabled and running, restarted when daemon.json
/// changed while it was running; a daemon not running when the run planned starts with
/// the new daemon.json (written before its package install), so a restart would be a
/// second start.
pub fn service() -> Service {
    Service::running("docker.service")
        .reload_on([ResourceId::file(DAEMON_JSON_PATH)])
        .restart_on_change()
        .restart_only_if_running()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use common::inventory::DockerRepositoryVars;

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

    fn absent_repository_files(host_text: &str) -> Facts {
        facts(&[
            ("host", ok(host_text)),
            ("path:/etc/apt/keyrings/docker.asc", ok("absent\n")),
            ("path:/etc/apt/sources.list.d/docker.list", ok("absent\n")),
            ("path:/etc/apt/preferences.d/docker.pref", ok("absent\n")),
        ])
    }

    fn root_file(text: &str) -> common::ProbeOutput {
        file_state(text, 0o644, "root", "root")
    }

    /// A host (its `host` probe output) whose keyring holds `key`, with the source list
    /// and pin of `repo` in place.
    fn configured_repository(host_text: &str, key: &str, repo: &Repository) -> Facts {
        let os = host(host_text);
        facts(&[
            ("host", ok(host_text)),
            ("path:/etc/apt/keyrings/docker.asc", root_file(key)),
            (
                "path:/etc/apt/sources.list.d/docker.list",
                root_file(&sources_line(repo, &os)),
            ),
            (
                "path:/etc/apt/preferences.d/docker.pref",
                root_file(&pin_file(repo)),
            ),
        ])
    }

    #[test]
    fn ubuntu_gets_dockers_repository_with_signed_by() {
        let r = DockerRepository {
            vars: DockerVars::default(),
        };
        let (summary, actions) =
            plan_of(&r, &absent_repository_files(HOST_UBUNTU2404_KVM)).expect_change();
        assert_eq!(
            summary,
            "fetch Docker's signing key into /etc/apt/keyrings/docker.asc; create /etc/apt/sources.list.d/docker.list; create /etc/apt/preferences.d/docker.pref"
        );
        let s = scripts(&actions);
        assert!(
            s[0].contains(&format!(
                "curl -fsSL -o /etc/apt/keyrings/docker.asc.tmp -- {DEFAULT_REPOSITORY}/linux/ubuntu/gpg"
            )),
            "{}",
            s[0]
        );
        let update = s.last().unwrap();
        assert!(
            update.contains(&common::apt::update().to_string()),
            "{update}"
        );
        assert!(
            update.contains("rm -f -- /etc/apt/keyrings/docker.asc\n"),
            "{update}"
        );
        assert!(
            update.contains("rm -f -- /etc/apt/preferences.d/docker.pref\n"),
            "{update}"
        );
        insta::assert_snapshot!("docker-list-ubuntu2404", written(&actions, SOURCES_PATH));
        assert!(written(&actions, PIN_PATH).contains(&format!(
            "Pin: origin \"{}\"\nPin-Priority: 900\n",
            common::values::url_host(DEFAULT_REPOSITORY)
        )));

        let jammy = host(HOST_UBUNTU2204_KVM);
        let repo = repository_for(&DockerVars::default(), &jammy)
            .unwrap()
            .unwrap();
        let f = configured_repository(
            HOST_UBUNTU2204_KVM,
            "-----BEGIN PGP PUBLIC KEY BLOCK-----",
            &repo,
        );
        assert_eq!(
            plan_of(&r, &f).expect_noop(),
            format!(
                "Docker's repository {DEFAULT_REPOSITORY}/linux/ubuntu for ubuntu jammy configured, its packages pinned to it"
            )
        );
    }

    const TEST_KEY: &str = include_str!("../../common/tests/fixtures/test-repo-key.asc");

    /// Issue 15: a mirror of Docker's repository with its key inline; the repository is
    /// configured (and pinned) while the engine itself comes from the distribution.
    #[test]
    fn a_mirror_with_an_inline_key_is_written_signed_by_and_pinned() {
        let vars = DockerVars {
            source: Some(DockerSource::Distribution),
            repository: Some(DockerRepositoryVars {
                url: Some("https://mirrors.example.edu.cn/docker-ce/".into()),
                key: Some(TEST_KEY.lines().map(|l| format!("  {l}\n")).collect()),
                key_url: None,
            }),
            ..DockerVars::default()
        };
        let r = DockerRepository { vars: vars.clone() };
        let (summary, actions) =
            plan_of(&r, &absent_repository_files(HOST_DEBIAN12_KVM)).expect_change();
        assert_eq!(
            summary,
            "create /etc/apt/keyrings/docker.asc; create /etc/apt/sources.list.d/docker.list; create /etc/apt/preferences.d/docker.pref"
        );
        assert_eq!(
            written(&actions, KEYRING_PATH),
            TEST_KEY,
            "the indentation is gone"
        );
        insta::assert_snapshot!(
            "docker-list-mirror-debian12-arm64",
            written(&actions, SOURCES_PATH)
        );
        insta::assert_snapshot!("docker-pin-mirror", written(&actions, PIN_PATH));
        let update = scripts(&actions).pop().unwrap();
        assert!(
            update.contains("apt-get update failed with the Docker repository (docker.repository) (https://mirrors.example.edu.cn/docker-ce/linux/debian)"),
            "{update}"
        );
        assert!(!scripts(&actions).iter().any(|s| s.contains("curl")));
        // The packages still come from the distribution.
        assert_eq!(
            packages_for(
                source_for(&vars, &host(HOST_DEBIAN12_KVM)),
                &host(HOST_DEBIAN12_KVM)
            )[0],
            "docker.io"
        );
        // A changed key is drift: the keyring is rewritten, the refresh puts it back on failure.
        let bookworm = host(HOST_DEBIAN12_KVM);
        let repo = repository_for(&vars, &bookworm).unwrap().unwrap();
        let f = configured_repository(
            HOST_DEBIAN12_KVM,
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\nold\n",
            &repo,
        );
        let (summary, actions) = plan_of(&r, &f).expect_change();
        assert_eq!(summary, "update /etc/apt/keyrings/docker.asc");
        assert!(scripts(&actions).pop().unwrap().contains(
            "if [ -f /etc/apt/keyrings/docker.asc.provision-bak ]; then mv -f -- /etc/apt/keyrings/docker.asc.provision-bak /etc/apt/keyrings/docker.asc; fi"
        ));
    }

    #[test]
    fn a_full_repository_url_and_a_key_url_are_used_as_given() {
        let vars = DockerVars {
            repository: Some(DockerRepositoryVars {
                url: Some("http://10.77.3.1:8080/docker/linux/ubuntu".into()),
                key_url: Some("http://10.77.3.1:8080/keys/docker.asc".into()),
                key: None,
            }),
            ..DockerVars::default()
        };
        let noble = host(HOST_UBUNTU2404_KVM);
        let repo = repository_for(&vars, &noble).unwrap().unwrap();
        assert_eq!(repo.url, "http://10.77.3.1:8080/docker/linux/ubuntu");
        assert_eq!(
            repo.key,
            RepositoryKey::Url("http://10.77.3.1:8080/keys/docker.asc".into())
        );
        assert!(pin_file(&repo).contains("Pin: origin \"10.77.3.1\"\n"));
        // A new key URL changes the source file, so the key is fetched again.
        let old = DockerVars::default();
        let old_repo = repository_for(&old, &noble).unwrap().unwrap();
        let f = configured_repository(
            HOST_UBUNTU2404_KVM,
            "-----BEGIN PGP PUBLIC KEY BLOCK-----",
            &old_repo,
        );
        let (summary, actions) = plan_of(&DockerRepository { vars }, &f).expect_change();
        assert_eq!(
            summary,
            "fetch Docker's signing key into /etc/apt/keyrings/docker.asc; update /etc/apt/sources.list.d/docker.list; update /etc/apt/preferences.d/docker.pref"
        );
        assert!(scripts(&actions)[0].contains("-- http://10.77.3.1:8080/keys/docker.asc"));
        // Both forms of the key (from two layers of the inventory) are refused.
        let both = DockerVars {
            repository: Some(DockerRepositoryVars {
                key: Some(TEST_KEY.into()),
                key_url: Some("https://mirrors.example.cn/gpg".into()),
                url: None,
            }),
            ..DockerVars::default()
        };
        assert!(
            repository_for(&both, &noble)
                .unwrap_err()
                .to_string()
                .contains("docker.repository.key")
        );
    }

    #[test]
    fn debian_defaults_to_distribution_packages() {
        let r = DockerRepository {
            vars: DockerVars::default(),
        };
        let f = absent_repository_files(HOST_DEBIAN12_NSPAWN);
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
        let f = absent_repository_files(HOST_DEBIAN12_KVM);
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
        let mirrored = DockerVars {
            registry_mirrors: Some(vec![
                "https://registry.example.edu.cn".into(),
                "http://10.77.3.1:5000".into(),
            ]),
            ..DockerVars::default()
        };
        insta::assert_snapshot!("daemon.json-registry-mirrors", daemon_json(&mirrored));
        let (config, service) = (daemon_config(&DockerVars::default()), service());
        assert_eq!(service.watches(), [config.id()]);
        let active = facts(&[(
            "unit:docker.service",
            ok("LoadState=loaded\nActiveState=active\nUnitFileState=enabled\n"),
        )]);
        assert_eq!(
            scripts(&service.on_watched_change(&active).unwrap()),
            ["systemctl restart docker.service"]
        );
    }
}
