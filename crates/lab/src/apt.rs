//! Finding the mirrors the lab's images are built from.
//!
//! The lab never names a mirror itself. Debian's comes from the machine's
//! apt configuration (deb822 `*.sources` files first, then one-line `*.list`
//! files and `/etc/apt/sources.list`); Ubuntu's from debootstrap's own
//! `gutsy` script (`default_mirror`); each can be overridden
//! (`PROVISION_LAB_MIRROR`, `PROVISION_LAB_UBUNTU_MIRROR`).

use std::path::{Path, PathBuf};

use crate::LabError;
use crate::os::{Family, Os};

/// Variable overriding the Debian mirror.
pub(crate) const DEBIAN_MIRROR_VAR: &str = "PROVISION_LAB_MIRROR";
/// Variable overriding the Ubuntu mirror.
pub(crate) const UBUNTU_MIRROR_VAR: &str = "PROVISION_LAB_UBUNTU_MIRROR";
/// debootstrap's script directory.
pub(crate) const DEBOOTSTRAP_SCRIPTS: &str = "/usr/share/debootstrap/scripts";

/// Debian code names (and aliases) a machine's apt sources may name.
const DEBIAN_SUITES: &[&str] = &[
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "oldoldstable",
    "oldstable",
    "stable",
    "testing",
    "unstable",
];

/// One enabled `deb` entry of the apt configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AptEntry {
    /// Repository URIs, trailing `/` removed.
    pub uris: Vec<String>,
    /// Suites (`bookworm`, `bookworm-updates`, ...).
    pub suites: Vec<String>,
    /// Components (`main`, `contrib`, ...).
    pub components: Vec<String>,
}

/// Where an image gets its packages from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mirrors {
    /// The distribution archive (release and `-updates` suites).
    pub main: String,
    /// The security archive, when separate from `main` and known.
    pub security: Option<String>,
    /// The variable that overrides `main`.
    pub override_var: &'static str,
}

impl Mirrors {
    /// Mirrors from an explicit Debian URL (the override): no separate
    /// security archive.
    pub(crate) fn from_override(url: &str) -> Mirrors {
        Mirrors {
            main: normalize_uri(url),
            security: None,
            override_var: DEBIAN_MIRROR_VAR,
        }
    }

    /// An Ubuntu archive: it carries the `-security` suites itself.
    pub(crate) fn ubuntu(url: &str) -> Mirrors {
        Mirrors {
            main: normalize_uri(url),
            security: None,
            override_var: UBUNTU_MIRROR_VAR,
        }
    }

    /// The apt sources written into an image of `os`, and the file they go
    /// to (relative to the root): deb822 where the release ships deb822,
    /// else a one-line `sources.list`.
    pub(crate) fn render_sources(&self, os: Os) -> (&'static str, String) {
        let suite = os.suite();
        let keyring = os.keyring_in_image();
        let components = match os.family() {
            Family::Ubuntu => "main restricted universe multiverse",
            Family::Debian => "main",
        };
        let security = self.security.as_deref().or(match os.family() {
            Family::Ubuntu => Some(self.main.as_str()),
            Family::Debian => None,
        });
        let mut out = String::from("# Written by provision-lab.\n");
        if os.deb822_sources() {
            out.push_str(&format!(
                "Types: deb\nURIs: {}\nSuites: {suite} {suite}-updates\nComponents: {components}\nSigned-By: {keyring}\n",
                self.main
            ));
            if let Some(sec) = security {
                out.push_str(&format!(
                    "\nTypes: deb\nURIs: {sec}\nSuites: {suite}-security\nComponents: {components}\nSigned-By: {keyring}\n"
                ));
            }
            let file = match os.family() {
                Family::Ubuntu => "etc/apt/sources.list.d/ubuntu.sources",
                Family::Debian => "etc/apt/sources.list.d/debian.sources",
            };
            (file, out)
        } else {
            for s in [suite.to_string(), format!("{suite}-updates")] {
                out.push_str(&format!("deb {} {s} {components}\n", self.main));
            }
            if let Some(sec) = security {
                out.push_str(&format!("deb {sec} {suite}-security {components}\n"));
            }
            ("etc/apt/sources.list", out)
        }
    }
}

