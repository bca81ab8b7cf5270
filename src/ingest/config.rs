//! Ingest config checks: the `ingest:` section of `config.yaml` becomes an [`IngestSpec`]
//! ([`check`], called by the config loader through [`crate::config::Checks`]). Every
//! field is documented in docs/configuration.md and docs/ingest.md.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_saphyr::Spanned;

use crate::config::raw::{RawIngest, RawIngestDefaults, RawIngestReply, RawSender};
use crate::config::{
    Checker, Config, Format, ImapSpec, IngestDefaults, IngestFolders, IngestSpec, ReplyLanguage,
    ReplySpec, Secret, SenderSpec,
};
use crate::notify::config::{Protocol, ServerFields, check_server};
use crate::suggest::hint;

/// Mail larger than this is refused unread unless `max_mail_bytes` says otherwise.
pub const DEFAULT_MAX_MAIL_BYTES: u64 = 10 * 1000 * 1000;
/// The owners' digest, local time.
const DEFAULT_DIGEST_AT: chrono::NaiveTime = match chrono::NaiveTime::from_hms_opt(8, 0, 0) {
    Some(t) => t,
    None => chrono::NaiveTime::MIN,
};
/// Requests per sender per day unless the sender's `daily_quota` says otherwise.
pub const DEFAULT_DAILY_QUOTA: u32 = 20;
/// Replies per sender per day unless `reply.daily_cap` says otherwise (OTRS's
/// `PostmasterMaxEmails`).
pub const DEFAULT_REPLY_CAP: u32 = 40;
/// The result file name of a request: the query file's name.
pub const DEFAULT_FILE_NAME: &str = "{{ attachment }}";
/// A token must be at least this long (22 characters of `A-Za-z0-9_-` carry 128 bits
/// when random).
pub const MIN_TOKEN_LEN: usize = 22;

/// The `ingest:` section, against the rest of the config (datasources, channels). Every
/// field is checked; a bad one is a problem (the returned spec is then never used).
pub fn check(c: &mut Checker, raw: &Spanned<RawIngest>, config: &Config) -> IngestSpec {
    let r = &raw.value;
    let imap = imap(c, raw, config);
    let folders = folders(c, r);
    let poll_every = c.duration(&r.poll_every, "ingest.poll_every", Duration::from_secs(60));
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&poll_every)
        && let Some(p) = &r.poll_every
    {
        c.at(p, "ingest.poll_every", "must be between 1s and 1h");
    }
    let trust_unauthenticated = r.trust_unauthenticated.as_ref().is_some_and(|t| t.value);
    let authserv_id = match (&r.authserv_id, trust_unauthenticated) {
        (Some(a), false) => {
            let v = c.env_req(a, "ingest.authserv_id").trim().to_string();
            if v.is_empty()
                || !v
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_'))
            {
                c.at(
                    a,
                    "ingest.authserv_id",
                    format!(
                        "`{v}` is not an authserv-id: the host name our mail server writes first \
                         in its Authentication-Results header, such as `mx.example.com`"
                    ),
                );
            }
            Some(v)
        }
        (Some(a), true) => {
            c.at(
                a,
                "ingest.authserv_id",
                "`trust_unauthenticated: true` turns the Authentication-Results check off: \
                 remove one of the two",
            );
            None
        }
        (None, true) => None,
        (None, false) => {
            c.at(
                raw,
                "ingest.authserv_id",
                "missing `authserv_id`: the name our own mail server writes in the \
                 Authentication-Results header it adds (e.g. `mx.example.com`); only mail it \
                 marks `dmarc=pass` is read as a request. For an internal relay that adds no \
                 such header, write `trust_unauthenticated: true` instead",
            );
            None
        }
    };
    let senders = senders(c, &r.senders, config);
    let reply = reply(c, &r.reply, config);
    let defaults = defaults(c, r.defaults.as_ref());
    let max_mail_bytes = match &r.max_mail_bytes {
        Some(m) if m.value < 1024 => {
            c.at(m, "ingest.max_mail_bytes", "must be at least 1024");
            DEFAULT_MAX_MAIL_BYTES
        }
        Some(m) => m.value,
        None => DEFAULT_MAX_MAIL_BYTES,
    };
    let quiet_hours = c.quiet_windows(&r.quiet_hours, "ingest.quiet_hours", config.timezone);
    let mut owners = Vec::new();
    for (i, o) in r.owners.iter().enumerate() {
        let written = c.env_req(o, &format!("ingest.owners[{i}]"));
        match check_bare_address(written.trim()) {
            Ok(()) => owners.push(written.trim().to_string()),
            Err(e) => c.at(o, format!("ingest.owners[{i}]"), e),
        }
    }
    let digest_at = match &r.digest_at {
        Some(d) => match chrono::NaiveTime::parse_from_str(d.value.trim(), "%H:%M") {
            Ok(t) => t,
            Err(_) => {
                c.at(
                    d,
                    "ingest.digest_at",
                    format!(
                        "`{}` is not a time of day: write HH:MM, e.g. 08:00",
                        d.value
                    ),
                );
                DEFAULT_DIGEST_AT
            }
        },
        None => DEFAULT_DIGEST_AT,
    };
    IngestSpec {
        imap,
        folders,
        idle: r.idle.unwrap_or(true),
        poll_every,
        authserv_id,
        trust_unauthenticated,
        senders,
        reply,
        defaults,
        max_mail_bytes,
        quiet_hours,
        owners,
        digest_at,
    }
}

