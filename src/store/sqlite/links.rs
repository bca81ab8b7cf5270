//! SQLite: the links concern (download links and their requests).

use async_trait::async_trait;
use sqlx::Row;

use super::{SqliteStore, row_to_link};
use crate::store::{DownloadRecord, LinkRecord, Links, StoreError, fmt_instant, parse_instant};

#[async_trait]
impl Links for SqliteStore {
    async fn ensure_link(&self, link: &LinkRecord) -> Result<LinkRecord, StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO links (id, run_id, path, name, bytes, sha256, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (run_id, path) DO NOTHING",
        )
        .bind(&link.id)
        .bind(&link.run_id)
        .bind(&link.path)
        .bind(&link.name)
        .bind(link.bytes as i64)
        .bind(&link.sha256)
        .bind(fmt_instant(link.created_at))
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        let row = sqlx::query("SELECT * FROM links WHERE run_id = ? AND path = ?")
            .bind(&link.run_id)
            .bind(&link.path)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        row_to_link(&row).map_err(|e| self.err(e))
    }

    async fn link(&self, id: &str) -> Result<Option<LinkRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM links WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *self.read_tx().await?)
            .await
            .map_err(|e| self.err(e))?;
        row.as_ref()
            .map(row_to_link)
            .transpose()
            .map_err(|e| self.err(e))
    }

    async fn record_download(&self, d: &DownloadRecord) -> Result<i64, StoreError> {
        let res = self.write_one(sqlx::query(
            "INSERT INTO downloads (link_id, at, client, range_header, status, bytes_sent, reason)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&d.link_id)
        .bind(fmt_instant(d.at))
        .bind(&d.client)
        .bind(&d.range)
        .bind(i64::from(d.status))
        .bind(d.bytes_sent as i64)
        .bind(&d.reason))
        .await?;
        Ok(res.last_insert_rowid())
    }

    async fn set_download_bytes(&self, download: i64, bytes_sent: u64) -> Result<(), StoreError> {
        self.write_one(
            sqlx::query("UPDATE downloads SET bytes_sent = ? WHERE id = ?")
                .bind(bytes_sent as i64)
                .bind(download),
        )
        .await?;
        Ok(())
    }

    async fn downloads(
        &self,
        link_id: &str,
        limit: usize,
    ) -> Result<Vec<DownloadRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM downloads WHERE link_id = ? ORDER BY at DESC, id DESC LIMIT ?",
        )
        .bind(link_id)
        .bind(limit.min(i64::MAX as usize) as i64)
        .fetch_all(&mut *self.read_tx().await?)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|row| {
                let at: String = row.try_get("at")?;
                let status: i64 = row.try_get("status")?;
                let bytes: i64 = row.try_get("bytes_sent")?;
                Ok(DownloadRecord {
                    link_id: row.try_get("link_id")?,
                    at: parse_instant(&at).ok_or_else(|| {
                        sqlx::Error::Decode(format!("bad instant `{at}` in downloads").into())
                    })?,
                    client: row.try_get("client")?,
                    range: row.try_get("range_header")?,
                    status: u16::try_from(status).unwrap_or(0),
                    bytes_sent: bytes.max(0) as u64,
                    reason: row.try_get("reason")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.err(e))
    }
}
