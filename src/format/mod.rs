//! Output formats: one exporter per format behind [`Exporter`]. Table and
//! markdown draw the same [`View`] of a document (what a person reads);
//! JSON is the document itself.

mod json;
mod markdown;
mod table;
mod view;

pub use json::Json;
pub use markdown::Markdown;
pub use table::Table;
pub use view::{Section, View, bar, num, percent};

use crate::cli::Format;

/// Something losscope prints: a loss report, or the difference of two.
pub trait Document {
    /// What a person reads of it.
    fn view(&self, layout: Layout) -> View;
    /// Its JSON form (the schema in docs/).
    fn json(&self) -> String;
}

/// Renders a document as the text of one output format.
pub trait Exporter {
    fn render(&self, document: &dyn Document) -> String;
}

/// Settings of the human-readable formats.
#[derive(Debug, Clone, Copy, Default)]
pub struct Layout {
    /// Show only this many classes, largest share first.
    pub top: Option<usize>,
}

pub fn exporter(format: Format, layout: Layout) -> Box<dyn Exporter> {
    match format {
        Format::Table => Box::new(Table { layout }),
        Format::Json => Box::new(Json),
        Format::Markdown => Box::new(Markdown { layout }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::report::*;

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
            components: None,
            groups: None,
            images: None,
            matching: None,
            warnings: vec!["two targets are ignored".into()],
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

    #[test]
    fn json_reads_back_as_the_same_report() {
        let report = sample();
        let text = Json.render(&report);
        assert_eq!(serde_json::from_str::<Report>(&text).unwrap(), report);
    }
}
