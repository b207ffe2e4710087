//! Subcommands of the `tunable` tool, one module each.

mod eval;
mod info;
mod restore;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use tunable::{BackendChoice, Engine, EngineOptions, Lowering, Model};

#[derive(Parser)]
#[command(name = "tunable", version, about = "Continuously tunable image restoration: one network, one knob")]
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
    /// Restore an image at a level, or blind (the noise level estimated from the image).
    Restore(restore::Args),
    /// Add seeded noise to a folder of clean images, restore, and report PSNR/SSIM per sigma.
    Eval(eval::Args),
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
    let lowering = if cli.unfused { Lowering::Unfused } else { Lowering::Fused };
    let ctx = Ctx { opts, lowering };
    match cli.command {
        Command::Info => info::run(&ctx),
        Command::Restore(a) => restore::run(&ctx, a),
        Command::Eval(a) => eval::run(&ctx, a),
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
    fn load(&self, engine: &Engine, path: &Option<PathBuf>) -> anyhow_like::Result<Model> {
        match path {
            Some(p) => Ok(engine.load_with(p, self.lowering)?),
            None => Err("no --model given (the default model is not built into this binary yet)".into()),
        }
    }
}

/// A boxed error for the binary: library errors print their message, nothing panics.
pub mod anyhow_like {
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;
}
