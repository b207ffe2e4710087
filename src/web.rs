//! The browser build: wasm-bindgen bindings for the page in `tools/web/` (feature `web`,
//! compiled only for wasm32; `bash tools/web/build.sh` builds it).
//!
//! A [`Restorer`] holds one model on WebGPU (wgpu's `webgpu` backend on the browser's own
//! adapter, the same WGSL kernels as natively) or, when the browser offers no WebGPU adapter,
//! on the fast CPU executor (one thread, no SIMD beyond wasm's: slow, and it blocks the page
//! while it runs). Nothing blocks on the GPU: every run is awaited ([`crate::Model::run_async`])
//! and every method that waits returns a `Promise`. Moving the level writes 16 bytes and
//! re-dispatches: no pipeline, no buffer, no weight upload ([`Restorer::stats`] counts them).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

use crate::gpu::{settle_error_scopes, GpuContext};
use crate::{estimate, Engine, Image, Level, Lowering, Model};

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(s: &str);
}

/// Panics reach the browser's console with their message (not only "unreachable").
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| console_error(&format!("tunable: {info}"))));
}

fn js_err(e: impl std::fmt::Display) -> JsValue {
    JsError::new(&e.to_string()).into()
}

/// The picture being restored: its color planes and the alpha the output gets back.
struct Picture {
    image: Image,
    alpha: Vec<u8>,
}

struct Inner {
    model: Model,
    /// "webgpu" or "cpu".
    backend: &'static str,
    adapter: String,
    /// Why the CPU runs (no WebGPU, or it failed), `None` on WebGPU.
    fallback: Option<String>,
    gpu: Option<Arc<GpuContext>>,
    picture: RefCell<Option<Rc<Picture>>>,
    /// Runs of the model at a level (each writes the 16-byte level once per tile).
    runs: Cell<u64>,
    /// Errors no error scope caught (the device's uncaptured-error handler).
    uncaptured: Arc<Mutex<Option<String>>>,
}

/// One model, on WebGPU or the CPU, and the picture it restores.
#[wasm_bindgen]
pub struct Restorer {
    inner: Rc<Inner>,
}

type Gpu = (wgpu::Adapter, wgpu::Device, wgpu::Queue);

/// The browser's WebGPU adapter and a device with its limits, or why there is none.
async fn webgpu() -> std::result::Result<Gpu, String> {
    if !wgpu::util::is_browser_webgpu_supported().await {
        return Err(
            "this browser offers no WebGPU (navigator.gpu is missing or gives no adapter)".into(),
        );
    }
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::BROWSER_WEBGPU;
    let instance = wgpu::Instance::new(desc);
    let adapter = instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("no WebGPU adapter: {e}"))?;
    let (device, queue) = adapter
        .request_device(&wgpu::DeviceDescriptor {
            label: Some("tunable"),
            required_features: wgpu::Features::empty(),
            // The adapter's own limits: bigger storage bindings mean bigger tiles.
            required_limits: adapter.limits(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        })
        .await
        .map_err(|e| format!("the WebGPU adapter gave no device: {e}"))?;
    Ok((adapter, device, queue))
}

/// The model on WebGPU: the device's uncaptured errors go to `uncaptured`, and the load's
/// error scopes are awaited before the model counts as loaded.
async fn on_webgpu(
    model: &[u8],
    uncaptured: &Arc<Mutex<Option<String>>>,
) -> std::result::Result<(Model, Engine, String), String> {
    let (adapter, device, queue) = webgpu().await?;
    let slot = uncaptured.clone();
    device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
        if let Ok(mut g) = slot.lock() {
            g.get_or_insert_with(|| e.to_string());
        }
    }));
    let info = adapter.get_info();
    let engine = Engine::from_wgpu(&adapter, device, queue).map_err(|e| e.to_string())?;
    let loaded = engine.load_bytes(model, Lowering::Fused);
    settle_error_scopes()
        .await
        .map_err(|e| format!("loading the model on WebGPU: {e}"))?;
    let model = loaded.map_err(|e| format!("loading the model on WebGPU: {e}"))?;
    let name = if info.name.is_empty() {
        "WebGPU adapter".to_string()
    } else {
        info.name
    };
    Ok((model, engine, name))
}

