//! The end-to-end suite: one test binary (`cargo test -p provision --test e2e`), one module
//! per area, helpers in [`support`]. The tests run concurrently in this one process; each
//! gets hosts of its own (`lab::testing`), so no test depends on another's lab state.
//!
//! A test of the CLI itself (exit codes, what it prints, arguments, its environment, the
//! binary installed on a host, its process) runs the binary ([`support::provision`]); every
//! other test calls the library the binary calls ([`support::Provision`]: `jobs::run` and
//! `jobs::facts` with the binary's session) and reads the typed reports.
//!
//! Filter by module or name: `cargo test -p provision --test e2e hardening::` or
//! `... -- --skip matrix_` (the OS matrix, `os_matrix::matrix_*`).

mod support;

mod app;
mod bootstrap;
mod certs;
mod certs_cli;
mod engine;
mod faults;
mod hardening;
mod mirrors;
mod os_matrix;
