//! Issue 15, mirrors, end to end on a lab host of `PROVISION_LAB_OS`:
//!
//! * `docker.repository`: a signed apt repository in Docker's layout, built here with
//!   `dpkg-deb`, `apt-ftparchive` and `gpg` and served over HTTP on the host's lab gateway,
//!   holding a package named like Docker's (`docker-ce-provision-test`, which no archive
//!   has). The host gets the source (`signed-by`), the keyring and the pin, and apt takes
//!   the package from there over a newer version elsewhere; first with the key inline,
//!   then with `key_url` on the same server. `docker.registry_mirrors` reach daemon.json
//!   and the running daemon (`docker info`), which the first run started once
//!   (daemon.json is written before Docker's package starts it), and a second run
//!   restarts nothing. The engine itself comes from the distribution (`docker.source =
//!   "distribution"`).
//! * `apt.mirror`: the host's own sources (deb822 or `sources.list`, as the OS ships
//!   them) pointed at a mirror — the host's own archive spelled with an explicit `:80`, so
//!   apt still works — checked byte for byte, kept as `.provision-orig`, drift caught by
//!   `check` and undone by `up`.
//! * An unreachable mirror (a closed port on the gateway): the run fails naming it, and
//!   the host's `/etc` and package set are exactly as before.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use crate::support;

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::report::ResourceStatus;
use lab::testing::remote;
use lab::{Family, LabHost};

/// Named like Docker's packages (the pin's `docker-ce*` matches it), in no real archive.
const MARKER: &str = "docker-ce-provision-test";

