//! Links config checks: the `links:` section of `config.yaml` becomes a [`LinksSpec`]
//! ([`check`], called by the config loader through [`crate::config::Checks`]).

use serde_saphyr::Spanned;

use crate::config::raw::RawLinks;
use crate::config::{Checker, LinksSpec, Secret};

/// The `links:` section. Every field is checked; a bad one is a problem (the returned
/// spec is then never used, since the config as a whole fails).
pub fn check(c: &mut Checker, raw: &Spanned<RawLinks>) -> LinksSpec {
    use crate::links::{DEFAULT_EXPIRY, DEFAULT_LISTEN, MAX_EXPIRY};
    let l = &raw.value;
    let default_listen: std::net::SocketAddr = DEFAULT_LISTEN.parse().expect("valid default");
    let listen = match &l.listen {
        Some(s) => {
            let v = c.env_req(s, "links.listen");
            v.trim().parse().unwrap_or_else(|_| {
                c.at(
                    s,
                    "links.listen",
                    format!(
                        "`{v}` is not a socket address such as `127.0.0.1:8480` or `[::1]:8480` (an IP address and a port)"
                    ),
                );
                default_listen
            })
        }
        None => default_listen,
    };
    let url = c.env_req(&l.public_url, "links.public_url");
    let public_url = match crate::links::check_public_url(&url) {
        Ok(u) => u,
        Err(e) => {
            c.at(&l.public_url, "links.public_url", e);
            String::new()
        }
    };
    let key = match c.secret(
        l.signing_key.as_ref(),
        l.signing_key_file.as_ref(),
        "links.signing_key",
    ) {
        Some(key) => {
            if let Err(e) = crate::links::check_signing_key(&key) {
                match (&l.signing_key, &l.signing_key_file) {
                    (Some(at), _) => c.at(at, "links.signing_key", e),
                    (None, Some(at)) => c.at(at, "links.signing_key_file", e),
                    (None, None) => {}
                }
            }
            key
        }
        None => {
            if l.signing_key.is_none() && l.signing_key_file.is_none() {
                c.at(
                    raw,
                    "links.signing_key",
                    "missing `signing_key`: the HMAC key that signs links, at least 32 bytes \
                     (`signing_key: ${FERRY_LINK_KEY}`, or `signing_key_file: FILE`)",
                );
            }
            String::new()
        }
    };
    let mut expiry = c.duration(&l.expiry, "links.expiry", DEFAULT_EXPIRY);
    if expiry > MAX_EXPIRY {
        if let Some(e) = &l.expiry {
            c.at(
                e,
                "links.expiry",
                format!(
                    "`{}` is longer than the cap of 7d: a download link lives at most 7 days",
                    e.value
                ),
            );
        }
        expiry = MAX_EXPIRY;
    }
    LinksSpec {
        listen,
        public_url,
        signing_key: Secret::new(key),
        expiry,
        trust_proxy: l.trust_proxy.unwrap_or(false),
    }
}
