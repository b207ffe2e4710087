//! Bad input gets a clear error and never a panic: one case per row.

mod harness;

use harness::images::gradient;
use harness::models::ModelBuilder;
use tunable::{Engine, Error, Image, Level, Lowering};

fn load(bytes: &[u8]) -> tunable::Result<tunable::Model> {
    Engine::reference().load_bytes(bytes, Lowering::Fused)
}

/// Each case mutates a valid model and names a fragment the error message must contain.
#[test]
fn corrupt_models_are_rejected_with_named_errors() {
    let good = ModelBuilder::dni_stack(3, 8);
    assert!(load(&good.bytes()).is_ok(), "the unmodified model loads");
    let valid = &good.bytes();
    let header_len = u64::from_le_bytes(valid[..8].try_into().unwrap()) as usize;

    type Case<'a> = (&'static str, Box<dyn Fn() -> Vec<u8> + 'a>, &'static str);
    let cases: Vec<Case> = vec![
        (
            "truncated data",
            Box::new(move || valid[..valid.len() - 10].to_vec()),
            "safetensors",
        ),
        (
            "truncated header",
            Box::new(move || valid[..20].to_vec()),
            "safetensors",
        ),
        ("empty file", Box::new(Vec::new), "safetensors"),
        (
            "header length lies",
            Box::new(move || {
                let mut b = valid.to_vec();
                b[..8].copy_from_slice(&(header_len as u64 + 1_000_000).to_le_bytes());
                b
            }),
            "safetensors",
        ),
        (
            "offsets lie",
            Box::new(move || {
                // Rewrite the first data_offsets end to point past the buffer.
                let header = String::from_utf8(valid[8..8 + header_len].to_vec()).unwrap();
                let pos = header.find("\"data_offsets\":[").unwrap() + "\"data_offsets\":[".len();
                let end = header[pos..].find(']').unwrap() + pos;
                let patched = format!("{}0,99999999{}", &header[..pos], &header[end..]);
                let mut b = (patched.len() as u64).to_le_bytes().to_vec();
                b.extend_from_slice(patched.as_bytes());
                b.extend_from_slice(&valid[8 + header_len..]);
                b
            }),
            "safetensors",
        ),
        (
            "wrong dtype",
            Box::new(|| ModelBuilder::dni_stack(3, 8).bytes_with_dtype(Some("c1.w"))),
            "c1.w",
        ),
        (
            "wrong shape",
            Box::new(|| {
                let mut m = ModelBuilder::dni_stack(3, 8);
                m.set("c1.w_end", |s, d| {
                    *s = vec![8, 8, 3, 2];
                    d.truncate(8 * 8 * 6);
                });
                m.bytes()
            }),
            "c1.w_end",
        ),
        (
            "nan weight",
            Box::new(|| {
                let mut m = ModelBuilder::dni_stack(3, 8);
                m.set("c0.b", |_, d| d[2] = f32::NAN);
                m.bytes()
            }),
            "c0.b",
        ),
        (
            "inf weight",
            Box::new(|| {
                let mut m = ModelBuilder::dni_stack(3, 8);
                m.set("c2.w", |_, d| d[0] = f32::INFINITY);
                m.bytes()
            }),
            "c2.w",
        ),
        (
            "unknown version",
            Box::new(|| {
                let mut m = ModelBuilder::dni_stack(3, 8);
                m.spec["format_version"] = 99.into();
                m.bytes()
            }),
            "format version 99",
        ),
        (
            "missing tensor",
            Box::new(|| {
                let mut m = ModelBuilder::dni_stack(3, 8);
                m.remove("c1.b");
                m.bytes()
            }),
            "c1.b",
        ),
        (
            "missing input node",
            Box::new(|| {
                let mut m = ModelBuilder::dni_stack(3, 8);
                m.spec["nodes"][1]["inputs"] = serde_json::json!(["nowhere"]);
                m.bytes()
            }),
            "nowhere",
        ),
        (
            "cycle",
            Box::new(|| {
                let mut m = ModelBuilder::dni_stack(3, 8);
                m.spec["nodes"][0]["inputs"] = serde_json::json!(["c2"]);
                m.spec["nodes"][0]["weight"] = "c0.w".into();
                m.bytes()
            }),
            "cycle",
        ),
        (
            "axis out of range",
            Box::new(|| {
                let mut m = ModelBuilder::dni_stack(3, 8);
                m.spec["nodes"][1]["mod"]["axis"] = 3.into();
                m.bytes()
            }),
            "axis 3",
        ),
        (
            "channel mismatch in graph",
            Box::new(|| {
                let mut m = ModelBuilder::dni_stack(3, 8);
                m.spec["nodes"][2]["inputs"] = serde_json::json!(["input"]);
                m.bytes()
            }),
            "c2.w",
        ),
        (
            "no metadata",
            Box::new(|| {
                let mut m = ModelBuilder::dni_stack(3, 8);
                m.spec = serde_json::Value::Null;
                m.bytes()
            }),
            "spec",
        ),
        (
            "bad stride",
            Box::new(|| {
                let mut m = ModelBuilder::dni_stack(3, 8);
                m.spec["nodes"][0]["stride"] = 3.into();
                m.bytes()
            }),
            "stride 3",
        ),
    ];
    for (what, make, needle) in cases {
        let bytes = make();
        let err = match load(&bytes) {
            Ok(_) => panic!("{what}: loaded a bad model"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(needle),
            "{what}: error '{err}' does not mention '{needle}'"
        );
        println!("{what}: {err}");
    }
}

