//! The default model, built into the binary when `weights/denoise-color.safetensors` exists at
//! build time (`build.rs` sets `cfg(tunable_default_model)`); `--model` falls back to it.

/// Where the built-in model came from, relative to the crate root.
pub const SOURCE: &str = "weights/denoise-color.safetensors";

/// The model file's bytes, or `None` when the binary was built without it.
#[cfg(tunable_default_model)]
pub const BYTES: Option<&[u8]> = Some(include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/weights/denoise-color.safetensors"
)));

#[cfg(not(tunable_default_model))]
pub const BYTES: Option<&[u8]> = None;

/// The error for a command that needs a model when none is given and none is built in.
pub fn missing() -> String {
    format!("no --model given, and this binary has no built-in model ({SOURCE} was absent when it was built); pass --model FILE.safetensors")
}