/// The lab, and the tools that build the signed repository (`apt-utils`, `gnupg`; `.ci/run`
/// installs them): without them the test skips, or fails where lab tests are required.
fn can_run() -> bool {
    if !lab::testing::skip_unless_lab() {
        return false;
    }
    let missing: Vec<&str> = ["apt-ftparchive", "gpg", "dpkg-deb"]
        .into_iter()
        .filter(|tool| {
            !Command::new(tool)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "{} not installed (apt-get install apt-utils gnupg)",
        missing.join(", ")
    );
    assert!(!lab::testing::lab_required(), "{why}");
    eprintln!("skipping: {why}");
    false
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} did not start: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A tiny `Architecture: all` package.
fn build_deb(work: &Path, name: &str, version: &str, out: &Path) {
    let dir = work.join(format!("pkg-{name}-{version}"));
    std::fs::create_dir_all(dir.join("DEBIAN")).unwrap();
    std::fs::write(
        dir.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: all\n\
             Maintainer: provision tests <repo@example.invalid>\n\
             Description: marker package of the provision mirror tests\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(&dir)
        .arg(out));
}

/// A signed apt repository in Docker's layout: `linux/<os>/dists/<codename>/stable/…`,
/// `linux/<os>/pool/`, the armored key at `linux/<os>/gpg`.
struct SignedRepository {
    dir: tempfile::TempDir,
    key: String,
}

impl SignedRepository {
    fn build(os_id: &str, codename: &str, arch: &str) -> SignedRepository {
        let dir = tempfile::tempdir().unwrap();
        let gnupg = dir.path().join("gnupg");
        std::fs::create_dir(&gnupg).unwrap();
        std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let gpg = || {
            let mut c = Command::new("gpg");
            c.arg("--homedir").arg(&gnupg).args(["--batch", "--quiet"]);
            c
        };
        run(gpg().args([
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-gen-key",
            "provision test repository <repo@example.invalid>",
            "ed25519",
            "sign",
            "never",
        ]));
        let key = String::from_utf8(run(gpg().args(["--armor", "--export"]))).unwrap();
        let repo = dir.path().join("root/linux").join(os_id);
        build_deb(
            dir.path(),
            MARKER,
            "1.0",
            &repo.join(format!("pool/stable/{MARKER}_1.0_all.deb")),
        );
        let lists = repo.join(format!("dists/{codename}/stable/binary-{arch}"));
        std::fs::create_dir_all(&lists).unwrap();
        let packages = run(Command::new("apt-ftparchive")
            .args(["packages", "pool"])
            .current_dir(&repo));
        std::fs::write(lists.join("Packages"), packages).unwrap();
        let release = run(Command::new("apt-ftparchive")
            .args([
                "-o",
                "APT::FTPArchive::Release::Origin=provision-test",
                "-o",
                "APT::FTPArchive::Release::Label=provision-test",
                "-o",
                &format!("APT::FTPArchive::Release::Suite={codename}"),
                "-o",
                &format!("APT::FTPArchive::Release::Codename={codename}"),
                "-o",
                &format!("APT::FTPArchive::Release::Architectures={arch}"),
                "-o",
                "APT::FTPArchive::Release::Components=stable",
                "release",
            ])
            .arg(format!("dists/{codename}"))
            .current_dir(&repo));
        let dists = repo.join("dists").join(codename);
        std::fs::write(dists.join("Release"), release).unwrap();
        run(gpg()
            .args(["--yes", "--clearsign", "-o"])
            .arg(dists.join("InRelease"))
            .arg(dists.join("Release")));
        run(gpg()
            .args(["--yes", "-abs", "-o"])
            .arg(dists.join("Release.gpg"))
            .arg(dists.join("Release")));
        std::fs::write(repo.join("gpg"), &key).unwrap();
        SignedRepository { dir, key }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
}

/// A static file server on the lab gateway (HTTP/1.1, keep-alive, GET and HEAD), recording
/// the paths asked for; stopped and joined when dropped.
struct Server {
    addr: Ipv4Addr,
    port: u16,
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(addr: Ipv4Addr, root: PathBuf) -> Server {
        let listener = TcpListener::bind((addr, 0))
            .unwrap_or_else(|e| panic!("bind an HTTP server on the lab gateway {addr}: {e}"));
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, requests) = (stop.clone(), requests.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (root, requests) = (root.clone(), requests.clone());
                    std::thread::spawn(move || serve(stream, &root, &requests));
                }
            })
        };
        Server {
            addr,
            port,
            stop,
            requests,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}:{}", self.addr, self.port)
    }

    fn asked_for(&self, path: &str) -> bool {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.ends_with(&format!(" {path}")))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect((self.addr, self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, root: &Path, requests: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header.trim().is_empty() {
                break;
            }
        }
        let mut words = line.split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or("/"));
        requests.lock().unwrap().push(format!("{method} {path}"));
        let rel = path.split('?').next().unwrap_or("").trim_start_matches('/');
        let file = root.join(rel);
        let body = (!rel.split('/').any(|c| c == ".."))
            .then(|| std::fs::read(&file).ok())
            .flatten()
            .filter(|_| file.is_file());
        let written = match body {
            Some(body) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                    body.len()
                );
                out.write_all(head.as_bytes()).and_then(|_| {
                    if method == "HEAD" {
                        Ok(())
                    } else {
                        out.write_all(&body)
                    }
                })
            }
            None => out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
        };
        if written.is_err() {
            return;
        }
    }
}

fn architecture() -> String {
    String::from_utf8(run(Command::new("dpkg").arg("--print-architecture")))
        .unwrap()
        .trim()
        .to_string()
}

fn os_id(host: &LabHost) -> &'static str {
    match host.os.family() {
        Family::Ubuntu => "ubuntu",
        Family::Debian => "debian",
    }
}

/// A TOML basic multi-line string holding `text` (an armored key has no `"` or `\`).
fn toml_multiline(text: &str) -> String {
    assert!(!text.contains('"') && !text.contains('\\'));
    format!("\"\"\"\n{text}\"\"\"")
}

/// The path of the signed index of `host`'s OS in a [`SignedRepository`].
fn in_release(host: &LabHost) -> String {
    format!("/linux/{}/dists/{}/InRelease", os_id(host), host.os.suite())
}

