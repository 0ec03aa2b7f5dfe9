//! Lab hosts survive a reboot of the OS inside (`systemctl reboot`: nspawn exits with
//! status 133): a test's guard boots its host again by itself, `lab up` boots a recorded
//! host again instead of replacing it, and nothing is left behind afterwards. Skipped with
//! a note where the lab cannot run, except under CI / PROVISION_LAB_REQUIRED=1.
#![allow(clippy::print_stderr)] // the measured round trip is worth a line in the output

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod support;

use lab::testing::{
    LabGuard, WatchReport, default_spec, fresh_host, fresh_host_in_with, fresh_host_of, remote,
    skip_unless_lab, test_os,
};
use lab::{HostSpec, HostState, Lab, LabError, LabHost};
use support::{alive, assert_in_inventory, iface_exists, scratch_lab, unreachable_names};

/// In the login's home (written by that user, on the host's disk).
const MARKER: &str = "lab-reboot-marker";
const BOOT_ID: &str = "cat /proc/sys/kernel/random/boot_id";

/// Live processes whose command line names `--directory=ROOTFS` (an nspawn of that host).
fn nspawns_of(rootfs: &Path) -> Vec<u32> {
    let want = format!("--directory={}", rootfs.display());
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == want.as_bytes()))
                && alive(*pid)
        })
        .collect()
}

/// The lab's cgroup of host `name` in every cgroup2 hierarchy (gone once its last
/// process is: a cgroup with processes cannot be removed).
fn cgroups_of(name: &str) -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 2 && f[2] == "cgroup2")
        .map(|f| Path::new(f[1]).join("provision-lab").join(name))
        .filter(|p| p.exists())
        .collect()
}

/// Poll `done` (every 200 ms) until it holds; panics with `what` after `limit`.
fn poll_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {}s",
            limit.as_secs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `command` (e.g. `systemctl reboot`) as root through the host's login (root, or sudo
/// for the image's user). The connection may be cut by the shutdown, so its status is not
/// checked here: the exit of the old nspawn is.
fn as_root(host: &LabHost, command: &str) -> std::process::Output {
    let sudo = if host.user == "root" { "" } else { "sudo -n " };
    host.ssh(&format!("{sudo}{command}")).expect("ssh runs")
}

fn reboot(host: &LabHost) -> std::process::Output {
    as_root(host, "systemctl reboot")
}

/// The boot id, once a plain login (strict host key checking, the lab's known_hosts)
/// works again; polled for up to 90 s.
fn boot_id_when_back(host: &LabHost) -> String {
    let mut id = String::new();
    poll_until(
        Duration::from_secs(90),
        "a login after the reboot",
        || match host.ssh(BOOT_ID) {
            Ok(o) if o.status.success() => {
                id = String::from_utf8_lossy(&o.stdout).trim().to_string();
                true
            }
            _ => false,
        },
    );
    id
}

/// The known_hosts line of the host's address, and the host key the host serves.
fn host_key_lines(host: &LabHost) -> (String, String) {
    let known = std::fs::read_to_string(&host.known_hosts).expect("known_hosts");
    let line = known
        .lines()
        .find(|l| l.starts_with(&format!("{},", host.address)))
        .unwrap_or_else(|| panic!("no known_hosts line for {}:\n{known}", host.address))
        .to_string();
    let served = remote(host, "cat /etc/ssh/ssh_host_ed25519_key.pub");
    (line, served)
}

/// Everything that shows the host is up at its old identity after the reboot.
fn assert_same_host_after_reboot(before: &LabHost, now: &LabHost, old_boot: &str, new_boot: &str) {
    assert_ne!(new_boot, old_boot, "the boot id did not change");
    assert!(!new_boot.is_empty());
    assert_eq!(remote(now, &format!("cat {MARKER}")), "before the reboot");
    assert_eq!(
        (&now.name, now.index, now.address, &now.user, now.os),
        (
            &before.name,
            before.index,
            before.address,
            &before.user,
            before.os
        )
    );
    assert_ne!(now.nspawn_pid, before.nspawn_pid, "a new nspawn");
    assert!(alive(now.nspawn_pid) && alive(now.leader_pid));
    assert!(!alive(before.nspawn_pid) && !alive(before.leader_pid));
    assert_eq!(nspawns_of(&now.root_dir), [now.nspawn_pid]);
    assert_eq!(remote(now, "hostname"), before.name);
    let inside = remote(now, "ip -4 -o addr show dev host0");
    assert!(
        inside.contains(&format!("{}/30", before.address)),
        "{inside}"
    );
    let gateway = lab::gateway_address(before.index);
    let outside = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", &now.iface])
        .output()
        .expect("ip");
    assert!(
        String::from_utf8_lossy(&outside.stdout).contains(&format!("{gateway}/30")),
        "machine side {}: {}",
        now.iface,
        String::from_utf8_lossy(&outside.stdout)
    );
}

