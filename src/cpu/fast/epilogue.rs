//! The conv epilogue (bias, scale/shift, activation, combine), written once over [`Lane8`]
//! and applied to accumulated sums before their single store: by the direct conv's
//! micro-kernels (AVX2 and portable), Winograd's output transform and the depthwise conv.

use super::prep::{ActKind, EpilogueAt, LANES};
use super::simd::Lane8;

/// An epilogue at one level as pointers to its arrays at a block's first channel (what the
/// micro-kernels carry; [`EpVec`] loads 8 channels of it into vectors).
pub(crate) struct Ep {
    pub(crate) bias: *const f32,
    /// Null when there is no scale/shift.
    pub(crate) scale: *const f32,
    pub(crate) shift: *const f32,
    /// 0 none, 1 relu, 2 prelu.
    pub(crate) act: u8,
    pub(crate) slope: *const f32,
    /// Null when there is no combine.
    pub(crate) u: *const f32,
    pub(crate) v: [*const f32; 2],
    pub(crate) nother: usize,
    /// Valid lanes of the block's last vector (1..=LANES).
    pub(crate) tail: usize,
}

// SAFETY: the pointers address read-only arrays that outlive the conv call.
unsafe impl Send for Ep {}
unsafe impl Sync for Ep {}

impl Ep {
    /// No epilogue: adds `zeros` (as many as the output's channels, padded) and stores whole
    /// vectors.
    pub(crate) fn store_only(zeros: &[f32]) -> Ep {
        let null = std::ptr::null::<f32>();
        Ep {
            bias: zeros.as_ptr(),
            scale: null,
            shift: null,
            act: 0,
            slope: null,
            u: null,
            v: [null; 2],
            nother: 0,
            tail: LANES,
        }
    }

    /// `e` from channel `ch0` on, `tail` valid lanes in the block's last vector, combining
    /// the first `nother` other tensors that have a gain.
    pub(crate) fn new(e: &EpilogueAt, ch0: usize, tail: usize, nother: usize) -> Ep {
        let null = std::ptr::null::<f32>();
        let at = |v: &Vec<f32>| v[ch0..].as_ptr();
        let (scale, shift) = e
            .scale_shift
            .as_ref()
            .map_or((null, null), |(s, t)| (at(s), at(t)));
        let (act, slope) = match &e.act {
            ActKind::None => (0, null),
            ActKind::Relu => (1, null),
            ActKind::Prelu(s) => (2, at(s)),
        };
        let (u, v, nother) = match &e.combine {
            Some((u, v)) => {
                let n = v.len().min(nother);
                let mut vp = [null; 2];
                for (d, s) in vp.iter_mut().zip(v.iter().take(n)) {
                    *d = at(s);
                }
                (at(u), vp, n)
            }
            None => (null, [null; 2], 0),
        };
        Ep {
            bias: at(&e.bias),
            scale,
            shift,
            act,
            slope,
            u,
            v,
            nother,
            tail,
        }
    }
}

/// The epilogue's vectors for 8 channels, loaded once and applied to many pixels.
pub(crate) struct EpVec<V> {
    bias: V,
    scale_shift: Option<(V, V)>,
    /// 0 none, 1 relu, 2 prelu (with the slope).
    act: (u8, V),
    /// `u` and the gains of the combine tensors.
    combine: Option<(V, [V; 2], usize)>,
}

impl<V: Lane8> EpVec<V> {
    /// Loads the vectors of channels `c..c + 8` past the block's first channel (the arrays are
    /// padded to whole vectors).
    #[inline(always)]
    pub(crate) unsafe fn load(e: &Ep, c: usize) -> Self {
        // No closures here: they would be compiled without the caller's AVX2.
        let scale_shift = if e.scale.is_null() {
            None
        } else {
            Some((V::load(e.scale.add(c)), V::load(e.shift.add(c))))
        };
        let slope = if e.act == 2 {
            V::load(e.slope.add(c))
        } else {
            V::zero()
        };
        let combine = if e.u.is_null() {
            None
        } else {
            let mut v = [V::zero(); 2];
            for (q, vq) in v.iter_mut().enumerate().take(e.nother) {
                *vq = V::load(e.v[q].add(c));
            }
            Some((V::load(e.u.add(c)), v, e.nother))
        };
        EpVec {
            bias: V::load(e.bias.add(c)),
            scale_shift,
            act: (e.act, slope),
            combine,
        }
    }

    /// The epilogue of one vector of accumulated sums, in the reference's order; `others` are
    /// the combine tensors at its place (`n` valid lanes).
    #[inline(always)]
    pub(crate) unsafe fn apply(&self, mut y: V, others: &[*const f32; 2], n: usize) -> V {
        y = y.add(self.bias);
        if let Some((s, t)) = self.scale_shift {
            y = y.mul_add(s, t);
        }
        y = match self.act.0 {
            1 => y.relu(),
            2 => y.prelu(self.act.1),
            _ => y,
        };
        if let Some((u, v, k)) = self.combine {
            y = y.mul(u);
            for q in 0..k {
                y = v[q].mul_add(V::load_upto(others[q], n), y);
            }
        }
        y
    }
}
