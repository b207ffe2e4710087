//! The `tunable` binary driven as a user would: restore, sweep, demo, models, and its errors.
//! Images and models are made in the test (a small DNI model from `harness::models::ModelBuilder`), so
//! nothing depends on the trained default model, except the one test that says it is skipped
//! when the binary was built without it.

mod harness;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use harness::models::ModelBuilder;

/// A fresh, empty folder for one test.
fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tunable-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A small DNI model for `c` channels (knob alpha in [0, 1], calibration sigma 10 -> 0, 50 -> 1).
fn model(dir: &Path, c: usize) -> PathBuf {
    let p = dir.join(format!("model-{c}.safetensors"));
    std::fs::write(&p, ModelBuilder::dni_stack(c, 8).bytes()).unwrap();
    p
}

/// A fresh folder holding the 3-channel model: `(folder, model)`.
fn folder_with_model(name: &str) -> (PathBuf, PathBuf) {
    let d = tmpdir(name);
    let m = model(&d, 3);
    (d, m)
}

/// Smooth gradients, a disc and a little seeded texture; 8-bit, gray (1) or RGB (3).
fn picture(w: u32, h: u32, c: usize, noise: f32, seed: u64) -> image::DynamicImage {
    let mut rng = tunable::noise::Rng::new(seed);
    let mut px = |x: u32, y: u32, ch: usize| -> u8 {
        let base = 40.0 + 150.0 * x as f32 / w as f32 + 30.0 * ch as f32;
        let (dx, dy) = (x as f32 - w as f32 / 2.0, y as f32 - h as f32 / 2.0);
        let disc = if dx * dx + dy * dy < (w.min(h) as f32 / 4.0).powi(2) {
            40.0
        } else {
            0.0
        };
        (base
            + disc
            + 6.0 * ((x as f32 * 0.7).sin() + (y as f32 * 0.9).cos())
            + noise * rng.normal() as f32)
            .clamp(0.0, 255.0) as u8
    };
    if c == 1 {
        image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(w, h, |x, y| {
            image::Luma([px(x, y, 0)])
        }))
    } else {
        image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([px(x, y, 0), px(x, y, 1), px(x, y, 2)])
        }))
    }
}

fn save(img: &image::DynamicImage, path: &Path) -> PathBuf {
    img.save(path).unwrap();
    path.to_path_buf()
}

fn tunable(args: &[&dyn AsRef<OsStr>]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tunable"));
    cmd.env("TUNABLE_CPU", "1");
    for a in args {
        cmd.arg(a);
    }
    cmd.output().expect("the tunable binary runs")
}

/// `tunable <cmd> <input> -o <out> --model <model> <extra>...`: the shape of most calls here.
fn with_model(
    cmd: &str,
    input: &Path,
    out: &Path,
    model: &Path,
    extra: &[&dyn AsRef<OsStr>],
) -> Output {
    let mut args: Vec<&dyn AsRef<OsStr>> = vec![&cmd, &input, &"-o", &out, &"--model", &model];
    args.extend_from_slice(extra);
    tunable(&args)
}

fn restore(input: &Path, out: &Path, model: &Path, extra: &[&dyn AsRef<OsStr>]) -> Output {
    with_model("restore", input, out, model, extra)
}

fn sweep(input: &Path, out: &Path, model: &Path, extra: &[&dyn AsRef<OsStr>]) -> Output {
    with_model("sweep", input, out, model, extra)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// Fails with an error message containing every one of `words`; returns the message.
fn fails(o: &Output, words: &[&str]) -> String {
    let e = stderr(o);
    assert!(
        !o.status.success(),
        "should have failed; stdout: {}\nstderr: {e}",
        stdout(o)
    );
    assert!(!e.contains("panicked"), "a panic instead of an error: {e}");
    for w in words {
        assert!(
            e.to_lowercase().contains(&w.to_lowercase()),
            "the error should mention '{w}': {e}"
        );
    }
    e
}

/// The names in a folder (temporary files included).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn builtin_default_exists() -> bool {
    builtin_exists("color")
}

fn builtin_exists(kind: &str) -> bool {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("weights/denoise-{kind}.safetensors"))
        .is_file()
}

