//! The tool runs on the host it manages (e.g. the certificate renewal timer).

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use super::{ExecOutput, Transport, TransportError};

pub struct LocalTransport {
    name: String,
}

impl LocalTransport {
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

#[async_trait]
impl Transport for LocalTransport {
    fn host(&self) -> &str {
        &self.name
    }

    fn folds_probes(&self) -> bool {
        true
    }

    async fn run(&self, script: &str, stdin: &[u8]) -> Result<ExecOutput, TransportError> {
        let io_error = |source| TransportError::Io {
            host: self.name.clone(),
            source,
        };
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(io_error)?;
        let mut input = child.stdin.take().expect("piped stdin");
        let feed = async {
            let r = input.write_all(stdin).await;
            drop(input);
            r
        };
        let (fed, output) = tokio::join!(feed, child.wait_with_output());
        let output = output.map_err(io_error)?;
        if let Err(e) = fed
            && output.status.success()
        {
            return Err(io_error(e));
        }
        Ok(ExecOutput {
            status: output.status.code().unwrap_or(-1),
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }
}
