//! Reliability of what losscope writes: infinite results reported as
//! infinities (not NaN) in every format and in `--expect`; stderr and
//! stdout that cannot be written; the mode of `-o` files and symbolic
//! links at `-o`; control characters from the user's text; tolerances that
//! are not finite; and `diff`, which must never pass by comparing nothing.
//!
//! Inputs are written by hand into temporary folders (NumPy is not needed):
//! see [`f64_npy`].

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use tempfile::TempDir;

use crate::util::{assert_fits_schema, losscope};

// --------------------------------------------------------------------------
// helpers
// --------------------------------------------------------------------------

/// A C-order version 1.0 `.npy` image of `descr` values, padded as NumPy pads.
fn npy(descr: &str, shape: &[usize], payload: Vec<u8>) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple}, }}").into_bytes();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&payload);
    out
}

fn f64_npy(shape: &[usize], values: &[f64]) -> Vec<u8> {
    npy("<f8", shape, values.iter().flat_map(|v| v.to_le_bytes()).collect())
}

fn i64_npy(shape: &[usize], values: &[i64]) -> Vec<u8> {
    npy("<i8", shape, values.iter().flat_map(|v| v.to_le_bytes()).collect())
}

/// A temporary folder for inputs and outputs.
struct Scratch(TempDir);

impl Scratch {
    fn new() -> Scratch {
        Scratch(TempDir::new().expect("a temporary folder"))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    /// Writes `bytes` to `name` and returns its full path as text.
    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.path(name);
        std::fs::write(&path, bytes).expect("write a scratch file");
        text(&path)
    }
}

fn text(path: &Path) -> String {
    path.to_str().expect("a UTF-8 temporary path").to_string()
}

