//! Bad input: every one must end in a one-line error on stderr that names the
//! file, the array and what is wrong (with the index of the first offending
//! element where there is one), exit code 2, nothing on stdout, no output
//! file, and never a panic.
//!
//! The NumPy-written bad files are in `fixtures/bad/` (see
//! `fixtures/generate.py`); corrupt byte images are made here, in a temporary
//! folder, with the tests' `.npy` writer in `util.rs` (checked by
//! `handmade_npy_files_are_accepted`, so a failure elsewhere is not the
//! writer's fault).

use std::io::Write;
use std::path::Path;
use std::process::Output;

use tempfile::TempDir;

use crate::util::{f64_npy, i64_npy, json_report, losscope, npy, npy_with_header};

// --------------------------------------------------------------------------
// helpers
// --------------------------------------------------------------------------

/// Every run is bounded: an input that hangs losscope fails the test rather
/// than the suite.
pub(crate) const LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

pub(crate) fn run(args: &[&str]) -> Output {
    losscope().args(args).timeout(LIMIT).output().expect("losscope runs")
}

pub(crate) fn describe(args: &[&str], output: &Output) -> String {
    format!(
        "losscope {}\n  exit: {:?}\n  stdout ({} bytes): {:?}\n  stderr: {:?}",
        args.join(" "),
        output.status.code(),
        output.stdout.len(),
        String::from_utf8_lossy(&output.stdout).chars().take(300).collect::<String>(),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Everything the standard asks of a rejected run, as a list of violations.
pub(crate) fn violations(output: &Output, expected: &[&str]) -> Vec<String> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut problems = Vec::new();
    if stderr.contains("panicked") || output.status.code() == Some(101) {
        problems.push("it panicked".to_string());
    }
    if output.status.code() != Some(2) {
        problems.push(format!("exit code {:?}, not 2", output.status.code()));
    }
    if !output.stdout.is_empty() {
        problems.push(format!("{} bytes on stdout", output.stdout.len()));
    }
    let lines = stderr.lines().count();
    if lines != 1 {
        problems.push(format!("{lines} lines on stderr, not 1"));
    }
    if !stderr.starts_with("losscope: error: ") {
        problems.push("stderr does not start with 'losscope: error: '".to_string());
    }
    for want in expected {
        if !stderr.contains(want) {
            problems.push(format!("stderr lacks {want:?}"));
        }
    }
    problems
}

/// Asserts that `losscope args` is rejected as the standard says, with every
/// `expected` substring in its one-line message; returns the message. Unless
/// the arguments choose an output file themselves, the run is repeated with
/// `-o` into an empty temporary folder, which must stay empty (no report, no
/// leftover temporary file) and give the same message.
pub(crate) fn rejects(args: &[&str], expected: &[&str]) -> String {
    let output = run(args);
    let mut problems = violations(&output, expected);
    let mut report = describe(args, &output);
    if output.status.code().is_none() {
        problems.push(format!("killed after {LIMIT:?} (a hang?)"));
    }
    if !args.iter().any(|a| *a == "-o" || a.starts_with("--output")) {
        let dir = TempDir::new().expect("a temporary folder");
        let target = dir.path().join("report.txt");
        let target = target.to_str().expect("a UTF-8 temporary path");
        let mut with_output = args.to_vec();
        with_output.extend(["-o", target]);
        let second = run(&with_output);
        for problem in violations(&second, expected) {
            problems.push(format!("with -o: {problem}"));
        }
        if second.stderr != output.stderr {
            problems.push("with -o: a different message".to_string());
        }
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("the temporary folder")
            .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
            .collect();
        if !left.is_empty() {
            problems.push(format!("with -o: files were left behind: {left:?}"));
        }
        report.push('\n');
        report.push_str(&describe(&with_output, &second));
    }
    assert!(problems.is_empty(), "{}\n{report}", problems.join("; "));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A clap usage error: exit 2, nothing on stdout, an error on stderr (which
/// may span several lines: the usage and a tip), no panic.
fn usage_error(args: &[&str], expected: &[&str]) {
    let output = run(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut problems = Vec::new();
    if stderr.contains("panicked") {
        problems.push("it panicked".to_string());
    }
    if output.status.code() != Some(2) {
        problems.push(format!("exit code {:?}, not 2", output.status.code()));
    }
    if !output.stdout.is_empty() {
        problems.push(format!("{} bytes on stdout", output.stdout.len()));
    }
    for want in expected {
        if !stderr.contains(want) {
            problems.push(format!("stderr lacks {want:?}"));
        }
    }
    assert!(problems.is_empty(), "{}\n{}", problems.join("; "), describe(args, &output));
}

/// A temporary folder for hand-made files, removed when dropped.
pub(crate) struct Scratch(TempDir);

impl Scratch {
    pub(crate) fn new() -> Scratch {
        Scratch(TempDir::new().expect("a temporary folder"))
    }

    /// Writes `bytes` to `name` in the folder and returns its full path.
    pub(crate) fn file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.0.path().join(name);
        std::fs::write(&path, bytes).expect("write a scratch file");
        path.to_str().expect("a UTF-8 temporary path").to_string()
    }

    pub(crate) fn path(&self) -> &Path {
        self.0.path()
    }
}

/// An `.npz` image (a stored zip) holding the given members.
fn npz(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in members {
        zip.start_file(*name, options).expect("a zip member");
        zip.write_all(bytes).expect("write a zip member");
    }
    zip.finish().expect("finish the zip").into_inner()
}

/// The valid [4, 3] float64 logits of `fixtures/bad`, their header made by NumPy.
const LOGITS: &str = "bad/logits_ok.npy";
/// Valid class indices for [`LOGITS`]: 0, 1, -100 (ignored), 2.
const TARGETS: &str = "golden/ce.npz:targets";

// --------------------------------------------------------------------------
// the hand-made writer itself
// --------------------------------------------------------------------------

#[test]
fn handmade_npy_files_are_accepted() {
    let dir = Scratch::new();
    let logits = dir.file("logits.npy", &f64_npy(&[2, 3], &[1.0, 2.0, 3.0, 0.5, -1.0, 0.0]));
    let targets = dir.file("targets.npy", &i64_npy(&[2], &[2, 0]));
    let bools = dir.file("bools.npy", &npy("|b1", &[2, 3], &[0, 1, 1, 0, 0, 1]));
    let bundle = dir.file(
        "bundle.npz",
        &npz(&[
            ("logits.npy", &f64_npy(&[2, 3], &[1.0, 2.0, 3.0, 0.5, -1.0, 0.0])),
            ("targets.npy", &i64_npy(&[2], &[2, 0])),
        ]),
    );
    for args in [
        vec!["ce", "--logits", &logits, "--targets", &targets],
        vec!["ce", &bundle],
        vec!["bce", "--logits", &logits, "--targets", &bools],
    ] {
        let output = run(&args);
        assert!(output.status.success(), "{}", describe(&args, &output));
    }
}

// --------------------------------------------------------------------------
// files that cannot be read
// --------------------------------------------------------------------------

#[test]
fn missing_file_is_named() {
    rejects(
        &["ce", "--logits", "does_not_exist.npy", "--targets", TARGETS],
        &["does_not_exist.npy (logits)", "no such file"],
    );
    rejects(&["ce", "does_not_exist.npz"], &["does_not_exist.npz (bundle)", "no such file"]);
}

#[test]
fn directory_instead_of_file_is_rejected() {
    rejects(&["ce", "--logits", "bad", "--targets", TARGETS], &["bad (logits)", "directory"]);
    rejects(&["ce", "golden"], &["golden (bundle)", "directory"]);
}

#[test]
fn empty_file_is_rejected() {
    let dir = Scratch::new();
    for name in ["empty.npy", "empty.npz", "empty.json", "empty"] {
        let path = dir.file(name, b"");
        rejects(&["ce", "--logits", &path, "--targets", TARGETS], &[&format!("{path} (logits)"), "empty"]);
    }
}

// --------------------------------------------------------------------------
// corrupt .npy images
// --------------------------------------------------------------------------

#[test]
fn npy_with_bad_magic_is_rejected() {
    let dir = Scratch::new();
    let mut bytes = f64_npy(&[4, 3], &[0.0; 12]);
    bytes[5] = b'X'; // \x93NUMPX
    let path = dir.file("magic.npy", &bytes);
    rejects(&["ce", "--logits", &path, "--targets", TARGETS], &[&format!("{path} (logits)"), "magic"]);
}

#[test]
fn npy_with_unparsable_header_is_a_one_line_error() {
    let dir = Scratch::new();
    // A header dictionary cut short: the parser's multi-line report must be
    // folded into the one line.
    let cut = npy_with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (4, 3), ", &[0; 96]);
    let path = dir.file("cut.npy", &cut);
    rejects(&["ce", "--logits", &path, "--targets", TARGETS], &[&format!("{path} (logits)"), "header"]);
    let garbage = npy_with_header("this is not a dictionary", &[0; 96]);
    let path = dir.file("garbage.npy", &garbage);
    rejects(&["ce", "--logits", &path, "--targets", TARGETS], &[&format!("{path} (logits)"), "header"]);
}

#[test]
fn npy_header_without_shape_is_rejected() {
    let dir = Scratch::new();
    let bytes = npy_with_header("{'descr': '<f8', 'fortran_order': False, }", &[0; 96]);
    let path = dir.file("noshape.npy", &bytes);
    rejects(&["ce", "--logits", &path, "--targets", TARGETS], &[&format!("{path} (logits)"), "header"]);
}

#[test]
fn npy_with_truncated_payload_is_rejected() {
    let dir = Scratch::new();
    let mut bytes = f64_npy(&[4, 3], &[0.5; 12]);
    bytes.truncate(bytes.len() - 56); // 40 of the 96 payload bytes remain
    let path = dir.file("short.npy", &bytes);
    rejects(
        &["ce", "--logits", &path, "--targets", TARGETS],
        &[&format!("{path} (logits)"), "truncated", "96", "40"],
    );
}

#[test]
fn npy_with_bytes_after_the_payload_is_rejected() {
    let dir = Scratch::new();
    let mut bytes = f64_npy(&[4, 3], &[0.5; 12]);
    bytes.extend_from_slice(&[0; 8]);
    let path = dir.file("long.npy", &bytes);
    rejects(&["ce", "--logits", &path, "--targets", TARGETS], &[&format!("{path} (logits)"), "8"]);
}

#[test]
fn npy_cut_inside_the_preamble_is_rejected() {
    let dir = Scratch::new();
    let full = f64_npy(&[4, 3], &[0.5; 12]);
    for len in [6, 7, 9] {
        let path = dir.file(&format!("cut{len}.npy"), &full[..len]);
        rejects(
            &["ce", "--logits", &path, "--targets", TARGETS],
            &[&format!("{path} (logits)"), "truncated"],
        );
    }
}

#[test]
fn npy_of_unknown_format_version_is_rejected() {
    let dir = Scratch::new();
    let mut bytes = f64_npy(&[4, 3], &[0.5; 12]);
    bytes[6] = 9;
    let path = dir.file("v9.npy", &bytes);
    rejects(&["ce", "--logits", &path, "--targets", TARGETS], &[&format!("{path} (logits)"), "version 9"]);
}

#[test]
fn npy_shape_whose_element_count_overflows_is_rejected() {
    let dir = Scratch::new();
    let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }";
    let path = dir.file("huge.npy", &npy_with_header(header, &[0; 8]));
    rejects(
        &["ce", "--logits", &path, "--targets", TARGETS],
        &[&format!("{path} (logits)"), "[4294967296, 4294967296, 16]"],
    );
    // The element count fits but the byte count does not.
    let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693952, 4), }";
    let path = dir.file("huge_bytes.npy", &npy_with_header(header, &[0; 8]));
    rejects(
        &["ce", "--logits", &path, "--targets", TARGETS],
        &[&format!("{path} (logits)"), "[2305843009213693952, 4]"],
    );
}

