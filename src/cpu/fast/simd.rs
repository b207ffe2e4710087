//! An f32 vector abstraction, so that transform code is written once and compiled for
//! AVX-512 (`__m512`, 16 lanes, inside `#[target_feature(enable = "avx512f")]` callers),
//! AVX2 (`__m256`, inside `#[target_feature(enable = "avx2,fma")]` callers) and as plain
//! arrays (`[f32; 8]`, any target). The name is historical: [`Lane8::N`] is the width.

#![allow(clippy::missing_safety_doc)]

pub(crate) trait Lane8: Copy {
    /// Lanes.
    const N: usize;
    /// Loads `N` values.
    unsafe fn load(p: *const f32) -> Self;
    /// Loads the first `n` (1..=N) values; the other lanes are 0.
    unsafe fn load_n(p: *const f32, n: usize) -> Self;
    unsafe fn store(self, p: *mut f32);
    /// Stores the first `n` (1..=N) lanes.
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

    /// Loads `n` values, as a full load when `n == N`.
    #[inline(always)]
    unsafe fn load_upto(p: *const f32, n: usize) -> Self {
        if n >= Self::N {
            Self::load(p)
        } else {
            Self::load_n(p, n)
        }
    }
    #[inline(always)]
    unsafe fn store_upto(self, p: *mut f32, n: usize) {
        if n >= Self::N {
            self.store(p)
        } else {
            self.store_n(p, n)
        }
    }
}

impl Lane8 for [f32; 8] {
    const N: usize = 8;
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
        const N: usize = 8;
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

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::Lane8;
    use std::arch::x86_64::*;

    #[inline(always)]
    fn mask(n: usize) -> __mmask16 {
        ((1u32 << n) - 1) as __mmask16
    }

    // Only called from functions compiled with AVX-512F (the intrinsics inline there).
    impl Lane8 for __m512 {
        const N: usize = 16;
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn load_n(p: *const f32, n: usize) -> Self {
            _mm512_maskz_loadu_ps(mask(n), p)
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm512_storeu_ps(p, self)
        }
        #[inline(always)]
        unsafe fn store_n(self, p: *mut f32, n: usize) {
            _mm512_mask_storeu_ps(p, mask(n), self)
        }
        #[inline(always)]
        fn zero() -> Self {
            unsafe { _mm512_setzero_ps() }
        }
        #[inline(always)]
        fn splat(v: f32) -> Self {
            unsafe { _mm512_set1_ps(v) }
        }
        #[inline(always)]
        fn add(self, b: Self) -> Self {
            unsafe { _mm512_add_ps(self, b) }
        }
        #[inline(always)]
        fn sub(self, b: Self) -> Self {
            unsafe { _mm512_sub_ps(self, b) }
        }
        #[inline(always)]
        fn mul(self, b: Self) -> Self {
            unsafe { _mm512_mul_ps(self, b) }
        }
        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            unsafe { _mm512_fmadd_ps(self, b, c) }
        }
        #[inline(always)]
        fn relu(self) -> Self {
            unsafe { _mm512_max_ps(self, _mm512_setzero_ps()) }
        }
        #[inline(always)]
        fn prelu(self, slope: Self) -> Self {
            unsafe {
                let ge = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(self, _mm512_setzero_ps());
                _mm512_mask_blend_ps(ge, _mm512_mul_ps(self, slope), self)
            }
        }
    }
}
