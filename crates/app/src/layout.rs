//! Where an app's tree lives on a host: the one derivation the app tree and the
//! certificate defaults (`ssl_dir`, the reload hook's compose file) both read.

use common::inventory::{AppVars, Vars};

/// The app directory from `[vars.app]`: `path` (a trailing `/` trimmed), else
/// `/opt/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppLayout {
    dir: String,
}

impl AppLayout {
    /// `None` when the host has no app, or its app has no name (the app reports that).
    pub fn from_vars(vars: &Vars) -> Option<Self> {
        Self::of(vars.app.as_ref()?)
    }

    pub fn of(app: &AppVars) -> Option<Self> {
        let name = app.name.as_ref()?;
        let dir = match &app.path {
            Some(path) => path.trim_end_matches('/').to_string(),
            None => format!("/opt/{name}"),
        };
        Some(Self { dir })
    }

    /// e.g. `/opt/ai-meeting`.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// A path in the tree; `""` is the directory itself.
    pub fn path(&self, relative: &str) -> String {
        if relative.is_empty() {
            self.dir.clone()
        } else {
            format!("{}/{relative}", self.dir)
        }
    }

    /// Where the certificate and key go: nginx reads them from here.
    pub fn ssl_dir(&self) -> String {
        self.path("ssl")
    }

    pub fn compose_file(&self) -> String {
        self.path("docker-compose.yml")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: Option<&str>, path: Option<&str>) -> AppVars {
        AppVars {
            name: name.map(str::to_string),
            path: path.map(str::to_string),
            ..AppVars::default()
        }
    }

    #[test]
    fn path_wins_over_the_default_under_opt() {
        let default = AppLayout::of(&app(Some("shop"), None)).unwrap();
        assert_eq!(default.dir(), "/opt/shop");
        assert_eq!(default.ssl_dir(), "/opt/shop/ssl");
        let custom = AppLayout::of(&app(Some("shop"), Some("/srv/shop/"))).unwrap();
        assert_eq!(custom.compose_file(), "/srv/shop/docker-compose.yml");
        assert_eq!(AppLayout::of(&app(None, Some("/srv/x"))), None);
    }
}
