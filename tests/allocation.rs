//! Memory asked for at once: tests that bound the largest single allocation a
//! call makes. They need a tracking `#[global_allocator]`, which wraps every
//! allocation of the process, so they live in this test binary of their own
//! rather than in the integration binary beside a hundred other tests.
//! Like tests/fuzz_regressions.rs, each keeps a defect found while fuzzing
//! fixed (see docs/fuzzing.md).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use losscope::input::{Container, from_bytes};

/// The system allocator, noting the largest single request each thread makes,
/// so a test can tell how much memory a call asked for at once.
struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
}

// SAFETY: every call is passed on unchanged to the system allocator.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Runs `f` and returns its result with the largest single allocation it
/// made on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|largest| largest.set(0));
    let result = f();
    (result, LARGEST.with(Cell::get))
}

/// A 110-byte `.npz` whose only member, `logits`, is stored (not deflated),
/// holds no bytes, and claims compressed and uncompressed sizes of
/// 2**31 - 1 in both its local and central headers. `load_npz_member`
/// trusts the claimed compressed size (×1100, capped at 1 GiB) and reserves
/// a 1 GiB buffer before reading a byte.
const NPZ_CLAIMS_2_GIB: &[u8] = b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\x7f\xff\xff\xff\x7f\x06\x00\x00\x00logitsPK\x01\x02\x14\x00\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\x7f\xff\xff\xff\x7f\x06\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00logitsPK\x05\x06\x00\x00\x00\x00\x01\x00\x01\x004\x00\x00\x00$\x00\x00\x00\x00\x00";

#[test]
fn npz_member_size_claims_are_not_reserved_beyond_the_archive() {
    assert_eq!(NPZ_CLAIMS_2_GIB.len(), 110);
    let (result, largest) =
        largest_allocation(|| from_bytes(NPZ_CLAIMS_2_GIB, Container::Npz, Some("logits"), "logits"));
    assert!(result.is_err(), "an empty member is not an array");
    assert!(largest < 1 << 24, "a 110-byte archive made one allocation of {largest} bytes");
}
