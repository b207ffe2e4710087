//! Hostile inputs and long-running use (issue 12): sizes that would wrap, model files whose
//! geometry asks for terabytes, runs over the memory limit, non-finite outputs, leftovers of
//! crashed saves, caches and pools under many sizes and concurrent runs, lying JPEG headers.
//! Every input is generated here. GPU cases skip with a message without an adapter (they fail
//! with TUNABLE_REQUIRE_GPU=1).

mod harness;

use std::sync::{Arc, OnceLock};

use harness::images::gradient;
use harness::models::ModelBuilder;
use serde_json::json;
use tunable::tensor::Shape;
use tunable::tensor::Tensor;
use tunable::testing::cpu::fast::{bench_net, FastPlan};
use tunable::testing::gpu::GpuPlan;
use tunable::{Engine, Error, Image, Level, Lowering, Model};

/// A model file from a list of nodes and its tensors (3 channels, one alpha axis).
fn model_bytes(
    nodes: Vec<serde_json::Value>,
    output: &str,
    tensors: Vec<(&str, Vec<usize>, Vec<f32>)>,
) -> Vec<u8> {
    let mut m = ModelBuilder::dni_stack(3, 8);
    m.tensors = tensors
        .into_iter()
        .map(|(n, s, d)| (n.to_string(), s, d))
        .collect();
    m.spec = json!({
        "format_version": 1, "name": "hostile", "in_channels": 3, "out_channels": 3,
        "levels": [{"name": "alpha", "min": 0.0, "max": 1.0}],
        "nodes": nodes, "output": output
    });
    m.bytes()
}

/// `count` nodes named `{prefix}{i}` chained after `from`, each built by `node(name, input)`.
fn chain(
    prefix: &str,
    count: usize,
    from: &str,
    node: impl Fn(&str, &str) -> serde_json::Value,
) -> (Vec<serde_json::Value>, String) {
    let mut nodes = vec![];
    let mut prev = from.to_string();
    for i in 0..count {
        let name = format!("{prefix}{i}");
        nodes.push(node(&name, &prev));
        prev = name;
    }
    (nodes, prev)
}

fn conv(name: &str, input: &str, weight: &str, stride: usize) -> serde_json::Value {
    json!({"name": name, "op": "conv", "inputs": [input], "weight": weight, "stride": stride})
}

fn filled(shape: Vec<usize>, v: f32) -> Vec<f32> {
    vec![v; shape.iter().product()]
}

/// A 1x1 conv net 3 -> `wide` -> 3 whose weights are `w`.
fn wide_net(wide: usize, w: f32) -> Vec<u8> {
    model_bytes(
        vec![
            json!({"name": "up", "op": "conv", "inputs": ["input"], "weight": "up.w", "act": "relu"}),
            json!({"name": "down", "op": "conv", "inputs": ["up"], "weight": "down.w"}),
        ],
        "down",
        vec![
            ("up.w", vec![wide, 3, 1, 1], filled(vec![wide, 3, 1, 1], w)),
            (
                "down.w",
                vec![3, wide, 1, 1],
                filled(vec![3, wide, 1, 1], w),
            ),
        ],
    )
}

/// The GPU engine of this test binary (lavapipe is happier with one device), or None with a
/// skip message.
fn gpu_engine() -> Option<Engine> {
    static GPU: OnceLock<Option<Engine>> = OnceLock::new();
    let require = std::env::var("TUNABLE_REQUIRE_GPU").is_ok_and(|v| v == "1");
    let e = GPU.get_or_init(|| match Engine::gpu() {
        Ok(e) => Some(e),
        Err(e) => {
            assert!(!require, "TUNABLE_REQUIRE_GPU=1 but no GPU: {e}");
            eprintln!("skipping the GPU cases: {e}");
            None
        }
    });
    e.clone()
}

/// The reference and fast CPU engines, and the GPU one where there is one.
fn engines() -> Vec<(&'static str, Engine)> {
    let mut v = vec![("reference", Engine::reference()), ("cpu", Engine::cpu())];
    v.extend(gpu_engine().map(|e| ("gpu", e)));
    v
}

