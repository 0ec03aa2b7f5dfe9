//! The cached base images lab hosts are copied from, one per OS.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::LabError;
use crate::apt::{DEBOOTSTRAP_SCRIPTS, Mirrors, debian_mirrors, ubuntu_mirrors};
use crate::os::{Family, Os};
use crate::sys::{FileLock, cmd, remove_tree, tail_lines, write_file};

/// Bump when the customisation below changes in a way the recipe text does
/// not show; any change of the recipe gives a new image name (a rebuild).
const RECIPE_VERSION: u32 = 2;

/// Marker written into the image's tree.
pub(crate) const MARKER: &str = "etc/provision-lab-image";

/// Size of each host's (sparse) ext4 disk. Only what is written takes space;
/// `df` inside shows this, so checks like "50 GB of disk" pass.
pub(crate) const DISK_SIZE: u64 = 64 << 30;

/// Ubuntu's archive signing key (2018), shipped because Debian 12 has no
/// Ubuntu keyring package. Its fingerprint is checked by a test.
pub(crate) const UBUNTU_ARCHIVE_KEY: &[u8] = include_bytes!("../keys/ubuntu-archive-2018.gpg");

/// The OpenPGP v4 fingerprint of [`UBUNTU_ARCHIVE_KEY`].
#[cfg(test)]
const UBUNTU_ARCHIVE_KEY_FINGERPRINT: &str = "F6ECB3762474EDA9D21B7022871920D1991BC93C";

/// Units masked in every image: useless in a container, or slowing boot.
/// (apt's daily timers stay: a real host has them, and unattended
/// upgrades rely on them.)
pub(crate) const MASKED_UNITS: &[&str] = &[
    // Nothing waits for "online" in the lab; it would add its timeout to boot.
    "systemd-networkd-wait-online.service",
    // No one logs in on the container console.
    "console-getty.service",
    // Filesystem scrubbing of the machine's disk is not the container's job.
    "e2scrub_all.timer",
    "e2scrub_reap.service",
];

/// What cloud-init writes on a provider's image: password logins on, which
/// a hardening drop-in must beat (sshd keeps the first value it reads).
pub(crate) const CLOUD_INIT_SSHD_DROP_IN: &str = "PasswordAuthentication yes\n";

/// Everything an image of `os` is made from; its hash names the image.
fn recipe(os: Os) -> String {
    format!(
        "version={RECIPE_VERSION}\nos={os}\nsuite={}\nscript={}\npackages={}\nmasked={}\nuser={}\ncloud-init-sshd={CLOUD_INIT_SSHD_DROP_IN:?}\n",
        os.suite(),
        os.debootstrap_script(),
        os.packages().join(","),
        MASKED_UNITS.join(","),
        os.default_user(),
    )
}

/// `ubuntu-24.04-<12 hex digits of the recipe hash>`.
pub(crate) fn image_name(os: Os) -> String {
    let digest = Sha256::digest(recipe(os).as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{os}-{hex}")
}

/// A finished base image: a sparse ext4 disk image file holding the
/// debootstrapped tree. Hosts get a sparse copy of it, loop-mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    /// The ext4 image file.
    pub path: PathBuf,
    /// Its OS.
    pub os: Os,
    /// The mirror it was built from.
    pub mirror: String,
    /// True when this call built it (false: taken from the cache).
    pub freshly_built: bool,
    /// How long the build took, when this call built it.
    pub build_time: Option<Duration>,
}

fn image_path(cache_dir: &Path, os: Os) -> PathBuf {
    cache_dir.join(format!("{}.img", image_name(os)))
}

fn meta_path(cache_dir: &Path, os: Os) -> PathBuf {
    cache_dir.join(format!("{}.meta", image_name(os)))
}

fn marker_text(os: Os, mirror: &str) -> String {
    let built = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!(
        "recipe={}\nos={os}\nmirror={mirror}\nbuilt_unix={built}\n",
        image_name(os)
    )
}

