//! One module per GPU op family, each beside the WGSL it drives: its kernel choice, its weight
//! re-layout, its uniform (a named `#[repr(C)]` struct with the field names of the WGSL
//! struct it is read as) and its launches. The plan executor (`exec`) only sees `GpuOp` and
//! the `Launch`es it makes.
//!
//! Every uniform starts with a [`Dispatch`] (filled in per dispatch piece when a grid is split
//! over the workgroup limit); the shared parts ([`LevelMix`], [`EpOffsets`]) have the same
//! layout wherever they appear.

pub mod conv;
pub mod depthwise;
pub mod eltwise;
pub mod epilogue;
pub mod ftn;
pub mod mix;
pub mod shuffle;
pub mod texture;
pub mod winograd;

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::Kernel;
use crate::plan::{Affine, Mix, Node, Op, Shape};

pub use epilogue::EpOffsets;

/// The storage usage of weights and tensors.
pub(crate) const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE;

/// Where this dispatch piece starts (in workgroups) and the row pitch of 1-D kernels laid on
/// a 2-D grid: the first member of every uniform (`Dispatch` in wgsl/common.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Dispatch {
    pub group_offset: [u32; 3],
    pub row_pitch: u32,
}

/// The mix coefficients `c_p = offset_p + dot(gain_p, level)` of up to 4 deltas, unused ones
/// 0 (`LevelMix` in wgsl/common.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct LevelMix {
    pub offset: [f32; 4],
    pub gain: [[f32; 4]; 4],
}

impl LevelMix {
    /// The coefficients of a validated mix (at most 4 deltas).
    pub fn new(coefs: &[Affine]) -> LevelMix {
        let mut m = LevelMix::default();
        for (i, a) in coefs.iter().enumerate() {
            m.offset[i] = a.offset;
            m.gain[i] = a.gain;
        }
        m
    }
    pub fn of(mix: &Mix) -> LevelMix {
        LevelMix::new(&mix.coefs)
    }
}

/// A kernel's uniform: `Pod`, starting with its [`Dispatch`].
pub trait KernelUniform: Pod {
    fn dispatch_mut(&mut self) -> &mut Dispatch;
}

/// The largest uniform any kernel binds (bytes; the conv's).
pub const MAX_UNIFORM_BYTES: u64 = std::mem::size_of::<conv::ConvUniform>() as u64;

/// One launch's uniform as bytes, and how to set the workgroup offset of one dispatch piece.
pub(crate) struct Uniform {
    bytes: Vec<u8>,
    at_offset: fn(&[u8], [u32; 3]) -> Vec<u8>,
}

impl Uniform {
    pub fn new<T: KernelUniform>(u: T) -> Uniform {
        const { assert!(std::mem::size_of::<T>() as u64 <= MAX_UNIFORM_BYTES) };
        Uniform {
            bytes: bytemuck::bytes_of(&u).to_vec(),
            at_offset: |bytes, offset| {
                let mut u: T = bytemuck::pod_read_unaligned(bytes);
                u.dispatch_mut().group_offset = offset;
                bytemuck::bytes_of(&u).to_vec()
            },
        }
    }
    /// Bytes of the uniform (what its binding covers).
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
    /// The bytes of the dispatch piece starting at workgroup `offset`.
    pub fn at_offset(&self, offset: [u32; 3]) -> Vec<u8> {
        (self.at_offset)(&self.bytes, offset)
    }
}

/// The storage buffers of one launch, by the binding each kernel reads them at
/// (wgsl/common.wgsl: 2 x, 3 wt, 4 ep, 5 o1, 6 o2, 7 y); a kernel binds only those of
/// `Kernel::storage`.
#[derive(Clone, Default)]
pub(crate) struct Bindings {
    pub x: Option<wgpu::Buffer>,
    pub wt: Option<wgpu::Buffer>,
    pub ep: Option<wgpu::Buffer>,
    pub o1: Option<wgpu::Buffer>,
    pub o2: Option<wgpu::Buffer>,
    pub y: Option<wgpu::Buffer>,
}

