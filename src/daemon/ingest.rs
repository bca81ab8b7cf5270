//! The mail-ingest service: polls the request folder ([`crate::ingest::poll`]) every
//! `ingest.poll_every`, and between polls waits with IMAP IDLE when the server offers it
//! (new mail starts the next poll at once). It follows reloads: an `ingest:` section added
//! or removed takes effect at the next poll. An unreachable server is logged once, then
//! once when it is back.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tracing::{info, warn};

use super::{Context, Event, Service};
use crate::clock::SharedClock;
use crate::exec::Stop;
use crate::ingest::imap::Imap;
use crate::ingest::poll::Poller;
use crate::store::Store;

pub struct IngestService {
    store: Arc<dyn Store>,
    clock: SharedClock,
}

impl IngestService {
    pub fn new(store: Arc<dyn Store>, clock: SharedClock) -> IngestService {
        IngestService { store, clock }
    }
}

#[async_trait]
impl Service for IngestService {
    fn name(&self) -> &'static str {
        "ingest"
    }

    async fn run(self: Box<Self>, mut ctx: Context) {
        let mut failing = false;
        // Mail left in the folder by the last poll (waiting for quiet hours, or failed).
        let mut left = 0usize;
        // The last day the owners' digest covered.
        let mut digested: Option<String> = None;
        loop {
            let project = ctx.project.borrow_and_update().clone();
            let Some(spec) = project.config.ingest.clone() else {
                // Nothing to do until a reload adds `ingest:`.
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return,
                    changed = ctx.project.changed() => if changed.is_err() { return },
                }
                continue;
            };
            let poller = Poller::new(
                Arc::new(project.config.clone()),
                self.store.clone(),
                self.clock.clone(),
            );
            let stop = Stop::new();
            let pass = poller.poll_once(&stop, &ctx.shutdown);
            tokio::pin!(pass);
            let result = tokio::select! {
                r = &mut pass => Some(r),
                _ = ctx.shutdown.cancelled() => {
                    // A request being run gets the drain to finish (and be answered),
                    // as a scheduled run does; then it is stopped.
                    match tokio::time::timeout(ctx.drain, &mut pass).await {
                        Ok(r) => Some(r),
                        Err(_) => {
                            stop.stop("ferry serve was stopping and the drain timeout passed");
                            tokio::time::timeout(Duration::from_secs(10), &mut pass).await.ok()
                        }
                    }
                }
            };
            match result {
                Some(Ok(p)) => {
                    left = p.seen.saturating_sub(p.handled.len());
                    if failing {
                        info!("ingest: the IMAP server answers again");
                        failing = false;
                    }
                    if !p.handled.is_empty() {
                        info!(
                            handled = p.handled.len(),
                            waiting = p.waiting,
                            "ingest: poll done"
                        );
                    }
                    match poller.digest(digested.as_deref()).await {
                        Ok(Some(day)) => digested = Some(day),
                        Ok(None) => {}
                        Err(e) => warn!(error = %e, "ingest: the owners' digest failed"),
                    }
                    ctx.emit(Event::MailPass {
                        seen: p.seen,
                        handled: p.handled.len(),
                        waiting: p.waiting,
                    });
                }
                Some(Err(e)) => {
                    if !failing {
                        warn!(error = %e, "ingest: poll failed; trying again every poll_every");
                    }
                    failing = true;
                    ctx.emit(Event::MailPassFailed(e.to_string()));
                }
                None => return,
            }
            if ctx.shutdown.is_cancelled() {
                return;
            }
            // Wait for new mail (IDLE) or the next poll, whichever comes first.
            let wait = async {
                if spec.idle && !failing {
                    match idle(&spec, spec.poll_every, left).await {
                        Ok(()) => return,
                        Err(e) => warn!(error = %e, "ingest: IDLE failed; polling instead"),
                    }
                }
                self.clock.sleep(spec.poll_every).await;
            };
            tokio::select! {
                _ = wait => {}
                _ = ctx.shutdown.cancelled() => return,
                _ = ctx.project.changed() => {}
            }
        }
    }
}

/// Waits on the request folder with IDLE until something changes in it or `limit`
/// passes; at once when it holds more than the `left` mail the last poll left there
/// (mail that came between that poll and now).
async fn idle(
    spec: &crate::config::IngestSpec,
    limit: Duration,
    left: usize,
) -> Result<(), String> {
    let mut imap = Imap::connect(&spec.imap).await.map_err(|e| e.to_string())?;
    if !imap.idle {
        imap.logout().await;
        return Err("the server does not offer IDLE".into());
    }
    imap.select(&spec.folders.requests)
        .await
        .map_err(|e| e.to_string())?;
    if imap.exists as usize > left {
        imap.logout().await;
        return Ok(());
    }
    imap.idle_wait(limit).await.map_err(|e| e.to_string())
}
