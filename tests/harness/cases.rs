//! The one random-case generator and the one tolerance of the executor tests (GPU kernels,
//! fast CPU, the backend table in `tests/executors.rs`), all against `cpu::reference`.
//!
//! - Pieces: [`rand_tensor`], [`rand_level`], [`rand_mix`], [`mixed`] arrays, [`rand_epilogue`]
//!   (every [`EpFlags`] kind), [`rand_conv`] / [`rand_depthwise`] / [`rand_eltwise`].
//! - Cases: a [`Case`] is a small plan, its input, a level and the reduction length its
//!   tolerance scales with. [`op_plan`] wraps one op so that every executor runs it (the fast
//!   CPU executor takes one input tensor, so an epilogue's combine tensors are made inside the
//!   plan, by 1x1 convs of the input); [`conv_case`], [`depthwise_case`], [`eltwise_case`],
//!   [`shuffle_eltwise_case`] and [`branchy_plan`] build the usual ones.
//! - Tolerance: [`Worst`], which checks every element and reports the largest difference.
//!
//! Every value comes from a seeded [`StdRng`], so a failing case is reproducible by its seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tunable::plan::{
    Activation, Affine, Combine, Conv2d, Depthwise, Eltwise, Epilogue, LevelVec, Mix, Node, Op,
    Plan, MAX_AXES,
};
use tunable::tensor::{Shape, Tensor};
pub use tunable::testing::gpu::kernels::EpFlags;

use super::plan::node;

// ---------------------------------------------------------------------------------------------
// Random pieces

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// `n` values uniform in `[-scale, scale)`.
pub fn rand_vec(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-1.0..1.0) * scale).collect()
}

/// A tensor of values uniform in `[-1, 1)`.
pub fn rand_tensor(rng: &mut StdRng, shape: Shape) -> Tensor {
    Tensor::from_vec(shape, rand_vec(rng, shape.len(), 1.0))
}

/// A level vector, each axis uniform in `[0, 1)`.
pub fn rand_level(rng: &mut StdRng) -> LevelVec {
    let mut l = [0.0; MAX_AXES];
    for v in &mut l {
        *v = rng.gen_range(0.0..1.0);
    }
    l
}

pub fn rand_affine(rng: &mut StdRng) -> Affine {
    let mut a = Affine {
        offset: rng.gen_range(-0.5..0.5),
        gain: [0.0; MAX_AXES],
    };
    for g in &mut a.gain {
        *g = rng.gen_range(-1.0..1.0);
    }
    a
}

pub fn rand_mix(rng: &mut StdRng, p: usize) -> Mix {
    Mix {
        coefs: (0..p).map(|_| rand_affine(rng)).collect(),
    }
}

/// A mixed array of `(p + 1) * n` values: the base at `base +- scale`, deltas at `+- scale / 2`.
pub fn mixed(rng: &mut StdRng, n: usize, p: usize, base: f32, scale: f32) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n)
        .map(|_| base + rng.gen_range(-1.0..1.0) * scale)
        .collect();
    v.extend(rand_vec(rng, n * p, scale * 0.5));
    v
}

/// `EpFlags::act` values.
pub const NONE: u8 = 0;
pub const RELU: u8 = 1;
pub const PRELU: u8 = 2;

/// Bias only: the epilogue of the helper convs that make combine tensors.
pub const PLAIN: EpFlags = ep(false, NONE, None);

/// An epilogue kind: scale/shift or not, an activation (`NONE`, `RELU`, `PRELU`), and no
/// combine (`None`) or a combine reading `Some(0..=2)` other tensors.
pub const fn ep(scale_shift: bool, act: u8, combine: Option<u8>) -> EpFlags {
    EpFlags {
        scale_shift,
        act,
        combine: combine.is_some(),
        others: match combine {
            Some(n) => n,
            None => 0,
        },
    }
}

fn rand_activation(rng: &mut StdRng, act: u8, c: usize) -> Activation {
    match act {
        NONE => Activation::None,
        RELU => Activation::Relu,
        // Slopes of both signs: a negative slope is legal and catches a max() shortcut.
        _ => Activation::Prelu(rand_vec(rng, c, 0.3)),
    }
}

/// A random epilogue of kind `f` on `c` channels with `p` deltas per array.
pub fn rand_epilogue(rng: &mut StdRng, f: EpFlags, c: usize, p: usize) -> Epilogue {
    Epilogue {
        bias: mixed(rng, c, p, 0.0, 0.1),
        scale_shift: f
            .scale_shift
            .then(|| (mixed(rng, c, p, 1.0, 0.3), mixed(rng, c, p, 0.0, 0.1))),
        act: rand_activation(rng, f.act, c),
        combine: f.combine.then(|| Combine {
            u: mixed(rng, c, p, 1.0, 0.3),
            v: (0..f.others).map(|_| mixed(rng, c, p, 0.0, 0.7)).collect(),
        }),
    }
}

