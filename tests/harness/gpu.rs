//! The GPU context of a test binary. The random cases and the tolerance the GPU tests use are
//! the ones every executor test shares ([`super::cases`]), re-exported here for
//! `tests/gpu_kernels.rs`'s `use harness::gpu::*`.

use std::sync::{Arc, OnceLock};

use super::require_gpu;
use tunable::testing::gpu::GpuContext;

// Only `tests/gpu_kernels.rs` uses these; the other binaries that compile the harness do not.
#[allow(unused_imports)]
pub use super::cases::{
    mixed, rand_affine, rand_conv, rand_depthwise, rand_eltwise, rand_epilogue, rand_level,
    rand_mix, rand_tensor, rand_vec, rng, ConvSpec, Worst,
};

/// The one GPU context of this test binary (lavapipe is happier with one device), or None
/// with a skip message; with TUNABLE_REQUIRE_GPU=1 a missing adapter fails the test.
pub fn ctx() -> Option<Arc<GpuContext>> {
    static CTX: OnceLock<Option<Arc<GpuContext>>> = OnceLock::new();
    let c = CTX.get_or_init(|| match GpuContext::new() {
        Ok(c) => {
            eprintln!("GPU tests on: {}", c.info());
            Some(c)
        }
        Err(e) => {
            if require_gpu() {
                panic!("TUNABLE_REQUIRE_GPU=1 but no usable GPU adapter: {e}");
            }
            eprintln!("skipping GPU tests: {e}");
            None
        }
    });
    if c.is_none() && require_gpu() {
        panic!("TUNABLE_REQUIRE_GPU=1 but no usable GPU adapter");
    }
    c.clone()
}
