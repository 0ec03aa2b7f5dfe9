//! The lab: disposable Ubuntu and Debian hosts on this machine, booted with
//! `systemd-nspawn`, reachable over SSH at 10.77.N.2 (root needed).
//!
//! * One image per [`Os`] (Ubuntu 24.04/22.04, Debian 13/12) is built once
//!   per recipe with `debootstrap --variant=minbase`, signatures verified:
//!   Debian's from the mirror of the machine's own apt configuration (or
//!   `PROVISION_LAB_MIRROR`) with its `debian-archive-keyring`; Ubuntu's
//!   from the mirror debootstrap's `gutsy` script names (or
//!   `PROVISION_LAB_UBUNTU_MIRROR`) with the archive key shipped in
//!   `keys/`. Each is a faithful fresh server of its OS (cloud-init's sshd
//!   drop-in, a sudo login user with root refused, Ubuntu's needrestart,
//!   inactive ufw, unattended-upgrades and socket-activated ssh on 24.04),
//!   cached as a sparse ext4 disk image file (`mke2fs -d` of the tree)
//!   named after a hash of its recipe. The build works on temporary names and
//!   renames the image file into place as its last step, so a crashed build
//!   is never taken for a good image (and is cleaned up by the next one).
//! * Each host gets a sparse copy of that file, loop-mounted (a real ext4:
//!   Docker's overlay2 needs one underneath; copying the tree file by file
//!   took 3-25 s per host here), with its own hostname, machine-id, ssh host
//!   keys and a systemd-networkd file giving `host0` 10.77.N.2/30. It boots with
//!   `systemd-nspawn --boot --network-veth` in its own session; the machine
//!   side `ve-labN` gets 10.77.N.1/30 and the lab range is masqueraded.
//! * nspawn flags ([`NSPAWN_FLAGS`], [`NSPAWN_ENV`]): `--register=no
//!   --keep-unit` because PID 1 may not be systemd (no machined, no scope
//!   units); each nspawn is first moved into its own cgroup
//!   (`provision-lab/labN` in the unified and `name=systemd` hierarchies) so
//!   that nspawn does not put every container at the hierarchy's root;
//!   `SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1` gives the host a cgroup v2 tree it
//!   may write (on a hybrid machine the v1 controllers are mounted read-only
//!   and Docker's runc fails); `--system-call-filter=@keyring bpf` lets runc
//!   create session keyrings and device filters; `--resolv-conf=off
//!   --timezone=off` leave those files to the host (a provisioner changes
//!   them); `--link-journal=no` keeps the journal inside. nspawn's default
//!   capability set (with CAP_NET_ADMIN from the private network) is enough
//!   for systemd, sshd, ufw and Docker, so `--capability=all` is not used.
//! * Indices are allocated machine-wide in `/run/provision-lab/slots`, so
//!   several labs (state dirs) and parallel test processes never collide.
//! * A reboot inside a host (`systemctl reboot`) ends its nspawn with status
//!   133 (`host::NSPAWN_REBOOT_EXIT`); the disk stays mounted, and
//!   [`Lab::restart_host`] boots the host again from it (the boot half of
//!   creation: new nspawn, link configured, ssh waited for). A test's
//!   [`testing::LabGuard`] does that by itself (a watcher thread polling the
//!   exit status of its nspawn, a child of the test process); `up` does it for
//!   a host that rebooted while nobody watched.
//! * Everything is torn down by recorded pids; nothing is killed by name.

#![deny(unreachable_pub)]
#![warn(missing_docs)]

mod apt;
mod error;
mod host;
mod image;
mod inventory;
mod net;
mod os;
mod sys;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub use error::LabError;
pub use image::BaseImage;
pub use inventory::{Entry as InventoryEntry, render as render_inventory};
pub use net::{gateway_address, host_name};
pub use os::{Family, HostSpec, Login, Os};

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/provision-lab";
/// Default cache directory (base image).
pub(crate) const DEFAULT_CACHE_DIR: &str = "/var/cache/provision-lab";
/// Default machine-wide runtime directory (slots, NAT bookkeeping, lock).
pub(crate) const DEFAULT_RUN_DIR: &str = "/run/provision-lab";
/// How long a new host may take to answer ssh.
pub(crate) const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A lab: where its state, image cache and bookkeeping live.
#[derive(Debug, Clone)]
pub struct Lab {
    state_dir: PathBuf,
    cache_dir: PathBuf,
    run_dir: PathBuf,
    mirror: Option<String>,
    ready_timeout: Duration,
}

