//! Sigmoid focal losses: one binary task per element. Each is written from
//! the exact parts of the logistic function (`σ(x)`, `σ(-x) = 1 - σ(x)`
//! and the two softplus functions, see [`crate::math::SigmoidBuffers`]), so
//! `1 - p_t` and the BCE keep every digit where a reference's own arithmetic
//! cancels (`1 - p_t` for p_t near 1, `x - log σ(x)` for x ≪ 0). mmcv's
//! kernel is the exception: its result depends on float64's rounding of
//! `1 - p` (0 from x ≈ 37, then floored at log(FLT_MIN)), so it is evaluated
//! literally. Targets are floats shaped like the logits, or one class index
//! per row expanded to one-hot on the fly.

use std::ops::Range;

use crate::error::{Error, Result};
use crate::input::{Tensor, Values, shape_text};
use crate::loss::{ClassLayout, Labels, NotClasses, check_class_weights, class_labels, resolve_axis};
use crate::math::SigmoidBuffers;
use crate::tally::{Elements, Example, Operand, Tally};

use super::presets::{BackgroundLabels, ClassWeight, PresetInfo};
use super::softmax::FLT_MIN;
use super::{FocalParams, FocalPreset, Ignore, KERAS_EPSILON, power};

/// The per-element formula of each sigmoid reference.
#[derive(Debug, Clone, Copy)]
pub(super) enum Formula {
    /// torchvision and fvcore: `bce·(1 - p_t)^γ`, then `α_t·`.
    Torchvision { alpha: Option<f64> },
    /// mmdet's py_sigmoid_focal_loss: `1 - p_t` as `(1-p)·t + p·(1-t)`,
    /// `bce·(α_t·(1 - p_t)^γ)`.
    Mmdet { alpha: Option<f64> },
    /// Keras: smoothed targets, the BCE of the clipped probability, `p_t`
    /// of the unclipped one.
    Keras { alpha: Option<f64>, smoothing: f64 },
    /// The BCE snippet: `α·(1 - exp(-bce))^γ·bce`.
    Seed { alpha: Option<f64> },
    /// kornia's binary_focal_loss_with_logits: `α·pw·t·σ(-x)^γ·(-log σ(x))
    /// + (1 - α)·(1 - t)·σ(x)^γ·(-log σ(-x))`.
    Kornia { alpha: Option<f64> },
    /// mmcv's sigmoid kernel, literally: `p = 1/(1 + exp(-x))`,
    /// `-α·(1-p)^γ·log(max(p, FLT_MIN))` on the target class and
    /// `-(1-α)·p^γ·log(max(1-p, FLT_MIN))` on the others.
    Mmcv { alpha: Option<f64> },
}

/// What an element's loss is computed from.
#[derive(Debug, Clone, Copy)]
struct Element {
    x: f64,
    t: f64,
    /// σ(x) and σ(-x).
    p: f64,
    q: f64,
    /// -log σ(x) and -log σ(-x).
    minus_log_p: f64,
    minus_log_q: f64,
    /// The plain BCE with logits.
    bce: f64,
    /// kornia's pos_weight of the element's class (1 without).
    pos_weight: f64,
}

/// A block of elements, one slice per part, all of one length.
struct Block<'b> {
    x: &'b [f64],
    t: &'b [f64],
    p: &'b [f64],
    q: &'b [f64],
    minus_log_p: &'b [f64],
    minus_log_q: &'b [f64],
    bce: &'b [f64],
    /// kornia's pos_weight of each element's class, when given.
    pos_weight: Option<&'b [f64]>,
}

impl Formula {
    /// The losses of a block. The formula, whether α is on, γ's common
    /// value and the presence of a positive weight are settled once per
    /// block, so each loop the compiler sees is straight arithmetic.
    #[inline(always)]
    fn losses(self, gamma: f64, block: &Block, out: &mut [f64]) {
        match gamma {
            2.0 => self.losses_with(block, out, |b| b * b),
            _ => self.losses_with(block, out, move |b| power(b, gamma)),
        }
    }

