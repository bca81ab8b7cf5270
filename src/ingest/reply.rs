//! The words of a rejection reply: one short message per reason code, in English or
//! Chinese (`ingest.reply.language`), saying what was wrong and what to do. It never
//! quotes internals (servers, accounts, paths, driver errors): only what the sender wrote
//! (database name, file name, their SQL as the gate read it) and the limits that apply
//! to them. Mail that failed authentication, and machine mail, gets no reply at all
//! ([`super::Verdict`] says which).

use crate::config::{IngestSpec, ReplyLanguage};

use super::Reason;

/// A reply's subject and plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyText {
    pub subject: String,
    pub body: String,
}

/// The reply to a rejected request. `subject` is the request's subject, `sender` its
/// (allowed or not) From address, `database` the name its keyword line gave (if any),
/// `detail` the verdict's detail.
pub fn rejection(
    reason: Reason,
    detail: &str,
    subject: &str,
    sender: &str,
    database: Option<&str>,
    spec: &IngestSpec,
) -> ReplyText {
    let zh = spec.reply.language == ReplyLanguage::Zh;
    let databases: &[String] = spec.sender(sender).map_or(&[], |s| &s.databases);
    let allowed = databases.join(", ");
    let example = databases.first().map_or("NAME", String::as_str);
    let quota = spec.sender(sender).map_or(0, |s| s.daily_quota);
    let what = |en: &str, cn: &str| if zh { cn.to_string() } else { en.to_string() };
    // The SQL reasons quote the gate's own words about the sender's file.
    let about_file = detail
        .replacen(": refused: ", ": ", 1)
        .trim_start_matches("refused: ")
        .to_string();
    let body = match reason {
        Reason::SenderNotAllowed => what(
            "This address may not send query requests to ferry. Ask the team that runs ferry to add you to its list of senders.",
            "此邮箱地址无权向 ferry 发送查询请求。如需开通，请联系 ferry 的管理员把你加入发件人名单。",
        ),
        Reason::DatabaseNotPermitted => {
            if zh {
                format!("你无权查询这个数据库。你可以查询的数据库：{allowed}。")
            } else {
                format!("You may not query this database. The databases you may query: {allowed}.")
            }
        }
        Reason::UnknownDatabase => {
            let name = database.unwrap_or_default();
            if zh {
                format!(
                    "没有名为“{name}”的数据库。你可以查询的数据库：{allowed}。请在邮件正文中写一行 database: 名称。"
                )
            } else {
                format!(
                    "There is no database called `{name}`. The databases you may query: {allowed}. Write one line `database: NAME` in the text of your mail."
                )
            }
        }
        Reason::NoKeyword => {
            if zh {
                format!(
                    "邮件正文中没有找到 database: 名称 这一行，因此不知道要查询哪个数据库。请在正文中写一行，例如：\n\n    database: {}\n",
                    example
                )
            } else {
                format!(
                    "The text of your mail has no line `database: NAME`, so ferry does not know which database to query. Add one, for example:\n\n    database: {}\n",
                    example
                )
            }
        }
        Reason::AmbiguousKeyword => {
            let names = detail.rsplit(": ").next().unwrap_or_default();
            if zh {
                format!(
                    "邮件中写了多个不同的数据库（{names}）。一次请求只能查询一个数据库，请只保留一行 database: 名称。"
                )
            } else {
                format!(
                    "Your mail names more than one database ({names}). A request queries one database: keep one line `database: NAME`."
                )
            }
        }
        Reason::NoAttachment => what(
            "Your mail has no query attached. Attach each query as a file whose name ends in .sql (or .txt).",
            "邮件中没有附带查询。请把每个查询作为附件发送，文件名以 .sql（或 .txt）结尾。",
        ),
        Reason::TooLarge => {
            let mb = spec.max_mail_bytes as f64 / 1e6;
            if zh {
                format!(
                    "邮件太大，ferry 只读取不超过 {mb:.1} MB 的请求。请只附带查询文件（不要附带其他大文件），然后重新发送。"
                )
            } else {
                format!(
                    "Your mail is too large: ferry reads requests of up to {mb:.1} MB. Attach only the query files and send it again."
                )
            }
        }
        Reason::NotReadOnly => {
            if zh {
                format!(
                    "查询未执行：邮件请求只能是只读的 SELECT 查询，且只能使用允许的函数。\n\n{about_file}\n"
                )
            } else {
                format!(
                    "The query was not run: a mailed request may only be a read-only SELECT using the allowed functions.\n\n{about_file}\n"
                )
            }
        }
        Reason::MultipleStatements => {
            if zh {
                format!(
                    "每个附件只能包含一条查询语句，请把多条语句拆成多个 .sql 附件。\n\n{about_file}\n"
                )
            } else {
                format!(
                    "Each attached file must hold exactly one query: put each statement in a .sql file of its own.\n\n{about_file}\n"
                )
            }
        }
        Reason::NoStatement => {
            if zh {
                format!("附件中没有查询语句（只有注释或空白）。\n\n{about_file}\n")
            } else {
                format!(
                    "An attached file holds no query (only comments or blanks).\n\n{about_file}\n"
                )
            }
        }
        Reason::Unparsable => {
            if zh {
                format!(
                    "无法读取附件中的查询。请检查 SQL 语法，并以 UTF-8 编码保存文件。\n\n{about_file}\n"
                )
            } else {
                format!(
                    "ferry could not read the query in an attached file. Check the SQL, and save the file as UTF-8 text.\n\n{about_file}\n"
                )
            }
        }
        Reason::QuotaExceeded => {
            if zh {
                format!("你今天的请求次数已用完（每天 {quota} 次），请明天再发送。")
            } else {
                format!("You have used today's requests ({quota} a day). Send it again tomorrow.")
            }
        }
        // Never answered; the text exists so that a caller cannot get an empty reply.
        Reason::AuthFailed | Reason::TokenInvalid | Reason::AutoGenerated => {
            what("This request was not accepted.", "此请求未被接受。")
        }
    };
    let closing = what(
        "\n\n-- \nferry (an automatic reply; reason code: ",
        "\n\n-- \nferry（自动回复；原因代码：",
    );
    let end = if zh { "）" } else { ")" };
    ReplyText {
        subject: reply_subject(subject, zh),
        body: format!("{body}{closing}{}{end}\n", reason.code()),
    }
}

