//! The concentration figures: what share of a group's loss its hardest 1%,
//! 5%, 10% and 25% of examples carry. Losses are counted in a histogram
//! over their float32 bit patterns, so no per-example value is kept and the
//! memory is the same for ten examples or ten billion.
//!
//! A bin holds the losses that share a float32 exponent and the top seven
//! bits of the mantissa (a relative width of 2^-7), with their count and
//! the exact integer sum of their mantissas. Integer sums do not depend on
//! the order of addition, so histograms of any split of the input merge to
//! the same bits. A level whose cut falls inside a bin takes that bin's
//! mean for the examples it needs from it: the share is then within 2^-7
//! of that bin's part of it, and exact when the cut falls between bins.

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
const MANTISSA_BITS: u32 = 23;

/// The histogram of one group of examples. `Default` gives an empty
/// placeholder that holds no bins; [`Histogram::new`] one to count in.
/// Stored as its non-empty bins, and rebuilt from them when read back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "StoredBins", try_from = "StoredBins")]
pub struct Histogram {
    /// Per bin, the count and Σ of the float32 significands (implicit bit
    /// included), side by side so that an update touches one cache line.
    bins: Vec<[u64; 2]>,
}

impl Histogram {
    pub fn new() -> Self {
        Histogram { bins: vec![[0, 0]; FINITE_BINS + 1] }
    }

    /// Counts one loss. Negative losses (soft targets outside [0, 1] can
    /// give them) count as 0: they are the easiest examples.
    #[inline(always)]
    pub fn add(&mut self, loss: f64) {
        let bits = (loss as f32).to_bits();
        let (bin, significand) = if loss.is_nan() || (0x7F80_0000..0x8000_0000).contains(&bits) {
            (NON_FINITE, 0)
        } else if bits >= 0x8000_0000 {
            (0, 0)
        } else {
            let implicit = if bits >= 1 << MANTISSA_BITS { 1 << MANTISSA_BITS } else { 0 };
            ((bits >> 16) as usize, (bits & ((1 << MANTISSA_BITS) - 1) | implicit) as u64)
        };
        let [count, sum] = &mut self.bins[bin];
        *count += 1;
        *sum += significand;
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
        for (mine, theirs) in self.bins.iter_mut().zip(&other.bins) {
            if *theirs != [0, 0] {
                mine[0] += theirs[0];
                mine[1] += theirs[1];
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.bins.iter().map(|[count, _]| count).sum()
    }

    /// The sum of a bin's losses: NaN for the non-finite bin when it holds any.
    fn sum(&self, bin: usize) -> f64 {
        let [count, significands] = self.bins[bin];
        if bin == NON_FINITE {
            return if count > 0 { f64::NAN } else { 0.0 };
        }
        // Every value of a bin has the bin's exponent field; a field of 0
        // (subnormals) scales like 1.
        let exponent = (bin >> 7).max(1) as i32;
        significands as f64 * 2f64.powi(exponent - 127 - MANTISSA_BITS as i32)
    }

    /// The share of the group's loss carried by its hardest examples, for
    /// each of [`HARDEST_FRACTIONS`].
    pub fn hardest(&self) -> Hardest {
        let n = self.count();
        let total: f64 = (0..self.bins.len()).map(|bin| self.sum(bin)).sum();
        let levels = HARDEST_FRACTIONS
            .iter()
            .map(|&fraction| {
                let take = ((fraction * n as f64).ceil() as u64).min(n);
                let share =
                    (take > 0 && total != 0.0).then(|| self.top(take) / total).filter(|s| s.is_finite());
                Level { fraction, count: take, loss_share: share }
            })
            .collect();
        Hardest { count: n, levels }
    }

    /// The loss of the `take` largest losses, the cut bin at its mean.
    fn top(&self, take: u64) -> f64 {
        let mut left = take;
        let mut sum = 0.0;
        for (bin, &[count, _]) in self.bins.iter().enumerate().rev() {
            if count == 0 {
                continue;
            }
            if count >= left {
                return sum + self.sum(bin) * (left as f64 / count as f64);
            }
            sum += self.sum(bin);
            left -= count;
        }
        sum
    }
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
        let bins = histogram.bins.iter().enumerate().filter(|(_, b)| b[0] > 0);
        StoredBins {
            counting: !histogram.bins.is_empty(),
            bins: bins.map(|(bin, &[count, sum])| (bin as u32, count, sum)).collect(),
        }
    }
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
