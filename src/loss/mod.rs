//! The losses, each a plug-in in a module of its own (a file, or a folder
//! for the larger ones). A loss module owns its command-line arguments, their
//! checks, the arrays it reads, its report parameters, its per-example pass
//! and any report sections of its own; [`Loss`] is what the driver sees of
//! it, and `registry!` lists the losses, one line each.
//!
//! A pass is built from loaded tensors and checked parameters, evaluates any
//! range of its examples into a [`Tally`], and reduces the merged tally to
//! the reference's figures ([`PerExample`]).

mod bce;
mod cross_entropy;
mod focal;
pub mod ssd;

use std::collections::BTreeMap;
use std::ops::Range;

use serde_json::Value;

pub use bce::{Bce, BceArgs, BceParams};
pub use cross_entropy::{CeArgs, CeDivisor, CePreset, CrossEntropy, CrossEntropyParams};
pub use focal::{Alpha, Focal, FocalArgs, FocalKind, FocalParams, FocalPreset, Normalize};
pub use ssd::SsdArgs;

use crate::error::{Error, Origin, Result, index_in};
use crate::input::{DType, NotAnIndex, Sources, Tensor, Values, size_text};
use crate::math::{Float, ROWS_PER_CALL, Row, RowSoftmax, SHORT_ROW};
use crate::report::{InputInfo, LossSections, Presentation, Totals};
use crate::settings::ReportArgs;
use crate::tally::findings::ExampleKind;
use crate::tally::{Grouping, Operand, Tally};

/// A loss as the driver sees it: its arguments (the type implementing this),
/// the arrays they name, and the pass and report parts they give.
pub trait Loss: Sized + Sync {
    /// The subcommand, and the report's `loss` field.
    const NAME: &'static str;
    /// How a person reads its report.
    const PRESENTATION: Presentation;
    /// The arrays it reads; the pass borrows them.
    type Inputs: Sync;

    /// The report flags every loss shares, and the positional bundle.
    fn shared(&self) -> (&ReportArgs, Option<&str>);
    /// Checks the loss's own flags, before any file is read.
    fn check(&self) -> Result<()> {
        Ok(())
    }
    /// Reads its arrays.
    fn read(&self, sources: &Sources) -> Result<Self::Inputs>;
    /// Checks the arrays against the flags and each other, and builds the pass.
    fn prepare<'a>(&'a self, inputs: &'a Self::Inputs) -> Result<Prepared<'a>>;
}

/// A loss ready to run: its pass and everything its report needs besides
/// the tally.
pub struct Prepared<'a> {
    pub pass: Box<dyn PerExample + 'a>,
    /// Every parameter as resolved, defaults included.
    pub parameters: BTreeMap<String, Value>,
    /// The arrays read, in the order the loss takes them.
    pub inputs: Vec<InputInfo>,
    /// The arrays the pass reports non-finite values of, as its operands
    /// [`Operand::Logits`] and [`Operand::Targets`].
    pub operands: [&'a Tensor; 2],
    /// Facts about the inputs and the reference the user should hear of.
    pub warnings: Vec<String>,
    /// Whether the class rows carry positives and their loss.
    pub positives_per_class: bool,
}

/// Something that runs a loss, whichever it is.
pub trait Driver {
    type Output;
    fn run<L: Loss>(self, args: L) -> Self::Output;
}

/// The registry: one line per loss, its subcommand and its argument type.
/// Generates the [`LossCommand`] subcommands and their dispatch.
macro_rules! registry {
    ($($variant:ident($args:ty)),* $(,)?) => {
        /// The loss subcommands.
        #[derive(Debug, clap::Subcommand)]
        pub enum LossCommand {
            $($variant($args)),*
        }

        impl LossCommand {
            /// Hands the chosen loss's arguments to `driver`.
            pub fn dispatch<D: Driver>(self, driver: D) -> D::Output {
                match self {
                    $(LossCommand::$variant(args) => driver.run(args)),*
                }
            }
        }

        /// The subcommand named `name` and how its report reads, if it is a loss.
        pub fn presentation(name: &str) -> Option<(&'static str, Presentation)> {
            [$((<$args as Loss>::NAME, <$args as Loss>::PRESENTATION)),*].into_iter().find(|(n, _)| *n == name)
        }
    };
}

