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
    let non_negative = lo >= 0.0;
    let pad = 0.05 * (hi - lo);
    let (lo, hi) = (lo - pad, hi + pad);
    // A gauge that never goes below zero gets no negative axis.
    let lo = if non_negative { lo.max(0.0) } else { lo };
    // The axis spans whole ticks on round numbers (in the unit the labels use).
    let (scale, unit) = display_unit(lo.abs().max(hi.abs()));
    let step = nice_step((hi - lo) / scale, 5) * scale;
    let lo = (lo / step).floor() * step;
    let hi = (hi / step).ceil() * step;
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
    for v in value_ticks(lo, hi, step) {
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y(v) + 4.0,
            escape(&tick_label(v, scale, unit, step)),
            y = y(v)
        );
    }
    for t in time_ticks(t0, t1) {
        // "2024-06-01T00:00:00Z" -> "06-01 00:00"
        let stamp = super::input::format_rfc3339(t);
        let label = stamp
            .get(5..16)
            .map_or(stamp.clone(), |s| s.replace('T', " "));
        let _ = writeln!(
            svg,
            r##"<line x1="{xt:.1}" x2="{xt:.1}" y1="{}" y2="{}" stroke="#444"/><text x="{xt:.1}" y="{}" text-anchor="middle">{}</text>"##,
            HEIGHT - BOTTOM,
            HEIGHT - BOTTOM + 4.0,
            HEIGHT - BOTTOM + 18.0,
            escape(&label),
            xt = x(t)
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="end" fill="#555">UTC</text>"##,
        WIDTH - RIGHT,
        HEIGHT - BOTTOM + 34.0
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
            r##"<polyline points="{}" fill="none" stroke="#2a9d4b" stroke-width="1.5" stroke-opacity="0.6"/>"##,
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
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#e67e22" stroke-width="2" stroke-opacity="0.6"/>"##,
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

    // The series: min and max per pixel column, drawn over the envelope and the trend (which are
    // half transparent) so no line hides it.
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

/// The unit the value axis is labelled in: GiB or MiB for memory-sized values, else plain.
fn display_unit(max_abs: f64) -> (f64, &'static str) {
    const MIB: f64 = 1024.0 * 1024.0;
    if max_abs >= 1024.0 * MIB {
        (1024.0 * MIB, " GiB")
    } else if max_abs >= MIB {
        (MIB, " MiB")
    } else {
        (1.0, "")
    }
}

/// A round step (1, 2 or 5 times a power of ten) giving about `count` intervals over `span`.
fn nice_step(span: f64, count: u32) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let raw = span / f64::from(count.max(1));
    let power = 10f64.powf(raw.log10().floor());
    let fraction = raw / power;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * power
}

/// The ticks from `lo` to `hi` (both multiples of `step`).
fn value_ticks(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let n = ((hi - lo) / step).round() as i64;
    (0..=n.clamp(0, 50)).map(|i| lo + step * i as f64).collect()
}

/// A tick label with as many decimals as the step needs (`512 MiB`, `1.5 GiB`, `0.25`).
fn tick_label(v: f64, scale: f64, unit: &str, step: f64) -> String {
    let step = step / scale;
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    let v = v / scale;
    let v = if v.abs() < step * 1e-9 { 0.0 } else { v };
    format!("{v:.decimals$}{unit}")
}

/// Time ticks on round UTC times (whole minutes, hours or days), about five to ten of them.
fn time_ticks(t0: f64, t1: f64) -> Vec<f64> {
    const STEPS: [f64; 14] = [
        60.0,
        300.0,
        600.0,
        900.0,
        1800.0,
        3600.0,
        7200.0,
        10800.0,
        21600.0,
        43200.0,
        86400.0,
        172_800.0,
        604_800.0,
        2_592_000.0,
    ];
    let span = t1 - t0;
    let step = STEPS
        .iter()
        .copied()
        .find(|s| span / s <= 8.0)
        .unwrap_or(2_592_000.0);
    let mut t = (t0 / step).ceil() * step;
    let mut ticks = Vec::new();
    while t <= t1 && ticks.len() < 20 {
        ticks.push(t);
        t += step;
    }
    ticks
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_ticks_are_round() {
        assert_eq!(nice_step(10.0, 5), 2.0);
        assert_eq!(nice_step(7.3, 5), 2.0);
        assert_eq!(nice_step(0.9, 5), 0.2);
        assert_eq!(nice_step(230.0, 5), 50.0);
        assert_eq!(value_ticks(0.0, 10.0, 2.0), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        const MIB: f64 = 1024.0 * 1024.0;
        assert_eq!(tick_label(512.0 * MIB, MIB, " MiB", 128.0 * MIB), "512 MiB");
        assert_eq!(
            tick_label(1.5 * 1024.0 * MIB, 1024.0 * MIB, " GiB", 0.5 * 1024.0 * MIB),
            "1.5 GiB"
        );
        // Six hours from 00:07: ticks on the hour.
        let t0 = 1_717_200_000.0 + 420.0;
        let ticks = time_ticks(t0, t0 + 6.0 * 3600.0);
        assert!(ticks.iter().all(|t| t % 3600.0 == 0.0), "{ticks:?}");
        assert_eq!(ticks.len(), 6);
    }
}
