//! The GPU context: one adapter, one device and queue, the pipeline cache, and the error
//! plumbing (error scopes, device-lost flag) that turns every wgpu failure into a typed
//! [`crate::Error`] instead of a panic.
//!
//! Adapter policy: a real GPU before a software rasteriser (`DeviceType::Cpu`: lavapipe,
//! SwiftShader, WARP, llvmpipe), Vulkan/Metal/DX12 before GL. `TUNABLE_BACKEND=vulkan|metal|dx12|gl`
//! restricts the backend, `TUNABLE_ADAPTER=<substring>` the adapter name.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::gpu::kernels::{Kernel, LayoutKey};

/// Workgroup memory every kernel stays under (bytes): the downlevel default, 16,352.
pub const WORKGROUP_STORAGE_BYTES: u32 = 16_352;
/// Storage buffers the kernels bind at most: x, weights, epilogue, other 1, other 2, output
/// (a conv whose epilogue combines two other tensors). Requested where the adapter offers it.
pub const STORAGE_BUFFERS_PER_STAGE: u32 = 6;
/// Storage buffers a device needs at least: every variant without combine tensors binds 4 or
/// fewer; on such a device a plan's combines run as separate eltwise passes
/// ([`crate::plan::Plan::split_combines`]).
pub const MIN_STORAGE_BUFFERS_PER_STAGE: u32 = 4;
/// The largest workgroup any kernel uses.
pub const MAX_INVOCATIONS: u32 = 256;
/// The largest workgroup side in y any kernel uses (the tiled convs and depthwise: 16 x 4).
pub const MAX_WORKGROUP_Y: u32 = 4;
/// Stride of the per-dispatch uniforms in their shared buffer (bytes): the offset alignment a
/// device may require at most.
pub const UNIFORM_STRIDE: u64 = 256;
/// Bytes of the per-dispatch uniform one kernel binds.
pub const PARAMS_BYTES: u64 = crate::gpu::ops::MAX_UNIFORM_BYTES;

/// What the GPU engine created and wrote since its context was made: the cost of a level
/// change, made countable (tests, diagnostics). A snapshot from [`GpuContext::counters`];
/// [`GpuCounters::since`] gives the work between two snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuCounters {
    /// Kernel variants compiled (each once; the cache is shared by every plan of the context).
    pub pipelines_compiled: u64,
    /// Buffers created (weights, tensors, uniforms, read-back staging).
    pub buffers_created: u64,
    /// Bind groups created.
    pub bind_groups_created: u64,
    /// Bytes written with `queue.write_buffer`, everything included (weights, uniforms, the
    /// level, input tensors).
    pub bytes_written: u64,
    /// The part of `bytes_written` that is input tensors (the image of each run).
    pub input_bytes_written: u64,
    /// The part of `bytes_written` that is model weights (uploaded once, at load).
    pub weight_bytes_written: u64,
}

impl GpuCounters {
    /// The work done between `earlier` and `self` (field by field).
    pub fn since(&self, earlier: &GpuCounters) -> GpuCounters {
        GpuCounters {
            pipelines_compiled: self.pipelines_compiled - earlier.pipelines_compiled,
            buffers_created: self.buffers_created - earlier.buffers_created,
            bind_groups_created: self.bind_groups_created - earlier.bind_groups_created,
            bytes_written: self.bytes_written - earlier.bytes_written,
            input_bytes_written: self.input_bytes_written - earlier.input_bytes_written,
            weight_bytes_written: self.weight_bytes_written - earlier.weight_bytes_written,
        }
    }

    /// Bytes written that are not input tensors: what moving the level (and nothing else) costs.
    pub fn bytes_written_besides_inputs(&self) -> u64 {
        self.bytes_written - self.input_bytes_written
    }
}

/// The live counters behind [`GpuCounters`], shared by every view of one context.
#[derive(Default)]
struct Counters {
    buffers: AtomicU64,
    bind_groups: AtomicU64,
    bytes: AtomicU64,
    input_bytes: AtomicU64,
    weight_bytes: AtomicU64,
}