/// The cached image if it is complete (the image file is renamed into
/// place as the very last step of a build).
pub(crate) fn cached(cache_dir: &Path, os: Os) -> Option<BaseImage> {
    let path = image_path(cache_dir, os);
    if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
        return None;
    }
    let meta = std::fs::read_to_string(meta_path(cache_dir, os)).unwrap_or_default();
    let mirror = meta
        .lines()
        .find_map(|l| l.strip_prefix("mirror="))
        .unwrap_or_default()
        .to_string();
    Some(BaseImage {
        path,
        os,
        mirror,
        freshly_built: false,
        build_time: None,
    })
}

/// Return the cached image of `os`, building it first when there is none.
/// Builds go into a temporary directory renamed into place when complete,
/// under a per-OS lock so parallel callers build once (and different OSes
/// build in parallel). `mirror_override` applies to Debian images; Ubuntu's
/// mirror comes from debootstrap or `PROVISION_LAB_UBUNTU_MIRROR`.
pub(crate) fn ensure(
    cache_dir: &Path,
    os: Os,
    mirror_override: Option<&str>,
) -> Result<BaseImage, LabError> {
    if let Some(image) = cached(cache_dir, os) {
        return Ok(image);
    }
    std::fs::create_dir_all(cache_dir)
        .map_err(|e| LabError::io("creating directory", cache_dir, e))?;
    let lock_path = cache_dir.join(format!(".build-{os}.lock"));
    let _lock = match FileLock::try_acquire(&lock_path)? {
        Some(lock) => lock,
        None => {
            tracing::info!(%os, "waiting for another process building the lab image");
            FileLock::acquire(&lock_path)?
        }
    };
    if let Some(image) = cached(cache_dir, os) {
        return Ok(image);
    }
    remove_stale_builds(cache_dir, os)?;
    let mirrors = match os.family() {
        Family::Debian => debian_mirrors(mirror_override)?,
        Family::Ubuntu => ubuntu_mirrors(None)?,
    };
    let started = Instant::now();
    let name = image_name(os);
    let tree = cache_dir.join(format!(".build-{name}-{}", std::process::id()));
    let tmp_img = cache_dir.join(format!(".build-{name}-{}.img", std::process::id()));
    let result = build(os, &tree, &tmp_img, cache_dir, &mirrors);
    let _ = remove_tree(&tree);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp_img);
        return Err(e);
    }
    crate::sys::write_atomic(
        &meta_path(cache_dir, os),
        marker_text(os, &mirrors.main).as_bytes(),
        0o644,
    )?;
    let path = image_path(cache_dir, os);
    std::fs::rename(&tmp_img, &path).map_err(|e| LabError::io("renaming image into", &path, e))?;
    let build_time = started.elapsed();
    tracing::info!(
        image = %path.display(),
        secs = build_time.as_secs_f64(),
        "built lab base image"
    );
    remove_superseded(cache_dir, os);
    Ok(BaseImage {
        path,
        os,
        mirror: mirrors.main,
        freshly_built: true,
        build_time: Some(build_time),
    })
}

