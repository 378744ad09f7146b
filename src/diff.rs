//! `losscope diff`: compares every number of two reports and lists those
//! that moved by more than the tolerance, largest first. Reports are read as
//! plain JSON, field by field, so that a report with fields this version does
//! not know is still compared; but a number of one report must be a number
//! (or null) in the other, or the comparison is an error, never a pass. The
//! infinities a report names in `nonfinite` are compared as infinities.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Origin, Result};
use crate::format::{Cell, Chart, Document, Layout, NONFINITE, Plot, Section, Series, Unit, View};
use crate::settings::Tolerance;

/// Fields that describe a run rather than measure it.
const NOT_COMPARED: [&str; 4] = ["schema_version", "parameters", "inputs", "warnings"];

/// A number that moved by more than the tolerance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// Its path in the report: `value`, `classes[3].loss_share`, …
    pub field: String,
    pub baseline: Option<f64>,
    pub current: Option<f64>,
    /// `|current - baseline|`; null when either side is null.
    pub abs_diff: Option<f64>,
    /// `abs_diff / |baseline|`; null when the baseline is 0 or null.
    pub rel_diff: Option<f64>,
}

/// The comparison of two reports.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    /// Version of this layout.
    pub schema_version: u32,
    /// Always `diff`.
    pub kind: &'static str,
    /// The loss both reports are of.
    pub loss: String,
    pub baseline: String,
    pub current: String,
    pub rtol: f64,
    pub atol: f64,
    /// Numbers compared.
    pub compared: usize,
    /// The numbers outside the tolerance, largest relative change first.
    pub differences: Vec<Difference>,
    /// Always empty: a number only one report has is an error. Kept so that
    /// readers of the diff's JSON find the field they know.
    pub unmatched: Vec<String>,
    /// Parameters that differ between the runs.
    pub parameter_changes: Vec<String>,
}

/// The largest report `diff` reads: its parsed form takes about twenty
/// times the file (measured: 7.2 GB for a 340 MB report of a million
/// classes), so two reports at this limit stay within about 5 GB.
pub const MAX_REPORT_BYTES: u64 = 128 << 20;

fn read_report(path: &Path, role: &str) -> Result<Value> {
    let origin = Origin::new(role, path.display().to_string());
    if let Ok(meta) = std::fs::metadata(path)
        && meta.is_file()
        && meta.len() > MAX_REPORT_BYTES
    {
        return Err(Error::input(
            &origin,
            format!(
                "is {}, more than the {} a report may have for diff (its parsed form takes about 20 times the file): compare the fields you need, extracted with jq, or reports of fewer classes",
                crate::input::size_text(meta.len()),
                crate::input::size_text(MAX_REPORT_BYTES)
            ),
        ));
    }
    let text = crate::input::read_text(path, &origin)?;
    let text = crate::input::json_text(&text).map_err(|message| Error::input(&origin, message))?;
    let value: Value =
        serde_json::from_slice(text).map_err(|e| Error::input(&origin, format!("not JSON: {e}")))?;
    if value.get("schema_version").and_then(Value::as_u64).is_none() || value.get("loss").is_none() {
        return Err(Error::input(&origin, "not a losscope report (no schema_version or loss)"));
    }
    Ok(value)
}

/// One of the two reports: its JSON, where it came from, and the
/// infinities its `nonfinite` object names.
struct Side {
    json: Value,
    origin: Origin,
    infinities: BTreeMap<String, f64>,
}

impl Side {
    fn read(path: &Path, role: &str) -> Result<Side> {
        let json = read_report(path, role)?;
        let origin = Origin::new(role, path.display().to_string());
        let mut infinities = BTreeMap::new();
        match json.get(NONFINITE) {
            None => {}
            Some(Value::Object(marks)) => {
                for (field, mark) in marks {
                    let x = match mark.as_str() {
                        Some("inf") => f64::INFINITY,
                        Some("-inf") => f64::NEG_INFINITY,
                        _ => {
                            return Err(Error::input(
                                &origin,
                                format!("{NONFINITE}.{field} is {mark}, not \"inf\" or \"-inf\""),
                            ));
                        }
                    };
                    if lookup(&json, field) != Some(&Value::Null) {
                        return Err(Error::input(
                            &origin,
                            format!("{NONFINITE} names {field}, which is not a null number of the report"),
                        ));
                    }
                    infinities.insert(field.clone(), x);
                }
            }
            Some(other) => {
                return Err(Error::input(&origin, format!("{NONFINITE} is {}, not an object", kind(other))));
            }
        }
        Ok(Side { json, origin, infinities })
    }

