//! Output formats: one exporter per format behind [`Exporter`]. Table and
//! markdown draw the same [`View`] of a document (what a person reads);
//! JSON is the document itself. Documents (a loss report, weights, a
//! diff) implement [`Document`] beside their own types.

mod chart;
mod html;
mod json;
mod markdown;
mod table;
mod view;

pub use chart::{Chart, Line, Plot, Series, Unit, escape_xml};
pub use html::Html;
pub use json::{Json, NONFINITE, infinities, json_text};
pub use markdown::Markdown;
pub use table::Table;
pub use view::{Cell, Section, View, bar, exact, list_or_none, num, percent, printable};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Markdown,
    /// One self-contained page with the charts as inline SVG
    Html,
    /// One chart alone, named by --chart
    Svg,
}

/// Something losscope prints: a loss report, or the difference of two.
pub trait Document {
    /// What a person reads of it.
    fn view(&self, layout: Layout) -> View;
    /// Its JSON form (the schema in docs/).
    fn json(&self) -> String;
    /// Its charts, in the order a page shows them.
    fn charts(&self) -> Vec<Chart>;
}

/// Renders a document as the text of one output format.
pub trait Exporter {
    fn render(&self, document: &dyn Document) -> String;
}

/// Settings of the human-readable formats.
#[derive(Debug, Clone, Copy, Default)]
pub struct Layout {
    /// Show only this many rows of a ranked table (classes, images),
    /// largest share first; `None` shows them all.
    pub top: Option<usize>,
}

impl Layout {
    /// How many of `rows` ranked rows are shown, and the note for the
    /// others (`what` names them: classes, images) when some are cut.
    pub fn cut(&self, rows: usize, what: (&str, &str)) -> (usize, Option<String>) {
        let shown = self.top.unwrap_or(rows).min(rows);
        let hidden = rows - shown;
        let noun = if hidden == 1 { what.0 } else { what.1 };
        (shown, (hidden > 0).then(|| format!("{hidden} more {noun} (--top all)")))
    }
}

/// One chart of a document alone, as an SVG file.
pub struct Svg {
    /// The chart's name; the driver checks it names one of the document's.
    pub chart: String,
}

impl Exporter for Svg {
    fn render(&self, document: &dyn Document) -> String {
        document.charts().iter().find(|c| c.name == self.chart).map(Chart::svg).unwrap_or_default()
    }
}

pub fn exporter(format: Format, layout: Layout, chart: Option<&str>) -> Box<dyn Exporter> {
    match format {
        Format::Table => Box::new(Table { layout }),
        Format::Json => Box::new(Json),
        Format::Markdown => Box::new(Markdown { layout }),
        Format::Html => Box::new(Html { layout }),
        Format::Svg => Box::new(Svg { chart: chart.unwrap_or_default().to_string() }),
    }
}
