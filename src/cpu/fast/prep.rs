//! Weights prepared once per plan (re-laid out for the kernels, base and deltas alike) and
//! mixed per level (`base + sum_p c_p delta_p`, a few microseconds per op).

pub(crate) mod winograd_filter;

pub(crate) use winograd_filter::Tiling;

use crate::plan::{Activation, Conv2d, Depthwise, Eltwise, Epilogue, LevelVec, Mix, Node, Op};

/// Lanes of one SIMD vector (AVX2 f32): the unit of the packed weight blocks.
pub(crate) const LANES: usize = 8;

/// Per-channel arrays (bias, scale/shift, slopes, combine gains) and Winograd's `V`/`M`
/// channels are padded to a multiple of this: the widest vector (AVX-512, 16 lanes) loads
/// whole vectors from them.
pub(crate) const CHANNEL_PAD: usize = 16;

pub(crate) fn round_up(n: usize, m: usize) -> usize {
    n.div_ceil(m) * m
}

/// Floats of slack for [`Aligned`]: one cache line.
const ALIGN_FLOATS: usize = 16;

/// A `Vec<f32>` whose first element is 64-byte aligned (a cache line: an AVX-512 load of a
/// 16-channel block never splits one).
pub(crate) struct Aligned {
    buf: Vec<f32>,
    off: usize,
}

impl Aligned {
    pub fn zeros(n: usize) -> Self {
        let buf = vec![0.0f32; n + ALIGN_FLOATS];
        let off = buf.as_ptr().align_offset(64).min(ALIGN_FLOATS);
        Aligned { buf, off }
    }
    pub fn as_slice(&self) -> &[f32] {
        &self.buf[self.off..self.buf.len() - ALIGN_FLOATS + self.off]
    }
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        let n = self.buf.len() - ALIGN_FLOATS;
        &mut self.buf[self.off..self.off + n]
    }
}

/// A mixed array re-laid out: `P + 1` arrays of `n` values (base first).
pub(crate) struct Mixed {
    n: usize,
    data: Vec<f32>,
}

impl Mixed {
    /// Re-lays out each of the `P + 1` arrays of `src` (each `n_src` long): output value `o`
    /// takes source index `map(o)`, or 0 where `map` gives `None`.
    fn packed(
        src: &[f32],
        p: usize,
        n_src: usize,
        n: usize,
        map: impl Fn(usize) -> Option<usize>,
    ) -> Self {
        let mut data = vec![0.0f32; (p + 1) * n];
        for a in 0..=p {
            let s = &src[a * n_src..(a + 1) * n_src];
            let d = &mut data[a * n..(a + 1) * n];
            for (o, dv) in d.iter_mut().enumerate() {
                if let Some(i) = map(o) {
                    *dv = s[i];
                }
            }
        }
        Mixed { n, data }
    }
    /// A per-channel array of `c` channels padded with zeros to `round_up(c, CHANNEL_PAD)`.
    fn channels(src: &[f32], p: usize, c: usize) -> Self {
        Mixed::packed(src, p, c, round_up(c, CHANNEL_PAD), |o| {
            (o < c).then_some(o)
        })
    }
    /// `out = base + sum_p coefs[p] * delta_p`, in L1-sized pieces (one pass over memory).
    fn eval_into(&self, coefs: &[f32], out: &mut [f32]) {
        const PIECE: usize = 2048;
        for (i, o) in out.chunks_mut(PIECE).enumerate() {
            let at = i * PIECE;
            o.copy_from_slice(&self.data[at..at + o.len()]);
            for (p, &cp) in coefs.iter().enumerate() {
                let d = &self.data[(p + 1) * self.n + at..][..o.len()];
                for (o, &dv) in o.iter_mut().zip(d) {
                    *o += cp * dv;
                }
            }
        }
    }
    fn eval(&self, coefs: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; self.n];
        self.eval_into(coefs, &mut out);
        out
    }
    fn eval_aligned(&self, coefs: &[f32]) -> Aligned {
        let mut out = Aligned::zeros(self.n);
        self.eval_into(coefs, out.as_mut_slice());
        out
    }
}

