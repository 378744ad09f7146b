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
    matches!(name, "" | "name" | "field" | "group" | "p_t" | "g" | "value")
}

/// A bar of `share` (0..=1) in eighths of a character.
pub fn bar(share: Option<f64>) -> String {
    let Some(share) = share else {
        return String::new();
    };
    let eighths = (share.clamp(0.0, 1.0) * (BAR_WIDTH * 8) as f64).round() as usize;
    let mut bar = "█".repeat(eighths / 8);
    if !eighths.is_multiple_of(8) {
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
        if let Some(c) = &report.components {
            summary.push(("loc / N".into(), exact(c.loc)));
            summary.push(("conf / N".into(), exact(c.conf)));
            summary.push((
                "priors".into(),
                format!("{} positive, {} negative counted, {} images", c.num_pos, c.num_neg, c.n_images),
            ));
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
        sections.extend(detection(report, layout));
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

/// The SSD sections: prior groups, images and matching.
fn detection(report: &Report, layout: Layout) -> Vec<Section> {
    let (Some(groups), Some(images), Some(matching)) = (&report.groups, &report.images, &report.matching)
    else {
        return Vec::new();
    };
    let group_rows = [
        ("positives", &groups.positives),
        ("mined negatives", &groups.mined_negatives),
        ("unmined negatives (not in the loss)", &groups.unmined_negatives),
        ("positives counted twice", &groups.positives_counted_twice),
    ]
    .iter()
    .filter(|(name, g)| g.count > 0 || !name.starts_with("positives counted"))
    .map(|(name, g)| vec![name.to_string(), g.count.to_string(), num(g.conf_sum), percent(g.conf_share)])
    .collect();
    let mut ranked: Vec<_> = images.iter().collect();
    ranked.sort_by(|a, b| {
        let share = |i: &crate::report::ImageRow| i.loss_share.unwrap_or(f64::NEG_INFINITY);
        share(b).total_cmp(&share(a)).then(a.image.cmp(&b.image))
    });
    let shown = layout.top.unwrap_or(20).min(ranked.len());
    let image_rows = ranked[..shown]
        .iter()
        .map(|i| {
            vec![
                i.image.to_string(),
                i.boxes.to_string(),
                i.positives.to_string(),
                i.mined_negatives.to_string(),
                num(i.loc_sum),
                num(i.conf_sum),
                percent(i.loss_share),
                bar(i.loss_share),
            ]
        })
        .collect();
    let mut matching_rows = vec![vec!["boxes".to_string(), matching.boxes.to_string()]];
    if let Some(s) = &matching.priors_per_box {
        matching_rows.push(vec![
            "positive priors per box".into(),
            format!("min {} / median {} / max {}", s.min, s.median, s.max),
        ]);
    }
    let forced: Vec<String> = matching
        .forced_only
        .iter()
        .map(|f| format!("image {} box {} (best IoU {:.3})", f.image, f.box_index, f.best_iou))
        .collect();
    matching_rows.push(vec!["matched only by forcing".into(), list_or_none(&forced)]);
    let displaced: Vec<String> = matching
        .displaced
        .iter()
        .map(|d| {
            format!("image {} box {} (prior {} taken by box {})", d.image, d.box_index, d.prior, d.taken_by)
        })
        .collect();
    matching_rows.push(vec!["left without a prior".into(), list_or_none(&displaced)]);
    if let Some(n) = &matching.never_mined {
        matching_rows.push(vec![
            "negatives the global-max mining never picks".into(),
            format!("{} here, {} had the logits been float32", n.float64, n.float32),
        ]);
    }
    vec![
        Section {
            title: "Priors: positives, mined and unmined negatives (confidence loss)".into(),
            header: vec!["group", "count", "conf sum", "share"],
            rows: group_rows,
            note: None,
        },
        Section {
            title: "Images by share of the loss".into(),
            header: vec![
                "image",
                "boxes",
                "positives",
                "mined negatives",
                "loc sum",
                "conf sum",
                "share",
                "",
            ],
            rows: image_rows,
            note: (shown < images.len()).then(|| format!("{} more images not shown", images.len() - shown)),
        },
        Section { title: "Matching".into(), header: vec!["name", "value"], rows: matching_rows, note: None },
    ]
}

fn list_or_none(items: &[String]) -> String {
    match items.len() {
        0 => "none".into(),
        n if n <= 5 => items.join("; "),
        n => format!("{}; … {} in all", items[..5].join("; "), n),
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
