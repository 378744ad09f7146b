//! Shards, partial reports and their merge: a run over several shards, and
//! the merge of partial reports in any order and any tree, give the report
//! of one pass over the concatenated data (integers identical, floats
//! within the bounds docs/distributed.md states).

use std::path::Path;

use losscope::error::Origin;
use losscope::input::{Column, Tensor};
use losscope::loss::{
    Bce, BceParams, CrossEntropy, CrossEntropyParams, Focal, FocalKind, FocalParams, PerExample, Reduction,
};
use losscope::partial::Partial;
use losscope::report::{Header, InputInfo, Presentation, Report};
use losscope::run::{analyse, partial_of};
use losscope::settings::Analysis;
use proptest::prelude::*;
use serde_json::Value;

use crate::util::{SSD_GOLDEN, assert_fits_schema, f64_npy, fixtures, i64_npy, losscope, npy};

/// Writes rows `rows` of a CE batch (`classes` wide) as `dir/name_logits.npy`
/// and `dir/name_targets.npy`.
fn write_ce_shard(dir: &Path, name: &str, logits: &[f64], targets: &[i64], classes: usize) {
    let rows = targets.len();
    std::fs::write(dir.join(format!("{name}_logits.npy")), f64_npy(&[rows, classes], logits)).unwrap();
    std::fs::write(dir.join(format!("{name}_targets.npy")), i64_npy(&[rows], targets)).unwrap();
}

/// A CE batch of `rows` rows over `classes` classes, a few targets ignored.
fn ce_batch(rows: usize, classes: usize) -> (Vec<f64>, Vec<i64>) {
    let logits = (0..rows * classes).map(|i| ((i * 7919 % 1013) as f64 / 101.3) - 5.0).collect();
    let targets = (0..rows).map(|r| if r % 17 == 3 { -100 } else { (r * 31 % classes) as i64 }).collect();
    (logits, targets)
}

fn run_json(args: &[&str], dir: &Path) -> Value {
    let out = losscope().current_dir(dir).args(args).args(["--format", "json"]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A one-line refusal: exit 2, nothing on stdout, the stderr line returned.
fn refusal(args: &[&str], dir: &Path) -> String {
    let out = losscope().current_dir(dir).args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    err
}

/// Relative distance in units of 2⁻⁵³.
fn ulps_apart(a: f64, b: f64) -> f64 {
    if a == b { 0.0 } else { (a - b).abs() / (a.abs().max(b.abs()) * f64::EPSILON / 2.0) }
}

/// Compares two reports: every integer and string identical, every float
/// within `ulps` units of 2⁻⁵³ of itself or of the report's sum (a
/// difference of two sums, such as a class's negative loss, is as exact as
/// the sums it is taken from), `inputs` and shard names aside.
fn assert_same_report(one: &Value, merged: &Value, ulps: f64, path: &str) {
    let scale = one["sum"].as_f64().unwrap_or(0.0).abs();
    assert_same_within(one, merged, ulps, scale, path);
}

fn assert_same_within(one: &Value, merged: &Value, ulps: f64, scale: f64, path: &str) {
    match (one, merged) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                if path.is_empty() && key == "inputs" {
                    continue;
                }
                let other = b.get(key).unwrap_or_else(|| panic!("{path}.{key} is missing"));
                assert_same_within(value, other, ulps, scale, &format!("{path}.{key}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{path}: lengths differ");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_same_within(x, y, ulps, scale, &format!("{path}[{i}]"));
            }
        }
        (Value::Number(a), Value::Number(b)) if a.is_f64() || b.is_f64() => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            let within = ulps_apart(a, b) <= ulps || (a - b).abs() <= ulps * scale * f64::EPSILON / 2.0;
            assert!(within, "{path}: {a} and {b} are {} ulps apart", ulps_apart(a, b));
        }
        (a, b) => assert_eq!(a, b, "{path}"),
    }
}

/// The sums merged in another grouping move by rounding only: the
/// compensated ones (value, sum, per-class sums) by a few ulps, the plain
/// diagnostic ones by at most about n ulps for n examples.
const PLAIN_SUM_ULPS: f64 = 2.0 * 400.0;

