//! Store config checks: `store.url` of `config.yaml` becomes a [`StoreUrl`] ([`check`],
//! called by the config loader through [`crate::config::Checks`]).

use std::path::Path;

use crate::config::raw::RawStore;
use crate::config::{Checker, redact_url};
use crate::store::StoreUrl;

/// `store.url` (default: `data/ferry.db` beside config.yaml).
pub fn check(c: &mut Checker, raw: Option<&RawStore>, base_dir: &Path) -> StoreUrl {
    let default_store = || StoreUrl::Sqlite(base_dir.join("data/ferry.db"));
    match raw {
        Some(s) => {
            let url = c.env_req(&s.url, "store.url");
            match StoreUrl::parse(&url, base_dir) {
                Ok(StoreUrl::Unsupported { scheme, .. }) => {
                    c.at(
                        &s.url,
                        "store.url",
                        format!(
                            "unsupported store url `{}`: {}",
                            redact_url(&url),
                            crate::store::not_yet_supported(&scheme)
                        ),
                    );
                    default_store()
                }
                Ok(u) => u,
                Err(msg) => {
                    if !url.is_empty() {
                        c.at(
                            &s.url,
                            "store.url",
                            format!("unsupported store url `{}`: {msg}", redact_url(&url)),
                        );
                    }
                    default_store()
                }
            }
        }
        None => default_store(),
    }
}