#[test]
fn npy_header_length_beyond_the_file_is_rejected() {
    let dir = Scratch::new();
    let mut bytes = f64_npy(&[4, 3], &[0.5; 12]);
    bytes[8..10].copy_from_slice(&60000u16.to_le_bytes());
    let path = dir.file("hlen.npy", &bytes);
    rejects(&["ce", "--logits", &path, "--targets", TARGETS], &[&format!("{path} (logits)"), "60000"]);
    // Version 2 has a four-byte length: a header of 4 GiB in a 14-byte file.
    let mut v2 = b"\x93NUMPY\x02\x00".to_vec();
    v2.extend_from_slice(&u32::MAX.to_le_bytes());
    v2.extend_from_slice(b"{}");
    let path = dir.file("hlen_v2.npy", &v2);
    rejects(&["ce", "--logits", &path, "--targets", TARGETS], &[&format!("{path} (logits)"), "4294967295"]);
}

// --------------------------------------------------------------------------
// dtypes that are not numbers
// --------------------------------------------------------------------------

#[test]
fn object_dtype_is_rejected() {
    rejects(
        &["ce", "--logits", "bad/object.npy", "--targets", TARGETS],
        &["bad/object.npy (logits)", "object"],
    );
}

#[test]
fn complex_dtype_is_rejected() {
    rejects(
        &["ce", "--logits", "bad/complex.npy", "--targets", TARGETS],
        &["bad/complex.npy (logits)", "complex"],
    );
}