/// The activation kind, with PReLU slopes padded.
#[derive(Clone)]
pub(crate) enum ActKind {
    None,
    Relu,
    Prelu(Vec<f32>),
}

impl ActKind {
    fn new(a: &Activation, c: usize) -> Self {
        match a {
            Activation::None => ActKind::None,
            Activation::Relu => ActKind::Relu,
            Activation::Prelu(s) => {
                let mut v = s.clone();
                v.resize(round_up(c, CHANNEL_PAD), 0.0);
                ActKind::Prelu(v)
            }
        }
    }
}

/// An epilogue prepared for packing (mixed arrays padded to whole vectors).
pub(crate) struct EpiloguePrep {
    bias: Mixed,
    scale_shift: Option<(Mixed, Mixed)>,
    act: ActKind,
    combine: Option<(Mixed, Vec<Mixed>)>,
}

/// An epilogue at one level: every vector padded with zeros to a multiple of `CHANNEL_PAD`.
pub(crate) struct EpilogueAt {
    pub bias: Vec<f32>,
    pub scale_shift: Option<(Vec<f32>, Vec<f32>)>,
    pub act: ActKind,
    pub combine: Option<(Vec<f32>, Vec<Vec<f32>>)>,
}

impl EpiloguePrep {
    fn new(ep: &Epilogue, p: usize, c: usize) -> Self {
        let scale_shift = ep
            .scale_shift
            .as_ref()
            .map(|(s, t)| (Mixed::channels(s, p, c), Mixed::channels(t, p, c)));
        let combine = ep.combine.as_ref().map(|cb| {
            let v = cb.v.iter().map(|vi| Mixed::channels(vi, p, c)).collect();
            (Mixed::channels(&cb.u, p, c), v)
        });
        EpiloguePrep {
            bias: Mixed::channels(&ep.bias, p, c),
            scale_shift,
            act: ActKind::new(&ep.act, c),
            combine,
        }
    }
    fn at(&self, coefs: &[f32]) -> EpilogueAt {
        EpilogueAt {
            bias: self.bias.eval(coefs),
            scale_shift: self
                .scale_shift
                .as_ref()
                .map(|(s, t)| (s.eval(coefs), t.eval(coefs))),
            act: self.act.clone(),
            combine: self
                .combine
                .as_ref()
                .map(|(u, v)| (u.eval(coefs), v.iter().map(|m| m.eval(coefs)).collect())),
        }
    }
}

/// Output channels of a conv split into blocks of whole vectors, one micro-kernel width each.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Block {
    /// First vector (channel `v0 * LANES`).
    pub v0: usize,
    /// Vectors in the block (1 or 2).
    pub nv: usize,
    /// Offset of the block's weights in the packed array.
    pub off: usize,
}

/// Splits `nvec` vectors into blocks of 2 (the 2 x 6 micro-kernel: 12 accumulators, 2 weight
/// vectors and a broadcast in 15 of the 16 AVX2 registers), and a last block of 1 when odd.
/// (A 3 x 4 kernel needs all 16 registers and LLVM spilled inside its loop: slower.)
pub(crate) fn blocks(nvec: usize, taps: usize) -> Vec<Block> {
    let mut out = Vec::new();
    let (mut v0, mut off) = (0, 0);
    while v0 < nvec {
        let nv = (nvec - v0).min(2);
        out.push(Block { v0, nv, off });
        v0 += nv;
        off += taps * nv * LANES;
    }
    out
}

pub(crate) struct ConvPrep {
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub noise: Option<crate::plan::Affine>,
    /// Runs as Winograd with this tile (`weight` then holds transformed filters,
    /// `[positions][block][ci][nv * LANES]`).
    pub winograd: Option<Tiling>,
    pub blocks: Vec<Block>,
    /// Per block, `[ky][kx][ci][nv * LANES]` (taps `K = k * k * cin` rows of the block width).
    weight: Mixed,
    ep: EpiloguePrep,
}

