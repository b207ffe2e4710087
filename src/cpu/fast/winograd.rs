//! Winograd F(4x4, 3x3) and F(6x6, 3x3) for stride-1 3x3 convs: each 4x4 output tile costs 36
//! products per (cin, cout) pair instead of 144, each 6x6 tile 64 instead of 324
//! (Lavin & Gray 2016: `Y = A^T [(G g G^T) . (B^T d B)] A`). The code is written once over
//! the output tile side `F` (a const parameter: 4 or 6); the patch side is `F + 2`.
//!
//! The filters are transformed once (in f64) when the plan is prepared, base and deltas alike
//! (`prep::winograd_filter`: the transform is linear, so mixing for a level stays
//! `U0 + sum_p c_p U_p`). A run works on
//! one row of tiles at a time (a rayon task), in chunks of tiles sized to stay in L2:
//! 1. input transform of every tile's patch into `V[tile][position][cin]`,
//! 2. one small GEMM per position, `M[.][p] = V[.][p] U[p]`, on the conv micro-kernel (K = cin),
//! 3. output transform of `M` to the output tiles, epilogue fused, stored once.
//!
//! Transforms are vectorized over channels (HWC) and written once over [`Lane8`].

#![allow(clippy::needless_range_loop)]

use std::cell::RefCell;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::act::Act;
use super::epilogue::{Ep, EpVec};
use super::microkernel::{self, tile_pixels, SyncPtr, Tile};
use super::prep::Tiling;
use super::prep::{round_up, Aligned, ConvAt, ConvPrep, CHANNEL_PAD, LANES};
use super::simd::Lane8;
use super::Kernel;

/// `B^T d` of F(4, 3) on the first 6 of 8 values.
#[inline(always)]
fn bt4<V: Lane8>(d: [V; 8]) -> [V; 8] {
    let (four, neg4, neg5, two) = (V::splat(4.0), V::splat(-4.0), V::splat(-5.0), V::splat(2.0));
    let a = d[2].mul_add(neg4, d[4]); // d4 - 4 d2
    let b = d[1].mul_add(neg4, d[3]); // d3 - 4 d1
    let c = d[4].sub(d[2]);
    let e = d[3].sub(d[1]).mul(two);
    [
        d[0].mul_add(four, d[2].mul_add(neg5, d[4])),
        a.add(b),
        a.sub(b),
        c.add(e),
        c.sub(e),
        d[1].mul_add(four, d[3].mul_add(neg5, d[5])),
        V::zero(),
        V::zero(),
    ]
}

/// `B^T d` of F(6, 3) on 8 values (points 0, +-1, +-2, +-1/2; `prep::winograd_filter::G6`).
#[inline(always)]
fn bt6<V: Lane8>(d: [V; 8]) -> [V; 8] {
    let s = V::splat;
    let t1 = d[4].mul_add(s(-4.25), d[2].add(d[6]));
    let t2 = d[3].mul_add(s(-4.25), d[1].add(d[5]));
    let t3 = d[4].mul_add(s(-1.25), d[2].mul_add(s(0.25), d[6]));
    let t4 = d[5].mul_add(s(2.0), d[3].mul_add(s(-2.5), d[1].mul(s(0.5))));
    let t5 = d[4].mul_add(s(-5.0), d[2].mul_add(s(4.0), d[6]));
    let t6 = d[5].mul_add(s(0.5), d[3].mul_add(s(-2.5), d[1].mul(s(2.0))));
    [
        d[4].sub(d[2]).mul_add(s(5.25), d[0].sub(d[6])),
        t1.add(t2),
        t1.sub(t2),
        t3.add(t4),
        t3.sub(t4),
        t5.add(t6),
        t5.sub(t6),
        d[3].sub(d[5]).mul_add(s(5.25), d[7].sub(d[1])),
    ]
}

/// `A^T m` of F(4, 3) on the first 6 of 8 values (4 of 6 results).
#[inline(always)]
fn at4<V: Lane8>(m: [V; 8]) -> [V; 6] {
    let (two, four, eight) = (V::splat(2.0), V::splat(4.0), V::splat(8.0));
    let a = m[1].add(m[2]);
    let b = m[1].sub(m[2]);
    let c = m[3].add(m[4]);
    let d = m[3].sub(m[4]);
    [
        m[0].add(a).add(c),
        d.mul_add(two, b),
        c.mul_add(four, a),
        d.mul_add(eight, b.add(m[5])),
        V::zero(),
        V::zero(),
    ]
}

