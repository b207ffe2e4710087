//! A photo restored live with a strength slider, on the app's own GPU device.
//!
//! ```sh
//! cargo run --release --example viewer --features viewer -- photo.png [--model FILE] [--sigma S]
//! cargo run --release --example viewer --features viewer -- photo.png --screenshot shot.png
//! ```
//!
//! The window (eframe on wgpu) owns the device; `Engine::from_wgpu` puts the engine on that same
//! device and queue. The photo is uploaded once into a texture; each restoration is
//! `Model::encode` from that texture into a storage texture that egui draws directly: no CPU
//! round trip, and a slider move costs a 16-byte level write plus the network's dispatches.
//! The slider is the noise sigma, mapped to the model's level through its calibration; it
//! starts at the photo's blind estimate. "Before" shows the input. While a restoration is in
//! flight on the GPU the newest slider value waits, and is encoded once the GPU is done
//! (`Queue::on_submitted_work_done`), so a drag never queues up stale work. `--screenshot`
//! saves the window once the first restoration is on screen and exits (for headless checks
//! under Xvfb).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eframe::egui;
use tunable::wgpu;
use tunable::{estimate, Engine, Image, Level, Model};

struct Args {
    photo: PathBuf,
    model: Option<PathBuf>,
    sigma: Option<f32>,
    screenshot: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut args = Args {
        photo: PathBuf::new(),
        model: None,
        sigma: None,
        screenshot: None,
    };
    let mut photo = None;
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--model" => args.model = Some(value("--model")?.into()),
            "--sigma" => {
                let v = value("--sigma")?;
                args.sigma = Some(
                    v.parse()
                        .map_err(|_| format!("--sigma {v}: not a number"))?,
                )
            }
            "--screenshot" => args.screenshot = Some(value("--screenshot")?.into()),
            "-h" | "--help" => {
                return Err(
                    "usage: viewer PHOTO [--model FILE] [--sigma S] [--screenshot OUT.png]".into(),
                )
            }
            _ if photo.is_none() && !a.starts_with('-') => photo = Some(PathBuf::from(a)),
            _ => return Err(format!("unexpected argument {a}")),
        }
    }
    args.photo =
        photo.ok_or("usage: viewer PHOTO [--model FILE] [--sigma S] [--screenshot OUT.png]")?;
    Ok(args)
}

/// The shipped default model for the picture's kind (gray pictures get the gray model).
fn default_model(image: &Image) -> PathBuf {
    let name = if image.channels() == 1 {
        "denoise-gray.safetensors"
    } else {
        "denoise-color.safetensors"
    };
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("weights")
        .join(name)
}

/// RGBA8 pixels (alpha kept, gray spread to three channels) of a picture of 1 or 3 channels.
fn rgba8(image: &Image) -> Vec<u8> {
    let bytes = image.to_interleaved_u8();
    let per = image.channels() + usize::from(image.has_alpha());
    bytes
        .chunks_exact(per)
        .flat_map(|px| match (image.channels(), image.has_alpha()) {
            (1, false) => [px[0], px[0], px[0], 255],
            (1, true) => [px[0], px[0], px[0], px[1]],
            (_, false) => [px[0], px[1], px[2], 255],
            (_, true) => [px[0], px[1], px[2], px[3]],
        })
        .collect()
}

/// The restoration on the GPU: the photo's texture, the restored texture egui draws, and
/// whether a restoration is still in flight.
struct Restorer {
    device: wgpu::Device,
    queue: wgpu::Queue,
    model: Model,
    input: wgpu::TextureView,
    output: wgpu::TextureView,
    /// The restored texture as egui draws it.
    shown: egui::TextureId,
    /// The sigma being restored, until the GPU is done with it.
    in_flight: Arc<Mutex<Option<f32>>>,
    /// The last restoration the GPU finished: its sigma and the time from submit to done.
    finished: Arc<Mutex<Option<(f32, Duration)>>>,
}

