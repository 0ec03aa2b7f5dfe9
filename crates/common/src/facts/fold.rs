//! Folding: the path probes of a gather answered by one `stat` and one `cat | base64`.
//!
//! A no-op gather reads some sixty paths (the managed files, the app's directories). Alone,
//! each costs a subshell, a `stat` and a `base64`: some 150 processes, most of a no-op's time
//! on a small host. Folded, one `stat` reads every path and one `cat | base64` every content,
//! whatever their number. The host's answer is split back, on this side, into exactly what
//! each probe alone prints (the tests hold the two against a real shell), so the facts'
//! parsers and everything that reads facts never see a fold.
//!
//! A probe folds only when it is, byte for byte, the probe its [`StatKind`] builds for its
//! path; anything else goes to the host as it is.

use std::collections::BTreeMap;

use base64::Engine as _;

use super::builtin::MAX_CONTENT;
use super::{FactError, Probe, ProbeKey, ProbeOutput};
use crate::shell::quote;

/// The name of the one probe the folded ones travel as.
const FOLD_KEY: &str = "fold-stat";

/// How many of the paths exist: each of them must have its `stat` line (a path that exists
/// but cannot be read is an error, never "absent").
const EXISTS_MARK: &str = "@@exists";

/// Ends the `stat` and `sha256` lines of the folded answer; the contents follow.
const CONTENT_MARK: &str = "@@content";

/// Every field either kind reads, and the name last (so a `|` in it cannot shift a field).
const STAT_FIELDS: &str = "%F|%a|%u|%g|%U|%G|%s|%n";

/// The probes of a path that fold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatKind {
    /// `path:`: type, mode, owner names and size (`%F|%a|%U|%G|%s`), then the base64 content
    /// of a regular file up to [`MAX_CONTENT`], or `sha256:<hex>` of a larger one.
    PathState,
    /// `ownership:`: type, mode and owners by number and name (`%F|%a|%u|%g|%U|%G`).
    Ownership,
}

const KINDS: [StatKind; 2] = [StatKind::PathState, StatKind::Ownership];

impl StatKind {
    fn kind(self) -> &'static str {
        match self {
            StatKind::PathState => "path",
            StatKind::Ownership => "ownership",
        }
    }

    /// The probe of `path` as it runs alone.
    pub fn probe(self, path: &str) -> Probe {
        let p = quote(path);
        let script = match self {
            StatKind::PathState => format!(
                "if [ -L {p} ] || [ -e {p} ]; then s=$(stat -c '%F|%a|%U|%G|%s' {p}) && printf '%s\\n' \"$s\"; \
                 if [ -f {p} ] && [ ! -L {p} ]; then if [ \"${{s##*|}}\" -le {MAX_CONTENT} ]; then base64 -w0 {p}; echo; \
                 else printf 'sha256:'; sha256sum < {p} | cut -d' ' -f1; fi; fi; \
                 else echo absent; fi"
            ),
            StatKind::Ownership => format!(
                "if [ -e {p} ] || [ -L {p} ]; then stat -c '%F|%a|%u|%g|%U|%G' {p}; else echo absent; fi"
            ),
        };
        Probe {
            key: ProbeKey::about(self.kind(), path),
            script,
        }
    }

    /// What the probe alone prints for a path in the state `stat` (`None`: absent).
    fn render(self, stat: Option<&Stat>) -> String {
        let Some(s) = stat else {
            return "absent\n".into();
        };
        match self {
            StatKind::PathState => {
                let mut out = format!("{}|{}|{}|{}|{}\n", s.kind, s.mode, s.user, s.group, s.size);
                match &s.body {
                    Body::None => {}
                    Body::Content(bytes) => {
                        out.push_str(&base64::engine::general_purpose::STANDARD.encode(bytes));
                        out.push('\n');
                    }
                    Body::Sha256(hex) => out.push_str(&format!("sha256:{hex}\n")),
                }
                out
            }
            StatKind::Ownership => format!(
                "{}|{}|{}|{}|{}|{}\n",
                s.kind, s.mode, s.uid, s.gid, s.user, s.group
            ),
        }
    }

    /// The kind and path of a probe that folds: exactly the probe this kind builds for it.
    fn of(probe: &Probe) -> Option<(StatKind, &str)> {
        KINDS.into_iter().find_map(|kind| {
            let path = probe.key.strip_prefix(kind.kind())?.strip_prefix(':')?;
            // The folded script reads `stat` lines with `read`: a name with a newline or a
            // `|` stays a probe of its own.
            let plain = !path.contains(['\n', '|']);
            (plain && kind.probe(path) == *probe).then_some((kind, path))
        })
    }
}

