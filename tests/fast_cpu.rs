//! The fast CPU executor (`cpu::fast::FastPlan`) against the reference (`cpu::reference`), on
//! seeded random shapes: 1x1 images, images smaller than the kernel, odd sizes, channel
//! counts 1, 3, 5, 17, 64, stride 2, P = 0..4 deltas, every epilogue combination, the noise
//! channel, and whole plans (tensor lifetimes, level cache). The AVX-512, AVX2 and portable
//! micro-kernels are checked.
//!
//! The cases come from the generator every executor test shares (`harness::cases`) and run
//! through `harness::backends::Backend`; the tolerance is that of `harness::cases::Worst`
//! (reduction-scaled, see there). `tests/executors.rs` runs the same kind of cases on every
//! backend; this file keeps the fast executor's own sweeps (large layers, Winograd tiles,
//! every output-channel blocking) and its pool, cache, thread and error behaviour.
//!
//! Golden PyTorch vectors: see `golden_pytorch_vectors` at the end (a hook that runs every
//! `tests/data/golden/fast_cpu/*.safetensors` it finds).

mod harness;

use harness::backends::Backend;
use harness::cases::{
    branchy_plan, conv_case, depthwise_case, ep, rand_level, rand_tensor, rng,
    shuffle_eltwise_case, Case, ConvSpec, EpFlags, Worst, BRANCHY_IN, BRANCHY_REDUCTION, NONE,
    PRELU, RELU,
};
use harness::plan::node;
use rand::Rng;
use tunable::plan::{conv_out_dim, LevelVec, Op, Plan};
use tunable::tensor::{Shape, Tensor};
use tunable::testing::cpu::fast::{bench_net, FastOptions, FastPlan, Kernel, Winograd};
use tunable::testing::cpu::reference;
use tunable::Error;

const AVX2: Backend = Backend::FAST_AVX2;
const PORTABLE: Backend = Backend::FAST_PORTABLE;
/// The two SIMD kernels (AVX-512 falls back to AVX2 on a CPU without it): each case runs on
/// both.
const SIMD: [Backend; 2] = [Backend::FAST_AVX512, AVX2];

/// A conv case: the spec and the input's height and width.
type ConvCase = (ConvSpec, usize, usize);

/// A stride-1 conv of `cin -> cout`, k x k, without deltas, a bias-only epilogue and no noise
/// channel; tests override the rest with `..spec(..)`.
fn spec(cin: usize, cout: usize, k: usize) -> ConvSpec {
    ConvSpec::new(cin, cout, k, 1, 0, ep(false, NONE, None))
}

const CHANNELS: [usize; 5] = [1, 3, 5, 17, 64];
const SIZES: [(usize, usize); 6] = [(1, 1), (2, 3), (3, 2), (7, 5), (5, 7), (33, 65)];

/// Runs `cases` in order on `backend`, drawing every weight and input from one rng seeded with
/// `seed`, and reports the largest difference under `name`.
fn check_conv_cases(
    name: &str,
    seed: u64,
    backends: &[Backend],
    cases: impl IntoIterator<Item = ConvCase>,
) {
    let mut rng = rng(seed);
    let mut w = Worst::new(name);
    for (s, h, wd) in cases {
        let case = conv_case(&mut rng, &s, h, wd);
        for backend in backends {
            backend.check(&mut w, &case);
        }
    }
    w.print();
}

// ---------------------------------------------------------------------------------------------
// Conv

#[test]
fn conv_every_epilogue_and_noise() {
    let mut cases = Vec::new();
    for ep in EpFlags::all() {
        for noise in [false, true] {
            for (h, w, stride) in [(7, 5, 1), (9, 11, 2)] {
                let s = ConvSpec {
                    stride,
                    p: 2,
                    ep,
                    noise,
                    ..spec(5, 17, 3)
                };
                cases.push((s, h, w));
            }
        }
    }
    check_conv_cases("conv_every_epilogue_and_noise", 1, &SIMD, cases);
}

#[test]
fn conv_kernel_sizes_strides_tiny_images() {
    let ep = ep(true, PRELU, Some(1));
    let mut cases = Vec::new();
    for (h, w) in SIZES {
        for k in [1, 3, 5, 7] {
            for stride in [1, 2] {
                for noise in [false, true] {
                    let s = ConvSpec {
                        stride,
                        p: 1,
                        ep,
                        noise,
                        ..spec(3, 5, k)
                    };
                    cases.push((s, h, w));
                }
            }
        }
    }
    let name = "conv_kernel_sizes_strides_tiny_images";
    check_conv_cases(name, 2, &SIMD, cases);
}

#[test]
fn conv_channel_counts() {
    let mut cases = Vec::new();
    for cin in CHANNELS {
        for cout in CHANNELS {
            let s = ConvSpec {
                ep: ep(false, RELU, Some(2)),
                ..spec(cin, cout, 3)
            };
            cases.push((s, 13, 29));
        }
    }
    // Every output-channel blocking (1..=9 vectors, partial last vectors).
    for cout in [8, 9, 16, 24, 25, 32, 40, 48, 56, 72] {
        let s = ConvSpec {
            p: 1,
            ep: ep(true, NONE, Some(1)),
            ..spec(4, cout, 3)
        };
        cases.push((s, 6, 31));
    }
    check_conv_cases("conv_channel_counts", 3, &SIMD, cases);
}

