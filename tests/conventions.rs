//! The peer conventions: every case of fixtures/conventions/expected.json,
//! computed in float64 by the package its `reference` names (kornia, mmdet,
//! torchvision, torch; mmcv's kernels transcribed) or, for the exactness
//! cases (`exact_*`), by mpmath at 60 digits (fixtures/generate_conventions.py).
//! The CLI must agree to 1e-10 relative on the value, the sum, the divisor
//! and every class's loss sum, with the same counts; the exactness cases to
//! 1e-12 of the exact value, where torch's own float64 value is up to 2e-7
//! off (their `torch_rel_error`).

use serde::Deserialize;

use crate::bad_input::rejects;
use crate::util::{PARITY_RTOL, assert_close, check_every, json_report, losscope, reference_cases};

/// How close the exactness cases must come to the exact value.
const EXACT_RTOL: f64 = 1e-12;

#[derive(Deserialize)]
struct Case {
    name: String,
    reference: String,
    args: Vec<String>,
    value: f64,
    sum: f64,
    normalizer: f64,
    count: u64,
    #[serde(default)]
    ignored: u64,
    class_loss_sums: Vec<f64>,
    #[serde(default)]
    class_counts: Option<Vec<u64>>,
    #[serde(default)]
    positives: Option<u64>,
    /// Exactness cases: what torch returns in float64, and how far off it is.
    #[serde(default)]
    torch_rel_error: Option<f64>,
}

fn cases() -> Vec<Case> {
    reference_cases("conventions/expected.json")
}

fn check(case: &Case) {
    let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
    let report = json_report(&args);
    let rtol = if case.name.starts_with("exact_") { EXACT_RTOL } else { PARITY_RTOL };
    let what = |field: &str| format!("{} [{}] {field}", case.name, case.reference);
    let number =
        |field: &str| report[field].as_f64().unwrap_or_else(|| panic!("{}: not a number", what(field)));
    assert_close(&what("value"), number("value"), case.value, rtol);
    assert_close(&what("sum"), number("sum"), case.sum, rtol);
    assert_close(&what("normalizer"), number("normalizer"), case.normalizer, rtol);
    assert_eq!(report["count"], case.count, "{}", what("count"));
    assert_eq!(report["ignored"], case.ignored, "{}", what("ignored"));
    let classes = report["classes"].as_array().expect("classes");
    assert_eq!(classes.len(), case.class_loss_sums.len(), "{}", what("class count"));
    for (c, (row, &want)) in classes.iter().zip(&case.class_loss_sums).enumerate() {
        let got = row["loss_sum"].as_f64().expect("loss_sum");
        assert_close(&what(&format!("class {c} loss_sum")), got, want, rtol);
        if let Some(counts) = &case.class_counts {
            assert_eq!(row["count"], counts[c], "{}", what(&format!("class {c} count")));
        }
    }
    if let Some(positives) = case.positives {
        let counted: u64 = classes.iter().map(|row| row["positives"].as_u64().unwrap_or(0)).sum();
        assert_eq!(counted, positives, "{}", what("positives"));
    }
}

#[test]
fn every_convention_case_matches_its_reference() {
    let cases = cases();
    assert_eq!(cases.len(), 80, "conventions/expected.json holds {} cases", cases.len());
    check_every(&cases, check);
}

/// The exactness cases are worth their tolerance: on most of them torch's
/// own float64 value is further from the exact one than losscope may be.
#[test]
fn the_exactness_cases_are_ones_torch_float64_gets_wrong() {
    let cases = cases();
    let exact: Vec<&Case> = cases.iter().filter(|c| c.name.starts_with("exact_")).collect();
    assert_eq!(exact.len(), 24);
    let off: Vec<&str> = exact
        .iter()
        .filter(|c| c.torch_rel_error.is_some_and(|e| e.abs() > EXACT_RTOL))
        .map(|c| c.name.as_str())
        .collect();
    assert!(off.len() >= 14, "only {off:?} are cases torch gets wrong");
    // CE whose target logit leads by 20 to 700: torch is off by 5.5e-9 (C = 5).
    assert!(off.contains(&"exact_ce_c5") && off.contains(&"exact_bce_right"));
}

/// An example whose target logit leads by 300 loses 1.6e-128: torch's
/// log_softmax returns 0 for it, losscope the exact value.
#[test]
fn a_near_certain_row_keeps_its_tiny_loss() {
    let report = json_report(&["ce", "conventions/exact/ce_c1000.npz"]);
    let classes = report["classes"].as_array().unwrap();
    assert_close("class 3 (gap 300)", classes[3]["loss_sum"].as_f64().unwrap(), 1.61422790512098e-128, 1e-14);
    assert_close(
        "class 42 (gap 700)",
        classes[42]["loss_sum"].as_f64().unwrap(),
        3.067596932394343e-302,
        1e-14,
    );
}

#[test]
fn negative_class_weights_are_computed_with_a_warning() {
    for args in [
        &["ce", "conventions/ce_golden.npz", "--weight", "-1,2,0.5"][..],
        &["focal", "conventions/softmax.npz", "--kind", "softmax", "--weight", "-0.5,2,1,1.5"],
        &["focal", "conventions/binary.npz", "--preset", "kornia", "--weight", "0.5,-1,1,2,-0.25"],
        &["bce", "golden/bce.npz", "--pos-weight", "-1,2"],
    ] {
        let report = json_report(args);
        let warnings = report["warnings"].as_array().unwrap();
        assert!(warnings.iter().any(|w| w.as_str().unwrap().contains("negative")), "{args:?}: {warnings:?}");
        let output = losscope().args(args).output().unwrap();
        assert!(output.status.success());
        assert!(String::from_utf8_lossy(&output.stderr).contains("warning: "), "{args:?}");
    }
}

