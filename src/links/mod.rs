//! Signed download links: opaque ids, HMAC signatures with an expiry, and the URLs people
//! click.
//!
//! A link names a published file by an **opaque random id** (128 bits from the OS,
//! base64url, 22 characters), never by a path: the store maps the id to the file
//! ([`crate::store::LinkRecord`]), so a URL cannot reach any other file. The URL is
//!
//! ```text
//! {public_url}/d/{id}/{file name}?exp={unix seconds}&sig={base64url(HMAC-SHA256(key, "GET\n{id}\n{exp}"))}
//! ```
//!
//! The file name segment is cosmetic (tools like `curl -O` and `wget` name the saved file
//! after it) and is ignored by the server; the name a browser saves under comes from the
//! store through `Content-Disposition`. The signature covers the method, the id and the
//! expiry (like an S3 presigned URL), is compared in constant time ([`Signer::verify`]), and
//! a link never lives longer than [`MAX_EXPIRY`]. Changing the key invalidates every link
//! handed out before.
//!
//! Main items: [`Signer`] (sign, verify), [`url_for`], [`links_for_run`] (the links of a
//! run's files, creating their rows on first use), [`check_signing_key`] (refuses empty,
//! short and placeholder keys). The HTTP side is [`crate::server`]; the `links:` section of
//! `config.yaml` is checked in [`config`].

pub mod config;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use sha2::Sha256;

use crate::config::{Config, LinksSpec, Secret};
use crate::store::{FileRecord, LinkRecord, Store, StoreError};

/// Where the server listens unless `links.listen` says otherwise (loopback: put a reverse
/// proxy in front for the outside world).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8480";
/// Lifetime of a link unless `links.expiry` says otherwise.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(7 * 86_400);
/// The longest a link may live (the S3 presigned-URL cap: 7 days).
pub const MAX_EXPIRY: Duration = Duration::from_secs(7 * 86_400);
/// Shortest accepted signing key, in bytes (the HMAC-SHA256 block half: 256 bits).
pub const MIN_KEY_BYTES: usize = 32;
/// Random bytes in a link id.
const ID_BYTES: usize = 16;
/// Characters of a link id (16 bytes in unpadded base64url).
pub const ID_LEN: usize = 22;
/// Bytes of an HMAC-SHA256 tag.
const SIG_BYTES: usize = 32;

/// Words that mark a key as a placeholder copied from an example, never a real secret.
const PLACEHOLDER_WORDS: &[&str] = &[
    "example",
    "change",
    "placeholder",
    "replace",
    "secret",
    "default",
    "sample",
    "dummy",
    "your",
    "todo",
    "password",
    "xxxx",
];

/// Refuses signing keys that anyone could guess: empty, shorter than [`MIN_KEY_BYTES`],
/// placeholder text (`change-me`, anything with `example`…), or a few characters
/// repeated. The message never repeats the key.
pub fn check_signing_key(key: &str) -> Result<(), String> {
    const HOW: &str = "use at least 32 random bytes, e.g. `openssl rand -base64 32`, set in an environment variable such as ${FERRY_LINK_KEY}";
    if key.trim().is_empty() {
        return Err(format!(
            "is empty: links signed with it could be forged; {HOW}"
        ));
    }
    let lower = key.to_ascii_lowercase();
    if let Some(word) = PLACEHOLDER_WORDS.iter().find(|w| lower.contains(*w)) {
        return Err(format!(
            "looks like a placeholder (it contains `{word}`): anyone who knows it can forge links; {HOW}"
        ));
    }
    if key.len() < MIN_KEY_BYTES {
        return Err(format!(
            "is {} bytes long, shorter than {MIN_KEY_BYTES}; {HOW}",
            key.len()
        ));
    }
    let mut distinct: Vec<u8> = key.bytes().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 8 {
        return Err(format!(
            "uses only {} different characters, so it is easy to guess; {HOW}",
            distinct.len()
        ));
    }
    Ok(())
}

