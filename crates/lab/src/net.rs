//! Names, addresses, interfaces, NAT and cgroups of lab hosts.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::LabError;
use crate::sys::{cmd, run, succeeds};

/// Lab hosts use 10.77.N.0/30 for N in 1..=MAX_INDEX.
pub(crate) const MAX_INDEX: u32 = 254;
/// The lab's address range.
pub(crate) const LAB_NET: &str = "10.77.0.0/16";
/// Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
pub(crate) const IFNAME_MAX: usize = 15;

/// `lab7` for index 7.
pub fn host_name(index: u32) -> String {
    format!("lab{index}")
}

/// The index of a host name made by [`host_name`].
pub(crate) fn parse_host_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("lab")?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let index: u32 = digits.parse().ok()?;
    (1..=MAX_INDEX).contains(&index).then_some(index)
}

/// The host's own address: 10.77.N.2.
pub(crate) fn host_address(index: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, index_octet(index), 2)
}

/// The machine's side of the host's link: 10.77.N.1.
pub fn gateway_address(index: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, index_octet(index), 1)
}

fn index_octet(index: u32) -> u8 {
    u8::try_from(index.clamp(1, MAX_INDEX)).unwrap_or(u8::MAX)
}

/// The lowest index in 1..=MAX_INDEX not in `taken`.
pub(crate) fn lowest_free_index(taken: &std::collections::BTreeSet<u32>) -> Option<u32> {
    (1..=MAX_INDEX).find(|i| !taken.contains(i))
}

/// The name systemd-nspawn gives the machine side of `--network-veth` for a
/// short machine name (`ve-` + name). Longer names get shortened by nspawn,
/// so the real name is looked up with [`peer_of_host0`] when this is absent.
pub(crate) fn expected_iface(machine: &str) -> String {
    let mut name = format!("ve-{machine}");
    while name.len() > IFNAME_MAX {
        name.pop();
    }
    name
}

/// Whether network interface `name` exists in this network namespace.
pub(crate) fn iface_exists(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && Path::new("/sys/class/net").join(name).exists()
}

/// Parse `ip -o link show host0` output (`2: host0@if7: <...>`) into the peer's ifindex.
pub(crate) fn parse_peer_ifindex(ip_link_line: &str) -> Option<u32> {
    let field = ip_link_line.split(':').nth(1)?.trim();
    let (_, peer) = field.split_once("@if")?;
    peer.parse().ok()
}

/// The name of the interface with `ifindex` in this namespace.
pub(crate) fn iface_by_index(ifindex: u32) -> Option<String> {
    let dir = std::fs::read_dir("/sys/class/net").ok()?;
    for entry in dir.flatten() {
        let idx = std::fs::read_to_string(entry.path().join("ifindex")).ok();
        if idx.and_then(|s| s.trim().parse::<u32>().ok()) == Some(ifindex) {
            return Some(entry.file_name().to_string_lossy().into_owned());
        }
    }
    None
}

