//! What a person reads of a document, independent of how it is drawn: a
//! summary of key/value lines and titled tables of text cells, and the
//! cell formats every document shares.

/// A titled table.
pub struct Section {
    pub title: String,
    pub header: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
    /// A line under the table (classes left out by --top).
    pub note: Option<String>,
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

/// A number for a table cell: six decimals where they are readable,
/// scientific notation where they are not.
pub fn num(x: Option<f64>) -> String {
    match x {
        None => "—".into(),
        Some(x) if !x.is_finite() => x.to_string(),
        Some(0.0) => "0".into(),
        Some(x) if (1e-3..1e6).contains(&x.abs()) => format!("{x:.6}"),
        Some(x) => format!("{x:.4e}"),
    }
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
}
