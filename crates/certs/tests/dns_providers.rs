//! DNS-01 providers against local mocks of their APIs.

use provision_certs as certs;

use certs::testing::{MockResponse, MockServer};
use certs::{ChallengeSolver, PendingChallenge};
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

// ---------------------------------------------------------------------------------------
// Alibaba Cloud DNS and DNSPod (Tencent Cloud): mocks that check the signatures as the real
// APIs do, written here from the providers' specifications (not with the client's code).
// ---------------------------------------------------------------------------------------

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use certs::{AlidnsDns, DnspodDns, KeyPair};
use hmac::{Hmac, Mac};
use sha2::Digest;

fn keys(id: &str, secret: &str) -> KeyPair {
    KeyPair {
        id: id.into(),
        secret: secret.into(),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// RFC 3986 percent-decoding of a query component.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Alibaba's POP encoding: what `java.net.URLEncoder` gives, then `+`→`%20`, `*`→`%2A`,
/// `%7E`→`~` (as their documentation describes it).
fn pop_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out.replace('+', "%20")
        .replace('*', "%2A")
        .replace("%7E", "~")
}

/// Check an Alibaba RPC request: the common parameters, a fresh nonce, a recent timestamp
/// and the HMAC-SHA1 signature. `Err` is the error code the API answers.
fn alibaba_verify(
    method: &str,
    query: &str,
    secrets: &BTreeMap<String, String>,
    nonces: &Mutex<Vec<String>>,
) -> Result<BTreeMap<String, String>, (&'static str, u16)> {
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        params.insert(unescape(k), unescape(v));
    }
    let get = |k: &str| params.get(k).cloned().unwrap_or_default();
    if get("SignatureMethod") != "HMAC-SHA1" || get("SignatureVersion") != "1.0" {
        return Err(("InvalidSignatureMethod", 400));
    }
    if get("Format") != "JSON" || get("Version") != "2015-01-09" {
        return Err(("MissingParameter", 400));
    }
    let ts = time::OffsetDateTime::parse(
        &get("Timestamp"),
        &time::format_description::well_known::Rfc3339,
    )
    .map_err(|_| ("InvalidTimeStamp.Format", 400))?;
    if !get("Timestamp").ends_with('Z') || (ts.unix_timestamp() - now()).abs() > 900 {
        return Err(("InvalidTimeStamp.Expired", 400));
    }
    let nonce = get("SignatureNonce");
    if nonce.is_empty() {
        return Err(("MissingSignatureNonce", 400));
    }
    let Some(secret) = secrets.get(&get("AccessKeyId")) else {
        return Err(("InvalidAccessKeyId.NotFound", 404));
    };
    let given = get("Signature");
    let canonical = params
        .iter()
        .filter(|(k, _)| k.as_str() != "Signature")
        .map(|(k, v)| format!("{}={}", pop_encode(k), pop_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let to_sign = format!("{method}&{}&{}", pop_encode("/"), pop_encode(&canonical));
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(format!("{secret}&").as_bytes()).unwrap();
    mac.update(to_sign.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    if given != expected {
        return Err(("SignatureDoesNotMatch", 400));
    }
    let mut seen = nonces.lock().unwrap();
    if seen.contains(&nonce) {
        return Err(("SignatureNonceUsed", 400));
    }
    seen.push(nonce);
    Ok(params)
}

/// Alibaba Cloud DNS with one domain, `example.com`, and one AccessKey `LTAIkey`/`alisecret`.
/// Its records are kept, so that a test sees what is left.
struct AliMock {
    server: MockServer,
    records: Arc<Mutex<BTreeMap<String, (String, String)>>>,
}

async fn alidns() -> AliMock {
    alidns_publishing_to(None).await
}

/// POST `body` to `url` (a challtestsrv management API) from a mock's handler.
fn post_json(url: &str, path: &str, body: &serde_json::Value) {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let body = body.to_string();
    let mut stream = std::net::TcpStream::connect(addr).expect("challtestsrv answers");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "challtestsrv {path}: {answer}"
    );
}

/// Like [`alidns`]; with `dns`, its records are also published in that challtestsrv's
/// mock DNS, which Pebble asks: DNS-01 end to end through the signed API.
async fn alidns_publishing_to(dns: Option<String>) -> AliMock {
    let secrets: BTreeMap<String, String> = [("LTAIkey".to_string(), "alisecret".to_string())]
        .into_iter()
        .collect();
    let nonces: Arc<Mutex<Vec<String>>> = Arc::default();
    let records: Arc<Mutex<BTreeMap<String, (String, String)>>> = Arc::default();
    let store = records.clone();
    let server = MockServer::start(move |req| {
        let fail = |code: &str, status: u16| {
            MockResponse::json(
                status,
                json!({"RequestId": "r", "Code": code, "Message": format!("mock: {code}")}),
            )
        };
        let Some(query) = req.path.strip_prefix("/?") else {
            return fail("InvalidAction.NotFound", 404);
        };
        let p = match alibaba_verify(&req.method, query, &secrets, &nonces) {
            Ok(p) => p,
            Err((code, status)) => return fail(code, status),
        };
        let get = |k: &str| p.get(k).cloned().unwrap_or_default();
        let mut records = store.lock().unwrap();
        match get("Action").as_str() {
            "DescribeDomainRecords" => {
                if get("DomainName") != "example.com" {
                    return fail("InvalidDomainName.NoExist", 400);
                }
                let list: Vec<_> = records
                    .iter()
                    .filter(|(_, (rr, _))| rr.contains(&get("RRKeyWord")))
                    .map(|(id, (rr, v))| json!({"RecordId": id, "RR": rr, "Type": "TXT", "Value": v, "DomainName": "example.com"}))
                    .collect();
                MockResponse::json(
                    200,
                    json!({"RequestId": "r", "TotalCount": list.len(), "DomainRecords": {"Record": list}}),
                )
            }
            "AddDomainRecord" => {
                if get("DomainName") != "example.com" || get("Type") != "TXT" {
                    return fail("InvalidDomainName.NoExist", 400);
                }
                let id = format!("{}", 1000 + records.len());
                if let Some(dns) = &dns {
                    let host = format!("{}.example.com.", get("RR"));
                    post_json(dns, "/set-txt", &json!({"host": host, "value": get("Value")}));
                }
                records.insert(id.clone(), (get("RR"), get("Value")));
                MockResponse::json(200, json!({"RequestId": "r", "RecordId": id}))
            }
            "DeleteDomainRecord" => match records.remove(&get("RecordId")) {
                Some((rr, _)) if dns.is_some() => {
                    let host = format!("{rr}.example.com.");
                    post_json(dns.as_deref().unwrap_or_default(), "/clear-txt", &json!({"host": host}));
                    MockResponse::json(200, json!({"RequestId": "r", "RecordId": get("RecordId")}))
                }
                Some(_) => MockResponse::json(200, json!({"RequestId": "r", "RecordId": get("RecordId")})),
                None => fail("DomainRecordNotBelongToUser", 400),
            },
            _ => fail("InvalidAction.NotFound", 404),
        }
    })
    .await;
    AliMock { server, records }
}

fn actions(server: &MockServer) -> Vec<String> {
    server
        .requests()
        .iter()
        .map(|r| {
            let action = r
                .header("x-tc-action")
                .map(String::from)
                .or_else(|| {
                    r.path
                        .split(['?', '&'])
                        .find_map(|p| p.strip_prefix("Action=").map(String::from))
                })
                .unwrap_or_default();
            let domain = r
                .path
                .split(['?', '&'])
                .find_map(|p| p.strip_prefix("DomainName=").map(String::from))
                .or_else(|| r.json()["Domain"].as_str().map(String::from))
                .unwrap_or_default();
            format!("{action} {domain}")
        })
        .collect()
}

/// DNS-01 through `provider` for `*.sub.example.com` (TXT value `wildcard`) and
/// `sub.example.com`: both records are published (`records` lists what the API mock holds,
/// as name and value) and both removed again.
async fn publishes_and_removes_a_name_and_its_wildcard(
    provider: Box<dyn DnsProvider>,
    wildcard: &str,
    records: impl Fn() -> Vec<(String, String)>,
) {
    let solver = Dns01Solver::new(provider, std::time::Duration::ZERO);
    let challenges = [
        challenge("*.sub.example.com", wildcard),
        challenge("sub.example.com", "value-apex"),
    ];
    solver.deploy(&challenges).await.expect("published");
    assert_eq!(
        records(),
        [
            ("_acme-challenge.sub".to_string(), wildcard.to_string()),
            ("_acme-challenge.sub".to_string(), "value-apex".to_string()),
        ]
    );
    solver.cleanup(&challenges).await.expect("removed");
    assert!(records().is_empty());
}

/// `provider` (zone `example.com`) removes its own `_acme-challenge` record, `mine`, which
/// it did not create (the mock holds it and `someone-else`'s under ids 7 and 8), found by
/// listing; `left` lists the ids the mock still holds.
async fn clears_only_its_own_record(provider: &dyn DnsProvider, left: impl Fn() -> Vec<String>) {
    provider
        .clear_txt("_acme-challenge.example.com", "mine")
        .await
        .unwrap();
    assert_eq!(left(), ["8"]);
}

/// `bad_secret` (zone `example.com`) is refused by the API mock: the error names the API's
/// `code` and the `variable` holding the secret, never the secret, and nothing is
/// published (`published` counts the mock's records); `no_zone` (no zone given) finds none
/// for `other.org`.
async fn refuses_a_bad_secret(
    bad_secret: &dyn DnsProvider,
    no_zone: &dyn DnsProvider,
    code: &str,
    variable: &str,
    published: impl Fn() -> usize,
) -> DnsError {
    let e = bad_secret
        .set_txt("_acme-challenge.example.com", "v")
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains(code), "{text}");
    assert!(text.contains(variable), "{text}");
    assert!(!text.contains("not-the-secret"), "{text}");
    assert_eq!(published(), 0);

    let none = no_zone
        .set_txt("_acme-challenge.other.org", "v")
        .await
        .unwrap_err();
    assert!(matches!(none, DnsError::NoZone { .. }), "{none}");
    e
}

#[tokio::test]
async fn alidns_publishes_and_removes_signed_txt_records_for_a_name_and_its_wildcard() {
    let api = alidns().await;
    let provider = AlidnsDns::new(&api.server.url, keys("LTAIkey", "alisecret"), None).unwrap();
    publishes_and_removes_a_name_and_its_wildcard(Box::new(provider), "value wild+card/==", || {
        api.records.lock().unwrap().values().cloned().collect()
    })
    .await;
    assert_eq!(
        actions(&api.server),
        [
            "DescribeDomainRecords sub.example.com",
            "DescribeDomainRecords example.com",
            "AddDomainRecord example.com",
            "AddDomainRecord example.com",
            "DeleteDomainRecord ",
            "DeleteDomainRecord ",
        ],
        "the domain is looked up once, then cached"
    );
}

#[tokio::test]
async fn alidns_lists_the_records_to_remove_when_it_did_not_create_them() {
    let api = alidns().await;
    api.records.lock().unwrap().extend([
        (
            "7".to_string(),
            ("_acme-challenge".to_string(), "mine".to_string()),
        ),
        (
            "8".to_string(),
            ("_acme-challenge".to_string(), "someone-else".to_string()),
        ),
    ]);
    let provider = AlidnsDns::new(
        &api.server.url,
        keys("LTAIkey", "alisecret"),
        Some("example.com".into()),
    )
    .unwrap();
    clears_only_its_own_record(&provider, || {
        api.records.lock().unwrap().keys().cloned().collect()
    })
    .await;
}

#[tokio::test]
async fn alidns_refuses_a_bad_secret_and_says_which_keys_to_check() {
    let api = alidns().await;
    let bad_secret = AlidnsDns::new(
        &api.server.url,
        keys("LTAIkey", "not-the-secret"),
        Some("example.com".into()),
    )
    .unwrap();
    let no_zone = AlidnsDns::new(&api.server.url, keys("LTAIkey", "alisecret"), None).unwrap();
    let e = refuses_a_bad_secret(
        &bad_secret,
        &no_zone,
        "SignatureDoesNotMatch",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        || api.records.lock().unwrap().len(),
    )
    .await;
    assert!(matches!(e, DnsError::Refused { status: 400, .. }), "{e}");
}

/// Check a TC3-HMAC-SHA256 request as Tencent Cloud API 3.0 does. `Err` is the error code.
fn tc3_verify(
    req: &certs::testing::RecordedRequest,
    secrets: &BTreeMap<String, String>,
) -> Result<(), &'static str> {
    fn hmac256(key: &[u8], msg: &str) -> Vec<u8> {
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        m.update(msg.as_bytes());
        m.finalize().into_bytes().to_vec()
    }
    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }
    let header = |k: &str| req.header(k).unwrap_or_default().to_string();
    if req.method != "POST" || header("x-tc-version") != "2021-03-23" {
        return Err("InvalidParameter");
    }
    let ts: i64 = header("x-tc-timestamp")
        .parse()
        .map_err(|_| "MissingParameter")?;
    if (ts - now()).abs() > 300 {
        return Err("AuthFailure.SignatureExpire");
    }
    let auth = header("authorization");
    let rest = auth
        .strip_prefix("TC3-HMAC-SHA256 ")
        .ok_or("AuthFailure.InvalidAuthorization")?;
    let mut parts = BTreeMap::new();
    for p in rest.split(", ") {
        let (k, v) = p
            .split_once('=')
            .ok_or("AuthFailure.InvalidAuthorization")?;
        parts.insert(k, v);
    }
    let credential = parts
        .get("Credential")
        .ok_or("AuthFailure.InvalidAuthorization")?;
    let (id, scope) = credential
        .split_once('/')
        .ok_or("AuthFailure.InvalidAuthorization")?;
    let secret = secrets.get(id).ok_or("AuthFailure.SecretIdNotFound")?;
    let date = time::OffsetDateTime::from_unix_timestamp(ts)
        .unwrap()
        .date();
    let date = format!("{date}");
    if *scope != format!("{date}/dnspod/tc3_request") {
        return Err("AuthFailure.InvalidAuthorization");
    }
    let signed = parts
        .get("SignedHeaders")
        .ok_or("AuthFailure.InvalidAuthorization")?;
    let names: Vec<&str> = signed.split(';').collect();
    if !names.contains(&"content-type") || !names.contains(&"host") {
        return Err("AuthFailure.InvalidAuthorization");
    }
    let canonical_headers: String = names
        .iter()
        .map(|n| format!("{n}:{}\n", header(n).trim().to_lowercase()))
        .collect();
    let canonical = format!(
        "POST\n/\n\n{canonical_headers}\n{signed}\n{}",
        hex(&sha2::Sha256::digest(&req.body))
    );
    let to_sign = format!(
        "TC3-HMAC-SHA256\n{ts}\n{scope}\n{}",
        hex(&sha2::Sha256::digest(canonical.as_bytes()))
    );
    let k = hmac256(format!("TC3{secret}").as_bytes(), &date);
    let k = hmac256(&k, "dnspod");
    let k = hmac256(&k, "tc3_request");
    if parts.get("Signature").copied() != Some(hex(&hmac256(&k, &to_sign)).as_str()) {
        return Err("AuthFailure.SignatureFailure");
    }
    Ok(())
}

