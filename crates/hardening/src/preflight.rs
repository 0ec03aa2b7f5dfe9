//! Minimum hardware (seeds/001 and 002 §2.1): CPUs, memory and free disk against the
//! inventory's `minimum` section. A shortfall is a warning, or an error in strict mode.

use common::PlanError;
use common::facts::builtin::{HostInfo, HostInfoValue};
use common::inventory::{MinimumHardware, Vars};
use common::resource::ResourceId;
use common::{Fact, FactError, Facts, Plan, Probe, Resource};

/// Shortfalls of `host` against `minimum`, one sentence each.
pub(crate) fn shortfalls(minimum: &MinimumHardware, host: &HostInfoValue) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(cpus) = minimum.cpus
        && host.cpus < cpus
    {
        out.push(format!(
            "{} CPU(s), the inventory asks for at least {cpus}",
            host.cpus
        ));
    }
    if let Some(mib) = minimum.memory_mib
        && host.memory_mib < mib
    {
        out.push(format!(
            "{} MiB of memory, the inventory asks for at least {mib} MiB",
            host.memory_mib
        ));
    }
    if let Some(mib) = minimum.disk_free_mib
        && host.root_free_mib < mib
    {
        out.push(format!(
            "{} MiB free on /, the inventory asks for at least {mib} MiB",
            host.root_free_mib
        ));
    }
    out
}

/// Check a host against the inventory's minimum: `Ok(warnings)` (empty when it meets
/// it or no minimum is set), or `Err` listing the shortfalls when `strict`.
pub fn preflight(vars: &Vars, host: &HostInfoValue, strict: bool) -> Result<Vec<String>, String> {
    let Some(minimum) = &vars.minimum else {
        return Ok(Vec::new());
    };
    let found = shortfalls(minimum, host);
    if strict && !found.is_empty() {
        return Err(format!(
            "{} is below the inventory's minimum hardware: {}",
            if host.hostname.is_empty() {
                "the host"
            } else {
                &host.hostname
            },
            found.join("; ")
        ));
    }
    Ok(found)
}

/// The preflight as a resource, so a run reports it with the host: never changes
/// anything; a shortfall shows in its reason (warning mode).
#[derive(Debug, Clone)]
pub(crate) struct MinimumHardwareCheck {
    pub minimum: MinimumHardware,
}

impl Resource for MinimumHardwareCheck {
    fn id(&self) -> ResourceId {
        ResourceId::of("preflight", "minimum-hardware")
    }

    fn probes(&self) -> Vec<Probe> {
        vec![HostInfo.probe()]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let host = facts.read(&HostInfo)?;
        let found = shortfalls(&self.minimum, &host);
        if self.minimum.strict == Some(true) && !found.is_empty() {
            return Err(FactError::Precondition {
                what: format!("below the minimum hardware (strict): {}", found.join("; ")),
            }
            .into());
        }
        Ok(Plan::noop(if found.is_empty() {
            format!(
                "{} CPU(s), {} MiB memory, {} MiB free on / meet the minimum",
                host.cpus, host.memory_mib, host.root_free_mib
            )
        } else {
            format!("WARNING: below the minimum hardware: {}", found.join("; "))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    fn seeds_minimum() -> Vars {
        // seeds/002 §2.1: 4 cores, 8 GB, 100 GB.
        Vars {
            minimum: Some(MinimumHardware {
                cpus: Some(4),
                memory_mib: Some(8192),
                disk_free_mib: Some(100 * 1024),
                strict: None,
            }),
            ..Vars::default()
        }
    }

    #[test]
    fn warns_or_fails_in_strict_mode() {
        let host = HostInfo.parse(&ok(HOST_UBUNTU2204_KVM)).unwrap();
        let warnings = preflight(&seeds_minimum(), &host, false).unwrap();
        assert_eq!(
            warnings,
            [
                "2 CPU(s), the inventory asks for at least 4",
                "3930 MiB of memory, the inventory asks for at least 8192 MiB",
                "29417 MiB free on /, the inventory asks for at least 102400 MiB"
            ]
        );
        let err = preflight(&seeds_minimum(), &host, true).unwrap_err();
        assert!(
            err.starts_with("web-2 is below the inventory's minimum hardware: 2 CPU(s)"),
            "{err}"
        );
        let big = HostInfo.parse(&ok(HOST_DEBIAN12_KVM)).unwrap();
        assert_eq!(preflight(&seeds_minimum(), &big, true), Ok(vec![]));
        assert_eq!(preflight(&Vars::default(), &host, true), Ok(vec![]));
    }

    #[test]
    fn resource_reports_without_changing_anything() {
        let r = MinimumHardwareCheck {
            minimum: seeds_minimum().minimum.unwrap(),
        };
        let f = facts(&[("host", ok(HOST_DEBIAN12_KVM))]);
        assert_eq!(
            plan_of(&r, &f).expect_noop(),
            "8 CPU(s), 15948 MiB memory, 185667 MiB free on / meet the minimum"
        );
        let f = facts(&[("host", ok(HOST_UBUNTU2204_KVM))]);
        assert!(
            plan_of(&r, &f)
                .expect_noop()
                .starts_with("WARNING: below the minimum hardware: 2 CPU(s)")
        );
    }

    #[test]
    fn strict_resource_fails_the_host_below_the_minimum() {
        let minimum = MinimumHardware {
            strict: Some(true),
            ..seeds_minimum().minimum.unwrap()
        };
        let r = MinimumHardwareCheck { minimum };
        let small = facts(&[("host", ok(HOST_UBUNTU2204_KVM))]);
        let e = r.plan(&small).unwrap_err().to_string();
        assert!(
            e.starts_with("precondition failed: below the minimum hardware (strict): 2 CPU(s)"),
            "{e}"
        );
        let big = facts(&[("host", ok(HOST_DEBIAN12_KVM))]);
        assert!(matches!(r.plan(&big), Ok(Plan::Noop { .. })));
    }
}
