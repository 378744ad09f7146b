//! Parity with PyTorch: every case of `fixtures/expected.json` was computed by
//! torch.nn.functional in float64 (`fixtures/generate.py`, which names the
//! reference call of each case); losscope must agree to 1e-10 relative on the
//! value, the sum and every per-class figure.

use serde::Deserialize;

use crate::util::{PARITY_RTOL, assert_close, check_every, json_report, reference_cases};

#[derive(Deserialize)]
struct Case {
    name: String,
    reference: String,
    args: Vec<String>,
    value: Option<f64>,
    sum: f64,
    normalizer: f64,
    count: u64,
    ignored: u64,
    class_loss_sums: Vec<f64>,
    class_counts: Vec<u64>,
    class_mean_p_t: Vec<Option<f64>>,
    #[serde(default)]
    class_positives: Option<Vec<u64>>,
}

fn cases() -> Vec<Case> {
    reference_cases("expected.json")
}

fn check(case: &Case) {
    let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
    let report = json_report(&args);
    let what = |field: &str| format!("{} [{}] {field}", case.name, case.reference);
    match case.value {
        Some(value) => {
            assert_close(&what("value"), report["value"].as_f64().expect("value"), value, PARITY_RTOL)
        }
        None => assert!(report["value"].is_null(), "{}: value should be null", what("value")),
    }
    assert_close(&what("sum"), report["sum"].as_f64().expect("sum"), case.sum, PARITY_RTOL);
    assert_close(
        &what("normalizer"),
        report["normalizer"].as_f64().expect("normalizer"),
        case.normalizer,
        PARITY_RTOL,
    );
    assert_eq!(report["count"], case.count, "{}", what("count"));
    assert_eq!(report["ignored"], case.ignored, "{}", what("ignored"));
    let classes = report["classes"].as_array().expect("classes");
    assert_eq!(classes.len(), case.class_loss_sums.len(), "{}", what("class count"));
    for (c, row) in classes.iter().enumerate() {
        let class_what = |field: &str| what(&format!("class {c} {field}"));
        assert_close(
            &class_what("loss_sum"),
            row["loss_sum"].as_f64().expect("loss_sum"),
            case.class_loss_sums[c],
            PARITY_RTOL,
        );
        assert_eq!(row["count"], case.class_counts[c], "{}", class_what("count"));
        match case.class_mean_p_t[c] {
            Some(p) => assert_close(
                &class_what("mean_p_t"),
                row["mean_p_t"].as_f64().expect("mean_p_t"),
                p,
                PARITY_RTOL,
            ),
            None => assert!(row["mean_p_t"].is_null(), "{}", class_what("mean_p_t")),
        }
        if let Some(positives) = &case.class_positives {
            assert_eq!(row["positives"], positives[c], "{}", class_what("positives"));
        }
    }
}

#[test]
fn every_fixture_case_matches_pytorch_float64() {
    let cases = cases();
    assert!(cases.len() >= 50, "expected.json holds {} cases", cases.len());
    check_every(&cases, check);
}

/// The golden values of the reference notes, typed in from PyTorch's output
/// so that a regenerated expected.json cannot drift silently.
#[test]
fn golden_values_as_pytorch_prints_them() {
    let golden: &[(&[&str], f64)] = &[
        // F.cross_entropy(x, y)
        (&["ce", "golden/ce_noweight.npz"], 0.2396263025762109),
        // F.cross_entropy(x, y, weight=w)
        (&["ce", "golden/ce.npz"], 0.2301812851391809),
        // F.cross_entropy(x, y, weight=w, reduction='sum')
        (&["ce", "golden/ce.npz", "--reduction", "sum"], 0.8056344979871332),
        // F.cross_entropy(x, y, weight=w, label_smoothing=0.1)
        (&["ce", "golden/ce.npz", "--label-smoothing", "0.1"], 0.4085067392638363),
        // F.cross_entropy(x, y, label_smoothing=0.1)
        (&["ce", "golden/ce_noweight.npz", "--label-smoothing", "0.1"], 0.4090707470206554),
        // F.cross_entropy(x, t, weight=w)  (probability targets, mean over N)
        (&["ce", "golden/ce_soft.npz", "--weight", "1,2,0.5"], 0.6281151633437339),
        // F.cross_entropy(x, t, weight=w, label_smoothing=0.1)
        (
            &["ce", "golden/ce_soft.npz", "--weight", "1,2,0.5", "--label-smoothing", "0.1"],
            0.7735221402375989,
        ),
        // F.binary_cross_entropy_with_logits(xb, tb, weight=wb, pos_weight=pw)
        (&["bce", "golden/bce.npz"], 26.823779302490376),
    ];
    for (args, expected) in golden {
        let report = json_report(args);
        assert_close(&format!("{args:?}"), report["value"].as_f64().expect("value"), *expected, 1e-15);
    }
}

/// Per-example values of F.cross_entropy(x, y, weight=w, reduction='none')
/// = [0.43285546687876886, 0.30635641424457655, 0, 0.06642261686378778]: the
/// ignored row is left out and each other row is its class's whole sum.
#[test]
fn weighted_per_class_sums_are_the_per_example_losses() {
    let report = json_report(&["ce", "golden/ce.npz"]);
    let expected = [0.43285546687876886, 0.30635641424457655, 0.06642261686378778];
    for (row, want) in report["classes"].as_array().unwrap().iter().zip(expected) {
        assert_close("class loss_sum", row["loss_sum"].as_f64().unwrap(), want, 1e-15);
    }
}
