//! Builds small model files in the test itself (no PyTorch needed) for the loader's tests.

use std::collections::HashMap;

use safetensors::tensor::TensorView;
use safetensors::Dtype;

pub struct ModelBuilder {
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    pub spec: serde_json::Value,
    seed: u64,
}

impl ModelBuilder {
    /// A DnCNN-style 3-conv residual denoiser with a DNI knob, `c` image channels, `f` features.
    pub fn dni_stack(c: usize, f: usize) -> ModelBuilder {
        let mut b = ModelBuilder {
            tensors: vec![],
            spec: serde_json::Value::Null,
            seed: 1,
        };
        let dims = [(c, f), (f, f), (f, c)];
        let mut nodes = vec![];
        let mut prev = "input".to_string();
        for (i, (ci, co)) in dims.iter().enumerate() {
            let w = format!("c{i}.w");
            b.random(&w, vec![*co, *ci, 3, 3], 0.2);
            b.random(&format!("c{i}.b"), vec![*co], 0.05);
            b.random(&format!("c{i}.w_end"), vec![*co, *ci, 3, 3], 0.2);
            let act = if i + 1 < dims.len() { "relu" } else { "none" };
            nodes.push(serde_json::json!({
                "name": format!("c{i}"), "op": "conv", "inputs": [prev], "weight": w, "bias": format!("c{i}.b"),
                "act": act, "mod": {"type": "dni", "weight_end": format!("c{i}.w_end"), "axis": 0}
            }));
            prev = format!("c{i}");
        }
        nodes.push(serde_json::json!({"name": "out", "op": "add", "inputs": ["input", prev], "gain": -1.0}));
        b.spec = serde_json::json!({
            "format_version": 1, "name": "test-dni", "task": "denoise", "family": "dni",
            "in_channels": c, "out_channels": c, "value_scale": 255.0,
            "levels": [{"name": "alpha", "min": 0.0, "max": 1.0, "unit": "sigma", "calibration": [[10.0, 0.0], [50.0, 1.0]]}],
            "nodes": nodes, "output": "out"
        });
        b
    }

    /// An AdaFM-Net-style net: unshuffle, head conv, `blocks` residual blocks with an AdaFM 3x3
    /// layer, tail conv, shuffle, global residual. Receptive field spans many pixels.
    pub fn unshuffle_resnet(c: usize, f: usize, blocks: usize) -> ModelBuilder {
        let mut b = ModelBuilder {
            tensors: vec![],
            spec: serde_json::Value::Null,
            seed: 11,
        };
        let mut nodes =
            vec![serde_json::json!({"name": "un", "op": "unshuffle", "inputs": ["input"]})];
        b.random("head.w", vec![f, 4 * c, 3, 3], 0.2);
        nodes.push(
            serde_json::json!({"name": "head", "op": "conv", "inputs": ["un"], "weight": "head.w"}),
        );
        let mut prev = "head".to_string();
        for i in 0..blocks {
            b.random(&format!("b{i}.w1"), vec![f, f, 3, 3], 0.15);
            b.random(&format!("b{i}.w2"), vec![f, f, 3, 3], 0.15);
            b.random(&format!("b{i}.g"), vec![f, 1, 3, 3], 0.3);
            b.random(&format!("b{i}.t"), vec![f], 0.1);
            nodes.push(serde_json::json!({"name": format!("b{i}.c1"), "op": "conv", "inputs": [prev], "weight": format!("b{i}.w1")}));
            nodes.push(serde_json::json!({"name": format!("b{i}.fm"), "op": "adafm", "inputs": [format!("b{i}.c1")],
                "weight": format!("b{i}.g"), "bias": format!("b{i}.t"), "axis": 0, "act": "relu"}));
            nodes.push(serde_json::json!({"name": format!("b{i}.c2"), "op": "conv", "inputs": [format!("b{i}.fm")], "weight": format!("b{i}.w2")}));
            nodes.push(serde_json::json!({"name": format!("b{i}.add"), "op": "add", "inputs": [prev, format!("b{i}.c2")]}));
            prev = format!("b{i}.add");
        }
        b.random("tail.w", vec![4 * c, f, 3, 3], 0.1);
        nodes.push(
            serde_json::json!({"name": "tail", "op": "conv", "inputs": [prev], "weight": "tail.w"}),
        );
        nodes.push(serde_json::json!({"name": "sh", "op": "shuffle", "inputs": ["tail"]}));
        nodes.push(serde_json::json!({"name": "out", "op": "add", "inputs": ["input", "sh"]}));
        b.spec = serde_json::json!({
            "format_version": 1, "name": "test-adafm", "task": "denoise", "family": "adafm",
            "in_channels": c, "out_channels": c, "value_scale": 255.0,
            "levels": [{"name": "alpha", "min": 0.0, "max": 1.0}],
            "nodes": nodes, "output": "out"
        });
        b
    }

    pub fn random(&mut self, name: &str, shape: Vec<usize>, scale: f32) {
        let n: usize = shape.iter().product();
        let mut rng = tunable::noise::Rng::new(self.seed);
        self.seed += 1;
        let data = (0..n).map(|_| rng.normal() as f32 * scale).collect();
        self.tensors.push((name.to_string(), shape, data));
    }

    pub fn set(&mut self, name: &str, f: impl FnOnce(&mut Vec<usize>, &mut Vec<f32>)) {
        let t = self
            .tensors
            .iter_mut()
            .find(|t| t.0 == name)
            .expect("tensor exists");
        f(&mut t.1, &mut t.2);
    }

    pub fn remove(&mut self, name: &str) {
        self.tensors.retain(|t| t.0 != name);
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.bytes_with_dtype(None)
    }

    /// Serializes; `int_tensor` stores that one tensor as I32 (a dtype the loader refuses).
    pub fn bytes_with_dtype(&self, int_tensor: Option<&str>) -> Vec<u8> {
        let raw: Vec<(String, Vec<usize>, Vec<u8>, Dtype)> = self
            .tensors
            .iter()
            .map(|(n, s, d)| {
                let bytes: Vec<u8> = if Some(n.as_str()) == int_tensor {
                    d.iter().flat_map(|v| (*v as i32).to_le_bytes()).collect()
                } else {
                    d.iter().flat_map(|v| v.to_le_bytes()).collect()
                };
                let dt = if Some(n.as_str()) == int_tensor {
                    Dtype::I32
                } else {
                    Dtype::F32
                };
                (n.clone(), s.clone(), bytes, dt)
            })
            .collect();
        let views: Vec<(String, TensorView)> = raw
            .iter()
            .map(|(n, s, b, dt)| (n.clone(), TensorView::new(*dt, s.clone(), b).expect("view")))
            .collect();
        let meta = HashMap::from([("tunable".to_string(), self.spec.to_string())]);
        safetensors::serialize(views, Some(meta)).expect("serialize")
    }
}
