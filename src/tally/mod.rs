//! Accumulation shared by every loss: each loss turns a range of examples
//! into [`Example`]s and hands them to a [`Tally`]; tallies of fixed chunks
//! are merged in chunk order, so the result is the same for any thread count.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use crate::concentration::{self, Groups};
use crate::output::Sink;

mod elements;
pub mod findings;

pub use elements::Elements;
use findings::{ExampleKind, FindingSettings, Findings, Noted};

/// What one counted example contributes.
#[derive(Debug, Clone, Copy)]
pub struct Example {
    /// The class the example is filed under (its target class, or its column).
    pub class: usize,
    /// The example's loss, with every weight applied.
    pub loss: f64,
    /// The probability the model gives the true outcome.
    pub p_t: f64,
    /// Whether the prediction is right (argmax, or the sign of the logit).
    pub correct: bool,
    /// Positive (a target class that is not background) or negative.
    pub positive: bool,
    /// The same example's plain, unweighted CE (BCE for sigmoid losses): the
    /// baseline that weighted and focal losses are compared with.
    pub baseline: f64,
    /// GHM's gradient norm: |p - t| for sigmoid losses, 1 - p_t for softmax.
    pub grad_norm: f64,
    /// Row-major index over the example axes (the loss's `reduction='none'` layout).
    pub index: u64,
    /// Softmax: the target class; elementwise: the target value.
    pub target: f64,
    /// Softmax: the argmax class; elementwise: unused (0).
    pub predicted: u32,
    /// Softmax: the largest probability; elementwise: σ(x).
    pub confidence: f64,
}

impl From<&Example> for Noted {
    fn from(example: &Example) -> Noted {
        Noted {
            index: example.index,
            class: example.class as u32,
            target: example.target,
            predicted: example.predicted,
            confidence: example.confidence,
            p_t: example.p_t,
            loss: example.loss,
        }
    }
}

/// How examples are grouped for the concentration figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Grouping {
    /// One group of all examples.
    #[default]
    All,
    /// Positives and negatives apart.
    PositivesNegatives,
}

/// The most classes a pass tallies: four times the largest vocabulary
/// language models use (256,000 tokens). Every class takes a row of the
/// merged tally (88 bytes), of each chunk tally in flight that touches it
/// (elementwise losses touch every class), a slot of each worker's class
/// index (4 bytes), and a row of the report, whose rendering repeats it: at least
/// [`BYTES_PER_CLASS`] in all (measured: about 0.5 KiB a class as JSON, 4 KiB
/// as a full table), so at the limit the per-class part of a run stays
/// within about 0.5 GiB as JSON. A class axis longer than that is a mistake
/// (the wrong `--class-axis`) far more often than a model.
pub const MAX_CLASSES: usize = 1 << 20;

/// The least one class costs a run: its rows in the tallies and in the
/// report, and its JSON text.
pub const BYTES_PER_CLASS: usize = 512;

/// Checks, before any per-class table is allocated, that `classes` classes
/// can be tallied; the message says the limit and why.
pub fn check_classes(classes: usize) -> Result<(), String> {
    if classes <= MAX_CLASSES {
        return Ok(());
    }
    let needed = (classes as u128 * BYTES_PER_CLASS as u128).min(u64::MAX as u128) as u64;
    Err(format!(
        "{classes} classes are more than the {MAX_CLASSES} losscope tallies: each class takes a row of \
         every tally and of the report, at least {BYTES_PER_CLASS} bytes in all, so {classes} classes \
         would need {}",
        crate::input::size_text(needed)
    ))
}

/// Fixed settings of a tally.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TallySettings {
    pub classes: usize,
    pub easy_threshold: f64,
    pub bins: usize,
    pub grouping: Grouping,
    /// What the pass notes about particular examples.
    pub findings: FindingSettings,
    /// Where each example's loss is written, when it is.
    #[serde(skip)]
    pub per_example: Option<Sink>,
}

impl TallySettings {
    /// Whether tallies made with `self` and with `other` can be merged.
    pub fn same_layout(&self, other: &TallySettings) -> bool {
        self.classes == other.classes
            && self.easy_threshold.to_bits() == other.easy_threshold.to_bits()
            && self.bins == other.bins
            && self.grouping == other.grouping
            && self.findings == other.findings
    }
}

