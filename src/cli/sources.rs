//! `ferry sources`: the datasources, where they point and how many tasks use them;
//! `ferry sources test [NAME]`: connect to each, report its version, and warn when
//! ferry's account could write.

use clap::{Args, Subcommand};

use super::print_plugins;
use super::{Cli, EXIT_FAILED, EXIT_OK, load_project, unknown_name};
use crate::config::{DatasourceSpec, Project};
use crate::source;

#[derive(Debug, Args)]
pub struct SourcesArgs {
    #[command(subcommand)]
    pub command: Option<SourcesCommand>,
}

#[derive(Debug, Subcommand)]
pub enum SourcesCommand {
    /// Connect to each datasource (or only NAME) within its connect timeout, print its
    /// version, and warn when the account can write. Exit 1 if any cannot connect.
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

/// The redacted URL of a server, or the path of a SQLite file.
fn location(spec: &DatasourceSpec) -> String {
    match spec {
        DatasourceSpec::Sqlite { path, .. } => path.display().to_string(),
        DatasourceSpec::Postgres { shown_url, .. }
        | DatasourceSpec::Mysql { shown_url, .. }
        | DatasourceSpec::Oracle { shown_url, .. } => shown_url.clone(),
    }
}

fn list(project: &Project) -> i32 {
    print_plugins(project.config.datasources.iter().map(|(name, spec)| {
        let tasks = project.tasks.values().filter(|t| &t.source == name).count();
        [
            name.clone(),
            spec.kind().to_string(),
            location(spec),
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
                let encryption = info
                    .encryption
                    .map(|e| format!(", {e}"))
                    .unwrap_or_default();
                println!(
                    "ok   {name} ({kind}): {}, connected in {} ms{encryption}",
                    info.version,
                    info.connect_time.as_millis()
                );
                if let Some(w) = info.write_warning {
                    println!("warning: {name}: {w}");
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
