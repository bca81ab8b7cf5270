//! The command line: one file per subcommand, this file holds the argument types, the
//! dispatch and the exit codes.
//!
//! Exit codes: 0 success; 1 a failed run or an environment error (store, disk);
//! 2 a configuration or usage error; 3 (`ferry run`) the export succeeded but a
//! notification failed for good or is still pending after the run's attempts. Errors are printed as one clear paragraph on stderr,
//! never as a panic or a backtrace.

mod audit;
mod channels;
mod cleanup;
mod dry_run;
mod history;
mod ingest;
mod init;
mod link;
mod next;
mod run;
mod secrets;
mod serve;
mod shell;
mod sources;
mod status;
mod tasks;
mod users;
mod validate;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Problem, Project, TaskSpec, problem::hint};

/// Exit code for success.
pub const EXIT_OK: i32 = 0;
/// Exit code for a failed run or an environment error.
pub const EXIT_FAILED: i32 = 1;
/// Exit code for configuration and usage errors.
pub const EXIT_CONFIG: i32 = 2;
/// Exit code of `ferry run` when the files were exported but a notification was not
/// delivered (failed for good, or still pending after the run's attempts).
pub const EXIT_UNDELIVERED: i32 = 3;

pub use crate::VERSION;

/// ferry: scheduled exports from SQL databases to CSV and XLSX files.
#[derive(Debug, Parser)]
#[command(name = "ferry", version = VERSION, about, long_about = None)]
pub struct Cli {
    /// The configuration file; relative paths inside it resolve against its folder.
    #[arg(
        long,
        global = true,
        default_value = "config.yaml",
        value_name = "PATH"
    )]
    pub config: PathBuf,

    /// Log progress to stderr (-v info, -vv debug). `FERRY_LOG` sets filters directly.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a starter project into DIR (default: here) that runs at once on an example
    /// SQLite database, with commented examples for PostgreSQL, MySQL, email and DingTalk.
    Init(init::InitArgs),
    /// Check config.yaml and every task file; print one line per problem.
    Validate,
    /// Run a task now (`--dry-run`: check it and print what it would do, writing nothing).
    Run(run::RunArgs),
    /// Print the next fire times of a task (UTC, then the task's zone).
    Next(next::NextArgs),
    /// List the tasks with their schedule and next fire time (or who paused them);
    /// `tasks pause NAME [--reason TEXT]` and `tasks resume NAME`.
    Tasks(tasks::TasksArgs),
    /// Show the live ferry processes, the runs in progress and the paused tasks.
    Status,
    /// Apply `retention:` now: remove old result files and runs, print what goes and the
    /// space freed (`--dry-run` removes nothing; `--days N` removes files older than N days).
    Cleanup(cleanup::CleanupArgs),
    /// List the datasources (type, where, tasks using them); `sources test [NAME]` checks
    /// that each connects and warns when its account can write.
    Sources(sources::SourcesArgs),
    /// List the notification channels (type, where they deliver, tasks using them);
    /// `channels test NAME` sends a test message.
    Channels(channels::ChannelsArgs),
    /// Show recent runs.
    History(history::HistoryArgs),
    /// Console users of the HTTP API: `users add NAME --role R` (password asked, or read
    /// from standard input), `users passwd NAME`, `users remove NAME`, `users list`.
    Users(users::UsersArgs),
    /// API tokens: `tokens create NAME --role R [--expires 90d]` (printed once),
    /// `tokens list`, `tokens revoke NAME`.
    Tokens(users::TokensArgs),
    /// The audit trail: who changed what and started which run, newest first.
    Audit(audit::AuditArgs),
    /// Print fresh signed download links for the files of a run (needs `links:`).
    Link(link::LinkArgs),
    /// Query by email: `ingest check FILE.eml` shows the verdict on a raw message;
    /// `ingest test` checks the IMAP account.
    Ingest(ingest::IngestArgs),
    /// Run the scheduler: every task on time, until SIGTERM or SIGINT.
    Serve,
    /// Print the shell completion script for SHELL, e.g. `source <(ferry completions
    /// bash)`, or `ferry completions fish > ~/.config/fish/completions/ferry.fish`.
    Completions(shell::CompletionsArgs),
    /// Print the JSON Schema of config.yaml or of a task file, for editors (the YAML
    /// language server: `# yaml-language-server: $schema=PATH` at the top of a file).
    Schema(shell::SchemaArgs),
    /// Print ferry's man page (roff), e.g. `ferry man | man -l -`; `--dir DIR` writes a
    /// page for every command.
    Man(shell::ManArgs),
    /// Sealed secrets: `secrets keygen --out FILE`, `secrets encrypt` (secret on standard
    /// input, `enc:v1:` value out), `secrets rotate --new-key-file FILE`.
    Secrets(secrets::SecretsArgs),
}

