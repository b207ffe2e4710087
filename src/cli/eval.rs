//! `tunable eval --model M --data DIR --sigma 0,5,15,25,50 [--noise 8bit|float] [--blind] [--json OUT]`:
//! seeded N(0, sigma^2) noise on the 0..255 scale; with `--noise 8bit` (the default) the noisy
//! picture is clipped to 0..255 and rounded, as any saved photo is, with `--noise float` it is
//! left as it is (the papers' protocol); restore at the given sigma (through the model's
//! calibration) or, with `--blind`, at each picture's own estimate as `restore` does; clip and
//! round; mean PSNR and SSIM over the folder, beside the PSNR of the noisy input itself.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use tunable::{estimate, metrics, noise, Image, Level};

use super::{anyhow_like::Result, warn_if_clamped, Ctx, ModelChoice};

/// How the noisy input is stored before it is restored.
#[derive(Clone, Copy, PartialEq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NoiseKind {
    /// Clipped to 0..255 and rounded to integers: what a saved 8-bit photo holds.
    #[value(name = "8bit")]
    #[serde(rename = "8bit")]
    EightBit,
    /// Left unclipped in floating point: the papers' protocol.
    Float,
}

/// A clean picture with seeded noise of `sigma`, stored as `kind` says.
fn noisy_copy(clean: &Image, sigma: f32, seed: u64, kind: NoiseKind) -> tunable::Result<Image> {
    let noisy = noise::add_gaussian(clean.planes(), sigma, seed);
    clean.with_planes(match kind {
        NoiseKind::EightBit => metrics::quantize(&noisy),
        NoiseKind::Float => noisy,
    })
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    model: Option<PathBuf>,
    /// A folder of clean images (PNG, JPEG, TIFF).
    #[arg(long)]
    data: PathBuf,
    /// Noise levels, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "0,5,10,15,25,35,50,75")]
    sigma: Vec<f32>,
    /// Use this knob value for every sigma instead of the model's calibration.
    #[arg(long, conflicts_with = "blind")]
    alpha: Option<f32>,
    /// Estimate each noisy picture's sigma and restore at that level (as `restore` without a
    /// level does), instead of telling the model the sigma the noise was made with.
    #[arg(long)]
    blind: bool,
    /// How the noisy input is stored: clipped and rounded to 8 bits, or float.
    #[arg(long, value_enum, default_value = "8bit")]
    noise: NoiseKind,
    /// Only the first N images (sorted by name).
    #[arg(long)]
    limit: Option<usize>,
    /// Seed of the noise (image i at sigma s uses seed + 1000 * i + s).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write each 8-bit noisy input here, as DIR/sigma{S}/{name}.png (to run other
    /// denoisers on exactly the same pictures).
    #[arg(long)]
    save_noisy: Option<PathBuf>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(serde::Serialize)]
struct Row {
    sigma: f32,
    /// The level the model ran at (the mean over pictures when blind).
    alpha: Option<f32>,
    /// The mean estimated sigma (blind only).
    estimated_sigma: Option<f32>,
    psnr: f64,
    ssim: f64,
    /// PSNR of the noisy input itself.
    psnr_input: f64,
    images: usize,
}

