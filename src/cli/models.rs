//! `tunable models [--dir weights]`: the built-in default model and the `*.safetensors` files of a
//! folder, each with its name, family, task, channels and level axes (name, range, unit,
//! calibration endpoints).

use std::path::{Path, PathBuf};

use tunable::model::{LevelAxis, ModelFile};

use super::{anyhow_like::Result, default_model};

#[derive(clap::Args)]
pub struct Args {
    /// The folder of model files to list.
    #[arg(long, default_value = "weights")]
    dir: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    for (kind, builtin) in [
        ("color", &default_model::COLOR),
        ("gray", &default_model::GRAY),
    ] {
        match builtin.bytes {
            Some(bytes) => describe(
                &format!("built-in, {kind} ({})", builtin.source),
                ModelFile::from_bytes(bytes),
                bytes.len() as u64,
            ),
            None => println!(
                "built-in, {kind}: none ({} was absent when this binary was built; --model is required)",
                builtin.source
            ),
        }
    }
    let files = model_files(&a.dir);
    match files {
        Err(e) => println!("{}: {e}", a.dir.display()),
        Ok(files) if files.is_empty() => println!("{}: no .safetensors files", a.dir.display()),
        Ok(files) => {
            for p in files {
                let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                describe(&p.display().to_string(), ModelFile::open(&p), size);
            }
        }
    }
    Ok(())
}

fn model_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn describe(source: &str, file: tunable::Result<ModelFile>, bytes: u64) {
    let file = match file {
        Ok(f) => f,
        Err(e) => {
            println!("{source}: unreadable: {e}");
            return;
        }
    };
    let s = &file.spec;
    let family = if s.family.is_empty() { "-" } else { &s.family };
    let task = if s.task.is_empty() { "-" } else { &s.task };
    println!(
        "{source}: {}  family {family}  task {task}  {} -> {} channels  {:.2} MB",
        s.name,
        s.in_channels,
        s.out_channels,
        bytes as f64 / 1e6
    );
    if s.levels.is_empty() {
        println!("    no level axis (a fixed model)");
    }
    for axis in &s.levels {
        println!("    {}", axis_line(axis));
    }
}

/// `alpha in [0, 1], unit sigma, calibration sigma 20 -> alpha 0.000 .. sigma 80 -> alpha 1.000 (7 points)`.
pub fn axis_line(axis: &LevelAxis) -> String {
    let mut line = format!("{} in [{}, {}]", axis.name, axis.min, axis.max);
    if axis.extrapolate {
        line += " (extrapolates)";
    }
    let unit = axis.unit.as_deref();
    if let Some(u) = unit {
        line += &format!(", unit {u}");
    }
    match axis.calibration.as_deref() {
        Some([first, .., last]) => {
            let u = unit.unwrap_or("value");
            let n = axis.calibration.as_ref().map_or(0, |c| c.len());
            line += &format!(
                ", calibration {u} {} -> {} {:.3} .. {u} {} -> {} {:.3} ({n} points)",
                first[0], axis.name, first[1], last[0], axis.name, last[1]
            );
        }
        Some([only]) => line += &format!(", calibration {} -> {:.3} (1 point)", only[0], only[1]),
        _ => line += ", no calibration (give the level directly)",
    }
    line
}