/// Sets up logging. Commands report their own results, so their logs are off unless asked
/// for with `-v` or `FERRY_LOG` and go to stderr; `serve` logs at info by default, as
/// config.yaml's `logging:` says (level, filters, format, a rotated file), read here
/// before the command runs. Returns false when the log file cannot be opened (said on
/// stderr).
pub fn init_logging(cli: &Cli) -> bool {
    let daemon = matches!(cli.command, Command::Serve);
    let spec = if daemon {
        // A config that does not load is reported by `serve` itself; the log then goes to
        // stderr.
        crate::config::Project::load(&cli.config)
            .map(|p| p.config.logging)
            .unwrap_or_default()
    } else {
        crate::config::LoggingSpec::default()
    };
    let filter = match cli.verbose {
        0 if daemon => spec.filter.clone(),
        // A one-off command is quiet, except that it says when it waits for a store
        // another process has locked.
        0 => "ferry::store=warn".into(),
        1 => "info".into(),
        _ => "debug".into(),
    };
    let ok = match crate::logging::init(
        &filter,
        &spec,
        std::sync::Arc::new(crate::clock::SystemClock),
    ) {
        Ok(()) => true,
        Err(e) => {
            let path = spec.file.as_ref().map(|f| f.path.display().to_string());
            eprintln!(
                "error: cannot open the log file {}: {}",
                path.unwrap_or_default(),
                crate::config::io_message(&e)
            );
            false
        }
    };
    // After the log is set up: panics outside a boundary go to it.
    crate::panics::install();
    ok
}

/// Runs a parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> i32 {
    match &cli.command {
        Command::Init(args) => init::run(args),
        Command::Validate => validate::run(&cli).await,
        Command::Run(args) => run::run(&cli, args).await,
        Command::Next(args) => next::run(&cli, args).await,
        Command::Tasks(args) => tasks::run(&cli, args).await,
        Command::Status => status::run(&cli).await,
        Command::Cleanup(args) => cleanup::run(&cli, args).await,
        Command::Sources(args) => sources::run(&cli, args).await,
        Command::Channels(args) => channels::run(&cli, args).await,
        Command::History(args) => history::run(&cli, args).await,
        Command::Users(args) => users::users(&cli, args).await,
        Command::Tokens(args) => users::tokens(&cli, args).await,
        Command::Audit(args) => audit::run(&cli, args).await,
        Command::Link(args) => link::run(&cli, args).await,
        Command::Ingest(args) => ingest::run(&cli, args).await,
        Command::Serve => serve::run(&cli).await,
        Command::Completions(args) => shell::completions(args),
        Command::Schema(args) => shell::schema(args),
        Command::Man(args) => shell::man(args),
        Command::Secrets(args) => secrets::run(&cli, args).await,
    }
}

/// Prints problems, one per line, on stderr.
pub fn print_problems(problems: &[Problem]) {
    for p in problems {
        eprintln!("{p}");
    }
}

/// Loads the project or prints why not (exit code 2).
pub fn load_project(cli: &Cli) -> Result<Project, i32> {
    Project::load(&cli.config).map_err(|problems| {
        print_problems(&problems);
        EXIT_CONFIG
    })
}

/// Prints datasources or channels as a `NAME TYPE WHERE TASKS` table; exit code 0.
pub fn print_plugins(items: impl Iterator<Item = [String; 4]>) -> i32 {
    let mut rows = vec![[
        "NAME".to_string(),
        "TYPE".into(),
        "WHERE".into(),
        "TASKS".into(),
    ]];
    rows.extend(items);
    tasks::print_table(&rows);
    EXIT_OK
}

/// Loads the project and opens its run store, or prints why not and returns the exit code.
pub async fn load_with_store(
    cli: &Cli,
) -> Result<(Project, std::sync::Arc<dyn crate::store::Store>), i32> {
    let project = load_project(cli)?;
    let store = open_store(&project.config).await?;
    Ok((project, store))
}

/// Opens the run store of `config` (by its URL), or prints why not and returns exit
/// code 1.
pub async fn open_store(
    config: &crate::config::Config,
) -> Result<std::sync::Arc<dyn crate::store::Store>, i32> {
    crate::store::open(&config.store).await.map_err(|e| {
        print_error(&e);
        EXIT_FAILED
    })
}

