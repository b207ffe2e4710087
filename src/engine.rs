//! The public entry points: `Engine` (a backend) and `Model` (a loaded network bound to it).
//!
//! Backend policy: a real GPU adapter if there is one; otherwise the fast CPU
//! executor, said in one line on stderr. `TUNABLE_BACKEND` forces a GPU backend (a software
//! adapter too), `TUNABLE_CPU=1` forces the CPU.

use std::path::Path;
use std::sync::Arc;

use crate::cpu::fast::FastPlan;
use crate::cpu::reference;
use crate::error::{Error, Result};
use crate::gpu::{GpuContext, GpuOptions, GpuPlan};
use crate::image::Image;
use crate::level::Level;
use crate::model::{LevelAxis, Lowering, ModelFile, Spec};
use crate::plan::{FtnParams, LevelVec, Plan, Shape};
use crate::tensor::Tensor;

/// `Model::run_async` (src/engine/nonblocking.rs).
mod encode;
mod nonblocking;

/// Which executor runs the models of an engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    /// The policy above.
    Auto,
    /// A GPU adapter (software ones included); an error if there is none.
    Gpu,
    /// The fast CPU executor.
    Cpu,
    /// The plain reference kernels (slow; the oracle).
    Reference,
}

#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub backend: BackendChoice,
    pub gpu: GpuOptions,
    /// Largest tile side (in pixels, before the halo) processed at once; bounds memory.
    pub max_tile: usize,
    /// Print the backend note on stderr when the policy falls back to the CPU.
    pub quiet: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            backend: BackendChoice::Auto,
            gpu: GpuOptions::default(),
            max_tile: 1024,
            quiet: false,
        }
    }
}

#[derive(Clone)]
enum Backend {
    Gpu(Arc<GpuContext>),
    Cpu,
    Reference,
}

/// Runs models on one backend. Cheap to share: `Send + Sync`, models keep an `Arc` of it.
#[derive(Clone)]
pub struct Engine {
    backend: Backend,
    max_tile: usize,
}

fn env_flag(name: &str) -> bool {
    std::env::var(name)
        .map(|v| !v.is_empty() && v != "0")
        .unwrap_or(false)
}

impl Engine {
    /// An engine chosen by the backend policy and the environment.
    pub fn new() -> Result<Engine> {
        Engine::with_options(EngineOptions::default())
    }

    pub fn cpu() -> Engine {
        Engine {
            backend: Backend::Cpu,
            max_tile: 1024,
        }
    }

    pub fn reference() -> Engine {
        Engine {
            backend: Backend::Reference,
            max_tile: 1024,
        }
    }

    /// An engine on a device the application already has (its own wgpu 30 instance, adapter,
    /// device and queue: an editor, a viewer, a game), so frames never leave that device for a
    /// second one. `device` and `queue` are kept (wgpu handles are reference-counted: the
    /// application keeps its clones); `adapter` is only read (its name and capabilities).
    ///
    /// The engine asks nothing of the device: it works within the limits and features the
    /// device was created with (`device.limits()`). The storage-binding limit it finds bounds
    /// the tile side of each model (a big image is tiled so every tensor of a tile fits one
    /// binding) and the workgroup-count limit splits the dispatches. What the kernels cannot do
    /// without (compute shaders, 4 storage buffers per shader stage, 2 uniform buffers, 16,352
    /// bytes of workgroup memory, 256 invocations per workgroup, a 256 x 4 workgroup, a uniform
    /// offset alignment of at most 256) is checked here: if the device lacks any, the error
    /// ([`Error::DeviceLimits`]) names each limit and the value needed. With 6 storage buffers
    /// a conv's epilogue adds up to two other tensors in the same pass; with 4 or 5 those adds
    /// run as separate passes. [`Model::encode`] also needs one storage texture per stage. So
    /// `wgpu::Limits::downlevel_defaults()` runs every model. No wgpu feature is needed. The
    /// device's lost callback and uncaptured-error handler stay the application's.
    ///
    /// Then [`Model::encode`] records restorations into the application's own encoder,
    /// texture to texture, with a level change costing one 16-byte write.
    ///
    /// ```no_run
    /// # fn demo(adapter: &tunable::wgpu::Adapter, device: tunable::wgpu::Device, queue: tunable::wgpu::Queue) -> tunable::Result<()> {
    /// let engine = tunable::Engine::from_wgpu(adapter, device, queue)?;
    /// let model = engine.load("weights/denoise-color.safetensors")?;
    /// # Ok(()) }
    /// ```
    pub fn from_wgpu(
        adapter: &wgpu::Adapter,
        device: wgpu::Device,
        queue: wgpu::Queue,
    ) -> Result<Engine> {
        Ok(Engine {
            backend: Backend::Gpu(GpuContext::from_wgpu(adapter, device, queue)?),
            max_tile: EngineOptions::default().max_tile,
        })
    }

