//! Dense convolution as an implicit GEMM on the HWC layout: no im2col buffer at all.
//!
//! For an output tile of `NP` consecutive pixels of one row and a block of `NV` vectors of
//! output channels, the reduction runs over `K = k * k * cin` taps. In HWC with a zero border,
//! for a fixed `ky` the taps `(kx, ci)` of one output pixel are `k * cin` *consecutive* floats
//! of the input, so the micro-kernel walks one contiguous run per kernel row: it broadcasts
//! the input value of each pixel and multiplies it into `NV` vectors of packed weights,
//! `NV * NP = 12` accumulators in registers. The epilogue (bias, scale/shift, activation,
//! combine) is applied to the accumulators before the single store of the output.

#![allow(clippy::needless_range_loop)]

use rayon::prelude::*;

use super::act::Act;
use super::prep::{ActKind, ConvAt, ConvPrep, EpilogueAt, LANES};
use super::Kernel;

/// One micro-tile's pointers. All offsets in floats.
pub(crate) struct Tile {
    /// Input value of tap `(ky=0, kx=0, ci=0)` for the tile's first pixel.
    pub(super) x: *const f32,
    /// Between input rows.
    pub(super) xrow: usize,
    /// Between the inputs of two consecutive output pixels (`stride * cin`).
    pub(super) pstep: usize,
    pub(super) k: usize,
    /// `k * cin`: consecutive taps per kernel row.
    pub(super) run: usize,
    /// The block's packed weights, `[k * run][NV * LANES]`.
    pub(super) w: *const f32,
    /// Output channel `v0 * LANES` of the first pixel.
    pub(super) out: *mut f32,
    /// Between output pixels (and combine pixels): `cout`.
    pub(super) ostep: usize,
    /// The combine tensors at the same place as `out` (null when absent).
    pub(super) others: [*const f32; 2],
}

/// The epilogue's vectors at the block's first channel.
pub(crate) struct Ep {
    bias: *const f32,
    /// Null when there is no scale/shift.
    scale: *const f32,
    shift: *const f32,
    /// 0 none, 1 relu, 2 prelu.
    act: u8,
    slope: *const f32,
    /// Null when there is no combine.
    u: *const f32,
    v: [*const f32; 2],
    nother: usize,
    /// Valid lanes of the block's last vector (1..=LANES).
    tail: usize,
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

