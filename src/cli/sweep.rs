//! `tunable sweep IN -o SHEET.png [--model M] [--levels 0:1:0.125 | --sigmas 10:80:10]
//! [--crop X,Y,W,H] [--gif OUT.gif] [--clean REF]`: restores the image at each level and writes
//! a labelled contact sheet (the input first, then one cell per level, each with a zoomed crop);
//! `--gif` an animation across the levels; `--clean` PSNR/SSIM per level against the clean
//! reference, printed as a table and drawn as a plot, `SHEET-psnr.png` beside the sheet.

use std::path::{Path, PathBuf};
use std::time::Instant;

use image::{Rgb, RgbImage};
use tunable::model::LevelAxis;
use tunable::{estimate, metrics, Image, Level, Model};

use super::draw::{self, Cell, PlotNotes, PlotPoint, Rect};
use super::{anyhow_like::Result, check_output, Ctx};

#[derive(clap::Args)]
pub struct Args {
    /// The image to restore (PNG, JPEG, TIFF; gray or color).
    input: PathBuf,
    /// The contact sheet to write (.png).
    #[arg(short, long)]
    output: PathBuf,
    /// A model file (default: the model built into the binary).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Knob values: START:END:STEP (END included) or a comma-separated list.
    /// Default: the model's axis range in 8 steps.
    #[arg(long, allow_hyphen_values = true)]
    levels: Option<String>,
    /// Noise levels instead of knob values (START:END:STEP or a list), mapped to the knob by the
    /// model's calibration.
    #[arg(long, conflicts_with = "levels", allow_hyphen_values = true)]
    sigmas: Option<String>,
    /// The zoomed window X,Y,W,H in pixels (default: a central square).
    #[arg(long)]
    crop: Option<String>,
    /// Also write an animation across the levels (.gif).
    #[arg(long)]
    gif: Option<PathBuf>,
    /// The clean image: PSNR/SSIM per level, printed and plotted to SHEET-psnr.png.
    #[arg(long)]
    clean: Option<PathBuf>,
    /// Side of the box each picture is fitted in on the sheet, in pixels.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(16..=4096))]
    tile: u32,
    /// Cells per row of the sheet (default: balanced rows of at most 6).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    columns: Option<u64>,
    /// Overwrite the input if an output names it.
    #[arg(long)]
    force: bool,
}

/// Most levels one sweep runs.
pub const MAX_LEVELS: usize = 65;

/// `START:END:STEP` (END included when the steps land on it, within rounding) or `a,b,c`.
pub fn parse_values(spec: &str) -> Result<Vec<f32>> {
    let bad = |m: &str| format!("levels '{spec}': {m}");
    let num = |s: &str| -> Result<f32> {
        let v: f32 = s
            .trim()
            .parse()
            .map_err(|_| bad(&format!("'{}' is not a number", s.trim())))?;
        if !v.is_finite() {
            return Err(bad("not a finite number").into());
        }
        Ok(v)
    };
    let values = if spec.contains(':') {
        let parts: Vec<&str> = spec.split(':').collect();
        let [start, end, step] = parts[..] else {
            return Err(bad("expected START:END:STEP").into());
        };
        let (start, end, step) = (num(start)?, num(end)?, num(step)?);
        if step == 0.0 || (end - start) * step < 0.0 {
            return Err(bad("STEP must be non-zero and go from START towards END").into());
        }
        let n = ((end - start) / step + 1e-4).floor();
        if n + 1.0 > MAX_LEVELS as f32 {
            return Err(bad(&format!("more than {MAX_LEVELS} levels")).into());
        }
        (0..=n as usize).map(|i| start + step * i as f32).collect()
    } else {
        spec.split(',').map(num).collect::<Result<Vec<f32>>>()?
    };
    if values.is_empty() || values.len() > MAX_LEVELS {
        return Err(bad(&format!("give 1 to {MAX_LEVELS} levels")).into());
    }
    Ok(values)
}

/// `X,Y,W,H` inside a `w x h` image.
pub fn parse_crop(spec: &str, w: u32, h: u32) -> Result<Rect> {
    let v: Vec<u32> = spec
        .split(',')
        .map(|s| s.trim().parse::<u32>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| format!("--crop '{spec}': expected X,Y,W,H in whole pixels"))?;
    let [x, y, cw, ch] = v[..] else {
        return Err(format!("--crop '{spec}': expected X,Y,W,H").into());
    };
    if cw == 0 || ch == 0 || x as u64 + cw as u64 > w as u64 || y as u64 + ch as u64 > h as u64 {
        return Err(format!("--crop {x},{y},{cw},{ch} is not inside the {w}x{h} image").into());
    }
    Ok(Rect { x, y, w: cw, h: ch })
}

