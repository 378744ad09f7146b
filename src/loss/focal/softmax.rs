//! Softmax focal losses: one distribution per row and one class index per
//! row. Every preset takes its log-probabilities from the exact log-softmax
//! ([`crate::math::ln_sum_exp_into`]) and `1 - p` as `-expm1(log p)`, so the
//! modulating factor `(1 - p_y)^γ` keeps every digit when the target class
//! dominates (where `1 - exp(log p)` cancels); each reference's clamps are
//! then applied to those exact values (mmcv's floor at log(FLT_MIN), Keras's
//! clip to [1e-7, 1 - 1e-7]).

use crate::loss::{
    Labels, NotClasses, RowPass, SoftmaxRows, check_class_weights, class_labels, each_row, exp_row,
    prediction,
};
use std::ops::Range;

use crate::error::{Error, Result};
use crate::input::{Tensor, Values, shape_text};
use crate::loss::{ClassLayout, resolve_axis};
use crate::math::{Row, RowSoftmax};
use crate::tally::{Example, Tally};

use super::{Alpha, FocalParams, FocalPreset, Ignore, KERAS_EPSILON, power};

/// C's FLT_MIN: mmcv's kernel takes `log(max(p, FLT_MIN))`.
pub(super) const FLT_MIN: f64 = f32::MIN_POSITIVE as f64;

/// The per-row formula of each softmax reference.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Formula {
    /// `α_y·(-(1 - p_y)^γ·log p_y)` with `p_y = exp(log_softmax)`.
    Kornia,
    /// `-α_y·(1 - p_y)^γ·log(max(p_y, FLT_MIN))`.
    Mmcv,
    /// `Σ_c (1 - p_c)^γ·α_c·(-ỹ_c·log p_c)` over the softmax clipped to
    /// [1e-7, 1 - 1e-7], ỹ smoothed toward 1/C.
    Keras { smoothing: f64 },
    /// `-α_y·(1 - p_y)^γ·log p_y` with `p_y = exp(log_softmax)`.
    Uniform,
}

pub(super) struct SoftmaxFocal<'a> {
    logits: Values<'a>,
    labels: Labels,
    layout: ClassLayout,
    formula: Formula,
    gamma: f64,
    /// α of each class, as the preset spreads a scalar.
    alpha: Option<Vec<f64>>,
    weight: Option<Vec<f64>>,
    background_class: Option<usize>,
    /// Whether ignored examples leave the divisor.
    dropped: bool,
}