/// PSNR of two same-size 8-bit pictures, computed here (not by the crate's metrics).
fn psnr_files(a: &Path, b: &Path) -> f64 {
    let (a, b) = (image::open(a).unwrap(), image::open(b).unwrap());
    let (a, b) = (a.to_rgb8().into_raw(), b.to_rgb8().into_raw());
    assert_eq!(a.len(), b.len());
    let mse = a
        .iter()
        .zip(&b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0f64.powi(2) / mse.max(1e-12)).log10()
}

#[test]
fn restore_at_a_level_and_blind() {
    let (d, m) = folder_with_model("restore");
    let input = save(&picture(40, 30, 3, 12.0, 1), &d.join("in.png"));
    let out = d.join("out.png");
    ok(&restore(&input, &out, &m, &[&"--level", &"0.5"]));
    let img = image::open(&out).unwrap();
    assert_eq!((img.width(), img.height()), (40, 30));
    // Blind: the estimate and the chosen knob value are said.
    let blind = restore(&input, &d.join("blind.png"), &m, &[]);
    ok(&blind);
    let e = stderr(&blind);
    assert!(
        e.contains("estimated noise sigma") && e.contains("alpha ="),
        "{e}"
    );
    // Inside the calibration table: no warning; beyond either end: a warning naming the end used.
    for (sigma, warning) in [
        ("30", None),
        ("80", Some("sigma 80 is outside the model's calibrated range [10, 50]; running at sigma 50 (alpha = 1)")),
        ("4", Some("sigma 4 is outside the model's calibrated range [10, 50]; running at sigma 10 (alpha = 0)")),
    ] {
        let o = restore(&input, &d.join(format!("s{sigma}.png")), &m, &[&"--sigma", &sigma]);
        ok(&o);
        match warning {
            Some(w) => assert!(stderr(&o).contains(w), "--sigma {sigma}: {}", stderr(&o)),
            None => assert!(!stderr(&o).contains("warning"), "--sigma {sigma}: {}", stderr(&o)),
        }
    }
}

/// Several inputs go into a folder under their own names; a bad one is reported and skipped
/// (the others are still written, nothing partial is left, the exit status says it failed).
#[test]
fn restore_several_into_a_folder() {
    let (d, m) = folder_with_model("restore-many");
    let a = save(&picture(40, 30, 3, 12.0, 1), &d.join("a.png"));
    let b = save(&picture(24, 36, 3, 20.0, 2), &d.join("b.png"));
    let bad = d.join("bad.png");
    std::fs::write(&bad, b"not a png").unwrap();
    let out = d.join("restored");
    let o = tunable(&[
        &"restore", &a, &bad, &b, &"-o", &out, &"--model", &m, &"--level", &"0.5",
    ]);
    fails(&o, &["1 of 3 images failed", "bad.png"]);
    assert_eq!(names(&out), ["a.png", "b.png"]);
    for (name, size) in [("a.png", (40, 30)), ("b.png", (24, 36))] {
        let img = image::open(out.join(name)).unwrap();
        assert_eq!((img.width(), img.height()), size, "{name}");
    }
    // All good: success, blind mode estimates each image on its own.
    let o = tunable(&[&"restore", &a, &b, &"-o", &d.join("blind"), &"--model", &m]);
    ok(&o);
    assert_eq!(
        stderr(&o).matches("estimated noise sigma").count(),
        2,
        "{}",
        stderr(&o)
    );
    assert_eq!(names(&d.join("blind")), ["a.png", "b.png"]);

    // Refused before anything is written: two inputs with one name, -o naming a file.
    std::fs::create_dir_all(d.join("x")).unwrap();
    let a2 = save(&picture(8, 8, 3, 0.0, 3), &d.join("x/a.png"));
    let dup = d.join("dup");
    fails(
        &tunable(&[
            &"restore", &a, &a2, &"-o", &dup, &"--model", &m, &"--level", &"0.5",
        ]),
        &["two inputs are named a.png"],
    );
    assert!(!dup.exists(), "nothing is created for a refused command");
    fails(
        &tunable(&[
            &"restore", &a, &b, &"-o", &a2, &"--model", &m, &"--level", &"0.5",
        ]),
        &["need a folder"],
    );
}

