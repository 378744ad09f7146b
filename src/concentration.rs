//! The concentration figures: what share of a group's loss its hardest 1%,
//! 5%, 10% and 25% of examples carry. Losses are counted in a histogram
//! over their float32 bit patterns, so no per-example value is kept and the
//! memory is the same for ten examples or ten billion.
//!
//! A bin holds the losses that share a float32 exponent and the top seven
//! bits of the mantissa (a relative width of 2^-7), with their count and
//! the exact integer sum of their mantissas. Integer sums do not depend on
//! the order of addition, so histograms of any split of the input merge to
//! the same bits. A loss is counted in one 8-byte word per bin, its count
//! and the sum of the mantissas' low 16 bits (the rest is the bin's own),
//! moved into the wide count and sum long before the word could overflow.
//! A level whose cut falls inside a bin takes that bin's mean for the
//! examples it needs from it: the share is then within 2^-7 of that bin's
//! part of it, and exact when the cut falls between bins.

use serde::{Deserialize, Serialize};

/// The fractions of hardest examples whose share of the loss is reported.
pub const HARDEST_FRACTIONS: [f64; 4] = [0.01, 0.05, 0.10, 0.25];

/// The concentration of one group of examples, as the report gives it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hardest {
    /// Examples in the group.
    pub count: u64,
    /// One entry per fraction: 1%, 5%, 10%, 25%.
    pub levels: Vec<Level>,
}

/// The share of a group's loss its hardest `fraction` of examples carry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Level {
    /// The fraction of the group taken, hardest (largest loss) first.
    pub fraction: f64,
    /// Examples taken: `ceil(fraction × count)`.
    pub count: u64,
    /// Their share of the group's loss.
    pub loss_share: Option<f64>,
}

/// Bins of the non-negative finite float32 values: bit patterns shifted
/// right by 16 run from 0 to 0x7F7F.
const FINITE_BINS: usize = 0x7F80;
/// The last bin holds infinite and NaN losses.
const NON_FINITE: usize = FINITE_BINS;
// `Histogram::add` counts NaN as +inf: its bits must fall in this bin.
const _: () = assert!(NON_FINITE == (f32::INFINITY.to_bits() >> 16) as usize);
const MANTISSA_BITS: u32 = 23;

/// In a bin's recent word: one more loss (the count runs from bit 40 up).
const ONE_MORE: u64 = 1 << 40;
/// The low 40 bits of a recent word: the sum of the low 16 mantissa bits,
/// below 2^39 while the count stays under 2^23.
const LOW_SUM: u64 = ONE_MORE - 1;
/// A recent word whose count reaches 2^23 is moved into the wide bins.
const FULL: u64 = 1 << 63;

/// A histogram's tables, borrowed to count losses into: see
/// [`Histogram::counter`].
pub struct Counter<'h> {
    bins: &'h mut [[u64; 2]],
    recent: &'h mut [u64],
}

impl Counter<'_> {
    /// Counts one loss, as [`Histogram::add`].
    #[inline(always)]
    pub fn add(&mut self, loss: f64) {
        self.add_bits(counted_bits(loss));
    }

    /// Counts one loss given as [`counted_bits`] of it: a vector pass
    /// computes those for a block of losses at once.
    #[inline(always)]
    pub fn add_bits(&mut self, bits: u32) {
        let bin = (bits >> 16) as usize;
        let word = self.recent[bin] + (ONE_MORE | (bits & 0xFFFF) as u64);
        if word >= FULL {
            move_out(self.bins, self.recent, bin, word);
        } else {
            self.recent[bin] = word;
        }
    }
}

/// The float32 bits a loss is counted by. Selects, not branches: a
/// negative loss (or -0) is counted as +0, whose bits are all zero, and NaN
/// as +inf, whose bits are the non-finite bin's with nothing below; a
/// float32 overflow rounds to +inf and lands there too.
#[inline(always)]
pub fn counted_bits(loss: f64) -> u32 {
    let counted = if loss > 0.0 { loss } else { 0.0 };
    let counted = if loss.is_nan() { f64::INFINITY } else { counted };
    (counted as f32).to_bits()
}

/// Moves a bin's recent word into its wide count and sum.
#[cold]
#[inline(never)]
fn move_out(bins: &mut [[u64; 2]], recent: &mut [u64], bin: usize, word: u64) {
    let [count, sum] = unpack(bin, word);
    bins[bin][0] += count;
    bins[bin][1] += sum;
    recent[bin] = 0;
}

