//! The engine on the application's own GPU device (`Engine::from_wgpu`): the test creates its
//! own wgpu instance, adapter and device as an app would, hands device and queue over, and
//! checks `Model::run` against the CPU reference kernels, within the limits the device was
//! created with (the adapter's own, WebGPU's defaults, the downlevel defaults, a small storage
//! binding that forces tiling), the clear errors when a device cannot run the kernels, and the
//! counters that prove a level change creates nothing and writes only the level.
//!
//! GPU: skipped (with a message) when there is no adapter, unless `TUNABLE_REQUIRE_GPU=1`.
//! Inputs are generated; no dataset image is read.

mod harness;

use harness::app::{app_adapter, engine_on};
use harness::images::{max_diff, textured};
use harness::models::ModelBuilder;
use harness::serial;
use tunable::wgpu;
use tunable::{Engine, Error, Image, Level, Lowering, Model};

/// GPU (f32, other summation order) against the reference, on the 0..255 scale: 1e-2 is 4e-5
/// relative, far below one 8-bit step.
const TOL: f32 = 1e-2;

fn load(engine: &Engine, bytes: &[u8]) -> Model {
    engine.load_bytes(bytes, Lowering::Fused).unwrap()
}

/// Both test models: a 3-conv DNI stack (full resolution) and an unshuffle AdaFM resnet.
fn models() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("dni", ModelBuilder::dni_stack(3, 8).bytes()),
        ("adafm", ModelBuilder::unshuffle_resnet(3, 8, 2).bytes()),
    ]
}

/// Runs every model at two levels on `engine` and on the reference; returns the largest diff.
fn check_against_reference(engine: &Engine, img: &Image, what: &str) -> f32 {
    let reference = Engine::reference();
    let mut worst = 0.0f32;
    for (name, bytes) in models() {
        let gpu = load(engine, &bytes);
        let cpu = load(&reference, &bytes);
        let mut outs = vec![];
        for a in [0.2, 0.8] {
            let out = gpu.run(img, Level::alpha(a)).unwrap();
            let d = max_diff(&out, &cpu.run(img, Level::alpha(a)).unwrap());
            println!("[{what}] {name} at alpha {a}: max |gpu - reference| = {d:e}");
            assert!(d < TOL, "{what}: {name} at alpha {a}: {d}");
            worst = worst.max(d);
            outs.push(out);
        }
        // The knob moves the output far more than the tolerance: the comparison means something.
        let moved = max_diff(&outs[0], &outs[1]);
        assert!(
            moved > 100.0 * TOL,
            "{what}: {name}: the level changed little ({moved})"
        );
    }
    worst
}

#[test]
fn app_device_with_the_adapters_limits_matches_the_reference() {
    let _g = serial();
    let Some(adapter) = app_adapter() else { return };
    let engine = engine_on(&adapter, adapter.limits()).unwrap();
    assert!(engine.gpu_context().is_some());
    println!("engine: {}", engine.describe());
    // Odd size: the mirror padding and the crop take part too.
    check_against_reference(&engine, &textured(45, 33, 3, 5), "adapter limits");
}

#[test]
fn app_device_with_webgpu_default_limits_matches_the_reference() {
    let _g = serial();
    let Some(adapter) = app_adapter() else { return };
    let engine = engine_on(&adapter, wgpu::Limits::default()).unwrap();
    check_against_reference(&engine, &textured(40, 36, 3, 6), "WebGPU default limits");
}

#[test]
fn a_device_without_compute_limits_is_refused_naming_each_missing_limit() {
    let _g = serial();
    let Some(adapter) = app_adapter() else { return };
    // WebGL2's defaults: no storage buffers and no compute workgroups at all.
    match engine_on(&adapter, wgpu::Limits::downlevel_webgl2_defaults()) {
        Err(Error::DeviceLimits(m)) => {
            println!("[webgl2 limits] {m}");
            for missing in [
                "max_storage_buffers_per_shader_stage = 0 (need 4)",
                "max_compute_invocations_per_workgroup = 0 (need 256)",
                "max_compute_workgroup_storage_size = 0 (need 16352)",
            ] {
                assert!(m.contains(missing), "{missing} not in: {m}");
            }
            // Only what is missing is named.
            assert!(!m.contains("max_bind_groups"), "{m}");
        }
        Err(e) => panic!("expected Error::DeviceLimits, got {e}"),
        Ok(_) => panic!("a device without compute limits was accepted"),
    }
}

