//! `tunable restore IN... -o OUT [--model M] [--level A | --sigma S]`: one image to a file, or
//! several into a folder (the model is loaded once; a file that fails is reported and skipped).

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use tunable::{estimate, Image, Level, Model};

use super::{anyhow_like::Result, same_file, warn_if_clamped, Ctx, ModelChoice};

#[derive(clap::Args)]
pub struct Args {
    /// The image(s) to restore (PNG, JPEG, TIFF; 8 or 16 bit; gray or color; alpha kept).
    #[arg(required = true, num_args = 1..)]
    inputs: Vec<PathBuf>,
    /// Where to write the result (.png, .jpg, .tif); with several inputs, a folder (created if
    /// missing) that receives each result under its input's file name.
    #[arg(short, long)]
    output: PathBuf,
    /// A model file (default: the built-in model, the gray one for gray pictures).
    #[arg(long)]
    model: Option<PathBuf>,
    /// The knob's value directly (alpha, on the model's first axis).
    #[arg(long, conflicts_with = "sigma")]
    level: Option<f32>,
    /// The noise level (sigma on the 0..255 scale), mapped to the knob by the model's calibration.
    #[arg(long)]
    sigma: Option<f32>,
    /// Overwrite an input file if an output names it.
    #[arg(long)]
    force: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let jobs = jobs(&a)?;
    for (input, output) in &jobs {
        if same_file(input, output) && !a.force {
            return Err(format!(
                "the output {} is the input; pass --force to overwrite it",
                output.display()
            )
            .into());
        }
    }
    let engine = ctx.engine()?;
    let models = Levels::new(ModelChoice::new(ctx, &engine, a.model.clone()), &a);
    if let [(input, output)] = jobs.as_slice() {
        return restore_one(&models, input, output);
    }
    // Several files: go on past a bad one, say which failed, and fail at the end.
    let mut failed = vec![];
    for (i, (input, output)) in jobs.iter().enumerate() {
        eprintln!("[{}/{}] {}", i + 1, jobs.len(), input.display());
        if let Err(e) = restore_one(&models, input, output) {
            eprintln!("error: {e}");
            failed.push(input.display().to_string());
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {} images failed: {}",
            failed.len(),
            jobs.len(),
            failed.join(", ")
        )
        .into())
    }
}

/// (input, output) pairs: `-o` is the file for one input, the folder for several (created
/// once the names are checked).
fn jobs(a: &Args) -> Result<Vec<(PathBuf, PathBuf)>> {
    if let [input] = a.inputs.as_slice() {
        if !a.output.is_dir() {
            return Ok(vec![(input.clone(), a.output.clone())]);
        }
    }
    if a.output.exists() && !a.output.is_dir() {
        return Err(format!(
            "{} inputs need a folder for -o, and {} is a file",
            a.inputs.len(),
            a.output.display()
        )
        .into());
    }
    let mut seen = std::collections::HashSet::new();
    let mut jobs = vec![];
    for input in &a.inputs {
        let name = input
            .file_name()
            .ok_or_else(|| format!("{} has no file name", input.display()))?;
        if !seen.insert(name.to_owned()) {
            return Err(format!(
                "two inputs are named {}: their results would overwrite each other in {}",
                name.to_string_lossy(),
                a.output.display()
            )
            .into());
        }
        jobs.push((input.clone(), a.output.join(name)));
    }
    std::fs::create_dir_all(&a.output)
        .map_err(|e| format!("cannot create the folder {}: {e}", a.output.display()))?;
    Ok(jobs)
}

/// The models of a run with the level the user gave, resolved (and its clamping warning said)
/// once per model.
struct Levels<'a> {
    models: ModelChoice<'a>,
    level: Option<f32>,
    sigma: Option<f32>,
    resolved: [std::cell::OnceCell<Option<Level>>; 2],
}

impl<'a> Levels<'a> {
    fn new(models: ModelChoice<'a>, a: &Args) -> Self {
        Levels {
            models,
            level: a.level,
            sigma: a.sigma,
            resolved: Default::default(),
        }
    }
    /// The model for `image` and the level to run it at, `None` for blind mode.
    fn for_image(&self, image: &Image) -> Result<(&Model, Option<Level>)> {
        let model = self.models.for_channels(image.channels())?;
        let slot = usize::from(image.channels() == 1);
        let level = self.resolved[slot].get_or_init(|| given_level(model, self.level, self.sigma));
        Ok((model, level.clone()))
    }
}

/// The level the user gave (with its clamping warning), or `None` for blind mode.
fn given_level(model: &Model, level: Option<f32>, sigma: Option<f32>) -> Option<Level> {
    match (level, sigma) {
        (Some(l), _) => Some(Level::alpha(l)),
        (None, Some(s)) => {
            warn_if_clamped(model, s);
            Some(Level::sigma_clamped(s))
        }
        (None, None) if model.axes().is_empty() => Some(Level::axes(&[])),
        (None, None) => None,
    }
}

/// Restores one file at the given level, or blind (estimating this image's noise).
fn restore_one(models: &Levels, input: &Path, output: &Path) -> Result<()> {
    let image = Image::open(input)?;
    let (model, level) = models.for_image(&image)?;
    let level = match level {
        Some(l) => l,
        None => {
            let sigma = estimate::noise_sigma(&image);
            let lv = model.level_vec(&Level::sigma_clamped(sigma))?;
            eprintln!(
                "estimated noise sigma {sigma:.2}; using {} = {:.3}",
                model.axes()[0].name,
                lv[0]
            );
            warn_if_clamped(model, sigma);
            Level::sigma_clamped(sigma)
        }
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} tiles {elapsed}")
            .expect("static template"),
    );
    let out = model.run_with_progress(&image, level, &|done, total| {
        if total > 1 {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
    })?;
    bar.finish_and_clear();
    out.save(output)?;
    Ok(())
}
