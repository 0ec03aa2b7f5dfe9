//! `provision facts`: what the probes of the full job read on each host.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::Resource;
use common::facts::{FactError, Facts};
use common::inventory::HostSpec;
use common::report::HostReport;
use common::run::{self, HostWork, Quiet};
use common::transport::Transport;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{Job, JobError, Session, Set};

/// What the probes read on one host, or why they could not.
#[derive(Debug)]
pub struct HostFacts {
    pub host: String,
    pub facts: Result<Facts, HostFactsError>,
}

/// Why a host's facts could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HostFactsError {
    /// The host failed before or while connecting (the runner's message).
    #[error("{0}")]
    Unreachable(String),
    /// The probes could not be gathered, or two of them collide.
    #[error(transparent)]
    Gather(#[from] FactError),
}

impl HostFacts {
    /// As JSON: each probe's status, stdout and stderr, file contents redacted; or the error.
    pub(crate) fn to_json(&self) -> Value {
        match &self.facts {
            Err(e) => json!({ "error": e.to_string() }),
            Ok(facts) => Value::Object(
                facts
                    .iter()
                    .map(|(k, v)| {
                        let probe = json!({
                            "status": v.status,
                            "stdout": redact_probe(k, &v.stdout),
                            "stderr": v.stderr,
                        });
                        (k.to_string(), probe)
                    })
                    .collect(),
            ),
        }
    }
}

/// Every host's facts as one JSON object, keyed by host name.
pub fn facts_json(all: &[HostFacts]) -> Value {
    Value::Object(all.iter().map(|h| (h.host.clone(), h.to_json())).collect())
}

/// Failed when any host's facts could not be read.
pub fn facts_exit_code(all: &[HostFacts]) -> i32 {
    if all.iter().any(|h| h.facts.is_err()) {
        common::report::exit_code::FAILED
    } else {
        common::report::exit_code::CONVERGED
    }
}

/// Probe output safe to show: file contents are replaced by their hash (they may be secrets).
pub(crate) fn redact_probe(key: &str, stdout: &str) -> String {
    if !key.starts_with("path:") {
        return stdout.to_string();
    }
    let mut lines = stdout.lines();
    let head = lines.next().unwrap_or_default().to_string();
    match lines.next() {
        Some(content) => {
            let digest = Sha256::digest(content.as_bytes());
            let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
            format!("{head}\n<content redacted, base64 sha256 {hex}…>\n")
        }
        None => format!("{head}\n"),
    }
}

/// Each host's resources, composed once before anything connects (composing can run the
/// app's vault commands, which must not run twice).
struct Gather(Mutex<BTreeMap<String, Vec<Box<dyn Resource>>>>);

#[async_trait]
impl HostWork for Gather {
    type Ready = Vec<Box<dyn Resource>>;
    type Output = HostFacts;

    fn phase(&self) -> &'static str {
        "gathering facts"
    }

    fn prepare(&self, spec: &HostSpec) -> Result<Self::Ready, String> {
        let mut composed = self.0.lock().expect("not poisoned");
        composed
            .remove(&spec.name)
            .ok_or_else(|| format!("{}: no resources composed", spec.name))
    }

    async fn run(&self, spec: &HostSpec, resources: Self::Ready, t: &dyn Transport) -> HostFacts {
        HostFacts {
            host: spec.name.clone(),
            facts: run::gather_facts(t, &resources)
                .await
                .map_err(HostFactsError::from),
        }
    }

    fn failed(&self, spec: &HostSpec, error: String) -> HostFacts {
        HostFacts {
            host: spec.name.clone(),
            facts: Err(HostFactsError::Unreachable(error)),
        }
    }

    fn finish(&self, output: &mut HostFacts, _: Duration) -> HostReport {
        match &output.facts {
            Ok(_) => HostReport::new(&output.host),
            Err(e) => HostReport::failed(&output.host, e.to_string()),
        }
    }
}

/// The facts of every selected host, in inventory order. A host whose job cannot be
/// composed stops the command before anything connects.
pub async fn facts(session: &Session) -> Result<Vec<HostFacts>, JobError> {
    let hosts = session.hosts()?;
    let job = Job::new(Set::All);
    let mut composed = BTreeMap::new();
    for spec in &hosts {
        let resources = job.resources(spec).map_err(JobError::Compose)?;
        composed.insert(spec.name.clone(), resources);
    }
    let gather = Arc::new(Gather(Mutex::new(composed)));
    let (forks, connector) = (session.run.forks, session.connector.clone());
    Ok(run::for_each_host(hosts, forks, connector, Arc::new(Quiet), gather).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::run::Connector;
    use common::transport::TransportError;

    /// Every host is a simulated host that knows no probe (each answers exit 1).
    struct Simulated;

    #[async_trait]
    impl Connector for Simulated {
        async fn connect(&self, spec: &HostSpec) -> Result<Box<dyn Transport>, TransportError> {
            let none = Default::default();
            Ok(Box::new(common::testing::simulated_host(
                &spec.name,
                none,
                Default::default(),
            )))
        }
    }

    /// `facts` through the library, no SSH: every selected host, in inventory order, each
    /// with the probes of its full job.
    #[tokio::test]
    async fn facts_of_every_host_in_inventory_order_over_the_session_connector() {
        let dir = std::env::temp_dir().join(format!("jobs-facts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let inventory = dir.join("inventory.toml");
        let hosts =
            "[hosts.web-2]\naddress = \"10.77.0.2\"\n[hosts.web-1]\naddress = \"10.77.0.1\"\n";
        std::fs::write(&inventory, hosts).unwrap();
        let mut session = Session::over_ssh(inventory, false);
        session.connector = Arc::new(Simulated);
        let all = facts(&session).await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let names: Vec<&str> = all.iter().map(|h| h.host.as_str()).collect();
        assert_eq!(names, ["web-1", "web-2"], "the inventory's order (by name)");
        let web2 = all[1].facts.as_ref().unwrap();
        let probe = web2
            .raw("path:/etc/ssh/sshd_config")
            .expect("the sshd probe ran");
        assert_eq!(probe.status, 1, "the simulated host knows no probe");
        assert_eq!(facts_exit_code(&all), 0);
    }

    #[test]
    fn file_contents_are_redacted_and_other_probes_are_not() {
        let file = redact_probe("path:/etc/app/.env", "0600 root root\nU0VDUkVUPXg=\n");
        assert!(
            file.starts_with("0600 root root\n<content redacted"),
            "{file}"
        );
        assert!(!file.contains("U0VDUkVUPXg="), "{file}");
        assert_eq!(redact_probe("path:/missing", "absent\n"), "absent\n");
        assert_eq!(redact_probe("os-release", "ID=debian\n"), "ID=debian\n");
    }
}