    #[inline(always)]
    fn losses_with(self, block: &Block, out: &mut [f64], power: impl Fn(f64) -> f64 + Copy) {
        #[inline(always)]
        fn each(
            out: &mut [f64],
            block: &Block,
            pos_weight: impl Fn(usize) -> f64,
            loss: impl Fn(Element) -> f64,
        ) {
            let Block { x, t, p, q, minus_log_p, minus_log_q, bce, .. } = *block;
            let parts = x.iter().zip(t).zip(p).zip(q).zip(minus_log_p).zip(minus_log_q).zip(bce);
            for (k, (out, ((((((&x, &t), &p), &q), &minus_log_p), &minus_log_q), &bce))) in
                out.iter_mut().zip(parts).enumerate()
            {
                *out = loss(Element { x, t, p, q, minus_log_p, minus_log_q, bce, pos_weight: pos_weight(k) });
            }
        }
        // Each arm names its formula as a constant, so `loss` folds to one
        // variant's arithmetic.
        macro_rules! run {
            ($formula:expr) => {
                each(out, block, |_| 1.0, |e| $formula.loss(e, power))
            };
        }
        use Formula::*;
        match self {
            Torchvision { alpha: Some(a) } => run!(Torchvision { alpha: Some(a) }),
            Torchvision { alpha: None } => run!(Torchvision { alpha: None }),
            Mmdet { alpha: Some(a) } => run!(Mmdet { alpha: Some(a) }),
            Mmdet { alpha: None } => run!(Mmdet { alpha: None }),
            Keras { alpha, smoothing } => run!(Keras { alpha, smoothing }),
            Seed { alpha } => run!(Seed { alpha }),
            Mmcv { alpha } => run!(Mmcv { alpha }),
            Kornia { alpha } => match block.pos_weight {
                Some(weights) => each(out, block, |k| weights[k], |e| Kornia { alpha }.loss(e, power)),
                None => run!(Kornia { alpha }),
            },
        }
    }

    pub(super) fn new(preset: FocalPreset, alpha: Option<f64>, smoothing: f64) -> Formula {
        match preset {
            FocalPreset::Mmdet => Formula::Mmdet { alpha },
            FocalPreset::Keras => Formula::Keras { alpha, smoothing },
            FocalPreset::Seed => Formula::Seed { alpha },
            FocalPreset::Kornia => Formula::Kornia { alpha },
            FocalPreset::Mmcv => Formula::Mmcv { alpha },
            _ => Formula::Torchvision { alpha },
        }
    }

    /// The loss of one element; `power` raises to γ.
    #[inline(always)]
    fn loss(self, e: Element, power: impl Fn(f64) -> f64) -> f64 {
        let Element { x, t, p, q, minus_log_p, minus_log_q, bce, pos_weight } = e;
        let alpha_t = |a: f64, t: f64| a * t + (1.0 - a) * (1.0 - t);
        // 1 - p_t = 1 - (p·t + (1 - p)·(1 - t)), without the cancellation.
        let one_minus_p_t = t * q + (1.0 - t) * p;
        match self {
            Formula::Torchvision { alpha } => {
                let loss = bce * power(one_minus_p_t);
                alpha.map_or(loss, |a| alpha_t(a, t) * loss)
            }
            Formula::Mmdet { alpha } => {
                let modulating = power(one_minus_p_t);
                bce * alpha.map_or(modulating, |a| alpha_t(a, t) * modulating)
            }
            Formula::Keras { alpha, smoothing } => {
                let t = if smoothing > 0.0 { t * (1.0 - smoothing) + 0.5 * smoothing } else { t };
                let bce = keras_binary_cross_entropy(p, minus_log_p, minus_log_q, t);
                let loss = power(t * q + (1.0 - t) * p) * bce;
                alpha.map_or(loss, |a| (t * a + (1.0 - a) * (1.0 - t)) * loss)
            }
            Formula::Seed { alpha } => {
                // 1 - exp(-bce) without the cancellation of a small bce.
                let modulating = power(-(-bce).exp_m1());
                alpha.map_or(modulating * bce, |a| a * modulating * bce)
            }
            Formula::Kornia { alpha } => {
                let positive = power(q) * t * minus_log_p;
                let negative = power(p) * (1.0 - t) * minus_log_q;
                let (positive, negative) = match alpha {
                    Some(a) => (a * positive, (1.0 - a) * negative),
                    None => (positive, negative),
                };
                pos_weight * positive + negative
            }
            Formula::Mmcv { alpha } => {
                let p = 1.0 / (1.0 + (-x).exp());
                let (a_pos, a_neg) = alpha.map_or((1.0, 1.0), |a| (a, 1.0 - a));
                let floored_ln = |v: f64| (if v > FLT_MIN { v } else { FLT_MIN }).ln();
                if t == 1.0 {
                    -(a_pos * (power(1.0 - p) * floored_ln(p)))
                } else {
                    -(a_neg * (power(p) * floored_ln(1.0 - p)))
                }
            }
        }
    }
}

