//! `ferry init [DIR]`: writes a starter project that validates and runs at once on an
//! example SQLite database, with commented examples for PostgreSQL, MySQL, email and
//! DingTalk in its config.yaml (see `src/cli/starter/`). It never overwrites a file.

use std::path::{Path, PathBuf};

use super::{EXIT_CONFIG, EXIT_FAILED, EXIT_OK};

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The folder to write the project into (created when missing).
    #[arg(default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
}

/// The starter project: (path in the project, contents). The files point editors at the
/// JSON Schemas beside them (`# yaml-language-server: $schema=…`).
pub fn files() -> Vec<(&'static str, String)> {
    use crate::config::schema::{SchemaKind, schema_text};
    vec![
        ("config.yaml", include_str!("starter/config.yaml").into()),
        (
            "tasks/daily_orders.yaml",
            include_str!("starter/tasks/daily_orders.yaml").into(),
        ),
        (
            "tasks/monthly_summary.yaml",
            include_str!("starter/tasks/monthly_summary.yaml").into(),
        ),
        (
            "data/seed.sql",
            include_str!("starter/data/seed.sql").into(),
        ),
        (
            "schemas/config.schema.json",
            schema_text(SchemaKind::Config),
        ),
        ("schemas/task.schema.json", schema_text(SchemaKind::Task)),
        (".gitignore", include_str!("starter/gitignore").into()),
    ]
}

pub fn run(args: &InitArgs) -> i32 {
    let dir = &args.dir;
    let files = files();
    let taken: Vec<&str> = files
        .iter()
        .map(|(rel, _)| *rel)
        .filter(|rel| dir.join(rel).symlink_metadata().is_ok())
        .collect();
    if !taken.is_empty() {
        eprintln!(
            "error: {} already has {}: ferry init never overwrites a file (choose a new or \
             empty folder, e.g. `ferry init my-exports`, or move {} away)",
            dir.display(),
            taken.join(", "),
            if taken.len() == 1 { "it" } else { "them" }
        );
        return EXIT_CONFIG;
    }
    for (rel, text) in &files {
        if let Err(e) = write_new(&dir.join(rel), text) {
            eprintln!("error: cannot write {}: {e}", dir.join(rel).display());
            return EXIT_FAILED;
        }
    }
    let cd = if dir == Path::new(".") {
        String::new()
    } else {
        format!("  cd {}\n", shell_word(&dir.display().to_string()))
    };
    println!(
        "wrote a ferry project in {}:\n\
         \x20 config.yaml                 settings, datasources and channels (commented examples for\n\
         \x20                             PostgreSQL, MySQL, email and DingTalk)\n\
         \x20 tasks/daily_orders.yaml     yesterday's orders as XLSX, every day at 07:00\n\
         \x20 tasks/monthly_summary.yaml  last month's revenue as CSV, on the 1st\n\
         \x20 data/seed.sql               the example SQLite database, built on first use\n\
         \x20 schemas/                    JSON Schemas that editors check the YAML files with\n\
         \x20 .gitignore                  exports/, outbox/ and the databases\n\
         \n\
         Next:\n\
         {cd}\x20 ferry validate               check every file\n\
         \x20 ferry run daily_orders       export now: the file lands in exports/, the message in outbox/\n\
         \x20 ferry serve                  run every task on time",
        dir.display()
    );
    EXIT_OK
}

/// Writes `text` to `path` (creating its folder), failing if `path` exists.
fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    std::io::Write::write_all(&mut f, text.as_bytes())
}

/// `word` quoted for a POSIX shell when it needs it.
fn shell_word(word: &str) -> String {
    if word
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}
