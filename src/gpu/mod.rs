//! The wgpu runtime: adapter and device ([`GpuContext`]), the WGSL kernel variants
//! ([`kernels`]), one module per op family ([`ops`]) and the plan executor ([`GpuPlan`]).
//!
//! ```no_run
//! use tunable::gpu::{GpuContext, GpuPlan};
//! # fn demo(plan: &tunable::plan::Plan, x: &tunable::tensor::Tensor) -> tunable::Result<()> {
//! let ctx = GpuContext::new()?;            // TUNABLE_BACKEND / TUNABLE_ADAPTER honoured
//! eprintln!("{}", ctx.info());
//! let gpu = GpuPlan::new(ctx, plan)?;      // uploads every weight once
//! let y = gpu.run(x, &[0.35, 0.0, 0.0, 0.0])?; // moving the level writes 16 bytes
//! # Ok(()) }
//! ```
pub mod context;
pub mod exec;
pub mod kernels;
pub mod ops;

pub use context::{GpuContext, GpuCounters, GpuInfo, GpuOptions};
pub use exec::readback::settle_error_scopes;
pub use exec::{run_node, GpuPlan};
pub use ops::ftn::ftn_transform;
pub use ops::mix::mix_weights;
