//! The JSON API under `/api/v1` (docs/api.md).
//!
//! Every route is one [`Route`] in [`ROUTES`]: method, path, the least [`Role`] it
//! needs (none for the login and the OpenAPI document), a summary, its request and
//! response types and its handler. [`router`] builds the axum router from that table
//! only, and [`openapi::document`] the OpenAPI 3.1 document, so the two cannot disagree.
//!
//! Each authenticated route runs behind [`guard`]: it finds who calls
//! (`Authorization: Bearer fy_…` or the console's session cookie), refuses with `401`
//! (no or bad credentials, expired or revoked), `403 csrf_token_missing`/`invalid` (a
//! cookie-authenticated write without the session's `X-CSRF-Token`), or `403 forbidden`
//! (a role below the route's), and hands the handler the [`Actor`]. Errors are JSON
//! with a stable `code` ([`ApiError`]).
//!
//! What the API needs of the running daemon (run now, cancel, services' health, a
//! delivery pass now) comes through the [`Ops`] seam, implemented by
//! [`crate::daemon`]; everything else is read from the store and the project.

mod auth;
pub mod openapi;
mod runs;
mod tasks;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use chrono::{DateTime, Utc};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Serialize;
use tokio::sync::watch;

use crate::access::{Actor, LoginLimiter, Role};
use crate::clock::SharedClock;
use crate::config::{HttpSpec, Problem, Project};
use crate::scheduler::RunNowError;
use crate::store::{Store, StoreError};

/// The API's path prefix.
pub const PREFIX: &str = "/api/v1";

/// The session cookie of the console.
pub const SESSION_COOKIE: &str = "ferry_session";

/// The header a cookie-authenticated write must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What the API asks of the running daemon.
#[async_trait]
pub trait Ops: Send + Sync {
    /// Runs a task now (or for the fire at `at`) through the scheduler; the run id.
    async fn run_now(
        &self,
        task: &str,
        at: Option<DateTime<Utc>>,
        by: String,
    ) -> Result<String, RunNowError>;

    /// Cancels a run of this daemon; false when it does not run here.
    async fn cancel(&self, run_id: &str, reason: &str) -> bool;

    /// Each service's state (`running`, `failed: …`).
    fn services(&self) -> BTreeMap<String, String>;

    /// Starts a delivery pass now.
    fn wake_deliveries(&self);
}

/// What the handlers share.
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    /// The project as last (re)loaded.
    pub project: watch::Receiver<Arc<Project>>,
    pub ops: Arc<dyn Ops>,
    pub http: HttpSpec,
    pub limiter: LoginLimiter,
    pub started_at: DateTime<Utc>,
}

impl ApiState {
    pub fn project(&self) -> Arc<Project> {
        self.project.borrow().clone()
    }

    /// The client address: the socket peer, or with `trust_proxy` the last address of
    /// `X-Forwarded-For` (as for downloads).
    fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> String {
        super::download::client_addr(peer, headers, self.http.trust_proxy)
    }

    async fn audit(&self, actor: &Actor, action: &str, target: &str, detail: Option<String>) {
        let _ = crate::access::audit(
            &*self.store,
            &actor.name,
            actor.client.as_deref(),
            action,
            target,
            detail,
            self.clock.now(),
        )
        .await;
    }
}

/// One problem of an invalid task, positioned.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ProblemJson {
    /// `tasks/NAME.yaml:LINE:COL` (or the file alone when the position is unknown).
    pub at: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The field path, e.g. `output.format`.
    pub field: String,
    pub message: String,
}

impl ProblemJson {
    pub fn of(p: &Problem, base: &std::path::Path) -> ProblemJson {
        let file = p.file.strip_prefix(base).unwrap_or(&p.file).display();
        ProblemJson {
            at: match p.pos {
                Some((l, c)) => format!("{file}:{l}:{c}"),
                None => file.to_string(),
            },
            line: p.pos.map(|p| p.0),
            column: p.pos.map(|p| p.1),
            field: p.field.clone(),
            message: p.message.clone(),
        }
    }
}

