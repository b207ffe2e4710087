//! [`Model::run_async`]: a run that never blocks on the GPU (the read-back of each tile is
//! awaited: `GpuPlan::run_async`, src/gpu/readback.rs), for the browser, where `run` cannot wait.
//! The padding and tiling are those of `Model::run_tensor`, with an awaited run per tile.

use super::{check_finite, crop, pad_reflect, same_shape, Exec, Model};
use crate::error::Result;
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
        let (input, lv) = self.image_input(image, &level)?;
        let out = self.run_tensor_async(gpu, &input, &lv).await?;
        self.image_output(image, out, &level)
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
        let tiles = self.tiles(input.shape);
        if tiles.is_single() {
            return self.run_piece_async(gpu, input, level).await;
        }
        let mut out = Tensor::zeros(input.shape);
        for p in tiles.pieces() {
            let res = self.run_piece_async(gpu, &p.crop(input), level).await?;
            p.paste(&res, &mut out);
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
        same_shape(input, &out)?;
        Ok(out)
    }
}
