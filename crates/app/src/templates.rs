//! Template sources (built-in, or the user's `template_dir` overriding them) and rendering
//! with minijinja: strict undefined, no auto-escaping, trailing newline kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};

use crate::AppError;
use crate::env_file::{EnvRegistry, EnvTemplate};

/// Where a template's text came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Builtin { set: String },
    User { path: PathBuf },
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Builtin { set } => write!(f, "built-in set `{set}`"),
            Origin::User { path } => write!(f, "{}", path.display()),
        }
    }
}

#[derive(Debug, Clone)]
struct Source {
    text: String,
    origin: Origin,
}

/// The templates of one app: every name the set knows, each from the user's directory when
/// it has a file of that name, else built in.
#[derive(Debug, Clone)]
pub struct Templates {
    sources: BTreeMap<String, Source>,
}

impl Templates {
    /// `builtin`: template name → source. `template_dir` is read here, on the controller,
    /// while resources are built; a file in it that overrides nothing is an error (a typo
    /// would otherwise be silently ignored).
    pub fn load(
        set: &str,
        builtin: &[(&str, &str)],
        template_dir: Option<&Path>,
    ) -> Result<Self, AppError> {
        let mut sources: BTreeMap<String, Source> = builtin
            .iter()
            .map(|(name, text)| {
                (
                    name.to_string(),
                    Source {
                        text: text.to_string(),
                        origin: Origin::Builtin {
                            set: set.to_string(),
                        },
                    },
                )
            })
            .collect();
        let Some(dir) = template_dir else {
            return Ok(Self { sources });
        };
        let dir_error = |source| AppError::TemplateDir {
            path: dir.to_path_buf(),
            source,
        };
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(dir_error)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(dir_error)?;
        entries.sort();
        for path in entries {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let Some(slot) = sources.get_mut(&name) else {
                let known: Vec<&str> = builtin.iter().map(|(n, _)| *n).collect();
                return Err(AppError::UnknownTemplateFile {
                    path,
                    set: set.to_string(),
                    known: known.join(", "),
                });
            };
            let text = std::fs::read_to_string(&path).map_err(|source| AppError::TemplateFile {
                path: path.clone(),
                source,
            })?;
            *slot = Source {
                text,
                origin: Origin::User { path },
            };
        }
        Ok(Self { sources })
    }

    pub fn origin(&self, name: &str) -> Option<&Origin> {
        self.sources.get(name).map(|s| &s.origin)
    }

    fn environment(&self) -> Result<Environment<'static>, AppError> {
        // Values reach scripts and units only through the escaping filters below.
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_syntax(
            SyntaxConfig::builder()
                .keep_trailing_newline(true)
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .expect("default delimiters are valid"),
        );
        add_escaping_filters(&mut env);
        for (name, source) in &self.sources {
            env.add_template_owned(name.clone(), source.text.clone())
                .map_err(|e| self.render_error(name, e))?;
        }
        Ok(env)
    }

    /// Render template `name` with `context`.
    pub fn render(&self, name: &str, context: &serde_json::Value) -> Result<String, AppError> {
        let env = self.environment()?;
        render_in(&env, name, context).map_err(|e| self.render_error(name, e))
    }

    /// Render the `.env` template: `secret(KEY, kind, size)` declares a generated secret
    /// (and `secret(KEY)` refers to it), `keep(default)` marks a value the operator fills in
    /// on the host.
    pub(crate) fn render_env(
        &self,
        name: &str,
        context: &serde_json::Value,
    ) -> Result<EnvTemplate, AppError> {
        let mut env = self.environment()?;
        let registry = Arc::new(Mutex::new(EnvRegistry::default()));
        let r = registry.clone();
        env.add_function(
            "secret",
            move |key: String, kind: Option<String>, size: Option<u32>| {
                r.lock()
                    .expect("not poisoned")
                    .secret(&key, kind.as_deref(), size)
                    .map_err(|problem| minijinja::Error::new(ErrorKind::InvalidOperation, problem))
            },
        );
        let r = registry.clone();
        env.add_function("keep", move |default: String| {
            r.lock().expect("not poisoned").keep(default)
        });
        let text = render_in(&env, name, context).map_err(|e| self.render_error(name, e))?;
        let registry = registry.lock().expect("not poisoned").clone();
        let origin = self.origin(name).cloned().expect("template exists");
        EnvTemplate::parse(&text, registry).map_err(|(line, problem)| AppError::EnvTemplate {
            origin: origin.to_string(),
            line,
            problem,
        })
    }

    fn render_error(&self, name: &str, e: minijinja::Error) -> AppError {
        let template = e.name().unwrap_or(name).to_string();
        let origin = self
            .origin(&template)
            .or_else(|| self.origin(name))
            .map(ToString::to_string)
            .unwrap_or_default();
        AppError::Render {
            problem: describe(&e),
            line: e.line(),
            template,
            origin,
            source: e,
        }
    }
}

fn render_in(
    env: &Environment<'_>,
    name: &str,
    context: &serde_json::Value,
) -> Result<String, minijinja::Error> {
    env.get_template(name)?
        .render(minijinja::value::Serde(context))
}

