//! The HTTP server of `ferry serve` (axum, plain HTTP/1.1): for now it serves signed
//! download links ([`download`]); status pages and the API will join it here.
//!
//! It starts only when `links:` is configured, binds `links.listen`, and stops with the
//! scheduler's drain on SIGTERM ([`Server::stop`]). TLS is left to a reverse proxy in
//! front (docs/links.md). Routes, all under the path of `links.public_url`:
//!
//! - `GET`/`HEAD /d/{id}` and `/d/{id}/{name}`: a download ([`download::download`]);
//! - anything else: 404.
//!
//! [`run`] takes a bound listener and a cancellation token (mini-redis style), so tests
//! and `ferry serve` run the same code.

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

/// The routes, mounted under `state.prefix`.
pub fn router(state: Arc<AppState>) -> Router {
    let prefix = state.prefix.clone();
    Router::new()
        .route(&format!("{prefix}/d/{{id}}"), get(download::download))
        .route(
            &format!("{prefix}/d/{{id}}/{{name}}"),
            get(download::download),
        )
        .fallback(|| async { download::plain(StatusCode::NOT_FOUND, "not found") })
        .with_state(state)
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
    #[error("links.listen {addr}: cannot listen: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl Server {
    /// Checks the key again (a runtime guard beside validation), binds `links.listen`
    /// (or takes the given listener, already bound) and starts serving.
    pub async fn start(
        spec: &LinksSpec,
        listener: Option<std::net::TcpListener>,
        output_dir: PathBuf,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Server, StartError> {
        let signer = links::signer_for(spec).map_err(|e| {
            StartError::Config(format!("refusing to start the download server: {e}"))
        })?;
        links::check_public_url(&spec.public_url)
            .map_err(|e| StartError::Config(format!("links.public_url: {e}")))?;
        let listener = match listener {
            Some(l) => l
                .set_nonblocking(true)
                .and_then(|()| TcpListener::from_std(l)),
            None => TcpListener::bind(spec.listen).await,
        }
        .map_err(|source| StartError::Bind {
            addr: spec.listen,
            source,
        })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: spec.listen,
            source,
        })?;
        let state = Arc::new(AppState {
            store,
            signer,
            output_dir,
            trust_proxy: spec.trust_proxy,
            clock,
            prefix: links::path_prefix(&spec.public_url),
        });
        let app = router(state);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(listener, app, shutdown.clone()));
        info!(
            public_url = %spec.public_url,
            "download server listening on http://{local_addr}"
        );
        Ok(Server {
            local_addr,
            shutdown,
            task,
        })
    }

    /// Stops accepting connections at once and gives downloads in flight up to `grace`
    /// to finish; the rest are cut.
    pub async fn stop(self, grace: Duration) {
        self.shutdown.cancel();
        let abort = self.task.abort_handle();
        match tokio::time::timeout(grace, self.task).await {
            Ok(Ok(Ok(()))) => info!("download server stopped"),
            Ok(Ok(Err(e))) => warn!(error = %e, "download server stopped with an error"),
            Ok(Err(e)) => warn!(error = %e, "download server task failed"),
            Err(_) => {
                abort.abort();
                warn!("downloads still running after the drain timeout were cut");
            }
        }
    }
}
