//! Charts drawn on the server as SVG: bars for sums, a range with its
//! average for discrete types. No script draws them and no other origin
//! serves them; each page also shows the numbers in a table, which is the
//! chart's text alternative.

use std::fmt::Write;

/// One bar or range: its label on the axis and its figures.
pub struct Point {
    pub label: String,
    /// Bottom and top of the bar (a sum's bottom is zero).
    pub low: Option<f64>,
    pub high: Option<f64>,
    /// A mark inside the range (the average).
    pub mark: Option<f64>,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 72.0;
const BOTTOM: f64 = 34.0;
/// Room above the plot for the unit, clear of the top gridline's label.
const TOP: f64 = 34.0;

/// A round step for about four gridlines up to `max`.
fn grid_step(max: f64) -> f64 {
    let raw = max / 4.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(raw)
}

fn number(v: f64) -> String {
    if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The SVG of `points`, described for screen readers by `title`. Text is
/// escaped here because the result is inserted into the page as markup.
pub fn svg(title: &str, unit: &str, points: &[Point]) -> String {
    let max = points.iter().filter_map(|p| p.high).fold(0.0f64, f64::max);
    let min = points.iter().filter_map(|p| p.low).fold(0.0f64, f64::min);
    let step = if max > min { grid_step(max - min) } else { 1.0 };
    let top = (max / step).ceil().max(1.0) * step;
    let bottom = (min / step).floor() * step;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let y = |v: f64| TOP + plot_h * (1.0 - (v - bottom) / (top - bottom));
    let slot = (WIDTH - LEFT) / points.len().max(1) as f64;
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>{}</title>",
        escape(title),
        escape(title)
    );
    let mut v = bottom;
    while v <= top + step / 2.0 {
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{WIDTH}\" y1=\"{0:.1}\" y2=\"{0:.1}\"/>\
             <text class=\"axis\" x=\"{1}\" y=\"{2:.1}\" text-anchor=\"end\">{3}</text>",
            y(v),
            LEFT - 6.0,
            y(v) + 4.0,
            escape(&number(v))
        );
        v += step;
    }
    let _ = write!(
        out,
        "<text class=\"axis\" x=\"4\" y=\"{}\">{}</text>",
        TOP - 14.0,
        escape(unit)
    );
    let every = (points.len() / 8).max(1);
    for (i, p) in points.iter().enumerate() {
        let x = LEFT + slot * i as f64;
        if let (Some(low), Some(high)) = (p.low, p.high) {
            let (y0, y1) = (y(low), y(high));
            let h = (y0 - y1).max(1.0);
            let _ = write!(
                out,
                "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\"/>",
                x + slot * 0.15,
                y1.min(y0 - 1.0),
                slot * 0.7
            );
        }
        if let Some(mark) = p.mark {
            let _ = write!(
                out,
                "<line class=\"mark\" x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{2:.1}\" y2=\"{2:.1}\"/>",
                x + slot * 0.1,
                x + slot * 0.9,
                y(mark)
            );
        }
        if i % every == 0 {
            let _ = write!(
                out,
                "<text class=\"axis\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x + slot / 2.0,
                HEIGHT - 8.0,
                escape(&p.label)
            );
        }
    }
    out.push_str("</svg>");
    out
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(label: &str, v: f64) -> Point {
        Point {
            label: label.into(),
            low: Some(0.0),
            high: Some(v),
            mark: None,
        }
    }

    #[test]
    fn bars_scale_to_a_round_top() {
        let svg = svg("Steps", "count", &[bar("Mon", 4000.0), bar("Tue", 9000.0)]);
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<rect").count(), 2);
        // Gridlines at 0, 2500, ... 10000: the tallest bar fits below the top.
        assert!(svg.contains(">10000</text>"), "{svg}");
        assert!(!svg.contains(">12500</text>"));
    }

    #[test]
    fn empty_buckets_draw_no_bar() {
        let mut empty = bar("Wed", 0.0);
        empty.high = None;
        let svg = svg("Steps", "count", &[bar("Mon", 5.0), empty]);
        assert_eq!(svg.matches("<rect").count(), 1);
    }

    #[test]
    fn text_is_escaped() {
        let svg = svg("<script>", "\"&", &[bar("<b>", 1.0)]);
        assert!(!svg.contains("<script>") && !svg.contains("<b>"));
        assert!(svg.contains("&lt;script&gt;") && svg.contains("&quot;&amp;"));
    }

    #[test]
    fn ranges_keep_their_bottom_and_mark() {
        let p = Point {
            label: "1".into(),
            low: Some(50.0),
            high: Some(150.0),
            mark: Some(80.0),
        };
        let svg = svg("Heart rate", "count/min", &[p]);
        assert_eq!(svg.matches("class=\"mark\"").count(), 1);
        assert_eq!(grid_step(150.0), 50.0);
        assert_eq!(grid_step(9000.0), 2500.0);
    }
}
