//! Output formats: the [`FormatWriter`] trait, the CSV and XLSX writers, zipping, and
//! atomic publishing.
//!
//! Writers run on a blocking thread and receive rows in chunks. They write only to
//! *partial* files (`.NAME.PID.partial`) in the destination folder and fsync them in
//! [`FormatWriter::finish`]. [`publish`] then gives each partial its final name without
//! ever overwriting an existing file (a hard link, which fails if the name is taken, then
//! the partial is removed), and fsyncs the folder. A crash at any point leaves either no
//! file under the final name or a complete one; [`sweep_partials`] removes the leftovers
//! of dead processes at start.
//!
//! Adding a format: a `Format` variant (config), a module implementing [`FormatWriter`],
//! an arm in [`create`].

pub mod csv;
pub mod xlsx;
pub mod zip;

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use sha2::{Digest, Sha256};

use crate::config::{Format, OutputSpec};
use crate::value::{Column, Rows};

/// What a writer needs to know about where and how to write.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Destination folder (created by the caller).
    pub dir: PathBuf,
    /// File name without extension (already sanitized).
    pub base_name: String,
    /// Folder for the writer's own temporary files (xlsx worksheets).
    pub temp_dir: PathBuf,
    /// Zone in which instants are rendered.
    pub tz: Tz,
    pub output: OutputSpec,
}

/// A finished file waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub partial: PathBuf,
    pub final_name: String,
    /// Size and sha256, when the writer computed them while writing.
    pub digest: Option<(u64, String)>,
}

/// Counts and hashes every byte on its way to `inner`, so that publishing need not read
/// the file again.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: std::io::Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The inner writer, the byte count and the hex sha256.
    pub fn finish(self) -> (W, u64, String) {
        (self.inner, self.bytes, hex::encode(self.hasher.finalize()))
    }
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The result of [`FormatWriter::finish`].
#[derive(Debug, Default)]
pub struct Finished {
    pub staged: Vec<Staged>,
    /// Cuts and conversions worth telling the user (truncated cells, extra sheets).
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// `path` is the file as the user knows it (the final name, not the partial).
    #[error("cannot write {path}: {}", crate::fsread::io_message(source))]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("xlsx: {0}")]
    Xlsx(String),
}

impl FormatError {
    /// An I/O error on `path`; a partial file is named by its final name.
    pub fn io(path: &Path, source: io::Error) -> FormatError {
        let shown = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(partial_final_name)
            .map(|name| path.with_file_name(name))
            .unwrap_or_else(|| path.to_path_buf());
        FormatError::Io {
            path: shown.display().to_string(),
            source,
        }
    }
}

/// Streams rows into files.
pub trait FormatWriter: Send {
    /// Called once, before any row, with the result's columns (a task's single query).
    fn begin(&mut self, columns: &[Column]) -> Result<(), FormatError>;
    /// Starts part `name` of a task with several queries, instead of [`begin`]: a sheet
    /// named `name` (xlsx) or a file `<base_name>_<name>` (csv). Rows written after it
    /// belong to this part; parts come in order.
    ///
    /// [`begin`]: FormatWriter::begin
    fn begin_part(&mut self, name: &str, columns: &[Column]) -> Result<(), FormatError>;
    /// Called for each chunk, in order.
    fn write_rows(&mut self, rows: &Rows) -> Result<(), FormatError>;
    /// Flushes and fsyncs; returns the partial files to publish.
    fn finish(self: Box<Self>) -> Result<Finished, FormatError>;
}

/// Builds the writer for `opts.output.format`.
pub fn create(opts: WriterOptions) -> Result<Box<dyn FormatWriter>, FormatError> {
    match opts.output.format {
        Format::Csv => Ok(Box::new(csv::CsvWriter::new(opts)?)),
        Format::Xlsx => Ok(Box::new(xlsx::XlsxWriter::new(opts)?)),
    }
}

/// The partial path for `final_name` in `dir`, unique to this process.
pub fn partial_path(dir: &Path, final_name: &str) -> PathBuf {
    dir.join(format!(".{final_name}.{}.partial", std::process::id()))
}

/// A published file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
}

