//! [`GpuPlan::encode`]: a whole restoration recorded into the application's command encoder,
//! from its texture into its storage texture, with no submit, no poll and no read-back (the
//! GPU half of [`crate::Model::encode`]).
//!
//! Per pair of views (and tiling) the first call prepares everything: each tile size's tensors
//! and bind groups (its own, not the size cache's: a concurrent `run` of the same size writes
//! its input with `queue.write_buffer`, which would land in the app's next submission too),
//! one uniform per tile and the texture bind groups. Later calls with the same views write one
//! 16-byte level slot and record. Each call takes its own slot of the level ring, so up to
//! `LEVEL_SLOTS - 1` restorations at different levels recorded before one submission each run
//! at their own level.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::{
    poisoned, record_in, ErrorScope, GpuContext, GpuPlan, Prepared, LEVEL_BYTES, LEVEL_SLOTS,
    UNIFORM_STRIDE,
};
use crate::error::{Error, Result};
use crate::gpu::kernels::{Kernel, TextureFormat};
use crate::gpu::ops::texture::TexDims;
use crate::plan::{LevelVec, Shape};

/// What one encode restores: the picture's size, its tiles (in the mirror-padded picture),
/// the channels and value scale of the network, and the output format.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodeJob {
    pub width: u32,
    pub height: u32,
    /// Each tile's tensor rectangle and the part of it the tile owns.
    pub tiles: Vec<TexDims>,
    pub gray: bool,
    pub format: TextureFormat,
}

/// The prepared state of one (input view, output view, job).
pub(crate) struct EncodeEntry {
    input: wgpu::TextureView,
    output: wgpu::TextureView,
    job: EncodeJob,
    tiles: Vec<EncodeTile>,
    /// Bytes of every buffer the entry holds.
    bytes: u64,
}

/// One tile: its plan state (shared by tiles of one size) and its texture bind groups.
struct EncodeTile {
    prepared: Arc<Prepared>,
    texture_in: wgpu::BindGroup,
    texture_out: wgpu::BindGroup,
    in_groups: [u32; 3],
    out_groups: [u32; 3],
}

/// Entries kept: an app alternating a few view pairs (double buffering) prepares each once.
pub const KEPT_ENCODES: usize = 4;