/// How to pick the adapter, and limits to force below what the device offers (tests use
/// these to exercise the split-dispatch and size-check paths on any machine).
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Restrict to one backend (default: Vulkan, Metal, DX12, then GL if none of those).
    pub backend: Option<wgpu::Backends>,
    /// Only adapters whose name contains this (case-insensitive).
    pub adapter: Option<String>,
    /// Largest storage buffer binding the executor will use, in bytes (min with the device's).
    pub max_storage_binding_size: Option<u64>,
    /// Most workgroups per dispatch dimension the executor will use (min with the device's).
    pub max_workgroups_per_dim: Option<u32>,
}

impl GpuOptions {
    /// Options from `TUNABLE_BACKEND` and `TUNABLE_ADAPTER`.
    pub fn from_env() -> Result<Self> {
        let mut o = GpuOptions::default();
        if let Ok(b) = std::env::var("TUNABLE_BACKEND") {
            if !b.trim().is_empty() {
                o.backend = Some(parse_backend(&b)?);
            }
        }
        if let Ok(a) = std::env::var("TUNABLE_ADAPTER") {
            if !a.trim().is_empty() {
                o.adapter = Some(a);
            }
        }
        Ok(o)
    }
}

/// Parses `vulkan|metal|dx12|gl` (also `vk`, `gles`, `opengl`, `d3d12`).
pub fn parse_backend(s: &str) -> Result<wgpu::Backends> {
    match s.trim().to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => Ok(wgpu::Backends::VULKAN),
        "metal" | "mtl" => Ok(wgpu::Backends::METAL),
        "dx12" | "d3d12" => Ok(wgpu::Backends::DX12),
        "gl" | "gles" | "opengl" => Ok(wgpu::Backends::GL),
        other => Err(Error::InvalidArgument(format!(
            "TUNABLE_BACKEND='{other}' is not one of vulkan, metal, dx12, gl"
        ))),
    }
}

/// What the context runs on, and the limits the executor works within.
#[derive(Clone, Debug)]
pub struct GpuInfo {
    pub name: String,
    pub backend: wgpu::Backend,
    pub device_type: wgpu::DeviceType,
    pub driver: String,
    /// Effective largest storage binding (bytes), after forced options.
    pub max_storage_binding_size: u64,
    pub max_buffer_size: u64,
    /// Effective most workgroups per dispatch dimension, after forced options.
    pub max_workgroups_per_dim: u32,
    pub max_storage_buffers_per_stage: u32,
    pub max_workgroup_storage_size: u32,
}

impl fmt::Display for GpuInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({:?}, {:?}{}) max storage binding {} MiB, max buffer {} MiB, {} workgroups/dim, {} storage buffers/stage, {} B workgroup memory",
            self.name,
            self.backend,
            self.device_type,
            if self.driver.is_empty() { String::new() } else { format!(", {}", self.driver) },
            self.max_storage_binding_size >> 20,
            self.max_buffer_size >> 20,
            self.max_workgroups_per_dim,
            self.max_storage_buffers_per_stage,
            self.max_workgroup_storage_size
        )
    }
}

/// One device and queue, shared (`Arc`) by every uploaded plan. `Send + Sync`.
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: GpuInfo,
    lost: Arc<AtomicBool>,
    lost_message: Arc<Mutex<Option<String>>>,
    uncaptured: Arc<Mutex<Option<String>>>,
    /// The bind group and pipeline layouts of each set of storage buffers a variant binds.
    layouts: Arc<Mutex<HashMap<LayoutKey, KernelLayout>>>,
    pipelines: Arc<Mutex<HashMap<Kernel, wgpu::ComputePipeline>>>,
    /// The limits the device was created with (before forced options).
    device_limits: wgpu::Limits,
    counters: Arc<Counters>,
}

/// The layouts of the kernels with one [`LayoutKey`]: binding 0 the level (a 16-byte
/// slot of the level ring, chosen by a dynamic offset), 1 the kernel's uniform, then the set's
/// storage buffers.
#[derive(Clone)]
pub(crate) struct KernelLayout {
    pub(crate) bind_group: wgpu::BindGroupLayout,
    pipeline: wgpu::PipelineLayout,
}

/// Bytes of one level slot (the level is a `vec4<f32>`).
pub const LEVEL_BYTES: u64 = 16;

fn type_rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

