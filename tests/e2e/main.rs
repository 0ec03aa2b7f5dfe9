//! The end-to-end suite: one test binary (`cargo test -p provision --test e2e`), one module
//! per area, helpers in [`support`]. The tests run concurrently in this one process; each
//! gets hosts of its own (`lab::testing`), so no test depends on another's lab state.
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
