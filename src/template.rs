//! Templates (minijinja): file names, output folders and notification messages.
//!
//! Message templates live in `templates_dir`: a template named `report` is the body
//! `report.md.j2` plus an optional one-line subject `report.subject.j2` and an optional
//! HTML body `report.html.j2` (email channels send it beside the text body; values in it
//! are HTML-escaped automatically). File-name and
//! folder templates are short strings from the task file. All of them share one
//! environment with a `strftime` filter (`{{ run_date | strftime("%Y%m%d") }}`) and a
//! `filesize` filter (`{{ file_size | filesize }}` → `1.2 MB`). Templates are sandboxed:
//! they cannot read files, and execution is bounded by minijinja's fuel.

use std::path::{Path, PathBuf};

use chrono::format::{Item, StrftimeItems};
use chrono::{NaiveDate, NaiveDateTime};
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};

/// Fuel for one render: enough for any message, bounded against runaway loops.
const FUEL: u64 = 200_000;

/// A minijinja environment with ferry's filters.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.add_filter("strftime", strftime);
    env.add_filter("filesize", filesize);
    env
}

fn strftime(value: String, fmt: String) -> Result<String, Error> {
    let items: Vec<Item> = StrftimeItems::new(&fmt).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("invalid strftime format `{fmt}`"),
        ));
    }
    let v = value.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(t
            .naive_local()
            .format_with_items(items.into_iter())
            .to_string());
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S") {
        return Ok(t.format_with_items(items.into_iter()).to_string());
    }
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        // Time fields of a plain date format as midnight.
        let t = d.and_hms_opt(0, 0, 0).expect("midnight exists");
        return Ok(t.format_with_items(items.into_iter()).to_string());
    }
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("strftime expects a date or date-time, got `{value}`"),
    ))
}

/// Human-readable byte size (1024-based, one decimal).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

fn filesize(n: u64) -> String {
    human_bytes(n)
}

/// Checks the syntax of a template string; the error text names line and problem.
pub fn check_syntax(source: &str) -> Result<(), String> {
    let env = environment();
    env.template_from_str(source)
        .map(|_| ())
        .map_err(|e| describe(&e))
}

/// Renders a template string with `ctx`.
pub fn render_str(source: &str, ctx: &minijinja::Value) -> Result<String, String> {
    let env = environment();
    env.render_str(source, ctx).map_err(|e| describe(&e))
}

/// Name under which HTML templates are compiled: minijinja escapes values in templates
/// whose name ends in `.html` (after dropping `.j2`).
const HTML_NAME: &str = "message.html.j2";

/// Renders an HTML template string with `ctx`, escaping every value (`| safe` opts out).
pub fn render_html(source: &str, ctx: &minijinja::Value) -> Result<String, String> {
    let env = environment();
    env.render_named_str(HTML_NAME, source, ctx)
        .map_err(|e| describe(&e))
}

/// One-line description of a minijinja error, with its line when known.
pub fn describe(e: &Error) -> String {
    let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
    match e.line() {
        Some(line) => format!("{}{detail} (template line {line})", e.kind()),
        None => format!("{}{detail}", e.kind()),
    }
}

/// The files of a message template named `name` in `dir`.
#[derive(Debug, Clone)]
pub struct MessageTemplate {
    pub name: String,
    pub body_path: PathBuf,
    pub subject_path: PathBuf,
    /// Optional HTML body (email).
    pub html_path: PathBuf,
}

/// The default subject when a template has no `.subject.j2` file.
pub const DEFAULT_SUBJECT: &str = "[ferry] {{ task_name }}: {{ status }}";

impl MessageTemplate {
    pub fn locate(dir: &Path, name: &str) -> MessageTemplate {
        MessageTemplate {
            name: name.to_string(),
            body_path: dir.join(format!("{name}.md.j2")),
            subject_path: dir.join(format!("{name}.subject.j2")),
            html_path: dir.join(format!("{name}.html.j2")),
        }
    }

