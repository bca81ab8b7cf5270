//! `ferry serve`: the long-running daemon ([`crate::daemon`]).
//!
//! This file only takes the store's lock (one `ferry serve` per embedded store), opens
//! the store, turns signals into the daemon's shutdown (SIGTERM, SIGINT) and reload
//! (SIGHUP), and maps errors to exit codes. Everything else (reaping runs of a dead
//! process, the scheduler, the delivery worker, file watching, the download server, the
//! drain) is the daemon's.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{Cli, EXIT_CONFIG, EXIT_FAILED, EXIT_OK, load_project, print_error};
use crate::clock::SystemClock;
use crate::config::StoreSpec;
use crate::daemon::{Daemon, DaemonError, DaemonOptions};
use crate::server::StartError;
use crate::store::sqlite::SqliteStore;

pub async fn run(cli: &Cli) -> i32 {
    let project = match load_project(cli) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let StoreSpec::Sqlite { path } = project.config.store.clone();
    let _lock = match lock_store(&path) {
        Ok(l) => l,
        Err(msg) => {
            eprintln!("error: {msg}");
            return EXIT_FAILED;
        }
    };
    let store = match SqliteStore::open(&path).await {
        Ok(s) => Arc::new(s),
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

/// Takes an exclusive lock next to the store, held for the life of the process.
fn lock_store(store: &Path) -> Result<File, String> {
    let lock_path: PathBuf = {
        let mut p = store.as_os_str().to_owned();
        p.push(".lock");
        p.into()
    };
    if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open the lock file {}: {e}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "another `ferry serve` is already running on the run store {} (its lock {} is held); stop it first, or give this one its own store",
            store.display(),
            lock_path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(format!("cannot lock {}: {e}", lock_path.display()))
        }
    }
}
