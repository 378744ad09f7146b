//! `losscope weights`: counts and suggested class weights.

use predicates::prelude::*;

use crate::util::{fixtures, losscope};

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
