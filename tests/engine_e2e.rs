//! End to end on a lab host: `provision up` converges a fresh Debian 12 host over real SSH,
//! the result is checked independently over a separate SSH login, and an immediate
//! `provision check` reports zero changes within three round trips.

use lab::testing::remote;
use std::path::Path;
use std::process::Command;

fn provision(inventory: &Path, args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_provision"))
        .arg("--inventory")
        .arg(inventory)
        .args(["--format", "json"])
        .args(args)
        .output()
        .expect("run provision");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: stdout:\n{stdout}\nstderr:\n{stderr}"));
    (out.status.code().unwrap_or(-1), json, stderr)
}

fn inventory_for(host: &lab::LabHost, dir: &Path) -> std::path::PathBuf {
    let text = format!(
        r#"[defaults]
user = "root"
identity_file = "{key}"
known_hosts = "{known}"

[vars]
timezone = "Asia/Shanghai"
packages = ["curl", "htop"]
files = [{{ path = "/etc/provision-e2e/app.conf", content = "listen = 8080\n", mode = "0640", group = "adm" }}]

[vars.hardening]
enabled = false

[vars.docker]
enabled = false

[hosts.{name}]
address = "{address}"
"#,
        key = host.identity_file.display(),
        known = host.known_hosts.display(),
        name = host.name,
        address = host.address,
    );
    let path = dir.join("inventory.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn up_converges_then_check_is_a_noop_in_at_most_three_round_trips() {
    if !lab::testing::skip_unless_lab() {
        return;
    }
    let host = lab::testing::fresh_host();
    let dir = tempfile::tempdir().unwrap();
    let inventory = inventory_for(&host, dir.path());

    // Before: none of it is there (so the checks below can fail).
    assert_eq!(
        remote(
            &host,
            "dpkg-query -W -f='${Status}' htop 2>/dev/null || echo absent"
        ),
        "absent"
    );

    let (code, report, stderr) = provision(&inventory, &["up"]);
    assert_eq!(code, 0, "up failed: {report:#}\n{stderr}");
    let h = &report["hosts"][0];
    assert_eq!(h["outcome"], "changed", "{h:#}");
    assert!(h["round_trips"].as_u64().unwrap() <= 3, "{h:#}");

    // Independent checks over a separate login, not through the tool's facts.
    assert_eq!(
        remote(&host, "dpkg-query -W -f='${Status}\\n' curl htop"),
        "install ok installed\ninstall ok installed"
    );
    assert_eq!(
        remote(&host, "readlink /etc/localtime"),
        "/usr/share/zoneinfo/Asia/Shanghai"
    );
    assert_eq!(remote(&host, "cat /etc/timezone"), "Asia/Shanghai");
    assert_eq!(remote(&host, "date +%Z"), "CST");
    assert_eq!(
        remote(
            &host,
            "stat -c '%a %U %G' /etc/provision-e2e/app.conf; cat /etc/provision-e2e/app.conf"
        ),
        "640 root adm\nlisten = 8080"
    );
    assert_eq!(
        remote(
            &host,
            "ls -a /etc/provision-e2e | grep -c provision-tmp || true"
        ),
        "0",
        "no temporary files left behind"
    );

    // Second look: nothing to do, one round trip, exit 0.
    let (code, report, stderr) = provision(&inventory, &["check"]);
    let h = &report["hosts"][0];
    assert_eq!(code, 0, "check after up must be clean: {h:#}\n{stderr}");
    assert_eq!(h["outcome"], "converged");
    assert!(h["round_trips"].as_u64().unwrap() <= 3, "{h:#}");
    assert_eq!(
        h["round_trips"].as_u64().unwrap(),
        1,
        "a no-op check is one round trip"
    );

    // Drift: change the file by hand; check reports it with a diff and exit 2, up restores it.
    remote(&host, "echo 'listen = 9090' > /etc/provision-e2e/app.conf");
    let (code, report, _) = provision(&inventory, &["check"]);
    assert_eq!(code, 2, "{report:#}");
    let pending: Vec<&serde_json::Value> = report["hosts"][0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "pending")
        .collect();
    assert_eq!(pending.len(), 1, "{pending:#?}");
    assert_eq!(pending[0]["id"], "file:/etc/provision-e2e/app.conf");
    let diff = pending[0]["diffs"][0].as_str().unwrap();
    assert!(
        diff.contains("-listen = 9090") && diff.contains("+listen = 8080"),
        "{diff}"
    );
    let (code, _, _) = provision(&inventory, &["up"]);
    assert_eq!(code, 0);
    assert_eq!(
        remote(&host, "cat /etc/provision-e2e/app.conf"),
        "listen = 8080"
    );
    assert_eq!(
        remote(&host, "cat /etc/provision-e2e/app.conf.provision-bak"),
        "listen = 9090",
        "the replaced file is kept as a backup"
    );
}

#[test]
fn unknown_host_key_is_refused_with_its_fingerprint() {
    if !lab::testing::skip_unless_lab() {
        return;
    }
    let host = lab::testing::fresh_host();
    let dir = tempfile::tempdir().unwrap();
    let inventory = inventory_for(&host, dir.path());
    let empty_known_hosts = dir.path().join("known_hosts");
    std::fs::write(&empty_known_hosts, "").unwrap();
    let text = std::fs::read_to_string(&inventory).unwrap().replace(
        &host.known_hosts.display().to_string(),
        &empty_known_hosts.display().to_string(),
    );
    std::fs::write(&inventory, text).unwrap();

    let (code, report, _) = provision(&inventory, &["check"]);
    assert_eq!(code, 1);
    let error = report["hosts"][0]["error"].as_str().unwrap();
    assert!(error.contains("host key"), "{error}");
    assert!(error.contains("SHA256:"), "fingerprint shown: {error}");
    assert!(error.contains("--accept-new-host-keys"), "{error}");

    // Trust on first use works and records the key.
    let (code, report, _) = provision(&inventory, &["--accept-new-host-keys", "check"]);
    assert_ne!(code, 1, "{report:#}");
    assert!(
        std::fs::read_to_string(&empty_known_hosts)
            .unwrap()
            .contains("ssh-ed25519")
    );
}
