//! Which resources a command applies to a host: the one place hardening, app and the
//! flags that shape them are composed.

use std::path::PathBuf;

use common::Resource;
use common::error::error_chain;
use common::inventory::HostSpec;

/// Why a host's resources could not be composed: the host fails before it is connected to.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The app's resources: its templates, or an `app.env_commands` command that failed.
    #[error(transparent)]
    App(#[from] app::AppError),
    /// The certificate declaration in the host's vars.
    #[error(transparent)]
    Declaration(#[from] ::certs::DeclarationError),
    #[error("the placeholder certificate: {0}")]
    Placeholder(rcgen::Error),
    /// `certs schedule` on a host that declares no certificate.
    #[error("{host} declares no certificate")]
    NoDeclaration { host: String },
    /// The host's copy of this machine's certificate state.
    #[error(transparent)]
    StateCopy(#[from] ::certs::HostCopyError),
    /// The renewal timer's resources.
    #[error(transparent)]
    Schedule(#[from] ::certs::ScheduleError),
}

impl ComposeError {
    /// With its causes, on one line: how a host that fails before connecting is reported.
    pub(crate) fn message(&self) -> String {
        error_chain(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    /// `up` / `check`: everything the inventory asks for.
    All,
    /// `harden`: only the hardening set.
    Hardening,
}

/// What to apply, and the few run-wide inputs resource sets need.
#[derive(Debug, Clone)]
pub struct Job {
    pub set: Set,
    /// `--rotate-secret KEY`.
    pub rotate: Vec<String>,
    /// The inventory's directory: relative template directories resolve against it.
    pub base_dir: Option<PathBuf>,
    /// `--strict`: a host below its minimum hardware fails instead of warning.
    pub strict: bool,
}

impl Job {
    pub fn new(set: Set) -> Self {
        Self {
            set,
            rotate: Vec::new(),
            base_dir: None,
            strict: false,
        }
    }

    /// With `--rotate-secret` keys.
    pub fn rotating(mut self, keys: &[String]) -> Self {
        self.rotate = keys.to_vec();
        self
    }

    pub fn resources(&self, spec: &HostSpec) -> Result<Vec<Box<dyn Resource>>, ComposeError> {
        let mut vars = spec.vars.clone();
        if self.strict
            && let Some(minimum) = &mut vars.minimum
        {
            minimum.strict = Some(true);
        }
        let vars = &vars;
        match self.set {
            Set::Hardening => Ok(hardening::drift_resources(vars)),
            Set::All => {
                let mut all = hardening::resources_at(vars, &spec.origins);
                let options = app::AppOptions {
                    rotate: self.rotate.clone(),
                    secret_seed: None,
                    base_dir: self.base_dir.clone(),
                    run_env_commands: true,
                };
                all.extend(app::resources(vars, &options)?);
                // nginx starts before the first real certificate exists (see `up.rs`).
                if let Some(declaration) = crate::certs::declaration_of(spec, None)? {
                    let placeholder = ::certs::Placeholder::new(&declaration)
                        .map_err(ComposeError::Placeholder)?;
                    all.push(Box::new(placeholder));
                }
                Ok(all)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every host of every example inventory composes a job whose probes do not collide
    /// (one key, two scripts would fail the host), for `up` and for `harden`.
    #[test]
    fn the_example_inventories_compose_jobs_with_distinct_probe_keys() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../inventories");
        let mut hosts = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let inventory = crate::load(&path).unwrap_or_else(|e| panic!("{e}"));
            for spec in &inventory.hosts {
                for set in [Set::All, Set::Hardening] {
                    let mut job = Job::new(set);
                    job.base_dir = path.parent().map(PathBuf::from);
                    let resources = job.resources(spec).unwrap_or_else(|e| panic!("{e}"));
                    common::engine::probes_of(&resources)
                        .unwrap_or_else(|e| panic!("{}: {}: {e}", path.display(), spec.name));
                }
                hosts += 1;
            }
        }
        assert!(hosts >= 6, "read {hosts} hosts from {}", dir.display());
    }

    /// Counts connections (and refuses them): a host that fails before connecting is
    /// never touched.
    #[derive(Default)]
    struct Counting(std::sync::atomic::AtomicUsize);

    #[async_trait::async_trait]
    impl common::run::Connector for Counting {
        async fn connect(
            &self,
            spec: &HostSpec,
        ) -> Result<Box<dyn common::transport::Transport>, common::transport::TransportError>
        {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(common::transport::TransportError::Connect {
                host: spec.name.clone(),
                reason: "not in this test".into(),
            })
        }
    }

    /// `app.env_commands`: loading the inventory runs no command; building the host's
    /// resources does, and a failing command fails that host before it is connected to,
    /// naming the key and the exit status, never the output.
    #[tokio::test]
    async fn a_failing_vault_command_fails_its_host_before_anything_is_applied() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let vault = tmp.path().join("vault");
        let ran = tmp.path().join("ran");
        std::fs::write(
            &vault,
            format!(
                "#!/bin/sh\ntouch {}\necho leaked-secret\nexit 4\n",
                ran.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&vault, std::fs::Permissions::from_mode(0o700)).unwrap();
        let inventory = tmp.path().join("inventory.toml");
        std::fs::write(
            &inventory,
            format!(
                "[hosts.web-1]\naddress = \"10.77.0.9\"\n[hosts.web-1.vars.app]\nname = \"ai-meeting\"\n[hosts.web-1.vars.app.env_commands]\nSMTP_PASSWORD = [{:?}, \"smtp\"]\n",
                vault.display().to_string()
            ),
        )
        .unwrap();
        let loaded = crate::load(&inventory).unwrap_or_else(|e| panic!("{e}"));
        assert!(!ran.exists(), "loading the inventory ran the vault command");

        let connector = std::sync::Arc::new(Counting::default());
        let job = Job::new(Set::All);
        let reports = common::run::converge_all(
            loaded.hosts,
            move |spec| job.resources(spec).map_err(|e| e.message()),
            &common::run::RunOptions::default(),
            connector.clone(),
            std::sync::Arc::new(common::run::Quiet),
        )
        .await;
        assert!(
            ran.exists(),
            "the vault command ran when the resources were built"
        );
        assert_eq!(connector.0.load(std::sync::atomic::Ordering::SeqCst), 0);
        let [report] = reports.as_slice() else {
            panic!("{reports:?}")
        };
        assert_eq!(report.outcome, common::report::HostOutcome::Failed);
        let error = report.error.clone().unwrap_or_default();
        assert!(
            error.contains("app.env_commands.SMTP_PASSWORD: `")
                && error.contains("` failed with exit status 4"),
            "{error}"
        );
        assert!(
            !format!("{report:?}").contains("leaked-secret"),
            "{report:?}"
        );
    }
}
