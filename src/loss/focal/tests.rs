use serde_json::Value;

use super::*;
use crate::input::Column;
use crate::tally::{self, TallySettings};

fn tensor(role: &str, shape: &[usize], column: Column) -> Tensor {
    Tensor::from_column(Origin::new(role, "test"), shape.to_vec(), column).expect("shape fits the values")
}

fn logits(shape: &[usize], values: &[f64]) -> Tensor {
    tensor("logits", shape, Column::F64(values.to_vec()))
}

fn labels(values: &[i64]) -> Tensor {
    tensor("targets", &[values.len()], Column::I64(values.to_vec()))
}

/// The whole pass, cut into the driver's chunks.
fn run(loss: &Focal) -> Tally {
    let settings = TallySettings {
        classes: loss.classes(),
        easy_threshold: 0.5,
        bins: 10,
        grouping: loss.grouping(),
        ..Default::default()
    };
    tally::run(loss.units(), loss.unit_cost(), &settings, &|_| {}, |range, t| loss.eval(range, t))
}

/// One example's tally.
fn single(loss: &Focal, unit: usize) -> Tally {
    let settings = TallySettings {
        classes: loss.classes(),
        easy_threshold: 0.5,
        bins: 10,
        grouping: loss.grouping(),
        ..Default::default()
    };
    let mut tally = Tally::new(&settings);
    loss.eval(unit..unit + 1, &mut tally);
    tally
}

fn relative_error(got: f64, want: f64) -> f64 {
    if got == want { 0.0 } else { (got - want).abs() / got.abs().max(want.abs()) }
}

#[test]
fn gamma_zero_without_alpha_is_bce_per_element() {
    let x = logits(&[3, 4], &[2.0, -1.0, 0.25, 40.0, -3.0, 4.0, 0.0, -100.0, 7.5, -0.5, 1e-3, 12.0]);
    let t = tensor(
        "targets",
        &[3, 4],
        Column::F64(vec![1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.3, 0.0, 1.0, 0.0, 0.5, 0.9]),
    );
    for preset in [FocalPreset::Torchvision, FocalPreset::Fvcore, FocalPreset::Mmdet, FocalPreset::Seed] {
        let mut params = FocalParams::new(FocalKind::Sigmoid);
        params.preset = Some(preset);
        params.gamma = Some(0.0);
        params.alpha = Some(Alpha::None);
        let loss = Focal::new(&x, &t, &params).unwrap();
        for unit in 0..loss.units() {
            let tally = single(&loss, unit);
            assert_eq!(tally.total(), tally.baseline_total(), "{preset:?} element {unit}");
        }
    }
}

#[test]
fn gamma_zero_without_alpha_is_ce_per_row() {
    let x = logits(&[4, 3], &[2.0, 1.0, 0.25, 0.5, 2.5, -1.0, 0.0, 0.0, 0.0, 100.0, -2.0, 3.0]);
    let y = labels(&[0, 1, 2, 2]);
    for preset in [FocalPreset::Kornia, FocalPreset::Mmcv, FocalPreset::Uniform] {
        let mut params = FocalParams::new(FocalKind::Softmax);
        params.preset = Some(preset);
        params.gamma = Some(0.0);
        params.alpha = Some(Alpha::None);
        let loss = Focal::new(&x, &y, &params).unwrap();
        for unit in 0..loss.units() {
            let tally = single(&loss, unit);
            let (focal, ce) = (tally.total(), tally.baseline_total());
            if preset == FocalPreset::Mmcv && unit == 3 {
                // p_y = exp(-97) is below FLT_MIN: mmcv's log stops at log(FLT_MIN).
                assert_eq!((focal, ce), (-softmax::FLT_MIN.ln(), 97.0));
                continue;
            }
            // mmcv takes log(exp / sum) rather than log-softmax: equal to rounding.
            assert!(relative_error(focal, ce) <= 1e-15, "{preset:?} row {unit}: {focal} vs {ce}");
        }
    }
}

