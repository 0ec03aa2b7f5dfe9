//! Docker-published ports behind the inventory's firewall (issue 15).
//!
//! Docker publishes a port with a DNAT rule in the nat table and accepts the forwarded
//! packets in its own FORWARD rules, so a container published on `0.0.0.0:5432` is
//! reachable whatever UFW says (moby/moby#4737): UFW filters INPUT, these packets never
//! go there. Docker's one hook for this is the `DOCKER-USER` chain, which it jumps to
//! first from FORWARD and never edits. This resource fills it, IPv4 and IPv6, with:
//!
//! 1. replies and related traffic of admitted connections: returned to Docker's rules;
//! 2. everything coming from a Docker network (`docker0`, `br-*`): outbound traffic and
//!    container to container, returned;
//! 3. the ports the inventory opens — the very list UFW gets ([`Firewall::rules`]: the
//!    SSH port(s), 80, 443, `hardening.allow_ports`), TCP — matched on the port as
//!    published (`--ctorigdstport`: the destination before Docker's DNAT, so `-p
//!    8081:8080` is admitted by 8081, the port a client connects to), returned;
//! 4. anything else headed into a Docker network from outside — new connections to
//!    every other published port — dropped;
//! 5. the rest (forwarding that has nothing to do with Docker) returned untouched.
//!
//! Unlike ufw-docker (chaifeng/ufw-docker), which trusts every private source network,
//! sources are not trusted by address: a VPS's "private" network is other people's
//! hosts too. Containers are recognised by the interface their traffic comes in on.
//!
//! **Kept across restarts: a marked block in `/etc/ufw/after.rules` and
//! `after6.rules`.** UFW feeds those files to `iptables-restore --noflush` whenever it
//! starts (at boot, before the network and long before docker.service) or reloads, and
//! declaring `:DOCKER-USER` there creates the chain or flushes and refills it: so the
//! rules are in place before Docker forwards its first packet, a `ufw reload` puts them
//! back exactly, and a Docker restart keeps them (Docker creates `DOCKER-USER` only when
//! it is missing and leaves its rules alone). A systemd unit ordered after
//! docker.service was the alternative and is weaker: at boot Docker starts containers
//! with restart policies before such a unit runs (published ports open for that
//! window), it must also be re-run after every Docker restart, and `ufw reload` or
//! `ufw disable` are invisible to it.
//!
//! The chain is the inventory's (like UFW's rules, see `firewall`): a rule missing,
//! changed, out of order or added by hand in the kernel, or a block altered in either
//! file, is drift that `check` names and `up` repairs. The change is commit-confirmed
//! with the firewall: the files and both chains are saved before, and the rollback puts
//! them back.

use common::facts::builtin::PathState;
use common::resource::ResourceId;
use common::shell::quote;
use common::{Action, Fact, Facts, Plan, PlanError, Probe, Resource};

use crate::facts::{ChainState, DockerUserChains, SshdEffective, UfwState};
use crate::firewall::Firewall;
use crate::support::MANAGED;

pub(crate) const AFTER_RULES: &str = "/etc/ufw/after.rules";
pub(crate) const AFTER6_RULES: &str = "/etc/ufw/after6.rules";
/// The files and chains before this run's change, for the rollback.
pub const SAVED_STATE: &str = "/var/lib/provision/docker-user-previous";

pub(crate) const BLOCK_BEGIN: &str = "# BEGIN provision docker-user";
pub(crate) const BLOCK_END: &str = "# END provision docker-user";

const CHAIN: &str = "DOCKER-USER";

const SBIN_PATH: &str = "PATH=\"$PATH:/usr/sbin:/sbin\"";

/// Docker's bridges: the default one and the user-defined networks' (`br-<id>`), as
/// iptables interface names (`+` is its wildcard).
const DOCKER_BRIDGES: [&str; 2] = ["docker0", "br-+"];

/// One rule of the chain, from typed values only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChainRule {
    /// Replies and related packets of connections already admitted.
    Established,
    /// Traffic coming out of a Docker network.
    FromBridge(&'static str),
    /// A TCP port the inventory opens, as published (before Docker's DNAT).
    OpenPort(u16),
    /// Anything else headed into a Docker network.
    DropIntoBridge(&'static str),
    /// On to Docker's own rules.
    Return,
}

impl std::fmt::Display for ChainRule {
    /// The rule as `iptables -S` prints it back (the probe compares these texts).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "-A {CHAIN} ")?;
        match self {
            ChainRule::Established => {
                write!(f, "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN")
            }
            ChainRule::FromBridge(bridge) => write!(f, "-i {bridge} -j RETURN"),
            ChainRule::OpenPort(port) => {
                write!(f, "-p tcp -m conntrack --ctorigdstport {port} -j RETURN")
            }
            ChainRule::DropIntoBridge(bridge) => write!(f, "-o {bridge} -j DROP"),
            ChainRule::Return => write!(f, "-j RETURN"),
        }
    }
}