fn imap(c: &mut Checker, raw: &Spanned<RawIngest>, config: &Config) -> ImapSpec {
    let at = &raw.value.imap;
    let i = &at.value;
    let s = check_server(
        c,
        &config.base_dir,
        "ingest.imap",
        at,
        ServerFields {
            host: &i.host,
            port: &i.port,
            security: &i.security,
            username: &i.username,
            password: &i.password,
            ca_file: &i.ca_file,
            timeout: &i.timeout,
        },
        i.password_file.as_ref(),
        Protocol::Imap,
    );
    let (username, password) = match (s.username, s.password) {
        (Some(u), Some(p)) => (u, p),
        (u, p) => {
            if i.username.is_none() && i.password.is_none() && i.password_file.is_none() {
                c.at(
                    at,
                    "ingest.imap.username",
                    "missing `username` and `password`: the IMAP account requests arrive in \
                     (write `password: ${IMAP_PASSWORD}` to take it from the environment)",
                );
            }
            (u.unwrap_or_default(), p.unwrap_or_else(|| Secret::new("")))
        }
    };
    ImapSpec {
        host: s.host,
        port: s.port,
        security: s.security,
        username,
        password,
        ca_file: s.ca_file,
        timeout: s.timeout,
    }
}

fn folders(c: &mut Checker, r: &RawIngest) -> IngestFolders {
    let default = Default::default();
    let f = r.folders.as_ref().unwrap_or(&default);
    let mut one = |v: &Option<Spanned<String>>, name: &str, dflt: &str| -> String {
        let field = format!("ingest.folders.{name}");
        let out = c.env(v, &field, dflt).trim().to_string();
        if let Some(at) = v
            && (out.is_empty() || out.chars().any(char::is_control))
        {
            c.at(
                at,
                &field,
                "must be a folder name (not empty, no control characters)",
            );
        }
        out
    };
    let folders = IngestFolders {
        requests: one(&f.requests, "requests", "INBOX"),
        processed: one(&f.processed, "processed", "Processed"),
        rejected: one(&f.rejected, "rejected", "Rejected"),
        ignored: one(&f.ignored, "ignored", "Ignored"),
    };
    let names = [
        ("requests", &folders.requests),
        ("processed", &folders.processed),
        ("rejected", &folders.rejected),
        ("ignored", &folders.ignored),
    ];
    for (i, (a, x)) in names.iter().enumerate() {
        if let Some((b, _)) = names[i + 1..].iter().find(|(_, y)| y == x) {
            c.plain(
                format!("ingest.folders.{b}"),
                format!(
                    "`{x}` is also the `{a}` folder: each of requests, processed, rejected and \
                     ignored needs its own folder, so that handled mail leaves the request folder"
                ),
            );
        }
    }
    folders
}

fn senders(
    c: &mut Checker,
    raw: &Spanned<Vec<Spanned<RawSender>>>,
    config: &Config,
) -> Vec<SenderSpec> {
    if raw.value.is_empty() {
        c.at(
            raw,
            "ingest.senders",
            "no sender is allowed: list who may send requests (address and databases)",
        );
    }
    let known: Vec<&str> = config.datasources.keys().map(String::as_str).collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, s) in raw.value.iter().enumerate() {
        let field = format!("ingest.senders[{i}]");
        let written = c.env_req(&s.value.address, &format!("{field}.address"));
        let address = written.trim().to_ascii_lowercase();
        if let Err(e) = check_bare_address(written.trim()) {
            c.at(&s.value.address, format!("{field}.address"), e);
        } else if !seen.insert(address.clone()) {
            c.at(
                &s.value.address,
                format!("{field}.address"),
                format!("`{address}` is listed twice (addresses compare case-insensitively)"),
            );
        }
        let mut databases = Vec::new();
        if s.value.databases.value.is_empty() {
            c.at(
                &s.value.databases,
                format!("{field}.databases"),
                "empty: name the datasources this sender may query",
            );
        }
        for (j, d) in s.value.databases.value.iter().enumerate() {
            let name = d.value.trim();
            if config.datasources.contains_key(name) {
                databases.push(name.to_string());
            } else {
                c.at(
                    d,
                    format!("{field}.databases[{j}]"),
                    format!(
                        "undefined datasource `{name}`{} (defined: {})",
                        hint(name, known.iter().copied()),
                        known.join(", ")
                    ),
                );
            }
        }
        let daily_quota = match &s.value.daily_quota {
            Some(q) if q.value == 0 => {
                c.at(q, format!("{field}.daily_quota"), "must be at least 1");
                DEFAULT_DAILY_QUOTA
            }
            Some(q) => q.value,
            None => DEFAULT_DAILY_QUOTA,
        };
        let token = s.value.token.as_ref().map(|t| {
            let v = c.env_req(t, &format!("{field}.token"));
            if let Err(e) = check_token(&v) {
                c.at(t, format!("{field}.token"), e);
            }
            Secret::new(v)
        });
        out.push(SenderSpec {
            address,
            databases,
            daily_quota,
            token,
        });
    }
    out
}

