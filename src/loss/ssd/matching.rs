//! Matching boxes to priors, as ssd.pytorch's `match` and torchvision's
//! `SSDMatcher` both do it:
//!
//! 1. each prior takes the box it overlaps most (the first box on ties);
//! 2. each box's best prior (the first prior on ties, even at IoU 0) is
//!    forced to that box, boxes in order, so a later box wins a shared prior;
//! 3. a prior is positive when forced or when its IoU is ≥ the threshold.
//!
//! The overlaps of a box with every prior are computed eight priors at a
//! time, with the operations and rounding of ssd.pytorch's `jaccard`.

use crate::math::{Kernel, LANES, Lanes, Level, dispatch, padded_len};

use super::boxes::{Corners, area};

/// What matching did for one box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxMatch {
    /// The prior this box overlaps most (forced to it unless a later box took it).
    pub best_prior: usize,
    pub best_iou: f64,
    /// Priors matched to this box in the end.
    pub priors: usize,
}

/// The priors' corners coordinate by coordinate, with their areas, padded
/// to whole vectors with empty boxes far outside the image (they overlap
/// nothing, and come after every prior).
#[derive(Debug, Clone)]
pub struct PriorColumns {
    len: usize,
    xmin: Vec<f64>,
    ymin: Vec<f64>,
    xmax: Vec<f64>,
    ymax: Vec<f64>,
    area: Vec<f64>,
}

/// The padding's corners: no box in the image reaches them.
const OUTSIDE: f64 = f64::MAX;

impl PriorColumns {
    pub fn new(corners: &[Corners]) -> PriorColumns {
        let padded = padded_len(corners.len());
        let column = |k: usize| {
            let mut values: Vec<f64> = corners.iter().map(|c| c[k]).collect();
            values.resize(padded, OUTSIDE);
            values
        };
        let mut areas: Vec<f64> = corners.iter().map(area).collect();
        areas.resize(padded, 0.0);
        PriorColumns {
            len: corners.len(),
            xmin: column(0),
            ymin: column(1),
            xmax: column(2),
            ymax: column(3),
            area: areas,
        }
    }
}

/// Per-prior buffers, reused across images.
#[derive(Debug, Default)]
pub struct Matches {
    /// The box each prior is matched to; `None` is background.
    pub assigned: Vec<Option<usize>>,
    /// The box each prior overlaps most, as a float64 for the kernel.
    best_box: Vec<f64>,
    best_overlap: Vec<f64>,
}

/// Marks a forced prior: above any threshold in [0, 1], as ssd.pytorch's `2`.
const FORCED: f64 = 2.0;

impl Matches {
    /// Matches `boxes` to `priors` into `self.assigned` and reports per box.
    pub fn run(&mut self, boxes: &[Corners], priors: &PriorColumns, threshold: f64) -> Vec<BoxMatch> {
        self.assigned.clear();
        self.assigned.resize(priors.len, None);
        if boxes.is_empty() {
            return Vec::new();
        }
        self.best_box.clear();
        self.best_box.resize(priors.area.len(), 0.0);
        self.best_overlap.clear();
        self.best_overlap.resize(priors.area.len(), f64::NEG_INFINITY);
        let mut matches = Vec::with_capacity(boxes.len());
        for (i, truth) in boxes.iter().enumerate() {
            let (best_prior, best_iou) = dispatch(
                Level::detect(),
                Overlaps {
                    truth,
                    index: i as f64,
                    priors,
                    best_overlap: &mut self.best_overlap,
                    best_box: &mut self.best_box,
                },
            );
            matches.push(BoxMatch { best_prior, best_iou, priors: 0 });
        }
        for m in &matches {
            self.best_overlap[m.best_prior] = FORCED;
        }
        for (i, m) in matches.iter().enumerate() {
            self.best_box[m.best_prior] = i as f64;
        }
        for (j, assigned) in self.assigned.iter_mut().enumerate() {
            if self.best_overlap[j] >= threshold {
                let i = self.best_box[j] as usize;
                *assigned = Some(i);
                matches[i].priors += 1;
            }
        }
        matches
    }
}

/// One box against every prior: each prior's best overlap and box so far
/// are updated (strictly greater wins, so the first box keeps a tie), and
/// the box's best prior and its IoU are returned (the first on ties).
struct Overlaps<'a> {
    truth: &'a Corners,
    /// The box's index, as a float64.
    index: f64,
    priors: &'a PriorColumns,
    best_overlap: &'a mut [f64],
    best_box: &'a mut [f64],
}