/// The chain for these open ports, in order.
pub(crate) fn chain_rules(open_ports: &[u16]) -> Vec<ChainRule> {
    let mut rules = vec![ChainRule::Established];
    rules.extend(DOCKER_BRIDGES.map(ChainRule::FromBridge));
    rules.extend(open_ports.iter().map(|&p| ChainRule::OpenPort(p)));
    rules.extend(DOCKER_BRIDGES.map(ChainRule::DropIntoBridge));
    rules.push(ChainRule::Return);
    rules
}

/// `iptables-restore --noflush` input that (re)fills the chain: declaring it flushes it
/// when it exists.
pub(crate) fn restore_section(open_ports: &[u16]) -> String {
    let mut s = format!("*filter\n:{CHAIN} - [0:0]\n");
    for r in chain_rules(open_ports) {
        s.push_str(&format!("{r}\n"));
    }
    s.push_str("COMMIT\n");
    s
}

/// The marked block of after.rules and after6.rules.
pub fn block(open_ports: &[u16]) -> String {
    format!(
        "{BLOCK_BEGIN}\n\
         # {MANAGED}\n\
         # Docker-published ports obey the firewall: new connections from outside reach\n\
         # only the ports the inventory opens. UFW refills DOCKER-USER from here whenever\n\
         # it starts or reloads.\n\
         {}{BLOCK_END}\n",
        restore_section(open_ports)
    )
}

/// The block of a file's text, markers included (`None` without a complete one).
fn block_of(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line == BLOCK_BEGIN {
            if inside {
                return None;
            }
            inside = true;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
        if line == BLOCK_END && inside {
            return Some(out);
        }
    }
    None
}

/// How many complete blocks a file has (an old copy left beside a new one is drift).
fn block_count(text: &str) -> usize {
    text.lines().filter(|l| *l == BLOCK_BEGIN).count()
}

/// Saves the two files and both chains before the change.
const SAVE_STATE: &str = r#"PATH="$PATH:/usr/sbin:/sbin"; d=/var/lib/provision/docker-user-previous
rm -rf "$d"; mkdir -p "$d"; chmod 700 "$d"
for f in after.rules after6.rules; do
  if [ -f "/etc/ufw/$f" ]; then cp -p "/etc/ufw/$f" "$d/$f"; fi
