//! The figures an SSD evaluation gathers per image and merges in image
//! order: per class, per prior group, per image, and what matching and
//! mining did. The matching figures are written into the report as they are.

use serde::{Deserialize, Serialize};

use crate::tally::Sum;

/// One class's part; class 0 is the background.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassFigures {
    /// Positive priors matched to the class (0 for the background).
    pub positives: u64,
    /// Entries of the confidence sum: priors counted, a positive torchvision
    /// counts twice counting twice.
    pub counted: u64,
    /// Confidence loss of the counted priors.
    pub conf_sum: Sum,
    /// Smooth L1 of the class's positives.
    pub loc_sum: Sum,
    /// Σ p_t over the counted priors.
    pub p_t_sum: Sum,
}

impl ClassFigures {
    pub(super) fn add(&mut self, loss: f64, p_t: f64) {
        self.counted += 1;
        self.conf_sum.add(loss);
        self.p_t_sum.add(p_t);
    }

    pub(super) fn merge(&mut self, other: &ClassFigures) {
        self.positives += other.positives;
        self.counted += other.counted;
        self.conf_sum.merge(&other.conf_sum);
        self.loc_sum.merge(&other.loc_sum);
        self.p_t_sum.merge(&other.p_t_sum);
    }

    /// Mean softmax probability of the class over its counted priors (NaN if none).
    pub fn mean_p_t(&self) -> f64 {
        self.p_t_sum.value() / self.counted as f64
    }
}

/// A set of priors: how many, and their confidence loss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub count: u64,
    pub conf_sum: Sum,
}

impl Group {
    pub(super) fn add(&mut self, loss: f64) {
        self.count += 1;
        self.conf_sum.add(loss);
    }

    pub(super) fn merge(&mut self, other: &Group) {
        self.count += other.count;
        self.conf_sum.merge(&other.conf_sum);
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Groups {
    pub positives: Group,
    pub mined_negatives: Group,
    /// Negatives left out, with what they would have cost.
    pub unmined_negatives: Group,
    /// Positives torchvision's mining reached as well: counted a second time.
    pub positives_counted_twice: Group,
}

impl Groups {
    pub(super) fn merge(&mut self, other: &Groups) {
        self.positives.merge(&other.positives);
        self.mined_negatives.merge(&other.mined_negatives);
        self.unmined_negatives.merge(&other.unmined_negatives);
        self.positives_counted_twice.merge(&other.positives_counted_twice);
    }
}

/// One image's part; the sums are not divided by N.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ImageFigures {
    pub boxes: usize,
    pub positives: u64,
    pub mined_negatives: u64,
    pub loc_sum: f64,
    pub conf_sum: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ForcedMatch {
    pub image: usize,
    /// The box's row in the truths input.
    #[serde(rename = "box_index")]
    pub box_row: usize,
    pub best_iou: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisplacedBox {
    pub image: usize,
    /// The box's row in the truths input.
    #[serde(rename = "box_index")]
    pub box_row: usize,
    /// The best prior it lost.
    pub prior: usize,
    /// The row of the later box that took it.
    pub taken_by: usize,
}

/// Positive priors per box: least, median and most.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub min: usize,
    pub median: f64,
    pub max: usize,
}

impl Spread {
    pub(super) fn of(mut values: Vec<usize>) -> Option<Spread> {
        values.sort_unstable();
        let n = values.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => values[n / 2] as f64,
            _ => (values[n / 2 - 1] + values[n / 2]) as f64 / 2.0,
        };
        Some(Spread { min: values[0], median, max: values[n - 1] })
    }
}

/// Negatives ssd.pytorch's global-max log-sum-exp scores `-inf`, so that
/// they rank below every other prior.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeverMined {
    /// In this float64 evaluation (logits ~745 below the batch's largest).
    pub float64: u64,
    /// Had the logits been float32, as in training (~104 below).
    pub float32: u64,
}
