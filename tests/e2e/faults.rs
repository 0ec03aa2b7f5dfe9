//! Fault injection on lab hosts (issue 7): `provision up` against real lab hosts while
//! something goes wrong underneath it; every outcome is checked independently (over a
//! separate SSH login, or through the host's root directory on this machine). The run
//! whose SSH master is killed is the real binary (its master is found through that
//! process's PID); the others call the library as the binary does ([`support::Provision`]).
//!
//! * the SSH master connection is killed while a file is being uploaded;
//! * another process holds the dpkg lock for 20 s;
//! * one host does not answer and one presents a different host key, next to two good ones;
//! * the target file system is full.
//!
//! Faults stay inside the lab: a lab host's link is slowed with a qdisc on its own veth
//! (removed again, and gone with the host anyway), a host is silenced by a firewall rule in
//! its own network namespace, the full disk is a tmpfs mounted inside the host; the SSH
//! master is signalled by PID, found through the control directory of the `provision`
//! process this test spawned (the master daemonizes, so it is no longer that process's
//! child), never by name. Nothing is sent outside 10.77.0.0/16: the unreachable host is a
//! lab host, not an unrouted address (those would go out through the default route).

#![allow(clippy::print_stderr)] // the measurements are printed for the record

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::report::{HostOutcome, HostReport};
use lab::testing::remote;
use sha2::{Digest, Sha256};

use crate::support;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// What one `provision` run produced.
struct Run {
    code: i32,
    report: serde_json::Value,
    stderr: String,
    elapsed: Duration,
}

fn provision_command(inventory: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_provision"));
    c.arg("--inventory")
        .arg(inventory)
        .args(["--format", "json"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn parse_run(out: std::process::Output, elapsed: Duration) -> Run {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout:\n{}\nstderr:\n{stderr}",
            &stdout[..stdout.len().min(4000)]
        )
    });
    Run {
        code: out.status.code().unwrap_or(-1),
        report,
        stderr,
        elapsed,
    }
}

/// A `provision` run in the background: its PID, and its result once it exits.
struct Background {
    pid: u32,
    done: mpsc::Receiver<Run>,
}

fn spawn_provision(inventory: &Path, args: &[&str]) -> Background {
    let started = Instant::now();
    let child = provision_command(inventory, args)
        .spawn()
        .expect("spawn provision");
    let pid = child.id();
    let (tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        // Reads stdout and stderr to the end, so the child never blocks on a full pipe.
        let out = child.wait_with_output().expect("wait for provision");
        let _ = tx.send(parse_run(out, started.elapsed()));
    });
    Background { pid, done }
}

/// The report of host `name` in a run's JSON.
fn host_report<'a>(run: &'a Run, name: &str) -> &'a serde_json::Value {
    run.report["hosts"]
        .as_array()
        .expect("hosts array")
        .iter()
        .find(|h| h["host"] == name)
        .unwrap_or_else(|| panic!("no report for {name}: {:#}", run.report))
}

fn error_of(host: &HostReport) -> String {
    host.error.clone().unwrap_or_default()
}

/// A TOML literal multi-line string (content must not contain `'''`).
fn toml_literal(content: &str) -> String {
    assert!(!content.contains("'''"));
    // A newline right after the opening delimiter is trimmed by TOML.
    format!("'''\n{content}'''")
}

/// One host entry of a test inventory.
struct Entry<'a> {
    name: &'a str,
    address: String,
    /// Extra lines of `[hosts.NAME]` (e.g. `known_hosts = "..."`).
    extra: String,
    /// `[hosts.NAME.vars]` body, if any.
    vars: String,
}

impl<'a> Entry<'a> {
    fn lab(name: &'a str, host: &lab::LabHost) -> Self {
        Self {
            name,
            address: host.address.to_string(),
            extra: String::new(),
            vars: String::new(),
        }
    }
}

