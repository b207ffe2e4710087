//! The CPU reference: every kernel written to be obviously right, the oracle of the tests.
//! Loops follow the math one to one; rayon only splits output channels.

use rayon::prelude::*;

use crate::plan::{
    conv_out_dim, Combine, Conv2d, Depthwise, Eltwise, Epilogue, FtnParams, LevelVec, Mix, Node,
    Op, Plan, Shape,
};
use crate::tensor::Tensor;

/// The epilogue's level-dependent vectors evaluated at one level.
struct EvalEpilogue<'a> {
    bias: Vec<f32>,
    scale_shift: Option<(Vec<f32>, Vec<f32>)>,
    combine: Option<(Vec<f32>, Vec<Vec<f32>>)>,
    ep: &'a Epilogue,
}

impl<'a> EvalEpilogue<'a> {
    fn new(ep: &'a Epilogue, coefs: &[f32]) -> Self {
        EvalEpilogue {
            bias: Mix::apply(&ep.bias, coefs),
            scale_shift: ep
                .scale_shift
                .as_ref()
                .map(|(s, t)| (Mix::apply(s, coefs), Mix::apply(t, coefs))),
            combine: ep.combine.as_ref().map(|Combine { u, v }| {
                (
                    Mix::apply(u, coefs),
                    v.iter().map(|vi| Mix::apply(vi, coefs)).collect(),
                )
            }),
            ep,
        }
    }

    /// Applies bias, scale/shift, activation and combine to one accumulated value.
    fn apply(&self, acc: f32, c: usize, idx: usize, others: &[&Tensor]) -> f32 {
        let mut y = acc + self.bias[c];
        if let Some((s, t)) = &self.scale_shift {
            y = y * s[c] + t[c];
        }
        y = self.ep.act.apply(y, c);
        if let Some((u, v)) = &self.combine {
            y *= u[c];
            for (vi, o) in v.iter().zip(others) {
                y += vi[c] * o.data[idx];
            }
        }
        y
    }
}

/// Dense conv with zero "same" padding, fused weight mix and epilogue.
pub fn conv2d(conv: &Conv2d, level: &LevelVec, x: &Tensor, others: &[&Tensor]) -> Tensor {
    let coefs = conv.mix.eval(level);
    let w = Mix::apply(&conv.weight, &coefs);
    let ep = EvalEpilogue::new(&conv.epilogue, &coefs);
    let noise = conv.noise_channel.map(|a| a.eval(level));
    let (k, s, pad) = (conv.k, conv.stride, (conv.k / 2) as isize);
    let (h, wd) = (x.shape.h, x.shape.w);
    let out_shape = Shape::new(conv.cout, conv_out_dim(h, k, s), conv_out_dim(wd, k, s));
    let tcin = conv.tensor_cin();
    let mut out = Tensor::zeros(out_shape);
    let plane = out_shape.h * out_shape.w;
    out.data
        .par_chunks_mut(plane.max(1))
        .enumerate()
        .for_each(|(co, dst)| {
            for oy in 0..out_shape.h {
                for ox in 0..out_shape.w {
                    let mut acc = 0.0f32;
                    for ci in 0..conv.cin {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * s + ky) as isize - pad;
                                let ix = (ox * s + kx) as isize - pad;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue; // zero padding
                                }
                                let v = if ci < tcin {
                                    x.at(ci, iy as usize, ix as usize)
                                } else {
                                    noise.unwrap_or(0.0)
                                };
                                acc += v * w[((co * conv.cin + ci) * k + ky) * k + kx];
                            }
                        }
                    }
                    let idx = co * plane + oy * out_shape.w + ox;
                    dst[oy * out_shape.w + ox] = ep.apply(acc, co, idx, others);
                }
            }
        });
    out
}

/// Depthwise conv (stride 1, zero "same" padding) with fused mix and epilogue.
pub fn depthwise(dw: &Depthwise, level: &LevelVec, x: &Tensor, others: &[&Tensor]) -> Tensor {
    let coefs = dw.mix.eval(level);
    let w = Mix::apply(&dw.weight, &coefs);
    let ep = EvalEpilogue::new(&dw.epilogue, &coefs);
    let (k, pad) = (dw.k, (dw.k / 2) as isize);
    let Shape { c, h, w: wd } = x.shape;
    let mut out = Tensor::zeros(x.shape);
    let plane = h * wd;
    out.data
        .par_chunks_mut(plane.max(1))
        .enumerate()
        .take(c)
        .for_each(|(ch, dst)| {
            for y in 0..h {
                for xx in 0..wd {
                    let mut acc = 0.0f32;
                    for ky in 0..k {
                        for kx in 0..k {
                            let iy = (y + ky) as isize - pad;
                            let ix = (xx + kx) as isize - pad;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                continue;
                            }
                            acc += x.at(ch, iy as usize, ix as usize) * w[(ch * k + ky) * k + kx];
                        }
                    }
                    let idx = ch * plane + y * wd + xx;
                    dst[y * wd + xx] = ep.apply(acc, ch, idx, others);
                }
            }
        });
    out
}