/// The unit value (noise sigma) the calibration maps to `alpha`, where the table is monotonic
/// through it: the inverse of the calibration, for labels.
pub fn unit_for(axis: &LevelAxis, alpha: f32) -> Option<f32> {
    let table = axis.calibration.as_ref()?;
    for pair in table.windows(2) {
        let ([x0, y0], [x1, y1]) = (pair[0], pair[1]);
        let (lo, hi) = (y0.min(y1), y0.max(y1));
        if hi > lo && alpha >= lo - 1e-6 && alpha <= hi + 1e-6 {
            return Some(x0 + (alpha - y0) / (y1 - y0) * (x1 - x0));
        }
    }
    None
}

/// "α 0.250 (σ~35)" for an alpha axis with a sigma calibration; the axis name otherwise.
pub fn level_label(axis: &LevelAxis, alpha: f32) -> String {
    let name = if axis.name == "alpha" {
        "α".to_string()
    } else {
        axis.name.clone()
    };
    let unit = match axis.unit.as_deref() {
        Some("sigma") => "σ".to_string(),
        Some(u) => u.to_string(),
        None => String::new(),
    };
    match unit_for(axis, alpha) {
        Some(s) if !unit.is_empty() => format!("{name} {alpha:.3} ({unit}~{s:.0})"),
        _ => format!("{name} {alpha:.3}"),
    }
}

/// Runs the model once per level, saying on stderr how long each took.
pub fn restore_levels(model: &Model, input: &Image, levels: &[f32]) -> Result<Vec<Image>> {
    let mut out = Vec::with_capacity(levels.len());
    for (i, &alpha) in levels.iter().enumerate() {
        let t = Instant::now();
        out.push(model.run(input, Level::alpha(alpha))?);
        eprintln!(
            "  level {}/{}: {} = {alpha:.3} in {:.2} s",
            i + 1,
            levels.len(),
            model.axes()[0].name,
            t.elapsed().as_secs_f64()
        );
    }
    Ok(out)
}

/// PSNR and SSIM of `test` against `clean`, both clipped and rounded to 8 bits.
pub fn score(clean: &Image, test: &Image) -> (f64, f64) {
    let (a, b) = (
        metrics::quantize(clean.planes()),
        metrics::quantize(test.planes()),
    );
    (
        metrics::psnr(&a, &b),
        metrics::ssim(&a, &b, clean.width(), clean.height(), clean.channels()),
    )
}

/// The 8-bit RGB picture of an image (gray repeated; alpha dropped).
pub fn to_rgb(img: &Image) -> RgbImage {
    img.to_dynamic().to_rgb8()
}

/// `SHEET-psnr.png` beside `SHEET.png`.
pub fn plot_path(sheet: &Path) -> PathBuf {
    let stem = sheet
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("sheet");
    sheet.with_file_name(format!("{stem}-psnr.png"))
}

/// A GIF frame: the picture fitted in 512 pixels with its label in the corner.
pub fn gif_frame(img: &RgbImage, label: &str) -> RgbImage {
    let m = img.width().max(img.height());
    let mut f = if m > 512 {
        let (w, h) = (
            (img.width() * 512 / m).max(1),
            (img.height() * 512 / m).max(1),
        );
        image::imageops::resize(img, w, h, image::imageops::FilterType::Triangle)
    } else {
        img.clone()
    };
    let scale = draw::fit_scale(label, f.width().saturating_sub(8), 2);
    draw::boxed_text(&mut f, 4, 4, label, scale);
    f
}

