//! Shared helpers of the GPU tests: one context per test binary, random plans, tolerances.

use std::sync::{Arc, Mutex, OnceLock};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tunable::plan::{
    Activation, Affine, Combine, Conv2d, Depthwise, Eltwise, Epilogue, LevelVec, Mix, MAX_AXES,
};
use tunable::tensor::{Shape, Tensor};
use tunable::testing::gpu::kernels::EpFlags;
use tunable::testing::gpu::GpuContext;

/// The one GPU context of this test binary (lavapipe is happier with one device), or None
/// with a skip message; with TUNABLE_REQUIRE_GPU=1 a missing adapter fails the test.
pub fn ctx() -> Option<Arc<GpuContext>> {
    static CTX: OnceLock<Option<Arc<GpuContext>>> = OnceLock::new();
    let c = CTX.get_or_init(|| match GpuContext::new() {
        Ok(c) => {
            eprintln!("GPU tests on: {}", c.info());
            Some(c)
        }
        Err(e) => {
            if require_gpu() {
                panic!("TUNABLE_REQUIRE_GPU=1 but no usable GPU adapter: {e}");
            }
            eprintln!("skipping GPU tests: {e}");
            None
        }
    });
    if c.is_none() && require_gpu() {
        panic!("TUNABLE_REQUIRE_GPU=1 but no usable GPU adapter");
    }
    c.clone()
}

pub fn require_gpu() -> bool {
    std::env::var("TUNABLE_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn rand_vec(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-1.0..1.0) * scale).collect()
}

pub fn rand_tensor(rng: &mut StdRng, shape: Shape) -> Tensor {
    Tensor::from_vec(shape, rand_vec(rng, shape.len(), 1.0))
}

pub fn rand_level(rng: &mut StdRng) -> LevelVec {
    let mut l = [0.0; MAX_AXES];
    for v in &mut l {
        *v = rng.gen_range(0.0..1.0);
    }
    l
}

pub fn rand_affine(rng: &mut StdRng) -> Affine {
    let mut a = Affine {
        offset: rng.gen_range(-0.5..0.5),
        gain: [0.0; MAX_AXES],
    };
    for g in &mut a.gain {
        *g = rng.gen_range(-1.0..1.0);
    }
    a
}

pub fn rand_mix(rng: &mut StdRng, p: usize) -> Mix {
    Mix {
        coefs: (0..p).map(|_| rand_affine(rng)).collect(),
    }
}

/// A mixed array of `(p + 1) * n` values: the base at `base +- scale`, deltas at `+- scale / 2`.
pub fn mixed(rng: &mut StdRng, n: usize, p: usize, base: f32, scale: f32) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n)
        .map(|_| base + rng.gen_range(-1.0..1.0) * scale)
        .collect();
    v.extend(rand_vec(rng, n * p, scale * 0.5));
    v
}

pub fn rand_epilogue(rng: &mut StdRng, f: EpFlags, c: usize, p: usize) -> Epilogue {
    Epilogue {
        bias: mixed(rng, c, p, 0.0, 0.1),
        scale_shift: f
            .scale_shift
            .then(|| (mixed(rng, c, p, 1.0, 0.3), mixed(rng, c, p, 0.0, 0.1))),
        act: match f.act {
            0 => Activation::None,
            1 => Activation::Relu,
            _ => Activation::Prelu(rand_vec(rng, c, 0.3)),
        },
        combine: f.combine.then(|| Combine {
            u: mixed(rng, c, p, 1.0, 0.3),
            v: (0..f.others).map(|_| mixed(rng, c, p, 0.0, 0.7)).collect(),
        }),
    }
}

pub struct ConvSpec {
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub p: usize,
    pub ep: EpFlags,
    pub noise: bool,
    pub unfused: bool,
}

impl ConvSpec {
    /// No noise channel, fused mix; set those with `..ConvSpec::new(..)`.
    pub fn new(cin: usize, cout: usize, k: usize, stride: usize, p: usize, ep: EpFlags) -> Self {
        ConvSpec {
            cin,
            cout,
            k,
            stride,
            p,
            ep,
            noise: false,
            unfused: false,
        }
    }
}