    /// A GPU engine or an error (no fallback).
    pub fn gpu() -> Result<Engine> {
        Engine::with_options(EngineOptions {
            backend: BackendChoice::Gpu,
            ..Default::default()
        })
    }

    /// `opts.gpu` is completed from `TUNABLE_BACKEND` / `TUNABLE_ADAPTER` where it leaves a field unset.
    pub fn with_options(mut opts: EngineOptions) -> Result<Engine> {
        let env = GpuOptions::from_env()?;
        opts.gpu.backend = opts.gpu.backend.or(env.backend);
        opts.gpu.adapter = opts.gpu.adapter.or(env.adapter);
        let gpu = |o: &GpuOptions| GpuContext::with_options(o).map(Backend::Gpu);
        let backend = match opts.backend {
            BackendChoice::Gpu => gpu(&opts.gpu)?,
            BackendChoice::Cpu => Backend::Cpu,
            BackendChoice::Reference => Backend::Reference,
            BackendChoice::Auto if env_flag("TUNABLE_CPU") => Backend::Cpu,
            BackendChoice::Auto if std::env::var("TUNABLE_BACKEND").is_ok() => gpu(&opts.gpu)?,
            BackendChoice::Auto => match GpuContext::with_options(&opts.gpu) {
                Ok(ctx) if !ctx.software_only() => Backend::Gpu(ctx),
                Ok(ctx) => {
                    if !opts.quiet {
                        eprintln!(
                            "tunable: the only GPU adapter is a software one ({}); running on the fast CPU executor (TUNABLE_BACKEND=vulkan forces the adapter)",
                            ctx.info().name
                        );
                    }
                    Backend::Cpu
                }
                Err(e) => {
                    if !opts.quiet {
                        eprintln!(
                            "tunable: no GPU adapter ({e}); running on the fast CPU executor"
                        );
                    }
                    Backend::Cpu
                }
            },
        };
        Ok(Engine {
            backend,
            max_tile: opts.max_tile.max(16),
        })
    }