/// An allowlist entry is one bare address (`name@example.com`): a display name would
/// suggest that it takes part in the match, and it never does.
fn check_bare_address(a: &str) -> Result<(), String> {
    let Some((local, domain)) = a.split_once('@') else {
        return Err(format!(
            "`{a}` is not an email address such as `alice@example.com`"
        ));
    };
    let ok_local = !local.is_empty()
        && local
            .chars()
            .all(|ch| ch.is_ascii_graphic() && !"<>()[]\\,;:\"@".contains(ch));
    let ok_domain = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-'));
    if ok_local && ok_domain {
        Ok(())
    } else {
        Err(format!(
            "`{a}` is not a bare email address such as `alice@example.com` (no display name, \
             no angle brackets)"
        ))
    }
}

/// A token goes into a plus-address, so it is made of `A-Za-z0-9_-`, and it is long
/// enough to be unguessable.
fn check_token(t: &str) -> Result<(), String> {
    if t.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "too short: a token needs at least {MIN_TOKEN_LEN} characters (128 bits when \
             random; make one with `openssl rand -hex 16`)"
        ));
    }
    if !t
        .chars()
        .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-'))
    {
        return Err(
            "may hold only letters, digits, `_` and `-` (it is written into an address)".into(),
        );
    }
    Ok(())
}

fn reply(c: &mut Checker, raw: &Spanned<RawIngestReply>, config: &Config) -> ReplySpec {
    let r = &raw.value;
    let channel = r.channel.value.trim().to_string();
    match config.channels.get(&channel) {
        None => {
            let names: Vec<&str> = config.channels.keys().map(String::as_str).collect();
            c.at(
                &r.channel,
                "ingest.reply.channel",
                format!(
                    "undefined channel `{channel}`{} (defined: {})",
                    hint(&channel, names.iter().copied()),
                    names.join(", ")
                ),
            );
        }
        Some(ch) if !crate::notify::capabilities(&ch.kind).mailboxes => c.at(
            &r.channel,
            "ingest.reply.channel",
            format!("`{channel}` is not an email channel: replies go to the sender's mailbox"),
        ),
        Some(_) => {}
    }
    let language = match r
        .language
        .as_ref()
        .map(|l| l.value.trim().to_ascii_lowercase())
    {
        None => ReplyLanguage::En,
        Some(l) if l == "en" => ReplyLanguage::En,
        Some(l) if l == "zh" => ReplyLanguage::Zh,
        Some(other) => {
            if let Some(at) = &r.language {
                c.at(
                    at,
                    "ingest.reply.language",
                    format!("unknown language `{other}` (one of: en, zh)"),
                );
            }
            ReplyLanguage::En
        }
    };
    let daily_cap = match &r.daily_cap {
        Some(q) if q.value == 0 => {
            c.at(q, "ingest.reply.daily_cap", "must be at least 1");
            DEFAULT_REPLY_CAP
        }
        Some(q) => q.value,
        None => DEFAULT_REPLY_CAP,
    };
    ReplySpec {
        channel,
        language,
        daily_cap,
    }
}

fn defaults(c: &mut Checker, raw: Option<&RawIngestDefaults>) -> IngestDefaults {
    let default = RawIngestDefaults::default();
    let d = raw.unwrap_or(&default);
    let format = match &d.format {
        None => Format::Xlsx,
        Some(f) => Format::parse(f.value.trim()).unwrap_or_else(|e| {
            c.at(f, "ingest.defaults.format", e);
            Format::Xlsx
        }),
    };
    let timeout = c.duration(
        &d.timeout,
        "ingest.defaults.timeout",
        Duration::from_secs(600),
    );
    let max_cost = d.max_cost.as_ref().map(|m| {
        if !(m.value.is_finite() && m.value > 0.0) {
            c.at(m, "ingest.defaults.max_cost", "must be a number above 0");
        }
        m.value
    });
    let file_name = match &d.file_name {
        Some(f) => {
            if let Err(e) = crate::ingest::check_file_name(&f.value) {
                c.at(f, "ingest.defaults.file_name", e);
            }
            f.value.clone()
        }
        None => DEFAULT_FILE_NAME.to_string(),
    };
    IngestDefaults {
        format,
        timeout,
        max_cost,
        file_name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_must_be_bare() {
        assert!(check_bare_address("alice@corp.example").is_ok());
        for bad in [
            "alice",
            "Alice <alice@corp.example>",
            "alice@corp",
            "@corp.example",
            "a b@corp.example",
            "alice@corp.example.",
        ] {
            assert!(check_bare_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_are_long_and_address_safe() {
        assert!(check_token("0123456789abcdef0123456789abcdef").is_ok());
        assert!(check_token("short").unwrap_err().contains("at least 22"));
        assert!(
            check_token("0123456789abcdef0123456789ab+def")
                .unwrap_err()
                .contains("letters, digits")
        );
    }
}
