//! What a pass finds about particular examples, beside the sums: the
//! hardest examples, where the wrong probability goes (confusion pairs),
//! and how confidence matches accuracy (calibration bins). Each is built per
//! chunk and merged in chunk order, so the result is the same for any thread
//! count: the hardest examples are ordered by (loss, flat index), a total
//! order; the other figures are sums merged in a fixed order.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

use super::{Accumulate, Elements, Plain, Sum, WAYS};
use crate::math::rank_key;

/// What an example of a loss is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ExampleKind {
    /// A row over the classes (CE, softmax focal, an SSD prior): its target
    /// and prediction are classes, and its accuracy is argmax = target.
    #[default]
    Row,
    /// One element (BCE, sigmoid focal): its target is a value, its
    /// prediction σ(x), and its accuracy the target (calibration's binary case).
    Element,
}

/// How the findings are gathered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingSettings {
    pub kind: ExampleKind,
    /// How many hardest examples to keep; 0 keeps none.
    pub examples: usize,
    /// The edges of the calibration bins, `bins + 1` of them from 0 to 1;
    /// empty for none.
    pub calibration_edges: Vec<f64>,
    /// Whether to count (target, predicted) pairs: softmax losses only.
    pub confusion: bool,
    /// The classes of the loss.
    pub classes: usize,
}

impl Default for FindingSettings {
    fn default() -> Self {
        FindingSettings {
            kind: ExampleKind::Row,
            examples: 0,
            calibration_edges: Vec::new(),
            confusion: false,
            classes: 0,
        }
    }
}

/// The edges `torch.linspace(0, 1, bins + 1)` gives in float64: the first
/// half counted up from 0, the second down from 1, as its kernel does.
pub fn linspace_edges(bins: usize) -> Vec<f64> {
    let steps = bins + 1;
    let step = 1.0 / bins as f64;
    (0..steps)
        .map(|i| if i < steps / 2 { i as f64 * step } else { 1.0 - (steps - 1 - i) as f64 * step })
        .collect()
}

/// One example as the findings see it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Noted {
    /// Row-major index over the example axes.
    pub index: u64,
    /// The class the example is filed under.
    pub class: u32,
    /// Softmax: the target class; elementwise: the target value.
    pub target: f64,
    /// Softmax: the argmax class; elementwise: unused.
    pub predicted: u32,
    /// Softmax: the largest probability; elementwise: σ(x).
    pub confidence: f64,
    /// The probability of the true outcome.
    pub p_t: f64,
    pub loss: f64,
}

impl Noted {
    /// Harder first: the larger loss (NaN above all), then the lower index.
    fn harder(&self, other: &Noted) -> Ordering {
        rank_key(other.loss).total_cmp(&rank_key(self.loss)).then(self.index.cmp(&other.index))
    }
}

/// A heap entry ordered so that the easiest kept example is on top.
#[derive(Debug, Clone, Copy)]
struct Kept(Noted);

impl PartialEq for Kept {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Kept {}
impl PartialOrd for Kept {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Kept {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.harder(&other.0)
    }
}

/// The `k` hardest examples seen. Stored as the kept examples, and
/// rebuilt from them when read back.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(into = "KeptExamples", from = "KeptExamples")]
pub struct Hardest {
    k: usize,
    heap: BinaryHeap<Kept>,
    /// The easiest kept loss once the heap is full: anything below cannot enter.
    floor: f64,
}

impl Hardest {
    pub fn new(k: usize) -> Self {
        Hardest::with_capacity(k, k)
    }

    /// Keeping `k`, with room for `capacity` before the heap grows.
    fn with_capacity(k: usize, capacity: usize) -> Self {
        // Keeping none, every finite loss is below the floor: one comparison
        // turns away all but infinite and NaN losses, which `insert` refuses.
        let floor = if k == 0 { f64::INFINITY } else { f64::NEG_INFINITY };
        Hardest { k, heap: BinaryHeap::with_capacity(capacity + 1), floor }
    }

    #[inline(always)]
    pub fn offer(&mut self, noted: Noted) {
        self.offer_with(noted.loss, || noted);
    }