/// Inverse of the calibration table (`[unit, axis]` pairs): the unit value where the
/// piecewise-linear table reaches `axis`, `None` outside the table's axis values.
fn uncalibrate(table: &[[f32; 2]], axis: f32) -> Option<f32> {
    table.windows(2).find_map(|p| {
        let ([s0, a0], [s1, a1]) = (p[0], p[1]);
        let (lo, hi) = (a0.min(a1), a0.max(a1));
        if axis < lo || axis > hi {
            return None;
        }
        Some(if a1 == a0 {
            s0
        } else {
            s0 + (axis - a0) / (a1 - a0) * (s1 - s0)
        })
    })
}

fn set(o: &Object, key: &str, v: impl Into<JsValue>) {
    let _ = Reflect::set(o, &JsValue::from_str(key), &v.into());
}

#[wasm_bindgen]
impl Restorer {
    /// A restorer for a model file (the bytes of a `.safetensors`): on WebGPU when the browser
    /// offers an adapter and `cpu` is false, else on the CPU (`fallback` says why).
    pub async fn create(model: Vec<u8>, cpu: bool) -> Result<Restorer, JsValue> {
        let uncaptured = Arc::new(Mutex::new(None));
        let gpu = if cpu {
            Err("the CPU was asked for".to_string())
        } else {
            on_webgpu(&model, &uncaptured).await
        };
        let inner = match gpu {
            Ok((model, engine, adapter)) => Inner {
                model,
                backend: "webgpu",
                adapter,
                fallback: None,
                gpu: engine.gpu_context().cloned(),
                picture: RefCell::new(None),
                runs: Cell::new(0),
                uncaptured,
            },
            Err(why) => {
                let model = Engine::cpu()
                    .load_bytes(&model, Lowering::Fused)
                    .map_err(js_err)?;
                Inner {
                    model,
                    backend: "cpu",
                    adapter: "CPU (fast CPU executor, one thread, wasm)".into(),
                    fallback: Some(why),
                    gpu: None,
                    picture: RefCell::new(None),
                    runs: Cell::new(0),
                    uncaptured,
                }
            }
        };
        Ok(Restorer {
            inner: Rc::new(inner),
        })
    }

