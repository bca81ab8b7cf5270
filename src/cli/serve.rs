//! `ferry serve`: the long-running scheduler.
//!
//! Start-up: take the store's lock (one `ferry serve` per embedded store), record runs
//! left `running` by a dead process as failed, remove their partial files, and start the
//! scheduler (fires missed while ferry was down are handled by the misfire rules).
//!
//! The loop sleeps until the next due fire but wakes at least every 30 s, so wall-clock
//! jumps, NTP steps and suspended machines are noticed. Task and config changes are picked
//! up by file watching and on SIGHUP. SIGTERM or SIGINT stops claiming, lets running runs
//! finish up to `scheduler.drain_timeout`, cancels the rest (recorded), and exits 0.
//!
//! A delivery worker attempts the delivery ledger's due deliveries at start and then every
//! [`DELIVERY_INTERVAL`] ([`crate::exec::deliver::deliver_due`]): retries that a run left
//! `pending`, and deliveries a crashed process left behind (`sending` ones are sent once
//! more and recorded `maybe_duplicate`). It never runs a query; it sends the recorded
//! message. On shutdown it finishes the attempts under way (within the drain).
//!
//! With `links:` configured it also runs the download server ([`crate::server`]) on
//! `links.listen`; it refuses to start (exit 2) with a weak signing key, and stops with
//! the same drain. Changes to `links:` take effect at the next start.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{Cli, EXIT_CONFIG, EXIT_FAILED, EXIT_OK, load_project, print_error};
use crate::config::{LinksSpec, Project, StoreSpec};
use crate::format::{sweep_partials, sweep_temp};
use crate::schedule::runtime::{ExecRunner, Scheduler};
use crate::schedule::{Clock, SystemClock};
use crate::server::{Server, StartError};
use crate::store::sqlite::SqliteStore;
use crate::store::{Owner, RunStore, process_alive};

/// The longest the loop sleeps without looking at the clock.
pub const MAX_SLEEP: Duration = Duration::from_secs(30);
/// How often the delivery worker looks for due deliveries.
pub const DELIVERY_INTERVAL: Duration = Duration::from_secs(5);
/// File events closer together than this are handled as one reload.
const DEBOUNCE: Duration = Duration::from_millis(300);

pub async fn run(cli: &Cli) -> i32 {
    let project = match load_project(cli) {
        Ok(p) => p,
        Err(code) => return code,
    };
    // Refuse a weak link key before anything starts (validation refuses it too; this
    // guard holds even if that check were bypassed).
    if let Some(spec) = &project.config.links
        && let Err(e) = crate::links::signer_for(spec)
    {
        eprintln!("error: refusing to start the download server: {e}");
        return EXIT_CONFIG;
    }
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
    let clock = SystemClock;
    sweep_partials(&project.config.output_dir, &process_alive);
    sweep_temp(&project.config.export.temp_dir, &process_alive);
    match store
        .reap_interrupted(&project.config.node_name, &process_alive, clock.now())
        .await
    {
        Ok(reaped) if !reaped.is_empty() => {
            warn!(
                runs = reaped.len(),
                "runs interrupted by an earlier stop were recorded as failed"
            )
        }
        Ok(_) => {}
        Err(e) => {
            print_error(&e);
            return EXIT_FAILED;
        }
    }

    let links = project.config.links.clone();
    let server = match &links {
        Some(spec) => match Server::start(
            spec,
            project.config.output_dir.clone(),
            store.clone(),
            Arc::new(SystemClock),
        )
        .await
        {
            Ok(s) => Some(s),
            Err(e @ StartError::Config(_)) => {
                eprintln!("error: {e}");
                return EXIT_CONFIG;
            }
            Err(e) => {
                print_error(&e);
                return EXIT_FAILED;
            }
        },
        None => None,
    };
    let drain = project.config.scheduler.drain_timeout;
    let watch_paths = vec![cli.config.clone(), project.config.tasks_dir.clone()];
    let runner = Arc::new(ExecRunner {
        store: store.clone(),
    });
    let (project_tx, project_rx) = watch::channel(Arc::new(project.clone()));
    let mut sched = Scheduler::new(project, store.clone(), runner);
    if let Err(e) = sched.start(clock.now()).await {
        print_error(&e);
        return EXIT_FAILED;
    }

    let (reload_tx, mut reload_rx) = mpsc::channel::<()>(16);
    let _watcher = match watch(&watch_paths, reload_tx.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            warn!("file watching is off ({e}); send SIGHUP to reload");
            None
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
    let worker_stop = CancellationToken::new();
    let worker = tokio::spawn(delivery_worker(
        store.clone(),
        project_rx,
        worker_stop.clone(),
    ));
    info!(pid = std::process::id(), "ferry serve started");

    loop {
        let now = clock.now();
        if let Err(e) = sched.tick(now).await {
            error!(error = %e, "the run store failed; retrying on the next wake-up");
        }
        let sleep_for = sched
            .next_wake()
            .and_then(|w| (w - now).to_std().ok())
            .unwrap_or(Duration::ZERO)
            .min(MAX_SLEEP);
        let sleep_for = if sched.next_wake().is_none() {
            MAX_SLEEP
        } else {
            sleep_for
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep_for) => {}
            _ = sched.completed() => {}
            Some(()) = reload_rx.recv() => {
                // Let a burst of file events settle, then reload once.
                tokio::time::sleep(DEBOUNCE).await;
                while reload_rx.try_recv().is_ok() {}
                reload(cli, &mut sched, &clock, links.as_ref(), &project_tx).await;
            }
            _ = hup.recv() => {
                info!("SIGHUP: reloading");
                reload(cli, &mut sched, &clock, links.as_ref(), &project_tx).await;
            }
            _ = term.recv() => {
                info!(signal = "SIGTERM", "shutting down");
                break;
            }
            _ = int.recv() => {
                info!(signal = "SIGINT", "shutting down");
                break;
            }
        }
    }
    // The delivery worker takes no new deliveries; one under way may finish in the drain.
    worker_stop.cancel();
    // New downloads stop at once; those in flight get the same drain as running runs.
    match server {
        Some(server) => {
            tokio::join!(sched.shutdown(drain), server.stop(drain));
        }
        None => sched.shutdown(drain).await,
    }
    if tokio::time::timeout(drain, worker).await.is_err() {
        warn!(
            "the delivery worker did not finish within the drain; deliveries under way are resent (maybe_duplicate) at the next start"
        );
    }
    store.close().await;
    EXIT_OK
}