    /// Offers an example built only if its loss can enter.
    #[inline(always)]
    fn offer_with(&mut self, loss: f64, noted: impl FnOnce() -> Noted) {
        // Most examples are below the floor; NaN losses rank above all.
        if loss < self.floor {
            return;
        }
        self.insert(noted());
    }

    #[cold]
    fn insert(&mut self, noted: Noted) {
        if self.heap.len() < self.k {
            self.heap.push(Kept(noted));
        } else if let Some(top) = self.heap.peek()
            && noted.harder(&top.0) == Ordering::Less
        {
            self.heap.pop();
            self.heap.push(Kept(noted));
        } else {
            return;
        }
        if self.heap.len() == self.k {
            self.floor = self.heap.peek().map_or(f64::NEG_INFINITY, |top| top.0.loss);
        }
    }

    pub fn merge(&mut self, other: &Hardest) {
        for kept in &other.heap {
            self.offer(kept.0);
        }
    }

    /// Whether it keeps at most `k` examples of classes below `classes`.
    pub fn fits(&self, k: usize, classes: usize) -> bool {
        self.k == k
            && self.heap.len() <= k
            && self.heap.iter().all(|kept| (kept.0.class as usize) < classes.max(1))
    }

    /// Gives every kept example a new index, as when shards are put in a
    /// new order; the order of ties follows the new indices.
    pub fn renumber(&mut self, new_index: impl Fn(u64) -> u64) {
        let kept: Vec<Noted> =
            self.heap.drain().map(|k| Noted { index: new_index(k.0.index), ..k.0 }).collect();
        self.heap.extend(kept.into_iter().map(Kept));
    }

    /// The kept examples, hardest first.
    pub fn sorted(&self) -> Vec<Noted> {
        let mut all: Vec<Noted> = self.heap.iter().map(|k| k.0).collect();
        all.sort_by(Noted::harder);
        all
    }
}

/// The stored form of [`Hardest`].
#[derive(Serialize, Deserialize)]
struct KeptExamples {
    k: usize,
    kept: Vec<Noted>,
}

impl From<Hardest> for KeptExamples {
    fn from(hardest: Hardest) -> Self {
        KeptExamples { k: hardest.k, kept: hardest.sorted() }
    }
}

impl From<KeptExamples> for Hardest {
    fn from(stored: KeptExamples) -> Self {
        // The capacity is what was stored, not the `k` a damaged file may claim.
        let mut hardest = Hardest::with_capacity(stored.k, stored.kept.len());
        for noted in stored.kept {
            hardest.offer(noted);
        }
        hardest
    }
}

/// A multiplicative hash of a pair of class indices: one multiplication
/// where the default hasher would run SipHash on every wrong prediction.
#[derive(Debug, Clone, Copy, Default)]
struct PairHasher(u64);

impl Hasher for PairHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }
}

/// Classes up to which the pairs are counted in a dense table (16 bytes a
/// cell: 256 KiB at the limit) instead of a hash map.
const DENSE_CLASSES: usize = 128;

/// Per (target, predicted) pair with target ≠ predicted: the count and the loss.
/// Stored as its non-empty pairs, and rebuilt from them when read back.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(into = "ConfusionPairs", from = "ConfusionPairs")]
pub struct Confusion {
    /// `classes × classes` cells, target-major, when the classes are few;
    /// a cell's count and loss side by side, so that a wrong prediction
    /// touches one cache line.
    dense: Vec<(u64, f64)>,
    classes: usize,
    pairs: HashMap<(u32, u32), (u64, f64), BuildHasherDefault<PairHasher>>,
}

impl Confusion {
    pub fn new(classes: usize) -> Self {
        let dense = if classes <= DENSE_CLASSES { vec![(0, 0.0); classes * classes] } else { Vec::new() };
        Confusion { dense, classes, pairs: HashMap::default() }
    }

    #[inline(always)]
    pub fn add(&mut self, target: u32, predicted: u32, loss: f64) {
        self.add_pair(target, predicted, 1, loss);
    }