/// `act(u[c] * a + v[c] * b)`.
pub fn eltwise(e: &Eltwise, level: &LevelVec, a: &Tensor, b: Option<&Tensor>) -> Tensor {
    let coefs = e.mix.eval(level);
    let u = Mix::apply(&e.u, &coefs);
    let v = e.v.as_ref().map(|v| Mix::apply(v, &coefs));
    let plane = a.shape.h * a.shape.w;
    let data = a
        .data
        .iter()
        .enumerate()
        .map(|(i, &av)| {
            let c = i / plane.max(1);
            let mut y = u[c] * av;
            if let (Some(v), Some(b)) = (&v, b) {
                y += v[c] * b.data[i];
            }
            e.act.apply(y, c)
        })
        .collect();
    Tensor::from_vec(a.shape, data)
}

/// Pixel unshuffle by 2: out[c*4 + dy*2 + dx, y, x] = in[c, 2y + dy, 2x + dx] (PyTorch order).
pub fn unshuffle(x: &Tensor) -> Tensor {
    let Shape { c, h, w } = x.shape;
    let os = Shape::new(c * 4, h / 2, w / 2);
    let mut out = Tensor::zeros(os);
    for ci in 0..c {
        for dy in 0..2 {
            for dx in 0..2 {
                let oc = ci * 4 + dy * 2 + dx;
                for y in 0..os.h {
                    for xx in 0..os.w {
                        out.data[(oc * os.h + y) * os.w + xx] = x.at(ci, 2 * y + dy, 2 * xx + dx);
                    }
                }
            }
        }
    }
    out
}

/// Pixel shuffle by 2, the inverse of [`unshuffle`].
pub fn shuffle(x: &Tensor) -> Tensor {
    let Shape { c, h, w } = x.shape;
    let os = Shape::new(c / 4, h * 2, w * 2);
    let mut out = Tensor::zeros(os);
    for oc in 0..os.c {
        for dy in 0..2 {
            for dx in 0..2 {
                let ic = oc * 4 + dy * 2 + dx;
                for y in 0..h {
                    for xx in 0..w {
                        out.data[(oc * os.h + 2 * y + dy) * os.w + 2 * xx + dx] = x.at(ic, y, xx);
                    }
                }
            }
        }
    }
    out
}

/// The unfused weight mix: `W0 + sum_p c_p D_p` written out (the baseline of the fused conv).
pub fn mix_weights(mixed: &[f32], coefs: &[f32]) -> Vec<f32> {
    Mix::apply(mixed, coefs)
}

/// The FTN filter transform ([`FtnParams`]) of a filter `[cout, cin, k, k]`.
pub fn ftn_transform(weight: &[f32], cout: usize, cin: usize, k: usize, p: &FtnParams) -> Vec<f32> {
    let kk = k * k;
    let gs = cin / p.groups; // channels per group
    let group_conv = |src: &[f32], w: &[f32], b: &[f32], dst: &mut [f32]| {
        for o in 0..cin {
            let g = o / gs;
            for px in 0..kk {
                let mut acc = b[o];
                for j in 0..gs {
                    acc += w[o * gs + j] * src[(g * gs + j) * kk + px];
                }
                dst[o * kk + px] = acc;
            }
        }
    };
    let mut out = vec![0.0; weight.len()];
    let mut hidden = vec![0.0; cin * kk];
    for f in 0..cout {
        let src = &weight[f * cin * kk..(f + 1) * cin * kk];
        group_conv(src, p.w1, p.b1, &mut hidden);
        for (i, v) in hidden.iter_mut().enumerate() {
            let s = if p.slope.len() == 1 {
                p.slope[0]
            } else {
                p.slope[i / kk]
            };
            if *v < 0.0 {
                *v *= s;
            }
        }
        group_conv(
            &hidden,
            p.w2,
            p.b2,
            &mut out[f * cin * kk..(f + 1) * cin * kk],
        );
    }
    out
}

/// Runs one node on the reference kernels.
pub fn run_node(node: &Node, level: &LevelVec, x: &Tensor, others: &[&Tensor]) -> Tensor {
    match &node.op {
        Op::Conv2d(c) => conv2d(c, level, x, others),
        Op::Depthwise(d) => depthwise(d, level, x, others),
        Op::Eltwise(e) => eltwise(e, level, x, others.first().copied()),
        Op::Unshuffle => unshuffle(x),
        Op::Shuffle => shuffle(x),
    }
}

/// Runs a whole plan on the reference kernels. The caller has checked `plan.shapes`.
pub fn run_plan(plan: &Plan, level: &LevelVec, input: &Tensor) -> Tensor {
    let mut tensors: Vec<Option<Tensor>> = vec![None; plan.num_tensors];
    tensors[0] = Some(input.clone());
    for node in &plan.nodes {
        let x = tensors[node.input]
            .as_ref()
            .expect("plan order checked by Plan::shapes");
        let others: Vec<&Tensor> = node
            .others
            .iter()
            .map(|&o| tensors[o].as_ref().expect("checked"))
            .collect();
        let y = run_node(node, level, x, &others);
        tensors[node.output] = Some(y);
    }
    tensors[plan.output].take().expect("checked")
}
