//! `tunable demo`: noise the astronaut photo (seeded Gaussian noise, sigma 25 by default, not
//! clipped: the evaluation protocol), restore it blind (estimated sigma -> calibration -> knob)
//! and across the knob's range, and write into demo/: noisy.png, blind.png, level-*.png (the
//! knob at its minimum, middle and maximum), sheet.png (contact sheet) and sheet-psnr.png
//! (PSNR against the knob); the PSNRs and the estimate are printed. The picture is shrunk to
//! 256x256 by default (`--size 0` keeps it whole) so the demo takes seconds on a small CPU.
//!
//! The picture, tests/data/astronaut.png, is the NASA photograph of Eileen Collins that
//! scikit-image ships as `skimage.data.astronaut()` (512x512 RGB; public domain: NASA Great
//! Images database, no known copyright restrictions).

use std::path::{Path, PathBuf};
use std::time::Instant;

use image::Rgb;
use tunable::{estimate, noise, Image, Level};

use super::draw::{self, Cell, PlotNotes, PlotPoint};
use super::sweep::{file_name, level_label, restore_levels, score, to_rgb};
use super::{anyhow_like::Result, check_output, Ctx};

const DEFAULT_INPUT: &str = "tests/data/astronaut.png";

#[derive(clap::Args)]
pub struct Args {
    /// The clean picture (default: tests/data/astronaut.png).
    #[arg(long)]
    input: Option<PathBuf>,
    /// The noise to add (sigma on the 0..255 scale).
    #[arg(long, default_value_t = 25.0)]
    sigma: f32,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write the results (created if missing).
    #[arg(long, default_value = "demo")]
    out: PathBuf,
    /// A model file (default: the model built into the binary).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Shrink the picture so its longer side is at most this many pixels (0: as is). The default
    /// keeps the demo to a few seconds on a 2-core CPU (six restorations of 256x256; at the
    /// full 512x512 it takes about four times as long).
    #[arg(long, default_value_t = 256)]
    size: u32,
}

