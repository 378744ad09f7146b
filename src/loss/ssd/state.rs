//! What an SSD run keeps beyond the tally to make its figures — the sums,
//! the per-class and per-group figures, one row per image, what matching
//! did and the hardest priors — in the form a partial report stores. Two
//! states of different images merge; every image index is the image's place
//! in the run (after a merge, in the concatenation of the shards).

use serde::{Deserialize, Serialize};

use crate::report::Totals;
use crate::tally::Sum;

use super::figures::{ClassFigures, DisplacedBox, ForcedMatch, Groups, ImageFigures, NeverMined, Spread};
use super::image::{HardPrior, ImageResult};
use super::{Preset, SsdParams, ZeroPositives};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SsdState {
    preset: Preset,
    zero_positives: ZeroPositives,
    pub loc_weight: f64,
    neg_pos_ratio: f64,
    /// Priors per image: an example's flat index over `[image, prior]` is
    /// `image · priors + prior`.
    priors: u64,
    /// How many hardest priors are kept.
    keep: usize,
    pub loc_sum: Sum,
    pub conf_sum: Sum,
    /// Per class, background (0) first.
    pub classes: Vec<ClassFigures>,
    pub groups: Groups,
    /// `(image, its figures)`, in image order.
    pub images: Vec<(u64, ImageFigures)>,
    pub boxes: u64,
    pub forced_only: Vec<ForcedMatch>,
    pub displaced: Vec<DisplacedBox>,
    /// Positive priors of every box, for their spread.
    priors_per_box: Vec<usize>,
    /// Set when ssd.pytorch's global-max mining score is in use.
    pub never_mined: Option<NeverMined>,
    /// NaN or infinite loc predictions among the positives.
    pub nonfinite_loc: u64,
    /// The hardest priors, hardest first.
    pub hardest: Vec<HardPrior>,
}

impl SsdState {
    /// Merges the per-image results, in image order.
    pub(super) fn from_images(
        results: &[ImageResult],
        classes: usize,
        priors: usize,
        params: &SsdParams,
        global_max_mining: bool,
        keep: usize,
    ) -> SsdState {
        let mut state = SsdState {
            preset: params.preset,
            zero_positives: params.zero_positives,
            loc_weight: params.loc_weight,
            neg_pos_ratio: params.neg_pos_ratio,
            priors: priors as u64,
            keep,
            loc_sum: Sum::default(),
            conf_sum: Sum::default(),
            classes: vec![ClassFigures::default(); classes],
            groups: Groups::default(),
            images: Vec::with_capacity(results.len()),
            boxes: 0,
            forced_only: Vec::new(),
            displaced: Vec::new(),
            priors_per_box: Vec::new(),
            never_mined: global_max_mining.then_some(NeverMined::default()),
            nonfinite_loc: 0,
            hardest: Vec::new(),
        };
        for (image, result) in results.iter().enumerate() {
            state.loc_sum.merge(&result.loc_sum);
            state.conf_sum.merge(&result.conf_sum);
            for (mine, theirs) in state.classes.iter_mut().zip(&result.classes) {
                mine.merge(theirs);
            }
            state.groups.merge(&result.groups);
            state.images.push((image as u64, result.figures));
            state.boxes += result.figures.boxes as u64;
            state.forced_only.extend_from_slice(&result.forced);
            state.displaced.extend_from_slice(&result.displaced);
            state.priors_per_box.extend_from_slice(&result.priors_per_box);
            if let Some(never) = &mut state.never_mined {
                never.float64 += result.never_mined.float64;
                never.float32 += result.never_mined.float32;
            }
            state.nonfinite_loc += result.nonfinite_loc;
            state.hardest.extend_from_slice(&result.hardest);
        }
        state.keep_hardest();
        state
    }

    fn keep_hardest(&mut self) {
        self.hardest.sort_by(HardPrior::harder);
        self.hardest.truncate(self.keep);
    }

    /// N: positive priors.
    pub fn num_pos(&self) -> u64 {
        self.groups.positives.count
    }

    pub fn n_images(&self) -> u64 {
        self.images.len() as u64
    }

    /// What the sums are divided by: N, or max(1, N) under torchvision.
    pub fn normalizer(&self) -> f64 {
        match self.preset {
            Preset::SsdPytorch => self.num_pos() as f64,
            Preset::Torchvision => self.num_pos().max(1) as f64,
        }
    }

    /// `sum / N`, or the zero-positives policy when N = 0 under ssd.pytorch.
    pub fn divide(&self, sum: f64) -> f64 {
        match (self.normalizer(), self.zero_positives) {
            (n, _) if n != 0.0 => sum / n,
            (_, ZeroPositives::Zero) => 0.0,
            (_, ZeroPositives::Nan) => f64::NAN,
        }
    }

    /// `conf_sum + α · loc_sum`.
    pub fn sum(&self) -> f64 {
        self.conf_sum.value() + self.loc_weight * self.loc_sum.value()
    }

    pub fn totals(&self) -> Totals {
        Totals {
            value: self.divide(self.sum()),
            sum: self.sum(),
            normalizer: self.normalizer(),
            baseline: None,
        }
    }

    pub fn priors_per_box(&self) -> Option<Spread> {
        Spread::of(self.priors_per_box.clone())
    }