/// One path's `stat` line, and what the folded answer holds of a regular file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stat {
    kind: String,
    mode: String,
    uid: String,
    gid: String,
    user: String,
    group: String,
    size: u64,
    body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    None,
    Content(Vec<u8>),
    Sha256(String),
}

fn is_regular(kind: &str) -> bool {
    matches!(kind, "regular file" | "regular empty file")
}

/// The `systemctl show` of a unit as it runs alone (`unit:`): its load, active and
/// unit-file states.
pub(crate) fn unit_probe(unit: &str) -> Probe {
    Probe {
        key: ProbeKey::about("unit", unit),
        script: format!("{UNIT_SHOW} -- {}", quote(unit)),
    }
}

const UNIT_SHOW: &str = "systemctl show -p LoadState -p ActiveState -p UnitFileState";

/// The name of the one probe the folded units travel as.
const UNITS_KEY: &str = "fold-units";

/// The unit of a probe that folds: exactly [`unit_probe`] of it.
fn unit_of(probe: &Probe) -> Option<&str> {
    let unit = probe.key.strip_prefix("unit:")?;
    // A pattern would answer for several units, or none.
    let plain = !unit.contains(['*', '?', '[', '\n']);
    (plain && unit_probe(unit) == *probe).then_some(unit)
}

/// The probes of one gather as they go to the host: those that fold travel as one per
/// kind (every path in one, every unit in one), the others as they are.
#[derive(Debug, Clone)]
pub(crate) struct Wire {
    pub(crate) probes: Vec<Probe>,
    paths: Vec<(StatKind, String)>,
    units: Vec<String>,
}

impl Wire {
    /// Every probe as it is.
    pub(crate) fn unfolded(probes: &[Probe]) -> Self {
        Self {
            probes: probes.to_vec(),
            paths: Vec::new(),
            units: Vec::new(),
        }
    }

    /// The path probes folded into one, and the unit probes into one.
    pub(crate) fn folded(probes: &[Probe]) -> Self {
        let mut wire = Vec::with_capacity(probes.len());
        let (mut paths, mut units) = (Vec::new(), Vec::new());
        for p in probes {
            if let Some((kind, path)) = StatKind::of(p) {
                paths.push((kind, path.to_string()));
            } else if let Some(unit) = unit_of(p) {
                units.push(unit.to_string());
            } else {
                wire.push(p.clone());
            }
        }
        if !paths.is_empty() {
            wire.push(Probe {
                key: ProbeKey::named(FOLD_KEY),
                script: fold_script(&paths),
            });
        }
        if !units.is_empty() {
            let operands: Vec<String> = units.iter().map(|u| quote(u)).collect();
            wire.push(Probe {
                key: ProbeKey::named(UNITS_KEY),
                script: format!("{UNIT_SHOW} -- {}", operands.join(" ")),
            });
        }
        Self {
            probes: wire,
            paths,
            units,
        }
    }

    /// Replace each folded probe's output in `outputs` by what each probe it holds prints
    /// alone.
    pub(crate) fn unfold(
        &self,
        outputs: &mut BTreeMap<ProbeKey, ProbeOutput>,
    ) -> Result<(), FactError> {
        let mut take = |key: &str| {
            outputs.remove(key).ok_or_else(|| FactError::Missing {
                key: key.to_string(),
            })
        };
        let mut answers = Vec::new();
        if !self.paths.is_empty() {
            let answer = take(FOLD_KEY)?;
            let keys = self.paths.iter().map(|(kind, path)| kind.probe(path).key);
            if answer.status != 0 {
                // Every folded probe failed as the one did: the first one read says so.
                answers.extend(keys.map(|k| (k, answer.clone())));
            } else {
                let stats = parse_answer(&answer.stdout, &answer.stderr)?;
                answers.extend(self.paths.iter().map(|(kind, path)| {
                    let stdout = kind.render(stats.get(path.as_str()));
                    (kind.probe(path).key, ok(stdout))
                }));
            }
        }
        if !self.units.is_empty() {
            let answer = take(UNITS_KEY)?;
            let keys = self.units.iter().map(|u| unit_probe(u).key);
            if answer.status != 0 {
                answers.extend(keys.map(|k| (k, answer.clone())));
            } else {
                // One block of `key=value` lines per unit, in the order asked, a blank line
                // between two.
                let blocks: Vec<&str> =
                    answer.stdout.trim_end_matches('\n').split("\n\n").collect();
                if blocks.len() != self.units.len() {
                    return Err(FactError::Parse {
                        key: UNITS_KEY.into(),
                        what: format!("one block per unit ({})", self.units.len()),
                        line: answer.stdout.clone(),
                    });
                }
                answers.extend(
                    keys.zip(blocks)
                        .map(|(k, block)| (k, ok(format!("{block}\n")))),
                );
            }
        }
        outputs.extend(answers);
        Ok(())
    }
}

