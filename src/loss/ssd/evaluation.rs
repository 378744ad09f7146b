//! The SSD figures beyond the shared tally: the loss and its two parts, the
//! per-class, per-group and per-image breakdowns, and what matching and
//! mining did. Built from the per-image results in image order, so the
//! numbers do not depend on the thread count.

use crate::tally::Sum;

use super::figures::{ClassFigures, Groups, ImageFigures, MatchingFigures, NeverMined, Spread};
use super::image::ImageResult;
use super::truths::Truths;
use super::{Preset, SsdParams, ZeroPositives};

#[derive(Debug, Clone)]
pub struct SsdEvaluation {
    /// `(conf_sum + loc_weight · loc_sum) / normalizer`: the loss.
    pub value: f64,
    /// `loc_sum / normalizer` (ssd.pytorch's `loss_l`, torchvision's `bbox_regression`).
    pub loc: f64,
    /// `conf_sum / normalizer` (`loss_c`, `classification`).
    pub conf: f64,
    /// Smooth L1 over the positives' four offsets.
    pub loc_sum: f64,
    /// Confidence loss over the counted priors (torchvision's double counts included).
    pub conf_sum: f64,
    /// What the sums are divided by: N, or max(1, N) under torchvision.
    /// When N = 0 under ssd.pytorch, `value`, `loc` and `conf` follow the
    /// zero-positives policy instead.
    pub normalizer: f64,
    /// N: positive priors in the batch.
    pub num_pos: u64,
    /// Negative priors counted (mined, or all of them without mining).
    pub num_neg: u64,
    pub n_images: usize,
    /// Per class, background (0) first.
    pub classes: Vec<ClassFigures>,
    pub groups: Groups,
    pub images: Vec<ImageFigures>,
    pub matching: MatchingFigures,
    /// Set when ssd.pytorch's global-max mining score is in use.
    pub never_mined: Option<NeverMined>,
    /// NaN or infinite loc predictions among the positives.
    pub nonfinite_loc: u64,
    pub warnings: Vec<String>,
}

impl SsdEvaluation {
    /// Merges the per-image results, in image order.
    pub(super) fn from_images(
        results: &[ImageResult],
        classes: usize,
        truths: &Truths,
        params: &SsdParams,
        global_max_mining: bool,
    ) -> SsdEvaluation {
        let mut loc_sum = Sum::default();
        let mut conf_sum = Sum::default();
        let mut class_figures = vec![ClassFigures::default(); classes];
        let mut groups = Groups::default();
        let mut matching = MatchingFigures::default();
        let mut priors_per_box = Vec::new();
        let mut never_mined = NeverMined::default();
        let mut nonfinite_loc = 0;
        for result in results {
            loc_sum.merge(&result.loc_sum);
            conf_sum.merge(&result.conf_sum);
            for (mine, theirs) in class_figures.iter_mut().zip(&result.classes) {
                mine.merge(theirs);
            }
            groups.merge(&result.groups);
            matching.boxes += result.figures.boxes;
            matching.forced_only.extend_from_slice(&result.forced);
            matching.displaced.extend_from_slice(&result.displaced);
            priors_per_box.extend_from_slice(&result.priors_per_box);
            never_mined.float64 += result.never_mined.float64;
            never_mined.float32 += result.never_mined.float32;
            nonfinite_loc += result.nonfinite_loc;
        }
        matching.priors_per_box = Spread::of(priors_per_box);
        let (loc_sum, conf_sum) = (loc_sum.value(), conf_sum.value());
        let num_pos = groups.positives.count;
        let normalizer = match params.preset {
            Preset::SsdPytorch => num_pos as f64,
            Preset::Torchvision => num_pos.max(1) as f64,
        };
        let undefined = match params.zero_positives {
            ZeroPositives::Zero => 0.0,
            ZeroPositives::Nan => f64::NAN,
        };
        let divide = |sum: f64| if normalizer == 0.0 { undefined } else { sum / normalizer };
        let mut evaluation = SsdEvaluation {
            value: divide(conf_sum + params.loc_weight * loc_sum),
            loc: divide(loc_sum),
            conf: divide(conf_sum),
            loc_sum,
            conf_sum,
            normalizer,
            num_pos,
            num_neg: groups.mined_negatives.count,
            n_images: results.len(),
            classes: class_figures,
            groups,
            images: results.iter().map(|r| r.figures).collect(),
            matching,
            never_mined: global_max_mining.then_some(never_mined),
            nonfinite_loc,
            warnings: Vec::new(),
        };
        evaluation.warnings = evaluation.warnings(truths, params);
        evaluation
    }

    fn warnings(&self, truths: &Truths, params: &SsdParams) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.num_pos == 0 {
            warnings.push(match (params.preset, params.zero_positives) {
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
                params.neg_pos_ratio
            ));
        }
        if !self.matching.displaced.is_empty() {
            let first = self.matching.displaced[0];
            warnings.push(format!(
                "{} boxes have no prior: a later box took their best prior (the first: image {} box {}, taken by box {})",
                self.matching.displaced.len(),
                first.image,
                first.box_row,
                first.taken_by
            ));
        }
        let largest =
            truths.images.iter().flatten().flat_map(|t| t.corners).fold(f64::NEG_INFINITY, f64::max);
        if largest > 2.0 {
            warnings.push(format!(
                "box coordinates reach {largest}: ground truths should be relative to the image size (0 to 1), like the priors"
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
}
