//! `apt.mirror`: the host's distribution archive replaced by a mirror (issue 15).
//!
//! The entries of the distribution in the host's own sources files are rewritten in place,
//! in the format the host uses: the deb822 `/etc/apt/sources.list.d/ubuntu.sources` or
//! `debian.sources` (Ubuntu 24.04, Debian 13, many Debian 12 images) and the one-line
//! `/etc/apt/sources.list` (Ubuntu 22.04, older images); both when both hold entries.
//! Only the URIs change: types, suites, components, `Signed-By` and other options,
//! comments and every other entry (a PPA, a vendor repository) stay as they are.
//!
//! An entry is the distribution's when every suite is the release's (`noble`,
//! `noble-updates`, `noble-security`, `bookworm-backports`, …), every component one of
//! the distribution's (Ubuntu: main restricted universe multiverse; Debian: main contrib
//! non-free non-free-firmware) and its `Signed-By`, if any, the distribution's archive
//! keyring (a PPA's entry has its own key). The `-security` suites follow
//! `apt.security_mirror` when set, else the mirror on Ubuntu (Ubuntu's mirrors carry the
//! security pocket) and on Debian the mirror's `debian-security` beside its `debian`
//! (Debian's security archive is a separate tree; mirrors publish it at that path). A
//! Debian mirror whose path does not end in `/debian` needs `apt.security_mirror`.
//!
//! Every rewrite keeps the previous file as `<path>.provision-bak`; then `apt-get
//! update`: if the mirror does not answer (or apt fails), the files are put back, the step
//! fails naming the mirror, and nothing after it runs (no package is installed). Once the
//! mirror answered, the first rewrite's backup is kept as `<path>.provision-orig` (the
//! distribution's file, never overwritten).

use common::apt::Restore;
use common::facts::builtin::{HostInfo, HostInfoValue, PathKind, PathState};
use common::inventory::AptVars;
use common::resource::ResourceId;
use common::resources::{File, editable_text};
use common::shell::quote;
use common::{Action, Fact, FactError, Facts, Plan, PlanError, Probe, Resource};

use crate::support::PlanBuilder;

pub(crate) const SOURCES_LIST: &str = "/etc/apt/sources.list";
pub(crate) const UBUNTU_SOURCES: &str = "/etc/apt/sources.list.d/ubuntu.sources";
pub(crate) const DEBIAN_SOURCES: &str = "/etc/apt/sources.list.d/debian.sources";
/// Suffix of the original distribution file, kept once.
pub(crate) const ORIGINAL_SUFFIX: &str = ".provision-orig";

/// The distribution archive of a host and where it should come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    pub os_id: String,
    pub codename: String,
    /// The mirror, without a trailing `/`.
    pub main: String,
    /// Where the `-security` suites come from.
    pub security: String,
}

fn trimmed(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}

impl Archive {
    /// `None` without `apt.mirror`.
    pub(crate) fn for_host(
        vars: &AptVars,
        host: &HostInfoValue,
    ) -> Result<Option<Archive>, PlanError> {
        let Some(mirror) = vars.mirror.as_deref() else {
            return match &vars.security_mirror {
                Some(s) => Err(PlanError::InvalidVar {
                    field: "apt.security_mirror".into(),
                    expected: "apt.mirror beside it (the security mirror replaces the security suites of a mirrored archive)".into(),
                    value: s.clone(),
                }),
                None => Ok(None),
            };
        };
        let main = trimmed(mirror);
        let security = match (&vars.security_mirror, host.os_id.as_str()) {
            (Some(s), _) => trimmed(s),
            (None, "debian") => match main.strip_suffix("/debian") {
                Some(root) => format!("{root}/debian-security"),
                None => {
                    return Err(PlanError::InvalidVar {
                        field: "apt.security_mirror".into(),
                        expected: "the URL of a mirror of Debian's security archive: it cannot be derived from apt.mirror, whose path does not end in /debian".into(),
                        value: mirror.into(),
                    });
                }
            },
            (None, _) => main.clone(),
        };
        Ok(Some(Archive {
            os_id: host.os_id.clone(),
            codename: host.os_codename.clone(),
            main,
            security,
        }))
    }

