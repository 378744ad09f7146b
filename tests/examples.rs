//! Which examples: the hardest examples, per-example losses, confusion
//! pairs, calibration and suspected label errors, through the CLI, against
//! fixtures/examples/expected.json (`fixtures/generate_examples.py`:
//! PyTorch's `reduction='none'`, torchmetrics' calibration error and
//! cleanlab's confident learning, in float64).

use serde_json::Value;
use tempfile::TempDir;

use crate::util::{PARITY_RTOL, assert_close, fixtures, json_report, losscope, reference_cases};

/// Losses this small are where torch's float64 is inexact (it rounds or
/// underflows them); ours are then checked against the exact values of the
/// conventions fixtures, not against torch.
const TAIL: f64 = 1e-12;

/// Calibration errors hold to this against torchmetrics on the same probabilities.
const CALIBRATION_RTOL: f64 = 1e-12;

fn cases() -> Vec<Value> {
    reference_cases("examples/expected.json")
}

/// The case's arguments, with `$OUT/` pointing into `out`.
fn args_of(case: &Value, out: &TempDir) -> Vec<String> {
    case["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("an argument").replace("$OUT", &out.path().display().to_string()))
        .collect()
}

/// The argument after `flag`.
fn after(args: &[String], flag: &str) -> String {
    let at = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("{flag} in {args:?}"));
    args[at + 1].clone()
}

/// Reads a little-endian `.npy` of float64 or int64 as f64 values.
fn read_npy(path: &std::path::Path) -> Vec<f64> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8_lossy(&bytes[10..10 + header_len]);
    let data = &bytes[10 + header_len..];
    let words = data.chunks_exact(8).map(|w| <[u8; 8]>::try_from(w).expect("8 bytes"));
    if header.contains("'<f8'") {
        words.map(f64::from_le_bytes).collect()
    } else {
        assert!(header.contains("'<i8'"), "{}: {header}", path.display());
        words.map(|w| i64::from_le_bytes(w) as f64).collect()
    }
}

fn run(case: &Value, out: &TempDir) -> Value {
    let args = args_of(case, out);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = json_report(&args);
    let name = case["name"].as_str().unwrap_or_default();
    assert_close(
        &format!("{name} value"),
        report["value"].as_f64().unwrap(),
        case["value"].as_f64().unwrap(),
        PARITY_RTOL,
    );
    report
}

#[test]
fn per_example_losses_are_pytorchs_reduction_none() {
    let mut checked = 0;
    for case in cases().iter().filter(|c| c.get("per_example").is_some() && c["args"][0] != "ssd") {
        let out = TempDir::new().unwrap();
        run(case, &out);
        let name = case["name"].as_str().unwrap();
        let written = after(&args_of(case, &out), "--per-example");
        let ours = read_npy(std::path::Path::new(&written));
        let theirs = read_npy(&fixtures().join(case["per_example"].as_str().unwrap()));
        assert_eq!(ours.len(), theirs.len(), "{name}: length");
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            // Where torch's float64 underflows a tiny loss to 0 or rounds it
            // (BCE and focal far in the tail), ours is the exact value.
            if (a - b).abs() > TAIL {
                assert_close(&format!("{name} [{i}]"), *a, *b, PARITY_RTOL);
            }
        }
        checked += 1;
    }
    assert!(checked >= 5, "{checked} per-example cases");
}

/// The members of an uncompressed `.npz`, as f64 (bools as 0 and 1).
fn read_npz(path: &std::path::Path) -> std::collections::BTreeMap<String, Vec<f64>> {
    let dir = TempDir::new().unwrap();
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut archive = zip::ZipArchive::new(file).expect("an .npz is a zip");
    let mut members = std::collections::BTreeMap::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let name = entry.name().trim_end_matches(".npy").to_string();
        let target = dir.path().join(format!("{name}.npy"));
        std::io::copy(&mut entry, &mut std::fs::File::create(&target).unwrap()).unwrap();
        let bytes = std::fs::read(&target).unwrap();
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        let header = String::from_utf8_lossy(&bytes[10..10 + header_len]).to_string();
        let values = if header.contains("'|b1'") {
            bytes[10 + header_len..].iter().map(|&b| b as f64).collect()
        } else {
            read_npy(&target)
        };
        members.insert(name, values);
    }
    members
}

#[test]
fn ssd_per_prior_output_and_hardest_priors_match_the_reference() {
    let all = reference_cases::<Value>("examples/expected.json");
    let case = all.iter().find(|c| c["name"] == "ssd300_voc_per_example").expect("the SSD case");
    let out = TempDir::new().unwrap();
    run(case, &out);
    let ours = read_npz(std::path::Path::new(&after(&args_of(case, &out), "--per-example")));
    let theirs = read_npz(&fixtures().join(case["per_example"].as_str().unwrap()));
    assert_eq!(ours.keys().collect::<Vec<_>>(), ["conf", "loc", "selected"]);
    for (name, values) in &theirs {
        let mine = &ours[name];
        assert_eq!(mine.len(), values.len(), "{name}");
        for (i, (a, b)) in mine.iter().zip(values).enumerate() {
            assert_close(&format!("ssd {name}[{i}]"), *a, *b, PARITY_RTOL);
        }
    }
    let case = all.iter().find(|c| c["name"] == "ssd300_voc_examples_10").expect("the SSD case");
    let report = run(case, &out);
    let ours = report["hardest_priors"].as_array().expect("hardest_priors");
    let theirs = case["hardest"].as_array().unwrap();
    assert_eq!(ours.len(), theirs.len());
    for (a, b) in ours.iter().zip(theirs) {
        assert_eq!(serde_json::json!([a["image"], a["prior"]]), b["index"]);
        assert_eq!(a["status"] == "positive", b["positive"] == true);
        for (mine, reference) in [("conf_loss", "conf_loss"), ("loc_loss", "loc_loss"), ("loss", "loss")] {
            assert_close(mine, a[mine].as_f64().unwrap(), b[reference].as_f64().unwrap(), PARITY_RTOL);
        }
    }
}

