//! `act(u * a + v * b)` per element (wgsl/eltwise.wgsl): the unfused form of AdaFM's 1x1, the
//! residual add and the blend; `u`, `v` mixed per channel.

use bytemuck::{Pod, Zeroable};

use super::epilogue::act_code;
use super::{upload_floats, Bindings, Dispatch, KernelUniform, Launch, LevelMix, NodeIo, Uniform};
use crate::error::Result;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::{grid_1d, Kernel};
use crate::plan::{Activation, Eltwise, Node};

/// `EltwiseDims` in wgsl/eltwise.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct EltwiseDims {
    pub channels: u32,
    pub plane: u32,
    pub len: u32,
    pub unused: u32,
}

/// Offsets (in floats) of `u`, `v` and the PReLU slopes in the gains buffer
/// (`EltwiseGains` in wgsl/eltwise.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct EltwiseGains {
    pub u: u32,
    pub v: u32,
    pub slope: u32,
    pub unused: u32,
}

/// `EltwiseUniform` in wgsl/eltwise.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct EltwiseUniform {
    pub dispatch: Dispatch,
    pub dims: EltwiseDims,
    pub gains: EltwiseGains,
    pub mix: LevelMix,
}

impl KernelUniform for EltwiseUniform {
    fn dispatch_mut(&mut self) -> &mut Dispatch {
        &mut self.dispatch
    }
}

pub(crate) struct EltwiseOp {
    kernel: Kernel,
    has_b: bool,
    gains: wgpu::Buffer,
    uniform: EltwiseUniform,
}

impl EltwiseOp {
    pub(crate) fn upload(ctx: &GpuContext, n: &Node, e: &Eltwise) -> Result<EltwiseOp> {
        let mut g = EltwiseGains::default();
        let mut data = e.u.clone();
        // `b` is read when there is both a gain for it and a tensor.
        let has_b = e.v.is_some() && !n.others.is_empty();
        if let (Some(v), true) = (&e.v, has_b) {
            g.v = data.len() as u32;
            data.extend_from_slice(v);
        }
        if let Activation::Prelu(s) = &e.act {
            g.slope = data.len() as u32;
            data.extend_from_slice(s);
        }
        let kernel = Kernel::Eltwise {
            p: e.mix.deltas() as u8,
            has_b,
            act: act_code(&e.act),
        };
        ctx.pipeline(kernel)?;
        Ok(EltwiseOp {
            kernel,
            has_b,
            gains: upload_floats(ctx, &n.name, "gains", &data)?,
            uniform: EltwiseUniform {
                gains: g,
                mix: LevelMix::of(&e.mix),
                ..Default::default()
            },
        })
    }

    /// 256 elements per workgroup, 1-D.
    pub(crate) fn launch(&self, io: &NodeIo, max: u32) -> Launch {
        let s = io.input;
        let mut u = self.uniform;
        let len = s.len() as u32;
        u.dims = EltwiseDims {
            channels: s.c as u32,
            plane: (s.h * s.w) as u32,
            len,
            unused: 0,
        };
        let (g, pitch) = grid_1d(len.div_ceil(256), max);
        u.dispatch.row_pitch = pitch;
        Launch {
            kernel: self.kernel,
            uniform: Uniform::new(u),
            grid: [g[0], g[1], 1],
            bind: Bindings {
                x: Some(io.x.clone()),
                ep: Some(self.gains.clone()),
                o1: if self.has_b { io.other(0) } else { None },
                y: Some(io.y.clone()),
                ..Default::default()
            },
        }
    }
}