registry! {
    Ce(CeArgs),
    Bce(BceArgs),
    Focal(FocalArgs),
    Ssd(SsdArgs),
}

/// How a loss turns its merged tally into its value, sum and divisor: the
/// rule, with the sizes of the inputs the rule counts. Stored in partial
/// reports; merging two adds their sizes, the rules being the same.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Reducer {
    Ce(cross_entropy::CeReducer),
    Bce(bce::BceReducer),
    Focal(focal::FocalReducer),
    /// SSD's figures, worked out from its per-image results beside the tally.
    Ssd(Box<ssd::SsdState>),
}

impl Reducer {
    /// The reference's figures, from the merged tally.
    pub fn totals(&self, tally: &Tally) -> Totals {
        match self {
            Reducer::Ce(rule) => rule.totals(tally),
            Reducer::Bce(rule) => rule.totals(tally),
            Reducer::Focal(rule) => rule.totals(tally),
            Reducer::Ssd(state) => state.totals(),
        }
    }

    /// Takes in the sizes of `other`, which covers other examples of the
    /// same loss; an error says what differs.
    pub fn merge(&mut self, other: &Reducer) -> std::result::Result<(), String> {
        match (self, other) {
            (Reducer::Ce(mine), Reducer::Ce(theirs)) if mine == theirs => Ok(()),
            (Reducer::Bce(mine), Reducer::Bce(theirs)) => mine.merge(theirs),
            (Reducer::Focal(mine), Reducer::Focal(theirs)) => mine.merge(theirs),
            (Reducer::Ssd(mine), Reducer::Ssd(theirs)) => mine.merge(theirs),
            (mine, theirs) => Err(format!("their reductions differ ({mine:?} and {theirs:?})")),
        }
    }

    /// The loss's own report sections, when it has any.
    pub fn sections(&self) -> Option<Box<dyn LossSections>> {
        match self {
            Reducer::Ssd(state) => Some(Box::new(ssd::SsdSections::new(state))),
            _ => None,
        }
    }

    /// What the loss's own figures tell the user.
    pub fn warnings(&self) -> Vec<String> {
        match self {
            Reducer::Ssd(state) => state.warnings(),
            _ => Vec::new(),
        }
    }

    /// Checks a rule read back from a file against the examples and classes
    /// of its tally.
    pub fn check(&self, examples: u64, classes: usize) -> std::result::Result<(), String> {
        match self {
            Reducer::Ssd(state) => state.check(examples, classes),
            _ => Ok(()),
        }
    }

    /// Moves what the rule holds per example to the places `new_index`
    /// gives, as when shards are put in a new order.
    pub fn renumber(&mut self, new_index: impl Fn(u64) -> u64) {
        if let Reducer::Ssd(state) = self {
            state.renumber(new_index);
        }
    }
}

/// A weight as the report records it: its values when they are few (an
/// inline list, one per class), else where it came from; inputs[] has both.
pub fn recorded(weight: Option<&Tensor>) -> Value {
    match weight {
        Some(w) if w.numel() <= 1024 => serde_json::json!(w.to_f64_vec()),
        Some(w) => serde_json::json!(w.origin.spec),
        None => Value::Null,
    }
}

/// The report's description of each array given.
pub fn describe<'a>(tensors: impl IntoIterator<Item = &'a Tensor>) -> Vec<InputInfo> {
    tensors.into_iter().map(InputInfo::of).collect()
}

/// How the per-example losses are reduced to `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
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

