use comfy_table::{CellAlignment, presets};

use super::view::{is_label_column, printable};
use super::{Document, Exporter, Layout};

/// Tables for a terminal; warnings are left to stderr. No colour is
/// ever written, so NO_COLOR and pipes get the same text. Every piece of
/// text goes through [`printable`]: a class name or a file name cannot
/// reach the terminal as a control sequence, nor split a row.
pub struct Table {
    pub layout: Layout,
}

impl Exporter for Table {
    fn render(&self, document: &dyn Document) -> String {
        let view = document.view(self.layout);
        let text = |s: &str| printable(s).into_owned();
        let mut out = format!("{}\n", text(&view.title));
        let summary: Vec<(String, String)> = view.summary.iter().map(|(k, v)| (text(k), text(v))).collect();
        let key_width = summary.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
        for (key, value) in &summary {
            out.push_str(&format!("  {key:<key_width$}  {value}\n"));
        }
        for section in &view.sections {
            let mut table = comfy_table::Table::new();
            table.load_style(presets::UTF8_FULL_CONDENSED);
            table.set_header(section.header.iter().map(|h| text(h)));
            for row in section.text_rows() {
                table.add_row(row.iter().map(|cell| text(cell)));
            }
            for (i, name) in section.header.iter().enumerate() {
                if !is_label_column(name)
                    && let Some(column) = table.column_mut(i)
                {
                    column.set_cell_alignment(CellAlignment::Right);
                }
            }
            out.push_str(&format!("\n{}\n{}\n", text(&section.title), table.trim_fmt()));
            if let Some(note) = &section.note {
                out.push_str(&format!("{}\n", text(note)));
            }
        }
        // Warnings go to stderr, not into the table.
        out
    }
}