/// One picture's result: PSNR and SSIM of the restored, PSNR of the input, level, estimate.
struct Score {
    psnr: f64,
    ssim: f64,
    psnr_input: f64,
    alpha: Option<f32>,
    estimate: f32,
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
    let mut files = list_images(&a.data)?;
    if let Some(n) = a.limit {
        files.truncate(n);
    }
    let images: Vec<Image> = files
        .iter()
        .map(Image::open)
        .collect::<tunable::Result<_>>()?;
    if a.save_noisy.is_some() && a.noise == NoiseKind::Float {
        return Err("--save-noisy needs --noise 8bit: float noise does not fit in a PNG".into());
    }
    let models = ModelChoice::new(ctx, &engine, a.model.clone());
    let model = models.for_channels(images[0].channels())?;
    let noise_name = match a.noise {
        NoiseKind::EightBit => "8-bit (clipped, rounded)",
        NoiseKind::Float => "float (unclipped)",
    };
    eprintln!(
        "{} images from {} on {}; model {}; {noise_name} noise; {}",
        images.len(),
        a.data.display(),
        engine.describe(),
        model.spec().name,
        if a.blind { "blind" } else { "told sigma" }
    );
    let mut rows = vec![];
    // The level column is named after the model's first axis (alpha, or sigma for FFDNet).
    let axis_name = model
        .axes()
        .first()
        .map(|a| a.name.as_str())
        .unwrap_or("level");
    let leveled = !model.axes().is_empty();
    println!("| sigma | input PSNR | level ({axis_name}) | estimated sigma | PSNR (dB) | SSIM |");
    println!("|---|---|---|---|---|---|");
    for &sigma in &a.sigma {
        let noisy_dir = a
            .save_noisy
            .as_ref()
            .map(|d| d.join(format!("sigma{sigma}")));
        if let Some(d) = &noisy_dir {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let told = match (a.alpha, leveled) {
            (_, false) => Some(Level::axes(&[])),
            (Some(al), true) => Some(Level::alpha(al)),
            (None, true) if a.blind => None,
            (None, true) => {
                warn_if_clamped(model, sigma);
                Some(Level::sigma_clamped(sigma))
            }
        };
        // Images in parallel: the scoring (noise, SSIM) runs on the CPU beside the model.
        let scores: Vec<Score> = images
            .par_iter()
            .enumerate()
            .map(|(i, clean)| -> tunable::Result<Score> {
                let seed = a.seed + 1000 * i as u64 + sigma.round() as u64;
                let noisy = noisy_copy(clean, sigma, seed, a.noise)?;
                if let (Some(d), Some(stem)) = (&noisy_dir, files[i].file_stem()) {
                    noisy.save(d.join(stem).with_extension("png"))?;
                }
                let estimate = estimate::noise_sigma(&noisy);
                let level = told.clone().unwrap_or(Level::sigma_clamped(estimate));
                let alpha = leveled
                    .then(|| model.level_vec(&level).map(|v| v[0]))
                    .transpose()?;
                let out = model.run(&noisy, level)?;
                let restored = metrics::quantize(out.planes());
                let (w, h, c) = (clean.width(), clean.height(), clean.channels());
                Ok(Score {
                    psnr: metrics::psnr(clean.planes(), &restored),
                    ssim: metrics::ssim(clean.planes(), &restored, w, h, c),
                    psnr_input: metrics::psnr(clean.planes(), noisy.planes()),
                    alpha,
                    estimate,
                })
            })
            .collect::<tunable::Result<_>>()?;
        let n = images.len() as f64;
        let mean = |f: &dyn Fn(&Score) -> f64| scores.iter().map(f).sum::<f64>() / n;
        let row = Row {
            sigma,
            alpha: leveled.then(|| mean(&|s| s.alpha.unwrap_or(0.0) as f64) as f32),
            estimated_sigma: a.blind.then(|| mean(&|s| s.estimate as f64) as f32),
            psnr: mean(&|s| s.psnr),
            ssim: mean(&|s| s.ssim),
            psnr_input: mean(&|s| s.psnr_input),
            images: images.len(),
        };
        let show = |v: Option<f32>, digits: usize| {
            v.map(|v| format!("{v:.digits$}"))
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "| {} | {:.2} | {} | {} | {:.2} | {:.4} |",
            sigma,
            row.psnr_input,
            show(row.alpha, 3),
            show(row.estimated_sigma, 2),
            row.psnr,
            row.ssim
        );
        rows.push(row);
    }
    if let Some(path) = a.json {
        let doc = serde_json::json!({
            "model": model.spec().name,
            "model_path": a.model.as_ref().map(|p| p.display().to_string()),
            "adapter": engine.describe(),
            "data": a.data.display().to_string(),
            "noise": a.noise,
            "blind": a.blind,
            "results": rows,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&doc)?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
