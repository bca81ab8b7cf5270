//! The HTTP services: a server of [`crate::server`] as a daemon service (the download
//! links, the API, or both on one address). It binds at start (so a taken port stops
//! `ferry serve` before anything runs), serves until shutdown, then gives requests in
//! flight (downloads) the drain to finish.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::scheduler::Control;
use super::{Context, Health, HealthBoard, Service};
use crate::scheduler::RunNowError;
use crate::server::Server;
use crate::server::api::Ops;

pub struct HttpService {
    server: Server,
    name: &'static str,
}

impl HttpService {
    /// The service of a started server, named for the health board (`links`, `api`).
    pub fn new(server: Server, name: &'static str) -> HttpService {
        HttpService { server, name }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr
    }
}

#[async_trait]
impl Service for HttpService {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn run(self: Box<Self>, ctx: Context) {
        ctx.shutdown.cancelled().await;
        self.server.stop(ctx.drain).await;
    }
}

/// What the API asks of this daemon ([`Ops`]): the scheduler's [`Control`], the health
/// board, the delivery service's wake-up.
pub struct DaemonOps {
    pub control: Control,
    pub health: HealthBoard,
    pub deliveries: Arc<Notify>,
}

#[async_trait]
impl Ops for DaemonOps {
    async fn run_now(
        &self,
        task: &str,
        at: Option<DateTime<Utc>>,
        by: String,
    ) -> Result<String, RunNowError> {
        self.control.run_now(task, at, Some(by)).await
    }

    async fn cancel(&self, run_id: &str, reason: &str) -> bool {
        self.control.cancel(run_id, reason).await
    }

    fn services(&self) -> BTreeMap<String, String> {
        self.health
            .snapshot()
            .into_iter()
            .map(|(name, h)| {
                let state = match h {
                    Health::Starting => "starting".to_string(),
                    Health::Running => "running".into(),
                    Health::Draining => "draining".into(),
                    Health::Stopped => "stopped".into(),
                    Health::Failed(why) => format!("failed: {why}"),
                };
                (name.to_string(), state)
            })
            .collect()
    }

    fn wake_deliveries(&self) {
        self.deliveries.notify_one();
    }
}
