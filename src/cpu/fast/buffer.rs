//! Activation buffers: zeroed, 64-byte aligned (a 16-channel AVX-512 load of an aligned pixel
//! stays in one cache line), and on Linux the large ones mapped straight from the kernel with
//! transparent huge pages asked for (`madvise(MADV_HUGEPAGE)`, which the default THP mode
//! `madvise` honours).
//!
//! Why: a one-shot run (the CLI's) touches every activation for the first time, and with 4 KB
//! pages each first touch is a page fault that zeroes 4 KB: at 512x512 the first run took 90 ms
//! and the next ones 53 (`cargo bench --bench cpu_net -- --once 512 3`, `TUNABLE_FAST_PROFILE=1`).
//! With 2 MB pages the kernel zeroes the same bytes in 512x fewer faults, and a fresh mapping
//! is zero already, so nothing is written twice (the pool used to grow a `Vec` with zeros).
//! Measured with `farm-bench`, whole process against the `Vec` pool: `--once 512 1` 0.88x the
//! time, `--once 512 12` (warm) 0.95x; at 256x256 (3.2 MB activations, below `MAP_BYTES`)
//! mapping them too timed 1.06x cold, so small buffers stay on the heap.

use std::alloc::Layout;
use std::ptr::NonNull;

/// Buffers of at least this many bytes are mapped (Linux); smaller ones come from the heap.
#[cfg(target_os = "linux")]
const MAP_BYTES: usize = 4 << 20;
/// The huge page size mapped buffers are aligned to.
#[cfg(target_os = "linux")]
const HUGE_PAGE: usize = 2 << 20;

/// A zeroed, 64-byte aligned `[f32]` that keeps its length for life (the pool reuses it for
/// any tensor that fits).
pub(crate) struct Buffer {
    ptr: NonNull<f32>,
    len: usize,
    source: Source,
}

enum Source {
    /// Nothing allocated (length 0).
    Empty,
    Heap(Layout),
    /// `munmap(base, bytes)` frees it.
    #[cfg(target_os = "linux")]
    Mapped {
        base: *mut libc::c_void,
        bytes: usize,
    },
}

// SAFETY: a Buffer owns its memory like a Vec<f32> does.
unsafe impl Send for Buffer {}
unsafe impl Sync for Buffer {}

impl Buffer {
    /// `len` zeros.
    pub fn zeroed(len: usize) -> Buffer {
        let bytes = len.checked_mul(4).expect("buffer size overflows");
        if bytes == 0 {
            return Buffer {
                ptr: NonNull::dangling(),
                len: 0,
                source: Source::Empty,
            };
        }
        #[cfg(target_os = "linux")]
        if bytes >= MAP_BYTES {
            if let Some(b) = Self::mapped(len, bytes) {
                return b;
            }
        }
        let layout = Layout::from_size_align(bytes, 64).expect("buffer layout");
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(layout) } as *mut f32;
        let ptr = NonNull::new(p).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        Buffer {
            ptr,
            len,
            source: Source::Heap(layout),
        }
    }

    /// Anonymous memory from `mmap`, its start aligned to a huge page, huge pages asked for.
    /// `None` when the kernel refuses the mapping (the heap is tried then).
    #[cfg(target_os = "linux")]
    fn mapped(len: usize, bytes: usize) -> Option<Buffer> {
        // Each mapping starts a different number of cache lines past its huge page: buffers
        // that all began on a 2 MB boundary would map a conv's input, output and combine
        // pixels to the same cache sets.
        static MAPPINGS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = MAPPINGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stagger = (n * 7 % 32) * 33 * 64;
        let total = bytes.checked_add(HUGE_PAGE + stagger)?;
        // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let start = (base as usize).next_multiple_of(HUGE_PAGE) + stagger;
        let p = start as *mut libc::c_void;
        // SAFETY: [start, start + bytes) lies inside the mapping. A refusal (THP off) only
        // costs the huge pages, so its result is ignored.
        unsafe { libc::madvise(p, bytes, libc::MADV_HUGEPAGE) };
        Some(Buffer {
            ptr: NonNull::new(p as *mut f32)?,
            len,
            source: Source::Mapped { base, bytes: total },
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn as_slice(&self) -> &[f32] {
        // SAFETY: `ptr` addresses `len` initialized floats owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: as above, and `&mut self` is the only access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        match self.source {
            Source::Empty => {}
            // SAFETY: allocated with this layout in `zeroed`.
            Source::Heap(layout) => unsafe {
                std::alloc::dealloc(self.ptr.as_ptr() as *mut u8, layout)
            },
            #[cfg(target_os = "linux")]
            // SAFETY: the whole mapping made in `mapped`.
            Source::Mapped { base, bytes } => unsafe {
                libc::munmap(base, bytes);
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Buffer;

    #[test]
    fn zeroed_aligned_and_writable_at_every_size() {
        for len in [0, 1, 17, 1 << 16, (4 << 20) / 4, (5 << 20) / 4 + 3] {
            let mut b = Buffer::zeroed(len);
            assert_eq!(b.len(), len);
            assert!(b.as_slice().iter().all(|&v| v == 0.0), "len {len}");
            if len > 0 {
                assert_eq!(b.as_slice().as_ptr() as usize % 64, 0, "len {len}");
                b.as_mut_slice()[len - 1] = 1.0;
                assert_eq!(b.as_slice()[len - 1], 1.0);
                b.as_mut_slice()[0] = 2.0;
                assert_eq!(b.as_slice()[0], 2.0);
            }
        }
    }
}
