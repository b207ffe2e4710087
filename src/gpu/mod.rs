//! The wgpu runtime: adapter and device, pipelines, buffers, and the plan executor.
