//! Reading the files that the configuration names: `config.yaml`, task files, query
//! files, message templates, CA files and SQLite seed scripts. One way, used everywhere
//! ferry reads such a file ([`read_text`], [`read_bytes`]):
//!
//! - **Regular files only.** A FIFO, a device (`/dev/zero`), a socket or a folder is
//!   refused by its metadata before it is opened (a symlink to a regular file is fine). The
//!   file is then opened with `O_NONBLOCK`, so that even a FIFO swapped in between the
//!   check and the open cannot block the open, and what was opened is checked again.
//! - **Of bounded size.** Each [`Kind`] has a limit (documented in
//!   docs/configuration.md, "Files ferry reads"): a file over it is refused by its size,
//!   and the read stops one byte past the limit, so that a file that grows while it is
//!   read (or a regular-looking file of endless content) cannot exhaust memory.
//!
//! Errors ([`ReadError`]) name the file and say what is wrong and what to do.

use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// What a file is for: decides its size limit and how errors call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `config.yaml` (`--config`).
    Config,
    /// `tasks/*.yaml`.
    Task,
    /// A task's `query_file`.
    Query,
    /// A message template part (`NAME.md.j2`, `.subject.j2`, `.html.j2`).
    Template,
    /// A `ca_file` (PEM).
    CaFile,
    /// A SQLite datasource's `seed_sql`.
    SeedSql,
    /// A `*_file` secret or the `enc:v1:` key file.
    Secret,
}

impl Kind {
    /// The largest file of this kind ferry reads, in bytes.
    pub const fn limit(self) -> u64 {
        match self {
            Kind::Config | Kind::Task => MIB,
            // The SQL gate's limit (`sqlgate::MAX_QUERY_BYTES`): a longer query would be
            // refused unread anyway.
            Kind::Query => MIB,
            Kind::Template => 256 * KIB,
            // The system's whole bundle (about 220 KB on Debian) fits many times over.
            Kind::CaFile => 4 * MIB,
            Kind::SeedSql => 64 * MIB,
            Kind::Secret => 64 * KIB,
        }
    }

    /// How messages call files of this kind (plural).
    fn plural(self) -> &'static str {
        match self {
            Kind::Config => "config files",
            Kind::Task => "task files",
            Kind::Query => "query files",
            Kind::Template => "templates",
            Kind::CaFile => "CA files",
            Kind::SeedSql => "seed SQL scripts",
            Kind::Secret => "secret files",
        }
    }
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Not found, no permission, an I/O error.
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A FIFO, device, socket or folder.
    NotRegular {
        path: PathBuf,
        what: &'static str,
        kind: Kind,
    },
    /// Over the kind's limit; `size` is `None` when the file grew past it while read.
    TooLarge {
        path: PathBuf,
        size: Option<u64>,
        kind: Kind,
    },
    /// Not UTF-8 text.
    NotText { path: PathBuf },
}

impl ReadError {
    /// The file does not exist (callers with a fallback, such as built-in templates).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    pub fn path(&self) -> &Path {
        match self {
            ReadError::Io { path, .. }
            | ReadError::NotRegular { path, .. }
            | ReadError::TooLarge { path, .. }
            | ReadError::NotText { path } => path,
        }
    }

    /// The message without the file's name, for a problem that already names the file
    /// (`config.yaml: is a FIFO …`).
    pub fn reason(&self) -> String {
        match self {
            ReadError::Io { source, .. } => format!("cannot read: {}", io_message(source)),
            ReadError::NotRegular { what, kind, .. } => format!(
                "is {what}, not a regular file: ferry reads {} only from regular files (a symlink to one is fine)",
                kind.plural()
            ),
            ReadError::TooLarge { size, kind, .. } => {
                let limit = size_text(kind.limit());
                let size = match size {
                    Some(n) => size_text(*n),
                    None => format!("over {limit} (it grew while it was read)"),
                };
                format!(
                    "is {size}; the limit for {} is {limit}: make it smaller",
                    kind.plural()
                )
            }
            ReadError::NotText { .. } => "is not UTF-8 text: save it as UTF-8".into(),
        }
    }
}

impl ReadError {
    /// The message with the file called by its setting: `cannot read ca_file certs/x.pem:
    /// file not found`, `ca_file certs/x.pem is a FIFO (named pipe), …`.
    pub fn named(&self, setting: &str) -> String {
        match self {
            ReadError::Io { path, source } => format!(
                "cannot read {setting} {}: {}",
                path.display(),
                io_message(source)
            ),
            other => format!("{setting} {} {}", other.path().display(), other.reason()),
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io { path, source } => {
                write!(f, "cannot read {}: {}", path.display(), io_message(source))
            }
            other => write!(f, "{} {}", other.path().display(), other.reason()),
        }
    }
}

/// An I/O error as a plain, lowercase reason (`file not found`, `permission denied`).
pub fn io_message(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "file not found".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let t = e.to_string();
            match t.find(" (os error") {
                Some(i) => t[..i].to_lowercase(),
                None => t,
            }
        }
    }
}