#[test]
fn unreadable_input_is_an_error_and_writes_nothing() {
    let (d, m) = folder_with_model("unreadable");
    let missing = d.join("nope.png");
    for (cmd, out) in [("restore", "out.png"), ("sweep", "sheet.png")] {
        let o = with_model(cmd, &missing, &d.join(out), &m, &[]);
        fails(&o, &["nope.png"]);
    }
    assert_eq!(names(&d), vec!["model-3.safetensors"]);
}

#[test]
fn unsupported_input_is_an_error_and_writes_nothing() {
    let (d, m) = folder_with_model("unsupported");
    let garbage = d.join("garbage.png");
    std::fs::write(
        &garbage,
        b"this is not a picture at all, just some text bytes",
    )
    .unwrap();
    let text = d.join("notes.txt");
    std::fs::write(&text, "hello").unwrap();
    for input in [&garbage, &text] {
        let name = input.file_name().unwrap().to_str().unwrap();
        fails(&restore(input, &d.join("out.png"), &m, &[]), &[name]);
        let o = sweep(input, &d.join("sheet.png"), &m, &[&"--levels", &"0,1"]);
        fails(&o, &[name]);
    }
    // An output format we do not write.
    let input = save(&picture(16, 16, 3, 5.0, 2), &d.join("in.png"));
    let o = restore(&input, &d.join("out.bmp"), &m, &[&"--level", &"0"]);
    fails(&o, &["format"]);
    fails(&sweep(&input, &d.join("sheet.jpg"), &m, &[]), &["format"]);
    assert_eq!(
        names(&d),
        vec!["garbage.png", "in.png", "model-3.safetensors", "notes.txt"]
    );
}

#[test]
fn output_in_a_missing_or_read_only_folder_is_an_error() {
    let (d, m) = folder_with_model("unwritable");
    let input = save(&picture(24, 20, 3, 8.0, 3), &d.join("in.png"));
    let missing = d.join("no/such/folder/out.png");
    let o = restore(&input, &missing, &m, &[&"--level", &"0.2"]);
    fails(&o, &["no/such/folder"]);
    let o = sweep(&input, &missing, &m, &[&"--levels", &"0,1"]);
    fails(&o, &["does not exist"]);
    let gif = missing.with_extension("gif");
    let o = sweep(&input, &d.join("s.png"), &m, &[&"--gif", &gif]);
    fails(&o, &["does not exist"]);

    // A read-only folder; root writes into those anyway, so then a read-only file system.
    let ro = d.join("ro");
    std::fs::create_dir(&ro).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let probe = ro.join("probe");
    let target = if std::fs::write(&probe, b"x").is_ok() {
        let _ = std::fs::remove_file(&probe);
        println!(
            "running as root: the read-only folder is writable; using /sys (read-only) instead"
        );
        PathBuf::from("/sys/tunable-cli-test-out.png")
    } else {
        ro.join("out.png")
    };
    let name = target.file_name().unwrap().to_str().unwrap();
    let o = restore(&input, &target, &m, &[&"--level", &"0.2"]);
    fails(&o, &[name]);
    let o = sweep(&input, &target, &m, &[&"--levels", &"0,1"]);
    fails(&o, &["cannot write"]);
    assert!(!target.exists());
    assert!(names(&ro).is_empty(), "{:?}", names(&ro));
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(names(&d), vec!["in.png", "model-3.safetensors", "ro"]);
}

#[test]
fn output_equal_to_input_needs_force() {
    let (d, m) = folder_with_model("same");
    let input = save(&picture(24, 24, 3, 20.0, 4), &d.join("in.png"));
    let before = std::fs::read(&input).unwrap();
    let o = restore(&input, &input, &m, &[&"--level", &"1"]);
    fails(&o, &["--force"]);
    // The same file under another spelling is still the input.
    let other = d.join(".").join("in.png");
    let o = restore(&input, &other, &m, &[&"--level", &"1"]);
    fails(&o, &["--force"]);
    let o = sweep(&input, &input, &m, &[&"--levels", &"0,1"]);
    fails(&o, &["--force"]);
    assert_eq!(
        std::fs::read(&input).unwrap(),
        before,
        "the input was changed"
    );
    let o = restore(&input, &input, &m, &[&"--level", &"1", &"--force"]);
    ok(&o);
    assert_ne!(
        std::fs::read(&input).unwrap(),
        before,
        "--force should have overwritten the input"
    );
    assert_eq!(names(&d), vec!["in.png", "model-3.safetensors"]);
}

