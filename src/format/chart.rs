//! Charts as data, and their drawing as SVG. A document describes its charts
//! ([`Chart`]); [`Chart::svg`] draws one by hand into a small, standalone SVG
//! with a title, labelled axes, a legend, and every value written beside its
//! mark, so nothing is read from colour alone. The same chart gives the same
//! bytes every time.

use std::fmt::Write;

use super::view::printable;

/// One chart of a document.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Its name for `--chart`.
    pub name: &'static str,
    pub title: String,
    pub plot: Plot,
}

/// What a chart draws.
#[derive(Debug, Clone, PartialEq)]
pub enum Plot {
    /// Horizontal bars, one group per category, one bar per series.
    Bars {
        /// What the categories are (the vertical axis).
        category_axis: String,
        /// What the bars measure (the horizontal axis).
        value_axis: String,
        categories: Vec<String>,
        series: Vec<Series>,
        unit: Unit,
    },
    /// Lines through points over [0, 1] × [0, 1].
    Curve {
        x_axis: String,
        y_axis: String,
        lines: Vec<Line>,
        /// Draw the diagonal y = x as a reference, with this name.
        diagonal: Option<String>,
    },
}

/// A named set of bar values, one per category; `None` draws no bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

/// A named line through points, drawn and labelled in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Which points carry their value as a text label.
    pub labelled: Vec<bool>,
}

/// How bar values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Shares in [0, 1], written as percentages.
    Share,
    /// Plain numbers, which may be negative.
    Number,
}

/// Series colours, dark enough for white text beside them and apart in hue
/// and lightness.
const PALETTE: [&str; 4] = ["#1f5f99", "#d9822b", "#3a8f4b", "#8c4f9e"];
const WIDTH: f64 = 760.0;
const LABEL_WIDTH: f64 = 190.0;
const FONT: &str = "font-family=\"DejaVu Sans, Arial, sans-serif\"";

/// Text safe inside XML and HTML: markup characters escaped, control
/// characters shown as the visible escapes every format uses.
pub fn escape_xml(text: &str) -> String {
    let text = printable(text);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters, with an ellipsis when cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let kept: String = text.chars().take(max - 1).collect();
        format!("{kept}…")
    }
}

/// A coordinate with two decimals: enough for the eye, and stable bytes.
fn c(x: f64) -> String {
    format!("{:.2}", x)
}

fn value_text(x: f64, unit: Unit) -> String {
    match unit {
        Unit::Share => format!("{:.1}%", x * 100.0),
        Unit::Number if x == 0.0 => "0".into(),
        Unit::Number if (1e-3..1e6).contains(&x.abs()) => format!("{x:.4}"),
        Unit::Number => format!("{x:.3e}"),
    }
}

/// Round tick steps: 1, 2 or 5 times a power of ten, about four across `span`.
fn tick_step(span: f64) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let rough = span / 4.0;
    let power = 10f64.powf(rough.log10().floor());
    let unit = rough / power;
    let factor = if unit <= 1.0 {
        1.0
    } else if unit <= 2.0 {
        2.0
    } else if unit <= 5.0 {
        5.0
    } else {
        10.0
    };
    factor * power
}

impl Chart {
    /// The chart as a standalone SVG document.
    pub fn svg(&self) -> String {
        let mut body = String::new();
        let height = match &self.plot {
            Plot::Bars { category_axis, value_axis, categories, series, unit } => {
                bars(&mut body, category_axis, value_axis, categories, series, *unit)
            }
            Plot::Curve { x_axis, y_axis, lines, diagonal } => {
                curve(&mut body, x_axis, y_axis, lines, diagonal.as_deref())
            }
        };
        let title = escape_xml(&self.title);
        let mut svg = String::new();
        let _ = write!(
            svg,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
             role=\"img\" aria-labelledby=\"{name}-title\">\n\
             <title id=\"{name}-title\">{title}</title>\n\
             <rect width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>\n\
             <text x=\"12\" y=\"24\" {FONT} font-size=\"16\" font-weight=\"bold\" fill=\"#111111\">{title}</text>\n",
            w = c(WIDTH),
            h = c(height),
            name = self.name,
        );
        svg.push_str(&body);
        svg.push_str("</svg>\n");
        svg
    }
}

