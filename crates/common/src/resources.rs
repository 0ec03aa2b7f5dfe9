//! Generic resources: packages, files, directories, lines and blocks in files, systemd
//! services, the time zone, user accounts and triggers (steps run after a watched change). Role-specific resources (sshd, firewall,
//! certificates, the app tree) live in their own crates and are built on these.

mod file;
mod packages;
mod service;
mod system;
mod trigger;

pub use file::{
    Block, Directory, File, Line, editable_text, owner_and_mode_change, plan_edit,
    set_owner_and_mode,
};
pub use packages::Packages;
pub use service::Service;
pub use system::{Timezone, User};
pub use trigger::Trigger;
