//! HTTP-01 answered on the target host's port 80.
//!
//! Who owns the port decides how (read first, as a fact):
//! - nothing listens: the answers are written under the webroot and a tiny temporary
//!   responder (`python3 -m http.server`, a transient systemd unit where systemd runs)
//!   serves them until the order is validated;
//! - something listens (nginx on the host or in Docker): the answers are written into the
//!   webroot that the app's nginx template serves at `/.well-known/acme-challenge/`
//!   ([`crate::NGINX_ACME_LOCATION`]); nginx is never stopped. A local request checks that
//!   the answer is really served before the CA is asked, so a missing `location` or volume
//!   is reported here, with the fix, rather than as a CA error.

use std::sync::Mutex;

use async_trait::async_trait;
use common::facts::{Fact, FactError, Probe, ProbeKey, ProbeOutput, require_success};
use common::shell::quote;
use common::transport::{ExecOutput, Transport};
use instant_acme::ChallengeType;

use super::{ChallengeError, ChallengeSolver, PendingChallenge};

/// Who listens on a TCP port of the host.
#[derive(Debug, Clone)]
pub struct PortListener {
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortUse {
    Free,
    /// Taken; the process names when `ss` could tell them (e.g. `nginx`, `docker-proxy`).
    Taken {
        processes: Vec<String>,
    },
}

impl PortUse {
    pub fn owner(&self) -> String {
        match self {
            PortUse::Free => "nothing".into(),
            PortUse::Taken { processes } if processes.is_empty() => "another process".into(),
            PortUse::Taken { processes } => processes.join(", "),
        }
    }
}

const PROC_MARKER: &str = "@@proc-net-tcp";

impl Fact for PortListener {
    type Value = PortUse;

    fn probe(&self) -> Probe {
        Probe {
            key: ProbeKey::about("listen", format!("tcp:{}", self.port)),
            script: format!(
                "if command -v ss >/dev/null 2>&1; then ss -H -ltnp 'sport = :{port}'; \
                 else echo '{PROC_MARKER}'; awk -v p={hex} 'FNR>1 && $4==\"0A\" {{ n=split($2,a,\":\"); if (a[n]==p) print \"LISTEN\" }}' /proc/net/tcp /proc/net/tcp6 2>/dev/null; true; fi",
                port = self.port,
                hex = format_args!("{:04X}", self.port),
            ),
        }
    }

    fn parse(&self, output: &ProbeOutput) -> Result<PortUse, FactError> {
        let key = self.probe().key.to_string();
        require_success(&key, output)?;
        let lines: Vec<&str> = output
            .stdout
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if lines.first() == Some(&PROC_MARKER) {
            return Ok(if lines.len() > 1 {
                PortUse::Taken {
                    processes: Vec::new(),
                }
            } else {
                PortUse::Free
            });
        }
        if lines.is_empty() {
            return Ok(PortUse::Free);
        }
        let mut processes: Vec<String> = Vec::new();
        for line in &lines {
            if !line.starts_with("LISTEN") {
                return Err(FactError::Parse {
                    key: key.clone(),
                    what: "an `ss -ltnp` line".into(),
                    line: line.to_string(),
                });
            }
            // users:(("nginx",pid=12,fd=6),("nginx",pid=13,fd=6))
            if let Some(users) = line.split("users:(").nth(1) {
                for part in users.split("((").flat_map(|p| p.split("),(")) {
                    if let Some(name) = part.trim_start_matches('(').strip_prefix('"')
                        && let Some((name, _)) = name.split_once('"')
                        && !processes.iter().any(|p| p == name)
                    {
                        processes.push(name.to_string());
                    }
                }
            }
        }
        Ok(PortUse::Taken { processes })
    }
}

/// How the answers were served, for the cleanup.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Responder {
    /// An existing web server serves the webroot.
    Existing,
    /// A transient systemd unit.
    Unit(String),
    /// A background process (hosts without systemd).
    Pid(u32),
}

/// HTTP-01 through a [`Transport`] to the host the names point at.
pub(crate) struct Http01Solver<'a> {
    transport: &'a dyn Transport,
    port: u16,
    webroot: String,
    responder: Mutex<Option<Responder>>,
}