    /// What the figures themselves tell the user.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.num_pos() == 0 {
            warnings.push(match (self.preset, self.zero_positives) {
                (Preset::Torchvision, _) => {
                    "no prior is positive (N = 0): torchvision divides by max(1, N) = 1".to_string()
                }
                (Preset::SsdPytorch, ZeroPositives::Zero) => {
                    "no prior is positive (N = 0): the loss is 0, as the SSD paper sets it (ssd.pytorch returns NaN)"
                        .to_string()
                }
                (Preset::SsdPytorch, ZeroPositives::Nan) => {
                    "no prior is positive (N = 0): the loss is NaN, as ssd.pytorch returns it".to_string()
                }
            });
        }
        if let Some(never) = self.never_mined {
            if never.float64 > 0 {
                warnings.push(format!(
                    "{} negative priors have every logit more than ~745 below the batch's largest: ssd.pytorch's global-max log-sum-exp scores them -inf, so they are mined only when nothing else is left",
                    never.float64
                ));
            } else if never.float32 > 0 {
                warnings.push(format!(
                    "{} negative priors have every logit more than ~104 below the batch's largest: in float32 training ssd.pytorch's global-max log-sum-exp would score them -inf and never mine them (this float64 evaluation still does)",
                    never.float32
                ));
            }
        }
        let twice = self.groups.positives_counted_twice.count;
        if twice > 0 {
            warnings.push(format!(
                "{twice} positive priors are counted twice: torchvision adds the mined set to the positives, and an image with fewer negatives than {} × its positives mines positives too (which of them, when only some fit, is the lowest prior index here; torch's sort leaves it unspecified)",
                self.neg_pos_ratio
            ));
        }
        if let Some(first) = self.displaced.first() {
            warnings.push(format!(
                "{} boxes have no prior: a later box took their best prior (the first: image {} box {}, taken by box {})",
                self.displaced.len(),
                first.image,
                first.box_row,
                first.taken_by
            ));
        }
        if self.nonfinite_loc > 0 {
            warnings.push(format!(
                "{} loc predictions of positive priors are NaN or infinite",
                self.nonfinite_loc
            ));
        }
        warnings
    }

    /// Checks a state read back from a file: its images cover `examples`
    /// priors, and every index it holds is within them.
    pub fn check(&self, examples: u64, classes: usize) -> Result<(), String> {
        let images = self.images.len() as u64;
        let fits = self.classes.len() == classes
            && images.checked_mul(self.priors) == Some(examples)
            && self.images.iter().all(|(image, _)| *image < images)
            && self.hardest.iter().all(|h| (h.image as u64) < images && (h.prior as u64) < self.priors)
            && self.forced_only.iter().all(|f| (f.image as u64) < images)
            && self.displaced.iter().all(|d| (d.image as u64) < images);
        if fits { Ok(()) } else { Err("its SSD figures do not match its images and classes".into()) }
    }

    /// Moves every image to the place `new_index` gives its first prior's
    /// flat index, as when shards are put in a new order.
    pub fn renumber(&mut self, new_index: impl Fn(u64) -> u64) {
        let priors = self.priors.max(1);
        let image = |i: usize| (new_index(i as u64 * priors) / priors) as usize;
        for (index, _) in &mut self.images {
            *index = new_index(*index * priors) / priors;
        }
        for forced in &mut self.forced_only {
            forced.image = image(forced.image);
        }
        for displaced in &mut self.displaced {
            displaced.image = image(displaced.image);
        }
        for hard in &mut self.hardest {
            hard.image = image(hard.image);
        }
        self.hardest.sort_by(HardPrior::harder);
    }

    /// Takes in the figures of other images; the rules must be the same.
    pub fn merge(&mut self, other: &SsdState) -> Result<(), String> {
        let rule = |s: &SsdState| {
            (
                s.preset,
                s.zero_positives,
                s.loc_weight.to_bits(),
                s.neg_pos_ratio.to_bits(),
                s.priors,
                s.keep,
                s.classes.len(),
                s.never_mined.is_some(),
            )
        };
        if rule(self) != rule(other) {
            return Err("differs in its SSD settings or its priors".into());
        }
        self.loc_sum.merge(&other.loc_sum);
        self.conf_sum.merge(&other.conf_sum);
        for (mine, theirs) in self.classes.iter_mut().zip(&other.classes) {
            mine.merge(theirs);
        }
        self.groups.merge(&other.groups);
        self.images.extend_from_slice(&other.images);
        self.images.sort_by_key(|(image, _)| *image);
        self.boxes += other.boxes;
        self.forced_only.extend_from_slice(&other.forced_only);
        self.forced_only.sort_by_key(|f| (f.image, f.box_row));
        self.displaced.extend_from_slice(&other.displaced);
        self.displaced.sort_by_key(|d| (d.image, d.box_row));
        self.priors_per_box.extend_from_slice(&other.priors_per_box);
        if let (Some(mine), Some(theirs)) = (&mut self.never_mined, other.never_mined) {
            mine.float64 += theirs.float64;
            mine.float32 += theirs.float32;
        }
        self.nonfinite_loc += other.nonfinite_loc;
        self.hardest.extend_from_slice(&other.hardest);
        self.keep_hardest();
        Ok(())
    }
}
