//! Helpers shared by the end-to-end test binaries (each declares `mod support;`).
#![allow(dead_code)]

use std::time::Duration;

use common::transport::ssh::{HostKeyPolicy, SshTarget, SshTransport};

/// The SSH target of a lab host, logging in as `user` (host keys checked strictly).
pub fn target(host: &lab::LabHost, user: &str) -> SshTarget {
    SshTarget {
        name: host.name.clone(),
        destination: host.address.to_string(),
        user: Some(user.to_string()),
        port: Some(host.port),
        identity_file: Some(host.identity_file.clone()),
        known_hosts: Some(host.known_hosts.clone()),
        host_key_policy: HostKeyPolicy::Strict,
        connect_timeout: Some(Duration::from_secs(10)),
        fallback_port: None,
    }
}

/// A connection to a lab host as `user`; panics naming the host when it fails.
pub async fn connect_as(host: &lab::LabHost, user: &str) -> SshTransport {
    SshTransport::connect(target(host, user))
        .await
        .unwrap_or_else(|e| panic!("connect to {} as {user}: {e}", host.name))
}

/// A connection to a lab host as its default user.
pub async fn connect(host: &lab::LabHost) -> SshTransport {
    connect_as(host, &host.user).await
}