fn run(args: &[&str]) -> Output {
    losscope().args(args).output().expect("losscope runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `args` with `--format json`, which must succeed; returns the report
/// (checked against docs/report.schema.json) and stderr.
fn json_run(args: &[&str]) -> (Value, String) {
    let output = losscope().args(args).args(["--format", "json"]).output().expect("losscope runs");
    assert!(output.status.success(), "losscope {args:?} failed: {}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    assert_fits_schema(&report, args);
    (report, stderr(&output))
}

/// The path's `nonfinite` marker in a report, if any.
fn marker<'a>(report: &'a Value, path: &str) -> Option<&'a str> {
    report.get("nonfinite").and_then(|m| m.get(path)).and_then(Value::as_str)
}

/// `x = zeros((100, 2)); x[:, 1] = -1e307` with every target 1: each
/// example's loss is 1e307, finite; their float64 sum overflows, and
/// `F.cross_entropy` gives `inf` (as does the mean of it).
fn overflowing_ce(dir: &Scratch) -> (String, String) {
    let logits: Vec<f64> = (0..100).flat_map(|_| [0.0, -1e307]).collect();
    (
        dir.file("logits.npy", &f64_npy(&[100, 2], &logits)),
        dir.file("targets.npy", &i64_npy(&[100], &[1; 100])),
    )
}

#[test]
fn a_ce_sum_that_overflows_is_inf_not_nan() {
    let dir = Scratch::new();
    let (logits, targets) = overflowing_ce(&dir);
    let args = ["ce", "--logits", &logits, "--targets", &targets];
    let (report, err) = json_run(&args);
    assert_eq!(report["value"], Value::Null, "JSON keeps null for old consumers");
    assert_eq!(marker(&report, "value"), Some("inf"));
    assert_eq!(marker(&report, "sum"), Some("inf"));
    assert_eq!(marker(&report, "classes[1].loss_sum"), Some("inf"));
    assert_eq!(report["normalizer"], 100.0);
    assert!(!err.contains("NaN"), "{err}");
    assert!(err.contains("warning: value is inf"), "{err}");

    let table = run(&args);
    assert!(table.status.success());
    let out = stdout(&table);
    let value_line = out.lines().find(|l| l.trim_start().starts_with("value")).unwrap();
    assert_eq!(value_line.split_whitespace().collect::<Vec<_>>(), ["value", "inf"], "{out}");
    assert!(!out.contains("null (not a number)"), "{out}");
    let markdown = stdout(&run(&[&args[..], &["--format", "markdown"]].concat()));
    assert!(markdown.contains("| value | `inf` |"), "{markdown}");
}

#[test]
fn huge_weights_give_inf_under_sum_and_stay_nan_under_mean() {
    let dir = Scratch::new();
    let logits = dir.file("logits.npy", &f64_npy(&[2, 2], &[0.0, 1.0, 1.0, 0.0]));
    let targets = dir.file("targets.npy", &i64_npy(&[2], &[0, 1]));
    let args = ["ce", "--logits", &logits, "--targets", &targets, "--weight", "1e308,1e308"];
    // Σ w·l = 2 · 1e308 · 1.3133 overflows: torch's sum is inf.
    let (sum, _) = json_run(&[&args[..], &["--reduction", "sum"]].concat());
    assert_eq!(marker(&sum, "value"), Some("inf"));
    assert_eq!(marker(&sum, "sum"), Some("inf"));
    // The mean divides by Σ w = inf too: inf / inf is NaN in torch, and here.
    let (mean, err) = json_run(&args);
    assert_eq!(mean["value"], Value::Null);
    assert_eq!(marker(&mean, "value"), None, "NaN is not marked as an infinity");
    assert_eq!(marker(&mean, "normalizer"), Some("inf"));
    assert!(err.contains("warning: value is NaN"), "{err}");
    let table = stdout(&run(&args));
    assert!(table.lines().any(|l| l.contains("value") && l.contains("null (not a number)")), "{table}");
}

#[test]
fn bce_and_focal_sums_that_overflow_are_inf() {
    let dir = Scratch::new();
    // Logit -1e307 with target 1: BCE = softplus(1e307) = 1e307 per element;
    // torchvision's focal = 0.25 · 1e307 · (1 - 0)² = 2.5e306. Both sums
    // of 100 overflow.
    let logits = dir.file("logits.npy", &f64_npy(&[100], &[-1e307; 100]));
    let targets = dir.file("targets.npy", &f64_npy(&[100], &[1.0; 100]));
    for loss in ["bce", "focal"] {
        let (report, err) = json_run(&[loss, "--logits", &logits, "--targets", &targets]);
        assert_eq!(marker(&report, "value"), Some("inf"), "{loss}");
        assert_eq!(marker(&report, "sum"), Some("inf"), "{loss}");
        assert_eq!(marker(&report, "classes[0].positive_loss_sum"), Some("inf"), "{loss}");
        assert!(!err.contains("NaN"), "{loss}: {err}");
    }
    let (focal, _) = json_run(&["focal", "--logits", &logits, "--targets", &targets]);
    assert_eq!(marker(&focal, "baseline.value"), Some("inf"), "the plain BCE beside it overflows too");
}

#[test]
fn an_ssd_loc_sum_that_overflows_is_inf() {
    let dir = Scratch::new();
    let priors = dir.file("priors.npy", &f64_npy(&[2, 4], &[0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 0.5, 0.5]));
    let conf = dir.file("conf.npy", &f64_npy(&[1, 2, 2], &[0.0, 1.0, 1.0, 0.0]));
    let truths = dir.file("truths.json", b"[[[0.0, 0.0, 0.5, 0.5, 0]]]");
    // Smooth L1 of a 1e308 offset is about 1e308; four of them overflow,
    // as torch's smooth_l1_loss(reduction='sum') does.
    let loc = dir.file("loc.npy", &f64_npy(&[1, 2, 4], &[1e308; 8]));
    let args = ["ssd", "--loc", &loc, "--conf", &conf, "--priors", &priors, "--truths", &truths];
    let (report, err) = json_run(&args);
    for field in ["value", "sum", "components.loc", "components.loc_sum", "images[0].loc_sum"] {
        assert_eq!(marker(&report, field), Some("inf"), "{field}");
    }
    assert!(report["components"]["conf"].is_number(), "the confidence part stays finite");
    assert!(!err.contains("NaN"), "{err}");
}

#[test]
fn a_minus_inf_logit_with_label_smoothing_is_inf() {
    let dir = Scratch::new();
    // log_softmax of the -inf logit is -inf, so the smoothing term is +inf
    // and torch's loss is inf (the target's own log-probability is finite).
    let logits = dir.file("logits.npy", &f64_npy(&[2, 3], &[0.0, f64::NEG_INFINITY, 1.0, 0.5, 0.1, 0.2]));
    let targets = dir.file("targets.npy", &i64_npy(&[2], &[0, 1]));
    let args =
        ["ce", "--logits", &logits, "--targets", &targets, "--label-smoothing", "0.1", "--allow-nonfinite"];
    let (report, err) = json_run(&args);
    assert_eq!(marker(&report, "value"), Some("inf"));
    assert_eq!(marker(&report, "classes[0].loss_sum"), Some("inf"));
    assert!(err.contains("warning: value is inf"), "{err}");
    // Without smoothing the same logits give a finite loss.
    let (plain, _) = json_run(&["ce", "--logits", &logits, "--targets", &targets, "--allow-nonfinite"]);
    assert!(plain["value"].is_number(), "{plain}");
    assert!(plain.get("nonfinite").is_none());
}

#[test]
fn a_nan_result_stays_nan() {
    let dir = Scratch::new();
    let logits = dir.file("logits.npy", &f64_npy(&[2, 2], &[f64::NAN, 1.0, 1.0, 0.0]));
    let targets = dir.file("targets.npy", &i64_npy(&[2], &[0, 1]));
    let (report, err) = json_run(&["ce", "--logits", &logits, "--targets", &targets, "--allow-nonfinite"]);
    assert_eq!(report["value"], Value::Null);
    assert!(report.get("nonfinite").is_none(), "{report}");
    assert!(err.contains("warning: value is NaN"), "{err}");
    // A +inf logit: log_softmax is NaN, in torch as here.
    let logits = dir.file("inf.npy", &f64_npy(&[2, 2], &[f64::INFINITY, 1.0, 1.0, 0.0]));
    let (report, _) = json_run(&["ce", "--logits", &logits, "--targets", &targets, "--allow-nonfinite"]);
    assert_eq!(marker(&report, "value"), None, "{report}");
}

#[test]
fn expect_against_an_infinite_value_says_inf() {
    let dir = Scratch::new();
    let (logits, targets) = overflowing_ce(&dir);
    let output = run(&["ce", "--logits", &logits, "--targets", &targets, "--expect", "1", "-q"]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("check failed: value inf differs from the expected 1"), "{err}");
    let nan = dir.file("nan.npy", &f64_npy(&[100, 2], &[f64::NAN; 200]));
    let output = run(&["ce", "--logits", &nan, "--targets", &targets, "--allow-nonfinite", "--expect", "1"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("check failed: value NaN differs"), "{}", stderr(&output));
}
