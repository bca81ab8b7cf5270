//! The access concern ([`Access`]): who may use the HTTP API and the console, and what
//! people did. Users (argon2id password hashes, never passwords), API tokens (a SHA-256
//! of the token, never the token), console sessions (a SHA-256 of the cookie value, with
//! its CSRF token) and the audit trail. Nothing here decides anything: the rules are in
//! [`crate::access`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;

/// What a user or token may do; each role may do everything the roles before it may.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything (tasks, runs, deliveries, status); no secret is ever shown.
    Viewer,
    /// And runs tasks now, cancels runs, retries deliveries, pauses and resumes tasks,
    /// tests datasources and channels.
    Operator,
    /// And writes tasks (create, replace, delete, restore a revision).
    Editor,
    /// And manages users and tokens, reads the audit trail.
    Admin,
}

impl Role {
    pub const NAMES: [&'static str; 4] = ["viewer", "operator", "editor", "admin"];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "viewer" => Role::Viewer,
            "operator" => Role::Operator,
            "editor" => Role::Editor,
            "admin" => Role::Admin,
            _ => return None,
        })
    }
}

/// A console user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    pub role: Role,
    /// The argon2id hash as a PHC string (`$argon2id$v=19$…`).
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An API token (the token itself is shown once, when created, and never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// A random id, also the token's visible prefix.
    pub id: String,
    /// Unique among the tokens not revoked.
    pub name: String,
    pub role: Role,
    /// SHA-256 of the whole token, hex.
    pub token_hash: String,
    /// Who created it.
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A console session (the cookie value is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 of the cookie value, hex.
    pub id_hash: String,
    pub user: String,
    /// The CSRF token every cookie-authenticated write must send back.
    pub csrf: String,
    /// The client address that logged in.
    pub client: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// One line of the audit trail: who did what, when, from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct AuditRecord {
    /// Time-ordered (UUID v7).
    pub id: String,
    pub at: DateTime<Utc>,
    /// `user:NAME`, `token:NAME`, or `LOGIN@NODE` for the command line.
    pub actor: String,
    /// `task.create`, `task.replace`, `task.delete`, `task.restore`, `task.pause`,
    /// `task.resume`, `run.start`, `run.cancel`, `delivery.retry`, `user.add`,
    /// `user.passwd`, `user.remove`, `token.create`, `token.revoke`, `login`,
    /// `login.failed`, `logout`, `datasource.test`, `channel.test`.
    pub action: String,
    /// What it was done to (a task, a run id, a user, a token name).
    pub target: String,
    /// More about it (a run id, a revision, a reason).
    pub detail: Option<String>,
    /// The client address (none for the command line).
    pub client: Option<String>,
}

/// Which audit lines to list: newest first, before the keyset `before` (at, id).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub before: Option<(DateTime<Utc>, String)>,
    pub limit: usize,
}

/// Users, tokens, sessions and the audit trail.
#[async_trait]
pub trait Access: Send + Sync {
    /// Adds a user; false when the name is taken.
    async fn add_user(&self, user: &UserRecord) -> Result<bool, StoreError>;

    async fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError>;

    /// Every user, by name.
    async fn users(&self) -> Result<Vec<UserRecord>, StoreError>;

    /// Replaces a user's password hash and ends the user's sessions; false when there is
    /// no such user.
    async fn set_password(
        &self,
        name: &str,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Removes a user and the user's sessions; false when there is no such user.
    async fn remove_user(&self, name: &str) -> Result<bool, StoreError>;

    /// Adds a token; false when a token of that name is neither revoked nor expired at
    /// `now`.
    async fn add_token(&self, token: &TokenRecord, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// The token with this hash (revoked and expired ones too: the caller says why it is
    /// refused).
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError>;

    /// Every token, newest first.
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;

    /// Revokes the tokens of this name (or id) that are not revoked yet; how many.
    async fn revoke_token(&self, name: &str, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Notes that a token was used (at most the caller's precision).
    async fn touch_token(&self, id: &str, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Adds a session, removing the sessions that expired before `session.created_at`.
    async fn add_session(&self, session: &SessionRecord) -> Result<(), StoreError>;

    async fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>, StoreError>;

    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError>;

    /// Appends a line to the audit trail.
    async fn record_audit(&self, rec: &AuditRecord) -> Result<(), StoreError>;

    /// Audit lines, newest first.
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError>;
}
