//! Golden PyTorch vectors: every family's small random-weight model (tests/data/golden, written by
//! `tools/make_golden.py` from the PyTorch modules of tools/nets.py, evaluated in float64) run by
//! the engine on every backend, fused and unfused, at several levels.
//!
//! Tolerance: `|engine - pytorch| <= 1e-4 + 1e-4 * |pytorch|` per value (f32 against an f64
//! reference). `cargo test --release --test golden -- --nocapture` prints the largest difference
//! per family and backend.
//!
//! GPU: skipped (with a message) when there is no adapter, unless `TUNABLE_REQUIRE_GPU=1`.

use std::path::{Path, PathBuf};

use tunable::tensor::{Shape, Tensor};
use tunable::{BackendChoice, Engine, EngineOptions, Image, Level, Lowering};

/// Every family of tools/nets.py (adafm twice: k = 3 and k = 1).
const FAMILIES: &[&str] = &[
    "plain", "dni", "adafm", "adafm_k1", "ftn", "cfsnet", "dynamic", "basis", "ffdnet", "dncnn",
];
const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-4;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden")
}

struct Golden {
    model: Vec<u8>,
    input: Tensor,
    /// (level vector, expected output)
    cases: Vec<(Vec<f32>, Tensor)>,
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn load(family: &'static str) -> Golden {
    let d = dir();
    let model = std::fs::read(d.join(format!("{family}.safetensors")))
        .unwrap_or_else(|e| panic!("{family}: {e} (run tools/make_golden.py)"));
    let io = std::fs::read(d.join(format!("{family}_io.safetensors")))
        .unwrap_or_else(|e| panic!("{family}_io: {e}"));
    let (_, meta) = safetensors::SafeTensors::read_metadata(&io).unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(&meta.metadata().as_ref().expect("metadata")["golden"]).unwrap();
    let levels: Vec<Vec<f32>> = serde_json::from_value(meta["levels"].clone()).unwrap();
    let st = safetensors::SafeTensors::deserialize(&io).unwrap();
    let x = st.tensor("input").unwrap();
    let s = x.shape().to_vec();
    assert_eq!(
        (s.len(), s[0]),
        (4, 1),
        "{family}: input must be [1, C, H, W]"
    );
    let shape = Shape::new(s[1], s[2], s[3]);
    let input = Tensor::from_vec(shape, f32s(x.data()));
    let y = st.tensor("outputs").unwrap();
    assert_eq!(
        y.shape(),
        &[levels.len(), s[1], s[2], s[3]],
        "{family}: outputs shape"
    );
    let ys = f32s(y.data());
    let cases = levels
        .into_iter()
        .enumerate()
        .map(|(i, lv)| {
            (
                lv,
                Tensor::from_vec(shape, ys[i * shape.len()..(i + 1) * shape.len()].to_vec()),
            )
        })
        .collect();
    Golden {
        model,
        input,
        cases,
    }
}

/// The largest difference, after checking the tolerance (panics with the place of the worst miss).
fn compare(what: &str, got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.shape, want.shape, "{what}: shape");
    let mut worst = 0.0f32;
    let mut miss: Option<(usize, f32, f32)> = None;
    for (i, (&g, &w)) in got.data.iter().zip(&want.data).enumerate() {
        let d = (g - w).abs();
        assert!(d.is_finite(), "{what}: non-finite output at {i}");
        worst = worst.max(d);
        if d > ATOL + RTOL * w.abs() && miss.is_none_or(|m| d > (m.1 - m.2).abs()) {
            miss = Some((i, g, w));
        }
    }
    if let Some((i, g, w)) = miss {
        let Shape { h, w: width, .. } = want.shape;
        let (c, y, x) = (i / (h * width), i / width % h, i % width);
        panic!("{what}: engine {g} vs pytorch {w} at (c {c}, y {y}, x {x}); largest difference {worst:e}");
    }
    worst
}

