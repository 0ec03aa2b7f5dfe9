//! Everything the CLI prints goes through here: progress, plans, summaries, JSON, errors.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::engine::Mode;
use common::report::{HostOutcome, HostReport, ResourceStatus};
use common::run::Progress;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::cli::Format;

pub fn init_tracing(verbose: u8, format: Format) {
    let level = match verbose {
        0 => "warn",
        1 => "info,common=debug,provision=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PROVISION_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = format;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// An inventory error as text: `file:line:col: message`, then the source snippet.
pub fn inventory_error(e: common::inventory::InventoryError) -> anyhow::Error {
    let mut out = String::new();
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor());
    match handler.render_report(&mut out, &e) {
        Ok(()) => anyhow::anyhow!("{out}"),
        Err(_) => anyhow::Error::new(e),
    }
}

pub fn error(e: &anyhow::Error) {
    eprintln!("error: {e:#}");
}

pub fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values serialize")
    );
}

/// Probe output safe to show: file contents are replaced by their hash (they may be secrets).
pub fn redact_probe(key: &str, stdout: &str) -> String {
    if !key.starts_with("path:") {
        return stdout.to_string();
    }
    let mut lines = stdout.lines();
    let head = lines.next().unwrap_or_default().to_string();
    match lines.next() {
        Some(content) => {
            let digest = Sha256::digest(content.as_bytes());
            let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
            format!("{head}\n<content redacted, base64 sha256 {hex}…>\n")
        }
        None => format!("{head}\n"),
    }
}

/// Progress for a run: bars on a TTY, plain lines when piped, nothing for JSON.
pub fn progress(format: Format, hosts: usize) -> Arc<dyn Progress> {
    if format == Format::Json {
        return Arc::new(common::run::Quiet);
    }
    if std::io::stderr().is_terminal() {
        Arc::new(Bars {
            multi: MultiProgress::new(),
            bars: Mutex::new(BTreeMap::new()),
            width: hosts,
        })
    } else {
        Arc::new(Lines)
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
        eprintln!(
            "{}: {} in {:.1}s",
            r.host,
            outcome_word(r.outcome),
            r.elapsed_ms as f64 / 1000.0
        );
    }
}

struct Bars {
    multi: MultiProgress,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
    width: usize,
}

impl Progress for Bars {
    fn started(&self, host: &str) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg} {elapsed}")
                .expect("valid template"),
        );
        bar.set_prefix(host.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        let _ = self.width;
        self.bars
            .lock()
            .expect("not poisoned")
            .insert(host.into(), bar);
    }
    fn phase(&self, host: &str, phase: &str) {
        if let Some(b) = self.bars.lock().expect("not poisoned").get(host) {
            b.set_message(phase.to_string());
        }
    }
    fn finished(&self, r: &HostReport) {
        if let Some(b) = self.bars.lock().expect("not poisoned").get(&r.host) {
            b.finish_with_message(outcome_word(r.outcome).to_string());
        }
    }
}

fn outcome_word(o: HostOutcome) -> &'static str {
    match o {
        HostOutcome::Converged => "ok (no changes)",
        HostOutcome::Changed => "changed",
        HostOutcome::Pending => "changes pending",
        HostOutcome::Failed => "FAILED",
    }
}

pub fn print_reports(reports: &[HostReport], mode: Mode, format: Format) {
    if format == Format::Json {
        let value = serde_json::json!({
            "mode": match mode { Mode::Check => "check", Mode::Apply => "apply" },
            "exit_code": common::report::exit_code_for(reports),
            "hosts": reports,
        });
        print_json(&value);
        return;
    }
    for r in reports {
        print_host(r, mode);
    }
    print_summary(reports);
}

/// One host's changed, pending, failed or not-applicable resources (with diffs in check
/// mode); nothing when everything was already in place.
pub fn print_host_changes(r: &HostReport, mode: Mode) {
    print_host(r, mode);
}

fn print_host(r: &HostReport, mode: Mode) {
    let interesting: Vec<_> = r
        .resources
        .iter()
        .filter(|x| x.status != ResourceStatus::Ok)
        .collect();
    if interesting.is_empty() && r.error.is_none() {
        return;
    }
    println!("== {}", r.host);
    for res in interesting {
        let mark = match res.status {
            ResourceStatus::Ok => " ",
            ResourceStatus::NotApplicable => "-",
            ResourceStatus::Pending => "~",
            ResourceStatus::Changed => "+",
            ResourceStatus::Failed => "!",
        };
        println!("{mark} {}: {}", res.id, res.detail);
        if mode == Mode::Check {
            for d in &res.diffs {
                for line in d.lines() {
                    println!("    {line}");
                }
            }
        }
    }
    if let Some(e) = &r.error {
        println!("! error: {e}");
    }
}

fn print_summary(reports: &[HostReport]) {
    let name_width = reports
        .iter()
        .map(|r| r.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<name_width$}  {:<16} {:>4} {:>8} {:>8} {:>4} {:>7} {:>12} {:>8}",
        "HOST", "OUTCOME", "OK", "CHANGED", "PENDING", "N/A", "FAILED", "ROUND TRIPS", "TIME"
    );
    for r in reports {
        println!(
            "{:<name_width$}  {:<16} {:>4} {:>8} {:>8} {:>4} {:>7} {:>12} {:>7.2}s",
            r.host,
            outcome_word(r.outcome),
            r.count(ResourceStatus::Ok),
            r.count(ResourceStatus::Changed),
            r.count(ResourceStatus::Pending),
            r.count(ResourceStatus::NotApplicable),
            r.count(ResourceStatus::Failed),
            r.round_trips,
            r.elapsed_ms as f64 / 1000.0
        );
    }
    let failed = reports
        .iter()
        .filter(|r| r.outcome == HostOutcome::Failed)
        .count();
    println!("{} host(s), {} failed", reports.len(), failed);
}