#[test]
fn gray_image_into_a_color_model_is_refused() {
    let (d, m) = folder_with_model("channels");
    let gray = save(&picture(20, 20, 1, 10.0, 5), &d.join("gray.png"));
    let out = d.join("out.png");
    let e = fails(&restore(&gray, &out, &m, &[&"--level", &"0"]), &["channel"]);
    assert!(e.contains('1') && e.contains('3'), "{e}");
    fails(&restore(&gray, &out, &m, &[]), &["channel"]);
    let gif = d.join("a.gif");
    let o = sweep(&gray, &d.join("sheet.png"), &m, &[&"--gif", &gif]);
    fails(&o, &["channel"]);
    // And the other way round; a gray model takes it.
    let m1 = model(&d, 1);
    let color = save(&picture(20, 20, 3, 10.0, 6), &d.join("color.png"));
    let o = restore(&color, &out, &m1, &[&"--level", &"0"]);
    fails(&o, &["channel"]);
    assert_eq!(
        names(&d),
        vec![
            "color.png",
            "gray.png",
            "model-1.safetensors",
            "model-3.safetensors"
        ]
    );
    ok(&restore(&gray, &out, &m1, &[&"--level", &"0"]));
}

#[test]
fn bad_model_file_is_an_error() {
    let d = tmpdir("badmodel");
    let input = save(&picture(16, 16, 3, 5.0, 7), &d.join("in.png"));
    let bad = d.join("bad.safetensors");
    std::fs::write(&bad, b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage").unwrap();
    let out = d.join("out.png");
    let o = restore(&input, &out, &bad, &[&"--level", &"0"]);
    fails(&o, &["model"]);
    let o = restore(&input, &out, &d.join("absent.safetensors"), &[]);
    fails(&o, &["absent.safetensors"]);
    assert_eq!(names(&d), vec!["bad.safetensors", "in.png"]);
}

#[test]
fn sweep_writes_sheet_plot_gif_and_table() {
    let (d, m) = folder_with_model("sweep");
    let clean_img = picture(48, 40, 3, 0.0, 8);
    let clean = save(&clean_img, &d.join("clean.png"));
    let noisy = save(&picture(48, 40, 3, 15.0, 8), &d.join("noisy.png"));
    let sheet = d.join("sheet.png");
    let gif = d.join("anim.gif");
    let o = sweep(
        &noisy,
        &sheet,
        &m,
        &[
            &"--levels",
            &"0:1:0.5",
            &"--clean",
            &clean,
            &"--gif",
            &gif,
            &"--tile",
            &"96",
        ],
    );
    let table = ok(&o);
    println!("{table}");
    // The table: a header, the input, three levels (one marked best), the blind estimate.
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| ")).collect();
    assert_eq!(rows.len(), 5, "{table}");
    assert!(rows[1].starts_with("| input |"), "{table}");
    for (row, level) in rows[2..].iter().zip(["0.000", "0.500", "1.000"]) {
        assert!(row.starts_with(&format!("| {level} |")), "{row}");
        let psnr: f64 = row
            .split('|')
            .nth(3)
            .unwrap()
            .trim()
            .trim_end_matches("(best)")
            .trim()
            .parse()
            .unwrap();
        assert!(psnr.is_finite() && psnr > 0.0, "{row}");
    }
    assert_eq!(table.matches("(best)").count(), 1, "{table}");
    assert!(table.contains("blind: estimated sigma"), "{table}");
    assert!(
        stderr(&o).contains("estimated noise sigma"),
        "{}",
        stderr(&o)
    );

    let s = image::open(&sheet).unwrap();
    // Input + 3 levels + clean = 5 cells in one row, each 96 wide with the crop row below.
    assert!(
        s.width() > 5 * 96 && s.height() > 2 * 80,
        "{}x{}",
        s.width(),
        s.height()
    );
    let plot = image::open(d.join("sheet-psnr.png")).unwrap();
    assert!(plot.width() >= 800 && plot.height() >= 400);
    use image::AnimationDecoder;
    let dec = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(
        std::fs::File::open(&gif).unwrap(),
    ))
    .unwrap();
    let frames = dec.into_frames().collect_frames().unwrap();
    assert_eq!(frames.len(), 4, "3 levels up and one back down");
    assert_eq!(frames[0].buffer().dimensions(), (48, 40));
    assert_eq!(
        names(&d),
        vec![
            "anim.gif",
            "clean.png",
            "model-3.safetensors",
            "noisy.png",
            "sheet-psnr.png",
            "sheet.png"
        ]
    );
}

