//! Plan-building helpers shared by the GPU tests and the fast CPU executor's tests.

use tunable::plan::{Node, Op};

/// A node that reads tensor `input` (and the combine tensors `others`) and writes `output`.
pub fn node(name: &str, op: Op, input: usize, others: Vec<usize>, output: usize) -> Node {
    Node {
        name: name.into(),
        op,
        input,
        others,
        output,
    }
}
