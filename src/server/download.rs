//! `GET`/`HEAD {prefix}/d/{id}[/{name}]?exp=…&sig=…`: one signed download.
//!
//! The order of checks, and what each answers:
//!
//! 1. the path is not `{prefix}/d/{id}` or `{prefix}/d/{id}/{name}` (more segments, an
//!    empty one, a trailing slash, a name `.` or `..`), or the id segment is not the shape
//!    of a link id (`..`, `%2e%2e%2f`, `C:`, …) → 404;
//! 2. the signature does not match id and expiry → 403 (also for ids that do not exist,
//!    so a bad link tells nothing about which ids exist);
//! 3. the signature matches but the expiry has passed → 410 "link expired on …"; or it
//!    is further away than the 7-day maximum → 403 saying so (not "bad signature");
//! 4. no row for the id → 404;
//! 5. the file is gone (retention) or changed size → 410 "file removed";
//! 6. the file resolves outside `output_dir` (a symlink swapped in) → 404;
//! 7. otherwise 200, or 206 for a satisfiable single `Range`, or 416.
//!
//! The file path comes only from the store row; the URL's name segment is never read.
//! Every request for an existing id is recorded (time, client address, `Range`, status,
//! body bytes sent).

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::Stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;
use tracing::{error, info, warn};

use super::AppState;
use crate::links::{self, Denied};
use crate::store::{DownloadRecord, LinkRecord};

/// Longest `Range` header kept in the download record.
const MAX_RANGE_RECORDED: usize = 200;
/// Read size of the file stream.
const CHUNK: usize = 64 * 1024;

/// A short plain-text answer that no cache keeps.
pub fn plain(status: StatusCode, text: &str) -> Response {
    let mut r = (status, format!("{text}\n")).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// The raw (not percent-decoded) id segment of a download path, if the path has one of
/// the two documented shapes: `{prefix}/d/{id}` or `{prefix}/d/{id}/{name}`. The name is
/// one non-empty segment that is not a dot segment (`.`, `..`, also percent-encoded):
/// more segments, empty ones and a trailing slash are other paths (404).
fn raw_id<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?.strip_prefix("/d/")?;
    let (id, name) = match rest.split_once('/') {
        Some((id, name)) => (id, Some(name)),
        None => (rest, None),
    };
    let name_ok = name.is_none_or(|n| {
        let decoded = percent_encoding::percent_decode_str(n).collect::<Vec<u8>>();
        !n.is_empty() && !n.contains('/') && decoded != b"." && decoded != b".."
    });
    (!id.is_empty() && name_ok).then_some(id)
}

/// `exp` and `sig` from the query string (both are plain ASCII when genuine, so no
/// decoding: anything encoded fails the signature).
fn exp_and_sig(query: Option<&str>) -> (&str, &str) {
    let (mut exp, mut sig) = ("", "");
    for pair in query.unwrap_or("").split('&') {
        match pair.split_once('=') {
            Some(("exp", v)) => exp = v,
            Some(("sig", v)) => sig = v,
            _ => {}
        }
    }
    (exp, sig)
}

/// The client address to record: the socket peer, or with `trust_proxy` the address the
/// proxy appended last to `X-Forwarded-For` (earlier entries are the client's own claims).
pub(crate) fn client_addr(peer: SocketAddr, headers: &HeaderMap, trust_proxy: bool) -> String {
    if trust_proxy
        && let Some(ip) = headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|s| s.trim().parse::<std::net::IpAddr>().ok())
    {
        return ip.to_string();
    }
    peer.ip().to_string()
}

/// What a `Range` header asks of a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
enum Ranged {
    /// No (usable) range: the whole file. Multiple ranges and malformed headers are
    /// ignored, as RFC 9110 allows.
    Full,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// 416.
    Unsatisfiable,
}

