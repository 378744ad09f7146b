//! The tally of elementwise losses (BCE, sigmoid focal) with the classes on
//! the last axis, eight elements at a time: a block of consecutive elements
//! is a run of row segments, and the classes of a segment are consecutive,
//! so the per-class sums are vector additions into per-class arrays. Each
//! element's difficulty-table cell, calibration bucket and concentration
//! bits are computed in the same vector pass, as the integers the tables
//! are indexed by; the scattered updates (table cells, concentration,
//! calibration) follow, one short loop per table.

use crate::math::{Kernel, LANES, Lanes, Level, Real, dispatch, padded_tail};

use super::{ClassTally, Example, GRADIENT_BINS, Grouping, Sum, Tally, WAYS};

/// One block of an elementwise loss, element k of class
/// `(first_class + k) mod classes`, or of `first_class` alone when
/// `one_class` is set (the classes on an earlier axis).
pub struct Elements<'a> {
    pub first_class: usize,
    pub one_class: bool,
    /// The flat index of the block's first element.
    pub first_index: usize,
    /// Logits, targets, σ(logit), loss and baseline (plain BCE), per element.
    pub x: &'a [f64],
    pub t: &'a [f64],
    pub p: &'a [f64],
    pub loss: &'a [f64],
    pub baseline: &'a [f64],
}

/// What [`Tally::add_elements`] works in, kept from block to block: the
/// per-class sums, and each element's difficulty cell, calibration slot
/// and concentration bits, each buffer a vector longer than the block so
/// that every vector of the pass is stored whole.
#[derive(Debug, Clone, Default)]
pub(super) struct Scratch {
    sums: ClassSums,
    cells: Vec<i32>,
    slots: Vec<i32>,
    bits: Vec<u32>,
}

/// Per-class sums of one block, one array per figure, each padded by a
/// vector's width past the last class. All zero between blocks.
#[derive(Debug, Clone, Default)]
struct ClassSums {
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
    confidence: Vec<f64>,
}

impl ClassSums {
    fn arrays(&mut self) -> [&mut Vec<f64>; 11] {
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
            &mut self.confidence,
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
        self.add_slot(c, row);
        for array in self.arrays() {
            array[c] = 0.0;
        }
    }

    /// Adds the first [`LANES`] slots, a block's lane sums of one class,
    /// to `row` in lane order, and zeroes them.
    fn settle_lanes(&mut self, row: &mut ClassTally) {
        for lane in 0..LANES {
            self.add_slot(lane, row);
        }
        for array in self.arrays() {
            array[..LANES].fill(0.0);
        }
    }

    #[inline(always)]
    fn add_slot(&self, c: usize, row: &mut ClassTally) {
        row.all.count += self.count[c] as u64;
        row.all.loss.merge(&Sum { sum: self.loss[c], compensation: self.loss_error[c] });
        row.all.baseline.merge(&Sum { sum: self.baseline[c], compensation: self.baseline_error[c] });
        row.p_t.0 += self.p_t[c];
        row.correct += self.correct[c] as u64;
        row.positives.count += self.positives[c] as u64;
        row.positives.loss.0 += self.positive_loss[c];
        row.positives.baseline.0 += self.positive_baseline[c];
        row.confidence.0 += self.confidence[c];
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
    /// Out: each element's copy of its difficulty-table cell (see
    /// [`Tally::cell_index`]). Each out buffer is a vector longer than the
    /// block: a partial vector is stored whole, its lanes past the segment
    /// overwritten by the next one or left in the padding.
    cells: &'a mut [i32],
    /// The calibration bins, 0 for none.
    calibration_bins: usize,
    /// Out: each element's calibration slot (see `Calibration::add_slots`).
    slots: &'a mut [i32],
    /// Out: each loss's concentration bin and low bits, as
    /// [`counted_bits`](crate::concentration::counted_bits) gives them.
    bits: &'a mut [u32],
}

/// Element k of a block goes to copy k mod [`WAYS`] of its table entry: the
/// copies of a vector's lanes from its first element k on are
/// `COPIES[k mod WAYS..]`.
const COPIES: [f64; LANES + WAYS] = {
    let mut copies = [0.0; LANES + WAYS];
    let mut k = 0;
    while k < copies.len() {
        copies[k] = (k % WAYS) as f64;
        k += 1;
    }
    copies
};

impl BlockPass<'_> {
    /// `len` elements from `at` on, whole vectors first: of consecutive
    /// classes from `first_class`, or of one class (every vector into
    /// slots 0 up) for `None`. The caller runs where V's instructions exist
    /// and `run`'s checks hold for the span.
    #[inline(always)]
    unsafe fn span<V: Lanes>(&mut self, at: usize, len: usize, first_class: Option<usize>) {
        let class = |done: usize| first_class.map_or(0, |c| c + done);
        let mut done = 0;
        // SAFETY: as above.
        unsafe {
            while len - done >= LANES {
                self.lanes::<V, true>(at + done, LANES, class(done));
                done += LANES;
            }
            if done < len {
                self.lanes::<V, false>(at + done, len - done, class(done));
            }
        }
    }

