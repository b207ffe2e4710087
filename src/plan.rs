//! The lowered plan: the small vocabulary of ops that every tunable family compiles to, and
//! that the CPU reference, the fast CPU executor and the GPU executor all run.
//!
//! Every level-dependent quantity of an op (conv weights, bias, per-channel scale/shift, the
//! gains of a combine) is stored as a *mixed* array: `base` followed by `deltas` arrays of the
//! same length, and evaluated as `base + sum_p c_p * delta_p`, where the coefficients
//! `c_p = offset_p + sum_j gain_pj * level_j` are affine in the level vector (DESIGN.md §1).

use crate::error::{Error, Result};

/// At most this many level axes (knobs) per model, and this many basis deltas per op.
pub const MAX_AXES: usize = 4;
pub const MAX_DELTAS: usize = 4;

/// Load-time bounds on a model's geometry ([`Plan::check_limits`]): past them a file of a few
/// kilobytes could ask for terabytes. Restoration nets stay far below (FFDNet: multiple 2,
/// radius about 30, 96 channels; a 4-level U-Net: multiple 16).
pub const MAX_SIZE_MULTIPLE: usize = 256;
pub const MAX_RECEPTIVE_RADIUS: usize = 1024;
pub const MAX_CHANNELS: usize = 4096;

/// The activation bytes one run (one tile) may need when `TUNABLE_MAX_RUN_MB` is not set.
pub const DEFAULT_RUN_MEMORY: u64 = 8 << 30;

/// The activation bytes one run may need: `TUNABLE_MAX_RUN_MB` (MiB) or
/// [`DEFAULT_RUN_MEMORY`], read once.
pub fn run_memory_limit() -> u64 {
    static LIMIT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::env::var("TUNABLE_MAX_RUN_MB")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(DEFAULT_RUN_MEMORY, |mb| mb.saturating_mul(1 << 20))
    })
}

/// What one run holds in activations at its peak, from the plan's liveness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunMemory {
    /// The most bytes of f32 tensors alive at once.
    pub peak_bytes: u64,
    /// The largest single tensor.
    pub widest: Shape,
}

