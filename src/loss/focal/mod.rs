//! Focal losses (Lin et al. 2017, `FL = -α_t (1 - p_t)^γ log p_t`) with the
//! exact semantics of each reference implementation, chosen by a preset.
//!
//! Sigmoid (one binary task per element): torchvision, fvcore, mmdet,
//! kornia's binary_focal_loss_with_logits, mmcv's sigmoid_focal_loss, Keras's
//! BinaryFocalCrossentropy and the common BCE snippet (`seed`). Softmax (one
//! distribution per row): kornia ≥ 0.7, mmcv, Keras's
//! CategoricalFocalCrossentropy and the common log-softmax snippet
//! (`uniform`). The presets differ in α's default and meaning, in the mean's
//! divisor, in what an ignored example does, in their weights and in their
//! clamps; parameters given explicitly override the preset's. What differs
//! is data, one row per preset in `presets.rs`.

mod command;
mod presets;
mod sigmoid;
mod softmax;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, Origin, Result};
use crate::input::Tensor;
use crate::report::{BaselineTotals, Totals};
use crate::tally::{Grouping, Tally};

use super::{PerExample, Reducer, Reduction, SoftmaxRows, check_float_predictions};
use crate::tally::findings::ExampleKind;
pub use command::FocalArgs;
use presets::{ClassWeight, IgnoreRule, MeanOver, Precision, PresetInfo};
use sigmoid::{SigmoidFocal, SigmoidInputs};
use softmax::SoftmaxFocal;

/// Whether classes are independent binary tasks or one distribution per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum FocalKind {
    /// One sigmoid per element (multi-label, RetinaNet)
    Sigmoid,
    /// One softmax over the classes of each row
    Softmax,
}

impl FocalKind {
    pub fn name(self) -> &'static str {
        match self {
            FocalKind::Sigmoid => "sigmoid",
            FocalKind::Softmax => "softmax",
        }
    }
}

/// Whose focal loss is reproduced. `Kornia`, `Mmcv` and `Keras` fit both
/// kinds; every other preset fits one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FocalPreset {
    /// torchvision.ops.sigmoid_focal_loss: α 0.25 as α·t + (1-α)(1-t), mean over elements [sigmoid default]
    Torchvision,
    /// fvcore.nn.sigmoid_focal_loss: torchvision's formula with α off
    Fvcore,
    /// mmdet FocalLoss (CPU path): α 0.25 always on; sample weights; an avg factor F divides the sum by F + 1.1920929e-7
    Mmdet,
    /// Keras 3 Binary/CategoricalFocalCrossentropy: probabilities clipped to [1e-7, 1-1e-7]
    Keras,
    /// The common BCE snippet: α·(1-p_t)^γ·BCE with p_t = exp(-BCE), α 0.25 on every element
    Seed,
    /// kornia: softmax focal_loss (≥ 0.7), α 0.25 as 1-α for class 0 and α for the others, mean over N·C [softmax default]; sigmoid binary_focal_loss_with_logits, pos_weight and weight along dim 1; ignore index -100
    Kornia,
    /// mmcv: softmax_focal_loss (α 0.25 on every class, log clamped at log(FLT_MIN), negative labels 0) or sigmoid_focal_loss (class indices, any other label background); mean over N
    Mmcv,
    /// The common log-softmax snippet: -α(1-p_y)^γ log p_y, α off unless given, mean over N
    Uniform,
}

/// The balancing factor α.
#[derive(Debug, Clone, PartialEq)]
pub enum Alpha {
    /// No balancing (torchvision's and fvcore's α = -1).
    None,
    /// One α in [0, 1], used as the preset defines.
    Scalar(f64),
    /// One α in [0, 1] per class (softmax only).
    PerClass(Vec<f64>),
}

impl FromStr for Alpha {
    type Err = Error;

    /// `none` or -1 (off, as torchvision's -1), a number, or a
    /// comma-separated list (per class).
    fn from_str(text: &str) -> Result<Alpha> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("none") || text.parse::<f64>() == Ok(-1.0) {
            return Ok(Alpha::None);
        }
        let parse = |part: &str| {
            part.trim().parse::<f64>().map_err(|_| {
                Error::usage(format!("alpha '{text}' is not 'none', a number or a comma-separated list"))
            })
        };
        if text.contains(',') {
            return text.split(',').map(parse).collect::<Result<Vec<f64>>>().map(Alpha::PerClass);
        }
        parse(text).map(Alpha::Scalar)
    }
}