impl Restorer {
    fn new(
        rs: &eframe::egui_wgpu::RenderState,
        model: Model,
        image: &Image,
    ) -> Result<Restorer, String> {
        let (device, queue) = (rs.device.clone(), rs.queue.clone());
        let (w, h) = (image.width() as u32, image.height() as u32);
        let max = device.limits().max_texture_dimension_2d;
        if w > max || h > max {
            return Err(format!(
                "the photo is {w}x{h}; this device's textures stop at {max}"
            ));
        }
        let texture = |label, usage, view_formats: &[wgpu::TextureFormat]| {
            device.create_texture(&wgpu::TextureDescriptor {
                label: Some(label),
                size: wgpu::Extent3d {
                    width: w,
                    height: h,
                    depth_or_array_layers: 1,
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::Rgba8Unorm,
                usage,
                view_formats,
            })
        };
        let input = texture(
            "photo",
            wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            &[],
        );
        queue.write_texture(
            input.as_image_copy(),
            &rgba8(image),
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(4 * w),
                rows_per_image: Some(h),
            },
            input.size(),
        );
        // Written as Rgba8Unorm (storage), drawn through an sRGB view: the values are
        // sRGB-encoded like the photo's, and egui expects sRGB textures.
        let output = texture(
            "restored",
            wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::TEXTURE_BINDING,
            &[wgpu::TextureFormat::Rgba8UnormSrgb],
        );
        let srgb = output.create_view(&wgpu::TextureViewDescriptor {
            format: Some(wgpu::TextureFormat::Rgba8UnormSrgb),
            usage: Some(wgpu::TextureUsages::TEXTURE_BINDING),
            ..Default::default()
        });
        let shown =
            rs.renderer
                .write()
                .register_native_texture(&device, &srgb, wgpu::FilterMode::Linear);
        Ok(Restorer {
            device,
            queue,
            model,
            input: input.create_view(&Default::default()),
            output: output.create_view(&Default::default()),
            shown,
            in_flight: Arc::new(Mutex::new(None)),
            finished: Arc::new(Mutex::new(None)),
        })
    }

    fn busy(&self) -> bool {
        self.in_flight.lock().map(|g| g.is_some()).unwrap_or(false)
    }

    /// Records the restoration at `sigma` and submits it; `ctx` is repainted when it is done.
    fn restore(&self, sigma: f32, ctx: &egui::Context) -> Result<(), String> {
        let mut encoder = self.device.create_command_encoder(&Default::default());
        self.model
            .encode(
                &mut encoder,
                &self.input,
                &self.output,
                &Level::sigma_clamped(sigma),
            )
            .map_err(|e| e.to_string())?;
        *self.in_flight.lock().map_err(|e| e.to_string())? = Some(sigma);
        let started = Instant::now();
        self.queue.submit([encoder.finish()]);
        let (in_flight, finished, ctx) =
            (self.in_flight.clone(), self.finished.clone(), ctx.clone());
        self.queue.on_submitted_work_done(move || {
            if let Ok(mut f) = finished.lock() {
                *f = Some((sigma, started.elapsed()));
            }
            if let Ok(mut g) = in_flight.lock() {
                *g = None;
            }
            ctx.request_repaint();
        });
        Ok(())
    }
}

struct Viewer {
    adapter: String,
    model_name: String,
    sigma_range: (f32, f32),
    sigma: f32,
    estimate: f32,
    /// The sigma last handed to the GPU.
    sent: Option<f32>,
    before: bool,
    input: egui::TextureHandle,
    restorer: Restorer,
    error: Option<String>,
    screenshot: Option<PathBuf>,
    shot_asked: bool,
}

impl Viewer {
    fn new(cc: &eframe::CreationContext<'_>, args: Args, image: Image) -> Result<Viewer, String> {
        let rs = cc
            .wgpu_render_state
            .as_ref()
            .ok_or("eframe gave no wgpu device")?;
        let engine = Engine::from_wgpu(&rs.adapter, rs.device.clone(), rs.queue.clone())
            .map_err(|e| e.to_string())?;
        let model_path = args.model.clone().unwrap_or_else(|| default_model(&image));
        let model = engine.load(&model_path).map_err(|e| e.to_string())?;
        let axis = model.axes().first().cloned().ok_or_else(|| {
            format!(
                "{} has no level axis: nothing to slide",
                model_path.display()
            )
        })?;
        let sigma_range = axis.calibrated_range().ok_or_else(|| {
            format!(
                "{}: its level axis has no sigma calibration",
                model_path.display()
            )
        })?;
        let estimate = estimate::noise_sigma(&image);
        let sigma = args
            .sigma
            .unwrap_or(estimate)
            .clamp(sigma_range.0, sigma_range.1);
        let before = egui::ColorImage::from_rgba_unmultiplied(
            [image.width(), image.height()],
            &rgba8(&image),
        );
        let input = cc
            .egui_ctx
            .load_texture("input", before, Default::default());
        let restorer = Restorer::new(rs, model, &image)?;
        Ok(Viewer {
            adapter: engine.describe(),
            model_name: model_path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sigma_range,
            sigma,
            estimate,
            sent: None,
            before: false,
            input,
            restorer,
            error: None,
            screenshot: args.screenshot,
            shot_asked: false,
        })
    }

