//! Levels: what the user turns. An axis value directly (`alpha`), a value in the user's unit
//! (noise sigma) mapped through the model's calibration table, or several axes at once.
//! [`Level::resolve`] turns one into the level vector the executors take; the calibration and
//! the ranges of an axis ([`LevelAxis`], read from the model file) are here too.

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

impl LevelAxis {
    /// Maps a value in the user's unit to the axis value through the calibration table.
    pub fn calibrate(&self, unit_value: f32) -> Result<f32> {
        let table = self.calibration.as_ref().ok_or_else(|| {
            Error::Level(format!(
                "axis '{}' has no calibration table; give the level directly",
                self.name
            ))
        })?;
        if !unit_value.is_finite() {
            return Err(Error::Level(format!("{unit_value} is not a finite number")));
        }
        Ok(interpolate(table, unit_value))
    }

    /// The axis values a level may take: `[min, max]`, or for an extrapolating axis its
    /// `extrapolate_range` (default: half the range beyond each end). Far outside, CFSNet-style
    /// nets produce values in the millions and then NaN.
    pub fn allowed_range(&self) -> (f32, f32) {
        if !self.extrapolate {
            return (self.min, self.max);
        }
        match self.extrapolate_range {
            Some([lo, hi]) => (lo, hi),
            None => {
                let half = (self.max - self.min) / 2.0;
                (self.min - half, self.max + half)
            }
        }
    }

    /// The unit values the calibration table covers; `calibrate` clamps outside them.
    pub fn calibrated_range(&self) -> Option<(f32, f32)> {
        let t = self.calibration.as_ref()?;
        Some((t.first()?[0], t.last()?[0]))
    }

    /// A one-line warning when `unit_value` lies outside the calibrated range (and so runs at
    /// the nearest end of the table), `None` inside it.
    pub fn clamp_warning(&self, unit_value: f32) -> Option<String> {
        let (lo, hi) = self.calibrated_range()?;
        let unit = self.unit.as_deref().unwrap_or("level");
        let end = if unit_value < lo {
            lo
        } else if unit_value > hi {
            hi
        } else {
            return None;
        };
        Some(format!(
            "{unit} {unit_value} is outside the model's calibrated range [{lo}, {hi}]; running at {unit} {end} ({} = {})",
            self.name,
            interpolate(self.calibration.as_ref()?, end)
        ))
    }
}

/// Piecewise-linear interpolation over sorted `[x, y]` pairs, clamped at the ends.
pub fn interpolate(table: &[[f32; 2]], x: f32) -> f32 {
    let first = table[0];
    let last = table[table.len() - 1];
    if x <= first[0] {
        return first[1];
    }
    if x >= last[0] {
        return last[1];
    }
    for pair in table.windows(2) {
        let ([x0, y0], [x1, y1]) = (pair[0], pair[1]);
        if x <= x1 {
            let t = if x1 > x0 { (x - x0) / (x1 - x0) } else { 1.0 };
            return y0 + t * (y1 - y0);
        }
    }
    last[1]
}
