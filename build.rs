//! Embeds the default models when `weights/denoise-color.safetensors` (and
//! `weights/denoise-gray.safetensors`) exist at build time: sets `cfg(tunable_default_model)`
//! (and `cfg(tunable_default_gray_model)`), which `src/cli/default_model.rs` reads. Without the
//! color file the build still succeeds and `--model` becomes required; without the gray file gray
//! pictures need `--model`.
//!
//! Cargo re-runs this script when anything under `weights/` changes. If `weights/` did not exist
//! at the first build, create it with the file and `touch build.rs` (or `cargo clean`).

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tunable_default_model)");
    println!("cargo::rustc-check-cfg=cfg(tunable_default_gray_model)");
    println!("cargo::rerun-if-changed=build.rs");
    if Path::new("weights").is_dir() {
        println!("cargo::rerun-if-changed=weights");
    }
    if Path::new("weights/denoise-color.safetensors").is_file() {
        println!("cargo::rustc-cfg=tunable_default_model");
    }
    if Path::new("weights/denoise-gray.safetensors").is_file() {
        println!("cargo::rustc-cfg=tunable_default_gray_model");
    }
}