/// Gives each staged file its final name (never overwriting: `name_2.csv` if `name.csv`
/// exists), fsyncs the folder, and returns size and sha256 of each.
pub fn publish(dir: &Path, staged: &[Staged]) -> Result<Vec<Published>, FormatError> {
    let mut out = Vec::with_capacity(staged.len());
    for s in staged {
        let (stem, ext) = match s.final_name.rsplit_once('.') {
            Some((stem, ext)) => (stem.to_string(), format!(".{ext}")),
            None => (s.final_name.clone(), String::new()),
        };
        let mut n = 1;
        let target = loop {
            let name = if n == 1 {
                s.final_name.clone()
            } else {
                format!("{stem}_{n}{ext}")
            };
            let target = dir.join(&name);
            match std::fs::hard_link(&s.partial, &target) {
                Ok(()) => break target,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    n += 1;
                    if n > 10_000 {
                        return Err(FormatError::io(&target, e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                    // File systems without hard links: check, then rename.
                    if target.exists() {
                        n += 1;
                        continue;
                    }
                    std::fs::rename(&s.partial, &target)
                        .map_err(|e| FormatError::io(&target, e))?;
                    break target;
                }
                Err(e) => return Err(FormatError::io(&target, e)),
            }
        };
        if s.partial.exists() {
            std::fs::remove_file(&s.partial).map_err(|e| FormatError::io(&s.partial, e))?;
        }
        let (bytes, sha256) = match &s.digest {
            Some(d) => d.clone(),
            None => hash_file(&target).map_err(|e| FormatError::io(&target, e))?,
        };
        out.push(Published {
            path: target,
            bytes,
            sha256,
        });
    }
    sync_dir(dir).map_err(|e| FormatError::io(dir, e))?;
    Ok(out)
}

/// Staged files on their way to [`publish`]: when dropped unpublished (a failure, a
/// cancelled run, a panic in a writer or in zip), their partial files are removed.
#[derive(Debug, Default)]
pub struct Unpublished(Vec<Staged>);

impl Unpublished {
    pub fn new(staged: Vec<Staged>) -> Unpublished {
        Unpublished(staged)
    }

    pub fn files(&self) -> &[Staged] {
        &self.0
    }

    /// Adds more files to publish (or remove) together.
    pub fn extend(&mut self, more: Vec<Staged>) {
        self.0.extend(more);
    }

    /// [`publish`]es them; on an error the partials left are removed.
    pub fn publish(mut self, dir: &Path) -> Result<Vec<Published>, FormatError> {
        let published = publish(dir, &self.0)?;
        self.0.clear();
        Ok(published)
    }
}

impl Drop for Unpublished {
    fn drop(&mut self) {
        for s in &self.0 {
            let _ = std::fs::remove_file(&s.partial);
        }
    }
}

/// Size and hex sha256 of a file.
pub fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex::encode(hasher.finalize())))
}

/// fsyncs a folder so that a rename or link in it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Removes partial files left by processes that no longer run, under `root`
/// (recursively). Returns how many were removed.
pub fn sweep_partials(root: &Path, alive: &dyn Fn(u32) -> bool) -> usize {
    let mut removed = 0;
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            removed += sweep_partials(&path, alive);
            continue;
        }
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = partial_owner(&name) else {
            continue;
        };
        if !alive(pid) && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// This process's folder under the temporary folder (`<temp_dir>/<pid>`).
pub fn process_temp_dir(temp_dir: &Path) -> PathBuf {
    temp_dir.join(std::process::id().to_string())
}

/// Writers using each `<temp_dir>/<pid>` folder of this process right now.
static TEMP_USERS: std::sync::Mutex<std::collections::BTreeMap<PathBuf, usize>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// One writer's use of this process's temporary folder: the first use creates
/// `<temp_dir>/<pid>`, and the last one to end removes it, so that no empty folder is left
/// behind after a run (one lock orders creating and removing between concurrent runs).
#[derive(Debug)]
pub struct TempDirUse {
    dir: PathBuf,
}

