//! SQLite: the access concern (users, tokens, sessions, audit) and task revisions.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use crate::store::{
    Access, AuditFilter, AuditRecord, RevisionRecord, Revisions, Role, SessionRecord, StoreError,
    TokenRecord, UserRecord, fmt_instant, parse_instant,
};

fn instant(row: &SqliteRow, col: &str) -> Result<DateTime<Utc>, sqlx::Error> {
    let s: String = row.try_get(col)?;
    parse_instant(&s)
        .ok_or_else(|| sqlx::Error::Decode(format!("bad instant `{s}` in {col}").into()))
}

fn opt_instant(row: &SqliteRow, col: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    Ok(row
        .try_get::<Option<String>, _>(col)?
        .as_deref()
        .and_then(parse_instant))
}

fn role(row: &SqliteRow) -> Result<Role, sqlx::Error> {
    let r: String = row.try_get("role")?;
    Role::parse(&r).ok_or_else(|| sqlx::Error::Decode(format!("unknown role `{r}`").into()))
}

fn to_user(row: &SqliteRow) -> Result<UserRecord, sqlx::Error> {
    Ok(UserRecord {
        name: row.try_get("name")?,
        role: role(row)?,
        password_hash: row.try_get("password_hash")?,
        created_at: instant(row, "created_at")?,
        updated_at: instant(row, "updated_at")?,
    })
}

fn to_token(row: &SqliteRow) -> Result<TokenRecord, sqlx::Error> {
    Ok(TokenRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: role(row)?,
        token_hash: row.try_get("token_hash")?,
        created_by: row.try_get("created_by")?,
        created_at: instant(row, "created_at")?,
        expires_at: opt_instant(row, "expires_at")?,
        revoked_at: opt_instant(row, "revoked_at")?,
        last_used_at: opt_instant(row, "last_used_at")?,
    })
}

fn to_audit(row: &SqliteRow) -> Result<AuditRecord, sqlx::Error> {
    Ok(AuditRecord {
        id: row.try_get("id")?,
        at: instant(row, "at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        detail: row.try_get("detail")?,
        client: row.try_get("client")?,
    })
}

fn to_revision(row: &SqliteRow) -> Result<RevisionRecord, sqlx::Error> {
    let rev: i64 = row.try_get("rev")?;
    Ok(RevisionRecord {
        task: row.try_get("task")?,
        rev: rev.max(0) as u32,
        at: instant(row, "at")?,
        author: row.try_get("author")?,
        action: row.try_get("action")?,
        content: row.try_get("content")?,
    })
}

impl SqliteStore {
    async fn read_rows<T>(
        &self,
        q: sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
        f: fn(&SqliteRow) -> Result<T, sqlx::Error>,
    ) -> Result<Vec<T>, StoreError> {
        let rows = q
            .fetch_all(&mut *self.read_tx().await?)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(f)
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))
    }
}

impl SqliteStore {
    /// Ends a user's sessions in the transaction that changed or removed the user, and
    /// commits it; whether the user's row was there.
    async fn end_sessions(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Sqlite>,
        name: &str,
        changed: u64,
    ) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM sessions WHERE user_name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(changed == 1)
    }
}

#[async_trait]
impl Access for SqliteStore {
    async fn add_user(&self, u: &UserRecord) -> Result<bool, StoreError> {
        let res = self
            .write_one(
                sqlx::query(
                    "INSERT INTO users (name, role, password_hash, created_at, updated_at)
                     VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                )
                .bind(&u.name)
                .bind(u.role.as_str())
                .bind(&u.password_hash)
                .bind(fmt_instant(u.created_at))
                .bind(fmt_instant(u.updated_at)),
            )
            .await?;
        Ok(res.rows_affected() == 1)
    }