/// The directory of a host in its lab's state (its root file system is below it).
fn host_dir(host: &LabHost) -> PathBuf {
    host.root_dir.parent().expect("host dir").to_path_buf()
}

/// The guard's lab, its host as created and that host's [`host_dir`] (to check that
/// nothing is left after the guard went).
fn as_created(guard: &LabGuard) -> (Lab, LabHost, PathBuf) {
    let host: LabHost = (**guard).clone();
    let dir = host_dir(&host);
    (guard.lab().clone(), host, dir)
}

/// After the host is gone: no process of it, no interface, no directory, no record.
fn assert_nothing_left(lab: &Lab, host: &LabHost, dir: &Path) {
    assert!(!alive(host.nspawn_pid), "nspawn {} alive", host.nspawn_pid);
    assert!(!alive(host.leader_pid), "init {} alive", host.leader_pid);
    assert_eq!(nspawns_of(&host.root_dir), Vec::<u32>::new());
    assert!(!iface_exists(&host.iface), "{} left behind", host.iface);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert_eq!(cgroups_of(&host.name), Vec::<PathBuf>::new());
    let st = lab.status().expect("status");
    assert!(st.iter().all(|s| s.name != host.name), "{st:?}");
}

#[test]
fn a_test_host_that_reboots_comes_back_by_itself() {
    if !skip_unless_lab() {
        return;
    }
    reboots_come_back(
        fresh_host(),
        &["systemctl reboot", "shutdown -r now", "reboot"],
    );
}

/// The image's sudo user (as a provider hands it out) reboots it with sudo.
#[test]
fn a_sudo_user_host_that_reboots_comes_back_by_itself() {
    if !skip_unless_lab() {
        return;
    }
    let guard = fresh_host_of(HostSpec::new(test_os()));
    assert_ne!(guard.user, "root");
    reboots_come_back(guard, &["systemctl reboot"]);
}

/// Reboot the guard's host with each command in turn: each time it is back at its old
/// identity with a new boot id, booted again by the guard's watcher; then the guard goes
/// and nothing is left.
fn reboots_come_back(guard: LabGuard, commands: &[&str]) {
    let (lab, created, dir) = as_created(&guard);
    remote(
        &created,
        &format!("set -e; echo 'before the reboot' > {MARKER}; sync"),
    );
    let (known_line, served_key) = host_key_lines(&created);
    // A running host is not booted a second time.
    let err = lab.restart_host(&created.name).unwrap_err();
    assert!(
        matches!(err, LabError::StillRunning { pid, .. } if pid == created.nspawn_pid),
        "{err}"
    );

    // Each way of rebooting; the watcher follows each new nspawn.
    let mut before = created.clone();
    let mut boot_ids = vec![remote(&before, BOOT_ID)];
    for (n, command) in commands.iter().enumerate() {
        let started = Instant::now();
        let o = as_root(&before, command);
        poll_until(Duration::from_secs(60), "the old nspawn exiting", || {
            !alive(before.nspawn_pid)
        });
        let new_boot = boot_id_when_back(&before);
        eprintln!(
            "{} as {}: reboot round trip (`{command}` to a login) {:.1}s",
            test_os(),
            before.user,
            started.elapsed().as_secs_f64()
        );
        let now = guard.current().expect("running again");
        assert_same_host_after_reboot(&before, &now, boot_ids.last().unwrap(), &new_boot);
        assert!(!boot_ids.contains(&new_boot), "{new_boot} seen before");
        assert_eq!(
            guard.watch_report(),
            WatchReport {
                restarts: n as u32 + 1,
                ended: None
            },
            "`{command}`: {o:?}"
        );
        // Strict host key checking passed with the key recorded at creation.
        assert_eq!(
            host_key_lines(&now),
            (known_line.clone(), served_key.clone())
        );
        boot_ids.push(new_boot);
        before = now;
    }
    let key = served_key.rsplit_once(' ').map_or(&*served_key, |(k, _)| k);
    assert!(known_line.ends_with(key), "{known_line} / {served_key}");

    drop(guard);
    assert_nothing_left(&lab, &before, &dir);
}

