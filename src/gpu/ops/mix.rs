//! The unfused weight mix (wgsl/mix.wgsl): `W0 + sum_p c_p D_p` written into a buffer, the
//! baseline of the fused conv, and [`mix_weights`], its one-shot form (the twin of
//! `reference::mix_weights`).

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use super::{
    u32_of, upload_floats, Bindings, Dispatch, KernelUniform, Launch, LevelMix, Uniform, STORAGE,
};
use crate::error::{Error, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::exec::run_once;
use crate::gpu::kernels::{grid_1d, Kernel};
use crate::plan::{Affine, LevelVec, MAX_DELTAS};

/// `MixUniform` in wgsl/mix.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct MixUniform {
    pub dispatch: Dispatch,
    /// Values per part.
    pub len: u32,
    pub unused: [u32; 3],
    pub mix: LevelMix,
}

impl KernelUniform for MixUniform {
    fn dispatch_mut(&mut self) -> &mut Dispatch {
        &mut self.dispatch
    }
}

/// The mix pass `kernel` over `src` (parts of `len` values) into `dst`, 256 values per
/// workgroup.
pub(crate) fn launch(
    kernel: Kernel,
    mix: LevelMix,
    len: u32,
    src: wgpu::Buffer,
    dst: wgpu::Buffer,
    max: u32,
) -> Launch {
    let (g, pitch) = grid_1d(len.div_ceil(256), max);
    let u = MixUniform {
        dispatch: Dispatch {
            row_pitch: pitch,
            ..Default::default()
        },
        len,
        unused: [0; 3],
        mix,
    };
    Launch {
        kernel,
        uniform: Uniform::new(u),
        grid: [g[0], g[1], 1],
        bind: Bindings {
            x: Some(src),
            y: Some(dst),
            ..Default::default()
        },
    }
}

/// The unfused weight mix on the GPU: `mixed` holds `coefs.len() + 1` parts of equal length;
/// returns `part_0 + sum_p c_p(level) part_{p+1}` (the twin of `reference::mix_weights`).
pub fn mix_weights(
    ctx: &Arc<GpuContext>,
    mixed: &[f32],
    coefs: &[Affine],
    level: &LevelVec,
) -> Result<Vec<f32>> {
    let parts = coefs.len() + 1;
    if coefs.len() > MAX_DELTAS || mixed.is_empty() || !mixed.len().is_multiple_of(parts) {
        return Err(Error::Shape(format!(
            "mix of {} values in {parts} parts ({} deltas, at most {MAX_DELTAS})",
            mixed.len(),
            coefs.len()
        )));
    }
    let n = mixed.len() / parts;
    let len = u32_of(n, "mix length")?;
    let src = upload_floats(ctx, "mix", "input", mixed)?;
    let out = ctx.create_buffer(
        "mix.out",
        n as u64 * 4,
        STORAGE | wgpu::BufferUsages::COPY_SRC,
    )?;
    let kernel = Kernel::MixWeights {
        p: coefs.len() as u8,
    };
    let max = ctx.info().max_workgroups_per_dim;
    let l = launch(kernel, LevelMix::new(coefs), len, src, out.clone(), max);
    run_once(ctx, vec![l], &out, n, level)
}