    /// Eight elements from `at` on, of which `valid` exist, in classes
    /// `class..class + 8` (or all in slot 0 up for one class). `FULL` says
    /// all eight exist, so the lane mask folds away.
    #[inline(always)]
    unsafe fn lanes<V: Lanes, const FULL: bool>(&mut self, at: usize, valid: usize, class: usize) {
        debug_assert!(!FULL || valid == LANES);
        let e = self.elements;
        // SAFETY: the caller runs where V's instructions exist; `at + valid`
        // is within the block, whose values are read as whole vectors only
        // when `valid` is eight; the out buffers, which `run` asserts are a
        // vector longer than the block, take every vector whole; `class +
        // LANES` is within every class-sum array, which `run` asserts are a
        // vector longer than the classes (`class` is below the classes, or 0
        // for one class). (Helpers are functions, not closures: a closure
        // does not take the vector instructions of the function it is
        // written in, and may not inline them.)
        unsafe {
            let valid = if FULL { LANES } else { valid };
            let x: V = read_lanes(e.x, at, valid);
            let t: V = read_lanes(e.t, at, valid);
            let p: V = read_lanes(e.p, at, valid);
            let loss: V = read_lanes(e.loss, at, valid);
            let baseline: V = read_lanes(e.baseline, at, valid);
            let exists = if FULL {
                V::splat(1.0)
            } else {
                let lane_exists: [f64; LANES] = std::array::from_fn(|k| if k < valid { 1.0 } else { 0.0 });
                V::load(&lane_exists)
            };
            let (zero, one) = (V::splat(0.0), V::splat(1.0));
            let positive = V::splat(0.5).lt(t);
            let p_t = p.mul(t).add(one.sub(p).mul(one.sub(t)));
            let grad_norm = p.sub(t).abs();
            // Right when the logit's sign agrees with the target's side of 1/2.
            let said_positive = V::select(zero.lt(x), one, zero);
            let is_positive = V::select(positive, one, zero);
            let correct = exists.sub(said_positive.sub(is_positive).abs());

            let s = &mut *self.sums;
            add_compensated(&mut s.loss, &mut s.loss_error, class, loss);
            add_compensated(&mut s.baseline, &mut s.baseline_error, class, baseline);
            add_into(&mut s.count, class, exists);
            add_into(&mut s.p_t, class, p_t.mul(exists));
            add_into(&mut s.confidence, class, p.mul(exists));
            add_into(&mut s.correct, class, correct);
            add_into(&mut s.positives, class, is_positive);
            add_into(&mut s.positive_loss, class, V::select(positive, loss, zero));
            add_into(&mut s.positive_baseline, class, V::select(positive, baseline, zero));

            let way = V::load(&COPIES[at % WAYS..]);
            let easy = V::select(V::splat(self.threshold).lt(p_t), one, zero);
            let cell = bin_lanes(p_t, self.bins)
                .mul(V::splat(GRADIENT_BINS as f64))
                .add(bin_lanes(grad_norm, GRADIENT_BINS))
                .mul(V::splat(2.0))
                .add(easy)
                .mul_add(V::splat(WAYS as f64), way);
            // Whole numbers within i32: table indexes stay below 1000 bins
            // × 10 × 2 × 8, the settings' limits.
            cell.store_whole(&mut self.cells[at..]);
            if self.calibration_bins > 0 {
                calibration_slot(p, way, self.calibration_bins).store_whole(&mut self.slots[at..]);
            }
            counted_lanes(loss).store_f32_bits(&mut self.bits[at..]);
        }
    }
}

