//! Every WGSL kernel against its CPU twin in `tunable::testing::cpu::reference` (the oracle), on random
//! shapes and weights. All GPU tests live in this one binary and share one context.
//! Without an adapter they print a skip message; with TUNABLE_REQUIRE_GPU=1 they fail.
//! `cargo test --release --test gpu_kernels -- --nocapture` prints the largest differences.

mod harness;

use std::sync::Arc;

use harness::gpu::*;
use harness::plan::node;
use tunable::plan::{Activation, Op, Plan};
use tunable::tensor::Shape;
use tunable::tensor::Tensor;
use tunable::testing::cpu::reference;
use tunable::testing::gpu::kernels::EpFlags;
use tunable::testing::gpu::ops::winograd::{self, WinogradMode};
use tunable::testing::gpu::{self as g, GpuContext, GpuPlan};
use tunable::Error;

const NO_EP: EpFlags = EpFlags {
    scale_shift: false,
    act: 0,
    combine: false,
    others: 0,
};
/// Scale/shift, PReLU and a combine with one other tensor: most of the epilogue at once.
const FULL_EP: EpFlags = EpFlags {
    scale_shift: true,
    act: 2,
    combine: true,
    others: 1,
};

// Lavapipe JIT-compiles each pipeline on first use (~0.3-0.5 s of CPU for a conv), so the
// tests reuse a small set of variants: shape sweeps run the per-(k, stride) variant below,
// and only the dedicated tests add P and epilogue variants.

/// The delta count used for a (k, stride) pair in the shape sweeps.
fn p_of(k: usize, stride: usize) -> usize {
    (k + 2 * stride) % 5
}

/// A subset of epilogues in which every flag value occurs (for the kernels that share
/// epilogue.wgsl with the conv that runs all 24).
fn ep_subset() -> Vec<EpFlags> {
    vec![
        NO_EP,
        EpFlags {
            scale_shift: true,
            act: 1,
            combine: false,
            others: 0,
        },
        EpFlags {
            scale_shift: false,
            act: 2,
            combine: true,
            others: 2,
        },
        EpFlags {
            scale_shift: true,
            act: 0,
            combine: true,
            others: 0,
        },
        FULL_EP,
    ]
}

/// The frame of most tests here: runs `body` with the shared context and a fresh `Worst` named
/// `name`, then prints the largest differences. Without a GPU it skips (see `ctx`).
fn gpu_check(name: &str, body: impl FnOnce(&Arc<GpuContext>, &mut Worst)) {
    let Some(ctx) = ctx() else { return };
    let mut w = Worst::new(name);
    body(&ctx, &mut w);
    w.print();
}

/// Runs a conv spec on the GPU's direct conv and the reference; returns the GPU result.
fn check_conv(
    ctx: &Arc<GpuContext>,
    w: &mut Worst,
    seed: u64,
    s: &ConvSpec,
    h: usize,
    wd: usize,
) -> Tensor {
    check_conv_path(ctx, w, seed, s, h, wd, WinogradMode::Never)
}

/// The absolute tolerance of the Winograd path, in units of the direct conv's: F(4x4, 3x3)'s
/// transforms (entries up to 8 in A^T, 5 in B^T) amplify f32 rounding; measured, the worst
/// case here is about a quarter of the direct tolerance, so 2x leaves ample headroom.
const WINOGRAD_TOL: f32 = 2.0;

/// Runs a conv spec on the GPU path `mode` and the reference; returns the GPU result.
fn check_conv_path(
    ctx: &Arc<GpuContext>,
    w: &mut Worst,
    seed: u64,
    s: &ConvSpec,
    h: usize,
    wd: usize,
    mode: WinogradMode,
) -> Tensor {
    let mut r = rng(seed);
    let conv = rand_conv(&mut r, s);
    let x = rand_tensor(&mut r, Shape::new(s.cin, h, wd));
    let level = rand_level(&mut r);
    let op = Op::Conv2d(conv.clone());
    let out = op.out_shape(x.shape).unwrap();
    let others: Vec<Tensor> = (0..s.ep.others).map(|_| rand_tensor(&mut r, out)).collect();
    let orefs: Vec<&Tensor> = others.iter().collect();
    let n = node("conv", op, 0, vec![], 1);
    let gpu = winograd::with_mode(mode, || g::run_node(ctx, &n, &level, &x, &orefs)).unwrap();
    let cpu = reference::run_node(&n, &level, &x, &orefs);
    let case = format!(
        "cin {} cout {} k {} s {} P {} {:?} noise {} unfused {} on {h}x{wd} ({mode:?})",
        s.cin, s.cout, s.k, s.stride, s.p, s.ep, s.noise, s.unfused
    );
    let tol = if mode == WinogradMode::Never {
        1.0
    } else {
        WINOGRAD_TOL
    };
    w.check_scaled(&case, &gpu, &cpu, conv.cin * conv.k * conv.k, tol);
    gpu
}