fn normalize_uri(uri: &str) -> String {
    uri.trim().trim_end_matches('/').to_string()
}

fn usable_uri(uri: &str) -> bool {
    uri.starts_with("http://") || uri.starts_with("https://") || uri.starts_with("file:/")
}

/// `bookworm-updates` → `bookworm`; a suite of Debian's release, or None.
fn debian_release_of(suite: &str) -> Option<(&str, &str)> {
    let (base, pocket) = suite.split_once('-').unwrap_or((suite, ""));
    DEBIAN_SUITES.contains(&base).then_some((base, pocket))
}
/// Parse deb822 text (`*.sources`). Disabled entries (`Enabled: no`) and
/// entries without the `deb` type are skipped.
pub(crate) fn parse_deb822(text: &str) -> Vec<AptEntry> {
    let mut entries = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let flush = |fields: &mut Vec<(String, String)>, entries: &mut Vec<AptEntry>| {
        if fields.is_empty() {
            return;
        }
        let get = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_str())
        };
        let enabled = get("Enabled").is_none_or(|v| !v.trim().eq_ignore_ascii_case("no"));
        let is_deb = get("Types").is_some_and(|v| v.split_whitespace().any(|t| t == "deb"));
        if enabled && is_deb {
            let words = |key: &str| -> Vec<String> {
                get(key)
                    .map(|v| v.split_whitespace().map(str::to_string).collect())
                    .unwrap_or_default()
            };
            let uris: Vec<String> = words("URIs").iter().map(|u| normalize_uri(u)).collect();
            entries.push(AptEntry {
                uris,
                suites: words("Suites"),
                components: words("Components"),
            });
        }
        fields.clear();
    };
    for line in text.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            flush(&mut fields, &mut entries);
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            // Continuation of the previous field (e.g. an inline Signed-By key).
            if let Some((_, v)) = fields.last_mut() {
                v.push('\n');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            fields.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    flush(&mut fields, &mut entries);
    entries
}

/// Parse one-line style text (`sources.list`, `*.list`). Only `deb` lines;
/// `[option=value ...]` blocks are skipped.
pub(crate) fn parse_one_line(text: &str) -> Vec<AptEntry> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line
            .strip_prefix("deb ")
            .or_else(|| line.strip_prefix("deb\t"))
        else {
            continue;
        };
        let mut rest = rest.trim_start();
        if rest.starts_with('[') {
            match rest.find(']') {
                Some(end) => rest = rest[end + 1..].trim_start(),
                None => continue,
            }
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        entries.push(AptEntry {
            uris: vec![normalize_uri(uri)],
            suites: vec![suite.to_string()],
            components: words.map(str::to_string).collect(),
        });
    }
    entries
}

/// Pick Debian's mirrors from parsed entries: the first usable URI of the
/// first entry carrying a Debian release (or its `-updates`); the security
/// archive from an entry with a `-security` suite.
pub(crate) fn pick_mirrors(entries: &[AptEntry]) -> Option<Mirrors> {
    let mut main = None;
    let mut security = None;
    for entry in entries {
        let Some(uri) = entry.uris.iter().find(|u| usable_uri(u)) else {
            continue;
        };
        let pockets: Vec<&str> = entry
            .suites
            .iter()
            .filter_map(|s| debian_release_of(s).map(|(_, pocket)| pocket))
            .collect();
        if main.is_none() && pockets.iter().any(|p| p.is_empty() || *p == "updates") {
            main = Some(uri.clone());
        }
        if security.is_none() && pockets.contains(&"security") {
            security = Some(uri.clone());
        }
    }
    main.map(|main| Mirrors {
        main,
        security,
        override_var: DEBIAN_MIRROR_VAR,
    })
}

