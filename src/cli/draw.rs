//! Pictures for `sweep` and `demo`: labelled contact sheets, the PSNR-vs-level plot, GIF
//! animations, and atomic writes (temporary file + rename) for all of them.
//!
//! Text: a tiny built-in bitmap font, the public-domain 8x8 glyphs of the `font8x8` crate
//! (ASCII plus Greek, so labels can say α and σ), scaled by whole pixels. The plot is drawn by
//! plotters through [`Canvas`], a small backend on an `image::RgbImage` that renders plotters'
//! text with the same bitmap font, so no font file and no system font is needed anywhere.

use std::io::Cursor;
use std::path::Path;

use image::{Rgb, RgbImage};
use plotters::prelude::*;
use plotters_backend::text_anchor::{HPos, Pos, VPos};
use plotters_backend::{BackendColor, BackendCoord, BackendTextStyle, DrawingErrorKind};

use super::anyhow_like::Result;

/// Side of one glyph in font pixels.
pub const GLYPH: u32 = 8;

fn glyph(c: char) -> [u8; 8] {
    let u = c as u32;
    if u < 128 {
        font8x8::legacy::BASIC_LEGACY[u as usize]
    } else if (0x390..0x390 + 58).contains(&u) {
        font8x8::legacy::GREEK_LEGACY[(u - 0x390) as usize]
    } else {
        font8x8::legacy::BASIC_LEGACY[b'?' as usize]
    }
}

/// Width and height in pixels of `text` at `scale` (one line).
pub fn text_size(text: &str, scale: u32) -> (u32, u32) {
    (text.chars().count() as u32 * GLYPH * scale, GLYPH * scale)
}

