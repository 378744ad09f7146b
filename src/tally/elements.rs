//! The tally of elementwise losses (BCE, sigmoid focal) with the classes on
//! the last axis, eight elements at a time: a block of consecutive elements
//! is a run of row segments, and the classes of a segment are consecutive,
//! so the per-class sums are vector additions into per-class arrays. The
//! difficulty-table cell of each element is computed in the same pass; the
//! scattered updates (table cells, concentration) follow in a plain loop.

use crate::math::{Kernel, LANES, Lanes, Level, Real, dispatch, padded_tail};

use super::{ClassTally, Example, GRADIENT_BINS, Grouping, Sum, Tally, WAYS};

/// One block of an elementwise loss, element k of class
/// `(first_class + k) mod classes`.
pub struct Elements<'a> {
    pub first_class: usize,
    /// The flat index of the block's first element.
    pub first_index: usize,
    /// Logits, targets, σ(logit), loss and baseline (plain BCE), per element.
    pub x: &'a [f64],
    pub t: &'a [f64],
    pub p: &'a [f64],
    pub loss: &'a [f64],
    pub baseline: &'a [f64],
}

/// Per-class sums of one block, one array per figure, each padded by a
/// vector's width past the last class. All zero between blocks.
#[derive(Debug, Clone, Default)]
pub(super) struct ClassSums {
    count: Vec<f64>,
    loss: Vec<f64>,
    loss_error: Vec<f64>,
    baseline: Vec<f64>,
    baseline_error: Vec<f64>,
    p_t: Vec<f64>,
    correct: Vec<f64>,
    positives: Vec<f64>,
    positive_loss: Vec<f64>,
    positive_baseline: Vec<f64>,
}

impl ClassSums {
    fn arrays(&mut self) -> [&mut Vec<f64>; 10] {
        [
            &mut self.count,
            &mut self.loss,
            &mut self.loss_error,
            &mut self.baseline,
            &mut self.baseline_error,
            &mut self.p_t,
            &mut self.correct,
            &mut self.positives,
            &mut self.positive_loss,
            &mut self.positive_baseline,
        ]
    }

    fn ready(&mut self, classes: usize) {
        for array in self.arrays() {
            array.resize(classes + LANES, 0.0);
        }
    }

    /// Adds the block's sums of class `c` to its row and zeroes them for the
    /// next block.
    fn settle(&mut self, c: usize, row: &mut ClassTally) {
        row.all.count += self.count[c] as u64;
        row.all.loss.merge(&Sum { sum: self.loss[c], compensation: self.loss_error[c] });
        row.all.baseline.merge(&Sum { sum: self.baseline[c], compensation: self.baseline_error[c] });
        row.p_t.0 += self.p_t[c];
        row.correct += self.correct[c] as u64;
        row.positives.count += self.positives[c] as u64;
        row.positives.loss.0 += self.positive_loss[c];
        row.positives.baseline.0 += self.positive_baseline[c];
        for array in self.arrays() {
            array[c] = 0.0;
        }
    }
}

/// `sum + x` compensated, lane by lane: the same operations as [`Sum::add`].
#[inline(always)]
unsafe fn neumaier<V: Real>(sum: V, error: V, x: V) -> (V, V) {
    // SAFETY: the caller runs where V's instructions exist.
    unsafe {
        let t = sum.add(x);
        let sum_larger = sum.abs().ge(x.abs());
        let large = V::select(sum_larger, sum, x);
        let small = V::select(sum_larger, x, sum);
        (t, error.add(large.sub(t).add(small)))
    }
}

struct BlockPass<'a> {
    elements: &'a Elements<'a>,
    classes: usize,
    bins: usize,
    threshold: f64,
    sums: &'a mut ClassSums,
    /// Out: each element's difficulty-table cell, before the way is added.
    cells: &'a mut [f64],
}