/// An error answer: `{"code": "...", "message": "...", "problems": [...]}`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    /// Stable, for programs: `unauthorized`, `token_expired`, `token_revoked`,
    /// `session_expired`, `forbidden`, `csrf_token_missing`, `csrf_token_invalid`,
    /// `bad_credentials`, `too_many_attempts`, `bad_request`, `not_found`,
    /// `invalid_task`, `conflict`, `not_running`, `precondition_failed`,
    /// `store_unavailable`, `internal`,
    /// `no_such_route`, `method_not_allowed`.
    pub code: &'static str,
    /// For people.
    pub message: String,
    /// `invalid_task`: each problem at its line and column.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<ProblemJson>,
    /// `too_many_attempts`: seconds until a login may be tried again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            problems: Vec::new(),
            retry_after_secs: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        tracing::error!(error = %e, "api: the run store failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("the run store failed: {e}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let retry = self.retry_after_secs;
        let mut r = json_response(status, &self);
        if let Some(secs) = retry {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ferry\""),
            );
        }
        r
    }
}

/// A JSON body that no cache keeps.
pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let text = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = (status, text).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// A successful JSON answer.
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        json_response(StatusCode::OK, &self.0)
    }
}

/// The result of a handler.
pub type ApiResult<T> = Result<Json<T>, ApiError>;

/// A JSON request body, parsed with a positioned error.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("the request body is not the expected JSON: {e}"))
    })
}

/// How a schema of a request or response body is made.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// The schema of `T`.
pub fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// One route of the API.
pub struct Route {
    pub method: Method,
    /// Under [`PREFIX`], with `{param}` segments.
    pub path: &'static str,
    /// The least role it needs; `None`: no credentials (the login, the document).
    pub role: Option<Role>,
    pub summary: &'static str,
    /// Query parameters: name and meaning.
    pub query: &'static [(&'static str, &'static str)],
    /// The request body, if any (`application/json`; task writes also take YAML).
    pub request: Option<SchemaFn>,
    pub response: SchemaFn,
    pub handler: fn() -> MethodRouter<Arc<ApiState>>,
}

impl Route {
    /// A route without query parameters or request body.
    pub fn new(
        method: Method,
        path: &'static str,
        role: Option<Role>,
        summary: &'static str,
        response: SchemaFn,
        handler: fn() -> MethodRouter<Arc<ApiState>>,
    ) -> Route {
        Route {
            method,
            path,
            role,
            summary,
            query: &[],
            request: None,
            response,
            handler,
        }
    }

    /// With these query parameters.
    pub fn query(mut self, query: &'static [(&'static str, &'static str)]) -> Route {
        self.query = query;
        self
    }

    /// With a request body of this schema.
    pub fn body(mut self, request: SchemaFn) -> Route {
        self.request = Some(request);
        self
    }
}

/// Every route of the API: the router and the OpenAPI document are both made from it.
pub static ROUTES: std::sync::LazyLock<Vec<Route>> = std::sync::LazyLock::new(|| {
    let mut r = Vec::new();
    r.extend(auth::routes());
    r.extend(tasks::routes());
    r.extend(runs::routes());
    r
});

/// The API's routes with their guards, under [`PREFIX`]; unknown paths under it answer
/// JSON 404, known paths with another method JSON 405.
pub fn router(state: Arc<ApiState>) -> Router {
    let mut router = Router::new();
    for route in ROUTES.iter() {
        let mut method_router = (route.handler)();
        if let Some(role) = route.role {
            let st = state.clone();
            method_router = method_router.route_layer(axum::middleware::from_fn(
                move |req: Request, next: Next| guard(st.clone(), role, req, next),
            ));
        }
        router = router.route(&format!("{PREFIX}{}", route.path), method_router);
    }
    router
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this method is not allowed here (see /api/v1/openapi.json)",
            )
        })
        .with_state(state)
}

/// The answer to a path no route has: JSON under the API, plain text elsewhere.
pub async fn fallback(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_route",
            "no such route (see /api/v1/openapi.json)",
        )
        .into_response()
    } else {
        super::download::plain(StatusCode::NOT_FOUND, "not found")
    }
}

/// How the caller proved who it is.
#[derive(Debug, Clone)]
pub enum Via {
    Token,
    /// The session cookie, with the session's CSRF token and the cookie's hash.
    Session {
        csrf: String,
        id_hash: String,
    },
}

