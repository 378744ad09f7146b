//! Every focal preset as one row of data: whose function it reproduces, its
//! defaults, and what a comparison with the reference's own output should
//! expect. The formulas themselves live in `sigmoid.rs` and `softmax.rs`.

use super::{FocalKind, FocalPreset};

/// What the mean divides by when no divisor is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeanOver {
    /// Every element of the logits.
    Elements,
    /// Every example along the class axis.
    Rows,
}

/// How close the reference's own float64 output comes to its formula.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// It computes in float64 as given.
    Float64,
    /// It rounds to float32 whatever the reduction; the note says how.
    Float32(&'static str),
    /// It rounds to float32 under the mean only.
    Float32Mean(&'static str),
}

/// What the ignore index does, as the reference (or the code around it)
/// treats an ignored example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreRule {
    /// Ignored examples leave the sum and every count of the divisor, as if
    /// dropped before the call: torchvision's RetinaNet head drops the
    /// anchors between thresholds (-2) and divides by the foreground count.
    Dropped,
    /// Ignored examples add 0 but stay in the divisor: kornia zeroes them in
    /// its output and its mean runs over the whole output.
    ZeroCounted,
    /// Every negative label adds 0 and stays in the divisor (mmcv's softmax
    /// kernel writes 0 for a label below 0, and the mean divides by N).
    NegativeZeroCounted,
}

/// What `--weight` (one value per class) multiplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassWeight {
    /// The preset has no class weights.
    Refused,
    /// Softmax: the example's loss by `w[y]`, its target class's weight.
    TargetClass,
    /// Sigmoid: every element by its class's weight, along the class axis
    /// (kornia's `weight`, broadcast along dim 1).
    ClassAxis,
    /// Sigmoid class indices: every element of a row by `w[label]` (mmcv's
    /// kernel, `output *= weight[t]`).
    RowLabel,
}

/// Which labels of sigmoid class-index targets are background by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackgroundLabels {
    /// -1 and C (detection code and mmdet); `--background L` replaces them.
    MinusOneAndClasses,
    /// Every label outside [0, C) (mmcv's kernel compares the label with
    /// each class and finds none).
    OutsideClasses,
}

/// One preset for one kind of focal loss.
#[derive(Debug, Clone, Copy)]
pub struct PresetInfo {
    pub preset: FocalPreset,
    pub kind: FocalKind,
    /// Its name in the report and on the command line.
    pub name: &'static str,
    /// The function whose semantics it reproduces.
    pub reference: &'static str,
    /// α when none is given; `None` is off.
    pub default_alpha: Option<f64>,
    /// How a scalar α enters the loss, in words.
    pub alpha_rule: &'static str,
    pub mean_over: MeanOver,
    pub precision: Precision,
    /// The preset the kind takes when none is named.
    pub default_for_kind: bool,
    /// The class axis when none is given (negative: from the end); 1-D
    /// logits are one class (sigmoid) or one example (softmax) whatever it is.
    pub class_axis: i64,
    /// How ignored examples enter the loss.
    pub ignore: IgnoreRule,
    /// The ignore index when none is given.
    pub default_ignore_index: Option<i64>,
    /// What `--weight` multiplies.
    pub class_weight: ClassWeight,
    /// Whether `--pos-weight` (a weight per class on the positive term) applies.
    pub pos_weight: bool,
    /// Whether `--sample-weight` and `--avg-factor` (mmdet's `weight` and
    /// `avg_factor` of `weight_reduce_loss`) apply.
    pub mmdet_reduction: bool,
    /// Sigmoid: targets must be class indices (the reference takes no other).
    pub index_targets_only: bool,
    /// Sigmoid class indices: the background labels.
    pub background: BackgroundLabels,
    /// γ and α reach the reference as C++ `float` parameters: they are
    /// rounded to float32 first (α = 0.4 is used as 0.4000000059604645).
    pub float32_parameters: bool,
}

