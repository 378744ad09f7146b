//! The SSD sections of a report: the loss's two components, the prior
//! groups, one row per image and what matching did, and how each is shown.

#![warn(missing_docs)]

use serde::Serialize;

use crate::format::{Cell, Chart, Layout, Plot, Section, Series, Unit, bar, exact, list_or_none, percent};
use crate::report::{ClassRow, LossSections, number, ratio};

use super::figures::{DisplacedBox, ForcedMatch, Group, NeverMined, Spread};
use super::state::SsdState;

/// The SSD parts of a report, written after the shared `difficulty`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SsdSections {
    /// The two parts of the loss and the counts behind them.
    pub components: Components,
    /// Positives, mined negatives and the negatives mining left out.
    pub groups: PriorGroups,
    /// One row per image, in batch order.
    pub images: Vec<ImageRow>,
    /// How ground-truth boxes were matched to priors.
    pub matching: Matching,
    /// The priors that cost the most, counted or not (`--examples`), hardest first.
    pub hardest_priors: Vec<HardPriorRow>,
    /// Per class: Smooth L1 of its positive priors.
    #[serde(skip)]
    class_loc_sums: Vec<f64>,
    /// Per class: positive priors (torchvision may count a positive twice
    /// in the confidence loss; this counts it once).
    #[serde(skip)]
    class_positives: Vec<u64>,
}

/// The localisation and confidence parts of the loss.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Components {
    /// Localisation loss over N (ssd.pytorch's `loss_l`, torchvision's `bbox_regression`).
    pub loc: Option<f64>,
    /// Confidence loss over N (`loss_c`, `classification`).
    pub conf: Option<f64>,
    /// Smooth L1 summed over the positives' four offsets.
    pub loc_sum: Option<f64>,
    /// Confidence loss summed over the counted priors.
    pub conf_sum: Option<f64>,
    /// α: `value = (conf_sum + α · loc_sum) / N`.
    pub loc_weight: f64,
    /// N: positive priors in the batch.
    pub num_pos: u64,
    /// Negative priors counted (mined, or every negative without mining).
    pub num_neg: u64,
    /// Images in the batch.
    pub n_images: u64,
}

/// The confidence loss by kind of prior.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PriorGroups {
    /// Priors matched to a box.
    pub positives: PriorGroup,
    /// Negatives the mining took into the loss.
    pub mined_negatives: PriorGroup,
    /// What the negatives mining left out would have cost; outside the total.
    pub unmined_negatives: PriorGroup,
    /// torchvision: positives the mining also took, counted a second time.
    pub positives_counted_twice: PriorGroup,
}

/// A group of priors and its confidence loss.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PriorGroup {
    /// Priors in the group.
    pub count: u64,
    /// Their confidence loss.
    pub conf_sum: Option<f64>,
    /// `conf_sum` over the counted confidence loss (`components.conf_sum`).
    pub conf_share: Option<f64>,
}

/// One image's part of the loss.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageRow {
    /// The image's index in the batch.
    pub image: usize,
    /// Ground-truth boxes.
    pub boxes: u64,
    /// Positive priors.
    pub positives: u64,
    /// Negatives the mining took.
    pub mined_negatives: u64,
    /// Smooth L1 of its positives.
    pub loc_sum: Option<f64>,
    /// Confidence loss of its counted priors.
    pub conf_sum: Option<f64>,
    /// `(conf_sum + α · loc_sum) / sum`: the image's part of the loss.
    pub loss_share: Option<f64>,
}

/// One of the costliest priors.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HardPriorRow {
    /// The image in the batch.
    pub image: usize,
    /// The prior.
    pub prior: usize,
    /// Its matched class (0: background).
    pub class: usize,
    /// `positive`, `mined` (a counted negative) or `unmined` (outside the loss).
    pub status: &'static str,
    /// Its confidence loss.
    pub conf_loss: Option<f64>,
    /// Its Smooth L1 (positives).
    pub loc_loss: Option<f64>,
    /// `conf_loss + α · loc_loss`.
    pub loss: Option<f64>,
    /// `loss / sum` (0 share for an unmined prior's part of nothing counted).
    pub loss_share: Option<f64>,
}

/// What matching boxes to priors did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Matching {
    /// Ground-truth boxes in the batch.
    pub boxes: u64,
    /// Boxes positive only because their best prior is forced (best IoU below the threshold).
    pub forced_only: Vec<ForcedMatch>,
    /// Boxes left with no prior: a later box took their only one.
    pub displaced: Vec<DisplacedBox>,
    /// Positive priors per box.
    pub priors_per_box: Option<Spread>,
    /// Negatives ssd.pytorch's global-max mining score can never pick
    /// (null unless that score is in use): in this float64 evaluation, and
    /// had the logits been float32.
    pub never_mined: Option<NeverMined>,
}

