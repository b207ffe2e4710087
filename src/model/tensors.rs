//! The tensors of a model file, read from safetensors bytes, widened to f32 and checked.

use std::collections::HashMap;

use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};

/// Every tensor of a model file as f32, checked finite at load.
#[derive(Debug, Default)]
pub struct TensorStore {
    map: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl TensorStore {
    /// Parses safetensors bytes (the crate checks the header against the buffer: offsets,
    /// sizes, overlaps) and returns the tensors and the metadata map.
    pub fn from_bytes(bytes: &[u8]) -> Result<(TensorStore, HashMap<String, String>)> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::Format(format!("not a valid safetensors file: {e}")))?;
        let (_, meta) = SafeTensors::read_metadata(bytes)
            .map_err(|e| Error::Format(format!("bad header: {e}")))?;
        let mut map = HashMap::new();
        for (name, view) in st.tensors() {
            let data = widen(&name, view.dtype(), view.data())?;
            if let Some(i) = data.iter().position(|v| !v.is_finite()) {
                return Err(Error::Tensor {
                    name,
                    message: format!("value {} at index {i} is not finite", data[i]),
                });
            }
            map.insert(name, (view.shape().to_vec(), data));
        }
        Ok((
            TensorStore { map },
            meta.metadata().clone().unwrap_or_default(),
        ))
    }

    /// For tests and builders: a store from named f32 arrays.
    pub fn from_arrays(
        items: impl IntoIterator<Item = (String, Vec<usize>, Vec<f32>)>,
    ) -> TensorStore {
        TensorStore {
            map: items.into_iter().map(|(n, s, d)| (n, (s, d))).collect(),
        }
    }

    fn get(&self, name: &str) -> Result<&(Vec<usize>, Vec<f32>)> {
        self.map.get(name).ok_or_else(|| Error::Tensor {
            name: name.into(),
            message: "is named in the spec but missing from the file".into(),
        })
    }

    pub fn shape(&self, name: &str) -> Result<&[usize]> {
        Ok(&self.get(name)?.0)
    }

    /// The tensor's values, checking that its shape is exactly `shape`.
    pub fn array(&self, name: &str, shape: &[usize]) -> Result<&[f32]> {
        let (s, d) = self.get(name)?;
        if s != shape {
            return Err(Error::Tensor {
                name: name.into(),
                message: format!("has shape {s:?}, expected {shape:?}"),
            });
        }
        Ok(d)
    }

    /// The tensor's values whatever its shape.
    pub fn vector(&self, name: &str) -> Result<&[f32]> {
        Ok(&self.get(name)?.1)
    }

    pub fn total_values(&self) -> usize {
        self.map.values().map(|(_, d)| d.len()).sum()
    }
}

fn widen(name: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>> {
    let chunks2 = || bytes.chunks_exact(2).map(|b| [b[0], b[1]]);
    Ok(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => chunks2()
            .map(|b| half::f16::from_le_bytes(b).to_f32())
            .collect(),
        Dtype::BF16 => chunks2()
            .map(|b| half::bf16::from_le_bytes(b).to_f32())
            .collect(),
        other => {
            return Err(Error::Tensor {
                name: name.into(),
                message: format!("dtype {other:?} is not supported (F32, F16, BF16)"),
            })
        }
    })
}