/// A compensated (Neumaier) sum: exact enough that sums of millions of
/// examples stay within 1e-15 of the true value, whatever their order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Sum {
    sum: f64,
    compensation: f64,
}

impl Sum {
    #[inline(always)]
    pub fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    pub fn merge(&mut self, other: &Sum) {
        self.add(other.sum);
        // A sum that overflowed, or took an infinite term, is ±inf with a
        // compensation of -inf or NaN that means nothing: adding it would
        // turn inf into NaN.
        if other.sum.is_finite() {
            self.add(other.compensation);
        }
    }

    pub fn value(&self) -> f64 {
        // Once a term is infinite the compensation holds inf - inf = NaN;
        // the running sum alone is then the answer.
        if self.sum.is_finite() { self.sum + self.compensation } else { self.sum }
    }
}

/// A plain running sum, for the diagnostic figures (histograms, easy/hard,
/// means): one addition per term. Their shares need nowhere near the
/// last digit that `value`, `sum` and the per-class sums are held to.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Plain(f64);

/// What a bucket sums its losses with.
pub trait Accumulate: Copy + Default {
    fn add(&mut self, x: f64);
    fn merge(&mut self, other: &Self);
    fn value(&self) -> f64;
}

impl Accumulate for Sum {
    #[inline(always)]
    fn add(&mut self, x: f64) {
        Sum::add(self, x)
    }

    fn merge(&mut self, other: &Self) {
        Sum::merge(self, other)
    }

    fn value(&self) -> f64 {
        Sum::value(self)
    }
}

impl Accumulate for Plain {
    #[inline(always)]
    fn add(&mut self, x: f64) {
        self.0 += x;
    }

    fn merge(&mut self, other: &Self) {
        self.0 += other.0;
    }

    fn value(&self) -> f64 {
        self.0
    }
}

/// The input arrays whose values are checked for NaN and infinities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operand {
    Logits = 0,
    Targets = 1,
}

/// How many values of an operand are not finite, and the first of them in
/// C order (the smallest flat index, whatever order examples are read in).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct NonFinite {
    pub count: u64,
    pub first: Option<usize>,
}

impl NonFinite {
    #[inline]
    fn record(&mut self, count: u64, at: usize) {
        if count > 0 {
            self.count += count;
            self.first = Some(self.first.map_or(at, |first| first.min(at)));
        }
    }
}

/// Count, loss and baseline loss of a set of examples, both summed with `L`
/// (compensated for the per-class sums, plain elsewhere).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Bucket<L: Accumulate = Plain> {
    pub count: u64,
    pub loss: L,
    pub baseline: L,
}

impl<L: Accumulate> Bucket<L> {
    #[inline(always)]
    fn add(&mut self, loss: f64, baseline: f64) {
        self.count += 1;
        self.loss.add(loss);
        self.baseline.add(baseline);
    }

    fn merge(&mut self, other: &Bucket<L>) {
        self.count += other.count;
        self.loss.merge(&other.loss);
        self.baseline.merge(&other.baseline);
    }
}

/// Bins of GHM's gradient norm over [0, 1].
pub const GRADIENT_BINS: usize = 10;
/// Each cell of the difficulty table is kept this many times over, example
/// k of a batch going to copy k mod WAYS: most examples of a batch often
/// fall in one cell, and with one copy each addition would wait for the
/// previous one to be stored and read back. Eight copies keep that wait off
/// the critical path of the elementwise losses (four left it on).
const WAYS: usize = 8;