    /// Adds `count` examples of a pair whose losses sum to `loss`.
    #[inline(always)]
    fn add_pair(&mut self, target: u32, predicted: u32, count: u64, loss: f64) {
        if target == predicted {
            return;
        }
        let (t, p) = (target as usize, predicted as usize);
        let entry = if self.dense.is_empty() || t >= self.classes || p >= self.classes {
            self.pairs.entry((target, predicted)).or_insert((0, 0.0))
        } else {
            &mut self.dense[t * self.classes + p]
        };
        entry.0 += count;
        entry.1 += loss;
    }

    pub fn merge(&mut self, other: &Confusion) {
        if self.dense.len() < other.dense.len() {
            self.dense.resize(other.dense.len(), (0, 0.0));
            self.classes = other.classes;
        }
        for (mine, theirs) in self.dense.iter_mut().zip(&other.dense) {
            mine.0 += theirs.0;
            mine.1 += theirs.1;
        }
        for (&pair, &(count, loss)) in &other.pairs {
            let entry = self.pairs.entry(pair).or_insert((0, 0.0));
            entry.0 += count;
            entry.1 += loss;
        }
    }

    /// Every pair: (target, predicted, count, loss sum), the largest loss
    /// first, ties by (target, predicted).
    pub fn sorted(&self) -> Vec<(u32, u32, u64, f64)> {
        let dense = self
            .dense
            .iter()
            .enumerate()
            .filter(|(_, cell)| cell.0 > 0)
            .map(|(i, &(n, l))| ((i / self.classes) as u32, (i % self.classes) as u32, n, l));
        let mut all: Vec<_> = dense.chain(self.pairs.iter().map(|(&(t, p), &(n, l))| (t, p, n, l))).collect();
        // Pairs are distinct, so the order is total and an unstable sort gives it.
        all.sort_unstable_by(|a, b| b.3.total_cmp(&a.3).then((a.0, a.1).cmp(&(b.0, b.1))));
        all
    }
}

/// The stored form of [`Confusion`].
#[derive(Serialize, Deserialize)]
struct ConfusionPairs {
    classes: usize,
    pairs: Vec<(u32, u32, u64, f64)>,
}

impl From<Confusion> for ConfusionPairs {
    fn from(confusion: Confusion) -> Self {
        ConfusionPairs { classes: confusion.classes, pairs: confusion.sorted() }
    }
}

impl From<ConfusionPairs> for Confusion {
    fn from(stored: ConfusionPairs) -> Self {
        let mut confusion = Confusion::new(stored.classes);
        for (target, predicted, count, loss) in stored.pairs {
            confusion.add_pair(target, predicted, count, loss);
        }
        confusion
    }
}

/// One calibration bucket: examples, and the sums of their confidence and
/// accuracy.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Bucket {
    pub count: u64,
    // Plain sums, as torchmetrics' own scatter_add: two additions a row.
    pub confidence: Plain,
    pub accuracy: Plain,
}

impl Bucket {
    fn merge(&mut self, other: &Bucket) {
        self.count += other.count;
        self.confidence.merge(&other.confidence);
        self.accuracy.merge(&other.accuracy);
    }
}

/// Confidence against accuracy in buckets `[edge_i, edge_i+1)`, plus a last
/// bucket for a confidence of exactly 1, as torchmetrics bins them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Calibration {
    edges: Vec<f64>,
    pub buckets: Vec<Bucket>,
}

impl Calibration {
    pub fn new(edges: &[f64]) -> Self {
        Calibration { edges: edges.to_vec(), buckets: vec![Bucket::default(); edges.len()] }
    }

    pub fn edges(&self) -> &[f64] {
        &self.edges
    }

