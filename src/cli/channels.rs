//! `ferry channels`: the notification channels, where they deliver and how many tasks use
//! them; `ferry channels test NAME`: send a short test message through one channel.

use clap::{Args, Subcommand};

use super::print_plugins;
use super::{Cli, EXIT_CONFIG, EXIT_FAILED, EXIT_OK, load_project, unknown_name};
use crate::config::{ChannelKind, ChannelSpec, Project, SmtpSecurity, redact_url};
use crate::notify::{self, Message};

#[derive(Debug, Args)]
pub struct ChannelsArgs {
    #[command(subcommand)]
    pub command: Option<ChannelsCommand>,
}

#[derive(Debug, Subcommand)]
pub enum ChannelsCommand {
    /// Send a test message through channel NAME to its default recipients (or `--to`).
    /// Exit 1 if it cannot be delivered.
    Test {
        /// A channel name from config.yaml.
        name: String,
        /// Recipients instead of the channel's defaults (email addresses, or the mentions
        /// of a chat robot); may be repeated.
        #[arg(long = "to", value_name = "RECIPIENT")]
        to: Vec<String>,
    },
}

pub async fn run(cli: &Cli, args: &ChannelsArgs) -> i32 {
    let project = match load_project(cli) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match &args.command {
        None => list(&project),
        Some(ChannelsCommand::Test { name, to }) => test(&project, name, to).await,
    }
}

/// Where a channel delivers, without any secret: a folder, an SMTP server, a robot's URL
/// redacted.
fn destination(spec: &ChannelSpec) -> String {
    match &spec.kind {
        ChannelKind::Outbox { dir } => dir.display().to_string(),
        ChannelKind::Email(e) => {
            let security = match e.security {
                SmtpSecurity::StartTls => "starttls",
                SmtpSecurity::Tls => "tls",
                SmtpSecurity::None => "plain",
            };
            format!("smtp {}:{} ({security})", e.host, e.port)
        }
        ChannelKind::Robot(r) => {
            let signed = if r.secret.is_some() { ", signed" } else { "" };
            format!("{}{signed}", redact_url(r.webhook.expose()))
        }
    }
}

fn list(project: &Project) -> i32 {
    print_plugins(project.config.channels.iter().map(|(name, spec)| {
        let tasks = project
            .tasks
            .values()
            .filter(|t| t.notify.iter().any(|n| &n.channel == name))
            .count();
        [
            name.clone(),
            spec.kind.kind().to_string(),
            destination(spec),
            tasks.to_string(),
        ]
    }))
}

async fn test(project: &Project, name: &str, to: &[String]) -> i32 {
    let channels = &project.config.channels;
    let Some(spec) = channels.get(name) else {
        return unknown_name("channel", name, channels.keys());
    };
    let recipients = if to.is_empty() {
        spec.recipients.clone()
    } else {
        to.to_vec()
    };
    let (cc, bcc) = if to.is_empty() {
        (spec.cc.clone(), spec.bcc.clone())
    } else {
        (Vec::new(), Vec::new())
    };
    let notifier = match notify::Registry::new(&project.config).get(name) {
        Some(n) => n,
        None => {
            eprintln!("error: channel `{name}` is not defined in config.yaml");
            return EXIT_CONFIG;
        }
    };
    let caps = notifier.capabilities();
    if caps.mailboxes && recipients.is_empty() && cc.is_empty() && bcc.is_empty() {
        eprintln!("error: channel `{name}` has no default recipients; give one with --to ADDRESS");
        return EXIT_CONFIG;
    }
    let now = crate::clock::wall_now().with_timezone(&project.config.timezone);
    let when = now.format("%Y-%m-%d %H:%M:%S %Z");
    let node = &project.config.node_name;
    let message = Message {
        task: "channel-test".into(),
        run_id: format!("test-{}", uuid::Uuid::now_v7()),
        channel: name.to_string(),
        occurrence: 1,
        recipients,
        cc,
        bcc,
        subject: format!("[ferry] test message from channel {name}"),
        body: format!(
            "### ferry test message\n\nChannel `{name}` ({}) works: sent by ferry on `{node}` at {when}.\n",
            spec.kind.kind()
        ),
        html: caps.html.then(|| {
            format!(
                "<p><b>ferry test message</b></p><p>Channel <code>{name}</code> works: sent by ferry on <code>{node}</code> at {when}.</p>"
            )
        }),
        ..Message::default()
    };
    match notifier.notify(&message).await {
        Ok(receipt) => {
            println!("ok   {name} ({}): {receipt}", spec.kind.kind());
            EXIT_OK
        }
        Err(e) => {
            println!("FAIL {name} ({}): {e}", spec.kind.kind());
            EXIT_FAILED
        }
    }
}
