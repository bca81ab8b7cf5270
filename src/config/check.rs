//! The [`Checker`]: collects every problem while raw values become spec values, each at
//! the position of the field it names; and [`Checks`], the checks of the plugin modules
//! that the loader calls.

use std::path::Path;

use crate::schedule::parse_zone;

use serde_saphyr::Spanned;

use super::positions::Positions;
use super::raw::{
    RawChannel, RawDatasource, RawIngest, RawLinks, RawNotify, RawQuietHours, RawStore,
};
use super::{
    ChannelSpec, Config, DatasourceSpec, IngestSpec, LinksSpec, NotifyTargets, Problem,
    QuietWindow, StoreSpec, interpolate, parse_duration,
};

/// Collects problems while turning raw values into spec values.
pub struct Checker<'a> {
    file: &'a Path,
    problems: Vec<Problem>,
    /// Where each field of the file is: a problem points at the field it names.
    positions: Positions,
    /// Position used when the named field is not in the file and the value has none
    /// (values inside tagged enums lose theirs): the enclosing channel or datasource.
    fallback: Option<(usize, usize)>,
    /// Where secrets come from, for `ferry validate`'s permission warnings.
    secrets: SecretSources,
}

/// Where the secrets of a config file come from: the fields that hold one in plain text,
/// and the `*_file` files read. `ferry validate` warns when such a file can be read by
/// others than its owner.
#[derive(Debug, Clone, Default)]
pub struct SecretSources {
    /// The fields with a plain-text secret (neither `${VAR}`, `enc:v1:` nor `*_file`),
    /// each at its position.
    pub plain: Vec<Problem>,
    /// The `*_file` secret files read.
    pub files: Vec<std::path::PathBuf>,
}

impl<'a> Checker<'a> {
    pub fn new(file: &'a Path, positions: Positions) -> Self {
        Checker {
            file,
            problems: Vec::new(),
            positions,
            fallback: None,
            secrets: SecretSources::default(),
        }
    }

    /// Notes `field` as a plain-text secret when its text has neither `${VAR}` nor an
    /// `enc:v1:` value.
    pub fn note_if_plain(&mut self, s: &Spanned<String>, field: &str) {
        if !s.value.is_empty()
            && !s.value.contains("${")
            && !s.value.contains(super::secrets::PREFIX)
        {
            let mut p = Problem::at(self.file, s, field, "");
            if let Some(pos) = self.positions.get(field) {
                p.pos = Some(pos);
            }
            self.secrets.plain.push(p);
        }
    }

