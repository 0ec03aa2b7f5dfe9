//! Helpers shared by the lab's test binaries (each declares `mod support;`).
#![allow(dead_code)] // each binary uses its own part

use std::path::{Path, PathBuf};

use lab::Lab;
use lab::testing::skip_unless_lab;

/// Whether process `pid` lives (a zombie or a dead one does not).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or("");
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

/// Whether this machine has a network interface `name`.
pub fn iface_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// A lab of the test's own (an empty state directory `provision-lab-<tag>-<pid>` under the
/// temporary directory, the default image cache), so its `up` and `down` do not touch
/// hosts of tests running in parallel; and that state directory, for the test to remove.
/// `None` where lab tests are skipped ([`skip_unless_lab`]).
pub fn scratch_lab(tag: &str) -> Option<(Lab, PathBuf)> {
    if !skip_unless_lab() {
        return None;
    }
    let default = Lab::open_default().expect("lab");
    let state = std::env::temp_dir().join(format!("provision-lab-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let lab = Lab::with_dirs(state.clone(), default.cache_dir().to_path_buf());
    Some((lab, state))
}

/// The lab's inventory lists host `name`; panics showing the inventory otherwise.
pub fn assert_in_inventory(lab: &Lab, name: &str) {
    let inventory = std::fs::read_to_string(lab.inventory_path()).expect("inventory");
    assert!(
        inventory.contains(&format!("[hosts.{name}]")),
        "{inventory}"
    );
}

/// The names of the hosts `lab up` found unreachable.
pub fn unreachable_names(report: &lab::UpReport) -> Vec<&str> {
    report.unreachable.iter().map(|(n, _)| n.as_str()).collect()
}