impl TempDirUse {
    pub fn acquire(temp_dir: &Path) -> io::Result<TempDirUse> {
        let dir = process_temp_dir(temp_dir);
        let mut users = TEMP_USERS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::fs::create_dir_all(&dir)?;
        *users.entry(dir.clone()).or_default() += 1;
        Ok(TempDirUse { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TempDirUse {
    fn drop(&mut self) {
        let mut users = TEMP_USERS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = users.entry(self.dir.clone()).or_default();
        *count = count.saturating_sub(1);
        if *count == 0 {
            users.remove(&self.dir);
            // Fails (and leaves it) when something else is still in it.
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// Removes `<temp_dir>/<pid>` folders of processes that no longer run (worksheet temp
/// files of killed xlsx exports). Returns how many folders were removed.
pub fn sweep_temp(temp_dir: &Path, alive: &dyn Fn(u32) -> bool) -> usize {
    let Ok(entries) = std::fs::read_dir(temp_dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if e.path().is_dir() && !alive(pid) && std::fs::remove_dir_all(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The pid in a partial file name `.NAME.PID.partial`.
fn partial_owner(name: &str) -> Option<u32> {
    partial_parts(name)?.1.parse().ok()
}

/// `NAME` of a partial file name `.NAME.PID.partial`.
fn partial_final_name(name: &str) -> Option<&str> {
    let (name, pid) = partial_parts(name)?;
    pid.parse::<u32>().is_ok().then_some(name)
}

fn partial_parts(name: &str) -> Option<(&str, &str)> {
    name.strip_prefix('.')?
        .strip_suffix(".partial")?
        .rsplit_once('.')
}

/// Makes a rendered file name safe: no folders, no control characters, no leading dot.
pub fn sanitize_file_name(name: &str) -> String {
    let cleaned: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches('.').to_string();
    if cleaned.is_empty() {
        "export".to_string()
    } else {
        cleaned
    }
}

/// Makes a rendered folder path safe: relative, no `..`, each part sanitized.
pub fn sanitize_dir(path: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.split(['/', '\\']) {
        let p = part.trim();
        if p.is_empty() || p == "." || p == ".." {
            continue;
        }
        out.push(sanitize_file_name(p));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized() {
        assert_eq!(sanitize_file_name("../etc/passwd"), "_etc_passwd");
        assert_eq!(sanitize_file_name("销售 日报:2026"), "销售 日报_2026");
        assert_eq!(sanitize_file_name("..."), "export");
        assert_eq!(sanitize_dir("../a/./b/../c"), PathBuf::from("a/b/c"));
        assert_eq!(sanitize_dir("/abs"), PathBuf::from("abs"));
    }

    #[test]
    fn publish_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("r.csv"), "old").unwrap();
        let partial = partial_path(d, "r.csv");
        std::fs::write(&partial, "new").unwrap();
        let out = publish(
            d,
            &[Staged {
                partial: partial.clone(),
                final_name: "r.csv".into(),
                digest: None,
            }],
        )
        .unwrap();
        assert_eq!(out[0].path, d.join("r_2.csv"));
        assert_eq!(std::fs::read_to_string(d.join("r.csv")).unwrap(), "old");
        assert_eq!(std::fs::read_to_string(d.join("r_2.csv")).unwrap(), "new");
        assert_eq!(out[0].bytes, 3);
        assert_eq!(
            out[0].sha256,
            "11507a0e2f5e69d5dfa40a62a1bd7b6ee57e6bcd85c67c9b8431b36fff21c437"
        );
        assert!(!partial.exists());
    }

    #[test]
    fn io_errors_name_the_final_file_plainly() {
        let e = FormatError::io(
            &partial_path(Path::new("exports/t"), "r.csv"),
            io::Error::from_raw_os_error(28),
        );
        assert_eq!(
            e.to_string(),
            "cannot write exports/t/r.csv: no space left on device"
        );
    }

    #[test]
    fn sweep_removes_only_dead_owners() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("t");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(".a.csv.111.partial"), "x").unwrap();
        std::fs::write(sub.join(".b.csv.222.partial"), "x").unwrap();
        std::fs::write(sub.join("c.csv"), "x").unwrap();
        let removed = sweep_partials(dir.path(), &|pid| pid == 222);
        assert_eq!(removed, 1);
        assert!(!sub.join(".a.csv.111.partial").exists());
        assert!(sub.join(".b.csv.222.partial").exists());
        assert!(sub.join("c.csv").exists());
    }
}
