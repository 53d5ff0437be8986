//! docs/benchmarks.svg: cloakroom's throughput divided by each peer's, per store, one panel per
//! harness and workload, on a log scale (above the 1× line, cloakroom is faster).

use std::path::Path;

use plotters::prelude::*;

use crate::model::{Harness, Library, Workload};
use crate::results::Results;

/// The peers a ratio is drawn against, in legend order.
const PEERS: [Library; 3] = [
    Library::TowerSessions,
    Library::AxumSession,
    Library::AxumSessionNoCache,
];

/// The y axis; ratios outside it are drawn at its edge.
const LOW: f64 = 0.1;
const HIGH: f64 = 100.0;

const COLORS: [RGBColor; 3] = [
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
];

pub fn draw(results: &Results, path: &Path, caption: &str) -> Result<(), String> {
    let rows = results.harnesses.len().max(1);
    let cols = results.workloads.len().max(1);
    let size = (380 * cols as u32, 330 * rows as u32 + 70);
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (title, body) = root.split_vertically(70);
    title
        .titled(caption, ("sans-serif", 20))
        .map_err(|e| e.to_string())?;
    legend(&title)?;
    let panels = body.split_evenly((rows, cols));
    for (i, panel) in panels.iter().enumerate() {
        let harness = results.harnesses[i / cols];
        let workload = results.workloads[i % cols];
        draw_panel(results, panel, harness, workload)?;
    }
    root.present().map_err(|e| e.to_string())
}

fn legend(area: &DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<(), String> {
    let mut x = 20;
    for (i, library) in PEERS.iter().enumerate() {
        area.draw(&Rectangle::new([(x, 45), (x + 14, 59)], COLORS[i].filled()))
            .map_err(|e| e.to_string())?;
        let label = format!("vs {}", library.name());
        area.draw(&Text::new(label, (x + 20, 45), ("sans-serif", 14)))
            .map_err(|e| e.to_string())?;
        x += 250;
    }
    let note = "above the 1× line cloakroom is faster; log scale";
    area.draw(&Text::new(note, (x, 45), ("sans-serif", 14)))
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn draw_panel(
    results: &Results,
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    harness: Harness,
    workload: Workload,
) -> Result<(), String> {
    let backends = &results.backends;
    let n = backends.len() as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{}, {}", workload.describe(), harness.name()),
            ("sans-serif", 13),
        )
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(44)
        .build_cartesian_2d(0.0..n, (LOW..HIGH).log_scale())
        .map_err(|e| e.to_string())?;
    let names: Vec<&str> = backends.iter().map(|b| b.name()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(backends.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = (x - 0.5).round();
            if (x - 0.5 - i).abs() < 0.01 && i >= 0.0 && (i as usize) < names.len() {
                names[i as usize].to_owned()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format!("{y}×"))
        .y_desc("cloakroom ÷ peer")
        .label_style(("sans-serif", 11))
        .draw()
        .map_err(|e| e.to_string())?;
    let width = 0.8 / PEERS.len() as f64;
    for (bi, &backend) in backends.iter().enumerate() {
        for (pi, &peer) in PEERS.iter().enumerate() {
            let Some(ratio) = results.ratio(harness, workload, backend, peer) else {
                continue;
            };
            let x0 = bi as f64 + 0.1 + pi as f64 * width;
            let bar = Rectangle::new(
                [(x0, 1.0), (x0 + width * 0.9, ratio.clamp(LOW, HIGH))],
                COLORS[pi].filled(),
            );
            chart
                .draw_series(std::iter::once(bar))
                .map_err(|e| e.to_string())?;
        }
    }
    let one = PathElement::new(vec![(0.0, 1.0), (n, 1.0)], BLACK.stroke_width(1));
    chart
        .draw_series(std::iter::once(one))
        .map_err(|e| e.to_string())?;
    Ok(())
}