    fn components(&self) -> &'static [&'static str] {
        if self.os_id == "debian" {
            &["main", "contrib", "non-free", "non-free-firmware"]
        } else {
            &["main", "restricted", "universe", "multiverse"]
        }
    }

    fn release_suite(&self, suite: &str) -> bool {
        let suite = suite.trim_end_matches('/');
        suite == self.codename
            || suite
                .strip_prefix(self.codename.as_str())
                .is_some_and(|rest| rest.starts_with('-') && rest.len() > 1)
    }

    /// The URI an entry of these suites and components gets: `Ok(None)` when it is not
    /// the distribution's.
    fn uri_for(
        &self,
        suites: &[&str],
        components: &[&str],
        signed_by: Option<&str>,
    ) -> Result<Option<&str>, String> {
        let ours = !suites.is_empty()
            && !components.is_empty()
            && signed_by.is_none_or(|k| k.contains("archive-keyring"))
            && suites.iter().all(|s| self.release_suite(s))
            && components.iter().all(|c| self.components().contains(c));
        if !ours {
            return Ok(None);
        }
        let security = suites.iter().filter(|s| s.ends_with("-security")).count();
        if security == 0 {
            Ok(Some(&self.main))
        } else if security == suites.len() {
            Ok(Some(&self.security))
        } else if self.main == self.security {
            Ok(Some(&self.main))
        } else {
            Err(format!(
                "an entry lists the security suite with others ({}), but they come from different archives ({} and {}): split the entry",
                suites.join(" "),
                self.main,
                self.security
            ))
        }
    }

    /// The URLs apt fetches from after the rewrite (what a failed refresh names).
    pub fn urls(&self) -> Vec<String> {
        let mut urls = vec![self.main.clone()];
        if self.security != self.main {
            urls.push(self.security.clone());
        }
        urls
    }
}

/// A rewritten sources file and how many of its entries are the distribution's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rewritten {
    pub text: String,
    pub entries: usize,
}

