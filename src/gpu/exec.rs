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
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
// UNIFORM_STRIDE: byte stride of the per-dispatch uniforms in one buffer (>= the offset
// alignment of any device the context accepts).
use crate::gpu::context::{
    poisoned, ErrorScope, GpuContext, LEVEL_BYTES, MIN_STORAGE_BUFFERS_PER_STAGE,
    STORAGE_BUFFERS_PER_STAGE, UNIFORM_STRIDE,
};
use crate::gpu::kernels::split_grid;
use crate::gpu::ops::{u32_of, GpuOp, Launch, NodeIo, STORAGE};
use crate::plan::{LevelVec, Node, Plan, Shape, ShapeGraph, TensorId};
use crate::tensor::Tensor;

/// `GpuPlan::run_async`: the same runs with an awaited read-back (src/gpu/readback.rs).
#[path = "readback.rs"]
pub(crate) mod readback;

/// `GpuPlan::encode`: runs recorded into the app's encoder, textures in and out
/// (src/gpu/encode.rs).
#[path = "encode.rs"]
pub(crate) mod encode;

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

/// Slots of the level ring (so up to `LEVEL_SLOTS - 1` encodes recorded before one
/// submission keep their own level; 64 KiB of uniform).
pub const LEVEL_SLOTS: u32 = 256;

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
    /// The plan without its weights: shapes, liveness and memory of each size.
    graph: ShapeGraph,
    output: TensorId,
    /// Tensors the caller provides (tensor 0 for a plan; 0..=k for a single node).
    inputs: Vec<TensorId>,
    /// The GPU side of each node of `graph`.
    ops: Vec<GpuOp>,
    /// The level ring: [`LEVEL_SLOTS`] slots of [`UNIFORM_STRIDE`] bytes, each a level vector,
    /// bound at binding 0 with a dynamic offset. Slot 0 is the level of `run`/`run_async`
    /// (written right before their submission); `encode` takes the others in turn, so several
    /// restorations recorded before one submission each keep their own level.
    level: wgpu::Buffer,
    /// How many encodes took a ring slot (slot `1 + n % (LEVEL_SLOTS - 1)` is the next).
    next_slot: AtomicU32,
    cache: Mutex<SizeCache>,
    /// What `encode` prepared per pair of texture views (src/gpu/encode.rs).
    encodes: encode::EncodeCache,
    /// Pairs each level write with its submission.
    submit: Mutex<()>,
}

/// The GPU executor reports a plan that fails [`Plan::validate`] as `Error::Shape`, as it
/// always has (its callers match on that); the wording is the plan's.
fn as_shape_error(e: Error) -> Error {
    match e {
        Error::Tensor { name, message } => Error::Shape(format!("tensor '{name}': {message}")),
        other => other,
    }
}

impl GpuPlan {
    /// Uploads every weight of `plan` once. Kernels are compiled here (and cached in `ctx`).
    pub fn new(ctx: Arc<GpuContext>, plan: &Plan) -> Result<GpuPlan> {
        Self::build(ctx, plan, vec![0])
    }

