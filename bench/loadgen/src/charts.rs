//! PNG charts with plotters' bitmap backend and an embedded font (DejaVu
//! Sans, from the `dejavu` crate), so no system fonts are needed.

use std::path::Path;
use std::sync::Once;

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use plotters::style::FontStyle;

/// One server's latency curve: label, colour index, (quantile, ms) points.
pub type LatencySeries = (String, usize, Vec<(f64, f64)>);
/// One server's KiB per connection at each client count (None: no figure).
pub type MemorySeries = (String, usize, Vec<Option<f64>>);

fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .ok();
        plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold()).ok();
    });
}

const COLORS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("chart: {e}")
}

/// Latency by percentile, one line per server. The x axis is in "nines"
/// (0 = p0, 1 = p90, 2 = p99, 3 = p99.9, 4 = p99.99), the y axis in ms (log).
pub fn latency(path: &Path, title: &str, series: &[LatencySeries]) -> Result<()> {
    fonts();
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let nines = |q: f64| -((1.0 - q).max(1e-4)).log10();
    let max_ms = series
        .iter()
        .flat_map(|(_, _, c)| c.iter().map(|p| p.1))
        .fold(0.01f64, f64::max);
    let min_ms = series
        .iter()
        .flat_map(|(_, _, c)| c.iter().map(|p| p.1))
        .fold(f64::MAX, f64::min)
        .clamp(0.001, max_ms);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(15)
        .margin_right(40)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..4f64, (min_ms * 0.8..max_ms * 1.25).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms, log)")
        .x_labels(5)
        .x_label_formatter(&|x| match x.round() as i64 {
            0 => "p0".into(),
            1 => "p90".into(),
            2 => "p99".into(),
            3 => "p99.9".into(),
            _ => "p99.99".into(),
        })
        .y_label_formatter(&|y| format!("{y:.2}"))
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    for (label, color, curve) in series {
        let color = COLORS[*color % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                curve.iter().map(|(q, ms)| (nines(*q), ms.max(min_ms))),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Resident KiB per idle WebSocket connection: grouped bars, one group per
/// client count, one bar per server.
pub fn memory(path: &Path, title: &str, counts: &[usize], series: &[MemorySeries]) -> Result<()> {
    fonts();
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let max = series
        .iter()
        .flat_map(|(_, _, v)| v.iter().flatten().copied())
        .fold(1.0f64, f64::max);
    let groups = counts.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..groups as f64, 0f64..max * 1.7)
        .map_err(err)?;
    let counts_owned: Vec<usize> = counts.to_vec();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("idle WebSocket clients")
        .y_desc("resident KiB per connection")
        .x_labels(groups * 2 + 1)
        .x_label_formatter(&move |x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.01 && i < counts_owned.len() {
                counts_owned[i].to_string()
            } else {
                String::new()
            }
        })
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    let n = series.len().max(1) as f64;
    let width = 0.8 / n;
    for (s, (label, color, values)) in series.iter().enumerate() {
        let color = COLORS[*color % COLORS.len()];
        let bars = values.iter().enumerate().filter_map(|(g, v)| {
            v.map(|v| {
                let x0 = g as f64 + 0.1 + s as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width * 0.9, v)], color.filled())
            })
        });
        chart
            .draw_series(bars)
            .map_err(err)?
            .label(label.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
        let texts = values.iter().enumerate().filter_map(|(g, v)| {
            v.map(|v| {
                let x0 = g as f64 + 0.1 + s as f64 * width;
                Text::new(
                    format!("{v:.1}"),
                    (x0, v + max * 0.02),
                    ("sans-serif", 13).into_font(),
                )
            })
        });
        chart.draw_series(texts).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