#[test]
fn sweep_levels_crops_and_sigmas() {
    let (d, m) = folder_with_model("sweep2");
    let clean = save(&picture(32, 32, 3, 0.0, 9), &d.join("clean.png"));
    let noisy = save(&picture(32, 32, 3, 20.0, 9), &d.join("noisy.png"));
    // Sigmas go through the calibration (10 -> 0, 50 -> 1).
    let t = ok(&sweep(
        &noisy,
        &d.join("s.png"),
        &m,
        &[
            &"--sigmas",
            &"10:50:20",
            &"--clean",
            &clean,
            &"--crop",
            &"4,4,8,8",
        ],
    ));
    for level in ["| 0.000 | 10.0 |", "| 0.500 | 30.0 |", "| 1.000 | 50.0 |"] {
        assert!(t.contains(level), "{level} in {t}");
    }
    // Without --clean: the sheet only, default levels (the axis range in 8 steps).
    let o = sweep(&noisy, &d.join("only.png"), &m, &[]);
    ok(&o);
    assert_eq!(stderr(&o).matches("  level ").count(), 9, "{}", stderr(&o));
    assert!(!d.join("only-psnr.png").exists());
    // Refused before any work: bad levels, out of range, a crop outside, a clean of another size.
    for (args, word) in [
        (vec!["--levels", "0:1:0"], "step"),
        (vec!["--levels", "0,x"], "not a number"),
        (vec!["--levels", "0,2"], "outside"),
        (vec!["--crop", "30,30,8,8"], "crop"),
        (vec!["--crop", "1,2,3"], "crop"),
    ] {
        let extra: Vec<&dyn AsRef<OsStr>> = args.iter().map(|a| a as _).collect();
        fails(&sweep(&noisy, &d.join("refused.png"), &m, &extra), &[word]);
    }
    let small = save(&picture(16, 16, 3, 0.0, 9), &d.join("small.png"));
    let o = sweep(&noisy, &d.join("refused.png"), &m, &[&"--clean", &small]);
    fails(&o, &["clean"]);
    assert!(!d.join("refused.png").exists() && !d.join("refused-psnr.png").exists());
    assert!(
        names(&d).iter().all(|n| !n.starts_with('.')),
        "temporary files left: {:?}",
        names(&d)
    );
}

#[test]
fn models_lists_names_families_and_axes() {
    let (d, _) = folder_with_model("models");
    std::fs::write(d.join("broken.safetensors"), b"nope").unwrap();
    std::fs::write(d.join("readme.txt"), b"not a model").unwrap();
    let t = ok(&tunable(&[&"models", &"--dir", &d]));
    println!("{t}");
    assert!(t.contains("built-in"), "{t}");
    assert!(
        t.contains("model-3.safetensors: test-dni")
            && t.contains("family dni")
            && t.contains("3 -> 3 channels"),
        "{t}"
    );
    assert!(t.contains("alpha in [0, 1], unit sigma, calibration sigma 10 -> alpha 0.000 .. sigma 50 -> alpha 1.000 (2 points)"), "{t}");
    assert!(t.contains("broken.safetensors: unreadable"), "{t}");
    assert!(!t.contains("readme"), "{t}");
    let t = ok(&tunable(&[&"models", &"--dir", &d.join("absent")]));
    assert!(t.contains("absent"), "{t}");
}

