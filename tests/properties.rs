//! Invariants of the losses and the report, over random inputs, through the
//! library API (no process per case).

use losscope::error::Origin;
use losscope::input::{Column, Tensor};
use losscope::loss::{
    Alpha, Bce, BceParams, CrossEntropy, CrossEntropyParams, Focal, FocalKind, FocalParams, PerExample,
    Reduction,
};
use losscope::report::{Header, Presentation, Report};
use losscope::run::analyse;
use losscope::settings::Analysis;
use proptest::prelude::*;

use crate::util::close;

fn tensor(role: &str, shape: Vec<usize>, column: Column) -> Tensor {
    Tensor::from_column(Origin::new(role, role), shape, column).expect("shape fits the data")
}

fn header(positives_per_class: bool) -> Header {
    Header { positives_per_class, ..Header::new("test", Presentation::default()) }
}

fn report_of(
    loss: &dyn PerExample,
    (x, t): (&Tensor, &Tensor),
    threads: Option<usize>,
    positives: bool,
) -> Report {
    let analysis = Analysis { threads, ..Analysis::default() };
    analyse(loss, [x, t], header(positives), &analysis).expect("valid inputs")
}

fn ce_report(logits: &[f64], labels: &[i64], classes: usize, weight: Option<Vec<f64>>, eps: f64) -> Report {
    let rows = labels.len();
    let x = tensor("logits", vec![rows, classes], Column::F64(logits.to_vec()));
    let y = tensor("targets", vec![rows], Column::I64(labels.to_vec()));
    let params = CrossEntropyParams {
        weight: weight.map(|w| (w, Origin::new("weight", "weight"))),
        ignore_index: -100,
        label_smoothing: eps,
        reduction: Reduction::Mean,
        class_axis: None,
    };
    let loss = CrossEntropy::new(&x, &y, &params).expect("valid CE inputs");
    report_of(&loss, (&x, &y), None, false)
}

/// Rows of logits with labels (about one in eight ignored).
fn ce_case() -> impl Strategy<Value = (usize, Vec<f64>, Vec<i64>)> {
    (1usize..7, 1usize..40).prop_flat_map(|(classes, rows)| {
        (
            Just(classes),
            prop::collection::vec(-30.0f64..30.0, rows * classes),
            prop::collection::vec(prop_oneof![7 => 0..classes as i64, 1 => Just(-100i64)], rows),
        )
    })
}

