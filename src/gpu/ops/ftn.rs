//! The FTN filter transform on the GPU (wgsl/ftn.wgsl), run once at load: two layers of
//! grouped 1x1 conv over a filter seen as `cout` images (the twin of
//! `reference::ftn_transform`).

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use super::{u32_of, upload_floats, Bindings, Dispatch, KernelUniform, Launch, Uniform, STORAGE};
use crate::error::{Error, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::exec::run_once;
use crate::gpu::kernels::{grid_1d, Kernel};
use crate::plan::FtnParams;

/// `FtnDims` in wgsl/ftn.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct FtnDims {
    pub cout: u32,
    pub cin: u32,
    /// `k * k`: pixels of one filter image.
    pub kk: u32,
    /// Channels per group.
    pub group_size: u32,
    /// Values of the filter.
    pub len: u32,
    /// 1 (one shared PReLU slope) or `cin`.
    pub slope_len: u32,
    /// Offsets (in floats) of the bias and the slopes in the layer's `ep` buffer.
    pub bias_at: u32,
    pub slope_at: u32,
}

/// `FtnUniform` in wgsl/ftn.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct FtnUniform {
    pub dispatch: Dispatch,
    pub dims: FtnDims,
}

impl KernelUniform for FtnUniform {
    fn dispatch_mut(&mut self) -> &mut Dispatch {
        &mut self.dispatch
    }
}

/// The FTN transform on the GPU: `weight` is `[cout, cin, k, k]`; returns FTN(weight) in the
/// same layout.
pub fn ftn_transform(
    ctx: &Arc<GpuContext>,
    weight: &[f32],
    cout: usize,
    cin: usize,
    k: usize,
    f: &FtnParams,
) -> Result<Vec<f32>> {
    let kk = k * k;
    let n = cout * cin * kk;
    let bad = |m: String| Error::Shape(format!("FTN: {m}"));
    if f.groups == 0 || !cin.is_multiple_of(f.groups) {
        return Err(bad(format!(
            "{cin} channels are not divisible into {} groups",
            f.groups
        )));
    }
    let gs = cin / f.groups;
    for (what, v, want) in [
        ("weight", weight.len(), n),
        ("w1", f.w1.len(), cin * gs),
        ("w2", f.w2.len(), cin * gs),
        ("b1", f.b1.len(), cin),
        ("b2", f.b2.len(), cin),
    ] {
        if v != want {
            return Err(bad(format!("{what} has {v} values, expected {want}")));
        }
    }
    if f.slope.len() != 1 && f.slope.len() != cin {
        return Err(bad(format!(
            "PReLU has {} slopes, expected 1 or {cin}",
            f.slope.len()
        )));
    }
    if n == 0 {
        return Ok(vec![]);
    }
    let len = u32_of(n, "FTN size")?;
    let (g, pitch) = grid_1d(len.div_ceil(256), ctx.info().max_workgroups_per_dim);
    // Each layer's ep buffer is [bias (cin) | slopes].
    let u = FtnUniform {
        dispatch: Dispatch {
            row_pitch: pitch,
            ..Default::default()
        },
        dims: FtnDims {
            cout: cout as u32,
            cin: cin as u32,
            kk: kk as u32,
            group_size: gs as u32,
            len,
            slope_len: f.slope.len() as u32,
            bias_at: 0,
            slope_at: cin as u32,
        },
    };
    let up = |what: &str, d: &[f32]| upload_floats(ctx, "ftn", what, d);
    let ep1: Vec<f32> = f.b1.iter().chain(f.slope).copied().collect();
    let ep2: Vec<f32> = f.b2.iter().chain(f.slope).copied().collect();
    let usage = STORAGE | wgpu::BufferUsages::COPY_SRC;
    let hidden = ctx.create_buffer("ftn.hidden", n as u64 * 4, usage)?;
    let out = ctx.create_buffer("ftn.out", n as u64 * 4, usage)?;
    let layer = |layer: u8, x: wgpu::Buffer, w: &[f32], ep: &[f32], y: &wgpu::Buffer| {
        Ok::<_, Error>(Launch {
            kernel: Kernel::Ftn { layer },
            uniform: Uniform::new(u),
            grid: [g[0], g[1], 1],
            bind: Bindings {
                x: Some(x),
                wt: Some(up(&format!("w{layer}"), w)?),
                ep: Some(up(&format!("ep{layer}"), ep)?),
                y: Some(y.clone()),
                ..Default::default()
            },
        })
    };
    let launches = vec![
        layer(1, up("weight", weight)?, f.w1, &ep1, &hidden)?,
        layer(2, hidden.clone(), f.w2, &ep2, &out)?,
    ];
    // The transform does not depend on the level.
    run_once(ctx, launches, &out, n, &[0.0; 4])
}