#[test]
fn a_zero_dimensional_bce_input_is_one_example() {
    let report = json_report(&[
        "bce",
        "--logits",
        "conventions/scalar_logit.npy",
        "--targets",
        "conventions/scalar_target.npy",
    ]);
    assert_eq!(report["count"], 1);
    assert_eq!(report["inputs"][0]["shape"], serde_json::json!([]));
    assert_eq!(report["parameters"]["class_axis"], serde_json::Value::Null);
}

#[test]
fn ignore_index_is_a_focal_flag() {
    // Not clap's "unexpected argument '--ignore-index'" with its '-- --ignore-index' tip.
    let report = json_report(&[
        "focal",
        "conventions/binary_ignore_255.npz",
        "--preset",
        "kornia",
        "--ignore-index",
        "255",
    ]);
    assert_eq!(
        (report["ignored"].as_u64(), report["parameters"]["ignore_rule"].as_str()),
        (Some(4), Some("zero"))
    );
    assert!(report["warnings"].as_array().unwrap().is_empty());
}

/// Without --ignore-index, kornia's 255 is a target of 255 (as in kornia,
/// whose default ignore index is -100); losscope says so. (Not through
/// `json_report`: a target of 255 makes p_t negative, which the schema's
/// `mean_p_t` does not allow.)
#[test]
fn targets_outside_the_unit_interval_draw_a_warning() {
    let output = losscope()
        .args(["focal", "conventions/binary_ignore_255.npz", "--preset", "kornia", "--format", "json"])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("warning: targets hold 4 values"));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let warnings = report["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let warning = warnings[0].as_str().unwrap();
    for needle in ["4 values outside [0, 1]", "255", "[1, 0]", "--ignore-index"] {
        assert!(warning.contains(needle), "{warning}");
    }
}

#[test]
fn every_target_ignored_by_mmdet_gives_zero_not_nan() {
    let report = json_report(&["ce", "conventions/mmdet_ce_all_ignored.npz", "--preset", "mmdet"]);
    assert_eq!(report["value"], 0.0);
    let warnings: Vec<&str> =
        report["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    assert_eq!(warnings, ["every target is ignored: the sum and the value are 0"]);
}

#[test]
fn new_conventions_refuse_what_their_reference_cannot_do() {
    let mmdet_ce = ["ce", "conventions/mmdet_ce.npz"];
    let with = |base: &[&'static str], extra: &[&'static str]| -> Vec<&'static str> {
        base.iter().chain(extra).copied().collect()
    };
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            with(&mmdet_ce, &["--preset", "mmdet", "--avg-factor", "7.5", "--reduction", "sum"]),
            vec!["--avg-factor", "--reduction sum"],
        ),
        (with(&mmdet_ce, &["--avg-non-ignore"]), vec!["--avg-non-ignore", "--preset mmdet"]),
        (with(&mmdet_ce, &["--avg-factor", "2"]), vec!["--avg-factor", "--preset mmdet"]),
        (with(&mmdet_ce, &["--preset", "mmdet", "--avg-factor", "2", "--avg-non-ignore"]), vec!["either"]),
        (with(&mmdet_ce, &["--preset", "mmdet", "--avg-factor", "-1"]), vec!["--avg-factor -1"]),
        (with(&mmdet_ce, &["--preset", "mmdet", "--label-smoothing", "0.1"]), vec!["label smoothing"]),
        (with(&["ce", "golden/ce_soft.npz"], &["--preset", "mmdet"]), vec!["(targets)", "class indices"]),
        (
            with(
                &["focal", "conventions/mmcv_sigmoid_labels.npz"],
                &["--preset", "mmcv", "--weight", "1,2,3,4,5"],
            ),
            vec!["(targets)", "label -1 at index [0] is background", "weight[label]"],
        ),
        (
            with(&["focal", "conventions/binary.npz"], &["--preset", "mmcv"]),
            vec!["(targets)", "one class index per row [16]"],
        ),
        (
            with(
                &["focal", "conventions/mmdet_focal.npz"],
                &["--preset", "mmdet", "--sample-weight", "conventions/binary_pos_weight.npy"],
            ),
            vec!["(sample_weight)", "shape [5]", "[16] or [16, 1]", "[16, 5]"],
        ),
        (
            with(
                &["focal", "conventions/mmdet_focal.npz"],
                &["--sample-weight", "conventions/mmdet_sample_weight_n.npy"],
            ),
            vec!["sample weights", "mmdet", "torchvision"],
        ),
        (
            with(&["focal", "conventions/binary.npz"], &["--pos-weight", "1,2,3,4,5"]),
            vec!["pos_weight", "kornia"],
        ),
        (
            with(&["focal", "conventions/binary.npz"], &["--preset", "kornia", "--pos-weight", "1,2"]),
            vec!["--pos-weight (pos_weight)", "2 entries", "5 classes"],
        ),
        (
            with(
                &["focal", "conventions/softmax_ignore_m1.npz"],
                &["--kind", "softmax", "--preset", "mmcv", "--ignore-index", "255"],
            ),
            vec!["every negative label", "not negative"],
        ),
        (
            with(
                &["focal", "conventions/mmcv_sigmoid_labels.npz"],
                &["--preset", "mmcv", "--background", "5"],
            ),
            vec!["--background"],
        ),
    ];
    for (args, expected) in cases {
        rejects(&args, &expected);
    }
}