/// A legend row of coloured squares and names, at `y`.
fn legend(out: &mut String, names: &[&str], y: f64) {
    let mut x = LABEL_WIDTH;
    for (i, name) in names.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let _ = writeln!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{colour}\"/>\
             <text x=\"{}\" y=\"{}\" {FONT} font-size=\"12\" fill=\"#111111\">{}</text>",
            c(x),
            c(y - 10.0),
            c(x + 16.0),
            c(y),
            escape_xml(name)
        );
        x += 28.0 + 7.0 * name.chars().count() as f64;
    }
}

/// Horizontal grouped bars; returns the height used.
fn bars(
    out: &mut String,
    category_axis: &str,
    value_axis: &str,
    categories: &[String],
    series: &[Series],
    unit: Unit,
) -> f64 {
    let bar = 14.0;
    let gap = 8.0;
    let group = bar * series.len().max(1) as f64 + gap;
    let top = 64.0;
    let plot_left = LABEL_WIDTH;
    let plot_width = WIDTH - LABEL_WIDTH - 90.0;
    let values = series.iter().flat_map(|s| s.values.iter().flatten()).copied().filter(|v| v.is_finite());
    let (low, high) = values.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let high = if unit == Unit::Share {
        high.max(0.05)
    } else if high == low {
        low + 1.0
    } else {
        high
    };
    let span = high - low;
    let x_of = |v: f64| plot_left + (v - low) / span * plot_width;
    let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
    legend(out, &names, 46.0);
    if categories.is_empty() {
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" {FONT} font-size=\"13\" fill=\"#333333\">nothing to show</text>",
            c(plot_left),
            c(top + 16.0)
        );
        return top + 40.0;
    }
    let plot_height = group * categories.len() as f64;
    let bottom = top + plot_height;
    // Gridlines and ticks along the value axis.
    let step = tick_step(span);
    let mut tick = (low / step).ceil() * step;
    while tick <= high + step * 1e-9 {
        let x = x_of(tick);
        let _ = writeln!(
            out,
            "<line x1=\"{x}\" y1=\"{t}\" x2=\"{x}\" y2=\"{b}\" stroke=\"#dddddd\"/>\
             <text x=\"{x}\" y=\"{ty}\" {FONT} font-size=\"11\" text-anchor=\"middle\" fill=\"#333333\">{label}</text>",
            x = c(x),
            t = c(top - 4.0),
            b = c(bottom),
            ty = c(bottom + 14.0),
            label = value_text(tick, unit)
        );
        tick += step;
    }
    for (i, category) in categories.iter().enumerate() {
        let y0 = top + i as f64 * group;
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" {FONT} font-size=\"12\" text-anchor=\"end\" fill=\"#111111\">{}</text>",
            c(plot_left - 8.0),
            c(y0 + (group - gap) / 2.0 + 4.0),
            escape_xml(&clip(category, 24))
        );
        for (k, s) in series.iter().enumerate() {
            let Some(v) = s.values.get(i).copied().flatten().filter(|v| v.is_finite()) else { continue };
            let y = y0 + k as f64 * bar;
            let (a, b) = (x_of(0.0f64.max(low)), x_of(v));
            let colour = PALETTE[k % PALETTE.len()];
            let _ = writeln!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{colour}\"><title>{}: {}</title></rect>\
                 <text x=\"{}\" y=\"{}\" {FONT} font-size=\"11\" fill=\"#111111\">{}</text>",
                c(a.min(b)),
                c(y),
                c((b - a).abs().max(0.5)),
                c(bar - 2.0),
                escape_xml(&s.name),
                value_text(v, unit),
                c(a.max(b) + 4.0),
                c(y + bar - 4.0),
                value_text(v, unit)
            );
        }
    }
    let _ = writeln!(
        out,
        "<line x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{b}\" stroke=\"#333333\"/>\
         <line x1=\"{l}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#333333\"/>\
         <text x=\"{mid}\" y=\"{ly}\" {FONT} font-size=\"12\" text-anchor=\"middle\" fill=\"#111111\">{value_axis}</text>\
         <text x=\"12\" y=\"{cy}\" {FONT} font-size=\"12\" text-anchor=\"middle\" fill=\"#111111\" \
         transform=\"rotate(-90 12 {cy})\">{category_axis}</text>",
        l = c(x_of(0.0f64.max(low))),
        t = c(top - 4.0),
        b = c(bottom),
        r = c(plot_left + plot_width),
        mid = c(plot_left + plot_width / 2.0),
        ly = c(bottom + 32.0),
        cy = c(top + plot_height / 2.0),
        value_axis = escape_xml(value_axis),
        category_axis = escape_xml(category_axis),
    );
    bottom + 44.0
}