    /// The bucket of `confidence`: the number of edges at or below it, less
    /// one (`bucketize(right=True) - 1`); NaN and negatives go nowhere. The
    /// edges are within an ulp of i / bins, so the guess from the product
    /// is right but for a step at an edge.
    #[inline]
    pub(super) fn bucket_of(&self, confidence: f64) -> Option<usize> {
        if confidence.is_nan() || confidence < 0.0 {
            return None;
        }
        let last = self.edges.len() - 1;
        let guess = (confidence * last as f64).min(last as f64);
        // SAFETY: `guess` is within [0, last]: not NaN, not negative,
        // clamped. (As i64: one instruction, where usize takes several.)
        let mut b = unsafe { guess.to_int_unchecked::<i64>() } as usize;
        if confidence < self.edges[b] {
            b -= 1;
        } else if b < last && confidence >= self.edges[b + 1] {
            b += 1;
        }
        Some(b)
    }

    #[inline]
    pub fn add(&mut self, confidence: f64, accuracy: f64) {
        if self.edges.is_empty() {
            return;
        }
        if let Some(b) = self.bucket_of(confidence) {
            let bucket = &mut self.buckets[b];
            bucket.count += 1;
            bucket.confidence.add(confidence);
            bucket.accuracy.add(accuracy);
        }
    }

    /// Adds a block of elements: element k goes to slot `slots[k]` of
    /// `copies` (its bucket times [`WAYS`] plus k mod [`WAYS`], negative for
    /// none). Consecutive elements mostly share a bucket, and with one copy
    /// each addition would wait for the one before.
    #[inline(always)]
    fn add_slots(&mut self, copies: &mut [Bucket], slots: &[i32], confidence: &[f64], accuracy: &[f64]) {
        for ((&slot, &confidence), &accuracy) in slots.iter().zip(confidence).zip(accuracy) {
            if slot >= 0 {
                let bucket = &mut copies[slot as usize];
                bucket.count += 1;
                bucket.confidence.add(confidence);
                bucket.accuracy.add(accuracy);
            }
        }
        self.settle(copies);
    }

    /// Adds the copies into the buckets, in a fixed order, and empties them.
    fn settle(&mut self, copies: &mut [Bucket]) {
        for (bucket, ways) in self.buckets.iter_mut().zip(copies.chunks_exact_mut(WAYS)) {
            for way in ways {
                bucket.merge(way);
                *way = Bucket::default();
            }
        }
    }

    pub fn merge(&mut self, other: &Calibration) {
        if self.buckets.is_empty() {
            self.clone_from(other);
            return;
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            mine.merge(theirs);
        }
    }

    /// Expected and maximum calibration error: Σ |acc − conf| · n_b / n and
    /// the largest |acc − conf| over the buckets (empty buckets give 0).
    pub fn errors(&self) -> (f64, f64) {
        let total: u64 = self.buckets.iter().map(|b| b.count).sum();
        let mut ece = Sum::default();
        let mut mce = 0.0f64;
        for b in self.buckets.iter().filter(|b| b.count > 0) {
            let n = b.count as f64;
            let gap = (b.accuracy.value() / n - b.confidence.value() / n).abs();
            ece.add(gap * (n / total as f64));
            mce = mce.max(gap);
        }
        (ece.value(), mce)
    }
}

/// Everything a pass finds about particular examples.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Findings {
    pub hardest: Hardest,
    pub confusion: Confusion,
    pub calibration: Calibration,
    confusion_on: bool,
    /// Scratch space of [`Findings::note_elements`]: [`WAYS`] copies of
    /// each calibration bucket.
    #[serde(skip)]
    element_buckets: Vec<Bucket>,
}

impl Findings {
    pub fn new(settings: &FindingSettings) -> Self {
        Findings {
            hardest: Hardest::new(settings.examples),
            confusion: if settings.confusion {
                Confusion::new(settings.classes)
            } else {
                Confusion::default()
            },
            calibration: Calibration::new(&settings.calibration_edges),
            confusion_on: settings.confusion,
            element_buckets: match settings.kind {
                ExampleKind::Element => vec![Bucket::default(); settings.calibration_edges.len() * WAYS],
                ExampleKind::Row => Vec::new(),
            },
        }
    }