/// A one-off command that runs work (`ferry run`, `ferry ingest once`) outside the
/// daemon: it clears what dead processes left (partial files, runs left `running`), and
/// beats like a daemon while it works, so that a `ferry serve` on another node leaves its
/// runs and deliveries alone.
pub struct OneOff {
    instance: crate::store::InstanceRecord,
    beating: tokio_util::sync::CancellationToken,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl OneOff {
    /// Opens `config`'s store and [`OneOff::start`]s on it.
    pub async fn open(
        config: &crate::config::Config,
    ) -> Result<(std::sync::Arc<dyn crate::store::Store>, OneOff), i32> {
        let store = open_store(config).await?;
        let one_off = OneOff::start(config, &store).await?;
        Ok((store, one_off))
    }

    /// Sweeps, reaps and registers; prints why not and returns exit code 1 on failure.
    pub async fn start(
        config: &crate::config::Config,
        store: &std::sync::Arc<dyn crate::store::Store>,
    ) -> Result<OneOff, i32> {
        use crate::clock::{Clock, SystemClock};
        use crate::store::process_alive;
        crate::format::sweep_partials(&config.output_dir, &process_alive);
        crate::format::sweep_temp(&config.export.temp_dir, &process_alive);
        let now = SystemClock.now();
        let fail = |e: &dyn std::error::Error| {
            print_error(e);
            EXIT_FAILED
        };
        crate::store::reap_interrupted(&**store, &config.node_name, &process_alive, now)
            .await
            .map_err(|e| fail(&e))?;
        let instance = crate::store::InstanceRecord::this_process(&config.node_name, now);
        store.register(&instance).await.map_err(|e| fail(&e))?;
        let beating = tokio_util::sync::CancellationToken::new();
        let heartbeat = tokio::spawn(crate::store::instances::heartbeat_loop(
            store.clone(),
            instance.instance_id.clone(),
            std::sync::Arc::new(SystemClock),
            beating.clone(),
        ));
        Ok(OneOff {
            instance,
            beating,
            heartbeat,
        })
    }

    /// Stops beating and records that this process is done.
    pub async fn end(self, store: &std::sync::Arc<dyn crate::store::Store>) {
        use crate::clock::{Clock, SystemClock};
        self.beating.cancel();
        let _ = self.heartbeat.await;
        if let Err(e) = store
            .unregister(&self.instance.instance_id, SystemClock.now())
            .await
        {
            print_error(&e);
        }
    }
}

/// Finds a valid task by name, or prints why not (unknown with close matches, or invalid
/// with its problems) and returns exit code 2.
pub fn find_task<'a>(project: &'a Project, name: &str) -> Result<&'a TaskSpec, i32> {
    if let Some(t) = project.tasks.get(name) {
        return Ok(t);
    }
    if let Some(problems) = project.task_problems.get(name) {
        eprintln!("error: task `{name}` is invalid:");
        print_problems(problems);
        return Err(EXIT_CONFIG);
    }
    let names = project.all_names();
    let listing = if names.is_empty() {
        format!("{} has no task files", project.config.tasks_dir.display())
    } else {
        format!("known tasks: {}", names.join(", "))
    };
    eprintln!(
        "error: unknown task `{name}`{} ({listing})",
        hint(name, names.iter().copied())
    );
    Err(EXIT_CONFIG)
}

/// Who runs this command, for pauses, runs started by hand and the audit trail: the login
/// name (the one behind `sudo` if any) at this node, `root@db1`.
pub fn who(config: &crate::config::Config) -> String {
    let user = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".into());
    format!("{user}@{}", config.node_name)
}

/// Reports a datasource or channel name that config.yaml does not define, with a "did you
/// mean" hint and the known names; returns the exit code for it.
pub fn unknown_name<'a>(what: &str, name: &str, known: impl Iterator<Item = &'a String>) -> i32 {
    let names: Vec<&str> = known.map(String::as_str).collect();
    let listing = if names.is_empty() {
        format!("config.yaml has no {what}s")
    } else {
        format!("known {what}s: {}", names.join(", "))
    };
    eprintln!(
        "error: unknown {what} `{name}`{} ({listing})",
        crate::config::problem::hint(name, names.iter().copied())
    );
    EXIT_CONFIG
}

/// Prints an error paragraph with its causes.
pub fn print_error(e: &dyn std::error::Error) {
    eprintln!("error: {}", crate::source::error_chain(e));
}
