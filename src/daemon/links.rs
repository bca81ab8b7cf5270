//! The download-link service: the HTTP server of [`crate::server`] as a daemon service.
//! It binds at start (so a taken port stops `ferry serve` before anything runs), serves
//! until shutdown, then gives downloads in flight the drain to finish.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use super::{Context, Service};
use crate::clock::SharedClock;
use crate::config::LinksSpec;
use crate::server::{Server, StartError};
use crate::store::Store;

pub struct LinkService {
    server: Server,
}

impl LinkService {
    /// Starts the server on `listener`, or on `links.listen` when there is none.
    pub async fn bind(
        spec: &LinksSpec,
        listener: Option<std::net::TcpListener>,
        output_dir: PathBuf,
        store: Arc<dyn Store>,
        clock: SharedClock,
    ) -> Result<LinkService, StartError> {
        let server = Server::start(spec, listener, output_dir, store, clock).await?;
        Ok(LinkService { server })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr
    }
}

#[async_trait]
impl Service for LinkService {
    fn name(&self) -> &'static str {
        "links"
    }

    async fn run(self: Box<Self>, ctx: Context) {
        ctx.shutdown.cancelled().await;
        self.server.stop(ctx.drain).await;
    }
}