impl BlockPass<'_> {
    /// Eight elements from `at` on, of which `valid` exist, in classes
    /// `class..class + 8`.
    #[inline(always)]
    unsafe fn lanes<V: Lanes>(&mut self, at: usize, valid: usize, class: usize) {
        let e = self.elements;
        let read = |from: &[f64]| -> V {
            // SAFETY: the caller runs where V's instructions exist.
            unsafe {
                if valid == LANES {
                    V::load(&from[at..])
                } else {
                    V::load(&padded_tail(&from[at..at + valid], 0.0).unwrap_or([0.0; LANES]))
                }
            }
        };
        // SAFETY: the caller runs where V's instructions exist.
        unsafe {
            let (x, t, p, loss, baseline) = (read(e.x), read(e.t), read(e.p), read(e.loss), read(e.baseline));
            let lane_exists: [f64; LANES] = std::array::from_fn(|k| if k < valid { 1.0 } else { 0.0 });
            let exists = V::load(&lane_exists);
            let (zero, one) = (V::splat(0.0), V::splat(1.0));
            let positive = V::splat(0.5).lt(t);
            let p_t = p.mul(t).add(one.sub(p).mul(one.sub(t)));
            let grad_norm = p.sub(t).abs();
            // Right when the logit's sign agrees with the target's side of 1/2.
            let said_positive = V::select(zero.lt(x), one, zero);
            let is_positive = V::select(positive, one, zero);
            let correct = exists.sub(said_positive.sub(is_positive).abs());

            let s = &mut *self.sums;
            let at_class = |array: &[f64]| V::load(&array[class..]);
            let (sum, error) = neumaier(at_class(&s.loss), at_class(&s.loss_error), loss);
            sum.store(&mut s.loss[class..]);
            error.store(&mut s.loss_error[class..]);
            let (sum, error) = neumaier(at_class(&s.baseline), at_class(&s.baseline_error), baseline);
            sum.store(&mut s.baseline[class..]);
            error.store(&mut s.baseline_error[class..]);
            at_class(&s.count).add(exists).store(&mut s.count[class..]);
            at_class(&s.p_t).add(p_t.mul(exists)).store(&mut s.p_t[class..]);
            at_class(&s.correct).add(correct).store(&mut s.correct[class..]);
            at_class(&s.positives).add(is_positive).store(&mut s.positives[class..]);
            at_class(&s.positive_loss)
                .add(V::select(positive, loss, zero))
                .store(&mut s.positive_loss[class..]);
            at_class(&s.positive_baseline)
                .add(V::select(positive, baseline, zero))
                .store(&mut s.positive_baseline[class..]);

            // The same bins as `bin_of`: NaN to the first, the rest clamped.
            let bin = |v: V, bins: usize| {
                v.mul(V::splat(bins as f64)).max(zero).floor().min(V::splat((bins - 1) as f64))
            };
            let easy = V::select(V::splat(self.threshold).lt(p_t), one, zero);
            let cell = bin(p_t, self.bins)
                .mul(V::splat(GRADIENT_BINS as f64))
                .add(bin(grad_norm, GRADIENT_BINS))
                .mul(V::splat(2.0))
                .add(easy)
                .mul(V::splat(WAYS as f64));
            if valid == LANES {
                cell.store(&mut self.cells[at..]);
            } else {
                self.cells[at..at + valid].copy_from_slice(&cell.to_array()[..valid]);
            }
        }
    }
}

impl Kernel for BlockPass<'_> {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: Lanes>(mut self) {
        let n = self.elements.x.len();
        let mut at = 0;
        let mut class = self.elements.first_class;
        while at < n {
            let segment = (self.classes - class).min(n - at);
            let mut done = 0;
            while done < segment {
                let valid = (segment - done).min(LANES);
                // SAFETY: `dispatch` runs this where V's instructions exist.
                unsafe { self.lanes::<V>(at + done, valid, class + done) };
                done += valid;
            }
            at += segment;
            class = 0;
        }
    }
}

impl Tally {
    /// Adds a block of elementwise examples whose classes sit on the last
    /// axis. With fewer classes than a vector holds, the rows are too short
    /// for lanes and the examples go through [`Tally::add_all`].
    pub fn add_elements(&mut self, elements: &Elements) {
        let classes = self.settings.classes;
        if classes < LANES {
            self.add_all((0..elements.x.len()).map(|k| {
                let example = elements.example(k);
                Example { class: example.class % classes, ..example }
            }));
            return;
        }
        let mut sums = std::mem::take(&mut self.class_sums);
        sums.ready(classes);
        let mut cells = std::mem::take(&mut self.cell_scratch);
        cells.resize(elements.x.len(), 0.0);
        let pass = BlockPass {
            elements,
            classes,
            bins: self.settings.bins,
            threshold: self.settings.easy_threshold,
            sums: &mut sums,
            cells: &mut cells,
        };
        dispatch(Level::detect(), pass);
        let n = elements.x.len();
        for k in 0..n.min(classes) {
            let c = (elements.first_class + k) % classes;
            sums.settle(c, self.row(c));
        }
        let by_sign = self.settings.grouping == Grouping::PositivesNegatives;
        let [negatives, positives] = &mut self.concentration;
        let updates = cells.iter().zip(elements.loss).zip(elements.baseline).zip(elements.t);
        for (k, (((&cell, &loss), &baseline), &t)) in updates.enumerate() {
            // SAFETY: cells are whole numbers below the table's length.
            let index = unsafe { cell.to_int_unchecked::<u32>() } as usize + k % WAYS;
            self.cells[index].add(loss, baseline);
            if by_sign && t > 0.5 { positives.add(loss) } else { negatives.add(loss) }
        }
        self.class_sums = sums;
        self.cell_scratch = cells;
        for k in 0..n {
            let example = elements.example(k);
            let class = example.class % classes;
            self.row(class).confidence.0 += example.confidence;
            self.note(&Example { class, ..example });
        }
    }
}