    /// A one-line description of the backend: the adapter and its API, or the CPU executor.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Gpu(ctx) => {
                let i = ctx.info();
                format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
            }
            Backend::Cpu => format!(
                "fast CPU executor ({} threads)",
                rayon::current_num_threads()
            ),
            Backend::Reference => "CPU reference kernels".into(),
        }
    }

    pub fn gpu_context(&self) -> Option<&Arc<GpuContext>> {
        match &self.backend {
            Backend::Gpu(c) => Some(c),
            _ => None,
        }
    }

    /// Loads a model file, fused (the fast form).
    pub fn load(&self, path: impl AsRef<Path>) -> Result<Model> {
        self.load_with(path, Lowering::Fused)
    }

    pub fn load_with(&self, path: impl AsRef<Path>, lowering: Lowering) -> Result<Model> {
        self.bind(ModelFile::open(path)?, lowering)
    }

    pub fn load_bytes(&self, bytes: &[u8], lowering: Lowering) -> Result<Model> {
        self.bind(ModelFile::from_bytes(bytes)?, lowering)
    }

    fn bind(&self, file: ModelFile, lowering: Lowering) -> Result<Model> {
        let plan = match &self.backend {
            Backend::Gpu(ctx) => {
                let ctx = ctx.clone();
                let ftn = move |w: &[f32], cout: usize, cin: usize, k: usize, p: &FtnParams| {
                    crate::gpu::ftn_transform(&ctx, w, cout, cin, k, p)
                };
                file.plan(lowering, &ftn)?
            }
            _ => {
                let ftn = |w: &[f32], cout: usize, cin: usize, k: usize, p: &FtnParams| {
                    Ok(reference::ftn_transform(w, cout, cin, k, p))
                };
                file.plan(lowering, &ftn)?
            }
        };
        if file.spec.out_channels != file.spec.in_channels {
            return Err(Error::Format(format!(
                "the model maps {} channels to {}; only image-to-image models of equal channels are supported",
                file.spec.in_channels, file.spec.out_channels
            )));
        }
        let exec = match &self.backend {
            Backend::Gpu(ctx) => Exec::Gpu(GpuPlan::new(ctx.clone(), &plan)?),
            Backend::Cpu => Exec::Fast(FastPlan::new(&plan)?),
            Backend::Reference => Exec::Reference,
        };
        Ok(Model {
            max_tile: self.tile_for(&plan),
            spec: file.spec,
            plan,
            exec,
            lowering,
        })
    }

    /// The largest tile side for `plan`: `max_tile`, lowered on a GPU until every tensor of a
    /// tile with its halo fits one storage binding of the device (the limit found on it, so a
    /// device with small bindings still runs big images, in more tiles).
    fn tile_for(&self, plan: &Plan) -> usize {
        let Backend::Gpu(ctx) = &self.backend else {
            return self.max_tile;
        };
        let max = ctx.max_tensor_bytes();
        let m = plan.size_multiple().max(1);
        let halo = plan.receptive_radius().div_ceil(m) * m;
        let fits = |tile: usize| {
            let side = tile + 2 * halo;
            plan.shapes(side, side)
                .is_ok_and(|v| v.iter().all(|s| s.len() as u64 * 4 <= max))
        };
        // The tile the run uses is a multiple of `m`; find the largest one that fits.
        let (mut lo, mut hi) = (1, (self.max_tile / m).max(1));
        if fits(hi * m) {
            return self.max_tile;
        }
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if fits(mid * m) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo * m // when even this does not fit, the run says which tensor is too big
    }
}

enum Exec {
    Gpu(GpuPlan),
    Fast(FastPlan),
    Reference,
}

/// A loaded model bound to its engine's backend. `Send + Sync`: run it from several threads.
pub struct Model {
    spec: Spec,
    plan: Plan,
    exec: Exec,
    lowering: Lowering,
    max_tile: usize,
}

/// Called after each tile with (tiles done, tiles in all).
pub type Progress<'a> = &'a (dyn Fn(usize, usize) + Sync);

impl Model {
    pub fn spec(&self) -> &Spec {
        &self.spec
    }
    pub fn plan(&self) -> &Plan {
        &self.plan
    }
    pub fn axes(&self) -> &[LevelAxis] {
        &self.spec.levels
    }
    pub fn lowering(&self) -> Lowering {
        self.lowering
    }

    /// Bytes of buffers the executor keeps between runs: on a GPU, the per-size cache (bounded
    /// by `TUNABLE_GPU_CACHE_MB`); on the fast CPU, the scratch pool (`TUNABLE_CPU_POOL_MB`).
    pub fn retained_bytes(&self) -> u64 {
        match &self.exec {
            Exec::Gpu(g) => g.retained_bytes(),
            Exec::Fast(f) => f.retained_bytes() as u64,
            Exec::Reference => 0,
        }
    }

