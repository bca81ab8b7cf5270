//! SQLite: the mail concern (what ingest did with each mail).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use crate::store::{
    Claim, Mail, MailClaim, MailRecord, ReplySlot, Status, StoreError, fmt_instant, parse_instant,
};

/// The reason code a request over its quota is recorded with.
const QUOTA_EXCEEDED: &str = "quota_exceeded";

#[async_trait]
impl Mail for SqliteStore {
    async fn mailbox_validity(&self, mailbox: &str) -> Result<Option<u32>, StoreError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT uidvalidity FROM mail_mailboxes WHERE mailbox = ?")
                .bind(mailbox)
                .fetch_optional(&mut *self.read_tx().await?)
                .await
                .map_err(|e| self.err(e))?;
        Ok(v.map(|v| v as u32))
    }

    async fn set_mailbox_validity(
        &self,
        mailbox: &str,
        validity: u32,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.write_one(
            sqlx::query(
                "INSERT INTO mail_mailboxes (mailbox, uidvalidity, seen_at) VALUES (?, ?, ?)
                 ON CONFLICT (mailbox) DO UPDATE SET uidvalidity = excluded.uidvalidity,
                     seen_at = excluded.seen_at",
            )
            .bind(mailbox)
            .bind(i64::from(validity))
            .bind(fmt_instant(at)),
        )
        .await?;
        Ok(())
    }

    async fn find_mail(
        &self,
        mailbox: &str,
        uidvalidity: u32,
        uid: u32,
        message_key: &str,
    ) -> Result<Option<MailRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM mail_requests
             WHERE (mailbox = ? AND uidvalidity = ? AND uid = ?) OR message_key = ?
             ORDER BY id LIMIT 1",
        )
        .bind(mailbox)
        .bind(i64::from(uidvalidity))
        .bind(i64::from(uid))
        .bind(message_key)
        .fetch_optional(&mut *self.read_tx().await?)
        .await
        .map_err(|e| self.err(e))?;
        row.as_ref()
            .map(row_to_mail)
            .transpose()
            .map_err(|e| self.err(e))
    }

    async fn claim_mail(
        &self,
        rec: &MailRecord,
        quota: u32,
        run: Option<&Claim>,
    ) -> Result<MailClaim, StoreError> {
        let mut tx = self.write_tx().await?;
        let known = sqlx::query(
            "SELECT * FROM mail_requests
             WHERE (mailbox = ? AND uidvalidity = ? AND uid = ?) OR message_key = ?
             ORDER BY id LIMIT 1",
        )
        .bind(&rec.mailbox)
        .bind(i64::from(rec.uidvalidity))
        .bind(i64::from(rec.uid))
        .bind(&rec.message_key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        if let Some(row) = known {
            let r = row_to_mail(&row).map_err(|e| self.err(e))?;
            return Ok(MailClaim::Known(Box::new(r)));
        }
        let mut rec = rec.clone();
        let mut claim = MailClaim::New;
        if rec.verdict == "accept" {
            let used: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM mail_requests
                 WHERE sender = ? AND day = ? AND verdict = 'accept'",
            )
            .bind(&rec.sender)
            .bind(&rec.day)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
            if used >= i64::from(quota) {
                rec.verdict = "reject".into();
                rec.reason = Some(QUOTA_EXCEEDED.into());
                rec.detail = format!("{used} requests today; the quota is {quota}");
                rec.reply = true;
                rec.run_id = None;
                claim = MailClaim::OverQuota;
            }
        }
        sqlx::query(
            "INSERT INTO mail_requests (mailbox, uidvalidity, uid, message_key, message_id,
                 sender, subject, verdict, reason, detail, reply, database, run_id,
                 received_at, day, folder, moved_at, replied_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&rec.mailbox)
        .bind(i64::from(rec.uidvalidity))
        .bind(i64::from(rec.uid))
        .bind(&rec.message_key)
        .bind(&rec.message_id)
        .bind(&rec.sender)
        .bind(&rec.subject)
        .bind(&rec.verdict)
        .bind(&rec.reason)
        .bind(&rec.detail)
        .bind(rec.reply)
        .bind(&rec.database)
        .bind(&rec.run_id)
        .bind(fmt_instant(rec.received_at))
        .bind(&rec.day)
        .bind(&rec.folder)
        .bind(rec.moved_at.map(fmt_instant))
        .bind(rec.replied_at.map(fmt_instant))
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        if let (Some(run), MailClaim::New) = (run, &claim) {
            let mut run = run.clone();
            // Two requests of one sender in one millisecond (two nodes): the next free one.
            for _ in 0..1000 {
                if super::runs::insert_run(&mut tx, &run, Status::Running, None, None)
                    .await
                    .map_err(|e| self.err(e))?
                {
                    break;
                }
                run.scheduled_at += chrono::Duration::milliseconds(1);
            }
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(claim)
    }

    async fn mail_moved(&self, message_key: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.write_one(
            sqlx::query(
                "UPDATE mail_requests SET moved_at = ? WHERE message_key = ? AND moved_at IS NULL",
            )
            .bind(fmt_instant(at))
            .bind(message_key),
        )
        .await?;
        Ok(())
    }

    async fn reserve_reply(
        &self,
        message_key: &str,
        cap: u32,
        at: DateTime<Utc>,
    ) -> Result<ReplySlot, StoreError> {
        let mut tx = self.write_tx().await?;
        let row: Option<(Option<String>, String, Option<String>, i64)> = sqlx::query_as(
            "SELECT sender, day, replied_at, capped FROM mail_requests WHERE message_key = ?",
        )
        .bind(message_key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        let Some((sender, day, replied_at, capped)) = row else {
            return Err(StoreError::Other {
                path: self.path.display().to_string(),
                message: format!("no mail is recorded with key {message_key}"),
            });
        };
        if replied_at.is_some() || capped != 0 {
            return Ok(if replied_at.is_some() {
                ReplySlot::AlreadyReplied
            } else {
                ReplySlot::CapReached { first: false }
            });
        }
        let (replies, capped_before): (i64, i64) = sqlx::query_as(
            "SELECT count(replied_at), coalesce(sum(capped), 0) FROM mail_requests
             WHERE sender IS ? AND day = ?",
        )
        .bind(&sender)
        .bind(&day)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        let slot = if replies < i64::from(cap) {
            sqlx::query("UPDATE mail_requests SET replied_at = ? WHERE message_key = ?")
                .bind(fmt_instant(at))
                .bind(message_key)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
            ReplySlot::Granted
        } else {
            sqlx::query("UPDATE mail_requests SET capped = 1 WHERE message_key = ?")
                .bind(message_key)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
            ReplySlot::CapReached {
                first: capped_before == 0,
            }
        };
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(slot)
    }

    async fn mail_records(&self, limit: u32) -> Result<Vec<MailRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM mail_requests ORDER BY id DESC LIMIT ?")
            .bind(i64::from(limit))
            .fetch_all(&mut *self.read_tx().await?)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(row_to_mail)
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))
    }
}

