//! [`Model::encode`]: the restoration of one texture into another, recorded into the app's own
//! command encoder (the GPU half: `GpuPlan::encode`, src/gpu/encode.rs). The checks here are
//! the ones wgpu would only report when the app finishes its encoder, as a validation error
//! far from their cause.

use super::{Exec, Model};
use crate::error::{Error, Result};
use crate::gpu::exec::encode::EncodeJob;
use crate::gpu::kernels::TextureFormat;
use crate::gpu::ops::texture::TexDims;
use crate::level::Level;
use crate::plan::Shape;

impl Model {
    /// Records the restoration of `input` into `output` at `level` into the app's `encoder`:
    /// no submit, no poll, no read-back. The engine must be on the device the textures and
    /// the encoder belong to ([`crate::Engine::from_wgpu`]).
    ///
    /// - `input`: a 2-D view of a whole `Rgba8Unorm`, `Rgba16Float` or `Rgba32Float` texture
    ///   with `TEXTURE_BINDING` usage; values 0..1.
    /// - `output`: a 2-D view of a whole texture of the same size, one of the same three
    ///   formats, with `STORAGE_BINDING` usage. Alpha is copied from `input`; a gray model
    ///   reads the input's luminance (Rec. 709) and writes its result to the three colour
    ///   channels. `Rgba8Unorm` output is clamped to 0..1, float output is not (as `run`).
    ///
    /// The first call with a pair of views prepares their buffers and bind groups (the last
    /// [`crate::gpu::exec::encode::KEPT_ENCODES`] pairs are kept); later calls write only the
    /// level (16 bytes) and record. Each call uses its own slot of a ring of level slots, so
    /// several calls at different levels recorded before one `queue.submit` each run at their
    /// own level (up to 255 per submission). Large textures are tiled with the halo of the
    /// network's receptive field, as `run` tiles, all inside one compute pass.
    ///
    /// ```no_run
    /// # fn frame(model: &tunable::Model, device: &tunable::wgpu::Device, queue: &tunable::wgpu::Queue,
    /// #          photo: &tunable::wgpu::TextureView, shown: &tunable::wgpu::TextureView, sigma: f32)
    /// #          -> tunable::Result<()> {
    /// let mut encoder = device.create_command_encoder(&Default::default());
    /// model.encode(&mut encoder, photo, shown, &tunable::Level::sigma_clamped(sigma))?;
    /// // ... the app's own passes that draw `shown` ...
    /// queue.submit([encoder.finish()]);
    /// # Ok(()) }
    /// ```
    pub fn encode(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        input: &wgpu::TextureView,
        output: &wgpu::TextureView,
        level: &Level,
    ) -> Result<()> {
        let Exec::Gpu(gpu) = &self.exec else {
            return Err(Error::InvalidArgument(format!(
                "Model::encode needs a model loaded by a GPU engine (Engine::from_wgpu); '{}' runs on the CPU",
                self.spec.name
            )));
        };
        let gray = match self.spec.in_channels {
            1 => true,
            3 => false,
            c => {
                return Err(Error::InvalidArgument(format!(
                    "Model::encode runs gray or RGB models; '{}' takes {c} channels",
                    self.spec.name
                )))
            }
        };
        let (width, height) = texture_size(
            input.texture(),
            "input",
            wgpu::TextureUsages::TEXTURE_BINDING,
        )?;
        let size = texture_size(
            output.texture(),
            "output",
            wgpu::TextureUsages::STORAGE_BINDING,
        )?;
        if size != (width, height) {
            return Err(Error::Image(format!(
                "Model::encode: the output texture is {}x{}, the input {width}x{height}",
                size.0, size.1
            )));
        }
        let format = output_format(output.texture())?;
        let lv = self.level_vec(level)?;
        let job = EncodeJob {
            width,
            height,
            tiles: self.texture_tiles(width, height)?,
            gray,
            format,
        };
        gpu.encode(encoder, input, output, &job, &lv)
    }

    /// The tiles of a `width x height` picture: mirror-padded to the size multiple and cut
    /// as `run` cuts it, each with its tensor rectangle and the part it owns.
    fn texture_tiles(&self, width: u32, height: u32) -> Result<Vec<TexDims>> {
        let c = self.spec.in_channels;
        let m = self.plan.size_multiple();
        let round_up = |n: u32| {
            (n as usize).div_ceil(m).checked_mul(m).ok_or_else(|| {
                Error::Limit(format!(
                    "{width}x{height} cannot be padded to a multiple of {m}"
                ))
            })
        };
        let (ph, pw) = (round_up(height)?, round_up(width)?);
        let scale = 255.0 / self.spec.value_scale;
        let tiles = self.tiles(Shape::new(c, ph, pw)).pieces();
        let as_u32 = |v: usize| {
            u32::try_from(v)
                .map_err(|_| Error::Limit(format!("{width}x{height} is too large to tile")))
        };
        tiles
            .iter()
            .map(|p| {
                Ok(TexDims {
                    width,
                    height,
                    tile_x: as_u32(p.sx)?,
                    tile_y: as_u32(p.sy)?,
                    tile_w: as_u32(p.ex - p.sx)?,
                    tile_h: as_u32(p.ey - p.sy)?,
                    own_x: as_u32(p.x0 - p.sx)?,
                    own_y: as_u32(p.y0 - p.sy)?,
                    own_w: as_u32(p.x1 - p.x0)?,
                    own_h: as_u32(p.y1 - p.y0)?,
                    scale,
                    unused: 0,
                })
            })
            .collect()
    }
}

/// The size of a texture `Model::encode` can use as `role`, or an error naming what is wrong.
fn texture_size(t: &wgpu::Texture, role: &str, usage: wgpu::TextureUsages) -> Result<(u32, u32)> {
    let bad = |what: String| {
        Err(Error::InvalidArgument(format!(
            "Model::encode: the {role} texture {what}"
        )))
    };
    if t.dimension() != wgpu::TextureDimension::D2 || t.depth_or_array_layers() != 1 {
        return bad(format!(
            "must be 2-D with one layer (it is {:?} with {} layers)",
            t.dimension(),
            t.depth_or_array_layers()
        ));
    }
    if t.sample_count() != 1 {
        return bad(format!(
            "must not be multisampled ({} samples)",
            t.sample_count()
        ));
    }
    if TextureFormat::of(t.format()).is_none() {
        return bad(format!(
            "is {:?}; Model::encode reads and writes Rgba8Unorm, Rgba16Float and Rgba32Float",
            t.format()
        ));
    }
    if !t.usage().contains(usage) {
        return bad(format!("needs {usage:?} usage (it has {:?})", t.usage()));
    }
    if t.width() == 0 || t.height() == 0 {
        return bad("has no pixels".into());
    }
    Ok((t.width(), t.height()))
}

fn output_format(t: &wgpu::Texture) -> Result<TextureFormat> {
    TextureFormat::of(t.format()).ok_or_else(|| {
        Error::InvalidArgument(format!("Model::encode cannot write {:?}", t.format()))
    })
}
