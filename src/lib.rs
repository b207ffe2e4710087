//! `tunable`: continuously tunable image restoration on the GPU (wgpu + WGSL) and the CPU.
//!
//! ```no_run
//! let engine = tunable::Engine::new()?;
//! let model = engine.load("weights/denoise-color.safetensors")?;
//! let noisy = tunable::Image::open("in.png")?;
//! let out = model.run(&noisy, tunable::Level::sigma(25.0))?;
//! out.save("out.png")?;
//! # Ok::<(), tunable::Error>(())
//! ```
//!
//! The API: [`Engine`] (an executor: a GPU through wgpu, the fast CPU executor or the reference),
//! [`Model`] (a loaded model file, run at any [`Level`]), [`Image`], [`Error`], the model file's
//! types in [`model`], the op graph every model lowers to in [`plan`] (with [`tensor`]), and the
//! helpers [`estimate`] (blind noise level), [`metrics`] (PSNR, SSIM) and [`noise`] (seeded noise).
//! The executors' internals are not part of it: `testing` reaches them for the crate's own tests,
//! benches and `tunable info`.

// The executors: reached from outside only through `testing`.
#[doc(hidden)]
pub mod cpu;
#[doc(hidden)]
pub mod gpu;

mod engine;
mod error;
mod image;
mod level;
pub mod model;
pub mod plan;
pub mod tensor;
/// The browser build's bindings (feature `web`, wasm32 only): the page in `tools/web/`.
#[cfg(all(target_arch = "wasm32", feature = "web"))]
pub mod web;

/// The wgpu this crate is built on: **wgpu 30**. Hand [`Engine::from_wgpu`] a device made
/// with this wgpu (`tunable::wgpu`), not with another major version: two wgpu majors are two
/// different crates, and a device of one cannot be used by the other (Bevy, egui-wgpu and
/// iced each pin their own wgpu; pick a `tunable` built on the same major).
pub use wgpu;

pub use engine::{BackendChoice, Engine, EngineOptions, Model, Progress};
pub use error::{Error, Result};
pub use image::Image;
pub use level::Level;
pub use model::Lowering;
pub mod estimate;
pub mod metrics;
pub mod noise;

/// Internals for the crate's own tests, benches and `tunable info`; not part of the API and not
/// stable.
#[doc(hidden)]
pub mod testing {
    pub use crate::cpu;
    pub use crate::engine::{crop, pad_reflect};
    pub use crate::gpu;
    pub use crate::image::{temp_path_for, MAX_PIXELS};
}
