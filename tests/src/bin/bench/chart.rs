//! SVG charts drawn with plotters' SVG backend (text as SVG `<text>`, so no
//! font files or system libraries are needed).

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use serde_json::Value;

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing chart: {e}")
}

/// Horizontal bars, one per label, with an optional error whisker and
/// target tick.
type Row = (String, f64, Option<(f64, f64)>, Option<f64>);

fn height(rows: &[Row]) -> u32 {
    120 + 34 * rows.len() as u32
}

fn hbars<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    x_label: &str,
    rows: &[Row],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let max = rows
        .iter()
        .map(|r| r.2.map(|s| s.1).unwrap_or(r.1).max(r.3.unwrap_or(0.0)))
        .fold(0.0f64, f64::max)
        * 1.1;
    let n = rows.len() as i32;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(330)
        .build_cartesian_2d(0.0..max.max(1.0), (0..n).into_segmented())
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(x_label)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => rows
                .get((n - 1 - *i) as usize)
                .map(|r| r.0.clone())
                .unwrap_or_default(),
            SegmentValue::Last => String::new(),
        })
        .y_labels(rows.len())
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    let y = |i: usize| n - 1 - i as i32;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            let color = match r.3 {
                Some(t) if r.1 > t => RGBColor(214, 96, 77),
                Some(_) => RGBColor(77, 146, 33),
                None => RGBColor(67, 147, 195),
            };
            Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(y(i))),
                    (r.1, SegmentValue::Exact(y(i) + 1)),
                ],
                color.filled(),
            )
        }))
        .map_err(err)?;
    chart
        .draw_series(rows.iter().enumerate().filter_map(|(i, r)| {
            r.2.map(|(lo, hi)| {
                PathElement::new(
                    vec![
                        (lo, SegmentValue::CenterOf(y(i))),
                        (hi, SegmentValue::CenterOf(y(i))),
                    ],
                    BLACK.stroke_width(2),
                )
            })
        }))
        .map_err(err)?;
    chart
        .draw_series(rows.iter().enumerate().filter_map(|(i, r)| {
            r.3.map(|t| {
                PathElement::new(
                    vec![
                        (t, SegmentValue::Exact(y(i))),
                        (t, SegmentValue::Exact(y(i) + 1)),
                    ],
                    BLACK.stroke_width(3),
                )
            })
        }))
        .map_err(err)?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            Text::new(
                format!("{:.2}", r.1),
                (
                    r.2.map(|s| s.1).unwrap_or(r.1) + max * 0.01,
                    SegmentValue::CenterOf(y(i)),
                ),
                ("sans-serif", 12),
            )
        }))
        .map_err(err)?;
    Ok(())
}

/// A file holding one bar chart.
fn one_chart(path: &Path, width: u32, title: &str, x_label: &str, rows: &[Row]) -> Result<()> {
    let root = SVGBackend::new(path, (width, height(rows))).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    hbars(&root, title, x_label, rows)?;
    root.present().map_err(err)?;
    Ok(())
}

/// One bar per item of `items`: the median of its `stat` statistics, the
/// p25-p75 whisker and the target in its field `target`.
fn whisker_rows(
    items: &Value,
    stat: &str,
    target: &str,
    label: &dyn Fn(&Value) -> String,
) -> Vec<Row> {
    items
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let g = |k: &str| c[stat][k].as_f64().unwrap_or(0.0);
            (
                label(c),
                g("median"),
                Some((g("p25"), g("p75"))),
                c[target].as_f64(),
            )
        })
        .collect()
}

/// Per-class ratios to the empty program: median bar, p25-p75 whisker,
/// target tick; green meets the target, red misses it.
pub fn ratios(r: &Value, path: &Path) -> Result<()> {
    let rows = whisker_rows(&r["classes"], "ratio", "target_ratio", &|c| {
        c["name"].as_str().unwrap_or("?").to_string()
    });
    one_chart(
        path,
        960,
        "sipguard cost per packet class, x empty XDP program (black tick: target)",
        "ratio to the empty XDP program (same run)",
        &rows,
    )
}

/// Flood: wall-clock drop rate and drop capacity per CPU-second of each
/// arm in `arms`; `what` names the flood in the titles.
pub fn flood(arms: &Value, what: &str, path: &Path) -> Result<()> {
    let arms: Vec<&Value> = arms.as_array().into_iter().flatten().collect();
    let rows = |f: &dyn Fn(&Value) -> f64| -> Vec<Row> {
        arms.iter()
            .map(|a| {
                (
                    a["label"].as_str().unwrap_or("?").to_string(),
                    f(a),
                    None,
                    None,
                )
            })
            .collect()
    };
    let wall = rows(&|a| a["dropped_pps"].as_f64().unwrap_or(0.0) / 1e6);
    let cap = rows(&|a| 1e3 / a["cpu_ns_per_packet"].as_f64().unwrap_or(f64::INFINITY));
    let h = height(&wall);
    let root = SVGBackend::new(path, (960, 2 * h)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = root.split_vertically(h);
    hbars(
        &top,
        &format!("{what} over veth: packets dropped per second (same run)"),
        "Mpps dropped (wall clock, shared machine)",
        &wall,
    )?;
    hbars(
        &bottom,
        "the same flood: packets dropped per CPU-second (generator included)",
        "Mpps per CPU-second = 1000 / CPU ns per packet",
        &cap,
    )?;
    root.present().map_err(err)?;
    Ok(())
}

/// sipguard's time over xdp-filter's on each equivalent job (same frame,
/// same round): median bar, p25-p75 whisker, target tick.
pub fn peer(r: &Value, path: &Path) -> Result<()> {
    if r["peer"]["jobs"].as_array().is_none() {
        return Ok(());
    }
    let rows = whisker_rows(&r["peer"]["jobs"], "sipguard_over_peer", "target", &|j| {
        // Short enough for the label column: "default: drop ...".
        let program = j["program"].as_str().unwrap_or("?");
        let short = program
            .strip_prefix("xdp-filter ")
            .map(|p| if p.starts_with('(') { "default" } else { p })
            .unwrap_or(program);
        format!("{short}: {}", j["name"].as_str().unwrap_or("?"))
    });
    one_chart(
        path,
        1100,
        "sipguard / xdp-filter on the same job and frame (black tick: target)",
        "sipguard ns / xdp-filter ns, same round (1.0 = as fast)",
        &rows,
    )
}