#[test]
fn globbed_shards_repeated_flags_and_merged_partials_give_the_one_pass_report() {
    let dir = tempfile::tempdir().unwrap();
    let classes = 5;
    let (logits, targets) = ce_batch(400, classes);
    write_ce_shard(dir.path(), "all", &logits, &targets, classes);
    let cuts = [0, 37, 150, 151, 400];
    for (k, w) in cuts.windows(2).enumerate() {
        let (a, b) = (w[0], w[1]);
        write_ce_shard(
            dir.path(),
            &format!("s{k}"),
            &logits[a * classes..b * classes],
            &targets[a..b],
            classes,
        );
    }
    let one = run_json(&["ce", "--logits", "all_logits.npy", "--targets", "all_targets.npy"], dir.path());
    let globbed = run_json(&["ce", "--logits", "s*_logits.npy", "--targets", "s*_targets.npy"], dir.path());
    assert_fits_schema(&globbed, &["ce", "(4 shards)"]);
    assert_same_report(&one, &globbed, PLAIN_SUM_ULPS, "");
    assert_eq!(globbed["value"], one["value"]);
    assert_eq!(globbed["inputs"].as_array().unwrap().len(), 8);
    let hardest = &globbed["examples"]["hardest"][0];
    let shard = hardest["shard"].as_u64().unwrap();
    assert_eq!(hardest["source"], format!("s{shard}_logits.npy"));
    assert!(
        (cuts[shard as usize]..cuts[shard as usize + 1])
            .contains(&(hardest["flat_index"].as_u64().unwrap() as usize))
    );

    // Repeated flags, given in another order, pair by sorted path too.
    let mut repeated = vec!["ce"];
    let names: Vec<String> =
        [3, 1, 0, 2].iter().flat_map(|k| [format!("s{k}_logits.npy"), format!("s{k}_targets.npy")]).collect();
    for pair in names.chunks(2) {
        repeated.extend(["--logits", &pair[0], "--targets", &pair[1]]);
    }
    assert_eq!(run_json(&repeated, dir.path()), globbed);

    // Partials merged in any order give the bytes of the sharded run.
    for k in 0..4 {
        let (l, t, p) = (format!("s{k}_logits.npy"), format!("s{k}_targets.npy"), format!("p{k}.lsp"));
        losscope()
            .current_dir(dir.path())
            .args(["ce", "--logits", &l, "--targets", &t, "--partial", "-o", &p])
            .assert()
            .success()
            .stdout("");
    }
    assert_eq!(run_json(&["merge", "p2.lsp", "p0.lsp", "p3.lsp", "p1.lsp"], dir.path()), globbed);
    assert_eq!(run_json(&["merge", "p*.lsp"], dir.path()), globbed);

    // A tree of merges: the same report within the bounds.
    losscope()
        .current_dir(dir.path())
        .args(["merge", "p3.lsp", "p0.lsp", "--partial", "-o", "a.lsp"])
        .assert()
        .success();
    losscope()
        .current_dir(dir.path())
        .args(["merge", "p1.lsp", "p2.lsp", "--partial", "-o", "b.lsp"])
        .assert()
        .success();
    let tree = run_json(&["merge", "b.lsp", "a.lsp"], dir.path());
    assert_same_report(&one, &tree, PLAIN_SUM_ULPS, "");
    assert_eq!(tree["count"], one["count"]);
}