/// A loss's per-example pass, as the tally driver sees it.
pub trait PerExample: Send + Sync {
    /// Units the pass is cut into (rows of the class axis).
    fn units(&self) -> usize;
    /// Input elements per unit, to size the chunks.
    fn unit_cost(&self) -> usize;
    fn classes(&self) -> usize;
    fn grouping(&self) -> Grouping;
    /// Evaluates `units` into `tally`.
    fn eval(&self, units: Range<usize>, tally: &mut Tally);
    /// How the merged tally becomes the reference's figures.
    fn reducer(&self) -> Reducer;
    /// What its examples are: rows over the classes, or elements.
    fn example_kind(&self) -> ExampleKind;
    /// The shape of the example axes: what `reduction='none'` returns.
    fn example_shape(&self) -> Vec<usize>;
    /// The rows of a softmax loss with class-index targets, which confident
    /// learning reads again in a second pass.
    fn softmax_rows(&self) -> Option<&dyn SoftmaxRows> {
        None
    }
    /// Writes the per-example output itself, when its layout is not one
    /// loss per example (SSD's `.npz` of conf, loc and selected); `None`
    /// leaves it to the tally, one loss per example in `example_shape`.
    fn write_per_example(&self, _path: &std::path::Path) -> Option<Result<()>> {
        None
    }
    /// Whether [`PerExample::write_per_example`] writes the output.
    fn writes_own_per_example(&self) -> bool {
        false
    }
}

/// The rows of a softmax loss whose targets are class indices.
pub trait SoftmaxRows: Sync {
    /// Rows of the loss.
    fn rows(&self) -> usize;
    /// The row's label, or `None` when the row is not counted (ignored).
    fn label(&self, row: usize) -> Option<usize>;
    /// The row's terms `exp(x - max)`, one per class, into `out` (`scratch`
    /// is as long as a row; `out` at least as long), and their sum: its
    /// softmax probabilities are the terms divided by the sum.
    fn exps(&self, row: usize, scratch: &mut [f64], out: &mut [f64]) -> f64;
}

