//! Many hosts at once: a bounded number in parallel, each independent of the others.
//!
//! [`for_each_host`] is the one runner of every multi-host command (`up`, `check`,
//! `harden`, `facts`, `certs …`): it prepares a host's work without I/O, opens the
//! connection through a [`Connector`] (the one transport factory), runs the work, closes
//! the connection and reports progress. What the work is ([`HostWork`]) differs per command.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Semaphore;

use crate::bootstrap;
use crate::engine::{self, Options};
use crate::inventory::HostSpec;
use crate::report::{HostOutcome, HostReport};
use crate::resource::Resource;
use crate::transport::ssh::{HostKeyPolicy, SshTarget, SshTransport};
use crate::transport::{Transport, TransportError};

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

/// Opens the connection to an inventory host: the one place a command gets a transport.
#[async_trait]
pub trait Connector: Send + Sync {
    async fn connect(&self, spec: &HostSpec) -> Result<Box<dyn Transport>, TransportError>;
}

/// Connects with the system `ssh` ([`SshTransport`]), settings from the inventory.
#[derive(Debug, Clone, Copy, Default)]
pub struct SshConnector {
    pub host_key_policy: HostKeyPolicy,
}

#[async_trait]
impl Connector for SshConnector {
    /// As the inventory's `user`; when that login is refused and the host has a
    /// `bootstrap_user`, as that (after checking the deploy user will take this tool's key;
    /// see [`crate::bootstrap`]).
    async fn connect(&self, spec: &HostSpec) -> Result<Box<dyn Transport>, TransportError> {
        let target = ssh_target(spec, self.host_key_policy);
        let refused = match SshTransport::connect(target.clone()).await {
            Ok(t) => return Ok(Box::new(t)),
            Err(e) if bootstrap::login_refused(&e) => e,
            Err(e) => return Err(e),
        };
        let Some(first_contact) = bootstrap::bootstrap_login(spec) else {
            return Err(refused);
        };
        let keys = bootstrap::local_login_keys(spec.connection.identity_file.as_deref());
        bootstrap::check_deploy_keys(spec, &keys).map_err(|why| TransportError::Connect {
            host: spec.name.clone(),
            reason: format!("{refused}; not bootstrapping as {first_contact}: {why}"),
        })?;
        tracing::info!(
            host = %spec.name,
            "{} refused the login; first contact as {first_contact}",
            target.user.as_deref().unwrap_or("the inventory's user")
        );
        let transport = SshTransport::connect(SshTarget {
            user: Some(first_contact.to_string()),
            ..target
        })
        .await?;
        Ok(Box::new(transport))
    }
}

/// How to reach a host. When the inventory moves sshd (`hardening.ssh_port` differs from
/// the connection's port), that port is tried first — where a converged host listens —
/// and the inventory's port (22 when unset) second, for a host not moved yet.
pub(crate) fn ssh_target(spec: &HostSpec, policy: HostKeyPolicy) -> SshTarget {
    let moved_to = spec
        .vars
        .hardening
        .as_ref()
        .filter(|h| h.enabled != Some(false) && h.ssh != Some(false))
        .and_then(|h| h.ssh_port);
    let inventory_port = spec.connection.port;
    let (port, fallback_port) = match moved_to {
        Some(p) if Some(p) != inventory_port => (Some(p), Some(inventory_port.unwrap_or(22))),
        _ => (inventory_port, None),
    };
    SshTarget {
        name: spec.name.clone(),
        destination: spec.address.clone(),
        user: spec.connection.user.clone(),
        port,
        fallback_port,
        identity_file: spec.connection.identity_file.clone(),
        known_hosts: spec.connection.known_hosts.clone(),
        host_key_policy: policy,
        connect_timeout: Some(Duration::from_secs(
            spec.connection.connect_timeout.unwrap_or(10),
        )),
    }
}

/// What one command does on one host.
#[async_trait]
pub trait HostWork: Send + Sync + 'static {
    /// What [`HostWork::prepare`] hands to [`HostWork::run`].
    type Ready: Send;
    /// The result for one host.
    type Output: Send + 'static;

    /// The progress phase shown while [`HostWork::run`] works.
    fn phase(&self) -> &'static str;

    /// Pure preparation, before connecting; an error fails the host without connecting.
    fn prepare(&self, spec: &HostSpec) -> Result<Self::Ready, String>;

    /// The work, over an open connection.
    async fn run(
        &self,
        spec: &HostSpec,
        ready: Self::Ready,
        transport: &dyn Transport,
    ) -> Self::Output;

    /// The result of a host that failed before or while connecting.
    fn failed(&self, spec: &HostSpec, error: String) -> Self::Output;

    /// Record how long the host took; return its report for the progress display.
    fn finish(&self, output: &mut Self::Output, elapsed: Duration) -> HostReport;
}