/// Keras's `binary_crossentropy` of the probability clipped to
/// [1e-7, 1 - 1e-7] (each log floored at -100, as torch's BCE floors it),
/// with the logs of an unclipped probability taken exactly from the
/// softplus functions.
#[inline(always)]
fn keras_binary_cross_entropy(p: f64, minus_log_p: f64, minus_log_q: f64, t: f64) -> f64 {
    let (log_p, log_q) = if p < KERAS_EPSILON {
        (KERAS_EPSILON.ln(), (-KERAS_EPSILON).ln_1p())
    } else if p > 1.0 - KERAS_EPSILON {
        let clipped = 1.0 - KERAS_EPSILON;
        (clipped.ln(), (-clipped).ln_1p())
    } else {
        (-minus_log_p, -minus_log_q)
    };
    // Not f64::max, which would hide a NaN.
    let floored = |log: f64| if log < -100.0 { -100.0 } else { log };
    (t - 1.0) * floored(log_q) - t * floored(log_p)
}

/// The labels that mean "no class" in class-index targets.
#[derive(Debug, Clone, Copy)]
enum Background {
    /// -1 and C (mmdet uses C, detection code often -1).
    MinusOneOrClasses(i64),
    Label(i64),
    /// Every label outside [0, C) (mmcv).
    OutsideClasses,
}

impl Background {
    fn labels(self) -> Vec<i64> {
        match self {
            Background::MinusOneOrClasses(classes) => vec![-1, classes],
            Background::Label(b) => vec![b],
            Background::OutsideClasses => Vec::new(),
        }
    }
}

enum Targets<'a> {
    /// One target per logit, 0/1 or soft; a target equal to the ignore
    /// index is ignored.
    Elements { values: Values<'a>, ignore: Option<f64> },
    /// One class index per row, checked and copied; the row is one-hot, or
    /// all zero for background, or ignored whole.
    Labels { labels: Labels, background: Background },
}

/// A per-element multiplier of the loss.
enum Scale<'a> {
    /// One per class, along the class axis (kornia's `weight`).
    Class(Vec<f64>),
    /// `w[label]` of the element's row (mmcv's `weight[t]`).
    RowLabel(Vec<f64>),
    /// mmdet's sample weight of the element's row (index along axis 0).
    Row(Values<'a>),
    /// mmdet's sample weight of the element itself.
    Element(Values<'a>),
}

pub(super) struct SigmoidFocal<'a> {
    logits: Values<'a>,
    targets: Targets<'a>,
    /// For one-dimensional logits: one class, every element a row.
    layout: ClassLayout,
    axis: Option<usize>,
    formula: Formula,
    gamma: f64,
    /// kornia's pos_weight, one per class.
    pos_weight: Option<Vec<f64>>,
    scale: Option<Scale<'a>>,
    /// Elements per index of axis 0 (mmdet's rows).
    per_sample: usize,
    /// Whether ignored elements leave the divisor too.
    dropped: bool,
}

/// Where an element sits: its row's outer and inner index, and its class.
/// Walked forward one element at a time, without divisions.
struct Position {
    outer: usize,
    class: usize,
    inner: usize,
}

