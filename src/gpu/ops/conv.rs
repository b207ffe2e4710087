//! The dense conv (wgsl/conv2d.wgsl, and wgsl/conv1x1.wgsl for 1x1 stride 1), with the level
//! mix fused into its weight staging or, for the unfused baseline, done first by the mix pass
//! (`super::mix`). The uniform is `ConvUniform` in wgsl/conv_weights.wgsl. Stride-1 3x3
//! convs may run as Winograd F(4x4, 3x3) instead (`super::winograd`, which says when).

use bytemuck::{Pod, Zeroable};

use super::epilogue::{self, EpOffsets};
use super::winograd::{self, WinogradOp};
use super::{
    mix, u32_of, upload_floats, Bindings, Dispatch, KernelUniform, Launch, LevelMix, NodeIo,
    Uniform, STORAGE,
};
use crate::error::Result;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::{grid_1d, Kernel};
use crate::plan::{Conv2d, Node, Shape};

/// The conv's sizes (`ConvDims` in wgsl/conv_weights.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ConvDims {
    /// Channels of the input tensor (without the virtual noise channel).
    pub tensor_cin: u32,
    pub ih: u32,
    pub iw: u32,
    /// Input channels of the weights, the noise channel included.
    pub cin: u32,
    pub cout: u32,
    pub oh: u32,
    pub ow: u32,
    /// `cout` rounded up to 16: the weight layout's channel stride.
    pub cout16: u32,
}

/// The FFDNet-style virtual input channel: `offset + dot(gain, level)` inside the image
/// (`NoiseChannel` in wgsl/conv_weights.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct NoiseChannel {
    pub gain: [f32; 4],
    pub offset: f32,
    pub unused: [f32; 3],
}

/// The conv kernels' uniform (`ConvUniform` in wgsl/conv_weights.wgsl; 192 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ConvUniform {
    pub dispatch: Dispatch,
    pub dims: ConvDims,
    pub ep: EpOffsets,
    pub mix: LevelMix,
    pub noise: NoiseChannel,
}

impl KernelUniform for ConvUniform {
    fn dispatch_mut(&mut self) -> &mut Dispatch {
        &mut self.dispatch
    }
}

/// A conv uploaded: its kernel, weights in the GPU layout, packed epilogue and the uniform's
/// size-independent fields.
pub(crate) struct ConvOp {
    kernel: Kernel,
    /// Unfused baseline: the mix pass and the buffer it writes W(level) into.
    unfused: Option<(Kernel, wgpu::Buffer)>,
    weights: wgpu::Buffer,
    ep: wgpu::Buffer,
    uniform: ConvUniform,
    /// Floats per part of the GPU weight layout.
    part_len: u32,
    /// The Winograd path, when the rule picks it (the direct conv stays for sizes whose
    /// scratch buffers would not fit).
    winograd: Option<Box<WinogradOp>>,
}

/// The weights `[P+1][cout][cin][k*k]` (PyTorch order) re-laid out as
/// `[P+1][cin][k*k][cout16]`: a vec4 holds 4 consecutive output channels, so staging reads
/// are coalesced; the padding channels are zero.
fn gpu_layout(c: &Conv2d, cout16: usize) -> Vec<f32> {
    let kk = c.k * c.k;
    let part = c.cin * kk * cout16;
    let n = c.weight_len();
    let mut w = vec![0.0f32; (c.mix.deltas() + 1) * part];
    for (src, dst) in c.weight.chunks_exact(n).zip(w.chunks_exact_mut(part)) {
        for co in 0..c.cout {
            for ci in 0..c.cin {
                for t in 0..kk {
                    dst[(ci * kk + t) * cout16 + co] = src[(co * c.cin + ci) * kk + t];
                }
            }
        }
    }
    w
}

