//! The plan executor: uploads a [`Plan`]'s weights once, and runs it on images of any size,
//! reusing buffers, uniforms and bind groups between runs of the same size. Moving the level
//! writes one 16-byte uniform; nothing is recompiled or re-uploaded.
//!
//! The per-size state is kept in an LRU cache bounded by bytes: the budget is
//! `TUNABLE_GPU_CACHE_MB` (MiB) or [`DEFAULT_CACHE_BUDGET`], [`GpuPlan::set_cache_budget`]
//! changes it; the [`KEPT_SIZES`] sizes used last are always kept, whatever their bytes (a
//! tiled image runs up to four: full tiles, the right and bottom edges, the corner), so one
//! image's tiles never evict each other. A run's peak activation
//! bytes are checked against [`crate::plan::run_memory_limit`] before any buffer is created.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::cpu::reference::FtnParams;
use crate::error::{Error, Result};
// UNIFORM_STRIDE: byte stride of the per-dispatch uniforms in one buffer (>= the offset
// alignment of any device the context accepts).
use crate::gpu::context::{poisoned, ErrorScope, GpuContext, UNIFORM_STRIDE};
use crate::gpu::kernels::{grid_1d, split_grid, EpFlags, Kernel, Params};
use crate::plan::{
    infer_shapes, run_memory, Activation, Affine, Combine, Epilogue, LevelVec, Mix, Node, Op, Plan,
    Shape, TensorId, MAX_DELTAS,
};
use crate::tensor::Tensor;

/// `GpuPlan::run_async`: the same runs with an awaited read-back (src/gpu/readback.rs).
#[path = "readback.rs"]
pub(crate) mod readback;

const PARAMS_SIZE: u64 = std::mem::size_of::<Params>() as u64;

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE;

/// The static (size-independent) GPU side of one node.
enum GpuOp {
    Conv {
        kernel: Kernel,
        /// Unfused baseline: the mix pass and the buffer it writes W(level) into.
        mix: Option<(Kernel, wgpu::Buffer)>,
        weights: wgpu::Buffer,
        ep: wgpu::Buffer,
        params: Params,
        /// Floats per part of the GPU weight layout ([cin][k*k][cout16]).
        part_len: u32,
    },
    Depthwise {
        kernel: Kernel,
        weights: wgpu::Buffer,
        ep: wgpu::Buffer,
        params: Params,
    },
    Eltwise {
        kernel: Kernel,
        ep: wgpu::Buffer,
        params: Params,
    },
    Shuffle {
        kernel: Kernel,
    },
}

struct GpuNode {
    name: String,
    /// The op without its weights (for shape inference).
    shape_op: Op,
    op: GpuOp,
    input: TensorId,
    others: Vec<TensorId>,
    output: TensorId,
}

/// One kernel launch (possibly split into several dispatches).
struct Step {
    pipeline: wgpu::ComputePipeline,
    pieces: Vec<(wgpu::BindGroup, [u32; 3])>,
}

/// Everything that depends on the input size: tensor buffers (pooled by liveness), the
/// uniforms, bind groups and the readback buffer.
struct Prepared {
    shapes: Vec<Shape>,
    pool: Vec<wgpu::Buffer>,
    tensor_buf: Vec<usize>,
    steps: Vec<Step>,
    staging: wgpu::Buffer,
    /// Bytes of the buffers above (tensors, readback, uniforms), for the cache budget.
    bytes: u64,
}

/// The prepared state of one input size, locked while a run uses its buffers.
type SharedPrepared = Arc<Mutex<Prepared>>;

/// Bytes of per-size buffers a [`GpuPlan`] keeps when `TUNABLE_GPU_CACHE_MB` is not set.
pub const DEFAULT_CACHE_BUDGET: u64 = 256 << 20;

/// How many of the sizes used last the cache keeps even over its budget.
pub const KEPT_SIZES: usize = 4;

fn default_cache_budget() -> u64 {
    std::env::var("TUNABLE_GPU_CACHE_MB")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DEFAULT_CACHE_BUDGET, |mb| mb.saturating_mul(1 << 20))
}

type SizeKey = Vec<[usize; 3]>;

/// Prepared sizes, least recently used evicted first once their bytes pass the budget. A run
/// that still holds an evicted entry keeps its buffers alive until it ends.
struct SizeCache {
    entries: HashMap<SizeKey, (SharedPrepared, u64, u64)>,
    /// Bumped on every use; an entry's third field is the tick of its last use.
    tick: u64,
    budget: u64,
}

