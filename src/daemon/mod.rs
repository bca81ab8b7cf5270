//! The daemon behind `ferry serve`, as a library: [`Daemon::start`] assembles it from a
//! project, a store, a clock, an optional bound listener and a shutdown token, and
//! [`Daemon::run`] runs it until the token is cancelled.
//!
//! The daemon is a list of services ([`Service`]) that share one lifecycle: each starts,
//! reports its health, runs until shutdown, then drains within `scheduler.drain_timeout`.
//!
//! - [`scheduler::SchedulerService`]: claims and runs fires on time ([`crate::schedule`]).
//!   A run holds its worker slot until its outcome is recorded, then hands its
//!   deliveries to the delivery service;
//! - [`delivery::DeliveryService`]: attempts each recorded run's deliveries and owner
//!   alert (the run's [`crate::exec::Followup`]), and every `scheduler.delivery_interval`
//!   the ledger's due retries ([`crate::exec::deliver::deliver_due`]);
//! - [`reload::ReloadService`]: reloads config.yaml and the tasks on file changes and on
//!   [`Handle::reload`] (SIGHUP), and publishes the new project to the others;
//! - [`links::HttpService`]: the HTTP servers ([`crate::server`]): the download links
//!   when `links:` is set, the API when `http:` is (one server when both share an
//!   address); the API reaches the scheduler through [`scheduler::Control`] (run now,
//!   cancel) and the delivery service through a wake-up ([`links::DaemonOps`]);
//! - [`ingest::IngestService`]: query by email, polling the request folder
//!   ([`crate::ingest::poll`]) when `ingest:` is set;
//! - [`retention::RetentionService`]: applies `retention:` at start and daily;
//! - [`heartbeat::HeartbeatService`]: this daemon's instance row in the store (its
//!   heartbeat), and the runs of instances that stopped beating (recorded as failed).
//!
//! Adding a way in (a watched folder): a module with a type implementing
//! [`Service`], pushed onto the list in [`Daemon::start`].
//!
//! What the services do is published as [`Event`]s ([`Handle::events`]): tests wait for
//! them instead of sleeping, and the console will show them.

pub mod delivery;
pub mod heartbeat;
pub mod ingest;
pub mod links;
pub mod reload;
pub mod retention;
pub mod scheduler;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::clock::SharedClock;
use crate::config::Project;
use crate::format::{sweep_partials, sweep_temp};
use crate::scheduler::{ExecRunner, ReloadSummary, Scheduler};
use crate::server::StartError;
use crate::store::{InstanceRecord, Store, StoreError, process_alive, reap_interrupted};

/// What the daemon is made of.
pub struct DaemonOptions {
    /// The config file the project was loaded from (reloads read it again).
    pub config_path: PathBuf,
    pub project: Project,
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    /// The download server's listener, already bound (tests bind port 0); `None` binds
    /// `links.listen`.
    pub links_listener: Option<std::net::TcpListener>,
    /// The API's listener, already bound; `None` binds `http.listen`.
    pub http_listener: Option<std::net::TcpListener>,
    /// Watch config.yaml and the tasks folder for changes (off in tests that reload by
    /// [`Handle::reload`]).
    pub watch_files: bool,
}

/// Something a service did.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The scheduler handled everything due at this instant (UTC).
    Ticked(chrono::DateTime<chrono::Utc>),
    /// A reloaded project was applied.
    Reloaded(ReloadSummary),
    /// A reload was refused (the config is invalid); the running project stays.
    ReloadRefused(Vec<String>),
    /// A recorded run's deliveries and owner alert were attempted.
    FollowupDone { run_id: String },
    /// A pass of the delivery worker, started at `at` (the daemon's clock), attempted
    /// this many due deliveries.
    DeliveryPass {
        attempted: usize,
        at: chrono::DateTime<chrono::Utc>,
    },
    /// A poll of the mail-ingest request folder: mail seen, mail handled, accepted
    /// requests left waiting for the quiet hours to end.
    MailPass {
        seen: usize,
        handled: usize,
        waiting: usize,
    },
    /// A poll of the request folder failed (the IMAP server, the store).
    MailPassFailed(String),
    /// A retention pass removed this many files (freeing `freed` bytes) and deleted
    /// this many runs.
    RetentionPass { files: usize, freed: u64, runs: u64 },
}

/// How a service is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Starting,
    Running,
    Draining,
    Stopped,
    Failed(String),
}

