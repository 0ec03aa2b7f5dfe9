//! Which resource sets a command applies to a host (wiring only).

use common::Resource;
use common::inventory::HostSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    /// `up` / `check`: everything the inventory asks for.
    All,
    /// `harden`: only the hardening set.
    Hardening,
}

pub fn resources(spec: &HostSpec, set: Set) -> Result<Vec<Box<dyn Resource>>, String> {
    let vars = &spec.vars;
    Ok(match set {
        Set::All => hardening::resources(vars),
        Set::Hardening => hardening::resources(vars),
    })
}
