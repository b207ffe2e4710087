//! [`Plan::validate`]: the invariants every executor relies on, checked in one place with one
//! wording per failure. The lowering calls it before any executor sees a plan; the executors'
//! constructors call it again for plans built by hand (tests, benches), which costs a pass
//! over the nodes and no copy of their arrays.

use super::{Activation, Epilogue, Mix, Node, Op, Plan, TensorId, MAX_DELTAS};
use crate::error::{Error, Result};

/// Conv and depthwise kernel sizes every executor runs (the GPU compiles one variant each).
pub const KERNEL_SIZES: [usize; 4] = [1, 3, 5, 7];
/// Conv strides every executor runs.
pub const CONV_STRIDES: [usize; 2] = [1, 2];
/// Other tensors a conv or depthwise epilogue's combine may read.
pub const MAX_COMBINE_OTHERS: usize = 2;

/// A node array of the wrong length: `Error::Tensor` named `node.array`.
fn check_len(node: &str, array: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::Tensor {
            name: format!("{node}.{array}"),
            message: format!("has {got} values, expected {want}"),
        });
    }
    Ok(())
}

/// A node reading more other tensors than its op can: executors read `others[i]` for each
/// combine gain (or the eltwise `v`) `i` that has one, and ignore the rest.
fn check_others(node: &Node, most: usize) -> Result<()> {
    if node.others.len() > most {
        return Err(Error::Graph(format!(
            "node '{}' reads {} other tensors, at most {most} for its op",
            node.name,
            node.others.len()
        )));
    }
    Ok(())
}

/// An op no executor runs: `Error::Shape` naming the node.
fn unsupported(node: &str, what: String) -> Error {
    Error::Shape(format!("node '{node}': {what}"))
}

fn check_mix(node: &str, mix: &Mix) -> Result<()> {
    if mix.deltas() > MAX_DELTAS {
        return Err(unsupported(
            node,
            format!("{} deltas, at most {MAX_DELTAS} supported", mix.deltas()),
        ));
    }
    Ok(())
}

fn check_kernel_size(node: &str, op: &str, k: usize) -> Result<()> {
    if !KERNEL_SIZES.contains(&k) {
        return Err(unsupported(
            node,
            format!("{op} {k}x{k} is not supported (k {KERNEL_SIZES:?})"),
        ));
    }
    Ok(())
}

/// PReLU slopes: one per channel (the lowering expands a shared slope).
fn check_act(node: &str, act: &Activation, channels: usize) -> Result<()> {
    if let Activation::Prelu(s) = act {
        check_len(node, "prelu", s.len(), channels)?;
    }
    Ok(())
}

/// Every mixed vector of `ep` holds `(deltas + 1) * channels` values.
fn check_epilogue(name: &str, ep: &Epilogue, deltas: usize, channels: usize) -> Result<()> {
    let want = (deltas + 1) * channels;
    check_len(name, "bias", ep.bias.len(), want)?;
    if let Some((s, t)) = &ep.scale_shift {
        check_len(name, "scale", s.len(), want)?;
        check_len(name, "shift", t.len(), want)?;
    }
    check_act(name, &ep.act, channels)?;
    if let Some(c) = &ep.combine {
        check_len(name, "combine.u", c.u.len(), want)?;
        for v in &c.v {
            check_len(name, "combine.v", v.len(), want)?;
        }
    }
    Ok(())
}

