//! Errors of the lab.

use std::path::PathBuf;

/// Everything that can go wrong while building, starting, inspecting or
/// tearing down lab hosts. Each message names what failed and where; most
/// carry a hint about what to do next.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab needs root (namespaces, veth, iptables).
    #[error(
        "the lab needs root: running as uid {uid}\n  hint: run it as root, e.g. `sudo provision lab up`"
    )]
    NotRoot {
        /// Effective uid found.
        uid: u32,
    },

    /// A required program is not installed.
    #[error("`{program}` was not found (package {package})\n  hint: apt-get install -y {install}")]
    MissingTool {
        /// The program looked for.
        program: String,
        /// The Debian package that ships it.
        package: String,
        /// All missing packages, space separated, ready for `apt-get install -y`.
        install: String,
    },

    /// A filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("creating directory", "writing", ...).
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A command could not be started at all.
    #[error("could not run `{command}`: {source}\n  hint: {hint}")]
    Spawn {
        /// The command line.
        command: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
        /// What to check.
        hint: String,
    },

    /// A command ran and failed.
    #[error("`{command}` failed ({status}){}\n  hint: {hint}", stderr_block(.stderr))]
    Command {
        /// The command line.
        command: String,
        /// Exit status as text.
        status: String,
        /// Its standard error, verbatim.
        stderr: String,
        /// What to check.
        hint: String,
    },

    /// No mirror could be found for an image.
    #[error(
        "no {what} mirror found in {searched}\n  hint: set {var}=<mirror URL> (e.g. the URL in a `deb` line of your apt sources)"
    )]
    NoMirror {
        /// Which archive (`Debian`, `Ubuntu`).
        what: &'static str,
        /// Which files were read.
        searched: String,
        /// The variable that overrides it.
        var: &'static str,
    },

    /// A host does not exist in this lab.
    #[error(
        "no lab host named `{name}` in {state_dir}\n  hint: `provision lab status` lists the hosts"
    )]
    UnknownHost {
        /// The requested name.
        name: String,
        /// The lab's state directory.
        state_dir: PathBuf,
    },

    /// All 10.77.N.0/30 slots are taken.
    #[error(
        "all {max} lab address slots are in use (see {slots_dir})\n  hint: `provision lab down` frees them"
    )]
    NoFreeSlot {
        /// How many slots exist.
        max: u32,
        /// Where slots are recorded.
        slots_dir: PathBuf,
    },

    /// A host did not become reachable in time.
    #[error(
        "lab host {name} ({address}) was not reachable over SSH after {waited_secs} s: {reason}\n  last lines of {log}:\n{log_tail}\n  hint: check the log above; `provision lab down` cleans up"
    )]
    NotReady {
        /// Host name.
        name: String,
        /// Its address.
        address: std::net::Ipv4Addr,
        /// Seconds waited.
        waited_secs: u64,
        /// What was still failing.
        reason: String,
        /// The nspawn log file.
        log: PathBuf,
        /// Its last lines.
        log_tail: String,
    },

    /// The container exited while it was being started.
    #[error(
        "systemd-nspawn for {name} exited during start-up ({status})\n  last lines of {log}:\n{log_tail}\n  hint: see the log; `provision lab down` cleans up"
    )]
    NspawnExited {
        /// Host name.
        name: String,
        /// Exit status as text.
        status: String,
        /// The nspawn log file.
        log: PathBuf,
        /// Its last lines.
        log_tail: String,
    },

    /// A host to boot again still has a running process (its nspawn, or its
    /// init outliving a killed nspawn).
    #[error(
        "lab host {name} is still running (pid {pid}); only a host whose nspawn exited boots again\n  hint: `provision lab status` shows it; `provision lab down` removes it"
    )]
    StillRunning {
        /// Host name.
        name: String,
        /// The recorded process still alive.
        pid: u32,
    },

    /// Something in the lab's own state files is not as expected.
    #[error(
        "bad lab state in {path}: {detail}\n  hint: `provision lab down` removes the lab's state"
    )]
    BadState {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },

    /// A thread creating a host panicked.
    #[error("a host creation thread panicked: {0}")]
    Panicked(String),
}

fn stderr_block(stderr: &str) -> String {
    let trimmed = stderr.trim_end();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!(":\n{trimmed}")
    }
}

impl LabError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        LabError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
