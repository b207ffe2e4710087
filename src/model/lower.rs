//! Lowering: a model spec plus its tensors become a [`Plan`] of primitive ops, either fused
//! (the engine's fast form: weight mix in the conv, AdaFM 1x1 / residual add / blend in the
//! conv epilogue) or unfused (every modulation and combine as its own pass: the baseline).

use std::collections::{BTreeMap, HashMap};

use crate::error::{Error, Result};
use crate::model::spec::{GainSpec, ModSpec, NodeSpec, Spec};
use crate::model::tensors::TensorStore;
use crate::plan::{
    Activation, Affine, Combine, Conv2d, Depthwise, Eltwise, Epilogue, FtnParams, Mix, Node, Op,
    Plan, CONV_STRIDES, KERNEL_SIZES, MAX_AXES, MAX_CHANNELS, MAX_DELTAS,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lowering {
    /// Mixes fused into convs, combines fused into epilogues.
    Fused,
    /// Separate passes for every mix and combine (a baseline for benches and tests).
    Unfused,
}

/// Computes `FTN(W)` for a filter `[cout, cin, k, k]` (on the GPU when one runs the model).
pub type FtnFn<'a> = &'a dyn Fn(&[f32], usize, usize, usize, &FtnParams) -> Result<Vec<f32>>;

/// A level-dependent array while lowering: `base + sum (coef, delta)`, sparse in coefficients.
#[derive(Clone, Debug)]
struct Mv {
    base: Vec<f32>,
    deltas: Vec<(Affine, Vec<f32>)>,
}

impl Mv {
    fn fixed(base: Vec<f32>) -> Mv {
        Mv {
            base,
            deltas: vec![],
        }
    }
    fn constant(n: usize, v: f32) -> Mv {
        Mv::fixed(vec![v; n])
    }
    fn with(mut self, coef: Affine, delta: Vec<f32>) -> Mv {
        self.deltas.push((coef, delta));
        self
    }
    fn is_fixed(&self) -> bool {
        self.deltas.is_empty()
    }
    fn scaled(mut self, k: f32) -> Mv {
        self.base.iter_mut().for_each(|v| *v *= k);
        for (_, d) in &mut self.deltas {
            d.iter_mut().for_each(|v| *v *= k);
        }
        self
    }
}

/// Collects the distinct coefficients of one op and turns its `Mv`s into dense mixed arrays.
struct MixBuilder(Vec<Affine>);

impl MixBuilder {
    fn collect<'a>(name: &str, mvs: impl IntoIterator<Item = &'a Mv>) -> Result<MixBuilder> {
        let mut coefs: Vec<Affine> = vec![];
        for mv in mvs {
            for (c, _) in &mv.deltas {
                if !coefs.contains(c) {
                    coefs.push(*c);
                }
            }
        }
        if coefs.len() > MAX_DELTAS {
            return Err(Error::Graph(format!(
                "node '{name}' depends on {} distinct level coefficients; at most {MAX_DELTAS} are supported",
                coefs.len()
            )));
        }
        Ok(MixBuilder(coefs))
    }
    fn dense(&self, mv: &Mv) -> Vec<f32> {
        let n = mv.base.len();
        let mut out = vec![0.0; n * (self.0.len() + 1)];
        out[..n].copy_from_slice(&mv.base);
        for (c, d) in &mv.deltas {
            let p = self.0.iter().position(|x| x == c).expect("collected") + 1;
            for (o, v) in out[p * n..(p + 1) * n].iter_mut().zip(d) {
                *o += v;
            }
        }
        out
    }
    fn mix(&self) -> Mix {
        Mix {
            coefs: self.0.clone(),
        }
    }
}

#[derive(Clone, Debug)]
struct LEpilogue {
    bias: Mv,
    scale_shift: Option<(Mv, Mv)>,
    act: Activation,
    /// `u * y + sum v_i * other_i`; others are value ids.
    combine: Option<(Mv, Vec<(usize, Mv)>)>,
}

