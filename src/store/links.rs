//! The links concern: download links and their requests ([`Links`]).

use async_trait::async_trait;

use super::{DownloadRecord, LinkRecord, StoreError};

/// Download links and the log of their requests.
#[async_trait]
pub trait Links: Send + Sync {
    /// Inserts a download link unless the run's file (`run_id`, `path`) already has one;
    /// returns the row that is in the store (the existing one, or `link`).
    async fn ensure_link(&self, link: &LinkRecord) -> Result<LinkRecord, StoreError>;

    /// One link by id.
    async fn link(&self, id: &str) -> Result<Option<LinkRecord>, StoreError>;

    /// Records a request for a link; returns the download's row id (for
    /// [`Links::set_download_bytes`]).
    async fn record_download(&self, download: &DownloadRecord) -> Result<i64, StoreError>;

    /// Sets how many body bytes a recorded download sent.
    async fn set_download_bytes(&self, download: i64, bytes_sent: u64) -> Result<(), StoreError>;

    /// The newest requests for a link first, at most `limit`.
    async fn downloads(
        &self,
        link_id: &str,
        limit: usize,
    ) -> Result<Vec<DownloadRecord>, StoreError>;
}
