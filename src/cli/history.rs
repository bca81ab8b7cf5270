//! `ferry history`: recent runs, newest first, as a table or JSON, each with what its
//! deliveries came to (`delivered`, `partially_delivered`, `pending`, `failed`).

use clap::Args;

use super::tasks::print_table;
use super::{Cli, EXIT_FAILED, EXIT_OK, print_error};
use crate::config::format_duration;
use crate::store::{DeliverySummary, HistoryFilter};

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only runs of this task.
    #[arg(long)]
    pub task: Option<String>,
    /// How many runs to show.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(cli: &Cli, args: &HistoryArgs) -> i32 {
    let (project, store) = match super::load_with_store(cli).await {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let listed = store
        .list(&HistoryFilter {
            task: args.task.clone(),
            limit: args.limit,
        })
        .await;
    store.close().await;
    let runs = match listed {
        Ok(r) => r,
        Err(e) => {
            print_error(&e);
            return EXIT_FAILED;
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&runs).expect("records serialize")
        );
        return EXIT_OK;
    }
    let mut rows = vec![[
        "SCHEDULED".to_string(),
        "TASK".into(),
        "STATUS".into(),
        "DELIVERY".into(),
        "ROWS".into(),
        "DURATION".into(),
        "RUN ID".into(),
        "DETAIL".into(),
    ]];
    for r in &runs {
        let tz = project
            .tasks
            .get(&r.task)
            .map(|t| t.timezone)
            .unwrap_or(project.config.timezone);
        let detail = match (&r.error, r.files.first(), &r.reason) {
            (Some(e), _, _) => e.clone(),
            (None, Some(f), _) if r.files.len() == 1 => f.path.clone(),
            (None, Some(f), _) => format!("{} (+{} more)", f.path, r.files.len() - 1),
            (None, None, Some(reason)) => reason.clone(),
            (None, None, None) => String::new(),
        };
        let mut detail = if r.warnings.is_empty() {
            detail
        } else {
            format!("{detail} [{} warning(s)]", r.warnings.len())
        };
        for d in &r.deliveries {
            if let Some(missing) = d.recipients_missing() {
                detail.push_str(&format!(" [{}: {missing}]", d.channel));
            }
        }
        for a in &r.alerts {
            detail.push_str(&format!(
                " [owner alert {}: {}]",
                a.channel,
                a.status.as_str()
            ));
        }
        rows.push([
            r.scheduled_at
                .with_timezone(&tz)
                .format("%Y-%m-%d %H:%M:%S %:z")
                .to_string(),
            r.task.clone(),
            r.status.to_string(),
            match r.delivery {
                DeliverySummary::None => "-".to_string(),
                d => d.as_str().to_string(),
            },
            r.rows.to_string(),
            r.duration_ms
                .map(|ms| format_duration(std::time::Duration::from_millis(ms.max(0) as u64)))
                .unwrap_or_else(|| "-".into()),
            r.run_id.clone(),
            detail,
        ]);
    }
    if runs.is_empty() {
        println!("no runs recorded yet");
    } else {
        print_table(&rows);
    }
    EXIT_OK
}
