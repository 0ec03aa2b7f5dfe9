//! Many hosts at once: a bounded number in parallel, each independent of the others.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::engine::{self, Options};
use crate::inventory::HostSpec;
use crate::report::HostReport;
use crate::resource::Resource;
use crate::transport::Transport;
use crate::transport::ssh::{HostKeyPolicy, SshTarget, SshTransport};

/// Progress callbacks (the CLI draws bars or prints lines from these).
pub trait Progress: Send + Sync {
    fn started(&self, _host: &str) {}
    fn phase(&self, _host: &str, _phase: &str) {}
    fn finished(&self, _report: &HostReport) {}
}

/// No progress output.
pub struct Quiet;
impl Progress for Quiet {}

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Hosts handled at once.
    pub forks: usize,
    pub host_key_policy: HostKeyPolicy,
    pub engine: Options,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            forks: 10,
            host_key_policy: HostKeyPolicy::Strict,
            engine: Options::default(),
        }
    }
}

pub fn ssh_target(spec: &HostSpec, policy: HostKeyPolicy) -> SshTarget {
    SshTarget {
        name: spec.name.clone(),
        destination: spec.address.clone(),
        user: spec.connection.user.clone(),
        port: spec.connection.port,
        identity_file: spec.connection.identity_file.clone(),
        known_hosts: spec.connection.known_hosts.clone(),
        host_key_policy: policy,
        connect_timeout: Some(Duration::from_secs(
            spec.connection.connect_timeout.unwrap_or(10),
        )),
    }
}

/// Run `job` on every host over SSH; one host failing does not stop the others.
/// Reports come back in inventory order.
pub async fn run_over_ssh<J>(
    hosts: Vec<HostSpec>,
    job: J,
    options: &RunOptions,
    progress: Arc<dyn Progress>,
) -> Vec<HostReport>
where
    J: Fn(&HostSpec) -> Result<Vec<Box<dyn Resource>>, String> + Send + Sync + 'static,
{
    let job = Arc::new(job);
    let limit = Arc::new(Semaphore::new(options.forks.max(1)));
    let mut tasks = Vec::new();
    for spec in hosts {
        let (job, limit, progress, options) = (
            job.clone(),
            limit.clone(),
            progress.clone(),
            options.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await.expect("semaphore never closed");
            progress.started(&spec.name);
            let started = std::time::Instant::now();
            let mut report = match job(&spec) {
                Err(e) => HostReport::failed(&spec.name, e),
                Ok(resources) => {
                    progress.phase(&spec.name, "connecting");
                    match SshTransport::connect(ssh_target(&spec, options.host_key_policy)).await
                    {
                        Err(e) => HostReport::failed(&spec.name, e.to_string()),
                        Ok(transport) => {
                            progress.phase(&spec.name, "converging");
                            let report =
                                engine::converge(&transport, &resources, &options.engine).await;
                            if let Err(e) = transport.close().await {
                                tracing::warn!(host = %spec.name, error = %e, "closing the connection");
                            }
                            report
                        }
                    }
                }
            };
            if report.elapsed_ms == 0 {
                // Failed before converging (job or connection): still say how long it took.
                report.elapsed_ms = started.elapsed().as_millis() as u64;
            }
            progress.finished(&report);
            report
        }));
    }
    let mut reports = Vec::new();
    for t in tasks {
        reports.push(
            t.await
                .unwrap_or_else(|e| HostReport::failed("?", format!("task panicked: {e}"))),
        );
    }
    reports
}

/// Gather facts only (for `provision facts`), over one transport.
pub async fn gather_facts(
    transport: &dyn Transport,
    resources: &[Box<dyn Resource>],
) -> Result<crate::facts::Facts, crate::facts::FactError> {
    crate::facts::gather(transport, &engine::probes_of(resources)).await
}
