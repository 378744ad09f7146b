//! Memory-mapped inputs that shrink during the run. A map keeps the length
//! the file had when it was mapped; once the file is truncated, touching a
//! page past its new end raises SIGBUS, which would kill the process without
//! a word. [`exit_on_truncated_input`] installs a handler that ends the run
//! the way every bad input ends it instead: one line on stderr naming the
//! file and the array, and exit code 2.
//!
//! The handler only does what is async-signal-safe: it reads a fixed table
//! of registered maps through atomics, `write`s a message formatted when the
//! map was registered, and calls `_exit`. No `-o` report can be left half
//! written: reports are written after the pass, through a temporary file
//! that is renamed into place, and no temporary file exists during the pass.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::error::Origin;

use super::file::CHANGED;

/// Maps tracked at once; a run maps a handful of files. A map registered
/// while every slot is taken gets the generic message.
const SLOTS: usize = 64;

/// One registered map: its address range and the line to print. A slot is
/// free while `start` is 0, claimed while `end` is 0.
struct Slot {
    start: AtomicUsize,
    end: AtomicUsize,
    message: AtomicPtr<u8>,
    len: AtomicUsize,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            start: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
            message: AtomicPtr::new(std::ptr::null_mut()),
            len: AtomicUsize::new(0),
        }
    }
}

static TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];

/// For a bus error outside every registered map.
const GENERIC: &[u8] = b"losscope: error: input changed while it was being read: \
a memory-mapped input file was truncated during the run (bus error)\n";

/// The line printed when the map `range` of `origin` faults.
fn message(origin: &Origin) -> String {
    let text = format!(
        "{origin}: {CHANGED}: the file was truncated while it was memory-mapped; \
         rerun once it is written completely"
    );
    // One line, as main.rs prints every error; on a terminal, over the
    // progress bar the pass may be drawing.
    let line: Vec<&str> = text.lines().map(str::trim).collect();
    let clear = if std::io::stderr().is_terminal() { "\r\x1b[2K" } else { "" };
    format!("{clear}losscope: error: {}\n", line.join(" "))
}

/// A registered map; dropping it frees the slot.
pub(crate) struct Registration(Option<usize>);

/// Registers the `len` bytes mapped at `start` as the payload of `origin`.
pub(crate) fn register(start: *const u8, len: usize, origin: &Origin) -> Registration {
    let start = start as usize;
    if len == 0 || start == 0 {
        return Registration(None);
    }
    for (index, slot) in TABLE.iter().enumerate() {
        // Claimed with start = 1 and end = 0: no address matches it yet.
        if slot.start.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            // Leaked on purpose: the handler may read it at any moment, and a
            // run registers a handful of maps.
            let text: &'static mut [u8] = Box::leak(message(origin).into_bytes().into_boxed_slice());
            slot.len.store(text.len(), Ordering::Relaxed);
            slot.message.store(text.as_mut_ptr(), Ordering::Relaxed);
            slot.start.store(start, Ordering::Relaxed);
            slot.end.store(start.saturating_add(len), Ordering::Release);
            return Registration(Some(index));
        }
    }
    Registration(None)
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(index) = self.0 {
            let slot = &TABLE[index];
            slot.end.store(0, Ordering::Release);
            slot.start.store(0, Ordering::Release);
        }
    }
}

/// A whole file mapped read-only and registered, so that a fault on it
/// names the file.
pub(crate) struct GuardedMap {
    map: memmap2::Mmap,
    _registration: Registration,
}

impl std::ops::Deref for GuardedMap {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.map
    }
}