/// The histogram of one group of examples. `Default` gives an empty
/// placeholder that holds no bins; [`Histogram::new`] one to count in.
/// Stored as its non-empty bins, and rebuilt from them when read back.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(into = "StoredBins", try_from = "StoredBins")]
pub struct Histogram {
    /// Per bin, the count and Σ of the float32 significands (with the
    /// implicit bit of normal values) moved out of `recent`.
    bins: Vec<[u64; 2]>,
    /// Per bin, the losses counted since its word was last moved into
    /// `bins`: their count times [`ONE_MORE`]
    /// plus the sum of their significands' low 16 bits. Half the size of
    /// `bins`, so that more of a pass's busy bins stay in the L1 cache, and
    /// one addition per loss.
    recent: Vec<u64>,
}

impl Histogram {
    pub fn new() -> Self {
        Histogram { bins: vec![[0, 0]; FINITE_BINS + 1], recent: vec![0; FINITE_BINS + 1] }
    }

    /// Counts one loss. Negative losses (soft targets outside [0, 1] can
    /// give them) count as 0: they are the easiest examples.
    #[inline(always)]
    pub fn add(&mut self, loss: f64) {
        self.counter().add(loss)
    }

    /// The table borrowed for a run of [`Counter::add`]: a loop over a
    /// block keeps its bounds in registers instead of reloading them from
    /// the histogram after every loss.
    #[inline(always)]
    pub fn counter(&mut self) -> Counter<'_> {
        Counter { bins: &mut self.bins, recent: &mut self.recent }
    }

    /// The bins that hold losses, in bin order, each with its count and Σ
    /// significands, wide and recent together.
    fn occupied(&self) -> Vec<(usize, [u64; 2])> {
        let words = self.bins.iter().zip(&self.recent).enumerate();
        words
            .filter(|(_, (wide, recent))| **wide != [0, 0] || **recent != 0)
            .map(|(bin, (&[count, sum], &recent))| {
                let [recent_count, recent_sum] = unpack(bin, recent);
                (bin, [count + recent_count, sum + recent_sum])
            })
            .collect()
    }

    /// Adds `other`'s counts; a placeholder on either side holds nothing.
    /// Only the bins `other` holds are written: the rest of a fresh table
    /// is memory the system has not handed over yet, and writing zeros to
    /// it would make it do so (a page fault per 4 KiB).
    pub fn merge(&mut self, other: &Histogram) {
        if other.bins.is_empty() {
            return;
        }
        if self.bins.is_empty() {
            *self = Histogram::new();
        }
        for (bin, [count, sum]) in other.occupied() {
            self.bins[bin][0] += count;
            self.bins[bin][1] += sum;
        }
    }

    /// The share of the group's loss carried by its hardest examples, for
    /// each of [`HARDEST_FRACTIONS`].
    pub fn hardest(&self) -> Hardest {
        let occupied = self.occupied();
        let n = occupied.iter().map(|(_, [count, _])| count).sum();
        let total: f64 = occupied.iter().map(|&(bin, counted)| loss_sum(bin, counted)).sum();
        let levels = HARDEST_FRACTIONS
            .iter()
            .map(|&fraction| {
                let take = ((fraction * n as f64).ceil() as u64).min(n);
                let share = (take > 0 && total != 0.0)
                    .then(|| top(&occupied, take) / total)
                    .filter(|s| s.is_finite());
                Level { fraction, count: take, loss_share: share }
            })
            .collect();
        Hardest { count: n, levels }
    }
}

/// The sum of a bin's losses from its count and Σ significands: NaN for the
/// non-finite bin when it holds any.
fn loss_sum(bin: usize, [count, significands]: [u64; 2]) -> f64 {
    if bin == NON_FINITE {
        return if count > 0 { f64::NAN } else { 0.0 };
    }
    // Every value of a bin has the bin's exponent field; a field of 0
    // (subnormals) scales like 1.
    let exponent = (bin >> 7).max(1) as i32;
    significands as f64 * 2f64.powi(exponent - 127 - MANTISSA_BITS as i32)
}

/// The loss of the `take` largest losses of the `occupied` bins, the cut
/// bin at its mean.
fn top(occupied: &[(usize, [u64; 2])], take: u64) -> f64 {
    let mut left = take;
    let mut sum = 0.0;
    for &(bin, counted) in occupied.iter().rev() {
        let count = counted[0];
        if count >= left {
            return sum + loss_sum(bin, counted) * (left as f64 / count as f64);
        }
        sum += loss_sum(bin, counted);
        left -= count;
    }
    sum
}

