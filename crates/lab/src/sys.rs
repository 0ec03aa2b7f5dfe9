//! Small system helpers: running commands, processes, locks, files, mounts.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::LabError;

/// PATH given to every command the lab runs (root tools live in sbin).
pub(crate) const PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Find `name` on `$PATH` or in the standard system directories.
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    let env_path = std::env::var("PATH").unwrap_or_default();
    env_path
        .split(':')
        .chain(PATH_ENV.split(':'))
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt as _;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
}

/// A command for tool `name`, resolved to its full path, with a fixed PATH
/// and the C locale (so error text is predictable).
pub(crate) fn cmd(name: &str) -> Command {
    let mut c = Command::new(find_tool(name).unwrap_or_else(|| PathBuf::from(name)));
    c.env("PATH", PATH_ENV).env("LC_ALL", "C");
    c
}

/// Quote `s` for a POSIX shell.
pub(crate) fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The command line of `c`, for messages.
pub(crate) fn describe(c: &Command) -> String {
    let mut parts = vec![shell_quote(&c.get_program().to_string_lossy())];
    parts.extend(c.get_args().map(|a| shell_quote(&a.to_string_lossy())));
    parts.join(" ")
}

/// Run `c` to completion (stdin from /dev/null), failing with its stderr
/// when it exits non-zero.
pub(crate) fn run(c: &mut Command, hint: &str) -> Result<Output, LabError> {
    let command = describe(c);
    tracing::debug!(%command, "running");
    let out = c
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            command: command.clone(),
            source,
            hint: hint.to_string(),
        })?;
    if !out.status.success() {
        return Err(LabError::Command {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            hint: hint.to_string(),
        });
    }
    Ok(out)
}

/// Run `c` and tell whether it exited 0 (for checks such as `iptables -C`).
pub(crate) fn succeeds(c: &mut Command) -> bool {
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Effective uid of this process.
pub(crate) fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

// ---------------------------------------------------------------- processes

/// Children we spawned and have not reaped yet (so they don't stay zombies),
/// and the exit status of those reaped (kept: whoever reaps first, e.g.
/// [`pid_alive`] on any thread, must not lose the status for [`exit_status`]).
struct Children {
    running: Vec<Child>,
    exited: Vec<(u32, ExitStatus)>,
}

static CHILDREN: Mutex<Children> = Mutex::new(Children {
    running: Vec::new(),
    exited: Vec::new(),
});

/// Keep `child` so it gets reaped once it exits.
pub(crate) fn adopt_child(child: Child) {
    if let Ok(mut c) = CHILDREN.lock() {
        // A reused pid: the status of its earlier process is not this one's.
        let pid = child.id();
        c.exited.retain(|(p, _)| *p != pid);
        c.running.push(child);
    }
}

/// Reap any of our adopted children that have exited, keeping their status
/// for [`exit_status`].
pub(crate) fn reap_children() {
    if let Ok(mut guard) = CHILDREN.lock() {
        let c = &mut *guard;
        c.running.retain_mut(|child| match child.try_wait() {
            Ok(Some(status)) => {
                c.exited.push((child.id(), status));
                false
            }
            Ok(None) => true,
            Err(_) => false,
        });
    }
}

/// The exit status of adopted child `pid` once it has exited (None while it
/// runs, and for processes this process did not start).
pub(crate) fn exit_status(pid: u32) -> Option<ExitStatus> {
    reap_children();
    let c = CHILDREN.lock().ok()?;
    c.exited.iter().find(|(p, _)| *p == pid).map(|(_, s)| *s)
}

/// Fields of /proc/PID/stat after the command name: (state, ppid, starttime).
fn proc_stat(pid: u32) -> Option<(char, u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); starttime is field 22.
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, ppid, start))
}

/// Start time of `pid` (clock ticks since boot), to tell a reused pid apart.
pub(crate) fn proc_starttime(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(_, _, start)| start)
}

/// Whether `pid` is running (not gone, not a zombie). When `starttime` is
/// given, the process must also have that start time.
pub(crate) fn pid_alive(pid: u32, starttime: Option<u64>) -> bool {
    if pid == 0 {
        return false;
    }
    reap_children();
    match proc_stat(pid) {
        Some((state, _, start)) => {
            state != 'Z' && state != 'X' && starttime.is_none_or(|s| s == start)
        }
        None => false,
    }
}

/// Direct children of `pid`.
pub(crate) fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                out.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
        if !out.is_empty() {
            return out;
        }
    }
    // Fallback when /proc/PID/task/*/children is not available.
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            if let Some(child) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok())
                && proc_stat(child).is_some_and(|(_, ppid, _)| ppid == pid)
            {
                out.push(child);
            }
        }
    }
    out
}