#[test]
fn conv_deltas() {
    let mut cases = Vec::new();
    for p in 0..=4 {
        for k in [1, 3, 5] {
            let s = ConvSpec {
                stride: 1 + p % 2,
                p,
                ep: ep(true, RELU, Some(2)),
                noise: p == 3,
                ..spec(17, 5, k)
            };
            cases.push((s, 11, 9));
        }
    }
    check_conv_cases("conv_deltas", 4, &SIMD, cases);
}

#[test]
fn conv_random_sweep() {
    let mut rng = rng(5);
    let eps = EpFlags::all();
    let mut w = Worst::new("conv_random_sweep");
    let mut done = 0;
    while done < 120 {
        let (h, wd) = SIZES[rng.gen_range(0..SIZES.len())];
        let s = ConvSpec {
            stride: rng.gen_range(1..=2),
            p: rng.gen_range(0..=4),
            ep: eps[rng.gen_range(0..eps.len())],
            noise: rng.gen_bool(0.25),
            ..spec(
                CHANNELS[rng.gen_range(0..5)],
                CHANNELS[rng.gen_range(0..5)],
                [1, 3, 5, 7][rng.gen_range(0..4)],
            )
        };
        if h * wd * s.cin * s.cout * s.k * s.k > 40_000_000 {
            continue; // keep the reference affordable
        }
        let case = conv_case(&mut rng, &s, h, wd);
        SIMD.iter().for_each(|b| b.check(&mut w, &case));
        done += 1;
    }
    w.print();
}

#[test]
fn conv_portable_kernel() {
    let mut cases = Vec::new();
    for (i, ep) in EpFlags::all().into_iter().enumerate() {
        let (h, w) = SIZES[i % SIZES.len()];
        let s = ConvSpec {
            stride: 1 + i % 2,
            p: i % 5,
            ep,
            noise: i % 3 == 0,
            ..spec(CHANNELS[i % 5], CHANNELS[(i / 5) % 5], [1, 3, 5, 7][i % 4])
        };
        cases.push((s, h, w));
    }
    check_conv_cases("conv_portable_kernel", 6, &[PORTABLE], cases);
}

#[test]
fn conv_large_layer() {
    // One layer of the benchmark network's size class: 48 -> 48, 3x3, with a residual.
    let s = ConvSpec {
        p: 1,
        ep: ep(false, NONE, Some(1)),
        ..spec(48, 48, 3)
    };
    check_conv_cases("conv_large_layer", 7, &SIMD, [(s, 37, 70)]);
}

/// The tolerance of Winograd F(6x6, 3x3), in units of the executor tests' tolerance: its
/// transforms' constants (21/4, 32, 1/90) round more than F(4x4, 3x3)'s (1.7x its largest
/// difference here).
const F6_TOLERANCE: f32 = 4.0;

/// Every stride-1 3x3 conv through Winograd F(4x4, 3x3) and F(6x6, 3x3) (whatever its channel
/// counts), and through the direct conv, on every kernel: partial tiles (sizes not a multiple
/// of 4 or 6, images smaller than a tile), channel tails, every epilogue, the noise channel,
/// deltas.
#[test]
fn conv_winograd_and_direct_3x3() {
    let mut rng = rng(17);
    let eps = EpFlags::all();
    let mut worst = [
        Worst::new("conv_winograd_and_direct_3x3 (winograd F(4x4))"),
        Worst::new("conv_winograd_and_direct_3x3 (direct)"),
        Worst::new("conv_winograd_and_direct_3x3 (winograd F(6x6))"),
    ];
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
                let s = ConvSpec {
                    p: i % 5,
                    ep: eps[i % eps.len()],
                    noise: i % 4 == 0,
                    ..spec(cin, cout, 3)
                };
                for (slot, winograd) in [Winograd::Always, Winograd::Never, Winograd::AlwaysF6]
                    .into_iter()
                    .enumerate()
                {
                    for kernel in [Kernel::Avx512, Kernel::Avx2, Kernel::Portable] {
                        if kernel == Kernel::Portable && i % 3 != 0 {
                            continue;
                        }
                        let opts = Backend::Fast(FastOptions { kernel, winograd });
                        let factor = if winograd == Winograd::AlwaysF6 {
                            F6_TOLERANCE
                        } else {
                            1.0
                        };
                        opts.check_scaled(&mut worst[slot], &conv_case(&mut rng, &s, h, w), factor);
                    }
                }
            }
        }
    }
    worst.iter().for_each(Worst::print);
}

// ---------------------------------------------------------------------------------------------
// Depthwise, eltwise, shuffles

