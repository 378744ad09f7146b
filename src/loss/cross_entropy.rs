//! Cross entropy with PyTorch's semantics (`F.cross_entropy`): class-index
//! targets with weight, ignore index and label smoothing, or probability
//! targets. The mean divides by Σ w[y] over counted targets for index
//! targets and by the number of examples for probability targets.
//!
//! `--preset mmdet` is mmdet's `CrossEntropyLoss`: the same per-example
//! losses (class weights multiply rows), reduced by mmdet's
//! `weight_reduce_loss`: the mean divides by every target, ignored ones
//! included, or by the non-ignored count (`avg_non_ignore`) or a given
//! `avg_factor`, each plus float32's epsilon.
//!
//! Every log-probability is exact to a few ulps for any finite logits
//! ([`crate::math::ln_sum_exp_into`]): an example whose target class dominates
//! keeps its small loss, where `log_softmax` loses digits from a gap of
//! about 15 and returns 0 past about 37.

use std::collections::BTreeMap;
use std::ops::Range;

use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, Origin, Result};
use crate::input::{Sources, Tensor, Values, shape_text};
use crate::math::{Row, RowSoftmax};
use crate::report::{BaselineTotals, Presentation, Totals};
use crate::settings::{self, ReportArgs};
use crate::tally::findings::ExampleKind;
use crate::tally::{Example, Grouping, Operand, Tally};

use super::{
    ClassLayout, Labels, Loss, NotClasses, PerExample, Prepared, Reducer, Reduction, RowPass, SoftmaxRows,
    check_class_weights, check_float_predictions, class_labels, describe, each_row, exp_row, first_max,
    prediction, resolve_axis,
};

/// Cross entropy over class logits, as F.cross_entropy
#[derive(Debug, Args)]
pub struct CeArgs {
    /// A bundle (.npz or JSON object) holding arrays named logits, targets and,
    /// optionally, weight; flags override its members
    #[arg(value_name = "BUNDLE")]
    pub bundle: Option<String>,
    /// Logits [N, C], [N, C, d1, …] or class-last with --class-axis -1 (FILE or FILE:KEY)
    #[arg(long, value_name = "SPEC")]
    pub logits: Vec<String>,
    /// Class indices (any integer dtype) or float probabilities shaped like the logits
    #[arg(long, value_name = "SPEC")]
    pub targets: Vec<String>,
    /// Per-class weights: an inline list (1,2,0.5) or an array file
    #[arg(long, value_name = "LIST|SPEC", allow_hyphen_values = true)]
    pub weight: Vec<String>,
    /// Targets equal to this are skipped, as PyTorch's ignore_index
    #[arg(long, default_value_t = -100, allow_negative_numbers = true)]
    pub ignore_index: i64,
    /// Label smoothing ε in [0, 1]
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub label_smoothing: f64,
    /// How the per-example losses are reduced to the value
    #[arg(long, value_enum, default_value_t = Reduction::Mean)]
    pub reduction: Reduction,
    /// The axis of the classes [default: 1, as PyTorch; 0 for a single example]
    #[arg(long, allow_negative_numbers = true)]
    pub class_axis: Option<i64>,
    /// Whose reduction to reproduce: F.cross_entropy, or mmdet's CrossEntropyLoss
    #[arg(long, value_enum, default_value_t = CePreset::Pytorch)]
    pub preset: CePreset,
    /// mmdet: the mean divides by the non-ignored targets (+ 1.1920929e-07), not by all of them
    #[arg(long)]
    pub avg_non_ignore: bool,
    /// mmdet's avg_factor: the mean is sum / (F + 1.1920929e-07)
    #[arg(long, value_name = "F", allow_negative_numbers = true)]
    pub avg_factor: Option<f64>,
    #[command(flatten)]
    pub report: ReportArgs,
}

/// Whose cross entropy is reproduced.
// The variants' text is `--help`'s, where `w[y]` reads as it is written.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CePreset {
    /// torch.nn.functional.cross_entropy: the mean divides by Σ w[y] over the counted targets
    Pytorch,
    /// mmdet.models.losses.CrossEntropyLoss: w[y] scales rows; the mean divides by every target (ignored included), or see --avg-non-ignore and --avg-factor
    Mmdet,
}

