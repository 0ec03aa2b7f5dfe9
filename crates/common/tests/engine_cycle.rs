//! The fake transport drives a full check → up → check cycle through the real engine.

use std::collections::BTreeMap;

use common::engine::{self, Mode, Options};
use common::facts::ProbeOutput;
use common::report::{HostOutcome, ResourceStatus, exit_code_for};
use common::resource::ResourceId;
use common::resources::{File, Packages, Service, Timezone};
use common::testing::simulated_host;
use common::{Resource, report::exit_code};

fn ok(stdout: &str) -> ProbeOutput {
    ProbeOutput {
        status: 0,
        stdout: stdout.into(),
        stderr: String::new(),
    }
}

fn job() -> Vec<Box<dyn Resource>> {
    vec![
        Box::new(Packages::new("base", ["curl", "tzdata"])),
        Box::new(Timezone {
            zone: "Asia/Shanghai".into(),
            origin: None,
        }),
        Box::new(File::new("/etc/motd", "managed by provision\n")),
        Box::new(Service::running("cron").reload_on([ResourceId::file("/etc/motd")])),
    ]
}

fn host_state(converged: bool) -> BTreeMap<String, ProbeOutput> {
    let mut m = BTreeMap::new();
    let dpkg = if converged {
        "curl\tii \t7.88\ntzdata\tii \t2024a\n"
    } else {
        "tzdata\tii \t2024a\n"
    };
    m.insert("dpkg".into(), ok(dpkg));
    let zone = if converged {
        "Asia/Shanghai"
    } else {
        "Etc/UTC"
    };
    m.insert(
        "timezone:Asia/Shanghai".into(),
        ok(&format!("current={zone}\nexists=1\n")),
    );
    let motd = if converged {
        // base64("managed by provision\n")
        "regular file|644|root|root|21\nbWFuYWdlZCBieSBwcm92aXNpb24K\n"
    } else {
        "regular file|644|root|root|6\naGVsbG8K\n"
    };
    m.insert("path:/etc/motd".into(), ok(motd));
    m.insert(
        "unit:cron".into(),
        ok("LoadState=loaded\nActiveState=active\nUnitFileState=enabled\n"),
    );
    m
}

fn options(mode: Mode) -> Options {
    Options {
        mode,
        ..Options::default()
    }
}

#[tokio::test]
async fn check_then_up_then_check_converges() {
    let resources = job();

    // check on a fresh host: pending changes with a diff, one round trip, nothing applied.
    let fresh = simulated_host("web1", host_state(false), host_state(true));
    let report = engine::converge(&fresh, &resources, &options(Mode::Check)).await;
    assert_eq!(report.outcome, HostOutcome::Pending, "{report:#?}");
    assert_eq!(
        exit_code_for(std::slice::from_ref(&report)),
        exit_code::PENDING
    );
    assert_eq!(report.round_trips, 1);
    assert_eq!(fresh.calls().len(), 1);
    let motd = &report.resources[2];
    assert_eq!(motd.status, ResourceStatus::Pending);
    assert!(
        motd.diffs[0].contains("-hello\n+managed by provision\n"),
        "{}",
        motd.diffs[0]
    );
    let cron = &report.resources[3];
    assert_eq!(
        cron.actions,
        ["reload-or-restart cron"],
        "watched file change reloads"
    );

    // up: facts, one apply script, verify — three round trips.
    let host = simulated_host("web1", host_state(false), host_state(true));
    let report = engine::converge(&host, &resources, &options(Mode::Apply)).await;
    assert_eq!(report.outcome, HostOutcome::Changed, "{report:#?}");
    assert_eq!(report.round_trips, 3);
    let calls = host.calls();
    let apply = &calls[1];
    assert_eq!(
        apply
            .script
            .lines()
            .filter(|l| l.starts_with("__provision_apt install "))
            .count(),
        1,
        "one apt transaction"
    );
    assert!(apply.script.contains("__provision_apt install curl\n"));
    assert!(
        apply
            .script
            .contains("ln -sfn -- /usr/share/zoneinfo/Asia/Shanghai /etc/localtime")
    );
    assert!(apply.script.contains("systemctl reload-or-restart cron"));
    assert_eq!(
        apply.stdin, b"managed by provision\n",
        "file payload streamed on stdin"
    );
    let statuses: Vec<_> = report.resources.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [ResourceStatus::Changed; 4]);

    // check on the converged host: zero changes, exit 0, one round trip.
    let converged = simulated_host("web1", host_state(true), host_state(true));
    let report = engine::converge(&converged, &resources, &options(Mode::Check)).await;
    assert_eq!(report.outcome, HostOutcome::Converged, "{report:#?}");
    assert_eq!(
        exit_code_for(std::slice::from_ref(&report)),
        exit_code::CONVERGED
    );
    assert_eq!(report.round_trips, 1);
    assert!(
        report
            .resources
            .iter()
            .all(|r| r.status == ResourceStatus::Ok)
    );
}

