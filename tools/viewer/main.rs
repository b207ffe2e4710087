//! A photo restored live with a strength slider, on the app's own GPU device.
//!
//! ```sh
//! cargo run --release --example viewer --features viewer -- photo.png [--model FILE] [--sigma S]
//! cargo run --release --example viewer --features viewer -- photo.png --screenshot shot.png
//! ```
//!
//! The window (eframe on wgpu) owns the device; `Engine::from_wgpu` puts the engine on that same
//! device and queue. The slider is the noise sigma, mapped to the model's level through its
//! calibration; it starts at the photo's blind estimate. "Before" shows the input. Restoring runs
//! on a worker thread so the window stays live: while a run is in flight only the newest slider
//! value is kept, and the run after it uses that one. `--screenshot` saves the window once the
//! first restoration is on screen and exits (for headless checks under Xvfb).
//!
//! Today each restoration goes through `Model::run` (upload, run, read back, then a texture
//! upload for display): `Model::encode` into a texture is not written yet, and this viewer
//! switches to it when it is.

use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eframe::egui;
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

/// Pixels egui can show (RGBA, alpha kept), from a picture of 1 or 3 channels.
fn color_image(image: &Image) -> egui::ColorImage {
    let (w, h) = (image.width(), image.height());
    let bytes = image.to_interleaved_u8();
    let per = image.channels() + usize::from(image.has_alpha());
    let rgba: Vec<u8> = bytes
        .chunks_exact(per)
        .flat_map(|px| match (image.channels(), image.has_alpha()) {
            (1, false) => [px[0], px[0], px[0], 255],
            (1, true) => [px[0], px[0], px[0], px[1]],
            (_, false) => [px[0], px[1], px[2], 255],
            (_, true) => [px[0], px[1], px[2], px[3]],
        })
        .collect();
    egui::ColorImage::from_rgba_unmultiplied([w, h], &rgba)
}

/// What the worker sends back: the sigma it restored at, the pixels, how long it took.
type Restored = Result<(f32, egui::ColorImage, Duration), String>;

/// Restores on its own thread: takes the newest requested sigma, runs, sends the result.
fn spawn_worker(
    model: Arc<Model>,
    image: Arc<Image>,
    ctx: egui::Context,
) -> (Sender<f32>, Receiver<Restored>) {
    let (want_tx, want_rx) = channel::<f32>();
    let (done_tx, done_rx) = channel::<Restored>();
    std::thread::spawn(move || {
        while let Ok(mut sigma) = want_rx.recv() {
            // Coalesce: a slider drag sends many values; only the newest matters.
            while let Ok(newer) = want_rx.try_recv() {
                sigma = newer;
            }
            let t = Instant::now();
            let out = model
                .run(&image, Level::sigma_clamped(sigma))
                .map(|img| (sigma, color_image(&img), t.elapsed()))
                .map_err(|e| e.to_string());
            if done_tx.send(out).is_err() {
                return;
            }
            ctx.request_repaint();
        }
    });
    (want_tx, done_rx)
}

struct Viewer {
    adapter: String,
    model_name: String,
    sigma_range: (f32, f32),
    sigma: f32,
    estimate: f32,
    sent: f32,
    before: bool,
    input: egui::TextureHandle,
    restored: Option<(f32, egui::TextureHandle, Duration)>,
    error: Option<String>,
    want: Sender<f32>,
    done: Receiver<Restored>,
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
        let input = cc
            .egui_ctx
            .load_texture("input", color_image(&image), Default::default());
        let (want, done) = spawn_worker(Arc::new(model), Arc::new(image), cc.egui_ctx.clone());
        want.send(sigma).map_err(|e| e.to_string())?;
        Ok(Viewer {
            adapter: engine.describe(),
            model_name: model_path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sigma_range,
            sigma,
            estimate,
            sent: sigma,
            before: false,
            input,
            restored: None,
            error: None,
            want,
            done,
            screenshot: args.screenshot,
            shot_asked: false,
        })
    }

    fn take_results(&mut self, ctx: &egui::Context) {
        while let Ok(r) = self.done.try_recv() {
            match r {
                Ok((sigma, pixels, took)) => {
                    let tex = ctx.load_texture("restored", pixels, Default::default());
                    self.restored = Some((sigma, tex, took));
                    self.error = None;
                }
                Err(e) => self.error = Some(e),
            }
        }
    }

    /// `--screenshot`: once a restoration is on screen, save the window and close.
    fn maybe_screenshot(&mut self, ctx: &egui::Context) {
        let Some(path) = self.screenshot.clone() else {
            return;
        };
        if self.restored.is_none() || self.shot_asked {
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
        self.take_results(&ctx);
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
            let status = match (&self.error, &self.restored) {
                (Some(e), _) => format!("error: {e}"),
                (None, Some((s, _, took))) => format!(
                    "{}: restored at sigma {s:.1} in {:.0} ms on {}",
                    self.model_name,
                    took.as_secs_f64() * 1e3,
                    self.adapter
                ),
                (None, None) => format!("{}: restoring on {}...", self.model_name, self.adapter),
            };
            ui.label(status);
        });
        if self.sigma != self.sent {
            self.sent = self.sigma;
            // The worker ends only with the window: a send cannot fail before then.
            let _ = self.want.send(self.sigma);
        }
        egui::CentralPanel::default().show(ui, |ui| {
            let tex = match (&self.restored, self.before) {
                (Some((_, t, _)), false) => t,
                _ => &self.input,
            };
            ui.add(egui::Image::new(tex).shrink_to_fit());
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
