//! Cross entropy and BCE end to end through the library API: small shapes and
//! values are derived from the fuzz input (NaN, ±inf, huge and subnormal
//! logits included; labels with the ignore index or out of range; any label
//! smoothing in [0, 1]; optional weights), the loss is built with
//! `CrossEntropy::new` / `Bce::new`, and `run::analyse` makes the report,
//! which is then rendered in one of the formats.
//!
//! It must never panic. Whenever the loss accepts the inputs:
//! - `analyse` fails exactly when a logit or float target is NaN or ±inf and
//!   non-finite values are not allowed;
//! - counted plus ignored examples are every example;
//! - for finite inputs (and targets in [0, 1]) the per-class loss sums add
//!   up to `sum` within 1e-9 relative, and every share is in [0, 1].
#![no_main]

use libfuzzer_sys::fuzz_target;
use losscope::error::Origin;
use losscope::format::{Document, Format, Layout, exporter};
use losscope::input::{Column, Tensor};
use losscope::loss::{Bce, BceParams, CrossEntropy, CrossEntropyParams, PerExample, Reduction};
use losscope::report::{Header, Presentation, Report};
use losscope::run::analyse;
use losscope::settings::Analysis;

/// Reads the fuzz input front to back; past its end every byte is 0.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn bits(&mut self) -> u64 {
        let mut raw = [0u8; 8];
        for b in raw.iter_mut() {
            *b = self.byte();
        }
        u64::from_le_bytes(raw)
    }

    /// A logit. Tame: moderate values, now and then a huge or subnormal
    /// finite one. Wild: also raw bits (any f64, NaN payloads included) and
    /// NaN or ±inf.
    fn logit(&mut self, wild: bool) -> f64 {
        const FINITE: [f64; 13] = [
            f64::MAX,
            -f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            -5e-324,
            0.0,
            -0.0,
            1e300,
            -1e300,
            709.8,
            -745.2,
            1e16,
            -1e16,
        ];
        const NON_FINITE: [f64; 3] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY];
        match self.byte() % 16 {
            0 if wild => f64::from_bits(self.bits()),
            1 if wild => NON_FINITE[(self.byte() % 3) as usize],
            0 | 1 => FINITE[(self.byte() % 13) as usize],
            2 => (self.byte() as i8) as f64 * 64.0,
            _ => (self.byte() as i8) as f64 / 8.0,
        }
    }

    /// A probability or BCE target: in [0, 1], or when wild now and then any
    /// logit.
    fn unit(&mut self, wild: bool) -> f64 {
        match self.byte() {
            0..=15 if wild => self.logit(true),
            0..=15 => 0.5,
            16..=31 => 0.0,
            32..=47 => 1.0,
            _ => f64::from(self.byte()) / 255.0,
        }
    }

    /// A weight in [0, 4]; when bad, now and then negative or any logit.
    fn weight(&mut self, bad: bool) -> f64 {
        match self.byte() % 16 {
            0 if bad => self.logit(true),
            1 if bad => -1.0,
            1 => 0.0,
            _ => f64::from(self.byte()) / 64.0,
        }
    }
}

fn tensor(role: &str, shape: Vec<usize>, column: Column) -> Tensor {
    Tensor::from_column(Origin::new(role, role), shape, column).expect("the column fits the shape")
}

/// A report header; `positives_per_class` as the loss sets it (BCE's rows
/// carry positives, CE's do not).
fn header(positives_per_class: bool) -> Header {
    Header { positives_per_class, ..Header::new("fuzz", Presentation::default()) }
}

fn within(x: f64, lo: f64, hi: f64) -> bool {
    const SLACK: f64 = 1e-9;
    x >= lo - SLACK && x <= hi + SLACK
}

