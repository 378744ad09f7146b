//! The SSD MultiBox loss, `(L_conf + α·L_loc) / N`, with the semantics of
//! one of two references (notes §3):
//!
//! - `ssd.pytorch` (amdegroot, with the usual line-order fix): negatives
//!   are mined by `log_sum_exp(x) - x_0` with the batch's largest logit as
//!   the shift (rows far below it score -inf and are never mined),
//!   positives score 0, `min(ratio · positives, P - 1)` priors are taken
//!   per image, the confidence loss sums over positives ∪ mined, loc
//!   targets are rounded to float32, and N is the batch's positive count;
//! - `torchvision` (`SSD.compute_loss`): negatives are mined by their own
//!   loss, positives score -inf, there is no cap, positives and mined priors
//!   are added (a positive the mining reaches counts twice), loc targets come
//!   from `BoxCoder(1/v0, 1/v0, 1/v1, 1/v1)` on corner-form anchors, and
//!   N is max(1, positives).
//!
//! Both match alike (`matching.rs`), use label + 1 as a box's class (0 is
//! background) and Smooth L1 with β = 1. Ties at the mining cut-off go to
//! the lower prior index (torch's sort leaves them unspecified). Where the
//! references crash, the answers are defined: an image without boxes is all
//! background (it adds no positives, so no mined negatives either), N = 0
//! under ssd.pytorch gives 0 (the SSD paper) or NaN as chosen, and malformed
//! inputs are errors. With the softmax focal confidence loss, mining ranks
//! by the focal loss. Everything is computed in float64.
//!
//! [`Ssd::new`] validates and evaluates every image in parallel; the result
//! is the [`SsdState`], and as a [`PerExample`] the loss hands the
//! shared tally one example per counted prior (unit = image).

mod boxes;
mod command;
mod confidence;
mod figures;
mod image;
mod matching;
mod mining;
mod priors;
mod sections;
mod state;
#[cfg(test)]
mod tests;
mod truths;

use std::ops::Range;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::input::{Tensor, Values};
use crate::math::max_and_finite;
use crate::tally::findings::ExampleKind;
use crate::tally::{Example, Grouping, Operand, Tally};

use super::{PerExample, Reducer, check_float_predictions};

pub use command::{SsdArgs, SsdConfLoss};
pub use figures::{ClassFigures, DisplacedBox, ForcedMatch, Group, Groups, ImageFigures, NeverMined, Spread};
pub use image::{HardPrior, Keep, PriorRecord};
pub use priors::{PriorSet, Priors};
pub use sections::SsdSections;
pub use state::SsdState;
pub use truths::{GroundTruth, Truths, load as load_truths};

/// Whose semantics the loss follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum Preset {
    /// amdegroot/ssd.pytorch's `MultiBoxLoss`.
    #[value(name = "ssd.pytorch", alias = "ssd-pytorch")]
    SsdPytorch,
    /// torchvision's `SSD.compute_loss`.
    Torchvision,
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::SsdPytorch => "ssd.pytorch",
            Preset::Torchvision => "torchvision",
        }
    }
}

/// The confidence loss of one prior against its matched class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConfLoss {
    /// Softmax cross entropy.
    CrossEntropy,
    /// Softmax focal loss `-α (1 - p_y)^γ log p_y`, the same α for every class.
    SoftmaxFocal { alpha: f64, gamma: f64 },
}

impl ConfLoss {
    /// Lin et al.'s setting.
    pub const FOCAL_DEFAULT: ConfLoss = ConfLoss::SoftmaxFocal { alpha: 0.25, gamma: 2.0 };

    pub fn name(&self) -> &'static str {
        match self {
            ConfLoss::CrossEntropy => "ce",
            ConfLoss::SoftmaxFocal { .. } => "softmax-focal",
        }
    }
}

/// The loss when no prior is positive (N = 0) under ssd.pytorch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum ZeroPositives {
    /// 0, as the SSD paper sets it.
    Zero,
    /// NaN, what ssd.pytorch's 0/0 gives.
    Nan,
}

#[derive(Debug, Clone)]
pub struct SsdParams {
    pub preset: Preset,
    /// IoU at or above which a prior is positive.
    pub overlap_threshold: f64,
    /// Centre and size variances of the encoding.
    pub variances: [f64; 2],
    /// Mined negatives per positive, per image.
    pub neg_pos_ratio: f64,
    /// Hard-negative mining; without it every prior is counted once.
    pub mining: bool,
    /// α, the weight of the localisation loss.
    pub loc_weight: f64,
    pub conf_loss: ConfLoss,
    pub zero_positives: ZeroPositives,
}

impl Default for SsdParams {
    fn default() -> Self {
        SsdParams {
            preset: Preset::SsdPytorch,
            overlap_threshold: 0.5,
            variances: [0.1, 0.2],
            neg_pos_ratio: 3.0,
            mining: true,
            loc_weight: 1.0,
            conf_loss: ConfLoss::CrossEntropy,
            zero_positives: ZeroPositives::Zero,
        }
    }
}

