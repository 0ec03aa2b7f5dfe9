//! Creating, booting, checking and destroying one lab host.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::net;
use crate::os::{Login, Os};
use crate::sys::{self, FileLock, cmd, run, shell_quote, write_atomic, write_file};
use crate::{BaseImage, Lab, LabError, LabHost};

/// Flags given to `systemd-nspawn` besides directory, machine name and
/// `--boot`. See the crate docs for why each is there.
pub(crate) const NSPAWN_FLAGS: &[&str] = &[
    "--register=no",
    "--keep-unit",
    "--network-veth",
    "--link-journal=no",
    "--resolv-conf=off",
    "--timezone=off",
    "--console=read-only",
    "--system-call-filter=@keyring bpf",
];

/// The exit status of `systemd-nspawn --boot` when the OS inside rebooted
/// (`systemctl reboot`, `shutdown -r`, `reboot`): the container is gone and
/// nothing starts it again unless the lab does ([`crate::Lab::restart_host`]).
#[cfg(any(test, feature = "testing"))]
pub(crate) const NSPAWN_REBOOT_EXIT: i32 = 133;

/// Environment for `systemd-nspawn`.
pub(crate) const NSPAWN_ENV: &[(&str, &str)] = &[
    // cgroup v2 inside: on a hybrid host nspawn otherwise mounts the v1
    // controllers read-only and Docker's runc cannot create its cgroups.
    ("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1"),
    // No colour codes in the boot log.
    ("TERM", "dumb"),
];

/// What the lab records about a host in `hosts/NAME/host.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct HostRecord {
    pub name: String,
    pub index: u32,
    pub address: Ipv4Addr,
    pub rootfs: PathBuf,
    pub nspawn_pid: u32,
    pub nspawn_starttime: Option<u64>,
    pub leader_pid: u32,
    pub leader_starttime: Option<u64>,
    pub iface: String,
    /// For hosts of tests (`testing::fresh_host`): the process that owns
    /// the host; once it is gone the host is an orphan and gets reaped.
    #[serde(default)]
    pub owner_pid: Option<u32>,
    #[serde(default)]
    pub owner_starttime: Option<u64>,
    /// Its OS (records of earlier versions: Debian 12).
    #[serde(default = "legacy_os")]
    pub os: Os,
    /// How the lab key logs in (records of earlier versions: root).
    #[serde(default = "legacy_login")]
    pub login: Login,
}

fn legacy_os() -> Os {
    Os::Debian12
}

fn legacy_login() -> Login {
    Login::Root
}

pub(crate) const RECORD: &str = "host.json";
pub(crate) const CREATING_LOCK: &str = ".creating.lock";
pub(crate) const LOG: &str = "nspawn.log";
pub(crate) const ROOTFS: &str = "rootfs";
pub(crate) const DISK: &str = "disk.img";

pub(crate) fn read_record(host_dir: &Path) -> Option<HostRecord> {
    let text = std::fs::read_to_string(host_dir.join(RECORD)).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_record(host_dir: &Path, record: &HostRecord) -> Result<(), LabError> {
    let text = serde_json::to_string_pretty(record).map_err(|e| LabError::BadState {
        path: host_dir.join(RECORD),
        detail: e.to_string(),
    })?;
    write_atomic(&host_dir.join(RECORD), text.as_bytes(), 0o644)
}

impl HostRecord {
    pub(crate) fn nspawn_alive(&self) -> bool {
        sys::pid_alive(self.nspawn_pid, self.nspawn_starttime)
    }

    /// Owned by a process that has exited.
    pub(crate) fn orphaned(&self) -> bool {
        self.owner_pid
            .is_some_and(|p| !sys::pid_alive(p, self.owner_starttime))
    }
}

/// ssh options shared by every lab ssh invocation.
pub(crate) fn ssh_base(identity: &Path, known_hosts: &Path, connect_timeout: u32) -> Command {
    let mut c = cmd("ssh");
    c.arg("-F")
        .arg("/dev/null")
        .arg("-i")
        .arg(identity)
        .args(["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ControlMaster=no",
            "-o",
            "ControlPath=none",
            "-o",
            "LogLevel=ERROR",
        ])
        .arg("-o")
        .arg(format!("ConnectTimeout={connect_timeout}"));
    c
}

/// Nameserver lines for the hosts from the machine's resolver config,
/// skipping loopback resolvers a container cannot reach.
pub(crate) fn resolv_conf_for_hosts(machine_resolv: &str, fallback: Option<&str>) -> String {
    let usable = |text: &str| -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| {
                let mut w = l.split_whitespace();
                match (w.next(), w.next()) {
                    (Some("nameserver"), Some(addr)) => addr
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|a| !a.is_loopback()),
                    (Some("search" | "options" | "domain"), Some(_)) => true,
                    _ => false,
                }
            })
            .map(str::to_string)
            .collect()
    };
    let mut lines = usable(machine_resolv);
    if !lines.iter().any(|l| l.starts_with("nameserver"))
        && let Some(fb) = fallback
    {
        lines = usable(fb);
    }
    let mut out = String::from("# Written by provision-lab from the machine's resolver.\n");
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn random_machine_id() -> Result<String, LabError> {
    let path = "/proc/sys/kernel/random/uuid";
    let uuid = std::fs::read_to_string(path).map_err(|e| LabError::io("reading", path, e))?;
    Ok(uuid.trim().replace('-', ""))
}

