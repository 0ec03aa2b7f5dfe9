//! Benchmark against a local Pebble (PEBBLE_VA_NOSLEEP=1): time per issuance (ACME order
//! alone, and issue + install through the engine with the local transport) over DNS-01 and
//! HTTP-01, and the renewal check over 100 stored certificates with none due.
//!
//! `cargo run -p provision-certs --example acme_bench -- [OUT.json] [ISSUANCES]`
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::{Duration, Instant};

use common::transport::local::LocalTransport;
use provision_certs as certs;
use serde_json::json;

fn stats(samples: &[Duration]) -> serde_json::Value {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let pick = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    json!({
        "count": ms.len(),
        "mean_ms": (ms.iter().sum::<f64>() / ms.len() as f64 * 10.0).round() / 10.0,
        "median_ms": (pick(0.5) * 10.0).round() / 10.0,
        "p95_ms": (pick(0.95) * 10.0).round() / 10.0,
        "min_ms": (ms[0] * 10.0).round() / 10.0,
        "max_ms": (ms[ms.len() - 1] * 10.0).round() / 10.0,
    })
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let out = args
        .next()
        .unwrap_or_else(|| "bench/results/acme.json".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(20);
    assert!(
        certs::testing::pebble_installed(),
        "pebble is not installed"
    );
    let pebble = certs::testing::Pebble::start(certs::testing::PebbleOptions::default())
        .expect("pebble starts");
    let scratch = tempfile::tempdir().expect("temp dir");
    let path = |p: &str| scratch.path().join(p).to_string_lossy().into_owned();
    let settings = certs::Settings::new(certs::StateDir::new(scratch.path().join("state")));
    let transport = LocalTransport::new("local");

    // Account creation (once per CA), measured on its own.
    let started = Instant::now();
    let client = certs::AcmeClient::connect(&pebble.ca(), Some("ops@example.com"), &settings.state)
        .await
        .expect("account");
    let account_ms = started.elapsed().as_secs_f64() * 1000.0;
    eprintln!("account created in {account_ms:.1} ms");

    // ACME order alone (challenge + finalize + download), DNS-01.
    let mut order_dns = Vec::new();
    for i in 0..n {
        let d = pebble.declaration(
            "bench",
            &[&format!("order{i}.example.com")],
            pebble.dns01(),
            &path("unused"),
            "true",
        );
        let solver = certs::solver_for(&d, &transport)
            .expect("solver")
            .expect("acme");
        let t = Instant::now();
        client
            .order(&d, solver.as_ref(), None)
            .await
            .expect("order");
        order_dns.push(t.elapsed());
    }
    eprintln!("DNS-01 order: {}", stats(&order_dns));

    // issue(): order + store + install (3 local round trips: facts, apply, verify).
    let mut issue_dns = Vec::new();
    for i in 0..n {
        let d = pebble.declaration(
            "bench",
            &[&format!("dns{i}.example.com")],
            pebble.dns01(),
            &path(&format!("ssl/dns{i}")),
            "true",
        );
        let t = Instant::now();
        certs::issue(&d, &transport, &settings)
            .await
            .expect("issue");
        issue_dns.push(t.elapsed());
    }
    eprintln!("DNS-01 issue+install: {}", stats(&issue_dns));

    let mut issue_http = Vec::new();
    for i in 0..n {
        let d = pebble.declaration(
            "bench",
            &[&format!("http{i}.example.com")],
            pebble.http01(&path("webroot")),
            &path(&format!("ssl/http{i}")),
            "true",
        );
        let t = Instant::now();
        certs::issue(&d, &transport, &settings)
            .await
            .expect("issue");
        issue_http.push(t.elapsed());
    }
    eprintln!(
        "HTTP-01 issue+install (temporary responder): {}",
        stats(&issue_http)
    );

    // 100 stored certificates, none due.
    let mut declarations = Vec::new();
    for i in 0..100 {
        let d = pebble.declaration(
            "fleet",
            &[&format!("fleet{i}.example.com")],
            pebble.dns01(),
            &path(&format!("ssl/fleet{i}")),
            "true",
        );
        certs::issue(&d, &transport, &settings)
            .await
            .expect("issue");
        declarations.push(d);
    }
    let mut check_rounds = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        for d in &declarations {
            let check = certs::renewal_check(d, &settings.state, time::OffsetDateTime::now_utc())
                .expect("check");
            assert!(!check.decision.is_due(), "{:?}", check.decision);
        }
        check_rounds.push(t.elapsed());
    }
    eprintln!("renewal check, 100 certificates: {}", stats(&check_rounds));
    let t = Instant::now();
    for d in &declarations {
        let outcome = certs::renew(d, &transport, &settings, false)
            .await
            .expect("renew");
        assert!(!outcome.renewed && !outcome.installed_changes());
    }
    let renew_all = t.elapsed();
    eprintln!("renew (none due, verifying installs), 100 certificates: {renew_all:?}");

    // Where a no-op renew spends its time: loading the account is not needed (no ARI on
    // Pebble 2.4); installing is one local round trip.
    let mut converge_only = Vec::new();
    for d in declarations.iter().take(20) {
        let stored = settings
            .state
            .load_certificate(&d.host, &d.name)
            .unwrap()
            .unwrap();
        let t = Instant::now();
        let report = common::engine::converge(
            &transport,
            &certs::install_resources(d, &stored),
            &common::engine::Options::default(),
        )
        .await;
        assert!(report.error.is_none());
        converge_only.push(t.elapsed());
    }
    eprintln!(
        "install check (converge, no change): {}",
        stats(&converge_only)
    );
    let mut connects = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        certs::AcmeClient::connect(&pebble.ca(), None, &settings.state)
            .await
            .unwrap();
        connects.push(t.elapsed());
    }
    eprintln!("load account + directory: {}", stats(&connects));

    let result = json!({
        "benchmark": "acme",
        "ca": "pebble 2.4 (Debian), PEBBLE_VA_NOSLEEP=1, PEBBLE_WFE_NONCEREJECT=0, PEBBLE_AUTHZREUSE=0",
        "machine": {
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        },
        "profile": if cfg!(debug_assertions) { "dev" } else { "release" },
        "goal": "<= 1000 ms per certificate",
        "account_creation_ms": (account_ms * 10.0).round() / 10.0,
        "order_dns01": stats(&order_dns),
        "issue_and_install_dns01": stats(&issue_dns),
        "issue_and_install_http01_temporary_responder": stats(&issue_http),
        "renewal_check_100_none_due": stats(&check_rounds),
        "renew_100_none_due_with_install_verification_ms": (renew_all.as_secs_f64() * 10000.0).round() / 10.0,
        "install_check_no_change": stats(&converge_only),
        "load_account_and_directory": stats(&connects),
    });
    if let Some(dir) = std::path::Path::new(&out).parent() {
        std::fs::create_dir_all(dir).expect("results directory");
    }
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&result).expect("json") + "\n",
    )
    .expect("write results");
    println!("{}", serde_json::to_string_pretty(&result).expect("json"));
}
