//! Opening input files. Only regular files are read: a FIFO, a device, a
//! socket or a directory is refused before a byte is read, and opening never
//! waits (the file is opened non-blocking and checked again with `fstat`, in
//! case the path was replaced in between). No read goes past the size the
//! file had when it was opened, and a file that shrinks or grows meanwhile is
//! reported as changed.

use std::fs::{File, FileType, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The largest text file read: JSON arrays and bundles, SSD truths in JSON,
/// class-name lists and the reports `diff` compares. Parsing keeps the text
/// and what it holds in memory; big arrays belong in `.npy` files, which
/// are memory-mapped.
pub const MAX_TEXT_BYTES: u64 = 1 << 30;

/// What a file that changed during the run is reported as.
pub const CHANGED: &str = "input changed while it was being read";

/// An opened regular file and its size when it was opened.
pub(crate) struct Opened {
    pub file: File,
    pub len: u64,
}

/// Opens `path` for reading if it is a non-empty regular file. The error is
/// the message part only; the caller adds the file and the array.
pub(crate) fn open(path: &Path) -> Result<Opened, String> {
    // Refused before opening: opening a device can have effects of its own.
    let meta = std::fs::metadata(path).map_err(open_error)?;
    if !meta.is_file() {
        return Err(not_regular(meta.file_type()));
    }
    let file = OpenOptions::new()
        .read(true)
        // Should the path become a FIFO after the check, opening it does not
        // wait for a writer; the fstat below then refuses it.
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(open_error)?;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err(not_regular(meta.file_type()));
    }
    let len = meta.len();
    if len == 0 {
        // Files under /proc and /sys report a size of 0 and still have content.
        let mut probe = [0u8; 1];
        return Err(match file.read_at(&mut probe, 0) {
            Ok(n) if n > 0 => {
                "reports a size of 0 but has content (a virtual file, as under /proc or /sys): \
                               copy it to a regular file first"
                    .into()
            }
            _ => "the file is empty".into(),
        });
    }
    Ok(Opened { file, len })
}

fn open_error(e: std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        _ => format!("cannot open: {e}"),
    }
}

/// Why a path that exists is not read.
pub(crate) fn not_regular(kind: FileType) -> String {
    let what = if kind.is_dir() {
        "is a directory"
    } else if kind.is_fifo() {
        "is a FIFO (named pipe)"
    } else if kind.is_char_device() {
        "is a character device"
    } else if kind.is_block_device() {
        "is a block device"
    } else if kind.is_socket() {
        "is a socket"
    } else {
        "is a special file"
    };
    format!(
        "{what}, not a regular file: inputs are read from regular files only (save the data to a file first)"
    )
}

/// A size for people: `1.5 GiB (1610612736 bytes)`.
pub fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {} ({bytes} bytes)", UNITS[unit])
}

impl Opened {
    /// Reads the first bytes of the file into `buf`; returns how many.
    pub fn peek(&self, buf: &mut [u8]) -> usize {
        let mut filled = 0;
        while filled < buf.len() {
            match self.file.read_at(&mut buf[filled..], filled as u64) {
                Ok(0) | Err(_) => break,
                Ok(n) => filled += n,
            }
        }
        filled
    }

    /// The whole file, at most [`MAX_TEXT_BYTES`] of it.
    pub fn read_text(self) -> Result<Vec<u8>, String> {
        if self.len > MAX_TEXT_BYTES {
            return Err(format!(
                "is {}, more than the {} losscope reads from a text (JSON) file: parsing keeps the text \
                 and every number in memory; save big arrays with np.save (.npy files are memory-mapped)",
                size_text(self.len),
                size_text(MAX_TEXT_BYTES)
            ));
        }
        let len = self.len as usize;
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(len)
            .map_err(|_| format!("cannot allocate {} to read the file", size_text(self.len)))?;
        let mut file = &self.file;
        file.take(self.len).read_to_end(&mut bytes).map_err(|e| format!("cannot read: {e}"))?;
        if bytes.len() < len {
            return Err(format!("{CHANGED}: it shrank from {len} to {} bytes", bytes.len()));
        }
        let mut more = [0u8; 1];
        if file.read(&mut more).map_err(|e| format!("cannot read: {e}"))? > 0 {
            return Err(format!("{CHANGED}: it grew past the {len} bytes it had when opened"));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_for_people() {
        assert_eq!(size_text(10), "10 bytes");
        assert_eq!(size_text(1 << 30), "1.0 GiB (1073741824 bytes)");
        assert_eq!(size_text(3 << 19), "1.5 MiB (1572864 bytes)");
    }

    #[test]
    fn special_files_are_refused_and_empty_ones_named() {
        let err = open(Path::new("/dev/null")).err().expect("a device is refused");
        assert!(err.contains("character device, not a regular file"), "{err}");
        let err = open(Path::new("/")).err().expect("a directory is refused");
        assert!(err.contains("is a directory"), "{err}");
        if Path::new("/proc/self/status").exists() {
            let err = open(Path::new("/proc/self/status")).err().expect("a virtual file is refused");
            assert!(err.contains("virtual file"), "{err}");
        }
    }
}
