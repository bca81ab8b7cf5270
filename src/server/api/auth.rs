//! Logins and what admins manage: `POST /login` (a console session: an HttpOnly,
//! SameSite=Strict cookie, `Secure` behind HTTPS, and the CSRF token the console sends
//! back with each write), `POST /logout`, `GET /session` (who am I, and the CSRF token
//! again), `GET /audit`, `GET /users`, `GET|POST /tokens`, `DELETE /tokens/{name}`.
//! The OpenAPI document is served here too.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    ApiError, ApiResult, ApiState, Json, Route, SESSION_COOKIE, Via, json_response, parse_body,
    parse_instant_param, schema,
};
use crate::access::{self, Actor, Role};
use crate::store::{AuditFilter, AuditRecord, SessionRecord};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(
            Method::GET,
            "/openapi.json",
            None,
            "This API's OpenAPI 3.1 document, generated from the routes",
            schema::<serde_json::Value>,
            || get(openapi),
        ),
        Route::new(
            Method::POST,
            "/login",
            None,
            "Log in with a user's password: sets the session cookie, answers the CSRF token (rate-limited per account and address)",
            schema::<SessionView>,
            || post(login),
        )
        .body(schema::<LoginBody>),
        Route::new(
            Method::POST,
            "/logout",
            Some(Role::Viewer),
            "End the session (with the cookie: needs the CSRF token)",
            schema::<SessionView>,
            || post(logout),
        ),
        Route::new(
            Method::GET,
            "/session",
            Some(Role::Viewer),
            "Who is calling, with which role (and the session's CSRF token)",
            schema::<SessionView>,
            || get(session),
        ),
        Route::new(
            Method::GET,
            "/audit",
            Some(Role::Admin),
            "The audit trail, newest first (keyset pages: pass `next_cursor` back as `cursor`)",
            schema::<AuditPage>,
            || get(audit),
        )
        .query(&[
                ("actor", "`user:NAME`, `token:NAME` or `LOGIN@NODE`"),
                ("action", "e.g. `task.replace`, `run.start`, `login.failed`"),
                ("target", "a task, run id, user or token name"),
                ("since", "at or after this RFC 3339 instant"),
                ("until", "before this RFC 3339 instant"),
                ("limit", "1 to 1000 (default 100)"),
                ("cursor", "the `next_cursor` of the previous page"),
            ]),
        Route::new(
            Method::GET,
            "/users",
            Some(Role::Admin),
            "The console users and their roles (`ferry users add|passwd|remove` manages them)",
            schema::<Vec<UserView>>,
            || get(users),
        ),
        Route::new(
            Method::GET,
            "/tokens",
            Some(Role::Admin),
            "The API tokens (never the tokens themselves)",
            schema::<Vec<TokenView>>,
            || get(tokens),
        ),
        Route::new(
            Method::POST,
            "/tokens",
            Some(Role::Admin),
            "Create an API token; the answer is the only time it is shown",
            schema::<NewToken>,
            || post(create_token),
        )
        .body(schema::<TokenBody>),
        Route::new(
            Method::DELETE,
            "/tokens/{name}",
            Some(Role::Admin),
            "Revoke the API token of this name (or id)",
            schema::<Revoked>,
            || delete(revoke_token),
        ),
    ]
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    pub user: String,
    pub password: String,
}

/// Who is calling.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionView {
    /// `user:NAME` or `token:NAME`.
    pub actor: String,
    pub role: Role,
    /// With a session: the token every write must send as `X-CSRF-Token`.
    pub csrf_token: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditRecord>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct UserView {
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    pub name: String,
    pub role: Role,
    /// How long it works, e.g. `90d` (default: until revoked).
    pub expires: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct NewToken {
    /// The token: shown this once, stored only as its SHA-256.
    pub token: String,
    #[serde(flatten)]
    pub info: TokenView,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Revoked {
    pub name: String,
    pub revoked: u64,
}

/// The session cookie's value, if the request has one.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

async fn openapi() -> Response {
    json_response(StatusCode::OK, &super::openapi::document())
}

fn secure(st: &ApiState, headers: &HeaderMap) -> bool {
    st.http.secure_cookies
        || (st.http.trust_proxy
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|p| p.eq_ignore_ascii_case("https")))
}

fn cookie(value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let mut c =
        format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}");
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).expect("cookie text is ASCII")
}

async fn login(
    State(st): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: LoginBody = parse_body(&body)?;
    let client = st.client(peer, &headers);
    let now = st.clock.now();
    if let Err(wait) = st.limiter.check(&body.user, &client, now) {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            format!(
                "too many failed logins for this account or address: try again in {}",
                crate::config::format_duration(wait)
            ),
        );
        e.retry_after_secs = Some(wait.as_secs().max(1));
        return Err(e);
    }
    let user = st.store.user(&body.user).await?;
    let password = body.password.clone();
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    // Unknown users cost one hash check too: timing tells nothing about names.
    let ok = tokio::task::spawn_blocking(move || match hash {
        Some(h) => access::verify_password(&password, &h),
        None => {
            access::verify_unknown(&password);
            false
        }
    })
    .await
    .unwrap_or(false);
    let Some(user) = user.filter(|_| ok) else {
        st.limiter.failed(&body.user, &client, now);
        let _ = access::audit(
            &*st.store,
            &format!("user:{}", body.user.chars().take(64).collect::<String>()),
            Some(&client),
            "login.failed",
            "session",
            None,
            now,
        )
        .await;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            "wrong user name or password",
        ));
    };
    st.limiter.succeeded(&user.name);
    let value = access::random_text(32);
    let ttl =
        chrono::Duration::from_std(st.http.session_ttl).unwrap_or(chrono::Duration::hours(12));
    let session = SessionRecord {
        id_hash: access::sha256_hex(&value),
        user: user.name.clone(),
        csrf: access::random_text(32),
        client: client.clone(),
        created_at: now,
        expires_at: now + ttl,
    };
    st.store.add_session(&session).await?;
    let actor = format!("user:{}", user.name);
    let _ = access::audit(
        &*st.store,
        &actor,
        Some(&client),
        "login",
        "session",
        None,
        now,
    )
    .await;
    let view = SessionView {
        actor,
        role: user.role,
        csrf_token: Some(session.csrf.clone()),
        expires_at: Some(session.expires_at),
    };
    let mut r = json_response(StatusCode::OK, &view);
    r.headers_mut().insert(
        header::SET_COOKIE,
        cookie(&value, ttl.num_seconds(), secure(&st, &headers)),
    );
    Ok(r)
}

