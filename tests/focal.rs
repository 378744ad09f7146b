//! `losscope focal` against each framework's own focal loss: every case of
//! fixtures/focal/expected.json was computed in float64 by the package its
//! `reference` names (fixtures/generate_focal.py), and the CLI must agree to
//! 1e-10 relative on the value, the sum, the divisor and each class, and
//! exactly on the counts.

use serde::Deserialize;
use serde_json::Value;

use crate::util::{PARITY_RTOL, assert_close, json_report, losscope, reference_cases};

#[derive(Deserialize)]
struct Case {
    name: String,
    reference: String,
    logits: String,
    targets: String,
    params: serde_json::Map<String, Value>,
    value: f64,
    sum: f64,
    normalizer: f64,
    /// Examples counted: elements for sigmoid losses, rows for softmax.
    count: u64,
    /// Positive examples: elements whose target is above 0.5 (sigmoid), rows
    /// of a class other than the background class (softmax with one), else 0.
    positives: u64,
    class_loss_sums: Vec<f64>,
}

/// The command line that asks for a case's parameters.
fn args(case: &Case) -> Vec<String> {
    let relative = |p: &str| p.strip_prefix("fixtures/").unwrap_or(p).to_string();
    let mut args = vec![
        "focal".into(),
        "--logits".into(),
        relative(&case.logits),
        "--targets".into(),
        relative(&case.targets),
    ];
    let list = |v: &Value| match v {
        Value::Array(items) => items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(","),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for (key, value) in &case.params {
        let flag = format!("--{}", key.replace('_', "-"));
        match value {
            Value::Bool(true) => args.push(flag),
            Value::Bool(false) => {}
            other => {
                args.push(flag);
                args.push(list(other));
            }
        }
    }
    args
}

#[test]
fn every_focal_case_matches_its_framework() {
    let cases: Vec<Case> = reference_cases("focal/expected.json");
    assert!(cases.len() >= 40);
    for case in &cases {
        let args = args(case);
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let report = json_report(&arg_refs);
        let what = |field: &str| format!("{} [{}] {field}", case.name, case.reference);
        assert_close(&what("value"), report["value"].as_f64().unwrap(), case.value, PARITY_RTOL);
        assert_close(&what("sum"), report["sum"].as_f64().unwrap(), case.sum, PARITY_RTOL);
        assert_close(
            &what("normalizer"),
            report["normalizer"].as_f64().unwrap(),
            case.normalizer,
            PARITY_RTOL,
        );
        let classes = report["classes"].as_array().unwrap();
        assert_eq!(classes.len(), case.class_loss_sums.len(), "{}", what("classes"));
        for (row, want) in classes.iter().zip(&case.class_loss_sums) {
            assert_close(&what("class loss_sum"), row["loss_sum"].as_f64().unwrap(), *want, PARITY_RTOL);
        }
        assert_eq!(report["parameters"]["kind"], case.params["kind"], "{}", what("kind"));
        assert_eq!(report["count"], case.count, "{}", what("count"));
        // Where positives apply, the report groups them apart from the negatives.
        let positives = &report["difficulty"]["concentration"]["positives"];
        let reported = if positives.is_null() { 0 } else { positives["count"].as_u64().unwrap() };
        assert_eq!(reported, case.positives, "{}", what("positives"));
        if classes.iter().all(|row| row["positives"].is_u64()) {
            let per_class: u64 = classes.iter().map(|row| row["positives"].as_u64().unwrap()).sum();
            assert_eq!(per_class, case.positives, "{}", what("class positives"));
        }
    }
}

/// torchvision.ops.sigmoid_focal_loss(xf, tf, reduction='sum') = 0.2566234816377836.
#[test]
fn golden_sigmoid_focal_and_its_plain_bce_baseline() {
    let report = json_report(&["focal", "golden/bce_focal.npz", "--reduction", "sum"]);
    assert_close("value", report["value"].as_f64().unwrap(), 0.2566234816377836, 1e-15);
    assert_eq!(report["parameters"]["preset"], "torchvision");
    let baseline = &report["baseline"];
    assert_eq!(baseline["loss"], "bce");
    // Focal shrinks the easy examples' part: their share falls below the BCE's.
    let easy = report["difficulty"]["easy"]["loss_share"].as_f64().unwrap();
    let easy_bce = baseline["difficulty"]["easy"]["loss_share"].as_f64().unwrap();
    assert!(easy < easy_bce, "easy share {easy} vs BCE {easy_bce}");
    assert!(report["difficulty"]["concentration"]["positives"].is_object());
}

#[test]
fn focal_table_shows_the_baseline_beside_the_loss() {
    losscope()
        .args(["focal", "golden/bce_focal.npz"])
        .assert()
        .success()
        .stdout(predicates::str::contains("baseline share"))
        .stdout(predicates::str::contains("baseline (bce)"))
        .stdout(predicates::str::contains("Loss by gradient norm g"));
}

#[test]
fn focal_rejects_invalid_parameters() {
    for (extra, message) in [
        (&["--alpha", "1.5"][..], "alpha"),
        (&["--gamma", "-1"][..], "gamma"),
        (&["--kind", "sigmoid", "--preset", "uniform"][..], "preset uniform is a softmax focal loss"),
    ] {
        let output = losscope().args(["focal", "golden/bce_focal.npz"]).args(extra).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{extra:?}");
        assert!(output.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{extra:?}: {stderr}");
    }
    losscope().args(["focal", "golden/bce_focal.npz", "--preset", "nonsense"]).assert().code(2);
    // A per-class α needs one entry per class.
    losscope()
        .args(["focal", "--logits", "extreme/ce_logits_1e4.npy", "--targets", "extreme/ce_targets_1e4.npy"])
        .args(["--kind", "softmax", "--alpha", "0.1,0.2"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("alpha"));
}

/// Class indices fit both kinds, so a softmax model's dump was silently
/// evaluated as one-vs-all sigmoid focal. A preset of one kind now implies
/// it; with neither that nor `--kind`, the kind assumed is said on stderr
/// and in the report's warnings.
#[test]
fn a_preset_implies_its_kind_and_an_assumed_kind_is_said() {
    let assumed = "class-index targets of shape [12] with no --kind: computing sigmoid focal one-vs-all as \
                   torchvision.ops.sigmoid_focal_loss does; pass --kind softmax for a softmax model";
    losscope()
        .args(["focal", "focal/softmax.npz"])
        .assert()
        .success()
        .stderr(predicates::str::contains(format!("warning: {assumed}")));
    let report = json_report(&["focal", "focal/softmax.npz"]);
    assert_eq!(report["parameters"]["kind"], "sigmoid");
    assert_eq!(report["warnings"][0], assumed);
    // kornia has both kinds: the sigmoid one is assumed, and named.
    let report = json_report(&["focal", "focal/softmax.npz", "--preset", "kornia"]);
    let first = report["warnings"][0].as_str().unwrap_or_default();
    assert!(first.contains("as kornia.losses.binary_focal_loss_with_logits does"), "{first}");
    // uniform is softmax only: it implies the kind, as --kind softmax would.
    let implied = json_report(&["focal", "focal/softmax.npz", "--preset", "uniform"]);
    let explicit = json_report(&["focal", "focal/softmax.npz", "--preset", "uniform", "--kind", "softmax"]);
    assert_eq!(implied["parameters"]["kind"], "softmax");
    assert_eq!(implied, explicit);
    // Nothing is assumed with --kind, with a sigmoid-only preset, or with
    // targets shaped like the logits.
    for args in [
        &["focal", "focal/softmax.npz", "--kind", "sigmoid"][..],
        &["focal", "focal/softmax.npz", "--preset", "torchvision"],
        &["focal", "focal/sigmoid_onehot.npz"],
    ] {
        let report = json_report(args);
        let warnings = report["warnings"].as_array().unwrap();
        assert!(warnings.iter().all(|w| !w.as_str().unwrap().contains("--kind")), "{args:?}: {warnings:?}");
    }
}