/// Finds who calls, or why not.
async fn authenticate(
    st: &ApiState,
    headers: &HeaderMap,
    client: String,
) -> Result<(Actor, Via), ApiError> {
    let unauthorized = |code, msg: &str| ApiError::new(StatusCode::UNAUTHORIZED, code, msg);
    let now = st.clock.now();
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let token = v
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                unauthorized(
                    "unauthorized",
                    "the Authorization header must be `Bearer TOKEN`",
                )
            })?;
        let Some(t) = st
            .store
            .token_by_hash(&crate::access::sha256_hex(token))
            .await?
        else {
            return Err(unauthorized("unauthorized", "unknown API token"));
        };
        if let Some(why) = crate::access::token_refusal(&t, now) {
            let code = if t.revoked_at.is_some() {
                "token_revoked"
            } else {
                "token_expired"
            };
            return Err(unauthorized(code, why));
        }
        // Noted at most once a minute: a busy client does not write on every request.
        if t.last_used_at
            .is_none_or(|u| now - u > chrono::Duration::minutes(1))
        {
            let _ = st.store.touch_token(&t.id, now).await;
        }
        let actor = Actor {
            name: format!("token:{}", t.name),
            role: t.role,
            client: Some(client),
        };
        return Ok((actor, Via::Token));
    }
    let Some(cookie) = auth::session_cookie(headers) else {
        return Err(unauthorized(
            "unauthorized",
            "log in (POST /api/v1/login) or send `Authorization: Bearer TOKEN`",
        ));
    };
    let id_hash = crate::access::sha256_hex(&cookie);
    let Some(session) = st.store.session(&id_hash).await? else {
        return Err(unauthorized(
            "session_expired",
            "the session has ended: log in again",
        ));
    };
    if session.expires_at <= now {
        let _ = st.store.delete_session(&id_hash).await;
        return Err(unauthorized(
            "session_expired",
            "the session has expired: log in again",
        ));
    }
    // The role is read each time: a changed or removed user takes effect at once.
    let Some(user) = st.store.user(&session.user).await? else {
        return Err(unauthorized(
            "session_expired",
            "the session's user no longer exists",
        ));
    };
    let actor = Actor {
        name: format!("user:{}", user.name),
        role: user.role,
        client: Some(client),
    };
    Ok((
        actor,
        Via::Session {
            csrf: session.csrf,
            id_hash,
        },
    ))
}

/// Authenticates, checks CSRF on cookie-authenticated writes and the role, and hands
/// the [`Actor`] (and [`Via`]) to the handler.
async fn guard(st: Arc<ApiState>, role: Role, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
    let client = st.client(peer, req.headers());
    let (actor, via) = match authenticate(&st, req.headers(), client).await {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    let write = !matches!(*req.method(), Method::GET | Method::HEAD);
    if let (true, Via::Session { csrf, .. }) = (write, &via) {
        match req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
            None => {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "csrf_token_missing",
                    "a write with the session cookie needs the session's CSRF token in X-CSRF-Token",
                )
                .into_response();
            }
            Some(sent) if !crate::access::same_secret(sent, csrf) => {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "csrf_token_invalid",
                    "the X-CSRF-Token does not match the session's",
                )
                .into_response();
            }
            Some(_) => {}
        }
    }
    if actor.role < role {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this needs the role `{}` or above; {} has `{}`",
                role.as_str(),
                actor.name,
                actor.role.as_str()
            ),
        )
        .into_response();
    }
    req.extensions_mut().insert(actor);
    req.extensions_mut().insert(via);
    next.run(req).await
}

/// Refuses an API address beyond loopback while no user exists: the console would be
/// reachable from the network with nobody able to log in, and whoever sets it up next
/// should not find it open. `ferry validate` and `ferry serve` both ask.
pub fn check_exposure(listen: SocketAddr, users: usize) -> Result<(), String> {
    if listen.ip().is_loopback() || users > 0 {
        return Ok(());
    }
    Err(format!(
        "`{listen}` is beyond loopback, but no user exists: add one first \
         (`ferry users add NAME --role admin`), or listen on 127.0.0.1"
    ))
}

/// An instant from a query or body: RFC 3339.
pub fn parse_instant_param(name: &str, s: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            ApiError::bad_request(format!(
                "`{name}` `{s}` is not an RFC 3339 instant ({e}); example: 2026-11-25T02:30:00+08:00"
            ))
        })
}
