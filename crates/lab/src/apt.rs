//! Finding the Debian mirror this machine's apt is configured for.
//!
//! The lab never names a mirror itself: it reads the machine's apt
//! configuration (deb822 `*.sources` files first, then one-line `*.list`
//! files and `/etc/apt/sources.list`), unless the caller overrides it.

use std::path::{Path, PathBuf};

use crate::LabError;

/// The Debian release the lab installs.
pub const SUITE: &str = "bookworm";

/// One enabled `deb` entry of the apt configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptEntry {
    /// Repository URIs, trailing `/` removed.
    pub uris: Vec<String>,
    /// Suites (`bookworm`, `bookworm-updates`, ...).
    pub suites: Vec<String>,
    /// Components (`main`, `contrib`, ...).
    pub components: Vec<String>,
}

/// Where the lab's images get their packages from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirrors {
    /// The mirror for `bookworm` (and its `-updates`).
    pub main: String,
    /// Suites to configure for `main` inside the image.
    pub main_suites: Vec<String>,
    /// The security archive, when the machine has one configured.
    pub security: Option<String>,
}

impl Mirrors {
    /// Mirrors from an explicit URL (the override): `bookworm` and
    /// `bookworm-updates` from it, no separate security archive.
    pub fn from_override(url: &str) -> Mirrors {
        Mirrors {
            main: normalize_uri(url),
            main_suites: vec![SUITE.to_string(), format!("{SUITE}-updates")],
            security: None,
        }
    }

    /// The deb822 `debian.sources` written into images.
    pub fn render_sources(&self) -> String {
        let mut out = String::from(
            "# Written by provision-lab from the build machine's apt configuration.\n",
        );
        out.push_str(&format!(
            "Types: deb\nURIs: {}\nSuites: {}\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
            self.main,
            self.main_suites.join(" ")
        ));
        if let Some(sec) = &self.security {
            out.push_str(&format!(
                "\nTypes: deb\nURIs: {sec}\nSuites: {SUITE}-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
            ));
        }
        out
    }
}

fn normalize_uri(uri: &str) -> String {
    uri.trim().trim_end_matches('/').to_string()
}

fn usable_uri(uri: &str) -> bool {
    uri.starts_with("http://") || uri.starts_with("https://") || uri.starts_with("file:/")
}

/// Parse deb822 text (`*.sources`). Disabled entries (`Enabled: no`) and
/// entries without the `deb` type are skipped.
pub fn parse_deb822(text: &str) -> Vec<AptEntry> {
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
pub fn parse_one_line(text: &str) -> Vec<AptEntry> {
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

/// Pick the mirrors for `bookworm` from parsed entries: the first usable URI of
/// the first entry whose suites include `bookworm`; the security archive from
/// an entry with `bookworm-security`.
pub fn pick_mirrors(entries: &[AptEntry]) -> Option<Mirrors> {
    let security_suite = format!("{SUITE}-security");
    let mut main: Option<(String, Vec<String>)> = None;
    let mut security = None;
    for entry in entries {
        let Some(uri) = entry.uris.iter().find(|u| usable_uri(u)) else {
            continue;
        };
        if main.is_none() && entry.suites.iter().any(|s| s == SUITE) {
            // Keep the suites of this mirror that belong to the release,
            // except -security (a separate archive).
            let mut suites: Vec<String> = entry
                .suites
                .iter()
                .filter(|s| *s == SUITE || *s == &format!("{SUITE}-updates"))
                .cloned()
                .collect();
            // The same URI may carry -updates in another entry.
            for other in entries {
                if other.uris.iter().any(|u| u == uri) {
                    for s in &other.suites {
                        if s == &format!("{SUITE}-updates") && !suites.contains(s) {
                            suites.push(s.clone());
                        }
                    }
                }
            }
            main = Some((uri.clone(), suites));
        }
        if security.is_none() && entry.suites.iter().any(|s| s == &security_suite) {
            security = Some(uri.clone());
        }
    }
    main.map(|(main, main_suites)| Mirrors {
        main,
        main_suites,
        security,
    })
}

/// The apt source files of a configuration rooted at `etc_apt`
/// (normally `/etc/apt`), in the order they are consulted.
pub fn source_files(etc_apt: &Path) -> Vec<PathBuf> {
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
pub fn mirrors_from_apt_config(etc_apt: &Path) -> Result<Mirrors, LabError> {
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
        searched: files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// The mirrors to use: `override_url` if given, else `PROVISION_LAB_MIRROR`,
/// else the machine's apt configuration.
pub fn resolve_mirrors(override_url: Option<&str>) -> Result<Mirrors, LabError> {
    if let Some(url) = override_url.filter(|u| !u.trim().is_empty()) {
        return Ok(Mirrors::from_override(url));
    }
    if let Ok(url) = std::env::var("PROVISION_LAB_MIRROR")
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
        assert_eq!(m.main_suites, vec!["bookworm", "bookworm-updates"]);
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
        assert_eq!(m.main_suites, vec!["bookworm"]);
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
        assert_eq!(m.main_suites, vec!["bookworm", "bookworm-updates"]);
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
        assert_eq!(m.main_suites, vec!["bookworm"]);

        std::fs::remove_file(dir.join("sources.list")).unwrap();
        let err = mirrors_from_apt_config(&dir).unwrap_err();
        assert!(err.to_string().contains("PROVISION_LAB_MIRROR"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn override_and_rendering() {
        let m = Mirrors::from_override("http://override.example.org/debian/");
        assert_eq!(m.main, "http://override.example.org/debian");
        let text = m.render_sources();
        assert!(text.contains("URIs: http://override.example.org/debian\n"));
        assert!(text.contains("Suites: bookworm bookworm-updates\n"));
        assert!(!text.contains("security"));

        let m = pick_mirrors(&parse_deb822(DEB822)).unwrap();
        let text = m.render_sources();
        assert!(text.contains("Suites: bookworm-security\n"), "{text}");
        assert_eq!(parse_deb822(&text).len(), 2);
    }
}