#[test]
fn structured_dtype_is_rejected() {
    rejects(
        &["ce", "--logits", "bad/structured.npy", "--targets", TARGETS],
        &["bad/structured.npy (logits)", "structured"],
    );
}

#[test]
fn string_dtype_is_rejected() {
    let dir = Scratch::new();
    let path = dir.file("unicode.npy", &npy("<U3", &[4], &[0; 48]));
    rejects(&["ce", "--logits", LOGITS, "--targets", &path], &[&format!("{path} (targets)"), "<U3"]);
}

#[test]
fn bool_npy_with_a_byte_other_than_0_or_1_is_rejected() {
    let dir = Scratch::new();
    let logits = dir.file("logits.npy", &f64_npy(&[2, 3], &[0.5; 6]));
    let bools = dir.file("bools.npy", &npy("|b1", &[2, 3], &[0, 1, 1, 0, 2, 1]));
    let message = rejects(
        &["bce", "--logits", &logits, "--targets", &bools],
        &[&format!("{bools} (targets)"), "[1, 1]", "2"],
    );
    assert!(!message.contains(&logits), "blames the logits: {message}");
}

// --------------------------------------------------------------------------
// shapes that do not fit the loss
// --------------------------------------------------------------------------

#[test]
fn scalar_logits_are_rejected() {
    rejects(
        &["ce", "--logits", "bad/scalar.npy", "--targets", TARGETS],
        &["bad/scalar.npy (logits)", "scalar"],
    );
    // A 0-d BCE input is one example (tests/conventions.rs); a focal loss
    // still needs an axis.
    rejects(
        &["focal", "--logits", "bad/scalar.npy", "--targets", "bad/scalar.npy"],
        &["bad/scalar.npy (logits)", "scalar"],
    );
}