// Row 3: width * height * channels used to wrap to 0, pass the checks and panic in `crop`.
#[test]
fn size_products_that_would_wrap_are_errors() {
    let cases: [(usize, usize, usize); 4] = [
        (1 << 33, 1 << 31, 3),
        (1 << 32, 1 << 32, 1),
        (usize::MAX, 2, 3),
        (1 << 20, 1 << 20, 3),
    ];
    for (w, h, c) in cases {
        for (what, r) in [
            ("from_planes", Image::from_planes(w, h, c, vec![])),
            (
                "from_interleaved_u8",
                Image::from_interleaved_u8(w, h, c, &[]),
            ),
        ] {
            match r {
                Err(Error::Image(m)) => assert!(m.contains("pixel limit"), "{what} {w}x{h}: {m}"),
                other => panic!("{what} {w}x{h}x{c}: {other:?}"),
            }
        }
    }
    // A tensor whose shape lies about its data, and shapes past any machine: errors.
    let model = Engine::reference()
        .load_bytes(&ModelBuilder::dni_stack(3, 8).bytes(), Lowering::Fused)
        .unwrap();
    let lying = Tensor {
        shape: Shape::new(3, 1 << 40, 1 << 40),
        data: vec![],
    };
    let e = model.run_tensor(&lying, &[0.5; 4], &|_, _| {}).unwrap_err();
    assert!(matches!(e, Error::Shape(_)), "{e}");
    assert!(model.plan().shapes(usize::MAX, usize::MAX).is_err());
    assert!(model.plan().shapes(1 << 41, 1).is_err());
}

