//! Channel config checks: each `channels:` entry of `config.yaml` becomes a
//! [`ChannelSpec`] ([`check`]: email, chat robots, webhooks, outbox), and a task's
//! `notify` entry is checked against the channel it names ([`check_entry`]). The config
//! loader calls both through [`crate::config::Checks`].

use std::path::Path;

use serde_saphyr::Spanned;

use crate::config::raw::{RawChannel, RawEmail, RawNotify, RawOutbox};
use crate::config::{
    ChannelKind, ChannelSpec, Checker, EmailSpec, NotifyTargets, RobotDelivery, RobotService,
    RobotSpec, Secret, SmtpSecurity, interpolate, parse_duration, problem::hint, redact_url,
    resolve,
};
use crate::notify::email;
use crate::template::MessageTemplate;

/// Default message template name.
const DEFAULT_TEMPLATE: &str = "report";

/// A robot or webhook channel's settings, checked: the webhook is an http(s) URL, fields
/// that the service does not have are refused.
fn robot_channel(
    c: &mut Checker,
    field: &str,
    service: RobotService,
    r: &crate::config::raw::RawRobot,
) -> Option<RobotSpec> {
    let key = if service == RobotService::Webhook {
        "url"
    } else {
        "webhook"
    };
    // The robots' webhook URLs carry their token (noted when written in plain text); a
    // plain webhook's URL may carry none.
    let webhook = if service == RobotService::Webhook {
        match (&r.webhook, &r.webhook_file) {
            (Some(w), None) => Some(c.env_req(w, &format!("{field}.{key}"))),
            _ => c.secret(
                r.webhook.as_ref(),
                r.webhook_file.as_ref(),
                &format!("{field}.{key}"),
            ),
        }
    } else {
        c.secret(
            r.webhook.as_ref(),
            r.webhook_file.as_ref(),
            &format!("{field}.{key}"),
        )
    };
    if r.webhook.is_none() && r.webhook_file.is_none() {
        c.beside(
            field,
            format!("{field}.{key}"),
            format!(
                "missing `{key}`: the {} URL (write it with `${{VAR}}`, an `enc:v1:` value, or give `{key}_file`)",
                if service == RobotService::Webhook { "webhook's" } else { "robot's webhook" }
            ),
        );
    }
    let webhook = webhook.unwrap_or_default();
    let mut usable = !webhook.is_empty();
    if usable && let Err(e) = check_webhook_url(service, &webhook) {
        match (&r.webhook, &r.webhook_file) {
            (Some(w), _) => c.at(w, format!("{field}.{key}"), e),
            (None, Some(f)) => c.at(f, format!("{field}.{key}_file"), e),
            (None, None) => {}
        }
        usable = false;
    }
    let secret = c.secret(
        r.secret.as_ref(),
        r.secret_file.as_ref(),
        &format!("{field}.secret"),
    );
    if let (Some(s), Some(span)) = (&secret, &r.secret)
        && s.is_empty()
    {
        c.at(span, format!("{field}.secret"), "must not be empty");
    }
    if let Some(s) = &r.secret
        && service == RobotService::WeCom
    {
        c.at(
            s,
            format!("{field}.secret"),
            "WeCom robots have no signing secret: the key in the webhook URL is the credential",
        );
    }
    let keyword = r.keyword.as_ref().map(|k| k.value.clone());
    if let Some(k) = &r.keyword
        && service != RobotService::DingTalk
    {
        c.at(
            k,
            format!("{field}.keyword"),
            "`keyword` is DingTalk's security setting; this channel is not a DingTalk robot",
        );
    }
    let mention_all = r.mention_all.unwrap_or(false);
    if mention_all && matches!(service, RobotService::WeCom | RobotService::Webhook) {
        c.beside(
            &format!("{field}.mention_all"),
            format!("{field}.mention_all"),
            format!(
                "`mention_all` is not available for {} channels",
                service.kind()
            ),
        );
    }
    let timeout = match &r.timeout {
        Some(t) => match parse_duration(&t.value) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                c.at(t, format!("{field}.timeout"), "must be more than 0");
                std::time::Duration::from_secs(30)
            }
            Err(e) => {
                c.at(t, format!("{field}.timeout"), e);
                std::time::Duration::from_secs(30)
            }
        },
        None => std::time::Duration::from_secs(30),
    };
    let delivery = delivery_mode(c, field, r.delivery.as_ref());
    if let Some(d) = &r.delivery
        && delivery == RobotDelivery::Attach
        && service != RobotService::WeCom
    {
        c.at(
            d,
            format!("{field}.delivery"),
            format!(
                "{} channels cannot carry files, only a download link: use `link` or `auto`",
                service.kind()
            ),
        );
    }
    if !usable {
        return None;
    }
    Some(RobotSpec {
        delivery,
        service,
        webhook: Secret::new(webhook),
        secret: secret.filter(|s| !s.is_empty()).map(Secret::new),
        keyword,
        mention_all,
        timeout,
    })
}

