//! The report's chart: per-instance load over time, with migrations (grey) and instances
//! going down (red) marked, above the fleet p99 latency against the SLO.

use plotters::prelude::*;

use super::report::Report;

/// Render `report` as an SVG document.
pub fn svg(report: &Report) -> Result<String, String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (1200, 800)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (upper, lower) = root.split_vertically(560);
        let tl = &report.timeline;
        let t_max = tl.t_s.last().copied().unwrap_or(1.0).max(1.0);
        let y_max = tl
            .load
            .iter()
            .flatten()
            .flatten()
            .copied()
            .fold(1.0_f64, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(&upper)
            .caption(
                format!("{} / {}", report.scenario, report.policy),
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..t_max, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("utilisation (ops / capacity)")
            .draw()
            .map_err(|e| e.to_string())?;
        for (t, _, _) in &tl.moves {
            chart
                .draw_series(LineSeries::new(
                    [(*t, 0.0), (*t, y_max)],
                    RGBColor(190, 190, 190),
                ))
                .map_err(|e| e.to_string())?;
        }
        for (t, _) in &tl.downs {
            chart
                .draw_series(LineSeries::new(
                    [(*t, 0.0), (*t, y_max)],
                    RED.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?;
        }
        for (i, series) in tl.load.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points: Vec<(f64, f64)> = tl
                .t_s
                .iter()
                .zip(series)
                .filter_map(|(t, v)| v.map(|v| (*t, v)))
                .collect();
            chart
                .draw_series(LineSeries::new(points, color))
                .map_err(|e| e.to_string())?
                .label(format!("instance {i}"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
        }
        if tl.load.len() <= 16 {
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE.mix(0.8))
                .draw()
                .map_err(|e| e.to_string())?;
        }
        let p99_max = tl.p99_us.iter().copied().fold(report.slo_p99_us, f64::max) * 1.1;
        let mut latency = ChartBuilder::on(&lower)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..t_max, 0.0..p99_max)
            .map_err(|e| e.to_string())?;
        latency
            .configure_mesh()
            .y_desc("fleet p99 (us)")
            .draw()
            .map_err(|e| e.to_string())?;
        latency
            .draw_series(LineSeries::new(
                [(0.0, report.slo_p99_us), (t_max, report.slo_p99_us)],
                RED.mix(0.6),
            ))
            .map_err(|e| e.to_string())?
            .label("SLO")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
        latency
            .draw_series(LineSeries::new(
                tl.t_s.iter().copied().zip(tl.p99_us.iter().copied()),
                BLACK,
            ))
            .map_err(|e| e.to_string())?
            .label("fleet p99")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK));
        latency
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(buf)
}