#[tokio::test]
async fn apply_that_does_not_stick_is_reported() {
    // The host acknowledges every step but the state never changes: verify must catch it.
    let host = simulated_host("web1", host_state(false), host_state(false));
    let report = engine::converge(&host, &job(), &options(Mode::Apply)).await;
    assert_eq!(report.outcome, HostOutcome::Failed);
    let error = report.error.unwrap();
    assert!(error.contains("did not converge"), "{error}");
    assert!(error.contains("file:/etc/motd"), "{error}");
}

#[tokio::test]
async fn failed_fact_fails_the_host_instead_of_planning_nothing() {
    let mut broken = host_state(true);
    broken.insert(
        "dpkg".into(),
        ProbeOutput {
            status: 2,
            stdout: String::new(),
            stderr: "dpkg-query: error: database is locked\n".into(),
        },
    );
    let host = simulated_host("web1", broken.clone(), broken);
    let report = engine::converge(&host, &job(), &options(Mode::Check)).await;
    assert_eq!(report.outcome, HostOutcome::Failed);
    assert_eq!(report.resources[0].status, ResourceStatus::Failed);
    assert!(report.resources[0].detail.contains("database is locked"));
}

#[tokio::test]
async fn package_sets_of_several_resources_share_one_apt_transaction() {
    let resources: Vec<Box<dyn Resource>> = vec![
        Box::new(Packages::new("base", ["curl"])),
        Box::new(File::new("/etc/motd", "managed by provision\n")),
        Box::new(Packages::new("extra", ["htop", "curl"])),
    ];
    let mut before = host_state(false);
    before.insert("dpkg".into(), ok("tzdata\tii \t2024a\n"));
    let mut after = host_state(true);
    after.insert("dpkg".into(), ok("curl\tii \t7.88\nhtop\tii \t3.2\n"));
    let host = simulated_host("web1", before, after);
    let report = engine::converge(&host, &resources, &options(Mode::Apply)).await;
    assert_eq!(report.outcome, HostOutcome::Changed, "{report:#?}");
    let apply = &host.calls()[1];
    let installs: Vec<&str> = apply
        .script
        .lines()
        .filter(|l| l.starts_with("__provision_apt install "))
        .collect();
    assert_eq!(installs, ["__provision_apt install curl htop"]);
    let statuses: Vec<_> = report.resources.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [ResourceStatus::Changed; 3]);
}

/// Issue 14: the units two resources enable are one `systemctl enable` (one manager
/// reload), and each resource is still reported on its own.
#[tokio::test]
async fn units_of_several_services_are_enabled_at_once_and_reported_each() {
    let resources: Vec<Box<dyn Resource>> = vec![
        Box::new(Service::running("docker.service")),
        Box::new(File::new("/etc/motd", "managed by provision\n")),
        Box::new(Service::running("app-backup.timer")),
        Box::new(Service::running("cron")),
    ];
    let unit = |active: &str, file: &str| {
        ok(&format!(
            "LoadState=loaded\nActiveState={active}\nUnitFileState={file}\n"
        ))
    };
    let mut before = host_state(false);
    before.insert("unit:docker.service".into(), unit("inactive", ""));
    before.insert("unit:app-backup.timer".into(), unit("inactive", "disabled"));
    let mut after = host_state(true);
    after.insert("unit:docker.service".into(), unit("active", "enabled"));
    after.insert("unit:app-backup.timer".into(), unit("active", "enabled"));
    let host = simulated_host("web1", before, after);
    let report = engine::converge(&host, &resources, &options(Mode::Apply)).await;
    assert_eq!(report.outcome, HostOutcome::Changed, "{report:#?}");
    let statuses: Vec<_> = report.resources.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            ResourceStatus::Changed,
            ResourceStatus::Changed,
            ResourceStatus::Changed,
            ResourceStatus::Ok
        ]
    );
    let apply = &host.calls()[1].script;
    assert_eq!(apply.matches("systemctl enable").count(), 1, "{apply}");
    let at = |needle: &str| {
        apply
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} in {apply}"))
    };
    let enable = at("for __unit in docker.service app-backup.timer; do systemctl is-enabled");
    assert!(at("systemctl start docker.service") < enable);
    assert!(at("__provision_put /etc/motd") < enable, "after the files");
    assert!(enable < at("systemctl enable -- \"$@\""));
    assert!(at("systemctl enable -- \"$@\"") < at("systemctl start app-backup.timer"));
}
