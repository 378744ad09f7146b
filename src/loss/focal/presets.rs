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
}

const FVCORE_NOTE: &str = "fvcore casts its inputs to float32; this is its formula in float64, so fvcore's own value differs by about 1e-7";
const KERAS_NOTE: &str = "Keras 3 promotes float64 with float32 to float32, so its own float64 result is rounded to float32 (its mean); this is its formula in float64";
const ALPHA_T: &str = "alpha_t = alpha·t + (1 - alpha)·(1 - t)";

/// Every preset, sigmoid first.
pub const PRESETS: [PresetInfo; 9] = [
    PresetInfo {
        preset: FocalPreset::Torchvision,
        kind: FocalKind::Sigmoid,
        name: "torchvision",
        reference: "torchvision.ops.sigmoid_focal_loss",
        default_alpha: Some(0.25),
        alpha_rule: ALPHA_T,
        mean_over: MeanOver::Elements,
        precision: Precision::Float64,
        default_for_kind: true,
    },
    PresetInfo {
        preset: FocalPreset::Fvcore,
        kind: FocalKind::Sigmoid,
        name: "fvcore",
        reference: "fvcore.nn.sigmoid_focal_loss",
        default_alpha: None,
        alpha_rule: ALPHA_T,
        mean_over: MeanOver::Elements,
        precision: Precision::Float32(FVCORE_NOTE),
        default_for_kind: false,
    },
    PresetInfo {
        preset: FocalPreset::Mmdet,
        kind: FocalKind::Sigmoid,
        name: "mmdet",
        reference: "mmdet.models.losses.FocalLoss (py_sigmoid_focal_loss)",
        default_alpha: Some(0.25),
        alpha_rule: ALPHA_T,
        mean_over: MeanOver::Elements,
        precision: Precision::Float64,
        default_for_kind: false,
    },
    PresetInfo {
        preset: FocalPreset::Keras,
        kind: FocalKind::Sigmoid,
        name: "keras",
        reference: "keras.losses.BinaryFocalCrossentropy(from_logits=True)",
        default_alpha: Some(0.25),
        alpha_rule: ALPHA_T,
        mean_over: MeanOver::Elements,
        precision: Precision::Float32(KERAS_NOTE),
        default_for_kind: false,
    },
    PresetInfo {
        preset: FocalPreset::Seed,
        kind: FocalKind::Sigmoid,
        name: "seed",
        reference: "alpha * (1 - exp(-bce)) ** gamma * bce (common snippet)",
        default_alpha: Some(0.25),
        alpha_rule: "alpha on every element",
        mean_over: MeanOver::Elements,
        precision: Precision::Float64,
        default_for_kind: false,
    },
    PresetInfo {
        preset: FocalPreset::Kornia,
        kind: FocalKind::Softmax,
        name: "kornia",
        reference: "kornia.losses.focal_loss (kornia >= 0.7)",
        default_alpha: Some(0.25),
        alpha_rule: "1 - alpha for class 0, alpha for the others",
        // kornia's mean is over its [N, C, *] output.
        mean_over: MeanOver::Elements,
        precision: Precision::Float64,
        default_for_kind: true,
    },
    PresetInfo {
        preset: FocalPreset::Mmcv,
        kind: FocalKind::Softmax,
        name: "mmcv",
        reference: "mmcv.ops.softmax_focal_loss",
        default_alpha: Some(0.25),
        alpha_rule: "alpha on every class",
        mean_over: MeanOver::Rows,
        precision: Precision::Float64,
        default_for_kind: false,
    },
    PresetInfo {
        preset: FocalPreset::Keras,
        kind: FocalKind::Softmax,
        name: "keras",
        reference: "keras.losses.CategoricalFocalCrossentropy(from_logits=True)",
        default_alpha: Some(0.25),
        alpha_rule: "alpha on every class",
        mean_over: MeanOver::Rows,
        precision: Precision::Float32Mean(KERAS_NOTE),
        default_for_kind: false,
    },
    PresetInfo {
        preset: FocalPreset::Uniform,
        kind: FocalKind::Softmax,
        name: "uniform",
        reference: "-alpha * (1 - p_y) ** gamma * log_softmax(x)[y] (common snippet)",
        default_alpha: None,
        alpha_rule: "alpha on every class",
        mean_over: MeanOver::Rows,
        precision: Precision::Float64,
        default_for_kind: false,
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
}
