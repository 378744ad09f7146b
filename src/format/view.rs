//! What a person reads of a report, independent of how it is drawn: a
//! summary of key/value lines and titled tables of text cells.

use crate::report::{Bin, ClassRow, Report};

use super::{Document, Layout};

pub struct Section {
    pub title: String,
    pub header: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
    /// A line under the table (classes left out by --top).
    pub note: Option<String>,
}

pub struct View {
    pub title: String,
    pub summary: Vec<(String, String)>,
    pub sections: Vec<Section>,
    pub warnings: Vec<String>,
}

const BAR_WIDTH: usize = 20;

/// Columns of labels, aligned left; every other column holds numbers.
pub fn is_label_column(name: &str) -> bool {
    matches!(name, "" | "name" | "field" | "group" | "p_t" | "g")
}

/// A bar of `share` (0..=1) in eighths of a character.
pub fn bar(share: Option<f64>) -> String {
    let Some(share) = share else {
        return String::new();
    };
    let eighths = (share.clamp(0.0, 1.0) * (BAR_WIDTH * 8) as f64).round() as usize;
    let mut bar = "█".repeat(eighths / 8);
    if eighths % 8 > 0 {
        bar.push(['▏', '▎', '▍', '▌', '▋', '▊', '▉'][eighths % 8 - 1]);
    }
    bar
}

/// A number for a table cell: six decimals where they are readable,
/// scientific notation where they are not.
pub fn num(x: Option<f64>) -> String {
    match x {
        None => "—".into(),
        Some(0.0) => "0".into(),
        Some(x) if (1e-3..1e6).contains(&x.abs()) => format!("{x:.6}"),
        Some(x) => format!("{x:.4e}"),
    }
}

pub fn percent(x: Option<f64>) -> String {
    x.map_or_else(|| "—".into(), |x| format!("{:.1}%", x * 100.0))
}

/// Exact figures: the shortest text that reads back as the same f64.
fn exact(x: Option<f64>) -> String {
    x.map_or_else(|| "null (not a number)".into(), |x| x.to_string())
}

fn loss_title(loss: &str) -> &'static str {
    match loss {
        "ce" => "cross entropy",
        "bce" => "binary cross entropy with logits",
        "focal" => "focal loss",
        "ssd" => "SSD MultiBox loss",
        _ => "loss",
    }
}

impl Document for Report {
    fn json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a report always serialises");
        text.push('\n');
        text
    }

    fn view(&self, layout: Layout) -> View {
        let report = self;
        let mut summary = vec![
            ("value".to_string(), exact(report.value)),
            ("sum".to_string(), exact(report.sum)),
            ("normalizer".to_string(), exact(report.normalizer)),
            ("count".to_string(), report.count.to_string()),
        ];
        if report.ignored > 0 || report.loss == "ce" {
            summary.push(("ignored".into(), report.ignored.to_string()));
        }
        if let Some(b) = &report.baseline {
            summary.push((format!("baseline ({})", b.loss), exact(b.value)));
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
        if report.loss != "ce" {
            sections.push(gradient_norm(report));
        }
        sections.push(concentration(report));
        View {
            title: format!("{} ({})", loss_title(&report.loss), report.loss),
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
    let shown = layout.top.unwrap_or(ranked.len()).min(ranked.len());
    let note = (shown < ranked.len()).then(|| {
        let hidden = ranked.len() - shown;
        let noun = if hidden == 1 { "class" } else { "classes" };
        format!("{hidden} more {noun} not shown (--top {shown})")
    });
    let mut header = with_baseline(vec!["class", "name", "count", "freq", "loss sum", "share", ""], report);
    header.extend(["mean loss", "mean p_t", "accuracy"]);
    if with_positives {
        header.extend(["positives", "pos loss", "neg loss"]);
    }
    let rows = ranked[..shown]
        .iter()
        .map(|c| {
            let mut row = vec![
                c.class.to_string(),
                c.name.clone().unwrap_or_default(),
                c.count.to_string(),
                percent(c.frequency),
                num(c.loss_sum),
                percent(c.loss_share),
                bar(c.loss_share),
            ];
            if let Some(b) = baseline {
                row.push(percent(b.classes.get(c.class).and_then(|bc| bc.loss_share)));
            }
            row.extend([num(c.mean_loss), num(c.mean_p_t), percent(c.accuracy)]);
            if with_positives {
                row.push(c.positives.map_or_else(String::new, |p| p.to_string()));
                row.push(num(c.positive_loss_sum));
                row.push(num(c.negative_loss_sum));
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
            let mut row = vec![
                name.to_string(),
                s.count.to_string(),
                num(s.loss_sum),
                percent(s.loss_share),
                bar(s.loss_share),
            ];
            if let Some(b) = baseline {
                row.push(percent(b[i].loss_share));
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
fn histogram_rows(bins: &[Bin], baseline: Option<&[Bin]>) -> Vec<Vec<String>> {
    bins.iter()
        .enumerate()
        .map(|(i, b)| {
            let mut row = vec![
                format!("{:.2}–{:.2}", b.lower, b.upper),
                b.count.to_string(),
                num(b.loss_sum),
                percent(b.loss_share),
                bar(b.loss_share),
            ];
            if let Some(base) = baseline {
                row.push(percent(base.get(i).and_then(|x| x.loss_share)));
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
            let mut row = vec![name.to_string(), g.count.to_string()];
            row.extend(g.levels.iter().map(|l| percent(l.loss_share)));
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