/// `A^T m` of F(6, 3) on 8 values.
#[inline(always)]
fn at6<V: Lane8>(m: [V; 8]) -> [V; 6] {
    let s = V::splat;
    let (a, b) = (m[1].add(m[2]), m[1].sub(m[2]));
    let (c, d) = (m[3].add(m[4]), m[3].sub(m[4]));
    let (e, f) = (m[5].add(m[6]), m[5].sub(m[6]));
    [
        m[0].add(a).add(c.add(e)),
        f.mul_add(s(0.5), d.mul_add(s(2.0), b)),
        e.mul_add(s(0.25), c.mul_add(s(4.0), a)),
        f.mul_add(s(0.125), d.mul_add(s(8.0), b)),
        e.mul_add(s(0.0625), c.mul_add(s(16.0), a)),
        f.mul_add(s(0.03125), d.mul_add(s(32.0), b.add(m[7]))),
    ]
}

/// `B^T d` of the tiling with output side `F`.
#[inline(always)]
fn bt<V: Lane8, const F: usize>(d: [V; 8]) -> [V; 8] {
    if F == 4 {
        bt4(d)
    } else {
        bt6(d)
    }
}

/// `A^T m` of the tiling with output side `F`.
#[inline(always)]
fn at<V: Lane8, const F: usize>(m: [V; 8]) -> [V; 6] {
    if F == 4 {
        at4(m)
    } else {
        at6(m)
    }
}

thread_local! {
    /// Scratch of one task: `V` and `M` of a chunk of tiles, 64-byte aligned (whole cache
    /// lines per 16-channel vector).
    static SCRATCH: RefCell<Option<Aligned>> = const { RefCell::new(None) };
}

/// This CPU's L2 size per core (Linux sysfs), else 512 KB.
fn l2_bytes() -> usize {
    static L2: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *L2.get_or_init(|| {
        let read = |f: &str| {
            std::fs::read_to_string(format!("/sys/devices/system/cpu/cpu0/cache/index2/{f}"))
        };
        let level = read("level")
            .ok()
            .and_then(|l| l.trim().parse::<u32>().ok());
        let size = read("size").ok().and_then(|s| {
            let s = s.trim();
            let (num, mult) = match s.strip_suffix('K') {
                Some(n) => (n, 1024),
                None => match s.strip_suffix('M') {
                    Some(n) => (n, 1024 * 1024),
                    None => (s, 1),
                },
            };
            num.parse::<usize>().ok().map(|n| n * mult)
        });
        match (level, size) {
            (Some(2), Some(b)) if (64 * 1024..=64 * 1024 * 1024).contains(&b) => b,
            _ => 512 * 1024,
        }
    })
}

/// Sizes of one chunk of tiles.
#[derive(Clone, Copy)]
struct Chunk {
    /// Tiles per chunk, and that rounded up to whole micro-kernel tiles (12); channels of `V`
    /// and `M` padded to whole vectors of the widest kernel (`CHANNEL_PAD`).
    tiles: usize,
    tiles_pad: usize,
    cin_pad: usize,
    cout_pad: usize,
    /// Transform-domain positions.
    p: usize,
}

impl Chunk {
    fn new(cin: usize, cout: usize, tw: usize, p: usize) -> Chunk {
        let (cin_pad, cout_pad) = (round_up(cin, CHANNEL_PAD), round_up(cout, CHANNEL_PAD));
        // The transformed filters of the layer (36 x cin x cout: 332 KB for 48 -> 48) should
        // stay in L2 (512 KB here) from chunk to chunk, so V + M of a chunk get what is left
        // of 7/8 of it:
        // chunks of 6 tiles for 48 -> 48. (cachegrind with L2 as the last level, bench net at
        // 256x256: 7.0 M misses with 6-tile chunks, 12.7 M with 18; per-block chunks of 12
        // tiles, 9.1 M, and no faster on the clock.)
        let per_tile = p * (cin_pad + cout_pad) * 4;
        let filters = p * cin * round_up(cout, LANES) * 4;
        let left = (l2_bytes() * 7 / 8).saturating_sub(filters);
        let tiles = (left / per_tile).clamp(6, 48) / 6 * 6;
        let tiles = tiles.min(tw);
        Chunk {
            tiles,
            tiles_pad: round_up(tiles, 12),
            cin_pad,
            cout_pad,
            p,
        }
    }
    /// Floats of `V` (`[tiles_pad][p][cin_pad]`) and of `M` (`[tiles_pad][p][cout_pad]`).
    fn v_len(&self) -> usize {
        self.tiles_pad * self.p * self.cin_pad
    }
    fn m_len(&self) -> usize {
        self.tiles_pad * self.p * self.cout_pad
    }
    fn len(&self) -> usize {
        self.v_len() + self.m_len()
    }
}

