//! `losscope weights`: class counts of a target file and the class weights
//! three common schemes suggest, normalised to average 1 over the classes
//! present, with a line to paste into PyTorch.

use serde::Serialize;

use crate::error::{Error, Result, index_in};
use crate::format::{Cell, Chart, Document, Layout, Plot, Section, Series, Unit, View, num, percent};
use crate::input::Tensor;

/// How counts become weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// 1 / n_c
    Inverse,
    /// 1 / √n_c
    SqrtInverse,
    /// The effective number of samples (Cui et al. 2019): (1 - β) / (1 - β^n_c)
    Effective,
}

impl Scheme {
    fn raw(self, n: f64, beta: f64) -> f64 {
        match self {
            Scheme::Inverse => 1.0 / n,
            Scheme::SqrtInverse => 1.0 / n.sqrt(),
            Scheme::Effective => (1.0 - beta) / (1.0 - beta.powf(n)),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct WeightRow {
    pub class: usize,
    pub name: Option<String>,
    /// Its labels or one-hot rows (whole numbers), or its probability mass.
    #[serde(serialize_with = "whole_or_mass")]
    pub count: f64,
    /// `count` over all counted targets or rows.
    pub frequency: Option<f64>,
    /// Each scheme's weight; 0 for a class with no examples.
    pub inverse: f64,
    pub sqrt_inverse: f64,
    pub effective: f64,
}

/// The class counts and suggested weights.
#[derive(Debug, Clone, Serialize)]
pub struct WeightsReport {
    pub schema_version: u32,
    /// Always `weights`.
    pub kind: &'static str,
    pub targets: String,
    /// What `count` counts.
    pub counted: Counted,
    /// The scheme of the `torch` line.
    pub scheme: Scheme,
    pub beta: f64,
    pub ignore_index: i64,
    /// Targets (labels) or rows counted.
    pub count: u64,
    pub ignored: u64,
    pub classes: Vec<WeightRow>,
    /// The chosen scheme's weights as a PyTorch expression.
    pub torch: String,
    pub warnings: Vec<String>,
}

/// A count as JSON: an integer when it is whole (labels, one-hot rows),
/// else the probability mass as it is.
fn whole_or_mass<S: serde::Serializer>(count: &f64, serializer: S) -> std::result::Result<S::Ok, S::Error> {
    if count.fract() == 0.0 && *count < 2f64.powi(53) {
        serializer.serialize_u64(*count as u64)
    } else {
        serializer.serialize_f64(*count)
    }
}

pub struct WeightsParams {
    pub scheme: Scheme,
    pub beta: f64,
    pub ignore_index: i64,
    /// The number of classes; `None` takes the largest label + 1.
    pub classes: Option<usize>,
    pub class_names: Option<Vec<String>>,
}

/// What the counts of a weights report count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Counted {
    /// Class indices: each target counts once for its class.
    Labels,
    /// The rows of `[N, C]` one-hot targets: each counts once for the class
    /// of its 1.
    OneHotRows,
    /// The rows of `[N, C]` probability targets: each class counts its
    /// probability mass, the sum of its column.
    ProbabilityMass,
}

/// Per-class counts: whole numbers, or probability mass.
struct Counts {
    counted: Counted,
    per_class: Vec<f64>,
    /// Targets or rows counted.
    examples: u64,
    ignored: u64,
}

/// Counts the classes of `targets` and derives the weights.
pub fn suggest(targets: &Tensor, params: &WeightsParams) -> Result<WeightsReport> {
    if let Some(classes) = params.classes {
        crate::tally::check_classes(classes)
            .map_err(|message| Error::usage(format!("--classes {classes}: {message}")))?;
    }
    let counts = match class_rows(targets) {
        Ok(counted) => count_rows(targets, counted, params)?,
        Err(not_rows) => count_labels(targets, params, not_rows)?,
    };
    Ok(weigh(targets, &counts, params))
}

/// How `[N, C]` targets whose every row is one-hot, or non-negative and
/// summing to 1, are counted; for any other targets, why their rows are not
/// class rows (`None` when they are not `[N, C]` at all).
fn class_rows(targets: &Tensor) -> std::result::Result<Counted, Option<String>> {
    let [rows, classes] = targets.shape[..] else { return Err(None) };
    if rows == 0 || classes < 2 {
        return Err(None);
    }
    // A row of C floats sums to 1 within C roundings of its type; a 2-byte
    // float keeps at least 8 bits.
    let rounding = match (targets.dtype.is_float(), targets.dtype.size()) {
        (false, _) => 0.0,
        (true, 2) => 2f64.powi(-8),
        (true, 4) => f32::EPSILON as f64,
        (true, _) => f64::EPSILON,
    };
    let tolerance = 2.0 * classes as f64 * rounding;
    let values = targets.values();
    let mut row = vec![0.0; classes];
    let mut one_hot = true;
    for r in 0..rows {
        values.copy_to_f64(r * classes, 1, &mut row);
        if let Some(c) = row.iter().position(|&p| !(0.0..=1.0 + tolerance).contains(&p)) {
            return Err(Some(format!(
                "element [{r}, {c}] is {}, not a probability",
                values.display(r * classes + c)
            )));
        }
        let sum: f64 = row.iter().sum();
        if (sum - 1.0).abs() > tolerance {
            return Err(Some(format!("row {r} sums to {sum}")));
        }
        one_hot &= row.iter().all(|&p| p == 0.0 || p == 1.0);
    }
    Ok(if one_hot { Counted::OneHotRows } else { Counted::ProbabilityMass })
}

/// The one-hot rows or the probability mass of `[N, C]` class rows.
fn count_rows(targets: &Tensor, counted: Counted, params: &WeightsParams) -> Result<Counts> {
    let (rows, classes) = (targets.shape[0], targets.shape[1]);
    if let Some(expected) = params.classes
        && expected != classes
    {
        return Err(Error::input(
            &targets.origin,
            format!(
                "{} targets {} have {classes} classes, not the {expected} of --classes",
                if counted == Counted::OneHotRows { "one-hot" } else { "probability" },
                targets.shape_text()
            ),
        ));
    }
    crate::tally::check_classes(classes).map_err(|message| Error::input(&targets.origin, message))?;
    let values = targets.values();
    let mut per_class = vec![0.0; classes];
    let mut row = vec![0.0; classes];
    for r in 0..rows {
        values.copy_to_f64(r * classes, 1, &mut row);
        for (count, p) in per_class.iter_mut().zip(&row) {
            *count += p;
        }
    }
    Ok(Counts { counted, per_class, examples: rows as u64, ignored: 0 })
}

/// The class indices of `targets`, each counted once. `not_rows` says why
/// `[N, C]` targets are not class rows, for a target that is no index.
fn count_labels(targets: &Tensor, params: &WeightsParams, not_rows: Option<String>) -> Result<Counts> {
    let values = targets.values();
    let mut counts: Vec<u64> = vec![0; params.classes.unwrap_or(0)];
    let mut ignored = 0;
    for i in 0..targets.numel() {
        let at = || index_in(&targets.shape, i);
        let label = values.index_at(i).map_err(|why| {
            let rows = match &not_rows {
                Some(why_not) => format!(
                    "; [N, C] targets are counted per class when every row is one-hot or sums to 1, and {why_not}"
                ),
                None => String::new(),
            };
            Error::input(
                &targets.origin,
                format!("target {} at index {} {}{rows}", values.display(i), at(), why.describe(None)),
            )
        })?;
        if label == params.ignore_index {
            ignored += 1;
            continue;
        }
        if label < 0 {
            return Err(Error::input(
                &targets.origin,
                format!(
                    "negative label {label} at index {} is not the ignore index ({}): if it marks elements \
                     to leave out, pass --ignore-index {label}",
                    at(),
                    params.ignore_index
                ),
            ));
        }
        let label = label as usize;
        if label >= counts.len() {
            if let Some(classes) = params.classes {
                return Err(Error::input(
                    &targets.origin,
                    format!("label {label} at index {} is out of range for {classes} classes", at()),
                ));
            }
            if label >= crate::tally::MAX_CLASSES {
                return Err(Error::input(
                    &targets.origin,
                    format!(
                        "label {label} at index {} is beyond the {} classes losscope counts",
                        at(),
                        crate::tally::MAX_CLASSES
                    ),
                ));
            }
            counts.resize(label + 1, 0);
        }
        counts[label] += 1;
    }
    Ok(Counts {
        counted: Counted::Labels,
        examples: counts.iter().sum(),
        per_class: counts.iter().map(|&n| n as f64).collect(),
        ignored,
    })
}

/// The weights of each scheme from the counts, and the report.
fn weigh(targets: &Tensor, counts: &Counts, params: &WeightsParams) -> WeightsReport {
    let Counts { counted, examples: total, ignored, .. } = *counts;
    let counts = &counts.per_class;
    let present: Vec<usize> = (0..counts.len()).filter(|&c| counts[c] > 0.0).collect();
    let normalised = |scheme: Scheme| -> Vec<f64> {
        let raw: Vec<f64> =
            counts.iter().map(|&n| if n > 0.0 { scheme.raw(n, params.beta) } else { 0.0 }).collect();
        let mean = present.iter().map(|&c| raw[c]).sum::<f64>() / present.len().max(1) as f64;
        raw.iter().map(|w| if mean > 0.0 { w / mean } else { 0.0 }).collect()
    };
    let (inverse, sqrt_inverse, effective) =
        (normalised(Scheme::Inverse), normalised(Scheme::SqrtInverse), normalised(Scheme::Effective));
    let classes: Vec<WeightRow> = (0..counts.len())
        .map(|c| WeightRow {
            class: c,
            name: params.class_names.as_ref().and_then(|names| names.get(c).cloned()),
            count: counts[c],
            frequency: (total > 0).then(|| counts[c] / total as f64),
            inverse: inverse[c],
            sqrt_inverse: sqrt_inverse[c],
            effective: effective[c],
        })
        .collect();
    let chosen = match params.scheme {
        Scheme::Inverse => &inverse,
        Scheme::SqrtInverse => &sqrt_inverse,
        Scheme::Effective => &effective,
    };
    let listed: Vec<String> = chosen.iter().map(|w| format!("{w:.6}")).collect();
    let mut warnings = Vec::new();
    if params.classes.is_none() && counted == Counted::Labels {
        warnings.extend(void_label(&present));
    }
    let missing: Vec<usize> = (0..counts.len()).filter(|&c| counts[c] == 0.0).collect();
    if !missing.is_empty() {
        warnings.push(format!("classes with no examples get weight 0: {}", runs(&missing)));
    }
    if total == 0 {
        warnings.push("no target is counted: there is nothing to weight".into());
    }
    WeightsReport {
        schema_version: crate::report::SCHEMA_VERSION,
        kind: "weights",
        targets: targets.origin.spec.clone(),
        counted,
        scheme: params.scheme,
        beta: params.beta,
        ignore_index: params.ignore_index,
        count: total,
        ignored,
        classes,
        torch: format!("torch.tensor([{}], dtype=torch.float32)", listed.join(", ")),
        warnings,
    }
}

/// A hint when the largest label stands far above the others, as the 255
/// that marks void pixels in segmentation masks does: counted as a class,
/// it makes every label between into a class with no examples.
fn void_label(present: &[usize]) -> Option<String> {
    let (&largest, below) = present.split_last()?;
    // The classes up to the next label, and the empty ones above them.
    let up_to_next = below.last().map_or(0, |&next| next + 1);
    let empty = largest - up_to_next;
    (empty >= 8 && empty > up_to_next).then(|| {
        format!(
            "label {largest} stands far above the other labels and makes {empty} classes with no \
             examples: if it marks elements to leave out, pass --ignore-index {largest}"
        )
    })
}

/// Sorted class indices, runs of three or more written as `first–last`.
fn runs(classes: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut start = 0;
    while start < classes.len() {
        let mut end = start;
        while end + 1 < classes.len() && classes[end + 1] == classes[end] + 1 {
            end += 1;
        }
        match end - start {
            0 => parts.push(classes[start].to_string()),
            1 => parts.extend([classes[start].to_string(), classes[end].to_string()]),
            _ => parts.push(format!("{}–{}", classes[start], classes[end])),
        }
        start = end + 1;
    }
    parts.join(", ")
}

impl WeightsReport {
    /// What was counted, in words.
    fn count_text(&self) -> String {
        match self.counted {
            Counted::Labels => format!("{} ({} ignored)", self.count, self.ignored),
            Counted::OneHotRows => {
                format!("{} one-hot rows, each counted for the class of its 1", self.count)
            }
            Counted::ProbabilityMass => {
                format!("{} probability rows, each class counted by its probability mass", self.count)
            }
        }
    }

    /// A class's count as a person reads it.
    fn count_shown(&self, count: f64) -> String {
        match self.counted {
            Counted::ProbabilityMass => num(Some(count)),
            Counted::Labels | Counted::OneHotRows => count.to_string(),
        }
    }

    /// A class's count in the table: probability mass as a number of its
    /// column, whole counts as written.
    fn count_cell(&self, count: f64) -> Cell {
        match self.counted {
            Counted::ProbabilityMass => Cell::Number(Some(count)),
            Counted::Labels | Counted::OneHotRows => count.to_string().into(),
        }
    }

    fn scheme_name(&self) -> &'static str {
        match self.scheme {
            Scheme::Inverse => "inverse",
            Scheme::SqrtInverse => "sqrt-inverse",
            Scheme::Effective => "effective",
        }
    }
}

impl Document for WeightsReport {
    fn charts(&self) -> Vec<Chart> {
        let weight = |c: &WeightRow| match self.scheme {
            Scheme::Inverse => c.inverse,
            Scheme::SqrtInverse => c.sqrt_inverse,
            Scheme::Effective => c.effective,
        };
        let label = |c: &WeightRow| match &c.name {
            Some(name) => format!("{} {name} (n={})", c.class, self.count_shown(c.count)),
            None => format!("class {} (n={})", c.class, self.count_shown(c.count)),
        };
        vec![Chart {
            name: "weights",
            title: format!(
                "Suggested class weights ({}), averaging 1 over the classes present",
                self.scheme_name()
            ),
            plot: Plot::Bars {
                category_axis: "class".into(),
                value_axis: "weight".into(),
                categories: self.classes.iter().map(label).collect(),
                series: vec![Series {
                    name: format!("{} weight", self.scheme_name()),
                    values: self.classes.iter().map(|c| Some(weight(c))).collect(),
                }],
                unit: Unit::Number,
            },
        }]
    }