#[test]
fn depthwise_cases() {
    let mut rng = rng(8);
    let mut w = Worst::new("depthwise_cases");
    let eps = EpFlags::all();
    for backend in [AVX2, PORTABLE] {
        for (i, &ch) in CHANNELS.iter().enumerate() {
            for (j, k) in [1, 3, 5, 7].into_iter().enumerate() {
                for (h, wd) in SIZES {
                    let ep = eps[(i * 4 + j + h) % eps.len()];
                    let p = (i + j) % 5;
                    let case = depthwise_case(&mut rng, k, p, ep, Shape::new(ch, h, wd));
                    backend.check(&mut w, &case);
                }
            }
        }
    }
    w.print();
}

#[test]
fn eltwise_and_shuffles() {
    let mut rng = rng(9);
    let mut w = Worst::new("eltwise_and_shuffles");
    for backend in [AVX2, PORTABLE] {
        for &ch in &CHANNELS {
            for (h, wd) in [(2, 2), (6, 10), (34, 66)] {
                for (vi, with_v) in [false, true].into_iter().enumerate() {
                    for act in [NONE, RELU, PRELU] {
                        let p = (vi + act as usize + ch) % 5;
                        let shape = Shape::new(ch, h, wd);
                        let case = shuffle_eltwise_case(&mut rng, p, with_v, act, shape);
                        backend.check(&mut w, &case);
                    }
                }
            }
        }
    }
    w.print();
}

#[test]
fn shuffles_are_exact() {
    let mut rng = rng(10);
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
        let input = rand_tensor(&mut rng, Shape::new(ch, 12, 20));
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
    let mut rng = rng(11);
    let mut w = Worst::new("bench_net_small_matches_reference");
    for (h, wd) in [(2, 2), (18, 14), (40, 66)] {
        let case = Case {
            name: format!("bench net {h}x{wd}"),
            plan: plan.clone(),
            input: rand_tensor(&mut rng, Shape::new(3, h, wd)),
            level: rand_level(&mut rng),
            reduction: 8 * 9 * 6,
        };
        SIMD.iter().for_each(|b| b.check(&mut w, &case));
    }
    w.print();
}

#[test]
fn plan_lifetimes_and_level_cache() {
    let mut rng = rng(12);
    let plan = branchy_plan(&mut rng);
    let fast = FastPlan::new(&plan).unwrap();
    let mut w = Worst::new("plan_lifetimes_and_level_cache");
    let levels = [rand_level(&mut rng), rand_level(&mut rng)];
    for (h, wd) in [(1, 1), (9, 6), (31, 17)] {
        let input = rand_tensor(&mut rng, Shape::new(BRANCHY_IN, h, wd));
        // A, B, A, A: the cache must follow the level.
        for &l in [&levels[0], &levels[1], &levels[0], &levels[0]] {
            let want = reference::run_plan(&plan, &l, &input);
            let got = fast.run(&input, &l).unwrap();
            w.check(&format!("branchy {h}x{wd}"), &got, &want, BRANCHY_REDUCTION);
        }
    }
    w.print();
}

#[test]
fn concurrent_runs_at_different_levels() {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<FastPlan>();
    let mut rng = rng(13);
    let plan = bench_net::adafm_net_plan(16, 2, 13);
    let fast = FastPlan::new(&plan).unwrap();
    let input = rand_tensor(&mut rng, Shape::new(3, 24, 20));
    let levels: Vec<LevelVec> = (0..4).map(|_| rand_level(&mut rng)).collect();
    let wants: Vec<Tensor> = levels
        .iter()
        .map(|l| reference::run_plan(&plan, l, &input))
        .collect();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (fast, input, levels, wants) = (&fast, &input, &levels, &wants);
            s.spawn(move || {
                let mut w = Worst::new("concurrent");
                for r in 0..6 {
                    let i = (t + r) % 4;
                    let got = fast.run(input, &levels[i]).unwrap();
                    w.check("concurrent", &got, &wants[i], 16 * 9 * 6);
                }
            });
        }
    });
}

#[test]
fn errors() {
    let mut rng = rng(14);
    let plan = bench_net::adafm_net_plan(8, 1, 14);
    let fast = FastPlan::new(&plan).unwrap();
    let l = [0.0; 4];
    assert!(matches!(
        fast.run(&rand_tensor(&mut rng, Shape::new(4, 8, 8)), &l),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        fast.run(&rand_tensor(&mut rng, Shape::new(3, 7, 8)), &l),
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
    let mut rng = rng(15);
    let input = rand_tensor(&mut rng, Shape::new(3, 64, 64));
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
    let mut rng = rng(16);
    for (h, w) in SIZES {
        for k in [1, 3, 5, 7] {
            let s = ConvSpec {
                stride: 2,
                ..spec(1, 1, k)
            };
            let case = conv_case(&mut rng, &s, h, w);
            let got = FastPlan::new(&case.plan)
                .unwrap()
                .run(&case.input, &[0.0; 4]);
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
        let mut w = Worst::new(&format!("{} (vs pytorch)", path.display()));
        w.check(&path.display().to_string(), &got, &expected, 48 * 9 * 20);
        w.print();
        n += 1;
    }
    println!("{n} golden files checked");
}
