//! The fast CPU executor, validated against `cpu::reference` (tests/fast_cpu.rs).
//!
//! - Layout: activations are HWC with a zero border (`act`), so convs read their padding
//!   from memory; the plan's CHW input and output are transposed at the ends.
//! - Stride-1 3x3 convs with at least 8 input and output channels: Winograd F(4x4, 3x3)
//!   (`winograd`), a quarter of the multiply-adds, filters transformed once per plan
//!   (`prep::winograd_filter`).
//! - Every other conv: implicit GEMM, no im2col buffer (`conv`). Both run on one micro-kernel
//!   (`microkernel`: 2 vectors of output channels x 6 pixels, AVX2 + FMA or portable; on
//!   AVX-512 CPUs 1 or 2 512-bit vectors x 12 pixels, and Winograd's transforms on 16 lanes).
//! - The epilogue (bias, scale/shift, activation, combine) is written once over the `Lane8`
//!   vectors (`epilogue`), applied to the accumulators and stored once, by both convs and
//!   the depthwise conv. Depthwise, eltwise and (un)shuffle are plain vectorized loops
//!   (`simple`).
//! - Module order, no cycles: `prep` (plan-time layout) <- `epilogue` <- `microkernel` <-
//!   `conv`, `winograd`; `simple` uses `epilogue`; `act` holds tensors in `buffer`s (aligned,
//!   huge pages for large ones); `ends` fuses a leading unshuffle and a closing shuffle +
//!   residual into the CHW <-> HWC transposes; `mod.rs` runs them.
//! - rayon splits output rows (tile rows for Winograd); a portable kernel covers CPUs without
//!   AVX2 + FMA ([`Kernel`], `TUNABLE_FAST_KERNEL` forces one); `TUNABLE_FAST_PROFILE=1`
//!   prints per-node times on stderr.
//!
//! ```no_run
//! # use tunable::{cpu::fast::FastPlan, plan::Plan, tensor::Tensor};
//! # fn f(plan: &Plan, input: &Tensor) -> tunable::Result<()> {
//! let fast = FastPlan::new(plan)?; // validates and pre-packs every mixed array
//! let y = fast.run(input, &[0.5, 0.0, 0.0, 0.0])?; // mixes for the level (cached), runs
//! # Ok(()) }
//! ```
//!
//! Memory: each tensor lives in a pooled buffer from the node that writes it to the last node
//! that reads it (computed from the plan), so a chain of convs holds about three activations.
//! Before allocating, a run's peak activation bytes are checked against
//! [`crate::plan::run_memory_limit`]. Between runs the buffers are kept as sets, one per run
//! that gave its set back: a run checks out one set (the largest), so concurrent runs never
//! share or split one, and sets beyond the pool budget ([`FastPlan::set_pool_budget`], default
//! `TUNABLE_CPU_POOL_MB` or [`DEFAULT_POOL_BUDGET`]) are dropped, the largest always kept (see
//! [`FastPlan::retained_bytes`], [`FastPlan::release_memory`]). Each rayon thread also keeps
//! its Winograd scratch (a few hundred KB, sized to its L2).

mod act;
pub mod bench_net;
mod buffer;
mod conv;
mod ends;
mod epilogue;
mod microkernel;
mod prep;
mod simd;
mod simple;
mod winograd;

use std::sync::{Arc, Mutex, MutexGuard};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::plan::{LevelVec, Op, Plan, ShapeGraph};
use crate::tensor::Tensor;
use act::{Act, Pool};
use buffer::Buffer;
pub use prep::Winograd;
use prep::{NodeAt, NodePrep};

/// Which micro-kernels run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// x86-64 AVX-512F for the GEMM micro-kernel of 16-channel blocks (one 512-bit vector,
    /// 12 pixels: twice the work per instruction), AVX2 + FMA for everything else.
    Avx512,
    /// x86-64 AVX2 + FMA intrinsics.
    Avx2,
    /// Plain Rust loops, for any target (and as a cross-check in tests).
    Portable,
}

impl Kernel {
    /// The fastest kernel this CPU runs, or the one `TUNABLE_FAST_KERNEL=avx512|avx2|portable`
    /// asks for when the CPU runs it (for side-by-side timing).
    pub fn detect() -> Kernel {
        let best = Self::supported(Kernel::Avx512);
        match std::env::var("TUNABLE_FAST_KERNEL").as_deref() {
            Ok("avx2") => Self::supported(Kernel::Avx2),
            Ok("portable") => Kernel::Portable,
            _ => best,
        }
    }