/// The fields most presets share; each row names what differs.
const COMMON: PresetInfo = PresetInfo {
    preset: FocalPreset::Torchvision,
    kind: FocalKind::Sigmoid,
    name: "",
    reference: "",
    default_alpha: Some(0.25),
    alpha_rule: ALPHA_T,
    mean_over: MeanOver::Elements,
    precision: Precision::Float64,
    default_for_kind: false,
    class_axis: -1,
    ignore: IgnoreRule::Dropped,
    default_ignore_index: None,
    class_weight: ClassWeight::Refused,
    pos_weight: false,
    mmdet_reduction: false,
    index_targets_only: false,
    background: BackgroundLabels::MinusOneAndClasses,
    float32_parameters: false,
};

const FVCORE_NOTE: &str = "fvcore casts its inputs to float32; this is its formula in float64, so fvcore's own value differs by about 1e-7";
const KERAS_NOTE: &str = "Keras 3 promotes float64 with float32 to float32, so its own float64 result is rounded to float32 (its mean); this is its formula in float64";
const MMCV_SIGMOID_NOTE: &str = "mmcv's sigmoid kernel takes the exponential in float32 (expf) even for float64 input; this is its formula with the exponential in float64, which moves the value by about 1e-9 (relative)";
const ALPHA_T: &str = "alpha_t = alpha·t + (1 - alpha)·(1 - t)";

/// Every preset, sigmoid first.
pub const PRESETS: [PresetInfo; 11] = [
    PresetInfo {
        preset: FocalPreset::Torchvision,
        name: "torchvision",
        reference: "torchvision.ops.sigmoid_focal_loss",
        default_for_kind: true,
        ..COMMON
    },
    PresetInfo {
        preset: FocalPreset::Fvcore,
        name: "fvcore",
        reference: "fvcore.nn.sigmoid_focal_loss",
        default_alpha: None,
        precision: Precision::Float32(FVCORE_NOTE),
        ..COMMON
    },
    PresetInfo {
        preset: FocalPreset::Mmdet,
        name: "mmdet",
        reference: "mmdet.models.losses.FocalLoss (py_sigmoid_focal_loss)",
        mmdet_reduction: true,
        ..COMMON
    },
    PresetInfo {
        preset: FocalPreset::Keras,
        name: "keras",
        reference: "keras.losses.BinaryFocalCrossentropy(from_logits=True)",
        precision: Precision::Float32(KERAS_NOTE),
        ..COMMON
    },
    PresetInfo {
        preset: FocalPreset::Seed,
        name: "seed",
        reference: "alpha * (1 - exp(-bce)) ** gamma * bce (common snippet)",
        alpha_rule: "alpha on every element",
        ..COMMON
    },
    PresetInfo {
        preset: FocalPreset::Kornia,
        name: "kornia",
        reference: "kornia.losses.binary_focal_loss_with_logits",
        alpha_rule: "alpha·pos_weight on the positive term t·σ(-x)^γ·(-log σ(x)), 1 - alpha on the negative term (1 - t)·σ(x)^γ·(-log σ(-x))",
        // pred and target are [N, C, *]: pos_weight and weight run along dim 1.
        class_axis: 1,
        ignore: IgnoreRule::ZeroCounted,
        default_ignore_index: Some(-100),
        class_weight: ClassWeight::ClassAxis,
        pos_weight: true,
        ..COMMON
    },
    PresetInfo {
        preset: FocalPreset::Mmcv,
        name: "mmcv",
        reference: "mmcv.ops.sigmoid_focal_loss",
        alpha_rule: "alpha on the target class's element, 1 - alpha on the others",
        mean_over: MeanOver::Rows,
        precision: Precision::Float32(MMCV_SIGMOID_NOTE),
        class_weight: ClassWeight::RowLabel,
        index_targets_only: true,
        background: BackgroundLabels::OutsideClasses,
        float32_parameters: true,
        ..COMMON
    },
    PresetInfo {
        preset: FocalPreset::Kornia,
        kind: FocalKind::Softmax,
        name: "kornia",
        reference: "kornia.losses.focal_loss (kornia >= 0.7)",
        alpha_rule: "1 - alpha for class 0, alpha for the others",
        // kornia's mean is over its [N, C, *] output.
        default_for_kind: true,
        class_axis: 1,
        ignore: IgnoreRule::ZeroCounted,
        default_ignore_index: Some(-100),
        class_weight: ClassWeight::TargetClass,
        ..COMMON
    },
    PresetInfo {
        preset: FocalPreset::Mmcv,
        kind: FocalKind::Softmax,
        name: "mmcv",
        reference: "mmcv.ops.softmax_focal_loss",
        alpha_rule: "alpha on every class",
        mean_over: MeanOver::Rows,
        class_axis: 1,
        ignore: IgnoreRule::NegativeZeroCounted,
        class_weight: ClassWeight::TargetClass,
        float32_parameters: true,
        ..COMMON
    },
    PresetInfo {
        preset: FocalPreset::Keras,
        kind: FocalKind::Softmax,
        name: "keras",
        reference: "keras.losses.CategoricalFocalCrossentropy(from_logits=True)",
        alpha_rule: "alpha on every class",
        mean_over: MeanOver::Rows,
        precision: Precision::Float32Mean(KERAS_NOTE),
        class_axis: 1,
        ..COMMON
    },
    PresetInfo {
        preset: FocalPreset::Uniform,
        kind: FocalKind::Softmax,
        name: "uniform",
        reference: "-alpha * (1 - p_y) ** gamma * log_softmax(x)[y] (common snippet)",
        default_alpha: None,
        alpha_rule: "alpha on every class",
        mean_over: MeanOver::Rows,
        class_axis: 1,
        class_weight: ClassWeight::TargetClass,
        ..COMMON
    },
];

