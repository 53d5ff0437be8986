//! docs/benchmarks.svg: requests per second per store, one panel per harness and workload, one
//! bar per library, the no-session-layer ceiling as a line.

use std::path::Path;

use plotters::prelude::*;

use crate::model::{Harness, Library, Workload};
use crate::results::Results;

const COLORS: [RGBColor; 3] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
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
    for (i, library) in Library::PEERS.iter().enumerate() {
        area.draw(&Rectangle::new([(x, 45), (x + 14, 59)], COLORS[i].filled()))
            .map_err(|e| e.to_string())?;
        area.draw(&Text::new(library.name(), (x + 20, 45), ("sans-serif", 14)))
            .map_err(|e| e.to_string())?;
        x += 170;
    }
    area.draw(&PathElement::new(
        vec![(x, 52), (x + 20, 52)],
        BLACK.stroke_width(2),
    ))
    .map_err(|e| e.to_string())?;
    area.draw(&Text::new(
        "no session layer",
        (x + 26, 45),
        ("sans-serif", 14),
    ))
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
    let libraries = Library::PEERS;
    let value = |b, l| {
        results
            .get((harness, workload, b, l))
            .map_or(0.0, |m| m.throughput())
    };
    let plain = results
        .plain
        .get(&(harness, workload))
        .and_then(|o| o.as_ref().ok())
        .map(|m| m.throughput());
    let top = backends
        .iter()
        .flat_map(|&b| libraries.iter().map(move |&l| (b, l)))
        .map(|(b, l)| value(b, l))
        .fold(0.0_f64, f64::max)
        .max(1.0)
        * 1.1;
    let n = backends.len() as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(
            match plain {
                Some(p) if p > top => format!(
                    "{}, {} (no layer: {:.0}k/s)",
                    workload.describe(),
                    harness.name(),
                    p / 1000.0
                ),
                _ => format!("{}, {}", workload.describe(), harness.name()),
            },
            ("sans-serif", 13),
        )
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(52)
        .build_cartesian_2d(0.0..n, 0.0..top)
        .map_err(|e| e.to_string())?;
    let names: Vec<&str> = backends.iter().map(|b| b.name()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(backends.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = (x - 0.5).round();
            if (x - 0.5 - i).abs() < 0.01 && i >= 0.0 && (i as usize) < names.len() {
                names[i as usize].to_owned()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| {
            if *y >= 1000.0 {
                format!("{:.0}k", y / 1000.0)
            } else {
                format!("{y:.0}")
            }
        })
        .y_desc("requests/s")
        .label_style(("sans-serif", 11))
        .draw()
        .map_err(|e| e.to_string())?;
    let width = 0.8 / libraries.len() as f64;
    for (bi, &b) in backends.iter().enumerate() {
        for (li, &l) in libraries.iter().enumerate() {
            let x0 = bi as f64 + 0.1 + li as f64 * width;
            let v = value(b, l);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x0, 0.0), (x0 + width * 0.9, v)],
                    COLORS[li].filled(),
                )))
                .map_err(|e| e.to_string())?;
        }
    }
    if let Some(p) = plain.filter(|p| *p <= top) {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, p), (n, p)],
                BLACK.stroke_width(2),
            )))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
