//! `ferry audit`: the audit trail (who changed what, who started which run, logins),
//! newest first, filtered (`--actor`, `--action`, `--target`, `--since`); `--json` for
//! one JSON array.

use clap::Args;

use super::{Cli, EXIT_CONFIG, EXIT_FAILED, EXIT_OK, load_with_store, print_error};
use crate::store::{AuditFilter, fmt_instant};

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this actor: `user:NAME`, `token:NAME` or `LOGIN@NODE`.
    #[arg(long)]
    pub actor: Option<String>,
    /// Only this action, e.g. `task.replace`, `run.start`, `login.failed`.
    #[arg(long)]
    pub action: Option<String>,
    /// Only what was done to this task, run id, user or token.
    #[arg(long)]
    pub target: Option<String>,
    /// Only from this instant on (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub since: Option<String>,
    /// At most this many lines.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Print one JSON array on stdout.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(cli: &Cli, args: &AuditArgs) -> i32 {
    let since = match args
        .since
        .as_deref()
        .map(chrono::DateTime::parse_from_rfc3339)
    {
        Some(Err(e)) => {
            eprintln!("error: --since is not an RFC 3339 instant ({e})");
            return EXIT_CONFIG;
        }
        Some(Ok(t)) => Some(t.with_timezone(&chrono::Utc)),
        None => None,
    };
    let (_, store) = match load_with_store(cli).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    let filter = AuditFilter {
        actor: args.actor.clone(),
        action: args.action.clone(),
        target: args.target.clone(),
        since,
        until: None,
        before: None,
        limit: args.limit.max(1),
    };
    let found = store.audit(&filter).await;
    store.close().await;
    let lines = match found {
        Ok(l) => l,
        Err(e) => {
            print_error(&e);
            return EXIT_FAILED;
        }
    };
    if args.json {
        println!("{}", serde_json::to_string(&lines).unwrap_or_default());
        return EXIT_OK;
    }
    let mut rows = vec![[
        "AT".to_string(),
        "ACTOR".into(),
        "ACTION".into(),
        "TARGET".into(),
        "FROM".into(),
        "DETAIL".into(),
    ]];
    rows.extend(lines.iter().map(|a| {
        [
            fmt_instant(a.at),
            a.actor.clone(),
            a.action.clone(),
            a.target.clone(),
            a.client.clone().unwrap_or_else(|| "-".into()),
            a.detail.clone().unwrap_or_default(),
        ]
    }));
    super::tasks::print_table(&rows);
    EXIT_OK
}
