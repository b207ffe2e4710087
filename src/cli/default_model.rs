//! The default models, built into the binary when their files exist at build time (`build.rs`
//! sets `cfg(tunable_default_model)` and `cfg(tunable_default_gray_model)`): `denoise-color`
//! for color pictures and `denoise-gray` for gray ones. `--model` overrides both.

/// A built-in model: where it came from (relative to the crate root) and its bytes, `None` when
/// the binary was built without it.
pub struct Builtin {
    pub source: &'static str,
    pub bytes: Option<&'static [u8]>,
}

pub const COLOR: Builtin = Builtin {
    source: "weights/denoise-color.safetensors",
    #[cfg(tunable_default_model)]
    bytes: Some(include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/weights/denoise-color.safetensors"
    ))),
    #[cfg(not(tunable_default_model))]
    bytes: None,
};

pub const GRAY: Builtin = Builtin {
    source: "weights/denoise-gray.safetensors",
    #[cfg(tunable_default_gray_model)]
    bytes: Some(include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/weights/denoise-gray.safetensors"
    ))),
    #[cfg(not(tunable_default_gray_model))]
    bytes: None,
};

/// The built-in model for pictures with this many color channels: the gray model for one
/// channel when it is built in, else the color model.
pub fn for_channels(channels: usize) -> &'static Builtin {
    if channels == 1 && GRAY.bytes.is_some() {
        &GRAY
    } else {
        &COLOR
    }
}

/// The error for a command that needs a model when none is given and none is built in.
pub fn missing() -> String {
    format!(
        "no --model given, and this binary has no built-in model ({} was absent when it was built); pass --model FILE.safetensors",
        COLOR.source
    )
}
