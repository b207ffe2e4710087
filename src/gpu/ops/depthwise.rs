//! The depthwise k x k conv (wgsl/depthwise.wgsl): fused weight mix and epilogue; weights in
//! the plan's `[P+1][C][k*k]` order as they are.

use bytemuck::{Pod, Zeroable};

use super::epilogue::{self, EpOffsets};
use super::{upload_floats, Bindings, Dispatch, KernelUniform, Launch, LevelMix, NodeIo, Uniform};
use crate::error::Result;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::Kernel;
use crate::plan::{Depthwise, Node};

/// `DepthwiseDims` in wgsl/depthwise.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct DepthwiseDims {
    pub channels: u32,
    pub h: u32,
    pub w: u32,
    pub unused: u32,
}

/// `DepthwiseUniform` in wgsl/depthwise.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct DepthwiseUniform {
    pub dispatch: Dispatch,
    pub dims: DepthwiseDims,
    pub ep: EpOffsets,
    pub mix: LevelMix,
}

impl KernelUniform for DepthwiseUniform {
    fn dispatch_mut(&mut self) -> &mut Dispatch {
        &mut self.dispatch
    }
}

pub(crate) struct DepthwiseOp {
    kernel: Kernel,
    weights: wgpu::Buffer,
    ep: wgpu::Buffer,
    uniform: DepthwiseUniform,
}

impl DepthwiseOp {
    pub(crate) fn upload(ctx: &GpuContext, n: &Node, d: &Depthwise) -> Result<DepthwiseOp> {
        let name = n.name.as_str();
        let deltas = d.mix.deltas() as u8;
        let packed = epilogue::pack(&d.epilogue, n.others.len());
        let kernel = Kernel::Depthwise {
            k: d.k as u8,
            pw: deltas,
            pe: deltas,
            ep: packed.flags,
        };
        ctx.pipeline(kernel)?;
        Ok(DepthwiseOp {
            kernel,
            weights: upload_floats(ctx, name, "weight", &d.weight)?,
            ep: upload_floats(ctx, name, "epilogue", &packed.data)?,
            uniform: DepthwiseUniform {
                ep: packed.offsets,
                mix: LevelMix::of(&d.mix),
                ..Default::default()
            },
        })
    }

    /// One 16 x 16 tile of one channel per workgroup.
    pub(crate) fn launch(&self, io: &NodeIo) -> Launch {
        let s = io.input;
        let mut u = self.uniform;
        u.dims = DepthwiseDims {
            channels: s.c as u32,
            h: s.h as u32,
            w: s.w as u32,
            unused: 0,
        };
        Launch {
            kernel: self.kernel,
            uniform: Uniform::new(u),
            grid: [
                (s.w as u32).div_ceil(16),
                (s.h as u32).div_ceil(16),
                s.c as u32,
            ],
            bind: Bindings {
                x: Some(io.x.clone()),
                wt: Some(self.weights.clone()),
                ep: Some(self.ep.clone()),
                o1: io.other(0),
                o2: io.other(1),
                y: Some(io.y.clone()),
            },
        }
    }
}
