//! `losscope weights`: counts and suggested class weights.

use predicates::prelude::*;

use crate::bad_input::{Scratch, rejects};
use crate::util::{f64_npy, fixtures, i64_npy, losscope, npy};

fn weights_json(args: &[&str]) -> serde_json::Value {
    let output = losscope().arg("weights").args(args).args(["--format", "json"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The counts are those the PyTorch generator found for the same file
/// (expected.json's ce_large_plain class_counts).
#[test]
fn counts_match_the_reference_and_weights_average_one() {
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap();
    let case = expected["cases"].as_array().unwrap().iter().find(|c| c["name"] == "ce_large_plain").unwrap();
    let report = weights_json(&["--targets", "big/ce_targets.npy", "--classes", "37"]);
    let counts: Vec<u64> =
        report["classes"].as_array().unwrap().iter().map(|c| c["count"].as_u64().unwrap()).collect();
    let want: Vec<u64> =
        case["class_counts"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).collect();
    assert_eq!(counts, want);
    assert_eq!(report["ignored"], case["ignored"]);
    for scheme in ["inverse", "sqrt_inverse", "effective"] {
        let present: Vec<f64> = report["classes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["count"].as_u64().unwrap() > 0)
            .map(|c| c[scheme].as_f64().unwrap())
            .collect();
        let mean = present.iter().sum::<f64>() / present.len() as f64;
        assert!((mean - 1.0).abs() < 1e-12, "{scheme} averages {mean}");
    }
}

#[test]
fn table_prints_a_line_to_paste_into_pytorch() {
    losscope()
        .args(["weights", "--targets", "golden/ce.npz:targets", "--scheme", "sqrt-inverse"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "torch.tensor([1.000000, 1.000000, 1.000000], dtype=torch.float32)",
        ));
    losscope()
        .args(["weights", "--targets", "golden/ce.npz:targets", "--format", "markdown"])
        .assert()
        .success()
        .stdout(predicate::str::contains("| inverse | sqrt-inverse | effective |"));
}

#[test]
fn empty_classes_get_zero_and_a_warning() {
    losscope()
        .args(["weights", "--targets", "golden/ce.npz:targets", "--classes", "5"])
        .assert()
        .success()
        .stderr(predicate::str::contains("classes with no examples get weight 0: 3, 4"));
}

#[test]
fn bad_targets_and_parameters_exit_two() {
    losscope()
        .args(["weights", "--targets", "bad/labels_neg.npy"])
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty());
    losscope()
        .args(["weights", "--targets", "bad/labels_float.npy"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a class index"));
    losscope()
        .args(["weights", "--targets", "golden/ce.npz:targets", "--beta", "1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--beta"));
    losscope()
        .args(["weights", "--targets", "bad/labels_oob.npy", "--classes", "3"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("label 3 at index [2]"));
}

/// A segmentation mask whose void pixels are 255 made 256 classes and a
/// warning of 250 numbers; the warning now says how to leave them out.
#[test]
fn a_void_label_far_above_the_classes_gets_the_ignore_index_hint() {
    let hint = "label 255 stands far above the other labels and makes 250 classes with no examples: \
                if it marks elements to leave out, pass --ignore-index 255";
    losscope()
        .args(["weights", "--targets", "spatial/targets_u8.npy"])
        .assert()
        .success()
        .stderr(predicate::str::contains(format!("warning: {hint}")))
        .stderr(predicate::str::contains("classes with no examples get weight 0: 5–254"));
    let report = weights_json(&["--targets", "spatial/targets_u8.npy"]);
    assert!(report["warnings"].as_array().unwrap().iter().any(|w| w == hint), "{report}");
    let report = weights_json(&["--targets", "spatial/targets_u8.npy", "--ignore-index", "255"]);
    assert_eq!(report["warnings"], serde_json::json!([]));
    assert_eq!(report["ignored"], 4);
}

/// `weights BUNDLE` reads the bundle's `targets`, as the loss subcommands do.
#[test]
fn a_positional_bundle_gives_its_targets() {
    let mut from_bundle = weights_json(&["golden/ce.npz"]);
    let from_flag = weights_json(&["--targets", "golden/ce.npz:targets"]);
    assert_eq!(from_bundle["targets"], "golden/ce.npz:targets");
    from_bundle["targets"] = from_flag["targets"].clone();
    assert_eq!(from_bundle, from_flag);
    losscope()
        .args(["weights", "ssd/ssd300_voc/truths.npz"])
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("no targets: pass --targets FILE or a bundle holding 'targets'"));
}

/// One-hot `[N, C]` targets were read as labels 0 and 1 (two classes, 75% and
/// 25%); they are counted per class now, as the labels they encode are.
#[test]
fn one_hot_rows_count_as_the_labels_they_encode() {
    let dir = Scratch::new();
    let labels = [2, 0, 2, 1, 2, 2, 3, 0];
    let one_hot: Vec<f64> = labels.iter().flat_map(|&y| (0..4).map(move |c| f64::from(c == y))).collect();
    let as_labels = weights_json(&["--targets", &dir.file("labels.npy", &i64_npy(&[8], &labels))]);
    let float_rows = weights_json(&["--targets", &dir.file("one_hot.npy", &f64_npy(&[8, 4], &one_hot))]);
    let ints: Vec<i64> = one_hot.iter().map(|&v| v as i64).collect();
    let int_rows = weights_json(&["--targets", &dir.file("one_hot_i64.npy", &i64_npy(&[8, 4], &ints))]);
    assert_eq!(as_labels["counted"], "labels");
    for rows in [&float_rows, &int_rows] {
        assert_eq!(rows["counted"], "one_hot_rows");
        assert_eq!(rows["count"], 8);
        assert_eq!(rows["classes"], as_labels["classes"]);
        assert_eq!(rows["torch"], as_labels["torch"]);
    }
    losscope()
        .args(["weights", "--targets", &dir.file("one_hot.npy", &f64_npy(&[8, 4], &one_hot))])
        .assert()
        .success()
        .stdout(predicate::str::contains("8 one-hot rows, each counted for the class of its 1"));
}

/// Soft targets count each class by its probability mass, and say so.
#[test]
fn probability_rows_count_their_mass() {
    let dir = Scratch::new();
    // float32 rows summing to 1 within rounding: masses 1.9, 0.8 and 0.3.
    let rows: [f32; 9] = [0.7, 0.2, 0.1, 0.6, 0.3, 0.1, 0.6, 0.3, 0.1];
    let bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
    let soft = dir.file("soft.npy", &npy("<f4", &[3, 3], &bytes));
    let report = weights_json(&["--targets", &soft]);
    assert_eq!(report["counted"], "probability_mass");
    assert_eq!(report["count"], 3);
    let mass: Vec<f64> =
        report["classes"].as_array().unwrap().iter().map(|c| c["count"].as_f64().unwrap()).collect();
    for (got, want) in mass.iter().zip([1.9, 0.8, 0.3]) {
        assert!((got - want).abs() < 1e-6, "{mass:?}");
    }
    // Inverse weights are 1/mass, averaging 1.
    let inverse: Vec<f64> =
        report["classes"].as_array().unwrap().iter().map(|c| c["inverse"].as_f64().unwrap()).collect();
    let mean = mass.iter().map(|m| 1.0 / m).sum::<f64>() / 3.0;
    for (w, m) in inverse.iter().zip(&mass) {
        assert!((w - 1.0 / m / mean).abs() < 1e-12, "{inverse:?}");
    }
    losscope()
        .args(["weights", "--targets", &soft])
        .assert()
        .success()
        .stdout(predicate::str::contains("3 probability rows, each class counted by its probability mass"));
    rejects(
        &["weights", "--targets", &soft, "--classes", "4"],
        &[&format!("{soft} (targets)"), "probability targets [3, 3] have 3 classes, not the 4 of --classes"],
    );
}

/// Float `[N, C]` targets that are neither labels nor class rows are
/// refused, saying why the rows are not read per class.
#[test]
fn float_rows_that_are_neither_labels_nor_probabilities_are_refused() {
    let dir = Scratch::new();
    let rows = dir.file("scores.npy", &f64_npy(&[2, 2], &[0.25, 0.5, 0.5, 0.5]));
    rejects(
        &["weights", "--targets", &rows],
        &[
            &format!("{rows} (targets)"),
            "target 0.25 at index [0, 0] is not a class index (not an integer)",
            "[N, C] targets are counted per class when every row is one-hot or sums to 1, and row 0 sums to 0.75",
        ],
    );
}
