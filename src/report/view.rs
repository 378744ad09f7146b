//! The view of the shared core of a report; a loss's own sections add
//! their lines and tables.

use crate::format::{
    Cell, Chart, Document, Layout, Line, Plot, Section, Series, Unit, View, bar, exact, percent,
};

use super::{Bin, ClassRow, Report, findings};

impl Report {
    /// The class names given, by class.
    fn class_names(&self) -> Option<Vec<String>> {
        let names: Vec<String> = self.classes.iter().map(|c| c.name.clone().unwrap_or_default()).collect();
        self.classes.iter().any(|c| c.name.is_some()).then_some(names)
    }
}

impl Document for Report {
    fn json(&self) -> String {
        crate::format::json_text(self)
    }

    fn charts(&self) -> Vec<Chart> {
        let mut charts = vec![class_chart(self), p_t_chart(self), concentration_chart(self)];
        charts.push(findings::calibration_chart(&self.calibration));
        if let Some(confusion) = &self.confusion {
            charts.push(findings::confusion_chart(confusion, self.class_names().as_deref()));
        }
        if let Some(own) = &self.sections {
            charts.extend(own.charts());
        }
        charts
    }

    fn view(&self, layout: Layout) -> View {
        let report = self;
        let mut summary = vec![
            ("value".to_string(), exact(report.value)),
            ("sum".to_string(), exact(report.sum)),
            ("normalizer".to_string(), exact(report.normalizer)),
            ("count".to_string(), report.count.to_string()),
        ];
        if report.ignored > 0 || report.presentation.show_ignored {
            summary.push(("ignored".into(), report.ignored.to_string()));
        }
        if let Some(b) = &report.baseline {
            summary.push((format!("baseline ({})", b.loss), exact(b.value)));
        }
        if let Some(sections) = &report.sections {
            summary.extend(sections.summary());
        }
        for input in &report.inputs {
            let shape: Vec<String> = input.shape.iter().map(|d| d.to_string()).collect();
            summary.push((
                input.role.clone(),
                format!("{}  [{}] {}", input.source, shape.join(", "), input.dtype),
            ));
        }
        let params: Vec<String> = report
            .parameters
            .iter()
            .map(|(k, v)| match v {
                // The JSON report keeps every value; a line shows a count.
                serde_json::Value::Array(items) if items.len() > 8 => format!("{k}=[{} values]", items.len()),
                _ => format!("{k}={}", v.to_string().trim_matches('"')),
            })
            .collect();
        summary.push(("parameters".into(), params.join(" ")));

        let mut sections = vec![classes(report, layout), easy_hard(report), bins(report)];
        // For softmax CE the gradient norm is 1 - p_t: the p_t table again.
        if report.presentation.gradient_norm_table {
            sections.push(gradient_norm(report));
        }
        sections.push(concentration(report));
        let names = report.class_names();
        if let Some(examples) = &report.examples {
            sections.push(findings::examples_table(examples));
        }
        if let Some(confusion) = &report.confusion {
            sections.push(findings::confusion_table(confusion, names.as_deref()));
        }
        sections.push(findings::calibration_table(&report.calibration));
        if let Some(issues) = &report.label_issues {
            sections.push(findings::label_issues_table(issues));
        }
        if let Some(own) = &report.sections {
            sections.extend(own.tables(layout));
        }
        View {
            title: format!("{} ({})", report.presentation.title, report.loss),
            summary,
            sections,
            warnings: report.warnings.clone(),
        }
    }
}

fn classes(report: &Report, layout: Layout) -> Section {
    let with_positives = report.classes.iter().any(|c| c.positives.is_some());
    let baseline = report.baseline.as_ref();
    let mut ranked: Vec<&ClassRow> = report.classes.iter().collect();
    ranked.sort_by(|a, b| {
        let share = |c: &ClassRow| c.loss_share.unwrap_or(f64::NEG_INFINITY);
        share(b).total_cmp(&share(a)).then(a.class.cmp(&b.class))
    });
    let (shown, note) = layout.cut(ranked.len(), ("class", "classes"));
    let mut header = with_baseline(vec!["class", "name", "count", "freq", "loss sum", "share", ""], report);
    header.extend(["mean loss", "mean p_t", "accuracy", "confidence"]);
    if with_positives {
        header.extend(["positives", "pos loss", "neg loss"]);
    }
    let rows = ranked[..shown]
        .iter()
        .map(|c| {
            let mut row: Vec<Cell> = vec![
                c.class.to_string().into(),
                c.name.clone().unwrap_or_default().into(),
                c.count.to_string().into(),
                percent(c.frequency).into(),
                Cell::Number(c.loss_sum),
                percent(c.loss_share).into(),
                bar(c.loss_share).into(),
            ];
            if let Some(b) = baseline {
                row.push(percent(b.classes.get(c.class).and_then(|bc| bc.loss_share)).into());
            }
            row.extend([
                Cell::Number(c.mean_loss),
                Cell::Number(c.mean_p_t),
                percent(c.accuracy).into(),
                percent(c.mean_confidence).into(),
            ]);
            if with_positives {
                row.push(c.positives.map_or_else(String::new, |p| p.to_string()).into());
                row.push(Cell::Number(c.positive_loss_sum));
                row.push(Cell::Number(c.negative_loss_sum));
            }
            row
        })
        .collect();
    Section { title: "Classes by share of the loss".into(), header, rows, note }
}