/// The machine-side peer of `host0` inside the container whose init is `leader`.
pub(crate) fn peer_of_host0(leader: u32) -> Option<String> {
    let out = cmd("nsenter")
        .args([
            "-t",
            &leader.to_string(),
            "-n",
            "--",
            "ip",
            "-o",
            "link",
            "show",
            "host0",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    iface_by_index(parse_peer_ifindex(text.lines().next()?)?)
}

/// Give the machine side of host `index`'s link its address and bring it up.
pub(crate) fn configure_machine_side(iface: &str, index: u32) -> Result<(), LabError> {
    let addr = format!("{}/30", gateway_address(index));
    run(
        cmd("ip").args(["addr", "replace", &addr, "dev", iface]),
        "is another lab or network using 10.77.0.0/16 on this machine? `ip -br addr` shows it",
    )?;
    run(
        cmd("ip").args(["link", "set", "dev", iface, "up"]),
        "the interface is created by systemd-nspawn --network-veth",
    )?;
    Ok(())
}

/// Delete interface `name` if it exists; tells whether it was deleted.
pub(crate) fn delete_iface(name: &str) -> bool {
    iface_exists(name) && succeeds(cmd("ip").args(["link", "delete", "dev", name]))
}

// ---------------------------------------------------------------- NAT

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Kernel limits the lab raises (path, minimum, marker file holding the original value).
const INOTIFY_LIMITS: [(&str, u64, &str); 2] = [
    (
        "/proc/sys/fs/inotify/max_user_instances",
        8192,
        "inotify_instances.orig",
    ),
    (
        "/proc/sys/fs/inotify/max_user_watches",
        1_048_576,
        "inotify_watches.orig",
    ),
];

fn nat_rule() -> [&'static str; 5] {
    ["POSTROUTING", "-s", LAB_NET, "-j", "MASQUERADE"]
}

fn iptables(args: &[&str]) -> std::process::Command {
    let mut c = cmd("iptables");
    c.arg("-w").args(args);
    c
}

/// Turn on IPv4 forwarding and add the MASQUERADE rule for the lab range,
/// recording in `run_dir` what was changed so [`teardown_nat`] undoes
/// exactly that. The caller holds the lab's global lock.
pub(crate) fn ensure_nat(run_dir: &Path) -> Result<(), LabError> {
    let forward =
        std::fs::read_to_string(IP_FORWARD).map_err(|e| LabError::io("reading", IP_FORWARD, e))?;
    if forward.trim() != "1" {
        let marker = run_dir.join("ip_forward.orig");
        if !marker.exists() {
            crate::sys::write_atomic(&marker, forward.trim().as_bytes(), 0o644)?;
        }
        std::fs::write(IP_FORWARD, "1\n").map_err(|e| LabError::io("writing", IP_FORWARD, e))?;
        tracing::info!("enabled net.ipv4.ip_forward for the lab");
    }
    // Every host's systemd takes inotify instances; the kernel default (128 per user)
    // runs out at a few dozen hosts ("Failed to allocate manager object").
    for (path, minimum, marker) in INOTIFY_LIMITS {
        let current: u64 = std::fs::read_to_string(path)
            .map_err(|e| LabError::io("reading", path, e))?
            .trim()
            .parse()
            .unwrap_or(0);
        if current < minimum {
            let marker = run_dir.join(marker);
            if !marker.exists() {
                crate::sys::write_atomic(&marker, current.to_string().as_bytes(), 0o644)?;
            }
            std::fs::write(path, format!("{minimum}\n"))
                .map_err(|e| LabError::io("writing", path, e))?;
            tracing::info!("raised {path} from {current} to {minimum} for the lab");
        }
    }
    let rule = nat_rule();
    let mut check = vec!["-t", "nat", "-C"];
    check.extend(rule);
    if !succeeds(&mut iptables(&check)) {
        let mut add = vec!["-t", "nat", "-A"];
        add.extend(rule);
        run(
            &mut iptables(&add),
            "the lab needs iptables NAT (nf_tables or legacy) on this machine",
        )?;
        crate::sys::write_atomic(&run_dir.join("nat-rule-added"), b"1\n", 0o644)?;
        tracing::info!("added iptables MASQUERADE rule for {LAB_NET}");
    }
    // Addresses of the lab range that belong to no host must go nowhere (without this
    // route they would follow the default route out of the machine). Each host's /30 is
    // more specific and still wins.
    let existing = run(
        cmd("ip").args(["route", "show", "exact", LAB_NET]),
        "the lab needs iproute2 on this machine",
    )?;
    if existing.stdout.iter().all(u8::is_ascii_whitespace) {
        run(
            cmd("ip").args(["route", "add", "unreachable", LAB_NET]),
            "adding the lab's unreachable route",
        )?;
        crate::sys::write_atomic(&run_dir.join("unreachable-route-added"), b"1\n", 0o644)?;
        tracing::info!("added unreachable route for {LAB_NET}");
    }
    // A DROP policy on FORWARD (e.g. Docker on the machine) would cut the hosts off.
    let policy = run(
        &mut iptables(&["-S", "FORWARD"]),
        "the lab needs iptables on this machine",
    )?;
    let policy = String::from_utf8_lossy(&policy.stdout);
    if !policy.lines().any(|l| l.trim() == "-P FORWARD ACCEPT") {
        for rule in forward_rules() {
            let mut check = vec!["-C"];
            check.extend(rule);
            if !succeeds(&mut iptables(&check)) {
                let mut add = vec!["-I"];
                add.extend(rule);
                run(
                    &mut iptables(&add),
                    "the lab needs iptables on this machine",
                )?;
                crate::sys::write_atomic(&run_dir.join("forward-rules-added"), b"1\n", 0o644)?;
            }
        }
    }
    Ok(())
}

fn forward_rules() -> [[&'static str; 5]; 2] {
    [
        ["FORWARD", "-s", LAB_NET, "-j", "ACCEPT"],
        ["FORWARD", "-d", LAB_NET, "-j", "ACCEPT"],
    ]
}

/// What [`teardown_nat`] undid.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NatTeardown {
    /// The MASQUERADE rule was removed.
    pub nat_rule_removed: bool,
    /// ip_forward was set back to its value before the lab.
    pub ip_forward_restored: bool,
}

/// Undo what [`ensure_nat`] recorded. The caller holds the global lock and
/// has checked that no lab host remains.
pub(crate) fn teardown_nat(run_dir: &Path) -> NatTeardown {
    let mut done = NatTeardown::default();
    let nat_marker = run_dir.join("nat-rule-added");
    if nat_marker.exists() {
        let rule = nat_rule();
        let mut del = vec!["-t", "nat", "-D"];
        del.extend(rule);
        let mut check = vec!["-t", "nat", "-C"];
        check.extend(rule);
        while succeeds(&mut iptables(&check)) {
            if !succeeds(&mut iptables(&del)) {
                break;
            }
            done.nat_rule_removed = true;
        }
        let _ = std::fs::remove_file(&nat_marker);
    }
    let fwd_marker = run_dir.join("forward-rules-added");
    if fwd_marker.exists() {
        for rule in forward_rules() {
            let mut del = vec!["-D"];
            del.extend(rule);
            let _ = succeeds(&mut iptables(&del));
        }
        let _ = std::fs::remove_file(&fwd_marker);
    }
    let route_marker = run_dir.join("unreachable-route-added");
    if route_marker.exists() {
        let _ = succeeds(cmd("ip").args(["route", "del", "unreachable", LAB_NET]));
        let _ = std::fs::remove_file(&route_marker);
    }
    for (path, _, marker) in INOTIFY_LIMITS {
        let marker = run_dir.join(marker);
        if let Ok(orig) = std::fs::read_to_string(&marker) {
            if orig.trim().parse::<u64>().is_ok() {
                let _ = std::fs::write(path, format!("{}\n", orig.trim()));
            }
            let _ = std::fs::remove_file(&marker);
        }
    }
    let fwd = run_dir.join("ip_forward.orig");
    if let Ok(orig) = std::fs::read_to_string(&fwd) {
        let orig = orig.trim();
        if (orig == "0" || orig == "1") && std::fs::write(IP_FORWARD, format!("{orig}\n")).is_ok() {
            done.ip_forward_restored = true;
        }
        let _ = std::fs::remove_file(&fwd);
    }
    done
}

// ---------------------------------------------------------------- cgroups

/// Name of the lab's cgroup directory in each hierarchy.
pub(crate) const CGROUP_DIR: &str = "provision-lab";

/// Roots of the hierarchies a container's cgroup must be set up in: every
/// cgroup2 mount (the unified hierarchy) and the v1 `name=systemd` one.
pub(crate) fn cgroup_roots() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    parse_cgroup_roots(&text)
}

/// See [`cgroup_roots`]; split out for tests.
pub(crate) fn parse_cgroup_roots(mounts: &str) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        let is_root = match f[2] {
            "cgroup2" => true,
            "cgroup" => f[3].split(',').any(|o| o == "name=systemd"),
            _ => false,
        };
        let path = PathBuf::from(f[1]);
        if is_root && !roots.contains(&path) {
            roots.push(path);
        }
    }
    roots
}

