//! The light ops on the HWC layout: depthwise conv, eltwise, pixel (un)shuffle, and the
//! stand-alone epilogue pass. The depthwise taps are written over [`Lane8`]; the rest are plain
//! loops over rows, vectorized by the compiler (compiled a second time with AVX2 + FMA enabled
//! and picked at run time).

use rayon::prelude::*;

use super::act::Act;
use super::epilogue::{Ep, EpVec};
use super::prep::LANES;
use super::prep::{ActKind, DepthwiseAt, DepthwisePrep, EltwiseAt, EpilogueAt};
use super::simd::Lane8;
use super::Kernel;

/// Defines `$name(kernel, args)`: calls `$generic(args)` compiled a second time with AVX2 +
/// FMA enabled when `kernel` runs AVX2 (the compiler vectorizes the plain loops).
macro_rules! multiversion {
    ($name:ident, $generic:ident, ($($arg:ident : $ty:ty),*)) => {
        fn $name(kernel: Kernel, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    $generic($($arg),*)
                }
                if kernel.avx2() {
                    // SAFETY: an AVX2 kernel is chosen only when the CPU has AVX2 and FMA.
                    return unsafe { avx2($($arg),*) };
                }
            }
            let _ = kernel;
            $generic($($arg),*)
        }
    };
}

multiversion!(epilogue_row_mv, epilogue_row, (ep: &EpilogueAt, c: usize, row: &mut [f32], others: &[&[f32]]));
multiversion!(eltwise_row_mv, eltwise_row, (e: &EltwiseAt, c: usize, a: &[f32], b: Option<&[f32]>, row: &mut [f32]));

/// The conv epilogue ([`EpVec`]) on a row of `c`-channel pixels in place; `others` are the
/// combine tensors' rows at the same place. On plain vectors (`[f32; 8]`, which the AVX2 build
/// vectorizes too): their unfused multiply-adds keep the rounding this pass has always had.
#[inline(always)]
pub(crate) fn epilogue_row(ep: &EpilogueAt, c: usize, row: &mut [f32], others: &[&[f32]]) {
    let nother = others.len().min(2);
    // SAFETY: the epilogue's arrays are padded to whole vectors; every load and store below
    // covers the `n` valid channels of one pixel of `row` or of an `others` row.
    let vectors: Vec<(usize, usize, EpVec<[f32; LANES]>)> = (0..c)
        .step_by(LANES)
        .map(|c0| {
            let n = (c - c0).min(LANES);
            (c0, n, unsafe {
                EpVec::load(&Ep::new(ep, c0, n, nother), 0)
            })
        })
        .collect();
    for (p, px) in row.chunks_exact_mut(c).enumerate() {
        for (c0, n, ev) in &vectors {
            let mut op = [std::ptr::null(); 2];
            for (q, o) in others.iter().take(nother).enumerate() {
                op[q] = o[p * c + c0..].as_ptr();
            }
            let at = px[*c0..].as_mut_ptr();
            unsafe {
                ev.apply(<[f32; LANES]>::load_upto(at, *n), &op, *n)
                    .store_upto(at, *n)
            };
        }
    }
}

#[inline(always)]
fn act_row(act: &ActKind, c: usize, row: &mut [f32]) {
    match act {
        ActKind::None => {}
        ActKind::Relu => {
            for y in row.iter_mut() {
                *y = y.max(0.0);
            }
        }
        ActKind::Prelu(s) => {
            for px in row.chunks_exact_mut(c) {
                for (y, &s) in px.iter_mut().zip(s) {
                    if *y < 0.0 {
                        *y *= s;
                    }
                }
            }
        }
    }
}

/// One output row of the depthwise conv: the taps summed in registers per pixel and 8-channel
/// vector (one store per vector, not a read-modify-write of the row per tap), then the epilogue.
fn depthwise_row(
    prep: &DepthwisePrep,
    at: &DepthwiseAt,
    x: &Act,
    y: usize,
    row: &mut [f32],
    others: &[&[f32]],
    kernel: Kernel,
) {
    // SAFETY: `x` has a border of at least k/2 (checked by the caller), so every tap of every
    // interior pixel lies inside `x.data()`; the weights hold k*k rows of `cp >= c` values
    // rounded up to whole vectors.
    unsafe { depthwise_taps_mv(kernel, prep, at, x, y, row) };
    epilogue_row_mv(kernel, &at.ep, prep.c, row, others);
}