impl SizeCache {
    fn new(budget: u64) -> Self {
        SizeCache {
            entries: HashMap::new(),
            tick: 0,
            budget,
        }
    }
    fn bytes(&self) -> u64 {
        self.entries.values().map(|e| e.1).sum()
    }
    fn get(&mut self, key: &SizeKey) -> Option<SharedPrepared> {
        self.tick += 1;
        let e = self.entries.get_mut(key)?;
        e.2 = self.tick;
        Some(e.0.clone())
    }
    fn insert(&mut self, key: SizeKey, p: SharedPrepared, bytes: u64) {
        self.tick += 1;
        self.entries.insert(key, (p, bytes, self.tick));
        self.evict();
    }
    /// Drops least recently used entries while over budget, keeping the [`KEPT_SIZES`] used last.
    fn evict(&mut self) {
        while self.entries.len() > KEPT_SIZES && self.bytes() > self.budget {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.2)
                .map(|(k, _)| k.clone())
                .expect("more than one entry");
            self.entries.remove(&oldest);
        }
    }
}

/// A plan uploaded to the GPU. `Send + Sync`; runs from several threads are safe (runs of
/// the same size are serialised on that size's buffers).
pub struct GpuPlan {
    ctx: Arc<GpuContext>,
    in_channels: usize,
    num_tensors: usize,
    output: TensorId,
    /// Tensors the caller provides (tensor 0 for a plan; 0..=k for a single node).
    inputs: Vec<TensorId>,
    nodes: Vec<GpuNode>,
    level: wgpu::Buffer,
    cache: Mutex<SizeCache>,
    /// Pairs each level write with its submission.
    submit: Mutex<()>,
}

fn shape_err(node: &str, m: impl std::fmt::Display) -> Error {
    Error::Shape(format!("node '{node}': {m}"))
}

fn check_len(node: &str, what: &str, v: &[f32], want: usize) -> Result<()> {
    if v.len() != want {
        return Err(shape_err(
            node,
            format!("{what} has {} values, expected {want}", v.len()),
        ));
    }
    Ok(())
}

fn coef_params(p: &mut Params, mix: &Mix, node: &str) -> Result<()> {
    if mix.deltas() > MAX_DELTAS {
        return Err(shape_err(
            node,
            format!("{} deltas, at most {MAX_DELTAS} supported", mix.deltas()),
        ));
    }
    for (i, a) in mix.coefs.iter().enumerate() {
        p.coef_off[i] = a.offset;
        p.coef_gain[i] = a.gain;
    }
    Ok(())
}

fn act_code(a: &Activation) -> u8 {
    match a {
        Activation::None => 0,
        Activation::Relu => 1,
        Activation::Prelu(_) => 2,
    }
}

/// Packs an epilogue's mixed vectors into one buffer: returns the data, the offsets
/// (written into `p.e0`/`p.e1`) and the variant flags.
fn pack_epilogue(
    ep: &Epilogue,
    c: usize,
    deltas: usize,
    n_others: usize,
    node: &str,
    p: &mut Params,
) -> Result<(Vec<f32>, EpFlags)> {
    let mixed_len = (deltas + 1) * c;
    let mut data = vec![];
    let mut push = |v: &[f32]| -> u32 {
        let off = data.len() as u32;
        data.extend_from_slice(v);
        off
    };
    if ep.bias.is_empty() {
        p.e0[0] = push(&vec![0.0; mixed_len]);
    } else {
        check_len(node, "bias", &ep.bias, mixed_len)?;
        p.e0[0] = push(&ep.bias);
    }
    let mut flags = EpFlags {
        act: act_code(&ep.act),
        ..Default::default()
    };
    if let Some((s, t)) = &ep.scale_shift {
        check_len(node, "scale", s, mixed_len)?;
        check_len(node, "shift", t, mixed_len)?;
        flags.scale_shift = true;
        p.e0[1] = push(s);
        p.e0[2] = push(t);
    }
    if let Activation::Prelu(s) = &ep.act {
        p.e1[2] = push(&prelu_slopes(s, c, node)?);
    }
    if let Some(Combine { u, v }) = &ep.combine {
        check_len(node, "combine u", u, mixed_len)?;
        flags.combine = true;
        p.e0[3] = push(u);
        let n = v.len().min(n_others);
        if n > 2 {
            return Err(shape_err(
                node,
                format!("combine with {n} other tensors, at most 2 supported"),
            ));
        }
        flags.others = n as u8;
        for (i, vi) in v.iter().take(n).enumerate() {
            check_len(node, "combine v", vi, mixed_len)?;
            p.e1[i] = push(vi);
        }
    }
    Ok((data, flags))
}

fn prelu_slopes(s: &[f32], c: usize, node: &str) -> Result<Vec<f32>> {
    match s.len() {
        1 => Ok(vec![s[0]; c]),
        n if n == c => Ok(s.to_vec()),
        n => Err(shape_err(
            node,
            format!("PReLU has {n} slopes, expected 1 or {c}"),
        )),
    }
}