#[test]
fn chunks_starting_inside_a_row_read_the_right_labels() {
    // [2, 3, 2] logits with the classes on axis 1 and labels [2, 2].
    let values: Vec<f64> = (0..12).map(|i| (i as f64 - 5.5) * 0.7).collect();
    let x = logits(&[2, 3, 2], &values);
    let y = tensor("targets", &[2, 2], Column::I64(vec![0, -1, 2, 3]));
    let mut params = FocalParams::new(FocalKind::Sigmoid);
    params.class_axis = Some(1);
    let loss = Focal::new(&x, &y, &params).unwrap();
    let whole = run(&loss);
    let mut by_element = 0.0;
    for unit in 0..loss.units() {
        by_element += single(&loss, unit).total();
    }
    assert!(relative_error(whole.total(), by_element) <= 1e-15);
    // Element [1, 2, 0] is the one positive of row [1, 0] (label 2).
    assert_eq!(whole.classes.iter().map(|c| c.positives.count).sum::<u64>(), 2);
    assert_eq!(single(&loss, 10).classes[2].positives.count, 1);
    assert_eq!(single(&loss, 11).classes[2].positives.count, 0);
}

#[test]
fn the_preset_sets_defaults_and_explicit_values_win() {
    let x = logits(&[2, 3], &[2.0, -1.0, 0.25, -3.0, 4.0, 0.0]);
    let y = labels(&[0, 2]);
    let loss = Focal::new(&x, &y, &FocalParams::new(FocalKind::Softmax)).unwrap();
    let parameters = loss.parameters();
    assert_eq!(parameters["preset"], "kornia");
    assert_eq!(parameters["alpha"], 0.25);
    assert_eq!(parameters["gamma"], 2.0);
    assert_eq!(parameters["normalize"], "elements");
    assert_eq!(parameters["alpha_rule"], "1 - alpha for class 0, alpha for the others");
    assert_eq!(loss.grouping(), Grouping::All);

    let mut params = FocalParams::new(FocalKind::Sigmoid);
    params.preset = Some(FocalPreset::Fvcore);
    let t = tensor("targets", &[2, 3], Column::F64(vec![1.0, 0.0, 0.0, 0.0, 1.0, 1.0]));
    let loss = Focal::new(&x, &t, &params).unwrap();
    assert_eq!(loss.parameters()["alpha"], Value::Null);
    assert_eq!(loss.class_axis(), Some(1));
    params.alpha = Some(Alpha::Scalar(0.4));
    params.gamma = Some(1.5);
    let parameters = Focal::new(&x, &t, &params).unwrap().parameters();
    assert_eq!((parameters["alpha"].as_f64(), parameters["gamma"].as_f64()), (Some(0.4), Some(1.5)));

    // Keras's binary loss drops α without class balancing, and says so.
    params.preset = Some(FocalPreset::Keras);
    let loss = Focal::new(&x, &t, &params).unwrap();
    assert_eq!(loss.parameters()["alpha"], Value::Null);
    assert!(loss.warnings.iter().any(|w| w.contains("apply_class_balancing")));
    params.class_balancing = true;
    assert_eq!(Focal::new(&x, &t, &params).unwrap().parameters()["alpha"], 0.4);
}

#[test]
fn sigmoid_labels_take_minus_one_and_c_or_the_given_background() {
    let x = logits(&[3, 2], &[1.0, -1.0, 0.5, 2.0, -2.0, 0.0]);
    let y = labels(&[-1, 2, 1]);
    let loss = Focal::new(&x, &y, &FocalParams::new(FocalKind::Sigmoid)).unwrap();
    assert_eq!(loss.parameters()["background"], serde_json::json!([-1, 2]));
    assert_eq!(loss.target_mode(), "indices");
    assert_eq!(run(&loss).classes.iter().map(|c| c.positives.count).sum::<u64>(), 1);

    let mut params = FocalParams::new(FocalKind::Sigmoid);
    params.background = Some(255);
    assert!(Focal::new(&x, &labels(&[255, 0, 1]), &params).is_ok());
    let error = Focal::new(&x, &labels(&[-1, 0, 1]), &params).err().unwrap();
    assert!(error.to_string().contains("label -1 at index [0]"), "{error}");
}

