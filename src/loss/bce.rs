//! Binary cross entropy with logits, as `F.binary_cross_entropy_with_logits`:
//! `loss = w · ((1 - t)·x - (1 + (pw - 1)·t)·logσ(x))`, mean over every
//! element. `weight` broadcasts to the input, `pos_weight` along its last
//! axis. It is evaluated as `w · (pw·t·softplus(-x) + (1 - t)·softplus(x))`,
//! the same function written as a sum of terms that are not negative for
//! targets in [0, 1], so every loss is exact to a few ulps, tails included
//! (x = -40, t = 0 gives e^-40, which PyTorch's form rounds to 4.2e-18 with
//! 2 correct digits).

use std::collections::BTreeMap;
use std::ops::Range;

use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{Error, Result};
use crate::input::{Sources, Tensor, Values, shape_text};
use crate::report::{BaselineTotals, Presentation, Totals};
use crate::settings::ReportArgs;
use crate::tally::findings::ExampleKind;
use crate::tally::{Elements, Grouping, Operand, Tally};

use super::{
    ClassLayout, Loss, PerExample, Prepared, Reducer, Reduction, check_float_predictions, check_weights,
    describe, recorded, resolve_axis,
};
use crate::math::SigmoidBuffers;

/// Binary cross entropy with logits, as F.binary_cross_entropy_with_logits
#[derive(Debug, Args)]
pub struct BceArgs {
    /// A bundle (.npz or JSON object) holding arrays named logits, targets and,
    /// optionally, weight and pos_weight; flags override its members
    #[arg(value_name = "BUNDLE")]
    pub bundle: Option<String>,
    /// Logits of any shape (FILE or FILE:KEY)
    #[arg(long, value_name = "SPEC")]
    pub logits: Vec<String>,
    /// Targets of the logits' shape, 0/1 or soft
    #[arg(long, value_name = "SPEC")]
    pub targets: Vec<String>,
    /// Weights broadcast to the logits: an inline list or an array file
    #[arg(long, value_name = "LIST|SPEC", allow_hyphen_values = true)]
    pub weight: Vec<String>,
    /// Positive-class weights broadcast along the last axis: an inline list or an array file
    #[arg(long, value_name = "LIST|SPEC", allow_hyphen_values = true)]
    pub pos_weight: Vec<String>,
    /// How the per-element losses are reduced to the value
    #[arg(long, value_enum, default_value_t = Reduction::Mean)]
    pub reduction: Reduction,
    /// The axis whose index is the class in the per-class table [default: the last]
    #[arg(long, allow_negative_numbers = true)]
    pub class_axis: Option<i64>,
    #[command(flatten)]
    pub report: ReportArgs,
}

/// The arrays of a binary cross entropy.
pub struct BceInputs {
    logits: Tensor,
    targets: Tensor,
    weight: Option<Tensor>,
    pos_weight: Option<Tensor>,
}

impl Loss for BceArgs {
    const NAME: &'static str = "bce";
    const PRESENTATION: Presentation = Presentation {
        title: "binary cross entropy with logits",
        show_ignored: false,
        gradient_norm_table: true,
    };
    type Inputs = BceInputs;

    fn shared(&self) -> (&ReportArgs, Option<&str>) {
        (&self.report, self.bundle.as_deref())
    }

    fn read(&self, sources: &Sources) -> Result<BceInputs> {
        Ok(BceInputs {
            logits: sources.required(&self.logits, "logits")?,
            targets: sources.required(&self.targets, "targets")?,
            weight: sources.optional(&self.weight, "weight")?,
            pos_weight: sources.optional(&self.pos_weight, "pos_weight")?,
        })
    }

    fn prepare<'a>(&'a self, inputs: &'a BceInputs) -> Result<Prepared<'a>> {
        let BceInputs { logits, targets, weight, pos_weight } = inputs;
        let params = BceParams {
            weight: weight.as_ref(),
            pos_weight: pos_weight.as_ref(),
            reduction: self.reduction,
            class_axis: self.class_axis,
        };
        let loss = Bce::new(logits, targets, &params)?;
        let mut parameters = BTreeMap::new();
        parameters.insert("reduction".into(), json!(self.reduction.name()));
        parameters.insert("class_axis".into(), json!(loss.class_axis()));
        parameters.insert("weight".into(), recorded(weight.as_ref()));
        parameters.insert("pos_weight".into(), recorded(pos_weight.as_ref()));
        Ok(Prepared {
            parameters,
            inputs: describe([logits, targets].into_iter().chain(weight).chain(pos_weight)),
            operands: [logits, targets],
            warnings: loss.warnings.clone(),
            positives_per_class: true,
            pass: Box::new(loss),
        })
    }
}