/// The op with its large arrays dropped (shape inference only needs the sizes).
fn strip(op: &Op) -> Op {
    let ep = || Epilogue {
        bias: vec![],
        scale_shift: None,
        act: Activation::None,
        combine: None,
    };
    match op {
        Op::Conv2d(c) => Op::Conv2d(crate::plan::Conv2d {
            cin: c.cin,
            cout: c.cout,
            k: c.k,
            stride: c.stride,
            mix: Mix::none(),
            weight: vec![],
            epilogue: ep(),
            noise_channel: c.noise_channel,
            unfused_mix: c.unfused_mix,
        }),
        Op::Depthwise(d) => Op::Depthwise(crate::plan::Depthwise {
            channels: d.channels,
            k: d.k,
            mix: Mix::none(),
            weight: vec![],
            epilogue: ep(),
        }),
        Op::Eltwise(e) => Op::Eltwise(crate::plan::Eltwise {
            channels: e.channels,
            mix: Mix::none(),
            u: vec![],
            v: None,
            act: Activation::None,
        }),
        Op::Unshuffle => Op::Unshuffle,
        Op::Shuffle => Op::Shuffle,
    }
}

fn u32_of(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n)
        .map_err(|_| Error::Shape(format!("{what} ({n}) exceeds what one GPU kernel indexes")))
}

impl GpuPlan {
    /// Uploads every weight of `plan` once. Kernels are compiled here (and cached in `ctx`).
    pub fn new(ctx: Arc<GpuContext>, plan: &Plan) -> Result<GpuPlan> {
        Self::build(ctx, plan, vec![0])
    }

    fn build(ctx: Arc<GpuContext>, plan: &Plan, inputs: Vec<TensorId>) -> Result<GpuPlan> {
        ctx.check()?;
        let mut nodes = Vec::with_capacity(plan.nodes.len());
        for n in &plan.nodes {
            let op = Self::upload(&ctx, n)?;
            nodes.push(GpuNode {
                name: n.name.clone(),
                shape_op: strip(&n.op),
                op,
                input: n.input,
                others: n.others.clone(),
                output: n.output,
            });
        }
        let level = ctx.create_buffer(
            "level",
            16,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        )?;
        Ok(GpuPlan {
            ctx,
            in_channels: plan.in_channels,
            num_tensors: plan.num_tensors,
            output: plan.output,
            inputs,
            nodes,
            level,
            cache: Mutex::new(SizeCache::new(default_cache_budget())),
            submit: Mutex::new(()),
        })
    }

