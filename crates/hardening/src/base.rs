//! Base system: packages in one apt transaction, time zone, managed files.

use common::Resource;
use common::inventory::Vars;
use common::resources::{File, Packages, Timezone};

/// The seeds' tool set (seeds/002 §3.1), used when the inventory sets no `packages`.
pub const DEFAULT_PACKAGES: &[&str] = &["curl", "wget", "git", "vim", "htop", "net-tools"];

pub fn resources(vars: &Vars) -> Vec<Box<dyn Resource>> {
    let mut out: Vec<Box<dyn Resource>> = Vec::new();
    let mut packages: Vec<String> = match &vars.packages {
        Some(p) => p.clone(),
        None => DEFAULT_PACKAGES.iter().map(|s| s.to_string()).collect(),
    };
    if vars.timezone.is_some() && !packages.iter().any(|p| p == "tzdata") {
        packages.push("tzdata".into());
    }
    out.push(Box::new(Packages::new("base", packages)));
    if let Some(zone) = &vars.timezone {
        out.push(Box::new(Timezone { zone: zone.clone() }));
    }
    for f in vars.files.iter().flatten() {
        let mode = f
            .mode
            .as_deref()
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .unwrap_or(0o644);
        out.push(Box::new(
            File::new(&f.path, f.content.clone())
                .mode(mode)
                .owned_by(
                    f.owner.as_deref().unwrap_or("root"),
                    f.group.as_deref().unwrap_or("root"),
                ),
        ));
    }
    out
}