    /// The number a leaf stands for: its value, the infinity `nonfinite`
    /// names, or `None` for a null (NaN, or undefined).
    fn number(&self, path: &str, leaf: &Value) -> Option<f64> {
        match leaf {
            Value::Number(n) => n.as_f64(),
            _ => self.infinities.get(path).copied(),
        }
    }
}

/// The value at `path` (`classes[3].loss_sum`) in `report`, as [`leaves`]
/// names it.
fn lookup<'a>(report: &'a Value, path: &str) -> Option<&'a Value> {
    let mut here = report;
    for part in path.split('.') {
        let (key, indices) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        here = here.get(key)?;
        for index in indices.split(']').filter(|s| !s.is_empty()) {
            here = here.get(index.strip_prefix('[')?.parse::<usize>().ok()?)?;
        }
    }
    Some(here)
}

/// How a value is named in messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Fields whose value is text or `null` (a class name given to one run
/// only): a `null` there faces a string without standing for a number.
const TEXT_FIELDS: [&str; 1] = ["name"];

/// The `--only` prefixes, or everything.
struct Selection<'a> {
    only: &'a [String],
}

/// Whether `path` is `prefix` or lies under it.
fn under(path: &str, prefix: &str) -> bool {
    path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with(['.', '[']))
}

impl Selection<'_> {
    /// Whether the number at `path` is compared.
    fn selects(&self, path: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|prefix| under(path, prefix))
    }

    /// Whether anything at or under `path` is compared.
    fn touches(&self, path: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|prefix| under(path, prefix) || under(prefix, path))
    }
}

/// The walk of the two reports side by side.
struct Walk<'a> {
    sides: [&'a Side; 2],
    selection: Selection<'a>,
    /// Compared numbers: path, baseline, current.
    pairs: Vec<(String, Option<f64>, Option<f64>)>,
}

impl Walk<'_> {
    fn child(path: &str, key: &str) -> String {
        if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
    }

    /// The first number (or null) at or under `value`, by path, if any.
    fn first_number(value: &Value, path: &str) -> Option<String> {
        let mut found = Vec::new();
        leaves(value, path.to_string(), &mut found);
        found.into_iter().map(|(p, _)| p).next()
    }

    /// The problem with a number at or under `path` that has no counterpart.
    fn unmatched(&self, path: &str, values: [Option<&Value>; 2]) -> Error {
        let holds = |v: Option<&Value>| v.and_then(|v| Self::first_number(v, path));
        let names = ["baseline", "current"];
        let bad = match (holds(values[0]), holds(values[1])) {
            (Some(_), None) => 1,
            (None, Some(_)) => 0,
            // Numbers on both sides, in different shapes: which one is
            // malformed cannot be told, so both are named.
            _ => {
                let [a, b] = values.map(|v| v.map_or("missing", kind));
                let [x, y] = self.sides.map(|s| &s.origin);
                return Error::usage(format!(
                    "the reports cannot be compared: {path} is {a} in {x} but {b} in {y}"
                ));
            }
        };
        let good = 1 - bad;
        let there = match (values[good], holds(values[good])) {
            (Some(Value::Number(_) | Value::Null), _) => "a number".to_string(),
            (_, Some(example)) if example != path => format!("numbers ({example}, …)"),
            _ => "numbers".to_string(),
        };
        let here = values[bad].map_or("missing", kind);
        Error::input(
            &self.sides[bad].origin,
            format!("{path} is {here}, where the {} report has {there}", names[good]),
        )
    }

    fn walk(&mut self, path: &str, a: Option<&Value>, b: Option<&Value>) -> Result<()> {
        if !self.selection.touches(path) && !path.is_empty() {
            return Ok(());
        }
        let numeric = |v: &Value| matches!(v, Value::Number(_) | Value::Null);
        match (a, b) {
            (Some(x), Some(y)) if numeric(x) && numeric(y) => {
                if self.selection.selects(path) {
                    let [left, right] = self.sides;
                    self.pairs.push((path.to_string(), left.number(path, x), right.number(path, y)));
                }
                Ok(())
            }
            (Some(Value::Object(x)), Some(Value::Object(y))) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for key in keys {
                    if path.is_empty() && (NOT_COMPARED.contains(&key.as_str()) || key == NONFINITE) {
                        continue;
                    }
                    self.walk(&Self::child(path, key), x.get(key), y.get(key))?;
                }
                Ok(())
            }
            (Some(Value::Array(x)), Some(Value::Array(y))) => {
                for i in 0..x.len().max(y.len()) {
                    self.walk(&format!("{path}[{i}]"), x.get(i), y.get(i))?;
                }
                Ok(())
            }
            // An object that may be null (SSD's priors_per_box): its
            // numbers against null, each a difference.
            (Some(Value::Null), Some(Value::Object(_))) | (Some(Value::Object(_)), Some(Value::Null)) => {
                let mut expanded = Vec::new();
                let object = if matches!(a, Some(Value::Object(_))) { a } else { b };
                leaves(object.expect("one side is the object"), path.to_string(), &mut expanded);
                for (field, _) in expanded {
                    let leaf = lookup(&self.sides[0].json, &field);
                    let other = lookup(&self.sides[1].json, &field);
                    let (x, y) = (leaf.or(Some(&Value::Null)), other.or(Some(&Value::Null)));
                    self.walk(&field, x, y)?;
                }
                Ok(())
            }
            (Some(Value::Null), Some(Value::String(_))) | (Some(Value::String(_)), Some(Value::Null))
                if TEXT_FIELDS.iter().any(|f| path.ends_with(&format!(".{f}")) || path == *f) =>
            {
                Ok(())
            }
            (x, y) => {
                let holds_numbers =
                    |v: Option<&Value>| v.is_some_and(|v| Self::first_number(v, path).is_some());
                if holds_numbers(x) || holds_numbers(y) { Err(self.unmatched(path, [x, y])) } else { Ok(()) }
            }
        }
    }
}

