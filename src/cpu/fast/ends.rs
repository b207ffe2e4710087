//! The plan's two ends fused with the layout change (CHW in and out, HWC inside): a first
//! node that pixel-unshuffles the input is done while the input is transposed, and a closing
//! pixel shuffle followed by an eltwise with the input (the denoisers' global residual) is
//! done while the output is transposed, reading the input from the caller's CHW tensor.
//!
//! Why: on 3- and 12-channel tensors each of those passes moved little data but cost a whole
//! parallel sweep; at 256x256 the five of them (input, unshuffle, shuffle, residual, output)
//! took 0.73 ms of a 13.5 ms run (`TUNABLE_FAST_PROFILE=1`). The arithmetic is the one of
//! `simple::eltwise` (`u * a`, then `+ v * b`, then the activation), so results are
//! bit-identical to the unfused passes.

use rayon::prelude::*;

use super::act::{Act, Pool};
use super::prep::{ActKind, EltwiseAt};
use crate::plan::{Op, Plan};
use crate::tensor::{Shape, Tensor};

/// Which ends of a plan run fused, found once per plan.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Ends {
    /// Node 0 unshuffles tensor 0.
    pub head: bool,
    /// The last two nodes are a shuffle and an eltwise of its output (with tensor 0 or
    /// nothing as the second operand) that writes the plan's output.
    pub tail: bool,
    /// Whether any node run on its own still reads tensor 0 (then it is made as usual).
    pub input_act: bool,
}

impl Ends {
    pub fn detect(plan: &Plan, last_use: &[Option<usize>]) -> Ends {
        let n = plan.nodes.len();
        let head = n > 0 && matches!(plan.nodes[0].op, Op::Unshuffle) && plan.nodes[0].input == 0;
        let tail = n >= 2 + head as usize && {
            let (s, e) = (&plan.nodes[n - 2], &plan.nodes[n - 1]);
            matches!(s.op, Op::Shuffle)
                && matches!(e.op, Op::Eltwise(_))
                && e.input == s.output
                && (e.others.is_empty() || e.others == [0])
                && e.output == plan.output
                && last_use[s.output] == Some(n - 1)
        };
        let fused = |i: usize| (head && i == 0) || (tail && i + 2 >= n);
        let input_act = plan.output == 0
            || plan
                .nodes
                .iter()
                .enumerate()
                .any(|(i, node)| !fused(i) && (node.input == 0 || node.others.contains(&0)));
        Ends {
            head,
            tail,
            input_act,
        }
    }
}

/// `unshuffle(t)` as an activation with border `b`:
/// `out[y][x][ci * 4 + dy * 2 + dx] = t[ci][2y + dy][2x + dx]`.
pub(crate) fn unshuffle_from_tensor(t: &Tensor, b: usize, pool: &mut Pool) -> Act {
    let Shape { c, h, w } = t.shape;
    let (oh, ow) = (h / 2, w / 2);
    let mut a = pool.take(4 * c, oh, ow, b);
    a.interior_rows_mut().for_each(|(y, row)| {
        for ci in 0..c {
            for dy in 0..2 {
                let src = &t.data[(ci * h + 2 * y + dy) * w..][..w];
                for (x, px) in row.chunks_exact_mut(4 * c).enumerate() {
                    px[ci * 4 + dy * 2] = src[2 * x];
                    px[ci * 4 + dy * 2 + 1] = src[2 * x + 1];
                }
            }
        }
    });
    a
}

/// `act(u * shuffle(a) + v * input)` as a CHW tensor (`input` absent: no second term).
pub(crate) fn shuffle_eltwise_to_tensor(a: &Act, e: &EltwiseAt, input: Option<&Tensor>) -> Tensor {
    let (c, h, w) = (a.c / 4, a.h * 2, a.w * 2);
    let mut data = vec![0.0f32; c * h * w];
    let plane = h * w;
    // One task per output row of every channel plane.
    data.par_chunks_mut(w).enumerate().for_each(|(i, out)| {
        let (ch, y) = (i / h, i % h);
        let src = a.row(y / 2);
        let k = ch * 4 + (y % 2) * 2;
        let u = e.u[ch];
        for (x, o) in out.iter_mut().enumerate() {
            *o = u * src[(x / 2) * a.c + k + x % 2];
        }
        if let (Some(v), Some(t)) = (&e.v, input) {
            let v = v[ch];
            for (o, &s) in out.iter_mut().zip(&t.data[ch * plane + y * w..][..w]) {
                *o += v * s;
            }
        }
        match &e.act {
            ActKind::None => {}
            ActKind::Relu => out.iter_mut().for_each(|o| *o = o.max(0.0)),
            ActKind::Prelu(s) => out
                .iter_mut()
                .filter(|o| **o < 0.0)
                .for_each(|o| *o *= s[ch]),
        }
    });
    Tensor::from_vec(Shape::new(c, h, w), data)
}
