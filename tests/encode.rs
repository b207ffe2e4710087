//! `Model::encode` on the application's own device: the test creates its wgpu device as an app
//! would, hands it to `Engine::from_wgpu`, uploads a picture into a texture, records the
//! restoration into its own encoder, submits, reads the output texture back and compares it
//! with `Model::run` on the CPU reference, within the output format's rounding. Also: several
//! encodes at different levels in one submission each keep their level; after the first
//! encode a level change writes 16 bytes and creates nothing; large textures are tiled; bad
//! textures and CPU models are clear errors.
//!
//! GPU: skipped (with a message) when there is no adapter, unless `TUNABLE_REQUIRE_GPU=1`.

mod harness;

use harness::app::{app_adapter, app_device};
use harness::images::textured;
use harness::models::ModelBuilder;
use harness::serial;
use tunable::wgpu;
use tunable::{Engine, Error, Image, Level, Lowering, Model};

/// The textures of one test: the app's device and queue, and the engine on them.
struct App {
    device: wgpu::Device,
    queue: wgpu::Queue,
    engine: Engine,
}

fn app(limits: wgpu::Limits) -> Option<App> {
    let adapter = app_adapter()?;
    let (device, queue) = app_device(&adapter, limits);
    let engine = Engine::from_wgpu(&adapter, device.clone(), queue.clone()).unwrap();
    Some(App {
        device,
        queue,
        engine,
    })
}

/// Bytes per texel and the encoding of one channel value.
fn texel_bytes(format: wgpu::TextureFormat) -> usize {
    match format {
        wgpu::TextureFormat::Rgba8Unorm => 4,
        wgpu::TextureFormat::Rgba16Float => 8,
        wgpu::TextureFormat::Rgba32Float => 16,
        f => panic!("no test encoding for {f:?}"),
    }
}

/// RGBA values (0..1) as the texture stores them, and back.
fn encode_values(format: wgpu::TextureFormat, v: &[f32]) -> Vec<u8> {
    match format {
        wgpu::TextureFormat::Rgba8Unorm => v.iter().map(|x| (x * 255.0).round() as u8).collect(),
        wgpu::TextureFormat::Rgba16Float => v
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect(),
        _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

fn decode_values(format: wgpu::TextureFormat, b: &[u8]) -> Vec<f32> {
    match format {
        wgpu::TextureFormat::Rgba8Unorm => b.iter().map(|&x| x as f32 / 255.0).collect(),
        wgpu::TextureFormat::Rgba16Float => b
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    }
}

impl App {
    fn texture(
        &self,
        w: u32,
        h: u32,
        format: wgpu::TextureFormat,
        usage: wgpu::TextureUsages,
    ) -> wgpu::Texture {
        self.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("test texture"),
            size: wgpu::Extent3d {
                width: w,
                height: h,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format,
            usage: usage | wgpu::TextureUsages::COPY_DST | wgpu::TextureUsages::COPY_SRC,
            view_formats: &[],
        })
    }

    /// An input texture holding `rgba` (row-major RGBA, 0..1).
    fn input(&self, w: u32, h: u32, format: wgpu::TextureFormat, rgba: &[f32]) -> wgpu::Texture {
        let t = self.texture(w, h, format, wgpu::TextureUsages::TEXTURE_BINDING);
        let bpp = texel_bytes(format) as u32;
        self.queue.write_texture(
            t.as_image_copy(),
            &encode_values(format, rgba),
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(w * bpp),
                rows_per_image: Some(h),
            },
            t.size(),
        );
        t
    }

    fn output(&self, w: u32, h: u32, format: wgpu::TextureFormat) -> wgpu::Texture {
        self.texture(w, h, format, wgpu::TextureUsages::STORAGE_BINDING)
    }

    /// Copies `t` into a buffer in `encoder` (rows padded to 256 bytes).
    fn copy_out(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        t: &wgpu::Texture,
    ) -> (wgpu::Buffer, u32) {
        let row = (t.width() * texel_bytes(t.format()) as u32).div_ceil(256) * 256;
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read back"),
            size: (row * t.height()) as u64,
            usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
            mapped_at_creation: false,
        });
        encoder.copy_texture_to_buffer(
            t.as_image_copy(),
            wgpu::TexelCopyBufferInfo {
                buffer: &buf,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(row),
                    rows_per_image: Some(t.height()),
                },
            },
            t.size(),
        );
        (buf, row)
    }

    /// The RGBA values (0..1) of a copied-out texture, after the submission that copied it.
    fn read(&self, t: &wgpu::Texture, (buf, row): (wgpu::Buffer, u32)) -> Vec<f32> {
        buf.slice(..).map_async(wgpu::MapMode::Read, |r| r.unwrap());
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .unwrap();
        let data = buf.slice(..).get_mapped_range().unwrap();
        let used = t.width() as usize * texel_bytes(t.format());
        let mut out = vec![];
        for y in 0..t.height() as usize {
            out.extend(decode_values(t.format(), &data[y * row as usize..][..used]));
        }
        out
    }
}

