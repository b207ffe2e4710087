//! `Model::run_async` (the run the browser build uses, awaited read-back instead of a blocking
//! `device.poll`) against `Model::run` on the same engine: the same output on the GPU and the
//! CPU, tiled and padded pictures included; a level change through it creates no pipeline and
//! no buffer and uploads no weight; two runs of one size awaited together on one thread do
//! not deadlock; a run dropped before its read-back leaves the model usable.
//!
//! GPU: skipped (with a message) when there is no adapter, unless `TUNABLE_REQUIRE_GPU=1`.
//! Inputs are generated; no dataset image is read.

mod harness;

use std::future::Future;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use harness::images::max_diff;
use harness::models::ModelBuilder;
use harness::serial;
use tunable::{BackendChoice, Engine, EngineOptions, Image, Level, Lowering, Model};

fn gpu(max_tile: usize) -> Option<Engine> {
    static WARNED: OnceLock<()> = OnceLock::new();
    let require = std::env::var("TUNABLE_REQUIRE_GPU").is_ok_and(|v| v == "1");
    match Engine::with_options(EngineOptions {
        backend: BackendChoice::Gpu,
        max_tile,
        quiet: true,
        ..Default::default()
    }) {
        Ok(e) => Some(e),
        Err(e) => {
            assert!(!require, "TUNABLE_REQUIRE_GPU=1 but no GPU: {e}");
            WARNED.get_or_init(|| eprintln!("skipping the GPU cases: {e}"));
            None
        }
    }
}

fn model(engine: &Engine) -> Model {
    engine
        .load_bytes(
            &ModelBuilder::unshuffle_resnet(3, 8, 2).bytes(),
            Lowering::Fused,
        )
        .unwrap()
}

fn picture(w: usize, h: usize) -> Image {
    let mut rng = tunable::noise::Rng::new(5);
    let planes = (0..w * h * 3)
        .map(|i| ((i % w) as f32 * 2.5 + (rng.normal() * 30.0) as f32).clamp(0.0, 255.0))
        .collect();
    Image::from_planes(w, h, 3, planes).unwrap()
}

/// Both futures polled in turn on this thread until both are done.
fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut ra, mut rb) = (None, None);
    let mut cx = Context::from_waker(Waker::noop());
    while ra.is_none() || rb.is_none() {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(&mut cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(&mut cx) {
                rb = Some(v);
            }
        }
    }
    (ra.unwrap(), rb.unwrap())
}

#[test]
fn run_async_equals_run_on_the_cpu_executors() {
    for engine in [Engine::cpu(), Engine::reference()] {
        let m = model(&engine);
        let img = picture(41, 29);
        let sync = m.run(&img, Level::alpha(0.3)).unwrap();
        let awaited = pollster::block_on(m.run_async(&img, Level::alpha(0.3))).unwrap();
        assert_eq!(sync, awaited, "{}", engine.describe());
    }
}

#[test]
fn run_async_equals_run_on_the_gpu_and_a_level_change_creates_nothing() {
    let _g = serial();
    let Some(engine) = gpu(1024) else { return };
    let ctx = engine.gpu_context().unwrap().clone();
    let m = model(&engine);
    // Odd sizes: mirror padding to the size multiple and the crop take part.
    let img = picture(41, 29);
    for alpha in [0.0, 0.5, 1.0] {
        let sync = m.run(&img, Level::alpha(alpha)).unwrap();
        let awaited = pollster::block_on(m.run_async(&img, Level::alpha(alpha))).unwrap();
        let d = max_diff(&sync, &awaited);
        assert!(d <= 1e-3, "alpha {alpha}: run_async differs by {d}");
    }
    let before = ctx.counters();
    pollster::block_on(m.run_async(&img, Level::alpha(0.7))).unwrap();
    let cost = ctx.counters().since(&before);
    assert_eq!(cost.pipelines_compiled, 0, "{cost:?}");
    assert_eq!(cost.buffers_created, 0, "{cost:?}");
    assert_eq!(cost.bind_groups_created, 0, "{cost:?}");
    assert_eq!(cost.weight_bytes_written, 0, "{cost:?}");
    assert_eq!(cost.bytes_written_besides_inputs(), 16, "{cost:?}");
}

#[test]
fn run_async_tiles_like_run_on_the_gpu() {
    let _g = serial();
    let Some(engine) = gpu(16) else { return };
    let m = model(&engine);
    let img = picture(45, 35);
    let sync = m.run(&img, Level::alpha(0.4)).unwrap();
    let awaited = pollster::block_on(m.run_async(&img, Level::alpha(0.4))).unwrap();
    let d = max_diff(&sync, &awaited);
    assert!(d <= 1e-3, "tiled run_async differs by {d}");
}

#[test]
fn two_runs_of_one_size_awaited_together_and_a_dropped_run() {
    let _g = serial();
    let Some(engine) = gpu(1024) else { return };
    let m = model(&engine);
    let img = picture(32, 24);
    let want_a = m.run(&img, Level::alpha(0.2)).unwrap();
    let want_b = m.run(&img, Level::alpha(0.9)).unwrap();
    let (a, b) = join(
        m.run_async(&img, Level::alpha(0.2)),
        m.run_async(&img, Level::alpha(0.9)),
    );
    assert!(max_diff(&a.unwrap(), &want_a) <= 1e-3);
    assert!(max_diff(&b.unwrap(), &want_b) <= 1e-3);

    // Polled once (submitted, its read-back pending) and dropped: the next runs still work.
    {
        let mut f = pin!(m.run_async(&img, Level::alpha(0.5)));
        let _ = f.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    }
    let again = pollster::block_on(m.run_async(&img, Level::alpha(0.9))).unwrap();
    assert!(max_diff(&again, &want_b) <= 1e-3);
    assert!(max_diff(&m.run(&img, Level::alpha(0.2)).unwrap(), &want_a) <= 1e-3);
}