/// Winograd F(4x4, 3x3) (forced on, whatever the channels) on awkward shapes: 1x1 images,
/// sizes not multiples of the 4x4 tile, channel tails, the noise channel, many tiles.
#[test]
fn winograd_conv_matches_reference_on_random_shapes() {
    gpu_check("winograd conv (3x3 s1)", |ctx, w| {
        // (cin, cout, h, w)
        let cases = [
            (1, 1, 1, 1),
            (3, 5, 1, 1),
            (5, 17, 2, 3),
            (17, 5, 7, 5),
            (8, 8, 4, 4),
            (16, 16, 5, 9),
            (48, 48, 13, 11),
            (64, 17, 9, 4),
            (3, 33, 33, 65),
            (20, 33, 17, 18),
            // The GEMM's channel groups and staging chunks: 48 channels per group with U
            // staged in two chunks (85 + 15 input channels); 5 groups of 16; 2 groups of 32.
            (100, 40, 6, 7),
            (90, 70, 5, 5),
            (24, 64, 5, 6),
        ];
        for (i, &(cin, cout, h, wd)) in cases.iter().enumerate() {
            let s = ConvSpec {
                noise: i % 3 == 0,
                ..ConvSpec::new(cin, cout, 3, 1, p_of(3, 1), FULL_EP)
            };
            check_conv_path(ctx, w, 6000 + i as u64, &s, h, wd, WinogradMode::Always);
        }
    });
}

#[test]
fn winograd_every_deltas_count_and_epilogue() {
    let Some(ctx) = ctx() else { return };
    let mut wp = Worst::new("winograd P = 0..4");
    let mut we = Worst::new("winograd, all 24 epilogues");
    for p in 0..=4 {
        let s = ConvSpec {
            noise: p == 2,
            ..ConvSpec::new(6, 20, 3, 1, p, NO_EP)
        };
        check_conv_path(
            &ctx,
            &mut wp,
            6100 + p as u64,
            &s,
            9,
            11,
            WinogradMode::Always,
        );
    }
    for (i, ep) in EpFlags::all().into_iter().enumerate() {
        let s = ConvSpec::new(3, 5, 3, 1, 1, ep);
        check_conv_path(
            &ctx,
            &mut we,
            6200 + i as u64,
            &s,
            5,
            7,
            WinogradMode::Always,
        );
    }
    wp.print();
    we.print();
}

/// The same conv on the direct and the Winograd path, fused and unfused mix: all four match
/// the reference, and the two paths do differ in their rounding (so Winograd did run).
#[test]
fn winograd_and_direct_agree_fused_and_unfused() {
    let Some(ctx) = ctx() else { return };
    let mut w = Worst::new("winograd vs direct, (un)fused");
    for (i, &(cin, cout, p)) in [(16, 16, 1), (9, 24, 3), (48, 48, 4)].iter().enumerate() {
        for unfused in [false, true] {
            let s = ConvSpec {
                unfused,
                ..ConvSpec::new(cin, cout, 3, 1, p, FULL_EP)
            };
            let seed = 6300 + i as u64;
            let direct = check_conv_path(&ctx, &mut w, seed, &s, 10, 13, WinogradMode::Never);
            let wino = check_conv_path(&ctx, &mut w, seed, &s, 10, 13, WinogradMode::Always);
            // The rule alone (Auto) picks Winograd for these channel counts.
            let auto = check_conv_path(&ctx, &mut w, seed, &s, 10, 13, WinogradMode::Auto);
            assert_ne!(
                direct.data, wino.data,
                "case {i}: the Winograd path did not run"
            );
            assert_eq!(
                auto.data, wino.data,
                "case {i}: the rule did not pick Winograd"
            );
        }
    }
    w.print();
}

