//! Inputs found while fuzzing the readers and the losses (see
//! docs/fuzzing.md), kept so that each defect stays fixed. Each test feeds
//! the minimised input through the public API or the CLI. The one whose
//! check is the size of an allocation is in tests/allocation.rs, a test
//! binary of its own with a tracking allocator.

use losscope::input::{Container, from_bytes};
use losscope::loss::{CrossEntropy, CrossEntropyParams, Reduction};

use crate::util::{fixtures, losscope, npy_with_header};

/// A Fortran-order `.npy` of shape (0, 2**63): no elements, but a dimension
/// whose size ndarray (and NumPy) cannot address. The header passes
/// `npy::parse`, and `npy::decode` then panics in `c_order` on
/// `.expect("the payload length was checked against the shape")`.
const FORTRAN_ZERO_HUGE: &[u8] = b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': True, 'shape': (0, 9223372036854775808), }                                         \n";

/// `npy` is either refused or read as the empty array it is.
fn assert_empty_or_refused(npy: &[u8]) {
    if let Ok(tensor) = from_bytes(npy, Container::Npy, None, "logits") {
        assert_eq!(tensor.numel(), 0);
        assert!(tensor.to_f64_vec().is_empty());
    }
}

/// `losscope ce` given `npy` as its logits exits 2 without panicking.
fn assert_cli_refuses_without_panic(npy: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let logits = dir.path().join("logits.npy");
    std::fs::write(&logits, npy).unwrap();
    let output = losscope()
        .args(["ce", "--logits", logits.to_str().unwrap(), "--targets", "0"])
        .output()
        .expect("losscope runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(2), "{stderr}");
}

#[test]
fn fortran_npy_with_no_elements_and_a_huge_dimension_does_not_panic() {
    assert_empty_or_refused(FORTRAN_ZERO_HUGE);
}

#[test]
fn cli_reports_a_fortran_npy_with_a_huge_dimension_instead_of_panicking() {
    assert_cli_refuses_without_panic(FORTRAN_ZERO_HUGE);
}

/// The same shape with one-byte elements (uint8; bool behaves alike). The
/// header check multiplies the dimensions by the element size and only asks
/// that the product fits a `usize`: 2**63 × 1 does, but ndarray (like
/// NumPy) needs it to fit an `isize`, so the Fortran reorder in `c_order`
/// still panics on `.expect("the payload length was checked against the shape")`.
const FORTRAN_ZERO_HUGE_U8: &[u8] = b"\x93NUMPY\x01\x00v\x00{'descr': '|u1', 'fortran_order': True, 'shape': (0, 9223372036854775808), }                                         \n";

#[test]
fn fortran_npy_of_bytes_with_no_elements_and_a_huge_dimension_does_not_panic() {
    assert_empty_or_refused(FORTRAN_ZERO_HUGE_U8);
}

#[test]
fn cli_reports_a_fortran_npy_of_bytes_with_a_huge_dimension_instead_of_panicking() {
    assert_cli_refuses_without_panic(FORTRAN_ZERO_HUGE_U8);
}

/// C-order logits of shape (0, 2, 2**62, 4) and class-index targets of
/// shape (0, 2**62, 4). Both hold no elements and pass `npy::parse` (its
/// running product is 0 from the first axis on), but `ClassLayout::new`
/// multiplies the axes after the class axis, 2**62 × 4, which overflows:
/// a panic where overflow checks are on (debug builds, `cargo test`, the
/// fuzz build), a silent wrap to 0 in release builds.
const ZERO_ROWS_HUGE_TAIL_LOGITS: &[u8] = b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (0, 2, 4611686018427387904, 4), }                                  \n";
const ZERO_ROWS_HUGE_TAIL_TARGETS: &[u8] = b"\x93NUMPY\x01\x00v\x00{'descr': '<i8', 'fortran_order': False, 'shape': (0, 4611686018427387904, 4), }                                     \n";

#[test]
fn cross_entropy_of_empty_arrays_with_huge_trailing_axes_does_not_overflow() {
    let logits = from_bytes(ZERO_ROWS_HUGE_TAIL_LOGITS, Container::Npy, None, "logits");
    let targets = from_bytes(ZERO_ROWS_HUGE_TAIL_TARGETS, Container::Npy, None, "targets");
    // Refusing such shapes when they are read is a fix too.
    let (Ok(logits), Ok(targets)) = (logits, targets) else { return };
    let params = CrossEntropyParams {
        weight: None,
        ignore_index: -100,
        label_smoothing: 0.0,
        reduction: Reduction::Mean,
        class_axis: None,
    };
    if let Ok(loss) = CrossEntropy::new(&logits, &targets, &params) {
        assert_eq!(loss.layout().examples(), 0);
    }
}

