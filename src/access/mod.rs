//! Who may do what through the HTTP API (and the coming console): the rules; the
//! records live in the store ([`crate::store::Access`]).
//!
//! - Roles ([`Role`]): `viewer` reads, `operator` also runs, cancels, retries, pauses and
//!   resumes, `editor` also writes tasks, `admin` also manages users and tokens and reads
//!   the audit trail. A route names the least role it needs.
//! - Users log in with a password, kept as an argon2id hash ([`hash_password`],
//!   [`verify_password`]); an unknown user costs the same hashing as a known one
//!   ([`verify_unknown`]), so timing tells nothing about which names exist.
//! - API tokens ([`new_token`]) are `fy_<id>_<secret>` with 256 random bits, shown once
//!   and stored as their SHA-256 (a token is not a password: it has full entropy, so a
//!   fast hash is enough and lookups stay one indexed read). `Authorization: Bearer`.
//! - Console sessions: a random cookie value stored as its SHA-256, with a CSRF token
//!   that every cookie-authenticated write must send back (`X-CSRF-Token`).
//! - Login attempts are limited per account and per client address ([`LoginLimiter`]).
//! - [`Actor`] names who did something in the audit trail and on runs started by hand.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::store::{AuditRecord, Store, StoreError};
pub use crate::store::{Role, SessionRecord, TokenRecord, UserRecord};

/// The prefix of every API token (so that secret scanners can find leaked ones).
pub const TOKEN_PREFIX: &str = "fy_";

/// Shortest password `ferry users add` accepts.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// `n` random bytes from the OS as URL-safe base64 without padding.
pub fn random_text(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("random bytes from the OS");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of a token or cookie value, hex.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The argon2id hash (PHC string) of a password, with a random salt. CPU-heavy: call it
/// on a blocking thread.
pub fn hash_password(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("random bytes from the OS");
    let salt = SaltString::encode_b64(&salt).expect("a 16-byte salt");
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2id with default parameters")
        .to_string()
}

/// Whether `password` matches the PHC `hash` (false for a malformed hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Spends the time of one password check for a user that does not exist.
pub fn verify_unknown(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let hash = DUMMY.get_or_init(|| hash_password(&random_text(16)));
    let _ = verify_password(password, hash);
}

/// Checks a user or token name: 1 to 64 letters, digits, `.`, `_`, `-`, `@`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid name: use 1 to 64 letters, digits, `.`, `_`, `-` or `@`"
        ))
    }
}

/// A role from its name, or a message listing the roles.
pub fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| {
        format!(
            "unknown role `{s}` (one of: {}){}",
            Role::NAMES.join(", "),
            crate::config::problem::hint(s, Role::NAMES)
        )
    })
}

/// A new API token: the text to show once, and the record to store.
pub fn new_token(
    name: &str,
    role: Role,
    created_by: &str,
    now: DateTime<Utc>,
    expires: Option<Duration>,
) -> (String, TokenRecord) {
    let id = hex::encode(random_text(6).as_bytes())[..12].to_string();
    let token = format!("{TOKEN_PREFIX}{id}_{}", random_text(32));
    let record = TokenRecord {
        id,
        name: name.to_string(),
        role,
        token_hash: sha256_hex(&token),
        created_by: created_by.to_string(),
        created_at: now,
        expires_at: expires.and_then(|d| chrono::Duration::from_std(d).ok().map(|d| now + d)),
        revoked_at: None,
        last_used_at: None,
    };
    (token, record)
}

/// Why a token is refused, if it is.
pub fn token_refusal(t: &TokenRecord, now: DateTime<Utc>) -> Option<&'static str> {
    if t.revoked_at.is_some() {
        Some("the token was revoked")
    } else if t.expires_at.is_some_and(|e| e <= now) {
        Some("the token has expired")
    } else {
        None
    }
}

/// Who did something: shown in the audit trail, on pauses and on runs started by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `user:alice`, `token:ci`, or `root@db1` for the command line.
    pub name: String,
    pub role: Role,
    /// The client address (none for the command line).
    pub client: Option<String>,
}

/// Appends to the audit trail; a store that fails is logged and answered.
pub async fn audit(
    store: &dyn Store,
    actor: &str,
    client: Option<&str>,
    action: &str,
    target: &str,
    detail: Option<String>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let rec = AuditRecord {
        id: uuid::Uuid::now_v7().to_string(),
        at: now,
        actor: actor.to_string(),
        action: action.to_string(),
        target: target.to_string(),
        detail,
        client: client.map(String::from),
    };
    let done = store.record_audit(&rec).await;
    if let Err(e) = &done {
        tracing::error!(%actor, %action, %target, error = %e, "cannot record the audit line");
    }
    done
}

