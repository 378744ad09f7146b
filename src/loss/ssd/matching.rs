//! Matching boxes to priors, as ssd.pytorch's `match` and torchvision's
//! `SSDMatcher` both do it:
//!
//! 1. each prior takes the box it overlaps most (the first box on ties);
//! 2. each box's best prior (the first prior on ties, even at IoU 0) is
//!    forced to that box, boxes in order, so a later box wins a shared prior;
//! 3. a prior is positive when forced or when its IoU is ≥ the threshold.

use super::boxes::{Corners, iou};

/// What matching did for one box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxMatch {
    /// The prior this box overlaps most (forced to it unless a later box took it).
    pub best_prior: usize,
    pub best_iou: f64,
    /// Priors matched to this box in the end.
    pub priors: usize,
}

/// Per-prior buffers, reused across images.
#[derive(Debug, Default)]
pub struct Matches {
    /// The box each prior is matched to; `None` is background.
    pub assigned: Vec<Option<usize>>,
    best_box: Vec<usize>,
    best_overlap: Vec<f64>,
}

/// Marks a forced prior: above any threshold in [0, 1], as ssd.pytorch's `2`.
const FORCED: f64 = 2.0;

impl Matches {
    /// Matches `boxes` to `priors` into `self.assigned` and reports per box.
    pub fn run(&mut self, boxes: &[Corners], priors: &[Corners], threshold: f64) -> Vec<BoxMatch> {
        self.assigned.clear();
        self.assigned.resize(priors.len(), None);
        if boxes.is_empty() {
            return Vec::new();
        }
        self.best_box.clear();
        self.best_box.resize(priors.len(), 0);
        self.best_overlap.clear();
        self.best_overlap.resize(priors.len(), f64::NEG_INFINITY);
        let mut matches = Vec::with_capacity(boxes.len());
        for (i, truth) in boxes.iter().enumerate() {
            let mut best = BoxMatch { best_prior: 0, best_iou: f64::NEG_INFINITY, priors: 0 };
            for (j, prior) in priors.iter().enumerate() {
                let overlap = iou(truth, prior);
                // Strict comparisons keep the first maximum, as torch.max does.
                if overlap > best.best_iou {
                    best.best_prior = j;
                    best.best_iou = overlap;
                }
                if overlap > self.best_overlap[j] {
                    self.best_box[j] = i;
                    self.best_overlap[j] = overlap;
                }
            }
            matches.push(best);
        }
        for m in &matches {
            self.best_overlap[m.best_prior] = FORCED;
        }
        for (i, m) in matches.iter().enumerate() {
            self.best_box[m.best_prior] = i;
        }
        for (j, assigned) in self.assigned.iter_mut().enumerate() {
            if self.best_overlap[j] >= threshold {
                let i = self.best_box[j];
                *assigned = Some(i);
                matches[i].priors += 1;
            }
        }
        matches
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIORS: [Corners; 4] =
        [[0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 1.0, 0.5], [0.0, 0.5, 0.5, 1.0], [0.5, 0.5, 1.0, 1.0]];

    #[test]
    fn threshold_is_inclusive_and_boxes_take_their_best_priors() {
        let mut m = Matches::default();
        // IoU with prior 0 is exactly 0.5: positive.
        let report = m.run(&[[0.0, 0.0, 0.5, 0.25]], &PRIORS, 0.5);
        assert_eq!(m.assigned, [Some(0), None, None, None]);
        assert_eq!(report[0], BoxMatch { best_prior: 0, best_iou: 0.5, priors: 1 });
        // Spanning two priors at 0.5 each: both positive.
        let report = m.run(&[[0.0, 0.0, 1.0, 0.5]], &PRIORS, 0.5);
        assert_eq!(m.assigned, [Some(0), Some(0), None, None]);
        assert_eq!(report[0].priors, 2);
    }

    #[test]
    fn best_prior_is_forced_below_the_threshold_and_even_at_zero_overlap() {
        let mut m = Matches::default();
        let report = m.run(&[[0.0, 0.0, 0.1, 0.1]], &PRIORS, 0.5);
        assert_eq!(m.assigned, [Some(0), None, None, None]);
        assert!(report[0].best_iou < 0.5);
        // Overlapping no prior: torch.max's first index, prior 0.
        let report = m.run(&[[2.0, 2.0, 3.0, 3.0]], &PRIORS, 0.5);
        assert_eq!(m.assigned, [Some(0), None, None, None]);
        assert_eq!(report[0].best_iou, 0.0);
    }

    #[test]
    fn a_later_box_wins_a_shared_best_prior() {
        let mut m = Matches::default();
        let boxes = [[0.0, 0.0, 0.2, 0.2], [0.05, 0.05, 0.25, 0.25]];
        let report = m.run(&boxes, &PRIORS, 0.5);
        assert_eq!(m.assigned, [Some(1), None, None, None]);
        assert_eq!((report[0].priors, report[1].priors), (0, 1));
        assert_eq!(report[0].best_prior, 0);
    }

    #[test]
    fn ties_go_to_the_first_box_and_the_first_prior() {
        let mut m = Matches::default();
        // Both boxes overlap prior 1 alike (IoU 0.5); box 0's best is prior 0, box 1's prior 3.
        let boxes = [[0.25, 0.0, 0.75, 0.5], [0.5, 0.0, 1.0, 1.0]];
        let report = m.run(&boxes, &PRIORS, 0.5);
        // Box 0 ties priors 0 and 1 (1/3 each): the first, prior 0, is forced.
        assert_eq!(report[0].best_prior, 0);
        // Box 1 ties priors 1 and 3 (0.5 each): prior 1 is forced to it.
        assert_eq!(report[1].best_prior, 1);
        assert_eq!(m.assigned, [Some(0), Some(1), None, Some(1)]);
        // Two equal boxes: both force prior 0 (the later keeps it), and prior 2,
        // which they overlap alike, goes to the first.
        let twins = [[0.0, 0.0, 0.5, 1.0], [0.0, 0.0, 0.5, 1.0]];
        let report = m.run(&twins, &PRIORS, 0.5);
        assert_eq!(m.assigned, [Some(1), None, Some(0), None]);
        assert_eq!((report[0].priors, report[1].priors), (1, 1));
    }

    #[test]
    fn no_boxes_means_all_background() {
        let mut m = Matches::default();
        assert!(m.run(&[], &PRIORS, 0.5).is_empty());
        assert_eq!(m.assigned, [None; 4]);
    }
}
