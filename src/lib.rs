//! `tunable`: continuously tunable image restoration on the GPU (wgpu + WGSL) and the CPU.
pub mod cpu;
pub mod gpu;
pub mod error;
pub mod plan;
pub mod tensor;

pub use error::{Error, Result};
