//! `ferry link <run-id>`: prints fresh signed download links for the files of a run.
//!
//! Each file keeps one opaque link id (made on first use); every call signs it again with
//! a new expiry, so older links keep working until their own expiry. `--json` adds the
//! recent requests of each link (time, client, range, status, bytes sent).

use clap::Args;
use serde::Serialize;

use super::{Cli, EXIT_CONFIG, EXIT_FAILED, EXIT_OK, load_project, print_error};
use crate::config::{format_duration, parse_duration};
use crate::links::{self, FileLink, LinkError, MAX_EXPIRY};
use crate::store::{DownloadRecord, Store};
use crate::template::human_bytes;

/// Most recent downloads listed per link with `--json`.
const DOWNLOADS_SHOWN: usize = 100;

#[derive(Debug, Args)]
pub struct LinkArgs {
    /// The run id (from `ferry history --json` or `ferry run --json`).
    pub run: String,
    /// How long the links work, e.g. `24h` (default `links.expiry`; at most `7d`).
    #[arg(long, value_name = "DURATION")]
    pub expiry: Option<String>,
    /// Print one JSON object: the run, and per file its link, expiry and recent downloads.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct LinkView {
    #[serde(flatten)]
    link: FileLink,
    downloads: Vec<DownloadRecord>,
}

pub async fn run(cli: &Cli, args: &LinkArgs) -> i32 {
    let project = match load_project(cli) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let config = &project.config;
    if config.links.is_none() {
        eprintln!("error: {}", LinkError::NotConfigured);
        return EXIT_CONFIG;
    }
    let expiry = match &args.expiry {
        None => None,
        Some(text) => match parse_duration(text) {
            Ok(d) if d > MAX_EXPIRY => {
                eprintln!(
                    "error: --expiry {text} is longer than the cap of {}: a download link lives at most 7 days",
                    format_duration(MAX_EXPIRY)
                );
                return EXIT_CONFIG;
            }
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("error: --expiry: {e}");
                return EXIT_CONFIG;
            }
        },
    };
    let store = match super::open_store(config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let code = print_links(&*store, config, args, expiry).await;
    store.close().await;
    code
}

async fn print_links(
    store: &dyn Store,
    config: &crate::config::Config,
    args: &LinkArgs,
    expiry: Option<std::time::Duration>,
) -> i32 {
    let run = match store.get(&args.run).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            eprintln!(
                "error: unknown run `{}` (`ferry history --json` shows run ids)",
                args.run
            );
            return EXIT_CONFIG;
        }
        Err(e) => {
            print_error(&e);
            return EXIT_FAILED;
        }
    };
    if run.files.is_empty() {
        let why = match &run.error {
            Some(e) => format!("{}: {e}", run.status),
            None => run.status.to_string(),
        };
        eprintln!(
            "error: run {} of task `{}` has no files to link ({why})",
            run.run_id, run.task
        );
        return EXIT_FAILED;
    }
    let now = crate::clock::wall_now();
    let made = links::links_for_run(store, config, &run.run_id, &run.files, expiry, now).await;
    let made = match made {
        Ok(l) => l,
        Err(LinkError::Store(e)) => {
            print_error(&e);
            return EXIT_FAILED;
        }
        Err(e) => {
            eprintln!("error: run {} of task `{}`: {e}", run.run_id, run.task);
            return EXIT_FAILED;
        }
    };
    if args.json {
        let mut views = Vec::with_capacity(made.len());
        for link in made {
            let downloads = match store.downloads(&link.link_id, DOWNLOADS_SHOWN).await {
                Ok(d) => d,
                Err(e) => {
                    print_error(&e);
                    return EXIT_FAILED;
                }
            };
            views.push(LinkView { link, downloads });
        }
        let out = serde_json::json!({
            "run_id": run.run_id,
            "task": run.task,
            "links": views,
        });
        println!("{out}");
        return EXIT_OK;
    }
    for l in &made {
        let local = l.expires_at.with_timezone(&config.timezone);
        println!(
            "{} ({}), expires {}:\n{}",
            l.name,
            human_bytes(l.bytes),
            local.format("%Y-%m-%d %H:%M:%S %:z"),
            l.url
        );
    }
    EXIT_OK
}
