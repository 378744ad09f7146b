//! Output formats: one exporter per format behind [`Exporter`]. Table and
//! markdown draw the same [`View`] of a document (what a person reads);
//! JSON is the document itself. Documents (a loss report, weights, a
//! diff) implement [`Document`] beside their own types.

mod json;
mod markdown;
mod table;
mod view;

pub use json::{Json, NONFINITE, infinities, json_text};
pub use markdown::Markdown;
pub use table::Table;
pub use view::{Section, View, bar, exact, list_or_none, num, percent, printable};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Markdown,
}

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