impl Alpha {
    fn to_json(&self) -> Value {
        match self {
            Alpha::None => Value::Null,
            Alpha::Scalar(a) => json!(a),
            Alpha::PerClass(a) => json!(a),
        }
    }
}

/// What the mean divides by, when not the preset's own divisor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Normalize {
    /// Every element of the logits.
    Elements,
    /// Every example along the class axis (N, or N × spatial).
    Rows,
    /// The positive targets, at least 1 (RetinaNet: the foreground anchors).
    Positives,
    /// A given divisor.
    Number(f64),
}

impl FromStr for Normalize {
    type Err = Error;

    /// `elements`, `rows`, `positives` or a number.
    fn from_str(text: &str) -> Result<Normalize> {
        match text.trim().to_ascii_lowercase().as_str() {
            "elements" => Ok(Normalize::Elements),
            "rows" => Ok(Normalize::Rows),
            "positives" => Ok(Normalize::Positives),
            other => other.parse::<f64>().map(Normalize::Number).map_err(|_| {
                Error::usage(format!("normalize '{text}' is not elements, rows, positives or a number"))
            }),
        }
    }
}

/// The parameters of a focal loss. `None` takes the preset's value.
#[derive(Debug, Clone)]
pub struct FocalParams {
    pub kind: FocalKind,
    /// `None` takes the kind's default: torchvision (sigmoid), kornia (softmax).
    pub preset: Option<FocalPreset>,
    /// γ ≥ 0; every preset defaults to 2.
    pub gamma: Option<f64>,
    pub alpha: Option<Alpha>,
    /// Every preset defaults to mean.
    pub reduction: Option<Reduction>,
    /// Overrides the preset's mean divisor.
    pub normalize: Option<Normalize>,
    /// mmdet's avg_factor F: the mean is sum / (F + float32 eps).
    pub avg_factor: Option<f64>,
    /// Keras's apply_class_balancing: without it Keras ignores α (sigmoid).
    pub class_balancing: bool,
    /// Keras's label smoothing ε in [0, 1]: toward 0.5 (sigmoid) or 1/C (softmax).
    pub label_smoothing: f64,
    /// The label that means "no class" for sigmoid class-index targets;
    /// `None` takes both -1 and C.
    pub background: Option<i64>,
    /// The softmax class that is background: the others are positives.
    pub background_class: Option<usize>,
    /// The class axis; `None` takes the last (sigmoid) or 1 (softmax, as CE).
    pub class_axis: Option<i64>,
    /// Per-class weights: on the target class's loss (softmax), along the
    /// class axis (kornia sigmoid), or on a row by its label (mmcv sigmoid).
    pub weight: Option<(Vec<f64>, Origin)>,
    /// kornia's binary pos_weight: one per class, on the positive term.
    pub pos_weight: Option<(Vec<f64>, Origin)>,
    /// The ignore index; `None` takes the preset's (kornia: -100).
    pub ignore_index: Option<i64>,
}

impl FocalParams {
    /// Everything from the kind's default preset.
    pub fn new(kind: FocalKind) -> FocalParams {
        FocalParams {
            kind,
            preset: None,
            gamma: None,
            alpha: None,
            reduction: None,
            normalize: None,
            avg_factor: None,
            class_balancing: false,
            label_smoothing: 0.0,
            background: None,
            background_class: None,
            class_axis: None,
            weight: None,
            pos_weight: None,
            ignore_index: None,
        }
    }
}

/// Which labels (or targets) are ignored, and whether they leave the
/// divisor, as the preset's [`IgnoreRule`] says.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Ignore {
    /// The ignore index.
    label: Option<i64>,
    /// Every negative label (mmcv softmax).
    negative: bool,
    /// Ignored examples leave the sum and the divisor; otherwise they are
    /// counted in the divisor with loss 0.
    dropped: bool,
}

/// The mean's divisor, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
enum Divisor {
    Elements,
    Rows,
    Positives,
    Number(f64),
    /// mmdet: avg_factor + torch.finfo(torch.float32).eps.
    AvgFactor(f64),
}

