//! End to end on lab hosts (issue 5): Pebble (on this machine) issues certificates for a
//! lab host over HTTP-01 — first with nothing on the host's port 80, then with nginx
//! serving it (never stopped) — and a wildcard over DNS-01 (challtestsrv). The
//! certificate lands on the host with the right modes and chains to Pebble's root; a
//! second renew does nothing; forcing expiry renews and reloads.
//!
//! Pebble validates HTTP-01 on port 80 of the address challtestsrv's mock DNS gives for
//! the test names: the lab host's, routable from here through its veth.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use crate::support;

use std::process::Command;
use std::time::Instant;

use certs::testing::{Pebble, PebbleOptions};
use certs::{CertInfo, Settings, StateDir};
use common::transport::Transport;
use lab::testing::remote_output as ssh;
use support::connect;

/// A scratch directory on this machine, removed on drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("provision-certs-e2e-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn settings(&self) -> Settings {
        Settings::new(StateDir::new(self.0.join("state")))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Modes and owners of the installed files, and the chain checked against Pebble's root
/// with `openssl verify` (here, on the chain copied from the host).
async fn check_installed(
    host: &lab::LabHost,
    pebble: &Pebble,
    scratch: &Scratch,
    ssl: &str,
) -> CertInfo {
    let modes = ssh(
        host,
        &format!("stat -c '%n %a %U:%G' {ssl}/fullchain.pem {ssl}/privkey.pem"),
    );
    assert_eq!(
        modes,
        format!("{ssl}/fullchain.pem 644 root:root\n{ssl}/privkey.pem 600 root:root\n")
    );
    let chain = ssh(host, &format!("cat {ssl}/fullchain.pem"));
    let root = pebble.issuance_root().await.expect("Pebble's root");
    let root_path = scratch.0.join("root.pem");
    std::fs::write(&root_path, root).unwrap();
    let mut blocks: Vec<String> = chain
        .split_inclusive("-----END CERTIFICATE-----")
        .filter(|b| b.contains("BEGIN CERTIFICATE"))
        .map(|b| b.trim_start().to_string() + "\n")
        .collect();
    let leaf = blocks.remove(0);
    std::fs::write(scratch.0.join("leaf.pem"), &leaf).unwrap();
    std::fs::write(scratch.0.join("chain.pem"), blocks.concat()).unwrap();
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&root_path)
        .arg("-untrusted")
        .arg(scratch.0.join("chain.pem"))
        .arg(scratch.0.join("leaf.pem"))
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The key on the host belongs to the certificate.
    let key_check = ssh(
        host,
        &format!(
            "openssl x509 -noout -pubkey -in {ssl}/fullchain.pem | sha256sum; openssl pkey -pubout -in {ssl}/privkey.pem | sha256sum"
        ),
    );
    let sums: Vec<&str> = key_check.lines().collect();
    assert_eq!(sums[0], sums[1], "key matches certificate");
    CertInfo::from_pem(chain.as_bytes()).unwrap()
}

/// A renew with nothing due: no new certificate, nothing installed, no reload (the host's
/// reload count stays `reloads`).
async fn renew_does_nothing(
    declaration: &certs::CertificateDeclaration,
    transport: &dyn Transport,
    settings: &Settings,
    host: &lab::LabHost,
    reloads: usize,
) {
    let outcome = certs::renew(declaration, transport, settings, false)
        .await
        .unwrap();
    assert!(!outcome.renewed, "{}", outcome.reason);
    assert!(!outcome.installed_changes());
    assert_eq!(support::reload_count(host), reloads);
}