/// Runs every family on one engine, fused and unfused; returns the table rows
/// (family, plan ops fused / unfused, worst fused, worst unfused).
fn run_all(engine: &Engine, backend: &str, via_image: bool) -> Vec<String> {
    let mut rows = vec![];
    for &family in FAMILIES {
        let g = load(family);
        let mut worst = [0.0f32; 2];
        let mut ops = [0usize; 2];
        for (j, lowering) in [Lowering::Fused, Lowering::Unfused].into_iter().enumerate() {
            let model = engine
                .load_bytes(&g.model, lowering)
                .unwrap_or_else(|e| panic!("{family}: load: {e}"));
            ops[j] = model.plan().nodes.len();
            for (lv, want) in &g.cases {
                let what = format!("{family} {backend} {lowering:?} level {lv:?}");
                let level = Level::axes(lv);
                let lvec = model
                    .level_vec(&level)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                let got = model
                    .run_tensor(&g.input, &lvec, &|_, _| {})
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                worst[j] = worst[j].max(compare(&what, &got, want));
                if via_image {
                    // The public image path: 0..255 planes, value_scale, Level resolution.
                    let scale = model.spec().value_scale;
                    let Shape { c, h, w } = g.input.shape;
                    let img = Image::from_planes(
                        w,
                        h,
                        c,
                        g.input.data.iter().map(|v| v * scale).collect(),
                    )
                    .unwrap();
                    let out = model
                        .run(&img, level)
                        .unwrap_or_else(|e| panic!("{what} (image): {e}"));
                    let got = Tensor::from_vec(
                        g.input.shape,
                        out.planes().iter().map(|v| v / scale).collect(),
                    );
                    worst[j] = worst[j].max(compare(&format!("{what} (image)"), &got, want));
                }
            }
        }
        rows.push(format!(
            "| {family} | {backend} | {} / {} | {:.2e} | {:.2e} |",
            ops[0], ops[1], worst[0], worst[1]
        ));
    }
    rows
}

fn print_table(title: &str, rows: &[String]) {
    let mut s = format!("\n{title}\n| family | backend | plan ops fused / unfused | max diff fused | max diff unfused |\n|---|---|---|---|---|\n");
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    println!("{s}");
}

#[test]
fn golden_files_cover_every_family() {
    for &f in FAMILIES {
        let g = load(f);
        assert!(!g.cases.is_empty(), "{f}: no levels");
        let spec = Engine::reference()
            .load_bytes(&g.model, Lowering::Fused)
            .unwrap()
            .spec()
            .clone();
        let want = if f == "adafm_k1" { "adafm" } else { f };
        assert_eq!(spec.family, want, "{f}: family in the file");
        assert_eq!(spec.in_channels, g.input.shape.c);
    }
}

#[test]
fn golden_reference() {
    let rows = run_all(&Engine::reference(), "reference", false);
    print_table("golden vs PyTorch: CPU reference kernels", &rows);
}

#[test]
fn golden_fast_cpu() {
    let rows = run_all(&Engine::cpu(), "cpu", true);
    print_table(
        "golden vs PyTorch: fast CPU executor (tensor and image paths)",
        &rows,
    );
}

#[test]
fn golden_gpu() {
    let opts = EngineOptions {
        backend: BackendChoice::Gpu,
        quiet: true,
        ..Default::default()
    };
    let engine = match Engine::with_options(opts) {
        Ok(e) => e,
        Err(e) => {
            let required = std::env::var("TUNABLE_REQUIRE_GPU")
                .map(|v| v == "1")
                .unwrap_or(false);
            assert!(!required, "TUNABLE_REQUIRE_GPU=1 but no GPU adapter: {e}");
            println!("golden_gpu: no GPU adapter ({e}); skipped (TUNABLE_REQUIRE_GPU=1 makes this a failure)");
            return;
        }
    };
    let name = engine.describe();
    let rows = run_all(&engine, "gpu", false);
    print_table(&format!("golden vs PyTorch: GPU ({name})"), &rows);
}
