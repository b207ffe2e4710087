//! Runs that never block: [`GpuPlan::run_async`], the GPU half of [`crate::Model::run_async`].
//! The read-back is awaited (`map_async` wakes the task) instead of waited for in
//! `device.poll`, which is what a browser needs: on wasm32 with wgpu's WebGPU backend nothing
//! may block the page's thread, and the map callback only runs once the task has yielded to
//! the browser's event loop.
//!
//! On native backends the map callback runs inside `device.poll`, so the future polls the
//! device without waiting (`PollType::Poll`) each time it is polled, and asks to be polled
//! again until the map is done: it spins its task instead of blocking the thread. A native
//! program that may block is better served by [`GpuPlan::run`].
//!
//! Error scopes: popping one gives a future (a promise on WebGPU) that a browser cannot block
//! on, so on wasm32 `ErrorScope::pop` pops its scopes at once (they must nest) and leaves
//! their results here ([`defer_scopes`]); [`settle_error_scopes`] awaits them, and
//! `run_async` does so before it returns, so a validation or out-of-memory error of its run
//! (or of a load before it) is still an [`Error::Gpu`] naming what was being done.
//!
//! This module is a child of `exec` (it reads the plan's private state); the checks, the size
//! cache and the submission here are also those of the blocking `GpuPlan::execute`.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::task::{Context, Poll, Waker};

use super::{poisoned, record, ErrorScope, GpuContext, GpuPlan, Prepared, SharedPrepared};
use crate::error::{Error, Result};
use crate::plan::{LevelVec, Shape};
use crate::tensor::Tensor;

type PoppedScope = Pin<Box<dyn Future<Output = Option<wgpu::Error>>>>;

thread_local! {
    /// Popped error scopes whose results nobody has awaited yet, with what they covered.
    /// Only ever filled on wasm32 (see the module docs); error scopes are per thread.
    static DEFERRED: RefCell<Vec<(String, PoppedScope)>> = const { RefCell::new(Vec::new()) };
}

/// Pops `guards` now, innermost (last) first as `ErrorScope::pop` does, and keeps their
/// results for [`settle_error_scopes`].
pub(crate) fn defer_scopes(guards: Vec<wgpu::ErrorScopeGuard>, context: &str) {
    let popped: Vec<PoppedScope> = guards
        .into_iter()
        .rev()
        .map(|g| Box::pin(g.pop()) as PoppedScope)
        .collect();
    DEFERRED.with(|d| {
        let mut d = d.borrow_mut();
        d.extend(popped.into_iter().map(|p| (context.to_string(), p)));
    });
}

/// Awaits every error scope popped without waiting on this thread (on wasm32: every GPU
/// operation since the last call, a model load included) and returns the first error, naming
/// the operation. Native backends never defer a scope: there it returns `Ok` at once.
pub async fn settle_error_scopes() -> Result<()> {
    let pending = DEFERRED.with(|d| std::mem::take(&mut *d.borrow_mut()));
    let mut first = None;
    for (context, scope) in pending {
        if let Some(e) = scope.await {
            first.get_or_insert(Error::Gpu {
                context,
                message: e.to_string(),
            });
        }
    }
    first.map_or(Ok(()), Err)
}

type MapResult = std::result::Result<(), wgpu::BufferAsyncError>;

/// What the map callback hands to the waiting task.
#[derive(Default)]
struct MapSlot {
    done: Option<MapResult>,
    waker: Option<Waker>,
}

fn lock(slot: &Mutex<MapSlot>) -> MutexGuard<'_, MapSlot> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

/// The end of one `map_async`. Dropped before it is done (the caller gave up), it unmaps the
/// buffer, which cancels the map, so the buffer is usable by the next run.
struct Mapping<'a> {
    device: &'a wgpu::Device,
    buffer: &'a wgpu::Buffer,
    slot: Arc<Mutex<MapSlot>>,
    finished: bool,
}

impl Future for Mapping<'_> {
    type Output = MapResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<MapResult> {
        let native = !cfg!(target_arch = "wasm32");
        if native {
            // Runs the map callback if the copy is done; never waits.
            let _ = self.device.poll(wgpu::PollType::Poll);
        }
        let mut slot = lock(&self.slot);
        if let Some(r) = slot.done.take() {
            drop(slot);
            self.finished = true;
            return Poll::Ready(r);
        }
        slot.waker = Some(cx.waker().clone());
        drop(slot);
        if native {
            // No one else drives a native device for us: ask to be polled again.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

impl Drop for Mapping<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.buffer.unmap();
        }
    }
}

/// Reads the first `size` bytes of the mappable `staging` buffer once the work submitted
/// before is done, awaiting the map instead of blocking on it.
pub(crate) async fn map_read_async(
    ctx: &GpuContext,
    staging: &wgpu::Buffer,
    size: u64,
) -> Result<Vec<f32>> {
    let slot = Arc::new(Mutex::new(MapSlot::default()));
    let for_callback = slot.clone();
    staging.map_async(wgpu::MapMode::Read, 0..size, move |r| {
        let mut s = lock(&for_callback);
        s.done = Some(r);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    });
    let status = Mapping {
        device: &ctx.device,
        buffer: staging,
        slot,
        finished: false,
    }
    .await;
    let fail = |m: String| {
        ctx.lost_or(Error::Gpu {
            context: "reading results back".into(),
            message: m,
        })
    };
    status.map_err(|e| fail(e.to_string()))?;
    ctx.take_mapped(staging, size, &fail)
}