/// Inventory with the lab's key and known_hosts, hardening, Docker and upgrades off, `vars`
/// as the rest of `[vars]` (TOML; tests that install nothing set `packages = []`, or the base
/// set's default packages would be installed).
fn write_inventory(
    dir: &Path,
    key_source: &lab::LabHost,
    connect_timeout: u64,
    vars: &str,
    hosts: &[Entry<'_>],
) -> PathBuf {
    let mut text = format!(
        r#"[defaults]
user = "root"
identity_file = "{key}"
known_hosts = "{known}"
connect_timeout = {connect_timeout}

[vars]
upgrade = "none"
{vars}

[vars.hardening]
enabled = false

[vars.docker]
enabled = false
"#,
        key = key_source.identity_file.display(),
        known = key_source.known_hosts.display(),
    );
    for h in hosts {
        text.push_str(&format!(
            "\n[hosts.{}]\naddress = \"{}\"\n{}\n",
            h.name, h.address, h.extra
        ));
        if !h.vars.is_empty() {
            text.push_str(&format!("[hosts.{}.vars]\n{}\n", h.name, h.vars));
        }
    }
    let path = dir.join("inventory.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deterministic printable text of `len` bytes in lines (no quote characters).
fn text_of_size(len: usize, salt: u64) -> String {
    let mut out = String::with_capacity(len + 80);
    let mut state = salt
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut line = 0u64;
    while out.len() < len {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.push_str(&format!(
            "{line:08} {state:016x} {:016x}\n",
            state.rotate_left(17)
        ));
        line += 1;
    }
    out.truncate(len - 1);
    out.push('\n');
    out
}

/// Poll `f` every 20 ms until it returns `Some`, or panic with `what` after `timeout`.
fn poll<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Names and sizes of the `.provision-tmp.*` files in a directory on this machine.
fn temp_files(dir: &Path) -> Vec<(String, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, u64)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(".provision-tmp.")
                .then(|| (name, e.metadata().map(|m| m.len()).unwrap_or(0)))
        })
        .collect();
    out.sort();
    out
}

/// A queueing discipline on a lab host's veth (this machine's side), removed on drop.
struct Qdisc {
    iface: String,
}

impl Qdisc {
    fn add(iface: &str, spec: &str) -> Self {
        let out = Command::new("tc")
            .args(["qdisc", "replace", "dev", iface, "root"])
            .args(spec.split_whitespace())
            .output()
            .expect("run tc");
        assert!(
            out.status.success(),
            "tc qdisc {spec} on {iface}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            iface: iface.to_string(),
        }
    }
}

impl Drop for Qdisc {
    fn drop(&mut self) {
        // The interface may already be gone with its host; nothing else to undo then.
        let _ = Command::new("tc")
            .args(["qdisc", "del", "dev", &self.iface, "root"])
            .output();
    }
}

fn own_uid() -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

/// PIDs of the OpenSSH master processes of the `provision` process `pid`: the transport
/// keeps its control sockets in `/tmp/provision-<uid>/<pid>/`, and the master (`ssh -M`,
/// daemonized with `-f`, so no longer its child) carries that path in its arguments.
fn ssh_masters_of(pid: u32) -> Vec<u32> {
    let prefix = format!("/tmp/provision-{}/{pid}/", own_uid());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_ssh = args
            .first()
            .is_some_and(|a| a == "ssh" || a.ends_with("/ssh"));
        if is_ssh && args.iter().any(|a| a == "-M") && args.iter().any(|a| a.starts_with(&prefix)) {
            found.push(p);
        }
    }
    found
}

fn fingerprint_of(public_key_file: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public_key_file)
        .output()
        .expect("ssh-keygen -lf");
    assert!(out.status.success());
    // "256 SHA256:xxxx comment (ED25519)"
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_string()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

// ---------------------------------------------------------------------------------------
// 1. The SSH connection is killed mid-apply
// ---------------------------------------------------------------------------------------

