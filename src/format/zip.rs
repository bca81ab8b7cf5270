//! Zips finished files into one archive (deflate, ZIP64 when a member needs it), itself
//! written as a partial file and published like any other.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;

use zip::CompressionMethod;
use zip::write::SimpleFileOptions;

use super::{FormatError, Staged, partial_path};

/// Members at or above this size need ZIP64 records.
const ZIP64_THRESHOLD: u64 = 0xFFFF_FFFF;

/// Packs `members` into `<dir>/<base_name>.zip` (staged) and removes the members' partials.
pub fn zip_staged(dir: &Path, base_name: &str, members: &[Staged]) -> Result<Staged, FormatError> {
    let final_name = format!("{base_name}.zip");
    let partial = partial_path(dir, &final_name);
    let result = (|| -> Result<(), FormatError> {
        let file = File::create(&partial).map_err(|e| FormatError::io(&partial, e))?;
        let mut zw = zip::ZipWriter::new(BufWriter::with_capacity(1 << 20, file));
        for m in members {
            let size = std::fs::metadata(&m.partial)
                .map_err(|e| FormatError::io(&m.partial, e))?
                .len();
            let opts = SimpleFileOptions::default()
                .compression_method(CompressionMethod::Deflated)
                .compression_level(Some(6))
                .large_file(size >= ZIP64_THRESHOLD);
            zw.start_file(m.final_name.as_str(), opts)
                .map_err(|e| FormatError::io(&partial, io::Error::other(e)))?;
            let mut src = File::open(&m.partial).map_err(|e| FormatError::io(&m.partial, e))?;
            io::copy(&mut src, &mut zw).map_err(|e| FormatError::io(&partial, e))?;
        }
        let out = zw
            .finish()
            .map_err(|e| FormatError::io(&partial, io::Error::other(e)))?;
        let file = out
            .into_inner()
            .map_err(|e| FormatError::io(&partial, e.into_error()))?;
        file.sync_all().map_err(|e| FormatError::io(&partial, e))
    })();
    for m in members {
        let _ = std::fs::remove_file(&m.partial);
    }
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    Ok(Staged {
        partial,
        final_name,
        digest: None,
    })
}