    /// `wanted`, or the best kernel below it that this CPU runs.
    pub fn supported(wanted: Kernel) -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma");
            let avx512 = avx2 && std::arch::is_x86_feature_detected!("avx512f");
            match wanted {
                Kernel::Avx512 if avx512 => return Kernel::Avx512,
                Kernel::Avx512 | Kernel::Avx2 if avx2 => return Kernel::Avx2,
                _ => {}
            }
        }
        let _ = wanted;
        Kernel::Portable
    }

    /// Whether the AVX2 + FMA code paths run (true for [`Kernel::Avx512`] too).
    pub(crate) fn avx2(self) -> bool {
        matches!(self, Kernel::Avx2 | Kernel::Avx512)
    }
}

/// How a [`FastPlan`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastOptions {
    pub kernel: Kernel,
    pub winograd: Winograd,
}

impl Default for FastOptions {
    fn default() -> Self {
        FastOptions {
            kernel: Kernel::detect(),
            winograd: Winograd::Auto,
        }
    }
}

/// The level-mixed weights of every node, for one level.
type LevelData = Arc<Vec<NodeAt>>;

/// A plan prepared for the fast CPU executor. `Send + Sync`: one `FastPlan` may serve many
/// threads; each run takes its scratch from a shared pool.
pub struct FastPlan {
    plan: Plan,
    /// The plan without its weights: shapes, liveness and memory of each run.
    graph: ShapeGraph,
    nodes: Vec<NodePrep>,
    /// Per tensor, the index of the last node that reads it (`None`: no node does).
    last_use: Vec<Option<usize>>,
    /// Per tensor, the zero border its readers need (the largest `k / 2`).
    border: Vec<usize>,
    /// The plan's ends that run fused with the layout change.
    ends: ends::Ends,
    kernel: Kernel,
    cache: Mutex<Option<(LevelVec, LevelData)>>,
    pool: Mutex<ScratchSets>,
}

/// Bytes of scratch sets a [`FastPlan`] keeps beyond its largest one when
/// `TUNABLE_CPU_POOL_MB` is not set.
pub const DEFAULT_POOL_BUDGET: usize = 256 << 20;

fn default_pool_budget() -> usize {
    std::env::var("TUNABLE_CPU_POOL_MB")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(DEFAULT_POOL_BUDGET, |mb| mb.saturating_mul(1 << 20))
}

/// The buffers kept between runs, as whole sets: each is what one run used. A run checks one
/// out and gives it back, so overlapping runs each work on their own set and the count of
/// sets is bounded by how many runs overlapped, and their bytes by the budget.
struct ScratchSets {
    sets: Vec<Vec<Buffer>>,
    budget: usize,
}

fn set_bytes(set: &[Buffer]) -> usize {
    set.iter().map(|v| v.len() * 4).sum()
}

impl ScratchSets {
    fn bytes(&self) -> usize {
        self.sets.iter().map(|s| set_bytes(s)).sum()
    }
    /// The largest set (the most reuse), or an empty one when every set is out.
    fn checkout(&mut self) -> Vec<Buffer> {
        let largest = (0..self.sets.len()).max_by_key(|&i| set_bytes(&self.sets[i]));
        largest.map_or_else(Vec::new, |i| self.sets.swap_remove(i))
    }
    /// Keeps `set`, then drops the smallest sets while over budget (never the last one, so a
    /// serial caller always reuses its buffers).
    fn give_back(&mut self, set: Vec<Buffer>) {
        self.sets.push(set);
        while self.sets.len() > 1 && self.bytes() > self.budget {
            let smallest = (0..self.sets.len())
                .min_by_key(|&i| set_bytes(&self.sets[i]))
                .expect("more than one set");
            self.sets.swap_remove(smallest);
        }
    }
}

