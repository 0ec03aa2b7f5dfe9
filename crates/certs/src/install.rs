//! Installing a certificate on its host through the engine: `fullchain.pem` (0644) and
//! `privkey.pem` (0600, never shown in diffs), written atomically, and the reload hook run
//! only when one of them changed.

use common::facts::builtin::{PathKind, PathState, PathStateValue};
use common::facts::{Fact, Facts, Probe};
use common::resource::{Action, Plan, Resource, ResourceId};
use common::resources::{File, Trigger};

use crate::declaration::CertificateDeclaration;
use crate::info::CertParseError;
use crate::state::StoredCertificate;
use common::PlanError;

/// Paths of the installed files.
pub(crate) fn installed_paths(declaration: &CertificateDeclaration) -> (String, String) {
    let dir = declaration.ssl_dir.trim_end_matches('/');
    (format!("{dir}/fullchain.pem"), format!("{dir}/privkey.pem"))
}

/// The resources that put `certificate` in place on the declaration's host.
pub fn install_resources(
    declaration: &CertificateDeclaration,
    certificate: &StoredCertificate,
) -> Vec<Box<dyn Resource>> {
    let (chain_path, key_path) = installed_paths(declaration);
    let chain = File::new(&chain_path, certificate.fullchain.clone()).mode(0o644);
    let key = File::new(&key_path, certificate.privkey.clone())
        .mode(0o600)
        .sensitive();
    let hook = reload_hook(declaration, vec![chain.id(), key.id()]);
    vec![Box::new(chain), Box::new(key), Box::new(hook)]
}

/// The declaration's reload hook, run when one of the `installed` files changed in the
/// same run; nothing else.
pub(crate) fn reload_hook(
    declaration: &CertificateDeclaration,
    installed: Vec<ResourceId>,
) -> Trigger {
    Trigger::new(
        ResourceId::of("certs-reload", &declaration.ssl_dir),
        installed,
        vec![Action::run(
            format!(
                "reload after the certificate in {} changed",
                declaration.ssl_dir
            ),
            declaration.reload.clone(),
        )],
    )
    .because("the reload hook runs only when the certificate files change")
}

/// A self-signed pair put in the app's `ssl/` when neither file is there, so that the
/// app's nginx starts at once (`docker compose up -d`) before the real certificate is
/// obtained. Whatever is already there is left alone: a real certificate is never
/// replaced by a placeholder.
#[derive(Debug, Clone)]
pub struct Placeholder {
    chain: File,
    key: File,
    ssl_dir: String,
}

impl Placeholder {
    /// The [`ResourceId::kind`] of every placeholder's id.
    pub const KIND: &str = "certs-placeholder";

    /// A placeholder for `declaration`: a fresh self-signed certificate for its names.
    pub fn new(declaration: &CertificateDeclaration) -> Result<Self, rcgen::Error> {
        let now = time::OffsetDateTime::now_utc();
        let pair = crate::selfsigned::self_signed(declaration, now)?;
        let (chain_path, key_path) = installed_paths(declaration);
        Ok(Self {
            chain: File::new(chain_path, pair.fullchain).mode(0o644),
            key: File::new(key_path, pair.privkey).mode(0o600).sensitive(),
            ssl_dir: declaration.ssl_dir.clone(),
        })
    }
}

impl Resource for Placeholder {
    fn id(&self) -> ResourceId {
        ResourceId::of(Self::KIND, &self.ssl_dir)
    }