/// The softmax terms of example `i`'s logits into `out` (`row` is scratch
/// of the row's length): `exp(x - max)`, and their sum `Σ exp(x - max)`,
/// whose quotient is the softmax as PyTorch computes it.
pub fn exp_row(logits: &Values, layout: &ClassLayout, i: usize, row: &mut [f64], out: &mut [f64]) -> f64 {
    match row_in_place(logits, layout, i) {
        Some(values) => crate::math::exp_into(values, crate::math::max_and_finite(values).0, out),
        None => {
            let (max, _) = copy_row(logits, layout, i, row);
            crate::math::exp_into(&*row, max, out)
        }
    }
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
    /// The layout of `shape` (an array of `origin`) with its classes on
    /// `axis`, refused when the class axis is longer than a pass can tally.
    pub fn new(shape: &[usize], axis: usize, origin: &Origin) -> Result<Self> {
        crate::tally::check_classes(shape[axis]).map_err(|message| {
            Error::input(
                origin,
                format!(
                    "class axis {axis}: {message} (if the classes are on another axis, pass --class-axis)"
                ),
            )
        })?;
        Ok(ClassLayout {
            outer: shape[..axis].iter().product(),
            classes: shape[axis],
            inner: shape[axis + 1..].iter().product(),
            axis,
        })
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

/// Checks that predictions (logits, SSD's loc and conf) are floating point.
/// Integer predictions are a mistake that would still give a number: most
/// often bfloat16 saved through an integer view, since NumPy has no
/// bfloat16, whose bits then read as large integers.
pub fn check_float_predictions(predictions: &Tensor) -> Result<()> {
    let dtype = predictions.dtype;
    if dtype.is_float() {
        return Ok(());
    }
    let hint = match dtype {
        DType::I16 | DType::U16 => format!(
            "if these are bfloat16 bits saved as {}, save them with .float() before .numpy()",
            dtype.name()
        ),
        DType::I64 | DType::U64 => "save them as float32 or float64; in JSON, write at least one number \
                                    with a decimal point (2.0), or all are read as integers"
            .into(),
        _ => "save the model's outputs as float32 or float64 (.float() before .numpy())".into(),
    };
    let role = &predictions.origin.role;
    Err(Error::input(
        &predictions.origin,
        format!("{role} are {}: {role} must be floating point ({hint})", dtype.name()),
    ))
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

/// Example `i`'s logits where the kernels can read them in place: float32
/// with the classes on the last axis, straight from the mapped file.
#[inline(always)]
fn row_in_place<'a>(logits: &Values<'a>, layout: &ClassLayout, i: usize) -> Option<&'a [f32]> {
    match (logits, layout.row(i)) {
        (Values::F32(values), (start, 1)) => Some(&values[start..][..layout.classes]),
        _ => None,
    }
}

/// Copies example `i`'s logits into `row` as float64; returns the row's
/// maximum and whether every value is finite. A bfloat16 row with the
/// classes on the last axis is widened and scanned in one pass (read in
/// place instead, it would be widened again at every read of the kernels).
#[inline]
fn copy_row(logits: &Values, layout: &ClassLayout, i: usize, row: &mut [f64]) -> (f64, bool) {
    let (start, stride) = layout.row(i);
    if let (Values::BF16(values), 1) = (logits, stride) {
        return crate::math::widen_max_and_finite(&values[start..][..layout.classes], row);
    }
    logits.copy_to_f64(start, stride, row);
    crate::math::max_and_finite(&*row)
}

/// What a softmax loss does with one example's row of logits, read in
/// place or copied (see [`each_row`]).
pub trait RowPass {
    /// Adds example `i`, whose logits are `row`, reduced to `softmax`.
    fn add_row<R: Row>(&mut self, i: usize, row: R, softmax: &RowSoftmax, tally: &mut Tally);
}

/// Hands each example of `units` to `pass` with its logits and their
/// softmax sums, non-finite values recorded first. Rows of up to
/// [`SHORT_ROW`] classes on the last axis of float32, float64 or bfloat16
/// logits are read in place, straight from the mapped file, and reduced
/// many at a time; longer ones are taken one at a time, float32 read in
/// place and others copied to float64.
pub fn each_row(
    logits: &Values,
    layout: &ClassLayout,
    units: Range<usize>,
    tally: &mut Tally,
    pass: &mut impl RowPass,
) {
    if layout.inner == 1 && layout.classes <= SHORT_ROW {
        match logits {
            Values::F32(values) => return short_rows(values, layout, units, tally, pass),
            Values::F64(values) => return short_rows(values, layout, units, tally, pass),
            Values::BF16(values) => return short_rows(values, layout, units, tally, pass),
            _ => {}
        }
    }
    let mut row = vec![0.0; layout.classes];
    let mut terms = vec![0.0; crate::math::padded_len(layout.classes)];
    for i in units {
        let in_place = row_in_place(logits, layout, i);
        let (max, finite) = match in_place {
            Some(values) => crate::math::max_and_finite(values),
            None => copy_row(logits, layout, i, &mut row),
        };
        if !finite {
            // Rare: the values are copied to find and count the non-finite ones.
            if in_place.is_some() {
                copy_row(logits, layout, i, &mut row);
            }
            let (start, stride) = layout.row(i);
            tally.record_nonfinite(Operand::Logits, &row, start, stride);
        }
        match in_place {
            Some(values) => pass.add_row(i, values, &reduce(values, max, finite, &mut terms), tally),
            None => pass.add_row(i, &row[..], &reduce(&row[..], max, finite, &mut terms), tally),
        }
    }
}

/// A row with maximum `max` reduced alone: ln Σ exp(x - max), exact also
/// when one class dominates (`terms` is scratch); the argmax is left to
/// the pass, which often knows it without a search ([`prediction`]).
#[inline(always)]
fn reduce<R: Row>(row: R, max: f64, finite: bool, terms: &mut [f64]) -> RowSoftmax {
    let (ln_sum, exp_sum) = crate::math::ln_sum_exp_into(row, max, terms);
    RowSoftmax { max, exp_sum, ln_sum, argmax: None, finite }
}

/// [`each_row`] for short rows on the last axis, read in place and
/// reduced [`ROWS_PER_CALL`] at a time, each to the bits it has alone.
fn short_rows<T: Float>(
    values: &[T],
    layout: &ClassLayout,
    units: Range<usize>,
    tally: &mut Tally,
    pass: &mut impl RowPass,
) {
    let classes = layout.classes;
    let mut terms = vec![0.0; crate::math::padded_len(classes)];
    let mut summaries = vec![RowSoftmax::default(); ROWS_PER_CALL];
    let mut copy = vec![0.0; classes];
    for first in units.clone().step_by(ROWS_PER_CALL) {
        let rows = ROWS_PER_CALL.min(units.end - first);
        let block = &values[first * classes..(first + rows) * classes];
        crate::math::softmax_rows(block, classes, &mut terms, &mut summaries[..rows]);
        for ((i, row), softmax) in (first..).zip(block.chunks_exact(classes)).zip(&summaries) {
            if !softmax.finite {
                // Rare: the values are copied to find and count the non-finite ones.
                for (c, v) in copy.iter_mut().zip(row) {
                    *c = v.widen();
                }
                tally.record_nonfinite(Operand::Logits, &copy, i * classes, 1);
            }
            pass.add_row(i, row, softmax, tally);
        }
    }
}

/// The first index of the largest entry of `values` (NaN never wins).
pub fn first_max(values: &[f64]) -> usize {
    let mut best = 0;
    for (k, &v) in values.iter().enumerate().skip(1) {
        if v > values[best] {
            best = k;
        }
    }
    best
}

/// The prediction of a row whose maximum is `max`: its first maximum, as
/// torch.argmax picks it (0 when no entry equals it, as with NaN).
#[inline(always)]
pub fn argmax<R: Row>(row: R, max: f64) -> usize {
    crate::math::first_equal(row, max).unwrap_or(0)
}

/// The prediction of a row reduced to `softmax`, when `label` is the likely
/// answer: the argmax if it was found, else `label` itself when it holds
/// the maximum and the terms `exp(x - max)` sum below 2 (each entry at the
/// maximum adds exactly 1, so the maximum is the row's only one), else a
/// search.
#[inline(always)]
pub fn prediction<R: Row>(row: R, softmax: &RowSoftmax, label: usize) -> usize {
    match softmax.argmax {
        Some(argmax) => argmax,
        None if softmax.exp_sum < 2.0 && row.at(label) == softmax.max => label,
        None => argmax(row, softmax.max),
    }
}

/// Labels that are allowed in class-index targets without being classes,
/// and what each means: ignored (left out, or counted with loss 0, as the
/// loss decides) or background (a row of negatives, for sigmoid losses).
/// The ignore rule is checked first, then background, then the classes, so
/// an ignore index may be a valid class (as in PyTorch).
#[derive(Debug, Clone, Copy, Default)]
pub struct NotClasses<'a> {
    /// The ignore index, or nothing.
    pub ignore: Option<i64>,
    /// Every negative label is ignored (mmcv's softmax focal kernel).
    pub ignore_negative: bool,
    /// The labels that mean background.
    pub background: &'a [i64],
    /// Every label outside [0, C) that is not ignored is background (mmcv's
    /// sigmoid focal kernel).
    pub background_outside: bool,
}