#[derive(Clone, Debug)]
enum LOp {
    Conv {
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        weight: Mv,
        noise: Option<Affine>,
        epi: LEpilogue,
    },
    Depthwise {
        c: usize,
        k: usize,
        weight: Mv,
        epi: LEpilogue,
    },
    Eltwise {
        c: usize,
        u: Mv,
        v: Option<(usize, Mv)>,
        act: Activation,
    },
    Unshuffle,
    Shuffle,
}

#[derive(Clone, Debug)]
struct LNode {
    name: String,
    op: LOp,
    /// Value ids: 0 is the input, `i + 1` is the output of lowered node `i`.
    input: usize,
}

struct Lowerer<'a> {
    spec: &'a Spec,
    tensors: &'a TensorStore,
    mode: Lowering,
    ftn: FtnFn<'a>,
    nodes: Vec<LNode>,
    /// Spec node name -> value id.
    value_of: HashMap<&'a str, usize>,
    /// Value id -> channel count.
    channels: Vec<usize>,
    /// Spec node name -> number of readers (the graph output counts as one).
    readers: HashMap<&'a str, usize>,
}

/// Lowers a checked spec with its tensors to a plan.
pub fn lower(spec: &Spec, tensors: &TensorStore, mode: Lowering, ftn: FtnFn) -> Result<Plan> {
    let order = topo_order(spec)?;
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for &i in &order {
        for inp in &spec.nodes[i].inputs {
            *readers.entry(inp.as_str()).or_default() += 1;
        }
    }
    *readers.entry(spec.output.as_str()).or_default() += 1;
    let mut l = Lowerer {
        spec,
        tensors,
        mode,
        ftn,
        nodes: vec![],
        value_of: HashMap::from([("input", 0)]),
        channels: vec![spec.in_channels],
        readers,
    };
    for &i in &order {
        let n = &spec.nodes[i];
        l.node(n).map_err(|e| e.in_node(&n.name))?;
    }
    let output = *l
        .value_of
        .get(spec.output.as_str())
        .expect("topo_order checked the output");
    if l.channels[output] != spec.out_channels {
        return Err(Error::Graph(format!(
            "output '{}' has {} channels, the spec says {}",
            spec.output, l.channels[output], spec.out_channels
        )));
    }
    let plan = l.finish(output)?;
    plan.validate()?;
    Ok(plan)
}

/// Orders the nodes the output depends on so that every input comes first (Kahn's algorithm,
/// ties broken by file order); names a missing input or a cycle.
fn topo_order(spec: &Spec) -> Result<Vec<usize>> {
    let index: HashMap<&str, usize> = spec
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let lookup =
        |name: &str, by: &str| -> Result<Option<usize>> {
            if name == "input" {
                return Ok(None);
            }
            index.get(name).copied().map(Some).ok_or_else(|| {
                Error::Graph(format!("node '{by}' reads '{name}', which is not a node"))
            })
        };
    // Only nodes the output depends on are run.
    let mut needed = vec![false; spec.nodes.len()];
    let mut stack: Vec<usize> = lookup(&spec.output, "output")?.into_iter().collect();
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut needed[i], true) {
            continue;
        }
        for inp in &spec.nodes[i].inputs {
            stack.extend(lookup(inp, &spec.nodes[i].name)?);
        }
    }
    let mut pending: BTreeMap<usize, usize> = BTreeMap::new(); // node -> unresolved inputs
    let mut dependents: Vec<Vec<usize>> = vec![vec![]; spec.nodes.len()];
    for (i, n) in spec.nodes.iter().enumerate().filter(|(i, _)| needed[*i]) {
        let mut count = 0;
        for inp in &n.inputs {
            if let Some(j) = lookup(inp, &n.name)? {
                dependents[j].push(i);
                count += 1;
            }
        }
        pending.insert(i, count);
    }
    let mut order = vec![];
    while let Some((&i, _)) = pending.iter().find(|(_, &c)| c == 0) {
        pending.remove(&i);
        order.push(i);
        for &d in &dependents[i] {
            if let Some(c) = pending.get_mut(&d) {
                *c -= 1;
            }
        }
    }
    if let Some((&i, _)) = pending.iter().next() {
        return Err(Error::Graph(format!(
            "node '{}' is part of a cycle",
            spec.nodes[i].name
        )));
    }
    Ok(order)
}