impl ConvOp {
    pub(crate) fn upload(ctx: &GpuContext, n: &Node, c: &Conv2d) -> Result<ConvOp> {
        let name = n.name.as_str();
        let deltas = c.mix.deltas();
        let packed = epilogue::pack(&c.epilogue, n.others.len());
        let cout16 = c.cout.div_ceil(16) * 16;
        let w = gpu_layout(c, cout16);
        let part = w.len() / (deltas + 1);
        let noise = c
            .noise_channel
            .map_or(NoiseChannel::default(), |a| NoiseChannel {
                gain: a.gain,
                offset: a.offset,
                unused: [0.0; 3],
            });
        let uniform = ConvUniform {
            dims: ConvDims {
                cin: u32_of(c.cin, "input channels")?,
                cout: u32_of(c.cout, "output channels")?,
                cout16: u32_of(cout16, "output channels")?,
                ..Default::default()
            },
            ep: packed.offsets,
            mix: LevelMix::of(&c.mix),
            noise,
            ..Default::default()
        };
        let unfused = c.unfused_mix && deltas > 0;
        // Unfused, the conv reads weights the mix pass has already mixed (pw = 0).
        let pw = if unfused { 0 } else { deltas as u8 };
        let (pe, ep) = (deltas as u8, packed.flags);
        let kernel = if c.k == 1 && c.stride == 1 {
            Kernel::Conv1x1 { pw, pe, ep }
        } else {
            Kernel::Conv2d {
                k: c.k as u8,
                stride: c.stride as u8,
                pw,
                pe,
                ep,
            }
        };
        let winograd = if winograd::picks(c, winograd::mode())
            && winograd::weight_bytes(c, cout16) <= ctx.max_tensor_bytes()
        {
            Some(Box::new(WinogradOp::upload(ctx, name, c, cout16, ep)?))
        } else {
            // Compiled now, not on the first run; a Winograd conv compiles it only if a size
            // ever falls back to it.
            ctx.pipeline(kernel)?;
            None
        };
        let unfused = if unfused {
            let mk = Kernel::MixWeights { p: deltas as u8 };
            ctx.pipeline(mk)?;
            let mixed = ctx.create_buffer(&format!("{name}.mixed"), part as u64 * 4, STORAGE)?;
            Some((mk, mixed))
        } else {
            None
        };
        Ok(ConvOp {
            kernel,
            unfused,
            weights: upload_floats(ctx, name, "weight", &w)?,
            ep: upload_floats(ctx, name, "epilogue", &packed.data)?,
            uniform,
            part_len: u32_of(part, "weights")?,
            winograd,
        })
    }

    /// Bytes of the scratch buffers a run writing `output` needs (Winograd's V and M; none
    /// for the direct conv), or none when they would not fit in one binding of `max` bytes.
    pub(crate) fn scratch_bytes(&self, output: Shape, max: u64) -> Vec<u64> {
        if self.winograd.is_none() {
            return vec![];
        }
        let d = &self.uniform.dims;
        let need = winograd::scratch_bytes(d.cin as usize, d.cout as usize, output);
        if need.iter().all(|&b| b <= max && b / 4 <= u32::MAX as u64) {
            need.to_vec()
        } else {
            vec![]
        }
    }

    /// The conv on `io`, after the mix pass when unfused.
    pub(crate) fn launches(&self, io: &NodeIo, max: u32, out: &mut Vec<Launch>) {
        let (s, o) = (io.input, io.output);
        let mut u = self.uniform;
        u.dims.tensor_cin = s.c as u32;
        u.dims.ih = s.h as u32;
        u.dims.iw = s.w as u32;
        u.dims.oh = o.h as u32;
        u.dims.ow = o.w as u32;
        if let Some(w) = &self.winograd {
            if w.launches(io, u, &self.ep, max, out) {
                return;
            }
        }
        let weights = match &self.unfused {
            Some((mk, mixed)) => {
                out.push(mix::launch(
                    *mk,
                    self.uniform.mix,
                    self.part_len,
                    self.weights.clone(),
                    mixed.clone(),
                    max,
                ));
                mixed.clone()
            }
            None => self.weights.clone(),
        };
        let co_groups = u.dims.cout.div_ceil(16);
        let grid = match self.kernel {
            // 128 pixels per workgroup, 1-D over the plane.
            Kernel::Conv1x1 { .. } => {
                let (g, pitch) = grid_1d(((s.h * s.w) as u32).div_ceil(128), max);
                u.dispatch.row_pitch = pitch;
                [g[0], g[1], co_groups]
            }
            // 16 x 8 output pixels per workgroup.
            _ => [
                (o.w as u32).div_ceil(16),
                (o.h as u32).div_ceil(8),
                co_groups,
            ],
        };
        out.push(Launch {
            kernel: self.kernel,
            uniform: Uniform::new(u),
            grid,
            bind: Bindings {
                x: Some(io.x.clone()),
                wt: Some(weights),
                ep: Some(self.ep.clone()),
                o1: io.other(0),
                o2: io.other(1),
                y: Some(io.y.clone()),
            },
        });
    }
}