/// A channel's `template` (default `report`), checked: the body exists and every part
/// compiles.
fn channel_template(
    c: &mut Checker,
    templates_dir: &Path,
    ch: &Spanned<RawChannel>,
    template: &Option<Spanned<String>>,
    field: &str,
) -> String {
    let tpl = template
        .as_ref()
        .map(|t| t.value.clone())
        .unwrap_or_else(|| DEFAULT_TEMPLATE.to_string());
    let known = crate::notify::RunReport::variables();
    if let Err(e) = MessageTemplate::locate(templates_dir, &tpl).check(&known) {
        match template {
            Some(t) => c.at(t, format!("{field}.template"), e),
            None => c.at(ch, format!("{field}.template"), e),
        }
    }
    tpl
}

/// Email addresses from config.yaml (`${VAR}` allowed), each checked.
fn config_mailboxes<T>(
    c: &mut Checker,
    at: &Spanned<T>,
    field: &str,
    list: &[String],
) -> Vec<String> {
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        match interpolate(r).and_then(|v| email::parse_mailbox(&v).map(|_| v)) {
            Ok(v) => out.push(v.trim().to_string()),
            Err(e) => c.at(at, format!("{field}[{i}]"), e),
        }
    }
    out
}

/// Email addresses from a task file (no interpolation), each checked.
fn task_mailboxes<T>(
    c: &mut Checker,
    at: &Spanned<T>,
    field: &str,
    list: &[String],
) -> Vec<String> {
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        match email::parse_mailbox(r) {
            Ok(_) => out.push(r.trim().to_string()),
            Err(e) => c.at(at, format!("{field}[{i}]"), e),
        }
    }
    out
}

/// The SMTP part of a `type: email` channel, or `None` after reporting its problems.
fn email_channel(
    c: &mut Checker,
    base_dir: &Path,
    field: &str,
    ch: &Spanned<RawChannel>,
    raw: &RawEmail,
    links: bool,
) -> Option<EmailSpec> {
    let RawEmail {
        host,
        port,
        security,
        username,
        password,
        ca_file,
        timeout,
        from,
        max_attachment_bytes,
        delivery,
        max_parts,
        ..
    } = raw;
    let before = c.count();
    let server = check_server(
        c,
        base_dir,
        field,
        ch,
        ServerFields {
            host,
            port,
            security,
            username,
            password,
            ca_file,
            timeout,
        },
        raw.password_file.as_ref(),
        Protocol::Smtp,
    );
    let MailServer {
        host,
        port,
        security,
        username,
        password,
        ca_file,
        timeout,
    } = server;

    let from = match from {
        None => {
            c.at(
                ch,
                format!("{field}.from"),
                "missing `from`: the sender, e.g. `Reports <reports@example.com>`",
            );
            String::new()
        }
        Some(f) => {
            let v = c.env_req(f, &format!("{field}.from"));
            if let Err(e) = email::parse_mailbox(&v) {
                c.at(f, format!("{field}.from"), e);
            }
            v.trim().to_string()
        }
    };

    let max_attachment_bytes = match max_attachment_bytes {
        Some(m) if m.value == 0 => {
            c.at(
                m,
                format!("{field}.max_attachment_bytes"),
                "must be more than 0",
            );
            0
        }
        Some(m) => m.value,
        None => email::DEFAULT_MAX_ATTACHMENT_BYTES,
    };

    let delivery_given = delivery;
    let delivery = delivery_mode(c, field, delivery.as_ref());
    if let (RobotDelivery::Link, Some(d), false) = (delivery, delivery_given, links) {
        // Every message would fail: it may carry neither the files nor a link.
        c.at(d, format!("{field}.delivery"), LINK_NEEDS_LINKS);
    }

    let max_parts = match max_parts {
        Some(m) if m.value > crate::notify::parts::MAX_PARTS_LIMIT => {
            c.at(
                m,
                format!("{field}.max_parts"),
                format!(
                    "must be at most {} (0 or 1: never split)",
                    crate::notify::parts::MAX_PARTS_LIMIT
                ),
            );
            0
        }
        Some(m) => m.value,
        None => crate::notify::parts::DEFAULT_MAX_PARTS,
    };

    (c.count() == before).then_some(EmailSpec {
        max_parts,
        delivery,
        host,
        port,
        security,
        username,
        password,
        ca_file,
        timeout,
        from,
        max_attachment_bytes,
    })
}