/// Checks `links.public_url` and returns it without a trailing `/`.
pub fn check_public_url(url: &str) -> Result<String, String> {
    let u = url.trim();
    // Messages quote the URL without its secrets.
    let shown = crate::config::redact_url(u);
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
        .ok_or_else(|| {
            format!(
                "expected an `http://` or `https://` URL such as `https://files.example.com`, got `{shown}`"
            )
        })?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err(format!("`{shown}` has no host name"));
    }
    if host.contains('@') {
        return Err(format!(
            "`{shown}` must not carry a user name or password (links are public)"
        ));
    }
    if u.contains(['?', '#']) {
        return Err(format!(
            "`{shown}` must not have a query (`?`) or fragment (`#`): it is the base the link paths are added to"
        ));
    }
    if u.chars()
        .any(|c| c.is_whitespace() || c.is_control() || "{}*\\".contains(c))
    {
        return Err(format!(
            "`{shown}` contains spaces, control characters or one of `{{ }} * \\`"
        ));
    }
    Ok(u.trim_end_matches('/').to_string())
}

/// The path part of a (checked) public URL, without a trailing `/`: `""` for
/// `https://host`, `/ferry` for `https://host/ferry/`. The server mounts `/d/` under it.
pub fn path_prefix(public_url: &str) -> String {
    let rest = public_url
        .strip_prefix("https://")
        .or_else(|| public_url.strip_prefix("http://"))
        .unwrap_or(public_url);
    match rest.find('/') {
        Some(i) => rest[i..].trim_end_matches('/').to_string(),
        None => String::new(),
    }
}

/// A new link id: 128 random bits from the operating system, base64url.
pub fn new_id() -> Result<String, LinkError> {
    let mut bytes = [0u8; ID_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| LinkError::Random(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// True if `s` has the shape of a link id (so it can be looked up; anything else is 404).
pub fn is_id(s: &str) -> bool {
    s.len() == ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Why a link was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The signature does not match the id and expiry (tampered, or another key): 403.
    BadSignature,
    /// Correctly signed but past its expiry: 410.
    Expired(DateTime<Utc>),
    /// Correctly signed, but it expires further from now than [`MAX_EXPIRY`] (and a
    /// minute of clock slack): a link this server would never have made (another ferry
    /// with a wrong clock, or one made by hand with the key). Refused: 403.
    BeyondMax(DateTime<Utc>),
}

/// Signs and verifies links with the configured key. `Debug` never shows the key.
#[derive(Clone)]
pub struct Signer {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(***)")
    }
}

impl Signer {
    pub fn new(key: &Secret) -> Signer {
        Signer {
            mac: Hmac::<Sha256>::new_from_slice(key.expose().as_bytes())
                .expect("HMAC takes keys of any length"),
        }
    }

    fn keyed(&self, id: &str, exp: i64) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(format!("GET\n{id}\n{exp}").as_bytes());
        mac
    }

    /// The `sig` parameter of a link with this id and expiry (unix seconds).
    pub fn sign(&self, id: &str, exp: i64) -> String {
        URL_SAFE_NO_PAD.encode(self.keyed(id, exp).finalize().into_bytes())
    }

    /// Checks the `exp` and `sig` parameters of a request for `id` at `now`. The
    /// signature is checked first and in constant time; an expiry only counts once it is
    /// known to be genuine. A genuine link that would live longer than [`MAX_EXPIRY`] from
    /// now is refused as [`Denied::BeyondMax`].
    pub fn verify(
        &self,
        id: &str,
        exp: &str,
        sig: &str,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, Denied> {
        let exp_value: i64 = match exp.parse::<i64>() {
            // Only the canonical spelling: `0123` or `+123` would be another URL for the
            // same link.
            Ok(v) if exp.bytes().all(|b| b.is_ascii_digit()) && v.to_string() == exp => v,
            _ => return Err(Denied::BadSignature),
        };
        let tag = match URL_SAFE_NO_PAD.decode(sig) {
            Ok(t) if t.len() == SIG_BYTES => t,
            _ => return Err(Denied::BadSignature),
        };
        self.keyed(id, exp_value)
            .verify_slice(&tag)
            .map_err(|_| Denied::BadSignature)?;
        let expires = DateTime::from_timestamp(exp_value, 0).ok_or(Denied::BadSignature)?;
        // A minute of slack for clocks of several ferry nodes.
        let cap = chrono::Duration::from_std(MAX_EXPIRY).expect("7 days fit")
            + chrono::Duration::seconds(60);
        if expires > now + cap {
            return Err(Denied::BeyondMax(expires));
        }
        if now.timestamp() >= exp_value {
            return Err(Denied::Expired(expires));
        }
        Ok(expires)
    }
}

/// Characters left as they are in a URL path segment (RFC 3986 unreserved).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Characters left as they are in an RFC 8187 `filename*` value (`attr-char`).
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// The full link for a file.
pub fn url_for(public_url: &str, signer: &Signer, id: &str, file_name: &str, exp: i64) -> String {
    format!(
        "{}/d/{id}/{}?exp={exp}&sig={}",
        public_url.trim_end_matches('/'),
        utf8_percent_encode(file_name, PATH_SEGMENT),
        signer.sign(id, exp)
    )
}

/// `Content-Disposition` for a download: an ASCII fallback for old clients and the exact
/// UTF-8 name as `filename*` (RFC 6266 / RFC 8187), so Chinese names survive.
pub fn content_disposition(name: &str) -> String {
    let mut fallback = String::with_capacity(name.len());
    for c in name.chars() {
        let keep = c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ';
        let ch = if keep { c } else { '_' };
        // Runs of replaced characters become one `_`.
        if !(ch == '_' && !keep && fallback.ends_with('_')) {
            fallback.push(ch);
        }
    }
    format!(
        "attachment; filename=\"{fallback}\"; filename*=UTF-8''{}",
        utf8_percent_encode(name, ATTR_CHAR)
    )
}

/// `Content-Type` by file extension (what ferry writes: xlsx, csv, zip).
pub fn content_type(name: &str) -> &'static str {
    let ext = Path::new(name)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "csv" => "text/csv",
        "zip" => "application/zip",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Why links could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(
        "download links are not configured: add a `links:` section to config.yaml (see docs/links.md)"
    )]
    NotConfigured,
    #[error(
        "{path}: the file is gone (removed by retention or by hand); re-run the task to make it again"
    )]
    FileGone { path: String },
    #[error(
        "{path}: the file resolves to {resolved}, outside output_dir {root}; ferry does not link to it"
    )]
    OutsideOutput {
        path: String,
        resolved: String,
        root: String,
    },
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{0}")]
    WeakKey(String),
    #[error("cannot draw a random link id: {0}")]
    Random(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A signed link to one file of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileLink {
    /// The file as recorded on the run.
    pub path: String,
    /// Its file name (what the download is saved as).
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
    /// The opaque link id.
    pub link_id: String,
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// The file name of a recorded path.
pub fn file_name_of(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| path.to_string())
}

/// Resolves a file and checks that it is under the output folder (both resolved, so a
/// symlink pointing elsewhere is caught).
pub fn resolve_under(root: &Path, path: &Path) -> Result<PathBuf, LinkError> {
    let shown = path.display().to_string();
    let file = std::fs::canonicalize(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LinkError::FileGone {
            path: shown.clone(),
        },
        _ => LinkError::File {
            path: shown.clone(),
            message: crate::config::io_message(&e),
        },
    })?;
    let root = std::fs::canonicalize(root).map_err(|_| LinkError::FileGone {
        path: shown.clone(),
    })?;
    if !file.starts_with(&root) {
        return Err(LinkError::OutsideOutput {
            path: shown,
            resolved: file.display().to_string(),
            root: root.display().to_string(),
        });
    }
    Ok(file)
}