pub(crate) struct ConvAt {
    pub weight: Aligned,
    pub ep: EpilogueAt,
    pub noise: Option<f32>,
}

/// When a stride-1 3x3 conv runs as Winograd, and with which tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Winograd {
    /// When it pays: at least 8 input and 8 output channels, as F(6x6, 3x3) (on the bench
    /// net it ran 0.98x / 0.94x the time of F(4x4, 3x3) at 256 / 512, farm-bench wall ratios).
    #[default]
    Auto,
    /// Never (direct convolution only).
    Never,
    /// Every stride-1 3x3 conv as F(4x4, 3x3) (for tests).
    Always,
    /// Every stride-1 3x3 conv as F(6x6, 3x3) (for tests).
    AlwaysF6,
}

impl Winograd {
    /// The tile a stride-1 3x3 conv of `cin -> cout` channels runs with (`None`: direct).
    pub(crate) fn tiling_for(self, cin: usize, cout: usize) -> Option<Tiling> {
        match self {
            Winograd::Auto if cin >= 8 && cout >= 8 => Some(Tiling::F6),
            Winograd::Auto | Winograd::Never => None,
            Winograd::Always => Some(Tiling::F4),
            Winograd::AlwaysF6 => Some(Tiling::F6),
        }
    }
}

impl ConvPrep {
    fn new(c: &Conv2d, winograd: Winograd) -> Self {
        let p = c.mix.deltas();
        let (k, cin, cout) = (c.k, c.cin, c.cout);
        let tiling = (k == 3 && c.stride == 1)
            .then(|| winograd.tiling_for(cin, cout))
            .flatten();
        if let Some(tiling) = tiling {
            let blocks = blocks(cout.div_ceil(LANES), cin);
            let n = c.weight_len();
            let data: Vec<f32> = (0..=p)
                .flat_map(|a| {
                    winograd_filter::pack_filters(
                        &c.weight[a * n..(a + 1) * n],
                        cin,
                        cout,
                        &blocks,
                        tiling,
                    )
                })
                .collect();
            return ConvPrep {
                cin,
                cout,
                k,
                stride: c.stride,
                noise: c.noise_channel,
                winograd: Some(tiling),
                blocks,
                weight: Mixed {
                    n: data.len() / (p + 1),
                    data,
                },
                ep: EpiloguePrep::new(&c.epilogue, p, cout),
            };
        }
        let taps = k * k * cin;
        let blocks = blocks(cout.div_ceil(LANES), taps);
        let total = taps * round_up(cout, LANES);
        // Packed index -> (block, tap, lane) -> PyTorch index.
        let mut src_of = vec![usize::MAX; total];
        for b in &blocks {
            let width = b.nv * LANES;
            for ky in 0..k {
                for kx in 0..k {
                    for ci in 0..cin {
                        let t = (ky * k + kx) * cin + ci;
                        for lane in 0..width {
                            let co = b.v0 * LANES + lane;
                            if co < cout {
                                src_of[b.off + t * width + lane] =
                                    ((co * cin + ci) * k + ky) * k + kx;
                            }
                        }
                    }
                }
            }
        }
        let weight = Mixed::packed(&c.weight, p, c.weight_len(), total, |o| {
            let s = src_of[o];
            (s != usize::MAX).then_some(s)
        });
        ConvPrep {
            cin,
            cout,
            k,
            stride: c.stride,
            noise: c.noise_channel,
            winograd: None,
            blocks,
            weight,
            ep: EpiloguePrep::new(&c.epilogue, p, cout),
        }
    }
}

pub(crate) struct DepthwisePrep {
    pub c: usize,
    pub k: usize,
    /// `[ky][kx][c]` (c padded to whole vectors).
    weight: Mixed,
    ep: EpiloguePrep,
}

pub(crate) struct DepthwiseAt {
    pub weight: Vec<f32>,
    pub ep: EpilogueAt,
}