enum Pass<'a> {
    Sigmoid(SigmoidFocal<'a>),
    Softmax(SoftmaxFocal<'a>),
}

pub struct Focal<'a> {
    kind: FocalKind,
    preset: FocalPreset,
    /// The preset's row of the table.
    info: &'static PresetInfo,
    gamma: f64,
    /// α as it is applied (Keras's binary α is dropped without class balancing).
    alpha: Alpha,
    reduction: Reduction,
    divisor: Divisor,
    params: FocalParams,
    ignore: Ignore,
    pass: Pass<'a>,
    elements: usize,
    /// The logits' shape.
    shape: Vec<usize>,
    /// The length of the last axis, which Keras's binary loss averages over.
    last_axis_len: usize,
    /// Facts about the inputs and the reference the user should hear of.
    pub warnings: Vec<String>,
}

/// Keras's backend epsilon, the clip of its probabilities.
const KERAS_EPSILON: f64 = 1e-7;

/// The modulating factor's `base^γ`. torch multiplies out the exponents 2
/// and 3 and takes the square root for 0.5; the same here, which is also
/// faster than `powf`.
#[inline(always)]
fn power(base: f64, gamma: f64) -> f64 {
    if gamma == 2.0 {
        base * base
    } else if gamma == 3.0 {
        base * base * base
    } else if gamma == 0.5 {
        base.sqrt()
    } else {
        base.powf(gamma)
    }
}

impl<'a> Focal<'a> {
    pub fn new(logits: &'a Tensor, targets: &'a Tensor, params: &FocalParams) -> Result<Self> {
        Focal::with_sample_weight(logits, targets, None, params)
    }

    /// The loss with mmdet's sample weight: `[N]` or `[N, 1]` (per row of
    /// axis 0) or one per element.
    pub fn with_sample_weight(
        logits: &'a Tensor,
        targets: &'a Tensor,
        sample_weight: Option<&'a Tensor>,
        params: &FocalParams,
    ) -> Result<Self> {
        let kind = params.kind;
        let preset = params.preset.unwrap_or(FocalPreset::default_for(kind));
        let Some(info) = preset.info(kind) else {
            return Err(Error::usage(format!(
                "preset {} is a {} focal loss, not a {} one",
                preset.name(),
                if kind == FocalKind::Sigmoid { "softmax" } else { "sigmoid" },
                kind.name()
            )));
        };
        let mut gamma = params.gamma.unwrap_or(2.0);
        if !(gamma.is_finite() && gamma >= 0.0) {
            return Err(Error::usage(format!("gamma {gamma} is not a finite number ≥ 0")));
        }
        let mut warnings = Vec::new();
        let mut alpha = resolve_alpha(params, info, &mut warnings)?;
        if info.float32_parameters {
            // The kernel's `float gamma, float alpha`.
            gamma = gamma as f32 as f64;
            if let Alpha::Scalar(a) = alpha {
                alpha = Alpha::Scalar(a as f32 as f64);
            }
        }
        let reduction = resolve_reduction(params, info)?;
        check_options(params, info, sample_weight.is_some())?;
        let ignore = resolve_ignore(params, info)?;
        check_float_predictions(logits)?;
        if logits.shape.is_empty() {
            return Err(Error::input(&logits.origin, "is a scalar: a focal loss needs at least one axis"));
        }
        let pass = match kind {
            FocalKind::Sigmoid => {
                // resolve_alpha refused a per-class α for sigmoid losses.
                let alpha = match alpha {
                    Alpha::Scalar(a) => Some(a),
                    Alpha::None | Alpha::PerClass(_) => None,
                };
                let formula = sigmoid::Formula::new(preset, alpha, params.label_smoothing);
                let inputs = SigmoidInputs { logits, targets, sample_weight, info, ignore };
                Pass::Sigmoid(SigmoidFocal::new(inputs, params, formula, gamma, &mut warnings)?)
            }
            FocalKind::Softmax => {
                let pass =
                    SoftmaxFocal::new(logits, targets, params, preset, &alpha, gamma, ignore, &mut warnings)?;
                if let Some(class) = params.background_class
                    && class >= pass.classes()
                {
                    return Err(Error::usage(format!(
                        "background class {class} is out of range for {} classes",
                        pass.classes()
                    )));
                }
                Pass::Softmax(pass)
            }
        };
        note_reference_precision(info, reduction, &mut warnings);
        if preset == FocalPreset::Keras && kind == FocalKind::Sigmoid && reduction == Reduction::Sum {
            warnings.push(
                "Keras's reduction sum adds the per-sample means over the last axis: value = sum / (length of the last axis)".into(),
            );
        }
        Ok(Focal {
            kind,
            preset,
            info,
            gamma,
            alpha,
            reduction,
            divisor: resolve_divisor(params, info),
            params: params.clone(),
            ignore,
            pass,
            elements: logits.numel(),
            shape: logits.shape.clone(),
            last_axis_len: logits.shape[logits.shape.len() - 1],
            warnings,
        })
    }