fn parse_act(n: &NodeSpec, channels: usize, tensors: &TensorStore) -> Result<Activation> {
    match n.act.as_deref().unwrap_or("none") {
        "none" => Ok(Activation::None),
        "relu" => Ok(Activation::Relu),
        "prelu" => {
            let name = n
                .prelu
                .as_deref()
                .ok_or_else(|| Error::Graph("act 'prelu' needs a 'prelu' tensor".into()))?;
            let t = tensors.vector(name)?;
            match t.len() {
                1 => Ok(Activation::Prelu(vec![t[0]; channels])),
                c if c == channels => Ok(Activation::Prelu(t.to_vec())),
                c => Err(Error::Tensor {
                    name: name.into(),
                    message: format!("has {c} values, expected 1 or {channels}"),
                }),
            }
        }
        other => Err(Error::Graph(format!(
            "unknown activation '{other}' (none, relu, prelu)"
        ))),
    }
}

/// The kind of a lowered node, for messages.
fn describe(op: &LOp) -> &'static str {
    match op {
        LOp::Conv { .. } => "the conv",
        LOp::Depthwise { .. } => "the adafm layer",
        LOp::Eltwise { .. } => "the combine",
        LOp::Unshuffle => "pixel unshuffle",
        LOp::Shuffle => "pixel shuffle",
    }
}

fn axis_coef(spec: &Spec, axis: usize) -> Result<Affine> {
    if axis >= spec.levels.len() || axis >= MAX_AXES {
        return Err(Error::Graph(format!(
            "level axis {axis} does not exist (the model has {})",
            spec.levels.len()
        )));
    }
    Ok(Affine::axis(axis, 1.0))
}

