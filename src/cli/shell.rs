//! Help in the shell and the editor: JSON Schemas of the files (`ferry schema`), and,
//! generated from the command-line definition itself: `ferry
//! completions SHELL` (bash, zsh, fish, elvish, powershell) and `ferry man` (roff man
//! pages: one on stdout for `man -l -`, or all of them into a folder).

use clap::CommandFactory;

use super::{Cli, EXIT_FAILED, EXIT_OK};

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// Prints the completion script of `args.shell` on stdout.
pub fn completions(args: &CompletionsArgs) -> i32 {
    let mut cmd = Cli::command();
    // Into memory first: the generator panics on a write error (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "ferry", &mut script);
    print_out(&script, "the completion script")
}

/// Writes `bytes` to stdout; a write error (a closed pipe) is reported, not a panic.
fn print_out(bytes: &[u8], what: &str) -> i32 {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: cannot write {what}: {e}");
            EXIT_FAILED
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write every page into DIR instead (ferry.1, and ferry-init.1, ferry-run.1 and so on for
    /// the commands), e.g. for /usr/local/share/man/man1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,
}

/// Which file `ferry schema` describes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SchemaFile {
    /// config.yaml
    Config,
    /// a task file (tasks/*.yaml)
    Task,
}

#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    /// The file to describe.
    #[arg(value_enum, value_name = "FILE")]
    pub file: SchemaFile,
}

/// Prints the JSON Schema of config.yaml or of a task file.
pub fn schema(args: &SchemaArgs) -> i32 {
    use crate::config::schema::{SchemaKind, schema_text};
    let kind = match args.file {
        SchemaFile::Config => SchemaKind::Config,
        SchemaFile::Task => SchemaKind::Task,
    };
    print_out(schema_text(kind).as_bytes(), "the schema")
}

/// Prints ferry's man page (section 1, roff) on stdout, or writes every page into a folder.
pub fn man(args: &ManArgs) -> i32 {
    if let Some(dir) = &args.dir {
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(Cli::command(), dir));
        return match written {
            Ok(()) => EXIT_OK,
            Err(e) => {
                eprintln!(
                    "error: cannot write the man pages into {}: {e}",
                    dir.display()
                );
                EXIT_FAILED
            }
        };
    }
    let mut page = Vec::new();
    match clap_mangen::Man::new(Cli::command()).render(&mut page) {
        Ok(()) => print_out(&page, "the man page"),
        Err(e) => {
            eprintln!("error: cannot make the man page: {e}");
            EXIT_FAILED
        }
    }
}