#[test]
fn demo_writes_its_pictures_and_scores() {
    let (d, m) = folder_with_model("demo");
    let input = save(&picture(64, 48, 3, 0.0, 10), &d.join("clean.png"));
    let out = d.join("demo");
    let t = ok(&tunable(&[
        &"demo", &"--model", &m, &"--input", &input, &"--out", &out, &"--sigma", &"30", &"--size",
        &"32",
    ]));
    println!("{t}");
    assert!(
        t.contains("noise sigma 30") && t.contains("estimated sigma"),
        "{t}"
    );
    assert!(
        t.contains("| noisy |") && t.contains("| blind |") && t.matches("| level |").count() == 5,
        "{t}"
    );
    assert_eq!(
        names(&out),
        vec![
            "blind.png",
            "level-0.00.png",
            "level-0.50.png",
            "level-1.00.png",
            "noisy.png",
            "sheet-psnr.png",
            "sheet.png"
        ]
    );
    // --size shrinks the picture.
    assert_eq!(image::open(out.join("blind.png")).unwrap().width(), 32);
    // The default picture is found from the source tree.
    let o = tunable(&[
        &"demo",
        &"--model",
        &m,
        &"--out",
        &d.join("demo2"),
        &"--size",
        &"32",
    ]);
    ok(&o);
    assert!(stderr(&o).contains("astronaut.png 32x32"), "{}", stderr(&o));
}

#[test]
fn without_model_and_without_builtin_says_how() {
    if builtin_default_exists() {
        println!("skipped: this binary has the built-in default model");
        return;
    }
    let d = tmpdir("nomodel");
    let input = save(&picture(16, 16, 3, 5.0, 11), &d.join("in.png"));
    fails(
        &tunable(&[&"restore", &input, &"-o", &d.join("out.png")]),
        &["--model"],
    );
    fails(
        &tunable(&[&"sweep", &input, &"-o", &d.join("s.png")]),
        &["--model"],
    );
    assert!(ok(&tunable(&[&"models", &"--dir", &d])).contains("built-in, color: none"));
    assert_eq!(names(&d), vec!["in.png"]);
}

#[test]
fn builtin_default_model_restores_without_model_flag() {
    if !builtin_default_exists() {
        println!("skipped: weights/denoise-color.safetensors is absent, so the binary has no built-in model");
        return;
    }
    let d = tmpdir("builtin");
    let input = save(&picture(64, 64, 3, 25.0, 12), &d.join("in.png"));
    let o = tunable(&[&"restore", &input, &"-o", &d.join("out.png")]);
    ok(&o);
    assert!(
        stderr(&o).contains("estimated noise sigma"),
        "{}",
        stderr(&o)
    );
    let t = ok(&tunable(&[&"models", &"--dir", &d]));
    assert!(
        t.contains("built-in, color (weights/denoise-color.safetensors):"),
        "{t}"
    );
    ok(&tunable(&[
        &"sweep",
        &input,
        &"-o",
        &d.join("s.png"),
        &"--levels",
        &"0,1",
    ]));
}

/// The numbers in the row of `eval`'s table that starts with `| sigma |`.
fn eval_row(table: &str, sigma: &str) -> Vec<String> {
    let line = table
        .lines()
        .find(|l| l.starts_with(&format!("| {sigma} |")))
        .unwrap_or_else(|| panic!("no row for sigma {sigma} in\n{table}"));
    line.split('|')
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect()
}