#[test]
fn downlevel_limits_run_a_512x512_image_within_their_bindings() {
    let _g = serial();
    let Some(adapter) = app_adapter() else { return };
    let img = textured(512, 512, 3, 7);
    let bytes = ModelBuilder::unshuffle_resnet(3, 8, 2).bytes();
    let expected = load(&Engine::reference(), &bytes)
        .run(&img, Level::alpha(0.4))
        .unwrap();

    // The model's residual adds are combines (a conv reading another tensor): fused, they bind
    // 5 storage buffers, one more than the downlevel defaults allow.
    let model = load(&Engine::reference(), &bytes);
    assert!(model.plan().nodes.iter().any(|n| !n.others.is_empty()));

    // The smallest limits wgpu allows for compute, as they are: 4 storage buffers per stage,
    // 128 MiB bindings, 16 KiB uniforms, 16,352 B of workgroup memory.
    let engine = engine_on(&adapter, wgpu::Limits::downlevel_defaults()).unwrap();
    let got = load(&engine, &bytes).run(&img, Level::alpha(0.4)).unwrap();
    let d = max_diff(&got, &expected);
    println!("[downlevel] 512x512 in one piece: max |gpu - reference| = {d:e}");
    assert!(d < TOL, "{d}");

    // The same with 1 MiB storage bindings: the 3 MiB input no longer fits one binding, so
    // the engine tiles to the limit it found on the device.
    let small = wgpu::Limits {
        max_storage_buffer_binding_size: 1 << 20,
        ..wgpu::Limits::downlevel_defaults()
    };
    let engine = engine_on(&adapter, small).unwrap();
    assert_eq!(engine.gpu_context().unwrap().max_tensor_bytes(), 1 << 20);
    let model = load(&engine, &bytes);
    let tiles = std::sync::atomic::AtomicUsize::new(0);
    let got = model
        .run_with_progress(&img, Level::alpha(0.4), &|_, _| {
            tiles.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .unwrap();
    let tiles = tiles.into_inner();
    let d = max_diff(&got, &expected);
    println!(
        "[downlevel] 512x512 with 1 MiB bindings: {tiles} tiles, max |gpu - reference| = {d:e}"
    );
    assert!(
        tiles >= 4,
        "a 512x512 image in 1 MiB bindings needs tiles ({tiles})"
    );
    assert!(d < TOL, "{d}");

    // After the first run at this size, another level creates nothing (every tile size is
    // prepared) and writes only the level besides the input tiles.
    let ctx = engine.gpu_context().unwrap();
    let before = ctx.counters();
    model.run(&img, Level::alpha(0.9)).unwrap();
    let cost = ctx.counters().since(&before);
    println!("[downlevel] level change on the tiled image: {cost:?}");
    assert_eq!(cost.buffers_created, 0, "{cost:?}");
    assert_eq!(cost.bind_groups_created, 0, "{cost:?}");
    assert_eq!(cost.pipelines_compiled, 0, "{cost:?}");
    assert_eq!(cost.weight_bytes_written, 0, "{cost:?}");
    assert!(
        cost.bytes_written_besides_inputs() <= 256 * tiles as u64,
        "{cost:?}"
    );
}

#[test]
fn a_device_too_small_for_the_kernels_is_a_clear_error() {
    let _g = serial();
    let Some(adapter) = app_adapter() else { return };
    // Too little workgroup memory and too small a workgroup: both named, with what is needed.
    let limits = wgpu::Limits {
        max_compute_workgroup_storage_size: 8192,
        max_compute_invocations_per_workgroup: 128,
        max_compute_workgroup_size_x: 128,
        ..wgpu::Limits::default()
    };
    match engine_on(&adapter, limits) {
        Err(Error::DeviceLimits(m)) => {
            println!("[too small] {m}");
            for want in [
                "max_compute_workgroup_storage_size = 8192 (need 16352)",
                "max_compute_invocations_per_workgroup = 128 (need 256)",
                "max_compute_workgroup_size_x = 128 (need 256)",
            ] {
                assert!(m.contains(want), "'{want}' missing from: {m}");
            }
            assert!(!m.contains("storage_buffers"), "{m}");
        }
        Err(e) => panic!("expected Error::DeviceLimits, got {e}"),
        Ok(_) => panic!("a device with 8 KiB of workgroup memory was accepted"),
    }
}

#[test]
fn a_level_change_creates_nothing_and_writes_at_most_256_bytes() {
    let _g = serial();
    let Some(adapter) = app_adapter() else { return };
    let engine = engine_on(&adapter, adapter.limits()).unwrap();
    let ctx = engine.gpu_context().unwrap().clone();
    let (w, h) = (48, 40);
    let img = textured(w, h, 3, 8);
    for (name, bytes) in models() {
        for lowering in [Lowering::Fused, Lowering::Unfused] {
            let what = format!("{name} {lowering:?}");
            let start = ctx.counters();
            let model = engine.load_bytes(&bytes, lowering).unwrap();
            let loaded = ctx.counters();
            let load = loaded.since(&start);
            println!("[{what}] load: {load:?}");
            assert!(load.weight_bytes_written > 0, "the weights were uploaded");
            assert!(load.buffers_created > 0);

            model.run(&img, Level::alpha(0.1)).unwrap();
            let first = ctx.counters().since(&loaded);
            println!("[{what}] first run at {w}x{h}: {first:?}");
            assert!(first.buffers_created > 0 && first.bind_groups_created > 0);
            assert_eq!(first.weight_bytes_written, 0, "no weight uploaded by a run");

            for a in [0.5, 0.9, 0.0] {
                let before = ctx.counters();
                model.run(&img, Level::alpha(a)).unwrap();
                let cost = ctx.counters().since(&before);
                println!("[{what}] level -> {a}: {cost:?}");
                assert_eq!(cost.pipelines_compiled, 0, "{what}: {cost:?}");
                assert_eq!(cost.buffers_created, 0, "{what}: {cost:?}");
                assert_eq!(cost.bind_groups_created, 0, "{what}: {cost:?}");
                assert_eq!(cost.weight_bytes_written, 0, "{what}: {cost:?}");
                // The image itself is uploaded by every run (3 planes of f32).
                assert_eq!(cost.input_bytes_written, (3 * w * h * 4) as u64);
                assert!(
                    cost.bytes_written_besides_inputs() <= 256,
                    "{what}: {cost:?}"
                );
            }
        }
    }
}
