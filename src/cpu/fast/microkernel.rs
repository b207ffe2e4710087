//! The shared micro-kernel: `NV` vectors of output channels x `NP` pixels of accumulated
//! products over a run of taps, on AVX-512F, AVX2 + FMA or in portable Rust. The direct conv
//! (`conv`) and Winograd's 36 GEMMs (`winograd`) both run on it.
//!
//! A block of 2 AVX2 vectors (16 channels, packed `[tap][16]`) is one 512-bit vector, so
//! the AVX-512 kernel reads the same packed weights and runs 12 pixels where AVX2 runs 6:
//! half the instructions per multiply-add. Its epilogue splits each sum back into two AVX2
//! vectors and applies the AVX2 epilogue, so both round alike.

#![allow(clippy::needless_range_loop)]

use super::epilogue::{Ep, EpVec};
use super::prep::{Block, LANES};
use super::simd::Lane8;
use super::Kernel;

/// One micro-tile's pointers. All offsets in floats.
#[derive(Clone, Copy)]
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
    /// The same tile `pixels` pixels further along its row.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    unsafe fn advanced(&self, pixels: usize) -> Tile {
        let mut others = self.others;
        for o in others.iter_mut().filter(|o| !o.is_null()) {
            *o = o.add(pixels * self.ostep);
        }
        Tile {
            x: self.x.add(pixels * self.pstep),
            w: self.w,
            out: self.out.add(pixels * self.ostep),
            others,
            ..*self
        }
    }

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

/// Pixels per tile for a block of `nv` vectors on `kernel` (12 accumulators).
/// (Blocks of 4 vectors exist only on AVX-512, from [`raw_blocks`].)
pub(crate) const fn tile_pixels(kernel: Kernel, nv: usize) -> usize {
    match (kernel, nv) {
        (Kernel::Avx512, 2 | 4) => 12,
        _ => 12 / nv,
    }
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
/// `fits_full`: computing all `tile_pixels(kernel, nv)` pixels reads inside the input buffer.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub(crate) unsafe fn tile(kernel: Kernel, nv: usize, np: usize, fits_full: bool, t: &Tile, e: &Ep) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 if nv == 2 && fits_full => avx512::full(np, t, e),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 if nv == 2 => {
            // The rare tile at the buffer's end: AVX2 tiles of up to 6 pixels.
            let np2 = tile_pixels(Kernel::Avx2, 2);
            for from in (0..np).step_by(np2) {
                avx2::partial(2, np2.min(np - from), &t.advanced(from), e);
            }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 | Kernel::Avx512 if fits_full => avx2::full(nv, np, t, e),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 | Kernel::Avx512 => avx2::partial(nv, np, t, e),
        _ => portable_tile(nv, np, t, e),
    }
}

/// The blocks a raw GEMM ([`tile_raw`]) runs in: on AVX-512, each two consecutive blocks of
/// 2 vectors become one of 4 (two 512-bit vectors per tap: half the broadcasts per
/// multiply-add); elsewhere the conv's own blocks. (Three as one of 6, 3 vectors x 8 pixels,
/// timed no faster on the bench network: wall ratio 1.02, farm-bench, 8 pairs.)
///
/// On AVX2, each three consecutive blocks of 2 vectors become one of 6 (48 channels x 2
/// pixels, [`avx2::k6x2_raw`]): 2 broadcasts per 12 multiply-adds instead of 6. In a C harness
/// of the loop shapes on Zen 3 the 6 x 2 shape ran 5.1 G FMA/s against 4.3 for 2 x 6; the
/// whole bench net only 0.98x the time (10 pairs, within the noise).
pub(crate) fn raw_blocks(kernel: Kernel, blocks: &[Block]) -> Vec<Block> {
    // Runs of `n` blocks of 2 vectors starting at `i`.
    let pairs =
        |i: usize, n: usize| blocks.len() >= i + n && blocks[i..i + n].iter().all(|b| b.nv == 2);
    let mut out = Vec::new();
    let mut i = 0;
    while i < blocks.len() {
        let (nv, n) = match kernel {
            Kernel::Avx2 if pairs(i, 3) => (6, 3),
            Kernel::Avx512 if pairs(i, 2) => (4, 2),
            _ => (blocks[i].nv, 1),
        };
        out.push(Block { nv, ..blocks[i] });
        i += n;
    }
    out
}