fn make_instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    // No validation layers unless the user asks for them (WGPU_VALIDATION=1).
    desc.flags = wgpu::InstanceFlags::empty().with_env();
    desc.backend_options = wgpu::BackendOptions::from_env_or_default();
    wgpu::Instance::new(desc)
}

/// Every adapter of `backends`, best first, filtered by name.
fn candidates(backends: wgpu::Backends, name: Option<&str>) -> Vec<wgpu::Adapter> {
    let instance = make_instance(backends);
    let mut v: Vec<wgpu::Adapter> = pollster::block_on(instance.enumerate_adapters(backends));
    if let Some(n) = name {
        let n = n.to_ascii_lowercase();
        v.retain(|a| a.get_info().name.to_ascii_lowercase().contains(&n));
    }
    v.sort_by_key(|a| {
        let i = a.get_info();
        (
            type_rank(i.device_type),
            (i.backend == wgpu::Backend::Gl) as u32,
        )
    });
    v
}

impl GpuContext {
    /// A context on the best adapter, honouring `TUNABLE_BACKEND` and `TUNABLE_ADAPTER`.
    pub fn new() -> Result<Arc<GpuContext>> {
        Self::with_options(&GpuOptions::from_env()?)
    }

    /// A context with explicit options (env variables are not read).
    pub fn with_options(opts: &GpuOptions) -> Result<Arc<GpuContext>> {
        let mut adapters = match opts.backend {
            Some(b) => candidates(b, opts.adapter.as_deref()),
            None => {
                let primary = candidates(wgpu::Backends::PRIMARY, opts.adapter.as_deref());
                if primary.is_empty() {
                    candidates(wgpu::Backends::GL, opts.adapter.as_deref())
                } else {
                    primary
                }
            }
        };
        if adapters.is_empty() {
            let mut what = String::new();
            if let Some(b) = opts.backend {
                what += &format!(" for backend {b:?}");
            }
            if let Some(a) = &opts.adapter {
                what += &format!(" matching '{a}'");
            }
            return Err(Error::NoAdapter(what));
        }
        // Try each candidate in order; the first that gives a device wins.
        let mut last_err = None;
        for adapter in adapters.drain(..) {
            match Self::from_adapter(adapter, opts) {
                Ok(c) => return Ok(Arc::new(c)),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| Error::NoAdapter(String::new())))
    }

