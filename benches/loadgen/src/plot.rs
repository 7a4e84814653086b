//! A small line-chart renderer straight to PNG: axes, ticks, labels (the public-domain 8x8
//! bitmap font of the `font8x8` crate), polylines and a legend. No system fonts, no C
//! libraries, so plots render the same on any machine.

use std::path::Path;

type Rgb = [u8; 3];

pub(crate) const PALETTE: [Rgb; 8] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [23, 190, 207],
];

const WHITE: Rgb = [255, 255, 255];
const BLACK: Rgb = [0, 0, 0];
const GRID: Rgb = [225, 225, 225];

struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Self {
        Canvas {
            w,
            h,
            px: vec![255; w * h * 3],
        }
    }

    fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            let i = (y as usize * self.w + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb, thick: i64) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            for ox in 0..thick {
                for oy in 0..thick {
                    self.set(x + ox - thick / 2, y + oy - thick / 2, c);
                }
            }
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    fn rect(&mut self, x: i64, y: i64, w: i64, h: i64, c: Rgb) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.set(xx, yy, c);
            }
        }
    }

    /// Text with its top-left corner at (x, y); `scale` 1 = 8 px per character.
    fn text(&mut self, x: i64, y: i64, s: &str, c: Rgb, scale: i64) {
        for (i, ch) in s.chars().enumerate() {
            let glyph = font8x8::legacy::BASIC_LEGACY
                .get(ch as usize)
                .copied()
                .unwrap_or([0; 8]);
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        let gx = x + (i as i64 * 8 + col) * scale;
                        let gy = y + row as i64 * scale;
                        self.rect(gx, gy, scale, scale, c);
                    }
                }
            }
        }
    }

    /// Text rotated 90° counter-clockwise, reading bottom to top, bottom-left at (x, y).
    fn text_up(&mut self, x: i64, y: i64, s: &str, c: Rgb) {
        for (i, ch) in s.chars().enumerate() {
            let glyph = font8x8::legacy::BASIC_LEGACY
                .get(ch as usize)
                .copied()
                .unwrap_or([0; 8]);
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8i64 {
                    if bits & (1 << col) != 0 {
                        self.set(x + row as i64, y - (i as i64 * 8 + col), c);
                    }
                }
            }
        }
    }

    fn save(&self, path: &Path) -> Result<(), String> {
        let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut enc =
            png::Encoder::new(std::io::BufWriter::new(file), self.w as u32, self.h as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(|e| e.to_string())?;
        writer.write_image_data(&self.px).map_err(|e| e.to_string())
    }
}

/// How an axis maps values to pixels and where its ticks go.
#[derive(Clone, Copy)]
pub(crate) enum Scale {
    Linear,
    Log10,
}

pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) points: Vec<(f64, f64)>,
}

pub(crate) struct Chart<'a> {
    pub(crate) title: &'a str,
    pub(crate) x_label: &'a str,
    pub(crate) y_label: &'a str,
    pub(crate) x_scale: Scale,
    pub(crate) y_scale: Scale,
    /// Custom x tick labels (value, label); empty = automatic.
    pub(crate) x_ticks: Vec<(f64, String)>,
    pub(crate) series: Vec<Series>,
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        let s = format!("{v:.1}");
        s.trim_end_matches(".0").to_string()
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_string()
    }
}

fn auto_ticks(lo: f64, hi: f64, scale: Scale) -> Vec<(f64, String)> {
    match scale {
        Scale::Log10 => {
            let mut out = Vec::new();
            let mut e = lo.log10().floor() as i32;
            while 10f64.powi(e) <= hi * 1.0001 {
                for m in [1.0, 2.0, 5.0] {
                    let v = m * 10f64.powi(e);
                    if v >= lo * 0.9999 && v <= hi * 1.0001 {
                        out.push((v, fmt_tick(v)));
                    }
                }
                e += 1;
            }
            out
        }
        Scale::Linear => {
            let span = (hi - lo).max(1e-9);
            let raw = span / 8.0;
            let mag = 10f64.powf(raw.log10().floor());
            let step = [1.0, 2.0, 5.0, 10.0]
                .iter()
                .map(|m| m * mag)
                .find(|s| *s >= raw)
                .unwrap_or(10.0 * mag);
            let mut v = (lo / step).ceil() * step;
            let mut out = Vec::new();
            while v <= hi + step * 1e-6 {
                out.push((v, fmt_tick(v)));
                v += step;
            }
            out
        }
    }
}

fn to_unit(v: f64, lo: f64, hi: f64, scale: Scale) -> f64 {
    match scale {
        Scale::Linear => (v - lo) / (hi - lo),
        Scale::Log10 => (v.max(lo).log10() - lo.log10()) / (hi.log10() - lo.log10()),
    }
}

fn bounds(vals: impl Iterator<Item = f64>, scale: Scale) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals {
        if v.is_finite() && (matches!(scale, Scale::Linear) || v > 0.0) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    if !lo.is_finite() {
        return (1.0, 10.0);
    }
    match scale {
        Scale::Log10 => {
            let lo = 10f64.powf(lo.log10().floor());
            let hi = 10f64.powf(hi.log10().ceil()).max(lo * 10.0);
            (lo, hi)
        }
        Scale::Linear => {
            let lo = lo.min(0.0);
            (lo, if hi > lo { hi } else { lo + 1.0 })
        }
    }
}

