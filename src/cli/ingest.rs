//! `ferry ingest check FILE.eml [--json]`: the verdict the poller would give a raw
//! message (accept, reject with its reason code, or ignore), from the same code, without
//! running or sending anything. `ferry ingest once`: one poll, as `ferry serve` makes
//! them. `ferry ingest test`: the account, its folders and the reply channel.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::{Cli, EXIT_CONFIG, EXIT_FAILED, EXIT_OK, load_project};
use crate::config::{ChannelKind, Config, Format, IngestSpec};
use crate::exec::Stop;
use crate::ingest::imap::Imap;
use crate::ingest::poll::Poller;
use crate::ingest::{Classified, Verdict, classify};

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(subcommand)]
    pub command: IngestCommand,
}

#[derive(Debug, Subcommand)]
pub enum IngestCommand {
    /// Show the verdict on a raw message (an .eml file): accept, reject with a reason
    /// code, or ignore. Runs and sends nothing. Exit 0 for accept, 1 otherwise.
    Check {
        /// The message, as received (RFC 5322, e.g. saved from a mail client as .eml).
        file: PathBuf,
        /// Print the verdict as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// One poll of the request folder, as `ferry serve` does it: every mail there is
    /// judged, recorded, run or answered, and moved. For cron use and debugging; safe
    /// beside a running `ferry serve` (each mail is claimed once in the store). Exit 1 if
    /// the poll failed.
    Once {
        /// Print what was done as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Connect to the IMAP account and log in, show the folders with their message
    /// counts and what the server offers (MOVE, UIDPLUS, IDLE), and name the reply
    /// channel. Changes nothing. Exit 1 if the account cannot be reached.
    Test,
}

pub async fn run(cli: &Cli, args: &IngestArgs) -> i32 {
    let project = match load_project(cli) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let Some(spec) = project.config.ingest.as_ref() else {
        eprintln!(
            "error: {} has no `ingest:` section (see docs/ingest.md)",
            cli.config.display()
        );
        return EXIT_CONFIG;
    };
    match &args.command {
        IngestCommand::Test => test(spec, &project.config).await,
        IngestCommand::Once { json } => once(&project.config, *json).await,
        IngestCommand::Check { file, json } => {
            let (raw, size) = match read_message(file, spec.max_mail_bytes) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {}: {e}", file.display());
                    return EXIT_FAILED;
                }
            };
            let c = classify(&raw, size, spec, &project.config);
            let reply = reply_text(&c, spec);
            if *json {
                let mut v = serde_json::to_value(&c).unwrap_or_default();
                if let (Some(r), Some(obj)) = (&reply, v.as_object_mut()) {
                    obj.insert("reply_subject".into(), r.subject.clone().into());
                    obj.insert("reply_body".into(), r.body.clone().into());
                }
                match serde_json::to_string_pretty(&v) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return EXIT_FAILED;
                    }
                }
            } else {
                print_verdict(&c, spec.defaults.format);
                if let Some(r) = reply {
                    println!(
                        "\nThe reply would say:\n\nSubject: {}\n\n{}",
                        r.subject, r.body
                    );
                }
            }
            match c.verdict {
                Verdict::Accept(_) => EXIT_OK,
                _ => EXIT_FAILED,
            }
        }
    }
}

/// The message as the poller would have it: whole when within `max_bytes`, else only its
/// header section (the poller never downloads the body of oversize mail). Only a regular
/// file is read.
fn read_message(path: &Path, max_bytes: u64) -> Result<(Vec<u8>, u64), String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let size = meta.len();
    // Never blocks, even if the name became a FIFO since the check.
    let file = crate::fsread::open_nonblocking(path).map_err(|e| e.to_string())?;
    if !file.metadata().map_err(|e| e.to_string())?.is_file() {
        return Err("not a regular file".into());
    }
    let limit = if size > max_bytes { 1 << 20 } else { max_bytes };
    let mut raw = Vec::new();
    file.take(limit)
        .read_to_end(&mut raw)
        .map_err(|e| e.to_string())?;
    if size > max_bytes {
        let end = find(&raw, b"\r\n\r\n")
            .map(|i| i + 4)
            .or_else(|| find(&raw, b"\n\n").map(|i| i + 2))
            .unwrap_or(raw.len());
        raw.truncate(end);
    }
    Ok((raw, size))
}