    /// Checks that the body exists and every part (body, subject, HTML) compiles.
    pub fn check(&self) -> Result<(), String> {
        if !is_plain_name(&self.name) {
            return Err(format!(
                "template name `{}` must be a plain name (letters, digits, `_`, `-`)",
                self.name
            ));
        }
        let body = std::fs::read_to_string(&self.body_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "template `{}` not found: expected the file {}",
                self.name,
                self.body_path.display()
            ),
            _ => format!(
                "template `{}`: cannot read {}: {e}",
                self.name,
                self.body_path.display()
            ),
        })?;
        check_syntax(&body).map_err(|e| {
            format!(
                "template `{}` ({}): {e}",
                self.name,
                self.body_path.display()
            )
        })?;
        for path in [&self.subject_path, &self.html_path] {
            if let Some(source) = read_optional(path)? {
                check_syntax(&source)
                    .map_err(|e| format!("template `{}` ({}): {e}", self.name, path.display()))?;
            }
        }
        Ok(())
    }

    fn read_subject(&self) -> Result<Option<String>, String> {
        read_optional(&self.subject_path)
    }

    /// Renders the HTML body, or `None` when the template has no `.html.j2` file.
    pub fn render_html(&self, ctx: &minijinja::Value) -> Result<Option<String>, String> {
        let Some(source) = read_optional(&self.html_path)? else {
            return Ok(None);
        };
        render_html(&source, ctx)
            .map(Some)
            .map_err(|e| format!("template `{}` (HTML): {e}", self.name))
    }

    /// Renders `(subject, body)`.
    pub fn render(&self, ctx: &minijinja::Value) -> Result<(String, String), String> {
        let body_src = std::fs::read_to_string(&self.body_path)
            .map_err(|e| format!("cannot read {}: {e}", self.body_path.display()))?;
        let subject_src = self
            .read_subject()?
            .unwrap_or_else(|| DEFAULT_SUBJECT.to_string());
        let subject = render_str(&subject_src, ctx)
            .map_err(|e| format!("template `{}` subject: {e}", self.name))?;
        let body =
            render_str(&body_src, ctx).map_err(|e| format!("template `{}`: {e}", self.name))?;
        Ok((
            subject.lines().next().unwrap_or("").trim().to_string(),
            body,
        ))
    }
}

/// Reads a template part that may be absent.
fn read_optional(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// True for names made of ASCII letters, digits, `_` and `-` (task, template, channel names).
pub fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    #[test]
    fn strftime_formats_dates_and_times() {
        let out = render_str(
            "{{ d | strftime('%Y%m%d') }}_{{ t | strftime('%H%M') }}",
            &context! { d => "2026-11-25", t => "2026-11-25 02:30:00" },
        )
        .unwrap();
        assert_eq!(out, "20261125_0230");
    }

    #[test]
    fn bad_strftime_and_syntax_are_errors_not_panics() {
        let e =
            render_str("{{ d | strftime('%Q') }}", &context! { d => "2026-11-25" }).unwrap_err();
        assert!(e.contains("invalid strftime format"), "{e}");
        let e = check_syntax("{{ task ").unwrap_err();
        assert!(e.contains("syntax error"), "{e}");
    }

    #[test]
    fn undefined_variables_fail() {
        assert!(render_str("{{ nope }}", &context! {}).is_err());
    }

    #[test]
    fn html_values_are_escaped() {
        let out = render_html(
            "<p>{{ d }}</p>{{ s | safe }}",
            &context! { d => "<b>A & B</b>", s => "<i>ok</i>" },
        )
        .unwrap();
        assert_eq!(out, "<p>&lt;b&gt;A &amp; B&lt;&#x2f;b&gt;</p><i>ok</i>");
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KB");
        assert_eq!(human_bytes(25 * 1024 * 1024), "25.0 MB");
    }
}