fn parse_range(header: &str, len: u64) -> Ranged {
    let h = header.trim();
    let Some(spec) = h
        .get(..6)
        .filter(|u| u.eq_ignore_ascii_case("bytes="))
        .map(|_| h[6..].trim())
    else {
        return Ranged::Full;
    };
    if spec.contains(',') {
        return Ranged::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ranged::Full;
    };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim().is_empty(), num(a), num(b)) {
        // `-N`: the last N bytes.
        (true, _, Some(n)) => {
            if n == 0 || len == 0 {
                Ranged::Unsatisfiable
            } else {
                Ranged::Part(len.saturating_sub(n), len - 1)
            }
        }
        // `A-` and `A-B`.
        (false, Some(start), end) if b.trim().is_empty() || end.is_some() => {
            if end.is_some_and(|e| e < start) {
                return Ranged::Full;
            }
            if start >= len {
                return Ranged::Unsatisfiable;
            }
            Ranged::Part(start, end.unwrap_or(u64::MAX).min(len - 1))
        }
        _ => Ranged::Full,
    }
}

/// A file body that counts the bytes handed to the connection and records the count
/// when it ends or is dropped (a client that hangs up mid-way).
struct Counted {
    inner: ReaderStream<tokio::io::Take<tokio::fs::File>>,
    sent: u64,
    on_end: Option<Box<dyn FnOnce(u64) + Send>>,
}

impl Stream for Counted {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(b))) = &next {
            self.sent += b.len() as u64;
        }
        next
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(f) = self.on_end.take() {
            f(self.sent);
        }
    }
}

/// The download handler.
pub async fn download(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Some(id) = raw_id(uri.path(), &st.prefix).filter(|id| links::is_id(id)) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let (exp, sig) = exp_and_sig(uri.query());
    let now = st.clock.now();
    let verdict = st.signer.verify(id, exp, sig, now);
    let row = match st.store.link(id).await {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "download: the run store failed");
            return plain(StatusCode::SERVICE_UNAVAILABLE, "try again later");
        }
    };
    let client = client_addr(peer, &headers, st.trust_proxy);
    let range = headers
        .get(header::RANGE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string());
    let rec = Recorder {
        st: st.clone(),
        link_id: id.to_string(),
        at: now,
        client: client.clone(),
        range: range
            .as_ref()
            .map(|r| r.chars().take(MAX_RANGE_RECORDED).collect()),
    };
    let Some(row) = row else {
        return match verdict {
            Err(Denied::BadSignature) => plain(StatusCode::FORBIDDEN, "forbidden: bad signature"),
            // Genuinely signed (maybe expired, or too far out), but no such id.
            _ => {
                info!(link = id, %client, "download: unknown link id (404)");
                plain(StatusCode::NOT_FOUND, "not found")
            }
        };
    };
    match verdict {
        Err(Denied::BadSignature) => {
            warn!(link = id, %client, "download: bad signature (403)");
            rec.done(StatusCode::FORBIDDEN, "bad signature").await;
            return plain(StatusCode::FORBIDDEN, "forbidden: bad signature");
        }
        Err(Denied::Expired(at)) => {
            info!(link = id, %client, "download: expired link (410)");
            rec.done(StatusCode::GONE, "expired").await;
            return plain(
                StatusCode::GONE,
                &format!(
                    "link expired on {}; ask for a fresh one (`ferry link {}`)",
                    at.format("%Y-%m-%d %H:%M:%S UTC"),
                    row.run_id
                ),
            );
        }
        Err(Denied::BeyondMax(at)) => {
            warn!(link = id, %client, "download: correctly signed, but expires beyond the maximum (403)");
            rec.done(StatusCode::FORBIDDEN, "expiry beyond the maximum")
                .await;
            return plain(
                StatusCode::FORBIDDEN,
                &format!(
                    "forbidden: this link expires on {}, more than {} from now, which this server does not allow; ask for a fresh one (`ferry link {}`)",
                    at.format("%Y-%m-%d %H:%M:%S UTC"),
                    crate::config::format_duration(links::MAX_EXPIRY),
                    row.run_id
                ),
            );
        }
        Ok(_) => {}
    }
    match open(&st.output_dir, &row).await {
        Ok((file, len)) => serve(file, len, &row, &method, &headers, range.as_deref(), rec).await,
        Err((status, reason)) => {
            rec.done(status, reason).await;
            if status == StatusCode::GONE {
                info!(link = id, %client, "download: file removed (410)");
                plain(
                    StatusCode::GONE,
                    "file removed: re-run the export for a new one",
                )
            } else {
                plain(status, "not found")
            }
        }
    }
}