impl CePreset {
    pub fn name(self) -> &'static str {
        match self {
            CePreset::Pytorch => "pytorch",
            CePreset::Mmdet => "mmdet",
        }
    }
}

/// What the mean divides by.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum CeDivisor {
    /// PyTorch: `Σ w[y]` over counted targets (index targets), or the number
    /// of examples (probability targets).
    Pytorch,
    /// mmdet's `loss.mean()`: every target, ignored ones included.
    AllTargets,
    /// mmdet's `avg_non_ignore`: the counted targets + float32 eps.
    NonIgnored,
    /// mmdet's `avg_factor`: F + float32 eps.
    AvgFactor(f64),
}

/// `torch.finfo(torch.float32).eps`, which mmdet's `weight_reduce_loss`
/// adds to its divisor.
pub const FLOAT32_EPS: f64 = f32::EPSILON as f64;

/// The arrays of a cross entropy.
pub struct CeInputs {
    logits: Tensor,
    targets: Tensor,
    weight: Option<Tensor>,
}

impl Loss for CeArgs {
    const NAME: &'static str = "ce";
    const PRESENTATION: Presentation =
        Presentation { title: "cross entropy", show_ignored: true, gradient_norm_table: false };
    type Inputs = CeInputs;

    fn shared(&self) -> (&ReportArgs, Option<&str>) {
        (&self.report, self.bundle.as_deref())
    }

    fn check(&self) -> Result<()> {
        settings::label_smoothing(self.label_smoothing)?;
        self.divisor().map(drop)
    }

    fn read(&self, sources: &Sources) -> Result<CeInputs> {
        Ok(CeInputs {
            logits: sources.required(&self.logits, "logits")?,
            targets: sources.required(&self.targets, "targets")?,
            weight: sources.optional(&self.weight, "weight")?,
        })
    }

    fn prepare<'a>(&'a self, inputs: &'a CeInputs) -> Result<Prepared<'a>> {
        let CeInputs { logits, targets, weight } = inputs;
        let weight_values = match weight {
            Some(w) if w.shape.len() != 1 => {
                return Err(Error::input(
                    &w.origin,
                    format!("shape {} is not one weight per class", w.shape_text()),
                ));
            }
            Some(w) => Some((w.to_f64_vec(), w.origin.clone())),
            None => None,
        };
        let params = CrossEntropyParams {
            weight: weight_values,
            ignore_index: self.ignore_index,
            label_smoothing: self.label_smoothing,
            reduction: self.reduction,
            class_axis: self.class_axis,
        };
        let loss = CrossEntropy::with_divisor(logits, targets, &params, self.divisor()?)?;
        let mut parameters = BTreeMap::new();
        parameters.insert("preset".into(), json!(self.preset.name()));
        if self.preset == CePreset::Mmdet {
            parameters.insert("avg_non_ignore".into(), json!(self.avg_non_ignore));
            parameters.insert("avg_factor".into(), json!(self.avg_factor));
        }
        parameters.insert("reduction".into(), json!(self.reduction.name()));
        parameters.insert("ignore_index".into(), json!(self.ignore_index));
        parameters.insert("label_smoothing".into(), json!(self.label_smoothing));
        parameters.insert("weight".into(), params.weight.as_ref().map_or(Value::Null, |(w, _)| json!(w)));
        parameters.insert("class_axis".into(), json!(loss.layout().axis));
        parameters.insert("target_mode".into(), json!(loss.target_mode()));
        Ok(Prepared {
            parameters,
            inputs: describe([logits, targets].into_iter().chain(weight)),
            operands: [logits, targets],
            warnings: loss.warnings.clone(),
            positives_per_class: false,
            pass: Box::new(loss),
        })
    }
}

