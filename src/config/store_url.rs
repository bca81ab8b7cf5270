//! The `store:` URL: which run store to open. The spec lives here with the other specs;
//! [`crate::store::open`] turns it into a store and [`crate::store::config`] checks it.

use std::fmt;
use std::path::{Path, PathBuf};

/// A parsed `store:` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite://PATH`: the embedded store (a relative path is resolved against the folder
    /// of config.yaml by the config).
    Sqlite(PathBuf),
    /// A known scheme whose backend is not built yet (`postgres`, `postgresql`, `mysql`,
    /// `mariadb`); `shown` is the URL with its password as `***`.
    Unsupported { scheme: String, shown: String },
}

impl StoreUrl {
    /// Parses a URL; `base` resolves relative SQLite paths. `Err` names what is wrong.
    pub fn parse(url: &str, base: &Path) -> Result<StoreUrl, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| "a store url looks like `sqlite://PATH`".to_string())?;
        match scheme {
            "sqlite" if !rest.is_empty() => {
                let p = Path::new(rest);
                Ok(StoreUrl::Sqlite(if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    base.join(p)
                }))
            }
            "sqlite" => Err("`sqlite://` needs a path, e.g. `sqlite://data/ferry.db`".into()),
            "postgres" | "postgresql" | "mysql" | "mariadb" => Ok(StoreUrl::Unsupported {
                scheme: scheme.to_string(),
                shown: super::redact_url(url),
            }),
            other => Err(format!(
                "unknown store scheme `{other}`: use `sqlite://PATH`"
            )),
        }
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            StoreUrl::Unsupported { shown, .. } => f.write_str(shown),
        }
    }
}