#[test]
fn mismatched_shards_and_partials_are_refused_naming_what_differs() {
    let dir = tempfile::tempdir().unwrap();
    let (logits, targets) = ce_batch(30, 3);
    for k in 0..3 {
        write_ce_shard(
            dir.path(),
            &format!("s{k}"),
            &logits[k * 30..(k + 1) * 30],
            &targets[k * 10..(k + 1) * 10],
            3,
        );
    }
    std::fs::remove_file(dir.path().join("s2_targets.npy")).unwrap();
    let err = refusal(&["ce", "--logits", "s*_logits.npy", "--targets", "s*_targets.npy"], dir.path());
    assert!(err.contains("--targets names 2 files but --logits names 3"), "{err}");
    let err = refusal(&["ce", "--logits", "none*.npy", "--targets", "s0_targets.npy"], dir.path());
    assert!(err.contains("--logits none*.npy: no file matches"), "{err}");
    let err = refusal(
        &["ce", "--logits", "s[01]_logits.npy", "--targets", "s[01]_targets.npy", "--label-issues"],
        dir.path(),
    );
    assert!(err.contains("every example in one pass, but the inputs name 2 shards"), "{err}");

    let partial = |k: usize, extra: &[&str], out: &str| {
        let (l, t) = (format!("s{k}_logits.npy"), format!("s{k}_targets.npy"));
        let mut args = vec!["ce", "--logits", &l, "--targets", &t, "--partial", "-o", out];
        args.extend(extra);
        losscope().current_dir(dir.path()).args(&args).assert().success();
    };
    partial(0, &[], "p0.lsp");
    partial(1, &[], "p1.lsp");
    partial(1, &["--label-smoothing", "0.1"], "smooth.lsp");
    partial(1, &["--examples", "3"], "three.lsp");
    let err = refusal(&["merge", "p0.lsp", "smooth.lsp"], dir.path());
    assert!(
        err.contains("smooth.lsp differs in parameter label_smoothing: 0.1, where the others have 0.0"),
        "{err}"
    );
    let err = refusal(&["merge", "p0.lsp", "three.lsp"], dir.path());
    assert!(err.contains("three.lsp differs in its report settings"), "{err}");
    let err = refusal(&["merge", "p0.lsp", "p1.lsp", "p1.lsp"], dir.path());
    assert!(err.contains("shard s1_logits.npy is in both p1.lsp and p1.lsp"), "{err}");
    std::fs::write(dir.path().join("bce.lsp"), "").unwrap();
    let bce_logits = f64_npy(&[4], &[0.5, -1.0, 2.0, 0.0]);
    std::fs::write(dir.path().join("x.npy"), &bce_logits).unwrap();
    std::fs::write(dir.path().join("y.npy"), f64_npy(&[4], &[1.0, 0.0, 1.0, 0.0])).unwrap();
    losscope()
        .current_dir(dir.path())
        .args(["bce", "--logits", "x.npy", "--targets", "y.npy", "--partial", "-o", "bce.lsp"])
        .assert()
        .success();
    let err = refusal(&["merge", "p0.lsp", "bce.lsp"], dir.path());
    assert!(err.contains("bce.lsp differs in loss: \"bce\", where the others have \"ce\""), "{err}");

    // Not a partial, a damaged one, a cut one: one line each, never a panic.
    let err = refusal(&["merge", "s0_logits.npy"], dir.path());
    assert!(err.contains("s0_logits.npy (partial): not a losscope partial report"), "{err}");
    let bytes = std::fs::read(dir.path().join("p0.lsp")).unwrap();
    for cut in [16, 19, 20, 40, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(dir.path().join("cut.lsp"), &bytes[..cut]).unwrap();
        refusal(&["merge", "cut.lsp"], dir.path());
    }
    let mut version = bytes.clone();
    version[16] = 9;
    std::fs::write(dir.path().join("v9.lsp"), &version).unwrap();
    let err = refusal(&["merge", "v9.lsp"], dir.path());
    assert!(err.contains("partial format version 9"), "{err}");
    for at in (20..bytes.len()).step_by(97) {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0xA5;
        std::fs::write(dir.path().join("flip.lsp"), &flipped).unwrap();
        let out = losscope()
            .current_dir(dir.path())
            .args(["merge", "flip.lsp", "--format", "json"])
            .output()
            .unwrap();
        assert!(matches!(out.status.code(), Some(0 | 2)), "byte {at}: {out:?}");
    }
}

/// The rows of a float64 `.npy` file of shape `[B, …]`, one file each.
fn split_images(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let header = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let text = String::from_utf8_lossy(&bytes[..header]).to_string();
    let dims = text.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape: Vec<usize> = dims.split(',').filter_map(|d| d.trim().parse().ok()).collect();
    let per_image = bytes[header..].len() / shape[0];
    bytes[header..].chunks(per_image).map(|chunk| npy("<f8", &[&[1], &shape[1..]].concat(), chunk)).collect()
}