/// A random conv; `cin` counts the tensor's channels (the noise channel comes on top).
pub fn rand_conv(rng: &mut StdRng, s: &ConvSpec) -> Conv2d {
    let cin = s.cin + s.noise as usize;
    let fan = (cin * s.k * s.k) as f32;
    let n = s.cout * cin * s.k * s.k;
    Conv2d {
        cin,
        cout: s.cout,
        k: s.k,
        stride: s.stride,
        mix: rand_mix(rng, s.p),
        weight: mixed(rng, n, s.p, 0.0, 1.0 / fan.sqrt()),
        epilogue: rand_epilogue(rng, s.ep, s.cout, s.p),
        noise_channel: s.noise.then(|| rand_affine(rng)),
        unfused_mix: s.unfused,
    }
}

pub fn rand_depthwise(rng: &mut StdRng, c: usize, k: usize, p: usize, ep: EpFlags) -> Depthwise {
    Depthwise {
        channels: c,
        k,
        mix: rand_mix(rng, p),
        weight: mixed(rng, c * k * k, p, 0.0, 1.0 / k as f32),
        epilogue: rand_epilogue(rng, ep, c, p),
    }
}

pub fn rand_eltwise(rng: &mut StdRng, c: usize, p: usize, has_b: bool, act: u8) -> Eltwise {
    Eltwise {
        channels: c,
        mix: rand_mix(rng, p),
        u: mixed(rng, c, p, 1.0, 0.5),
        v: has_b.then(|| mixed(rng, c, p, 0.0, 1.0)),
        act: match act {
            0 => Activation::None,
            1 => Activation::Relu,
            _ => Activation::Prelu(rand_vec(rng, c, 0.3)),
        },
    }
}

/// Largest differences seen, by kernel, printed at the end of each test (`--nocapture`).
pub struct Worst {
    name: String,
    max_abs: f32,
    max_rel_tol: f32,
    cases: usize,
}

impl Worst {
    pub fn new(name: &str) -> Self {
        Worst {
            name: name.into(),
            max_abs: 0.0,
            max_rel_tol: 0.0,
            cases: 0,
        }
    }

    /// Checks `gpu` against `reference`: |g - r| <= atol + 1e-5 |r|, where
    /// atol = 2e-6 * sqrt(reduction length) * max(1, max |r|) (f32 summation error grows
    /// like sqrt(n) for random-sign terms; the factor leaves ~10x headroom).
    pub fn check(&mut self, case: &str, gpu: &Tensor, reference: &Tensor, reduction: usize) {
        self.check_scaled(case, gpu, reference, reduction, 1.0);
    }

    /// `check` with the absolute tolerance times `factor`: for algorithms with a larger
    /// rounding error than the direct sum (Winograd's transforms).
    pub fn check_scaled(
        &mut self,
        case: &str,
        gpu: &Tensor,
        reference: &Tensor,
        reduction: usize,
        factor: f32,
    ) {
        assert_eq!(gpu.shape, reference.shape, "{}: {case}: shape", self.name);
        let scale = reference.data.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let atol = factor * 2e-6 * (reduction.max(1) as f32).sqrt() * scale;
        let mut worst = (0.0f32, 0usize);
        for (i, (g, r)) in gpu.data.iter().zip(&reference.data).enumerate() {
            let d = (g - r).abs();
            let tol = atol + 1e-5 * r.abs();
            if d > tol || d.is_nan() {
                panic!(
                    "{}: {case}: element {i} of {:?}: gpu {g} vs reference {r} (diff {d:e}, tolerance {tol:e})",
                    self.name, gpu.shape
                );
            }
            if d > worst.0 {
                worst = (d, i);
            }
            self.max_rel_tol = self.max_rel_tol.max(d / tol);
        }
        self.max_abs = self.max_abs.max(worst.0);
        self.cases += 1;
    }

    pub fn print(&self) {
        println!(
            "[gpu-vs-cpu] {:<28} cases {:>4}  max |gpu - cpu| = {:.3e}  (worst = {:.1}% of tolerance)",
            self.name,
            self.cases,
            self.max_abs,
            100.0 * self.max_rel_tol
        );
        SUMMARY
            .lock()
            .unwrap()
            .push(format!("{} {:.3e}", self.name, self.max_abs));
    }
}

pub static SUMMARY: Mutex<Vec<String>> = Mutex::new(Vec::new());
