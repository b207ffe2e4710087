//! Pixel unshuffle and shuffle by 2 (wgsl/shuffle.wgsl): one invocation per output value.

use bytemuck::{Pod, Zeroable};

use super::{Bindings, Dispatch, KernelUniform, Launch, NodeIo, Uniform};
use crate::error::Result;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::{grid_1d, Kernel};

/// `ShuffleDims` in wgsl/shuffle.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ShuffleDims {
    pub ic: u32,
    pub ih: u32,
    pub iw: u32,
    /// Values of the output.
    pub len: u32,
    pub oc: u32,
    pub oh: u32,
    pub ow: u32,
    pub unused: u32,
}

/// `ShuffleUniform` in wgsl/shuffle.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ShuffleUniform {
    pub dispatch: Dispatch,
    pub dims: ShuffleDims,
}

impl KernelUniform for ShuffleUniform {
    fn dispatch_mut(&mut self) -> &mut Dispatch {
        &mut self.dispatch
    }
}

pub(crate) struct ShuffleOp {
    kernel: Kernel,
}

impl ShuffleOp {
    pub(crate) fn upload(ctx: &GpuContext, unshuffle: bool) -> Result<ShuffleOp> {
        let kernel = Kernel::Shuffle { unshuffle };
        ctx.pipeline(kernel)?;
        Ok(ShuffleOp { kernel })
    }

    /// 256 output values per workgroup, 1-D.
    pub(crate) fn launch(&self, io: &NodeIo, max: u32) -> Launch {
        let (s, o) = (io.input, io.output);
        let len = o.len() as u32;
        let (g, pitch) = grid_1d(len.div_ceil(256), max);
        let u = ShuffleUniform {
            dispatch: Dispatch {
                row_pitch: pitch,
                ..Default::default()
            },
            dims: ShuffleDims {
                ic: s.c as u32,
                ih: s.h as u32,
                iw: s.w as u32,
                len,
                oc: o.c as u32,
                oh: o.h as u32,
                ow: o.w as u32,
                unused: 0,
            },
        };
        Launch {
            kernel: self.kernel,
            uniform: Uniform::new(u),
            grid: [g[0], g[1], 1],
            bind: Bindings {
                x: Some(io.x.clone()),
                y: Some(io.y.clone()),
                ..Default::default()
            },
        }
    }
}
