//! Large images go through tiles with a halo of the receptive field: the stitched output must
//! equal the untiled one exactly (same arithmetic per pixel on the reference kernels).

mod harness;

use harness::images::textured;
use harness::models::ModelBuilder;
use tunable::{BackendChoice, Engine, EngineOptions, Level, Lowering};

fn engine(backend: BackendChoice, max_tile: usize) -> Engine {
    Engine::with_options(EngineOptions {
        backend,
        max_tile,
        quiet: true,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn tiled_equals_untiled_exactly_on_the_reference() {
    let bytes = ModelBuilder::unshuffle_resnet(3, 8, 2).bytes();
    // Odd sizes: the bottom/right mirror padding and the crop take part too.
    let img = textured(45, 33, 3, 3);
    let whole = engine(BackendChoice::Reference, 4096)
        .load_bytes(&bytes, Lowering::Fused)
        .unwrap();
    let tiled = engine(BackendChoice::Reference, 16)
        .load_bytes(&bytes, Lowering::Fused)
        .unwrap();
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let a = whole.run(&img, Level::alpha(0.6)).unwrap();
    let b = tiled
        .run_with_progress(&img, Level::alpha(0.6), &|_, _| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .unwrap();
    assert!(calls.into_inner() > 4, "the small tile size really tiled");
    assert_eq!(
        a.planes(),
        b.planes(),
        "stitched tiles differ from the untiled result"
    );
}

#[test]
fn tiled_matches_untiled_on_the_fast_cpu_executor() {
    let bytes = ModelBuilder::unshuffle_resnet(3, 8, 2).bytes();
    let img = textured(70, 41, 3, 3);
    let whole = engine(BackendChoice::Cpu, 4096)
        .load_bytes(&bytes, Lowering::Fused)
        .unwrap();
    let tiled = engine(BackendChoice::Cpu, 24)
        .load_bytes(&bytes, Lowering::Fused)
        .unwrap();
    let a = whole.run(&img, Level::alpha(0.3)).unwrap();
    let b = tiled.run(&img, Level::alpha(0.3)).unwrap();
    let d = a
        .planes()
        .iter()
        .zip(b.planes())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    println!("fast CPU tiled vs untiled: max |diff| = {d:e} (0..255 scale)");
    // Same math per pixel, but the fast executor's Winograd tiles and GEMM blocks fall at other
    // offsets inside a tile, so rounding differs: allow 1e-2 on the 0..255 scale (4e-5
    // relative, far below one 8-bit step). Exactness is proven on the reference above.
    assert!(d < 1e-2, "{d}");
}
