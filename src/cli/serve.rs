//! `ferry serve`: the long-running daemon ([`crate::daemon`]).
//!
//! This file only opens the store (by its URL, [`crate::store::open`]), takes what the
//! backend asks a daemon to hold (the embedded store: one `ferry serve` per file), turns
//! signals into the daemon's shutdown (SIGTERM, SIGINT) and reload (SIGHUP), and maps
//! errors to exit codes. Everything else (reaping runs of a dead
//! process, the scheduler, the delivery worker, file watching, the download server, the
//! drain) is the daemon's.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{Cli, EXIT_CONFIG, EXIT_FAILED, EXIT_OK, print_error};
use crate::clock::SystemClock;
use crate::daemon::{Daemon, DaemonError, DaemonOptions};
use crate::server::StartError;
use crate::store::StoreError;

pub async fn run(cli: &Cli) -> i32 {
    let (project, store) = match super::load_with_store(cli).await {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    // The backend decides whether several daemons may share it (the embedded store
    // allows one per file).
    let _lock = match store.lock_for_daemon().await {
        Ok(l) => l,
        Err(StoreError::Other { message, .. }) => {
            eprintln!("error: {message}");
            return EXIT_FAILED;
        }
        Err(e) => {
            print_error(&e);
            return EXIT_FAILED;
        }
    };
    use tokio::signal::unix::{SignalKind, signal};
    let (mut hup, mut term, mut int) = match (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(h), Ok(t), Ok(i)) => (h, t, i),
        _ => {
            eprintln!("error: cannot listen for signals");
            return EXIT_FAILED;
        }
    };
    let shutdown = CancellationToken::new();
    let opts = DaemonOptions {
        config_path: cli.config.clone(),
        project,
        store: store.clone(),
        clock: Arc::new(SystemClock),
        links_listener: None,
        watch_files: true,
    };
    let daemon = match Daemon::start(opts, shutdown.clone()).await {
        Ok(d) => d,
        Err(DaemonError::Config(msg) | DaemonError::Server(StartError::Config(msg))) => {
            eprintln!("error: {msg}");
            return EXIT_CONFIG;
        }
        Err(e) => {
            print_error(&e);
            return EXIT_FAILED;
        }
    };
    let handle = daemon.handle();
    let signals = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    info!("SIGHUP: reloading");
                    handle.reload();
                }
                _ = term.recv() => {
                    info!(signal = "SIGTERM", "shutting down");
                    shutdown.cancel();
                    return;
                }
                _ = int.recv() => {
                    info!(signal = "SIGINT", "shutting down");
                    shutdown.cancel();
                    return;
                }
            }
        }
    });
    daemon.run().await;
    signals.abort();
    store.close().await;
    EXIT_OK
}
