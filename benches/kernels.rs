//! Per-kernel timings, llm.c style: each kernel is checked once against the CPU reference, then
//! timed on the GPU and on the fast CPU executor; one table of ms, GFLOP/s, GB/s and the share of
//! a stated peak.
//!
//! cargo bench --bench kernels [-- --sizes 256,512 --reps 3 --chain 4 --backends gpu,cpu]
//!
//! A kernel's time is taken from two plans: a chain of `--chain` copies of the node and a chain
//! of one, each run `--reps` times (median); the difference over `chain - 1` is the time of one
//! dispatch without the upload and readback both plans share. GFLOP/s counts a direct conv's
//! FLOPs (2 * cin * cout * k * k per output pixel) for every conv row, so a faster algorithm
//! shows as a higher effective rate. GB/s counts one read of every input and weight and one write
//! of the output. Peaks are the published fp32 figures of the adapters named in `PEAKS`;
//! anything else (lavapipe, the CPU) says "unknown".
//! The software adapter counts (lavapipe: keep `--sizes` small, 64 or 128).

use std::time::Instant;

use tunable::plan::{
    Activation, Affine, Conv2d, Depthwise, Eltwise, Epilogue, LevelVec, Mix, Node, Op, Plan,
};
use tunable::tensor::{Shape, Tensor};
use tunable::testing::cpu::fast::FastPlan;
use tunable::testing::cpu::reference;
use tunable::testing::gpu::ops::winograd::{with_mode, WinogradMode};
use tunable::testing::gpu::{GpuContext, GpuPlan};

/// (adapter name contains, fp32 TFLOP/s, memory TB/s): published figures.
const PEAKS: &[(&str, f64, f64)] = &[("H200", 66.9, 4.8), ("H100", 66.9, 3.35)];

const C: usize = 48;

struct Case {
    name: &'static str,
    op: fn(p: usize) -> Op,
    deltas: usize,
    /// Whether the node reads tensor 0 as its second operand (eltwise `a + b`).
    reads_input: bool,
    flops_per_px: f64,
    weight_floats: usize,
    /// The GPU conv path (the rule picks Winograd for the 3x3 rows; `Never` times the direct
    /// conv, as `TUNABLE_GPU_WINOGRAD=0` would).
    mode: WinogradMode,
}

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = tunable::noise::Rng::new(seed);
    (0..n).map(|_| (rng.uniform() as f32 - 0.5) * 0.1).collect()
}

fn mix(p: usize) -> Mix {
    Mix {
        coefs: (0..p).map(|_| Affine::axis(0, 1.0)).collect(),
    }
}

fn conv(k: usize, p: usize, unfused_mix: bool) -> Op {
    Op::Conv2d(Conv2d {
        cin: C,
        cout: C,
        k,
        stride: 1,
        mix: mix(p),
        weight: values((p + 1) * C * C * k * k, 1),
        epilogue: Epilogue {
            bias: values((p + 1) * C, 2),
            scale_shift: None,
            act: Activation::Relu,
            combine: None,
        },
        noise_channel: None,
        unfused_mix,
    })
}

fn cases() -> Vec<Case> {
    let conv_flops = |k: usize| 2.0 * (C * C * k * k) as f64;
    vec![
        Case {
            name: "conv 3x3 48->48, fused mix P=1, ReLU (GPU: Winograd F(4x4,3x3))",
            op: |p| conv(3, p, false),
            deltas: 1,
            reads_input: false,
            flops_per_px: conv_flops(3),
            weight_floats: 2 * C * C * 9,
            mode: WinogradMode::Auto,
        },
        Case {
            name: "conv 3x3 48->48, fused mix P=1, ReLU (GPU: direct)",
            op: |p| conv(3, p, false),
            deltas: 1,
            reads_input: false,
            flops_per_px: conv_flops(3),
            weight_floats: 2 * C * C * 9,
            mode: WinogradMode::Never,
        },
        Case {
            name: "conv 3x3 48->48, unfused mix P=1 (mix pass + conv)",
            op: |p| conv(3, p, true),
            deltas: 1,
            reads_input: false,
            flops_per_px: conv_flops(3),
            weight_floats: 2 * C * C * 9,
            mode: WinogradMode::Auto,
        },
        Case {
            name: "conv 3x3 48->48, no knob",
            op: |p| conv(3, p, false),
            deltas: 0,
            reads_input: false,
            flops_per_px: conv_flops(3),
            weight_floats: C * C * 9,
            mode: WinogradMode::Auto,
        },
        Case {
            name: "conv 1x1 48->48, no knob",
            op: |p| conv(1, p, false),
            deltas: 0,
            reads_input: false,
            flops_per_px: conv_flops(1),
            weight_floats: C * C,
            mode: WinogradMode::Auto,
        },
        Case {
            name: "depthwise 3x3 x48, P=1",
            op: |p| {
                Op::Depthwise(Depthwise {
                    channels: C,
                    k: 3,
                    mix: mix(p),
                    weight: values((p + 1) * C * 9, 3),
                    epilogue: Epilogue {
                        bias: values((p + 1) * C, 4),
                        scale_shift: None,
                        act: Activation::None,
                        combine: None,
                    },
                })
            },
            deltas: 1,
            reads_input: false,
            flops_per_px: 2.0 * (C * 9) as f64,
            weight_floats: 2 * C * 9,
            mode: WinogradMode::Auto,
        },
        Case {
            name: "eltwise u*a + v*b x48, P=1",
            op: |p| {
                Op::Eltwise(Eltwise {
                    channels: C,
                    mix: mix(p),
                    u: values((p + 1) * C, 5),
                    v: Some(values((p + 1) * C, 6)),
                    act: Activation::None,
                })
            },
            deltas: 1,
            reads_input: true,
            flops_per_px: 3.0 * C as f64,
            weight_floats: 0,
            mode: WinogradMode::Auto,
        },
    ]
}

