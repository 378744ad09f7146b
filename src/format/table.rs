use comfy_table::{CellAlignment, ColumnConstraint, ContentArrangement, Width, presets};

use super::view::{is_label_column, is_prose_column, printable};
use super::{Document, Exporter, Layout};

/// Tables for a terminal; warnings are left to stderr. No colour is
/// ever written, so NO_COLOR and pipes get the same text. Every piece of
/// text goes through [`printable`]: a class name or a file name cannot
/// reach the terminal as a control sequence, nor split a row. Given a
/// width, tables fit it as far as wrapping headers and words can make
/// them: numbers, bars and indices are never split.
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
            let rows: Vec<Vec<String>> =
                section.text_rows().iter().map(|row| row.iter().map(|cell| text(cell)).collect()).collect();
            for row in &rows {
                table.add_row(row);
            }
            if let Some(width) = self.layout.width {
                table.set_width(width).set_content_arrangement(ContentArrangement::Dynamic);
                for (i, name) in section.header.iter().enumerate() {
                    // A header wraps between its words; only prose cells wrap at all.
                    let longest_word = name.split(' ').map(|word| word.chars().count()).max().unwrap_or(0);
                    let widest_cell = match is_prose_column(name) {
                        true => 0,
                        false => rows
                            .iter()
                            .filter_map(|row| row.get(i))
                            .map(|c| c.chars().count())
                            .max()
                            .unwrap_or(0),
                    };
                    if let Some(column) = table.column_mut(i) {
                        // The text and a space either side.
                        let least = u16::try_from(longest_word.max(widest_cell) + 2).unwrap_or(u16::MAX);
                        column.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(least)));
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Cell, Chart, Section, View};

    /// One table: an index, a long class name and a loss.
    struct Names;

    impl Document for Names {
        fn view(&self, _layout: Layout) -> View {
            let name = "a class whose name runs on for many words";
            View {
                title: "names".into(),
                summary: Vec::new(),
                sections: vec![Section {
                    title: "classes".into(),
                    header: vec!["index", "name", "mean loss"],
                    rows: vec![
                        vec!["[0, 17]".into(), name.into(), Cell::Number(Some(12.5))],
                        vec!["[1, 3]".into(), "cat".into(), Cell::Number(Some(0.25))],
                    ],
                    note: None,
                }],
                warnings: Vec::new(),
            }
        }

        fn json(&self) -> String {
            String::new()
        }

        fn charts(&self) -> Vec<Chart> {
            Vec::new()
        }
    }

    #[test]
    fn a_table_fits_a_width_by_wrapping_words_not_numbers() {
        let wide = Table { layout: Layout::default() }.render(&Names);
        assert!(wide.lines().any(|l| l.chars().count() > 40), "{wide}");
        let fitted = Table { layout: Layout { width: Some(40), ..Layout::default() } }.render(&Names);
        assert!(fitted.lines().all(|l| l.chars().count() <= 40), "{fitted}");
        for whole in ["[0, 17]", "12.500000", "0.250000"] {
            assert!(fitted.contains(whole), "{whole} is split:\n{fitted}");
        }
        assert!(fitted.lines().count() > wide.lines().count(), "the name wraps:\n{fitted}");
    }
}