/// Compares `current` with `baseline`; `only` keeps fields under the given
/// path prefixes (`value`, `classes`, `difficulty.easy`).
///
/// Every number of one report (or `null`, standing for NaN or an undefined
/// figure) must have a counterpart in the other, a number or `null`: a
/// number missing from one side, or facing a string, a boolean, a list or
/// an object, is an error naming its path, never a pass. So is an `--only`
/// that names no number of the reports, and a comparison of nothing.
pub fn compare(
    baseline_path: &Path,
    current_path: &Path,
    tolerance: &Tolerance,
    only: &[String],
) -> Result<DiffReport> {
    let baseline = Side::read(baseline_path, "baseline")?;
    let current = Side::read(current_path, "current")?;
    let incomparable = |what: &str, a: &Value, b: &Value| {
        Error::usage(format!("the reports cannot be compared: {what} differs (baseline {a}, current {b})"))
    };
    for key in ["schema_version", "loss"] {
        if baseline.json[key] != current.json[key] {
            return Err(incomparable(key, &baseline.json[key], &current.json[key]));
        }
    }
    let class_count = |r: &Value| r["classes"].as_array().map_or(0, Vec::len);
    if class_count(&baseline.json) != class_count(&current.json) {
        let (a, b) = (class_count(&baseline.json).into(), class_count(&current.json).into());
        return Err(incomparable("the number of classes", &a, &b));
    }
    check_only(only, [&baseline.json, &current.json])?;

    let mut walk = Walk { sides: [&baseline, &current], selection: Selection { only }, pairs: Vec::new() };
    walk.walk("", Some(&baseline.json), Some(&current.json))?;
    let compared = walk.pairs.len();
    if compared == 0 {
        return Err(Error::usage(
            "the reports hold no numbers to compare (under --only, if given): a comparison of nothing cannot pass",
        ));
    }
    let mut differences = Vec::new();
    for (field, a, b) in walk.pairs {
        let within = match (a, b) {
            (Some(a), Some(b)) if a.is_finite() && b.is_finite() => tolerance.holds(a, b),
            // An infinity equals only itself.
            (Some(a), Some(b)) => a == b,
            // Null on both sides: NaN or undefined, alike.
            (None, None) => true,
            _ => false,
        };
        if !within {
            let abs_diff = a.zip(b).map(|(a, b)| (b - a).abs());
            let rel_diff = abs_diff
                .zip(a)
                .and_then(|(d, a)| (a != 0.0 && a.is_finite()).then(|| d / a.abs()))
                .filter(|r| !r.is_nan());
            differences.push(Difference { field, baseline: a, current: b, abs_diff, rel_diff });
        }
    }
    // Largest relative change first; a change from or to null, or from
    // zero, has no ratio and goes to the top.
    differences.sort_by(|x, y| {
        let key = |d: &Difference| (d.rel_diff.unwrap_or(f64::INFINITY), d.abs_diff.unwrap_or(f64::INFINITY));
        let (kx, ky) = (key(x), key(y));
        ky.0.total_cmp(&kx.0).then(ky.1.total_cmp(&kx.1)).then(x.field.cmp(&y.field))
    });

    let mut parameter_changes = Vec::new();
    if let (Some(a), Some(b)) =
        (baseline.json["parameters"].as_object(), current.json["parameters"].as_object())
    {
        for (key, value) in a {
            if b.get(key) != Some(value) {
                let now = b.get(key).map_or("absent".to_string(), Value::to_string);
                parameter_changes.push(format!("{key}: {value} → {now}"));
            }
        }
    }
    Ok(DiffReport {
        schema_version: crate::report::SCHEMA_VERSION,
        kind: "diff",
        loss: baseline.json["loss"].as_str().unwrap_or_default().to_string(),
        baseline: baseline_path.display().to_string(),
        current: current_path.display().to_string(),
        rtol: tolerance.rtol,
        atol: tolerance.atol,
        compared,
        differences,
        unmatched: Vec::new(),
        parameter_changes,
    })
}