/// `n` copies of the case's node, each reading the previous one's output.
fn chain(case: &Case, n: usize) -> Plan {
    let nodes = (0..n)
        .map(|i| Node {
            name: format!("k{i}"),
            op: (case.op)(case.deltas),
            input: i,
            others: if case.reads_input { vec![0] } else { vec![] },
            output: i + 1,
        })
        .collect();
    Plan {
        in_channels: C,
        num_tensors: n + 1,
        nodes,
        output: n,
    }
}

trait Runner {
    fn run(&self, x: &Tensor, level: &LevelVec) -> Tensor;
}
impl Runner for GpuPlan {
    fn run(&self, x: &Tensor, level: &LevelVec) -> Tensor {
        GpuPlan::run(self, x, level).expect("GPU run")
    }
}
impl Runner for FastPlan {
    fn run(&self, x: &Tensor, level: &LevelVec) -> Tensor {
        FastPlan::run(self, x, level).expect("fast CPU run")
    }
}

/// A backend's name and its chain-of-one and chain-of-N runners.
type Row = (String, Box<dyn Runner>, Box<dyn Runner>);

fn median_ms(r: &dyn Runner, x: &Tensor, level: &LevelVec, reps: usize) -> f64 {
    r.run(x, level); // first run: pipelines, buffers, packing
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            r.run(x, level);
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sizes: Vec<usize> = arg(&args, "--sizes", "256,512")
        .split(',')
        .map(|s| s.trim().parse().expect("--sizes"))
        .collect();
    let reps: usize = arg(&args, "--reps", "3").parse().expect("--reps");
    let n: usize = arg(&args, "--chain", "4").parse().expect("--chain");
    assert!(n >= 2, "--chain must be at least 2");
    let backends = arg(&args, "--backends", "gpu,cpu");
    let level: LevelVec = [0.5, 0.0, 0.0, 0.0];

    let gpu = if backends.contains("gpu") {
        match GpuContext::new() {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("kernels bench: no GPU ({e})");
                None
            }
        }
    } else {
        None
    };
    let gpu_name = gpu.as_ref().map(|c| c.info().name.clone());
    let peak = |name: &str| PEAKS.iter().find(|(n, _, _)| name.contains(n));

    println!("| backend | kernel | size | ms | GFLOP/s | GB/s | % of fp32 peak | max diff vs reference |");
    println!("|---|---|---|---|---|---|---|---|");
    for case in cases() {
        for &s in &sizes {
            if case.mode == WinogradMode::Never && !backends.contains("gpu") {
                continue; // the same CPU row as the case before
            }
            let x = Tensor::from_vec(Shape::new(C, s, s), values(C * s * s, 7));
            let one = chain(&case, 1);
            let many = chain(&case, n);
            let want = reference::run_plan(&one, &level, &x);
            let mut rows: Vec<Row> = vec![];
            if let (Some(ctx), Some(name)) = (&gpu, &gpu_name) {
                let (a, b) = with_mode(case.mode, || {
                    let a = GpuPlan::new(ctx.clone(), &one).expect("GPU plan");
                    (a, GpuPlan::new(ctx.clone(), &many).expect("GPU plan"))
                });
                rows.push((format!("gpu: {name}"), Box::new(a), Box::new(b)));
            }
            if backends.contains("cpu") {
                let a = FastPlan::new(&one).expect("fast plan");
                let b = FastPlan::new(&many).expect("fast plan");
                rows.push(("fast CPU".to_string(), Box::new(a), Box::new(b)));
            }
            for (backend, one_run, many_run) in rows {
                let diff = one_run.run(&x, &level).max_abs_diff(&want);
                let t1 = median_ms(one_run.as_ref(), &x, &level, reps);
                let tn = median_ms(many_run.as_ref(), &x, &level, reps);
                let ms = ((tn - t1) / (n - 1) as f64).max(1e-6);
                let px = (s * s) as f64;
                let gflops = case.flops_per_px * px / (ms * 1e6);
                let reads = if case.reads_input { 2.0 } else { 1.0 };
                let bytes = 4.0 * ((reads + 1.0) * (C as f64) * px + case.weight_floats as f64);
                let gbs = bytes / (ms * 1e6);
                let share = peak(&backend)
                    .map(|(_, tf, _)| format!("{:.1}", 100.0 * gflops / (tf * 1e3)))
                    .unwrap_or_else(|| "unknown".into());
                println!(
                    "| {backend} | {} | {s}x{s} | {ms:.2} | {gflops:.1} | {gbs:.2} | {share} | {diff:.2e} |",
                    case.name
                );
            }
        }
    }
}
