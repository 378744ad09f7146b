//! The JSON report is a contract: these strict structs (unknown fields are
//! errors) are what a CI script may rely on. A renamed or added field fails
//! here, so the change is made on purpose, with docs/report-schema.md.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::util::json_report;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Report {
    schema_version: u32,
    loss: String,
    parameters: BTreeMap<String, serde_json::Value>,
    inputs: Vec<Input>,
    value: Option<f64>,
    sum: Option<f64>,
    normalizer: Option<f64>,
    count: u64,
    ignored: u64,
    classes: Vec<Class>,
    difficulty: Difficulty,
    baseline: Option<Baseline>,
    examples: Option<Examples>,
    confusion: Option<Confusion>,
    calibration: Calibration,
    label_issues: Option<serde_json::Value>,
    warnings: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Examples {
    hardest: Vec<HardExample>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct HardExample {
    index: Vec<usize>,
    flat_index: u64,
    target: serde_json::Number,
    predicted: serde_json::Number,
    p_t: Option<f64>,
    loss: Option<f64>,
    loss_share: Option<f64>,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Confusion {
    pairs: Vec<ConfusionPair>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ConfusionPair {
    target: u32,
    predicted: u32,
    count: u64,
    loss_sum: Option<f64>,
    loss_share: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Calibration {
    ece: Option<f64>,
    mce: Option<f64>,
    bins: Vec<CalibrationBin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct CalibrationBin {
    lower: f64,
    upper: f64,
    count: u64,
    confidence: Option<f64>,
    accuracy: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Baseline {
    loss: String,
    value: Option<f64>,
    sum: Option<f64>,
    classes: Vec<BaselineClass>,
    difficulty: BaselineDifficulty,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct BaselineClass {
    class: usize,
    loss_sum: Option<f64>,
    loss_share: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct BaselineDifficulty {
    easy: Share,
    hard: Share,
    bins: Vec<Bin>,
    gradient_norm_bins: Vec<Bin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Input {
    role: String,
    source: String,
    shape: Vec<usize>,
    dtype: String,
    memory_mapped: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Class {
    class: usize,
    name: Option<String>,
    count: u64,
    frequency: Option<f64>,
    loss_sum: Option<f64>,
    loss_share: Option<f64>,
    mean_loss: Option<f64>,
    mean_p_t: Option<f64>,
    accuracy: Option<f64>,
    mean_confidence: Option<f64>,
    positives: Option<u64>,
    positive_loss_sum: Option<f64>,
    negative_loss_sum: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Difficulty {
    easy_threshold: f64,
    easy: Share,
    hard: Share,
    bins: Vec<Bin>,
    gradient_norm_bins: Vec<Bin>,
    concentration: Concentration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Share {
    count: u64,
    loss_sum: Option<f64>,
    loss_share: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Bin {
    lower: f64,
    upper: f64,
    count: u64,
    loss_sum: Option<f64>,
    loss_share: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Concentration {
    all: Option<Hardest>,
    positives: Option<Hardest>,
    negatives: Option<Hardest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Hardest {
    count: u64,
    levels: Vec<Level>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Level {
    fraction: f64,
    count: u64,
    loss_share: Option<f64>,
}

fn strict(args: &[&str]) -> Report {
    serde_json::from_value(json_report(args)).expect("the report fits the documented schema")
}

#[test]
fn ce_report_fits_the_schema() {
    let report = strict(&["ce", "golden/ce.npz", "--class-names", "cat,dog,bird"]);
    assert_eq!(report.schema_version, 1);
    assert_eq!(report.loss, "ce");
    assert_eq!(report.classes.len(), 3);
    assert_eq!(report.classes[1].name.as_deref(), Some("dog"));
    assert!(report.classes.iter().all(|c| c.positives.is_none()));
    assert_eq!(report.difficulty.bins.len(), 10);
    let all = report.difficulty.concentration.all.expect("CE reports all examples");
    assert_eq!(all.levels.iter().map(|l| l.fraction).collect::<Vec<_>>(), [0.01, 0.05, 0.10, 0.25]);
    assert!(report.difficulty.concentration.positives.is_none());
    for key in ["reduction", "ignore_index", "label_smoothing", "weight", "class_axis", "target_mode"] {
        assert!(report.parameters.contains_key(key), "parameters lack {key}");
    }
    assert_eq!(
        report.inputs.iter().map(|i| i.role.as_str()).collect::<Vec<_>>(),
        ["logits", "targets", "weight"]
    );
}

#[test]
fn bce_report_fits_the_schema_with_positive_columns() {
    let report = strict(&["bce", "golden/bce.npz", "--bins", "4"]);
    assert_eq!(report.loss, "bce");
    assert!(report.classes.iter().all(|c| c.positives.is_some() && c.negative_loss_sum.is_some()));
    assert_eq!(report.difficulty.bins.len(), 4);
    let concentration = report.difficulty.concentration;
    assert!(concentration.all.is_none());
    assert_eq!(concentration.positives.unwrap().count + concentration.negatives.unwrap().count, 6);
}

#[test]
fn all_ignored_writes_null_and_warns() {
    let report = strict(&["ce", "--logits", "ignore/logits.npy", "--targets", "ignore/all_ignored.npy"]);
    assert_eq!(report.value, None);
    assert_eq!(report.sum, Some(0.0));
    assert_eq!(report.count, 0);
    assert!(report.warnings.iter().any(|w| w.contains("ignored")), "{:?}", report.warnings);
}

/// The schema check in the test helper is real: an undocumented field fails it.
#[test]
fn the_schema_rejects_an_undocumented_field() {
    let mut report = json_report(&["ce", "golden/ce.npz"]);
    report["surprise"] = 1.into();
    let caught = std::panic::catch_unwind(|| crate::util::assert_fits_schema(&report, &["edited"]));
    assert!(caught.is_err(), "a report with an extra field passed the schema");
    let mut renamed = json_report(&["bce", "golden/bce.npz"]);
    renamed["classes"][0]["positive_count"] = renamed["classes"][0]["positives"].take();
    let caught = std::panic::catch_unwind(|| crate::util::assert_fits_schema(&renamed, &["edited"]));
    assert!(caught.is_err(), "a renamed class field passed the schema");
}