impl SsdParams {
    fn check(&self) -> Result<()> {
        let t = self.overlap_threshold;
        if !(0.0..=1.0).contains(&t) {
            return Err(Error::usage(format!("overlap threshold {t} is outside [0, 1]")));
        }
        if !self.variances.iter().all(|v| v.is_finite() && *v > 0.0) {
            let [v0, v1] = self.variances;
            return Err(Error::usage(format!("variances {v0}, {v1} must be positive and finite")));
        }
        for (name, value) in
            [("negative:positive ratio", self.neg_pos_ratio), ("loc weight", self.loc_weight)]
        {
            if !(value.is_finite() && value >= 0.0) {
                return Err(Error::usage(format!("{name} {value} must be finite and not negative")));
            }
        }
        if let ConfLoss::SoftmaxFocal { alpha, gamma } = self.conf_loss
            && !(alpha.is_finite() && alpha >= 0.0 && gamma.is_finite() && gamma >= 0.0)
        {
            return Err(Error::usage(format!(
                "focal alpha {alpha} and gamma {gamma} must be finite and not negative"
            )));
        }
        Ok(())
    }

    /// Whether negatives are ranked by ssd.pytorch's global-max log-sum-exp.
    fn global_max_mining(&self) -> bool {
        self.preset == Preset::SsdPytorch && self.mining && self.conf_loss == ConfLoss::CrossEntropy
    }
}

/// The evaluated loss: its figures, and the examples for the shared tally.
pub struct Ssd {
    state: SsdState,
    classes: usize,
    priors: usize,
    examples: Vec<Example>,
    /// Image `b`'s examples are `examples[image_starts[b]..image_starts[b + 1]]`.
    image_starts: Vec<usize>,
    /// Per image: non-finite logits, and the flat index of the first.
    image_nonfinite: Vec<(u64, usize)>,
    /// Every prior's record, image by image, when kept.
    records: Vec<PriorRecord>,
}

impl Ssd {
    /// Checks `loc [B, P, 4]`, `conf [B, P, C]` (logits, class 0 =
    /// background), the priors and the truths against each other, then
    /// evaluates every image in parallel (in the current rayon pool).
    pub fn new(
        loc: &Tensor,
        conf: &Tensor,
        priors: &Priors,
        truths: &Truths,
        params: &SsdParams,
    ) -> Result<Ssd> {
        Ssd::keeping(loc, conf, priors, truths, params, Keep::default())
    }

    /// [`Ssd::new`], keeping the hardest priors and every prior's record as `keep` says.
    pub fn keeping(
        loc: &Tensor,
        conf: &Tensor,
        priors: &Priors,
        truths: &Truths,
        params: &SsdParams,
        keep: Keep,
    ) -> Result<Ssd> {
        params.check()?;
        let (images, prior_count, classes) = check_inputs(loc, conf, priors, truths)?;
        let batch_max = params.global_max_mining().then(|| batch_max(conf, images));
        let context = image::Context {
            loc: loc.values(),
            conf: conf.values(),
            priors,
            params,
            classes,
            batch_max,
            keep,
        };
        let results: Vec<image::ImageResult> = (0..images)
            .into_par_iter()
            .map_init(image::Scratch::default, |scratch, b| context.evaluate(b, &truths.images[b], scratch))
            .collect();
        let state =
            SsdState::from_images(&results, classes, prior_count, params, batch_max.is_some(), keep.hardest);

        let mut image_starts = Vec::with_capacity(images + 1);
        let mut examples = Vec::with_capacity(results.iter().map(|r| r.examples.len()).sum());
        let mut image_nonfinite = Vec::with_capacity(images);
        let mut records = Vec::with_capacity(if keep.records { images * prior_count } else { 0 });
        for result in results {
            image_starts.push(examples.len());
            examples.extend_from_slice(&result.examples);
            image_nonfinite.push(result.nonfinite_conf);
            records.extend_from_slice(&result.records);
        }
        image_starts.push(examples.len());
        Ok(Ssd { records, state, classes, priors: prior_count, examples, image_starts, image_nonfinite })
    }

    /// The loss's figures beyond the tally.
    pub fn state(&self) -> &SsdState {
        &self.state
    }

    /// Every prior's record as an uncompressed `.npz`.
    fn records_npz(&self) -> Vec<u8> {
        use std::io::Write;
        let shape = [self.state.images.len(), self.priors];
        let member = |descr: &str, data: &mut dyn Iterator<Item = u8>| {
            let mut bytes = crate::output::npy_header(descr, &shape);
            bytes.extend(data);
            bytes
        };
        let conf = member("<f8", &mut self.records.iter().flat_map(|r| r.conf.to_le_bytes()));
        let loc = member("<f8", &mut self.records.iter().flat_map(|r| r.loc.to_le_bytes()));
        let selected = member("|b1", &mut self.records.iter().map(|r| r.selected as u8));
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(conf.len() as u64 >= u32::MAX as u64);
        for (name, bytes) in [("conf.npy", conf), ("loc.npy", loc), ("selected.npy", selected)] {
            // Writing into memory cannot fail.
            let _ = zip.start_file(name, options).and_then(|()| zip.write_all(&bytes).map_err(Into::into));
        }
        zip.finish().map(std::io::Cursor::into_inner).unwrap_or_default()
    }
}