    fn json(&self) -> String {
        crate::format::json_text(self)
    }

    fn view(&self, _layout: Layout) -> View {
        let scheme = self.scheme_name();
        let summary = vec![
            ("targets".to_string(), self.targets.clone()),
            ("count".to_string(), self.count_text()),
            ("scheme".to_string(), format!("{scheme} (β = {} for effective)", self.beta)),
            ("torch".to_string(), self.torch.clone()),
        ];
        let rows = self
            .classes
            .iter()
            .map(|c| {
                vec![
                    c.class.to_string().into(),
                    c.name.clone().unwrap_or_default().into(),
                    self.count_cell(c.count),
                    percent(c.frequency).into(),
                    Cell::Number(Some(c.inverse)),
                    Cell::Number(Some(c.sqrt_inverse)),
                    Cell::Number(Some(c.effective)),
                ]
            })
            .collect();
        View {
            title: "class weights (weights)".into(),
            summary,
            sections: vec![Section {
                title: "Suggested weights, averaging 1 over the classes present".into(),
                header: vec!["class", "name", "count", "freq", "inverse", "sqrt-inverse", "effective"],
                rows,
                note: None,
            }],
            warnings: self.warnings.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Origin;
    use crate::input::Column;

    fn labels(values: Vec<i64>) -> Tensor {
        let n = values.len();
        Tensor::from_column(Origin::new("targets", "t"), vec![n], Column::I64(values)).unwrap()
    }

    fn params(scheme: Scheme) -> WeightsParams {
        WeightsParams { scheme, beta: 0.9, ignore_index: -100, classes: Some(4), class_names: None }
    }

    #[test]
    fn weights_average_one_over_present_classes() {
        // Counts 6, 3, 1, 0.
        let t = labels(vec![0, 0, 0, 0, 0, 0, 1, 1, 1, 2, -100]);
        let r = suggest(&t, &params(Scheme::Inverse)).unwrap();
        assert_eq!(r.count, 10);
        assert_eq!(r.ignored, 1);
        let inverse: Vec<f64> = r.classes.iter().map(|c| c.inverse).collect();
        // 1/6, 1/3, 1 average 0.5: weights 1/3, 2/3, 2, and 0 for the absent class.
        for (got, want) in inverse.iter().zip([1.0 / 3.0, 2.0 / 3.0, 2.0, 0.0]) {
            assert!((got - want).abs() < 1e-15, "{inverse:?}");
        }
        let effective: Vec<f64> = r.classes.iter().map(|c| c.effective).collect();
        let raw = |n: f64| 0.1 / (1.0 - 0.9f64.powf(n));
        let mean = (raw(6.0) + raw(3.0) + raw(1.0)) / 3.0;
        assert!((effective[0] - raw(6.0) / mean).abs() < 1e-15);
        assert!(r.warnings[0].contains("no examples"));
        assert!(r.torch.starts_with("torch.tensor([0.333333, 0.666667, 2.000000, 0.000000]"));
    }

    #[test]
    fn missing_classes_are_listed_as_runs() {
        assert_eq!(runs(&[3, 4]), "3, 4");
        assert_eq!(runs(&[1, 3, 4, 5, 6, 9]), "1, 3–6, 9");
    }

    #[test]
    fn a_label_far_above_the_others_is_taken_for_a_void_label() {
        assert!(void_label(&[0, 1, 2, 3, 4, 5, 255]).unwrap().contains("--ignore-index 255"));
        // A rare class a little above the others is a class.
        assert_eq!(void_label(&[0, 1, 2, 3, 4, 5, 12]), None);
        assert_eq!(void_label(&(0..50).chain([99]).collect::<Vec<_>>()), None);
        assert_eq!(void_label(&[]), None);
        assert_eq!(void_label(&[0]), None);
        assert!(void_label(&[255]).is_some());
    }

    #[test]
    fn labels_out_of_range_are_errors() {
        let t = labels(vec![0, 4]);
        let err = suggest(&t, &params(Scheme::Inverse)).unwrap_err().to_string();
        assert!(err.contains("label 4 at index [1] is out of range for 4 classes"), "{err}");
        let t = labels(vec![0, -1]);
        assert!(suggest(&t, &params(Scheme::Inverse)).unwrap_err().to_string().contains("negative label -1"));
    }
}