fn easy_hard(report: &Report) -> Section {
    let d = &report.difficulty;
    let baseline = report.baseline.as_ref().map(|b| [&b.difficulty.easy, &b.difficulty.hard]);
    let rows = [&d.easy, &d.hard]
        .iter()
        .zip(["easy", "hard"])
        .enumerate()
        .map(|(i, (s, name))| {
            let mut row: Vec<Cell> = vec![
                (*name).into(),
                s.count.to_string().into(),
                Cell::Number(s.loss_sum),
                percent(s.loss_share).into(),
                bar(s.loss_share).into(),
            ];
            if let Some(b) = baseline {
                row.push(percent(b[i].loss_share).into());
            }
            row
        })
        .collect();
    Section {
        title: format!("Easy (p_t > {}) versus hard examples", d.easy_threshold),
        header: with_baseline(vec!["group", "count", "loss sum", "share", ""], report),
        rows,
        note: None,
    }
}

/// Adds the baseline's share column when the report has a baseline.
fn with_baseline(mut header: Vec<&'static str>, report: &Report) -> Vec<&'static str> {
    if report.baseline.is_some() {
        header.push("baseline share");
    }
    header
}

/// Rows of a histogram, with the baseline's share of each bin beside the loss's.
fn histogram_rows(bins: &[Bin], baseline: Option<&[Bin]>) -> Vec<Vec<Cell>> {
    bins.iter()
        .enumerate()
        .map(|(i, b)| {
            let mut row: Vec<Cell> = vec![
                format!("{:.2}–{:.2}", b.lower, b.upper).into(),
                b.count.to_string().into(),
                Cell::Number(b.loss_sum),
                percent(b.loss_share).into(),
                bar(b.loss_share).into(),
            ];
            if let Some(base) = baseline {
                row.push(percent(base.get(i).and_then(|x| x.loss_share)).into());
            }
            row
        })
        .collect()
}

fn gradient_norm(report: &Report) -> Section {
    let baseline = report.baseline.as_ref().map(|b| b.difficulty.gradient_norm_bins.as_slice());
    Section {
        title: "Loss by gradient norm g (GHM: |p - t| for sigmoid, 1 - p_t for softmax)".into(),
        header: with_baseline(vec!["g", "count", "loss sum", "share", ""], report),
        rows: histogram_rows(&report.difficulty.gradient_norm_bins, baseline),
        note: None,
    }
}

fn bins(report: &Report) -> Section {
    let baseline = report.baseline.as_ref().map(|b| b.difficulty.bins.as_slice());
    Section {
        title: "Loss by p_t (probability of the true outcome)".into(),
        header: with_baseline(vec!["p_t", "count", "loss sum", "share", ""], report),
        rows: histogram_rows(&report.difficulty.bins, baseline),
        note: None,
    }
}

fn concentration(report: &Report) -> Section {
    let c = &report.difficulty.concentration;
    let groups = [("all", &c.all), ("positives", &c.positives), ("negatives", &c.negatives)];
    let rows = groups
        .iter()
        .filter_map(|(name, group)| group.as_ref().map(|g| (name, g)))
        .map(|(name, g)| {
            let mut row: Vec<Cell> = vec![(**name).into(), g.count.to_string().into()];
            row.extend(g.levels.iter().map(|l| percent(l.loss_share).into()));
            row
        })
        .collect();
    Section {
        title: "Share of the loss carried by the hardest examples".into(),
        header: vec!["group", "examples", "top 1%", "top 5%", "top 10%", "top 25%"],
        rows,
        note: None,
    }
}

/// Classes a chart shows by name; the others are summed into one bar.
const CHART_CLASSES: usize = 20;

/// A class's label: its index, and its name when there is one.
fn class_label(c: &ClassRow) -> String {
    match &c.name {
        Some(name) => format!("{} {name}", c.class),
        None => format!("class {}", c.class),
    }
}

/// Loss share beside example frequency per class, largest share first.
fn class_chart(report: &Report) -> Chart {
    let mut ranked: Vec<&ClassRow> = report.classes.iter().collect();
    ranked.sort_by(|a, b| {
        let share = |c: &ClassRow| c.loss_share.unwrap_or(f64::NEG_INFINITY);
        share(b).total_cmp(&share(a)).then(a.class.cmp(&b.class))
    });
    let shown = ranked.len().min(CHART_CLASSES);
    let (top, rest) = ranked.split_at(shown);
    let baseline = report.baseline.as_ref();
    let base_share = |c: &ClassRow| baseline.and_then(|b| b.classes.get(c.class)).and_then(|b| b.loss_share);
    let mut categories: Vec<String> = top.iter().map(|c| class_label(c)).collect();
    let mut loss: Vec<Option<f64>> = top.iter().map(|c| c.loss_share).collect();
    let mut frequency: Vec<Option<f64>> = top.iter().map(|c| c.frequency).collect();
    let mut base: Vec<Option<f64>> = top.iter().map(|c| base_share(c)).collect();
    if !rest.is_empty() {
        let total = |of: &dyn Fn(&ClassRow) -> Option<f64>| Some(rest.iter().filter_map(|c| of(c)).sum());
        categories.push(format!("the other {} classes", rest.len()));
        loss.push(total(&|c| c.loss_share));
        frequency.push(total(&|c| c.frequency));
        base.push(total(&base_share));
    }
    let mut series = vec![
        Series { name: "share of the loss".into(), values: loss },
        Series { name: "share of the examples".into(), values: frequency },
    ];
    if let Some(b) = baseline {
        series.push(Series { name: format!("share of the plain {} loss", b.loss), values: base });
    }
    Chart {
        name: "classes",
        title: "Loss share beside example frequency, per class".into(),
        plot: Plot::Bars {
            category_axis: "class".into(),
            value_axis: "share".into(),
            categories,
            series,
            unit: Unit::Share,
        },
    }
}

/// Loss and examples by p_t bin, with the baseline's loss beside.
fn p_t_chart(report: &Report) -> Chart {
    let d = &report.difficulty;
    let examples: u64 = d.bins.iter().map(|b| b.count).sum();
    let mut series = vec![
        Series { name: "share of the loss".into(), values: d.bins.iter().map(|b| b.loss_share).collect() },
        Series {
            name: "share of the examples".into(),
            values: d.bins.iter().map(|b| (examples > 0).then(|| b.count as f64 / examples as f64)).collect(),
        },
    ];
    if let Some(b) = &report.baseline {
        series.push(Series {
            name: format!("share of the plain {} loss", b.loss),
            values: b.difficulty.bins.iter().map(|x| x.loss_share).collect(),
        });
    }
    Chart {
        name: "p_t",
        title: "Loss and examples by p_t, the probability of the true outcome".into(),
        plot: Plot::Bars {
            category_axis: "p_t".into(),
            value_axis: "share".into(),
            categories: d.bins.iter().map(|b| format!("{:.2}–{:.2}", b.lower, b.upper)).collect(),
            series,
            unit: Unit::Share,
        },
    }
}

/// The share of the loss against the share of the examples, hardest first.
fn concentration_chart(report: &Report) -> Chart {
    let c = &report.difficulty.concentration;
    let groups = [("all examples", &c.all), ("positives", &c.positives), ("negatives", &c.negatives)];
    let lines = groups
        .iter()
        .filter_map(|(name, group)| group.as_ref().map(|g| (name, g)))
        .filter(|(_, g)| g.count > 0)
        .map(|(name, g)| {
            let mut points = vec![(0.0, 0.0)];
            let mut labelled = vec![false];
            for level in &g.levels {
                let point = (level.count as f64 / g.count as f64, level.loss_share.unwrap_or(0.0));
                // Small groups take the same examples at several levels: one label each.
                if points.last() != Some(&point) {
                    points.push(point);
                    labelled.push(true);
                }
            }
            points.push((1.0, 1.0));
            labelled.push(false);
            Line { name: name.to_string(), points, labelled }
        })
        .collect();
    Chart {
        name: "concentration",
        title: "How concentrated the loss is: its share carried by the hardest examples".into(),
        plot: Plot::Curve {
            x_axis: "share of the examples, hardest first".into(),
            y_axis: "share of the loss".into(),
            lines,
            diagonal: Some("every example alike".into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::super::*;
    use crate::format::{Exporter, Json, Layout, Markdown, Table};

    /// A small report typed in by hand, so the snapshots show the formats
    /// and nothing else.
    fn sample() -> Report {
        let class = |class: usize, name: &str, count: u64, loss_sum: f64, share: f64| ClassRow {
            class,
            name: Some(name.into()),
            count,
            frequency: Some(count as f64 / 10.0),
            loss_sum: Some(loss_sum),
            loss_share: Some(share),
            mean_loss: Some(loss_sum / count as f64),
            mean_p_t: Some(0.5),
            accuracy: Some(0.75),
            mean_confidence: Some(0.6),
            positives: None,
            positive_loss_sum: None,
            negative_loss_sum: None,
            loc_loss_sum: None,
        };
        let share = |count: u64, loss_sum: f64, share: f64| Share {
            count,
            loss_sum: Some(loss_sum),
            loss_share: Some(share),
        };
        let mut parameters = BTreeMap::new();
        parameters.insert("reduction".into(), json!("mean"));
        parameters.insert("ignore_index".into(), json!(-100));
        Report {
            schema_version: SCHEMA_VERSION,
            loss: "ce".into(),
            parameters,
            inputs: vec![InputInfo {
                role: "logits".into(),
                source: "dump.npz:logits".into(),
                shape: vec![10, 3],
                dtype: "float32".into(),
                memory_mapped: false,
            }],
            value: Some(0.8),
            sum: Some(8.0),
            normalizer: Some(10.0),
            count: 10,
            ignored: 2,
            classes: vec![
                class(0, "cat", 6, 2.0, 0.25),
                class(1, "dog", 3, 5.0, 0.625),
                class(2, "bird", 1, 1.0, 0.125),
            ],
            difficulty: Difficulty {
                easy_threshold: 0.5,
                easy: share(7, 1.0, 0.125),
                hard: share(3, 7.0, 0.875),
                bins: two_bins(7.0, 1.0),
                gradient_norm_bins: two_bins(1.0, 7.0),
                concentration: Concentration {
                    all: Some(Hardest {
                        count: 10,
                        levels: vec![
                            Level { fraction: 0.01, count: 1, loss_share: Some(0.5) },
                            Level { fraction: 0.05, count: 1, loss_share: Some(0.5) },
                            Level { fraction: 0.10, count: 1, loss_share: Some(0.5) },
                            Level { fraction: 0.25, count: 3, loss_share: Some(0.875) },
                        ],
                    }),
                    positives: None,
                    negatives: None,
                },
            },
            baseline: Some(Baseline {
                loss: "ce".into(),
                value: Some(1.2),
                sum: Some(12.0),
                classes: vec![
                    BaselineClass { class: 0, loss_sum: Some(6.0), loss_share: Some(0.5) },
                    BaselineClass { class: 1, loss_sum: Some(3.0), loss_share: Some(0.25) },
                    BaselineClass { class: 2, loss_sum: Some(3.0), loss_share: Some(0.25) },
                ],
                difficulty: BaselineDifficulty {
                    easy: share(7, 6.0, 0.5),
                    hard: share(3, 6.0, 0.5),
                    bins: two_bins(6.0, 6.0),
                    gradient_norm_bins: two_bins(6.0, 6.0),
                },
            }),
            sections: None,
            examples: None,
            confusion: None,
            calibration: Calibration { ece: Some(0.1), mce: Some(0.2), bins: Vec::new() },
            label_issues: None,
            warnings: vec!["two targets are ignored".into()],
            presentation: Presentation {
                title: "cross entropy",
                show_ignored: true,
                gradient_norm_table: false,
            },
        }
    }

    /// Two bins over [0, 1] holding `low` and `high` of a total of 8 or 12.
    fn two_bins(low: f64, high: f64) -> Vec<Bin> {
        let total = low + high;
        vec![
            Bin { lower: 0.0, upper: 0.5, count: 3, loss_sum: Some(low), loss_share: Some(low / total) },
            Bin { lower: 0.5, upper: 1.0, count: 7, loss_sum: Some(high), loss_share: Some(high / total) },
        ]
    }

    #[test]
    fn table_snapshot() {
        insta::assert_snapshot!(Table { layout: Layout { top: Some(2) } }.render(&sample()));
    }

    #[test]
    fn markdown_snapshot() {
        insta::assert_snapshot!(Markdown { layout: Layout::default() }.render(&sample()));
    }

    #[test]
    fn json_snapshot() {
        insta::assert_snapshot!(Json.render(&sample()));
    }
}
