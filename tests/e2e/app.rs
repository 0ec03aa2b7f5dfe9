//! End to end on a lab host: the ai-meeting app (seeds/002) converges over real SSH, the
//! tree, modes, owners and `.env` are checked independently over a separate login, a second
//! run keeps every secret byte for byte, `nginx -t` accepts the nginx config with a
//! self-signed certificate in place, `docker-compose config` accepts the compose file, and no
//! generated secret appears in anything the engine reports or logs. The rendered nginx and
//! compose files of the four other seeds are checked with the same tools on the same host.
//!
//! Debian 12 ships docker.io 20.10 and docker-compose 1.29 (v1) but no compose v2 plugin
//! (that comes only from Docker's own apt repository, not reachable from the lab): the
//! compose checks use whichever of `docker compose` / `docker-compose` the host has.
#![allow(clippy::print_stderr)] // the timings printed at the end are the measurement

use crate::support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use app::{App, AppOptions};
use common::engine::{self, Options};
use common::inventory::{Inventory, Vars};
use common::report::{HostOutcome, HostReport, ResourceStatus};
use common::transport::Transport;
use lab::testing::remote;

/// Everything written through `tracing` while the test runs (TRACE level).
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Status, stdout and stderr of `script`, whatever its status.
fn remote_status(host: &lab::LabHost, script: &str) -> (bool, String) {
    let out = host.ssh(script).expect("ssh");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A shell snippet that writes `content` to `path` verbatim.
fn write_file(path: &str, content: &str) -> String {
    let marker = "PROVISION_E2E_EOF_7f3a";
    assert!(!content.contains(marker));
    format!("mkdir -p \"$(dirname '{path}')\"\ncat > '{path}' <<'{marker}'\n{content}{marker}\n")
}

fn ai_meeting_vars() -> Vars {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../inventories/ai-meeting.toml");
    Inventory::load(&path)
        .unwrap_or_else(|e| panic!("{e}"))
        .hosts
        .into_iter()
        .find(|h| h.name == "meeting-1")
        .unwrap()
        .vars
}

async fn converge(host: &lab::LabHost, vars: &Vars, options: &AppOptions) -> (HostReport, App) {
    let app = App::from_vars(vars, options).unwrap().unwrap();
    let app_debug = format!("{app:?}");
    let resources = App::from_vars(vars, options)
        .unwrap()
        .unwrap()
        .into_resources();
    let transport = support::connect(host).await;
    let report = engine::converge(&transport, &resources, &Options::default()).await;
    transport.close().await.expect("close");
    tracing::info!(app = %app_debug, "converged");
    (report, app)
}

fn env_values(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn ai_meeting_app_converges_on_a_lab_host_and_keeps_its_secrets() {
    if !lab::testing::skip_unless_lab() {
        return;
    }
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    let host = lab::testing::fresh_host();
    let started = Instant::now();
    // What the other steps of `provision up` provide: the deploy user, nginx and openssl
    // on the host (for `nginx -t`), Docker with compose.
    // apt runs detached and is polled: upgrading libssl3 restarts sshd, which can cut the
    // session that started it.
    // Compose from the distribution as the Docker resource installs it on each OS.
    let compose = match host.os {
        lab::Os::Ubuntu2404 | lab::Os::Ubuntu2204 => "docker-compose-v2",
        lab::Os::Debian13 => "docker-cli docker-compose",
        lab::Os::Debian12 => "docker-compose",
    };
    remote(
        &host,
        &format!(
            "id deploy >/dev/null 2>&1 || useradd --create-home --shell /bin/bash deploy\n\
         rm -f /root/setup.rc\n\
         nohup sh -c 'export DEBIAN_FRONTEND=noninteractive; apt-get -q update && \
         apt-get -q -y --no-install-recommends install nginx openssl docker.io {compose}; \
         echo $? > /root/setup.rc' >/root/setup.log 2>&1 </dev/null &"
        ),
    );
    let rc = loop {
        let (ok, rc) = remote_status(&host, "cat /root/setup.rc 2>/dev/null");
        if ok && !rc.trim().is_empty() {
            break rc.trim().to_string();
        }
        assert!(
            started.elapsed().as_secs() < 600,
            "apt did not finish in 10 minutes"
        );
        std::thread::sleep(std::time::Duration::from_secs(2));
    };
    assert_eq!(rc, "0", "{}", remote(&host, "tail -20 /root/setup.log"));
    let setup_secs = started.elapsed().as_secs_f64();
    let compose_tool = remote(
        &host,
        "if docker compose version >/dev/null 2>&1; then echo 'docker compose'; \
         elif command -v docker-compose >/dev/null; then echo docker-compose; else echo none; fi",
    );
    let vars = ai_meeting_vars();

    // First run: everything is created.
    let t = Instant::now();
    let (first, app) = runtime.block_on(converge(&host, &vars, &AppOptions::default()));
    let first_secs = t.elapsed().as_secs_f64();
    assert_eq!(first.outcome, HostOutcome::Changed, "{first:#?}");
    assert!(first.round_trips <= 3, "{first:#?}");

    // The tree, modes and owners (seeds/002 §4.1), read over a separate login.
    let deploy = remote(&host, "echo $(id -u deploy):$(id -g deploy)");
    let tree = remote(
        &host,
        "cd /opt/ai-meeting && stat -c '%n %a %u:%g' . nginx ssl data data/postgres data/redis data/minio logs logs/nginx logs/app backups /var/www/acme",
    );
    let root_deploy = format!("0:{}", deploy.split(':').nth(1).unwrap());
    assert_eq!(
        tree,
        format!(
            ". 750 {deploy}\n\
             nginx 750 {deploy}\n\
             ssl 750 {root_deploy}\n\
             data 750 {deploy}\n\
             data/postgres 700 70:70\n\
             data/redis 700 999:999\n\
             data/minio 700 0:0\n\
             logs 755 {deploy}\n\
             logs/nginx 755 0:0\n\
             logs/app 755 {deploy}\n\
             backups 700 0:0\n\
             /var/www/acme 755 0:0"
        )
    );
    assert_eq!(
        remote(
            &host,
            "cd /opt/ai-meeting && stat -c '%n %a %U %G' .env docker-compose.yml nginx/nginx.conf init-db.sql /usr/local/sbin/ai-meeting-backup /etc/systemd/system/ai-meeting-backup.timer"
        ),
        ".env 600 deploy deploy\n\
         docker-compose.yml 640 deploy deploy\n\
         nginx/nginx.conf 640 deploy deploy\n\
         init-db.sql 644 deploy deploy\n\
         /usr/local/sbin/ai-meeting-backup 700 root root\n\
         /etc/systemd/system/ai-meeting-backup.timer 644 root root"
    );

    // .env: no placeholder, every template key set, secrets of the declared shapes.
    let env_text = remote(&host, "cat /opt/ai-meeting/.env");
    assert!(!env_text.contains("CHANGE_ME"), "{}", env_text.len());
    let env = env_values(&env_text);
    for key in app.env.template().keys() {
        assert!(env.contains_key(key), "{key} missing from .env");
    }
    let secrets: BTreeMap<String, String> = app
        .env
        .template()
        .secrets()
        .keys()
        .map(|k| (k.clone(), env[k].clone()))
        .collect();
    assert_eq!(secrets.len(), 5);
    assert_eq!(secrets["DB_PASSWORD"].len(), 64, "hex of 32 bytes");
    assert_eq!(secrets["JWT_SECRET"].len(), 88, "base64 of 64 bytes");
    assert_eq!(secrets["MINIO_ROOT_PASSWORD"].len(), 32);
    assert_eq!(
        env["DATABASE_URL"],
        format!(
            "postgresql://ai_meeting:{}@postgres:5432/ai_meeting",
            secrets["DB_PASSWORD"]
        )
    );
    assert_eq!(
        env["REDIS_URL"],
        format!("redis://:{}@redis:6379", secrets["REDIS_PASSWORD"])
    );
    let sha_first = remote(&host, "sha256sum /opt/ai-meeting/.env");

    // Backups: the timer is enabled and waiting; a run logs to logs/backup.log (the
    // containers are not running here, so the dump fails cleanly, without leftovers).
    assert_eq!(
        remote(
            &host,
            "systemctl is-enabled ai-meeting-backup.timer; systemctl is-active ai-meeting-backup.timer"
        ),
        "enabled\nactive"
    );
    assert!(
        remote(
            &host,
            "systemctl show -p TimersCalendar ai-meeting-backup.timer"
        )
        .contains("OnCalendar=*-*-* 02:00:00")
    );
    let (ok, _) = remote_status(&host, "systemctl start ai-meeting-backup.service");
    assert!(!ok, "no containers run: the dump must fail, not pretend");
    let log = remote(&host, "cat /opt/ai-meeting/logs/backup.log");
    assert!(
        log.contains("backup of ai-meeting started") && log.contains("FAILED"),
        "{log}"
    );
    assert_eq!(
        remote(&host, "find /opt/ai-meeting/backups -name '*.part' | wc -l"),
        "0"
    );

    // Second run: nothing to do, every secret byte-identical.
    let t = Instant::now();
    let (second, _) = runtime.block_on(converge(&host, &vars, &AppOptions::default()));
    let second_secs = t.elapsed().as_secs_f64();
    assert_eq!(second.outcome, HostOutcome::Converged, "{second:#?}");
    assert_eq!(second.round_trips, 1);
    assert_eq!(remote(&host, "sha256sum /opt/ai-meeting/.env"), sha_first);

    // Checked before installed: a user template that nginx (or compose) rejects fails the
    // run and leaves the installed file as it was.
    let sha_files = remote(
        &host,
        "sha256sum /opt/ai-meeting/nginx/nginx.conf /opt/ai-meeting/docker-compose.yml",
    );
    let mut rejected = Vec::new();
    for (template, text, tool) in [
        (
            "nginx.conf",
            "events {}\nhttp {\n    server {\n        listen 80;\n        bogus_directive on;\n    }\n}\n",
            "bogus_directive",
        ),
        (
            "docker-compose.yml",
            "services:\n  api:\n    image: x\n    environment:\n      P: ${DB_PASSWORD}\n    ports: 80\n",
            "ports",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(template), text).unwrap();
        let mut broken = vars.clone();
        broken.app.as_mut().unwrap().template_dir = Some(dir.path().display().to_string());
        let (report, _) = runtime.block_on(converge(&host, &broken, &AppOptions::default()));
        assert_eq!(
            report.outcome,
            HostOutcome::Failed,
            "{template}: {report:#?}"
        );
        let error = report.error.clone().unwrap_or_default();
        assert!(
            error.contains("validation failed") && error.contains(tool),
            "{template}: {error}"
        );
        rejected.push(report);
    }
    assert_eq!(
        remote(
            &host,
            "sha256sum /opt/ai-meeting/nginx/nginx.conf /opt/ai-meeting/docker-compose.yml"
        ),
        sha_files,
        "rejected files were not installed"
    );

    // nginx -t with the seed's self-signed certificate (§5.2) in place.
    remote(
        &host,
        "cd /opt/ai-meeting/ssl && openssl req -x509 -nodes -days 365 -newkey rsa:2048 \
         -keyout privkey.pem -out fullchain.pem \
         -subj '/C=CN/ST=Beijing/L=Beijing/O=AI Meeting/CN=localhost' 2>/dev/null && chmod 600 privkey.pem",
    );
    let nginx = remote(
        &host,
        "sed 's#/etc/nginx/ssl/#/opt/ai-meeting/ssl/#g' /opt/ai-meeting/nginx/nginx.conf > /tmp/ai-meeting-nginx.conf && nginx -t -c /tmp/ai-meeting-nginx.conf 2>&1",
    );
    assert!(nginx.contains("test is successful"), "{nginx}");
    // The check the engine runs before installing the file, against the real certificate.
    let check = app::checks::nginx_command("/opt/ai-meeting/ssl");
    remote(
        &host,
        &check
            .clone()
            .arg("/opt/ai-meeting/nginx/nginx.conf")
            .to_string(),
    );
    // ...and it does reject a broken file.
    let (ok, out) = remote_status(
        &host,
        &format!(
            "sed 's/server_name/server_nam/' /opt/ai-meeting/nginx/nginx.conf > /tmp/broken.conf; {}",
            check.clone().arg("/tmp/broken.conf")
        ),
    );
    assert!(!ok && out.contains("unknown directive"), "{out}");

    // docker compose config accepts the compose file (with .env beside it).
    let compose = if compose_tool == "none" {
        panic!("neither docker compose nor docker-compose on the lab host")
    } else {
        remote(
            &host,
            &format!("cd /opt/ai-meeting && {compose_tool} config -q && echo accepted"),
        )
    };
    assert!(compose.ends_with("accepted"), "{compose}");
    let (ok, _) = remote_status(
        &host,
        &format!(
            "cd /opt/ai-meeting && sed 's/^services:/servics:/' docker-compose.yml > /tmp/broken.yml && {compose_tool} -f /tmp/broken.yml --project-directory /opt/ai-meeting config -q"
        ),
    );
    assert!(!ok, "a broken compose file must be rejected");

    // Drift: a hand-added key and a placeholder put back; the next run fills the
    // placeholder, keeps the hand-added key, and changes no other secret.
    remote(
        &host,
        "cd /opt/ai-meeting && sed -i 's/^TURN_PASSWORD=.*/TURN_PASSWORD=CHANGE_ME_TURN_PASSWORD/' .env && echo 'MY_FLAG=on' >> .env",
    );
    let (third, _) = runtime.block_on(converge(&host, &vars, &AppOptions::default()));
    assert_eq!(third.outcome, HostOutcome::Changed, "{third:#?}");
    let env3 = env_values(&remote(&host, "cat /opt/ai-meeting/.env"));
    assert_eq!(env3["MY_FLAG"], "on");
    assert_ne!(env3["TURN_PASSWORD"], secrets["TURN_PASSWORD"]);
    assert!(!env3["TURN_PASSWORD"].contains("CHANGE_ME"));
    for k in [
        "DB_PASSWORD",
        "JWT_SECRET",
        "MINIO_ROOT_PASSWORD",
        "REDIS_PASSWORD",
    ] {
        assert_eq!(env3[k], secrets[k], "{k} kept");
    }

    // --rotate-secret REDIS_PASSWORD: only it (and REDIS_URL) change.
    let rotate = AppOptions {
        rotate: vec!["REDIS_PASSWORD".into()],
        ..AppOptions::default()
    };
    let (fourth, _) = runtime.block_on(converge(&host, &vars, &rotate));
    assert_eq!(fourth.outcome, HostOutcome::Changed, "{fourth:#?}");
    let changed: Vec<&str> = fourth
        .resources
        .iter()
        .filter(|r| r.status == ResourceStatus::Changed)
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(changed, ["env:/opt/ai-meeting/.env"]);
    let env4 = env_values(&remote(&host, "cat /opt/ai-meeting/.env"));
    assert_ne!(env4["REDIS_PASSWORD"], env3["REDIS_PASSWORD"]);
    assert_eq!(
        env4["REDIS_URL"],
        format!("redis://:{}@redis:6379", env4["REDIS_PASSWORD"])
    );
    for (k, v) in &env3 {
        if k != "REDIS_PASSWORD" && k != "REDIS_URL" {
            assert_eq!(&env4[k], v, "{k} unchanged by the rotation");
        }
    }
    assert_eq!(
        remote(
            &host,
            "stat -c '%a %U' /opt/ai-meeting/.env /opt/ai-meeting/.env.provision-bak"
        ),
        "600 deploy\n600 deploy",
        "the backup of the replaced .env holds old secrets: same protection"
    );

    // No generated value, old or new, appears in any report or log line of the runs (the
    // rejected ones included: their errors carry the checks' output).
    let mut all_secrets: Vec<String> = secrets.values().cloned().collect();
    all_secrets.push(env3["TURN_PASSWORD"].clone());
    all_secrets.push(env4["REDIS_PASSWORD"].clone());
    let mut output = String::new();
    for r in [&first, &second, &third, &fourth]
        .into_iter()
        .chain(&rejected)
    {
        output.push_str(&serde_json::to_string_pretty(r).unwrap());
        output.push_str(&format!("{r:?}"));
    }
    let log_text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    // The subscriber is the process's (other tests of this binary log into it too): the
    // engine's lines of this test's own host prove the capture.
    assert!(
        log_text
            .lines()
            .any(|l| l.contains("round trip") && l.contains(host.name.as_str())),
        "the engine's debug log of {} was captured",
        host.name
    );
    output.push_str(&log_text);
    for s in &all_secrets {
        assert!(s.len() >= 32);
        assert!(
            !output.contains(s.as_str()),
            "a generated secret leaked into the output"
        );
        assert!(
            !output.contains(&s[..16]),
            "a piece of a generated secret leaked"
        );
    }

    // The other four seeds: their rendered nginx and compose files pass the same tools.
    let mut checked = Vec::new();
    for (inventory, host_name) in [
        ("lulab-backend", "lulab-prod-1"),
        ("backend2", "backend2-1"),
        ("vue-node-pm2", "vue-node-1"),
        ("monitor-saas", "monitor-prod-1"),
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../../inventories/{inventory}.toml"));
        let spec = Inventory::load(&path)
            .unwrap()
            .hosts
            .into_iter()
            .find(|h| h.name == host_name)
            .unwrap();
        let other = App::from_vars(
            &spec.vars,
            &AppOptions {
                secret_seed: Some(1),
                ..AppOptions::default()
            },
        )
        .unwrap()
        .unwrap();
        let files = other.rendered();
        let dir = format!("/tmp/seed-{inventory}");
        let mut script = String::new();
        for (name, target) in [
            (".env", ".env"),
            ("docker-compose.yml", "docker-compose.yml"),
            ("nginx/nginx.conf", "nginx/nginx.conf"),
        ] {
            script.push_str(&write_file(
                &format!("{dir}/{target}"),
                &files[&format!("{}/{name}", other.dir)],
            ));
        }
        remote(&host, &script);
        let nginx = remote(
            &host,
            &format!(
                "sed 's#/etc/nginx/ssl/#/opt/ai-meeting/ssl/#g' {dir}/nginx/nginx.conf > {dir}/check.conf && nginx -t -c {dir}/check.conf 2>&1"
            ),
        );
        assert!(nginx.contains("test is successful"), "{inventory}: {nginx}");
        let compose = remote(
            &host,
            &format!("cd {dir} && {compose_tool} config -q && echo accepted"),
        );
        assert!(compose.ends_with("accepted"), "{inventory}: {compose}");
        checked.push(inventory);
    }
    assert_eq!(checked.len(), 4);

    eprintln!(
        "app: setup (apt) {setup_secs:.1}s; first converge {first_secs:.1}s ({} round trips, {} resources); \
         second {second_secs:.1}s ({} round trip); compose checked with `{compose_tool}`",
        first.round_trips,
        first.resources.len(),
        second.round_trips
    );
}
