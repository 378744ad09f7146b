//! The parts of a report about particular examples: the hardest ones,
//! where the wrong probability goes, calibration, and suspected label
//! errors. Every loss has them; each is left out where it does not apply
//! (confusion pairs and label issues are for softmax losses).

use serde::Serialize;

use crate::error::unravel;
use crate::format::{Cell, Chart, Plot, Section, Series, Unit, num, percent};
use crate::tally::Accumulate;
pub use crate::tally::findings::ExampleKind;
use crate::tally::findings::{Calibration as CalibrationTally, Confusion as ConfusionTally, Noted};

use super::{number, ratio};

/// A class index, or a value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    /// A class index (losses over rows of classes).
    Class(u64),
    /// A value (elementwise losses: the target, or σ(x)).
    Value(Option<f64>),
}

/// `examples`: the hardest examples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Examples {
    /// The K examples with the largest loss, largest first; ties by the lower flat index.
    pub hardest: Vec<HardExample>,
}

/// One of the hardest examples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HardExample {
    /// Its position over the example axes: `[row]`, `[b, h, w]`, `[row, class]`.
    pub index: Vec<usize>,
    /// Its row-major index over those axes (its place in `--per-example` output).
    pub flat_index: u64,
    /// The target class, or (elementwise) the target value.
    pub target: Outcome,
    /// The argmax class, or (elementwise) σ(x).
    pub predicted: Outcome,
    /// The probability of the true outcome.
    pub p_t: Option<f64>,
    /// Its loss, every weight applied.
    pub loss: Option<f64>,
    /// `loss / sum`.
    pub loss_share: Option<f64>,
    /// The class's name, when names were given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The shard holding it, in the order shards are concatenated, when the
    /// run read several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<usize>,
    /// That shard's first input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// One input file set of a run over several: where its examples start in
/// the concatenation.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardSpan {
    /// Its first input, as the report names it.
    pub source: String,
    /// The flat index of its first example in the concatenation.
    pub first: u64,
}

/// `confusion`: where the wrong probability goes (softmax losses).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Confusion {
    /// Every (target, predicted) pair with target ≠ predicted that occurs,
    /// the largest loss first; ties by (target, predicted).
    pub pairs: Vec<ConfusionPair>,
}

/// Examples of one target class predicted as another.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfusionPair {
    /// The target class.
    pub target: u32,
    /// The argmax class.
    pub predicted: u32,
    /// Examples.
    pub count: u64,
    /// Their loss.
    pub loss_sum: Option<f64>,
    /// `loss_sum / sum`.
    pub loss_share: Option<f64>,
}

/// `calibration`: confidence against accuracy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    /// Expected calibration error: Σ |accuracy − confidence| · count / total.
    pub ece: Option<f64>,
    /// Maximum calibration error over the bins.
    pub mce: Option<f64>,
    /// Equal-width bins `[lower, upper)` over the confidence, and a last bin
    /// for a confidence of exactly 1.
    pub bins: Vec<CalibrationBin>,
}

/// One calibration bin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationBin {
    /// The lowest confidence in the bin.
    pub lower: f64,
    /// The bin holds confidences below this.
    pub upper: f64,
    /// Examples in the bin.
    pub count: u64,
    /// Their mean confidence (softmax: the largest probability; sigmoid: σ(x)).
    pub confidence: Option<f64>,
    /// Their accuracy (softmax: argmax = target; sigmoid: the mean target).
    pub accuracy: Option<f64>,
}

/// `label_issues`: examples whose label looks wrong (softmax losses).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelIssues {
    /// Always `confident_learning`.
    pub method: &'static str,
    /// How many examples are suspected.
    pub count: u64,
    /// The first of them, least self-confident first.
    pub entries: Vec<LabelIssue>,
}

/// One suspected label error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Suspect {
    /// Row-major index over the example axes.
    pub flat_index: u64,
    /// The given label.
    pub given: u32,
    /// The argmax class.
    pub suggested: u32,
    /// The probability of the given label.
    pub self_confidence: f64,
}