#[test]
fn row_count_mismatch_between_logits_and_targets_is_rejected() {
    // [9] class indices for [4, 3] logits.
    rejects(
        &["ce", "--logits", LOGITS, "--targets", "dtypes/targets_i64.npy"],
        &["dtypes/targets_i64.npy (targets)", "[9]", "[4]"],
    );
}

#[test]
fn float_targets_of_a_wrong_shape_are_rejected() {
    // [3, 2] probabilities for [4, 3] logits.
    rejects(
        &["ce", "--logits", LOGITS, "--targets", "golden/bce.npz:targets"],
        &["golden/bce.npz:targets (targets)", "[3, 2]", "[4, 3]"],
    );
}

#[test]
fn integer_targets_shaped_like_logits_are_rejected() {
    let dir = Scratch::new();
    let path = dir.file("labels_2d.npy", &i64_npy(&[4, 3], &[0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]));
    rejects(
        &["ce", "--logits", LOGITS, "--targets", &path],
        &[&format!("{path} (targets)"), "int64", "[4, 3]", "[4]"],
    );
}

/// bfloat16 saved through an int16 view (NumPy has no bfloat16) read as
/// integers gave a number and exit 0; every loss refuses integer predictions.
#[test]
fn integer_logits_are_rejected_by_every_loss() {
    let dir = Scratch::new();
    let int16 = |shape: &[usize], values: &[i16]| {
        npy("<i2", shape, &values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())
    };
    // The bfloat16 bits of 1.0, 2.0, -1.0, 0.5, … as int16.
    let bits = [16256, 16384, -16512, 16128, 16256, 16448, 16000, -16512, 16384, 16256, 16128, 16256];
    let logits = dir.file("logits_bf16_bits.npy", &int16(&[4, 3], &bits));
    let bfloat16_hint = "if these are bfloat16 bits saved as int16, save them with .float() before .numpy()";
    let expected =
        [&format!("{logits} (logits)"), "logits are int16: logits must be floating point", bfloat16_hint];
    rejects(&["ce", "--logits", &logits, "--targets", TARGETS], &expected);
    rejects(&["focal", "--logits", &logits, "--targets", TARGETS, "--kind", "softmax"], &expected);
    let probabilities = dir.file("soft.npy", &f64_npy(&[4, 3], &[0.5; 12]));
    rejects(&["bce", "--logits", &logits, "--targets", &probabilities], &expected);
    let ints = dir.file("logits.json", b"[[1, 2, 3], [4, 5, 6]]");
    rejects(
        &["ce", "--logits", &ints, "--targets", "golden/ce.npz:targets"],
        &["logits are int64", "in JSON, write at least one number with a decimal point"],
    );
    let conf = dir.file("conf.npy", &int16(&[1, 2, 3], &bits[..6]));
    let loc = dir.file("loc.npy", &f64_npy(&[1, 2, 4], &[0.0; 8]));
    let priors = dir.file("priors.npy", &f64_npy(&[2, 4], &[0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 0.5, 0.5]));
    let truths = dir.file("truths.json", b"[[[0.0, 0.0, 0.5, 0.5, 0]]]");
    let ssd = ["ssd", "--loc", &loc, "--conf", &conf, "--priors", &priors, "--truths", &truths];
    rejects(&ssd, &[&format!("{conf} (conf)"), "conf are int16: conf must be floating point", bfloat16_hint]);
}