impl<'a> Http01Solver<'a> {
    pub(crate) fn new(transport: &'a dyn Transport, port: u16, webroot: &str) -> Self {
        Self {
            transport,
            port,
            webroot: webroot.trim_end_matches('/').to_string(),
            responder: Mutex::new(None),
        }
    }

    fn challenge_dir(&self) -> String {
        format!("{}/.well-known/acme-challenge", self.webroot)
    }

    fn host(&self) -> String {
        self.transport.host().to_string()
    }

    /// `script` on the host; a lost connection is the host's error.
    async fn run(&self, script: &str) -> Result<ExecOutput, ChallengeError> {
        self.transport
            .run(script, b"")
            .await
            .map_err(|source| ChallengeError::Host {
                host: self.host(),
                source,
            })
    }

    /// A script that ran and failed: `message`, with what it printed on stderr.
    fn script_failed(&self, message: String, out: &ExecOutput) -> ChallengeError {
        ChallengeError::Script {
            host: self.host(),
            message,
            stderr: out.stderr_lossy().trim_end().to_string(),
        }
    }

    fn unit(&self) -> String {
        format!("provision-acme-http-{}", self.port)
    }

    /// The script that writes the answers (and starts a responder when `start` is set).
    pub(crate) fn deploy_script(
        &self,
        challenges: &[PendingChallenge],
        port_use: &PortUse,
    ) -> String {
        let mut s = format!(
            "set -e\numask 022\nw={w}\nd={d}\nmkdir -p \"$d\"\nchmod 755 \"$w\" \"$w/.well-known\" \"$d\"\n",
            w = quote(&self.webroot),
            d = quote(&self.challenge_dir()),
        );
        for c in challenges {
            s.push_str(&format!(
                "printf '%s' {} > \"$d\"/{}\n",
                quote(&c.key_authorization),
                quote(&c.token)
            ));
        }
        match port_use {
            PortUse::Free => {
                s.push_str(&format!(
                    r#"command -v python3 >/dev/null 2>&1 || {{ printf '%s\n' {no_python} >&2; exit 3; }}
if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then
  systemctl stop {unit} >/dev/null 2>&1 || true
  systemctl reset-failed {unit} >/dev/null 2>&1 || true
  systemd-run --quiet --collect --unit={unit} -p RuntimeMaxSec=900 python3 -m http.server --directory "$w" {port} >/dev/null
  echo responder=unit
else
  setsid python3 -m http.server --directory "$w" {port} >/dev/null 2>&1 </dev/null &
  echo "responder=pid:$!"
fi
__listening() {{
  if command -v ss >/dev/null 2>&1; then ss -H -ltn 'sport = :{port}' | grep -q .
  else python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' {port} 2>/dev/null; fi
}}
i=0
until __listening; do
  i=$((i + 1))
  if [ $i -ge 100 ]; then echo 'the temporary responder did not start listening on port {port}' >&2; exit 4; fi
  sleep 0.05
done
"#,
                    port = self.port,
                    unit = self.unit(),
                    no_python = quote(&format!(
                        "nothing listens on port {} and python3 is missing for a temporary responder: install python3, or serve {} at /.well-known/acme-challenge/ with a web server",
                        self.port, self.webroot
                    )),
                ));
            }
            PortUse::Taken { .. } => {
                s.push_str(&self_check_script(self.port, challenges));
            }
        }
        s
    }

    /// The script that removes the answers and stops a temporary responder.
    fn cleanup_script(
        &self,
        challenges: &[PendingChallenge],
        responder: Option<&Responder>,
    ) -> String {
        let mut s = format!("d={}\n", quote(&self.challenge_dir()));
        for c in challenges {
            s.push_str(&format!("rm -f \"$d\"/{}\n", quote(&c.token)));
        }
        match responder {
            Some(Responder::Unit(unit)) => {
                s.push_str(&format!(
                    "systemctl stop {} >/dev/null 2>&1 || true\n",
                    quote(unit)
                ));
            }
            Some(Responder::Pid(pid)) => {
                s.push_str(&format!("kill {pid} 2>/dev/null || true\n"));
            }
            Some(Responder::Existing) | None => {}
        }
        s.push_str("true\n");
        s
    }
}