/// A suspect as the report lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelIssue {
    /// Its position over the example axes.
    pub index: Vec<usize>,
    /// Its row-major index over those axes.
    pub flat_index: u64,
    /// The given label.
    pub given: u32,
    /// The argmax class.
    pub suggested: u32,
    /// The probability of the given label.
    pub self_confidence: Option<f64>,
}

/// The hardest examples as the report lists them.
pub fn examples(
    hardest: &[Noted],
    kind: ExampleKind,
    shape: &[usize],
    sum: f64,
    names: Option<&[String]>,
    shards: &[ShardSpan],
) -> Examples {
    // With one shard, the positions say all.
    let shard_of = |index: u64| {
        (shards.len() > 1).then(|| shards.partition_point(|s| s.first <= index).saturating_sub(1))
    };
    let hardest = hardest
        .iter()
        .map(|n| {
            let (target, predicted) = match kind {
                ExampleKind::Row => (Outcome::Class(n.target as u64), Outcome::Class(n.predicted as u64)),
                ExampleKind::Element => {
                    (Outcome::Value(number(n.target)), Outcome::Value(number(n.confidence)))
                }
            };
            HardExample {
                index: unravel(shape, n.index as usize),
                flat_index: n.index,
                target,
                predicted,
                p_t: number(n.p_t),
                loss: number(n.loss),
                loss_share: ratio(n.loss, sum),
                name: names.and_then(|names| names.get(n.class as usize).cloned()),
                shard: shard_of(n.index),
                source: shard_of(n.index).map(|s| shards[s].source.clone()),
            }
        })
        .collect();
    Examples { hardest }
}

pub fn confusion(tally: &ConfusionTally, sum: f64) -> Confusion {
    let pairs = tally
        .sorted()
        .into_iter()
        .map(|(target, predicted, count, loss)| ConfusionPair {
            target,
            predicted,
            count,
            loss_sum: number(loss),
            loss_share: ratio(loss, sum),
        })
        .collect();
    Confusion { pairs }
}

pub fn calibration(tally: &CalibrationTally) -> Calibration {
    let (ece, mce) = tally.errors();
    let edges = tally.edges();
    let bins = tally
        .buckets
        .iter()
        .enumerate()
        .map(|(i, b)| CalibrationBin {
            lower: edges[i],
            upper: edges.get(i + 1).copied().unwrap_or(1.0),
            count: b.count,
            confidence: ratio(b.confidence.value(), b.count as f64),
            accuracy: ratio(b.accuracy.value(), b.count as f64),
        })
        .collect();
    Calibration { ece: number(ece), mce: number(mce), bins }
}

pub fn label_issues(suspects: &[Suspect], shown: usize, shape: &[usize]) -> LabelIssues {
    LabelIssues {
        method: "confident_learning",
        count: suspects.len() as u64,
        entries: suspects
            .iter()
            .take(shown)
            .map(|s| LabelIssue {
                index: unravel(shape, s.flat_index as usize),
                flat_index: s.flat_index,
                given: s.given,
                suggested: s.suggested,
                self_confidence: number(s.self_confidence),
            })
            .collect(),
    }
}

fn outcome(o: &Outcome) -> Cell {
    match o {
        Outcome::Class(c) => c.to_string().into(),
        Outcome::Value(v) => Cell::Number(*v),
    }
}

fn position_text(index: &[usize]) -> String {
    let parts: Vec<String> = index.iter().map(usize::to_string).collect();
    format!("[{}]", parts.join(", "))
}

pub fn examples_table(e: &Examples) -> Section {
    let sharded = e.hardest.iter().any(|h| h.source.is_some());
    let rows = e
        .hardest
        .iter()
        .map(|h| {
            let position = position_text(&h.index);
            vec![
                match &h.source {
                    Some(source) => format!("{position} ({source})"),
                    None => position,
                }
                .into(),
                outcome(&h.target),
                outcome(&h.predicted),
                h.name.clone().unwrap_or_default().into(),
                Cell::Number(h.p_t),
                Cell::Number(h.loss),
                percent(h.loss_share).into(),
            ]
        })
        .collect();
    Section {
        title: "Hardest examples".into(),
        header: vec![
            if sharded { "index (shard)" } else { "index" },
            "target",
            "predicted",
            "name",
            "p_t",
            "loss",
            "share",
        ],
        rows,
        note: None,
    }
}