fn ok(stdout: String) -> ProbeOutput {
    ProbeOutput {
        status: 0,
        stdout,
        stderr: String::new(),
    }
}

/// One `stat` of every path that exists, the SHA-256 of each large regular file, then one
/// base64 stream of every other regular file's content, in `stat` order. Every command is
/// a shell builtin but `stat`, `cat`, `base64` (and `sha256sum` per file over 1 MiB). The
/// `stat` lines are split in memory (`for` over them, fields by parameter expansion: the
/// name is the last field and has no `|`), not through `read`, which takes a system call
/// per byte.
fn fold_script(folded: &[(StatKind, String)]) -> String {
    let mut paths: Vec<&str> = folded.iter().map(|(_, p)| p.as_str()).collect();
    paths.sort_unstable();
    paths.dedup();
    let operands: Vec<String> = paths.iter().map(|p| quote(p)).collect();
    format!(
        "set -- {operands}\n\
         for __f do shift; if [ -e \"$__f\" ] || [ -L \"$__f\" ]; then set -- \"$@\" \"$__f\"; fi; done\n\
         echo \"{EXISTS_MARK} $#\"\n\
         __s=$([ $# -eq 0 ] || stat -c '{STAT_FIELDS}' -- \"$@\")\n\
         printf '%s\\n' \"$__s\"\n\
         set --\n\
         IFS='\n'; set -f\n\
         for __l in $__s; do\n\
         __k=${{__l%%|*}}; __n=${{__l##*|}}; __z=${{__l%|*}}; __z=${{__z##*|}}\n\
         case $__k in 'regular file'|'regular empty file')\n\
         if [ \"$__z\" -le {MAX_CONTENT} ]; then set -- \"$@\" \"$__n\"; \
         else printf 'sha256:%s\\n' \"$(sha256sum < \"$__n\" | cut -d' ' -f1)\"; fi;; esac\n\
         done\n\
         unset IFS; set +f\n\
         echo '{CONTENT_MARK}'\n\
         [ $# -eq 0 ] || cat -- \"$@\" | base64 -w0\n\
         echo\n",
        operands = operands.join(" ")
    )
}

