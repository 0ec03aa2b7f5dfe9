//! ACME features Pebble 2.4 lacks (profiles, ARI), against a minimal mock CA.

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use provision_certs as certs;

use certs::testing::{MockResponse, MockServer, challtestsrv_dns01, declaration};
use certs::{AcmeClient, AcmeError, CaConfig, StateDir};
use serde_json::json;

/// Directory (with profiles and renewalInfo), nonces, accounts; orders are refused after
/// being recorded.
async fn mock_ca() -> MockServer {
    let base: Arc<OnceLock<String>> = Arc::default();
    let url = base.clone();
    let server = MockServer::start(move |req| {
        let base = url.get().cloned().unwrap_or_default();
        let with_nonce = |r: MockResponse| r.header("replay-nonce", "bm9uY2U");
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/directory") => MockResponse::json(
                200,
                json!({
                    "newNonce": format!("{base}/nonce"),
                    "newAccount": format!("{base}/account"),
                    "newOrder": format!("{base}/order"),
                    "revokeCert": format!("{base}/revoke"),
                    "renewalInfo": format!("{base}/ari"),
                    "meta": {"profiles": {"classic": "90 days", "shortlived": "6 days"}}
                }),
            ),
            ("HEAD", "/nonce") => with_nonce(MockResponse {
                status: 200,
                headers: vec![],
                body: vec![],
            }),
            ("POST", "/account") => with_nonce(
                MockResponse::json(201, json!({"status": "valid"}))
                    .header("location", &format!("{base}/account/1")),
            ),
            ("POST", "/order") => with_nonce(MockResponse::json(
                403,
                json!({"type": "urn:ietf:params:acme:error:unauthorized", "detail": "the mock stops here"}),
            )),
            ("GET", p) if p.starts_with("/ari/") => MockResponse::json(
                200,
                json!({"suggestedWindow": {"start": "2026-02-01T00:00:00Z", "end": "2026-02-03T00:00:00Z"}}),
            )
            .header("retry-after", "21600"),
            _ => MockResponse::json(404, json!({"detail": "no such endpoint"})),
        }
    })
    .await;
    base.set(server.url.clone()).unwrap();
    server
}

fn jws_payload(body: &[u8]) -> serde_json::Value {
    let jws: serde_json::Value = serde_json::from_slice(body).unwrap();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jws["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

#[tokio::test]
async fn offered_profile_is_requested_in_the_order() {
    let ca = mock_ca().await;
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDir::new(tmp.path());
    let mut d = declaration(
        "h",
        &["profile.example.com"],
        CaConfig::url(&format!("{}/directory", ca.url)),
        challtestsrv_dns01("http://127.0.0.1:1"),
        "/unused",
        "true",
    );
    d.profile = Some("shortlived".into());
    let client = AcmeClient::connect(&d.ca, None, &state).await.unwrap();
    let mut offered = client.profiles();
    offered.sort();
    assert_eq!(offered[1], ("shortlived".to_string(), "6 days".to_string()));
    let local = common::transport::local::LocalTransport::new("l");
    let solver = certs::solver_for(&d, &local).unwrap().unwrap();
    let e = client.order(&d, solver.as_ref(), None).await.err().unwrap();
    assert!(e.to_string().contains("the mock stops here"), "{e}");
    let order = ca
        .requests()
        .into_iter()
        .find(|r| r.path == "/order")
        .expect("an order was sent");
    let payload = jws_payload(&order.body);
    assert_eq!(payload["profile"], "shortlived");
    assert_eq!(payload["identifiers"][0]["value"], "profile.example.com");

    // A profile the CA does not offer fails before any order, listing the offered ones.
    d.profile = Some("tlsserver".into());
    let before = ca.requests().len();
    let e = client.order(&d, solver.as_ref(), None).await.err().unwrap();
    assert!(matches!(e, AcmeError::UnknownProfile { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "the CA does not offer the profile \"tlsserver\" (it offers: classic, shortlived)"
    );
    assert_eq!(ca.requests().len(), before);
}

#[tokio::test]
async fn ari_window_is_fetched_with_its_retry_after() {
    let ca = mock_ca().await;
    let tmp = tempfile::tempdir().unwrap();
    let client = AcmeClient::connect(
        &CaConfig::url(&format!("{}/directory", ca.url)),
        Some("ops@example.com"),
        &StateDir::new(tmp.path()),
    )
    .await
    .unwrap();
    assert!(client.created);
    let (window, retry) = client
        .renewal_window(Some("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"))
        .await
        .unwrap()
        .expect("the mock offers ARI");
    assert_eq!(window.start, time::macros::datetime!(2026-02-01 00:00 UTC));
    assert_eq!(window.end, time::macros::datetime!(2026-02-03 00:00 UTC));
    assert!(
        retry.as_secs() > 21_000 && retry.as_secs() <= 21_600,
        "{retry:?}"
    );
    let ari = ca
        .requests()
        .into_iter()
        .find(|r| r.path.starts_with("/ari/"))
        .unwrap();
    assert_eq!(ari.path, "/ari/aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
    // The account was created with the contact and stored 0600.
    let account = ca
        .requests()
        .into_iter()
        .find(|r| r.path == "/account")
        .unwrap();
    assert_eq!(
        jws_payload(&account.body)["contact"][0],
        "mailto:ops@example.com"
    );
    let stored = std::fs::read_dir(tmp.path().join("accounts"))
        .unwrap()
        .flatten()
        .next()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        stored.metadata().unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Loading it again does not create another account.
    let again = AcmeClient::connect(
        &CaConfig::url(&format!("{}/directory", ca.url)),
        None,
        &StateDir::new(tmp.path()),
    )
    .await
    .unwrap();
    assert!(!again.created);
    assert_eq!(
        ca.requests()
            .iter()
            .filter(|r| r.path == "/account")
            .count(),
        1
    );
}
