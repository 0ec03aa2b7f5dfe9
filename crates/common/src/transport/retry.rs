//! Bounded retries of SSH connections the host refused or reset at connect time.
//!
//! A hardened host rate-limits new SSH connections (`ufw limit`: the 6th new connection
//! from one address within 30 s is rejected, which ssh reports as "Connection
//! refused"); sshd's `MaxStartups` drops excess unauthenticated connections
//! ("Connection reset by peer", "Connection closed by remote host"). Both pass: the
//! default backoff waits 5, 10 and 20 s, 35 s in all, longer than UFW's 30 s window
//! (every attempt counts as a new connection there, so shorter waits would only keep
//! the limit tripped). Anything else (authentication, host keys, timeouts, DNS) fails at
//! once. The sleep is a parameter so that tests never wait on the wall clock.

use std::future::Future;
use std::time::Duration;

/// How a failed connection attempt failed, from ssh's stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectFailure {
    /// `Connection refused`: nothing listens, or a firewall rejects (UFW's `limit`).
    Refused,
    /// Reset or closed by the host before SSH started (sshd's `MaxStartups`).
    Reset,
    /// Anything else: not retried.
    Other,
}

impl ConnectFailure {
    /// Classify ssh's error output.
    pub(crate) fn of(text: &str) -> ConnectFailure {
        if text.contains("Connection refused") {
            ConnectFailure::Refused
        } else if text.contains("Connection reset by peer")
            || (text.contains("kex_exchange_identification")
                && text.contains("Connection closed by remote host"))
        {
            ConnectFailure::Reset
        } else {
            ConnectFailure::Other
        }
    }

    /// Worth another attempt after a pause.
    pub(crate) fn is_transient(self) -> bool {
        self != ConnectFailure::Other
    }
}

/// What the operator is told when refusals outlast the retries.
pub(crate) const RATE_LIMIT_HINT: &str = "likely cause: the host's SSH rate limit (UFW `limit` refuses the 6th new connection from one address within 30 s); wait half a minute and retry, or set `hardening.ssh_rate_limit = false` in the inventory (or sshd is not listening on that port)";

/// Pauses between attempts: one more attempt than pauses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    pub delays: Vec<Duration>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            delays: [5, 10, 20].map(Duration::from_secs).to_vec(),
        }
    }
}

impl Backoff {
    /// No retries.
    pub fn none() -> Self {
        Backoff { delays: Vec::new() }
    }
}

/// How many attempts a retried operation took and how long it paused in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attempts {
    pub count: u32,
    pub waited: Duration,
}

impl Attempts {
    /// e.g. ` (4 attempts over 35 s)`; empty for a single attempt.
    pub fn describe(&self) -> String {
        if self.count <= 1 {
            String::new()
        } else {
            format!(
                " ({} attempts over {} s)",
                self.count,
                self.waited.as_secs()
            )
        }
    }
}

