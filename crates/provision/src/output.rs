//! Everything the CLI prints goes through here: progress, plans, summaries, JSON, errors.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use common::engine::Mode;
use common::report::{self, HostReport};
use common::run::Progress;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::cli::Format;

pub(crate) fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info,common=debug,jobs=debug,provision=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PROVISION_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// An error that stopped the command: text on stderr, or with `--format json` one JSON
/// object on stdout (`{"error": {...}}`; inventory errors with file, line, column, field).
pub(crate) fn error(e: &anyhow::Error, format: Format) {
    if format == Format::Text {
        return eprintln!("error: {e:#}");
    }
    let inventory = e
        .downcast_ref::<jobs::JobError>()
        .and_then(jobs::JobError::inventory_json);
    let message = || serde_json::json!({ "kind": "error", "message": format!("{e:#}") });
    print_json(&serde_json::json!({ "error": inventory.unwrap_or_else(message) }));
}

pub(crate) fn print_json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialize");
    println!("{text}");
}

/// JSON or text, as the format asks (each computed only when printed).
pub(crate) fn emit(
    format: Format,
    json: impl FnOnce() -> serde_json::Value,
    text: impl FnOnce() -> String,
) {
    match format {
        Format::Json => print_json(&json()),
        Format::Text => print!("{}", text()),
    }
}

/// Progress for a run: bars on a TTY, plain lines when piped, nothing for JSON.
pub(crate) fn progress(format: Format) -> Arc<dyn Progress> {
    match format {
        Format::Json => Arc::new(common::run::Quiet),
        _ if !std::io::stderr().is_terminal() => Arc::new(Lines),
        _ => Arc::new(Bars {
            multi: MultiProgress::new(),
            bars: Mutex::new(BTreeMap::new()),
        }),
    }
}

struct Lines;

impl Progress for Lines {
    fn started(&self, host: &str) {
        eprintln!("{host}: started");
    }
    fn phase(&self, host: &str, phase: &str) {
        eprintln!("{host}: {phase}");
    }
    fn finished(&self, r: &HostReport) {
        let seconds = r.elapsed_ms as f64 / 1000.0;
        eprintln!("{}: {} in {seconds:.1}s", r.host, r.outcome.word());
    }
}

struct Bars {
    multi: MultiProgress,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
}

impl Progress for Bars {
    fn started(&self, host: &str) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg} {elapsed}")
                .expect("valid template"),
        );
        bar.set_prefix(host.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
        let mut bars = self.bars.lock().expect("not poisoned");
        bars.insert(host.into(), bar);
    }
    fn phase(&self, host: &str, phase: &str) {
        if let Some(b) = self.bars.lock().expect("not poisoned").get(host) {
            b.set_message(phase.to_string());
        }
    }
    fn finished(&self, r: &HostReport) {
        if let Some(b) = self.bars.lock().expect("not poisoned").get(&r.host) {
            b.finish_with_message(r.outcome.word().to_string());
        }
    }
}

pub(crate) fn print_reports(reports: &[HostReport], mode: Mode, format: Format) {
    let json = || report::reports_json(reports, mode);
    emit(format, json, || report::render_reports(reports, mode));
}