/// The guard dropped while its watcher boots the host again: the boot ends first, then
/// the host goes, with the processes of the new boot.
#[test]
fn a_test_host_dropped_while_booting_again_leaves_nothing() {
    if !skip_unless_lab() {
        return;
    }
    let guard = fresh_host();
    let (lab, created, dir) = as_created(&guard);
    let _ = reboot(&created);
    // `Creating` while the watcher holds the host's creation lock to boot it again.
    let mut seen = None;
    poll_until(
        Duration::from_secs(60),
        "the watcher booting it again",
        || {
            seen = lab
                .status()
                .expect("status")
                .into_iter()
                .find(|s| s.name == created.name);
            seen.as_ref()
                .is_some_and(|s| s.state == HostState::Creating)
        },
    );
    drop(guard);
    assert_nothing_left(&lab, &created, &dir);
}

#[test]
fn a_test_host_that_powers_off_is_left_alone() {
    if !skip_unless_lab() {
        return;
    }
    let guard = fresh_host();
    let (lab, before, dir) = as_created(&guard);
    let sudo = if before.user == "root" {
        ""
    } else {
        "sudo -n "
    };
    let _ = before.ssh(&format!("{sudo}systemctl poweroff"));
    // The watcher sees the exit, which is not a reboot, and stops watching.
    poll_until(
        Duration::from_secs(60),
        "the watcher seeing the exit",
        || guard.watch_report().ended.is_some(),
    );
    let report = guard.watch_report();
    assert_eq!(report.restarts, 0, "{report:?}");
    let ended = report.ended.unwrap_or_default();
    assert!(ended.contains("exit status: 0"), "{ended}");
    assert!(!alive(before.nspawn_pid));
    assert_eq!(nspawns_of(&before.root_dir), Vec::<u32>::new());
    let st = lab.status().expect("status");
    let mine = st.iter().find(|s| s.name == before.name).expect("listed");
    assert_eq!(mine.state, HostState::Stale, "{mine:?}");
    assert!(guard.current().is_err(), "not running");

    drop(guard);
    assert_nothing_left(&lab, &before, &dir);
}