    /// A secret given in the file as `field` (`${VAR}` and `enc:v1:` allowed) or read from
    /// the file named by `field_file` (see [`super::secrets::read_secret_file`]); `None`
    /// when neither is given or the one given is unusable (then a problem says why, and
    /// the caller adds none).
    pub fn secret(
        &mut self,
        value: Option<&Spanned<String>>,
        file: Option<&Spanned<String>>,
        field: &str,
    ) -> Option<String> {
        match (value, file) {
            (Some(_), Some(f)) => {
                self.at(
                    f,
                    format!("{field}_file"),
                    format!("give `{}` or `{0}_file`, not both", last_key(field)),
                );
                None
            }
            (Some(v), None) => {
                self.note_if_plain(v, field);
                let before = self.count();
                let value = self.env_req(v, field);
                // A value that did not resolve (a missing variable, a sealed value that
                // does not open) is reported once, here.
                (self.count() == before).then_some(value)
            }
            (None, Some(f)) => {
                let base = self.file.parent().unwrap_or(Path::new(""));
                match super::secrets::read_secret_file(&f.value, base) {
                    Ok((secret, path)) => {
                        self.secrets.files.push(path);
                        Some(secret)
                    }
                    Err(e) => {
                        self.at(f, format!("{field}_file"), e);
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }

    /// Where this file's secrets come from (taken out of the checker).
    pub fn take_secrets(&mut self) -> SecretSources {
        std::mem::take(&mut self.secrets)
    }

    /// A problem at the field it names when the file has that field, else at `span`.
    pub fn at<T>(&mut self, span: &Spanned<T>, field: impl Into<String>, msg: impl Into<String>) {
        let mut p = Problem::at(self.file, span, field, msg);
        if let Some(pos) = self.positions.get(&p.field) {
            p.pos = Some(pos);
        } else if p.pos.is_none() {
            p.pos = self.fallback;
        }
        self.push(p);
    }

    /// A problem about `field` that is missing, shown at `beside`, the field that needs it
    /// (or the enclosing channel or datasource).
    pub fn beside(&mut self, beside: &str, field: impl Into<String>, msg: impl Into<String>) {
        let mut p = Problem::new(self.file, field, msg);
        p.pos = self.positions.get(beside).or(self.fallback);
        self.push_missing(p);
    }

    /// A problem at the field it names, when the file has that field.
    pub fn plain(&mut self, field: impl Into<String>, msg: impl Into<String>) {
        let mut p = Problem::new(self.file, field, msg);
        p.pos = self.positions.get(&p.field);
        self.push_missing(p);
    }

    /// Adds `p`; when it says its field is missing while a key of that name sits elsewhere
    /// in the file (an indentation slip), it points at that key and says how to indent it.
    fn push_missing(&mut self, mut p: Problem) {
        if p.message.starts_with("missing")
            && let Some((pos, how)) = self.positions.misplaced(&p.field)
        {
            p.pos = Some(pos);
            p.message = format!("{}; {how}", p.message);
        }
        self.push(p);
    }

    /// Adds `p` unless its field already has a problem: the first says what to fix, and a
    /// later one is its echo (an unset `${VAR}` leaves the value empty, which a later
    /// check would report again as "must not be empty").
    fn push(&mut self, p: Problem) {
        if !p.field.is_empty() && self.problems.iter().any(|q| q.field == p.field) {
            return;
        }
        self.problems.push(p);
    }

    /// How many problems so far (compare before and after a check to see whether it
    /// found any).
    pub fn count(&self) -> usize {
        self.problems.len()
    }

    /// Whether no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// Sets the position used for a problem whose field is not in the file (the
    /// enclosing channel or datasource).
    pub fn set_fallback(&mut self, pos: Option<(usize, usize)>) {
        self.fallback = pos;
    }

    /// The problems, by position (those without one last).
    pub fn sorted(mut self) -> Vec<Problem> {
        self.problems
            .sort_by_key(|p| p.pos.unwrap_or((usize::MAX, 0)));
        self.problems
    }

    /// Interpolates an optional config string (or returns `default`).
    pub fn env(&mut self, v: &Option<Spanned<String>>, field: &str, default: &str) -> String {
        match v {
            Some(s) => self.env_req(s, field),
            None => default.to_string(),
        }
    }

    /// Parses an optional duration field; a missing or invalid one gives `default` (the
    /// invalid one also a problem).
    pub fn duration(
        &mut self,
        v: &Option<Spanned<String>>,
        field: &str,
        default: std::time::Duration,
    ) -> std::time::Duration {
        match v {
            Some(t) => parse_duration(&t.value).unwrap_or_else(|e| {
                self.at(t, field, e);
                default
            }),
            None => default,
        }
    }

    /// Daily quiet windows (`scheduler.quiet_hours`, `ingest.quiet_hours`) at `field`; a
    /// window without `timezone` is in `default_tz`.
    pub fn quiet_windows(
        &mut self,
        raw: &[Spanned<RawQuietHours>],
        field: &str,
        default_tz: chrono_tz::Tz,
    ) -> Vec<QuietWindow> {
        let mut out = Vec::new();
        for (i, q) in raw.iter().enumerate() {
            let field = format!("{field}[{i}]");
            let parse = |t: &str| chrono::NaiveTime::parse_from_str(t.trim(), "%H:%M").ok();
            let from = parse(&q.value.from);
            let to = parse(&q.value.to);
            if from.is_none() {
                self.at(
                    q,
                    format!("{field}.from"),
                    format!("`{}` is not a time of day as HH:MM", q.value.from),
                );
            }
            if to.is_none() {
                self.at(
                    q,
                    format!("{field}.to"),
                    format!("`{}` is not a time of day as HH:MM", q.value.to),
                );
            }
            let tz = match &q.value.timezone {
                Some(z) => match parse_zone(z) {
                    Ok(tz) => tz,
                    Err(e) => {
                        self.at(q, format!("{field}.timezone"), e);
                        default_tz
                    }
                },
                None => default_tz,
            };
            if let (Some(from), Some(to)) = (from, to) {
                if from == to {
                    self.at(
                        q,
                        &field,
                        "`from` and `to` are equal: the window would be empty",
                    );
                } else {
                    out.push(QuietWindow { from, to, tz });
                }
            }
        }
        out
    }

    pub fn env_req(&mut self, s: &Spanned<String>, field: &str) -> String {
        match interpolate(&s.value) {
            Ok(v) => v,
            Err(e) => {
                self.at(s, field, e);
                String::new()
            }
        }
    }
}

/// The last key of a field path (`password` of `channels.mail.password`).
fn last_key(field: &str) -> &str {
    field.rsplit('.').next().unwrap_or(field)
}

/// The checks that live beside their plugin, which the loader calls: `config` knows the raw
/// and spec types, the plugin modules know what makes a value valid. One value of this,
/// [`crate::plugins::CHECKS`], names them all; `config` itself imports no plugin.
pub struct Checks {
    /// `store.url` (`crate::store::config::check`).
    pub store: fn(&mut Checker, Option<&RawStore>, &Path) -> StoreSpec,
    /// The `links:` section (`crate::links::config::check`).
    pub links: fn(&mut Checker, &Spanned<RawLinks>) -> LinksSpec,
    /// One datasource: base folder, field path `datasources.NAME`, the raw entry
    /// (`crate::source::config::check`).
    pub datasource:
        fn(&mut Checker, &Path, &str, &Spanned<RawDatasource>) -> Option<DatasourceSpec>,
    /// One channel: base folder, templates folder, name, field path `channels.NAME`, the
    /// raw entry, whether `links:` is configured (`crate::notify::config::check`).
    #[allow(clippy::type_complexity)]
    pub channel: fn(
        &mut Checker,
        &Path,
        &Path,
        &str,
        &str,
        &Spanned<RawChannel>,
        bool,
    ) -> Option<ChannelSpec>,
    /// A task's `notify` entry against its channel: field path `notify[i]`, whether
    /// `links:` is configured (`crate::notify::config::check_entry`).
    pub notify_entry:
        fn(&mut Checker, &Spanned<RawNotify>, &str, &ChannelSpec, bool) -> NotifyTargets,
    /// A task's query against its datasource's SQL gate: config, datasource name, SQL
    /// (`crate::sqlgate::check_task_query`).
    pub sql_gate: fn(&Config, &str, &str) -> Result<(), String>,
    /// The `ingest:` section, against the rest of the config
    /// (`crate::ingest::config::check`).
    pub ingest: fn(&mut Checker, &Spanned<RawIngest>, &Config) -> IngestSpec,
    /// The variables a message template may use.
    pub report_variables: fn() -> Vec<String>,
    /// The variables an alert template may use.
    pub alert_variables: fn() -> Vec<String>,
    /// Task files are loaded on several threads: each gets this stack and calls
    /// `task_thread` first (`crate::sqlgate::on_this_thread`: the SQL gate checks in
    /// place there).
    pub task_thread: (usize, fn()),
}
