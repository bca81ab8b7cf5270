//! Secrets kept out of plain text: `enc:v1:` values sealed with a key ([`SecretsKey`]),
//! and `*_file` fields that read a secret from a file ([`read_secret_file`]).
//!
//! An `enc:v1:` value is `enc:v1:` followed by the URL-safe base64 (no padding) of
//! `key id (4 bytes) ‖ nonce (24 bytes) ‖ ciphertext ‖ tag (16 bytes)`, sealed with
//! XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`: a random 192-bit nonce per value
//! is safe to draw at random). The key id is the start of SHA-256 over the key; it is also
//! the associated data, so it cannot be swapped. It lets an error tell "sealed with another
//! key" (a wrong key, or a rotation half done) from "tampered with" (the tag fails).
//!
//! The key is 32 random bytes written as standard base64 (`ferry secrets keygen`). ferry
//! looks for it, in order: the file named by `FERRY_SECRETS_KEY_FILE` (a relative name is
//! looked up in `$CREDENTIALS_DIRECTORY` when set, else in the working folder); the key
//! itself in `FERRY_SECRETS_KEY`; the systemd credential `ferry-secrets-key` in
//! `$CREDENTIALS_DIRECTORY`. docs/secrets.md is the user's guide.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::fsread::{self, Kind};

/// What starts a sealed value.
pub const PREFIX: &str = "enc:v1:";
/// The environment variable naming the key file.
pub const KEY_FILE_VAR: &str = "FERRY_SECRETS_KEY_FILE";
/// The environment variable holding the key itself.
pub const KEY_VAR: &str = "FERRY_SECRETS_KEY";
/// The systemd credential (`LoadCredential=ferry-secrets-key:…`) read when neither
/// variable is set.
pub const KEY_CREDENTIAL: &str = "ferry-secrets-key";

const KEY_BYTES: usize = 32;
const ID_BYTES: usize = 4;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;

/// The key that seals and opens `enc:v1:` values. `Debug` shows only its id and where it
/// came from.
#[derive(Clone)]
pub struct SecretsKey {
    key: [u8; KEY_BYTES],
    id: [u8; ID_BYTES],
    /// Where the key came from, for messages (`key file /etc/ferry/secrets.key`).
    pub source: String,
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretsKey({} from {})", self.id(), self.source)
    }
}

fn key_id(key: &[u8; KEY_BYTES]) -> [u8; ID_BYTES] {
    let digest = Sha256::new()
        .chain_update(b"ferry secrets key id\0")
        .chain_update(key)
        .finalize();
    let mut id = [0; ID_BYTES];
    id.copy_from_slice(&digest[..ID_BYTES]);
    id
}

impl SecretsKey {
    fn from_bytes(key: [u8; KEY_BYTES], source: String) -> SecretsKey {
        SecretsKey {
            id: key_id(&key),
            key,
            source,
        }
    }

    /// A new random key.
    pub fn generate() -> Result<SecretsKey, String> {
        let mut key = [0; KEY_BYTES];
        getrandom::fill(&mut key).map_err(|e| format!("no random bytes from the OS: {e}"))?;
        Ok(SecretsKey::from_bytes(key, "a new key".into()))
    }