/// The Ubuntu mirror debootstrap's own `gutsy` script names for `arch`
/// (the `default_mirror` of its case, skipping old-releases).
pub(crate) fn ubuntu_mirror_from_script(script: &str, arch: &str) -> Option<String> {
    let mut current_arch_matches = false;
    let mut fallback = None;
    let mut depth = 0usize;
    for line in script.lines() {
        let t = line.trim();
        if t.starts_with("case ") {
            depth += 1;
            continue;
        }
        if t == "esac" {
            depth = depth.saturating_sub(1);
            continue;
        }
        // Arch patterns of the outer case: `amd64|i386)`, `sparc)`, `*)`.
        if depth == 1 && t.ends_with(')') && !t.contains(' ') {
            let pat = t.trim_end_matches(')');
            current_arch_matches = pat.split('|').any(|p| p == arch);
            if pat == "*" {
                current_arch_matches = false;
            }
            continue;
        }
        if let Some(url) = t.strip_prefix("default_mirror ") {
            let url = url.trim();
            if url.contains("old-releases") {
                continue;
            }
            if current_arch_matches {
                return Some(normalize_uri(url));
            }
            fallback = Some(normalize_uri(url));
        }
    }
    fallback
}

/// The Ubuntu mirror: `override_url`, else `PROVISION_LAB_UBUNTU_MIRROR`,
/// else the one debootstrap's `gutsy` script names for this machine's arch.
pub(crate) fn ubuntu_mirrors(override_url: Option<&str>) -> Result<Mirrors, LabError> {
    if let Some(url) = override_url.filter(|u| !u.trim().is_empty()) {
        return Ok(Mirrors::ubuntu(url));
    }
    if let Ok(url) = std::env::var(UBUNTU_MIRROR_VAR)
        && !url.trim().is_empty()
    {
        return Ok(Mirrors::ubuntu(&url));
    }
    let path = Path::new(DEBOOTSTRAP_SCRIPTS).join("gutsy");
    let script = std::fs::read_to_string(&path).map_err(|e| LabError::io("reading", &path, e))?;
    let arch = machine_arch();
    ubuntu_mirror_from_script(&script, &arch)
        .map(|m| Mirrors::ubuntu(&m))
        .ok_or_else(|| LabError::NoMirror {
            what: "Ubuntu",
            searched: path.display().to_string(),
            var: UBUNTU_MIRROR_VAR,
        })
}

/// dpkg's name for this machine's architecture.
pub(crate) fn machine_arch() -> String {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "arm" => "armhf",
        other => other,
    }
    .to_string()
}

/// The apt source files of a configuration rooted at `etc_apt`
/// (normally `/etc/apt`), in the order they are consulted.
pub(crate) fn source_files(etc_apt: &Path) -> Vec<PathBuf> {
    let mut deb822 = Vec::new();
    let mut lists = Vec::new();
    if let Ok(dir) = std::fs::read_dir(etc_apt.join("sources.list.d")) {
        for entry in dir.flatten() {
            let path = entry.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("sources") => deb822.push(path),
                Some("list") => lists.push(path),
                _ => {}
            }
        }
    }
    deb822.sort();
    lists.sort();
    let mut files = deb822;
    files.push(etc_apt.join("sources.list"));
    files.extend(lists);
    files
}