/// A picture as RGBA 0..1 (alpha a ramp), quantised to what `format` holds, and the same
/// picture as the `Image` the CPU run gets (the quantised values; gray: the red channel,
/// with green and blue equal to it).
fn picture(
    w: usize,
    h: usize,
    channels: usize,
    format: wgpu::TextureFormat,
    seed: u64,
) -> (Vec<f32>, Image) {
    let img = textured(w, h, channels, seed);
    let n = w * h;
    let mut rgba = vec![0.0f32; 4 * n];
    for i in 0..n {
        for c in 0..3 {
            rgba[4 * i + c] = img.planes()[(c % channels) * n + i] / 255.0;
        }
        rgba[4 * i + 3] = (i % 251) as f32 / 250.0;
    }
    let held = decode_values(format, &encode_values(format, &rgba));
    let planes = (0..channels)
        .flat_map(|c| (0..n).map(move |i| (c, i)))
        .map(|(c, i)| held[4 * i + c] * 255.0)
        .collect();
    (held, Image::from_planes(w, h, channels, planes).unwrap())
}

/// How far a texel may be from the CPU value (0..1 scale) in each output format: the format's
/// rounding, plus the GPU's f32 against the reference (4e-5).
fn tolerance(format: wgpu::TextureFormat, v: f32) -> f32 {
    match format {
        wgpu::TextureFormat::Rgba8Unorm => 0.5 / 255.0 + 1e-4,
        wgpu::TextureFormat::Rgba16Float => v.abs() / 1024.0 + 1e-4,
        _ => 1e-4,
    }
}

/// Checks a read-back output against the CPU result and the input's alpha.
fn check(format: wgpu::TextureFormat, got: &[f32], want: &Image, alpha: &[f32], what: &str) {
    let (n, c) = (want.width() * want.height(), want.channels());
    let mut worst = 0.0f32;
    for i in 0..n {
        for ch in 0..3 {
            let mut v = want.planes()[(ch % c) * n + i] / 255.0;
            if format == wgpu::TextureFormat::Rgba8Unorm {
                v = v.clamp(0.0, 1.0);
            }
            let d = (got[4 * i + ch] - v).abs();
            assert!(
                d <= tolerance(format, v),
                "{what}: pixel {i} channel {ch}: {} vs {v}",
                got[4 * i + ch]
            );
            worst = worst.max(d);
        }
        let a = alpha[4 * i + 3];
        assert!(
            (got[4 * i + 3] - a).abs() <= tolerance(format, a),
            "{what}: alpha of pixel {i}"
        );
    }
    println!("[{what}] max |texture - reference| = {worst:e}");
}

fn load(engine: &Engine, bytes: &[u8]) -> Model {
    engine.load_bytes(bytes, Lowering::Fused).unwrap()
}

const FORMATS: [wgpu::TextureFormat; 3] = [
    wgpu::TextureFormat::Rgba8Unorm,
    wgpu::TextureFormat::Rgba16Float,
    wgpu::TextureFormat::Rgba32Float,
];

#[test]
fn every_format_and_both_channel_counts_match_the_cpu_reference() {
    let _g = serial();
    let Some(app) = app(wgpu::Limits::default()) else {
        return;
    };
    // (model channels, input format, output format): every format in and out, gray and RGB.
    let mut cases = vec![];
    for (i, &f) in FORMATS.iter().enumerate() {
        cases.push((3, f, f));
        cases.push((1, f, FORMATS[(i + 1) % 3]));
    }
    cases.push((
        3,
        wgpu::TextureFormat::Rgba8Unorm,
        wgpu::TextureFormat::Rgba32Float,
    ));
    let (w, h) = (37, 29); // odd: the mirror padding and the unshuffle's multiple of 2
    for (channels, fin, fout) in cases {
        let bytes = ModelBuilder::unshuffle_resnet(channels, 8, 2).bytes();
        let level = Level::alpha(0.35);
        let (rgba, img) = picture(w, h, channels, fin, 11);
        let want = load(&Engine::reference(), &bytes)
            .run(&img, level.clone())
            .unwrap();
        let model = load(&app.engine, &bytes);
        let input = app.input(w as u32, h as u32, fin, &rgba);
        let output = app.output(w as u32, h as u32, fout);
        let mut enc = app.device.create_command_encoder(&Default::default());
        model
            .encode(
                &mut enc,
                &input.create_view(&Default::default()),
                &output.create_view(&Default::default()),
                &level,
            )
            .unwrap();
        let copied = app.copy_out(&mut enc, &output);
        app.queue.submit([enc.finish()]);
        let got = app.read(&output, copied);
        check(
            fout,
            &got,
            &want,
            &rgba,
            &format!("{channels} ch, {fin:?} -> {fout:?}"),
        );
    }
}