    /// A key written as base64 (surrounding white space ignored); `source` names it in
    /// errors.
    pub fn from_text(text: &str, source: &str) -> Result<SecretsKey, String> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| {
            format!("{source} is not a ferry secrets key (base64 of 32 bytes, as `ferry secrets keygen` writes)")
        })?;
        let key: [u8; KEY_BYTES] = bytes.try_into().map_err(|b: Vec<u8>| {
            format!(
                "{source} holds {} bytes; a ferry secrets key is 32 (make one with `ferry secrets keygen`)",
                b.len()
            )
        })?;
        Ok(SecretsKey::from_bytes(key, source.to_string()))
    }

    /// Reads a key file.
    pub fn from_file(path: &Path) -> Result<SecretsKey, String> {
        let source = format!("key file {}", path.display());
        let text = fsread::read_text(path, Kind::Secret).map_err(|e| e.named("key file"))?;
        SecretsKey::from_text(&text, &source)
    }

    /// The key from the environment (see the module docs for the order).
    pub fn from_env() -> Result<SecretsKey, String> {
        let creds = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        if let Some(file) = std::env::var_os(KEY_FILE_VAR).filter(|f| !f.is_empty()) {
            return SecretsKey::from_file(&credential_path(Path::new(&file), creds.as_deref()));
        }
        if let Ok(text) = std::env::var(KEY_VAR)
            && !text.is_empty()
        {
            return SecretsKey::from_text(&text, &format!("the key in {KEY_VAR}"));
        }
        if let Some(dir) = creds {
            let path = dir.join(KEY_CREDENTIAL);
            if path.exists() {
                return SecretsKey::from_file(&path);
            }
        }
        Err(format!(
            "no key to open `{PREFIX}` values: set {KEY_FILE_VAR} to the key file (made by \
             `ferry secrets keygen`) or {KEY_VAR} to the key"
        ))
    }

    /// The key as base64 text (what a key file holds).
    pub fn to_text(&self) -> String {
        STANDARD.encode(self.key)
    }

    /// The key id as hex (shown in messages; it reveals nothing of the key).
    pub fn id(&self) -> String {
        hex::encode(self.id)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new_from_slice(&self.key).expect("a 32-byte key")
    }

    fn aad(id: &[u8]) -> Vec<u8> {
        [PREFIX.as_bytes(), id].concat()
    }

    /// Seals `plain` into an `enc:v1:` value.
    pub fn seal(&self, plain: &str) -> Result<String, String> {
        let mut nonce = [0; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|e| format!("no random bytes from the OS: {e}"))?;
        let aad = Self::aad(&self.id);
        let sealed = self
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| "sealing failed".to_string())?;
        let mut raw = Vec::with_capacity(ID_BYTES + NONCE_BYTES + sealed.len());
        raw.extend_from_slice(&self.id);
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw)))
    }

    /// The key id an `enc:v1:` value was sealed with, if it is well formed.
    pub fn sealed_with(token: &str) -> Option<String> {
        let raw = URL_SAFE_NO_PAD.decode(token.strip_prefix(PREFIX)?).ok()?;
        (raw.len() >= ID_BYTES + NONCE_BYTES + TAG_BYTES).then(|| hex::encode(&raw[..ID_BYTES]))
    }

    /// Opens an `enc:v1:` value. The error says whether the value is malformed, sealed
    /// with another key, or tampered with; it never holds the value's text.
    pub fn open(&self, token: &str) -> Result<String, String> {
        let malformed = || {
            format!(
                "`{PREFIX}…` value is damaged (not what `ferry secrets encrypt` writes): copy it again whole"
            )
        };
        let body = token.strip_prefix(PREFIX).ok_or_else(malformed)?;
        let raw = URL_SAFE_NO_PAD.decode(body).map_err(|_| malformed())?;
        if raw.len() < ID_BYTES + NONCE_BYTES + TAG_BYTES {
            return Err(malformed());
        }
        let (id, rest) = raw.split_at(ID_BYTES);
        let (nonce, sealed) = rest.split_at(NONCE_BYTES);
        if id != self.id {
            return Err(format!(
                "`{PREFIX}…` value was sealed with another key (key id {}; the {} has id {}): \
                 use the key it was sealed with, or seal it again with `ferry secrets encrypt`",
                hex::encode(id),
                self.source,
                self.id()
            ));
        }
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().expect("split at the nonce size");
        let plain = self
            .cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: &Self::aad(id),
                },
            )
            .map_err(|_| {
                format!(
                    "`{PREFIX}…` value does not open with the {} although its key id matches: \
                     it was changed after sealing (tampered or damaged); seal it again with \
                     `ferry secrets encrypt`",
                    self.source
                )
            })?;
        String::from_utf8(plain).map_err(|_| malformed())
    }
}

