//! Helpers shared by the app's test binaries (each declares `mod support;`): the probe
//! outputs of a simulated host.
#![allow(dead_code)] // each binary uses its own part

use std::collections::BTreeMap;

use app::App;
use common::facts::ProbeOutput;

/// A probe that succeeded with `stdout`.
pub fn out(stdout: String) -> ProbeOutput {
    ProbeOutput {
        status: 0,
        stdout,
        stderr: String::new(),
    }
}

/// The host before anything ran: nothing of `app` exists.
pub fn empty_host(app: &App) -> BTreeMap<String, ProbeOutput> {
    let mut t = BTreeMap::new();
    for d in &app.directories {
        t.insert(format!("ownership:{}", d.path), out("absent\n".into()));
    }
    t.insert(format!("path:{}", app.env.path), out("absent\n".into()));
    for f in &app.files {
        t.insert(format!("path:{}", f.file.path), out("absent\n".into()));
    }
    for s in &app.services {
        t.insert(
            format!("unit:{}", s.unit),
            out("LoadState=not-found\nActiveState=inactive\nUnitFileState=\n".into()),
        );
    }
    t
}