/// Run `work` on every host, at most `forks` at once; one host failing does not stop the
/// others. Results come back in the order of `hosts`.
pub async fn for_each_host<W: HostWork>(
    hosts: Vec<HostSpec>,
    forks: usize,
    connector: Arc<dyn Connector>,
    progress: Arc<dyn Progress>,
    work: Arc<W>,
) -> Vec<W::Output> {
    let limit = Arc::new(Semaphore::new(forks.max(1)));
    let mut tasks = Vec::new();
    for spec in hosts {
        let (work, limit, progress, connector) = (
            work.clone(),
            limit.clone(),
            progress.clone(),
            connector.clone(),
        );
        let name = spec.clone();
        let task = tokio::spawn(async move {
            let _permit = limit.acquire_owned().await.expect("semaphore never closed");
            progress.started(&spec.name);
            let started = Instant::now();
            let mut output = on_host(&*work, &spec, &*connector, &*progress).await;
            progress.finished(&work.finish(&mut output, started.elapsed()));
            output
        });
        tasks.push((name, task));
    }
    let mut outputs = Vec::new();
    for (spec, task) in tasks {
        outputs.push(
            task.await
                .unwrap_or_else(|e| work.failed(&spec, format!("task panicked: {e}"))),
        );
    }
    outputs
}

async fn on_host<W: HostWork>(
    work: &W,
    spec: &HostSpec,
    connector: &dyn Connector,
    progress: &dyn Progress,
) -> W::Output {
    let ready = match work.prepare(spec) {
        Ok(ready) => ready,
        Err(e) => return work.failed(spec, e),
    };
    progress.phase(&spec.name, "connecting");
    let transport = match connector.connect(spec).await {
        Ok(t) => t,
        Err(e) => return work.failed(spec, e.to_string()),
    };
    progress.phase(&spec.name, work.phase());
    let output = work.run(spec, ready, &*transport).await;
    if let Err(e) = transport.close().await {
        tracing::warn!(host = %spec.name, error = %e, "closing the connection");
    }
    output
}

/// Converging a list of resources (what `up`, `check`, `harden` and `certs schedule` do):
/// `resources` composes the list for a host.
pub struct Converge<J> {
    pub resources: J,
    pub engine: Options,
    /// For the second pass of a bootstrap (see [`crate::bootstrap`]).
    pub connector: Arc<dyn Connector>,
}

#[async_trait]
impl<J> HostWork for Converge<J>
where
    J: Fn(&HostSpec) -> Result<Vec<Box<dyn Resource>>, String> + Send + Sync + 'static,
{
    type Ready = Vec<Box<dyn Resource>>;
    type Output = HostReport;

    fn phase(&self) -> &'static str {
        "converging"
    }

    fn prepare(&self, spec: &HostSpec) -> Result<Self::Ready, String> {
        (self.resources)(spec)
    }

    async fn run(
        &self,
        spec: &HostSpec,
        resources: Self::Ready,
        transport: &dyn Transport,
    ) -> HostReport {
        let report = engine::converge(transport, &resources, &self.engine).await;
        let final_user = spec.connection.user.as_deref();
        let bootstrapped = final_user.is_some() && transport.login() != final_user;
        if !bootstrapped
            || report.outcome == HostOutcome::Failed
            || self.engine.mode == crate::mode::Mode::Check
        {
            return report;
        }
        self.as_final_user(spec, transport, report).await
    }

    fn failed(&self, spec: &HostSpec, error: String) -> HostReport {
        HostReport::failed(&spec.name, error)
    }

    fn finish(&self, report: &mut HostReport, elapsed: Duration) -> HostReport {
        if report.elapsed_ms == 0 {
            // Failed before converging (job or connection): still say how long it took.
            report.elapsed_ms = elapsed.as_millis() as u64;
        }
        report.clone()
    }
}

impl<J> Converge<J>
where
    J: Fn(&HostSpec) -> Result<Vec<Box<dyn Resource>>, String> + Send + Sync + 'static,
{
    /// The second pass of a bootstrap: a NEW login as the final user (only that user, no
    /// fallback) proves its key and `sudo -n`; the same job converges again over it, which
    /// turns root login off where the inventory asks. A refused login leaves the host as
    /// the first pass made it — reachable as before — and names what restricts logins.
    async fn as_final_user(
        &self,
        spec: &HostSpec,
        first: &dyn Transport,
        mut report: HostReport,
    ) -> HostReport {
        let user = spec.connection.user.clone().unwrap_or_default();
        let via = first.login().unwrap_or("the bootstrap user").to_string();
        let mut final_only = spec.clone();
        final_only.connection.bootstrap_user = None;
        let second = match self.connector.connect(&final_only).await {
            Ok(t) => t,
            Err(e) => {
                let restrictions = first
                    .run(bootstrap::LOGIN_RESTRICTIONS, b"")
                    .await
                    .map(|o| o.stdout_lossy().trim().to_string())
                    .unwrap_or_default();
                let hint = if restrictions.is_empty() {
                    String::new()
                } else {
                    format!("; sshd restricts logins here:\n{restrictions}")
                };
                report.outcome = HostOutcome::Failed;
                report.error = Some(format!(
                    "created {user} as {via}, but a new login as {user} was refused, so the run stopped with {via}'s access unchanged (root login not turned off): {e}{hint}"
                ));
                return report;
            }
        };
        let outcome = match (self.resources)(spec) {
            Ok(resources) => engine::converge(&*second, &resources, &self.engine).await,
            Err(e) => HostReport::failed(&spec.name, e),
        };
        let _ = second.close().await;
        merge_passes(report, outcome, &via, &user)
    }
}