    fn from_adapter(adapter: wgpu::Adapter, opts: &GpuOptions) -> Result<GpuContext> {
        let ai = adapter.get_info();
        let al = adapter.limits();
        let need = |what: &str, have: u64, want: u64| -> Result<()> {
            if have < want {
                Err(Error::Device(format!(
                    "adapter '{}' offers {what} = {have}, need {want}",
                    ai.name
                )))
            } else {
                Ok(())
            }
        };
        need(
            "max_storage_buffers_per_shader_stage",
            al.max_storage_buffers_per_shader_stage as u64,
            MIN_STORAGE_BUFFERS_PER_STAGE as u64,
        )?;
        need(
            "max_compute_workgroup_storage_size",
            al.max_compute_workgroup_storage_size as u64,
            WORKGROUP_STORAGE_BYTES as u64,
        )?;
        need(
            "max_compute_invocations_per_workgroup",
            al.max_compute_invocations_per_workgroup as u64,
            MAX_INVOCATIONS as u64,
        )?;
        need(
            "max_compute_workgroup_size_x",
            al.max_compute_workgroup_size_x as u64,
            MAX_INVOCATIONS as u64,
        )?;
        if !adapter
            .get_downlevel_capabilities()
            .flags
            .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
        {
            return Err(Error::Device(format!(
                "adapter '{}' has no compute shaders",
                ai.name
            )));
        }
        // Start from the downlevel defaults (what every compute-capable adapter offers) and
        // raise what we use to what the adapter offers.
        let mut limits = wgpu::Limits::downlevel_defaults();
        limits.max_storage_buffers_per_shader_stage = STORAGE_BUFFERS_PER_STAGE
            .max(limits.max_storage_buffers_per_shader_stage)
            .min(al.max_storage_buffers_per_shader_stage);
        limits.max_storage_buffer_binding_size = al.max_storage_buffer_binding_size;
        limits.max_buffer_size = al.max_buffer_size;
        limits.max_compute_workgroups_per_dimension = al.max_compute_workgroups_per_dimension;
        limits.max_compute_workgroup_storage_size = al.max_compute_workgroup_storage_size;
        limits.max_compute_invocations_per_workgroup = al.max_compute_invocations_per_workgroup;
        limits.max_compute_workgroup_size_x = al.max_compute_workgroup_size_x;
        limits.max_compute_workgroup_size_y = al.max_compute_workgroup_size_y;
        limits.max_compute_workgroup_size_z = al.max_compute_workgroup_size_z;
        // Never ask for more than the adapter has in fields we did not touch.
        let limits = limits.or_worse_values_from(&al);
        let desc = wgpu::DeviceDescriptor {
            label: Some("tunable"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| Error::Device(format!("adapter '{}' ({:?}): {e}", ai.name, ai.backend)))?;

        Self::init(&ai, device, queue, limits, opts, true)
    }

    /// A context on a device the application created (what [`crate::Engine::from_wgpu`]
    /// uses). It works within the limits that device was created with (`device.limits()`:
    /// the storage binding and workgroup-count limits it finds bound the tensors and split the
    /// dispatches) and needs no wgpu feature. If the device cannot run the kernels at all, the
    /// error ([`Error::DeviceLimits`]) names every limit that is too small and the value needed.
    ///
    /// The device's lost callback and uncaptured-error handler stay the application's: this
    /// context installs neither (each of its own operations runs inside error scopes).
    pub fn from_wgpu(
        adapter: &wgpu::Adapter,
        device: wgpu::Device,
        queue: wgpu::Queue,
    ) -> Result<Arc<GpuContext>> {
        let ai = adapter.get_info();
        if !adapter
            .get_downlevel_capabilities()
            .flags
            .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
        {
            return Err(Error::DeviceLimits(format!(
                "adapter '{}' ({:?}) has no compute shaders (DownlevelFlags::COMPUTE_SHADERS)",
                ai.name, ai.backend
            )));
        }
        let limits = device.limits();
        check_limits(&ai, &limits)?;
        Self::init(&ai, device, queue, limits, &GpuOptions::default(), false).map(Arc::new)
    }

    /// Everything after the device exists: error plumbing, the bind group layout, the limits
    /// the executor works within, and a smoke compile. `own_device`: the context created the
    /// device, so it may install the device-lost callback and the uncaptured-error handler.
    fn init(
        ai: &wgpu::AdapterInfo,
        device: wgpu::Device,
        queue: wgpu::Queue,
        limits: wgpu::Limits,
        opts: &GpuOptions,
        own_device: bool,
    ) -> Result<GpuContext> {
        let lost = Arc::new(AtomicBool::new(false));
        let lost_message = Arc::new(Mutex::new(None));
        let uncaptured = Arc::new(Mutex::new(None));
        if own_device {
            {
                let (lost, msg) = (lost.clone(), lost_message.clone());
                device.set_device_lost_callback(move |reason, m| {
                    lost.store(true, Ordering::SeqCst);
                    if let Ok(mut g) = msg.lock() {
                        *g = Some(if m.is_empty() {
                            format!("{reason:?}")
                        } else {
                            format!("{reason:?}: {m}")
                        });
                    }
                });
            }
            {
                let slot = uncaptured.clone();
                device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                    if let Ok(mut g) = slot.lock() {
                        if g.is_none() {
                            *g = Some(e.to_string());
                        }
                    }
                }));
            }
        }
        let max_storage = opts
            .max_storage_binding_size
            .map_or(limits.max_storage_buffer_binding_size, |m| {
                m.min(limits.max_storage_buffer_binding_size)
            });
        let max_wg = opts
            .max_workgroups_per_dim
            .map_or(limits.max_compute_workgroups_per_dimension, |m| {
                m.clamp(1, limits.max_compute_workgroups_per_dimension)
            });
        let info = GpuInfo {
            name: ai.name.clone(),
            backend: ai.backend,
            device_type: ai.device_type,
            driver: [ai.driver.as_str(), ai.driver_info.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join(" "),
            max_storage_binding_size: max_storage,
            max_buffer_size: limits.max_buffer_size,
            max_workgroups_per_dim: max_wg,
            max_storage_buffers_per_stage: limits.max_storage_buffers_per_shader_stage,
            max_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
        };
        let ctx = GpuContext {
            device,
            queue,
            info,
            lost,
            lost_message,
            uncaptured,
            layouts: Arc::new(Mutex::new(HashMap::new())),
            pipelines: Arc::new(Mutex::new(HashMap::new())),
            device_limits: limits,
            counters: Arc::new(Counters::default()),
        };
        // Some adapters claim compute support and then cannot build a compute pipeline (seen:
        // NVIDIA through EGL giving a desktop GL 3.3 context). Find out now, so the caller can
        // fall back, instead of at the first model load.
        ctx.compile(Kernel::Shuffle { unshuffle: true })
            .map_err(|e| {
                Error::Device(format!(
                    "adapter '{}' ({:?}) cannot build compute kernels: {e}",
                    ai.name, ai.backend
                ))
            })?;
        Ok(ctx)
    }

    /// The same device, queue and pipeline cache with other forced limits (tests use this to
    /// run the split-dispatch and size-check paths without creating a second device).
    pub fn with_limits(
        &self,
        max_storage_binding_size: Option<u64>,
        max_workgroups_per_dim: Option<u32>,
    ) -> Arc<GpuContext> {
        let l = &self.device_limits;
        let mut info = self.info.clone();
        info.max_storage_binding_size = max_storage_binding_size
            .map_or(l.max_storage_buffer_binding_size, |m| {
                m.min(l.max_storage_buffer_binding_size)
            });
        info.max_workgroups_per_dim = max_workgroups_per_dim
            .map_or(l.max_compute_workgroups_per_dimension, |m| {
                m.clamp(1, l.max_compute_workgroups_per_dimension)
            });
        Arc::new(GpuContext {
            device: self.device.clone(),
            queue: self.queue.clone(),
            info,
            lost: self.lost.clone(),
            lost_message: self.lost_message.clone(),
            uncaptured: self.uncaptured.clone(),
            layouts: self.layouts.clone(),
            pipelines: self.pipelines.clone(),
            device_limits: self.device_limits.clone(),
            counters: self.counters.clone(),
        })
    }

    pub fn info(&self) -> &GpuInfo {
        &self.info
    }

    /// True when the adapter is a software rasteriser (lavapipe, SwiftShader, WARP, llvmpipe):
    /// the caller may prefer the fast CPU executor then.
    pub fn software_only(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// The largest tensor (bytes) one binding can hold: min(max storage binding, max buffer).
    pub fn max_tensor_bytes(&self) -> u64 {
        self.info
            .max_storage_binding_size
            .min(self.info.max_buffer_size)
    }

    /// Destroys the device as a driver reset would (tests of the device-lost path): every
    /// later call on this context, or on plans built on it, returns `Error::DeviceLost`.
    pub fn simulate_device_loss(&self) {
        self.device.destroy();
        let _ = self.device.poll(wgpu::PollType::Poll);
        self.lost.store(true, Ordering::SeqCst);
        if let Ok(mut g) = self.lost_message.lock() {
            g.get_or_insert_with(|| "destroyed (simulated)".into());
        }
    }

    /// Error if the device was lost (or an error escaped every error scope).
    pub fn check(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            let m = self
                .lost_message
                .lock()
                .ok()
                .and_then(|g| g.clone())
                .unwrap_or_default();
            return Err(Error::DeviceLost(m));
        }
        if let Some(m) = self.uncaptured.lock().ok().and_then(|mut g| g.take()) {
            return Err(Error::Gpu {
                context: "an earlier GPU operation".into(),
                message: m,
            });
        }
        Ok(())
    }

    /// The layouts of the kernels with this layout key, created on first use and cached.
    pub(crate) fn layout(&self, key: LayoutKey) -> Result<KernelLayout> {
        if let Some(l) = self.layouts.lock().map_err(poisoned)?.get(&key) {
            return Ok(l.clone());
        }
        let entries = key.entries();
        let scope = ErrorScope::push(&self.device);
        let bind_group = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("tunable kernels"),
                entries: &entries,
            });
        let pipeline = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some("tunable kernels"),
                bind_group_layouts: &[Some(&bind_group)],
                immediate_size: 0,
            });
        scope
            .pop("creating a bind group layout")
            .map_err(|e| self.lost_or(e))?;
        let l = KernelLayout {
            bind_group,
            pipeline,
        };
        self.layouts
            .lock()
            .map_err(poisoned)?
            .insert(key, l.clone());
        Ok(l)
    }

    /// The pipeline of a kernel variant, compiled on first use and cached.
    pub(crate) fn pipeline(&self, kernel: Kernel) -> Result<wgpu::ComputePipeline> {
        if let Some(p) = self.pipelines.lock().map_err(poisoned)?.get(&kernel) {
            return Ok(p.clone());
        }
        let key = kernel.layout_key();
        let (buffers, textures) = key.storage_counts();
        if buffers > self.info.max_storage_buffers_per_stage {
            return Err(Error::DeviceLimits(format!(
                "kernel {} binds {} storage buffers; the device allows {} per shader stage",
                kernel.label(),
                buffers,
                self.info.max_storage_buffers_per_stage
            )));
        }
        if textures > self.device_limits.max_storage_textures_per_shader_stage {
            return Err(Error::DeviceLimits(format!(
                "kernel {} binds {textures} storage texture; the device allows {} per shader stage",
                kernel.label(),
                self.device_limits.max_storage_textures_per_shader_stage
            )));
        }
        let layout = self.layout(key)?;
        // Compile outside the lock; a concurrent compile of the same variant is harmless.
        let src = kernel.source();
        let label = kernel.label();
        let scope = ErrorScope::push(&self.device);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&label),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: Some(&layout.pipeline),
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &[],
                    // Every kernel writes its workgroup arrays before reading them.
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        scope
            .pop(&format!("compiling kernel {label}"))
            .map_err(|e| self.lost_or(e))?;
        self.check()?;
        self.pipelines
            .lock()
            .map_err(poisoned)?
            .insert(kernel, pipeline.clone());
        Ok(pipeline)
    }

    /// Compiles (and caches) a kernel variant ahead of its first use.
    pub fn compile(&self, kernel: Kernel) -> Result<()> {
        self.pipeline(kernel).map(|_| ())
    }

    /// Number of compiled pipelines (tests, diagnostics).
    pub fn pipelines_compiled(&self) -> usize {
        self.pipelines.lock().map(|g| g.len()).unwrap_or(0)
    }

    /// What this context (and every view of it from [`GpuContext::with_limits`]) has created
    /// and written so far: pipelines, buffers, bind groups, bytes through `queue.write_buffer`.
    /// Take two snapshots and [`GpuCounters::since`] to see what one run or one level change
    /// cost.
    pub fn counters(&self) -> GpuCounters {
        let c = &self.counters;
        GpuCounters {
            pipelines_compiled: self.pipelines_compiled() as u64,
            buffers_created: c.buffers.load(Ordering::Relaxed),
            bind_groups_created: c.bind_groups.load(Ordering::Relaxed),
            bytes_written: c.bytes.load(Ordering::Relaxed),
            input_bytes_written: c.input_bytes.load(Ordering::Relaxed),
            weight_bytes_written: c.weight_bytes.load(Ordering::Relaxed),
        }
    }

    /// `queue.write_buffer`, counted.
    pub(crate) fn write_buffer(&self, buffer: &wgpu::Buffer, offset: u64, data: &[u8]) {
        self.counters
            .bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.queue.write_buffer(buffer, offset, data);
    }

    /// `queue.write_buffer` of an input tensor, counted as such.
    pub(crate) fn write_input(&self, buffer: &wgpu::Buffer, offset: u64, data: &[u8]) {
        self.counters
            .input_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.write_buffer(buffer, offset, data);
    }

    /// `device.create_bind_group`, counted.
    pub(crate) fn create_bind_group(&self, desc: &wgpu::BindGroupDescriptor) -> wgpu::BindGroup {
        self.counters.bind_groups.fetch_add(1, Ordering::Relaxed);
        self.device.create_bind_group(desc)
    }

    pub(crate) fn create_buffer(
        &self,
        label: &str,
        size: u64,
        usage: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer> {
        if size > self.info.max_buffer_size {
            return Err(Error::Gpu {
                context: format!("allocating {label}"),
                message: format!(
                    "{size} bytes exceed the device's max buffer size {}",
                    self.info.max_buffer_size
                ),
            });
        }
        let scope = ErrorScope::push(&self.device);
        self.counters.buffers.fetch_add(1, Ordering::Relaxed);
        let b = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.max(16).div_ceil(4) * 4,
            usage,
            mapped_at_creation: false,
        });
        scope
            .pop(&format!("allocating {label} ({size} bytes)"))
            .map_err(|e| self.lost_or(e))?;
        Ok(b)
    }

    /// A buffer initialised with `data` (storage or uniform per `usage`).
    pub(crate) fn buffer_with(
        &self,
        label: &str,
        data: &[u8],
        usage: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer> {
        let b = self.create_buffer(
            label,
            data.len() as u64,
            usage | wgpu::BufferUsages::COPY_DST,
        )?;
        if !data.is_empty() {
            self.write_buffer(&b, 0, data);
        }
        Ok(b)
    }

    /// A storage buffer holding model weights, `data` uploaded: counted as a weight upload.
    pub(crate) fn weights_with(&self, label: &str, data: &[u8]) -> Result<wgpu::Buffer> {
        let b = self.buffer_with(label, data, wgpu::BufferUsages::STORAGE)?;
        self.counters
            .weight_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(b)
    }

    /// Submits one command buffer, catching validation and out-of-memory errors.
    pub(crate) fn submit(&self, encoder: wgpu::CommandEncoder) -> Result<wgpu::SubmissionIndex> {
        let scope = ErrorScope::push(&self.device);
        let index = self.queue.submit([encoder.finish()]);
        scope
            .pop("submitting GPU commands")
            .map_err(|e| self.lost_or(e))?;
        Ok(index)
    }

    /// Waits for `index` and reads the first `size` bytes of the mappable `staging` buffer.
    pub(crate) fn map_read(
        &self,
        staging: &wgpu::Buffer,
        size: u64,
        index: wgpu::SubmissionIndex,
    ) -> Result<Vec<f32>> {
        if cfg!(target_arch = "wasm32") {
            return Err(Error::InvalidArgument(
                "a browser cannot wait for the GPU: use Model::run_async (GpuPlan::run_async)"
                    .into(),
            ));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, 0..size, move |r| {
            let _ = tx.send(r);
        });
        let fail = |m: String| {
            self.lost_or(Error::Gpu {
                context: "reading results back".into(),
                message: m,
            })
        };
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: None,
            })
            .map_err(|e| fail(e.to_string()))?;
        let status = match rx.try_recv() {
            Ok(r) => r,
            Err(_) => {
                // The callback runs inside poll; another thread's poll may have taken it.
                let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
                rx.recv_timeout(std::time::Duration::from_secs(120))
                    .map_err(|_| fail("the buffer map callback never ran".into()))?
            }
        };
        status.map_err(|e| fail(e.to_string()))?;
        self.take_mapped(staging, size, &fail)
    }

    /// The first `size` bytes of a mapped staging buffer as f32s; unmaps it (shared by the
    /// blocking and the awaited read-back).
    pub(crate) fn take_mapped(
        &self,
        staging: &wgpu::Buffer,
        size: u64,
        fail: &dyn Fn(String) -> Error,
    ) -> Result<Vec<f32>> {
        let out = {
            let view = staging
                .get_mapped_range(0..size)
                .map_err(|e| fail(e.to_string()))?;
            bytemuck::pod_collect_to_vec::<u8, f32>(&view)
        };
        staging.unmap();
        self.check()?;
        Ok(out)
    }

    pub(crate) fn lost_or(&self, e: Error) -> Error {
        match self.check() {
            Err(l) => l,
            Ok(()) => e,
        }
    }
}

