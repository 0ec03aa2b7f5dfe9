//! The engine of `provision`: facts → plan → apply, the transports it runs over, the
//! inventory it reads and the reports it produces.
//!
//! Pure planning is kept apart from I/O: [`facts`] parse probe output, [`resource`] plans
//! from facts, [`engine`] is the only place that talks to a [`transport::Transport`].

#![deny(unreachable_pub)]

pub mod apt;
pub mod apt_lock;
pub mod bootstrap;
pub mod engine;
pub mod error;
pub mod facts;
pub mod inventory;
mod mode;
pub mod report;
pub mod resource;
pub mod resources;
pub mod run;
pub mod shell;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod transport;
pub mod values;

/// Directory on a host served at `/.well-known/acme-challenge/`: the certs crate writes
/// HTTP-01 tokens there and the app's nginx templates serve it.
pub const ACME_WEBROOT: &str = "/var/www/acme";

pub use facts::{Fact, FactError, Facts, Probe, ProbeOutput};
pub use resource::{Action, Plan, PlanError, Resource};
pub use transport::Transport;
