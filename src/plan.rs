//! The lowered plan: the small vocabulary of ops that every tunable family compiles to, and
//! that the CPU reference, the fast CPU executor and the GPU executor all run.
//!
//! Every level-dependent quantity of an op (conv weights, bias, per-channel scale/shift, the
//! gains of a combine) is stored as a *mixed* array: `base` followed by `deltas` arrays of the
//! same length, and evaluated as `base + sum_p c_p * delta_p`, where the coefficients
//! `c_p = offset_p + sum_j gain_pj * level_j` are affine in the level vector (docs/ARCHITECTURE.md).

mod graph;
mod split;
mod validate;
mod winograd;

pub use graph::{
    conv_out_dim, run_memory_limit, OpShape, RunMemory, ShapeGraph, ShapeNode, DEFAULT_RUN_MEMORY,
};
pub use validate::{CONV_STRIDES, KERNEL_SIZES, MAX_COMBINE_OTHERS};
pub use winograd::{winograd_filter, WINOGRAD_G, WINOGRAD_PATCH, WINOGRAD_POSITIONS};

use crate::error::{Error, Result};
// The shape type lives with the tensor (one public path: `tunable::tensor::Shape`).
pub(crate) use crate::tensor::Shape;

/// At most this many level axes (knobs) per model, and this many basis deltas per op.
pub const MAX_AXES: usize = 4;
pub const MAX_DELTAS: usize = 4;

/// Load-time bounds on a model's geometry ([`Plan::check_limits`]): past them a file of a few
/// kilobytes could ask for terabytes. Restoration nets stay far below (FFDNet: multiple 2,
/// radius about 30, 96 channels; a 4-level U-Net: multiple 16).
pub const MAX_SIZE_MULTIPLE: usize = 256;
pub const MAX_RECEPTIVE_RADIUS: usize = 1024;
pub const MAX_CHANNELS: usize = 4096;

/// A level vector: one value per axis; unused axes are 0.
pub type LevelVec = [f32; MAX_AXES];

/// Affine map from the level vector to one scalar: `offset + dot(gain, level)`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Affine {
    pub offset: f32,
    pub gain: [f32; MAX_AXES],
}

impl Affine {
    pub fn constant(v: f32) -> Self {
        Affine {
            offset: v,
            gain: [0.0; MAX_AXES],
        }
    }
    /// The value of level axis `axis`, times `scale`.
    pub fn axis(axis: usize, scale: f32) -> Self {
        let mut gain = [0.0; MAX_AXES];
        gain[axis] = scale;
        Affine { offset: 0.0, gain }
    }
    pub fn eval(&self, level: &LevelVec) -> f32 {
        self.offset + self.gain.iter().zip(level).map(|(g, l)| g * l).sum::<f32>()
    }
}

/// How one op's mixed arrays depend on the level: one affine coefficient per delta.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mix {
    pub coefs: Vec<Affine>,
}