impl NotClasses<'_> {
    /// Ignored labels: the ignore index alone.
    pub fn ignoring(ignore: i64) -> NotClasses<'static> {
        NotClasses { ignore: Some(ignore), ..NotClasses::default() }
    }

    /// Whether no class in [0, `classes`) means anything but itself: no
    /// ignore index or background label among them.
    fn classes_mean_themselves(&self, classes: usize) -> bool {
        let is_class = |label: &i64| (0..classes as i64).contains(label);
        !self.ignore.as_ref().is_some_and(is_class) && !self.background.iter().any(is_class)
    }

    fn meaning(&self, label: i64, classes: usize) -> Option<u32> {
        if self.ignore == Some(label) || (self.ignore_negative && label < 0) {
            Some(Labels::IGNORED)
        } else if self.background.contains(&label)
            || (self.background_outside && !(0..classes as i64).contains(&label))
        {
            Some(Labels::BACKGROUND)
        } else {
            None
        }
    }

    /// What a label that is none of these is told, after "is neither one of
    /// the C classes nor".
    fn listed(&self) -> Vec<String> {
        let mut listed = Vec::new();
        if let Some(ignore) = self.ignore {
            listed.push(format!("the ignore index ({ignore})"));
        }
        if !self.background.is_empty() {
            let labels: Vec<String> = self.background.iter().map(i64::to_string).collect();
            listed.push(format!("background ({})", labels.join(" or ")));
        }
        listed
    }
}

/// Class-index targets, checked and copied: one `u32` per example, the
/// class, `Labels::IGNORED` or `Labels::BACKGROUND`. The pass reads this
/// copy, never the file again, so a target file rewritten during the run
/// cannot hand it a label that was not checked.
pub struct Labels(Vec<u32>);

