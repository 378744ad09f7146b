//! Output formats: one exporter per format behind [`Exporter`]. Table and
//! markdown share the same [`View`] of a report (what a person reads); JSON
//! is the report itself.

mod json;
mod markdown;
mod table;
mod view;

pub use json::Json;
pub use markdown::Markdown;
pub use table::Table;

use crate::cli::Format;
use crate::report::Report;

/// Renders a report as the bytes of one output format.
pub trait Exporter {
    fn render(&self, report: &Report) -> String;
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
