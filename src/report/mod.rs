//! The report: one data model behind every output format. A report is a
//! core every loss shares (value, sums, classes, difficulty, baseline,
//! warnings) plus the sections that belong to one loss ([`LossSections`]).
//! These structs are the JSON schema (`docs/report-schema.md` documents each
//! field); NaN is written as `null`, and an infinity as `null` named in
//! the report's `nonfinite` object. `warnings` says when `value`, `sum` or
//! `normalizer` is not finite.

#![warn(missing_docs)]

mod findings;
mod view;

use std::collections::BTreeMap;
use std::fmt::Debug;

use serde::Serialize;
use serde_json::Value;

pub use crate::concentration::{HARDEST_FRACTIONS, Hardest, Level};
use crate::format::{Chart, Layout, Section};
use crate::input::Tensor;
use crate::tally::{Accumulate, Bucket, Grouping, Tally};
pub use findings::{
    Calibration, CalibrationBin, Confusion, ConfusionPair, ExampleKind, Examples, HardExample, LabelIssue,
    LabelIssues, Outcome, ShardSpan, Suspect,
};

/// Changes only when a field changes meaning or disappears.
pub const SCHEMA_VERSION: u32 = 1;

/// The report of one loss over one set of inputs.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Version of this layout.
    pub schema_version: u32,
    /// The loss: the subcommand that computed it (`ce`, `bce`, `focal`, `ssd`).
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
    /// The loss's own sections (SSD: `components`, `groups`, `images`,
    /// `matching`), between the shared difficulty and the baseline.
    #[serde(flatten)]
    pub sections: Option<Box<dyn LossSections>>,
    /// The same examples under the plain, unweighted loss (CE, or BCE for
    /// sigmoid losses): present when the loss is weighted, smoothed or focal,
    /// so the two can be read side by side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
    /// The hardest examples (absent with `--examples 0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub examples: Option<Examples>,
    /// Where the wrong probability goes (losses over rows of classes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confusion: Option<Confusion>,
    /// Confidence against accuracy.
    pub calibration: Calibration,
    /// Suspected label errors (with `--label-issues`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_issues: Option<LabelIssues>,
    /// Everything the user should know about this result.
    pub warnings: Vec<String>,
    /// How a person reads it: the loss's choices, not part of the JSON.
    #[serde(skip)]
    pub presentation: Presentation,
}

/// The parts of a report that belong to one loss. They are written into the
/// JSON after the shared `difficulty`, and render their own summary lines
/// and tables.
pub trait LossSections: erased_serde::Serialize + Debug + Send + Sync {
    /// Fills the loss's own columns of the shared per-class rows.
    fn amend_classes(&self, _classes: &mut [ClassRow]) {}
    /// Summary lines, after the shared figures.
    fn summary(&self) -> Vec<(String, String)>;
    /// Tables, after the shared ones.
    fn tables(&self, layout: Layout) -> Vec<Section>;
    /// Charts, after the shared ones.
    fn charts(&self) -> Vec<Chart> {
        Vec::new()
    }
}

erased_serde::serialize_trait_object!(LossSections);

/// How a person reads a loss's report: choices of the loss, kept out of the
/// JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Presentation {
    /// The loss's name in words (`cross entropy`).
    pub title: &'static str,
    /// Show the ignored count even when it is 0 (losses with an ignore index).
    pub show_ignored: bool,
    /// Show the loss by gradient norm (for softmax CE it repeats the p_t table).
    pub gradient_norm_table: bool,
}

/// The plain loss of the same examples, beside a weighted, smoothed or focal one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Baseline {
    /// The plain loss: `ce` or `bce`.
    pub loss: String,
    /// Its value under the same reduction, as the reference computes it
    /// without weights (mean over counted examples, or over elements).
    pub value: Option<f64>,
    /// Its `reduction='sum'` value.
    pub sum: Option<f64>,
    /// Per class, in class order.
    pub classes: Vec<BaselineClass>,
    /// Its easy/hard split and histograms.
    pub difficulty: BaselineDifficulty,
}

/// One class under the baseline loss.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BaselineClass {
    /// The class index.
    pub class: usize,
    /// The class's part of the baseline's `sum`.
    pub loss_sum: Option<f64>,
    /// Share of the baseline's `sum`.
    pub loss_share: Option<f64>,
}

/// The difficulty figures under the baseline loss.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BaselineDifficulty {
    /// The same easy examples as the report's (split by p_t), under the baseline.
    pub easy: Share,
    /// The hard examples under the baseline.
    pub hard: Share,
    /// The p_t histogram under the baseline.
    pub bins: Vec<Bin>,
    /// The gradient-norm histogram under the baseline.
    pub gradient_norm_bins: Vec<Bin>,
}

/// One array the loss read.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct InputInfo {
    /// What the array is for: `logits`, `targets`, `weight`, `pos_weight`.
    pub role: String,
    /// The file, and the member of a bundle when there is one (`file.npz:key`).
    pub source: String,
    /// The array's shape.
    pub shape: Vec<usize>,
    /// NumPy's name of the element type (`float32`, `int64`, …).
    pub dtype: String,
    /// Whether the array was read in place from a memory map.
    pub memory_mapped: bool,
}

