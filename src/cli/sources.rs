//! `ferry sources`: the datasources, where they point and how many tasks use them;
//! `ferry sources test [NAME]`: connect to each, report its version and whether ferry's
//! account is read-only (and if not, every reason; see [`crate::source::access`]).

use clap::{Args, Subcommand};

use super::print_plugins;
use super::{Cli, EXIT_FAILED, EXIT_OK, load_project, unknown_name};
use crate::config::Project;
use crate::source;
use crate::source::access::HOWTO;

#[derive(Debug, Args)]
pub struct SourcesArgs {
    #[command(subcommand)]
    pub command: Option<SourcesCommand>,
}

#[derive(Debug, Subcommand)]
pub enum SourcesCommand {
    /// Connect to each datasource (or only NAME) within its connect timeout, print its
    /// version and whether the account is read-only (and if not, why). Exit 1 if any
    /// cannot connect, or has `require_read_only` and an account that could write.
    Test {
        /// A datasource name from config.yaml; default: every datasource.
        name: Option<String>,
    },
}

pub async fn run(cli: &Cli, args: &SourcesArgs) -> i32 {
    let project = match load_project(cli) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match &args.command {
        None => list(&project),
        Some(SourcesCommand::Test { name }) => test(&project, name.as_deref()).await,
    }
}

fn list(project: &Project) -> i32 {
    print_plugins(project.config.datasources.iter().map(|(name, spec)| {
        let tasks = project.tasks.values().filter(|t| &t.source == name).count();
        [
            name.clone(),
            spec.kind().to_string(),
            spec.location(),
            tasks.to_string(),
        ]
    }))
}

async fn test(project: &Project, only: Option<&str>) -> i32 {
    let datasources = &project.config.datasources;
    if let Some(name) = only
        && !datasources.contains_key(name)
    {
        return unknown_name("datasource", name, datasources.keys());
    }
    let mut code = EXIT_OK;
    for (name, spec) in datasources {
        if only.is_some_and(|n| n != name) {
            continue;
        }
        let kind = spec.kind();
        let result = match source::build(name, spec).await {
            Ok(s) => s.describe().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(info) => {
                let access = &info.access;
                let refused = project.config.requires_read_only(name) && !access.is_read_only();
                let encryption = info
                    .encryption
                    .map(|e| format!(", {e}"))
                    .unwrap_or_default();
                println!(
                    "{} {name} ({kind}): {}, connected in {} ms{encryption}",
                    if refused { "FAIL" } else { "ok  " },
                    info.version,
                    info.connect_time.as_millis()
                );
                if access.is_read_only() {
                    println!("     read-only: {} can only read", access.account);
                }
                for sentence in access.sentences() {
                    println!("     not read-only: {sentence}");
                }
                if refused {
                    println!(
                        "     require_read_only is set: tasks on {name} fail until the account \
                         can only read (see {HOWTO})"
                    );
                    code = EXIT_FAILED;
                } else if !access.is_read_only() {
                    println!("     give ferry an account that can only read (see {HOWTO})");
                }
            }
            Err(e) => {
                println!("FAIL {name} ({kind}): {}", e.message);
                code = EXIT_FAILED;
            }
        }
    }
    code
}
