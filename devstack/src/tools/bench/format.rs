//! How figures are written: durations, sizes and ratios, and the Markdown
//! table they are printed in.

use super::*;

pub fn format_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

pub fn format_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if bytes < 10_000 {
        format!("{bytes} B")
    } else if b < 10_000_000.0 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{:.1} MB", b / 1e6)
    }
}

/// `a / b` as "0.12×", or "—" when either side is missing.
pub fn format_ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => {
            let r = a / b;
            if r < 0.01 {
                format!("{r:.4}×")
            } else {
                format!("{r:.2}×")
            }
        }
        _ => "—".to_string(),
    }
}

/// A Markdown table with aligned columns: text left, figures right, and an
/// alignment row (`:---|---:`) that keeps them so where the table is pasted
/// (docs/benchmarks.md). Written here rather than with comfy-table: its
/// Markdown preset writes a plain `|---|` row, which renders every figure
/// left-aligned.
pub fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::from("|");
        for (i, width) in widths.iter().enumerate() {
            let cell = cells.next().unwrap_or("");
            let pad = width - cell.chars().count().min(*width);
            // Text left, figures right.
            if i == 0 {
                let _ = write!(out, " {cell}{} |", " ".repeat(pad));
            } else {
                let _ = write!(out, " {}{cell} |", " ".repeat(pad));
            }
        }
        out
    };
    let mut out = line(&mut header.iter().copied());
    out.push('\n');
    out.push('|');
    for (i, width) in widths.iter().enumerate() {
        if i == 0 {
            let _ = write!(out, ":{}|", "-".repeat(width + 1));
        } else {
            let _ = write!(out, "{}:|", "-".repeat(width + 1));
        }
    }
    for row in rows {
        out.push('\n');
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

pub(super) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

pub(super) fn show_secs(s: f64) -> String {
    format_duration(Duration::from_secs_f64(s.max(0.0)))
}

pub(super) fn show_bytes(b: f64) -> String {
    format_bytes(b.max(0.0) as u64)
}
