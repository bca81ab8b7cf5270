//! Splitting a zip too big for one email into numbered byte parts with a manifest.
//!
//! [`plan`] works out how many parts a zip needs so that each part plus its
//! `MANIFEST.txt` stays within the channel's `max_attachment_bytes` (counted before
//! encoding, like every attachment); [`split`] streams the zip into `NAME.zip.001`,
//! `.002`, … (never the whole file in memory), hashing each part and the whole, and
//! [`manifest`] writes the text every part's message carries: each part with its size and
//! sha256, the whole zip's, and how to rejoin them. Splitting the same zip again gives the
//! same parts, so a retry that sends only part 2 matches the part 1 sent before.

use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::store::FileRecord;
use crate::template::human_bytes;

/// Most parts a `max_parts` may allow: three-digit suffixes rejoined by
/// `cat NAME.zip.0*` in order.
pub const MAX_PARTS_LIMIT: u32 = 99;

/// Default `max_parts` of an email channel.
pub const DEFAULT_MAX_PARTS: u32 = 10;

/// The name of the manifest attached to every part.
pub const MANIFEST: &str = "MANIFEST.txt";

/// How a zip of `zip_bytes` is cut: `count` parts of at most `part_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub count: u32,
    pub part_bytes: u64,
}

/// The parts a zip needs so that each part with its manifest fits `limit`: `Ok(plan)`,
/// or `Err(None)` when even the manifest leaves no room, `Err(Some(n))` when it needs
/// `n` parts, more than `max_parts`.
pub fn plan(
    zip_name: &str,
    zip_bytes: u64,
    limit: u64,
    max_parts: u32,
) -> Result<Plan, Option<u64>> {
    // The manifest's size depends on the number of parts; sizes written with as many
    // digits as the limit make it an upper bound. A few rounds settle it.
    let mut reserve = 0u64;
    for _ in 0..8 {
        if reserve >= limit {
            return Err(None);
        }
        let part_bytes = limit - reserve;
        let count = zip_bytes.div_ceil(part_bytes).max(1);
        if count > u64::from(max_parts) {
            return Err(Some(count));
        }
        let widest = FileRecord {
            path: String::new(),
            bytes: limit,
            sha256: "0".repeat(64),
        };
        let whole = FileRecord {
            bytes: zip_bytes,
            ..widest.clone()
        };
        let parts = vec![widest; count as usize];
        let needed = manifest(zip_name, &whole, &parts).len() as u64;
        if needed <= reserve {
            return Ok(Plan {
                count: count as u32,
                part_bytes,
            });
        }
        reserve = needed;
    }
    Err(None)
}

/// `NAME.zip.007`.
pub fn part_name(zip_name: &str, n: u32) -> String {
    format!("{zip_name}.{n:03}")
}

/// Cuts `zip` into `plan.count` files in `dir`, streaming; returns them in order (path,
/// size, sha256) and the whole zip's sha256.
pub fn split(zip: &Path, dir: &Path, plan: Plan) -> std::io::Result<(Vec<FileRecord>, String)> {
    let name = zip
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "result.zip".into());
    let mut input = BufReader::with_capacity(1 << 16, std::fs::File::open(zip)?);
    let mut whole = sha2::Sha256::new();
    let mut parts = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    for n in 1..=plan.count {
        let path: PathBuf = dir.join(part_name(&name, n));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        let mut hash = sha2::Sha256::new();
        let mut left = plan.part_bytes;
        let mut written = 0u64;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let got = input.read(&mut buf[..want])?;
            if got == 0 {
                break;
            }
            out.write_all(&buf[..got])?;
            hash.update(&buf[..got]);
            whole.update(&buf[..got]);
            left -= got as u64;
            written += got as u64;
        }
        out.flush()?;
        parts.push(FileRecord {
            path: path.display().to_string(),
            bytes: written,
            sha256: hex::encode(hash.finalize()),
        });
    }
    if input.read(&mut buf)? != 0 {
        return Err(std::io::Error::other(format!(
            "{name} grew while it was being split"
        )));
    }
    Ok((parts, hex::encode(whole.finalize())))
}