#[test]
fn killed_connection_mid_upload_fails_the_host_leaves_no_partial_file_and_a_rerun_converges() {
    if !lab::testing::skip_unless_lab() {
        return;
    }
    let host = lab::testing::fresh_host();
    let dir = tempfile::tempdir().unwrap();
    // Above the 1 MiB up to which the path fact reads content back: the re-run and the check
    // below also cover comparing a large file by size and hash.
    let content = text_of_size(1536 * 1024, 1);
    let want = sha256_hex(content.as_bytes());
    let target = "/srv/provision-fault/big.txt";
    let inventory = write_inventory(
        dir.path(),
        &host,
        10,
        &format!(
            "packages = []\nfiles = [{{ path = \"{target}\", content = {}, mode = \"0640\" }}]",
            toml_literal(&content)
        ),
        &[Entry::lab(&host.name, &host)],
    );
    let on_machine = host.root_dir.join(target.trim_start_matches('/'));
    let target_dir = on_machine.parent().unwrap().to_path_buf();
    assert!(!target_dir.exists(), "fresh host has no {target_dir:?}");

    // 1 Mbit/s towards the host: the 1.5 MiB upload would take about 13 s.
    let throttle = Qdisc::add(&host.iface, "tbf rate 1mbit burst 16kb latency 200ms");
    let run = spawn_provision(&inventory, &["up"]);

    // Wait until the upload is under way: a temp file beside the target with 64 KiB in it.
    let seen = poll(Duration::from_secs(60), "the upload to start", || {
        if let Ok(r) = run.done.try_recv() {
            panic!(
                "provision finished before the connection was cut: {} {:#}",
                r.code, r.report
            );
        }
        temp_files(&target_dir)
            .into_iter()
            .find(|(_, size)| *size >= 64 * 1024)
    });
    assert!(
        !on_machine.exists(),
        "target appears only by rename, never partial"
    );
    let masters = ssh_masters_of(run.pid);
    assert_eq!(
        masters.len(),
        1,
        "one ssh master for the one host of provision pid {}",
        run.pid
    );
    let cut_at = Instant::now();
    let killed = Command::new("kill")
        .args(["-KILL", &masters[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let failed = run
        .done
        .recv_timeout(Duration::from_secs(60))
        .expect("provision exits after its connection is cut");
    let noticed = cut_at.elapsed();
    drop(throttle);

    assert_eq!(failed.code, 1, "{:#}\n{}", failed.report, failed.stderr);
    let h = host_report(&failed, &host.name);
    assert_eq!(h["outcome"], "failed", "{h:#}");
    let error = h["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains(&format!("connection to {} was lost", host.name)),
        "a connection-lost error naming the host: {error}"
    );

    // The host side notices the cut, then the apply shell ends; the target must then be
    // absent (it never existed) or complete, never partial.
    // (`[t]` keeps the pattern from matching the checking shell's own command line.)
    poll(Duration::from_secs(30), "the apply shell to end", || {
        let out = host
            .ssh("pgrep -f '__provision_pu[t]' >/dev/null && echo busy || echo idle")
            .ok()?;
        (String::from_utf8_lossy(&out.stdout).trim() == "idle").then_some(())
    });
    let target_state = match std::fs::read(&on_machine) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "absent".to_string(),
        Err(e) => panic!("reading {on_machine:?}: {e}"),
        Ok(data) => {
            assert_eq!(sha256_hex(&data), want, "target is complete if present");
            "complete".to_string()
        }
    };
    let leftovers = temp_files(&target_dir);
    eprintln!(
        "cut when the temp file {} had {} bytes; provision noticed after {:?}; target {target_state}; temp files left: {leftovers:?}; error: {error}",
        seen.0, seen.1, noticed
    );
    assert!(
        leftovers.is_empty(),
        "the put function removes its temp file when the upload is cut short: {leftovers:?}"
    );

    // A re-run converges; a check right after is clean (through the library: only the
    // run whose connection is cut needs a process of its own).
    let rerun = support::up(&inventory);
    assert_eq!(rerun.code(), 0, "{rerun}");
    let data = std::fs::read(&on_machine).expect("target written by the re-run");
    assert_eq!(sha256_hex(&data), want);
    assert_eq!(
        remote(&host, &format!("stat -c '%a %s' {target}")),
        format!("640 {}", content.len())
    );
    assert!(temp_files(&target_dir).is_empty());
    let check = support::check(&inventory);
    assert_eq!(check.code(), 0, "{check}");
    assert_eq!(check.of(&host.name).outcome, HostOutcome::Converged);
    eprintln!(
        "timings: failed run {:?}, re-run {:?}, check {:?}",
        failed.elapsed, rerun.elapsed, check.elapsed
    );
}

// ---------------------------------------------------------------------------------------
// 2. The dpkg lock is held by another process for 20 s
// ---------------------------------------------------------------------------------------

/// Holds both dpkg locks with fcntl (what apt uses; flock(2) would not conflict), writes
/// when it got them and when it let go.
const LOCK_HOLDER: &str = r#"import fcntl, sys, time
held = []
for path in ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock"):
    f = open(path, "a")
    fcntl.lockf(f, fcntl.LOCK_EX)
    held.append(f)
with open("/var/tmp/provision-fault-lock-held", "w") as f:
    f.write(repr(time.time()))
time.sleep(float(sys.argv[1]))
released = time.time()
for f in held:
    f.close()
with open("/var/tmp/provision-fault-lock-released", "w") as f:
    f.write(repr(released))
"#;

const HOLD_SECS: f64 = 20.0;

#[test]
fn dpkg_lock_held_for_20_seconds_is_waited_for_and_the_install_succeeds() {
    if !lab::testing::skip_unless_lab() {
        return;
    }
    let host = lab::testing::fresh_host();
    let dir = tempfile::tempdir().unwrap();
    let inventory = write_inventory(
        dir.path(),
        &host,
        10,
        "packages = [\"tree\"]",
        &[Entry::lab(&host.name, &host)],
    );
    assert_eq!(
        remote(
            &host,
            "dpkg-query -W -f='${Status}' tree 2>/dev/null || echo absent"
        ),
        "absent"
    );

    remote(
        &host,
        &format!(
            "cat > /root/hold-dpkg-lock.py <<'EOF'\n{LOCK_HOLDER}EOF\n\
             systemd-run --quiet --collect --unit=provision-fault-dpkg-lock python3 /root/hold-dpkg-lock.py {HOLD_SECS}"
        ),
    );
    let held_file = host.root_dir.join("var/tmp/provision-fault-lock-held");
    let held_at: f64 = poll(Duration::from_secs(20), "the lock holder to start", || {
        std::fs::read_to_string(&held_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    // The holder really blocks apt (not just any lock on the file).
    let blocked = host
        .ssh("apt-get -o DPkg::Lock::Timeout=0 -y install tree")
        .unwrap();
    assert!(!blocked.status.success());
    let blocked_err = String::from_utf8_lossy(&blocked.stderr);
    assert!(
        blocked_err.contains("Could not get lock /var/lib/dpkg/lock-frontend"),
        "{blocked_err}"
    );

    let run = support::up(&inventory);
    let finished_at = unix_now();
    assert_eq!(run.code(), 0, "{run}");
    assert_eq!(run.of(&host.name).outcome, HostOutcome::Changed);
    assert_eq!(
        remote(&host, "dpkg-query -W -f='${Status}' tree"),
        "install ok installed"
    );
    let released_at: f64 =
        std::fs::read_to_string(host.root_dir.join("var/tmp/provision-fault-lock-released"))
            .expect("the holder ran its full time")
            .trim()
            .parse()
            .unwrap();
    // Same kernel clock inside and outside the container.
    let waited_from_lock = finished_at - held_at;
    assert!(
        waited_from_lock >= HOLD_SECS - 0.5,
        "provision finished {waited_from_lock:.1} s after the lock was taken"
    );
    assert!(
        finished_at >= released_at,
        "finished before the lock was released"
    );
    let installed_at: f64 = remote(&host, "stat -c %Z /usr/bin/tree").parse().unwrap();
    assert!(
        installed_at >= released_at.floor(),
        "tree unpacked at {installed_at}, lock released at {released_at}"
    );
    eprintln!(
        "provision ran {:?}; lock held {HOLD_SECS} s from {held_at:.1}; released {released_at:.1}; installed {installed_at}; finished {finished_at:.1}",
        run.elapsed
    );
}

// ---------------------------------------------------------------------------------------
// 3. Unreachable host and changed host key among good hosts
// ---------------------------------------------------------------------------------------

#[test]
fn unreachable_and_changed_key_hosts_fail_clearly_while_the_others_converge() {
    if !lab::testing::skip_unless_lab() {
        return;
    }
    let good1 = lab::testing::fresh_host();
    let good2 = lab::testing::fresh_host();
    // A host that does not answer, as one that is down or firewalled: its own network
    // namespace drops every incoming packet (nothing leaves this machine, nothing outside
    // that host changes; it goes away with the host).
    let dark = lab::testing::fresh_host();
    let silenced = Command::new("nsenter")
        .args(["-t", &dark.leader_pid.to_string(), "-n"])
        .args(["iptables", "-I", "INPUT", "-j", "DROP"])
        .output()
        .unwrap();
    assert!(
        silenced.status.success(),
        "{}",
        String::from_utf8_lossy(&silenced.stderr)
    );
    assert!(
        std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from((dark.address, 22)),
            Duration::from_secs(1)
        )
        .is_err(),
        "dark host must not answer"
    );

    let dir = tempfile::tempdir().unwrap();
    // A copy of the lab's known_hosts where good1's address has another ed25519 key.
    let other_key = dir.path().join("other_ed25519");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "not-the-host"])
        .arg("-f")
        .arg(&other_key)
        .status()
        .unwrap();
    assert!(keygen.success());
    let other_pub = std::fs::read_to_string(other_key.with_extension("pub")).unwrap();
    let other_pub: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    let address = good1.address.to_string();
    let mut known = String::new();
    for line in std::fs::read_to_string(&good1.known_hosts).unwrap().lines() {
        // The lab writes `ADDR,[ADDR]:* KEY` (every port of the address).
        let names_address = line
            .split_whitespace()
            .next()
            .is_some_and(|hosts| hosts.split(',').any(|h| h == address));
        if !names_address {
            known.push_str(line);
            known.push('\n');
        }
    }
    known.push_str(&format!("{address} {}\n", other_pub.join(" ")));
    let changed_known_hosts = dir.path().join("known_hosts.changed");
    std::fs::write(&changed_known_hosts, known).unwrap();
    let real_fingerprint = fingerprint_of(&good1.root_dir.join("etc/ssh/ssh_host_ed25519_key.pub"));
    let wrong_fingerprint = fingerprint_of(&other_key.with_extension("pub"));

    let marker = "/etc/provision-fault/marker.conf";
    let rekeyed_marker = "/etc/provision-fault/rekeyed.conf";
    let inventory = write_inventory(
        dir.path(),
        &good1,
        3,
        &format!("packages = []\nfiles = [{{ path = \"{marker}\", content = \"converged\\n\" }}]"),
        &[
            Entry::lab("good1", &good1),
            Entry::lab("good2", &good2),
            Entry::lab("dark", &dark),
            Entry {
                name: "rekeyed",
                address: address.clone(),
                extra: format!("known_hosts = \"{}\"", changed_known_hosts.display()),
                vars: format!(
                    "files = [{{ path = \"{rekeyed_marker}\", content = \"must not appear\\n\" }}]"
                ),
            },
        ],
    );

    let run = support::up(&inventory);
    assert_eq!(run.code(), 1, "{run}");
    assert_eq!(run.hosts.len(), 4);
    for (name, host) in [("good1", &good1), ("good2", &good2)] {
        let h = run.of(name);
        assert_eq!(h.outcome, HostOutcome::Changed, "{h:#?}");
        assert_eq!(remote(host, &format!("cat {marker}")), "converged");
    }

    let dark_report = run.of("dark");
    assert_eq!(dark_report.outcome, HostOutcome::Failed);
    let dark_error = error_of(dark_report);
    assert!(
        dark_error.contains("could not connect to dark")
            && dark_error.contains(&dark.address.to_string())
            && dark_error.contains("timed out"),
        "clear connect error: {dark_error}"
    );
    // connect_timeout = 3 is honoured (the default, 10 s, would not pass).
    let dark_ms = dark_report.elapsed_ms;
    assert!(
        (2_500..10_000).contains(&dark_ms),
        "the dark host failed after {dark_ms} ms"
    );

    let rekeyed = run.of("rekeyed");
    assert_eq!(rekeyed.outcome, HostOutcome::Failed);
    let key_error = error_of(rekeyed);
    assert!(
        key_error.contains("host key of rekeyed")
            && key_error.contains("differs from the one in known_hosts")
            && key_error.contains(&real_fingerprint)
            && !key_error.contains(&wrong_fingerprint)
            && key_error.contains(&format!("ssh-keygen -R {address}")),
        "changed key error shows the presented fingerprint {real_fingerprint}: {key_error}"
    );
    assert_eq!(
        remote(
            &good1,
            &format!("test -e {rekeyed_marker} && echo present || echo absent")
        ),
        "absent",
        "nothing was done through the connection with the wrong key"
    );
    assert!(
        run.elapsed < Duration::from_secs(10),
        "hosts run in parallel and the dark one gives up after 3 s; the run took {:?}",
        run.elapsed
    );
    eprintln!(
        "run {:?}; dark failed after {dark_ms} ms: {dark_error}\nrekeyed: {key_error}",
        run.elapsed
    );
}

// ---------------------------------------------------------------------------------------
// 4. Disk full on the target while writing a file
// ---------------------------------------------------------------------------------------

/// Mount a 1 MiB tmpfs at `/srv/full` with `app.conf` (`old_kib` KiB of text) and fill it
/// up except for `leave_kib` KiB. Returns the sha256 of the old file.
fn small_full_filesystem(host: &lab::LabHost, old_kib: usize, leave_kib: usize) -> String {
    remote(
        host,
        &format!(
            "mkdir -p /srv/full && mount -t tmpfs -o size=1m,mode=0755 provision-fault /srv/full\n\
             yes 'the old content of app.conf' | head -c {old_kib}K > /srv/full/app.conf\n\
             dd if=/dev/zero of=/srv/full/filler bs=4k 2>/dev/null || true\n\
             if [ {leave_kib} -gt 0 ]; then truncate -s -{leave_kib}K /srv/full/filler; fi"
        ),
    );
    assert_eq!(
        remote(host, "df -k --output=avail /srv/full | tail -n1"),
        leave_kib.to_string()
    );
    sha256_of_remote(host, "/srv/full/app.conf")
}

fn sha256_of_remote(host: &lab::LabHost, path: &str) -> String {
    remote(host, &format!("sha256sum < {path} | cut -d' ' -f1"))
}

fn listing(host: &lab::LabHost, dir: &str) -> String {
    remote(host, &format!("ls -A {dir} | sort | tr '\\n' ' '"))
}

/// `up` with an inventory in `dir` that writes `new` to `/srv/full/app.conf` on the
/// [`small_full_filesystem`] of `host` (whose old file's sha256 is `old`): the host fails
/// naming the write and the cause, the old file is intact, and nothing but it and the
/// filler is left in the directory (`leftovers` says what must not be). Returns the
/// inventory, the run and the host's error.
fn up_on_a_full_disk(
    host: &lab::LabHost,
    dir: &Path,
    old: &str,
    new: &str,
    leftovers: &str,
) -> (PathBuf, support::Reports, String) {
    let target = "/srv/full/app.conf";
    let inventory = write_inventory(
        dir,
        host,
        10,
        &format!(
            "packages = []\nfiles = [{{ path = \"{target}\", content = {} }}]",
            toml_literal(new)
        ),
        &[Entry::lab(&host.name, host)],
    );
    let run = support::up(&inventory);
    assert_eq!(run.code(), 1, "{run}");
    let h = run.of(&host.name);
    assert_eq!(h.outcome, HostOutcome::Failed);
    let error = error_of(h);
    assert!(
        error.contains(&format!("write {target}")) && error.contains("No space left on device"),
        "error names the step and the cause: {error}"
    );
    assert_eq!(sha256_of_remote(host, target), old, "old file intact");
    assert_eq!(listing(host, "/srv/full"), "app.conf filler", "{leftovers}");
    (inventory, run, error)
}

#[test]
fn disk_full_while_writing_keeps_the_old_file_and_leaves_no_temp_file() {
    if !lab::testing::skip_unless_lab() {
        return;
    }
    let host = lab::testing::fresh_host();
    let dir = tempfile::tempdir().unwrap();
    let old = small_full_filesystem(&host, 4, 0);
    let new = text_of_size(64 * 1024, 8);
    let (inventory, run, error) =
        up_on_a_full_disk(&host, dir.path(), &old, &new, "no temp file or backup left");

    // With room again the same run converges, and the old file is the backup.
    remote(&host, "rm /srv/full/filler");
    let rerun = support::up(&inventory);
    assert_eq!(rerun.code(), 0, "{rerun}");
    assert_eq!(
        sha256_of_remote(&host, "/srv/full/app.conf"),
        sha256_hex(new.as_bytes())
    );
    assert_eq!(
        sha256_of_remote(&host, "/srv/full/app.conf.provision-bak"),
        old,
        "the replaced file is the backup"
    );
    eprintln!(
        "disk full: {error}\ntimings: {:?}, {:?}",
        run.elapsed, rerun.elapsed
    );
}

#[test]
fn disk_full_while_keeping_the_backup_keeps_the_old_file_and_no_partial_backup() {
    if !lab::testing::skip_unless_lab() {
        return;
    }
    let host = lab::testing::fresh_host();
    let dir = tempfile::tempdir().unwrap();
    // Room for the new file, not for the new file plus the backup of the old one.
    let old = small_full_filesystem(&host, 300, 400);
    let new = text_of_size(200 * 1024, 9);
    let (_, _, error) = up_on_a_full_disk(
        &host,
        dir.path(),
        &old,
        &new,
        "neither the temp file nor a truncated backup is left",
    );
    eprintln!("backup on a full disk: {error}");
}