/// A short description of a template error; undefined variables are named.
fn describe(e: &minijinja::Error) -> String {
    let detail = e.detail().unwrap_or_default();
    match e.kind() {
        ErrorKind::UndefinedError => {
            // minijinja 3 says "`settings.image` is undefined".
            match detail
                .strip_prefix('`')
                .and_then(|d| d.split_once("` is undefined"))
            {
                Some((variable, _)) => format!("undefined variable `{variable}`"),
                None if detail.is_empty() => "undefined variable".to_string(),
                None => format!("undefined variable ({detail})"),
            }
        }
        ErrorKind::SyntaxError => format!("syntax error: {detail}"),
        _ if detail.is_empty() => e.kind().to_string(),
        _ => format!("{}: {detail}", e.kind()),
    }
}

/// The filters that put a value into a file that is code:
/// - `shell`: one POSIX sh word ([`common::shell::quote`]), for scripts;
/// - `systemd`: a unit setting's value, `%` doubled, control characters refused;
/// - `systemd_word`: one word of a unit's command line (quoted, `%` and `$` doubled);
/// - `systemd_assignment`: one `NAME=value` of `Environment=` (quoted, `%` doubled);
/// - `token`: one word of an nginx or compose file (letters, digits, `._:/@+-`; anything
///   else, `;` `{` spaces quotes `$` included, is a render error, never config syntax);
/// - `oneline`: text for a comment line (control characters become spaces).
fn add_escaping_filters(env: &mut Environment<'static>) {
    fn unit_error(e: common::shell::UnitValueError) -> minijinja::Error {
        minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string())
    }
    env.add_filter("shell", |value: String| common::shell::quote(&value));
    env.add_filter("systemd", |value: String| {
        common::shell::systemd_value(&value).map_err(unit_error)
    });
    env.add_filter("systemd_word", |value: String| {
        common::shell::systemd_word(&value).map_err(unit_error)
    });
    env.add_filter("systemd_assignment", |value: String| {
        common::shell::systemd_assignment(&value).map_err(unit_error)
    });
    env.add_filter("token", |value: minijinja::Value| {
        let text = value.to_string();
        let ok = !text.is_empty()
            && !text.starts_with('-')
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._:/@+-".contains(c));
        if ok {
            Ok(text)
        } else {
            Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "{text:?} cannot be written into a config file as one word: use letters, digits and `._:/@+-` (an image, a size, a port, a relative path)"
                ),
            ))
        }
    });
    env.add_filter("oneline", |value: String| {
        value
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn templates(text: &str) -> Templates {
        Templates::load("test", &[("nginx.conf", text)], None).unwrap()
    }

    #[test]
    fn missing_variable_names_template_line_and_variable() {
        let t = templates("events {}\nserver_name {{ app.domain }};\nroot {{ settings.root }};\n");
        let e = t
            .render(
                "nginx.conf",
                &json!({"app": {"domain": "x"}, "settings": {}}),
            )
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("`nginx.conf`"), "{text}");
        assert!(text.contains("line 3"), "{text}");
        assert!(
            text.contains("undefined variable `settings.root`"),
            "{text}"
        );
        assert!(text.contains("built-in set `test`"), "{text}");
    }

    #[test]
    fn top_level_undefined_variable_is_named_too() {
        let t = templates("a\n\n{% if nope %}x{% endif %}\n");
        let text = t.render("nginx.conf", &json!({})).unwrap_err().to_string();
        assert!(
            text.contains("line 3") && text.contains("undefined variable `nope`"),
            "{text}"
        );
    }

    #[test]
    fn rendering_keeps_the_trailing_newline_and_escapes_nothing() {
        let t = templates("a {{ v }}\n{% if true %}\nb\n{% endif %}\n");
        let out = t.render("nginx.conf", &json!({"v": "<&'\">"})).unwrap();
        assert_eq!(out, "a <&'\">\nb\n");
    }

    #[test]
    fn default_filter_works_under_strict_undefined() {
        let t = templates("{{ settings.x | default('d') }}\n");
        assert_eq!(
            t.render("nginx.conf", &json!({"settings": {}})).unwrap(),
            "d\n"
        );
    }

    #[test]
    fn user_directory_overrides_and_unknown_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nginx.conf"), "mine {{ v }}\n").unwrap();
        let t = Templates::load("test", &[("nginx.conf", "builtin\n")], Some(dir.path())).unwrap();
        assert_eq!(
            t.render("nginx.conf", &json!({"v": 1})).unwrap(),
            "mine 1\n"
        );
        assert!(matches!(t.origin("nginx.conf"), Some(Origin::User { .. })));

        std::fs::write(dir.path().join("docker-compose.yaml"), "typo\n").unwrap();
        let e = Templates::load("test", &[("nginx.conf", "builtin\n")], Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("docker-compose.yaml") && e.contains("nginx.conf"),
            "{e}"
        );
    }

    #[test]
    fn missing_template_dir_is_a_clear_error() {
        let e = Templates::load(
            "test",
            &[("nginx.conf", "x")],
            Some(Path::new("/nonexistent/templates")),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("/nonexistent/templates"), "{e}");
    }

    #[test]
    fn user_template_errors_name_the_users_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nginx.conf"), "ok\n{{ oops }}\n").unwrap();
        let t = Templates::load("test", &[("nginx.conf", "builtin\n")], Some(dir.path())).unwrap();
        let e = t.render("nginx.conf", &json!({})).unwrap_err().to_string();
        assert!(
            e.contains(&dir.path().join("nginx.conf").display().to_string()),
            "{e}"
        );
        assert!(e.contains("line 2") && e.contains("`oops`"), "{e}");
    }
}
