use std::fmt::Write;

use super::chart::escape_xml;
use super::view::is_label_column;
use super::{Document, Exporter, Layout};

/// One self-contained HTML page: the summary, every chart as inline SVG, the
/// tables and the warnings. No script, no stylesheet or font from elsewhere:
/// it opens offline and prints as it shows.
pub struct Html {
    pub layout: Layout,
}

const STYLE: &str = "body{font-family:'DejaVu Sans',Arial,sans-serif;margin:24px;color:#111;max-width:1100px}\
h1{font-size:22px}h2{font-size:18px;margin-top:28px}\
table{border-collapse:collapse;margin:8px 0;font-size:13px}\
td,th{border:1px solid #ccc;padding:3px 8px}th{background:#f0f0f0}\
td.num{text-align:right;font-variant-numeric:tabular-nums}\
table.summary td:first-child{font-weight:bold}\
figure{margin:16px 0}.note{color:#555;font-style:italic}\
ul.warnings li{color:#8a4b00}";

impl Exporter for Html {
    fn render(&self, document: &dyn Document) -> String {
        let view = document.view(self.layout);
        let title = escape_xml(&view.title);
        let mut out = String::new();
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>losscope: {title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>losscope: {title}</h1>\n"
        );
        out.push_str("<table class=\"summary\">\n");
        for (key, value) in &view.summary {
            let _ = writeln!(out, "<tr><td>{}</td><td>{}</td></tr>", escape_xml(key), escape_xml(value));
        }
        out.push_str("</table>\n");
        if !view.warnings.is_empty() {
            out.push_str("<h2>Warnings</h2>\n<ul class=\"warnings\">\n");
            for warning in &view.warnings {
                let _ = writeln!(out, "<li>{}</li>", escape_xml(warning));
            }
            out.push_str("</ul>\n");
        }
        let charts = document.charts();
        if !charts.is_empty() {
            out.push_str("<h2>Charts</h2>\n");
            for chart in &charts {
                let _ = write!(out, "<figure id=\"chart-{}\">\n{}</figure>\n", chart.name, chart.svg());
            }
        }
        for section in &view.sections {
            let _ = writeln!(out, "<h2>{}</h2>\n<table>", escape_xml(&section.title));
            out.push_str("<tr>");
            for name in &section.header {
                let _ = write!(out, "<th>{}</th>", escape_xml(name));
            }
            out.push_str("</tr>\n");
            for row in section.text_rows() {
                out.push_str("<tr>");
                for (i, cell) in row.iter().enumerate() {
                    let numeric = section.header.get(i).is_some_and(|h| !is_label_column(h));
                    let class = if numeric { " class=\"num\"" } else { "" };
                    let _ = write!(out, "<td{class}>{}</td>", escape_xml(cell));
                }
                out.push_str("</tr>\n");
            }
            out.push_str("</table>\n");
            if let Some(note) = &section.note {
                let _ = writeln!(out, "<p class=\"note\">{}</p>", escape_xml(note));
            }
        }
        out.push_str("</body>\n</html>\n");
        out
    }
}