/// No HTTP-01 answer is left in the ACME webroot (`why`).
fn assert_no_answers_left(host: &lab::LabHost, why: &str) {
    assert_eq!(
        ssh(host, "ls -A /var/www/acme/.well-known/acme-challenge"),
        "",
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http01_on_a_fresh_host_then_with_nginx_on_port_80() {
    if !support::lab_and_pebble() {
        return;
    }
    let host = support::fresh_host_in_area_dir("certs");
    let pebble = Pebble::start(PebbleOptions {
        http_port: 80,
        default_ipv4: host.address.to_string(),
        ..PebbleOptions::default()
    })
    .expect("pebble");
    let scratch = Scratch::new("http01");
    let settings = scratch.settings();
    let transport = connect(&host).await;
    let ssl = "/opt/app/ssl";
    let hook = format!(
        "{}\necho reloaded >> /root/reloads",
        certs::declaration::default_reload(None)
    );

    // 1. Nothing listens on port 80: a temporary responder answers, then goes away.
    assert_eq!(ssh(&host, "ss -H -ltn 'sport = :80'"), "");
    let fresh = pebble.declaration(
        &host.name,
        &["app.example.com", "www.app.example.com"],
        pebble.http01(certs::ACME_WEBROOT),
        ssl,
        &hook,
    );
    let started = Instant::now();
    let first = certs::issue(&fresh, &transport, &settings)
        .await
        .unwrap_or_else(|e| panic!("HTTP-01 on a fresh host: {e}\n{}", pebble.log()));
    eprintln!(
        "HTTP-01 issue + install over SSH (fresh host): {:?}",
        started.elapsed()
    );
    assert!(first.renewed);
    let info = check_installed(&host, &pebble, &scratch, ssl).await;
    assert_eq!(info.serial, first.info.serial);
    assert_eq!(support::reload_count(&host), 1);
    assert_eq!(
        ssh(&host, "ss -H -ltn 'sport = :80'"),
        "",
        "the temporary responder is gone"
    );
    assert_no_answers_left(&host, "answers removed");

    // A second renew does nothing.
    renew_does_nothing(&fresh, &transport, &settings, &host, 1).await;

    // 2. nginx on port 80 (installed now), serving the ACME location and redirecting the
    //    rest; it is reloaded, never stopped.
    ssh(
        &host,
        "DEBIAN_FRONTEND=noninteractive apt-get -q update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get -y -q install --no-install-recommends nginx >/dev/null",
    );
    let site = format!(
        "server {{\n  listen 80 default_server;\n  server_name _;\n{}  location / {{ return 301 https://$host$request_uri; }}\n}}\n",
        certs::NGINX_ACME_LOCATION
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    );
    let site_path = "/etc/nginx/sites-enabled/default";
    transport_put(&host, site_path, &site);
    ssh(&host, "nginx -t 2>&1 && systemctl restart nginx");
    let nginx_pid = ssh(&host, "systemctl show -p MainPID --value nginx");
    assert!(ssh(&host, "ss -H -ltnp 'sport = :80'").contains("nginx"));

    let mut late = settings.clone();
    late.now = Some(first.info.not_after - certs::time::Duration::days(1));
    let started = Instant::now();
    let renewed = certs::renew(&fresh, &transport, &late, false)
        .await
        .unwrap_or_else(|e| panic!("HTTP-01 through nginx: {e}\n{}", pebble.log()));
    eprintln!(
        "HTTP-01 renew + install over SSH (nginx on :80): {:?}",
        started.elapsed()
    );
    assert!(renewed.renewed, "forced expiry renews: {}", renewed.reason);
    assert_ne!(renewed.info.serial, first.info.serial);
    let info = check_installed(&host, &pebble, &scratch, ssl).await;
    assert_eq!(info.serial, renewed.info.serial);
    assert_eq!(support::reload_count(&host), 2, "the renewal reloaded");
    assert_eq!(
        ssh(&host, "systemctl show -p MainPID --value nginx"),
        nginx_pid,
        "nginx kept running (reloaded, not restarted)"
    );
    assert_no_answers_left(&host, "answers removed from nginx's webroot");

    // And again: nothing to do.
    renew_does_nothing(&fresh, &transport, &settings, &host, 2).await;
    transport.close().await.ok();
}

fn transport_put(host: &lab::LabHost, path: &str, content: &str) {
    let mut child = host
        .ssh_command()
        .arg(format!("cat > {path}"))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("ssh");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(content.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn wildcard_over_dns01_lands_on_the_host() {
    if !support::lab_and_pebble() {
        return;
    }
    let host = support::fresh_host_in_area_dir("certs");
    let pebble = Pebble::start(PebbleOptions {
        default_ipv4: host.address.to_string(),
        ..PebbleOptions::default()
    })
    .expect("pebble");
    let scratch = Scratch::new("dns01");
    let settings = scratch.settings();
    let transport = connect(&host).await;
    let ssl = "/etc/ssl/provision/wildcard";
    let d = pebble.declaration(
        &host.name,
        &["*.wild.example.com", "wild.example.com"],
        pebble.dns01(),
        ssl,
        "echo reloaded >> /root/reloads",
    );
    let started = Instant::now();
    let first = certs::issue(&d, &transport, &settings)
        .await
        .unwrap_or_else(|e| panic!("DNS-01 wildcard: {e}\n{}", pebble.log()));
    eprintln!(
        "DNS-01 wildcard issue + install over SSH: {:?}",
        started.elapsed()
    );
    let info = check_installed(&host, &pebble, &scratch, ssl).await;
    assert_eq!(info.names, ["*.wild.example.com", "wild.example.com"]);
    assert_eq!(support::reload_count(&host), 1);

    renew_does_nothing(&d, &transport, &settings, &host, 1).await;
    let mut late = settings.clone();
    late.now = Some(first.info.not_after - certs::time::Duration::days(1));
    let third = certs::renew(&d, &transport, &late, false).await.unwrap();
    assert!(third.renewed && third.installed_changes());
    assert_eq!(support::reload_count(&host), 2);
    check_installed(&host, &pebble, &scratch, ssl).await;

    // The renewal timer: declarations, CA root and units installed, the timer enabled and
    // waiting; a second run changes nothing.
    let schedule =
        certs::schedule_resources(std::slice::from_ref(&d), &certs::ScheduleOptions::default())
            .unwrap();
    let report =
        common::engine::converge(&transport, &schedule, &common::engine::Options::default()).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    let timer = ssh(
        &host,
        "systemctl is-enabled provision-certs-renew.timer; systemctl is-active provision-certs-renew.timer; \
         systemctl show -p RandomizedDelayUSec --value provision-certs-renew.timer; \
         stat -c '%a' /etc/provision/certs/wildcard.wild.example.com.json",
    );
    assert_eq!(timer, "enabled\nactive\n1h\n600\n");
    let declared = ssh(
        &host,
        "cat /etc/provision/certs/wildcard.wild.example.com.json",
    );
    let local: certs::CertificateDeclaration = serde_json::from_str(&declared).unwrap();
    assert_eq!(
        local.ca.root_pem.as_deref(),
        Some(std::path::Path::new(
            "/etc/provision/certs/wildcard.wild.example.com.root.pem"
        ))
    );
    let again =
        common::engine::converge(&transport, &schedule, &common::engine::Options::default()).await;
    assert_eq!(
        again.outcome,
        common::report::HostOutcome::Converged,
        "{again:?}"
    );
    transport.close().await.ok();
}
