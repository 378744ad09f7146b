use comfy_table::{CellAlignment, presets};

use super::view::is_label_column;
use super::{Document, Exporter, Layout};

/// Tables for a terminal; warnings are left to stderr. No colour is
/// ever written, so NO_COLOR and pipes get the same text.
pub struct Table {
    pub layout: Layout,
}

impl Exporter for Table {
    fn render(&self, document: &dyn Document) -> String {
        let view = document.view(self.layout);
        let mut out = format!("{}\n", view.title);
        let key_width = view.summary.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (key, value) in &view.summary {
            out.push_str(&format!("  {key:<key_width$}  {value}\n"));
        }
        for section in &view.sections {
            let mut table = comfy_table::Table::new();
            table.load_style(presets::UTF8_FULL_CONDENSED);
            table.set_header(section.header.clone());
            for row in &section.rows {
                table.add_row(row.clone());
            }
            for (i, name) in section.header.iter().enumerate() {
                if !is_label_column(name)
                    && let Some(column) = table.column_mut(i)
                {
                    column.set_cell_alignment(CellAlignment::Right);
                }
            }
            out.push_str(&format!("\n{}\n{}\n", section.title, table.trim_fmt()));
            if let Some(note) = &section.note {
                out.push_str(&format!("{note}\n"));
            }
        }
        // Warnings go to stderr, not into the table.
        out
    }
}