/// How many bytes of `text` (which starts with [`PREFIX`]) the sealed value takes: the
/// prefix and the base64url run after it.
pub fn token_len(text: &str) -> usize {
    PREFIX.len()
        + text[PREFIX.len()..]
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            .count()
}

/// The byte ranges of the sealed values in `text`.
pub fn find_tokens(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find(PREFIX) {
        let start = from + i;
        let end = start + token_len(&text[start..]);
        out.push(start..end);
        from = end;
    }
    out
}

/// `path` as a credential name: a relative one is looked up in `creds`
/// (`$CREDENTIALS_DIRECTORY`) when that is set, else left as is (relative to the caller's
/// base).
pub fn credential_path(path: &Path, creds: Option<&Path>) -> PathBuf {
    match creds {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

/// Reads a `*_file` secret: the file's text without the line ending at its end. A relative
/// name is looked up in `$CREDENTIALS_DIRECTORY` when set, else in `base_dir` (config.yaml's
/// folder). Returns the path read too (for the permission check of `ferry validate`).
pub fn read_secret_file(name: &str, base_dir: &Path) -> Result<(String, PathBuf), String> {
    let creds = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    let path = match &creds {
        Some(dir) if Path::new(name).is_relative() => dir.join(name),
        _ => super::resolve(base_dir, name),
    };
    let text = fsread::read_text(&path, Kind::Secret).map_err(|e| {
        let mut m = e.to_string();
        if creds.is_some() && Path::new(name).is_relative() {
            m.push_str(" (a relative name is looked up in $CREDENTIALS_DIRECTORY)");
        }
        m
    })?;
    let value = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if value.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok((value.to_string(), path))
}

/// Who besides the owner can read `path` ("its group", "everyone"), or `None`.
pub fn others_can_read(path: &Path) -> Option<&'static str> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        if mode & 0o004 != 0 {
            Some("everyone")
        } else if mode & 0o040 != 0 {
            Some("its group")
        } else {
            None
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_with_their_key_only() {
        let key = SecretsKey::generate().unwrap();
        let token = key.seal("hunter2 ünï").unwrap();
        assert!(token.starts_with(PREFIX));
        assert_eq!(token_len(&format!("{token}@host")), token.len());
        assert_eq!(key.open(&token).unwrap(), "hunter2 ünï");
        // Two seals of one value differ (random nonce).
        assert_ne!(key.seal("hunter2 ünï").unwrap(), token);
        assert_eq!(SecretsKey::sealed_with(&token).unwrap(), key.id());

        let other = SecretsKey::generate().unwrap();
        let e = other.open(&token).unwrap_err();
        assert!(e.contains("sealed with another key"), "{e}");
        assert!(e.contains(&key.id()) && e.contains(&other.id()), "{e}");
        assert!(!e.contains("hunter2"));

        // Flip one bit of the ciphertext: the id still matches, the tag does not.
        let mut raw = URL_SAFE_NO_PAD.decode(&token[PREFIX.len()..]).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let tampered = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
        let e = key.open(&tampered).unwrap_err();
        assert!(e.contains("tampered"), "{e}");

        let e = key.open(&token[..20]).unwrap_err();
        assert!(e.contains("damaged"), "{e}");
    }

    #[test]
    fn keys_read_back_from_text() {
        let key = SecretsKey::generate().unwrap();
        let again = SecretsKey::from_text(&format!("{}\n", key.to_text()), "test").unwrap();
        assert_eq!(again.id(), key.id());
        assert!(
            SecretsKey::from_text("c2hvcnQ=", "key file k")
                .unwrap_err()
                .contains("key file k holds 5 bytes")
        );
        assert!(format!("{key:?}").contains(&key.id()));
        assert!(!format!("{key:?}").contains(&key.to_text()));
    }

    #[test]
    fn tokens_are_found_inside_text() {
        let text = "a: enc:v1:AAAA\nurl: postgres://u:enc:v1:B-_9@h/db\n";
        let found: Vec<&str> = find_tokens(text).into_iter().map(|r| &text[r]).collect();
        assert_eq!(found, ["enc:v1:AAAA", "enc:v1:B-_9"]);
    }
}