/// Read the apt configuration under `etc_apt` and pick the mirrors.
pub(crate) fn mirrors_from_apt_config(etc_apt: &Path) -> Result<Mirrors, LabError> {
    let files = source_files(etc_apt);
    let mut entries = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        if file.extension().is_some_and(|e| e == "sources") {
            entries.extend(parse_deb822(&text));
        } else {
            entries.extend(parse_one_line(&text));
        }
    }
    pick_mirrors(&entries).ok_or_else(|| LabError::NoMirror {
        what: "Debian",
        var: DEBIAN_MIRROR_VAR,
        searched: files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Debian's mirrors: `override_url` if given, else `PROVISION_LAB_MIRROR`,
/// else the machine's apt configuration.
pub(crate) fn debian_mirrors(override_url: Option<&str>) -> Result<Mirrors, LabError> {
    if let Some(url) = override_url.filter(|u| !u.trim().is_empty()) {
        return Ok(Mirrors::from_override(url));
    }
    if let Ok(url) = std::env::var(DEBIAN_MIRROR_VAR)
        && !url.trim().is_empty()
    {
        return Ok(Mirrors::from_override(&url));
    }
    mirrors_from_apt_config(Path::new("/etc/apt"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "\
Types: deb
# http://snapshot.example.org/archive/debian/20250520T000000Z
URIs: http://mirror.example.org/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

    #[test]
    fn deb822_main_and_security() {
        let entries = parse_deb822(DEB822);
        assert_eq!(entries.len(), 2);
        let m = pick_mirrors(&entries).unwrap();
        assert_eq!(m.main, "http://mirror.example.org/debian");
        assert_eq!(
            m.security.as_deref(),
            Some("http://security.example.org/debian-security")
        );
    }

    #[test]
    fn deb822_skips_disabled_src_and_other_suites() {
        let text = "\
Types: deb
URIs: https://other.example.com/node
Suites: nodistro
Components: main

Types: deb-src
URIs: http://src.example.org/debian
Suites: bookworm
Components: main

Enabled: no
Types: deb
URIs: http://disabled.example.org/debian
Suites: bookworm
Components: main

types: deb deb-src
uris: http://second.example.org/debian http://third.example.org/debian
suites: trixie bookworm
components: main contrib
signed-by:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 abc
 -----END PGP PUBLIC KEY BLOCK-----
";
        let entries = parse_deb822(text);
        assert_eq!(entries.len(), 2, "{entries:?}");
        let m = pick_mirrors(&entries).unwrap();
        assert_eq!(m.main, "http://second.example.org/debian");
        assert_eq!(m.security, None);
    }

    #[test]
    fn one_line_format() {
        let text = "\
# comment
deb-src http://src.example.org/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://mirror.example.net/debian/ bookworm main contrib # trailing
deb http://mirror.example.net/debian bookworm-updates main
deb http://security.example.net/debian-security bookworm-security main
deb cdrom:[Debian GNU/Linux 12]/ bookworm main
";
        let entries = parse_one_line(text);
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0].components, vec!["main", "contrib"]);
        let m = pick_mirrors(&entries).unwrap();
        assert_eq!(m.main, "http://mirror.example.net/debian");
        assert_eq!(
            m.security.as_deref(),
            Some("http://security.example.net/debian-security")
        );
    }

    #[test]
    fn cdrom_only_gives_nothing() {
        let entries = parse_one_line("deb cdrom:[Debian]/ bookworm main\n");
        assert_eq!(pick_mirrors(&entries), None);
    }

    #[test]
    fn config_dir_order_prefers_sources_files() {
        let dir = std::env::temp_dir().join(format!("lab-apt-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sources.list.d")).unwrap();
        std::fs::write(
            dir.join("sources.list"),
            "deb http://from-list.example.org/debian bookworm main\n",
        )
        .unwrap();
        std::fs::write(dir.join("sources.list.d/debian.sources"), DEB822).unwrap();
        std::fs::write(
            dir.join("sources.list.d/x.list.disabled-by-someone"),
            "deb http://ignored.example.org/debian bookworm main\n",
        )
        .unwrap();
        let m = mirrors_from_apt_config(&dir).unwrap();
        assert_eq!(m.main, "http://mirror.example.org/debian");

        std::fs::remove_file(dir.join("sources.list.d/debian.sources")).unwrap();
        let m = mirrors_from_apt_config(&dir).unwrap();
        assert_eq!(m.main, "http://from-list.example.org/debian");

        std::fs::remove_file(dir.join("sources.list")).unwrap();
        let err = mirrors_from_apt_config(&dir).unwrap_err();
        assert!(err.to_string().contains("PROVISION_LAB_MIRROR"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn override_and_rendering() {
        let m = Mirrors::from_override("http://override.example.org/debian/");
        assert_eq!(m.main, "http://override.example.org/debian");
        let (file, text) = m.render_sources(Os::Debian12);
        assert_eq!(file, "etc/apt/sources.list.d/debian.sources");
        assert!(text.contains("URIs: http://override.example.org/debian\n"));
        assert!(text.contains("Suites: bookworm bookworm-updates\n"));
        assert!(!text.contains("security"));

        let m = pick_mirrors(&parse_deb822(DEB822)).unwrap();
        let (_, text) = m.render_sources(Os::Debian13);
        assert!(text.contains("Suites: trixie trixie-updates\n"), "{text}");
        assert!(text.contains("Suites: trixie-security\n"), "{text}");
        assert_eq!(parse_deb822(&text).len(), 2);
    }

    #[test]
    fn ubuntu_sources_per_release() {
        let m = Mirrors::ubuntu("http://ubuntu.example.org/ubuntu/");
        let (file, text) = m.render_sources(Os::Ubuntu2404);
        assert_eq!(file, "etc/apt/sources.list.d/ubuntu.sources");
        let entries = parse_deb822(&text);
        assert_eq!(entries.len(), 2, "{text}");
        assert_eq!(entries[0].suites, vec!["noble", "noble-updates"]);
        assert_eq!(entries[1].suites, vec!["noble-security"]);
        assert!(entries[0].components.contains(&"universe".to_string()));
        assert!(text.contains("Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg"));

        let (file, text) = m.render_sources(Os::Ubuntu2204);
        assert_eq!(file, "etc/apt/sources.list");
        let entries = parse_one_line(&text);
        let suites: Vec<&str> = entries.iter().map(|e| e.suites[0].as_str()).collect();
        assert_eq!(suites, ["jammy", "jammy-updates", "jammy-security"]);
        assert!(
            entries
                .iter()
                .all(|e| e.uris == ["http://ubuntu.example.org/ubuntu"])
        );
    }

    /// The shape of debootstrap's `gutsy` script (host names replaced).
    const GUTSY: &str = "\
case $ARCH in
  amd64|i386)
\tcase $SUITE in
\t  gutsy|hardy|intrepid)
\tdefault_mirror http://old-releases.example.org/ubuntu
\t  ;;
\t  *)
\tdefault_mirror http://main.example.org/ubuntu
\t;;
\tesac
\t;;
  sparc)
\tcase $SUITE in
\t  gutsy)
\tdefault_mirror http://old-releases.example.org/ubuntu
\t;;
\t  *)
\tdefault_mirror http://ports.example.org/ubuntu-ports
\t;;
\tesac
\t;;
  *)
