//! `losscope ssd` against the references: every case of
//! fixtures/ssd/expected.json was computed by amdegroot/ssd.pytorch's
//! MultiBoxLoss (with its line-order fix) or torchvision's SSD.compute_loss
//! in float64 (fixtures/generate_ssd.py names the reference of each case).

use serde::Deserialize;
use serde_json::Value;

use crate::util::{PARITY_RTOL, SSD_GOLDEN, assert_close, json_report, losscope, reference_cases};

#[derive(Deserialize)]
struct Case {
    name: String,
    reference: String,
    inputs: serde_json::Map<String, Value>,
    params: serde_json::Map<String, Value>,
    value: Option<f64>,
    loc: Option<f64>,
    conf: Option<f64>,
    loc_sum: f64,
    conf_sum: f64,
    num_pos: u64,
    num_neg: u64,
    class_conf_sums: Vec<f64>,
    class_positives: Vec<u64>,
    image_loc_sums: Vec<f64>,
    image_conf_sums: Vec<f64>,
    image_positives: Vec<u64>,
    /// ssd.pytorch only: negatives that no float64 ranking can mine.
    never_mined: Option<u64>,
}

fn args(case: &Case) -> Vec<String> {
    let mut args = vec!["ssd".to_string()];
    for role in ["loc", "conf", "priors", "truths"] {
        let spec = case.inputs[role].as_str().unwrap();
        let spec = if spec.starts_with("ssd300-") { spec.to_string() } else { format!("ssd/{spec}") };
        args.extend([format!("--{role}"), spec]);
    }
    let p = &case.params;
    let number = |key: &str| p[key].as_f64().unwrap().to_string();
    args.extend(["--preset".into(), p["preset"].as_str().unwrap().into()]);
    args.extend(["--overlap".into(), number("overlap_threshold")]);
    args.extend(["--neg-pos".into(), number("neg_pos_ratio")]);
    args.extend(["--loc-weight".into(), number("loc_weight")]);
    let variances: Vec<String> = p["variances"].as_array().unwrap().iter().map(|v| v.to_string()).collect();
    args.extend(["--variance".into(), variances.join(",")]);
    if p["mining"] == false {
        args.push("--no-mining".into());
    }
    if p["conf_loss"] == "softmax-focal" {
        args.extend(["--conf-loss".into(), "focal".into()]);
        args.extend(["--alpha".into(), number("focal_alpha"), "--gamma".into(), number("focal_gamma")]);
    }
    args.extend(["--zero-positives".into(), p["zero_positives"].as_str().unwrap().into()]);
    args
}

/// Every figure the reference computes, through the JSON report: the value
/// and its parts, their sums, the counts, each class and each image.
#[test]
fn every_ssd_case_matches_its_reference() {
    let cases: Vec<Case> = reference_cases("ssd/expected.json");
    assert!(cases.len() >= 20);
    for case in &cases {
        let args = args(case);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let report = json_report(&refs);
        let what = |field: &str| format!("{} [{}] {field}", case.name, case.reference);
        let components = &report["components"];
        for (field, got, want) in [
            ("value", &report["value"], case.value),
            ("loc", &components["loc"], case.loc),
            ("conf", &components["conf"], case.conf),
            ("loc_sum", &components["loc_sum"], Some(case.loc_sum)),
            ("conf_sum", &components["conf_sum"], Some(case.conf_sum)),
        ] {
            match want {
                Some(want) => assert_close(&what(field), got.as_f64().unwrap(), want, PARITY_RTOL),
                None => assert!(got.is_null(), "{}: {got}", what(field)),
            }
        }
        assert_eq!(components["num_pos"], case.num_pos, "{}", what("num_pos"));
        assert_eq!(components["num_neg"], case.num_neg, "{}", what("num_neg"));
        if let Some(never_mined) = case.never_mined {
            assert_eq!(report["matching"]["never_mined"]["float64"], never_mined, "{}", what("never_mined"));
        }

        let classes = report["classes"].as_array().unwrap();
        assert_eq!(classes.len(), case.class_conf_sums.len(), "{}", what("classes"));
        for (c, row) in classes.iter().enumerate() {
            assert_close(
                &what(&format!("class {c} conf")),
                row["loss_sum"].as_f64().unwrap(),
                case.class_conf_sums[c],
                PARITY_RTOL,
            );
            assert_eq!(
                row["positives"],
                case.class_positives[c],
                "{}",
                what(&format!("class {c} positives"))
            );
        }
        // The per-class rows are the confidence part, one example per counted prior.
        let counted: u64 = classes.iter().map(|row| row["count"].as_u64().unwrap()).sum();
        assert_eq!(report["count"], counted, "{}", what("count"));
        // They add up to the confidence sum: to rounding against the report's
        // own figure, and within the parity tolerance against the reference.
        let class_conf: f64 = classes.iter().map(|row| row["loss_sum"].as_f64().unwrap()).sum();
        let conf_sum = components["conf_sum"].as_f64().unwrap();
        assert_close(&what("classes' conf total against conf_sum"), class_conf, conf_sum, 1e-12);
        assert_close(&what("classes' conf total"), class_conf, case.conf_sum, PARITY_RTOL);

        let images = report["images"].as_array().unwrap();
        assert_eq!(images.len(), case.image_loc_sums.len(), "{}", what("images"));
        for (b, image) in images.iter().enumerate() {
            let image_what = |field: &str| what(&format!("image {b} {field}"));
            assert_close(
                &image_what("loc"),
                image["loc_sum"].as_f64().unwrap(),
                case.image_loc_sums[b],
                PARITY_RTOL,
            );
            assert_close(
                &image_what("conf"),
                image["conf_sum"].as_f64().unwrap(),
                case.image_conf_sums[b],
                PARITY_RTOL,
            );
            assert_eq!(image["positives"], case.image_positives[b], "{}", image_what("positives"));
        }
    }
}