    /// How many bytes of buffers to keep between runs; the default is the environment's or
    /// 256 MiB. What the last runs need is kept whatever the budget: on a GPU the 4 sizes used
    /// last (the tiles of one image), on the CPU one run's scratch.
    pub fn set_buffer_budget(&self, bytes: u64) {
        match &self.exec {
            Exec::Gpu(g) => g.set_cache_budget(bytes),
            Exec::Fast(f) => f.set_pool_budget(usize::try_from(bytes).unwrap_or(usize::MAX)),
            Exec::Reference => {}
        }
    }

    /// Frees the buffers kept between runs (a long-running service between bursts of work);
    /// the next run re-creates what it needs.
    pub fn release_buffers(&self) {
        match &self.exec {
            Exec::Gpu(g) => g.release_buffers(),
            Exec::Fast(f) => f.release_memory(),
            Exec::Reference => {}
        }
    }

    /// Resolves a level against this model's axes and calibration.
    pub fn level_vec(&self, level: &Level) -> Result<LevelVec> {
        level.resolve(&self.spec.levels)
    }

    /// Restores an image at a level.
    pub fn run(&self, image: &Image, level: Level) -> Result<Image> {
        self.run_with_progress(image, level, &|_, _| {})
    }

    pub fn run_with_progress(
        &self,
        image: &Image,
        level: Level,
        progress: Progress,
    ) -> Result<Image> {
        let (input, lv) = self.image_input(image, &level)?;
        let out = self.run_tensor(&input, &lv, progress)?;
        self.image_output(image, out, &level)
    }

    /// The network's input for a picture: its channels checked, values divided by the model's
    /// value scale; and the level resolved. Shared by `run` and `run_async`.
    pub(crate) fn image_input(&self, image: &Image, level: &Level) -> Result<(Tensor, LevelVec)> {
        if image.channels() != self.spec.in_channels {
            return Err(Error::Image(format!(
                "the image has {} color channel(s), the model '{}' takes {}",
                image.channels(),
                self.spec.name,
                self.spec.in_channels
            )));
        }
        let lv = self.level_vec(level)?;
        Ok((image.to_tensor(self.spec.value_scale), lv))
    }

    /// The picture for a network output: values scaled back, checked finite, alpha and bit
    /// depth taken from `image`.
    pub(crate) fn image_output(&self, image: &Image, out: Tensor, level: &Level) -> Result<Image> {
        let scale = self.spec.value_scale;
        let planes: Vec<f32> = out.data.into_iter().map(|v| v * scale).collect();
        check_finite(&planes, level)?;
        image.with_planes(planes)
    }

    /// Runs the network on one tensor of any size: pads the bottom and right to the size the
    /// network needs (mirroring the edge, as FFDNet and most restoration code do), tiles with a
    /// halo of the receptive field, crops back. No copy is made when no padding is needed.
    /// An output holding NaN or infinity is an error ([`Error::NonFinite`]), not a tensor.
    pub fn run_tensor(
        &self,
        input: &Tensor,
        level: &LevelVec,
        progress: Progress,
    ) -> Result<Tensor> {
        let Shape { c, h, w } = input.shape;
        let (ph, pw) = self.padded_size(input)?;
        let out = if (ph, pw) == (h, w) {
            self.run_tiled(input, level, progress)?
        } else {
            let padded = self.run_tiled(&pad_reflect(input, ph, pw), level, progress)?;
            crop(&padded, 0, 0, h, w, c)
        };
        check_finite(&out.data, level)?;
        Ok(out)
    }

    /// Checks a tensor for a run (not empty, data matching its shape) and returns the size it is
    /// mirror-padded to: each side rounded up to the network's size multiple.
    pub(crate) fn padded_size(&self, input: &Tensor) -> Result<(usize, usize)> {
        let Shape { c, h, w } = input.shape;
        if h == 0 || w == 0 {
            return Err(Error::Image(format!("image of size {w}x{h} is empty")));
        }
        if input.shape.checked_len() != Some(input.data.len()) {
            return Err(Error::Shape(format!(
                "a {c}x{h}x{w} tensor holding {} values",
                input.data.len()
            )));
        }
        let m = self.plan.size_multiple();
        let round_up = |n: usize| {
            n.div_ceil(m).checked_mul(m).ok_or_else(|| {
                Error::Limit(format!("{w}x{h} cannot be padded to a multiple of {m}"))
            })
        };
        Ok((round_up(h)?, round_up(w)?))
    }