/// deb822 (`*.sources`): stanzas separated by blank lines; the `URIs:` field of each
/// enabled `deb`/`deb-src` stanza of the distribution is replaced (continuation lines of
/// the old value dropped), everything else kept byte for byte.
pub(crate) fn rewrite_deb822(text: &str, archive: &Archive) -> Result<Rewritten, String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = String::with_capacity(text.len());
    let mut entries = 0;
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim().is_empty() {
            out.push_str(lines[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < lines.len() && !lines[i].trim().is_empty() {
            i += 1;
        }
        let stanza = &lines[start..i];
        // Fields: (name, value, first line, line count).
        let mut fields: Vec<(String, String, usize, usize)> = Vec::new();
        for (n, line) in stanza.iter().enumerate() {
            if line.starts_with('#') {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                if let Some(f) = fields.last_mut() {
                    f.1.push(' ');
                    f.1.push_str(line.trim());
                    f.3 = n + 1 - f.2;
                }
                continue;
            }
            if let Some((name, value)) = line.split_once(':') {
                fields.push((name.trim().to_ascii_lowercase(), value.trim().into(), n, 1));
            }
        }
        let field = |name: &str| {
            fields
                .iter()
                .find(|f| f.0 == name)
                .map(|f| f.1.as_str())
                .unwrap_or_default()
        };
        let enabled = !field("enabled").eq_ignore_ascii_case("no");
        let types: Vec<&str> = field("types").split_whitespace().collect();
        let suites: Vec<&str> = field("suites").split_whitespace().collect();
        let components: Vec<&str> = field("components").split_whitespace().collect();
        let uri = if enabled && types.iter().any(|t| *t == "deb" || *t == "deb-src") {
            let signed_by = fields
                .iter()
                .find(|f| f.0 == "signed-by")
                .map(|f| f.1.as_str());
            archive.uri_for(&suites, &components, signed_by)?
        } else {
            None
        };
        let uris_field = fields.iter().find(|f| f.0 == "uris");
        match (uri, uris_field) {
            (Some(uri), Some((_, _, first, count))) => {
                entries += 1;
                for (n, line) in stanza.iter().enumerate() {
                    if n == *first {
                        let name = line.split_once(':').map_or("URIs", |(name, _)| name);
                        let eol = if line.ends_with('\n') { "\n" } else { "" };
                        out.push_str(&format!("{name}: {uri}{eol}"));
                    } else if n > *first && n < first + count {
                        continue;
                    } else {
                        out.push_str(line);
                    }
                }
            }
            _ => stanza.iter().for_each(|l| out.push_str(l)),
        }
    }
    Ok(Rewritten { text: out, entries })
}

/// One-line style (`sources.list`): `deb [options] URI SUITE COMPONENT…`; the URI of each
/// `deb`/`deb-src` line of the distribution is replaced in place.
pub(crate) fn rewrite_one_line(text: &str, archive: &Archive) -> Result<Rewritten, String> {
    let mut out = String::with_capacity(text.len());
    let mut entries = 0;
    for line in text.split_inclusive('\n') {
        match one_line_uri(line) {
            Some((range, suite, components)) => {
                let components: Vec<&str> = components.split_whitespace().collect();
                let options = line[..range.start]
                    .split_once('[')
                    .map(|(_, o)| o.trim_end().trim_end_matches(']'));
                let signed_by = options.and_then(|o| {
                    o.split_whitespace()
                        .find_map(|w| w.strip_prefix("signed-by="))
                });
                match archive.uri_for(&[suite], &components, signed_by)? {
                    Some(uri) => {
                        entries += 1;
                        out.push_str(&line[..range.start]);
                        out.push_str(uri);
                        out.push_str(&line[range.end..]);
                    }
                    None => out.push_str(line),
                }
            }
            None => out.push_str(line),
        }
    }
    Ok(Rewritten { text: out, entries })
}

/// The byte range of the URI of a `deb`/`deb-src` line, its suite and its components
/// (up to a `#` comment).
fn one_line_uri(line: &str) -> Option<(std::ops::Range<usize>, &str, &str)> {
    let body = line.split('#').next().unwrap_or_default();
    let lead = body.len() - body.trim_start().len();
    let rest = &body[lead..];
    let kind_len = rest.find(char::is_whitespace)?;
    if !matches!(&rest[..kind_len], "deb" | "deb-src") {
        return None;
    }
    let mut at = lead + kind_len;
    let skip_ws = |at: usize| at + body[at..].len() - body[at..].trim_start().len();
    at = skip_ws(at);
    if body[at..].starts_with('[') {
        at += body[at..].find(']')? + 1;
        at = skip_ws(at);
    }
    let uri_len = body[at..].find(char::is_whitespace)?;
    let uri = at..at + uri_len;
    let after = &body[uri.end..];
    let mut words = after.split_whitespace();
    let suite = words.next()?;
    let suite_end = uri.end + after.find(suite)? + suite.len();
    Some((uri, suite, &body[suite_end..]))
}

/// The deb822 file of the host's distribution.
pub(crate) fn deb822_path(host: &HostInfoValue) -> &'static str {
    if host.os_id == "debian" {
        DEBIAN_SOURCES
    } else {
        UBUNTU_SOURCES
    }
}

/// The distribution archive pointed at `apt.mirror` (see the module docs). Must come
/// before every resource that fetches or installs packages.
#[derive(Debug, Clone)]
pub(crate) struct AptMirror {
    pub vars: AptVars,
}

impl Resource for AptMirror {
    fn id(&self) -> ResourceId {
        ResourceId::of("apt", "mirror")
    }