/// Why `delivery: link` is refused without a `links:` section.
const LINK_NEEDS_LINKS: &str = "`link` sends the download link instead of the files, and config.yaml has no `links:` section to make one (see docs/links.md); configure links, or use `auto` or `attach`";

/// A channel's `delivery` (`auto` when not given).
fn delivery_mode(c: &mut Checker, field: &str, given: Option<&Spanned<String>>) -> RobotDelivery {
    let Some(d) = given else {
        return RobotDelivery::Auto;
    };
    RobotDelivery::parse(&d.value).unwrap_or_else(|e| {
        c.at(d, format!("{field}.delivery"), e);
        RobotDelivery::Auto
    })
}

/// A robot's webhook must be an http(s) URL; the message shows it without its query
/// string and path token.
fn check_webhook_url(service: RobotService, url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?']).next().unwrap_or(""));
    match host {
        Some(h) if !h.is_empty() && !h.contains(char::is_whitespace) => Ok(()),
        _ => {
            let what = match service {
                RobotService::Webhook => "the webhook's url".to_string(),
                other => format!("the {} webhook", other.kind()),
            };
            Err(format!(
                "expected an http(s) URL for {what}, got `{}`",
                redact_url(url)
            ))
        }
    }
}

/// A notify entry's own robot `webhook` and `secret` (the seed's per-task DingTalk robot):
/// robot channels only; `${VAR}` is allowed in these two fields so that tokens stay out of
/// task files.
fn notify_robot_overrides(
    c: &mut Checker,
    n: &Spanned<RawNotify>,
    field: &str,
    ch: &ChannelSpec,
) -> (Option<Secret>, Option<Secret>) {
    let raw = &n.value;
    let ChannelKind::Robot(robot) = &ch.kind else {
        for (key, given) in [("webhook", &raw.webhook), ("secret", &raw.secret)] {
            if given.is_some() {
                c.at(
                    n,
                    format!("{field}.{key}"),
                    format!(
                        "`{key}` applies to robot and webhook channels only; channel `{}` is `{}`",
                        ch.name,
                        ch.kind.kind()
                    ),
                );
            }
        }
        return (None, None);
    };
    let mut value = |key: &str, given: &Option<String>| -> Option<String> {
        let v = given.as_ref()?;
        match interpolate(v) {
            Ok(v) if v.trim().is_empty() => {
                c.at(n, format!("{field}.{key}"), "must not be empty");
                None
            }
            Ok(v) => Some(v),
            Err(e) => {
                c.at(n, format!("{field}.{key}"), e);
                None
            }
        }
    };
    let webhook = value("webhook", &raw.webhook);
    let secret = value("secret", &raw.secret);
    if let Some(w) = &webhook
        && let Err(e) = check_webhook_url(robot.service, w)
    {
        c.at(n, format!("{field}.webhook"), e);
    }
    (webhook.map(Secret::new), secret.map(Secret::new))
}