/// A fresh host and a [`SignedRepository`] for its OS, served on its lab gateway (also
/// returned); `None` where the test cannot run ([`can_run`]).
fn host_and_signed_repository()
-> Option<(lab::testing::LabGuard, Ipv4Addr, SignedRepository, Server)> {
    let host = can_run().then(lab::testing::fresh_host)?;
    let gateway = lab::gateway_address(host.index);
    let repo = SignedRepository::build(os_id(&host), host.os.suite(), &architecture());
    let server = Server::start(gateway, repo.root());
    Some((host, gateway, repo, server))
}

/// Issue 15: Docker's repository replaced by a local signed mirror, key inline then by
/// URL; Docker's packages pinned to it; registry mirrors in daemon.json, applied once.
#[test]
fn docker_repository_mirror_is_signed_pinned_and_registry_mirrors_reach_the_daemon() {
    let Some((host, gateway, repo, server)) = host_and_signed_repository() else {
        return;
    };
    let registry = format!("http://{gateway}:5000");
    let work = tempfile::tempdir().unwrap();
    let vars = |key_line: &str| {
        format!(
            "[vars]\npackages = []\nupgrade = \"none\"\n\n[vars.hardening]\nenabled = false\n\n\
             [vars.docker]\nsource = \"distribution\"\nregistry_mirrors = [\"{registry}\"]\n\n\
             [vars.docker.repository]\nurl = \"{}\"\n{key_line}\n",
            server.url()
        )
    };
    let inventory = support::write_inventory(
        work.path(),
        &host,
        &support::own_login(&host),
        &vars(&format!("key = {}", toml_multiline(&repo.key))),
    );

    let up = support::up(&inventory);
    assert_eq!(up.code(), 0, "{up}");
    assert_eq!(
        up.resource("docker:repository").status,
        ResourceStatus::Changed
    );
    let repo_url = format!("{}/linux/{}", server.url(), os_id(&host));
    assert_eq!(
        remote(&host, "cat /etc/apt/sources.list.d/docker.list"),
        format!(
            "# Managed by provision; local changes are overwritten.\n\
             # Signing key: docker.repository.key (inline)\n\
             deb [arch={} signed-by=/etc/apt/keyrings/docker.asc] {repo_url} {} stable",
            architecture(),
            host.os.suite()
        )
    );
    assert_eq!(
        remote(&host, "cat /etc/apt/keyrings/docker.asc"),
        repo.key.trim(),
        "the inline key is the keyring"
    );
    let pin = remote(&host, "cat /etc/apt/preferences.d/docker.pref");
    assert!(
        pin.contains(&format!("Pin: origin \"{gateway}\"\n")),
        "{pin}"
    );
    assert!(pin.contains("Package: docker-ce* "), "{pin}");
    assert!(
        server.asked_for(&in_release(&host)),
        "the host's apt read the signed index"
    );

    // apt takes the marker from the mirror, pinned, over a newer version elsewhere: a
    // flat repository on the host itself offering 2.0.
    let newer = work.path().join("newer");
    build_deb(
        work.path(),
        MARKER,
        "2.0",
        &newer.join(format!("{MARKER}_2.0_all.deb")),
    );
    let packages = run(Command::new("apt-ftparchive")
        .args(["packages", "."])
        .current_dir(&newer));
    std::fs::write(newer.join("Packages"), packages).unwrap();
    let b64 = |file: &str| {
        String::from_utf8(run(Command::new("base64").arg("-w0").arg(newer.join(file)))).unwrap()
    };
    remote(
        &host,
        &format!(
            "mkdir -p /srv/newer && echo {} | base64 -d > /srv/newer/{MARKER}_2.0_all.deb && \
             echo {} | base64 -d > /srv/newer/Packages && \
             echo 'deb [trusted=yes] file:/srv/newer ./' > /etc/apt/sources.list.d/newer.list && \
             apt-get -q update >/dev/null",
            b64(&format!("{MARKER}_2.0_all.deb")),
            b64("Packages")
        ),
    );
    let policy = remote(&host, &format!("apt-cache policy {MARKER}"));
    println!("{policy}");
    assert!(policy.contains("Candidate: 1.0"), "{policy}");
    assert!(policy.contains("1.0 900"), "the pin's priority: {policy}");
    assert!(
        policy.contains(&format!("500 {repo_url} {}/stable", host.os.suite())),
        "{policy}"
    );
    assert!(
        policy.contains("2.0 500"),
        "the newer one is there, not chosen: {policy}"
    );
    remote(
        &host,
        &format!("DEBIAN_FRONTEND=noninteractive apt-get -q -y install {MARKER} >/dev/null"),
    );
    assert_eq!(
        remote(&host, &format!("dpkg-query -W -f '${{Version}}' {MARKER}")),
        "1.0"
    );
    assert!(server.asked_for(&format!(
        "/linux/{}/pool/stable/{MARKER}_1.0_all.deb",
        os_id(&host)
    )));

    // Registry mirrors: in daemon.json beside the log options, and in the daemon.
    let daemon: serde_json::Value =
        serde_json::from_str(&remote(&host, "cat /etc/docker/daemon.json")).unwrap();
    assert_eq!(daemon["registry-mirrors"], serde_json::json!([registry]));
    assert_eq!(daemon["log-driver"], "json-file");
    let mirrors = remote(
        &host,
        "docker info --format '{{json .RegistryConfig.Mirrors}}'",
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&mirrors).unwrap(),
        serde_json::json!([format!("{registry}/")]),
        "the running daemon has daemon.json's mirrors: {mirrors}"
    );
    // Issue 14: daemon.json is in place before the run's apt transaction, whose Docker
    // package starts the daemon with it; the run restarts nothing after that: systemd
    // logged docker.service's start (its `unit started` message) once since boot.
    let starts = remote(
        &host,
        "journalctl -q -o cat UNIT=docker.service MESSAGE_ID=39f53479d3a045ac8e11786248231fbf | wc -l",
    );
    assert_eq!(
        starts,
        "1",
        "docker.service started once by the first run:\n{}",
        remote(
            &host,
            "journalctl -q -o short-monotonic UNIT=docker.service"
        )
    );
    let started = remote(
        &host,
        "systemctl show -p ActiveEnterTimestampMonotonic docker.service",
    );

    // A second run changes nothing and restarts nothing.
    let again = support::up(&inventory);
    assert_eq!(again.code(), 0, "{again}");
    assert_eq!(again.changes(), 0, "{again}");
    assert_eq!(
        remote(
            &host,
            "systemctl show -p ActiveEnterTimestampMonotonic docker.service"
        ),
        started
    );

    // The key from `key_url` on the same server instead: the source names it, the host
    // downloads it, and the refresh still verifies the mirror's signature.
    let key_url = format!("{repo_url}/gpg");
    support::write_inventory(
        work.path(),
        &host,
        &support::own_login(&host),
        &vars(&format!("key_url = \"{key_url}\"")),
    );
    remote(&host, "rm -f /etc/apt/keyrings/docker.asc");
    let by_url = support::up(&inventory);
    assert_eq!(by_url.code(), 0, "{by_url}");
    assert!(server.asked_for(&format!("/linux/{}/gpg", os_id(&host))));
    assert!(
        remote(&host, "cat /etc/apt/sources.list.d/docker.list")
            .contains(&format!("# Signing key: {key_url}\n")),
    );
    assert_eq!(
        remote(&host, "cat /etc/apt/keyrings/docker.asc"),
        repo.key.trim()
    );
    let policy = remote(&host, &format!("apt-cache policy {MARKER}"));
    assert!(policy.contains(&format!("500 {repo_url}")), "{policy}");
    let again = support::up(&inventory);
    assert_eq!(again.changes(), 0, "{again}");
}

