//! `ferry channels`: the notification channels, where they deliver and how many tasks use
//! them; `ferry channels test NAME`: send a short test message through one channel.

use clap::{Args, Subcommand};

use super::print_plugins;
use super::{Cli, EXIT_CONFIG, EXIT_FAILED, EXIT_OK, load_project, unknown_name};
use crate::config::Project;
use crate::notify::{self, probe::destination};

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
    match notify::probe::send_test(&project.config, name, to).await {
        Ok(receipt) => {
            println!("ok   {name} ({}): {receipt}", spec.kind.kind());
            EXIT_OK
        }
        Err(notify::probe::TestError::Usage(e)) => {
            eprintln!("error: {e}");
            EXIT_CONFIG
        }
        Err(notify::probe::TestError::Failed(e)) => {
            println!("FAIL {name} ({}): {e}", spec.kind.kind());
            EXIT_FAILED
        }
    }
}
