//! The JSON spec stored in a model file's `__metadata__["tunable"]` (docs/FORMAT.md), and the
//! checks that need only the spec itself (the tensors are checked in `load`).

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::plan::{MAX_AXES, MAX_CHANNELS};

pub const FORMAT_VERSION: u32 = 1;

/// The `value_scale`s accepted at load: 255 for 8-bit semantics, 1 for a net on the 0..255
/// scale, 65535 for 16-bit; far outside, pixel values under- or overflow f32 in the network.
pub const VALUE_SCALE_RANGE: (f32, f32) = (1e-3, 1e6);

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub format_version: u32,
    pub name: String,
    #[serde(default)]
    pub task: String,
    #[serde(default)]
    pub family: String,
    pub in_channels: usize,
    pub out_channels: usize,
    #[serde(default = "default_value_scale")]
    pub value_scale: f32,
    pub levels: Vec<LevelAxis>,
    pub nodes: Vec<NodeSpec>,
    pub output: String,
}

fn default_value_scale() -> f32 {
    255.0
}

/// One knob of the model (its calibration and ranges: `impl LevelAxis` in src/level.rs).
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LevelAxis {
    pub name: String,
    pub min: f32,
    pub max: f32,
    /// Whether values outside `[min, max]` are allowed (CFSNet-style families extrapolate).
    #[serde(default)]
    pub extrapolate: bool,
    /// How far an extrapolating axis goes: `[lo, hi]` around `[min, max]`; absent, half the
    /// range on each side (`[-0.5, 1.5]` for alpha in `[0, 1]`). See [`LevelAxis::allowed_range`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extrapolate_range: Option<[f32; 2]>,
    /// The user's unit that `calibration` maps from (e.g. "sigma").
    #[serde(default)]
    pub unit: Option<String>,
    /// Sorted `[unit value, axis value]` pairs, interpolated piecewise-linearly.
    #[serde(default)]
    pub calibration: Option<Vec<[f32; 2]>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    pub op: String,
    #[serde(default)]
    pub inputs: Vec<String>,
    #[serde(default)]
    pub weight: Option<String>,
    #[serde(default)]
    pub bias: Option<String>,
    #[serde(default)]
    pub stride: Option<usize>,
    #[serde(default)]
    pub act: Option<String>,
    #[serde(default)]
    pub prelu: Option<String>,
    #[serde(default, rename = "mod")]
    pub modulation: Option<ModSpec>,
    #[serde(default)]
    pub noise_channel: Option<NoiseChannelSpec>,
    #[serde(default)]
    pub axis: Option<usize>,
    #[serde(default)]
    pub gain: Option<GainSpec>,
    #[serde(default)]
    pub coupling: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ModSpec {
    Dni {
        weight_end: String,
        #[serde(default)]
        bias_end: Option<String>,
        #[serde(default)]
        axis: usize,
    },
    Ftn {
        #[serde(default)]
        axis: usize,
        groups: usize,
        w1: String,
        b1: String,
        prelu: String,
        w2: String,
        b2: String,
    },
    Basis {
        deltas: Vec<String>,
        #[serde(default)]
        bias_deltas: Vec<Option<String>>,
        /// `[offset, g0, g1, g2, g3]` per delta (missing gains are 0).
        coef: Vec<Vec<f32>>,
    },
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseChannelSpec {
    #[serde(default)]
    pub axis: usize,
    pub scale: f32,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum GainSpec {
    Constant(f32),
    Axis { axis: usize },
}

impl Spec {
    /// Parses the JSON and checks what can be checked without tensors.
    pub fn parse(json: &str) -> Result<Spec> {
        // Read the version first so that a future file gets a version error, not a field error.
        let v: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| Error::Format(format!("the spec is not valid JSON: {e}")))?;
        match v.get("format_version").and_then(|v| v.as_u64()) {
            Some(n) if n == FORMAT_VERSION as u64 => {}
            Some(n) => {
                return Err(Error::Format(format!(
                "format version {n} is not supported (this build reads version {FORMAT_VERSION})"
            )))
            }
            None => {
                return Err(Error::Format(
                    "the spec has no numeric format_version".into(),
                ))
            }
        }
        let spec: Spec =
            serde_json::from_value(v).map_err(|e| Error::Format(format!("spec: {e}")))?;
        spec.check()?;
        Ok(spec)
    }

    fn check(&self) -> Result<()> {
        if self.in_channels == 0 || self.out_channels == 0 {
            return Err(Error::Format(
                "in_channels and out_channels must be positive".into(),
            ));
        }
        if self.in_channels.max(self.out_channels) > MAX_CHANNELS {
            return Err(Error::Limit(format!(
                "{} -> {} image channels, more than the limit of {MAX_CHANNELS}",
                self.in_channels, self.out_channels
            )));
        }
        let (lo, hi) = VALUE_SCALE_RANGE;
        if !(self.value_scale.is_finite() && (lo..=hi).contains(&self.value_scale)) {
            return Err(Error::Format(format!(
                "value_scale must lie in [{lo:e}, {hi:e}], got {:e}",
                self.value_scale
            )));
        }
        if self.levels.len() > MAX_AXES {
            return Err(Error::Format(format!(
                "{} level axes; at most {MAX_AXES} are supported",
                self.levels.len()
            )));
        }
        for a in &self.levels {
            if !(a.min.is_finite() && a.max.is_finite() && a.min <= a.max) {
                return Err(Error::Format(format!(
                    "level axis '{}': bad range [{}, {}]",
                    a.name, a.min, a.max
                )));
            }
            if let Some([lo, hi]) = a.extrapolate_range {
                let contains = lo <= a.min && a.max <= hi;
                if !(a.extrapolate && lo.is_finite() && hi.is_finite() && contains) {
                    return Err(Error::Format(format!(
                        "level axis '{}': extrapolate_range [{lo}, {hi}] needs extrapolate: true and must be finite and contain [{}, {}]",
                        a.name, a.min, a.max
                    )));
                }
            }
            if let Some(t) = &a.calibration {
                let sorted = t.windows(2).all(|p| p[0][0] < p[1][0]);
                if t.is_empty() || !sorted || t.iter().flatten().any(|v| !v.is_finite()) {
                    return Err(Error::Format(format!(
                        "level axis '{}': calibration must be non-empty, finite, sorted by its first column",
                        a.name
                    )));
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for n in &self.nodes {
            if n.name == "input" || !seen.insert(n.name.as_str()) {
                return Err(Error::Graph(format!(
                    "node name '{}' is reserved or used twice",
                    n.name
                )));
            }
        }
        Ok(())
    }
}
