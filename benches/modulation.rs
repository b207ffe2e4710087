//! Fused vs unfused modulation: the time of one output when the level changes before every
//! run, for each shipped family, with the plain network (no knob) as the floor.
//!
//! `cargo bench --bench modulation` runs criterion groups and then prints one table of medians
//! and ratios measured in the same run. Backends: the fast CPU executor always; the GPU when a
//! real adapter exists (or `TUNABLE_BENCH_GPU=1` forces a software one — slow: shrink with
//! `TUNABLE_BENCH_SIZE=64`). Image: 256x256 color unless `TUNABLE_BENCH_SIZE` says otherwise.
//! `TUNABLE_BENCH_BACKENDS=gpu` (or `cpu`) times one executor only. The table interleaves the
//! plain, fused and unfused runs round by round (`TUNABLE_BENCH_ROUNDS`, default 15) so they
//! share the machine's load; `TUNABLE_BENCH_TABLE_ONLY=1` skips criterion's groups.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tunable::plan::LevelVec;
use tunable::tensor::{Shape, Tensor};
use tunable::{BackendChoice, Engine, EngineOptions, Lowering, Model};

/// (label, file) of the models compared; the first is the floor.
const MODELS: &[(&str, &str)] = &[
    ("plain", "weights/denoise-plain-sigma20-color.safetensors"),
    ("dni", "weights/denoise-dni-color.safetensors"),
    ("adafm", "weights/denoise-adafm-color.safetensors"),
    ("ftn", "weights/denoise-ftn-color.safetensors"),
    ("cfsnet", "weights/denoise-cfsnet-color.safetensors"),
];

/// A whole number from the environment, or `default`.
fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// `TUNABLE_BENCH_BACKENDS=cpu,gpu` (default both) picks the executors to time.
fn wanted(backend: &str) -> bool {
    std::env::var("TUNABLE_BENCH_BACKENDS")
        .map(|v| v.split(',').any(|b| b.trim() == backend))
        .unwrap_or(true)
}

fn engines() -> Vec<(String, Engine)> {
    let quiet = |backend| EngineOptions {
        backend,
        quiet: true,
        ..Default::default()
    };
    let mut out = vec![];
    if wanted("cpu") {
        out.push((
            "cpu".to_string(),
            Engine::with_options(quiet(BackendChoice::Cpu)).expect("cpu engine"),
        ));
    }
    if !wanted("gpu") {
        return out;
    }
    match Engine::with_options(quiet(BackendChoice::Gpu)) {
        Ok(e) => {
            let software = e.gpu_context().map(|c| c.software_only()).unwrap_or(true);
            if !software || std::env::var("TUNABLE_BENCH_GPU").is_ok() {
                out.push((format!("gpu: {}", e.describe()), e));
            } else {
                eprintln!("modulation bench: skipping the software GPU adapter {} (TUNABLE_BENCH_GPU=1 forces it)", e.describe());
            }
        }
        Err(e) => eprintln!("modulation bench: no GPU ({e})"),
    }
    out
}

/// Alternates the level between two values so every run sees a new level.
fn levels(model: &Model) -> [LevelVec; 2] {
    let mut a = [0.0; 4];
    let mut b = [0.0; 4];
    if !model.axes().is_empty() {
        a[0] = 0.3;
        b[0] = 0.7;
    }
    [a, b]
}

fn input(s: usize) -> Tensor {
    let mut rng = tunable::noise::Rng::new(1);
    Tensor::from_vec(
        Shape::new(3, s, s),
        (0..3 * s * s).map(|_| rng.uniform() as f32).collect(),
    )
}

/// Medians over `rounds` interleaved rounds of (plain, fused, unfused), each run at a new level,
/// so that all three see the same machine load; also the median of the per-round ratios
/// unfused / fused and fused / plain, which is steadier than the ratio of medians.
struct Sitting {
    fused: Duration,
    unfused: Option<Duration>,
    plain: Duration,
    unfused_over_fused: Option<f64>,
    fused_over_plain: f64,
}

fn median<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN timings"));
    v[v.len() / 2]
}

fn sit(
    plain: &Model,
    fused: &Model,
    unfused: Option<&Model>,
    x: &Tensor,
    rounds: usize,
) -> Sitting {
    let timed = |m: &Model, i: usize| {
        let lv = levels(m);
        let t = Instant::now();
        m.run_plan(x, &lv[i % 2]).expect("run");
        t.elapsed()
    };
    let (mut p, mut f, mut u) = (vec![], vec![], vec![]);
    for i in 0..rounds {
        p.push(timed(plain, i));
        f.push(timed(fused, i));
        if let Some(m) = unfused {
            u.push(timed(m, i));
        }
    }
    let ratio = |a: &[Duration], b: &[Duration]| {
        median(
            a.iter()
                .zip(b)
                .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
                .collect(),
        )
    };
    let unfused_over_fused = unfused.map(|_| ratio(&u, &f));
    let fused_over_plain = ratio(&f, &p);
    Sitting {
        fused: median(f),
        unfused: unfused.map(|_| median(u)),
        plain: median(p),
        unfused_over_fused,
        fused_over_plain,
    }
}

/// `TUNABLE_BENCH_TABLE_ONLY=1` skips the criterion groups (for slow software adapters).
fn table_only() -> bool {
    std::env::var("TUNABLE_BENCH_TABLE_ONLY")
        .map(|v| v == "1")
        .unwrap_or(false)
}

fn bench(c: &mut Criterion) {
    let s = env_usize("TUNABLE_BENCH_SIZE", 256);
    let x = input(s);
    let n = env_usize("TUNABLE_BENCH_ROUNDS", 15);
    let mut table = vec![];
    for (backend, engine) in engines() {
        let (floor_label, floor_file) = MODELS[0];
        let plain = engine
            .load_with(floor_file, Lowering::Fused)
            .expect("load the plain model");
        for (label, file) in MODELS {
            if !Path::new(file).exists() {
                eprintln!("modulation bench: {file} missing, skipped");
                continue;
            }
            let fused = engine.load_with(file, Lowering::Fused).expect("load");
            // No knob: fused and unfused are the same network.
            let unfused = (*label != floor_label)
                .then(|| engine.load_with(file, Lowering::Unfused).expect("load"));
            if !table_only() {
                for model in std::iter::once(&fused).chain(unfused.as_ref()) {
                    let lv = levels(model);
                    let mut i = 0;
                    c.bench_function(&format!("{backend}/{label}/{:?}", model.lowering()), |b| {
                        b.iter(|| {
                            i += 1;
                            model.run_plan(&x, &lv[i % 2]).expect("run")
                        })
                    });
                }
            }
            table.push((
                backend.clone(),
                label.to_string(),
                sit(&plain, &fused, unfused.as_ref(), &x, n),
            ));
        }
    }
    println!("\nmodulation, {s}x{s} color, level changed before every run; medians of {n} interleaved rounds");
    println!("(plain, fused, unfused); the ratios are medians of the per-round ratios:");
    println!(
        "| backend | family | plain ms | fused ms | unfused ms | unfused / fused | fused / plain |"
    );
    println!("|---|---|---|---|---|---|---|");
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e3);
    for (backend, label, r) in table {
        let unf = r.unfused.map(ms).unwrap_or_else(|| "-".into());
        let ratio = r
            .unfused_over_fused
            .map(|v| format!("{v:.2}"))
            .unwrap_or_else(|| "-".into());
        println!(
            "| {backend} | {label} | {} | {} | {unf} | {ratio} | {:.2} |",
            ms(r.plain),
            ms(r.fused),
            r.fused_over_plain
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