/// The stored form of a [`Histogram`]: `(bin, count, Σ significands)` of
/// each non-empty bin, in bin order; an empty placeholder when `counting`
/// is false.
#[derive(Serialize, Deserialize)]
struct StoredBins {
    counting: bool,
    bins: Vec<(u32, u64, u64)>,
}

impl From<Histogram> for StoredBins {
    fn from(histogram: Histogram) -> Self {
        let bins = histogram.occupied().into_iter();
        StoredBins {
            counting: !histogram.bins.is_empty(),
            bins: bins.map(|(bin, [count, sum])| (bin as u32, count, sum)).collect(),
        }
    }
}

/// Two histograms are equal when they hold the same counts and sums, however
/// much of them is still in the recent words.
impl PartialEq for Histogram {
    fn eq(&self, other: &Histogram) -> bool {
        self.bins.len() == other.bins.len() && self.occupied() == other.occupied()
    }
}

impl Eq for Histogram {}

/// A recent word of `bin` as the count and Σ significands it stands for:
/// each of its losses has the bin's top seven mantissa bits and, but in
/// the subnormal bins (exponent field 0, bins below 128), the implicit bit;
/// the non-finite bin counts no significand.
fn unpack(bin: usize, word: u64) -> [u64; 2] {
    let count = word >> 40;
    let implicit = if bin >> 7 > 0 { 1 << MANTISSA_BITS } else { 0 };
    let high = if bin == NON_FINITE { 0 } else { implicit | ((bin as u64 & 0x7F) << 16) };
    [count, count * high + (word & LOW_SUM)]
}

impl TryFrom<StoredBins> for Histogram {
    type Error = String;

    fn try_from(stored: StoredBins) -> Result<Self, String> {
        if !stored.counting {
            return match stored.bins.is_empty() {
                true => Ok(Histogram::default()),
                false => Err("an empty histogram holds bins".into()),
            };
        }
        let mut histogram = Histogram::new();
        for (bin, count, sum) in stored.bins {
            let slot =
                histogram.bins.get_mut(bin as usize).ok_or(format!("histogram bin {bin} is out of range"))?;
            if count == 0 && sum != 0 {
                return Err(format!("histogram bin {bin} holds a sum but no losses"));
            }
            *slot = [count, sum];
        }
        Ok(histogram)
    }
}

/// Histograms per group: `[all]`, or `[negatives, positives]`.
pub type Groups = [Histogram; 2];

pub fn new_groups() -> Groups {
    [Histogram::new(), Histogram::new()]
}