/// Lines over the unit square; returns the height used.
fn curve(out: &mut String, x_axis: &str, y_axis: &str, lines: &[Line], diagonal: Option<&str>) -> f64 {
    let top = 64.0;
    let size = 360.0;
    let left = LABEL_WIDTH;
    let x_of = |x: f64| left + x.clamp(0.0, 1.0) * size;
    let y_of = |y: f64| top + (1.0 - y.clamp(0.0, 1.0)) * size;
    let mut names: Vec<&str> = lines.iter().map(|l| l.name.as_str()).collect();
    if let Some(name) = diagonal {
        names.push(name);
    }
    legend(out, &names, 46.0);
    for i in 0..=4 {
        let v = i as f64 / 4.0;
        let _ = writeln!(
            out,
            "<line x1=\"{l}\" y1=\"{y}\" x2=\"{r}\" y2=\"{y}\" stroke=\"#dddddd\"/>\
             <line x1=\"{x}\" y1=\"{t}\" x2=\"{x}\" y2=\"{b}\" stroke=\"#dddddd\"/>\
             <text x=\"{lx}\" y=\"{ly}\" {FONT} font-size=\"11\" text-anchor=\"end\" fill=\"#333333\">{p}%</text>\
             <text x=\"{x}\" y=\"{by}\" {FONT} font-size=\"11\" text-anchor=\"middle\" fill=\"#333333\">{p}%</text>",
            l = c(left),
            r = c(left + size),
            y = c(y_of(v)),
            x = c(x_of(v)),
            t = c(top),
            b = c(top + size),
            lx = c(left - 6.0),
            ly = c(y_of(v) + 4.0),
            by = c(top + size + 14.0),
            p = i * 25
        );
    }
    if diagonal.is_some() {
        let colour = PALETTE[lines.len() % PALETTE.len()];
        let _ = writeln!(
            out,
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{colour}\" stroke-dasharray=\"5 4\"/>",
            c(x_of(0.0)),
            c(y_of(0.0)),
            c(x_of(1.0)),
            c(y_of(1.0))
        );
    }
    for (k, line) in lines.iter().enumerate() {
        let colour = PALETTE[k % PALETTE.len()];
        let points: Vec<String> =
            line.points.iter().map(|&(x, y)| format!("{},{}", c(x_of(x)), c(y_of(y)))).collect();
        let _ = writeln!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>",
            points.join(" ")
        );
        for (i, &(x, y)) in line.points.iter().enumerate() {
            if !line.labelled.get(i).copied().unwrap_or(false) {
                continue;
            }
            let _ = writeln!(
                out,
                "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"3\" fill=\"{colour}\"/>\
                 <text x=\"{tx}\" y=\"{ty}\" {FONT} font-size=\"11\" fill=\"#111111\">{name}: {x:.0}% → {y:.1}%</text>",
                cx = c(x_of(x)),
                cy = c(y_of(y)),
                tx = c(x_of(x) + 6.0),
                ty = c(y_of(y) + 4.0 + 12.0 * k as f64),
                name = escape_xml(&line.name),
                x = x * 100.0,
                y = y * 100.0
            );
        }
    }
    let _ = writeln!(
        out,
        "<line x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{b}\" stroke=\"#333333\"/>\
         <line x1=\"{l}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#333333\"/>\
         <text x=\"{mid}\" y=\"{xy}\" {FONT} font-size=\"12\" text-anchor=\"middle\" fill=\"#111111\">{x_axis}</text>\
         <text x=\"{yx}\" y=\"{cy}\" {FONT} font-size=\"12\" text-anchor=\"middle\" fill=\"#111111\" \
         transform=\"rotate(-90 {yx} {cy})\">{y_axis}</text>",
        l = c(left),
        t = c(top),
        b = c(top + size),
        r = c(left + size),
        mid = c(left + size / 2.0),
        xy = c(top + size + 32.0),
        yx = c(left - 44.0),
        cy = c(top + size / 2.0),
        x_axis = escape_xml(x_axis),
        y_axis = escape_xml(y_axis),
    );
    top + size + 44.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_control_characters_are_escaped() {
        assert_eq!(escape_xml("a<b>&\"c'\u{1b}[31m"), "a&lt;b&gt;&amp;&quot;c&#39;\\x1b[31m");
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(1.0), 0.5);
        assert_eq!(tick_step(100.0), 50.0);
        assert_eq!(tick_step(0.3), 0.1);
    }
}