/// The systemd-networkd config giving host0 its static address.
pub(crate) fn host0_network(index: u32) -> String {
    format!(
        "# Written by provision-lab.\n[Match]\nName=host0\n\n[Network]\nAddress={}/30\nGateway={}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
        net::host_address(index),
        net::gateway_address(index)
    )
}

/// uid and gid of `user` in the passwd file of `rootfs`.
fn ids_of(rootfs: &Path, user: &str) -> Result<(u32, u32), LabError> {
    let path = rootfs.join("etc/passwd");
    let text = std::fs::read_to_string(&path).map_err(|e| LabError::io("reading", &path, e))?;
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == user)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .ok_or_else(|| LabError::BadState {
            path,
            detail: format!("no user `{user}` in the image"),
        })
}

/// What cloud-init puts in root's authorized_keys when it hands out a
/// default user: the key authenticates, then the login is refused.
pub(crate) fn cloud_init_root_refusal(user: &str, key: &str) -> String {
    format!(
        "no-port-forwarding,no-agent-forwarding,no-X11-forwarding,command=\"echo 'Please login as the user \\\"{user}\\\" rather than the user \\\"root\\\".';echo;sleep 10;exit 142\" {}\n",
        key.trim()
    )
}

/// Install `contents` as `~user/.ssh/authorized_keys` in `rootfs`.
fn write_authorized_keys(rootfs: &Path, user: &str, contents: &str) -> Result<(), LabError> {
    let (uid, gid) = ids_of(rootfs, user)?;
    let home = if user == "root" {
        rootfs.join("root")
    } else {
        rootfs.join("home").join(user)
    };
    let ssh_dir = home.join(".ssh");
    std::fs::create_dir_all(&ssh_dir)
        .map_err(|e| LabError::io("creating directory", &ssh_dir, e))?;
    set_mode(&ssh_dir, 0o700)?;
    let keys = ssh_dir.join("authorized_keys");
    write_file(&keys, contents)?;
    set_mode(&keys, 0o600)?;
    for p in [&ssh_dir, &keys] {
        std::os::unix::fs::chown(p, Some(uid), Some(gid))
            .map_err(|e| LabError::io("changing owner of", p, e))?;
    }
    Ok(())
}

/// Per-host files: identity, network, resolver, ssh keys.
fn customize(
    rootfs: &Path,
    name: &str,
    index: u32,
    os: Os,
    login: Login,
    authorized_key: &str,
) -> Result<String, LabError> {
    write_file(&rootfs.join("etc/hostname"), &format!("{name}\n"))?;
    write_file(
        &rootfs.join("etc/hosts"),
        &format!(
            "127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
        ),
    )?;
    write_file(
        &rootfs.join("etc/machine-id"),
        &format!("{}\n", random_machine_id()?),
    )?;
    // minbase has no locale config; pam_env complains on every login without it.
    let locale = rootfs.join("etc/default/locale");
    if !locale.exists() {
        write_file(&locale, "LANG=C.UTF-8\n")?;
    }
    let machine_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let fallback = std::fs::read_to_string("/run/systemd/resolve/resolv.conf").ok();
    write_file(
        &rootfs.join("etc/resolv.conf"),
        &resolv_conf_for_hosts(&machine_resolv, fallback.as_deref()),
    )?;
    write_file(
        &rootfs.join("etc/systemd/network/10-provision-lab-host0.network"),
        &host0_network(index),
    )?;
    match login {
        Login::Root => write_authorized_keys(rootfs, "root", authorized_key)?,
        Login::DefaultUser => {
            let user = os.default_user();
            write_authorized_keys(rootfs, user, authorized_key)?;
            write_authorized_keys(
                rootfs,
                "root",
                &cloud_init_root_refusal(user, authorized_key),
            )?;
        }
    }

    // Fresh host keys (ed25519 and ecdsa; RSA would cost a second per host).
    for (kind, file) in [
        ("ed25519", "ssh_host_ed25519_key"),
        ("ecdsa", "ssh_host_ecdsa_key"),
    ] {
        let key = rootfs.join("etc/ssh").join(file);
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(key.with_extension("pub"));
        run(
            cmd("ssh-keygen")
                .args(["-q", "-t", kind, "-N", "", "-C"])
                .arg(format!("root@{name}"))
                .arg("-f")
                .arg(&key),
            "apt-get install -y openssh-client",
        )?;
    }
    let pubkey_path = rootfs.join("etc/ssh/ssh_host_ed25519_key.pub");
    let pubkey = std::fs::read_to_string(&pubkey_path)
        .map_err(|e| LabError::io("reading", &pubkey_path, e))?;
    let mut words = pubkey.split_whitespace();
    match (words.next(), words.next()) {
        (Some(kind), Some(key)) => Ok(format!("{kind} {key}")),
        _ => Err(LabError::BadState {
            path: pubkey_path,
            detail: "not an ssh public key".into(),
        }),
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| LabError::io("setting permissions of", path, e))
}