/// Opens the row's file after checking it still resolves under `output_dir` and still
/// has the recorded size. A refusal comes with the reason recorded for it.
async fn open(
    output_dir: &Path,
    row: &LinkRecord,
) -> Result<(tokio::fs::File, u64), (StatusCode, &'static str)> {
    const REMOVED: (StatusCode, &str) = (StatusCode::GONE, "file removed");
    let resolved = match links::resolve_under(output_dir, Path::new(&row.path)) {
        Ok(p) => p,
        Err(links::LinkError::OutsideOutput { resolved, .. }) => {
            warn!(link = %row.id, %resolved, "download: the file resolves outside output_dir (404)");
            return Err((StatusCode::NOT_FOUND, "outside output_dir"));
        }
        Err(_) => return Err(REMOVED),
    };
    let file = tokio::fs::File::open(&resolved)
        .await
        .map_err(|_| REMOVED)?;
    let meta = file.metadata().await.map_err(|_| REMOVED)?;
    if !meta.is_file() {
        return Err((StatusCode::NOT_FOUND, "not a file"));
    }
    if meta.len() != row.bytes {
        warn!(link = %row.id, "download: the file changed size since the link was made (410)");
        return Err(REMOVED);
    }
    Ok((file, meta.len()))
}

async fn serve(
    mut file: tokio::fs::File,
    len: u64,
    row: &LinkRecord,
    method: &Method,
    headers: &HeaderMap,
    range: Option<&str>,
    rec: Recorder,
) -> Response {
    let etag = format!("\"{}\"", row.sha256);
    // A resumed download whose copy is of another file version gets the whole file.
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.as_bytes() == etag.as_bytes());
    let ranged = match range {
        Some(r) if if_range_ok => parse_range(r, len),
        _ => Ranged::Full,
    };
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, links::content_type(&row.name))
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CACHE_CONTROL, "private, no-store")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::ETAG, &etag)
        .header(
            header::CONTENT_DISPOSITION,
            links::content_disposition(&row.name),
        );
    let (status, start, count) = match ranged {
        Ranged::Full => (StatusCode::OK, 0, len),
        Ranged::Part(a, b) => {
            builder = builder.header(header::CONTENT_RANGE, format!("bytes {a}-{b}/{len}"));
            (StatusCode::PARTIAL_CONTENT, a, b - a + 1)
        }
        Ranged::Unsatisfiable => {
            rec.done(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable")
                .await;
            let mut r = plain(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{len}")).expect("ascii"),
            );
            return r;
        }
    };
    builder = builder.status(status).header(header::CONTENT_LENGTH, count);
    info!(link = %row.id, client = %rec.client, status = status.as_u16(), bytes = count, "download");
    if method == Method::HEAD {
        rec.start(status, None).await;
        return builder.body(Body::empty()).expect("valid response");
    }
    if start > 0
        && let Err(e) = file.seek(std::io::SeekFrom::Start(start)).await
    {
        error!(link = %row.id, error = %e, "download: cannot seek");
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file");
    }
    let download = rec.start(status, None).await;
    let store = rec.st.store.clone();
    let body = Counted {
        inner: ReaderStream::with_capacity(file.take(count), CHUNK),
        sent: 0,
        on_end: Some(Box::new(move |sent| {
            if let Some(row) = download {
                tokio::spawn(async move {
                    if let Err(e) = store.set_download_bytes(row, sent).await {
                        warn!(error = %e, "download: cannot record the bytes sent");
                    }
                });
            }
        })),
    };
    builder
        .body(Body::from_stream(body))
        .expect("valid response")
}