impl FocalPreset {
    /// The preset's row for `kind`, if the preset has that kind.
    pub fn info(self, kind: FocalKind) -> Option<&'static PresetInfo> {
        PRESETS.iter().find(|row| row.preset == self && row.kind == kind)
    }

    /// The preset a kind takes when none is named.
    pub fn default_for(kind: FocalKind) -> FocalPreset {
        PRESETS.iter().find(|row| row.kind == kind && row.default_for_kind).map(|row| row.preset).unwrap_or(
            // Every kind has a default row; the table's test checks it.
            FocalPreset::Torchvision,
        )
    }

    pub fn name(self) -> &'static str {
        PRESETS.iter().find(|row| row.preset == self).map_or("", |row| row.name)
    }

    pub fn fits(self, kind: FocalKind) -> bool {
        self.info(kind).is_some()
    }

    /// The kind the preset implies: the one kind it has, if it has one.
    pub fn implied_kind(self) -> Option<FocalKind> {
        let mut kinds = PRESETS.iter().filter(|row| row.preset == self).map(|row| row.kind);
        let first = kinds.next()?;
        kinds.all(|kind| kind == first).then_some(first)
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;

    #[test]
    fn every_kind_has_one_default_and_every_preset_a_row_named_as_on_the_command_line() {
        for kind in [FocalKind::Sigmoid, FocalKind::Softmax] {
            let defaults: Vec<_> = PRESETS.iter().filter(|r| r.kind == kind && r.default_for_kind).collect();
            assert_eq!(defaults.len(), 1, "{kind:?}");
        }
        for preset in FocalPreset::value_variants() {
            let name = preset.to_possible_value().unwrap().get_name().to_string();
            let rows: Vec<_> = PRESETS.iter().filter(|r| r.preset == *preset).collect();
            assert!(!rows.is_empty(), "{name} has no row");
            assert!(rows.iter().all(|r| r.name == name), "{name}");
        }
    }

    #[test]
    fn a_preset_of_one_kind_implies_it() {
        assert_eq!(FocalPreset::Torchvision.implied_kind(), Some(FocalKind::Sigmoid));
        assert_eq!(FocalPreset::Uniform.implied_kind(), Some(FocalKind::Softmax));
        for both in [FocalPreset::Kornia, FocalPreset::Mmcv, FocalPreset::Keras] {
            assert_eq!(both.implied_kind(), None, "{both:?}");
        }
    }
}
