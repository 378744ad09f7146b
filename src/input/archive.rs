//! Zip archives (`.npz` and `torch.save` files), opened without reading
//! more of the file than their central directory needs.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::file::size_text;

/// The most the zip reader may read to find and parse an archive's central
/// directory: about half a million members' entries. When a candidate
/// directory does not parse, the reader searches backwards through the
/// whole file for another, so a sparse 100 GB file was read to the end.
const MAX_DIRECTORY_READ: u64 = 64 << 20;

/// The most a deflated stream can grow: deflate's limit is about 1032 to 1.
pub const MAX_DEFLATE_RATIO: u64 = 1100;

/// A reader that fails once it has read its budget, shared with its owner
/// so that the budget can be lifted.
pub struct Budgeted<R> {
    inner: R,
    left: Arc<AtomicU64>,
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.left.load(Relaxed);
        if left == 0 {
            return Err(std::io::Error::other("read budget spent"));
        }
        let wanted = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..wanted])?;
        self.left.fetch_sub(n as u64, Relaxed);
        Ok(n)
    }
}

impl<R: Seek> Seek for Budgeted<R> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(to)
    }
}

/// Opens a zip archive, reading at most [`MAX_DIRECTORY_READ`] bytes to
/// find its central directory; members are then read without that budget
/// (each is bounded by its own header). `kind` names the archive in the
/// message (`.npz`, `torch.save`).
pub fn open<R: Read + Seek>(reader: R, kind: &str) -> Result<zip::ZipArchive<Budgeted<R>>, String> {
    let left = Arc::new(AtomicU64::new(MAX_DIRECTORY_READ));
    let archive = zip::ZipArchive::new(Budgeted { inner: reader, left: left.clone() }).map_err(|e| {
        if left.load(Relaxed) == 0 {
            format!(
                "not a readable {kind} (zip) archive: no valid central directory found in the first {} read of it",
                size_text(MAX_DIRECTORY_READ)
            )
        } else {
            format!("not a readable {kind} (zip) archive: {e}")
        }
    })?;
    left.store(u64::MAX, Relaxed);
    Ok(archive)
}