pub struct BceParams<'a> {
    pub weight: Option<&'a Tensor>,
    pub pos_weight: Option<&'a Tensor>,
    pub reduction: Reduction,
    /// The axis whose index is the class; `None` takes the last axis, or a
    /// single class for one-dimensional input (N binary predictions).
    pub class_axis: Option<i64>,
}

/// A small array read through NumPy broadcasting against the input's shape.
struct Broadcast {
    values: Vec<f64>,
    /// One stride per input axis; 0 where the array is broadcast.
    strides: Vec<usize>,
}

impl Broadcast {
    /// The array read along `target`, and a warning when it holds negative
    /// entries.
    fn new(tensor: &Tensor, target: &[usize]) -> Result<(Broadcast, Option<String>)> {
        let fail = || {
            Error::input(
                &tensor.origin,
                format!(
                    "shape {} does not broadcast to the logits' shape {}",
                    tensor.shape_text(),
                    shape_text(target)
                ),
            )
        };
        if tensor.shape.len() > target.len() {
            return Err(fail());
        }
        let offset = target.len() - tensor.shape.len();
        let mut strides = vec![0; target.len()];
        let mut stride = 1;
        for (axis, &len) in tensor.shape.iter().enumerate().rev() {
            let along = offset + axis;
            if len == target[along] {
                strides[along] = if len == 1 { 0 } else { stride };
            } else if len != 1 {
                return Err(fail());
            }
            stride *= len;
        }
        let values = tensor.to_f64_vec();
        let warning = check_weights(&values, &tensor.shape, &tensor.origin)?;
        Ok((Broadcast { values, strides }, warning))
    }
}

pub struct Bce<'a> {
    logits: Values<'a>,
    targets: Values<'a>,
    shape: Vec<usize>,
    /// Length of the last axis: elements are walked in runs of it.
    run: usize,
    /// Where the classes sit; `None` when every element is of one class.
    classes: Option<ClassLayout>,
    weight: Option<Broadcast>,
    pos_weight: Option<Broadcast>,
    reduction: Reduction,
    /// Facts about the inputs the user should hear of.
    pub warnings: Vec<String>,
}

impl<'a> Bce<'a> {
    pub fn new(logits: &'a Tensor, targets: &'a Tensor, params: &BceParams) -> Result<Self> {
        check_float_predictions(logits)?;
        if targets.shape != logits.shape {
            return Err(Error::input(
                &targets.origin,
                format!(
                    "shape {} differs from the logits' shape {}: BCE needs one target per logit",
                    targets.shape_text(),
                    logits.shape_text()
                ),
            ));
        }
        // A 0-d logit and target are one example, as in PyTorch; they are
        // walked as the one element of a [1] array, so an inline scalar
        // weight (a one-entry list) fits them.
        let shape = if logits.shape.is_empty() { vec![1] } else { logits.shape.clone() };
        let rank = shape.len();
        let classes = match (params.class_axis, logits.shape.len()) {
            (None, 0 | 1) => None,
            (axis, _) => {
                let axis = resolve_axis(axis.unwrap_or(-1), logits.shape.len(), &logits.origin)?;
                Some(ClassLayout::new(&shape, axis, &logits.origin)?)
            }
        };
        let mut warnings = Vec::new();
        let mut broadcast = |weight: Option<&Tensor>| -> Result<Option<Broadcast>> {
            let Some(weight) = weight else { return Ok(None) };
            let (broadcast, warning) = Broadcast::new(weight, &shape)?;
            warnings.extend(warning);
            Ok(Some(broadcast))
        };
        let weight = broadcast(params.weight)?;
        let pos_weight = broadcast(params.pos_weight)?;
        Ok(Bce {
            logits: logits.values(),
            targets: targets.values(),
            run: shape[rank - 1],
            classes,
            shape,
            weight,
            pos_weight,
            reduction: params.reduction,
            warnings,
        })
    }

    /// The class axis, or `None` for a single class.
    pub fn class_axis(&self) -> Option<usize> {
        self.classes.map(|c| c.axis)
    }

    /// Where element `first` of run `run` sits in a broadcast array, and the
    /// step to the next element of the run.
    fn cursor<'b>(&self, broadcast: &'b Broadcast, run: usize, first: usize) -> (&'b [f64], usize, usize) {
        let last = self.shape.len() - 1;
        let mut rest = run;
        let mut offset = 0;
        for axis in (0..last).rev() {
            let len = self.shape[axis];
            offset += (rest % len) * broadcast.strides[axis];
            rest /= len;
        }
        let step = broadcast.strides[last];
        (&broadcast.values, offset + first * step, step)
    }
}

const BLOCK: usize = 4096;