/// DNSPod through Tencent Cloud API 3.0 with one domain, `example.com`, and one key
/// `AKIDkey`/`tcsecret`.
struct PodMock {
    server: MockServer,
    records: Arc<Mutex<BTreeMap<u64, (String, String)>>>,
}

async fn dnspod() -> PodMock {
    dnspod_publishing_to(None).await
}

/// Like [`dnspod`]; with `dns`, records are also published in that challtestsrv.
async fn dnspod_publishing_to(dns: Option<String>) -> PodMock {
    let secrets: BTreeMap<String, String> = [("AKIDkey".to_string(), "tcsecret".to_string())]
        .into_iter()
        .collect();
    let records: Arc<Mutex<BTreeMap<u64, (String, String)>>> = Arc::default();
    let store = records.clone();
    let server = MockServer::start(move |req| {
        let fail = |code: &str| {
            MockResponse::json(
                200,
                json!({"Response": {"Error": {"Code": code, "Message": format!("mock: {code}")}, "RequestId": "r"}}),
            )
        };
        if let Err(code) = tc3_verify(req, &secrets) {
            return fail(code);
        }
        let body = req.json();
        let s = |k: &str| body[k].as_str().unwrap_or_default().to_string();
        if s("Domain") != "example.com" {
            return fail("InvalidParameterValue.DomainNotExists");
        }
        let mut records = store.lock().unwrap();
        match req.header("x-tc-action").unwrap_or_default() {
            "DescribeRecordList" => {
                let list: Vec<_> = records
                    .iter()
                    .filter(|(_, (sub, _))| *sub == s("Subdomain"))
                    .map(|(id, (sub, v))| json!({"RecordId": id, "Name": sub, "Type": "TXT", "Value": v}))
                    .collect();
                if list.is_empty() {
                    return fail("ResourceNotFound.NoDataOfRecord");
                }
                MockResponse::json(200, json!({"Response": {"RecordList": list, "RequestId": "r"}}))
            }
            "CreateRecord" => {
                if s("RecordType") != "TXT" || s("RecordLine").is_empty() {
                    return fail("InvalidParameter");
                }
                let id = 500 + records.len() as u64;
                if let Some(dns) = &dns {
                    let host = format!("{}.example.com.", s("SubDomain"));
                    post_json(dns, "/set-txt", &json!({"host": host, "value": s("Value")}));
                }
                records.insert(id, (s("SubDomain"), s("Value")));
                MockResponse::json(200, json!({"Response": {"RecordId": id, "RequestId": "r"}}))
            }
            "DeleteRecord" => match body["RecordId"].as_u64().and_then(|id| records.remove(&id)) {
                Some((sub, _)) if dns.is_some() => {
                    let host = format!("{sub}.example.com.");
                    post_json(dns.as_deref().unwrap_or_default(), "/clear-txt", &json!({"host": host}));
                    MockResponse::json(200, json!({"Response": {"RequestId": "r"}}))
                }
                Some(_) => MockResponse::json(200, json!({"Response": {"RequestId": "r"}})),
                None => fail("InvalidParameter.RecordIdInvalid"),
            },
            _ => fail("InvalidAction"),
        }
    })
    .await;
    PodMock { server, records }
}

