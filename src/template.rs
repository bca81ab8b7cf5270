//! Templates (minijinja): file names, output folders and notification messages.
//!
//! Message templates live in `templates_dir`, or are built in ([`built_in`]: the
//! repository's `templates/`, overridden file by file): a template named `report` is the body
//! `report.md.j2` plus an optional one-line subject `report.subject.j2` and an optional
//! HTML body `report.html.j2` (email channels send it beside the text body; values in it
//! are HTML-escaped automatically). File-name and
//! folder templates are short strings from the task file. All of them share one
//! environment with a `strftime` filter (`{{ run_date | strftime("%Y%m%d") }}`) and a
//! `filesize` filter (`{{ file_size | filesize }}` → `1.2 MB`) and a `thousands` filter
//! (`{{ rows_count | thousands }}` → `1,234,567`). Templates are sandboxed:
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
    // Debug mode makes an undefined-value error name the variable (`nope` is undefined);
    // it is on by default only in debug builds.
    env.set_debug(true);
    env.set_fuel(Some(FUEL));
    env.add_filter("strftime", strftime);
    env.add_filter("filesize", filesize);
    env.add_filter("thousands", group_thousands);
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

/// `1234567` → `1,234,567` (the `thousands` filter).
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Checks the syntax of a template string; the error text names line and problem.
pub fn check_syntax(source: &str) -> Result<(), String> {
    let env = environment();
    env.template_from_str(source)
        .map(|_| ())
        .map_err(|e| describe(&e))
}

/// Variables that `source` reads but that neither `known`, the template itself (`set`,
/// loop variables, macro arguments) nor minijinja's globals (`range`, `namespace`, …)
/// define, each with the first line that uses it. Static: branches that would not run
/// with sample values are checked too.
pub fn unknown_variables(source: &str, known: &[String]) -> Result<Vec<(String, usize)>, String> {
    let env = environment();
    let tpl = env.template_from_str(source).map_err(|e| describe(&e))?;
    let globals: Vec<&str> = env.globals().map(|(n, _)| n).collect();
    let mut names: Vec<String> = tpl
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !known.contains(v) && !globals.contains(&v.as_str()))
        .collect();
    names.sort_unstable();
    Ok(names
        .into_iter()
        .map(|n| {
            let line = first_use(source, &n).unwrap_or(1);
            (n, line)
        })
        .collect())
}

