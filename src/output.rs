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
    let mut temp = builder.tempfile_in(folder_of(&target)).map_err(fail)?;
    if let Some(meta) = &existing {
        // An overwritten file keeps its mode (set as is, with no umask).
        temp.as_file().set_permissions(meta.permissions()).map_err(fail)?;
    }
    temp.write_all(text.as_bytes()).map_err(fail)?;
    temp.as_file().sync_all().map_err(fail)?;
    temp.persist(&target).map_err(|e| fail(e.error))?;
    Ok(())
}