impl Labels {
    /// A label the loss leaves out (the ignore index).
    const IGNORED: u32 = u32::MAX - 1;
    /// A label that means no class (a sigmoid row of negatives).
    const BACKGROUND: u32 = u32::MAX;

    /// Example `i`'s class; `None` for an ignored or background label.
    #[inline(always)]
    pub fn class(&self, i: usize) -> Option<usize> {
        let label = self.0[i];
        (label < Self::IGNORED).then_some(label as usize)
    }

    /// Whether example `i`'s label is ignored.
    #[inline(always)]
    pub fn ignored(&self, i: usize) -> bool {
        self.0[i] == Self::IGNORED
    }

    /// The first example whose label is background, if any.
    pub fn first_background(&self) -> Option<usize> {
        self.0.iter().position(|&label| label == Self::BACKGROUND)
    }
}

/// Checks that every target is an integer class in [0, classes) or a label
/// `allowed` names, and copies them; the first that is neither is reported
/// with its index.
pub fn class_labels(targets: &Tensor, classes: usize, allowed: &NotClasses) -> Result<Labels> {
    // Classes were checked against MAX_CLASSES, far below the sentinels.
    debug_assert!(classes < Labels::IGNORED as usize);
    let values = targets.values();
    let count = targets.numel();
    let mut labels = Vec::new();
    labels.try_reserve_exact(count).map_err(|_| {
        Error::input(
            &targets.origin,
            format!("cannot allocate {} for the labels", size_text(4 * count as u64)),
        )
    })?;
    let listed = allowed.listed();
    // Label i, the whole way: its meaning, then the classes, else the error.
    let one = |i: usize| -> Result<u32> {
        let index = values.index_at(i);
        if let Some(meaning) = index.as_ref().ok().and_then(|&label| allowed.meaning(label, classes)) {
            return Ok(meaning);
        }
        let problem = match index {
            Ok(label) if (0..classes as i64).contains(&label) => return Ok(label as u32),
            Err(NotAnIndex::TooLarge) if !targets.dtype.is_float() => {
                format!("is out of range for {classes} classes")
            }
            Err(why) => why.describe(Some(classes)),
            Ok(_) if listed.is_empty() => format!("is out of range for {classes} classes"),
            Ok(_) => format!("is neither one of the {classes} classes nor {}", listed.join(" nor ")),
        };
        Err(Error::input(
            &targets.origin,
            format!("label {} at index {} {problem}", values.display(i), index_in(&targets.shape, i)),
        ))
    };
    // Integer labels that are classes (when no class means anything else)
    // are copied a run at a time once a branch-free count finds none other
    // in the run; the rest go the whole way. A signed label is compared as
    // its two's-complement bits, so a negative one is never below `classes`.
    macro_rules! integers {
        ($slice:expr) => {{
            const RUN: usize = 4096;
            let is_class = |value: u64| value < classes as u64;
            for (r, run) in $slice.chunks(RUN).enumerate() {
                let others = run.iter().fold(0u32, |n, &v| n + !is_class(v as u64) as u32);
                if others == 0 {
                    labels.extend(run.iter().map(|&v| v as u32));
                    continue;
                }
                for (k, &v) in run.iter().enumerate() {
                    labels.push(if is_class(v as u64) { v as u32 } else { one(r * RUN + k)? });
                }
            }
        }};
    }
    let plain = allowed.classes_mean_themselves(classes);
    match values {
        Values::I8(s) if plain => integers!(s),
        Values::I16(s) if plain => integers!(s),
        Values::I32(s) if plain => integers!(s),
        Values::I64(s) if plain => integers!(s),
        Values::U8(s) if plain => integers!(s),
        Values::U16(s) if plain => integers!(s),
        Values::U32(s) if plain => integers!(s),
        Values::U64(s) if plain => integers!(s),
        _ => {
            for i in 0..count {
                labels.push(one(i)?);
            }
        }
    }
    Ok(Labels(labels))
}

