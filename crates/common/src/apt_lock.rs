//! Who holds the dpkg and apt locks on a host, and whether this run waits or takes over.
//!
//! On a fresh server the apt-daily timers fire at boot (and cloud-init runs apt): an `up`
//! that installs packages finds the locks held. The apply script of a segment with apt work
//! starts with [`PRELUDE`]: when a lock is held it changes nothing and prints the holders
//! (from `/proc/locks`, each holder's command, age and systemd unit from its cgroup), so
//! the engine can say who it waits for. [`decide`] is the pure rule: a background
//! `apt-daily.service` that only refreshes package lists or downloads (holds neither dpkg
//! lock, no dpkg process anywhere) is stopped, with the apt timers held for the run and
//! restored after it; anything else, and every job inside dpkg, is waited for.

use std::time::Duration;

use crate::shell::quote;

/// The locks apt and dpkg take, in the order they are reported.
pub(crate) const LOCKS: [&str; 4] = [
    "/var/lib/dpkg/lock-frontend",
    "/var/lib/dpkg/lock",
    "/var/lib/apt/lists/lock",
    "/var/cache/apt/archives/lock",
];

/// The unit that only refreshes lists and downloads (`apt.systemd.daily update`).
pub(crate) const LISTS_UNIT: &str = "apt-daily.service";

/// Timers that start apt in the background, held (stopped) for a run that took over.
pub(crate) const TIMERS: [&str; 2] = ["apt-daily.timer", "apt-daily-upgrade.timer"];

/// How long one round trip waits on the host for the locks before reporting again.
pub const POLL: Duration = Duration::from_secs(10);

/// An apt script of this run: it takes the locks (every apt-get of [`crate::apt`] waits for
/// them with this option).
pub(crate) fn uses_apt(script: &str) -> bool {
    script.contains(crate::apt::OPTIONS[1])
}

/// Shell function `__provision_lock_holders`: one `holder …` line per process holding one
/// of [`LOCKS`] (`pid= age= lock= unit_cgroup= comm= cmd=`), one `dpkg pid=` line per
/// running dpkg; nothing when every lock is free. Reads `/proc/locks` (POSIX, OFD and
/// flock locks, blocked waiters skipped), no tool beyond coreutils and awk.
pub(crate) fn holders_function() -> String {
    holders_function_for(&LOCKS)
}

/// [`holders_function`] over other lock files (tests).
fn holders_function_for(paths: &[&str]) -> String {
    let paths: Vec<String> = paths.iter().map(|p| quote(p)).collect();
    HOLDERS_FUNCTION.replace("@LOCKS@", &paths.join(" "))
}