/// A notify entry's own `delivery` (files or link, over the channel's): only for the
/// channels that can send files (email, WeCom); `link` needs download links.
fn notify_delivery(
    c: &mut Checker,
    n: &Spanned<RawNotify>,
    field: &str,
    ch: &ChannelSpec,
    links: bool,
) -> Option<RobotDelivery> {
    let given = n.value.delivery.as_deref()?;
    let field = format!("{field}.delivery");
    let sends_files = match &ch.kind {
        ChannelKind::Email(_) => true,
        ChannelKind::Robot(r) => r.service == RobotService::WeCom,
        ChannelKind::Outbox { .. } => false,
    };
    if !sends_files {
        let what = match &ch.kind {
            ChannelKind::Outbox { .. } => "which records the message and its file list",
            _ => "which can carry only the download link",
        };
        c.at(
            n,
            field,
            format!(
                "`delivery` applies to the channels that can send the files themselves (email, wecom); channel `{}` is `{}`, {what}",
                ch.name,
                ch.kind.kind()
            ),
        );
        return None;
    }
    match RobotDelivery::parse(given) {
        Ok(RobotDelivery::Link) if !links => {
            c.at(n, field, LINK_NEEDS_LINKS);
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            c.at(n, field, e);
            None
        }
    }
}

/// The recipients of a notify entry: its own lists where given (each replaces the channel's
/// list of the same kind), else the channel's. Email addresses are checked; `to`, `cc`
/// and `bcc` exist only for email channels.
fn notify_recipients(
    c: &mut Checker,
    n: &Spanned<RawNotify>,
    field: &str,
    ch: &ChannelSpec,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let raw = &n.value;
    let is_email = matches!(ch.kind, ChannelKind::Email(_));
    if !is_email {
        for (key, given) in [("to", &raw.to), ("cc", &raw.cc), ("bcc", &raw.bcc)] {
            if given.is_some() {
                c.at(
                    n,
                    format!("{field}.{key}"),
                    format!(
                        "`{key}` applies to email channels only; channel `{}` is `{}`{}",
                        ch.name,
                        ch.kind.kind(),
                        if key == "to" {
                            " (use `recipients`)"
                        } else {
                            ""
                        }
                    ),
                );
            }
        }
        let recipients = raw
            .recipients
            .clone()
            .unwrap_or_else(|| ch.recipients.clone());
        return (recipients, Vec::new(), Vec::new());
    }
    let (to_key, to) = match (&raw.to, &raw.recipients) {
        (Some(_), Some(_)) => {
            c.at(
                n,
                format!("{field}.recipients"),
                "give `to` or `recipients` (the same list), not both",
            );
            ("to", raw.to.as_ref())
        }
        (Some(t), None) => ("to", Some(t)),
        (None, r) => ("recipients", r.as_ref()),
    };
    let mut list = |key: &str, given: Option<&Vec<String>>, default: &[String]| match given {
        Some(l) => task_mailboxes(c, n, &format!("{field}.{key}"), l),
        None => default.to_vec(),
    };
    let to = list(to_key, to, &ch.recipients);
    let cc = list("cc", raw.cc.as_ref(), &ch.cc);
    let bcc = list("bcc", raw.bcc.as_ref(), &ch.bcc);
    if to.is_empty() && cc.is_empty() && bcc.is_empty() {
        c.at(
            n,
            field.to_string(),
            format!(
                "no recipients: give `to`, `cc` or `bcc` here or in channel `{}`",
                ch.name
            ),
        );
    }
    (to, cc, bcc)
}