#[tokio::test]
async fn dnspod_publishes_and_removes_signed_txt_records_for_a_name_and_its_wildcard() {
    let api = dnspod().await;
    let provider = DnspodDns::new(&api.server.url, keys("AKIDkey", "tcsecret"), None).unwrap();
    publishes_and_removes_a_name_and_its_wildcard(Box::new(provider), "value-wildcard", || {
        api.records.lock().unwrap().values().cloned().collect()
    })
    .await;
    assert_eq!(
        actions(&api.server),
        [
            "DescribeRecordList sub.example.com",
            "DescribeRecordList example.com",
            "CreateRecord example.com",
            "CreateRecord example.com",
            "DeleteRecord example.com",
            "DeleteRecord example.com",
        ],
        "the domain is looked up once, then cached"
    );
}

#[tokio::test]
async fn dnspod_lists_the_records_to_remove_when_it_did_not_create_them() {
    let api = dnspod().await;
    api.records.lock().unwrap().extend([
        (7, ("_acme-challenge".to_string(), "mine".to_string())),
        (
            8,
            ("_acme-challenge".to_string(), "someone-else".to_string()),
        ),
    ]);
    let provider = DnspodDns::new(
        &api.server.url,
        keys("AKIDkey", "tcsecret"),
        Some("example.com".into()),
    )
    .unwrap();
    clears_only_its_own_record(&provider, || {
        let ids = api.records.lock().unwrap();
        ids.keys().map(u64::to_string).collect()
    })
    .await;
}

