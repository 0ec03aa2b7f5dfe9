//! Base system and hardening resource sets: what seeds/002 §3 and §11 and seeds/001's
//! security practices do by hand, as resources the engine plans and applies.

pub mod base;

use common::Resource;
use common::inventory::Vars;

/// Everything `provision up` applies to a host from this crate, in order.
pub fn resources(vars: &Vars) -> Vec<Box<dyn Resource>> {
    base::resources(vars)
}
