use super::view::{is_label_column, printable};
use super::{Document, Exporter, Layout};

/// GitHub-flavoured markdown, for pull-request comments and job summaries.
pub struct Markdown {
    pub layout: Layout,
}

/// A table cell or a line: control characters as visible escapes, `|` as
/// `\|` so that no text splits a row.
fn escape(cell: &str) -> String {
    printable(cell).replace('|', "\\|")
}

/// `value` as a code span: fenced with more backticks than it holds in a
/// row, so a backtick in a file name cannot end the span early.
fn code(value: &str) -> String {
    let text = escape(value);
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') { " " } else { "" };
    format!("{fence}{pad}{text}{pad}{fence}")
}

impl Exporter for Markdown {
    fn render(&self, document: &dyn Document) -> String {
        let view = document.view(self.layout);
        let mut out = format!("## losscope: {}\n\n| | |\n|---|---|\n", escape(&view.title));
        for (key, value) in &view.summary {
            out.push_str(&format!("| {} | {} |\n", escape(key), code(value)));
        }
        for section in &view.sections {
            out.push_str(&format!("\n### {}\n\n", escape(&section.title)));
            let header: Vec<String> = section.header.iter().map(|h| escape(h)).collect();
            out.push_str(&format!("| {} |\n", header.join(" | ")));
            let rule: Vec<&str> =
                section.header.iter().map(|h| if is_label_column(h) { "---" } else { "---:" }).collect();
            out.push_str(&format!("|{}|\n", rule.join("|")));
            for row in section.text_rows() {
                let cells: Vec<String> = row.iter().map(|c| escape(c)).collect();
                out.push_str(&format!("| {} |\n", cells.join(" | ")));
            }
            if let Some(note) = &section.note {
                out.push_str(&format!("\n_{}_\n", escape(note)));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_span_outlasts_the_backticks_it_holds() {
        assert_eq!(code("dump.npz"), "`dump.npz`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x``"), "``` `x`` ```");
        assert_eq!(code("a|b\x1b"), "`a\\|b\\x1b`");
    }
}