impl Position {
    fn of(element: usize, layout: &ClassLayout) -> Position {
        Position {
            outer: element / (layout.classes * layout.inner),
            class: (element / layout.inner) % layout.classes,
            inner: element % layout.inner,
        }
    }

    #[inline(always)]
    fn row(&self, layout: &ClassLayout) -> usize {
        self.outer * layout.inner + self.inner
    }

    #[inline(always)]
    fn advance(&mut self, layout: &ClassLayout) {
        self.inner += 1;
        if self.inner == layout.inner {
            self.inner = 0;
            self.class += 1;
            if self.class == layout.classes {
                self.class = 0;
                self.outer += 1;
            }
        }
    }
}

/// The arrays and settings a sigmoid pass is built from.
pub(super) struct SigmoidInputs<'a> {
    pub logits: &'a Tensor,
    pub targets: &'a Tensor,
    pub sample_weight: Option<&'a Tensor>,
    pub info: &'static PresetInfo,
    pub ignore: Ignore,
}

impl<'a> SigmoidFocal<'a> {
    pub(super) fn new(
        inputs: SigmoidInputs<'a>,
        params: &FocalParams,
        formula: Formula,
        gamma: f64,
        warnings: &mut Vec<String>,
    ) -> Result<Self> {
        let SigmoidInputs { logits, targets, sample_weight, info, ignore } = inputs;
        let rank = logits.shape.len();
        let axis = match (params.class_axis, rank) {
            (None, 1) => None,
            (axis, _) => Some(resolve_axis(axis.unwrap_or(info.class_axis), rank, &logits.origin)?),
        };
        let layout = match axis {
            Some(axis) => ClassLayout::new(&logits.shape, axis, &logits.origin)?,
            None => ClassLayout { outer: logits.numel(), classes: 1, inner: 1, axis: 0 },
        };
        let index_shape = axis.map(|axis| {
            let mut shape = logits.shape.clone();
            shape.remove(axis);
            shape
        });
        let targets_view = if targets.shape == logits.shape {
            if info.index_targets_only {
                return Err(Error::input(
                    &targets.origin,
                    format!(
                        "shape {} is one target per logit: {} takes one class index per row{}",
                        targets.shape_text(),
                        info.reference,
                        index_shape.as_ref().map_or(String::new(), |s| format!(" {}", shape_text(s)))
                    ),
                ));
            }
            if params.background.is_some() {
                return Err(Error::usage(
                    "a background label is for class-index targets; these targets are shaped like the logits",
                ));
            }
            if ignore.dropped && ignore.label.is_some() && params.normalize == Some(super::Normalize::Rows) {
                return Err(Error::usage(
                    "targets shaped like the logits are ignored element by element, which leaves no whole rows to count: normalize by elements, positives or a number",
                ));
            }
            Targets::Elements { values: targets.values(), ignore: ignore.label.map(|label| label as f64) }
        } else if index_shape.as_ref() == Some(&targets.shape) {
            let background = match (params.background, info.background) {
                (Some(_), BackgroundLabels::OutsideClasses) => {
                    return Err(Error::usage(format!(
                        "{} takes every label outside [0, C) as background: --background does not apply",
                        info.reference
                    )));
                }
                (Some(label), _) => Background::Label(label),
                (None, BackgroundLabels::OutsideClasses) => Background::OutsideClasses,
                (None, BackgroundLabels::MinusOneAndClasses) => {
                    Background::MinusOneOrClasses(layout.classes as i64)
                }
            };
            let labels = background.labels();
            let allowed = NotClasses {
                ignore: ignore.label,
                ignore_negative: false,
                background: &labels,
                background_outside: matches!(background, Background::OutsideClasses),
            };
            let classes = class_labels(targets, layout.classes, &allowed)?;
            if targets.dtype.is_float() {
                warnings.push(format!(
                    "targets are {} with integral values: read as class indices",
                    targets.dtype.name()
                ));
            }
            Targets::Labels { labels: classes, background }
        } else {
            let indices = match &index_shape {
                Some(shape) => format!(" or class indices {}", shape_text(shape)),
                None => String::new(),
            };
            return Err(Error::input(
                &targets.origin,
                format!(
                    "shape {} fits neither one target per logit {}{indices} for logits {}",
                    targets.shape_text(),
                    logits.shape_text(),
                    logits.shape_text()
                ),
            ));
        };
        let classes = layout.classes;
        let per_class = |vector: &(Vec<f64>, crate::error::Origin), warnings: &mut Vec<String>| {
            warnings.extend(check_class_weights(&vector.0, classes, &vector.1)?);
            Ok::<_, Error>(vector.0.clone())
        };
        let pos_weight = params.pos_weight.as_ref().map(|w| per_class(w, warnings)).transpose()?;
        let mut scale = match (&params.weight, info.class_weight) {
            (None, _) => None,
            (Some(w), ClassWeight::RowLabel) => {
                let weight = per_class(w, warnings)?;
                if let Targets::Labels { labels, .. } = &targets_view
                    && let Some(row) = labels.first_background()
                {
                    return Err(Error::input(
                        &targets.origin,
                        format!(
                            "label {} at index {} is background: {} multiplies each row by weight[label], which is out of range for a background label; with --weight every row needs a class in [0, {classes})",
                            targets.values().display(row),
                            crate::error::index_in(&targets.shape, row),
                            info.reference
                        ),
                    ));
                }
                Some(Scale::RowLabel(weight))
            }
            (Some(w), _) => Some(Scale::Class(per_class(w, warnings)?)),
        };
        if let Some(weights) = sample_weight {
            scale = Some(sample_scale(weights, logits, warnings)?);
        }
        Ok(SigmoidFocal {
            logits: logits.values(),
            targets: targets_view,
            layout,
            axis,
            formula,
            gamma,
            pos_weight,
            scale,
            per_sample: logits.numel() / logits.shape[0].max(1),
            dropped: ignore.dropped,
        })
    }

