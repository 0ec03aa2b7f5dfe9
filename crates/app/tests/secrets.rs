//! Generated secrets never show: not in `Debug` output, plans, plan summaries, diffs,
//! reports (text or JSON) or the scripts sent to the host. Only the file payload carries
//! them, on the apply call's stdin. Drives the real engine against a simulated host.

use std::collections::BTreeMap;
use std::path::Path;

mod support;

use app::{App, AppOptions};
use base64::Engine as _;
use common::engine::{self, Mode, Options};
use common::facts::ProbeOutput;
use common::inventory::Inventory;
use common::report::HostOutcome;
use common::testing::simulated_host;
use common::{Facts, Plan};
use support::{empty_host, out};

fn ai_meeting(seed: u64, rotate: &[&str]) -> App {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../inventories/ai-meeting.toml");
    let spec = Inventory::load(&path)
        .unwrap()
        .hosts
        .into_iter()
        .find(|h| h.name == "meeting-1")
        .unwrap();
    let options = AppOptions {
        secret_seed: Some(seed),
        rotate: rotate.iter().map(|s| s.to_string()).collect(),
        ..AppOptions::default()
    };
    App::from_vars(&spec.vars, &options).unwrap().unwrap()
}

fn file_state(content: &[u8], mode: u32, owner: &str, group: &str) -> ProbeOutput {
    out(format!(
        "regular file|{mode:o}|{owner}|{group}|{}\n{}\n",
        content.len(),
        base64::engine::general_purpose::STANDARD.encode(content)
    ))
}

/// The host after a converge, with `.env` holding `env`.
fn converged_host(app: &App, env: &str) -> BTreeMap<String, ProbeOutput> {
    let mut t = BTreeMap::new();
    for d in &app.directories {
        let id = |p: &app::tree::Principal| match p {
            app::tree::Principal::Id(i) => (i.to_string(), "UNKNOWN".to_string()),
            app::tree::Principal::Name(n) => ("1000".to_string(), n.clone()),
        };
        let ((uid, user), (gid, group)) = (id(&d.owner), id(&d.group));
        t.insert(
            format!("ownership:{}", d.path),
            out(format!(
                "directory|{:o}|{uid}|{gid}|{user}|{group}\n",
                d.mode
            )),
        );
    }
    t.insert(
        format!("path:{}", app.env.path),
        file_state(env.as_bytes(), 0o600, &app.env.owner, &app.env.group),
    );
    for f in &app.files {
        let f = &f.file;
        t.insert(
            format!("path:{}", f.path),
            file_state(&f.content, f.mode, &f.owner, &f.group),
        );
    }
    for s in &app.services {
        t.insert(
            format!("unit:{}", s.unit),
            out("LoadState=loaded\nActiveState=active\nUnitFileState=enabled\n".into()),
        );
    }
    t
}