    fn probes(&self) -> Vec<Probe> {
        vec![
            HostInfo.probe(),
            PathState::new(UBUNTU_SOURCES).probe(),
            PathState::new(DEBIAN_SOURCES).probe(),
            PathState::new(SOURCES_LIST).probe(),
        ]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let host = facts.read(&HostInfo)?;
        if !matches!(host.os_id.as_str(), "debian" | "ubuntu") {
            return Err(FactError::Precondition {
                what: format!(
                    "apt.mirror needs a Debian or Ubuntu host, this one is {:?}",
                    host.os_id
                ),
            }
            .into());
        }
        let Some(archive) = Archive::for_host(&self.vars, &host)? else {
            return Ok(Plan::noop("apt.mirror is not set"));
        };
        let mut changes = PlanBuilder::default();
        let mut restore = Vec::new();
        let mut entries = 0;
        let mut files = Vec::new();
        for (path, deb822) in [(deb822_path(&host), true), (SOURCES_LIST, false)] {
            let current = facts.read(&PathState::new(path))?;
            if current.kind == PathKind::Absent {
                continue;
            }
            let text = editable_text(path, &current)?;
            let rewritten = if deb822 {
                rewrite_deb822(&text, &archive)
            } else {
                rewrite_one_line(&text, &archive)
            }
            .map_err(|what| FactError::Precondition {
                what: format!("{path}: {what}"),
            })?;
            if rewritten.entries == 0 {
                continue;
            }
            entries += rewritten.entries;
            files.push(path);
            let desired = File::new(path, rewritten.text)
                .mode(current.mode)
                .owned_by(&current.owner, &current.group);
            if let Some((_, write)) = desired.changes(&current)? {
                restore.extend(Restore::of(&write, &current));
                changes.push(
                    format!("point {path} at {}", archive.urls().join(" and ")),
                    vec![write],
                );
            }
        }
        if entries == 0 {
            return Err(FactError::Precondition {
                what: format!(
                    "apt.mirror: no entry of the {} {} archive (suites {}[-…], components {}) in {} or {SOURCES_LIST} to point at the mirror",
                    host.os_id,
                    host.os_codename,
                    host.os_codename,
                    archive.components().join(" "),
                    deb822_path(&host),
                ),
            }
            .into());
        }
        if changes.is_empty() {
            return Ok(Plan::noop(format!(
                "{} from {} ({})",
                host.os_id,
                archive.urls().join(" and "),
                files.join(", ")
            )));
        }
        changes.then(Action::run(
            "apt-get update (apt.mirror)",
            common::apt::update_or_restore("the mirror (apt.mirror)", &archive.urls(), &restore),
        ));
        // Only once the mirror answered: the write's backup of the distribution's file
        // becomes the kept original (a failed run leaves no trace).
        for r in &restore {
            let backup = quote(&format!("{}.provision-bak", r.path));
            let original = quote(&format!("{}{ORIGINAL_SUFFIX}", r.path));
            changes.then(Action::run(
                format!("keep the original {}", r.path),
                format!(
                    "if [ ! -e {original} ] && [ -f {backup} ]; then cp -p -- {backup} {original}; fi"
                ),
            ));
        }
        Ok(changes.build(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    fn host(text: &str) -> HostInfoValue {
        HostInfo.parse(&ok(text)).unwrap()
    }

    fn vars(mirror: &str) -> AptVars {
        AptVars {
            mirror: Some(mirror.into()),
            security_mirror: None,
        }
    }

    /// The sources of the lab's images and of the providers' cloud images, as they ship.
    const NOBLE_SOURCES: &str = "\
## Ubuntu sources have moved to the /etc/apt/sources.list.d/ubuntu.sources file
Types: deb
URIs: http://archive.example.org/ubuntu/
Suites: noble noble-updates noble-backports
Components: main restricted universe multiverse
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg

## Ubuntu security updates. Aside from URIs and Suites,
## this should mirror your choices in the previous section.
Types: deb
URIs: http://security.example.org/ubuntu/
Suites: noble-security
Components: main restricted universe multiverse
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg

Types: deb
URIs: https://ppa.example.org/team/ubuntu
Suites: noble
Components: main
Signed-By: /etc/apt/keyrings/team-ppa.gpg
";

    const BOOKWORM_SOURCES: &str = "\
Types: deb deb-src
URIs: mirror+file:///etc/apt/mirrors/debian.list
Suites: bookworm bookworm-updates bookworm-backports
Components: main non-free-firmware

Types: deb deb-src
URIs: mirror+file:///etc/apt/mirrors/debian-security.list
Suites: bookworm-security
Components: main non-free-firmware

Enabled: no
Types: deb
URIs: http://archive.example.org/debian
Suites: bookworm-proposed-updates
Components: main
";

    const JAMMY_LIST: &str = "\
# See http://help.example.org/community/UpgradeNotes for how to upgrade to
# newer versions of the distribution.
deb http://archive.example.org/ubuntu/ jammy main restricted
# deb-src http://archive.example.org/ubuntu/ jammy main restricted
deb [arch=amd64 signed-by=/usr/share/keyrings/ubuntu-archive-keyring.gpg] http://archive.example.org/ubuntu/ jammy-updates main restricted universe multiverse
deb http://security.example.org/ubuntu jammy-security main restricted # security
deb http://archive.example.org/canonical jammy partner
deb [signed-by=/etc/apt/keyrings/team.gpg] http://ppa.example.org/team/ubuntu jammy main
deb https://download.example.org/linux/ubuntu jammy stable
";

    #[test]
    fn ubuntu_deb822_security_follows_the_mirror_ppas_stay() {
        let a = Archive::for_host(
            &vars("https://mirrors.example.edu.cn/ubuntu/"),
            &host(HOST_UBUNTU2404_KVM),
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.urls(), ["https://mirrors.example.edu.cn/ubuntu"]);
        let r = rewrite_deb822(NOBLE_SOURCES, &a).unwrap();
        assert_eq!(r.entries, 2);
        insta::assert_snapshot!("mirror-ubuntu2404-sources", r.text);
        assert_eq!(
            rewrite_deb822(&r.text, &a).unwrap(),
            r,
            "a second rewrite changes nothing"
        );
    }

    #[test]
    fn debian_security_goes_to_the_debian_security_tree_beside_the_mirror() {
        let bookworm = host(HOST_DEBIAN12_KVM);
        let a = Archive::for_host(&vars("https://mirrors.example.edu.cn/debian"), &bookworm)
            .unwrap()
            .unwrap();
        assert_eq!(a.security, "https://mirrors.example.edu.cn/debian-security");
        let r = rewrite_deb822(BOOKWORM_SOURCES, &a).unwrap();
        assert_eq!(r.entries, 2, "the disabled entry is left alone");
        insta::assert_snapshot!("mirror-debian12-sources", r.text);

        let explicit = AptVars {
            mirror: Some("http://mirror.example.cn/pub/os".into()),
            security_mirror: Some("https://security.example.org/debian-security".into()),
        };
        let a = Archive::for_host(&explicit, &bookworm).unwrap().unwrap();
        assert_eq!(a.security, "https://security.example.org/debian-security");
        let err = Archive::for_host(&vars("http://mirror.example.cn/pub/os"), &bookworm)
            .unwrap_err()
            .to_string();
        assert!(err.contains("apt.security_mirror"), "{err}");
        // Security and release suites in one entry cannot come from two archives.
        let mixed = "Types: deb\nURIs: http://a.example.org/debian\nSuites: bookworm bookworm-security\nComponents: main\n";
        let a = Archive::for_host(&vars("https://m.example.cn/debian"), &bookworm)
            .unwrap()
            .unwrap();
        assert!(
            rewrite_deb822(mixed, &a)
                .unwrap_err()
                .contains("split the entry")
        );
    }

    #[test]
    fn one_line_sources_keep_options_comments_and_foreign_lines() {
        let a = Archive::for_host(
            &vars("https://mirrors.example.edu.cn/ubuntu"),
            &host(HOST_UBUNTU2204_KVM),
        )
        .unwrap()
        .unwrap();
        let r = rewrite_one_line(JAMMY_LIST, &a).unwrap();
        assert_eq!(
            r.entries, 3,
            "partner and the vendor repository are not the archive's"
        );
        insta::assert_snapshot!("mirror-ubuntu2204-sources-list", r.text);
        assert_eq!(rewrite_one_line(&r.text, &a).unwrap(), r);
    }

    fn state(text: &str) -> common::ProbeOutput {
        file_state(text, 0o644, "root", "root")
    }

    #[test]
    fn plan_backs_up_writes_and_refreshes_or_restores() {
        let r = AptMirror {
            vars: vars("https://mirrors.example.edu.cn/ubuntu"),
        };
        let f = facts(&[
            ("host", ok(HOST_UBUNTU2404_KVM)),
            (
                "path:/etc/apt/sources.list.d/ubuntu.sources",
                state(NOBLE_SOURCES),
            ),
            (
                "path:/etc/apt/sources.list.d/debian.sources",
                ok("absent\n"),
            ),
            (
                "path:/etc/apt/sources.list",
                state("# Ubuntu sources have moved to /etc/apt/sources.list.d/ubuntu.sources\n"),
            ),
        ]);
        let (summary, actions) = plan_of(&r, &f).expect_change();
        assert_eq!(
            summary,
            "point /etc/apt/sources.list.d/ubuntu.sources at https://mirrors.example.edu.cn/ubuntu"
        );
        assert!(matches!(&actions[0], Action::WriteFile(w) if w.path == UBUNTU_SOURCES));
        let s = scripts(&actions);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(
            s[1],
            "if [ ! -e /etc/apt/sources.list.d/ubuntu.sources.provision-orig ] && [ -f /etc/apt/sources.list.d/ubuntu.sources.provision-bak ]; then cp -p -- /etc/apt/sources.list.d/ubuntu.sources.provision-bak /etc/apt/sources.list.d/ubuntu.sources.provision-orig; fi",
            "the original is kept after the refresh succeeded"
        );
        let written = written(&actions, UBUNTU_SOURCES);
        assert!(written.contains("URIs: https://mirrors.example.edu.cn/ubuntu\n"));
        let update = &s[0];
        assert!(update.contains("apt-get update failed with the mirror (apt.mirror) (https://mirrors.example.edu.cn/ubuntu)"), "{update}");
        assert!(update.contains("mv -f -- /etc/apt/sources.list.d/ubuntu.sources.provision-bak /etc/apt/sources.list.d/ubuntu.sources"), "{update}");

        // Converged: a no-op naming the mirror; drifted back by hand: a change again.
        let f = facts(&[
            ("host", ok(HOST_UBUNTU2404_KVM)),
            (
                "path:/etc/apt/sources.list.d/ubuntu.sources",
                state(&written),
            ),
            (
                "path:/etc/apt/sources.list.d/debian.sources",
                ok("absent\n"),
            ),
            ("path:/etc/apt/sources.list", ok("absent\n")),
        ]);
        assert_eq!(
            plan_of(&r, &f).expect_noop(),
            "ubuntu from https://mirrors.example.edu.cn/ubuntu (/etc/apt/sources.list.d/ubuntu.sources)"
        );
    }

    #[test]
    fn a_host_without_archive_entries_is_an_error_not_a_noop() {
        let r = AptMirror {
            vars: vars("https://mirrors.example.edu.cn/debian"),
        };
        let f = facts(&[
            ("host", ok(HOST_DEBIAN12_KVM)),
            (
                "path:/etc/apt/sources.list.d/ubuntu.sources",
                ok("absent\n"),
            ),
            (
                "path:/etc/apt/sources.list.d/debian.sources",
                ok("absent\n"),
            ),
            (
                "path:/etc/apt/sources.list",
                state("deb https://vendor.example.org/apt stable main\n"),
            ),
        ]);
        let err = r.plan(&f).unwrap_err().to_string();
        assert!(
            err.contains("no entry of the debian bookworm archive"),
            "{err}"
        );
        let unset = AptMirror {
            vars: AptVars::default(),
        };
        assert_eq!(plan_of(&unset, &f).expect_noop(), "apt.mirror is not set");
    }
}