impl Bindings {
    /// In binding order 2..=7.
    pub fn in_order(&self) -> [&Option<wgpu::Buffer>; 6] {
        [&self.x, &self.wt, &self.ep, &self.o1, &self.o2, &self.y]
    }
}

/// One kernel launch before it is split into dispatches within the workgroup limit.
pub(crate) struct Launch {
    pub kernel: Kernel,
    pub uniform: Uniform,
    pub grid: [u32; 3],
    pub bind: Bindings,
}

/// A node's tensors in one prepared size: buffers and shapes.
pub(crate) struct NodeIo {
    pub x: wgpu::Buffer,
    pub others: Vec<wgpu::Buffer>,
    pub y: wgpu::Buffer,
    pub input: Shape,
    pub output: Shape,
    /// Scratch buffers of at least the sizes `GpuOp::scratch_bytes` asked for (shared by
    /// every node of a run: the steps run one after another).
    pub scratch: Vec<wgpu::Buffer>,
}

impl NodeIo {
    pub fn other(&self, i: usize) -> Option<wgpu::Buffer> {
        self.others.get(i).cloned()
    }
}

/// The size-independent GPU side of one node: its kernel, uploaded weights and uniform.
pub(crate) enum GpuOp {
    Conv(conv::ConvOp),
    Depthwise(depthwise::DepthwiseOp),
    Eltwise(eltwise::EltwiseOp),
    Shuffle(shuffle::ShuffleOp),
}

impl GpuOp {
    /// Uploads a node of a validated plan; compiles its kernels.
    pub fn upload(ctx: &GpuContext, n: &Node) -> Result<GpuOp> {
        Ok(match &n.op {
            Op::Conv2d(c) => GpuOp::Conv(conv::ConvOp::upload(ctx, n, c)?),
            Op::Depthwise(d) => GpuOp::Depthwise(depthwise::DepthwiseOp::upload(ctx, n, d)?),
            Op::Eltwise(e) => GpuOp::Eltwise(eltwise::EltwiseOp::upload(ctx, n, e)?),
            Op::Unshuffle => GpuOp::Shuffle(shuffle::ShuffleOp::upload(ctx, true)?),
            Op::Shuffle => GpuOp::Shuffle(shuffle::ShuffleOp::upload(ctx, false)?),
        })
    }

    /// Bytes of the scratch buffers a run writing `output` needs (one storage binding is
    /// `max` bytes); the executor passes buffers at least this large in `NodeIo::scratch`.
    pub fn scratch_bytes(&self, output: Shape, max: u64) -> Vec<u64> {
        match self {
            GpuOp::Conv(c) => c.scratch_bytes(output, max),
            _ => vec![],
        }
    }

    /// The launches of one run on these tensors (`max`: workgroups per grid dimension).
    pub fn launches(&self, io: &NodeIo, max: u32, out: &mut Vec<Launch>) {
        match self {
            GpuOp::Conv(c) => c.launches(io, max, out),
            GpuOp::Depthwise(d) => out.push(d.launch(io)),
            GpuOp::Eltwise(e) => out.push(e.launch(io, max)),
            GpuOp::Shuffle(s) => out.push(s.launch(io, max)),
        }
    }
}

/// Uploads `data` as a weight buffer named `node.what`, refusing what one binding cannot hold.
pub(crate) fn upload_floats(
    ctx: &GpuContext,
    node: &str,
    what: &str,
    data: &[f32],
) -> Result<wgpu::Buffer> {
    let bytes = data.len() as u64 * 4;
    if bytes > ctx.max_tensor_bytes() {
        return Err(Error::Gpu {
            context: format!("uploading node '{node}'"),
            message: format!(
                "{what} takes {bytes} bytes, more than one storage binding ({})",
                ctx.max_tensor_bytes()
            ),
        });
    }
    ctx.weights_with(&format!("{node}.{what}"), bytemuck::cast_slice(data))
}

/// `n` as a GPU index, or an error naming what is too large.
pub(crate) fn u32_of(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n)
        .map_err(|_| Error::Shape(format!("{what} ({n}) exceeds what one GPU kernel indexes")))
}