/// SSD over images in shards: every batch mines on its own, and the sums,
/// groups, per-image rows, matching and hardest priors merge.
#[test]
fn ssd_shards_and_partials_give_the_one_batch_report() {
    let dir = tempfile::tempdir().unwrap();
    let golden = fixtures().join("ssd/golden");
    let truths: Value =
        serde_json::from_str(&std::fs::read_to_string(golden.join("truths.json")).unwrap()).unwrap();
    for (role, parts) in
        [("loc", split_images(&golden.join("loc.npy"))), ("conf", split_images(&golden.join("conf.npy")))]
    {
        for (b, part) in parts.iter().enumerate() {
            std::fs::write(dir.path().join(format!("image{b}_{role}.npy")), part).unwrap();
        }
    }
    for (b, image) in truths.as_array().unwrap().iter().enumerate() {
        std::fs::write(
            dir.path().join(format!("image{b}_truths.json")),
            Value::Array(vec![image.clone()]).to_string(),
        )
        .unwrap();
    }
    let priors = golden.join("priors.npy");
    let priors = priors.to_str().unwrap();
    let mut one_args: Vec<String> = SSD_GOLDEN.iter().map(|a| a.to_string()).collect();
    for arg in &mut one_args[1..] {
        if !arg.starts_with("--") {
            *arg = fixtures().join(&*arg).display().to_string();
        }
    }
    let one_args: Vec<&str> = one_args.iter().map(String::as_str).collect();
    let one = run_json(&one_args, dir.path());
    let shards = [
        "ssd",
        "--loc",
        "image*_loc.npy",
        "--conf",
        "image*_conf.npy",
        "--truths",
        "image*_truths.json",
        "--priors",
        priors,
    ];
    let sharded = run_json(&shards, dir.path());
    assert_same_report(&one, &sharded, 8.0, "");
    for b in 0..2 {
        let (loc, conf, truths, part) = (
            format!("image{b}_loc.npy"),
            format!("image{b}_conf.npy"),
            format!("image{b}_truths.json"),
            format!("image{b}.lsp"),
        );
        let args = [
            "ssd",
            "--loc",
            &loc,
            "--conf",
            &conf,
            "--truths",
            &truths,
            "--priors",
            priors,
            "--partial",
            "-o",
            &part,
        ];
        losscope().current_dir(dir.path()).args(args).assert().success();
    }
    assert_eq!(run_json(&["merge", "image1.lsp", "image0.lsp"], dir.path()), sharded);
    assert_eq!(sharded["n_images"], one["n_images"]);
    assert_eq!(sharded["images"].as_array().unwrap().len(), 2);
    assert_fits_schema(&sharded, &shards);
}

fn tensor(role: &str, shape: Vec<usize>, column: Column) -> Tensor {
    Tensor::from_column(Origin::new(role, role), shape, column).expect("shape fits the data")
}

/// The header of shard `k`: its name orders the shards.
fn shard_header(loss: &'static str, k: usize) -> Header {
    let input = InputInfo {
        role: "logits".into(),
        source: format!("shard-{k:03}"),
        shape: vec![],
        dtype: "float64".into(),
        memory_mapped: false,
    };
    Header {
        inputs: vec![input],
        positives_per_class: loss != "ce",
        ..Header::new(loss, Presentation::default())
    }
}

/// Which loss a case evaluates.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Ce,
    Bce,
    SigmoidFocal,
}

/// The report of one pass over rows `rows` of a batch, or its partial.
fn evaluate(
    kind: Kind,
    logits: &[f64],
    labels: &[i64],
    classes: usize,
    rows: std::ops::Range<usize>,
    k: Option<usize>,
) -> (Option<Partial>, Option<Report>) {
    let n = rows.len();
    let x = tensor(
        "logits",
        vec![n, classes],
        Column::F64(logits[rows.start * classes..rows.end * classes].to_vec()),
    );
    let labels = &labels[rows];
    let y = tensor("targets", vec![n], Column::I64(labels.to_vec()));
    let one_hot: Vec<f64> =
        (0..n * classes).map(|i| (labels[i / classes] == (i % classes) as i64) as u8 as f64).collect();
    let t = tensor("targets", vec![n, classes], Column::F64(one_hot));
    let ce_params = CrossEntropyParams {
        weight: None,
        ignore_index: -100,
        label_smoothing: 0.0,
        reduction: Reduction::Mean,
        class_axis: None,
    };
    let bce_params =
        BceParams { weight: None, pos_weight: None, reduction: Reduction::Mean, class_axis: None };
    let (name, loss, targets): (&'static str, Box<dyn PerExample + '_>, &Tensor) = match kind {
        Kind::Ce => ("ce", Box::new(CrossEntropy::new(&x, &y, &ce_params).unwrap()), &y),
        Kind::Bce => ("bce", Box::new(Bce::new(&x, &t, &bce_params).unwrap()), &t),
        Kind::SigmoidFocal => {
            ("focal", Box::new(Focal::new(&x, &t, &FocalParams::new(FocalKind::Sigmoid)).unwrap()), &t)
        }
    };
    let analysis = Analysis { examples: 7, ..Analysis::default() };
    match k {
        Some(k) => {
            (Some(partial_of(loss.as_ref(), [&x, targets], shard_header(name, k), &analysis).unwrap()), None)
        }
        None => {
            (None, Some(analyse(loss.as_ref(), [&x, targets], shard_header(name, 0), &analysis).unwrap()))
        }
    }
}

