//! The cached Debian 12 base image every lab host is copied from.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::LabError;
use crate::apt::{Mirrors, SUITE, resolve_mirrors};
use crate::sys::{FileLock, cmd, remove_tree, tail_lines, write_file};

/// Bump when the recipe changes: a new name means a fresh build.
pub const IMAGE_NAME: &str = "bookworm-v1";

/// Marker written into the image's tree.
pub const MARKER: &str = "etc/provision-lab-image";

/// Size of each host's (sparse) ext4 disk. Only what is written takes space;
/// `df` inside shows this, so checks like "50 GB of disk" pass.
pub const DISK_SIZE: u64 = 64 << 30;

/// Packages on top of `--variant=minbase`: an ssh-reachable systemd host that
/// apt, ufw (iptables, python3) and Docker (iptables, kmod, procps, ca-certificates,
/// curl, gnupg) can be installed on.
pub const INCLUDE: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "libpam-systemd",
    "openssh-server",
    "iproute2",
    "netbase",
    "sudo",
    "python3",
    "ca-certificates",
    "cron",
    "procps",
    "iptables",
    "kmod",
    "curl",
    "gnupg",
    "less",
];

/// Units masked in the image: useless in a container, or slowing boot.
/// (apt's daily timers stay: a real Debian host has them, and unattended
/// upgrades rely on them.)
pub const MASKED_UNITS: &[&str] = &[
    // Nothing waits for "online" in the lab; it would add its timeout to boot.
    "systemd-networkd-wait-online.service",
    // No one logs in on the container console.
    "console-getty.service",
    // Filesystem scrubbing of the machine's disk is not the container's job.
    "e2scrub_all.timer",
    "e2scrub_reap.service",
];

/// A finished base image: a sparse ext4 disk image file holding the
/// debootstrapped tree. Hosts get a sparse copy of it, loop-mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    /// The ext4 image file.
    pub path: PathBuf,
    /// The mirror it was built from.
    pub mirror: String,
    /// True when this call built it (false: taken from the cache).
    pub freshly_built: bool,
    /// How long the build took, when this call built it.
    pub build_time: Option<Duration>,
}

fn image_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join(format!("{IMAGE_NAME}.img"))
}

fn meta_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join(format!("{IMAGE_NAME}.meta"))
}

fn marker_text(mirror: &str) -> String {
    let built = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!("recipe={IMAGE_NAME}\nmirror={mirror}\nbuilt_unix={built}\n")
}

/// The cached image if it is complete (the image file is renamed into
/// place as the very last step of a build).
pub fn cached(cache_dir: &Path) -> Option<BaseImage> {
    let path = image_path(cache_dir);
    if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
        return None;
    }
    let meta = std::fs::read_to_string(meta_path(cache_dir)).unwrap_or_default();
    let mirror = meta
        .lines()
        .find_map(|l| l.strip_prefix("mirror="))
        .unwrap_or_default()
        .to_string();
    Some(BaseImage {
        path,
        mirror,
        freshly_built: false,
        build_time: None,
    })
}

/// Return the cached image, building it first when there is none. Builds go
/// into a temporary directory renamed into place when complete, under a lock
/// so parallel callers build once.
pub fn ensure(cache_dir: &Path, mirror_override: Option<&str>) -> Result<BaseImage, LabError> {
    if let Some(image) = cached(cache_dir) {
        return Ok(image);
    }
    std::fs::create_dir_all(cache_dir)
        .map_err(|e| LabError::io("creating directory", cache_dir, e))?;
    let lock_path = cache_dir.join(".build.lock");
    let _lock = match FileLock::try_acquire(&lock_path)? {
        Some(lock) => lock,
        None => {
            tracing::info!("waiting for another process building the lab base image");
            FileLock::acquire(&lock_path)?
        }
    };
    if let Some(image) = cached(cache_dir) {
        return Ok(image);
    }
    remove_stale_builds(cache_dir)?;
    let mirrors = resolve_mirrors(mirror_override)?;
    let started = Instant::now();
    let tree = cache_dir.join(format!(".build-{IMAGE_NAME}-{}", std::process::id()));
    let tmp_img = cache_dir.join(format!(".build-{IMAGE_NAME}-{}.img", std::process::id()));
    let result = build(&tree, &tmp_img, cache_dir, &mirrors);
    let _ = remove_tree(&tree);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp_img);
        return Err(e);
    }
    crate::sys::write_atomic(
        &meta_path(cache_dir),
        marker_text(&mirrors.main).as_bytes(),
        0o644,
    )?;
    let path = image_path(cache_dir);
    std::fs::rename(&tmp_img, &path).map_err(|e| LabError::io("renaming image into", &path, e))?;
    let build_time = started.elapsed();
    tracing::info!(
        image = %path.display(),
        secs = build_time.as_secs_f64(),
        "built lab base image"
    );
    Ok(BaseImage {
        path,
        mirror: mirrors.main,
        freshly_built: true,
        build_time: Some(build_time),
    })
}

