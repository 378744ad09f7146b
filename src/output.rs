//! Delivering the rendered report: stdout (a closed pipe is not an error),
//! or a file written through a temporary file and a rename, so a reader
//! never sees half a report; and the lines written to stderr, which never
//! fail a run.

use std::io::{self, Write};
use std::path::Path;

use crate::error::{Error, Result};

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

/// Writes one line to stderr. A stderr that cannot be written (closed, or
/// a full device) changes nothing: the run keeps the exit code it would
/// have had.
pub fn to_stderr(line: &str) {
    let mut stderr = io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}

/// Checks, before any work, that `path` can be written.
pub fn check_destination(path: &Path) -> Result<()> {
    let fail = |message: &str| Error::Output { path: path.display().to_string(), message: message.into() };
    if path.is_dir() {
        return Err(fail("is a directory"));
    }
    let folder = folder_of(path);
    if !folder.is_dir() {
        return Err(fail("its folder does not exist"));
    }
    Ok(())
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `text` to `path` atomically: a temporary file in the same folder,
/// then a rename over the destination. A destination that exists and is not
/// a regular file (`/dev/stdout`, a pipe, a device) is written in place:
/// renaming over it would replace the device itself; a reader of such a
/// destination that went away is fine, as on stdout.
pub fn to_file(path: &Path, text: &str) -> Result<()> {
    let fail = |e: io::Error| Error::Output { path: path.display().to_string(), message: e.to_string() };
    check_destination(path)?;
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        let mut file = std::fs::OpenOptions::new().write(true).open(path).map_err(fail)?;
        return match file.write_all(text.as_bytes()).and_then(|()| file.flush()) {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(fail(e)),
            _ => Ok(()),
        };
    }
    let mut temp = tempfile::Builder::new()
        .prefix(".losscope-")
        .suffix(".tmp")
        .tempfile_in(folder_of(path))
        .map_err(fail)?;
    temp.write_all(text.as_bytes()).map_err(fail)?;
    temp.as_file().sync_all().map_err(fail)?;
    temp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}