    fn new(e: &EpilogueAt, ch0: usize, tail: usize, nother: usize) -> Ep {
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

/// Pixels per tile for a block of `nv` vectors (12 accumulators).
pub(crate) const fn tile_pixels(nv: usize) -> usize {
    12 / nv
}

/// Wrapper to share raw pointers with rayon tasks; every task writes disjoint rows.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr(*const f32);
unsafe impl Send for SyncPtr {}
unsafe impl Sync for SyncPtr {}

impl SyncPtr {
    pub(crate) fn new(p: *const f32) -> Self {
        SyncPtr(p)
    }
    /// (A method, so that closures capture the wrapper and not its raw field.)
    pub(crate) fn get(self) -> *const f32 {
        self.0
    }
}

/// Runs the conv of `prep` at level `at` from `x` (HWC, `cin` channels including a
/// materialized noise channel, border >= k/2) into `y` (interior fully written).
pub(crate) fn conv(
    prep: &ConvPrep,
    at: &ConvAt,
    x: &Act,
    y: &mut Act,
    others: &[&Act],
    kernel: Kernel,
) {
    let (k, s, cin, cout) = (prep.k, prep.stride, prep.cin, prep.cout);
    debug_assert_eq!(x.c, cin);
    debug_assert!(x.b >= k / 2);
    debug_assert_eq!(y.c, cout);
    let pad = (k / 2) as isize;
    let (ow, xrow, run) = (y.w, x.row_stride(), k * cin);
    let xlen = x.data().len();
    let xp = SyncPtr(x.data().as_ptr());
    let wp = SyncPtr(at.weight.as_slice().as_ptr());
    let nother = others.len().min(2);
    let optr: Vec<SyncPtr> = others
        .iter()
        .take(2)
        .map(|o| SyncPtr(o.data().as_ptr()))
        .collect();
    let eps: Vec<Ep> = prep
        .blocks
        .iter()
        .map(|b| {
            let ch0 = b.v0 * LANES;
            let tail = (cout - ch0 - (b.nv - 1) * LANES).min(LANES);
            Ep::new(&at.ep, ch0, tail, nother)
        })
        .collect();
    let eps = &eps;
    let optr = &optr;
    let yshape = (y.c, y.h, y.w);
    y.interior_rows_mut().for_each(move |(oy, row)| {
        let row_ptr = row.as_mut_ptr();
        let iy = (oy * s) as isize - pad;
        // Output pixels [from, to) of block `b`, in tiles.
        let span = |b: &super::prep::Block, ep: &Ep, from: usize, to: usize| {
            let np_max = tile_pixels(b.nv);
            let mut ox0 = from;
            while ox0 < to {
                let np = np_max.min(to - ox0);
                let xoff = x.offset(iy, (ox0 * s) as isize - pad);
                debug_assert!(xoff + (k - 1) * xrow + (np - 1) * s * cin + run <= xlen);
                let fits_full = xoff + (k - 1) * xrow + (np_max - 1) * s * cin + run <= xlen;
                let mut op = [std::ptr::null(); 2];
                for (i, o) in others.iter().take(2).enumerate() {
                    debug_assert_eq!((o.c, o.h, o.w), yshape);
                    // SAFETY: (oy, ox0) is an interior pixel of `o`, same shape as `y`.
                    op[i] = unsafe {
                        optr[i]
                            .get()
                            .add(o.offset(oy as isize, ox0 as isize) + b.v0 * LANES)
                    };
                }
                // SAFETY: every pointer addresses the tile's pixels, checked above.
                let t = unsafe {
                    Tile {
                        x: xp.get().add(xoff),
                        xrow,
                        pstep: s * cin,
                        k,
                        run,
                        w: wp.get().add(b.off),
                        out: row_ptr.add(ox0 * cout + b.v0 * LANES),
                        ostep: cout,
                        others: op,
                    }
                };
                unsafe { tile(kernel, b.nv, np, fits_full, &t, ep) };
                ox0 += np;
            }
        };
        // Block-outer: the block's weights (27 KB for 48 -> 48 3x3) stay in L1 along the row.
        for (b, ep) in prep.blocks.iter().zip(eps) {
            span(b, ep, 0, ow);
        }
    });
}

/// Runs one micro-tile on the selected kernel.
/// `fits_full`: computing all `tile_pixels(nv)` pixels reads inside the input buffer.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub(crate) unsafe fn tile(kernel: Kernel, nv: usize, np: usize, fits_full: bool, t: &Tile, e: &Ep) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 if fits_full => avx2::full(nv, np, t, e),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => avx2::partial(nv, np, t, e),
        _ => portable_tile(nv, np, t, e),
    }
}

/// A full tile of raw sums (no epilogue): all `tile_pixels(nv)` pixels, whole vectors.
/// The caller guarantees that the full tile reads and writes inside its buffers.
pub(crate) unsafe fn tile_raw(kernel: Kernel, nv: usize, t: &Tile, zeros: &Ep) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => avx2::full_store(nv, t),
        _ => portable_tile(nv, tile_pixels(nv), t, zeros),
    }
}

