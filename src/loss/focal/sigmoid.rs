//! Sigmoid focal losses: one binary task per element. Each is written from
//! the exact parts of the logistic function (`σ(x)`, `σ(-x) = 1 - σ(x)`
//! and the two softplus functions, see [`crate::math::logistic_into`]), so
//! `1 - p_t` and the BCE keep every digit where a reference's own arithmetic
//! cancels (`1 - p_t` for p_t near 1, `x - log σ(x)` for x ≪ 0). Targets are
//! floats shaped like the logits, or one class index per row expanded to
//! one-hot on the fly.

use crate::loss::{Labels, NotClasses, class_labels};
use std::ops::Range;

use crate::error::{Error, Result};
use crate::input::{Tensor, Values, shape_text};
use crate::loss::{ClassLayout, resolve_axis};
use crate::math::softplus;
use crate::tally::{Elements, Example, Operand, Tally};

use super::{FocalParams, FocalPreset, KERAS_EPSILON, power};

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
}

/// What an element's loss is computed from.
#[derive(Debug, Clone, Copy)]
struct Element {
    t: f64,
    /// σ(x) and σ(-x).
    p: f64,
    q: f64,
    /// -log σ(x) and -log σ(-x).
    minus_log_p: f64,
    minus_log_q: f64,
    /// The plain BCE with logits.
    bce: f64,
}

/// A block of elements, one slice per part, all of one length.
struct Block<'b> {
    t: &'b [f64],
    p: &'b [f64],
    q: &'b [f64],
    minus_log_p: &'b [f64],
    minus_log_q: &'b [f64],
    bce: &'b [f64],
}

impl Formula {
    pub(super) fn new(preset: FocalPreset, alpha: Option<f64>, smoothing: f64) -> Formula {
        match preset {
            FocalPreset::Mmdet => Formula::Mmdet { alpha },
            FocalPreset::Keras => Formula::Keras { alpha, smoothing },
            FocalPreset::Seed => Formula::Seed { alpha },
            _ => Formula::Torchvision { alpha },
        }
    }

    /// The losses of a block. The formula, whether α is on and γ's common
    /// value are settled once per block, so each loop the compiler sees is
    /// straight arithmetic.
    fn losses(self, gamma: f64, block: &Block, out: &mut [f64]) {
        match gamma {
            2.0 => self.losses_with(block, out, |b| b * b),
            _ => self.losses_with(block, out, move |b| power(b, gamma)),
        }
    }