/// Peak activation bytes when `nodes` (input, others, output) run in order, every tensor is
/// dropped after its last reader, and the tensors no node writes (the inputs) and `output`
/// are held throughout.
pub fn run_memory<'a>(
    shapes: &[Shape],
    nodes: impl IntoIterator<Item = (TensorId, &'a [TensorId], TensorId)>,
    output: TensorId,
) -> RunMemory {
    let nodes: Vec<_> = nodes.into_iter().collect();
    let mut last_read = vec![None; shapes.len()];
    let mut written = vec![false; shapes.len()];
    for (i, &(input, others, out)) in nodes.iter().enumerate() {
        for &t in std::iter::once(&input).chain(others) {
            last_read[t] = Some(i);
        }
        written[out] = true;
    }
    let held = |t: TensorId| t == output || !written[t];
    let mut live: u64 = (0..shapes.len())
        .filter(|&t| !written[t])
        .map(|t| shapes[t].bytes())
        .sum();
    let mut peak = live;
    for (i, &(input, others, out)) in nodes.iter().enumerate() {
        live = live.saturating_add(shapes[out].bytes());
        peak = peak.max(live);
        let mut done: Vec<TensorId> = std::iter::once(input)
            .chain(others.iter().copied())
            .chain(std::iter::once(out))
            .filter(|&t| !held(t) && last_read[t].is_none_or(|l| l == i))
            .collect();
        done.sort_unstable();
        done.dedup();
        for t in done {
            live = live.saturating_sub(shapes[t].bytes());
        }
    }
    let widest = shapes
        .iter()
        .copied()
        .max_by_key(|s| s.bytes())
        .unwrap_or(Shape::new(0, 0, 0));
    RunMemory {
        peak_bytes: peak,
        widest,
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

impl RunMemory {
    /// An error naming the sizes when the peak is over [`run_memory_limit`].
    pub fn check(&self, input: Shape) -> Result<()> {
        let limit = run_memory_limit();
        if self.peak_bytes <= limit {
            return Ok(());
        }
        let w = self.widest;
        Err(Error::Limit(format!(
            "a {}x{} run needs {} of activations (the largest is {}x{}x{}, {}), more than the {} limit (set TUNABLE_MAX_RUN_MB, or use smaller tiles)",
            input.w,
            input.h,
            gib(self.peak_bytes),
            w.c,
            w.h,
            w.w,
            gib(w.bytes()),
            gib(limit)
        )))
    }
}

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

/// Shape of a CHW tensor (batch 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub fn new(c: usize, h: usize, w: usize) -> Self {
        Shape { c, h, w }
    }
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }
    /// `c * h * w`, or `None` where the product does not fit a `usize`.
    pub fn checked_len(&self) -> Option<usize> {
        self.c.checked_mul(self.h)?.checked_mul(self.w)
    }
    /// Bytes of the tensor as f32, saturating (only compared against limits).
    pub fn bytes(&self) -> u64 {
        (self.c as u64)
            .saturating_mul(self.h as u64)
            .saturating_mul(self.w as u64)
            .saturating_mul(4)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Output size of a conv with zero padding `k / 2` (PyTorch's formula).
pub fn conv_out_dim(n: usize, k: usize, stride: usize) -> usize {
    (n + 2 * (k / 2) - k) / stride + 1
}

/// What no tensor dimension may exceed: far above any image, low enough that the sums and
/// doublings of shape inference cannot wrap.
#[cfg(target_pointer_width = "64")]
const MAX_DIM: usize = 1 << 40;
/// On 32-bit targets (wasm32): 2^24, still far above any image.
#[cfg(not(target_pointer_width = "64"))]
const MAX_DIM: usize = 1 << 24;

fn check_dims(s: Shape) -> Result<Shape> {
    if s.c > MAX_DIM || s.h > MAX_DIM || s.w > MAX_DIM || s.checked_len().is_none() {
        return Err(Error::Limit(format!(
            "a {}x{}x{} tensor is larger than any this engine handles",
            s.c, s.h, s.w
        )));
    }
    Ok(s)
}

impl Op {
    /// The output shape for an input of shape `s`, or an error naming what does not fit.
    pub fn out_shape(&self, s: Shape) -> Result<Shape> {
        check_dims(s)?;
        match self {
            Op::Conv2d(c) => {
                if s.c != c.tensor_cin() {
                    return Err(Error::Shape(format!(
                        "conv expects {} input channels, got {}",
                        c.tensor_cin(),
                        s.c
                    )));
                }
                Ok(Shape::new(
                    c.cout,
                    conv_out_dim(s.h, c.k, c.stride),
                    conv_out_dim(s.w, c.k, c.stride),
                ))
            }
            Op::Depthwise(d) => {
                if s.c != d.channels {
                    return Err(Error::Shape(format!(
                        "depthwise expects {} channels, got {}",
                        d.channels, s.c
                    )));
                }
                Ok(s)
            }
            Op::Eltwise(e) => {
                if s.c != e.channels {
                    return Err(Error::Shape(format!(
                        "eltwise expects {} channels, got {}",
                        e.channels, s.c
                    )));
                }
                Ok(s)
            }
            Op::Unshuffle => {
                if !s.h.is_multiple_of(2) || !s.w.is_multiple_of(2) {
                    return Err(Error::Shape(format!(
                        "pixel unshuffle needs even sizes, got {}x{}",
                        s.w, s.h
                    )));
                }
                Ok(Shape::new(s.c * 4, s.h / 2, s.w / 2))
            }
            Op::Shuffle => {
                if !s.c.is_multiple_of(4) {
                    return Err(Error::Shape(format!(
                        "pixel shuffle needs channels divisible by 4, got {}",
                        s.c
                    )));
                }
                Ok(Shape::new(s.c / 4, s.h * 2, s.w * 2))
            }
        }
    }
}

/// Shapes of every tensor of a straight-line node list `(name, op, input, others, output)`,
/// given the shapes of the tensors provided from outside: checks that each node's others match
/// its output (an eltwise's, its input), that no tensor is read before it is written or written
/// twice, and that every tensor gets written.
pub fn infer_shapes<'a>(
    num_tensors: usize,
    given: &[(TensorId, Shape)],
    nodes: impl IntoIterator<Item = (&'a str, &'a Op, TensorId, &'a [TensorId], TensorId)>,
) -> Result<Vec<Shape>> {
    let mut shapes: Vec<Option<Shape>> = vec![None; num_tensors];
    for &(t, s) in given {
        shapes[t] = Some(s);
    }
    for (name, op, input, others, output) in nodes {
        let get = |t: TensorId| -> Result<Shape> {
            shapes.get(t).copied().flatten().ok_or_else(|| {
                Error::Graph(format!(
                    "node '{name}' reads tensor {t} before it is written"
                ))
            })
        };
        let s = get(input)?;
        let out = op
            .out_shape(s)
            .and_then(check_dims)
            .map_err(|e| e.in_node(name))?;
        for &o in others {
            let so = get(o)?;
            let want = if matches!(op, Op::Eltwise(_)) { s } else { out };
            if so != want {
                return Err(Error::Shape(format!(
                    "node '{name}': other tensor is {}x{}x{}, expected {}x{}x{}",
                    so.c, so.h, so.w, want.c, want.h, want.w
                )));
            }
        }
        if output >= num_tensors || shapes[output].is_some() {
            return Err(Error::Graph(format!(
                "node '{name}' writes tensor {output} twice or out of range"
            )));
        }
        shapes[output] = Some(out);
    }
    shapes
        .into_iter()
        .enumerate()
        .map(|(i, s)| s.ok_or_else(|| Error::Graph(format!("tensor {i} is never written"))))
        .collect()
}

impl Plan {
    /// Shapes of every tensor for an input of `h x w`, checking that each node's others
    /// match its output and that no tensor is read before it is written.
    pub fn shapes(&self, h: usize, w: usize) -> Result<Vec<Shape>> {
        infer_shapes(
            self.num_tensors,
            &[(0, Shape::new(self.in_channels, h, w))],
            self.nodes.iter().map(|n| {
                (
                    n.name.as_str(),
                    &n.op,
                    n.input,
                    n.others.as_slice(),
                    n.output,
                )
            }),
        )
    }

    /// The activation memory of one run on an `h x w` input (shapes checked).
    pub fn run_memory(&self, h: usize, w: usize) -> Result<RunMemory> {
        let shapes = self.shapes(h, w)?;
        Ok(run_memory(
            &shapes,
            self.nodes
                .iter()
                .map(|n| (n.input, n.others.as_slice(), n.output)),
            self.output,
        ))
    }

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