/// The taps with AVX2 + FMA intrinsics when `kernel` says the CPU has them, else portable.
unsafe fn depthwise_taps_mv(
    kernel: Kernel,
    prep: &DepthwisePrep,
    at: &DepthwiseAt,
    x: &Act,
    y: usize,
    row: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if kernel.avx2() {
        return depthwise_row_avx2(prep, at, x, y, row);
    }
    let _ = kernel;
    depthwise_taps::<[f32; LANES]>(prep, at, x, y, row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn depthwise_row_avx2(
    prep: &DepthwisePrep,
    at: &DepthwiseAt,
    x: &Act,
    y: usize,
    row: &mut [f32],
) {
    depthwise_taps::<std::arch::x86_64::__m256>(prep, at, x, y, row)
}

#[inline(always)]
unsafe fn depthwise_taps<V: Lane8>(
    prep: &DepthwisePrep,
    at: &DepthwiseAt,
    x: &Act,
    y: usize,
    row: &mut [f32],
) {
    let (c, k) = (prep.c, prep.k);
    let taps = k * k;
    let cp = at.weight.len() / taps;
    let pad = (k / 2) as isize;
    let rs = x.row_stride();
    let src0 = x.data().as_ptr().add(x.offset(y as isize - pad, -pad));
    let w0 = at.weight.as_ptr();
    let out = row.as_mut_ptr();
    let npx = row.len() / c;
    // Blocks of pixels, channel vectors inside, pixels innermost: a vector's k*k weights stay in
    // registers (k = 3) across the block, and the block's k input rows stay in L1 across the
    // channel vectors (a whole-row sweep per vector would stream them from L2 c/8 times).
    const BLOCK: usize = 16;
    for p0 in (0..npx).step_by(BLOCK) {
        let p1 = (p0 + BLOCK).min(npx);
        for v in (0..c).step_by(LANES) {
            let n = (c - v).min(LANES);
            if k == 3 {
                let w: [V; 9] = std::array::from_fn(|t| V::load(w0.add(t * cp + v)));
                for px in p0..p1 {
                    let s = src0.add(px * c + v);
                    let mut acc = V::zero();
                    for ky in 0..3 {
                        for kx in 0..3 {
                            acc = w[ky * 3 + kx]
                                .mul_add(V::load_upto(s.add(ky * rs + kx * c), n), acc);
                        }
                    }
                    acc.store_upto(out.add(px * c + v), n);
                }
            } else {
                for px in p0..p1 {
                    let s = src0.add(px * c + v);
                    let mut acc = V::zero();
                    for ky in 0..k {
                        for kx in 0..k {
                            acc = V::load(w0.add((ky * k + kx) * cp + v))
                                .mul_add(V::load_upto(s.add(ky * rs + kx * c), n), acc);
                        }
                    }
                    acc.store_upto(out.add(px * c + v), n);
                }
            }
        }
    }
}

/// Depthwise k x k conv, stride 1, from `x` (border >= k/2) into `out`.
pub(crate) fn depthwise(
    prep: &DepthwisePrep,
    at: &DepthwiseAt,
    x: &Act,
    out: &mut Act,
    others: &[&Act],
    kernel: Kernel,
) {
    debug_assert!(x.b >= prep.k / 2);
    out.interior_rows_mut().for_each(|(y, row)| {
        let orows: Vec<&[f32]> = others.iter().map(|o| o.row(y)).collect();
        depthwise_row(prep, at, x, y, row, &orows, kernel);
    });
}

#[inline(always)]
fn eltwise_row(e: &EltwiseAt, c: usize, a: &[f32], b: Option<&[f32]>, row: &mut [f32]) {
    for (px, src) in row.chunks_exact_mut(c).zip(a.chunks_exact(c)) {
        for ((y, &s), &u) in px.iter_mut().zip(src).zip(&e.u) {
            *y = u * s;
        }
    }
    if let (Some(v), Some(b)) = (&e.v, b) {
        for (px, src) in row.chunks_exact_mut(c).zip(b.chunks_exact(c)) {
            for ((y, &s), &v) in px.iter_mut().zip(src).zip(v) {
                *y += v * s;
            }
        }
    }
    act_row(&e.act, c, row);
}

/// `out = act(u * a + v * b)`.
pub(crate) fn eltwise(e: &EltwiseAt, a: &Act, b: Option<&Act>, out: &mut Act, kernel: Kernel) {
    let c = a.c;
    out.interior_rows_mut().for_each(|(y, row)| {
        let ar = a.row(y);
        let br = b.map(|b| b.row(y));
        eltwise_row_mv(kernel, e, c, ar, br, row);
    });
}

/// Pixel unshuffle by 2: `out[y][x][ci*4 + dy*2 + dx] = in[2y+dy][2x+dx][ci]`.
pub(crate) fn unshuffle(x: &Act, out: &mut Act) {
    let c = x.c;
    out.interior_rows_mut().for_each(|(y, row)| {
        for dy in 0..2 {
            let src = x.row(2 * y + dy);
            for (xo, px) in row.chunks_exact_mut(4 * c).enumerate() {
                for dx in 0..2 {
                    let s = &src[(2 * xo + dx) * c..][..c];
                    for (ci, &v) in s.iter().enumerate() {
                        px[ci * 4 + dy * 2 + dx] = v;
                    }
                }
            }
        }
    });
}

/// Pixel shuffle by 2: `out[2y+dy][2x+dx][oc] = in[y][x][oc*4 + dy*2 + dx]`.
pub(crate) fn shuffle(x: &Act, out: &mut Act) {
    let oc = out.c;
    out.interior_rows_mut().for_each(|(yo, row)| {
        let (y, dy) = (yo / 2, yo % 2);
        let src = x.row(y);
        for (xo, px) in row.chunks_exact_mut(oc).enumerate() {
            let (xi, dx) = (xo / 2, xo % 2);
            let s = &src[xi * 4 * oc..][..4 * oc];
            for (c, v) in px.iter_mut().enumerate() {
                *v = s[c * 4 + dy * 2 + dx];
            }
        }
    });
}