impl GpuPlan {
    /// Records the restoration of `input` into `output` at `level` into `encoder`.
    pub fn encode(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        input: &wgpu::TextureView,
        output: &wgpu::TextureView,
        job: &EncodeJob,
        level: &LevelVec,
    ) -> Result<()> {
        self.ctx.check()?;
        let in_pipeline = self.ctx.pipeline(Kernel::TextureIn { gray: job.gray })?;
        let out_pipeline = self.ctx.pipeline(Kernel::TextureOut {
            gray: job.gray,
            format: job.format,
        })?;
        let entry = self.encode_entry(input, output, job)?;
        let slot = self.next_level_slot();
        let offset = slot * UNIFORM_STRIDE as u32;
        self.ctx
            .write_buffer(&self.level, offset as u64, bytemuck::cast_slice(level));
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("tunable encode"),
            timestamp_writes: None,
        });
        for t in &entry.tiles {
            pass.set_pipeline(&in_pipeline);
            pass.set_bind_group(0, &t.texture_in, &[0]);
            pass.dispatch_workgroups(t.in_groups[0], t.in_groups[1], t.in_groups[2]);
            record_in(&mut pass, &t.prepared.steps, offset);
            pass.set_pipeline(&out_pipeline);
            pass.set_bind_group(0, &t.texture_out, &[0]);
            pass.dispatch_workgroups(t.out_groups[0], t.out_groups[1], t.out_groups[2]);
        }
        Ok(())
    }

    /// The ring slot of the next encode: 1..LEVEL_SLOTS in turn (slot 0 is `run`'s).
    fn next_level_slot(&self) -> u32 {
        let n = self.next_slot.fetch_add(1, Ordering::Relaxed);
        1 + n % (LEVEL_SLOTS - 1)
    }

    /// Bytes held by prepared encodes (part of [`GpuPlan::retained_bytes`]).
    pub(super) fn encode_bytes(&self) -> u64 {
        self.encodes
            .lock()
            .map(|e| e.iter().map(|x| x.bytes).sum())
            .unwrap_or(0)
    }

    /// The prepared entry for these views and job, most recently used last.
    fn encode_entry(
        &self,
        input: &wgpu::TextureView,
        output: &wgpu::TextureView,
        job: &EncodeJob,
    ) -> Result<Arc<EncodeEntry>> {
        let mut entries = self.encodes.lock().map_err(poisoned)?;
        if let Some(i) = entries
            .iter()
            .position(|e| &e.input == input && &e.output == output && &e.job == job)
        {
            let e = entries.remove(i);
            entries.push(e.clone());
            return Ok(e);
        }
        let e = Arc::new(self.prepare_encode(input, output, job)?);
        entries.push(e.clone());
        if entries.len() > KEPT_ENCODES {
            entries.remove(0);
        }
        Ok(e)
    }

    fn prepare_encode(
        &self,
        input: &wgpu::TextureView,
        output: &wgpu::TextureView,
        job: &EncodeJob,
    ) -> Result<EncodeEntry> {
        let ctx: &GpuContext = &self.ctx;
        let channels = self.in_channels;
        // One plan state per tile size.
        let mut sizes: Vec<((u32, u32), Arc<Prepared>)> = vec![];
        let mut bytes = 0;
        for t in &job.tiles {
            let size = (t.tile_w, t.tile_h);
            if sizes.iter().all(|(s, _)| *s != size) {
                let shape = Shape::new(channels, t.tile_h as usize, t.tile_w as usize);
                let p = self.prepare(&[shape])?;
                bytes += p.bytes;
                sizes.push((size, Arc::new(p)));
            }
        }
        let mut uniforms = vec![0u8; job.tiles.len() * UNIFORM_STRIDE as usize];
        for (i, t) in job.tiles.iter().enumerate() {
            let at = i * UNIFORM_STRIDE as usize;
            uniforms[at..at + std::mem::size_of::<TexDims>()]
                .copy_from_slice(bytemuck::bytes_of(t));
        }
        let ubuf = ctx.buffer_with("texture tiles", &uniforms, wgpu::BufferUsages::UNIFORM)?;
        bytes += ubuf.size();
        let in_layout = ctx.layout(Kernel::TextureIn { gray: job.gray }.layout_key())?;
        let out_layout = ctx.layout(
            Kernel::TextureOut {
                gray: job.gray,
                format: job.format,
            }
            .layout_key(),
        )?;
        let level = wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.level,
                offset: 0,
                size: wgpu::BufferSize::new(LEVEL_BYTES),
            }),
        };
        let scope = ErrorScope::push(&ctx.device);
        let mut tiles = vec![];
        for (i, t) in job.tiles.iter().enumerate() {
            let prepared = sizes
                .iter()
                .find(|(s, _)| *s == (t.tile_w, t.tile_h))
                .map(|(_, p)| p.clone())
                .expect("every tile size is prepared");
            let params = wgpu::BindGroupEntry {
                binding: 1,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &ubuf,
                    offset: (i as u64) * UNIFORM_STRIDE,
                    size: wgpu::BufferSize::new(std::mem::size_of::<TexDims>() as u64),
                }),
            };
            let tensor = |t: usize| prepared.pool[prepared.tensor_buf[t]].as_entire_binding();
            let texture_in = ctx.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("tunable texture in"),
                layout: &in_layout.bind_group,
                entries: &[
                    level.clone(),
                    params.clone(),
                    wgpu::BindGroupEntry {
                        binding: 7,
                        resource: tensor(self.inputs[0]),
                    },
                    wgpu::BindGroupEntry {
                        binding: 8,
                        resource: wgpu::BindingResource::TextureView(input),
                    },
                ],
            });
            let texture_out = ctx.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("tunable texture out"),
                layout: &out_layout.bind_group,
                entries: &[
                    level.clone(),
                    params,
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: tensor(self.output),
                    },
                    wgpu::BindGroupEntry {
                        binding: 8,
                        resource: wgpu::BindingResource::TextureView(input),
                    },
                    wgpu::BindGroupEntry {
                        binding: 9,
                        resource: wgpu::BindingResource::TextureView(output),
                    },
                ],
            });
            tiles.push(EncodeTile {
                prepared,
                texture_in,
                texture_out,
                in_groups: t.in_groups(),
                out_groups: t.out_groups(),
            });
        }
        scope
            .pop("binding the textures of Model::encode")
            .map_err(|e| ctx.lost_or(e))?;
        if tiles.is_empty() {
            return Err(Error::Image("a texture with no pixels".into()));
        }
        Ok(EncodeEntry {
            input: input.clone(),
            output: output.clone(),
            job: job.clone(),
            tiles,
            bytes,
        })
    }
}

/// The prepared encodes of a plan, least recently used first.
pub(crate) type EncodeCache = Mutex<Vec<Arc<EncodeEntry>>>;