/// Each loss as [`counted_bits`](crate::concentration::counted_bits)
/// counts it, before the rounding to float32: negatives and -0 as +0, NaN
/// as +inf.
#[inline(always)]
unsafe fn counted_lanes<V: Real>(loss: V) -> V {
    // SAFETY: the caller runs where V's instructions exist.
    unsafe {
        let zero = V::splat(0.0);
        let counted = V::select(zero.lt(loss), loss, zero);
        V::select(loss.equal(loss), counted, V::splat(f64::INFINITY))
    }
}

/// Adds `v` to the eight class sums from `class` on. The caller runs where
/// V's instructions exist and `class + LANES` is within `sums` (checked once
/// per block, not per vector).
#[inline(always)]
unsafe fn add_into<V: Lanes>(sums: &mut [f64], class: usize, v: V) {
    // SAFETY: as above.
    unsafe {
        let slots = sums.get_unchecked_mut(class..class + LANES);
        V::load(slots).add(v).store(slots);
    }
}

/// [`add_into`], compensated: `error` holds each sum's lost low part.
#[inline(always)]
unsafe fn add_compensated<V: Lanes>(sums: &mut [f64], errors: &mut [f64], class: usize, v: V) {
    // SAFETY: as for `add_into`.
    unsafe {
        let sum = sums.get_unchecked_mut(class..class + LANES);
        let error = errors.get_unchecked_mut(class..class + LANES);
        let (new_sum, new_error) = neumaier(V::load(sum), V::load(error), v);
        new_sum.store(sum);
        new_error.store(error);
    }
}

/// Eight values from `at` on, of which `valid` exist, the rest read as 0.
/// The caller runs where V's instructions exist and `at + valid` is within
/// `from`.
#[inline(always)]
unsafe fn read_lanes<V: Lanes>(from: &[f64], at: usize, valid: usize) -> V {
    // SAFETY: as above: with eight valid, eight values are there.
    unsafe {
        if valid == LANES {
            V::load(&from[at..])
        } else {
            V::load(&padded_tail(&from[at..at + valid], 0.0).unwrap_or([0.0; LANES]))
        }
    }
}

/// The same bins as `bin_of`: NaN to the first, the rest clamped.
#[inline(always)]
unsafe fn bin_lanes<V: Real>(v: V, bins: usize) -> V {
    // SAFETY: the caller runs where V's instructions exist.
    unsafe { v.mul(V::splat(bins as f64)).max(V::splat(0.0)).floor().min(V::splat((bins - 1) as f64)) }
}

/// The calibration bucket of each confidence times [`WAYS`] plus its `way`,
/// or -1 for NaN and negatives: the bucket `Calibration::bucket_of` finds,
/// with the edges of `linspace_edges(bins)` computed in place, by the same
/// operations.
#[inline(always)]
unsafe fn calibration_slot<V: Real>(confidence: V, way: V, bins: usize) -> V {
    // SAFETY: the caller runs where V's instructions exist.
    unsafe {
        let (zero, one) = (V::splat(0.0), V::splat(1.0));
        let last = V::splat(bins as f64);
        let step = V::splat(1.0 / bins as f64);
        let half = V::splat(bins.div_ceil(2) as f64);
        let guess = confidence.mul(last).min(last).floor();
        let next = guess.add(one);
        // Edge i: the first half counts up from 0, the rest down from 1.
        let edge_guess = V::select(guess.lt(half), guess.mul(step), one.sub(last.sub(guess).mul(step)));
        let edge_next = V::select(next.lt(half), next.mul(step), one.sub(last.sub(next).mul(step)));
        let edge_next = V::select(guess.lt(last), edge_next, V::splat(f64::INFINITY));
        let bucket = V::select(
            confidence.lt(edge_guess),
            guess.sub(one),
            V::select(confidence.ge(edge_next), next, guess),
        );
        V::select(confidence.ge(zero), bucket.mul_add(V::splat(WAYS as f64), way), V::splat(-1.0))
    }
}

