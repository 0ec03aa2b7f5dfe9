//! Test support: Pebble and pebble-challtestsrv as child processes, and a tiny HTTP server
//! for mocking APIs (Cloudflare, a throttling CA). Used by this crate's integration tests,
//! the lab end-to-end tests and the benchmark; not part of the tool's behavior.
//!
//! Everything listens on 127.0.0.1 on free ports; the processes are killed by PID and the
//! temporary directory removed when the [`Pebble`] is dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::declaration::{
    CaConfig, CertificateDeclaration, ChallengeConfig, DnsProviderConfig, DnsProviderKind, KeyType,
};
use common::values::DomainName;

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// Whether the `pebble` and `pebble-challtestsrv` binaries are installed.
pub fn pebble_installed() -> bool {
    ["pebble", "pebble-challtestsrv"].iter().all(|b| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {b}"))
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn wait_for_port(port: u16, child: &mut Child, what: &str, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "{what} exited ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("{what} did not listen on port {port} within 15 s"))
}

/// A declaration for tests (ECDSA P-256, no profile).
pub fn declaration(
    host: &str,
    domains: &[&str],
    ca: CaConfig,
    challenge: ChallengeConfig,
    ssl_dir: &str,
    reload: &str,
) -> CertificateDeclaration {
    let domains: Vec<DomainName> = domains
        .iter()
        .map(|d| DomainName::parse(d).expect("test names are valid"))
        .collect();
    CertificateDeclaration {
        host: host.into(),
        name: domains[0].file_stem(),
        domains,
        challenge,
        key_type: KeyType::EcdsaP256,
        ca,
        email: Some("ops@example.com".into()),
        profile: None,
        ssl_dir: ssl_dir.into(),
        reload: reload.into(),
        schedule: crate::declaration::DEFAULT_SCHEDULE.into(),
    }
}

/// DNS-01 through a challtestsrv management API at `api_url`.
pub fn challtestsrv_dns01(api_url: &str) -> ChallengeConfig {
    ChallengeConfig::Dns01(DnsProviderConfig {
        provider: DnsProviderKind::Challtestsrv,
        api_url: api_url.to_string(),
        token_env: None,
        zone_id: None,
        credentials_file: None,
        propagation_seconds: 0,
    })
}

/// How to start Pebble.
#[derive(Debug, Clone)]
pub struct PebbleOptions {
    /// Port Pebble connects to for HTTP-01 (80 to reach a real host).
    pub http_port: u16,
    /// Address the mock DNS answers A queries with, unless a name was added.
    pub default_ipv4: String,
    /// `PEBBLE_AUTHZREUSE` (percent); 0 makes every order validate its challenges.
    pub authz_reuse: u8,
    /// Require external account binding with this key id and base64url HMAC key.
    pub eab: Option<(String, String)>,
}

impl Default for PebbleOptions {
    fn default() -> Self {
        Self {
            http_port: free_port(),
            default_ipv4: "127.0.0.1".into(),
            authz_reuse: 0,
            eab: None,
        }
    }
}

/// A running Pebble CA with its mock DNS.
pub struct Pebble {
    pub dir: PathBuf,
    /// `https://127.0.0.1:PORT/dir`
    pub directory_url: String,
    /// The root that signs Pebble's own HTTPS certificate (not the issuance root).
    pub api_root: PathBuf,
    /// `https://127.0.0.1:PORT` (roots, intermediates).
    pub management_url: String,
    /// `http://127.0.0.1:PORT` of challtestsrv's management API.
    pub challtestsrv_url: String,
    pub http_port: u16,
    children: Vec<Child>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Pebble {
    pub fn start(options: PebbleOptions) -> Result<Pebble, String> {
        let dir = std::env::temp_dir().join(format!(
            "provision-pebble-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let write = |name: &str, content: &[u8]| {
            std::fs::write(dir.join(name), content).map_err(|e| format!("writing {name}: {e}"))
        };

        // Pebble's HTTPS certificate, signed by a CA the client trusts.
        let ca_key = KeyPair::generate().map_err(|e| e.to_string())?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "provision test API root");
        let ca_cert = ca.self_signed(&ca_key).map_err(|e| e.to_string())?;
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".into()])
            .map_err(|e| e.to_string())?;
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        let leaf_cert = leaf.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
        write("api-root.pem", ca_cert.pem().as_bytes())?;
        write("cert.pem", leaf_cert.pem().as_bytes())?;
        write("key.pem", key.serialize_pem().as_bytes())?;

        let (acme, management, dns, dns_management, tls) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        let mut config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{acme}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": dir.join("cert.pem"),
                "privateKey": dir.join("key.pem"),
                "httpPort": options.http_port,
                "tlsPort": tls,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        if let Some((kid, key)) = &options.eab {
            config["pebble"]["externalAccountBindingRequired"] = true.into();
            config["pebble"]["externalAccountMACKeys"] = serde_json::json!({ kid: key });
        }
        write("pebble-config.json", config.to_string().as_bytes())?;

        let mut pebble = Pebble {
            directory_url: format!("https://127.0.0.1:{acme}/dir"),
            api_root: dir.join("api-root.pem"),
            management_url: format!("https://127.0.0.1:{management}"),
            challtestsrv_url: format!("http://127.0.0.1:{dns_management}"),
            http_port: options.http_port,
            dir: dir.clone(),
            children: Vec::new(),
        };
        let log = |name: &str| {
            std::fs::File::create(dir.join(name)).map_err(|e| format!("creating {name}: {e}"))
        };
        let cts_log = log("challtestsrv.log")?;
        let mut cts = Command::new("pebble-challtestsrv")
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", &options.default_ipv4, "-defaultIPv6", ""])
            .stdin(Stdio::null())
            .stdout(cts_log.try_clone().map_err(|e| e.to_string())?)
            .stderr(cts_log)
            .spawn()
            .map_err(|e| format!("starting pebble-challtestsrv: {e}"))?;
        let ready = wait_for_port(
            dns_management,
            &mut cts,
            "pebble-challtestsrv",
            &dir.join("challtestsrv.log"),
        );
        pebble.children.push(cts);
        ready?;

        let pebble_log = log("pebble.log")?;
        let mut ca_process = Command::new("pebble")
            .args(["-config", &dir.join("pebble-config.json").to_string_lossy()])
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", options.authz_reuse.to_string())
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(pebble_log.try_clone().map_err(|e| e.to_string())?)
            .stderr(pebble_log)
            .spawn()
            .map_err(|e| format!("starting pebble: {e}"))?;
        let ready = wait_for_port(acme, &mut ca_process, "pebble", &dir.join("pebble.log"));
        pebble.children.push(ca_process);
        ready?;
        Ok(pebble)
    }

    /// The CA settings for this Pebble.
    pub fn ca(&self) -> CaConfig {
        CaConfig {
            directory_url: self.directory_url.clone(),
            root_pem: Some(self.api_root.clone()),
            eab: None,
        }
    }

    /// DNS-01 through this Pebble's challtestsrv.
    pub fn dns01(&self) -> ChallengeConfig {
        challtestsrv_dns01(&self.challtestsrv_url)
    }

    /// HTTP-01 on Pebble's HTTP port with the given webroot.
    pub fn http01(&self, webroot: &str) -> ChallengeConfig {
        ChallengeConfig::Http01 {
            port: self.http_port,
            webroot: webroot.to_string(),
        }
    }

    /// A declaration for this CA.
    pub fn declaration(
        &self,
        host: &str,
        domains: &[&str],
        challenge: ChallengeConfig,
        ssl_dir: &str,
        reload: &str,
    ) -> CertificateDeclaration {
        declaration(host, domains, self.ca(), challenge, ssl_dir, reload)
    }

    /// Point `name` at `address` in the mock DNS.
    pub async fn add_a(&self, name: &str, address: &str) -> Result<(), String> {
        crate::challenge::ChalltestsrvDns::new(&self.challtestsrv_url)
            .map_err(|e| e.to_string())?
            .add_a(name, &[address.to_string()])
            .await
            .map_err(|e| e.to_string())
    }

    /// Pebble's issuance root (PEM), which issued certificates chain to.
    pub async fn issuance_root(&self) -> Result<String, String> {
        let client = crate::http::client(Some(&self.api_root)).map_err(|e| e.to_string())?;
        let url = format!("{}/roots/0", self.management_url);
        let rsp = crate::http::send(&client, http::Method::GET, &url, &[], None).await?;
        if !rsp.status.is_success() {
            return Err(format!("{url}: HTTP {}", rsp.status));
        }
        Ok(String::from_utf8_lossy(&rsp.body).into_owned())
    }

    /// Pebble's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pebble.log")).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A request the mock server received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// What the mock server answers.
#[derive(Debug, Clone)]
pub struct MockResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl MockResponse {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Handler = Arc<dyn Fn(&RecordedRequest) -> MockResponse + Send + Sync>;

/// A tiny HTTP/1.1 server on 127.0.0.1 (one request per connection) for API mocks.
pub struct MockServer {
    pub url: String,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MockServer {
    pub async fn start(
        handler: impl Fn(&RecordedRequest) -> MockResponse + Send + Sync + 'static,
    ) -> MockServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let requests: Arc<Mutex<Vec<RecordedRequest>>> = Arc::default();
        let handler: Handler = Arc::new(handler);
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (handler, seen) = (handler.clone(), seen.clone());
                tokio::spawn(async move {
                    let _ = serve_one(stream, handler, seen).await;
                });
            }
        });
        MockServer {
            url,
            requests,
            task,
        }
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().expect("not poisoned").clone()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_one(
    mut stream: tokio::net::TcpStream,
    handler: Handler,
    seen: Arc<Mutex<Vec<RecordedRequest>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let (method, path) = (
        first.next().unwrap_or_default().to_string(),
        first.next().unwrap_or_default().to_string(),
    );
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let request = RecordedRequest {
        method,
        path,
        headers,
        body,
    };
    let response = handler(&request);
    seen.lock().expect("not poisoned").push(request);
    let mut out = format!(
        "HTTP/1.1 {} Mock\r\ncontent-length: {}\r\nconnection: close\r\n",
        response.status,
        response.body.len()
    );
    for (k, v) in &response.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes()).await?;
    stream.write_all(&response.body).await?;
    stream.shutdown().await
}