impl CeArgs {
    /// The mean's divisor the preset and flags ask for, checked.
    fn divisor(&self) -> Result<CeDivisor> {
        if self.preset == CePreset::Pytorch {
            if self.avg_non_ignore || self.avg_factor.is_some() {
                let flag = if self.avg_non_ignore { "--avg-non-ignore" } else { "--avg-factor" };
                return Err(Error::usage(format!(
                    "{flag} is mmdet's CrossEntropyLoss: add --preset mmdet (F.cross_entropy has no such argument)"
                )));
            }
            return Ok(CeDivisor::Pytorch);
        }
        if self.label_smoothing > 0.0 {
            return Err(Error::usage("mmdet's CrossEntropyLoss has no label smoothing (--preset mmdet)"));
        }
        match self.avg_factor {
            Some(_) if self.reduction == Reduction::Sum => Err(Error::usage(
                "--avg-factor sets the mean's divisor: it does not apply with --reduction sum (mmdet raises a ValueError)",
            )),
            Some(_) if self.avg_non_ignore => Err(Error::usage(
                "give either --avg-factor or --avg-non-ignore: both set the mean's divisor (with both, mmdet uses the avg factor)",
            )),
            Some(factor) if !(factor.is_finite() && factor >= 0.0) => {
                Err(Error::usage(format!("--avg-factor {factor} is not a finite number ≥ 0")))
            }
            Some(factor) => Ok(CeDivisor::AvgFactor(factor)),
            None if self.avg_non_ignore => Ok(CeDivisor::NonIgnored),
            None => Ok(CeDivisor::AllTargets),
        }
    }
}

/// The parameters of `F.cross_entropy`, plus where the classes sit.
#[derive(Debug, Clone)]
pub struct CrossEntropyParams {
    /// Per-class weights, and where they came from.
    pub weight: Option<(Vec<f64>, Origin)>,
    pub ignore_index: i64,
    /// ε in [0, 1].
    pub label_smoothing: f64,
    pub reduction: Reduction,
    /// The class axis; `None` takes PyTorch's (1, or 0 for a single example).
    pub class_axis: Option<i64>,
}

enum Targets<'a> {
    /// One class index per example, checked and copied.
    Indices(Labels),
    /// A probability per class, shaped like the logits.
    Probabilities(Values<'a>),
}

pub struct CrossEntropy<'a> {
    logits: Values<'a>,
    targets: Targets<'a>,
    layout: ClassLayout,
    /// The logits' shape without the class axis.
    example_shape: Vec<usize>,
    weight: Option<Vec<f64>>,
    smoothing: f64,
    reduction: Reduction,
    divisor: CeDivisor,
    /// Facts about the inputs the user should hear of.
    pub warnings: Vec<String>,
}

impl<'a> CrossEntropy<'a> {
    /// `F.cross_entropy`.
    pub fn new(logits: &'a Tensor, targets: &'a Tensor, params: &CrossEntropyParams) -> Result<Self> {
        CrossEntropy::with_divisor(logits, targets, params, CeDivisor::Pytorch)
    }

