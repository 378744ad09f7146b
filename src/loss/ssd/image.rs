//! One image's part of the loss: match, score every prior, mine, then sum
//! the localisation loss of the positives and the confidence loss of the
//! priors each preset counts.

use crate::input::Values;
use crate::math::{ROWS_PER_CALL, RowSoftmax, rank_key};
use crate::tally::{Example, Sum};

use super::boxes::{Corners, encode_ssd_pytorch, encode_torchvision, smooth_l1};
use super::confidence::{RowScratch, global_max_mining_score, log_p, reduce_rows};
use super::figures::{ClassFigures, DisplacedBox, ForcedMatch, Groups, ImageFigures, NeverMined};
use super::matching::Matches;
use super::mining::{harder, mark_hardest, negatives_to_mine, select_hardest};
use super::priors::Priors;
use super::truths::GroundTruth;
use super::{Preset, SsdParams};

/// Below this gap to the batch's largest logit, `exp` underflows to 0 in
/// float32 (`ln 2^-150`): where ssd.pytorch trained in float32 stops mining.
const FLOAT32_EXP_UNDERFLOW: f64 = -103.972_077_083_991_8;

/// What every image shares.
pub struct Context<'a> {
    pub loc: Values<'a>,
    pub conf: Values<'a>,
    pub priors: &'a Priors,
    pub params: &'a SsdParams,
    pub classes: usize,
    /// The batch's largest logit, when ssd.pytorch's global-max mining score
    /// is in use (CE with mining).
    pub batch_max: Option<f64>,
    /// What to keep of every prior.
    pub keep: Keep,
}

/// What an evaluation keeps of every prior, beyond the sums.
#[derive(Debug, Clone, Copy, Default)]
pub struct Keep {
    /// The hardest priors of each image, by conf + α · loc.
    pub hardest: usize,
    /// Every prior's record, for the per-example output.
    pub records: bool,
}

/// What one prior costs and whether the loss counts it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriorRecord {
    /// Its confidence loss against its matched class (background for negatives).
    pub conf: f64,
    /// Smooth L1 of its four offsets (positives; 0 for negatives).
    pub loc: f64,
    /// Positive or mined.
    pub selected: bool,
}

/// One of the hardest priors of an image.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HardPrior {
    pub image: usize,
    pub prior: usize,
    /// Its matched class (0: background).
    pub class: usize,
    pub conf: f64,
    pub loc: f64,
    /// `conf + α · loc`: what it adds to the loss when counted.
    pub loss: f64,
    pub positive: bool,
    pub mined: bool,
}

impl HardPrior {
    /// Harder first: the larger loss (NaN above all), then the lower flat index.
    pub fn harder(&self, other: &HardPrior) -> std::cmp::Ordering {
        rank_key(other.loss)
            .total_cmp(&rank_key(self.loss))
            .then((self.image, self.prior).cmp(&(other.image, other.prior)))
    }
}

/// What one prior costs against its matched class.
#[derive(Debug, Clone, Copy)]
struct PriorConf {
    /// The loss in use (CE or focal).
    loss: f64,
    /// `log p` of the class; plain CE is its negative.
    log_p: f64,
    /// Whether the class is the row's first maximum.
    correct: bool,
    /// The row's first maximum.
    predicted: u32,
    /// The largest probability of the row.
    confidence: f64,
}

/// Per-prior buffers, reused across the images a thread evaluates.
#[derive(Default)]
pub struct Scratch {
    matches: Matches,
    boxes: Vec<Corners>,
    rows: RowScratch,
    summaries: Vec<RowSoftmax>,
    class_of: Vec<usize>,
    conf: Vec<PriorConf>,
    scores: Vec<f64>,
    keys: Vec<(f64, u32)>,
    mined: Vec<bool>,
    /// Smooth L1 per prior (0 for negatives).
    loc: Vec<f64>,
}

/// Everything one image contributes, merged in image order by the loss.
pub struct ImageResult {
    pub figures: ImageFigures,
    pub loc_sum: Sum,
    pub conf_sum: Sum,
    pub classes: Vec<ClassFigures>,
    pub groups: Groups,
    /// One per counted prior, twice for a positive torchvision counts twice.
    pub examples: Vec<Example>,
    pub forced: Vec<ForcedMatch>,
    pub displaced: Vec<DisplacedBox>,
    pub priors_per_box: Vec<usize>,
    pub never_mined: NeverMined,
    /// Non-finite logits: how many, and the flat index of the first.
    pub nonfinite_conf: (u64, usize),
    pub nonfinite_loc: u64,
    /// The image's hardest priors, hardest first.
    pub hardest: Vec<HardPrior>,
    /// Every prior's record, when kept.
    pub records: Vec<PriorRecord>,
}