/// The daemon's view of its services' health, by service name.
#[derive(Clone, Default)]
pub struct HealthBoard(Arc<Mutex<BTreeMap<&'static str, Health>>>);

impl HealthBoard {
    pub fn set(&self, service: &'static str, health: Health) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(service, health);
        }
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, Health> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// What every service gets.
#[derive(Clone)]
pub struct Context {
    pub shutdown: CancellationToken,
    /// How long a service may take to finish its work once `shutdown` fires.
    pub drain: Duration,
    pub events: broadcast::Sender<Event>,
    pub health: HealthBoard,
    /// The project as last (re)loaded.
    pub project: watch::Receiver<Arc<Project>>,
}

impl Context {
    /// Publishes an event (nobody listening is fine).
    pub fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }
}

/// A part of the daemon with the shared lifecycle.
#[async_trait]
pub trait Service: Send + 'static {
    fn name(&self) -> &'static str;

    /// Runs until `ctx.shutdown` is cancelled, then finishes its work within `ctx.drain`.
    async fn run(self: Box<Self>, ctx: Context);
}

/// Why the daemon did not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A configuration problem (exit code 2).
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Server(StartError),
}

/// Talks to a running daemon.
#[derive(Clone)]
pub struct Handle {
    events: broadcast::Sender<Event>,
    reload: Arc<Notify>,
    health: HealthBoard,
    links_addr: Option<SocketAddr>,
    api_addr: Option<SocketAddr>,
    control: scheduler::Control,
}

impl Handle {
    /// Events from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Reloads config.yaml and the tasks (what SIGHUP does).
    pub fn reload(&self) {
        self.reload.notify_one();
    }

    pub fn health(&self) -> BTreeMap<&'static str, Health> {
        self.health.snapshot()
    }

    /// Where the download server listens, when `links:` is configured.
    pub fn links_addr(&self) -> Option<SocketAddr> {
        self.links_addr
    }

    /// Where the API listens, when `http:` is configured.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api_addr
    }

    /// Run now and cancel, as the API does.
    pub fn control(&self) -> scheduler::Control {
        self.control.clone()
    }
}

/// An assembled daemon, ready to run.
pub struct Daemon {
    services: Vec<Box<dyn Service>>,
    ctx: Context,
    handle: Handle,
    project_tx: watch::Sender<Arc<Project>>,
    /// Cancelled once every other service has drained: the heartbeat stops last.
    last_out: CancellationToken,
}