#[test]
fn bad_levels_and_images_are_rejected() {
    let model = load(&ModelBuilder::dni_stack(3, 8).bytes()).unwrap();
    let img = gradient(9, 7, 3);
    for (level, needle) in [
        (Level::alpha(1.5), "outside"),
        (Level::alpha(-0.1), "outside"),
        (Level::alpha(f32::NAN), "finite"),
        (Level::axes(&[0.5, 0.5]), "2 values"),
    ] {
        let e = model.run(&img, level.clone()).unwrap_err();
        assert!(matches!(e, Error::Level(_)), "{level:?}: {e}");
        assert!(e.to_string().contains(needle), "{level:?}: {e}");
    }
    // Sigma goes through the calibration table: beyond it an error, unless the caller asks to clamp.
    let e = model.run(&img, Level::sigma(500.0)).unwrap_err();
    assert!(e.to_string().contains("calibrated range"), "{e}");
    assert!(model.run(&img, Level::sigma_clamped(500.0)).is_ok());
    assert_eq!(
        model.level_vec(&Level::sigma_clamped(500.0)).unwrap(),
        model
            .level_vec(&Level::sigma(model.axes()[0].calibrated_range().unwrap().1))
            .unwrap(),
        "clamped to the table's end"
    );
    assert!(Image::from_planes(0, 5, 3, vec![]).is_err(), "width 0");
    let gray = gradient(9, 7, 1);
    let e = model.run(&gray, Level::alpha(0.5)).unwrap_err();
    assert!(e.to_string().contains("1 color channel"), "{e}");
}

#[test]
fn sixteen_bit_and_rgba_round_trip_through_a_model() {
    let dir = std::env::temp_dir().join(format!("tunable-img-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (w, h) = (11, 6);
    let rgba16: Vec<u16> = (0..w * h * 4)
        .map(|i| ((i * 2311) % 65536) as u16)
        .collect();
    let buf =
        image::ImageBuffer::<image::Rgba<u16>, _>::from_raw(w as u32, h as u32, rgba16.clone())
            .unwrap();
    let path = dir.join("in16.png");
    buf.save(&path).unwrap();
    let img = Image::open(&path).unwrap();
    assert!(img.is_sixteen_bit() && img.has_alpha() && img.channels() == 3);
    let model = load(&ModelBuilder::dni_stack(3, 8).bytes()).unwrap();
    let out = model.run(&img, Level::alpha(0.3)).unwrap();
    assert_eq!(
        out.alpha(),
        img.alpha(),
        "alpha is carried through untouched"
    );
    let out_path = dir.join("out16.png");
    out.save(&out_path).unwrap();
    let back = image::open(&out_path).unwrap();
    assert_eq!(
        back.color(),
        image::ColorType::Rgba16,
        "16-bit RGBA in, 16-bit RGBA out"
    );
    // The alpha channel survives the file round trip exactly.
    let back = back.into_rgba16();
    for (i, px) in back.pixels().enumerate() {
        assert_eq!(px[3], rgba16[i * 4 + 3]);
    }
    // Unreadable input: a clear error, no panic.
    std::fs::write(dir.join("junk.png"), b"not a png").unwrap();
    assert!(matches!(
        Image::open(dir.join("junk.png")),
        Err(Error::Image(_))
    ));
    assert!(matches!(
        Image::open(dir.join("missing.png")),
        Err(Error::Io { .. })
    ));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn fused_unfused_and_cpu_backends_agree_and_run_from_threads() {
    let bytes = ModelBuilder::dni_stack(3, 8).bytes();
    let img = gradient(13, 10, 3);
    let reference = load(&bytes).unwrap().run(&img, Level::alpha(0.4)).unwrap();
    let unfused = Engine::reference()
        .load_bytes(&bytes, Lowering::Unfused)
        .unwrap()
        .run(&img, Level::alpha(0.4))
        .unwrap();
    let fast = Engine::cpu().load_bytes(&bytes, Lowering::Fused).unwrap();
    let diff = |a: &Image, b: &Image| {
        a.planes()
            .iter()
            .zip(b.planes())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    };
    assert!(
        diff(&reference, &unfused) < 1e-3,
        "unfused {}",
        diff(&reference, &unfused)
    );
    // One model, several threads at once.
    let fast = std::sync::Arc::new(fast);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (m, img) = (fast.clone(), img.clone());
            std::thread::spawn(move || m.run(&img, Level::alpha(0.4)).unwrap())
        })
        .collect();
    for h in handles {
        let out = h.join().unwrap();
        assert!(
            diff(&reference, &out) < 1e-3,
            "fast {}",
            diff(&reference, &out)
        );
    }
}

#[test]
fn engine_and_model_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
    assert_send_sync::<tunable::Model>();
}