impl Kernel for BlockPass<'_> {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: Lanes>(mut self) {
        let e = self.elements;
        let n = e.x.len();
        let padded = self.classes.checked_add(LANES).expect("a class count far below usize::MAX");
        assert!(
            [e.t, e.p, e.loss, e.baseline].iter().all(|a| a.len() == n)
                && self.cells.len() >= n + LANES
                && (self.calibration_bins == 0 || self.slots.len() >= n + LANES)
                && self.bits.len() >= n + LANES
                && self.sums.arrays().iter().all(|a| a.len() >= padded)
                && (e.one_class || e.first_class < self.classes)
        );
        // SAFETY (every call below): `dispatch` runs this where V's
        // instructions exist; the lengths are checked above.
        if e.one_class {
            // Lane k sums into slot k; `ClassSums::settle_lanes` adds the
            // slots up into the one class.
            unsafe { self.span::<V>(0, n, None) };
            return;
        }
        let mut at = 0;
        let mut class = e.first_class;
        while at < n {
            let segment = (self.classes - class).min(n - at);
            unsafe { self.span::<V>(at, segment, Some(class)) };
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
        crate::math::widest(
            #[inline(always)]
            || self.add_elements_here(elements),
        )
    }

    #[inline(always)]
    fn add_elements_here(&mut self, elements: &Elements) {
        let classes = self.settings.classes;
        if classes < LANES && !elements.one_class {
            self.add_all((0..elements.x.len()).map(|k| elements.example_of(k, classes)));
            return;
        }
        let Scratch { mut sums, mut cells, mut slots, mut bits } = std::mem::take(&mut self.blocks);
        sums.ready(classes);
        let n = elements.x.len();
        cells.resize(n + LANES, 0);
        slots.resize(n + LANES, 0);
        bits.resize(n + LANES, 0);
        let calibration_bins = self.settings.findings.calibration_edges.len().saturating_sub(1);
        let pass = BlockPass {
            elements,
            classes,
            bins: self.settings.bins,
            threshold: self.settings.easy_threshold,
            sums: &mut sums,
            cells: &mut cells,
            calibration_bins,
            slots: &mut slots,
            bits: &mut bits,
        };
        dispatch(Level::detect(), pass);
        if elements.one_class {
            sums.settle_lanes(self.row(elements.first_class));
        } else {
            for k in 0..n.min(classes) {
                let c = (elements.first_class + k) % classes;
                sums.settle(c, self.row(c));
            }
        }
        // The scattered updates, one table at a time: each loop is short
        // enough to keep its pointers in registers, and each table is
        // borrowed as a slice so that its bounds stay there too.
        let table = &mut self.cells[..];
        for ((&cell, &loss), &baseline) in cells[..n].iter().zip(elements.loss).zip(elements.baseline) {
            table[cell as usize].add(loss, baseline);
        }
        let [negatives, positives] = &mut self.concentration;
        let (mut negatives, mut positives) = (negatives.counter(), positives.counter());
        if self.settings.grouping == Grouping::PositivesNegatives {
            for (&bits, &t) in bits[..n].iter().zip(elements.t) {
                if t > 0.5 { positives.add_bits(bits) } else { negatives.add_bits(bits) }
            }
        } else {
            for &bits in &bits[..n] {
                negatives.add_bits(bits);
            }
        }
        self.findings.note_elements(elements, classes, &slots[..n]);
        if let Some(sink) = &self.settings.per_example {
            for (k, &loss) in elements.loss.iter().enumerate() {
                sink.write((elements.first_index + k) as u64, loss);
            }
        }
        self.blocks = Scratch { sums, cells, slots, bits };
    }
}