fn assert_breakdown_adds_up(report: &Report) {
    let Some(sum) = report.sum else { return };
    let class_sum: f64 = report.classes.iter().filter_map(|c| c.loss_sum).sum();
    assert!(close(class_sum, sum, 1e-12), "classes add to {class_sum}, sum is {sum}");
    if report.count > 0 && sum > 0.0 {
        let shares: f64 = report.classes.iter().filter_map(|c| c.loss_share).sum();
        assert!((shares - 1.0).abs() < 1e-12, "class shares add to {shares}");
        let d = &report.difficulty;
        let easy_hard = d.easy.loss_share.unwrap_or(0.0) + d.hard.loss_share.unwrap_or(0.0);
        assert!((easy_hard - 1.0).abs() < 1e-12, "easy + hard shares add to {easy_hard}");
        let bins: f64 = d.bins.iter().filter_map(|b| b.loss_share).sum();
        assert!((bins - 1.0).abs() < 1e-12, "bin shares add to {bins}");
    }
    let counted: u64 = report.classes.iter().map(|c| c.count).sum();
    assert_eq!(counted, report.count);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn ce_breakdown_adds_up_to_the_sum((classes, logits, labels) in ce_case(), eps in 0.0f64..1.0) {
        assert_breakdown_adds_up(&ce_report(&logits, &labels, classes, None, eps));
    }

    #[test]
    fn ce_ignores_a_constant_added_to_a_row((classes, logits, labels) in ce_case(), shift in -50.0f64..50.0) {
        let shifted: Vec<f64> = logits.iter().map(|x| x + shift).collect();
        let a = ce_report(&logits, &labels, classes, None, 0.1);
        let b = ce_report(&shifted, &labels, classes, None, 0.1);
        match (a.value, b.value) {
            (Some(a), Some(b)) => prop_assert!(close(a, b, 1e-9), "{a} vs {b}"),
            (a, b) => prop_assert_eq!(a, b),
        }
    }

    #[test]
    fn ce_weights_of_one_equal_no_weights((classes, logits, labels) in ce_case(), eps in 0.0f64..1.0) {
        let plain = ce_report(&logits, &labels, classes, None, eps);
        let ones = ce_report(&logits, &labels, classes, Some(vec![1.0; classes]), eps);
        prop_assert_eq!(plain.value, ones.value);
        prop_assert_eq!(plain.sum, ones.sum);
    }

    #[test]
    fn ce_row_order_changes_nothing((classes, logits, labels) in ce_case()) {
        let rows = labels.len();
        let reversed_logits: Vec<f64> =
            (0..rows).rev().flat_map(|r| logits[r * classes..(r + 1) * classes].to_vec()).collect();
        let reversed_labels: Vec<i64> = labels.iter().rev().copied().collect();
        let a = ce_report(&logits, &labels, classes, None, 0.0);
        let b = ce_report(&reversed_logits, &reversed_labels, classes, None, 0.0);
        match (a.value, b.value) {
            (Some(x), Some(y)) => prop_assert!(close(x, y, 1e-12), "{x} vs {y}"),
            (x, y) => prop_assert_eq!(x, y),
        }
        for (x, y) in a.classes.iter().zip(&b.classes) {
            prop_assert_eq!(x.count, y.count);
        }
    }

    #[test]
    fn bce_breakdown_adds_up_to_the_sum(
        (shape, logits, targets) in (1usize..5, 1usize..30).prop_flat_map(|(c, n)| (
            Just(vec![n, c]),
            prop::collection::vec(-50.0f64..50.0, n * c),
            prop::collection::vec(prop_oneof![Just(0.0f64), Just(1.0), 0.0f64..1.0], n * c),
        ))
    ) {
        let x = tensor("logits", shape.clone(), Column::F64(logits));
        let t = tensor("targets", shape, Column::F64(targets));
        let params = BceParams { weight: None, pos_weight: None, reduction: Reduction::Mean, class_axis: None };
        let loss = Bce::new(&x, &t, &params).expect("valid BCE inputs");
        let report = report_of(&loss, (&x, &t), None, true);
        assert_breakdown_adds_up(&report);
        for c in &report.classes {
            let parts = c.positive_loss_sum.unwrap() + c.negative_loss_sum.unwrap();
            prop_assert!(close(parts, c.loss_sum.unwrap(), 1e-12));
        }
    }
}

/// Fixed chunks merged in order: one thread and two give the same bytes.
#[test]
fn thread_count_does_not_change_the_report() {
    let (rows, classes) = (100_003, 7);
    let logits: Vec<f64> = (0..rows * classes).map(|i| ((i * 7919) % 1000) as f64 / 37.0 - 13.0).collect();
    let labels: Vec<i64> = (0..rows).map(|i| ((i * 31) % classes) as i64).collect();
    let x = tensor("logits", vec![rows, classes], Column::F64(logits));
    let y = tensor("targets", vec![rows], Column::I64(labels));
    let params = CrossEntropyParams {
        weight: Some((vec![1.0, 0.5, 2.0, 1.0, 3.0, 0.25, 1.0], Origin::new("weight", "weight"))),
        ignore_index: -100,
        label_smoothing: 0.1,
        reduction: Reduction::Mean,
        class_axis: None,
    };
    let loss = CrossEntropy::new(&x, &y, &params).unwrap();
    let one = serde_json::to_string(&report_of(&loss, (&x, &y), Some(1), false)).unwrap();
    let two = serde_json::to_string(&report_of(&loss, (&x, &y), Some(2), false)).unwrap();
    let three = serde_json::to_string(&report_of(&loss, (&x, &y), Some(3), false)).unwrap();
    assert_eq!(one, two);
    assert_eq!(one, three);
}

/// The same for the elementwise losses, whose blocks are tallied in lanes
/// (11 classes on the last axis) or one by one (a single class).
#[test]
fn thread_count_does_not_change_elementwise_reports() {
    let (rows, classes) = (30_011, 11);
    let n = rows * classes;
    let logits: Vec<f64> = (0..n).map(|i| ((i * 7919) % 1000) as f64 / 37.0 - 13.0).collect();
    let targets: Vec<f64> = (0..n).map(|i| if (i * 31) % 17 == 0 { 1.0 } else { 0.0 }).collect();
    let x = tensor("logits", vec![rows, classes], Column::F64(logits.clone()));
    let t = tensor("targets", vec![rows, classes], Column::F64(targets.clone()));
    let focal = Focal::new(&x, &t, &FocalParams::new(FocalKind::Sigmoid)).unwrap();
    let x1 = tensor("logits", vec![n], Column::F64(logits));
    let t1 = tensor("targets", vec![n], Column::F64(targets));
    let params = BceParams { weight: None, pos_weight: None, reduction: Reduction::Mean, class_axis: None };
    let bce = Bce::new(&x1, &t1, &params).unwrap();
    for (loss, inputs) in [(&focal as &dyn PerExample, (&x, &t)), (&bce, (&x1, &t1))] {
        let one = json_of(&report_of(loss, inputs, Some(1), true));
        assert_eq!(one, json_of(&report_of(loss, inputs, Some(2), true)));
        assert_eq!(one, json_of(&report_of(loss, inputs, Some(3), true)));
    }
}

