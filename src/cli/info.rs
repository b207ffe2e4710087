//! `tunable info`: the adapter, its backend and limits, and a conv run on GPU and CPU.

use tunable::noise::Rng;
use tunable::plan::{Activation, Affine, Conv2d, Epilogue, Mix, Node, Op};
use tunable::tensor::{Shape, Tensor};
use tunable::testing::cpu::reference;
use tunable::testing::gpu::{GpuContext, GpuOptions};

use super::{anyhow_like::Result, Ctx};

pub fn run(ctx: &Ctx) -> Result<()> {
    let engine = ctx.engine()?;
    println!("engine: {}", engine.describe());
    let gpu = match engine.gpu_context() {
        Some(c) => c.clone(),
        None => match GpuOptions::from_env().and_then(|o| GpuContext::with_options(&o)) {
            Ok(c) => c,
            Err(e) => {
                println!("gpu: {e}");
                return Ok(());
            }
        },
    };
    println!("{}", gpu.info());
    // One 3x3 conv, 16 -> 16 channels on 33x31 pixels with a level mix, on both sides.
    let mut rng = Rng::new(7);
    let mut r = |n: usize| {
        (0..n)
            .map(|_| rng.normal() as f32 * 0.2)
            .collect::<Vec<f32>>()
    };
    let (cin, cout, k) = (16, 16, 3);
    let conv = Conv2d {
        cin,
        cout,
        k,
        stride: 1,
        mix: Mix {
            coefs: vec![Affine::axis(0, 1.0)],
        },
        weight: r(2 * cout * cin * k * k),
        epilogue: Epilogue {
            bias: r(2 * cout),
            scale_shift: None,
            act: Activation::Relu,
            combine: None,
        },
        noise_channel: None,
        unfused_mix: false,
    };
    let node = Node {
        name: "check".into(),
        op: Op::Conv2d(conv),
        input: 0,
        others: vec![],
        output: 1,
    };
    let x = Tensor::from_vec(Shape::new(cin, 31, 33), r(cin * 31 * 33));
    let level = [0.37, 0.0, 0.0, 0.0];
    let t = std::time::Instant::now();
    let on_gpu = tunable::testing::gpu::run_node(&gpu, &node, &level, &x, &[])?;
    let gpu_ms = t.elapsed().as_secs_f64() * 1e3;
    let on_cpu = reference::run_node(&node, &level, &x, &[]);
    println!(
        "check: conv 3x3 16->16 on 33x31 at alpha 0.37: max |GPU - CPU| = {:.3e} (GPU {gpu_ms:.1} ms including setup)",
        on_gpu.max_abs_diff(&on_cpu)
    );
    Ok(())
}