/// CPU time of all the process's threads so far (Linux; 0 elsewhere), for profiling.
fn process_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FastPlan {
    /// Validates the plan's arrays and re-lays out every mixed array for the kernels.
    pub fn new(plan: &Plan) -> Result<FastPlan> {
        Self::with_kernel(plan, Kernel::detect())
    }

    /// As [`FastPlan::new`] with a chosen kernel; one this CPU does not run falls back to the
    /// best below it ([`Kernel::supported`]).
    pub fn with_kernel(plan: &Plan, kernel: Kernel) -> Result<FastPlan> {
        Self::with_options(
            plan,
            FastOptions {
                kernel,
                ..FastOptions::default()
            },
        )
    }

    /// As [`FastPlan::new`] with chosen options.
    pub fn with_options(plan: &Plan, options: FastOptions) -> Result<FastPlan> {
        let kernel = Kernel::supported(options.kernel);
        plan.validate()?;
        let graph = plan.shape_graph();
        // Per tensor, the zero border its readers need (the largest `k / 2`).
        let mut border = vec![0usize; plan.num_tensors];
        for node in &plan.nodes {
            let pad = match &node.op {
                Op::Conv2d(c) if c.noise_channel.is_none() => c.k / 2,
                Op::Depthwise(d) => d.k / 2,
                _ => 0,
            };
            border[node.input] = border[node.input].max(pad);
        }
        let nodes = plan
            .nodes
            .iter()
            .map(|node| NodePrep::new(node, options.winograd))
            .collect();
        let last_use = graph.last_use();
        Ok(FastPlan {
            plan: plan.clone(),
            nodes,
            ends: ends::Ends::detect(plan, &last_use),
            last_use,
            graph,
            border,
            kernel,
            cache: Mutex::new(None),
            pool: Mutex::new(ScratchSets {
                sets: Vec::new(),
                budget: default_pool_budget(),
            }),
        })
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Bytes of scratch buffers kept between runs: at most the pool budget, or one run's set
    /// where that is larger.
    pub fn retained_bytes(&self) -> usize {
        lock(&self.pool).bytes()
    }

    /// How many scratch bytes are kept between runs beyond the largest set (the set of one run
    /// is always kept). Lowering it drops sets at the next run's end.
    pub fn set_pool_budget(&self, bytes: usize) {
        lock(&self.pool).budget = bytes;
    }

    pub fn pool_budget(&self) -> usize {
        lock(&self.pool).budget
    }

    /// Frees the scratch buffers kept between runs and the cached level.
    pub fn release_memory(&self) {
        lock(&self.pool).sets.clear();
        *lock(&self.cache) = None;
    }

    /// The mixed weights at `level`, from the one-level cache or freshly mixed.
    /// Mixing is memory-bound (base and deltas in, weights out: about 17 MB for the bench
    /// network with its Winograd filters); it runs on every rayon thread and reuses the
    /// previous level's buffers when no run still holds them.
    fn level_data(&self, level: &LevelVec) -> LevelData {
        let mut cache = lock(&self.cache);
        if let Some((l, d)) = &*cache {
            if l == level {
                return d.clone();
            }
        }
        let d = match cache.take().map(|(_, d)| Arc::try_unwrap(d)) {
            Some(Ok(mut d)) => {
                self.nodes
                    .par_iter()
                    .zip(d.par_iter_mut())
                    .for_each(|(n, at)| n.refill(level, at));
                Arc::new(d)
            }
            _ => Arc::new(self.nodes.par_iter().map(|n| n.at(level)).collect()),
        };
        *cache = Some((*level, d.clone()));
        d
    }

    /// Runs the plan on a CHW `input` at `level`.
    pub fn run(&self, input: &Tensor, level: &LevelVec) -> Result<Tensor> {
        let s = input.shape;
        if s.c != self.plan.in_channels {
            return Err(Error::Shape(format!(
                "plan expects {} input channels, got {}",
                self.plan.in_channels, s.c
            )));
        }
        if s.h == 0 || s.w == 0 {
            return Err(Error::Shape(format!("empty input {}x{}", s.w, s.h)));
        }
        if input.data.len() != s.len() {
            return Err(Error::Shape(format!(
                "input holds {} values for shape {}x{}x{}",
                input.data.len(),
                s.c,
                s.h,
                s.w
            )));
        }
        let shapes = self.graph.shapes(&[(0, s)])?;
        self.graph.run_memory(&shapes).check(s)?;
        let at = self.level_data(level);
        let checked_out = lock(&self.pool).checkout();
        let mut pool = Pool::new(checked_out);
        let out = self.execute(input, &shapes, &at, &mut pool);
        lock(&self.pool).give_back(pool.into_buffers());
        Ok(out)
    }

    fn execute(
        &self,
        input: &Tensor,
        shapes: &[crate::plan::Shape],
        at: &[NodeAt],
        pool: &mut Pool,
    ) -> Tensor {
        let plan = &self.plan;
        // TUNABLE_FAST_PROFILE=1: wall and process CPU time of every node on stderr.
        let profile = std::env::var_os("TUNABLE_FAST_PROFILE").is_some();
        // The clock is read only when profiling (wasm32 has no clock: Instant::now panics).
        let (mut clock, mut cpu) = (
            profile.then(std::time::Instant::now),
            if profile { process_cpu_ns() } else { 0 },
        );
        let mut lap = |what: &str| {
            if let Some(started) = clock {
                let now = process_cpu_ns();
                let wall = started.elapsed().as_secs_f64() * 1e3;
                eprintln!(
                    "fast: {what:>24}: {wall:8.3} ms wall, {:8.3} ms cpu",
                    (now - cpu) as f64 * 1e-6
                );
                (clock, cpu) = (Some(std::time::Instant::now()), now);
            }
        };
        let mut acts: Vec<Option<Act>> = (0..plan.num_tensors).map(|_| None).collect();
        let ends = self.ends;
        if ends.input_act {
            acts[0] = Some(act::from_tensor(input, self.border[0], pool));
            lap("input");
        }
        if ends.head {
            let t = plan.nodes[0].output;
            acts[t] = Some(ends::unshuffle_from_tensor(input, self.border[t], pool));
            lap("input + unshuffle");
        }
        let kernel = self.kernel;
        let n = plan.nodes.len();
        for (i, (node, (prep, at))) in plan.nodes.iter().zip(self.nodes.iter().zip(at)).enumerate()
        {
            if (ends.head && i == 0) || (ends.tail && i + 2 >= n) {
                continue;
            }
            let s = shapes[node.output];
            let mut out = pool.take(s.c, s.h, s.w, self.border[node.output]);
            {
                let x = acts[node.input].as_ref().expect("checked by Plan::shapes");
                let others: Vec<&Act> = node
                    .others
                    .iter()
                    .map(|&o| acts[o].as_ref().expect("checked by Plan::shapes"))
                    .collect();
                match (prep, at) {
                    (NodePrep::Conv(p, _), NodeAt::Conv(a)) => {
                        let run = |x: &Act, out: &mut Act| {
                            if let Some(tiling) = p.winograd {
                                winograd::conv(tiling, p, a, x, out, &others, kernel)
                            } else {
                                conv::conv(p, a, x, out, &others, kernel)
                            }
                        };
                        match a.noise {
                            Some(v) => {
                                let xn = act::with_noise_channel(x, v, p.k / 2, pool);
                                run(&xn, &mut out);
                                pool.give(xn);
                            }
                            None => run(x, &mut out),
                        }
                    }
                    (NodePrep::Depthwise(p, _), NodeAt::Depthwise(a)) => {
                        simple::depthwise(p, a, x, &mut out, &others, kernel)
                    }
                    (NodePrep::Eltwise(_, _), NodeAt::Eltwise(a)) => {
                        simple::eltwise(a, x, others.first().copied(), &mut out, kernel)
                    }
                    (NodePrep::Unshuffle, _) => simple::unshuffle(x, &mut out),
                    (NodePrep::Shuffle, _) => simple::shuffle(x, &mut out),
                    _ => unreachable!("level data built from the same nodes"),
                }
            }
            acts[node.output] = Some(out);
            lap(&node.name);
            // Release every tensor whose last reader this was (and a result nobody reads).
            for t in self.graph.done_after(i, &self.last_use) {
                if t != plan.output {
                    if let Some(a) = acts[t].take() {
                        pool.give(a);
                    }
                }
            }
        }
        let y = if ends.tail {
            let (shuffle, eltwise) = (&plan.nodes[n - 2], &plan.nodes[n - 1]);
            let NodeAt::Eltwise(e) = &at[n - 1] else {
                unreachable!("Ends::detect checked the node")
            };
            let a = acts[shuffle.input].take().expect("checked by Plan::shapes");
            let b = (!eltwise.others.is_empty()).then_some(input);
            let y = ends::shuffle_eltwise_to_tensor(&a, e, b);
            pool.give(a);
            lap("shuffle + eltwise + output");
            y
        } else {
            let out = acts[plan.output].take().expect("checked by Plan::shapes");
            let y = act::to_tensor(&out);
            lap("output");
            pool.give(out);
            y
        };
        for a in acts.into_iter().flatten() {
            pool.give(a);
        }
        y
    }
}