impl Context<'_> {
    pub fn evaluate(&self, image: usize, truths: &[GroundTruth], s: &mut Scratch) -> ImageResult {
        s.boxes.clear();
        s.boxes.extend(truths.iter().map(|t| t.corners));
        let box_matches = s.matches.run(&s.boxes, self.priors.columns(), self.params.overlap_threshold);
        s.class_of.clear();
        s.class_of.extend(s.matches.assigned.iter().map(|a| a.map_or(0, |i| truths[i].label + 1)));
        let positives = s.class_of.iter().filter(|&&c| c > 0).count();

        let (never_mined, nonfinite_conf) = self.score_priors(image, s);
        s.mined.resize(self.priors.len(), false);
        if self.params.mining {
            let capped = self.params.preset == Preset::SsdPytorch;
            let count = negatives_to_mine(self.params.neg_pos_ratio, positives, self.priors.len(), capped);
            mark_hardest(&s.scores, count, &mut s.keys, &mut s.mined);
        } else {
            s.mined.fill(true);
        }

        let mut classes = vec![ClassFigures::default(); self.classes];
        let (loc_sum, nonfinite_loc) = self.localisation(image, truths, s, &mut classes);
        let mut tally = ConfidenceTally::default();
        tally.count(self.params, s, &mut classes, (image * self.priors.len()) as u64);

        let (hardest, records) = self.keep_priors(image, s);
        let mut forced = Vec::new();
        let mut displaced = Vec::new();
        for (truth, m) in truths.iter().zip(&box_matches) {
            if m.best_iou < self.params.overlap_threshold {
                forced.push(ForcedMatch { image, box_row: truth.row, best_iou: m.best_iou });
            }
            // A box ends without priors only when a later box forced its best one.
            if m.priors == 0
                && let Some(taker) = s.matches.assigned[m.best_prior]
            {
                displaced.push(DisplacedBox {
                    image,
                    box_row: truth.row,
                    prior: m.best_prior,
                    taken_by: truths[taker].row,
                });
            }
        }

        ImageResult {
            figures: ImageFigures {
                boxes: truths.len(),
                positives: positives as u64,
                mined_negatives: tally.groups.mined_negatives.count,
                loc_sum: loc_sum.value(),
                conf_sum: tally.conf_sum.value(),
            },
            loc_sum,
            conf_sum: tally.conf_sum,
            classes,
            groups: tally.groups,
            examples: tally.examples,
            forced,
            displaced,
            priors_per_box: box_matches.iter().map(|m| m.priors).collect(),
            never_mined,
            nonfinite_conf,
            nonfinite_loc,
            hardest,
            records,
        }
    }

    /// The confidence loss of every prior against its class (unmined
    /// negatives are reported too) and, with mining, its mining score.
    /// Returns the never-mined counts and the non-finite logits.
    fn score_priors(&self, image: usize, s: &mut Scratch) -> (NeverMined, (u64, usize)) {
        let params = self.params;
        let priors = self.priors.len();
        let width = self.classes;
        let mut never_mined = NeverMined::default();
        let mut nonfinite = (0, 0);
        s.conf.clear();
        s.scores.clear();
        for first in (0..priors).step_by(ROWS_PER_CALL) {
            let first_start = (image * priors + first) * width;
            s.summaries.resize(ROWS_PER_CALL.min(priors - first), RowSoftmax::default());
            reduce_rows(&self.conf, first_start, width, &mut s.rows, &mut s.summaries);
            for (k, row) in s.summaries.iter().enumerate() {
                let j = first + k;
                let start = first_start + k * width;
                if !row.finite {
                    let bad = (start..start + width).filter(|&i| !self.conf.get(i).is_finite());
                    if nonfinite.0 == 0 {
                        nonfinite.1 = bad.clone().next().unwrap_or(start);
                    }
                    nonfinite.0 += bad.count() as u64;
                }
                let class = s.class_of[j];
                let predicted = row.argmax.unwrap_or(0);
                let log_p = log_p(row, self.conf.get(start + class));
                let conf = PriorConf {
                    loss: params.conf_loss.loss(log_p),
                    log_p,
                    correct: predicted == class,
                    predicted: predicted as u32,
                    confidence: row.exp_sum.recip(),
                };
                s.conf.push(conf);
                if params.mining {
                    let score = match (params.preset, self.batch_max) {
                        (Preset::SsdPytorch, _) if class > 0 => 0.0,
                        (Preset::SsdPytorch, Some(batch_max)) => {
                            let score = global_max_mining_score(row, self.conf.get(start), batch_max);
                            never_mined.float64 += (score == f64::NEG_INFINITY) as u64;
                            never_mined.float32 += (row.max - batch_max < FLOAT32_EXP_UNDERFLOW) as u64;
                            score
                        }
                        (Preset::Torchvision, _) if class > 0 => f64::NEG_INFINITY,
                        _ => conf.loss,
                    };
                    s.scores.push(score);
                }
            }
        }
        (never_mined, nonfinite)
    }

    /// The image's hardest priors and, when kept, every prior's record.
    fn keep_priors(&self, image: usize, s: &mut Scratch) -> (Vec<HardPrior>, Vec<PriorRecord>) {
        let alpha = self.params.loc_weight;
        let selected = |j: usize| s.class_of[j] > 0 || s.mined[j];
        let records = if self.keep.records {
            (0..self.priors.len())
                .map(|j| PriorRecord { conf: s.conf[j].loss, loc: s.loc[j], selected: selected(j) })
                .collect()
        } else {
            Vec::new()
        };
        if self.keep.hardest == 0 {
            return (Vec::new(), records);
        }
        // Every prior is a candidate, as a key in scratch space: what the
        // image keeps is sized to the few it keeps, since every image's
        // result lives until the batch is merged.
        s.keys.clear();
        let loss = |j: usize| s.conf[j].loss + alpha * s.loc[j];
        s.keys.extend((0..self.priors.len()).map(|j| (rank_key(loss(j)), j as u32)));
        // HardPrior::harder within one image (the key ranks NaN first
        // whatever its sign; the loss kept is the sum itself).
        let k = self.keep.hardest.min(s.keys.len());
        select_hardest(&mut s.keys, k);
        s.keys[..k].sort_unstable_by(harder);
        let hardest = s.keys[..k]
            .iter()
            .map(|&(_, j)| {
                let j = j as usize;
                let class = s.class_of[j];
                HardPrior {
                    image,
                    prior: j,
                    class,
                    conf: s.conf[j].loss,
                    loc: s.loc[j],
                    loss: loss(j),
                    positive: class > 0,
                    mined: class == 0 && s.mined[j],
                }
            })
            .collect();
        (hardest, records)
    }

    /// Smooth L1 of the positives against their encoded boxes, and how many
    /// of the loc values read were not finite.
    fn localisation(
        &self,
        image: usize,
        truths: &[GroundTruth],
        s: &mut Scratch,
        classes: &mut [ClassFigures],
    ) -> (Sum, u64) {
        let [v0, v1] = self.params.variances;
        let weights = [1.0 / v0, 1.0 / v0, 1.0 / v1, 1.0 / v1];
        let priors = self.priors.len();
        let mut loc_sum = Sum::default();
        let mut nonfinite = 0;
        s.loc.clear();
        s.loc.resize(priors, 0.0);
        for (j, assigned) in s.matches.assigned.iter().enumerate() {
            let Some(i) = *assigned else { continue };
            let target = match self.params.preset {
                // ssd.pytorch stores the targets in a float32 tensor.
                Preset::SsdPytorch => {
                    encode_ssd_pytorch(&truths[i].corners, &self.priors.centers()[j], self.params.variances)
                        .map(|v| v as f32 as f64)
                }
                Preset::Torchvision => {
                    encode_torchvision(&truths[i].corners, &self.priors.corners()[j], weights)
                }
            };
            let mut loss = 0.0;
            for (k, t) in target.iter().enumerate() {
                let predicted = self.loc.get((image * priors + j) * 4 + k);
                nonfinite += !predicted.is_finite() as u64;
                loss += smooth_l1(predicted - t);
            }
            loc_sum.add(loss);
            s.loc[j] = loss;
            classes[s.class_of[j]].loc_sum.add(loss);
        }
        (loc_sum, nonfinite)
    }
}

