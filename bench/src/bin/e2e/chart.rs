//! The report's chart: horizontal bars of envelopes/s in panels, each panel with its own
//! scale (SVG, no dependencies).

use std::fmt::Write;

/// One bar: label, envelopes/s, colour.
pub type Bar = (String, f64, &'static str);

pub fn svg(title: &str, panels: &[(String, Vec<Bar>)]) -> String {
    let (w, bar_h, gap, left, top, head) = (900.0, 30.0, 10.0, 390.0, 40.0, 34.0);
    let bars: usize = panels.iter().map(|(_, b)| b.len()).sum();
    let h = top + panels.len() as f64 * head + bars as f64 * (bar_h + gap) + 20.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="14">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="26" font-size="16" font-weight="bold">{title}</text>
"#
    );
    let mut y = top;
    for (name, bars) in panels {
        let _ = writeln!(svg, r#"<text x="10" y="{:.1}" font-weight="bold">{name}</text>"#, y + 20.0);
        y += head;
        let max = bars.iter().map(|b| b.1).fold(1.0, f64::max);
        let scale = (w - left - 110.0) / max;
        for (label, rate, color) in bars {
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{:.1}" text-anchor="end">{label}</text>
<rect x="{left}" y="{y:.1}" width="{:.1}" height="{bar_h}" fill="{color}"/>
<text x="{:.1}" y="{:.1}">{rate:.0}</text>"#,
                left - 10.0,
                y + bar_h * 0.65,
                (rate * scale).max(1.0),
                left + rate * scale + 8.0,
                y + bar_h * 0.65,
            );
            y += bar_h + gap;
        }
    }
    svg.push_str("</svg>\n");
    svg
}
