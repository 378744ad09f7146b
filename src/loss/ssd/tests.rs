//! The reference fixtures (`fixtures/generate_ssd.py`) at the unit level, and
//! input errors.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::input::{self, Spec, Tensor};
use crate::loss::PerExample;
use crate::tally::{self, Grouping, Tally, TallySettings};

use super::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ssd")
}

fn spec(rel: &str) -> Spec {
    Spec::parse(&fixtures().join(rel).to_string_lossy())
}

fn params_of(p: &Value) -> SsdParams {
    let f = |key: &str| p[key].as_f64().unwrap();
    SsdParams {
        preset: match p["preset"].as_str().unwrap() {
            "ssd.pytorch" => Preset::SsdPytorch,
            _ => Preset::Torchvision,
        },
        overlap_threshold: f("overlap_threshold"),
        variances: [p["variances"][0].as_f64().unwrap(), p["variances"][1].as_f64().unwrap()],
        neg_pos_ratio: f("neg_pos_ratio"),
        mining: p["mining"].as_bool().unwrap(),
        loc_weight: f("loc_weight"),
        conf_loss: match p["conf_loss"].as_str().unwrap() {
            "ce" => ConfLoss::CrossEntropy,
            _ => ConfLoss::SoftmaxFocal { alpha: f("focal_alpha"), gamma: f("focal_gamma") },
        },
        zero_positives: match p["zero_positives"].as_str().unwrap() {
            "zero" => ZeroPositives::Zero,
            _ => ZeroPositives::Nan,
        },
    }
}

fn evaluate_case(inputs: &Value, params: &SsdParams) -> Result<Ssd> {
    let loc = input::load(&spec(inputs["loc"].as_str().unwrap()), "loc")?;
    let conf = input::load(&spec(inputs["conf"].as_str().unwrap()), "conf")?;
    let priors_text = inputs["priors"].as_str().unwrap();
    let priors = match PriorSet::from_name(priors_text) {
        Some(set) => Priors::builtin(set),
        None => Priors::from_tensor(&input::load(&spec(priors_text), "priors")?)?,
    };
    let truths = load_truths(&spec(inputs["truths"].as_str().unwrap()), None)?;
    Ssd::new(&loc, &conf, &priors, &truths, params)
}

fn tally_of(ssd: &Ssd) -> Tally {
    let settings = TallySettings {
        classes: ssd.classes(),
        easy_threshold: 0.5,
        bins: 10,
        grouping: Grouping::PositivesNegatives,
        ..Default::default()
    };
    tally::run(ssd.units(), ssd.unit_cost(), &settings, &|_| {}, |range, t| ssd.eval(range, t))
}

#[test]
fn builtin_priors_equal_prior_box_output() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap()).unwrap();
    for entry in expected["priors"].as_array().unwrap() {
        let set = PriorSet::from_name(entry["set"].as_str().unwrap()).unwrap();
        let reference =
            Priors::from_tensor(&input::load(&spec(entry["file"].as_str().unwrap()), "priors").unwrap())
                .unwrap();
        assert_eq!(Priors::builtin(set).centers(), reference.centers(), "{}", set.name());
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    let expected: Value = serde_json::from_str(&text).unwrap();
    let case =
        expected["cases"].as_array().unwrap().iter().find(|c| c["name"] == "ssd300_voc").unwrap().clone();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let ssd = evaluate_case(&case["inputs"], &params_of(&case["params"])).unwrap();
            let tally = tally_of(&ssd);
            let e = ssd.state();
            (
                e.totals().value.to_bits(),
                e.classes.iter().map(|c| c.conf_sum.value().to_bits()).collect::<Vec<_>>(),
                tally.concentration,
            )
        })
    };
    assert_eq!(run(1), run(3));
}

/// Writes a version 1.0 `.npy` file: `descr` as NumPy spells it, C order.
fn write_npy(path: &Path, descr: &str, shape: &[usize], payload: &[u8]) {
    let dims: Vec<String> = shape.iter().map(|d| format!("{d},")).collect();
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({}), }}", dims.join(" "));
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(payload);
    std::fs::write(path, bytes).unwrap();
}