    /// The same losses, reduced by `divisor` (mmdet's, or PyTorch's).
    pub fn with_divisor(
        logits: &'a Tensor,
        targets: &'a Tensor,
        params: &CrossEntropyParams,
        divisor: CeDivisor,
    ) -> Result<Self> {
        check_float_predictions(logits)?;
        if logits.shape.is_empty() {
            return Err(Error::input(&logits.origin, "is a scalar: logits need a class axis"));
        }
        let default_axis = if logits.shape.len() == 1 { 0 } else { 1 };
        let axis =
            resolve_axis(params.class_axis.unwrap_or(default_axis), logits.shape.len(), &logits.origin)?;
        let layout = ClassLayout::new(&logits.shape, axis, &logits.origin)?;
        if layout.classes == 0 {
            return Err(Error::input(&logits.origin, format!("class axis {axis} has length 0")));
        }
        let mut index_shape = logits.shape.clone();
        index_shape.remove(axis);
        let mut warnings = Vec::new();
        let targets_view = if targets.shape == logits.shape {
            if !targets.dtype.is_float() {
                return Err(Error::input(
                    &targets.origin,
                    format!(
                        "{} targets shaped like the logits {}: probability targets must be float, class indices need shape {}",
                        targets.dtype.name(),
                        logits.shape_text(),
                        shape_text(&index_shape)
                    ),
                ));
            }
            if params.ignore_index >= 0 {
                return Err(Error::usage(format!(
                    "--ignore-index {} is not supported with probability targets (PyTorch refuses it too)",
                    params.ignore_index
                )));
            }
            if divisor != CeDivisor::Pytorch {
                return Err(Error::input(
                    &targets.origin,
                    format!(
                        "probability targets shaped like the logits {}: the mmdet preset takes class indices {}",
                        logits.shape_text(),
                        shape_text(&index_shape)
                    ),
                ));
            }
            Targets::Probabilities(targets.values())
        } else if targets.shape == index_shape {
            let labels = class_labels(targets, layout.classes, &NotClasses::ignoring(params.ignore_index))?;
            if targets.dtype.is_float() {
                warnings.push(format!(
                    "targets are {} with integral values: read as class indices",
                    targets.dtype.name()
                ));
            }
            Targets::Indices(labels)
        } else {
            let class_last = targets.shape[..] == logits.shape[..logits.shape.len() - 1];
            let hint = if class_last && axis != logits.shape.len() - 1 {
                " (for class-last logits pass --class-axis -1)"
            } else {
                ""
            };
            return Err(Error::input(
                &targets.origin,
                format!(
                    "shape {} fits neither class indices {} nor probabilities {} for logits {} with class axis {axis}{hint}",
                    targets.shape_text(),
                    shape_text(&index_shape),
                    logits.shape_text(),
                    logits.shape_text()
                ),
            ));
        };
        if let Some((weight, origin)) = &params.weight {
            warnings.extend(check_class_weights(weight, layout.classes, origin)?);
        }
        Ok(CrossEntropy {
            example_shape: index_shape,
            logits: logits.values(),
            targets: targets_view,
            layout,
            weight: params.weight.as_ref().map(|(w, _)| w.clone()),
            smoothing: params.label_smoothing,
            reduction: params.reduction,
            divisor,
            warnings,
        })
    }

    pub fn layout(&self) -> ClassLayout {
        self.layout
    }

    pub fn target_mode(&self) -> &'static str {
        match self.targets {
            Targets::Indices(_) => "indices",
            Targets::Probabilities(_) => "probabilities",
        }
    }

    #[inline(always)]
    fn class_weight(&self, class: usize) -> f64 {
        self.weight.as_ref().map_or(1.0, |w| w[class])
    }
}

/// CE's pass over rows: the loss and what it works in, kept from row to row.
struct CeRows<'a> {
    loss: &'a CrossEntropy<'a>,
    /// A row of probability targets.
    targets: Vec<f64>,
}

impl RowPass for CeRows<'_> {
    #[inline(always)]
    fn add_row<R: Row>(&mut self, i: usize, row: R, softmax: &RowSoftmax, tally: &mut Tally) {
        let CeRows { loss: ce, targets: target_row } = self;
        let classes = ce.layout.classes;
        let eps = ce.smoothing;
        let y = match &ce.targets {
            Targets::Indices(labels) => {
                let Some(y) = labels.class(i) else {
                    tally.ignored += 1;
                    return;
                };
                y
            }
            Targets::Probabilities(targets) => {
                let (start, stride) = ce.layout.row(i);
                targets.copy_to_f64(start, stride, target_row);
                tally.record_nonfinite(Operand::Targets, target_row, start, stride);
                first_max(target_row)
            }
        };
        // log p_c = (x_c - max) - ln Σ exp(x - max), in PyTorch's order.
        let &RowSoftmax { max, exp_sum, ln_sum, .. } = softmax;
        let log_p = |c: usize| (row.at(c) - max) - ln_sum;
        let predicted = prediction(row, softmax, y);
        let log_p_y = log_p(y);
        // The loss, the plain CE beside it, and the example's share of the mean's divisor.
        let (loss, baseline, divisor) = match &ce.targets {
            Targets::Indices(_) => {
                let w_y = ce.class_weight(y);
                let mut loss = -log_p_y * w_y;
                if eps > 0.0 {
                    let smooth: f64 = -(0..classes).map(|c| log_p(c) * ce.class_weight(c)).sum::<f64>();
                    loss = (1.0 - eps) * loss + smooth * (eps / classes as f64);
                }
                (loss, -log_p_y, w_y)
            }
            Targets::Probabilities(_) => {
                let mut weighted = 0.0;
                let mut plain = 0.0;
                for (c, &t) in target_row.iter().enumerate() {
                    plain += log_p(c) * t;
                    let t = if eps > 0.0 { t * (1.0 - eps) + eps / classes as f64 } else { t };
                    weighted += log_p(c) * t * ce.class_weight(c);
                }
                (-weighted, -plain, 1.0)
            }
        };
        let p_t = log_p_y.exp();
        tally.normalizer.add(divisor);
        tally.add(Example {
            class: y,
            loss,
            p_t,
            correct: predicted == y,
            positive: false,
            baseline,
            grad_norm: 1.0 - p_t,
            index: i as u64,
            target: y as f64,
            predicted: predicted as u32,
            // The largest probability: exp(max - max) / Σ.
            confidence: exp_sum.recip(),
        });
    }
}

