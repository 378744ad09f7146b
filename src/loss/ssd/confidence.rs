//! The confidence loss of one prior: softmax CE or softmax focal against the
//! prior's matched class, and ssd.pytorch's global-max mining score.

use crate::math::{ln_sum_exp, max_and_finite, sum_exp};

use super::ConfLoss;

/// Above this, `exp` is a normal double: no precision is lost in the
/// subnormals, and `ln(exp(x) · s) = x + ln s` up to rounding.
const SMALLEST_NORMAL_EXP: f64 = -708.0;

/// A row of logits reduced once: its maximum and `Σ exp(x - max)`.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub max: f64,
    pub exp_sum: f64,
    ln_sum: f64,
    /// Whether every logit is finite.
    pub finite: bool,
}

impl Row {
    pub fn new(logits: &[f64]) -> Row {
        let (max, finite) = max_and_finite(logits);
        let exp_sum = sum_exp(logits, max);
        // Exact also for a prior whose class dominates (its loss is then
        // tiny, and ln of the rounded sum would keep few of its digits).
        Row { max, exp_sum, ln_sum: ln_sum_exp(logits, max, exp_sum), finite }
    }

    /// `log p_c`, in log_softmax's order: `(x_c - max) - ln Σ`.
    #[inline]
    pub fn log_p(&self, logits: &[f64], class: usize) -> f64 {
        (logits[class] - self.max) - self.ln_sum
    }

    /// The row's first maximum, as torch.argmax picks it.
    #[inline]
    pub fn argmax(&self, logits: &[f64]) -> usize {
        crate::loss::argmax(logits, self.max)
    }

    /// ssd.pytorch's mining loss of a negative, `log_sum_exp(x) - x_0`, where
    /// `log_sum_exp` subtracts the batch's largest logit, not the row's: a row
    /// far below it underflows to `ln 0 = -inf` and is never mined. Its sum
    /// `Σ exp(x - batch_max)` is the row's sum times `exp(max - batch_max)`,
    /// equal up to rounding and zero exactly when every term underflows; while
    /// that factor is a normal number, its logarithm is just the gap.
    #[inline]
    pub fn global_max_mining_score(&self, logits: &[f64], batch_max: f64) -> f64 {
        let gap = self.max - batch_max;
        let ln_sum =
            if gap > SMALLEST_NORMAL_EXP { gap + self.ln_sum } else { (gap.exp() * self.exp_sum).ln() };
        ln_sum + batch_max - logits[0]
    }
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

    #[test]
    fn ce_focal_and_prediction_of_a_row() {
        let x = [2.0, 1.0, 0.25];
        let row = Row::new(&x);
        let lse = (2f64.exp() + 1f64.exp() + 0.25f64.exp()).ln();
        assert!((ConfLoss::CrossEntropy.loss(row.log_p(&x, 1)) - (lse - 1.0)).abs() < 1e-15);
        let focal = ConfLoss::SoftmaxFocal { alpha: 0.25, gamma: 2.0 }.loss(row.log_p(&x, 0));
        let p = (2.0 - lse).exp();
        assert!((focal - 0.25 * (1.0 - p).powi(2) * (lse - 2.0)).abs() < 1e-15);
        assert_eq!(row.argmax(&x), 0);
        let tied = [1.0, 3.0, 3.0];
        let row = Row::new(&tied);
        assert_eq!(row.argmax(&tied), 1);
        assert!(!Row::new(&[0.0, f64::NAN]).finite);
    }

    #[test]
    fn global_max_score_matches_per_row_ce_until_it_underflows() {
        let x = [0.5, 2.0, -1.0];
        let row = Row::new(&x);
        let ce = ConfLoss::CrossEntropy.loss(row.log_p(&x, 0));
        assert!((row.global_max_mining_score(&x, 30.0) - ce).abs() < 1e-13);
        // ssd.pytorch's own example: [-200, -201, -199] beside a row [0, 1, 2] is
        // -inf in float32; in float64 the gap must exceed ~745.
        let far = [-800.0, -801.0, -799.0];
        assert_eq!(Row::new(&far).global_max_mining_score(&far, 2.0), f64::NEG_INFINITY);
        let near = [-720.0, -721.0, -719.0];
        assert!(Row::new(&near).global_max_mining_score(&near, 2.0).is_finite());
    }
}