/// Refuses an `--only` entry that selects no number of either report,
/// listing the fields that hold numbers.
fn check_only(only: &[String], reports: [&Value; 2]) -> Result<()> {
    let mut paths = Vec::new();
    for report in reports {
        leaves(report, String::new(), &mut paths);
    }
    for prefix in only {
        if !paths.iter().any(|(path, _)| under(path, prefix)) {
            let mut fields: Vec<&str> = Vec::new();
            for report in reports {
                for key in report.as_object().into_iter().flat_map(|o| o.keys()) {
                    if paths.iter().any(|(path, _)| under(path, key)) && !fields.contains(&key.as_str()) {
                        fields.push(key);
                    }
                }
            }
            return Err(Error::usage(format!(
                "--only {prefix:?} names no number of the reports (a path such as value, classes[3].loss_sum \
                 or difficulty.easy); their fields are: {}",
                fields.join(", ")
            )));
        }
    }
    Ok(())
}

/// Every numeric (or null) leaf under `value`, with its path.
fn leaves(value: &Value, path: String, out: &mut Vec<(String, Option<f64>)>) {
    match value {
        Value::Number(n) => out.push((path, n.as_f64())),
        Value::Null => out.push((path, None)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                leaves(item, format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                if path.is_empty() && (NOT_COMPARED.contains(&key.as_str()) || key == NONFINITE) {
                    continue;
                }
                let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                leaves(item, child, out);
            }
        }
        Value::Bool(_) | Value::String(_) => {}
    }
}

/// Differences a chart shows, largest first.
const CHART_DIFFERENCES: usize = 30;

impl Document for DiffReport {
    fn charts(&self) -> Vec<Chart> {
        // Signed, so a drop and a rise read apart; a change from or to null
        // or from 0 has no ratio and shows no bar (the table has it).
        let shown = &self.differences[..self.differences.len().min(CHART_DIFFERENCES)];
        let change = |d: &Difference| {
            d.baseline.zip(d.current).and_then(|(a, b)| (a != 0.0).then(|| (b - a) / a.abs()))
        };
        vec![Chart {
            name: "diff",
            title: "What moved beyond the tolerance, largest change first".into(),
            plot: Plot::Bars {
                category_axis: "field".into(),
                value_axis: "relative change (current - baseline) / |baseline|".into(),
                categories: shown.iter().map(|d| d.field.clone()).collect(),
                series: vec![Series {
                    name: "relative change".into(),
                    values: shown.iter().map(change).collect(),
                }],
                unit: Unit::Number,
            },
        }]
    }

    fn json(&self) -> String {
        crate::format::json_text(self)
    }

    fn view(&self, _layout: Layout) -> View {
        let verdict = if self.differences.is_empty() {
            format!("all {} compared numbers within tolerance", self.compared)
        } else {
            format!("{} of {} compared numbers outside tolerance", self.differences.len(), self.compared)
        };
        let mut summary = vec![
            ("result".to_string(), verdict),
            ("baseline".to_string(), self.baseline.clone()),
            ("current".to_string(), self.current.clone()),
            ("tolerance".to_string(), format!("rtol {} atol {}", self.rtol, self.atol)),
        ];
        if !self.parameter_changes.is_empty() {
            summary.push(("parameters changed".to_string(), self.parameter_changes.join("; ")));
        }
        let rows = self
            .differences
            .iter()
            .map(|d| {
                let exact = |x: Option<f64>| x.map_or_else(|| "null".to_string(), |x| x.to_string());
                vec![
                    d.field.clone().into(),
                    exact(d.baseline).into(),
                    exact(d.current).into(),
                    Cell::Number(d.abs_diff),
                    d.rel_diff.map_or_else(|| "—".to_string(), |r| format!("{r:.3e}")).into(),
                ]
            })
            .collect();
        let mut sections = Vec::new();
        if !self.differences.is_empty() {
            sections.push(Section {
                title: "Differences over tolerance, largest first".into(),
                header: vec!["field", "baseline", "current", "abs diff", "rel diff"],
                rows,
                note: None,
            });
        }
        View { title: format!("diff of two {} reports", self.loss), summary, sections, warnings: Vec::new() }
    }
}