/// known_hosts text with the line for `address` replaced by `key` (or removed).
/// The line matches every port of the address (`[addr]:*`), so a host whose
/// sshd moved to another port is still checked strictly.
pub(crate) fn update_known_hosts(text: &str, address: Ipv4Addr, key: Option<&str>) -> String {
    let addr = address.to_string();
    let mut out: String = text
        .lines()
        .filter(|l| {
            let first = l.split_whitespace().next().unwrap_or("");
            !first
                .split(',')
                .any(|h| h == addr || h == format!("[{addr}]:22") || h == format!("[{addr}]:*"))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    if let Some(key) = key {
        out.push_str(&format!("{addr},[{addr}]:* {key}\n"));
    }
    out
}

/// Rewrite the lab known_hosts under the global lock.
pub(crate) fn set_known_host(
    lab: &Lab,
    address: Ipv4Addr,
    key: Option<&str>,
) -> Result<(), LabError> {
    let _g = lab.global_lock()?;
    let path = lab.known_hosts_path();
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let new = update_known_hosts(&text, address, key);
    if new != text {
        write_atomic(&path, new.as_bytes(), 0o644)?;
    }
    Ok(())
}

/// A reserved slot and host directory, with the creation lock held.
pub(crate) struct Allocation {
    pub index: u32,
    pub name: String,
    pub dir: PathBuf,
    /// Held until creation is over: others see the host as "creating".
    pub _creating: FileLock,
}

/// Reserve the lowest free index, machine-wide (across all lab state dirs):
/// `RUN/slots/N` names the owning host directory; a slot whose directory is
/// gone is free again.
pub(crate) fn allocate(lab: &Lab) -> Result<Allocation, LabError> {
    let _g = lab.global_lock()?;
    let slots = lab.slots_dir();
    std::fs::create_dir_all(&slots).map_err(|e| LabError::io("creating directory", &slots, e))?;
    let hosts = lab.hosts_dir();
    std::fs::create_dir_all(&hosts).map_err(|e| LabError::io("creating directory", &hosts, e))?;
    let mut taken = live_slots(lab)?;
    loop {
        let Some(index) = net::lowest_free_index(&taken) else {
            return Err(LabError::NoFreeSlot {
                max: net::MAX_INDEX,
                slots_dir: slots,
            });
        };
        let name = net::host_name(index);
        let dir = hosts.join(&name);
        let slot = slots.join(index.to_string());
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // A leftover of this lab without a slot (e.g. the run dir was
                // cleared): keep it reserved for `down` to clean up.
                tracing::warn!(dir = %dir.display(), "stale lab host directory; `provision lab down` removes it");
                write_atomic(&slot, dir.to_string_lossy().as_bytes(), 0o644)?;
                taken.insert(index);
                continue;
            }
            Err(e) => return Err(LabError::io("creating directory", &dir, e)),
        }
        write_atomic(&slot, dir.to_string_lossy().as_bytes(), 0o644)?;
        let creating = FileLock::acquire_in_existing_dir(&dir.join(CREATING_LOCK))?;
        return Ok(Allocation {
            index,
            name,
            dir,
            _creating: creating,
        });
    }
}

