//! The shared micro-kernel: `NV` vectors of output channels x `NP` pixels of accumulated
//! products over a run of taps, on AVX2 + FMA or in portable Rust. The direct conv (`conv`)
//! and Winograd's 36 GEMMs (`winograd`) both run on it.

#![allow(clippy::needless_range_loop)]

use super::epilogue::{Ep, EpVec};
use super::prep::LANES;
use super::simd::Lane8;
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

impl Tile {
    /// The first `n` combine tensors at offset `at` from the tile's first output (the others
    /// null).
    #[inline(always)]
    unsafe fn others_at(&self, at: usize, n: usize) -> [*const f32; 2] {
        let mut p = [std::ptr::null(); 2];
        for q in 0..n {
            p[q] = self.others[q].add(at);
        }
        p
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
    for i in 0..nv {
        let c = i * LANES;
        let n = if i + 1 == nv { e.tail } else { LANES };
        let ev = EpVec::<[f32; LANES]>::load(e, c);
        for (j, aj) in acc.iter().enumerate().take(np) {
            let sums = <[f32; LANES]>::load(aj.as_ptr().add(c));
            let at = j * t.ostep + c;
            let y = ev.apply(sums, &t.others_at(at, e.nother), n);
            y.store_upto(t.out.add(at), n);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Ep, EpVec, Lane8, Tile, LANES};
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

    /// Applies the epilogue to the first `np` pixels of `acc` and stores them.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn epilogue<const NV: usize, const NP: usize>(
        acc: &[[__m256; NV]; NP],
        np: usize,
        t: &Tile,
        e: &Ep,
    ) {
        for i in 0..NV {
            let c = i * LANES;
            let n = if i + 1 == NV { e.tail } else { LANES };
            let ev = EpVec::<__m256>::load(e, c);
            for j in 0..np {
                let at = j * t.ostep + c;
                let y = ev.apply(acc[j][i], &t.others_at(at, e.nother), n);
                y.store_upto(t.out.add(at), n);
            }
        }
    }
}