impl DepthwisePrep {
    fn new(d: &Depthwise) -> Self {
        let p = d.mix.deltas();
        let (k, c) = (d.k, d.channels);
        let cp = round_up(c, LANES);
        let weight = Mixed::packed(&d.weight, p, c * k * k, k * k * cp, |o| {
            let (tap, ch) = (o / cp, o % cp);
            (ch < c).then_some(ch * k * k + tap)
        });
        DepthwisePrep {
            c,
            k,
            weight,
            ep: EpiloguePrep::new(&d.epilogue, p, c),
        }
    }
}

pub(crate) struct EltwisePrep {
    u: Mixed,
    v: Option<Mixed>,
    act: ActKind,
}

pub(crate) struct EltwiseAt {
    pub u: Vec<f32>,
    pub v: Option<Vec<f32>>,
    pub act: ActKind,
}

impl EltwisePrep {
    fn new(e: &Eltwise) -> Self {
        let p = e.mix.deltas();
        let c = e.channels;
        EltwisePrep {
            u: Mixed::channels(&e.u, p, c),
            v: e.v.as_ref().map(|v| Mixed::channels(v, p, c)),
            act: ActKind::new(&e.act, c),
        }
    }
}

/// One node, prepared.
pub(crate) enum NodePrep {
    Conv(Box<ConvPrep>, Mix),
    Depthwise(Box<DepthwisePrep>, Mix),
    Eltwise(Box<EltwisePrep>, Mix),
    Unshuffle,
    Shuffle,
}

/// One node at one level.
pub(crate) enum NodeAt {
    Conv(ConvAt),
    Depthwise(DepthwiseAt),
    Eltwise(EltwiseAt),
    None,
}

impl NodePrep {
    /// Prepares a node of a validated plan ([`crate::plan::Plan::validate`]).
    pub fn new(node: &Node, winograd: Winograd) -> Self {
        match &node.op {
            Op::Conv2d(c) => NodePrep::Conv(Box::new(ConvPrep::new(c, winograd)), c.mix.clone()),
            Op::Depthwise(d) => NodePrep::Depthwise(Box::new(DepthwisePrep::new(d)), d.mix.clone()),
            Op::Eltwise(e) => NodePrep::Eltwise(Box::new(EltwisePrep::new(e)), e.mix.clone()),
            Op::Unshuffle => NodePrep::Unshuffle,
            Op::Shuffle => NodePrep::Shuffle,
        }
    }

    /// Re-mixes `at` (built by [`NodePrep::at`] from this node) for another level, reusing
    /// its weight buffer.
    pub fn refill(&self, level: &LevelVec, at: &mut NodeAt) {
        match (self, at) {
            (NodePrep::Conv(c, mix), NodeAt::Conv(a)) => {
                let coefs = mix.eval(level);
                c.weight.eval_into(&coefs, a.weight.as_mut_slice());
                a.ep = c.ep.at(&coefs);
                a.noise = c.noise.map(|n| n.eval(level));
            }
            (node, at) => *at = node.at(level),
        }
    }

    pub fn at(&self, level: &LevelVec) -> NodeAt {
        match self {
            NodePrep::Conv(c, mix) => {
                let coefs = mix.eval(level);
                NodeAt::Conv(ConvAt {
                    weight: c.weight.eval_aligned(&coefs),
                    ep: c.ep.at(&coefs),
                    noise: c.noise.map(|a| a.eval(level)),
                })
            }
            NodePrep::Depthwise(d, mix) => {
                let coefs = mix.eval(level);
                NodeAt::Depthwise(DepthwiseAt {
                    weight: d.weight.eval(&coefs),
                    ep: d.ep.at(&coefs),
                })
            }
            NodePrep::Eltwise(e, mix) => {
                let coefs = mix.eval(level);
                NodeAt::Eltwise(EltwiseAt {
                    u: e.u.eval(&coefs),
                    v: e.v.as_ref().map(|v| v.eval(&coefs)),
                    act: e.act.clone(),
                })
            }
            NodePrep::Unshuffle | NodePrep::Shuffle => NodeAt::None,
        }
    }
}