/// Pairs the table shows; the JSON has all of them.
const PAIRS_SHOWN: usize = 10;

fn class_name(class: u32, names: Option<&[String]>) -> String {
    match names.and_then(|n| n.get(class as usize)) {
        Some(name) => format!("{class} {name}"),
        None => class.to_string(),
    }
}

pub fn confusion_table(c: &Confusion, names: Option<&[String]>) -> Section {
    let rows = c
        .pairs
        .iter()
        .take(PAIRS_SHOWN)
        .map(|p| {
            vec![
                format!("{} → {}", class_name(p.target, names), class_name(p.predicted, names)).into(),
                p.count.to_string().into(),
                Cell::Number(p.loss_sum),
                percent(p.loss_share).into(),
            ]
        })
        .collect();
    let hidden = c.pairs.len().saturating_sub(PAIRS_SHOWN);
    Section {
        title: "Where the wrong probability goes (target → predicted)".into(),
        header: vec!["pair", "count", "loss sum", "share"],
        rows,
        note: (hidden > 0).then(|| format!("{hidden} more pairs in the JSON report")),
    }
}

pub fn calibration_table(c: &Calibration) -> Section {
    let rows = c
        .bins
        .iter()
        .filter(|b| b.count > 0)
        .map(|b| {
            vec![
                format!("{:.2}–{:.2}", b.lower, b.upper).into(),
                b.count.to_string().into(),
                Cell::Number(b.confidence),
                Cell::Number(b.accuracy),
            ]
        })
        .collect();
    Section {
        title: format!("Calibration (ECE {}, MCE {})", num(c.ece), num(c.mce)),
        header: vec!["bin", "count", "confidence", "accuracy"],
        rows,
        note: None,
    }
}

pub fn label_issues_table(l: &LabelIssues) -> Section {
    let rows = l
        .entries
        .iter()
        .map(|e| {
            vec![
                position_text(&e.index).into(),
                e.given.to_string().into(),
                e.suggested.to_string().into(),
                Cell::Number(e.self_confidence),
            ]
        })
        .collect();
    Section {
        title: format!("Suspected label errors ({} by confident learning)", l.count),
        header: vec!["index", "given", "suggested", "self confidence"],
        rows,
        note: (l.count as usize > l.entries.len())
            .then(|| format!("{} more in --suspects-out", l.count as usize - l.entries.len())),
    }
}

pub fn calibration_chart(c: &Calibration) -> Chart {
    let shown: Vec<&CalibrationBin> = c.bins.iter().filter(|b| b.count > 0).collect();
    Chart {
        name: "calibration",
        title: format!("Reliability: accuracy against confidence (ECE {})", num(c.ece)),
        plot: Plot::Bars {
            category_axis: "confidence bin".into(),
            value_axis: "mean confidence, accuracy".into(),
            categories: shown
                .iter()
                .map(|b| format!("{:.2}–{:.2} (n={})", b.lower, b.upper, b.count))
                .collect(),
            series: vec![
                Series { name: "accuracy".into(), values: shown.iter().map(|b| b.accuracy).collect() },
                Series {
                    name: "mean confidence".into(),
                    values: shown.iter().map(|b| b.confidence).collect(),
                },
            ],
            unit: Unit::Share,
        },
    }
}

pub fn confusion_chart(c: &Confusion, names: Option<&[String]>) -> Chart {
    let shown = &c.pairs[..c.pairs.len().min(20)];
    Chart {
        name: "confusion",
        title: "Where the wrong probability goes: the top confusion pairs by loss".into(),
        plot: Plot::Bars {
            category_axis: "target → predicted".into(),
            value_axis: "share of the loss".into(),
            categories: shown
                .iter()
                .map(|p| {
                    format!(
                        "{} → {} (n={})",
                        class_name(p.target, names),
                        class_name(p.predicted, names),
                        p.count
                    )
                })
                .collect(),
            series: vec![Series {
                name: "share of the loss".into(),
                values: shown.iter().map(|p| p.loss_share).collect(),
            }],
            unit: Unit::Share,
        },
    }
}
