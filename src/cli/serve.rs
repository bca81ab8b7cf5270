//! `ferry serve`: the long-running daemon ([`crate::daemon`]).
//!
//! This file only opens the store (by its URL, [`crate::store::open`]), takes what the
//! backend asks a daemon to hold (the embedded store: one `ferry serve` per file), turns
//! signals into the daemon's shutdown (SIGTERM, SIGINT) and reload (SIGHUP), tells
//! systemd when it is ready, alive (watchdog) and stopping (`sd_notify`), and maps
//! errors to exit codes. Everything else (reaping runs of a dead
//! process, the scheduler, the delivery worker, file watching, the download server, the
//! drain) is the daemon's.

use std::sync::Arc;

use sd_notify::NotifyState;
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
        http_listener: None,
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
    let stopping = shutdown.clone();
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
    // systemd (`Type=notify`, packaging/ferry.service): ready once every service has
    // started; watchdog pings while no service has failed, so that a wedged daemon is
    // restarted; stopping on shutdown. Without $NOTIFY_SOCKET these do nothing.
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status("scheduling")]);
    let watchdog = sd_notify::watchdog_enabled().map(|every| {
        let handle = daemon.handle();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every / 2).await;
                let failed = handle
                    .health()
                    .values()
                    .any(|h| matches!(h, crate::daemon::Health::Failed(_)));
                if !failed {
                    let _ = sd_notify::notify(&[NotifyState::Watchdog]);
                }
            }
        })
    });
    let notify_stop = tokio::spawn(async move {
        stopping.cancelled().await;
        let _ = sd_notify::notify(&[NotifyState::Stopping]);
    });
    daemon.run().await;
    notify_stop.abort();
    if let Some(w) = watchdog {
        w.abort();
    }
    signals.abort();
    store.close().await;
    EXIT_OK
}
