//! The confidence loss of one prior: softmax CE or softmax focal against the
//! prior's matched class, and ssd.pytorch's global-max mining score.

use crate::input::Values;
use crate::math::{RowSoftmax, padded_len, softmax_rows};

use super::ConfLoss;

/// Above this, `exp` is a normal double: no precision is lost in the
/// subnormals, and `ln(exp(x) · s) = x + ln s` up to rounding.
const SMALLEST_NORMAL_EXP: f64 = -708.0;

/// Scratch space for [`reduce_rows`], reused across the images a thread
/// evaluates.
#[derive(Default)]
pub struct RowScratch {
    terms: Vec<f64>,
    /// Rows of a type the kernels do not read in place, as float64.
    wide: Vec<f64>,
}

/// The softmax summaries of `out.len()` consecutive rows of `conf` (rows of
/// `width`), the first starting at element `start`: float32, float64 and
/// bfloat16 rows are read in place, others copied to float64 first.
pub fn reduce_rows(
    conf: &Values,
    start: usize,
    width: usize,
    scratch: &mut RowScratch,
    out: &mut [RowSoftmax],
) {
    let len = width * out.len();
    scratch.terms.resize(padded_len(width), 0.0);
    match conf {
        Values::F32(v) => softmax_rows(&v[start..][..len], width, &mut scratch.terms, out),
        Values::F64(v) => softmax_rows(&v[start..][..len], width, &mut scratch.terms, out),
        Values::BF16(v) => softmax_rows(&v[start..][..len], width, &mut scratch.terms, out),
        _ => {
            scratch.wide.resize(len, 0.0);
            conf.copy_to_f64(start, 1, &mut scratch.wide);
            softmax_rows(&scratch.wide[..], width, &mut scratch.terms, out);
        }
    }
}

/// `log p` of the class whose logit is `logit`, in log_softmax's order:
/// `(x_c - max) - ln Σ`.
#[inline]
pub fn log_p(row: &RowSoftmax, logit: f64) -> f64 {
    (logit - row.max) - row.ln_sum
}

/// ssd.pytorch's mining loss of a negative whose background logit is
/// `background`, `log_sum_exp(x) - x_0`, where `log_sum_exp` subtracts the
/// batch's largest logit, not the row's: a row far below it underflows to
/// `ln 0 = -inf` and is never mined. Its sum `Σ exp(x - batch_max)` is the
/// row's sum times `exp(max - batch_max)`, equal up to rounding and zero
/// exactly when every term underflows; while that factor is a normal
/// number, its logarithm is just the gap.
#[inline]
pub fn global_max_mining_score(row: &RowSoftmax, background: f64, batch_max: f64) -> f64 {
    let gap = row.max - batch_max;
    let ln_sum = if gap > SMALLEST_NORMAL_EXP { gap + row.ln_sum } else { (gap.exp() * row.exp_sum).ln() };
    ln_sum + batch_max - background
}

impl ConfLoss {
    /// The loss of a prior whose class has log-probability `log_p`.
    #[inline]
    pub fn loss(&self, log_p: f64) -> f64 {
        match *self {
            ConfLoss::CrossEntropy => -log_p,
            // -α (1 - p)^γ log p, with 1 - p from expm1 so easy priors keep
            // their (tiny) loss instead of rounding to 0.
            ConfLoss::SoftmaxFocal { alpha, gamma } => alpha * (-log_p.exp_m1()).powf(gamma) * -log_p,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reduce(x: &[f64]) -> RowSoftmax {
        let mut out = [RowSoftmax::default()];
        reduce_rows(&Values::F64(x), 0, x.len(), &mut RowScratch::default(), &mut out);
        out[0]
    }

    #[test]
    fn ce_focal_and_prediction_of_a_row() {
        let x = [2.0, 1.0, 0.25];
        let row = reduce(&x);
        let lse = (2f64.exp() + 1f64.exp() + 0.25f64.exp()).ln();
        assert!((ConfLoss::CrossEntropy.loss(log_p(&row, x[1])) - (lse - 1.0)).abs() < 1e-15);
        let focal = ConfLoss::SoftmaxFocal { alpha: 0.25, gamma: 2.0 }.loss(log_p(&row, x[0]));
        let p = (2.0 - lse).exp();
        assert!((focal - 0.25 * (1.0 - p).powi(2) * (lse - 2.0)).abs() < 1e-15);
        assert_eq!(row.argmax, Some(0));
        assert_eq!(reduce(&[1.0, 3.0, 3.0]).argmax, Some(1));
        assert!(!reduce(&[0.0, f64::NAN]).finite);
    }

    #[test]
    fn rows_read_in_place_or_copied_give_the_same_summaries() {
        let x: Vec<f32> = (0..21 * 5).map(|i| ((i * 37) % 23) as f32 / 3.0 - 4.0).collect();
        let wide: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let half: Vec<half::f16> = x.iter().map(|&v| half::f16::from_f32(v)).collect();
        let half_wide: Vec<f64> = half.iter().map(|v| v.to_f64()).collect();
        let mut scratch = RowScratch::default();
        let mut run = |values: Values| {
            let mut out = vec![RowSoftmax::default(); 4];
            reduce_rows(&values, 21, 21, &mut scratch, &mut out);
            out
        };
        assert_eq!(run(Values::F32(&x)), run(Values::F64(&wide)));
        assert_eq!(run(Values::F16(&half)), run(Values::F64(&half_wide)));
    }

    #[test]
    fn global_max_score_matches_per_row_ce_until_it_underflows() {
        let x = [0.5, 2.0, -1.0];
        let ce = ConfLoss::CrossEntropy.loss(log_p(&reduce(&x), x[0]));
        assert!((global_max_mining_score(&reduce(&x), x[0], 30.0) - ce).abs() < 1e-13);
        // ssd.pytorch's own example: [-200, -201, -199] beside a row [0, 1, 2] is
        // -inf in float32; in float64 the gap must exceed ~745.
        let far = [-800.0, -801.0, -799.0];
        assert_eq!(global_max_mining_score(&reduce(&far), far[0], 2.0), f64::NEG_INFINITY);
        let near = [-720.0, -721.0, -719.0];
        assert!(global_max_mining_score(&reduce(&near), near[0], 2.0).is_finite());
    }
}