impl Daemon {
    /// Prepares everything that can fail before anything runs: records runs left
    /// `running` by a dead process as failed and removes partial files, binds the
    /// download server, loads the scheduler's cursors.
    pub async fn start(
        opts: DaemonOptions,
        shutdown: CancellationToken,
    ) -> Result<Daemon, DaemonError> {
        let DaemonOptions {
            config_path,
            project,
            store,
            clock,
            links_listener,
            http_listener,
            watch_files,
        } = opts;
        // Refuse a weak link key before anything starts (validation refuses it too; this
        // guard holds even if that check were bypassed).
        if let Some(spec) = &project.config.links
            && let Err(e) = crate::links::signer_for(spec)
        {
            return Err(DaemonError::Config(format!(
                "refusing to start the download server: {e}"
            )));
        }
        sweep_partials(&project.config.output_dir, &process_alive);
        sweep_temp(&project.config.export.temp_dir, &process_alive);
        let reaped = reap_interrupted(
            &*store,
            &project.config.node_name,
            &process_alive,
            clock.now(),
        )
        .await?;
        if !reaped.is_empty() {
            warn!(
                runs = reaped.len(),
                "runs interrupted by an earlier stop were recorded as failed"
            );
        }

        let (events, _) = broadcast::channel(1024);
        let health = HealthBoard::default();
        let reload = Arc::new(Notify::new());
        let (project_tx, project_rx) = watch::channel(Arc::new(project.clone()));
        let ctx = Context {
            shutdown,
            drain: project.config.scheduler.drain_timeout,
            events: events.clone(),
            health: health.clone(),
            project: project_rx,
        };

        let mut services: Vec<Box<dyn Service>> = Vec::new();
        let (control, commands) = scheduler::Control::new();
        let deliveries_wake = Arc::new(Notify::new());
        let link_state = match &project.config.links {
            Some(spec) => Some(
                crate::server::Server::link_state(
                    spec,
                    project.config.output_dir.clone(),
                    store.clone(),
                    clock.clone(),
                )
                .map_err(DaemonError::Server)?,
            ),
            None => None,
        };
        let mut links_addr = None;
        let mut api_addr = None;
        let mut links_listener = links_listener;
        let mut link_state = link_state;
        if let Some(http) = &project.config.http {
            let users = store.users().await?.len();
            crate::server::api::check_exposure(http.listen, users).map_err(|e| {
                DaemonError::Config(format!("refusing to start the API: http.listen: {e}"))
            })?;
            let state = Arc::new(crate::server::api::ApiState {
                store: store.clone(),
                clock: clock.clone(),
                project: ctx.project.clone(),
                ops: Arc::new(links::DaemonOps {
                    control: control.clone(),
                    health: health.clone(),
                    deliveries: deliveries_wake.clone(),
                }),
                http: http.clone(),
                limiter: Default::default(),
                started_at: clock.now(),
            });
            let mut app = crate::server::api::router(state);
            // One server for both when `links.listen` is `http.listen`.
            let shared = project
                .config
                .links
                .as_ref()
                .is_some_and(|l| l.listen == http.listen);
            if shared && let Some(ls) = link_state.take() {
                app = app.merge(crate::server::link_routes(ls));
                links_listener = None;
            }
            let app = app.fallback(crate::server::api::fallback);
            let listener = crate::server::Server::bind("http.listen", http.listen, http_listener)
                .await
                .map_err(DaemonError::Server)?;
            let server = crate::server::Server::serve(listener, app).map_err(|source| {
                DaemonError::Server(StartError::Bind {
                    field: "http.listen",
                    addr: http.listen,
                    source,
                })
            })?;
            info!("API listening on http://{}/api/v1", server.local_addr);
            api_addr = Some(server.local_addr);
            if shared {
                links_addr = api_addr;
            }
            services.push(Box::new(links::HttpService::new(server, "api")));
        }
        if let (Some(spec), Some(_)) = (&project.config.links, &link_state) {
            let server = crate::server::Server::start(
                spec,
                links_listener,
                project.config.output_dir.clone(),
                store.clone(),
                clock.clone(),
            )
            .await
            .map_err(DaemonError::Server)?;
            let service = links::HttpService::new(server, "links");
            links_addr = Some(service.local_addr());
            services.push(Box::new(service));
        }
        let (followups_tx, followups_rx) = mpsc::unbounded_channel();
        let runner = Arc::new(ExecRunner {
            store: store.clone(),
            clock: clock.clone(),
            followups: followups_tx,
        });
        let mut sched = Scheduler::new(project, store.clone(), runner, clock.clone());
        sched.start(clock.now()).await?;
        services.push(Box::new(scheduler::SchedulerService::new(
            sched,
            clock.clone(),
            commands,
        )));
        services.push(Box::new(delivery::DeliveryService::new(
            store.clone(),
            clock.clone(),
            followups_rx,
            deliveries_wake,
        )));
        services.push(Box::new(reload::ReloadService::new(
            config_path,
            reload.clone(),
            watch_files,
            project_tx.clone(),
        )));
        services.push(Box::new(ingest::IngestService::new(
            store.clone(),
            clock.clone(),
        )));
        services.push(Box::new(retention::RetentionService::new(
            store.clone(),
            clock.clone(),
        )));
        let node = project_tx.borrow().config.node_name.clone();
        let instance = InstanceRecord::this_process(&node, clock.now());
        store.register(&instance).await?;
        let last_out = CancellationToken::new();
        services.push(Box::new(heartbeat::HeartbeatService::new(
            store.clone(),
            clock.clone(),
            instance,
            last_out.clone(),
        )));
        for s in &services {
            health.set(s.name(), Health::Starting);
        }
        let handle = Handle {
            events,
            reload,
            health,
            links_addr,
            api_addr,
            control,
        };
        Ok(Daemon {
            services,
            ctx,
            handle,
            project_tx,
            last_out,
        })
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Runs every service until the shutdown token is cancelled and all have drained.
    pub async fn run(self) {
        let Daemon {
            services,
            ctx,
            project_tx,
            last_out,
            ..
        } = self;
        let mut set = JoinSet::new();
        for service in services {
            let name = service.name();
            let ctx = ctx.clone();
            set.spawn(async move {
                ctx.health.set(name, Health::Running);
                service.run(ctx.clone()).await;
                ctx.health.set(name, Health::Stopped);
                name
            });
        }
        info!(pid = std::process::id(), "ferry serve started");
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(name) if !ctx.shutdown.is_cancelled() => {
                    // A service that ends on its own takes the daemon down with it: half a
                    // daemon (say, no deliveries) must not look healthy.
                    error!(
                        service = name,
                        "a service stopped unexpectedly; shutting down"
                    );
                    ctx.health
                        .set(name, Health::Failed("stopped unexpectedly".into()));
                    ctx.shutdown.cancel();
                }
                Ok(_) => {}
                Err(e) => {
                    error!(error = %e, "a service panicked; shutting down");
                    ctx.shutdown.cancel();
                }
            }
            if set.len() <= 1 && ctx.shutdown.is_cancelled() {
                last_out.cancel();
            }
        }
        drop(project_tx);
        info!("ferry serve stopped");
    }
}