/// One channel, by type (`field` is `channels.NAME`); `None` after reporting its problems.
pub fn check(
    c: &mut Checker,
    base_dir: &Path,
    templates_dir: &Path,
    name: &str,
    field: &str,
    ch: &Spanned<RawChannel>,
    links: bool,
) -> Option<ChannelSpec> {
    match &ch.value {
        RawChannel::Outbox(RawOutbox {
            dir,
            template,
            recipients,
            ..
        }) => {
            let d = resolve(base_dir, &c.env(dir, &format!("{field}.dir"), "outbox"));
            let tpl = channel_template(c, templates_dir, ch, template, field);
            let mut rcpt = Vec::new();
            for (i, r) in recipients.iter().enumerate() {
                match interpolate(r) {
                    Ok(v) => rcpt.push(v),
                    Err(e) => c.at(ch, format!("{field}.recipients[{i}]"), e),
                }
            }
            return Some(ChannelSpec {
                name: name.to_string(),
                kind: ChannelKind::Outbox { dir: d },
                template: tpl,
                recipients: rcpt,
                cc: Vec::new(),
                bcc: Vec::new(),
            });
        }
        RawChannel::Dingtalk(r)
        | RawChannel::Wecom(r)
        | RawChannel::Feishu(r)
        | RawChannel::Webhook(r) => {
            let service = match &ch.value {
                RawChannel::Dingtalk(_) => RobotService::DingTalk,
                RawChannel::Wecom(_) => RobotService::WeCom,
                RawChannel::Feishu(_) => RobotService::Feishu,
                _ => RobotService::Webhook,
            };
            let tpl = channel_template(c, templates_dir, ch, &r.template, field);
            if let Some(spec) = robot_channel(c, field, service, r) {
                let mut mentions = Vec::new();
                for (i, m) in r.mentions.iter().enumerate() {
                    match interpolate(m) {
                        Ok(v) => mentions.push(v),
                        Err(e) => c.at(ch, format!("{field}.mentions[{i}]"), e),
                    }
                }
                return Some(ChannelSpec {
                    name: name.to_string(),
                    kind: ChannelKind::Robot(Box::new(spec)),
                    template: tpl,
                    recipients: mentions,
                    cc: Vec::new(),
                    bcc: Vec::new(),
                });
            }
        }
        RawChannel::Email(
            email @ RawEmail {
                template,
                to,
                cc,
                bcc,
                ..
            },
        ) => {
            let tpl = channel_template(c, templates_dir, ch, template, field);
            let to = config_mailboxes(c, ch, &format!("{field}.to"), to);
            let cc = config_mailboxes(c, ch, &format!("{field}.cc"), cc);
            let bcc = config_mailboxes(c, ch, &format!("{field}.bcc"), bcc);
            if let Some(email) = email_channel(c, base_dir, field, ch, email, links) {
                return Some(ChannelSpec {
                    name: name.to_string(),
                    kind: ChannelKind::Email(Box::new(email)),
                    template: tpl,
                    recipients: to,
                    cc,
                    bcc,
                });
            }
        }
    }
    None
}

/// A task's `notify` entry against its channel `ch` (`field` is `notify[i]`): its own
/// recipients, robot webhook and secret, and delivery, each where the channel has them.
pub fn check_entry(
    c: &mut Checker,
    n: &Spanned<RawNotify>,
    field: &str,
    ch: &ChannelSpec,
    links: bool,
) -> NotifyTargets {
    let (recipients, cc, bcc) = notify_recipients(c, n, field, ch);
    let (webhook, secret) = notify_robot_overrides(c, n, field, ch);
    let delivery = notify_delivery(c, n, field, ch, links);
    NotifyTargets {
        recipients,
        cc,
        bcc,
        webhook,
        secret,
        delivery,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::positions::Positions;
    use crate::config::raw::RawTask;
    use crate::config::yaml::parse_yaml;
    use crate::config::{TaskSpec, load_config, validate_task};
    use crate::plugins::CHECKS;

    /// A project with one channel of each kind that matters for `delivery`, `links:` when
    /// asked, and the task `notify` list given; returns the task's problems as text.
    fn notify_project(links: bool, notify: &str) -> Result<TaskSpec, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("templates")).unwrap();
        std::fs::write(dir.path().join("templates/report.md.j2"), "{{ task_name }}").unwrap();
        let links = if links {
            "links: { public_url: \"https://files.example.test\", signing_key: \"0123456789abcdef0123456789abcdef-x\" }\n"
        } else {
            ""
        };
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "{links}datasources:\n  db: {{ type: sqlite, url: \"sqlite://db.sqlite\" }}\nchannels:\n  box: {{ type: outbox }}\n  mail: {{ type: email, host: 127.0.0.1, from: ferry@example.test, to: [a@example.test], delivery: attach }}\n  wc: {{ type: wecom, webhook: \"https://qyapi.example.test/cgi-bin/webhook/send?key=k\" }}\n  ding: {{ type: dingtalk, webhook: \"https://oapi.example.test/robot/send?access_token=t\" }}\n"
            ),
        )
        .unwrap();
        let config = load_config(&config, &CHECKS).unwrap();
        let file = dir.path().join("t.yaml");
        let text = format!(
            "schedule: \"0 3 * * *\"\nsource: db\nquery: SELECT 1 AS one\noutput: {{ format: csv }}\nnotify:\n{notify}"
        );
        let raw: RawTask = parse_yaml(&file, &text).unwrap();
        validate_task(&config, "t", &file, raw, Positions::index(&text), &CHECKS).map_err(|ps| {
            ps.iter()
                .map(|p| {
                    p.to_string()
                        .replace(&format!("{}/", dir.path().display()), "")
                })
                .collect()
        })
    }

    #[test]
    fn a_notify_entry_sets_its_own_delivery_for_email_and_wecom() {
        let task = notify_project(
            true,
            "  - mail\n  - { channel: mail, delivery: link }\n  - { channel: wc, delivery: attach }\n",
        )
        .unwrap();
        let modes: Vec<_> = task.notify.iter().map(|n| n.delivery).collect();
        assert_eq!(
            modes,
            [None, Some(RobotDelivery::Link), Some(RobotDelivery::Attach)]
        );
    }

    #[test]
    fn a_notify_entrys_delivery_is_refused_where_it_means_nothing() {
        let problems = notify_project(
            false,
            "  - { channel: box, delivery: link }\n  - { channel: ding, delivery: auto }\n  - channel: mail\n    delivery: link\n  - { channel: wc, delivery: files }\n",
        )
        .unwrap_err();
        assert_eq!(
            problems,
            [
                "t.yaml:6:31: notify[0].delivery: `delivery` applies to the channels that can send the files themselves (email, wecom); channel `box` is `outbox`, which records the message and its file list",
                "t.yaml:7:32: notify[1].delivery: `delivery` applies to the channels that can send the files themselves (email, wecom); channel `ding` is `dingtalk`, which can carry only the download link",
                "t.yaml:9:15: notify[2].delivery: `link` sends the download link instead of the files, and config.yaml has no `links:` section to make one (see docs/links.md); configure links, or use `auto` or `attach`",
                "t.yaml:10:30: notify[3].delivery: unknown value `files` (one of: auto, attach, link)",
            ]
        );
    }
}