/// Winograd conv of `x` (border >= 1) into `y`; `at.weight` holds the packed transformed
/// filters of `tiling`.
pub(crate) fn conv(
    tiling: Tiling,
    prep: &ConvPrep,
    at: &ConvAt,
    x: &Act,
    y: &mut Act,
    others: &[&Act],
    kernel: Kernel,
) {
    match tiling {
        Tiling::F4 => conv_tiled::<4>(prep, at, x, y, others, kernel),
        Tiling::F6 => conv_tiled::<6>(prep, at, x, y, others, kernel),
    }
}

fn conv_tiled<const F: usize>(
    prep: &ConvPrep,
    at: &ConvAt,
    x: &Act,
    y: &mut Act,
    others: &[&Act],
    kernel: Kernel,
) {
    debug_assert!(prep.k == 3 && prep.stride == 1 && x.b >= 1);
    let (cin, cout, oh, ow) = (prep.cin, prep.cout, y.h, y.w);
    let tw = ow.div_ceil(F);
    let ch = Chunk::new(cin, cout, tw, (F + 2) * (F + 2));
    let zeros = vec![0.0f32; ch.cout_pad];
    // The GEMM's epilogue: store only (zero bias), whole vectors (M is padded).
    let store_only = Ep::store_only(&zeros);
    let (rs, yb) = (y.row_stride(), y.b);
    let wp = SyncPtr::new(at.weight.as_slice().as_ptr());
    let interior = &mut y.data_mut()[yb * rs..(yb + oh) * rs];
    interior
        .par_chunks_mut(F * rs)
        .enumerate()
        .for_each(|(ty, rows)| {
            SCRATCH.with(|s| {
                let mut s = s.borrow_mut();
                if s.as_ref().is_none_or(|a| a.as_slice().len() < ch.len()) {
                    *s = Some(Aligned::zeros(ch.len()));
                }
                let buf = s.as_mut().expect("made above").as_mut_slice();
                let (vbuf, mbuf) = buf.split_at_mut(ch.v_len());
                let mut tx0 = 0;
                while tx0 < tw {
                    let nt = ch.tiles.min(tw - tx0);
                    let job = Job {
                        prep,
                        at,
                        x,
                        others,
                        ty,
                        tx0,
                        nt,
                        ch,
                        oh,
                        ow,
                        cout,
                        yb,
                    };
                    band::<F>(kernel, &job, vbuf, mbuf, rows, wp, &store_only);
                    tx0 += nt;
                }
            })
        });
}

/// One chunk of tiles of one tile row.
struct Job<'a> {
    prep: &'a ConvPrep,
    at: &'a ConvAt,
    x: &'a Act,
    others: &'a [&'a Act],
    ty: usize,
    tx0: usize,
    nt: usize,
    ch: Chunk,
    oh: usize,
    ow: usize,
    cout: usize,
    /// Border of the output.
    yb: usize,
}

/// Address ranges to bring into L2 while the GEMM computes (it leaves the memory idle): the
/// next chunk's input patch and this chunk's combine tensors and output.
struct Prefetch {
    ranges: [(usize, usize); 16],
    n: usize,
    lines: usize,
    /// Lines per step, and the cursor (range, line in it).
    per: usize,
    at: (usize, usize),
}

