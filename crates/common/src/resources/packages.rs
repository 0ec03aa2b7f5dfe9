use crate::facts::builtin::InstalledPackages;
use crate::facts::{Fact, Facts, Probe};
use crate::resource::PlanError;
use crate::resource::{Action, Plan, Resource, ResourceId};

/// Debian packages that must be installed. Every install of a run shares one apt
/// transaction, whatever resource asked for it.
#[derive(Debug, Clone)]
pub struct Packages {
    /// What this set is for, e.g. `base` or `docker` (part of the id).
    pub name: String,
    pub packages: Vec<String>,
}

impl Packages {
    pub fn new(name: &str, packages: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            name: name.to_string(),
            packages: packages.into_iter().map(Into::into).collect(),
        }
    }
}

impl Resource for Packages {
    fn id(&self) -> ResourceId {
        ResourceId::packages(&self.name)
    }

    fn probes(&self) -> Vec<Probe> {
        vec![InstalledPackages.probe()]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let installed = facts.read(&InstalledPackages)?;
        let missing: Vec<String> = self
            .packages
            .iter()
            .filter(|p| !installed.contains_key(p.as_str()))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(Plan::noop(format!(
                "{} package(s) installed",
                self.packages.len()
            )));
        }
        Ok(Plan::change(
            format!("install {}", missing.join(" ")),
            vec![Action::InstallPackages { names: missing }],
        ))
    }
}