/// Indices whose slot's host directory still exists; stale slots are removed.
/// The caller holds the global lock.
pub(crate) fn live_slots(lab: &Lab) -> Result<std::collections::BTreeSet<u32>, LabError> {
    let slots = lab.slots_dir();
    let mut taken = std::collections::BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(&slots) else {
        return Ok(taken);
    };
    for e in entries.flatten() {
        let Some(index) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let owner = std::fs::read_to_string(e.path()).unwrap_or_default();
        if !owner.is_empty() && Path::new(owner.trim()).is_dir() {
            taken.insert(index);
        } else {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(taken)
}

/// Copy the image, personalize it, boot it, wire its link and wait for ssh.
/// On error the caller tears the host down.
pub(crate) fn build_and_boot(
    lab: &Lab,
    image: &BaseImage,
    alloc: &Allocation,
    login: Login,
    owned: bool,
) -> Result<LabHost, LabError> {
    let started = Instant::now();
    let (index, name, dir) = (alloc.index, alloc.name.as_str(), alloc.dir.as_path());
    let rootfs = dir.join(ROOTFS);
    let address = net::host_address(index);

    // A sparse copy of the image file, loop-mounted: a real ext4 for Docker's
    // overlay2, made in a fraction of a second (copying the tree file by
    // file costs seconds per host, and much more right after hosts were
    // deleted: ext4 then skips recently freed inodes one by one).
    let disk = dir.join(DISK);
    run(
        cmd("cp")
            .args(["--sparse=always", "--reflink=auto"])
            .arg(&image.path)
            .arg(&disk),
        "is there enough free space under the lab state directory?",
    )?;
    std::fs::create_dir(&rootfs).map_err(|e| LabError::io("creating directory", &rootfs, e))?;
    mount_disk(&disk, &rootfs)?;
    let copied = started.elapsed();
    let pubkey_path = lab.identity_file().with_extension("pub");
    let authorized = std::fs::read_to_string(&pubkey_path)
        .map_err(|e| LabError::io("reading", &pubkey_path, e))?;
    let host_key = customize(&rootfs, name, index, image.os, login, &authorized)?;
    set_known_host(lab, address, Some(&host_key))?;

    let record = HostRecord {
        name: name.to_string(),
        index,
        address,
        rootfs,
        nspawn_pid: 0,
        nspawn_starttime: None,
        leader_pid: 0,
        leader_starttime: None,
        iface: net::expected_iface(name),
        owner_pid: owned.then(std::process::id),
        owner_starttime: if owned {
            sys::proc_starttime(std::process::id())
        } else {
            None
        },
        os: image.os,
        login,
    };
    tracing::debug!(
        host = name,
        copy_ms = copied.as_millis() as u64,
        "lab host disk ready"
    );
    boot(lab, dir, record, &|| false)
}

/// Boot a recorded host again from its disk after its nspawn exited (a
/// reboot inside, a crash, or this machine rebooted): same index, address,
/// name, host keys, login, OS and owner; a new nspawn, init and link. The
/// caller holds its creation lock; `stop` ends the wait for ssh early.
pub(crate) fn boot_again(
    lab: &Lab,
    dir: &Path,
    stop: &dyn Fn() -> bool,
) -> Result<LabHost, LabError> {
    let record = read_record(dir).ok_or_else(|| LabError::BadState {
        path: dir.join(RECORD),
        detail: "no readable host record; the host cannot be booted again".into(),
    })?;
    if let Some(pid) = [
        (record.nspawn_pid, record.nspawn_starttime),
        (record.leader_pid, record.leader_starttime),
    ]
    .into_iter()
    .find_map(|(p, s)| sys::pid_alive(p, s).then_some(p))
    {
        return Err(LabError::StillRunning {
            name: record.name.clone(),
            pid,
        });
    }
    // The disk stays mounted when nspawn exits; after a reboot of this
    // machine it is mounted again.
    if !sys::mounts_under(&record.rootfs).contains(&record.rootfs) {
        let disk = dir.join(DISK);
        tracing::info!(host = %record.name, disk = %disk.display(), "mounting the host's disk again");
        mount_disk(&disk, &record.rootfs)?;
    }
    claim_slot(lab, record.index, dir)?;
    boot(lab, dir, record, stop)
}

fn mount_disk(disk: &Path, rootfs: &Path) -> Result<(), LabError> {
    run(
        cmd("mount").args(["-o", "loop"]).arg(disk).arg(rootfs),
        "the lab needs loop devices (modprobe loop)",
    )?;
    Ok(())
}

/// Make `RUN/slots/N` name `dir` again (the run directory is gone after a
/// reboot of this machine); an index another host holds is an error.
fn claim_slot(lab: &Lab, index: u32, dir: &Path) -> Result<(), LabError> {
    let _g = lab.global_lock()?;
    let slot = lab.slots_dir().join(index.to_string());
    let owner = std::fs::read_to_string(&slot).unwrap_or_default();
    let owner = Path::new(owner.trim());
    if owner.as_os_str().is_empty() || owner == dir || !owner.is_dir() {
        if owner != dir {
            write_atomic(&slot, dir.to_string_lossy().as_bytes(), 0o644)?;
        }
        return Ok(());
    }
    Err(LabError::BadState {
        path: slot,
        detail: format!(
            "address slot {index} belongs to {} now; {} cannot boot again",
            owner.display(),
            dir.display()
        ),
    })
}

/// The boot half of a host, shared by creation and [`boot_again`]: its
/// cgroups (and NAT) set up, nspawn started and recorded, the machine side of
/// its veth configured, then ssh waited for (until `stop` says so). `record`
/// has the host's identity; its process and link fields are filled in here.
fn boot(
    lab: &Lab,
    dir: &Path,
    mut record: HostRecord,
    stop: &dyn Fn() -> bool,
) -> Result<LabHost, LabError> {
    let started = Instant::now();
    let name = record.name.clone();
    let iface_guess = net::expected_iface(&name);
    let cgroups = {
        let _g = lab.global_lock()?;
        net::ensure_nat(lab.run_dir())?;
        // A leftover link of a crashed host with this index would clash.
        if net::delete_iface(&iface_guess) {
            tracing::warn!(iface = %iface_guess, "removed a stale lab interface");
        }
        net::remove_cgroups(&name);
        net::create_cgroups(&name)?
    };

    let log = dir.join(LOG);
    let (nspawn_pid, nspawn_starttime) = spawn_nspawn(&record.rootfs, &name, &cgroups, &log)?;
    record.nspawn_pid = nspawn_pid;
    record.nspawn_starttime = nspawn_starttime;
    record.leader_pid = 0;
    record.leader_starttime = None;
    record.iface = iface_guess;
    write_record(dir, &record)?;

    let (leader, iface) = wait_for_leader_and_link(&record, &log)?;
    record.leader_pid = leader;
    record.leader_starttime = sys::proc_starttime(leader);
    record.iface = iface;
    write_record(dir, &record)?;
    net::configure_machine_side(&record.iface, record.index)?;
    let booted = started.elapsed();

    let host = lab.host_from_record(&record);
    wait_ready(&host, &record, &log, lab.ready_timeout, stop)?;
    tracing::info!(
        host = %name,
        address = %record.address,
        spawn_ms = booted.as_millis() as u64,
        ready_ms = started.elapsed().as_millis() as u64,
        "lab host ready"
    );
    Ok(host)
}

/// Start `systemd-nspawn` in its own session, in the host's own cgroups,
/// stdin from /dev/null and output to `log`. Returns its pid and start time.
fn spawn_nspawn(
    rootfs: &Path,
    name: &str,
    cgroups: &[PathBuf],
    log: &Path,
) -> Result<(u32, Option<u64>), LabError> {
    // Appended: after a reboot the log of the boot before stays readable.
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| LabError::io("creating log", log, e))?;
    let log_err = log_file
        .try_clone()
        .map_err(|e| LabError::io("creating log", log, e))?;
    // The shell moves itself into the host's cgroups, then becomes
    // `setsid systemd-nspawn ...` (same pid: it is not a group leader).
    // nspawn then puts the container below that cgroup, not at the root.
    let mut script = String::from("set -e; ");
    for cg in cgroups {
        script.push_str(&format!(
            "echo $$ > {}; ",
            shell_quote(&cg.join("cgroup.procs").to_string_lossy())
        ));
    }
    script.push_str("exec \"$@\"");
    let nspawn = sys::find_tool("systemd-nspawn").unwrap_or_else(|| "systemd-nspawn".into());
    let setsid = sys::find_tool("setsid").unwrap_or_else(|| "setsid".into());
    let mut c = cmd("sh");
    c.arg("-c")
        .arg(&script)
        .arg("provision-lab-nspawn")
        .arg(setsid)
        .arg(nspawn)
        .arg("--boot")
        .arg(format!("--directory={}", rootfs.display()))
        .arg(format!("--machine={name}"))
        .args(NSPAWN_FLAGS)
        .envs(NSPAWN_ENV.iter().copied())
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err);
    let command = sys::describe(&c);
    tracing::debug!(%command, "starting host");
    let child = c.spawn().map_err(|source| LabError::Spawn {
        command,
        source,
        hint: "apt-get install -y systemd-container".into(),
    })?;
    let pid = child.id();
    sys::adopt_child(child);
    Ok((pid, sys::proc_starttime(pid)))
}