/// The confidence part of one image, prior by prior.
#[derive(Default)]
struct ConfidenceTally {
    conf_sum: Sum,
    groups: Groups,
    examples: Vec<Example>,
}

impl ConfidenceTally {
    /// Files every prior under its group, and counts it into the loss as
    /// often as the preset does.
    /// `first_index` is the flat index of the image's first prior.
    fn count(&mut self, params: &SsdParams, s: &Scratch, classes: &mut [ClassFigures], first_index: u64) {
        for (j, (&class, conf)) in s.class_of.iter().zip(&s.conf).enumerate() {
            let positive = class > 0;
            let mined = s.mined[j];
            // Positives count once, and once more under torchvision when the
            // mining reached them (it adds the two sets, not their union).
            let times = if positive {
                1 + (params.mining && mined && params.preset == Preset::Torchvision) as usize
            } else {
                mined as usize
            };
            if positive {
                classes[class].positives += 1;
                self.groups.positives.add(conf.loss);
                if times == 2 {
                    self.groups.positives_counted_twice.add(conf.loss);
                }
            } else if mined {
                self.groups.mined_negatives.add(conf.loss);
            } else {
                self.groups.unmined_negatives.add(conf.loss);
            }
            let p_t = if times > 0 { conf.log_p.exp() } else { 0.0 };
            for _ in 0..times {
                self.conf_sum.add(conf.loss);
                classes[class].add(conf.loss, p_t);
                self.examples.push(Example {
                    class,
                    loss: conf.loss,
                    p_t,
                    correct: conf.correct,
                    positive,
                    baseline: -conf.log_p,
                    grad_norm: 1.0 - p_t,
                    index: first_index + j as u64,
                    target: class as f64,
                    predicted: conf.predicted,
                    confidence: conf.confidence,
                });
            }
        }
    }
}