fn usage_error(x: &Tensor, t: &Tensor, params: &FocalParams) -> String {
    match Focal::new(x, t, params) {
        Err(Error::Usage(message)) => message,
        Err(other) => panic!("not a usage error: {other}"),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn bad_parameters_are_usage_errors() {
    let x = logits(&[2, 3], &[2.0, -1.0, 0.25, -3.0, 4.0, 0.0]);
    let t = tensor("targets", &[2, 3], Column::F64(vec![1.0, 0.0, 0.0, 0.0, 1.0, 1.0]));
    let y = labels(&[0, 2]);
    let sigmoid = FocalParams::new(FocalKind::Sigmoid);
    let softmax = FocalParams::new(FocalKind::Softmax);
    let with = |base: &FocalParams, change: &dyn Fn(&mut FocalParams)| {
        let mut params = base.clone();
        change(&mut params);
        params
    };
    let cases: Vec<(FocalParams, &Tensor, &str)> = vec![
        (with(&sigmoid, &|p| p.alpha = Some(Alpha::Scalar(1.5))), &t, "outside [0, 1]"),
        (with(&sigmoid, &|p| p.alpha = Some(Alpha::Scalar(-1.0))), &t, "outside [0, 1]"),
        (with(&sigmoid, &|p| p.gamma = Some(-0.5)), &t, "gamma"),
        (with(&sigmoid, &|p| p.gamma = Some(f64::NAN)), &t, "gamma"),
        (with(&sigmoid, &|p| p.preset = Some(FocalPreset::Uniform)), &t, "softmax focal loss"),
        (with(&softmax, &|p| p.preset = Some(FocalPreset::Mmdet)), &y, "sigmoid focal loss"),
        (with(&softmax, &|p| p.alpha = Some(Alpha::PerClass(vec![0.1, 0.2]))), &y, "2 entries"),
        (with(&softmax, &|p| p.alpha = Some(Alpha::PerClass(vec![0.1, 0.2, 1.2]))), &y, "outside [0, 1]"),
        (with(&sigmoid, &|p| p.alpha = Some(Alpha::PerClass(vec![0.1, 0.2, 0.3]))), &t, "softmax"),
        (with(&sigmoid, &|p| p.label_smoothing = 0.1), &t, "Keras"),
        (with(&sigmoid, &|p| p.class_balancing = true), &t, "Keras"),
        (with(&sigmoid, &|p| p.avg_factor = Some(3.0)), &t, "mmdet"),
        (
            with(&sigmoid, &|p| {
                p.preset = Some(FocalPreset::Mmdet);
                p.avg_factor = Some(3.0);
                p.reduction = Some(Reduction::Sum);
            }),
            &t,
            "reduction sum",
        ),
        (with(&sigmoid, &|p| p.normalize = Some(Normalize::Number(0.0))), &t, "> 0"),
        (with(&softmax, &|p| p.normalize = Some(Normalize::Positives)), &y, "background class"),
        (with(&softmax, &|p| p.background_class = Some(3)), &y, "out of range"),
        (with(&sigmoid, &|p| p.background = Some(-1)), &t, "class-index targets"),
        (
            with(&sigmoid, &|p| p.weight = Some((vec![1.0; 3], Origin::new("weight", "w")))),
            &t,
            "no class weights",
        ),
        (
            with(&sigmoid, &|p| p.pos_weight = Some((vec![1.0; 3], Origin::new("pos_weight", "w")))),
            &t,
            "kornia",
        ),
        (
            with(&softmax, &|p| {
                p.preset = Some(FocalPreset::Mmcv);
                p.ignore_index = Some(255);
            }),
            &y,
            "not negative",
        ),
        (
            with(&softmax, &|p| {
                p.preset = Some(FocalPreset::Keras);
                p.weight = Some((vec![1.0; 3], Origin::new("weight", "w")));
            }),
            &y,
            "per-class alpha",
        ),
    ];
    for (params, targets, needle) in cases {
        let message = usage_error(&x, targets, &params);
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }
}

#[test]
fn bad_targets_are_input_errors() {
    let x = logits(&[2, 3], &[2.0, -1.0, 0.25, -3.0, 4.0, 0.0]);
    let cases = [
        (
            FocalKind::Softmax,
            labels(&[0, 3]),
            "label 3 at index [1] is neither one of the 3 classes nor the ignore index (-100)",
        ),
        (FocalKind::Softmax, labels(&[-1, 0]), "label -1 at index [0]"),
        (FocalKind::Sigmoid, labels(&[4, 0]), "label 4 at index [0] is neither"),
        (FocalKind::Softmax, labels(&[0, 1, 2]), "is not one class index per row [2]"),
        (FocalKind::Sigmoid, labels(&[0, 1, 2]), "fits neither"),
        (FocalKind::Softmax, tensor("targets", &[2], Column::F64(vec![0.5, 1.0])), "not a class index"),
    ];
    for (kind, targets, needle) in cases {
        match Focal::new(&x, &targets, &FocalParams::new(kind)) {
            Err(Error::Input { message, .. }) => {
                assert!(message.contains(needle), "{message:?} lacks {needle:?}")
            }
            Err(other) => panic!("not an input error: {other}"),
            Ok(_) => panic!("{kind:?} accepted {needle}"),
        }
    }
}

#[test]
fn alpha_and_normalize_parse_from_text() {
    assert_eq!("none".parse::<Alpha>().unwrap(), Alpha::None);
    assert_eq!("-1".parse::<Alpha>().unwrap(), Alpha::None);
    assert_eq!("-1.0".parse::<Alpha>().unwrap(), Alpha::None);
    assert_eq!("0.25".parse::<Alpha>().unwrap(), Alpha::Scalar(0.25));
    assert_eq!("0.1, 0.3,0.6".parse::<Alpha>().unwrap(), Alpha::PerClass(vec![0.1, 0.3, 0.6]));
    assert!(matches!("a quarter".parse::<Alpha>(), Err(Error::Usage(_))));
    assert_eq!("Positives".parse::<Normalize>().unwrap(), Normalize::Positives);
    assert_eq!("rows".parse::<Normalize>().unwrap(), Normalize::Rows);
    assert_eq!("elements".parse::<Normalize>().unwrap(), Normalize::Elements);
    assert_eq!("128".parse::<Normalize>().unwrap(), Normalize::Number(128.0));
    assert!(matches!("anchors".parse::<Normalize>(), Err(Error::Usage(_))));
}

#[test]
fn the_baseline_is_the_plain_loss_of_the_same_examples() {
    let x = logits(&[2, 3], &[2.0, 1.0, 0.25, 0.5, 2.5, -1.0]);
    let y = labels(&[0, 1]);
    let mut params = FocalParams::new(FocalKind::Softmax);
    params.background_class = Some(0);
    let loss = Focal::new(&x, &y, &params).unwrap();
    assert_eq!(loss.grouping(), Grouping::PositivesNegatives);
    let tally = run(&loss);
    let baseline = loss.reducer().totals(&tally).baseline.expect("focal losses carry a baseline");
    // F.cross_entropy of the same rows (the first two rows of the notes' golden x).
    let ce = (0.43285546687876886 / 1.0 + 0.30635641424457655 / 2.0) / 2.0;
    assert_eq!(baseline.loss, "ce");
    assert!(relative_error(baseline.value, ce) < 1e-15, "{} vs {ce}", baseline.value);
}

#[test]
fn ignored_examples_leave_or_stay_in_the_divisor_as_the_preset_says() {
    let x = logits(&[4, 3], &[2.0, 1.0, 0.25, 0.5, 2.5, -1.0, 0.0, 0.0, 0.0, 1.0, -2.0, 3.0]);
    let y = labels(&[0, 255, 2, 1]);
    let mut params = FocalParams::new(FocalKind::Softmax);
    params.ignore_index = Some(255);
    // kornia: the ignored row adds 0 and stays in N·C.
    let kornia = Focal::new(&x, &y, &params).unwrap();
    let tally = run(&kornia);
    assert_eq!((tally.ignored, kornia.reducer().totals(&tally).normalizer), (1, 12.0));
    // The snippet: the ignored row is dropped, from the sum and from N.
    params.preset = Some(FocalPreset::Uniform);
    let uniform = Focal::new(&x, &y, &params).unwrap();
    let tally = run(&uniform);
    assert_eq!((tally.ignored, uniform.reducer().totals(&tally).normalizer), (1, 3.0));
    assert_eq!(uniform.parameters()["ignore_rule"], "dropped");
    // mmcv: every negative label is ignored, and N stays 4.
    let mut params = FocalParams::new(FocalKind::Softmax);
    params.preset = Some(FocalPreset::Mmcv);
    let negative = labels(&[0, -1, -7, 1]);
    let mmcv = Focal::new(&x, &negative, &params).unwrap();
    let tally = run(&mmcv);
    assert_eq!((tally.ignored, mmcv.reducer().totals(&tally).normalizer), (2, 4.0));
}

#[test]
fn kornia_binary_weights_run_along_dim_1() {
    // [N, C, L] = [1, 2, 3]: pos_weight and weight are one per class of dim 1.
    let x = logits(&[1, 2, 3], &[1.0, -1.0, 2.0, 0.5, -0.5, 3.0]);
    let t = tensor("targets", &[1, 2, 3], Column::F64(vec![1.0, 0.0, 1.0, 1.0, 1.0, 0.0]));
    let mut params = FocalParams::new(FocalKind::Sigmoid);
    params.preset = Some(FocalPreset::Kornia);
    let plain = run(&Focal::new(&x, &t, &params).unwrap());
    assert_eq!(Focal::new(&x, &t, &params).unwrap().class_axis(), Some(1));
    params.weight = Some((vec![2.0, 0.5], Origin::new("weight", "w")));
    let weighted = run(&Focal::new(&x, &t, &params).unwrap());
    for class in 0..2 {
        let (w, p) = (weighted.classes[class].all.loss.value(), plain.classes[class].all.loss.value());
        assert!(relative_error(w, p * [2.0, 0.5][class]) < 1e-15, "class {class}");
    }
    // A pos_weight of 1 changes nothing; 3 triples the positive terms only.
    params.weight = None;
    params.pos_weight = Some((vec![1.0, 1.0], Origin::new("pos_weight", "pw")));
    assert_eq!(run(&Focal::new(&x, &t, &params).unwrap()).total(), plain.total());
}

#[test]
fn sigmoid_tails_keep_their_digits() {
    // x = -700 with t = 0: bce = log1p(e^-700), 1 - p_t = σ(-700)... both e^-700.
    let x = logits(&[1, 2], &[-700.0, 40.0]);
    let t = tensor("targets", &[1, 2], Column::F64(vec![0.0, 1.0]));
    let mut params = FocalParams::new(FocalKind::Sigmoid);
    params.gamma = Some(0.5);
    let loss = Focal::new(&x, &t, &params).unwrap();
    let tally = run(&loss);
    let tiny = (-700f64).exp();
    assert!(relative_error(tally.classes[0].all.loss.value(), 0.75 * tiny.sqrt() * tiny) < 1e-13);
    let e = (-40f64).exp();
    assert!(relative_error(tally.classes[1].all.loss.value(), 0.25 * e.sqrt() * e) < 1e-13);
    assert!(relative_error(tally.baseline_total(), tiny + e) < 1e-13);
}

#[test]
fn mmcv_sigmoid_rounds_one_minus_p_as_its_kernel_does() {
    // From x ≈ 37, 1 - p is 0 in float64 and the log stops at log(FLT_MIN).
    let x = logits(&[1, 3], &[40.0, 20.0, -40.0]);
    let mut params = FocalParams::new(FocalKind::Sigmoid);
    params.preset = Some(FocalPreset::Mmcv);
    params.gamma = Some(0.0);
    let y = labels(&[2]);
    let loss = Focal::new(&x, &y, &params).unwrap();
    let tally = run(&loss);
    assert_eq!(tally.classes[0].all.loss.value(), 0.75 * -softmax::FLT_MIN.ln());
    let p20 = 1.0 / (1.0 + (-20f64).exp());
    assert_eq!(tally.classes[1].all.loss.value(), -(0.75 * (1.0 - p20).ln()));
    // α reaches the kernel as a C++ float.
    params.alpha = Some(Alpha::Scalar(0.4));
    assert_eq!(Focal::new(&x, &y, &params).unwrap().parameters()["alpha"], 0.4000000059604645);
}

#[test]
fn every_build_of_the_sigmoid_pass_gives_the_same_bits() {
    use crate::math::{Level, widest_at};
    let (rows, classes) = (37, 11);
    let mut x: Vec<f64> = (0..rows * classes).map(|i| ((i * 7919) % 401) as f64 / 20.0 - 10.0).collect();
    // Non-finite logits and targets outside [0, 1] are counted too.
    (x[40], x[41], x[300]) = (f64::NAN, f64::INFINITY, f64::NEG_INFINITY);
    let soft: Vec<f64> = (0..rows * classes).map(|i| [0.0, 1.0, 0.25, 0.0, 0.9, 1.5][i % 6]).collect();
    let row_labels: Vec<i64> = (0..rows as i64).map(|r| (r * 5) % classes as i64).collect();
    let x = logits(&[rows, classes], &x);
    let (soft, row_labels) = (tensor("targets", &[rows, classes], Column::F64(soft)), labels(&row_labels));
    for preset in [
        FocalPreset::Torchvision,
        FocalPreset::Fvcore,
        FocalPreset::Mmdet,
        FocalPreset::Keras,
        FocalPreset::Seed,
        FocalPreset::Kornia,
        FocalPreset::Mmcv,
    ] {
        for gamma in [2.0, 1.5] {
            let mut params = FocalParams::new(FocalKind::Sigmoid);
            params.preset = Some(preset);
            params.gamma = Some(gamma);
            let loss =
                Focal::new(&x, &soft, &params).or_else(|_| Focal::new(&x, &row_labels, &params)).unwrap();
            let Pass::Sigmoid(pass) = &loss.pass else { panic!("{preset:?} is a sigmoid preset") };
            let settings = TallySettings {
                classes,
                easy_threshold: 0.5,
                bins: 10,
                grouping: loss.grouping(),
                findings: tally::findings::FindingSettings {
                    kind: tally::findings::ExampleKind::Element,
                    examples: 5,
                    calibration_edges: tally::findings::linspace_edges(15),
                    confusion: false,
                    classes,
                },
                ..Default::default()
            };
            let tally_at = |level| {
                let mut tally = Tally::new(&settings);
                widest_at(
                    level,
                    #[inline(always)]
                    || pass.eval_blocks(0..rows * classes, &mut tally),
                );
                serde_json::to_string(&tally).expect("a tally serialises")
            };
            let portable = tally_at(Level::Portable);
            for level in [Level::Avx2, Level::detect()] {
                assert_eq!(tally_at(level), portable, "{preset:?}, gamma {gamma}, {level:?}");
            }
        }
    }
}
