//! The plan seen without its weights: what shape inference, buffer liveness and the memory
//! estimate need. Both executors and the engine ask these questions of [`ShapeGraph`] instead
//! of answering them again.

use super::{Op, Plan, Shape, TensorId};
use crate::error::{Error, Result};

/// An op reduced to what decides its output shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpShape {
    /// `tensor_cin`: channels read from the input tensor (without a virtual noise channel).
    Conv {
        tensor_cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
    },
    Depthwise {
        channels: usize,
    },
    Eltwise {
        channels: usize,
    },
    Unshuffle,
    Shuffle,
}

impl Op {
    /// This op without its arrays.
    pub fn shape(&self) -> OpShape {
        match self {
            Op::Conv2d(c) => OpShape::Conv {
                tensor_cin: c.tensor_cin(),
                cout: c.cout,
                k: c.k,
                stride: c.stride,
            },
            Op::Depthwise(d) => OpShape::Depthwise {
                channels: d.channels,
            },
            Op::Eltwise(e) => OpShape::Eltwise {
                channels: e.channels,
            },
            Op::Unshuffle => OpShape::Unshuffle,
            Op::Shuffle => OpShape::Shuffle,
        }
    }

    /// The output shape for an input of shape `s`, or an error naming what does not fit.
    pub fn out_shape(&self, s: Shape) -> Result<Shape> {
        self.shape().out_shape(s)
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

impl OpShape {
    /// The output shape for an input of shape `s`, or an error naming what does not fit.
    pub fn out_shape(&self, s: Shape) -> Result<Shape> {
        check_dims(s)?;
        match *self {
            OpShape::Conv {
                tensor_cin,
                cout,
                k,
                stride,
            } => {
                if s.c != tensor_cin {
                    return Err(Error::Shape(format!(
                        "conv expects {tensor_cin} input channels, got {}",
                        s.c
                    )));
                }
                Ok(Shape::new(
                    cout,
                    conv_out_dim(s.h, k, stride),
                    conv_out_dim(s.w, k, stride),
                ))
            }
            OpShape::Depthwise { channels } => {
                if s.c != channels {
                    return Err(Error::Shape(format!(
                        "depthwise expects {channels} channels, got {}",
                        s.c
                    )));
                }
                Ok(s)
            }
            OpShape::Eltwise { channels } => {
                if s.c != channels {
                    return Err(Error::Shape(format!(
                        "eltwise expects {channels} channels, got {}",
                        s.c
                    )));
                }
                Ok(s)
            }
            OpShape::Unshuffle => {
                if !s.h.is_multiple_of(2) || !s.w.is_multiple_of(2) {
                    return Err(Error::Shape(format!(
                        "pixel unshuffle needs even sizes, got {}x{}",
                        s.w, s.h
                    )));
                }
                Ok(Shape::new(s.c * 4, s.h / 2, s.w / 2))
            }
            OpShape::Shuffle => {
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

/// One node of a [`ShapeGraph`].
#[derive(Clone, Debug, PartialEq)]
pub struct ShapeNode {
    pub name: String,
    pub op: OpShape,
    pub input: TensorId,
    pub others: Vec<TensorId>,
    pub output: TensorId,
}

impl ShapeNode {
    /// Every tensor the node reads: its input, then its others.
    pub fn reads(&self) -> impl Iterator<Item = TensorId> + '_ {
        std::iter::once(self.input).chain(self.others.iter().copied())
    }
}

/// A plan's graph with every op reduced to its [`OpShape`] ([`Plan::shape_graph`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ShapeGraph {
    pub num_tensors: usize,
    pub nodes: Vec<ShapeNode>,
    pub output: TensorId,
}

impl Plan {
    /// The plan without its weights (shape inference, liveness, memory).
    pub fn shape_graph(&self) -> ShapeGraph {
        ShapeGraph {
            num_tensors: self.num_tensors,
            nodes: self
                .nodes
                .iter()
                .map(|n| ShapeNode {
                    name: n.name.clone(),
                    op: n.op.shape(),
                    input: n.input,
                    others: n.others.clone(),
                    output: n.output,
                })
                .collect(),
            output: self.output,
        }
    }

    /// Shapes of every tensor for an input of `h x w` ([`ShapeGraph::shapes`]).
    pub fn shapes(&self, h: usize, w: usize) -> Result<Vec<Shape>> {
        self.shape_graph()
            .shapes(&[(0, Shape::new(self.in_channels, h, w))])
    }

    /// Per tensor, the index of the last node that reads it ([`ShapeGraph::last_use`]).
    pub fn last_use(&self) -> Vec<Option<usize>> {
        self.shape_graph().last_use()
    }

    /// The activation memory of one run on an `h x w` input (shapes checked).
    pub fn run_memory(&self, h: usize, w: usize) -> Result<RunMemory> {
        let graph = self.shape_graph();
        let shapes = graph.shapes(&[(0, Shape::new(self.in_channels, h, w))])?;
        Ok(graph.run_memory(&shapes))
    }
}

impl ShapeGraph {
    /// Shapes of every tensor, given the shapes of the tensors provided from outside: checks
    /// that each node's others match its output (an eltwise's, its input), that no tensor is
    /// read before it is written or written twice, and that every tensor gets written.
    pub fn shapes(&self, given: &[(TensorId, Shape)]) -> Result<Vec<Shape>> {
        let mut shapes: Vec<Option<Shape>> = vec![None; self.num_tensors];
        for &(t, s) in given {
            shapes[t] = Some(s);
        }
        for n in &self.nodes {
            let name = n.name.as_str();
            let get = |t: TensorId| -> Result<Shape> {
                shapes.get(t).copied().flatten().ok_or_else(|| {
                    Error::Graph(format!(
                        "node '{name}' reads tensor {t} before it is written"
                    ))
                })
            };
            let s = get(n.input)?;
            let out =
                n.op.out_shape(s)
                    .and_then(check_dims)
                    .map_err(|e| e.in_node(name))?;
            for &o in &n.others {
                let so = get(o)?;
                let want = if matches!(n.op, OpShape::Eltwise { .. }) {
                    s
                } else {
                    out
                };
                if so != want {
                    return Err(Error::Shape(format!(
                        "node '{name}': other tensor is {}x{}x{}, expected {}x{}x{}",
                        so.c, so.h, so.w, want.c, want.h, want.w
                    )));
                }
            }
            if n.output >= self.num_tensors || shapes[n.output].is_some() {
                return Err(Error::Graph(format!(
                    "node '{name}' writes tensor {} twice or out of range",
                    n.output
                )));
            }
            shapes[n.output] = Some(out);
        }
        shapes
            .into_iter()
            .enumerate()
            .map(|(i, s)| s.ok_or_else(|| Error::Graph(format!("tensor {i} is never written"))))
            .collect()
    }

    /// Per tensor, the index of the last node that reads it (`None`: no node does). A
    /// tensor's buffer can be reused once that node has run.
    pub fn last_use(&self) -> Vec<Option<usize>> {
        let mut last = vec![None; self.num_tensors];
        for (i, n) in self.nodes.iter().enumerate() {
            for t in n.reads() {
                last[t] = Some(i);
            }
        }
        last
    }

    /// Tensors whose buffers are free after node `i` has run, given [`ShapeGraph::last_use`]:
    /// those it read last, and its own output when nobody reads it. Sorted, without repeats;
    /// the caller keeps the tensors it holds throughout (inputs, the output).
    pub fn done_after(&self, i: usize, last_use: &[Option<usize>]) -> Vec<TensorId> {
        let n = &self.nodes[i];
        let mut done: Vec<TensorId> = n
            .reads()
            .chain(std::iter::once(n.output))
            .filter(|&t| last_use[t].is_none_or(|l| l == i))
            .collect();
        done.sort_unstable();
        done.dedup();
        done
    }

    /// Peak activation bytes when the nodes run in order, every tensor is dropped after its
    /// last reader, and the tensors no node writes (the inputs) and the output are held
    /// throughout.
    pub fn run_memory(&self, shapes: &[Shape]) -> RunMemory {
        let last_use = self.last_use();
        let mut written = vec![false; self.num_tensors];
        for n in &self.nodes {
            written[n.output] = true;
        }
        let held = |t: TensorId| t == self.output || !written[t];
        let mut live: u64 = (0..shapes.len())
            .filter(|&t| !written[t])
            .map(|t| shapes[t].bytes())
            .sum();
        let mut peak = live;
        for (i, n) in self.nodes.iter().enumerate() {
            live = live.saturating_add(shapes[n.output].bytes());
            peak = peak.max(live);
            for t in self.done_after(i, &last_use) {
                if !held(t) {
                    live = live.saturating_sub(shapes[t].bytes());
                }
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
}

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
