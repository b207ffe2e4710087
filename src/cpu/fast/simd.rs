//! An 8-lane f32 vector abstraction, so that transform code is written once and compiled for
//! AVX2 (`__m256`, inside `#[target_feature(enable = "avx2,fma")]` callers) and as plain
//! arrays (`[f32; 8]`, any target).

#![allow(clippy::missing_safety_doc)]

pub(crate) trait Lane8: Copy {
    /// Loads 8 values.
    unsafe fn load(p: *const f32) -> Self;
    /// Loads the first `n` (1..=8) values; the other lanes are 0.
    unsafe fn load_n(p: *const f32, n: usize) -> Self;
    unsafe fn store(self, p: *mut f32);
    /// Stores the first `n` (1..=8) lanes.
    unsafe fn store_n(self, p: *mut f32, n: usize);
    fn zero() -> Self;
    fn splat(v: f32) -> Self;
    fn add(self, b: Self) -> Self;
    fn sub(self, b: Self) -> Self;
    fn mul(self, b: Self) -> Self;
    /// `self * b + c`.
    fn mul_add(self, b: Self, c: Self) -> Self;
    /// `max(self, 0)`.
    fn relu(self) -> Self;
    /// `self` where `self >= 0`, else `self * slope`.
    fn prelu(self, slope: Self) -> Self;

    /// Loads `n` values, as a full load when `n == 8`.
    #[inline(always)]
    unsafe fn load_upto(p: *const f32, n: usize) -> Self {
        if n >= 8 {
            Self::load(p)
        } else {
            Self::load_n(p, n)
        }
    }
    #[inline(always)]
    unsafe fn store_upto(self, p: *mut f32, n: usize) {
        if n >= 8 {
            self.store(p)
        } else {
            self.store_n(p, n)
        }
    }
}

impl Lane8 for [f32; 8] {
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        std::ptr::read_unaligned(p as *const [f32; 8])
    }
    #[inline(always)]
    unsafe fn load_n(p: *const f32, n: usize) -> Self {
        let mut v = [0.0; 8];
        for (i, x) in v.iter_mut().enumerate().take(n) {
            *x = *p.add(i);
        }
        v
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        std::ptr::write_unaligned(p as *mut [f32; 8], self)
    }
    #[inline(always)]
    unsafe fn store_n(self, p: *mut f32, n: usize) {
        for (i, x) in self.iter().enumerate().take(n) {
            *p.add(i) = *x;
        }
    }
    #[inline(always)]
    fn zero() -> Self {
        [0.0; 8]
    }
    #[inline(always)]
    fn splat(v: f32) -> Self {
        [v; 8]
    }
    #[inline(always)]
    fn add(self, b: Self) -> Self {
        std::array::from_fn(|i| self[i] + b[i])
    }
    #[inline(always)]
    fn sub(self, b: Self) -> Self {
        std::array::from_fn(|i| self[i] - b[i])
    }
    #[inline(always)]
    fn mul(self, b: Self) -> Self {
        std::array::from_fn(|i| self[i] * b[i])
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        std::array::from_fn(|i| self[i] * b[i] + c[i])
    }
    #[inline(always)]
    fn relu(self) -> Self {
        std::array::from_fn(|i| self[i].max(0.0))
    }
    #[inline(always)]
    fn prelu(self, slope: Self) -> Self {
        std::array::from_fn(|i| {
            if self[i] >= 0.0 {
                self[i]
            } else {
                self[i] * slope[i]
            }
        })
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Lane8;
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn mask(n: usize) -> __m256i {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }

    // Only called from functions compiled with AVX2 + FMA (the intrinsics inline there).
    impl Lane8 for __m256 {
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn load_n(p: *const f32, n: usize) -> Self {
            _mm256_maskload_ps(p, mask(n))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm256_storeu_ps(p, self)
        }
        #[inline(always)]
        unsafe fn store_n(self, p: *mut f32, n: usize) {
            _mm256_maskstore_ps(p, mask(n), self)
        }
        #[inline(always)]
        fn zero() -> Self {
            unsafe { _mm256_setzero_ps() }
        }
        #[inline(always)]
        fn splat(v: f32) -> Self {
            unsafe { _mm256_set1_ps(v) }
        }
        #[inline(always)]
        fn add(self, b: Self) -> Self {
            unsafe { _mm256_add_ps(self, b) }
        }
        #[inline(always)]
        fn sub(self, b: Self) -> Self {
            unsafe { _mm256_sub_ps(self, b) }
        }
        #[inline(always)]
        fn mul(self, b: Self) -> Self {
            unsafe { _mm256_mul_ps(self, b) }
        }
        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            unsafe { _mm256_fmadd_ps(self, b, c) }
        }
        #[inline(always)]
        fn relu(self) -> Self {
            unsafe { _mm256_max_ps(self, _mm256_setzero_ps()) }
        }
        #[inline(always)]
        fn prelu(self, slope: Self) -> Self {
            unsafe {
                let ge = _mm256_cmp_ps::<_CMP_GE_OQ>(self, _mm256_setzero_ps());
                _mm256_blendv_ps(_mm256_mul_ps(self, slope), self, ge)
            }
        }
    }
}
