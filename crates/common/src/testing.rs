//! Test support (feature `testing`): a simulated host that answers the engine's probe and
//! apply scripts, on the fake transport.

use crate::facts::{LOCALE, Probe, ProbeOutput};
use crate::transport::fake::{FakeTransport, output};
use crate::transport::{Transport, TransportError};

/// What `probe` prints when it runs alone, as a gather runs it (in the C locale): what a
/// folded gather must read for it.
pub async fn run_alone(
    transport: &dyn Transport,
    probe: &Probe,
) -> Result<ProbeOutput, TransportError> {
    let out = transport
        .run(&format!("{LOCALE}{}", probe.script), b"")
        .await?;
    Ok(ProbeOutput {
        status: out.status,
        stdout: out.stdout_lossy(),
        stderr: out.stderr_lossy(),
    })
}

/// Write `script` as an executable `sh` program at `path` (a fake of a host's tool for a
/// test that runs a probe or an apply script with the local `sh`).
pub fn write_program(path: &std::path::Path, script: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A successful probe output.
pub fn ok(stdout: &str) -> ProbeOutput {
    ProbeOutput {
        status: 0,
        stdout: stdout.into(),
        stderr: String::new(),
    }
}

/// A probe that exited with `status`, printing `stderr`.
pub fn failed(status: i32, stderr: &str) -> ProbeOutput {
    ProbeOutput {
        status,
        stdout: String::new(),
        stderr: stderr.into(),
    }
}

/// A simulated host for engine tests: answers fact scripts from a table of probe outputs
/// (`before` until an apply script ran, `after` from then on) and acknowledges every step
/// of an apply script. Calls are recorded like any [`FakeTransport`].
pub fn simulated_host(
    name: &str,
    before: std::collections::BTreeMap<String, ProbeOutput>,
    after: std::collections::BTreeMap<String, ProbeOutput>,
) -> FakeTransport {
    let applied = std::sync::atomic::AtomicBool::new(false);
    FakeTransport::responding(name, move |call| {
        if let Some(marker) = find_token(&call.script, "@@provision-step-") {
            applied.store(true, std::sync::atomic::Ordering::SeqCst);
            let steps = call.script.matches("printf '%s OK ").count();
            let stdout: String = (0..steps).map(|i| format!("{marker} OK {i}\n")).collect();
            return output(0, stdout);
        }
        let table = if applied.load(std::sync::atomic::Ordering::SeqCst) {
            &after
        } else {
            &before
        };
        let delimiter = find_token(&call.script, "@@provision-").unwrap_or_default();
        let mut stdout = String::new();
        for line in call.script.lines() {
            // ( { printf '%s BEGIN %s\n' 'DELIM' key; ( probe…
            let Some((_, rest)) = line.split_once("printf '%s BEGIN %s\\n' ") else {
                continue;
            };
            let key = rest
                .split_once(' ')
                .map(|(_, k)| k.split_once(';').map_or(k, |(k, _)| k).trim_matches('\''))
                .unwrap_or_default();
            let o = table.get(key).cloned().unwrap_or_else(|| {
                failed(1, &format!("simulated host has no output for probe {key}"))
            });
            stdout.push_str(&format!(
                "{delimiter} BEGIN {key}\n{}\n{delimiter} STDERR {key}\n{}\n{delimiter} END {key} {}\n",
                o.stdout, o.stderr, o.status
            ));
        }
        output(0, stdout)
    })
}

fn find_token(text: &str, prefix: &str) -> Option<String> {
    let start = text.find(prefix)?;
    let token: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '@')
        .collect();
    Some(token)
}
