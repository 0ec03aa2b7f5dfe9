//! Every rendered file of the five seed inventories, as insta snapshots, plus properties
//! that must hold for all of them.

use std::path::Path;

use app::{App, AppOptions};
use common::inventory::{HostSpec, Inventory};

/// Inventory file and the host whose files are snapshotted.
const SEEDS: [(&str, &str); 5] = [
    ("lulab-backend", "lulab-prod-1"),
    ("backend2", "backend2-1"),
    ("ai-meeting", "meeting-1"),
    ("vue-node-pm2", "vue-node-1"),
    ("monitor-saas", "monitor-prod-1"),
];

/// A fixed generator seed keeps the generated secrets (and so the snapshots) stable.
const SEED: u64 = 2026;

fn host(inventory: &str, host: &str) -> HostSpec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../inventories")
        .join(format!("{inventory}.toml"));
    let inv = Inventory::load(&path).unwrap_or_else(|e| panic!("{e}"));
    inv.hosts
        .into_iter()
        .find(|h| h.name == host)
        .unwrap_or_else(|| panic!("no host {host} in {}", path.display()))
}

fn app(inventory: &str, host_name: &str) -> App {
    let spec = host(inventory, host_name);
    let options = AppOptions {
        secret_seed: Some(SEED),
        ..AppOptions::default()
    };
    App::from_vars(&spec.vars, &options)
        .unwrap_or_else(|e| panic!("{inventory}: {e}"))
        .expect("the inventory has an app")
}

fn snapshot_name(inventory: &str, app_dir: &str, path: &str) -> String {
    let file = match path.strip_prefix(&format!("{app_dir}/")) {
        Some(relative) => relative.to_string(),
        None => path.trim_start_matches('/').to_string(),
    };
    format!("{inventory}__{}", file.replace('/', "_"))
}

#[test]
fn every_rendered_file_of_every_seed() {
    for (inventory, host) in SEEDS {
        let app = app(inventory, host);
        for (path, content) in app.rendered() {
            insta::assert_snapshot!(snapshot_name(inventory, &app.dir, &path), content);
        }
    }
}

#[test]
fn tree_and_resource_order_of_every_seed() {
    for (inventory, host) in SEEDS {
        let app = app(inventory, host);
        let mut text = String::from("# directories\n");
        for d in &app.directories {
            text.push_str(&format!(
                "{:o} {}:{} {}\n",
                d.mode, d.owner, d.group, d.path
            ));
        }
        text.push_str("# files\n");
        text.push_str(&format!(
            "600 {}:{} {} (sensitive)\n",
            app.env.owner, app.env.group, app.env.path
        ));
        for f in &app.files {
            let f = &f.file;
            let check = match &f.validate {
                Some(v) if v.to_string().contains("nginx-check") => " (checked: nginx -t)",
                Some(v) if v.to_string().contains("compose-check") => {
                    " (checked: docker compose config)"
                }
                Some(_) => " (checked)",
                None => "",
            };
            text.push_str(&format!(
                "{:o} {}:{} {}{check}\n",
                f.mode, f.owner, f.group, f.path
            ));
        }
        text.push_str("# resources, in order\n");
        for r in app.into_resources() {
            text.push_str(r.id().as_str());
            text.push('\n');
        }
        insta::assert_snapshot!(format!("{inventory}__tree"), text);
    }
}

#[test]
fn every_host_of_every_seed_inventory_builds() {
    for (inventory, _) in SEEDS {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../inventories")
            .join(format!("{inventory}.toml"));
        for spec in Inventory::load(&path).unwrap().hosts {
            let resources = app::resources(&spec.vars, &AppOptions::default())
                .unwrap_or_else(|e| panic!("{inventory}/{}: {e}", spec.name));
            assert!(resources.len() > 10, "{inventory}/{}", spec.name);
        }
    }
}

/// `- "127.0.0.1:5432:5432"` entries under every `ports:` key.
fn published_ports(compose: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut indent: Option<usize> = None;
    for line in compose.lines() {
        let depth = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if trimmed == "ports:" {
            indent = Some(depth);
            continue;
        }
        match indent {
            Some(d) if depth > d && trimmed.starts_with("- ") => out.push(
                trimmed
                    .trim_start_matches("- ")
                    .trim_matches('"')
                    .to_string(),
            ),
            _ => indent = None,
        }
    }
    out
}

