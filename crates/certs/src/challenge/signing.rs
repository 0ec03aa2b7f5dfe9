//! Request signatures of the DNS APIs that do not take a bearer token: Alibaba Cloud's
//! RPC-style HMAC-SHA1 (signature version 1.0) and Tencent Cloud API 3.0's TC3-HMAC-SHA256.
//!
//! Pure functions: the time and the nonce are parameters, so that a signature can be checked
//! against a known answer.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Alibaba's percent-encoding: RFC 3986 unreserved characters (`A-Z a-z 0-9 - _ . ~`) as
/// they are, every other UTF-8 byte as `%XX` (upper case): a space is `%20`, `*` is `%2A`.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonicalised query string: parameters sorted by name, each `name=value`
/// percent-encoded, joined with `&`.
pub(crate) fn canonical_query(params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    sorted
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Alibaba RPC signature of `params` (every parameter but `Signature`):
/// `Base64(HMAC-SHA1(secret + "&", METHOD + "&" + enc("/") + "&" + enc(canonical query)))`.
pub(crate) fn alibaba_signature(method: &str, params: &[(String, String)], secret: &str) -> String {
    let string_to_sign = format!(
        "{method}&{}&{}",
        percent_encode("/"),
        percent_encode(&canonical_query(params))
    );
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(format!("{secret}&").as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The common parameters of an Alibaba RPC call, then `extra`, then `Signature`: the query
/// string to send.
pub(crate) fn alibaba_signed_query(
    action: &str,
    version: &str,
    extra: &[(&str, String)],
    access_key_id: &str,
    secret: &str,
    timestamp: &str,
    nonce: &str,
) -> String {
    let mut params: Vec<(String, String)> = [
        ("Action", action),
        ("Format", "JSON"),
        ("Version", version),
        ("AccessKeyId", access_key_id),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", nonce),
        ("Timestamp", timestamp),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let signature = alibaba_signature("GET", &params, secret);
    format!(
        "{}&Signature={}",
        canonical_query(&params),
        percent_encode(&signature)
    )
}

fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a TC3-HMAC-SHA256 signature covers: a POST of a JSON body to `/`.
pub(crate) struct Tc3Request<'a> {
    /// `Host` header as sent (with the port when it is not the default).
    pub host: &'a str,
    /// `Content-Type` header as sent.
    pub content_type: &'a str,
    /// `X-TC-Action`.
    pub action: &'a str,
    pub payload: &'a [u8],
    /// Unix seconds (`X-TC-Timestamp`); the credential's date is its UTC day.
    pub timestamp: i64,
    /// `dnspod`.
    pub service: &'a str,
}

/// The `Authorization` header of Tencent Cloud API 3.0 (TC3-HMAC-SHA256): the canonical
/// request (method, URI `/`, empty query, the signed headers `content-type;host;x-tc-action`
/// and the payload's SHA-256), signed with a key derived from `"TC3" + secret_key`, the UTC
/// date, the service and `tc3_request`.
pub(crate) fn tc3_authorization(r: &Tc3Request<'_>, secret_id: &str, secret_key: &str) -> String {
    let signed_headers = "content-type;host;x-tc-action";
    let canonical_headers = format!(
        "content-type:{}\nhost:{}\nx-tc-action:{}\n",
        r.content_type.trim().to_ascii_lowercase(),
        r.host.trim().to_ascii_lowercase(),
        r.action.trim().to_ascii_lowercase()
    );
    let canonical_request = format!(
        "POST\n/\n\n{canonical_headers}\n{signed_headers}\n{}",
        hex(&Sha256::digest(r.payload))
    );
    let date = time::OffsetDateTime::from_unix_timestamp(r.timestamp)
        .map(|t| t.date())
        .unwrap_or(time::Date::MIN);
    let date = format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    );
    let scope = format!("{date}/{}/tc3_request", r.service);
    let string_to_sign = format!(
        "TC3-HMAC-SHA256\n{}\n{scope}\n{}",
        r.timestamp,
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let secret_date = hmac_sha256(format!("TC3{secret_key}").as_bytes(), &date);
    let secret_service = hmac_sha256(&secret_date, r.service);
    let secret_signing = hmac_sha256(&secret_service, "tc3_request");
    let signature = hex(&hmac_sha256(&secret_signing, &string_to_sign));
    format!(
        "TC3-HMAC-SHA256 Credential={secret_id}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_follows_alibabas_rules() {
        assert_eq!(percent_encode("a-Z_0.~"), "a-Z_0.~");
        assert_eq!(percent_encode("a b*c/d:e+f"), "a%20b%2Ac%2Fd%3Ae%2Bf");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    /// The worked example of Alibaba Cloud's RPC signature documentation (DescribeRegions
    /// with the AccessKey `testid` / `testsecret`).
    #[test]
    fn alibaba_signature_matches_the_documented_example() {
        let params: Vec<(String, String)> = [
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Format", "XML"),
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("Version", "2014-05-26"),
            ("SignatureVersion", "1.0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            canonical_query(&params),
            "AccessKeyId=testid&Action=DescribeRegions&Format=XML&SignatureMethod=HMAC-SHA1&SignatureNonce=3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf&SignatureVersion=1.0&Timestamp=2016-02-23T12%3A46%3A24Z&Version=2014-05-26"
        );
        assert_eq!(
            alibaba_signature("GET", &params, "testsecret"),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
    }

    #[test]
    fn tc3_authorization_names_the_scope_and_changes_with_the_key() {
        let r = Tc3Request {
            host: "dns.test",
            content_type: "application/json",
            action: "DescribeRecordList",
            payload: b"{}",
            timestamp: 1_551_113_065,
            service: "dnspod",
        };
        let a = tc3_authorization(&r, "AKID", "secret");
        assert!(
            a.starts_with(
                "TC3-HMAC-SHA256 Credential=AKID/2019-02-25/dnspod/tc3_request, SignedHeaders=content-type;host;x-tc-action, Signature="
            ),
            "{a}"
        );
        assert_eq!(a.rsplit('=').next().unwrap().len(), 64);
        assert_ne!(a, tc3_authorization(&r, "AKID", "secreT"));
    }
}