impl Prefetch {
    fn new() -> Self {
        Prefetch {
            ranges: [(0, 0); 16],
            n: 0,
            lines: 0,
            per: 0,
            at: (0, 0),
        }
    }
    fn push(&mut self, p: *const f32, floats: usize) {
        if self.n < self.ranges.len() && floats > 0 {
            let (a, e) = (p as usize & !63, p as usize + floats * 4);
            let lines = (e - a).div_ceil(64);
            self.ranges[self.n] = (a, lines);
            self.n += 1;
            self.lines += lines;
        }
    }
    /// Rows `[y0, y1)` x pixels `[x0, x1)` of `a` (clamped to its stored area).
    fn push_rect(&mut self, a: &Act, y0: isize, y1: isize, x0: isize, x1: isize) {
        let (lo, hy, hx) = (-(a.b as isize), (a.h + a.b) as isize, (a.w + a.b) as isize);
        let (x0, x1) = (x0.max(lo), x1.min(hx));
        if x1 <= x0 {
            return;
        }
        for y in y0.max(lo)..y1.min(hy) {
            self.push(
                a.data()[a.offset(y, x0)..].as_ptr(),
                (x1 - x0) as usize * a.c,
            );
        }
    }
    /// Spreads the lines over `steps` calls of [`Prefetch::step`].
    fn plan(&mut self, steps: usize) {
        self.per = self.lines.div_ceil(steps.max(1));
        self.at = (0, 0);
    }
    /// Prefetches the next lines.
    #[inline]
    fn step(&mut self) {
        let mut left = self.per;
        while left > 0 && self.at.0 < self.n {
            let (a, lines) = self.ranges[self.at.0];
            let end = (self.at.1 + left).min(lines);
            for l in self.at.1..end {
                prefetch(a + l * 64);
            }
            left -= end - self.at.1;
            self.at = if end == lines {
                (self.at.0 + 1, 0)
            } else {
                (self.at.0, end)
            };
        }
    }
}

#[inline(always)]
fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching never faults.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        _mm_prefetch::<_MM_HINT_T1>(addr as *const i8)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