#[test]
fn conv2d_matches_reference_on_random_shapes() {
    gpu_check("conv2d (k 1/3/5/7, s 1/2)", |ctx, w| {
        // (cin, cout, k, stride, h, w): 1x1 images, images smaller than the kernel, odd sizes,
        // channel tails (1, 3, 5, 17), 64 channels on few pixels, 33x65 with small channels.
        let cases = [
            (1, 1, 3, 1, 1, 1),
            (3, 5, 7, 1, 1, 1),
            (5, 3, 5, 2, 2, 3),
            (3, 17, 7, 2, 3, 2),
            (1, 3, 3, 1, 7, 5),
            (3, 1, 5, 1, 7, 5),
            (5, 17, 3, 2, 7, 5),
            (17, 5, 1, 2, 7, 5),
            (3, 5, 3, 1, 33, 65),
            (3, 4, 7, 2, 33, 65),
            (1, 3, 5, 1, 33, 65),
            (64, 64, 3, 1, 6, 5),
            (64, 17, 3, 2, 9, 4),
            (17, 64, 1, 1, 5, 7),
            (64, 3, 1, 2, 3, 3),
            (5, 5, 7, 1, 17, 9),
            (3, 3, 1, 1, 33, 65),
        ];
        for (i, &(cin, cout, k, stride, h, wd)) in cases.iter().enumerate() {
            let s = ConvSpec {
                noise: i % 3 == 0,
                ..ConvSpec::new(cin, cout, k, stride, p_of(k, stride), FULL_EP)
            };
            check_conv(ctx, w, 100 + i as u64, &s, h, wd);
        }
    });
}

#[test]
fn conv_every_kernel_size_stride_and_deltas_count() {
    gpu_check("conv k x s, P = 0..4", |ctx, w| {
        let mut seed = 1000;
        for k in [1, 3, 5, 7] {
            for stride in [1, 2] {
                let s = ConvSpec {
                    noise: k == 3,
                    ..ConvSpec::new(5, 17, k, stride, p_of(k, stride), FULL_EP)
                };
                check_conv(ctx, w, seed, &s, 9, 11);
                seed += 1;
            }
        }
        for p in 0..=4 {
            let s = ConvSpec {
                noise: p == 2,
                ..ConvSpec::new(6, 20, 3, 1, p, NO_EP)
            };
            check_conv(ctx, w, seed, &s, 9, 11);
            seed += 1;
        }
    });
}

#[test]
fn conv_every_epilogue_combination() {
    let Some(ctx) = ctx() else { return };
    let mut w3 = Worst::new("conv2d 3x3, all 24 epilogues");
    let mut w1 = Worst::new("conv1x1, epilogue subset");
    for (i, ep) in EpFlags::all().into_iter().enumerate() {
        let s = ConvSpec::new(3, 5, 3, 1, 1, ep);
        check_conv(&ctx, &mut w3, 2000 + i as u64, &s, 5, 7);
    }
    for (i, ep) in ep_subset().into_iter().enumerate() {
        let s = ConvSpec {
            noise: i % 2 == 0,
            ..ConvSpec::new(17, 3, 1, 1, 2, ep)
        };
        check_conv(&ctx, &mut w1, 3000 + i as u64, &s, 7, 5);
    }
    w3.print();
    w1.print();
}

/// On a device with the downlevel defaults' 4 storage buffers per stage, a combine reading
/// k other tensors (4 + k bindings fused) runs as the node plus k eltwise passes
/// (`Plan::split_combines`): every epilogue on the conv and depthwise against the reference.
#[test]
fn combines_split_into_eltwise_passes_on_a_four_storage_buffer_device() {
    if ctx().is_none() {
        return;
    }
    let Some(adapter) = harness::app::app_adapter() else {
        return;
    };
    let (device, queue) =
        harness::app::app_device(&adapter, tunable::wgpu::Limits::downlevel_defaults());
    let small = GpuContext::from_wgpu(&adapter, device, queue).unwrap();
    assert_eq!(small.info().max_storage_buffers_per_stage, 4);
    let mut wc = Worst::new("conv2d 3x3 on 4 storage buffers, all 24 epilogues");
    let mut wd = Worst::new("depthwise on 4 storage buffers, epilogue subset");
    for (i, ep) in EpFlags::all().into_iter().enumerate() {
        let s = ConvSpec::new(3, 5, 3, 1, 2, ep);
        check_conv(&small, &mut wc, 2100 + i as u64, &s, 5, 7);
    }
    for (i, ep) in ep_subset().into_iter().enumerate() {
        check_depthwise(
            &small,
            &mut wd,
            6600 + i as u64,
            3,
            2,
            ep,
            Shape::new(5, 6, 7),
        );
    }
    wc.print();
    wd.print();
}

