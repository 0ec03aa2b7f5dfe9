//! Real lab hosts (root, debootstrap, systemd-nspawn). Skipped with a note
//! where the lab cannot run, except under CI / PROVISION_LAB_REQUIRED=1.

use std::path::{Path, PathBuf};

use lab::testing::{fresh_host, skip_unless_lab};
use lab::{HostState, Lab};

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or("");
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

fn iface_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn out(o: &std::process::Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn fresh_host_boots_reaches_mirror_and_is_cleaned_up() {
    if !skip_unless_lab() {
        return;
    }
    let host = fresh_host();
    let (nspawn, leader, iface) = (host.nspawn_pid, host.leader_pid, host.iface.clone());
    let host_dir = host.root_dir.parent().expect("host dir").to_path_buf();
    assert!(alive(nspawn) && alive(leader));
    assert!(
        iface_exists(&iface),
        "{iface} should exist while the host runs"
    );

    let o = host.ssh("systemctl is-system-running --wait").expect("ssh");
    let state = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(
        state == "running" || state == "degraded",
        "system state: {}",
        out(&o)
    );

    let o = host.ssh("hostname").expect("ssh");
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), host.name);

    let o = host.ssh("ip -4 -o addr show dev host0").expect("ssh");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("{}/30", host.address)),
        "{}",
        out(&o)
    );

    // Through the NAT to the machine's Debian mirror.
    let o = host.ssh("timeout 300 apt-get update -q 2>&1").expect("ssh");
    assert!(o.status.success(), "apt-get update inside: {}", out(&o));

    drop(host);
    assert!(!alive(nspawn), "nspawn {nspawn} still alive");
    assert!(!alive(leader), "container init {leader} still alive");
    assert!(!iface_exists(&iface), "{iface} left behind");
    assert!(!host_dir.exists(), "{} left behind", host_dir.display());
}

fn scratch_state_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("provision-lab-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn up_two_then_down_leaves_nothing() {
    if !skip_unless_lab() {
        return;
    }
    // A lab of its own (its own state dir, shared image cache) so `down`
    // does not touch hosts of tests running in parallel.
    let default = Lab::open_default().expect("lab");
    let state = scratch_state_dir();
    let lab = Lab::with_dirs(state.clone(), default.cache_dir().to_path_buf());

    let hosts = lab.up(2).expect("lab up 2");
    assert_eq!(hosts.len(), 2);
    let inventory = std::fs::read_to_string(lab.inventory_path()).expect("inventory");
    for h in &hosts {
        assert!(inventory.contains(&format!("[hosts.{}]\naddress = \"{}\"", h.name, h.address)));
        let o = h.ssh("true").expect("ssh");
        assert!(o.status.success(), "{}: {}", h.name, out(&o));
    }
    let st = lab.status().expect("status");
    assert_eq!(st.len(), 2);
    assert!(
        st.iter()
            .all(|s| s.state == HostState::Running && s.ssh_port_open),
        "{st:?}"
    );

    // A second `up` reuses the running hosts.
    let again = lab.up(2).expect("lab up 2 again");
    assert_eq!(
        again.iter().map(|h| &h.name).collect::<Vec<_>>(),
        hosts.iter().map(|h| &h.name).collect::<Vec<_>>()
    );

    // ssh_command works for a host by name.
    let o = lab
        .ssh_command(&hosts[0].name)
        .expect("ssh_command")
        .arg("cat /etc/hostname")
        .output()
        .expect("ssh");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), hosts[0].name);

    let report = lab.down().expect("lab down");
    let mut removed = report.hosts_removed.clone();
    removed.sort();
    let mut names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    names.sort();
    assert_eq!(removed, names);
    assert!(report.inventory_removed);
    for h in &hosts {
        assert!(!alive(h.nspawn_pid), "{} nspawn alive", h.name);
        assert!(!alive(h.leader_pid), "{} init alive", h.name);
        assert!(!iface_exists(&h.iface), "{} left behind", h.iface);
        assert!(!h.root_dir.exists(), "{} left behind", h.root_dir.display());
    }
    assert!(!lab.inventory_path().exists());
    assert!(lab.status().expect("status").is_empty());
    assert!(lab.down().expect("second down").hosts_removed.is_empty());
    std::fs::remove_dir_all(&state).expect("remove scratch state dir");
}