    pub(super) fn units(&self) -> usize {
        self.layout.outer * self.layout.classes * self.layout.inner
    }

    pub(super) fn classes(&self) -> usize {
        self.layout.classes
    }

    /// Examples along the class axis (every element for one-dimensional logits).
    pub(super) fn rows(&self) -> usize {
        self.layout.examples()
    }

    /// Whether ignored elements leave the divisor.
    pub(super) fn drops_ignored(&self) -> bool {
        self.dropped
    }

    pub(super) fn class_axis(&self) -> Option<usize> {
        self.axis
    }

    pub(super) fn target_mode(&self) -> &'static str {
        match self.targets {
            Targets::Elements { .. } => "probabilities",
            Targets::Labels { .. } => "indices",
        }
    }

    /// The labels read as "no class", for class-index targets.
    pub(super) fn background_labels(&self) -> Option<serde_json::Value> {
        match &self.targets {
            Targets::Elements { .. } => None,
            Targets::Labels { background: Background::OutsideClasses, .. } => {
                Some(serde_json::json!("outside [0, C)"))
            }
            Targets::Labels { background, .. } => Some(serde_json::json!(background.labels())),
        }
    }

    pub(super) fn eval(&self, units: Range<usize>, tally: &mut Tally) {
        crate::math::widest(
            #[inline(always)]
            || self.eval_blocks(units, tally),
        )
    }

    /// The pass itself; [`SigmoidFocal::eval`] builds it for the widest vectors.
    #[inline(always)]
    pub(super) fn eval_blocks(&self, units: Range<usize>, tally: &mut Tally) {
        const BLOCK: usize = 4096;
        let mut x = [0.0; BLOCK];
        let mut t = [0.0; BLOCK];
        let mut class = [0usize; BLOCK];
        let mut row = [0usize; BLOCK];
        let mut skip = [false; BLOCK];
        let mut parts = SigmoidBuffers::<BLOCK>::new();
        let mut pws = [0.0; BLOCK];
        let mut losses = [0.0; BLOCK];
        let mut scales = [0.0; BLOCK];
        let layout = &self.layout;
        // With the classes on the last axis, element k of a block has class
        // first + k (mod C) and the tally takes the block in lanes.
        let class_last = layout.inner == 1;
        // Where each element sits is needed for weights and ignored rows;
        // the plain case walks the block without it.
        let track = self.scale.is_some() || self.pos_weight.is_some() || !class_last;
        let mut at = Position::of(units.start, layout);
        let mut start = units.start;
        while start < units.end {
            let len = (units.end - start).min(BLOCK);
            let first_class = at.class;
            self.logits.copy_to_f64(start, 1, &mut x[..len]);
            if track {
                for k in 0..len {
                    class[k] = at.class;
                    row[k] = at.row(layout);
                    at.advance(layout);
                }
            } else {
                at = Position::of(start + len, layout);
            }
            let mut ignored = 0;
            match &self.targets {
                Targets::Elements { values, ignore } => {
                    values.copy_to_f64(start, 1, &mut t[..len]);
                    tally.record_nonfinite(Operand::Targets, &t[..len], start, 1);
                    if let Some(label) = *ignore {
                        for k in 0..len {
                            skip[k] = t[k] == label;
                            if skip[k] {
                                // Computed as a negative, then left out.
                                t[k] = 0.0;
                                ignored += 1;
                            }
                        }
                    }
                    let skipped = &skip;
                    tally.record_outside_unit(&t[..len], start, |k| ignored > 0 && skipped[k]);
                }
                Targets::Labels { labels, .. } if track => {
                    for k in 0..len {
                        t[k] = if labels.class(row[k]) == Some(class[k]) { 1.0 } else { 0.0 };
                        skip[k] = labels.ignored(row[k]);
                        ignored += skip[k] as usize;
                    }
                }
                Targets::Labels { labels, .. } => {
                    // Classes on the last axis: one label per run of a row,
                    // which is all zero but for its class (or ignored whole).
                    let mut at = Position::of(start, layout);
                    let mut k = 0;
                    while k < len {
                        let run = (layout.classes - at.class).min(len - k);
                        let segment = &mut t[k..k + run];
                        segment.fill(0.0);
                        if labels.ignored(at.outer) {
                            skip[k..k + run].fill(true);
                            ignored += run;
                        } else if let Some(label) = labels.class(at.outer)
                            && (at.class..at.class + run).contains(&label)
                        {
                            segment[label - at.class] = 1.0;
                        }
                        k += run;
                        at = Position::of(start + k, layout);
                    }
                }
            }
            tally.record_nonfinite(Operand::Logits, &x[..len], start, 1);
            // σ(x), σ(-x), -log σ(x), -log σ(-x) and the plain BCE, each exact.
            parts.fill(&x[..len], &t[..len]);
            if let Some(weights) = &self.pos_weight {
                for (pw, &c) in pws[..len].iter_mut().zip(&class[..len]) {
                    *pw = weights[c];
                }
            }
            let block = Block {
                x: &x[..len],
                t: &t[..len],
                p: &parts.p[..len],
                q: &parts.q[..len],
                minus_log_p: &parts.minus_log_p[..len],
                minus_log_q: &parts.minus_log_q[..len],
                bce: &parts.bce[..len],
                pos_weight: self.pos_weight.as_ref().map(|_| &pws[..len]),
            };
            self.formula.losses(self.gamma, &block, &mut losses[..len]);
            if let Some(scale) = &self.scale {
                self.scales(scale, start, &class[..len], &row[..len], &mut scales[..len]);
                for k in 0..len {
                    losses[k] *= scales[k];
                }
            }
            let elements = Elements {
                first_class,
                one_class: false,
                first_index: start,
                x: &x[..len],
                t: &t[..len],
                p: &parts.p[..len],
                loss: &losses[..len],
                baseline: &parts.bce[..len],
            };
            if ignored > 0 {
                tally.ignored += ignored as u64;
                let kept = (0..len).filter(|&k| !skip[k]);
                tally.add_all(kept.map(|k| Example {
                    class: class_of(k, first_class, &class, track, layout),
                    ..elements.example(k)
                }));
                skip[..len].fill(false);
            } else if class_last {
                tally.add_elements(&elements);
            } else {
                // Classes on an earlier axis: the block is runs of one class.
                let mut from = 0;
                while from < len {
                    let to = from + class[from..len].iter().take_while(|&&c| c == class[from]).count();
                    tally.add_elements(&elements.slice(from..to, class[from]));
                    from = to;
                }
            }
            start += len;
        }
    }

    /// The multipliers of a block's elements.
    fn scales(&self, scale: &Scale, start: usize, class: &[usize], row: &[usize], out: &mut [f64]) {
        match scale {
            Scale::Class(w) => {
                for (o, &c) in out.iter_mut().zip(class) {
                    *o = w[c];
                }
            }
            Scale::RowLabel(w) => {
                let Targets::Labels { labels, .. } = &self.targets else { unreachable!("checked in new") };
                for (o, &r) in out.iter_mut().zip(row) {
                    // Ignored rows are left out; background rows were refused.
                    *o = labels.class(r).map_or(0.0, |c| w[c]);
                }
            }
            Scale::Element(values) => values.copy_to_f64(start, 1, out),
            Scale::Row(values) => {
                for (k, o) in out.iter_mut().enumerate() {
                    *o = values.get((start + k) / self.per_sample);
                }
            }
        }
    }
}