/// Checks what the kernels need from a device against the limits it was created with: every
/// limit that is too small is named, with the value it has and the value needed.
pub fn check_limits(adapter: &wgpu::AdapterInfo, l: &wgpu::Limits) -> Result<()> {
    let mut missing: Vec<String> = vec![];
    let mut at_least = |what: &str, have: u64, need: u64| {
        if have < need {
            missing.push(format!("{what} = {have} (need {need})"));
        }
    };
    at_least(
        "max_storage_buffers_per_shader_stage",
        l.max_storage_buffers_per_shader_stage.into(),
        MIN_STORAGE_BUFFERS_PER_STAGE.into(),
    );
    at_least(
        "max_uniform_buffers_per_shader_stage",
        l.max_uniform_buffers_per_shader_stage.into(),
        2,
    );
    at_least(
        "max_uniform_buffer_binding_size",
        l.max_uniform_buffer_binding_size,
        PARAMS_BYTES,
    );
    at_least("max_bind_groups", l.max_bind_groups.into(), 1);
    at_least(
        "max_bindings_per_bind_group",
        l.max_bindings_per_bind_group.into(),
        8,
    );
    at_least(
        "max_compute_workgroup_storage_size",
        l.max_compute_workgroup_storage_size.into(),
        WORKGROUP_STORAGE_BYTES.into(),
    );
    at_least(
        "max_compute_invocations_per_workgroup",
        l.max_compute_invocations_per_workgroup.into(),
        MAX_INVOCATIONS.into(),
    );
    at_least(
        "max_compute_workgroup_size_x",
        l.max_compute_workgroup_size_x.into(),
        MAX_INVOCATIONS.into(),
    );
    at_least(
        "max_compute_workgroup_size_y",
        l.max_compute_workgroup_size_y.into(),
        MAX_WORKGROUP_Y.into(),
    );
    at_least(
        "max_compute_workgroups_per_dimension",
        l.max_compute_workgroups_per_dimension.into(),
        1,
    );
    // The smallest buffer the executor makes (16 bytes: a level slot).
    at_least(
        "max_storage_buffer_binding_size",
        l.max_storage_buffer_binding_size,
        16,
    );
    at_least("max_buffer_size", l.max_buffer_size, 16);
    if u64::from(l.min_uniform_buffer_offset_alignment) > UNIFORM_STRIDE {
        missing.push(format!(
            "min_uniform_buffer_offset_alignment = {} (need at most {UNIFORM_STRIDE})",
            l.min_uniform_buffer_offset_alignment
        ));
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::DeviceLimits(format!(
        "the device on '{}' ({:?}) was created with {}; request at least these in wgpu::DeviceDescriptor::required_limits (the adapter's own limits: adapter.limits())",
        adapter.name,
        adapter.backend,
        missing.join(", ")
    )))
}

