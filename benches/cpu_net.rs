//! The fast CPU executor on the AdaFM-Net-style color network (48 channels, 8 residual
//! blocks; 44.85 GFLOP at 512x512), at 256x256 and 512x512.
//!
//! ```text
//! cargo bench --bench cpu_net                  # summary table + criterion
//! cargo bench --bench cpu_net -- --quick       # summary table only
//! cargo bench --bench cpu_net -- --quick --direct  # ... without Winograd (direct convs only)
//! cargo bench --bench cpu_net -- --quick --f6      # ... every 3x3 conv as Winograd F(6x6, 3x3) (--f4: F(4x4))
//! cargo bench --bench cpu_net -- --layer       # one 48 -> 48 layer, 1 and 2 threads
//! cargo bench --bench cpu_net -- --export-only # only write target/bench_net.safetensors
//! cargo bench --bench cpu_net -- --quick --model weights/denoise-color.safetensors --sigma 25
//! ```
//! Writes the network's weights at the bench level (PyTorch layout) and a 64x64 input/output
//! pair to `target/bench_net.safetensors` for `tools/bench_peers.py` (with `--model`, the
//! model's convs mixed at that sigma, to `target/bench_model.safetensors`).
//! `TUNABLE_FAST_KERNEL=avx2` times the AVX2 kernel on an AVX-512 CPU.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use tunable::model::{FtnFn, ModelFile};
use tunable::plan::{FtnParams, LevelVec, Plan};
use tunable::tensor::{Shape, Tensor};
use tunable::testing::cpu::fast::{bench_net, FastOptions, FastPlan, Winograd};
use tunable::testing::cpu::reference;
use tunable::{Level, Lowering};

const CHANNELS: usize = 48;
const BLOCKS: usize = 8;
const SEED: u64 = 2024;
const LEVEL: LevelVec = [0.5, 0.0, 0.0, 0.0];
const SIZES: [usize; 2] = [256, 512];

