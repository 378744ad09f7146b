//! Delivering the rendered report: stdout (a closed pipe is not an error),
//! or a file written through a temporary file and a rename, so a reader
//! never sees half a report; and the lines written to stderr, which never
//! fail a run.
//!
//! An `-o` file is created with the mode any program gets (0666 less the
//! umask) and an existing one keeps its mode. A symbolic link at `-o` is
//! written through, as the shell's `>` does: its final target is replaced
//! and the link stays.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::printable;

/// Writes `text` to stdout; a reader that went away (`| head`) is fine.
pub fn to_stdout(text: &str) -> Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(Error::Output { path: "stdout".into(), message: e.to_string() })
        }
        _ => Ok(()),
    }
}

/// The width of the terminal that stdout is, if it is one, for tables to
/// fit. A pipe or a file gets `None`: its text does not depend on any
/// terminal.
pub fn terminal_width() -> Option<u16> {
    use std::io::IsTerminal;
    // comfy-table asks the terminal (through crossterm) for its size.
    io::stdout().is_terminal().then(|| comfy_table::Table::new().width()).flatten()
}

/// Writes one line to stderr, its control characters made visible. A
/// stderr that cannot be written (closed, or a full device) changes
/// nothing: the run keeps the exit code it would have had.
pub fn to_stderr(line: &str) {
    let mut stderr = io::stderr().lock();
    let _ = writeln!(stderr, "{}", printable(line));
}

/// Checks, before any work, that `path` can be written.
pub fn check_destination(path: &Path) -> Result<()> {
    let fail = |message: &str| Error::Output { path: path.display().to_string(), message: message.into() };
    if path.is_dir() {
        return Err(fail("is a directory"));
    }
    if is_special(path) {
        return Ok(());
    }
    let target = resolve(path).map_err(|e| fail(&e.to_string()))?;
    if !folder_of(&target).is_dir() {
        let message = if target == path {
            "its folder does not exist".to_string()
        } else {
            format!("is a symbolic link to {}, whose folder does not exist", target.display())
        };
        return Err(fail(&message));
    }
    Ok(())
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Whether `path` exists (through its links) and is not a regular file:
/// `/dev/stdout`, a pipe, a device. Such a destination is written in place.
fn is_special(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file())
}

/// The most symbolic links followed from `-o` to the file, as Linux's limit.
const MAX_LINKS: usize = 40;

/// The file a write to `path` lands in: `path` itself, or the end of its
/// chain of symbolic links, which need not exist yet (as with `>`).
fn resolve(path: &Path) -> io::Result<PathBuf> {
    let is_link = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link(path) {
        return Ok(path.to_path_buf());
    }
    if std::fs::metadata(path).is_ok() {
        return std::fs::canonicalize(path);
    }
    // A link to nothing yet: followed by hand, as open(2) follows it to
    // create the file.
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        if !is_link(&current) {
            return Ok(current);
        }
        let target = std::fs::read_link(&current)?;
        current = folder_of(&current).join(target);
    }
    Err(io::Error::other("too many levels of symbolic links"))
}

/// Writes `text` to `path` atomically: a temporary file in the same folder,
/// then a rename over the destination. A destination that exists and is not
/// a regular file (`/dev/stdout`, a pipe, a device) is written in place:
/// renaming over it would replace the device itself; a reader of such a
/// destination that went away is fine, as on stdout.
pub fn to_file(path: &Path, text: &str) -> Result<()> {
    let fail = |e: io::Error| Error::Output { path: path.display().to_string(), message: e.to_string() };
    check_destination(path)?;
    if is_special(path) {
        let mut file = std::fs::OpenOptions::new().write(true).open(path).map_err(fail)?;
        return match file.write_all(text.as_bytes()).and_then(|()| file.flush()) {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(fail(e)),
            _ => Ok(()),
        };
    }
    publish(path, text.as_bytes())
}

/// A temporary file beside the file `path` resolves to, with the mode the
/// finished file must have: 0666 less the umask for a new file, the old
/// mode for an overwritten one. Persisting it over the target publishes it.
fn staged(path: &Path) -> Result<(tempfile::NamedTempFile, PathBuf)> {
    let fail = |e: io::Error| Error::Output { path: path.display().to_string(), message: e.to_string() };
    let target = resolve(path).map_err(fail)?;
    let existing = std::fs::metadata(&target).ok();
    let mut builder = tempfile::Builder::new();
    builder.prefix(".losscope-").suffix(".tmp");
    // The mode is given to open(2), which takes the umask off, as for any
    // new file; tempfile's own default is 0600.
    #[cfg(unix)]
    let new_file_mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::Permissions::from_mode(0o666)
    };
    #[cfg(unix)]
    builder.permissions(new_file_mode);
    let temp = builder.tempfile_in(folder_of(&target)).map_err(fail)?;
    if let Some(meta) = &existing {
        // An overwritten file keeps its mode (set as is, with no umask).
        temp.as_file().set_permissions(meta.permissions()).map_err(fail)?;
    }
    Ok((temp, target))
}