    fn run_tiled(&self, input: &Tensor, level: &LevelVec, progress: Progress) -> Result<Tensor> {
        let tiles = self.tiles(input.shape);
        if tiles.is_single() {
            let out = self.run_plan(input, level)?;
            same_shape(input, &out)?;
            progress(1, 1);
            return Ok(out);
        }
        let mut out = Tensor::zeros(input.shape);
        let pieces = tiles.pieces();
        for (i, p) in pieces.iter().enumerate() {
            let piece = p.crop(input);
            let res = self.run_plan(&piece, level)?;
            same_shape(&piece, &res)?;
            p.paste(&res, &mut out);
            progress(i + 1, pieces.len());
        }
        Ok(out)
    }

    /// How a padded input of this shape is cut into tiles (shared by `run` and `run_async`).
    pub(crate) fn tiles(&self, shape: Shape) -> Tiles {
        let m = self.plan.size_multiple();
        Tiles {
            shape,
            tile: (self.max_tile / m).max(1) * m,
            // The receptive radius rounded up so tile origins stay aligned to `m`.
            halo: self.plan.receptive_radius().div_ceil(m) * m,
        }
    }

    /// Runs the plan once on a tensor whose size the network accepts as is.
    pub fn run_plan(&self, input: &Tensor, level: &LevelVec) -> Result<Tensor> {
        self.plan.shapes(input.shape.h, input.shape.w)?;
        match &self.exec {
            Exec::Gpu(g) => g.run(input, level),
            Exec::Fast(f) => f.run(input, level),
            Exec::Reference => {
                let (h, w) = (input.shape.h, input.shape.w);
                self.plan.run_memory(h, w)?.check(input.shape)?;
                Ok(reference::run_plan(&self.plan, level, input))
            }
        }
    }
}

/// The network's output must have its input's size (checked at load; here so that a plan
/// that breaks it is an error, not an out-of-bounds copy).
/// Tiles of `tile` x `tile` pixels over `shape`, each run with a `halo` of context.
pub(crate) struct Tiles {
    shape: Shape,
    tile: usize,
    halo: usize,
}

impl Tiles {
    /// The whole input fits one tile: no cutting.
    pub(crate) fn is_single(&self) -> bool {
        self.shape.h <= self.tile && self.shape.w <= self.tile
    }

    /// The tiles in row-major order.
    pub(crate) fn pieces(&self) -> Vec<TilePiece> {
        let Shape { c, h, w } = self.shape;
        let (t, halo) = (self.tile, self.halo);
        let mut out = vec![];
        for y0 in (0..h).step_by(t) {
            for x0 in (0..w).step_by(t) {
                let (y1, x1) = ((y0 + t).min(h), (x0 + t).min(w));
                let (sy, sx) = (y0.saturating_sub(halo), x0.saturating_sub(halo));
                let (ey, ex) = ((y1 + halo).min(h), (x1 + halo).min(w));
                out.push(TilePiece {
                    c,
                    h,
                    w,
                    y0,
                    y1,
                    x0,
                    x1,
                    sy,
                    sx,
                    ey,
                    ex,
                });
            }
        }
        out
    }
}

/// One tile: the rows/columns it owns (`y0..y1`, `x0..x1`) and the ones it reads (`sy..ey`,
/// `sx..ex`, the halo included) in a `c x h x w` tensor.
pub(crate) struct TilePiece {
    c: usize,
    h: usize,
    w: usize,
    y0: usize,
    y1: usize,
    x0: usize,
    x1: usize,
    sy: usize,
    sx: usize,
    ey: usize,
    ex: usize,
}

