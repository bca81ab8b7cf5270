//! The `ferry` binary: parse the command line, set up logging, run, map to an exit code.

use clap::Parser;

fn main() {
    let cli = ferry::cli::Cli::parse();
    if !ferry::cli::init_logging(&cli) {
        std::process::exit(ferry::cli::EXIT_FAILED);
    }
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

/// mimalloc instead of glibc's allocator: rows are allocated on the reader thread and freed
/// on the writer thread, which glibc makes expensive (arena locks, consolidation). A 1M-row
/// MariaDB CSV export took ~20 % less CPU with it (docs/benchmarks.md). Built with `no_thp`:
/// with transparent huge pages its arenas would raise every run's resident memory.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