impl Elements<'_> {
    /// Element k as an [`Example`] of class `first_class + k`: the figures
    /// the lanes derive, computed one by one.
    pub fn example(&self, k: usize) -> Example {
        let (x, t, p) = (self.x[k], self.t[k], self.p[k]);
        Example {
            class: self.first_class + k,
            loss: self.loss[k],
            p_t: p * t + (1.0 - p) * (1.0 - t),
            correct: (x > 0.0) == (t > 0.5),
            positive: t > 0.5,
            baseline: self.baseline[k],
            grad_norm: (p - t).abs(),
            index: (self.first_index + k) as u64,
            target: t,
            predicted: 0,
            confidence: p,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tally::TallySettings;

    /// A block whose figures cover every case: both sides of every
    /// threshold, exact zeros and ones, and values outside [0, 1].
    fn block(n: usize) -> [Vec<f64>; 5] {
        let x: Vec<f64> = (0..n).map(|i| ((i * 7919) % 201) as f64 / 10.0 - 10.0).collect();
        let t: Vec<f64> = (0..n).map(|i| [0.0, 1.0, 0.3, 0.5, 0.9][i % 5]).collect();
        let p: Vec<f64> = x.iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect();
        let loss: Vec<f64> = (0..n).map(|i| (i % 13) as f64 * 0.37 + 1e-3).collect();
        let baseline: Vec<f64> = loss.iter().map(|l| l * 1.5).collect();
        [x, t, p, loss, baseline]
    }

    fn tallies(classes: usize, first_class: usize, n: usize) -> (Tally, Tally) {
        let settings = TallySettings {
            classes,
            easy_threshold: 0.5,
            bins: 7,
            grouping: Grouping::PositivesNegatives,
            ..Default::default()
        };
        let [x, t, p, loss, baseline] = block(n);
        let elements =
            Elements { first_class, first_index: 0, x: &x, t: &t, p: &p, loss: &loss, baseline: &baseline };
        let mut lanes = Tally::new(&settings);
        lanes.add_elements(&elements);
        let mut one_by_one = Tally::new(&settings);
        one_by_one.add_all((0..n).map(|k| {
            let example = elements.example(k);
            Example { class: example.class % classes, ..example }
        }));
        (lanes, one_by_one)
    }

    #[test]
    fn lanes_agree_with_examples_one_by_one() {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-14 * a.abs().max(b.abs()) || a == b;
        for &(classes, first_class, n) in &[(8, 0, 64), (11, 5, 1024), (80, 79, 333), (100, 3, 7), (3, 1, 50)]
        {
            let (lanes, one_by_one) = tallies(classes, first_class, n);
            for (a, b) in lanes.classes.iter().zip(&one_by_one.classes) {
                assert_eq!(a.all.count, b.all.count);
                assert_eq!(a.correct, b.correct);
                assert_eq!(a.positives.count, b.positives.count);
                assert!(close(a.all.loss.value(), b.all.loss.value()));
                assert!(close(a.all.baseline.value(), b.all.baseline.value()));
                assert!(close(a.p_t.0, b.p_t.0));
                assert!(close(a.positives.loss.0, b.positives.loss.0));
            }
            let buckets = |t: &Tally| {
                let mut all = t.bins();
                all.extend(t.gradient_bins());
                all.extend([t.easy(), t.hard()]);
                all
            };
            for (a, b) in buckets(&lanes).iter().zip(&buckets(&one_by_one)) {
                assert_eq!(a.count, b.count, "{classes} classes");
                assert!(close(a.loss.0, b.loss.0) && close(a.baseline.0, b.baseline.0));
            }
            assert_eq!(lanes.concentration, one_by_one.concentration);
            assert!(close(lanes.total(), one_by_one.total()));
        }
    }

    #[test]
    fn every_build_gives_the_same_sums() {
        let [x, t, p, loss, baseline] = block(1000);
        let elements = Elements {
            first_class: 4,
            first_index: 0,
            x: &x,
            t: &t,
            p: &p,
            loss: &loss,
            baseline: &baseline,
        };
        let run = |level| {
            let mut sums = ClassSums::default();
            sums.ready(13);
            let mut cells = vec![0.0; 1000];
            let pass = BlockPass {
                elements: &elements,
                classes: 13,
                bins: 10,
                threshold: 0.5,
                sums: &mut sums,
                cells: &mut cells,
            };
            dispatch(level, pass);
            (sums.loss.iter().chain(&sums.loss_error).map(|v| v.to_bits()).collect::<Vec<_>>(), cells)
        };
        let portable = run(Level::Portable);
        assert_eq!(run(Level::detect()), portable);
        assert_eq!(run(Level::Avx2), portable);
    }
}
