//! What every binary does to `config.toml` before parsing it: `${VAR}` and
//! `${VAR:-default}` in string values come from the environment (so secrets
//! need not be written in the file), and a sample secret is refused unless
//! the process runs in dev mode (`STITCH_DEV=1`, which `run.sh` sets).
//!
//! Interpolation edits string values in place with `toml_edit`, so the text
//! handed to the parser keeps its lines and errors keep their line numbers.

use toml_edit::{visit_mut::VisitMut, DocumentMut, Value};

/// The environment variable that allows sample secrets.
pub const DEV_MODE_VAR: &str = "STITCH_DEV";

/// Every secret value that ships in the repository's examples.
pub const SAMPLE_SECRETS: [&str; 2] = [
    "change-me-in-production",
    "change-me-in-production-service-token",
];

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: {}", .problems.join("; "))]
    Interpolation { file: String, problems: Vec<String> },
}

impl SettingsError {
    fn syntax(file: &str, message: String) -> Self {
        SettingsError::Syntax {
            file: file.to_string(),
            message,
        }
    }
}

/// `text` with every `${VAR}` / `${VAR:-default}` in its string values
/// replaced from `env`; every unset variable without a default is named.
pub fn interpolate(
    text: &str,
    file: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String, SettingsError> {
    if !text.contains("${") {
        return Ok(text.to_string());
    }
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| SettingsError::syntax(file, e.to_string()))?;
    let mut v = Interpolator {
        env: &env,
        path: Vec::new(),
        problems: Vec::new(),
    };
    v.visit_document_mut(&mut doc);
    if v.problems.is_empty() {
        Ok(doc.to_string())
    } else {
        Err(SettingsError::Interpolation {
            file: file.to_string(),
            problems: v.problems,
        })
    }
}

/// [`interpolate`] from the process environment.
pub fn interpolate_env(text: &str, file: &str) -> Result<String, SettingsError> {
    interpolate(text, file, |name| std::env::var(name).ok())
}

/// Whether the process runs in dev mode (sample secrets allowed).
pub fn dev_mode() -> bool {
    std::env::var(DEV_MODE_VAR).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Refuses a sample secret outside dev mode: `key` names it in the error.
pub fn check_secret(key: &str, value: &str) -> Result<(), String> {
    if SAMPLE_SECRETS.contains(&value) && !dev_mode() {
        return Err(format!(
            "{key} is the sample value `{value}`; set your own (e.g. `{key_name} = \"${{SECRET_VAR}}\"` with the secret in the environment), or run in dev mode with {DEV_MODE_VAR}=1 as ./run.sh does",
            key_name = key.rsplit(' ').next().unwrap_or(key)
        ));
    }
    Ok(())
}

struct Interpolator<'e, E: Fn(&str) -> Option<String>> {
    env: &'e E,
    path: Vec<String>,
    problems: Vec<String>,
}

impl<E: Fn(&str) -> Option<String>> VisitMut for Interpolator<'_, E> {
    fn visit_table_like_kv_mut(&mut self, key: toml_edit::KeyMut<'_>, node: &mut toml_edit::Item) {
        self.path.push(key.get().to_string());
        toml_edit::visit_mut::visit_table_like_kv_mut(self, key, node);
        self.path.pop();
    }

    fn visit_value_mut(&mut self, node: &mut Value) {
        if let Value::String(s) = node {
            let raw = s.value();
            if raw.contains("${") {
                match expand(raw, self.env) {
                    Ok(v) => {
                        let decor = s.decor().clone();
                        let mut f = toml_edit::Formatted::new(v);
                        *f.decor_mut() = decor;
                        *s = f;
                    }
                    Err(e) => self
                        .problems
                        .push(format!("`{}`: {e}", self.path.join("."))),
                }
            }
            return;
        }
        toml_edit::visit_mut::visit_value_mut(self, node);
    }
}

/// One string with its `${...}` references expanded.
fn expand(raw: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("`${{` without a closing `}}` in \"{raw}\""));
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "`${{{inner}}}` is not `${{NAME}}` or `${{NAME:-default}}`"
            ));
        }
        match (env(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "the environment variable `{name}` is not set; export it or write `${{{name}:-default}}`"
                ))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SECRET" => Some("s3cr\"et".into()),
            "PORT" => Some("4000".into()),
            _ => None,
        }
    }

    #[test]
    fn variables_and_defaults_fill_string_values_and_lines_stay() {
        let text = "# top\n[gateway]\nlisten = \"127.0.0.1:${PORT}\"\n\n[services.dataset]\nsigning_secret = \"${SECRET}\"\nname = \"${MISSING:-fallback}\" # kept\nplain = \"$HOME {x}\"\n";
        let out = interpolate(text, "c.toml", env).unwrap();
        assert_eq!(
            out,
            "# top\n[gateway]\nlisten = \"127.0.0.1:4000\"\n\n[services.dataset]\nsigning_secret = 's3cr\"et'\nname = \"fallback\" # kept\nplain = \"$HOME {x}\"\n"
        );
        assert_eq!(out.lines().count(), text.lines().count());
    }

    #[test]
    fn every_unset_variable_is_named_with_its_key() {
        let text = "[a]\nx = \"${ONE}\"\n[[b]]\ny = [\"${TWO}\"]\nz = \"${bad name}\"\n";
        let e = interpolate(text, "c.toml", env).unwrap_err().to_string();
        assert!(e.starts_with("c.toml: "), "{e}");
        assert!(
            e.contains("`a.x`: the environment variable `ONE` is not set"),
            "{e}"
        );
        assert!(e.contains("`TWO` is not set"), "{e}");
        assert!(e.contains("is not `${NAME}`"), "{e}");
    }

    #[test]
    fn text_without_references_is_untouched() {
        let text = "[a]\nx = 'lit'   # c\n";
        assert_eq!(interpolate(text, "c", env).unwrap(), text);
    }
}