/// Calls `put(x, y)` for every set pixel of `text` at `scale`, relative to its top-left corner.
fn render<E>(
    text: &str,
    scale: u32,
    mut put: impl FnMut(i32, i32) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let s = scale as i32;
    for (i, c) in text.chars().enumerate() {
        let g = glyph(c);
        let x0 = i as i32 * GLYPH as i32 * s;
        for (row, bits) in g.iter().enumerate() {
            for col in 0..8 {
                if bits >> col & 1 == 1 {
                    for sy in 0..s {
                        for sx in 0..s {
                            put(x0 + col * s + sx, row as i32 * s + sy)?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Draws `text` with its top-left corner at `(x, y)`, clipped to the image.
pub fn draw_text(img: &mut RgbImage, x: i32, y: i32, text: &str, scale: u32, color: Rgb<u8>) {
    let (w, h) = (img.width() as i32, img.height() as i32);
    let _ = render::<()>(text, scale, |dx, dy| {
        let (px, py) = (x + dx, y + dy);
        if px >= 0 && py >= 0 && px < w && py < h {
            img.put_pixel(px as u32, py as u32, color);
        }
        Ok(())
    });
}

pub fn fill_rect(img: &mut RgbImage, x: i32, y: i32, w: u32, h: u32, color: Rgb<u8>) {
    for py in y.max(0)..(y + h as i32).min(img.height() as i32) {
        for px in x.max(0)..(x + w as i32).min(img.width() as i32) {
            img.put_pixel(px as u32, py as u32, color);
        }
    }
}

/// An unfilled rectangle `thick` pixels wide, inside `(x, y, w, h)`.
pub fn frame_rect(img: &mut RgbImage, x: i32, y: i32, w: u32, h: u32, thick: u32, color: Rgb<u8>) {
    let t = thick.min(w / 2).min(h / 2).max(1);
    fill_rect(img, x, y, w, t, color);
    fill_rect(img, x, y + h as i32 - t as i32, w, t, color);
    fill_rect(img, x, y, t, h, color);
    fill_rect(img, x + w as i32 - t as i32, y, t, h, color);
}

/// Text on a dark box (readable over any picture), box top-left at `(x, y)`.
pub fn boxed_text(img: &mut RgbImage, x: i32, y: i32, text: &str, scale: u32) {
    let (w, h) = text_size(text, scale);
    let pad = 2 * scale;
    fill_rect(img, x, y, w + 2 * pad, h + 2 * pad, Rgb([0, 0, 0]));
    draw_text(
        img,
        x + pad as i32,
        y + pad as i32,
        text,
        scale,
        Rgb([255, 255, 255]),
    );
}

/// The largest scale (at most `max`) at which `text` fits in `width` pixels; at least 1.
pub fn fit_scale(text: &str, width: u32, max: u32) -> u32 {
    (1..=max)
        .rev()
        .find(|&s| text_size(text, s).0 <= width)
        .unwrap_or(1)
}

/// Bitmap font scale for a plotters font size in pixels.
fn scale_for(size: f64) -> u32 {
    ((size / 8.0).round() as u32).max(1)
}

/// A plotters backend drawing into an RGB image, with the bitmap font for text.
pub struct Canvas<'a> {
    img: &'a mut RgbImage,
}

impl<'a> Canvas<'a> {
    pub fn new(img: &'a mut RgbImage) -> Canvas<'a> {
        Canvas { img }
    }
}

#[derive(Debug)]
pub struct CanvasError;

impl std::fmt::Display for CanvasError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("canvas error")
    }
}

impl std::error::Error for CanvasError {}

impl DrawingBackend for Canvas<'_> {
    type ErrorType = CanvasError;

    fn get_size(&self) -> (u32, u32) {
        self.img.dimensions()
    }
    fn ensure_prepared(&mut self) -> std::result::Result<(), DrawingErrorKind<CanvasError>> {
        Ok(())
    }
    fn present(&mut self) -> std::result::Result<(), DrawingErrorKind<CanvasError>> {
        Ok(())
    }

    fn draw_pixel(
        &mut self,
        (x, y): BackendCoord,
        c: BackendColor,
    ) -> std::result::Result<(), DrawingErrorKind<CanvasError>> {
        let (w, h) = self.img.dimensions();
        if x < 0 || y < 0 || x >= w as i32 || y >= h as i32 || c.alpha <= 0.0 {
            return Ok(());
        }
        let a = c.alpha.min(1.0);
        let p = self.img.get_pixel_mut(x as u32, y as u32);
        let src = [c.rgb.0, c.rgb.1, c.rgb.2];
        for (d, s) in p.0.iter_mut().zip(src) {
            *d = (*d as f64 * (1.0 - a) + s as f64 * a).round() as u8;
        }
        Ok(())
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> std::result::Result<(), DrawingErrorKind<CanvasError>> {
        let color = style.color();
        if color.alpha <= 0.0 {
            return Ok(());
        }
        let scale = scale_for(style.size());
        let (w, h) = text_size(text, scale);
        let (w, h) = (w as i32, h as i32);
        let anchor = style.anchor();
        let dx = match anchor.h_pos {
            HPos::Left => 0,
            HPos::Right => -w,
            HPos::Center => -w / 2,
        };
        let dy = match anchor.v_pos {
            VPos::Top => 0,
            VPos::Center => -h / 2,
            VPos::Bottom => -h,
        };
        let trans = style.transform();
        render(text, scale, |x, y| {
            let (tx, ty) = trans.transform(x + dx, y + dy);
            self.draw_pixel((pos.0 + tx, pos.1 + ty), color)
        })
    }

    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> std::result::Result<(u32, u32), DrawingErrorKind<CanvasError>> {
        Ok(text_size(text, scale_for(style.size())))
    }
}

/// One curve point of the PSNR plot.
#[derive(Clone, Copy, Debug)]
pub struct PlotPoint {
    pub level: f64,
    pub psnr: f64,
}

/// What the PSNR plot shows besides the curve.
pub struct PlotNotes<'a> {
    pub title: &'a str,
    /// The x axis's name (the knob: "alpha").
    pub x_name: &'a str,
    /// A vertical marker: (level, label), e.g. the blind choice, and its PSNR if known (a dot).
    pub marker: Option<(f64, String)>,
    pub marker_psnr: Option<f64>,
    /// A horizontal reference: (PSNR, label), e.g. the noisy input's.
    pub reference: Option<(f64, String)>,
}

/// PSNR against level: line and points, each point labelled with its value, the best one
/// highlighted, labelled axes with ticks, optional marker and reference lines.
pub fn psnr_plot(points: &[PlotPoint], notes: &PlotNotes) -> Result<RgbImage> {
    if points.is_empty() {
        return Err("no points to plot".into());
    }
    let width = (90 * points.len() as u32 + 200).clamp(800, 2000);
    let mut img = RgbImage::from_pixel(width, 520, Rgb([255, 255, 255]));
    draw_plot(&mut img, points, notes).map_err(|e| format!("drawing the plot: {e}"))?;
    Ok(img)
}

fn draw_plot(
    img: &mut RgbImage,
    points: &[PlotPoint],
    notes: &PlotNotes,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let root = Canvas::new(img).into_drawing_area();
    let (mut x0, mut x1) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), p| {
        (a.min(p.level), b.max(p.level))
    });
    let (mut y0, mut y1) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), p| {
        (a.min(p.psnr), b.max(p.psnr))
    });
    if let Some((m, _)) = &notes.marker {
        (x0, x1) = (x0.min(*m), x1.max(*m));
    }
    if let Some((r, _)) = &notes.reference {
        (y0, y1) = (y0.min(*r), y1.max(*r));
    }
    if let Some(p) = notes.marker_psnr {
        (y0, y1) = (y0.min(p), y1.max(p));
    }
    let xs = if x1 > x0 { x1 - x0 } else { 1.0 };
    let ys = if y1 > y0 { y1 - y0 } else { 1.0 };
    let (x0, x1) = (x0 - 0.1 * xs, x1 + 0.1 * xs);
    let (y0, y1) = (y0 - 0.12 * ys, y1 + 0.22 * ys);
    let (width, _) = root.dim_in_pixel();
    let title_size = if text_size(notes.title, 2).0 + 32 <= width {
        16
    } else {
        8
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(notes.title, ("sans-serif", title_size).into_font())
        .margin(16)
        .x_label_area_size(52)
        .y_label_area_size(104)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc(notes.x_name)
        .y_desc("PSNR (dB)")
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 16))
        .x_labels(points.len().clamp(2, 6))
        .y_labels(8)
        .x_label_formatter(&|v| format!("{v:.2}"))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(200, 200, 200))
        .draw()?;
    if let Some((r, label)) = &notes.reference {
        let gray = RGBColor(120, 120, 120);
        chart.draw_series(LineSeries::new([(x0, *r), (x1, *r)], gray.stroke_width(1)))?;
        let style = ("sans-serif", 16)
            .into_font()
            .color(&gray)
            .pos(Pos::new(HPos::Left, VPos::Bottom));
        chart.draw_series(std::iter::once(
            EmptyElement::at((x0, *r)) + Text::new(label.clone(), (6, -3), style),
        ))?;
    }
    if let Some((m, label)) = &notes.marker {
        let orange = RGBColor(220, 110, 0);
        chart.draw_series(LineSeries::new(
            [(*m, y0), (*m, y1)],
            orange.stroke_width(2),
        ))?;
        let style = ("sans-serif", 16)
            .into_font()
            .color(&orange)
            .pos(Pos::new(HPos::Left, VPos::Top));
        chart.draw_series(std::iter::once(
            EmptyElement::at((*m, y1)) + Text::new(label.clone(), (6, 4), style),
        ))?;
        if let Some(p) = notes.marker_psnr {
            chart.draw_series(std::iter::once(Circle::new((*m, p), 6, orange.filled())))?;
        }
    }
    let blue = RGBColor(30, 90, 200);
    chart.draw_series(LineSeries::new(
        points.iter().map(|p| (p.level, p.psnr)),
        blue.stroke_width(2),
    ))?;
    let best = points
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.psnr.total_cmp(&b.1.psnr))
        .map(|(i, _)| i)
        .unwrap_or(0);
    let size = if points.len() <= 9 { 16 } else { 8 };
    for (i, p) in points.iter().enumerate() {
        let (color, r) = if i == best {
            (RGBColor(200, 30, 30), 6)
        } else {
            (blue, 4)
        };
        let style = ("sans-serif", size)
            .into_font()
            .color(&color)
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        chart.draw_series(std::iter::once(
            EmptyElement::at((p.level, p.psnr))
                + Circle::new((0, 0), r, color.filled())
                + Text::new(format!("{:.2}", p.psnr), (0, -10), style),
        ))?;
    }
    root.present()?;
    Ok(())
}