/// Signed links to every file of a run, valid for `expiry` (default: `links.expiry`) from
/// `now`. The link rows are made on first use and reused after, so a run's file keeps
/// one id and every fresh link for it is another signature of the same id.
///
/// Returns no links when `links:` is not configured, so the executor can call it for
/// every run. Fails when a file is gone or resolves outside `output_dir`.
pub async fn links_for_run(
    store: &dyn Store,
    config: &Config,
    run_id: &str,
    files: &[FileRecord],
    expiry: Option<Duration>,
    now: DateTime<Utc>,
) -> Result<Vec<FileLink>, LinkError> {
    let Some(spec) = &config.links else {
        return Ok(Vec::new());
    };
    let expiry = expiry.unwrap_or(spec.expiry).min(MAX_EXPIRY);
    let signer = signer_for(spec).map_err(LinkError::WeakKey)?;
    let exp = now.timestamp() + expiry.as_secs() as i64;
    let expires_at = DateTime::from_timestamp(exp, 0).unwrap_or(now);
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        let resolved = resolve_under(&config.output_dir, Path::new(&f.path))?;
        let name = file_name_of(&f.path);
        let row = store
            .ensure_link(&LinkRecord {
                id: new_id()?,
                run_id: run_id.to_string(),
                path: resolved.display().to_string(),
                name: name.clone(),
                bytes: f.bytes,
                sha256: f.sha256.clone(),
                created_at: now,
            })
            .await?;
        out.push(FileLink {
            path: f.path.clone(),
            url: url_for(&spec.public_url, &signer, &row.id, &row.name, exp),
            name: row.name,
            bytes: f.bytes,
            sha256: f.sha256.clone(),
            link_id: row.id,
            expires_at,
        });
    }
    Ok(out)
}