fn input(size: usize, seed: u32) -> Tensor {
    // A smooth image with some texture, values in [0, 1].
    let s = Shape::new(3, size, size);
    let data = (0..s.len())
        .map(|i| {
            let (c, y, x) = (i / (size * size), i / size % size, i % size);
            let h = (x as u32).wrapping_mul(73856093)
                ^ (y as u32).wrapping_mul(19349663)
                ^ (c as u32 + seed);
            0.5 + 0.3 * ((x + c * 7) as f32 * 0.05).sin() * ((y as f32) * 0.03).cos()
                + 0.1 * ((h % 1000) as f32 / 1000.0)
        })
        .collect();
    Tensor::from_vec(s, data)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The network timed: the bench network at `LEVEL`, or a model file at a sigma.
struct Net {
    plan: Plan,
    level: LevelVec,
    /// The file `export` writes, in the target dir.
    export_name: &'static str,
    /// The shipped models' backbone adds the head's output to the last block's (a long skip,
    /// tools/nets.py); the bench network has none. Told to the peers in the metadata.
    long_skip: bool,
    what: String,
}

impl Net {
    fn bench() -> Net {
        Net {
            plan: bench_net::adafm_net_plan(CHANNELS, BLOCKS, SEED),
            level: LEVEL,
            export_name: "bench_net.safetensors",
            long_skip: false,
            what: format!("AdaFM-Net-style {CHANNELS}ch x {BLOCKS} blocks"),
        }
    }

    /// `--model FILE --sigma S`: the model's fused plan at sigma S (25 when not given).
    fn model(path: &str, sigma: f32) -> Net {
        let file = ModelFile::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let ftn = |w: &[f32], cout: usize, cin: usize, k: usize, p: &FtnParams| {
            Ok(reference::ftn_transform(w, cout, cin, k, p))
        };
        let ftn: FtnFn = &ftn;
        let plan = file.plan(Lowering::Fused, ftn).expect("lower the model");
        let level = Level::sigma(sigma)
            .resolve(&file.spec.levels)
            .expect("sigma inside the model's calibration");
        Net {
            plan,
            level,
            export_name: "bench_model.safetensors",
            long_skip: true,
            what: format!("{path} at sigma {sigma}"),
        }
    }
}

/// Writes the weights at the net's level and a 64x64 check pair for the peer benchmarks.
fn export(net: &Net, fast: &FastPlan) -> PathBuf {
    let (plan, level) = (&net.plan, &net.level);
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = bench_net::torch_weights(plan, level);
    let x = input(64, 1);
    let y = fast.run(&x, level).expect("run");
    tensors.push(("check.input".into(), vec![3, 64, 64], x.data));
    tensors.push(("check.output".into(), vec![3, 64, 64], y.data));
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, d)| (n, s, d.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    let meta = HashMap::from([
        ("channels".to_string(), CHANNELS.to_string()),
        ("blocks".to_string(), BLOCKS.to_string()),
        ("seed".to_string(), SEED.to_string()),
        ("level".to_string(), level.map(|v| v.to_string()).join(",")),
        ("long_skip".to_string(), net.long_skip.to_string()),
    ]);
    let dir = target_dir();
    std::fs::create_dir_all(&dir).expect("target dir");
    let path = dir.join(net.export_name);
    safetensors::serialize_to_file(views, Some(meta), &path).expect("write safetensors");
    path
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// CPU time of all the process's threads (Linux schedstat), in seconds.
fn process_cpu_s() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum::<u64>() as f64
        * 1e-9
}

/// Median and best wall time of `n` timed runs after two warm-ups, and the mean CPU time
/// (all threads) per run: on a machine shared with other work, CPU time / threads is what the
/// wall time would be on an idle one if the threads scaled perfectly.
fn time_runs(fast: &FastPlan, x: &Tensor, level: &LevelVec, n: usize) -> (Duration, Duration, f64) {
    for _ in 0..2 {
        black_box(fast.run(x, level).unwrap());
    }
    let cpu0 = process_cpu_s();
    let mut t: Vec<Duration> = (0..n)
        .map(|_| {
            let s = Instant::now();
            black_box(fast.run(x, level).unwrap());
            s.elapsed()
        })
        .collect();
    let cpu = (process_cpu_s() - cpu0) / n as f64;
    t.sort();
    (t[n / 2], t[0], cpu)
}

/// FMA throughput of one core (12 independent chains, no loads): the roofline, for AVX2
/// and (when the CPU has it) AVX-512.
#[cfg(target_arch = "x86_64")]
fn peak_gflops() -> (f64, Option<f64>) {
    use std::arch::x86_64::*;
    #[target_feature(enable = "avx2,fma")]
    unsafe fn spin256(n: usize) -> f32 {
        let mut a = [_mm256_set1_ps(1.0); 12];
        let m = _mm256_set1_ps(0.999_999);
        let c = _mm256_set1_ps(1e-7);
        for _ in 0..n {
            for v in a.iter_mut() {
                *v = _mm256_fmadd_ps(*v, m, c);
            }
        }
        let mut s = _mm256_setzero_ps();
        for v in a {
            s = _mm256_add_ps(s, v);
        }
        _mm256_cvtss_f32(s)
    }
    #[target_feature(enable = "avx512f")]
    unsafe fn spin512(n: usize) -> f32 {
        let mut a = [_mm512_set1_ps(1.0); 12];
        let m = _mm512_set1_ps(0.999_999);
        let c = _mm512_set1_ps(1e-7);
        for _ in 0..n {
            for v in a.iter_mut() {
                *v = _mm512_fmadd_ps(*v, m, c);
            }
        }
        let mut s = _mm512_setzero_ps();
        for v in a {
            s = _mm512_add_ps(s, v);
        }
        _mm512_reduce_add_ps(s)
    }
    let n = 50_000_000;
    let best = |f: &dyn Fn() -> f32| {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                black_box(f());
                t.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min)
    };
    let avx2 = (n * 12 * 16) as f64 / best(&|| unsafe { spin256(black_box(n)) }) / 1e9;
    let avx512 = std::arch::is_x86_feature_detected!("avx512f")
        .then(|| (n * 12 * 32) as f64 / best(&|| unsafe { spin512(black_box(n)) }) / 1e9);
    (avx2, avx512)
}

