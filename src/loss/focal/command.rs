//! `losscope focal`: the flags, the arrays they name, and the report parts
//! of a focal loss.

use std::path::Path;

use clap::Args;

use crate::error::{Origin, Result};
use crate::input::{self, Sources, Spec, Tensor};
use crate::report::Presentation;
use crate::settings::{self, ReportArgs};
use crate::tally::Grouping;

use super::super::{Loss, PerExample, Prepared, Reduction, describe};
use super::{Alpha, Focal, FocalKind, FocalParams, FocalPreset, Normalize};

/// Focal loss in a chosen framework's convention, beside the plain CE/BCE
#[derive(Debug, Args)]
pub struct FocalArgs {
    /// A bundle (.npz or JSON object) holding arrays named logits, targets and,
    /// optionally, weight; flags override its members
    #[arg(value_name = "BUNDLE")]
    pub bundle: Option<String>,
    /// Logits (FILE or FILE:KEY): [N, C] or [N, C, d1, …]; class-last with --class-axis -1
    #[arg(long, value_name = "SPEC")]
    pub logits: Vec<String>,
    /// Sigmoid: float targets shaped like the logits, or class indices per row
    /// (expanded to one-hot); softmax: class indices
    #[arg(long, value_name = "SPEC")]
    pub targets: Vec<String>,
    /// One sigmoid per element, or one softmax per row [default: the preset's kind if it has
    /// one, else sigmoid]
    #[arg(long, value_enum)]
    pub kind: Option<FocalKind>,
    /// Whose convention to reproduce [default: torchvision for sigmoid, kornia for softmax]
    #[arg(long, value_enum)]
    pub preset: Option<FocalPreset>,
    /// The focusing parameter γ ≥ 0 [default: 2]
    #[arg(long, allow_negative_numbers = true)]
    pub gamma: Option<f64>,
    /// α in [0, 1], `none` to switch it off, or (softmax) a per-class list or file [default: the preset's]
    #[arg(long, value_name = "ALPHA", allow_hyphen_values = true)]
    pub alpha: Option<String>,
    /// How the per-element losses are reduced [default: mean]
    #[arg(long, value_enum)]
    pub reduction: Option<Reduction>,
    /// The mean's divisor instead of the preset's: elements, rows, positives or a number
    #[arg(long, value_name = "DIVISOR", allow_negative_numbers = true)]
    pub normalize: Option<Normalize>,
    /// mmdet's avg_factor: the mean is sum / (F + 1.1920929e-07)
    #[arg(long, value_name = "F", allow_negative_numbers = true)]
    pub avg_factor: Option<f64>,
    /// Keras binary focal: apply α (Keras ignores it otherwise)
    #[arg(long)]
    pub class_balancing: bool,
    /// Keras label smoothing ε in [0, 1]
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub label_smoothing: f64,
    /// Sigmoid class-index targets: the label meaning "no class" [default: -1 and C]
    #[arg(long, allow_negative_numbers = true)]
    pub background: Option<i64>,
    /// Softmax: the background class; targets of other classes are positives
    #[arg(long, value_name = "K")]
    pub background_class: Option<usize>,
    /// The axis of the classes [default: the last for sigmoid, 1 for softmax]
    #[arg(long, allow_negative_numbers = true)]
    pub class_axis: Option<i64>,
    /// Per-class weights, a list or an array file: on the target class (softmax: kornia, mmcv, uniform), along the class axis (sigmoid kornia), on a row by its label (sigmoid mmcv)
    #[arg(long, value_name = "LIST|SPEC", allow_hyphen_values = true)]
    pub weight: Vec<String>,
    /// kornia sigmoid: per-class weights of the positive term, a list or an array file
    #[arg(long, value_name = "LIST|SPEC", allow_hyphen_values = true)]
    pub pos_weight: Vec<String>,
    // The text is `--help`'s, where shapes read as they are written.
    #[allow(rustdoc::broken_intra_doc_links)]
    /// mmdet sigmoid: weights multiplied in before the reduction, [N] or [N, 1] (per sample) or shaped like the logits
    #[arg(long, value_name = "SPEC")]
    pub sample_weight: Vec<String>,
    /// Targets equal to this are ignored, as the preset does it [default: -100 for kornia; mmcv softmax ignores every negative label]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub ignore_index: Option<i64>,
    #[command(flatten)]
    pub report: ReportArgs,
}

