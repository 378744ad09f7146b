use super::view::is_label_column;
use super::{Document, Exporter, Layout};

/// GitHub-flavoured markdown, for pull-request comments and job summaries.
pub struct Markdown {
    pub layout: Layout,
}

fn escape(cell: &str) -> String {
    cell.replace('|', "\\|")
}

impl Exporter for Markdown {
    fn render(&self, document: &dyn Document) -> String {
        let view = document.view(self.layout);
        let mut out = format!("## losscope: {}\n\n| | |\n|---|---|\n", view.title);
        for (key, value) in &view.summary {
            out.push_str(&format!("| {} | `{}` |\n", escape(key), escape(value)));
        }
        for section in &view.sections {
            out.push_str(&format!("\n### {}\n\n", section.title));
            let header: Vec<String> = section.header.iter().map(|h| escape(h)).collect();
            out.push_str(&format!("| {} |\n", header.join(" | ")));
            let rule: Vec<&str> =
                section.header.iter().map(|h| if is_label_column(h) { "---" } else { "---:" }).collect();
            out.push_str(&format!("|{}|\n", rule.join("|")));
            for row in &section.rows {
                let cells: Vec<String> = row.iter().map(|c| escape(c)).collect();
                out.push_str(&format!("| {} |\n", cells.join(" | ")));
            }
            if let Some(note) = &section.note {
                out.push_str(&format!("\n_{note}_\n"));
            }
        }
        if !view.warnings.is_empty() {
            out.push_str("\n### Warnings\n\n");
            for warning in &view.warnings {
                out.push_str(&format!("- {}\n", escape(warning)));
            }
        }
        out
    }
}
