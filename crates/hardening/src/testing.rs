//! Test helpers: facts from fixture outputs and plan assertions.

use std::collections::BTreeMap;

use base64::Engine as _;
use common::{Action, Facts, Plan, ProbeOutput, Resource};

pub(crate) const HOST_DEBIAN12_NSPAWN: &str =
    include_str!("../tests/fixtures/host-debian12-nspawn.txt");
pub(crate) const HOST_DEBIAN12_KVM: &str = include_str!("../tests/fixtures/host-debian12-kvm.txt");
pub(crate) const HOST_UBUNTU2204_KVM: &str =
    include_str!("../tests/fixtures/host-ubuntu2204-kvm.txt");
pub(crate) const HOST_UBUNTU2404_KVM: &str =
    include_str!("../tests/fixtures/host-ubuntu2404-kvm.txt");

pub(crate) use common::testing::{failed, ok};

/// What the `PathState` probe prints for a regular file.
pub(crate) fn file_state(content: &str, mode: u32, owner: &str, group: &str) -> ProbeOutput {
    ok(&format!(
        "regular file|{mode:o}|{owner}|{group}|{}\n{}\n",
        content.len(),
        base64::engine::general_purpose::STANDARD.encode(content)
    ))
}

pub(crate) fn facts(entries: &[(&str, ProbeOutput)]) -> Facts {
    Facts::from_outputs(
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// Every probe a resource declares must be answered by the fixture (and nothing else
/// is read): catches plans reading undeclared facts.
pub(crate) fn plan_of(resource: &dyn Resource, facts: &Facts) -> Plan {
    for p in resource.probes() {
        assert!(
            facts.raw(&p.key).is_some(),
            "{}: fixture lacks probe `{}`",
            resource.id(),
            p.key
        );
    }
    resource
        .plan(facts)
        .unwrap_or_else(|e| panic!("{}: plan failed: {e}", resource.id()))
}

pub(crate) trait PlanExt {
    fn expect_change(self) -> (String, Vec<Action>);
    fn expect_noop(self) -> String;
    fn expect_not_applicable(self) -> String;
}

impl PlanExt for Plan {
    fn expect_change(self) -> (String, Vec<Action>) {
        match self {
            Plan::Change { summary, actions } => (summary, actions),
            other => panic!("expected a change, got {other:?}"),
        }
    }
    fn expect_noop(self) -> String {
        match self {
            Plan::Noop { reason } => reason,
            other => panic!("expected a no-op, got {other:?}"),
        }
    }
    fn expect_not_applicable(self) -> String {
        match self {
            Plan::NotApplicable { reason } => reason,
            other => panic!("expected not applicable, got {other:?}"),
        }
    }
}

/// The content of the `i`th action, which must be a file write.
pub(crate) fn written(actions: &[Action], path: &str) -> String {
    actions
        .iter()
        .find_map(|a| match a {
            Action::WriteFile(w) if w.path == path => {
                Some(String::from_utf8_lossy(&w.content).into_owned())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no write of {path} in {actions:?}"))
}

pub(crate) fn scripts(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Run { script, .. } => Some(script.clone()),
            _ => None,
        })
        .collect()
}

/// What the `UfwState` probe prints for an active UFW (IPv6 on, deny incoming, allow
/// outgoing) with these user.rules and user6.rules.
pub(crate) fn ufw_probe_output(user_rules: &str, user6_rules: &str) -> String {
    let mut out = String::from("loaded=yes\nENABLED=yes\n");
    out.push_str("IPV6=yes\nDEFAULT_INPUT_POLICY=\"DROP\"\nDEFAULT_OUTPUT_POLICY=\"ACCEPT\"\n");
    for (family, text) in [("v4", user_rules), ("v6", user6_rules)] {
        for l in text.lines().filter(|l| l.starts_with("### tuple ###")) {
            out.push_str(&format!("{family} {l}\n"));
        }
    }
    out
}
