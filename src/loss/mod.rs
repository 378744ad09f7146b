//! The losses, one file each. A loss is built from loaded tensors and its
//! parameters (validating both), evaluates any range of its examples into a
//! [`Tally`], and reduces the merged tally to the reference's figures.

mod bce;
mod cross_entropy;
mod focal;
pub mod ssd;

use std::ops::Range;

pub use bce::{Bce, BceParams};
pub use cross_entropy::{CrossEntropy, CrossEntropyParams};
pub use focal::{Alpha, Focal, FocalKind, FocalParams, FocalPreset, Normalize};

use crate::error::{Error, Origin, Result, index_in};
use crate::input::Tensor;
use crate::input::Values;
use crate::report::Totals;
use crate::tally::{Grouping, Operand, Tally};

/// How the per-example losses are reduced to `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Reduction {
    Mean,
    Sum,
}

impl Reduction {
    pub fn name(self) -> &'static str {
        match self {
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
        }
    }

    /// `value` from the sum and the mean's divisor; 0/0 is NaN, as in PyTorch.
    pub fn apply(self, sum: f64, normalizer: f64) -> f64 {
        match self {
            Reduction::Mean => sum / normalizer,
            Reduction::Sum => sum,
        }
    }
}

/// A loss as the pass driver sees it.
pub trait PerExample: Sync {
    /// Units the pass is cut into (rows of the class axis).
    fn units(&self) -> usize;
    /// Input elements per unit, to size the chunks.
    fn unit_cost(&self) -> usize;
    fn classes(&self) -> usize;
    fn grouping(&self) -> Grouping;
    /// Evaluates `units` into `tally`.
    fn eval(&self, units: Range<usize>, tally: &mut Tally);
    /// The reference's figures, from the merged tally.
    fn totals(&self, tally: &Tally) -> Totals;
}

/// Where the classes sit in a tensor: `outer × classes × inner` elements,
/// so example `i` reads its classes `inner` elements apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassLayout {
    pub outer: usize,
    pub classes: usize,
    pub inner: usize,
    /// The resolved (non-negative) class axis.
    pub axis: usize,
}

impl ClassLayout {
    pub fn new(shape: &[usize], axis: usize) -> Self {
        ClassLayout {
            outer: shape[..axis].iter().product(),
            classes: shape[axis],
            inner: shape[axis + 1..].iter().product(),
            axis,
        }
    }

    pub fn examples(&self) -> usize {
        self.outer * self.inner
    }

    /// Flat index of example `i`'s first class, and the distance between classes.
    #[inline(always)]
    pub fn row(&self, i: usize) -> (usize, usize) {
        let (o, s) = (i / self.inner, i % self.inner);
        (o * self.classes * self.inner + s, self.inner)
    }
}

/// Resolves a possibly negative axis against `rank`.
pub fn resolve_axis(axis: i64, rank: usize, origin: &Origin) -> Result<usize> {
    let resolved = if axis < 0 { axis + rank as i64 } else { axis };
    if resolved < 0 || resolved >= rank as i64 {
        return Err(Error::input(
            origin,
            format!("class axis {axis} is out of range for an array of rank {rank}"),
        ));
    }
    Ok(resolved as usize)
}

/// Reads example `i`'s logits into `row` and records any that are not
/// finite; returns the row's maximum and where the row starts and steps.
#[inline]
pub fn read_row(
    logits: &Values,
    layout: &ClassLayout,
    i: usize,
    row: &mut [f64],
    tally: &mut Tally,
) -> (f64, usize, usize) {
    let (start, stride) = layout.row(i);
    let (max, finite) = match logits {
        Values::F32(values) if stride == 1 => {
            crate::math::widen_max_and_finite(&values[start..][..row.len()], row)
        }
        _ => {
            logits.copy_to_f64(start, stride, row);
            crate::math::max_and_finite(row)
        }
    };
    if !finite {
        tally.record_nonfinite(Operand::Logits, row, start, stride);
    }
    (max, start, stride)
}

/// Whether `label` is the prediction of a row whose maximum is `max`: the
/// first maximum, as torch.argmax picks it.
#[inline(always)]
pub fn predicts(row: &[f64], max: f64, label: usize) -> bool {
    row[label] == max && !row[..label].contains(&max)
}

/// Labels that are allowed in class-index targets without being classes:
/// the ignore index, or background labels.
pub struct NotClasses<'a> {
    pub labels: &'a [i64],
    /// What they are called in messages ("the ignore index", "background").
    pub name: &'static str,
}

/// Checks that every target is an integer class in [0, classes) or one of
/// `allowed`; the first that is not is reported with its index.
pub fn check_labels(targets: &Tensor, classes: usize, allowed: &NotClasses) -> Result<()> {
    let values = targets.values();
    for i in 0..targets.numel() {
        let at = || index_in(&targets.shape, i);
        let problem = match values.get_index(i) {
            None if targets.dtype.is_float() => "is not a class index (not an integer)".to_string(),
            None => format!("is out of range for {classes} classes"),
            Some(label) if allowed.labels.contains(&label) || (0..classes as i64).contains(&label) => {
                continue;
            }
            Some(_) if allowed.labels.is_empty() => format!("is out of range for {classes} classes"),
            Some(_) => {
                let listed: Vec<String> = allowed.labels.iter().map(i64::to_string).collect();
                format!(
                    "is neither one of the {classes} classes nor {} ({})",
                    allowed.name,
                    listed.join(" or ")
                )
            }
        };
        return Err(Error::input(
            &targets.origin,
            format!("label {} at index {} {problem}", values.display(i), at()),
        ));
    }
    Ok(())
}

/// Checks that a per-class vector fits `classes` and holds no negative or
/// non-finite entry.
pub fn check_class_weights(weight: &[f64], classes: usize, origin: &Origin) -> Result<()> {
    if weight.len() != classes {
        return Err(Error::input(
            origin,
            format!("has {} entries but the logits have {classes} classes", weight.len()),
        ));
    }
    check_weights(weight, &[classes], origin)
}

/// Checks that weights of `shape` are finite and not negative.
pub fn check_weights(weight: &[f64], shape: &[usize], origin: &Origin) -> Result<()> {
    let at = |i: usize| index_in(shape, i);
    if let Some(i) = weight.iter().position(|w| !w.is_finite()) {
        return Err(Error::input(origin, format!("entry {} is {}, not a finite number", at(i), weight[i])));
    }
    if let Some(i) = weight.iter().position(|&w| w < 0.0) {
        return Err(Error::input(origin, format!("entry {} is negative ({})", at(i), weight[i])));
    }
    Ok(())
}