#[test]
fn class_axis_out_of_range_is_rejected() {
    rejects(
        &["ce", "golden/ce.npz", "--class-axis", "2"],
        &["golden/ce.npz:logits (logits)", "class axis 2", "rank 2"],
    );
    rejects(
        &["ce", "golden/ce.npz", "--class-axis", "-3"],
        &["golden/ce.npz:logits (logits)", "class axis -3", "rank 2"],
    );
    rejects(
        &["bce", "golden/bce.npz", "--class-axis", "5"],
        &["golden/bce.npz:logits (logits)", "class axis 5", "rank 2"],
    );
}

#[test]
fn bce_targets_of_another_shape_are_rejected() {
    rejects(
        &["bce", "golden/bce.npz", "--targets", "golden/ce_soft.npz:targets"],
        &["golden/ce_soft.npz:targets (targets)", "[4, 3]", "[3, 2]"],
    );
}

#[test]
fn bce_weight_that_does_not_broadcast_is_rejected() {
    // [3] against [3, 2] logits: the last axes differ.
    rejects(
        &["bce", "golden/bce.npz", "--weight", "golden/ce.npz:weight"],
        &["golden/ce.npz:weight (weight)", "[3]", "[3, 2]", "broadcast"],
    );
    rejects(
        &["bce", "golden/bce.npz", "--pos-weight", "1,2,3"],
        &["--pos-weight (pos_weight)", "[3]", "[3, 2]", "broadcast"],
    );
}

// --------------------------------------------------------------------------
// values that break the loss's contract
// --------------------------------------------------------------------------

#[test]
fn label_out_of_range_names_its_index() {
    rejects(
        &["ce", "--logits", LOGITS, "--targets", "bad/labels_oob.npy"],
        &["bad/labels_oob.npy (targets)", "label 3", "[2]", "3 classes"],
    );
}

#[test]
fn negative_label_that_is_not_ignore_index_is_rejected() {
    rejects(
        &["ce", "--logits", LOGITS, "--targets", "bad/labels_neg.npy"],
        &["bad/labels_neg.npy (targets)", "-1", "[1]", "-100"],
    );
}

#[test]
fn float_targets_with_non_integral_values_name_the_index() {
    rejects(
        &["ce", "--logits", LOGITS, "--targets", "bad/labels_float.npy"],
        &["bad/labels_float.npy (targets)", "1.5", "[1]"],
    );
}

#[test]
fn json_label_beyond_int64_is_reported_as_written() {
    // 2^63 does not fit an int64: the message must show the label the file
    // holds, not a saturated 9223372036854775807.
    let dir = Scratch::new();
    let logits = dir.file("logits.json", b"[[1.0, 2, 3], [4, 5, 6]]");
    let targets = dir.file("targets.json", b"[9223372036854775808, 1]");
    rejects(
        &["ce", "--logits", &logits, "--targets", &targets],
        &[&format!("{targets} (targets)"), "9223372036854775808", "[0]"],
    );
}

#[test]
fn nonfinite_logits_give_the_count_and_first_index() {
    rejects(
        &["ce", "--logits", "bad/logits_nan.npy", "--targets", TARGETS],
        &["bad/logits_nan.npy (logits)", "2 non-finite", "[1, 1]", "--allow-nonfinite"],
    );
}

#[test]
fn nonfinite_logits_with_bce_give_the_count_and_first_index() {
    rejects(
        &["bce", "--logits", "bad/logits_nan.npy", "--targets", "golden/ce_soft.npz:targets"],
        &["bad/logits_nan.npy (logits)", "2 non-finite", "[1, 1]"],
    );
}