pub struct ConvSpec {
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub p: usize,
    pub ep: EpFlags,
    pub noise: bool,
    pub unfused: bool,
}

impl ConvSpec {
    /// No noise channel, fused mix; set those with `..ConvSpec::new(..)`.
    pub fn new(cin: usize, cout: usize, k: usize, stride: usize, p: usize, ep: EpFlags) -> Self {
        ConvSpec {
            cin,
            cout,
            k,
            stride,
            p,
            ep,
            noise: false,
            unfused: false,
        }
    }
}

/// A random conv; `cin` counts the tensor's channels (the noise channel comes on top).
/// Weights at `+- 1 / sqrt(fan-in)` keep activations near 1 through a chain.
pub fn rand_conv(rng: &mut StdRng, s: &ConvSpec) -> Conv2d {
    let cin = s.cin + s.noise as usize;
    let fan = (cin * s.k * s.k) as f32;
    let n = s.cout * cin * s.k * s.k;
    Conv2d {
        cin,
        cout: s.cout,
        k: s.k,
        stride: s.stride,
        mix: rand_mix(rng, s.p),
        weight: mixed(rng, n, s.p, 0.0, 1.0 / fan.sqrt()),
        epilogue: rand_epilogue(rng, s.ep, s.cout, s.p),
        noise_channel: s.noise.then(|| rand_affine(rng)),
        unfused_mix: s.unfused,
    }
}

pub fn rand_depthwise(rng: &mut StdRng, c: usize, k: usize, p: usize, ep: EpFlags) -> Depthwise {
    Depthwise {
        channels: c,
        k,
        mix: rand_mix(rng, p),
        weight: mixed(rng, c * k * k, p, 0.0, 1.0 / k as f32),
        epilogue: rand_epilogue(rng, ep, c, p),
    }
}

pub fn rand_eltwise(rng: &mut StdRng, c: usize, p: usize, has_b: bool, act: u8) -> Eltwise {
    Eltwise {
        channels: c,
        mix: rand_mix(rng, p),
        u: mixed(rng, c, p, 1.0, 0.5),
        v: has_b.then(|| mixed(rng, c, p, 0.0, 1.0)),
        act: rand_activation(rng, act, c),
    }
}

// ---------------------------------------------------------------------------------------------
// Cases: small plans every executor runs

/// One case of an executor test: run `plan` on `input` at `level` on a backend and on the
/// reference, and compare within the tolerance for reduction length `reduction`.
pub struct Case {
    pub name: String,
    pub plan: Plan,
    pub input: Tensor,
    pub level: LevelVec,
    pub reduction: usize,
}

/// `n` nodes that make the combine tensors 1..=n: bias-only 1x1 stride-`stride` convs of tensor
/// 0, which have exactly the shape of a k x k stride-`stride` op's output (so the plan also
/// checks k = 1).
pub fn combine_sources(
    rng: &mut StdRng,
    cin: usize,
    cout: usize,
    stride: usize,
    n: usize,
) -> Vec<Node> {
    (0..n)
        .map(|i| {
            let op = Op::Conv2d(rand_conv(
                rng,
                &ConvSpec::new(cin, cout, 1, stride, 0, PLAIN),
            ));
            node(&format!("other{i}"), op, 0, vec![], i + 1)
        })
        .collect()
}

/// The plan of `op` (named `name`) reading tensor 0 of `cin` channels and `others` combine
/// tensors of `cout` channels made by [`combine_sources`] with the op's `stride`. The sources
/// are drawn from `rng` before the op is (`op` is a closure for that reason).
pub fn op_plan(
    rng: &mut StdRng,
    name: &str,
    (cin, cout, stride): (usize, usize, usize),
    others: usize,
    op: impl FnOnce(&mut StdRng) -> Op,
) -> Plan {
    let mut nodes = combine_sources(rng, cin, cout, stride, others);
    let out = others + 1;
    nodes.push(node(name, op(rng), 0, (1..out).collect(), out));
    Plan {
        in_channels: cin,
        num_tensors: out + 1,
        nodes,
        output: out,
    }
}

