//! The fast CPU executor (`cpu::fast::FastPlan`) against the reference (`cpu::reference`), on
//! seeded random shapes: 1x1 images, images smaller than the kernel, odd sizes, channel
//! counts 1, 3, 5, 17, 64, stride 2, P = 0..4 deltas, every epilogue combination, the noise
//! channel, and whole plans (tensor lifetimes, level cache). Both the AVX2 and the portable
//! micro-kernels are checked.
//!
//! Tolerance: `|fast - ref| <= 1e-5 * sqrt(K) * (1 + |ref|)` with `K` the reduction length
//! (`cin * k * k` for a conv): both sides sum the same products in a different order.
//!
//! Golden PyTorch vectors: see `golden_pytorch_vectors` at the end (a hook that runs every
//! `tests/data/golden/fast_cpu/*.safetensors` it finds).

mod harness;

use harness::plan::node;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tunable::plan::{
    conv_out_dim, Activation, Affine, Combine, Conv2d, Depthwise, Eltwise, Epilogue, LevelVec, Mix,
    Node, Op, Plan, MAX_AXES,
};
use tunable::tensor::{Shape, Tensor};
use tunable::testing::cpu::fast::{bench_net, FastOptions, FastPlan, Kernel, Winograd};
use tunable::testing::cpu::reference;
use tunable::Error;

// ---------------------------------------------------------------------------------------------
// Random plan pieces

fn uni(rng: &mut StdRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(lo..hi)).collect()
}

fn random_mix(rng: &mut StdRng, p: usize) -> Mix {
    let coefs = (0..p)
        .map(|_| {
            let mut gain = [0.0; MAX_AXES];
            for g in gain.iter_mut() {
                *g = rng.gen_range(-1.0..1.0);
            }
            Affine {
                offset: rng.gen_range(-0.5..0.5),
                gain,
            }
        })
        .collect();
    Mix { coefs }
}

fn random_level(rng: &mut StdRng) -> LevelVec {
    let mut l = [0.0; MAX_AXES];
    for v in l.iter_mut() {
        *v = rng.gen_range(0.0..1.0);
    }
    l
}