#[test]
fn internal_ports_are_published_on_localhost_only() {
    for (inventory, host) in SEEDS {
        let app = app(inventory, host);
        let compose = &app.rendered()[&format!("{}/docker-compose.yml", app.dir)];
        let ports = published_ports(compose);
        for p in &ports {
            assert!(
                p.starts_with("127.0.0.1:") || p == "80:80" || p == "443:443",
                "{inventory}: port {p} is published on every address"
            );
        }
        let public = ports
            .iter()
            .filter(|p| !p.starts_with("127.0.0.1:"))
            .count();
        assert!(public == 0 || public == 2, "{inventory}: {ports:?}");
    }
}

#[test]
fn nginx_answers_acme_and_redirects_to_https_with_the_apps_certificates() {
    for (inventory, host) in SEEDS {
        let app = app(inventory, host);
        let conf = &app.rendered()[&format!("{}/nginx/nginx.conf", app.dir)];
        assert!(
            conf.contains(
                "location ^~ /.well-known/acme-challenge/ {\n            root /var/www/acme;"
            ),
            "{inventory}"
        );
        assert!(conf.contains("return 301 https://"), "{inventory}");
        assert!(
            conf.contains("ssl_certificate /etc/nginx/ssl/fullchain.pem;"),
            "{inventory}"
        );
        assert!(
            conf.contains("ssl_certificate_key /etc/nginx/ssl/privkey.pem;"),
            "{inventory}"
        );
        let compose = &app.rendered()[&format!("{}/docker-compose.yml", app.dir)];
        assert!(compose.contains("./ssl:/etc/nginx/ssl:ro"), "{inventory}");
        assert!(
            compose.contains("/var/www/acme:/var/www/acme:ro"),
            "{inventory}"
        );
    }
}

#[test]
fn env_files_have_no_placeholder_and_derived_values_agree() {
    for (inventory, host) in SEEDS {
        let app = app(inventory, host);
        let env = app.env.outcome(None).content;
        assert!(!env.contains("CHANGE_ME"), "{inventory}");
        let value = |key: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .map(str::to_string)
        };
        for (derived, secret) in [
            ("DATABASE_URL", "DB_PASSWORD"),
            ("REDIS_URL", "REDIS_PASSWORD"),
            ("MONGODB_URI", "MONGO_ROOT_PASSWORD"),
        ] {
            if let (Some(d), Some(s)) = (value(derived), value(secret)) {
                assert!(
                    d.contains(&format!(":{s}@")),
                    "{inventory}: {derived} uses {secret}"
                );
            }
        }
    }
}

#[test]
fn backups_follow_each_seeds_schedule_and_retention() {
    for (inventory, host, days, dump) in [
        ("lulab-backend", "lulab-prod-1", 7, "pg_dump"),
        ("backend2", "backend2-1", 7, "pg_dump"),
        ("ai-meeting", "meeting-1", 30, "pg_dump"),
        ("vue-node-pm2", "vue-node-1", 7, "mongodump"),
        ("monitor-saas", "monitor-prod-1", 7, "mongodump"),
    ] {
        let app = app(inventory, host);
        let files = app.rendered();
        let name = &app.name;
        let timer = &files[&format!("/etc/systemd/system/{name}-backup.timer")];
        assert!(timer.contains("OnCalendar=*-*-* 02:00:00"), "{inventory}");
        let script = &files[&format!("/usr/local/sbin/{name}-backup")];
        assert!(script.contains(dump), "{inventory}");
        assert!(
            script.contains(&format!("-mtime +{days} -print -delete")),
            "{inventory}"
        );
        let service = &files[&format!("/etc/systemd/system/{name}-backup.service")];
        assert!(
            service.contains(&format!(
                "StandardOutput=append:{}/logs/backup.log",
                app.dir
            )),
            "{inventory}"
        );
    }
}

#[test]
fn backup_script_is_valid_bash() {
    for (inventory, host) in SEEDS {
        let app = app(inventory, host);
        let script = &app.rendered()[&format!("/usr/local/sbin/{}-backup", app.name)];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup");
        std::fs::write(&path, script).unwrap();
        let out = std::process::Command::new("bash")
            .arg("-n")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{inventory}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn user_template_dir_overrides_a_template() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("nginx.conf"),
        "# mine for {{ app.domain }}\nevents {}\n",
    )
    .unwrap();
    let mut spec = host("ai-meeting", "meeting-1");
    spec.vars.app.as_mut().unwrap().template_dir = Some(dir.path().display().to_string());
    let app = App::from_vars(&spec.vars, &AppOptions::default())
        .unwrap()
        .unwrap();
    assert_eq!(
        app.rendered()["/opt/ai-meeting/nginx/nginx.conf"],
        "# mine for ai-meeting.com\nevents {}\n"
    );

    std::fs::write(dir.path().join("env"), "A={{ settings.not_there }}\n").unwrap();
    let e = App::from_vars(&spec.vars, &AppOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`env`") && e.contains("line 1") && e.contains("`settings.not_there`"),
        "{e}"
    );

    spec.vars.app.as_mut().unwrap().template_dir = Some("/nonexistent/app-templates".into());
    let e = App::from_vars(&spec.vars, &AppOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/nonexistent/app-templates") && e.contains("template_dir"),
        "{e}"
    );
}