/// Fetch each answer from the local web server with the name as `Host`; print
/// `@@selfcheck NAME STATUS BODY` for every answer that is not served.
fn self_check_script(port: u16, challenges: &[PendingChallenge]) -> String {
    let mut s = format!(
        r#"__b=$(mktemp)
__fetch() {{
  if command -v curl >/dev/null 2>&1; then
    curl -s -o "$__b" -w '%{{http_code}}' --max-time 5 -H "Host: $1" "http://127.0.0.1:{port}$2" || echo 000
  elif command -v python3 >/dev/null 2>&1; then
    python3 -c '
import http.client, sys
host, path, port, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
try:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", path, headers={{"Host": host}})
    r = c.getresponse()
    open(out, "wb").write(r.read(4096))
    print(r.status)
except Exception as e:
    open(out, "w").write(str(e))
    print("000")
' "$1" "$2" {port} "$__b"
  else
    echo skip
  fi
}}
"#
    );
    for c in challenges {
        let path = format!("/.well-known/acme-challenge/{}", c.token);
        s.push_str(&format!(
            r#"__c=$(__fetch {host} {path})
case "$__c" in
  skip|3??) ;;
  200) if [ "$(cat "$__b")" != {ka} ]; then echo "@@selfcheck {host} 200 $(head -c 200 "$__b" | tr '\n' ' ')"; fi ;;
  *) echo "@@selfcheck {host} $__c $(head -c 200 "$__b" | tr '\n' ' ')" ;;
esac
"#,
            host = quote(c.base_name()),
            path = quote(&path),
            ka = quote(&c.key_authorization),
        ));
    }
    s.push_str("rm -f \"$__b\"\n");
    s
}

