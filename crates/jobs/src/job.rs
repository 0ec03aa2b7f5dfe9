//! Which resources a command applies to a host: the one place hardening, app and the
//! flags that shape them are composed.

use std::path::PathBuf;

use common::Resource;
use common::inventory::HostSpec;

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

    pub fn resources(&self, spec: &HostSpec) -> Result<Vec<Box<dyn Resource>>, String> {
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
                };
                all.extend(
                    app::resources(vars, &options).map_err(|e| common::error::error_chain(&e))?,
                );
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
                    let resources = job.resources(spec).unwrap();
                    common::engine::probes_of(&resources)
                        .unwrap_or_else(|e| panic!("{}: {}: {e}", path.display(), spec.name));
                }
                hosts += 1;
            }
        }
        assert!(hosts >= 6, "read {hosts} hosts from {}", dir.display());
    }
}