impl GpuPlan {
    /// [`GpuPlan::run`] as a future that never blocks (see the module docs): the same buffers,
    /// bind groups and 16-byte level write, with the read-back awaited. Runs of one size share
    /// that size's buffers; a run that finds them held by another run still in flight makes
    /// its own for once (counted as buffers created) instead of waiting, so two runs awaited
    /// together on one thread cannot deadlock. Await it to the end: dropped early, the GPU work
    /// still completes but its result is discarded.
    // The size's buffers stay locked across the await (its read-back buffer is mapped until
    // then); the lock is only ever taken with `try_lock` here, and a blocking `run` elsewhere
    // waits only for this run's GPU work, as it would for another blocking run.
    #[allow(clippy::await_holding_lock)]
    pub async fn run_async(&self, input: &Tensor, level: &LevelVec) -> Result<Tensor> {
        self.check_inputs(&[input])?;
        let ext = [input.shape];
        let shared = self.prepared(&ext)?;
        let guard = match shared.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::WouldBlock) => None,
            Err(TryLockError::Poisoned(e)) => return Err(poisoned(e)),
        };
        let own;
        let prep: &Prepared = match &guard {
            Some(g) => g,
            None => {
                own = self.prepare(&ext)?;
                &own
            }
        };
        let submitted = self.submit_on(prep, &[input], level);
        let data = match &submitted {
            Ok((_, bytes, _)) => Some(map_read_async(&self.ctx, &prep.staging, *bytes).await),
            Err(_) => None,
        };
        drop(guard);
        // A scope's error says more than the failed map it may have caused.
        settle_error_scopes().await?;
        let (shape, _, _) = submitted?;
        let data = data.expect("submitted")?;
        Ok(Tensor::from_vec(shape, data))
    }

    /// The checks of a run on the caller's input tensors.
    pub(super) fn check_inputs(&self, inputs: &[&Tensor]) -> Result<()> {
        self.ctx.check()?;
        if inputs.len() != self.inputs.len() {
            return Err(Error::InvalidArgument(format!(
                "expected {} input tensors, got {}",
                self.inputs.len(),
                inputs.len()
            )));
        }
        for t in inputs {
            if t.shape.is_empty() || t.data.len() != t.shape.len() {
                return Err(Error::Shape(format!(
                    "input tensor {}x{}x{} holds {} values",
                    t.shape.c,
                    t.shape.h,
                    t.shape.w,
                    t.data.len()
                )));
            }
        }
        if inputs[0].shape.c != self.in_channels {
            return Err(Error::Shape(format!(
                "the plan expects {} input channels, got {}",
                self.in_channels, inputs[0].shape.c
            )));
        }
        Ok(())
    }

    /// The prepared state of these input shapes, from the size cache or made (and cached) now.
    pub(super) fn prepared(&self, ext: &[Shape]) -> Result<SharedPrepared> {
        let key: Vec<[usize; 3]> = ext.iter().map(|s| [s.c, s.h, s.w]).collect();
        let mut cache = self.cache.lock().map_err(poisoned)?;
        if let Some(p) = cache.get(&key) {
            return Ok(p);
        }
        let prepared = self.prepare(ext)?;
        let bytes = prepared.bytes;
        let p = Arc::new(Mutex::new(prepared));
        cache.insert(key, p.clone(), bytes);
        Ok(p)
    }

    /// Writes the inputs and the level, records the plan and the copy of its output into the
    /// read-back buffer, and submits: everything of a run but the read-back. Returns the
    /// output's shape and bytes, and the submission the read-back waits for.
    pub(super) fn submit_on(
        &self,
        prep: &Prepared,
        inputs: &[&Tensor],
        level: &LevelVec,
    ) -> Result<(Shape, u64, wgpu::SubmissionIndex)> {
        let ctx = &self.ctx;
        let scope = ErrorScope::push(&ctx.device);
        for (&t, x) in self.inputs.iter().zip(inputs) {
            ctx.write_input(
                &prep.pool[prep.tensor_buf[t]],
                0,
                bytemuck::cast_slice(&x.data),
            );
        }
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("tunable plan"),
            });
        record(&mut encoder, &prep.steps, 0);
        let out_shape = prep.shapes[self.output];
        let out_bytes = out_shape.len() as u64 * 4;
        encoder.copy_buffer_to_buffer(
            &prep.pool[prep.tensor_buf[self.output]],
            0,
            &prep.staging,
            0,
            out_bytes,
        );
        scope
            .pop("recording the plan")
            .map_err(|e| ctx.lost_or(e))?;
        let index = {
            let _g = self.submit.lock().map_err(poisoned)?;
            ctx.write_buffer(&self.level, 0, bytemuck::cast_slice(level));
            ctx.submit(encoder)?
        };
        Ok((out_shape, out_bytes, index))
    }
}