/// The words of the reply a rejection gets, when it gets one.
fn reply_text(c: &Classified, spec: &IngestSpec) -> Option<crate::ingest::reply::ReplyText> {
    match &c.verdict {
        Verdict::Reject {
            reason,
            detail,
            reply: true,
        } => Some(crate::ingest::reply::rejection(
            *reason,
            detail,
            &c.subject,
            c.sender.as_deref().unwrap_or(""),
            c.database.as_deref(),
            spec,
        )),
        _ => None,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn print_verdict(c: &Classified, format: Format) {
    println!("verdict:  {}", c.verdict.name());
    match &c.verdict {
        Verdict::Accept(r) => {
            println!("database: {}", r.database);
            for q in &r.queries {
                println!(
                    "query:    {} -> {}.{}",
                    q.file_name,
                    q.stem,
                    format.extension()
                );
            }
            println!(
                "quota:    not checked here (ferry serve counts each sender's requests per day)"
            );
        }
        Verdict::Reject {
            reason,
            detail,
            reply,
        } => {
            println!("reason:   {reason}");
            println!("detail:   {detail}");
            println!(
                "reply:    {}",
                if *reply {
                    "yes: the sender is told why"
                } else {
                    "none: the sender is not answered (the From address may be forged)"
                }
            );
        }
        Verdict::Ignore { reason, detail } => {
            println!("reason:   {reason}");
            println!("detail:   {detail}");
            println!("reply:    none: machine mail is never answered");
        }
    }
    println!("sender:   {}", c.sender.as_deref().unwrap_or("(none)"));
    println!("subject:  {}", c.subject);
    if let Some(id) = &c.message_id {
        println!("message:  <{id}>");
    }
}

async fn once(config: &Config, json: bool) -> i32 {
    let config = std::sync::Arc::new(config.clone());
    let (store, one_off) = match super::OneOff::open(&config).await {
        Ok(o) => o,
        Err(code) => return code,
    };
    let poller = Poller::new(
        config,
        store.clone(),
        std::sync::Arc::new(crate::clock::SystemClock),
    );
    let stop = Stop::on_ctrl_c();
    let mut result = poller
        .poll_once(&stop, &tokio_util::sync::CancellationToken::new())
        .await;
    if result.is_ok()
        && let Err(e) = poller.digest(None).await
    {
        result = Err(e);
    }
    one_off.end(&store).await;
    store.close().await;
    let pass = match result {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
    if json {
        let handled: Vec<serde_json::Value> = pass
            .handled
            .iter()
            .map(|h| {
                serde_json::json!({
                    "uid": h.uid,
                    "verdict": h.verdict,
                    "reason": h.reason,
                    "run_id": h.run_id,
                    "folder": h.folder,
                    "known": h.known,
                })
            })
            .collect();
        let v = serde_json::json!({
            "seen": pass.seen,
            "waiting": pass.waiting,
            "handled": handled,
        });
        println!("{v}");
    } else {
        println!(
            "{} mail in the request folder; {} handled, {} waiting for the quiet hours",
            pass.seen,
            pass.handled.len(),
            pass.waiting
        );
        for h in &pass.handled {
            println!(
                "  uid {:>6}  {:<7} {:<22} -> {}{}{}",
                h.uid,
                h.verdict,
                h.reason.as_deref().unwrap_or(""),
                h.folder,
                h.run_id
                    .as_deref()
                    .map(|r| format!("  run {r}"))
                    .unwrap_or_default(),
                if h.known { "  (recorded before)" } else { "" }
            );
        }
    }
    EXIT_OK
}

async fn test(spec: &IngestSpec, config: &Config) -> i32 {
    let server = format!(
        "{}:{} ({})",
        spec.imap.host,
        spec.imap.port,
        spec.imap.security.as_str()
    );
    let mut imap = match Imap::connect(&spec.imap).await {
        Ok(i) => i,
        Err(e) => {
            println!("FAIL imap: {e}");
            return EXIT_FAILED;
        }
    };
    let yes = |b: bool| if b { "yes" } else { "no" };
    println!(
        "ok   imap: {server}: logged in as {}; MOVE {}, UIDPLUS {}, IDLE {}",
        spec.imap.username,
        yes(imap.can_move),
        yes(imap.uidplus),
        yes(imap.idle)
    );
    if !imap.can_move && !imap.uidplus {
        println!(
            "warning: the server offers neither MOVE nor UIDPLUS: handled mail is copied and \
             left flagged \\Deleted in the request folder until the server expunges it"
        );
    }
    let f = &spec.folders;
    let roles = [
        (f.requests.as_str(), "requests"),
        (f.processed.as_str(), "processed"),
        (f.rejected.as_str(), "rejected"),
        (f.ignored.as_str(), "ignored"),
    ];
    let names: Vec<&str> = roles.iter().map(|(n, _)| *n).collect();
    let code = match imap.counts(&names).await {
        Ok(counts) => {
            let mut code = EXIT_OK;
            for (name, role) in roles {
                match counts.get(name).copied().flatten() {
                    Some(n) => println!("     {role:<10} {name}: {n} message(s)"),
                    None if role == "requests" => {
                        println!("FAIL {role:<10} {name}: no such folder");
                        code = EXIT_FAILED;
                    }
                    None => println!("     {role:<10} {name}: missing (created at the first poll)"),
                }
            }
            code
        }
        Err(e) => {
            println!("FAIL imap: {e}");
            EXIT_FAILED
        }
    };
    imap.logout().await;
    match config.channels.get(&spec.reply.channel).map(|c| &c.kind) {
        Some(ChannelKind::Email(e)) => println!(
            "     replies through `{}`: from {} via {}:{} (try it: ferry channels test {} --to YOU@EXAMPLE.COM)",
            spec.reply.channel, e.from, e.host, e.port, spec.reply.channel
        ),
        _ => println!("     replies through `{}`", spec.reply.channel),
    }
    code
}
