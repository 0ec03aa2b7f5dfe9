//! Whether a run changes hosts: shared by the engine that runs and the reports that say
//! what happened.

/// Converge, or only show what would change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Check,
    Apply,
}

impl Mode {
    /// `Check` when `check` (a `--check` flag), else `Apply`.
    pub fn check_if(check: bool) -> Mode {
        if check { Mode::Check } else { Mode::Apply }
    }
}
