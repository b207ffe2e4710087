//! The executor's internal activation layout: HWC (channels innermost) with a zero border of
//! `b` pixels on every side, so that convolutions read their "same" padding from memory and
//! their inner loops need no bounds checks. A pool recycles buffers between tensors and runs.

use rayon::prelude::*;

use super::buffer::Buffer;
use crate::tensor::{Shape, Tensor};

/// A `c x h x w` activation stored as `(h + 2b) x (w + 2b) x c`, border zero.
pub(crate) struct Act {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub b: usize,
    /// A pooled buffer (64-byte aligned), at least `padded_len` long (its tail belongs to no
    /// one).
    buf: Buffer,
}

impl Act {
    pub fn padded_len(c: usize, h: usize, w: usize, b: usize) -> usize {
        (h + 2 * b) * (w + 2 * b) * c
    }
    /// The stored values, border included.
    #[inline]
    pub fn data(&self) -> &[f32] {
        &self.buf.as_slice()[..Self::padded_len(self.c, self.h, self.w, self.b)]
    }
    #[inline]
    pub fn data_mut(&mut self) -> &mut [f32] {
        let n = Self::padded_len(self.c, self.h, self.w, self.b);
        &mut self.buf.as_mut_slice()[..n]
    }
    /// Floats between two stored rows.
    #[inline]
    pub fn row_stride(&self) -> usize {
        (self.w + 2 * self.b) * self.c
    }
    /// Offset of the first channel of logical pixel `(y, x)` (which may lie in the border,
    /// `-b <= y, x`).
    #[inline]
    pub fn offset(&self, y: isize, x: isize) -> usize {
        let b = self.b as isize;
        (((y + b) * (self.w as isize + 2 * b) + x + b) as usize) * self.c
    }
    /// The interior rows, one mutable slice of `w * c` values each (border columns excluded).
    pub fn interior_rows_mut(
        &mut self,
    ) -> impl IndexedParallelIterator<Item = (usize, &mut [f32])> {
        let (rs, b, c, w, h) = (self.row_stride().max(1), self.b, self.c, self.w, self.h);
        self.data_mut()
            .par_chunks_mut(rs)
            .skip(b)
            .take(h)
            .map(move |row| &mut row[b * c..(b + w) * c])
            .enumerate()
    }
    /// The interior of row `y`.
    #[inline]
    pub fn row(&self, y: usize) -> &[f32] {
        let o = self.offset(y as isize, 0);
        &self.data()[o..o + self.w * self.c]
    }
    /// Zeroes the border (the interior is left as is: every producer overwrites all of it).
    fn zero_border(&mut self) {
        let (rs, b, c, w, h) = (self.row_stride(), self.b, self.c, self.w, self.h);
        if b == 0 {
            return;
        }
        let data = self.data_mut();
        data[..b * rs].fill(0.0);
        data[(h + b) * rs..].fill(0.0);
        for y in b..h + b {
            let row = &mut data[y * rs..(y + 1) * rs];
            row[..b * c].fill(0.0);
            row[(b + w) * c..].fill(0.0);
        }
    }
}

/// Recycles activation buffers: a tensor's buffer goes back as soon as its last reader ran.
#[derive(Default)]
pub(crate) struct Pool {
    free: Vec<Buffer>,
}

impl Pool {
    pub fn new(free: Vec<Buffer>) -> Self {
        Pool { free }
    }
    pub fn into_buffers(self) -> Vec<Buffer> {
        self.free
    }
    /// An activation with a zero border and unspecified interior.
    pub fn take(&mut self, c: usize, h: usize, w: usize, b: usize) -> Act {
        let len = Act::padded_len(c, h, w, b);
        // Best fit: the shortest free buffer that is long enough; when none is, a new one
        // replaces the longest (as growing it would), so the pool never holds more buffers
        // than a run has tensors alive.
        let fit = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, v)| v.len() >= len)
            .min_by_key(|(_, v)| v.len())
            .map(|(i, _)| i);
        let buf = match fit {
            Some(i) => self.free.swap_remove(i),
            None => {
                if let Some(i) = (0..self.free.len()).max_by_key(|&i| self.free[i].len()) {
                    drop(self.free.swap_remove(i));
                }
                Buffer::zeroed(len)
            }
        };
        let mut a = Act { c, h, w, b, buf };
        a.zero_border();
        a
    }
    pub fn give(&mut self, a: Act) {
        self.free.push(a.buf);
    }
}

/// Pixels per block of the layout transposes (a block of 64 pixels x 64 channels is 16 KB).
const XBLOCK: usize = 64;

/// CHW tensor -> activation with border `b`.
pub(crate) fn from_tensor(t: &Tensor, b: usize, pool: &mut Pool) -> Act {
    let Shape { c, h, w } = t.shape;
    let mut a = pool.take(c, h, w, b);
    let plane = h * w;
    a.interior_rows_mut().for_each(|(y, row)| {
        for x0 in (0..w).step_by(XBLOCK) {
            let x1 = (x0 + XBLOCK).min(w);
            for ch in 0..c {
                let src = &t.data[ch * plane + y * w..][x0..x1];
                for (x, &v) in (x0..x1).zip(src) {
                    row[x * c + ch] = v;
                }
            }
        }
    });
    a
}

/// A raw pointer that rayon tasks writing disjoint parts of one buffer may share.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// (A method, so that closures capture the wrapper and not its raw field.)
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Activation -> CHW tensor.
pub(crate) fn to_tensor(a: &Act) -> Tensor {
    let (c, h, w) = (a.c, a.h, a.w);
    let plane = h * w;
    let mut data = vec![0.0f32; c * plane];
    let dst = SharedMut(data.as_mut_ptr());
    (0..h).into_par_iter().for_each(|y| {
        let row = a.row(y);
        for x0 in (0..w).step_by(XBLOCK) {
            let x1 = (x0 + XBLOCK).min(w);
            for ch in 0..c {
                // SAFETY: task `y` alone writes row `y` of every channel plane, inside `data`.
                let out = unsafe {
                    std::slice::from_raw_parts_mut(dst.get().add(ch * plane + y * w + x0), x1 - x0)
                };
                for (o, x) in out.iter_mut().zip(x0..x1) {
                    *o = row[x * c + ch];
                }
            }
        }
    });
    Tensor::from_vec(Shape::new(c, h, w), data)
}

/// A copy of `a` with one more channel holding `value` inside the image and 0 in the border
/// (the FFDNet noise-level map), with border `b`.
pub(crate) fn with_noise_channel(a: &Act, value: f32, b: usize, pool: &mut Pool) -> Act {
    let c = a.c;
    let mut out = pool.take(c + 1, a.h, a.w, b);
    out.interior_rows_mut().for_each(|(y, row)| {
        let src = a.row(y);
        for (d, s) in row.chunks_exact_mut(c + 1).zip(src.chunks_exact(c.max(1))) {
            d[..c].copy_from_slice(&s[..c]);
            d[c] = value;
        }
        if c == 0 {
            row.fill(value);
        }
    });
    out
}