/// The line of the first tag (`{{ }}` or `{% %}`) that names `var` as a variable (not
/// after a `.`, not inside a string). Only to point at a line: what is undefined comes
/// from minijinja's own analysis.
fn first_use(source: &str, var: &str) -> Option<usize> {
    let b = source.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        let close: &[u8] = match &b[i..i + 2] {
            b"{{" => b"}}",
            b"{%" => b"%}",
            b"{#" => {
                i = find(b, i + 2, b"#}").map_or(b.len(), |e| e + 2);
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        let end = find(b, i + 2, close).unwrap_or(b.len());
        let mut j = i + 2;
        let mut quote: Option<u8> = None;
        while j < end {
            let c = b[j];
            if let Some(q) = quote {
                if c == b'\\' {
                    j += 1;
                } else if c == q {
                    quote = None;
                }
                j += 1;
            } else if c == b'"' || c == b'\'' {
                quote = Some(c);
                j += 1;
            } else if c.is_ascii_alphabetic() || c == b'_' {
                let start = j;
                while j < end && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                let after_dot = source[..start].trim_end().ends_with('.');
                if &source[start..j] == var && !after_dot {
                    return Some(source[..start].matches('\n').count() + 1);
                }
            } else {
                j += 1;
            }
        }
        i = end + 2;
    }
    None
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Checks that `source` (from `origin`, a file or `built-in NAME`) reads only `known`
/// variables; the error names the first unknown one with its line, a close known name
/// if there is one, and the known variables.
pub fn check_variables(source: &str, origin: Option<&str>, known: &[String]) -> Result<(), String> {
    let unknown = unknown_variables(source, known)?;
    let Some((name, line)) = unknown.first() else {
        return Ok(());
    };
    let others = match unknown.len() {
        1 => String::new(),
        n => format!(
            " (and {}: {})",
            if n == 2 { "1 more" } else { "more" },
            unknown[1..]
                .iter()
                .map(|(n, l)| format!("`{n}` line {l}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let close = crate::suggest::hint(name, known.iter().map(String::as_str));
    let mut listed: Vec<&str> = known.iter().map(String::as_str).collect();
    listed.sort_unstable();
    let at = match origin {
        Some(o) => format!("{o}:{line}: "),
        None if source.contains('\n') => format!("template line {line}: "),
        None => String::new(),
    };
    Err(format!(
        "{at}undefined variable `{name}`{close}{others}; known variables: {}",
        listed.join(", ")
    ))
}

/// Keys of a map value (a template context).
pub fn context_keys(ctx: &minijinja::Value) -> Vec<String> {
    ctx.try_iter()
        .map(|it| it.filter_map(|k| k.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Checks a file-name or folder template against the context it is rendered with: its
/// syntax, its variables (all branches), and a trial render (which catches bad
/// `strftime` formats). Returns the rendered text.
pub fn check_name(source: &str, ctx: &minijinja::Value) -> Result<String, String> {
    check_syntax(source)?;
    check_variables(source, None, &context_keys(ctx))?;
    render_str(source, ctx)
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

/// The templates ferry ships: the repository's `templates/`, compiled into the binary. A
/// file of the same name in `templates_dir` takes the place of a built-in one.
const BUILT_IN: &[(&str, &str)] = &[
    ("report.md.j2", include_str!("../templates/report.md.j2")),
    (
        "report.subject.j2",
        include_str!("../templates/report.subject.j2"),
    ),
    (
        "report.html.j2",
        include_str!("../templates/report.html.j2"),
    ),
    (
        "report_zh.md.j2",
        include_str!("../templates/report_zh.md.j2"),
    ),
    (
        "report_zh.subject.j2",
        include_str!("../templates/report_zh.subject.j2"),
    ),
    (
        "report_zh.html.j2",
        include_str!("../templates/report_zh.html.j2"),
    ),
    ("alert.md.j2", include_str!("../templates/alert.md.j2")),
    (
        "alert.subject.j2",
        include_str!("../templates/alert.subject.j2"),
    ),
    (
        "mail_result.md.j2",
        include_str!("../templates/mail_result.md.j2"),
    ),
    (
        "mail_result_zh.md.j2",
        include_str!("../templates/mail_result_zh.md.j2"),
    ),
];

/// The built-in template file `file` (e.g. `report.md.j2`), if ferry ships one.
pub fn built_in(file: &str) -> Option<&'static str> {
    BUILT_IN.iter().find(|(n, _)| *n == file).map(|(_, t)| *t)
}

/// The names of the built-in message templates (`alert`, `report`).
pub fn built_in_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = BUILT_IN
        .iter()
        .filter_map(|(n, _)| n.strip_suffix(".md.j2"))
        .collect();
    names.sort_unstable();
    names
}

/// The language of the built-in message templates (`language: en|zh`): with `zh`, a
/// template `NAME` is read as `NAME_zh` when that exists (in `templates_dir` or built in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Language {
    #[default]
    En,
    Zh,
}

impl Language {
    pub const NAMES: &'static [&'static str] = &["en", "zh"];

    /// Parses `en` or `zh`.
    pub fn parse(text: &str) -> Result<Language, String> {
        match text {
            "en" => Ok(Language::En),
            "zh" => Ok(Language::Zh),
            other => Err(format!(
                "unknown language `{other}` (one of: {})",
                Language::NAMES.join(", ")
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Zh => "zh",
        }
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

/// One part of a message template, with where its text came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub text: String,
    /// The file it was read from, or `built-in NAME` for a template ferry ships.
    pub origin: String,
}

/// The parts of a message template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Body,
    Subject,
    Html,
}

/// The default subject when a template has no `.subject.j2` file.
pub const DEFAULT_SUBJECT: &str = "[ferry] {{ task_name }}: {{ status }}";

impl MessageTemplate {
    /// The template `name` in `language`: `NAME_zh` for Chinese when `dir` has a
    /// `NAME_zh.md.j2` or ferry ships one, else `NAME` itself.
    pub fn in_language(dir: &Path, name: &str, language: Language) -> MessageTemplate {
        if language != Language::En {
            let variant = format!("{name}_{}", language.as_str());
            let body = format!("{variant}.md.j2");
            if dir.join(&body).exists() || built_in(&body).is_some() {
                return MessageTemplate::locate(dir, &variant);
            }
        }
        MessageTemplate::locate(dir, name)
    }

    pub fn locate(dir: &Path, name: &str) -> MessageTemplate {
        MessageTemplate {
            name: name.to_string(),
            body_path: dir.join(format!("{name}.md.j2")),
            subject_path: dir.join(format!("{name}.subject.j2")),
            html_path: dir.join(format!("{name}.html.j2")),
        }
    }

    fn path(&self, part: Part) -> &Path {
        match part {
            Part::Body => &self.body_path,
            Part::Subject => &self.subject_path,
            Part::Html => &self.html_path,
        }
    }

    /// The text of one part: the file in `templates_dir`, else the built-in file of the
    /// same name; `None` when neither exists. A built-in HTML body is used only with the
    /// built-in text body: a project that writes its own `NAME.md.j2` gets no HTML part
    /// until it writes its own `NAME.html.j2` (mail clients show the HTML part, which
    /// would hide the project's text).
    pub fn source(&self, part: Part) -> Result<Option<Source>, String> {
        let path = self.path(part);
        match crate::fsread::read_text(path, crate::fsread::Kind::Template) {
            Ok(text) => {
                return Ok(Some(Source {
                    text,
                    origin: path.display().to_string(),
                }));
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(format!("template `{}`: {e}", self.name)),
        }
        if part == Part::Html && self.body_path.exists() {
            return Ok(None);
        }
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        Ok(built_in(&file).map(|text| Source {
            text: text.to_string(),
            origin: format!("built-in {file}"),
        }))
    }

    /// The body, which every template must have.
    fn body(&self) -> Result<Source, String> {
        self.source(Part::Body)?.ok_or_else(|| {
            format!(
                "template `{}` not found: expected the file {} (built-in templates: {})",
                self.name,
                self.body_path.display(),
                built_in_names().join(", ")
            )
        })
    }

    /// Every part the template has (the body first), checked to exist and compile.
    pub fn parts(&self) -> Result<Vec<(Part, Source)>, String> {
        if !is_plain_name(&self.name) {
            return Err(format!(
                "template name `{}` must be a plain name (letters, digits, `_`, `-`)",
                self.name
            ));
        }
        let mut out = vec![(Part::Body, self.body()?)];
        for part in [Part::Subject, Part::Html] {
            if let Some(source) = self.source(part)? {
                out.push((part, source));
            }
        }
        for (_, source) in &out {
            check_syntax(&source.text)
                .map_err(|e| format!("template `{}` ({}): {e}", self.name, source.origin))?;
        }
        Ok(out)
    }

    /// Checks that the body exists, every part (body, subject, HTML) compiles and reads
    /// only the `known` variables (those of the context it is rendered with).
    pub fn check(&self, known: &[String]) -> Result<(), String> {
        for (_, source) in self.parts()? {
            check_variables(&source.text, Some(&source.origin), known)
                .map_err(|e| format!("template `{}`: {e}", self.name))?;
        }
        Ok(())
    }

    /// Renders the HTML body, or `None` when the template has no HTML part.
    pub fn render_html(&self, ctx: &minijinja::Value) -> Result<Option<String>, String> {
        let Some(source) = self.source(Part::Html)? else {
            return Ok(None);
        };
        render_html(&source.text, ctx)
            .map(Some)
            .map_err(|e| format!("template `{}` ({}): {e}", self.name, source.origin))
    }

    /// Renders `(subject, body)`.
    pub fn render(&self, ctx: &minijinja::Value) -> Result<(String, String), String> {
        let body_src = self.body()?;
        let subject = match self.source(Part::Subject)? {
            Some(s) => render_str(&s.text, ctx)
                .map_err(|e| format!("template `{}` ({}): {e}", self.name, s.origin))?,
            None => render_str(DEFAULT_SUBJECT, ctx)
                .map_err(|e| format!("template `{}` subject: {e}", self.name))?,
        };
        let body = render_str(&body_src.text, ctx)
            .map_err(|e| format!("template `{}` ({}): {e}", self.name, body_src.origin))?;
        Ok((
            subject.lines().next().unwrap_or("").trim().to_string(),
            body,
        ))
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
    fn undefined_variables_fail_and_are_named() {
        // Release builds have debug mode off by default, and then minijinja says only
        // "undefined value": ferry turns it on.
        assert!(environment().debug());
        let e = render_str("a\n{{ x }}{{ nope }}", &context! { x => 1 }).unwrap_err();
        assert!(
            e.contains("`nope` is undefined") && e.contains("line 2"),
            "{e}"
        );
    }

    #[test]
    fn unknown_variables_are_found_in_every_branch_and_legitimate_ones_pass() {
        let known: Vec<String> = ["link", "files", "rows_count", "error", "succeeded"]
            .map(String::from)
            .to_vec();
        let ok = "{% if link %}{{ link }}{% endif %}{% set n = rows_count %}{{ n }}\n\
                  {% for f in files %}{{ loop.index }} {{ f.name }} {{ f.link or '' }}{% endfor %}\n\
                  {% for i in range(3) %}{{ i }}{% endfor %}{% set ns = namespace(c=0) %}\n\
                  {{ ns.c }}{{ 'eror' }}{# {{ eror }} #}";
        assert_eq!(unknown_variables(ok, &known).unwrap(), []);
        let bad = "x\n{% if succeeded %}ok{% else %}{{ f.eror }} {{ eror }}{% endif %}\n{{ nme }}";
        assert_eq!(
            unknown_variables(bad, &known).unwrap(),
            [
                ("eror".to_string(), 2),
                ("f".to_string(), 2),
                ("nme".to_string(), 3)
            ]
        );
        let e = check_variables("{{ eror }}", Some("t.md.j2"), &known).unwrap_err();
        assert!(
            e.starts_with("t.md.j2:1: undefined variable `eror` (did you mean `error`?); known variables: error, files, link"),
            "{e}"
        );
    }

    #[test]
    fn the_built_in_templates_use_only_their_variables() {
        let none = Path::new("/nonexistent");
        MessageTemplate::locate(none, "report")
            .check(&crate::notify::RunReport::variables())
            .unwrap();
        MessageTemplate::locate(none, "alert")
            .check(&crate::exec::alert::alert_variables())
            .unwrap();
        // The report's variables are not enough for an alert.
        let e = MessageTemplate::locate(none, "alert")
            .check(&crate::notify::RunReport::variables())
            .unwrap_err();
        assert!(e.contains("built-in alert."), "{e}");
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
    fn built_in_templates_fill_in_for_missing_files_and_files_override_them() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context! { task_name => "t", status => "failed", succeeded => false };
        // No folder at all: the built-in `report` and `alert` are complete templates.
        let gone = dir.path().join("no-such-folder");
        for name in ["report", "alert"] {
            MessageTemplate::locate(&gone, name).parts().unwrap();
        }
        let report = MessageTemplate::locate(&gone, "report");
        assert_eq!(
            report.source(Part::Html).unwrap().unwrap().origin,
            "built-in report.html.j2"
        );
        let e = MessageTemplate::locate(&gone, "weekly")
            .check(&[])
            .unwrap_err();
        assert!(
            e.starts_with("template `weekly` not found: expected the file ")
                && e.ends_with(
                    "weekly.md.j2 (built-in templates: alert, mail_result, mail_result_zh, report, report_zh)"
                ),
            "{e}"
        );
        // A subject of its own; the body stays built in.
        std::fs::write(dir.path().join("report.subject.j2"), "own {{ task_name }}").unwrap();
        let t = MessageTemplate::locate(dir.path(), "report");
        let subject = t.source(Part::Subject).unwrap().unwrap();
        assert_eq!(render_str(&subject.text, &ctx).unwrap(), "own t");
        assert_eq!(
            t.source(Part::Body).unwrap().unwrap().origin,
            "built-in report.md.j2"
        );
        assert!(t.source(Part::Html).unwrap().is_some());
        // A body of its own: no built-in HTML part would hide it.
        std::fs::write(dir.path().join("report.md.j2"), "own body").unwrap();
        assert_eq!(t.render(&ctx).unwrap().1, "own body");
        assert_eq!(t.source(Part::Html).unwrap(), None);
        assert_eq!(t.render_html(&ctx).unwrap(), None);
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KB");
        assert_eq!(human_bytes(25 * 1024 * 1024), "25.0 MB");
    }
}