/// The manifest of a split zip: the whole zip, every part, and how to rejoin them.
pub fn manifest(zip_name: &str, zip: &FileRecord, parts: &[FileRecord]) -> String {
    let n = parts.len();
    let mut m = format!(
        "{zip_name} was split into {n} parts to fit the mail size limit.\n\n\
         Whole file: {zip_name}  {} bytes ({})  sha256 {}\n\nParts:\n",
        zip.bytes,
        human_bytes(zip.bytes),
        zip.sha256
    );
    for (i, p) in parts.iter().enumerate() {
        m.push_str(&format!(
            "  {}  {} bytes  sha256 {}\n",
            part_name(zip_name, i as u32 + 1),
            p.bytes,
            p.sha256
        ));
    }
    let plus = (1..=n as u32)
        .map(|i| part_name(zip_name, i))
        .collect::<Vec<_>>()
        .join("+");
    m.push_str(&format!(
        "\nTo rejoin, save all {n} parts in one folder, then:\n\
         \x20 Linux, macOS:  cat {zip_name}.0* > {zip_name}\n\
         \x20 Windows:       copy /b {plus} {zip_name}\n\
         \x20 or open {} with 7-Zip, which joins the parts itself.\n\
         The rejoined {zip_name} must have the sha256 above \
         (sha256sum {zip_name}; Windows: certutil -hashfile {zip_name} SHA256).\n",
        part_name(zip_name, 1)
    ));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_keep_each_part_and_manifest_within_the_limit() {
        let p = plan("a.zip", 100_000, 30_000, 10).unwrap();
        assert_eq!(p.count, 4);
        let widest = FileRecord {
            path: String::new(),
            bytes: 30_000,
            sha256: "0".repeat(64),
        };
        let whole = FileRecord {
            bytes: 100_000,
            ..widest.clone()
        };
        let m = manifest("a.zip", &whole, &vec![widest.clone(); 4]).len() as u64;
        assert!(p.part_bytes + m <= 30_000, "{p:?} + {m}");
        assert!(u64::from(p.count) * p.part_bytes >= 100_000);
        // Too many parts, or no room beside the manifest.
        assert_eq!(plan("a.zip", 100_000, 30_000, 3), Err(Some(4)));
        assert_eq!(plan("a.zip", 1000, 300, 10), Err(None));
    }

    #[test]
    fn parts_rejoin_to_the_zip_and_are_the_same_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let zip = dir.path().join("r.zip");
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&zip, &bytes).unwrap();
        let plan = Plan {
            count: 3,
            part_bytes: 4000,
        };
        let out = |name: &str| {
            let d = dir.path().join(name);
            std::fs::create_dir(&d).unwrap();
            split(&zip, &d, plan).unwrap()
        };
        let (parts, whole) = out("one");
        assert_eq!(
            parts.iter().map(|p| p.bytes).collect::<Vec<_>>(),
            [4000, 4000, 2000]
        );
        assert!(parts[1].path.ends_with("r.zip.002"), "{}", parts[1].path);
        let mut joined = Vec::new();
        for p in &parts {
            joined.extend(std::fs::read(&p.path).unwrap());
        }
        assert_eq!(joined, bytes);
        assert_eq!(whole, hex::encode(sha2::Sha256::digest(&bytes)));
        let (again, whole_again) = out("two");
        assert_eq!(whole_again, whole);
        let digests = |p: &[FileRecord]| {
            p.iter()
                .map(|f| (f.bytes, f.sha256.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(digests(&again), digests(&parts));
        let text = manifest(
            "r.zip",
            &FileRecord {
                path: String::new(),
                bytes: 10_000,
                sha256: whole.clone(),
            },
            &parts,
        );
        assert!(text.contains(&format!(
            "r.zip.003  2000 bytes  sha256 {}",
            parts[2].sha256
        )));
        assert!(text.contains("cat r.zip.0* > r.zip"), "{text}");
        assert!(
            text.contains("copy /b r.zip.001+r.zip.002+r.zip.003 r.zip"),
            "{text}"
        );
        assert!(text.contains(&format!("sha256 {whole}")), "{text}");
    }
}