/// The start of an `.npy` file: magic, version 1.0, and the header of an
/// array of `descr` and `shape`, padded with spaces so the data starts on 64
/// bytes, as NumPy pads it.
pub fn npy_header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let dims = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    let used = 10 + header.len() + 1;
    header.push_str(&" ".repeat(used.next_multiple_of(64) - used));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes
}

/// Writes `bytes` to `path` atomically, as [`to_file`] writes text.
pub fn bytes_to_file(path: &Path, bytes: &[u8]) -> Result<()> {
    check_destination(path)?;
    if is_special(path) {
        return Err(Error::Output {
            path: path.display().to_string(),
            message: "is not a regular file: name a file for this output".into(),
        });
    }
    publish(path, bytes)
}

/// Writes `bytes` to a temporary file beside `path` and renames it over
/// the file `path` resolves to.
fn publish(path: &Path, bytes: &[u8]) -> Result<()> {
    let fail = |e: io::Error| Error::Output { path: path.display().to_string(), message: e.to_string() };
    let (mut temp, target) = staged(path)?;
    temp.write_all(bytes).map_err(fail)?;
    temp.as_file().sync_all().map_err(fail)?;
    temp.persist(&target).map_err(|e| fail(e.error))?;
    Ok(())
}

/// Writes `values` as a one-dimensional int64 `.npy`, atomically.
pub fn indices_to_npy(path: &Path, values: &[u64]) -> Result<()> {
    let mut bytes = npy_header("<i8", &[values.len()]);
    for &v in values {
        bytes.extend_from_slice(&(v as i64).to_le_bytes());
    }
    bytes_to_file(path, &bytes)
}

/// A float64 `.npy` of a fixed shape that the workers of a pass fill in
/// place, each at its own indices; it appears under its name only once
/// complete, so a failed run leaves no half-written file. Entries never
/// written are 0.
pub struct ArrayFile {
    path: PathBuf,
    target: PathBuf,
    temp: tempfile::NamedTempFile,
    map: memmap2::MmapMut,
    header: usize,
    len: usize,
}

/// Where the workers write an [`ArrayFile`]'s entries.
#[derive(Debug, Clone, Copy)]
pub struct Sink {
    values: *mut f64,
    len: usize,
}

// SAFETY: a sink points into a mapping that outlives the pass, and every
// entry is written by the one worker whose example it is.
unsafe impl Send for Sink {}
unsafe impl Sync for Sink {}

impl Sink {
    /// Writes entry `index`; an index past the end is ignored.
    #[inline(always)]
    pub fn write(&self, index: u64, value: f64) {
        if (index as usize) < self.len {
            // SAFETY: in bounds, and the data start is 64-byte aligned.
            unsafe { self.values.add(index as usize).write(value) }
        }
    }
}

impl ArrayFile {
    /// Creates the temporary file of a `shape` float64 array for `path`.
    pub fn create(path: &Path, shape: &[usize]) -> Result<ArrayFile> {
        let fail = |e: io::Error| Error::Output { path: path.display().to_string(), message: e.to_string() };
        check_destination(path)?;
        if is_special(path) {
            return Err(Error::Output {
                path: path.display().to_string(),
                message: "is not a regular file: per-example output is written in place, name a file".into(),
            });
        }
        let len: usize = shape.iter().product();
        let header = npy_header("<f8", shape);
        let (temp, target) = staged(path)?;
        let bytes = header.len() as u64 + len as u64 * 8;
        temp.as_file().set_len(bytes).map_err(fail)?;
        // SAFETY: the temporary file is this process's own until it is persisted.
        let mut map = unsafe { memmap2::MmapMut::map_mut(temp.as_file()) }.map_err(fail)?;
        map[..header.len()].copy_from_slice(&header);
        Ok(ArrayFile { path: path.to_path_buf(), target, temp, map, header: header.len(), len })
    }

    /// Where the entries are written.
    pub fn sink(&mut self) -> Sink {
        Sink { values: self.map[self.header..].as_mut_ptr().cast::<f64>(), len: self.len }
    }

    /// Publishes the complete file under its name.
    pub fn finish(self) -> Result<()> {
        let fail =
            |e: io::Error| Error::Output { path: self.path.display().to_string(), message: e.to_string() };
        self.map.flush().map_err(fail)?;
        drop(self.map);
        self.temp.as_file().sync_all().map_err(fail)?;
        self.temp.persist(&self.target).map_err(|e| fail(e.error))?;
        Ok(())
    }
}
