//! The download-link service: the HTTP server of [`crate::server`] as a daemon service.
//! It binds at start (so a taken port stops `ferry serve` before anything runs), serves
//! until shutdown, then gives downloads in flight the drain to finish.

use std::net::SocketAddr;

use async_trait::async_trait;

use super::{Context, Service};
use crate::server::Server;

pub struct LinkService {
    server: Server,
}

impl LinkService {
    /// The service of a started server ([`Server::start`]).
    pub fn new(server: Server) -> LinkService {
        LinkService { server }
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