// Row 4: small files whose geometry asks for terabytes are refused at load, naming the limit.
#[test]
fn hostile_model_geometry_is_refused_at_load() {
    let w3 = || ("w", vec![3, 3, 3, 3], filled(vec![3, 3, 3, 3], 0.1));
    let w7 = || ("w", vec![3, 3, 7, 7], filled(vec![3, 3, 7, 7], 0.01));
    let shuffles = {
        let (mut nodes, last) = chain(
            "u",
            20,
            "input",
            |n, i| json!({"name": n, "op": "unshuffle", "inputs": [i]}),
        );
        let (more, last) = chain(
            "s",
            20,
            &last,
            |n, i| json!({"name": n, "op": "shuffle", "inputs": [i]}),
        );
        nodes.extend(more);
        model_bytes(nodes, &last, vec![])
    };
    let strided = {
        let (nodes, last) = chain("c", 40, "input", |n, i| conv(n, i, "w", 2));
        model_bytes(nodes, &last, vec![w3()])
    };
    let deep = {
        let (nodes, last) = chain("c", 400, "input", |n, i| conv(n, i, "w", 1));
        model_bytes(nodes, &last, vec![w7()])
    };
    let shrinking = model_bytes(vec![conv("c", "input", "w", 2)], "c", vec![w3()]);
    let scale = |v: f64| {
        let mut m = ModelBuilder::dni_stack(3, 8);
        m.spec["value_scale"] = v.into();
        m.bytes()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("20 unshuffles, 20 shuffles", shuffles, "limit of 4096"),
        ("40 stride-2 convs on one weight", strided, "limit of 256"),
        ("400 7x7 convs", deep, "receptive radius is 1200 pixels"),
        (
            "3 -> 100000 -> 3 channels",
            wide_net(100_000, 0.0),
            "100000 channels",
        ),
        ("output smaller than input", shrinking, "input's size"),
        ("value_scale 1e-38", scale(1e-38), "value_scale"),
        ("value_scale 1e9", scale(1e9), "value_scale"),
    ];
    for (what, bytes, needle) in cases {
        let t = std::time::Instant::now();
        for (engine_name, engine) in engines() {
            match engine.load_bytes(&bytes, Lowering::Fused) {
                Ok(_) => panic!("{what}: {engine_name} loaded it"),
                Err(e) => assert!(e.to_string().contains(needle), "{what}: '{e}'"),
            }
        }
        println!(
            "{what}: refused in {:.1} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    for ok in [1.0, 255.0, 65535.0] {
        assert!(Engine::reference()
            .load_bytes(&scale(ok), Lowering::Fused)
            .is_ok());
    }
}

// Row 4: a model within the load limits whose run needs more than the memory limit is an
// error naming the sizes, before anything is allocated, on every executor.
#[test]
fn runs_over_the_memory_limit_are_refused_before_allocating() {
    let bytes = wide_net(4096, 0.01);
    let big = gradient(1024, 1024, 3);
    for (name, engine) in engines() {
        let model = engine.load_bytes(&bytes, Lowering::Fused).unwrap();
        assert!(model.run(&gradient(8, 8, 3), Level::alpha(0.5)).is_ok());
        // On a GPU the model tiles to fit the device's bindings (and runs, slowly); the
        // executor itself refuses the whole 1024x1024 before creating a buffer.
        let e = match engine.gpu_context() {
            Some(ctx) => {
                let gp = GpuPlan::new(ctx.clone(), model.plan()).unwrap();
                gp.run(&big.to_tensor(255.0), &[0.5; 4]).unwrap_err()
            }
            None => model.run(&big, Level::alpha(0.5)).unwrap_err(),
        };
        let m = e.to_string();
        assert!(matches!(e, Error::Limit(_)), "{name}: {m}");
        assert!(
            m.contains("1024x1024 run needs") && m.contains("4096x1024x1024"),
            "{name}: {m}"
        );
        println!("{name}: {m}");
    }
}

// Row 5: NaN or infinity in the output is an error, not an image saved as black.
#[test]
fn non_finite_outputs_are_errors() {
    let overflowing = wide_net(8, 1e30);
    let img = gradient(9, 7, 3);
    for (name, engine) in engines() {
        let model = engine.load_bytes(&overflowing, Lowering::Fused).unwrap();
        match model.run(&img, Level::alpha(0.5)) {
            Err(Error::NonFinite(m)) => assert!(m.contains("NaN or infinite"), "{name}: {m}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

// Row 5: an extrapolating axis has bounds (default half the range beyond each end).
#[test]
fn extrapolating_levels_are_bounded() {
    let with_axis = |axis: serde_json::Value| {
        let mut m = ModelBuilder::dni_stack(3, 8);
        m.spec["levels"][0] = axis;
        Engine::reference().load_bytes(&m.bytes(), Lowering::Fused)
    };
    let default = with_axis(json!({"name": "alpha", "min": 0.0, "max": 1.0, "extrapolate": true}));
    let wide = with_axis(
        json!({"name": "alpha", "min": 0.0, "max": 1.0, "extrapolate": true,
        "extrapolate_range": [-2.0, 3.0]}),
    );
    let (default, wide) = (default.unwrap(), wide.unwrap());
    let cases: [(&Model, f32, bool); 8] = [
        (&default, 1.5, true),
        (&default, -0.5, true),
        (&default, 1.6, false),
        (&default, -0.6, false),
        (&default, 1e6, false),
        (&wide, 2.9, true),
        (&wide, 3.1, false),
        (&wide, -2.1, false),
    ];
    for (model, alpha, ok) in cases {
        match (model.level_vec(&Level::alpha(alpha)), ok) {
            (Ok(_), true) => {}
            (Err(Error::Level(m)), false) => assert!(m.contains("extrapolates to"), "{m}"),
            (r, _) => panic!("alpha {alpha}: {r:?}"),
        }
    }
    for bad in [
        json!({"name": "a", "min": 0.0, "max": 1.0, "extrapolate": true, "extrapolate_range": [0.5, 2.0]}),
        json!({"name": "a", "min": 0.0, "max": 1.0, "extrapolate_range": [-1.0, 2.0]}),
    ] {
        let e = with_axis(bad.clone()).err().expect("refused");
        assert!(e.to_string().contains("extrapolate_range"), "{bad}: {e}");
    }
}

// Row 7: a crash between writing the temporary file and the rename leaves `.NAME.tmp`; the next
// save of that path replaces it and nothing stays behind.
#[test]
fn saving_replaces_what_a_crashed_save_left() {
    let dir = std::env::temp_dir().join(format!("tunable-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = gradient(12, 9, 3);
    for name in ["out.png", "out.jpg", "out.tif"] {
        let path = dir.join(name);
        let tmp = tunable::testing::temp_path_for(&path);
        assert_eq!(tmp, dir.join(format!(".{name}.tmp")));
        std::fs::write(&tmp, vec![0u8; 4096]).unwrap(); // what a killed save left
        img.save(&path).unwrap();
        assert!(!tmp.exists(), "{name}: the temporary file is still there");
        assert_eq!(Image::open(&path).unwrap().width(), 12);
    }
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["out.jpg", "out.png", "out.tif"]);
    std::fs::remove_dir_all(&dir).ok();
}

// Row 6: a JPEG header declaring far more pixels than the file can hold is refused before
// decoding (the decoder would fill 121 megapixels in silently).
#[test]
fn truncated_jpeg_declaring_a_huge_size_is_refused() {
    let dir = std::env::temp_dir().join(format!("tunable-jpeg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let small = dir.join("small.jpg");
    gradient(16, 16, 3).save(&small).unwrap();
    let bytes = std::fs::read(&small).unwrap();
    // SOF0: FF C0, length (2), precision (1), height (2), width (2).
    let sof = bytes.windows(2).position(|p| p == [0xFF, 0xC0]).unwrap();
    for (w, h, refused) in [(11000u16, 11000u16, true), (16, 16, false), (32, 32, false)] {
        let mut lying = bytes.clone();
        lying[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
        lying[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
        let path = dir.join(format!("{w}x{h}.jpg"));
        std::fs::write(&path, &lying).unwrap();
        // From a file and from memory: the same checks.
        for (how, decoded) in [
            (
                "open",
                Box::new(|| Image::open(&path)) as Box<dyn Fn() -> _>,
            ),
            ("decode", Box::new(|| Image::decode(&lying))),
        ] {
            let t = std::time::Instant::now();
            match (decoded(), refused) {
                (Err(Error::Image(m)), true) => {
                    assert!(m.contains("truncated"), "{how}: {m}");
                    assert!(
                        t.elapsed().as_secs_f64() < 1.0,
                        "{how}: refused only after decoding"
                    );
                }
                (Ok(img), false) => {
                    assert_eq!(
                        (img.width(), img.height()),
                        (w as usize, h as usize),
                        "{how}"
                    )
                }
                (r, _) => panic!("{how}: {w}x{h} in {} bytes: {r:?}", lying.len()),
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

// Row 2: overlapping runs used to take the whole pool, find it empty, allocate, and give all
// back, so the pool grew by a few MB a round without end. Now it stays under its budget.
#[test]
fn fast_cpu_pool_stays_bounded_under_concurrent_runs() {
    let plan = bench_net::adafm_net_plan(16, 4, 15);
    let fast = Arc::new(FastPlan::new(&plan).unwrap());
    let input = Tensor::from_vec(
        Shape::new(3, 64, 64),
        (0..3 * 64 * 64).map(|i| (i % 97) as f32 / 97.0).collect(),
    );
    let level = [0.3, 0.0, 0.0, 0.0];
    fast.run(&input, &level).unwrap();
    let one_run = fast.retained_bytes();
    let budget = 2 * one_run;
    fast.set_pool_budget(budget);
    let (threads, runs, rounds) = (8, 5, 15);
    let mut most = 0;
    for round in 0..rounds {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for _ in 0..runs {
                        fast.run(&input, &level).unwrap();
                    }
                });
            }
        });
        let kept = fast.retained_bytes();
        most = most.max(kept);
        assert!(
            kept <= budget,
            "round {round}: {kept} bytes kept, budget {budget}"
        );
    }
    println!(
        "fast pool: one run keeps {one_run} bytes; {threads} threads x {runs} runs x {rounds} rounds kept at most {most} (budget {budget})"
    );
    // Serial runs afterwards reuse what is kept; release frees it.
    fast.run(&input, &level).unwrap();
    assert!(fast.retained_bytes() <= budget);
    fast.release_memory();
    assert_eq!(fast.retained_bytes(), 0);
}

// Row 1: one set of GPU buffers per input size, never evicted, grew without end over random
// sizes. Now an LRU by bytes keeps them under the budget, and `Model` can release them.
#[test]
fn gpu_size_cache_stays_under_its_budget() {
    let Some(engine) = gpu_engine() else { return };
    let model = engine
        .load_bytes(&ModelBuilder::dni_stack(3, 8).bytes(), Lowering::Fused)
        .unwrap();
    let level = Level::alpha(0.4);
    model.run(&gradient(200, 200, 3), level.clone()).unwrap();
    let largest = model.retained_bytes();
    assert!(largest > 0);
    // The 4 sizes used last are kept whatever the budget (the tiles of one image).
    let budget = 5 * largest;
    model.set_buffer_budget(budget);
    let mut rng = tunable::noise::Rng::new(12);
    let mut most = 0;
    for i in 0..30 {
        let side = |r: &mut tunable::noise::Rng| 16 + (r.uniform() * 184.0) as usize;
        let (w, h) = (side(&mut rng), side(&mut rng));
        model.run(&gradient(w, h, 3), level.clone()).unwrap();
        let kept = model.retained_bytes();
        most = most.max(kept);
        assert!(
            kept <= budget,
            "size {i} ({w}x{h}): {kept} bytes, budget {budget}"
        );
    }
    println!("gpu cache: 200x200 keeps {largest} bytes; 30 random sizes kept at most {most} (budget {budget})");
    model.release_buffers();
    assert_eq!(model.retained_bytes(), 0);
    model.run(&gradient(20, 20, 3), level).unwrap(); // re-created on demand
    assert!(model.retained_bytes() > 0);
}