/// The host's first archive URI (deb822 `URIs:` or a `deb` line) and the file holding it.
fn archive_of(host: &LabHost) -> (String, String) {
    let path = match (host.os.family(), host.os.deb822_sources()) {
        (_, false) => "/etc/apt/sources.list",
        (Family::Ubuntu, true) => "/etc/apt/sources.list.d/ubuntu.sources",
        (Family::Debian, true) => "/etc/apt/sources.list.d/debian.sources",
    };
    let text = remote(host, &format!("cat {path}"));
    let uri = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("URIs: ").or_else(|| {
                l.strip_prefix("deb ")
                    .and_then(|r| r.split_whitespace().next())
            })
        })
        .unwrap_or_else(|| panic!("no archive in {path}:\n{text}"))
        .trim_end_matches('/')
        .to_string();
    (path.to_string(), uri)
}

/// `http://HOST/path` → `http://HOST:80/path`: another spelling of the same archive.
fn with_explicit_port(uri: &str) -> String {
    let (scheme, rest) = uri.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    assert!(!authority.contains(':'), "{uri} already names a port");
    assert_eq!(scheme, "http", "the lab's archives are plain HTTP");
    format!("http://{authority}:80/{path}")
}

/// Issue 15: `apt.mirror` rewrites the host's own sources (deb822 on Ubuntu 24.04 and the
/// lab's Debian, `sources.list` on Ubuntu 22.04), security included, and apt works
/// through it; drift is caught and undone.
#[test]
fn apt_mirror_rewrites_the_hosts_own_sources_and_apt_works_through_it() {
    let Some(host) = can_run().then(lab::testing::fresh_host) else {
        return;
    };
    let (path, archive) = archive_of(&host);
    let original = remote(&host, &format!("cat {path}"));
    let mirror = with_explicit_port(&archive);
    let authority = archive
        .split_once("://")
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap();
    // Every URI of the lab's sources is on one host (Debian's security tree beside its
    // archive), so the expected file is the original with that host given its port.
    let expected = original.replace(
        &format!("http://{authority}/"),
        &format!("http://{authority}:80/"),
    );
    assert_ne!(expected, original);
    println!("{path} on {}: {archive} -> {mirror}", host.os);
    let work = tempfile::tempdir().unwrap();
    let inventory = support::write_inventory(
        work.path(),
        &host,
        &support::own_login(&host),
        &format!(
            "[vars]\npackages = [\"htop\"]\nupgrade = \"none\"\n\n[vars.hardening]\nenabled = false\n\n\
             [vars.docker]\nenabled = false\n\n[vars.apt]\nmirror = \"{mirror}/\"\n"
        ),
    );

    let check = support::check(&inventory);
    assert_eq!(check.code(), 2, "{check}");
    assert_eq!(
        check.resource("apt:mirror").status,
        ResourceStatus::Pending,
        "{check}"
    );

    let up = support::up(&inventory);
    assert_eq!(up.code(), 0, "{up}");
    assert_eq!(remote(&host, &format!("cat {path}")), expected);
    assert_eq!(
        remote(&host, &format!("cat {path}.provision-orig")),
        original,
        "the original is kept"
    );
    let policy = remote(&host, "apt-cache policy htop");
    assert!(
        policy.contains(&format!("{mirror} ")),
        "htop from the mirror:\n{policy}"
    );
    assert_eq!(
        remote(&host, "dpkg-query -W -f '${Status}' htop"),
        "install ok installed"
    );

    let again = support::up(&inventory);
    assert_eq!(again.changes(), 0, "{again}");

    // Drift: the original put back by hand is caught and undone; the kept original stays.
    remote(&host, &format!("cp {path}.provision-orig {path}"));
    let check = support::check(&inventory);
    assert_eq!(check.code(), 2, "{check}");
    assert_eq!(check.resource("apt:mirror").status, ResourceStatus::Pending);
    let up = support::up(&inventory);
    assert_eq!(up.code(), 0, "{up}");
    assert_eq!(remote(&host, &format!("cat {path}")), expected);
    assert_eq!(
        remote(&host, &format!("cat {path}.provision-orig")),
        original
    );
}