/// The portable micro-kernel (any target): the same loops on plain arrays.
unsafe fn portable_tile(nv: usize, np: usize, t: &Tile, e: &Ep) {
    let width = nv * LANES;
    let mut acc = [[0.0f32; 2 * LANES]; 12];
    for ky in 0..t.k {
        let xr = t.x.add(ky * t.xrow);
        let wr = t.w.add(ky * t.run * width);
        for tap in 0..t.run {
            let wv = std::slice::from_raw_parts(wr.add(tap * width), width);
            for (j, aj) in acc.iter_mut().enumerate().take(np) {
                let xv = *xr.add(j * t.pstep + tap);
                for (a, &w) in aj.iter_mut().zip(wv) {
                    *a += w * xv;
                }
            }
        }
    }
    let valid = (nv - 1) * LANES + e.tail;
    for (j, aj) in acc.iter().enumerate().take(np) {
        for (c, &a) in aj.iter().enumerate().take(valid) {
            let mut y = a + *e.bias.add(c);
            if !e.scale.is_null() {
                y = y * *e.scale.add(c) + *e.shift.add(c);
            }
            y = match e.act {
                1 => y.max(0.0),
                2 if y < 0.0 => y * *e.slope.add(c),
                _ => y,
            };
            if !e.u.is_null() {
                y *= *e.u.add(c);
                for q in 0..e.nother {
                    y += *e.v[q].add(c) * *t.others[q].add(j * t.ostep + c);
                }
            }
            *t.out.add(j * t.ostep + c) = y;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Ep, Tile, LANES};
    use std::arch::x86_64::*;

    /// Defines a full-tile micro-kernel with one named variable per accumulator (LLVM keeps
    /// named locals in registers; arrays of vectors got shuffled and spilled). It computes all
    /// `NP` pixels; the caller guarantees that even the pixels past a row's end (stored or not)
    /// read inside the input buffer.
    macro_rules! full_kernel {
        ($name:ident, $store:ident, $nv:literal, $np:literal, $ws:tt, $w:tt, $xs:tt) => {
            #[target_feature(enable = "avx2,fma")]
            pub(super) unsafe fn $name(t: &Tile) -> [[__m256; $nv]; $np] {
                full_kernel!(@body t, $nv, $ws, $w, $xs);
                full_kernel!(@array $xs)
            }

            /// The kernel storing its raw sums (no epilogue) as whole vectors.
            #[target_feature(enable = "avx2,fma")]
            pub(super) unsafe fn $store(t: &Tile) {
                full_kernel!(@body t, $nv, $ws, $w, $xs);
                full_kernel!(@store t, $xs);
            }
        };
        (@body $t:ident, $nv:literal, $ws:tt, [$($w:ident),+], [$($x:ident: [$($c:ident),+]),+]) => {
            $($(let mut $c = _mm256_setzero_ps();)+)+
            for ky in 0..$t.k {
                let base = $t.x.add(ky * $t.xrow);
                let mut j = 0usize;
                $(
                    let $x = base.add(j * $t.pstep);
                    j += 1;
                )+
                let _ = j;
                let mut wp = $t.w.add(ky * $t.run * $nv * LANES);
                for q in 0..$t.run {
                    let mut i = 0usize;
                    $(
                        let $w = _mm256_load_ps(wp.add(i * LANES));
                        i += 1;
                    )+
                    let _ = i;
                    $(
                        let b = _mm256_set1_ps(*$x.add(q));
                        full_kernel!(@fma b, $ws, [$($c),+]);
                    )+
                    wp = wp.add($nv * LANES);
                }
            }
        };
        (@fma $b:ident, [$($w:ident),+], [$($c:ident),+]) => {
            $($c = _mm256_fmadd_ps($w, $b, $c);)+
        };
        (@array [$($x:ident: [$($c:ident),+]),+]) => {
            [$([$($c),+]),+]
        };
        (@store $t:ident, [$($x:ident: [$($c:ident),+]),+]) => {
            let mut j = 0usize;
            $(
                let mut i = 0usize;
                $(
                    _mm256_storeu_ps($t.out.add(j * $t.ostep + i * LANES), $c);
                    i += 1;
                )+
                let _ = i;
                j += 1;
            )+
            let _ = j;
        };
    }

    full_kernel!(k2x6, k2x6_store, 2, 6, [w0, w1], [w0, w1], [
        x0: [c00, c01], x1: [c10, c11], x2: [c20, c21], x3: [c30, c31], x4: [c40, c41], x5: [c50, c51]
    ]);
    full_kernel!(k1x12, k1x12_store, 1, 12, [w0], [w0], [
        x0: [c00], x1: [c10], x2: [c20], x3: [c30], x4: [c40], x5: [c50],
        x6: [c60], x7: [c70], x8: [c80], x9: [c90], x10: [c100], x11: [c110]
    ]);

    /// A full tile of raw sums, all `tile_pixels(nv)` pixels stored as whole vectors.
    pub(super) unsafe fn full_store(nv: usize, t: &Tile) {
        match nv {
            1 => k1x12_store(t),
            2 => k2x6_store(t),
            _ => unreachable!("block of {nv} vectors"),
        }
    }

    /// A full tile (all `tile_pixels(nv)` pixels computed, the first `np` stored).
    pub(super) unsafe fn full(nv: usize, np: usize, t: &Tile, e: &Ep) {
        match nv {
            1 => epilogue(&k1x12(t), np, t, e),
            2 => epilogue(&k2x6(t), np, t, e),
            _ => unreachable!("block of {nv} vectors"),
        }
    }

    macro_rules! by_np {
        ($nv:literal, $np:expr, $t:expr, $e:expr, [$($n:literal),*]) => {
            match $np {
                $($n => tile::<$nv, $n>($t, $e),)*
                _ => unreachable!("tile of {} pixels", $np),
            }
        };
    }

    /// A partial tile of exactly `np` pixels (the rare tiles where computing the full width
    /// would read past the end of the input buffer).
    pub(super) unsafe fn partial(nv: usize, np: usize, t: &Tile, e: &Ep) {
        match nv {
            1 => by_np!(1, np, t, e, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
            2 => by_np!(2, np, t, e, [1, 2, 3, 4, 5, 6]),
            _ => unreachable!("block of {nv} vectors"),
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const NV: usize, const NP: usize>(t: &Tile, e: &Ep) {
        let width = NV * LANES;
        let mut acc = [[_mm256_setzero_ps(); NV]; NP];
        for ky in 0..t.k {
            let mut xp = t.x.add(ky * t.xrow);
            let mut wp = t.w.add(ky * t.run * width);
            for _ in 0..t.run {
                let mut wv = [_mm256_setzero_ps(); NV];
                for i in 0..NV {
                    wv[i] = _mm256_load_ps(wp.add(i * LANES));
                }
                for j in 0..NP {
                    let b = _mm256_set1_ps(*xp.add(j * t.pstep));
                    for i in 0..NV {
                        acc[j][i] = _mm256_fmadd_ps(wv[i], b, acc[j][i]);
                    }
                }
                xp = xp.add(1);
                wp = wp.add(width);
            }
        }
        epilogue(&acc, NP, t, e);
    }

    /// Applies the epilogue to the first `np` pixels of `acc` and stores them, in the
    /// reference's order.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn epilogue<const NV: usize, const NP: usize>(
        acc: &[[__m256; NV]; NP],
        np: usize,
        t: &Tile,
        e: &Ep,
    ) {
        let zero = _mm256_setzero_ps();
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let tail_mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(e.tail as i32), lane);
        let full = e.tail == LANES;
        for i in 0..NV {
            let c = i * LANES;
            let last = i + 1 == NV && !full;
            let bias = _mm256_loadu_ps(e.bias.add(c));
            let (scale, shift) = if e.scale.is_null() {
                (zero, zero)
            } else {
                (
                    _mm256_loadu_ps(e.scale.add(c)),
                    _mm256_loadu_ps(e.shift.add(c)),
                )
            };
            let slope = if e.act == 2 {
                _mm256_loadu_ps(e.slope.add(c))
            } else {
                zero
            };
            let u = if e.u.is_null() {
                zero
            } else {
                _mm256_loadu_ps(e.u.add(c))
            };
            let mut v = [zero; 2];
            for q in 0..e.nother {
                v[q] = _mm256_loadu_ps(e.v[q].add(c));
            }
            for j in 0..np {
                let mut y = _mm256_add_ps(acc[j][i], bias);
                if !e.scale.is_null() {
                    y = _mm256_fmadd_ps(y, scale, shift);
                }
                match e.act {
                    1 => y = _mm256_max_ps(y, zero),
                    2 => {
                        let neg = _mm256_mul_ps(y, slope);
                        let ge = _mm256_cmp_ps::<_CMP_GE_OQ>(y, zero);
                        y = _mm256_blendv_ps(neg, y, ge);
                    }
                    _ => {}
                }
                let at = j * t.ostep + c;
                if !e.u.is_null() {
                    y = _mm256_mul_ps(y, u);
                    for q in 0..e.nother {
                        let o = t.others[q].add(at);
                        let ov = if last {
                            _mm256_maskload_ps(o, tail_mask)
                        } else {
                            _mm256_loadu_ps(o)
                        };
                        y = _mm256_fmadd_ps(v[q], ov, y);
                    }
                }
                if last {
                    _mm256_maskstore_ps(t.out.add(at), tail_mask, y);
                } else {
                    _mm256_storeu_ps(t.out.add(at), y);
                }
            }
        }
    }
}