#[test]
fn encodes_at_different_levels_in_one_submission_keep_their_levels() {
    let _g = serial();
    let Some(app) = app(wgpu::Limits::default()) else {
        return;
    };
    let bytes = ModelBuilder::dni_stack(3, 8).bytes();
    let f = wgpu::TextureFormat::Rgba32Float;
    let (w, h) = (24, 19);
    let (rgba, img) = picture(w, h, 3, f, 4);
    let reference = load(&Engine::reference(), &bytes);
    let model = load(&app.engine, &bytes);
    let input = app.input(w as u32, h as u32, f, &rgba);
    let view = input.create_view(&Default::default());
    let outputs: Vec<wgpu::Texture> = (0..2).map(|_| app.output(w as u32, h as u32, f)).collect();
    let levels = [0.0, 0.5, 1.0];

    // Two encodes into the same output (same views, same bind groups), the first copied out
    // before the second overwrites it, and a third into another output; one submission.
    let mut enc = app.device.create_command_encoder(&Default::default());
    let out0 = outputs[0].create_view(&Default::default());
    model
        .encode(&mut enc, &view, &out0, &Level::alpha(levels[0]))
        .unwrap();
    let first = app.copy_out(&mut enc, &outputs[0]);
    model
        .encode(&mut enc, &view, &out0, &Level::alpha(levels[1]))
        .unwrap();
    let second = app.copy_out(&mut enc, &outputs[0]);
    let out1 = outputs[1].create_view(&Default::default());
    model
        .encode(&mut enc, &view, &out1, &Level::alpha(levels[2]))
        .unwrap();
    let third = app.copy_out(&mut enc, &outputs[1]);
    app.queue.submit([enc.finish()]);

    let got = [
        app.read(&outputs[0], first),
        app.read(&outputs[0], second),
        app.read(&outputs[1], third),
    ];
    for (g, &a) in got.iter().zip(&levels) {
        let want = reference.run(&img, Level::alpha(a)).unwrap();
        check(
            f,
            g,
            &want,
            &rgba,
            &format!("alpha {a} in a shared submission"),
        );
    }
    // The levels really differ in their output (else the test proves nothing).
    let d = got[0]
        .iter()
        .zip(&got[2])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(d > 0.01, "levels 0 and 1 give the same picture ({d})");
}

#[test]
fn a_level_change_writes_only_the_level_and_creates_nothing() {
    let _g = serial();
    let Some(app) = app(wgpu::Limits::default()) else {
        return;
    };
    let model = load(
        &app.engine,
        &ModelBuilder::unshuffle_resnet(3, 8, 2).bytes(),
    );
    let f = wgpu::TextureFormat::Rgba8Unorm;
    let (rgba, _) = picture(32, 32, 3, f, 2);
    let input = app.input(32, 32, f, &rgba);
    let output = app.output(32, 32, f);
    let (iv, ov) = (
        input.create_view(&Default::default()),
        output.create_view(&Default::default()),
    );
    let ctx = app.engine.gpu_context().unwrap();
    let frame = |alpha: f32| {
        let mut enc = app.device.create_command_encoder(&Default::default());
        model
            .encode(&mut enc, &iv, &ov, &Level::alpha(alpha))
            .unwrap();
        app.queue.submit([enc.finish()]);
    };
    frame(0.2);
    for alpha in [0.3, 0.9, 0.0] {
        let before = ctx.counters();
        frame(alpha);
        let cost = ctx.counters().since(&before);
        println!("[level change] {cost:?}");
        assert_eq!(cost.pipelines_compiled, 0, "{cost:?}");
        assert_eq!(cost.buffers_created, 0, "{cost:?}");
        assert_eq!(cost.bind_groups_created, 0, "{cost:?}");
        assert_eq!(cost.weight_bytes_written, 0, "{cost:?}");
        assert_eq!(cost.bytes_written, 16, "{cost:?}");
    }
}