/// One cell of a contact sheet: a picture and its label lines.
pub struct Cell {
    pub lines: Vec<String>,
    pub image: RgbImage,
    /// A colored border (best result, blind choice).
    pub accent: Option<Rgb<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

/// The default zoom window: a centered square about an eighth of the image (at least a
/// quarter of a tile so the zoom is at most 4x), clamped to the image.
pub fn central_crop(w: u32, h: u32, tile: u32) -> Rect {
    let side = (w.min(h) / 8).max(tile / 4).min(w).min(h).max(1);
    Rect {
        x: (w - side) / 2,
        y: (h - side) / 2,
        w: side,
        h: side,
    }
}

fn resize_to(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    use image::imageops::{resize, FilterType};
    let filter = if w >= img.width() {
        FilterType::Nearest
    } else {
        FilterType::Triangle
    };
    resize(img, w.max(1), h.max(1), filter)
}

/// Fits `(w, h)` into a `tile x tile` box keeping the aspect ratio; enlarges by whole factors
/// only (pixels stay square and sharp), shrinks smoothly.
fn fit(w: u32, h: u32, tile: u32) -> (u32, u32) {
    let m = w.max(h);
    if m <= tile {
        let k = (tile / m).max(1);
        (w * k, h * k)
    } else {
        (
            ((w as u64 * tile as u64) / m as u64).max(1) as u32,
            ((h as u64 * tile as u64) / m as u64).max(1) as u32,
        )
    }
}

/// Columns for `n` cells in as few rows of at most `max` as possible, the rows balanced.
pub fn balanced_columns(n: usize, max: usize) -> usize {
    let rows = n.div_ceil(max.max(1)).max(1);
    n.div_ceil(rows).max(1)
}

const LABEL_LINE: u32 = 20;
const PAD: u32 = 8;

/// Cells in rows of `columns`: each the label lines, the whole picture fitted in a `tile` box
/// and, with `crop`, that window of the picture zoomed below it (outlined on the picture).
pub fn contact_sheet(cells: &[Cell], tile: u32, crop: Option<Rect>, columns: usize) -> RgbImage {
    let (iw, ih) = cells
        .first()
        .map(|c| c.image.dimensions())
        .unwrap_or((1, 1));
    let (tw, th) = fit(iw, ih, tile);
    let (zw, zh) = crop.map(|r| fit(r.w, r.h, tile)).unwrap_or((0, 0));
    let nlines = cells.iter().map(|c| c.lines.len()).max().unwrap_or(0) as u32;
    let label_h = nlines * LABEL_LINE + 4;
    let cell_w = tw.max(zw);
    let cell_h = label_h + th + if crop.is_some() { PAD + zh } else { 0 };
    let cols = columns.clamp(1, cells.len().max(1)) as u32;
    let rows = (cells.len() as u32).div_ceil(cols).max(1);
    let mut sheet = RgbImage::from_pixel(
        PAD + cols * (cell_w + PAD),
        PAD + rows * (cell_h + PAD),
        Rgb([36, 36, 40]),
    );
    for (i, cell) in cells.iter().enumerate() {
        let (cx, cy) = (
            PAD + (i as u32 % cols) * (cell_w + PAD),
            PAD + (i as u32 / cols) * (cell_h + PAD),
        );
        for (k, line) in cell.lines.iter().enumerate() {
            let scale = fit_scale(line, cell_w, 2);
            let (lw, _) = text_size(line, scale);
            let y = cy + k as u32 * LABEL_LINE + (LABEL_LINE - GLYPH * scale) / 2;
            draw_text(
                &mut sheet,
                (cx + (cell_w - lw.min(cell_w)) / 2) as i32,
                y as i32,
                line,
                scale,
                Rgb([240, 240, 240]),
            );
        }
        let mut thumb = resize_to(&cell.image, tw, th);
        if let Some(r) = crop {
            let (sx, sy) = (tw as f64 / iw as f64, th as f64 / ih as f64);
            let (x, y) = ((r.x as f64 * sx) as i32, (r.y as f64 * sy) as i32);
            let (w, h) = (
                ((r.w as f64 * sx).ceil() as u32).max(3),
                ((r.h as f64 * sy).ceil() as u32).max(3),
            );
            frame_rect(&mut thumb, x, y, w, h, 1, Rgb([255, 220, 0]));
        }
        let tx = cx + (cell_w - tw) / 2;
        image::imageops::replace(&mut sheet, &thumb, tx as i64, (cy + label_h) as i64);
        if let Some(r) = crop {
            let window = image::imageops::crop_imm(&cell.image, r.x, r.y, r.w, r.h).to_image();
            let zoom = resize_to(&window, zw, zh);
            let zx = cx + (cell_w - zw) / 2;
            image::imageops::replace(
                &mut sheet,
                &zoom,
                zx as i64,
                (cy + label_h + th + PAD) as i64,
            );
        }
        if let Some(color) = cell.accent {
            frame_rect(
                &mut sheet,
                cx as i32 - 4,
                cy as i32 - 4,
                cell_w + 8,
                cell_h + 8,
                3,
                color,
            );
        }
    }
    sheet
}

/// A looping GIF of the frames, `delay_ms` each.
pub fn gif_bytes(frames: &[RgbImage], delay_ms: u32) -> Result<Vec<u8>> {
    use image::codecs::gif::{GifEncoder, Repeat};
    let mut out = Vec::new();
    {
        let mut enc = GifEncoder::new_with_speed(&mut out, 10);
        enc.set_repeat(Repeat::Infinite)?;
        let delay = image::Delay::from_numer_denom_ms(delay_ms, 1);
        let frames = frames.iter().map(|f| {
            image::Frame::from_parts(
                image::DynamicImage::ImageRgb8(f.clone()).into_rgba8(),
                0,
                0,
                delay,
            )
        });
        enc.encode_frames(frames)?;
    }
    Ok(out)
}

pub fn png_bytes(img: &RgbImage) -> Result<Vec<u8>> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

/// Writes a temporary file beside `path` and renames it over `path`: a failure never leaves a
/// partial file behind, and the temporary name is the same on every write
/// ([`tunable::testing::temp_path_for`]), so what a crash leaves is replaced by the next write.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tunable::testing::temp_path_for(path);
    if let Err(e) = std::fs::write(&tmp, bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("{}: cannot write: {e}", path.display()).into());
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: cannot write: {e}", path.display()).into()
    })
}