pub(crate) fn poisoned<T>(_: T) -> Error {
    Error::Gpu {
        context: "internal lock".into(),
        message: "a thread panicked while holding a GPU lock".into(),
    }
}

/// Validation, out-of-memory and internal error scopes pushed together; `pop` turns the first
/// captured error into `Error::Gpu`. Scopes are thread-local in wgpu, so push and pop happen
/// within one call on one thread.
pub(crate) struct ErrorScope {
    guards: Vec<wgpu::ErrorScopeGuard>,
}

impl ErrorScope {
    pub(crate) fn push(device: &wgpu::Device) -> ErrorScope {
        ErrorScope {
            guards: vec![
                device.push_error_scope(wgpu::ErrorFilter::Internal),
                device.push_error_scope(wgpu::ErrorFilter::OutOfMemory),
                device.push_error_scope(wgpu::ErrorFilter::Validation),
            ],
        }
    }

    pub(crate) fn pop(mut self, context: &str) -> Result<()> {
        if cfg!(target_arch = "wasm32") {
            // A browser cannot block on the pop: its result is awaited later (gpu::readback).
            crate::gpu::exec::readback::defer_scopes(std::mem::take(&mut self.guards), context);
            return Ok(());
        }
        let mut first = None;
        while let Some(g) = self.guards.pop() {
            if let Some(e) = pollster::block_on(g.pop()) {
                if first.is_none() {
                    first = Some(e);
                }
            }
        }
        match first {
            None => Ok(()),
            Some(e) => Err(Error::Gpu {
                context: context.to_string(),
                message: format!("{e}"),
            }),
        }
    }
}

impl Drop for ErrorScope {
    /// A scope left by an early return is popped innermost first (wgpu panics otherwise).
    fn drop(&mut self) {
        while let Some(g) = self.guards.pop() {
            drop(g);
        }
    }
}