done
for t in iptables:v4 ip6tables:v6; do
  c=${t%:*}; f=${t#*:}
  if command -v "$c" >/dev/null 2>&1 && "$c" -w -S DOCKER-USER > "$d/$f" 2>/dev/null; then :; else rm -f "$d/$f"; fi
done"#;

/// Puts the saved files back and the chains as they were (removed when they did not
/// exist). Runs after the firewall's own rollback, whose `ufw reload` would load the
/// new block again.
pub(crate) const ROLLBACK: &str = r#"PATH="$PATH:/usr/sbin:/sbin"; d=/var/lib/provision/docker-user-previous
for f in after.rules after6.rules; do
  if [ -f "$d/$f" ]; then cp -p "$d/$f" "/etc/ufw/$f"; fi
done
for t in iptables:v4 ip6tables:v6; do
  c=${t%:*}; f=${t#*:}
  command -v "$c" >/dev/null 2>&1 || continue
  if [ -f "$d/$f" ]; then
    { echo '*filter'; echo ':DOCKER-USER - [0:0]'; grep '^-A DOCKER-USER ' "$d/$f"; echo COMMIT; } | "$c-restore" -w --noflush
  else
    "$c" -w -F DOCKER-USER 2>/dev/null; "$c" -w -X DOCKER-USER 2>/dev/null
  fi
done
true"#;

/// Replaces the block of `path` (every old copy) with `block`, keeping the rest of the
/// file, its mode and owner. Edited on the host when the change is applied: on a fresh
/// host UFW (and its after.rules) arrives in the same run, after the plan was made.
fn edit_script(path: &str, block: &str) -> String {
    format!(
        "f={}\n\
         if [ ! -f \"$f\" ]; then echo \"$f is missing (is ufw installed?)\" >&2; exit 1; fi\n\
         n=\"$f.provision-new\"\n\
         awk -v b='{BLOCK_BEGIN}' -v e='{BLOCK_END}' '$0 == b {{ skip = 1 }} !skip {{ print }} $0 == e {{ skip = 0 }}' \"$f\" > \"$n\"\n\
         cat >> \"$n\" <<'PROVISION_DOCKER_USER'\n{block}PROVISION_DOCKER_USER\n\
         chmod --reference=\"$f\" \"$n\"; chown --reference=\"$f\" \"$n\"; mv -f \"$n\" \"$f\"",
        quote(path)
    )
}

/// Loads the section into one family's chain now.
fn load_script(command: &str, section: &str) -> String {
    format!(
        "{SBIN_PATH}\n{command}-restore -w --noflush <<'PROVISION_DOCKER_USER'\n{section}PROVISION_DOCKER_USER"
    )
}

/// The `DOCKER-USER` chains of the inventory's firewall (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DockerUserChain {
    /// The UFW policy whose ports the chain opens.
    pub firewall: Firewall,
}

impl DockerUserChain {
    /// The inventory's open ports, as UFW gets them.
    fn open_ports(&self, sshd_ports: &[u16]) -> Vec<u16> {
        self.firewall
            .rules(sshd_ports)
            .iter()
            .map(|r| r.port)
            .collect()
    }
}

/// What a family's chain lacks against the wanted rules, described.
fn chain_drift(family: &str, tool: &str, state: &ChainState, wanted: &[String]) -> Vec<String> {
    match state {
        ChainState::NoTool => vec![format!("{tool} not installed yet")],
        ChainState::Absent => vec![format!("{CHAIN} ({family}) not loaded")],
        ChainState::Rules(rules) if rules == wanted => Vec::new(),
        ChainState::Rules(rules) => {
            let mut out = Vec::new();
            let missing: Vec<&String> = wanted.iter().filter(|w| !rules.contains(w)).collect();
            let extra: Vec<&String> = rules.iter().filter(|r| !wanted.contains(r)).collect();
            let list = |rs: &[&String]| {
                rs.iter()
                    .map(|r| format!("`{r}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if !missing.is_empty() {
                out.push(format!("{CHAIN} ({family}) lacks {}", list(&missing)));
            }
            if !extra.is_empty() {
                out.push(format!(
                    "{CHAIN} ({family}) has unrequested {}",
                    list(&extra)
                ));
            }
            if out.is_empty() {
                out.push(format!("{CHAIN} ({family}) rules out of order or repeated"));
            }
            out
        }
    }
}

impl Resource for DockerUserChain {
    fn id(&self) -> ResourceId {
        ResourceId::of("firewall", "docker-user")
    }

    fn probes(&self) -> Vec<Probe> {
        vec![
            UfwState.probe(),
            SshdEffective.probe(),
            PathState::new(AFTER_RULES).probe(),
            PathState::new(AFTER6_RULES).probe(),
            DockerUserChains.probe(),
        ]
    }

    fn plan(&self, facts: &Facts) -> Result<Plan, PlanError> {
        let ufw = facts.read(&UfwState)?;
        let sshd = facts.read(&SshdEffective)?;
        let chains = facts.read(&DockerUserChains)?;
        let ports = self.open_ports(&sshd.ports());
        let block = block(&ports);
        let wanted: Vec<String> = chain_rules(&ports).iter().map(|r| r.to_string()).collect();
        // UFW loads after6.rules only when it manages IPv6 (`IPV6=yes`, the packaged
        // default: assumed while UFW is not installed yet).
        let ipv6 = !ufw.installed || ufw.ipv6;

        let mut causes = Vec::new();
        for path in [AFTER_RULES, AFTER6_RULES] {
            let current = facts.read(&PathState::new(path))?;
            let text = common::resources::editable_text(path, &current)?;
            match block_of(&text) {
                None if current.content.is_none() => causes.push(format!("{path} not there yet")),
                None => causes.push(format!("no {CHAIN} block in {path}")),
                Some(b) if b != block || block_count(&text) != 1 => {
                    causes.push(format!("{CHAIN} block in {path} differs"))
                }
                Some(_) => {}
            }
        }
        causes.extend(chain_drift("IPv4", "iptables", &chains.v4, &wanted));
        if ipv6 {
            causes.extend(chain_drift("IPv6", "ip6tables", &chains.v6, &wanted));
        }
        let families = if ipv6 { "IPv4, IPv6" } else { "IPv4" };
        let open = ports
            .iter()
            .map(|p| format!("{p}/tcp"))
            .collect::<Vec<_>>()
            .join(", ");
        if causes.is_empty() {
            return Ok(Plan::noop(format!(
                "{CHAIN} ({families}): published Docker ports take new connections from outside on {open} only; kept in {AFTER_RULES}, {AFTER6_RULES}"
            )));
        }

        let section = restore_section(&ports);
        let mut actions = vec![Action::run(
            "save DOCKER-USER and UFW's after rules for the rollback",
            SAVE_STATE,
        )];
        for path in [AFTER_RULES, AFTER6_RULES] {
            actions.push(Action::run(
                format!("write the {CHAIN} block into {path}"),
                edit_script(path, &block),
            ));
        }
        actions.push(Action::run(
            format!("load {CHAIN} (IPv4)"),
            load_script("iptables", &section),
        ));
        if ipv6 {
            actions.push(Action::run(
                format!("load {CHAIN} (IPv6)"),
                load_script("ip6tables", &section),
            ));
        }
        Ok(Plan::change(
            format!(
                "{} → open published ports {open} only, in {AFTER_RULES}, {AFTER6_RULES} and {CHAIN} ({families})",
                causes.join(", ")
            ),
            actions,
        ))
    }

    fn guards_access(&self) -> bool {
        true
    }

    fn rollback_script(&self) -> Option<String> {
        Some(ROLLBACK.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    const SSHD_T: &str = "port 22\npermitrootlogin without-password\n";

    /// What ufw 0.36 ships as after.rules (abridged: its filter section).
    const UFW_AFTER_RULES: &str = "#\n# rules.input-after\n#\n*filter\n:ufw-after-input - [0:0]\n:ufw-after-output - [0:0]\n:ufw-after-forward - [0:0]\n-A ufw-after-input -p udp --dport 137 -j ufw-skip-to-policy-input\nCOMMIT\n";

    fn chain() -> DockerUserChain {
        DockerUserChain {
            firewall: Firewall {
                ssh_port: None,
                sshd_managed: false,
                allow_ports: vec![8081],
                break_for_test: false,
                log_martians: true,
                ssh_rate_limit: true,
                exclusive: true,
            },
        }
    }

    const PORTS: [u16; 4] = [22, 80, 443, 8081];

    fn ufw_active(ipv6: bool) -> String {
        format!(
            "loaded=yes\nENABLED=yes\nIPV6={}\nDEFAULT_INPUT_POLICY=\"DROP\"\nDEFAULT_OUTPUT_POLICY=\"ACCEPT\"\n",
            if ipv6 { "yes" } else { "no" }
        )
    }

    fn chains_output(v4: &[String], v6: &[String]) -> String {
        let mut s = String::new();
        for (family, rules) in [("v4", v4), ("v6", v6)] {
            s.push_str(&format!("{family} rule -N DOCKER-USER\n"));
            for r in rules {
                s.push_str(&format!("{family} rule {r}\n"));
            }
        }
        s
    }

    fn wanted() -> Vec<String> {
        chain_rules(&PORTS).iter().map(|r| r.to_string()).collect()
    }

    fn with_block(text: &str) -> String {
        format!("{text}{}", block(&PORTS))
    }

    fn host(ufw: &str, after: Option<&str>, after6: Option<&str>, chains: &str) -> Facts {
        let file = |c: Option<&str>| match c {
            Some(c) => file_state(c, 0o640, "root", "root"),
            None => ok("absent\n"),
        };
        facts(&[
            ("ufw", ok(ufw)),
            ("sshd-effective", ok(SSHD_T)),
            ("path:/etc/ufw/after.rules", file(after)),
            ("path:/etc/ufw/after6.rules", file(after6)),
            ("docker-user-chains", ok(chains)),
        ])
    }

    fn converged() -> Facts {
        let after = with_block(UFW_AFTER_RULES);
        host(
            &ufw_active(true),
            Some(&after),
            Some(&after),
            &chains_output(&wanted(), &wanted()),
        )
    }

    fn descriptions(actions: &[Action]) -> Vec<String> {
        actions.iter().map(Action::describe).collect()
    }

    #[test]
    fn the_block_admits_replies_containers_and_the_inventory_ports_only() {
        insta::assert_snapshot!("docker-user-block", block(&PORTS));
        let rules = wanted();
        let at = |r: &str| rules.iter().position(|x| x == r).unwrap();
        assert_eq!(
            rules[0],
            "-A DOCKER-USER -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
        );
        assert!(
            at("-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 8081 -j RETURN")
                < at("-A DOCKER-USER -o docker0 -j DROP"),
            "open ports before the drops"
        );
        assert_eq!(rules.last().unwrap(), "-A DOCKER-USER -j RETURN");
        assert!(
            !rules.iter().any(|r| r.contains("-s ")),
            "no source trusted by address"
        );
    }

    #[test]
    fn the_ports_are_the_ones_ufw_gets() {
        let r = chain();
        let ufw_ports: Vec<u16> = r.firewall.rules(&[22]).iter().map(|w| w.port).collect();
        assert_eq!(r.open_ports(&[22]), ufw_ports);
        assert_eq!(r.open_ports(&[22]), PORTS);
        // sshd moving to 2200 in this run: the new port only, as for UFW.
        let moving = DockerUserChain {
            firewall: Firewall {
                ssh_port: Some(2200),
                sshd_managed: true,
                ..r.firewall.clone()
            },
        };
        assert_eq!(moving.open_ports(&[22]), [2200, 80, 443, 8081]);
    }

    #[test]
    fn fresh_host_gets_both_files_and_both_chains() {
        let f = host(
            "ufw: not installed\n",
            None,
            None,
            "v4 no-tool\nv6 no-tool\n",
        );
        let (summary, actions) = plan_of(&chain(), &f).expect_change();
        assert_eq!(
            summary,
            "/etc/ufw/after.rules not there yet, /etc/ufw/after6.rules not there yet, \
             iptables not installed yet, ip6tables not installed yet \
             → open published ports 22/tcp, 80/tcp, 443/tcp, 8081/tcp only, in \
             /etc/ufw/after.rules, /etc/ufw/after6.rules and DOCKER-USER (IPv4, IPv6)"
        );
        assert_eq!(
            descriptions(&actions),
            [
                "save DOCKER-USER and UFW's after rules for the rollback",
                "write the DOCKER-USER block into /etc/ufw/after.rules",
                "write the DOCKER-USER block into /etc/ufw/after6.rules",
                "load DOCKER-USER (IPv4)",
                "load DOCKER-USER (IPv6)",
            ]
        );
        let s = scripts(&actions);
        assert!(s[0].contains("docker-user-previous"));
        assert!(s[3].contains("iptables-restore -w --noflush <<'PROVISION_DOCKER_USER'\n*filter\n:DOCKER-USER - [0:0]\n"));
        assert!(s[4].contains("ip6tables-restore -w --noflush"));
        assert!(s[4].ends_with("COMMIT\nPROVISION_DOCKER_USER"));
        let r = chain();
        assert!(r.guards_access());
        let rollback = r.rollback_script().unwrap();
        assert!(
            rollback.contains("cp -p \"$d/$f\" \"/etc/ufw/$f\""),
            "{rollback}"
        );
        assert!(rollback.contains("-restore\" -w --noflush"), "{rollback}");
    }

    #[test]
    fn converged_host_is_a_noop() {
        assert_eq!(
            plan_of(&chain(), &converged()).expect_noop(),
            "DOCKER-USER (IPv4, IPv6): published Docker ports take new connections from outside on \
             22/tcp, 80/tcp, 443/tcp, 8081/tcp only; kept in /etc/ufw/after.rules, /etc/ufw/after6.rules"
        );
    }

    #[test]
    fn a_missing_changed_or_added_rule_is_drift_per_family() {
        let after = with_block(UFW_AFTER_RULES);
        let open = "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 8081 -j RETURN".to_string();
        // Deleted by hand on IPv4.
        let v4: Vec<String> = wanted().into_iter().filter(|r| *r != open).collect();
        let f = host(
            &ufw_active(true),
            Some(&after),
            Some(&after),
            &chains_output(&v4, &wanted()),
        );
        let (summary, actions) = plan_of(&chain(), &f).expect_change();
        assert!(
            summary.starts_with(&format!("DOCKER-USER (IPv4) lacks `{open}` → ")),
            "{summary}"
        );
        assert_eq!(actions.len(), 5, "files rewritten, both chains reloaded");
        // An admin's rule on IPv6, and the inventory no longer opening 8081.
        let mut v6 = wanted();
        v6.insert(
            3,
            "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 5432 -j RETURN".into(),
        );
        let f = host(
            &ufw_active(true),
            Some(&after),
            Some(&after),
            &chains_output(&wanted(), &v6),
        );
        let (summary, _) = plan_of(&chain(), &f).expect_change();
        assert!(
            summary.starts_with(
                "DOCKER-USER (IPv6) has unrequested `-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 5432 -j RETURN` → "
            ),
            "{summary}"
        );
        // Same rules, another order.
        let mut swapped = wanted();
        swapped.swap(0, 1);
        let f = host(
            &ufw_active(true),
            Some(&after),
            Some(&after),
            &chains_output(&swapped, &wanted()),
        );
        let (summary, _) = plan_of(&chain(), &f).expect_change();
        assert!(
            summary.starts_with("DOCKER-USER (IPv4) rules out of order or repeated → "),
            "{summary}"
        );
        // Docker started before UFW ever loaded the block: its own chain.
        let f = host(
            &ufw_active(true),
            Some(&after),
            Some(&after),
            &chains_output(&["-A DOCKER-USER -j RETURN".into()], &[]),
        );
        let (summary, _) = plan_of(&chain(), &f).expect_change();
        assert!(
            summary.starts_with("DOCKER-USER (IPv4) lacks `-A DOCKER-USER -m conntrack"),
            "{summary}"
        );
    }

    #[test]
    fn an_altered_or_missing_block_in_either_file_is_drift() {
        let after = with_block(UFW_AFTER_RULES);
        let chains = chains_output(&wanted(), &wanted());
        let altered = after.replace("--ctorigdstport 8081", "--ctorigdstport 5432");
        let f = host(&ufw_active(true), Some(&after), Some(&altered), &chains);
        let (summary, _) = plan_of(&chain(), &f).expect_change();
        assert!(
            summary.starts_with("DOCKER-USER block in /etc/ufw/after6.rules differs → "),
            "{summary}"
        );
        let f = host(
            &ufw_active(true),
            Some(UFW_AFTER_RULES),
            Some(&after),
            &chains,
        );
        let (summary, _) = plan_of(&chain(), &f).expect_change();
        assert!(
            summary.starts_with("no DOCKER-USER block in /etc/ufw/after.rules → "),
            "{summary}"
        );
        let twice = format!("{after}{}", block(&PORTS));
        let f = host(&ufw_active(true), Some(&twice), Some(&after), &chains);
        let (summary, _) = plan_of(&chain(), &f).expect_change();
        assert!(
            summary.starts_with("DOCKER-USER block in /etc/ufw/after.rules differs"),
            "{summary}"
        );
    }

    #[test]
    fn without_ufw_ipv6_the_ipv6_chain_is_neither_checked_nor_loaded() {
        let after = with_block(UFW_AFTER_RULES);
        let f = host(
            &ufw_active(false),
            Some(&after),
            Some(&after),
            "v4 absent\nv6 absent\n",
        );
        let (summary, actions) = plan_of(&chain(), &f).expect_change();
        assert!(
            summary.starts_with("DOCKER-USER (IPv4) not loaded → "),
            "{summary}"
        );
        assert!(summary.ends_with("and DOCKER-USER (IPv4)"), "{summary}");
        assert_eq!(
            descriptions(&actions).last().unwrap(),
            "load DOCKER-USER (IPv4)"
        );
        let f = host(
            &ufw_active(false),
            Some(&after),
            Some(&after),
            &format!(
                "{}v6 absent\n",
                chains_output(&wanted(), &[])
                    .lines()
                    .filter(|l| l.starts_with("v4"))
                    .map(|l| format!("{l}\n"))
                    .collect::<String>()
            ),
        );
        assert!(
            plan_of(&chain(), &f)
                .expect_noop()
                .starts_with("DOCKER-USER (IPv4): ")
        );
    }

    /// The edit runs on the host; here it runs on a copy: the block replaces every old
    /// one, the rest of the file, its mode and owner are kept, and a second run changes
    /// nothing.
    #[test]
    fn the_edit_replaces_old_blocks_and_keeps_the_rest() {
        let dir =
            std::env::temp_dir().join(format!("provision-docker-user-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("after.rules");
        let old = block(&[22, 5432]);
        std::fs::write(
            &path,
            format!("{UFW_AFTER_RULES}{old}# admin's line\n{old}"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let script = edit_script(path.to_str().unwrap(), &block(&PORTS));
        let run = || {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::read_to_string(&path).unwrap()
        };
        let once = run();
        assert_eq!(
            once,
            format!("{UFW_AFTER_RULES}# admin's line\n{}", block(&PORTS))
        );
        assert_eq!(block_of(&once), Some(block(&PORTS)));
        assert_eq!(run(), once, "idempotent");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