#[tokio::test]
async fn dnspod_refuses_a_bad_secret_and_says_which_keys_to_check() {
    let api = dnspod().await;
    let bad_secret = DnspodDns::new(
        &api.server.url,
        keys("AKIDkey", "not-the-secret"),
        Some("example.com".into()),
    )
    .unwrap();
    let no_zone = DnspodDns::new(&api.server.url, keys("AKIDkey", "tcsecret"), None).unwrap();
    let e = refuses_a_bad_secret(
        &bad_secret,
        &no_zone,
        "AuthFailure.SignatureFailure",
        "TENCENTCLOUD_SECRET_KEY",
        || api.records.lock().unwrap().len(),
    )
    .await;
    assert!(matches!(e, DnsError::Refused { .. }), "{e}");
}

/// Issue 15: DNS-01 end to end through a signed provider API: Pebble orders a wildcard and
/// its base name, the records go out through the API mock (which checks every signature and
/// publishes them in challtestsrv's DNS, which Pebble asks), the certificate is issued and
/// installed, and the records are deleted again through the same API. `None` when Pebble
/// is not installed (an error under CI).
#[allow(clippy::print_stderr)] // says why it skips
async fn dns01_end_to_end(
    provider: certs::DnsProviderKind,
    mock: impl AsyncFnOnce(String) -> MockServer,
    credentials: &str,
) -> Option<Vec<String>> {
    use certs::testing::{Pebble, PebbleOptions, pebble_installed};
    use std::os::unix::fs::PermissionsExt;
    if !pebble_installed() {
        assert!(
            std::env::var("CI").is_err(),
            "pebble is required here but not installed"
        );
        eprintln!("skipping: pebble is not installed (apt-get install pebble)");
        return None;
    }
    let pebble = Pebble::start(PebbleOptions::default()).expect("pebble starts");
    let server = mock(pebble.challtestsrv_url.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.env");
    std::fs::write(&file, credentials).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let challenge = certs::ChallengeConfig::Dns01(certs::DnsProviderConfig {
        provider,
        api_url: server.url.clone(),
        token_env: None,
        zone_id: None,
        credentials_file: Some(file),
        propagation_seconds: 0,
    });
    let ssl = dir.path().join("ssl").display().to_string();
    let d = pebble.declaration(
        "local",
        &["*.shop.example.com", "shop.example.com"],
        challenge,
        &ssl,
        "true",
    );
    let settings = certs::Settings::new(certs::StateDir::new(dir.path().join("state")));
    let transport = common::transport::local::LocalTransport::new("local");
    let out = certs::issue(&d, &transport, &settings)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{}\npebble:\n{}",
                common::error::error_chain(&e),
                pebble.log()
            )
        });
    assert!(out.renewed);
    assert_eq!(out.info.names, ["*.shop.example.com", "shop.example.com"]);
    assert!(out.info.issuer.contains("Pebble"), "{}", out.info.issuer);
    let installed = std::fs::read(format!("{ssl}/fullchain.pem")).unwrap();
    assert_eq!(
        certs::CertInfo::from_pem(&installed).unwrap().names,
        out.info.names
    );
    Some(actions(&server))
}