/// A mixed per-channel array: base in `[lo, hi)`, deltas a tenth of that spread.
fn mixed(rng: &mut StdRng, p: usize, c: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut v = uni(rng, c, lo, hi);
    let d = 0.1 * (hi - lo);
    v.extend(uni(rng, p * c, -d, d));
    v
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum ActSel {
    None,
    Relu,
    Prelu,
}

#[derive(Clone, Copy, Debug)]
struct EpSel {
    scale_shift: bool,
    act: ActSel,
    /// Number of combine tensors, 0..=2.
    combine: usize,
}

const fn ep_sel(scale_shift: bool, act: ActSel, combine: usize) -> EpSel {
    EpSel {
        scale_shift,
        act,
        combine,
    }
}

/// Bias only: the epilogue of the helper convs that make combine tensors.
const PLAIN: EpSel = ep_sel(false, ActSel::None, 0);

/// A random activation for `c` channels (PReLU slopes in `[0, 0.5)`).
fn activation(rng: &mut StdRng, act: ActSel, c: usize) -> Activation {
    match act {
        ActSel::None => Activation::None,
        ActSel::Relu => Activation::Relu,
        ActSel::Prelu => Activation::Prelu(uni(rng, c, 0.0, 0.5)),
    }
}

fn epilogue(rng: &mut StdRng, sel: EpSel, p: usize, c: usize) -> Epilogue {
    Epilogue {
        bias: mixed(rng, p, c, -0.5, 0.5),
        scale_shift: sel
            .scale_shift
            .then(|| (mixed(rng, p, c, 0.5, 1.5), mixed(rng, p, c, -0.5, 0.5))),
        act: activation(rng, sel.act, c),
        combine: (sel.combine > 0).then(|| Combine {
            u: mixed(rng, p, c, -1.0, 1.0),
            v: (0..sel.combine)
                .map(|_| mixed(rng, p, c, -1.0, 1.0))
                .collect(),
        }),
    }
}

fn all_epilogues() -> Vec<EpSel> {
    let mut v = Vec::new();
    for scale_shift in [false, true] {
        for act in [ActSel::None, ActSel::Relu, ActSel::Prelu] {
            for combine in 0..=2 {
                v.push(ep_sel(scale_shift, act, combine));
            }
        }
    }
    v
}

#[derive(Clone, Copy, Debug)]
struct ConvCase {
    h: usize,
    w: usize,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    p: usize,
    ep: EpSel,
    noise: bool,
}

impl ConvCase {
    /// A stride-1 conv without deltas, bias-only epilogue and no noise channel; tests override
    /// the rest with `..ConvCase::new(..)`.
    const fn new(h: usize, w: usize, cin: usize, cout: usize, k: usize) -> Self {
        ConvCase {
            h,
            w,
            cin,
            cout,
            k,
            stride: 1,
            p: 0,
            ep: PLAIN,
            noise: false,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn conv_op(
    rng: &mut StdRng,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    p: usize,
    ep: EpSel,
    noise: bool,
) -> Conv2d {
    let wcin = cin + noise as usize;
    let n = cout * wcin * k * k;
    let bound = 1.0 / ((wcin * k * k) as f32).sqrt();
    let mut weight = uni(rng, n, -bound, bound);
    weight.extend(uni(rng, p * n, -0.2 * bound, 0.2 * bound));
    Conv2d {
        cin: wcin,
        cout,
        k,
        stride,
        mix: random_mix(rng, p),
        weight,
        epilogue: epilogue(rng, ep, p, cout),
        noise_channel: noise.then(|| Affine {
            offset: 0.1,
            gain: [0.5, 0.0, -0.25, 0.0],
        }),
        unfused_mix: rng.gen_bool(0.5),
    }
}

/// `n` nodes that make combine tensors 1..=n: 1x1 stride-`stride` convs of tensor 0, which
/// have exactly the shape of a k x k stride-`stride` op's output.
fn combine_sources(
    rng: &mut StdRng,
    cin: usize,
    cout: usize,
    stride: usize,
    n: usize,
) -> Vec<Node> {
    (0..n)
        .map(|i| {
            let op = Op::Conv2d(conv_op(rng, cin, cout, 1, stride, 0, PLAIN, false));
            node(&format!("other{i}"), op, 0, vec![], i + 1)
        })
        .collect()
}

/// The conv under test reads tensor 0; its combine tensors come from `combine_sources`, so the
/// plan also checks k = 1.
fn conv_plan(rng: &mut StdRng, c: &ConvCase) -> Plan {
    let mut nodes = combine_sources(rng, c.cin, c.cout, c.stride, c.ep.combine);
    let others: Vec<usize> = (1..=c.ep.combine).collect();
    let out = c.ep.combine + 1;
    let op = Op::Conv2d(conv_op(
        rng, c.cin, c.cout, c.k, c.stride, c.p, c.ep, c.noise,
    ));
    nodes.push(node("conv", op, 0, others, out));
    Plan {
        in_channels: c.cin,
        num_tensors: out + 1,
        nodes,
        output: out,
    }
}

fn random_tensor(rng: &mut StdRng, s: Shape) -> Tensor {
    Tensor::from_vec(s, uni(rng, s.len(), -1.0, 1.0))
}

// ---------------------------------------------------------------------------------------------
// Comparison

/// Checks `got` against `want` within the reduction-scaled tolerance; returns the largest
/// absolute difference.
fn assert_close(what: &str, got: &Tensor, want: &Tensor, reduction: usize) -> f32 {
    assert_eq!(got.shape, want.shape, "{what}: shape");
    let scale = 1e-5 * (reduction.max(1) as f32).sqrt();
    let Shape { h, w, .. } = want.shape;
    let mut worst = 0.0f32;
    for (i, (&g, &r)) in got.data.iter().zip(&want.data).enumerate() {
        let d = (g - r).abs();
        let tol = scale * (1.0 + r.abs());
        assert!(
            d <= tol, // NaN fails too
            "{what}: at c={} y={} x={}: fast {g} vs reference {r} (diff {d:e} > tol {tol:e})",
            i / (h * w),
            i / w % h,
            i % w
        );
        worst = worst.max(d);
    }
    worst
}

/// Runs `plan` on both executors at `level` and compares; returns the largest difference.
fn check_plan(
    what: &str,
    plan: &Plan,
    input: &Tensor,
    level: &LevelVec,
    reduction: usize,
    kernel: impl Into<Opts>,
) -> f32 {
    let opts = kernel.into().0;
    plan.shapes(input.shape.h, input.shape.w)
        .expect("valid test plan");
    let want = reference::run_plan(plan, level, input);
    let fast = FastPlan::with_options(plan, opts).expect("FastPlan::new");
    let got = fast.run(input, level).expect("FastPlan::run");
    assert_close(what, &got, &want, reduction)
}

/// Executor options for a test: a kernel (Winograd on `Auto`) or full options.
struct Opts(FastOptions);

impl From<Kernel> for Opts {
    fn from(kernel: Kernel) -> Self {
        Opts(FastOptions {
            kernel,
            winograd: Winograd::Auto,
        })
    }
}

impl From<FastOptions> for Opts {
    fn from(o: FastOptions) -> Self {
        Opts(o)
    }
}

fn run_conv_case(rng: &mut StdRng, c: &ConvCase, kernel: impl Into<Opts>) -> f32 {
    let kernel = kernel.into().0;
    let plan = conv_plan(rng, c);
    let input = random_tensor(rng, Shape::new(c.cin, c.h, c.w));
    let level = random_level(rng);
    let what = format!("{c:?} {kernel:?}");
    check_plan(
        &what,
        &plan,
        &input,
        &level,
        (c.cin + 1) * c.k * c.k,
        kernel,
    )
}

const CHANNELS: [usize; 5] = [1, 3, 5, 17, 64];
const SIZES: [(usize, usize); 6] = [(1, 1), (2, 3), (3, 2), (7, 5), (5, 7), (33, 65)];

fn report(name: &str, worst: f32) {
    println!("{name}: largest |fast - reference| = {worst:e}");
}

/// Runs `cases` in order on `kernel`, drawing every weight and input from one rng seeded with
/// `seed`, and reports the largest difference under `name`.
fn check_conv_cases(
    name: &str,
    seed: u64,
    kernel: Kernel,
    cases: impl IntoIterator<Item = ConvCase>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut worst = 0.0f32;
    for c in cases {
        worst = worst.max(run_conv_case(&mut rng, &c, kernel));
    }
    report(name, worst);
}

// ---------------------------------------------------------------------------------------------
// Conv

#[test]
fn conv_every_epilogue_and_noise() {
    let mut cases = Vec::new();
    for ep in all_epilogues() {
        for noise in [false, true] {
            for (h, w, stride) in [(7, 5, 1), (9, 11, 2)] {
                cases.push(ConvCase {
                    stride,
                    p: 2,
                    ep,
                    noise,
                    ..ConvCase::new(h, w, 5, 17, 3)
                });
            }
        }
    }
    check_conv_cases("conv_every_epilogue_and_noise", 1, Kernel::Avx2, cases);
}

#[test]
fn conv_kernel_sizes_strides_tiny_images() {
    let ep = ep_sel(true, ActSel::Prelu, 1);
    let mut cases = Vec::new();
    for (h, w) in SIZES {
        for k in [1, 3, 5, 7] {
            for stride in [1, 2] {
                for noise in [false, true] {
                    cases.push(ConvCase {
                        stride,
                        p: 1,
                        ep,
                        noise,
                        ..ConvCase::new(h, w, 3, 5, k)
                    });
                }
            }
        }
    }
    let name = "conv_kernel_sizes_strides_tiny_images";
    check_conv_cases(name, 2, Kernel::Avx2, cases);
}

#[test]
fn conv_channel_counts() {
    let mut cases = Vec::new();
    for cin in CHANNELS {
        for cout in CHANNELS {
            cases.push(ConvCase {
                ep: ep_sel(false, ActSel::Relu, 2),
                ..ConvCase::new(13, 29, cin, cout, 3)
            });
        }
    }
    // Every output-channel blocking (1..=9 vectors, partial last vectors).
    for cout in [8, 9, 16, 24, 25, 32, 40, 48, 56, 72] {
        cases.push(ConvCase {
            p: 1,
            ep: ep_sel(true, ActSel::None, 1),
            ..ConvCase::new(6, 31, 4, cout, 3)
        });
    }
    check_conv_cases("conv_channel_counts", 3, Kernel::Avx2, cases);
}

#[test]
fn conv_deltas() {
    let mut cases = Vec::new();
    for p in 0..=4 {
        for k in [1, 3, 5] {
            cases.push(ConvCase {
                stride: 1 + p % 2,
                p,
                ep: ep_sel(true, ActSel::Relu, 2),
                noise: p == 3,
                ..ConvCase::new(11, 9, 17, 5, k)
            });
        }
    }
    check_conv_cases("conv_deltas", 4, Kernel::Avx2, cases);
}

#[test]
fn conv_random_sweep() {
    let mut rng = StdRng::seed_from_u64(5);
    let eps = all_epilogues();
    let mut worst = 0.0f32;
    let mut done = 0;
    while done < 120 {
        let (h, w) = SIZES[rng.gen_range(0..SIZES.len())];
        let c = ConvCase {
            h,
            w,
            cin: CHANNELS[rng.gen_range(0..5)],
            cout: CHANNELS[rng.gen_range(0..5)],
            k: [1, 3, 5, 7][rng.gen_range(0..4)],
            stride: rng.gen_range(1..=2),
            p: rng.gen_range(0..=4),
            ep: eps[rng.gen_range(0..eps.len())],
            noise: rng.gen_bool(0.25),
        };
        if c.h * c.w * c.cin * c.cout * c.k * c.k > 40_000_000 {
            continue; // keep the reference affordable
        }
        worst = worst.max(run_conv_case(&mut rng, &c, Kernel::Avx2));
        done += 1;
    }
    report("conv_random_sweep", worst);
}

#[test]
fn conv_portable_kernel() {
    let mut cases = Vec::new();
    for (i, ep) in all_epilogues().into_iter().enumerate() {
        let (h, w) = SIZES[i % SIZES.len()];
        cases.push(ConvCase {
            h,
            w,
            cin: CHANNELS[i % 5],
            cout: CHANNELS[(i / 5) % 5],
            k: [1, 3, 5, 7][i % 4],
            stride: 1 + i % 2,
            p: i % 5,
            ep,
            noise: i % 3 == 0,
        });
    }
    check_conv_cases("conv_portable_kernel", 6, Kernel::Portable, cases);
}

#[test]
fn conv_large_layer() {
    // One layer of the benchmark network's size class: 48 -> 48, 3x3, with a residual.
    let c = ConvCase {
        p: 1,
        ep: ep_sel(false, ActSel::None, 1),
        ..ConvCase::new(37, 70, 48, 48, 3)
    };
    check_conv_cases("conv_large_layer", 7, Kernel::Avx2, [c]);
}

/// Every stride-1 3x3 conv through Winograd F(4x4, 3x3) (whatever its channel counts), and
/// through the direct conv, on both kernels: partial tiles (sizes not a multiple of 4, images
/// smaller than a tile), channel tails, every epilogue, the noise channel, deltas.
#[test]
fn conv_winograd_and_direct_3x3() {
    let mut rng = StdRng::seed_from_u64(17);
    let eps = all_epilogues();
    let mut worst = [0.0f32; 2];
    let mut i = 0;
    for (h, w) in SIZES
        .into_iter()
        .chain([(4, 4), (8, 12), (9, 13), (26, 31)])
    {
        for cin in CHANNELS {
            for cout in [1, 5, 17, 64] {
                if h * w * cin * cout > 2_000_000 {
                    continue;
                }
                i += 1;
                let c = ConvCase {
                    p: i % 5,
                    ep: eps[i % eps.len()],
                    noise: i % 4 == 0,
                    ..ConvCase::new(h, w, cin, cout, 3)
                };
                for (slot, winograd) in [Winograd::Always, Winograd::Never].into_iter().enumerate()
                {
                    for kernel in [Kernel::Avx2, Kernel::Portable] {
                        if kernel == Kernel::Portable && i % 3 != 0 {
                            continue;
                        }
                        let opts = FastOptions { kernel, winograd };
                        worst[slot] = worst[slot].max(run_conv_case(&mut rng, &c, opts));
                    }
                }
            }
        }
    }
    report("conv_winograd_and_direct_3x3 (winograd)", worst[0]);
    report("conv_winograd_and_direct_3x3 (direct)", worst[1]);
}

// ---------------------------------------------------------------------------------------------
// Depthwise, eltwise, shuffles

#[test]
fn depthwise_cases() {
    let mut rng = StdRng::seed_from_u64(8);
    let mut worst = 0.0f32;
    let eps = all_epilogues();
    for kernel in [Kernel::Avx2, Kernel::Portable] {
        for (i, &ch) in CHANNELS.iter().enumerate() {
            for (j, k) in [1, 3, 5, 7].into_iter().enumerate() {
                for (h, w) in SIZES {
                    let ep = eps[(i * 4 + j + h) % eps.len()];
                    let p = (i + j) % 5;
                    let mut nodes = combine_sources(&mut rng, ch, ch, 1, ep.combine);
                    let bound = 1.0 / k as f32;
                    let mut weight = uni(&mut rng, ch * k * k, -bound, bound);
                    weight.extend(uni(&mut rng, p * ch * k * k, -0.2 * bound, 0.2 * bound));
                    let dw = Depthwise {
                        channels: ch,
                        k,
                        mix: random_mix(&mut rng, p),
                        weight,
                        epilogue: epilogue(&mut rng, ep, p, ch),
                    };
                    let out = ep.combine + 1;
                    nodes.push(node("dw", Op::Depthwise(dw), 0, (1..out).collect(), out));
                    let plan = Plan {
                        in_channels: ch,
                        num_tensors: out + 1,
                        nodes,
                        output: out,
                    };
                    let input = random_tensor(&mut rng, Shape::new(ch, h, w));
                    let level = random_level(&mut rng);
                    let what = format!("depthwise ch={ch} k={k} {h}x{w} p={p} {ep:?} {kernel:?}");
                    worst = worst.max(check_plan(&what, &plan, &input, &level, k * k, kernel));
                }
            }
        }
    }
    report("depthwise_cases", worst);
}

#[test]
fn eltwise_and_shuffles() {
    let mut rng = StdRng::seed_from_u64(9);
    let mut worst = 0.0f32;
    for kernel in [Kernel::Avx2, Kernel::Portable] {
        for &ch in &CHANNELS {
            for (h, w) in [(2, 2), (6, 10), (34, 66)] {
                for (vi, with_v) in [false, true].into_iter().enumerate() {
                    for (ai, act) in [ActSel::None, ActSel::Relu, ActSel::Prelu]
                        .into_iter()
                        .enumerate()
                    {
                        let p = (vi + ai + ch) % 5;
                        let e = Eltwise {
                            channels: 4 * ch,
                            mix: random_mix(&mut rng, p),
                            u: mixed(&mut rng, p, 4 * ch, -1.0, 1.0),
                            v: with_v.then(|| mixed(&mut rng, p, 4 * ch, -1.0, 1.0)),
                            act: activation(&mut rng, act, 4 * ch),
                        };
                        // x -> unshuffle (t1) -> relu-free 1x1 conv (t2) -> eltwise(t1, t2) (t3)
                        //   -> shuffle (t4)
                        let conv = conv_op(&mut rng, 4 * ch, 4 * ch, 1, 1, 0, PLAIN, false);
                        let plan = Plan {
                            in_channels: ch,
                            num_tensors: 5,
                            nodes: vec![
                                node("unshuffle", Op::Unshuffle, 0, vec![], 1),
                                node("c", Op::Conv2d(conv), 1, vec![], 2),
                                node("e", Op::Eltwise(e), 1, vec![2], 3),
                                node("shuffle", Op::Shuffle, 3, vec![], 4),
                            ],
                            output: 4,
                        };
                        let input = random_tensor(&mut rng, Shape::new(ch, h, w));
                        let level = random_level(&mut rng);
                        let what = format!("eltwise ch={ch} {h}x{w} v={with_v} {act:?} {kernel:?}");
                        worst = worst.max(check_plan(&what, &plan, &input, &level, 4 * ch, kernel));
                    }
                }
            }
        }
    }
    report("eltwise_and_shuffles", worst);
}

#[test]
fn shuffles_are_exact() {
    let mut rng = StdRng::seed_from_u64(10);
    for &ch in &CHANNELS {
        let plan = Plan {
            in_channels: ch,
            num_tensors: 4,
            nodes: vec![
                node("u", Op::Unshuffle, 0, vec![], 1),
                node("u2", Op::Unshuffle, 1, vec![], 2),
                node("s", Op::Shuffle, 2, vec![], 3),
            ],
            output: 3,
        };
        let input = random_tensor(&mut rng, Shape::new(ch, 12, 20));
        let want = reference::run_plan(&plan, &[0.0; 4], &input);
        let got = FastPlan::new(&plan)
            .unwrap()
            .run(&input, &[0.0; 4])
            .unwrap();
        assert_eq!(got, want, "ch={ch}");
    }
}

// ---------------------------------------------------------------------------------------------
// Whole plans

#[test]
fn bench_net_small_matches_reference() {
    let plan = bench_net::adafm_net_plan(8, 2, 11);
    let mut rng = StdRng::seed_from_u64(11);
    let mut worst = 0.0f32;
    for (h, w) in [(2, 2), (18, 14), (40, 66)] {
        let input = random_tensor(&mut rng, Shape::new(3, h, w));
        let level = random_level(&mut rng);
        worst = worst.max(check_plan(
            &format!("bench net {h}x{w}"),
            &plan,
            &input,
            &level,
            8 * 9 * 6,
            Kernel::Avx2,
        ));
    }
    report("bench_net_small_matches_reference", worst);
}

/// A plan whose tensors have long and overlapping lifetimes: an early tensor read by the
/// last node, the plan output read by a later node, a dead result, two combine tensors.
fn branchy_plan(rng: &mut StdRng) -> Plan {
    let e0 = ep_sel(false, ActSel::Relu, 0);
    let e2 = ep_sel(true, ActSel::Prelu, 2);
    let e1 = ep_sel(false, ActSel::None, 1);
    let dw = Depthwise {
        channels: 17,
        k: 5,
        mix: random_mix(rng, 2),
        weight: uni(rng, 3 * 17 * 25, -0.2, 0.2),
        epilogue: epilogue(rng, e1, 2, 17),
    };
    // Built in node order after `dw`: the order of the rng draws fixes the seeded case.
    let a = Op::Conv2d(conv_op(rng, 3, 17, 3, 1, 1, e0, true));
    let dead = Op::Conv2d(conv_op(rng, 17, 5, 1, 2, 0, e0, false));
    let b = Op::Conv2d(conv_op(rng, 17, 17, 5, 1, 3, e0, false));
    let c = Op::Conv2d(conv_op(rng, 17, 17, 7, 1, 4, e2, false));
    let d = Op::Conv2d(conv_op(rng, 17, 17, 3, 2, 2, e0, false));
    let e = Op::Conv2d(conv_op(rng, 17, 17, 3, 1, 1, e1, false));
    Plan {
        in_channels: 3,
        num_tensors: 8,
        nodes: vec![
            node("a", a, 0, vec![], 1),
            node("dead", dead, 1, vec![], 2),
            node("b", b, 1, vec![], 3),
            node("c", c, 3, vec![1, 3], 4),
            node("dw", Op::Depthwise(dw), 4, vec![1], 5),
            node("d", d, 5, vec![], 6),
            node("e", e, 5, vec![5], 7),
        ],
        output: 5,
    }
}

#[test]
fn plan_lifetimes_and_level_cache() {
    let mut rng = StdRng::seed_from_u64(12);
    let plan = branchy_plan(&mut rng);
    let fast = FastPlan::new(&plan).unwrap();
    let mut worst = 0.0f32;
    let levels = [random_level(&mut rng), random_level(&mut rng)];
    for (h, w) in [(1, 1), (9, 6), (31, 17)] {
        let input = random_tensor(&mut rng, Shape::new(3, h, w));
        // A, B, A, A: the cache must follow the level.
        for &l in [&levels[0], &levels[1], &levels[0], &levels[0]] {
            let want = reference::run_plan(&plan, &l, &input);
            let got = fast.run(&input, &l).unwrap();
            worst = worst.max(assert_close(
                &format!("branchy {h}x{w}"),
                &got,
                &want,
                17 * 49,
            ));
        }
    }
    report("plan_lifetimes_and_level_cache", worst);
}

#[test]
fn concurrent_runs_at_different_levels() {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<FastPlan>();
    let mut rng = StdRng::seed_from_u64(13);
    let plan = bench_net::adafm_net_plan(16, 2, 13);
    let fast = FastPlan::new(&plan).unwrap();
    let input = random_tensor(&mut rng, Shape::new(3, 24, 20));
    let levels: Vec<LevelVec> = (0..4).map(|_| random_level(&mut rng)).collect();
    let wants: Vec<Tensor> = levels
        .iter()
        .map(|l| reference::run_plan(&plan, l, &input))
        .collect();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (fast, input, levels, wants) = (&fast, &input, &levels, &wants);
            s.spawn(move || {
                for r in 0..6 {
                    let i = (t + r) % 4;
                    let got = fast.run(input, &levels[i]).unwrap();
                    assert_close("concurrent", &got, &wants[i], 16 * 9 * 6);
                }
            });
        }
    });
}

#[test]
fn errors() {
    let mut rng = StdRng::seed_from_u64(14);
    let plan = bench_net::adafm_net_plan(8, 1, 14);
    let fast = FastPlan::new(&plan).unwrap();
    let l = [0.0; 4];
    assert!(matches!(
        fast.run(&random_tensor(&mut rng, Shape::new(4, 8, 8)), &l),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        fast.run(&random_tensor(&mut rng, Shape::new(3, 7, 8)), &l),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        fast.run(&Tensor::zeros(Shape::new(3, 0, 8)), &l),
        Err(Error::Shape(_))
    ));
    let mut bad = plan.clone();
    if let Op::Conv2d(c) = &mut bad.nodes[1].op {
        c.weight.pop();
    }
    assert!(matches!(FastPlan::new(&bad), Err(Error::Tensor { .. })));
    let mut bad = plan.clone();
    bad.nodes[1].input = 99;
    assert!(matches!(FastPlan::new(&bad), Err(Error::Graph(_))));
}

#[test]
fn memory_is_recycled() {
    // A chain of 10 convs keeps about three activations alive, not eleven.
    let plan = bench_net::adafm_net_plan(16, 4, 15);
    let fast = FastPlan::new(&plan).unwrap();
    let mut rng = StdRng::seed_from_u64(15);
    let input = random_tensor(&mut rng, Shape::new(3, 64, 64));
    fast.run(&input, &[0.3, 0.0, 0.0, 0.0]).unwrap();
    let act = 16 * 34 * 34 * 4; // one 16-channel activation at half res with its border
    let kept = fast.retained_bytes();
    assert!(
        kept <= 6 * act,
        "pool keeps {kept} bytes, one activation is {act}"
    );
    // A second run reuses the pool instead of growing it.
    fast.run(&input, &[0.3, 0.0, 0.0, 0.0]).unwrap();
    assert_eq!(fast.retained_bytes(), kept);
    fast.release_memory();
    assert_eq!(fast.retained_bytes(), 0);
}

#[test]
fn conv_out_dims_agree() {
    // The fast executor's output shapes are the plan's.
    let mut rng = StdRng::seed_from_u64(16);
    for (h, w) in SIZES {
        for k in [1, 3, 5, 7] {
            let c = ConvCase {
                stride: 2,
                ..ConvCase::new(h, w, 1, 1, k)
            };
            let plan = conv_plan(&mut rng, &c);
            let got = FastPlan::new(&plan)
                .unwrap()
                .run(&random_tensor(&mut rng, Shape::new(1, h, w)), &[0.0; 4]);
            let s = got.unwrap().shape;
            assert_eq!((s.h, s.w), (conv_out_dim(h, k, 2), conv_out_dim(w, k, 2)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Golden PyTorch vectors (hook)

/// Runs every `tests/data/golden/fast_cpu/*.safetensors` against the fast executor. Each file
/// holds `input` `[C, H, W]` and `expected` `[C', H', W']` (f32) and the metadata
/// `plan = "adafm_net:<channels>:<blocks>:<seed>"` and `level = "<l0>,<l1>,<l2>,<l3>"`;
/// `tools/bench_peers.py --golden DIR` writes such files from PyTorch. To cover other plans,
/// add a `plan` kind here. Without files the test passes and says so. `TUNABLE_GOLDEN_DIR`
/// points it at another directory.
#[test]
fn golden_pytorch_vectors() {
    let dir = std::env::var_os("TUNABLE_GOLDEN_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden/fast_cpu")
        });
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!("no golden vectors in {} (skipped)", dir.display());
        return;
    };
    let mut n = 0;
    for e in entries {
        let path = e.unwrap().path();
        if path.extension().and_then(|x| x.to_str()) != Some("safetensors") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let meta = meta.metadata().clone().expect("golden file needs metadata");
        let spec: Vec<&str> = meta["plan"].split(':').collect();
        assert_eq!(
            spec[0],
            "adafm_net",
            "{}: unknown plan kind",
            path.display()
        );
        let plan = bench_net::adafm_net_plan(
            spec[1].parse().unwrap(),
            spec[2].parse().unwrap(),
            spec[3].parse().unwrap(),
        );
        let mut level = [0.0; 4];
        for (l, v) in level.iter_mut().zip(meta["level"].split(',')) {
            *l = v.trim().parse().unwrap();
        }
        let load = |name: &str| {
            let t = st.tensor(name).unwrap();
            let s = t.shape();
            let data: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Tensor::from_vec(Shape::new(s[0], s[1], s[2]), data)
        };
        let (input, expected) = (load("input"), load("expected"));
        let got = FastPlan::new(&plan).unwrap().run(&input, &level).unwrap();
        let worst = assert_close(&path.display().to_string(), &got, &expected, 48 * 9 * 20);
        println!("{}: largest |fast - pytorch| = {worst:e}", path.display());
        n += 1;
    }
    println!("{n} golden files checked");
}