/// `KEY → value` of every generated secret in `env`.
fn secrets(app: &App, env: &str) -> BTreeMap<String, String> {
    let keys = app.env.template().secrets();
    env.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| keys.contains_key(*k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn assert_hidden(secrets: &BTreeMap<String, String>, what: &str, text: &str) {
    for (key, value) in secrets {
        assert!(
            value.len() >= 32,
            "{key} looks too short to be a generated secret"
        );
        assert!(
            !text.contains(value.as_str()),
            "the value of {key} appears in {what}"
        );
        // Also no long piece of it (e.g. a truncated diff line).
        assert!(
            !text.contains(&value[..24]),
            "a prefix of {key} appears in {what}"
        );
    }
}

/// The `.env`'s entry in a host report.
fn env_report(report: &common::report::HostReport) -> &common::report::ResourceReport {
    report
        .resources
        .iter()
        .find(|r| r.id.starts_with("env:"))
        .unwrap_or_else(|| panic!("no env: resource in {report:?}"))
}

#[tokio::test]
async fn secrets_never_appear_in_debug_plans_reports_or_scripts() {
    let app = ai_meeting(11, &[]);
    let env = app.env.outcome(None).content;
    let secrets = secrets(&app, &env);
    assert_eq!(
        secrets.keys().collect::<Vec<_>>(),
        [
            "DB_PASSWORD",
            "JWT_SECRET",
            "MINIO_ROOT_PASSWORD",
            "REDIS_PASSWORD",
            "TURN_PASSWORD"
        ]
    );
    assert_hidden(&secrets, "Debug of the app", &format!("{app:?} {:#?}", app));

    let before = empty_host(&app);
    let after = converged_host(&app, &env);
    let resources = app_resources(11);

    // Plans (Debug, summaries) from the empty host.
    let facts = Facts::from_outputs(before.clone());
    for r in &resources {
        let plan = r.plan(&facts).unwrap();
        assert_hidden(&secrets, "a plan", &format!("{plan:?} {plan:#?}"));
        if let Plan::Change { actions, .. } = &plan {
            for a in actions {
                assert_hidden(&secrets, "an action", &a.describe());
                if let Some(diff) = common::report::diff_of(a) {
                    assert_hidden(&secrets, "a diff", &diff);
                }
            }
        }
    }

    // Check mode: the report with its plans and diffs.
    let check = simulated_host("meeting-1", before.clone(), after.clone());
    let options = Options {
        mode: Mode::Check,
        ..Options::default()
    };
    let report = engine::converge(&check, &resources, &options).await;
    assert_eq!(report.outcome, HostOutcome::Pending, "{:?}", report.error);
    let env_report = env_report(&report);
    assert_eq!(
        env_report.detail,
        "create /opt/ai-meeting/.env (generate DB_PASSWORD, JWT_SECRET, MINIO_ROOT_PASSWORD, REDIS_PASSWORD, TURN_PASSWORD)"
    );
    assert!(env_report.diffs[0].contains("sensitive content not shown"));
    assert_hidden(
        &secrets,
        "the check report",
        &serde_json::to_string_pretty(&report).unwrap(),
    );
    assert_hidden(&secrets, "the check report (Debug)", &format!("{report:?}"));

    // Apply: everything sent to the host except the file payload.
    let host = simulated_host("meeting-1", before, after.clone());
    let report = engine::converge(&host, &resources, &Options::default()).await;
    assert_eq!(report.outcome, HostOutcome::Changed, "{:?}", report.error);
    assert_hidden(
        &secrets,
        "the apply report",
        &serde_json::to_string_pretty(&report).unwrap(),
    );
    assert_hidden(&secrets, "the apply report (Debug)", &format!("{report:?}"));
    let calls = host.calls();
    assert_eq!(calls.len(), 3, "facts, apply, verify");
    for call in &calls {
        assert_hidden(&secrets, "a script sent to the host", &call.script);
    }
    let payload = String::from_utf8_lossy(&calls[1].stdin);
    for value in secrets.values() {
        assert!(
            payload.contains(value.as_str()),
            "the payload is where the secrets go"
        );
    }

    // A second run on the converged host: nothing to do, in one round trip.
    let again = simulated_host("meeting-1", after.clone(), after);
    let report = engine::converge(&again, &app_resources(12), &Options::default()).await;
    assert_eq!(report.outcome, HostOutcome::Converged, "{report:?}");
    assert_eq!(report.round_trips, 1);
    assert_hidden(
        &secrets,
        "the second report",
        &serde_json::to_string(&report).unwrap(),
    );
}

fn app_resources(seed: u64) -> Vec<Box<dyn common::Resource>> {
    ai_meeting(seed, &[]).into_resources()
}

#[tokio::test]
async fn rotation_converges_and_changes_only_the_rotated_secret() {
    let first = ai_meeting(1, &[]);
    let env = first.env.outcome(None).content;
    let old = secrets(&first, &env);

    let rotating = ai_meeting(2, &["REDIS_PASSWORD"]);
    let rotated_env = rotating.env.outcome(Some(&env));
    assert_eq!(rotated_env.rotated, ["REDIS_PASSWORD"]);
    let new = secrets(&rotating, &rotated_env.content);
    for (k, v) in &old {
        if k == "REDIS_PASSWORD" {
            assert_ne!(&new[k], v);
        } else {
            assert_eq!(&new[k], v, "{k} kept");
        }
    }

    // Through the engine: apply, then the verify pass sees the rotation as done.
    let before = converged_host(&rotating, &env);
    let after = converged_host(&rotating, &rotated_env.content);
    let host = simulated_host("meeting-1", before, after);
    let report = engine::converge(&host, &rotating.into_resources(), &Options::default()).await;
    assert_eq!(report.outcome, HostOutcome::Changed, "{:?}", report.error);
    let env_report = env_report(&report);
    assert_eq!(
        env_report.detail,
        "update /opt/ai-meeting/.env (rotate REDIS_PASSWORD; keep 4 secrets)"
    );
    let changed: Vec<&str> = report
        .resources
        .iter()
        .filter(|r| r.status == common::report::ResourceStatus::Changed)
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(changed, ["env:/opt/ai-meeting/.env"]);
}