const HOLDERS_FUNCTION: &str = r#"__provision_lock_holders() {
  __inos=
  for __l in @LOCKS@; do
    [ -e "$__l" ] && __inos="$__inos $(stat -c %i -- "$__l"):$__l"
  done
  [ -n "$__inos" ] || return 0
  __held=$(awk -v inos="$__inos" 'BEGIN { n = split(inos, w, " "); for (i = 1; i <= n; i++) { split(w[i], p, ":"); path[p[1]] = p[2] } }
    $2 != "->" { k = split($6, d, ":"); if (d[k] in path) print $5, path[d[k]] }' /proc/locks 2>/dev/null)
  [ -n "$__held" ] || return 0
  __up=$(cut -d. -f1 /proc/uptime); __hz=$(getconf CLK_TCK)
  printf '%s\n' "$__held" | while read -r __pid __lock; do
    if [ "$__pid" -le 0 ] 2>/dev/null; then
      # An OFD lock has no owner PID: the processes that have the file open.
      for __fd in /proc/[0-9]*/fd/*; do
        [ "$(readlink "$__fd" 2>/dev/null)" = "$__lock" ] && __p=${__fd#/proc/} && echo "${__p%%/*} $__lock"
      done
    else
      echo "$__pid $__lock"
    fi
  done | sort -u | while read -r __pid __lock; do
    __stat=$(cat "/proc/$__pid/stat" 2>/dev/null) || continue
    __stat=${__stat##*) }
    set -- $__stat
    __start=${20:-0}
    read -r __comm < "/proc/$__pid/comm" 2>/dev/null || __comm=?
    __cg=$(awk -F: '($2 == "" || $2 == "name=systemd") && $3 ~ /[.](service|scope)$/ { print $3; exit }' "/proc/$__pid/cgroup" 2>/dev/null)
    __cmd=$(tr '\000\n' '  ' < "/proc/$__pid/cmdline" 2>/dev/null | cut -c1-200)
    echo "holder pid=$__pid age=$((__up - __start / __hz)) lock=$__lock unit_cgroup=${__cg:-?} comm=$__comm cmd=$__cmd"
  done
  for __p in /proc/[0-9]*; do
    read -r __c < "$__p/comm" 2>/dev/null && [ "$__c" = dpkg ] && echo "dpkg pid=${__p#/proc/}"
  done
  return 0
}"#;

/// Marker line of a segment that did not run because a lock was held.
pub(crate) const LOCKED_MARKER: &str = "@@provision-apt-locked";

/// Shell put before the steps of a segment with apt work: when a lock is held, print
/// [`LOCKED_MARKER`] and the holders, and stop before changing anything.
pub(crate) fn prelude() -> String {
    format!(
        "{}\n__holders=$(__provision_lock_holders)\n\
         if [ -n \"$__holders\" ]; then echo {LOCKED_MARKER}; printf '%s\\n' \"$__holders\"; exit 0; fi\n",
        holders_function()
    )
}

/// Shell that waits up to `seconds` on the host for every lock to be free, then prints the
/// holders left (nothing when free). One round trip: progress is reported between them.
pub(crate) fn wait_script(seconds: u64) -> String {
    format!(
        "{}\n__end=$(( $(cut -d. -f1 /proc/uptime) + {seconds} ))\n\
         while __holders=$(__provision_lock_holders); [ -n \"$__holders\" ] && [ \"$(cut -d. -f1 /proc/uptime)\" -lt $__end ]; do sleep 0.5; done\n\
         printf '%s\\n' \"$__holders\"\n",
        holders_function()
    )
}

/// Which lock a holder has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// `/var/lib/dpkg/lock-frontend`: a frontend (apt-get install, unattended-upgrade) runs.
    Frontend,
    /// `/var/lib/dpkg/lock`: dpkg itself.
    Dpkg,
    /// `/var/lib/apt/lists/lock`: the package lists are being refreshed.
    Lists,
    /// `/var/cache/apt/archives/lock`: packages are being downloaded.
    Archives,
}

impl Lock {
    fn of_path(path: &str) -> Option<Lock> {
        match path {
            "/var/lib/dpkg/lock-frontend" => Some(Lock::Frontend),
            "/var/lib/dpkg/lock" => Some(Lock::Dpkg),
            "/var/lib/apt/lists/lock" => Some(Lock::Lists),
            "/var/cache/apt/archives/lock" => Some(Lock::Archives),
            _ => None,
        }
    }

    /// Whether holding it means dpkg may be changing the system.
    pub(crate) fn is_dpkg(self) -> bool {
        matches!(self, Lock::Frontend | Lock::Dpkg)
    }

    fn what(self) -> &'static str {
        match self {
            Lock::Frontend => "the dpkg frontend lock",
            Lock::Dpkg => "the dpkg lock",
            Lock::Lists => "the package lists lock",
            Lock::Archives => "the download lock",
        }
    }
}

/// A process holding one of the locks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub lock: Lock,
    /// Seconds since the process started.
    pub age_secs: u64,
    /// Its systemd unit (`apt-daily.service`, `session-3.scope`), from its cgroup.
    pub unit: Option<String>,
    /// Process name (`apt-get`, `unattended-upgr`, `dpkg`).
    pub command: String,
    /// Its command line (for messages).
    pub command_line: String,
}

/// What the locks look like on the host right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockState {
    pub holders: Vec<Holder>,
    /// PIDs of every dpkg process running.
    pub dpkg_pids: Vec<u32>,
}

impl LockState {
    pub(crate) fn is_free(&self) -> bool {
        self.holders.is_empty()
    }

    /// Parse the output of [`holders_function`] (lines it does not know are ignored: the
    /// state is for decisions and messages, and an unparsable holder line is kept as an
    /// unknown holder, which is waited for).
    pub fn parse(text: &str) -> LockState {
        let mut state = LockState::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("dpkg ") {
                if let Some(pid) = rest
                    .strip_prefix("pid=")
                    .and_then(|p| p.trim().parse().ok())
                {
                    state.dpkg_pids.push(pid);
                }
                continue;
            }
            let Some(rest) = line.strip_prefix("holder ") else {
                continue;
            };
            let (fields, command_line) = rest.split_once(" cmd=").unwrap_or((rest, ""));
            let mut h = Holder {
                pid: 0,
                lock: Lock::Frontend,
                age_secs: 0,
                unit: None,
                command: "?".into(),
                command_line: command_line.trim().to_string(),
            };
            for word in fields.split(' ') {
                match word.split_once('=') {
                    Some(("pid", v)) => h.pid = v.parse().unwrap_or(0),
                    Some(("age", v)) => h.age_secs = v.parse().unwrap_or(0),
                    // An unknown lock path is treated as the strictest lock.
                    Some(("lock", v)) => h.lock = Lock::of_path(v).unwrap_or(Lock::Frontend),
                    Some(("unit_cgroup", v)) => h.unit = unit_of_cgroup(v),
                    Some(("comm", v)) => h.command = v.to_string(),
                    _ => {}
                }
            }
            state.holders.push(h);
        }
        state
    }

    /// "apt-get (PID 812, apt-daily.service: package lists refresh) holds the package
    /// lists lock, for 1 min 5 s", one clause per holder.
    pub fn describe(&self) -> String {
        // One clause per process, naming every lock it holds.
        let mut pids: Vec<u32> = Vec::new();
        for h in &self.holders {
            if !pids.contains(&h.pid) {
                pids.push(h.pid);
            }
        }
        let mut parts: Vec<String> = pids
            .iter()
            .map(|pid| {
                let mine: Vec<&Holder> = self.holders.iter().filter(|h| h.pid == *pid).collect();
                let h = mine[0];
                let unit = match &h.unit {
                    Some(u) => match unit_role(u) {
                        Some(role) => format!(", {u}: {role}"),
                        None => format!(", {u}"),
                    },
                    None => String::new(),
                };
                let locks: Vec<&str> = mine.iter().map(|h| h.lock.what()).collect();
                format!(
                    "{} (PID {}{unit}) holds {}, running {}",
                    h.command,
                    h.pid,
                    locks.join(" and "),
                    human_duration(h.age_secs)
                )
            })
            .collect();
        let others: Vec<String> = self
            .dpkg_pids
            .iter()
            .filter(|p| !pids.contains(p))
            .map(u32::to_string)
            .collect();
        if !others.is_empty() {
            parts.push(format!("dpkg is running (PID {})", others.join(", ")));
        }
        parts.join("; ")
    }
}

/// The unit of a cgroup path: its last `.service` or `.scope` component.
pub(crate) fn unit_of_cgroup(path: &str) -> Option<String> {
    path.rsplit('/')
        .find(|c| c.ends_with(".service") || c.ends_with(".scope"))
        .map(str::to_string)
}

/// What a known background unit does, for messages.
fn unit_role(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "apt-daily.service" => "package lists refresh and download",
        "apt-daily-upgrade.service" => "unattended-upgrades",
        "unattended-upgrades.service" => "unattended-upgrades",
        u if u.starts_with("cloud-") => "cloud-init",
        u if u.starts_with("packagekit") => "PackageKit",
        _ => return None,
    })
}

/// `45 s`, `2 min 5 s`.
pub fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s} s"),
        s => format!("{} min {} s", s / 60, s % 60),
    }
}

/// What the run does about held locks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every lock is free.
    Proceed,
    /// Stop this unit (it only refreshes lists or downloads) with the timers held.
    TakeOver { unit: String },
    /// Wait for the holders; why not take over.
    Wait { reason: String },
}

/// The rule: take over only a lists/download-only `apt-daily.service` — every holder in
/// that unit, none holding a dpkg lock, no dpkg process anywhere. Everything else waits
/// (a dpkg run is never interrupted; an unknown holder may be an operator's apt).
pub fn decide(state: &LockState) -> Decision {
    if state.is_free() {
        return Decision::Proceed;
    }
    if !state.dpkg_pids.is_empty() {
        return Decision::Wait {
            reason: "dpkg is running (never interrupted)".into(),
        };
    }
    if let Some(h) = state.holders.iter().find(|h| h.lock.is_dpkg()) {
        return Decision::Wait {
            reason: format!("{} holds {} (never interrupted)", h.command, h.lock.what()),
        };
    }
    if let Some(h) = state
        .holders
        .iter()
        .find(|h| h.unit.as_deref() != Some(LISTS_UNIT))
    {
        return Decision::Wait {
            reason: format!(
                "{} (PID {}) is not a background {LISTS_UNIT} job",
                h.command, h.pid
            ),
        };
    }
    Decision::TakeOver {
        unit: LISTS_UNIT.into(),
    }
}

/// Name of the host-side safety timer that restores held apt timers if this run never
/// gets to (connection lost, tool killed).
pub(crate) fn restore_unit() -> String {
    format!("provision-apt-timers-{}", std::process::id())
}

/// How long the safety timer waits before restoring the apt timers itself.
pub(crate) const RESTORE_AFTER: Duration = Duration::from_secs(30 * 60);

/// Shell that takes over from a lists-only `unit`: checks again on the host that no dpkg
/// runs and no dpkg lock is held (else changes nothing and prints `busy`), holds the
/// active apt timers (armed to be restored by a transient timer after
/// [`RESTORE_AFTER`]), stops the unit and prints `held TIMER…`.
pub(crate) fn take_over_script(unit: &str) -> String {
    let timers = TIMERS.join(" ");
    let restore = restore_unit();
    format!(
        "{holders}\n__h=$(__provision_lock_holders)\n\
         if printf '%s\\n' \"$__h\" | grep -q -e '^dpkg ' -e 'lock=/var/lib/dpkg/'; then echo busy; printf '%s\\n' \"$__h\"; exit 0; fi\n\
         __held=\nfor __t in {timers}; do systemctl is-active --quiet \"$__t\" && __held=\"$__held $__t\"; done\n\
         if [ -n \"$__held\" ]; then\n\
           systemctl stop $__held\n\
           systemctl stop {restore}.timer >/dev/null 2>&1 || true\n\
           systemctl reset-failed {restore}.service >/dev/null 2>&1 || true\n\
           systemd-run --quiet --unit={restore} --on-active={after}s systemctl start $__held || true\n\
         fi\n\
         systemctl stop {unit}\n\
         echo \"held$__held\"\n",
        holders = holders_function(),
        unit = quote(unit),
        after = RESTORE_AFTER.as_secs(),
    )
}

/// Parse what [`take_over_script`] printed: `Ok(timers held)` or `Err(holders)` when
/// the host turned busy meanwhile.
pub(crate) fn parse_take_over(stdout: &str) -> Result<Vec<String>, LockState> {
    if let Some(rest) = stdout.strip_prefix("busy\n") {
        return Err(LockState::parse(rest));
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("held"))
        .unwrap_or_default();
    Ok(line
        .split_whitespace()
        .filter(|t| TIMERS.contains(t))
        .map(str::to_string)
        .collect())
}

/// Shell that starts the held timers again and disarms the safety timer.
pub(crate) fn restore_script(timers: &[String]) -> String {
    let names: Vec<String> = timers.iter().map(|t| quote(t)).collect();
    format!(
        "systemctl stop {}.timer >/dev/null 2>&1; systemctl start {}",
        restore_unit(),
        names.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(lock: Lock, unit: &str, command: &str) -> Holder {
        Holder {
            pid: 812,
            lock,
            age_secs: 65,
            unit: Some(unit.into()),
            command: command.into(),
            command_line: String::new(),
        }
    }

    #[test]
    fn parses_holders_units_and_dpkg_processes() {
        let text = "holder pid=812 age=65 lock=/var/lib/apt/lists/lock unit_cgroup=/system.slice/apt-daily.service comm=apt-get cmd=apt-get -qq update \n\
                    holder pid=901 age=3 lock=/var/lib/dpkg/lock-frontend unit_cgroup=/user.slice/user-0.slice/session-4.scope comm=apt-get cmd=apt-get install x\n\
                    dpkg pid=950\n";
        let s = LockState::parse(text);
        assert_eq!(s.holders.len(), 2);
        assert_eq!(s.holders[0].pid, 812);
        assert_eq!(s.holders[0].lock, Lock::Lists);
        assert_eq!(s.holders[0].unit.as_deref(), Some("apt-daily.service"));
        assert_eq!(s.holders[0].command_line, "apt-get -qq update");
        assert_eq!(s.holders[1].lock, Lock::Frontend);
        assert_eq!(s.holders[1].unit.as_deref(), Some("session-4.scope"));
        assert_eq!(s.dpkg_pids, [950]);
        assert_eq!(
            s.describe(),
            "apt-get (PID 812, apt-daily.service: package lists refresh and download) holds the package lists lock, running 1 min 5 s; \
             apt-get (PID 901, session-4.scope) holds the dpkg frontend lock, running 3 s; dpkg is running (PID 950)"
        );
        assert!(LockState::parse("").is_free());
        // dpkg run directly holds both of its locks: one clause.
        let dpkg = LockState::parse(
            "holder pid=477 age=1 lock=/var/lib/dpkg/lock unit_cgroup=/system.slice/apt-daily.service comm=dpkg cmd=/usr/bin/dpkg -i /tmp/b.deb \n\
             holder pid=477 age=1 lock=/var/lib/dpkg/lock-frontend unit_cgroup=/system.slice/apt-daily.service comm=dpkg cmd=/usr/bin/dpkg -i /tmp/b.deb \n\
             dpkg pid=477\n",
        );
        assert_eq!(
            dpkg.describe(),
            "dpkg (PID 477, apt-daily.service: package lists refresh and download) holds the dpkg lock and the dpkg frontend lock, running 1 s"
        );
        assert!(matches!(decide(&dpkg), Decision::Wait { .. }));
        assert_eq!(
            unit_of_cgroup("/system.slice/apt-daily-upgrade.service").as_deref(),
            Some("apt-daily-upgrade.service")
        );
        assert_eq!(unit_of_cgroup("/"), None);
    }

    #[test]
    fn a_lists_only_apt_daily_job_is_taken_over() {
        let s = LockState {
            holders: vec![
                holder(Lock::Lists, "apt-daily.service", "apt-get"),
                holder(Lock::Archives, "apt-daily.service", "apt-get"),
            ],
            dpkg_pids: vec![],
        };
        assert_eq!(
            decide(&s),
            Decision::TakeOver {
                unit: "apt-daily.service".into()
            }
        );
        assert_eq!(decide(&LockState::default()), Decision::Proceed);
    }

    #[test]
    fn a_job_inside_dpkg_is_always_waited_for() {
        for (lock, unit) in [
            (Lock::Frontend, "apt-daily.service"),
            (Lock::Dpkg, "apt-daily.service"),
            (Lock::Frontend, "apt-daily-upgrade.service"),
            (Lock::Dpkg, "cloud-final.service"),
        ] {
            let s = LockState {
                holders: vec![holder(lock, unit, "unattended-upgr")],
                dpkg_pids: vec![],
            };
            assert!(
                matches!(decide(&s), Decision::Wait { .. }),
                "{lock:?} in {unit}"
            );
        }
        // A lists holder of apt-daily while dpkg runs anywhere: wait too.
        let s = LockState {
            holders: vec![holder(Lock::Lists, "apt-daily.service", "apt-get")],
            dpkg_pids: vec![77],
        };
        assert!(matches!(decide(&s), Decision::Wait { reason } if reason.contains("dpkg")));
    }

    #[test]
    fn other_holders_of_the_lists_lock_are_waited_for() {
        for unit in [
            Some("apt-daily-upgrade.service"),
            Some("cloud-final.service"),
            Some("session-3.scope"),
            None,
        ] {
            let mut h = holder(Lock::Lists, "x", "apt-get");
            h.unit = unit.map(str::to_string);
            let s = LockState {
                holders: vec![holder(Lock::Lists, "apt-daily.service", "apt-get"), h],
                dpkg_pids: vec![],
            };
            assert!(matches!(decide(&s), Decision::Wait { .. }), "{unit:?}");
        }
    }

    #[test]
    fn the_take_over_reports_held_timers_or_a_busy_host() {
        assert_eq!(
            parse_take_over("held apt-daily.timer apt-daily-upgrade.timer\n").unwrap(),
            ["apt-daily.timer", "apt-daily-upgrade.timer"]
        );
        assert!(parse_take_over("held\n").unwrap().is_empty());
        let busy = parse_take_over("busy\ndpkg pid=5\n").unwrap_err();
        assert_eq!(busy.dpkg_pids, [5]);
        let script = take_over_script("apt-daily.service");
        assert!(script.contains("systemctl stop apt-daily.service"));
        assert!(!script.contains("kill"), "never signals a process itself");
    }

    #[test]
    fn uses_apt_recognises_scripts_built_from_the_apt_options() {
        assert!(uses_apt(&crate::apt::update().to_string()));
        assert!(!uses_apt("systemctl restart ssh"));
    }

    /// The probe run for real on this machine: a `flock` process holds one of two lock
    /// files (it says so on stdout once it has the lock); the probe names it, with its
    /// PID, command and the lock, and says nothing once the holder is gone.
    #[test]
    fn the_probe_names_a_real_lock_holder_and_nothing_when_free() {
        use std::io::{BufRead, Write};
        let dir = tempfile::tempdir().unwrap();
        let (held, free) = (dir.path().join("lists-lock"), dir.path().join("frontend"));
        std::fs::write(&held, "").unwrap();
        std::fs::write(&free, "").unwrap();
        let (held, free) = (held.display().to_string(), free.display().to_string());
        let function = holders_function_for(&[free.as_str(), held.as_str()]);
        let probe = |function: &str| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("{function}\n__provision_lock_holders"))
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        let mut holder = std::process::Command::new("flock")
            .arg(&held)
            .args(["-c", "echo locked; read _"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "locked\n");
        let text = probe(&function);
        let mut stdin = holder.stdin.take().unwrap();
        let state = LockState::parse(&text);
        let holders: Vec<(u32, &str)> = state
            .holders
            .iter()
            .map(|h| (h.pid, h.command.as_str()))
            .collect();
        assert_eq!(holders, [(holder.id(), "flock")], "{text}");
        assert!(text.contains(&format!("lock={held} ")), "{text}");
        assert!(text.contains(" unit_cgroup="), "{text}");
        stdin.write_all(b"\n").unwrap();
        drop(stdin);
        assert!(holder.wait().unwrap().success());
        assert_eq!(probe(&function), "", "free once the holder is gone");
    }
}