#[test]
fn fused_mix_equals_unfused_mix_pass_plus_plain_conv() {
    let Some(ctx) = ctx() else { return };
    let mut wf = Worst::new("conv fused vs unfused mix");
    let mut wu = Worst::new("conv unfused mix (vs cpu)");
    for (i, &(k, stride)) in [(3, 1), (3, 2), (1, 1), (5, 1), (7, 2)].iter().enumerate() {
        let (p, ep) = (p_of(k, stride).max(1), FULL_EP);
        let spec = |unfused| ConvSpec {
            unfused,
            ..ConvSpec::new(5, 17, k, stride, p, ep)
        };
        let seed = 4000 + i as u64;
        // Same seed: same weights, input and level; only the mix path differs.
        let fused = check_conv(&ctx, &mut wf, seed, &spec(false), 10, 13);
        let unfused = check_conv(&ctx, &mut wu, seed, &spec(true), 10, 13);
        wf.check(
            &format!("k {k} s {stride} P {p}"),
            &fused,
            &unfused,
            5 * k * k,
        );
    }
    wf.print();
    wu.print();
}

#[test]
fn mix_pass_matches_reference() {
    gpu_check("mix pass", |ctx, w| {
        for p in 0..=4 {
            let mut r = rng(5000 + p as u64);
            let n = 1000 + 37 * p;
            let mixed = mixed(&mut r, n, p, 0.0, 1.0);
            let mix = rand_mix(&mut r, p);
            let level = rand_level(&mut r);
            let gpu = g::mix_weights(ctx, &mixed, &mix.coefs, &level).unwrap();
            let cpu = reference::mix_weights(&mixed, &mix.eval(&level));
            let s = Shape::new(1, 1, n);
            w.check(
                &format!("P {p}"),
                &Tensor::from_vec(s, gpu),
                &Tensor::from_vec(s, cpu),
                p + 1,
            );
        }
    });
}

/// Runs a random k x k depthwise node with `p` deltas on an input of `shape` (and the
/// epilogue's combine tensors) on the GPU and the reference.
fn check_depthwise(
    ctx: &Arc<GpuContext>,
    w: &mut Worst,
    seed: u64,
    k: usize,
    p: usize,
    ep: EpFlags,
    shape: Shape,
) {
    let Shape { c, h, w: wd } = shape;
    let mut r = rng(seed);
    let dw = rand_depthwise(&mut r, c, k, p, ep);
    let x = rand_tensor(&mut r, shape);
    let others: Vec<Tensor> = (0..ep.others)
        .map(|_| rand_tensor(&mut r, x.shape))
        .collect();
    let orefs: Vec<&Tensor> = others.iter().collect();
    let level = rand_level(&mut r);
    let n = node("dw", Op::Depthwise(dw), 0, vec![], 1);
    let gpu = g::run_node(ctx, &n, &level, &x, &orefs).unwrap();
    let cpu = reference::run_node(&n, &level, &x, &orefs);
    let case = format!("k {k} c {c} {h}x{wd} P {p} {ep:?}");
    w.check(&case, &gpu, &cpu, k * k);
}

#[test]
fn depthwise_matches_reference() {
    gpu_check("depthwise", |ctx, w| {
        let cases = [
            (1, 1, 1),
            (3, 1, 1),
            (5, 2, 3),
            (17, 7, 5),
            (3, 33, 65),
            (64, 5, 6),
            (1, 18, 17),
        ];
        let mut seed = 6000;
        for k in [1, 3, 5, 7] {
            for &(c, h, wd) in cases.iter() {
                seed += 1;
                check_depthwise(ctx, w, seed, k, k % 5, FULL_EP, Shape::new(c, h, wd));
            }
        }
        // The epilogue subset on one kernel size (all 24 run on the conv; the code is shared).
        for (i, ep) in ep_subset().into_iter().enumerate() {
            let seed = 6500 + i as u64;
            check_depthwise(ctx, w, seed, 3, 2, ep, Shape::new(5, 6, 7));
        }
    });
}