/// SSD ground truths as a padded `[B, M, 5]` `.npy` of shape (10**8, 0, 5):
/// 128 bytes, no elements. `truths::from_padded` pushes one empty box list
/// per image, 10**8 of them (2.4 GB and more as the list grows), before
/// `Ssd::new` compares the image count with the batch of `--loc` (2 here).
/// A larger B exhausts any machine.
const TRUTHS_MANY_EMPTY_IMAGES: &[u8] = b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (100000000, 0, 5), }                                               \n";

#[test]
fn ssd_truths_with_a_huge_empty_batch_are_refused_without_exhausting_memory() {
    let dir = tempfile::tempdir().unwrap();
    let truths = dir.path().join("truths.npy");
    std::fs::write(&truths, TRUTHS_MANY_EMPTY_IMAGES).unwrap();
    // 1 GiB of address space is plenty for a two-image batch; the reader
    // asks for more, and the process aborts instead of reporting an error.
    let output = std::process::Command::new("prlimit")
        .arg("--as=1073741824")
        .arg(env!("CARGO_BIN_EXE_losscope"))
        .args(["ssd", "--loc", "ssd/golden/loc.npy", "--conf", "ssd/golden/conf.npy"])
        .args(["--priors", "ssd/golden/priors.npy", "--truths", truths.to_str().unwrap()])
        .current_dir(fixtures())
        .output()
        .expect("prlimit (util-linux) runs losscope");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("memory allocation"), "{stderr}");
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("images"), "{stderr}");
}

/// An `.npy` header of brackets nested twenty deep (found by the `truths`
/// target): the header parser's time grows exponentially with the depth, so
/// 142 bytes took 0.6 s and a few more would take hours. It is refused at once.
const DEEPLY_NESTED_HEADER: &[u8] = b"\x93NUMPY\x01\x00v\x00{'descr',[[[[[[[[[[[[[[[[[\x0a\x0a\x0a\x0a\x0a[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\x0a\x0a\x0a\x0a\x0a[[[[[[[[[           \x0a@\xb5\xd1?\xa8)N\xa9\xf6\xe2\xe5?\xef\x00";

#[test]
fn deeply_nested_npy_headers_are_refused_quickly() {
    let started = std::time::Instant::now();
    let err = match from_bytes(DEEPLY_NESTED_HEADER, Container::Npy, None, "logits") {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a header of brackets is not an array"),
    };
    assert!(err.contains("nested deeper"), "{err}");
    // Generous: the refusal itself takes microseconds.
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

/// An `.npy` header that stays within the nesting limit but is long: seven
/// brackets, then `[],` 20,000 times (60 KB, format 1.0; format 2.0 allows
/// up to 4 GiB). The header parser backtracks over the whole text once per
/// open bracket, about 0.1 ms per byte at this depth: 6 s in a release
/// build, 40 s for 300 KB, minutes for a few MB. NumPy itself refuses
/// headers over 10,000 bytes (`max_header_size`); a plain array's header is
/// under 200.
fn long_nested_header() -> Vec<u8> {
    let mut header = "[[[[[[[".to_string();
    for _ in 0..20_000 {
        header.push_str("[],");
    }
    npy_with_header(&header, &[])
}

#[test]
fn long_npy_headers_are_refused_quickly() {
    let bytes = long_nested_header();
    assert_eq!(bytes.len(), 60_032);
    let (sender, receiver) = std::sync::mpsc::channel();
    // On a thread, so a slow parse fails the test instead of stalling it.
    std::thread::spawn(move || {
        let result = from_bytes(&bytes, Container::Npy, None, "logits").map(|_| ());
        let _ = sender.send(result.map_err(|e| e.to_string()));
    });
    match receiver.recv_timeout(std::time::Duration::from_secs(3)) {
        Ok(result) => assert!(result.is_err(), "a header of brackets is not an array"),
        Err(_) => panic!("a 60 KB .npy header was still being parsed after 3 s"),
    }
}