impl SsdSections {
    /// The sections of an evaluated SSD loss.
    pub fn new(e: &SsdState) -> SsdSections {
        let (loc_sum, conf_sum, loc_weight) = (e.loc_sum.value(), e.conf_sum.value(), e.loc_weight);
        let group = |g: &Group| PriorGroup {
            count: g.count,
            conf_sum: number(g.conf_sum.value()),
            conf_share: ratio(g.conf_sum.value(), conf_sum),
        };
        let total = e.sum();
        SsdSections {
            components: Components {
                loc: number(e.divide(loc_sum)),
                conf: number(e.divide(conf_sum)),
                loc_sum: number(loc_sum),
                conf_sum: number(conf_sum),
                loc_weight,
                num_pos: e.num_pos(),
                num_neg: e.groups.mined_negatives.count,
                n_images: e.n_images(),
            },
            groups: PriorGroups {
                positives: group(&e.groups.positives),
                mined_negatives: group(&e.groups.mined_negatives),
                unmined_negatives: group(&e.groups.unmined_negatives),
                positives_counted_twice: group(&e.groups.positives_counted_twice),
            },
            images: e
                .images
                .iter()
                .map(|&(image, f)| ImageRow {
                    image: image as usize,
                    boxes: f.boxes as u64,
                    positives: f.positives,
                    mined_negatives: f.mined_negatives,
                    loc_sum: number(f.loc_sum),
                    conf_sum: number(f.conf_sum),
                    loss_share: ratio(f.conf_sum + loc_weight * f.loc_sum, total),
                })
                .collect(),
            matching: Matching {
                boxes: e.boxes,
                forced_only: e.forced_only.clone(),
                displaced: e.displaced.clone(),
                priors_per_box: e.priors_per_box(),
                never_mined: e.never_mined,
            },
            hardest_priors: e
                .hardest
                .iter()
                .map(|h| HardPriorRow {
                    image: h.image,
                    prior: h.prior,
                    class: h.class,
                    status: if h.positive {
                        "positive"
                    } else if h.mined {
                        "mined"
                    } else {
                        "unmined"
                    },
                    conf_loss: number(h.conf),
                    loc_loss: number(h.loc),
                    loss: number(h.loss),
                    loss_share: ratio(h.loss, total),
                })
                .collect(),
            class_loc_sums: e.classes.iter().map(|c| c.loc_sum.value()).collect(),
            class_positives: e.classes.iter().map(|c| c.positives).collect(),
        }
    }
}

impl LossSections for SsdSections {
    fn amend_classes(&self, classes: &mut [ClassRow]) {
        for row in classes {
            row.positives = self.class_positives.get(row.class).copied();
            row.loc_loss_sum = self.class_loc_sums.get(row.class).copied().and_then(number);
        }
    }

    fn summary(&self) -> Vec<(String, String)> {
        let c = &self.components;
        vec![
            ("loc / N".into(), exact(c.loc)),
            ("conf / N".into(), exact(c.conf)),
            (
                "priors".into(),
                format!("{} positive, {} negative counted, {} images", c.num_pos, c.num_neg, c.n_images),
            ),
        ]
    }

    fn tables(&self, layout: Layout) -> Vec<Section> {
        vec![self.groups_table(), self.images_table(layout), self.matching_table(), self.hardest_table()]
    }

    fn charts(&self) -> Vec<Chart> {
        vec![self.groups_chart(), self.images_chart()]
    }
}

/// Images a chart shows; the others are summed into one bar.
const CHART_IMAGES: usize = 20;

impl SsdSections {
    /// The prior groups' confidence loss, in the order of the table.
    fn group_rows(&self) -> Vec<(&'static str, &PriorGroup)> {
        let groups = &self.groups;
        [
            ("positives", &groups.positives),
            ("mined negatives", &groups.mined_negatives),
            ("unmined negatives (not in the loss)", &groups.unmined_negatives),
            ("positives counted twice", &groups.positives_counted_twice),
        ]
        .into_iter()
        .filter(|(name, g)| g.count > 0 || !name.starts_with("positives counted"))
        .collect()
    }

    fn groups_chart(&self) -> Chart {
        let rows = self.group_rows();
        Chart {
            name: "groups",
            title: "Confidence loss of positives, mined and unmined negatives".into(),
            plot: Plot::Bars {
                category_axis: "priors".into(),
                value_axis: "confidence loss (sum)".into(),
                categories: rows
                    .iter()
                    .map(|(name, g)| format!("{} ({})", name.trim_end_matches(" (not in the loss)"), g.count))
                    .collect(),
                series: vec![Series {
                    name: "confidence loss".into(),
                    values: rows.iter().map(|(_, g)| g.conf_sum).collect(),
                }],
                unit: Unit::Number,
            },
        }
    }

