//! `tunable eval --model M --data DIR --sigma 20,40,60,80 [--json OUT]`: the denoising protocol
//! (seeded N(0, sigma^2) noise on the 0..255 scale, no clipping of the noisy input; restore;
//! clip and round; mean PSNR and SSIM over the folder).

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use tunable::{metrics, noise, Image, Level};

use super::{anyhow_like::Result, warn_if_clamped, Ctx};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    model: Option<PathBuf>,
    /// A folder of clean images (PNG, JPEG, TIFF).
    #[arg(long)]
    data: PathBuf,
    /// Noise levels, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "20,40,60,80")]
    sigma: Vec<f32>,
    /// Use this knob value for every sigma instead of the model's calibration.
    #[arg(long)]
    alpha: Option<f32>,
    /// Only the first N images (sorted by name).
    #[arg(long)]
    limit: Option<usize>,
    /// Seed of the noise (image i at sigma s uses seed + 1000 * i + s).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(serde::Serialize)]
struct Row {
    sigma: f32,
    alpha: Option<f32>,
    psnr: f64,
    ssim: f64,
    images: usize,
}

pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let ext = p
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("")
                .to_ascii_lowercase();
            matches!(
                ext.as_str(),
                "png" | "jpg" | "jpeg" | "tif" | "tiff" | "bmp"
            )
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no images in {}", dir.display()).into());
    }
    Ok(files)
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let engine = ctx.engine()?;
    let model = ctx.load(&engine, &a.model)?;
    let mut files = list_images(&a.data)?;
    if let Some(n) = a.limit {
        files.truncate(n);
    }
    let images: Vec<Image> = files
        .iter()
        .map(Image::open)
        .collect::<tunable::Result<_>>()?;
    eprintln!(
        "{} images from {} on {}",
        images.len(),
        a.data.display(),
        engine.describe()
    );
    let mut rows = vec![];
    // The level column is named after the model's first axis (alpha, or sigma for FFDNet).
    let axis_name = model
        .axes()
        .first()
        .map(|a| a.name.as_str())
        .unwrap_or("level");
    println!("| sigma | level ({axis_name}) | PSNR (dB) | SSIM |");
    println!("|---|---|---|---|");
    for &sigma in &a.sigma {
        let level = match (a.alpha, model.axes().is_empty()) {
            (_, true) => Level::axes(&[]),
            (Some(al), false) => Level::alpha(al),
            (None, false) => {
                warn_if_clamped(&model, sigma);
                Level::sigma(sigma)
            }
        };
        let alpha = model
            .level_vec(&level)?
            .first()
            .copied()
            .filter(|_| !model.axes().is_empty());
        // Images in parallel: the scoring (noise, SSIM) runs on the CPU beside the model.
        let scores: Vec<(f64, f64)> = images
            .par_iter()
            .enumerate()
            .map(|(i, clean)| -> tunable::Result<(f64, f64)> {
                let seed = a.seed + 1000 * i as u64 + sigma.round() as u64;
                let noisy = clean.with_planes(noise::add_gaussian(clean.planes(), sigma, seed))?;
                let out = model.run(&noisy, level.clone())?;
                let restored = metrics::quantize(out.planes());
                let p = metrics::psnr(clean.planes(), &restored);
                let s = metrics::ssim(
                    clean.planes(),
                    &restored,
                    clean.width(),
                    clean.height(),
                    clean.channels(),
                );
                Ok((p, s))
            })
            .collect::<tunable::Result<_>>()?;
        let (psnr, ssim) = scores
            .iter()
            .fold((0.0, 0.0), |(p, s), (a, b)| (p + a, s + b));
        let n = images.len() as f64;
        let row = Row {
            sigma,
            alpha,
            psnr: psnr / n,
            ssim: ssim / n,
            images: images.len(),
        };
        let alpha_s = row
            .alpha
            .map(|v| format!("{v:.3}"))
            .unwrap_or_else(|| "-".into());
        println!(
            "| {} | {} | {:.2} | {:.4} |",
            sigma, alpha_s, row.psnr, row.ssim
        );
        rows.push(row);
    }
    if let Some(path) = a.json {
        let doc = serde_json::json!({
            "model": model.spec().name,
            "model_path": a.model.as_ref().map(|p| p.display().to_string()),
            "adapter": engine.describe(),
            "data": a.data.display().to_string(),
            "results": rows,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&doc)?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
