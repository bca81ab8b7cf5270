//! The reload service: loads config.yaml and the tasks again when they change on disk
//! (file watching, debounced) or when asked ([`super::Handle::reload`], SIGHUP), and
//! publishes the new project to the other services. An invalid config.yaml is refused as
//! a whole (the running project stays); an invalid task file keeps the last good version
//! of that task (the scheduler's reload decides that).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use notify::{RecursiveMode, Watcher};
use tokio::sync::{Notify, mpsc, watch};
use tracing::{error, info, warn};

use super::{Context, Event, Service};
use crate::config::Project;

/// File events closer together than this are handled as one reload.
const DEBOUNCE: Duration = Duration::from_millis(300);

pub struct ReloadService {
    config_path: PathBuf,
    trigger: Arc<Notify>,
    publish: watch::Sender<Arc<Project>>,
    /// File events (when watching).
    events: mpsc::Receiver<()>,
    /// Kept for the life of the service: dropping it stops the watching.
    _watcher: Option<notify::RecommendedWatcher>,
}

impl ReloadService {
    /// Starts watching at once (before the daemon says it has started), so that a change
    /// made right after start-up is not missed.
    pub fn new(
        config_path: PathBuf,
        trigger: Arc<Notify>,
        watch_files: bool,
        publish: watch::Sender<Arc<Project>>,
    ) -> ReloadService {
        let (tx, events) = mpsc::channel::<()>(16);
        let watcher = if watch_files {
            let tasks_dir = publish.borrow().config.tasks_dir.clone();
            match watch(&[config_path.clone(), tasks_dir], tx) {
                Ok(w) => Some(w),
                Err(e) => {
                    warn!("file watching is off ({e}); send SIGHUP to reload");
                    None
                }
            }
        } else {
            None
        };
        ReloadService {
            config_path,
            trigger,
            publish,
            events,
            _watcher: watcher,
        }
    }

    /// Loads the files on a blocking thread: the runtime's workers (the scheduler, runs,
    /// deliveries) never wait on the file system.
    async fn reload(&self, ctx: &Context) {
        let current = self.publish.borrow().clone();
        let path = self.config_path.clone();
        let loaded = match tokio::task::spawn_blocking(move || Project::load(&path)).await {
            Ok(loaded) => loaded,
            Err(e) => {
                error!("the reload stopped unexpectedly, keeping the running configuration: {e}");
                return;
            }
        };
        match loaded {
            Ok(project) => {
                if project.config.links != current.config.links {
                    warn!("the `links:` section changed: restart `ferry serve` to apply it");
                }
                if project.config.http != current.config.http {
                    warn!("the `http:` section changed: restart `ferry serve` to apply it");
                }
                // Accounts may have changed with the configuration: `require_read_only`
                // checks again at each datasource's next run.
                crate::source::access::forget_verdicts(&project.config);
                self.publish.send_replace(Arc::new(project));
            }
            Err(problems) => {
                for p in &problems {
                    error!("config.yaml is invalid, keeping the running configuration: {p}");
                }
                ctx.emit(Event::ReloadRefused(
                    problems.iter().map(ToString::to_string).collect(),
                ));
            }
        }
    }
}

#[async_trait]
impl Service for ReloadService {
    fn name(&self) -> &'static str {
        "reload"
    }

    async fn run(mut self: Box<Self>, ctx: Context) {
        loop {
            tokio::select! {
                Some(()) = self.events.recv() => {
                    // Let a burst of file events settle, then reload once.
                    tokio::time::sleep(DEBOUNCE).await;
                    while self.events.try_recv().is_ok() {}
                    self.reload(&ctx).await;
                }
                _ = self.trigger.notified() => {
                    info!("reloading");
                    self.reload(&ctx).await;
                }
                _ = ctx.shutdown.cancelled() => break,
            }
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