/// One class's part of the loss.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// Mean confidence: the largest probability (softmax) or σ(x) (elementwise),
    /// to read beside `accuracy`.
    pub mean_confidence: Option<f64>,
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

/// Easy versus hard examples, and how the loss spreads over them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difficulty {
    /// Examples with `p_t` above this are easy.
    pub easy_threshold: f64,
    /// Examples with `p_t` above the threshold.
    pub easy: Share,
    /// Examples with `p_t` at or below the threshold.
    pub hard: Share,
    /// Histogram of `p_t` in equal-width bins over [0, 1].
    pub bins: Vec<Bin>,
    /// Histogram of GHM's gradient norm g (|p - t| for sigmoid losses,
    /// 1 - p_t for softmax) in ten bins over [0, 1].
    pub gradient_norm_bins: Vec<Bin>,
    /// Share of the loss carried by the hardest examples.
    pub concentration: Concentration,
}

/// A set of examples and its part of the loss.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Share {
    /// Examples in the set.
    pub count: u64,
    /// Their loss.
    pub loss_sum: Option<f64>,
    /// `loss_sum / sum`.
    pub loss_share: Option<f64>,
}

/// One bin of a histogram over [0, 1].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bin {
    /// Lower edge of `p_t` (inclusive).
    pub lower: f64,
    /// Upper edge of `p_t` (exclusive, but the last bin includes 1).
    pub upper: f64,
    /// Examples in the bin.
    pub count: u64,
    /// Their loss.
    pub loss_sum: Option<f64>,
    /// `loss_sum / sum`.
    pub loss_share: Option<f64>,
}

/// The share of the loss the hardest examples carry, per group.
#[derive(Debug, Clone, PartialEq, Serialize)]
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

/// The reduced figures of a loss, computed by the loss from its tally.
pub struct Totals {
    /// `value` under the chosen reduction.
    pub value: f64,
    /// The `reduction='sum'` value.
    pub sum: f64,
    /// The mean's divisor.
    pub normalizer: f64,
    /// The plain loss the report compares with, when there is one.
    pub baseline: Option<BaselineTotals>,
}

/// The baseline's reduced figures.
pub struct BaselineTotals {
    /// The plain loss: `ce` or `bce`.
    pub loss: &'static str,
    /// Its value under the same reduction.
    pub value: f64,
    /// Its `reduction='sum'` value.
    pub sum: f64,
}

/// Everything besides the tally that goes into a report.
pub struct Header {
    /// The loss's name, as the report's `loss` field.
    pub loss: &'static str,
    /// How a person reads the report.
    pub presentation: Presentation,
    /// Every parameter of the loss as it was resolved (defaults included).
    pub parameters: BTreeMap<String, Value>,
    /// The arrays read, in the order the loss takes them.
    pub inputs: Vec<InputInfo>,
    /// Names of the classes, in class order.
    pub class_names: Option<Vec<String>>,
    /// Facts about the inputs and the reference the user should hear of.
    pub warnings: Vec<String>,
    /// Whether the class rows carry positives and their loss (elementwise losses).
    pub positives_per_class: bool,
    /// The loss's own sections.
    pub sections: Option<Box<dyn LossSections>>,
    /// What the loss's examples are.
    pub example_kind: ExampleKind,
    /// The shape of its example axes.
    pub example_shape: Vec<usize>,
    /// The suspected label errors, least self-confident first, when looked for.
    pub suspects: Option<Vec<Suspect>>,
    /// How many of them the report lists.
    pub suspects_listed: usize,
    /// The shards of a run over several, in concatenation order.
    pub shards: Vec<ShardSpan>,
}

impl Header {
    /// The header of a `loss` report with no parameters, inputs or warnings yet.
    pub fn new(loss: &'static str, presentation: Presentation) -> Header {
        Header {
            loss,
            presentation,
            parameters: BTreeMap::new(),
            inputs: Vec::new(),
            class_names: None,
            warnings: Vec::new(),
            positives_per_class: false,
            sections: None,
            example_kind: ExampleKind::Row,
            example_shape: Vec::new(),
            suspects: None,
            suspects_listed: 0,
            shards: Vec::new(),
        }
    }
}

impl InputInfo {
    /// How a loaded array is described in the report.
    pub fn of(tensor: &Tensor) -> InputInfo {
        InputInfo {
            role: tensor.origin.role.clone(),
            source: tensor.origin.spec.clone(),
            shape: tensor.shape.clone(),
            dtype: tensor.dtype.name().into(),
            memory_mapped: tensor.mapped,
        }
    }
}

/// `x`, or `None` when it is NaN. An infinity is kept: the table shows it
/// as `inf`, and the JSON, which has no infinities, writes `null` and names
/// the field in `nonfinite` (see [`crate::format::json_text`]).
pub fn number(x: f64) -> Option<f64> {
    (!x.is_nan()).then_some(x)
}

/// How many of the tally's class rows [`Report::build`] lets go of at a time.
const RELEASED_ROWS: usize = 1 << 14;