/// The pid namespace of `pid` (the `pid:[...]` link text).
pub(crate) fn pid_namespace(pid: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Send `signal` (e.g. "TERM", "KILL") to `pid`. Only ever called with
/// pids the lab recorded for processes it started.
pub(crate) fn send_signal(pid: u32, signal: &str) -> bool {
    if pid <= 1 {
        return false;
    }
    succeeds(cmd("kill").args(["-s", signal, "--", &pid.to_string()]))
}

/// Poll until `pid` (with `starttime`) is gone or `timeout` passes.
pub(crate) fn wait_gone(pid: u32, starttime: Option<u64>, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !pid_alive(pid, starttime) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------- files

/// An exclusive `flock` on a file, released on drop (also if the process dies).
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

fn open_lock_file(path: &Path, create_parent: bool) -> Result<File, LabError> {
    if create_parent && let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| LabError::io("creating directory", parent, e))?;
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| LabError::io("opening lock file", path, e))
}

impl FileLock {
    /// Block until the lock on `path` is ours (its directory is created).
    pub(crate) fn acquire(path: &Path) -> Result<FileLock, LabError> {
        let file = open_lock_file(path, true)?;
        file.lock().map_err(|e| LabError::io("locking", path, e))?;
        Ok(FileLock { _file: file })
    }

    /// Like [`FileLock::acquire`], but the directory must exist already.
    pub(crate) fn acquire_in_existing_dir(path: &Path) -> Result<FileLock, LabError> {
        let file = open_lock_file(path, false)?;
        file.lock().map_err(|e| LabError::io("locking", path, e))?;
        Ok(FileLock { _file: file })
    }

    /// Take the lock on `path` if nobody holds it.
    /// The directory must exist already.
    pub(crate) fn try_acquire(path: &Path) -> Result<Option<FileLock>, LabError> {
        let file = open_lock_file(path, false)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(FileLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(LabError::io("locking", path, e)),
        }
    }
}

/// Write `contents` to `path` atomically (temp file + rename), with `mode`.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), LabError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| LabError::io("creating directory", dir, e))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{:?}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id(),
        std::thread::current().id()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        LabError::io("writing", path, e)
    })
}

/// Write a small file (not atomically), creating parent directories.
pub(crate) fn write_file(path: &Path, contents: &str) -> Result<(), LabError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| LabError::io("creating directory", parent, e))?;
    }
    // Replace rather than write through: the path may be a symlink in the image.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LabError::io("removing", path, e)),
    }
    std::fs::write(path, contents).map_err(|e| LabError::io("writing", path, e))
}

/// The last `n` lines of a text file (empty when unreadable).
pub(crate) fn tail_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------- mounts

fn unescape_mount_path(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = u32::from(bytes[i + 1] - b'0') * 64
                + u32::from(bytes[i + 2] - b'0') * 8
                + u32::from(bytes[i + 3] - b'0');
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points at or below `dir` in this mount namespace, deepest first.
pub(crate) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|p| PathBuf::from(unescape_mount_path(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Unmount everything at or below `dir` (lazily when busy).
pub(crate) fn unmount_all_under(dir: &Path) -> Result<(), LabError> {
    for _ in 0..3 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return Ok(());
        }
        for m in mounts {
            tracing::debug!(mount = %m.display(), "unmounting");
            if !succeeds(cmd("umount").arg(&m)) {
                let _ = succeeds(cmd("umount").arg("-l").arg(&m));
            }
        }
    }
    let left = mounts_under(dir);
    if left.is_empty() {
        Ok(())
    } else {
        Err(LabError::BadState {
            path: dir.to_path_buf(),
            detail: format!(
                "could not unmount {}",
                left.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }
}

/// Remove `dir` and everything in it, after unmounting anything below it.
/// A missing directory is fine.
pub(crate) fn remove_tree(dir: &Path) -> Result<(), LabError> {
    if !dir.exists() {
        return Ok(());
    }
    unmount_all_under(dir)?;
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            // Files made immutable inside a host (chattr +i) stop remove_dir_all.
            let _ = succeeds(cmd("chattr").args(["-R", "-i"]).arg(dir));
            std::fs::remove_dir_all(dir).map_err(|e| LabError::io("removing", dir, e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc-1.2/x"), "abc-1.2/x");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn mount_path_unescape() {
        assert_eq!(unescape_mount_path("/a\\040b"), "/a b");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
        assert_eq!(unescape_mount_path("/x\\"), "/x\\");
    }

    #[test]
    fn exit_status_of_an_adopted_child_survives_other_reapers() {
        let child = Command::new("sh")
            .args(["-c", "exit 133"])
            .spawn()
            .expect("sh");
        let pid = child.id();
        adopt_child(child);
        // Whoever polls first (pid_alive reaps), the status stays readable.
        assert!(wait_gone(pid, None, Duration::from_secs(10)));
        assert_eq!(exit_status(pid).and_then(|s| s.code()), Some(133));
        assert_eq!(exit_status(pid).and_then(|s| s.code()), Some(133));
        assert_eq!(exit_status(std::process::id()), None, "not our child");
    }

    #[test]
    fn own_process_is_alive() {
        let me = std::process::id();
        let start = proc_starttime(me);
        assert!(start.is_some());
        assert!(pid_alive(me, start));
        assert!(!pid_alive(me, start.map(|s| s + 1)));
        assert!(!pid_alive(0, None));
    }
}