/// What must not change when a run fails: every file under /etc and the package set.
fn fingerprint(host: &LabHost) -> String {
    remote(
        host,
        "find /etc -xdev \\( -type f -o -type l \\) -print0 | sort -z | xargs -0 sha256sum; \
         dpkg-query -W -f '${Package} ${Version} ${Status}\\n'",
    )
}

/// The host's [`fingerprint`] is `before`'s (else panics with the lines gone and new), and
/// apt works as before the run.
fn unchanged_since(host: &LabHost, before: &str) {
    let after = fingerprint(host);
    if before != after {
        let gone: Vec<&str> = before.lines().filter(|l| !after.contains(l)).collect();
        let new: Vec<&str> = after.lines().filter(|l| !before.contains(l)).collect();
        panic!(
            "the failed run changed the host:\n--- before\n{}\n+++ after\n{}",
            gone.join("\n"),
            new.join("\n")
        );
    }
    remote(
        host,
        "apt-get -q update >/dev/null && apt-cache policy htop | grep -q Candidate",
    );
}

/// Issue 15: a mirror that does not answer fails the run naming it, before anything else
/// is done; the sources are put back and the host is as it was.
#[test]
fn an_unreachable_mirror_fails_naming_it_and_changes_nothing_else() {
    let Some(host) = can_run().then(lab::testing::fresh_host) else {
        return;
    };
    let gateway = lab::gateway_address(host.index);
    // A port that was free a moment ago: nothing answers there.
    let closed = TcpListener::bind((gateway, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mirror = format!("http://{gateway}:{closed}/{}", os_id(&host));
    let work = tempfile::tempdir().unwrap();
    // The whole default job (hardening, Docker, base system): none of it may happen.
    let inventory = support::write_inventory(
        work.path(),
        &host,
        &support::own_login(&host),
        &format!("[vars.apt]\nmirror = \"{mirror}\"\n"),
    );
    let before = fingerprint(&host);
    assert!(
        before.contains(" install ok installed\n"),
        "the fingerprint lists packages"
    );

    let up = support::up(&inventory);
    assert_eq!(up.code(), 1, "{up}");
    let error = up.error();
    println!("{error}");
    assert!(
        error.contains(&format!(
            "apt-get update failed with the mirror (apt.mirror) ({mirror}"
        )),
        "the error names the mirror:\n{up}"
    );
    assert!(error.contains("put back as they were"), "{error}");
    assert!(
        error.contains(&format!("{gateway}:{closed}")),
        "apt's own error is shown: {error}"
    );
    unchanged_since(&host, &before);
}

/// Issue 15: a repository whose signature the given key does not verify (the inventory's
/// key is another one) fails the run naming it: the source, keyring and pin are taken
/// away again, and the host is as it was.
#[test]
fn a_repository_the_key_does_not_verify_fails_naming_it_and_changes_nothing_else() {
    let Some((host, _gateway, repo, server)) = host_and_signed_repository() else {
        return;
    };
    let other_key = include_str!("../../crates/common/tests/fixtures/test-repo-key.asc");
    assert_ne!(other_key.trim(), repo.key.trim());
    let work = tempfile::tempdir().unwrap();
    let inventory = support::write_inventory(
        work.path(),
        &host,
        &support::own_login(&host),
        &format!(
            "[vars.docker]\nsource = \"distribution\"\n\n[vars.docker.repository]\nurl = \"{}\"\nkey = {}\n",
            server.url(),
            toml_multiline(other_key)
        ),
    );
    let before = fingerprint(&host);

    let up = support::up(&inventory);
    assert_eq!(up.code(), 1, "{up}");
    let error = up.error();
    println!("{error}");
    let repo_url = format!("{}/linux/{}", server.url(), os_id(&host));
    assert!(
        error.contains(&format!(
            "apt-get update failed with the Docker repository (docker.repository) ({repo_url})"
        )),
        "the error names the repository:\n{up}"
    );
    assert!(
        server.asked_for(&in_release(&host)),
        "apt did reach the repository: the signature is what failed"
    );
    unchanged_since(&host, &before);
}