fn band<const F: usize>(
    kernel: Kernel,
    j: &Job,
    vbuf: &mut [f32],
    mbuf: &mut [f32],
    rows: &mut [f32],
    wp: SyncPtr,
    ep: &Ep,
) {
    let mut pf = Prefetch::new();
    let (m, a) = (F as isize, F as isize + 2);
    let tw = j.ow.div_ceil(F);
    let next = if j.tx0 + j.nt < tw {
        Some((j.ty, j.tx0 + j.nt))
    } else if (j.ty + 1) * F < j.oh {
        Some((j.ty + 1, 0))
    } else {
        None
    };
    if let Some((ty, tx0)) = next {
        let nt = j.ch.tiles.min(tw - tx0) as isize;
        let (iy, ix) = (ty as isize * m - 1, tx0 as isize * m - 1);
        pf.push_rect(j.x, iy, iy + a, ix, ix + nt * m + 2);
    }
    let (oy, ox) = (j.ty as isize * m, j.tx0 as isize * m);
    let ox1 = ox + j.nt as isize * m;
    for o in j.others.iter().take(2) {
        pf.push_rect(o, oy, oy + m, ox, ox1);
    }
    let row_stride = (j.ow + 2 * j.yb) * j.cout;
    for r in rows.chunks(row_stride) {
        let from = (j.yb + j.tx0 * F) * j.cout;
        let to = ((j.yb as isize + ox1) as usize * j.cout).min(r.len());
        if from < to {
            pf.push(r[from..].as_ptr(), to - from);
        }
    }
    // SAFETY: the transforms stay inside the chunk's buffers and the tile row's output rows.
    unsafe {
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => transform_in_avx512::<F>(j, vbuf),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => transform_in_avx2::<F>(j, vbuf),
            _ => transform_in::<[f32; 8], F>(j, vbuf),
        }
        gemm(kernel, j, vbuf, mbuf, wp, ep, &mut pf);
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => transform_out_avx512::<F>(j, mbuf, rows),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => transform_out_avx2::<F>(j, mbuf, rows),
            _ => transform_out::<[f32; 8], F>(j, mbuf, rows),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn transform_in_avx512<const F: usize>(j: &Job, vbuf: &mut [f32]) {
    transform_in::<std::arch::x86_64::__m512, F>(j, vbuf)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn transform_out_avx512<const F: usize>(j: &Job, mbuf: &[f32], rows: &mut [f32]) {
    transform_out::<std::arch::x86_64::__m512, F>(j, mbuf, rows)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn transform_in_avx2<const F: usize>(j: &Job, vbuf: &mut [f32]) {
    transform_in::<std::arch::x86_64::__m256, F>(j, vbuf)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn transform_out_avx2<const F: usize>(j: &Job, mbuf: &[f32], rows: &mut [f32]) {
    transform_out::<std::arch::x86_64::__m256, F>(j, mbuf, rows)
}

/// A tile's input patch (side `F + 2`) at `base` (row stride `rs`, `xc` channels per pixel), channels
/// `v..v + n`; zero outside its stored `rows x cols` (all of it stored when `inside`).
struct Patch {
    base: *const f32,
    rs: isize,
    xc: usize,
    v: usize,
    n: usize,
    inside: bool,
    rows: usize,
    cols: usize,
}

impl Patch {
    /// `B^T d` of column `c`. Methods and plain loops here, not closures: a closure is compiled
    /// without the caller's AVX2, and once LLVM declines to inline one every intrinsic in it
    /// becomes a call (the whole net ran 4x slower).
    #[inline(always)]
    unsafe fn column<V: Lane8, const F: usize>(&self, c: usize) -> [V; 8] {
        let mut d = [V::zero(); 8];
        for (r, dr) in d.iter_mut().enumerate().take(F + 2) {
            if self.inside || (r < self.rows && c < self.cols) {
                let at = r as isize * self.rs + (c * self.xc + self.v) as isize;
                *dr = V::load_upto(self.base.offset(at), self.n);
            }
        }
        bt::<V, F>(d)
    }
}

/// One column of a tile's `M` (side `a = F + 2`): `a` values starting at `m`,
/// `a * cout_pad` apart.
#[inline(always)]
unsafe fn m_column<V: Lane8, const F: usize>(m: *const f32, cout_pad: usize) -> [V; 8] {
    let mut col = [V::zero(); 8];
    for (i, ci) in col.iter_mut().enumerate().take(F + 2) {
        *ci = V::load(m.add(i * (F + 2) * cout_pad));
    }
    col
}

/// `V[t][p][ci] = (B^T d B)[p]` for the chunk's tiles.
#[inline(always)]
unsafe fn transform_in<V: Lane8, const F: usize>(j: &Job, vbuf: &mut [f32]) {
    let (a, p) = (F + 2, (F + 2) * (F + 2));
    let x = j.x;
    let (cin, cin_pad) = (j.prep.cin, j.ch.cin_pad);
    let (lo, hi_y, hi_x) = (-(x.b as isize), (x.h + x.b) as isize, (x.w + x.b) as isize);
    let iy0 = (j.ty * F) as isize - 1;
    let vp = vbuf.as_mut_ptr();
    let xp = x.data().as_ptr();
    let rs = x.row_stride() as isize;
    for t in 0..j.nt {
        let ix0 = ((j.tx0 + t) * F) as isize - 1;
        let inside = iy0 + a as isize <= hi_y && ix0 + a as isize <= hi_x;
        debug_assert!(iy0 >= lo && ix0 >= lo);
        let base = xp.add(x.offset(iy0, ix0));
        let (rows, cols) = (
            (hi_y - iy0).min(a as isize) as usize,
            (hi_x - ix0).min(a as isize) as usize,
        );
        for v in (0..cin).step_by(V::N) {
            let n = (cin - v).min(V::N);
            // Columns (B^T d), then rows; outside the stored area the patch is zero.
            let patch = Patch {
                base,
                rs,
                xc: x.c,
                v,
                n,
                inside,
                rows,
                cols,
            };
            // Uninitialized: zeroing 8 x 8 vectors cost a memset per tile (5 % of a run); only
            // the first `a` are written and read.
            let mut cols_t = [MaybeUninit::<[V; 8]>::uninit(); 8];
            for (c, col) in cols_t.iter_mut().enumerate().take(a) {
                col.write(patch.column::<V, F>(c));
            }
            for i in 0..a {
                let mut d = [V::zero(); 8];
                for (c, dc) in d.iter_mut().enumerate().take(a) {
                    *dc = cols_t[c].assume_init_ref()[i];
                }
                let row = bt::<V, F>(d);
                for (jj, val) in row.iter().enumerate().take(a) {
                    val.store(vp.add((t * p + i * a + jj) * cin_pad + v));
                }
            }
        }
    }
}

/// `M[p] = V[p] U[p]` on the conv micro-kernel.
unsafe fn gemm(
    kernel: Kernel,
    j: &Job,
    vbuf: &[f32],
    mbuf: &mut [f32],
    wp: SyncPtr,
    ep: &Ep,
    pf: &mut Prefetch,
) {
    let (cin, cin_pad, cout_pad, positions) = (j.prep.cin, j.ch.cin_pad, j.ch.cout_pad, j.ch.p);
    // One position's packed filters (`prep::winograd_filter::pack_filters`).
    let us = cin * round_up(j.prep.cout, LANES);
    let (vp, mp) = (vbuf.as_ptr(), mbuf.as_mut_ptr());
    let blocks = microkernel::raw_blocks(kernel, &j.prep.blocks);
    let groups: usize = blocks
        .iter()
        .map(|b| j.nt.div_ceil(tile_pixels(kernel, b.nv)))
        .sum();
    pf.plan(positions * groups);
    for p in 0..positions {
        for b in &blocks {
            let tp = tile_pixels(kernel, b.nv);
            let mut t0 = 0;
            while t0 < j.nt {
                // Spread the prefetches evenly over the micro-tiles (bursts stall).
                pf.step();
                let t = Tile {
                    x: vp.add((t0 * positions + p) * cin_pad),
                    xrow: 0,
                    pstep: positions * cin_pad,
                    k: 1,
                    run: cin,
                    w: wp.get().add(p * us + b.off),
                    out: mp.add((t0 * positions + p) * cout_pad + b.v0 * LANES),
                    ostep: positions * cout_pad,
                    others: [std::ptr::null(); 2],
                };
                // V and M are padded to whole micro-tiles (12 tiles) and whole vectors.
                microkernel::tile_raw(kernel, b.nv, tp.min(j.nt - t0), &t, ep);
                t0 += tp;
            }
        }
    }
}

/// `Y = A^T M A` of the chunk's tiles, epilogue applied, stored into the tile row's rows.
#[inline(always)]
unsafe fn transform_out<V: Lane8, const F: usize>(j: &Job, mbuf: &[f32], rows: &mut [f32]) {
    let (a, p) = (F + 2, (F + 2) * (F + 2));
    let (cout, cout_pad) = (j.cout, j.ch.cout_pad);
    let others = &j.others[..j.others.len().min(2)];
    let row_stride = (j.ow + 2 * j.yb) * cout;
    let nrows = rows.len() / row_stride;
    let mp = mbuf.as_ptr();
    let yp = rows.as_mut_ptr();
    let ep_all = Ep::new(&j.at.ep, 0, cout, others.len());
    // Tile by tile, all channels of a tile before the next: each output pixel's cache lines
    // are written whole while they are in L1.
    for t in 0..j.nt {
        let tx = j.tx0 + t;
        let ncols = (j.ow - tx * F).min(F);
        for c0 in (0..cout).step_by(V::N) {
            let n = (cout - c0).min(V::N);
            let ep = EpVec::<V>::load(&ep_all, c0);
            // Columns (A^T m), then rows.
            let m0 = mp.add(t * p * cout_pad + c0);
            // Uninitialized, as in `transform_in`.
            let mut cols_t = [MaybeUninit::<[V; 6]>::uninit(); 8];
            for (c, col) in cols_t.iter_mut().enumerate().take(a) {
                col.write(at::<V, F>(m_column::<V, F>(m0.add(c * cout_pad), cout_pad)));
            }
            for r in 0..nrows {
                let oy = j.ty * F + r;
                let mut m = [V::zero(); 8];
                for (c, mc) in m.iter_mut().enumerate().take(a) {
                    *mc = cols_t[c].assume_init_ref()[r];
                }
                let out = at::<V, F>(m);
                let mut op = [std::ptr::null(); 2];
                for (q, o) in others.iter().enumerate() {
                    op[q] = o
                        .data()
                        .as_ptr()
                        .add(o.offset(oy as isize, (tx * F) as isize) + c0);
                }
                for (c, &val) in out.iter().enumerate().take(ncols) {
                    let y = ep.apply(val, &op, n);
                    y.store_upto(yp.add(r * row_stride + (j.yb + tx * F + c) * cout + c0), n);
                    for p in op.iter_mut().take(others.len()) {
                        *p = p.add(cout);
                    }
                }
            }
        }
    }
    debug_assert!(j.ty * F + nrows <= j.oh);
}
