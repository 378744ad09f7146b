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
    matches!(name, "" | "name" | "field" | "group" | "p_t" | "g" | "value")
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