    fn build(ctx: Arc<GpuContext>, plan: &Plan, inputs: Vec<TensorId>) -> Result<GpuPlan> {
        ctx.check()?;
        plan.validate_with_inputs(&inputs).map_err(as_shape_error)?;
        // A conv combining k other tensors binds 4 + k storage buffers; where the device
        // allows fewer, its combine runs as eltwise passes instead.
        let limit = ctx.info().max_storage_buffers_per_stage;
        let split;
        let plan = if limit < STORAGE_BUFFERS_PER_STAGE {
            split =
                plan.split_combines(limit.saturating_sub(MIN_STORAGE_BUFFERS_PER_STAGE) as usize);
            &split
        } else {
            plan
        };
        let ops = plan
            .nodes
            .iter()
            .map(|n| GpuOp::upload(&ctx, n))
            .collect::<Result<Vec<_>>>()?;
        let level = ctx.create_buffer(
            "level ring",
            LEVEL_SLOTS as u64 * UNIFORM_STRIDE,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        )?;
        Ok(GpuPlan {
            ctx,
            in_channels: plan.in_channels,
            graph: plan.shape_graph(),
            output: plan.output,
            inputs,
            ops,
            level,
            next_slot: AtomicU32::new(0),
            cache: Mutex::new(SizeCache::new(default_cache_budget())),
            encodes: Mutex::new(vec![]),
            submit: Mutex::new(()),
        })
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
        self.cache.lock().map(|c| c.bytes()).unwrap_or(0) + self.encode_bytes()
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
        if let Ok(mut e) = self.encodes.lock() {
            e.clear();
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
        self.graph.shapes(&given)
    }

    /// Bytes of the scratch buffers (Winograd's) at these shapes: the largest each node asks
    /// for, per slot, shared by all nodes.
    fn scratch_bytes(&self, shapes: &[Shape], max: u64) -> Vec<u64> {
        let mut bytes: Vec<u64> = vec![];
        for (n, op) in self.graph.nodes.iter().zip(&self.ops) {
            for (i, b) in op
                .scratch_bytes(shapes[n.output], max)
                .into_iter()
                .enumerate()
            {
                match bytes.get_mut(i) {
                    Some(s) => *s = (*s).max(b),
                    None => bytes.push(b),
                }
            }
        }
        bytes
    }

    /// Allocates the size-dependent state for these input shapes.
    fn prepare(&self, ext: &[Shape]) -> Result<Prepared> {
        let ctx = &self.ctx;
        let shapes = self.shapes(ext)?;
        let max = ctx.max_tensor_bytes();
        let scratch_bytes = self.scratch_bytes(&shapes, max);
        // The scratch (Winograd's transformed tiles) lives as long as the run: it counts
        // against the run's memory limit beside the activations.
        let mut memory = self.graph.run_memory(&shapes);
        memory.peak_bytes += scratch_bytes.iter().sum::<u64>();
        memory.check(ext[0])?;
        for (t, s) in shapes.iter().enumerate() {
            let bytes = s.len() as u64 * 4;
            if bytes > max {
                let who = self
                    .graph
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
        let last_use = self.graph.last_use();
        let pinned = |t: TensorId| self.inputs.contains(&t) || t == self.output;
        let mut pool: Vec<wgpu::Buffer> = vec![];
        let mut pool_bytes: Vec<u64> = vec![];
        let mut free: Vec<usize> = vec![];
        let mut tensor_buf = vec![usize::MAX; self.graph.num_tensors];
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
        for (i, n) in self.graph.nodes.iter().enumerate() {
            tensor_buf[n.output] = alloc(n.output, &mut pool, &mut free)?;
            for t in self.graph.done_after(i, &last_use) {
                if !pinned(t) {
                    free.push(tensor_buf[t]);
                }
            }
        }

        let scratch = scratch_bytes
            .iter()
            .map(|&b| ctx.create_buffer("scratch", b, STORAGE))
            .collect::<Result<Vec<_>>>()?;

        // Launches.
        let mut launches: Vec<Launch> = vec![];
        let max = ctx.info().max_workgroups_per_dim;
        for (n, op) in self.graph.nodes.iter().zip(&self.ops) {
            let buf = |t: TensorId| pool[tensor_buf[t]].clone();
            let io = NodeIo {
                x: buf(n.input),
                others: n.others.iter().map(|&t| buf(t)).collect(),
                y: buf(n.output),
                input: shapes[n.input],
                output: shapes[n.output],
                scratch: scratch.clone(),
            };
            op.launches(&io, max, &mut launches);
        }
        let steps = build_steps(ctx, &self.level, launches)?;
        let out_bytes = shapes[self.output].len() as u64 * 4;
        let staging = ctx.create_buffer(
            "readback",
            out_bytes,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        let dispatches: usize = steps.iter().map(|s| s.pieces.len()).sum();
        let bytes = pool.iter().chain(&scratch).map(|b| b.size()).sum::<u64>()
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
        self.check_inputs(inputs)?;
        let ext: Vec<Shape> = inputs.iter().map(|t| t.shape).collect();
        let shared = self.prepared(&ext)?;
        let prep = shared.lock().map_err(poisoned)?;
        let (shape, bytes, index) = self.submit_on(&prep, inputs, level)?;
        let data = self.ctx.map_read(&prep.staging, bytes, index)?;
        Ok(Tensor::from_vec(shape, data))
    }
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
            let off = uniforms.len() as u64;
            uniforms.extend_from_slice(&l.uniform.at_offset(piece.offset));
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
        let mut bound = vec![];
        let layout = ctx.layout(l.kernel.layout_key())?;
        let buffers = l.bind.in_order();
        for (off, count) in pieces {
            let mut entries = vec![
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: level,
                        offset: 0,
                        size: wgpu::BufferSize::new(LEVEL_BYTES),
                    }),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &ubuf,
                        offset: off,
                        size: wgpu::BufferSize::new(l.uniform.len()),
                    }),
                },
            ];
            for binding in l.kernel.storage().bindings() {
                let buffer = buffers[binding as usize - 2].as_ref().ok_or_else(|| {
                    Error::Shape(format!(
                        "kernel {} reads binding {binding}, which its op did not provide",
                        l.kernel.label()
                    ))
                })?;
                entries.push(wgpu::BindGroupEntry {
                    binding,
                    resource: buffer.as_entire_binding(),
                });
            }
            let bg = ctx.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("tunable step"),
                layout: &layout.bind_group,
                entries: &entries,
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

/// Records `steps` into one compute pass, reading the level from the ring slot at byte
/// `level_offset`.
fn record(encoder: &mut wgpu::CommandEncoder, steps: &[Step], level_offset: u32) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("tunable"),
        timestamp_writes: None,
    });
    record_in(&mut pass, steps, level_offset);
}

/// Records `steps` into an open compute pass (level from the ring slot at `level_offset`).
fn record_in(pass: &mut wgpu::ComputePass, steps: &[Step], level_offset: u32) {
    for s in steps {
        pass.set_pipeline(&s.pipeline);
        for (bg, c) in &s.pieces {
            pass.set_bind_group(0, bg, &[level_offset]);
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

/// Runs `launches` once at `level` and reads back the first `n` floats of `out`: the one-shot
/// kernels (`ops::mix::mix_weights`, `ops::ftn::ftn_transform`).
pub(crate) fn run_once(
    ctx: &GpuContext,
    launches: Vec<Launch>,
    out: &wgpu::Buffer,
    n: usize,
    level: &LevelVec,
) -> Result<Vec<f32>> {
    ctx.check()?;
    let level_buf = ctx.create_buffer(
        "level",
        16,
        wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
    )?;
    let steps = build_steps(ctx, &level_buf, launches)?;
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
    record(&mut encoder, &steps, 0);
    encoder.copy_buffer_to_buffer(out, 0, &staging, 0, bytes);
    scope.pop("recording")?;
    ctx.write_buffer(&level_buf, 0, bytemuck::cast_slice(level));
    let index = ctx.submit(encoder)?;
    ctx.map_read(&staging, bytes, index)
}