/// `Re: <subject>` (once), or a stock subject when the request had none.
pub fn reply_subject(subject: &str, zh: bool) -> String {
    let s = subject.trim();
    if s.is_empty() {
        return if zh {
            "回复：你的查询请求"
        } else {
            "Re: your query request"
        }
        .into();
    }
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("re:") || s.starts_with("回复：") || s.starts_with("答复：") {
        s.to_string()
    } else {
        format!("Re: {s}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        ImapSpec, IngestDefaults, IngestFolders, ReplySpec, Secret, SenderSpec, SmtpSecurity,
    };

    fn spec(lang: ReplyLanguage) -> IngestSpec {
        IngestSpec {
            imap: ImapSpec {
                host: "imap.corp.example".into(),
                port: 993,
                security: SmtpSecurity::Tls,
                username: "ferry@corp.example".into(),
                password: Secret::new("pw"),
                ca_file: None,
                timeout: std::time::Duration::from_secs(60),
            },
            folders: IngestFolders {
                requests: "INBOX".into(),
                processed: "Processed".into(),
                rejected: "Rejected".into(),
                ignored: "Ignored".into(),
            },
            idle: true,
            poll_every: std::time::Duration::from_secs(60),
            authserv_id: Some("mx.corp.example".into()),
            trust_unauthenticated: false,
            senders: vec![SenderSpec {
                address: "alice@corp.example".into(),
                databases: vec!["sales".into(), "warehouse".into()],
                daily_quota: 20,
                token: None,
            }],
            reply: ReplySpec {
                channel: "mail".into(),
                language: lang,
                daily_cap: 40,
            },
            defaults: IngestDefaults {
                format: crate::config::Format::Xlsx,
                timeout: std::time::Duration::from_secs(600),
                max_cost: None,
                file_name: "{{ attachment }}".into(),
            },
            max_mail_bytes: 10_000_000,
            quiet_hours: Vec::new(),
            owners: vec![],
            digest_at: chrono::NaiveTime::MIN,
        }
    }

    #[test]
    fn every_reason_has_words_in_both_languages() {
        for lang in [ReplyLanguage::En, ReplyLanguage::Zh] {
            let s = spec(lang);
            for r in Reason::ALL {
                let t = rejection(r, "detail", "numbers", "alice@corp.example", None, &s);
                assert!(t.body.len() > 40, "{r:?} {lang:?}: {t:?}");
                assert!(t.body.contains(r.code()), "{r:?}: {t:?}");
                assert_eq!(t.subject, "Re: numbers");
            }
        }
    }

    #[test]
    fn replies_name_what_the_sender_may_do_and_nothing_internal() {
        let s = spec(ReplyLanguage::En);
        let t = rejection(
            Reason::UnknownDatabase,
            "no database is called `salse`",
            "Re: numbers",
            "alice@corp.example",
            Some("salse"),
            &s,
        );
        assert!(t.body.contains("called `salse`"), "{}", t.body);
        assert!(t.body.contains("sales, warehouse"), "{}", t.body);
        assert!(!t.body.contains("imap.corp.example"), "{}", t.body);
        assert_eq!(t.subject, "Re: numbers");
        let t = rejection(
            Reason::NotReadOnly,
            "orders.sql: refused: only a read-only query … found DELETE",
            "",
            "alice@corp.example",
            None,
            &s,
        );
        assert!(
            t.body.contains("orders.sql: only a read-only query"),
            "{}",
            t.body
        );
        assert_eq!(t.subject, "Re: your query request");
        let zh = rejection(
            Reason::NoKeyword,
            "",
            "查询",
            "alice@corp.example",
            None,
            &spec(ReplyLanguage::Zh),
        );
        assert!(zh.body.contains("database: sales"), "{}", zh.body);
        assert!(zh.body.contains("原因代码：no_keyword"), "{}", zh.body);
    }
}