/// Run `attempt` until it succeeds, fails with an error `transient` rejects, or the
/// backoff is used up. With a `budget`, a pause that would end past it is not taken.
/// `sleep` pauses (`tokio::time::sleep` in production).
pub async fn retry<T, E, A, AF, S, SF>(
    backoff: &Backoff,
    budget: Option<Duration>,
    mut attempt: A,
    transient: impl Fn(&E) -> bool,
    mut sleep: S,
) -> (Result<T, E>, Attempts)
where
    A: FnMut() -> AF,
    AF: Future<Output = Result<T, E>>,
    S: FnMut(Duration) -> SF,
    SF: Future<Output = ()>,
{
    let mut attempts = Attempts::default();
    let mut delays = backoff.delays.iter();
    loop {
        attempts.count += 1;
        let result = attempt().await;
        let error = match result {
            Ok(v) => return (Ok(v), attempts),
            Err(e) => e,
        };
        if !transient(&error) {
            return (Err(error), attempts);
        }
        let Some(&delay) = delays.next() else {
            return (Err(error), attempts);
        };
        if budget.is_some_and(|b| attempts.waited + delay > b) {
            return (Err(error), attempts);
        }
        tracing::warn!(
            delay_secs = delay.as_secs(),
            attempt = attempts.count,
            "SSH connection refused or reset (the host's SSH rate limit?); retrying"
        );
        sleep(delay).await;
        attempts.waited += delay;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn classification_of_ssh_errors() {
        for (text, kind) in [
            (
                "ssh: connect to host 10.77.1.2 port 22: Connection refused",
                ConnectFailure::Refused,
            ),
            (
                "kex_exchange_identification: read: Connection reset by peer\r\nConnection reset by 10.77.1.2 port 22",
                ConnectFailure::Reset,
            ),
            (
                "kex_exchange_identification: Connection closed by remote host\r\nConnection closed by 10.77.1.2 port 22",
                ConnectFailure::Reset,
            ),
            (
                "root@10.77.1.2: Permission denied (publickey).",
                ConnectFailure::Other,
            ),
            (
                "ssh: connect to host 10.77.1.2 port 22: Connection timed out",
                ConnectFailure::Other,
            ),
            ("Host key verification failed.", ConnectFailure::Other),
            (
                "Connection closed by 10.77.1.2 port 22",
                ConnectFailure::Other,
            ),
        ] {
            assert_eq!(ConnectFailure::of(text), kind, "{text}");
        }
        assert!(ConnectFailure::Refused.is_transient() && ConnectFailure::Reset.is_transient());
        assert!(!ConnectFailure::Other.is_transient());
    }

    /// Drives `retry` with attempts that fail with the given texts (then succeed), recording
    /// the pauses instead of sleeping.
    fn run(
        backoff: &Backoff,
        budget: Option<Duration>,
        failures: &[&str],
    ) -> (Result<u32, String>, Attempts, Vec<Duration>) {
        let slept = RefCell::new(Vec::new());
        let calls = RefCell::new(0usize);
        let (result, attempts) = block_on(retry(
            backoff,
            budget,
            || {
                let i = *calls.borrow();
                *calls.borrow_mut() += 1;
                let outcome = match failures.get(i) {
                    Some(text) => Err(text.to_string()),
                    None => Ok(i as u32),
                };
                async move { outcome }
            },
            |e: &String| ConnectFailure::of(e).is_transient(),
            |d| {
                slept.borrow_mut().push(d);
                async {}
            },
        ));
        (result, attempts, slept.into_inner())
    }

    /// The futures here never pend (the sleep is recorded, not awaited), so a
    /// current-thread runtime just polls them through.
    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    const REFUSED: &str = "ssh: connect to host 10.77.1.2 port 22: Connection refused";
    const DENIED: &str = "root@10.77.1.2: Permission denied (publickey).";

    #[test]
    fn refused_twice_then_through_after_backing_off() {
        let (result, attempts, slept) = run(&Backoff::default(), None, &[REFUSED, REFUSED]);
        assert_eq!(result, Ok(2));
        assert_eq!(attempts.count, 3);
        assert_eq!(slept, [5, 10].map(Duration::from_secs));
        assert_eq!(attempts.waited, Duration::from_secs(15));
    }

    #[test]
    fn refused_throughout_gives_up_after_outlasting_the_rate_limit_window() {
        let (result, attempts, slept) = run(&Backoff::default(), None, &[REFUSED; 10]);
        assert_eq!(result, Err(REFUSED.to_string()));
        assert_eq!(attempts.count, 4);
        assert_eq!(slept, [5, 10, 20].map(Duration::from_secs));
        assert!(
            attempts.waited > Duration::from_secs(30),
            "past UFW's 30 s window"
        );
        assert_eq!(attempts.describe(), " (4 attempts over 35 s)");
    }

    #[test]
    fn other_failures_are_not_retried() {
        let (result, attempts, slept) = run(&Backoff::default(), None, &[DENIED]);
        assert_eq!(result, Err(DENIED.to_string()));
        assert_eq!(attempts.count, 1);
        assert!(slept.is_empty());
        assert_eq!(attempts.describe(), "");
        let (result, _, slept) = run(&Backoff::none(), None, &[REFUSED]);
        assert!(result.is_err() && slept.is_empty());
    }

    #[test]
    fn a_budget_stops_before_a_pause_that_would_overrun_it() {
        let (result, attempts, slept) = run(
            &Backoff::default(),
            Some(Duration::from_secs(20)),
            &[REFUSED; 10],
        );
        assert!(result.is_err());
        assert_eq!(slept, [5, 10].map(Duration::from_secs), "5 + 10 + 20 > 20");
        assert_eq!(attempts.count, 3);
    }
}