    fn images_chart(&self) -> Chart {
        let mut ranked: Vec<&ImageRow> = self.images.iter().collect();
        ranked.sort_by(|a, b| {
            let share = |i: &ImageRow| i.loss_share.unwrap_or(f64::NEG_INFINITY);
            share(b).total_cmp(&share(a)).then(a.image.cmp(&b.image))
        });
        let shown = ranked.len().min(CHART_IMAGES);
        let (top, rest) = ranked.split_at(shown);
        let mut categories: Vec<String> = top.iter().map(|i| format!("image {}", i.image)).collect();
        let mut shares: Vec<Option<f64>> = top.iter().map(|i| i.loss_share).collect();
        if !rest.is_empty() {
            categories.push(format!("the other {} images", rest.len()));
            shares.push(Some(rest.iter().filter_map(|i| i.loss_share).sum()));
        }
        Chart {
            name: "images",
            title: "The loss by image, largest share first".into(),
            plot: Plot::Bars {
                category_axis: "image".into(),
                value_axis: "share of the loss".into(),
                categories,
                series: vec![Series { name: "share of the loss".into(), values: shares }],
                unit: Unit::Share,
            },
        }
    }

    fn groups_table(&self) -> Section {
        let rows = self
            .group_rows()
            .iter()
            .map(|(name, g)| {
                vec![
                    (*name).into(),
                    g.count.to_string().into(),
                    Cell::Number(g.conf_sum),
                    percent(g.conf_share).into(),
                ]
            })
            .collect();
        Section {
            title: "Priors: positives, mined and unmined negatives (confidence loss)".into(),
            header: vec!["group", "count", "conf sum", "share"],
            rows,
            note: None,
        }
    }

    fn images_table(&self, layout: Layout) -> Section {
        let images = &self.images;
        let mut ranked: Vec<&ImageRow> = images.iter().collect();
        ranked.sort_by(|a, b| {
            let share = |i: &ImageRow| i.loss_share.unwrap_or(f64::NEG_INFINITY);
            share(b).total_cmp(&share(a)).then(a.image.cmp(&b.image))
        });
        let (shown, note) = layout.cut(ranked.len(), ("image", "images"));
        let rows = ranked[..shown]
            .iter()
            .map(|i| {
                vec![
                    i.image.to_string().into(),
                    i.boxes.to_string().into(),
                    i.positives.to_string().into(),
                    i.mined_negatives.to_string().into(),
                    Cell::Number(i.loc_sum),
                    Cell::Number(i.conf_sum),
                    percent(i.loss_share).into(),
                    bar(i.loss_share).into(),
                ]
            })
            .collect();
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
            rows,
            note,
        }
    }

    fn hardest_table(&self) -> Section {
        let rows = self
            .hardest_priors
            .iter()
            .map(|h| {
                vec![
                    format!("[{}, {}]", h.image, h.prior).into(),
                    h.class.to_string().into(),
                    h.status.to_string().into(),
                    Cell::Number(h.conf_loss),
                    Cell::Number(h.loc_loss),
                    Cell::Number(h.loss),
                    percent(h.loss_share).into(),
                ]
            })
            .collect();
        Section {
            title: "Hardest priors (conf + α · loc, counted or not)".into(),
            header: vec!["index", "class", "group", "conf loss", "loc loss", "loss", "share"],
            rows,
            note: None,
        }
    }

    fn matching_table(&self) -> Section {
        let matching = &self.matching;
        let mut rows: Vec<Vec<Cell>> = vec![vec!["boxes".into(), matching.boxes.to_string().into()]];
        if let Some(s) = &matching.priors_per_box {
            rows.push(vec![
                "positive priors per box".into(),
                format!("min {} / median {} / max {}", s.min, s.median, s.max).into(),
            ]);
        }
        let forced: Vec<String> = matching
            .forced_only
            .iter()
            .map(|f| format!("image {} box {} (best IoU {:.3})", f.image, f.box_row, f.best_iou))
            .collect();
        rows.push(vec!["matched only by forcing".into(), list_or_none(&forced).into()]);
        let displaced: Vec<String> = matching
            .displaced
            .iter()
            .map(|d| {
                format!("image {} box {} (prior {} taken by box {})", d.image, d.box_row, d.prior, d.taken_by)
            })
            .collect();
        rows.push(vec!["left without a prior".into(), list_or_none(&displaced).into()]);
        if let Some(n) = &matching.never_mined {
            rows.push(vec![
                "negatives the global-max mining never picks".into(),
                format!("{} here, {} had the logits been float32", n.float64, n.float32).into(),
            ]);
        }
        Section { title: "Matching".into(), header: vec!["name", "value"], rows, note: None }
    }
}