impl FocalArgs {
    /// The kind: `--kind`, else the one the preset implies, else sigmoid;
    /// and whether it was assumed (neither given nor implied).
    fn kind(&self) -> (FocalKind, bool) {
        match (self.kind, self.preset.and_then(FocalPreset::implied_kind)) {
            (Some(kind), _) | (None, Some(kind)) => (kind, false),
            (None, None) => (FocalKind::Sigmoid, true),
        }
    }
}

/// The arrays of a focal loss, and α when it is one per class.
pub struct FocalInputs {
    logits: Tensor,
    targets: Tensor,
    weight: Option<Tensor>,
    pos_weight: Option<Tensor>,
    sample_weight: Option<Tensor>,
    alpha: Option<Alpha>,
}

impl Loss for FocalArgs {
    const NAME: &'static str = "focal";
    const PRESENTATION: Presentation =
        Presentation { title: "focal loss", show_ignored: false, gradient_norm_table: true };
    type Inputs = FocalInputs;

    fn shared(&self) -> (&ReportArgs, Option<&str>) {
        (&self.report, self.bundle.as_deref())
    }

    fn check(&self) -> Result<()> {
        settings::label_smoothing(self.label_smoothing).map(drop)
    }

    fn read(&self, sources: &Sources) -> Result<FocalInputs> {
        let logits = sources.required(&self.logits, "logits")?;
        let targets = sources.required(&self.targets, "targets")?;
        let weight = sources.optional(&self.weight, "weight")?;
        let pos_weight = sources.optional(&self.pos_weight, "pos_weight")?;
        let sample_weight = sources.optional(&self.sample_weight, "sample_weight")?;
        let alpha = match self.alpha.as_deref() {
            // A per-class α may sit in an array file.
            Some(text) if Path::new(&Spec::parse(text).path).is_file() => {
                let tensor = input::load(&Spec::parse(text), "alpha")?;
                Some(Alpha::PerClass(tensor.to_f64_vec()))
            }
            Some(text) => Some(text.parse::<Alpha>()?),
            None => None,
        };
        Ok(FocalInputs { logits, targets, weight, pos_weight, sample_weight, alpha })
    }

    fn prepare<'a>(&'a self, inputs: &'a FocalInputs) -> Result<Prepared<'a>> {
        let FocalInputs { logits, targets, weight, pos_weight, sample_weight, alpha } = inputs;
        let (kind, assumed) = self.kind();
        let vector = |tensor: &Option<Tensor>| -> Option<(Vec<f64>, Origin)> {
            tensor.as_ref().map(|w| (w.to_f64_vec(), w.origin.clone()))
        };
        let params = FocalParams {
            preset: self.preset,
            gamma: self.gamma,
            alpha: alpha.clone(),
            reduction: self.reduction,
            normalize: self.normalize,
            avg_factor: self.avg_factor,
            class_balancing: self.class_balancing,
            label_smoothing: self.label_smoothing,
            background: self.background,
            background_class: self.background_class,
            class_axis: self.class_axis,
            weight: vector(weight),
            pos_weight: vector(pos_weight),
            ignore_index: self.ignore_index,
            ..FocalParams::new(kind)
        };
        let loss = Focal::with_sample_weight(logits, targets, sample_weight.as_ref(), &params)?;
        let mut warnings = loss.warnings.clone();
        if assumed && loss.target_mode() == "indices" {
            // Class indices fit both kinds: a softmax model's dump reads as a
            // valid one-vs-all sigmoid input.
            warnings.insert(
                0,
                format!(
                    "class-index targets of shape {} with no --kind: computing sigmoid focal one-vs-all as \
                     {} does; pass --kind softmax for a softmax model",
                    targets.shape_text(),
                    loss.reference()
                ),
            );
        }
        let mut parameters = loss.parameters();
        if let Some(sample_weight) = sample_weight {
            parameters.insert("sample_weight".into(), crate::loss::recorded(Some(sample_weight)));
        }
        Ok(Prepared {
            parameters,
            inputs: describe(
                [logits, targets].into_iter().chain(weight).chain(pos_weight).chain(sample_weight),
            ),
            operands: [logits, targets],
            warnings,
            positives_per_class: loss.grouping() == Grouping::PositivesNegatives
                && kind == FocalKind::Sigmoid,
            pass: Box::new(loss),
        })
    }
}