#[test]
fn eltwise_matches_reference() {
    gpu_check("eltwise", |ctx, w| {
        let mut seed = 7000;
        let mut variants: Vec<(usize, bool, u8)> =
            (0..=4).map(|p| (p, p % 2 == 1, (p % 3) as u8)).collect();
        variants.extend(
            [false, true]
                .iter()
                .flat_map(|&b| (0..3u8).map(move |a| (1, b, a))),
        );
        for (p, has_b, act) in variants {
            seed += 1;
            let mut r = rng(seed);
            let (c, h, wd) = [(1, 1, 1), (3, 7, 5), (17, 5, 3), (5, 33, 65)][(seed % 4) as usize];
            let e = rand_eltwise(&mut r, c, p, has_b, act);
            let a = rand_tensor(&mut r, Shape::new(c, h, wd));
            let b = rand_tensor(&mut r, a.shape);
            let level = rand_level(&mut r);
            let others: Vec<&Tensor> = if has_b { vec![&b] } else { vec![] };
            let n = node("elt", Op::Eltwise(e), 0, vec![], 1);
            let gpu = g::run_node(ctx, &n, &level, &a, &others).unwrap();
            let cpu = reference::run_node(&n, &level, &a, &others);
            w.check(
                &format!("P {p} b {has_b} act {act} {c}x{h}x{wd}"),
                &gpu,
                &cpu,
                2,
            );
        }
    });
}

#[test]
fn shuffle_and_unshuffle_match_reference_exactly() {
    gpu_check("shuffle / unshuffle", |ctx, w| {
        for (i, &(c, h, wd)) in [(1, 2, 2), (3, 8, 6), (4, 34, 66), (5, 2, 10)]
            .iter()
            .enumerate()
        {
            let mut r = rng(8000 + i as u64);
            let x = rand_tensor(&mut r, Shape::new(c, h, wd));
            let n = node("un", Op::Unshuffle, 0, vec![], 1);
            let gpu = g::run_node(ctx, &n, &[0.0; 4], &x, &[]).unwrap();
            let cpu = reference::unshuffle(&x);
            assert_eq!(gpu, cpu, "unshuffle {c}x{h}x{wd}");
            w.check("unshuffle", &gpu, &cpu, 1);
            let n = node("sh", Op::Shuffle, 0, vec![], 1);
            let back = g::run_node(ctx, &n, &[0.0; 4], &gpu, &[]).unwrap();
            assert_eq!(back, reference::shuffle(&cpu), "shuffle {c}x{h}x{wd}");
            assert_eq!(back, x, "shuffle(unshuffle(x)) == x");
            w.check("shuffle", &back, &x, 1);
        }
    });
}

#[test]
fn ftn_transform_matches_reference() {
    gpu_check("ftn transform", |ctx, w| {
        for (i, &(cout, cin, k, groups, slope_len)) in [
            (4, 8, 3, 1, 1),
            (17, 16, 3, 4, 16),
            (3, 5, 5, 5, 5),
            (64, 64, 1, 16, 1),
            (2, 6, 7, 2, 6),
        ]
        .iter()
        .enumerate()
        {
            let mut r = rng(9000 + i as u64);
            let gs = cin / groups;
            let weight = rand_vec(&mut r, cout * cin * k * k, 0.5);
            let (w1, b1, slope, w2, b2) = (
                rand_vec(&mut r, cin * gs, 1.0 / (gs as f32).sqrt()),
                rand_vec(&mut r, cin, 0.1),
                rand_vec(&mut r, slope_len, 0.3),
                rand_vec(&mut r, cin * gs, 1.0 / (gs as f32).sqrt()),
                rand_vec(&mut r, cin, 0.1),
            );
            let f = tunable::plan::FtnParams {
                groups,
                w1: &w1,
                b1: &b1,
                slope: &slope,
                w2: &w2,
                b2: &b2,
            };
            let gpu = g::ftn_transform(ctx, &weight, cout, cin, k, &f).unwrap();
            let cpu = reference::ftn_transform(&weight, cout, cin, k, &f);
            let s = Shape::new(cout, cin, k * k);
            w.check(
                &format!("cout {cout} cin {cin} k {k} groups {groups}"),
                &Tensor::from_vec(s, gpu),
                &Tensor::from_vec(s, cpu),
                2 * gs,
            );
        }
    });
}