#[tokio::test]
async fn alidns_dns01_end_to_end_with_pebble_through_challtestsrv() {
    let records = Arc::new(Mutex::new(None));
    let keep = records.clone();
    let mock = async move |dns: String| {
        let ali = alidns_publishing_to(Some(dns)).await;
        *keep.lock().unwrap() = Some(ali.records.clone());
        ali.server
    };
    let keys = "ALIBABA_CLOUD_ACCESS_KEY_ID=LTAIkey\nALIBABA_CLOUD_ACCESS_KEY_SECRET=alisecret\n";
    let Some(calls) = dns01_end_to_end(certs::DnsProviderKind::Alidns, mock, keys).await else {
        return;
    };
    let added = calls
        .iter()
        .filter(|c| c.starts_with("AddDomainRecord"))
        .count();
    assert_eq!(added, 2, "{calls:?}");
    let left = records.lock().unwrap().clone().unwrap();
    assert!(left.lock().unwrap().is_empty(), "cleaned up: {calls:?}");
}

#[tokio::test]
async fn dnspod_dns01_end_to_end_with_pebble_through_challtestsrv() {
    let records = Arc::new(Mutex::new(None));
    let keep = records.clone();
    let mock = async move |dns: String| {
        let pod = dnspod_publishing_to(Some(dns)).await;
        *keep.lock().unwrap() = Some(pod.records.clone());
        pod.server
    };
    let keys = "TENCENTCLOUD_SECRET_ID=AKIDkey\nTENCENTCLOUD_SECRET_KEY=tcsecret\n";
    let Some(calls) = dns01_end_to_end(certs::DnsProviderKind::Dnspod, mock, keys).await else {
        return;
    };
    let added = calls
        .iter()
        .filter(|c| c.starts_with("CreateRecord"))
        .count();
    assert_eq!(added, 2, "{calls:?}");
    let left = records.lock().unwrap().clone().unwrap();
    assert!(left.lock().unwrap().is_empty(), "cleaned up: {calls:?}");
}
