//! `app.env_commands`: `.env` values from the operator's vault (a command on the controller).
//! A small script plays the vault. Its value lands in the rendered `.env` (the apply's file
//! payload) and nowhere else: not in `Debug`, plans, diffs, reports or scripts. A failing
//! command fails the build of the host's resources, naming the key and the exit status.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

mod support;

use app::{App, AppOptions};
use common::engine::{self, Mode, Options};
use common::inventory::{Inventory, Vars};
use common::report::HostOutcome;
use common::testing::simulated_host;
use common::{Facts, Plan};
use support::empty_host;

const SECRET: &str = "vault-Pr1vate-3x7Q";

/// A "vault": prints `SECRET-<first argument>` and a newline, or fails with status 4 after
/// printing something on stdout and stderr.
fn vault(dir: &Path) -> PathBuf {
    let path = dir.join("vault");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nif [ \"$1\" = fail ]; then echo leaked-{SECRET}; echo 'no such entry' >&2; exit 4; fi\nprintf '%s-%s\\n' {SECRET} \"$1\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    path
}

fn vars(commands: &[(&str, Vec<String>)]) -> Vars {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../inventories/ai-meeting.toml");
    let mut vars = Inventory::load(&path)
        .unwrap()
        .hosts
        .into_iter()
        .find(|h| h.name == "meeting-1")
        .unwrap()
        .vars;
    let app = vars.app.as_mut().unwrap();
    app.env_commands = Some(
        commands
            .iter()
            .map(|(k, argv)| (k.to_string(), argv.clone()))
            .collect(),
    );
    vars
}

fn argv(vault: &Path, arg: &str) -> Vec<String> {
    vec![vault.display().to_string(), arg.to_string()]
}

fn assert_hidden(what: &str, text: &str) {
    assert!(
        !text.contains(SECRET),
        "the vault's value appears in {what}"
    );
}

#[tokio::test]
async fn a_vault_value_lands_in_the_env_and_never_in_plans_diffs_or_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let vault = vault(tmp.path());
    let vars = vars(&[
        // A value the operator fills in (keep()) and a generated secret, both from the vault;
        // the argument is passed as one word, never through a shell.
        ("SMTP_PASSWORD", argv(&vault, "smtp $(id) `id`")),
        ("DB_PASSWORD", argv(&vault, "db")),
    ]);
    let options = AppOptions {
        secret_seed: Some(5),
        run_env_commands: true,
        ..AppOptions::default()
    };
    let app = App::from_vars(&vars, &options).unwrap().unwrap();
    let env = app.env.outcome(None).content;
    let lines: Vec<&str> = env.lines().collect();
    assert!(
        lines.contains(&format!("SMTP_PASSWORD={SECRET}-smtp $(id) `id`").as_str()),
        "{}",
        lines.len()
    );
    assert!(lines.contains(&format!("DB_PASSWORD={SECRET}-db").as_str()));
    // Values derived from a secret use the vault's value.
    assert!(
        lines.contains(
            &format!("DATABASE_URL=postgresql://ai_meeting:{SECRET}-db@postgres:5432/ai_meeting")
                .as_str()
        )
    );
    assert_hidden("Debug of the app", &format!("{app:?} {app:#?}"));

    let before = empty_host(&app);
    let resources = App::from_vars(&vars, &options)
        .unwrap()
        .unwrap()
        .into_resources();
    let facts = Facts::from_outputs(before.clone());
    for r in &resources {
        let plan = r.plan(&facts).unwrap();
        assert_hidden("a plan", &format!("{plan:?} {plan:#?}"));
        if let Plan::Change { actions, .. } = &plan {
            for a in actions {
                assert_hidden("an action", &a.describe());
                if let Some(diff) = common::report::diff_of(a) {
                    assert_hidden("a diff", &diff);
                }
            }
        }
    }

    // Check mode: the report, its plans and diffs.
    let check = simulated_host("meeting-1", before.clone(), before.clone());
    let report = engine::converge(
        &check,
        &resources,
        &Options {
            mode: Mode::Check,
            ..Options::default()
        },
    )
    .await;
    assert_eq!(report.outcome, HostOutcome::Pending, "{:?}", report.error);
    let env_report = report
        .resources
        .iter()
        .find(|r| r.id.starts_with("env:"))
        .unwrap();
    assert!(env_report.detail.starts_with("create /opt/ai-meeting/.env"));
    assert!(env_report.diffs[0].contains("sensitive content not shown"));
    assert_hidden(
        "the check report",
        &serde_json::to_string_pretty(&report).unwrap(),
    );
    assert_hidden(
        "the rendered check report",
        &common::report::render_host(&report, Mode::Check),
    );

    // Apply: only the file payload carries it.
    let host = simulated_host("meeting-1", before.clone(), before);
    let report = engine::converge(&host, &resources, &Options::default()).await;
    assert_hidden(
        "the apply report",
        &serde_json::to_string_pretty(&report).unwrap(),
    );
    assert_hidden("the apply report (Debug)", &format!("{report:?}"));
    let calls = host.calls();
    assert!(calls.len() >= 2, "facts, then apply");
    for call in &calls {
        assert_hidden("a script sent to the host", &call.script);
    }
    assert!(
        calls
            .iter()
            .any(|c| String::from_utf8_lossy(&c.stdin)
                .contains(&format!("SMTP_PASSWORD={SECRET}-smtp"))),
        "the .env payload is where the value goes"
    );
}

#[test]
fn a_failing_vault_command_names_the_key_and_its_status_never_its_output() {
    let tmp = tempfile::tempdir().unwrap();
    let vault = vault(tmp.path());
    let options = AppOptions {
        run_env_commands: true,
        ..AppOptions::default()
    };
    let e =
        App::from_vars(&vars(&[("SMTP_PASSWORD", argv(&vault, "fail"))]), &options).unwrap_err();
    assert_eq!(e.field(), "app.env_commands.SMTP_PASSWORD");
    let text = e.to_string();
    assert!(
        text.starts_with("app.env_commands.SMTP_PASSWORD: `")
            && text.ends_with("` failed with exit status 4 (its output is not shown)"),
        "{text}"
    );
    assert!(!text.contains(SECRET), "{text}");

    let e = App::from_vars(
        &vars(&[("SMTP_PASSWORD", vec!["/nonexistent/provision-vault".into()])]),
        &options,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with(
            "app.env_commands.SMTP_PASSWORD: `/nonexistent/provision-vault` could not be run"
        ),
        "{e}"
    );
}

/// Building the app without running the commands (the inventory's checks at load) runs
/// nothing, and such an app cannot plan its `.env`: no value is ever made up.
#[test]
fn without_running_the_commands_nothing_runs_and_the_env_does_not_plan() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("ran");
    let vars = vars(&[(
        "SMTP_PASSWORD",
        vec![
            "sh".into(),
            "-c".into(),
            format!("touch {}; echo x", marker.display()),
        ],
    )]);
    let app = App::from_vars(&vars, &AppOptions::default())
        .unwrap()
        .unwrap();
    assert!(!marker.exists(), "the command ran");
    let before = empty_host(&app);
    let env = app
        .into_resources()
        .into_iter()
        .find(|r| r.id().kind() == "env")
        .unwrap();
    let e = env.plan(&Facts::from_outputs(before)).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("vars.app.env_commands.SMTP_PASSWORD: expected the output of the command"),
        "{e}"
    );

    let e = App::from_vars(
        &vars,
        &AppOptions {
            rotate: vec!["SMTP_PASSWORD".into()],
            ..AppOptions::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("app.env_commands.SMTP_PASSWORD"), "{e}");
}