/// unshuffle -> conv (noise channel, ReLU) -> depthwise (AdaFM-like, combine with its input)
/// -> conv (PReLU) -> eltwise (residual) -> conv (unfused mix) -> shuffle.
fn small_plan(seed: u64) -> Plan {
    let mut r = rng(seed);
    let relu = EpFlags { act: 1, ..NO_EP };
    let c1 = rand_conv(
        &mut r,
        &ConvSpec {
            noise: true,
            ..ConvSpec::new(12, 16, 3, 1, 1, relu)
        },
    );
    let mut dw = rand_depthwise(
        &mut r,
        16,
        3,
        1,
        EpFlags {
            combine: true,
            others: 1,
            ..NO_EP
        },
    );
    dw.epilogue.act = Activation::None;
    let prelu_scaled = EpFlags {
        act: 2,
        scale_shift: true,
        ..NO_EP
    };
    let c2 = rand_conv(&mut r, &ConvSpec::new(16, 16, 3, 1, 2, prelu_scaled));
    let e = rand_eltwise(&mut r, 16, 1, true, 0);
    let c3 = rand_conv(
        &mut r,
        &ConvSpec {
            unfused: true,
            ..ConvSpec::new(16, 12, 3, 1, 1, NO_EP)
        },
    );
    Plan {
        in_channels: 3,
        num_tensors: 8,
        nodes: vec![
            node("unshuffle", Op::Unshuffle, 0, vec![], 1),
            node("head", Op::Conv2d(c1), 1, vec![], 2),
            node("adafm", Op::Depthwise(dw), 2, vec![2], 3),
            node("body", Op::Conv2d(c2), 3, vec![], 4),
            node("skip", Op::Eltwise(e), 4, vec![2], 5),
            node("tail", Op::Conv2d(c3), 5, vec![], 6),
            node("shuffle", Op::Shuffle, 6, vec![], 7),
        ],
        output: 7,
    }
}

#[test]
fn whole_plan_matches_reference_and_level_moves_without_rebuild() {
    gpu_check("whole plan (7 nodes)", |ctx, w| {
        let plan = small_plan(11);
        let gp = GpuPlan::new(ctx.clone(), &plan).unwrap();
        let mut r = rng(12);
        for &(h, wd) in &[(10, 14), (2, 2), (10, 14)] {
            let x = rand_tensor(&mut r, Shape::new(3, h, wd));
            for _ in 0..2 {
                let level = rand_level(&mut r);
                let gpu = gp.run(&x, &level).unwrap();
                let cpu = reference::run_plan(&plan, &level, &x);
                w.check(&format!("{h}x{wd} at {level:?}"), &gpu, &cpu, 16 * 9 * 3);
            }
        }
        // Two sizes were prepared once each; the level moves only rewrote the level uniform.
        assert_eq!(gp.prepared_sizes(), 2);
    });
}

#[test]
fn split_dispatches_equal_unsplit_exactly() {
    let Some(ctx) = ctx() else { return };
    // At most 2 workgroups per dimension: every kernel runs as many small dispatches.
    let small = ctx.with_limits(None, Some(2));
    assert_eq!(small.info().max_workgroups_per_dim, 2);
    let plan = small_plan(21);
    let mut r = rng(22);
    let x = rand_tensor(&mut r, Shape::new(3, 38, 70));
    let level = rand_level(&mut r);
    let a = GpuPlan::new(ctx.clone(), &plan)
        .unwrap()
        .run(&x, &level)
        .unwrap();
    let b = GpuPlan::new(small.clone(), &plan)
        .unwrap()
        .run(&x, &level)
        .unwrap();
    assert_eq!(a.data, b.data, "split dispatch changed the result");
    // Single kernels with large grids along one dimension: 1x1 (pixel blocks), stride-2 k7,
    // depthwise (channels along z), eltwise, and the FTN/mix passes.
    for (i, op) in [
        Op::Conv2d(rand_conv(&mut r, &ConvSpec::new(3, 40, 1, 1, 1, NO_EP))),
        Op::Conv2d(rand_conv(
            &mut r,
            &ConvSpec {
                noise: true,
                unfused: true,
                ..ConvSpec::new(3, 40, 7, 2, 1, NO_EP)
            },
        )),
        Op::Depthwise(rand_depthwise(&mut r, 3, 5, 1, NO_EP)),
        Op::Eltwise(rand_eltwise(&mut r, 3, 1, false, 1)),
    ]
    .into_iter()
    .enumerate()
    {
        let n = node("n", op, 0, vec![], 1);
        let a = g::run_node(&ctx, &n, &level, &x, &[]).unwrap();
        let b = g::run_node(&small, &n, &level, &x, &[]).unwrap();
        assert_eq!(a.data, b.data, "split dispatch changed node {i}");
    }
    let mixed_w = mixed(&mut r, 3000, 2, 0.0, 1.0);
    let mix = rand_mix(&mut r, 2);
    assert_eq!(
        g::mix_weights(&ctx, &mixed_w, &mix.coefs, &level).unwrap(),
        g::mix_weights(&small, &mixed_w, &mix.coefs, &level).unwrap()
    );
    println!(
        "[split] 2 workgroups/dim: plan on 38x70 and 4 single kernels bitwise equal to unsplit"
    );
}

