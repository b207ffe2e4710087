//! [`Model::run_async`]: a run that never blocks on the GPU (the read-back of each tile is
//! awaited: `GpuPlan::run_async`, src/gpu/readback.rs), for the browser, where `run` cannot wait.
//! The padding and tiling are those of `Model::run_tensor`, with an awaited run per tile.

use super::{check_finite, crop, pad_reflect, Exec, Model};
use crate::error::{Error, Result};
use crate::gpu::GpuPlan;
use crate::image::Image;
use crate::level::Level;
use crate::plan::{LevelVec, Shape};
use crate::tensor::Tensor;

impl Model {
    /// [`Model::run`] as a future that does not block on the GPU: the same kernels, buffers
    /// and 16-byte level write, each tile's read-back awaited (`map_async`) instead of waited
    /// for in `device.poll`. This is the run for wasm32 (wgpu's WebGPU backend in a browser),
    /// where `run` on a GPU engine returns an error instead of blocking the page. Natively it
    /// works too: the future then polls the device without waiting each time it is polled
    /// (its task spins until the GPU is done), so a native caller that may block is better
    /// served by `run`. On the CPU executors the whole run happens in the first poll.
    ///
    /// ```no_run
    /// # async fn demo(model: &tunable::Model, image: &tunable::Image) -> tunable::Result<()> {
    /// let out = model.run_async(image, tunable::Level::sigma(25.0)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn run_async(&self, image: &Image, level: Level) -> Result<Image> {
        let Exec::Gpu(gpu) = &self.exec else {
            return self.run(image, level);
        };
        if image.channels() != self.spec.in_channels {
            return Err(Error::Image(format!(
                "the image has {} color channel(s), the model '{}' takes {}",
                image.channels(),
                self.spec.name,
                self.spec.in_channels
            )));
        }
        let lv = self.level_vec(&level)?;
        let scale = self.spec.value_scale;
        let out = self
            .run_tensor_async(gpu, &image.to_tensor(scale), &lv)
            .await?;
        let planes: Vec<f32> = out.data.into_iter().map(|v| v * scale).collect();
        check_finite(&planes, &level)?;
        image.with_planes(planes)
    }

    /// `run_tensor` with awaited GPU runs: mirror-pads to the size multiple, tiles with a halo
    /// of the receptive field, crops back.
    async fn run_tensor_async(
        &self,
        gpu: &GpuPlan,
        input: &Tensor,
        level: &LevelVec,
    ) -> Result<Tensor> {
        let Shape { c, h, w } = input.shape;
        let (ph, pw) = self.padded_size(input)?;
        let out = if (ph, pw) == (h, w) {
            self.run_tiled_async(gpu, input, level).await?
        } else {
            let padded = pad_reflect(input, ph, pw);
            let out = self.run_tiled_async(gpu, &padded, level).await?;
            crop(&out, 0, 0, h, w, c)
        };
        check_finite(&out.data, level)?;
        Ok(out)
    }

    async fn run_tiled_async(
        &self,
        gpu: &GpuPlan,
        input: &Tensor,
        level: &LevelVec,
    ) -> Result<Tensor> {
        let Shape { c, h, w } = input.shape;
        let m = self.plan.size_multiple();
        let tile = (self.max_tile / m).max(1) * m;
        if h <= tile && w <= tile {
            return self.run_piece_async(gpu, input, level).await;
        }
        let halo = self.plan.receptive_radius().div_ceil(m) * m;
        let mut out = Tensor::zeros(Shape::new(c, h, w));
        for y0 in (0..h).step_by(tile) {
            for x0 in (0..w).step_by(tile) {
                let (y1, x1) = ((y0 + tile).min(h), (x0 + tile).min(w));
                let (sy, sx) = (y0.saturating_sub(halo), x0.saturating_sub(halo));
                let (ey, ex) = ((y1 + halo).min(h), (x1 + halo).min(w));
                let piece = crop(input, sy, sx, ey - sy, ex - sx, c);
                let res = self.run_piece_async(gpu, &piece, level).await?;
                for ch in 0..c {
                    for y in y0..y1 {
                        let src = (ch * (ey - sy) + (y - sy)) * (ex - sx) + (x0 - sx);
                        let dst = (ch * h + y) * w + x0;
                        out.data[dst..dst + (x1 - x0)]
                            .copy_from_slice(&res.data[src..src + (x1 - x0)]);
                    }
                }
            }
        }
        Ok(out)
    }

    /// One awaited run of the plan on a piece of the size the network accepts as is.
    async fn run_piece_async(
        &self,
        gpu: &GpuPlan,
        input: &Tensor,
        level: &LevelVec,
    ) -> Result<Tensor> {
        self.plan.shapes(input.shape.h, input.shape.w)?;
        let out = gpu.run_async(input, level).await?;
        let (i, o) = (input.shape, out.shape);
        if (i.h, i.w) != (o.h, o.w) {
            return Err(Error::Shape(format!(
                "the network maps {}x{} to {}x{}",
                i.w, i.h, o.w, o.h
            )));
        }
        Ok(out)
    }
}
