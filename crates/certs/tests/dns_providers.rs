//! DNS-01 providers against local mocks of their APIs.

use provision_certs as certs;

use certs::challenge::{ChallengeSolver, PendingChallenge};
use certs::testing::{MockResponse, MockServer};
use certs::{CloudflareDns, Dns01Solver, DnsError, DnsProvider};
use serde_json::json;

/// A Cloudflare v4 API that knows one zone, `example.com` (id `zone-1`).
async fn cloudflare() -> MockServer {
    MockServer::start(|req| {
        if req.header("authorization") != Some("Bearer test-token") {
            return MockResponse::json(
                403,
                json!({"success": false, "errors": [{"code": 10000, "message": "Authentication error"}], "result": null}),
            );
        }
        let path = req.path.strip_prefix("/client/v4").unwrap_or(&req.path);
        match (req.method.as_str(), path) {
            ("GET", "/zones?name=example.com") => MockResponse::json(
                200,
                json!({"success": true, "errors": [], "result": [{"id": "zone-1", "name": "example.com"}]}),
            ),
            ("GET", p) if p.starts_with("/zones?name=") => {
                MockResponse::json(200, json!({"success": true, "errors": [], "result": []}))
            }
            ("POST", "/zones/zone-1/dns_records") => {
                let n = req.json()["content"].as_str().unwrap_or_default().len();
                MockResponse::json(
                    200,
                    json!({"success": true, "errors": [], "result": {"id": format!("rec-{n}")}}),
                )
            }
            ("DELETE", p) if p.starts_with("/zones/zone-1/dns_records/rec-") => {
                MockResponse::json(200, json!({"success": true, "errors": [], "result": {"id": "x"}}))
            }
            _ => MockResponse::json(
                404,
                json!({"success": false, "errors": [{"code": 7003, "message": "No route"}]}),
            ),
        }
    })
    .await
}

fn challenge(identifier: &str, value: &str) -> PendingChallenge {
    PendingChallenge {
        identifier: identifier.into(),
        token: "t".into(),
        key_authorization: "t.k".into(),
        dns_value: value.into(),
    }
}

#[tokio::test]
async fn cloudflare_publishes_and_removes_txt_records_for_a_name_and_its_wildcard() {
    let api = cloudflare().await;
    let provider =
        CloudflareDns::new(&format!("{}/client/v4", api.url), "test-token".into(), None).unwrap();
    let solver = Dns01Solver::new(Box::new(provider), std::time::Duration::ZERO);
    let challenges = [
        challenge("*.sub.example.com", "value-wildcard"),
        challenge("sub.example.com", "value-apex"),
    ];
    solver.deploy(&challenges).await.expect("published");
    solver.cleanup(&challenges).await.expect("removed");

    let requests = api.requests();
    let summary: Vec<String> = requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        summary,
        [
            "GET /client/v4/zones?name=sub.example.com",
            "GET /client/v4/zones?name=example.com",
            "POST /client/v4/zones/zone-1/dns_records",
            "POST /client/v4/zones/zone-1/dns_records",
            "DELETE /client/v4/zones/zone-1/dns_records/rec-14",
            "DELETE /client/v4/zones/zone-1/dns_records/rec-10",
        ],
        "the zone is looked up once, then cached"
    );
    let created = requests[2].json();
    assert_eq!(created["type"], "TXT");
    assert_eq!(created["name"], "_acme-challenge.sub.example.com");
    assert_eq!(created["content"], "value-wildcard");
    assert_eq!(
        requests[3].json()["name"],
        "_acme-challenge.sub.example.com"
    );
    assert_eq!(requests[3].json()["content"], "value-apex");
    assert!(
        requests
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer test-token"))
    );
}

#[tokio::test]
async fn cloudflare_with_a_zone_id_skips_the_lookup_and_lists_when_the_id_is_unknown() {
    let api = MockServer::start(|req| match req.method.as_str() {
        "GET" => MockResponse::json(
            200,
            json!({"success": true, "result": [
                {"id": "rec-a", "content": "\"mine\""},
                {"id": "rec-b", "content": "someone-else"}
            ]}),
        ),
        _ => MockResponse::json(200, json!({"success": true, "result": {}})),
    })
    .await;
    let provider = CloudflareDns::new(&api.url, "tok".into(), Some("zone-9".into())).unwrap();
    provider
        .clear_txt("_acme-challenge.example.com", "mine")
        .await
        .unwrap();
    let summary: Vec<String> = api
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        summary,
        [
            "GET /zones/zone-9/dns_records?type=TXT&name=_acme-challenge.example.com",
            "DELETE /zones/zone-9/dns_records/rec-a",
        ]
    );
}

#[tokio::test]
async fn cloudflare_errors_say_what_was_refused_and_why() {
    let api = cloudflare().await;
    let provider =
        CloudflareDns::new(&format!("{}/client/v4", api.url), "wrong".into(), None).unwrap();
    let e = provider
        .set_txt("_acme-challenge.example.com", "v")
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, DnsError::Refused { status: 403, .. }), "{text}");
    assert!(text.contains("Authentication error (code 10000)"), "{text}");
    assert!(text.contains("Zone:DNS:Edit"), "{text}");

    let ok =
        CloudflareDns::new(&format!("{}/client/v4", api.url), "test-token".into(), None).unwrap();
    let e = ok
        .set_txt("_acme-challenge.other.org", "v")
        .await
        .unwrap_err();
    assert!(matches!(e, DnsError::NoZone { .. }), "{e}");
    assert!(e.to_string().contains("certs.dns_zone_id"), "{e}");
}

#[tokio::test]
async fn cloudflare_without_a_token_names_the_variable() {
    let e = CloudflareDns::from_env(
        "http://127.0.0.1:1",
        "PROVISION_TEST_SURELY_UNSET_TOKEN",
        None,
    )
    .err()
    .expect("no token");
    assert_eq!(
        e.to_string(),
        "the DNS API token is missing: set the environment variable PROVISION_TEST_SURELY_UNSET_TOKEN"
    );
}

#[tokio::test]
async fn unreachable_dns_api_is_a_clear_error() {
    let port = certs::testing::free_port();
    let provider = CloudflareDns::new(
        &format!("http://127.0.0.1:{port}"),
        "t".into(),
        Some("z".into()),
    )
    .unwrap();
    let e = provider
        .set_txt("_acme-challenge.a.example", "v")
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(text.starts_with("cannot reach the DNS API"), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
}