impl Kernel for Overlaps<'_> {
    type Output = (usize, f64);

    #[inline(always)]
    unsafe fn run<V: Lanes>(self) -> (usize, f64) {
        let Overlaps { truth, index, priors, best_overlap, best_box } = self;
        let padded = priors.area.len();
        assert!(
            padded % LANES == 0
                && [&priors.xmin, &priors.ymin, &priors.xmax, &priors.ymax].iter().all(|c| c.len() == padded)
                && best_overlap.len() == padded
                && best_box.len() == padded
        );
        let mut lane_first = [0.0; LANES];
        for (k, first) in lane_first.iter_mut().enumerate() {
            *first = k as f64;
        }
        // SAFETY: the caller runs where V's instructions exist; every column
        // is a whole number of vectors long, checked above.
        let (best, best_at) = unsafe {
            let [xmin, ymin, xmax, ymax] = truth.map(|c| V::splat(c));
            let (zero, index, step) = (V::splat(0.0), V::splat(index), V::splat(LANES as f64));
            let truth_area = V::splat(area(truth));
            let (mut best, mut best_at, mut at_lanes) =
                (V::splat(f64::NEG_INFINITY), zero, V::load(&lane_first));
            for at in (0..priors.area.len()).step_by(LANES) {
                let w = V::load(&priors.xmax[at..])
                    .min(xmax)
                    .sub(V::load(&priors.xmin[at..]).max(xmin))
                    .max(zero);
                let h = V::load(&priors.ymax[at..])
                    .min(ymax)
                    .sub(V::load(&priors.ymin[at..]).max(ymin))
                    .max(zero);
                let inter = w.mul(h);
                let union = truth_area.add(V::load(&priors.area[at..])).sub(inter);
                let iou = V::select(inter.equal(zero), zero, inter.div(union));

                let better = best.lt(iou);
                best = V::select(better, iou, best);
                best_at = V::select(better, at_lanes, best_at);
                at_lanes = at_lanes.add(step);

                let overlap = V::load(&best_overlap[at..]);
                let taken = overlap.lt(iou);
                V::select(taken, iou, overlap).store(&mut best_overlap[at..]);
                V::select(taken, index, V::load(&best_box[at..])).store(&mut best_box[at..]);
            }
            (best.to_array(), best_at.to_array())
        };
        // The largest overlap, at the lowest prior among the lanes holding it.
        let top = best.iter().fold(f64::NEG_INFINITY, |m, &x| if x > m { x } else { m });
        let first = (0..LANES).filter(|&k| best[k] == top).map(|k| best_at[k]).fold(f64::INFINITY, f64::min);
        (first as usize, top)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::ssd::boxes::iou;

    impl Matches {
        fn run_on(&mut self, boxes: &[Corners], priors: &[Corners], threshold: f64) -> Vec<BoxMatch> {
            self.run(boxes, &PriorColumns::new(priors), threshold)
        }
    }

    #[test]
    fn every_build_finds_the_overlaps_of_one_box_at_a_time() {
        // A grid of priors that boxes overlap partly, exactly, or not at all.
        let priors: Vec<Corners> = (0..203)
            .map(|j| {
                let (x, y, s) =
                    ((j % 13) as f64 / 13.0, (j / 13) as f64 / 16.0, 0.05 + (j % 7) as f64 / 20.0);
                [x, y, x + s, y + s * 0.75]
            })
            .collect();
        let columns = PriorColumns::new(&priors);
        let boxes = [[0.1, 0.2, 0.45, 0.5], priors[17], [0.9, 0.9, 0.95, 0.97], [3.0, 3.0, 4.0, 4.0]];
        for level in [Level::detect(), Level::Portable] {
            let mut overlap = vec![f64::NEG_INFINITY; padded_len(priors.len())];
            let mut best_box = vec![0.0; padded_len(priors.len())];
            for (i, truth) in boxes.iter().enumerate() {
                let ious: Vec<f64> = priors.iter().map(|p| iou(truth, p)).collect();
                let top = ious.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let want = (ious.iter().position(|&v| v == top).unwrap(), top);
                let kernel = Overlaps {
                    truth,
                    index: i as f64,
                    priors: &columns,
                    best_overlap: &mut overlap,
                    best_box: &mut best_box,
                };
                assert_eq!(dispatch(level, kernel), want, "box {i}, {level:?}");
            }
            for (j, prior) in priors.iter().enumerate() {
                let ious: Vec<f64> = boxes.iter().map(|b| iou(b, prior)).collect();
                let top = ious.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                assert_eq!(overlap[j].to_bits(), top.to_bits(), "prior {j}");
                assert_eq!(best_box[j] as usize, ious.iter().position(|&v| v == top).unwrap(), "prior {j}");
            }
        }
    }

    const PRIORS: [Corners; 4] =
        [[0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 1.0, 0.5], [0.0, 0.5, 0.5, 1.0], [0.5, 0.5, 1.0, 1.0]];

    #[test]
    fn threshold_is_inclusive_and_boxes_take_their_best_priors() {
        let mut m = Matches::default();
        // IoU with prior 0 is exactly 0.5: positive.
        let report = m.run_on(&[[0.0, 0.0, 0.5, 0.25]], &PRIORS, 0.5);
        assert_eq!(m.assigned, [Some(0), None, None, None]);
        assert_eq!(report[0], BoxMatch { best_prior: 0, best_iou: 0.5, priors: 1 });
        // Spanning two priors at 0.5 each: both positive.
        let report = m.run_on(&[[0.0, 0.0, 1.0, 0.5]], &PRIORS, 0.5);
        assert_eq!(m.assigned, [Some(0), Some(0), None, None]);
        assert_eq!(report[0].priors, 2);
    }

    #[test]
    fn best_prior_is_forced_below_the_threshold_and_even_at_zero_overlap() {
        let mut m = Matches::default();
        let report = m.run_on(&[[0.0, 0.0, 0.1, 0.1]], &PRIORS, 0.5);
        assert_eq!(m.assigned, [Some(0), None, None, None]);
        assert!(report[0].best_iou < 0.5);
        // Overlapping no prior: torch.max's first index, prior 0.
        let report = m.run_on(&[[2.0, 2.0, 3.0, 3.0]], &PRIORS, 0.5);
        assert_eq!(m.assigned, [Some(0), None, None, None]);
        assert_eq!(report[0].best_iou, 0.0);
    }

    #[test]
    fn a_later_box_wins_a_shared_best_prior() {
        let mut m = Matches::default();
        let boxes = [[0.0, 0.0, 0.2, 0.2], [0.05, 0.05, 0.25, 0.25]];
        let report = m.run_on(&boxes, &PRIORS, 0.5);
        assert_eq!(m.assigned, [Some(1), None, None, None]);
        assert_eq!((report[0].priors, report[1].priors), (0, 1));
        assert_eq!(report[0].best_prior, 0);
    }

    #[test]
    fn ties_go_to_the_first_box_and_the_first_prior() {
        let mut m = Matches::default();
        // Both boxes overlap prior 1 alike (IoU 0.5); box 0's best is prior 0, box 1's prior 3.
        let boxes = [[0.25, 0.0, 0.75, 0.5], [0.5, 0.0, 1.0, 1.0]];
        let report = m.run_on(&boxes, &PRIORS, 0.5);
        // Box 0 ties priors 0 and 1 (1/3 each): the first, prior 0, is forced.
        assert_eq!(report[0].best_prior, 0);
        // Box 1 ties priors 1 and 3 (0.5 each): prior 1 is forced to it.
        assert_eq!(report[1].best_prior, 1);
        assert_eq!(m.assigned, [Some(0), Some(1), None, Some(1)]);
        // Two equal boxes: both force prior 0 (the later keeps it), and prior 2,
        // which they overlap alike, goes to the first.
        let twins = [[0.0, 0.0, 0.5, 1.0], [0.0, 0.0, 0.5, 1.0]];
        let report = m.run_on(&twins, &PRIORS, 0.5);
        assert_eq!(m.assigned, [Some(1), None, Some(0), None]);
        assert_eq!((report[0].priors, report[1].priors), (1, 1));
    }

    #[test]
    fn no_boxes_means_all_background() {
        let mut m = Matches::default();
        assert!(m.run_on(&[], &PRIORS, 0.5).is_empty());
        assert_eq!(m.assigned, [None; 4]);
    }
}