/// The connection fields a mail server entry has (an email channel's SMTP server, the
/// ingest IMAP server), as written.
pub(crate) struct ServerFields<'a> {
    pub host: &'a Option<Spanned<String>>,
    pub port: &'a Option<Spanned<u16>>,
    pub security: &'a Option<Spanned<String>>,
    pub username: &'a Option<Spanned<String>>,
    pub password: &'a Option<Spanned<String>>,
    pub ca_file: &'a Option<Spanned<String>>,
    pub timeout: &'a Option<Spanned<String>>,
}

/// Which protocol a mail server speaks: its default ports and what the messages call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Smtp,
    Imap,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Smtp => "SMTP",
            Protocol::Imap => "IMAP",
        }
    }

    /// The usual port for `security`.
    fn port(self, security: SmtpSecurity) -> u16 {
        match self {
            Protocol::Smtp => security.default_port(),
            Protocol::Imap => match security {
                SmtpSecurity::Tls => 993,
                SmtpSecurity::StartTls | SmtpSecurity::None => 143,
            },
        }
    }

    fn default_security(self) -> SmtpSecurity {
        match self {
            Protocol::Smtp => SmtpSecurity::StartTls,
            Protocol::Imap => SmtpSecurity::Tls,
        }
    }
}

/// A checked mail server connection.
pub(crate) struct MailServer {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub ca_file: Option<std::path::PathBuf>,
    pub timeout: std::time::Duration,
}

