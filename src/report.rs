//! The report: one data model behind every output format. These structs are
//! the JSON schema (`docs/report-schema.md` documents each field); a number
//! that is not finite is written as `null` and explained in `warnings`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::tally::{Accumulate, Bucket, Grouping, Tally};

/// Changes only when a field changes meaning or disappears.
pub const SCHEMA_VERSION: u32 = 1;

/// The fractions of hardest examples whose share of the loss is reported.
pub const HARDEST_FRACTIONS: [f64; 4] = [0.01, 0.05, 0.10, 0.25];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Version of this layout.
    pub schema_version: u32,
    /// The loss: `ce` or `bce`.
    pub loss: String,
    /// Every parameter of the loss as it was resolved (defaults included).
    pub parameters: BTreeMap<String, Value>,
    /// The arrays read, in the order the loss takes them.
    pub inputs: Vec<InputInfo>,
    /// The loss as the reference returns it with the chosen reduction.
    pub value: Option<f64>,
    /// The loss with `reduction='sum'`.
    pub sum: Option<f64>,
    /// The mean's divisor: `value = sum / normalizer` under `reduction=mean`.
    pub normalizer: Option<f64>,
    /// Examples counted (CE: non-ignored rows; BCE: elements).
    pub count: u64,
    /// Examples skipped because their target is the ignore index.
    pub ignored: u64,
    /// One row per class, in class order.
    pub classes: Vec<ClassRow>,
    /// Easy versus hard examples.
    pub difficulty: Difficulty,
    /// SSD: the two parts of the loss and the counts behind them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Components>,
    /// SSD: positives, mined negatives and the negatives mining left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<PriorGroups>,
    /// SSD: one row per image, in batch order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<ImageRow>>,
    /// SSD: how ground-truth boxes were matched to priors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matching: Option<Matching>,
    /// The same examples under the plain, unweighted loss (CE, or BCE for
    /// sigmoid losses): present when the loss is weighted, smoothed or focal,
    /// so the two can be read side by side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
    /// Everything the user should know about this result.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// The plain loss: `ce` or `bce`.
    pub loss: String,
    /// Its value under the same reduction, as the reference computes it
    /// without weights (mean over counted examples, or over elements).
    pub value: Option<f64>,
    pub sum: Option<f64>,
    /// Per class, in class order.
    pub classes: Vec<BaselineClass>,
    pub difficulty: BaselineDifficulty,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineClass {
    pub class: usize,
    pub loss_sum: Option<f64>,
    /// Share of the baseline's `sum`.
    pub loss_share: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineDifficulty {
    /// The same easy examples as the report's (split by p_t), under the baseline.
    pub easy: Share,
    pub hard: Share,
    pub bins: Vec<Bin>,
    pub gradient_norm_bins: Vec<Bin>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputInfo {
    /// What the array is for: `logits`, `targets`, `weight`, `pos_weight`.
    pub role: String,
    /// The file, and the member of a bundle when there is one (`file.npz:key`).
    pub source: String,
    pub shape: Vec<usize>,
    /// NumPy's name of the element type (`float32`, `int64`, …).
    pub dtype: String,
    /// Whether the array was read in place from a memory map.
    pub memory_mapped: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassRow {
    /// The class index.
    pub class: usize,
    /// The name given with `--class-names`.
    pub name: Option<String>,
    /// Examples of this class (CE: targets of this class; BCE: elements of its column).
    pub count: u64,
    /// `count` over all counted examples.
    pub frequency: Option<f64>,
    /// This class's part of `sum`.
    pub loss_sum: Option<f64>,
    /// `loss_sum / sum`.
    pub loss_share: Option<f64>,
    /// `loss_sum / count`.
    pub mean_loss: Option<f64>,
    /// Mean probability given to the true outcome.
    pub mean_p_t: Option<f64>,
    /// Fraction predicted right (CE: argmax; BCE: sign of the logit).
    pub accuracy: Option<f64>,
    /// Elementwise losses (BCE, sigmoid focal): elements whose target is
    /// above 0.5; null for other losses.
    pub positives: Option<u64>,
    /// Elementwise losses: loss of the positive elements.
    pub positive_loss_sum: Option<f64>,
    /// Elementwise losses: loss of the negative elements.
    pub negative_loss_sum: Option<f64>,
    /// SSD: Smooth L1 of the class's positive priors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loc_loss_sum: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Components {
    /// Localisation loss over N (ssd.pytorch's `loss_l`, torchvision's `bbox_regression`).
    pub loc: Option<f64>,
    /// Confidence loss over N (`loss_c`, `classification`).
    pub conf: Option<f64>,
    /// Smooth L1 summed over the positives' four offsets.
    pub loc_sum: Option<f64>,
    /// Confidence loss summed over the counted priors.
    pub conf_sum: Option<f64>,
    /// α: `value = (conf_sum + α · loc_sum) / N`.
    pub loc_weight: f64,
    /// N: positive priors in the batch.
    pub num_pos: u64,
    /// Negative priors counted (mined, or every negative without mining).
    pub num_neg: u64,
    pub n_images: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorGroups {
    pub positives: PriorGroup,
    pub mined_negatives: PriorGroup,
    /// What the negatives mining left out would have cost; outside the total.
    pub unmined_negatives: PriorGroup,
    /// torchvision: positives the mining also took, counted a second time.
    pub positives_counted_twice: PriorGroup,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorGroup {
    pub count: u64,
    pub conf_sum: Option<f64>,
    /// `conf_sum` over the counted confidence loss (`components.conf_sum`).
    pub conf_share: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRow {
    pub image: usize,
    /// Ground-truth boxes.
    pub boxes: u64,
    pub positives: u64,
    pub mined_negatives: u64,
    pub loc_sum: Option<f64>,
    pub conf_sum: Option<f64>,
    /// `(conf_sum + α · loc_sum) / sum`: the image's part of the loss.
    pub loss_share: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matching {
    /// Ground-truth boxes in the batch.
    pub boxes: u64,
    /// Boxes positive only because their best prior is forced (best IoU below the threshold).
    pub forced_only: Vec<ForcedBox>,
    /// Boxes left with no prior: a later box took their only one.
    pub displaced: Vec<DisplacedBox>,
    /// Positive priors per box.
    pub priors_per_box: Option<Spread>,
    /// Negatives ssd.pytorch's global-max mining score can never pick
    /// (null unless that score is in use): in this float64 evaluation, and
    /// had the logits been float32.
    pub never_mined: Option<NeverMined>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForcedBox {
    pub image: usize,
    /// The box's row in the image's truths.
    pub box_index: usize,
    pub best_iou: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DisplacedBox {
    pub image: usize,
    pub box_index: usize,
    /// The prior it lost.
    pub prior: usize,
    /// The box (row) that took it.
    pub taken_by: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub min: u64,
    pub median: f64,
    pub max: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeverMined {
    pub float64: u64,
    pub float32: u64,
}

/// The detection parts of an SSD report, and each class's localisation loss.
pub struct Detection {
    pub components: Components,
    pub groups: PriorGroups,
    pub images: Vec<ImageRow>,
    pub matching: Matching,
    pub class_loc_sums: Vec<f64>,
    /// Positive priors per class (torchvision may count a positive twice in
    /// the confidence loss; this counts it once).
    pub class_positives: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difficulty {
    /// Examples with `p_t` above this are easy.
    pub easy_threshold: f64,
    pub easy: Share,
    pub hard: Share,
    /// Histogram of `p_t` in equal-width bins over [0, 1].
    pub bins: Vec<Bin>,
    /// Histogram of GHM's gradient norm g (|p - t| for sigmoid losses,
    /// 1 - p_t for softmax) in ten bins over [0, 1].
    pub gradient_norm_bins: Vec<Bin>,
    /// Share of the loss carried by the hardest examples.
    pub concentration: Concentration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Share {
    pub count: u64,
    pub loss_sum: Option<f64>,
    /// `loss_sum / sum`.
    pub loss_share: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    /// Lower edge of `p_t` (inclusive).
    pub lower: f64,
    /// Upper edge of `p_t` (exclusive, but the last bin includes 1).
    pub upper: f64,
    pub count: u64,
    pub loss_sum: Option<f64>,
    pub loss_share: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Concentration {
    /// All counted examples (CE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<Hardest>,
    /// Positive examples only (BCE: target above 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positives: Option<Hardest>,
    /// Negative examples only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negatives: Option<Hardest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hardest {
    /// Examples in the group.
    pub count: u64,
    /// One entry per fraction: 1%, 5%, 10%, 25%.
    pub levels: Vec<Level>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Level {
    /// The fraction of the group taken, hardest (largest loss) first.
    pub fraction: f64,
    /// Examples taken: `ceil(fraction × count)`.
    pub count: u64,
    /// Their share of the group's loss.
    pub loss_share: Option<f64>,
}

/// The reduced figures of a loss, computed by the loss from its tally.
pub struct Totals {
    pub value: f64,
    pub sum: f64,
    pub normalizer: f64,
    /// The plain loss the report compares with, when there is one.
    pub baseline: Option<BaselineTotals>,
}

pub struct BaselineTotals {
    pub loss: &'static str,
    pub value: f64,
    pub sum: f64,
}

/// Everything besides the tally that goes into a report.
pub struct Header {
    pub loss: &'static str,
    pub parameters: BTreeMap<String, Value>,
    pub inputs: Vec<InputInfo>,
    pub class_names: Option<Vec<String>>,
    pub warnings: Vec<String>,
    /// The SSD sections, for the SSD loss.
    pub detection: Option<Detection>,
}

pub fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn ratio(part: f64, whole: f64) -> Option<f64> {
    if whole == 0.0 { None } else { finite(part / whole) }
}

impl Report {
    pub fn build(header: Header, totals: Totals, tally: Tally, with_positives: bool) -> Report {
        let Header { loss, parameters, inputs, class_names, mut warnings, detection } = header;
        // Shares are of what the tally counted: the loss itself, or for SSD
        // its confidence part.
        let sum = tally.total();
        let counted: u64 = tally.classes.iter().map(|c| c.all.count).sum();
        let classes = tally
            .classes
            .iter()
            .enumerate()
            .map(|(class, row)| {
                let loss_sum = row.all.loss.value();
                let count = row.all.count;
                // Exact at the ends: a class of positives only has no negative loss.
                let negatives_loss = match row.positives.count {
                    0 => loss_sum,
                    n if n == count => 0.0,
                    _ => loss_sum - row.positives.loss.value(),
                };
                ClassRow {
                    class,
                    name: class_names.as_ref().and_then(|names| names.get(class).cloned()),
                    count,
                    frequency: ratio(count as f64, counted as f64),
                    loss_sum: finite(loss_sum),
                    loss_share: ratio(loss_sum, sum),
                    mean_loss: ratio(loss_sum, count as f64),
                    mean_p_t: ratio(row.p_t.value(), count as f64),
                    accuracy: ratio(row.correct as f64, count as f64),
                    positives: match &detection {
                        Some(d) => d.class_positives.get(class).copied(),
                        None => with_positives.then_some(row.positives.count),
                    },
                    positive_loss_sum: if with_positives { finite(row.positives.loss.value()) } else { None },
                    negative_loss_sum: if with_positives { finite(negatives_loss) } else { None },
                    loc_loss_sum: detection
                        .as_ref()
                        .and_then(|d| d.class_loc_sums.get(class).copied())
                        .and_then(finite),
                }
            })
            .collect();
        let share = |bucket: &Bucket| Share {
            count: bucket.count,
            loss_sum: finite(bucket.loss.value()),
            loss_share: ratio(bucket.loss.value(), sum),
        };
        let bins = bins_of(&tally.bins(), |b| b.loss.value(), sum);
        let gradient_norm_bins = bins_of(&tally.gradient_bins(), |b| b.loss.value(), sum);
        let baseline = totals.baseline.map(|b| {
            let base_share = |bucket: &Bucket| Share {
                count: bucket.count,
                loss_sum: finite(bucket.baseline.value()),
                loss_share: ratio(bucket.baseline.value(), b.sum),
            };
            Baseline {
                loss: b.loss.to_string(),
                value: finite(b.value),
                sum: finite(b.sum),
                classes: tally
                    .classes
                    .iter()
                    .enumerate()
                    .map(|(class, row)| BaselineClass {
                        class,
                        loss_sum: finite(row.all.baseline.value()),
                        loss_share: ratio(row.all.baseline.value(), b.sum),
                    })
                    .collect(),
                difficulty: BaselineDifficulty {
                    easy: base_share(&tally.easy()),
                    hard: base_share(&tally.hard()),
                    bins: bins_of(&tally.bins(), |x| x.baseline.value(), b.sum),
                    gradient_norm_bins: bins_of(&tally.gradient_bins(), |x| x.baseline.value(), b.sum),
                },
            }
        });
        let concentration = match tally.settings.grouping {
            Grouping::All => Concentration {
                all: Some(tally.concentration[0].hardest()),
                positives: None,
                negatives: None,
            },
            Grouping::PositivesNegatives => Concentration {
                all: None,
                negatives: Some(tally.concentration[0].hardest()),
                positives: Some(tally.concentration[1].hardest()),
            },
        };
        for (name, x) in [("value", totals.value), ("sum", totals.sum)] {
            if !x.is_finite() {
                warnings.push(format!("{name} is {x} and is written as null"));
            }
        }
        Report {
            schema_version: SCHEMA_VERSION,
            loss: loss.to_string(),
            parameters,
            inputs,
            value: finite(totals.value),
            sum: finite(totals.sum),
            normalizer: finite(totals.normalizer),
            count: counted,
            ignored: tally.ignored,
            classes,
            difficulty: Difficulty {
                easy_threshold: tally.settings.easy_threshold,
                easy: share(&tally.easy()),
                hard: share(&tally.hard()),
                bins,
                gradient_norm_bins,
                concentration,
            },
            baseline,
            components: detection.as_ref().map(|d| d.components.clone()),
            groups: detection.as_ref().map(|d| d.groups.clone()),
            images: detection.as_ref().map(|d| d.images.clone()),
            matching: detection.map(|d| d.matching),
            warnings,
        }
    }
}

/// Equal-width bins over [0, 1], with the loss `of` each bucket and its share of `whole`.
fn bins_of(buckets: &[Bucket], of: impl Fn(&Bucket) -> f64, whole: f64) -> Vec<Bin> {
    let n = buckets.len() as f64;
    buckets
        .iter()
        .enumerate()
        .map(|(i, bucket)| Bin {
            lower: i as f64 / n,
            upper: (i + 1) as f64 / n,
            count: bucket.count,
            loss_sum: finite(of(bucket)),
            loss_share: ratio(of(bucket), whole),
        })
        .collect()
}
