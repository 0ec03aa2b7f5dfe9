//! Issuance, renewal and failure cases against a real Pebble (started per test on free
//! ports of 127.0.0.1), installing with the local transport into temporary directories.
//!
//! Skipped (with a message) when pebble is not installed, unless CI or
//! `PROVISION_PEBBLE_REQUIRED=1` says it must run.
#![allow(clippy::print_stderr)]

use provision_certs as certs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use certs::testing::{
    MockResponse, MockServer, Pebble, PebbleOptions, challtestsrv_dns01, declaration, free_port,
    pebble_installed,
};
use certs::{
    AcmeError, CaConfig, CertInfo, CertsError, Settings, StateDir, issue, renew, renewal_check,
    revoke,
};
use common::transport::fake::{FakeTransport, output};
use common::transport::local::LocalTransport;

fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
        || std::env::var("PROVISION_PEBBLE_REQUIRED").is_ok_and(|v| v == "1")
}

fn pebble(options: PebbleOptions) -> Option<Pebble> {
    if !pebble_installed() {
        assert!(!required(), "pebble is required here but not installed");
        eprintln!("skipping: pebble is not installed (apt-get install pebble)");
        return None;
    }
    Some(Pebble::start(options).expect("pebble starts"))
}

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, p: &str) -> String {
        self.dir.path().join(p).to_string_lossy().into_owned()
    }
    fn settings(&self) -> Settings {
        Settings::new(StateDir::new(self.dir.path().join("state")))
    }
    /// A reload hook that appends a line to a file, and that file.
    fn hook(&self) -> (String, String) {
        let marker = self.path("reloads");
        (format!("echo reloaded >> {marker}"), marker)
    }
}

