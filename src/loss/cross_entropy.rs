//! Cross entropy with PyTorch's semantics (`F.cross_entropy`): class-index
//! targets with weight, ignore index and label smoothing, or probability
//! targets. The mean divides by Σ w[y] over counted targets for index
//! targets and by the number of examples for probability targets.

use std::ops::Range;

use crate::error::{Error, Origin, Result};
use crate::input::{Tensor, Values, shape_text};
use crate::report::{BaselineTotals, Totals};
use crate::tally::{Example, Grouping, Operand, Tally};

use super::{
    ClassLayout, NotClasses, PerExample, Reduction, check_class_weights, check_labels, predicts, read_row,
    resolve_axis,
};

/// The parameters of `F.cross_entropy`, plus where the classes sit.
#[derive(Debug, Clone)]
pub struct CrossEntropyParams {
    /// Per-class weights, and where they came from.
    pub weight: Option<(Vec<f64>, Origin)>,
    pub ignore_index: i64,
    /// ε in [0, 1].
    pub label_smoothing: f64,
    pub reduction: Reduction,
    /// The class axis; `None` takes PyTorch's (1, or 0 for a single example).
    pub class_axis: Option<i64>,
}

#[derive(Clone, Copy)]
enum Targets<'a> {
    /// One class index per example.
    Indices(Values<'a>),
    /// A probability per class, shaped like the logits.
    Probabilities(Values<'a>),
}

pub struct CrossEntropy<'a> {
    logits: Values<'a>,
    targets: Targets<'a>,
    layout: ClassLayout,
    weight: Option<Vec<f64>>,
    ignore_index: i64,
    smoothing: f64,
    reduction: Reduction,
    /// Facts about the inputs the user should hear of.
    pub warnings: Vec<String>,
}

impl<'a> CrossEntropy<'a> {
    pub fn new(logits: &'a Tensor, targets: &'a Tensor, params: &CrossEntropyParams) -> Result<Self> {
        if logits.shape.is_empty() {
            return Err(Error::input(&logits.origin, "is a scalar: logits need a class axis"));
        }
        let default_axis = if logits.shape.len() == 1 { 0 } else { 1 };
        let axis =
            resolve_axis(params.class_axis.unwrap_or(default_axis), logits.shape.len(), &logits.origin)?;
        let layout = ClassLayout::new(&logits.shape, axis);
        if layout.classes == 0 {
            return Err(Error::input(&logits.origin, format!("class axis {axis} has length 0")));
        }
        let mut index_shape = logits.shape.clone();
        index_shape.remove(axis);
        let mut warnings = Vec::new();
        let targets_view = if targets.shape == logits.shape {
            if !targets.dtype.is_float() {
                return Err(Error::input(
                    &targets.origin,
                    format!(
                        "{} targets shaped like the logits {}: probability targets must be float, class indices need shape {}",
                        targets.dtype.name(),
                        logits.shape_text(),
                        shape_text(&index_shape)
                    ),
                ));
            }
            if params.ignore_index >= 0 {
                return Err(Error::usage(format!(
                    "--ignore-index {} is not supported with probability targets (PyTorch refuses it too)",
                    params.ignore_index
                )));
            }
            Targets::Probabilities(targets.values())
        } else if targets.shape == index_shape {
            let ignored = NotClasses { labels: &[params.ignore_index], name: "the ignore index" };
            check_labels(targets, layout.classes, &ignored)?;
            if targets.dtype.is_float() {
                warnings.push(format!(
                    "targets are {} with integral values: read as class indices",
                    targets.dtype.name()
                ));
            }
            Targets::Indices(targets.values())
        } else {
            let class_last = targets.shape[..] == logits.shape[..logits.shape.len() - 1];
            let hint = if class_last && axis != logits.shape.len() - 1 {
                " (for class-last logits pass --class-axis -1)"
            } else {
                ""
            };
            return Err(Error::input(
                &targets.origin,
                format!(
                    "shape {} fits neither class indices {} nor probabilities {} for logits {} with class axis {axis}{hint}",
                    targets.shape_text(),
                    shape_text(&index_shape),
                    logits.shape_text(),
                    logits.shape_text()
                ),
            ));
        };
        if let Some((weight, origin)) = &params.weight {
            check_class_weights(weight, layout.classes, origin)?;
        }
        Ok(CrossEntropy {
            logits: logits.values(),
            targets: targets_view,
            layout,
            weight: params.weight.as_ref().map(|(w, _)| w.clone()),
            ignore_index: params.ignore_index,
            smoothing: params.label_smoothing,
            reduction: params.reduction,
            warnings,
        })
    }

