//! Zips finished files into one archive (deflate, ZIP64 when a member needs it), itself
//! written as a partial file and published like any other.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;
use zip::CompressionMethod;
use zip::write::SimpleFileOptions;

use super::{FormatError, Staged, Unpublished, partial_path};

/// Members at or above this size need ZIP64 records.
const ZIP64_THRESHOLD: u64 = 0xFFFF_FFFF;

/// Writes a zip archive at `target` holding each `(source file, name in the archive)`,
/// and syncs it. Returns its size. Each member is dated with its source file's last
/// change (when the run wrote it), as a wall time in `tz` (zip entries carry no zone);
/// `None` takes the machine's zone. The same files give the same zip, so email parts
/// zipped again on a later attempt still rejoin.
pub fn zip_files(target: &Path, members: &[(&Path, &str)], tz: Option<Tz>) -> io::Result<u64> {
    let file = File::create(target)?;
    let mut zw = zip::ZipWriter::new(BufWriter::with_capacity(1 << 20, file));
    for (source, name) in members {
        let meta = std::fs::metadata(source)?;
        let size = meta.len();
        let opts = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(6))
            .last_modified_time(entry_time(meta.modified().ok(), tz))
            .large_file(size >= ZIP64_THRESHOLD);
        zw.start_file(*name, opts).map_err(io::Error::other)?;
        let mut src = File::open(source)?;
        io::copy(&mut src, &mut zw)?;
    }
    let out = zw.finish().map_err(io::Error::other)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(file.metadata()?.len())
}

/// `at` as a zip entry time (whole seconds, rounded down to even ones by the format); the
/// format's epoch (1980-01-01) for a time it cannot hold.
fn entry_time(at: Option<std::time::SystemTime>, tz: Option<Tz>) -> zip::DateTime {
    let Some(at) = at else {
        return zip::DateTime::default();
    };
    let utc: DateTime<Utc> = at.into();
    let wall = match tz {
        Some(tz) => utc.with_timezone(&tz).naive_local(),
        None => utc.with_timezone(&chrono::Local).naive_local(),
    };
    let (Ok(year), Ok(month), Ok(day), Ok(hour), Ok(minute), Ok(second)) = (
        u16::try_from(wall.year()),
        u8::try_from(wall.month()),
        u8::try_from(wall.day()),
        u8::try_from(wall.hour()),
        u8::try_from(wall.minute()),
        u8::try_from(wall.second()),
    ) else {
        return zip::DateTime::default();
    };
    zip::DateTime::from_date_and_time(year, month, day, hour, minute, second).unwrap_or_default()
}

/// Packs `members` into `<dir>/<base_name>.zip`, staged. The members' partials are left
/// to their owner; the archive's partial is removed if packing fails (or panics).
pub fn zip_staged(
    dir: &Path,
    base_name: &str,
    members: &[Staged],
    tz: Tz,
) -> Result<Unpublished, FormatError> {
    let final_name = format!("{base_name}.zip");
    let partial = partial_path(dir, &final_name);
    let staged = Unpublished::new(vec![Staged {
        partial: partial.clone(),
        final_name,
        digest: None,
    }]);
    let list: Vec<(&Path, &str)> = members
        .iter()
        .map(|m| (m.partial.as_path(), m.final_name.as_str()))
        .collect();
    zip_files(&partial, &list, Some(tz)).map_err(|e| FormatError::io(&partial, e))?;
    Ok(staged)
}