    pub fn kind(&self) -> FocalKind {
        self.kind
    }

    pub fn preset(&self) -> FocalPreset {
        self.preset
    }

    /// The resolved class axis, or `None` for one-dimensional sigmoid input.
    pub fn class_axis(&self) -> Option<usize> {
        match &self.pass {
            Pass::Sigmoid(pass) => pass.class_axis(),
            Pass::Softmax(pass) => Some(pass.class_axis()),
        }
    }

    /// `probabilities` (targets shaped like the logits) or `indices`.
    /// The function whose semantics the preset reproduces.
    pub fn reference(&self) -> &'static str {
        self.info.reference
    }

    pub fn target_mode(&self) -> &'static str {
        match &self.pass {
            Pass::Sigmoid(pass) => pass.target_mode(),
            Pass::Softmax(_) => "indices",
        }
    }

    /// Every parameter as resolved, defaults included, for the report.
    pub fn parameters(&self) -> BTreeMap<String, Value> {
        let mut map = BTreeMap::new();
        let mut put = |key: &str, value: Value| {
            map.insert(key.to_string(), value);
        };
        put("kind", json!(self.kind.name()));
        put("preset", json!(self.preset.name()));
        put("reference", json!(self.info.reference));
        put("gamma", json!(self.gamma));
        put("alpha", self.alpha.to_json());
        put("alpha_rule", json!(self.alpha_rule()));
        put("reduction", json!(self.reduction.name()));
        put("normalize", self.divisor_json());
        put("class_axis", json!(self.class_axis()));
        put("target_mode", json!(self.target_mode()));
        if let Some(factor) = self.params.avg_factor {
            put("avg_factor", json!(factor));
        }
        put("ignore_index", json!(self.ignore.label));
        if self.ignore.label.is_some() || self.ignore.negative {
            // What an ignored example does: left out of the sum and the
            // divisor, or loss 0 and kept in the divisor.
            let rule = match self.info.ignore {
                IgnoreRule::Dropped => "dropped",
                IgnoreRule::ZeroCounted => "zero",
                IgnoreRule::NegativeZeroCounted => "negative",
            };
            put("ignore_rule", json!(rule));
        }
        if self.preset == FocalPreset::Keras {
            put("label_smoothing", json!(self.params.label_smoothing));
            put("probability_clip", json!([KERAS_EPSILON, 1.0 - KERAS_EPSILON]));
            if self.kind == FocalKind::Sigmoid {
                put("class_balancing", json!(self.params.class_balancing));
            }
        }
        if self.preset == FocalPreset::Mmcv {
            put("log_floor", json!(softmax::FLT_MIN));
        }
        let vector = |v: &Option<(Vec<f64>, Origin)>| v.as_ref().map_or(Value::Null, |(w, _)| json!(w));
        match &self.pass {
            Pass::Sigmoid(pass) => {
                if let Some(background) = pass.background_labels() {
                    put("background", background);
                }
                if self.info.class_weight != ClassWeight::Refused {
                    put("weight", vector(&self.params.weight));
                }
                if self.info.pos_weight {
                    put("pos_weight", vector(&self.params.pos_weight));
                }
            }
            Pass::Softmax(_) => {
                put("background_class", json!(self.params.background_class));
                put("weight", vector(&self.params.weight));
            }
        }
        map
    }

    /// How α enters the loss, in words.
    fn alpha_rule(&self) -> Option<&'static str> {
        match &self.alpha {
            Alpha::None => None,
            Alpha::PerClass(_) => Some("alpha[y] on the target class (Keras: alpha[c] on every class term)"),
            Alpha::Scalar(_) => Some(self.info.alpha_rule),
        }
    }

    fn divisor_json(&self) -> Value {
        match self.divisor {
            Divisor::Elements => json!("elements"),
            Divisor::Rows => json!("rows"),
            Divisor::Positives => json!("positives"),
            Divisor::Number(n) => json!(n),
            Divisor::AvgFactor(_) => json!("avg_factor + float32 eps"),
        }
    }

    fn rows(&self) -> usize {
        match &self.pass {
            Pass::Sigmoid(pass) => pass.rows(),
            Pass::Softmax(pass) => pass.units(),
        }
    }
}