/// A batch, cut points that split it, the order the parts are merged in
/// and how they are grouped into a tree.
fn split_case() -> impl Strategy<Value = (usize, Vec<f64>, Vec<i64>, Vec<usize>, Vec<usize>, usize)> {
    (1usize..6, 2usize..60).prop_flat_map(|(classes, rows)| {
        (
            Just(classes),
            prop::collection::vec(-20.0f64..20.0, rows * classes),
            prop::collection::vec(prop_oneof![6 => 0..classes as i64, 1 => Just(-100i64)], rows),
            prop::collection::btree_set(1..rows, 0..rows.min(6))
                .prop_map(|s| s.into_iter().collect::<Vec<_>>()),
            Just((0..7).collect::<Vec<usize>>()).prop_shuffle(),
            1usize..4,
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any split, merged in any order and in any tree of merges, gives the
    /// one-pass report: integers identical, floats within the bounds.
    #[test]
    fn merging_any_split_in_any_order_gives_the_one_pass_report(
        (classes, logits, labels, cuts, order, fan_in) in split_case(),
        kind in prop_oneof![Just(Kind::Ce), Just(Kind::Bce), Just(Kind::SigmoidFocal)],
    ) {
        let rows = labels.len();
        let bounds: Vec<usize> = std::iter::once(0).chain(cuts.iter().copied()).chain(std::iter::once(rows)).collect();
        let mut parts: Vec<(String, Partial)> = bounds
            .windows(2)
            .enumerate()
            .map(|(k, w)| (format!("part {k}"), evaluate(kind, &logits, &labels, classes, w[0]..w[1], Some(k)).0.unwrap()))
            .collect();
        // Shuffle by the drawn order, then merge in groups of `fan_in + 1`.
        let mut shuffled: Vec<(String, Partial)> = Vec::new();
        for &i in &order {
            if i < parts.len() {
                shuffled.push(parts[i].clone());
            }
        }
        parts = shuffled;
        while parts.len() > 1 {
            let group: Vec<(String, Partial)> = parts.drain(..(fan_in + 1).min(parts.len())).collect();
            let merged = Partial::merge(group).unwrap();
            parts.push(("merged".into(), merged));
        }
        let merged = parts.pop().unwrap().1.into_report();
        let one = evaluate(kind, &logits, &labels, classes, 0..rows, None).1.unwrap();
        let (merged, one) = (serde_json::to_value(&merged).unwrap(), serde_json::to_value(&one).unwrap());
        assert_same_report(&one, &merged, 4.0 * rows as f64 * classes as f64 + 8.0, "");
        // The compensated sums: within a few ulps.
        for field in ["value", "sum"] {
            if let (Some(a), Some(b)) = (one[field].as_f64(), merged[field].as_f64()) {
                prop_assert!(ulps_apart(a, b) <= 4.0, "{field}: {a} vs {b}");
            }
        }
    }
}

/// The map and the reduce on a real Dask cluster: two worker processes run
/// `--partial` over eight shards, and the merge equals one pass.
#[test]
#[ignore = "needs dask[distributed] and numpy; .ci/run installs them and runs this test"]
fn a_dask_cluster_maps_shards_and_their_merge_equals_one_pass() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dask/map_merge.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_losscope"))
        .output()
        .expect("python3 runs");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{log}");
    assert_eq!(log.matches("merged value").count(), 2, "{log}");
}