/// A float64 array written to `dir/name` and loaded back.
fn npy(dir: &Path, name: &str, shape: &[usize], data: &[f64]) -> Tensor {
    let path = dir.join(name);
    write_npy(&path, "<f8", shape, &data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
    input::load(&Spec { path, key: None }, name.trim_end_matches(".npy")).unwrap()
}

#[test]
fn inconsistent_inputs_are_errors_that_say_where() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let loc = npy(d, "loc.npy", &[2, 4, 4], &[0.0; 32]);
    let conf = npy(d, "conf.npy", &[2, 4, 3], &[0.0; 24]);
    let priors = Priors::from_tensor(&npy(d, "priors.npy", &[4, 4], &[0.5; 16])).unwrap();
    let truths =
        |text: &str| truths::from_json(text.as_bytes(), None, crate::error::Origin::new("truths", "t.json"));
    let good = truths("[[[0, 0, 0.5, 0.5, 0]], []]").unwrap();
    let params = SsdParams::default();
    assert!(Ssd::new(&loc, &conf, &priors, &good, &params).is_ok());

    let three_priors = Priors::from_tensor(&npy(d, "p3.npy", &[3, 4], &[0.5; 12])).unwrap();
    for (got, expected) in [
        (
            message(Ssd::new(&loc, &conf, &three_priors, &good, &params)),
            "holds 3 priors but loc [2, 4, 4] has 4",
        ),
        (
            message(Ssd::new(&loc, &npy(d, "c5.npy", &[2, 5, 3], &[0.0; 30]), &priors, &good, &params)),
            "shape [2, 5, 3] does not match loc [2, 4, 4]",
        ),
        (
            message(Ssd::new(&loc, &npy(d, "c1.npy", &[1, 4, 3], &[0.0; 12]), &priors, &good, &params)),
            "does not match loc",
        ),
        (
            message(Ssd::new(&loc, &conf, &priors, &truths("[[]]").unwrap(), &params)),
            "holds 1 images but loc [2, 4, 4] has 2",
        ),
        (
            message(Ssd::new(
                &loc,
                &conf,
                &priors,
                &truths("[[], [[0, 0, 1, 1, 1], [0, 0, 1, 1, 2]]]").unwrap(),
                &params,
            )),
            "image 1 box 1: label 2 is out of range for 2 object classes",
        ),
        (
            message(Ssd::new(&npy(d, "l3.npy", &[2, 4, 3], &[0.0; 24]), &conf, &priors, &good, &params)),
            "shape [2, 4, 3] is not [B, P, 4]",
        ),
        (
            message(Ssd::new(&loc, &npy(d, "c1c.npy", &[2, 4, 1], &[0.0; 8]), &priors, &good, &params)),
            "has 1 classes",
        ),
        (message(Priors::from_tensor(&npy(d, "p43.npy", &[4, 3], &[0.5; 12])).map(|_| ())), "is not [P, 4]"),
        (
            message(Priors::from_tensor(&npy(d, "pz.npy", &[1, 4], &[0.5, 0.5, 0.0, 0.5])).map(|_| ())),
            "prior 0: size 0 × 0.5 is not positive",
        ),
        (
            message(
                truths::from_padded(&npy(
                    d,
                    "t.npy",
                    &[1, 2, 5],
                    &[0., 0., 1., 1., 0., 0., f64::NAN, 1., 1., 0.],
                ))
                .map(|_| ()),
            ),
            "image 0 box 1: coordinate NaN is not finite",
        ),
        (
            message(Ssd::new(
                &loc,
                &conf,
                &priors,
                &good,
                &SsdParams { overlap_threshold: 1.5, ..params.clone() },
            )),
            "overlap threshold 1.5 is outside [0, 1]",
        ),
    ] {
        assert!(got.contains(expected), "{got}\n  does not contain: {expected}");
    }
}

fn message<T>(r: Result<T>) -> String {
    r.err().expect("an error").to_string()
}

#[test]
fn padded_rows_and_npz_members_read_alike() {
    let dir = tempfile::tempdir().unwrap();
    let rows = [0.1, 0.1, 0.4, 0.5, 2.0, 0.0, 0.0, 0.0, 0.0, -1.0];
    let padded = truths::from_padded(&npy(dir.path(), "t.npy", &[1, 2, 5], &rows)).unwrap();
    assert_eq!(padded.images, [vec![GroundTruth { corners: [0.1, 0.1, 0.4, 0.5], label: 2, row: 0 }]]);
    assert_eq!(padded.padding_rows, 1);
    let npz = load_truths(&spec("ssd300_voc/truths.npz"), None).unwrap();
    assert_eq!(npz.images.iter().map(Vec::len).collect::<Vec<_>>(), [3, 1, 6, 2]);
    assert_eq!(
        load_truths(&spec("random_b/inputs.npz"), None).unwrap().images.len(),
        4,
        "its 'truths' member"
    );
    let neither = message(load_truths(&spec("ssd300_voc/inputs.npz"), None));
    assert!(neither.contains("expected one array per image named arr_0 … arr_1"), "{neither}");
}

#[test]
fn zero_positive_policies_and_warnings() {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    let expected: Value = serde_json::from_str(&text).unwrap();
    let find = |name: &str| {
        expected["cases"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone()
    };
    let case = find("no_boxes");
    let ssd = evaluate_case(&case["inputs"], &params_of(&case["params"])).unwrap();
    assert_eq!(ssd.state().totals().value, 0.0);
    assert!(ssd.state().warnings()[0].contains("the loss is 0, as the SSD paper sets it"));
    let nan = SsdParams { zero_positives: ZeroPositives::Nan, ..params_of(&case["params"]) };
    assert!(evaluate_case(&case["inputs"], &nan).unwrap().state().totals().value.is_nan());

    let case = find("cap_quirk");
    let e = evaluate_case(&case["inputs"], &params_of(&case["params"])).unwrap();
    assert!(e.state().warnings().iter().any(|w| w.starts_with("1 negative priors have every logit")));
    let case = find("partial_double_torchvision");
    let e = evaluate_case(&case["inputs"], &params_of(&case["params"])).unwrap();
    assert_eq!(e.state().groups.positives_counted_twice.count, 2);
    assert!(e.state().warnings().iter().any(|w| w.starts_with("2 positive priors are counted twice")));
}