#[test]
fn eval_with_8bit_or_float_noise_told_or_blind() {
    let (d, m) = folder_with_model("eval");
    let data = d.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for (i, name) in ["a.png", "b.png"].iter().enumerate() {
        save(&picture(40, 36, 3, 0.0, 30 + i as u64), &data.join(name));
    }
    let run = |extra: &[&dyn AsRef<OsStr>]| {
        let mut args: Vec<&dyn AsRef<OsStr>> = vec![
            &"eval", &"--data", &data, &"--model", &m, &"--sigma", &"0,30",
        ];
        args.extend_from_slice(extra);
        ok(&tunable(&args))
    };
    let noisy = d.join("noisy");
    let eight = run(&[&"--noise", &"8bit", &"--save-noisy", &noisy]);
    let float = run(&[&"--noise", &"float"]);
    let blind = run(&[&"--blind"]);
    // Columns: sigma, input PSNR, level, estimated sigma, PSNR, SSIM.
    let (e30, f30, b30) = (
        eval_row(&eight, "30"),
        eval_row(&float, "30"),
        eval_row(&blind, "30"),
    );
    assert_eq!(eval_row(&eight, "0")[1], "inf", "{eight}");
    // Clipping at 0 and 255 and rounding change the noisy input.
    assert_ne!(
        e30[1], f30[1],
        "8-bit and float noise gave the same input\n{eight}\n{float}"
    );
    // The default noise is 8-bit, so blind mode sees the same inputs; told mode shows no estimate.
    assert_eq!(b30[1], e30[1]);
    assert_eq!(e30[3], "-");
    let est: f64 = b30[3].parse().unwrap();
    assert!((15.0..45.0).contains(&est), "estimate {est} for sigma 30");
    // The saved noisy pictures are the inputs that were scored.
    let saved: Vec<f64> = ["a", "b"]
        .iter()
        .map(|n| {
            psnr_files(
                &data.join(format!("{n}.png")),
                &noisy.join(format!("sigma30/{n}.png")),
            )
        })
        .collect();
    let mean = (saved[0] + saved[1]) / 2.0;
    let printed: f64 = e30[1].parse().unwrap();
    assert!(
        (mean - printed).abs() < 0.01,
        "saved {mean} vs printed {printed}"
    );
    fails(
        &tunable(&[
            &"eval",
            &"--data",
            &data,
            &"--model",
            &m,
            &"--noise",
            &"float",
            &"--save-noisy",
            &noisy,
        ]),
        &["--save-noisy needs --noise 8bit"],
    );
}

/// The shipped default models on pictures made here: a clean picture passes blind restoring
/// nearly unchanged (40 dB or more against itself), and an 8-bit noisy one comes out better than
/// it went in; a gray picture gets the gray model without `--model`.
#[test]
fn builtin_models_leave_clean_pictures_unharmed_and_improve_noisy_ones() {
    for (kind, channels) in [("color", 3), ("gray", 1)] {
        if !builtin_exists(kind) {
            println!("skipped: weights/denoise-{kind}.safetensors is absent");
            continue;
        }
        let d = tmpdir(&format!("quality-{kind}"));
        let clean = save(&picture(96, 80, channels, 0.0, 41), &d.join("clean.png"));
        let out = d.join("out.png");
        let o = tunable(&[&"restore", &clean, &"-o", &out]);
        ok(&o);
        let p = psnr_files(&clean, &out);
        assert!(
            p >= 40.0,
            "{kind}: a clean picture came out at {p:.2} dB; {}",
            stderr(&o)
        );
        for sigma in [5.0, 15.0, 30.0] {
            // Noise added to the clean picture, stored as 8 bits (`picture` clips and truncates
            // its own noise, so the clean version is made once and noised here).
            let base = image::open(&clean).unwrap();
            let mut rng = tunable::noise::Rng::new(sigma as u64);
            let noisy_img = match base {
                image::DynamicImage::ImageLuma8(mut g) => {
                    g.pixels_mut().for_each(|p| {
                        p.0[0] = (p.0[0] as f64 + sigma * rng.normal())
                            .clamp(0.0, 255.0)
                            .round() as u8
                    });
                    image::DynamicImage::ImageLuma8(g)
                }
                other => {
                    let mut c = other.to_rgb8();
                    c.pixels_mut().for_each(|p| {
                        p.0.iter_mut().for_each(|v| {
                            *v = (*v as f64 + sigma * rng.normal()).clamp(0.0, 255.0).round() as u8
                        })
                    });
                    image::DynamicImage::ImageRgb8(c)
                }
            };
            let noisy = save(&noisy_img, &d.join(format!("noisy{sigma}.png")));
            let o = tunable(&[&"restore", &noisy, &"-o", &out]);
            ok(&o);
            let (before, after) = (psnr_files(&clean, &noisy), psnr_files(&clean, &out));
            assert!(
                after > before + 1.0,
                "{kind} sigma {sigma}: {before:.2} dB in, {after:.2} dB out; {}",
                stderr(&o)
            );
        }
    }
}
