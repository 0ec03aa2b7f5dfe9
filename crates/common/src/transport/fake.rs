//! A transport for unit tests: answers from a script of canned responses (or a closure)
//! and records every call, so tests can assert what would have been sent to a host.
//! A [`Cassette`] recorded from a real host replays the same conversation offline.
//! A host that answers probes from a table is `common::testing::simulated_host` (feature
//! `testing`).

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{ExecOutput, Transport, TransportError};

/// One call as the engine made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    pub script: String,
    pub stdin: Vec<u8>,
}

/// A recorded conversation: each call with the output the host gave.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cassette {
    pub exchanges: Vec<(Call, ExecOutput)>,
}

type Responder = Box<dyn Fn(&Call) -> ExecOutput + Send + Sync>;

enum Mode {
    /// Answer each call with the next canned output, whatever the script.
    Queue(VecDeque<ExecOutput>),
    /// Replay a cassette: each call must match the recorded one.
    Replay(VecDeque<(Call, ExecOutput)>),
    /// Compute the answer from the call.
    Respond(Responder),
}

pub struct FakeTransport {
    name: String,
    mode: Mutex<Mode>,
    calls: Mutex<Vec<Call>>,
}

impl FakeTransport {
    pub fn with_responses(name: &str, outputs: impl IntoIterator<Item = ExecOutput>) -> Self {
        Self::new(name, Mode::Queue(outputs.into_iter().collect()))
    }

    pub fn replaying(name: &str, cassette: Cassette) -> Self {
        Self::new(name, Mode::Replay(cassette.exchanges.into_iter().collect()))
    }

    pub fn responding(
        name: &str,
        respond: impl Fn(&Call) -> ExecOutput + Send + Sync + 'static,
    ) -> Self {
        Self::new(name, Mode::Respond(Box::new(respond)))
    }

    fn new(name: &str, mode: Mode) -> Self {
        Self {
            name: name.to_string(),
            mode: Mutex::new(mode),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Every call made so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("not poisoned").clone()
    }
}

/// Convenience for canned outputs.
pub fn output(status: i32, stdout: impl Into<Vec<u8>>) -> ExecOutput {
    ExecOutput {
        status,
        stdout: stdout.into(),
        stderr: Vec::new(),
    }
}

#[async_trait]
impl Transport for FakeTransport {
    fn host(&self) -> &str {
        &self.name
    }

    async fn run(&self, script: &str, stdin: &[u8]) -> Result<ExecOutput, TransportError> {
        let call = Call {
            script: script.to_string(),
            stdin: stdin.to_vec(),
        };
        self.calls.lock().expect("not poisoned").push(call.clone());
        let exhausted = || TransportError::Replay {
            host: self.name.clone(),
            reason: format!("no response left for call:\n{script}"),
        };
        match &mut *self.mode.lock().expect("not poisoned") {
            Mode::Queue(queue) => queue.pop_front().ok_or_else(exhausted),
            Mode::Replay(queue) => {
                let (expected, out) = queue.pop_front().ok_or_else(exhausted)?;
                if expected != call {
                    return Err(TransportError::Replay {
                        host: self.name.clone(),
                        reason: format!(
                            "script differs from the recording\n--- recorded\n{}\n+++ actual\n{}",
                            expected.script, call.script
                        ),
                    });
                }
                Ok(out)
            }
            Mode::Respond(respond) => Ok(respond(&call)),
        }
    }
}

/// Wraps a real transport and records the conversation into a [`Cassette`].
pub struct Recorder<T> {
    inner: T,
    cassette: Mutex<Cassette>,
}

impl<T: Transport> Recorder<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            cassette: Mutex::new(Cassette::default()),
        }
    }

    pub fn cassette(&self) -> Cassette {
        self.cassette.lock().expect("not poisoned").clone()
    }
}

#[async_trait]
impl<T: Transport> Transport for Recorder<T> {
    fn host(&self) -> &str {
        self.inner.host()
    }

    async fn run(&self, script: &str, stdin: &[u8]) -> Result<ExecOutput, TransportError> {
        let out = self.inner.run(script, stdin).await?;
        self.cassette.lock().expect("not poisoned").exchanges.push((
            Call {
                script: script.to_string(),
                stdin: stdin.to_vec(),
            },
            out.clone(),
        ));
        Ok(out)
    }
}