#[test]
fn up_boots_again_a_host_that_rebooted_unwatched() {
    let Some((lab, state)) = scratch_lab("reboot") else {
        return;
    };
    let spec = default_spec();
    let first = lab.up(1, spec).expect("lab up 1");
    let before = first.hosts[0].clone();
    let dir = host_dir(&before);
    let old_boot = remote(&before, BOOT_ID);
    remote(
        &before,
        &format!("set -e; echo 'before the reboot' > {MARKER}; sync"),
    );

    let started = Instant::now();
    let _ = reboot(&before);
    poll_until(Duration::from_secs(60), "the host showing stale", || {
        lab.status()
            .expect("status")
            .iter()
            .any(|s| s.name == before.name && s.state == HostState::Stale)
    });
    let again = lab.up(1, spec).expect("lab up 1 again");
    eprintln!(
        "{}: reboot round trip through `lab up` {:.1}s",
        test_os(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(again.restarted, [before.name.as_str()]);
    assert!(again.created.is_empty(), "replaced: {:?}", again.created);
    assert!(again.unreachable.is_empty(), "{:?}", again.unreachable);
    let now = again.hosts[0].clone();
    let new_boot = remote(&now, BOOT_ID);
    assert_same_host_after_reboot(&before, &now, &old_boot, &new_boot);
    assert_in_inventory(&lab, &before.name);
    // A third `up` finds it running: nothing restarted, nothing created.
    let third = lab.up(1, spec).expect("lab up 1 a third time");
    assert!(third.restarted.is_empty() && third.created.is_empty());

    // As after a reboot of this machine: the host is down and its disk unmounted.
    let _ = as_root(&now, "systemctl poweroff");
    poll_until(Duration::from_secs(60), "the host powering off", || {
        !alive(now.nspawn_pid)
    });
    // The disk stayed mounted when nspawn exited (else this umount fails).
    let umount = std::process::Command::new("umount")
        .arg(&now.root_dir)
        .output()
        .expect("umount");
    assert!(umount.status.success(), "{umount:?}");
    assert!(!now.root_dir.join("etc").exists());
    let fourth = lab
        .up(1, spec)
        .expect("lab up 1 after the disk was unmounted");
    assert_eq!(fourth.restarted, [before.name.as_str()]);
    assert!(fourth.created.is_empty(), "replaced: {:?}", fourth.created);
    let now = fourth.hosts[0].clone();
    assert_eq!(remote(&now, &format!("cat {MARKER}")), "before the reboot");
    assert_eq!(now.address, before.address);

    let report = lab.down().expect("lab down");
    assert_eq!(report.hosts_removed, [before.name.as_str()]);
    assert_nothing_left(&lab, &now, &dir);
    std::fs::remove_dir_all(&state).expect("remove scratch state dir");
}

/// A host a run hardened (the lab's login refused) that rebooted unwatched is booted again
/// and kept, never removed: `lab up` does not destroy a host because its login is refused.
#[test]
fn up_keeps_a_hardened_host_that_rebooted() {
    let Some((lab, state)) = scratch_lab("reboot-kept") else {
        return;
    };
    // Short: the kept host's login is refused for as long as the lab waits.
    let lab = lab.with_ready_timeout(Duration::from_secs(8));
    let spec = default_spec();
    let before = lab.up(1, spec).expect("lab up 1").hosts[0].clone();
    let dir = host_dir(&before);
    // What a hardening run does to the lab's login, then a reboot.
    let keys = if before.user == "root" {
        "/root/.ssh/authorized_keys".to_string()
    } else {
        format!("/home/{}/.ssh/authorized_keys", before.user)
    };
    let _ = as_root(&before, &format!("rm {keys} && systemctl reboot"));
    poll_until(Duration::from_secs(60), "the host showing stale", || {
        lab.status()
            .expect("status")
            .iter()
            .any(|s| s.name == before.name && s.state == HostState::Stale)
    });

    let again = lab.up(0, spec).expect("lab up 0");
    assert!(again.restarted.is_empty(), "{:?}", again.restarted);
    assert_eq!(unreachable_names(&again), [before.name.as_str()]);
    let kept = &again.kept[0];
    assert_eq!((&kept.name, kept.address), (&before.name, before.address));
    assert!(alive(kept.nspawn_pid), "booted again and running");
    assert_ne!(kept.nspawn_pid, before.nspawn_pid);
    assert!(
        before.root_dir.join("etc/hostname").exists(),
        "its disk is kept"
    );
    assert_in_inventory(&lab, &before.name);

    let report = lab.down().expect("lab down");
    assert_eq!(report.hosts_removed, [before.name.as_str()]);
    assert_nothing_left(&lab, kept, &dir);
    std::fs::remove_dir_all(&state).expect("remove scratch state dir");
}

/// A test host a run hardened (the lab's login refused) is booted again after a reboot
/// too, and watched on: the watcher counts the boot once the lab's login stays refused for
/// its ready timeout, and boots it again on the next reboot.
#[test]
fn a_hardened_test_host_is_booted_again_and_watched_on() {
    if !skip_unless_lab() {
        return;
    }
    let lab = Lab::open_default()
        .expect("lab")
        .with_ready_timeout(Duration::from_secs(20));
    let guard = fresh_host_in_with(lab.clone(), default_spec());
    let created: LabHost = (*guard).clone();
    let dir = host_dir(&created);
    let keys = if created.user == "root" {
        "/root/.ssh/authorized_keys".to_string()
    } else {
        format!("/home/{}/.ssh/authorized_keys", created.user)
    };
    let _ = as_root(&created, &format!("rm {keys} && systemctl reboot"));
    let mut before = created.clone();
    for n in 1..=2u32 {
        poll_until(
            Duration::from_secs(90),
            "the watcher booting it again",
            || guard.watch_report().restarts == n,
        );
        assert_eq!(guard.watch_report().ended, None);
        let now = guard.current().expect("running");
        assert_ne!(now.nspawn_pid, before.nspawn_pid);
        assert!(alive(now.nspawn_pid) && !alive(before.nspawn_pid));
        assert_eq!(now.address, created.address);
        let o = now.ssh("true").expect("ssh");
        assert!(!o.status.success(), "the lab's login is refused");
        before = now;
        if n == 1 {
            // No login: reboot it from outside, in the container's namespaces.
            let o = std::process::Command::new("nsenter")
                .args(["--target", &before.leader_pid.to_string(), "--all", "--"])
                .args(["systemctl", "reboot"])
                .output()
                .expect("nsenter");
            assert!(o.status.success(), "{o:?}");
        }
    }
    drop(guard);
    assert_nothing_left(&lab, &before, &dir);
}