/// Forward then back (without repeating the ends): the knob turning up and down.
pub fn bounce<T: Clone>(frames: &[T]) -> Vec<T> {
    let mut out = frames.to_vec();
    if frames.len() > 2 {
        out.extend(frames[1..frames.len() - 1].iter().rev().cloned());
    }
    out
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let start = Instant::now();
    check_output(&a.output, &["png"], &a.input, a.force)?;
    if let Some(g) = &a.gif {
        check_output(g, &["gif"], &a.input, a.force)?;
    }
    let plot = a.clean.as_ref().map(|_| plot_path(&a.output));
    if let Some(p) = &plot {
        check_output(p, &["png"], &a.input, a.force)?;
    }
    let input = Image::open(&a.input)?;
    let clean = a.clean.as_ref().map(Image::open).transpose()?;
    if let Some(c) = &clean {
        if (c.width(), c.height(), c.channels())
            != (input.width(), input.height(), input.channels())
        {
            return Err(format!(
                "the clean image is {}x{} with {} channel(s), the input {}x{} with {}",
                c.width(),
                c.height(),
                c.channels(),
                input.width(),
                input.height(),
                input.channels()
            )
            .into());
        }
    }
    let (w, h) = (input.width() as u32, input.height() as u32);
    let crop = match &a.crop {
        Some(s) => parse_crop(s, w, h)?,
        None => draw::central_crop(w, h, a.tile),
    };
    let engine = ctx.engine()?;
    let model = ctx.load(&engine, &a.model)?;
    let spec = model.spec();
    if input.channels() != spec.in_channels {
        return Err(format!(
            "the image has {} color channel(s), the model '{}' takes {}",
            input.channels(),
            spec.name,
            spec.in_channels
        )
        .into());
    }
    let axis = model.axes().first().cloned().ok_or_else(|| {
        format!(
            "the model '{}' has no level axis: nothing to sweep",
            spec.name
        )
    })?;
    let alphas: Vec<f32> = match (&a.levels, &a.sigmas) {
        (Some(l), _) => parse_values(l)?,
        (None, Some(s)) => parse_values(s)?
            .into_iter()
            .map(|s| {
                super::warn_if_clamped(&model, s);
                model.level_vec(&Level::sigma_clamped(s)).map(|v| v[0])
            })
            .collect::<tunable::Result<_>>()?,
        (None, None) => (0..=8)
            .map(|i| axis.min + (axis.max - axis.min) * i as f32 / 8.0)
            .collect(),
    };
    for &al in &alphas {
        model.level_vec(&Level::alpha(al))?;
    }
    let sigma_hat = estimate::noise_sigma(&input);
    let blind = axis.calibrate(sigma_hat).ok();
    match blind {
        Some(b) => eprintln!(
            "estimated noise sigma {sigma_hat:.2}; blind choice {} = {b:.3}",
            axis.name
        ),
        None => eprintln!(
            "estimated noise sigma {sigma_hat:.2} (the model has no calibration to map it to {})",
            axis.name
        ),
    }
    eprintln!(
        "{} levels of '{}' on {} ({}x{})",
        alphas.len(),
        spec.name,
        engine.describe(),
        w,
        h
    );
    let restored = restore_levels(&model, &input, &alphas)?;
    let scores: Option<Vec<(f64, f64)>> = clean
        .as_ref()
        .map(|c| restored.iter().map(|r| score(c, r)).collect());
    let input_score = clean.as_ref().map(|c| score(c, &input));
    let best = scores
        .as_ref()
        .and_then(|s| (0..s.len()).max_by(|&i, &j| s[i].0.total_cmp(&s[j].0)));

    // The sheet: input, levels, clean.
    let mut cells = vec![Cell {
        lines: vec!["input".into(), format!("est. σ {sigma_hat:.1}")],
        image: to_rgb(&input),
        accent: None,
    }];
    if let Some((p, _)) = input_score {
        cells[0].lines[0] = format!("input {p:.2} dB");
    }
    for (i, (al, img)) in alphas.iter().zip(&restored).enumerate() {
        let mut lines = vec![level_label(&axis, *al)];
        if let Some(s) = &scores {
            lines.push(format!("{:.2} dB", s[i].0));
        } else if blind.is_some_and(|b| (b - al).abs() < 0.5 * step_of(&alphas)) {
            lines.push("nearest to blind".into());
        }
        let accent = (best == Some(i)).then_some(Rgb([220, 40, 40]));
        cells.push(Cell {
            lines,
            image: to_rgb(img),
            accent,
        });
    }
    if let Some(c) = &clean {
        cells.push(Cell {
            lines: vec!["clean".into(), "reference".into()],
            image: to_rgb(c),
            accent: None,
        });
    }
    let columns = a
        .columns
        .map(|c| c as usize)
        .unwrap_or_else(|| draw::balanced_columns(cells.len(), 6));
    let sheet = draw::contact_sheet(&cells, a.tile, Some(crop), columns);
    draw::write_atomic(&a.output, &draw::png_bytes(&sheet)?)?;
    eprintln!(
        "wrote {} ({}x{})",
        a.output.display(),
        sheet.width(),
        sheet.height()
    );

    if let (Some(plot), Some(scores)) = (&plot, &scores) {
        let points: Vec<PlotPoint> = alphas
            .iter()
            .zip(scores)
            .map(|(&l, s)| PlotPoint {
                level: l as f64,
                psnr: s.0,
            })
            .collect();
        let title = format!(
            "PSNR vs {} - {} on {}",
            axis.name,
            spec.name,
            file_name(&a.input)
        );
        let notes = PlotNotes {
            title: &title,
            x_name: &axis.name,
            marker: blind.map(|b| (b as f64, format!("blind {b:.2} (est. σ {sigma_hat:.1})"))),
            marker_psnr: None,
            reference: input_score.map(|(p, _)| (p, format!("input {p:.2} dB"))),
        };
        let img = draw::psnr_plot(&points, &notes)?;
        draw::write_atomic(plot, &draw::png_bytes(&img)?)?;
        eprintln!("wrote {}", plot.display());
    }
    if let Some(g) = &a.gif {
        let frames: Vec<RgbImage> = alphas
            .iter()
            .zip(&restored)
            .enumerate()
            .map(|(i, (al, img))| {
                let mut label = level_label(&axis, *al);
                if let Some(s) = &scores {
                    label += &format!(" {:.2} dB", s[i].0);
                }
                gif_frame(&to_rgb(img), &label)
            })
            .collect();
        draw::write_atomic(g, &draw::gif_bytes(&bounce(&frames), 500)?)?;
        eprintln!("wrote {} ({} frames)", g.display(), bounce(&frames).len());
    }
    if let (Some(scores), Some((ip, is))) = (&scores, input_score) {
        println!(
            "| {} | {} (calibration) | PSNR (dB) | SSIM |",
            axis.name,
            axis.unit.as_deref().unwrap_or("unit")
        );
        println!("|---|---|---|---|");
        println!("| input | - | {ip:.2} | {is:.4} |");
        for (i, (al, (p, s))) in alphas.iter().zip(scores).enumerate() {
            let u = unit_for(&axis, *al)
                .map(|v| format!("{v:.1}"))
                .unwrap_or_else(|| "-".into());
            let mark = if best == Some(i) { " (best)" } else { "" };
            println!("| {al:.3} | {u} | {p:.2}{mark} | {s:.4} |");
        }
        if let Some(b) = blind {
            println!(
                "blind: estimated sigma {sigma_hat:.2} -> {} {b:.3}",
                axis.name
            );
        }
    }
    eprintln!("done in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

fn step_of(values: &[f32]) -> f32 {
    values
        .windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .fold(f32::MAX, f32::min)
        .min(1.0)
}

pub fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_specs() {
        assert_eq!(
            parse_values("0:1:0.25").unwrap(),
            vec![0.0, 0.25, 0.5, 0.75, 1.0]
        );
        assert_eq!(parse_values("0:1:0.125").unwrap().len(), 9);
        assert_eq!(parse_values("1:0:-0.5").unwrap(), vec![1.0, 0.5, 0.0]);
        assert_eq!(parse_values("0.2, 0.7").unwrap(), vec![0.2, 0.7]);
        assert!(parse_values("0:1:0").is_err());
        assert!(parse_values("0:1:-0.1").is_err());
        assert!(parse_values("0:1").is_err());
        assert!(parse_values("a,b").is_err());
        assert!(parse_values("0:1000:1").is_err());
        assert!(parse_crop("1,2,3,4", 10, 10).is_ok());
        assert!(parse_crop("8,2,3,4", 10, 10).is_err());
        assert!(parse_crop("1,2,3", 10, 10).is_err());
    }

    #[test]
    fn inverse_calibration() {
        let axis = LevelAxis {
            name: "alpha".into(),
            min: 0.0,
            max: 1.0,
            extrapolate: false,
            extrapolate_range: None,
            unit: Some("sigma".into()),
            calibration: Some(vec![[20.0, 0.0], [40.0, 0.5], [80.0, 1.0]]),
        };
        assert!((unit_for(&axis, 0.25).unwrap() - 30.0).abs() < 1e-4);
        assert!((unit_for(&axis, 0.75).unwrap() - 60.0).abs() < 1e-4);
        assert_eq!(level_label(&axis, 0.5), "α 0.500 (σ~40)");
        assert_eq!(bounce(&[1, 2, 3]), vec![1, 2, 3, 2]);
    }
}