fn reloads(marker: &str) -> usize {
    std::fs::read_to_string(marker)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn mode(path: &str) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `openssl verify` of the installed chain against Pebble's issuance root.
async fn verify_chain(pebble: &Pebble, ssl_dir: &str, scratch: &Scratch) {
    let root = pebble.issuance_root().await.expect("Pebble's root");
    let root_path = scratch.path("pebble-root.pem");
    std::fs::write(&root_path, root).unwrap();
    let chain = std::fs::read_to_string(format!("{ssl_dir}/fullchain.pem")).unwrap();
    let mut blocks: Vec<String> = chain
        .split_inclusive("-----END CERTIFICATE-----")
        .filter(|b| b.contains("BEGIN CERTIFICATE"))
        .map(|b| b.trim_start().to_string() + "\n")
        .collect();
    assert!(blocks.len() >= 2, "leaf plus intermediate: {chain}");
    let leaf = blocks.remove(0);
    std::fs::write(scratch.path("leaf.pem"), leaf).unwrap();
    std::fs::write(scratch.path("intermediates.pem"), blocks.concat()).unwrap();
    let out = Command::new("openssl")
        .args(["verify", "-CAfile", &root_path])
        .args(["-untrusted", &scratch.path("intermediates.pem")])
        .arg(scratch.path("leaf.pem"))
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn dns01_wildcard_issue_then_second_renew_does_nothing_then_forced_expiry_renews() {
    let Some(pebble) = pebble(PebbleOptions::default()) else {
        return;
    };
    let scratch = Scratch::new();
    let (hook, marker) = scratch.hook();
    let ssl = scratch.path("ssl");
    let d = pebble.declaration(
        "local",
        &["*.dns.example.com", "dns.example.com"],
        pebble.dns01(),
        &ssl,
        &hook,
    );
    let transport = LocalTransport::new("local");
    let settings = scratch.settings();

    let started = Instant::now();
    let first = issue(&d, &transport, &settings).await.expect("issued");
    eprintln!("DNS-01 issuance + install: {:?}", started.elapsed());
    assert!(first.renewed);
    assert_eq!(first.info.names, ["*.dns.example.com", "dns.example.com"]);
    assert!(
        first.info.issuer.contains("Pebble"),
        "{}",
        first.info.issuer
    );
    assert_eq!(mode(&format!("{ssl}/fullchain.pem")), 0o644);
    assert_eq!(mode(&format!("{ssl}/privkey.pem")), 0o600);
    assert_eq!(reloads(&marker), 1, "the hook ran once on install");
    verify_chain(&pebble, &ssl, &scratch).await;
    let account = std::fs::read_dir(scratch.dir.path().join("state/accounts"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    assert_eq!(mode(account.to_str().unwrap()), 0o600);

    // A second renew does nothing: no new certificate, no file change, no reload.
    let second = renew(&d, &transport, &settings, false).await.unwrap();
    assert!(!second.renewed, "{}", second.reason);
    assert!(!second.installed_changes());
    assert_eq!(second.info.serial, first.info.serial);
    assert_eq!(reloads(&marker), 1);
    assert!(second.next_renewal.is_some());

    // Forced expiry: the clock says the certificate is about to expire.
    let mut late = settings.clone();
    late.now = Some(first.info.not_after - time::Duration::days(1));
    let check = renewal_check(&d, &late.state, late.now()).unwrap();
    assert!(check.decision.is_due(), "{:?}", check.decision);
    let third = renew(&d, &transport, &late, false).await.expect("renewed");
    assert!(third.renewed, "{}", third.reason);
    assert_ne!(third.info.serial, first.info.serial);
    assert!(third.installed_changes());
    assert_eq!(reloads(&marker), 2, "renewal reloads");
    let installed = std::fs::read(format!("{ssl}/fullchain.pem")).unwrap();
    assert_eq!(
        CertInfo::from_pem(&installed).unwrap().serial,
        third.info.serial
    );

    // Status shows it, without errors.
    let rows = certs::status(
        &settings.state,
        std::slice::from_ref(&d),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    assert_eq!(rows[0].last_error, None);
    assert_eq!(rows[0].names, ["*.dns.example.com", "dns.example.com"]);
}

#[tokio::test]
async fn http01_on_a_free_port_uses_a_temporary_responder() {
    let Some(pebble) = pebble(PebbleOptions::default()) else {
        return;
    };
    let scratch = Scratch::new();
    let (hook, marker) = scratch.hook();
    let webroot = scratch.path("webroot");
    let d = pebble.declaration(
        "local",
        &["http.example.com", "www.http.example.com"],
        pebble.http01(&webroot),
        &scratch.path("ssl"),
        &hook,
    );
    let transport = LocalTransport::new("local");
    let started = Instant::now();
    let outcome = issue(&d, &transport, &scratch.settings())
        .await
        .expect("issued");
    eprintln!("HTTP-01 issuance + install: {:?}", started.elapsed());
    assert_eq!(
        outcome.info.names,
        ["http.example.com", "www.http.example.com"]
    );
    assert_eq!(reloads(&marker), 1);
    verify_chain(&pebble, &scratch.path("ssl"), &scratch).await;
    // The responder is gone and the answers removed.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", pebble.http_port)).is_err(),
        "the temporary responder was stopped"
    );
    let left: Vec<_> = std::fs::read_dir(format!("{webroot}/.well-known/acme-challenge"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "answers removed: {left:?}");
}

/// A web server already on the port (standing in for nginx), serving the webroot.
struct WebServer(Child);

impl Drop for WebServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn web_server(port: u16, root: &str) -> WebServer {
    std::fs::create_dir_all(root).unwrap();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "--directory",
            root,
        ])
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 http.server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "web server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    WebServer(child)
}

#[tokio::test]
async fn http01_with_a_server_on_the_port_writes_into_its_webroot() {
    let Some(pebble) = pebble(PebbleOptions::default()) else {
        return;
    };
    let scratch = Scratch::new();
    let webroot = scratch.path("webroot");
    let mut server = web_server(pebble.http_port, &webroot);
    let (hook, _) = scratch.hook();
    let d = pebble.declaration(
        "local",
        &["nginx.example.com"],
        pebble.http01(&webroot),
        &scratch.path("ssl"),
        &hook,
    );
    let outcome = issue(&d, &LocalTransport::new("local"), &scratch.settings())
        .await
        .expect("issued through the running server");
    assert!(outcome.renewed);
    assert!(
        server.0.try_wait().unwrap().is_none(),
        "the server on the port was left running"
    );
}

#[tokio::test]
async fn http01_with_a_server_not_serving_the_webroot_fails_before_asking_the_ca() {
    let Some(pebble) = pebble(PebbleOptions::default()) else {
        return;
    };
    let scratch = Scratch::new();
    let _server = web_server(pebble.http_port, &scratch.path("elsewhere"));
    let d = pebble.declaration(
        "local",
        &["misconfigured.example.com"],
        pebble.http01(&scratch.path("webroot")),
        &scratch.path("ssl"),
        "true",
    );
    let e = issue(&d, &LocalTransport::new("local"), &scratch.settings())
        .await
        .unwrap_err()
        .to_string();
    eprintln!("webroot not served: {e}");
    assert!(e.contains("does not return the answer"), "{e}");
    assert!(e.contains("404"), "{e}");
}

#[tokio::test]
async fn unreachable_challenge_names_the_url_the_ca_tried() {
    let Some(pebble) = pebble(PebbleOptions::default()) else {
        return;
    };
    let scratch = Scratch::new();
    // The host "accepts" the answers, but nothing serves them where the name points.
    let probe = certs::PortListener {
        port: pebble.http_port,
    };
    let probes = vec![common::facts::Fact::probe(&probe)];
    let facts_output = common::facts::render_batch_output(
        &probes,
        &[(probes[0].key.to_string(), common::ProbeOutput::default())]
            .into_iter()
            .collect(),
    );
    let host = FakeTransport::responding("remote", move |call| {
        if call.script.contains("BEGIN") {
            output(0, facts_output.clone())
        } else {
            output(0, "")
        }
    });
    let d = pebble.declaration(
        "remote",
        &["unreachable.example.com"],
        pebble.http01("/var/www/acme"),
        "/opt/app/ssl",
        "true",
    );
    let settings = scratch.settings();
    let e = issue(&d, &host, &settings).await.unwrap_err();
    let text = e.to_string();
    eprintln!("challenge unreachable: {text}");
    assert!(
        matches!(&e, CertsError::Acme(AcmeError::ChallengeFailed { .. })),
        "{text}"
    );
    let url = format!(
        "http://unreachable.example.com:{}/.well-known/acme-challenge/",
        pebble.http_port
    );
    assert!(text.contains(&url), "{text}");
    assert!(text.to_lowercase().contains("connection refused"), "{text}");
    // Recorded for `certs status`; nothing installed.
    let rows = certs::status(
        &settings.state,
        std::slice::from_ref(&d),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    assert!(rows[0].last_error.as_deref().unwrap().contains(&url));
    assert!(
        !host
            .calls()
            .iter()
            .any(|c| c.script.contains("fullchain.pem"))
    );
}

#[tokio::test]
async fn ca_down_keeps_the_current_certificate_and_says_why() {
    let Some(pebble) = pebble(PebbleOptions::default()) else {
        return;
    };
    let scratch = Scratch::new();
    let ssl = scratch.path("ssl");
    let mut d = pebble.declaration("local", &["down.example.com"], pebble.dns01(), &ssl, "true");
    let transport = LocalTransport::new("local");
    let settings = scratch.settings();
    let first = issue(&d, &transport, &settings).await.unwrap();
    let installed = std::fs::read(format!("{ssl}/fullchain.pem")).unwrap();

    let down = format!("https://127.0.0.1:{}/dir", free_port());
    d.ca.directory_url = down.clone();
    let e = renew(&d, &transport, &settings, true).await.unwrap_err();
    let text = e.to_string();
    eprintln!("CA down: {text}");
    assert!(
        matches!(&e, CertsError::Acme(AcmeError::Unreachable { .. })),
        "{text}"
    );
    assert!(text.contains(&down), "{text}");
    assert!(text.to_lowercase().contains("connection refused"), "{text}");
    assert!(text.contains("Nothing was changed"), "{text}");
    assert_eq!(
        std::fs::read(format!("{ssl}/fullchain.pem")).unwrap(),
        installed
    );
    let stored = settings
        .state
        .load_certificate("local", &d.name)
        .unwrap()
        .unwrap();
    assert_eq!(
        CertInfo::from_pem(&stored.fullchain).unwrap().serial,
        first.info.serial
    );
    let record = settings.state.load_record("local", &d.name).unwrap();
    assert!(record.last_error.unwrap().contains("cannot reach the CA"));
}

#[tokio::test]
async fn rate_limited_ca_says_when_to_retry_and_is_not_asked_again_before() {
    let ca = MockServer::start(|_| {
        MockResponse::json(
            429,
            serde_json::json!({
                "type": "urn:ietf:params:acme:error:rateLimited",
                "detail": "too many certificates already issued",
                "status": 429
            }),
        )
        .header("retry-after", "3600")
    })
    .await;
    let scratch = Scratch::new();
    let d = declaration(
        "local",
        &["limited.example.com"],
        CaConfig::url(&format!("{}/directory", ca.url)),
        challtestsrv_dns01("http://127.0.0.1:1"),
        &scratch.path("ssl"),
        "true",
    );
    let settings = scratch.settings();
    let transport = LocalTransport::new("local");
    let e = issue(&d, &transport, &settings).await.unwrap_err();
    let text = e.to_string();
    eprintln!("rate limited: {text}");
    let CertsError::Acme(AcmeError::RateLimited { retry_after, .. }) = &e else {
        panic!("rate limit expected: {text}")
    };
    let at = retry_after.expect("Retry-After parsed");
    let wait = at - time::OffsetDateTime::now_utc();
    assert!(
        wait > time::Duration::minutes(59) && wait <= time::Duration::hours(1),
        "{wait}"
    );
    assert!(text.contains("HTTP 429"), "{text}");
    assert!(text.contains("retry after 20"), "{text}");
    assert!(
        text.contains("(in 59m") || text.contains("(in 1h 0m"),
        "{text}"
    );
    assert!(text.contains("too many certificates"), "{text}");
    let asked = ca.requests().len();

    // Not asked again before the time, unless forced.
    let again = issue(&d, &transport, &settings).await.unwrap_err();
    eprintln!("asked again: {again}");
    assert!(matches!(again, CertsError::RetryLater { .. }), "{again}");
    assert!(again.to_string().contains("--force"), "{again}");
    assert_eq!(ca.requests().len(), asked);
    let rows = certs::status(
        &settings.state,
        std::slice::from_ref(&d),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    assert_eq!(
        rows[0].retry_not_before.map(|t| t.unix_timestamp()),
        Some(at.unix_timestamp())
    );
}

#[tokio::test]
async fn short_retry_after_is_waited_out() {
    let ca = MockServer::start(|_| {
        MockResponse::json(
            503,
            serde_json::json!({"type": "urn:ietf:params:acme:error:serverInternal", "detail": "maintenance"}),
        )
        .header("retry-after", "1")
    })
    .await;
    let scratch = Scratch::new();
    let d = declaration(
        "local",
        &["busy.example.com"],
        CaConfig::url(&format!("{}/directory", ca.url)),
        challtestsrv_dns01("http://127.0.0.1:1"),
        &scratch.path("ssl"),
        "true",
    );
    let mut settings = scratch.settings();
    settings.max_wait = Duration::from_secs(5);
    let started = Instant::now();
    let e = issue(&d, &LocalTransport::new("local"), &settings)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("HTTP 503"), "{e}");
    assert_eq!(ca.requests().len(), 3, "three attempts");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn bad_domain_names_never_reach_the_ca() {
    let vars: common::inventory::Vars = toml::from_str(
        r#"
        [certs]
        ca = "https://127.0.0.1:1/dir"
        domains = ["good.example.com", "a..b"]
        "#,
    )
    .unwrap();
    let e = certs::declaration_from_vars("web-1", &vars).unwrap_err();
    assert_eq!(e.field, "certs.domains[1]");
    assert!(
        e.to_string()
            .starts_with("web-1: certs.domains[1]: \"a..b\""),
        "{e}"
    );
}

#[tokio::test]
async fn revoked_certificate_is_replaced_by_the_next_renew() {
    let Some(pebble) = pebble(PebbleOptions::default()) else {
        return;
    };
    let scratch = Scratch::new();
    let d = pebble.declaration(
        "local",
        &["revoke.example.com"],
        pebble.dns01(),
        &scratch.path("ssl"),
        "true",
    );
    let transport = LocalTransport::new("local");
    let settings = scratch.settings();
    let first = issue(&d, &transport, &settings).await.unwrap();
    revoke(&d, &settings, Some(certs::RevocationReason::Superseded))
        .await
        .expect("revoked");
    let next = renew(&d, &transport, &settings, false).await.unwrap();
    assert!(next.renewed, "{}", next.reason);
    assert!(next.reason.contains("revoked"), "{}", next.reason);
    assert_ne!(next.info.serial, first.info.serial);
}

#[tokio::test]
async fn self_signed_needs_no_ca() {
    let scratch = Scratch::new();
    let (hook, marker) = scratch.hook();
    let d = declaration(
        "local",
        &["dev.example.com"],
        CaConfig::url("https://127.0.0.1:1/dir"),
        certs::ChallengeConfig::SelfSigned,
        &scratch.path("ssl"),
        &hook,
    );
    let transport = LocalTransport::new("local");
    let settings = scratch.settings();
    let mut checking = settings.clone();
    checking.engine.mode = common::engine::Mode::Check;
    let e = issue(&d, &transport, &checking).await.unwrap_err();
    assert!(matches!(e, CertsError::WouldObtain { .. }), "{e}");
    assert!(
        !Path::new(&scratch.path("ssl")).exists(),
        "check mode changes nothing"
    );

    let first = issue(&d, &transport, &settings).await.unwrap();
    assert_eq!(first.info.names, ["localhost", "dev.example.com"]);
    checking.now = Some(first.info.not_after);
    let would = renew(&d, &transport, &checking, false).await.unwrap();
    assert!(!would.renewed);
    assert!(
        would.pending.as_deref().unwrap().contains("expired"),
        "{would:?}"
    );
    assert_eq!(would.info.serial, first.info.serial);
    assert_eq!(first.info.subject, "CN=localhost");
    let again = renew(&d, &transport, &settings, false).await.unwrap();
    assert!(!again.renewed);
    assert_eq!(reloads(&marker), 1);
    assert!(Path::new(&scratch.path("ssl/privkey.pem")).exists());
}

#[tokio::test]
async fn eab_binds_the_account_and_its_absence_is_explained() {
    let key = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let Some(pebble) = pebble(PebbleOptions {
        eab: Some(("kid-1".into(), key.into())),
        ..PebbleOptions::default()
    }) else {
        return;
    };
    let scratch = Scratch::new();
    let mut d = pebble.declaration(
        "local",
        &["eab.example.com"],
        pebble.dns01(),
        &scratch.path("ssl"),
        "true",
    );
    let transport = LocalTransport::new("local");
    let e = issue(&d, &transport, &scratch.settings())
        .await
        .unwrap_err();
    eprintln!("no EAB: {e}");
    assert!(
        e.to_string()
            .starts_with("creating the ACME account was refused by the CA"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("set certs.eab_kid and certs.eab_hmac_key"),
        "{e}"
    );

    d.ca.eab = Some(certs::EabConfig {
        kid: "kid-1".into(),
        hmac_key: key.into(),
    });
    let outcome = issue(&d, &transport, &scratch.settings())
        .await
        .expect("issued with EAB");
    assert!(outcome.renewed);

    d.ca.eab = Some(certs::EabConfig {
        kid: "kid-1".into(),
        hmac_key: "env:PROVISION_TEST_SURELY_UNSET_EAB".into(),
    });
    let fresh_state = Scratch::new();
    let e = issue(&d, &transport, &fresh_state.settings())
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("PROVISION_TEST_SURELY_UNSET_EAB is not set"),
        "{e}"
    );
}