/// α from the preset and the parameters, checked; `None` where the
/// reference ignores it.
fn resolve_alpha(params: &FocalParams, info: &PresetInfo, warnings: &mut Vec<String>) -> Result<Alpha> {
    let preset = info.preset;
    let alpha = params.alpha.clone().unwrap_or(match info.default_alpha {
        Some(a) => Alpha::Scalar(a),
        None => Alpha::None,
    });
    let in_range = |a: f64| (0.0..=1.0).contains(&a);
    match &alpha {
        Alpha::Scalar(a) if !in_range(*a) => {
            return Err(Error::usage(format!("alpha {a} is outside [0, 1] (use none to turn it off)")));
        }
        Alpha::PerClass(_) if params.kind == FocalKind::Sigmoid => {
            return Err(Error::usage("a per-class alpha is for softmax focal losses"));
        }
        Alpha::PerClass(list) => {
            if let Some(a) = list.iter().find(|a| !in_range(**a)) {
                return Err(Error::usage(format!("per-class alpha {a} is outside [0, 1]")));
            }
        }
        _ => {}
    }
    // Keras's binary loss ignores α unless class balancing is on
    // (tensorflow/tensorflow#61519).
    if preset == FocalPreset::Keras && params.kind == FocalKind::Sigmoid && !params.class_balancing {
        if let Some(Alpha::Scalar(a)) = params.alpha {
            warnings.push(format!(
                "Keras's BinaryFocalCrossentropy ignores alpha {a} without apply_class_balancing: turn class balancing on to use it"
            ));
        }
        return Ok(Alpha::None);
    }
    Ok(alpha)
}

/// The reduction, checked against the options that set the mean's divisor.
fn resolve_reduction(params: &FocalParams, info: &PresetInfo) -> Result<Reduction> {
    let reduction = params.reduction.unwrap_or(Reduction::Mean);
    if reduction == Reduction::Sum && (params.normalize.is_some() || params.avg_factor.is_some()) {
        return Err(Error::usage(
            "normalize and avg_factor set the mean's divisor: they do not apply with reduction sum",
        ));
    }
    if let Some(factor) = params.avg_factor {
        if !info.mmdet_reduction {
            return Err(Error::usage(format!(
                "avg_factor is mmdet's (sum / (F + float32 eps)); with preset {} use normalize with a number",
                info.name
            )));
        }
        if params.normalize.is_some() {
            return Err(Error::usage("give either avg_factor or normalize, not both"));
        }
        if !(factor.is_finite() && factor >= 0.0) {
            return Err(Error::usage(format!("avg_factor {factor} is not a finite number ≥ 0")));
        }
    }
    match params.normalize {
        Some(Normalize::Number(n)) if !(n.is_finite() && n > 0.0) => {
            Err(Error::usage(format!("normalize {n} is not a finite number > 0")))
        }
        Some(Normalize::Positives)
            if params.kind == FocalKind::Softmax && params.background_class.is_none() =>
        {
            Err(Error::usage("normalizing by positives needs a background class for softmax losses"))
        }
        _ => Ok(reduction),
    }
}

/// The ignore index the preset reads, and what it does.
fn resolve_ignore(params: &FocalParams, info: &PresetInfo) -> Result<Ignore> {
    match (info.ignore, params.ignore_index) {
        (IgnoreRule::NegativeZeroCounted, Some(label)) if label >= 0 => Err(Error::usage(format!(
            "{} gives every negative label loss 0 and has no ignore index: ignore-index {label} is not negative",
            info.reference
        ))),
        (IgnoreRule::NegativeZeroCounted, given) => {
            Ok(Ignore { label: given, negative: true, dropped: false })
        }
        (rule, given) => Ok(Ignore {
            label: given.or(info.default_ignore_index),
            negative: false,
            dropped: rule == IgnoreRule::Dropped,
        }),
    }
}