/// Checks that a per-class vector fits `classes` and holds no non-finite
/// entry; a negative entry is computed with, and the returned warning says so.
pub fn check_class_weights(weight: &[f64], classes: usize, origin: &Origin) -> Result<Option<String>> {
    if weight.len() != classes {
        return Err(Error::input(
            origin,
            format!("has {} entries but the logits have {classes} classes", weight.len()),
        ));
    }
    check_weights(weight, &[classes], origin)
}

/// Checks that weights of `shape` are finite. PyTorch (and kornia, mmcv,
/// mmdet) multiply by a negative weight without complaint, and so does
/// losscope; the warning returned names the first negative entry.
pub fn check_weights(weight: &[f64], shape: &[usize], origin: &Origin) -> Result<Option<String>> {
    let at = |i: usize| index_in(shape, i);
    if let Some(i) = weight.iter().position(|w| !w.is_finite()) {
        return Err(Error::input(origin, format!("entry {} is {}, not a finite number", at(i), weight[i])));
    }
    let negatives = weight.iter().filter(|&&w| w < 0.0).count();
    Ok(weight.iter().position(|&w| w < 0.0).map(|i| {
        format!(
            "{origin} has {negatives} negative {}, the first {} at {}: used as PyTorch uses it, so losses (and a divisor that sums weights) can be negative",
            if negatives == 1 { "entry" } else { "entries" },
            weight[i],
            at(i)
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prediction_is_the_first_maximum_also_when_it_is_tied() {
        let tied = [0.5, 3.0, 1.0, 3.0, -2.0, 0.0, 1.0, 2.5, 3.0];
        let single = [0.5, -3.0, 1.0, 3.0, -2.0, 0.0, 1.0, 2.5, 1.0];
        for (row, first) in [(tied, 1), (single, 3)] {
            let (max, finite) = crate::math::max_and_finite(&row[..]);
            let exp_sum = crate::math::sum_exp(&row[..], max);
            let softmax = RowSoftmax { max, exp_sum, ln_sum: exp_sum.ln(), argmax: None, finite };
            for label in 0..row.len() {
                assert_eq!(prediction(&row[..], &softmax, label), first, "label {label} of {row:?}");
            }
        }
    }

    #[test]
    fn integer_labels_mean_what_float_labels_of_the_same_values_mean() {
        // Float labels go the whole way for every label; integer labels that
        // are classes take the short way unless a class means something else.
        use crate::input::Column;
        let values: [i64; 8] = [0, 4, -100, 3, 2, -1, 1, 4];
        let tensor =
            |column| Tensor::from_column(Origin::new("targets", "t"), vec![values.len()], column).unwrap();
        let floats = tensor(Column::F64(values.iter().map(|&v| v as f64).collect()));
        let integers = [
            tensor(Column::I8(values.iter().map(|&v| v as i8).collect())),
            tensor(Column::I16(values.iter().map(|&v| v as i16).collect())),
            tensor(Column::I32(values.iter().map(|&v| v as i32).collect())),
            tensor(Column::I64(values.to_vec())),
        ];
        let background = [4, -1];
        let allowed = [
            NotClasses { ignore: Some(-100), ignore_negative: true, ..NotClasses::default() },
            NotClasses { ignore: Some(3), ignore_negative: true, ..NotClasses::default() },
            NotClasses {
                ignore: Some(-100),
                background: &background,
                background_outside: true,
                ..NotClasses::default()
            },
            NotClasses { ignore_negative: true, background: &background, ..NotClasses::default() },
        ];
        for allowed in &allowed {
            let expected = class_labels(&floats, 5, allowed).unwrap().0;
            assert!(expected.iter().any(|&l| l >= Labels::IGNORED));
            for integers in &integers {
                assert_eq!(
                    class_labels(integers, 5, allowed).unwrap().0,
                    expected,
                    "{allowed:?}, {:?}",
                    integers.dtype
                );
            }
        }
        // An error names the same label either way.
        let strict = NotClasses::ignoring(-100);
        let error = |t: &Tensor| class_labels(t, 5, &strict).err().unwrap().to_string();
        assert_eq!(error(&integers[3]), error(&floats).replace("-1.0", "-1"));
        let unsigned = tensor(Column::U64(vec![0, 1, u64::MAX, 2, 3, 4, 0, 1]));
        assert!(error(&unsigned).contains("at index [2]"));
    }
}