/// `part / whole`: `None` when `whole` is 0 (undefined) or the ratio is NaN.
pub fn ratio(part: f64, whole: f64) -> Option<f64> {
    if whole == 0.0 { None } else { number(part / whole) }
}

impl Report {
    /// The report of a pass: the header, the loss's totals and its tally.
    pub fn build(header: Header, totals: Totals, mut tally: Tally) -> Report {
        let Header {
            loss,
            presentation,
            parameters,
            inputs,
            class_names,
            mut warnings,
            positives_per_class: with_positives,
            sections,
            example_kind,
            example_shape,
            suspects,
            suspects_listed,
            shards,
        } = header;
        // Shares are of what the tally counted: the loss itself, or for SSD
        // its confidence part.
        let sum = tally.total();
        let counted: u64 = tally.classes.iter().map(|c| c.all.count).sum();
        let baseline_sum = totals.baseline.as_ref().map(|b| b.sum);
        // The tally's rows are let go as the report's are made, from the last
        // class down: with a vocabulary-sized class axis, both tables at once
        // would be most of what a run holds beside its input.
        let mut rows = std::mem::take(&mut tally.classes);
        let mut classes = Vec::with_capacity(rows.len());
        let mut baseline_classes = Vec::with_capacity(if baseline_sum.is_some() { rows.len() } else { 0 });
        while let Some(row) = rows.pop() {
            let class = rows.len();
            let loss_sum = row.all.loss.value();
            let count = row.all.count;
            // Exact at the ends: a class of positives only has no negative loss.
            let negatives_loss = match row.positives.count {
                0 => loss_sum,
                n if n == count => 0.0,
                _ => loss_sum - row.positives.loss.value(),
            };
            classes.push(ClassRow {
                class,
                name: class_names.as_ref().and_then(|names| names.get(class).cloned()),
                count,
                frequency: ratio(count as f64, counted as f64),
                loss_sum: number(loss_sum),
                loss_share: ratio(loss_sum, sum),
                mean_loss: ratio(loss_sum, count as f64),
                mean_p_t: ratio(row.p_t.value(), count as f64),
                accuracy: ratio(row.correct as f64, count as f64),
                mean_confidence: ratio(row.confidence.value(), count as f64),
                positives: with_positives.then_some(row.positives.count),
                positive_loss_sum: if with_positives { number(row.positives.loss.value()) } else { None },
                negative_loss_sum: if with_positives { number(negatives_loss) } else { None },
                loc_loss_sum: None,
            });
            if let Some(base_sum) = baseline_sum {
                baseline_classes.push(BaselineClass {
                    class,
                    loss_sum: number(row.all.baseline.value()),
                    loss_share: ratio(row.all.baseline.value(), base_sum),
                });
            }
            if class.is_multiple_of(RELEASED_ROWS) {
                rows.shrink_to_fit();
            }
        }
        classes.reverse();
        baseline_classes.reverse();
        if let Some(sections) = &sections {
            sections.amend_classes(&mut classes);
        }
        let share = |bucket: &Bucket| Share {
            count: bucket.count,
            loss_sum: number(bucket.loss.value()),
            loss_share: ratio(bucket.loss.value(), sum),
        };
        let bins = bins_of(&tally.bins(), |b| b.loss.value(), sum);
        let gradient_norm_bins = bins_of(&tally.gradient_bins(), |b| b.loss.value(), sum);
        let baseline = totals.baseline.map(|b| {
            let base_share = |bucket: &Bucket| Share {
                count: bucket.count,
                loss_sum: number(bucket.baseline.value()),
                loss_share: ratio(bucket.baseline.value(), b.sum),
            };
            Baseline {
                loss: b.loss.to_string(),
                value: number(b.value),
                sum: number(b.sum),
                classes: baseline_classes,
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
        for (name, x) in [("value", totals.value), ("sum", totals.sum), ("normalizer", totals.normalizer)] {
            if x.is_nan() {
                warnings.push(format!("{name} is NaN and is written as null"));
            } else if x.is_infinite() {
                warnings.push(format!(
                    "{name} is {x}, as PyTorch's float64 gives (the sum overflows or a term is infinite); \
                     JSON writes it as null and lists it in nonfinite"
                ));
            }
        }
        Report {
            schema_version: SCHEMA_VERSION,
            loss: loss.to_string(),
            parameters,
            inputs,
            value: number(totals.value),
            sum: number(totals.sum),
            normalizer: number(totals.normalizer),
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
            sections,
            baseline,
            examples: (tally.settings.findings.examples > 0).then(|| {
                findings::examples(
                    &tally.findings.hardest.sorted(),
                    example_kind,
                    &example_shape,
                    sum,
                    class_names.as_deref(),
                    &shards,
                )
            }),
            confusion: tally
                .settings
                .findings
                .confusion
                .then(|| findings::confusion(&tally.findings.confusion, sum)),
            calibration: findings::calibration(&tally.findings.calibration),
            label_issues: suspects.map(|s| findings::label_issues(&s, suspects_listed, &example_shape)),
            warnings,
            presentation,
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
            loss_sum: number(of(bucket)),
            loss_share: ratio(of(bucket), whole),
        })
        .collect()
}