/// Images of `os` built from an older recipe: nothing uses them once the
/// new one exists. Hosts
/// already copied from them keep running (they are copies).
fn remove_superseded(cache_dir: &Path, os: Os) {
    let current = image_name(os);
    let Ok(entries) = std::fs::read_dir(cache_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name
            .strip_suffix(".img")
            .or_else(|| name.strip_suffix(".meta"))
        else {
            continue;
        };
        let older_of_os = stem
            .strip_prefix(os.name())
            .is_some_and(|rest| rest.starts_with('-'));
        if stem != current && older_of_os {
            tracing::info!(file = %entry.path().display(), "removing a superseded lab image");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Remove half-built images of `os` left by crashed builds. The caller holds
/// that OS's build lock, so nothing is building them.
fn remove_stale_builds(cache_dir: &Path, os: Os) -> Result<(), LabError> {
    let prefix = format!(".build-{os}-");
    let entries =
        std::fs::read_dir(cache_dir).map_err(|e| LabError::io("reading", cache_dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && !name.ends_with(".lock") {
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

fn build(
    os: Os,
    tmp: &Path,
    img: &Path,
    cache_dir: &Path,
    mirrors: &Mirrors,
) -> Result<(), LabError> {
    let name = image_name(os);
    let log = cache_dir.join(format!(".build-{name}.log"));
    let log_file =
        std::fs::File::create(&log).map_err(|e| LabError::io("creating log", &log, e))?;
    let log_err = log_file
        .try_clone()
        .map_err(|e| LabError::io("creating log", &log, e))?;
    let keyring = match os.family() {
        // Signatures are always verified: Ubuntu's with the key shipped here.
        Family::Ubuntu => {
            let path = cache_dir.join("ubuntu-archive-2018.gpg");
            crate::sys::write_atomic(&path, UBUNTU_ARCHIVE_KEY, 0o644)?;
            path
        }
        Family::Debian => PathBuf::from(os.keyring_in_image()),
    };
    tracing::info!(%os, mirror = %mirrors.main, dir = %tmp.display(), "debootstrap of a lab image");
    let mut c = cmd("debootstrap");
    c.arg("--variant=minbase")
        .arg(format!("--include={}", os.packages().join(",")))
        .arg("--components=main")
        .arg(format!("--keyring={}", keyring.display()))
        .arg(os.suite())
        .arg(tmp)
        .arg(&mirrors.main)
        .arg(Path::new(DEBOOTSTRAP_SCRIPTS).join(os.debootstrap_script()))
        .env("DEBIAN_FRONTEND", "noninteractive")
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
        // Its last lines are in the error; nothing of a failed build stays in the cache.
        let _ = std::fs::remove_file(&log);
        return Err(LabError::Command {
            command,
            status: status.to_string(),
            stderr,
            hint: format!(
                "is the mirror {} reachable and its signature good? Override it with {}=<mirror URL>",
                mirrors.main, mirrors.override_var
            ),
        });
    }
    // debootstrap unmounts what it mounted; make sure before the rename.
    crate::sys::unmount_all_under(tmp)?;
    customize(os, tmp, mirrors)?;
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

/// Run `program args` inside the image tree (`chroot`).
fn in_tree(root: &Path, program: &str, args: &[&str]) -> Result<(), LabError> {
    crate::sys::run(
        cmd("chroot")
            .arg(root)
            .arg(program)
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "the image tree is incomplete; remove the cache directory and build again",
    )
    .map(|_| ())
}

/// Make the debootstrapped tree a lab image of `os`: apt sources, networkd
/// for the static address, masked units, the provider's sudo user and
/// cloud-init's sshd drop-in, no host keys / machine-id (made per host).
fn customize(os: Os, root: &Path, mirrors: &Mirrors) -> Result<(), LabError> {
    // apt: the mirror the image was built from; no translations (faster update).
    let (sources_file, sources) = mirrors.render_sources(os);
    write_file(&root.join(sources_file), &sources)?;
    if sources_file != "etc/apt/sources.list" {
        let name = Path::new(sources_file)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        write_file(
            &root.join("etc/apt/sources.list"),
            &format!("# See /etc/apt/sources.list.d/{name}\n"),
        )?;
    }
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
    if os.socket_activated_ssh() {
        // What Ubuntu 24.04 ships: sshd started by ssh.socket on first
        // connection, ssh.service not enabled itself.
        symlink(
            "/lib/systemd/system/ssh.socket",
            &sys.join("sockets.target.wants/ssh.socket"),
        )?;
        let _ = std::fs::remove_file(sys.join("multi-user.target.wants/ssh.service"));
        let _ = std::fs::remove_file(sys.join("sshd.service"));
    }

    // The provider's sudo login user (cloud-init's default user) and
    // cloud-init's sshd drop-in. Keys are added per host.
    let user = os.default_user();
    in_tree(
        root,
        "useradd",
        &[
            "--create-home",
            "--shell",
            "/bin/bash",
            "--groups",
            "sudo,adm",
            "--",
            user,
        ],
    )?;
    let sudoers = root.join("etc/sudoers.d/90-cloud-init-users");
    write_file(
        &sudoers,
        &format!(
            "# Created by cloud-init\n# User rules for {user}\n{user} ALL=(ALL) NOPASSWD:ALL\n"
        ),
    )?;
    set_mode(&sudoers, 0o440)?;
    write_file(
        &root.join("etc/ssh/sshd_config.d/50-cloud-init.conf"),
        CLOUD_INIT_SSHD_DROP_IN,
    )?;
    set_mode(
        &root.join("etc/ssh/sshd_config.d/50-cloud-init.conf"),
        0o600,
    )?;

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
    let config = std::fs::read_to_string(root.join("etc/ssh/sshd_config")).unwrap_or_default();
    if !config.lines().any(|l| {
        l.trim_start()
            .starts_with("Include /etc/ssh/sshd_config.d/")
    }) {
        return Err(LabError::BadState {
            path: root.join("etc/ssh/sshd_config"),
            detail: "does not include /etc/ssh/sshd_config.d/*.conf".into(),
        });
    }
    write_file(&root.join(MARKER), &marker_text(os, &mirrors.main))?;
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| LabError::io("setting permissions of", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The v4 fingerprint of the first public-key packet of a binary
    /// OpenPGP key: SHA-1 over 0x99, the 2-byte body length and the body.
    fn v4_fingerprint(key: &[u8]) -> String {
        let tag = key[0];
        assert!(tag & 0x80 != 0, "not an OpenPGP packet");
        let (body_start, len) = if tag & 0x40 != 0 {
            // New format.
            match key[1] {
                l @ 0..=191 => (2, l as usize),
                l @ 192..=223 => (3, ((l as usize - 192) << 8) + key[2] as usize + 192),
                _ => (
                    6,
                    u32::from_be_bytes([key[2], key[3], key[4], key[5]]) as usize,
                ),
            }
        } else {
            match tag & 0x03 {
                0 => (2, key[1] as usize),
                1 => (3, u16::from_be_bytes([key[1], key[2]]) as usize),
                _ => (
                    5,
                    u32::from_be_bytes([key[1], key[2], key[3], key[4]]) as usize,
                ),
            }
        };
        let packet_tag = if tag & 0x40 != 0 {
            tag & 0x3f
        } else {
            (tag >> 2) & 0x0f
        };
        assert_eq!(packet_tag, 6, "first packet is not a public key");
        let body = &key[body_start..body_start + len];
        assert_eq!(body[0], 4, "not a v4 key");
        let mut data = vec![0x99, (len >> 8) as u8, len as u8];
        data.extend_from_slice(body);
        sha1_smol::Sha1::from(&data)
            .digest()
            .to_string()
            .to_uppercase()
    }

    #[test]
    fn shipped_ubuntu_key_has_the_archive_fingerprint() {
        assert_eq!(
            v4_fingerprint(UBUNTU_ARCHIVE_KEY),
            UBUNTU_ARCHIVE_KEY_FINGERPRINT
        );
    }

    #[test]
    fn image_names_follow_the_recipe() {
        let names: Vec<String> = Os::ALL.into_iter().map(image_name).collect();
        assert!(names[0].starts_with("ubuntu-24.04-"), "{names:?}");
        assert_eq!(names[0].len(), "ubuntu-24.04-".len() + 12);
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        assert!(recipe(Os::Ubuntu2204).contains("needrestart"));
    }

    #[test]
    fn superseded_images_of_the_same_os_only_are_removed() {
        let dir = std::env::temp_dir().join(format!("lab-image-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let current = image_name(Os::Debian12);
        for f in [
            format!("{current}.img"),
            "debian-12-000000000000.img".into(),
            "debian-12-000000000000.meta".into(),
            "bookworm-v1.img".into(),
            format!("{}.img", image_name(Os::Debian13)),
            "debian-13-000000000000.img".into(),
        ] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        remove_superseded(&dir, Os::Debian12);
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want = vec![
            format!("{current}.img"),
            "bookworm-v1.img".to_string(),
            format!("{}.img", image_name(Os::Debian13)),
            "debian-13-000000000000.img".to_string(),
        ];
        want.sort();
        assert_eq!(left, want);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
