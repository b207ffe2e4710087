//! The same op cases on every executor against the reference: each case function below runs
//! as one test per backend (`test_backends!`: reference, fast CPU AVX-512 / AVX2, each also
//! with Winograd on every stride-1 3x3 / portable, GPU with fused / unfused weight mix), e.g.
//! `cargo test --release --test executors conv_deltas::gpu_unfused`. The cases come from
//! `harness::cases`, the tolerance is `harness::cases::Worst`'s; `--nocapture` prints the
//! largest difference of each test.
//!
//! Lavapipe runs ~1-2 GFLOP/s and compiles each kernel variant on first use, so the shapes
//! are small and each table reuses few variants; the executors' own sweeps live in
//! `tests/fast_cpu.rs` and `tests/gpu_kernels.rs`.

mod harness;

use harness::backends::Backend;
use harness::cases::{
    branchy_plan, conv_case, depthwise_case, eltwise_case, ep, rand_level, rand_tensor, rng,
    shuffle_eltwise_case, Case, ConvSpec, EpFlags, Worst, BRANCHY_IN, BRANCHY_REDUCTION, NONE,
    PRELU, RELU,
};
use tunable::tensor::Shape;
use tunable::testing::cpu::fast::bench_net;

/// Scale/shift, PReLU and a combine with one other tensor: most of the epilogue at once.
const FULL: EpFlags = ep(true, PRELU, Some(1));

/// Awkward image sizes: one pixel, one row, one column, smaller than a 3x3 kernel, odd, and
/// 33x65 (one past a tile and a vector in each direction).
const SIZES: [(usize, usize); 6] = [(1, 1), (1, 2), (2, 1), (2, 3), (7, 5), (33, 65)];
/// Channel tails: 1, 3, 5 (under a vector of 4 or 8), 17 (one past two vectors of 8).
const CHANNELS: [usize; 4] = [1, 3, 5, 17];

/// A conv case of a table: the spec and the input's height and width.
type ConvRow = (ConvSpec, usize, usize);

/// Checks the conv rows of a table, each drawn from its own seed (`seed + index`), so a failing
/// case is reproducible alone and a new row does not change the others.
fn check_conv_rows(b: Backend, w: &mut Worst, seed: u64, rows: impl IntoIterator<Item = ConvRow>) {
    for (i, (s, h, wd)) in rows.into_iter().enumerate() {
        b.check(w, &conv_case(&mut rng(seed + i as u64), &s, h, wd));
    }
}

// ---------------------------------------------------------------------------------------------
// Conv

/// All 24 epilogues (scale/shift x none/ReLU/PReLU x no combine / combine of 0, 1, 2 others),
/// on stride 1 and 2, with and without the noise channel.
fn conv_every_epilogue(b: Backend, w: &mut Worst) {
    let rows = EpFlags::all().into_iter().enumerate().map(|(i, ep)| {
        let s = ConvSpec {
            noise: i % 3 == 0,
            ..ConvSpec::new(5, 17, 3, 1 + i % 2, 2, ep)
        };
        (s, 7, 5)
    });
    check_conv_rows(b, w, 100, rows);
}
test_backends!(conv_every_epilogue);

/// k = 1, 3, 5, 7 on stride 1 and 2, on every awkward size (images smaller than the kernel).
fn conv_kernel_sizes_and_strides(b: Backend, w: &mut Worst) {
    let mut rows = Vec::new();
    for k in [1, 3, 5, 7] {
        for stride in [1, 2] {
            for &(h, wd) in &SIZES {
                let s = ConvSpec {
                    noise: k == 3,
                    ..ConvSpec::new(3, 5, k, stride, (k + 2 * stride) % 5, FULL)
                };
                rows.push((s, h, wd));
            }
        }
    }
    check_conv_rows(b, w, 200, rows);
}
test_backends!(conv_kernel_sizes_and_strides);

/// P = 0..4 deltas on the weights and every epilogue array, on k = 1 and 3.
fn conv_deltas(b: Backend, w: &mut Worst) {
    let mut rows = Vec::new();
    for p in 0..=4 {
        for k in [1, 3] {
            let s = ConvSpec {
                noise: p == 3,
                ..ConvSpec::new(17, 5, k, 1 + p % 2, p, ep(true, RELU, Some(2)))
            };
            rows.push((s, 11, 9));
        }
    }
    check_conv_rows(b, w, 300, rows);
}
test_backends!(conv_deltas);

/// Every pair of channel counts 1, 3, 5, 17, in and out.
fn conv_channel_counts(b: Backend, w: &mut Worst) {
    let mut rows = Vec::new();
    for cin in CHANNELS {
        for cout in CHANNELS {
            rows.push((ConvSpec::new(cin, cout, 3, 1, 1, FULL), 9, 13));
        }
    }
    check_conv_rows(b, w, 400, rows);
}
test_backends!(conv_channel_counts);