/// Whether this machine has a cgroup2 hierarchy (needed: the hosts get a
/// unified hierarchy so that Docker inside can create cgroups).
pub(crate) fn has_cgroup2(mounts: &str) -> bool {
    mounts
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("cgroup2"))
}

/// Create the cgroup `provision-lab/NAME` in every root; returns the dirs.
pub(crate) fn create_cgroups(name: &str) -> Result<Vec<PathBuf>, LabError> {
    let mut dirs = Vec::new();
    for root in cgroup_roots() {
        let dir = root.join(CGROUP_DIR).join(name);
        std::fs::create_dir_all(&dir).map_err(|e| LabError::io("creating cgroup", &dir, e))?;
        dirs.push(dir);
    }
    Ok(dirs)
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
    out.push(dir.to_path_buf());
}

fn remove_cgroup_tree(dir: &Path) -> bool {
    if !dir.exists() {
        return true;
    }
    for _ in 0..40 {
        let mut dirs = Vec::new();
        collect_dirs(dir, &mut dirs); // children before parents
        for d in &dirs {
            let _ = std::fs::remove_dir(d);
        }
        if !dir.exists() {
            return true;
        }
        // Just-exited processes can keep a cgroup busy for a moment.
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Remove host `name`'s cgroups (after its processes are gone).
pub(crate) fn remove_cgroups(name: &str) -> bool {
    let mut ok = true;
    for root in cgroup_roots() {
        ok &= remove_cgroup_tree(&root.join(CGROUP_DIR).join(name));
    }
    ok
}

/// Remove the empty `provision-lab` cgroup parents (when no host remains).
pub(crate) fn remove_cgroup_parents() {
    for root in cgroup_roots() {
        let _ = std::fs::remove_dir(root.join(CGROUP_DIR));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn names_and_addresses() {
        assert_eq!(host_name(3), "lab3");
        assert_eq!(parse_host_name("lab3"), Some(3));
        assert_eq!(parse_host_name("lab254"), Some(254));
        assert_eq!(parse_host_name("lab255"), None);
        assert_eq!(parse_host_name("lab0"), None);
        assert_eq!(parse_host_name("lab03"), None);
        assert_eq!(parse_host_name("lab"), None);
        assert_eq!(parse_host_name("web1"), None);
        assert_eq!(host_address(3), Ipv4Addr::new(10, 77, 3, 2));
        assert_eq!(gateway_address(254), Ipv4Addr::new(10, 77, 254, 1));
        for i in 1..=MAX_INDEX {
            assert_eq!(parse_host_name(&host_name(i)), Some(i));
        }
    }

    #[test]
    fn allocation_picks_lowest_free() {
        let mut taken = BTreeSet::new();
        assert_eq!(lowest_free_index(&taken), Some(1));
        taken.extend([1, 2, 4]);
        assert_eq!(lowest_free_index(&taken), Some(3));
        let full: BTreeSet<u32> = (1..=MAX_INDEX).collect();
        assert_eq!(lowest_free_index(&full), None);
    }

    #[test]
    fn iface_names_fit_ifnamsiz() {
        assert_eq!(expected_iface("lab1"), "ve-lab1");
        assert_eq!(expected_iface(&host_name(MAX_INDEX)), "ve-lab254");
        assert_eq!(expected_iface("a-very-long-machine-name").len(), IFNAME_MAX);
    }

    #[test]
    fn peer_ifindex_parsing() {
        let line = "2: host0@if7: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue";
        assert_eq!(parse_peer_ifindex(line), Some(7));
        assert_eq!(parse_peer_ifindex("1: lo: <LOOPBACK,UP>"), None);
    }

    #[test]
    fn cgroup_roots_hybrid_and_unified() {
        let hybrid = "\
tmpfs /sys/fs/cgroup tmpfs rw 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
";
        assert_eq!(
            parse_cgroup_roots(hybrid),
            vec![
                PathBuf::from("/sys/fs/cgroup/systemd"),
                PathBuf::from("/sys/fs/cgroup/unified")
            ]
        );
        assert!(has_cgroup2(hybrid));
        let unified = "cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n";
        assert_eq!(
            parse_cgroup_roots(unified),
            vec![PathBuf::from("/sys/fs/cgroup")]
        );
        let legacy = "cgroup /sys/fs/cgroup/systemd cgroup rw,name=systemd 0 0\n";
        assert!(!has_cgroup2(legacy));
    }
}