    fn upload_floats(
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

    fn upload(ctx: &GpuContext, n: &Node) -> Result<GpuOp> {
        let name = n.name.as_str();
        match &n.op {
            Op::Conv2d(c) => {
                if ![1, 3, 5, 7].contains(&c.k) || ![1, 2].contains(&c.stride) {
                    return Err(shape_err(
                        name,
                        format!(
                            "conv {0}x{0} stride {1} is not supported (k 1/3/5/7, stride 1/2)",
                            c.k, c.stride
                        ),
                    ));
                }
                if c.cin == 0 || c.cout == 0 || c.cin < c.noise_channel.is_some() as usize {
                    return Err(shape_err(
                        name,
                        format!("conv with {} inputs and {} outputs", c.cin, c.cout),
                    ));
                }
                let deltas = c.mix.deltas();
                let kk = c.k * c.k;
                check_len(name, "weight", &c.weight, (deltas + 1) * c.weight_len())?;
                let mut p = Params::default();
                coef_params(&mut p, &c.mix, name)?;
                if let Some(a) = c.noise_channel {
                    p.noise_gain = a.gain;
                    p.noise_off[0] = a.offset;
                }
                let (epd, ep) =
                    pack_epilogue(&c.epilogue, c.cout, deltas, n.others.len(), name, &mut p)?;
                // GPU layout [part][cin][k*k][cout16]: a vec4 holds 4 consecutive output
                // channels; the padding channels are zero.
                let cout16 = c.cout.div_ceil(16) * 16;
                let part = c.cin * kk * cout16;
                let mut w = vec![0.0f32; (deltas + 1) * part];
                for p_ in 0..=deltas {
                    let src = &c.weight[p_ * c.weight_len()..(p_ + 1) * c.weight_len()];
                    let dst = &mut w[p_ * part..(p_ + 1) * part];
                    for co in 0..c.cout {
                        for ci in 0..c.cin {
                            for t in 0..kk {
                                dst[(ci * kk + t) * cout16 + co] = src[(co * c.cin + ci) * kk + t];
                            }
                        }
                    }
                }
                p.d0[3] = u32_of(c.cin, "input channels")?;
                p.d1[0] = u32_of(c.cout, "output channels")?;
                p.d1[3] = u32_of(cout16, "output channels")?;
                let unfused = c.unfused_mix && deltas > 0;
                let pw = if unfused { 0 } else { deltas as u8 };
                let pe = deltas as u8;
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
                ctx.pipeline(kernel)?;
                let mix = if unfused {
                    let mk = Kernel::MixWeights { p: deltas as u8 };
                    ctx.pipeline(mk)?;
                    Some((
                        mk,
                        ctx.create_buffer(&format!("{name}.mixed"), part as u64 * 4, STORAGE)?,
                    ))
                } else {
                    None
                };
                Ok(GpuOp::Conv {
                    kernel,
                    mix,
                    weights: Self::upload_floats(ctx, name, "weight", &w)?,
                    ep: Self::upload_floats(ctx, name, "epilogue", &epd)?,
                    params: p,
                    part_len: u32_of(part, "weights")?,
                })
            }
            Op::Depthwise(d) => {
                if ![1, 3, 5, 7].contains(&d.k) {
                    return Err(shape_err(
                        name,
                        format!("depthwise {0}x{0} is not supported (k 1/3/5/7)", d.k),
                    ));
                }
                let deltas = d.mix.deltas();
                check_len(
                    name,
                    "weight",
                    &d.weight,
                    (deltas + 1) * d.channels * d.k * d.k,
                )?;
                let mut p = Params::default();
                coef_params(&mut p, &d.mix, name)?;
                let (epd, ep) = pack_epilogue(
                    &d.epilogue,
                    d.channels,
                    deltas,
                    n.others.len(),
                    name,
                    &mut p,
                )?;
                let kernel = Kernel::Depthwise {
                    k: d.k as u8,
                    pw: deltas as u8,
                    pe: deltas as u8,
                    ep,
                };
                ctx.pipeline(kernel)?;
                Ok(GpuOp::Depthwise {
                    kernel,
                    weights: Self::upload_floats(ctx, name, "weight", &d.weight)?,
                    ep: Self::upload_floats(ctx, name, "epilogue", &epd)?,
                    params: p,
                })
            }
            Op::Eltwise(e) => {
                let deltas = e.mix.deltas();
                let mixed_len = (deltas + 1) * e.channels;
                let mut p = Params::default();
                coef_params(&mut p, &e.mix, name)?;
                check_len(name, "u", &e.u, mixed_len)?;
                let mut data = e.u.clone();
                let has_b = e.v.is_some() && !n.others.is_empty();
                if let (Some(v), true) = (&e.v, has_b) {
                    check_len(name, "v", v, mixed_len)?;
                    p.e0[1] = data.len() as u32;
                    data.extend_from_slice(v);
                }
                if let Activation::Prelu(s) = &e.act {
                    p.e1[2] = data.len() as u32;
                    data.extend(prelu_slopes(s, e.channels, name)?);
                }
                let kernel = Kernel::Eltwise {
                    p: deltas as u8,
                    has_b,
                    act: act_code(&e.act),
                };
                ctx.pipeline(kernel)?;
                Ok(GpuOp::Eltwise {
                    kernel,
                    ep: Self::upload_floats(ctx, name, "gains", &data)?,
                    params: p,
                })
            }
            Op::Unshuffle | Op::Shuffle => {
                let kernel = Kernel::Shuffle {
                    unshuffle: matches!(n.op, Op::Unshuffle),
                };
                ctx.pipeline(kernel)?;
                Ok(GpuOp::Shuffle { kernel })
            }
        }
    }

    /// The context this plan runs on.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// How many input sizes have buffers and bind groups prepared (each is reused by every
    /// later run of that size, at any level).
    pub fn prepared_sizes(&self) -> usize {
        self.cache.lock().map(|c| c.entries.len()).unwrap_or(0)
    }

    /// Bytes of the buffers kept for prepared sizes: at most the cache budget, or the
    /// [`KEPT_SIZES`] sizes used last where those alone are larger.
    pub fn retained_bytes(&self) -> u64 {
        self.cache.lock().map(|c| c.bytes()).unwrap_or(0)
    }

    /// How many bytes of per-size buffers are kept (least recently used sizes go first).
    pub fn set_cache_budget(&self, bytes: u64) {
        if let Ok(mut c) = self.cache.lock() {
            c.budget = bytes;
            c.evict();
        }
    }

    pub fn cache_budget(&self) -> u64 {
        self.cache.lock().map(|c| c.budget).unwrap_or(0)
    }

    /// Drops the buffers of every prepared size (they are re-created on the next run).
    pub fn release_buffers(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.entries.clear();
        }
    }

    /// The largest tensor (bytes) this executor accepts; the caller tiles bigger images.
    pub fn max_tensor_bytes(&self) -> u64 {
        self.ctx.max_tensor_bytes()
    }

    /// Shapes of every tensor for the given external input shapes.
    fn shapes(&self, ext: &[Shape]) -> Result<Vec<Shape>> {
        let given: Vec<(TensorId, Shape)> = self
            .inputs
            .iter()
            .copied()
            .zip(ext.iter().copied())
            .collect();
        infer_shapes(
            self.num_tensors,
            &given,
            self.nodes.iter().map(|n| {
                (
                    n.name.as_str(),
                    &n.shape_op,
                    n.input,
                    n.others.as_slice(),
                    n.output,
                )
            }),
        )
    }