/// `.NAME.tmp-PID` in the directory of `path`: a probe for write access, created and removed
/// at once (not the name writes go through, so a leftover of a crashed write never blocks it).
pub fn temp_beside(path: &Path) -> std::path::PathBuf {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    dir.join(format!(".{name}.tmp-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_drawn_where_asked() {
        let mut img = RgbImage::new(40, 12);
        draw_text(&mut img, 2, 2, "1", 1, Rgb([255, 255, 255]));
        let lit: Vec<(u32, u32)> = img
            .enumerate_pixels()
            .filter(|p| p.2 .0[0] > 0)
            .map(|p| (p.0, p.1))
            .collect();
        assert!(!lit.is_empty());
        assert!(
            lit.iter()
                .all(|&(x, y)| (2..10).contains(&x) && (2..10).contains(&y)),
            "{lit:?}"
        );
        assert_eq!(text_size("α=0.5", 2), (80, 16));
    }

    #[test]
    fn plot_has_ink_and_sheet_has_layout() {
        let pts: Vec<PlotPoint> = (0..5)
            .map(|i| PlotPoint {
                level: i as f64 / 4.0,
                psnr: 25.0 + i as f64,
            })
            .collect();
        let notes = PlotNotes {
            title: "t",
            x_name: "alpha",
            marker: Some((0.3, "blind".into())),
            marker_psnr: Some(27.0),
            reference: Some((20.0, "input".into())),
        };
        let img = psnr_plot(&pts, &notes).unwrap();
        let dark = img
            .pixels()
            .filter(|p| p.0.iter().all(|&v| v < 100))
            .count();
        assert!(dark > 500, "{dark}");
        let cells: Vec<Cell> = (0..3)
            .map(|i| Cell {
                lines: vec![format!("c{i}")],
                image: RgbImage::new(40, 30),
                accent: None,
            })
            .collect();
        let sheet = contact_sheet(&cells, 64, Some(central_crop(40, 30, 64)), 2);
        assert_eq!(sheet.width(), PAD + 2 * (64 + PAD));
    }

    #[test]
    fn write_atomic_replaces_what_a_crashed_write_left() {
        let dir = std::env::temp_dir().join(format!("tunable-draw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("sheet.png");
        // A crash between writing the temporary file and renaming it leaves this behind.
        std::fs::write(tunable::testing::temp_path_for(&out), b"partial").unwrap();
        write_atomic(&out, b"whole").unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"whole");
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["sheet.png"]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