/// One running lab host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabHost {
    /// `labN`.
    pub name: String,
    /// N.
    pub index: u32,
    /// 10.77.N.2.
    pub address: Ipv4Addr,
    /// SSH port (22).
    pub port: u16,
    /// SSH user: `root`, or the image's sudo user (`ubuntu`, `debian`).
    pub user: String,
    /// Its OS.
    pub os: Os,
    /// The lab's private key.
    pub identity_file: PathBuf,
    /// The lab's known_hosts file (has this host's key).
    pub known_hosts: PathBuf,
    /// PID (on this machine) of the container's init.
    pub leader_pid: u32,
    /// PID of the `systemd-nspawn` running it.
    pub nspawn_pid: u32,
    /// The machine side of its veth link (`ve-labN`).
    pub iface: String,
    /// The host's root directory on this machine.
    pub root_dir: PathBuf,
}

impl LabHost {
    /// Run `script` with `sh -c` on the host over a plain, fresh ssh
    /// connection (no control master): an independent check channel.
    pub fn ssh(&self, script: &str) -> std::io::Result<Output> {
        self.ssh_command()
            .arg("sh")
            .arg("-c")
            .arg(sys::shell_quote(script))
            .stdin(Stdio::null())
            .output()
    }

    /// `ssh` with the lab key and known_hosts, targeting this host; add a
    /// remote command or exec it for a shell.
    pub fn ssh_command(&self) -> Command {
        self.ssh_command_as(&self.user)
    }

    /// [`LabHost::ssh_command`] logging in as `user` (e.g. the deploy user
    /// a run created, or root to see that it is refused).
    pub fn ssh_command_as(&self, user: &str) -> Command {
        self.ssh_command_to(user, self.port)
    }

    /// [`LabHost::ssh_command`] as `user` on `port` (after a port move).
    pub fn ssh_command_to(&self, user: &str, port: u16) -> Command {
        let mut c = host::ssh_base(&self.identity_file, &self.known_hosts, 10);
        c.arg("-p")
            .arg(port.to_string())
            .arg("--")
            .arg(format!("{user}@{}", self.address));
        c
    }
}

/// State of a host directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostState {
    /// Its nspawn is running.
    Running,
    /// Another process (or thread) is creating or booting it again right now.
    Creating,
    /// Its nspawn is gone (a reboot inside, a crash, a reboot of this
    /// machine): `up` boots it again ([`Lab::restart_host`]), `down` removes it.
    Stale,
    /// A test's host whose owning process has exited (e.g. killed by a
    /// timeout before its guard could run); `up`, `down` and the next
    /// `testing::fresh_host` remove it.
    Orphaned,
}

/// What `status` reports per host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostStatus {
    /// `labN`.
    pub name: String,
    /// N, when known.
    pub index: Option<u32>,
    /// 10.77.N.2, when known.
    pub address: Option<Ipv4Addr>,
    /// Running, creating or stale.
    pub state: HostState,
    /// Its OS and login, when recorded.
    pub spec: Option<HostSpec>,
    /// PID of its nspawn, when recorded.
    pub nspawn_pid: Option<u32>,
    /// PID of its init, when recorded.
    pub leader_pid: Option<u32>,
    /// TCP port 22 accepted a connection just now.
    pub ssh_port_open: bool,
    /// For a test's host: the pid of the process owning it.
    pub owner_pid: Option<u32>,
    /// Its directory on this machine.
    pub dir: PathBuf,
}

/// What `up` found and did.
#[derive(Debug, Clone, Default)]
pub struct UpReport {
    /// Reachable hosts of this lab (reused or created), by index.
    pub hosts: Vec<LabHost>,
    /// Names of the hosts this call created.
    pub created: Vec<String>,
    /// Names of recorded hosts whose nspawn was gone (a reboot inside, a
    /// crash, a reboot of this machine) that this call booted again from
    /// their disks ([`Lab::restart_host`]) instead of replacing them; they
    /// are in `hosts`. One booted again whose login the lab's key no longer
    /// gets is in `unreachable` and `kept` instead.
    pub restarted: Vec<String>,
    /// Running hosts that did not answer the lab's login (kept, listed in
    /// the inventory), with why.
    pub unreachable: Vec<(String, String)>,
    /// The hosts of `unreachable`, as recorded.
    pub kept: Vec<LabHost>,
}