    /// Allocates the size-dependent state for these input shapes.
    fn prepare(&self, ext: &[Shape]) -> Result<Prepared> {
        let ctx = &self.ctx;
        let shapes = self.shapes(ext)?;
        let nodes = self.nodes.iter();
        run_memory(
            &shapes,
            nodes.map(|n| (n.input, n.others.as_slice(), n.output)),
            self.output,
        )
        .check(ext[0])?;
        let max = ctx.max_tensor_bytes();
        for (t, s) in shapes.iter().enumerate() {
            let bytes = s.len() as u64 * 4;
            if bytes > max {
                let who = self
                    .nodes
                    .iter()
                    .find(|n| n.output == t)
                    .map_or("the input".to_string(), |n| format!("node '{}'", n.name));
                return Err(Error::Shape(format!(
                    "tensor {t} ({}x{}x{}, written by {who}) takes {bytes} bytes, more than one GPU storage binding holds ({max}); process the image in tiles",
                    s.c, s.h, s.w
                )));
            }
            u32_of(s.len(), "tensor size")?;
        }

        // Buffer pool by liveness: a tensor's buffer returns to the pool after its last reader.
        let mut last_use = vec![usize::MAX; self.num_tensors];
        for (i, n) in self.nodes.iter().enumerate() {
            for &t in std::iter::once(&n.input).chain(&n.others) {
                last_use[t] = i;
            }
        }
        let pinned = |t: TensorId| self.inputs.contains(&t) || t == self.output;
        let mut pool: Vec<wgpu::Buffer> = vec![];
        let mut pool_bytes: Vec<u64> = vec![];
        let mut free: Vec<usize> = vec![];
        let mut tensor_buf = vec![usize::MAX; self.num_tensors];
        let usage = STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let mut alloc =
            |t: TensorId, pool: &mut Vec<wgpu::Buffer>, free: &mut Vec<usize>| -> Result<usize> {
                let bytes = shapes[t].len() as u64 * 4;
                if let Some(pos) = free.iter().position(|&b| pool_bytes[b] == bytes) {
                    return Ok(free.swap_remove(pos));
                }
                pool.push(ctx.create_buffer(&format!("tensor {t}"), bytes, usage)?);
                pool_bytes.push(bytes);
                Ok(pool.len() - 1)
            };
        for &t in &self.inputs {
            tensor_buf[t] = alloc(t, &mut pool, &mut free)?;
        }
        for (i, n) in self.nodes.iter().enumerate() {
            tensor_buf[n.output] = alloc(n.output, &mut pool, &mut free)?;
            let mut done: Vec<TensorId> = std::iter::once(n.input)
                .chain(n.others.iter().copied())
                .filter(|&t| last_use[t] == i)
                .collect();
            if last_use[n.output] == usize::MAX {
                done.push(n.output);
            }
            done.sort_unstable();
            done.dedup();
            for t in done {
                if !pinned(t) {
                    free.push(tensor_buf[t]);
                }
            }
        }

        // Launches.
        let mut launches: Vec<Launch> = vec![];
        let wg_max = ctx.info().max_workgroups_per_dim;
        for n in &self.nodes {
            let s = shapes[n.input];
            let o = shapes[n.output];
            let x = pool[tensor_buf[n.input]].clone();
            let y = pool[tensor_buf[n.output]].clone();
            let other = |i: usize| n.others.get(i).map(|&t| pool[tensor_buf[t]].clone());
            match &n.op {
                GpuOp::Conv {
                    kernel,
                    mix,
                    weights,
                    ep,
                    params,
                    part_len,
                } => {
                    let mut p = *params;
                    let w = if let Some((mk, mixed)) = mix {
                        let mut mp = *params;
                        mp.d0 = [*part_len, 0, 0, 0];
                        let (g, pitch) = grid_1d(part_len.div_ceil(256), wg_max);
                        mp.d2[3] = pitch;
                        launches.push(Launch {
                            kernel: *mk,
                            params: mp,
                            grid: [g[0], g[1], 1],
                            slots: [
                                Some(weights.clone()),
                                None,
                                None,
                                None,
                                None,
                                Some(mixed.clone()),
                            ],
                        });
                        mixed.clone()
                    } else {
                        weights.clone()
                    };
                    p.d0[0] = s.c as u32;
                    let cout = p.d1[0];
                    let grid = match kernel {
                        Kernel::Conv1x1 { .. } => {
                            let plane = (s.h * s.w) as u32;
                            p.d0[1] = plane;
                            p.d1[1] = plane;
                            let (g, pitch) = grid_1d(plane.div_ceil(128), wg_max);
                            p.d2[3] = pitch;
                            [g[0], g[1], cout.div_ceil(16)]
                        }
                        _ => {
                            p.d0[1] = s.h as u32;
                            p.d0[2] = s.w as u32;
                            p.d1[1] = o.h as u32;
                            p.d1[2] = o.w as u32;
                            [
                                (o.w as u32).div_ceil(16),
                                (o.h as u32).div_ceil(8),
                                cout.div_ceil(16),
                            ]
                        }
                    };
                    launches.push(Launch {
                        kernel: *kernel,
                        params: p,
                        grid,
                        slots: [
                            Some(x),
                            Some(w),
                            Some(ep.clone()),
                            other(0),
                            other(1),
                            Some(y),
                        ],
                    });
                }
                GpuOp::Depthwise {
                    kernel,
                    weights,
                    ep,
                    params,
                } => {
                    let mut p = *params;
                    p.d0 = [s.c as u32, s.h as u32, s.w as u32, 0];
                    let grid = [
                        (s.w as u32).div_ceil(16),
                        (s.h as u32).div_ceil(16),
                        s.c as u32,
                    ];
                    launches.push(Launch {
                        kernel: *kernel,
                        params: p,
                        grid,
                        slots: [
                            Some(x),
                            Some(weights.clone()),
                            Some(ep.clone()),
                            other(0),
                            other(1),
                            Some(y),
                        ],
                    });
                }
                GpuOp::Eltwise { kernel, ep, params } => {
                    let mut p = *params;
                    let len = s.len() as u32;
                    p.d0 = [s.c as u32, (s.h * s.w) as u32, len, 0];
                    let (g, pitch) = grid_1d(len.div_ceil(256), wg_max);
                    p.d2[3] = pitch;
                    let b = if matches!(kernel, Kernel::Eltwise { has_b: true, .. }) {
                        other(0)
                    } else {
                        None
                    };
                    launches.push(Launch {
                        kernel: *kernel,
                        params: p,
                        grid: [g[0], g[1], 1],
                        slots: [Some(x), None, Some(ep.clone()), b, None, Some(y)],
                    });
                }
                GpuOp::Shuffle { kernel } => {
                    let mut p = Params::default();
                    let len = o.len() as u32;
                    p.d0 = [s.c as u32, s.h as u32, s.w as u32, len];
                    p.d1 = [o.c as u32, o.h as u32, o.w as u32, 0];
                    let (g, pitch) = grid_1d(len.div_ceil(256), wg_max);
                    p.d2[3] = pitch;
                    launches.push(Launch {
                        kernel: *kernel,
                        params: p,
                        grid: [g[0], g[1], 1],
                        slots: [Some(x), None, None, None, None, Some(y)],
                    });
                }
            }
        }
        let steps = build_steps(ctx, &self.level, launches)?;
        let out_bytes = shapes[self.output].len() as u64 * 4;
        let staging = ctx.create_buffer(
            "readback",
            out_bytes,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        let dispatches: usize = steps.iter().map(|s| s.pieces.len()).sum();
        let bytes = pool.iter().map(|b| b.size()).sum::<u64>()
            + out_bytes
            + dispatches as u64 * UNIFORM_STRIDE;
        Ok(Prepared {
            shapes,
            pool,
            tensor_buf,
            steps,
            staging,
            bytes,
        })
    }

    /// Runs the plan on `input` (CHW, values already scaled) at `level`.
    pub fn run(&self, input: &Tensor, level: &LevelVec) -> Result<Tensor> {
        if self.inputs.len() != 1 {
            return Err(Error::InvalidArgument(
                "this GPU plan takes several inputs (use run_node)".into(),
            ));
        }
        self.execute(&[input], level)
    }

    fn execute(&self, inputs: &[&Tensor], level: &LevelVec) -> Result<Tensor> {
        let ctx = &self.ctx;
        ctx.check()?;
        if inputs.len() != self.inputs.len() {
            return Err(Error::InvalidArgument(format!(
                "expected {} input tensors, got {}",
                self.inputs.len(),
                inputs.len()
            )));
        }
        for t in inputs {
            if t.shape.is_empty() || t.data.len() != t.shape.len() {
                return Err(Error::Shape(format!(
                    "input tensor {}x{}x{} holds {} values",
                    t.shape.c,
                    t.shape.h,
                    t.shape.w,
                    t.data.len()
                )));
            }
        }
        if inputs[0].shape.c != self.in_channels {
            return Err(Error::Shape(format!(
                "the plan expects {} input channels, got {}",
                self.in_channels, inputs[0].shape.c
            )));
        }
        let ext: Vec<Shape> = inputs.iter().map(|t| t.shape).collect();
        let key: Vec<[usize; 3]> = ext.iter().map(|s| [s.c, s.h, s.w]).collect();
        let prep = {
            let mut cache = self.cache.lock().map_err(poisoned)?;
            match cache.get(&key) {
                Some(p) => p,
                None => {
                    let prepared = self.prepare(&ext)?;
                    let bytes = prepared.bytes;
                    let p = Arc::new(Mutex::new(prepared));
                    cache.insert(key, p.clone(), bytes);
                    p
                }
            }
        };
        let prep = prep.lock().map_err(poisoned)?;
        let scope = ErrorScope::push(&ctx.device);
        for (&t, x) in self.inputs.iter().zip(inputs) {
            ctx.write_input(
                &prep.pool[prep.tensor_buf[t]],
                0,
                bytemuck::cast_slice(&x.data),
            );
        }
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("tunable plan"),
            });
        record(&mut encoder, &prep.steps);
        let out_shape = prep.shapes[self.output];
        let out_bytes = out_shape.len() as u64 * 4;
        encoder.copy_buffer_to_buffer(
            &prep.pool[prep.tensor_buf[self.output]],
            0,
            &prep.staging,
            0,
            out_bytes,
        );
        scope
            .pop("recording the plan")
            .map_err(|e| ctx.lost_or(e))?;
        let index = {
            let _g = self.submit.lock().map_err(poisoned)?;
            ctx.write_buffer(&self.level, 0, bytemuck::cast_slice(level));
            ctx.submit(encoder)?
        };
        let data = ctx.map_read(&prep.staging, out_bytes, index)?;
        Ok(Tensor::from_vec(out_shape, data))
    }
}