impl PerExample for CrossEntropy<'_> {
    fn units(&self) -> usize {
        self.layout.examples()
    }

    fn unit_cost(&self) -> usize {
        self.layout.classes
    }

    fn classes(&self) -> usize {
        self.layout.classes
    }

    fn grouping(&self) -> Grouping {
        Grouping::All
    }

    fn eval(&self, units: Range<usize>, tally: &mut Tally) {
        let classes = self.layout.classes;
        let mut pass = CeRows { loss: self, targets: vec![0.0; classes] };
        each_row(&self.logits, &self.layout, units, tally, &mut pass);
    }

    fn example_kind(&self) -> ExampleKind {
        ExampleKind::Row
    }

    fn example_shape(&self) -> Vec<usize> {
        self.example_shape.clone()
    }

    fn softmax_rows(&self) -> Option<&dyn SoftmaxRows> {
        matches!(self.targets, Targets::Indices(_)).then_some(self as &dyn SoftmaxRows)
    }

    fn reducer(&self) -> Reducer {
        Reducer::Ce(CeReducer {
            divisor: self.divisor,
            reduction: self.reduction,
            baseline: self.weight.is_some() || self.smoothing > 0.0,
        })
    }
}

/// How a CE tally becomes the loss: every figure it needs is in the tally.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CeReducer {
    divisor: CeDivisor,
    reduction: Reduction,
    /// Whether the loss differs from plain CE (weights or smoothing).
    baseline: bool,
}

impl CeReducer {
    pub fn totals(&self, tally: &Tally) -> Totals {
        let sum = tally.total();
        let counted: u64 = tally.classes.iter().map(|c| c.all.count).sum();
        let normalizer = match self.divisor {
            CeDivisor::Pytorch => tally.normalizer.value(),
            CeDivisor::AllTargets => (counted + tally.ignored) as f64,
            CeDivisor::NonIgnored => counted as f64 + FLOAT32_EPS,
            CeDivisor::AvgFactor(factor) => factor + FLOAT32_EPS,
        };
        // Weights and smoothing change the loss; the plain CE of the same
        // examples divides by their count.
        let baseline = (self.baseline).then(|| {
            let sum = tally.baseline_total();
            BaselineTotals { loss: "ce", value: self.reduction.apply(sum, counted as f64), sum }
        });
        Totals { value: self.reduction.apply(sum, normalizer), sum, normalizer, baseline }
    }
}

impl SoftmaxRows for CrossEntropy<'_> {
    fn rows(&self) -> usize {
        self.layout.examples()
    }

    fn label(&self, row: usize) -> Option<usize> {
        match &self.targets {
            Targets::Indices(labels) => labels.class(row),
            Targets::Probabilities(_) => None,
        }
    }

    fn exps(&self, row: usize, scratch: &mut [f64], out: &mut [f64]) -> f64 {
        exp_row(&self.logits, &self.layout, row, scratch, out)
    }
}
