use super::Exporter;
use crate::report::Report;

/// The report as pretty-printed JSON, the schema of `docs/report-schema.md`.
pub struct Json;

impl Exporter for Json {
    fn render(&self, report: &Report) -> String {
        let mut text = serde_json::to_string_pretty(report).expect("a report always serialises");
        text.push('\n');
        text
    }
}