/// `f` on every item, each on a thread of its own; the results in item order, a panic as
/// an error.
fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<R, LabError> + Sync,
) -> Vec<Result<R, LabError>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = items.iter().map(|item| s.spawn(|| f(item))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|p| Err(LabError::Panicked(panic_text(&p))))
            })
            .collect()
    })
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// What `down` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownReport {
    /// Hosts whose directories were removed.
    pub hosts_removed: Vec<String>,
    /// PIDs (nspawn or container init) that were stopped.
    pub processes_stopped: Vec<u32>,
    /// Interfaces deleted (usually they vanish with the container).
    pub interfaces_removed: Vec<String>,
    /// The lab's MASQUERADE rule was removed (no lab host is left anywhere).
    pub nat_rule_removed: bool,
    /// net.ipv4.ip_forward was set back to its value before the lab.
    pub ip_forward_restored: bool,
    /// The inventory file was removed.
    pub inventory_removed: bool,
}

impl DownReport {
    /// True when `down` found nothing to do.
    pub fn is_empty(&self) -> bool {
        *self == DownReport::default()
    }
}

fn absolute(p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
    }
}

fn env_dir(var: &str, default: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => absolute(PathBuf::from(v)),
        _ => PathBuf::from(default),
    }
}

/// Wait for and take a host's creation lock; None when the host directory
/// is gone (destroyed by someone else meanwhile).
fn lock_host(dir: &Path) -> Result<Option<sys::FileLock>, LabError> {
    match sys::FileLock::acquire_in_existing_dir(&dir.join(host::CREATING_LOCK)) {
        Ok(l) if dir.exists() => Ok(Some(l)),
        Ok(_) => Ok(None),
        Err(_) if !dir.exists() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Programs the lab runs and the Debian packages that ship them.
const TOOLS: &[(&str, &str)] = &[
    ("debootstrap", "debootstrap"),
    ("systemd-nspawn", "systemd-container"),
    ("iptables", "iptables"),
    ("ssh-keygen", "openssh-client"),
    ("ssh", "openssh-client"),
    ("ip", "iproute2"),
    ("nsenter", "util-linux"),
    ("setsid", "util-linux"),
    ("kill", "procps"),
    ("mkfs.ext4", "e2fsprogs"),
    ("losetup", "mount"),
];

impl Lab {
    /// The lab in `/var/lib/provision-lab` with its image cache in
    /// `/var/cache/provision-lab`; `PROVISION_LAB_DIR` and
    /// `PROVISION_LAB_CACHE` override them.
    pub fn open_default() -> Result<Lab, LabError> {
        Ok(Lab::with_dirs(
            env_dir("PROVISION_LAB_DIR", DEFAULT_STATE_DIR),
            env_dir("PROVISION_LAB_CACHE", DEFAULT_CACHE_DIR),
        ))
    }

    /// A lab with the given state and cache directories.
    pub fn with_dirs(state: PathBuf, cache: PathBuf) -> Lab {
        Lab {
            state_dir: absolute(state),
            cache_dir: absolute(cache),
            run_dir: PathBuf::from(DEFAULT_RUN_DIR),
            mirror: None,
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }

    /// Use this Debian mirror URL for image builds instead of the one in the
    /// machine's apt configuration (`PROVISION_LAB_MIRROR` does the same).
    pub fn with_mirror(mut self, url: impl Into<String>) -> Lab {
        self.mirror = Some(url.into());
        self
    }

    /// Use another machine-wide runtime directory (slots, NAT bookkeeping).
    /// Labs sharing addresses must share it.
    #[cfg(test)]
    pub(crate) fn with_run_dir(mut self, dir: PathBuf) -> Lab {
        self.run_dir = absolute(dir);
        self
    }

    /// How long a new host may take to answer ssh (default 60 s).
    pub fn with_ready_timeout(mut self, timeout: Duration) -> Lab {
        self.ready_timeout = timeout;
        self
    }

    /// The state directory (key, known_hosts, inventory, hosts).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The cache directory (base image).
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The machine-wide runtime directory.
    pub(crate) fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The lab's private ssh key.
    pub fn identity_file(&self) -> PathBuf {
        self.state_dir.join("id_ed25519")
    }

    /// The lab's known_hosts file.
    pub(crate) fn known_hosts_path(&self) -> PathBuf {
        self.state_dir.join("known_hosts")
    }

    /// Where `up` writes the inventory.
    pub fn inventory_path(&self) -> PathBuf {
        self.state_dir.join("inventory.toml")
    }

    fn hosts_dir(&self) -> PathBuf {
        self.state_dir.join("hosts")
    }

    fn slots_dir(&self) -> PathBuf {
        self.run_dir.join("slots")
    }

    fn global_lock(&self) -> Result<sys::FileLock, LabError> {
        sys::FileLock::acquire(&self.run_dir.join("lock"))
    }

    /// Install the Debian packages the lab needs that are missing (root only), then run
    /// [`Lab::preflight`]. Returns the packages it installed.
    pub fn ensure_tools() -> Result<Vec<String>, LabError> {
        let uid = sys::effective_uid().unwrap_or(u32::MAX);
        if uid != 0 {
            return Err(LabError::NotRoot { uid });
        }
        let mut packages: Vec<String> = TOOLS
            .iter()
            .filter(|(prog, _)| sys::find_tool(prog).is_none())
            .map(|(_, p)| p.to_string())
            .collect();
        packages.sort();
        packages.dedup();
        if !packages.is_empty() {
            tracing::info!(?packages, "installing the lab's Debian packages");
            let mut update = sys::cmd("apt-get");
            update.args(["-q", "update"]);
            sys::run(
                &mut update,
                "apt-get update failed; check the machine's apt sources",
            )?;
            let mut install = sys::cmd("apt-get");
            install
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["-y", "-q", "--no-install-recommends", "install"])
                .args(&packages);
            sys::run(&mut install, "installing the lab's packages failed")?;
        }
        Self::preflight()?;
        Ok(packages)
    }

    /// Check that the lab can run here: root, and the programs it uses.
    pub fn preflight() -> Result<(), LabError> {
        let uid = sys::effective_uid().unwrap_or(u32::MAX);
        if uid != 0 {
            return Err(LabError::NotRoot { uid });
        }
        let missing: Vec<&(&str, &str)> = TOOLS
            .iter()
            .filter(|(prog, _)| sys::find_tool(prog).is_none())
            .collect();
        if let Some((program, package)) = missing.first() {
            let mut packages: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
            packages.dedup();
            return Err(LabError::MissingTool {
                program: program.to_string(),
                package: package.to_string(),
                install: packages.join(" "),
            });
        }
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        if !net::has_cgroup2(&mounts) {
            return Err(LabError::BadState {
                path: "/proc/self/mounts".into(),
                detail: "no cgroup2 hierarchy is mounted; lab hosts need one (Docker inside \
                         uses cgroup v2). Mount it, e.g. `mount -t cgroup2 none /sys/fs/cgroup/unified`"
                    .into(),
            });
        }
        Ok(())
    }

    /// The cached image of `os`, built first if needed (a minute or two,
    /// once per recipe).
    pub fn ensure_base_image(&self, os: Os) -> Result<BaseImage, LabError> {
        image::ensure(&self.cache_dir, os, self.mirror.as_deref())
    }

    /// The images of `oses`, built in parallel where missing.
    pub fn ensure_images(&self, oses: &[Os]) -> Result<Vec<BaseImage>, LabError> {
        let mut wanted = oses.to_vec();
        wanted.sort();
        wanted.dedup();
        in_parallel(&wanted, |os| self.ensure_base_image(*os))
            .into_iter()
            .collect()
    }

    /// Generate the lab's ssh key pair if there is none.
    fn ensure_key(&self) -> Result<(), LabError> {
        let key = self.identity_file();
        let public = key.with_extension("pub");
        if key.exists() && public.exists() {
            return Ok(());
        }
        let _g = self.global_lock()?;
        if key.exists() && public.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.state_dir)
            .map_err(|e| LabError::io("creating directory", &self.state_dir, e))?;
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(&public);
        sys::run(
            sys::cmd("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "provision-lab"])
                .arg("-f")
                .arg(&key),
            "apt-get install -y openssh-client",
        )?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| LabError::io("setting permissions of", &key, e))?;
        Ok(())
    }

    fn host_from_record(&self, r: &host::HostRecord) -> LabHost {
        LabHost {
            name: r.name.clone(),
            index: r.index,
            address: r.address,
            port: 22,
            user: r.login.user(r.os).into(),
            os: r.os,
            identity_file: self.identity_file(),
            known_hosts: self.known_hosts_path(),
            leader_pid: r.leader_pid,
            nspawn_pid: r.nspawn_pid,
            iface: r.iface.clone(),
            root_dir: r.rootfs.clone(),
        }
    }

    /// Create, boot and wait for one new host with a fresh index.
    pub fn create_host(&self, spec: HostSpec) -> Result<LabHost, LabError> {
        self.create_host_with(spec, false)
    }

    /// `owned`: the host belongs to this process (test hosts): `up` does not
    /// count it, and it is reaped once this process is gone.
    pub(crate) fn create_host_with(
        &self,
        spec: HostSpec,
        owned: bool,
    ) -> Result<LabHost, LabError> {
        let image = self.ensure_base_image(spec.os)?;
        self.ensure_key()?;
        let alloc = host::allocate(self)?;
        match host::build_and_boot(self, &image, &alloc, spec.login, owned) {
            Ok(h) => Ok(h),
            Err(e) => {
                tracing::warn!(host = %alloc.name, error = %e, "host creation failed; cleaning up");
                if let Err(clean) = host::teardown(self, &alloc.dir, &alloc.name) {
                    tracing::warn!(host = %alloc.name, error = %clean, "cleanup failed");
                }
                Err(e)
            }
        }
    }

    /// Ensure `count` hosts of `spec` are running and reachable. Running
    /// hosts are never destroyed: reachable ones (through the login recorded
    /// for them) are reused, hosts of another spec are kept and listed, and
    /// one that does not answer is reported and left alone (`lab down` or
    /// [`Lab::destroy_host`] remove it). A host whose nspawn is gone (it
    /// rebooted while nobody watched) is booted again from its disk
    /// ([`Lab::restart_host`]) and counted like a running one; one that cannot
    /// boot again, and orphaned test hosts, are removed (a test's host while
    /// its process runs is left to its guard). Missing ones are created in
    /// parallel. Writes the inventory (every running host of this lab) and
    /// returns the hosts it lists.
    pub fn up(&self, count: usize, spec: HostSpec) -> Result<UpReport, LabError> {
        Lab::preflight()?;
        self.ensure_base_image(spec.os)?;
        self.ensure_key()?;
        let mut report = UpReport::default();
        let mut matching = 0usize;
        for st in self.status()? {
            match st.state {
                HostState::Creating => {
                    tracing::info!(host = %st.name, "being created by another process; not counted");
                }
                HostState::Stale if st.owner_pid.is_some() => {
                    // A test's host that exited while its test runs: the
                    // test's guard restarts it after a reboot, or leaves a
                    // crash visible.
                    tracing::info!(host = %st.name, "a running test's host whose nspawn is gone; left to its test");
                }
                HostState::Stale => {
                    tracing::info!(host = %st.name, "its nspawn is gone (rebooted?); booting it again");
                    match self.restart_host(&st.name) {
                        Ok(h) => {
                            if st.spec == Some(spec) {
                                matching += 1;
                            }
                            report.restarted.push(h.name.clone());
                            report.hosts.push(h);
                        }
                        Err(e) => {
                            let dir = self.hosts_dir().join(&st.name);
                            match host::read_record(&dir).filter(|r| r.nspawn_alive()) {
                                Some(r) => {
                                    // Booted, but the lab's login is refused
                                    // (a hardened host rebooted): kept.
                                    tracing::warn!(host = %st.name, error = %e, "booted again but not answering the lab's login; kept");
                                    report.unreachable.push((st.name.clone(), e.to_string()));
                                    report.kept.push(self.host_from_record(&r));
                                }
                                None => {
                                    tracing::warn!(host = %st.name, error = %e, "could not boot the host again; removing it");
                                    self.destroy_host(&st.name)?;
                                }
                            }
                        }
                    }
                }
                HostState::Running if st.owner_pid.is_some() => {
                    // A test's host: not part of the lab `up` manages.
                }
                HostState::Orphaned => {
                    tracing::warn!(host = %st.name, "test host whose process is gone; removing it");
                    self.destroy_host(&st.name)?;
                }
                HostState::Running => {
                    let dir = self.hosts_dir().join(&st.name);
                    let Some(record) = host::read_record(&dir) else {
                        report
                            .unreachable
                            .push((st.name.clone(), "no host record".into()));
                        continue;
                    };
                    let h = self.host_from_record(&record);
                    match host::wait_ready(
                        &h,
                        &record,
                        &dir.join(host::LOG),
                        Duration::from_secs(10),
                        &|| false,
                    ) {
                        Ok(()) => {
                            if st.spec == Some(spec) {
                                matching += 1;
                            }
                            report.hosts.push(h);
                        }
                        Err(e) => {
                            // Most likely hardened by a run (root login off,
                            // port moved): a lab never destroys such a host.
                            tracing::warn!(host = %st.name, error = %e, "running but not answering the lab's login; kept");
                            report.unreachable.push((st.name.clone(), e.to_string()));
                            report.kept.push(h);
                        }
                    }
                }
            }
        }
        let need = count.saturating_sub(matching);
        let mut first_error = None;
        if need > 0 {
            for r in in_parallel(&vec![spec; need], |spec| self.create_host(*spec)) {
                match r {
                    Ok(h) => {
                        report.created.push(h.name.clone());
                        report.hosts.push(h);
                    }
                    Err(e) if first_error.is_none() => first_error = Some(e),
                    Err(e) => tracing::error!(error = %e, "another host failed too"),
                }
            }
        }
        report.hosts.sort_by_key(|h| h.index);
        let mut listed = report.hosts.clone();
        listed.extend(report.kept.iter().cloned());
        listed.sort_by_key(|h| h.index);
        self.write_inventory(&listed)?;
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    fn write_inventory(&self, hosts: &[LabHost]) -> Result<(), LabError> {
        let list: Vec<inventory::Entry> = hosts
            .iter()
            .map(|h| inventory::Entry {
                name: h.name.clone(),
                address: h.address,
                user: h.user.clone(),
                os: h.os,
            })
            .collect();
        let text = inventory::render(&self.identity_file(), &self.known_hosts_path(), &list);
        sys::write_atomic(&self.inventory_path(), text.as_bytes(), 0o644)
    }

    /// Boot host `name` again from its disk after its nspawn exited (e.g.
    /// `systemctl reboot` inside: nspawn exits with status 133 and nothing
    /// restarts it; or a crash, or a reboot of this machine). Same index,
    /// address, name, host keys, login, OS and owner; a new nspawn (and init)
    /// in its record and the machine side of its veth configured again;
    /// returns once ssh answers through the recorded login. A host with a
    /// live recorded process is refused ([`LabError::StillRunning`]). On a
    /// failure after the start, what runs stays recorded: `down` (or
    /// [`Lab::destroy_host`]) removes it.
    pub fn restart_host(&self, name: &str) -> Result<LabHost, LabError> {
        self.host_dir_of(name)?;
        self.restart_host_unless(name, &|| false)?
            .ok_or_else(|| self.unknown_host(name))
    }

    /// [`Lab::restart_host`], unless `stop` says so once the host's creation
    /// lock is held (checked under it, so that a test guard's teardown and
    /// its watcher never race); `stop` also ends the wait for ssh early. None
    /// when stopped before the boot or the host is gone.
    pub(crate) fn restart_host_unless(
        &self,
        name: &str,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<LabHost>, LabError> {
        let dir = self.hosts_dir().join(name);
        if !dir.is_dir() {
            return Ok(None);
        }
        // Waits while another thread/process creates, boots or removes it.
        match lock_host(&dir)? {
            Some(_creating) if !stop() => host::boot_again(self, &dir, stop).map(Some),
            _ => Ok(None),
        }
    }

    fn unknown_host(&self, name: &str) -> LabError {
        LabError::UnknownHost {
            name: name.to_string(),
            state_dir: self.state_dir.clone(),
        }
    }

    /// Stop and remove one host.
    pub fn destroy_host(&self, name: &str) -> Result<(), LabError> {
        let dir = self.host_dir_of(name)?;
        // Waits while another thread/process is still creating it.
        let Some(_creating) = lock_host(&dir)? else {
            return Ok(()); // removed meanwhile
        };
        host::teardown(self, &dir, name)?;
        self.release_machine_state_if_idle()?;
        Ok(())
    }

    /// When no lab host is left anywhere on the machine: undo the NAT rule, route,
    /// ip_forward and inotify settings the lab made, and its cgroup parents.
    fn release_machine_state_if_idle(&self) -> Result<Option<net::NatTeardown>, LabError> {
        if !self.run_dir.exists() {
            return Ok(None);
        }
        let _g = self.global_lock()?;
        if !host::live_slots(self)?.is_empty() {
            return Ok(None);
        }
        let nat = net::teardown_nat(&self.run_dir);
        net::remove_cgroup_parents();
        let _ = std::fs::remove_dir(self.slots_dir());
        Ok(Some(nat))
    }

    fn host_dir_of(&self, name: &str) -> Result<PathBuf, LabError> {
        let dir = self.hosts_dir().join(name);
        if net::parse_host_name(name).is_none() || !dir.is_dir() {
            return Err(LabError::UnknownHost {
                name: name.to_string(),
                state_dir: self.state_dir.clone(),
            });
        }
        Ok(dir)
    }

    fn host_dirs(&self) -> Vec<(String, PathBuf)> {
        let mut dirs: Vec<(u32, String, PathBuf)> = std::fs::read_dir(self.hosts_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                net::parse_host_name(&name).map(|i| (i, name, e.path()))
            })
            .collect();
        dirs.sort();
        dirs.into_iter().map(|(_, n, p)| (n, p)).collect()
    }

    /// Remove everything this lab created: hosts (stopped by their recorded
    /// pids), their links, cgroups and directories, the inventory; and, when
    /// no lab host is left on the machine, the NAT rule and ip_forward
    /// setting it made. Also cleans up after a crashed run.
    pub fn down(&self) -> Result<DownReport, LabError> {
        let mut report = DownReport::default();
        for (name, dir) in self.host_dirs() {
            let Some(_creating) = lock_host(&dir)? else {
                continue; // removed meanwhile
            };
            let t = host::teardown(self, &dir, &name)?;
            report.hosts_removed.push(name);
            report.processes_stopped.extend(t.killed);
            report.interfaces_removed.extend(t.iface_removed);
        }
        let _ = std::fs::remove_dir(self.hosts_dir());
        match std::fs::remove_file(self.inventory_path()) {
            Ok(()) => report.inventory_removed = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LabError::io("removing", self.inventory_path(), e)),
        }
        if let Some(nat) = self.release_machine_state_if_idle()? {
            report.nat_rule_removed = nat.nat_rule_removed;
            report.ip_forward_restored = nat.ip_forward_restored;
        }
        Ok(report)
    }

    /// The hosts of this lab and their state.
    pub fn status(&self) -> Result<Vec<HostStatus>, LabError> {
        // States are read under the global lock: a host directory is created
        // and its creation lock taken in one step under that lock, so a
        // just-allocated host is never mistaken for a stale one.
        let mut found = Vec::new();
        {
            let _g = self.global_lock()?;
            for (name, dir) in self.host_dirs() {
                let lock = match sys::FileLock::try_acquire(&dir.join(host::CREATING_LOCK)) {
                    Ok(l) => l,
                    Err(_) if !dir.exists() => continue, // removed meanwhile
                    Err(e) => return Err(e),
                };
                let record = host::read_record(&dir);
                let state = match (&lock, &record) {
                    (None, _) => HostState::Creating,
                    (Some(_), Some(r)) if r.orphaned() => HostState::Orphaned,
                    (Some(_), Some(r)) if r.nspawn_alive() => HostState::Running,
                    _ => HostState::Stale,
                };
                found.push((name, dir, state, record));
            }
        }
        let mut out = Vec::new();
        for (name, dir, state, record) in found {
            let index = record
                .as_ref()
                .map(|r| r.index)
                .or_else(|| net::parse_host_name(&name));
            let address = index.map(net::host_address);
            let ssh_port_open = state == HostState::Running
                && address.is_some_and(|a| host::port_open(a, Duration::from_millis(300)));
            out.push(HostStatus {
                name,
                index,
                address,
                state,
                spec: record.as_ref().map(|r| HostSpec {
                    os: r.os,
                    login: r.login,
                }),
                nspawn_pid: record.as_ref().map(|r| r.nspawn_pid),
                leader_pid: record.as_ref().map(|r| r.leader_pid).filter(|p| *p != 0),
                ssh_port_open,
                owner_pid: record.as_ref().and_then(|r| r.owner_pid),
                dir,
            });
        }
        Ok(out)
    }

    /// Remove test hosts whose owning process has exited (see
    /// [`HostState::Orphaned`]); returns their names.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn reap_orphans(&self) -> Result<Vec<String>, LabError> {
        let mut reaped = Vec::new();
        for st in self.status()? {
            if st.state == HostState::Orphaned {
                tracing::warn!(host = %st.name, "removing an orphaned test host");
                self.destroy_host(&st.name)?;
                reaped.push(st.name);
            }
        }
        Ok(reaped)
    }

    /// A running host of this lab.
    pub fn host(&self, name: &str) -> Result<LabHost, LabError> {
        let dir = self.host_dir_of(name)?;
        match host::read_record(&dir) {
            Some(r) if r.nspawn_alive() && r.leader_pid != 0 => Ok(self.host_from_record(&r)),
            _ => Err(LabError::UnknownHost {
                name: format!("{name} (not running)"),
                state_dir: self.state_dir.clone(),
            }),
        }
    }

    /// `ssh` to host `name` with the lab key and known_hosts, ready to exec
    /// (add a remote command, or none for a login shell).
    pub fn ssh_command(&self, name: &str) -> Result<Command, LabError> {
        Ok(self.host(name)?.ssh_command())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::host_address;

    #[test]
    fn paths_of_a_lab() {
        let lab = Lab::with_dirs("/x/state".into(), "/x/cache".into());
        assert_eq!(lab.inventory_path(), Path::new("/x/state/inventory.toml"));
        assert_eq!(lab.identity_file(), Path::new("/x/state/id_ed25519"));
        assert_eq!(lab.known_hosts_path(), Path::new("/x/state/known_hosts"));
        assert_eq!(lab.cache_dir(), Path::new("/x/cache"));
        assert_eq!(lab.run_dir(), Path::new(DEFAULT_RUN_DIR));
        assert_eq!(
            lab.hosts_dir().join("lab1"),
            Path::new("/x/state/hosts/lab1")
        );
    }

    #[test]
    fn error_messages_name_the_fix() {
        let e = LabError::MissingTool {
            program: "systemd-nspawn".into(),
            package: "systemd-container".into(),
            install: "systemd-container debootstrap".into(),
        };
        let text = e.to_string();
        assert!(text.contains("`systemd-nspawn` was not found (package systemd-container)"));
        assert!(text.contains("apt-get install -y systemd-container debootstrap"));
        let e = LabError::Command {
            command: "ip link".into(),
            status: "exit status: 2".into(),
            stderr: "RTNETLINK answers: File exists\n".into(),
            hint: "h".into(),
        };
        assert_eq!(
            e.to_string(),
            "`ip link` failed (exit status: 2):\nRTNETLINK answers: File exists\n  hint: h"
        );
    }

    #[test]
    fn ssh_command_shape() {
        let host = LabHost {
            name: "lab3".into(),
            index: 3,
            address: host_address(3),
            port: 22,
            user: "root".into(),
            os: Os::Debian12,
            identity_file: "/s/id_ed25519".into(),
            known_hosts: "/s/known_hosts".into(),
            leader_pid: 0,
            nspawn_pid: 0,
            iface: "ve-lab3".into(),
            root_dir: "/s/hosts/lab3/rootfs".into(),
        };
        let c = host.ssh_command();
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let line = args.join(" ");
        assert!(line.contains("-i /s/id_ed25519"), "{line}");
        assert!(line.contains("UserKnownHostsFile=/s/known_hosts"), "{line}");
        assert!(line.contains("StrictHostKeyChecking=yes"), "{line}");
        assert!(line.contains("BatchMode=yes"), "{line}");
        assert!(line.contains("ControlMaster=no"), "{line}");
        assert!(line.ends_with("-p 22 -- root@10.77.3.2"), "{line}");
    }
}
