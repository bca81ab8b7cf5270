//! Zips finished files into one archive (deflate, ZIP64 when a member needs it), itself
//! written as a partial file and published like any other.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;

use zip::CompressionMethod;
use zip::write::SimpleFileOptions;

use super::{FormatError, Staged, Unpublished, partial_path};

/// Members at or above this size need ZIP64 records.
const ZIP64_THRESHOLD: u64 = 0xFFFF_FFFF;

/// Writes a zip archive at `target` holding each `(source file, name in the archive)`,
/// and syncs it. Returns its size.
pub fn zip_files(target: &Path, members: &[(&Path, &str)]) -> io::Result<u64> {
    let file = File::create(target)?;
    let mut zw = zip::ZipWriter::new(BufWriter::with_capacity(1 << 20, file));
    for (source, name) in members {
        let size = std::fs::metadata(source)?.len();
        let opts = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(6))
            // A fixed member time (the zip format's epoch, 1980-01-01) makes the same
            // files give the same zip: email parts sent on different attempts rejoin.
            .last_modified_time(zip::DateTime::default())
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

/// Packs `members` into `<dir>/<base_name>.zip`, staged. The members' partials are left
/// to their owner; the archive's partial is removed if packing fails (or panics).
pub fn zip_staged(
    dir: &Path,
    base_name: &str,
    members: &[Staged],
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
    zip_files(&partial, &list).map_err(|e| FormatError::io(&partial, e))?;
    Ok(staged)
}