impl TilePiece {
    /// The input the tile reads.
    pub(crate) fn crop(&self, input: &Tensor) -> Tensor {
        crop(
            input,
            self.sy,
            self.sx,
            self.ey - self.sy,
            self.ex - self.sx,
            self.c,
        )
    }

    /// Copies the part of `res` (the output of `crop`'s piece) this tile owns into `out`.
    pub(crate) fn paste(&self, res: &Tensor, out: &mut Tensor) {
        let (pw, n) = (self.ex - self.sx, self.x1 - self.x0);
        for ch in 0..self.c {
            for y in self.y0..self.y1 {
                let src = (ch * (self.ey - self.sy) + (y - self.sy)) * pw + (self.x0 - self.sx);
                let dst = (ch * self.h + y) * self.w + self.x0;
                out.data[dst..dst + n].copy_from_slice(&res.data[src..src + n]);
            }
        }
    }
}

pub(crate) fn same_shape(input: &Tensor, out: &Tensor) -> Result<()> {
    let (i, o) = (input.shape, out.shape);
    if (i.h, i.w) != (o.h, o.w) || out.data.len() != o.len() {
        return Err(Error::Shape(format!(
            "the network maps {}x{} to {}x{}",
            i.w, i.h, o.w, o.h
        )));
    }
    Ok(())
}

/// An error naming how many values are NaN or infinite, and the first, if any are.
pub(crate) fn check_finite(values: &[f32], level: &impl std::fmt::Debug) -> Result<()> {
    let bad = values.iter().filter(|v| !v.is_finite()).count();
    if bad == 0 {
        return Ok(());
    }
    let first = values
        .iter()
        .find(|v| !v.is_finite())
        .copied()
        .unwrap_or(f32::NAN);
    Err(Error::NonFinite(format!(
        "{bad} of {} output values are NaN or infinite (the first is {first}) at level {level:?}; the level may lie too far outside what the model was trained for",
        values.len()
    )))
}

/// Pads a CHW tensor at the bottom and right to `h x w` by mirroring about the last row and
/// column (PyTorch's `reflect`: the added row after row `H-1` is row `H-2`), so an odd-sized image
/// gets exactly FFDNet's own padding. Where the tensor is too small to mirror (fewer rows than
/// the pad, only for nets that need a multiple of 3 or more), the index is clamped at 0.
pub fn pad_reflect(t: &Tensor, h: usize, w: usize) -> Tensor {
    let Shape { c, h: th, w: tw } = t.shape;
    if th == 0 || tw == 0 {
        return Tensor::zeros(Shape::new(c, h, w)); // nothing to mirror
    }
    let mirror = |i: usize, n: usize| {
        if i < n {
            i
        } else {
            (2 * (n - 1)).saturating_sub(i)
        }
    };
    let cols: Vec<usize> = (0..w).map(|x| mirror(x, tw)).collect();
    let mut out = Tensor::zeros(Shape::new(c, h, w));
    for ch in 0..c {
        for y in 0..h {
            let src = &t.data[(ch * th + mirror(y, th)) * tw..][..tw];
            let dst = &mut out.data[(ch * h + y) * w..][..w];
            for (d, &x) in dst.iter_mut().zip(&cols) {
                *d = src[x];
            }
        }
    }
    out
}

/// The `h x w` window at `(y, x)` of the first `c` channels.
pub fn crop(t: &Tensor, y: usize, x: usize, h: usize, w: usize, c: usize) -> Tensor {
    let mut out = Tensor::zeros(Shape::new(c, h, w));
    for ch in 0..c {
        for row in 0..h {
            let src = (ch * t.shape.h + y + row) * t.shape.w + x;
            out.data[(ch * h + row) * w..(ch * h + row + 1) * w]
                .copy_from_slice(&t.data[src..src + w]);
        }
    }
    out
}
