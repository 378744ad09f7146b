//! `losscope diff`: compares every number two reports share and lists those
//! that moved by more than the tolerance, largest first. Reports are read as
//! plain JSON so that a report with fields this version does not know can
//! still be compared on the fields both have.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Origin, Result};
use crate::format::{Document, Layout, Section, View, num};
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
    /// Fields only one report has (not counted as differences).
    pub unmatched: Vec<String>,
    /// Parameters that differ between the runs.
    pub parameter_changes: Vec<String>,
}

fn read_report(path: &Path, role: &str) -> Result<Value> {
    let origin = Origin::new(role, path.display().to_string());
    let text = crate::input::read_text(path, &origin)?;
    let text = crate::input::json_text(&text).map_err(|message| Error::input(&origin, message))?;
    let value: Value =
        serde_json::from_slice(text).map_err(|e| Error::input(&origin, format!("not JSON: {e}")))?;
    if value.get("schema_version").and_then(Value::as_u64).is_none() || value.get("loss").is_none() {
        return Err(Error::input(&origin, "not a losscope report (no schema_version or loss)"));
    }
    Ok(value)
}

/// Compares `current` with `baseline`; `only` keeps fields under the given
/// path prefixes (`value`, `classes`, `difficulty.easy`).
pub fn compare(
    baseline_path: &Path,
    current_path: &Path,
    tolerance: &Tolerance,
    only: &[String],
) -> Result<DiffReport> {
    let baseline = read_report(baseline_path, "baseline")?;
    let current = read_report(current_path, "current")?;
    let incomparable = |what: &str, a: &Value, b: &Value| {
        Error::usage(format!("the reports cannot be compared: {what} differs (baseline {a}, current {b})"))
    };
    for key in ["schema_version", "loss"] {
        if baseline[key] != current[key] {
            return Err(incomparable(key, &baseline[key], &current[key]));
        }
    }
    let class_count = |r: &Value| r["classes"].as_array().map_or(0, Vec::len);
    if class_count(&baseline) != class_count(&current) {
        let (a, b) = (class_count(&baseline).into(), class_count(&current).into());
        return Err(incomparable("the number of classes", &a, &b));
    }

    let mut left = Vec::new();
    let mut right = Vec::new();
    leaves(&baseline, String::new(), &mut left);
    leaves(&current, String::new(), &mut right);
    let selected = |field: &str| {
        only.is_empty()
            || only.iter().any(|prefix| {
                field == prefix
                    || field.strip_prefix(prefix.as_str()).is_some_and(|rest| rest.starts_with(['.', '[']))
            })
    };
    let right_map: std::collections::BTreeMap<&str, Option<f64>> =
        right.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let left_keys: std::collections::BTreeSet<&str> = left.iter().map(|(k, _)| k.as_str()).collect();

    let mut compared = 0;
    let mut differences = Vec::new();
    let mut unmatched = Vec::new();
    for (field, a) in left.iter().filter(|(f, _)| selected(f)) {
        let Some(&b) = right_map.get(field.as_str()) else {
            unmatched.push(format!("{field} (baseline only)"));
            continue;
        };
        compared += 1;
        let within = match (a, b) {
            (Some(a), Some(b)) => tolerance.holds(*a, b),
            (None, None) => true,
            _ => false,
        };
        if !within {
            let abs_diff = a.zip(b).map(|(a, b)| (b - a).abs());
            let rel_diff = abs_diff.zip(*a).and_then(|(d, a)| (a != 0.0).then(|| d / a.abs()));
            differences.push(Difference {
                field: field.clone(),
                baseline: *a,
                current: b,
                abs_diff,
                rel_diff,
            });
        }
    }
    for (field, _) in right.iter().filter(|(f, _)| selected(f) && !left_keys.contains(f.as_str())) {
        unmatched.push(format!("{field} (current only)"));
    }
    // Largest relative change first; a change from or to null, or from
    // zero, has no ratio and goes to the top.
    differences.sort_by(|x, y| {
        let key = |d: &Difference| (d.rel_diff.unwrap_or(f64::INFINITY), d.abs_diff.unwrap_or(f64::INFINITY));
        let (kx, ky) = (key(x), key(y));
        ky.0.total_cmp(&kx.0).then(ky.1.total_cmp(&kx.1)).then(x.field.cmp(&y.field))
    });

    let mut parameter_changes = Vec::new();
    if let (Some(a), Some(b)) = (baseline["parameters"].as_object(), current["parameters"].as_object()) {
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
        loss: baseline["loss"].as_str().unwrap_or_default().to_string(),
        baseline: baseline_path.display().to_string(),
        current: current_path.display().to_string(),
        rtol: tolerance.rtol,
        atol: tolerance.atol,
        compared,
        differences,
        unmatched,
        parameter_changes,
    })
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
                if path.is_empty() && NOT_COMPARED.contains(&key.as_str()) {
                    continue;
                }
                let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                leaves(item, child, out);
            }
        }
        Value::Bool(_) | Value::String(_) => {}
    }
}

impl Document for DiffReport {
    fn json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a diff always serialises");
        text.push('\n');
        text
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
                    d.field.clone(),
                    exact(d.baseline),
                    exact(d.current),
                    num(d.abs_diff),
                    d.rel_diff.map_or_else(|| "—".to_string(), |r| format!("{r:.3e}")),
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
        let warnings = self.unmatched.iter().map(|f| format!("not compared: {f}")).collect();
        View { title: format!("diff of two {} reports", self.loss), summary, sections, warnings }
    }
}
