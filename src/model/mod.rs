//! Model files: the spec, the tensors, validation, and lowering to a plan.

pub mod lower;
pub mod spec;
pub mod tensors;

use std::path::Path;

use crate::error::{Error, Result};
use crate::plan::Plan;
pub use lower::{lower, FtnFn, Lowering};
pub use spec::{LevelAxis, Spec};
pub use tensors::TensorStore;

/// Refuse model files larger than this (a corrupt length field should not allocate 100 GB).
pub const MAX_MODEL_BYTES: u64 = 2 << 30;

/// A parsed and validated model file, not yet bound to a backend.
#[derive(Debug)]
pub struct ModelFile {
    pub spec: Spec,
    pub tensors: TensorStore,
}

impl ModelFile {
    pub fn open(path: impl AsRef<Path>) -> Result<ModelFile> {
        let path = path.as_ref();
        let len = std::fs::metadata(path)
            .map_err(|e| Error::io(path, e))?
            .len();
        if len > MAX_MODEL_BYTES {
            return Err(Error::Format(format!(
                "{} is {len} bytes, larger than any model this engine loads",
                path.display()
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes).map_err(|e| match e {
            Error::Format(m) => Error::Format(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<ModelFile> {
        let (tensors, meta) = TensorStore::from_bytes(bytes)?;
        let json = meta.get("tunable").ok_or_else(|| {
            Error::Format(
                "no \"tunable\" key in the safetensors metadata: not a tunable model".into(),
            )
        })?;
        let spec = Spec::parse(json)?;
        Ok(ModelFile { spec, tensors })
    }

    /// Lowers to a plan and checks that its shapes fit together, that it stays within the
    /// engine's geometry limits ([`Plan::check_limits`]) and that its output has the input's size.
    pub fn plan(&self, mode: Lowering, ftn: FtnFn) -> Result<Plan> {
        let plan = lower(&self.spec, &self.tensors, mode, ftn)?;
        plan.check_limits()?;
        let m = plan.size_multiple();
        let out = plan.shapes(m, m)?[plan.output];
        if (out.h, out.w) != (m, m) {
            return Err(Error::Shape(format!(
                "the model maps a {m}x{m} image to {}x{}; only models whose output has the input's size are supported",
                out.w, out.h
            )));
        }
        Ok(plan)
    }
}