/// The class of element k of a block: tracked, or its place in the row.
#[inline(always)]
fn class_of(k: usize, first_class: usize, class: &[usize], tracked: bool, layout: &ClassLayout) -> usize {
    if tracked { class[k] } else { (first_class + k) % layout.classes }
}

/// mmdet's sample weight against the `[N, C]` loss (`py_sigmoid_focal_loss`):
/// one per element when it holds as many values as the logits (mmdet's
/// `weight.view(N, -1)`), one per row of axis 0 when it holds N (`[N]` or
/// `[N, 1]`, mmdet's `weight.view(-1, 1)`). Checked finite; negative entries
/// draw a warning.
fn sample_scale<'a>(weights: &'a Tensor, logits: &Tensor, warnings: &mut Vec<String>) -> Result<Scale<'a>> {
    let n = logits.shape[0];
    let per_element = weights.numel() == logits.numel();
    let per_row = !per_element
        && weights.numel() == n
        && weights.shape.first() == Some(&n)
        && weights.shape.iter().skip(1).all(|&d| d == 1);
    if !per_element && !per_row {
        return Err(Error::input(
            &weights.origin,
            format!(
                "shape {} is neither one weight per sample ([{n}] or [{n}, 1]) nor one per element ({}) of the logits",
                weights.shape_text(),
                logits.shape_text()
            ),
        ));
    }
    check_sample_weights(weights, warnings)?;
    let values = weights.values();
    Ok(if per_element { Scale::Element(values) } else { Scale::Row(values) })
}