/// One report of a bootstrap's two passes: what either changed is changed; a failure of
/// the second fails the host.
fn merge_passes(mut first: HostReport, second: HostReport, via: &str, user: &str) -> HostReport {
    for r in &second.resources {
        if r.status == crate::report::ResourceStatus::Changed
            && let Some(mine) = first.resources.iter_mut().find(|m| m.id == r.id)
        {
            mine.status = r.status;
            mine.detail = format!("{} (then as {user}: {})", mine.detail, r.detail);
            mine.actions.extend(r.actions.iter().cloned());
            mine.diffs.extend(r.diffs.iter().cloned());
        }
    }
    first.round_trips += second.round_trips;
    first.notes.extend(second.notes.iter().cloned());
    first.elapsed_ms += second.elapsed_ms;
    if second.outcome == HostOutcome::Failed {
        first.outcome = HostOutcome::Failed;
        first.error = Some(format!(
            "bootstrapped as {via}; the pass as {user} failed: {}",
            second.error.unwrap_or_default()
        ));
    }
    first
}

/// Converge the resources `job` composes on every host; reports in inventory order.
pub async fn converge_all<J>(
    hosts: Vec<HostSpec>,
    job: J,
    options: &RunOptions,
    connector: Arc<dyn Connector>,
    progress: Arc<dyn Progress>,
) -> Vec<HostReport>
where
    J: Fn(&HostSpec) -> Result<Vec<Box<dyn Resource>>, String> + Send + Sync + 'static,
{
    let work = Converge {
        resources: job,
        engine: options.engine.clone(),
        connector: connector.clone(),
    };
    for_each_host(hosts, options.forks, connector, progress, Arc::new(work)).await
}

/// Gather facts only (for `provision facts`), over one transport.
pub async fn gather_facts(
    transport: &dyn Transport,
    resources: &[Box<dyn Resource>],
) -> Result<crate::facts::Facts, crate::facts::FactError> {
    crate::facts::gather(transport, &engine::probes_of(resources)?).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::fake::{FakeTransport, output};

    /// Connects every host to a fake transport that answers `ok`, except `down`.
    struct FakeConnector;

    #[async_trait]
    impl Connector for FakeConnector {
        async fn connect(&self, spec: &HostSpec) -> Result<Box<dyn Transport>, TransportError> {
            if spec.name == "down" {
                return Err(TransportError::Connect {
                    host: spec.name.clone(),
                    reason: "no route".into(),
                });
            }
            Ok(Box::new(FakeTransport::responding(&spec.name, |_| {
                output(0, "ok")
            })))
        }
    }

    struct Echo;

    #[async_trait]
    impl HostWork for Echo {
        type Ready = ();
        type Output = Result<String, String>;
        fn phase(&self) -> &'static str {
            "echoing"
        }
        fn prepare(&self, spec: &HostSpec) -> Result<(), String> {
            if spec.name == "bad" {
                Err("bad job".into())
            } else {
                Ok(())
            }
        }
        async fn run(&self, spec: &HostSpec, _: (), t: &dyn Transport) -> Self::Output {
            let out = t.run("echo", b"").await.map_err(|e| e.to_string())?;
            Ok(format!("{}: {}", spec.name, out.stdout_lossy()))
        }
        fn failed(&self, _spec: &HostSpec, error: String) -> Self::Output {
            Err(error)
        }
        fn finish(&self, output: &mut Self::Output, _: Duration) -> HostReport {
            match output {
                Ok(_) => HostReport::new("x"),
                Err(e) => HostReport::failed("x", e.clone()),
            }
        }
    }

    fn spec(name: &str) -> HostSpec {
        HostSpec {
            name: name.into(),
            address: "10.77.0.1".into(),
            connection: Default::default(),
            groups: Vec::new(),
            vars: Default::default(),
            origins: Default::default(),
        }
    }

    #[tokio::test]
    async fn one_host_failing_to_prepare_or_connect_leaves_the_others_in_inventory_order() {
        let hosts = ["a", "bad", "down", "b"].map(spec).to_vec();
        let out = for_each_host(
            hosts,
            2,
            Arc::new(FakeConnector),
            Arc::new(Quiet),
            Arc::new(Echo),
        )
        .await;
        assert_eq!(
            out,
            vec![
                Ok("a: ok".to_string()),
                Err("bad job".to_string()),
                Err("could not connect to down: no route".to_string()),
                Ok("b: ok".to_string()),
            ]
        );
    }
}
