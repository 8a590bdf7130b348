//! The PNG: TPS against client count for the `-S` (simple protocol)
//! scenarios, one line per target through the medians, each repetition a
//! small hollow dot so the spread shows.
//!
//! plotters draws with its bitmap backend; text goes through `ab_glyph`
//! with DejaVu Sans compiled in (the `dejavu` crate), so no system font,
//! fontconfig or freetype is needed.

use crate::load::report::SummaryRow;
use crate::load::runner::RunRecord;
use crate::load::scenario::Scenario;
use crate::load::targets::TargetKind;
use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;

const FONT: &str = "sans-serif";

fn color(t: TargetKind) -> RGBColor {
    match t {
        TargetKind::Direct => RGBColor(90, 90, 90),
        TargetKind::Pgbouncer => RGBColor(31, 119, 180),
        TargetKind::Pgwolf => RGBColor(214, 39, 40),
        TargetKind::Relay => RGBColor(44, 160, 44),
    }
}

/// Draw `path`; `title` and `subtitle` go above the chart. Does nothing
/// (and says so) when no plotted scenario has data.
pub fn draw(
    path: &Path,
    (title, subtitle): (&str, &str),
    scenarios: &[Scenario],
    summary: &[SummaryRow],
    runs: &[RunRecord],
) -> Result<bool> {
    let plotted: Vec<&Scenario> = scenarios.iter().filter(|s| s.plotted).collect();
    let is_plotted = |name: &str| plotted.iter().any(|s| s.name == name);
    let medians = |t: TargetKind| -> Vec<(f64, f64)> {
        let mut pts: Vec<(f64, f64)> = summary
            .iter()
            .filter(|r| r.target == t && is_plotted(&r.scenario))
            .filter_map(|r| r.tps.map(|tps| (r.clients as f64, tps)))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        pts
    };
    let dots = |t: TargetKind| -> Vec<(f64, f64)> {
        runs.iter()
            .filter(|r| r.target == t && r.ok && is_plotted(&r.scenario))
            .filter_map(|r| r.tps.map(|tps| (r.clients as f64, tps)))
            .collect()
    };
    let all: Vec<(f64, f64)> = TargetKind::PLOTTED.iter().flat_map(|t| dots(*t)).collect();
    if all.is_empty() {
        return Ok(false);
    }
    let y_max = all.iter().map(|p| p.1).fold(0.0, f64::max) * 1.15;
    let x_min = all.iter().map(|p| p.0).fold(f64::MAX, f64::min);
    let x_max = all.iter().map(|p| p.0).fold(0.0, f64::max);
    // Log x: 10, 50 and 200 clients spread evenly.
    let (x_lo, x_hi) = (x_min / 1.6, x_max * 1.6);

    plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| anyhow!("the embedded DejaVu Sans font did not load"))?;
    let root = BitMapBackend::new(path, (1100, 680)).into_drawing_area();
    root.fill(&WHITE)?;
    let (head, body) = root.split_vertically(78);
    head.draw_text(title, &(FONT, 24).into_font().color(&BLACK), (24, 12))?;
    head.draw_text(
        subtitle,
        &(FONT, 15).into_font().color(&RGBColor(60, 60, 60)),
        (24, 46),
    )?;

    let mut chart = ChartBuilder::on(&body)
        .margin_left(16)
        .margin_right(32)
        .margin_bottom(12)
        .x_label_area_size(48)
        .y_label_area_size(84)
        .build_cartesian_2d((x_lo..x_hi).log_scale(), 0.0..y_max)?;
    let clients: Vec<f64> = {
        let mut c: Vec<f64> = all.iter().map(|p| p.0).collect();
        c.sort_by(f64::total_cmp);
        c.dedup();
        c
    };
    chart
        .configure_mesh()
        .x_desc("pgbench clients (-c), log scale")
        .y_desc("transactions per second")
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .disable_x_mesh()
        .x_labels(12)
        .x_label_formatter(&|x| {
            // Label only the client counts that were run.
            if clients.iter().any(|c| (c - x).abs() / c < 0.02) {
                format!("{x:.0}")
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| thousands(*y))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;

    for t in TargetKind::PLOTTED {
        let c = color(t);
        let line = medians(t);
        chart
            .draw_series(LineSeries::new(line.clone(), c.stroke_width(3)))?
            .label(t.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3)));
        chart.draw_series(line.iter().map(|p| Circle::new(*p, 5, c.filled())))?;
        chart.draw_series(
            dots(t)
                .into_iter()
                .map(|p| Circle::new(p, 4, c.stroke_width(1))),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 16))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()?;
    root.present()?;
    Ok(true)
}

/// 12345.6 → "12,346".
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(12345.6), "12,346");
        assert_eq!(thousands(1234567.0), "1,234,567");
    }
}
