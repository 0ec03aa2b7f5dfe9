//! The HTTP client under the ACME client and the DNS provider APIs.
//!
//! One hyper client with rustls (aws-lc-rs, the platform's roots plus an optional extra
//! root). Wrapped for ACME so that what instant-acme does not surface — the `Retry-After`
//! of a 429/503 and the URL of a connection that failed — is observed and reported.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Longest time one HTTP request may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) type Hyper = Client<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>;

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{path} holds no PEM certificate")]
    NoRoot { path: String },
    #[error("cannot read the extra root {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the TLS configuration is not usable")]
    Tls(#[source] rustls::Error),
}

/// Roots: the platform's, plus the certificates of `extra_root_pem` when given.
pub(crate) fn client(extra_root_pem: Option<&std::path::Path>) -> Result<Hyper, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = match extra_root_pem {
        None => rustls_platform_verifier::Verifier::new(provider.clone()),
        Some(path) => {
            let shown = path.display().to_string();
            let pem = std::fs::read(path).map_err(|source| TlsSetupError::Read {
                path: shown.clone(),
                source,
            })?;
            let roots: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .filter_map(Result::ok)
                .collect();
            if roots.is_empty() {
                return Err(TlsSetupError::NoRoot { path: shown });
            }
            rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider.clone())
        }
    }
    .map_err(TlsSetupError::Tls)?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// What the ACME HTTP layer saw that instant-acme's errors leave out.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observations {
    /// The last 429/503 answer: URL, status and when to retry.
    pub throttled: Option<Throttle>,
    /// The last request that got no answer: URL and why.
    pub unreachable: Option<(String, String)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Throttle {
    pub url: String,
    pub status: u16,
    pub retry_after: Option<SystemTime>,
    /// The problem document's `detail`, when there is one.
    pub detail: Option<String>,
}

/// instant-acme's HTTP client: hyper with a timeout, watching for throttling and failures.
#[derive(Clone)]
pub(crate) struct AcmeHttp {
    hyper: Hyper,
    seen: Arc<Mutex<Observations>>,
}

impl AcmeHttp {
    pub(crate) fn new(hyper: Hyper) -> Self {
        Self {
            hyper,
            seen: Arc::default(),
        }
    }

    pub(crate) fn observations(&self) -> Observations {
        self.seen.lock().map(|o| o.clone()).unwrap_or_default()
    }

    pub(crate) fn clear(&self) {
        if let Ok(mut o) = self.seen.lock() {
            *o = Observations::default();
        }
    }
}

/// Parse `Retry-After`: delay-seconds or an HTTP date.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<SystemTime> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(now + Duration::from_secs(secs));
    }
    let format = time::format_description::well_known::Rfc2822;
    time::OffsetDateTime::parse(value, &format)
        .ok()
        .or_else(|| {
            // IMF-fixdate uses `GMT`, which RFC 2822 parsing accepts as an obsolete zone;
            // fall back to replacing it for parsers that do not.
            time::OffsetDateTime::parse(&value.replace("GMT", "+0000"), &format).ok()
        })
        .map(SystemTime::from)
}

impl instant_acme::HttpClient for AcmeHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let url = req.uri().to_string();
        let fut = self.hyper.request(req);
        let seen = self.seen.clone();
        Box::pin(async move {
            let result = tokio::time::timeout(REQUEST_TIMEOUT, fut).await;
            let record_unreachable = |why: String| {
                if let Ok(mut o) = seen.lock() {
                    o.unreachable = Some((url.clone(), why));
                }
            };
            match result {
                Err(_) => {
                    let why = format!("no answer within {} s", REQUEST_TIMEOUT.as_secs());
                    record_unreachable(why.clone());
                    Err(instant_acme::Error::Other(why.into()))
                }
                Ok(Err(e)) => {
                    record_unreachable(common::error::error_chain(&e));
                    Err(instant_acme::Error::Other(Box::new(e)))
                }
                Ok(Ok(rsp)) => {
                    let status = rsp.status();
                    if status == StatusCode::TOO_MANY_REQUESTS
                        || status == StatusCode::SERVICE_UNAVAILABLE
                    {
                        let retry_after = rsp
                            .headers()
                            .get(http::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| parse_retry_after(v, SystemTime::now()));
                        // Keep the problem's detail: instant-acme may fail on the body
                        // before it reads it (e.g. a throttled directory request).
                        let (parts, body) = rsp.into_parts();
                        let body = match tokio::time::timeout(REQUEST_TIMEOUT, body.collect()).await
                        {
                            Ok(Ok(collected)) => collected.to_bytes(),
                            _ => Bytes::new(),
                        };
                        let detail = serde_json::from_slice::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|v| v.get("detail")?.as_str().map(String::from));
                        if let Ok(mut o) = seen.lock() {
                            o.throttled = Some(Throttle {
                                url: url.clone(),
                                status: status.as_u16(),
                                retry_after,
                                detail,
                            });
                        }
                        return Ok(BytesResponse {
                            parts,
                            body: Box::new(body),
                        });
                    }
                    Ok(BytesResponse::from(rsp))
                }
            }
        })
    }
}

/// A JSON API answer.
#[derive(Debug)]
pub(crate) struct JsonResponse {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Send a request with an optional JSON body (used by the DNS providers).
pub(crate) async fn send(
    hyper: &Hyper,
    method: http::Method,
    url: &str,
    headers: &[(&str, String)],
    body: Option<Vec<u8>>,
) -> Result<JsonResponse, String> {
    let mut builder = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, v);
    }
    if body.is_some() {
        builder = builder.header(http::header::CONTENT_TYPE, "application/json");
    }
    let req = builder
        .body(body.map(BodyWrapper::from).unwrap_or_default())
        .map_err(|e| format!("bad request to {url}: {e}"))?;
    let rsp = tokio::time::timeout(REQUEST_TIMEOUT, hyper.request(req))
        .await
        .map_err(|_| format!("{url}: no answer within {} s", REQUEST_TIMEOUT.as_secs()))?
        .map_err(|e| format!("{url}: {}", common::error::error_chain(&e)))?;
    let status = rsp.status();
    let body = rsp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{url}: reading the answer: {e}"))?
        .to_bytes();
    Ok(JsonResponse { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(now + Duration::from_secs(120))
        );
        let date = parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now).unwrap();
        assert_eq!(
            date.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            1_445_412_480
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
