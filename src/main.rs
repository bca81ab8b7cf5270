//! The `ferry` binary: parse the command line, set up logging, run, map to an exit code.

use clap::Parser;

fn main() {
    let cli = ferry::cli::Cli::parse();
    let daemon = matches!(cli.command, ferry::cli::Command::Serve);
    ferry::cli::init_logging(cli.verbose, daemon);
    let code = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(ferry::cli::run(cli)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            1
        }
    };
    std::process::exit(code);
}