    #[inline(always)]
    fn losses_with(self, block: &Block, out: &mut [f64], power: impl Fn(f64) -> f64 + Copy) {
        #[inline(always)]
        fn each(out: &mut [f64], block: &Block, loss: impl Fn(Element) -> f64) {
            let Block { t, p, q, minus_log_p, minus_log_q, bce } = *block;
            let parts = t.iter().zip(p).zip(q).zip(minus_log_p).zip(minus_log_q).zip(bce);
            for (out, (((((&t, &p), &q), &minus_log_p), &minus_log_q), &bce)) in out.iter_mut().zip(parts) {
                *out = loss(Element { t, p, q, minus_log_p, minus_log_q, bce });
            }
        }
        // Each arm names its formula as a constant, so `loss` folds to one
        // variant's arithmetic.
        macro_rules! run {
            ($formula:expr) => {
                each(out, block, |e| $formula.loss(e, power))
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
        }
    }

    /// The loss of one element; `power` raises to γ.
    #[inline(always)]
    fn loss(self, e: Element, power: impl Fn(f64) -> f64) -> f64 {
        let Element { t, p, q, minus_log_p, minus_log_q, bce } = e;
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
}

impl Background {
    fn labels(self) -> Vec<i64> {
        match self {
            Background::MinusOneOrClasses(classes) => vec![-1, classes],
            Background::Label(b) => vec![b],
        }
    }
}

enum Targets<'a> {
    /// One target per logit, 0/1 or soft.
    Elements(Values<'a>),
    /// One class index per row, checked and copied; the row is one-hot, or
    /// all zero for background.
    Labels { labels: Labels, background: Background },
}

pub(super) struct SigmoidFocal<'a> {
    logits: Values<'a>,
    targets: Targets<'a>,
    /// For one-dimensional logits: one class, every element a row.
    layout: ClassLayout,
    axis: Option<usize>,
    formula: Formula,
    gamma: f64,
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

impl<'a> SigmoidFocal<'a> {
    pub(super) fn new(
        logits: &'a Tensor,
        targets: &'a Tensor,
        params: &FocalParams,
        formula: Formula,
        gamma: f64,
        warnings: &mut Vec<String>,
    ) -> Result<Self> {
        let rank = logits.shape.len();
        let axis = match (params.class_axis, rank) {
            (None, 1) => None,
            (axis, _) => Some(resolve_axis(axis.unwrap_or(-1), rank, &logits.origin)?),
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
            if params.background.is_some() {
                return Err(Error::usage(
                    "a background label is for class-index targets; these targets are shaped like the logits",
                ));
            }
            Targets::Elements(targets.values())
        } else if index_shape.as_ref() == Some(&targets.shape) {
            let background = match params.background {
                Some(label) => Background::Label(label),
                None => Background::MinusOneOrClasses(layout.classes as i64),
            };
            let labels = background.labels();
            let classes =
                class_labels(targets, layout.classes, &NotClasses { labels: &labels, name: "background" })?;
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
        Ok(SigmoidFocal { logits: logits.values(), targets: targets_view, layout, axis, formula, gamma })
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

    pub(super) fn class_axis(&self) -> Option<usize> {
        self.axis
    }

    pub(super) fn target_mode(&self) -> &'static str {
        match self.targets {
            Targets::Elements(_) => "probabilities",
            Targets::Labels { .. } => "indices",
        }
    }

    /// The labels read as "no class", for class-index targets.
    pub(super) fn background_labels(&self) -> Option<Vec<i64>> {
        match &self.targets {
            Targets::Elements(_) => None,
            Targets::Labels { background, .. } => Some(background.labels()),
        }
    }

    pub(super) fn eval(&self, units: Range<usize>, tally: &mut Tally) {
        const BLOCK: usize = 1024;
        let mut x = [0.0; BLOCK];
        let mut t = [0.0; BLOCK];
        let mut class = [0usize; BLOCK];
        let mut log1p = [0.0; BLOCK];
        let mut ps = [0.0; BLOCK];
        let mut qs = [0.0; BLOCK];
        let mut mlps = [0.0; BLOCK];
        let mut mlqs = [0.0; BLOCK];
        let mut losses = [0.0; BLOCK];
        let mut bces = [0.0; BLOCK];
        let layout = &self.layout;
        // With the classes on the last axis, element k of a block has class
        // first + k (mod C) and the tally takes the block in lanes.
        let class_last = layout.inner == 1;
        let mut at = Position::of(units.start, layout);
        let mut start = units.start;
        while start < units.end {
            let len = (units.end - start).min(BLOCK);
            let first_class = at.class;
            self.logits.copy_to_f64(start, 1, &mut x[..len]);
            match &self.targets {
                Targets::Elements(values) if class_last => {
                    values.copy_to_f64(start, 1, &mut t[..len]);
                    at = Position::of(start + len, layout);
                }
                Targets::Elements(values) => {
                    values.copy_to_f64(start, 1, &mut t[..len]);
                    for c in &mut class[..len] {
                        *c = at.class;
                        at.advance(layout);
                    }
                }
                Targets::Labels { labels, .. } if class_last => {
                    // One label per row: the row is all zero but for its class.
                    let mut k = 0;
                    while k < len {
                        let run = (layout.classes - at.class).min(len - k);
                        let row = &mut t[k..k + run];
                        row.fill(0.0);
                        if let Some(label) = labels.class(at.outer)
                            && (at.class..at.class + run).contains(&label)
                        {
                            row[label - at.class] = 1.0;
                        }
                        k += run;
                        at = Position::of(start + k, layout);
                    }
                }
                Targets::Labels { labels, .. } => {
                    for k in 0..len {
                        class[k] = at.class;
                        t[k] = if labels.class(at.row(layout)) == Some(at.class) { 1.0 } else { 0.0 };
                        at.advance(layout);
                    }
                }
            }
            tally.record_nonfinite(Operand::Logits, &x[..len], start, 1);
            tally.record_nonfinite(Operand::Targets, &t[..len], start, 1);
            crate::math::logistic_into(&x[..len], &mut log1p[..len], &mut ps[..len], &mut qs[..len]);
            // -log σ(x), -log σ(-x) and the plain BCE, each exact.
            let parts = mlps[..len].iter_mut().zip(&mut mlqs[..len]).zip(&mut bces[..len]);
            for (((mlp, mlq), bce), (&x, (&l, &t))) in
                parts.zip(x[..len].iter().zip(log1p[..len].iter().zip(&t[..len])))
            {
                *mlp = softplus(-x, l);
                *mlq = softplus(x, l);
                *bce = t * *mlp + (1.0 - t) * *mlq;
            }
            let block = Block {
                t: &t[..len],
                p: &ps[..len],
                q: &qs[..len],
                minus_log_p: &mlps[..len],
                minus_log_q: &mlqs[..len],
                bce: &bces[..len],
            };
            self.formula.losses(self.gamma, &block, &mut losses[..len]);
            let elements = Elements {
                first_class,
                x: &x[..len],
                t: &t[..len],
                p: &ps[..len],
                loss: &losses[..len],
                baseline: &bces[..len],
            };
            if class_last {
                tally.add_elements(&elements);
            } else {
                tally.add_all((0..len).map(|k| Example { class: class[k], ..elements.example(k) }));
            }
            start += len;
        }
    }
}