fn exited_error(record: &HostRecord, log: &Path) -> LabError {
    let status = sys::exit_status(record.nspawn_pid)
        .map(|s| s.to_string())
        .unwrap_or_else(|| "exited".into());
    LabError::NspawnExited {
        name: record.name.clone(),
        status,
        log: log.to_path_buf(),
        log_tail: sys::tail_lines(log, 25),
    }
}

/// Poll until the container's init (a child of nspawn in a new pid
/// namespace) and the machine side of its veth exist.
fn wait_for_leader_and_link(record: &HostRecord, log: &Path) -> Result<(u32, String), LabError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let own_ns = sys::pid_namespace(std::process::id());
    let mut leader = None;
    loop {
        if !record.nspawn_alive() {
            return Err(exited_error(record, log));
        }
        if leader.is_none() {
            leader = sys::children_of(record.nspawn_pid)
                .into_iter()
                .find(|c| sys::pid_namespace(*c).is_some_and(|ns| Some(ns) != own_ns));
        }
        if let Some(l) = leader {
            if net::iface_exists(&record.iface) {
                return Ok((l, record.iface.clone()));
            }
            if let Some(peer) = net::peer_of_host0(l) {
                return Ok((l, peer));
            }
        }
        if Instant::now() >= deadline {
            return Err(LabError::NotReady {
                name: record.name.clone(),
                address: record.address,
                waited_secs: 20,
                reason: match leader {
                    None => "the container's init did not appear".into(),
                    Some(_) => format!("its network link ({}) did not appear", record.iface),
                },
                log: log.to_path_buf(),
                log_tail: sys::tail_lines(log, 25),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Readiness poll: TCP 22 accepts, then `ssh ... true` succeeds; fails
/// early when nspawn exits or `stop` says so, and with the log tail after
/// `timeout`.
pub(crate) fn wait_ready(
    host: &LabHost,
    record: &HostRecord,
    log: &Path,
    timeout: Duration,
    stop: &dyn Fn() -> bool,
) -> Result<(), LabError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let sock = SocketAddr::from((host.address, host.port));
    let mut reason;
    loop {
        if !record.nspawn_alive() {
            return Err(exited_error(record, log));
        }
        let attempt = Instant::now();
        match TcpStream::connect_timeout(&sock, Duration::from_millis(500)) {
            Ok(_) => {
                let out = ssh_base(&host.identity_file, &host.known_hosts, 3)
                    .arg(format!("{}@{}", host.user, host.address))
                    .arg("true")
                    .stdin(Stdio::null())
                    .output();
                match out {
                    Ok(o) if o.status.success() => return Ok(()),
                    Ok(o) => {
                        reason = format!(
                            "port 22 is open but `ssh true` failed: {}",
                            String::from_utf8_lossy(&o.stderr).trim()
                        );
                    }
                    Err(e) => reason = format!("could not run ssh: {e}"),
                }
            }
            Err(e) => reason = format!("port 22: {e}"),
        }
        let stopping = stop();
        if stopping {
            reason = format!("stopped waiting ({reason})");
        }
        if stopping || Instant::now() >= deadline {
            return Err(LabError::NotReady {
                name: host.name.clone(),
                address: host.address,
                waited_secs: started.elapsed().as_secs(),
                reason,
                log: log.to_path_buf(),
                log_tail: sys::tail_lines(log, 25),
            });
        }
        // Poll interval, counted from the start of this attempt.
        let next = attempt + Duration::from_millis(100);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

/// Whether TCP port 22 of `address` accepts within `timeout`.
pub(crate) fn port_open(address: Ipv4Addr, timeout: Duration) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from((address, 22)), timeout).is_ok()
}

/// What tearing down one host did.
#[derive(Debug, Default)]
pub(crate) struct Teardown {
    pub killed: Vec<u32>,
    pub iface_removed: Option<String>,
}

/// Find a running nspawn for `rootfs` when no record names it (a crash
/// between spawning and writing the record).
fn find_nspawn_for(rootfs: &Path) -> Vec<u32> {
    let want = format!("--directory={}", rootfs.display());
    let mut found = Vec::new();
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(cmdline) = std::fs::read(p.path().join("cmdline")) {
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                let is_nspawn = args.first().is_some_and(|a| a.ends_with(b"systemd-nspawn"));
                if is_nspawn && args.contains(&want.as_bytes()) {
                    found.push(pid);
                }
            }
        }
    }
    found
}

/// Stop a host's processes (by recorded pid), remove its link, cgroups,
/// known_hosts line, slot and directory. The caller holds its creation lock.
pub(crate) fn teardown(lab: &Lab, dir: &Path, name: &str) -> Result<Teardown, LabError> {
    let mut done = Teardown::default();
    let record = read_record(dir);
    let rootfs = dir.join(ROOTFS);
    let mut nspawn: Vec<(u32, Option<u64>)> = Vec::new();
    let mut leader = None;
    if let Some(r) = &record {
        nspawn.push((r.nspawn_pid, r.nspawn_starttime));
        if r.leader_pid != 0 {
            leader = Some((r.leader_pid, r.leader_starttime));
        }
    }
    if nspawn.iter().all(|(p, s)| !sys::pid_alive(*p, *s)) {
        // Crashed before the record was written, or pid gone: look for it.
        nspawn.extend(
            find_nspawn_for(&rootfs)
                .into_iter()
                .map(|p| (p, sys::proc_starttime(p))),
        );
    }
    for (pid, start) in &nspawn {
        if !sys::pid_alive(*pid, *start) {
            continue;
        }
        if leader.is_none() {
            let own_ns = sys::pid_namespace(std::process::id());
            leader = sys::children_of(*pid)
                .into_iter()
                .find(|c| sys::pid_namespace(*c).is_some_and(|ns| Some(ns) != own_ns))
                .map(|c| (c, sys::proc_starttime(c)));
        }
        // SIGTERM makes nspawn shut the container down cleanly.
        sys::send_signal(*pid, "TERM");
        if !sys::wait_gone(*pid, *start, Duration::from_secs(15)) {
            tracing::warn!(
                host = name,
                pid,
                "nspawn did not stop after SIGTERM; killing"
            );
            if let Some((l, ls)) = leader
                && sys::pid_alive(l, ls)
            {
                sys::send_signal(l, "KILL");
            }
            sys::send_signal(*pid, "KILL");
            sys::wait_gone(*pid, *start, Duration::from_secs(5));
        }
        done.killed.push(*pid);
    }
    if let Some((l, ls)) = leader
        && sys::pid_alive(l, ls)
    {
        // nspawn is gone but the container's init is not: end it (and with
        // it its whole pid namespace).
        sys::send_signal(l, "KILL");
        sys::wait_gone(l, ls, Duration::from_secs(5));
        done.killed.push(l);
    }
    if let Some(still) = nspawn
        .iter()
        .map(|(p, s)| (*p, *s))
        .chain(leader)
        .find(|(p, s)| sys::pid_alive(*p, *s))
    {
        return Err(LabError::BadState {
            path: dir.to_path_buf(),
            detail: format!("process {} of host {name} would not exit", still.0),
        });
    }

    let iface = record
        .as_ref()
        .map(|r| r.iface.clone())
        .unwrap_or_else(|| net::expected_iface(name));
    for candidate in [iface, net::expected_iface(name)] {
        if net::delete_iface(&candidate) {
            done.iface_removed = Some(candidate);
        }
    }
    net::remove_cgroups(name);
    if let Some(index) = record
        .as_ref()
        .map(|r| r.index)
        .or_else(|| net::parse_host_name(name))
    {
        set_known_host(lab, net::host_address(index), None)?;
    }
    sys::remove_tree(dir)?;
    // Free the slot (it is stale now that the directory is gone).
    let _g = lab.global_lock()?;
    live_slots(lab)?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_replace_and_remove() {
        let a = Ipv4Addr::new(10, 77, 1, 2);
        let b = Ipv4Addr::new(10, 77, 2, 2);
        let text = update_known_hosts("", a, Some("ssh-ed25519 AAAA1"));
        assert_eq!(text, "10.77.1.2,[10.77.1.2]:* ssh-ed25519 AAAA1\n");
        let text = update_known_hosts(&text, b, Some("ssh-ed25519 BBBB"));
        let text = update_known_hosts(&text, a, Some("ssh-ed25519 AAAA2"));
        assert_eq!(
            text,
            "10.77.2.2,[10.77.2.2]:* ssh-ed25519 BBBB\n10.77.1.2,[10.77.1.2]:* ssh-ed25519 AAAA2\n"
        );
        let text = update_known_hosts(&text, b, None);
        assert_eq!(text, "10.77.1.2,[10.77.1.2]:* ssh-ed25519 AAAA2\n");
        // Lines of earlier versions (address only) are replaced too.
        let text = update_known_hosts("10.77.1.2 ssh-ed25519 OLD\n", a, Some("ssh-ed25519 NEW"));
        assert_eq!(text, "10.77.1.2,[10.77.1.2]:* ssh-ed25519 NEW\n");
        // 10.77.1.22 is not 10.77.1.2
        let text = update_known_hosts("10.77.1.22 ssh-ed25519 X\n", a, None);
        assert_eq!(text, "10.77.1.22 ssh-ed25519 X\n");
    }

    #[test]
    fn resolver_lines() {
        let r = resolv_conf_for_hosts("nameserver 10.255.255.53\nsearch example\n# x\n", None);
        assert!(r.contains("nameserver 10.255.255.53\nsearch example\n"));
        let r = resolv_conf_for_hosts(
            "nameserver 127.0.0.53\noptions edns0\n",
            Some("nameserver 192.0.2.1\n"),
        );
        assert!(
            r.contains("nameserver 192.0.2.1\n") && !r.contains("127.0.0.53"),
            "{r}"
        );
    }

    #[test]
    fn root_refusal_is_cloud_inits() {
        let line = cloud_init_root_refusal("ubuntu", "ssh-ed25519 AAAA provision-lab\n");
        assert_eq!(
            line,
            "no-port-forwarding,no-agent-forwarding,no-X11-forwarding,command=\"echo 'Please login as the user \\\"ubuntu\\\" rather than the user \\\"root\\\".';echo;sleep 10;exit 142\" ssh-ed25519 AAAA provision-lab\n"
        );
    }

    #[test]
    fn host0_config() {
        let text = host0_network(5);
        assert!(text.contains("Address=10.77.5.2/30\nGateway=10.77.5.1\n"));
    }

    #[test]
    fn a_host_booting_again_claims_its_slot_unless_another_holds_it() {
        let tmp = tempfile::tempdir().unwrap();
        let lab = Lab::with_dirs(tmp.path().join("state"), tmp.path().join("cache"))
            .with_run_dir(tmp.path().join("run"));
        let mine = tmp.path().join("state/hosts/lab3");
        let other = tmp.path().join("other/hosts/lab3");
        std::fs::create_dir_all(&mine).unwrap();
        let slot = lab.slots_dir().join("3");
        // The run directory is gone (this machine rebooted): the slot is written again.
        claim_slot(&lab, 3, &mine).unwrap();
        assert_eq!(
            std::fs::read_to_string(&slot).unwrap(),
            mine.to_string_lossy()
        );
        claim_slot(&lab, 3, &mine).unwrap();
        // A slot naming a directory that is gone is taken over.
        write_atomic(&slot, other.to_string_lossy().as_bytes(), 0o644).unwrap();
        claim_slot(&lab, 3, &mine).unwrap();
        assert_eq!(
            std::fs::read_to_string(&slot).unwrap(),
            mine.to_string_lossy()
        );
        // One held by another lab's live host is not.
        std::fs::create_dir_all(&other).unwrap();
        write_atomic(&slot, other.to_string_lossy().as_bytes(), 0o644).unwrap();
        let err = claim_slot(&lab, 3, &mine).unwrap_err().to_string();
        assert!(err.contains("address slot 3 belongs to"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&slot).unwrap(),
            other.to_string_lossy()
        );
    }

    #[test]
    fn record_roundtrip() {
        let r = HostRecord {
            name: "lab1".into(),
            index: 1,
            address: net::host_address(1),
            rootfs: "/x/rootfs".into(),
            nspawn_pid: 10,
            nspawn_starttime: Some(5),
            leader_pid: 11,
            leader_starttime: None,
            iface: "ve-lab1".into(),
            owner_pid: None,
            owner_starttime: None,
            os: Os::Debian12,
            login: Login::Root,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<HostRecord>(&text).unwrap(), r);
        // Records of earlier versions (no owner, os or login) still read,
        // as the root-login Debian 12 hosts they were.
        let old = text
            .replace(",\"owner_pid\":null,\"owner_starttime\":null", "")
            .replace(",\"os\":\"debian-12\",\"login\":\"root\"", "");
        assert!(!old.contains("owner") && !old.contains("login"), "{old}");
        assert_eq!(serde_json::from_str::<HostRecord>(&old).unwrap(), r);
        let ubuntu = HostRecord {
            os: Os::Ubuntu2404,
            login: Login::DefaultUser,
            ..r
        };
        let text = serde_json::to_string(&ubuntu).unwrap();
        assert!(
            text.contains("\"os\":\"ubuntu-24.04\",\"login\":\"default-user\""),
            "{text}"
        );
    }
}
