//! The HTTP servers of `ferry serve` (axum, plain HTTP/1.1): signed download links
//! ([`download`], when `links:` is configured) and the JSON API ([`api`], when `http:`
//! is). Each binds its `listen` address; when both name the same address, one server
//! serves both route sets. They stop with the scheduler's drain on SIGTERM
//! ([`Server::stop`]). TLS is left to a reverse proxy in front (docs/links.md,
//! docs/api.md). Routes:
//!
//! - `GET`/`HEAD {links path}/d/{id}` and `/d/{id}/{name}`: a download
//!   ([`download::download`]; no credentials: the signature is the credential);
//! - `/api/v1/…`: the API ([`api::ROUTES`]);
//! - anything else: 404.
//!
//! [`run`] takes a bound listener and a cancellation token (mini-redis style), so tests
//! and `ferry serve` run the same code.

pub mod api;
pub mod download;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::config::LinksSpec;
use crate::links::{self, Signer};
use crate::store::Store;

/// What the handlers share.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub signer: Signer,
    /// `output_dir`: every served file must resolve under it.
    pub output_dir: PathBuf,
    /// Take the client address from `X-Forwarded-For`.
    pub trust_proxy: bool,
    pub clock: Arc<dyn Clock>,
    /// The path of `links.public_url` (`""` for none): routes are mounted under it.
    pub prefix: String,
}

/// The download routes, mounted under `state.prefix`, without a fallback (so that they
/// can join the API's router).
pub fn link_routes(state: Arc<AppState>) -> Router {
    let prefix = state.prefix.clone();
    Router::new()
        .route(&format!("{prefix}/d/{{id}}"), get(download::download))
        .route(
            &format!("{prefix}/d/{{id}}/{{name}}"),
            get(download::download),
        )
        .with_state(state)
}

/// The download routes alone.
pub fn router(state: Arc<AppState>) -> Router {
    link_routes(state).fallback(|| async { download::plain(StatusCode::NOT_FOUND, "not found") })
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets requests in
/// flight finish (the caller bounds that wait).
pub async fn run(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}

/// The running server of `ferry serve`.
pub struct Server {
    pub local_addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A configuration problem (exit code 2).
    #[error("{0}")]
    Config(String),
    /// The address could not be bound (exit code 1).
    #[error("{field} {addr}: cannot listen: {source}")]
    Bind {
        field: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl Server {
    /// Binds `addr` (for `field`), or takes the given listener, already bound.
    pub async fn bind(
        field: &'static str,
        addr: SocketAddr,
        listener: Option<std::net::TcpListener>,
    ) -> Result<TcpListener, StartError> {
        match listener {
            Some(l) => l
                .set_nonblocking(true)
                .and_then(|()| TcpListener::from_std(l)),
            None => TcpListener::bind(addr).await,
        }
        .map_err(|source| StartError::Bind {
            field,
            addr,
            source,
        })
    }

    /// Serves `app` on a bound listener until [`Server::stop`].
    pub fn serve(listener: TcpListener, app: Router) -> std::io::Result<Server> {
        let local_addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(listener, app, shutdown.clone()));
        Ok(Server {
            local_addr,
            shutdown,
            task,
        })
    }

    /// The download routes' state, after checking the key again (a runtime guard beside
    /// validation) and the public URL.
    pub fn link_state(
        spec: &LinksSpec,
        output_dir: PathBuf,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<AppState>, StartError> {
        let signer = links::signer_for(spec).map_err(|e| {
            StartError::Config(format!("refusing to start the download server: {e}"))
        })?;
        links::check_public_url(&spec.public_url)
            .map_err(|e| StartError::Config(format!("links.public_url: {e}")))?;
        Ok(Arc::new(AppState {
            store,
            signer,
            output_dir,
            trust_proxy: spec.trust_proxy,
            clock,
            prefix: links::path_prefix(&spec.public_url),
        }))
    }

    /// Checks the key, binds `links.listen` (or takes the given listener, already bound)
    /// and starts serving downloads.
    pub async fn start(
        spec: &LinksSpec,
        listener: Option<std::net::TcpListener>,
        output_dir: PathBuf,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Server, StartError> {
        let state = Server::link_state(spec, output_dir, store, clock)?;
        let listener = Server::bind("links.listen", spec.listen, listener).await?;
        let server = Server::serve(listener, router(state)).map_err(|source| StartError::Bind {
            field: "links.listen",
            addr: spec.listen,
            source,
        })?;
        info!(
            public_url = %spec.public_url,
            "download server listening on http://{}", server.local_addr
        );
        Ok(server)
    }

    /// Stops accepting connections at once and gives downloads in flight up to `grace`
    /// to finish; the rest are cut.
    pub async fn stop(self, grace: Duration) {
        self.shutdown.cancel();
        let abort = self.task.abort_handle();
        match tokio::time::timeout(grace, self.task).await {
            Ok(Ok(Ok(()))) => info!("HTTP server stopped"),
            Ok(Ok(Err(e))) => warn!(error = %e, "HTTP server stopped with an error"),
            Ok(Err(e)) => warn!(error = %e, "HTTP server task failed"),
            Err(_) => {
                abort.abort();
                warn!("requests (downloads) still running after the drain timeout were cut");
            }
        }
    }
}
