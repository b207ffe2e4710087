//! The one test harness every integration test shares (`mod harness;`):
//! - [`models`]: small model files built in the test (no PyTorch);
//! - [`images`]: generated pictures and their comparison;
//! - [`cases`]: the one random-case generator (tensors, levels, mixes, epilogues, ops, small
//!   plans) and the one tolerance ([`cases::Worst`]) of every executor test;
//! - [`backends`]: every executor behind [`backends::Backend`] and `test_backends!`, one test
//!   per backend of a case function, each against the reference;
//! - [`gpu`]: one GPU context per test binary (and the cases re-exported for the kernel tests);
//! - [`plan`]: plan-building helpers;
//! - [`app`]: a wgpu adapter and device created as an application would (`Engine::from_wgpu`).
//!
//! Every GPU helper skips (with a message) when there is no adapter, unless
//! `TUNABLE_REQUIRE_GPU=1`, which makes a missing adapter fail the test.
#![allow(dead_code)]

pub mod app;
pub mod backends;
pub mod cases;
pub mod gpu;
pub mod images;
pub mod models;
pub mod plan;

use std::sync::{Mutex, MutexGuard};

/// Whether a missing GPU adapter fails the test instead of skipping it.
pub fn require_gpu() -> bool {
    std::env::var("TUNABLE_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// One GPU test at a time in a test binary (lavapipe is happier with few devices in flight).
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