/// One kernel launch before splitting: storage slots 2..=7 (x, w, ep, o1, o2, y).
struct Launch {
    kernel: Kernel,
    params: Params,
    grid: [u32; 3],
    slots: [Option<wgpu::Buffer>; 6],
}

/// Splits each launch into dispatches within the workgroup limit, writes all their uniforms
/// into one buffer and creates the bind groups.
fn build_steps(ctx: &GpuContext, level: &wgpu::Buffer, launches: Vec<Launch>) -> Result<Vec<Step>> {
    let max = ctx.info().max_workgroups_per_dim;
    let mut uniforms: Vec<u8> = vec![];
    // Per launch: (uniform offset, workgroup counts) of each dispatch.
    let mut plan: Vec<Vec<(u64, [u32; 3])>> = vec![];
    for l in &launches {
        let mut pieces = vec![];
        for piece in split_grid(l.grid, max) {
            let mut p = l.params;
            p.d2[0] = piece.offset[0];
            p.d2[1] = piece.offset[1];
            p.d2[2] = piece.offset[2];
            let off = uniforms.len() as u64;
            uniforms.extend_from_slice(bytemuck::bytes_of(&p));
            uniforms.resize((off + UNIFORM_STRIDE) as usize, 0);
            pieces.push((off, piece.count));
        }
        plan.push(pieces);
    }
    let ubuf = ctx.buffer_with("params", &uniforms, wgpu::BufferUsages::UNIFORM)?;
    let pipelines = launches
        .iter()
        .map(|l| ctx.pipeline(l.kernel))
        .collect::<Result<Vec<_>>>()?;
    let scope = ErrorScope::push(&ctx.device);
    let mut steps = vec![];
    for ((l, pieces), pipeline) in launches.iter().zip(plan).zip(pipelines) {
        let slot = |j: usize| {
            l.slots[j]
                .as_ref()
                .unwrap_or(&ctx.dummy)
                .as_entire_binding()
        };
        let mut bound = vec![];
        for (off, count) in pieces {
            let bg = ctx.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("tunable step"),
                layout: &ctx.layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: level.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &ubuf,
                            offset: off,
                            size: wgpu::BufferSize::new(PARAMS_SIZE),
                        }),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: slot(0),
                    },
                    wgpu::BindGroupEntry {
                        binding: 3,
                        resource: slot(1),
                    },
                    wgpu::BindGroupEntry {
                        binding: 4,
                        resource: slot(2),
                    },
                    wgpu::BindGroupEntry {
                        binding: 5,
                        resource: slot(3),
                    },
                    wgpu::BindGroupEntry {
                        binding: 6,
                        resource: slot(4),
                    },
                    wgpu::BindGroupEntry {
                        binding: 7,
                        resource: slot(5),
                    },
                ],
            });
            bound.push((bg, count));
        }
        steps.push(Step {
            pipeline,
            pieces: bound,
        });
    }
    scope.pop("creating bind groups")?;
    Ok(steps)
}