fn check_op(node: &Node) -> Result<()> {
    let name = node.name.as_str();
    match &node.op {
        Op::Conv2d(c) => {
            check_kernel_size(name, "conv", c.k)?;
            if !CONV_STRIDES.contains(&c.stride) {
                return Err(unsupported(
                    name,
                    format!(
                        "conv stride {} is not supported (stride {CONV_STRIDES:?})",
                        c.stride
                    ),
                ));
            }
            if c.cin == 0 || c.cout == 0 || c.cin < c.noise_channel.is_some() as usize {
                return Err(unsupported(
                    name,
                    format!("conv with {} inputs and {} outputs", c.cin, c.cout),
                ));
            }
            check_mix(name, &c.mix)?;
            let deltas = c.mix.deltas();
            check_len(
                name,
                "weight",
                c.weight.len(),
                (deltas + 1) * c.weight_len(),
            )?;
            check_others(node, MAX_COMBINE_OTHERS)?;
            check_epilogue(name, &c.epilogue, deltas, c.cout)
        }
        Op::Depthwise(d) => {
            check_kernel_size(name, "depthwise", d.k)?;
            if d.channels == 0 {
                return Err(unsupported(name, "depthwise with 0 channels".into()));
            }
            check_mix(name, &d.mix)?;
            let deltas = d.mix.deltas();
            let want = (deltas + 1) * d.channels * d.k * d.k;
            check_len(name, "weight", d.weight.len(), want)?;
            check_others(node, MAX_COMBINE_OTHERS)?;
            check_epilogue(name, &d.epilogue, deltas, d.channels)
        }
        Op::Eltwise(e) => {
            if e.channels == 0 {
                return Err(unsupported(name, "eltwise with 0 channels".into()));
            }
            check_mix(name, &e.mix)?;
            let want = (e.mix.deltas() + 1) * e.channels;
            check_len(name, "u", e.u.len(), want)?;
            if let Some(v) = &e.v {
                check_len(name, "v", v.len(), want)?;
            }
            check_others(node, 1)?;
            check_act(name, &e.act, e.channels)
        }
        Op::Unshuffle | Op::Shuffle => check_others(node, 0),
    }
}

impl Plan {
    /// Checks what every executor relies on: tensor ids in range, each tensor written once
    /// and before it is read (tensor 0 is the input), the output written; kernel sizes,
    /// strides and delta counts the executors run; every array of the length its op says;
    /// at most as many other tensors as the op reads. Shapes that depend on the image
    /// size are checked by [`Plan::shapes`].
    pub fn validate(&self) -> Result<()> {
        self.validate_with_inputs(&[0])
    }

    /// [`Plan::validate`] for a plan whose tensors `inputs` are all given from outside (a
    /// single node run with its combine tensors: tensor 0 and the others).
    pub fn validate_with_inputs(&self, inputs: &[TensorId]) -> Result<()> {
        let n = self.num_tensors;
        if self.in_channels == 0 {
            return Err(Error::Graph("the plan reads an input of 0 channels".into()));
        }
        if n == 0 || self.output >= n {
            return Err(Error::Graph(format!(
                "plan output {} out of {n} tensors",
                self.output
            )));
        }
        let mut written = vec![false; n];
        for &t in inputs {
            if t >= n {
                return Err(Error::Graph(format!("input tensor {t} of {n}")));
            }
            written[t] = true;
        }
        for node in &self.nodes {
            let name = node.name.as_str();
            let ids: Vec<TensorId> = std::iter::once(node.input)
                .chain(node.others.iter().copied())
                .chain(std::iter::once(node.output))
                .collect();
            if let Some(t) = ids.iter().find(|&&t| t >= n) {
                return Err(Error::Graph(format!(
                    "node '{name}' uses tensor {t} of {n}"
                )));
            }
            if let Some(t) = ids[..ids.len() - 1].iter().find(|&&t| !written[t]) {
                return Err(Error::Graph(format!(
                    "node '{name}' reads tensor {t} before it is written"
                )));
            }
            if written[node.output] {
                return Err(Error::Graph(format!(
                    "node '{name}' writes tensor {} twice or out of range",
                    node.output
                )));
            }
            written[node.output] = true;
            check_op(node)?;
        }
        if let Some(t) = written.iter().position(|w| !w) {
            return Err(Error::Graph(format!("tensor {t} is never written")));
        }
        Ok(())
    }
}