    pub fn layout(&self) -> ClassLayout {
        self.layout
    }

    pub fn target_mode(&self) -> &'static str {
        match self.targets {
            Targets::Indices(_) => "indices",
            Targets::Probabilities(_) => "probabilities",
        }
    }

    #[inline(always)]
    fn class_weight(&self, class: usize) -> f64 {
        self.weight.as_ref().map_or(1.0, |w| w[class])
    }
}

/// The shifted log-sum-exp of a row: its maximum `m` and `ln Σ exp(x - m)`,
/// so that `log p_c = (x_c - m) - ln_sum`, the order PyTorch's log_softmax
/// uses.
#[inline(always)]
fn log_sum_exp(row: &[f64], max: f64) -> f64 {
    crate::math::sum_exp(row, max).ln()
}

fn first_max(row: &[f64]) -> usize {
    let mut best = 0;
    for (c, &v) in row.iter().enumerate().skip(1) {
        if v > row[best] {
            best = c;
        }
    }
    best
}

impl PerExample for CrossEntropy<'_> {
    fn units(&self) -> usize {
        self.layout.examples()
    }

    fn unit_cost(&self) -> usize {
        self.layout.classes
    }

    fn classes(&self) -> usize {
        self.layout.classes
    }

    fn grouping(&self) -> Grouping {
        Grouping::All
    }

    fn eval(&self, units: Range<usize>, tally: &mut Tally) {
        let classes = self.layout.classes;
        let eps = self.smoothing;
        let mut row = vec![0.0; classes];
        let mut target_row = vec![0.0; classes];
        for i in units {
            let (max, start, stride) = read_row(&self.logits, &self.layout, i, &mut row, tally);
            let ln_sum = log_sum_exp(&row, max);
            let log_p = |c: usize| (row[c] - max) - ln_sum;
            match self.targets {
                Targets::Indices(targets) => {
                    let label = targets.get_index(i).expect("targets were checked");
                    if label == self.ignore_index {
                        tally.ignored += 1;
                        continue;
                    }
                    let y = label as usize;
                    let w_y = self.class_weight(y);
                    let log_p_y = log_p(y);
                    let mut loss = -log_p_y * w_y;
                    if eps > 0.0 {
                        let smooth: f64 = -(0..classes).map(|c| log_p(c) * self.class_weight(c)).sum::<f64>();
                        loss = (1.0 - eps) * loss + smooth * (eps / classes as f64);
                    }
                    let p_t = log_p_y.exp();
                    tally.normalizer.add(w_y);
                    tally.add(Example {
                        class: y,
                        loss,
                        p_t,
                        correct: predicts(&row, max, y),
                        positive: false,
                        baseline: -log_p_y,
                        grad_norm: 1.0 - p_t,
                    });
                }
                Targets::Probabilities(targets) => {
                    targets.copy_to_f64(start, stride, &mut target_row);
                    tally.record_nonfinite(Operand::Targets, &target_row, start, stride);
                    let y = first_max(&target_row);
                    let mut weighted = 0.0;
                    let mut plain = 0.0;
                    for (c, &t) in target_row.iter().enumerate() {
                        plain += log_p(c) * t;
                        let t = if eps > 0.0 { t * (1.0 - eps) + eps / classes as f64 } else { t };
                        weighted += log_p(c) * t * self.class_weight(c);
                    }
                    let p_t = log_p(y).exp();
                    tally.normalizer.add(1.0);
                    tally.add(Example {
                        class: y,
                        loss: -weighted,
                        p_t,
                        correct: predicts(&row, max, y),
                        positive: false,
                        baseline: -plain,
                        grad_norm: 1.0 - p_t,
                    });
                }
            }
        }
    }

    fn totals(&self, tally: &Tally) -> Totals {
        let sum = tally.total();
        let normalizer = tally.normalizer.value();
        // Weights and smoothing change the loss; the plain CE of the same
        // examples divides by their count.
        let baseline = (self.weight.is_some() || self.smoothing > 0.0).then(|| {
            let counted: u64 = tally.classes.iter().map(|c| c.all.count).sum();
            let sum = tally.baseline_total();
            BaselineTotals { loss: "ce", value: self.reduction.apply(sum, counted as f64), sum }
        });
        Totals { value: self.reduction.apply(sum, normalizer), sum, normalizer, baseline }
    }
}