/// Failed logins allowed per account within [`LIMIT_WINDOW`].
pub const ACCOUNT_FAILURES: u32 = 5;
/// Failed logins allowed per client address within [`LIMIT_WINDOW`].
pub const ADDRESS_FAILURES: u32 = 20;
/// The window of the login limits.
pub const LIMIT_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Counts failed logins per account and per client address; once either reaches its
/// limit, logins for it are refused (even with the right password) until the window
/// that started with its first failure ends. In memory: a restart forgets, which costs
/// an attacker a restart per few guesses.
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, (DateTime<Utc>, u32)>>,
}

impl LoginLimiter {
    fn keys(account: &str, client: &str) -> [(String, u32); 2] {
        [
            (
                format!("account:{}", account.to_lowercase()),
                ACCOUNT_FAILURES,
            ),
            (format!("client:{client}"), ADDRESS_FAILURES),
        ]
    }

    /// `Err(wait)` while the account or the address is locked out.
    pub fn check(&self, account: &str, client: &str, now: DateTime<Utc>) -> Result<(), Duration> {
        let map = self.failures.lock().expect("login limiter lock");
        let window = chrono::Duration::from_std(LIMIT_WINDOW).expect("window");
        let mut wait = None;
        for (key, max) in Self::keys(account, client) {
            if let Some((start, n)) = map.get(&key)
                && *n >= max
                && *start + window > now
            {
                let left = (*start + window - now).to_std().unwrap_or_default();
                wait = Some(wait.map_or(left, |w: Duration| w.max(left)));
            }
        }
        wait.map_or(Ok(()), Err)
    }

    /// Counts a failed login.
    pub fn failed(&self, account: &str, client: &str, now: DateTime<Utc>) {
        let mut map = self.failures.lock().expect("login limiter lock");
        let window = chrono::Duration::from_std(LIMIT_WINDOW).expect("window");
        map.retain(|_, (start, _)| *start + window > now);
        for (key, _) in Self::keys(account, client) {
            let e = map.entry(key).or_insert((now, 0));
            e.1 += 1;
        }
    }

    /// A successful login clears its account's count (not the address's).
    pub fn succeeded(&self, account: &str) {
        let mut map = self.failures.lock().expect("login limiter lock");
        map.remove(&format!("account:{}", account.to_lowercase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse battery");
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("x", "not a hash"));
        assert_ne!(h, hash_password("correct horse battery"), "salted");
    }

    #[test]
    fn tokens_are_prefixed_random_and_stored_hashed() {
        let now = crate::clock::wall_now();
        let (t, rec) = new_token("ci", Role::Operator, "root@n", now, None);
        assert!(t.starts_with(&format!("{TOKEN_PREFIX}{}_", rec.id)), "{t}");
        assert!(t.len() > 50);
        assert_eq!(rec.token_hash, sha256_hex(&t));
        assert!(!rec.token_hash.contains(&t));
        let (t2, _) = new_token("ci", Role::Operator, "root@n", now, None);
        assert_ne!(t, t2);
        assert_eq!(token_refusal(&rec, now), None);
        let mut expired = rec.clone();
        expired.expires_at = Some(now);
        assert_eq!(token_refusal(&expired, now), Some("the token has expired"));
    }

    #[test]
    fn the_limiter_locks_an_account_and_an_address_for_the_window() {
        let l = LoginLimiter::default();
        let t0 = crate::clock::wall_now();
        for _ in 0..ACCOUNT_FAILURES {
            assert!(l.check("alice", "10.0.0.1", t0).is_ok());
            l.failed("alice", "10.0.0.1", t0);
        }
        let wait = l.check("Alice", "10.0.0.2", t0).unwrap_err();
        assert_eq!(wait, LIMIT_WINDOW);
        assert!(
            l.check("bob", "10.0.0.1", t0).is_ok(),
            "address below its limit"
        );
        let later = t0 + chrono::Duration::from_std(LIMIT_WINDOW).unwrap();
        assert!(l.check("alice", "10.0.0.1", later).is_ok());
        for i in 0..ADDRESS_FAILURES {
            l.failed(&format!("u{i}"), "10.0.0.9", later);
        }
        assert!(l.check("someone", "10.0.0.9", later).is_err());
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