async fn logout(
    State(st): State<Arc<ApiState>>,
    Extension(actor): Extension<Actor>,
    Extension(via): Extension<Via>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Via::Session { id_hash, .. } = &via {
        st.store.delete_session(id_hash).await?;
    }
    st.audit(&actor, "logout", "session", None).await;
    let view = SessionView {
        actor: actor.name,
        role: actor.role,
        csrf_token: None,
        expires_at: None,
    };
    let mut r = json_response(StatusCode::OK, &view);
    r.headers_mut()
        .insert(header::SET_COOKIE, cookie("", 0, secure(&st, &headers)));
    Ok(r.into_response())
}

async fn session(
    State(st): State<Arc<ApiState>>,
    Extension(actor): Extension<Actor>,
    Extension(via): Extension<Via>,
) -> ApiResult<SessionView> {
    let (csrf_token, expires_at) = match &via {
        Via::Session { csrf, id_hash } => (
            Some(csrf.clone()),
            st.store.session(id_hash).await?.map(|s| s.expires_at),
        ),
        Via::Token => (None, None),
    };
    Ok(Json(SessionView {
        actor: actor.name,
        role: actor.role,
        csrf_token,
        expires_at,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn audit(
    State(st): State<Arc<ApiState>>,
    Query(p): Query<AuditParams>,
) -> ApiResult<AuditPage> {
    use base64::Engine;
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("`limit` must be between 1 and 1000"));
    }
    let before = match &p.cursor {
        Some(c) => {
            let bad = || ApiError::bad_request("`cursor` is not one this API gave out");
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c)
                .map_err(|_| bad())?;
            let raw = String::from_utf8(raw).map_err(|_| bad())?;
            let (at, id) = raw.split_once('|').ok_or_else(bad)?;
            Some((parse_instant_param("cursor", at)?, id.to_string()))
        }
        None => None,
    };
    let filter = AuditFilter {
        actor: p.actor,
        action: p.action,
        target: p.target,
        since: p
            .since
            .as_deref()
            .map(|s| parse_instant_param("since", s))
            .transpose()?,
        until: p
            .until
            .as_deref()
            .map(|s| parse_instant_param("until", s))
            .transpose()?,
        before,
        limit: limit + 1,
    };
    let mut entries = st.store.audit(&filter).await?;
    let more = entries.len() > limit;
    entries.truncate(limit);
    let next_cursor = more.then(|| entries.last()).flatten().map(|e| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            "{}|{}",
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            e.id
        ))
    });
    Ok(Json(AuditPage {
        entries,
        next_cursor,
    }))
}

async fn users(State(st): State<Arc<ApiState>>) -> ApiResult<Vec<UserView>> {
    Ok(Json(
        st.store
            .users()
            .await?
            .into_iter()
            .map(|u| UserView {
                name: u.name,
                role: u.role,
                created_at: u.created_at,
                updated_at: u.updated_at,
            })
            .collect(),
    ))
}

fn token_view(t: crate::store::TokenRecord) -> TokenView {
    TokenView {
        id: t.id,
        name: t.name,
        role: t.role,
        created_by: t.created_by,
        created_at: t.created_at,
        expires_at: t.expires_at,
        revoked_at: t.revoked_at,
        last_used_at: t.last_used_at,
    }
}

async fn tokens(State(st): State<Arc<ApiState>>) -> ApiResult<Vec<TokenView>> {
    Ok(Json(
        st.store
            .tokens()
            .await?
            .into_iter()
            .map(token_view)
            .collect(),
    ))
}

async fn create_token(
    State(st): State<Arc<ApiState>>,
    Extension(actor): Extension<Actor>,
    body: Bytes,
) -> ApiResult<NewToken> {
    let body: TokenBody = parse_body(&body)?;
    access::check_name(&body.name).map_err(ApiError::bad_request)?;
    let expires = body
        .expires
        .as_deref()
        .map(crate::config::parse_duration)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("`expires`: {e}")))?;
    let now = st.clock.now();
    let (token, record) = access::new_token(&body.name, body.role, &actor.name, now, expires);
    if !st.store.add_token(&record, now).await? {
        return Err(ApiError::conflict(format!(
            "a token named `{}` is in use: revoke it first or choose another name",
            body.name
        )));
    }
    st.audit(
        &actor,
        "token.create",
        &body.name,
        Some(body.role.as_str().into()),
    )
    .await;
    Ok(Json(NewToken {
        token,
        info: token_view(record),
    }))
}

async fn revoke_token(
    State(st): State<Arc<ApiState>>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> ApiResult<Revoked> {
    let n = st.store.revoke_token(&name, st.clock.now()).await?;
    if n == 0 {
        return Err(ApiError::not_found(format!("no live token named `{name}`")));
    }
    st.audit(&actor, "token.revoke", &name, None).await;
    Ok(Json(Revoked { name, revoked: n }))
}