/// Every sample weight finite; the first negative one named in a warning.
fn check_sample_weights(weights: &Tensor, warnings: &mut Vec<String>) -> Result<()> {
    let values = weights.values();
    let mut block = vec![0.0; 4096];
    let mut negatives = 0u64;
    let mut first_negative = None;
    let mut start = 0;
    while start < weights.numel() {
        let len = (weights.numel() - start).min(block.len());
        values.copy_to_f64(start, 1, &mut block[..len]);
        if let Some(k) = block[..len].iter().position(|w| !w.is_finite()) {
            return Err(Error::input(
                &weights.origin,
                format!(
                    "entry {} is {}, not a finite number",
                    crate::error::index_in(&weights.shape, start + k),
                    block[k]
                ),
            ));
        }
        for (k, &w) in block[..len].iter().enumerate() {
            if w < 0.0 {
                negatives += 1;
                first_negative.get_or_insert((start + k, w));
            }
        }
        start += len;
    }
    if let Some((at, w)) = first_negative {
        warnings.push(format!(
            "{} has {negatives} negative {}, the first {w} at {}: used as mmdet uses it, so losses can be negative",
            weights.origin,
            if negatives == 1 { "entry" } else { "entries" },
            crate::error::index_in(&weights.shape, at)
        ));
    }
    Ok(())
}