#[test]
fn relative_template_dir_is_resolved_against_the_base_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tpl")).unwrap();
    std::fs::write(dir.path().join("tpl/docker-compose.yml"), "services: {}\n").unwrap();
    let mut spec = host("backend2", "backend2-1");
    spec.vars.app.as_mut().unwrap().template_dir = Some("tpl".into());
    let options = AppOptions {
        base_dir: Some(dir.path().to_path_buf()),
        ..AppOptions::default()
    };
    let app = App::from_vars(&spec.vars, &options).unwrap().unwrap();
    assert_eq!(
        app.rendered()["/opt/backend2/docker-compose.yml"],
        "services: {}\n"
    );
}

#[test]
fn a_missing_setting_is_an_error_naming_template_line_and_variable() {
    let mut spec = host("ai-meeting", "meeting-1");
    // Settings replace key by key: a user template referring to an unknown one fails.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        "services:\n  api:\n    image: {{ settings.api_imagee }}\n",
    )
    .unwrap();
    spec.vars.app.as_mut().unwrap().template_dir = Some(dir.path().display().to_string());
    let e = App::from_vars(&spec.vars, &AppOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`docker-compose.yml`")
            && e.contains("line 3")
            && e.contains("undefined variable `settings.api_imagee`"),
        "{e}"
    );
}

#[test]
fn unknown_set_name_and_bad_rotate_are_errors() {
    let mut spec = host("ai-meeting", "meeting-1");
    let rotate = AppOptions {
        rotate: vec!["NOPE".into()],
        ..AppOptions::default()
    };
    let e = App::from_vars(&spec.vars, &rotate).unwrap_err().to_string();
    assert!(e.contains("NOPE") && e.contains("JWT_SECRET"), "{e}");
    spec.vars.app.as_mut().unwrap().template = Some("wordpress".into());
    let e = App::from_vars(&spec.vars, &AppOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("wordpress") && e.contains("ai-meeting"), "{e}");
    spec.vars.app = None;
    assert!(
        App::from_vars(&spec.vars, &AppOptions::default())
            .unwrap()
            .is_none()
    );
    assert!(App::from_vars(&spec.vars, &rotate).is_err());
}

/// Issue 11: an app path reaches the backup script and the units as data. The inventory
/// refuses most hostile paths at load; this builds the vars directly so that the templates'
/// escaping is what is tested (a path with quotes, `$(…)`, `%` specifiers and spaces).
#[test]
fn issue_11_hostile_app_path_is_data_in_scripts_and_units() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    let path = format!(
        "/opt/a b/%h%s'$(touch {m})`touch {m}`;touch {m}",
        m = marker.display()
    );
    let mut spec = host("vue-node-pm2", "vue-node-1");
    let app_vars = spec.vars.app.as_mut().unwrap();
    app_vars.path = Some(path.clone());
    let options = AppOptions {
        secret_seed: Some(SEED),
        ..AppOptions::default()
    };
    let app = App::from_vars(&spec.vars, &options).unwrap().unwrap();
    let rendered = app.rendered();
    let script = &rendered["/usr/local/sbin/vue-node-backup"];
    for (var, want) in [
        ("app_dir", path.clone()),
        ("backup_dir", format!("{path}/backups")),
    ] {
        let line = script
            .lines()
            .find(|l| l.starts_with(&format!("{var}=")))
            .unwrap_or_else(|| panic!("no {var}= in\n{script}"));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{line}\nprintf %s \"${var}\""))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{line}");
    }
    assert!(!marker.exists(), "the backup script ran the path");
    let unit = &rendered["/etc/systemd/system/vue-node-pm2.service"];
    let escaped = path.replace('%', "%%");
    assert!(
        unit.lines()
            .any(|l| l == format!("WorkingDirectory={escaped}")),
        "{unit}"
    );
    assert!(
        unit.lines()
            .any(|l| l == format!("Environment=\"PM2_HOME={escaped}/.pm2\"")),
        "{unit}"
    );
    let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    assert!(
        exec.contains(&format!(
            "\"{}/ecosystem.config.js\"",
            escaped.replace('$', "$$")
        )),
        "{exec}"
    );
}