#[test]
fn oversized_tensors_are_a_clear_error_not_a_panic() {
    let Some(ctx) = ctx() else { return };
    // 32 KiB bindings: the weights fit, a 16 x 24 x 24 feature map (36 KiB) does not.
    let tiny = ctx.with_limits(Some(32768), None);
    assert_eq!(tiny.max_tensor_bytes(), 32768);
    let plan = small_plan(31);
    let gp = GpuPlan::new(tiny, &plan).unwrap();
    assert_eq!(gp.max_tensor_bytes(), 32768);
    let x = Tensor::zeros(Shape::new(3, 48, 48)); // 27 KiB
    match gp.run(&x, &[0.0; 4]) {
        Err(Error::Shape(m)) => {
            assert!(m.contains("'head'"), "{m}");
            println!("[limits] oversized tensor: {m}");
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
    assert!(gp
        .run(&Tensor::zeros(Shape::new(3, 32, 32)), &[0.0; 4])
        .is_ok());
    // Wrong channel count and odd sizes for the unshuffle: errors too.
    assert!(matches!(
        gp.run(&Tensor::zeros(Shape::new(2, 4, 4)), &[0.0; 4]),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        gp.run(&Tensor::zeros(Shape::new(3, 5, 4)), &[0.0; 4]),
        Err(Error::Shape(_))
    ));
    // The context is still healthy after those errors.
    let ok = GpuPlan::new(ctx.clone(), &plan)
        .unwrap()
        .run(&Tensor::zeros(Shape::new(3, 4, 4)), &[0.0; 4]);
    assert!(ok.is_ok());
}

#[test]
fn runs_from_several_threads_at_several_levels() {
    let Some(ctx) = ctx() else { return };
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<GpuContext>();
    assert_send_sync::<GpuPlan>();
    let plan = small_plan(41);
    let gp = GpuPlan::new(ctx.clone(), &plan).unwrap();
    let mut r = rng(42);
    let x = rand_tensor(&mut r, Shape::new(3, 8, 6));
    let levels: Vec<_> = (0..4).map(|_| rand_level(&mut r)).collect();
    let mut w = Worst::new("plan from 4 threads");
    std::thread::scope(|s| {
        let handles: Vec<_> = levels
            .iter()
            .map(|l| s.spawn(|| (0..3).map(|_| gp.run(&x, l).unwrap()).collect::<Vec<_>>()))
            .collect();
        for (h, l) in handles.into_iter().zip(&levels) {
            let cpu = reference::run_plan(&plan, l, &x);
            for gpu in h.join().unwrap() {
                w.check("thread", &gpu, &cpu, 16 * 9 * 3);
            }
        }
    });
    w.print();
}

#[test]
fn bad_nodes_are_errors() {
    let Some(ctx) = ctx() else { return };
    let mut r = rng(51);
    let mut conv = rand_conv(&mut r, &ConvSpec::new(3, 4, 3, 1, 1, NO_EP));
    conv.weight.pop();
    let n = node("bad", Op::Conv2d(conv), 0, vec![], 1);
    let x = rand_tensor(&mut r, Shape::new(3, 4, 4));
    match g::run_node(&ctx, &n, &[0.0; 4], &x, &[]) {
        Err(Error::Shape(m)) => assert!(m.contains("bad"), "{m}"),
        other => panic!("expected a shape error, got {other:?}"),
    }
    let mut conv = rand_conv(&mut r, &ConvSpec::new(3, 4, 4, 1, 0, NO_EP));
    conv.k = 4;
    let n = node("k4", Op::Conv2d(conv), 0, vec![], 1);
    assert!(g::run_node(&ctx, &n, &[0.0; 4], &x, &[]).is_err());
}

/// Throughput of the conv kernels on a chain of 8 layers (napkin math, not a test of speed):
/// `TUNABLE_BENCH_SIZE=512 cargo test --release --test gpu_kernels -- --ignored --nocapture throughput`.
#[test]
#[ignore]
fn throughput() {
    let Some(ctx) = ctx() else { return };
    let size: usize = std::env::var("TUNABLE_BENCH_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let mut r = rng(77);
    let (auto, direct) = (WinogradMode::Auto, WinogradMode::Never);
    let only: Option<String> = std::env::var("TUNABLE_THROUGHPUT_ONLY").ok();
    for &(name, c, k, dw, p, mode) in &[
        ("conv3x3 48->48 P=1 winograd", 48, 3, false, 1, auto),
        ("conv3x3 48->48 P=1 direct", 48, 3, false, 1, direct),
        ("conv3x3 64->64 P=0 winograd", 64, 3, false, 0, auto),
        ("conv3x3 64->64 P=0 direct", 64, 3, false, 0, direct),
        (
            "conv3x3 64->64 P=1 (fused mix) direct",
            64,
            3,
            false,
            1,
            direct,
        ),
        ("conv1x1 64->64 P=0", 64, 1, false, 0, auto),
        ("conv5x5 32->32 P=0", 32, 5, false, 0, auto),
        ("depthwise3x3 64 P=1", 64, 3, true, 1, auto),
    ] {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let layers = 8;
        let ep = EpFlags { act: 1, ..NO_EP };
        let nodes = (0..layers)
            .map(|i| {
                let op = if dw {
                    Op::Depthwise(rand_depthwise(&mut r, c, k, p, ep))
                } else {
                    Op::Conv2d(rand_conv(&mut r, &ConvSpec::new(c, c, k, 1, p, ep)))
                };
                node(&format!("l{i}"), op, i, vec![], i + 1)
            })
            .collect();
        let plan = Plan {
            in_channels: c,
            num_tensors: layers + 1,
            nodes,
            output: layers,
        };
        let gp = winograd::with_mode(mode, || GpuPlan::new(ctx.clone(), &plan)).unwrap();
        let x = rand_tensor(&mut r, Shape::new(c, size, size));
        let level = rand_level(&mut r);
        gp.run(&x, &level).unwrap();
        // The fastest of 5 runs: the machine is shared, and interference only adds time.
        // The process's CPU seconds per run are printed too: on a software adapter they count
        // the work whatever else the cores are doing.
        let cpu0 = process_cpu_seconds();
        let s = (0..5)
            .map(|_| {
                let t = std::time::Instant::now();
                gp.run(&x, &level).unwrap();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        let cpu = (process_cpu_seconds() - cpu0) / 5.0;
        let macs_per_px = if dw { c * k * k } else { c * c * k * k };
        let gflop = 2.0 * (macs_per_px * size * size * layers) as f64 / 1e9;
        println!(
            "[throughput] {name:<32} {size}x{size}, {layers} layers: {:8.2} ms/run, {:8.1} GFLOP/s, {:8.2} CPU ms/run (incl. upload + readback of {:.1} MiB)",
            s * 1e3,
            gflop / s,
            cpu * 1e3,
            2.0 * (c * size * size * 4) as f64 / (1 << 20) as f64
        );
    }
}

/// User + system CPU seconds of this process so far (Linux; 0 elsewhere).
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised name: utime and stime are the 12th and 13th.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<f64>() / 100.0
}

#[test]
fn device_loss_is_an_error_not_a_panic() {
    if ctx().is_none() {
        return;
    }
    // A second device of its own: the shared one must stay alive for the other tests.
    let lost = GpuContext::new().unwrap();
    let plan = small_plan(61);
    let gp = GpuPlan::new(lost.clone(), &plan).unwrap();
    let x = Tensor::zeros(Shape::new(3, 4, 4));
    assert!(gp.run(&x, &[0.0; 4]).is_ok());
    lost.simulate_device_loss();
    for r in [
        gp.run(&x, &[0.0; 4]).map(|_| ()),
        GpuPlan::new(lost.clone(), &plan).map(|_| ()),
        lost.check(),
    ] {
        match r {
            Err(Error::DeviceLost(m)) => println!("[device lost] {m}"),
            other => panic!("expected DeviceLost, got {other:?}"),
        }
    }
}
