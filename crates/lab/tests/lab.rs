//! Real lab hosts (root, debootstrap, systemd-nspawn). Skipped with a note
//! where the lab cannot run, except under CI / PROVISION_LAB_REQUIRED=1.

mod support;

use lab::testing::{default_spec, fresh_host, fresh_host_of, remote, skip_unless_lab};
use lab::{HostSpec, HostState, Lab, Os};
use support::{alive, assert_in_inventory, iface_exists, scratch_lab, unreachable_names};

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

#[test]
fn up_two_then_down_leaves_nothing() {
    // A lab of its own (its own state dir, shared image cache) so `down`
    // does not touch hosts of tests running in parallel.
    let Some((lab, state)) = scratch_lab("test") else {
        return;
    };

    let spec = default_spec();
    let hosts = lab.up(2, spec).expect("lab up 2").hosts;
    assert_eq!(hosts.len(), 2);
    let inventory = std::fs::read_to_string(lab.inventory_path()).expect("inventory");
    for h in &hosts {
        assert!(
            inventory.contains(&format!(
                "[hosts.{}]  # {}\naddress = \"{}\"\nuser = \"root\"",
                h.name, spec.os, h.address
            )),
            "{inventory}"
        );
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
    let again = lab.up(2, spec).expect("lab up 2 again");
    assert!(again.created.is_empty(), "{:?}", again.created);
    assert_eq!(
        again.hosts.iter().map(|h| &h.name).collect::<Vec<_>>(),
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

#[test]
fn up_keeps_a_running_host_it_cannot_log_in_to() {
    let Some((lab, state)) = scratch_lab("keep") else {
        return;
    };
    let spec = default_spec();
    let first = lab.up(1, spec).expect("lab up 1").hosts;
    let hardened = first[0].clone();
    // What a hardening run does to the lab's login (root login off).
    remote(&hardened, "rm /root/.ssh/authorized_keys");
    assert!(!hardened.ssh("true").expect("ssh").status.success());

    let again = lab.up(1, spec).expect("lab up 1 again");
    assert_eq!(unreachable_names(&again), [hardened.name.as_str()]);
    assert!(
        alive(hardened.nspawn_pid),
        "the hardened host was destroyed"
    );
    assert!(hardened.root_dir.exists());
    assert_eq!(
        again.created.len(),
        1,
        "a reachable host is created beside it"
    );
    assert_in_inventory(&lab, &hardened.name);

    let report = lab.down().expect("lab down");
    assert_eq!(report.hosts_removed.len(), 2);
    assert!(!alive(hardened.nspawn_pid));
    std::fs::remove_dir_all(&state).expect("remove scratch state dir");
}

/// Each image is what a provider hands out: the sudo user holds the key,
/// root is refused the way cloud-init refuses it, cloud-init's sshd drop-in
/// turns passwords on, and each OS has the traits tools trip over.
#[test]
fn every_image_is_a_faithful_fresh_server() {
    if !skip_unless_lab() {
        return;
    }
    let lab = Lab::open_default().expect("lab");
    lab.ensure_images(&Os::ALL).expect("images");
    for os in Os::ALL {
        let host = fresh_host_of(HostSpec::new(os));
        assert_eq!(host.user, os.default_user());
        assert_eq!(remote(&host, "id -un"), os.default_user());
        assert_eq!(
            remote(&host, "sudo -n id -u"),
            "0",
            "{os}: passwordless sudo"
        );
        let release = remote(&host, ". /etc/os-release; echo $ID $VERSION_CODENAME");
        assert_eq!(
            release,
            format!("{} {}", os.name().split('-').next().unwrap(), os.suite())
        );

        // root: the key authenticates, then cloud-init's command refuses.
        let o = host
            .ssh_command_as("root")
            .arg("id -u")
            .output()
            .expect("ssh");
        assert_eq!(o.status.code(), Some(142), "{os} root login: {}", out(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains(&format!(
            "Please login as the user \"{}\" rather than the user \"root\"",
            os.default_user()
        )));

        let effective = remote(&host, "sudo -n sshd -T | grep -i '^passwordauthentication'");
        assert_eq!(effective, "passwordauthentication yes", "{os}");
        let ssh_unit = remote(&host, "systemctl is-active ssh.socket || true");
        if os.socket_activated_ssh() {
            assert_eq!(ssh_unit, "active", "{os}: socket-activated sshd");
        } else {
            assert_ne!(ssh_unit, "active", "{os}: classic sshd");
        }
        match os {
            Os::Ubuntu2404 | Os::Ubuntu2204 => {
                remote(&host, "dpkg-query -W needrestart unattended-upgrades ufw");
                let ufw = remote(&host, "grep ^ENABLED= /etc/ufw/ufw.conf");
                assert_eq!(ufw, "ENABLED=no", "{os}: ufw installed, inactive");
                let timers = remote(
                    &host,
                    "systemctl is-enabled apt-daily.timer apt-daily-upgrade.timer",
                );
                assert_eq!(timers, "enabled\nenabled", "{os}");
            }
            Os::Debian13 => {
                remote(&host, "test -x /usr/lib/openssh/sshd-session");
                let v = remote(&host, "sudo -n iptables -V");
                assert!(v.contains("nf_tables"), "{os}: {v}");
            }
            Os::Debian12 => {}
        }
    }
}

/// A build that fails names the failing command, its last lines and the variable to set,
/// and leaves nothing in the cache (the mirror is a closed port on this machine: nothing
/// leaves it).
#[test]
fn a_failed_image_build_says_why_and_leaves_no_image() {
    if !skip_unless_lab() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let lab = Lab::with_dirs(dir.path().join("state"), cache.clone())
        .with_mirror("http://127.0.0.1:9/debian");
    let err = lab.ensure_base_image(Os::Debian12).unwrap_err().to_string();
    assert!(err.contains("debootstrap --variant=minbase"), "{err}");
    assert!(err.contains("http://127.0.0.1:9/debian"), "{err}");
    assert!(err.contains("PROVISION_LAB_MIRROR=<mirror URL>"), "{err}");
    let left: Vec<String> = std::fs::read_dir(&cache)
        .expect("cache dir")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "left in the cache: {left:?}");
}