/// The text of `path`, a regular UTF-8 file of at most `kind.limit()` bytes.
pub fn read_text(path: &Path, kind: Kind) -> Result<String, ReadError> {
    String::from_utf8(read_bytes(path, kind)?).map_err(|_| ReadError::NotText {
        path: path.to_path_buf(),
    })
}

/// The bytes of `path`, a regular file of at most `kind.limit()` bytes. Never blocks on a
/// FIFO or device, never reads more than the limit and one byte.
pub fn read_bytes(path: &Path, kind: Kind) -> Result<Vec<u8>, ReadError> {
    let io_err = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    // The type first: opening a FIFO blocks until a writer comes, opening a device may
    // have effects of its own.
    check(path, kind, &std::fs::metadata(path).map_err(io_err)?)?;
    let file = open_nonblocking(path).map_err(io_err)?;
    // What was opened, in case the name was replaced since.
    let meta = file.metadata().map_err(io_err)?;
    check(path, kind, &meta)?;
    let limit = kind.limit();
    let mut buf = Vec::with_capacity(meta.len().min(limit) as usize + 1);
    file.take(limit + 1).read_to_end(&mut buf).map_err(io_err)?;
    if buf.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            size: None,
            kind,
        });
    }
    Ok(buf)
}

/// Checks without reading that `path` is a regular file within the kind's limit (for
/// files read later, such as a seed script).
pub fn check_file(path: &Path, kind: Kind) -> Result<(), ReadError> {
    let meta = std::fs::metadata(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    check(path, kind, &meta)
}

/// A regular file within the kind's limit.
fn check(path: &Path, kind: Kind, meta: &Metadata) -> Result<(), ReadError> {
    if !meta.is_file() {
        return Err(ReadError::NotRegular {
            path: path.to_path_buf(),
            what: describe_type(meta),
            kind,
        });
    }
    if meta.len() > kind.limit() {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            size: Some(meta.len()),
            kind,
        });
    }
    Ok(())
}

/// Opens `path` for reading without blocking on a FIFO (`O_NONBLOCK` on Unix).
#[cfg(unix)]
pub fn open_nonblocking(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

#[cfg(not(unix))]
pub fn open_nonblocking(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).open(path)
}

/// What a non-regular file is, for messages.
fn describe_type(meta: &Metadata) -> &'static str {
    let ft = meta.file_type();
    if ft.is_dir() {
        return "a folder";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

/// `1 MiB`, `256 KiB`, `3.2 MiB`, `812 bytes`.
fn size_text(n: u64) -> String {
    let (unit, name) = if n >= MIB {
        (MIB, "MiB")
    } else if n >= KIB {
        (KIB, "KiB")
    } else {
        return format!("{n} bytes");
    };
    if n.is_multiple_of(unit) {
        format!("{} {name}", n / unit)
    } else {
        format!("{:.1} {name}", n as f64 / unit as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_plainly() {
        assert_eq!(size_text(1 << 20), "1 MiB");
        assert_eq!(size_text(256 << 10), "256 KiB");
        assert_eq!(size_text(3_355_443), "3.2 MiB");
        assert_eq!(size_text(812), "812 bytes");
    }

    #[test]
    fn a_regular_file_within_the_limit_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.yaml");
        std::fs::write(&p, "a: 1\n").unwrap();
        assert_eq!(read_text(&p, Kind::Task).unwrap(), "a: 1\n");
        // Through a symlink too.
        let link = dir.path().join("l.yaml");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert_eq!(read_text(&link, Kind::Task).unwrap(), "a: 1\n");
    }

    #[test]
    fn a_file_over_the_limit_is_refused_by_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.j2");
        std::fs::write(&p, vec![b'x'; 300 << 10]).unwrap();
        let e = read_text(&p, Kind::Template).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{} is 300 KiB; the limit for templates is 256 KiB: make it smaller",
                p.display()
            )
        );
        // Exactly the limit is fine.
        std::fs::write(&p, vec![b'x'; 256 << 10]).unwrap();
        assert_eq!(read_text(&p, Kind::Template).unwrap().len(), 256 << 10);
    }

    #[test]
    fn devices_folders_and_missing_files_are_named() {
        let e = read_text(Path::new("/dev/zero"), Kind::Config).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/dev/zero is a character device, not a regular file: ferry reads config files only from regular files (a symlink to one is fine)"
        );
        let dir = tempfile::tempdir().unwrap();
        let e = read_text(dir.path(), Kind::Task).unwrap_err();
        assert!(e.reason().starts_with("is a folder,"), "{e}");
        let missing = dir.path().join("nope.sql");
        let e = read_text(&missing, Kind::Query).unwrap_err();
        assert!(e.is_not_found());
        assert_eq!(
            e.to_string(),
            format!("cannot read {}: file not found", missing.display())
        );
    }

    #[test]
    fn invalid_utf8_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.sql");
        std::fs::write(&p, b"SELECT '\xff'").unwrap();
        let e = read_text(&p, Kind::Query).unwrap_err();
        assert_eq!(e.reason(), "is not UTF-8 text: save it as UTF-8");
    }
}