impl<'a> SoftmaxFocal<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        logits: &'a Tensor,
        targets: &'a Tensor,
        params: &FocalParams,
        preset: FocalPreset,
        alpha: &Alpha,
        gamma: f64,
        ignore: Ignore,
        warnings: &mut Vec<String>,
    ) -> Result<Self> {
        let default_axis = if logits.shape.len() == 1 { 0 } else { 1 };
        let axis =
            resolve_axis(params.class_axis.unwrap_or(default_axis), logits.shape.len(), &logits.origin)?;
        let layout = ClassLayout::new(&logits.shape, axis, &logits.origin)?;
        let classes = layout.classes;
        if classes == 0 {
            return Err(Error::input(&logits.origin, format!("class axis {axis} has length 0")));
        }
        let mut index_shape = logits.shape.clone();
        index_shape.remove(axis);
        if targets.shape != index_shape {
            return Err(Error::input(
                &targets.origin,
                format!(
                    "shape {} is not one class index per row {} for logits {} with class axis {axis}",
                    targets.shape_text(),
                    shape_text(&index_shape),
                    logits.shape_text()
                ),
            ));
        }
        let allowed =
            NotClasses { ignore: ignore.label, ignore_negative: ignore.negative, ..NotClasses::default() };
        let labels = class_labels(targets, classes, &allowed)?;
        if targets.dtype.is_float() {
            warnings.push(format!(
                "targets are {} with integral values: read as class indices",
                targets.dtype.name()
            ));
        }
        let alpha = match alpha {
            Alpha::None => None,
            Alpha::Scalar(a) if preset == FocalPreset::Kornia => {
                Some((0..classes).map(|c| if c == 0 { 1.0 - a } else { *a }).collect())
            }
            Alpha::Scalar(a) => Some(vec![*a; classes]),
            Alpha::PerClass(list) if list.len() != classes => {
                return Err(Error::usage(format!(
                    "per-class alpha has {} entries but the logits have {classes} classes",
                    list.len()
                )));
            }
            // Keras turns a list of Python floats into a float32 tensor,
            // whatever floatx is.
            Alpha::PerClass(list) if preset == FocalPreset::Keras => {
                warnings.push(
                    "Keras converts a per-class alpha list to float32: its entries are rounded to float32 as Keras rounds them".into(),
                );
                Some(list.iter().map(|&a| a as f32 as f64).collect())
            }
            Alpha::PerClass(list) => Some(list.clone()),
        };
        let formula = match preset {
            FocalPreset::Mmcv => Formula::Mmcv,
            FocalPreset::Keras => Formula::Keras { smoothing: params.label_smoothing },
            FocalPreset::Uniform => Formula::Uniform,
            _ => Formula::Kornia,
        };
        if let Some((weight, origin)) = &params.weight {
            warnings.extend(check_class_weights(weight, classes, origin)?);
        }
        Ok(SoftmaxFocal {
            logits: logits.values(),
            labels,
            layout,
            formula,
            gamma,
            alpha,
            weight: params.weight.as_ref().map(|(w, _)| w.clone()),
            background_class: params.background_class,
            dropped: ignore.dropped,
        })
    }

    /// Whether ignored examples leave the divisor.
    pub(super) fn drops_ignored(&self) -> bool {
        self.dropped
    }

    pub(super) fn units(&self) -> usize {
        self.layout.examples()
    }

    pub(super) fn classes(&self) -> usize {
        self.layout.classes
    }

    pub(super) fn class_axis(&self) -> usize {
        self.layout.axis
    }

    #[inline(always)]
    fn alpha_of(&self, class: usize) -> Option<f64> {
        self.alpha.as_ref().map(|a| a[class])
    }

    /// The row's loss, from its exact log-softmax: `(x_c - max) - ln_sum`,
    /// and `1 - p_y` (from `expm1`, exact also for p near 1).
    fn row_loss<R: Row>(&self, y: usize, row: R, max: f64, ln_sum: f64, one_minus_p_y: f64) -> f64 {
        let gamma = self.gamma;
        let log_p = |c: usize| (row.at(c) - max) - ln_sum;
        let log_p_y = log_p(y);
        let one_minus = |log_p: f64| -log_p.exp_m1();
        let loss = match self.formula {
            Formula::Kornia => {
                let loss = -power(one_minus_p_y, gamma) * log_p_y;
                self.alpha_of(y).map_or(loss, |a| a * loss)
            }
            Formula::Uniform => {
                let a = self.alpha_of(y).unwrap_or(1.0);
                -a * power(one_minus_p_y, gamma) * log_p_y
            }
            Formula::Mmcv => {
                // log(max(p, FLT_MIN)) = max(log p, log FLT_MIN).
                let floor = FLT_MIN.ln();
                let log_floored = if log_p_y > floor { log_p_y } else { floor };
                let a = self.alpha_of(y).unwrap_or(1.0);
                -a * power(one_minus_p_y, gamma) * log_floored
            }
            Formula::Keras { smoothing } => {
                // Keras clips p to [ε, 1 - ε]; its renormalisation by the
                // sum of the softmax is 1 up to rounding.
                let term = |c: usize, target: f64| {
                    let log_p = log_p(c);
                    let p = log_p.exp();
                    let (log_clipped, one_minus_clipped) = if p < KERAS_EPSILON {
                        (KERAS_EPSILON.ln(), 1.0 - KERAS_EPSILON)
                    } else if p > 1.0 - KERAS_EPSILON {
                        let clipped = 1.0 - KERAS_EPSILON;
                        (clipped.ln(), 1.0 - clipped)
                    } else {
                        (log_p, one_minus(log_p))
                    };
                    let modulating = power(one_minus_clipped, gamma);
                    let weighting = self.alpha_of(c).map_or(modulating, |a| modulating * a);
                    weighting * (-target * log_clipped)
                };
                if smoothing > 0.0 {
                    let classes = row.len();
                    let off = smoothing / classes as f64;
                    (0..classes)
                        .map(|c| {
                            let one_hot = if c == y { 1.0 } else { 0.0 };
                            term(c, one_hot * (1.0 - smoothing) + off)
                        })
                        .sum()
                } else {
                    term(y, 1.0)
                }
            }
        };
        self.weight.as_ref().map_or(loss, |w| w[y] * loss)
    }

    pub(super) fn eval(&self, units: Range<usize>, tally: &mut Tally) {
        each_row(&self.logits, &self.layout, units, tally, &mut FocalRows { loss: self });
    }
}

/// Softmax focal's pass over rows.
struct FocalRows<'a> {
    loss: &'a SoftmaxFocal<'a>,
}

impl RowPass for FocalRows<'_> {
    #[inline(always)]
    fn add_row<R: Row>(&mut self, i: usize, row: R, softmax: &RowSoftmax, tally: &mut Tally) {
        let focal = self.loss;
        let Some(y) = focal.labels.class(i) else {
            tally.ignored += 1;
            return;
        };
        // The same sum CE takes, so γ = 0 gives CE's very digits.
        let &RowSoftmax { max, exp_sum, ln_sum, .. } = softmax;
        // log-softmax in PyTorch's order: (x - max) - ln Σ exp(x - max).
        let log_p_y = (row.at(y) - max) - ln_sum;
        let p_t = log_p_y.exp();
        // 1 - p without the cancellation of p near 1, once for the loss and the report.
        let one_minus_p_t = -log_p_y.exp_m1();
        let predicted = prediction(row, softmax, y);
        tally.add(Example {
            class: y,
            loss: focal.row_loss(y, row, max, ln_sum, one_minus_p_t),
            p_t,
            correct: predicted == y,
            positive: focal.background_class.is_some_and(|b| b != y),
            baseline: -log_p_y,
            grad_norm: one_minus_p_t,
            index: i as u64,
            target: y as f64,
            predicted: predicted as u32,
            confidence: exp_sum.recip(),
        });
    }
}

impl SoftmaxRows for SoftmaxFocal<'_> {
    fn rows(&self) -> usize {
        self.layout.examples()
    }

    fn label(&self, row: usize) -> Option<usize> {
        self.labels.class(row)
    }

    fn exps(&self, row: usize, scratch: &mut [f64], out: &mut [f64]) -> f64 {
        exp_row(&self.logits, &self.layout, row, scratch, out)
    }
}