fn find_input(given: &Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.clone());
    }
    // From the repository root, else from the source tree this binary was built from.
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_INPUT);
    [PathBuf::from(DEFAULT_INPUT), built]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "{DEFAULT_INPUT} not found (run from the repository root, or pass --input IMAGE)"
            )
            .into()
        })
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let start = Instant::now();
    if !(a.sigma.is_finite() && (0.0..=255.0).contains(&a.sigma)) {
        return Err(format!("--sigma {} is not in [0, 255]", a.sigma).into());
    }
    let input = find_input(&a.input)?;
    let mut clean = Image::open(&input)?;
    let longest = clean.width().max(clean.height()) as u32;
    if a.size > 0 && longest > a.size {
        let (w, h) = (
            clean.width() as u32 * a.size / longest,
            clean.height() as u32 * a.size / longest,
        );
        let small = clean.to_dynamic().resize_exact(
            w.max(1),
            h.max(1),
            image::imageops::FilterType::Lanczos3,
        );
        clean = Image::from_dynamic(small)?;
    }
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let path = |name: &str| a.out.join(name);
    check_output(&path("noisy.png"), &["png"], &input, false)?;

    let engine = ctx.engine()?;
    let model = ctx.load(&engine, &a.model)?;
    let spec = model.spec();
    let axis = model.axes().first().cloned().ok_or_else(|| {
        format!(
            "the model '{}' has no level axis: the demo turns a knob",
            spec.name
        )
    })?;
    if clean.channels() != spec.in_channels {
        return Err(format!(
            "the picture has {} color channel(s), the model '{}' takes {}",
            clean.channels(),
            spec.name,
            spec.in_channels
        )
        .into());
    }
    eprintln!(
        "demo: {} {}x{}, noise sigma {} (seed {}), model '{}' ({}) on {}",
        file_name(&input),
        clean.width(),
        clean.height(),
        a.sigma,
        a.seed,
        spec.name,
        if spec.family.is_empty() {
            "-"
        } else {
            &spec.family
        },
        engine.describe()
    );
    let noisy = clean.with_planes(noise::add_gaussian(clean.planes(), a.sigma, a.seed))?;

    let t = Instant::now();
    let sigma_hat = estimate::noise_sigma(&noisy);
    let est_s = t.elapsed().as_secs_f64();
    let (blind_alpha, how) = match axis.calibrate(sigma_hat) {
        Ok(v) => (v.clamp(axis.min, axis.max), "by the model's calibration"),
        Err(_) => (
            (axis.min + axis.max) / 2.0,
            "(no calibration in the model: the middle of the range)",
        ),
    };
    let t = Instant::now();
    let blind = model.run(&noisy, Level::alpha(blind_alpha))?;
    eprintln!(
        "  blind: {} = {blind_alpha:.3} in {:.2} s",
        axis.name,
        t.elapsed().as_secs_f64()
    );
    let alphas: Vec<f32> = (0..5)
        .map(|i| axis.min + (axis.max - axis.min) * i as f32 / 4.0)
        .collect();
    let levels = restore_levels(&model, &noisy, &alphas)?;

    // Files.
    noisy.save(path("noisy.png"))?;
    blind.save(path("blind.png"))?;
    let mut written = vec![path("noisy.png"), path("blind.png")];
    for i in [0, 2, 4] {
        let p = path(&format!("level-{:.2}.png", alphas[i]));
        levels[i].save(&p)?;
        written.push(p);
    }
    let noisy_score = score(&clean, &noisy);
    let blind_score = score(&clean, &blind);
    let scores: Vec<(f64, f64)> = levels.iter().map(|l| score(&clean, l)).collect();
    let best = (0..scores.len())
        .max_by(|&i, &j| scores[i].0.total_cmp(&scores[j].0))
        .unwrap_or(0);

    let mut cells = vec![
        Cell {
            lines: vec!["clean".into(), "reference".into()],
            image: to_rgb(&clean),
            accent: None,
        },
        Cell {
            lines: vec![
                format!("noisy σ {}", a.sigma),
                format!("{:.2} dB", noisy_score.0),
            ],
            image: to_rgb(&noisy),
            accent: None,
        },
    ];
    for (i, (al, img)) in alphas.iter().zip(&levels).enumerate() {
        let accent = (i == best).then_some(Rgb([220, 40, 40]));
        cells.push(Cell {
            lines: vec![level_label(&axis, *al), format!("{:.2} dB", scores[i].0)],
            image: to_rgb(img),
            accent,
        });
    }
    cells.push(Cell {
        lines: vec![
            format!(
                "blind {} {blind_alpha:.3}",
                if axis.name == "alpha" {
                    "α"
                } else {
                    &axis.name
                }
            ),
            format!("{:.2} dB", blind_score.0),
        ],
        image: to_rgb(&blind),
        accent: Some(Rgb([230, 130, 0])),
    });
    let (w, h) = (clean.width() as u32, clean.height() as u32);
    let sheet = draw::contact_sheet(&cells, 256, Some(draw::central_crop(w, h, 256)), 4);
    draw::write_atomic(&path("sheet.png"), &draw::png_bytes(&sheet)?)?;
    written.push(path("sheet.png"));
    let points: Vec<PlotPoint> = alphas
        .iter()
        .zip(&scores)
        .map(|(&l, s)| PlotPoint {
            level: l as f64,
            psnr: s.0,
        })
        .collect();
    let title = format!(
        "PSNR vs {} on {}, noise σ {}",
        axis.name,
        file_name(&input),
        a.sigma
    );
    let notes = PlotNotes {
        title: &title,
        x_name: &axis.name,
        marker: Some((
            blind_alpha as f64,
            format!("blind {blind_alpha:.2}: {:.2} dB", blind_score.0),
        )),
        marker_psnr: Some(blind_score.0),
        reference: Some((noisy_score.0, format!("noisy {:.2} dB", noisy_score.0))),
    };
    let plot = draw::psnr_plot(&points, &notes)?;
    draw::write_atomic(&path("sheet-psnr.png"), &draw::png_bytes(&plot)?)?;
    written.push(path("sheet-psnr.png"));

    println!(
        "noise sigma {} (seed {}); estimated sigma {sigma_hat:.2} in {est_s:.2} s (error {:+.2})",
        a.sigma,
        a.seed,
        sigma_hat - a.sigma
    );
    println!("blind choice: {} = {blind_alpha:.3} {how}", axis.name);
    println!("| image | {} | PSNR (dB) | SSIM |", axis.name);
    println!("|---|---|---|---|");
    println!(
        "| noisy | - | {:.2} | {:.4} |",
        noisy_score.0, noisy_score.1
    );
    println!(
        "| blind | {blind_alpha:.3} | {:.2} | {:.4} |",
        blind_score.0, blind_score.1
    );
    for (i, (al, (p, s))) in alphas.iter().zip(&scores).enumerate() {
        let mark = if i == best { " (best)" } else { "" };
        println!("| level | {al:.3} | {p:.2}{mark} | {s:.4} |");
    }
    println!(
        "wrote {}",
        written
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("took {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}