/// Raw sums (no epilogue) of at least `np` pixels of a block of [`raw_blocks`]
/// (`1..=tile_pixels(kernel, nv)`; all of them on AVX2 and portable code, `np` rounded up
/// to 4 on AVX-512), stored as whole vectors. The caller guarantees that the full tile reads
/// and writes inside its buffers.
pub(crate) unsafe fn tile_raw(kernel: Kernel, nv: usize, np: usize, t: &Tile, zeros: &Ep) {
    debug_assert!(np >= 1 && np <= tile_pixels(kernel, nv));
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 if nv.is_multiple_of(2) => avx512::raw(nv / 2, np, t),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 if nv == 6 => avx2::k6x2_raw(t),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 | Kernel::Avx512 => avx2::full_store(nv, t),
        _ => portable_tile(nv, tile_pixels(kernel, nv), t, zeros),
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

    /// 6 vectors (three packed blocks of 2, `2 * LANES * t.run` floats apart) x 2 pixels of
    /// raw sums over `t.run` taps (`t.k == 1`: Winograd's GEMM), stored as whole vectors.
    /// Written in assembly: 12 accumulators, 2 broadcasts and 2 weight registers take all 16
    /// registers, where LLVM spilled.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn k6x2_raw(t: &Tile) {
        debug_assert!(t.k == 1);
        let block_bytes = 2 * LANES * t.run * 4;
        std::arch::asm!(
            "vxorps ymm0, ymm0, ymm0",
            "vxorps ymm1, ymm1, ymm1",
            "vxorps ymm2, ymm2, ymm2",
            "vxorps ymm3, ymm3, ymm3",
            "vxorps ymm4, ymm4, ymm4",
            "vxorps ymm5, ymm5, ymm5",
            "vxorps ymm6, ymm6, ymm6",
            "vxorps ymm7, ymm7, ymm7",
            "vxorps ymm8, ymm8, ymm8",
            "vxorps ymm9, ymm9, ymm9",
            "vxorps ymm10, ymm10, ymm10",
            "vxorps ymm11, ymm11, ymm11",
            "test {k}, {k}",
            "jz 3f",
            "2:",
            "vbroadcastss ymm12, dword ptr [{x}]",
            "vbroadcastss ymm13, dword ptr [{x} + {ps}]",
            "vmovaps ymm14, ymmword ptr [{w}]",
            "vmovaps ymm15, ymmword ptr [{w} + 32]",
            "vfmadd231ps ymm0, ymm14, ymm12",
            "vfmadd231ps ymm6, ymm14, ymm13",
            "vfmadd231ps ymm1, ymm15, ymm12",
            "vfmadd231ps ymm7, ymm15, ymm13",
            "vmovaps ymm14, ymmword ptr [{w} + {bs}]",
            "vmovaps ymm15, ymmword ptr [{w} + {bs} + 32]",
            "vfmadd231ps ymm2, ymm14, ymm12",
            "vfmadd231ps ymm8, ymm14, ymm13",
            "vfmadd231ps ymm3, ymm15, ymm12",
            "vfmadd231ps ymm9, ymm15, ymm13",
            "vmovaps ymm14, ymmword ptr [{w} + {bs} * 2]",
            "vmovaps ymm15, ymmword ptr [{w} + {bs} * 2 + 32]",
            "vfmadd231ps ymm4, ymm14, ymm12",
            "vfmadd231ps ymm10, ymm14, ymm13",
            "vfmadd231ps ymm5, ymm15, ymm12",
            "vfmadd231ps ymm11, ymm15, ymm13",
            "add {x}, 4",
            "add {w}, 64",
            "dec {k}",
            "jnz 2b",
            "3:",
            "vmovups ymmword ptr [{o}], ymm0",
            "vmovups ymmword ptr [{o} + 32], ymm1",
            "vmovups ymmword ptr [{o} + 64], ymm2",
            "vmovups ymmword ptr [{o} + 96], ymm3",
            "vmovups ymmword ptr [{o} + 128], ymm4",
            "vmovups ymmword ptr [{o} + 160], ymm5",
            "vmovups ymmword ptr [{o} + {os}], ymm6",
            "vmovups ymmword ptr [{o} + {os} + 32], ymm7",
            "vmovups ymmword ptr [{o} + {os} + 64], ymm8",
            "vmovups ymmword ptr [{o} + {os} + 96], ymm9",
            "vmovups ymmword ptr [{o} + {os} + 128], ymm10",
            "vmovups ymmword ptr [{o} + {os} + 160], ymm11",
            // Clean upper halves before returning to code built without AVX (its legacy SSE
            // instructions otherwise stall: the whole run took 1.4x as long).
            "vzeroupper",
            x = inout(reg) t.x => _,
            w = inout(reg) t.w => _,
            k = inout(reg) t.run => _,
            ps = in(reg) t.pstep * 4,
            bs = in(reg) block_bytes,
            o = in(reg) t.out,
            os = in(reg) t.ostep * 4,
            out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
            out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
            out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
            out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
            options(nostack),
        );
    }

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
    pub(super) unsafe fn epilogue<const NV: usize, const NP: usize>(
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

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{avx2, Ep, Tile, LANES};
    use std::arch::x86_64::*;

    /// Floats in one 512-bit vector: a block of 2 AVX2 vectors.
    const WIDTH: usize = 2 * LANES;

    /// The multiply-adds of a tile: one named accumulator per (pixel, vector) (LLVM keeps
    /// named locals in registers; see `avx2::full_kernel`), `$w` vectors of weights per tap,
    /// `WIDTH * k * run` floats apart (consecutive packed blocks). It computes every pixel
    /// listed; the caller guarantees that they read inside the input buffer.
    macro_rules! sums {
        ($t:ident, $ws:tt, [$($x:ident: [$($c:ident),+]),+]) => {
            sums!(@go $t, $ws, $ws, [$($x: [$($c),+]),+])
        };
        (@fma $b:ident, [$($w:ident),+], [$($c:ident),+]) => {
            $($c = _mm512_fmadd_ps($w, $b, $c);)+
        };
        (@go $t:ident, $ws:tt, [$($w:ident),+], [$($x:ident: [$($c:ident),+]),+]) => {
            $($(let mut $c = _mm512_setzero_ps();)+)+
            let block = $t.k * $t.run * WIDTH;
            for ky in 0..$t.k {
                let base = $t.x.add(ky * $t.xrow);
                let mut j = 0usize;
                $(
                    let $x = base.add(j * $t.pstep);
                    j += 1;
                )+
                let _ = j;
                let mut wp = $t.w.add(ky * $t.run * WIDTH);
                for q in 0..$t.run {
                    let mut i = 0usize;
                    $(
                        let $w = _mm512_loadu_ps(wp.add(i * block));
                        i += 1;
                    )+
                    let _ = i;
                    $(
                        let b = _mm512_set1_ps(*$x.add(q));
                        sums!(@fma b, $ws, [$($c),+]);
                    )+
                    wp = wp.add(WIDTH);
                }
            }
        };
    }

    /// Defines a kernel storing its raw sums as whole vectors (vector `i` of pixel `j` at
    /// `out + j * ostep + i * WIDTH`).
    macro_rules! raw_kernel {
        ($name:ident, $ws:tt, [$($x:ident: [$($c:ident),+]),+]) => {
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn $name(t: &Tile) {
                sums!(t, $ws, [$($x: [$($c),+]),+]);
                let mut j = 0usize;
                $(
                    let mut i = 0usize;
                    $(
                        _mm512_storeu_ps(t.out.add(j * t.ostep + i * WIDTH), $c);
                        i += 1;
                    )+
                    let _ = i;
                    j += 1;
                )+
                let _ = j;
            }
        };
    }

    raw_kernel!(raw_1x12, [w0], [
        x0: [c0], x1: [c1], x2: [c2], x3: [c3], x4: [c4], x5: [c5],
        x6: [c6], x7: [c7], x8: [c8], x9: [c9], x10: [c10], x11: [c11]
    ]);
    raw_kernel!(raw_1x8, [w0], [
        x0: [c0], x1: [c1], x2: [c2], x3: [c3], x4: [c4], x5: [c5], x6: [c6], x7: [c7]
    ]);
    raw_kernel!(raw_1x4, [w0], [x0: [c0], x1: [c1], x2: [c2], x3: [c3]]);
    raw_kernel!(raw_2x12, [w0, w1], [
        x0: [c00, c01], x1: [c10, c11], x2: [c20, c21], x3: [c30, c31],
        x4: [c40, c41], x5: [c50, c51], x6: [c60, c61], x7: [c70, c71],
        x8: [c80, c81], x9: [c90, c91], x10: [c100, c101], x11: [c110, c111]
    ]);
    raw_kernel!(raw_2x8, [w0, w1], [
        x0: [c00, c01], x1: [c10, c11], x2: [c20, c21], x3: [c30, c31],
        x4: [c40, c41], x5: [c50, c51], x6: [c60, c61], x7: [c70, c71]
    ]);
    raw_kernel!(raw_2x4, [w0, w1], [
        x0: [c00, c01], x1: [c10, c11], x2: [c20, c21], x3: [c30, c31]
    ]);

    /// Raw sums of `nz` (1 or 2) 512-bit vectors for at least `np` (1..=12) pixels: the
    /// pixel count rounded up to 4 (the caller's buffers are padded to 12).
    pub(super) unsafe fn raw(nz: usize, np: usize, t: &Tile) {
        match (nz, np.div_ceil(4)) {
            (1, 3) => raw_1x12(t),
            (1, 2) => raw_1x8(t),
            (1, _) => raw_1x4(t),
            (2, 3) => raw_2x12(t),
            (2, 2) => raw_2x8(t),
            (2, _) => raw_2x4(t),
            _ => unreachable!("{nz} vectors x {np} pixels"),
        }
    }

    /// All 12 pixels of one 512-bit vector computed, the first `np` stored through the AVX2
    /// epilogue (each sum as its two 8-channel halves).
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn full(np: usize, t: &Tile, e: &Ep) {
        sums!(t, [w0], [
            x0: [c0], x1: [c1], x2: [c2], x3: [c3], x4: [c4], x5: [c5],
            x6: [c6], x7: [c7], x8: [c8], x9: [c9], x10: [c10], x11: [c11]
        ]);
        let sums = [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11];
        // (A loop, not `map`: a closure is compiled without this function's AVX-512.)
        let mut halves = [[_mm256_setzero_ps(); 2]; 12];
        for j in 0..12 {
            halves[j] = [
                _mm512_castps512_ps256(sums[j]),
                _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(sums[j]))),
            ];
        }
        avx2::epilogue::<2, 12>(&halves, np, t, e);
    }
}