/// The signer of a configured `links:` section, after the same key check as validation
/// (a runtime guard: nothing signs with a weak key even if a spec was built by hand).
pub fn signer_for(spec: &LinksSpec) -> Result<Signer, String> {
    check_signing_key(spec.signing_key.expose()).map_err(|e| format!("links.signing_key {e}"))?;
    Ok(Signer::new(&spec.signing_key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "k3Jx9-QmT2vLw8ZpR4yN6bHc1dF5gS7a";

    fn signer() -> Signer {
        Signer::new(&Secret::new(KEY))
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    /// Replaces the character at `i` by another one of the same alphabet.
    fn flip(s: &str, i: usize) -> String {
        let mut b = s.as_bytes().to_vec();
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn a_signed_link_verifies_until_it_expires() {
        let s = signer();
        let id = new_id().unwrap();
        assert!(is_id(&id), "{id}");
        let exp = 1_800_000_000;
        let sig = s.sign(&id, exp);
        assert_eq!(sig.len(), 43);
        let e = exp.to_string();
        assert_eq!(s.verify(&id, &e, &sig, at(exp - 1)), Ok(at(exp)));
        // The boundary: at the expiry second the link is expired.
        assert_eq!(
            s.verify(&id, &e, &sig, at(exp)),
            Err(Denied::Expired(at(exp)))
        );
        assert_eq!(
            s.verify(&id, &e, &sig, at(exp + 3600)),
            Err(Denied::Expired(at(exp)))
        );
    }

    #[test]
    fn one_changed_character_anywhere_is_a_bad_signature() {
        let s = signer();
        let id = new_id().unwrap();
        let exp = 1_800_000_000i64;
        let e = exp.to_string();
        let sig = s.sign(&id, exp);
        let now = at(exp - 100);
        for i in 0..id.len() {
            assert_eq!(
                s.verify(&flip(&id, i), &e, &sig, now),
                Err(Denied::BadSignature),
                "id char {i}"
            );
        }
        for i in 0..sig.len() {
            assert_eq!(
                s.verify(&id, &e, &flip(&sig, i), now),
                Err(Denied::BadSignature),
                "sig char {i}"
            );
        }
        // A later expiry (the obvious tampering), an earlier one, other spellings.
        for bad in [
            "1800000001",
            "1799999999",
            "01800000000",
            "+1800000000",
            "",
            "x",
        ] {
            assert_eq!(
                s.verify(&id, bad, &sig, now),
                Err(Denied::BadSignature),
                "{bad}"
            );
        }
        assert_eq!(s.verify(&id, &e, "", now), Err(Denied::BadSignature));
        assert_eq!(
            s.verify(&id, &e, &sig[..42], now),
            Err(Denied::BadSignature)
        );
        // Another key.
        let other = Signer::new(&Secret::new("Zq8vN3mW7pL2xR9tK4yB6cH1dF5gS0aJ"));
        assert_eq!(other.verify(&id, &e, &sig, now), Err(Denied::BadSignature));
    }

    #[test]
    fn links_beyond_the_cap_are_refused() {
        let s = signer();
        let id = new_id().unwrap();
        let now = at(1_800_000_000);
        let exp = now.timestamp() + MAX_EXPIRY.as_secs() as i64 + 3600;
        let sig = s.sign(&id, exp);
        assert_eq!(
            s.verify(&id, &exp.to_string(), &sig, now),
            Err(Denied::BeyondMax(at(exp)))
        );
        // Within the minute of slack it still works; a forged far link is a bad signature.
        let edge = now.timestamp() + MAX_EXPIRY.as_secs() as i64 + 60;
        assert_eq!(
            s.verify(&id, &edge.to_string(), &s.sign(&id, edge), now),
            Ok(at(edge))
        );
        assert_eq!(
            s.verify(&id, &(edge + 1).to_string(), &s.sign(&id, edge + 1), now),
            Err(Denied::BeyondMax(at(edge + 1)))
        );
        assert_eq!(
            s.verify(&id, &exp.to_string(), &s.sign(&id, exp - 1), now),
            Err(Denied::BadSignature)
        );
    }

    #[test]
    fn ids_are_random_and_well_formed() {
        let a = new_id().unwrap();
        let b = new_id().unwrap();
        assert_ne!(a, b);
        assert!(is_id(&a) && is_id(&b));
        for bad in ["", "..", "../../etc/passwd", "%2e%2e%2f", "C:", &a[..21]] {
            assert!(!is_id(bad), "{bad}");
        }
        assert!(!is_id(&format!("{}/", &a[..21])));
    }

    #[test]
    fn weak_keys_are_refused() {
        assert!(check_signing_key("").unwrap_err().contains("is empty"));
        assert!(check_signing_key("   ").unwrap_err().contains("is empty"));
        for k in [
            "change-me",
            "changeme",
            "secret",
            "CHANGE-ME-before-production-please!!",
            "an-example-key-that-is-long-enough-1234",
            "your-signing-key-goes-here-0123456789",
        ] {
            assert!(
                check_signing_key(k).unwrap_err().contains("placeholder"),
                "{k}"
            );
        }
        assert!(
            check_signing_key("Zq8vN3mW7pL2")
                .unwrap_err()
                .contains("12 bytes long")
        );
        assert!(
            check_signing_key(&"ab".repeat(20))
                .unwrap_err()
                .contains("2 different characters")
        );
        assert_eq!(check_signing_key(KEY), Ok(()));
        // The message never contains the key.
        let msg = check_signing_key("short-k3y").unwrap_err();
        assert!(!msg.contains("short-k3y"), "{msg}");
    }

    #[test]
    fn the_runtime_guard_refuses_what_validation_refuses() {
        let mut spec = LinksSpec {
            listen: DEFAULT_LISTEN.parse().unwrap(),
            public_url: "https://f.test".into(),
            signing_key: Secret::new("changeme"),
            expiry: DEFAULT_EXPIRY,
            trust_proxy: false,
        };
        let e = signer_for(&spec).unwrap_err();
        assert!(
            e.starts_with("links.signing_key looks like a placeholder"),
            "{e}"
        );
        assert!(format!("{spec:?}").contains("signing_key: ***"));
        spec.signing_key = Secret::new(KEY);
        assert_eq!(format!("{:?}", signer_for(&spec).unwrap()), "Signer(***)");
    }

    #[test]
    fn public_urls() {
        assert_eq!(
            check_public_url("https://files.corp.test/").unwrap(),
            "https://files.corp.test"
        );
        assert_eq!(
            check_public_url("http://h:8480/ferry/").unwrap(),
            "http://h:8480/ferry"
        );
        assert!(check_public_url("ftp://h").is_err());
        assert!(check_public_url("files.corp.test").is_err());
        assert!(check_public_url("https://").is_err());
        assert!(check_public_url("https://h/x?a=1").is_err());
        assert!(check_public_url("https://u:p@h/").is_err());
        assert_eq!(path_prefix("https://h"), "");
        assert_eq!(path_prefix("https://h:1/a/b"), "/a/b");
    }

    #[test]
    fn urls_and_headers_carry_utf8_names() {
        let s = signer();
        let url = url_for(
            "https://f.test/x",
            &s,
            "AAAAAAAAAAAAAAAAAAAAAA",
            "销售 日报.xlsx",
            5,
        );
        assert!(
            url.starts_with(
                "https://f.test/x/d/AAAAAAAAAAAAAAAAAAAAAA/%E9%94%80%E5%94%AE%20%E6%97%A5%E6%8A%A5.xlsx?exp=5&sig="
            ),
            "{url}"
        );
        assert_eq!(
            content_disposition("销售 日报.xlsx"),
            "attachment; filename=\"_ _.xlsx\"; filename*=UTF-8''%E9%94%80%E5%94%AE%20%E6%97%A5%E6%8A%A5.xlsx"
        );
        assert_eq!(
            content_disposition("a\"b\\c.csv"),
            "attachment; filename=\"a_b_c.csv\"; filename*=UTF-8''a%22b%5Cc.csv"
        );
        assert_eq!(
            content_type("x.XLSX"),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        );
        assert_eq!(content_type("x.csv"), "text/csv");
        assert_eq!(content_type("x"), "application/octet-stream");
    }
}