impl Mix {
    pub fn none() -> Self {
        Mix { coefs: vec![] }
    }
    pub fn deltas(&self) -> usize {
        self.coefs.len()
    }
    pub fn eval(&self, level: &LevelVec) -> Vec<f32> {
        self.coefs.iter().map(|a| a.eval(level)).collect()
    }
    /// Evaluates a mixed array of `(deltas + 1) * n` values to its `n` values at `coefs`.
    pub fn apply(mixed: &[f32], coefs: &[f32]) -> Vec<f32> {
        let n = mixed.len() / (coefs.len() + 1);
        let mut out = mixed[..n].to_vec();
        for (p, c) in coefs.iter().enumerate() {
            let d = &mixed[(p + 1) * n..(p + 2) * n];
            for (o, dv) in out.iter_mut().zip(d) {
                *o += c * dv;
            }
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Activation {
    None,
    Relu,
    /// Per-channel negative slope (length = output channels; not level-dependent).
    Prelu(Vec<f32>),
}

impl Activation {
    #[inline]
    pub fn apply(&self, v: f32, c: usize) -> f32 {
        match self {
            Activation::None => v,
            Activation::Relu => v.max(0.0),
            Activation::Prelu(s) => {
                if v >= 0.0 {
                    v
                } else {
                    v * s[c]
                }
            }
        }
    }
}

/// The epilogue fused into a conv or depthwise conv, applied per output value in this order:
///
/// ```text
/// y = acc + bias[c]
/// y = y * scale[c] + shift[c]            (if scale_shift)
/// y = act(y)
/// y = u[c] * y + sum_i v_i[c] * other_i  (if combine; 1 or 2 other tensors of the output's shape)
/// ```
/// `bias`, `scale`, `shift`, `u`, `v_i` are mixed arrays of `(deltas + 1) * C` values.
#[derive(Clone, Debug, PartialEq)]
pub struct Epilogue {
    pub bias: Vec<f32>,
    pub scale_shift: Option<(Vec<f32>, Vec<f32>)>,
    pub act: Activation,
    pub combine: Option<Combine>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Combine {
    pub u: Vec<f32>,
    /// One gain per other tensor (the node's `others`, in order), 1 or 2 of them.
    pub v: Vec<Vec<f32>>,
}

/// A dense 2-D convolution with zero "same" padding `k / 2`.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d {
    /// Input channels of the weight, including the virtual noise channel if any.
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub mix: Mix,
    /// Mixed weights, `(deltas + 1) * cout * cin * k * k`, PyTorch `[Cout, Cin, k, k]` order.
    pub weight: Vec<f32>,
    pub epilogue: Epilogue,
    /// FFDNet-style constant input channel, appended after the input tensor's channels:
    /// `value(level)` inside the image, 0 in the padding.
    pub noise_channel: Option<Affine>,
    /// Unfused baseline: mix the weights in a separate pass into a buffer, then run a plain conv.
    pub unfused_mix: bool,
}

impl Conv2d {
    /// Channels read from the input tensor (excluding the virtual channel).
    pub fn tensor_cin(&self) -> usize {
        self.cin - self.noise_channel.is_some() as usize
    }
    pub fn weight_len(&self) -> usize {
        self.cout * self.cin * self.k * self.k
    }
}

/// A depthwise (per-channel) k x k convolution, stride 1, zero "same" padding (AdaFM's layer).
#[derive(Clone, Debug, PartialEq)]
pub struct Depthwise {
    pub channels: usize,
    pub k: usize,
    pub mix: Mix,
    /// Mixed weights, `(deltas + 1) * channels * k * k`.
    pub weight: Vec<f32>,
    pub epilogue: Epilogue,
}

/// `out = act(u[c] * a + v[c] * b)` (b optional); u, v mixed arrays.
#[derive(Clone, Debug, PartialEq)]
pub struct Eltwise {
    pub channels: usize,
    pub mix: Mix,
    pub u: Vec<f32>,
    pub v: Option<Vec<f32>>,
    pub act: Activation,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Conv2d(Conv2d),
    Depthwise(Depthwise),
    Eltwise(Eltwise),
    /// Pixel unshuffle by 2 (space to depth, PyTorch channel order).
    Unshuffle,
    /// Pixel shuffle by 2 (depth to space).
    Shuffle,
}

/// The filter-to-filter network of FTN, applied at load to a filter `[cout, cin, k, k]` seen
/// as `cout` images of `cin` channels and `k x k` pixels:
/// `conv1x1(w1, b1, groups) -> PReLU(slope) -> conv1x1(w2, b2, groups)`.
/// `w1`, `w2` are `[cin, cin / groups]`; `slope` has 1 or `cin` values. The lowering hands it
/// to whichever executor computes the transform (CPU reference or GPU).
pub struct FtnParams<'a> {
    pub groups: usize,
    pub w1: &'a [f32],
    pub b1: &'a [f32],
    pub slope: &'a [f32],
    pub w2: &'a [f32],
    pub b2: &'a [f32],
}

pub type TensorId = usize;

/// One op applied to `input` (and `others`: the combine tensors of a conv/depthwise epilogue,
/// or the `b` of an eltwise) writing `output`.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub input: TensorId,
    pub others: Vec<TensorId>,
    pub output: TensorId,
}

/// A straight-line program over tensors. Tensor 0 is the input image (`in_channels`, values
/// already divided by the model's value scale); every other tensor is written by exactly one
/// node, before it is read.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub in_channels: usize,
    pub num_tensors: usize,
    pub nodes: Vec<Node>,
    pub output: TensorId,
}