/// The invariants of a report of finite, well-formed inputs.
fn check_finite_report(report: &Report) {
    if let Some(sum) = report.sum {
        let parts: Vec<f64> = report.classes.iter().map(|c| c.loss_sum.expect("finite class sum")).collect();
        let total: f64 = parts.iter().sum();
        let tolerance = 1e-9 * sum.abs().max(total.abs());
        assert!((total - sum).abs() <= tolerance, "class sums {parts:?} add to {total}, sum is {sum}");
    }
    let shares = report
        .classes
        .iter()
        .map(|c| c.loss_share)
        .chain([report.difficulty.easy.loss_share, report.difficulty.hard.loss_share])
        .chain(report.difficulty.bins.iter().map(|b| b.loss_share))
        .chain(report.difficulty.gradient_norm_bins.iter().map(|b| b.loss_share))
        .chain(
            [
                &report.difficulty.concentration.all,
                &report.difficulty.concentration.positives,
                &report.difficulty.concentration.negatives,
            ]
            .into_iter()
            .flatten()
            .flat_map(|h| h.levels.iter().map(|l| l.loss_share)),
        );
    for share in shares.flatten() {
        assert!(within(share, 0.0, 1.0), "share {share} is outside [0, 1]");
    }
    for class in &report.classes {
        for (what, x) in
            [("frequency", class.frequency), ("mean_p_t", class.mean_p_t), ("accuracy", class.accuracy)]
        {
            if let Some(x) = x {
                assert!(within(x, 0.0, 1.0), "class {} {what} {x} is outside [0, 1]", class.class);
            }
        }
    }
    if let Some(baseline) = &report.baseline {
        let shares = baseline
            .classes
            .iter()
            .map(|c| c.loss_share)
            .chain([baseline.difficulty.easy.loss_share, baseline.difficulty.hard.loss_share])
            .chain(baseline.difficulty.bins.iter().map(|b| b.loss_share));
        for share in shares.flatten() {
            assert!(within(share, 0.0, 1.0), "baseline share {share} is outside [0, 1]");
        }
    }
}

fn render(report: &Report, input: &mut Input) {
    // One format per input keeps the target fast; the fuzzer reaches them all
    // (svg with each of the report's charts in turn).
    let choice = input.byte();
    let top = match choice % 4 {
        0 => None,
        t => Some(t as usize),
    };
    let format = [Format::Table, Format::Json, Format::Markdown, Format::Html, Format::Svg][(choice / 4 % 5) as usize];
    let charts = report.charts();
    let chart = charts.get(choice as usize % charts.len().max(1)).map(|c| c.name);
    std::hint::black_box(exporter(format, Layout { top, width: None }, chart).render(report));
}