    /// Hands the slider's sigma to the GPU when it moved and the GPU is free.
    fn restore_if_moved(&mut self, ctx: &egui::Context) {
        if self.restorer.busy() {
            ctx.request_repaint(); // keep polling until the GPU is done
            return;
        }
        if self.sent == Some(self.sigma) {
            return;
        }
        self.sent = Some(self.sigma);
        self.error = self.restorer.restore(self.sigma, ctx).err();
    }

    fn finished(&self) -> Option<(f32, Duration)> {
        self.restorer.finished.lock().ok().and_then(|g| *g)
    }

    /// `--screenshot`: once a restoration is on screen, save the window and close.
    fn maybe_screenshot(&mut self, ctx: &egui::Context) {
        let Some(path) = self.screenshot.clone() else {
            return;
        };
        if self.finished().is_none() || self.shot_asked {
            return;
        }
        self.shot_asked = true;
        let ctx2 = ctx.clone();
        ctx.request_screenshot(move |shot| {
            let [w, h] = shot.size;
            let rgba: Vec<u8> = shot.pixels.iter().flat_map(|c| c.to_array()).collect();
            match image::RgbaImage::from_raw(w as u32, h as u32, rgba).map(|i| i.save(&path)) {
                Some(Ok(())) => eprintln!("viewer: saved {}", path.display()),
                Some(Err(e)) => eprintln!("viewer: {}: {e}", path.display()),
                None => eprintln!("viewer: the screenshot had the wrong size"),
            }
            ctx2.send_viewport_cmd(egui::ViewportCommand::Close);
        });
    }
}

impl eframe::App for Viewer {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        self.restore_if_moved(&ctx);
        egui::Panel::top("controls").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.label("noise sigma");
                let (lo, hi) = self.sigma_range;
                ui.add(egui::Slider::new(&mut self.sigma, lo..=hi));
                if ui
                    .button(format!("blind estimate ({:.1})", self.estimate))
                    .clicked()
                {
                    self.sigma = self.estimate.clamp(lo, hi);
                }
                ui.checkbox(&mut self.before, "before");
            });
            let status = match (&self.error, self.finished()) {
                (Some(e), _) => format!("error: {e}"),
                (None, Some((s, took))) => format!(
                    "{}: restored at sigma {s:.1} in {:.0} ms (submit to done, Model::encode) on {}",
                    self.model_name,
                    took.as_secs_f64() * 1e3,
                    self.adapter
                ),
                (None, None) => format!("{}: restoring on {}...", self.model_name, self.adapter),
            };
            ui.label(status);
        });
        egui::CentralPanel::default().show(ui, |ui| {
            let size = self.input.size_vec2();
            let image = match (self.finished(), self.before) {
                (Some(_), false) => egui::Image::new((self.restorer.shown, size)),
                _ => egui::Image::new(&self.input),
            };
            ui.add(image.shrink_to_fit());
        });
        self.maybe_screenshot(&ctx);
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("viewer: {e}");
            std::process::exit(2);
        }
    };
    let image = match Image::open(&args.photo) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("viewer: {e}");
            std::process::exit(1);
        }
    };
    let size = [
        (image.width() as f32).clamp(480.0, 1400.0),
        (image.height() as f32 + 70.0).clamp(320.0, 1000.0),
    ];
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_inner_size(size)
            .with_title("tunable viewer"),
        renderer: eframe::Renderer::Wgpu,
        ..Default::default()
    };
    let result = eframe::run_native(
        "tunable viewer",
        options,
        Box::new(move |cc| {
            Viewer::new(cc, args, image)
                .map(|v| Box::new(v) as Box<dyn eframe::App>)
                .map_err(|e| e.into())
        }),
    );
    if let Err(e) = result {
        eprintln!("viewer: {e}");
        std::process::exit(1);
    }
}
