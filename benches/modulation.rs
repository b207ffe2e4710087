//! Fused vs unfused modulation: the time of one output when the level changes before every
//! run, for each shipped family, with the plain network (no knob) as the floor.
//!
//! `cargo bench --bench modulation` runs criterion groups and then prints one table of medians
//! and ratios measured in the same run. Backends: the fast CPU executor always; the GPU when a
//! real adapter exists (or `TUNABLE_BENCH_GPU=1` forces a software one — slow: shrink with
//! `TUNABLE_BENCH_SIZE=64`). Image: 256x256 color unless `TUNABLE_BENCH_SIZE` says otherwise.
//! `TUNABLE_BENCH_BACKENDS=gpu` (or `cpu`) times one executor only.

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

fn size() -> usize {
    std::env::var("TUNABLE_BENCH_SIZE").ok().and_then(|s| s.parse().ok()).unwrap_or(256)
}

/// `TUNABLE_BENCH_BACKENDS=cpu,gpu` (default both) picks the executors to time.
fn wanted(backend: &str) -> bool {
    std::env::var("TUNABLE_BENCH_BACKENDS").map(|v| v.split(',').any(|b| b.trim() == backend)).unwrap_or(true)
}

fn engines() -> Vec<(String, Engine)> {
    let quiet = |backend| EngineOptions { backend, quiet: true, ..Default::default() };
    let mut out = vec![];
    if wanted("cpu") {
        out.push(("cpu".to_string(), Engine::with_options(quiet(BackendChoice::Cpu)).expect("cpu engine")));
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
    Tensor::from_vec(Shape::new(3, s, s), (0..3 * s * s).map(|_| rng.uniform() as f32).collect())
}

fn median_run(model: &Model, x: &Tensor, runs: usize) -> Duration {
    let lv = levels(model);
    let mut times: Vec<Duration> = (0..runs)
        .map(|i| {
            let t = Instant::now();
            model.run_plan(x, &lv[i % 2]).expect("run");
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn bench(c: &mut Criterion) {
    let s = size();
    let x = input(s);
    let mut table = vec![];
    for (backend, engine) in engines() {
        let mut floor = None;
        for (label, file) in MODELS {
            if !Path::new(file).exists() {
                eprintln!("modulation bench: {file} missing, skipped");
                continue;
            }
            let mut row = vec![];
            for lowering in [Lowering::Fused, Lowering::Unfused] {
                let model = engine.load_with(file, lowering).expect("load");
                let lv = levels(&model);
                let mut i = 0;
                let name = format!("{backend}/{label}/{lowering:?}");
                c.bench_function(&name, |b| {
                    b.iter(|| {
                        i += 1;
                        model.run_plan(&x, &lv[i % 2]).expect("run")
                    })
                });
                row.push(median_run(&model, &x, 7));
                if *label == "plain" {
                    break; // no knob: fused and unfused are the same network
                }
            }
            let fused = row[0];
            let floor_t = *floor.get_or_insert(fused);
            table.push((backend.clone(), label.to_string(), fused, row.get(1).copied(), floor_t));
        }
    }
    println!("\nmodulation, {s}x{s} color, level changed before every run (median of 7):");
    println!("| backend | family | fused ms | unfused ms | unfused / fused | fused / plain |");
    println!("|---|---|---|---|---|---|");
    for (backend, label, fused, unfused, floor) in table {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let unf = unfused.map(|u| format!("{:.1}", ms(u))).unwrap_or_else(|| "-".into());
        let ratio = unfused.map(|u| format!("{:.2}", ms(u) / ms(fused))).unwrap_or_else(|| "-".into());
        println!("| {backend} | {label} | {:.1} | {unf} | {ratio} | {:.2} |", ms(fused), ms(fused) / ms(floor));
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
