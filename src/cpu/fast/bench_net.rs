//! The AdaFM-Net-style color network used by the CPU benchmarks (benches/cpu_net.rs) and by
//! tools/bench_peers.py, built with seeded random weights:
//!
//! ```text
//! x (3ch) -> pixel unshuffle (12ch, half res) -> head conv3x3 12->C (no act)
//!   -> blocks x [conv3x3 C->C + ReLU, conv3x3 C->C + block input (combine)]
//!   -> tail conv3x3 C->12 -> pixel shuffle (3ch) -> + x (eltwise)
//! ```
//! Every conv has one basis delta driven by level axis 0 (a tunable model); [`torch_weights`]
//! evaluates them at a level in PyTorch layout for the peer benchmarks.

use crate::plan::{
    Activation, Affine, Combine, Conv2d, Eltwise, Epilogue, LevelVec, Mix, Node, Op, Plan,
};

/// SplitMix64: a tiny seeded generator, so the library needs no `rand`.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[-bound, bound)`.
    fn uniform(&mut self, bound: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        (2.0 * u - 1.0) * bound
    }
    fn vec(&mut self, n: usize, bound: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(bound)).collect()
    }
}

/// A 3x3 conv with one delta on level axis 0; `gain` scales He-uniform weights.
fn conv3(
    rng: &mut Rng,
    cin: usize,
    cout: usize,
    gain: f32,
    act: Activation,
    combine: bool,
) -> Conv2d {
    let n = cout * cin * 9;
    let bound = gain * (6.0 / (cin * 9) as f32).sqrt();
    let mut weight = rng.vec(n, bound);
    weight.extend(rng.vec(n, 0.1 * bound));
    let mut bias = rng.vec(cout, 0.01);
    bias.extend(rng.vec(cout, 0.001));
    let ones_zeros = || [vec![1.0; cout], vec![0.0; cout]].concat();
    Conv2d {
        cin,
        cout,
        k: 3,
        stride: 1,
        mix: Mix {
            coefs: vec![Affine::axis(0, 1.0)],
        },
        weight,
        epilogue: Epilogue {
            bias,
            scale_shift: None,
            act,
            combine: combine.then(|| Combine {
                u: ones_zeros(),
                v: vec![ones_zeros()],
            }),
        },
        noise_channel: None,
        unfused_mix: false,
    }
}

/// The network with `channels` features and `blocks` residual blocks, weights from `seed`.
/// `adafm_net_plan(48, 8, seed)` is the 44.85 GFLOP (at 512x512) benchmark network.
pub fn adafm_net_plan(channels: usize, blocks: usize, seed: u64) -> Plan {
    let mut rng = Rng(seed);
    let mut nodes = Vec::new();
    let mut next = 1;
    let mut node = |name: String, op: Op, input: usize, others: Vec<usize>| -> usize {
        let output = next;
        next += 1;
        nodes.push(Node {
            name,
            op,
            input,
            others,
            output,
        });
        output
    };
    let t = node("unshuffle".into(), Op::Unshuffle, 0, vec![]);
    let mut x = node(
        "head".into(),
        Op::Conv2d(conv3(&mut rng, 12, channels, 0.7, Activation::None, false)),
        t,
        vec![],
    );
    for i in 0..blocks {
        let a = node(
            format!("body.{i}.conv1"),
            Op::Conv2d(conv3(
                &mut rng,
                channels,
                channels,
                1.0,
                Activation::Relu,
                false,
            )),
            x,
            vec![],
        );
        x = node(
            format!("body.{i}.conv2"),
            Op::Conv2d(conv3(
                &mut rng,
                channels,
                channels,
                0.1,
                Activation::None,
                true,
            )),
            a,
            vec![x],
        );
    }
    let t = node(
        "tail".into(),
        Op::Conv2d(conv3(&mut rng, channels, 12, 0.1, Activation::None, false)),
        x,
        vec![],
    );
    let t = node("shuffle".into(), Op::Shuffle, t, vec![]);
    let eltwise = Eltwise {
        channels: 3,
        mix: Mix::none(),
        u: vec![1.0; 3],
        v: Some(vec![1.0; 3]),
        act: Activation::None,
    };
    let out = node("residual".into(), Op::Eltwise(eltwise), t, vec![0]);
    Plan {
        in_channels: 3,
        num_tensors: out + 1,
        nodes,
        output: out,
    }
}

/// Multiply-adds x 2 of every conv and depthwise conv of `plan` for an `h x w` input.
pub fn plan_flops(plan: &Plan, h: usize, w: usize) -> crate::Result<f64> {
    let shapes = plan.shapes(h, w)?;
    Ok(plan
        .nodes
        .iter()
        .map(|n| {
            let o = shapes[n.output];
            let px = (o.h * o.w) as f64;
            match &n.op {
                Op::Conv2d(c) => 2.0 * px * (c.cout * c.cin * c.k * c.k) as f64,
                Op::Depthwise(d) => 2.0 * px * (d.channels * d.k * d.k) as f64,
                _ => 0.0,
            }
        })
        .sum())
}

/// Every conv's weight `[cout, cin, k, k]` and bias `[cout]` evaluated at `level`, named
/// `{node}.weight` / `{node}.bias` (PyTorch layout), for the peer benchmarks.
pub fn torch_weights(plan: &Plan, level: &LevelVec) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut out = Vec::new();
    for n in &plan.nodes {
        if let Op::Conv2d(c) = &n.op {
            let coefs = c.mix.eval(level);
            out.push((
                format!("{}.weight", n.name),
                vec![c.cout, c.cin, c.k, c.k],
                Mix::apply(&c.weight, &coefs),
            ));
            out.push((
                format!("{}.bias", n.name),
                vec![c.cout],
                Mix::apply(&c.epilogue.bias, &coefs),
            ));
        }
    }
    out
}