pub(crate) fn render(chart: &Chart<'_>, path: &Path) -> Result<(), String> {
    let (w, h) = (1000usize, 600usize);
    let mut c = Canvas::new(w, h);
    let (left, right, top, bottom) = (90i64, 50i64, 40i64, 70i64);
    let pw = w as i64 - left - right;
    let ph = h as i64 - top - bottom;

    let all = || chart.series.iter().flat_map(|s| s.points.iter());
    let (x_lo, x_hi) = if chart.x_ticks.is_empty() {
        bounds(all().map(|p| p.0), chart.x_scale)
    } else {
        let lo = chart
            .x_ticks
            .iter()
            .map(|t| t.0)
            .fold(f64::INFINITY, f64::min);
        let hi = chart
            .x_ticks
            .iter()
            .map(|t| t.0)
            .fold(f64::NEG_INFINITY, f64::max);
        (lo, hi)
    };
    let (y_lo, y_hi) = bounds(all().map(|p| p.1), chart.y_scale);
    let px = |x: f64| left + (to_unit(x, x_lo, x_hi, chart.x_scale) * pw as f64).round() as i64;
    let py = |y: f64| top + ph - (to_unit(y, y_lo, y_hi, chart.y_scale) * ph as f64).round() as i64;

    // Grid and ticks.
    let x_ticks = if chart.x_ticks.is_empty() {
        auto_ticks(x_lo, x_hi, chart.x_scale)
    } else {
        chart.x_ticks.clone()
    };
    for (v, label) in &x_ticks {
        let x = px(*v);
        c.line((x, top), (x, top + ph), GRID, 1);
        c.line((x, top + ph), (x, top + ph + 5), BLACK, 1);
        c.text(x - label.len() as i64 * 4, top + ph + 9, label, BLACK, 1);
    }
    for (v, label) in auto_ticks(y_lo, y_hi, chart.y_scale) {
        let y = py(v);
        c.line((left, y), (left + pw, y), GRID, 1);
        c.line((left - 5, y), (left, y), BLACK, 1);
        c.text(left - 8 - label.len() as i64 * 8, y - 4, &label, BLACK, 1);
    }
    // Axes.
    c.line((left, top), (left, top + ph), BLACK, 1);
    c.line((left, top + ph), (left + pw, top + ph), BLACK, 1);
    // Titles.
    c.text(left, 12, chart.title, BLACK, 2);
    c.text(
        left + pw / 2 - chart.x_label.len() as i64 * 4,
        h as i64 - 30,
        chart.x_label,
        BLACK,
        1,
    );
    c.text_up(
        12,
        top + ph / 2 + chart.y_label.len() as i64 * 4,
        chart.y_label,
        BLACK,
    );

    // Series.
    for (i, s) in chart.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let pts: Vec<(i64, i64)> = s
            .points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .map(|p| (px(p.0), py(p.1)))
            .collect();
        for pair in pts.windows(2) {
            c.line(pair[0], pair[1], color, 2);
        }
        if pts.len() == 1 {
            c.rect(pts[0].0 - 2, pts[0].1 - 2, 5, 5, color);
        }
    }
    // Legend, top-left inside the plot, on a white box.
    let longest = chart.series.iter().map(|s| s.name.len()).max().unwrap_or(0) as i64;
    let lh = 14i64;
    c.rect(
        left + 8,
        top + 8,
        longest * 8 + 40,
        lh * chart.series.len() as i64 + 8,
        WHITE,
    );
    for (i, s) in chart.series.iter().enumerate() {
        let y = top + 14 + i as i64 * lh;
        let color = PALETTE[i % PALETTE.len()];
        c.rect(left + 14, y, 18, 4, color);
        c.text(left + 38, y - 2, &s.name, BLACK, 1);
    }
    c.save(path)
}

/// x ticks for percentile plots: x = -log10(1 - q).
pub(crate) fn percentile_ticks(max_nines: usize) -> Vec<(f64, String)> {
    let labels = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"];
    labels
        .iter()
        .take(max_nines + 1)
        .enumerate()
        .map(|(k, l)| (k as f64, l.to_string()))
        .collect()
}

pub(crate) fn quantile_x(q: f64) -> f64 {
    -(1.0 - q).max(1e-9).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_png() {
        let dir = tempfile_dir();
        let path = dir.join("t.png");
        let chart = Chart {
            title: "test",
            x_label: "x",
            y_label: "y (ms)",
            x_scale: Scale::Linear,
            y_scale: Scale::Log10,
            x_ticks: vec![],
            series: vec![Series {
                name: "a".into(),
                points: vec![(0.0, 1.0), (1.0, 10.0), (2.0, 3.0)],
            }],
        };
        render(&chart, &path).expect("renders");
        let bytes = std::fs::read(&path).expect("png written");
        assert_eq!(&bytes[1..4], b"PNG");
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("loadgen-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        dir
    }
}
