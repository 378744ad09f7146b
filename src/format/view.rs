//! What a person reads of a document, independent of how it is drawn: a
//! summary of key/value lines and titled tables of text cells, and the
//! cell formats every document shares.

/// A titled table.
pub struct Section {
    pub title: String,
    pub header: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
    /// A line under the table (classes left out by --top).
    pub note: Option<String>,
}

/// A table cell: text as it stands, or a number written in its column's
/// notation.
pub enum Cell {
    Text(String),
    /// `None` is undefined (a mean of nothing).
    Number(Option<f64>),
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell::Text(text)
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Cell {
        Cell::Text(text.to_string())
    }
}

impl Section {
    /// The rows as text, every column's numbers in one notation chosen from
    /// their range (no `1.9464e7` beside `70598.389912`).
    pub fn text_rows(&self) -> Vec<Vec<String>> {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let notations: Vec<Notation> = (0..columns)
            .map(|column| {
                Notation::for_values(self.rows.iter().filter_map(|row| match row.get(column) {
                    Some(Cell::Number(x)) => *x,
                    _ => None,
                }))
            })
            .collect();
        self.rows
            .iter()
            .map(|row| {
                row.iter()
                    .zip(&notations)
                    .map(|(cell, notation)| match cell {
                        Cell::Text(text) => text.clone(),
                        Cell::Number(x) => notation.write(*x),
                    })
                    .collect()
            })
            .collect()
    }
}

/// How numbers are written: fixed with some decimals, or scientific.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Notation {
    Fixed(usize),
    Scientific,
}

impl Notation {
    /// The notation that shows every one of `values` readably: six
    /// decimals from 1e-4 to 1e6, three for large values, scientific when
    /// the range is wider than one fixed notation reads well.
    fn for_values(values: impl Iterator<Item = f64>) -> Notation {
        let magnitudes = values.filter(|x| x.is_finite() && *x != 0.0).map(f64::abs);
        let (least, most) = magnitudes.fold((f64::INFINITY, 0.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
        if most == 0.0 || (least >= 1e-4 && most < 1e6) {
            Notation::Fixed(6)
        } else if least >= 0.1 && most < 1e12 {
            Notation::Fixed(3)
        } else {
            Notation::Scientific
        }
    }

    fn write(self, x: Option<f64>) -> String {
        match x {
            None => "—".into(),
            Some(x) if !x.is_finite() => x.to_string(),
            Some(0.0) => "0".into(),
            Some(x) => match self {
                Notation::Fixed(decimals) => format!("{x:.decimals$}"),
                Notation::Scientific => format!("{x:.4e}"),
            },
        }
    }
}

pub struct View {
    pub title: String,
    pub summary: Vec<(String, String)>,
    pub sections: Vec<Section>,
    pub warnings: Vec<String>,
}

const BAR_WIDTH: usize = 20;

/// Columns of labels, aligned left; every other column holds numbers.
pub fn is_label_column(name: &str) -> bool {
    matches!(name, "" | "name" | "field" | "group" | "p_t" | "g" | "value" | "bin" | "pair" | "index")
}

/// A bar of `share` (0..=1) in eighths of a character.
pub fn bar(share: Option<f64>) -> String {
    let Some(share) = share else {
        return String::new();
    };
    let eighths = (share.clamp(0.0, 1.0) * (BAR_WIDTH * 8) as f64).round() as usize;
    let mut bar = "█".repeat(eighths / 8);
    if !eighths.is_multiple_of(8) {
        bar.push(['▏', '▎', '▍', '▌', '▋', '▊', '▉'][eighths % 8 - 1]);
    }
    bar
}

/// One number in a line of text, in the notation a column of it alone
/// would take.
pub fn num(x: Option<f64>) -> String {
    Notation::for_values(x.into_iter()).write(x)
}

pub fn percent(x: Option<f64>) -> String {
    match x {
        None => "—".into(),
        Some(x) if !x.is_finite() => x.to_string(),
        Some(x) => format!("{:.1}%", x * 100.0),
    }
}

/// Exact figures: the shortest text that reads back as the same f64
/// (`inf` and `-inf` for infinities); `None` is NaN or undefined.
pub fn exact(x: Option<f64>) -> String {
    x.map_or_else(|| "null (not a number)".into(), |x| x.to_string())
}

/// Up to five items joined, or `none`.
pub fn list_or_none(items: &[String]) -> String {
    match items.len() {
        0 => "none".into(),
        n if n <= 5 => items.join("; "),
        n => format!("{}; … {} in all", items[..5].join("; "), n),
    }
}

/// `text` with every control character (ESC, BEL, CR, newline, tab, DEL,
/// the C1 controls) and every bidirectional override written as a visible
/// escape (`\x1b`, `\n`, `\u{202e}`), so that text from the user (class
/// names, file names, report fields) can neither drive the terminal nor
/// break a table's rows.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let hidden = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(hidden) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if hidden(c) && (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if hidden(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible_escapes() {
        assert_eq!(printable("cat"), "cat");
        assert_eq!(printable("é ü 猫 █"), "é ü 猫 █");
        assert_eq!(printable("a\x1b[31mb\x07c\rd\ne\tf\x7f"), "a\\x1b[31mb\\x07c\\rd\\ne\\tf\\x7f");
        assert_eq!(printable("\u{9b}x\u{202e}y"), "\\x9bx\\u{202e}y");
    }

    #[test]
    fn a_column_writes_its_numbers_in_one_notation() {
        let column = |values: &[Option<f64>]| {
            let rows = values.iter().map(|&x| vec![Cell::Number(x)]).collect();
            let section = Section { title: String::new(), header: vec!["x"], rows, note: None };
            section.text_rows().into_iter().map(|row| row[0].clone()).collect::<Vec<_>>()
        };
        assert_eq!(column(&[Some(0.5), Some(12.25), None, Some(0.0)]), ["0.500000", "12.250000", "—", "0"]);
        assert_eq!(column(&[Some(19464012.3456), Some(70598.389912)]), ["19464012.346", "70598.390"]);
        assert_eq!(column(&[Some(4.5276e-4), Some(3.623265)]), ["0.000453", "3.623265"]);
        assert_eq!(column(&[Some(2e-9), Some(3.5)]), ["2.0000e-9", "3.5000e0"]);
        assert_eq!(column(&[Some(f64::NAN), Some(1.0)]), ["NaN", "1.000000"]);
        // Text cells keep their text beside the numbers.
        let section = Section {
            title: String::new(),
            header: vec!["x"],
            rows: vec![vec![Cell::from("3")], vec![Cell::Number(Some(2e7))]],
            note: None,
        };
        assert_eq!(section.text_rows(), [["3"], ["20000000.000"]]);
    }
}