    /// Notes one counted example; `accuracy` is 1 or 0 for a softmax
    /// prediction, the target for a sigmoid one.
    #[inline(always)]
    pub fn note(&mut self, noted: Noted, accuracy: f64) {
        self.hardest.offer(noted);
        if self.confusion_on {
            // Confusion is counted for rows, whose class is their target.
            self.confusion.add(noted.class, noted.predicted, noted.loss);
        }
        self.calibration.add(noted.confidence, accuracy);
    }

    /// Notes a block of elements of a sigmoid loss out of `classes`
    /// classes. An element's accuracy is its target (calibration's binary
    /// case); `slots` are its calibration buckets as `Calibration::add_slots`
    /// takes them. An element is made an example only when it is among the
    /// hardest so far.
    #[inline(always)]
    pub fn note_elements(&mut self, elements: &Elements, classes: usize, slots: &[i32]) {
        // One test for the block, which the compiler turns into vector
        // compares: once the heap is full, most blocks hold nothing that enters.
        let floor = self.hardest.floor;
        let any_enters = elements.loss.iter().fold(false, |any, &l| any | (l >= floor) | l.is_nan());
        if any_enters {
            for (k, &l) in elements.loss.iter().enumerate() {
                self.hardest.offer_with(l, || Noted::from(&elements.example_of(k, classes)));
            }
        }
        if !self.calibration.edges.is_empty() {
            self.calibration.add_slots(&mut self.element_buckets, slots, elements.p, elements.t);
        }
    }

    pub fn merge(&mut self, other: &Findings) {
        self.hardest.merge(&other.hardest);
        self.confusion.merge(&other.confusion);
        self.calibration.merge(&other.calibration);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noted(index: u64, loss: f64) -> Noted {
        Noted { index, class: 0, target: 0.0, predicted: 0, confidence: 0.5, p_t: 0.5, loss }
    }

    #[test]
    fn the_hardest_are_kept_in_order_whatever_the_split() {
        let losses = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0];
        let mut one = Hardest::new(4);
        for (i, &l) in losses.iter().enumerate() {
            one.offer(noted(i as u64, l));
        }
        let order: Vec<u64> = one.sorted().iter().map(|n| n.index).collect();
        // 9 (5), 6 (7), then the three 5s by index: 4, 8.
        assert_eq!(order, [5, 7, 4, 8]);
        for split in 1..losses.len() {
            let (mut a, mut b) = (Hardest::new(4), Hardest::new(4));
            for (i, &l) in losses.iter().enumerate() {
                if i < split { &mut a } else { &mut b }.offer(noted(i as u64, l));
            }
            b.merge(&a);
            assert_eq!(b.sorted(), one.sorted(), "split at {split}");
        }
    }

    #[test]
    fn a_nan_loss_is_the_hardest_whatever_its_sign() {
        for nan in [f64::NAN, -f64::NAN] {
            let mut hardest = Hardest::new(2);
            for (i, loss) in [1.0, nan, 5.0, 0.5].into_iter().enumerate() {
                hardest.offer(noted(i as u64, loss));
            }
            let order: Vec<u64> = hardest.sorted().iter().map(|n| n.index).collect();
            assert_eq!(order, [1, 2], "NaN with the sign bit {}", nan.is_sign_negative());
        }
    }

    #[test]
    fn edges_follow_torch_linspace() {
        let edges = linspace_edges(15);
        assert_eq!(edges.len(), 16);
        assert_eq!(edges[0], 0.0);
        assert_eq!(edges[15], 1.0);
        // torch.linspace(0, 1, 16, dtype=float64)[11] counts down from 1.
        assert_eq!(edges[11], 1.0 - 4.0 * (1.0 / 15.0));
    }

    #[test]
    fn a_confidence_of_one_has_its_own_bucket() {
        let mut c = Calibration::new(&linspace_edges(2));
        c.add(0.25, 1.0);
        c.add(0.5, 0.0);
        c.add(1.0, 1.0);
        let counts: Vec<u64> = c.buckets.iter().map(|b| b.count).collect();
        assert_eq!(counts, [1, 1, 1]);
        let (ece, mce) = c.errors();
        assert!((ece - (0.75 + 0.5 + 0.0) / 3.0).abs() < 1e-15);
        assert_eq!(mce, 0.75);
    }
}