fn column_values(column: &Column) -> Vec<f64> {
    match column {
        Column::F64(v) => v.clone(),
        Column::I64(v) => v.iter().map(|&x| x as f64).collect(),
        _ => unreachable!("only f64 and i64 columns are built here"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let flags = input.byte();
    let allow_nonfinite = flags & 1 != 0;
    let is_ce = flags & 2 == 0;
    let with_weight = flags & 4 != 0;
    let reduction = if flags & 8 != 0 { Reduction::Sum } else { Reduction::Mean };
    let shape_kind = (flags >> 4) % 4;
    // What may be out of contract: most inputs keep everything valid, so the
    // invariants of finite inputs are checked on large shapes too.
    let faults = input.byte();
    let wild_logits = faults & 1 != 0;
    let bad_labels = faults & 2 != 0;
    let bad_weights = faults & 4 != 0;
    let wild_targets = faults & 8 != 0;
    let classes = 1 + (input.byte() % 8) as usize;
    let rows = 1 + (input.byte() % 64) as usize;
    // Rank 1 (one example, or N binary predictions), [N, C], or [N, C, S].
    let shape = match shape_kind {
        0 => vec![classes],
        3 => {
            let spatial = 1 + (input.byte() % 4) as usize;
            vec![(rows / spatial).max(1), classes, spatial]
        }
        _ => vec![rows, classes],
    };
    let numel: usize = shape.iter().product();
    let easy_threshold = f64::from(input.byte()) / 255.0;
    let bins = 1 + (input.byte() % 32) as usize;
    let class_names = match input.byte() % 4 {
        0 => Some((0..1 + (input.byte() % 9) as usize).map(|c| format!("class {c}")).collect()),
        _ => None,
    };
    let analysis = Analysis { allow_nonfinite, easy_threshold, bins, class_names, ..Default::default() };

    let logit_values: Vec<f64> = (0..numel).map(|_| input.logit(wild_logits)).collect();
    let mut finite = logit_values.iter().all(|v| v.is_finite());
    let logits = tensor("logits", shape.clone(), Column::F64(logit_values));

    if is_ce {
        // Class axis: 0 for rank 1, else 1.
        let axis = if shape.len() == 1 { 0 } else { 1 };
        let mut index_shape = shape.clone();
        index_shape.remove(axis);
        let examples: usize = index_shape.iter().product();
        let ignore_index = match input.byte() % 4 {
            0 => -1,
            1 => 0,
            2 => classes as i64 - 1,
            _ => -100,
        };
        let label_smoothing = match input.byte() {
            0..=63 => 0.0,
            64 => 1.0,
            b => f64::from(b) / 255.0 * f64::from(input.byte()) / 255.0,
        };
        let weight = with_weight.then(|| {
            let w: Vec<f64> = (0..classes).map(|_| input.weight(bad_weights)).collect();
            (w, Origin::new("weight", "weight"))
        });
        let mut well_formed =
            weight.as_ref().is_none_or(|(w, _)| w.iter().all(|&x| x.is_finite() && x >= 0.0));
        let target_kind = input.byte() % 8;
        let targets = if target_kind == 0 {
            // Probabilities, shaped like the logits.
            let values: Vec<f64> = (0..numel).map(|_| input.unit(wild_targets)).collect();
            well_formed &= values.iter().all(|&t| (0.0..=1.0).contains(&t));
            Column::F64(values)
        } else {
            let labels: Vec<i64> = (0..examples)
                .map(|_| match input.byte() % 32 {
                    0 => ignore_index,
                    1 if bad_labels => classes as i64 + (input.byte() % 3) as i64,
                    2 if bad_labels => -1 - (input.byte() % 3) as i64,
                    _ => (input.byte() as usize % classes) as i64,
                })
                .collect();
            if target_kind == 1 {
                // Float class indices, sometimes not integral.
                let half = bad_labels && input.byte() % 8 == 0;
                Column::F64(labels.iter().map(|&l| l as f64 + if half { 0.5 } else { 0.0 }).collect())
            } else {
                Column::I64(labels)
            }
        };
        let float_targets = target_kind == 0;
        let target_values = column_values(&targets);
        if float_targets {
            finite &= target_values.iter().all(|v| v.is_finite());
        }
        let target_shape = if target_kind == 0 { shape.clone() } else { index_shape };
        let targets = tensor("targets", target_shape, targets);
        let params = CrossEntropyParams {
            weight,
            ignore_index: if target_kind == 0 { -100 } else { ignore_index },
            label_smoothing,
            reduction,
            class_axis: None,
        };
        let Ok(loss) = CrossEntropy::new(&logits, &targets, &params) else { return };
        let result = analyse(&loss, [&logits, &targets], header(false), &analysis);
        check(&loss, result, allow_nonfinite, finite, well_formed, &mut input);
    } else {
        let targets: Vec<f64> = (0..numel).map(|_| input.unit(wild_targets)).collect();
        let in_unit = targets.iter().all(|&t| (0.0..=1.0).contains(&t));
        finite &= targets.iter().all(|v| v.is_finite());
        let targets = tensor("targets", shape.clone(), Column::F64(targets));
        let last = *shape.last().expect("rank at least 1");
        let weight_len = if bad_weights && input.byte() % 8 == 0 { last + 1 } else { last };
        let weight =
            with_weight.then(|| (0..weight_len).map(|_| input.weight(bad_weights)).collect::<Vec<f64>>());
        let pos_weight = (flags & 64 != 0)
            .then(|| (0..weight_len).map(|_| input.weight(bad_weights)).collect::<Vec<f64>>());
        let well_formed = in_unit
            && [&weight, &pos_weight]
                .into_iter()
                .flatten()
                .all(|w| w.iter().all(|&x| x.is_finite() && x >= 0.0));
        let weight = weight.map(|w| tensor("weight", vec![w.len()], Column::F64(w)));
        let pos_weight = pos_weight.map(|w| tensor("pos_weight", vec![w.len()], Column::F64(w)));
        let params = BceParams {
            weight: weight.as_ref(),
            pos_weight: pos_weight.as_ref(),
            reduction,
            class_axis: None,
        };
        let Ok(loss) = Bce::new(&logits, &targets, &params) else { return };
        let result = analyse(&loss, [&logits, &targets], header(true), &analysis);
        check(&loss, result, allow_nonfinite, finite, well_formed, &mut input);
    }
});

fn check(
    loss: &dyn PerExample,
    result: losscope::error::Result<Report>,
    allow_nonfinite: bool,
    finite: bool,
    well_formed: bool,
    input: &mut Input,
) {
    match result {
        Err(e) => assert!(
            !allow_nonfinite && !finite,
            "analyse failed on {} inputs with allow_nonfinite={allow_nonfinite}: {e}",
            if finite { "finite" } else { "non-finite" }
        ),
        Ok(report) => {
            assert!(allow_nonfinite || finite, "non-finite inputs were accepted without allow_nonfinite");
            assert_eq!(report.classes.len(), loss.classes());
            assert_eq!(
                report.count + report.ignored,
                loss.units() as u64,
                "counted + ignored is not every example"
            );
            if finite && well_formed {
                check_finite_report(&report);
            }
            render(&report, input);
        }
    }
}