    async fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let q = sqlx::query("SELECT * FROM users WHERE name = ?").bind(name);
        Ok(self.read_rows(q, to_user).await?.pop())
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.read_rows(sqlx::query("SELECT * FROM users ORDER BY name"), to_user)
            .await
    }

    async fn set_password(
        &self,
        name: &str,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let res = sqlx::query("UPDATE users SET password_hash = ?, updated_at = ? WHERE name = ?")
            .bind(hash)
            .bind(fmt_instant(now))
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.end_sessions(tx, name, res.rows_affected()).await
    }

    async fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let res = sqlx::query("DELETE FROM users WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.end_sessions(tx, name, res.rows_affected()).await
    }

    async fn add_token(&self, t: &TokenRecord, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let live: Option<String> = sqlx::query_scalar(
            "SELECT id FROM api_tokens WHERE name = ? AND revoked_at IS NULL
               AND (expires_at IS NULL OR expires_at > ?)",
        )
        .bind(&t.name)
        .bind(fmt_instant(now))
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        if live.is_some() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO api_tokens (id, name, role, token_hash, created_by, created_at,
                                     expires_at, revoked_at, last_used_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
        )
        .bind(&t.id)
        .bind(&t.name)
        .bind(t.role.as_str())
        .bind(&t.token_hash)
        .bind(&t.created_by)
        .bind(fmt_instant(t.created_at))
        .bind(t.expires_at.map(fmt_instant))
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(true)
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let q = sqlx::query("SELECT * FROM api_tokens WHERE token_hash = ?").bind(hash);
        Ok(self.read_rows(q, to_token).await?.pop())
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let q = sqlx::query("SELECT * FROM api_tokens ORDER BY created_at DESC, id DESC");
        self.read_rows(q, to_token).await
    }

    async fn revoke_token(&self, name: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let res = self
            .write_one(
                sqlx::query(
                    "UPDATE api_tokens SET revoked_at = ?
                     WHERE (name = ? OR id = ?) AND revoked_at IS NULL",
                )
                .bind(fmt_instant(now))
                .bind(name)
                .bind(name),
            )
            .await?;
        Ok(res.rows_affected())
    }

    async fn touch_token(&self, id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.write_one(
            sqlx::query("UPDATE api_tokens SET last_used_at = ? WHERE id = ?")
                .bind(fmt_instant(now))
                .bind(id),
        )
        .await
        .map(|_| ())
    }

    async fn add_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM sessions WHERE expires_at <= ?")
            .bind(fmt_instant(s.created_at))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_name, csrf, client, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.id_hash)
        .bind(&s.user)
        .bind(&s.csrf)
        .bind(&s.client)
        .bind(fmt_instant(s.created_at))
        .bind(fmt_instant(s.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        let q = sqlx::query("SELECT * FROM sessions WHERE id_hash = ?").bind(id_hash);
        Ok(self
            .read_rows(q, |row| {
                Ok(SessionRecord {
                    id_hash: row.try_get("id_hash")?,
                    user: row.try_get("user_name")?,
                    csrf: row.try_get("csrf")?,
                    client: row.try_get("client")?,
                    created_at: instant(row, "created_at")?,
                    expires_at: instant(row, "expires_at")?,
                })
            })
            .await?
            .pop())
    }

    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        self.write_one(sqlx::query("DELETE FROM sessions WHERE id_hash = ?").bind(id_hash))
            .await
            .map(|_| ())
    }

    async fn record_audit(&self, a: &AuditRecord) -> Result<(), StoreError> {
        self.write_one(
            sqlx::query(
                "INSERT INTO audit (id, at, actor, action, target, detail, client)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&a.id)
            .bind(fmt_instant(a.at))
            .bind(&a.actor)
            .bind(&a.action)
            .bind(&a.target)
            .bind(&a.detail)
            .bind(&a.client),
        )
        .await
        .map(|_| ())
    }

    async fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let mut sql = String::from("SELECT * FROM audit WHERE 1 = 1");
        let mut binds: Vec<String> = Vec::new();
        for (col, v) in [
            ("actor", &f.actor),
            ("action", &f.action),
            ("target", &f.target),
        ] {
            if let Some(v) = v {
                sql.push_str(&format!(" AND {col} = ?"));
                binds.push(v.clone());
            }
        }
        if let Some(t) = f.since {
            sql.push_str(" AND at >= ?");
            binds.push(fmt_instant(t));
        }
        if let Some(t) = f.until {
            sql.push_str(" AND at < ?");
            binds.push(fmt_instant(t));
        }
        if let Some((at, id)) = &f.before {
            sql.push_str(" AND (at < ? OR (at = ? AND id < ?))");
            binds.extend([fmt_instant(*at), fmt_instant(*at), id.clone()]);
        }
        sql.push_str(" ORDER BY at DESC, id DESC LIMIT ?");
        // Only fixed fragments are formatted in; every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in &binds {
            q = q.bind(b);
        }
        let q = q.bind(f.limit.clamp(1, 10_000) as i64);
        self.read_rows(q, to_audit).await
    }
}

#[async_trait]
impl Revisions for SqliteStore {
    async fn add_revision(
        &self,
        task: &str,
        at: DateTime<Utc>,
        author: &str,
        action: &str,
        content: Option<&str>,
    ) -> Result<u32, StoreError> {
        let mut tx = self.write_tx().await?;
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(rev) FROM task_revisions WHERE task = ?")
                .bind(task)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        let rev = last.unwrap_or(0) + 1;
        sqlx::query(
            "INSERT INTO task_revisions (task, rev, at, author, action, content)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(task)
        .bind(rev)
        .bind(fmt_instant(at))
        .bind(author)
        .bind(action)
        .bind(content)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(rev as u32)
    }

    async fn revisions(&self, task: &str) -> Result<Vec<RevisionRecord>, StoreError> {
        let q = sqlx::query("SELECT * FROM task_revisions WHERE task = ? ORDER BY rev").bind(task);
        self.read_rows(q, to_revision).await
    }

    async fn revision(&self, task: &str, rev: u32) -> Result<Option<RevisionRecord>, StoreError> {
        let q = sqlx::query("SELECT * FROM task_revisions WHERE task = ? AND rev = ?")
            .bind(task)
            .bind(i64::from(rev));
        Ok(self.read_rows(q, to_revision).await?.pop())
    }
}