/// Nanoseconds this thread has run on a CPU (Linux schedstat), immune to waiting.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A chain of `n` 48 -> 48 3x3 convs (ReLU; with `combine`, plus their input) on a
/// 48-channel input.
fn conv_chain(n: usize, combine: bool) -> Plan {
    use tunable::plan::{Activation, Combine, Conv2d, Epilogue, Mix, Node, Op};
    let c = CHANNELS;
    let nodes = (0..n)
        .map(|i| Node {
            name: format!("conv{i}"),
            op: Op::Conv2d(Conv2d {
                cin: c,
                cout: c,
                k: 3,
                stride: 1,
                mix: Mix::none(),
                weight: (0..c * c * 9)
                    .map(|j| ((j * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.07)
                    .collect(),
                epilogue: Epilogue {
                    bias: vec![0.01; c],
                    scale_shift: None,
                    act: Activation::Relu,
                    combine: combine.then(|| Combine {
                        u: vec![1.0; c],
                        v: vec![vec![0.5; c]],
                    }),
                },
                noise_channel: None,
                unfused_mix: false,
            }),
            input: i,
            others: if combine { vec![i] } else { vec![] },
            output: i + 1,
        })
        .collect();
    Plan {
        in_channels: c,
        num_tensors: n + 1,
        nodes,
        output: n,
    }
}

/// One 48 -> 48 3x3 conv at 256x256 (the body layer at 512x512) on one thread (CPU time)
/// and on two (wall time): (chain of 9 - chain of 1) / 8, best of 5.
fn layer_bench() {
    #[cfg(target_arch = "x86_64")]
    {
        let (avx2, avx512) = peak_gflops();
        println!("peak FMA throughput, one core: AVX2 {avx2:.1} GFLOP/s");
        if let Some(p) = avx512 {
            println!("peak FMA throughput, one core: AVX-512 {p:.1} GFLOP/s");
        }
    }
    let x = {
        let s = Shape::new(CHANNELS, 256, 256);
        Tensor::from_vec(
            s,
            (0..s.len())
                .map(|i| ((i * 31 % 997) as f32 / 997.0) - 0.3)
                .collect(),
        )
    };
    let gflop = 2.0 * 48.0 * 48.0 * 9.0 * 256.0 * 256.0 / 1e9;
    let cases: Vec<(usize, bool)> = match std::env::var("CPU_NET_LAYER").as_deref() {
        Ok("plain") => vec![(1, false)],
        Ok("combine") => vec![(1, true)],
        _ => vec![(1, false), (1, true), (2, false)],
    };
    for (threads, combine) in cases {
        let long = FastPlan::new(&conv_chain(9, combine)).unwrap();
        let short = FastPlan::new(&conv_chain(1, combine)).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let time = |f: &FastPlan| {
                black_box(f.run(&x, &LEVEL).unwrap());
                (0..5)
                    .map(|_| {
                        let (t, c) = (Instant::now(), thread_cpu_ns());
                        black_box(f.run(&x, &LEVEL).unwrap());
                        match (threads, c, thread_cpu_ns()) {
                            (1, Some(a), Some(b)) => (b - a) as f64 * 1e-9,
                            _ => t.elapsed().as_secs_f64(),
                        }
                    })
                    .fold(f64::MAX, f64::min)
            };
            let per = (time(&long) - time(&short)) / 8.0;
            let how = if threads == 1 {
                "cpu time"
            } else {
                "wall time"
            };
            println!(
                "{threads} thread(s), {how}: 48->48 3x3 conv{} at 256x256: {:.2} ms, {:.1} GFLOP/s",
                if combine { " + combine" } else { "" },
                per * 1e3,
                gflop / per
            );
        });
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        let i = args.iter().position(|a| a == flag)?;
        args.get(i + 1).cloned()
    };
    let net = match value("--model") {
        Some(path) => {
            let sigma = value("--sigma").map_or(25.0, |s| s.parse().expect("--sigma S"));
            Net::model(&path, sigma)
        }
        None => Net::bench(),
    };
    let (plan, level) = (&net.plan, net.level);
    // --direct: no Winograd (every conv as the direct implicit GEMM).
    let direct = args.iter().any(|a| a == "--direct");
    // --f4 / --f6: every stride-1 3x3 conv as Winograd F(4x4, 3x3) / F(6x6, 3x3).
    let winograd = if direct {
        Winograd::Never
    } else if args.iter().any(|a| a == "--f6") {
        Winograd::AlwaysF6
    } else if args.iter().any(|a| a == "--f4") {
        Winograd::Always
    } else {
        Winograd::Auto
    };
    let options = FastOptions {
        winograd,
        ..FastOptions::default()
    };
    let fast = FastPlan::with_options(plan, options).expect("FastPlan::new");
    let path = export(&net, &fast);
    eprintln!("wrote {}", path.display());
    if args.iter().any(|a| a == "--export-only") {
        return;
    }
    // --once N [R]: R runs (default 1) at N x N (for valgrind/perf, or with
    // TUNABLE_FAST_PROFILE=1 the last run's per-node times once warm), nothing printed.
    if let Some(i) = args.iter().position(|a| a == "--once") {
        let n: usize = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(256);
        let runs: usize = args.get(i + 2).and_then(|v| v.parse().ok()).unwrap_or(1);
        let x = input(n, 0);
        for _ in 0..runs {
            black_box(fast.run(&x, &level).unwrap());
        }
        return;
    }
    if args.iter().any(|a| a == "--layer") {
        layer_bench();
        return;
    }

    println!(
        "fast CPU executor, {}, kernel {:?}, winograd {:?}, {} rayon threads",
        net.what,
        fast.kernel(),
        winograd,
        rayon::current_num_threads()
    );
    println!("| size | GFLOP | median ms | best ms | GFLOP/s (median) | CPU ms/run | pool MB | peak RSS MB |");
    println!("|---|---|---|---|---|---|---|---|");
    for size in SIZES {
        let x = input(size, 0);
        let gflop = bench_net::plan_flops(plan, size, size).unwrap() / 1e9;
        fast.release_memory();
        let n = if size >= 512 { 15 } else { 40 };
        let (med, best, cpu) = time_runs(&fast, &x, &level, n);
        // Machine-readable, for tools/bench_peers.py.
        eprintln!(
            "RESULT size={size} median_ms={:.3} best_ms={:.3} cpu_ms={:.3} direct={direct}",
            med.as_secs_f64() * 1e3,
            best.as_secs_f64() * 1e3,
            cpu * 1e3
        );
        println!(
            "| {size}x{size} | {gflop:.2} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} |",
            med.as_secs_f64() * 1e3,
            best.as_secs_f64() * 1e3,
            gflop / med.as_secs_f64(),
            cpu * 1e3,
            fast.retained_bytes() as f64 / (1 << 20) as f64,
            peak_rss_mb()
        );
    }
    // What a level change costs: mixing (and re-laying out) every weight for the new level.
    {
        let x = input(64, 0);
        let levels = [[0.25, 0.0, 0.0, 0.0], [0.75, 0.0, 0.0, 0.0]];
        let mut best = [f64::MAX; 2];
        for i in 0..20 {
            let l = &levels[i % 2];
            let t = Instant::now();
            black_box(fast.run(&x, l).unwrap());
            let changed = t.elapsed().as_secs_f64();
            let t = Instant::now();
            black_box(fast.run(&x, l).unwrap());
            let cached = t.elapsed().as_secs_f64();
            best = [best[0].min(changed), best[1].min(cached)];
        }
        println!(
            "level change: a 64x64 run takes {:.2} ms after a level change, {:.2} ms at the cached level (mixing: {:.2} ms)",
            best[0] * 1e3,
            best[1] * 1e3,
            (best[0] - best[1]) * 1e3
        );
    }
    if args.iter().any(|a| a == "--quick") {
        return;
    }

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8))
        .configure_from_args();
    let mut g = c.benchmark_group("cpu_net");
    for size in SIZES {
        let x = input(size, 0);
        let flops = bench_net::plan_flops(plan, size, size).unwrap();
        g.throughput(Throughput::Elements(flops as u64)); // elements = FLOP
        g.bench_with_input(BenchmarkId::new("fast", size), &x, |b, x| {
            b.iter(|| fast.run(x, &level).unwrap())
        });
    }
    g.finish();
    c.final_summary();
}