/// The options that only some presets or kinds have.
fn check_options(params: &FocalParams, info: &PresetInfo, sample_weight: bool) -> Result<()> {
    let preset = info.preset;
    // ε's range is a rule of the flag (settings::label_smoothing).
    if params.label_smoothing > 0.0 && preset != FocalPreset::Keras {
        return Err(Error::usage(format!("label smoothing is Keras's; preset {} has none", preset.name())));
    }
    if params.class_balancing && !(preset == FocalPreset::Keras && params.kind == FocalKind::Sigmoid) {
        return Err(Error::usage(
            "class balancing is a switch of Keras's binary focal loss (preset keras, sigmoid)",
        ));
    }
    let sigmoid = params.kind == FocalKind::Sigmoid;
    if sigmoid && params.background_class.is_some() {
        return Err(Error::usage(
            "a background class is for softmax focal losses; sigmoid class-index targets take a background label",
        ));
    }
    if !sigmoid && params.background.is_some() {
        return Err(Error::usage(
            "a background label is for sigmoid class-index targets; softmax losses take a background class",
        ));
    }
    if params.weight.is_some() && info.class_weight == ClassWeight::Refused {
        return Err(Error::usage(format!(
            "preset {} ({}) has no class weights: weight is for kornia and mmcv (both kinds) and uniform{}",
            info.name,
            info.kind.name(),
            if preset == FocalPreset::Keras { "; Keras: give a per-class alpha" } else { "" }
        )));
    }
    if params.pos_weight.is_some() && !info.pos_weight {
        return Err(Error::usage(format!(
            "pos_weight is kornia's binary focal loss (--kind sigmoid --preset kornia); preset {} ({}) has none",
            info.name,
            info.kind.name()
        )));
    }
    if sample_weight && !info.mmdet_reduction {
        return Err(Error::usage(format!(
            "sample weights are mmdet's FocalLoss weight (--kind sigmoid --preset mmdet); preset {} ({}) has none",
            info.name,
            info.kind.name()
        )));
    }
    Ok(())
}

fn resolve_divisor(params: &FocalParams, info: &PresetInfo) -> Divisor {
    if let Some(factor) = params.avg_factor {
        return Divisor::AvgFactor(factor);
    }
    match params.normalize {
        Some(Normalize::Elements) => Divisor::Elements,
        Some(Normalize::Rows) => Divisor::Rows,
        Some(Normalize::Positives) => Divisor::Positives,
        Some(Normalize::Number(n)) => Divisor::Number(n),
        None => match info.mean_over {
            MeanOver::Elements => Divisor::Elements,
            MeanOver::Rows => Divisor::Rows,
        },
    }
}

/// fvcore and Keras do not compute in float64 even when given it: a
/// comparison with their own output stops at float32's precision.
fn note_reference_precision(info: &PresetInfo, reduction: Reduction, warnings: &mut Vec<String>) {
    match info.precision {
        Precision::Float32(note) => warnings.push(note.into()),
        Precision::Float32Mean(note) if reduction == Reduction::Mean => warnings.push(note.into()),
        _ => {}
    }
}