#[test]
fn large_textures_are_tiled_on_a_device_with_small_bindings() {
    let _g = serial();
    // 256 KiB storage bindings: a 8-feature tensor of 96x80 (245 KiB at full resolution)
    // barely fits, so the engine cuts the picture into tiles with the receptive halo.
    let limits = wgpu::Limits {
        max_storage_buffer_binding_size: 256 << 10,
        ..wgpu::Limits::downlevel_defaults()
    };
    let Some(app) = app(limits) else { return };
    let bytes = ModelBuilder::unshuffle_resnet(3, 8, 2).bytes();
    let f = wgpu::TextureFormat::Rgba32Float;
    let (w, h) = (203, 141);
    let (rgba, img) = picture(w, h, 3, f, 9);
    let level = Level::alpha(0.6);
    let want = load(&Engine::reference(), &bytes)
        .run(&img, level.clone())
        .unwrap();
    let model = load(&app.engine, &bytes);
    let tiles = std::sync::atomic::AtomicUsize::new(0);
    model
        .run_with_progress(&img, level.clone(), &|_, n| {
            tiles.store(n, std::sync::atomic::Ordering::Relaxed);
        })
        .unwrap();
    let tiles = tiles.into_inner();
    assert!(tiles >= 4, "the picture should need tiles here ({tiles})");
    let input = app.input(w as u32, h as u32, f, &rgba);
    let output = app.output(w as u32, h as u32, f);
    let mut enc = app.device.create_command_encoder(&Default::default());
    model
        .encode(
            &mut enc,
            &input.create_view(&Default::default()),
            &output.create_view(&Default::default()),
            &level,
        )
        .unwrap();
    let copied = app.copy_out(&mut enc, &output);
    app.queue.submit([enc.finish()]);
    check(
        f,
        &app.read(&output, copied),
        &want,
        &rgba,
        &format!("{w}x{h} in {tiles} tiles"),
    );
}

#[test]
fn bad_textures_and_cpu_models_are_clear_errors() {
    let _g = serial();
    let Some(app) = app(wgpu::Limits::default()) else {
        return;
    };
    let bytes = ModelBuilder::dni_stack(3, 8).bytes();
    let model = load(&app.engine, &bytes);
    let f = wgpu::TextureFormat::Rgba8Unorm;
    let good_in = app.input(16, 16, f, &vec![0.5; 16 * 16 * 4]);
    let good_out = app.output(16, 16, f);
    let smaller = app.output(16, 8, f);
    let no_storage = app.texture(16, 16, f, wgpu::TextureUsages::TEXTURE_BINDING);
    let bgra = app.texture(
        16,
        16,
        wgpu::TextureFormat::Bgra8Unorm,
        wgpu::TextureUsages::TEXTURE_BINDING,
    );
    let view = |t: &wgpu::Texture| t.create_view(&Default::default());
    let cpu_model = load(&Engine::reference(), &bytes);
    let cases: Vec<(&Model, &wgpu::Texture, &wgpu::Texture, Level, &str)> = vec![
        (&model, &good_in, &smaller, Level::alpha(0.5), "is 16x8"),
        (
            &model,
            &good_in,
            &no_storage,
            Level::alpha(0.5),
            "STORAGE_BINDING",
        ),
        (&model, &bgra, &good_out, Level::alpha(0.5), "Bgra8Unorm"),
        (&model, &good_in, &good_out, Level::alpha(7.0), "outside"),
        (
            &cpu_model,
            &good_in,
            &good_out,
            Level::alpha(0.5),
            "GPU engine",
        ),
    ];
    for (m, i, o, level, needle) in cases {
        let mut enc = app.device.create_command_encoder(&Default::default());
        let e = m.encode(&mut enc, &view(i), &view(o), &level).unwrap_err();
        println!("[bad encode] {e}");
        assert!(e.to_string().contains(needle), "{needle:?} not in: {e}");
        assert!(!matches!(e, Error::Gpu { .. }), "caught before wgpu: {e}");
    }
    // The model still encodes after the errors.
    let mut enc = app.device.create_command_encoder(&Default::default());
    model
        .encode(
            &mut enc,
            &view(&good_in),
            &view(&good_out),
            &Level::alpha(0.5),
        )
        .unwrap();
    app.queue.submit([enc.finish()]);

    // A lost device is an error naming it, not a panic, before anything is recorded.
    app.engine.gpu_context().unwrap().simulate_device_loss();
    let mut enc = app.device.create_command_encoder(&Default::default());
    let e = model
        .encode(
            &mut enc,
            &view(&good_in),
            &view(&good_out),
            &Level::alpha(0.5),
        )
        .unwrap_err();
    println!("[bad encode] after device loss: {e}");
    assert!(matches!(e, Error::DeviceLost(_)), "{e:?}");
}