    /// "webgpu" or "cpu".
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.inner.backend.into()
    }

    /// The adapter's name as the browser gives it (often empty: then "WebGPU adapter"), or
    /// the CPU executor.
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.inner.adapter.clone()
    }

    /// Why the CPU runs instead of WebGPU; `undefined` on WebGPU.
    #[wasm_bindgen(getter)]
    pub fn fallback(&self) -> Option<String> {
        self.inner.fallback.clone()
    }

    /// The model's name (from its file).
    #[wasm_bindgen(getter, js_name = modelName)]
    pub fn model_name(&self) -> String {
        self.inner.model.spec().name.clone()
    }

    /// The first level axis: `{ name, min, max, lo, hi, unit, calibration }`, where `[lo, hi]`
    /// is the range a level may take (beyond `[min, max]` for extrapolating families) and
    /// `calibration` the `[unit value, axis value]` pairs.
    pub fn axis(&self) -> JsValue {
        let o = Object::new();
        let Some(a) = self.inner.model.axes().first() else {
            return JsValue::NULL;
        };
        let (lo, hi) = a.allowed_range();
        set(&o, "name", a.name.as_str());
        set(&o, "min", a.min);
        set(&o, "max", a.max);
        set(&o, "lo", lo);
        set(&o, "hi", hi);
        set(&o, "unit", a.unit.clone().unwrap_or_default());
        let table = Array::new();
        for [u, v] in a.calibration.iter().flatten() {
            table.push(&Array::of2(&(*u).into(), &(*v).into()));
        }
        set(&o, "calibration", table);
        o.into()
    }

    /// The axis value for a value in the calibration's unit (sigma), clamped to the table.
    #[wasm_bindgen(js_name = alphaForSigma)]
    pub fn alpha_for_sigma(&self, sigma: f32) -> Result<f32, JsValue> {
        let axis = self.inner.model.axes().first().ok_or("no level axis")?;
        axis.calibrate(sigma).map_err(js_err)
    }

    /// The calibration's unit value (sigma) at an axis value; `undefined` outside the table.
    #[wasm_bindgen(js_name = sigmaForAlpha)]
    pub fn sigma_for_alpha(&self, alpha: f32) -> Option<f32> {
        let axis = self.inner.model.axes().first()?;
        uncalibrate(axis.calibration.as_deref()?, alpha)
    }

    /// Sets the picture: `rgba` holds `width * height` RGBA8 pixels (a canvas's
    /// `getImageData`). Alpha is carried to the output untouched.
    #[wasm_bindgen(js_name = setImage)]
    pub fn set_image(&self, rgba: &[u8], width: usize, height: usize) -> Result<(), JsValue> {
        let n = width
            .checked_mul(height)
            .filter(|n| n.checked_mul(4) == Some(rgba.len()))
            .ok_or_else(|| {
                js_err(format!(
                    "{} bytes are not {width}x{height} RGBA pixels",
                    rgba.len()
                ))
            })?;
        let mut rgb = Vec::with_capacity(n * 3);
        let mut alpha = Vec::with_capacity(n);
        for px in rgba.chunks_exact(4) {
            rgb.extend_from_slice(&px[..3]);
            alpha.push(px[3]);
        }
        let image = Image::from_interleaved_u8(width, height, 3, &rgb).map_err(js_err)?;
        *self.inner.picture.borrow_mut() = Some(Rc::new(Picture { image, alpha }));
        Ok(())
    }

    /// The blind noise estimate of the picture (sigma on the 0..255 scale).
    #[wasm_bindgen(js_name = estimateSigma)]
    pub fn estimate_sigma(&self) -> Result<f32, JsValue> {
        let p = self
            .inner
            .picture
            .borrow()
            .clone()
            .ok_or("no picture set")?;
        Ok(estimate::noise_sigma(&p.image))
    }

    /// Restores the picture at `alpha` (the first axis, as `--level`): a Promise of its RGBA8
    /// pixels (`Uint8Array`, the picture's size). On WebGPU the read-back is awaited
    /// (`mapAsync`); on the CPU the run blocks the page until it is done.
    pub fn run(&self, alpha: f32) -> Promise {
        let inner = self.inner.clone();
        // The picture of the call, not of a later `setImage` (the future starts later).
        let picture = inner.picture.borrow().clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let picture = picture.ok_or("no picture set")?;
            inner.runs.set(inner.runs.get() + 1);
            let out = inner
                .model
                .run_async(&picture.image, Level::Alpha(alpha))
                .await
                .map_err(js_err)?;
            if let Some(m) = inner.uncaptured.lock().ok().and_then(|mut g| g.take()) {
                return Err(js_err(format!("WebGPU error: {m}")));
            }
            let rgb = out.to_interleaved_u8();
            let mut rgba = Vec::with_capacity(picture.alpha.len() * 4);
            for (px, &a) in rgb.chunks_exact(3).zip(&picture.alpha) {
                rgba.extend_from_slice(px);
                rgba.push(a);
            }
            Ok(Uint8Array::from(&rgba[..]).into())
        })
    }

    /// What the engine has done so far: `{ adapter, backend, pipelines, buffers, bindGroups,
    /// weightUploads, levelWrites, bytesWritten, inputBytes, otherBytes }`. `weightUploads` is
    /// the bytes of model weights uploaded (all at load), `levelWrites` the runs at a level,
    /// `otherBytes` what was written besides inputs and weights (uniforms once per picture
    /// size, then 16 bytes of level per run). The counters are 0 on the CPU.
    pub fn stats(&self) -> JsValue {
        let inner = &self.inner;
        let o = Object::new();
        set(&o, "adapter", inner.adapter.as_str());
        set(&o, "backend", inner.backend);
        let c = inner.gpu.as_ref().map(|g| g.counters()).unwrap_or_default();
        set(&o, "pipelines", c.pipelines_compiled as f64);
        set(&o, "buffers", c.buffers_created as f64);
        set(&o, "bindGroups", c.bind_groups_created as f64);
        set(&o, "weightUploads", c.weight_bytes_written as f64);
        set(&o, "levelWrites", inner.runs.get() as f64);
        set(&o, "bytesWritten", c.bytes_written as f64);
        set(&o, "inputBytes", c.input_bytes_written as f64);
        set(
            &o,
            "otherBytes",
            (c.bytes_written - c.input_bytes_written - c.weight_bytes_written) as f64,
        );
        o.into()
    }
}

/// Encodes `width * height` RGBA8 pixels as a PNG file (the page's download).
#[wasm_bindgen(js_name = encodePng)]
pub fn encode_png(rgba: &[u8], width: u32, height: u32) -> Result<Vec<u8>, JsValue> {
    use image::ImageEncoder;
    let mut out = vec![];
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(rgba, width, height, image::ExtendedColorType::Rgba8)
        .map_err(js_err)?;
    Ok(out)
}