\tdefault_mirror http://ports.example.org/ubuntu-ports
\t;;
esac
mirror_style release
";

    #[test]
    fn ubuntu_mirror_comes_from_debootstraps_script() {
        assert_eq!(
            ubuntu_mirror_from_script(GUTSY, "amd64").as_deref(),
            Some("http://main.example.org/ubuntu")
        );
        assert_eq!(
            ubuntu_mirror_from_script(GUTSY, "i386").as_deref(),
            Some("http://main.example.org/ubuntu")
        );
        assert_eq!(
            ubuntu_mirror_from_script(GUTSY, "arm64").as_deref(),
            Some("http://ports.example.org/ubuntu-ports")
        );
        assert_eq!(
            ubuntu_mirror_from_script("mirror_style release\n", "amd64"),
            None
        );
    }

    #[test]
    fn the_machines_debootstrap_names_an_ubuntu_mirror() {
        // Where debootstrap is installed (always in CI), its script must parse.
        let path = Path::new(DEBOOTSTRAP_SCRIPTS).join("gutsy");
        if let Ok(script) = std::fs::read_to_string(&path) {
            let m = ubuntu_mirror_from_script(&script, &machine_arch()).unwrap();
            assert!(m.starts_with("http"), "{m}");
            assert!(!m.contains("old-releases"), "{m}");
        } else {
            assert!(
                !crate::testing::lab_required(),
                "{} is missing where lab tests are required",
                path.display()
            );
        }
    }
}
