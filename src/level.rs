//! Levels: what the user turns. An axis value directly (`alpha`), a value in the user's unit
//! (noise sigma) mapped through the model's calibration table, or several axes at once.

use crate::error::{Error, Result};
use crate::model::LevelAxis;
use crate::plan::{LevelVec, MAX_AXES};

#[derive(Clone, Debug, PartialEq)]
pub enum Level {
    /// The first axis's value (alpha in `[0, 1]` for most families).
    Alpha(f32),
    /// A value in the first axis's calibration unit, e.g. noise sigma on the 0..255 scale.
    /// Outside the calibration table's range it is an error (the caller decides what to do).
    Sigma(f32),
    /// Like `Sigma`, but a value beyond the table runs at the table's nearest end: for values the
    /// caller did not choose, such as a blind noise estimate. `Model::level_vec` shows the result.
    SigmaClamped(f32),
    /// One value per axis, for models with several knobs.
    Axes(Vec<f32>),
}

impl Level {
    pub fn alpha(a: f32) -> Level {
        Level::Alpha(a)
    }
    pub fn sigma(s: f32) -> Level {
        Level::Sigma(s)
    }
    pub fn sigma_clamped(s: f32) -> Level {
        Level::SigmaClamped(s)
    }
    pub fn axes(values: &[f32]) -> Level {
        Level::Axes(values.to_vec())
    }

    /// Resolves to a level vector for a model with these axes, checking ranges.
    pub fn resolve(&self, axes: &[LevelAxis]) -> Result<LevelVec> {
        let values: Vec<f32> = match self {
            Level::Alpha(a) => vec![*a],
            Level::Sigma(s) | Level::SigmaClamped(s) => {
                let first = axes
                    .first()
                    .ok_or_else(|| Error::Level("the model has no level axis".into()))?;
                if matches!(self, Level::Sigma(_)) {
                    if let Some((lo, hi)) = first.calibrated_range().filter(|_| s.is_finite()) {
                        if *s < lo || *s > hi {
                            let unit = first.unit.as_deref().unwrap_or("level");
                            return Err(Error::Level(format!(
                                "{unit} {s} is outside the model's calibrated range [{lo}, {hi}] \
                                 (Level::sigma_clamped runs at the nearest end)"
                            )));
                        }
                    }
                }
                vec![first.calibrate(*s)?]
            }
            Level::Axes(v) => v.clone(),
        };
        if values.len() > axes.len().max(1)
            || values.len() > MAX_AXES
            || (axes.is_empty() && !values.is_empty())
        {
            if axes.is_empty() {
                return Err(Error::Level("the model has no level axis".into()));
            }
            return Err(Error::Level(format!(
                "{} values for a model with {} axes",
                values.len(),
                axes.len()
            )));
        }
        let mut out = [0.0; MAX_AXES];
        for (i, axis) in axes.iter().enumerate() {
            let v = *values.get(i).unwrap_or(&axis.min);
            if !v.is_finite() {
                return Err(Error::Level(format!(
                    "{} = {v} is not a finite number",
                    axis.name
                )));
            }
            let (lo, hi) = axis.allowed_range();
            if v < lo || v > hi {
                let what = if axis.extrapolate {
                    "the range the model extrapolates to"
                } else {
                    "the model's range"
                };
                return Err(Error::Level(format!(
                    "{} = {v} is outside {what} [{lo}, {hi}]",
                    axis.name
                )));
            }
            out[i] = v;
        }
        Ok(out)
    }
}