/// The folded answer: each existing path's `stat`, with its content or digest. `stderr`
/// is what the host said alongside (named when a path could not be read).
fn parse_answer<'a>(stdout: &'a str, stderr: &str) -> Result<BTreeMap<&'a str, Stat>, FactError> {
    let error = |what: &str, line: &str| FactError::Parse {
        key: FOLD_KEY.into(),
        what: what.into(),
        line: line.into(),
    };
    // The last mark is the real one (base64 has no `@`; a name may end in anything).
    let (head, content) = stdout
        .rsplit_once(&format!("{CONTENT_MARK}\n"))
        .ok_or_else(|| error("the content mark", stdout.lines().last().unwrap_or("")))?;
    let mut stats: Vec<(&str, Stat)> = Vec::new();
    let mut digests = Vec::new();
    let mut existing = None;
    for line in head.lines().filter(|l| !l.is_empty()) {
        if let Some(n) = line.strip_prefix(EXISTS_MARK) {
            existing = Some(
                n.trim()
                    .parse::<usize>()
                    .map_err(|_| error("a count", line))?,
            );
            continue;
        }
        if let Some(hex) = line.strip_prefix("sha256:") {
            let valid = hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !valid {
                return Err(error("sha256 line", line));
            }
            digests.push(hex.to_string());
            continue;
        }
        let f: Vec<&str> = line.splitn(8, '|').collect();
        let [kind, mode, uid, gid, user, group, size, name] = f.as_slice() else {
            return Err(error("stat line", line));
        };
        let size = size.parse().map_err(|_| error("size", line))?;
        stats.push((
            name,
            Stat {
                kind: kind.to_string(),
                mode: mode.to_string(),
                uid: uid.to_string(),
                gid: gid.to_string(),
                user: user.to_string(),
                group: group.to_string(),
                size,
                body: Body::None,
            },
        ));
    }
    let existing = existing.ok_or_else(|| error("the count of existing paths", head))?;
    if stats.len() != existing {
        return Err(FactError::ProbeFailed {
            key: FOLD_KEY.into(),
            status: 1,
            stderr: format!(
                "`stat` answered for {} of the {existing} paths that exist (one could not be \
                 read, or changed while it was read: run again): {}",
                stats.len(),
                stderr.trim_end()
            ),
        });
    }
    let content = content.trim_end_matches('\n');
    let mut bytes = base64::engine::general_purpose::STANDARD
        .decode(content)
        .map_err(|_| error("base64 content", content.get(..80).unwrap_or(content)))?
        .into_iter();
    let mut digests = digests.into_iter();
    for (name, stat) in &mut stats {
        if !is_regular(&stat.kind) {
            continue;
        }
        stat.body = if stat.size > MAX_CONTENT {
            Body::Sha256(
                digests
                    .next()
                    .ok_or_else(|| error("a sha256 line for a large file", name))?,
            )
        } else {
            let part: Vec<u8> = bytes.by_ref().take(stat.size as usize).collect();
            if part.len() as u64 != stat.size {
                return Err(error(
                    "contents as long as `stat` said (a file changed while it was read: run again)",
                    name,
                ));
            }
            Body::Content(part)
        };
    }
    if bytes.next().is_some() || digests.next().is_some() {
        return Err(error(
            "contents as long as `stat` said (a file changed while it was read: run again)",
            "more bytes than the files' sizes",
        ));
    }
    Ok(stats.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{self, builtin::PathState};
    use crate::transport::local::LocalTransport;

    /// Every kind of path a gather meets, with names that need quoting.
    fn tree() -> (tempfile::TempDir, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let at = |name: &str| root.join(name).to_str().unwrap().to_string();
        std::fs::write(root.join("motd"), "hello\n").unwrap();
        std::fs::write(root.join("empty"), "").unwrap();
        std::fs::write(root.join("no newline"), "a=b").unwrap();
        std::fs::write(root.join("it's $HOME `x`"), "quoted\n").unwrap();
        std::fs::write(root.join("-dash"), "dash\n").unwrap();
        std::fs::write(root.join("binary"), [0u8, 255, 10, 0, 13]).unwrap();
        std::fs::write(root.join("big"), vec![b'x'; MAX_CONTENT as usize + 1]).unwrap();
        std::fs::write(root.join("at the limit"), vec![b'y'; MAX_CONTENT as usize]).unwrap();
        std::fs::create_dir(root.join("dir")).unwrap();
        std::os::unix::fs::symlink(root.join("motd"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(root.join("gone"), root.join("dangling")).unwrap();
        let names = [
            "motd",
            "empty",
            "no newline",
            "it's $HOME `x`",
            "-dash",
            "binary",
            "big",
            "at the limit",
            "dir",
            "link",
            "dangling",
            "missing",
            "pipe|name",
        ];
        let paths = names.iter().map(|n| at(n)).collect();
        (dir, paths)
    }

    fn probes(paths: &[String]) -> Vec<Probe> {
        facts::normalize(
            paths
                .iter()
                .flat_map(|p| KINDS.map(|k| k.probe(p)))
                .collect(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_folded_gather_answers_exactly_what_each_probe_alone_prints() {
        let (_dir, paths) = tree();
        let probes = probes(&paths);
        let host = LocalTransport::new("local");
        let facts = facts::gather(&host, &probes).await.unwrap();
        for p in &probes {
            let alone = crate::testing::run_alone(&host, p).await.unwrap();
            assert_eq!(facts.raw(&p.key), Some(&alone), "{}", p.key);
        }
        // And the parsers read it: a large file by digest, a small one by content.
        let big = facts.read(&PathState::new(&paths[6])).unwrap();
        assert!(big.content.is_none() && big.sha256.is_some());
        let binary = facts.read(&PathState::new(&paths[5])).unwrap();
        assert_eq!(binary.content.as_deref(), Some(&[0u8, 255, 10, 0, 13][..]));
    }

    #[test]
    fn every_path_probe_travels_as_one_and_others_as_they_are() {
        let (_dir, paths) = tree();
        let mut all = probes(&paths);
        let other = Probe {
            key: ProbeKey::named("host"),
            script: "uname -a".into(),
        };
        let lookalike = Probe {
            key: ProbeKey::about("path", "/etc/motd"),
            script: "cat /etc/motd".into(),
        };
        all.push(other.clone());
        all.push(lookalike.clone());
        let wire = Wire::folded(&all);
        let pipe = paths.iter().filter(|p| p.contains('|')).count() * KINDS.len();
        assert_eq!(wire.probes.len(), 1 + pipe + 2, "{:#?}", wire.probes);
        assert!(wire.probes.contains(&other) && wire.probes.contains(&lookalike));
        assert_eq!(wire.paths.len(), all.len() - pipe - 2);
    }

    #[test]
    fn contents_shorter_than_stat_said_are_an_error_not_a_truncated_file() {
        let answer = format!(
            "{EXISTS_MARK} 1\nregular file|644|0|0|root|root|6|/etc/motd\n{CONTENT_MARK}\n{}\n",
            base64::engine::general_purpose::STANDARD.encode("hel")
        );
        let err = parse_answer(&answer, "").unwrap_err().to_string();
        assert!(err.contains("changed while it was read"), "{err}");
        let longer = format!(
            "{EXISTS_MARK} 1\nregular file|644|0|0|root|root|2|/etc/motd\n{CONTENT_MARK}\n{}\n",
            base64::engine::general_purpose::STANDARD.encode("hello")
        );
        assert!(parse_answer(&longer, "").is_err());
    }

    /// A path that exists but that `stat` could not read (EIO, EACCES) must fail the
    /// gather: read as absent, a `.env` would be generated anew over the live one.
    #[test]
    fn a_path_that_exists_but_cannot_be_read_is_an_error_not_absent() {
        let answer =
            format!("{EXISTS_MARK} 2\ndirectory|755|0|0|root|root|4096|/etc\n{CONTENT_MARK}\n\n");
        let err = parse_answer(
            &answer,
            "stat: cannot statx '/opt/app/.env': Input/output error",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("1 of the 2 paths") && err.contains("Input/output error"),
            "{err}"
        );
    }

    #[test]
    fn a_name_ending_in_the_content_mark_is_still_split_at_the_real_one() {
        let answer = format!(
            "{EXISTS_MARK} 1\nregular file|644|0|0|root|root|2|/srv/x{CONTENT_MARK}\n{CONTENT_MARK}\n{}\n",
            base64::engine::general_purpose::STANDARD.encode("hi")
        );
        let stats = parse_answer(&answer, "").unwrap();
        let name = format!("/srv/x{CONTENT_MARK}");
        assert_eq!(stats[name.as_str()].body, Body::Content(b"hi".to_vec()));
    }

    #[test]
    fn a_failed_fold_fails_every_folded_probe() {
        let probes = vec![StatKind::PathState.probe("/etc/motd")];
        let wire = Wire::folded(&probes);
        let failed = ProbeOutput {
            status: 2,
            stdout: String::new(),
            stderr: "stat: killed\n".into(),
        };
        let mut outputs = BTreeMap::from([(ProbeKey::named(FOLD_KEY), failed.clone())]);
        wire.unfold(&mut outputs).unwrap();
        assert_eq!(outputs.get("path:/etc/motd"), Some(&failed));
        assert!(!outputs.contains_key(FOLD_KEY));
    }

    #[test]
    fn units_fold_into_one_show_and_each_reads_its_own_block() {
        let probes = vec![unit_probe("ssh.service"), unit_probe("nothing.service")];
        let wire = Wire::folded(&probes);
        assert_eq!(wire.probes.len(), 1);
        assert_eq!(
            wire.probes[0].script,
            format!("{UNIT_SHOW} -- ssh.service nothing.service")
        );
        let answer = "LoadState=loaded\nActiveState=active\nUnitFileState=enabled\n\n\
                      LoadState=not-found\nActiveState=inactive\nUnitFileState=\n";
        let mut outputs = BTreeMap::from([(ProbeKey::named(UNITS_KEY), ok(answer.into()))]);
        wire.unfold(&mut outputs).unwrap();
        assert_eq!(
            outputs["unit:ssh.service"].stdout,
            "LoadState=loaded\nActiveState=active\nUnitFileState=enabled\n"
        );
        assert_eq!(
            outputs["unit:nothing.service"].stdout,
            "LoadState=not-found\nActiveState=inactive\nUnitFileState=\n"
        );
        // One block short: an error, never one unit's state read as another's.
        let mut short =
            BTreeMap::from([(ProbeKey::named(UNITS_KEY), ok("LoadState=loaded\n".into()))]);
        assert!(wire.unfold(&mut short).is_err());
        // A pattern stays a probe of its own.
        assert_eq!(Wire::folded(&[unit_probe("ssh*")]).units.len(), 0);
    }
}