/// A conv of spec `s` on a random `h` x `w` input (its combine tensors from `op_plan`).
pub fn conv_case(rng: &mut StdRng, s: &ConvSpec, h: usize, w: usize) -> Case {
    let dims = (s.cin, s.cout, s.stride);
    let plan = op_plan(rng, "conv", dims, s.ep.others as usize, |r| {
        Op::Conv2d(rand_conv(r, s))
    });
    Case {
        name: format!(
            "conv cin {} cout {} k {} s {} P {} {:?} noise {} on {h}x{w}",
            s.cin, s.cout, s.k, s.stride, s.p, s.ep, s.noise
        ),
        input: rand_tensor(rng, Shape::new(s.cin, h, w)),
        level: rand_level(rng),
        reduction: (s.cin + s.noise as usize) * s.k * s.k,
        plan,
    }
}

/// A k x k depthwise conv with `p` deltas and epilogue `ep` on a random input of `shape`.
pub fn depthwise_case(rng: &mut StdRng, k: usize, p: usize, ep: EpFlags, shape: Shape) -> Case {
    let Shape { c, h, w } = shape;
    let plan = op_plan(rng, "dw", (c, c, 1), ep.others as usize, |r| {
        Op::Depthwise(rand_depthwise(r, c, k, p, ep))
    });
    Case {
        name: format!("depthwise k {k} c {c} {h}x{w} P {p} {ep:?}"),
        input: rand_tensor(rng, shape),
        level: rand_level(rng),
        // The combine sources reduce over c.
        reduction: (k * k).max(c),
        plan,
    }
}

/// An eltwise `act(u * a + v * b)` with `p` deltas on a random input of `shape`; `b` (when
/// `has_b`) from a 1x1 conv of the input.
pub fn eltwise_case(rng: &mut StdRng, p: usize, has_b: bool, act: u8, shape: Shape) -> Case {
    let Shape { c, h, w } = shape;
    let plan = op_plan(rng, "elt", (c, c, 1), has_b as usize, |r| {
        Op::Eltwise(rand_eltwise(r, c, p, has_b, act))
    });
    Case {
        name: format!("eltwise c {c} {h}x{w} P {p} b {has_b} act {act}"),
        input: rand_tensor(rng, shape),
        level: rand_level(rng),
        reduction: c.max(2),
        plan,
    }
}

/// x -> unshuffle (t1) -> bias-only 1x1 conv (t2) -> eltwise(t1, b = t2 when `has_b`) (t3)
/// -> shuffle (t4), on a random input of `shape` (even h and w).
pub fn shuffle_eltwise_case(
    rng: &mut StdRng,
    p: usize,
    has_b: bool,
    act: u8,
    shape: Shape,
) -> Case {
    let Shape { c, h, w } = shape;
    let e = rand_eltwise(rng, 4 * c, p, has_b, act);
    let conv = rand_conv(rng, &ConvSpec::new(4 * c, 4 * c, 1, 1, 0, PLAIN));
    let b: Vec<usize> = if has_b { vec![2] } else { vec![] };
    let plan = Plan {
        in_channels: c,
        num_tensors: 5,
        nodes: vec![
            node("unshuffle", Op::Unshuffle, 0, vec![], 1),
            node("c", Op::Conv2d(conv), 1, vec![], 2),
            node("e", Op::Eltwise(e), 1, b, 3),
            node("shuffle", Op::Shuffle, 3, vec![], 4),
        ],
        output: 4,
    };
    Case {
        name: format!("unshuffle-eltwise-shuffle c {c} {h}x{w} P {p} b {has_b} act {act}"),
        input: rand_tensor(rng, shape),
        level: rand_level(rng),
        reduction: 4 * c,
        plan,
    }
}

/// Channels of [`branchy_plan`]'s input and the largest reduction of a node (17 x 7 x 7).
pub const BRANCHY_IN: usize = 3;
pub const BRANCHY_REDUCTION: usize = 17 * 49;

/// A 3-channel plan whose tensors have long and overlapping lifetimes: an early tensor read by
/// the last node, the plan output read by a later node, a dead result, two combine tensors, a
/// depthwise conv, the noise channel, every kernel size but 1 and 5 on stride 1 and 2.
pub fn branchy_plan(rng: &mut StdRng) -> Plan {
    let e0 = ep(false, RELU, None);
    let e1 = ep(false, NONE, Some(1));
    let e2 = ep(true, PRELU, Some(2));
    let conv = |r: &mut StdRng, s: ConvSpec| Op::Conv2d(rand_conv(r, &s));
    let a = conv(
        rng,
        ConvSpec {
            noise: true,
            ..ConvSpec::new(3, 17, 3, 1, 1, e0)
        },
    );
    let dead = conv(rng, ConvSpec::new(17, 5, 1, 2, 0, e0));
    let b = conv(rng, ConvSpec::new(17, 17, 5, 1, 3, e0));
    let c = conv(rng, ConvSpec::new(17, 17, 7, 1, 4, e2));
    let dw = Op::Depthwise(rand_depthwise(rng, 17, 5, 2, e1));
    let d = conv(rng, ConvSpec::new(17, 17, 3, 2, 2, e0));
    let e = conv(rng, ConvSpec::new(17, 17, 3, 1, 1, e1));
    Plan {
        in_channels: BRANCHY_IN,
        num_tensors: 8,
        nodes: vec![
            node("a", a, 0, vec![], 1),
            node("dead", dead, 1, vec![], 2),
            node("b", b, 1, vec![], 3),
            node("c", c, 3, vec![1, 3], 4),
            node("dw", dw, 4, vec![1], 5),
            node("d", d, 5, vec![], 6),
            node("e", e, 5, vec![5], 7),
        ],
        output: 5,
    }
}