fn token_is_safe(token: &str) -> bool {
    !token.is_empty()
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[async_trait]
impl ChallengeSolver for Http01Solver<'_> {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::Http01
    }

    async fn deploy(&self, challenges: &[PendingChallenge]) -> Result<(), ChallengeError> {
        if let Some(bad) = challenges.iter().find(|c| !token_is_safe(&c.token)) {
            return Err(ChallengeError::Script {
                host: self.host(),
                message: format!("the CA sent a token that is not base64url: {:?}", bad.token),
                stderr: String::new(),
            });
        }
        let fact = PortListener { port: self.port };
        let fact_error = |source| ChallengeError::Fact {
            host: self.host(),
            port: self.port,
            source,
        };
        let facts = common::facts::gather(self.transport, &[fact.probe()])
            .await
            .map_err(fact_error)?;
        let port_use = facts.read(&fact).map_err(fact_error)?;
        tracing::debug!(host = %self.host(), port = self.port, owner = %port_use.owner(), "HTTP-01 port");
        let script = self.deploy_script(challenges, &port_use);
        let out = self.run(&script).await?;
        let stdout = out.stdout_lossy();
        let responder = if let Some(pid) = stdout
            .lines()
            .find_map(|l| l.strip_prefix("responder=pid:"))
        {
            pid.trim().parse().ok().map(Responder::Pid)
        } else if stdout.lines().any(|l| l == "responder=unit") {
            Some(Responder::Unit(self.unit()))
        } else if matches!(port_use, PortUse::Taken { .. }) {
            Some(Responder::Existing)
        } else {
            None
        };
        *self.responder.lock().expect("not poisoned") = responder;
        if !out.success() {
            return Err(self.script_failed(
                format!(
                    "putting the answers under {} failed (exit status {})",
                    self.webroot, out.status
                ),
                &out,
            ));
        }
        if let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("@@selfcheck ")) {
            let mut words = line.splitn(3, ' ');
            let name = words.next().unwrap_or_default();
            let status = words.next().unwrap_or_default();
            let body: String = words
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(120)
                .collect();
            let token = challenges
                .iter()
                .find(|c| c.base_name() == name)
                .map(|c| c.token.as_str())
                .unwrap_or_default();
            return Err(ChallengeError::WebrootNotServed {
                host: self.host(),
                port: self.port,
                owner: port_use.owner(),
                url: format!(
                    "http://{name}{}/.well-known/acme-challenge/{token}",
                    if self.port == 80 {
                        String::new()
                    } else {
                        format!(":{}", self.port)
                    }
                ),
                webroot: self.webroot.clone(),
                got: match status {
                    "000" => format!(" (local request failed: {body})"),
                    _ if body.is_empty() => format!(" (it answered {status})"),
                    _ => format!(" (it answered {status}: {body})"),
                },
            });
        }
        Ok(())
    }

    async fn cleanup(&self, challenges: &[PendingChallenge]) -> Result<(), ChallengeError> {
        let responder = self.responder.lock().expect("not poisoned").take();
        let script = self.cleanup_script(challenges, responder.as_ref());
        let out = self.run(&script).await?;
        if !out.success() {
            return Err(self.script_failed("removing the HTTP-01 answers failed".into(), &out));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::testing::ok;
    use common::transport::fake::{FakeTransport, output};

    fn challenge(name: &str, token: &str) -> PendingChallenge {
        PendingChallenge {
            identifier: name.into(),
            token: token.into(),
            key_authorization: format!("{token}.thumb"),
            dns_value: "dns".into(),
        }
    }

    #[test]
    fn port_listener_parses_ss_output() {
        let fact = PortListener { port: 80 };
        assert_eq!(fact.parse(&ok("")).unwrap(), PortUse::Free);
        let nginx = "LISTEN 0      511          0.0.0.0:80        0.0.0.0:*    users:((\"nginx\",pid=1234,fd=6),(\"nginx\",pid=1233,fd=6))\n\
                     LISTEN 0      511             [::]:80           [::]:*    users:((\"nginx\",pid=1234,fd=7),(\"nginx\",pid=1233,fd=7))\n";
        assert_eq!(
            fact.parse(&ok(nginx)).unwrap(),
            PortUse::Taken {
                processes: vec!["nginx".into()]
            }
        );
        let docker = "LISTEN 0 4096 0.0.0.0:80 0.0.0.0:* users:((\"docker-proxy\",pid=881,fd=4))\n";
        assert_eq!(
            fact.parse(&ok(docker)).unwrap().owner(),
            "docker-proxy".to_string()
        );
        // Not root: ss shows no process.
        let anonymous = "LISTEN 0 511 0.0.0.0:80 0.0.0.0:*\n";
        assert_eq!(
            fact.parse(&ok(anonymous)).unwrap().owner(),
            "another process"
        );
    }

    #[test]
    fn port_listener_without_ss_reads_proc() {
        let fact = PortListener { port: 80 };
        assert!(fact.probe().script.contains("0050"));
        assert_eq!(fact.parse(&ok("@@proc-net-tcp\n")).unwrap(), PortUse::Free);
        assert_eq!(
            fact.parse(&ok("@@proc-net-tcp\nLISTEN\n")).unwrap(),
            PortUse::Taken { processes: vec![] }
        );
    }

    #[test]
    fn port_listener_failures_are_errors() {
        let fact = PortListener { port: 80 };
        let failed = common::testing::failed(1, "ss: bad filter");
        assert!(matches!(
            fact.parse(&failed),
            Err(FactError::ProbeFailed { .. })
        ));
        assert!(matches!(
            fact.parse(&ok("garbage line\n")),
            Err(FactError::Parse { .. })
        ));
    }

    #[test]
    fn port_listener_probe_runs_here() {
        let fact = PortListener { port: 1 };
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(fact.probe().script)
            .output()
            .unwrap();
        let parsed = fact
            .parse(&ok(&String::from_utf8_lossy(&out.stdout)))
            .unwrap();
        assert_eq!(parsed, PortUse::Free);
    }

    #[test]
    fn free_port_starts_a_temporary_responder() {
        let t = FakeTransport::with_responses("h", []);
        let solver = Http01Solver::new(&t, 80, "/var/www/acme/");
        let script = solver.deploy_script(&[challenge("a.example", "tok-1")], &PortUse::Free);
        assert!(
            script.contains("printf '%s' tok-1.thumb > \"$d\"/tok-1"),
            "{script}"
        );
        assert!(
            script.contains("d=/var/www/acme/.well-known/acme-challenge"),
            "{script}"
        );
        assert!(script.contains("systemd-run --quiet --collect --unit=provision-acme-http-80"));
        assert!(script.contains("python3 -m http.server --directory \"$w\" 80"));
        assert!(!script.contains("@@selfcheck"));
    }

    /// Regression: the message for a host without python3 dropped every `'` of the
    /// webroot (pasted between single quotes, its quotes stripped); it is one quoted word.
    #[test]
    fn missing_python3_message_names_a_webroot_with_a_quote_as_it_is() {
        let t = FakeTransport::with_responses("h", []);
        let solver = Http01Solver::new(&t, 80, "/srv/o'brien/acme");
        let script = solver.deploy_script(&[], &PortUse::Free);
        let line = script
            .lines()
            .find(|l| l.starts_with("command -v python3"))
            .expect(&script);
        let echo = line
            .split_once("|| { ")
            .and_then(|(_, rest)| rest.split_once(" >&2;"))
            .map(|(echo, _)| echo)
            .expect(line);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(echo)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "nothing listens on port 80 and python3 is missing for a temporary responder: install python3, or serve /srv/o'brien/acme at /.well-known/acme-challenge/ with a web server\n"
        );
    }

    #[test]
    fn taken_port_writes_into_the_webroot_and_checks_it() {
        let t = FakeTransport::with_responses("h", []);
        let solver = Http01Solver::new(&t, 80, "/var/www/acme");
        let script = solver.deploy_script(
            &[challenge("a.example", "tok-1")],
            &PortUse::Taken {
                processes: vec!["nginx".into()],
            },
        );
        assert!(!script.contains("http.server --directory"), "{script}");
        assert!(!script.contains("systemctl stop"), "nginx is never stopped");
        assert!(
            script.contains("__fetch a.example /.well-known/acme-challenge/tok-1"),
            "{script}"
        );
    }

    #[tokio::test]
    async fn deploy_reports_an_unserved_webroot_with_the_fix() {
        let nginx = "LISTEN 0 511 0.0.0.0:80 0.0.0.0:* users:((\"nginx\",pid=1,fd=6))";
        let fact = PortListener { port: 80 };
        let probes = vec![fact.probe()];
        let facts_out = common::facts::render_batch_output(
            &probes,
            &[(fact.probe().key.to_string(), ok(nginx))]
                .into_iter()
                .collect(),
        );
        let t = FakeTransport::with_responses(
            "web-1",
            [
                output(0, facts_out),
                output(0, "@@selfcheck a.example 404 <html>Not Found</html>\n"),
            ],
        );
        let solver = Http01Solver::new(&t, 80, "/var/www/acme");
        let e = solver
            .deploy(&[challenge("a.example", "tok-1")])
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("port 80 is served by nginx"), "{e}");
        assert!(
            e.contains("http://a.example/.well-known/acme-challenge/tok-1"),
            "{e}"
        );
        assert!(e.contains("/var/www/acme:/var/www/acme:ro"), "{e}");
        assert!(e.contains("404"), "{e}");
    }

    #[tokio::test]
    async fn unsafe_tokens_are_refused() {
        let t = FakeTransport::with_responses("h", []);
        let solver = Http01Solver::new(&t, 80, "/var/www/acme");
        let e = solver
            .deploy(&[challenge("a.example", "../../etc/passwd")])
            .await;
        assert!(e.is_err());
        assert!(t.calls().is_empty(), "nothing was sent to the host");
    }

    #[tokio::test]
    async fn cleanup_stops_the_responder_it_started() {
        let t = FakeTransport::with_responses("h", [output(0, "")]);
        let solver = Http01Solver::new(&t, 80, "/var/www/acme");
        *solver.responder.lock().unwrap() = Some(Responder::Pid(4242));
        solver
            .cleanup(&[challenge("a.example", "tok-1")])
            .await
            .unwrap();
        let script = &t.calls()[0].script;
        assert!(script.contains("rm -f \"$d\"/tok-1"), "{script}");
        assert!(script.contains("kill 4242"), "{script}");
    }
}