impl PerExample for Focal<'_> {
    fn example_kind(&self) -> ExampleKind {
        match self.pass {
            Pass::Sigmoid(_) => ExampleKind::Element,
            Pass::Softmax(_) => ExampleKind::Row,
        }
    }

    fn example_shape(&self) -> Vec<usize> {
        match &self.pass {
            Pass::Sigmoid(_) => self.shape.clone(),
            Pass::Softmax(pass) => {
                let mut shape = self.shape.clone();
                shape.remove(pass.class_axis());
                shape
            }
        }
    }

    fn softmax_rows(&self) -> Option<&dyn SoftmaxRows> {
        match &self.pass {
            Pass::Sigmoid(_) => None,
            Pass::Softmax(pass) => Some(pass),
        }
    }

    fn units(&self) -> usize {
        match &self.pass {
            Pass::Sigmoid(pass) => pass.units(),
            Pass::Softmax(pass) => pass.units(),
        }
    }

    fn unit_cost(&self) -> usize {
        match &self.pass {
            Pass::Sigmoid(_) => 1,
            Pass::Softmax(pass) => pass.classes(),
        }
    }

    fn classes(&self) -> usize {
        match &self.pass {
            Pass::Sigmoid(pass) => pass.classes(),
            Pass::Softmax(pass) => pass.classes(),
        }
    }

    fn grouping(&self) -> Grouping {
        match (&self.pass, self.params.background_class) {
            (Pass::Softmax(_), None) => Grouping::All,
            _ => Grouping::PositivesNegatives,
        }
    }

    fn eval(&self, units: Range<usize>, tally: &mut Tally) {
        match &self.pass {
            Pass::Sigmoid(pass) => pass.eval(units, tally),
            Pass::Softmax(pass) => pass.eval(units, tally),
        }
    }

    fn reducer(&self) -> Reducer {
        let (classes, drops_ignored) = match &self.pass {
            Pass::Sigmoid(pass) => (pass.classes(), pass.drops_ignored()),
            Pass::Softmax(pass) => (pass.classes(), pass.drops_ignored()),
        };
        Reducer::Focal(FocalReducer {
            kind: self.kind,
            drops_ignored,
            classes: classes as u64,
            rows: self.rows() as u64,
            elements: self.elements as u64,
            last_axis_len: self.last_axis_len as u64,
            divisor: self.divisor,
            reduction: self.reduction,
            keras_sum: self.preset == FocalPreset::Keras && self.kind == FocalKind::Sigmoid,
        })
    }
}

/// How a focal tally becomes the loss: the divisor's rule and the sizes it
/// counts (rows and elements of the logits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FocalReducer {
    kind: FocalKind,
    /// Whether ignored examples leave the divisor.
    drops_ignored: bool,
    classes: u64,
    rows: u64,
    elements: u64,
    /// Keras's binary sum divides by it.
    last_axis_len: u64,
    divisor: Divisor,
    reduction: Reduction,
    /// Keras's binary loss, whose sum adds per-sample means.
    keras_sum: bool,
}

impl FocalReducer {
    pub fn totals(&self, tally: &Tally) -> Totals {
        let sum = tally.total();
        // Examples (softmax) or elements (sigmoid) counted, and whether
        // ignored ones leave the divisor.
        let counted: u64 = tally.classes.iter().map(|c| c.all.count).sum();
        let (elements, rows) = match (self.kind, self.drops_ignored) {
            (FocalKind::Sigmoid, true) => (counted as f64, (self.rows - tally.ignored / self.classes) as f64),
            (FocalKind::Softmax, true) => ((counted * self.classes) as f64, counted as f64),
            _ => (self.elements as f64, self.rows as f64),
        };
        let normalizer = match self.divisor {
            Divisor::Elements => elements,
            Divisor::Rows => rows,
            Divisor::Positives => {
                let positives: u64 = tally.classes.iter().map(|c| c.positives.count).sum();
                positives.max(1) as f64
            }
            Divisor::Number(n) => n,
            Divisor::AvgFactor(factor) => factor + f32::EPSILON as f64,
        };
        let value = match self.reduction {
            // Keras's sum adds its per-sample values, which for the binary
            // loss are means over the last axis.
            Reduction::Sum if self.keras_sum => sum / self.last_axis_len as f64,
            reduction => reduction.apply(sum, normalizer),
        };
        // The plain loss of the same (counted) examples, reduced as PyTorch
        // reduces it: BCE over elements, CE over rows, ignored ones left out.
        let loss = match self.kind {
            FocalKind::Sigmoid => "bce",
            FocalKind::Softmax => "ce",
        };
        let baseline_sum = tally.baseline_total();
        let baseline = BaselineTotals {
            loss,
            value: self.reduction.apply(baseline_sum, counted as f64),
            sum: baseline_sum,
        };
        Totals { value, sum, normalizer, baseline: Some(baseline) }
    }

    pub fn merge(&mut self, other: &FocalReducer) -> Result<(), String> {
        let sizes = |r: &FocalReducer| FocalReducer { rows: 0, elements: 0, ..r.clone() };
        if sizes(self) != sizes(other) {
            return Err(format!("their reductions differ ({self:?} and {other:?})"));
        }
        self.rows += other.rows;
        self.elements += other.elements;
        Ok(())
    }
}
