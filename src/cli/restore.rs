//! `tunable restore IN -o OUT [--model M] [--level A | --sigma S]`.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use tunable::{estimate, Image, Level};

use super::{anyhow_like::Result, Ctx};

#[derive(clap::Args)]
pub struct Args {
    /// The image to restore (PNG, JPEG, TIFF; 8 or 16 bit; gray or color; alpha kept).
    input: PathBuf,
    /// Where to write the result (.png, .jpg, .tif).
    #[arg(short, long)]
    output: PathBuf,
    /// A model file (default: the model built into the binary).
    #[arg(long)]
    model: Option<PathBuf>,
    /// The knob's value directly (alpha, on the model's first axis).
    #[arg(long, conflicts_with = "sigma")]
    level: Option<f32>,
    /// The noise level (sigma on the 0..255 scale), mapped to the knob by the model's calibration.
    #[arg(long)]
    sigma: Option<f32>,
    /// Overwrite the input file if the output names it.
    #[arg(long)]
    force: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    if same_file(&a.input, &a.output) && !a.force {
        return Err(format!(
            "the output {} is the input; pass --force to overwrite it",
            a.output.display()
        )
        .into());
    }
    let image = Image::open(&a.input)?;
    let engine = ctx.engine()?;
    let model = ctx.load(&engine, &a.model)?;
    let level = match (a.level, a.sigma) {
        (Some(l), _) => Level::alpha(l),
        (None, Some(s)) => {
            warn_if_clamped(&model, s);
            Level::sigma(s)
        }
        (None, None) if model.axes().is_empty() => Level::axes(&[]),
        (None, None) => {
            let sigma = estimate::noise_sigma(&image);
            let lv = model.level_vec(&Level::sigma(sigma))?;
            eprintln!(
                "estimated noise sigma {sigma:.2}; using {} = {:.3}",
                model.axes()[0].name,
                lv[0]
            );
            warn_if_clamped(&model, sigma);
            Level::sigma(sigma)
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
    out.save(&a.output)?;
    Ok(())
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Says so on stderr when a sigma is beyond the calibration table (it runs at the table's end).
fn warn_if_clamped(model: &tunable::Model, sigma: f32) {
    if let Some(w) = model.axes().first().and_then(|a| a.clamp_warning(sigma)) {
        eprintln!("warning: {w}");
    }
}
