//! The whole shipped network on the GPU, as an app runs it: upload, every layer, readback
//! (`Model::run_tensor`), for the plain model and for the DNI model with its level changed before
//! every run. `tools/bench_gpu_peers.py` runs this binary in turns with ncnn's Vulkan (and ONNX
//! Runtime's WebGPU EP where it runs) on the same adapter.
//!
//! cargo bench --bench gpu_net -- [--sizes 64,128] [--runs 5] [--check]
//!
//! Prints one `RESULT model=M size=S median_ms=.. best_ms=..` line per model and size. `--check`
//! also writes `target/gpu_net_check.safetensors`: a seeded input and both models' outputs per
//! size (the DNI model at level 0.5), which the peer script compares with the peers' outputs
//! before timing anything. The software adapter (lavapipe) is used when it is the only one.

use std::time::Instant;

use tunable::plan::LevelVec;
use tunable::tensor::{Shape, Tensor};
use tunable::{BackendChoice, Engine, EngineOptions, Lowering, Model};

const MODELS: &[(&str, &str)] = &[
    ("plain", "weights/denoise-plain-sigma20-color.safetensors"),
    ("dni", "weights/denoise-dni-color.safetensors"),
];

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn input(s: usize) -> Tensor {
    let mut rng = tunable::noise::Rng::new(s as u64);
    Tensor::from_vec(
        Shape::new(3, s, s),
        (0..3 * s * s).map(|_| rng.uniform() as f32).collect(),
    )
}

fn level(alpha: f32) -> LevelVec {
    [alpha, 0.0, 0.0, 0.0]
}

/// Median and best of `runs` timed runs (after two untimed ones); the DNI model alternates its
/// level between 0.3 and 0.7 so every run pays for a level change.
fn time(model: &Model, x: &Tensor, runs: usize) -> (f64, f64) {
    let knob = !model.axes().is_empty();
    let at = |i: usize| level(if knob { [0.3, 0.7][i % 2] } else { 0.0 });
    for i in 0..2 {
        model.run_tensor(x, &at(i), &|_, _| {}).expect("run");
    }
    let mut ms: Vec<f64> = (0..runs)
        .map(|i| {
            let t = Instant::now();
            model.run_tensor(x, &at(i), &|_, _| {}).expect("run");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    (ms[ms.len() / 2], ms[0])
}

fn write_check(models: &[(&str, Model)], sizes: &[usize]) {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = vec![];
    for &s in sizes {
        let x = input(s);
        tensors.push((format!("input_{s}"), vec![1, 3, s, s], bytes(&x.data)));
        for (label, m) in models {
            let a = if m.axes().is_empty() { 0.0 } else { 0.5 };
            let y = m.run_tensor(&x, &level(a), &|_, _| {}).expect("run");
            tensors.push((format!("{label}_{s}"), vec![1, 3, s, s], bytes(&y.data)));
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, shape, b)| {
            let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                .expect("view");
            (n.clone(), v)
        })
        .collect();
    let path = std::path::Path::new("target/gpu_net_check.safetensors");
    safetensors::serialize_to_file(views, None, path).expect("write the check file");
    println!("wrote {}", path.display());
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|f| f.to_le_bytes()).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sizes: Vec<usize> = arg(&args, "--sizes")
        .unwrap_or_else(|| "64,128".into())
        .split(',')
        .map(|s| s.trim().parse().expect("--sizes: whole numbers"))
        .collect();
    let runs: usize = arg(&args, "--runs").map_or(5, |r| r.parse().expect("--runs"));
    let engine = Engine::with_options(EngineOptions {
        backend: BackendChoice::Gpu,
        quiet: true,
        ..Default::default()
    })
    .expect("a GPU adapter (lavapipe counts)");
    println!("adapter: {}", engine.describe());
    let models: Vec<(&str, Model)> = MODELS
        .iter()
        .map(|(label, file)| {
            let m = engine.load_with(file, Lowering::Fused).expect("load");
            (*label, m)
        })
        .collect();
    if args.iter().any(|a| a == "--check") {
        write_check(&models, &sizes);
    }
    for &s in &sizes {
        let x = input(s);
        for (label, m) in &models {
            let (med, best) = time(m, &x, runs);
            println!("RESULT model={label} size={s} median_ms={med:.3} best_ms={best:.3}");
        }
    }
}