/// Checks a mail server's connection fields; `at` is the enclosing entry (problems about
/// missing fields point at it). The password may come from a file (`password_file`).
pub(crate) fn check_server<T>(
    c: &mut Checker,
    base_dir: &Path,
    field: &str,
    at: &Spanned<T>,
    fields: ServerFields<'_>,
    password_file: Option<&Spanned<String>>,
    protocol: Protocol,
) -> MailServer {
    let before = c.count();
    let ServerFields {
        host,
        port,
        security,
        username,
        password,
        ca_file,
        timeout,
    } = fields;
    let security_given = security;

    let host = match host {
        None => {
            c.at(
                at,
                format!("{field}.host"),
                format!(
                    "missing `host`: the {} server's name or address",
                    protocol.name()
                ),
            );
            String::new()
        }
        Some(h) => {
            let v = c.env_req(h, &format!("{field}.host")).trim().to_string();
            let v = v
                .strip_prefix('[')
                .and_then(|x| x.strip_suffix(']'))
                .unwrap_or(&v)
                .to_string();
            if v.contains("://") {
                c.at(
                    h,
                    format!("{field}.host"),
                    format!(
                        "expected a host name, got the URL `{}` (put the port in `port` and \
                        the encryption in `security`)",
                        redact_url(&v)
                    ),
                );
            } else if v.is_empty() && c.count() == before {
                c.at(h, format!("{field}.host"), "must not be empty");
            } else if v.contains(char::is_whitespace)
                || (v.contains(':') && v.parse::<std::net::Ipv6Addr>().is_err())
            {
                c.at(
                    h,
                    format!("{field}.host"),
                    format!("`{v}` is not a host name or address (the port goes in `port`)"),
                );
            }
            v
        }
    };

    let security = match security {
        None => protocol.default_security(),
        Some(s) => match s.value.trim().to_ascii_lowercase().as_str() {
            "starttls" => SmtpSecurity::StartTls,
            "tls" => SmtpSecurity::Tls,
            "none" => SmtpSecurity::None,
            other => {
                let extra = if matches!(other, "ssl" | "smtps" | "imaps" | "implicit") {
                    format!(
                        " (implicit TLS, usually port {}, is `tls`)",
                        protocol.port(SmtpSecurity::Tls)
                    )
                } else {
                    hint(other, ["starttls", "tls", "none"])
                };
                c.at(
                    s,
                    format!("{field}.security"),
                    format!("unknown value `{other}` (one of: starttls, tls, none){extra}"),
                );
                SmtpSecurity::StartTls
            }
        },
    };

    let port = match port {
        Some(p) if p.value == 0 => {
            c.at(p, format!("{field}.port"), "must be between 1 and 65535");
            0
        }
        Some(p) => p.value,
        None => protocol.port(security),
    };

    let username = username
        .as_ref()
        .map(|u| (u, c.env_req(u, &format!("{field}.username"))));
    let given = password.is_some() || password_file.is_some();
    let password = c.secret(
        password.as_ref(),
        password_file,
        &format!("{field}.password"),
    );
    let (username, password) = match (username, password) {
        (Some((_, u)), Some(p)) if !u.trim().is_empty() => {
            (Some(u.trim().to_string()), Some(Secret::new(p)))
        }
        (Some((at, _)), Some(_)) => {
            c.at(at, format!("{field}.username"), "must not be empty");
            (None, None)
        }
        // Given but unusable: already reported.
        (Some(_), None) if given => (None, None),
        (Some(_), None) => {
            c.beside(
                &format!("{field}.username"),
                format!("{field}.password"),
                format!(
                    "`username` needs a `password` (write `password: ${{{}_PASSWORD}}` to take \
                     it from the environment)",
                    protocol.name()
                ),
            );
            (None, None)
        }
        (None, Some(_)) => {
            c.beside(
                &format!("{field}.password"),
                format!("{field}.username"),
                "`password` needs a `username`",
            );
            (None, None)
        }
        (None, None) => (None, None),
    };
    if security == SmtpSecurity::None
        && username.is_some()
        && !host.is_empty()
        && !email::is_loopback(&host)
    {
        let at_field = format!("{field}.security");
        let msg = format!(
            "`security: none` would send the password to `{host}` unencrypted; use \
                        `starttls` or `tls` (plain {} with a password is allowed only to a loopback \
                        host)",
            protocol.name()
        );
        match security_given {
            Some(s) => c.at(s, at_field, msg),
            None => c.at(at, at_field, msg),
        }
    }

    let ca_file = match ca_file {
        None => None,
        Some(f) => {
            let p = resolve(base_dir, &c.env_req(f, &format!("{field}.ca_file")));
            if security == SmtpSecurity::None {
                c.at(
                    f,
                    format!("{field}.ca_file"),
                    "`ca_file` needs `security: starttls` or `tls`",
                );
            } else if let Err(e) = crate::tls::read_ca_file(&p) {
                c.at(f, format!("{field}.ca_file"), e);
            }
            Some(p)
        }
    };

    let timeout = c.duration(timeout, &format!("{field}.timeout"), email::DEFAULT_TIMEOUT);

    MailServer {
        host,
        port,
        security,
        username,
        password,
        ca_file,
        timeout,
    }
}