/// Attempts the due deliveries now and every [`DELIVERY_INTERVAL`] until `stop`, with the
/// project as last (re)loaded.
async fn delivery_worker(
    store: Arc<SqliteStore>,
    project: watch::Receiver<Arc<Project>>,
    stop: CancellationToken,
) {
    let clock = SystemClock;
    loop {
        let p = project.borrow().clone();
        let me = Owner {
            node: p.config.node_name.clone(),
            pid: std::process::id(),
        };
        match crate::exec::deliver::deliver_due(&*store, &p.config, &p.tasks, &me, clock.now())
            .await
        {
            Ok(0) => {}
            Ok(n) => info!(deliveries = n, "delivery worker: attempted due deliveries"),
            Err(e) => error!(error = %e, "delivery worker: the run store failed; retrying later"),
        }
        tokio::select! {
            _ = tokio::time::sleep(DELIVERY_INTERVAL) => {}
            _ = stop.cancelled() => return,
        }
    }
}

async fn reload(
    cli: &Cli,
    sched: &mut Scheduler,
    clock: &SystemClock,
    links: Option<&LinksSpec>,
    project_tx: &watch::Sender<Arc<Project>>,
) {
    match Project::load(&cli.config) {
        Ok(project) => {
            project_tx.send_replace(Arc::new(project.clone()));
            if project.config.links.as_ref() != links {
                warn!("the `links:` section changed: restart `ferry serve` to apply it");
            }
            if let Err(e) = sched.reload(project, clock.now()).await {
                error!(error = %e, "reload failed in the run store");
            }
        }
        Err(problems) => {
            for p in problems {
                error!("config.yaml is invalid, keeping the running configuration: {p}");
            }
        }
    }
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

fn watch(paths: &[PathBuf], tx: mpsc::Sender<()>) -> notify::Result<notify::RecommendedWatcher> {
    // Only the config file itself and what is under the tasks folder matter; other files
    // beside config.yaml (logs, the store) must not trigger reloads.
    let relevant: Vec<(PathBuf, bool)> = paths
        .iter()
        .map(|p| {
            let abs = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            (abs, p.is_dir())
        })
        .collect();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !matches!(ev.kind, notify::EventKind::Access(_))
            && ev.paths.iter().any(|p| {
                !is_noise(p)
                    && relevant.iter().any(|(r, is_dir)| {
                        if *is_dir {
                            p.starts_with(r)
                        } else {
                            p.file_name() == r.file_name()
                                && p.parent().map(|d| {
                                    std::fs::canonicalize(d).unwrap_or_else(|_| d.to_path_buf())
                                }) == r.parent().map(Path::to_path_buf)
                        }
                    })
            })
        {
            let _ = tx.try_send(());
        }
    })?;
    for p in paths {
        // Watch the config file's folder (editors replace files by rename), the tasks
        // folder recursively (query files may live in sub-folders).
        let (target, mode) = if p.is_dir() {
            (p.clone(), RecursiveMode::Recursive)
        } else {
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            (dir, RecursiveMode::NonRecursive)
        };
        watcher.watch(&target, mode)?;
    }
    Ok(watcher)
}

/// Editor swap files and ferry's own files do not trigger reloads.
fn is_noise(p: &Path) -> bool {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    name.ends_with(".swp")
        || name.ends_with('~')
        || name.ends_with(".partial")
        || name.starts_with(".#")
        || name.ends_with(".db-wal")
        || name.ends_with(".db-shm")
        || name.ends_with(".db-journal")
        || name.ends_with(".lock")
}