#[test]
fn the_hardest_examples_and_their_order_match() {
    let mut checked = 0;
    for case in cases().iter().filter(|c| c.get("hardest").is_some() && c["args"][0] != "ssd") {
        let out = TempDir::new().unwrap();
        let report = run(case, &out);
        let name = case["name"].as_str().unwrap();
        let ours = report["examples"]["hardest"].as_array().expect("examples.hardest");
        let theirs = case["hardest"].as_array().unwrap();
        assert_eq!(ours.len(), theirs.len(), "{name}: how many");
        for (k, (a, b)) in ours.iter().zip(theirs).enumerate() {
            let what = |field: &str| format!("{name} #{k} {field}");
            assert_eq!(a["flat_index"], b["flat_index"], "{}", what("flat_index"));
            assert_eq!(a["index"], b["index"], "{}", what("index"));
            for field in ["target", "predicted", "p_t", "loss"] {
                let (x, y) = (a[field].as_f64().expect(field), b[field].as_f64().expect(field));
                assert_close(&what(field), x, y, PARITY_RTOL);
            }
        }
        if let Some(pairs) = case.get("confusion_pairs") {
            let ours = report["confusion"]["pairs"].as_array().expect("confusion.pairs");
            let theirs = pairs.as_array().unwrap();
            assert_eq!(ours.len(), theirs.len(), "{name}: pairs");
            for (a, b) in ours.iter().zip(theirs) {
                assert_eq!(
                    (&a["target"], &a["predicted"], &a["count"]),
                    (&b["target"], &b["predicted"], &b["count"])
                );
                assert_close(
                    name,
                    a["loss_sum"].as_f64().unwrap(),
                    b["loss_sum"].as_f64().unwrap(),
                    PARITY_RTOL,
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 6, "{checked} hardest-example cases");
}

#[test]
fn calibration_is_torchmetrics_calibration_error() {
    let mut checked = 0;
    for case in cases().iter().filter(|c| c.get("calibration").is_some()) {
        let out = TempDir::new().unwrap();
        let report = run(case, &out);
        let name = case["name"].as_str().unwrap();
        let (ours, theirs) = (&report["calibration"], &case["calibration"]);
        for field in ["ece", "mce"] {
            let (a, b) = (ours[field].as_f64().expect(field), theirs[field].as_f64().unwrap());
            assert_close(&format!("{name} {field}"), a, b, CALIBRATION_RTOL);
        }
        let (a_bins, b_bins) = (ours["bins"].as_array().unwrap(), theirs["bins"].as_array().unwrap());
        assert_eq!(a_bins.len(), b_bins.len(), "{name}: bins");
        for (a, b) in a_bins.iter().zip(b_bins) {
            assert_eq!(a["count"], b["count"], "{name}: bin count");
            if a["count"] != 0 {
                for (ours_field, theirs_field) in
                    [("confidence", "mean_confidence"), ("accuracy", "accuracy")]
                {
                    let (x, y) = (a[ours_field].as_f64().unwrap(), b[theirs_field].as_f64().unwrap());
                    assert_close(&format!("{name} bin {ours_field}"), x, y, CALIBRATION_RTOL);
                }
            }
        }
        checked += 1;
    }
    assert!(checked >= 4, "{checked} calibration cases");
}

#[test]
fn suspected_label_errors_are_cleanlabs_in_its_order() {
    let mut checked = 0;
    for case in cases().iter().filter(|c| c.get("suspects").is_some()) {
        let out = TempDir::new().unwrap();
        let report = run(case, &out);
        let name = case["name"].as_str().unwrap();
        let written = after(&args_of(case, &out), "--suspects-out");
        let ours = read_npy(std::path::Path::new(&written));
        let theirs = read_npy(&fixtures().join(case["suspects"].as_str().unwrap()));
        assert_eq!(ours, theirs, "{name}: the suspects and their order");
        let issues = &report["label_issues"];
        assert_eq!(issues["method"], "confident_learning");
        assert_eq!(issues["count"].as_u64(), Some(theirs.len() as u64), "{name}: count");
        let first = &issues["entries"][0];
        let reference = &case["label_issues"]["issues"][0];
        assert_eq!(first["flat_index"], reference["index"], "{name}");
        assert_eq!((&first["given"], &first["suggested"]), (&reference["given"], &reference["suggested"]));
        checked += 1;
    }
    assert!(checked >= 2, "{checked} label-issue cases");
}

#[test]
fn label_issues_on_a_sigmoid_loss_warn_and_find_nothing() {
    let output = losscope()
        .args(["bce", "examples/multilabel.npz", "--label-issues", "--format", "json"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report.get("label_issues").is_none());
    assert!(String::from_utf8_lossy(&output.stderr).contains("label issues are found for softmax losses"));
}