// ---------------------------------------------------------------------------------------------
// The tolerance

/// Checks results against the reference and keeps the largest differences seen; `print` says
/// them at the end of a test (`--nocapture`).
///
/// The one tolerance of every executor test: `|got - ref| <= atol + 1e-5 |ref|` with
/// `atol = 2e-6 * sqrt(K) * max(1, max |ref|)`, `K` the reduction length (`cin * k * k` for a
/// conv). Both sides sum the same K products in different orders (blocking, FMA, Winograd
/// transforms, GPU tiles); for random-sign terms the f32 rounding error grows like
/// `sqrt(K) * eps * magnitude`, and the magnitude of the terms is set by the tensor's scale
/// (`max |ref|`), not by the element's own value (a result near 0 is a cancellation of terms
/// of full size). `2e-6` is ~17 f32 ulps of 1 per sqrt(K). Worst seen: direct sums (fast
/// CPU) ~14% of it, Winograd F(4x4, 3x3) ~41% (on few input channels: its transforms' rounding
/// does not shrink with K), lavapipe bitwise equal to the reference.
///
/// Of the two rules the tests had, this one (the GPU tests') is the stricter: the fast CPU
/// tests' `1e-5 * sqrt(K) * (1 + |ref|)` is never below it on a tensor of unit scale and up
/// to 5x above it near zero, so a slip of a few ulps x sqrt(K) went unseen there (with
/// 2e-7 instead of 2e-6 the Winograd and 64-channel cases fail: the rule has ~2.4x headroom).
pub struct Worst {
    name: String,
    max_abs: f32,
    max_rel_tol: f32,
    cases: usize,
}

impl Worst {
    pub fn new(name: &str) -> Self {
        Worst {
            name: name.into(),
            max_abs: 0.0,
            max_rel_tol: 0.0,
            cases: 0,
        }
    }

    /// Checks `got` against `reference` (see [`Worst`]); panics at the first element out of
    /// tolerance (or NaN), naming the case, the element and both values.
    pub fn check(&mut self, case: &str, got: &Tensor, reference: &Tensor, reduction: usize) {
        self.check_scaled(case, got, reference, reduction, 1.0);
    }

    /// `check` with the absolute tolerance times `factor`: for algorithms with a larger
    /// rounding error than the direct sum (Winograd's transforms).
    pub fn check_scaled(
        &mut self,
        case: &str,
        got: &Tensor,
        reference: &Tensor,
        reduction: usize,
        factor: f32,
    ) {
        assert_eq!(got.shape, reference.shape, "{}: {case}: shape", self.name);
        let scale = reference.data.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let atol = factor * 2e-6 * (reduction.max(1) as f32).sqrt() * scale;
        let Shape { h, w, .. } = reference.shape;
        let mut worst = 0.0f32;
        for (i, (g, r)) in got.data.iter().zip(&reference.data).enumerate() {
            let d = (g - r).abs();
            let tol = atol + 1e-5 * r.abs();
            if d > tol || d.is_nan() {
                panic!(
                    "{}: {case}: element {i} (c {} y {} x {}) of {:?}: got {g} vs reference {r} \
                     (diff {d:e}, tolerance {tol:e})",
                    self.name,
                    i / (h * w),
                    i / w % h,
                    i % w,
                    got.shape
                );
            }
            worst = worst.max(d);
            self.max_rel_tol = self.max_rel_tol.max(d / tol);
        }
        self.max_abs = self.max_abs.max(worst);
        self.cases += 1;
    }

    /// The largest absolute difference seen so far.
    pub fn max_abs(&self) -> f32 {
        self.max_abs
    }

    pub fn print(&self) {
        println!(
            "[vs reference] {:<40} cases {:>4}  max |got - ref| = {:.3e}  (worst = {:.1}% of tolerance)",
            self.name,
            self.cases,
            self.max_abs,
            100.0 * self.max_rel_tol
        );
    }
}