fn json_of(report: &Report) -> String {
    serde_json::to_string(report).expect("serialises")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// A float32 dump and the float64 dump of the same values are the same input.
    #[test]
    fn float32_and_float64_dumps_of_the_same_values_agree((classes, logits, labels) in ce_case()) {
        let as_f32: Vec<f32> = logits.iter().map(|&x| x as f32).collect();
        let widened: Vec<f64> = as_f32.iter().map(|&x| x as f64).collect();
        let rows = labels.len();
        let y = tensor("targets", vec![rows], Column::I64(labels.clone()));
        let params = CrossEntropyParams {
            weight: None, ignore_index: -100, label_smoothing: 0.1, reduction: Reduction::Mean, class_axis: None,
        };
        let x32 = tensor("logits", vec![rows, classes], Column::F32(as_f32));
        let x64 = tensor("logits", vec![rows, classes], Column::F64(widened));
        let a = report_of(&CrossEntropy::new(&x32, &y, &params).unwrap(), (&x32, &y), None, false);
        let b = report_of(&CrossEntropy::new(&x64, &y, &params).unwrap(), (&x64, &y), None, false);
        prop_assert_eq!(json_of(&a), json_of(&b));
    }

    /// Focal loss with γ = 0 and α off is the plain loss, element by element
    /// (sigmoid: BCE) and row by row (softmax: CE).
    #[test]
    fn focal_without_focusing_is_the_plain_loss((classes, logits, labels) in ce_case()) {
        let rows = labels.len();
        let x = tensor("logits", vec![rows, classes], Column::F64(logits.clone()));
        let counted: Vec<i64> = labels.iter().map(|&l| if l < 0 { 0 } else { l }).collect();
        let y = tensor("targets", vec![rows], Column::I64(counted.clone()));
        let plain = FocalParams { gamma: Some(0.0), alpha: Some(Alpha::None), ..FocalParams::new(FocalKind::Softmax) };
        let focal = Focal::new(&x, &y, &plain).unwrap();
        let ce_params = CrossEntropyParams {
            weight: None, ignore_index: -100, label_smoothing: 0.0, reduction: Reduction::Sum, class_axis: None,
        };
        let ce = CrossEntropy::new(&x, &y, &ce_params).unwrap();
        let f = report_of(&focal, (&x, &y), None, false);
        let c = report_of(&ce, (&x, &y), None, false);
        prop_assert!(close(f.sum.unwrap(), c.sum.unwrap(), 1e-12), "{:?} vs {:?}", f.sum, c.sum);
        for (a, b) in f.classes.iter().zip(&c.classes) {
            prop_assert!(close(a.loss_sum.unwrap(), b.loss_sum.unwrap(), 1e-12), "class {}: {:?} vs {:?}", a.class, a.loss_sum, b.loss_sum);
        }

        let one_hot: Vec<f64> = (0..rows * classes).map(|i| (counted[i / classes] as usize == i % classes) as u8 as f64).collect();
        let t = tensor("targets", vec![rows, classes], Column::F64(one_hot));
        let sigmoid = FocalParams { gamma: Some(0.0), alpha: Some(Alpha::None), ..FocalParams::new(FocalKind::Sigmoid) };
        let focal = Focal::new(&x, &t, &sigmoid).unwrap();
        let bce = Bce::new(&x, &t, &BceParams { weight: None, pos_weight: None, reduction: Reduction::Mean, class_axis: None }).unwrap();
        let f = report_of(&focal, (&x, &t), None, true);
        let b = report_of(&bce, (&x, &t), None, true);
        prop_assert!(close(f.value.unwrap(), b.value.unwrap(), 1e-12), "{:?} vs {:?}", f.value, b.value);
    }
}