/// Remove half-built images left by crashed builds. The caller holds the
/// build lock, so nothing is building them.
fn remove_stale_builds(cache_dir: &Path) -> Result<(), LabError> {
    let entries =
        std::fs::read_dir(cache_dir).map_err(|e| LabError::io("reading", cache_dir, e))?;
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(".build-") {
            let path = entry.path();
            tracing::warn!(dir = %path.display(), "removing an unfinished base image build");
            if path.is_dir() {
                remove_tree(&path)?;
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    Ok(())
}

fn build(tmp: &Path, img: &Path, cache_dir: &Path, mirrors: &Mirrors) -> Result<(), LabError> {
    let log = cache_dir.join(format!(".build-{IMAGE_NAME}.log"));
    let log_file =
        std::fs::File::create(&log).map_err(|e| LabError::io("creating log", &log, e))?;
    let log_err = log_file
        .try_clone()
        .map_err(|e| LabError::io("creating log", &log, e))?;
    tracing::info!(mirror = %mirrors.main, dir = %tmp.display(), "debootstrap of the lab base image");
    let mut c = cmd("debootstrap");
    c.arg("--variant=minbase")
        .arg(format!("--include={}", INCLUDE.join(",")))
        .arg("--components=main")
        .arg(SUITE)
        .arg(tmp)
        .arg(&mirrors.main)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err);
    let command = crate::sys::describe(&c);
    let status = c.status().map_err(|source| LabError::Spawn {
        command: command.clone(),
        source,
        hint: "apt-get install -y debootstrap".into(),
    })?;
    if !status.success() {
        let mut stderr = tail_lines(&log, 15);
        let inner = tmp.join("debootstrap/debootstrap.log");
        if inner.exists() {
            stderr.push_str(&format!(
                "\n  {}:\n{}",
                inner.display(),
                tail_lines(&inner, 15)
            ));
        }
        crate::sys::unmount_all_under(tmp)?;
        return Err(LabError::Command {
            command,
            status: status.to_string(),
            stderr,
            hint: format!(
                "is the mirror {} reachable? Override it with PROVISION_LAB_MIRROR",
                mirrors.main
            ),
        });
    }
    // debootstrap unmounts what it mounted; make sure before the rename.
    crate::sys::unmount_all_under(tmp)?;
    customize(tmp, mirrors)?;
    make_disk_image(tmp, img)?;
    let _ = std::fs::remove_file(&log);
    Ok(())
}

/// Put the tree into a sparse ext4 image file (`mke2fs -d`), inode tables
/// initialized now so that hosts do no background zeroing.
fn make_disk_image(tree: &Path, img: &Path) -> Result<(), LabError> {
    let file = std::fs::File::create(img).map_err(|e| LabError::io("creating", img, e))?;
    file.set_len(DISK_SIZE)
        .map_err(|e| LabError::io("sizing", img, e))?;
    drop(file);
    crate::sys::run(
        cmd("mkfs.ext4")
            .args(["-q", "-F", "-L", "provision-lab", "-i", "65536"])
            .args(["-E", "lazy_itable_init=0,lazy_journal_init=0"])
            .arg("-d")
            .arg(tree)
            .arg(img),
        "apt-get install -y e2fsprogs (mke2fs 1.43 or later, for -d)",
    )?;
    // Zeroed blocks become holes again (hosts are sparse copies of this).
    let _ = crate::sys::succeeds(cmd("fallocate").arg("--dig-holes").arg(img));
    Ok(())
}

fn symlink(target: &str, link: &Path) -> Result<(), LabError> {
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| LabError::io("creating directory", parent, e))?;
    }
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).map_err(|e| LabError::io("creating symlink", link, e))
}

/// Make the debootstrapped tree a lab image: apt sources, networkd for the
/// static address, masked units, no host keys / machine-id (made per host).
fn customize(root: &Path, mirrors: &Mirrors) -> Result<(), LabError> {
    // apt: the machine's own mirror, deb822 style; no translations (faster update).
    write_file(
        &root.join("etc/apt/sources.list.d/debian.sources"),
        &mirrors.render_sources(),
    )?;
    write_file(
        &root.join("etc/apt/sources.list"),
        "# See /etc/apt/sources.list.d/debian.sources\n",
    )?;
    write_file(
        &root.join("etc/apt/apt.conf.d/99provision-lab"),
        "// Written by provision-lab.\nAcquire::Languages \"none\";\n",
    )?;
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_file()) && e.file_name() != "lock" {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    for f in [
        "var/cache/apt/pkgcache.bin",
        "var/cache/apt/srcpkgcache.bin",
    ] {
        let _ = std::fs::remove_file(root.join(f));
    }

    // systemd-networkd gives host0 its static address at boot (the file is
    // written per host); enable it the way `systemctl enable` would.
    let sys = root.join("etc/systemd/system");
    symlink(
        "/lib/systemd/system/systemd-networkd.service",
        &sys.join("multi-user.target.wants/systemd-networkd.service"),
    )?;
    symlink(
        "/lib/systemd/system/systemd-networkd.socket",
        &sys.join("sockets.target.wants/systemd-networkd.socket"),
    )?;
    for unit in MASKED_UNITS {
        symlink("/dev/null", &sys.join(unit))?;
        if let Ok(wants) = std::fs::read_dir(&sys) {
            for w in wants.flatten() {
                if w.file_name().to_string_lossy().ends_with(".wants") {
                    let _ = std::fs::remove_file(w.path().join(unit));
                }
            }
        }
    }

    // Per-host identity is made when a host is created.
    if let Ok(entries) = std::fs::read_dir(root.join("etc/ssh")) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("ssh_host_") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    write_file(&root.join("etc/machine-id"), "")?;
    let _ = std::fs::remove_file(root.join("var/lib/dbus/machine-id"));

    // Check the image has what the hosts need.
    for needed in [
        "usr/sbin/sshd",
        "lib/systemd/systemd",
        "lib/systemd/systemd-networkd",
    ] {
        if !root.join(needed).exists() {
            return Err(LabError::BadState {
                path: root.to_path_buf(),
                detail: format!("debootstrap finished but /{needed} is missing"),
            });
        }
    }
    write_file(&root.join(MARKER), &marker_text(&mirrors.main))?;
    Ok(())
}