/// Checks the inputs against each other; returns B, P and C.
fn check_inputs(
    loc: &Tensor,
    conf: &Tensor,
    priors: &Priors,
    truths: &Truths,
) -> Result<(usize, usize, usize)> {
    check_float_predictions(loc)?;
    check_float_predictions(conf)?;
    if loc.shape.len() != 3 || loc.shape[2] != 4 {
        return Err(Error::input(&loc.origin, format!("shape {} is not [B, P, 4]", loc.shape_text())));
    }
    if conf.shape.len() != 3 {
        return Err(Error::input(&conf.origin, format!("shape {} is not [B, P, C]", conf.shape_text())));
    }
    let (images, prior_count, classes) = (loc.shape[0], loc.shape[1], conf.shape[2]);
    if conf.shape[..2] != loc.shape[..2] {
        return Err(Error::input(
            &conf.origin,
            format!(
                "shape {} does not match loc {} in images and priors",
                conf.shape_text(),
                loc.shape_text()
            ),
        ));
    }
    if classes < 2 {
        return Err(Error::input(
            &conf.origin,
            format!("has {classes} classes: SSD needs the background and at least one object class"),
        ));
    }
    crate::tally::check_classes(classes).map_err(|message| Error::input(&conf.origin, message))?;
    if priors.len() != prior_count {
        return Err(Error::input(
            &priors.origin,
            format!("holds {} priors but loc {} has {prior_count}", priors.len(), loc.shape_text()),
        ));
    }
    if truths.images.len() != images {
        return Err(Error::input(
            &truths.origin,
            format!("holds {} images but loc {} has {images}", truths.images.len(), loc.shape_text()),
        ));
    }
    for (image, boxes) in truths.images.iter().enumerate() {
        if let Some(t) = boxes.iter().find(|t| t.label >= classes - 1) {
            return Err(Error::input(
                &truths.origin,
                format!(
                    "image {image} box {}: label {} is out of range for {} object classes (conf has {classes} with the background)",
                    t.row,
                    t.label,
                    classes - 1
                ),
            ));
        }
    }
    Ok((images, prior_count, classes))
}

/// The largest logit of the batch, for ssd.pytorch's mining score.
/// Float32, float64 and bfloat16 logits are read in place.
fn batch_max(conf: &Tensor, images: usize) -> f64 {
    const BLOCK: usize = 4096;
    let values = conf.values();
    let per_image = conf.numel() / images.max(1);
    // A NaN leaves the maximum unspecified; the tally reports it.
    (0..images)
        .into_par_iter()
        .map(|b| {
            let range = b * per_image..(b + 1) * per_image;
            match values {
                Values::F32(v) => max_and_finite(&v[range]).0,
                Values::F64(v) => max_and_finite(&v[range]).0,
                Values::BF16(v) => max_and_finite(&v[range]).0,
                _ => {
                    let mut block = [0.0; BLOCK];
                    let mut max = f64::NEG_INFINITY;
                    for start in range.clone().step_by(BLOCK) {
                        let len = BLOCK.min(range.end - start);
                        values.copy_to_f64(start, 1, &mut block[..len]);
                        max = max.max(max_and_finite(&block[..len]).0);
                    }
                    max
                }
            }
        })
        .reduce(|| f64::NEG_INFINITY, f64::max)
}

impl PerExample for Ssd {
    fn writes_own_per_example(&self) -> bool {
        true
    }

    /// An `.npz` of `conf` and `loc` `[B, P]` (float64) and `selected`
    /// `[B, P]` (bool): every prior's confidence loss, its Smooth L1
    /// (positives), and whether the loss counts it (positive or mined).
    fn write_per_example(&self, path: &std::path::Path) -> Option<Result<()>> {
        Some(crate::output::bytes_to_file(path, &self.records_npz()))
    }

    fn example_kind(&self) -> ExampleKind {
        ExampleKind::Row
    }

    /// One example per prior of each image.
    fn example_shape(&self) -> Vec<usize> {
        vec![self.state.images.len(), self.priors]
    }

    fn units(&self) -> usize {
        self.state.images.len()
    }

    fn unit_cost(&self) -> usize {
        self.priors * self.classes
    }

    fn classes(&self) -> usize {
        self.classes
    }

    fn grouping(&self) -> Grouping {
        Grouping::PositivesNegatives
    }

    fn eval(&self, units: Range<usize>, tally: &mut Tally) {
        for image in units {
            for &example in &self.examples[self.image_starts[image]..self.image_starts[image + 1]] {
                tally.add(example);
            }
            tally.normalizer.add(self.state.images[image].1.positives as f64);
            let (count, first) = self.image_nonfinite[image];
            tally.add_nonfinite(Operand::Logits, count, first);
        }
    }

    /// From the state, not the tally: the tally holds the confidence part
    /// only. `value = sum / normalizer` except when N = 0 under ssd.pytorch.
    fn reducer(&self) -> Reducer {
        Reducer::Ssd(Box::new(self.state.clone()))
    }
}
