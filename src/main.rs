//! The `ferry` binary: parse the command line, set up logging, run, map to an exit code.

use clap::Parser;

fn main() {
    let cli = ferry::cli::Cli::parse();
    ferry::cli::init_logging(cli.verbose);
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