/// Records one request for an existing link.
struct Recorder {
    st: Arc<AppState>,
    link_id: String,
    at: chrono::DateTime<chrono::Utc>,
    client: String,
    range: Option<String>,
}

impl Recorder {
    /// Inserts the record, with the reason of a refusal; returns its row id (`None` if
    /// the store failed: the download still goes ahead, the failure is logged).
    async fn start(&self, status: StatusCode, reason: Option<&str>) -> Option<i64> {
        let d = DownloadRecord {
            link_id: self.link_id.clone(),
            at: self.at,
            client: self.client.clone(),
            range: self.range.clone(),
            status: status.as_u16(),
            bytes_sent: 0,
            reason: reason.map(str::to_string),
        };
        match self.st.store.record_download(&d).await {
            Ok(id) => Some(id),
            Err(e) => {
                warn!(error = %e, "download: cannot record the request");
                None
            }
        }
    }

    /// Records a refused request and why.
    async fn done(&self, status: StatusCode, reason: &str) {
        self.start(status, Some(reason)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use Ranged::*;
        assert_eq!(parse_range("bytes=0-99", 1000), Part(0, 99));
        assert_eq!(parse_range("bytes=990-2000", 1000), Part(990, 999));
        assert_eq!(parse_range("bytes=10-", 1000), Part(10, 999));
        assert_eq!(parse_range("bytes=-100", 1000), Part(900, 999));
        assert_eq!(parse_range("bytes=-5000", 1000), Part(0, 999));
        assert_eq!(parse_range("Bytes= 5-5", 1000), Part(5, 5));
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=5000-6000", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=-1", 0), Unsatisfiable);
        // Ignored: multiple ranges, other units, nonsense, reversed.
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), Full);
        assert_eq!(parse_range("items=0-1", 1000), Full);
        assert_eq!(parse_range("bytes=abc", 1000), Full);
        assert_eq!(parse_range("bytes=9-3", 1000), Full);
        assert_eq!(parse_range("bytes=-", 1000), Full);
        assert_eq!(parse_range("bytes=+1-2", 1000), Full);
        assert_eq!(parse_range("", 1000), Full);
    }

    #[test]
    fn ids_come_from_the_raw_path() {
        assert_eq!(raw_id("/d/abc/x.csv", ""), Some("abc"));
        assert_eq!(raw_id("/f/d/abc", "/f"), Some("abc"));
        assert_eq!(
            raw_id("/d/%2e%2e%2fconfig.yaml", ""),
            Some("%2e%2e%2fconfig.yaml")
        );
        assert_eq!(raw_id("/x/abc", ""), None);
        assert_eq!(raw_id("/d/abc", ""), Some("abc"));
        // The name is cosmetic but must be one real segment.
        assert_eq!(raw_id("/d/abc/..%2fx.csv", ""), Some("abc"));
        for bad in [
            "/d/abc/x/y",
            "/d/abc/",
            "/d/abc/x.csv/",
            "/d/abc//x.csv",
            "/d//abc",
            "/d/",
            "/d/abc/.",
            "/d/abc/..",
            "/d/abc/%2E%2e",
            "/d/abc/.%2e",
        ] {
            assert_eq!(raw_id(bad, ""), None, "{bad}");
        }
        assert_eq!(exp_and_sig(Some("exp=5&sig=x&exp=")), ("", "x"));
        assert_eq!(exp_and_sig(Some("sig=x&exp=7")), ("7", "x"));
    }

    #[test]
    fn proxies_are_trusted_only_when_configured() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "6.6.6.6, 10.1.2.3".parse().unwrap());
        assert_eq!(client_addr(peer, &h, false), "127.0.0.1");
        assert_eq!(client_addr(peer, &h, true), "10.1.2.3");
        assert_eq!(client_addr(peer, &HeaderMap::new(), true), "127.0.0.1");
        // A last entry that is no address does not promote an earlier, client-made one.
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "6.6.6.6, unknown".parse().unwrap());
        assert_eq!(client_addr(peer, &h, true), "127.0.0.1");
    }
}