fn record(encoder: &mut wgpu::CommandEncoder, steps: &[Step]) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("tunable"),
        timestamp_writes: None,
    });
    for s in steps {
        pass.set_pipeline(&s.pipeline);
        for (bg, c) in &s.pieces {
            pass.set_bind_group(0, bg, &[]);
            pass.dispatch_workgroups(c[0], c[1], c[2]);
        }
    }
}

/// Runs one node on the GPU with its combine tensors (or eltwise `b`) given directly:
/// the single-node entry the kernel tests use. Uploads the node each call.
pub fn run_node(
    ctx: &Arc<GpuContext>,
    node: &Node,
    level: &LevelVec,
    x: &Tensor,
    others: &[&Tensor],
) -> Result<Tensor> {
    let k = others.len();
    let mut n = node.clone();
    n.input = 0;
    n.others = (1..=k).collect();
    n.output = k + 1;
    let plan = Plan {
        in_channels: x.shape.c,
        num_tensors: k + 2,
        nodes: vec![n],
        output: k + 1,
    };
    let gp = GpuPlan::build(ctx.clone(), &plan, (0..=k).collect())?;
    let mut inputs = vec![x];
    inputs.extend_from_slice(others);
    gp.execute(&inputs, level)
}

/// Runs a list of 1-D launches writing `out` (n floats) and reads `out` back.
fn run_once(
    ctx: &GpuContext,
    launches: Vec<Launch>,
    out: &wgpu::Buffer,
    n: usize,
) -> Result<Vec<f32>> {
    ctx.check()?;
    let level = ctx.create_buffer(
        "level",
        16,
        wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
    )?;
    run_once_with_level(ctx, launches, out, n, &level, &[0.0; 4])
}