/// The golden case: ssd.pytorch gives loss_l 1.1676023468918615 and loss_c
/// 5.982879105488121 in float64.
#[test]
fn golden_case_and_its_sections() {
    let report = json_report(&SSD_GOLDEN);
    assert_close("loc", report["components"]["loc"].as_f64().unwrap(), 1.1676023468918615, 1e-12);
    assert_close("conf", report["components"]["conf"].as_f64().unwrap(), 5.982879105488121, 1e-12);
    assert_eq!(report["groups"]["mined_negatives"]["count"], 9);
    assert_eq!(report["images"].as_array().unwrap().len(), 2);
    assert_eq!(report["matching"]["boxes"], 3);
    assert!(report["difficulty"]["concentration"]["positives"].is_object());
}

#[test]
fn the_table_shows_groups_images_and_matching() {
    losscope()
        .args(["ssd", "--loc", "ssd/golden/loc.npy", "--conf", "ssd/golden/conf.npy"])
        .args(["--priors", "ssd/golden/priors.npy", "--truths", "ssd/golden/truths.json"])
        .assert()
        .success()
        .stdout(predicates::str::contains("unmined negatives (not in the loss)"))
        .stdout(predicates::str::contains("Images by share of the loss"))
        .stdout(predicates::str::contains("matched only by forcing"));
}

/// A batch without a box has no positive prior: the loss is 0 by default
/// (`--zero-positives zero`, as the SSD paper sets it) and null with
/// `--zero-positives nan`, with a warning either way.
#[test]
fn no_positive_prior_gives_zero_with_a_warning() {
    let no_boxes = [
        "ssd",
        "--loc",
        "ssd/no_boxes/loc.npy",
        "--conf",
        "ssd/no_boxes/conf.npy",
        "--priors",
        "ssd/no_boxes/priors.npy",
        "--truths",
        "ssd/no_boxes/truths.json",
    ];
    losscope()
        .args(no_boxes)
        .assert()
        .success()
        .stderr(predicates::str::contains("warning: no prior is positive (N = 0): the loss is 0"));

    let report = json_report(&no_boxes);
    assert_eq!(report["value"].as_f64(), Some(0.0), "value: {}", report["value"]);
    assert_eq!(report["components"]["loc"].as_f64(), Some(0.0));
    assert_eq!(report["components"]["conf"].as_f64(), Some(0.0));
    assert_eq!(report["components"]["num_pos"], 0);
    let warnings = report["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| w.as_str().unwrap().contains("the loss is 0, as the SSD paper")),
        "{warnings:?}"
    );

    let mut nan = no_boxes.to_vec();
    nan.extend(["--zero-positives", "nan"]);
    let report = json_report(&nan);
    assert!(report["value"].is_null(), "value with --zero-positives nan: {}", report["value"]);
    assert!(report["components"]["loc"].is_null() && report["components"]["conf"].is_null());
    let warnings = report["warnings"].as_array().unwrap();
    assert!(warnings.iter().any(|w| w.as_str().unwrap().contains("the loss is NaN")), "{warnings:?}");
}

#[test]
fn inconsistent_inputs_exit_two_naming_the_array() {
    let golden = ["--priors", "ssd/golden/priors.npy", "--truths", "ssd/golden/truths.json"];
    let output = losscope()
        .args(["ssd", "--loc", "ssd/golden/conf.npy", "--conf", "ssd/golden/conf.npy"])
        .args(golden)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("(loc)"));
    losscope()
        .args([
            "ssd",
            "--loc",
            "ssd/golden/loc.npy",
            "--conf",
            "ssd/golden/conf.npy",
            "--truths",
            "ssd/golden/truths.json",
        ])
        .args(["--priors", "ssd300-voc"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("8732"));
}

/// Boxes ssd.pytorch would turn into NaN or inf, labels beyond the classes,
/// and a batch size that disagrees: one line naming image and box, exit 2.
#[test]
fn bad_truths_name_the_image_and_box() {
    let cases = [
        (
            "[[[0.5,0.5,0.2,0.9,0]],[[0.25,0.25,0.75,0.75,1]]]",
            "image 0 box 0: box [0.5, 0.5, 0.2, 0.9] is flipped",
        ),
        (
            "[[[0.25,0.25,0.75,0.75,1]],[[0.1,0.1,0.1,0.9,0]]]",
            "image 1 box 0: box [0.1, 0.1, 0.1, 0.9] has zero area",
        ),
        ("[[[0.1,0.1,0.5,0.9,2]],[[0.25,0.25,0.75,0.75,1]]]", "image 0 box 0: label 2 is out of range"),
        ("[[[0.1,0.1,0.5,0.9,0]]]", "holds 1 images but loc [2, 8, 4] has 2"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, (truths, message)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("truths{i}.json"));
        std::fs::write(&path, truths).unwrap();
        let output = losscope()
            .args(["ssd", "--loc", "ssd/golden/loc.npy", "--conf", "ssd/golden/conf.npy"])
            .args(["--priors", "ssd/golden/priors.npy", "--truths"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{truths}");
        assert!(output.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("(truths)") && stderr.contains(message), "{stderr}");
    }
}