pub fn merge_groups(into: &mut Groups, from: &Groups) {
    for (mine, theirs) in into.iter_mut().zip(from) {
        mine.merge(theirs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram_of(losses: &[f64]) -> Histogram {
        let mut h = Histogram::new();
        for &l in losses {
            h.add(l);
        }
        h
    }

    #[test]
    fn hardest_shares_come_from_the_largest_losses() {
        let mut losses: Vec<f64> = (1..=100).map(|i| i as f64).collect();
        losses.swap(3, 70);
        let h = histogram_of(&losses).hardest();
        let total = 5050.0;
        assert_eq!(h.count, 100);
        assert_eq!(h.levels[0].count, 1);
        assert_eq!(h.levels[0].loss_share, Some(100.0 / total));
        assert_eq!(h.levels[1].loss_share, Some((96..=100).sum::<i32>() as f64 / total));
        assert_eq!(h.levels[3].loss_share, Some((76..=100).sum::<i32>() as f64 / total));
    }

    #[test]
    fn hardest_of_nothing_is_empty() {
        let h = Histogram::new().hardest();
        assert_eq!(h, Histogram::default().hardest());
        assert_eq!(h.count, 0);
        assert!(h.levels.iter().all(|l| l.count == 0 && l.loss_share.is_none()));
    }

    #[test]
    fn a_cut_inside_a_bin_is_within_the_bin_width() {
        // 1000 losses spread over one bin's width, one large loss above.
        let mut losses: Vec<f64> = (0..1000).map(|i| 1.0 + i as f64 / 1000.0 / 128.0).collect();
        losses.push(50.0);
        let h = histogram_of(&losses).hardest();
        let mut sorted: Vec<f64> = losses.iter().map(|&l| l as f32 as f64).collect();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let total: f64 = sorted.iter().sum();
        for level in &h.levels {
            let exact: f64 = sorted[..level.count as usize].iter().sum::<f64>() / total;
            let share = level.loss_share.unwrap();
            assert!((share - exact).abs() <= exact / 128.0, "{share} vs {exact}");
        }
    }

    #[test]
    fn order_and_split_give_the_same_bits() {
        let losses: Vec<f64> = (0..10_000).map(|i| ((i * 7919) % 1013) as f64 * 1e-3 + 1e-30).collect();
        let whole = histogram_of(&losses);
        let mut reversed: Vec<f64> = losses.clone();
        reversed.reverse();
        let mut halves = histogram_of(&reversed[..3333]);
        halves.merge(&histogram_of(&reversed[3333..]));
        assert_eq!(whole, halves);
        assert_eq!(whole.hardest(), halves.hardest());
    }

    #[test]
    fn a_bin_counts_past_its_word_exactly() {
        // More losses of one bin than its recent word holds (2^23), with
        // low mantissa bits set, and a subnormal bin beside it.
        let loss = f32::from_bits(0x3FAB_CDEF);
        let subnormal = f32::from_bits(0x0012_3456);
        let n = (1u64 << 23) + 3;
        let mut h = Histogram::new();
        for _ in 0..n {
            h.add(loss as f64);
        }
        h.add(subnormal as f64);
        let stored = serde_json::to_value(&h).unwrap();
        let significand = (0x3FAB_CDEF & 0x7F_FFFF) | 1 << 23;
        let expected = serde_json::json!({
            "counting": true,
            "bins": [[0x0012, 1, 0x12_3456], [0x3FAB, n, n * significand]],
        });
        assert_eq!(stored, expected);
        let back: Histogram = serde_json::from_value(stored).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.hardest(), h.hardest());
        let sum_without_losses = serde_json::json!({ "counting": true, "bins": [[7, 0, 5]] });
        assert!(serde_json::from_value::<Histogram>(sum_without_losses).is_err());
    }

    #[test]
    fn every_kind_of_loss_lands_in_the_bin_of_its_float32_bits() {
        // The bin and low bits by the definition: NaN and anything whose
        // float32 is +inf in the non-finite bin, anything negative in bin 0.
        let by_definition = |loss: f64| {
            let bits = (loss as f32).to_bits();
            if loss.is_nan() || (0x7F80_0000..0x8000_0000).contains(&bits) {
                (NON_FINITE, 0)
            } else if bits >= 0x8000_0000 {
                (0, 0)
            } else {
                ((bits >> 16) as usize, (bits & 0xFFFF) as u64)
            }
        };
        // Halfway between float32's largest value and 2^128: rounds to +inf.
        let halfway_to_overflow = f64::from(f32::MAX) + 2f64.powi(103);
        let losses = [
            f64::NEG_INFINITY,
            -1.0,
            -1e-300,
            -0.0,
            0.0,
            1e-300,
            1e-45,
            f64::from(f32::MIN_POSITIVE),
            0.123_456_789,
            1.0,
            f64::from(f32::MAX),
            halfway_to_overflow.next_down(),
            halfway_to_overflow,
            1e39,
            f64::MAX,
            f64::INFINITY,
            f64::NAN,
            -f64::NAN,
        ];
        for loss in losses {
            let mut h = Histogram::new();
            h.add(loss);
            let (bin, low) = by_definition(loss);
            let occupied: Vec<usize> = (0..h.recent.len()).filter(|&b| h.recent[b] != 0).collect();
            assert_eq!(occupied, [bin], "{loss:e}");
            assert_eq!(h.recent[bin], ONE_MORE | low, "{loss:e}");
        }
    }

    #[test]
    fn odd_losses() {
        let h = histogram_of(&[-1.0, -0.0, 0.0, 1e-45, 2.0]).hardest();
        assert_eq!(h.count, 5);
        assert_eq!(h.levels[0].loss_share, Some(1.0));
        let h = histogram_of(&[1.0, f64::NAN]).hardest();
        assert_eq!(h.levels[0].loss_share, None);
        let h = histogram_of(&[1.0, f64::INFINITY]).hardest();
        assert_eq!(h.levels[0].loss_share, None);
        let h = histogram_of(&[0.0, 0.0]).hardest();
        assert!(h.levels.iter().all(|l| l.loss_share.is_none()));
    }
}