impl Plan {
    /// The load-time bounds: size multiple, receptive radius and channels of every tensor
    /// within [`MAX_SIZE_MULTIPLE`], [`MAX_RECEPTIVE_RADIUS`], [`MAX_CHANNELS`].
    pub fn check_limits(&self) -> Result<()> {
        let m = self.size_multiple();
        if m > MAX_SIZE_MULTIPLE {
            return Err(Error::Limit(format!(
                "input sizes would have to be a multiple of {m} (the product of the unshuffle and stride-2 nodes), more than the limit of {MAX_SIZE_MULTIPLE}"
            )));
        }
        let r = self.receptive_radius();
        if r > MAX_RECEPTIVE_RADIUS {
            return Err(Error::Limit(format!(
                "the receptive radius is {r} pixels, more than the limit of {MAX_RECEPTIVE_RADIUS}"
            )));
        }
        let shapes = self.shapes(m, m)?;
        for n in &self.nodes {
            let c = shapes[n.output].c;
            if c > MAX_CHANNELS {
                return Err(Error::Limit(format!(
                    "node '{}' writes {c} channels, more than the limit of {MAX_CHANNELS}",
                    n.name
                )));
            }
        }
        Ok(())
    }

    /// How many input pixels around an output pixel can influence it (in input pixels), so
    /// that tiles processed with this halo stitch into exactly the untiled result
    /// (saturating, like [`Plan::size_multiple`]).
    pub fn receptive_radius(&self) -> usize {
        // Track, per tensor, the radius in input pixels and the scale (input pixels per pixel).
        let mut radius = vec![0usize; self.num_tensors];
        let mut scale = vec![1usize; self.num_tensors];
        for n in &self.nodes {
            let mut r = radius[n.input];
            let s = scale[n.input];
            let (rr, ss) = match &n.op {
                Op::Conv2d(c) => (
                    r.saturating_add((c.k / 2).saturating_mul(s)),
                    s.saturating_mul(c.stride),
                ),
                Op::Depthwise(d) => (r.saturating_add((d.k / 2).saturating_mul(s)), s),
                Op::Eltwise(_) => (r, s),
                Op::Unshuffle => (r.saturating_add(s), s.saturating_mul(2)),
                Op::Shuffle => (r, (s / 2).max(1)),
            };
            for &o in &n.others {
                r = r.max(radius[o]);
            }
            radius[n.output] = rr.max(r);
            scale[n.output] = ss;
        }
        radius[self.output]
    }

    /// The product of strides and unshuffles that input sizes must be a multiple of for the
    /// output to have exactly the input's size (saturating: a hostile file cannot wrap it).
    pub fn size_multiple(&self) -> usize {
        let mut scale = vec![1usize; self.num_tensors];
        let mut most = 1;
        for n in &self.nodes {
            let s = scale[n.input];
            scale[n.output] = match &n.op {
                Op::Conv2d(c) => s.saturating_mul(c.stride),
                Op::Unshuffle => s.saturating_mul(2),
                Op::Shuffle => (s / 2).max(1),
                _ => s,
            };
            most = most.max(scale[n.output]);
        }
        most
    }
}