/// The bin of `x` among `bins` equal bins over [0, 1]; values outside go to
/// the nearest end, NaN to the first bin.
#[inline(always)]
fn bin_of(x: f64, bins: usize) -> usize {
    // f64::max turns NaN into 0.
    let clamped = (x * bins as f64).max(0.0).min((bins - 1) as f64);
    // SAFETY: `clamped` is finite and within [0, bins - 1].
    unsafe { clamped.to_int_unchecked::<u32>() as usize }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClassTally {
    pub all: Bucket<Sum>,
    pub positives: Bucket,
    pub p_t: Plain,
    pub correct: u64,
    /// Σ confidence: the largest probability (softmax) or σ(x) (elementwise).
    pub confidence: Plain,
}

impl ClassTally {
    fn merge(&mut self, other: &ClassTally) {
        self.all.merge(&other.all);
        self.positives.merge(&other.positives);
        self.p_t.merge(&other.p_t);
        self.correct += other.correct;
        self.confidence.merge(&other.confidence);
    }
}

/// Marks a class without a row in [`Touched::slots`].
const UNTOUCHED: u32 = u32::MAX;

/// The class rows of a chunk's tally: only the classes its examples touch,
/// in the order first touched. A chunk of a long class axis (a language
/// model's vocabulary) touches a few classes of it, and every chunk tally
/// in flight would otherwise hold a row of each.
#[derive(Debug, Clone, Default)]
struct Touched {
    /// Per class, its row, or [`UNTOUCHED`]: lent by the worker from chunk
    /// to chunk, and all untouched again between chunks.
    slots: Vec<u32>,
    /// The class of each row.
    classes: Vec<u32>,
    rows: Vec<ClassTally>,
}

impl Touched {
    #[inline(always)]
    fn row(&mut self, class: usize) -> &mut ClassTally {
        let slot = self.slots[class];
        if slot != UNTOUCHED {
            return &mut self.rows[slot as usize];
        }
        self.first_touch(class)
    }

    #[cold]
    fn first_touch(&mut self, class: usize) -> &mut ClassTally {
        let slot = self.rows.len();
        self.slots[class] = slot as u32;
        self.classes.push(class as u32);
        self.rows.push(ClassTally::default());
        &mut self.rows[slot]
    }

    /// Gives the slots back, all untouched, for the worker's next chunk.
    fn release_slots(&mut self) -> Vec<u32> {
        let mut slots = std::mem::take(&mut self.slots);
        for &class in &self.classes {
            slots[class as usize] = UNTOUCHED;
        }
        slots
    }
}

/// What a worker lends each of its chunk tallies in turn: scratch space
/// sized by the classes, which a tally waiting to be merged does not need.
#[derive(Default)]
struct Lent {
    histograms: Groups,
    slots: Vec<u32>,
    blocks: elements::Scratch,
}

/// Where an example falls in the difficulty table: its p_t bin, its
/// gradient-norm bin and whether it is easy. The p_t histogram, the
/// gradient-norm histogram and the easy/hard split are the table's margins,
/// so each example updates one cell instead of three buckets.
#[derive(Debug, Clone, Copy)]
struct Cell {
    p_t_bin: usize,
    gradient_bin: usize,
    easy: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tally {
    pub settings: TallySettings,
    /// One row per class, in class order; empty in a chunk's tally, whose
    /// rows are in `touched`.
    pub classes: Vec<ClassTally>,
    #[serde(skip)]
    touched: Option<Touched>,
    /// The mean's divisor, as each loss defines it (`Σ w[y]` for weighted CE).
    pub normalizer: Sum,
    /// The difficulty table: `WAYS` copies of each [`Cell`], see [`Tally::cell_index`].
    cells: Vec<Bucket>,
    pub ignored: u64,
    /// Non-finite inputs, per operand: `[logits, targets]`.
    pub nonfinite: [NonFinite; 2],
    /// Float targets outside [0, 1], where a pass checks for them (sigmoid
    /// focal losses: an ignore label such as 255 read as a soft target).
    pub outside_unit: NonFinite,
    /// The concentration histograms, one per group (`[all]`, or
    /// `[negatives, positives]`). [`run`] lends each worker's histograms to
    /// its chunks in turn.
    pub concentration: Groups,
    /// The hardest examples, confusion pairs and calibration bins.
    pub findings: Findings,
    /// Scratch space of [`Tally::add_elements`].
    #[serde(skip)]
    blocks: elements::Scratch,
}

impl Tally {
    pub fn new(settings: &TallySettings) -> Self {
        Tally::with_rows(settings, concentration::new_groups(), None)
    }

    /// A tally with a row of each class, or with `touched` rows only.
    fn with_rows(settings: &TallySettings, concentration: Groups, touched: Option<Touched>) -> Self {
        let rows = if touched.is_some() { 0 } else { settings.classes };
        Tally {
            classes: vec![ClassTally::default(); rows],
            touched,
            normalizer: Sum::default(),
            cells: vec![Bucket::default(); settings.bins * GRADIENT_BINS * 2 * WAYS],
            ignored: 0,
            nonfinite: [NonFinite::default(); 2],
            outside_unit: NonFinite::default(),
            concentration,
            blocks: elements::Scratch::default(),
            findings: Findings::new(&settings.findings),
            settings: settings.clone(),
        }
    }

    /// A chunk's tally, with rows for the classes it touches only.
    fn for_chunk(settings: &TallySettings, lent: Lent) -> Self {
        let Lent { histograms, mut slots, blocks } = lent;
        slots.resize(settings.classes, UNTOUCHED);
        let touched = Touched { slots, ..Touched::default() };
        let mut tally = Tally::with_rows(settings, histograms, Some(touched));
        tally.blocks = blocks;
        tally
    }

    /// Takes back what [`Tally::for_chunk`] lent, once the chunk is tallied.
    fn give_back(&mut self) -> Lent {
        Lent {
            histograms: std::mem::take(&mut self.concentration),
            slots: self.touched.as_mut().map(Touched::release_slots).unwrap_or_default(),
            blocks: std::mem::take(&mut self.blocks),
        }
    }

    /// The row of `class`.
    #[inline(always)]
    fn row(&mut self, class: usize) -> &mut ClassTally {
        match &mut self.touched {
            None => &mut self.classes[class],
            Some(touched) => touched.row(class),
        }
    }

    #[inline(always)]
    fn cell_index(&self, cell: Cell, way: usize) -> usize {
        ((cell.p_t_bin * GRADIENT_BINS + cell.gradient_bin) * 2 + cell.easy as usize) * WAYS + way
    }

    /// Adds one example. Inlined into the passes' loops: an example handed
    /// through memory to a call is read back before its stores have landed.
    #[inline(always)]
    pub fn add(&mut self, example: Example) {
        self.add_all([example]);
    }

    /// Adds a batch of examples.
    #[inline(always)]
    pub fn add_all(&mut self, examples: impl IntoIterator<Item = Example>) {
        let threshold = self.settings.easy_threshold;
        let by_sign = self.settings.grouping == Grouping::PositivesNegatives;
        let bins = self.settings.bins;
        for (k, example) in examples.into_iter().enumerate() {
            let Example { class, loss, p_t, correct, positive, baseline, grad_norm, .. } = example;
            let row = self.row(class);
            row.all.add(loss, baseline);
            if positive {
                row.positives.add(loss, baseline);
            }
            row.p_t.add(p_t);
            row.correct += correct as u64;
            row.confidence.add(example.confidence);
            self.note(&example);
            let cell = Cell {
                p_t_bin: bin_of(p_t, bins),
                gradient_bin: bin_of(grad_norm, GRADIENT_BINS),
                easy: p_t > threshold,
            };
            let index = self.cell_index(cell, k % WAYS);
            self.cells[index].add(loss, baseline);
            self.concentration[(by_sign && positive) as usize].add(loss);
        }
    }

    /// Hands an example to the findings and the per-example output.
    #[inline(always)]
    fn note(&mut self, example: &Example) {
        let accuracy = match self.settings.findings.kind {
            ExampleKind::Row => example.correct as u8 as f64,
            ExampleKind::Element => example.target,
        };
        self.findings.note(Noted::from(example), accuracy);
        if let Some(sink) = &self.settings.per_example {
            sink.write(example.index, example.loss);
        }
    }

    /// The sum of every counted loss.
    pub fn total(&self) -> f64 {
        self.class_sum(|row| &row.all.loss)
    }

    /// The sum of every counted example's baseline loss.
    pub fn baseline_total(&self) -> f64 {
        self.class_sum(|row| &row.all.baseline)
    }

    fn class_sum(&self, of: impl Fn(&ClassTally) -> &Sum) -> f64 {
        let mut sum = Sum::default();
        for row in &self.classes {
            sum.merge(of(row));
        }
        sum.value()
    }

    /// One margin of the table: `count` buckets, cell c going to bucket
    /// `key(c)`, each added up in table order in one pass over the table.
    fn margins(&self, count: usize, key: impl Fn(Cell) -> usize) -> Vec<Bucket> {
        let mut margins = vec![Bucket::default(); count];
        for p_t_bin in 0..self.settings.bins {
            for gradient_bin in 0..GRADIENT_BINS {
                for easy in [false, true] {
                    let cell = Cell { p_t_bin, gradient_bin, easy };
                    for way in 0..WAYS {
                        margins[key(cell)].merge(&self.cells[self.cell_index(cell, way)]);
                    }
                }
            }
        }
        margins
    }

    /// Examples with p_t above the easy threshold.
    pub fn easy(&self) -> Bucket {
        self.margins(2, |cell| cell.easy as usize)[1]
    }

    /// Examples with p_t at or below the easy threshold.
    pub fn hard(&self) -> Bucket {
        self.margins(2, |cell| cell.easy as usize)[0]
    }

    /// The p_t histogram, one bucket per bin over [0, 1].
    pub fn bins(&self) -> Vec<Bucket> {
        self.margins(self.settings.bins, |cell| cell.p_t_bin)
    }

    /// The gradient-norm histogram, [`GRADIENT_BINS`] buckets over [0, 1].
    pub fn gradient_bins(&self) -> Vec<Bucket> {
        self.margins(GRADIENT_BINS, |cell| cell.gradient_bin)
    }

    /// Records the non-finite values among `values`, which were read from
    /// `operand` starting at flat index `start`, `stride` apart.
    #[inline(always)]
    pub fn record_nonfinite(&mut self, operand: Operand, values: &[f64], start: usize, stride: usize) {
        // A branch-free count first, which the compiler keeps in vector
        // lanes: nearly every block has none.
        let count = values.iter().fold(0u32, |n, v| n + !v.is_finite() as u32);
        if count > 0 {
            let first = values.iter().position(|v| !v.is_finite()).unwrap_or(0);
            self.add_nonfinite(operand, count as u64, start + first * stride);
        }
    }

    /// Records the targets outside [0, 1] among `values`, read from flat
    /// index `start` on, one apart; `skip` marks the ones not to check.
    #[inline(always)]
    pub fn record_outside_unit(&mut self, values: &[f64], start: usize, skip: impl Fn(usize) -> bool) {
        // A branch-free scan first: nearly every block has none.
        let suspects = values.iter().fold(0u32, |n, v| n + !(0.0..=1.0).contains(v) as u32);
        if suspects == 0 {
            return;
        }
        let outside = |k: usize| !(0.0..=1.0).contains(&values[k]) && values[k].is_finite() && !skip(k);
        if let Some(first) = (0..values.len()).find(|&k| outside(k)) {
            let count = (first..values.len()).filter(|&k| outside(k)).count();
            self.outside_unit.record(count as u64, start + first);
        }
    }

    /// Records `count` non-finite values of `operand`, the first of them at
    /// flat index `at`.
    #[inline]
    pub fn add_nonfinite(&mut self, operand: Operand, count: u64, at: usize) {
        self.nonfinite[operand as usize].record(count, at);
    }

    /// Merges the tally of examples that follow this one's.
    pub fn merge(&mut self, other: &Tally) {
        self.merge_counts(other);
        concentration::merge_groups(&mut self.concentration, &other.concentration);
    }

    /// Checks that a tally read back from a file has the sizes its
    /// settings give, which the figures index by.
    pub fn check_layout(&self) -> Result<(), String> {
        let s = &self.settings;
        let cells = s.bins.checked_mul(GRADIENT_BINS * 2 * WAYS);
        let edges = &s.findings.calibration_edges;
        let problem = if self.classes.len() != s.classes || s.findings.classes != s.classes {
            "its class rows do not match its classes"
        } else if s.bins == 0 || cells != Some(self.cells.len()) {
            "its difficulty table does not match its bins"
        } else if !(edges.is_empty()
            || edges.len() >= 2 && *edges == findings::linspace_edges(edges.len() - 1))
        {
            "its calibration edges are not equal bins over [0, 1]"
        } else if self.findings.calibration.edges() != edges.as_slice()
            || self.findings.calibration.buckets.len() != edges.len()
        {
            "its calibration bins do not match its edges"
        } else if !self.findings.hardest.fits(s.findings.examples, s.classes) {
            "its hardest examples do not match its settings"
        } else {
            return Ok(());
        };
        Err(problem.into())
    }

    fn merge_counts(&mut self, other: &Tally) {
        match &other.touched {
            // A class the chunk did not touch has an empty row: merging it
            // would change nothing but the compensation of a sum already
            // infinite, which no figure reads.
            Some(touched) => {
                for (&class, theirs) in touched.classes.iter().zip(&touched.rows) {
                    self.classes[class as usize].merge(theirs);
                }
            }
            None => {
                for (mine, theirs) in self.classes.iter_mut().zip(&other.classes) {
                    mine.merge(theirs);
                }
            }
        }
        self.findings.merge(&other.findings);
        self.normalizer.merge(&other.normalizer);
        for (mine, theirs) in self.cells.iter_mut().zip(&other.cells) {
            mine.merge(theirs);
        }
        self.ignored += other.ignored;
        for (mine, theirs) in self.nonfinite.iter_mut().zip(&other.nonfinite) {
            if let Some(at) = theirs.first {
                mine.record(theirs.count, at);
            }
        }
        if let Some(at) = other.outside_unit.first {
            self.outside_unit.record(other.outside_unit.count, at);
        }
    }
}

/// The most chunks one pass is cut into: enough to keep both cores busy, few
/// enough that merging them stays cheap.
pub const MAX_CHUNKS: usize = 64;
/// The least work, in input elements, worth a chunk of its own.
const MIN_CHUNK_ELEMENTS: usize = 1 << 16;

/// Splits `units` units of `unit_cost` elements each into fixed chunks. The
/// split depends on the input's size only, never on the thread count.
pub fn chunks(units: usize, unit_cost: usize) -> Vec<Range<usize>> {
    let min_units = (MIN_CHUNK_ELEMENTS / unit_cost.max(1)).max(1);
    let per_chunk = units.div_ceil(MAX_CHUNKS).max(min_units);
    (0..units).step_by(per_chunk.max(1)).map(|start| start..(start + per_chunk).min(units)).collect()
}

/// Runs `eval` over fixed chunks of `units` in parallel and merges the
/// chunk tallies in order. `on_chunk` reports progress (units done).
pub fn run<F>(
    units: usize,
    unit_cost: usize,
    settings: &TallySettings,
    on_chunk: &(dyn Fn(u64) + Sync),
    eval: F,
) -> Tally
where
    F: Fn(Range<usize>, &mut Tally) + Sync,
{
    /// Chunks finished out of turn wait in `pending` until every earlier
    /// chunk is merged: the floating-point sums are merged in chunk order
    /// whatever the thread count, and since workers take chunks in order,
    /// only about one chunk per worker ever waits.
    struct Merge {
        next: usize,
        pending: BTreeMap<usize, Tally>,
        merged: Tally,
    }
    let chunks = chunks(units, unit_cost);
    let taken = AtomicUsize::new(0);
    let state = Mutex::new(Merge {
        next: 0,
        pending: BTreeMap::new(),
        merged: Tally::with_rows(settings, Groups::default(), None),
    });
    let lock = || state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let work = || {
        // The concentration histograms hold integers, whose sums do not
        // depend on the order: each worker keeps one set for all its chunks,
        // and its scratch space, so that a chunk waiting to be merged holds
        // its figures only.
        let mut lent = Lent { histograms: concentration::new_groups(), ..Lent::default() };
        loop {
            let index = taken.fetch_add(1, Ordering::Relaxed);
            let Some(range) = chunks.get(index) else { break };
            let mut tally = Tally::for_chunk(settings, lent);
            eval(range.clone(), &mut tally);
            on_chunk(range.len() as u64);
            lent = tally.give_back();
            let mut guard = lock();
            let state = &mut *guard;
            state.pending.insert(index, tally);
            while let Some(part) = state.pending.remove(&state.next) {
                state.merged.merge_counts(&part);
                state.next += 1;
            }
        }
        concentration::merge_groups(&mut lock().merged.concentration, &lent.histograms);
    };
    rayon::scope(|scope| {
        for _ in 0..rayon::current_num_threads().min(chunks.len()) {
            scope.spawn(|_| work());
        }
    });
    state.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner()).merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_infinite_term_makes_an_infinite_sum_not_nan() {
        let mut s = Sum::default();
        s.add(1.0);
        s.add(f64::INFINITY);
        s.add(2.0);
        assert_eq!(s.value(), f64::INFINITY);
    }

    #[test]
    fn an_overflowing_sum_stays_infinite_through_merges() {
        // Finite terms whose sum overflows, as PyTorch's float64 sum gives inf.
        let mut part = Sum::default();
        for _ in 0..100 {
            part.add(1e307);
        }
        assert_eq!(part.value(), f64::INFINITY);
        let mut total = Sum::default();
        total.merge(&part);
        total.merge(&Sum::default());
        total.merge(&part);
        assert_eq!(total.value(), f64::INFINITY);
        let mut infinite_term = Sum::default();
        infinite_term.add(f64::INFINITY);
        infinite_term.add(1.0);
        let mut merged = Sum::default();
        merged.add(2.0);
        merged.merge(&infinite_term);
        assert_eq!(merged.value(), f64::INFINITY);
    }

    #[test]
    fn opposite_infinities_are_nan() {
        let mut s = Sum::default();
        s.add(f64::INFINITY);
        let mut other = Sum::default();
        other.add(f64::NEG_INFINITY);
        s.merge(&other);
        assert!(s.value().is_nan());
    }

    #[test]
    fn compensated_sum_keeps_small_terms() {
        let mut s = Sum::default();
        s.add(1e16);
        for _ in 0..1000 {
            s.add(1.0);
        }
        s.add(-1e16);
        assert_eq!(s.value(), 1000.0);
    }

    /// Example k of a test pass, spread unevenly over `classes` classes.
    fn example(k: usize, classes: usize) -> Example {
        let x = ((k * 7919) % 1013) as f64 / 1013.0;
        Example {
            class: (k * k + 3 * k) % classes,
            loss: -x.max(1e-3).ln() * 1e-3f64.powi((k % 3) as i32),
            p_t: x,
            correct: k.is_multiple_of(3),
            positive: k.is_multiple_of(5),
            baseline: x + 1e-9 * k as f64,
            grad_norm: 1.0 - x,
            index: k as u64,
            target: 0.0,
            predicted: 0,
            confidence: x,
        }
    }

    #[test]
    fn chunks_with_rows_of_their_classes_merge_as_full_tables_do() {
        for classes in [3, 100, 5000] {
            let settings = TallySettings { classes, easy_threshold: 0.5, bins: 10, ..Default::default() };
            let eval =
                |range: Range<usize>, tally: &mut Tally| tally.add_all(range.map(|k| example(k, classes)));
            let merged = run(3000, 100, &settings, &|_| {}, eval);
            let mut full = Tally::new(&settings);
            for range in chunks(3000, 100) {
                let mut chunk = Tally::new(&settings);
                eval(range, &mut chunk);
                full.merge_counts(&chunk);
            }
            let rows = |t: &Tally| serde_json::to_string(&t.classes).expect("rows serialise");
            assert_eq!(rows(&merged), rows(&full), "{classes} classes");
        }
    }

    #[test]
    fn chunks_cover_every_unit_once_and_ignore_threads() {
        for &(units, cost) in &[(0usize, 3usize), (1, 1), (10_007, 37), (1_000_000, 100), (7, 100_000)] {
            let parts = chunks(units, cost);
            assert!(parts.len() <= MAX_CHUNKS);
            let covered: usize = parts.iter().map(|r| r.len()).sum();
            assert_eq!(covered, units);
            for pair in parts.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
            }
        }
    }
}
