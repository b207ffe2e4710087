//! Subcommands of the `tunable` tool, one module each.

mod default_model;
mod demo;
mod draw;
mod eval;
mod info;
mod models;
mod restore;
mod sweep;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};
use tunable::{BackendChoice, Engine, EngineOptions, Lowering, Model};

#[derive(Parser)]
#[command(
    name = "tunable",
    version,
    about = "Continuously tunable image restoration: one network, one knob"
)]
pub struct Cli {
    /// Which executor runs the model (auto: a real GPU, else the fast CPU executor).
    #[arg(long, global = true, value_enum, default_value = "auto")]
    backend: BackendArg,
    /// Run the unfused baseline (separate mix and combine passes) instead of the fused form.
    #[arg(long, global = true)]
    unfused: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    Auto,
    Gpu,
    Cpu,
    Reference,
}

#[derive(Subcommand)]
enum Command {
    /// Show the GPU adapter, its backend and limits, and check a conv on GPU against the CPU.
    Info,
    /// Restore images at a level, or blind (the noise level estimated from each image).
    Restore(restore::Args),
    /// Add seeded noise to a folder of clean images, restore, and report PSNR/SSIM per sigma.
    Eval(eval::Args),
    /// Restore at a series of levels: a labelled contact sheet, a GIF, PSNR against a clean reference.
    Sweep(sweep::Args),
    /// Noise the astronaut photo, restore it blind and at three levels, write the results to demo/.
    Demo(demo::Args),
    /// List the built-in model and the model files in weights/ with their level axes.
    Models(models::Args),
}

pub fn main() -> anyhow_like::Result<()> {
    let cli = Cli::parse();
    let opts = EngineOptions {
        backend: match cli.backend {
            BackendArg::Auto => BackendChoice::Auto,
            BackendArg::Gpu => BackendChoice::Gpu,
            BackendArg::Cpu => BackendChoice::Cpu,
            BackendArg::Reference => BackendChoice::Reference,
        },
        ..Default::default()
    };
    let lowering = if cli.unfused {
        Lowering::Unfused
    } else {
        Lowering::Fused
    };
    let ctx = Ctx { opts, lowering };
    match cli.command {
        Command::Info => info::run(&ctx),
        Command::Restore(a) => restore::run(&ctx, a),
        Command::Eval(a) => eval::run(&ctx, a),
        Command::Sweep(a) => sweep::run(&ctx, a),
        Command::Demo(a) => demo::run(&ctx, a),
        Command::Models(a) => models::run(a),
    }
}

/// What every subcommand needs to build its engine and load its model.
pub struct Ctx {
    opts: EngineOptions,
    lowering: Lowering,
}

impl Ctx {
    fn engine(&self) -> tunable::Result<Engine> {
        Engine::with_options(self.opts.clone())
    }
    /// The model at `path`, or the built-in color model.
    fn load(&self, engine: &Engine, path: &Option<PathBuf>) -> anyhow_like::Result<Model> {
        self.load_for(engine, path, 3)
    }
    /// The model at `path`, or the built-in model for pictures of `channels` color channels.
    fn load_for(
        &self,
        engine: &Engine,
        path: &Option<PathBuf>,
        channels: usize,
    ) -> anyhow_like::Result<Model> {
        match path {
            Some(p) => Ok(engine.load_with(p, self.lowering)?),
            None => {
                let builtin = default_model::for_channels(channels);
                match builtin.bytes {
                    Some(bytes) => engine.load_bytes(bytes, self.lowering).map_err(|e| {
                        format!("the built-in model ({}): {e}", builtin.source).into()
                    }),
                    None => Err(default_model::missing().into()),
                }
            }
        }
    }
}

/// The model of a command over many pictures: the one given with `--model`, or the built-in
/// model that fits each picture's channel count, loaded when a picture first needs it.
pub struct ModelChoice<'a> {
    ctx: &'a Ctx,
    engine: &'a Engine,
    path: Option<PathBuf>,
    loaded: [std::cell::OnceCell<Model>; 2],
}

impl<'a> ModelChoice<'a> {
    pub fn new(ctx: &'a Ctx, engine: &'a Engine, path: Option<PathBuf>) -> Self {
        ModelChoice {
            ctx,
            engine,
            path,
            loaded: Default::default(),
        }
    }
    /// The model for a picture of `channels` color channels (a given model serves every picture).
    pub fn for_channels(&self, channels: usize) -> anyhow_like::Result<&Model> {
        let slot = usize::from(self.path.is_none() && channels == 1);
        if let Some(m) = self.loaded[slot].get() {
            return Ok(m);
        }
        let model = self.ctx.load_for(self.engine, &self.path, channels)?;
        Ok(self.loaded[slot].get_or_init(|| model))
    }
}

/// Checks an output path before any work: a known extension, not the input (unless `force`),
/// an existing folder that we can create files in. Nothing is left behind by the check.
fn check_output(path: &Path, exts: &[&str], input: &Path, force: bool) -> anyhow_like::Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    if !exts.contains(&ext.as_str()) {
        return Err(format!(
            "{}: unsupported output format (use {})",
            path.display(),
            exts.iter()
                .map(|e| format!(".{e}"))
                .collect::<Vec<_>>()
                .join(" or ")
        )
        .into());
    }
    if same_file(input, path) && !force {
        return Err(format!(
            "the output {} is the input; pass --force to overwrite it",
            path.display()
        )
        .into());
    }
    if path.is_dir() {
        return Err(format!("{}: is a folder", path.display()).into());
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(format!(
            "{}: the folder {} does not exist",
            path.display(),
            dir.display()
        )
        .into());
    }
    let probe = draw::temp_beside(path);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!("{}: cannot write in {}: {e}", path.display(), dir.display()).into()),
    }
}

/// Whether two paths name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Says so on stderr when a sigma is beyond the model's calibration table (it runs at the
/// table's end).
fn warn_if_clamped(model: &tunable::Model, sigma: f32) {
    if let Some(w) = model.axes().first().and_then(|a| a.clamp_warning(sigma)) {
        eprintln!("warning: {w}");
    }
}

/// A boxed error for the binary: library errors print their message, nothing panics.
pub mod anyhow_like {
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;
}