    fn probes(&self) -> Vec<Probe> {
        vec![
            PathState::new(&self.chain.path).probe(),
            PathState::new(&self.key.path).probe(),
        ]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let chain = facts.read(&PathState::new(&self.chain.path))?;
        let key = facts.read(&PathState::new(&self.key.path))?;
        let absent = |s: &PathStateValue| s.kind == PathKind::Absent;
        if !absent(&chain) || !absent(&key) {
            return Ok(Plan::noop(format!(
                "a certificate is in {} (not replaced by a placeholder)",
                self.ssl_dir
            )));
        }
        let mut actions = Vec::new();
        for (file, current) in [(&self.chain, &chain), (&self.key, &key)] {
            if let Some((_, action)) = file.changes(current)? {
                actions.push(action);
            }
        }
        Ok(Plan::change(
            format!(
                "put a self-signed placeholder in {} until the real certificate is installed",
                self.ssl_dir
            ),
            actions,
        ))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyCheckError {
    #[error("the certificate does not parse")]
    Certificate(#[from] CertParseError),
    #[error("the private key does not parse: {0}")]
    Key(rcgen::Error),
}

/// Whether the private key belongs to the first certificate of the chain.
pub fn key_matches(certificate: &StoredCertificate) -> Result<bool, KeyCheckError> {
    let key_pem = String::from_utf8_lossy(&certificate.privkey);
    let key = rcgen::KeyPair::from_pem(&key_pem).map_err(KeyCheckError::Key)?;
    let mut first = None;
    for block in x509_parser::pem::Pem::iter_from_buffer(&certificate.fullchain) {
        let block = block.map_err(|e| CertParseError::Pem(e.to_string()))?;
        if block.label == "CERTIFICATE" {
            first = Some(block);
            break;
        }
    }
    let first = first.ok_or(CertParseError::NoCertificate)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&first.contents)
        .map_err(|e| CertParseError::X509(e.to_string()))?;
    Ok(cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw())
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::engine::{Mode, Options, converge};
    use common::report::ResourceStatus;
    use common::transport::local::LocalTransport;

    fn declaration(ssl_dir: &str, reload: &str) -> CertificateDeclaration {
        let mut d = crate::selfsigned::tests::declaration();
        d.ssl_dir = ssl_dir.into();
        d.reload = reload.into();
        d
    }

    #[test]
    fn resources_are_two_files_and_a_hook_watching_them() {
        let d = declaration("/opt/app/ssl/", "systemctl reload nginx");
        let cert = StoredCertificate {
            fullchain: b"CHAIN".to_vec(),
            privkey: b"KEY".to_vec(),
        };
        let r = install_resources(&d, &cert);
        let ids: Vec<String> = r.iter().map(|r| r.id().to_string()).collect();
        assert_eq!(
            ids,
            [
                "file:/opt/app/ssl/fullchain.pem",
                "file:/opt/app/ssl/privkey.pem",
                "certs-reload:/opt/app/ssl/"
            ]
        );
        assert_eq!(r[2].watches(), [r[0].id(), r[1].id()]);
        assert_eq!(
            r[2].on_watched_change(&Facts::default()).unwrap(),
            [Action::run(
                "reload after the certificate in /opt/app/ssl/ changed",
                "systemctl reload nginx"
            )]
        );
        assert_eq!(
            r[2].plan(&Facts::default()).unwrap(),
            Plan::noop("the reload hook runs only when the certificate files change")
        );
    }

    #[tokio::test]
    async fn local_install_sets_modes_and_reloads_only_on_change() {
        let tmp = tempfile::tempdir().unwrap();
        let ssl = tmp.path().join("ssl");
        let marker = tmp.path().join("reloads");
        let d = declaration(
            ssl.to_str().unwrap(),
            &format!("echo reloaded >> {}", marker.display()),
        );
        let cert = crate::selfsigned::self_signed(&d, time::OffsetDateTime::now_utc()).unwrap();
        let transport = LocalTransport::new("local");
        let owner = std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap();
        let group = std::process::Command::new("id")
            .arg("-gn")
            .output()
            .unwrap();
        let (owner, group) = (
            String::from_utf8_lossy(&owner.stdout).trim().to_string(),
            String::from_utf8_lossy(&group.stdout).trim().to_string(),
        );
        // Files owned by whoever runs the test (root in CI).
        let resources = |c: &StoredCertificate| -> Vec<Box<dyn Resource>> {
            let (chain_path, key_path) = installed_paths(&d);
            let chain = File::new(&chain_path, c.fullchain.clone())
                .mode(0o644)
                .owned_by(&owner, &group);
            let key = File::new(&key_path, c.privkey.clone())
                .mode(0o600)
                .owned_by(&owner, &group)
                .sensitive();
            let hook = reload_hook(&d, vec![chain.id(), key.id()]);
            vec![Box::new(chain), Box::new(key), Box::new(hook)]
        };
        let options = Options {
            mode: Mode::Apply,
            ..Options::default()
        };
        let first = converge(&transport, &resources(&cert), &options).await;
        assert!(first.error.is_none(), "{:?}", first.error);
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| std::fs::metadata(ssl.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("fullchain.pem"), 0o644);
        assert_eq!(mode("privkey.pem"), 0o600);
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "reloaded\n");

        let again = converge(&transport, &resources(&cert), &options).await;
        assert!(again.error.is_none(), "{:?}", again.error);
        assert!(
            again
                .resources
                .iter()
                .all(|r| r.status != ResourceStatus::Changed)
        );
        assert_eq!(
            std::fs::read_to_string(&marker).unwrap(),
            "reloaded\n",
            "no reload without a change"
        );

        let newer = crate::selfsigned::self_signed(&d, time::OffsetDateTime::now_utc()).unwrap();
        let third = converge(&transport, &resources(&newer), &options).await;
        assert!(third.error.is_none(), "{:?}", third.error);
        assert_eq!(
            std::fs::read_to_string(&marker).unwrap(),
            "reloaded\nreloaded\n"
        );
        assert_eq!(
            std::fs::read(ssl.join("fullchain.pem")).unwrap(),
            newer.fullchain
        );
    }

    /// Issue 13: nginx needs `ssl/fullchain.pem` before the first ACME certificate exists.
    /// The placeholder is a matching self-signed pair when neither file is there, and never
    /// replaces what is (a real certificate, or even half a pair).
    #[tokio::test]
    async fn placeholder_fills_an_empty_ssl_dir_and_never_replaces_a_certificate() {
        let tmp = tempfile::tempdir().unwrap();
        let ssl = tmp.path().join("ssl");
        let d = declaration(ssl.to_str().unwrap(), "true");
        let transport = LocalTransport::new("local");
        let options = Options {
            mode: Mode::Apply,
            ..Options::default()
        };
        let placeholder =
            || -> Vec<Box<dyn Resource>> { vec![Box::new(Placeholder::new(&d).unwrap())] };

        let checking = Options {
            mode: Mode::Check,
            ..Options::default()
        };
        let check = converge(&transport, &placeholder(), &checking).await;
        assert_eq!(
            check.resources[0].status,
            ResourceStatus::Pending,
            "{check:?}"
        );
        assert!(!ssl.exists(), "check mode writes nothing");

        let first = converge(&transport, &placeholder(), &options).await;
        assert!(first.error.is_none(), "{:?}", first.error);
        assert_eq!(first.resources[0].status, ResourceStatus::Changed);
        let written = StoredCertificate {
            fullchain: std::fs::read(ssl.join("fullchain.pem")).unwrap(),
            privkey: std::fs::read(ssl.join("privkey.pem")).unwrap(),
        };
        assert!(
            key_matches(&written).unwrap(),
            "the placeholder is a matching pair"
        );
        let info = crate::info::CertInfo::from_pem(&written.fullchain).unwrap();
        assert!(info.is_self_signed());
        assert!(
            info.names.iter().any(|n| n == "dev.example"),
            "{:?}",
            info.names
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| std::fs::metadata(ssl.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode("fullchain.pem"), mode("privkey.pem")), (0o644, 0o600));

        // A new placeholder (another key) does not replace the one in place.
        let again = converge(&transport, &placeholder(), &options).await;
        assert_eq!(again.resources[0].status, ResourceStatus::Ok, "{again:?}");
        assert_eq!(
            std::fs::read(ssl.join("privkey.pem")).unwrap(),
            written.privkey
        );

        // Half a pair is left for the certificate step to replace, not papered over.
        std::fs::remove_file(ssl.join("privkey.pem")).unwrap();
        let half = converge(&transport, &placeholder(), &options).await;
        assert_eq!(half.resources[0].status, ResourceStatus::Ok, "{half:?}");
        assert!(!ssl.join("privkey.pem").exists());
        assert_eq!(
            std::fs::read(ssl.join("fullchain.pem")).unwrap(),
            written.fullchain
        );
    }

    #[test]
    fn mismatched_key_is_detected() {
        let d = crate::selfsigned::tests::declaration();
        let a = crate::selfsigned::self_signed(&d, time::OffsetDateTime::now_utc()).unwrap();
        let b = crate::selfsigned::self_signed(&d, time::OffsetDateTime::now_utc()).unwrap();
        let mixed = StoredCertificate {
            fullchain: a.fullchain.clone(),
            privkey: b.privkey.clone(),
        };
        assert!(key_matches(&a).unwrap());
        assert!(!key_matches(&mixed).unwrap());
    }
}
