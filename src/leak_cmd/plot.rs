//! The `--plot` SVG of `leak analyze`: the series (min/max per pixel column so a week of samples
//! stays a small file), the detector's lower envelope, the fitted trend (extended dashed towards the
//! limit), the limit, the onset and the detection point. Hand-written SVG, no dependencies; it draws
//! what the report already computed and decides nothing.

use std::fmt::Write as _;

use super::AnalysisReport;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 48.0;

/// Renders the report as an SVG document.
pub fn render_svg(report: &AnalysisReport, title: &str) -> String {
    let samples = &report.series;
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return String::from("<svg xmlns=\"http://www.w3.org/2000/svg\"/>");
    };
    let (t0, mut t1) = (first.t, last.t);
    if t1 <= t0 {
        t1 = t0 + 1.0;
    }
    let mut lo = samples
        .iter()
        .map(|s| s.value)
        .fold(f64::INFINITY, f64::min);
    let mut hi = samples
        .iter()
        .map(|s| s.value)
        .fold(f64::NEG_INFINITY, f64::max);
    if let Some(limit) = report.limit {
        hi = hi.max(limit);
        lo = lo.min(limit);
    }
    if hi <= lo {
        hi = lo + 1.0;
    }
    let pad = 0.05 * (hi - lo);
    let (lo, hi) = (lo - pad, hi + pad);
    let x = |t: f64| LEFT + (t - t0) / (t1 - t0) * (WIDTH - LEFT - RIGHT);
    let y = |v: f64| TOP + (hi - v) / (hi - lo) * (HEIGHT - TOP - BOTTOM);

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="22" font-size="14">{}</text>"#,
        escape(title)
    );

    // Axes and ticks.
    let _ = writeln!(
        svg,
        r##"<path d="M{LEFT},{TOP} V{} H{}" fill="none" stroke="#444"/>"##,
        HEIGHT - BOTTOM,
        WIDTH - RIGHT
    );
    for i in 0..=4 {
        let v = lo + (hi - lo) * f64::from(i) / 4.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y(v) + 4.0,
            escape(&super::format_amount(v)),
            y = y(v)
        );
    }
    for i in 0..=5 {
        let t = t0 + (t1 - t0) * f64::from(i) / 5.0;
        let anchor = match i {
            0 => "start",
            5 => "end",
            _ => "middle",
        };
        // "2024-06-01T00:00:00Z" -> "06-01 00:00"
        let stamp = super::input::format_rfc3339(t);
        let label = stamp
            .get(5..16)
            .map_or(stamp.clone(), |s| s.replace('T', " "));
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="{anchor}">{}</text>"#,
            x(t),
            HEIGHT - BOTTOM + 18.0,
            escape(&label)
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="end" fill="#555">UTC</text>"##,
        WIDTH - RIGHT,
        HEIGHT - BOTTOM + 34.0
    );

    // The series: min and max per pixel column.
    let columns = (WIDTH - LEFT - RIGHT) as usize;
    let mut bins: Vec<Option<(f64, f64)>> = vec![None; columns + 1];
    for s in samples {
        let col = (((s.t - t0) / (t1 - t0)) * columns as f64) as usize;
        let bin = &mut bins[col.min(columns)];
        *bin = Some(bin.map_or((s.value, s.value), |(a, b)| {
            (a.min(s.value), b.max(s.value))
        }));
    }
    let mut path = String::new();
    for (col, bin) in bins.iter().enumerate() {
        if let Some((a, b)) = bin {
            let px = LEFT + col as f64;
            let _ = write!(path, "M{px:.1},{:.1}V{:.1}", y(*b), y(*a) + 0.5);
        }
    }
    let _ = writeln!(
        svg,
        r##"<path d="{path}" stroke="#4a7bd0" stroke-width="1" fill="none"/>"##
    );

    // Lower envelope.
    if report.envelope.len() > 1 {
        let pts: Vec<String> = report
            .envelope
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
            .collect();
        let _ = writeln!(
            svg,
            r##"<polyline points="{}" fill="none" stroke="#2a9d4b" stroke-width="1.5"/>"##,
            pts.join(" ")
        );
    }

    // Limit.
    if let Some(limit) = report.limit {
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#c0392b" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" text-anchor="end" fill="#c0392b">limit {}</text>"##,
            WIDTH - RIGHT,
            WIDTH - RIGHT - 4.0,
            y(limit) - 5.0,
            escape(&super::format_amount(limit)),
            y = y(limit)
        );
    }

    // Fitted trend: through the last envelope point with the reported slope, from the onset (or the
    // segment start) to the end; dashed beyond, up to the limit if it is within the plot.
    if let (Some(&(te, ve)), true) = (report.envelope.last(), report.slope_per_hour != 0.0) {
        let slope = report.slope_per_hour / 3600.0;
        let from = report.onset.unwrap_or(report.segment_start).max(t0);
        let at = |t: f64| ve + slope * (t - te);
        let _ = writeln!(
            svg,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#e67e22" stroke-width="2"/>"##,
            x(from),
            y(at(from)),
            x(te),
            y(at(te))
        );
        if let (Some(limit), true) = (report.limit, slope > 0.0) {
            let reach = (te + (limit - ve) / slope).min(t1);
            if reach > te {
                let _ = writeln!(
                    svg,
                    r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#e67e22" stroke-width="1.5" stroke-dasharray="4 4"/>"##,
                    x(te),
                    y(at(te)),
                    x(reach),
                    y(at(reach))
                );
            }
        }
    }

    // Onset and detection.
    if let Some(onset) = report.onset {
        let _ = writeln!(
            svg,
            r##"<line x1="{xo:.1}" x2="{xo:.1}" y1="{TOP}" y2="{}" stroke="#888" stroke-dasharray="2 3"/><text x="{:.1}" y="{}" fill="#555">onset</text>"##,
            HEIGHT - BOTTOM,
            x(onset) + 3.0,
            TOP + 12.0,
            xo = x(onset)
        );
    }
    if let Some(detected) = report.detected_at {
        let value = samples
            .iter()
            .find(|s| s.t >= detected)
            .map_or(last.value, |s| s.value);
        let _ = writeln!(
            svg,
            r##"<line x1="{xd:.1}" x2="{xd:.1}" y1="{TOP}" y2="{}" stroke="#c0392b"/><circle cx="{xd:.1}" cy="{:.1}" r="5" fill="#c0392b"/><text x="{:.1}" y="{}" fill="#c0392b">leak detected</text>"##,
            HEIGHT - BOTTOM,
            y(value),
            x(detected) + 6.0,
            TOP + 26.0,
            xd = x(detected)
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="end" fill="#555"><tspan fill="#4a7bd0">series</tspan>  <tspan fill="#2a9d4b">lower envelope</tspan>  <tspan fill="#e67e22">trend</tspan></text>"##,
        WIDTH - RIGHT,
        22
    );
    svg.push_str("</svg>\n");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