fn row_to_mail(row: &SqliteRow) -> Result<MailRecord, sqlx::Error> {
    let instant = |name: &str| -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        let v: Option<String> = row.try_get(name)?;
        Ok(v.as_deref().and_then(parse_instant))
    };
    let received: String = row.try_get("received_at")?;
    let uidvalidity: i64 = row.try_get("uidvalidity")?;
    let uid: i64 = row.try_get("uid")?;
    Ok(MailRecord {
        mailbox: row.try_get("mailbox")?,
        uidvalidity: uidvalidity as u32,
        uid: uid as u32,
        message_key: row.try_get("message_key")?,
        message_id: row.try_get("message_id")?,
        sender: row.try_get("sender")?,
        subject: row.try_get("subject")?,
        verdict: row.try_get("verdict")?,
        reason: row.try_get("reason")?,
        detail: row.try_get("detail")?,
        reply: row.try_get("reply")?,
        database: row.try_get("database")?,
        run_id: row.try_get("run_id")?,
        received_at: parse_instant(&received)
            .ok_or_else(|| sqlx::Error::Decode(format!("bad instant `{received}`").into()))?,
        day: row.try_get("day")?,
        folder: row.try_get("folder")?,
        moved_at: instant("moved_at")?,
        replied_at: instant("replied_at")?,
    })
}