impl GuardedMap {
    /// Takes the pages wholly inside `bytes` (offsets into the map) out of
    /// the process's page tables. The map is a read-only shared map of a
    /// file, so a page taken out holds the same bytes when next touched: it
    /// is mapped again from the page cache. A pass lets go of what it has
    /// read this way, in its workers, so that the pages are not all unmapped
    /// at exit by one thread.
    pub(crate) fn release(&self, bytes: std::ops::Range<usize>) {
        let page = page_size();
        let start = bytes.start.next_multiple_of(page);
        let end = bytes.end.min(self.map.len()) / page * page;
        if start < end {
            // SAFETY: MADV_DONTNEED on a read-only shared file map changes no
            // byte the program reads (see above); a failure leaves the pages
            // mapped, which is only slower.
            let _ = unsafe {
                self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
            };
        }
    }
}

/// The size of a memory page, asked once.
fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    *PAGE.get_or_init(|| usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(1))
}

/// Maps `file`, which held `len` bytes when it was opened, as the input
/// `origin`. The error is the message part only.
pub(crate) fn map(file: &std::fs::File, len: u64, origin: &Origin) -> Result<GuardedMap, String> {
    // SAFETY: the map is read-only and private to this process. A file
    // truncated while it is mapped raises SIGBUS on the pages past its end;
    // the binary's handler reports that as an input that changed.
    let map = unsafe { memmap2::Mmap::map(file) }.map_err(|e| format!("cannot map: {e}"))?;
    if map.len() as u64 != len {
        return Err(format!("{CHANGED}: it was {len} bytes when opened, {} when mapped", map.len()));
    }
    let _ = map.advise(memmap2::Advice::Sequential);
    let registration = register(map.as_ptr(), map.len(), origin);
    Ok(GuardedMap { map, _registration: registration })
}

/// The line for a fault at `address`.
fn message_for(address: usize) -> &'static [u8] {
    for slot in &TABLE {
        let end = slot.end.load(Ordering::Acquire);
        let start = slot.start.load(Ordering::Relaxed);
        if start <= address && address < end {
            let text = slot.message.load(Ordering::Relaxed);
            let len = slot.len.load(Ordering::Relaxed);
            if !text.is_null() {
                // SAFETY: the message was leaked when the slot was filled and
                // lives as long as the process.
                return unsafe { std::slice::from_raw_parts(text, len) };
            }
        }
    }
    GENERIC
}

extern "C" fn on_bus_error(_signal: libc::c_int, info: *mut libc::siginfo_t, _context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let address = unsafe { (*info).si_addr() } as usize;
    let mut text = message_for(address);
    while !text.is_empty() {
        // SAFETY: write(2) and _exit(2) are async-signal-safe; `text` is a
        // valid slice for its whole length.
        let written = unsafe { libc::write(libc::STDERR_FILENO, text.as_ptr().cast(), text.len()) };
        if written <= 0 {
            break;
        }
        text = &text[written as usize..];
    }
    // SAFETY: ends the process at once, without unwinding or running
    // destructors, as a signal handler must.
    unsafe { libc::_exit(2) }
}

/// Makes a bus error (a memory-mapped input truncated during the run) end
/// the process with one error line and exit code 2. For the binary: the
/// handler is process-wide.
pub fn exit_on_truncated_input() {
    // SAFETY: a zeroed sigaction is valid; the handler is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = on_bus_error;
        action.sa_sigaction = handler as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_is_reported_against_the_map_it_falls_in() {
        let payload = [0u8; 64];
        let origin = Origin::new("logits", "dump.npy");
        let registration = register(payload.as_ptr(), payload.len(), &origin);
        let address = payload.as_ptr() as usize + 10;
        let text = String::from_utf8_lossy(message_for(address)).into_owned();
        // Run from a terminal, the line starts by clearing it.
        assert_eq!(
            text.trim_start_matches("\r\x1b[2K"),
            "losscope: error: dump.npy (logits): input changed while it was being read: the file was \
             truncated while it was memory-mapped; rerun once it is written completely\n"
        );
        drop(registration);
        assert_eq!(message_for(address), GENERIC);
    }

    #[test]
    fn a_name_with_a_newline_still_gives_one_line() {
        let text = message(&Origin::new("logits", "a\nb.npy"));
        assert_eq!(text.lines().count(), 1, "{text}");
    }
}