fn run_once_with_level(
    ctx: &GpuContext,
    launches: Vec<Launch>,
    out: &wgpu::Buffer,
    n: usize,
    level: &wgpu::Buffer,
    lv: &LevelVec,
) -> Result<Vec<f32>> {
    let steps = build_steps(ctx, level, launches)?;
    let bytes = n as u64 * 4;
    let staging = ctx.create_buffer(
        "readback",
        bytes,
        wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
    )?;
    let scope = ErrorScope::push(&ctx.device);
    let mut encoder = ctx
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("tunable once"),
        });
    record(&mut encoder, &steps);
    encoder.copy_buffer_to_buffer(out, 0, &staging, 0, bytes);
    scope.pop("recording")?;
    ctx.write_buffer(level, 0, bytemuck::cast_slice(lv));
    let index = ctx.submit(encoder)?;
    ctx.map_read(&staging, bytes, index)
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
    let mut p = Params::default();
    coef_params(
        &mut p,
        &Mix {
            coefs: coefs.to_vec(),
        },
        "mix",
    )?;
    p.d0[0] = u32_of(n, "mix length")?;
    let (g, pitch) = grid_1d(p.d0[0].div_ceil(256), ctx.info().max_workgroups_per_dim);
    p.d2[3] = pitch;
    let src = GpuPlan::upload_floats(ctx, "mix", "input", mixed)?;
    let out = ctx.create_buffer(
        "mix.out",
        n as u64 * 4,
        STORAGE | wgpu::BufferUsages::COPY_SRC,
    )?;
    let launch = Launch {
        kernel: Kernel::MixWeights {
            p: coefs.len() as u8,
        },
        params: p,
        grid: [g[0], g[1], 1],
        slots: [Some(src), None, None, None, None, Some(out.clone())],
    };
    let level_buf = ctx.create_buffer(
        "level",
        16,
        wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
    )?;
    run_once_with_level(ctx, vec![launch], &out, n, &level_buf, level)
}

/// The FTN transform on the GPU (the twin of `reference::ftn_transform`), run once at load:
/// `weight` is `[cout, cin, k, k]`; returns FTN(weight) in the same layout.
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
    // ep = [bias (cin) | slope]: bias at e0.x = 0, slope at e1.z = cin.
    let mut p = Params {
        d0: [cout as u32, cin as u32, kk as u32, gs as u32],
        d1: [u32_of(n, "FTN size")?, f.slope.len() as u32, 0, 0],
        e1: [0, 0, cin as u32, 0],
        ..Default::default()
    };
    let (g, pitch) = grid_1d(p.d1[0].div_ceil(256), ctx.info().max_workgroups_per_dim);
    p.d2[3] = pitch;
    let up = |what: &str, d: &[f32]| GpuPlan::upload_floats(ctx, "ftn", what, d);
    let src = up("weight", weight)?;
    let ep1: Vec<f32> = f.b1.iter().chain(f.slope).copied().collect();
    let ep2: Vec<f32> = f.b2.iter().chain(f.slope).copied().collect();
    let (w1, w2, ep1, ep2) = (
        up("w1", f.w1)?,
        up("w2", f.w2)?,
        up("ep1", &ep1)?,
        up("ep2", &ep2)?,
    );
    let usage = STORAGE | wgpu::BufferUsages::COPY_SRC;
    let hidden = ctx.create_buffer("ftn.hidden", n as u64 * 4, usage)?;
    let out = ctx.create_buffer("ftn.out", n as u64 * 4, usage)?;
    let grid = [g[0], g[1], 1];
    let launches = vec![
        Launch {
            kernel: Kernel::Ftn { layer: 1 },
            params: p,
            grid,
            slots: [
                Some(src),
                Some(w1),
                Some(ep1),
                None,
                None,
                Some(hidden.clone()),
            ],
        },
        Launch {
            kernel: Kernel::Ftn { layer: 2 },
            params: p,
            grid,
            slots: [
                Some(hidden),
                Some(w2),
                Some(ep2),
                None,
                None,
                Some(out.clone()),
            ],
        },
    ];
    run_once(ctx, launches, &out, n)
}