/// Every channel count on every awkward size, on the 3x3 conv (Winograd on the fast backend
/// that forces it: partial tiles everywhere).
fn conv_awkward_shapes(b: Backend, w: &mut Worst) {
    let mut rows = Vec::new();
    for (i, &(h, wd)) in SIZES.iter().enumerate() {
        for (j, &c) in CHANNELS.iter().enumerate() {
            let s = ConvSpec {
                noise: (i + j) % 2 == 0,
                ..ConvSpec::new(c, CHANNELS[(i + j) % 4], 3, 1, 1, FULL)
            };
            rows.push((s, h, wd));
        }
    }
    check_conv_rows(b, w, 500, rows);
}
test_backends!(conv_awkward_shapes);

// ---------------------------------------------------------------------------------------------
// Depthwise, eltwise, shuffles

/// k = 1, 3, 5, 7 on every channel count and awkward size; the epilogues and P cycle.
fn depthwise(b: Backend, w: &mut Worst) {
    let eps = [
        ep(false, NONE, None),
        ep(true, RELU, None),
        ep(false, PRELU, Some(2)),
        ep(true, NONE, Some(0)),
        FULL,
    ];
    let mut i = 0;
    for k in [1, 3, 5, 7] {
        for &c in &CHANNELS {
            for &(h, wd) in &[SIZES[0], SIZES[1], SIZES[4], SIZES[5]] {
                let (p, ep) = (i % 5, eps[i % eps.len()]);
                let case = depthwise_case(&mut rng(600 + i as u64), k, p, ep, Shape::new(c, h, wd));
                b.check(w, &case);
                i += 1;
            }
        }
    }
}
test_backends!(depthwise);

/// `act(u * a + v * b)` with and without `b`, every activation, P = 0..4, every channel
/// count and awkward size.
fn eltwise(b: Backend, w: &mut Worst) {
    let mut i = 0;
    for has_b in [false, true] {
        for act in [NONE, RELU, PRELU] {
            for &c in &CHANNELS {
                let (h, wd) = SIZES[i % SIZES.len()];
                let case = eltwise_case(
                    &mut rng(700 + i as u64),
                    i % 5,
                    has_b,
                    act,
                    Shape::new(c, h, wd),
                );
                b.check(w, &case);
                i += 1;
            }
        }
    }
}
test_backends!(eltwise);

/// Unshuffle -> 1x1 conv -> eltwise -> shuffle on even sizes (2x2 the smallest).
fn shuffles(b: Backend, w: &mut Worst) {
    let mut i = 0;
    for &c in &CHANNELS {
        for (h, wd) in [(2, 2), (2, 6), (6, 10), (34, 66)] {
            let (has_b, act) = (i % 2 == 0, (i % 3) as u8);
            let case = shuffle_eltwise_case(
                &mut rng(800 + i as u64),
                i % 5,
                has_b,
                act,
                Shape::new(c, h, wd),
            );
            b.check(w, &case);
            i += 1;
        }
    }
}
test_backends!(shuffles);

// ---------------------------------------------------------------------------------------------
// Small plans

/// The branchy plan (long and overlapping tensor lifetimes, a dead result, the output read by
/// a later node) and the benchmark's AdaFM net (8 channels, 2 blocks), at two levels each.
fn small_plans(b: Backend, w: &mut Worst) {
    let mut r = rng(900);
    let branchy = branchy_plan(&mut r);
    let adafm = bench_net::adafm_net_plan(8, 2, 11);
    for (h, wd) in [(1, 1), (9, 6), (18, 14)] {
        for (name, plan, c, reduction) in [
            ("branchy", &branchy, BRANCHY_IN, BRANCHY_REDUCTION),
            ("adafm net", &adafm, 3, 8 * 9 * 6),
        ] {
            if name == "adafm net" && (h % 2 == 1 || wd % 2 == 1) {
                continue; // the net starts with an unshuffle
            }
            for _ in 0..2 {
                let case = Case {
                    name: format!("{name} {h}x{wd}"),
                    plan: plan.clone(),
                    input: rand_tensor(&mut r, Shape::new(c, h, wd)),
                    level: rand_level(&mut r),
                    reduction,
                };
                b.check(w, &case);
            }
        }
    }
}
test_backends!(small_plans);

/// The backends `test_backends!` makes a test for (keep the two in step), and the CPU ones
/// run everywhere.
#[test]
fn backend_table_lists_every_executor() {
    let names: Vec<String> = Backend::ALL.iter().map(|b| b.name()).collect();
    assert_eq!(
        names,
        [
            "reference",
            "fast-avx512",
            "fast-avx512-winograd",
            "fast-avx2",
            "fast-avx2-winograd",
            "fast-portable",
            "gpu-fused",
            "gpu-unfused"
        ]
    );
    assert!(Backend::ALL
        .iter()
        .filter(|b| !b.is_gpu())
        .all(|b| b.available()));
}