#[test]
fn first_nonfinite_index_is_the_first_in_c_order_for_spatial_logits() {
    // [1, 3, 2, 2] logits with inf at [0, 0, 0, 1] (flat 1) and NaN at
    // [0, 2, 0, 0] (flat 8): the first offending element is [0, 0, 0, 1].
    let dir = Scratch::new();
    let mut values = [0.0; 12];
    values[1] = f64::INFINITY;
    values[8] = f64::NAN;
    let logits = dir.file("logits.npy", &f64_npy(&[1, 3, 2, 2], &values));
    let targets = dir.file("targets.npy", &i64_npy(&[1, 2, 2], &[0, 1, 2, 0]));
    rejects(
        &["ce", "--logits", &logits, "--targets", &targets],
        &[&format!("{logits} (logits)"), "2 non-finite", "[0, 0, 0, 1]"],
    );
}

#[test]
fn allow_nonfinite_computes_with_a_warning_and_a_null_value() {
    let args = [
        "ce",
        "--logits",
        "bad/logits_nan.npy",
        "--targets",
        TARGETS,
        "--allow-nonfinite",
        "--format",
        "json",
    ];
    let output = run(&args);
    let context = describe(&args, &output);
    assert_eq!(output.status.code(), Some(0), "{context}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{context}");
    assert!(
        stderr.lines().any(|l| l.starts_with("warning:") && l.contains("non-finite") && l.contains("[1, 1]")),
        "no warning naming the non-finite logits\n{context}"
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert!(report["value"].is_null(), "value is not null\n{context}");
}

#[test]
fn nonfinite_probability_targets_are_rejected() {
    // Soft targets with NaN at [2, 1]: the value would silently be NaN.
    let dir = Scratch::new();
    let mut soft = [0.75, 0.25, 0.0, 0.0, 1.0, 0.0, 0.25, 0.25, 0.5, 0.0, 0.0, 1.0];
    soft[7] = f64::NAN;
    let targets = dir.file("soft.npy", &f64_npy(&[4, 3], &soft));
    rejects(&["ce", "--logits", LOGITS, "--targets", &targets], &[&format!("{targets} (targets)"), "[2, 1]"]);
}

#[test]
fn nonfinite_bce_targets_are_rejected() {
    // BCE targets with inf at [1, 0]: the value would silently be NaN.
    let dir = Scratch::new();
    let targets = dir.file("targets.npy", &f64_npy(&[3, 2], &[1.0, 0.0, f64::INFINITY, 0.0, 1.0, 1.0]));
    rejects(&["bce", "golden/bce.npz", "--targets", &targets], &[&format!("{targets} (targets)"), "[1, 0]"]);
}

// --------------------------------------------------------------------------
// weights and parameters
// --------------------------------------------------------------------------

#[test]
fn weight_length_differing_from_classes_is_rejected() {
    rejects(&["ce", "golden/ce.npz", "--weight", "1,2"], &["--weight (weight)", "2 entries", "3 classes"]);
    rejects(
        &["ce", "golden/ce.npz", "--weight", "golden/bce.npz:pos_weight"],
        &["golden/bce.npz:pos_weight (weight)", "2 entries", "3 classes"],
    );
}

#[test]
fn non_finite_weight_is_rejected() {
    rejects(
        &["ce", "golden/ce.npz", "--weight", "1,nan,3"],
        &["--weight (weight)", "[1]", "not a finite number"],
    );
    let dir = Scratch::new();
    let weight = dir.file("weight.npy", &f64_npy(&[3], &[1.0, 2.0, f64::INFINITY]));
    rejects(
        &["ce", "golden/ce.npz", "--weight", &weight],
        &[&format!("{weight} (weight)"), "[2]", "not a finite number"],
    );
}

#[test]
fn weight_that_is_not_a_vector_is_rejected() {
    rejects(
        &["ce", "golden/ce.npz", "--weight", "golden/bce.npz:weight"],
        &["golden/bce.npz:weight (weight)", "[3, 2]"],
    );
}

#[test]
fn bad_inline_weight_list_is_rejected() {
    rejects(&["ce", "golden/ce.npz", "--weight", "1,x,2"], &["--weight 1,x,2", "entry 1", "'x'"]);
}

#[test]
fn label_smoothing_outside_unit_interval_is_rejected() {
    for value in ["1.5", "-0.1", "nan"] {
        rejects(&["ce", "golden/ce.npz", "--label-smoothing", value], &["--label-smoothing", "[0, 1]"]);
    }
}

#[test]
fn zero_bins_are_rejected() {
    rejects(&["ce", "golden/ce.npz", "--bins", "0"], &["--bins 0"]);
}

#[test]
fn easy_threshold_above_one_is_rejected() {
    rejects(&["ce", "golden/ce.npz", "--easy-threshold", "2"], &["--easy-threshold 2", "[0, 1]"]);
}

// --------------------------------------------------------------------------
// JSON
// --------------------------------------------------------------------------

#[test]
fn ragged_json_names_the_element() {
    rejects(
        &["ce", "--logits", "bad/ragged.json", "--targets", TARGETS],
        &["bad/ragged.json (logits)", "ragged", "element [1]"],
    );
}

#[test]
fn json_with_non_numbers_names_the_element() {
    rejects(
        &["ce", "--logits", "bad/strings.json", "--targets", TARGETS],
        &["bad/strings.json (logits)", "element [0, 1]", "string"],
    );
}

#[test]
fn truncated_json_is_rejected() {
    rejects(
        &["ce", "--logits", "bad/truncated.json", "--targets", TARGETS],
        &["bad/truncated.json (logits)", "EOF"],
    );
}

#[test]
fn json_bundle_member_that_is_not_an_array_is_rejected() {
    let dir = Scratch::new();
    let bundle = dir.file("bundle.json", br#"{"logits": [[1, 2], [3, 4]], "targets": {"a": 1}}"#);
    rejects(&["ce", &bundle], &[&format!("{bundle}:targets (targets)"), "object"]);
}

// --------------------------------------------------------------------------
// .npz archives and bundles
// --------------------------------------------------------------------------

#[test]
fn missing_npz_key_lists_the_keys_it_holds() {
    rejects(
        &["ce", "--logits", "golden/ce.npz:nokey", "--targets", TARGETS],
        &["golden/ce.npz:nokey (logits)", "'nokey'", "logits, targets, weight"],
    );
}

/// Bundles and files without the member asked for say what they hold, and
/// arrays `np.savez` numbered (passed by position) get how to name them.
#[test]
fn every_missing_member_message_lists_what_the_file_holds() {
    let dir = Scratch::new();
    let logits = f64_npy(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let targets = i64_npy(&[2], &[0, 1]);
    let positional = dir.file("positional.npz", &npz(&[("arr_0.npy", &logits), ("arr_1.npy", &targets)]));
    let message = rejects(&["ce", &positional], &[&positional, "'logits'", "it holds: arr_0, arr_1"]);
    assert!(message.contains("name them, np.savez(f, logits=…)"), "{message}");
    rejects(
        &["ce", "--logits", &format!("{positional}:logits"), "--targets", TARGETS],
        &[&format!("{positional}:logits (logits)"), "it holds: arr_0, arr_1", "np.savez(f, logits=…)"],
    );
    let other = dir.file("other.npz", &npz(&[("scores.npy", &logits), ("labels.npy", &targets)]));
    let message = rejects(&["ce", &other], &[&other, "'logits'", "it holds: scores, labels"]);
    assert!(!message.contains("np.savez"), "{message}");
    let json = dir.file("other.json", br#"{"scores": [[1.0, 2.0]], "labels": [0]}"#);
    rejects(&["ce", &json], &[&json, "'logits'", "it holds: labels, scores"]);
    rejects(
        &["ce", "--logits", &format!("{json}:logits"), "--targets", TARGETS],
        &["it holds: labels, scores"],
    );
    // A long list stops at 20 names and counts the rest.
    let names: Vec<String> = (0..25).map(|i| format!("m{i:02}.npy")).collect();
    let members: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), targets.as_slice())).collect();
    let many = dir.file("many.npz", &npz(&members));
    let message = rejects(&["ce", &many], &["it holds: m00, m01", "m19 … 5 more"]);
    assert!(!message.contains("m20"), "{message}");
}

#[test]
fn npz_that_is_not_a_zip_is_rejected() {
    rejects(&["ce", "bad/not_a_zip.npz"], &["bad/not_a_zip.npz (bundle)", "zip"]);
    rejects(
        &["ce", "--logits", "bad/not_a_zip.npz", "--targets", TARGETS],
        &["bad/not_a_zip.npz (logits)", "zip"],
    );
}

#[test]
fn npz_member_that_is_not_npy_is_rejected() {
    let dir = Scratch::new();
    let bundle = dir.file(
        "bundle.npz",
        &npz(&[("logits.npy", b"not an npy image"), ("targets.npy", &i64_npy(&[4], &[0, 1, 2, 0]))]),
    );
    rejects(&["ce", &bundle], &[&format!("{bundle}:logits (logits)"), "logits.npy", "magic"]);
}

#[test]
fn bundle_without_targets_is_rejected() {
    let dir = Scratch::new();
    let json = dir.file("only_logits.json", br#"{"logits": [[1.0, 2.0], [3.0, 4.0]]}"#);
    rejects(&["ce", &json], &[&json, "'targets'"]);
    let npz_bundle =
        dir.file("only_logits.npz", &npz(&[("logits.npy", &f64_npy(&[2, 2], &[1.0, 2.0, 3.0, 4.0]))]));
    rejects(&["ce", &npz_bundle], &[&npz_bundle, "'targets'"]);
}

#[test]
fn npy_file_as_bundle_is_rejected() {
    rejects(&["ce", LOGITS], &["bad/logits_ok.npy (bundle)", ".npy"]);
}

// --------------------------------------------------------------------------
// the output file
// --------------------------------------------------------------------------

#[test]
fn output_in_a_missing_folder_is_rejected_and_nothing_is_created() {
    rejects(
        &["ce", "golden/ce.npz", "-o", "nonexistent_dir/r.json"],
        &["nonexistent_dir/r.json", "does not exist"],
    );
    assert!(
        !crate::util::fixtures().join("nonexistent_dir").exists(),
        "fixtures/nonexistent_dir was created"
    );
}

#[test]
fn output_pointing_at_a_directory_is_rejected() {
    let dir = Scratch::new();
    let folder = dir.path().to_str().expect("a UTF-8 temporary path").to_string();
    rejects(&["ce", "golden/ce.npz", "-o", &folder], &[&folder, "directory"]);
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("the folder").collect();
    assert!(left.is_empty(), "files were left in the folder: {left:?}");
}

#[test]
fn rejected_input_leaves_an_existing_output_untouched() {
    let dir = Scratch::new();
    let target = dir.file("report.json", b"the previous report\n");
    rejects(
        &["ce", "--logits", LOGITS, "--targets", "bad/labels_oob.npy", "-o", &target],
        &["bad/labels_oob.npy (targets)", "[2]"],
    );
    assert_eq!(std::fs::read(&target).expect("the old report"), b"the previous report\n");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("the folder")
        .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["report.json"], "leftover files");
}

// --------------------------------------------------------------------------
// the command line itself
// --------------------------------------------------------------------------

#[test]
fn unknown_subcommand_is_a_usage_error() {
    usage_error(&["frobnicate"], &["frobnicate"]);
    usage_error(&[], &["Usage"]);
}

#[test]
fn unknown_flag_is_a_usage_error() {
    usage_error(&["ce", "golden/ce.npz", "--frobnicate"], &["--frobnicate"]);
    usage_error(&["ce", "golden/ce.npz", "--reduction", "median"], &["median"]);
    usage_error(&["ce", "golden/ce.npz", "--bins", "x"], &["--bins"]);
    usage_error(&["bce", "golden/bce.npz", "--pos_weight", "1,2"], &["--pos_weight"]);
}

// --------------------------------------------------------------------------
// --expect
// --------------------------------------------------------------------------

#[test]
fn expect_with_a_wrong_value_exits_1_and_still_prints_the_report() {
    let args = ["ce", "golden/ce.npz", "--format", "json", "--expect", "1.0"];
    let output = run(&args);
    let context = describe(&args, &output);
    assert_eq!(output.status.code(), Some(1), "{context}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{context}");
    assert_eq!(stderr.lines().count(), 1, "{context}");
    assert!(stderr.contains("check failed") && stderr.contains('1'), "{context}");
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the report is still on stdout");
    let value = report["value"].as_f64().expect("a value");
    assert!(stderr.contains(&value.to_string()), "the message lacks the value {value}\n{context}");
}

#[test]
fn expect_with_the_right_value_exits_0() {
    let value = json_report(&["ce", "golden/ce.npz"])["value"].as_f64().expect("a value");
    let value = value.to_string();
    let args = ["ce", "golden/ce.npz", "--expect", &value];
    let output = run(&args);
    let context = describe(&args, &output);
    assert_eq!(output.status.code(), Some(0), "{context}");
    assert!(output.stderr.is_empty(), "{context}");
    assert!(!output.stdout.is_empty(), "{context}");
}
