//! Unfusing combines for small devices: a conv or depthwise whose epilogue combines other
//! tensors binds one storage buffer per other tensor (4 + k in all), more than a device
//! created with `Limits::downlevel_defaults()` allows (4). [`Plan::split_combines`] rewrites
//! such nodes as the node without its combine followed by one eltwise per other tensor, which
//! computes the same values (the combine is the epilogue's last step:
//! `y = u * act(..) + v1 * o1 + v2 * o2`) at the cost of one more pass per other tensor.

use super::{Eltwise, Epilogue, Node, Op, Plan};
use crate::plan::Activation;

impl Plan {
    /// The same computation with every combine of more than `max_others` other tensors run as
    /// separate eltwise passes (nodes whose combine reads at most `max_others` stay fused).
    /// New tensors are numbered after the plan's own; node order and the output are kept.
    pub fn split_combines(&self, max_others: usize) -> Plan {
        let mut out = Plan {
            in_channels: self.in_channels,
            num_tensors: self.num_tensors,
            nodes: Vec::with_capacity(self.nodes.len()),
            output: self.output,
        };
        for n in &self.nodes {
            let Some((channels, mix, epilogue)) = combine_of(n) else {
                out.nodes.push(n.clone());
                continue;
            };
            let combine = match &epilogue.combine {
                Some(c) if n.others.len() > max_others && !n.others.is_empty() => c.clone(),
                _ => {
                    out.nodes.push(n.clone());
                    continue;
                }
            };
            let deltas = mix.deltas();
            // The node itself, writing act(..) into a new tensor.
            let mut head = n.clone();
            head.others.clear();
            strip_combine(&mut head.op);
            let mut current = out.num_tensors;
            out.num_tensors += 1;
            head.output = current;
            out.nodes.push(head);
            // One eltwise per other tensor: the first applies u, the next ones pass through.
            let ones = {
                let mut v = vec![1.0; channels];
                v.resize((deltas + 1) * channels, 0.0);
                v
            };
            let last = n.others.len() - 1;
            for (i, (&other, v)) in n.others.iter().zip(&combine.v).enumerate() {
                let output = if i == last {
                    n.output
                } else {
                    out.num_tensors += 1;
                    out.num_tensors - 1
                };
                out.nodes.push(Node {
                    name: format!("{}.combine{}", n.name, i + 1),
                    op: Op::Eltwise(Eltwise {
                        channels,
                        mix: mix.clone(),
                        u: if i == 0 {
                            combine.u.clone()
                        } else {
                            ones.clone()
                        },
                        v: Some(v.clone()),
                        act: Activation::None,
                    }),
                    input: current,
                    others: vec![other],
                    output,
                });
                current = output;
            }
        }
        out
    }
}

/// The output channels, mix and epilogue of a node that has an epilogue.
fn combine_of(n: &Node) -> Option<(usize, &super::Mix, &Epilogue)> {
    match &n.op {
        Op::Conv2d(c) => Some((c.cout, &c.mix, &c.epilogue)),
        Op::Depthwise(d) => Some((d.channels, &d.mix, &d.epilogue)),
        _ => None,
    }
}

fn strip_combine(op: &mut Op) {
    match op {
        Op::Conv2d(c) => c.epilogue.combine = None,
        Op::Depthwise(d) => d.epilogue.combine = None,
        _ => {}
    }
}
