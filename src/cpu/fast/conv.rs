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
use super::epilogue::Ep;
use super::microkernel::{tile, tile_pixels, SyncPtr, Tile};
use super::prep::{Block, ConvAt, ConvPrep, LANES};
use super::Kernel;

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
    let xp = SyncPtr::new(x.data().as_ptr());
    let wp = SyncPtr::new(at.weight.as_slice().as_ptr());
    let nother = others.len().min(2);
    let optr: Vec<SyncPtr> = others
        .iter()
        .take(2)
        .map(|o| SyncPtr::new(o.data().as_ptr()))
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
        let span = |b: &Block, ep: &Ep, from: usize, to: usize| {
            let np_max = tile_pixels(kernel, b.nv);
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