impl PerExample for Bce<'_> {
    fn example_kind(&self) -> ExampleKind {
        ExampleKind::Element
    }

    fn example_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }

    fn units(&self) -> usize {
        self.shape.iter().product()
    }

    fn unit_cost(&self) -> usize {
        1
    }

    fn classes(&self) -> usize {
        self.classes.map_or(1, |c| c.classes)
    }

    fn grouping(&self) -> Grouping {
        Grouping::PositivesNegatives
    }

    fn eval(&self, units: Range<usize>, tally: &mut Tally) {
        crate::math::widest(
            #[inline(always)]
            || self.eval_runs(units, tally),
        )
    }

    fn reducer(&self) -> Reducer {
        Reducer::Bce(BceReducer {
            reduction: self.reduction,
            elements: self.units() as u64,
            baseline: self.weight.is_some() || self.pos_weight.is_some(),
        })
    }
}

/// How a BCE tally becomes the loss: the mean divides by every element.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BceReducer {
    reduction: Reduction,
    /// Elements of the logits.
    elements: u64,
    /// Whether the loss differs from plain BCE (weights).
    baseline: bool,
}

impl BceReducer {
    pub fn totals(&self, tally: &Tally) -> Totals {
        let sum = tally.total();
        let normalizer = self.elements as f64;
        let baseline = self.baseline.then(|| {
            let sum = tally.baseline_total();
            BaselineTotals { loss: "bce", value: self.reduction.apply(sum, normalizer), sum }
        });
        Totals { value: self.reduction.apply(sum, normalizer), sum, normalizer, baseline }
    }
    pub fn merge(&mut self, other: &BceReducer) -> Result<(), String> {
        if (self.reduction, self.baseline) != (other.reduction, other.baseline) {
            return Err(format!("their reductions differ ({self:?} and {other:?})"));
        }
        self.elements += other.elements;
        Ok(())
    }
}

impl Bce<'_> {
    #[inline(always)]
    fn eval_runs(&self, units: Range<usize>, tally: &mut Tally) {
        let last = self.shape.len() - 1;
        let mut x = [0.0; BLOCK];
        let mut t = [0.0; BLOCK];
        let mut parts = SigmoidBuffers::<BLOCK>::new();
        let mut losses = [0.0; BLOCK];
        // A block crosses the end of a run only when nothing depends on the
        // run: no broadcast weights, and a class that is the position in the
        // run (or the only class). Otherwise the broadcast offsets and the
        // class (off the last axis) stay fixed within a block.
        let across_runs = self.weight.is_none()
            && self.pos_weight.is_none()
            && self.classes.is_none_or(|layout| layout.axis == last);
        let mut start = units.start;
        while start < units.end {
            let run = start / self.run;
            let run_end = if across_runs { usize::MAX } else { (run + 1) * self.run };
            let end = units.end.min(run_end).min(start + BLOCK);
            let len = end - start;
            let first = start - run * self.run;
            self.logits.copy_to_f64(start, 1, &mut x[..len]);
            self.targets.copy_to_f64(start, 1, &mut t[..len]);
            tally.record_nonfinite(Operand::Logits, &x[..len], start, 1);
            tally.record_nonfinite(Operand::Targets, &t[..len], start, 1);
            // σ(x), σ(-x), -log σ(x), -log σ(-x) and the plain BCE, each exact.
            parts.fill(&x[..len], &t[..len]);
            let weight = self.weight.as_ref().map(|b| self.cursor(b, run, first));
            let pos_weight = self.pos_weight.as_ref().map(|b| self.cursor(b, run, first));
            // The class is the position in the run when the classes sit on
            // the last axis, and fixed for the whole run otherwise.
            let (run_class, along_run) = match self.classes {
                None => (0, false),
                Some(layout) => ((start / layout.inner) % layout.classes, layout.axis == last),
            };
            // Unweighted, the loss is the plain BCE itself.
            let weighted = pos_weight.is_some() || weight.is_some();
            if weighted {
                for k in 0..len {
                    let t = t[k];
                    let mut loss = match pos_weight {
                        Some((values, base, step)) => {
                            values[base + k * step] * (t * parts.minus_log_p[k])
                                + (1.0 - t) * parts.minus_log_q[k]
                        }
                        None => parts.bce[k],
                    };
                    if let Some((values, base, step)) = weight {
                        loss *= values[base + k * step];
                    }
                    losses[k] = loss;
                }
            }
            let elements = Elements {
                first_class: if along_run { first } else { run_class },
                one_class: !along_run,
                first_index: start,
                x: &x[..len],
                t: &t[..len],
                p: &parts.p[..len],
                loss: if weighted { &losses[..len] } else { &parts.bce[..len] },
                baseline: &parts.bce[..len],
            };
            tally.add_elements(&elements);
            start = end;
        }
    }
}