impl<'a> Elements<'a> {
    /// Elements `range` of the block, all of class `class`.
    pub fn slice(&self, range: std::ops::Range<usize>, class: usize) -> Elements<'a> {
        Elements {
            first_class: class,
            one_class: true,
            first_index: self.first_index + range.start,
            x: &self.x[range.clone()],
            t: &self.t[range.clone()],
            p: &self.p[range.clone()],
            loss: &self.loss[range.clone()],
            baseline: &self.baseline[range],
        }
    }

    /// Element k as an [`Example`] of its class among `classes`.
    pub fn example_of(&self, k: usize, classes: usize) -> Example {
        let class = if self.one_class { self.first_class } else { (self.first_class + k) % classes };
        Example { class, ..self.example(k) }
    }

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

    fn elements_of(parts: &[Vec<f64>; 5], first_class: usize, one_class: bool) -> Elements<'_> {
        let [x, t, p, loss, baseline] = parts;
        Elements { first_class, one_class, first_index: 0, x, t, p, loss, baseline }
    }

    /// Settings that take every figure of an element: the hardest
    /// examples, calibration and both groups.
    fn settings(classes: usize) -> TallySettings {
        TallySettings {
            classes,
            easy_threshold: 0.5,
            bins: 7,
            grouping: Grouping::PositivesNegatives,
            findings: crate::tally::findings::FindingSettings {
                kind: crate::tally::findings::ExampleKind::Element,
                examples: 6,
                calibration_edges: crate::tally::findings::linspace_edges(15),
                confusion: false,
                classes,
            },
            ..Default::default()
        }
    }

    /// The block through the lanes and one by one; with `one_class`, every
    /// element is of `first_class`.
    fn tallies(classes: usize, first_class: usize, n: usize, one_class: bool) -> (Tally, Tally) {
        let settings = settings(classes);
        let parts = block(n);
        let elements = elements_of(&parts, first_class, one_class);
        let mut lanes = Tally::new(&settings);
        lanes.add_elements(&elements);
        let mut one_by_one = Tally::new(&settings);
        one_by_one.add_all((0..n).map(|k| {
            let example = elements.example(k);
            let class = if one_class { first_class } else { example.class % classes };
            Example { class, ..example }
        }));
        (lanes, one_by_one)
    }

    #[test]
    fn lanes_agree_with_examples_one_by_one() {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-14 * a.abs().max(b.abs()) || a == b;
        let cases =
            [(8, 0, 64), (11, 5, 1024), (80, 79, 333), (100, 3, 7), (3, 1, 50), (1, 0, 1000), (5, 4, 13)];
        for (&(classes, first_class, n), one_class) in
            cases.iter().flat_map(|case| [(case, false), (case, true)])
        {
            let (lanes, one_by_one) = tallies(classes, first_class, n, one_class);
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
            assert_eq!(lanes.findings.hardest.sorted(), one_by_one.findings.hardest.sorted());
            let (a, b) = (&lanes.findings.calibration.buckets, &one_by_one.findings.calibration.buckets);
            for (a, b) in a.iter().zip(b) {
                assert_eq!(a.count, b.count);
                assert!(close(a.confidence.0, b.confidence.0));
                assert!(close(a.accuracy.0, b.accuracy.0));
            }
            for (a, b) in lanes.classes.iter().zip(&one_by_one.classes) {
                assert!(close(a.confidence.0, b.confidence.0));
            }
            assert!(close(lanes.total(), one_by_one.total()));
        }
    }

    #[test]
    fn every_build_of_the_whole_block_gives_the_same_tally() {
        use crate::math::widest_at;
        let parts = block(1000);
        let elements = elements_of(&parts, 4, false);
        let settings = settings(13);
        let tally_at = |level| {
            let mut tally = Tally::new(&settings);
            widest_at(
                level,
                #[inline(always)]
                || tally.add_elements_here(&elements),
            );
            serde_json::to_string(&tally).expect("a tally serialises")
        };
        let portable = tally_at(Level::Portable);
        assert_eq!(tally_at(Level::Avx2), portable);
        assert_eq!(tally_at(Level::detect()), portable);
    }

    #[test]
    fn every_build_gives_the_same_sums() {
        let parts = block(1000);
        let elements = elements_of(&parts, 4, false);
        let run = |level| {
            let mut sums = ClassSums::default();
            sums.ready(13);
            let mut cells = vec![0; 1000 + LANES];
            let mut slots = vec![0; 1000 + LANES];
            let mut bits = vec![0; 1000 + LANES];
            let pass = BlockPass {
                elements: &elements,
                classes: 13,
                bins: 10,
                threshold: 0.5,
                sums: &mut sums,
                cells: &mut cells,
                calibration_bins: 15,
                slots: &mut slots,
                bits: &mut bits,
            };
            dispatch(level, pass);
            let sums = sums.loss.iter().chain(&sums.loss_error).map(|v| v.to_bits()).collect::<Vec<_>>();
            (sums, cells, slots, bits)
        };
        let portable = run(Level::Portable);
        assert_eq!(run(Level::detect()), portable);
        assert_eq!(run(Level::Avx2), portable);
    }

    #[test]
    fn every_build_counts_each_kind_of_loss_by_its_scalar_bits() {
        use crate::concentration::counted_bits;
        let halfway_to_overflow = f64::from(f32::MAX) + 2f64.powi(103);
        let mut losses = vec![
            f64::NEG_INFINITY,
            -1.0,
            -0.0,
            0.0,
            1e-300,
            1e-45,
            0.123_456_789,
            1.0,
            halfway_to_overflow.next_down(),
            halfway_to_overflow,
            f64::MAX,
            f64::INFINITY,
            f64::NAN,
            -f64::NAN,
        ];
        losses.extend((0..99).map(|i| (i as f64 * 0.618_033_988_749_895).exp2() - 1.0));
        let expected: Vec<u32> = losses.iter().map(|&l| counted_bits(l)).collect();
        let zeros = vec![0.0; losses.len()];
        let elements = Elements {
            first_class: 0,
            one_class: true,
            first_index: 0,
            x: &zeros,
            t: &zeros,
            p: &zeros,
            loss: &losses,
            baseline: &zeros,
        };
        for level in [Level::Portable, Level::Avx2, Level::detect()] {
            let n = losses.len();
            let mut sums = ClassSums::default();
            sums.ready(1);
            let (mut cells, mut slots, mut bits) =
                (vec![0; n + LANES], vec![0; n + LANES], vec![0; n + LANES]);
            let pass = BlockPass {
                elements: &elements,
                classes: 1,
                bins: 10,
                threshold: 0.5,
                sums: &mut sums,
                cells: &mut cells,
                calibration_bins: 0,
                slots: &mut slots,
                bits: &mut bits,
            };
            dispatch(level, pass);
            assert_eq!(bits[..n], expected, "{level:?}");
        }
    }

    #[test]
    fn calibration_slots_are_the_buckets_of_the_edges() {
        use crate::tally::findings::{Calibration, linspace_edges};
        for bins in [1, 2, 3, 7, 10, 15, 16, 100] {
            let edges = linspace_edges(bins);
            let calibration = Calibration::new(&edges);
            let mut values = vec![0.0, 1.0, -0.0, -1e-300, f64::NAN, 0.5, 1.0 - f64::EPSILON / 2.0];
            for &e in &edges {
                values.extend([e, e.next_up(), e.next_down()]);
            }
            values.extend((0..997).map(|i| (i as f64 * 0.618_033_988_749_895) % 1.0));
            let expected: Vec<f64> = values
                .iter()
                .map(|&v| calibration.bucket_of(v).map_or(-1.0, |b| (b * WAYS) as f64))
                .collect();
            for level in [Level::Portable, Level::detect()] {
                struct Slots<'a>(&'a [f64], usize);
                impl Kernel for Slots<'_> {
                    type Output = Vec<f64>;
                    unsafe fn run<V: Lanes>(self) -> Vec<f64> {
                        let mut out = Vec::new();
                        for chunk in self.0.chunks(LANES) {
                            let lanes: [f64; LANES] =
                                std::array::from_fn(|k| chunk.get(k).copied().unwrap_or(0.0));
                            // SAFETY: `dispatch` runs this where V's instructions exist.
                            let slots = unsafe { calibration_slot(V::load(&lanes), V::splat(0.0), self.1) };
                            out.extend(&slots.to_array()[..chunk.len()]);
                        }
                        out
                    }
                }
                let got = dispatch(level, Slots(&values, bins));
                for ((v, g), e) in values.iter().zip(&got).zip(&expected) {
                    assert_eq!(g, e, "{bins} bins, confidence {v:e}, {level:?}");
                }
            }
        }
    }
}