fn sub(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

impl<'a> Lowerer<'a> {
    fn input(&self, n: &NodeSpec, i: usize) -> Result<usize> {
        let name = n.inputs.get(i).ok_or_else(|| {
            Error::Graph(format!(
                "op '{}' needs {} input(s), got {}",
                n.op,
                i + 1,
                n.inputs.len()
            ))
        })?;
        Ok(self.value_of[name.as_str()])
    }

    fn expect_inputs(&self, n: &NodeSpec, count: usize) -> Result<()> {
        if n.inputs.len() != count {
            return Err(Error::Graph(format!(
                "op '{}' takes {count} input(s), got {}",
                n.op,
                n.inputs.len()
            )));
        }
        Ok(())
    }

    /// Appends a lowered node writing `channels` channels, bounded here (before any shape is
    /// computed) so that a chain of unshuffles cannot grow the count without end.
    fn push(&mut self, name: &'a str, op: LOp, input: usize, channels: usize) -> Result<()> {
        if channels > MAX_CHANNELS {
            return Err(Error::Limit(format!(
                "{} writes {channels} channels, more than the limit of {MAX_CHANNELS}",
                describe(&op)
            )));
        }
        self.nodes.push(LNode {
            name: name.to_string(),
            op,
            input,
        });
        self.channels.push(channels);
        self.value_of.insert(name, self.nodes.len());
        Ok(())
    }

    fn node(&mut self, n: &'a NodeSpec) -> Result<()> {
        match n.op.as_str() {
            "conv" => self.conv(n),
            "adafm" => self.adafm(n),
            "add" => self.add(n),
            "blend" => self.blend(n),
            "unshuffle" | "shuffle" => {
                self.expect_inputs(n, 1)?;
                let x = self.input(n, 0)?;
                let c = self.channels[x];
                if n.op == "shuffle" {
                    if !c.is_multiple_of(4) {
                        return Err(Error::Shape(format!(
                            "pixel shuffle needs channels divisible by 4, got {c}"
                        )));
                    }
                    self.push(&n.name, LOp::Shuffle, x, c / 4)?;
                } else {
                    self.push(&n.name, LOp::Unshuffle, x, c.saturating_mul(4))?;
                }
                Ok(())
            }
            other => Err(Error::Graph(format!("unknown op '{other}'"))),
        }
    }

    fn conv(&mut self, n: &'a NodeSpec) -> Result<()> {
        self.expect_inputs(n, 1)?;
        let x = self.input(n, 0)?;
        let wname = n
            .weight
            .as_deref()
            .ok_or_else(|| Error::Graph("conv needs a 'weight'".into()))?;
        let shape = self.tensors.shape(wname)?;
        let [cout, cin, k, k2] = shape[..] else {
            return Err(Error::Tensor {
                name: wname.into(),
                message: format!("conv weight must be 4-D, got {shape:?}"),
            });
        };
        // The spec's own errors name its tensor and node; the plan's sets decide.
        if k != k2 || !KERNEL_SIZES.contains(&k) {
            return Err(Error::Tensor {
                name: wname.into(),
                message: format!("kernel {k}x{k2} is not square of a size in {KERNEL_SIZES:?}"),
            });
        }
        let stride = n.stride.unwrap_or(1);
        if !CONV_STRIDES.contains(&stride) {
            return Err(Error::Graph(format!(
                "stride {stride} is not one of {CONV_STRIDES:?}"
            )));
        }
        let noise = match &n.noise_channel {
            Some(nc) => {
                let a = axis_coef(self.spec, nc.axis)?;
                Some(Affine {
                    offset: 0.0,
                    gain: a.gain.map(|g| g * nc.scale),
                })
            }
            None => None,
        };
        let want_cin = self.channels[x] + noise.is_some() as usize;
        if cin != want_cin {
            return Err(Error::Tensor {
                name: wname.into(),
                message: format!("has {cin} input channels, the conv's input gives {want_cin}"),
            });
        }
        let w = self.tensors.array(wname, &[cout, cin, k, k])?.to_vec();
        let b = match n.bias.as_deref() {
            Some(bn) => self.tensors.array(bn, &[cout])?.to_vec(),
            None => vec![0.0; cout],
        };
        let (mut weight, mut bias) = (Mv::fixed(w.clone()), Mv::fixed(b.clone()));
        match &n.modulation {
            None => {}
            Some(ModSpec::Dni {
                weight_end,
                bias_end,
                axis,
            }) => {
                let c = axis_coef(self.spec, *axis)?;
                weight = weight.with(
                    c,
                    sub(self.tensors.array(weight_end, &[cout, cin, k, k])?, &w),
                );
                if let Some(be) = bias_end {
                    bias = bias.with(c, sub(self.tensors.array(be, &[cout])?, &b));
                }
            }
            Some(ModSpec::Ftn {
                axis,
                groups,
                w1,
                b1,
                prelu,
                w2,
                b2,
            }) => {
                let c = axis_coef(self.spec, *axis)?;
                if *groups == 0 || cin % groups != 0 {
                    return Err(Error::Graph(format!(
                        "FTN groups {groups} does not divide {cin} input channels"
                    )));
                }
                let gs = cin / groups;
                let slope = self.tensors.vector(prelu)?;
                if slope.len() != 1 && slope.len() != cin {
                    return Err(Error::Tensor {
                        name: prelu.clone(),
                        message: format!("expected 1 or {cin} values"),
                    });
                }
                let p = FtnParams {
                    groups: *groups,
                    w1: self.tensors.array(w1, &[cin, gs, 1, 1])?,
                    b1: self.tensors.array(b1, &[cin])?,
                    slope,
                    w2: self.tensors.array(w2, &[cin, gs, 1, 1])?,
                    b2: self.tensors.array(b2, &[cin])?,
                };
                let transformed = (self.ftn)(&w, cout, cin, k, &p)?;
                weight = weight.with(c, sub(&transformed, &w));
            }
            Some(ModSpec::Basis {
                deltas,
                bias_deltas,
                coef,
            }) => {
                if deltas.len() != coef.len() || deltas.len() > MAX_DELTAS {
                    return Err(Error::Graph(format!(
                        "basis: {} deltas, {} coef rows (equal, at most {MAX_DELTAS})",
                        deltas.len(),
                        coef.len()
                    )));
                }
                for (p, (d, row)) in deltas.iter().zip(coef).enumerate() {
                    if row.is_empty()
                        || row.len() > 1 + self.spec.levels.len()
                        || row.iter().any(|v| !v.is_finite())
                    {
                        return Err(Error::Graph(format!(
                            "basis coef row {p} must be [offset, one gain per level axis]"
                        )));
                    }
                    let mut a = Affine::constant(row[0]);
                    a.gain[..row.len() - 1].copy_from_slice(&row[1..]);
                    weight = weight.with(a, self.tensors.array(d, &[cout, cin, k, k])?.to_vec());
                    if let Some(Some(bd)) = bias_deltas.get(p) {
                        bias = bias.with(a, self.tensors.array(bd, &[cout])?.to_vec());
                    }
                }
            }
        }
        let act = parse_act(n, cout, self.tensors)?;
        let epi = LEpilogue {
            bias,
            scale_shift: None,
            act,
            combine: None,
        };
        self.push(
            &n.name,
            LOp::Conv {
                cin,
                cout,
                k,
                stride,
                weight,
                noise,
                epi,
            },
            x,
            cout,
        )?;
        Ok(())
    }

    /// The node producing value `v` if the fused mode may rewrite its epilogue: a conv or
    /// depthwise whose result nobody else reads.
    fn fusable_producer(&self, n: &NodeSpec, input: usize) -> Option<usize> {
        if self.mode != Lowering::Fused {
            return None;
        }
        let v = self.input(n, input).ok()?;
        let name = &n.inputs[input];
        if v == 0 || self.readers.get(name.as_str()) != Some(&1) {
            return None;
        }
        matches!(
            self.nodes[v - 1].op,
            LOp::Conv { .. } | LOp::Depthwise { .. }
        )
        .then_some(v - 1)
    }

    fn epilogue_mut(&mut self, i: usize) -> &mut LEpilogue {
        match &mut self.nodes[i].op {
            LOp::Conv { epi, .. } | LOp::Depthwise { epi, .. } => epi,
            _ => unreachable!("fusable_producer only returns convs"),
        }
    }

    fn adafm(&mut self, n: &'a NodeSpec) -> Result<()> {
        self.expect_inputs(n, 1)?;
        let x = self.input(n, 0)?;
        let c = self.channels[x];
        let wname = n
            .weight
            .as_deref()
            .ok_or_else(|| Error::Graph("adafm needs a 'weight'".into()))?;
        let shape = self.tensors.shape(wname)?;
        let k = *shape.last().unwrap_or(&0);
        if !KERNEL_SIZES.contains(&k) {
            return Err(Error::Tensor {
                name: wname.into(),
                message: format!("kernel size {k} is not one of {KERNEL_SIZES:?}"),
            });
        }
        let g = self.tensors.array(wname, &[c, 1, k, k])?.to_vec();
        let t = match n.bias.as_deref() {
            Some(bn) => self.tensors.array(bn, &[c])?.to_vec(),
            None => vec![0.0; c],
        };
        let alpha = axis_coef(self.spec, n.axis.unwrap_or(0))?;
        let act = parse_act(n, c, self.tensors)?;
        // 1x1 folds into the producing conv's epilogue: scale 1 + a (g - 1), shift a t.
        if k == 1 {
            if let Some(p) = self.fusable_producer(n, 0) {
                let epi = self.epilogue_mut(p);
                if epi.scale_shift.is_none() && epi.act == Activation::None && epi.combine.is_none()
                {
                    let scale =
                        Mv::constant(c, 1.0).with(alpha, g.iter().map(|v| v - 1.0).collect());
                    let shift = Mv::constant(c, 0.0).with(alpha, t);
                    epi.scale_shift = Some((scale, shift));
                    epi.act = act;
                    self.value_of.insert(&n.name, p + 1);
                    return Ok(());
                }
            }
        }
        // Otherwise a depthwise pass: g(a) = I + a (g - I), bias a t.
        let mut identity = vec![0.0; c * k * k];
        for ch in 0..c {
            identity[ch * k * k + (k / 2) * k + k / 2] = 1.0;
        }
        let delta = sub(&g, &identity);
        let weight = Mv::fixed(identity).with(alpha, delta);
        let epi = LEpilogue {
            bias: Mv::constant(c, 0.0).with(alpha, t),
            scale_shift: None,
            act,
            combine: None,
        };
        self.push(&n.name, LOp::Depthwise { c, k, weight, epi }, x, c)?;
        Ok(())
    }

    fn two_inputs_same_channels(&self, n: &NodeSpec) -> Result<(usize, usize, usize)> {
        self.expect_inputs(n, 2)?;
        let (a, b) = (self.input(n, 0)?, self.input(n, 1)?);
        if self.channels[a] != self.channels[b] {
            return Err(Error::Shape(format!(
                "inputs have {} and {} channels",
                self.channels[a], self.channels[b]
            )));
        }
        Ok((a, b, self.channels[a]))
    }

    /// `act(x + gain * y)`.
    fn add(&mut self, n: &'a NodeSpec) -> Result<()> {
        let (x, y, c) = self.two_inputs_same_channels(n)?;
        let gain = match &n.gain {
            None => Mv::constant(c, 1.0),
            Some(GainSpec::Constant(g)) => Mv::constant(c, *g),
            Some(GainSpec::Axis { axis }) => {
                Mv::constant(c, 0.0).with(axis_coef(self.spec, *axis)?, vec![1.0; c])
            }
        };
        let act = parse_act(n, c, self.tensors)?;
        if act == Activation::None {
            if let Some(p) = self.fusable_producer(n, 1).filter(|&p| x <= p) {
                let epi = self.epilogue_mut(p);
                let fused = match epi.combine.take() {
                    None => Some((gain.clone(), vec![(x, Mv::constant(c, 1.0))])),
                    // y is already `u*conv + v*o1`: scale both by a constant gain, add x.
                    Some((u, mut terms)) if terms.len() == 1 && gain.is_fixed() => {
                        let g = gain.base[0];
                        if gain.base.iter().all(|&v| v == g) {
                            terms[0].1 = terms[0].1.clone().scaled(g);
                            terms.push((x, Mv::constant(c, 1.0)));
                            Some((u.scaled(g), terms))
                        } else {
                            epi.combine = Some((u, terms));
                            None
                        }
                    }
                    other => {
                        epi.combine = other;
                        None
                    }
                };
                if fused.is_some() {
                    self.epilogue_mut(p).combine = fused;
                    self.value_of.insert(&n.name, p + 1);
                    return Ok(());
                }
            }
        }
        self.push(
            &n.name,
            LOp::Eltwise {
                c,
                u: Mv::constant(c, 1.0),
                v: Some((y, gain)),
                act,
            },
            x,
            c,
        )?;
        Ok(())
    }

    /// CFSNet coupling: `(1 - a) main + a tune`, `a = coupling[0] + alpha coupling[1]`.
    fn blend(&mut self, n: &'a NodeSpec) -> Result<()> {
        let (main, tune, c) = self.two_inputs_same_channels(n)?;
        let cname = n
            .coupling
            .as_deref()
            .ok_or_else(|| Error::Graph("blend needs a 'coupling' tensor".into()))?;
        let coupling = self.tensors.array(cname, &[2, c])?;
        let alpha = axis_coef(self.spec, n.axis.unwrap_or(0))?;
        let a = Mv::fixed(coupling[..c].to_vec()).with(alpha, coupling[c..].to_vec());
        let one_minus_a = Mv::fixed(coupling[..c].iter().map(|v| 1.0 - v).collect())
            .with(alpha, coupling[c..].iter().map(|v| -v).collect());
        if let Some(p) = self.fusable_producer(n, 1).filter(|&p| main <= p) {
            let epi = self.epilogue_mut(p);
            if epi.combine.is_none() {
                epi.combine = Some((a, vec![(main, one_minus_a)]));
                self.value_of.insert(&n.name, p + 1);
                return Ok(());
            }
        }
        self.push(
            &n.name,
            LOp::Eltwise {
                c,
                u: one_minus_a,
                v: Some((tune, a)),
                act: Activation::None,
            },
            main,
            c,
        )?;
        Ok(())
    }

    fn epilogue(
        &self,
        name: &str,
        epi: &LEpilogue,
        weight: &Mv,
    ) -> Result<(Mix, Vec<f32>, Epilogue, Vec<usize>)> {
        let mut all: Vec<&Mv> = vec![weight, &epi.bias];
        if let Some((s, t)) = &epi.scale_shift {
            all.extend([s, t]);
        }
        if let Some((u, terms)) = &epi.combine {
            all.push(u);
            all.extend(terms.iter().map(|(_, v)| v));
        }
        let mb = MixBuilder::collect(name, all)?;
        let out = Epilogue {
            bias: mb.dense(&epi.bias),
            scale_shift: epi
                .scale_shift
                .as_ref()
                .map(|(s, t)| (mb.dense(s), mb.dense(t))),
            act: epi.act.clone(),
            combine: epi.combine.as_ref().map(|(u, terms)| Combine {
                u: mb.dense(u),
                v: terms.iter().map(|(_, v)| mb.dense(v)).collect(),
            }),
        };
        let others = epi
            .combine
            .as_ref()
            .map(|(_, t)| t.iter().map(|(o, _)| *o).collect())
            .unwrap_or_default();
        Ok((mb.mix(), mb.dense(weight), out, others))
    }

    fn finish(self, output: usize) -> Result<Plan> {
        let mut nodes = Vec::with_capacity(self.nodes.len());
        for (i, n) in self.nodes.iter().enumerate() {
            let (op, others) = match &n.op {
                LOp::Conv {
                    cin,
                    cout,
                    k,
                    stride,
                    weight,
                    noise,
                    epi,
                } => {
                    let (mix, weight, epilogue, others) = self.epilogue(&n.name, epi, weight)?;
                    let unfused_mix = self.mode == Lowering::Unfused && mix.deltas() > 0;
                    let conv = Conv2d {
                        cin: *cin,
                        cout: *cout,
                        k: *k,
                        stride: *stride,
                        mix,
                        weight,
                        epilogue,
                        noise_channel: *noise,
                        unfused_mix,
                    };
                    (Op::Conv2d(conv), others)
                }
                LOp::Depthwise { c, k, weight, epi } => {
                    let (mix, weight, epilogue, others) = self.epilogue(&n.name, epi, weight)?;
                    (
                        Op::Depthwise(Depthwise {
                            channels: *c,
                            k: *k,
                            mix,
                            weight,
                            epilogue,
                        }),
                        others,
                    )
                }
                LOp::Eltwise { c, u, v, act } => {
                    let mb = MixBuilder::collect(
                        &n.name,
                        std::iter::once(u).chain(v.iter().map(|(_, m)| m)),
                    )?;
                    let e = Eltwise {
                        channels: *c,
                        mix: mb.mix(),
                        u: mb.dense(u),
                        v: v.as_ref().map(|(_, m)| mb.dense(m)),
                        act: act.clone(),
                    };
                    (Op::Eltwise(e), v.iter().map(|(o, _)| *o).collect())
                }
                LOp::Unshuffle => (Op::Unshuffle, vec![]),
                LOp::Shuffle => (Op::Shuffle, vec![]),
            };
            nodes.push(Node {
                name: n.name.clone(),
                op,
                input: n.input,
                others,
                output: i + 1,
            });
        }
        Ok(Plan {
            in_channels: self.spec.in_channels,
            num_tensors: self.nodes.len() + 1,
            nodes,
            output,
        })
    }
}
